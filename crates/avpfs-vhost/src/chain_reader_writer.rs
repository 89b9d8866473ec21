//! [`ChainReader`] and [`ChainWriter`]: the [`Reader`]/[`Writer`] the FUSE
//! server reads a request from and writes its reply into, over the buffers
//! of a walked chain ([`crate::descriptor_chain`], which re-exports them).
//!
//! They map those buffers to [`VolatileSlice`]s. Small structures are
//! copied with volatile copies; the READ and WRITE payloads move with
//! `preadv`/`pwritev` straight between the host file and guest memory
//! ([`ZeroCopyWriter`], [`ZeroCopyReader`]) through [`crate::guest_io`]. A
//! large read from a regular file may be cut in two halves read at once by
//! the worker and its helper thread ([`ChainWriter::with_read_split`]).

use std::collections::VecDeque;
use std::io;
use std::os::fd::BorrowedFd;

use avpfs_server::{Reader, Writer, ZeroCopyReader, ZeroCopyWriter};
use vm_memory::bitmap::{BitmapSlice, WithBitmapSlice};
use vm_memory::{GuestMemory, Permissions, VolatileSlice};

use crate::descriptor_chain::{Buffer, Error, SplitChain};
use crate::guest_io::{split_read, vectored_io, Direction};

/// A read from a regular file of at least this many bytes is split in two
/// halves read at once, by the worker and by its helper thread, when the
/// writer allows it ([`ChainWriter::with_read_split`]). Each half is then
/// at least 64 KiB, a copy of several µs: far more than handing it over to
/// a helper that is watching for work.
pub const SPLIT_READ_BYTES: usize = 128 << 10;

/// Halves of a split read begin at a multiple of this (the page size, and a
/// multiple of every block size `O_DIRECT` asks alignment to).
const SPLIT_ALIGN: usize = 4096;

/// Maps `buffers` to volatile slices (a buffer spanning two memory regions
/// yields two slices). Empty buffers are skipped.
fn map_buffers<'a, M, B>(
    mem: &'a M,
    buffers: &[Buffer],
    access: Permissions,
) -> Result<Vec<VolatileSlice<'a, B>>, Error>
where
    M: GuestMemory + ?Sized,
    <M as GuestMemory>::Bitmap: WithBitmapSlice<'a, S = B>,
    B: BitmapSlice,
{
    let mut slices = Vec::with_capacity(buffers.len());
    for b in buffers.iter().filter(|b| b.len > 0) {
        for slice in mem.get_slices(b.addr, b.len as usize, access).map_err(Error::GuestMemory)? {
            slices.push(slice.map_err(Error::GuestMemory)?);
        }
    }
    Ok(slices)
}

/// The request part of a chain, read front to back.
#[derive(Debug)]
pub struct ChainReader<'a, B = ()> {
    slices: VecDeque<VolatileSlice<'a, B>>,
    remaining: usize,
}

impl<'a, B: BitmapSlice> ChainReader<'a, B> {
    /// A reader over the readable buffers of a validated chain.
    pub fn new<M>(mem: &'a M, chain: &SplitChain) -> Result<Self, Error>
    where
        M: GuestMemory + ?Sized,
        <M as GuestMemory>::Bitmap: WithBitmapSlice<'a, S = B>,
    {
        let slices: VecDeque<_> = map_buffers(mem, &chain.readable, Permissions::Read)?.into();
        let remaining = slices.iter().map(|s| s.len()).sum();
        Ok(ChainReader { slices, remaining })
    }

    /// Drops the first `n` bytes (at most what remains).
    fn consume(&mut self, mut n: usize) {
        n = n.min(self.remaining);
        self.remaining -= n;
        while n > 0 {
            let Some(front) = self.slices.front_mut() else { return };
            if n < front.len() {
                // `n < len`, so the offset is in range.
                if let Ok(rest) = front.offset(n) {
                    *front = rest;
                }
                return;
            }
            n -= front.len();
            self.slices.pop_front();
        }
    }
}

impl<B: BitmapSlice> ZeroCopyReader for ChainReader<'_, B> {
    fn read_to(&mut self, fd: BorrowedFd<'_>, count: usize, off: u64) -> io::Result<usize> {
        let count = count.min(self.remaining);
        if count == 0 {
            return Ok(0);
        }
        let n = vectored_io(fd, self.slices.iter(), count, off, Direction::GuestToFile)?;
        self.consume(n);
        Ok(n)
    }
}

impl<B: BitmapSlice> Reader for ChainReader<'_, B> {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if buf.len() > self.remaining {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "request shorter than its structure"));
        }
        let mut done = 0;
        for slice in self.slices.iter() {
            if done == buf.len() {
                break;
            }
            done += slice.copy_to(&mut buf[done..]);
        }
        self.consume(done);
        Ok(())
    }
}

/// The reply part of a chain, written front to back; already written bytes
/// can be patched (the READ reply header).
#[derive(Debug)]
pub struct ChainWriter<'a, B = ()> {
    slices: Vec<VolatileSlice<'a, B>>,
    capacity: usize,
    written: usize,
    /// Index of the slice the next byte goes to.
    cur: usize,
    /// Offset of the next byte inside that slice.
    cur_off: usize,
    /// The queue whose worker (the calling thread) may split large reads
    /// from regular files with its helper thread; `None`: no split.
    read_split_queue: Option<usize>,
}

impl<'a, B: BitmapSlice> ChainWriter<'a, B> {
    /// A writer over the writable buffers of a validated chain.
    pub fn new<M>(mem: &'a M, chain: &SplitChain) -> Result<Self, Error>
    where
        M: GuestMemory + ?Sized,
        <M as GuestMemory>::Bitmap: WithBitmapSlice<'a, S = B>,
    {
        Self::from_buffers(mem, &chain.writable)
    }

    /// A writer over some writable buffers (e.g. the validated prefix of a bad chain).
    pub fn from_buffers<M>(mem: &'a M, buffers: &[Buffer]) -> Result<Self, Error>
    where
        M: GuestMemory + ?Sized,
        <M as GuestMemory>::Bitmap: WithBitmapSlice<'a, S = B>,
    {
        let slices = map_buffers(mem, buffers, Permissions::Write)?;
        let capacity = slices.iter().map(|s| s.len()).sum();
        Ok(ChainWriter { slices, capacity, written: 0, cur: 0, cur_off: 0, read_split_queue: None })
    }

    /// Lets [`ZeroCopyWriter::write_from_file`] split a read of at least
    /// [`SPLIT_READ_BYTES`] in two halves, the second read by the calling
    /// thread's helper thread ([`crate::bulk_helper`], named after `queue`,
    /// the queue the calling worker serves) while the caller reads the
    /// first, so that one large READ copies on two CPUs. Only for a queue
    /// worker that is not in the middle of a split already; `None` turns
    /// the split off.
    pub fn with_read_split(mut self, queue: Option<usize>) -> Self {
        self.read_split_queue = queue;
        self
    }

    /// Moves the cursor forward by `n` written bytes.
    fn advance(&mut self, mut n: usize) {
        self.written += n;
        while n > 0 && self.cur < self.slices.len() {
            let room = self.slices[self.cur].len() - self.cur_off;
            if n < room {
                self.cur_off += n;
                return;
            }
            n -= room;
            self.cur += 1;
            self.cur_off = 0;
        }
    }

    /// The slices from the cursor on.
    fn unwritten(&self) -> impl Iterator<Item = VolatileSlice<'a, B>> + '_ {
        self.slices.iter().skip(self.cur).enumerate().filter_map(|(i, s)| {
            if i == 0 {
                s.offset(self.cur_off).ok()
            } else {
                Some(s.clone())
            }
        })
    }

    /// Copies `data` into the slices starting at byte `offset` of the reply.
    fn copy_at(&self, mut offset: usize, data: &[u8]) {
        let mut done = 0;
        for s in &self.slices {
            if done == data.len() {
                break;
            }
            if offset >= s.len() {
                offset -= s.len();
                continue;
            }
            if let Ok(dst) = s.offset(offset) {
                // `copy_from` marks the bytes dirty in the bitmap.
                let n = (data.len() - done).min(dst.len());
                dst.copy_from(&data[done..done + n]);
                done += n;
            }
            offset = 0;
        }
    }
}

impl<B: BitmapSlice> ZeroCopyWriter for ChainWriter<'_, B> {
    fn write_from(&mut self, fd: BorrowedFd<'_>, count: usize, off: u64) -> io::Result<usize> {
        let count = count.min(self.available());
        if count == 0 {
            return Ok(0);
        }
        let slices: Vec<_> = self.unwritten().collect();
        // vectored_io marks what it wrote in the dirty-page log.
        let n = vectored_io(fd, slices.iter(), count, off, Direction::FileToGuest)?;
        self.advance(n);
        Ok(n)
    }

    fn write_from_file(&mut self, fd: BorrowedFd<'_>, count: usize, off: u64) -> io::Result<usize> {
        let count = count.min(self.available());
        let Some(queue) = self.read_split_queue.filter(|_| count >= SPLIT_READ_BYTES) else {
            return self.write_from(fd, count, off);
        };
        let slices: Vec<_> = self.unwritten().collect();
        let at = (count / 2) & !(SPLIT_ALIGN - 1);
        let (first, second) = split_read(fd, slices.iter(), count, off, at, |job, ours: &mut dyn FnMut()| {
            crate::bulk_helper::run_split(|| crate::bulk_helper::thread_name(queue), job, ours)
        })?;
        // split_read marks both halves in the dirty-page log, even when the
        // first came up short and the reply ends there.
        let n = if first < at { first } else { at + second };
        self.advance(n);
        Ok(n)
    }
}

impl<B: BitmapSlice> Writer for ChainWriter<'_, B> {
    fn bytes_written(&self) -> usize {
        self.written
    }

    fn available(&self) -> usize {
        self.capacity - self.written
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() > self.available() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "reply does not fit the reply buffer"));
        }
        self.copy_at(self.written, data);
        self.advance(data.len());
        Ok(())
    }

    fn write_at(&mut self, offset: usize, data: &[u8]) -> io::Result<()> {
        match offset.checked_add(data.len()) {
            Some(end) if end <= self.written => {
                self.copy_at(offset, data);
                Ok(())
            }
            _ => Err(io::Error::new(io::ErrorKind::WriteZero, "patch beyond the written reply")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write as _};
    use std::os::fd::AsFd;

    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    use super::*;

    fn memory() -> GuestMemoryMmap {
        // Two adjacent regions, so that buffers can straddle them.
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000), (GuestAddress(0x10000), 0x10000)]).unwrap()
    }

    #[test]
    fn reader_and_writer_cross_buffers_and_regions() {
        let mem = memory();
        let data: Vec<u8> = (0..100u8).collect();
        // 30 bytes just before the region boundary, 70 bytes elsewhere.
        mem.write_slice(&data[..30], GuestAddress(0x10000 - 30)).unwrap();
        mem.write_slice(&data[30..], GuestAddress(0x5000)).unwrap();
        let chain = SplitChain {
            readable: smallvec::smallvec![
                Buffer { addr: GuestAddress(0x10000 - 30), len: 30 },
                Buffer { addr: GuestAddress(0x5000), len: 70 },
            ],
            writable: smallvec::smallvec![
                Buffer { addr: GuestAddress(0x10000 - 10), len: 20 },
                Buffer { addr: GuestAddress(0x7000), len: 0 },
                Buffer { addr: GuestAddress(0x6000), len: 100 },
            ],
        };
        let mut r = ChainReader::new(&mem, &chain).unwrap();
        assert_eq!(r.remaining(), 100);
        let mut head = [0u8; 45];
        r.read_exact(&mut head).unwrap();
        assert_eq!(&head[..], &data[..45]);
        let mut too_much = [0u8; 56];
        assert_eq!(r.read_exact(&mut too_much).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(r.remaining(), 55);

        // The rest goes to a file with pwritev, straight from guest memory.
        let mut file = tempfile::tempfile().unwrap();
        assert_eq!(r.read_to(file.as_fd(), 1000, 5).unwrap(), 55);
        assert_eq!(r.remaining(), 0);
        let mut back = Vec::new();
        file.seek(SeekFrom::Start(5)).unwrap();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back, &data[45..]);

        let mut w = ChainWriter::new(&mem, &chain).unwrap();
        assert_eq!(w.available(), 120);
        w.write_all(&[0xaa; 16]).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.write_all(&data).unwrap();
        assert_eq!(w.write_from(file.as_fd(), 100, 0).unwrap(), 100);
        assert_eq!(w.bytes_written(), 116);
        w.write_at(2, &[1, 2, 3, 4, 5, 6]).unwrap();
        assert!(w.write_at(115, &[0, 0]).is_err());
        assert!(w.write_all(&[0; 5]).is_err());
        w.write_all(&[7; 4]).unwrap();
        assert_eq!(w.available(), 0);

        let mut out = vec![0u8; 120];
        mem.read_slice(&mut out[..20], GuestAddress(0x10000 - 10)).unwrap();
        mem.read_slice(&mut out[20..], GuestAddress(0x6000)).unwrap();
        let mut expect = vec![0xaa; 16];
        expect[2..8].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        expect.extend_from_slice(&data);
        expect.extend_from_slice(&[7; 4]);
        assert_eq!(out, expect);
    }

    #[test]
    fn write_from_file_splits_only_large_reads_and_only_when_allowed() {
        let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 * SPLIT_READ_BYTES)]).unwrap();
        let data: Vec<u8> = (0..2 * SPLIT_READ_BYTES + 100).map(|i| (i % 253) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let len = 3 * SPLIT_READ_BYTES;
        let chain = SplitChain {
            readable: smallvec::smallvec![],
            writable: smallvec::smallvec![Buffer { addr: GuestAddress(0x1000), len: len as u32 }],
        };
        for queue in [None, Some(1)] {
            mem.write_slice(&vec![0u8; len], GuestAddress(0x1000)).unwrap();
            let mut w = ChainWriter::new(&mem, &chain).unwrap().with_read_split(queue);
            w.write_all(&[0xee; 16]).unwrap();
            // Too small to split, then large enough (the file ends in its second half).
            assert_eq!(w.write_from_file(file.as_fd(), 100, 0).unwrap(), 100);
            assert_eq!(w.write_from_file(file.as_fd(), 2 * SPLIT_READ_BYTES + 50, 100).unwrap(), 2 * SPLIT_READ_BYTES);
            assert_eq!(w.bytes_written(), 16 + data.len());
            let mut out = vec![0u8; 16 + data.len() + 1];
            mem.read_slice(&mut out, GuestAddress(0x1000)).unwrap();
            assert!(out[16..16 + data.len()] == data, "queue {queue:?}: data differs");
            assert_eq!(out[16 + data.len()], 0, "nothing beyond the file");
        }
    }
}
