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
//! file system's state and construction, and the [`Share`] several
//! sessions are made from (`passthrough`), the inode store (`inode`), open
//! handles (`handle`), names (`entry`), file I/O (`file`), attributes
//! (`attr`), directories (`dir`), extended attributes (`xattr`), locks
//! (`locks`) and credentials (`creds`), over leaves that import no other
//! module (`config`, `util`, `statx`, `owner_locks`, and `host_files`: the
//! host files a share's sessions share). Modules import only downward: the
//! concern modules use `passthrough`, `inode`, `creds` and the leaves,
//! never each other in a circle, and nothing imports this
//! root. The [`FileSystem`] impl below only dispatches to them. Strategies
//! (cache policy, file handles) are chosen once in [`PassthroughFs::new`]
//! from the [`Config`].
//!
//! There is no read-only mode here: a read-only share (`--readonly`, a
//! policy's `readonly`, read-only subtrees) is the policy layer's
//! (`avpfs_policy::PolicyFs`), which the daemon puts in front of the
//! passthrough whenever a share is read-only and which refuses every
//! modification with `EROFS` before it reaches this file system (WRITE,
//! FALLOCATE and COPY_FILE_RANGE in a read-only subtree of a writable share
//! reach it, on a handle the policy only let open for reading, and the host
//! refuses them).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod attr;
mod config;
mod creds;
mod dir;
mod entry;
mod file;
mod handle;
mod host_files;
mod inode;
mod locks;
mod migration;
mod owner_locks;
mod passthrough;
mod statx;
mod util;
mod xattr;

#[cfg(test)]
mod migration_tests;
#[cfg(test)]
mod tests;

use std::ffi::CStr;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use avpfs_server::{
    Context, CopyRange, CreateRequest, DirSink, Entry, FallocateRequest, FileSystem, Handle, InitOptions, LockOwner,
    LockRequest, MigrationError, MknodRequest, NodeId, OpenReply, ReadRequest, RenameRequest, SetattrIn,
    SetxattrRequest, Usage, WantedFlags, WriteRequest, ZeroCopyReader, ZeroCopyWriter,
};
use fuse_abi::{init_flags as init, Attr, FileLock, Kstatfs, Statx};

pub use config::{CachePolicy, Config, FileHandleMode, MigrationMode, MigrationOnError, UnknownValue};
pub use passthrough::{Error, PassthroughFs, Share};

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

    fn usage(&self) -> Usage {
        Usage {
            nodes: self.inodes.len() as u64,
            handles: self.handles.len() as u64,
            locks: (self.inodes.lock_owner_count() + self.handles.flocked_count()) as u64,
        }
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

    fn mknod(&self, ctx: &Context, parent: NodeId, name: &CStr, req: MknodRequest) -> io::Result<Entry> {
        self.do_mknod(ctx, parent, name, req)
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

    fn rename(&self, _ctx: &Context, req: RenameRequest<'_>) -> io::Result<()> {
        self.do_rename(req)
    }

    fn link(&self, _ctx: &Context, node: NodeId, newparent: NodeId, newname: &CStr) -> io::Result<Entry> {
        self.do_link(node, newparent, newname)
    }

    fn open(&self, ctx: &Context, node: NodeId, flags: u32, kill_suidgid: bool) -> io::Result<OpenReply> {
        self.do_open(ctx, node, flags, kill_suidgid)
    }

    fn create(&self, ctx: &Context, parent: NodeId, name: &CStr, req: CreateRequest) -> io::Result<(Entry, OpenReply)> {
        self.do_create(ctx, parent, Some(name), req)
    }

    fn tmpfile(&self, ctx: &Context, parent: NodeId, req: CreateRequest) -> io::Result<(Entry, OpenReply)> {
        self.do_create(ctx, parent, None, req)
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

    fn setxattr(&self, ctx: &Context, node: NodeId, name: &CStr, req: SetxattrRequest<'_>) -> io::Result<()> {
        self.do_setxattr(ctx, node, name, req)
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

    fn dax_fd(&self, ctx: &Context, node: NodeId, handle: Option<Handle>, writable: bool) -> io::Result<OwnedFd> {
        self.do_dax_fd(ctx, node, handle, writable)
    }

    fn host_inode(&self, node: NodeId) -> Option<(u64, u64)> {
        self.inodes.get(node).ok().map(|n| (n.key.dev, n.key.ino))
    }

    fn save_state(&self) -> Result<Vec<u8>, MigrationError> {
        self.save_migration_state()
    }

    fn load_state(&self, state: &[u8]) -> Result<(), MigrationError> {
        self.load_migration_state(state)
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
