//! Locks: GETLK, SETLK, SETLKW, and their release on FLUSH and RELEASE.
//!
//! The locks are real host locks, so that several clients and host
//! processes see each other's:
//! - POSIX record locks go on one open file description per (node, lock
//!   owner), with `F_OFD_*` commands: all the locks a client's lock owner
//!   takes through any of its handles belong to one owner, merge and
//!   split as POSIX says, and conflict with everyone else's. FLUSH (a close
//!   in the client) releases the owner's locks on that file.
//! - BSD `flock` locks go on the handle's own open file description, as
//!   `flock(2)` does; RELEASE with FUSE_RELEASE_FLOCK_UNLOCK drops them.
//!
//! A waiting SETLKW blocks only its worker thread; the server interrupts it
//! with a signal on FUSE_INTERRUPT and the request fails with `EINTR`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use avpfs_server::{Handle, LockOwner, LockRequest, NodeId};
use avpfs_sys::lock::{self, Lock};
use fuse_abi::FileLock;

use crate::inode::Node;
use crate::passthrough::PassthroughFs;
use crate::util::errno;

/// The kernel's `OFFSET_MAX`: a lock end meaning "to the end of the file".
const OFFSET_MAX: u64 = i64::MAX as u64;

/// The host lock of a FUSE lock.
fn to_host(l: &FileLock) -> io::Result<Lock> {
    let typ = l.typ as i32;
    if ![libc::F_RDLCK, libc::F_WRLCK, libc::F_UNLCK].contains(&typ) {
        return Err(errno(libc::EINVAL));
    }
    if l.start > OFFSET_MAX || l.end < l.start {
        return Err(errno(libc::EINVAL));
    }
    let len = if l.end >= OFFSET_MAX { 0 } else { (l.end - l.start + 1) as i64 };
    Ok(Lock { typ, start: l.start as i64, len, pid: 0 })
}

/// The FUSE lock of a host lock held by the client's process `pid` (0 when
/// the holder is another client or a host process, which this client
/// cannot name: a pid unknown to the client makes its kernel fail F_GETLK).
fn from_host(l: &Lock, pid: u32) -> FileLock {
    let start = l.start.max(0) as u64;
    let end = if l.len == 0 { OFFSET_MAX } else { start.saturating_add(l.len as u64 - 1).min(OFFSET_MAX) };
    FileLock { start, end, typ: l.typ as u32, pid }
}

impl PassthroughFs {
    /// A new open file description of `node` to hold one owner's locks.
    fn open_lock_description(&self, node: &Node) -> io::Result<OwnedFd> {
        let fd = node.fd()?;
        // Read-write so that both lock types work; a file only readable (or
        // busy as a running program: ETXTBSY) gets a read-only description,
        // and the client will only ask for read locks on it.
        let mut last = errno(libc::EBADF);
        for mode in [libc::O_RDWR, libc::O_RDONLY, libc::O_WRONLY] {
            match self.proc.reopen(fd.as_fd(), mode | libc::O_NONBLOCK) {
                Ok(f) => return Ok(f),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub(crate) fn do_getlk(&self, node: NodeId, req: LockRequest) -> io::Result<FileLock> {
        let of = self.handles.get(req.handle, node)?;
        if req.flock {
            // There is no test operation for flock.
            return Err(errno(libc::EINVAL));
        }
        let want = to_host(&req.lock)?;
        // The owner's own description does not conflict with itself; without
        // one, the handle's (which holds no record locks) tests the same.
        let found = match of.node.locks.get(req.owner) {
            Some(fd) => lock::ofd_getlk(fd.as_fd(), want)?,
            None => lock::ofd_getlk(of.fd.as_fd(), want)?,
        };
        if found.typ == libc::F_UNLCK {
            return Ok(FileLock { typ: libc::F_UNLCK as u32, ..req.lock });
        }
        Ok(from_host(&found, self.lock_holder_pid(&of.node, req.owner, &found)))
    }

    /// The client pid of the owner (of this client, other than `owner`) that
    /// holds `found`, or 0. From the holder's own description a write-lock
    /// probe of `found`'s range cannot return `found` itself (a description
    /// never conflicts with itself); from anyone else's it can. Best effort:
    /// two owners holding the very same read lock are not told apart.
    fn lock_holder_pid(&self, node: &Node, owner: LockOwner, found: &Lock) -> u32 {
        if found.pid != -1 {
            return 0; // a host process's classic POSIX lock
        }
        let probe = Lock { typ: libc::F_WRLCK, ..*found };
        let same = |l: &Lock| l.typ == found.typ && l.start == found.start && l.len == found.len;
        node.locks
            .others(owner)
            .into_iter()
            .find(|(fd, _)| lock::ofd_getlk(fd.as_fd(), probe).is_ok_and(|l| l.typ == libc::F_UNLCK || !same(&l)))
            .map_or(0, |(_, pid)| pid)
    }

    pub(crate) fn do_setlk(&self, node: NodeId, req: LockRequest, wait: bool) -> io::Result<()> {
        let of = self.handles.get(req.handle, node)?;
        let want = to_host(&req.lock)?;
        if req.flock {
            let op = match want.typ {
                libc::F_RDLCK => libc::LOCK_SH,
                libc::F_WRLCK => libc::LOCK_EX,
                _ => libc::LOCK_UN,
            };
            lock::flock(of.fd.as_fd(), op, wait)?;
            of.flocked.store(op != libc::LOCK_UN, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        if want.typ == libc::F_UNLCK {
            return match of.node.locks.get(req.owner) {
                Some(fd) => lock::ofd_setlk(fd.as_fd(), want, false),
                None => Ok(()),
            };
        }
        let fd =
            of.node.locks.get_or_open(req.owner, req.handle, req.lock.pid, || self.open_lock_description(&of.node))?;
        // The map's lock is not held while waiting.
        lock::ofd_setlk(fd.as_fd(), want, wait)
    }

    /// Drops every POSIX lock of `owner` on `node` (a close in the client).
    pub(crate) fn release_posix_locks(&self, node: &Node, owner: LockOwner) -> io::Result<()> {
        match node.locks.remove(owner) {
            Some(fd) => unlock_all(&fd),
            None => Ok(()),
        }
    }

    /// The last close of `handle` in the client: drops the locks of the
    /// owners that used only this handle. Those are the client's own OFD
    /// locks (owned by the open file, for which the client sends no FLUSH
    /// and no unlock); a process's locks went on its FLUSH already.
    pub(crate) fn release_handle_locks(&self, node: &Node, handle: Handle) {
        for fd in node.locks.remove_only_through(handle) {
            if let Err(e) = unlock_all(&fd) {
                log::debug!("unlock on release: {e}");
            }
        }
    }
}

/// Releases every lock on the description (a waiting SETLKW may still hold
/// it, so closing our reference would not be enough).
fn unlock_all(fd: &OwnedFd) -> io::Result<()> {
    let all = Lock { typ: libc::F_UNLCK, start: 0, len: 0, pid: 0 };
    lock::ofd_setlk(fd.as_fd(), all, false)
}
