//! The DAX window: FUSE_SETUPMAPPING and FUSE_REMOVEMAPPING.
//!
//! A transport that has a shared-memory window (vhost-user's SHMEM region,
//! which the VMM exposes to the guest as the virtio-fs cache) lends it to
//! the [`Server`] as a [`DaxWindow`]. The server checks every request and
//! keeps the session's map of the window (which ranges are mapped), so that
//! a replaced or removed range is unmapped exactly as it was mapped, and
//! every mapping is dropped when the session ends.
//!
//! The rules, each with its errno, nothing mapped when one fails:
//! - no window: `ENOSYS` (the client then does not use DAX);
//! - flags other than READ/WRITE: `EINVAL`;
//! - `moffset`, `len` and `foffset` not multiples of [`DAX_ALIGNMENT`],
//!   `len` zero, `moffset + len` past the window or any sum overflowing:
//!   `EINVAL`;
//! - the descriptor comes from [`FileSystem::dax_fd`], which checks the
//!   handle (`EBADF`: unknown, or of another node), the access (`EACCES`: a
//!   write mapping through a handle not open for writing) and the policy
//!   (`EROFS`: a write mapping where writes are denied; `ENOENT`: a hidden
//!   file);
//! - not a regular file: `ENODEV`;
//! - under per-inode DAX (FUSE_HAS_INODE_DAX negotiated), a file the file
//!   system does not pick ([`FileSystem::dax_pick`], which decides
//!   FUSE_ATTR_DAX too): `EPERM`, so that a client cannot map what it was
//!   not offered;
//! - `foffset` at or past the end of the file: `ENXIO`. A mapping may
//!   extend past the end of the file (the Linux client maps 2 MiB ranges
//!   whatever the file size, and never touches the pages past its end): the
//!   pages past the end stay a hazard if the file shrinks, see docs/dax.md;
//! - a range overlapping a mapping it does not wholly cover: `EBUSY`. A
//!   range that wholly covers existing mappings replaces them (they are
//!   unmapped first): the Linux client re-maps a range in place to make a
//!   read mapping writable. A partial overlap would leave part of an old
//!   mapping, which the front end cannot express (SHMEM_UNMAP removes
//!   whole mappings).
//!
//! REMOVEMAPPING removes the mappings inside each range; a range with no
//! mapping is no error (the client may remove what a reset already
//! dropped), a range cutting a mapping in two is `EINVAL`. All ranges are
//! checked before any is removed.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, RwLock};

use log::warn;

/// log2 of [`DAX_ALIGNMENT`], as FUSE_INIT's `map_alignment` announces it.
pub const DAX_ALIGNMENT_LOG2: u16 = 12;
/// The alignment of every offset and length in the window: the page size.
pub const DAX_ALIGNMENT: u64 = 1 << DAX_ALIGNMENT_LOG2;

/// A shared-memory window a transport maps files into.
pub trait DaxWindow: Send + Sync {
    /// The size of the window in bytes.
    fn size(&self) -> u64;
    /// Maps `len` bytes of `fd` from `foffset` at `moffset` in the window,
    /// readable and, with `writable`, writable. The range is checked and
    /// free.
    fn map(&self, fd: BorrowedFd<'_>, foffset: u64, moffset: u64, len: u64, writable: bool) -> io::Result<()>;
    /// Removes the mapping made at `moffset` of `len` bytes.
    fn unmap(&self, moffset: u64, len: u64) -> io::Result<()>;
}

/// The errno of a bad range.
fn einval<T>() -> Result<T, i32> {
    Err(libc::EINVAL)
}

/// Checks that `moffset..moffset + len` is a non-empty, aligned range
/// inside a window of `size` bytes; returns its end.
pub fn check_range(size: u64, moffset: u64, len: u64) -> Result<u64, i32> {
    let Some(end) = moffset.checked_add(len) else { return einval() };
    if len == 0 || end > size || !moffset.is_multiple_of(DAX_ALIGNMENT) || !len.is_multiple_of(DAX_ALIGNMENT) {
        return einval();
    }
    Ok(end)
}

/// A session's window and what is mapped in it.
#[derive(Default)]
pub(crate) struct Dax {
    window: RwLock<Option<Arc<dyn DaxWindow>>>,
    /// Mappings by start offset: their lengths.
    mapped: Mutex<BTreeMap<u64, u64>>,
}

impl Dax {
    pub(crate) fn window(&self) -> Option<Arc<dyn DaxWindow>> {
        self.window.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lends a window (or takes it back); forgets the old window's mappings.
    pub(crate) fn set_window(&self, window: Option<Arc<dyn DaxWindow>>) {
        let mut w = self.window.write().unwrap_or_else(|e| e.into_inner());
        self.mapped.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *w = window;
    }

    /// How many mappings the window holds.
    pub(crate) fn mapping_count(&self) -> usize {
        self.mapped.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The mappings overlapping `start..end`: `EBUSY` when one is not
    /// wholly inside.
    fn covered(mapped: &BTreeMap<u64, u64>, start: u64, end: u64, partial: i32) -> Result<Vec<(u64, u64)>, i32> {
        let mut out = Vec::new();
        // The last mapping starting before `start` may reach into the range.
        if let Some((&s, &l)) = mapped.range(..start).next_back() {
            if s + l > start {
                return Err(partial);
            }
        }
        for (&s, &l) in mapped.range(start..end) {
            if s + l > end {
                return Err(partial);
            }
            out.push((s, l));
        }
        Ok(out)
    }

    /// Maps `fd` as checked by the caller (everything but the window's own
    /// rules, which are checked here).
    pub(crate) fn setup(
        &self,
        window: &dyn DaxWindow,
        fd: impl AsFd,
        foffset: u64,
        moffset: u64,
        len: u64,
        writable: bool,
    ) -> Result<(), i32> {
        let end = check_range(window.size(), moffset, len)?;
        let mut mapped = self.mapped.lock().unwrap_or_else(|e| e.into_inner());
        for (s, l) in Self::covered(&mapped, moffset, end, libc::EBUSY)? {
            mapped.remove(&s);
            window.unmap(s, l).map_err(crate::server::errno)?;
        }
        window.map(fd.as_fd(), foffset, moffset, len, writable).map_err(crate::server::errno)?;
        mapped.insert(moffset, len);
        Ok(())
    }

    /// Removes the mappings inside each range, after checking them all.
    pub(crate) fn remove(&self, window: &dyn DaxWindow, ranges: &[(u64, u64)]) -> Result<(), i32> {
        let mut mapped = self.mapped.lock().unwrap_or_else(|e| e.into_inner());
        let mut doomed = Vec::new();
        for &(moffset, len) in ranges {
            let end = check_range(window.size(), moffset, len)?;
            doomed.extend(Self::covered(&mapped, moffset, end, libc::EINVAL)?);
        }
        for (s, l) in doomed {
            if mapped.remove(&s).is_some() {
                window.unmap(s, l).map_err(crate::server::errno)?;
            }
        }
        Ok(())
    }

    /// Drops every mapping (the session ended); errors are logged (the
    /// front end may be gone already).
    pub(crate) fn clear(&self) {
        let Some(window) = self.window() else { return };
        let mut mapped = self.mapped.lock().unwrap_or_else(|e| e.into_inner());
        for (s, l) in std::mem::take(&mut *mapped) {
            if let Err(e) = window.unmap(s, l) {
                warn!("DAX: cannot unmap {l:#x} bytes at {s:#x} of the window: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_must_be_aligned_non_empty_and_inside() {
        let size = 1 << 20;
        assert_eq!(check_range(size, 0, 4096), Ok(4096));
        assert_eq!(check_range(size, size - 4096, 4096), Ok(size));
        assert_eq!(check_range(size, size, 4096), Err(libc::EINVAL));
        assert_eq!(check_range(size, 0, 0), Err(libc::EINVAL));
        assert_eq!(check_range(size, 1, 4096), Err(libc::EINVAL));
        assert_eq!(check_range(size, 0, 4097), Err(libc::EINVAL));
        assert_eq!(check_range(size, u64::MAX - 4095, 4096), Err(libc::EINVAL));
        assert_eq!(check_range(u64::MAX, 4096, u64::MAX - 4095), Err(libc::EINVAL));
    }

    #[test]
    fn covered_mappings_must_be_wholly_inside() {
        let mut m = BTreeMap::new();
        m.insert(0, 8192);
        m.insert(16384, 4096);
        assert_eq!(Dax::covered(&m, 0, 8192, libc::EBUSY), Ok(vec![(0, 8192)]));
        assert_eq!(Dax::covered(&m, 0, 4096, libc::EBUSY), Err(libc::EBUSY));
        assert_eq!(Dax::covered(&m, 4096, 12288, libc::EBUSY), Err(libc::EBUSY));
        assert_eq!(Dax::covered(&m, 8192, 16384, libc::EBUSY), Ok(vec![]));
        assert_eq!(Dax::covered(&m, 0, 20480, libc::EBUSY), Ok(vec![(0, 8192), (16384, 4096)]));
    }
}
