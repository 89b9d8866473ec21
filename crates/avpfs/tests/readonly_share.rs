//! A read-only share as the daemon builds it: `--readonly` (or `-o ro`)
//! makes the policy read-only, so the passthrough is always served behind
//! `PolicyFs`, the one layer that refuses modifications. Every modifying
//! operation must get EROFS and leave the host directory as it was.

use std::ffi::CString;
use std::io;

use avpfs::cli::Cli;
use avpfs::DaemonConfig;
use avpfs_passthrough::PassthroughFs;
use avpfs_policy::PolicyFs;
use avpfs_server::{
    Context, CopyRange, CreateRequest, FallocateRequest, FileSystem, InitOptions, MknodRequest, NodeId, ReadRequest,
    RenameRequest, SetattrIn, SetxattrRequest, SliceReader, VecWriter, WriteRequest,
};
use clap::Parser;

fn config(share: &std::path::Path, readonly: &[&str]) -> DaemonConfig {
    let sock = share.with_file_name("unused.sock");
    let mut args = vec!["avpfs", "--shared-dir", share.to_str().unwrap(), "--socket-path", sock.to_str().unwrap()];
    args.extend_from_slice(&["--sandbox", "none", "--xattr"]);
    args.extend_from_slice(readonly);
    DaemonConfig::try_from(Cli::parse_from(args)).unwrap()
}

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn errno<T>(r: io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn readonly_flags_put_the_policy_layer_in_front() {
    for flag in [&["--readonly"][..], &["-o", "ro"], &["-o", "readonly"]] {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(tmp.path(), flag);
        assert!(c.sessions[0].policy.as_ref().is_some_and(|p| p.readonly), "{flag:?}: no read-only policy");
        assert!(c.sessions[0].readonly_mount, "{flag:?}: the /dev/fuse mount is read-only too");
    }
    let tmp = tempfile::tempdir().unwrap();
    let c = config(tmp.path(), &[]);
    assert!(c.sessions[0].policy.is_none() && !c.sessions[0].readonly_mount, "a plain share has no policy layer");
}

#[test]
fn readonly_share_refuses_every_change_with_erofs() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("f"), b"x").unwrap();
    std::fs::create_dir(share.join("d")).unwrap();
    let c = config(&share, &["--readonly"]);
    let fs = PolicyFs::new(PassthroughFs::new(c.shares[0].fs.clone()).unwrap(), c.sessions[0].policy.clone().unwrap());
    fs.init(InitOptions { minor: 41, client_flags: u64::MAX }).unwrap();
    let ctx = Context { uid: 0, gid: 0, pid: 1, groups: None };
    let root = NodeId::ROOT;
    let f = fs.lookup(&ctx, root, &cs("f")).unwrap().nodeid;
    let n = &cs("n");

    assert_eq!(errno(fs.mkdir(&ctx, root, n, 0o755, 0)), Some(libc::EROFS));
    assert_eq!(
        errno(fs.mknod(&ctx, root, n, MknodRequest { mode: libc::S_IFREG | 0o644, rdev: 0, umask: 0 })),
        Some(libc::EROFS)
    );
    assert_eq!(errno(fs.symlink(&ctx, c"t", root, n)), Some(libc::EROFS));
    assert_eq!(
        errno(fs.create(&ctx, root, n, CreateRequest { mode: 0o644, umask: 0, flags: libc::O_RDWR as u32 })),
        Some(libc::EROFS)
    );
    assert_eq!(
        errno(fs.tmpfile(&ctx, root, CreateRequest { mode: 0o644, umask: 0, flags: libc::O_RDWR as u32 })),
        Some(libc::EROFS)
    );
    assert_eq!(errno(fs.unlink(&ctx, root, &cs("f"))), Some(libc::EROFS));
    assert_eq!(errno(fs.rmdir(&ctx, root, &cs("d"))), Some(libc::EROFS));
    assert_eq!(
        errno(fs.rename(&ctx, RenameRequest { olddir: root, oldname: &cs("f"), newdir: root, newname: n, flags: 0 })),
        Some(libc::EROFS)
    );
    assert_eq!(errno(fs.link(&ctx, f, root, n)), Some(libc::EROFS));
    assert_eq!(errno(fs.open(&ctx, f, libc::O_WRONLY as u32, false)), Some(libc::EROFS));
    assert_eq!(errno(fs.open(&ctx, f, libc::O_RDWR as u32, false)), Some(libc::EROFS));
    assert_eq!(errno(fs.open(&ctx, f, (libc::O_RDONLY | libc::O_TRUNC) as u32, false)), Some(libc::EROFS));
    let set = SetattrIn { mode: Some(0o600), ..SetattrIn::default() };
    assert_eq!(errno(fs.setattr(&ctx, f, set)), Some(libc::EROFS));
    let set = SetattrIn { size: Some(0), ..SetattrIn::default() };
    assert_eq!(errno(fs.setattr(&ctx, f, set)), Some(libc::EROFS));
    assert_eq!(
        errno(fs.setxattr(&ctx, f, c"user.x", SetxattrRequest { value: b"v", flags: 0, kill_sgid: false })),
        Some(libc::EROFS)
    );
    assert_eq!(errno(fs.removexattr(&ctx, f, c"user.x")), Some(libc::EROFS));
    assert_eq!(errno(fs.access(&ctx, f, libc::W_OK as u32)), Some(libc::EROFS));

    // Reading still works; writing through the handle does not.
    let o = fs.open(&ctx, f, libc::O_RDONLY as u32, false).unwrap();
    let h = o.handle;
    let mut r = SliceReader::new(b"y");
    let write = WriteRequest { handle: h, offset: 0, size: 1, kill_suidgid: false, flags: 0 };
    assert_eq!(errno(fs.write(&ctx, f, write, &mut r)), Some(libc::EROFS));
    let falloc = FallocateRequest { handle: h, mode: 0, offset: 0, length: 10 };
    assert_eq!(errno(fs.fallocate(&ctx, f, falloc)), Some(libc::EROFS));
    let range = CopyRange {
        node_in: f,
        handle_in: h,
        offset_in: 0,
        node_out: f,
        handle_out: h,
        offset_out: 1,
        len: 1,
        flags: 0,
    };
    assert_eq!(errno(fs.copy_file_range(&ctx, range)), Some(libc::EROFS));
    let mut w = VecWriter::new(16);
    let read = ReadRequest { handle: h, offset: 0, size: 16, flags: 0 };
    assert_eq!(fs.read(&ctx, f, read, &mut w).unwrap(), 1);
    assert_eq!(w.as_slice(), b"x");
    fs.access(&ctx, f, libc::R_OK as u32).unwrap();
    fs.release(&ctx, f, h, 0, None).unwrap();

    assert_eq!(std::fs::read(share.join("f")).unwrap(), b"x");
    let mut names: Vec<_> = std::fs::read_dir(&share).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["d", "f"], "nothing was created or removed");
}
