//! `statx`, `fstatat` and `fstatfs`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::util::cvt;

/// The `statx` mask the passthrough asks for: basic stats and the mount id.
pub const STATX_WANTED: u32 = libc::STATX_BASIC_STATS | libc::STATX_MNT_ID;

/// `statx(2)` of `name` relative to `dir`.
pub fn statx(dir: BorrowedFd<'_>, name: &CStr, flags: i32, mask: u32) -> io::Result<libc::statx> {
    // SAFETY: an all-zero `statx` is a valid value (plain integers).
    let mut st: libc::statx = unsafe { core::mem::zeroed() };
    // SAFETY: `name` is a valid C string, `st` a writable statx; both outlive
    // the call and `dir` is open.
    cvt(unsafe { libc::statx(dir.as_raw_fd(), name.as_ptr(), flags, mask, &mut st) })?;
    Ok(st)
}

/// `statx(2)` of the file `fd` refers to (`AT_EMPTY_PATH`, works on `O_PATH`
/// descriptors and symlinks), asking for [`STATX_WANTED`].
pub fn fstatx(fd: BorrowedFd<'_>) -> io::Result<libc::statx> {
    statx(fd, c"", libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW, STATX_WANTED)
}

/// `fstatat(2)` of `name` relative to `dir`.
pub fn fstatat(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> io::Result<libc::stat64> {
    // SAFETY: an all-zero `stat64` is a valid value (plain integers).
    let mut st: libc::stat64 = unsafe { core::mem::zeroed() };
    // SAFETY: `name` is a valid C string, `st` a writable stat64; `dir` is open.
    cvt(unsafe { libc::fstatat64(dir.as_raw_fd(), name.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// `fstat` of the file `fd` refers to (works on `O_PATH` descriptors).
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat64> {
    fstatat(fd, c"", libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW)
}

/// `fstatfs(2)` of the file system `fd` is on (works on `O_PATH` descriptors).
pub fn fstatfs(fd: BorrowedFd<'_>) -> io::Result<libc::statfs64> {
    // SAFETY: an all-zero `statfs64` is a valid value (plain integers).
    let mut st: libc::statfs64 = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a writable statfs64 that outlives the call; `fd` is open.
    cvt(unsafe { libc::fstatfs64(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn stats_agree() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"abc").unwrap();
        let d = std::fs::File::open(t.path()).unwrap();
        let sx = statx(d.as_fd(), c"f", libc::AT_SYMLINK_NOFOLLOW, STATX_WANTED).unwrap();
        let st = fstatat(d.as_fd(), c"f", libc::AT_SYMLINK_NOFOLLOW).unwrap();
        assert_eq!(sx.stx_ino, st.st_ino);
        assert_eq!(sx.stx_size, 3);
        assert_ne!(sx.stx_mask & libc::STATX_MNT_ID, 0, "kernel reports mount ids");
        let dx = fstatx(d.as_fd()).unwrap();
        assert_eq!(u32::from(dx.stx_mode) & libc::S_IFMT, libc::S_IFDIR);
        assert_eq!(fstat(d.as_fd()).unwrap().st_ino, dx.stx_ino);
        assert!(fstatfs(d.as_fd()).unwrap().f_bsize > 0);
    }
}
