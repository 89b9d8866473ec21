//! Opening `/dev/fuse` and mounting it (the system calls are avpfs-sys's).

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
    avpfs_sys::mount::mount(Some(&source), &target, Some(&fstype), flags, Some(&data))?;
    Ok(dev)
}

/// Detaches the mount at `mountpoint` (`umount2(MNT_DETACH)`).
pub fn unmount(mountpoint: &Path) -> io::Result<()> {
    let target = cstring(mountpoint.as_os_str().as_bytes())?;
    avpfs_sys::mount::umount2(&target, libc::MNT_DETACH)
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounted(p: &Path) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let p = p.to_str().unwrap();
        info.lines().any(|l| l.split(' ').nth(4) == Some(p) && l.contains(" fuse.avpfs "))
    }

    /// Needs CAP_SYS_ADMIN and /dev/fuse (the tests run as root). Nothing
    /// answers the kernel's INIT: the mount is only made and detached.
    #[test]
    fn mounts_and_detaches() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().canonicalize().unwrap();
        let opts = MountOptions { read_only: true, ..MountOptions::default() };
        let dev = mount(&dir, &opts).unwrap();
        assert!(mounted(&dir));
        unmount(&dir).unwrap();
        assert!(!mounted(&dir));
        drop(dev);
        assert_eq!(unmount(&dir).unwrap_err().raw_os_error(), Some(libc::EINVAL), "no longer a mount point");
        let nul = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/a\0b"));
        assert_eq!(mount(nul, &opts).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
