//! Guest memory: memfd-backed regions shared with the backend, and a small
//! first-fit allocator for buffers, rings and descriptor tables.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fs::File;
use std::sync::Arc;

use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap, MmapRegion};

/// Errors of guest memory management.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `memfd_create` or sizing the memfd failed.
    #[error("cannot create the memfd: {0}")]
    Memfd(#[source] std::io::Error),
    /// Mapping the memfd failed.
    #[error("cannot map guest memory: {0}")]
    Mmap(String),
    /// The new region overlaps an existing one, or its size is zero.
    #[error("cannot add a region at {gpa:#x} of {size:#x} bytes: {reason}")]
    Region {
        /// Guest physical address of the region.
        gpa: u64,
        /// Its size.
        size: u64,
        /// Why it was refused.
        reason: String,
    },
    /// No free range of the requested size.
    #[error("out of guest memory for {0} bytes")]
    OutOfMemory(usize),
    /// An address that was not handed out by the allocator.
    #[error("{0:#x} was not allocated")]
    NotAllocated(u64),
}

/// Creates a memfd of `size` bytes.
pub fn memfd(name: &CStr, size: u64) -> Result<File, Error> {
    let file = File::from(avpfs_sys::memfd::memfd_create(name, 0).map_err(Error::Memfd)?);
    file.set_len(size).map_err(Error::Memfd)?;
    Ok(file)
}

/// Maps a new shared memfd of `size` bytes at guest address `gpa`.
pub fn memfd_region(gpa: GuestAddress, size: usize) -> Result<GuestRegionMmap, Error> {
    let file = memfd(c"avpfs-guest", size as u64)?;
    let mapping = MmapRegion::from_file(FileOffset::new(file, 0), size).map_err(|e| Error::Mmap(e.to_string()))?;
    GuestRegionMmap::new(mapping, gpa).ok_or_else(|| Error::Region {
        gpa: gpa.0,
        size: size as u64,
        reason: "it wraps the address space".into(),
    })
}

/// Returns `mem` with `region` added.
pub fn insert_region(mem: &GuestMemoryMmap, region: GuestRegionMmap) -> Result<GuestMemoryMmap, Error> {
    let (gpa, size) = (region.start_addr().0, region.len());
    mem.insert_region(Arc::new(region)).map_err(|e| Error::Region { gpa, size, reason: e.to_string() })
}

/// First-fit allocator over guest address ranges, with coalescing.
#[derive(Debug, Default)]
pub struct Allocator {
    /// Free ranges: start -> length.
    free: BTreeMap<u64, u64>,
    /// Handed-out ranges: start -> length.
    used: BTreeMap<u64, u64>,
}

/// The least alignment of every allocation (a descriptor table needs 16).
const ALIGN: u64 = 64;

impl Allocator {
    /// Makes `[start, start + len)` available.
    pub fn add_range(&mut self, start: u64, len: u64) {
        let start_aligned = start.next_multiple_of(ALIGN);
        let len = len.saturating_sub(start_aligned - start);
        if len > 0 {
            self.release(start_aligned, len);
        }
    }

    /// Withdraws every free range inside `[start, start + len)`. Allocations
    /// still in use there are forgotten.
    pub fn remove_range(&mut self, start: u64, len: u64) {
        let end = start.saturating_add(len);
        self.free.retain(|&s, l| s + *l <= start || s >= end);
        self.used.retain(|&s, l| s + *l <= start || s >= end);
    }

    /// Allocates `len` bytes (at least 1), optionally inside `[lo, hi)`.
    pub fn alloc(&mut self, len: usize, within: Option<(u64, u64)>) -> Result<GuestAddress, Error> {
        self.alloc_aligned(len, ALIGN, within)
    }

    /// Allocates `len` bytes (at least 1) at a multiple of `align` (rounded
    /// up to a power of two of at least 64 bytes), optionally inside `[lo, hi)`.
    pub fn alloc_aligned(&mut self, len: usize, align: u64, within: Option<(u64, u64)>) -> Result<GuestAddress, Error> {
        let align = align.max(ALIGN).checked_next_power_of_two().ok_or(Error::OutOfMemory(len))?;
        let size = (len.max(1) as u64).next_multiple_of(ALIGN);
        let (lo, hi) = within.unwrap_or((0, u64::MAX));
        let found = self.free.iter().find_map(|(&s, &l)| {
            let start = s.max(lo).checked_next_multiple_of(align)?;
            let end = (s + l).min(hi);
            (end > start && end - start >= size).then_some((s, l, start))
        });
        let (s, l, start) = found.ok_or(Error::OutOfMemory(len))?;
        self.free.remove(&s);
        if start > s {
            self.free.insert(s, start - s);
        }
        let tail = s + l - (start + size);
        if tail > 0 {
            self.free.insert(start + size, tail);
        }
        self.used.insert(start, size);
        Ok(GuestAddress(start))
    }

    /// Frees an allocation.
    pub fn free(&mut self, addr: GuestAddress) -> Result<(), Error> {
        let len = self.used.remove(&addr.0).ok_or(Error::NotAllocated(addr.0))?;
        self.release(addr.0, len);
        Ok(())
    }

    fn release(&mut self, mut start: u64, mut len: u64) {
        if let Some((&ps, &pl)) = self.free.range(..start).next_back() {
            if ps + pl == start {
                self.free.remove(&ps);
                start = ps;
                len += pl;
            }
        }
        if let Some(&nl) = self.free.get(&(start + len)) {
            self.free.remove(&(start + len));
            len += nl;
        }
        self.free.insert(start, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_frees_and_coalesces() {
        let mut a = Allocator::default();
        a.add_range(0x1000, 0x1000);
        let x = a.alloc(100, None).unwrap();
        let y = a.alloc(0x100, None).unwrap();
        assert_eq!(x, GuestAddress(0x1000));
        assert_eq!(y, GuestAddress(0x1080));
        assert!(a.alloc(0x1000, None).is_err());
        a.free(x).unwrap();
        a.free(y).unwrap();
        assert!(a.free(y).is_err());
        assert_eq!(a.alloc(0x1000, None).unwrap(), GuestAddress(0x1000));
    }

    #[test]
    fn aligned_allocations_start_on_the_boundary_and_free_the_gap() {
        let mut a = Allocator::default();
        a.add_range(0, 0x10000);
        assert_eq!(a.alloc(100, None).unwrap(), GuestAddress(0));
        let page = a.alloc_aligned(0x2000, 0x1000, None).unwrap();
        assert_eq!(page, GuestAddress(0x1000));
        // The gap before the aligned block stays allocatable.
        assert_eq!(a.alloc(64, None).unwrap(), GuestAddress(0x80));
        // Alignments below 64 bytes, or not powers of two, are rounded up.
        assert_eq!(a.alloc_aligned(1, 3000, None).unwrap(), GuestAddress(0x1000 + 0x2000));
        assert_eq!(a.alloc_aligned(1, 16, None).unwrap(), GuestAddress(0xc0));
        assert!(a.alloc_aligned(1, u64::MAX, None).is_err());
        assert!(a.alloc_aligned(0x1000, 0x10000, None).is_err());
        a.free(page).unwrap();
        assert_eq!(a.alloc_aligned(0x2000, 0x1000, None).unwrap(), GuestAddress(0x1000));
    }

    #[test]
    fn allocates_within_a_range() {
        let mut a = Allocator::default();
        a.add_range(0, 0x10000);
        a.add_range(0x100000, 0x10000);
        assert_eq!(a.alloc(64, Some((0x100000, 0x110000))).unwrap(), GuestAddress(0x100000));
        a.remove_range(0x100000, 0x10000);
        assert!(a.alloc(64, Some((0x100000, 0x110000))).is_err());
    }
}
