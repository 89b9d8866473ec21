//! Descriptor chains: validation, and the [`Reader`]/[`Writer`] the FUSE
//! server reads a request from and writes its reply into.
//!
//! [`walk_chain`] follows one split-virtqueue descriptor chain (direct or
//! through an indirect table) and checks every descriptor before anything
//! touches guest memory: the index stays inside its table, the chain ends
//! before it could loop, no device-readable descriptor follows a
//! device-writable one, each buffer lies inside guest memory without wrapping
//! the address space, and the total length stays under [`MAX_CHAIN_BYTES`].
//! What it returns is the list of readable and writable buffers.
//!
//! [`ChainReader`] and [`ChainWriter`] map those buffers to
//! [`VolatileSlice`]s. Small structures are copied with volatile copies; the
//! READ and WRITE payloads move with `preadv`/`pwritev` straight between the
//! host file and guest memory ([`ZeroCopyWriter`], [`ZeroCopyReader`]). The only
//! `unsafe` code of this module is the vectored system call in `vectored_io`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};

use avpfs_server::{Reader, Writer, ZeroCopyReader, ZeroCopyWriter};
use virtio_queue::desc::split::Descriptor;
use vm_memory::bitmap::{BitmapSlice, WithBitmapSlice};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryError, Permissions, VolatileSlice};

/// Size of one split-ring descriptor in bytes.
const DESC_SIZE: u64 = 16;

/// Largest total length (readable plus writable) of a chain we accept.
///
/// The largest legitimate request is a 1 MiB WRITE plus headers, the largest
/// legitimate reply a 1 MiB READ plus its header; 64 MiB leaves room for a
/// guest with a larger `max_pages` while refusing absurd chains.
pub const MAX_CHAIN_BYTES: u64 = 64 << 20;

/// Most iovecs one `preadv`/`pwritev` takes (the kernel's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// A read from a regular file of at least this many bytes is split in two
/// halves read at once, by the worker and by its helper thread, when the
/// writer allows it ([`ChainWriter::with_read_split`]). Each half is then
/// at least 64 KiB, a copy of several µs: far more than handing it over to
/// a helper that is watching for work.
pub const SPLIT_READ_BYTES: usize = 128 << 10;

/// Halves of a split read begin at a multiple of this (the page size, and a
/// multiple of every block size `O_DIRECT` asks alignment to).
const SPLIT_ALIGN: usize = 4096;

/// Why a descriptor chain was refused, or why its memory could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `next` field (or the head) names a descriptor outside the table.
    #[error("descriptor index {index} is outside its table of {size} entries")]
    IndexOutOfRange {
        /// The index found.
        index: u16,
        /// The size of the table it indexes.
        size: u32,
    },
    /// The chain has more descriptors than its table: it loops.
    #[error("descriptor chain is longer than its table of {0} entries (a loop)")]
    ChainLoop(u32),
    /// The descriptor itself could not be read from guest memory.
    #[error("cannot read descriptor at {addr:#x}: {source}")]
    ReadDescriptor {
        /// Guest address of the descriptor.
        addr: u64,
        /// The memory error.
        #[source]
        source: GuestMemoryError,
    },
    /// An indirect descriptor inside an indirect table.
    #[error("indirect descriptor inside an indirect table")]
    NestedIndirect,
    /// An indirect descriptor that also has the NEXT flag.
    #[error("indirect descriptor with the NEXT flag")]
    IndirectWithNext,
    /// An indirect table whose length is zero, not a multiple of 16 or too large.
    #[error("indirect table of {0} bytes is not a valid descriptor table")]
    BadIndirectTable(u32),
    /// A device-readable descriptor follows a device-writable one.
    #[error("device-readable descriptor after a device-writable one")]
    ReadableAfterWritable,
    /// `addr + len` wraps the 64-bit address space.
    #[error("buffer at {addr:#x} of {len} bytes wraps the address space")]
    AddressOverflow {
        /// Guest address of the buffer.
        addr: u64,
        /// Its length.
        len: u32,
    },
    /// The buffer is not entirely inside guest memory.
    #[error("buffer at {addr:#x} of {len} bytes is outside guest memory")]
    OutsideMemory {
        /// Guest address of the buffer.
        addr: u64,
        /// Its length.
        len: u32,
    },
    /// The chain's buffers add up to more than [`MAX_CHAIN_BYTES`].
    #[error("descriptor chain of more than {MAX_CHAIN_BYTES} bytes")]
    TooLarge,
    /// Guest memory could not be mapped as slices.
    #[error("cannot map guest memory: {0}")]
    GuestMemory(#[source] GuestMemoryError),
}

/// One guest buffer of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// Guest physical address.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
}

/// Buffers of one direction of a chain. Up to four are kept inline: a FUSE
/// request is usually one or two buffers each way, so walking a chain
/// allocates nothing (the two heap vectors it used were 42% of the
/// daemon's allocations in a LOOKUP storm, callgrind).
pub type Buffers = smallvec::SmallVec<[Buffer; 4]>;

/// The buffers of a descriptor chain, split into the device-readable part
/// (the request) and the device-writable part (room for the reply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitChain {
    /// Device-readable buffers, in chain order.
    pub readable: Buffers,
    /// Device-writable buffers, in chain order.
    pub writable: Buffers,
}

impl SplitChain {
    /// Total bytes of the readable part.
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|b| u64::from(b.len)).sum()
    }

    /// Total bytes of the writable part.
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|b| u64::from(b.len)).sum()
    }
}

/// A refused chain: the error, and the buffers validated before it was found.
///
/// The validated prefix lets the caller still write an error reply when the
/// bad descriptor comes after a usable reply buffer.
#[derive(Debug)]
pub struct BadChain {
    /// What is wrong with the chain.
    pub error: Error,
    /// The descriptors checked and accepted before the error (boxed: the
    /// error path should not make every `Result` of a walk large).
    pub valid: Box<SplitChain>,
}

/// Follows the chain that starts at `head` in the descriptor table at
/// `desc_table` of `queue_size` entries, validating every descriptor.
pub fn walk_chain<M: GuestMemory + ?Sized>(
    mem: &M,
    desc_table: GuestAddress,
    queue_size: u16,
    head: u16,
) -> Result<SplitChain, BadChain> {
    let mut chain = SplitChain::default();
    match walk_into(mem, desc_table, queue_size, head, &mut chain) {
        Ok(()) => Ok(chain),
        Err(error) => Err(BadChain { error, valid: Box::new(chain) }),
    }
}

fn walk_into<M: GuestMemory + ?Sized>(
    mem: &M,
    desc_table: GuestAddress,
    queue_size: u16,
    head: u16,
    chain: &mut SplitChain,
) -> Result<(), Error> {
    let mut table = desc_table;
    let mut table_size = u32::from(queue_size);
    let mut index = head;
    // Each table can contribute at most as many descriptors as it has entries;
    // one more means the `next` fields form a loop.
    let mut ttl = table_size;
    let mut indirect = false;
    let mut total: u64 = 0;

    loop {
        if u32::from(index) >= table_size {
            return Err(Error::IndexOutOfRange { index, size: table_size });
        }
        if ttl == 0 {
            return Err(Error::ChainLoop(table_size));
        }
        ttl -= 1;

        // Cannot overflow: index < 2^16 and the table lies in guest memory
        // (checked below for indirect tables; the ring's own table was checked
        // when the queue was set up), but stay checked anyway.
        let desc_addr = table
            .checked_add(u64::from(index) * DESC_SIZE)
            .ok_or(Error::AddressOverflow { addr: table.raw_value(), len: u32::from(index) * 16 })?;
        let desc: Descriptor =
            mem.read_obj(desc_addr).map_err(|source| Error::ReadDescriptor { addr: desc_addr.raw_value(), source })?;

        if desc.refers_to_indirect_table() {
            if indirect {
                return Err(Error::NestedIndirect);
            }
            if desc.has_next() {
                return Err(Error::IndirectWithNext);
            }
            let len = desc.len();
            if len == 0 || u64::from(len) % DESC_SIZE != 0 || u64::from(len) / DESC_SIZE > u64::from(u16::MAX) + 1 {
                return Err(Error::BadIndirectTable(len));
            }
            check_buffer(mem, desc.addr(), len)?;
            table = desc.addr();
            table_size = (u64::from(len) / DESC_SIZE) as u32;
            ttl = table_size;
            index = 0;
            indirect = true;
            continue;
        }

        let len = desc.len();
        let addr = desc.addr();
        addr.raw_value().checked_add(u64::from(len)).ok_or(Error::AddressOverflow { addr: addr.raw_value(), len })?;
        // The total is checked before the memory range, so that a huge length
        // is reported as such rather than as a buffer outside memory.
        total += u64::from(len);
        if total > MAX_CHAIN_BYTES {
            return Err(Error::TooLarge);
        }
        check_buffer(mem, addr, len)?;

        let buffer = Buffer { addr: desc.addr(), len };
        if desc.is_write_only() {
            chain.writable.push(buffer);
        } else if !chain.writable.is_empty() {
            return Err(Error::ReadableAfterWritable);
        } else {
            chain.readable.push(buffer);
        }

        if !desc.has_next() {
            return Ok(());
        }
        index = desc.next();
    }
}

/// Checks that `[addr, addr + len)` does not wrap and lies in guest memory.
fn check_buffer<M: GuestMemory + ?Sized>(mem: &M, addr: GuestAddress, len: u32) -> Result<(), Error> {
    let raw = addr.raw_value();
    raw.checked_add(u64::from(len)).ok_or(Error::AddressOverflow { addr: raw, len })?;
    if len > 0 && !mem.check_range(addr, len as usize, Permissions::ReadWrite) {
        return Err(Error::OutsideMemory { addr: raw, len });
    }
    Ok(())
}

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

    /// Accounts bytes the kernel wrote through raw pointers: `len` bytes from
    /// `start` (counted from the cursor) are marked dirty in the bitmap.
    fn mark_dirty(slices: &[VolatileSlice<'a, B>], mut start: usize, mut len: usize) {
        for s in slices {
            if len == 0 {
                break;
            }
            if start >= s.len() {
                start -= s.len();
                continue;
            }
            let k = len.min(s.len() - start);
            s.bitmap().mark_dirty(start, k);
            len -= k;
            start = 0;
        }
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
        let n = vectored_io(fd, slices.iter(), count, off, Direction::FileToGuest)?;
        Self::mark_dirty(&slices, 0, n);
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
        // Both halves may have written guest memory, even when the first
        // came up short and the reply ends there.
        Self::mark_dirty(&slices, 0, first);
        Self::mark_dirty(&slices, at, second);
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

/// Which way a vectored transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// `preadv`: from the file into guest memory.
    FileToGuest,
    /// `pwritev`: from guest memory into the file.
    GuestToFile,
}

/// Moves up to `count` bytes between `fd` at `off` and the leading bytes of
/// `slices`, in one `preadv`/`pwritev` (retried on EINTR). Returns the bytes moved.
fn vectored_io<'s, 'a: 's, B: BitmapSlice + 's>(
    fd: BorrowedFd<'_>,
    slices: impl Iterator<Item = &'s VolatileSlice<'a, B>>,
    count: usize,
    off: u64,
    dir: Direction,
) -> io::Result<usize> {
    let off = i64::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mapped = MappedIovecs::new(slices, count, dir);
    if mapped.iovecs.is_empty() {
        return Ok(0);
    }
    // SAFETY: `mapped` keeps every iovec's guest memory mapped (it borrows
    // the slices and holds their pointer guards) until it is dropped, after
    // the call.
    unsafe { transfer(fd.as_raw_fd(), &mapped.iovecs, off, dir) }
}

/// Reads up to `count` bytes of `fd` at `off` into the leading bytes of
/// `slices` in two parts: the bytes from `at` on by the helper thread, the
/// ones before by the caller, both at once (`run_split` runs its job on
/// another thread while it runs its closure, and returns when both are
/// done). Returns how many bytes each part read; the second's failure reads
/// as 0 bytes (one `preadv` would have stopped there), the first's is
/// returned.
fn split_read<'s, 'a: 's, B: BitmapSlice + 's>(
    fd: BorrowedFd<'_>,
    slices: impl Iterator<Item = &'s VolatileSlice<'a, B>>,
    count: usize,
    off: u64,
    at: usize,
    run_split: impl FnOnce(crate::bulk_helper::Job, &mut dyn FnMut()),
) -> io::Result<(usize, usize)> {
    let end = off.checked_add(count as u64).and_then(|e| i64::try_from(e).ok());
    let (Ok(off), Some(_)) = (i64::try_from(off), end) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let mapped = MappedIovecs::new(slices, count, Direction::FileToGuest);
    let (first, second) = cut_iovecs(&mapped.iovecs, at);
    let raw_fd = fd.as_raw_fd();
    let theirs = Arc::new(Mutex::new(None));
    let their_result = theirs.clone();
    let second = HelperIovecs(second);
    let job: crate::bulk_helper::Job = Box::new(move || {
        let iovecs = second;
        // SAFETY: the iovecs point into guest memory that `mapped` keeps
        // mapped, and `fd` stays open, until `split_read` returns, which
        // `run_split` does only after this job has run (or if it never
        // will: its thread is gone).
        let n = unsafe { transfer(raw_fd, &iovecs.0, off + at as i64, Direction::FileToGuest) };
        *their_result.lock().unwrap_or_else(|e| e.into_inner()) = Some(n);
    });
    let mut ours = None;
    run_split(job, &mut || {
        // SAFETY: as above; `mapped` outlives the call.
        ours = Some(unsafe { transfer(raw_fd, &first, off, Direction::FileToGuest) });
    });
    drop(mapped);
    let first = ours.unwrap_or(Ok(0))?;
    let second = theirs.lock().unwrap_or_else(|e| e.into_inner()).take().and_then(Result::ok).unwrap_or(0);
    Ok((first, second))
}

/// The iovecs of the leading `count` bytes of some guest memory slices
/// (at most [`IOV_MAX`]), with the guards that keep each slice mapped while
/// the kernel uses the pointers (they matter for on-demand mappings such as
/// Xen's).
struct MappedIovecs<'s, B: BitmapSlice + 's> {
    iovecs: Vec<libc::iovec>,
    _read_guards: Vec<vm_memory::volatile_memory::PtrGuard>,
    _write_guards: Vec<vm_memory::volatile_memory::PtrGuardMut>,
    _slices: std::marker::PhantomData<&'s B>,
}

impl<'s, B: BitmapSlice + 's> MappedIovecs<'s, B> {
    fn new<'a: 's>(slices: impl Iterator<Item = &'s VolatileSlice<'a, B>>, count: usize, dir: Direction) -> Self {
        let mut read_guards = Vec::new();
        let mut write_guards = Vec::new();
        let mut iovecs = Vec::new();
        let mut left = count;
        for s in slices.take(IOV_MAX) {
            if left == 0 {
                break;
            }
            let len = left.min(s.len());
            let base: *mut u8 = match dir {
                Direction::FileToGuest => {
                    let g = s.ptr_guard_mut();
                    let p = g.as_ptr();
                    write_guards.push(g);
                    p
                }
                Direction::GuestToFile => {
                    let g = s.ptr_guard();
                    let p = g.as_ptr().cast_mut();
                    read_guards.push(g);
                    p
                }
            };
            iovecs.push(libc::iovec { iov_base: base.cast(), iov_len: len });
            left -= len;
        }
        MappedIovecs {
            iovecs,
            _read_guards: read_guards,
            _write_guards: write_guards,
            _slices: std::marker::PhantomData,
        }
    }
}

/// Cuts `iovecs` at byte `at`: the iovecs of the bytes before it, and of
/// the bytes from it on (an iovec that straddles `at` is cut in two).
fn cut_iovecs(iovecs: &[libc::iovec], mut at: usize) -> (Vec<libc::iovec>, Vec<libc::iovec>) {
    let mut first = Vec::new();
    let mut second = Vec::new();
    for v in iovecs {
        if at >= v.iov_len {
            at -= v.iov_len;
            first.push(*v);
        } else if at > 0 {
            first.push(libc::iovec { iov_base: v.iov_base, iov_len: at });
            // `at < iov_len`: the rest starts inside the same buffer.
            second.push(libc::iovec { iov_base: v.iov_base.wrapping_byte_add(at), iov_len: v.iov_len - at });
            at = 0;
        } else {
            second.push(*v);
        }
    }
    (first, second)
}

/// Iovecs handed to the helper thread with the job that reads into them.
struct HelperIovecs(Vec<libc::iovec>);

// SAFETY: the iovecs are plain addresses and lengths of guest memory, which
// is shared with the guest and has no owner on the host side; the thread
// that sends them keeps the memory mapped until the receiving job is done
// (see `split_read`).
unsafe impl Send for HelperIovecs {}

/// One `preadv` (`FileToGuest`) or `pwritev` (`GuestToFile`) of `iovecs`
/// at `off`, retried on EINTR.
///
/// # Safety
///
/// Every iovec must lie inside guest memory that stays mapped for the whole
/// call, and `fd` must stay open for it.
unsafe fn transfer(fd: RawFd, iovecs: &[libc::iovec], off: i64, dir: Direction) -> io::Result<usize> {
    let cnt = iovecs.len().min(IOV_MAX) as libc::c_int;
    loop {
        let n = match dir {
            // SAFETY: by the caller's contract every iovec points into mapped
            // guest memory; the kernel writes only inside those ranges, and no
            // Rust reference to guest memory exists, so concurrent guest access
            // is not a data race in the Rust sense. `cnt <= IOV_MAX` fits a c_int.
            Direction::FileToGuest => unsafe { libc::preadv64(fd, iovecs.as_ptr(), cnt, off) },
            // SAFETY: as above; the kernel only reads the ranges.
            Direction::GuestToFile => unsafe { libc::pwritev64(fd, iovecs.as_ptr(), cnt, off) },
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write as _};
    use std::os::fd::AsFd;

    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use vm_memory::GuestMemoryMmap;

    use super::*;

    const TABLE: u64 = 0x1000;
    const NEXT: u16 = VRING_DESC_F_NEXT as u16;
    const WRITE: u16 = VRING_DESC_F_WRITE as u16;
    const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

    fn memory() -> GuestMemoryMmap {
        // Two adjacent regions, so that buffers can straddle them.
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000), (GuestAddress(0x10000), 0x10000)]).unwrap()
    }

    fn put(mem: &GuestMemoryMmap, table: u64, descs: &[(u64, u32, u16, u16)]) {
        for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
            mem.write_obj(Descriptor::new(addr, len, flags, next), GuestAddress(table + 16 * i as u64)).unwrap();
        }
    }

    #[test]
    fn splits_readable_and_writable() {
        let mem = memory();
        put(&mem, TABLE, &[(0x2000, 40, NEXT, 1), (0x3000, 8, NEXT, 2), (0x4000, 100, WRITE, 0)]);
        let c = walk_chain(&mem, GuestAddress(TABLE), 16, 0).unwrap();
        assert_eq!(c.readable.len(), 2);
        assert_eq!(c.readable_len(), 48);
        assert_eq!(c.writable[..], [Buffer { addr: GuestAddress(0x4000), len: 100 }]);
    }

    #[test]
    fn refuses_bad_chains() {
        let mem = memory();
        let err = |descs: &[(u64, u32, u16, u16)]| {
            put(&mem, TABLE, descs);
            walk_chain(&mem, GuestAddress(TABLE), 16, 0).unwrap_err().error
        };
        assert!(matches!(err(&[(0x2000, 8, NEXT | WRITE, 1), (0x3000, 8, 0, 0)]), Error::ReadableAfterWritable));
        assert!(matches!(err(&[(0x2000, 8, NEXT, 0)]), Error::ChainLoop(16)));
        assert!(matches!(err(&[(0x2000, 8, NEXT, 99)]), Error::IndexOutOfRange { index: 99, size: 16 }));
        assert!(matches!(err(&[(u64::MAX - 4, 8, 0, 0)]), Error::AddressOverflow { .. }));
        assert!(matches!(err(&[(0x100_0000, 8, 0, 0)]), Error::OutsideMemory { .. }));
        assert!(matches!(err(&[(0x1_0000 - 4, 0x10008, 0, 0)]), Error::OutsideMemory { .. }));
        assert!(matches!(err(&[(0, u32::MAX, 0, 0)]), Error::TooLarge));
        assert!(matches!(err(&[(0x2000, 17, INDIRECT, 0)]), Error::BadIndirectTable(17)));
        assert!(matches!(err(&[(0x2000, 16, INDIRECT | NEXT, 1)]), Error::IndirectWithNext));
        assert!(matches!(
            walk_chain(&mem, GuestAddress(TABLE), 16, 16).unwrap_err().error,
            Error::IndexOutOfRange { index: 16, size: 16 }
        ));
        // The validated prefix is kept.
        put(&mem, TABLE, &[(0x2000, 40, NEXT, 1), (0x4000, 64, NEXT | WRITE, 2), (0x100_0000, 8, WRITE, 0)]);
        let bad = walk_chain(&mem, GuestAddress(TABLE), 16, 0).unwrap_err();
        assert_eq!(bad.valid.readable_len(), 40);
        assert_eq!(bad.valid.writable_len(), 64);
    }

    #[test]
    fn follows_indirect_tables() {
        let mem = memory();
        put(&mem, 0x8000, &[(0x2000, 40, NEXT, 1), (0x4000, 100, WRITE, 0)]);
        put(&mem, TABLE, &[(0x8000, 32, INDIRECT, 0)]);
        let c = walk_chain(&mem, GuestAddress(TABLE), 16, 0).unwrap();
        assert_eq!((c.readable_len(), c.writable_len()), (40, 100));
        // Nested indirect tables are refused.
        put(&mem, 0x8000, &[(0x9000, 16, INDIRECT, 0)]);
        assert!(matches!(walk_chain(&mem, GuestAddress(TABLE), 16, 0).unwrap_err().error, Error::NestedIndirect));
        // A loop inside an indirect table is bounded by the table size.
        put(&mem, 0x8000, &[(0x2000, 8, NEXT, 1), (0x2000, 8, NEXT, 0)]);
        assert!(matches!(walk_chain(&mem, GuestAddress(TABLE), 16, 0).unwrap_err().error, Error::ChainLoop(2)));
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

    /// A `run_split` that runs the job on a thread of its own while it runs
    /// the caller's part; records that it was used.
    fn on_two_threads(used: &std::cell::Cell<bool>) -> impl FnOnce(crate::bulk_helper::Job, &mut dyn FnMut()) + '_ {
        move |job, ours| {
            used.set(true);
            let helper = std::thread::spawn(job);
            ours();
            helper.join().unwrap();
        }
    }

    #[test]
    fn cut_iovecs_cuts_the_buffer_that_straddles_the_point() {
        let mut bufs = [0u8; 30];
        let base = bufs.as_mut_ptr();
        let v = |at: usize, len: usize| libc::iovec { iov_base: base.wrapping_add(at).cast(), iov_len: len };
        let all = [v(0, 10), v(10, 10), v(20, 10)];
        let key = |vs: &[libc::iovec]| {
            vs.iter().map(|v| (v.iov_base as usize - base as usize, v.iov_len)).collect::<Vec<_>>()
        };
        let (a, b) = cut_iovecs(&all, 15);
        assert_eq!((key(&a), key(&b)), (vec![(0, 10), (10, 5)], vec![(15, 5), (20, 10)]));
        let (a, b) = cut_iovecs(&all, 10);
        assert_eq!((key(&a), key(&b)), (vec![(0, 10)], vec![(10, 10), (20, 10)]));
        let (a, b) = cut_iovecs(&all, 30);
        assert_eq!((key(&a), key(&b)), (key(&all), vec![]));
    }

    #[test]
    fn a_split_read_fills_both_halves_across_buffers_and_regions() {
        let mem = memory();
        let data: Vec<u8> = (0..0x9000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        // 0x3000 bytes that end at the region boundary, then 0x6000 elsewhere.
        let chain = SplitChain {
            readable: smallvec::smallvec![],
            writable: smallvec::smallvec![
                Buffer { addr: GuestAddress(0x10000 - 0x3000), len: 0x3000 },
                Buffer { addr: GuestAddress(0x12000), len: 0x6000 },
            ],
        };
        let read_back = |n: usize| {
            let mut out = vec![0u8; n];
            let first = n.min(0x3000);
            mem.read_slice(&mut out[..first], GuestAddress(0x10000 - 0x3000)).unwrap();
            mem.read_slice(&mut out[first..], GuestAddress(0x12000)).unwrap();
            out
        };
        // Cut inside the second buffer; the file covers the whole read.
        let w = ChainWriter::new(&mem, &chain).unwrap();
        let used = std::cell::Cell::new(false);
        let got = split_read(file.as_fd(), w.slices.iter(), 0x9000, 0, 0x5000, on_two_threads(&used)).unwrap();
        assert!(used.get());
        assert_eq!(got, (0x5000, 0x4000));
        assert!(read_back(0x9000) == data);
        // At an offset: the file ends inside the second half.
        let got = split_read(file.as_fd(), w.slices.iter(), 0x9000, 0x1000, 0x4000, on_two_threads(&used)).unwrap();
        assert_eq!(got, (0x4000, 0x4000));
        assert!(read_back(0x8000) == data[0x1000..]);
        // The file ends inside the first half: the second reads nothing.
        let got = split_read(file.as_fd(), w.slices.iter(), 0x9000, 0x6000, 0x4000, on_two_threads(&used)).unwrap();
        assert_eq!(got, (0x3000, 0));
        // A failing first half fails the read.
        let dir = std::fs::File::open("/").unwrap();
        let err = split_read(dir.as_fd(), w.slices.iter(), 0x9000, 0, 0x4000, on_two_threads(&used)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EISDIR));
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
