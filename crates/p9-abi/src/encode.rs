//! The encoder: replies (and requests, for tests and clients) into a
//! `Vec<u8>`, and the headers of the bulk replies for vectored I/O.

use thiserror::Error;

use crate::message::*;
use crate::types::{DirEntry, Fid, Qid, Tag};
use crate::{max_read_count, MsgType, HEADER_LEN, MAXWELEM};

/// Why a message cannot be encoded. Nothing is appended when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A string longer than 65535 bytes.
    #[error("{field} of {len} bytes does not fit a 9P string")]
    StringTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The message would be larger than msize.
    #[error("a {size}-byte message exceeds msize {msize}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The msize.
        msize: u32,
    },
}

/// The length of an `Rread` header: `size[4] type[1] tag[2] count[4]`.
pub const RREAD_HEADER_LEN: usize = HEADER_LEN + 4;

/// The length of a `Twrite` header: `size[4] type[1] tag[2] fid[4] offset[8] count[4]`.
pub const TWRITE_HEADER_LEN: usize = HEADER_LEN + 4 + 8 + 4;

/// The header of an `Rread` carrying `count` bytes, to send before them
/// (for example with `writev`), so the data is never copied into a frame.
/// The caller keeps `count` within [`max_read_count`] and the `Tread`'s count.
pub fn rread_header(tag: Tag, count: u32) -> [u8; RREAD_HEADER_LEN] {
    let mut h = [0; RREAD_HEADER_LEN];
    put_rread_header(&mut h, tag, count);
    h
}

/// Writes an `Rread` header into `header`: for a buffer whose data was
/// read in place after its first [`RREAD_HEADER_LEN`] bytes.
pub fn put_rread_header(header: &mut [u8; RREAD_HEADER_LEN], tag: Tag, count: u32) {
    let size = (RREAD_HEADER_LEN as u32).saturating_add(count);
    header[0..4].copy_from_slice(&size.to_le_bytes());
    header[4] = MsgType::Rread as u8;
    header[5..7].copy_from_slice(&tag.0.to_le_bytes());
    header[7..11].copy_from_slice(&count.to_le_bytes());
}

/// The header of a `Twrite` of `count` bytes at `offset` (for a client that
/// sends the data after it without copying).
pub fn twrite_header(tag: Tag, fid: Fid, offset: u64, count: u32) -> [u8; TWRITE_HEADER_LEN] {
    let mut h = [0; TWRITE_HEADER_LEN];
    let size = (TWRITE_HEADER_LEN as u32).saturating_add(count);
    h[0..4].copy_from_slice(&size.to_le_bytes());
    h[4] = MsgType::Twrite as u8;
    h[5..7].copy_from_slice(&tag.0.to_le_bytes());
    h[7..11].copy_from_slice(&fid.0.to_le_bytes());
    h[11..19].copy_from_slice(&offset.to_le_bytes());
    h[19..23].copy_from_slice(&count.to_le_bytes());
    h
}

impl Request<'_> {
    /// Appends this request as one frame with `tag` to `out`; fails (and
    /// appends nothing) when it would exceed `msize`.
    pub fn encode(&self, tag: Tag, msize: u32, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        frame(out, self.msg_type(), tag, msize, |w| {
            match self {
                Request::Version(m) => {
                    w.u32(m.msize);
                    w.string("version", m.version)?;
                }
                Request::Auth(m) => {
                    w.fid(m.afid);
                    w.string("uname", m.uname)?;
                    w.string("aname", m.aname)?;
                    w.u32(m.n_uname);
                }
                Request::Attach(m) => {
                    w.fid(m.fid);
                    w.fid(m.afid);
                    w.string("uname", m.uname)?;
                    w.string("aname", m.aname)?;
                    w.u32(m.n_uname);
                }
                Request::Flush { oldtag } => w.u16(oldtag.0),
                Request::Walk(m) => {
                    w.fid(m.fid);
                    w.fid(m.newfid);
                    // A WalkList holds at most MAXWELEM (16) names.
                    w.u16(m.names.len() as u16);
                    for name in m.names.as_slice() {
                        w.string("wname", name.as_bytes())?;
                    }
                }
                Request::Lopen(m) => {
                    w.fid(m.fid);
                    w.u32(m.flags);
                }
                Request::Lcreate(m) => {
                    w.fid(m.fid);
                    w.string("name", m.name.as_bytes())?;
                    w.u32(m.flags);
                    w.u32(m.mode);
                    w.u32(m.gid);
                }
                Request::Read(m) | Request::Readdir(m) => {
                    w.fid(m.fid);
                    w.u64(m.offset);
                    w.u32(m.count);
                }
                Request::Write(m) => {
                    w.fid(m.fid);
                    w.u64(m.offset);
                    w.counted(m.data);
                }
                Request::Clunk(fid) | Request::Remove(fid) | Request::Readlink(fid) | Request::Statfs(fid) => {
                    w.fid(*fid)
                }
                Request::Getattr(m) => {
                    w.fid(m.fid);
                    w.u64(m.request_mask);
                }
                Request::Setattr(m) => {
                    let a = &m.attr;
                    w.fid(m.fid);
                    w.u32(a.valid);
                    w.u32(a.mode);
                    w.u32(a.uid);
                    w.u32(a.gid);
                    w.u64(a.size);
                    w.u64(a.atime_sec);
                    w.u64(a.atime_nsec);
                    w.u64(a.mtime_sec);
                    w.u64(a.mtime_nsec);
                }
                Request::Mkdir(m) => {
                    w.fid(m.dfid);
                    w.string("name", m.name.as_bytes())?;
                    w.u32(m.mode);
                    w.u32(m.gid);
                }
                Request::Symlink(m) => {
                    w.fid(m.dfid);
                    w.string("name", m.name.as_bytes())?;
                    w.string("symtgt", m.target)?;
                    w.u32(m.gid);
                }
                Request::Mknod(m) => {
                    w.fid(m.dfid);
                    w.string("name", m.name.as_bytes())?;
                    w.u32(m.mode);
                    w.u32(m.major);
                    w.u32(m.minor);
                    w.u32(m.gid);
                }
                Request::Rename(m) => {
                    w.fid(m.fid);
                    w.fid(m.dfid);
                    w.string("name", m.name.as_bytes())?;
                }
                Request::Renameat(m) => {
                    w.fid(m.olddirfid);
                    w.string("oldname", m.oldname.as_bytes())?;
                    w.fid(m.newdirfid);
                    w.string("newname", m.newname.as_bytes())?;
                }
                Request::Unlinkat(m) => {
                    w.fid(m.dirfid);
                    w.string("name", m.name.as_bytes())?;
                    w.u32(m.flags);
                }
                Request::Link(m) => {
                    w.fid(m.dfid);
                    w.fid(m.fid);
                    w.string("name", m.name.as_bytes())?;
                }
                Request::Fsync(m) => {
                    w.fid(m.fid);
                    w.u32(m.datasync);
                }
                Request::Xattrwalk(m) => {
                    w.fid(m.fid);
                    w.fid(m.newfid);
                    w.string("name", m.name)?;
                }
                Request::Xattrcreate(m) => {
                    w.fid(m.fid);
                    w.string("name", m.name)?;
                    w.u64(m.attr_size);
                    w.u32(m.flags);
                }
                Request::Lock(m) => {
                    w.fid(m.fid);
                    w.u8(m.lock_type as u8);
                    w.u32(m.flags);
                    w.u64(m.start);
                    w.u64(m.length);
                    w.u32(m.proc_id);
                    w.string("client_id", m.client_id)?;
                }
                Request::Getlock(m) => {
                    w.fid(m.fid);
                    w.getlock(&m.lock)?;
                }
            }
            Ok(())
        })
    }
}

impl Reply<'_> {
    /// Appends this reply as one frame with `tag` to `out`; fails (and
    /// appends nothing) when it would exceed `msize`.
    pub fn encode(&self, tag: Tag, msize: u32, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        frame(out, self.msg_type(), tag, msize, |w| {
            match self {
                Reply::Version(m) => {
                    w.u32(m.msize);
                    w.string("version", m.version)?;
                }
                Reply::Auth(qid) | Reply::Attach(qid) | Reply::Mkdir(qid) | Reply::Symlink(qid) | Reply::Mknod(qid) => {
                    w.qid(qid)
                }
                Reply::Lerror { ecode } => w.u32(*ecode),
                Reply::Flush
                | Reply::Clunk
                | Reply::Remove
                | Reply::Setattr
                | Reply::Rename
                | Reply::Renameat
                | Reply::Unlinkat
                | Reply::Link
                | Reply::Fsync
                | Reply::Xattrcreate => {}
                Reply::Walk(qids) => {
                    // A WalkList holds at most MAXWELEM (16) qids.
                    debug_assert!(qids.len() <= MAXWELEM);
                    w.u16(qids.len() as u16);
                    for qid in qids.as_slice() {
                        w.qid(qid);
                    }
                }
                Reply::Lopen(m) | Reply::Lcreate(m) => {
                    w.qid(&m.qid);
                    w.u32(m.iounit);
                }
                Reply::Read { data } => w.counted(data),
                Reply::Write { count } => w.u32(*count),
                Reply::Getattr(s) => {
                    w.u64(s.valid);
                    w.qid(&s.qid);
                    w.u32(s.mode);
                    w.u32(s.uid);
                    w.u32(s.gid);
                    for v in [
                        s.nlink,
                        s.rdev,
                        s.size,
                        s.blksize,
                        s.blocks,
                        s.atime_sec,
                        s.atime_nsec,
                        s.mtime_sec,
                        s.mtime_nsec,
                        s.ctime_sec,
                        s.ctime_nsec,
                        s.btime_sec,
                        s.btime_nsec,
                        s.gen,
                        s.data_version,
                    ] {
                        w.u64(v);
                    }
                }
                Reply::Readdir(m) => w.counted(m.data),
                Reply::Readlink { target } => w.string("target", target)?,
                Reply::Statfs(s) => {
                    w.u32(s.fs_type);
                    w.u32(s.bsize);
                    for v in [s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.fsid] {
                        w.u64(v);
                    }
                    w.u32(s.namelen);
                }
                Reply::Xattrwalk { size } => w.u64(*size),
                Reply::Lock(status) => w.u8(*status as u8),
                Reply::Getlock(m) => w.getlock(m)?,
            }
            Ok(())
        })
    }
}

/// Appends `size[4] type[1] tag[2]` and the body `f` writes, then fills in
/// the size; on any error truncates `out` back.
fn frame(
    out: &mut Vec<u8>,
    msg_type: MsgType,
    tag: Tag,
    msize: u32,
    f: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(msg_type as u8);
    out.extend_from_slice(&tag.0.to_le_bytes());
    let mut w = Writer { out: &mut *out };
    let result = f(&mut w).and_then(|()| {
        let size = out.len() - start;
        match u32::try_from(size) {
            Ok(s) if s <= msize => Ok(s),
            _ => Err(EncodeError::TooLarge { size, msize }),
        }
    });
    match result {
        Ok(size) => {
            out[start..start + 4].copy_from_slice(&size.to_le_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

struct Writer<'v> {
    out: &'v mut Vec<u8>,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn fid(&mut self, fid: Fid) {
        self.u32(fid.0);
    }

    fn qid(&mut self, qid: &Qid) {
        self.u8(qid.typ);
        self.u32(qid.version);
        self.u64(qid.path);
    }

    fn string(&mut self, field: &'static str, s: &[u8]) -> Result<(), EncodeError> {
        let len = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong { field, len: s.len() })?;
        self.u16(len);
        self.out.extend_from_slice(s);
        Ok(())
    }

    /// `count[4] data[count]`; a count beyond `u32` makes the frame too
    /// large for any msize, which `frame` reports.
    fn counted(&mut self, data: &[u8]) {
        self.u32(u32::try_from(data.len()).unwrap_or(u32::MAX));
        self.out.extend_from_slice(data);
    }

    fn getlock(&mut self, m: &Getlock<'_>) -> Result<(), EncodeError> {
        self.u8(m.lock_type as u8);
        self.u64(m.start);
        self.u64(m.length);
        self.u32(m.proc_id);
        self.string("client_id", m.client_id)
    }
}

/// Builds an `Rreaddir` frame in place: entries are laid out after room
/// for the header, which [`DirentWriter::finish`] fills in. It mirrors
/// `avpfs_server::DirSink` (`has_room`, `add`).
#[derive(Debug)]
pub struct DirentWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl DirentWriter {
    /// A reply for a `Treaddir` asking for `count` bytes under `msize`: the
    /// entries take at most `min(count, max_read_count(msize))` bytes.
    pub fn new(count: u32, msize: u32) -> DirentWriter {
        let limit = count.min(max_read_count(msize)) as usize;
        let mut buf = Vec::with_capacity(RREAD_HEADER_LEN + limit.min(64 * 1024));
        buf.resize(RREAD_HEADER_LEN, 0);
        DirentWriter { buf, limit }
    }

    /// Bytes of entries so far.
    pub fn len(&self) -> usize {
        self.buf.len() - RREAD_HEADER_LEN
    }

    /// True when no entry was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes left for entries.
    pub fn remaining(&self) -> usize {
        self.limit - self.len()
    }

    /// Whether an entry with a name of `name_len` bytes still fits.
    pub fn has_room(&self, name_len: usize) -> bool {
        QID_AND_FIXED + name_len <= self.remaining()
    }

    /// Adds an entry; returns `false` and adds nothing when it does not fit.
    /// Names longer than 65535 bytes never fit.
    pub fn add(&mut self, entry: &DirEntry<'_>) -> bool {
        let Ok(len) = u16::try_from(entry.name.len()) else {
            return false;
        };
        if !self.has_room(entry.name.len()) {
            return false;
        }
        let mut w = Writer { out: &mut self.buf };
        w.qid(&entry.qid);
        w.u64(entry.offset);
        w.u8(entry.typ);
        w.u16(len);
        w.out.extend_from_slice(entry.name);
        true
    }

    /// The whole `Rreaddir` frame for `tag`.
    pub fn finish(mut self, tag: Tag) -> Vec<u8> {
        // len() <= limit <= max_read_count(msize) < u32::MAX.
        let count = self.len() as u32;
        let mut header = [0; RREAD_HEADER_LEN];
        put_rread_header(&mut header, tag, count);
        header[4] = MsgType::Rreaddir as u8;
        self.buf[..RREAD_HEADER_LEN].copy_from_slice(&header);
        self.buf
    }
}

/// An entry's size without its name: `qid[13] offset[8] type[1] len[2]`.
const QID_AND_FIXED: usize = crate::QID_LEN + 8 + 1 + 2;
