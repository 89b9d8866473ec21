//! Positional reads and writes.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::util::{off, retry};

/// `pread(2)`, retried on `EINTR`.
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let o = off(offset)?;
    // SAFETY: `buf` is writable for `buf.len()` bytes during the call; `fd` is open.
    let n = retry(|| unsafe { libc::pread64(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), o) })?;
    Ok(n as usize)
}

/// `pwrite(2)`, retried on `EINTR`.
pub fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> io::Result<usize> {
    let o = off(offset)?;
    // SAFETY: `buf` is readable for `buf.len()` bytes during the call; `fd` is open.
    let n = retry(|| unsafe { libc::pwrite64(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), o) })?;
    Ok(n as usize)
}

/// `preadv(2)`, retried on `EINTR`.
pub fn preadv(fd: BorrowedFd<'_>, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<usize> {
    let o = off(offset)?;
    let cnt = bufs.len().min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: `IoSliceMut` is ABI-compatible with `struct iovec` and each
    // describes a writable buffer borrowed for the call; `fd` is open.
    let n = retry(|| unsafe { libc::preadv64(fd.as_raw_fd(), bufs.as_mut_ptr().cast(), cnt, o) })?;
    Ok(n as usize)
}

/// `pwritev(2)`, retried on `EINTR`.
pub fn pwritev(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
    let o = off(offset)?;
    let cnt = bufs.len().min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: `IoSlice` is ABI-compatible with `struct iovec` and each
    // describes a readable buffer borrowed for the call; `fd` is open.
    let n = retry(|| unsafe { libc::pwritev64(fd.as_raw_fd(), bufs.as_ptr().cast(), cnt, o) })?;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn vectored_round_trip() {
        let f = tempfile::tempfile().unwrap();
        let n = pwritev(f.as_fd(), &[IoSlice::new(b"hello "), IoSlice::new(b"world")], 3).unwrap();
        assert_eq!(n, 11);
        let (mut a, mut b) = ([0u8; 5], [0u8; 6]);
        let n = preadv(f.as_fd(), &mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)], 4).unwrap();
        assert_eq!(n, 10);
        assert_eq!((&a, &b[..5]), (b"ello ", &b"world"[..]));
        let mut c = [0u8; 4];
        assert_eq!(pread(f.as_fd(), &mut c, 0).unwrap(), 4);
        assert_eq!(c, [0, 0, 0, b'h']);
        assert_eq!(pwrite(f.as_fd(), b"x", 100).unwrap(), 1);
    }
}
