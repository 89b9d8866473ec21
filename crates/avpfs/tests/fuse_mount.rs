//! The /dev/fuse front end of the real binary: mount, serve, unmount on SIGTERM.

mod common;

use common::{is_fuse_mount, Mounted};

#[test]
fn mounts_serves_and_unmounts_on_sigterm() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let share = tmp.path().join("share");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("hello"), b"from the host\n").unwrap();
    let mut m = Mounted::start(&share, &mnt, &[]);
    assert_eq!(std::fs::read(mnt.join("hello")).unwrap(), b"from the host\n");
    std::fs::write(mnt.join("new"), b"through fuse").unwrap();
    assert_eq!(std::fs::read(share.join("new")).unwrap(), b"through fuse");
    let status = m.stop();
    assert!(status.success(), "avpfs exit status {status}");
    assert!(!is_fuse_mount(&mnt), "mount is gone after SIGTERM");
}

#[test]
fn readonly_share_refuses_writes_with_erofs() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let share = tmp.path().join("share");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("f"), b"x").unwrap();
    let _m = Mounted::start(&share, &mnt, &["--readonly"]);
    assert_eq!(std::fs::read(mnt.join("f")).unwrap(), b"x");
    let err = std::fs::write(mnt.join("g"), b"y").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert!(!share.join("g").exists());
}
