//! [`ShmemWindow`]: the DAX window as a vhost-user shared-memory region.
//!
//! The back end offers protocol feature SHMEM and one region (id 0) in
//! GET_SHMEM_CONFIG; the VMM exposes it to the guest as the virtio-fs cache
//! (the DAX window). Each mapping the server accepts becomes a SHMEM_MAP
//! request with the file's descriptor on the back-end channel, each
//! removal a SHMEM_UNMAP; with REPLY_ACK the VMM's answer is awaited, so a
//! mapping the VMM refuses fails the guest's request.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Mutex;

use avpfs_server::{DaxFrontEnd, DaxWindow};
use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{Backend, VhostUserFrontendReqHandler};

/// The id of the one shared-memory region: the DAX window.
pub const DAX_SHMID: u8 = 0;

/// The DAX window of one front-end connection.
pub struct ShmemWindow {
    size: u64,
    front_end: DaxFrontEnd,
    /// The back-end request channel, once the front end has sent it.
    backend: Mutex<Option<Backend>>,
}

impl ShmemWindow {
    /// A window of `size` bytes mapped by a front end that maps as
    /// `front_end` says, without a channel yet.
    pub fn new(size: u64, front_end: DaxFrontEnd) -> Self {
        ShmemWindow { size, front_end, backend: Mutex::new(None) }
    }

    /// Sets the back-end request channel (SET_BACKEND_REQ_FD).
    pub fn set_backend(&self, backend: Backend) {
        *self.backend.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend);
    }

    fn backend(&self) -> io::Result<Backend> {
        self.backend
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no back-end request channel"))
    }
}

/// EIO for a front end that refused or a channel that broke: the guest
/// learns the mapping failed, not why.
fn front_end_error(e: io::Error) -> io::Error {
    log::warn!("DAX: the front end refused a shared-memory request: {e}");
    if e.raw_os_error().is_some() {
        e
    } else {
        io::Error::from_raw_os_error(libc::EIO)
    }
}

impl DaxWindow for ShmemWindow {
    fn size(&self) -> u64 {
        self.size
    }

    fn front_end(&self) -> DaxFrontEnd {
        self.front_end
    }

    fn map(&self, fd: BorrowedFd<'_>, foffset: u64, moffset: u64, len: u64, writable: bool) -> io::Result<()> {
        let flags = if writable { VhostUserMMapFlags::WRITABLE } else { VhostUserMMapFlags::empty() };
        let req = VhostUserMMap {
            shmid: DAX_SHMID,
            padding: [0; 7],
            fd_offset: foffset,
            shm_offset: moffset,
            len,
            flags: flags.bits(),
        };
        let raw = fd.as_raw_fd();
        self.backend()?.shmem_map(&req, &raw).map(drop).map_err(front_end_error)
    }

    fn unmap(&self, moffset: u64, len: u64) -> io::Result<()> {
        let req = VhostUserMMap { shmid: DAX_SHMID, shm_offset: moffset, len, ..Default::default() };
        self.backend()?.shmem_unmap(&req).map(drop).map_err(front_end_error)
    }
}
