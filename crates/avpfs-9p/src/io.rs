//! Adapters from the `FileSystem` trait's I/O interfaces to 9P frames.
//!
//! - [`ReplyData`]: `Tread`'s data goes from the host file straight into
//!   the reply buffer, after room for the `Rread` header: the only copy
//!   besides the socket's own.
//! - `Twrite`'s data is written from the request frame itself through
//!   `avpfs_server::SliceReader`.
//! - [`DirentSink`]: `readdir` entries are laid out as `Rreaddir` entries.

use std::io;
use std::os::fd::BorrowedFd;

use avpfs_server::{DirEntry, DirSink, Entry, ZeroCopyWriter};
use avpfs_sys::io::pread;
use p9_abi::{DirentWriter, Qid};

/// The data of an `Rread`, read in place into the reply buffer.
pub(crate) struct ReplyData<'a> {
    /// The reply buffer; data is appended to it.
    pub buf: &'a mut Vec<u8>,
    /// Bytes that may still be appended.
    pub room: usize,
}

impl ZeroCopyWriter for ReplyData<'_> {
    fn write_from(&mut self, fd: BorrowedFd<'_>, count: usize, off: u64) -> io::Result<usize> {
        let count = count.min(self.room);
        let start = self.buf.len();
        self.buf.resize(start + count, 0);
        match pread(fd, &mut self.buf[start..], off) {
            Ok(n) => {
                self.buf.truncate(start + n);
                self.room -= n;
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(start);
                Err(e)
            }
        }
    }
}

/// A `DirSink` that lays out `Rreaddir` entries.
pub(crate) struct DirentSink {
    /// The frame being built.
    pub writer: DirentWriter,
}

impl DirSink for DirentSink {
    fn is_plus(&self) -> bool {
        false
    }

    fn has_room(&self, namelen: usize) -> bool {
        self.writer.has_room(namelen)
    }

    fn remaining(&self) -> usize {
        self.writer.remaining()
    }

    fn add(&mut self, entry: DirEntry<'_>, _plus: Option<&Entry>) -> bool {
        // DT_* is S_IFMT >> 12 on Linux: the qid type follows from it.
        let mode = (entry.typ & 0o17) << 12;
        let typ = (entry.typ & 0xff) as u8;
        let qid = Qid::from_mode(mode, 0, entry.ino);
        self.writer.add(&p9_abi::DirEntry { qid, offset: entry.offset, typ, name: entry.name })
    }
}
