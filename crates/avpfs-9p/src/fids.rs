//! The per-connection state behind fids: a tree of walked names
//! ("dentries") and the fid table.
//!
//! 9P names files by the path a client walked, and two requests need that
//! path back: `Twalk ..` (the parent) and `Tremove`/`Trename` (the
//! parent directory and the name). The `FileSystem` trait only knows node
//! ids, and the passthrough refuses `..` below its root, so the server keeps
//! the walk itself: each dentry is a node id reached from its parent dentry
//! by a name, and holds exactly one `FileSystem` lookup reference on that
//! node (forgotten when the dentry goes). A dentry lives while a fid or a
//! child dentry refers to it, so `..` is always a node this connection
//! reached by walking down from its attach: it can never lead above the
//! attach root, whose dentry has no parent (`..` there stays there).

use std::ffi::CString;

use avpfs_server::{FileSystem, Handle, LockOwner, NodeId};
use p9_abi::{Fid, Qid};

/// Index of a dentry in [`Dentries`].
pub(crate) type DentryId = usize;

/// A node reached by a walk.
#[derive(Debug)]
pub(crate) struct Dentry {
    /// The node (one lookup reference held, unless `pinned`).
    pub node: NodeId,
    /// The directory it was walked from; `None` for an attach root.
    pub parent: Option<DentryId>,
    /// Its name in `parent` (empty for an attach root).
    pub name: CString,
    /// The qid last seen for it.
    pub qid: Qid,
    /// Fids and child dentries referring to it.
    refs: u64,
    /// The share's root, reached without a lookup: nothing to forget.
    pinned: bool,
}

/// The dentries of one connection.
#[derive(Debug, Default)]
pub(crate) struct Dentries {
    slots: Vec<Option<Dentry>>,
    free: Vec<DentryId>,
}

impl Dentries {
    /// A new dentry with one reference (the caller's). A `parent` gains a
    /// reference from it.
    pub fn insert(
        &mut self,
        node: NodeId,
        parent: Option<DentryId>,
        name: CString,
        qid: Qid,
        pinned: bool,
    ) -> DentryId {
        if let Some(p) = parent {
            self.get_ref(p);
        }
        let d = Dentry { node, parent, name, qid, refs: 1, pinned };
        match self.free.pop() {
            Some(id) => {
                self.slots[id] = Some(d);
                id
            }
            None => {
                self.slots.push(Some(d));
                self.slots.len() - 1
            }
        }
    }

    /// The dentry `id` (every id handed out stays valid while referenced).
    pub fn get(&self, id: DentryId) -> &Dentry {
        self.slots[id].as_ref().expect("a referenced dentry exists")
    }

    fn get_mut(&mut self, id: DentryId) -> &mut Dentry {
        self.slots[id].as_mut().expect("a referenced dentry exists")
    }

    /// Takes one more reference on `id`.
    pub fn get_ref(&mut self, id: DentryId) {
        self.get_mut(id).refs += 1;
    }

    /// Drops one reference on `id`; the last one forgets the node and
    /// drops the parent's reference in turn.
    pub fn put<F: FileSystem + ?Sized>(&mut self, fs: &F, id: DentryId) {
        let mut next = Some(id);
        while let Some(id) = next {
            let d = self.get_mut(id);
            d.refs -= 1;
            if d.refs > 0 {
                return;
            }
            let d = self.slots[id].take().expect("a referenced dentry exists");
            self.free.push(id);
            if !d.pinned {
                fs.forget(d.node, 1);
            }
            next = d.parent;
        }
    }

    /// Updates the qid of `id`.
    pub fn set_qid(&mut self, id: DentryId, qid: Qid) {
        self.get_mut(id).qid = qid;
    }

    /// Moves `id` under `new_parent` as `name` (after a rename).
    pub fn reparent<F: FileSystem + ?Sized>(&mut self, fs: &F, id: DentryId, new_parent: DentryId, name: CString) {
        self.get_ref(new_parent);
        let d = self.get_mut(id);
        let old = d.parent.replace(new_parent);
        d.name = name;
        if let Some(old) = old {
            self.put(fs, old);
        }
    }

    /// Makes `id` an attach root: it forgets the path above it (`..` at
    /// it stays at it). Returns the parent whose reference the caller drops.
    pub fn detach(&mut self, id: DentryId) -> Option<DentryId> {
        let d = self.get_mut(id);
        d.name = CString::default();
        d.parent.take()
    }

    /// Every live dentry that is the entry `name` of a directory whose
    /// node is `dir`.
    pub fn find_entries(&self, dir: NodeId, name: &[u8]) -> Vec<DentryId> {
        let mut out = Vec::new();
        for (id, d) in self.slots.iter().enumerate() {
            let Some(d) = d else { continue };
            if d.name.as_bytes() == name && d.parent.is_some_and(|p| self.get(p).node == dir) {
                out.push(id);
            }
        }
        out
    }

    /// Live dentries (for tests and accounting).
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// What a fid is, besides the file it names.
#[derive(Debug)]
pub(crate) enum FidKind {
    /// A walked name, not open.
    Path,
    /// An open file or directory.
    Open(OpenFile),
    /// The value (or name list) of an extended attribute, from
    /// `Txattrwalk`, read with `Tread`.
    XattrRead(Vec<u8>),
    /// An extended attribute being written (`Txattrcreate`); set on clunk.
    XattrWrite(XattrWrite),
}

/// An open file or directory.
#[derive(Debug)]
pub(crate) struct OpenFile {
    /// The file system's handle.
    pub handle: Handle,
    /// The host `open(2)` flags it was opened with.
    pub flags: u32,
    /// Opened with `opendir`.
    pub dir: bool,
    /// The lock owners that took locks through it (released on clunk).
    pub lock_owners: Vec<LockOwner>,
}

impl OpenFile {
    /// Opened for writing (`O_WRONLY` or `O_RDWR`).
    pub fn writable(&self) -> bool {
        self.flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32
    }
}

/// An extended attribute being written.
#[derive(Debug)]
pub(crate) struct XattrWrite {
    /// Its name.
    pub name: CString,
    /// The size the client announced (bounded by the options).
    pub size: usize,
    /// `setxattr(2)` flags.
    pub flags: u32,
    /// The value written so far.
    pub value: Vec<u8>,
}

/// One fid.
#[derive(Debug)]
pub(crate) struct FidState {
    /// The file (one dentry reference held).
    pub dentry: DentryId,
    /// The user the fid acts for (from its attach).
    pub uid: u32,
    /// The group the fid acts for.
    pub gid: u32,
    /// What it is.
    pub kind: FidKind,
}

/// The fid table of one connection.
pub(crate) type FidTable = std::collections::HashMap<Fid, FidState>;
