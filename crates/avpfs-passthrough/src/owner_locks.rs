//! The table of the lock owners' open file descriptions on one node (see
//! `locks` for how POSIX locks use them). Each node holds one; a leaf: it
//! imports no other module of the crate.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use avpfs_server::{Handle, LockOwner};

/// One lock owner's open file description on a node.
#[derive(Debug)]
struct OwnerFd {
    fd: Arc<OwnedFd>,
    /// The client's pid of the owner's last lock request (for GETLK replies).
    pid: u32,
    /// The handles the owner took locks through.
    handles: Vec<Handle>,
}

/// The open file descriptions holding each lock owner's POSIX locks on one node.
#[derive(Debug, Default)]
pub(crate) struct OwnerLocks {
    owners: Mutex<HashMap<LockOwner, OwnerFd>>,
}

impl OwnerLocks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LockOwner, OwnerFd>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, owner: LockOwner) -> Option<Arc<OwnedFd>> {
        self.lock().get(&owner).map(|o| o.fd.clone())
    }

    /// The owner's description, opened with `open` the first time; records
    /// the handle and pid of this request.
    pub(crate) fn get_or_open(
        &self,
        owner: LockOwner,
        handle: Handle,
        pid: u32,
        open: impl FnOnce() -> io::Result<OwnedFd>,
    ) -> io::Result<Arc<OwnedFd>> {
        let mut m = self.lock();
        if let Some(o) = m.get_mut(&owner) {
            o.pid = pid;
            if !o.handles.contains(&handle) {
                o.handles.push(handle);
            }
            return Ok(o.fd.clone());
        }
        let fd = Arc::new(open()?);
        m.insert(owner, OwnerFd { fd: fd.clone(), pid, handles: vec![handle] });
        Ok(fd)
    }

    pub(crate) fn remove(&self, owner: LockOwner) -> Option<Arc<OwnedFd>> {
        self.lock().remove(&owner).map(|o| o.fd)
    }

    /// Removes the owners that took locks only through `handle`.
    pub(crate) fn remove_only_through(&self, handle: Handle) -> Vec<Arc<OwnedFd>> {
        let mut m = self.lock();
        let gone: Vec<LockOwner> =
            m.iter().filter(|(_, o)| o.handles.iter().all(|&h| h == handle)).map(|(&k, _)| k).collect();
        gone.iter().filter_map(|k| m.remove(k)).map(|o| o.fd).collect()
    }

    /// The other owners' descriptions and pids.
    pub(crate) fn others(&self, owner: LockOwner) -> Vec<(Arc<OwnedFd>, u32)> {
        self.lock().iter().filter(|(&k, _)| k != owner).map(|(_, o)| (o.fd.clone(), o.pid)).collect()
    }

    /// How many owners hold a description.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
