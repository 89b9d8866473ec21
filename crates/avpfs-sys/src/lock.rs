//! Record locks on open file descriptions (`F_OFD_*`), classic POSIX record
//! locks (`F_SETLK`) and BSD `flock`.
//!
//! OFD locks belong to an open file description, not to a process, so a
//! server can hold locks for many clients' lock owners at once, each on its
//! own description, and host processes and other servers see them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::util::{cvt, retry};

/// A lock as `struct flock` describes it (`l_whence` is always `SEEK_SET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    /// `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub typ: i32,
    /// First byte.
    pub start: i64,
    /// Length in bytes; 0 means "to the end of file and beyond".
    pub len: i64,
    /// The owning process for a classic POSIX lock; -1 for an OFD lock; 0 unknown.
    pub pid: i32,
}

impl Lock {
    fn to_raw(self) -> libc::flock {
        // SAFETY: an all-zero `flock` is a valid value (plain integers).
        let mut fl: libc::flock = unsafe { core::mem::zeroed() };
        fl.l_type = self.typ as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = self.start;
        fl.l_len = self.len;
        fl.l_pid = 0; // OFD locks require 0
        fl
    }

    fn from_raw(fl: &libc::flock) -> Self {
        Lock { typ: i32::from(fl.l_type), start: fl.l_start, len: fl.l_len, pid: fl.l_pid }
    }
}

/// `F_OFD_GETLK`: the first lock that would conflict with `lock` on `fd`'s
/// open file description, or `lock` with type `F_UNLCK` when none would.
pub fn ofd_getlk(fd: BorrowedFd<'_>, lock: Lock) -> io::Result<Lock> {
    let mut fl = lock.to_raw();
    // SAFETY: `fl` is a valid writable flock that lives for the call; `fd` is open.
    retry(|| unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl as *mut libc::flock) })?;
    Ok(Lock::from_raw(&fl))
}

/// `F_OFD_SETLK` (or `F_OFD_SETLKW` when `wait`): takes or releases `lock` on
/// `fd`'s open file description. A conflict fails with `EAGAIN` without
/// `wait`; with `wait` the call blocks, and a signal makes it fail with
/// `EINTR` (not retried, so that FUSE_INTERRUPT can end the wait).
pub fn ofd_setlk(fd: BorrowedFd<'_>, lock: Lock, wait: bool) -> io::Result<()> {
    setlk(fd, lock, if wait { libc::F_OFD_SETLKW } else { libc::F_OFD_SETLK })
}

/// `F_SETLK` (or `F_SETLKW` when `wait`): takes or releases `lock` as a
/// classic POSIX record lock, owned by the calling process and released when
/// the process closes any descriptor of the file. That makes it unfit for a
/// server (see [`ofd_setlk`]); it is what ordinary programs, and tests acting
/// as one, take. Errors as [`ofd_setlk`]: `EAGAIN` on a conflict without
/// `wait`, `EINTR` (not retried) when a signal ends a wait.
pub fn posix_setlk(fd: BorrowedFd<'_>, lock: Lock, wait: bool) -> io::Result<()> {
    setlk(fd, lock, if wait { libc::F_SETLKW } else { libc::F_SETLK })
}

/// `fcntl(fd, cmd, lock)` for a set-lock command; a conflict reported as
/// `EACCES` (POSIX allows it) is `EAGAIN`, as Linux reports it.
fn setlk(fd: BorrowedFd<'_>, lock: Lock, cmd: libc::c_int) -> io::Result<()> {
    let fl = lock.to_raw();
    // SAFETY: `fl` is a valid flock that lives for the call; `fd` is open.
    match cvt(unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &fl as *const libc::flock) }) {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

/// `flock(2)` with `LOCK_SH`/`LOCK_EX`/`LOCK_UN`, adding `LOCK_NB` unless
/// `wait`. A conflict fails with `EAGAIN` (`EWOULDBLOCK`); a signal during a
/// wait fails with `EINTR`.
pub fn flock(fd: BorrowedFd<'_>, op: i32, wait: bool) -> io::Result<()> {
    let op = if wait { op } else { op | libc::LOCK_NB };
    // SAFETY: no memory is passed; `fd` is open for the call.
    cvt(unsafe { libc::flock(fd.as_raw_fd(), op) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open::ProcSelfFd;
    use std::os::fd::AsFd;

    fn wr(start: i64, len: i64) -> Lock {
        Lock { typ: libc::F_WRLCK, start, len, pid: 0 }
    }

    #[test]
    fn ofd_locks_conflict_between_descriptions() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let proc = ProcSelfFd::open().unwrap();
        let a = proc.reopen(f.as_file().as_fd(), libc::O_RDWR).unwrap();
        let b = proc.reopen(f.as_file().as_fd(), libc::O_RDWR).unwrap();
        ofd_setlk(a.as_fd(), wr(0, 10), false).unwrap();
        ofd_setlk(a.as_fd(), wr(5, 10), false).unwrap(); // same description: merges
        let e = ofd_setlk(b.as_fd(), wr(12, 1), false).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
        let c = ofd_getlk(b.as_fd(), wr(0, 0)).unwrap();
        assert_eq!((c.typ, c.start, c.len, c.pid), (libc::F_WRLCK, 0, 15, -1));
        assert_eq!(ofd_getlk(a.as_fd(), wr(0, 0)).unwrap().typ, libc::F_UNLCK);
        ofd_setlk(a.as_fd(), Lock { typ: libc::F_UNLCK, start: 0, len: 0, pid: 0 }, false).unwrap();
        ofd_setlk(b.as_fd(), wr(12, 1), false).unwrap();
    }

    #[test]
    fn posix_locks_belong_to_the_process() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let proc = ProcSelfFd::open().unwrap();
        let a = proc.reopen(f.as_file().as_fd(), libc::O_RDWR).unwrap();
        let b = proc.reopen(f.as_file().as_fd(), libc::O_RDWR).unwrap();
        posix_setlk(a.as_fd(), wr(0, 10), false).unwrap();
        // Another description of the same process: no conflict, the lock grows.
        posix_setlk(b.as_fd(), wr(5, 10), true).unwrap();
        // An OFD lock sees one process-owned lock over both ranges.
        let c = ofd_getlk(b.as_fd(), wr(0, 0)).unwrap();
        assert_eq!((c.typ, c.start, c.len, c.pid), (libc::F_WRLCK, 0, 15, std::process::id() as i32));
        assert_eq!(ofd_setlk(b.as_fd(), wr(3, 1), false).unwrap_err().raw_os_error(), Some(libc::EAGAIN));
        posix_setlk(a.as_fd(), Lock { typ: libc::F_UNLCK, start: 0, len: 0, pid: 0 }, false).unwrap();
        assert_eq!(ofd_getlk(b.as_fd(), wr(0, 0)).unwrap().typ, libc::F_UNLCK);
        // And an OFD lock conflicts with a POSIX lock in turn.
        ofd_setlk(b.as_fd(), wr(20, 1), false).unwrap();
        assert_eq!(posix_setlk(a.as_fd(), wr(0, 0), false).unwrap_err().raw_os_error(), Some(libc::EAGAIN));
    }

    #[test]
    fn flock_conflicts_and_unlocks() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let a = std::fs::File::open(f.path()).unwrap();
        let b = std::fs::File::open(f.path()).unwrap();
        flock(a.as_fd(), libc::LOCK_EX, false).unwrap();
        assert_eq!(flock(b.as_fd(), libc::LOCK_SH, false).unwrap_err().raw_os_error(), Some(libc::EAGAIN));
        flock(a.as_fd(), libc::LOCK_UN, false).unwrap();
        flock(b.as_fd(), libc::LOCK_SH, true).unwrap();
    }
}
