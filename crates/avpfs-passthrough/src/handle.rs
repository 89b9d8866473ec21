//! Open files and directories the client holds handles to.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use avpfs_server::{Handle, NodeId};

use crate::inode::Node;

/// One open file or directory.
#[derive(Debug)]
pub(crate) struct OpenFile {
    /// The node it was opened from.
    pub node: Arc<Node>,
    /// The host open file description.
    pub fd: OwnedFd,
    /// The host open(2) flags it was opened with.
    pub flags: i32,
    /// Opened with OPENDIR.
    pub is_dir: bool,
    /// Serialises seek + read of a directory listing.
    pub dir_pos: Mutex<()>,
    /// A flock was taken through it (and not given back).
    pub flocked: AtomicBool,
}

impl OpenFile {
    /// An open file of `node`.
    pub fn new(node: Arc<Node>, fd: OwnedFd, flags: i32, is_dir: bool) -> Arc<Self> {
        Arc::new(OpenFile { node, fd, flags, is_dir, dir_pos: Mutex::new(()), flocked: AtomicBool::new(false) })
    }
}

/// The open handles, by id.
#[derive(Debug, Default)]
pub(crate) struct HandleTable {
    map: RwLock<HashMap<Handle, Arc<OpenFile>>>,
    next: AtomicU64,
}

fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

impl HandleTable {
    /// Adds an open file; returns its handle.
    pub fn insert(&self, node: Arc<Node>, fd: OwnedFd, flags: i32, is_dir: bool) -> Handle {
        let h = Handle(self.next.fetch_add(1, Ordering::Relaxed) + 1);
        self.map.write().unwrap_or_else(|e| e.into_inner()).insert(h, OpenFile::new(node, fd, flags, is_dir));
        h
    }

    /// Every open file by handle, and the last handle given out.
    pub fn snapshot(&self) -> (Vec<(Handle, Arc<OpenFile>)>, u64) {
        let m = self.map.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = m.iter().map(|(&h, of)| (h, of.clone())).collect();
        all.sort_by_key(|(h, _)| *h);
        (all, self.next.load(Ordering::Relaxed))
    }

    /// Takes over the open files of a live migration, with their handles;
    /// new handles are numbered after `last` (and after every restored one).
    pub fn restore(&self, files: Vec<(Handle, Arc<OpenFile>)>, last: u64) {
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        m.clear();
        let last = files.iter().map(|(h, _)| h.get()).fold(last, u64::max);
        m.extend(files);
        self.next.store(last, Ordering::Relaxed);
    }

    /// The open file `h` of node `node`; `EBADF` when there is none, or when
    /// it belongs to another node.
    pub fn get(&self, h: Handle, node: NodeId) -> io::Result<Arc<OpenFile>> {
        let m = self.map.read().unwrap_or_else(|e| e.into_inner());
        match m.get(&h) {
            Some(of) if of.node.id == node => Ok(of.clone()),
            _ => Err(ebadf()),
        }
    }

    /// Removes the open file `h` of node `node` (`EBADF` as for [`get`](Self::get)).
    pub fn remove(&self, h: Handle, node: NodeId) -> io::Result<Arc<OpenFile>> {
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        if !matches!(m.get(&h), Some(of) if of.node.id == node) {
            return Err(ebadf());
        }
        m.remove(&h).ok_or_else(ebadf)
    }

    /// Closes every handle.
    pub fn clear(&self) {
        self.map.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// How many handles hold a flock.
    pub fn flocked_count(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|f| f.flocked.load(Ordering::Relaxed))
            .count()
    }

    /// How many handles are open.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}
