//! Live migration as QEMU drives it, for the back end's side of it:
//!
//! - dirty-page logging: [`Harness::start_dirty_log`] acks `VHOST_F_LOG_ALL`
//!   and sends `SET_LOG_BASE` with a memfd log (one bit per 4 KiB page of
//!   guest memory, `VHOST_USER_PROTOCOL_F_LOG_SHMFD`);
//!   [`Harness::dirty_pages`] reads which pages the back end marked;
//! - the device state: [`Harness::save_state`] and [`Harness::load_state`]
//!   move the back end's state through a `SET_DEVICE_STATE_FD` channel (the
//!   front end's end of a socket pair; the back end writes until it closes
//!   its end, or reads until the front end closes its own) and ask
//!   `CHECK_DEVICE_STATE` how it went;
//! - [`Harness::stop_device`] stops every queue (`GET_VRING_BASE`) as QEMU
//!   does before it moves the state.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;

use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::VhostUserFrontend;
use vhost::{VhostBackend, VhostUserDirtyLogRegion};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::{memory, Error, Harness};

/// Bytes of guest memory one bit of the dirty log covers (`VHOST_LOG_PAGE`).
pub const LOG_PAGE: u64 = 0x1000;

/// The dirty log shared with the back end.
pub(crate) struct DirtyLog {
    file: File,
    len: u64,
}

/// Why a device state transfer failed, and at which step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The back end refused `SET_DEVICE_STATE_FD` (for a save: it has no
    /// state to give).
    Refused(String),
    /// `CHECK_DEVICE_STATE` reported a failure (for a load: the back end
    /// refused the bytes).
    CheckFailed(String),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::Refused(e) => write!(f, "SET_DEVICE_STATE_FD refused: {e}"),
            StateError::CheckFailed(e) => write!(f, "CHECK_DEVICE_STATE failed: {e}"),
        }
    }
}

impl Harness {
    /// Whether the back end offers what live migration needs:
    /// `LOG_SHMFD` and `DEVICE_STATE` (both acked by the harness when offered).
    pub fn supports_migration(&self) -> bool {
        self.protocol_features.contains(VhostUserProtocolFeatures::LOG_SHMFD | VhostUserProtocolFeatures::DEVICE_STATE)
    }

    /// Turns dirty-page logging on as QEMU does when a migration starts:
    /// `SET_FEATURES` with `VHOST_F_LOG_ALL`, then `SET_LOG_BASE` with a
    /// zeroed memfd log that covers every guest address.
    pub fn start_dirty_log(&self) -> Result<(), Error> {
        let end = self.mem().iter().map(|r| r.start_addr().0 + r.len()).max().unwrap_or(0);
        let pages = end.div_ceil(LOG_PAGE);
        // One bit per page, in whole 64-bit words as QEMU allocates it.
        let len = pages.div_ceil(64) * 8;
        let file = memory::memfd(c"avpfs-dirty-log", len)?;
        let fe = self.frontend.lock().unwrap_or_else(|e| e.into_inner());
        fe.set_features(self.acked_features | VhostUserVirtioFeatures::LOG_ALL.bits())?;
        let region = VhostUserDirtyLogRegion { mmap_size: len, mmap_offset: 0, mmap_handle: file.as_raw_fd() };
        fe.set_log_base(0, Some(region))?;
        *self.dirty_log.lock().unwrap_or_else(|e| e.into_inner()) = Some(DirtyLog { file, len });
        Ok(())
    }

    /// The guest pages (guest address / [`LOG_PAGE`]) marked in the dirty
    /// log; empty before [`Self::start_dirty_log`].
    pub fn dirty_pages(&self) -> Result<Vec<u64>, Error> {
        let log = self.dirty_log.lock().unwrap_or_else(|e| e.into_inner());
        let Some(log) = log.as_ref() else { return Ok(Vec::new()) };
        let mut bytes = vec![0u8; log.len as usize];
        log.file.read_exact_at(&mut bytes, 0)?;
        let mut pages = Vec::new();
        for (i, b) in bytes.iter().enumerate() {
            for bit in 0..8 {
                if b & (1 << bit) != 0 {
                    pages.push(i as u64 * 8 + bit);
                }
            }
        }
        Ok(pages)
    }

    /// Clears the dirty log (as QEMU does after each sync).
    pub fn clear_dirty_log(&self) -> Result<(), Error> {
        let log = self.dirty_log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(log) = log.as_ref() {
            log.file.write_all_at(&vec![0u8; log.len as usize], 0)?;
        }
        Ok(())
    }

    /// The pages of guest memory `[addr, addr + len)` spans.
    pub fn pages_of(addr: GuestAddress, len: u64) -> std::ops::Range<u64> {
        addr.0 / LOG_PAGE..(addr.0 + len.max(1)).div_ceil(LOG_PAGE)
    }

    /// The guest addresses of `queue`'s rings: descriptor table, available
    /// ring, used ring.
    pub fn ring_addresses(&self, queue: usize) -> Result<(GuestAddress, GuestAddress, GuestAddress), Error> {
        Ok(self.queue(queue)?.driver.lock().unwrap_or_else(|e| e.into_inner()).addresses())
    }

    /// Stops every queue as QEMU does before it moves the device state
    /// (`GET_VRING_BASE`); returns each queue's next available index. The
    /// harness cannot use the queues afterwards.
    pub fn stop_device(&self) -> Result<Vec<u16>, Error> {
        let fe = self.frontend.lock().unwrap_or_else(|e| e.into_inner());
        let mut bases = Vec::new();
        for index in 0..self.queues.len() {
            bases.push(fe.get_vring_base(index)? as u16);
        }
        Ok(bases)
    }

    /// Saves the back end's state (`SET_DEVICE_STATE_FD` SAVE, read until
    /// EOF, `CHECK_DEVICE_STATE`). The outer error is the protocol's; the
    /// inner, a transfer the back end refused or failed.
    pub fn save_state(&self) -> Result<Result<Vec<u8>, StateError>, Error> {
        let (mut ours, theirs) = UnixStream::pair()?;
        if let Err(e) = self.send_state_fd(VhostTransferStateDirection::SAVE, theirs.into()) {
            return Ok(Err(StateError::Refused(e.to_string())));
        }
        let mut state = Vec::new();
        ours.read_to_end(&mut state)?;
        Ok(self.check_device_state().map(|()| state))
    }

    /// Loads `state` into the back end (`SET_DEVICE_STATE_FD` LOAD, write
    /// and close, `CHECK_DEVICE_STATE`).
    pub fn load_state(&self, state: &[u8]) -> Result<Result<(), StateError>, Error> {
        let (mut ours, theirs) = UnixStream::pair()?;
        if let Err(e) = self.send_state_fd(VhostTransferStateDirection::LOAD, theirs.into()) {
            return Ok(Err(StateError::Refused(e.to_string())));
        }
        // A back end that stops reading early closes its end: EPIPE here,
        // and its verdict comes from CHECK_DEVICE_STATE.
        let _ = ours.write_all(state);
        drop(ours);
        Ok(self.check_device_state())
    }

    fn send_state_fd(&self, direction: VhostTransferStateDirection, fd: OwnedFd) -> Result<(), vhost::Error> {
        let fe = self.frontend.lock().unwrap_or_else(|e| e.into_inner());
        fe.set_device_state_fd(direction, VhostTransferStatePhase::STOPPED, fd).map(drop)
    }

    fn check_device_state(&self) -> Result<(), StateError> {
        let fe = self.frontend.lock().unwrap_or_else(|e| e.into_inner());
        fe.check_device_state().map_err(|e| StateError::CheckFailed(e.to_string()))
    }
}
