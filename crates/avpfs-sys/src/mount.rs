//! Mounts, the root and the working directory: `mount`, `umount2`,
//! `open_tree`, `move_mount`, `pivot_root`, `chroot`, `chdir`, `fchdir`.
//!
//! Every function here is a single system call that allocates nothing, so
//! each may be used after `fork` in the child (async-signal-safe).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::util::cvt;

/// `open_tree(2)` flag: a detached copy of the mount.
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `open_tree(2)` flag: with every submount.
const AT_RECURSIVE: libc::c_uint = 0x8000;
/// `move_mount(2)` flag: the source is the descriptor itself.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// `mount(2)`: every string argument but `target` may be absent (a null
/// pointer), as remounts and propagation changes need.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    // SAFETY: every pointer is null or a NUL-terminated string that outlives
    // the call; the kernel only reads them.
    cvt(unsafe { libc::mount(ptr(source), target.as_ptr(), ptr(fstype), flags, ptr(data).cast()) })?;
    Ok(())
}

/// `umount2(2)` of the mount at `target` with `flags` (`libc::MNT_DETACH`, ...).
pub fn umount2(target: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `target` is a NUL-terminated string that outlives the call.
    cvt(unsafe { libc::umount2(target.as_ptr(), flags) })?;
    Ok(())
}

/// `open_tree(2)` with `OPEN_TREE_CLONE` (and `O_CLOEXEC`): a detached copy
/// of the mount at `dir`/`path` (`path` empty: `dir` itself, with
/// `AT_EMPTY_PATH`), with its submounts when `recursive` (`AT_RECURSIVE`).
pub fn open_tree_clone(dir: BorrowedFd<'_>, path: &CStr, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    if path.is_empty() {
        flags |= libc::AT_EMPTY_PATH as libc::c_uint;
    }
    // SAFETY: `path` is NUL-terminated and outlives the call; `dir` is open
    // (or AT_FDCWD); the result is a new descriptor.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), path.as_ptr(), flags) })?;
    // SAFETY: `fd` was just returned by open_tree and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// `move_mount(2)` of the detached tree `tree` (from [`open_tree_clone`])
/// onto `dir`/`path` (`MOVE_MOUNT_F_EMPTY_PATH`).
pub fn move_mount(tree: BorrowedFd<'_>, dir: BorrowedFd<'_>, path: &CStr) -> io::Result<()> {
    // SAFETY: both paths are NUL-terminated and outlive the call; both
    // descriptors are open (or AT_FDCWD); no memory is written.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            dir.as_raw_fd(),
            path.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// `pivot_root(2)`: `new_root` becomes the root of the calling process's
/// mount namespace and the old root is put at `put_old`.
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> io::Result<()> {
    // SAFETY: both paths are NUL-terminated and outlive the call.
    cvt(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })?;
    Ok(())
}

/// `chroot(2)`: the root directory of the calling process (of the calling
/// thread only, after `unshare(CLONE_FS)`).
pub fn chroot(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    cvt(unsafe { libc::chroot(path.as_ptr()) })?;
    Ok(())
}

/// `chdir(2)`.
pub fn chdir(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    cvt(unsafe { libc::chdir(path.as_ptr()) })?;
    Ok(())
}

/// `fchdir(2)`: the working directory becomes the directory `dir` refers to.
pub fn fchdir(dir: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fchdir takes an open descriptor; no memory is passed.
    cvt(unsafe { libc::fchdir(dir.as_raw_fd()) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open::cwd;
    use std::ffi::CString;
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    fn c(p: &Path) -> CString {
        CString::new(p.as_os_str().as_bytes()).unwrap()
    }

    fn fs_type(p: &Path) -> libc::c_long {
        let d = std::fs::File::open(p).unwrap();
        crate::stat::fstatfs(d.as_fd()).unwrap().f_type
    }

    /// Needs CAP_SYS_ADMIN (the tests run as root).
    #[test]
    fn mount_clone_move_and_unmount_a_tmpfs() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        mount(Some(c"avpfs-test"), &c(&a), Some(c"tmpfs"), libc::MS_NOSUID, Some(c"size=64k")).unwrap();
        assert_eq!(fs_type(&a), libc::TMPFS_MAGIC);
        std::fs::write(a.join("f"), b"x").unwrap();
        // Private, so that the copy may be attached anywhere.
        mount(None, &c(&a), None, libc::MS_PRIVATE, None).unwrap();
        let tree = open_tree_clone(cwd(), &c(&a), false).unwrap();
        move_mount(tree.as_fd(), cwd(), &c(&b)).unwrap();
        assert_eq!(std::fs::read(b.join("f")).unwrap(), b"x", "the copy shows the same tmpfs");
        umount2(&c(&b), libc::MNT_DETACH).unwrap();
        umount2(&c(&a), libc::MNT_DETACH).unwrap();
        assert_ne!(fs_type(&a), libc::TMPFS_MAGIC);
        assert_eq!(umount2(&c(&a), 0).unwrap_err().raw_os_error(), Some(libc::EINVAL), "not a mount point");
        assert!(mount(None, c"/nonexistent-avpfs", None, libc::MS_PRIVATE, None).is_err());
    }

    /// `chdir`, `fchdir` and `chroot` in a thread with its own root and
    /// working directory (`unshare(CLONE_FS)`), so the tests' process keeps its own.
    #[test]
    fn working_directory_and_root_of_one_thread() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/inside"), b"").unwrap();
        let path = t.path().to_owned();
        std::thread::spawn(move || {
            crate::process::unshare(libc::CLONE_FS).unwrap();
            chdir(&c(&path)).unwrap();
            assert_eq!(std::env::current_dir().unwrap(), path.canonicalize().unwrap());
            let d = std::fs::File::open("d").unwrap();
            chdir(c"/").unwrap();
            fchdir(d.as_fd()).unwrap();
            assert!(Path::new("inside").exists());
            chroot(c".").unwrap();
            assert!(Path::new("/inside").exists(), "the root is now d");
            assert_eq!(chdir(c"/no-such-dir").unwrap_err().raw_os_error(), Some(libc::ENOENT));
        })
        .join()
        .unwrap();
        assert!(!Path::new("/inside").exists(), "the other threads keep their root");
    }
}
