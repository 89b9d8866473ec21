//! The sandbox of the fuse_request target (root only, feature `passthrough`):
//! the share is writable, the fuzz directory too (also through relative
//! paths), everything else is read-only, and device nodes cannot be made.

#![cfg(feature = "passthrough")]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use avpfs_fuzz::sandbox::Share;

#[test]
fn only_the_share_and_the_fuzz_directory_are_writable() {
    let share = Share::new(true).expect("sandbox (run as root)");
    std::fs::write(share.root().join("new"), b"x").expect("the share is writable");

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(dir).unwrap();
    let probe = format!("work/sandbox-probe-{}", std::process::id());
    std::fs::create_dir_all("work").unwrap();
    std::fs::write(&probe, b"x").expect("the fuzz directory is writable through a relative path");
    std::fs::remove_file(&probe).unwrap();

    let outside = dir.parent().unwrap().join("sandbox-probe");
    let err = std::fs::write(&outside, b"x").expect_err("outside the fuzz directory is read-only");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));

    let dev = CString::new(share.root().join("null").as_os_str().as_bytes()).unwrap();
    // SAFETY: `dev` is NUL-terminated.
    let rc = unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!((rc, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EPERM)), "CAP_MKNOD is dropped");
}
