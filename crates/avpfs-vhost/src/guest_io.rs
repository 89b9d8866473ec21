//! Vectored transfers between a host file and guest memory: one
//! `preadv64`/`pwritev64` on iovecs that point straight into the guest's
//! buffers ([`vectored_io`]), or a read cut in two halves read at once, the
//! second by the worker's helper thread ([`split_read`]).
//!
//! This is the only module of the crate with `unsafe` code: the system
//! calls on raw iovecs ([`transfer`]) and the sending of the helper's
//! iovecs to its thread ([`HelperIovecs`]). What it offers its callers
//! ([`ChainReader`](crate::descriptor_chain::ChainReader),
//! [`ChainWriter`](crate::descriptor_chain::ChainWriter)) is safe: both
//! functions keep the guest memory mapped, and the file open, for as long
//! as the kernel uses the pointers.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};

use vm_memory::bitmap::BitmapSlice;
use vm_memory::VolatileSlice;

/// Most iovecs one `preadv`/`pwritev` takes (the kernel's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Which way a vectored transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// `preadv`: from the file into guest memory.
    FileToGuest,
    /// `pwritev`: from guest memory into the file.
    GuestToFile,
}

/// Moves up to `count` bytes between `fd` at `off` and the leading bytes of
/// `slices`, in one `preadv`/`pwritev` (retried on EINTR). Returns the bytes moved.
pub(crate) fn vectored_io<'s, 'a: 's, B: BitmapSlice + 's>(
    fd: BorrowedFd<'_>,
    slices: impl Iterator<Item = &'s VolatileSlice<'a, B>>,
    count: usize,
    off: u64,
    dir: Direction,
) -> io::Result<usize> {
    let off = i64::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let slices: Vec<_> = slices.take(IOV_MAX).collect();
    let mapped = MappedIovecs::new(slices.iter().copied(), count, dir);
    if mapped.iovecs.is_empty() {
        return Ok(0);
    }
    // SAFETY: `mapped` keeps every iovec's guest memory mapped (it borrows
    // the slices and holds their pointer guards) until it is dropped, after
    // the call.
    let n = unsafe { transfer(fd.as_raw_fd(), &mapped.iovecs, off, dir) }?;
    if dir == Direction::FileToGuest {
        mark_dirty(&slices, 0, n);
    }
    Ok(n)
}

/// Marks bytes `[start, start + len)` of `slices` (taken end to end) in the
/// dirty-page log of live migration (a no-op while the front end logs
/// nothing). The kernel wrote them behind vm-memory's back, so its
/// bitmap did not see the write; marking after the write is what the
/// protocol asks (the front end sends a page again if its bit is set when
/// it syncs the log).
fn mark_dirty<B: BitmapSlice>(slices: &[&VolatileSlice<'_, B>], mut start: usize, mut len: usize) {
    for s in slices {
        if len == 0 {
            break;
        }
        if start >= s.len() {
            start -= s.len();
            continue;
        }
        let n = len.min(s.len() - start);
        s.bitmap().mark_dirty(start, n);
        len -= n;
        start = 0;
    }
}

/// Reads up to `count` bytes of `fd` at `off` into the leading bytes of
/// `slices` in two parts: the bytes from `at` on by the helper thread, the
/// ones before by the caller, both at once (`run_split` runs its job on
/// another thread while it runs its closure, and returns when both are
/// done). Returns how many bytes each part read; the second's failure reads
/// as 0 bytes (one `preadv` would have stopped there), the first's is
/// returned.
pub(crate) fn split_read<'s, 'a: 's, B: BitmapSlice + 's>(
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
    let slices: Vec<_> = slices.take(IOV_MAX).collect();
    let mapped = MappedIovecs::new(slices.iter().copied(), count, Direction::FileToGuest);
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
    let first = ours.unwrap_or(Ok(0));
    let second = theirs.lock().unwrap_or_else(|e| e.into_inner()).take().and_then(Result::ok).unwrap_or(0);
    // Both halves may have written, whatever the first's result.
    mark_dirty(&slices, 0, *first.as_ref().unwrap_or(&0));
    mark_dirty(&slices, at, second);
    Ok((first?, second))
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
    use std::io::Write as _;
    use std::os::fd::AsFd;

    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

    use super::*;

    fn memory() -> GuestMemoryMmap {
        // Two adjacent regions, so that buffers can straddle them.
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000), (GuestAddress(0x10000), 0x10000)]).unwrap()
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
        let slices = [
            mem.get_slice(GuestAddress(0x10000 - 0x3000), 0x3000).unwrap(),
            mem.get_slice(GuestAddress(0x12000), 0x6000).unwrap(),
        ];
        let read_back = |n: usize| {
            let mut out = vec![0u8; n];
            let first = n.min(0x3000);
            mem.read_slice(&mut out[..first], GuestAddress(0x10000 - 0x3000)).unwrap();
            mem.read_slice(&mut out[first..], GuestAddress(0x12000)).unwrap();
            out
        };
        // Cut inside the second buffer; the file covers the whole read.
        let used = std::cell::Cell::new(false);
        let got = split_read(file.as_fd(), slices.iter(), 0x9000, 0, 0x5000, on_two_threads(&used)).unwrap();
        assert!(used.get());
        assert_eq!(got, (0x5000, 0x4000));
        assert!(read_back(0x9000) == data);
        // At an offset: the file ends inside the second half.
        let got = split_read(file.as_fd(), slices.iter(), 0x9000, 0x1000, 0x4000, on_two_threads(&used)).unwrap();
        assert_eq!(got, (0x4000, 0x4000));
        assert!(read_back(0x8000) == data[0x1000..]);
        // The file ends inside the first half: the second reads nothing.
        let got = split_read(file.as_fd(), slices.iter(), 0x9000, 0x6000, 0x4000, on_two_threads(&used)).unwrap();
        assert_eq!(got, (0x3000, 0));
        // A failing first half fails the read.
        let dir = std::fs::File::open("/").unwrap();
        let err = split_read(dir.as_fd(), slices.iter(), 0x9000, 0, 0x4000, on_two_threads(&used)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EISDIR));
    }

    #[test]
    fn reads_into_guest_memory_mark_their_pages_dirty_and_only_them() {
        use vm_memory::bitmap::{AtomicBitmap, Bitmap as _};
        use vm_memory::GuestMemoryRegion as _;
        type Logged = GuestMemoryMmap<AtomicBitmap>;
        let mem = Logged::from_ranges(&[(GuestAddress(0), 0x10000), (GuestAddress(0x10000), 0x10000)]).unwrap();
        let dirty = |mem: &Logged| -> Vec<u64> {
            let mut pages = Vec::new();
            for r in mem.iter() {
                for off in (0..r.len()).step_by(0x1000) {
                    if r.bitmap().dirty_at(off as usize) {
                        pages.push((r.start_addr().0 + off) / 0x1000);
                    }
                }
            }
            pages
        };
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[7u8; 0x9000]).unwrap();
        // 0x1800 bytes at 0xf000 (two pages of the first region), then 0x2000 at 0x13000.
        let slices = [
            mem.get_slice(GuestAddress(0xf000), 0x1000).unwrap(),
            mem.get_slice(GuestAddress(0x13000), 0x2000).unwrap(),
        ];
        // Writing the file from guest memory dirties nothing.
        vectored_io(file.as_fd(), slices.iter(), 0x3000, 0, Direction::GuestToFile).unwrap();
        assert_eq!(dirty(&mem), Vec::<u64>::new());
        // 0x1800 bytes read: the first buffer's page and the first page of the second.
        assert_eq!(vectored_io(file.as_fd(), slices.iter(), 0x1800, 0, Direction::FileToGuest).unwrap(), 0x1800);
        assert_eq!(dirty(&mem), vec![0xf, 0x13]);
        // A split read marks both halves.
        let mem2 = Logged::from_ranges(&[(GuestAddress(0), 0x40000)]).unwrap();
        let slices = [mem2.get_slice(GuestAddress(0x10000), 0x8000).unwrap()];
        let used = std::cell::Cell::new(false);
        let got = split_read(file.as_fd(), slices.iter(), 0x8000, 0, 0x4000, on_two_threads(&used)).unwrap();
        assert_eq!(got, (0x4000, 0x4000));
        assert_eq!(dirty(&mem2), (0x10..0x18).collect::<Vec<u64>>());
    }
}
