//! The `descriptor_chain` target: `walk_chain`, `ChainReader` and
//! `ChainWriter` of avpfs-vhost over a small guest memory filled from the
//! fuzz input.
//!
//! Input: a [`Control`] block of [`CONTROL_SIZE`] bytes, then the image of
//! guest memory from address 0 (the rest of memory is zero). Guest memory is
//! [`REGIONS`]: two adjacent 64 KiB regions and, after a gap, a 4 KiB one,
//! with a dirty-page bitmap.
//!
//! Invariants checked:
//! - `walk_chain` accepts exactly the chains that an independent model of
//!   the split-ring rules accepts, with the same buffers (and, for a refused
//!   chain, the same validated prefix);
//! - every buffer it returns (len > 0) lies inside guest memory, computed
//!   with 128-bit arithmetic against the region list; readable buffers come
//!   before writable ones in chain order; the total length stays within
//!   `MAX_CHAIN_BYTES` and the sums do not overflow;
//! - `ChainReader` yields exactly the bytes of the readable buffers, through
//!   copies and through `pwritev` into a file, and a too-long read consumes
//!   nothing;
//! - `ChainWriter` has the capacity of the writable buffers, refuses what
//!   does not fit without writing, and changes guest memory exactly as a
//!   byte-by-byte model says (nothing outside the writable buffers), marking
//!   every written page dirty;
//! - a refused chain's validated writable prefix can still take an error reply.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, MutexGuard, OnceLock};

use avpfs_server::{Reader, Writer, ZeroCopyReader, ZeroCopyWriter};
use avpfs_vhost::descriptor_chain::{walk_chain, Buffer, ChainReader, ChainWriter, SplitChain, MAX_CHAIN_BYTES};
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::bitmap::{AtomicBitmap, Bitmap, BitmapSlice};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Guest memory regions: (start, size).
pub const REGIONS: [(u64, usize); 3] = [(0, 0x10000), (0x10000, 0x10000), (0x30000, 0x1000)];
/// Bytes of control data at the start of an input.
pub const CONTROL_SIZE: usize = 12;
/// Largest image copied to guest memory (the two adjacent regions).
pub const MAX_IMAGE: usize = 0x20000;
/// Chains whose readable or writable part is larger than this are driven
/// through the reader and writer without the byte-by-byte model.
pub const MODEL_LIMIT: u64 = 1 << 20;

const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const WRITE: u16 = VRING_DESC_F_WRITE as u16;
const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

/// Guest memory as the target maps it.
pub type Mem = GuestMemoryMmap<AtomicBitmap>;

/// The parameters of one run, at the start of the input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    /// The queue size (entries of the descriptor table).
    pub queue_size: u16,
    /// The chain head.
    pub head: u16,
    /// Guest address of the descriptor table.
    pub desc_table: u32,
    /// Chunk size of the copies through `read_exact` (0 counts as 1).
    pub read_chunk: u8,
    /// Chunk size of the copies through `write_all` (0 counts as 1).
    pub write_chunk: u8,
    /// How many bytes go through copies before the zero-copy calls take the rest.
    pub copy_bytes: u16,
}

impl Control {
    /// Encodes the control block.
    pub fn encode(&self) -> [u8; CONTROL_SIZE] {
        let mut b = [0u8; CONTROL_SIZE];
        b[0..2].copy_from_slice(&self.queue_size.to_le_bytes());
        b[2..4].copy_from_slice(&self.head.to_le_bytes());
        b[4..8].copy_from_slice(&self.desc_table.to_le_bytes());
        b[8] = self.read_chunk;
        b[9] = self.write_chunk;
        b[10..12].copy_from_slice(&self.copy_bytes.to_le_bytes());
        b
    }

    /// Decodes the control block; `None` when the input is shorter.
    pub fn decode(data: &[u8]) -> Option<(Control, &[u8])> {
        let (b, rest) = data.split_first_chunk::<CONTROL_SIZE>()?;
        let c = Control {
            queue_size: u16::from_le_bytes([b[0], b[1]]),
            head: u16::from_le_bytes([b[2], b[3]]),
            desc_table: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            read_chunk: b[8],
            write_chunk: b[9],
            copy_bytes: u16::from_le_bytes([b[10], b[11]]),
        };
        Some((c, rest))
    }
}

/// A guest memory image under construction (for seeds and tests).
#[derive(Debug, Default, Clone)]
pub struct Image {
    bytes: Vec<u8>,
}

impl Image {
    /// Writes `data` at guest address `addr` (which must be below [`MAX_IMAGE`]).
    pub fn put(&mut self, addr: u64, data: &[u8]) -> &mut Self {
        let at = addr as usize;
        if self.bytes.len() < at + data.len() {
            self.bytes.resize(at + data.len(), 0);
        }
        self.bytes[at..at + data.len()].copy_from_slice(data);
        self
    }

    /// Writes split-ring descriptors `(addr, len, flags, next)` as a table at `table`.
    pub fn table(&mut self, table: u64, descs: &[(u64, u32, u16, u16)]) -> &mut Self {
        for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..16].copy_from_slice(&next.to_le_bytes());
            self.put(table + 16 * i as u64, &d);
        }
        self
    }

    /// The fuzz input: control block and image.
    pub fn input(&self, control: Control) -> Vec<u8> {
        [&control.encode()[..], &self.bytes].concat()
    }
}

/// Whether `[addr, addr + len)` lies in guest memory (adjacent regions
/// merge; an empty range is anywhere).
pub fn inside(addr: u64, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    let (mut start, end) = (u128::from(addr), u128::from(addr) + u128::from(len));
    // The regions are sorted: a range that leaves one region must go on in
    // the next one, which must start where it ends.
    for &(base, size) in &REGIONS {
        let (rs, re) = (u128::from(base), u128::from(base) + size as u128);
        if (rs..re).contains(&start) {
            if end <= re {
                return true;
            }
            start = re;
        }
    }
    false
}

/// The split-ring rules (VIRTIO 1.2, 2.7.5 and 2.7.5.3), written
/// independently of avpfs-vhost: `Ok` with the buffers of an acceptable
/// chain, `Err` with the buffers accepted before the first bad descriptor.
// Both variants carry a chain on purpose (the model compares the partial
// chain too); this runs in the fuzzer only.
#[allow(clippy::result_large_err)]
pub fn model_walk(mem: &Mem, table: u64, queue_size: u16, head: u16) -> Result<SplitChain, SplitChain> {
    let mut chain = SplitChain::default();
    let (mut table, mut size, mut index) = (u128::from(table), u128::from(queue_size), u128::from(head));
    let mut budget = size;
    let mut indirect = false;
    let mut total: u128 = 0;
    loop {
        if index >= size || budget == 0 {
            return Err(chain);
        }
        budget -= 1;
        let at = table + 16 * index;
        let Ok(at) = u64::try_from(at) else { return Err(chain) };
        if !inside(at, 16) {
            return Err(chain);
        }
        let mut d = [0u8; 16];
        if mem.read_slice(&mut d, GuestAddress(at)).is_err() {
            panic!("model: cannot read 16 bytes at {at:#x} inside guest memory");
        }
        let addr = u64::from_le_bytes(d[0..8].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(d[8..12].try_into().unwrap_or_default());
        let flags = u16::from_le_bytes([d[12], d[13]]);
        let next = u16::from_le_bytes([d[14], d[15]]);
        if flags & INDIRECT != 0 {
            let entries = u128::from(len) / 16;
            if indirect
                || flags & NEXT != 0
                || len == 0
                || len % 16 != 0
                || entries > 65536
                || !inside(addr, len.into())
            {
                return Err(chain);
            }
            (table, size, budget, index, indirect) = (u128::from(addr), entries, entries, 0, true);
            continue;
        }
        total += u128::from(len);
        if total > u128::from(MAX_CHAIN_BYTES) || !inside(addr, len.into()) {
            return Err(chain);
        }
        let b = Buffer { addr: GuestAddress(addr), len };
        if flags & WRITE != 0 {
            chain.writable.push(b);
        } else if chain.writable.is_empty() {
            chain.readable.push(b);
        } else {
            return Err(chain);
        }
        if flags & NEXT == 0 {
            return Ok(chain);
        }
        index = u128::from(next);
    }
}

fn check_buffers(what: &str, chain: &SplitChain) {
    for b in chain.readable.iter().chain(&chain.writable) {
        assert!(inside(b.addr.0, b.len.into()), "{what}: buffer {b:?} outside guest memory");
    }
    let total: u128 = chain.readable.iter().chain(&chain.writable).map(|b| u128::from(b.len)).sum();
    assert!(total <= u128::from(MAX_CHAIN_BYTES), "{what}: {total} bytes in one chain");
    assert_eq!(u128::from(chain.readable_len()) + u128::from(chain.writable_len()), total, "{what}: length sums");
}

fn memory() -> &'static Mutex<Mem> {
    static MEM: OnceLock<Mutex<Mem>> = OnceLock::new();
    MEM.get_or_init(|| {
        let ranges: Vec<(GuestAddress, usize)> = REGIONS.iter().map(|&(a, s)| (GuestAddress(a), s)).collect();
        Mutex::new(Mem::from_ranges(&ranges).expect("guest memory"))
    })
}

/// The guest memory of this process, zeroed, holding `image` from address 0,
/// with clean dirty bitmaps.
pub fn load(image: &[u8]) -> MutexGuard<'static, Mem> {
    let mem = memory().lock().unwrap_or_else(|e| e.into_inner());
    for &(a, s) in &REGIONS {
        mem.write_slice(&vec![0u8; s], GuestAddress(a)).expect("zero region");
    }
    let image = &image[..image.len().min(MAX_IMAGE)];
    mem.write_slice(image, GuestAddress(0)).expect("image");
    for r in mem.iter() {
        // The region's own bitmap (through Deref to MmapRegion), not the slice view.
        let mapping: &vm_memory::MmapRegion<AtomicBitmap> = r;
        mapping.bitmap().reset();
    }
    mem
}

/// The bytes of `buffers`, in order, read from guest memory.
pub fn gather(mem: &Mem, buffers: &[Buffer]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in buffers {
        let mut buf = vec![0u8; b.len as usize];
        mem.read_slice(&mut buf, b.addr).expect("buffer inside guest memory");
        out.extend_from_slice(&buf);
    }
    out
}

fn scratch_file() -> File {
    // SAFETY: the name is NUL-terminated; the flags are constants.
    let fd = unsafe { libc::memfd_create(c"avpfs-fuzz-chain".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
    // SAFETY: `fd` was just returned by memfd_create and is owned by no one else.
    File::from(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The bytes of all regions, in order.
fn dump(mem: &Mem) -> Vec<u8> {
    let mut out = Vec::new();
    for &(a, s) in &REGIONS {
        let mut buf = vec![0u8; s];
        mem.read_slice(&mut buf, GuestAddress(a)).expect("read region");
        out.extend_from_slice(&buf);
    }
    out
}

/// Index into [`dump`] of a guest address inside memory.
fn dump_index(addr: u64) -> usize {
    let mut off = 0;
    for &(a, s) in &REGIONS {
        if addr >= a && addr < a + s as u64 {
            return off + (addr - a) as usize;
        }
        off += s;
    }
    panic!("address {addr:#x} outside guest memory");
}

/// Guest address of each byte of `buffers`, in order.
fn addresses(buffers: &[Buffer]) -> Vec<u64> {
    buffers.iter().flat_map(|b| (0..u64::from(b.len)).map(move |i| b.addr.0 + i)).collect()
}

fn is_dirty(mem: &Mem, addr: u64) -> bool {
    mem.iter().any(|r| {
        let start = r.start_addr().0;
        addr >= start && addr < start + r.len() && r.bitmap().dirty_at((addr - start) as usize)
    })
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed as usize).wrapping_mul(31).wrapping_add(i * 7) as u8 | 1).collect()
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((control, image)) = Control::decode(data) else { return };
    let mem = load(image);

    let table = u64::from(control.desc_table);
    let result = walk_chain(&*mem, GuestAddress(table), control.queue_size, control.head);
    let model = model_walk(&mem, table, control.queue_size, control.head);
    match (&result, &model) {
        (Ok(chain), Ok(m)) => {
            assert_eq!(chain, m, "walk_chain and the model accept different buffers");
            check_buffers("accepted chain", chain);
            exercise(&mem, chain, control);
        }
        (Err(bad), Err(prefix)) => {
            assert_eq!(&*bad.valid, prefix, "walk_chain ({}) and the model refuse at different places", bad.error);
            check_buffers("validated prefix", &bad.valid);
            let mut w = ChainWriter::from_buffers(&*mem, &bad.valid.writable).expect("writer over a validated prefix");
            assert_eq!(w.available() as u64, bad.valid.writable_len());
            let hdr = [0xeeu8; 16];
            assert_eq!(w.write_all(&hdr).is_ok(), bad.valid.writable_len() >= 16);
        }
        (Ok(chain), Err(prefix)) => panic!("walk_chain accepts {chain:?}; the model refuses after {prefix:?}"),
        (Err(bad), Ok(m)) => panic!("walk_chain refuses ({}); the model accepts {m:?}", bad.error),
    }
}

/// Drives the reader and the writer over an accepted chain.
fn exercise(mem: &Mem, chain: &SplitChain, control: Control) {
    let before = dump(mem);
    let modelled = chain.readable_len() <= MODEL_LIMIT && chain.writable_len() <= MODEL_LIMIT;
    let file = scratch_file();

    // Reader.
    let mut r = ChainReader::new(mem, chain).expect("reader over an accepted chain");
    assert_eq!(r.remaining() as u64, chain.readable_len());
    let expected: Vec<u8> = if modelled {
        addresses(&chain.readable).into_iter().map(|a| before[dump_index(a)]).collect()
    } else {
        Vec::new()
    };
    let chunk = usize::from(control.read_chunk.max(1));
    let mut got = Vec::new();
    while got.len() < usize::from(control.copy_bytes) && r.remaining() > 0 {
        let mut buf = vec![0u8; chunk.min(r.remaining())];
        r.read_exact(&mut buf).expect("read_exact within remaining");
        got.extend_from_slice(&buf);
    }
    let left = r.remaining();
    let mut too_much = vec![0u8; left + 1];
    assert!(r.read_exact(&mut too_much).is_err(), "read_exact beyond the request");
    assert_eq!(r.remaining(), left, "a failed read_exact consumed bytes");
    let mut off = 0u64;
    while r.remaining() > 0 {
        let n = r.read_to(file.as_fd(), usize::MAX, off).expect("pwritev from guest memory");
        assert!(n > 0, "read_to made no progress with {} bytes left", r.remaining());
        off += n as u64;
    }
    assert_eq!(off as usize, left, "read_to moved a different number of bytes");
    if modelled {
        let mut tail = vec![0u8; left];
        file.read_exact_at(&mut tail, 0).expect("read back");
        got.extend_from_slice(&tail);
        assert_eq!(got, expected, "the reader's bytes differ from the readable buffers");
    }
    assert_eq!(dump(mem), before, "reading the request changed guest memory");

    // Writer.
    let cap = chain.writable_len() as usize;
    let mut w = ChainWriter::new(mem, chain).expect("writer over an accepted chain");
    assert_eq!((w.available(), w.bytes_written()), (cap, 0));
    let mut model = WriterModel {
        targets: if modelled { addresses(&chain.writable) } else { Vec::new() },
        expect: before,
        written: 0,
        modelled,
    };
    write_checked(&mut w, &pattern(1, 16), &mut model);
    let chunk = usize::from(control.write_chunk.max(1));
    let mut seed = 2;
    while w.bytes_written() < usize::from(control.copy_bytes) && w.available() > 0 {
        let n = chunk.min(w.available());
        write_checked(&mut w, &pattern(seed, n), &mut model);
        seed += 1;
    }
    let too_long = pattern(seed, w.available() + 1);
    write_checked(&mut w, &too_long, &mut model);
    let payload = pattern(99, w.available().min(1 << 20));
    file.set_len(0).expect("truncate");
    file.write_all_at(&payload, 0).expect("payload");
    let mut off = 0;
    while w.available() > 0 && off < payload.len() {
        let n = w.write_from(file.as_fd(), w.available(), off as u64).expect("preadv into guest memory");
        assert!(n > 0, "write_from made no progress");
        model.apply(model.written, &payload[off..off + n]);
        model.written += n;
        off += n;
    }
    assert_eq!(w.bytes_written(), model.written);
    assert_eq!(w.available(), cap - model.written);
    if w.bytes_written() >= 8 {
        let patch = [0x5au8; 8];
        w.write_at(0, &patch).expect("write_at inside the reply");
        model.apply(0, &patch);
    }
    assert!(w.write_at(w.bytes_written(), &[1]).is_err(), "write_at beyond the written reply");
    assert!(w.write_at(usize::MAX, &[1, 2]).is_err(), "write_at with an overflowing offset");

    if modelled {
        let now = dump(mem);
        if now != model.expect {
            let first = now.iter().zip(&model.expect).position(|(a, b)| a != b).unwrap_or(0);
            panic!("guest memory differs from the writer model first at dump offset {first:#x}");
        }
        for &a in &model.targets[..model.written] {
            assert!(is_dirty(mem, a), "guest page of {a:#x} written but not marked dirty");
        }
    }
}

/// What guest memory must look like after the writes so far: each write
/// lands, byte by byte and in order, at the guest addresses of its logical
/// offsets (writable buffers may overlap: the last write wins).
struct WriterModel {
    /// Guest address of each logical byte of the reply.
    targets: Vec<u64>,
    /// Expected content of all regions (see [`dump`]).
    expect: Vec<u8>,
    /// Bytes written so far.
    written: usize,
    modelled: bool,
}

impl WriterModel {
    fn apply(&mut self, offset: usize, data: &[u8]) {
        if !self.modelled {
            return;
        }
        for (i, &v) in data.iter().enumerate() {
            self.expect[dump_index(self.targets[offset + i])] = v;
        }
    }
}

/// `write_all` that must succeed exactly when `data` fits, and the model of it.
fn write_checked<B: BitmapSlice>(w: &mut ChainWriter<'_, B>, data: &[u8], model: &mut WriterModel) {
    let fits = data.len() <= w.available();
    let (written, available) = (w.bytes_written(), w.available());
    assert_eq!(w.write_all(data).is_ok(), fits, "write_all of {} bytes with {available} available", data.len());
    if fits {
        model.apply(written, data);
        model.written += data.len();
    }
    assert_eq!(w.bytes_written(), written + if fits { data.len() } else { 0 }, "bytes_written after write_all");
}
