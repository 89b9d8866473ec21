//! The avpfs passthrough file system: serves a host directory through the
//! [`avpfs_server::FileSystem`] trait.
//!
//! Every host path is resolved one component at a time beneath the
//! descriptor of its parent node (`openat2` with `RESOLVE_BENEATH`), opened
//! `O_PATH | O_NOFOLLOW`: the server never follows a symlink and never builds
//! a host path from strings (except `/proc/self/fd/N` for the extended
//! attribute calls). Operations that create files run with the caller's
//! credentials when the daemon runs as root, so new files get the caller as
//! owner and the host kernel checks the caller's right to create them.
//!
//! The implementation is split by concern, one private module each: the
//! inode store (`inode`), open handles (`handle`), names (`entry`), file
//! I/O (`file`), attributes (`attr`), directories (`dir`), extended
//! attributes (`xattr`), locks (`locks`) and credentials (`creds`). The
//! [`FileSystem`] impl below only dispatches to them. Strategies (cache
//! policy, file handles) are chosen once in [`PassthroughFs::new`] from the
//! [`Config`].
//!
//! There is no read-only mode here: a read-only share (`--readonly`, a
//! policy's `readonly`, read-only subtrees) is the policy layer's
//! (`avpfs_policy::PolicyFs`), which the daemon puts in front of the
//! passthrough whenever a share is read-only and which refuses every
//! modification with `EROFS` before it reaches this file system.

#![deny(missing_docs)]

mod attr;
mod config;
mod creds;
mod dir;
mod entry;
mod file;
mod handle;
mod inode;
mod locks;
mod xattr;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use avpfs_server::{
    Context, CopyRange, DirSink, Entry, FallocateRequest, FileSystem, Handle, InitOptions, LockOwner, LockRequest,
    NodeId, OpenReply, ReadRequest, SetattrIn, WantedFlags, WriteRequest, ZeroCopyReader, ZeroCopyWriter,
};
use avpfs_sys::creds::{geteuid, has_effective_cap, CAP_DAC_READ_SEARCH};
use avpfs_sys::{FileHandle, ProcSelfFd};
use fuse_abi::{init_flags as init, Attr, FileLock, Kstatfs, Statx};

pub use config::{CachePolicy, Config, FileHandleMode};

use handle::HandleTable;
use inode::{InodeKey, InodeStore, NodeFile};

/// Why a [`PassthroughFs`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The shared directory cannot be opened.
    #[error("cannot open the shared directory {path}: {source}")]
    OpenRoot {
        /// The configured root.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The shared root is not a directory.
    #[error("the shared root {0} is not a directory")]
    RootNotADirectory(PathBuf),
    /// `/proc/self/fd` cannot be opened (is proc mounted?).
    #[error("cannot open /proc/self/fd: {0}")]
    ProcSelfFd(#[source] io::Error),
    /// File handles were made mandatory but cannot be used.
    #[error("file handles are mandatory but unavailable: {0}")]
    FileHandles(#[source] io::Error),
    /// POSIX ACLs are stored in extended attributes.
    #[error("posix_acl needs xattr")]
    PosixAclNeedsXattr,
}

/// A file system that passes every operation through to a host directory.
#[derive(Debug)]
pub struct PassthroughFs {
    cfg: Config,
    proc: ProcSelfFd,
    inodes: InodeStore,
    handles: HandleTable,
    /// Descriptors (not `O_PATH`) of the mounts nodes with file handles are on.
    mounts: Mutex<HashMap<u64, Arc<OwnedFd>>>,
    /// Nodes keep file handles rather than descriptors.
    use_handles: bool,
    /// The daemon runs as root: switch to the caller's credentials.
    is_root: bool,
    /// The flags enabled in FUSE_INIT (what we asked for and the client offered).
    negotiated: AtomicU64,
}

impl PassthroughFs {
    /// Opens the shared root and prepares the file system.
    pub fn new(cfg: Config) -> Result<Self, Error> {
        if cfg.posix_acl && !cfg.xattr {
            return Err(Error::PosixAclNeedsXattr);
        }
        let proc = match &cfg.proc_self_fd {
            Some(path) => ProcSelfFd::open_at(path),
            None => ProcSelfFd::open(),
        }
        .map_err(Error::ProcSelfFd)?;
        let open_root = |source| Error::OpenRoot { path: cfg.root.clone(), source };
        let root = avpfs_sys::open::open_path(&cfg.root, libc::O_PATH | libc::O_DIRECTORY).map_err(open_root)?;
        let st = avpfs_sys::stat::fstatx(root.as_fd()).map_err(open_root)?;
        let kind = u32::from(st.stx_mode) & libc::S_IFMT;
        if kind != libc::S_IFDIR {
            return Err(Error::RootNotADirectory(cfg.root.clone()));
        }
        let use_handles = match cfg.inode_file_handles {
            FileHandleMode::Never => false,
            mode => {
                let usable = has_effective_cap(CAP_DAC_READ_SEARCH).and_then(|cap| {
                    if cap {
                        FileHandle::of(root.as_fd()).map(|_| true)
                    } else {
                        Ok(false)
                    }
                });
                match (mode, usable) {
                    (_, Ok(true)) => true,
                    (FileHandleMode::Mandatory, Ok(false)) => {
                        return Err(Error::FileHandles(io::Error::from_raw_os_error(libc::EPERM)))
                    }
                    (FileHandleMode::Mandatory, Err(e)) => return Err(Error::FileHandles(e)),
                    (_, _) => {
                        log::warn!(
                            "file handles unavailable (no CAP_DAC_READ_SEARCH or no support): using descriptors"
                        );
                        false
                    }
                }
            }
        };
        let key = InodeKey::of(&st);
        let mut mounts = HashMap::new();
        if use_handles {
            // The descriptor file handles of the root's mount are opened with.
            let m = proc.reopen(root.as_fd(), libc::O_RDONLY | libc::O_DIRECTORY).map_err(Error::FileHandles)?;
            mounts.insert(key.mnt_id, Arc::new(m));
        }
        // The root always keeps its descriptor: it is never forgotten.
        let inodes = InodeStore::new(key, kind, NodeFile::Fd(root));
        Ok(PassthroughFs {
            cfg,
            proc,
            inodes,
            handles: HandleTable::default(),
            mounts: Mutex::new(mounts),
            use_handles,
            is_root: geteuid() == 0,
            negotiated: AtomicU64::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// How many nodes the client holds references to (the root included).
    pub fn node_count(&self) -> usize {
        self.inodes.len()
    }

    /// How many file and directory handles are open.
    pub fn handle_count(&self) -> usize {
        self.handles.len()
    }

    /// Whether nodes keep file handles rather than descriptors.
    pub fn uses_file_handles(&self) -> bool {
        self.use_handles
    }

    fn negotiated(&self, flag: u64) -> bool {
        self.negotiated.load(Ordering::Relaxed) & flag != 0
    }

    fn timeout(&self) -> Duration {
        self.cfg.entry_timeout()
    }

    /// The FUSE_INIT flags this configuration asks for.
    pub fn wanted_flags(&self) -> WantedFlags {
        let mut want = init::ASYNC_READ
            | init::PARALLEL_DIROPS
            | init::BIG_WRITES
            | init::ATOMIC_O_TRUNC
            | init::FLOCK_LOCKS
            | init::POSIX_LOCKS
            | init::MAX_PAGES
            | init::SETXATTR_EXT
            | init::CREATE_SUPP_GROUP
            // Shared mmap of FOPEN_DIRECT_IO files (cache never/metadata).
            | init::DIRECT_IO_ALLOW_MMAP;
        // READDIRPLUS replies carry each entry's attributes for the guest
        // to cache; `never` lets it cache none, so the guest would set up a
        // dentry and an inode for every entry only to look it up again
        // (virtiofsd turns READDIRPLUS off with cache=none for the same
        // reason).
        if self.cfg.cache != CachePolicy::Never {
            want |= init::DO_READDIRPLUS | init::READDIRPLUS_AUTO;
        }
        if self.cfg.writeback {
            want |= init::WRITEBACK_CACHE;
        }
        if self.cfg.posix_acl {
            want |= init::POSIX_ACL | init::DONT_MASK;
        }
        if self.cfg.killpriv_v2 {
            want |= init::HANDLE_KILLPRIV_V2;
        }
        if self.cfg.announce_submounts {
            want |= init::SUBMOUNTS;
        }
        want
    }
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

impl FileSystem for PassthroughFs {
    fn init(&self, opts: InitOptions) -> io::Result<WantedFlags> {
        let want = self.wanted_flags();
        self.negotiated.store(want & opts.client_flags, Ordering::Relaxed);
        if self.cfg.writeback && opts.client_flags & init::WRITEBACK_CACHE == 0 {
            log::warn!("the client does not offer the write-back cache");
        }
        Ok(want)
    }

    fn destroy(&self) {
        self.handles.clear();
        self.inodes.clear();
    }

    fn lookup(&self, _ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        self.do_lookup(parent, name)
    }

    fn forget(&self, node: NodeId, count: u64) {
        self.inodes.forget(node, count);
    }

    fn getattr(&self, _ctx: &Context, node: NodeId, handle: Option<Handle>) -> io::Result<(Attr, Duration)> {
        self.do_getattr(node, handle)
    }

    fn setattr(&self, ctx: &Context, node: NodeId, set: SetattrIn) -> io::Result<(Attr, Duration)> {
        self.do_setattr(ctx, node, set)
    }

    fn readlink(&self, _ctx: &Context, node: NodeId) -> io::Result<Vec<u8>> {
        self.do_readlink(node)
    }

    fn symlink(&self, ctx: &Context, target: &CStr, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        self.do_symlink(ctx, target, parent, name)
    }

    fn mknod(&self, ctx: &Context, parent: NodeId, name: &CStr, mode: u32, rdev: u32, umask: u32) -> io::Result<Entry> {
        self.do_mknod(ctx, parent, name, mode, rdev, umask)
    }

    fn mkdir(&self, ctx: &Context, parent: NodeId, name: &CStr, mode: u32, umask: u32) -> io::Result<Entry> {
        self.do_mkdir(ctx, parent, name, mode, umask)
    }

    fn unlink(&self, _ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<()> {
        self.do_unlink(parent, name, 0)
    }

    fn rmdir(&self, _ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<()> {
        self.do_unlink(parent, name, libc::AT_REMOVEDIR)
    }

    fn rename(
        &self,
        _ctx: &Context,
        olddir: NodeId,
        oldname: &CStr,
        newdir: NodeId,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        self.do_rename(olddir, oldname, newdir, newname, flags)
    }

    fn link(&self, _ctx: &Context, node: NodeId, newparent: NodeId, newname: &CStr) -> io::Result<Entry> {
        self.do_link(node, newparent, newname)
    }

    fn open(&self, ctx: &Context, node: NodeId, flags: u32, kill_suidgid: bool) -> io::Result<OpenReply> {
        self.do_open(ctx, node, flags, kill_suidgid)
    }

    fn create(
        &self,
        ctx: &Context,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        flags: u32,
        umask: u32,
    ) -> io::Result<(Entry, OpenReply)> {
        self.do_create(ctx, parent, Some(name), mode, flags, umask)
    }

    fn tmpfile(
        &self,
        ctx: &Context,
        parent: NodeId,
        mode: u32,
        flags: u32,
        umask: u32,
    ) -> io::Result<(Entry, OpenReply)> {
        self.do_create(ctx, parent, None, mode, flags, umask)
    }

    fn read(&self, _ctx: &Context, node: NodeId, req: ReadRequest, w: &mut dyn ZeroCopyWriter) -> io::Result<usize> {
        self.do_read(node, req, w)
    }

    fn write(&self, ctx: &Context, node: NodeId, req: WriteRequest, r: &mut dyn ZeroCopyReader) -> io::Result<usize> {
        self.do_write(ctx, node, req, r)
    }

    fn flush(&self, _ctx: &Context, node: NodeId, handle: Handle, lock_owner: LockOwner) -> io::Result<()> {
        self.do_flush(node, handle, lock_owner)
    }

    fn release(
        &self,
        _ctx: &Context,
        node: NodeId,
        handle: Handle,
        _flags: u32,
        flock_unlock_owner: Option<LockOwner>,
    ) -> io::Result<()> {
        self.do_release(node, handle, flock_unlock_owner)
    }

    fn fsync(&self, _ctx: &Context, node: NodeId, handle: Handle, datasync: bool) -> io::Result<()> {
        self.do_fsync(node, handle, datasync)
    }

    fn statfs(&self, _ctx: &Context, node: NodeId) -> io::Result<Kstatfs> {
        self.do_statfs(node)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        node: NodeId,
        name: &CStr,
        value: &[u8],
        flags: u32,
        kill_sgid: bool,
    ) -> io::Result<()> {
        self.do_setxattr(ctx, node, name, value, flags, kill_sgid)
    }

    fn getxattr(&self, _ctx: &Context, node: NodeId, name: &CStr) -> io::Result<Vec<u8>> {
        self.do_getxattr(node, name)
    }

    fn listxattr(&self, _ctx: &Context, node: NodeId) -> io::Result<Vec<u8>> {
        self.do_listxattr(node)
    }

    fn removexattr(&self, _ctx: &Context, node: NodeId, name: &CStr) -> io::Result<()> {
        self.do_removexattr(node, name)
    }

    fn opendir(&self, _ctx: &Context, node: NodeId, _flags: u32) -> io::Result<OpenReply> {
        self.do_opendir(node)
    }

    fn readdir(
        &self,
        _ctx: &Context,
        node: NodeId,
        handle: Handle,
        offset: u64,
        sink: &mut dyn DirSink,
    ) -> io::Result<()> {
        self.do_readdir(node, handle, offset, sink)
    }

    fn releasedir(&self, _ctx: &Context, node: NodeId, handle: Handle, _flags: u32) -> io::Result<()> {
        self.handles.remove(handle, node).map(drop)
    }

    fn fsyncdir(&self, _ctx: &Context, node: NodeId, handle: Handle, datasync: bool) -> io::Result<()> {
        self.do_fsync(node, handle, datasync)
    }

    fn getlk(&self, _ctx: &Context, node: NodeId, req: LockRequest) -> io::Result<FileLock> {
        self.do_getlk(node, req)
    }

    fn setlk(&self, _ctx: &Context, node: NodeId, req: LockRequest, wait: bool) -> io::Result<()> {
        self.do_setlk(node, req, wait)
    }

    fn access(&self, ctx: &Context, node: NodeId, mask: u32) -> io::Result<()> {
        self.do_access(ctx, node, mask)
    }

    fn fallocate(&self, _ctx: &Context, node: NodeId, req: FallocateRequest) -> io::Result<()> {
        self.do_fallocate(node, req)
    }

    fn lseek(&self, _ctx: &Context, node: NodeId, handle: Handle, offset: u64, whence: u32) -> io::Result<u64> {
        self.do_lseek(node, handle, offset, whence)
    }

    fn copy_file_range(&self, _ctx: &Context, range: CopyRange) -> io::Result<usize> {
        self.do_copy_file_range(range)
    }

    fn syncfs(&self, _ctx: &Context, node: NodeId) -> io::Result<()> {
        self.do_syncfs(node)
    }

    fn statx(
        &self,
        _ctx: &Context,
        node: NodeId,
        handle: Option<Handle>,
        flags: u32,
        mask: u32,
    ) -> io::Result<(Statx, Duration)> {
        self.do_statx(node, handle, flags, mask)
    }
}

/// Whether the tests run as root (credential tests need it).
#[cfg(test)]
fn creds_test_root() -> bool {
    geteuid() == 0
}
