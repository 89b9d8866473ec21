//! Opening names beneath a directory, and re-opening `O_PATH` descriptors.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::util::{err, retry};

/// `struct open_how` of `linux/openat2.h` (libc's is `non_exhaustive`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const OPENAT2_UNKNOWN: u8 = 0;
const OPENAT2_YES: u8 = 1;
const OPENAT2_NO: u8 = 2;

/// Whether the kernel has `openat2` (learned on first use).
static OPENAT2: AtomicU8 = AtomicU8::new(OPENAT2_UNKNOWN);

/// How many times an `openat2` that raced with a rename (`EAGAIN`) is retried.
const OPENAT2_RETRIES: usize = 16;

/// Whether `openat2(2)` is used by [`open_beneath`] (false after it failed
/// with `ENOSYS` once).
pub fn has_openat2() -> bool {
    OPENAT2.load(Ordering::Relaxed) != OPENAT2_NO
}

/// Opens the single component `name` relative to the directory `dir`, never
/// leaving it and never following a symlink.
///
/// `O_NOFOLLOW` and `O_CLOEXEC` are always added. With `openat2(2)` the
/// resolution is `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`; on kernels
/// without it (`ENOSYS`) this falls back to `openat(2)`, which is as safe for
/// one component: `name` must not contain `/` and must not be `..` (both are
/// rejected with `EXDEV`, as `RESOLVE_BENEATH` would, so the two paths agree).
pub fn open_beneath(dir: BorrowedFd<'_>, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let bytes = name.to_bytes();
    if bytes == b".." || bytes.contains(&b'/') {
        return Err(err(libc::EXDEV));
    }
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    if OPENAT2.load(Ordering::Relaxed) != OPENAT2_NO {
        match openat2(dir, name, flags, mode, libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                log::info!("openat2 is not available: falling back to openat with O_NOFOLLOW");
                OPENAT2.store(OPENAT2_NO, Ordering::Relaxed);
            }
            other => {
                OPENAT2.store(OPENAT2_YES, Ordering::Relaxed);
                return other;
            }
        }
    }
    openat(dir, name, flags, mode)
}

/// `openat2(2)` with the given `resolve` flags, retried on `EINTR` and on
/// `EAGAIN` (a concurrent rename made a `RESOLVE_*` check unsure).
pub fn openat2(dir: BorrowedFd<'_>, name: &CStr, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    // Only O_CREAT and O_TMPFILE take a mode; openat2 rejects one otherwise.
    let mode = if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE { mode } else { 0 };
    let how = OpenHow { flags: flags as u32 as u64, mode: u64::from(mode), resolve };
    let mut tries = 0;
    loop {
        let r = retry(|| {
            // SAFETY: `name` is a valid C string and `how` a valid `open_how`
            // whose size we pass; both outlive the call; `dir` is open.
            unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    &how as *const OpenHow,
                    core::mem::size_of::<OpenHow>(),
                )
            }
        });
        match r {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < OPENAT2_RETRIES => tries += 1,
            Err(e) => return Err(e),
            Ok(fd) => {
                // SAFETY: the kernel returned a new descriptor that nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
        }
    }
}

/// `openat(2)` with `O_CLOEXEC` added, retried on `EINTR`. Symlinks are
/// followed unless `flags` holds `O_NOFOLLOW`; prefer [`open_beneath`].
pub fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let fd = retry(|| {
        // SAFETY: `name` is a valid C string and `dir` is open for the call.
        unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC, mode) }
    })?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a host path given by the administrator (the shared root), following
/// symlinks, with `O_CLOEXEC` added.
pub fn open_path(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| err(libc::EINVAL))?;
    openat(cwd(), &c, flags, 0)
}

/// The current working directory as a descriptor argument (`AT_FDCWD`), for
/// the `*at` wrappers.
pub fn cwd() -> BorrowedFd<'static> {
    // SAFETY: AT_FDCWD is a special value the kernel interprets as "the
    // current directory", never closed; it is only passed to *at calls.
    unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) }
}

/// The decimal name of a descriptor in `/proc/self/fd`, NUL-terminated, on the stack.
#[derive(Debug, Clone, Copy)]
pub struct FdName {
    buf: [u8; 12],
    len: usize,
}

impl FdName {
    /// The name of `fd`.
    pub fn new(fd: BorrowedFd<'_>) -> Self {
        let mut digits = [0u8; crate::fmt::U64_DIGITS];
        let digits = crate::fmt::decimal(u64::from(fd.as_raw_fd() as u32), &mut digits);
        let len = digits.len();
        let mut buf = [0u8; 12];
        buf[..len].copy_from_slice(digits);
        FdName { buf, len }
    }

    /// The name as a C string.
    pub fn as_cstr(&self) -> &CStr {
        // The buffer holds `len` ASCII digits followed by at least one NUL.
        CStr::from_bytes_until_nul(&self.buf[..=self.len]).unwrap_or(c"")
    }
}

/// The `/proc/self/fd` directory, opened once, through which `O_PATH`
/// descriptors are re-opened with real access modes.
#[derive(Debug)]
pub struct ProcSelfFd {
    fd: OwnedFd,
    path: CString,
}

impl ProcSelfFd {
    /// The usual place of the directory.
    pub const DEFAULT_PATH: &'static str = "/proc/self/fd";

    /// Opens `/proc/self/fd`.
    pub fn open() -> io::Result<Self> {
        Self::open_at(Path::new(Self::DEFAULT_PATH))
    }

    /// Opens the directory at `path` (for a sandbox that mounts proc elsewhere).
    pub fn open_at(path: &Path) -> io::Result<Self> {
        let fd = open_path(path, libc::O_PATH | libc::O_DIRECTORY)?;
        let path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| err(libc::EINVAL))?;
        Ok(ProcSelfFd { fd, path })
    }

    /// Opens the file `fd` refers to again, with `flags` (`O_CLOEXEC` added;
    /// `O_NOFOLLOW` and `O_CREAT`/`O_EXCL` removed, since they make no sense
    /// on a magic link). A symlink cannot be re-opened except with `O_PATH`:
    /// the kernel then fails with `ELOOP`.
    pub fn reopen(&self, fd: BorrowedFd<'_>, flags: i32) -> io::Result<OwnedFd> {
        let flags = flags & !(libc::O_NOFOLLOW | libc::O_CREAT | libc::O_EXCL);
        openat(self.fd.as_fd(), FdName::new(fd).as_cstr(), flags, 0)
    }

    /// `/proc/self/fd/N` as a path, for the calls that have no `*at` form
    /// (the extended-attribute calls on kernels before 6.13).
    pub fn path_of(&self, fd: BorrowedFd<'_>) -> CString {
        let mut v = Vec::with_capacity(self.path.as_bytes().len() + 12);
        v.extend_from_slice(self.path.as_bytes());
        v.push(b'/');
        v.extend_from_slice(FdName::new(fd).as_cstr().to_bytes());
        // Neither part contains a NUL: the prefix came from a CString, the rest are digits.
        CString::new(v).unwrap_or_default()
    }

    /// `linkat(2)` of the file `fd` refers to as `newdir/newname`, through the
    /// magic link (no `CAP_DAC_READ_SEARCH` needed, unlike `AT_EMPTY_PATH`).
    pub fn link(&self, fd: BorrowedFd<'_>, newdir: BorrowedFd<'_>, newname: &CStr) -> io::Result<()> {
        crate::fs::linkat(self.fd.as_fd(), FdName::new(fd).as_cstr(), newdir, newname, libc::AT_SYMLINK_FOLLOW)
    }

    /// `fchmodat(2)` on the file `fd` refers to (works for `O_PATH` descriptors).
    pub fn chmod(&self, fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
        crate::fs::fchmodat(self.fd.as_fd(), FdName::new(fd).as_cstr(), mode)
    }

    /// `utimensat(2)` on the file `fd` refers to (works for `O_PATH` descriptors).
    pub fn utimens(&self, fd: BorrowedFd<'_>, times: &[libc::timespec; 2]) -> io::Result<()> {
        crate::fs::utimensat(self.fd.as_fd(), FdName::new(fd).as_cstr(), times, 0)
    }

    /// `faccessat(2)` with `AT_EACCESS` on the file `fd` refers to: checks
    /// `mask` with the calling thread's effective ids.
    pub fn access(&self, fd: BorrowedFd<'_>, mask: i32) -> io::Result<()> {
        crate::fs::faccessat(self.fd.as_fd(), FdName::new(fd).as_cstr(), mask, libc::AT_EACCESS)
    }
}

impl AsFd for ProcSelfFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dir_fd(p: &Path) -> OwnedFd {
        open_path(p, libc::O_PATH | libc::O_DIRECTORY).unwrap()
    }

    #[test]
    fn fd_names_are_decimal() {
        let f = std::fs::File::open("/").unwrap();
        let n = FdName::new(f.as_fd());
        assert_eq!(n.as_cstr().to_str().unwrap(), f.as_raw_fd().to_string());
    }

    #[test]
    fn open_beneath_does_not_follow_or_escape() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        symlink("/etc/passwd", t.path().join("l")).unwrap();
        let d = dir_fd(t.path());
        open_beneath(d.as_fd(), c"f", libc::O_RDONLY, 0).unwrap();
        let e = open_beneath(d.as_fd(), c"l", libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        // O_PATH|O_NOFOLLOW gives the link itself.
        let l = open_beneath(d.as_fd(), c"l", libc::O_PATH, 0).unwrap();
        let st = crate::stat::fstatx(l.as_fd()).unwrap();
        assert_eq!(u32::from(st.stx_mode) & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(open_beneath(d.as_fd(), c"..", libc::O_PATH, 0).unwrap_err().raw_os_error(), Some(libc::EXDEV));
        assert_eq!(open_beneath(d.as_fd(), c"a/b", libc::O_PATH, 0).unwrap_err().raw_os_error(), Some(libc::EXDEV));
    }

    #[test]
    fn fallback_openat_agrees() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        symlink("f", t.path().join("l")).unwrap();
        let d = dir_fd(t.path());
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW;
        openat(d.as_fd(), c"f", flags, 0).unwrap();
        assert_eq!(openat(d.as_fd(), c"l", flags, 0).unwrap_err().raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn reopen_through_proc_and_paths() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"hello").unwrap();
        symlink("f", t.path().join("l")).unwrap();
        let d = dir_fd(t.path());
        let proc = ProcSelfFd::open().unwrap();
        let p = open_beneath(d.as_fd(), c"f", libc::O_PATH, 0).unwrap();
        let rw = proc.reopen(p.as_fd(), libc::O_RDWR | libc::O_NOFOLLOW).unwrap();
        let mut buf = [0u8; 5];
        assert_eq!(crate::io::pread(rw.as_fd(), &mut buf, 0).unwrap(), 5);
        assert_eq!(&buf, b"hello");
        let path = proc.path_of(p.as_fd());
        assert_eq!(path.to_str().unwrap(), format!("/proc/self/fd/{}", p.as_raw_fd()));
        let l = open_beneath(d.as_fd(), c"l", libc::O_PATH, 0).unwrap();
        assert_eq!(proc.reopen(l.as_fd(), libc::O_RDONLY).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        proc.chmod(p.as_fd(), 0o600).unwrap();
        let st = crate::stat::fstatx(p.as_fd()).unwrap();
        assert_eq!(u32::from(st.stx_mode) & 0o7777, 0o600);
        proc.link(p.as_fd(), d.as_fd(), c"hard").unwrap();
        assert_eq!(std::fs::read(t.path().join("hard")).unwrap(), b"hello");
        proc.access(p.as_fd(), libc::R_OK).unwrap();
    }
}
