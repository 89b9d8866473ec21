//! The typed body of every 9P2000.L request and reply.
//!
//! Struct names are the message names of the protocol (`Tlopen`,
//! `Rgetattr`, ...); field names those of Linux's `net/9p/client.c` and of
//! the 9P2000.L description. Requests borrow their strings and `Twrite`'s
//! data from the frame they were decoded from.

use crate::name::{Name, WalkNames, WalkQids};
use crate::types::{DirEntry, Fid, LockStatus, LockType, Qid, SetAttr, Stat, StatFs};
use crate::{BodyError, MsgType};

/// `Tversion`: `msize[4] version[s]`. Sent with tag [`NOTAG`](crate::Tag::NOTAG);
/// it ends every outstanding request and clunks every fid of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tversion<'a> {
    /// The largest message the client will send or accept.
    pub msize: u32,
    /// The protocol it speaks (`9P2000.L`); not checked by the decoder.
    pub version: &'a [u8],
}

/// `Tauth`: `afid[4] uname[s] aname[s] n_uname[4]` (the last field is the
/// 9P2000.u numeric user, which 9P2000.L keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tauth<'a> {
    /// The fid for the authentication channel.
    pub afid: Fid,
    /// The user name (Linux: `uname=`, default `nobody`).
    pub uname: &'a [u8],
    /// The tree to attach (Linux: `aname=`; may contain `/`).
    pub aname: &'a [u8],
    /// The numeric user (Linux: the uid with `access=user`; `u32::MAX` for none).
    pub n_uname: u32,
}

/// `Tattach`: `fid[4] afid[4] uname[s] aname[s] n_uname[4]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tattach<'a> {
    /// The new fid for the root of the tree.
    pub fid: Fid,
    /// The authentication fid ([`Fid::NOFID`] without authentication).
    pub afid: Fid,
    /// The user name.
    pub uname: &'a [u8],
    /// The tree to attach (may contain `/`).
    pub aname: &'a [u8],
    /// The numeric user (`u32::MAX` for none).
    pub n_uname: u32,
}

/// `Twalk`: `fid[4] newfid[4] nwname[2] nwname*(wname[s])`.
///
/// With no names it clones `fid` to `newfid`; `newfid` may equal `fid`
/// (then `fid` moves). The decoder refuses more than
/// [`MAXWELEM`](crate::MAXWELEM) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Twalk<'a> {
    /// Where the walk starts.
    pub fid: Fid,
    /// The fid the walk's end gets (only when every name was walked).
    pub newfid: Fid,
    /// The names, each one component (`..` included).
    pub names: WalkNames<'a>,
}

/// `Tlopen`: `fid[4] flags[4]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlopen {
    /// The fid to open.
    pub fid: Fid,
    /// [`open_flags`](crate::open_flags) (`P9_DOTL_*`).
    pub flags: u32,
}

/// `Tlcreate`: `fid[4] name[s] flags[4] mode[4] gid[4]`. On success `fid`
/// (a directory) becomes the new, open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlcreate<'a> {
    /// The directory; then the new file.
    pub fid: Fid,
    /// The new file's name.
    pub name: Name<'a>,
    /// [`open_flags`](crate::open_flags).
    pub flags: u32,
    /// Permission bits (the client applied its umask).
    pub mode: u32,
    /// The new file's group.
    pub gid: u32,
}

/// `Tread` and `Treaddir`: `fid[4] offset[8] count[4]`.
///
/// `count` is what the client asks for, not a length in this frame: clamp
/// it to [`max_read_count`](crate::max_read_count) before allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tread {
    /// The open fid.
    pub fid: Fid,
    /// Where to start (for `Treaddir`: a [`DirEntry::offset`] or 0).
    pub offset: u64,
    /// At most this many bytes.
    pub count: u32,
}

/// `Twrite`: `fid[4] offset[8] count[4] data[count]`. `data` is a slice of
/// the frame: write it from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Twrite<'a> {
    /// The open fid.
    pub fid: Fid,
    /// Where to write.
    pub offset: u64,
    /// The data (`count` is its length).
    pub data: &'a [u8],
}

/// `Tgetattr`: `fid[4] request_mask[8]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tgetattr {
    /// The file.
    pub fid: Fid,
    /// [`getattr`](crate::getattr) bits the client wants.
    pub request_mask: u64,
}

/// `Tsetattr`: `fid[4] valid[4] mode[4] uid[4] gid[4] size[8] atime_sec[8]
/// atime_nsec[8] mtime_sec[8] mtime_nsec[8]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tsetattr {
    /// The file.
    pub fid: Fid,
    /// What changes.
    pub attr: SetAttr,
}

/// `Tmkdir`: `dfid[4] name[s] mode[4] gid[4]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tmkdir<'a> {
    /// The parent directory.
    pub dfid: Fid,
    /// The new directory's name.
    pub name: Name<'a>,
    /// Permission bits.
    pub mode: u32,
    /// The new directory's group.
    pub gid: u32,
}

/// `Tsymlink`: `fid[4] name[s] symtgt[s] gid[4]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tsymlink<'a> {
    /// The parent directory.
    pub dfid: Fid,
    /// The link's name.
    pub name: Name<'a>,
    /// What the link points to (any path; no NUL).
    pub target: &'a [u8],
    /// The link's group.
    pub gid: u32,
}

/// `Tmknod`: `dfid[4] name[s] mode[4] major[4] minor[4] gid[4]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tmknod<'a> {
    /// The parent directory.
    pub dfid: Fid,
    /// The node's name.
    pub name: Name<'a>,
    /// Type (`S_IF*`) and permission bits.
    pub mode: u32,
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// The node's group.
    pub gid: u32,
}

/// `Trename`: `fid[4] dfid[4] name[s]`: move `fid`'s file into `dfid` as `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trename<'a> {
    /// The file to move.
    pub fid: Fid,
    /// The directory it goes to.
    pub dfid: Fid,
    /// Its new name.
    pub name: Name<'a>,
}

/// `Trenameat`: `olddirfid[4] oldname[s] newdirfid[4] newname[s]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trenameat<'a> {
    /// The directory the entry is in.
    pub olddirfid: Fid,
    /// The entry's name.
    pub oldname: Name<'a>,
    /// The directory it goes to.
    pub newdirfid: Fid,
    /// Its new name.
    pub newname: Name<'a>,
}

/// `Tunlinkat`: `dirfid[4] name[s] flags[4]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunlinkat<'a> {
    /// The directory.
    pub dirfid: Fid,
    /// The entry to remove.
    pub name: Name<'a>,
    /// [`unlinkat::REMOVEDIR`](crate::unlinkat::REMOVEDIR) for a directory.
    pub flags: u32,
}

/// `Tlink`: `dfid[4] fid[4] name[s]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlink<'a> {
    /// The directory the link goes in.
    pub dfid: Fid,
    /// The file to link.
    pub fid: Fid,
    /// The link's name.
    pub name: Name<'a>,
}

/// `Tfsync`: `fid[4] datasync[4]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tfsync {
    /// The open file.
    pub fid: Fid,
    /// Non-zero for `fdatasync`.
    pub datasync: u32,
}

/// `Txattrwalk`: `fid[4] newfid[4] name[s]`: open attribute `name` of
/// `fid`'s file (all names, NUL-separated, for an empty `name`) on `newfid`
/// for `Tread`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Txattrwalk<'a> {
    /// The file.
    pub fid: Fid,
    /// The fid to read the value from.
    pub newfid: Fid,
    /// The attribute (empty: the list of names; no NUL).
    pub name: &'a [u8],
}

/// `Txattrcreate`: `fid[4] name[s] attr_size[8] flags[4]`: `fid` becomes
/// the attribute; `Twrite`s fill the value and `Tclunk` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Txattrcreate<'a> {
    /// The file; then the attribute being written.
    pub fid: Fid,
    /// The attribute (not empty; no NUL).
    pub name: &'a [u8],
    /// The size of the whole value (bound it before buffering).
    pub attr_size: u64,
    /// `setxattr(2)` flags (`XATTR_CREATE`, `XATTR_REPLACE`).
    pub flags: u32,
}

/// `Tlock`: `fid[4] type[1] flags[4] start[8] length[8] proc_id[4] client_id[s]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlock<'a> {
    /// The open file.
    pub fid: Fid,
    /// Take a read or write lock, or release.
    pub lock_type: LockType,
    /// [`lock_flags`](crate::lock_flags).
    pub flags: u32,
    /// First byte.
    pub start: u64,
    /// Number of bytes (0: to the end of the file).
    pub length: u64,
    /// The locking process in the client.
    pub proc_id: u32,
    /// The client's name (Linux: its host name).
    pub client_id: &'a [u8],
}

/// `Tgetlock` and `Rgetlock`: `type[1] start[8] length[8] proc_id[4]
/// client_id[s]`, after the fid in `Tgetlock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Getlock<'a> {
    /// In `Tgetlock` the lock to test; in `Rgetlock` the conflicting
    /// lock's type, or [`LockType::Unlock`] for none.
    pub lock_type: LockType,
    /// First byte.
    pub start: u64,
    /// Number of bytes (0: to the end of the file).
    pub length: u64,
    /// The process (the conflicting lock's holder in `Rgetlock`).
    pub proc_id: u32,
    /// The client's name.
    pub client_id: &'a [u8],
}

/// `Tgetlock`: `fid[4]` and a [`Getlock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tgetlock<'a> {
    /// The open file.
    pub fid: Fid,
    /// The lock to test.
    pub lock: Getlock<'a>,
}

/// A request a 9P2000.L client sends.
///
/// `Walk` makes it a few hundred bytes (its names live inline, so decoding
/// never allocates); it is a short-lived value on the stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// `Tversion`.
    Version(Tversion<'a>),
    /// `Tauth` (a server without authentication answers `Rlerror`).
    Auth(Tauth<'a>),
    /// `Tattach`.
    Attach(Tattach<'a>),
    /// `Tflush`: `oldtag[2]`.
    Flush {
        /// The tag of the request to abort.
        oldtag: crate::Tag,
    },
    /// `Twalk`.
    Walk(Twalk<'a>),
    /// `Tlopen`.
    Lopen(Tlopen),
    /// `Tlcreate`.
    Lcreate(Tlcreate<'a>),
    /// `Tread`.
    Read(Tread),
    /// `Twrite`.
    Write(Twrite<'a>),
    /// `Tclunk`: `fid[4]`.
    Clunk(Fid),
    /// `Tremove`: `fid[4]` (the fid is clunked even if the removal fails).
    Remove(Fid),
    /// `Tgetattr`.
    Getattr(Tgetattr),
    /// `Tsetattr`.
    Setattr(Tsetattr),
    /// `Treaddir` (same layout as `Tread`).
    Readdir(Tread),
    /// `Tmkdir`.
    Mkdir(Tmkdir<'a>),
    /// `Tsymlink`.
    Symlink(Tsymlink<'a>),
    /// `Tmknod`.
    Mknod(Tmknod<'a>),
    /// `Trename`.
    Rename(Trename<'a>),
    /// `Trenameat`.
    Renameat(Trenameat<'a>),
    /// `Tunlinkat`.
    Unlinkat(Tunlinkat<'a>),
    /// `Tlink`.
    Link(Tlink<'a>),
    /// `Treadlink`: `fid[4]`.
    Readlink(Fid),
    /// `Tstatfs`: `fid[4]`.
    Statfs(Fid),
    /// `Tfsync`.
    Fsync(Tfsync),
    /// `Txattrwalk`.
    Xattrwalk(Txattrwalk<'a>),
    /// `Txattrcreate`.
    Xattrcreate(Txattrcreate<'a>),
    /// `Tlock`.
    Lock(Tlock<'a>),
    /// `Tgetlock`.
    Getlock(Tgetlock<'a>),
}

impl Request<'_> {
    /// The message type on the wire.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Request::Version(_) => MsgType::Tversion,
            Request::Auth(_) => MsgType::Tauth,
            Request::Attach(_) => MsgType::Tattach,
            Request::Flush { .. } => MsgType::Tflush,
            Request::Walk(_) => MsgType::Twalk,
            Request::Lopen(_) => MsgType::Tlopen,
            Request::Lcreate(_) => MsgType::Tlcreate,
            Request::Read(_) => MsgType::Tread,
            Request::Write(_) => MsgType::Twrite,
            Request::Clunk(_) => MsgType::Tclunk,
            Request::Remove(_) => MsgType::Tremove,
            Request::Getattr(_) => MsgType::Tgetattr,
            Request::Setattr(_) => MsgType::Tsetattr,
            Request::Readdir(_) => MsgType::Treaddir,
            Request::Mkdir(_) => MsgType::Tmkdir,
            Request::Symlink(_) => MsgType::Tsymlink,
            Request::Mknod(_) => MsgType::Tmknod,
            Request::Rename(_) => MsgType::Trename,
            Request::Renameat(_) => MsgType::Trenameat,
            Request::Unlinkat(_) => MsgType::Tunlinkat,
            Request::Link(_) => MsgType::Tlink,
            Request::Readlink(_) => MsgType::Treadlink,
            Request::Statfs(_) => MsgType::Tstatfs,
            Request::Fsync(_) => MsgType::Tfsync,
            Request::Xattrwalk(_) => MsgType::Txattrwalk,
            Request::Xattrcreate(_) => MsgType::Txattrcreate,
            Request::Lock(_) => MsgType::Tlock,
            Request::Getlock(_) => MsgType::Tgetlock,
        }
    }
}

/// `Rversion`: `msize[4] version[s]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rversion<'a> {
    /// The msize agreed ([`negotiate_msize`](crate::negotiate_msize)).
    pub msize: u32,
    /// `9P2000.L` or `unknown` ([`negotiate_version`](crate::negotiate_version)).
    pub version: &'a [u8],
}

/// `Rlopen` and `Rlcreate`: `qid[13] iounit[4]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ropen {
    /// The open file's qid.
    pub qid: Qid,
    /// The most data per `Tread`/`Twrite` (0: `msize - IOHDRSZ`).
    pub iounit: u32,
}

/// The data of `Rreaddir`: `count[4] data[count]`, a run of [`DirEntry`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rreaddir<'a> {
    /// The entries as laid out on the wire ([`DirentWriter`](crate::DirentWriter) builds them).
    pub data: &'a [u8],
}

impl<'a> Rreaddir<'a> {
    /// The entries; an entry that does not parse ends the iteration with
    /// an error.
    pub fn entries(&self) -> DirEntries<'a> {
        DirEntries { rest: self.data }
    }
}

/// The iterator of [`Rreaddir::entries`].
#[derive(Debug, Clone)]
pub struct DirEntries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for DirEntries<'a> {
    type Item = Result<DirEntry<'a>, BodyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = crate::decode::dir_entry(self.rest);
        match item {
            Ok((entry, rest)) => {
                self.rest = rest;
                Some(Ok(entry))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// A reply of a 9P2000.L server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `Rversion`.
    Version(Rversion<'a>),
    /// `Rauth`: `aqid[13]`.
    Auth(Qid),
    /// `Rattach`: `qid[13]`.
    Attach(Qid),
    /// `Rlerror`: `ecode[4]`, a Linux errno (positive).
    Lerror {
        /// The errno.
        ecode: u32,
    },
    /// `Rflush`.
    Flush,
    /// `Rwalk`: `nwqid[2] nwqid*(qid[13])`: one qid per name walked (fewer
    /// than the names when the walk stopped; at least one, else `Rlerror`).
    Walk(WalkQids),
    /// `Rlopen`.
    Lopen(Ropen),
    /// `Rlcreate`.
    Lcreate(Ropen),
    /// `Rread`: `count[4] data[count]`.
    Read {
        /// The data read.
        data: &'a [u8],
    },
    /// `Rwrite`: `count[4]`.
    Write {
        /// The bytes written.
        count: u32,
    },
    /// `Rclunk`.
    Clunk,
    /// `Rremove`.
    Remove,
    /// `Rgetattr`: `valid[8] qid[13] mode[4] uid[4] gid[4] nlink[8] rdev[8]
    /// size[8] blksize[8] blocks[8]` and the eight time fields, `gen[8]`,
    /// `data_version[8]`.
    Getattr(Stat),
    /// `Rsetattr`.
    Setattr,
    /// `Rreaddir`.
    Readdir(Rreaddir<'a>),
    /// `Rmkdir`: `qid[13]`.
    Mkdir(Qid),
    /// `Rsymlink`: `qid[13]`.
    Symlink(Qid),
    /// `Rmknod`: `qid[13]`.
    Mknod(Qid),
    /// `Rrename`.
    Rename,
    /// `Rrenameat`.
    Renameat,
    /// `Runlinkat`.
    Unlinkat,
    /// `Rlink`.
    Link,
    /// `Rreadlink`: `target[s]`.
    Readlink {
        /// The link's target.
        target: &'a [u8],
    },
    /// `Rstatfs`: `type[4] bsize[4] blocks[8] bfree[8] bavail[8] files[8]
    /// ffree[8] fsid[8] namelen[4]`.
    Statfs(StatFs),
    /// `Rfsync`.
    Fsync,
    /// `Rxattrwalk`: `size[8]`.
    Xattrwalk {
        /// The size of the value (or of the list of names).
        size: u64,
    },
    /// `Rxattrcreate`.
    Xattrcreate,
    /// `Rlock`: `status[1]`.
    Lock(LockStatus),
    /// `Rgetlock`.
    Getlock(Getlock<'a>),
}

impl Reply<'_> {
    /// The message type on the wire.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Reply::Version(_) => MsgType::Rversion,
            Reply::Auth(_) => MsgType::Rauth,
            Reply::Attach(_) => MsgType::Rattach,
            Reply::Lerror { .. } => MsgType::Rlerror,
            Reply::Flush => MsgType::Rflush,
            Reply::Walk(_) => MsgType::Rwalk,
            Reply::Lopen(_) => MsgType::Rlopen,
            Reply::Lcreate(_) => MsgType::Rlcreate,
            Reply::Read { .. } => MsgType::Rread,
            Reply::Write { .. } => MsgType::Rwrite,
            Reply::Clunk => MsgType::Rclunk,
            Reply::Remove => MsgType::Rremove,
            Reply::Getattr(_) => MsgType::Rgetattr,
            Reply::Setattr => MsgType::Rsetattr,
            Reply::Readdir(_) => MsgType::Rreaddir,
            Reply::Mkdir(_) => MsgType::Rmkdir,
            Reply::Symlink(_) => MsgType::Rsymlink,
            Reply::Mknod(_) => MsgType::Rmknod,
            Reply::Rename => MsgType::Rrename,
            Reply::Renameat => MsgType::Rrenameat,
            Reply::Unlinkat => MsgType::Runlinkat,
            Reply::Link => MsgType::Rlink,
            Reply::Readlink { .. } => MsgType::Rreadlink,
            Reply::Statfs(_) => MsgType::Rstatfs,
            Reply::Fsync => MsgType::Rfsync,
            Reply::Xattrwalk { .. } => MsgType::Rxattrwalk,
            Reply::Xattrcreate => MsgType::Rxattrcreate,
            Reply::Lock(_) => MsgType::Rlock,
            Reply::Getlock(_) => MsgType::Rgetlock,
        }
    }

    /// An `Rlerror` for an I/O error: its raw OS errno, or `EIO` when it
    /// has none.
    pub fn from_io_error(error: &std::io::Error) -> Reply<'static> {
        let errno = error.raw_os_error().filter(|&e| e > 0).unwrap_or(libc::EIO);
        Reply::Lerror { ecode: errno as u32 }
    }
}
