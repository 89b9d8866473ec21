//! Reply encoding: the out header, fixed reply structs, and directory listings.

use std::io;
use std::time::Duration;

use fuse_abi::{Dirent, DirentPlus, EntryOut, OutHeader};
use zerocopy::IntoBytes;

use crate::filesystem::{DirEntry, DirSink, Entry};
use crate::transport::Writer;

/// Size of the reply header.
pub const OUT_HEADER_SIZE: usize = core::mem::size_of::<OutHeader>();

/// Writes a complete reply of `parts` and returns its length.
pub fn reply_ok(w: &mut dyn Writer, unique: u64, parts: &[&[u8]]) -> io::Result<usize> {
    let body: usize = parts.iter().map(|p| p.len()).sum();
    let len = OUT_HEADER_SIZE + body;
    if len > w.available() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "reply does not fit the reply buffer"));
    }
    let hdr = OutHeader { len: len as u32, error: 0, unique };
    w.write_all(hdr.as_bytes())?;
    for p in parts {
        w.write_all(p)?;
    }
    Ok(len)
}

/// Writes an error reply (`errno` positive) and returns its length.
pub fn reply_error(w: &mut dyn Writer, unique: u64, errno: i32) -> io::Result<usize> {
    let hdr = OutHeader { len: OUT_HEADER_SIZE as u32, error: -errno, unique };
    if w.bytes_written() >= OUT_HEADER_SIZE {
        // A header was already reserved (READ): overwrite it in place.
        w.write_at(0, hdr.as_bytes())?;
    } else {
        w.write_all(hdr.as_bytes())?;
    }
    Ok(OUT_HEADER_SIZE)
}

/// Splits a timeout into the (seconds, nanoseconds) pair of the wire format.
pub fn timeout_parts(d: Duration) -> (u64, u32) {
    (d.as_secs(), d.subsec_nanos())
}

/// Encodes an [`Entry`] as the wire struct.
pub fn entry_out(e: &Entry) -> EntryOut {
    let (ev, evn) = timeout_parts(e.entry_timeout);
    let (av, avn) = timeout_parts(e.attr_timeout);
    EntryOut {
        nodeid: e.nodeid.0,
        generation: e.generation,
        entry_valid: ev,
        attr_valid: av,
        entry_valid_nsec: evn,
        attr_valid_nsec: avn,
        attr: e.attr,
    }
}

/// A READDIR / READDIRPLUS reply under construction, bounded by the size the
/// client asked for.
#[derive(Debug)]
pub struct DirBuffer {
    buf: Vec<u8>,
    max: usize,
    plus: bool,
}

impl DirBuffer {
    /// An empty listing of at most `max` bytes.
    pub fn new(max: usize, plus: bool) -> Self {
        DirBuffer { buf: Vec::with_capacity(max.min(128 * 1024)), max, plus }
    }

    /// The encoded entries.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    fn entry_size(&self, namelen: usize) -> usize {
        if self.plus {
            fuse_abi::direntplus_size(namelen)
        } else {
            fuse_abi::dirent_size(namelen)
        }
    }
}

impl DirSink for DirBuffer {
    fn is_plus(&self) -> bool {
        self.plus
    }

    fn has_room(&self, namelen: usize) -> bool {
        self.buf.len() + self.entry_size(namelen) <= self.max
    }

    fn remaining(&self) -> usize {
        self.max.saturating_sub(self.buf.len())
    }

    fn add(&mut self, entry: DirEntry<'_>, plus: Option<&Entry>) -> bool {
        let namelen = entry.name.len();
        if !self.has_room(namelen) || namelen > crate::args::NAME_MAX {
            return false;
        }
        let start = self.buf.len();
        let dirent = Dirent { ino: entry.ino, off: entry.offset, namelen: namelen as u32, typ: entry.typ };
        if self.plus {
            let entry_out = plus.map(entry_out).unwrap_or_default();
            self.buf.extend_from_slice(DirentPlus { entry_out, dirent }.as_bytes());
        } else {
            self.buf.extend_from_slice(dirent.as_bytes());
        }
        self.buf.extend_from_slice(entry.name);
        self.buf.resize(start + self.entry_size(namelen), 0);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::VecWriter;
    use zerocopy::FromBytes;

    #[test]
    fn ok_reply_has_header_and_body() {
        let mut w = VecWriter::new(64);
        let n = reply_ok(&mut w, 5, &[&[1, 2, 3], &[4]]).unwrap();
        assert_eq!(n, 20);
        let hdr = OutHeader::read_from_prefix(w.as_slice()).unwrap().0;
        assert_eq!(hdr, OutHeader { len: 20, error: 0, unique: 5 });
        assert_eq!(&w.as_slice()[16..], &[1, 2, 3, 4]);
    }

    #[test]
    fn reply_larger_than_buffer_is_refused_whole() {
        let mut w = VecWriter::new(19);
        assert!(reply_ok(&mut w, 5, &[&[0; 4]]).is_err());
        assert_eq!(w.bytes_written(), 0);
    }

    #[test]
    fn error_reply_is_negative_errno() {
        let mut w = VecWriter::new(64);
        assert_eq!(reply_error(&mut w, 9, libc::ENOENT).unwrap(), 16);
        let hdr = OutHeader::read_from_prefix(w.as_slice()).unwrap().0;
        assert_eq!(hdr, OutHeader { len: 16, error: -libc::ENOENT, unique: 9 });
    }

    #[test]
    fn error_reply_overwrites_a_reserved_header() {
        let mut w = VecWriter::new(64);
        w.write_all(&[0xff; 16]).unwrap();
        reply_error(&mut w, 3, libc::EIO).unwrap();
        let hdr = OutHeader::read_from_prefix(w.as_slice()).unwrap().0;
        assert_eq!(hdr, OutHeader { len: 16, error: -libc::EIO, unique: 3 });
    }

    #[test]
    fn dir_buffer_sizes_and_padding() {
        let mut d = DirBuffer::new(64, false);
        assert!(d.add(DirEntry { ino: 7, offset: 1, typ: 8, name: b"abc" }, None));
        assert_eq!(d.as_bytes().len(), 32);
        assert!(d.add(DirEntry { ino: 8, offset: 2, typ: 4, name: b"12345678" }, None));
        assert_eq!(d.as_bytes().len(), 64);
        assert!(!d.has_room(0));
        assert!(!d.add(DirEntry { ino: 9, offset: 3, typ: 4, name: b"x" }, None));
        assert_eq!(d.as_bytes().len(), 64);
        let first = Dirent::read_from_prefix(d.as_bytes()).unwrap().0;
        assert_eq!(first, Dirent { ino: 7, off: 1, namelen: 3, typ: 8 });
        assert_eq!(&d.as_bytes()[24..32], b"abc\0\0\0\0\0");
    }

    #[test]
    fn dir_buffer_plus_carries_entry() {
        let mut d = DirBuffer::new(4096, true);
        let e = Entry {
            nodeid: crate::NodeId(42),
            generation: 1,
            entry_timeout: Duration::from_millis(1500),
            ..Default::default()
        };
        assert!(d.add(DirEntry { ino: 7, offset: 1, typ: 8, name: b"f" }, Some(&e)));
        assert_eq!(d.as_bytes().len(), 160);
        let p = DirentPlus::read_from_prefix(d.as_bytes()).unwrap().0;
        assert_eq!(p.entry_out.nodeid, 42);
        assert_eq!((p.entry_out.entry_valid, p.entry_out.entry_valid_nsec), (1, 500_000_000));
        assert_eq!(p.dirent.namelen, 1);
    }
}
