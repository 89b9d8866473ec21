//! Thin, checked wrappers over the system calls the cases use.
//!
//! All the crate's `unsafe` for plain system calls lives here: each wrapper
//! turns Rust values into C arguments, makes one call and maps `-1` to the
//! `errno` error. Cases only see safe functions returning `io::Result`.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A name or path converted for C; an interior NUL gives `EINVAL`.
pub fn cstr(s: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        // A non-negative ssize_t always fits in usize.
        Ok(r as usize)
    }
}

fn cvt_off(r: libc::off_t) -> io::Result<i64> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Takes ownership of a descriptor a system call just returned.
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: `fd` was just returned by a successful system call that
    // creates a new descriptor, so it is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The parts of `struct stat` the cases look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// `st_nlink`.
    pub nlink: u64,
    /// `st_uid`.
    pub uid: u32,
    /// `st_gid`.
    pub gid: u32,
    /// `st_size`.
    pub size: i64,
    /// `st_rdev`.
    pub rdev: u64,
    /// `st_dev` (never recorded: differs between file systems).
    pub dev: u64,
    /// `st_ino` (never recorded: differs between file systems).
    pub ino: u64,
    /// `st_atime`, `st_atime_nsec`.
    pub atime: (i64, i64),
    /// `st_mtime`, `st_mtime_nsec`.
    pub mtime: (i64, i64),
    /// `st_ctime`, `st_ctime_nsec`.
    pub ctime: (i64, i64),
}

impl Stat {
    fn from_raw(st: &libc::stat) -> Self {
        Stat {
            mode: st.st_mode,
            nlink: st.st_nlink,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size,
            rdev: st.st_rdev,
            dev: st.st_dev,
            ino: st.st_ino,
            atime: (st.st_atime, st.st_atime_nsec),
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// The file type as a word (`reg`, `dir`, `lnk`, `fifo`, `chr`, ...).
    pub fn kind(&self) -> &'static str {
        match self.mode & libc::S_IFMT {
            libc::S_IFREG => "reg",
            libc::S_IFDIR => "dir",
            libc::S_IFLNK => "lnk",
            libc::S_IFIFO => "fifo",
            libc::S_IFCHR => "chr",
            libc::S_IFBLK => "blk",
            libc::S_IFSOCK => "sock",
            _ => "unknown",
        }
    }

    /// Permission bits including setuid/setgid/sticky.
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }

    /// Whether two stats name the same inode.
    pub fn same_file(&self, other: &Stat) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }

    /// A deterministic one-line summary: type, permission bits, link
    /// count, owner and (not for directories, whose size is file-system
    /// specific) size.
    pub fn summary(&self) -> String {
        let mut s =
            format!("{} perm={:o} nlink={} uid={} gid={}", self.kind(), self.perm(), self.nlink, self.uid, self.gid);
        if self.kind() != "dir" {
            s.push_str(&format!(" size={}", self.size));
        }
        s
    }
}

/// `fstat(2)`.
pub fn fstat(f: &impl AsFd) -> io::Result<Stat> {
    // SAFETY: an all-zero `struct stat` is a valid value of this plain C
    // struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is valid for the borrow and `st` is a valid,
    // writable `struct stat`.
    cvt(unsafe { libc::fstat(f.as_fd().as_raw_fd(), &mut st) })?;
    Ok(Stat::from_raw(&st))
}

/// `stat(2)` or `lstat(2)` on a path.
pub fn stat_path(path: &Path, follow: bool) -> io::Result<Stat> {
    let c = cstr(path)?;
    // SAFETY: an all-zero `struct stat` is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated string and `st` is writable.
    let r = unsafe {
        if follow {
            libc::stat(c.as_ptr(), &mut st)
        } else {
            libc::lstat(c.as_ptr(), &mut st)
        }
    };
    cvt(r)?;
    Ok(Stat::from_raw(&st))
}

/// A `timespec` with the given seconds and nanoseconds (or `UTIME_NOW` /
/// `UTIME_OMIT` in `nsec`).
pub fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec { tv_sec: sec, tv_nsec: nsec }
}

/// An open directory; every operation is relative to it (`*at` calls), so
/// a case never joins path strings and a process that dropped its
/// privileges still reaches it without search permission on the ancestors.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl AsFd for Dir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Dir {
    /// Opens a directory by path.
    pub fn open_path(path: &Path) -> io::Result<Dir> {
        let c = cstr(path)?;
        // SAFETY: `c` is NUL-terminated; the result is checked by `owned`.
        let fd = owned(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        Ok(Dir { fd })
    }

    /// The raw descriptor (valid while `self` lives).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// `openat(2)` returning a descriptor (`O_CLOEXEC` is added).
    pub fn open_fd(&self, name: impl AsRef<OsStr>, flags: i32, mode: u32) -> io::Result<OwnedFd> {
        let c = cstr(name)?;
        // SAFETY: `c` is NUL-terminated and the dir fd is valid; the mode
        // is passed as the variadic `mode_t` argument.
        owned(unsafe { libc::openat(self.raw(), c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) })
    }

    /// `openat(2)` returning a `File`.
    pub fn open(&self, name: impl AsRef<OsStr>, flags: i32, mode: u32) -> io::Result<File> {
        self.open_fd(name, flags, mode).map(File::from)
    }

    /// Opens a subdirectory.
    pub fn sub(&self, name: impl AsRef<OsStr>) -> io::Result<Dir> {
        let fd = self.open_fd(name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        Ok(Dir { fd })
    }

    /// Creates (or truncates) `name` with mode 0644 and writes `data`.
    pub fn write_file(&self, name: impl AsRef<OsStr>, data: &[u8]) -> io::Result<()> {
        let f = self.open(name, libc::O_CREAT | libc::O_TRUNC | libc::O_WRONLY, 0o644)?;
        f.write_all_at(data, 0)
    }

    /// Reads the whole of `name`.
    pub fn read_file(&self, name: impl AsRef<OsStr>) -> io::Result<Vec<u8>> {
        let f = self.open(name, libc::O_RDONLY, 0)?;
        read_all(&f)
    }

    /// `mkdirat(2)`.
    pub fn mkdir(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: `c` is NUL-terminated and the dir fd is valid.
        cvt(unsafe { libc::mkdirat(self.raw(), c.as_ptr(), mode) }).map(drop)
    }

    /// `mknodat(2)`.
    pub fn mknod(&self, name: impl AsRef<OsStr>, mode: u32, dev: u64) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: `c` is NUL-terminated and the dir fd is valid.
        cvt(unsafe { libc::mknodat(self.raw(), c.as_ptr(), mode, dev) }).map(drop)
    }

    /// `unlinkat(2)` without flags.
    pub fn unlink(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        self.unlinkat(name, 0)
    }

    /// `unlinkat(2)` with `AT_REMOVEDIR`.
    pub fn rmdir(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        self.unlinkat(name, libc::AT_REMOVEDIR)
    }

    fn unlinkat(&self, name: impl AsRef<OsStr>, flags: i32) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: `c` is NUL-terminated and the dir fd is valid.
        cvt(unsafe { libc::unlinkat(self.raw(), c.as_ptr(), flags) }).map(drop)
    }

    /// `renameat2(2)` within this directory.
    pub fn rename(&self, old: impl AsRef<OsStr>, new: impl AsRef<OsStr>, flags: u32) -> io::Result<()> {
        self.rename_to(old, self, new, flags)
    }

    /// `renameat2(2)` from this directory to `newdir`.
    pub fn rename_to(
        &self,
        old: impl AsRef<OsStr>,
        newdir: &Dir,
        new: impl AsRef<OsStr>,
        flags: u32,
    ) -> io::Result<()> {
        let o = cstr(old)?;
        let n = cstr(new)?;
        // SAFETY: both names are NUL-terminated and both dir fds are valid;
        // the raw system call is used so that no libc version matters.
        let r = unsafe { libc::syscall(libc::SYS_renameat2, self.raw(), o.as_ptr(), newdir.raw(), n.as_ptr(), flags) };
        if r == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// `linkat(2)` from `old` in this directory to `new` in `newdir`.
    pub fn link_to(&self, old: impl AsRef<OsStr>, newdir: &Dir, new: impl AsRef<OsStr>, flags: i32) -> io::Result<()> {
        link_raw(self.raw(), old, newdir, new, flags)
    }

    /// `symlinkat(2)`: creates `name` pointing at `target`.
    pub fn symlink(&self, target: impl AsRef<OsStr>, name: impl AsRef<OsStr>) -> io::Result<()> {
        let t = cstr(target)?;
        let n = cstr(name)?;
        // SAFETY: both strings are NUL-terminated and the dir fd is valid.
        cvt(unsafe { libc::symlinkat(t.as_ptr(), self.raw(), n.as_ptr()) }).map(drop)
    }

    /// `readlinkat(2)`: the link's target bytes.
    pub fn readlink(&self, name: impl AsRef<OsStr>) -> io::Result<Vec<u8>> {
        let n = cstr(name)?;
        let mut buf = vec![0u8; 8192];
        // SAFETY: `n` is NUL-terminated, `buf` is writable for its length.
        let len = cvt_size(unsafe { libc::readlinkat(self.raw(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
        buf.truncate(len);
        Ok(buf)
    }

    /// `fstatat(2)` following symlinks.
    pub fn stat(&self, name: impl AsRef<OsStr>) -> io::Result<Stat> {
        self.statat(name, 0)
    }

    /// `fstatat(2)` with `AT_SYMLINK_NOFOLLOW`.
    pub fn lstat(&self, name: impl AsRef<OsStr>) -> io::Result<Stat> {
        self.statat(name, libc::AT_SYMLINK_NOFOLLOW)
    }

    fn statat(&self, name: impl AsRef<OsStr>, flags: i32) -> io::Result<Stat> {
        let n = cstr(name)?;
        // SAFETY: an all-zero `struct stat` is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `n` is NUL-terminated, `st` is writable, the fd is valid.
        cvt(unsafe { libc::fstatat(self.raw(), n.as_ptr(), &mut st, flags) })?;
        Ok(Stat::from_raw(&st))
    }

    /// `fchmodat(2)` (follows symlinks).
    pub fn chmod(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: `n` is NUL-terminated and the dir fd is valid.
        cvt(unsafe { libc::fchmodat(self.raw(), n.as_ptr(), mode, 0) }).map(drop)
    }

    /// `fchownat(2)`; `u32::MAX` leaves an id unchanged.
    pub fn chown(&self, name: impl AsRef<OsStr>, uid: u32, gid: u32, flags: i32) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: `n` is NUL-terminated and the dir fd is valid.
        cvt(unsafe { libc::fchownat(self.raw(), n.as_ptr(), uid, gid, flags) }).map(drop)
    }

    /// `utimensat(2)` with `[atime, mtime]`.
    pub fn utimens(&self, name: impl AsRef<OsStr>, times: [libc::timespec; 2], flags: i32) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: `n` is NUL-terminated and `times` points to two timespecs.
        cvt(unsafe { libc::utimensat(self.raw(), n.as_ptr(), times.as_ptr(), flags) }).map(drop)
    }

    /// `faccessat(2)` with `mode` (`R_OK`, `W_OK`, `X_OK`, `F_OK`).
    pub fn access(&self, name: impl AsRef<OsStr>, mode: i32) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: `n` is NUL-terminated and the dir fd is valid.
        cvt(unsafe { libc::faccessat(self.raw(), n.as_ptr(), mode, 0) }).map(drop)
    }

    /// Opens a `readdir(3)` stream on `name` (`"."` for this directory).
    pub fn stream(&self, name: impl AsRef<OsStr>) -> io::Result<DirStream> {
        let fd = self.open_fd(name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        DirStream::from_fd(fd)
    }

    /// All names in the directory except `.` and `..`, sorted.
    pub fn names(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut s = self.stream(".")?;
        let mut out = Vec::new();
        while let Some((name, _)) = s.next_entry()? {
            if name != b"." && name != b".." {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// `linkat(2)` with a raw old directory descriptor (`AT_FDCWD` allowed).
pub fn link_raw(
    olddir: RawFd,
    old: impl AsRef<OsStr>,
    newdir: &Dir,
    new: impl AsRef<OsStr>,
    flags: i32,
) -> io::Result<()> {
    let o = cstr(old)?;
    let n = cstr(new)?;
    // SAFETY: both names are NUL-terminated; `olddir` is AT_FDCWD or a
    // descriptor the caller keeps open; `newdir` is valid.
    cvt(unsafe { libc::linkat(olddir, o.as_ptr(), newdir.raw(), n.as_ptr(), flags) }).map(drop)
}

/// `readlinkat(fd, "")`: the target of a symlink opened with `O_PATH`.
pub fn readlink_fd(f: &impl AsFd) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 8192];
    // SAFETY: the empty name is a static NUL-terminated string, `buf` is
    // writable for its length and the fd is valid.
    let len =
        cvt_size(unsafe { libc::readlinkat(f.as_fd().as_raw_fd(), c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
    buf.truncate(len);
    Ok(buf)
}

/// Reads from offset 0 to end of file.
pub fn read_all(f: &File) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0u64;
    loop {
        let n = f.read_at(&mut buf, off)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        off += n as u64;
    }
}

/// `pread(2)` until `len` bytes or end of file.
pub fn pread(f: &File, off: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = f.read_at(&mut buf[got..], off + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(buf)
}

/// One `read(2)` at the current position.
pub fn read_once(f: &impl AsFd, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` is writable for `len` bytes and the fd is valid.
    let n = cvt_size(unsafe { libc::read(f.as_fd().as_raw_fd(), buf.as_mut_ptr().cast(), len) })?;
    buf.truncate(n);
    Ok(buf)
}

/// One `write(2)` at the current position; returns the count written.
pub fn write_once(f: &impl AsFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is readable for its length and the fd is valid.
    cvt_size(unsafe { libc::write(f.as_fd().as_raw_fd(), data.as_ptr().cast(), data.len()) })
}

/// One `pwrite(2)`; returns the count written.
pub fn pwrite_once(f: &impl AsFd, data: &[u8], off: i64) -> io::Result<usize> {
    // SAFETY: `data` is readable for its length and the fd is valid.
    cvt_size(unsafe { libc::pwrite(f.as_fd().as_raw_fd(), data.as_ptr().cast(), data.len(), off) })
}

/// `lseek(2)`.
pub fn lseek(f: &impl AsFd, off: i64, whence: i32) -> io::Result<i64> {
    // SAFETY: plain system call on a valid descriptor.
    cvt_off(unsafe { libc::lseek(f.as_fd().as_raw_fd(), off, whence) })
}

/// `ftruncate(2)` (any length, so negative lengths can be tested).
pub fn ftruncate(f: &impl AsFd, len: i64) -> io::Result<()> {
    // SAFETY: plain system call on a valid descriptor.
    cvt(unsafe { libc::ftruncate(f.as_fd().as_raw_fd(), len) }).map(drop)
}

/// `truncate(2)` by path.
pub fn truncate(path: &Path, len: i64) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: `c` is NUL-terminated.
    cvt(unsafe { libc::truncate(c.as_ptr(), len) }).map(drop)
}

/// `fallocate(2)`.
pub fn fallocate(f: &impl AsFd, mode: i32, off: i64, len: i64) -> io::Result<()> {
    // SAFETY: plain system call on a valid descriptor.
    cvt(unsafe { libc::fallocate(f.as_fd().as_raw_fd(), mode, off, len) }).map(drop)
}

/// `fsync(2)`.
pub fn fsync(f: &impl AsFd) -> io::Result<()> {
    // SAFETY: plain system call on a valid descriptor.
    cvt(unsafe { libc::fsync(f.as_fd().as_raw_fd()) }).map(drop)
}

/// `fdatasync(2)`.
pub fn fdatasync(f: &impl AsFd) -> io::Result<()> {
    // SAFETY: plain system call on a valid descriptor.
    cvt(unsafe { libc::fdatasync(f.as_fd().as_raw_fd()) }).map(drop)
}

/// `fchmod(2)`.
pub fn fchmod(f: &impl AsFd, mode: u32) -> io::Result<()> {
    // SAFETY: plain system call on a valid descriptor.
    cvt(unsafe { libc::fchmod(f.as_fd().as_raw_fd(), mode) }).map(drop)
}

/// `fchown(2)`.
pub fn fchown(f: &impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain system call on a valid descriptor.
    cvt(unsafe { libc::fchown(f.as_fd().as_raw_fd(), uid, gid) }).map(drop)
}

/// `copy_file_range(2)`; `None` offsets use (and move) the file positions.
pub fn copy_file_range(
    fin: &impl AsFd,
    off_in: Option<i64>,
    fout: &impl AsFd,
    off_out: Option<i64>,
    len: usize,
) -> io::Result<usize> {
    let mut oi = off_in.unwrap_or(0);
    let mut oo = off_out.unwrap_or(0);
    let pi: *mut i64 = if off_in.is_some() { &mut oi } else { std::ptr::null_mut() };
    let po: *mut i64 = if off_out.is_some() { &mut oo } else { std::ptr::null_mut() };
    // SAFETY: the offset pointers are null or point to live locals; both
    // descriptors are valid for the borrows.
    cvt_size(unsafe { libc::copy_file_range(fin.as_fd().as_raw_fd(), pi, fout.as_fd().as_raw_fd(), po, len, 0) })
}

/// `fstatfs(2)`: `(f_bsize, f_namelen)`.
pub fn fstatfs(f: &impl AsFd) -> io::Result<(i64, i64)> {
    // SAFETY: an all-zero `struct statfs` is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable and the fd is valid.
    cvt(unsafe { libc::fstatfs(f.as_fd().as_raw_fd(), &mut st) })?;
    Ok((st.f_bsize, st.f_namelen))
}

/// `umask(2)`; returns the previous mask.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) }
}

/// `unshare(CLONE_FS)`: gives the calling thread its own umask, working
/// directory and root, so that changing them does not affect the rest of
/// the process.
pub fn unshare_fs() -> io::Result<()> {
    // SAFETY: plain system call with a flag argument; it only detaches
    // this thread's fs_struct.
    cvt(unsafe { libc::unshare(libc::CLONE_FS) }).map(drop)
}

/// `geteuid(2)`.
pub fn geteuid() -> u32 {
    // SAFETY: cannot fail.
    unsafe { libc::geteuid() }
}

/// `getpid(2)`.
pub fn getpid() -> i32 {
    // SAFETY: cannot fail.
    unsafe { libc::getpid() }
}

// ---------------------------------------------------------------- xattrs

/// `setxattr(2)` / `lsetxattr(2)`.
pub fn setxattr(path: &Path, name: &str, value: &[u8], flags: i32, follow: bool) -> io::Result<()> {
    let p = cstr(path)?;
    let n = cstr(name)?;
    // SAFETY: `p` and `n` are NUL-terminated, `value` is readable for its
    // length.
    let r = unsafe {
        if follow {
            libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags)
        } else {
            libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags)
        }
    };
    cvt(r).map(drop)
}

/// `getxattr(2)` / `lgetxattr(2)` with a buffer of exactly `size` bytes;
/// with `size == 0` the result is empty and the count is the value's
/// length. Returns `(count, bytes)`.
pub fn getxattr(path: &Path, name: &str, size: usize, follow: bool) -> io::Result<(usize, Vec<u8>)> {
    let p = cstr(path)?;
    let n = cstr(name)?;
    let mut buf = vec![0u8; size];
    let ptr = if size == 0 { std::ptr::null_mut() } else { buf.as_mut_ptr().cast() };
    // SAFETY: `p` and `n` are NUL-terminated; `ptr` is null with size 0 or
    // writable for `size` bytes.
    let r = unsafe {
        if follow {
            libc::getxattr(p.as_ptr(), n.as_ptr(), ptr, size)
        } else {
            libc::lgetxattr(p.as_ptr(), n.as_ptr(), ptr, size)
        }
    };
    let count = cvt_size(r)?;
    if size != 0 {
        buf.truncate(count);
    }
    Ok((count, buf))
}

/// `listxattr(2)` / `llistxattr(2)` with a buffer of `size` bytes; returns
/// `(count, names)`; names are empty when `size == 0`.
pub fn listxattr(path: &Path, size: usize, follow: bool) -> io::Result<(usize, Vec<String>)> {
    let p = cstr(path)?;
    let mut buf = vec![0u8; size];
    let ptr = if size == 0 { std::ptr::null_mut() } else { buf.as_mut_ptr().cast() };
    // SAFETY: `p` is NUL-terminated; `ptr` is null with size 0 or writable
    // for `size` bytes.
    let r = unsafe {
        if follow {
            libc::listxattr(p.as_ptr(), ptr, size)
        } else {
            libc::llistxattr(p.as_ptr(), ptr, size)
        }
    };
    let count = cvt_size(r)?;
    let names = if size == 0 {
        Vec::new()
    } else {
        buf[..count]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    Ok((count, names))
}

/// `removexattr(2)` / `lremovexattr(2)`.
pub fn removexattr(path: &Path, name: &str, follow: bool) -> io::Result<()> {
    let p = cstr(path)?;
    let n = cstr(name)?;
    // SAFETY: both strings are NUL-terminated.
    let r = unsafe {
        if follow {
            libc::removexattr(p.as_ptr(), n.as_ptr())
        } else {
            libc::lremovexattr(p.as_ptr(), n.as_ptr())
        }
    };
    cvt(r).map(drop)
}

/// `fgetxattr(2)` with a buffer of `size` bytes; returns `(count,
/// bytes)` like [`getxattr`].
pub fn fgetxattr(f: &impl AsFd, name: &str, size: usize) -> io::Result<(usize, Vec<u8>)> {
    let n = cstr(name)?;
    let mut buf = vec![0u8; size];
    let ptr = if size == 0 { std::ptr::null_mut() } else { buf.as_mut_ptr().cast() };
    // SAFETY: `n` is NUL-terminated; `ptr` is null with size 0 or
    // writable for `size` bytes.
    let r = unsafe { libc::fgetxattr(f.as_fd().as_raw_fd(), n.as_ptr(), ptr, size) };
    let count = cvt_size(r)?;
    if size != 0 {
        buf.truncate(count);
    }
    Ok((count, buf))
}

/// `fsetxattr(2)`.
pub fn fsetxattr(f: &impl AsFd, name: &str, value: &[u8], flags: i32) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: `n` is NUL-terminated and `value` is readable for its length.
    cvt(unsafe { libc::fsetxattr(f.as_fd().as_raw_fd(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags) })
        .map(drop)
}

// ----------------------------------------------------------------- locks

/// A byte-range lock as `F_GETLK` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockInfo {
    /// `F_RDLCK`, `F_WRLCK` or `F_UNLCK` as a word.
    pub kind: &'static str,
    /// `l_start`.
    pub start: i64,
    /// `l_len`.
    pub len: i64,
    /// `l_pid` (not recorded as such: compared to a known pid).
    pub pid: i32,
}

/// Lock type name.
pub fn lock_kind(t: i32) -> &'static str {
    match t {
        libc::F_RDLCK => "F_RDLCK",
        libc::F_WRLCK => "F_WRLCK",
        libc::F_UNLCK => "F_UNLCK",
        _ => "?",
    }
}

fn flock_struct(kind: i32, start: i64, len: i64) -> libc::flock {
    // SAFETY: an all-zero `struct flock` is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    // The lock type constants are small and fit in a short.
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    fl
}

/// `fcntl(F_SETLK / F_SETLKW / F_OFD_SETLK / F_OFD_SETLKW)`.
pub fn setlk(f: &impl AsFd, cmd: i32, kind: i32, start: i64, len: i64) -> io::Result<()> {
    let fl = flock_struct(kind, start, len);
    // SAFETY: `fl` is a valid `struct flock` for the lock commands.
    cvt(unsafe { libc::fcntl(f.as_fd().as_raw_fd(), cmd, &fl) }).map(drop)
}

/// `fcntl(F_GETLK / F_OFD_GETLK)` probing a `kind` lock on the range.
pub fn getlk(f: &impl AsFd, cmd: i32, kind: i32, start: i64, len: i64) -> io::Result<LockInfo> {
    let mut fl = flock_struct(kind, start, len);
    // SAFETY: `fl` is a valid, writable `struct flock`.
    cvt(unsafe { libc::fcntl(f.as_fd().as_raw_fd(), cmd, &mut fl) })?;
    Ok(LockInfo { kind: lock_kind(i32::from(fl.l_type)), start: fl.l_start, len: fl.l_len, pid: fl.l_pid })
}

/// `flock(2)`.
pub fn flock(f: &impl AsFd, op: i32) -> io::Result<()> {
    // SAFETY: plain system call on a valid descriptor.
    cvt(unsafe { libc::flock(f.as_fd().as_raw_fd(), op) }).map(drop)
}

// ------------------------------------------------------------------ mmap

/// A memory mapping of a file, unmapped on drop. Access goes through
/// copies (`read`/`write`), never through references, because another
/// process or the kernel may change the pages at any time.
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    /// `mmap(2)` of `len` bytes at file offset 0.
    pub fn new(f: &impl AsFd, len: usize, prot: i32, flags: i32) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping chosen by the kernel (null hint) cannot
        // overlap existing Rust objects; the result is checked below.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, f.as_fd().as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    fn check(&self, off: usize, len: usize) {
        assert!(off.checked_add(len).is_some_and(|end| end <= self.len), "mapping access out of range");
    }

    /// Copies `data` into the mapping at `off` (panics if out of range).
    pub fn write(&self, off: usize, data: &[u8]) {
        self.check(off, data.len());
        // SAFETY: the range was checked to lie inside the live mapping,
        // which was created writable by the caller; the source is a
        // separate Rust slice so the ranges cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.cast::<u8>().add(off), data.len()) }
    }

    /// Copies `len` bytes out of the mapping at `off`.
    pub fn read(&self, off: usize, len: usize) -> Vec<u8> {
        self.check(off, len);
        let mut out = vec![0u8; len];
        // SAFETY: the range was checked to lie inside the live mapping;
        // the destination is a fresh Vec.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.cast::<u8>().add(off), out.as_mut_ptr(), len) }
        out
    }

    /// `msync(2)` of the whole mapping.
    pub fn msync(&self, flags: i32) -> io::Result<()> {
        // SAFETY: `ptr`/`len` describe exactly the live mapping.
        cvt(unsafe { libc::msync(self.ptr, self.len, flags) }).map(drop)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the mapping created in
        // `new`; no references into it exist (access is by copies).
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

// --------------------------------------------------------------- readdir

/// A `readdir(3)` stream (glibc `DIR *`), closed on drop.
#[derive(Debug)]
pub struct DirStream {
    dir: *mut libc::DIR,
}

impl DirStream {
    /// `fdopendir(3)` taking ownership of `fd`.
    pub fn from_fd(fd: OwnedFd) -> io::Result<DirStream> {
        use std::os::fd::IntoRawFd;
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is an open directory descriptor we own; on success
        // the stream owns it, on failure we close it below.
        let dir = unsafe { libc::fdopendir(raw) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed so `raw` is still ours to close.
            unsafe { libc::close(raw) };
            return Err(e);
        }
        Ok(DirStream { dir })
    }

    /// The next entry `(name, d_type)`, `None` at the end.
    pub fn next_entry(&mut self) -> io::Result<Option<(Vec<u8>, u8)>> {
        // SAFETY: errno is thread-local; resetting it distinguishes end of
        // directory (NULL, errno 0) from an error (NULL, errno set).
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `self.dir` is a live stream owned by us.
        let ent = unsafe { libc::readdir64(self.dir) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(0) | None => Ok(None),
                Some(_) => Err(e),
            };
        }
        // SAFETY: a non-null result points to a valid dirent64 whose
        // `d_name` is NUL-terminated; it stays valid until the next call on
        // this stream, and we copy it out before returning.
        let (name, ty) = unsafe {
            let name = std::ffi::CStr::from_ptr((*ent).d_name.as_ptr());
            (name.to_bytes().to_vec(), (*ent).d_type)
        };
        Ok(Some((name, ty)))
    }

    /// `telldir(3)`.
    pub fn tell(&mut self) -> libc::c_long {
        // SAFETY: `self.dir` is a live stream.
        unsafe { libc::telldir(self.dir) }
    }

    /// `seekdir(3)`.
    pub fn seek(&mut self, pos: libc::c_long) {
        // SAFETY: `self.dir` is a live stream; any position value is
        // accepted (an invalid one only yields wrong or no entries).
        unsafe { libc::seekdir(self.dir, pos) }
    }

    /// `rewinddir(3)`.
    pub fn rewind(&mut self) {
        // SAFETY: `self.dir` is a live stream.
        unsafe { libc::rewinddir(self.dir) }
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: `self.dir` is a live stream, closed exactly once here.
        unsafe {
            libc::closedir(self.dir);
        }
    }
}

/// Raw `getdents64(2)` from the descriptor's current position to the end:
/// the number of entries returned (the kernel's answer, without glibc's
/// habit of turning `ENOENT` into end of directory).
pub fn getdents_count(f: &impl AsFd) -> io::Result<usize> {
    let mut buf = vec![0u8; 32768];
    let mut count = 0;
    loop {
        // SAFETY: `buf` is writable for its length and the fd is valid.
        let r = unsafe { libc::syscall(libc::SYS_getdents64, f.as_fd().as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if r == 0 {
            return Ok(count);
        }
        // `r` is positive and at most `buf.len()`.
        let filled = r as usize;
        let mut off = 0;
        while off + 19 <= filled {
            // d_reclen is the u16 at byte 16 of each struct linux_dirent64.
            let reclen = usize::from(u16::from_ne_bytes([buf[off + 16], buf[off + 17]]));
            if reclen == 0 {
                break;
            }
            count += 1;
            off += reclen;
        }
    }
}

/// `d_type` as a word.
pub fn dtype_name(t: u8) -> &'static str {
    match t {
        libc::DT_REG => "reg",
        libc::DT_DIR => "dir",
        libc::DT_LNK => "lnk",
        libc::DT_FIFO => "fifo",
        libc::DT_CHR => "chr",
        libc::DT_BLK => "blk",
        libc::DT_SOCK => "sock",
        libc::DT_UNKNOWN => "unknown",
        _ => "?",
    }
}
