//! Reading directories with `getdents64(2)`.
//!
//! Each entry carries `d_off`, an opaque cookie of the file system: seeking
//! the directory descriptor to it (`lseek(SEEK_SET)`) continues the listing
//! right after that entry, which is what `telldir`/`seekdir` and the FUSE
//! READDIR offset need.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::util::retry;

/// Size of the fixed part of `struct linux_dirent64` (before `d_name`).
const HEADER: usize = 19;

/// One entry of a `getdents64` buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDirEntry<'a> {
    /// Inode number.
    pub ino: u64,
    /// The cookie to seek to for the entry after this one.
    pub off: u64,
    /// File type (`DT_*`).
    pub typ: u8,
    /// Name, without NUL.
    pub name: &'a [u8],
}

/// `getdents64(2)`: fills `buf` with entries from the directory's current
/// position. Returns the bytes filled; 0 at the end of the directory.
pub fn getdents64(dir: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for `buf.len()` bytes during the call; `dir` is open.
    let n = retry(|| unsafe { libc::syscall(libc::SYS_getdents64, dir.as_raw_fd(), buf.as_mut_ptr(), buf.len()) })?;
    Ok(n as usize)
}

/// Positions `dir` at `cookie` (0: the start) and reads one buffer of entries.
pub fn read_dir_at(dir: BorrowedFd<'_>, cookie: u64, buf: &mut [u8]) -> io::Result<usize> {
    // Cookies are opaque 64-bit values; lseek takes them as off_t bit patterns.
    crate::fs::lseek(dir, cookie as i64, libc::SEEK_SET)?;
    getdents64(dir, buf)
}

/// The entries of a filled `getdents64` buffer. A malformed record ends the
/// iteration instead of panicking.
#[derive(Debug, Clone)]
pub struct DirEntries<'a> {
    buf: &'a [u8],
}

impl<'a> DirEntries<'a> {
    /// Iterates over the first `len` bytes `getdents64` filled in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        DirEntries { buf }
    }
}

impl<'a> Iterator for DirEntries<'a> {
    type Item = RawDirEntry<'a>;

    fn next(&mut self) -> Option<RawDirEntry<'a>> {
        let b = self.buf;
        if b.len() < HEADER {
            return None;
        }
        let ino = u64::from_ne_bytes(b[0..8].try_into().ok()?);
        let off = u64::from_ne_bytes(b[8..16].try_into().ok()?);
        let reclen = u16::from_ne_bytes(b[16..18].try_into().ok()?) as usize;
        let typ = b[18];
        if reclen < HEADER || reclen > b.len() {
            self.buf = &[];
            return None;
        }
        let name_area = &b[HEADER..reclen];
        let name = match name_area.iter().position(|&c| c == 0) {
            Some(n) => &name_area[..n],
            None => name_area,
        };
        self.buf = &b[reclen..];
        Some(RawDirEntry { ino, off, typ, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn list(dir: BorrowedFd<'_>, cookie: u64, bufsize: usize) -> Vec<(Vec<u8>, u64)> {
        let mut buf = vec![0u8; bufsize];
        let n = read_dir_at(dir, cookie, &mut buf).unwrap();
        DirEntries::new(&buf[..n]).map(|e| (e.name.to_vec(), e.off)).collect()
    }

    #[test]
    fn continue_from_a_cookie() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..50 {
            std::fs::write(t.path().join(format!("file-{i:02}")), b"").unwrap();
        }
        let d = std::fs::File::open(t.path()).unwrap();
        let all = list(d.as_fd(), 0, 64 * 1024);
        assert_eq!(all.len(), 52);
        assert!(all.iter().any(|(n, _)| n == b"."));
        // Continue after the 10th entry: the rest, in the same order.
        let rest = list(d.as_fd(), all[9].1, 64 * 1024);
        assert_eq!(rest, all[10..].to_vec());
        // A small buffer returns a prefix.
        let few = list(d.as_fd(), 0, 100);
        assert!(!few.is_empty() && few.len() < 52);
        assert_eq!(few[..], all[..few.len()]);
    }

    #[test]
    fn malformed_buffers_end_iteration() {
        assert_eq!(DirEntries::new(&[0u8; 10]).count(), 0);
        let mut b = [0u8; 24];
        b[16] = 200; // reclen beyond the buffer
        assert_eq!(DirEntries::new(&b).count(), 0);
    }
}
