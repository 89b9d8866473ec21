//! Directory-entry and file operations on descriptors.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::util::{cvt, err, off, retry};

/// The access mode an open file description was opened with
/// (`O_RDONLY`, `O_WRONLY` or `O_RDWR`; `O_PATH` descriptors report
/// `O_RDONLY`).
pub fn access_mode(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: F_GETFL takes no argument and `fd` is open for the call.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_ACCMODE)
}

/// Whether the descriptor number `fd` is open in this process
/// (`fcntl(F_GETFD)`; only the descriptor table is looked at).
pub fn fd_is_open(fd: std::os::fd::RawFd) -> bool {
    // SAFETY: F_GETFD takes no argument and only reads the descriptor table
    // entry; any number is harmless (EBADF).
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// `mkdirat(2)`.
pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is a valid C string; `dir` is open for the call.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })?;
    Ok(())
}

/// `mknodat(2)`; `rdev` as `libc::makedev` encodes it.
pub fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, rdev: u64) -> io::Result<()> {
    // SAFETY: `name` is a valid C string; `dir` is open for the call.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, rdev) })?;
    Ok(())
}

/// `symlinkat(2)`: creates `dir/name` pointing to `target`.
pub fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are valid C strings; `dir` is open for the call.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })?;
    Ok(())
}

/// `linkat(2)`.
pub fn linkat(
    olddir: BorrowedFd<'_>,
    oldname: &CStr,
    newdir: BorrowedFd<'_>,
    newname: &CStr,
    flags: i32,
) -> io::Result<()> {
    // SAFETY: both names are valid C strings; both descriptors are open.
    cvt(unsafe { libc::linkat(olddir.as_raw_fd(), oldname.as_ptr(), newdir.as_raw_fd(), newname.as_ptr(), flags) })?;
    Ok(())
}

/// `unlinkat(2)` (`AT_REMOVEDIR` in `flags` for a directory).
pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> io::Result<()> {
    // SAFETY: `name` is a valid C string; `dir` is open for the call.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })?;
    Ok(())
}

/// `renameat2(2)` with `RENAME_*` flags.
pub fn renameat2(
    olddir: BorrowedFd<'_>,
    oldname: &CStr,
    newdir: BorrowedFd<'_>,
    newname: &CStr,
    flags: u32,
) -> io::Result<()> {
    // SAFETY: both names are valid C strings; both descriptors are open; the
    // raw system call is used because older glibc lacks the wrapper.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            olddir.as_raw_fd(),
            oldname.as_ptr(),
            newdir.as_raw_fd(),
            newname.as_ptr(),
            flags,
        )
    })?;
    Ok(())
}

/// `readlinkat(2)`: the target of `dir/name`, or of the symlink `dir` itself
/// (an `O_PATH` descriptor) when `name` is empty.
pub fn readlinkat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `buf` is writable for `buf.len()` bytes; `name` is a valid C
    // string; `dir` is open.
    let n = cvt(unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
    let n = n as usize;
    if n >= buf.len() {
        return Err(err(libc::ENAMETOOLONG));
    }
    buf.truncate(n);
    Ok(buf)
}

/// `fallocate(2)`.
pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    let (o, l) = (off(offset)?, off(len)?);
    // SAFETY: no memory is passed; `fd` is open for the call.
    retry(|| unsafe { libc::fallocate64(fd.as_raw_fd(), mode, o, l) })?;
    Ok(())
}

/// `copy_file_range(2)` between explicit offsets (the descriptors' positions
/// are not used). Returns the bytes copied.
pub fn copy_file_range(
    fd_in: BorrowedFd<'_>,
    off_in: u64,
    fd_out: BorrowedFd<'_>,
    off_out: u64,
    len: usize,
    flags: u32,
) -> io::Result<usize> {
    let mut oi = off(off_in)?;
    let mut oo = off(off_out)?;
    // SAFETY: `oi` and `oo` are writable offsets that live for the call; no
    // other memory is passed; both descriptors are open.
    let n = retry(|| unsafe {
        libc::copy_file_range(fd_in.as_raw_fd(), &mut oi, fd_out.as_raw_fd(), &mut oo, len, flags)
    })?;
    Ok(n as usize)
}

/// `lseek(2)` (`SEEK_SET`, `SEEK_CUR`, `SEEK_END`, `SEEK_DATA`, `SEEK_HOLE`).
pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> io::Result<u64> {
    // SAFETY: no memory is passed; `fd` is open for the call.
    let r = cvt(unsafe { libc::lseek64(fd.as_raw_fd(), offset, whence) })?;
    Ok(r as u64)
}

/// `fsync(2)`, or `fdatasync(2)` when `datasync`.
pub fn fsync(fd: BorrowedFd<'_>, datasync: bool) -> io::Result<()> {
    // SAFETY: no memory is passed; `fd` is open for the call.
    retry(|| unsafe {
        if datasync {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    })?;
    Ok(())
}

/// `syncfs(2)` (needs a descriptor that is not `O_PATH`).
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no memory is passed; `fd` is open for the call.
    cvt(unsafe { libc::syncfs(fd.as_raw_fd()) })?;
    Ok(())
}

/// `ftruncate(2)` (needs a descriptor open for writing).
pub fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    let s = off(size)?;
    // SAFETY: no memory is passed; `fd` is open for the call.
    retry(|| unsafe { libc::ftruncate64(fd.as_raw_fd(), s) })?;
    Ok(())
}

/// `fchmod(2)` (needs a descriptor that is not `O_PATH`).
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: no memory is passed; `fd` is open for the call.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })?;
    Ok(())
}

/// `fchmodat(2)` (follows a final symlink: use it on magic links only).
pub fn fchmodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is a valid C string; `dir` is open for the call.
    cvt(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) })?;
    Ok(())
}

/// `fchownat(2)`; `u32::MAX` leaves an id unchanged. With an empty name and
/// `AT_EMPTY_PATH` it changes the file `dir` refers to (works on `O_PATH`).
pub fn fchownat(dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32, flags: i32) -> io::Result<()> {
    // SAFETY: `name` is a valid C string; `dir` is open for the call.
    cvt(unsafe { libc::fchownat(dir.as_raw_fd(), name.as_ptr(), uid, gid, flags) })?;
    Ok(())
}

/// `fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)`.
pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    fchownat(fd, c"", uid, gid, libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW)
}

/// `utimensat(2)`; `UTIME_NOW`/`UTIME_OMIT` in `tv_nsec` as usual.
pub fn utimensat(dir: BorrowedFd<'_>, name: &CStr, times: &[libc::timespec; 2], flags: i32) -> io::Result<()> {
    // SAFETY: `name` is a valid C string and `times` two readable timespecs;
    // `dir` is open for the call.
    cvt(unsafe { libc::utimensat(dir.as_raw_fd(), name.as_ptr(), times.as_ptr(), flags) })?;
    Ok(())
}

/// `futimens(3)` (needs a descriptor that is not `O_PATH`).
pub fn futimens(fd: BorrowedFd<'_>, times: &[libc::timespec; 2]) -> io::Result<()> {
    // SAFETY: `times` are two readable timespecs; `fd` is open for the call.
    cvt(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })?;
    Ok(())
}

/// `faccessat(2)`.
pub fn faccessat(dir: BorrowedFd<'_>, name: &CStr, mode: i32, flags: i32) -> io::Result<()> {
    // SAFETY: `name` is a valid C string; `dir` is open for the call.
    cvt(unsafe { libc::faccessat(dir.as_raw_fd(), name.as_ptr(), mode, flags) })?;
    Ok(())
}

/// Duplicates `fd` (with `O_CLOEXEC`).
pub fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

/// Duplicates `fd` and closes the duplicate, reporting the error of
/// `close(2)`: a host file system's "last close of a descriptor" work (NFS
/// write-back) runs as for a close in the client, while the file stays open.
pub fn flush_by_close(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no memory is passed; `fd` is open for the call.
    let d = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `d` is a new descriptor that we own and close exactly once.
    let r = unsafe { libc::close(d) };
    if r == -1 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Grows this process's descriptor table to at least `slots` descriptors
/// (at most the `RLIMIT_NOFILE` soft limit) by duplicating `fd` to the last
/// of them and closing the duplicate; the table never shrinks. Returns the
/// size asked of the kernel.
///
/// Why: the kernel grows the table by doubling when a descriptor number
/// outgrows it, and in a process of several threads each growth first waits
/// for an RCU grace period (`synchronize_rcu` in `expand_fdtable`, 10-20 ms
/// here), while every thread that needs a descriptor beyond the old table
/// waits with it. Reserved early, in a single-threaded process, the growth
/// costs nothing but the table's memory (8 bytes a slot).
pub fn reserve_descriptor_table(fd: BorrowedFd<'_>, slots: u32) -> io::Result<u32> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `rl` is a valid rlimit for the kernel to fill.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })?;
    let slots = u64::from(slots).min(rl.rlim_cur) as u32;
    if slots == 0 {
        return Ok(0);
    }
    let last = libc::c_int::try_from(slots - 1).map_err(|_| err(libc::EINVAL))?;
    // SAFETY: no memory is passed; `fd` is open for the call.
    let d = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, last) })?;
    // SAFETY: `d` is a new descriptor that we own and close exactly once.
    unsafe { libc::close(d) };
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_mode_is_the_open_mode() {
        use std::os::fd::AsFd;
        let dir = std::env::temp_dir().join(format!("avpfs-access-mode-{}", std::process::id()));
        std::fs::write(&dir, b"x").unwrap();
        let ro = std::fs::File::open(&dir).unwrap();
        let wo = std::fs::OpenOptions::new().write(true).open(&dir).unwrap();
        let rw = std::fs::OpenOptions::new().read(true).write(true).open(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(access_mode(ro.as_fd()).unwrap(), libc::O_RDONLY);
        assert_eq!(access_mode(wo.as_fd()).unwrap(), libc::O_WRONLY);
        assert_eq!(access_mode(rw.as_fd()).unwrap(), libc::O_RDWR);
    }
    use crate::open::{open_beneath, open_path};

    #[test]
    fn open_descriptors_are_told_from_closed_ones() {
        let f = tempfile::tempfile().unwrap();
        assert!(fd_is_open(f.as_raw_fd()));
        let n = f.as_raw_fd();
        drop(f);
        assert!(!fd_is_open(n) || n < 3);
        assert!(!fd_is_open(-1));
        assert!(!fd_is_open(i32::MAX));
    }
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    /// The table size the kernel shows in /proc/self/status.
    fn fd_table_size() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[test]
    fn the_descriptor_table_is_grown_and_the_duplicate_closed() {
        let t = tempfile::tempdir().unwrap();
        let d = open_path(t.path(), libc::O_PATH | libc::O_DIRECTORY).unwrap();
        let reserved = reserve_descriptor_table(d.as_fd(), 1 << 14).unwrap();
        assert!(reserved >= 256, "RLIMIT_NOFILE below 256? reserved {reserved}");
        assert!(fd_table_size() >= reserved, "table of {} slots after reserving {reserved}", fd_table_size());
        // SAFETY: F_GETFD on a descriptor number only reads its flags.
        let open = unsafe { libc::fcntl(reserved as i32 - 1, libc::F_GETFD) };
        assert_eq!(open, -1, "the duplicate at {} was left open", reserved - 1);
        // Never beyond the soft limit (the kernel would refuse).
        assert_eq!(reserve_descriptor_table(d.as_fd(), u32::MAX).unwrap() as u64, {
            let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: `rl` is a valid rlimit to fill.
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
            rl.rlim_cur.min(u64::from(u32::MAX))
        });
    }

    #[test]
    fn entry_operations() {
        let t = tempfile::tempdir().unwrap();
        let d = open_path(t.path(), libc::O_PATH | libc::O_DIRECTORY).unwrap();
        let d = d.as_fd();
        mkdirat(d, c"dir", 0o755).unwrap();
        mknodat(d, c"fifo", libc::S_IFIFO | 0o644, 0).unwrap();
        symlinkat(c"dir", d, c"link").unwrap();
        let l = open_beneath(d, c"link", libc::O_PATH, 0).unwrap();
        assert_eq!(readlinkat(l.as_fd(), c"").unwrap(), b"dir");
        assert_eq!(readlinkat(d, c"link").unwrap(), b"dir");
        linkat(d, c"fifo", d, c"fifo2", 0).unwrap();
        assert_eq!(std::fs::metadata(t.path().join("fifo")).unwrap().nlink(), 2);
        renameat2(d, c"fifo2", d, c"fifo", libc::RENAME_NOREPLACE).unwrap_err();
        renameat2(d, c"fifo2", d, c"dir", libc::RENAME_EXCHANGE).unwrap();
        assert!(std::fs::metadata(t.path().join("fifo2")).unwrap().is_dir());
        unlinkat(d, c"dir", 0).unwrap();
        unlinkat(d, c"fifo2", libc::AT_REMOVEDIR).unwrap();
        let f = open_beneath(d, c"fifo", libc::O_PATH, 0).unwrap();
        fchown(f.as_fd(), 12, 34).unwrap_or_else(|e| assert_eq!(e.raw_os_error(), Some(libc::EPERM)));
        faccessat(d, c"fifo", libc::F_OK, 0).unwrap();
    }

    #[test]
    fn file_operations() {
        let t = tempfile::tempdir().unwrap();
        let d = open_path(t.path(), libc::O_PATH | libc::O_DIRECTORY).unwrap();
        let f = open_beneath(d.as_fd(), c"f", libc::O_RDWR | libc::O_CREAT, 0o644).unwrap();
        let f = f.as_fd();
        fallocate(f, 0, 0, 8192).unwrap();
        assert_eq!(std::fs::metadata(t.path().join("f")).unwrap().len(), 8192);
        fallocate(f, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 0, 4096).unwrap();
        crate::io::pwrite(f, b"abc", 1 << 20).unwrap();
        let data = lseek(f, 0, libc::SEEK_DATA).unwrap();
        assert!(data >= 4096, "hole at the start, data at {data}");
        let hole = lseek(f, 1 << 20, libc::SEEK_HOLE).unwrap();
        assert!(hole > 1 << 20);
        let g = open_beneath(d.as_fd(), c"g", libc::O_RDWR | libc::O_CREAT, 0o644).unwrap();
        assert_eq!(copy_file_range(f, 1 << 20, g.as_fd(), 10, 3, 0).unwrap(), 3);
        let mut buf = [0u8; 3];
        crate::io::pread(g.as_fd(), &mut buf, 10).unwrap();
        assert_eq!(&buf, b"abc");
        fsync(f, false).unwrap();
        fsync(f, true).unwrap();
        syncfs(f).unwrap();
        ftruncate(f, 5).unwrap();
        fchmod(f, 0o600).unwrap();
        let ts = [libc::timespec { tv_sec: 100, tv_nsec: 5 }, libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT }];
        futimens(f, &ts).unwrap();
        let m = std::fs::metadata(t.path().join("f")).unwrap();
        assert_eq!((m.len(), m.mode() & 0o777, m.atime(), m.atime_nsec()), (5, 0o600, 100, 5));
        utimensat(d.as_fd(), c"f", &ts, libc::AT_SYMLINK_NOFOLLOW).unwrap();
        flush_by_close(f).unwrap();
        assert!(fchmodat(d.as_fd(), c"f", 0o644).is_ok());
    }
}
