//! The values messages carry: fids, tags, qids, `getattr` and `setattr`
//! structures, statfs, directory entries and locks.

use std::fmt;

/// A tag: the client's name for one outstanding request, echoed in its reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Tag(pub u16);

impl Tag {
    /// The tag of `Tversion` (`P9_NOTAG`): no other request may use it.
    pub const NOTAG: Tag = Tag(u16::MAX);
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A fid: the client's name for a file (or an xattr, or an auth channel)
/// on this connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Fid(pub u32);

impl Fid {
    /// No fid (`P9_NOFID`): the `afid` of an attach without authentication.
    pub const NOFID: Fid = Fid(u32::MAX);
}

impl fmt::Display for Fid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Bits of [`Qid::typ`] (`P9_QT*`).
pub mod qid_type {
    /// A directory.
    pub const DIR: u8 = 0x80;
    /// Append-only.
    pub const APPEND: u8 = 0x40;
    /// Exclusive use.
    pub const EXCL: u8 = 0x20;
    /// A mount point.
    pub const MOUNT: u8 = 0x10;
    /// An authentication file.
    pub const AUTH: u8 = 0x08;
    /// Not backed up.
    pub const TMP: u8 = 0x04;
    /// A symbolic link.
    pub const SYMLINK: u8 = 0x02;
    /// A hard link (9P2000.u; unused by Linux).
    pub const LINK: u8 = 0x01;
    /// A plain file (and anything that is not one of the above).
    pub const FILE: u8 = 0x00;
}

/// The server's unique identity of a file: `type[1] version[4] path[8]`.
///
/// `path` plays the part of the inode number (the Linux client uses it as
/// `i_ino` and to tell files apart, so it must be unique on the share);
/// `version` may change when the file changes (Linux ignores it with its
/// default cache modes; 0 is fine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Qid {
    /// [`qid_type`] bits.
    pub typ: u8,
    /// Changes when the file does (0: no version kept).
    pub version: u32,
    /// Unique per file on the share.
    pub path: u64,
}

impl Qid {
    /// The qid of a file of Linux `mode` (its `S_IFMT` bits choose the
    /// type) whose unique number is `path`.
    pub fn from_mode(mode: u32, version: u32, path: u64) -> Qid {
        Qid { typ: qid_type_of_mode(mode), version, path }
    }
}

/// The [`qid_type`] for a Linux file mode: `DIR` for a directory,
/// `SYMLINK` for a symbolic link, `FILE` for anything else (as Linux and
/// QEMU do).
pub fn qid_type_of_mode(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => qid_type::DIR,
        libc::S_IFLNK => qid_type::SYMLINK,
        _ => qid_type::FILE,
    }
}

/// The `DT_*` directory entry type for a Linux file mode (what
/// [`DirEntry::typ`] carries; the Linux client passes it to `dir_emit`).
pub fn dirent_type_of_mode(mode: u32) -> u8 {
    // DT_* is the S_IFMT field shifted down by 12 bits on Linux.
    ((mode & libc::S_IFMT) >> 12) as u8
}

/// Bits of `Tgetattr`'s request mask and of [`Stat::valid`] (`P9_STATS_*`).
pub mod getattr {
    /// `mode`.
    pub const MODE: u64 = 0x0000_0001;
    /// `nlink`.
    pub const NLINK: u64 = 0x0000_0002;
    /// `uid`.
    pub const UID: u64 = 0x0000_0004;
    /// `gid`.
    pub const GID: u64 = 0x0000_0008;
    /// `rdev`.
    pub const RDEV: u64 = 0x0000_0010;
    /// `atime_sec`, `atime_nsec`.
    pub const ATIME: u64 = 0x0000_0020;
    /// `mtime_sec`, `mtime_nsec`.
    pub const MTIME: u64 = 0x0000_0040;
    /// `ctime_sec`, `ctime_nsec`.
    pub const CTIME: u64 = 0x0000_0080;
    /// The qid's path (the inode number).
    pub const INO: u64 = 0x0000_0100;
    /// `size`.
    pub const SIZE: u64 = 0x0000_0200;
    /// `blocks` (and `blksize`).
    pub const BLOCKS: u64 = 0x0000_0400;
    /// `btime_sec`, `btime_nsec` (birth time).
    pub const BTIME: u64 = 0x0000_0800;
    /// `gen`.
    pub const GEN: u64 = 0x0000_1000;
    /// `data_version`.
    pub const DATA_VERSION: u64 = 0x0000_2000;
    /// Everything `stat(2)` returns: `MODE` to `BLOCKS` (what Linux asks).
    pub const BASIC: u64 = 0x0000_07ff;
    /// Every field.
    pub const ALL: u64 = 0x0000_3fff;
}

/// The body of `Rgetattr` (`struct p9_stat_dotl`): a file's attributes.
///
/// A server fills it from a `stat`/`fuse_abi::Attr`-like structure: `qid`
/// from [`Qid::from_mode`] with the inode number, `valid` with the
/// [`getattr`] bits it filled (at least the ones requested that it knows,
/// usually [`getattr::BASIC`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    /// Which fields are valid ([`getattr`] bits).
    pub valid: u64,
    /// The file's qid.
    pub qid: Qid,
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Number of hard links.
    pub nlink: u64,
    /// Device number of a device node (Linux `dev_t` encoding).
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// Preferred I/O size.
    pub blksize: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Access time, seconds.
    pub atime_sec: u64,
    /// Access time, nanoseconds.
    pub atime_nsec: u64,
    /// Modification time, seconds.
    pub mtime_sec: u64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u64,
    /// Change time, seconds.
    pub ctime_sec: u64,
    /// Change time, nanoseconds.
    pub ctime_nsec: u64,
    /// Birth time, seconds (reserved: Linux does not read it).
    pub btime_sec: u64,
    /// Birth time, nanoseconds (reserved).
    pub btime_nsec: u64,
    /// Inode generation (reserved).
    pub gen: u64,
    /// Data version (reserved).
    pub data_version: u64,
}

/// Bits of [`SetAttr::valid`] (`P9_ATTR_*`, the same values as Linux's
/// `ATTR_*` of `struct iattr`).
pub mod setattr {
    /// Set `mode` (permission bits).
    pub const MODE: u32 = 1 << 0;
    /// Set `uid`.
    pub const UID: u32 = 1 << 1;
    /// Set `gid`.
    pub const GID: u32 = 1 << 2;
    /// Set `size` (truncate or extend).
    pub const SIZE: u32 = 1 << 3;
    /// Set the access time: to `atime_*` with `ATIME_SET`, else to now.
    pub const ATIME: u32 = 1 << 4;
    /// Set the modification time: to `mtime_*` with `MTIME_SET`, else to now.
    pub const MTIME: u32 = 1 << 5;
    /// Update the change time (to now).
    pub const CTIME: u32 = 1 << 6;
    /// `atime_sec`/`atime_nsec` hold the access time to set.
    pub const ATIME_SET: u32 = 1 << 7;
    /// `mtime_sec`/`mtime_nsec` hold the modification time to set.
    pub const MTIME_SET: u32 = 1 << 8;
    /// Every bit above; Linux (since 3.x, `v9fs_mapped_iattr_valid`) sends
    /// no other. Older clients passed `ia_valid` through: ignore the rest.
    pub const KNOWN: u32 = 0x1ff;
}

/// A time `Tsetattr` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    /// The server's current time.
    Now,
    /// Seconds and nanoseconds since the epoch.
    At(u64, u64),
}

/// The body of `Tsetattr` after the fid (`struct p9_iattr_dotl`).
///
/// The accessors give each change as an `Option`, the shape of
/// `avpfs_server::SetattrIn`. Fields whose bit is clear carry whatever the
/// client left there (Linux: 0, and `u32::MAX` for uid and gid).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Which changes to make ([`setattr`] bits, unknown bits kept).
    pub valid: u32,
    /// New mode.
    pub mode: u32,
    /// New owner.
    pub uid: u32,
    /// New group.
    pub gid: u32,
    /// New size.
    pub size: u64,
    /// New access time, seconds.
    pub atime_sec: u64,
    /// New access time, nanoseconds.
    pub atime_nsec: u64,
    /// New modification time, seconds.
    pub mtime_sec: u64,
    /// New modification time, nanoseconds.
    pub mtime_nsec: u64,
}

impl SetAttr {
    fn has(&self, bit: u32) -> bool {
        self.valid & bit != 0
    }

    /// The new mode, if it changes.
    pub fn mode(&self) -> Option<u32> {
        self.has(setattr::MODE).then_some(self.mode)
    }

    /// The new owner, if it changes.
    pub fn uid(&self) -> Option<u32> {
        self.has(setattr::UID).then_some(self.uid)
    }

    /// The new group, if it changes.
    pub fn gid(&self) -> Option<u32> {
        self.has(setattr::GID).then_some(self.gid)
    }

    /// The new size, if it changes.
    pub fn size(&self) -> Option<u64> {
        self.has(setattr::SIZE).then_some(self.size)
    }

    /// The new access time, if it changes.
    pub fn atime(&self) -> Option<SetTime> {
        self.has(setattr::ATIME).then(|| {
            if self.has(setattr::ATIME_SET) {
                SetTime::At(self.atime_sec, self.atime_nsec)
            } else {
                SetTime::Now
            }
        })
    }

    /// The new modification time, if it changes.
    pub fn mtime(&self) -> Option<SetTime> {
        self.has(setattr::MTIME).then(|| {
            if self.has(setattr::MTIME_SET) {
                SetTime::At(self.mtime_sec, self.mtime_nsec)
            } else {
                SetTime::Now
            }
        })
    }

    /// Whether the change time is to be updated.
    pub fn ctime(&self) -> bool {
        self.has(setattr::CTIME)
    }
}

/// The body of `Rstatfs` (`struct p9_rstatfs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatFs {
    /// File system type (`f_type`; Linux shows it to `statfs(2)` callers).
    pub fs_type: u32,
    /// Block size.
    pub bsize: u32,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// File system id.
    pub fsid: u64,
    /// Longest file name.
    pub namelen: u32,
}

/// One entry of `Rreaddir`: `qid[13] offset[8] type[1] name[s]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// The entry's qid.
    pub qid: Qid,
    /// The offset of the *next* entry, for the next `Treaddir`.
    pub offset: u64,
    /// `DT_*` type ([`dirent_type_of_mode`]).
    pub typ: u8,
    /// The name (`.` and `..` included; never empty, no `/` or NUL).
    pub name: &'a [u8],
}

impl DirEntry<'_> {
    /// The entry's size on the wire.
    pub fn wire_len(&self) -> usize {
        crate::QID_LEN + 8 + 1 + 2 + self.name.len()
    }
}

/// Flags of `Tunlinkat`.
pub mod unlinkat {
    /// Remove a directory (`P9_DOTL_AT_REMOVEDIR`, Linux's `AT_REMOVEDIR`).
    pub const REMOVEDIR: u32 = 0x200;
}

/// The lock type of `Tlock`, `Tgetlock` and `Rgetlock` (`P9_LOCK_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LockType {
    /// A shared (read) lock: `F_RDLCK`.
    Read = 0,
    /// An exclusive (write) lock: `F_WRLCK`.
    Write = 1,
    /// No lock: `F_UNLCK` (release; or "no conflict" in `Rgetlock`).
    Unlock = 2,
}

impl LockType {
    /// The type for a wire value.
    pub const fn from_u8(value: u8) -> Option<LockType> {
        match value {
            0 => Some(LockType::Read),
            1 => Some(LockType::Write),
            2 => Some(LockType::Unlock),
            _ => None,
        }
    }

    /// The `fcntl` lock type (`F_RDLCK`, `F_WRLCK`, `F_UNLCK`).
    pub fn to_fcntl(self) -> i32 {
        match self {
            LockType::Read => libc::F_RDLCK,
            LockType::Write => libc::F_WRLCK,
            LockType::Unlock => libc::F_UNLCK,
        }
    }

    /// The lock type for an `fcntl` lock type.
    pub fn from_fcntl(typ: i32) -> Option<LockType> {
        match typ {
            libc::F_RDLCK => Some(LockType::Read),
            libc::F_WRLCK => Some(LockType::Write),
            libc::F_UNLCK => Some(LockType::Unlock),
            _ => None,
        }
    }
}

/// Bits of [`Tlock::flags`](crate::Tlock::flags) (`P9_LOCK_FLAGS_*`).
pub mod lock_flags {
    /// Wait for the lock (`F_SETLKW`). The Linux client does not rely on
    /// the server blocking: it sends the request again while the reply is
    /// [`LockStatus::Blocked`](crate::LockStatus::Blocked).
    pub const BLOCK: u32 = 1;
    /// Reclaim a lock after a server restart (unused by Linux).
    pub const RECLAIM: u32 = 2;
}

/// The status of `Rlock` (`P9_LOCK_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LockStatus {
    /// The lock was taken (or released).
    Success = 0,
    /// Someone else holds a conflicting lock (Linux: `EAGAIN`, or waits
    /// and retries with [`lock_flags::BLOCK`]).
    Blocked = 1,
    /// The request failed (Linux: `ENOLCK`).
    Error = 2,
    /// The server is in its grace period (Linux: `ENOLCK`).
    Grace = 3,
}

impl LockStatus {
    /// The status for a wire value.
    pub const fn from_u8(value: u8) -> Option<LockStatus> {
        match value {
            0 => Some(LockStatus::Success),
            1 => Some(LockStatus::Blocked),
            2 => Some(LockStatus::Error),
            3 => Some(LockStatus::Grace),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qid_and_dirent_types_follow_the_mode() {
        assert_eq!(Qid::from_mode(libc::S_IFDIR | 0o755, 0, 7), Qid { typ: qid_type::DIR, version: 0, path: 7 });
        assert_eq!(qid_type_of_mode(libc::S_IFLNK | 0o777), qid_type::SYMLINK);
        for mode in [libc::S_IFREG, libc::S_IFIFO, libc::S_IFSOCK, libc::S_IFCHR, libc::S_IFBLK] {
            assert_eq!(qid_type_of_mode(mode | 0o644), qid_type::FILE);
        }
        assert_eq!(dirent_type_of_mode(libc::S_IFDIR | 0o755), libc::DT_DIR);
        assert_eq!(dirent_type_of_mode(libc::S_IFREG), libc::DT_REG);
        assert_eq!(dirent_type_of_mode(libc::S_IFLNK), libc::DT_LNK);
        assert_eq!(dirent_type_of_mode(libc::S_IFCHR), libc::DT_CHR);
        assert_eq!(dirent_type_of_mode(libc::S_IFBLK), libc::DT_BLK);
        assert_eq!(dirent_type_of_mode(libc::S_IFIFO), libc::DT_FIFO);
        assert_eq!(dirent_type_of_mode(libc::S_IFSOCK), libc::DT_SOCK);
    }

    #[test]
    fn setattr_accessors_follow_the_valid_bits() {
        let none = SetAttr { valid: 0, mode: 0o600, uid: u32::MAX, gid: u32::MAX, size: 9, ..SetAttr::default() };
        assert_eq!((none.mode(), none.uid(), none.gid(), none.size()), (None, None, None, None));
        assert_eq!((none.atime(), none.mtime(), none.ctime()), (None, None, false));

        let all = SetAttr {
            valid: setattr::KNOWN,
            mode: 0o600,
            uid: 1,
            gid: 2,
            size: 3,
            atime_sec: 4,
            atime_nsec: 5,
            mtime_sec: 6,
            mtime_nsec: 7,
        };
        assert_eq!((all.mode(), all.uid(), all.gid(), all.size()), (Some(0o600), Some(1), Some(2), Some(3)));
        assert_eq!((all.atime(), all.mtime(), all.ctime()), (Some(SetTime::At(4, 5)), Some(SetTime::At(6, 7)), true));

        let now = SetAttr { valid: setattr::ATIME | setattr::MTIME, atime_sec: 4, ..SetAttr::default() };
        assert_eq!((now.atime(), now.mtime()), (Some(SetTime::Now), Some(SetTime::Now)));
    }

    #[test]
    fn lock_values() {
        for t in [LockType::Read, LockType::Write, LockType::Unlock] {
            assert_eq!(LockType::from_u8(t as u8), Some(t));
            assert_eq!(LockType::from_fcntl(t.to_fcntl()), Some(t));
        }
        assert_eq!(LockType::from_u8(3), None);
        for s in [LockStatus::Success, LockStatus::Blocked, LockStatus::Error, LockStatus::Grace] {
            assert_eq!(LockStatus::from_u8(s as u8), Some(s));
        }
        assert_eq!(LockStatus::from_u8(4), None);
    }
}
