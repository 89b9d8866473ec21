//! The decoder: frames, then the body of each message, every length
//! checked against the frame and the frame against msize. It never panics
//! and never allocates.

use thiserror::Error;

use crate::message::*;
use crate::name::{Name, NameError, WalkNames, WalkQids};
use crate::types::{DirEntry, Fid, LockStatus, LockType, Qid, SetAttr, Stat, StatFs, Tag};
use crate::{MsgType, HEADER_LEN, MAXWELEM};

/// The frame itself is unsound: its size field cannot be trusted, so the
/// stream has lost its framing and the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The size field is smaller than the 7-byte header.
    #[error("frame size {size} is smaller than the 7-byte header")]
    TooSmall {
        /// The size field.
        size: u32,
    },
    /// The size field is larger than msize.
    #[error("frame size {size} exceeds msize {msize}")]
    TooLarge {
        /// The size field.
        size: u32,
        /// The negotiated (or, before `Tversion`, the server's largest) msize.
        msize: u32,
    },
    /// The buffer given as one frame is not as long as its size field says
    /// (or shorter than the size field itself).
    #[error("frame size {size} but {len} bytes given")]
    SizeMismatch {
        /// The size field (0 when the buffer does not even hold it).
        size: u32,
        /// The buffer's length.
        len: usize,
    },
}

/// The frame was sound but its body is not a valid 9P2000.L request (or
/// reply): answer `Rlerror` with [`BodyError::errno`] on the frame's tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BodyError {
    /// A type number 9P does not define.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A 9P2000 or 9P2000.u message (`Topen`, `Tcreate`, `Tstat`, `Twstat`):
    /// not part of a 9P2000.L session.
    #[error("{0} is not a 9P2000.L message")]
    NotDotL(MsgType),
    /// A reply where a request was expected, `Tlerror` or `Terror` (or a
    /// request where a reply was expected).
    #[error("{0} is not expected here")]
    WrongDirection(MsgType),
    /// The body ends inside a field.
    #[error("the frame ends inside {field}")]
    Truncated {
        /// The field.
        field: &'static str,
    },
    /// A count says more bytes follow than the frame holds.
    #[error("{field} of {count} bytes but {left} left in the frame")]
    CountBeyondFrame {
        /// The field.
        field: &'static str,
        /// What it says.
        count: u32,
        /// Bytes left in the frame.
        left: usize,
    },
    /// Bytes after the last field.
    #[error("{count} bytes after the last field")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// More than [`MAXWELEM`] names in a `Twalk` (or qids in an `Rwalk`).
    #[error("{count} walk elements (at most 16)")]
    TooManyWalkElements {
        /// The count sent.
        count: u16,
    },
    /// A string with a NUL byte.
    #[error("{field} contains a NUL byte")]
    Nul {
        /// The field.
        field: &'static str,
    },
    /// A file name that is not one path component.
    #[error("{field}: {error}")]
    BadName {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        error: NameError,
    },
    /// A required string is empty (`Txattrcreate`'s name).
    #[error("{field} is empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A lock type other than 0, 1, 2.
    #[error("lock type {0}")]
    BadLockType(u8),
    /// A lock status other than 0 to 3.
    #[error("lock status {0}")]
    BadLockStatus(u8),
}

impl BodyError {
    /// The errno an `Rlerror` answers with: `EOPNOTSUPP` for a message this
    /// server does not speak, `EINVAL` for a bad name, string, walk or
    /// lock value, `EPROTO` for a body that does not parse.
    pub fn errno(&self) -> i32 {
        match self {
            BodyError::UnknownType(_) | BodyError::NotDotL(_) => libc::EOPNOTSUPP,
            BodyError::BadName { .. }
            | BodyError::Empty { .. }
            | BodyError::Nul { .. }
            | BodyError::TooManyWalkElements { .. }
            | BodyError::BadLockType(_)
            | BodyError::BadLockStatus(_) => libc::EINVAL,
            BodyError::WrongDirection(_)
            | BodyError::Truncated { .. }
            | BodyError::CountBeyondFrame { .. }
            | BodyError::TrailingBytes { .. } => libc::EPROTO,
        }
    }
}

/// Why a frame did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The frame is unsound: close the connection.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The body is: answer `Rlerror` on `tag`.
    #[error("message type {msg_type}, tag {tag}: {error}")]
    Body {
        /// The frame's tag.
        tag: Tag,
        /// The frame's type byte.
        msg_type: u8,
        /// What is wrong.
        error: BodyError,
    },
}

/// What a server does about a [`DecodeError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `Rlerror(errno)` with this tag and go on with the next frame.
    Reply {
        /// The request's tag.
        tag: Tag,
        /// The errno for `Rlerror`.
        errno: u32,
    },
    /// Close the connection: the stream cannot be framed any more.
    Close,
}

impl DecodeError {
    /// What to do about it.
    pub fn action(&self) -> Action {
        match self {
            DecodeError::Frame(_) => Action::Close,
            DecodeError::Body { tag, error, .. } => Action::Reply { tag: *tag, errno: error.errno() as u32 },
        }
    }
}

/// The length of the frame whose first four bytes are `prefix`, checked:
/// at least the header, at most `msize`. Call it before reading (or
/// allocating for) the rest of a frame.
pub fn frame_size(prefix: [u8; 4], msize: u32) -> Result<usize, FrameError> {
    let size = u32::from_le_bytes(prefix);
    if (size as usize) < HEADER_LEN {
        return Err(FrameError::TooSmall { size });
    }
    if size > msize {
        return Err(FrameError::TooLarge { size, msize });
    }
    Ok(size as usize)
}

/// The first frame of a buffer of received bytes: `Ok(None)` while it is
/// incomplete, `Ok(Some(frame))` once it is all there (the next frame
/// starts at `frame.len()`). An unsound size fails as soon as its four
/// bytes are in.
pub fn first_frame(buf: &[u8], msize: u32) -> Result<Option<&[u8]>, FrameError> {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let size = frame_size(*prefix, msize)?;
    Ok(buf.get(..size))
}

/// Decodes one request frame (exactly one: `frame.len()` must equal its
/// size field, which must be within `msize`).
pub fn decode_request(frame: &[u8], msize: u32) -> Result<(Tag, Request<'_>), DecodeError> {
    let (msg_type, tag, body) = header(frame, msize)?;
    let fail = |error| DecodeError::Body { tag, msg_type, error };
    let t = MsgType::from_u8(msg_type).ok_or(fail(BodyError::UnknownType(msg_type)))?;
    let mut c = Cursor { buf: body };
    let request = request_body(t, &mut c).map_err(fail)?;
    c.finish().map_err(fail)?;
    Ok((tag, request))
}

/// Decodes one reply frame (for a client, and for tests).
pub fn decode_reply(frame: &[u8], msize: u32) -> Result<(Tag, Reply<'_>), DecodeError> {
    let (msg_type, tag, body) = header(frame, msize)?;
    let fail = |error| DecodeError::Body { tag, msg_type, error };
    let t = MsgType::from_u8(msg_type).ok_or(fail(BodyError::UnknownType(msg_type)))?;
    let mut c = Cursor { buf: body };
    let reply = reply_body(t, &mut c).map_err(fail)?;
    c.finish().map_err(fail)?;
    Ok((tag, reply))
}

fn header(frame: &[u8], msize: u32) -> Result<(u8, Tag, &[u8]), FrameError> {
    let Some(prefix) = frame.first_chunk::<4>() else {
        return Err(FrameError::SizeMismatch { size: 0, len: frame.len() });
    };
    let size = frame_size(*prefix, msize)?;
    if size != frame.len() {
        return Err(FrameError::SizeMismatch { size: size as u32, len: frame.len() });
    }
    match frame {
        [_, _, _, _, msg_type, t0, t1, body @ ..] => Ok((*msg_type, Tag(u16::from_le_bytes([*t0, *t1])), body)),
        // frame_size checked that the frame holds the header.
        _ => Err(FrameError::TooSmall { size: size as u32 }),
    }
}

fn request_body<'a>(t: MsgType, c: &mut Cursor<'a>) -> Result<Request<'a>, BodyError> {
    use MsgType as M;
    Ok(match t {
        M::Tversion => Request::Version(Tversion { msize: c.u32("msize")?, version: c.string("version")? }),
        M::Tauth => Request::Auth(Tauth {
            afid: c.fid("afid")?,
            uname: c.string("uname")?,
            aname: c.string("aname")?,
            n_uname: c.u32("n_uname")?,
        }),
        M::Tattach => Request::Attach(Tattach {
            fid: c.fid("fid")?,
            afid: c.fid("afid")?,
            uname: c.string("uname")?,
            aname: c.string("aname")?,
            n_uname: c.u32("n_uname")?,
        }),
        M::Tflush => Request::Flush { oldtag: Tag(c.u16("oldtag")?) },
        M::Twalk => {
            let fid = c.fid("fid")?;
            let newfid = c.fid("newfid")?;
            let count = c.u16("nwname")?;
            if usize::from(count) > MAXWELEM {
                return Err(BodyError::TooManyWalkElements { count });
            }
            let mut names = WalkNames::new();
            for _ in 0..count {
                names.push(c.name("wname", Name::walk_element)?);
            }
            Request::Walk(Twalk { fid, newfid, names })
        }
        M::Tlopen => Request::Lopen(Tlopen { fid: c.fid("fid")?, flags: c.u32("flags")? }),
        M::Tlcreate => Request::Lcreate(Tlcreate {
            fid: c.fid("fid")?,
            name: c.name("name", Name::entry)?,
            flags: c.u32("flags")?,
            mode: c.u32("mode")?,
            gid: c.u32("gid")?,
        }),
        M::Tread => Request::Read(tread(c)?),
        M::Treaddir => Request::Readdir(tread(c)?),
        M::Twrite => {
            let fid = c.fid("fid")?;
            let offset = c.u64("offset")?;
            Request::Write(Twrite { fid, offset, data: c.counted("count")? })
        }
        M::Tclunk => Request::Clunk(c.fid("fid")?),
        M::Tremove => Request::Remove(c.fid("fid")?),
        M::Tgetattr => Request::Getattr(Tgetattr { fid: c.fid("fid")?, request_mask: c.u64("request_mask")? }),
        M::Tsetattr => Request::Setattr(Tsetattr {
            fid: c.fid("fid")?,
            attr: SetAttr {
                valid: c.u32("valid")?,
                mode: c.u32("mode")?,
                uid: c.u32("uid")?,
                gid: c.u32("gid")?,
                size: c.u64("size")?,
                atime_sec: c.u64("atime_sec")?,
                atime_nsec: c.u64("atime_nsec")?,
                mtime_sec: c.u64("mtime_sec")?,
                mtime_nsec: c.u64("mtime_nsec")?,
            },
        }),
        M::Tmkdir => Request::Mkdir(Tmkdir {
            dfid: c.fid("dfid")?,
            name: c.name("name", Name::entry)?,
            mode: c.u32("mode")?,
            gid: c.u32("gid")?,
        }),
        M::Tsymlink => Request::Symlink(Tsymlink {
            dfid: c.fid("fid")?,
            name: c.name("name", Name::entry)?,
            target: c.string("symtgt")?,
            gid: c.u32("gid")?,
        }),
        M::Tmknod => Request::Mknod(Tmknod {
            dfid: c.fid("dfid")?,
            name: c.name("name", Name::entry)?,
            mode: c.u32("mode")?,
            major: c.u32("major")?,
            minor: c.u32("minor")?,
            gid: c.u32("gid")?,
        }),
        M::Trename => {
            Request::Rename(Trename { fid: c.fid("fid")?, dfid: c.fid("dfid")?, name: c.name("name", Name::entry)? })
        }
        M::Trenameat => Request::Renameat(Trenameat {
            olddirfid: c.fid("olddirfid")?,
            oldname: c.name("oldname", Name::entry)?,
            newdirfid: c.fid("newdirfid")?,
            newname: c.name("newname", Name::entry)?,
        }),
        M::Tunlinkat => Request::Unlinkat(Tunlinkat {
            dirfid: c.fid("dirfid")?,
            name: c.name("name", Name::entry)?,
            flags: c.u32("flags")?,
        }),
        M::Tlink => {
            Request::Link(Tlink { dfid: c.fid("dfid")?, fid: c.fid("fid")?, name: c.name("name", Name::entry)? })
        }
        M::Treadlink => Request::Readlink(c.fid("fid")?),
        M::Tstatfs => Request::Statfs(c.fid("fid")?),
        M::Tfsync => Request::Fsync(Tfsync { fid: c.fid("fid")?, datasync: c.u32("datasync")? }),
        M::Txattrwalk => {
            Request::Xattrwalk(Txattrwalk { fid: c.fid("fid")?, newfid: c.fid("newfid")?, name: c.string("name")? })
        }
        M::Txattrcreate => {
            let fid = c.fid("fid")?;
            let name = c.string("name")?;
            if name.is_empty() {
                return Err(BodyError::Empty { field: "name" });
            }
            Request::Xattrcreate(Txattrcreate { fid, name, attr_size: c.u64("attr_size")?, flags: c.u32("flags")? })
        }
        M::Tlock => Request::Lock(Tlock {
            fid: c.fid("fid")?,
            lock_type: c.lock_type()?,
            flags: c.u32("flags")?,
            start: c.u64("start")?,
            length: c.u64("length")?,
            proc_id: c.u32("proc_id")?,
            client_id: c.string("client_id")?,
        }),
        M::Tgetlock => Request::Getlock(Tgetlock { fid: c.fid("fid")?, lock: getlock(c)? }),
        M::Topen | M::Tcreate | M::Tstat | M::Twstat => return Err(BodyError::NotDotL(t)),
        _ => return Err(BodyError::WrongDirection(t)),
    })
}

fn reply_body<'a>(t: MsgType, c: &mut Cursor<'a>) -> Result<Reply<'a>, BodyError> {
    use MsgType as M;
    Ok(match t {
        M::Rversion => Reply::Version(Rversion { msize: c.u32("msize")?, version: c.string("version")? }),
        M::Rauth => Reply::Auth(c.qid("aqid")?),
        M::Rattach => Reply::Attach(c.qid("qid")?),
        M::Rlerror => Reply::Lerror { ecode: c.u32("ecode")? },
        M::Rflush => Reply::Flush,
        M::Rwalk => {
            let count = c.u16("nwqid")?;
            if usize::from(count) > MAXWELEM {
                return Err(BodyError::TooManyWalkElements { count });
            }
            let mut qids = WalkQids::new();
            for _ in 0..count {
                qids.push(c.qid("wqid")?);
            }
            Reply::Walk(qids)
        }
        M::Rlopen => Reply::Lopen(Ropen { qid: c.qid("qid")?, iounit: c.u32("iounit")? }),
        M::Rlcreate => Reply::Lcreate(Ropen { qid: c.qid("qid")?, iounit: c.u32("iounit")? }),
        M::Rread => Reply::Read { data: c.counted("count")? },
        M::Rwrite => Reply::Write { count: c.u32("count")? },
        M::Rclunk => Reply::Clunk,
        M::Rremove => Reply::Remove,
        M::Rgetattr => Reply::Getattr(Stat {
            valid: c.u64("valid")?,
            qid: c.qid("qid")?,
            mode: c.u32("mode")?,
            uid: c.u32("uid")?,
            gid: c.u32("gid")?,
            nlink: c.u64("nlink")?,
            rdev: c.u64("rdev")?,
            size: c.u64("size")?,
            blksize: c.u64("blksize")?,
            blocks: c.u64("blocks")?,
            atime_sec: c.u64("atime_sec")?,
            atime_nsec: c.u64("atime_nsec")?,
            mtime_sec: c.u64("mtime_sec")?,
            mtime_nsec: c.u64("mtime_nsec")?,
            ctime_sec: c.u64("ctime_sec")?,
            ctime_nsec: c.u64("ctime_nsec")?,
            btime_sec: c.u64("btime_sec")?,
            btime_nsec: c.u64("btime_nsec")?,
            gen: c.u64("gen")?,
            data_version: c.u64("data_version")?,
        }),
        M::Rsetattr => Reply::Setattr,
        M::Rreaddir => {
            let readdir = Rreaddir { data: c.counted("count")? };
            for entry in readdir.entries() {
                entry?;
            }
            Reply::Readdir(readdir)
        }
        M::Rmkdir => Reply::Mkdir(c.qid("qid")?),
        M::Rsymlink => Reply::Symlink(c.qid("qid")?),
        M::Rmknod => Reply::Mknod(c.qid("qid")?),
        M::Rrename => Reply::Rename,
        M::Rrenameat => Reply::Renameat,
        M::Runlinkat => Reply::Unlinkat,
        M::Rlink => Reply::Link,
        M::Rreadlink => Reply::Readlink { target: c.string("target")? },
        M::Rstatfs => Reply::Statfs(StatFs {
            fs_type: c.u32("type")?,
            bsize: c.u32("bsize")?,
            blocks: c.u64("blocks")?,
            bfree: c.u64("bfree")?,
            bavail: c.u64("bavail")?,
            files: c.u64("files")?,
            ffree: c.u64("ffree")?,
            fsid: c.u64("fsid")?,
            namelen: c.u32("namelen")?,
        }),
        M::Rfsync => Reply::Fsync,
        M::Rxattrwalk => Reply::Xattrwalk { size: c.u64("size")? },
        M::Rxattrcreate => Reply::Xattrcreate,
        M::Rlock => {
            let status = c.u8("status")?;
            Reply::Lock(LockStatus::from_u8(status).ok_or(BodyError::BadLockStatus(status))?)
        }
        M::Rgetlock => Reply::Getlock(getlock(c)?),
        M::Ropen | M::Rcreate | M::Rstat | M::Rwstat | M::Rerror => return Err(BodyError::NotDotL(t)),
        _ => return Err(BodyError::WrongDirection(t)),
    })
}

fn tread(c: &mut Cursor<'_>) -> Result<Tread, BodyError> {
    Ok(Tread { fid: c.fid("fid")?, offset: c.u64("offset")?, count: c.u32("count")? })
}

fn getlock<'a>(c: &mut Cursor<'a>) -> Result<Getlock<'a>, BodyError> {
    Ok(Getlock {
        lock_type: c.lock_type()?,
        start: c.u64("start")?,
        length: c.u64("length")?,
        proc_id: c.u32("proc_id")?,
        client_id: c.string("client_id")?,
    })
}

/// Parses the first directory entry of `buf`; returns it and the rest.
pub(crate) fn dir_entry(buf: &[u8]) -> Result<(DirEntry<'_>, &[u8]), BodyError> {
    let mut c = Cursor { buf };
    let qid = c.qid("dirent qid")?;
    let offset = c.u64("dirent offset")?;
    let typ = c.u8("dirent type")?;
    let name = c.name("dirent name", Name::walk_element)?;
    Ok((DirEntry { qid, offset, typ, name: name.as_bytes() }, c.buf))
}

/// The unread part of a body.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], BodyError> {
        let (head, rest) = self.buf.split_at_checked(n).ok_or(BodyError::Truncated { field })?;
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], BodyError> {
        let (head, rest) = self.buf.split_first_chunk::<N>().ok_or(BodyError::Truncated { field })?;
        self.buf = rest;
        Ok(*head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, BodyError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, BodyError> {
        self.array(field).map(u16::from_le_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, BodyError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, BodyError> {
        self.array(field).map(u64::from_le_bytes)
    }

    fn fid(&mut self, field: &'static str) -> Result<Fid, BodyError> {
        self.u32(field).map(Fid)
    }

    fn qid(&mut self, field: &'static str) -> Result<Qid, BodyError> {
        Ok(Qid { typ: self.u8(field)?, version: self.u32(field)?, path: self.u64(field)? })
    }

    fn lock_type(&mut self) -> Result<LockType, BodyError> {
        let typ = self.u8("type")?;
        LockType::from_u8(typ).ok_or(BodyError::BadLockType(typ))
    }

    /// `count[4] data[count]`.
    fn counted(&mut self, field: &'static str) -> Result<&'a [u8], BodyError> {
        let count = self.u32(field)?;
        let left = self.buf.len();
        if count as usize > left {
            return Err(BodyError::CountBeyondFrame { field, count, left });
        }
        self.take(count as usize, field)
    }

    /// `len[2] bytes[len]`, without NUL.
    fn string(&mut self, field: &'static str) -> Result<&'a [u8], BodyError> {
        let len = self.u16(field)?;
        let left = self.buf.len();
        if usize::from(len) > left {
            return Err(BodyError::CountBeyondFrame { field, count: len.into(), left });
        }
        let s = self.take(len.into(), field)?;
        if s.contains(&0) {
            return Err(BodyError::Nul { field });
        }
        Ok(s)
    }

    fn name(
        &mut self,
        field: &'static str,
        check: fn(&'a [u8]) -> Result<Name<'a>, NameError>,
    ) -> Result<Name<'a>, BodyError> {
        let len = self.u16(field)?;
        let left = self.buf.len();
        if usize::from(len) > left {
            return Err(BodyError::CountBeyondFrame { field, count: len.into(), left });
        }
        check(self.take(len.into(), field)?).map_err(|error| BodyError::BadName { field, error })
    }

    fn finish(&self) -> Result<(), BodyError> {
        match self.buf.len() {
            0 => Ok(()),
            count => Err(BodyError::TrailingBytes { count }),
        }
    }
}
