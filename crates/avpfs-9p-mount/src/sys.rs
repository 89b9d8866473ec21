//! The helper's two system calls, each behind a safe function.
//!
//! They stay here rather than in `avpfs-sys` because the helper runs in the
//! guest, built static on its own; it needs nothing else from the host
//! daemon's system-call layer.

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// Opens an `AF_VSOCK` stream socket connected to `cid`:`port`.
pub fn vsock_connect(cid: u32, port: u32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the result is checked below.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open, and nothing else
    // owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let addr = libc::sockaddr_vm {
        svm_family: libc::AF_VSOCK as libc::sa_family_t,
        svm_reserved1: 0,
        svm_port: port,
        svm_cid: cid,
        svm_zero: [0; 4],
    };
    let len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: `addr` is a fully initialised sockaddr_vm that outlives the
    // call, and `len` is its exact size; `fd` is open, owned by `socket`.
    let rc = unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_vm).cast::<libc::sockaddr>(), len) };
    // No signal handler is installed, so EINTR (after which the connection
    // would go on in the background) cannot happen.
    if rc == 0 {
        Ok(socket)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// mount(2) with a NUL-terminated option string.
pub fn mount(source: &CStr, target: &CStr, fstype: &CStr, flags: libc::c_ulong, data: &CStr) -> io::Result<()> {
    // SAFETY: every pointer is a valid NUL-terminated string borrowed for the
    // duration of the call; for 9p, `data` is read as a string.
    let rc = unsafe {
        libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data.as_ptr().cast::<libc::c_void>())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
