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
    /// Opened with OPENDIR.
    pub is_dir: bool,
    /// Serialises seek + read of a directory listing.
    pub dir_pos: Mutex<()>,
    /// A flock was taken through it (and not given back).
    pub flocked: AtomicBool,
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
    pub fn insert(&self, node: Arc<Node>, fd: OwnedFd, is_dir: bool) -> Handle {
        let h = Handle(self.next.fetch_add(1, Ordering::Relaxed) + 1);
        let of = Arc::new(OpenFile { node, fd, is_dir, dir_pos: Mutex::new(()), flocked: AtomicBool::new(false) });
        self.map.write().unwrap_or_else(|e| e.into_inner()).insert(h, of);
        h
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
