//! A small in-memory [`FileSystem`] for fuzzing the protocol server alone.
//!
//! Regular files keep their data in a `memfd`, so READ and WRITE go through
//! the server's zero-copy path (`preadv`/`pwritev` on a descriptor) exactly
//! as with the passthrough. Everything is bounded (nodes, file size, xattr
//! bytes) so that no input can exhaust memory. Permission checks are those
//! of root: none. Node ids and handles count up from 2 and 1.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use avpfs_server::{
    Context, CopyRange, CreateRequest, DirEntry, DirSink, Entry, FallocateRequest, FileSystem, Handle, InitOptions,
    LockOwner, LockRequest, MknodRequest, NodeId, OpenReply, ReadRequest, RenameRequest, SetattrIn, SetxattrRequest,
    TimeSpec, WantedFlags, WriteRequest, ZeroCopyReader, ZeroCopyWriter,
};
use fuse_abi::{Attr, FileLock, Kstatfs, Statx, SxTime};

/// Most nodes one file system holds.
pub const MAX_NODES: usize = 4096;
/// Largest file size.
pub const MAX_FILE_SIZE: u64 = 4 << 20;
/// Most extended-attribute bytes (names and values) per node.
pub const MAX_XATTR_BYTES: usize = 128 * 1024;
/// How long the client may cache names and attributes.
const TIMEOUT: Duration = Duration::from_secs(1);

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

#[derive(Debug)]
enum Kind {
    File(File),
    Dir(BTreeMap<Vec<u8>, NodeId>),
    Symlink(Vec<u8>),
    /// FIFO, socket or device node: no data.
    Special,
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    /// Type and permission bits.
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u32,
    nlink: u32,
    /// The directory that holds a directory (itself for the root).
    parent: NodeId,
    atime: (u64, u32),
    mtime: (u64, u32),
    ctime: (u64, u32),
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
struct OpenFile {
    node: NodeId,
    dir: bool,
}

#[derive(Debug, Default)]
struct Inner {
    nodes: HashMap<NodeId, Node>,
    next_node: u64,
    handles: HashMap<Handle, OpenFile>,
    next_handle: u64,
    /// A logical clock, so that runs are reproducible.
    clock: u64,
}

/// The in-memory file system.
#[derive(Debug)]
pub struct MemFs {
    inner: Mutex<Inner>,
}

impl Default for MemFs {
    fn default() -> Self {
        Self::new()
    }
}

fn memfd() -> io::Result<File> {
    // SAFETY: the name is a valid NUL-terminated string; the flags are constants.
    let fd = unsafe { libc::memfd_create(c"avpfs-fuzz".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by no one else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

impl MemFs {
    /// An empty file system (just the root directory).
    pub fn new() -> Self {
        let mut inner = Inner { next_node: NodeId::ROOT.get() + 1, next_handle: 1, ..Default::default() };
        let root = Node::new(Kind::Dir(BTreeMap::new()), libc::S_IFDIR | 0o755, 0, 0, NodeId::ROOT);
        inner.nodes.insert(NodeId::ROOT, root);
        if let Some(root) = inner.nodes.get_mut(&NodeId::ROOT) {
            root.nlink = 2;
        }
        MemFs { inner: Mutex::new(inner) }
    }

    /// The tree every fuzz run starts from (the same as the passthrough
    /// share's: see `sandbox::populate`).
    pub fn populated() -> Self {
        let fs = MemFs::new();
        let ctx = Context::default();
        let ok = |r: io::Result<Entry>| r.map(|e| e.nodeid).unwrap_or(NodeId::NONE);
        let reg = MknodRequest { mode: libc::S_IFREG | 0o644, rdev: 0, umask: 0 };
        let file = ok(fs.mknod(&ctx, NodeId::ROOT, c"file", reg));
        if let Ok(mut g) = fs.inner.lock() {
            if let Some(Kind::File(f)) = g.nodes.get_mut(&file).map(|n| &mut n.kind) {
                let _ = f.write_all_at(crate::sandbox::FILE_CONTENT, 0);
            }
            if let Some(n) = g.nodes.get_mut(&file) {
                n.xattrs.insert(b"user.test".to_vec(), b"value".to_vec());
            }
        }
        let dir = ok(fs.mkdir(&ctx, NodeId::ROOT, c"dir", 0o755, 0));
        ok(fs.mknod(&ctx, dir, c"inner", reg));
        ok(fs.mkdir(&ctx, NodeId::ROOT, c"pub", 0o1777, 0));
        ok(fs.symlink(&ctx, c"file", NodeId::ROOT, c"link"));
        ok(fs.symlink(&ctx, c"../sentinel", NodeId::ROOT, c"escape"));
        ok(fs.symlink(&ctx, c"/tmp/avpfs-fuzz-share/sentinel", NodeId::ROOT, c"abs"));
        ok(fs.mknod(&ctx, NodeId::ROOT, c"fifo", MknodRequest { mode: libc::S_IFIFO | 0o644, ..reg }));
        fs
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Node {
    fn new(kind: Kind, mode: u32, uid: u32, gid: u32, parent: NodeId) -> Node {
        Node {
            kind,
            mode,
            uid,
            gid,
            rdev: 0,
            nlink: 1,
            parent,
            atime: (0, 0),
            mtime: (0, 0),
            ctime: (0, 0),
            xattrs: BTreeMap::new(),
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    fn size(&self) -> u64 {
        match &self.kind {
            Kind::File(f) => f.metadata().map(|m| m.len()).unwrap_or(0),
            Kind::Dir(entries) => 4096 + 32 * entries.len() as u64,
            Kind::Symlink(t) => t.len() as u64,
            Kind::Special => 0,
        }
    }

    fn attr(&self, ino: NodeId) -> Attr {
        let size = self.size();
        Attr {
            ino: ino.get(),
            size,
            blocks: size.div_ceil(512),
            atime: self.atime.0,
            mtime: self.mtime.0,
            ctime: self.ctime.0,
            atimensec: self.atime.1,
            mtimensec: self.mtime.1,
            ctimensec: self.ctime.1,
            mode: self.mode,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: self.rdev,
            blksize: 4096,
            flags: 0,
        }
    }

    fn file(&self) -> io::Result<&File> {
        match &self.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir(_) => Err(err(libc::EISDIR)),
            _ => Err(err(libc::EINVAL)),
        }
    }
}

impl Inner {
    fn tick(&mut self) -> (u64, u32) {
        self.clock += 1;
        (1_700_000_000 + self.clock, 0)
    }

    fn node(&self, id: NodeId) -> io::Result<&Node> {
        self.nodes.get(&id).ok_or_else(|| err(libc::ENOENT))
    }

    fn node_mut(&mut self, id: NodeId) -> io::Result<&mut Node> {
        self.nodes.get_mut(&id).ok_or_else(|| err(libc::ENOENT))
    }

    fn entries(&self, dir: NodeId) -> io::Result<&BTreeMap<Vec<u8>, NodeId>> {
        match &self.node(dir)?.kind {
            Kind::Dir(e) => Ok(e),
            _ => Err(err(libc::ENOTDIR)),
        }
    }

    fn entries_mut(&mut self, dir: NodeId) -> io::Result<&mut BTreeMap<Vec<u8>, NodeId>> {
        match &mut self.node_mut(dir)?.kind {
            Kind::Dir(e) => Ok(e),
            _ => Err(err(libc::ENOTDIR)),
        }
    }

    fn child(&self, dir: NodeId, name: &[u8]) -> io::Result<NodeId> {
        self.entries(dir)?.get(name).copied().ok_or_else(|| err(libc::ENOENT))
    }

    fn entry(&self, id: NodeId) -> io::Result<Entry> {
        let attr = self.node(id)?.attr(id);
        Ok(Entry { nodeid: id, generation: 1, attr, attr_timeout: TIMEOUT, entry_timeout: TIMEOUT })
    }

    fn handle(&self, fh: Handle) -> io::Result<OpenFile> {
        self.handles.get(&fh).copied().ok_or_else(|| err(libc::EBADF))
    }

    fn file_handle(&self, fh: Handle) -> io::Result<&File> {
        let h = self.handle(fh)?;
        if h.dir {
            return Err(err(libc::EISDIR));
        }
        self.node(h.node)?.file()
    }

    /// Adds a new node named `name` in `parent`.
    fn create_node(&mut self, ctx: &Context, parent: NodeId, name: &CStr, kind: Kind, mode: u32) -> io::Result<NodeId> {
        if self.nodes.len() >= MAX_NODES {
            return Err(err(libc::ENOSPC));
        }
        if self.entries(parent)?.contains_key(name.to_bytes()) {
            return Err(err(libc::EEXIST));
        }
        let is_dir = matches!(kind, Kind::Dir(_));
        let id = NodeId(self.next_node);
        self.next_node += 1;
        let now = self.tick();
        let mut node = Node::new(kind, mode, ctx.uid, ctx.gid, parent);
        node.nlink = if is_dir { 2 } else { 1 };
        (node.atime, node.mtime, node.ctime) = (now, now, now);
        self.nodes.insert(id, node);
        self.entries_mut(parent)?.insert(name.to_bytes().to_vec(), id);
        let p = self.node_mut(parent)?;
        (p.mtime, p.ctime) = (now, now);
        if is_dir {
            p.nlink += 1;
        }
        Ok(id)
    }

    fn open_handle(&mut self, node: NodeId, dir: bool) -> Handle {
        let fh = Handle(self.next_handle);
        self.next_handle += 1;
        self.handles.insert(fh, OpenFile { node, dir });
        fh
    }

    /// Whether `node` is `dir` or one of its ancestors.
    fn is_ancestor(&self, node: NodeId, mut dir: NodeId) -> bool {
        for _ in 0..=self.nodes.len() {
            if dir == node {
                return true;
            }
            match self.nodes.get(&dir) {
                Some(n) if n.parent != dir => dir = n.parent,
                _ => return false,
            }
        }
        false
    }

    /// Removes the entry `name` of `parent`, which refers to `id`.
    fn unlink_entry(&mut self, parent: NodeId, name: &[u8], id: NodeId) -> io::Result<()> {
        self.entries_mut(parent)?.remove(name);
        let now = self.tick();
        let is_dir = self.node(id)?.is_dir();
        let n = self.node_mut(id)?;
        n.nlink = if is_dir { 0 } else { n.nlink.saturating_sub(1) };
        n.ctime = now;
        let p = self.node_mut(parent)?;
        (p.mtime, p.ctime) = (now, now);
        if is_dir {
            p.nlink = p.nlink.saturating_sub(1);
        }
        Ok(())
    }

    fn set_size(&mut self, id: NodeId, size: u64) -> io::Result<()> {
        if size > MAX_FILE_SIZE {
            return Err(err(libc::EFBIG));
        }
        self.node(id)?.file()?.set_len(size)?;
        let now = self.tick();
        let n = self.node_mut(id)?;
        (n.mtime, n.ctime) = (now, now);
        Ok(())
    }
}

fn file_type(mode: u32) -> u32 {
    (mode & libc::S_IFMT) >> 12
}

impl FileSystem for MemFs {
    fn init(&self, _opts: InitOptions) -> io::Result<WantedFlags> {
        use fuse_abi::init_flags::*;
        Ok(DO_READDIRPLUS | READDIRPLUS_AUTO | SETXATTR_EXT | ATOMIC_O_TRUNC | DONT_MASK)
    }

    fn destroy(&self) {
        self.lock().handles.clear();
    }

    fn lookup(&self, _ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        let g = self.lock();
        let id = g.child(parent, name.to_bytes())?;
        g.entry(id)
    }

    fn getattr(&self, _ctx: &Context, node: NodeId, handle: Option<Handle>) -> io::Result<(Attr, Duration)> {
        let g = self.lock();
        let node = match handle {
            Some(fh) => g.handle(fh)?.node,
            None => node,
        };
        Ok((g.node(node)?.attr(node), TIMEOUT))
    }

    fn setattr(&self, _ctx: &Context, node: NodeId, set: SetattrIn) -> io::Result<(Attr, Duration)> {
        let mut g = self.lock();
        let node = match set.handle {
            Some(fh) => g.handle(fh)?.node,
            None => node,
        };
        g.node(node)?;
        if let Some(size) = set.size {
            g.set_size(node, size)?;
        }
        let now = g.tick();
        let n = g.node_mut(node)?;
        if let Some(mode) = set.mode {
            n.mode = (n.mode & libc::S_IFMT) | (mode & 0o7777);
        }
        if let Some(uid) = set.uid {
            n.uid = uid;
        }
        if let Some(gid) = set.gid {
            n.gid = gid;
        }
        if set.kill_suidgid {
            n.mode &= !(libc::S_ISUID | libc::S_ISGID);
        }
        let time = |t: TimeSpec| match t {
            TimeSpec::Now => now,
            TimeSpec::At(s, ns) => (s, ns.min(999_999_999)),
        };
        if let Some(t) = set.atime {
            n.atime = time(t);
        }
        if let Some(t) = set.mtime {
            n.mtime = time(t);
        }
        n.ctime = now;
        Ok((n.attr(node), TIMEOUT))
    }

    fn readlink(&self, _ctx: &Context, node: NodeId) -> io::Result<Vec<u8>> {
        match &self.lock().node(node)?.kind {
            Kind::Symlink(t) => Ok(t.clone()),
            _ => Err(err(libc::EINVAL)),
        }
    }

    fn symlink(&self, ctx: &Context, target: &CStr, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        let mut g = self.lock();
        let id = g.create_node(ctx, parent, name, Kind::Symlink(target.to_bytes().to_vec()), libc::S_IFLNK | 0o777)?;
        g.entry(id)
    }

    fn mknod(&self, ctx: &Context, parent: NodeId, name: &CStr, req: MknodRequest) -> io::Result<Entry> {
        let MknodRequest { mode, rdev, umask } = req;
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File(memfd()?),
            libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK => Kind::Special,
            _ => return Err(err(libc::EINVAL)),
        };
        let mut g = self.lock();
        let id = g.create_node(ctx, parent, name, kind, mode & (libc::S_IFMT | (0o7777 & !umask)))?;
        g.node_mut(id)?.rdev = rdev;
        g.entry(id)
    }

    fn mkdir(&self, ctx: &Context, parent: NodeId, name: &CStr, mode: u32, umask: u32) -> io::Result<Entry> {
        let mut g = self.lock();
        let id =
            g.create_node(ctx, parent, name, Kind::Dir(BTreeMap::new()), libc::S_IFDIR | (mode & 0o7777 & !umask))?;
        g.entry(id)
    }

    fn unlink(&self, _ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<()> {
        let mut g = self.lock();
        let id = g.child(parent, name.to_bytes())?;
        if g.node(id)?.is_dir() {
            return Err(err(libc::EISDIR));
        }
        g.unlink_entry(parent, name.to_bytes(), id)
    }

    fn rmdir(&self, _ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<()> {
        let mut g = self.lock();
        let id = g.child(parent, name.to_bytes())?;
        if !g.entries(id)?.is_empty() {
            return Err(err(libc::ENOTEMPTY));
        }
        g.unlink_entry(parent, name.to_bytes(), id)
    }

    fn rename(&self, _ctx: &Context, req: RenameRequest<'_>) -> io::Result<()> {
        let RenameRequest { olddir, oldname, newdir, newname, flags } = req;
        const NOREPLACE: u32 = libc::RENAME_NOREPLACE;
        const EXCHANGE: u32 = libc::RENAME_EXCHANGE;
        if flags & !(NOREPLACE | EXCHANGE) != 0 || flags == NOREPLACE | EXCHANGE {
            return Err(err(libc::EINVAL));
        }
        let mut g = self.lock();
        let (oldname, newname) = (oldname.to_bytes(), newname.to_bytes());
        let src = g.child(olddir, oldname)?;
        g.entries(newdir)?;
        let dst = g.entries(newdir)?.get(newname).copied();
        if Some(src) == dst {
            return Ok(());
        }
        // A directory cannot move into itself or below.
        if g.node(src)?.is_dir() && g.is_ancestor(src, newdir) {
            return Err(err(libc::EINVAL));
        }
        if flags & EXCHANGE != 0 {
            let dst = dst.ok_or_else(|| err(libc::ENOENT))?;
            if g.node(dst)?.is_dir() && g.is_ancestor(dst, olddir) {
                return Err(err(libc::EINVAL));
            }
            g.entries_mut(olddir)?.insert(oldname.to_vec(), dst);
            g.entries_mut(newdir)?.insert(newname.to_vec(), src);
            for (id, dir) in [(src, newdir), (dst, olddir)] {
                let n = g.node_mut(id)?;
                if n.is_dir() {
                    n.parent = dir;
                }
            }
            return Ok(());
        }
        let src_dir = g.node(src)?.is_dir();
        if let Some(dst) = dst {
            if flags & NOREPLACE != 0 {
                return Err(err(libc::EEXIST));
            }
            match (src_dir, g.node(dst)?.is_dir()) {
                (true, false) => return Err(err(libc::ENOTDIR)),
                (false, true) => return Err(err(libc::EISDIR)),
                (true, true) if !g.entries(dst)?.is_empty() => return Err(err(libc::ENOTEMPTY)),
                _ => {}
            }
            g.unlink_entry(newdir, newname, dst)?;
        }
        g.entries_mut(olddir)?.remove(oldname);
        g.entries_mut(newdir)?.insert(newname.to_vec(), src);
        if src_dir {
            let old = g.node_mut(olddir)?;
            old.nlink = old.nlink.saturating_sub(1);
            let new = g.node_mut(newdir)?;
            new.nlink = new.nlink.saturating_add(1);
            g.node_mut(src)?.parent = newdir;
        }
        Ok(())
    }

    fn link(&self, _ctx: &Context, node: NodeId, newparent: NodeId, newname: &CStr) -> io::Result<Entry> {
        let mut g = self.lock();
        if g.node(node)?.is_dir() {
            return Err(err(libc::EPERM));
        }
        if g.entries(newparent)?.contains_key(newname.to_bytes()) {
            return Err(err(libc::EEXIST));
        }
        g.entries_mut(newparent)?.insert(newname.to_bytes().to_vec(), node);
        let now = g.tick();
        let n = g.node_mut(node)?;
        n.nlink = n.nlink.saturating_add(1);
        n.ctime = now;
        g.entry(node)
    }

    fn open(&self, _ctx: &Context, node: NodeId, flags: u32, _kill_suidgid: bool) -> io::Result<OpenReply> {
        let mut g = self.lock();
        let flags = flags as i32;
        match g.node(node)?.kind {
            Kind::Dir(_) if flags & libc::O_ACCMODE != libc::O_RDONLY => return Err(err(libc::EISDIR)),
            Kind::Symlink(_) => return Err(err(libc::ELOOP)),
            Kind::Special => return Err(err(libc::ENXIO)),
            _ => {}
        }
        if flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
            g.set_size(node, 0)?;
        }
        let dir = g.node(node)?.is_dir();
        Ok(OpenReply { handle: g.open_handle(node, dir), open_flags: 0 })
    }

    fn create(&self, ctx: &Context, parent: NodeId, name: &CStr, req: CreateRequest) -> io::Result<(Entry, OpenReply)> {
        let CreateRequest { mode, umask, flags } = req;
        let existing = self.lock().entries(parent)?.get(name.to_bytes()).copied();
        let node = match existing {
            Some(_) if flags as i32 & libc::O_EXCL != 0 => return Err(err(libc::EEXIST)),
            Some(id) => id,
            None => {
                let req = MknodRequest { mode: libc::S_IFREG | (mode & 0o7777), rdev: 0, umask };
                self.mknod(ctx, parent, name, req)?.nodeid
            }
        };
        let open = self.open(ctx, node, flags, false)?;
        let entry = self.lock().entry(node)?;
        Ok((entry, open))
    }

    fn tmpfile(&self, ctx: &Context, parent: NodeId, req: CreateRequest) -> io::Result<(Entry, OpenReply)> {
        let CreateRequest { mode, umask, .. } = req;
        let mut g = self.lock();
        g.entries(parent)?;
        if g.nodes.len() >= MAX_NODES {
            return Err(err(libc::ENOSPC));
        }
        let id = NodeId(g.next_node);
        g.next_node += 1;
        let mut node =
            Node::new(Kind::File(memfd()?), libc::S_IFREG | (mode & 0o7777 & !umask), ctx.uid, ctx.gid, parent);
        node.nlink = 0;
        g.nodes.insert(id, node);
        let fh = g.open_handle(id, false);
        Ok((g.entry(id)?, OpenReply { handle: fh, open_flags: 0 }))
    }

    fn read(&self, _ctx: &Context, _node: NodeId, req: ReadRequest, w: &mut dyn ZeroCopyWriter) -> io::Result<usize> {
        let g = self.lock();
        let f = g.file_handle(req.handle)?;
        w.write_from(f.as_fd(), req.size as usize, req.offset)
    }

    fn write(&self, _ctx: &Context, _node: NodeId, req: WriteRequest, r: &mut dyn ZeroCopyReader) -> io::Result<usize> {
        if req.offset.saturating_add(u64::from(req.size)) > MAX_FILE_SIZE {
            return Err(err(libc::EFBIG));
        }
        let g = self.lock();
        let f = g.file_handle(req.handle)?;
        r.read_to(f.as_fd(), req.size as usize, req.offset)
    }

    fn flush(&self, _ctx: &Context, _node: NodeId, handle: Handle, _lock_owner: LockOwner) -> io::Result<()> {
        self.lock().handle(handle).map(drop)
    }

    fn release(
        &self,
        _ctx: &Context,
        _node: NodeId,
        handle: Handle,
        _flags: u32,
        _flock_unlock_owner: Option<LockOwner>,
    ) -> io::Result<()> {
        self.lock().handles.remove(&handle).map(drop).ok_or_else(|| err(libc::EBADF))
    }

    fn fsync(&self, _ctx: &Context, _node: NodeId, handle: Handle, _datasync: bool) -> io::Result<()> {
        self.lock().handle(handle).map(drop)
    }

    fn statfs(&self, _ctx: &Context, _node: NodeId) -> io::Result<Kstatfs> {
        let g = self.lock();
        let files = MAX_NODES as u64;
        let ffree = files - g.nodes.len() as u64;
        Ok(Kstatfs {
            blocks: 1 << 20,
            bfree: 1 << 19,
            bavail: 1 << 19,
            files,
            ffree,
            bsize: 4096,
            namelen: 255,
            frsize: 4096,
            ..Default::default()
        })
    }

    fn setxattr(&self, _ctx: &Context, node: NodeId, name: &CStr, req: SetxattrRequest<'_>) -> io::Result<()> {
        let SetxattrRequest { value, flags, .. } = req;
        let mut g = self.lock();
        let n = g.node_mut(node)?;
        let name = name.to_bytes();
        let exists = n.xattrs.contains_key(name);
        if flags as i32 & libc::XATTR_CREATE != 0 && exists {
            return Err(err(libc::EEXIST));
        }
        if flags as i32 & libc::XATTR_REPLACE != 0 && !exists {
            return Err(err(libc::ENODATA));
        }
        let used: usize = n.xattrs.iter().filter(|(k, _)| k.as_slice() != name).map(|(k, v)| k.len() + v.len()).sum();
        if used + name.len() + value.len() > MAX_XATTR_BYTES {
            return Err(err(libc::ENOSPC));
        }
        n.xattrs.insert(name.to_vec(), value.to_vec());
        Ok(())
    }

    fn getxattr(&self, _ctx: &Context, node: NodeId, name: &CStr) -> io::Result<Vec<u8>> {
        self.lock().node(node)?.xattrs.get(name.to_bytes()).cloned().ok_or_else(|| err(libc::ENODATA))
    }

    fn listxattr(&self, _ctx: &Context, node: NodeId) -> io::Result<Vec<u8>> {
        let g = self.lock();
        let mut out = Vec::new();
        for k in g.node(node)?.xattrs.keys() {
            out.extend_from_slice(k);
            out.push(0);
        }
        Ok(out)
    }

    fn removexattr(&self, _ctx: &Context, node: NodeId, name: &CStr) -> io::Result<()> {
        self.lock().node_mut(node)?.xattrs.remove(name.to_bytes()).map(drop).ok_or_else(|| err(libc::ENODATA))
    }

    fn opendir(&self, _ctx: &Context, node: NodeId, _flags: u32) -> io::Result<OpenReply> {
        let mut g = self.lock();
        g.entries(node)?;
        Ok(OpenReply { handle: g.open_handle(node, true), open_flags: 0 })
    }

    fn readdir(
        &self,
        _ctx: &Context,
        _node: NodeId,
        handle: Handle,
        offset: u64,
        sink: &mut dyn DirSink,
    ) -> io::Result<()> {
        let g = self.lock();
        let h = g.handle(handle)?;
        if !h.dir {
            return Err(err(libc::ENOTDIR));
        }
        let dir = g.node(h.node)?;
        let mut list: Vec<(&[u8], NodeId)> = vec![(b".", h.node), (b"..", dir.parent)];
        list.extend(g.entries(h.node)?.iter().map(|(k, &v)| (k.as_slice(), v)));
        for (i, (name, id)) in list.into_iter().enumerate().skip(usize::try_from(offset).unwrap_or(usize::MAX)) {
            let Ok(node) = g.node(id) else { continue };
            let de = DirEntry { ino: id.get(), offset: i as u64 + 1, typ: file_type(node.mode), name };
            let plus = if sink.is_plus() && i >= 2 { Some(g.entry(id)?) } else { None };
            let plus = if sink.is_plus() { Some(plus.unwrap_or_default()) } else { None };
            if !sink.add(de, plus.as_ref()) {
                break;
            }
        }
        Ok(())
    }

    fn releasedir(&self, _ctx: &Context, _node: NodeId, handle: Handle, _flags: u32) -> io::Result<()> {
        self.lock().handles.remove(&handle).map(drop).ok_or_else(|| err(libc::EBADF))
    }

    fn fsyncdir(&self, _ctx: &Context, _node: NodeId, handle: Handle, _datasync: bool) -> io::Result<()> {
        self.lock().handle(handle).map(drop)
    }

    fn getlk(&self, _ctx: &Context, node: NodeId, req: LockRequest) -> io::Result<FileLock> {
        self.lock().node(node)?;
        Ok(FileLock { typ: libc::F_UNLCK as u32, ..req.lock })
    }

    fn setlk(&self, _ctx: &Context, node: NodeId, _req: LockRequest, _wait: bool) -> io::Result<()> {
        self.lock().node(node).map(drop)
    }

    fn access(&self, _ctx: &Context, node: NodeId, _mask: u32) -> io::Result<()> {
        self.lock().node(node).map(drop)
    }

    fn fallocate(&self, _ctx: &Context, _node: NodeId, req: FallocateRequest) -> io::Result<()> {
        let FallocateRequest { handle, mode, offset, length } = req;
        let mut g = self.lock();
        let node = g.handle(handle)?.node;
        let end = offset.checked_add(length).ok_or_else(|| err(libc::EFBIG))?;
        let punch = (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32;
        if mode == punch {
            let f = g.node(node)?.file()?;
            let (off, len) = (i64::try_from(offset), i64::try_from(length));
            let (Ok(off), Ok(len)) = (off, len) else { return Err(err(libc::EINVAL)) };
            // SAFETY: fallocate on a descriptor we own; no memory is passed.
            let rc = unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(f), mode as i32, off, len) };
            return if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
        }
        if mode != 0 {
            return Err(err(libc::EOPNOTSUPP));
        }
        if end > g.node(node)?.size() {
            g.set_size(node, end)?;
        }
        Ok(())
    }

    fn lseek(&self, _ctx: &Context, _node: NodeId, handle: Handle, offset: u64, whence: u32) -> io::Result<u64> {
        let g = self.lock();
        let size = g.file_handle(handle)?.metadata()?.len();
        if offset > i64::MAX as u64 {
            return Err(err(libc::EINVAL));
        }
        match whence as i32 {
            libc::SEEK_SET | libc::SEEK_CUR => Ok(offset),
            libc::SEEK_END => {
                size.checked_add(offset).filter(|&o| o <= i64::MAX as u64).ok_or_else(|| err(libc::EINVAL))
            }
            libc::SEEK_DATA if offset < size => Ok(offset),
            libc::SEEK_HOLE if offset < size => Ok(size),
            libc::SEEK_DATA | libc::SEEK_HOLE => Err(err(libc::ENXIO)),
            _ => Err(err(libc::EINVAL)),
        }
    }

    fn copy_file_range(&self, _ctx: &Context, range: CopyRange) -> io::Result<usize> {
        let CopyRange { handle_in, offset_in: off_in, handle_out, offset_out: off_out, len, .. } = range;
        let g = self.lock();
        let (fin, fout) = (g.file_handle(handle_in)?, g.file_handle(handle_out)?);
        let len = len.min(1 << 20);
        if off_out.saturating_add(len) > MAX_FILE_SIZE {
            return Err(err(libc::EFBIG));
        }
        let mut buf = vec![0u8; len as usize];
        let n = fin.read_at(&mut buf, off_in)?;
        fout.write_all_at(&buf[..n], off_out)?;
        Ok(n)
    }

    fn syncfs(&self, _ctx: &Context, _node: NodeId) -> io::Result<()> {
        Ok(())
    }

    fn statx(
        &self,
        _ctx: &Context,
        node: NodeId,
        handle: Option<Handle>,
        _flags: u32,
        mask: u32,
    ) -> io::Result<(Statx, Duration)> {
        let g = self.lock();
        let node = match handle {
            Some(fh) => g.handle(fh)?.node,
            None => node,
        };
        let a = g.node(node)?.attr(node);
        let t = |s: u64, ns: u32| SxTime { tv_sec: s as i64, tv_nsec: ns, reserved: 0 };
        let stat = Statx {
            mask: mask & libc::STATX_BASIC_STATS,
            blksize: a.blksize,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            mode: a.mode as u16,
            ino: a.ino,
            size: a.size,
            blocks: a.blocks,
            atime: t(a.atime, a.atimensec),
            ctime: t(a.ctime, a.ctimensec),
            mtime: t(a.mtime, a.mtimensec),
            ..Default::default()
        };
        Ok((stat, TIMEOUT))
    }
}
