//! Live migration's device-state channel (`VHOST_USER_PROTOCOL_F_DEVICE_STATE`).
//!
//! With the device stopped, the front end hands over one end of a pipe
//! (`SET_DEVICE_STATE_FD`) and later asks how the transfer went
//! (`CHECK_DEVICE_STATE`):
//!
//! - **save** (source): the session's state is taken at once
//!   ([`Server::save_state`]), so that a refusal fails `SET_DEVICE_STATE_FD`
//!   itself; a thread then writes the bytes into the pipe and closes it
//!   (the front end reads until EOF);
//! - **load** (destination): a thread reads the pipe until EOF (the front
//!   end closes its end after the last byte), then restores the state
//!   ([`Server::load_state`]).
//!
//! `CHECK_DEVICE_STATE` waits for that thread and reports its result. The
//! state belongs to one [`Server`], that is one session: in a daemon that
//! serves several guests, migrating one leaves the others alone.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use avpfs_server::log_context::SessionLabel;
use avpfs_server::{FileSystem, MigrationError, Server};
use log::{error, info, warn};
use vhost::vhost_user::message::{VhostTransferStateDirection, VhostTransferStatePhase};

/// The largest state a load accepts: far more than any real session's
/// (a few hundred bytes per node and handle), and a bound on what a
/// damaged stream makes the daemon allocate.
pub const MAX_STATE_BYTES: u64 = 256 << 20;

/// The transfer in progress: its thread, whose result `CHECK_DEVICE_STATE` reports.
#[derive(Default)]
pub(crate) struct DeviceState {
    transfer: Mutex<Option<JoinHandle<Result<(), String>>>>,
}

impl DeviceState {
    fn transfer(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<Result<(), String>>>> {
        self.transfer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `SET_DEVICE_STATE_FD`: starts a save into `file` or a load from it.
    /// `quiesce` runs first on a save, to let requests in progress end.
    pub(crate) fn start<F: FileSystem + 'static>(
        &self,
        server: &Arc<Server<F>>,
        direction: VhostTransferStateDirection,
        phase: VhostTransferStatePhase,
        file: File,
        label: Option<Arc<SessionLabel>>,
        quiesce: impl FnOnce(),
    ) -> io::Result<()> {
        if phase != VhostTransferStatePhase::STOPPED {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("device state transfer in phase {phase:?}: only a stopped device moves its state"),
            ));
        }
        let mut transfer = self.transfer();
        if transfer.take().is_some() {
            warn!("migration: a new state transfer starts before the last one was checked");
        }
        let handle = match direction {
            VhostTransferStateDirection::SAVE => {
                quiesce();
                let state = server.save_state().map_err(|e| {
                    error!("migration: cannot save the session's state: {e}");
                    to_io(e)
                })?;
                spawn("avpfs-state-save", label, move || write_state(file, &state))?
            }
            VhostTransferStateDirection::LOAD => {
                let server = server.clone();
                spawn("avpfs-state-load", label, move || read_state(file, &server))?
            }
        };
        *transfer = Some(handle);
        Ok(())
    }

    /// `CHECK_DEVICE_STATE`: waits for the transfer's thread and returns its result.
    pub(crate) fn check(&self) -> io::Result<()> {
        let Some(handle) = self.transfer().take() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no device state transfer to check"));
        };
        match handle.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io::Error::other(e)),
            Err(_) => Err(io::Error::other("the state transfer thread panicked")),
        }
    }
}

/// Runs `job` on a thread of its own that logs as `label`'s session.
fn spawn(
    name: &str,
    label: Option<Arc<SessionLabel>>,
    job: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> io::Result<JoinHandle<Result<(), String>>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        avpfs_server::log_context::enter(label.as_ref());
        job()
    })
}

fn to_io(e: MigrationError) -> io::Error {
    match e {
        MigrationError::Io(e) => e,
        MigrationError::Unsupported => io::Error::new(io::ErrorKind::Unsupported, e.to_string()),
        e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// The save thread: writes every byte, then closes the pipe (EOF for the reader).
fn write_state(mut file: File, state: &[u8]) -> Result<(), String> {
    match file.write_all(state) {
        Ok(()) => {
            info!("migration: state saved ({} bytes)", state.len());
            Ok(())
        }
        Err(e) => {
            let e = format!("cannot write the state to the front end: {e}");
            error!("migration: {e}");
            Err(e)
        }
    }
}

/// The load thread: reads until EOF, then restores.
fn read_state<F: FileSystem + 'static>(file: File, server: &Server<F>) -> Result<(), String> {
    let mut state = Vec::new();
    let result = file
        .take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut state)
        .map_err(|e| format!("cannot read the state from the front end: {e}"))
        .and_then(|n| {
            if n as u64 > MAX_STATE_BYTES {
                Err(format!("the state is larger than {MAX_STATE_BYTES} bytes"))
            } else {
                Ok(())
            }
        })
        .and_then(|()| server.load_state(&state).map_err(|e| e.to_string()));
    match &result {
        Ok(()) => info!("migration: state restored ({} bytes)", state.len()),
        Err(e) => error!("migration: refusing the incoming state: {e}"),
    }
    result
}
