//! The VMM's side of the DAX window: the back end's SHMEM_MAP and
//! SHMEM_UNMAP requests on the back-end channel, answered by really mapping
//! the received descriptor into a local reservation of the window's size
//! ([`avpfs_sys::window::Window`]), and recorded for the tests.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use avpfs_sys::window::Window;
use log::debug;
use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{Error as VhostUserError, FrontendReqHandler, HandlerResult, VhostUserFrontendReqHandler};

/// One request the back end sent on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShmemRequest {
    /// SHMEM_MAP.
    Map {
        /// Offset in the window.
        shm_offset: u64,
        /// Length.
        len: u64,
        /// Offset in the file.
        fd_offset: u64,
        /// A writable mapping.
        writable: bool,
    },
    /// A SHMEM_MAP that QEMU 11.1 refuses (and then closes the channel):
    /// longer than the file, or of a read-only descriptor.
    Refused {
        /// Offset in the window.
        shm_offset: u64,
    },
    /// SHMEM_UNMAP.
    Unmap {
        /// Offset in the window.
        shm_offset: u64,
        /// Length.
        len: u64,
    },
}

/// The DAX window of the harness: shared-memory region 0.
pub struct DaxFrontEnd {
    window: Window,
    qemu11: bool,
    requests: Mutex<Vec<ShmemRequest>>,
}

impl DaxFrontEnd {
    /// A window of `size` bytes, answering as QEMU 11.1 does with `qemu11`
    /// (see [`crate::HarnessConfig::qemu11_shmem`]).
    pub fn new(size: u64, qemu11: bool) -> io::Result<Self> {
        Ok(DaxFrontEnd { window: Window::new(size)?, qemu11, requests: Mutex::new(Vec::new()) })
    }

    /// The window.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Takes the requests received so far.
    pub fn take_requests(&self) -> Vec<ShmemRequest> {
        std::mem::take(&mut *self.requests.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record(&self, r: ShmemRequest) {
        debug!("harness: back end sent {r:?}");
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }

    /// Serves the back-end channel of `handler` on a thread of its own,
    /// until the back end closes it.
    pub(crate) fn serve(mut handler: FrontendReqHandler<DaxFrontEnd>) -> JoinHandle<()> {
        std::thread::spawn(move || loop {
            match handler.handle_request() {
                Ok(_) | Err(VhostUserError::ReqHandlerError(_)) => {}
                Err(e) => {
                    debug!("harness: back-end channel ends: {e}");
                    return;
                }
            }
        })
    }
}

fn shmid_ok(req: &VhostUserMMap) -> HandlerResult<()> {
    if req.shmid == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    }
}

impl VhostUserFrontendReqHandler for DaxFrontEnd {
    fn shmem_map(&self, req: &VhostUserMMap, fd: &dyn AsRawFd) -> HandlerResult<u64> {
        // Copies: the message is a packed struct.
        let (shm_offset, len, fd_offset, flags) = (req.shm_offset, req.len, req.fd_offset, req.flags);
        let writable = flags & VhostUserMMapFlags::WRITABLE.bits() != 0;
        self.record(ShmemRequest::Map { shm_offset, len, fd_offset, writable });
        shmid_ok(req)?;
        if self.qemu11 {
            // QEMU 11.1 checks the file's size, then maps shared and writable.
            let size = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok().map(|m| m.len());
            let r = match size {
                Some(size) if size >= fd_offset.saturating_add(len) => {
                    self.window.map_file(shm_offset, len, fd, fd_offset, true)
                }
                _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
            };
            if let Err(e) = r {
                self.record(ShmemRequest::Refused { shm_offset });
                return Err(e);
            }
            return Ok(0);
        }
        self.window.map_file(shm_offset, len, fd, fd_offset, writable)?;
        Ok(0)
    }

    fn shmem_unmap(&self, req: &VhostUserMMap) -> HandlerResult<u64> {
        let (shm_offset, len) = (req.shm_offset, req.len);
        self.record(ShmemRequest::Unmap { shm_offset, len });
        shmid_ok(req)?;
        self.window.unmap(shm_offset, len)?;
        Ok(0)
    }
}

/// The handler and its window, for [`crate::Harness`].
pub(crate) fn handler(size: u64, qemu11: bool) -> io::Result<(Arc<DaxFrontEnd>, FrontendReqHandler<DaxFrontEnd>)> {
    let dax = Arc::new(DaxFrontEnd::new(size, qemu11)?);
    let handler = FrontendReqHandler::new(dax.clone()).map_err(io::Error::other)?;
    Ok((dax, handler))
}
