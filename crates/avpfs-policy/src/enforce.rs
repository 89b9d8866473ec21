//! [`PolicyFs`]: the one layer where a share's policy is enforced, between
//! the FUSE server and the file system that does the host work.
//!
//! Every check runs before the inner file system is called, so a denied
//! operation never reaches a host system call.
//!
//! It is also the only place that enforces a read-only share (the policy's
//! `readonly`, which `--readonly` sets) and read-only subtrees: the
//! passthrough has no read-only mode of its own, and the daemon always puts
//! this layer in front of it when the share is read-only. Every operation
//! that modifies the share checks here: SETATTR, MKNOD, MKDIR, SYMLINK,
//! LINK, UNLINK, RMDIR, RENAME, CREATE, TMPFILE, OPEN for writing (or with
//! O_TRUNC, O_APPEND, O_CREAT), SETXATTR, REMOVEXATTR, ACCESS with W_OK,
//! and, on a read-only share, WRITE, FALLOCATE and COPY_FILE_RANGE; a
//! SETUPMAPPING for writing is checked as a modification, and no file it
//! hides is ever mapped into a DAX window. `[dax] files` decides which
//! files a `dax=inode` guest maps ([`FileSystem::dax_pick`]).
//!
//! Each denial is answered with the errno a user would expect and, when
//! auditing is on, one log line naming the operation, the path inside the
//! share and the rule.
//!
//! The policy can be replaced while the guest runs ([`PolicyFs::set_policy`],
//! the control socket's `reload`): requests that start afterwards use the
//! new one, and the subtree positions of the nodes the guest holds are
//! worked out again from their names.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use avpfs_server::migration::{corrupt, Decoder, Encoder};
use avpfs_server::MigrationError;
use avpfs_server::{
    Context, CopyRange, CreateRequest, DirEntry, DirSink, Entry, FallocateRequest, FileSystem, Handle, InitOptions,
    LockOwner, LockRequest, MknodRequest, NodeId, OpenReply, ReadRequest, RenameRequest, SetattrIn, SetxattrRequest,
    WantedFlags, WriteRequest, ZeroCopyReader, ZeroCopyWriter,
};
use fuse_abi::{Attr, FileLock, Kstatfs, Statx};

use crate::paths::{Access, Position};
use crate::{FileTypes, Policy};

/// The audit log target: `AVPFS_LOG=avpfs::audit=warn` shows only denials.
pub const AUDIT_TARGET: &str = "avpfs::audit";

#[derive(Debug)]
struct NodeState {
    pos: Position,
    refs: u64,
    parent: NodeId,
    name: Box<[u8]>,
}

/// A file system wrapped in a share policy.
pub struct PolicyFs<F> {
    inner: F,
    policy: ArcSwap<Policy>,
    nodes: RwLock<HashMap<NodeId, NodeState>>,
    open_handles: AtomicU64,
    handle_nodes: Mutex<HashMap<Handle, NodeId>>,
}

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

const WRITE_FLAGS: u32 = (libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC | libc::O_APPEND | libc::O_CREAT) as u32;

impl<F: FileSystem> PolicyFs<F> {
    /// Wraps `inner` in `policy`.
    pub fn new(inner: F, policy: Policy) -> Self {
        PolicyFs {
            inner,
            policy: ArcSwap::from_pointee(policy),
            nodes: RwLock::new(HashMap::new()),
            open_handles: AtomicU64::new(0),
            handle_nodes: Mutex::new(HashMap::new()),
        }
    }

    /// The wrapped file system.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Puts `policy` in force for the requests that start from now on, and
    /// places every node the guest holds under the new subtree rules.
    pub fn set_policy(&self, policy: Policy) {
        let mut nodes = self.write_nodes();
        let policy = Arc::new(policy);
        self.policy.store(policy.clone());
        place_all(&mut nodes, &policy);
    }

    /// The policy, for one request.
    fn p(&self) -> Guard<Arc<Policy>> {
        self.policy.load()
    }

    /// Node ids the guest holds.
    pub fn node_count(&self) -> usize {
        self.read_nodes().len()
    }

    /// Open handles the guest holds.
    pub fn open_handle_count(&self) -> u64 {
        self.open_handles.load(Ordering::Relaxed)
    }

    fn read_nodes(&self) -> std::sync::RwLockReadGuard<'_, HashMap<NodeId, NodeState>> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_nodes(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<NodeId, NodeState>> {
        self.nodes.write().unwrap_or_else(|e| e.into_inner())
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<Handle, NodeId>> {
        self.handle_nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pos(&self, node: NodeId) -> Position {
        if node == NodeId::ROOT {
            return self.p().paths.root();
        }
        // A node we never handed out: the inner file system answers ENOENT.
        self.read_nodes().get(&node).map(|n| n.pos).unwrap_or_else(|| self.p().paths.root())
    }

    fn path_of(&self, node: NodeId, name: Option<&[u8]>) -> String {
        let nodes = self.read_nodes();
        let mut parts: Vec<Vec<u8>> = name.map(|n| vec![n.to_vec()]).unwrap_or_default();
        let mut at = node;
        for _ in 0..4096 {
            match nodes.get(&at) {
                Some(n) if at != NodeId::ROOT => {
                    parts.push(n.name.to_vec());
                    at = n.parent;
                }
                _ => break,
            }
        }
        parts.reverse();
        let joined: Vec<String> = parts.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
        format!("/{}", joined.join("/"))
    }

    fn deny(&self, op: &str, node: NodeId, name: Option<&[u8]>, rule: &str, errno: i32) -> io::Error {
        if self.p().audit {
            log::warn!(target: AUDIT_TARGET, "denied {op} {} ({rule})", self.path_of(node, name));
        }
        err(errno)
    }

    fn rule_text(&self, pos: Position) -> String {
        match self.p().paths.rule_of(pos) {
            Some(r) => format!("path rule {r:?} {}", pos.access()),
            None => "share".into(),
        }
    }

    /// The guest's credentials as host ids, or EPERM for an unmapped id.
    fn host_ctx(&self, op: &str, ctx: &Context) -> io::Result<Context> {
        let p = self.p();
        if p.uid.is_identity() && p.gid.is_identity() {
            return Ok(ctx.clone());
        }
        let uid = p
            .uid
            .to_host(ctx.uid)
            .ok_or_else(|| self.deny(op, NodeId::ROOT, None, "uid map: unmapped caller", libc::EPERM))?;
        let gid = p
            .gid
            .to_host(ctx.gid)
            .ok_or_else(|| self.deny(op, NodeId::ROOT, None, "gid map: unmapped caller", libc::EPERM))?;
        let groups = ctx.groups.as_ref().map(|g| g.iter().filter_map(|&g| p.gid.to_host(g)).collect());
        Ok(Context { uid, gid, pid: ctx.pid, groups })
    }

    fn guest_attr(&self, mut a: Attr) -> Attr {
        a.uid = self.p().uid.to_guest(a.uid);
        a.gid = self.p().gid.to_guest(a.gid);
        a
    }

    /// Checks that a node may be modified.
    fn check_writable(&self, op: &str, node: NodeId, name: Option<&[u8]>) -> io::Result<Position> {
        let pos = match name {
            Some(n) => self.p().paths.child(self.pos(node), n),
            None => self.pos(node),
        };
        if pos.access() == Access::Hidden {
            return Err(self.deny(op, node, name, &self.rule_text(pos), libc::ENOENT));
        }
        if self.p().readonly {
            return Err(self.deny(op, node, name, "share read-only", libc::EROFS));
        }
        if pos.access() == Access::ReadOnly {
            return Err(self.deny(op, node, name, &self.rule_text(pos), libc::EROFS));
        }
        Ok(pos)
    }

    /// Checks the share-wide read-only rule alone, for the operations on an
    /// open file that modify it (WRITE, FALLOCATE, COPY_FILE_RANGE). Their
    /// handle was checked when it was opened, so in a read-only subtree it
    /// is a read-only one that the host refuses; a read-only share refuses
    /// them all with EROFS, whatever the handle.
    fn check_share_writable(&self, op: &str, node: NodeId) -> io::Result<()> {
        if self.p().readonly {
            return Err(self.deny(op, node, None, "share read-only", libc::EROFS));
        }
        Ok(())
    }

    fn check_create(&self, op: &str, parent: NodeId, name: &[u8], mode: u32) -> io::Result<u32> {
        let pos = self.p().paths.child(self.pos(parent), name);
        if pos.access() == Access::Hidden {
            return Err(self.deny(op, parent, Some(name), &self.rule_text(pos), libc::EACCES));
        }
        self.check_writable(op, parent, Some(name))?;
        let typ = FileTypes::from_mode(mode);
        if !self.p().create.contains(typ) {
            return Err(self.deny(op, parent, Some(name), &format!("create allows {}", self.p().create), libc::EPERM));
        }
        Ok(self.strip_setid(mode))
    }

    fn strip_setid(&self, mode: u32) -> u32 {
        if self.p().allow_setuid {
            mode
        } else {
            mode & !(libc::S_ISUID | libc::S_ISGID)
        }
    }

    /// Records a reference the guest received; refuses past max_inodes.
    fn track(&self, op: &str, parent: NodeId, name: &[u8], pos: Position, e: Entry) -> io::Result<Entry> {
        if e.nodeid == NodeId::NONE {
            return Ok(e);
        }
        let mut nodes = self.write_nodes();
        if let Some(n) = nodes.get_mut(&e.nodeid) {
            n.refs += 1;
        } else {
            if let Some(max) = self.p().max_inodes {
                if nodes.len() as u64 >= max {
                    drop(nodes);
                    self.inner.forget(e.nodeid, 1);
                    return Err(self.deny(op, parent, Some(name), &format!("max_inodes {max}"), libc::ENFILE));
                }
            }
            // Placed under the rules in force now, with the nodes' lock held,
            // so that a policy set meanwhile cannot leave it placed by the old.
            let parent_pos =
                if parent == NodeId::ROOT { Some(self.p().paths.root()) } else { nodes.get(&parent).map(|n| n.pos) };
            let pos = parent_pos.map_or(pos, |pp| self.p().paths.child(pp, name));
            nodes.insert(e.nodeid, NodeState { pos, refs: 1, parent, name: name.into() });
        }
        Ok(Entry { attr: self.guest_attr(e.attr), ..e })
    }

    fn untrack(&self, node: NodeId, count: u64) {
        let mut nodes = self.write_nodes();
        if let Some(n) = nodes.get_mut(&node) {
            n.refs = n.refs.saturating_sub(count);
            if n.refs == 0 {
                nodes.remove(&node);
            }
        }
    }

    fn reserve_handle(&self, op: &str, node: NodeId) -> io::Result<()> {
        let n = self.open_handles.fetch_add(1, Ordering::AcqRel);
        if let Some(max) = self.p().max_open_files {
            if n >= max {
                self.open_handles.fetch_sub(1, Ordering::AcqRel);
                return Err(self.deny(op, node, None, &format!("max_open_files {max}"), libc::EMFILE));
            }
        }
        Ok(())
    }

    fn opened<T>(&self, node: NodeId, r: io::Result<T>, handle: impl Fn(&T) -> Handle) -> io::Result<T> {
        match &r {
            Ok(v) => {
                self.handles().insert(handle(v), node);
            }
            Err(_) => {
                self.open_handles.fetch_sub(1, Ordering::AcqRel);
            }
        }
        r
    }

    fn closed(&self, handle: Handle) {
        if self.handles().remove(&handle).is_some() {
            self.open_handles.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn map_owner(
        &self,
        op: &str,
        node: NodeId,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> io::Result<(Option<u32>, Option<u32>)> {
        let uid = match uid {
            Some(u) => Some(
                self.p()
                    .uid
                    .to_host(u)
                    .ok_or_else(|| self.deny(op, node, None, "uid map: unmapped owner", libc::EPERM))?,
            ),
            None => None,
        };
        let gid = match gid {
            Some(g) => Some(
                self.p()
                    .gid
                    .to_host(g)
                    .ok_or_else(|| self.deny(op, node, None, "gid map: unmapped group", libc::EPERM))?,
            ),
            None => None,
        };
        Ok((uid, gid))
    }

    fn xattr_host_name(&self, op: &str, node: NodeId, name: &CStr, errno: i32) -> io::Result<std::ffi::CString> {
        match self.p().xattr.to_host(name.to_bytes()) {
            Ok(h) => std::ffi::CString::new(h).map_err(|_| err(libc::EINVAL)),
            Err(rule) => Err(self.deny(op, node, Some(name.to_bytes()), &rule.to_string(), errno)),
        }
    }
}

/// Places every node under `policy`'s subtree rules.
fn place_all(nodes: &mut HashMap<NodeId, NodeState>, policy: &Policy) {
    // A node's position follows from its parent's and its name: work
    // them out parents first (a parent outlives its children's lookups,
    // but one may have been forgotten: such a node starts at the root).
    let mut done: HashMap<NodeId, Position> = HashMap::with_capacity(nodes.len());
    let ids: Vec<NodeId> = nodes.keys().copied().collect();
    for id in ids {
        let mut chain = vec![id];
        while let Some(&last) = chain.last() {
            match nodes.get(&last) {
                Some(n) if n.parent != NodeId::ROOT && !done.contains_key(&n.parent) && chain.len() < 4096 => {
                    chain.push(n.parent)
                }
                _ => break,
            }
        }
        for &at in chain.iter().rev() {
            if done.contains_key(&at) {
                continue;
            }
            let Some(n) = nodes.get(&at) else { continue };
            let parent = if n.parent == NodeId::ROOT {
                policy.paths.root()
            } else {
                done.get(&n.parent).copied().unwrap_or_else(|| policy.paths.root())
            };
            done.insert(at, policy.paths.child(parent, &n.name));
        }
    }
    for (id, pos) in done {
        if let Some(n) = nodes.get_mut(&id) {
            n.pos = pos;
        }
    }
}

/// The tag and version of the policy layer's part of a migration state.
const STATE_TAG: &[u8; 4] = b"PLCY";
const STATE_VERSION: u32 = 1;
/// The longest name a node may have in a state.
const MAX_NAME: usize = 4096;

/// What the policy layer keeps of a session, as a migration state has it.
type SavedPolicyState<'a> = (&'a [u8], Vec<(NodeId, NodeState)>, Vec<(Handle, NodeId)>);

impl<F: FileSystem> PolicyFs<F> {
    /// The policy layer's part of a migration state: the inner file
    /// system's, then each node's lookup count, parent and name (from which
    /// the destination works out its position under its own policy), and
    /// each handle's node.
    fn save_policy_state(&self) -> Result<Vec<u8>, MigrationError> {
        let inner = self.inner.save_state()?;
        let nodes = self.read_nodes();
        let handles = self.handles();
        let mut e = Encoder::new();
        e.header(STATE_TAG, STATE_VERSION);
        e.bytes(&inner);
        let mut ids: Vec<&NodeId> = nodes.keys().collect();
        ids.sort();
        e.u64(ids.len() as u64);
        for id in ids {
            let n = &nodes[id];
            e.u64(id.get());
            e.u64(n.refs);
            e.u64(n.parent.get());
            e.bytes(&n.name);
        }
        e.u64(handles.len() as u64);
        for (h, n) in handles.iter() {
            e.u64(h.get());
            e.u64(n.get());
        }
        Ok(e.finish())
    }

    fn decode_policy_state<'a>(&self, state: &'a [u8]) -> Result<SavedPolicyState<'a>, MigrationError> {
        let mut d = Decoder::new(state);
        d.header(STATE_TAG, STATE_VERSION)?;
        let inner = d.bytes(usize::MAX)?;
        let count = d.count(8 * 4)?;
        let mut nodes = Vec::with_capacity(count);
        // Placed for real once all are read.
        let pos = self.p().paths.root();
        for _ in 0..count {
            let id = NodeId(d.u64()?);
            let refs = d.u64()?;
            let parent = NodeId(d.u64()?);
            let name = d.bytes(MAX_NAME)?;
            if id == NodeId::NONE || id == NodeId::ROOT {
                return Err(corrupt(format!("policy node id {id}")));
            }
            nodes.push((id, NodeState { pos, refs, parent, name: name.into() }));
        }
        let count = d.count(16)?;
        let mut handles = Vec::with_capacity(count);
        for _ in 0..count {
            handles.push((Handle(d.u64()?), NodeId(d.u64()?)));
        }
        d.end()?;
        Ok((inner, nodes, handles))
    }

    /// Restores what [`save_policy_state`](Self::save_policy_state)
    /// wrote: the inner file system first (all or nothing), then the
    /// nodes, placed under this layer's policy as a reload would.
    fn load_policy_state(&self, state: &[u8]) -> Result<(), MigrationError> {
        let (inner, saved, handles) = self.decode_policy_state(state)?;
        if !self.read_nodes().is_empty() || !self.handles().is_empty() {
            return Err(MigrationError::Refused("this session already holds nodes or handles".into()));
        }
        self.inner.load_state(inner)?;
        let mut nodes = self.write_nodes();
        nodes.extend(saved);
        place_all(&mut nodes, &self.p());
        let mut h = self.handles();
        self.open_handles.store(handles.len() as u64, Ordering::Release);
        h.extend(handles);
        Ok(())
    }
}

/// A READDIR(PLUS) sink that leaves hidden entries out and records the
/// positions of the entries it lets through.
struct FilterSink<'a, F> {
    fs: &'a PolicyFs<F>,
    inner: &'a mut dyn DirSink,
    parent: NodeId,
    parent_pos: Position,
    to_forget: Vec<NodeId>,
}

impl<F: FileSystem> DirSink for FilterSink<'_, F> {
    fn is_plus(&self) -> bool {
        self.inner.is_plus()
    }
    fn has_room(&self, namelen: usize) -> bool {
        self.inner.has_room(namelen)
    }
    fn remaining(&self) -> usize {
        self.inner.remaining()
    }
    fn add(&mut self, entry: DirEntry<'_>, plus: Option<&Entry>) -> bool {
        let pos = self.fs.p().paths.child(self.parent_pos, entry.name);
        let dot = entry.name == b"." || entry.name == b"..";
        if pos.access() == Access::Hidden && !dot {
            if let Some(e) = plus.filter(|e| e.nodeid != NodeId::NONE) {
                self.to_forget.push(e.nodeid);
            }
            return true; // consumed, not shown
        }
        match plus {
            Some(e) if e.nodeid != NodeId::NONE && !dot => {
                if !self.inner.has_room(entry.name.len()) {
                    return false;
                }
                match self.fs.track("readdirplus", self.parent, entry.name, pos, *e) {
                    Ok(mapped) => self.inner.add(entry, Some(&mapped)),
                    Err(_) => {
                        // Over the inode limit: list the name without a reference.
                        let negative = Entry { nodeid: NodeId::NONE, ..*e };
                        self.inner.add(entry, Some(&negative))
                    }
                }
            }
            other => self.inner.add(entry, other),
        }
    }
}

impl<F: FileSystem> FileSystem for PolicyFs<F> {
    fn init(&self, opts: InitOptions) -> io::Result<WantedFlags> {
        self.inner.init(opts)
    }

    fn usage(&self) -> avpfs_server::Usage {
        self.inner.usage()
    }

    fn save_state(&self) -> Result<Vec<u8>, MigrationError> {
        self.save_policy_state()
    }

    fn load_state(&self, state: &[u8]) -> Result<(), MigrationError> {
        self.load_policy_state(state)
    }

    fn destroy(&self) {
        self.write_nodes().clear();
        self.handles().clear();
        self.open_handles.store(0, Ordering::Release);
        self.inner.destroy();
    }

    fn lookup(&self, ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        let pos = self.p().paths.child(self.pos(parent), name.to_bytes());
        if pos.access() == Access::Hidden {
            return Err(self.deny("lookup", parent, Some(name.to_bytes()), &self.rule_text(pos), libc::ENOENT));
        }
        let hctx = self.host_ctx("lookup", ctx)?;
        let e = self.inner.lookup(&hctx, parent, name)?;
        self.track("lookup", parent, name.to_bytes(), pos, e)
    }

    fn forget(&self, node: NodeId, count: u64) {
        self.untrack(node, count);
        self.inner.forget(node, count);
    }

    fn batch_forget(&self, requests: &[(NodeId, u64)]) {
        for &(node, count) in requests {
            self.untrack(node, count);
        }
        self.inner.batch_forget(requests);
    }

    fn getattr(&self, ctx: &Context, node: NodeId, handle: Option<Handle>) -> io::Result<(Attr, Duration)> {
        let (a, t) = self.inner.getattr(&self.host_ctx("getattr", ctx)?, node, handle)?;
        Ok((self.guest_attr(a), t))
    }

    fn setattr(&self, ctx: &Context, node: NodeId, mut set: SetattrIn) -> io::Result<(Attr, Duration)> {
        self.check_writable("setattr", node, None)?;
        let hctx = self.host_ctx("setattr", ctx)?;
        let (uid, gid) = self.map_owner("setattr", node, set.uid, set.gid)?;
        set.uid = uid;
        set.gid = gid;
        set.mode = set.mode.map(|m| self.strip_setid(m));
        if let (Some(size), Some(max)) = (set.size, self.p().max_file_size) {
            if size > max {
                return Err(self.deny("truncate", node, None, &format!("max_file_size {max}"), libc::EFBIG));
            }
        }
        let (a, t) = self.inner.setattr(&hctx, node, set)?;
        Ok((self.guest_attr(a), t))
    }

    fn readlink(&self, ctx: &Context, node: NodeId) -> io::Result<Vec<u8>> {
        self.inner.readlink(&self.host_ctx("readlink", ctx)?, node)
    }

    fn symlink(&self, ctx: &Context, target: &CStr, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        self.check_create("symlink", parent, name.to_bytes(), libc::S_IFLNK)?;
        let pos = self.p().paths.child(self.pos(parent), name.to_bytes());
        let e = self.inner.symlink(&self.host_ctx("symlink", ctx)?, target, parent, name)?;
        self.track("symlink", parent, name.to_bytes(), pos, e)
    }

    fn mknod(&self, ctx: &Context, parent: NodeId, name: &CStr, req: MknodRequest) -> io::Result<Entry> {
        let mode = self.check_create("mknod", parent, name.to_bytes(), req.mode)?;
        let pos = self.p().paths.child(self.pos(parent), name.to_bytes());
        let e = self.inner.mknod(&self.host_ctx("mknod", ctx)?, parent, name, MknodRequest { mode, ..req })?;
        self.track("mknod", parent, name.to_bytes(), pos, e)
    }

    fn mkdir(&self, ctx: &Context, parent: NodeId, name: &CStr, mode: u32, umask: u32) -> io::Result<Entry> {
        let mode = self.check_create("mkdir", parent, name.to_bytes(), libc::S_IFDIR | mode)? & !libc::S_IFMT;
        let pos = self.p().paths.child(self.pos(parent), name.to_bytes());
        let e = self.inner.mkdir(&self.host_ctx("mkdir", ctx)?, parent, name, mode, umask)?;
        self.track("mkdir", parent, name.to_bytes(), pos, e)
    }

    fn unlink(&self, ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<()> {
        self.check_writable("unlink", parent, Some(name.to_bytes()))?;
        self.inner.unlink(&self.host_ctx("unlink", ctx)?, parent, name)
    }

    fn rmdir(&self, ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<()> {
        self.check_writable("rmdir", parent, Some(name.to_bytes()))?;
        self.inner.rmdir(&self.host_ctx("rmdir", ctx)?, parent, name)
    }

    fn rename(&self, ctx: &Context, req: RenameRequest<'_>) -> io::Result<()> {
        let RenameRequest { olddir, oldname, newdir, newname, .. } = req;
        let from = self.check_writable("rename", olddir, Some(oldname.to_bytes()))?;
        let to = self.check_writable("rename", newdir, Some(newname.to_bytes()))?;
        // A move that would change which rules apply beneath the moved tree is
        // refused with EXDEV: tools then copy, and the copy obeys the rules.
        if from != to {
            return Err(self.deny("rename", newdir, Some(newname.to_bytes()), "crosses a path rule", libc::EXDEV));
        }
        self.inner.rename(&self.host_ctx("rename", ctx)?, req)
    }

    fn link(&self, ctx: &Context, node: NodeId, newparent: NodeId, newname: &CStr) -> io::Result<Entry> {
        let to = self.check_writable("link", newparent, Some(newname.to_bytes()))?;
        if self.pos(node) != to {
            return Err(self.deny("link", newparent, Some(newname.to_bytes()), "crosses a path rule", libc::EXDEV));
        }
        let e = self.inner.link(&self.host_ctx("link", ctx)?, node, newparent, newname)?;
        self.track("link", newparent, newname.to_bytes(), to, e)
    }

    fn open(&self, ctx: &Context, node: NodeId, flags: u32, kill_suidgid: bool) -> io::Result<OpenReply> {
        if flags & WRITE_FLAGS != 0 {
            self.check_writable("open for writing", node, None)?;
        }
        let hctx = self.host_ctx("open", ctx)?;
        self.reserve_handle("open", node)?;
        let r = self.inner.open(&hctx, node, flags, kill_suidgid);
        self.opened(node, r, |o| o.handle)
    }

    fn create(&self, ctx: &Context, parent: NodeId, name: &CStr, req: CreateRequest) -> io::Result<(Entry, OpenReply)> {
        let mode = self.check_create("create", parent, name.to_bytes(), libc::S_IFREG | req.mode)?;
        let pos = self.p().paths.child(self.pos(parent), name.to_bytes());
        let hctx = self.host_ctx("create", ctx)?;
        self.reserve_handle("create", parent)?;
        let r = self.inner.create(&hctx, parent, name, CreateRequest { mode, ..req });
        let (e, o) = self.opened(parent, r, |(_, o)| o.handle)?;
        match self.track("create", parent, name.to_bytes(), pos, e) {
            Ok(e) => Ok((e, o)),
            Err(error) => {
                let _ = self.inner.release(&hctx, e.nodeid, o.handle, req.flags, None);
                self.closed(o.handle);
                Err(error)
            }
        }
    }

    fn tmpfile(&self, ctx: &Context, parent: NodeId, req: CreateRequest) -> io::Result<(Entry, OpenReply)> {
        self.check_writable("tmpfile", parent, None)?;
        let pos = self.pos(parent);
        let mode = self.strip_setid(req.mode);
        let hctx = self.host_ctx("tmpfile", ctx)?;
        self.reserve_handle("tmpfile", parent)?;
        let r = self.inner.tmpfile(&hctx, parent, CreateRequest { mode, ..req });
        let (e, o) = self.opened(parent, r, |(_, o)| o.handle)?;
        let e = self.track("tmpfile", parent, b"(tmpfile)", pos, e)?;
        Ok((e, o))
    }

    /// A DAX mapping: never of a hidden file (a reload may hide a node the
    /// guest holds), and writable only where writes are allowed.
    fn dax_fd(&self, ctx: &Context, node: NodeId, handle: Option<Handle>, writable: bool) -> io::Result<OwnedFd> {
        let pos = self.pos(node);
        if pos.access() == Access::Hidden {
            return Err(self.deny("setupmapping", node, None, &self.rule_text(pos), libc::ENOENT));
        }
        if writable {
            self.check_writable("setupmapping for writing", node, None)?;
        }
        let hctx = self.host_ctx("setupmapping", ctx)?;
        self.inner.dax_fd(&hctx, node, handle, writable)
    }

    /// `[dax] files`: picked by the node's place under the rules in force
    /// (a hidden file never is).
    fn dax_pick(&self, node: NodeId, mode: u32, writable: bool) -> bool {
        let p = self.p();
        let pos = self.pos(node);
        let may_write = !p.readonly && pos.access() == Access::Normal;
        p.dax.is_some_and(|files| files.picks(mode, pos, p.readonly)) && (may_write || !writable)
    }

    fn host_inode(&self, node: NodeId) -> Option<(u64, u64)> {
        self.inner.host_inode(node)
    }

    fn read(&self, ctx: &Context, node: NodeId, req: ReadRequest, w: &mut dyn ZeroCopyWriter) -> io::Result<usize> {
        self.inner.read(ctx, node, req, w)
    }

    fn write(&self, ctx: &Context, node: NodeId, req: WriteRequest, r: &mut dyn ZeroCopyReader) -> io::Result<usize> {
        if let Some(max) = self.p().max_file_size {
            if req.offset.saturating_add(u64::from(req.size)) > max {
                return Err(self.deny("write", node, None, &format!("max_file_size {max}"), libc::EFBIG));
            }
        }
        let hctx = self.host_ctx("write", ctx)?;
        self.check_share_writable("write", node)?;
        let req = WriteRequest { kill_suidgid: req.kill_suidgid || !self.p().allow_setuid, ..req };
        self.inner.write(&hctx, node, req, r)
    }

    fn flush(&self, ctx: &Context, node: NodeId, handle: Handle, lock_owner: LockOwner) -> io::Result<()> {
        self.inner.flush(ctx, node, handle, lock_owner)
    }

    fn release(
        &self,
        ctx: &Context,
        node: NodeId,
        handle: Handle,
        flags: u32,
        flock_unlock_owner: Option<LockOwner>,
    ) -> io::Result<()> {
        self.closed(handle);
        self.inner.release(ctx, node, handle, flags, flock_unlock_owner)
    }

    fn fsync(&self, ctx: &Context, node: NodeId, handle: Handle, datasync: bool) -> io::Result<()> {
        self.inner.fsync(ctx, node, handle, datasync)
    }

    fn statfs(&self, ctx: &Context, node: NodeId) -> io::Result<Kstatfs> {
        self.inner.statfs(ctx, node)
    }

    fn setxattr(&self, ctx: &Context, node: NodeId, name: &CStr, req: SetxattrRequest<'_>) -> io::Result<()> {
        self.check_writable("setxattr", node, None)?;
        let host = self.xattr_host_name("setxattr", node, name, libc::EPERM)?;
        self.inner.setxattr(&self.host_ctx("setxattr", ctx)?, node, &host, req)
    }

    fn getxattr(&self, ctx: &Context, node: NodeId, name: &CStr) -> io::Result<Vec<u8>> {
        let host = self.xattr_host_name("getxattr", node, name, libc::ENODATA)?;
        self.inner.getxattr(&self.host_ctx("getxattr", ctx)?, node, &host)
    }

    fn listxattr(&self, ctx: &Context, node: NodeId) -> io::Result<Vec<u8>> {
        let list = self.inner.listxattr(&self.host_ctx("listxattr", ctx)?, node)?;
        Ok(if self.p().xattr.is_passthrough() { list } else { self.p().xattr.list_to_guest(&list) })
    }

    fn removexattr(&self, ctx: &Context, node: NodeId, name: &CStr) -> io::Result<()> {
        self.check_writable("removexattr", node, None)?;
        let host = self.xattr_host_name("removexattr", node, name, libc::EPERM)?;
        self.inner.removexattr(&self.host_ctx("removexattr", ctx)?, node, &host)
    }

    fn opendir(&self, ctx: &Context, node: NodeId, flags: u32) -> io::Result<OpenReply> {
        let hctx = self.host_ctx("opendir", ctx)?;
        self.reserve_handle("opendir", node)?;
        let r = self.inner.opendir(&hctx, node, flags);
        self.opened(node, r, |o| o.handle)
    }

    fn readdir(
        &self,
        ctx: &Context,
        node: NodeId,
        handle: Handle,
        offset: u64,
        sink: &mut dyn DirSink,
    ) -> io::Result<()> {
        if self.p().paths.is_empty()
            && self.p().max_inodes.is_none()
            && self.p().uid.is_identity()
            && self.p().gid.is_identity()
        {
            return self.inner.readdir(ctx, node, handle, offset, sink);
        }
        let parent_pos = self.pos(node);
        let mut filter = FilterSink { fs: self, inner: sink, parent: node, parent_pos, to_forget: Vec::new() };
        let r = self.inner.readdir(&self.host_ctx("readdir", ctx)?, node, handle, offset, &mut filter);
        let forget = std::mem::take(&mut filter.to_forget);
        for n in forget {
            self.inner.forget(n, 1);
        }
        r
    }

    fn releasedir(&self, ctx: &Context, node: NodeId, handle: Handle, flags: u32) -> io::Result<()> {
        self.closed(handle);
        self.inner.releasedir(ctx, node, handle, flags)
    }

    fn fsyncdir(&self, ctx: &Context, node: NodeId, handle: Handle, datasync: bool) -> io::Result<()> {
        self.inner.fsyncdir(ctx, node, handle, datasync)
    }

    fn getlk(&self, ctx: &Context, node: NodeId, req: LockRequest) -> io::Result<FileLock> {
        self.inner.getlk(ctx, node, req)
    }

    fn setlk(&self, ctx: &Context, node: NodeId, req: LockRequest, wait: bool) -> io::Result<()> {
        self.inner.setlk(ctx, node, req, wait)
    }

    fn access(&self, ctx: &Context, node: NodeId, mask: u32) -> io::Result<()> {
        if mask & libc::W_OK as u32 != 0 {
            self.check_writable("access", node, None)?;
        }
        self.inner.access(&self.host_ctx("access", ctx)?, node, mask)
    }

    fn fallocate(&self, ctx: &Context, node: NodeId, req: FallocateRequest) -> io::Result<()> {
        if let Some(max) = self.p().max_file_size {
            if req.offset.saturating_add(req.length) > max {
                return Err(self.deny("fallocate", node, None, &format!("max_file_size {max}"), libc::EFBIG));
            }
        }
        self.check_share_writable("fallocate", node)?;
        self.inner.fallocate(ctx, node, req)
    }

    fn lseek(&self, ctx: &Context, node: NodeId, handle: Handle, offset: u64, whence: u32) -> io::Result<u64> {
        self.inner.lseek(ctx, node, handle, offset, whence)
    }

    fn copy_file_range(&self, ctx: &Context, range: CopyRange) -> io::Result<usize> {
        if let Some(max) = self.p().max_file_size {
            if range.offset_out.saturating_add(range.len) > max {
                let rule = format!("max_file_size {max}");
                return Err(self.deny("copy_file_range", range.node_out, None, &rule, libc::EFBIG));
            }
        }
        self.check_share_writable("copy_file_range", range.node_out)?;
        self.inner.copy_file_range(ctx, range)
    }

    fn syncfs(&self, ctx: &Context, node: NodeId) -> io::Result<()> {
        self.inner.syncfs(ctx, node)
    }

    fn statx(
        &self,
        ctx: &Context,
        node: NodeId,
        handle: Option<Handle>,
        flags: u32,
        mask: u32,
    ) -> io::Result<(Statx, Duration)> {
        let (mut s, t) = self.inner.statx(&self.host_ctx("statx", ctx)?, node, handle, flags, mask)?;
        s.uid = self.p().uid.to_guest(s.uid);
        s.gid = self.p().gid.to_guest(s.gid);
        Ok((s, t))
    }
}
