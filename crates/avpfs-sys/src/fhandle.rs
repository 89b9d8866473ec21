//! File handles: `name_to_handle_at(2)` and `open_by_handle_at(2)`.
//!
//! A file handle names an inode without keeping it open, so a server can
//! refer to many files without holding a descriptor for each. Opening by
//! handle needs `CAP_DAC_READ_SEARCH`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::util::{cvt, err, retry};

/// The largest handle the kernel produces (`MAX_HANDLE_SZ`).
pub const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct RawHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// An opaque file handle as the kernel encodes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileHandle {
    handle_type: i32,
    bytes: Vec<u8>,
}

impl FileHandle {
    /// The handle of `name` relative to `dir` (or of `dir` itself with an
    /// empty name and `AT_EMPTY_PATH` in `flags`), with the mount id the
    /// kernel reports.
    pub fn at(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> io::Result<(FileHandle, i32)> {
        let mut raw = RawHandle { handle_bytes: MAX_HANDLE_SZ as u32, handle_type: 0, f_handle: [0; MAX_HANDLE_SZ] };
        let mut mount_id: i32 = 0;
        // SAFETY: `raw` is a file_handle whose `handle_bytes` says how much
        // room follows; `name` is a valid C string; `mount_id` is writable;
        // all live for the call and `dir` is open.
        cvt(unsafe {
            libc::syscall(
                libc::SYS_name_to_handle_at,
                dir.as_raw_fd(),
                name.as_ptr(),
                &mut raw as *mut RawHandle,
                &mut mount_id as *mut i32,
                flags,
            )
        })?;
        let n = (raw.handle_bytes as usize).min(MAX_HANDLE_SZ);
        Ok((FileHandle { handle_type: raw.handle_type, bytes: raw.f_handle[..n].to_vec() }, mount_id))
    }

    /// The handle of the file `fd` refers to (works on `O_PATH` descriptors).
    pub fn of(fd: BorrowedFd<'_>) -> io::Result<(FileHandle, i32)> {
        Self::at(fd, c"", libc::AT_EMPTY_PATH)
    }

    /// Opens the file the handle names, on the file system `mount_fd` is on
    /// (`mount_fd` must not be an `O_PATH` descriptor: the kernel answers
    /// `EBADF`). `O_CLOEXEC` is added. Needs `CAP_DAC_READ_SEARCH`.
    pub fn open(&self, mount_fd: BorrowedFd<'_>, flags: i32) -> io::Result<OwnedFd> {
        if self.bytes.len() > MAX_HANDLE_SZ {
            return Err(err(libc::EINVAL));
        }
        let mut raw = RawHandle {
            handle_bytes: self.bytes.len() as u32,
            handle_type: self.handle_type,
            f_handle: [0; MAX_HANDLE_SZ],
        };
        raw.f_handle[..self.bytes.len()].copy_from_slice(&self.bytes);
        let fd = retry(|| {
            // SAFETY: `raw` is a valid file_handle of `handle_bytes` bytes
            // that outlives the call; `mount_fd` is open.
            unsafe {
                libc::syscall(
                    libc::SYS_open_by_handle_at,
                    mount_fd.as_raw_fd(),
                    &raw as *const RawHandle,
                    flags | libc::O_CLOEXEC,
                )
            }
        })?;
        // SAFETY: the kernel returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// The encoded handle bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The file system's handle type (`handle_type`).
    pub fn handle_type(&self) -> i32 {
        self.handle_type
    }

    /// A handle from its type and bytes as [`handle_type`](Self::handle_type)
    /// and [`as_bytes`](Self::as_bytes) gave them (a handle saved elsewhere,
    /// such as in a migration state). `EINVAL` when the bytes are longer
    /// than [`MAX_HANDLE_SZ`] or empty. The kernel checks the rest when the
    /// handle is opened.
    pub fn from_parts(handle_type: i32, bytes: &[u8]) -> io::Result<FileHandle> {
        if bytes.is_empty() || bytes.len() > MAX_HANDLE_SZ {
            return Err(err(libc::EINVAL));
        }
        Ok(FileHandle { handle_type, bytes: bytes.to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn handle_round_trip() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"data").unwrap();
        let d = std::fs::File::open(t.path()).unwrap();
        let (h, _mnt) = match FileHandle::at(d.as_fd(), c"f", 0) {
            Ok(v) => v,
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return,
            Err(e) => panic!("{e}"),
        };
        let (h2, _) = FileHandle::of(d.as_fd()).unwrap();
        assert_ne!(h, h2);
        assert_eq!(FileHandle::from_parts(h.handle_type(), h.as_bytes()).unwrap(), h);
        assert!(FileHandle::from_parts(1, &[0; MAX_HANDLE_SZ + 1]).is_err());
        if !crate::creds::has_effective_cap(crate::creds::CAP_DAC_READ_SEARCH).unwrap() {
            return;
        }
        let f = h.open(d.as_fd(), libc::O_RDONLY).unwrap();
        let mut buf = [0u8; 4];
        crate::io::pread(f.as_fd(), &mut buf, 0).unwrap();
        assert_eq!(&buf, b"data");
        h.open(d.as_fd(), libc::O_PATH).unwrap();
        // The mount descriptor must be a real open, not O_PATH.
        let p = crate::open::open_path(t.path(), libc::O_PATH).unwrap();
        assert_eq!(h.open(p.as_fd(), libc::O_PATH).unwrap_err().raw_os_error(), Some(libc::EBADF));
    }
}
