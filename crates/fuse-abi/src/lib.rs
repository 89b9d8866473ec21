//! The Linux FUSE kernel ABI (`include/uapi/linux/fuse.h`), protocol 7.27 to 7.41.
//!
//! Every wire struct is `#[repr(C)]` and derives the `zerocopy` traits, so
//! decoding a request never needs `unsafe` and a short buffer is an error,
//! never a panic. This crate does no I/O.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The protocol major version this crate implements.
pub const KERNEL_VERSION: u32 = 7;
/// The newest protocol minor version this crate implements.
pub const KERNEL_MINOR_VERSION: u32 = 41;
/// The oldest protocol minor version we accept (Linux 5.4 speaks 7.31; 7.27 is Linux 4.20).
pub const MIN_KERNEL_MINOR_VERSION: u32 = 27;
/// The node id of the root directory.
pub const ROOT_ID: u64 = 1;

/// Derives the zerocopy traits for a wire struct.
macro_rules! wire {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        ///
        /// Fields carry the names of `include/uapi/linux/fuse.h`.
        #[allow(missing_docs)]
        #[repr(C)]
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
    };
}

/// FUSE request opcodes.
#[allow(missing_docs)]
pub mod opcode {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const GETLK: u32 = 31;
    pub const SETLK: u32 = 32;
    pub const SETLKW: u32 = 33;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const INTERRUPT: u32 = 36;
    pub const BMAP: u32 = 37;
    pub const DESTROY: u32 = 38;
    pub const IOCTL: u32 = 39;
    pub const POLL: u32 = 40;
    pub const NOTIFY_REPLY: u32 = 41;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
    pub const LSEEK: u32 = 46;
    pub const COPY_FILE_RANGE: u32 = 47;
    pub const SETUPMAPPING: u32 = 48;
    pub const REMOVEMAPPING: u32 = 49;
    pub const SYNCFS: u32 = 50;
    pub const TMPFILE: u32 = 51;
    pub const STATX: u32 = 52;

    /// A readable name for an opcode, for logs.
    pub fn name(op: u32) -> &'static str {
        match op {
            LOOKUP => "LOOKUP",
            FORGET => "FORGET",
            GETATTR => "GETATTR",
            SETATTR => "SETATTR",
            READLINK => "READLINK",
            SYMLINK => "SYMLINK",
            MKNOD => "MKNOD",
            MKDIR => "MKDIR",
            UNLINK => "UNLINK",
            RMDIR => "RMDIR",
            RENAME => "RENAME",
            LINK => "LINK",
            OPEN => "OPEN",
            READ => "READ",
            WRITE => "WRITE",
            STATFS => "STATFS",
            RELEASE => "RELEASE",
            FSYNC => "FSYNC",
            SETXATTR => "SETXATTR",
            GETXATTR => "GETXATTR",
            LISTXATTR => "LISTXATTR",
            REMOVEXATTR => "REMOVEXATTR",
            FLUSH => "FLUSH",
            INIT => "INIT",
            OPENDIR => "OPENDIR",
            READDIR => "READDIR",
            RELEASEDIR => "RELEASEDIR",
            FSYNCDIR => "FSYNCDIR",
            GETLK => "GETLK",
            SETLK => "SETLK",
            SETLKW => "SETLKW",
            ACCESS => "ACCESS",
            CREATE => "CREATE",
            INTERRUPT => "INTERRUPT",
            BMAP => "BMAP",
            DESTROY => "DESTROY",
            IOCTL => "IOCTL",
            POLL => "POLL",
            NOTIFY_REPLY => "NOTIFY_REPLY",
            BATCH_FORGET => "BATCH_FORGET",
            FALLOCATE => "FALLOCATE",
            READDIRPLUS => "READDIRPLUS",
            RENAME2 => "RENAME2",
            LSEEK => "LSEEK",
            COPY_FILE_RANGE => "COPY_FILE_RANGE",
            SETUPMAPPING => "SETUPMAPPING",
            REMOVEMAPPING => "REMOVEMAPPING",
            SYNCFS => "SYNCFS",
            TMPFILE => "TMPFILE",
            STATX => "STATX",
            _ => "UNKNOWN",
        }
    }
}

/// FUSE_INIT flags (`flags` holds the low 32 bits, `flags2` the high 32 bits).
#[allow(missing_docs)]
pub mod init_flags {
    pub const ASYNC_READ: u64 = 1 << 0;
    pub const POSIX_LOCKS: u64 = 1 << 1;
    pub const FILE_OPS: u64 = 1 << 2;
    pub const ATOMIC_O_TRUNC: u64 = 1 << 3;
    pub const EXPORT_SUPPORT: u64 = 1 << 4;
    pub const BIG_WRITES: u64 = 1 << 5;
    pub const DONT_MASK: u64 = 1 << 6;
    pub const SPLICE_WRITE: u64 = 1 << 7;
    pub const SPLICE_MOVE: u64 = 1 << 8;
    pub const SPLICE_READ: u64 = 1 << 9;
    pub const FLOCK_LOCKS: u64 = 1 << 10;
    pub const HAS_IOCTL_DIR: u64 = 1 << 11;
    pub const AUTO_INVAL_DATA: u64 = 1 << 12;
    pub const DO_READDIRPLUS: u64 = 1 << 13;
    pub const READDIRPLUS_AUTO: u64 = 1 << 14;
    pub const ASYNC_DIO: u64 = 1 << 15;
    pub const WRITEBACK_CACHE: u64 = 1 << 16;
    pub const NO_OPEN_SUPPORT: u64 = 1 << 17;
    pub const PARALLEL_DIROPS: u64 = 1 << 18;
    pub const HANDLE_KILLPRIV: u64 = 1 << 19;
    pub const POSIX_ACL: u64 = 1 << 20;
    pub const ABORT_ERROR: u64 = 1 << 21;
    pub const MAX_PAGES: u64 = 1 << 22;
    pub const CACHE_SYMLINKS: u64 = 1 << 23;
    pub const NO_OPENDIR_SUPPORT: u64 = 1 << 24;
    pub const EXPLICIT_INVAL_DATA: u64 = 1 << 25;
    pub const MAP_ALIGNMENT: u64 = 1 << 26;
    pub const SUBMOUNTS: u64 = 1 << 27;
    pub const HANDLE_KILLPRIV_V2: u64 = 1 << 28;
    pub const SETXATTR_EXT: u64 = 1 << 29;
    pub const INIT_EXT: u64 = 1 << 30;
    pub const INIT_RESERVED: u64 = 1 << 31;
    pub const SECURITY_CTX: u64 = 1 << 32;
    pub const HAS_INODE_DAX: u64 = 1 << 33;
    pub const CREATE_SUPP_GROUP: u64 = 1 << 34;
    pub const HAS_EXPIRE_ONLY: u64 = 1 << 35;
    pub const DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;
    pub const PASSTHROUGH: u64 = 1 << 37;
    pub const NO_EXPORT_SUPPORT: u64 = 1 << 38;
    pub const HAS_RESEND: u64 = 1 << 39;
    pub const ALLOW_IDMAP: u64 = 1 << 40;
}

/// `fuse_attr.flags` bits (FUSE_ATTR_*).
pub mod attr_flags {
    /// The directory is the root of a host mount (with FUSE_SUBMOUNTS).
    pub const SUBMOUNT: u32 = 1 << 0;
    /// Per-inode DAX (with FUSE_HAS_INODE_DAX): the client maps this file
    /// through the DAX window.
    pub const DAX: u32 = 1 << 1;
}

/// `fuse_setattr_in.valid` bits.
#[allow(missing_docs)]
pub mod fattr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const FH: u32 = 1 << 6;
    pub const ATIME_NOW: u32 = 1 << 7;
    pub const MTIME_NOW: u32 = 1 << 8;
    pub const LOCKOWNER: u32 = 1 << 9;
    pub const CTIME: u32 = 1 << 10;
    pub const KILL_SUIDGID: u32 = 1 << 11;
}

/// `fuse_open_out.open_flags` bits (FOPEN_*).
#[allow(missing_docs)]
pub mod fopen {
    pub const DIRECT_IO: u32 = 1 << 0;
    pub const KEEP_CACHE: u32 = 1 << 1;
    pub const NONSEEKABLE: u32 = 1 << 2;
    pub const CACHE_DIR: u32 = 1 << 3;
    pub const STREAM: u32 = 1 << 4;
    pub const NOFLUSH: u32 = 1 << 5;
    pub const PARALLEL_DIRECT_WRITES: u32 = 1 << 6;
    pub const PASSTHROUGH: u32 = 1 << 7;
}

/// `fuse_open_in.open_flags` / `fuse_create_in.open_flags`: kill suid/sgid on open with O_TRUNC.
pub const FUSE_OPEN_KILL_SUIDGID: u32 = 1 << 0;
/// `fuse_getattr_in.getattr_flags`: `fh` is valid.
pub const FUSE_GETATTR_FH: u32 = 1 << 0;
/// `fuse_release_in.release_flags`: flush before release.
pub const FUSE_RELEASE_FLUSH: u32 = 1 << 0;
/// `fuse_release_in.release_flags`: drop flock locks of `lock_owner`.
pub const FUSE_RELEASE_FLOCK_UNLOCK: u32 = 1 << 1;
/// `fuse_write_in.write_flags`: delayed write from the page cache.
pub const FUSE_WRITE_CACHE: u32 = 1 << 0;
/// `fuse_write_in.write_flags`: `lock_owner` is valid.
pub const FUSE_WRITE_LOCKOWNER: u32 = 1 << 1;
/// `fuse_write_in.write_flags`: kill suid and sgid bits.
pub const FUSE_WRITE_KILL_SUIDGID: u32 = 1 << 2;
/// `fuse_read_in.read_flags`: `lock_owner` is valid.
pub const FUSE_READ_LOCKOWNER: u32 = 1 << 1;
/// `fuse_lk_in.lk_flags`: the lock is a BSD flock, not a POSIX lock.
pub const FUSE_LK_FLOCK: u32 = 1 << 0;
/// `fuse_fsync_in.fsync_flags`: sync data only (fdatasync).
pub const FUSE_FSYNC_FDATASYNC: u32 = 1 << 0;
/// `fuse_setxattr_in.setxattr_flags`: clear SGID when a POSIX ACL is set.
pub const FUSE_SETXATTR_ACL_KILL_SGID: u32 = 1 << 0;
/// Request extension type: supplementary groups (7.38+).
pub const FUSE_EXT_GROUPS: u32 = 32;
/// Default max_pages for FUSE_MAX_PAGES (256 pages = 1 MiB).
pub const FUSE_DEFAULT_MAX_PAGES: u16 = 256;

wire! {
    /// File attributes as the kernel caches them.
    pub struct Attr {
        pub ino: u64,
        pub size: u64,
        pub blocks: u64,
        pub atime: u64,
        pub mtime: u64,
        pub ctime: u64,
        pub atimensec: u32,
        pub mtimensec: u32,
        pub ctimensec: u32,
        pub mode: u32,
        pub nlink: u32,
        pub uid: u32,
        pub gid: u32,
        pub rdev: u32,
        pub blksize: u32,
        pub flags: u32,
    }
}

wire! {
    /// File system statistics.
    pub struct Kstatfs {
        pub blocks: u64,
        pub bfree: u64,
        pub bavail: u64,
        pub files: u64,
        pub ffree: u64,
        pub bsize: u32,
        pub namelen: u32,
        pub frsize: u32,
        pub padding: u32,
        pub spare: [u32; 6],
    }
}

wire! {
    /// A byte-range lock.
    pub struct FileLock {
        pub start: u64,
        pub end: u64,
        pub typ: u32,
        pub pid: u32,
    }
}

wire! {
    /// The header of every request.
    pub struct InHeader {
        pub len: u32,
        pub opcode: u32,
        pub unique: u64,
        pub nodeid: u64,
        pub uid: u32,
        pub gid: u32,
        pub pid: u32,
        /// Length of request extensions, in units of 8 bytes.
        pub total_extlen: u16,
        pub padding: u16,
    }
}

wire! {
    /// The header of every reply.
    pub struct OutHeader {
        pub len: u32,
        pub error: i32,
        pub unique: u64,
    }
}

wire! {
    /// FUSE_INIT request (7.36+ layout; older kernels send only the first 16 bytes).
    pub struct InitIn {
        pub major: u32,
        pub minor: u32,
        pub max_readahead: u32,
        pub flags: u32,
        pub flags2: u32,
        pub unused: [u32; 11],
    }
}

/// Size of the pre-7.36 FUSE_INIT request body.
pub const INIT_IN_COMPAT_SIZE: usize = 16;

wire! {
    /// FUSE_INIT reply.
    pub struct InitOut {
        pub major: u32,
        pub minor: u32,
        pub max_readahead: u32,
        pub flags: u32,
        pub max_background: u16,
        pub congestion_threshold: u16,
        pub max_write: u32,
        pub time_gran: u32,
        pub max_pages: u16,
        pub map_alignment: u16,
        pub flags2: u32,
        pub max_stack_depth: u32,
        pub unused: [u32; 6],
    }
}

wire! {
    /// Reply to LOOKUP, MKNOD, MKDIR, SYMLINK, LINK and (with OpenOut) CREATE.
    pub struct EntryOut {
        pub nodeid: u64,
        pub generation: u64,
        pub entry_valid: u64,
        pub attr_valid: u64,
        pub entry_valid_nsec: u32,
        pub attr_valid_nsec: u32,
        pub attr: Attr,
    }
}

wire! {
    /// FORGET request.
    pub struct ForgetIn { pub nlookup: u64 }
}

wire! {
    /// One entry of BATCH_FORGET.
    pub struct ForgetOne { pub nodeid: u64, pub nlookup: u64 }
}

wire! {
    /// BATCH_FORGET request header; `count` ForgetOne follow.
    pub struct BatchForgetIn { pub count: u32, pub dummy: u32 }
}

wire! {
    /// GETATTR request.
    pub struct GetattrIn { pub getattr_flags: u32, pub dummy: u32, pub fh: u64 }
}

wire! {
    /// Reply to GETATTR and SETATTR.
    pub struct AttrOut {
        pub attr_valid: u64,
        pub attr_valid_nsec: u32,
        pub dummy: u32,
        pub attr: Attr,
    }
}

wire! {
    /// MKNOD request; the name follows.
    pub struct MknodIn { pub mode: u32, pub rdev: u32, pub umask: u32, pub padding: u32 }
}

wire! {
    /// MKDIR request; the name follows.
    pub struct MkdirIn { pub mode: u32, pub umask: u32 }
}

wire! {
    /// RENAME request; old and new names follow.
    pub struct RenameIn { pub newdir: u64 }
}

wire! {
    /// RENAME2 request; old and new names follow.
    pub struct Rename2In { pub newdir: u64, pub flags: u32, pub padding: u32 }
}

wire! {
    /// LINK request; the new name follows.
    pub struct LinkIn { pub oldnodeid: u64 }
}

wire! {
    /// SETATTR request.
    pub struct SetattrIn {
        pub valid: u32,
        pub padding: u32,
        pub fh: u64,
        pub size: u64,
        pub lock_owner: u64,
        pub atime: u64,
        pub mtime: u64,
        pub ctime: u64,
        pub atimensec: u32,
        pub mtimensec: u32,
        pub ctimensec: u32,
        pub mode: u32,
        pub unused4: u32,
        pub uid: u32,
        pub gid: u32,
        pub unused5: u32,
    }
}

wire! {
    /// OPEN and OPENDIR request.
    pub struct OpenIn { pub flags: u32, pub open_flags: u32 }
}

wire! {
    /// CREATE and TMPFILE request; the name follows.
    pub struct CreateIn { pub flags: u32, pub mode: u32, pub umask: u32, pub open_flags: u32 }
}

wire! {
    /// Reply to OPEN, OPENDIR, and the second half of CREATE.
    pub struct OpenOut { pub fh: u64, pub open_flags: u32, pub backing_id: i32 }
}

wire! {
    /// RELEASE and RELEASEDIR request.
    pub struct ReleaseIn { pub fh: u64, pub flags: u32, pub release_flags: u32, pub lock_owner: u64 }
}

wire! {
    /// FLUSH request.
    pub struct FlushIn { pub fh: u64, pub unused: u32, pub padding: u32, pub lock_owner: u64 }
}

wire! {
    /// READ and READDIR(PLUS) request.
    pub struct ReadIn {
        pub fh: u64,
        pub offset: u64,
        pub size: u32,
        pub read_flags: u32,
        pub lock_owner: u64,
        pub flags: u32,
        pub padding: u32,
    }
}

wire! {
    /// WRITE request; the payload follows.
    pub struct WriteIn {
        pub fh: u64,
        pub offset: u64,
        pub size: u32,
        pub write_flags: u32,
        pub lock_owner: u64,
        pub flags: u32,
        pub padding: u32,
    }
}

wire! {
    /// Reply to WRITE.
    pub struct WriteOut { pub size: u32, pub padding: u32 }
}

wire! {
    /// Reply to STATFS.
    pub struct StatfsOut { pub st: Kstatfs }
}

wire! {
    /// FSYNC and FSYNCDIR request.
    pub struct FsyncIn { pub fh: u64, pub fsync_flags: u32, pub padding: u32 }
}

wire! {
    /// SETXATTR request with SETXATTR_EXT; without it only the first 8 bytes are sent.
    pub struct SetxattrIn { pub size: u32, pub flags: u32, pub setxattr_flags: u32, pub padding: u32 }
}

/// Size of the SETXATTR request body without FUSE_SETXATTR_EXT.
pub const SETXATTR_IN_COMPAT_SIZE: usize = 8;

wire! {
    /// GETXATTR and LISTXATTR request.
    pub struct GetxattrIn { pub size: u32, pub padding: u32 }
}

wire! {
    /// Reply to a GETXATTR/LISTXATTR size probe (size 0).
    pub struct GetxattrOut { pub size: u32, pub padding: u32 }
}

wire! {
    /// GETLK, SETLK and SETLKW request.
    pub struct LkIn { pub fh: u64, pub owner: u64, pub lk: FileLock, pub lk_flags: u32, pub padding: u32 }
}

wire! {
    /// Reply to GETLK.
    pub struct LkOut { pub lk: FileLock }
}

wire! {
    /// ACCESS request.
    pub struct AccessIn { pub mask: u32, pub padding: u32 }
}

wire! {
    /// INTERRUPT request.
    pub struct InterruptIn { pub unique: u64 }
}

wire! {
    /// FALLOCATE request.
    pub struct FallocateIn { pub fh: u64, pub offset: u64, pub length: u64, pub mode: u32, pub padding: u32 }
}

wire! {
    /// LSEEK request.
    pub struct LseekIn { pub fh: u64, pub offset: u64, pub whence: u32, pub padding: u32 }
}

wire! {
    /// Reply to LSEEK.
    pub struct LseekOut { pub offset: u64 }
}

wire! {
    /// COPY_FILE_RANGE request.
    pub struct CopyFileRangeIn {
        pub fh_in: u64,
        pub off_in: u64,
        pub nodeid_out: u64,
        pub fh_out: u64,
        pub off_out: u64,
        pub len: u64,
        pub flags: u64,
    }
}

/// `fuse_setupmapping_in.flags` bits.
#[allow(missing_docs)]
pub mod setupmapping_flags {
    pub const WRITE: u64 = 1 << 0;
    pub const READ: u64 = 1 << 1;
}

wire! {
    /// SETUPMAPPING request: map `len` bytes of the file at `foffset` at
    /// `moffset` in the DAX window. The Linux client sends `fh` = `u64::MAX`
    /// (no handle: the node's file) and 2 MiB ranges.
    pub struct SetupMappingIn { pub fh: u64, pub foffset: u64, pub len: u64, pub flags: u64, pub moffset: u64 }
}

wire! {
    /// REMOVEMAPPING request header; `count` [`RemoveMappingOne`] follow.
    pub struct RemoveMappingIn { pub count: u32 }
}

wire! {
    /// One range of a REMOVEMAPPING request.
    pub struct RemoveMappingOne { pub moffset: u64, pub len: u64 }
}

/// Most ranges one REMOVEMAPPING carries (a 4 KiB page of them, as the
/// Linux client sends).
pub const REMOVEMAPPING_MAX_ENTRY: usize = 4096 / core::mem::size_of::<RemoveMappingOne>();

wire! {
    /// SYNCFS request.
    pub struct SyncfsIn { pub padding: u64 }
}

wire! {
    /// STATX request.
    pub struct StatxIn { pub getattr_flags: u32, pub reserved: u32, pub fh: u64, pub sx_flags: u32, pub sx_mask: u32 }
}

wire! {
    /// A timestamp in a statx reply.
    pub struct SxTime { pub tv_sec: i64, pub tv_nsec: u32, pub reserved: i32 }
}

wire! {
    /// Extended attributes as in statx(2).
    pub struct Statx {
        pub mask: u32,
        pub blksize: u32,
        pub attributes: u64,
        pub nlink: u32,
        pub uid: u32,
        pub gid: u32,
        pub mode: u16,
        pub spare0: u16,
        pub ino: u64,
        pub size: u64,
        pub blocks: u64,
        pub attributes_mask: u64,
        pub atime: SxTime,
        pub btime: SxTime,
        pub ctime: SxTime,
        pub mtime: SxTime,
        pub rdev_major: u32,
        pub rdev_minor: u32,
        pub dev_major: u32,
        pub dev_minor: u32,
        pub spare2: [u64; 14],
    }
}

wire! {
    /// Reply to STATX.
    pub struct StatxOut { pub attr_valid: u64, pub attr_valid_nsec: u32, pub flags: u32, pub spare: [u64; 2], pub stat: Statx }
}

wire! {
    /// A directory entry in a READDIR reply; the name and padding to 8 bytes follow.
    pub struct Dirent { pub ino: u64, pub off: u64, pub namelen: u32, pub typ: u32 }
}

wire! {
    /// A directory entry in a READDIRPLUS reply.
    pub struct DirentPlus { pub entry_out: EntryOut, pub dirent: Dirent }
}

wire! {
    /// The header of one request extension.
    pub struct ExtHeader { pub size: u32, pub typ: u32 }
}

wire! {
    /// Supplementary groups extension body; `nr_groups` u32 follow.
    pub struct SuppGroups { pub nr_groups: u32 }
}

/// Rounds a directory-entry length up to the 8-byte alignment the kernel expects.
pub const fn dirent_align(len: usize) -> usize {
    (len + 7) & !7
}

/// Size on the wire of a READDIR entry with a name of `namelen` bytes.
pub const fn dirent_size(namelen: usize) -> usize {
    dirent_align(core::mem::size_of::<Dirent>() + namelen)
}

/// Size on the wire of a READDIRPLUS entry with a name of `namelen` bytes.
pub const fn direntplus_size(namelen: usize) -> usize {
    dirent_align(core::mem::size_of::<DirentPlus>() + namelen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn struct_sizes_match_the_kernel_header() {
        assert_eq!(size_of::<Attr>(), 88);
        assert_eq!(size_of::<Kstatfs>(), 80);
        assert_eq!(size_of::<FileLock>(), 24);
        assert_eq!(size_of::<InHeader>(), 40);
        assert_eq!(size_of::<OutHeader>(), 16);
        assert_eq!(size_of::<InitIn>(), 64);
        assert_eq!(size_of::<InitOut>(), 64);
        assert_eq!(size_of::<EntryOut>(), 128);
        assert_eq!(size_of::<AttrOut>(), 104);
        assert_eq!(size_of::<GetattrIn>(), 16);
        assert_eq!(size_of::<SetattrIn>(), 88);
        assert_eq!(size_of::<MknodIn>(), 16);
        assert_eq!(size_of::<Rename2In>(), 16);
        assert_eq!(size_of::<CreateIn>(), 16);
        assert_eq!(size_of::<OpenOut>(), 16);
        assert_eq!(size_of::<ReleaseIn>(), 24);
        assert_eq!(size_of::<FlushIn>(), 24);
        assert_eq!(size_of::<ReadIn>(), 40);
        assert_eq!(size_of::<WriteIn>(), 40);
        assert_eq!(size_of::<StatfsOut>(), 80);
        assert_eq!(size_of::<SetxattrIn>(), 16);
        assert_eq!(size_of::<LkIn>(), 48);
        assert_eq!(size_of::<LkOut>(), 24);
        assert_eq!(size_of::<FallocateIn>(), 32);
        assert_eq!(size_of::<LseekIn>(), 24);
        assert_eq!(size_of::<CopyFileRangeIn>(), 56);
        assert_eq!(size_of::<StatxIn>(), 24);
        assert_eq!(size_of::<Statx>(), 256);
        assert_eq!(size_of::<StatxOut>(), 288);
        assert_eq!(size_of::<Dirent>(), 24);
        assert_eq!(size_of::<DirentPlus>(), 152);
        assert_eq!(size_of::<ForgetOne>(), 16);
        assert_eq!(size_of::<BatchForgetIn>(), 8);
        assert_eq!(size_of::<SetupMappingIn>(), 40);
        assert_eq!(size_of::<RemoveMappingIn>(), 4);
        assert_eq!(size_of::<RemoveMappingOne>(), 16);
        assert_eq!(REMOVEMAPPING_MAX_ENTRY, 256);
    }

    #[test]
    fn dirent_sizes_are_8_byte_aligned() {
        assert_eq!(dirent_size(0), 24);
        assert_eq!(dirent_size(1), 32);
        assert_eq!(dirent_size(8), 32);
        assert_eq!(dirent_size(9), 40);
        assert_eq!(direntplus_size(1), 160);
        assert_eq!(direntplus_size(8), 160);
        assert_eq!(direntplus_size(9), 168);
    }

    #[test]
    fn in_header_decodes_from_golden_bytes() {
        #[rustfmt::skip]
        let bytes: [u8; 40] = [
            0x38, 0, 0, 0,          // len = 56
            1, 0, 0, 0,             // opcode = LOOKUP
            7, 0, 0, 0, 0, 0, 0, 0, // unique = 7
            1, 0, 0, 0, 0, 0, 0, 0, // nodeid = 1
            0xe8, 3, 0, 0,          // uid = 1000
            0xe9, 3, 0, 0,          // gid = 1001
            42, 0, 0, 0,            // pid = 42
            0, 0, 0, 0,             // total_extlen, padding
        ];
        let h = InHeader::read_from_bytes(&bytes[..]).unwrap();
        assert_eq!(h.len, 56);
        assert_eq!(h.opcode, opcode::LOOKUP);
        assert_eq!(h.unique, 7);
        assert_eq!(h.nodeid, ROOT_ID);
        assert_eq!((h.uid, h.gid, h.pid), (1000, 1001, 42));
        assert!(InHeader::read_from_bytes(&bytes[..39]).is_err());
    }
}
