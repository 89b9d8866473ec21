//! Opening `/dev/fuse` and mounting it: the only `unsafe` of this crate.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Mount options for the kernel FUSE client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Let users other than the mounter access the mount (`allow_other`).
    pub allow_other: bool,
    /// Let the kernel check permissions from the file mode (`default_permissions`).
    pub default_permissions: bool,
    /// Mount read-only (`MS_RDONLY`).
    pub read_only: bool,
    /// The name shown as the mount source.
    pub source: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions { allow_other: true, default_permissions: true, read_only: false, source: "avpfs".into() }
    }
}

/// Opens `/dev/fuse` and mounts it on `mountpoint`. Needs CAP_SYS_ADMIN.
pub fn mount(mountpoint: &Path, opts: &MountOptions) -> io::Result<File> {
    let dev = OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open("/dev/fuse")?;
    let mut data = format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd());
    if opts.allow_other {
        data.push_str(",allow_other");
    }
    if opts.default_permissions {
        data.push_str(",default_permissions");
    }
    let source = cstring(opts.source.as_bytes())?;
    let target = cstring(mountpoint.as_os_str().as_bytes())?;
    let fstype = cstring(b"fuse.avpfs")?;
    let data = cstring(data.as_bytes())?;
    let mut flags = libc::MS_NOSUID;
    if opts.read_only {
        flags |= libc::MS_RDONLY;
    }
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data.as_ptr().cast()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(dev)
}

/// Detaches the mount at `mountpoint` (`umount2(MNT_DETACH)`).
pub fn unmount(mountpoint: &Path) -> io::Result<()> {
    let target = cstring(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: `target` is a NUL-terminated string that outlives the call.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}
