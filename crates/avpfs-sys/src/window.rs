//! A window of address space that files are mapped into at fixed offsets,
//! as a VMM maps a device's shared-memory region (the virtio-fs DAX window).
//!
//! [`Window::new`] reserves the range (anonymous, `PROT_NONE`, no memory
//! committed); [`Window::map_file`] places a shared file mapping at an offset
//! inside it (`MAP_FIXED`, so it replaces what was there);
//! [`Window::unmap`] puts the reservation back. No reference into the window
//! is ever handed out: [`Window::read`] and [`Window::write`] copy with
//! `process_vm_readv`/`process_vm_writev` on this process, so that an access
//! to a reserved page or to a page past the end of a mapped file fails with
//! `EFAULT` instead of raising SIGSEGV or SIGBUS.

use std::io;
use std::os::fd::AsRawFd;

use crate::util::{cvt, err, off};

/// The page size mappings are aligned to.
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes a plain integer and reads no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).unwrap_or(4096)
}

/// A reserved range of this process's address space; unmapped when dropped.
#[derive(Debug)]
pub struct Window {
    /// The start address (kept as an integer: nothing here dereferences it).
    addr: usize,
    len: usize,
}

impl Window {
    /// Reserves `len` bytes (a non-zero multiple of the page size).
    pub fn new(len: u64) -> io::Result<Window> {
        let page = page_size();
        if len == 0 || !len.is_multiple_of(page) {
            return Err(err(libc::EINVAL));
        }
        let len = usize::try_from(len).map_err(|_| err(libc::ENOMEM))?;
        // SAFETY: a new anonymous mapping at an address the kernel picks
        // touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Window { addr: p as usize, len })
    }

    /// The size of the window.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Always false: a window has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of `offset..offset + len` inside the window; `EINVAL`
    /// unless it is inside, page-aligned and not empty.
    fn range(&self, offset: u64, len: u64) -> io::Result<(usize, usize)> {
        let page = page_size();
        let end = offset.checked_add(len).ok_or_else(|| err(libc::EINVAL))?;
        if len == 0 || end > self.len as u64 || !offset.is_multiple_of(page) || !len.is_multiple_of(page) {
            return Err(err(libc::EINVAL));
        }
        // Both fit in usize: they are at most `self.len`.
        Ok((self.addr + offset as usize, len as usize))
    }

    /// Maps `len` bytes of `fd` from `file_offset` at `offset` in the window,
    /// shared, readable and, with `writable`, writable; replaces whatever
    /// was mapped there. `fd` is any descriptor source (a borrowed
    /// descriptor, a file received over a socket).
    pub fn map_file(
        &self,
        offset: u64,
        len: u64,
        fd: &dyn AsRawFd,
        file_offset: u64,
        writable: bool,
    ) -> io::Result<()> {
        let (addr, len) = self.range(offset, len)?;
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: `addr..addr + len` lies inside our own reservation (checked
        // by `range`), which no Rust reference points into, so replacing its
        // pages cannot invalidate any memory the program uses. The
        // descriptor number is only handed to mmap, which checks it (any
        // descriptor, even a wrong one, can only fill our own reservation).
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                off(file_offset)?,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Puts the reservation back over `offset..offset + len`.
    pub fn unmap(&self, offset: u64, len: u64) -> io::Result<()> {
        let (addr, len) = self.range(offset, len)?;
        // SAFETY: as in `map_file`: the range is inside our reservation.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Checks that `offset..offset + len` is inside the window (any alignment).
    fn span(&self, offset: u64, len: usize) -> io::Result<usize> {
        let end = offset.checked_add(len as u64).ok_or_else(|| err(libc::EINVAL))?;
        if end > self.len as u64 {
            return Err(err(libc::EINVAL));
        }
        Ok(self.addr + offset as usize)
    }

    /// Copies `buf.len()` bytes at `offset` of the window into `buf`;
    /// `EFAULT` when a page is not mapped or lies past the end of its file.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let addr = self.span(offset, buf.len())?;
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: the kernel writes only into `buf` (valid for its length)
        // and reads the window through the page tables, failing with EFAULT
        // rather than faulting.
        let n = cvt(unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) })?;
        if n as usize != buf.len() {
            return Err(err(libc::EFAULT));
        }
        Ok(())
    }

    /// Copies `data` to `offset` of the window; `EFAULT` as for [`read`](Self::read),
    /// and for a read-only mapping.
    pub fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let addr = self.span(offset, data.len())?;
        let local = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: data.len() };
        // SAFETY: the kernel only reads `data` and writes the window through
        // the page tables (checking their protection), failing with EFAULT
        // rather than faulting; no Rust reference points into the window.
        let n = cvt(unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) })?;
        if n as usize != data.len() {
            return Err(err(libc::EFAULT));
        }
        Ok(())
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: the reservation is ours and nothing points into it.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file(bytes: &[u8]) -> std::fs::File {
        let mut f = std::fs::File::from(crate::memfd::memfd_create(c"window-test", 0).unwrap());
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn a_mapped_file_reads_and_writes_through_the_window() {
        let page = page_size();
        let w = Window::new(4 * page).unwrap();
        let data: Vec<u8> = (0..2 * page).map(|i| (i % 251) as u8).collect();
        let f = file(&data);
        use std::os::fd::AsFd;
        w.map_file(page, page, &f.as_fd(), page, true).unwrap();
        let mut buf = vec![0; page as usize];
        w.read(page, &mut buf).unwrap();
        assert_eq!(buf, data[page as usize..]);
        w.write(page, b"xyz").unwrap();
        let mut head = [0u8; 3];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, page).unwrap();
        assert_eq!(&head, b"xyz");
        w.unmap(page, page).unwrap();
        assert_eq!(w.read(page, &mut buf).unwrap_err().raw_os_error(), Some(libc::EFAULT));
    }

    #[test]
    fn reserved_pages_and_pages_past_the_end_of_file_fail_without_a_signal() {
        let page = page_size();
        let w = Window::new(2 * page).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(w.read(0, &mut b).unwrap_err().raw_os_error(), Some(libc::EFAULT));
        let f = file(b"short");
        use std::os::fd::AsFd;
        w.map_file(0, 2 * page, &f.as_fd(), 0, false).unwrap();
        w.read(0, &mut b).unwrap();
        assert_eq!(&b, b"s");
        assert_eq!(w.read(page, &mut b).unwrap_err().raw_os_error(), Some(libc::EFAULT));
        assert_eq!(w.write(0, b"x").unwrap_err().raw_os_error(), Some(libc::EFAULT));
    }

    #[test]
    fn ranges_outside_the_window_or_unaligned_are_refused() {
        let page = page_size();
        let w = Window::new(2 * page).unwrap();
        let f = file(&[0; 16]);
        use std::os::fd::AsFd;
        for (o, l) in [(0, 3 * page), (page, 2 * page), (1, page), (0, page + 1), (0, 0), (u64::MAX - page + 1, page)] {
            assert_eq!(
                w.map_file(o, l, &f.as_fd(), 0, false).unwrap_err().raw_os_error(),
                Some(libc::EINVAL),
                "{o} {l}"
            );
            assert_eq!(w.unmap(o, l).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        }
        assert!(Window::new(0).is_err());
        assert!(Window::new(page + 1).is_err());
    }
}
