//! The [`FileSystem`] trait: one method per FUSE operation.
//!
//! The server decodes a request, checks it, and calls one of these methods;
//! the implementation never sees wire structs of requests, only typed
//! arguments. Every method has a default that fails with `ENOSYS`, so a file
//! system implements what it supports and the kernel learns the rest.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use fuse_abi::{Attr, FileLock, Kstatfs, Statx};

use crate::transport::{ZeroCopyReader, ZeroCopyWriter};

/// A node id handed to the client (the kernel's `nodeid`).
///
/// A type of its own, so that a [`Handle`], a lock owner or an offset
/// cannot be passed where a node id is expected. The wire value is `.0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The root of the file system (`FUSE_ROOT_ID`).
    pub const ROOT: NodeId = NodeId(fuse_abi::ROOT_ID);
    /// No node: in an [`Entry`], a negative entry (or, in READDIRPLUS, an
    /// entry that carries no lookup reference).
    pub const NONE: NodeId = NodeId(0);

    /// The wire value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A file or directory handle handed to the client (the kernel's `fh`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Handle(pub u64);

impl Handle {
    /// The wire value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A lock owner as the client identifies it (`lock_owner`, `owner`): an
/// opaque value, one per process file table or open file description in
/// the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct LockOwner(pub u64);

impl fmt::Display for LockOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who sent a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The caller's file system user id.
    pub uid: u32,
    /// The caller's file system group id.
    pub gid: u32,
    /// The caller's process id in the client (0 when unknown).
    pub pid: u32,
    /// Supplementary groups, when the client sent them (FUSE_EXT_GROUPS).
    pub groups: Option<Vec<u32>>,
}

/// The reply to an operation that creates a client reference to a node
/// (LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE, TMPFILE, READDIRPLUS).
///
/// Each `Entry` with a non-zero `nodeid` returned to the client counts as one
/// lookup reference that a later FORGET releases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// The node id; 0 means a negative entry ("does not exist", cacheable).
    pub nodeid: NodeId,
    /// Generation, so that a reused node id is told apart.
    pub generation: u64,
    /// The node's attributes.
    pub attr: Attr,
    /// How long the client may cache the attributes.
    pub attr_timeout: Duration,
    /// How long the client may cache the name.
    pub entry_timeout: Duration,
}

/// Flags the file system returns from OPEN, OPENDIR and CREATE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenReply {
    /// The handle for later requests on this open file.
    pub handle: Handle,
    /// FOPEN_* flags.
    pub open_flags: u32,
}

/// Which attributes a SETATTR changes, with their new values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetattrIn {
    /// New mode (permission and type bits; only permission bits apply).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeSpec>,
    /// New modification time.
    pub mtime: Option<TimeSpec>,
    /// New change time (only settable as a side effect on Linux; accepted).
    pub ctime: Option<(u64, u32)>,
    /// The open handle when the change was made through a file descriptor.
    pub handle: Option<Handle>,
    /// Clear setuid/setgid as the kernel would (FATTR_KILL_SUIDGID).
    pub kill_suidgid: bool,
}

/// A time to set with SETATTR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// The current time (UTIME_NOW).
    Now,
    /// Seconds and nanoseconds since the epoch.
    At(u64, u32),
}

/// One entry of a directory listing.
#[derive(Debug, Clone, Copy)]
pub struct DirEntry<'a> {
    /// Inode number as shown to the client (`d_ino`).
    pub ino: u64,
    /// Offset of the *next* entry, as the client will pass back to continue.
    pub offset: u64,
    /// File type (`DT_*`).
    pub typ: u32,
    /// The name, without NUL.
    pub name: &'a [u8],
}

/// The reply buffer of a READDIR or READDIRPLUS.
pub trait DirSink {
    /// True for READDIRPLUS: each entry needs an [`Entry`] (a lookup reference).
    fn is_plus(&self) -> bool;
    /// Whether an entry with a name of `namelen` bytes still fits.
    fn has_room(&self, namelen: usize) -> bool;
    /// Bytes left for entries: how much of the directory is worth reading
    /// ahead for this reply (`usize::MAX` when unknown).
    fn remaining(&self) -> usize {
        usize::MAX
    }
    /// Adds an entry; returns `false` and adds nothing when it does not fit.
    /// `plus` must be given for READDIRPLUS (a `nodeid` of 0 adds no reference).
    fn add(&mut self, entry: DirEntry<'_>, plus: Option<&Entry>) -> bool;
}

/// Options the client and server agreed on in FUSE_INIT, given to [`FileSystem::init`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitOptions {
    /// The negotiated protocol minor version.
    pub minor: u32,
    /// The capabilities the client offered (FUSE_INIT flags, 64 bit).
    pub client_flags: u64,
}

/// What a file system wants enabled, returned by [`FileSystem::init`]: a
/// set of FUSE_INIT bits (`fuse_abi::init_flags`, 64 bit), combined with `|`
/// like the client's flags in [`InitOptions`]. The server enables a flag
/// only if the client offered it. (An alias, not a newtype: it is the only
/// value of its call and never travels next to another integer.)
pub type WantedFlags = u64;

/// A POSIX lock request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockRequest {
    /// The handle the lock is taken through.
    pub handle: Handle,
    /// The lock owner as the client identifies it.
    pub owner: LockOwner,
    /// The lock (type F_RDLCK/F_WRLCK/F_UNLCK, range, pid).
    pub lock: FileLock,
    /// A BSD flock rather than a POSIX record lock.
    pub flock: bool,
}

/// A MKNOD: the new node's type and permission bits, its device number
/// and the caller's umask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MknodRequest {
    /// Type and permission bits (`S_IF*` and mode).
    pub mode: u32,
    /// The device number of a device node, as the client encodes it.
    pub rdev: u32,
    /// The caller's umask.
    pub umask: u32,
}

/// A CREATE or TMPFILE: the new file's mode, the caller's umask and the
/// open(2) flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateRequest {
    /// Permission bits (and `S_IFREG`).
    pub mode: u32,
    /// The caller's umask.
    pub umask: u32,
    /// open(2) flags.
    pub flags: u32,
}

/// A RENAME or RENAME2: from `olddir/oldname` to `newdir/newname`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenameRequest<'a> {
    /// The directory the entry is in (the request's node).
    pub olddir: NodeId,
    /// The entry's name.
    pub oldname: &'a CStr,
    /// The directory it moves to.
    pub newdir: NodeId,
    /// Its new name.
    pub newname: &'a CStr,
    /// renameat2(2) flags (0 for RENAME).
    pub flags: u32,
}

/// What a SETXATTR sets (the attribute's name is passed beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetxattrRequest<'a> {
    /// The value.
    pub value: &'a [u8],
    /// setxattr(2) flags (XATTR_CREATE, XATTR_REPLACE).
    pub flags: u32,
    /// Clear setgid as the kernel would when setting an access ACL
    /// (FUSE_SETXATTR_ACL_KILL_SGID).
    pub kill_sgid: bool,
}

/// Where and how much a READ reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// The open file.
    pub handle: Handle,
    /// Where to start.
    pub offset: u64,
    /// At most this many bytes.
    pub size: u32,
    /// The open(2) flags of the file (`fuse_read_in.flags`).
    pub flags: u32,
}

/// Where and how much a WRITE writes (the data comes from a reader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRequest {
    /// The open file.
    pub handle: Handle,
    /// Where to start.
    pub offset: u64,
    /// This many bytes.
    pub size: u32,
    /// Clear setuid/setgid as the kernel would (FUSE_WRITE_KILL_SUIDGID).
    pub kill_suidgid: bool,
    /// The open(2) flags of the file (`fuse_write_in.flags`).
    pub flags: u32,
}

/// A FALLOCATE: a range and a fallocate(2) mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallocateRequest {
    /// The open file.
    pub handle: Handle,
    /// fallocate(2) `mode` (FALLOC_FL_*).
    pub mode: u32,
    /// Start of the range.
    pub offset: u64,
    /// Length of the range.
    pub length: u64,
}

/// A COPY_FILE_RANGE: `len` bytes from one open file to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyRange {
    /// The node read from.
    pub node_in: NodeId,
    /// The open file read from.
    pub handle_in: Handle,
    /// Where reading starts.
    pub offset_in: u64,
    /// The node written to.
    pub node_out: NodeId,
    /// The open file written to.
    pub handle_out: Handle,
    /// Where writing starts.
    pub offset_out: u64,
    /// At most this many bytes.
    pub len: u64,
    /// copy_file_range(2) flags.
    pub flags: u64,
}

/// A file system served over FUSE. Every method defaults to `ENOSYS`.
///
/// What a client holds in a file system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Nodes it holds lookup references to (the root included).
    pub nodes: u64,
    /// Open file and directory handles.
    pub handles: u64,
    /// Locks held: lock owners with POSIX record locks, and handles with a
    /// flock.
    pub locks: u64,
}

/// Methods take `&self`: the server calls them from many threads at once.
#[allow(unused_variables)]
pub trait FileSystem: Send + Sync {
    /// Called once on FUSE_INIT; returns the FUSE_INIT flags it wants.
    fn init(&self, opts: InitOptions) -> io::Result<WantedFlags> {
        Ok(0)
    }
    /// Called on FUSE_DESTROY or when the client goes away: drop every
    /// node reference and open handle of this client.
    fn destroy(&self) {}
    /// What the client holds now (for status and metrics; not on the
    /// request path).
    fn usage(&self) -> Usage {
        Usage::default()
    }
    /// Looks up `name` in directory `parent`, taking one lookup reference.
    fn lookup(&self, ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        Err(enosys())
    }
    /// Drops `count` lookup references of `node`.
    fn forget(&self, node: NodeId, count: u64) {}
    /// Drops many lookup references at once.
    fn batch_forget(&self, requests: &[(NodeId, u64)]) {
        for &(node, count) in requests {
            self.forget(node, count);
        }
    }
    /// Returns the attributes of `node` and how long they may be cached.
    fn getattr(&self, ctx: &Context, node: NodeId, handle: Option<Handle>) -> io::Result<(Attr, Duration)> {
        Err(enosys())
    }
    /// Changes attributes of `node`.
    fn setattr(&self, ctx: &Context, node: NodeId, set: SetattrIn) -> io::Result<(Attr, Duration)> {
        Err(enosys())
    }
    /// Returns the target of the symlink `node`.
    fn readlink(&self, ctx: &Context, node: NodeId) -> io::Result<Vec<u8>> {
        Err(enosys())
    }
    /// Creates the symlink `name` in `parent` pointing to `target`.
    fn symlink(&self, ctx: &Context, target: &CStr, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        Err(enosys())
    }
    /// Creates a regular file, fifo, socket or device node.
    fn mknod(&self, ctx: &Context, parent: NodeId, name: &CStr, req: MknodRequest) -> io::Result<Entry> {
        Err(enosys())
    }
    /// Creates a directory.
    fn mkdir(&self, ctx: &Context, parent: NodeId, name: &CStr, mode: u32, umask: u32) -> io::Result<Entry> {
        Err(enosys())
    }
    /// Removes a non-directory.
    fn unlink(&self, ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<()> {
        Err(enosys())
    }
    /// Removes an empty directory.
    fn rmdir(&self, ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<()> {
        Err(enosys())
    }
    /// Renames `req.olddir/req.oldname` to `req.newdir/req.newname`.
    fn rename(&self, ctx: &Context, req: RenameRequest<'_>) -> io::Result<()> {
        Err(enosys())
    }
    /// Creates a hard link to `node` as `newparent/newname`.
    fn link(&self, ctx: &Context, node: NodeId, newparent: NodeId, newname: &CStr) -> io::Result<Entry> {
        Err(enosys())
    }
    /// Opens a file; `flags` are open(2) flags, `kill_suidgid` asks to clear setuid/setgid on O_TRUNC.
    fn open(&self, ctx: &Context, node: NodeId, flags: u32, kill_suidgid: bool) -> io::Result<OpenReply> {
        Err(enosys())
    }
    /// Creates and opens a file.
    fn create(&self, ctx: &Context, parent: NodeId, name: &CStr, req: CreateRequest) -> io::Result<(Entry, OpenReply)> {
        Err(enosys())
    }
    /// Creates an unnamed temporary file in `parent` (O_TMPFILE) and opens it.
    fn tmpfile(&self, ctx: &Context, parent: NodeId, req: CreateRequest) -> io::Result<(Entry, OpenReply)> {
        Err(enosys())
    }
    /// Reads up to `req.size` bytes at `req.offset` into `w`. Returns the bytes read.
    fn read(&self, ctx: &Context, node: NodeId, req: ReadRequest, w: &mut dyn ZeroCopyWriter) -> io::Result<usize> {
        Err(enosys())
    }
    /// Writes `req.size` bytes from `r` at `req.offset`. Returns the bytes written.
    fn write(&self, ctx: &Context, node: NodeId, req: WriteRequest, r: &mut dyn ZeroCopyReader) -> io::Result<usize> {
        Err(enosys())
    }
    /// Called on each close(2) of a descriptor of the open file.
    fn flush(&self, ctx: &Context, node: NodeId, handle: Handle, lock_owner: LockOwner) -> io::Result<()> {
        Err(enosys())
    }
    /// Called when the last descriptor of the open file is closed.
    fn release(
        &self,
        ctx: &Context,
        node: NodeId,
        handle: Handle,
        flags: u32,
        flock_unlock_owner: Option<LockOwner>,
    ) -> io::Result<()> {
        Err(enosys())
    }
    /// Syncs a file; `datasync` asks for fdatasync.
    fn fsync(&self, ctx: &Context, node: NodeId, handle: Handle, datasync: bool) -> io::Result<()> {
        Err(enosys())
    }
    /// Returns file system statistics.
    fn statfs(&self, ctx: &Context, node: NodeId) -> io::Result<Kstatfs> {
        Err(enosys())
    }
    /// Sets an extended attribute.
    fn setxattr(&self, ctx: &Context, node: NodeId, name: &CStr, req: SetxattrRequest<'_>) -> io::Result<()> {
        Err(enosys())
    }
    /// Returns the value of an extended attribute. The server applies the
    /// size-probe protocol and ERANGE.
    fn getxattr(&self, ctx: &Context, node: NodeId, name: &CStr) -> io::Result<Vec<u8>> {
        Err(enosys())
    }
    /// Returns the NUL-separated names of the extended attributes.
    fn listxattr(&self, ctx: &Context, node: NodeId) -> io::Result<Vec<u8>> {
        Err(enosys())
    }
    /// Removes an extended attribute.
    fn removexattr(&self, ctx: &Context, node: NodeId, name: &CStr) -> io::Result<()> {
        Err(enosys())
    }
    /// Opens a directory.
    fn opendir(&self, ctx: &Context, node: NodeId, flags: u32) -> io::Result<OpenReply> {
        Err(enosys())
    }
    /// Lists directory entries starting after `offset` into `sink`.
    fn readdir(
        &self,
        ctx: &Context,
        node: NodeId,
        handle: Handle,
        offset: u64,
        sink: &mut dyn DirSink,
    ) -> io::Result<()> {
        Err(enosys())
    }
    /// Closes a directory handle.
    fn releasedir(&self, ctx: &Context, node: NodeId, handle: Handle, flags: u32) -> io::Result<()> {
        Err(enosys())
    }
    /// Syncs a directory.
    fn fsyncdir(&self, ctx: &Context, node: NodeId, handle: Handle, datasync: bool) -> io::Result<()> {
        Err(enosys())
    }
    /// Tests for a lock; returns the conflicting lock or one of type F_UNLCK.
    fn getlk(&self, ctx: &Context, node: NodeId, req: LockRequest) -> io::Result<FileLock> {
        Err(enosys())
    }
    /// Takes or releases a lock; `wait` blocks until it is granted (SETLKW).
    fn setlk(&self, ctx: &Context, node: NodeId, req: LockRequest, wait: bool) -> io::Result<()> {
        Err(enosys())
    }
    /// Checks access permission (access(2) `mask`).
    fn access(&self, ctx: &Context, node: NodeId, mask: u32) -> io::Result<()> {
        Err(enosys())
    }
    /// Allocates or deallocates space (fallocate(2)).
    fn fallocate(&self, ctx: &Context, node: NodeId, req: FallocateRequest) -> io::Result<()> {
        Err(enosys())
    }
    /// Finds data or holes (SEEK_DATA/SEEK_HOLE) or plain seeks.
    fn lseek(&self, ctx: &Context, node: NodeId, handle: Handle, offset: u64, whence: u32) -> io::Result<u64> {
        Err(enosys())
    }
    /// Copies a range between two open files (`range.node_in` is the
    /// request's node).
    fn copy_file_range(&self, ctx: &Context, range: CopyRange) -> io::Result<usize> {
        Err(enosys())
    }
    /// Syncs the whole file system.
    fn syncfs(&self, ctx: &Context, node: NodeId) -> io::Result<()> {
        Err(enosys())
    }
    /// Returns extended attributes (statx).
    fn statx(
        &self,
        ctx: &Context,
        node: NodeId,
        handle: Option<Handle>,
        flags: u32,
        mask: u32,
    ) -> io::Result<(Statx, Duration)> {
        Err(enosys())
    }
    /// A descriptor of `node`'s file to map into the DAX window, readable
    /// and, with `writable`, writable: the open file `handle` (`EBADF` when
    /// it is not one of `node`'s; `EACCES` when a write mapping is asked
    /// through a handle not open for writing), or, with `None` (the Linux
    /// client names no handle), the node's file opened anew. The file
    /// system refuses what its policy denies (`EROFS`, `ENOENT`). The server
    /// checks the range and the file's size, and keeps the descriptor only
    /// for the mapping request.
    fn dax_fd(&self, ctx: &Context, node: NodeId, handle: Option<Handle>, writable: bool) -> io::Result<OwnedFd> {
        Err(enosys())
    }
    /// Per-inode DAX (the client's `dax=inode`): whether the client should
    /// map the regular file `node`, of `st_mode` `mode`, through the DAX
    /// window. Asked only when the session negotiated FUSE_HAS_INODE_DAX
    /// (it has a window and the client offered it); the server then sets
    /// FUSE_ATTR_DAX on every entry and attribute reply of a regular file
    /// exactly when this is true, and refuses a SETUPMAPPING of a file it
    /// is false for with `EPERM`. With `writable`, only a file the
    /// client may write is picked (a front end that maps every file
    /// writable can map no other). The default picks no file.
    fn dax_pick(&self, node: NodeId, mode: u32, writable: bool) -> bool {
        false
    }
    /// The host file of `node`: (device, inode number), as `fstat` of a
    /// descriptor [`FileSystem::dax_fd`] gives would report them. The DAX
    /// window keys its mappings by it, to refit them when avpfs changes the
    /// file's size. `None` (the default): unknown, no refit.
    fn host_inode(&self, node: NodeId) -> Option<(u64, u64)> {
        None
    }
    /// Live migration, source side: the client's nodes (with their lookup
    /// counts and how to find each host file again) and open handles, as
    /// bytes for [`FileSystem::load_state`] on the destination. Called with
    /// the device stopped (no request in flight).
    fn save_state(&self) -> Result<Vec<u8>, crate::MigrationError> {
        Err(crate::MigrationError::Unsupported)
    }
    /// Live migration, destination side: takes over the nodes and handles
    /// [`FileSystem::save_state`] wrote, before any request of the client.
    /// All or nothing: on an error the file system is as before.
    fn load_state(&self, state: &[u8]) -> Result<(), crate::MigrationError> {
        Err(crate::MigrationError::Unsupported)
    }
}

/// The `ENOSYS` error every unimplemented operation returns.
pub fn enosys() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSYS)
}
