//! The byte reader and writer through which every transport hands the server
//! one request and takes back one reply.
//!
//! A transport (a `/dev/fuse` buffer, a virtqueue descriptor chain) implements
//! [`Reader`] and [`Writer`]. The payload of READ and WRITE never passes through
//! an intermediate buffer owned by the server: the file system moves it with
//! [`ZeroCopyWriter::write_from`] / [`ZeroCopyReader::read_to`], which a
//! transport implements with `preadv`/`pwritev` straight into or out of its own
//! memory.

use std::io;
use std::os::fd::BorrowedFd;

use avpfs_sys::io::{pread, pwrite};

/// Moves request payload bytes from the transport into a host file.
pub trait ZeroCopyReader {
    /// Writes up to `count` bytes of the remaining request to `fd` at `off`
    /// (`pwritev`), consuming them. Returns the number of bytes written.
    fn read_to(&mut self, fd: BorrowedFd<'_>, count: usize, off: u64) -> io::Result<usize>;
}

/// Moves reply payload bytes from a host file into the transport.
pub trait ZeroCopyWriter {
    /// Reads up to `count` bytes from `fd` at `off` (`preadv`) straight into the
    /// reply. Returns the number of bytes read (0 at end of file).
    fn write_from(&mut self, fd: BorrowedFd<'_>, count: usize, off: u64) -> io::Result<usize>;

    /// Like [`write_from`](Self::write_from), from a regular file. Reads of
    /// distinct ranges of a regular file are independent and change
    /// nothing, so a transport may split a large one and read the parts at
    /// once on several threads; the reply is the same as one `preadv`'s
    /// (a short count ends at the first byte not read). By default, one
    /// `write_from`.
    fn write_from_file(&mut self, fd: BorrowedFd<'_>, count: usize, off: u64) -> io::Result<usize> {
        self.write_from(fd, count, off)
    }
}

/// The request side of a transport.
pub trait Reader: ZeroCopyReader {
    /// Bytes of the request not yet consumed.
    fn remaining(&self) -> usize;
    /// Fills `buf` from the request, or fails with `UnexpectedEof` without
    /// consuming anything when fewer bytes remain.
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()>;
}

/// The reply side of a transport.
pub trait Writer: ZeroCopyWriter {
    /// Bytes written so far.
    fn bytes_written(&self) -> usize;
    /// Bytes that can still be written.
    fn available(&self) -> usize;
    /// Appends `data`, or fails with `WriteZero` and writes nothing when it does not fit.
    fn write_all(&mut self, data: &[u8]) -> io::Result<()>;
    /// Overwrites already written bytes at `offset` (used for the reply header).
    fn write_at(&mut self, offset: usize, data: &[u8]) -> io::Result<()>;
}

fn short_read() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "request shorter than its structure")
}

fn short_write() -> io::Error {
    io::Error::new(io::ErrorKind::WriteZero, "reply does not fit the reply buffer")
}

/// A [`Reader`] over a byte slice (a `/dev/fuse` request buffer, tests).
#[derive(Debug)]
pub struct SliceReader<'a> {
    buf: &'a [u8],
}

impl<'a> SliceReader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        SliceReader { buf }
    }
}

impl ZeroCopyReader for SliceReader<'_> {
    fn read_to(&mut self, fd: BorrowedFd<'_>, count: usize, off: u64) -> io::Result<usize> {
        let count = count.min(self.buf.len());
        let n = pwrite(fd, &self.buf[..count], off)?;
        self.buf = &self.buf[n..];
        Ok(n)
    }
}

impl Reader for SliceReader<'_> {
    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        if out.len() > self.buf.len() {
            return Err(short_read());
        }
        let (head, tail) = self.buf.split_at(out.len());
        out.copy_from_slice(head);
        self.buf = tail;
        Ok(())
    }
}

/// A [`Writer`] into a growable buffer with a fixed maximum size.
#[derive(Debug)]
pub struct VecWriter {
    buf: Vec<u8>,
    max: usize,
}

impl VecWriter {
    /// An empty writer that accepts at most `max` bytes.
    pub fn new(max: usize) -> Self {
        VecWriter { buf: Vec::with_capacity(max.min(64 * 1024)), max }
    }

    /// Empties the writer for the next reply, keeping its allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The bytes written.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the bytes written.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

impl ZeroCopyWriter for VecWriter {
    fn write_from(&mut self, fd: BorrowedFd<'_>, count: usize, off: u64) -> io::Result<usize> {
        let count = count.min(self.available());
        let start = self.buf.len();
        self.buf.resize(start + count, 0);
        match pread(fd, &mut self.buf[start..], off) {
            Ok(n) => {
                self.buf.truncate(start + n);
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(start);
                Err(e)
            }
        }
    }
}

impl Writer for VecWriter {
    fn bytes_written(&self) -> usize {
        self.buf.len()
    }

    fn available(&self) -> usize {
        self.max - self.buf.len()
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() > self.available() {
            return Err(short_write());
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn write_at(&mut self, offset: usize, data: &[u8]) -> io::Result<()> {
        let end = offset.checked_add(data.len()).ok_or_else(short_write)?;
        if end > self.buf.len() {
            return Err(short_write());
        }
        self.buf[offset..end].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_reader_short_read_consumes_nothing() {
        let data = [1u8, 2, 3];
        let mut r = SliceReader::new(&data);
        let mut four = [0u8; 4];
        assert_eq!(r.read_exact(&mut four).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(r.remaining(), 3);
        let mut two = [0u8; 2];
        r.read_exact(&mut two).unwrap();
        assert_eq!(two, [1, 2]);
        assert_eq!(r.remaining(), 1);
    }

    #[test]
    fn vec_writer_respects_its_limit_and_patches() {
        let mut w = VecWriter::new(8);
        w.write_all(&[0; 4]).unwrap();
        assert_eq!(w.available(), 4);
        assert_eq!(w.write_all(&[1; 5]).unwrap_err().kind(), io::ErrorKind::WriteZero);
        assert_eq!(w.bytes_written(), 4);
        w.write_at(1, &[9, 9]).unwrap();
        assert!(w.write_at(3, &[9, 9]).is_err());
        assert_eq!(w.as_slice(), &[0, 9, 9, 0]);
    }
}
