//! Extended attributes, by path (`getxattr`, ... — used on
//! `/proc/self/fd/N` for `O_PATH` descriptors, which the `f*xattr` calls
//! reject) and by descriptor.
//!
//! The path calls here follow a final symlink on purpose: the magic link
//! `/proc/self/fd/N` must be followed to reach the file; it leads to the
//! inode `N` refers to (a symlink itself when `N` was opened with
//! `O_PATH|O_NOFOLLOW`), never further. Do not use them on other paths.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::util::{cvt, err};

/// Where an extended attribute call is directed.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A path, followed (a `/proc/self/fd/N` magic link).
    Path(&'a CStr),
    /// An open descriptor (not `O_PATH`).
    Fd(BorrowedFd<'a>),
}

/// Grows a buffer for a size-returning call until the value fits (the value
/// may grow between the probe and the read: `ERANGE` makes us try again).
fn read_sized(mut call: impl FnMut(*mut libc::c_void, usize) -> isize) -> io::Result<Vec<u8>> {
    for _ in 0..8 {
        let size = cvt(call(core::ptr::null_mut(), 0))? as usize;
        let mut buf = vec![0u8; size];
        if size == 0 {
            return Ok(buf);
        }
        match cvt(call(buf.as_mut_ptr().cast(), buf.len())) {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(err(libc::ERANGE))
}

/// The value of attribute `name`.
pub fn get(target: Target<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    read_sized(|p, n| match target {
        // SAFETY: `p` is null with size 0 (a probe) or writable for `n`
        // bytes; the strings are valid C strings.
        Target::Path(path) => unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), p, n) },
        // SAFETY: as above; the descriptor is open for the call.
        Target::Fd(fd) => unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), p, n) },
    })
}

/// The NUL-separated list of attribute names.
pub fn list(target: Target<'_>) -> io::Result<Vec<u8>> {
    read_sized(|p, n| match target {
        // SAFETY: `p` is null with size 0 (a probe) or writable for `n`
        // bytes; the path is a valid C string.
        Target::Path(path) => unsafe { libc::listxattr(path.as_ptr(), p.cast(), n) },
        // SAFETY: as above; the descriptor is open for the call.
        Target::Fd(fd) => unsafe { libc::flistxattr(fd.as_raw_fd(), p.cast(), n) },
    })
}

/// Sets attribute `name` to `value` (`XATTR_CREATE`/`XATTR_REPLACE` in `flags`).
pub fn set(target: Target<'_>, name: &CStr, value: &[u8], flags: i32) -> io::Result<()> {
    let (v, n) = (value.as_ptr().cast(), value.len());
    match target {
        // SAFETY: `value` is readable for `n` bytes; the strings are valid C strings.
        Target::Path(path) => cvt(unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), v, n, flags) })?,
        // SAFETY: as above; the descriptor is open for the call.
        Target::Fd(fd) => cvt(unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), v, n, flags) })?,
    };
    Ok(())
}

/// Removes attribute `name`.
pub fn remove(target: Target<'_>, name: &CStr) -> io::Result<()> {
    match target {
        // SAFETY: both strings are valid C strings.
        Target::Path(path) => cvt(unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) })?,
        // SAFETY: `name` is a valid C string; the descriptor is open for the call.
        Target::Fd(fd) => cvt(unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()) })?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open::{open_beneath, open_path, ProcSelfFd};
    use std::os::fd::AsFd;

    #[test]
    fn xattrs_by_fd_and_by_proc_path() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"").unwrap();
        let d = open_path(t.path(), libc::O_PATH | libc::O_DIRECTORY).unwrap();
        let p = open_beneath(d.as_fd(), c"f", libc::O_PATH, 0).unwrap();
        let proc = ProcSelfFd::open().unwrap();
        let path = proc.path_of(p.as_fd());
        let tp = Target::Path(&path);
        match set(tp, c"user.avpfs", b"v1", 0) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return,
            r => r.unwrap(),
        }
        assert_eq!(get(tp, c"user.avpfs").unwrap(), b"v1");
        assert_eq!(set(tp, c"user.avpfs", b"v2", libc::XATTR_CREATE).unwrap_err().raw_os_error(), Some(libc::EEXIST));
        let f = proc.reopen(p.as_fd(), libc::O_RDONLY).unwrap();
        let tf = Target::Fd(f.as_fd());
        set(tf, c"user.other", b"", 0).unwrap();
        assert_eq!(get(tf, c"user.other").unwrap(), b"");
        let names = list(tp).unwrap();
        assert!(names.split(|&c| c == 0).any(|n| n == b"user.avpfs"));
        assert!(names.split(|&c| c == 0).any(|n| n == b"user.other"));
        remove(tf, c"user.avpfs").unwrap();
        assert_eq!(get(tp, c"user.avpfs").unwrap_err().raw_os_error(), Some(libc::ENODATA));
        // Through an O_PATH descriptor the f* calls fail: that is why paths exist.
        assert_eq!(get(Target::Fd(p.as_fd()), c"user.other").unwrap_err().raw_os_error(), Some(libc::EBADF));
    }
}
