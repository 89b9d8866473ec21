//! The DAX window: FUSE_SETUPMAPPING and FUSE_REMOVEMAPPING.
//!
//! A transport that has a shared-memory window (vhost-user's SHMEM region,
//! which the VMM exposes to the guest as the virtio-fs cache) lends it to
//! the [`Server`](crate::Server) as a [`DaxWindow`]. The server checks
//! every request and keeps the session's map of the window (which ranges
//! are mapped, and how), so that a replaced or removed range is unmapped
//! exactly as it was mapped, and every mapping is dropped when the session
//! ends.
//!
//! The rules, each with its errno, nothing mapped when one fails:
//! - no window: `ENOSYS` (the client then does not use DAX);
//! - flags other than READ/WRITE: `EINVAL`;
//! - `moffset`, `len` and `foffset` not multiples of [`DAX_ALIGNMENT`],
//!   `len` zero, `moffset + len` past the window or any sum overflowing:
//!   `EINVAL`;
//! - the descriptor comes from [`FileSystem::dax_fd`](crate::FileSystem::dax_fd),
//!   which checks the handle (`EBADF`: unknown, or of another node), the
//!   access (`EACCES`: a write mapping through a handle not open for
//!   writing) and the policy (`EROFS`: a write mapping where writes are
//!   denied; `ENOENT`: a hidden file). A front end that maps every request
//!   writable ([`DaxFrontEnd::Qemu11`]) gets a writable descriptor for a
//!   read mapping too, so a read mapping of a file the guest may not write
//!   fails there as a write mapping would;
//! - not a regular file: `ENODEV`;
//! - under per-inode DAX (FUSE_HAS_INODE_DAX negotiated), a file the file
//!   system does not pick: `EPERM`, so that a client cannot map what it was
//!   not offered;
//! - `foffset` at or past the end of the file: `ENXIO`;
//! - [`DaxFrontEnd::Qemu11`] only: a write mapping whose range holds the
//!   file's last page when the file ends inside that page: `EOPNOTSUPP`
//!   (that page can only be lent as a copy, see "The end of the file");
//! - a range overlapping a mapping it does not wholly cover: `EBUSY`. A
//!   range that wholly covers existing mappings replaces them (they are
//!   unmapped first): the Linux client re-maps a range in place to make a
//!   read mapping writable.
//!
//! REMOVEMAPPING removes the mappings inside each range; a range with no
//! mapping is no error (the client may remove what a reset already
//! dropped), a range cutting a mapping in two is `EINVAL`. All ranges are
//! checked before any is removed.
//!
//! # The end of the file
//!
//! The Linux client maps 2 MiB ranges whatever the file's size. Pages of a
//! shared file mapping past the end of the file raise SIGBUS in the process
//! that touches them, and that process is the VMM: a guest (or a stale
//! idea of a file's size) would kill its own VM. So no mapping ever lends
//! the front end a page past the end of the file: a range is mapped from
//! the file up to the end of the file's last page, and the rest of the
//! range stays a hole (reads as zeros, writes are dropped, nothing dies).
//! A front end that refuses a mapping longer than the file
//! ([`DaxFrontEnd::Qemu11`]) gets the file's whole pages, and the last,
//! partial page as a copy (a 4 KiB memfd), read-only in spirit: stores to
//! it reach no file, which is why a write mapping over it is refused.
//!
//! Sizes change. Every change avpfs makes itself is followed by a
//! *refit* of every mapping of that file in every session of the process
//! (all guests of all shares): the mapping is made again for the new size
//! (a file that grew shows its new pages; a fresh copy of a partial last
//! page), and a truncation refits to the smaller size *before* the file
//! shrinks, so that no page past the new end is ever mapped. A change made
//! by a host process, or another daemon, is not seen: docs/dax.md says
//! what an integrator must do.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockWriteGuard, Weak};

use log::warn;

/// log2 of [`DAX_ALIGNMENT`], as FUSE_INIT's `map_alignment` announces it.
pub const DAX_ALIGNMENT_LOG2: u16 = 12;
/// The alignment of every offset and length in the window: the page size.
pub const DAX_ALIGNMENT: u64 = 1 << DAX_ALIGNMENT_LOG2;

/// What a front end does with a mapping request beyond the protocol's
/// words: the two ways a mapping can be lent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DaxFrontEnd {
    /// QEMU 11.1 (the first VMM with vhost-user SHMEM_MAP): every mapping
    /// is made shared and writable, so a read mapping needs a writable
    /// descriptor; a mapping longer than the file is refused, and a refusal
    /// closes the back-end channel. avpfs therefore never sends one.
    #[default]
    Qemu11,
    /// Maps a read request read-only and accepts any descriptor mmap(2)
    /// accepts.
    Mmap,
}

impl DaxFrontEnd {
    /// The name on the command line and in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            DaxFrontEnd::Qemu11 => "qemu-11.1",
            DaxFrontEnd::Mmap => "mmap",
        }
    }

    /// Whether it maps every request writable, a read mapping too (so a
    /// read mapping needs a writable descriptor).
    pub fn maps_all_writable(self) -> bool {
        self == DaxFrontEnd::Qemu11
    }

    /// The front end of `name` (see [`DaxFrontEnd::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [DaxFrontEnd::Qemu11, DaxFrontEnd::Mmap].into_iter().find(|f| f.name() == name)
    }
}

/// A shared-memory window a transport maps files into.
pub trait DaxWindow: Send + Sync {
    /// The size of the window in bytes.
    fn size(&self) -> u64;
    /// How the front end maps.
    fn front_end(&self) -> DaxFrontEnd;
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

/// A host file: device and inode number.
pub type FileId = (u64, u64);

/// How a guest's range is lent for a file of a given size: the bytes
/// mapped from the file (whole pages from the start of the range), and
/// whether a copy of the file's partial last page follows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub file_len: u64,
    pub tail_copy: bool,
}

impl Layout {
    /// The layout of `len` bytes from `foffset` of a file of `size` bytes.
    pub(crate) fn of(front_end: DaxFrontEnd, size: u64, foffset: u64, len: u64) -> Layout {
        let avail = size.saturating_sub(foffset);
        if avail >= len {
            return Layout { file_len: len, tail_copy: false };
        }
        let partial = !avail.is_multiple_of(DAX_ALIGNMENT);
        match front_end {
            DaxFrontEnd::Mmap => Layout { file_len: avail.next_multiple_of(DAX_ALIGNMENT), tail_copy: false },
            DaxFrontEnd::Qemu11 => Layout { file_len: avail - avail % DAX_ALIGNMENT, tail_copy: partial },
        }
    }

    /// Whether the guest's whole range is the file's (no hole, no copy).
    pub(crate) fn whole(self, len: u64) -> bool {
        self.file_len == len
    }
}

/// One guest mapping: its range and the file it lends (how it is lent
/// now is its [`Layout`], kept beside it).
struct Mapping {
    len: u64,
    file: FileId,
    foffset: u64,
    writable: bool,
    /// The descriptor it is mapped from (kept to map it again on a refit).
    fd: Arc<OwnedFd>,
}

impl Mapping {
    /// The front-end mappings lending it now: (window offset, length).
    fn pieces(moffset: u64, lay: Layout) -> impl Iterator<Item = (u64, u64)> {
        let file = (lay.file_len > 0).then_some((moffset, lay.file_len));
        let tail = lay.tail_copy.then_some((moffset + lay.file_len, DAX_ALIGNMENT));
        file.into_iter().chain(tail)
    }
}

/// A copy of the file's partial last page, from `start` to `size`, zeros
/// after: a 4 KiB memfd.
fn tail_copy(fd: BorrowedFd<'_>, start: u64, size: u64) -> io::Result<OwnedFd> {
    let mut page = [0u8; DAX_ALIGNMENT as usize];
    let want = size.saturating_sub(start).min(DAX_ALIGNMENT) as usize;
    let mut got = 0;
    while got < want {
        match avpfs_sys::io::pread(fd, &mut page[got..want], start + got as u64)? {
            0 => break, // the file shrank meanwhile: zeros, as past its end
            n => got += n,
        }
    }
    let copy = avpfs_sys::memfd::memfd_create(c"avpfs-dax-last-page", 0)?;
    let n = avpfs_sys::io::pwrite(copy.as_fd(), &page, 0)?;
    if n != page.len() {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(copy)
}

/// Maps `lay` of a guest range: the file's pages, then the copy of its
/// last page. All or nothing: on an error what was mapped is unmapped.
#[allow(clippy::too_many_arguments)]
fn lend(
    window: &dyn DaxWindow,
    fd: BorrowedFd<'_>,
    size: u64,
    foffset: u64,
    moffset: u64,
    lay: Layout,
    writable: bool,
) -> io::Result<()> {
    if lay.file_len > 0 {
        window.map(fd, foffset, moffset, lay.file_len, writable)?;
    }
    if lay.tail_copy {
        let at = moffset + lay.file_len;
        let r = tail_copy(fd, foffset + lay.file_len, size)
            .and_then(|copy| window.map(copy.as_fd(), 0, at, DAX_ALIGNMENT, writable));
        if let Err(e) = r {
            if lay.file_len > 0 {
                if let Err(u) = window.unmap(moffset, lay.file_len) {
                    warn!("DAX: cannot unmap {:#x} bytes at {moffset:#x} of the window: {u}", lay.file_len);
                }
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Unmaps what lends a mapping; errors are logged (the front end may be
/// gone already).
fn unlend(window: &dyn DaxWindow, moffset: u64, lay: Layout) {
    for (s, l) in Mapping::pieces(moffset, lay) {
        if let Err(e) = window.unmap(s, l) {
            warn!("DAX: cannot unmap {l:#x} bytes at {s:#x} of the window: {e}");
        }
    }
}

/// The sessions of the process (with or without a window), for refits.
static SESSIONS: Mutex<Vec<Weak<State>>> = Mutex::new(Vec::new());
/// Held shared while a mapping is made, exclusively while avpfs changes
/// the size of a file some guest may map.
static SIZES: RwLock<()> = RwLock::new(());
/// Sessions with a window, in the process.
static WINDOWS: AtomicUsize = AtomicUsize::new(0);
/// Mappings in the process that a growing file changes (not whole).
static PARTIAL: AtomicUsize = AtomicUsize::new(0);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A session's window and what is mapped in it.
#[derive(Default)]
struct State {
    window: RwLock<Option<Arc<dyn DaxWindow>>>,
    /// Mappings by start offset.
    mapped: Mutex<BTreeMap<u64, (Mapping, Layout)>>,
}

impl State {
    fn window(&self) -> Option<Arc<dyn DaxWindow>> {
        self.window.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Adds a mapping to a session's map.
fn put(mapped: &mut BTreeMap<u64, (Mapping, Layout)>, moffset: u64, m: Mapping, lay: Layout) {
    if !lay.whole(m.len) {
        PARTIAL.fetch_add(1, Ordering::Relaxed);
    }
    mapped.insert(moffset, (m, lay));
}

/// Takes a mapping out of a session's map.
fn take(mapped: &mut BTreeMap<u64, (Mapping, Layout)>, moffset: u64) -> Option<(Mapping, Layout)> {
    let out = mapped.remove(&moffset);
    if let Some((m, lay)) = &out {
        if !lay.whole(m.len) {
            PARTIAL.fetch_sub(1, Ordering::Relaxed);
        }
    }
    out
}

/// A session's DAX state.
pub(crate) struct Dax {
    state: Arc<State>,
}

impl Default for Dax {
    fn default() -> Self {
        let state = Arc::new(State::default());
        let mut all = lock(&SESSIONS);
        all.retain(|s| s.strong_count() > 0);
        all.push(Arc::downgrade(&state));
        Dax { state }
    }
}

impl Drop for Dax {
    fn drop(&mut self) {
        self.set_window(None);
    }
}

impl Dax {
    pub(crate) fn window(&self) -> Option<Arc<dyn DaxWindow>> {
        self.state.window()
    }

    /// Lends a window (or takes it back); forgets the old window's mappings.
    pub(crate) fn set_window(&self, window: Option<Arc<dyn DaxWindow>>) {
        let mut w = self.state.window.write().unwrap_or_else(|e| e.into_inner());
        let mut mapped = lock(&self.state.mapped);
        for moffset in mapped.keys().copied().collect::<Vec<_>>() {
            take(&mut mapped, moffset);
        }
        match (w.is_some(), window.is_some()) {
            (false, true) => drop(WINDOWS.fetch_add(1, Ordering::Relaxed)),
            (true, false) => drop(WINDOWS.fetch_sub(1, Ordering::Relaxed)),
            _ => {}
        }
        *w = window;
    }

    /// How many mappings the window holds.
    pub(crate) fn mapping_count(&self) -> usize {
        lock(&self.state.mapped).len()
    }

    /// The mappings overlapping `start..end`: `partial` when one is not
    /// wholly inside.
    fn covered(mapped: &BTreeMap<u64, (Mapping, Layout)>, start: u64, end: u64, partial: i32) -> Result<Vec<u64>, i32> {
        let mut out = Vec::new();
        // The last mapping starting before `start` may reach into the range.
        if let Some((&s, (m, _))) = mapped.range(..start).next_back() {
            if s + m.len > start {
                return Err(partial);
            }
        }
        for (&s, (m, _)) in mapped.range(start..end) {
            if s + m.len > end {
                return Err(partial);
            }
            out.push(s);
        }
        Ok(out)
    }

    /// Maps `len` bytes of `file` (descriptor `fd`, `size` bytes now) from
    /// `foffset` at `moffset`, as checked by the caller, who holds
    /// [`steady_sizes`] since it read `size` (everything but the window's
    /// own rules and the end of the file's, which are checked here).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn setup(
        &self,
        window: &dyn DaxWindow,
        fd: OwnedFd,
        file: FileId,
        size: u64,
        foffset: u64,
        moffset: u64,
        len: u64,
        writable: bool,
    ) -> Result<(), i32> {
        let end = check_range(window.size(), moffset, len)?;
        let lay = Layout::of(window.front_end(), size, foffset, len);
        if lay.tail_copy && writable {
            return Err(libc::EOPNOTSUPP);
        }
        let mut mapped = lock(&self.state.mapped);
        for s in Self::covered(&mapped, moffset, end, libc::EBUSY)? {
            if let Some((_, old)) = take(&mut mapped, s) {
                unlend(window, s, old);
            }
        }
        lend(window, fd.as_fd(), size, foffset, moffset, lay, writable).map_err(crate::server::errno)?;
        let m = Mapping { len, file, foffset, writable, fd: Arc::new(fd) };
        put(&mut mapped, moffset, m, lay);
        Ok(())
    }

    /// Removes the mappings inside each range, after checking them all.
    pub(crate) fn remove(&self, window: &dyn DaxWindow, ranges: &[(u64, u64)]) -> Result<(), i32> {
        let mut mapped = lock(&self.state.mapped);
        let mut doomed = Vec::new();
        for &(moffset, len) in ranges {
            let end = check_range(window.size(), moffset, len)?;
            doomed.extend(Self::covered(&mapped, moffset, end, libc::EINVAL)?);
        }
        for s in doomed {
            if let Some((_, lay)) = take(&mut mapped, s) {
                for (ps, pl) in Mapping::pieces(s, lay) {
                    window.unmap(ps, pl).map_err(crate::server::errno)?;
                }
            }
        }
        Ok(())
    }

    /// Drops every mapping (the session ended).
    pub(crate) fn clear(&self) {
        let Some(window) = self.window() else { return };
        let mut mapped = lock(&self.state.mapped);
        for s in mapped.keys().copied().collect::<Vec<_>>() {
            if let Some((_, lay)) = take(&mut mapped, s) {
                unlend(&*window, s, lay);
            }
        }
    }
}

/// Held while a mapping is made from a size just read: no size change by
/// avpfs meanwhile.
pub(crate) fn steady_sizes() -> std::sync::RwLockReadGuard<'static, ()> {
    SIZES.read().unwrap_or_else(|e| e.into_inner())
}

/// Makes every mapping of `file` in every session again for the file's
/// size now, capped at `cap`; with `only_partial`, only the mappings a
/// growing file changes. A mapping whose layout stays is left alone,
/// unless it holds a copy of the last page and `fresh_copies` asks for a
/// new one (the bytes of that page may have changed).
fn refit(file: FileId, cap: Option<u64>, only_partial: bool, fresh_copies: bool) {
    let sessions: Vec<Arc<State>> = lock(&SESSIONS).iter().filter_map(Weak::upgrade).collect();
    for state in sessions {
        let Some(window) = state.window() else { continue };
        let mut mapped = lock(&state.mapped);
        let doomed: Vec<u64> = mapped
            .iter()
            .filter(|(_, (m, lay))| m.file == file && !(only_partial && lay.whole(m.len)))
            .map(|(&s, _)| s)
            .collect();
        for s in doomed {
            let Some((m, old)) = take(&mut mapped, s) else { continue };
            let size = match avpfs_sys::stat::fstat(m.fd.as_fd()) {
                Ok(st) => u64::try_from(st.st_size).unwrap_or(0),
                Err(e) => {
                    warn!("DAX: cannot stat a mapped file: {e}; unmapping it");
                    0
                }
            };
            let size = cap.map_or(size, |c| c.min(size));
            let lay = Layout::of(window.front_end(), size, m.foffset, m.len);
            if lay == old && !(lay.tail_copy && fresh_copies) {
                put(&mut mapped, s, m, lay);
                continue;
            }
            unlend(&*window, s, old);
            let lay = match lend(&*window, m.fd.as_fd(), size, m.foffset, s, lay, m.writable) {
                Ok(()) => lay,
                Err(e) => {
                    warn!("DAX: cannot map {:#x} bytes at {s:#x} of the window again: {e}; a hole stays", m.len);
                    Layout { file_len: 0, tail_copy: false }
                }
            };
            put(&mut mapped, s, m, lay);
        }
    }
}

/// A change of a file's size by avpfs, from [`Resize::begin`] to its drop.
pub(crate) struct Resize {
    file: Option<FileId>,
    _sizes: Option<RwLockWriteGuard<'static, ()>>,
}

impl Resize {
    /// Before avpfs changes the size of the host file `file` names (asked
    /// only when some session has a window; `None`: unknown, nothing to
    /// do) to at most `new_size` (`None`: it may grow or shrink by an
    /// unknown amount, e.g. a collapsing fallocate; everything is unmapped
    /// until the change is done): every mapping is refitted to the
    /// smaller size first, and no mapping is made until the drop, which
    /// refits them to the size the file then has.
    pub(crate) fn begin(file: impl FnOnce() -> Option<FileId>, new_size: Option<u64>) -> Resize {
        if WINDOWS.load(Ordering::Relaxed) == 0 {
            return Resize { file: None, _sizes: None };
        }
        let Some(file) = file() else { return Resize { file: None, _sizes: None } };
        let sizes = SIZES.write().unwrap_or_else(|e| e.into_inner());
        refit(file, Some(new_size.unwrap_or(0)), false, true);
        Resize { file: Some(file), _sizes: Some(sizes) }
    }
}

impl Drop for Resize {
    fn drop(&mut self) {
        // A copy made for the new size before the change holds the bytes
        // the file now has; a file that grew gets its new pages.
        if let Some(f) = self.file {
            refit(f, None, false, false);
        }
    }
}

/// After avpfs changed the size of `file` in a way it could not announce
/// with [`Resize::begin`] (a CREATE that truncated an existing file: the
/// server learns which file only from the reply): every mapping shows the
/// new size.
pub(crate) fn resized(file: impl FnOnce() -> Option<FileId>) {
    if WINDOWS.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(f) = file() {
        let _sizes = SIZES.write().unwrap_or_else(|e| e.into_inner());
        refit(f, None, false, true);
    }
}

/// After avpfs wrote to `file` (which may have grown): the mappings that
/// lend less than the guest's range show the new pages.
pub(crate) fn grown(file: impl FnOnce() -> Option<FileId>) {
    if PARTIAL.load(Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(f) = file() {
        let _sizes = SIZES.write().unwrap_or_else(|e| e.into_inner());
        refit(f, None, true, true);
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
    fn a_range_is_lent_up_to_the_end_of_the_file() {
        const M2: u64 = 2 << 20;
        let q = DaxFrontEnd::Qemu11;
        let m = DaxFrontEnd::Mmap;
        let lay = |f, t| Layout { file_len: f, tail_copy: t };
        // Inside the file: the whole range, either way.
        assert_eq!(Layout::of(q, 3 * M2, M2, M2), lay(M2, false));
        assert_eq!(Layout::of(m, 3 * M2, M2, M2), lay(M2, false));
        // Ending on a page: the file's pages, a hole after.
        assert_eq!(Layout::of(q, M2 + 8192, M2, M2), lay(8192, false));
        assert_eq!(Layout::of(m, M2 + 8192, M2, M2), lay(8192, false));
        // Ending inside a page: QEMU 11.1 gets a copy of that page.
        assert_eq!(Layout::of(q, M2 + 5000, M2, M2), lay(4096, true));
        assert_eq!(Layout::of(m, M2 + 5000, M2, M2), lay(8192, false));
        assert_eq!(Layout::of(q, 100, 0, M2), lay(0, true));
        // Past the end: nothing.
        assert_eq!(Layout::of(q, M2, M2, M2), lay(0, false));
        assert!(Layout::of(q, 3 * M2, 0, M2).whole(M2));
        assert!(!Layout::of(q, 100, 0, M2).whole(M2));
    }

    #[test]
    fn a_front_end_is_named() {
        for f in [DaxFrontEnd::Qemu11, DaxFrontEnd::Mmap] {
            assert_eq!(DaxFrontEnd::from_name(f.name()), Some(f));
        }
        assert_eq!(DaxFrontEnd::from_name("qemu"), None);
        assert_eq!(DaxFrontEnd::default(), DaxFrontEnd::Qemu11);
    }
}
