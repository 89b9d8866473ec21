//! The `/dev/fuse` front end: mounts the share on the host through the
//! kernel's FUSE client and serves it with a pool of worker threads.
//!
//! Each worker reads one request from `/dev/fuse` into its own buffer, hands
//! it to the [`Server`] and writes the reply back with one `write(2)`.
//! Requests that may block for long (SETLKW) are handed to a thread of their
//! own so that they never stall the pool.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod mount;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use avpfs_server::{FileSystem, Handled, Server, SliceReader, VecWriter, MAX_REQUEST_SIZE};
use log::{error, info, warn};

pub use mount::{mount, unmount, MountOptions};

/// Errors of the `/dev/fuse` front end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening `/dev/fuse` or mounting failed.
    #[error("cannot mount {path}: {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Starting a worker thread failed.
    #[error("cannot start a worker thread: {0}")]
    Thread(#[source] io::Error),
    /// Duplicating the device descriptor failed.
    #[error("cannot duplicate the /dev/fuse descriptor: {0}")]
    Dup(#[source] io::Error),
}

/// A mounted FUSE session.
pub struct FuseSession<F: FileSystem + 'static> {
    server: Arc<Server<F>>,
    device: File,
    mountpoint: PathBuf,
}

impl<F: FileSystem + 'static> FuseSession<F> {
    /// Mounts `server` on `mountpoint`.
    pub fn mount(server: Arc<Server<F>>, mountpoint: &Path, opts: &MountOptions) -> Result<Self, Error> {
        let device = mount(mountpoint, opts).map_err(|source| Error::Mount { path: mountpoint.into(), source })?;
        info!("mounted on {}", mountpoint.display());
        Ok(FuseSession { server, device, mountpoint: mountpoint.into() })
    }

    /// A session on a `/dev/fuse` device already mounted at `mountpoint`
    /// with [`mount`] (mounted before entering a sandbox, from which the
    /// mount point may be out of sight).
    pub fn from_device(server: Arc<Server<F>>, device: File, mountpoint: &Path) -> Self {
        FuseSession { server, device, mountpoint: mountpoint.into() }
    }

    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Detaches the mount; the workers of [`FuseSession::serve`] then return.
    pub fn unmount(&self) -> io::Result<()> {
        unmount(&self.mountpoint)
    }

    /// A handle that can unmount this session from another thread.
    pub fn unmounter(&self) -> Unmounter {
        Unmounter { mountpoint: self.mountpoint.clone() }
    }

    /// Serves requests with `threads` workers until the file system is
    /// unmounted, then drops every node and handle.
    pub fn serve(&self, threads: usize) -> Result<(), Error> {
        let mut workers = Vec::new();
        // The workers log for the session the calling thread serves.
        let label = avpfs_server::log_context::current();
        for i in 0..threads.max(1) {
            let dev = self.device.try_clone().map_err(Error::Dup)?;
            let server = self.server.clone();
            let label = label.clone();
            let w = thread::Builder::new()
                .name(format!("fuse-worker-{i}"))
                .spawn(move || {
                    avpfs_server::log_context::enter(label.as_ref());
                    worker_loop(&server, dev)
                })
                .map_err(Error::Thread)?;
            workers.push(w);
        }
        for w in workers {
            let _ = w.join();
        }
        self.server.reset();
        info!("{} unmounted", self.mountpoint.display());
        Ok(())
    }
}

/// Unmounts a session from another thread (a signal handler thread).
#[derive(Debug, Clone)]
pub struct Unmounter {
    mountpoint: PathBuf,
}

impl Unmounter {
    /// Detaches the mount.
    pub fn unmount(&self) -> io::Result<()> {
        unmount(&self.mountpoint)
    }
}

fn worker_loop<F: FileSystem + 'static>(server: &Arc<Server<F>>, mut dev: File) {
    let mut buf = vec![0u8; MAX_REQUEST_SIZE];
    let mut reply = VecWriter::new(MAX_REQUEST_SIZE);
    loop {
        let n = match dev.read(&mut buf) {
            Ok(n) => n,
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOENT) => continue,
                Some(libc::ENODEV) => return,
                _ => {
                    error!("reading /dev/fuse: {e}");
                    return;
                }
            },
        };
        if n >= 8 && opcode_of(&buf[..n]) == fuse_abi::opcode::SETLKW {
            // A lock wait may last forever: give it a thread of its own.
            let request = buf[..n].to_vec();
            let server = server.clone();
            let dev = match dev.try_clone() {
                Ok(d) => d,
                Err(e) => {
                    warn!("cannot duplicate /dev/fuse for SETLKW: {e}");
                    handle_one(server.as_ref(), &request, &mut reply, &mut dev);
                    continue;
                }
            };
            let spawned = thread::Builder::new().name("fuse-setlkw".into()).spawn(move || {
                let mut dev = dev;
                let mut reply = VecWriter::new(4096);
                handle_one(server.as_ref(), &request, &mut reply, &mut dev);
            });
            if let Err(e) = spawned {
                warn!("cannot start a SETLKW thread: {e}");
            }
            continue;
        }
        handle_one(server.as_ref(), &buf[..n], &mut reply, &mut dev);
    }
}

fn opcode_of(req: &[u8]) -> u32 {
    u32::from_ne_bytes([req[4], req[5], req[6], req[7]])
}

fn handle_one<F: FileSystem>(server: &Server<F>, request: &[u8], reply: &mut VecWriter, dev: &mut File) {
    reply.clear();
    let mut reader = SliceReader::new(request);
    match server.handle_message(&mut reader, reply) {
        Ok(Handled::Reply(len)) => {
            if let Err(e) = dev.write_all(&reply.as_slice()[..len]) {
                // ENOENT: the request was interrupted and the kernel forgot it.
                if e.raw_os_error() != Some(libc::ENOENT) {
                    warn!("writing a reply to /dev/fuse: {e}");
                }
            }
        }
        Ok(Handled::NoReply) => {}
        Err(e) => warn!("dropping a request: {e}"),
    }
}
