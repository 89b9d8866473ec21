//! The inode store: the nodes the client holds references to.
//!
//! A node is keyed by (mount id, device, inode number), so that every name
//! of a hard-linked file leads to the same node, and files on different
//! mounts of one file system are told apart. A node keeps the host file
//! alive and reachable: either an `O_PATH` descriptor (which also keeps the
//! inode number from being reused while the node exists) or a file handle
//! with a descriptor of its mount.
//!
//! Node ids are never reused: a new node (for example for a new file that
//! got the inode number of a deleted one) always gets a fresh id, so the
//! generation number the client sees can stay 0.

use std::collections::HashMap;

/// The node tables' hasher: foldhash, seeded per process. The keys (node
/// ids the daemon hands out, host device and inode numbers) are not chosen
/// by the guest, and SipHash, the standard one, took 12% of the daemon's
/// instructions in a LOOKUP/GETATTR storm (callgrind).
type NodeHasher = foldhash::fast::RandomState;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use avpfs_server::NodeId;
use avpfs_sys::FileHandle;

pub(crate) use crate::host_files::{HostFile, HostFiles, HostRef, InodeKey, NodeFd, NodeFile};
use crate::owner_locks::OwnerLocks;

/// One host inode the client knows.
#[derive(Debug)]
pub(crate) struct Node {
    /// The id handed to the client.
    pub id: NodeId,
    /// The generation handed to the client (ids are unique: always 0).
    pub generation: u64,
    /// The host inode.
    pub key: InodeKey,
    /// The file type (`S_IFMT` bits).
    pub kind: u32,
    file: HostRef,
    /// POSIX locks of the client's lock owners on this file.
    pub locks: OwnerLocks,
}

impl Node {
    /// A node (the store gives it its id).
    pub fn new(id: NodeId, key: InodeKey, kind: u32, file: HostRef) -> Self {
        Node { id, generation: 0, key, kind, file, locks: OwnerLocks::default() }
    }

    /// An `O_PATH` descriptor of the file.
    pub fn fd(&self) -> io::Result<NodeFd<'_>> {
        self.file.file().fd()
    }

    /// Whether a live migration lost the node's file (every use fails).
    pub fn is_lost(&self) -> bool {
        matches!(self.file.file(), NodeFile::Lost(_))
    }

    /// The file handle, when the node keeps one.
    pub fn handle(&self) -> Option<&FileHandle> {
        self.file.file().handle()
    }

    /// Whether the node reaches its host file through the very same
    /// descriptor (or handle) as `other`.
    #[cfg(test)]
    pub fn shares_host_file_with(&self, other: &Node) -> bool {
        self.file.is_shared_with(&other.file)
    }

    /// Whether the node is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }
}

/// A node as a live migration restores it.
#[derive(Debug)]
pub(crate) struct RestoredNode {
    pub id: NodeId,
    pub generation: u64,
    pub key: InodeKey,
    pub kind: u32,
    pub file: NodeFile,
}

#[derive(Debug)]
struct Slot {
    node: Arc<Node>,
    /// Lookup references the client holds.
    refs: u64,
}

#[derive(Debug)]
struct Maps {
    by_id: HashMap<NodeId, Slot, NodeHasher>,
    by_key: HashMap<InodeKey, NodeId, NodeHasher>,
    /// The id the next new node gets.
    next_id: u64,
}

/// Tables smaller than this many slots are never shrunk.
const SHRINK_MIN_CAPACITY: usize = 4096;

impl Maps {
    /// After the guest forgot most of its nodes, gives the tables' memory
    /// back (to twice what is still used); true if it did. Shrinking at a
    /// quarter keeps the cost amortized: a table shrinks again only after
    /// losing three quarters of what is left.
    fn shrink_if_sparse(&mut self) -> bool {
        let (len, cap) = (self.by_id.len(), self.by_id.capacity());
        if cap < SHRINK_MIN_CAPACITY || len * 4 > cap {
            return false;
        }
        self.by_id.shrink_to(len * 2);
        self.by_key.shrink_to(len * 2);
        true
    }
}

/// The nodes, by id and by host inode.
#[derive(Debug)]
pub(crate) struct InodeStore {
    maps: Mutex<Maps>,
    /// The share's host files, which new nodes take theirs from.
    host_files: Arc<HostFiles>,
}

impl InodeStore {
    /// A store holding only the root (made with id [`NodeId::ROOT`]),
    /// whose new nodes share host files through `host_files`.
    pub fn new(key: InodeKey, kind: u32, root: Arc<HostFile>, host_files: Arc<HostFiles>) -> Self {
        let root = Arc::new(Node::new(NodeId::ROOT, key, kind, HostRef::Shared(root)));
        let mut by_id = HashMap::default();
        by_id.insert(NodeId::ROOT, Slot { node: root, refs: 1 });
        let mut by_key = HashMap::default();
        by_key.insert(key, NodeId::ROOT);
        InodeStore { maps: Mutex::new(Maps { by_id, by_key, next_id: NodeId::ROOT.get() + 1 }), host_files }
    }

    fn lock(&self) -> MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node `id`; `ENOENT` when the client holds no such node.
    pub fn get(&self, id: NodeId) -> io::Result<Arc<Node>> {
        self.lock().by_id.get(&id).map(|s| s.node.clone()).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }

    /// The root node.
    pub fn root(&self) -> Arc<Node> {
        self.lock().by_id[&NodeId::ROOT].node.clone()
    }

    /// Takes one more reference to the existing node `id`.
    pub fn add_ref(&self, id: NodeId) -> io::Result<Arc<Node>> {
        let mut m = self.lock();
        let slot = m.by_id.get_mut(&id).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        slot.refs = slot.refs.saturating_add(1);
        Ok(slot.node.clone())
    }

    /// Takes a reference to the node of `key`, creating it from `file` when
    /// there is none (or when the existing one has another file handle: the
    /// inode number was reused while we only held a handle). `file` is
    /// dropped when an existing node is used, or when another session of the
    /// share holds the same host file (the new node shares it).
    pub fn get_or_insert(&self, key: InodeKey, kind: u32, file: NodeFile) -> Arc<Node> {
        let new_handle = file.handle();
        let mut m = self.lock();
        if let Some(&id) = m.by_key.get(&key) {
            if let Some(slot) = m.by_id.get_mut(&id) {
                let same = match (slot.node.handle(), new_handle) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
                if same && slot.node.kind == kind {
                    slot.refs = slot.refs.saturating_add(1);
                    return slot.node.clone();
                }
            }
        }
        let id = NodeId(m.next_id);
        m.next_id += 1;
        let node = Arc::new(Node::new(id, key, kind, self.host_files.share(key, file)));
        m.by_id.insert(id, Slot { node: node.clone(), refs: 1 });
        m.by_key.insert(key, id);
        node
    }

    /// Drops `count` references of `id`; the node goes when none are left.
    /// The root is never dropped.
    pub fn forget(&self, id: NodeId, count: u64) {
        let mut guard = self.lock();
        let m = &mut *guard;
        let Some(slot) = m.by_id.get_mut(&id) else {
            log::debug!("forget of unknown node {id}");
            return;
        };
        slot.refs = slot.refs.saturating_sub(count);
        if slot.refs > 0 || id == NodeId::ROOT {
            return;
        }
        if let Some(slot) = m.by_id.remove(&id) {
            if m.by_key.get(&slot.node.key) == Some(&id) {
                m.by_key.remove(&slot.node.key);
            }
        }
        if m.shrink_if_sparse() {
            drop(guard);
            avpfs_sys::memory::release_free_heap();
        }
    }

    /// Drops every node but the root, whose count goes back to 1.
    pub fn clear(&self) {
        let mut m = self.lock();
        m.by_id.retain(|&id, _| id == NodeId::ROOT);
        if let Some(root) = m.by_id.get_mut(&NodeId::ROOT) {
            root.refs = 1;
            let key = root.node.key;
            m.by_key.clear();
            m.by_key.insert(key, NodeId::ROOT);
        }
        if m.shrink_if_sparse() {
            drop(m);
            avpfs_sys::memory::release_free_heap();
        }
    }

    /// Every node with its lookup count (the root included), and the id
    /// the next new node would get.
    pub fn snapshot(&self) -> (Vec<(Arc<Node>, u64)>, u64) {
        let m = self.lock();
        let mut nodes: Vec<_> = m.by_id.values().map(|s| (s.node.clone(), s.refs)).collect();
        nodes.sort_by_key(|(n, _)| n.id);
        (nodes, m.next_id)
    }

    /// Whether the store holds only the root, as a new session's does.
    pub fn is_fresh(&self) -> bool {
        self.lock().by_id.len() == 1
    }

    /// A node of a live migration, made (its host file shared with the
    /// share's other sessions, as a looked-up node's is) but not yet in
    /// the store: [`restore`](Self::restore) puts it there.
    pub fn restored_node(&self, r: RestoredNode) -> Arc<Node> {
        let file = match r.file {
            NodeFile::Lost(e) => HostRef::Own(NodeFile::Lost(e)),
            file => self.host_files.share(r.key, file),
        };
        Arc::new(Node { generation: r.generation, ..Node::new(r.id, r.key, r.kind, file) })
    }

    /// Takes over the nodes of a live migration: the root's lookup count,
    /// and `nodes` (never the root) with their counts, replacing every
    /// other node; new nodes get ids from `next_id` on (and after every
    /// restored one). The table by host inode is rebuilt from the nodes'
    /// keys, so that a later lookup of the same file finds its restored
    /// node; a lost node is left out of it.
    pub fn restore(&self, root_refs: u64, nodes: Vec<(Arc<Node>, u64)>, next_id: u64) {
        let mut m = self.lock();
        let root = m.by_id.remove(&NodeId::ROOT);
        m.by_id.clear();
        m.by_key.clear();
        if let Some(mut root) = root {
            root.refs = root_refs.max(1);
            m.by_key.insert(root.node.key, NodeId::ROOT);
            m.by_id.insert(NodeId::ROOT, root);
        }
        let mut next = next_id.max(NodeId::ROOT.get() + 1);
        for (node, refs) in nodes {
            next = next.max(node.id.get().saturating_add(1));
            if !node.is_lost() {
                m.by_key.entry(node.key).or_insert(node.id);
            }
            m.by_id.insert(node.id, Slot { node, refs });
        }
        m.next_id = next;
    }

    /// How many lock owners hold a description on some node.
    pub fn lock_owner_count(&self) -> usize {
        self.lock().by_id.values().map(|s| s.node.locks.len()).sum()
    }

    /// How many nodes exist (the root included).
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(n: u64) -> InodeStore {
        let dev_null = |_: u64| NodeFile::Fd(std::fs::File::open("/dev/null").unwrap().into());
        let key = |ino| InodeKey { mnt_id: 1, dev: 1, ino };
        let store = InodeStore::new(key(1), libc::S_IFDIR, HostFile::alone(key(1), dev_null(1)), Default::default());
        for ino in 2..n + 2 {
            store.get_or_insert(key(ino), libc::S_IFREG, dev_null(ino));
        }
        store
    }

    #[test]
    fn tables_shrink_after_most_nodes_are_forgotten() {
        let store = store_with(8_000);
        let full = store.lock().by_id.capacity();
        assert!(full >= 8_000);
        // Forget all but 100: the tables give their memory back.
        for id in 2..2 + 7_900 {
            store.forget(NodeId(id), 1);
        }
        assert_eq!(store.len(), 101);
        let m = store.lock();
        assert!(m.by_id.capacity() <= full / 4, "{} of {full} slots kept", m.by_id.capacity());
        assert!(m.by_key.capacity() <= full / 4);
        assert_eq!(m.by_key.len(), 101);
    }

    #[test]
    fn small_tables_are_left_alone() {
        let mut m = Maps {
            by_id: HashMap::with_capacity_and_hasher(1000, NodeHasher::default()),
            by_key: HashMap::default(),
            next_id: 2,
        };
        assert!(!m.shrink_if_sparse(), "below the minimum capacity");
        let mut m = Maps {
            by_id: HashMap::with_capacity_and_hasher(SHRINK_MIN_CAPACITY, NodeHasher::default()),
            by_key: HashMap::default(),
            next_id: 2,
        };
        let cap = m.by_id.capacity();
        assert!(m.shrink_if_sparse(), "empty and large enough");
        assert!(m.by_id.capacity() < cap);
    }
}
