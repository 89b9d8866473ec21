//! One 9P2000.L session: the state of one connection and the dispatch of
//! its requests onto a [`FileSystem`].
//!
//! A [`Session`] takes one frame at a time and leaves the whole reply frame
//! in a buffer; it does no I/O of its own (see [`crate::serve_connection`]
//! for the stream loop). Every request is answered before the next is
//! read, in order, so `Tflush` always names a request that was already
//! answered (or never existed): it is acknowledged with `Rflush` at once,
//! which is what the protocol asks in that case.

use std::ffi::{CStr, CString};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use avpfs_server::{
    Context, CreateRequest, FileSystem, LockOwner, LockRequest, MknodRequest, NodeId, ReadRequest, RenameRequest,
    SetattrIn, SetxattrRequest, SliceReader, TimeSpec, WriteRequest,
};
use fuse_abi::{Attr, FileLock};
use p9_abi::{
    decode_request, default_iounit, max_read_count, negotiate_msize, negotiate_version, open_flags, put_rread_header,
    Action, DecodeError, DirentWriter, Fid, FrameError, Getlock, LockStatus, LockType, Name, Qid, Reply, Request,
    Ropen, Rversion, SetTime, Stat, StatFs, Tag, WalkQids, RREAD_HEADER_LEN, VERSION_9P2000_L,
};

use crate::fids::{Dentries, DentryId, FidKind, FidState, FidTable, OpenFile, XattrWrite};
use crate::io::{DirentSink, ReplyData};
use crate::P9Options;

/// The `f_type` of a 9P file system (`V9FS_MAGIC`), as `Rstatfs` reports it.
const V9FS_MAGIC: u32 = 0x0102_1997;

/// The kernel's `OFFSET_MAX`: a lock end meaning "to the end of the file".
const OFFSET_MAX: u64 = i64::MAX as u64;

/// The `n_uname` of a client that sends none.
const NONUNAME: u32 = u32::MAX;

/// Distinguishes the lock owners of connections that share a file system.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

fn errno_of(e: &io::Error) -> u32 {
    e.raw_os_error().filter(|&e| e > 0 && e < 4096).unwrap_or(libc::EIO) as u32
}

/// The qid of a node with attributes `attr`: `path` is the inode number the
/// file system reports, `type` follows the mode, and `version` changes
/// with the modification time and size (as QEMU computes it).
pub(crate) fn qid_of(attr: &Attr) -> Qid {
    let version = (attr.mtime ^ (attr.size << 8)) as u32;
    Qid::from_mode(attr.mode, version, attr.ino)
}

fn stat_of(attr: &Attr) -> Stat {
    Stat {
        valid: p9_abi::getattr::BASIC,
        qid: qid_of(attr),
        mode: attr.mode,
        uid: attr.uid,
        gid: attr.gid,
        nlink: attr.nlink.into(),
        rdev: attr.rdev.into(),
        size: attr.size,
        blksize: attr.blksize.into(),
        blocks: attr.blocks,
        atime_sec: attr.atime,
        atime_nsec: attr.atimensec.into(),
        mtime_sec: attr.mtime,
        mtime_nsec: attr.mtimensec.into(),
        ctime_sec: attr.ctime,
        ctime_nsec: attr.ctimensec.into(),
        ..Stat::default()
    }
}

fn time_of(t: SetTime) -> io::Result<TimeSpec> {
    match t {
        SetTime::Now => Ok(TimeSpec::Now),
        SetTime::At(sec, nsec) if nsec < 1_000_000_000 => Ok(TimeSpec::At(sec, nsec as u32)),
        SetTime::At(..) => Err(err(libc::EINVAL)),
    }
}

/// The device number as a FUSE client encodes it (`new_encode_dev`).
fn encode_rdev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| err(libc::EINVAL))
}

/// One connection's protocol state over a file system.
///
/// Dropping it clunks every fid: open handles are released, lock owners'
/// locks dropped and every lookup reference it took is forgotten, so a
/// disconnected client leaves nothing behind in the file system.
pub struct Session<'f, F: FileSystem + ?Sized> {
    fs: &'f F,
    opts: P9Options,
    /// The negotiated msize; before `Tversion`, the server's largest.
    msize: u32,
    /// A `Tversion` agreed on 9P2000.L.
    ready: bool,
    fids: FidTable,
    dentries: Dentries,
    connection: u64,
}

impl<'f, F: FileSystem + ?Sized> Session<'f, F> {
    /// A session serving `fs`, before `Tversion`.
    pub fn new(fs: &'f F, opts: P9Options) -> Self {
        let msize = opts.max_msize.max(p9_abi::MIN_MSIZE);
        let connection = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
        Session { fs, opts, msize, ready: false, fids: FidTable::new(), dentries: Dentries::default(), connection }
    }

    /// The largest frame the client may send now: the negotiated msize, or
    /// the server's largest before `Tversion`.
    pub fn msize(&self) -> u32 {
        self.msize
    }

    /// Fids in use.
    pub fn fid_count(&self) -> usize {
        self.fids.len()
    }

    /// Walked names held (each holds one lookup reference, except the
    /// share's root).
    pub fn dentry_count(&self) -> usize {
        self.dentries.len()
    }

    /// Serves one frame (a complete `size[4] type[1] tag[2] body`) and
    /// leaves the reply frame in `out`. An error means the frame is unsound
    /// and the connection must be closed (nothing is in `out` then).
    pub fn handle_frame(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        out.clear();
        let (tag, req) = match decode_request(frame, self.msize) {
            Ok(decoded) => decoded,
            Err(DecodeError::Frame(f)) => return Err(f),
            Err(e) => {
                log::debug!("9p: {e}");
                if let Action::Reply { tag, errno } = e.action() {
                    self.lerror(tag, errno, out);
                }
                return Ok(());
            }
        };
        if let Err(e) = self.dispatch(tag, req, out) {
            self.lerror(tag, errno_of(&e), out);
        }
        Ok(())
    }

    fn lerror(&self, tag: Tag, ecode: u32, out: &mut Vec<u8>) {
        out.clear();
        // Rlerror is 11 bytes: it always fits.
        let _ = Reply::Lerror { ecode }.encode(tag, self.msize, out);
    }

    fn reply(&self, tag: Tag, reply: Reply<'_>, out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        reply.encode(tag, self.msize, out).map_err(|_| err(libc::EMSGSIZE))
    }

    fn dispatch(&mut self, tag: Tag, req: Request<'_>, out: &mut Vec<u8>) -> io::Result<()> {
        if let Request::Version(v) = req {
            self.reset();
            let msize = negotiate_msize(v.msize, self.opts.max_msize).map_err(|_| err(libc::EINVAL))?;
            let version = negotiate_version(v.version);
            self.msize = msize;
            self.ready = version == VERSION_9P2000_L;
            return self.reply(tag, Reply::Version(Rversion { msize, version }), out);
        }
        if !self.ready {
            return Err(err(libc::EPROTO));
        }
        match req {
            Request::Version(_) => unreachable!("handled above"),
            Request::Auth(_) => Err(err(libc::EOPNOTSUPP)),
            Request::Flush { .. } => self.reply(tag, Reply::Flush, out),
            Request::Attach(a) => {
                let qid = self.attach(a.fid, a.afid, a.aname, a.n_uname)?;
                self.reply(tag, Reply::Attach(qid), out)
            }
            Request::Walk(w) => {
                let qids = self.walk(w.fid, w.newfid, w.names.as_slice())?;
                self.reply(tag, Reply::Walk(qids), out)
            }
            Request::Lopen(l) => {
                let qid = self.lopen(l.fid, l.flags)?;
                self.reply(tag, Reply::Lopen(Ropen { qid, iounit: default_iounit(self.msize) }), out)
            }
            Request::Lcreate(c) => {
                let qid = self.lcreate(c.fid, c.name, c.flags, c.mode, c.gid)?;
                self.reply(tag, Reply::Lcreate(Ropen { qid, iounit: default_iounit(self.msize) }), out)
            }
            Request::Read(r) => self.read(tag, r.fid, r.offset, r.count, out),
            Request::Write(w) => {
                let count = self.write(w.fid, w.offset, w.data)?;
                self.reply(tag, Reply::Write { count }, out)
            }
            Request::Clunk(fid) => {
                let state = self.fids.remove(&fid).ok_or_else(|| err(libc::EBADF))?;
                self.clunk(state)?;
                self.reply(tag, Reply::Clunk, out)
            }
            Request::Remove(fid) => {
                self.remove(fid)?;
                self.reply(tag, Reply::Remove, out)
            }
            Request::Getattr(g) => {
                let stat = self.getattr(g.fid)?;
                self.reply(tag, Reply::Getattr(stat), out)
            }
            Request::Setattr(s) => {
                self.setattr(s.fid, &s.attr)?;
                self.reply(tag, Reply::Setattr, out)
            }
            Request::Readdir(r) => self.readdir(tag, r.fid, r.offset, r.count, out),
            Request::Mkdir(m) => {
                let (ctx, dir) = self.dir_of(m.dfid, Some(m.gid))?;
                let e = self.fs.mkdir(&ctx, dir, &m.name.to_cstring(), m.mode & 0o7777, 0)?;
                let qid = self.created(e)?;
                self.reply(tag, Reply::Mkdir(qid), out)
            }
            Request::Symlink(s) => {
                let (ctx, dir) = self.dir_of(s.dfid, Some(s.gid))?;
                let target = cstring(s.target)?;
                let e = self.fs.symlink(&ctx, &target, dir, &s.name.to_cstring())?;
                let qid = self.created(e)?;
                self.reply(tag, Reply::Symlink(qid), out)
            }
            Request::Mknod(m) => {
                let (ctx, dir) = self.dir_of(m.dfid, Some(m.gid))?;
                let req = MknodRequest { mode: m.mode, rdev: encode_rdev(m.major, m.minor), umask: 0 };
                let e = self.fs.mknod(&ctx, dir, &m.name.to_cstring(), req)?;
                let qid = self.created(e)?;
                self.reply(tag, Reply::Mknod(qid), out)
            }
            Request::Rename(r) => {
                self.rename(r.fid, r.dfid, r.name)?;
                self.reply(tag, Reply::Rename, out)
            }
            Request::Renameat(r) => {
                self.renameat(r.olddirfid, r.oldname, r.newdirfid, r.newname)?;
                self.reply(tag, Reply::Renameat, out)
            }
            Request::Unlinkat(u) => {
                if u.flags & !p9_abi::unlinkat::REMOVEDIR != 0 {
                    return Err(err(libc::EINVAL));
                }
                let (ctx, dir) = self.dir_of(u.dirfid, None)?;
                let name = u.name.to_cstring();
                if u.flags & p9_abi::unlinkat::REMOVEDIR != 0 {
                    self.fs.rmdir(&ctx, dir, &name)?;
                } else {
                    self.fs.unlink(&ctx, dir, &name)?;
                }
                self.reply(tag, Reply::Unlinkat, out)
            }
            Request::Link(l) => {
                let (ctx, dir) = self.dir_of(l.dfid, None)?;
                let node = self.node_of(l.fid)?;
                let e = self.fs.link(&ctx, node, dir, &l.name.to_cstring())?;
                self.created(e)?;
                self.reply(tag, Reply::Link, out)
            }
            Request::Readlink(fid) => {
                let (ctx, node) = self.fid_ctx(fid)?;
                let target = self.fs.readlink(&ctx, node)?;
                self.reply(tag, Reply::Readlink { target: &target }, out)
            }
            Request::Statfs(fid) => {
                let (ctx, node) = self.fid_ctx(fid)?;
                let s = self.fs.statfs(&ctx, node)?;
                let statfs = StatFs {
                    fs_type: V9FS_MAGIC,
                    bsize: s.bsize,
                    blocks: s.blocks,
                    bfree: s.bfree,
                    bavail: s.bavail,
                    files: s.files,
                    ffree: s.ffree,
                    fsid: 0,
                    namelen: s.namelen,
                };
                self.reply(tag, Reply::Statfs(statfs), out)
            }
            Request::Fsync(f) => {
                let (ctx, node) = self.fid_ctx(f.fid)?;
                let open = self.open_file(f.fid)?;
                if open.dir {
                    self.fs.fsyncdir(&ctx, node, open.handle, f.datasync != 0)?;
                } else {
                    self.fs.fsync(&ctx, node, open.handle, f.datasync != 0)?;
                }
                self.reply(tag, Reply::Fsync, out)
            }
            Request::Xattrwalk(x) => {
                let size = self.xattrwalk(x.fid, x.newfid, x.name)?;
                self.reply(tag, Reply::Xattrwalk { size }, out)
            }
            Request::Xattrcreate(x) => {
                self.xattrcreate(x.fid, x.name, x.attr_size, x.flags)?;
                self.reply(tag, Reply::Xattrcreate, out)
            }
            Request::Lock(l) => {
                let status = self.lock(l.fid, l.lock_type, l.start, l.length, l.proc_id)?;
                self.reply(tag, Reply::Lock(status), out)
            }
            Request::Getlock(g) => {
                let (lock_type, start, length, proc_id) = self.getlock(g.fid, &g.lock)?;
                let lock = Getlock { lock_type, start, length, proc_id, client_id: g.lock.client_id };
                self.reply(tag, Reply::Getlock(lock), out)
            }
        }
    }

    // --- fids -------------------------------------------------------------

    fn fid(&self, fid: Fid) -> io::Result<&FidState> {
        self.fids.get(&fid).ok_or_else(|| err(libc::EBADF))
    }

    fn ctx_of(f: &FidState, gid: Option<u32>) -> Context {
        Context { uid: f.uid, gid: gid.unwrap_or(f.gid), pid: 0, groups: None }
    }

    /// The caller and node of `fid`.
    fn fid_ctx(&self, fid: Fid) -> io::Result<(Context, NodeId)> {
        let f = self.fid(fid)?;
        Ok((Self::ctx_of(f, None), self.dentries.get(f.dentry).node))
    }

    fn node_of(&self, fid: Fid) -> io::Result<NodeId> {
        Ok(self.dentries.get(self.fid(fid)?.dentry).node)
    }

    /// The caller and node of a directory fid (not open, as 9P asks of the
    /// fids that name a directory to change).
    fn dir_of(&self, fid: Fid, gid: Option<u32>) -> io::Result<(Context, NodeId)> {
        let f = self.fid(fid)?;
        let d = self.dentries.get(f.dentry);
        if d.qid.typ & p9_abi::qid_type::DIR == 0 {
            return Err(err(libc::ENOTDIR));
        }
        Ok((Self::ctx_of(f, gid), d.node))
    }

    fn open_file(&self, fid: Fid) -> io::Result<&OpenFile> {
        match &self.fid(fid)?.kind {
            FidKind::Open(o) => Ok(o),
            _ => Err(err(libc::EBADF)),
        }
    }

    /// Room for one more fid.
    fn check_new_fid(&self, fid: Fid) -> io::Result<()> {
        if fid == Fid::NOFID {
            return Err(err(libc::EINVAL));
        }
        if self.fids.contains_key(&fid) {
            return Err(err(libc::EEXIST));
        }
        if self.fids.len() >= self.opts.max_fids {
            return Err(err(libc::EMFILE));
        }
        Ok(())
    }

    /// The qid of a node a create-like request returned; the session keeps
    /// no reference to it (the client walks to it when it wants it).
    fn created(&self, e: avpfs_server::Entry) -> io::Result<Qid> {
        if e.nodeid == NodeId::NONE {
            return Err(err(libc::EIO));
        }
        self.fs.forget(e.nodeid, 1);
        Ok(qid_of(&e.attr))
    }

    /// Ends every fid (a new `Tversion`, or the end of the connection).
    fn reset(&mut self) {
        let fids: Vec<FidState> = self.fids.drain().map(|(_, f)| f).collect();
        for f in fids {
            let _ = self.clunk(f);
        }
        self.ready = false;
    }

    /// Releases what `f` holds. An extended attribute being written is set
    /// now; its error is the clunk's (the fid is gone either way).
    fn clunk(&mut self, f: FidState) -> io::Result<()> {
        let ctx = Self::ctx_of(&f, None);
        let node = self.dentries.get(f.dentry).node;
        let result = match f.kind {
            FidKind::Path | FidKind::XattrRead(_) => Ok(()),
            FidKind::Open(o) if o.dir => self.fs.releasedir(&ctx, node, o.handle, o.flags),
            FidKind::Open(o) => {
                for owner in &o.lock_owners {
                    let _ = self.fs.flush(&ctx, node, o.handle, *owner);
                }
                self.fs.release(&ctx, node, o.handle, o.flags, None)
            }
            FidKind::XattrWrite(x) => {
                if x.value.len() != x.size {
                    Err(err(libc::EINVAL))
                } else if x.size == 0 && x.flags == libc::XATTR_REPLACE as u32 {
                    // Linux sends removexattr as an empty Txattrcreate with
                    // XATTR_REPLACE (the VFS calls the handler with no value
                    // and that flag); an empty value with other flags is a
                    // setxattr of an empty value.
                    self.fs.removexattr(&ctx, node, &x.name)
                } else {
                    let req = SetxattrRequest { value: &x.value, flags: x.flags, kill_sgid: false };
                    self.fs.setxattr(&ctx, node, &x.name, req)
                }
            }
        };
        self.dentries.put(self.fs, f.dentry);
        result
    }

    // --- attach and walk ----------------------------------------------------

    fn attach(&mut self, fid: Fid, afid: Fid, aname: &[u8], n_uname: u32) -> io::Result<Qid> {
        self.check_new_fid(fid)?;
        if afid != Fid::NOFID {
            // No authentication: no Tauth ever made an afid.
            return Err(err(libc::EINVAL));
        }
        let uid = if n_uname == NONUNAME { self.opts.anonymous_uid } else { n_uname };
        let gid = self.opts.default_gid.unwrap_or(uid);
        let ctx = Context { uid, gid, pid: 0, groups: None };
        let (attr, _) = self.fs.getattr(&ctx, NodeId::ROOT, None)?;
        let root = self.dentries.insert(NodeId::ROOT, None, CString::default(), qid_of(&attr), true);
        let mut cur = root;
        for component in self.opts.aname_path(aname).split(|&b| b == b'/') {
            if component.is_empty() || component == b"." {
                continue;
            }
            let step = if component == b".." {
                Err(err(libc::EINVAL))
            } else {
                Name::walk_element(component).map_err(|_| err(libc::EINVAL)).and_then(|n| self.step(&ctx, cur, n))
            };
            match step {
                Ok(next) => {
                    self.dentries.put(self.fs, cur);
                    cur = next;
                }
                Err(e) => {
                    self.dentries.put(self.fs, cur);
                    return Err(e);
                }
            }
        }
        let qid = self.dentries.get(cur).qid;
        if qid.typ & p9_abi::qid_type::DIR == 0 {
            self.dentries.put(self.fs, cur);
            return Err(err(libc::ENOTDIR));
        }
        if cur != root {
            // The attach root's `..` is itself: cut it from the path above.
            let parent = self.dentries.detach(cur);
            if let Some(p) = parent {
                self.dentries.put(self.fs, p);
            }
        }
        self.fids.insert(fid, FidState { dentry: cur, uid, gid, kind: FidKind::Path });
        Ok(qid)
    }

    /// One walk step from `cur`: a new dentry with one reference.
    fn step(&mut self, ctx: &Context, cur: DentryId, name: Name<'_>) -> io::Result<DentryId> {
        if name.as_bytes() == b"." {
            self.dentries.get_ref(cur);
            return Ok(cur);
        }
        if name.is_dotdot() {
            // At an attach root (no parent), `..` is the root itself.
            let to = self.dentries.get(cur).parent.unwrap_or(cur);
            self.dentries.get_ref(to);
            return Ok(to);
        }
        let d = self.dentries.get(cur);
        if d.qid.typ & p9_abi::qid_type::DIR == 0 {
            return Err(err(libc::ENOTDIR));
        }
        let cname = name.to_cstring();
        let e = self.fs.lookup(ctx, d.node, &cname)?;
        if e.nodeid == NodeId::NONE {
            return Err(err(libc::ENOENT));
        }
        Ok(self.dentries.insert(e.nodeid, Some(cur), cname, qid_of(&e.attr), false))
    }

    fn walk(&mut self, fid: Fid, newfid: Fid, names: &[Name<'_>]) -> io::Result<WalkQids> {
        let f = self.fid(fid)?;
        let (start, uid, gid) = (f.dentry, f.uid, f.gid);
        if newfid == fid {
            if !matches!(f.kind, FidKind::Path) {
                return Err(err(libc::EBUSY));
            }
        } else {
            self.check_new_fid(newfid)?;
        }
        let ctx = Self::ctx_of(f, None);
        self.dentries.get_ref(start);
        let mut cur = start;
        let mut qids = WalkQids::new();
        for &name in names {
            match self.step(&ctx, cur, name) {
                Ok(next) => {
                    self.dentries.put(self.fs, cur);
                    cur = next;
                    qids.push(self.dentries.get(cur).qid);
                }
                Err(e) => {
                    self.dentries.put(self.fs, cur);
                    // A partial walk answers the qids walked; the newfid
                    // is not made. A walk that fails at once is an error.
                    return if qids.is_empty() { Err(e) } else { Ok(qids) };
                }
            }
        }
        if newfid == fid {
            let f = self.fids.get_mut(&fid).ok_or_else(|| err(libc::EBADF))?;
            let old = std::mem::replace(&mut f.dentry, cur);
            self.dentries.put(self.fs, old);
        } else {
            self.fids.insert(newfid, FidState { dentry: cur, uid, gid, kind: FidKind::Path });
        }
        Ok(qids)
    }

    // --- open, create, read, write ------------------------------------------

    fn lopen(&mut self, fid: Fid, flags: u32) -> io::Result<Qid> {
        let f = self.fid(fid)?;
        if !matches!(f.kind, FidKind::Path) {
            return Err(err(libc::EBUSY));
        }
        let ctx = Self::ctx_of(f, None);
        let d = self.dentries.get(f.dentry);
        let (node, qid) = (d.node, d.qid);
        let host = open_flags::to_linux(flags) & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY);
        let host = host as u32;
        let dir = qid.typ & p9_abi::qid_type::DIR != 0;
        let reply = if dir { self.fs.opendir(&ctx, node, host)? } else { self.fs.open(&ctx, node, host, false)? };
        let open = OpenFile { handle: reply.handle, flags: host, dir, lock_owners: Vec::new() };
        if let Some(f) = self.fids.get_mut(&fid) {
            f.kind = FidKind::Open(open);
        }
        Ok(qid)
    }

    fn lcreate(&mut self, fid: Fid, name: Name<'_>, flags: u32, mode: u32, gid: u32) -> io::Result<Qid> {
        let f = self.fid(fid)?;
        if !matches!(f.kind, FidKind::Path) {
            return Err(err(libc::EBUSY));
        }
        let (ctx, dir) = self.dir_of(fid, Some(gid))?;
        let dir_dentry = self.fid(fid)?.dentry;
        let host = ((open_flags::to_linux(flags) & !libc::O_NOCTTY) | libc::O_CREAT) as u32;
        let cname = name.to_cstring();
        let req = CreateRequest { mode: libc::S_IFREG | (mode & 0o7777), umask: 0, flags: host };
        let (e, open) = self.fs.create(&ctx, dir, &cname, req)?;
        if e.nodeid == NodeId::NONE {
            return Err(err(libc::EIO));
        }
        let qid = qid_of(&e.attr);
        let new = self.dentries.insert(e.nodeid, Some(dir_dentry), cname, qid, false);
        if let Some(f) = self.fids.get_mut(&fid) {
            f.dentry = new;
            f.kind = FidKind::Open(OpenFile { handle: open.handle, flags: host, dir: false, lock_owners: Vec::new() });
        }
        self.dentries.put(self.fs, dir_dentry);
        Ok(qid)
    }

    fn read(&mut self, tag: Tag, fid: Fid, offset: u64, count: u32, out: &mut Vec<u8>) -> io::Result<()> {
        let count = count.min(max_read_count(self.msize));
        let f = self.fid(fid)?;
        let node = self.dentries.get(f.dentry).node;
        match &f.kind {
            FidKind::Open(o) if !o.dir => {
                let ctx = Self::ctx_of(f, None);
                let req = ReadRequest { handle: o.handle, offset, size: count, flags: o.flags };
                out.clear();
                out.resize(RREAD_HEADER_LEN, 0);
                let mut data = ReplyData { buf: out, room: count as usize };
                let result = self.fs.read(&ctx, node, req, &mut data);
                result?;
                // The data was read in place after the header.
                let n = (out.len() - RREAD_HEADER_LEN) as u32;
                let header: &mut [u8; RREAD_HEADER_LEN] =
                    (&mut out[..RREAD_HEADER_LEN]).try_into().map_err(|_| err(libc::EIO))?;
                put_rread_header(header, tag, n);
                Ok(())
            }
            FidKind::Open(_) => Err(err(libc::EISDIR)),
            FidKind::XattrRead(value) => {
                let rest = usize::try_from(offset).ok().and_then(|o| value.get(o..)).unwrap_or_default();
                let data = &rest[..rest.len().min(count as usize)];
                self.reply(tag, Reply::Read { data }, out)
            }
            FidKind::Path | FidKind::XattrWrite(_) => Err(err(libc::EBADF)),
        }
    }

    fn write(&mut self, fid: Fid, offset: u64, data: &[u8]) -> io::Result<u32> {
        let f = self.fids.get_mut(&fid).ok_or_else(|| err(libc::EBADF))?;
        let ctx = Self::ctx_of(f, None);
        let node = self.dentries.get(f.dentry).node;
        match &mut f.kind {
            FidKind::Open(o) if !o.dir => {
                let req = WriteRequest {
                    handle: o.handle,
                    offset,
                    size: data.len() as u32,
                    kill_suidgid: false,
                    flags: o.flags,
                };
                let mut reader = SliceReader::new(data);
                let n = self.fs.write(&ctx, node, req, &mut reader)?;
                Ok(n as u32)
            }
            FidKind::Open(_) => Err(err(libc::EISDIR)),
            FidKind::XattrWrite(x) => {
                let end = usize::try_from(offset)
                    .ok()
                    .and_then(|o| o.checked_add(data.len()).map(|e| (o, e)))
                    .filter(|&(_, e)| e <= x.size);
                let Some((start, end)) = end else {
                    return Err(err(libc::ENOSPC));
                };
                if x.value.len() < end {
                    x.value.resize(end, 0);
                }
                x.value[start..end].copy_from_slice(data);
                Ok(data.len() as u32)
            }
            FidKind::Path | FidKind::XattrRead(_) => Err(err(libc::EBADF)),
        }
    }

    // --- names: remove, rename -----------------------------------------------

    /// The directory and name `id` was walked by, checked to still name the
    /// same node (another client may have renamed or replaced it).
    fn entry_of(&self, ctx: &Context, id: DentryId) -> io::Result<(NodeId, CString)> {
        let d = self.dentries.get(id);
        let Some(parent) = d.parent else {
            // The root of an attach cannot be removed or renamed.
            return Err(err(libc::EBUSY));
        };
        let dir = self.dentries.get(parent).node;
        let e = self.fs.lookup(ctx, dir, &d.name)?;
        if e.nodeid != NodeId::NONE {
            self.fs.forget(e.nodeid, 1);
        }
        if e.nodeid != d.node {
            return Err(err(libc::ENOENT));
        }
        Ok((dir, d.name.clone()))
    }

    fn remove(&mut self, fid: Fid) -> io::Result<()> {
        let f = self.fids.remove(&fid).ok_or_else(|| err(libc::EBADF))?;
        let ctx = Self::ctx_of(&f, None);
        let is_dir = self.dentries.get(f.dentry).qid.typ & p9_abi::qid_type::DIR != 0;
        let result = self.entry_of(&ctx, f.dentry).and_then(|(dir, name)| {
            if is_dir {
                self.fs.rmdir(&ctx, dir, &name)
            } else {
                self.fs.unlink(&ctx, dir, &name)
            }
        });
        // Tremove clunks the fid whether or not the file went.
        let clunked = self.clunk(f);
        result.and(clunked)
    }

    fn rename(&mut self, fid: Fid, dfid: Fid, name: Name<'_>) -> io::Result<()> {
        let f = self.fid(fid)?;
        let (ctx, id) = (Self::ctx_of(f, None), f.dentry);
        let (_, newdir) = self.dir_of(dfid, None)?;
        let (olddir, oldname) = self.entry_of(&ctx, id)?;
        self.do_rename(&ctx, olddir, &oldname, dfid, newdir, name)
    }

    fn renameat(&mut self, olddirfid: Fid, oldname: Name<'_>, newdirfid: Fid, newname: Name<'_>) -> io::Result<()> {
        let (ctx, olddir) = self.dir_of(olddirfid, None)?;
        let (_, newdir) = self.dir_of(newdirfid, None)?;
        self.do_rename(&ctx, olddir, &oldname.to_cstring(), newdirfid, newdir, newname)
    }

    fn do_rename(
        &mut self,
        ctx: &Context,
        olddir: NodeId,
        oldname: &CStr,
        newdirfid: Fid,
        newdir: NodeId,
        newname: Name<'_>,
    ) -> io::Result<()> {
        let newname = newname.to_cstring();
        let req = RenameRequest { olddir, oldname, newdir, newname: &newname, flags: 0 };
        self.fs.rename(ctx, req)?;
        // The walked names of the moved file follow it.
        let new_parent = self.fid(newdirfid)?.dentry;
        for id in self.dentries.find_entries(olddir, oldname.to_bytes()) {
            self.dentries.reparent(self.fs, id, new_parent, newname.clone());
        }
        Ok(())
    }

    // --- attributes ---------------------------------------------------------

    fn getattr(&mut self, fid: Fid) -> io::Result<Stat> {
        let f = self.fid(fid)?;
        let ctx = Self::ctx_of(f, None);
        let id = f.dentry;
        let handle = match &f.kind {
            FidKind::Open(o) if !o.dir => Some(o.handle),
            _ => None,
        };
        let (attr, _) = self.fs.getattr(&ctx, self.dentries.get(id).node, handle)?;
        let stat = stat_of(&attr);
        self.dentries.set_qid(id, stat.qid);
        Ok(stat)
    }

    fn setattr(&mut self, fid: Fid, attr: &p9_abi::SetAttr) -> io::Result<()> {
        let f = self.fid(fid)?;
        let ctx = Self::ctx_of(f, None);
        // A size change through an open fid goes through its handle only
        // when it is open for writing: the Linux client truncates an
        // O_TRUNC|O_RDONLY open through the open fid, which ftruncate(2)
        // on a read-only descriptor refuses; the path truncates as the
        // caller (who needs write permission either way).
        let handle = match &f.kind {
            FidKind::Open(o) if !o.dir && (attr.size().is_none() || o.writable()) => Some(o.handle),
            _ => None,
        };
        let set = SetattrIn {
            mode: attr.mode().map(|m| m & 0o7777),
            uid: attr.uid(),
            gid: attr.gid(),
            size: attr.size(),
            atime: attr.atime().map(time_of).transpose()?,
            mtime: attr.mtime().map(time_of).transpose()?,
            ctime: None,
            handle,
            kill_suidgid: false,
        };
        let node = self.dentries.get(f.dentry).node;
        let id = f.dentry;
        let (attr, _) = self.fs.setattr(&ctx, node, set)?;
        self.dentries.set_qid(id, qid_of(&attr));
        Ok(())
    }

    fn readdir(&mut self, tag: Tag, fid: Fid, offset: u64, count: u32, out: &mut Vec<u8>) -> io::Result<()> {
        let (ctx, node) = self.fid_ctx(fid)?;
        let open = self.open_file(fid)?;
        if !open.dir {
            return Err(err(libc::ENOTDIR));
        }
        let mut sink = DirentSink { writer: DirentWriter::new(count, self.msize) };
        self.fs.readdir(&ctx, node, open.handle, offset, &mut sink)?;
        *out = sink.writer.finish(tag);
        Ok(())
    }

    // --- extended attributes -------------------------------------------------

    fn xattrwalk(&mut self, fid: Fid, newfid: Fid, name: &[u8]) -> io::Result<u64> {
        self.check_new_fid(newfid)?;
        let f = self.fid(fid)?;
        let ctx = Self::ctx_of(f, None);
        let (id, uid, gid) = (f.dentry, f.uid, f.gid);
        let node = self.dentries.get(id).node;
        let value = if name.is_empty() {
            self.fs.listxattr(&ctx, node)?
        } else {
            self.fs.getxattr(&ctx, node, &cstring(name)?)?
        };
        if value.len() > self.opts.max_xattr_size {
            return Err(err(libc::E2BIG));
        }
        let size = value.len() as u64;
        self.dentries.get_ref(id);
        self.fids.insert(newfid, FidState { dentry: id, uid, gid, kind: FidKind::XattrRead(value) });
        Ok(size)
    }

    fn xattrcreate(&mut self, fid: Fid, name: &[u8], attr_size: u64, flags: u32) -> io::Result<()> {
        let max = self.opts.max_xattr_size;
        let f = self.fids.get_mut(&fid).ok_or_else(|| err(libc::EBADF))?;
        if !matches!(f.kind, FidKind::Path) {
            return Err(err(libc::EBUSY));
        }
        let size = usize::try_from(attr_size).ok().filter(|&s| s <= max).ok_or_else(|| err(libc::E2BIG))?;
        if flags & !((libc::XATTR_CREATE | libc::XATTR_REPLACE) as u32) != 0 {
            return Err(err(libc::EINVAL));
        }
        let name = cstring(name)?;
        f.kind = FidKind::XattrWrite(XattrWrite { name, size, flags, value: Vec::new() });
        Ok(())
    }

    // --- locks -----------------------------------------------------------------

    /// The lock owner of a process of this client: the client's process id
    /// within this connection (the Linux client sends `fl_pid`, the same
    /// for every lock of a process, and its host name as `client_id`,
    /// the same for every lock of the connection).
    fn owner(&self, proc_id: u32) -> LockOwner {
        LockOwner((self.connection << 32) | u64::from(proc_id))
    }

    fn file_lock(lock_type: LockType, start: u64, length: u64, proc_id: u32) -> io::Result<FileLock> {
        let end = if length == 0 {
            OFFSET_MAX
        } else {
            start.checked_add(length - 1).filter(|&e| e <= OFFSET_MAX).ok_or_else(|| err(libc::EINVAL))?
        };
        Ok(FileLock { start, end, typ: lock_type.to_fcntl() as u32, pid: proc_id })
    }

    fn lock(&mut self, fid: Fid, lock_type: LockType, start: u64, length: u64, proc_id: u32) -> io::Result<LockStatus> {
        let (ctx, node) = self.fid_ctx(fid)?;
        let owner = self.owner(proc_id);
        let open = self.open_file(fid)?;
        if open.dir {
            return Err(err(libc::EISDIR));
        }
        let lock = Self::file_lock(lock_type, start, length, proc_id)?;
        let req = LockRequest { handle: open.handle, owner, lock, flock: false };
        // Never wait: with the BLOCK flag the Linux client waits and asks
        // again while the answer is Blocked.
        match self.fs.setlk(&ctx, node, req, false) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => {
                return Ok(LockStatus::Blocked)
            }
            Err(e) => return Err(e),
        }
        if lock_type != LockType::Unlock {
            if let Some(FidState { kind: FidKind::Open(o), .. }) = self.fids.get_mut(&fid) {
                if !o.lock_owners.contains(&owner) {
                    o.lock_owners.push(owner);
                }
            }
        }
        Ok(LockStatus::Success)
    }

    fn getlock(&mut self, fid: Fid, want: &Getlock<'_>) -> io::Result<(LockType, u64, u64, u32)> {
        let (ctx, node) = self.fid_ctx(fid)?;
        let owner = self.owner(want.proc_id);
        let open = self.open_file(fid)?;
        // The Linux client tests its own processes' locks itself and then
        // asks with type Unlock, the type it wants to test being lost: the
        // server tests for a write lock (any lock of another owner
        // conflicts) and leaves out the holders of this connection, whose
        // locks the client's own test has already judged with the right
        // type. A client that names Read or Write gets exactly that test.
        let unknown_type = want.lock_type == LockType::Unlock;
        let probe = if unknown_type { LockType::Write } else { want.lock_type };
        let lock = Self::file_lock(probe, want.start, want.length, want.proc_id)?;
        let req = LockRequest { handle: open.handle, owner, lock, flock: false };
        let got = self.fs.getlk(&ctx, node, req)?;
        let lock_type = LockType::from_fcntl(got.typ as i32).ok_or_else(|| err(libc::EIO))?;
        // `got.pid` is non-zero only for a holder of this connection.
        if lock_type == LockType::Unlock || (unknown_type && got.pid != 0) {
            return Ok((LockType::Unlock, want.start, want.length, want.proc_id));
        }
        let length = if got.end >= OFFSET_MAX { 0 } else { got.end.saturating_sub(got.start) + 1 };
        Ok((lock_type, got.start, length, got.pid))
    }
}

impl<F: FileSystem + ?Sized> Drop for Session<'_, F> {
    fn drop(&mut self) {
        self.reset();
    }
}
