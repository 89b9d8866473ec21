//! The host files a share's sessions hold, shared between them: when a
//! guest looks up a file another guest of the same share already holds,
//! its new node uses the same `O_PATH` descriptor (or file handle) rather
//! than keeping one more open. Node ids, lookup counts and locks stay per
//! session (in `inode`); only the host side is shared.
//!
//! A share with a single session has no one to share with, and skips the
//! table: [`HostFiles::share`] then leaves the file to its node alone (no
//! table, no extra allocation on the LOOKUP path). A leaf: it
//! imports no other module of the crate (`inode` builds on it).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use avpfs_sys::FileHandle;

/// The hasher of the table (see `inode`: the keys are not the guest's).
type Hasher = foldhash::fast::RandomState;

/// What identifies a host inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct InodeKey {
    /// Mount id (`STATX_MNT_ID`; 0 when the kernel does not report it).
    pub mnt_id: u64,
    /// Device.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl InodeKey {
    /// The key of the file `st` describes.
    pub fn of(st: &libc::statx) -> Self {
        let mnt_id = if st.stx_mask & libc::STATX_MNT_ID != 0 { st.stx_mnt_id } else { 0 };
        InodeKey { mnt_id, dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor), ino: st.stx_ino }
    }
}

/// How a node reaches its host file.
#[derive(Debug)]
pub(crate) enum NodeFile {
    /// An `O_PATH` descriptor.
    Fd(OwnedFd),
    /// A file handle, and a (non-`O_PATH`) descriptor on its mount to open it with.
    Handle { handle: FileHandle, mount: Arc<OwnedFd> },
    /// None: a node a live migration could not find again (with
    /// `guest-error`); every use fails with this errno.
    Lost(i32),
}

impl NodeFile {
    /// An `O_PATH` descriptor of the file.
    pub fn fd(&self) -> io::Result<NodeFd<'_>> {
        match self {
            NodeFile::Fd(fd) => Ok(NodeFd::Borrowed(fd.as_fd())),
            NodeFile::Handle { handle, mount } => {
                handle.open(mount.as_fd(), libc::O_PATH | libc::O_NOFOLLOW).map(NodeFd::Owned)
            }
            NodeFile::Lost(errno) => Err(io::Error::from_raw_os_error(*errno)),
        }
    }

    /// The file handle, when it is one.
    pub fn handle(&self) -> Option<&FileHandle> {
        match self {
            NodeFile::Fd(_) | NodeFile::Lost(_) => None,
            NodeFile::Handle { handle, .. } => Some(handle),
        }
    }
}

/// A descriptor of a node's file: borrowed from the node, or opened from
/// its file handle for the time of one operation.
#[derive(Debug)]
pub(crate) enum NodeFd<'a> {
    Borrowed(BorrowedFd<'a>),
    Owned(OwnedFd),
}

impl AsFd for NodeFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            NodeFd::Borrowed(fd) => *fd,
            NodeFd::Owned(fd) => fd.as_fd(),
        }
    }
}

/// How a node holds its host file: alone, or shared with the nodes of other
/// sessions of its share.
#[derive(Debug)]
pub(crate) enum HostRef {
    /// The node's own.
    Own(NodeFile),
    /// Shared through the share's table (or the share's root).
    Shared(Arc<HostFile>),
}

impl HostRef {
    /// How the file is reached.
    pub fn file(&self) -> &NodeFile {
        match self {
            HostRef::Own(f) => f,
            HostRef::Shared(h) => &h.file,
        }
    }

    /// Whether both hold the very same shared host file.
    #[cfg(test)]
    pub fn is_shared_with(&self, other: &HostRef) -> bool {
        matches!((self, other), (HostRef::Shared(a), HostRef::Shared(b)) if Arc::ptr_eq(a, b))
    }
}

/// One host file, held by the nodes of one or more sessions.
#[derive(Debug)]
pub(crate) struct HostFile {
    key: InodeKey,
    file: NodeFile,
    /// The table it is in, if any; it leaves the table when dropped.
    table: Option<Arc<HostFiles>>,
}

impl HostFile {
    /// A file held by one session only, in no table.
    pub fn alone(key: InodeKey, file: NodeFile) -> Arc<Self> {
        Arc::new(HostFile { key, file, table: None })
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        if let Some(table) = &self.table {
            let mut map = table.lock();
            // Another session may have put a new file under the key since
            // this one's last holder went: leave that one.
            if map.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
                map.remove(&self.key);
            }
        }
    }
}

/// The table of a share's host files, by host inode.
#[derive(Debug, Default)]
pub(crate) struct HostFiles {
    map: Mutex<HashMap<InodeKey, Weak<HostFile>, Hasher>>,
    /// Sessions made on the share so far.
    sessions: AtomicUsize,
}

impl HostFiles {
    fn lock(&self) -> MutexGuard<'_, HashMap<InodeKey, Weak<HostFile>, Hasher>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more session of the share; from the second on, host
    /// files are shared.
    pub fn add_session(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// The host file for `key`: one that another session holds, when it is
    /// the same file (the same file handle, when nodes keep handles: the
    /// inode number may have been reused while only a handle pinned it),
    /// else `file`, entered in the table. `file` is dropped when an existing
    /// one is used.
    pub fn share(self: &Arc<Self>, key: InodeKey, file: NodeFile) -> HostRef {
        if self.sessions.load(Ordering::Relaxed) < 2 {
            return HostRef::Own(file);
        }
        let mut map = self.lock();
        // Dropped after the table's lock: the last reference to a host file
        // takes that lock in its drop.
        let existing = map.get(&key).and_then(Weak::upgrade);
        if let Some(held) = &existing {
            let same = match (held.file.handle(), file.handle()) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if same {
                return HostRef::Shared(held.clone());
            }
        }
        let new = Arc::new(HostFile { key, file, table: Some(self.clone()) });
        map.insert(key, Arc::downgrade(&new));
        drop(map);
        drop(existing);
        HostRef::Shared(new)
    }

    /// How many host files the table holds (live or not yet removed).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> NodeFile {
        NodeFile::Fd(std::fs::File::open("/dev/null").unwrap().into())
    }

    fn key(ino: u64) -> InodeKey {
        InodeKey { mnt_id: 1, dev: 1, ino }
    }

    #[test]
    fn one_session_shares_nothing() {
        let t = Arc::new(HostFiles::default());
        t.add_session();
        let a = t.share(key(1), file());
        let b = t.share(key(1), file());
        assert!(matches!((&a, &b), (HostRef::Own(_), HostRef::Own(_))));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn sessions_share_a_host_file_until_its_last_holder_goes() {
        let t = Arc::new(HostFiles::default());
        t.add_session();
        t.add_session();
        let a = t.share(key(1), file());
        let b = t.share(key(1), file());
        assert!(a.is_shared_with(&b), "the second session uses the first one's descriptor");
        let other = t.share(key(2), file());
        assert!(!a.is_shared_with(&other));
        assert_eq!(t.len(), 2);
        drop(a);
        assert_eq!(t.len(), 2, "still held by the other session");
        drop(b);
        assert_eq!(t.len(), 1, "gone with its last holder");
        // A live entry is shared.
        let c = t.share(key(2), file());
        assert!(c.is_shared_with(&other));
        drop((c, other));
        assert_eq!(t.len(), 0);
    }
}
