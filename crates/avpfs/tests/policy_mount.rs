//! Each policy rule, through the host kernel's FUSE client on a real mount.

mod common;

use std::ffi::CString;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::Mounted;

struct Fixture {
    _tmp: tempfile::TempDir,
    share: std::path::PathBuf,
    mnt: std::path::PathBuf,
    log: std::path::PathBuf,
    m: Mounted,
}

fn mount_with_policy(policy: &str) -> Fixture {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let share = tmp.path().join("share");
    let mnt = tmp.path().join("mnt");
    let log = tmp.path().join("avpfs.log");
    std::fs::create_dir_all(share.join("secrets/deeper")).unwrap();
    std::fs::write(share.join("secrets/key"), b"top secret").unwrap();
    std::fs::create_dir_all(share.join("firmware")).unwrap();
    std::fs::write(share.join("firmware/image.bin"), b"fw").unwrap();
    std::fs::write(share.join("plain"), b"plain").unwrap();
    if policy.contains("host = 100000") {
        // Guest root is host uid 100000 here: give it the share, as one would.
        std::os::unix::fs::chown(&share, Some(100000), Some(200000)).unwrap();
    }
    let file = tmp.path().join("policy.toml");
    std::fs::write(&file, policy).unwrap();
    let m = Mounted::start_logging(&share, &mnt, &["--xattr", "--policy", file.to_str().unwrap()], Some(&log));
    Fixture { _tmp: tmp, share, mnt, log, m }
}

fn errno<T>(r: io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn audit_log(f: &mut Fixture) -> String {
    f.m.stop();
    std::fs::read_to_string(&f.log).unwrap()
}

const BASIC: &str = r#"
[share]
create = ["file", "dir", "symlink"]
allow_setuid = false
[paths]
hidden = ["secrets"]
readonly = ["firmware"]
"#;

#[test]
fn hidden_subtree_is_enoent_and_not_listed() {
    let mut f = mount_with_policy(BASIC);
    assert_eq!(errno(std::fs::metadata(f.mnt.join("secrets"))), Some(libc::ENOENT));
    assert_eq!(errno(std::fs::read(f.mnt.join("secrets/key"))), Some(libc::ENOENT));
    let names: Vec<String> =
        std::fs::read_dir(&f.mnt).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!names.contains(&"secrets".to_string()), "{names:?}");
    assert!(names.contains(&"plain".to_string()), "{names:?}");
    // Creating the hidden name is refused and nothing reaches the host.
    assert_eq!(errno(std::fs::create_dir(f.mnt.join("secrets"))), Some(libc::EACCES));
    assert_eq!(std::fs::read(f.share.join("secrets/key")).unwrap(), b"top secret");
    let log = audit_log(&mut f);
    assert!(log.contains("denied lookup /secrets (path rule \"secrets\" hidden)"), "{log}");
}

#[test]
fn readonly_subtree_is_erofs_but_readable() {
    let f = mount_with_policy(BASIC);
    assert_eq!(std::fs::read(f.mnt.join("firmware/image.bin")).unwrap(), b"fw");
    assert_eq!(errno(std::fs::write(f.mnt.join("firmware/image.bin"), b"evil")), Some(libc::EROFS));
    assert_eq!(errno(std::fs::write(f.mnt.join("firmware/new"), b"x")), Some(libc::EROFS));
    assert_eq!(errno(std::fs::remove_file(f.mnt.join("firmware/image.bin"))), Some(libc::EROFS));
    assert_eq!(errno(std::fs::rename(f.mnt.join("plain"), f.mnt.join("firmware/plain"))), Some(libc::EROFS));
    assert_eq!(std::fs::read(f.share.join("firmware/image.bin")).unwrap(), b"fw");
    // The rest of the share stays writable.
    std::fs::write(f.mnt.join("elsewhere"), b"ok").unwrap();
    assert_eq!(std::fs::read(f.share.join("elsewhere")).unwrap(), b"ok");
}

#[test]
fn file_types_outside_the_allowed_set_are_eperm() {
    let f = mount_with_policy(BASIC);
    let fifo = CString::new(f.mnt.join("fifo").to_str().unwrap()).unwrap();
    // mkfifo(3) is mknod(2) of a FIFO.
    let r = avpfs_sys::fs::mknodat(avpfs_sys::open::cwd(), &fifo, libc::S_IFIFO | 0o644, 0);
    assert_eq!(r.map_err(|e| e.raw_os_error()), Err(Some(libc::EPERM)));
    assert!(!f.share.join("fifo").exists());
    std::os::unix::fs::symlink("plain", f.mnt.join("link")).unwrap();
    std::fs::create_dir(f.mnt.join("dir")).unwrap();
}

#[test]
fn setuid_and_setgid_bits_are_stripped() {
    let f = mount_with_policy(BASIC);
    let p = f.mnt.join("prog");
    std::fs::write(&p, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o6755)).unwrap();
    assert_eq!(std::fs::metadata(f.share.join("prog")).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn uid_and_gid_are_mapped_both_ways() {
    let f = mount_with_policy(
        r#"
[uid]
map = [{ guest = 0, host = 100000, count = 65536 }]
unmapped = "deny"
[gid]
map = [{ guest = 0, host = 200000, count = 65536 }]
unmapped = "deny"
"#,
    );
    std::fs::write(f.mnt.join("mine"), b"x").unwrap();
    let host = std::fs::metadata(f.share.join("mine")).unwrap();
    assert_eq!((host.uid(), host.gid()), (100000, 200000), "root in the guest is 100000 on the host");
    let guest = std::fs::metadata(f.mnt.join("mine")).unwrap();
    assert_eq!((guest.uid(), guest.gid()), (0, 0), "and 0 again through the mount");
    // A host file owned by an unmapped id shows the overflow id.
    assert_eq!(std::fs::metadata(f.mnt.join("plain")).unwrap().uid(), 65534);
    // An id outside the map is refused before any host call.
    assert_eq!(errno(std::os::unix::fs::chown(f.mnt.join("mine"), Some(70000), None)), Some(libc::EPERM));
}

fn xattr_get(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let n = CString::new(name).unwrap();
    avpfs_sys::xattr::get(avpfs_sys::xattr::Target::Path(&p), &n)
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let n = CString::new(name).unwrap();
    avpfs_sys::xattr::set(avpfs_sys::xattr::Target::Path(&p), &n, value, 0)
}

#[test]
fn xattr_names_are_renamed_and_denied() {
    let f = mount_with_policy(
        r#"
[xattr]
rules = [
  { prefix = "user.avpfs.", action = "deny" },
  { prefix = "user.guest.", rename = "user.avpfs.guest." },
  { prefix = "trusted.", action = "deny" },
]
"#,
    );
    let p = f.mnt.join("plain");
    xattr_set(&p, "user.guest.label", b"g").unwrap();
    assert_eq!(xattr_get(&f.share.join("plain"), "user.avpfs.guest.label").unwrap(), b"g");
    assert_eq!(errno(xattr_get(&f.share.join("plain"), "user.guest.label")), Some(libc::ENODATA));
    assert_eq!(xattr_get(&p, "user.guest.label").unwrap(), b"g");
    assert_eq!(errno(xattr_set(&p, "trusted.x", b"t")), Some(libc::EPERM));
    assert_eq!(errno(xattr_set(&p, "user.avpfs.guest.label", b"t")), Some(libc::EPERM));
    let out = Command::new("getfattr").arg("-d").arg(&p).output();
    if let Ok(out) = out {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("user.avpfs"), "{text}");
    }
}

#[test]
fn file_size_and_open_file_limits() {
    let f = mount_with_policy("[share]\nmax_file_size = \"64K\"\nmax_open_files = 8\n");
    std::fs::write(f.mnt.join("small"), vec![1u8; 65536]).unwrap();
    assert_eq!(errno(std::fs::write(f.mnt.join("big"), vec![1u8; 65537])), Some(libc::EFBIG));
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..20 {
        match std::fs::File::open(f.mnt.join("small")) {
            Ok(h) => held.push(h),
            Err(e) => {
                refused = e.raw_os_error();
                break;
            }
        }
    }
    assert_eq!(refused, Some(libc::EMFILE));
    assert_eq!(held.len(), 8);
    drop(held);
    // Released handles are counted back.
    std::fs::File::open(f.mnt.join("small")).unwrap();
}

#[test]
fn check_config_prints_the_policy_or_names_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.toml");
    std::fs::write(&good, BASIC).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_avpfs")).arg("check-config").arg(&good).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("path:           secrets (hidden)"), "{text}");
    assert!(text.contains("path:           firmware (read-only)"), "{text}");
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[share]\ncreate = [\"file\"]\n\n[paths]\nhidden = [\"/etc\"]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_avpfs")).arg("check-config").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("line 5: paths.hidden"), "{err}");
}

#[test]
fn virtiofsd_translate_and_xattrmap_flags_apply_through_the_mount() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let share = tmp.path().join("share");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("plain"), b"plain").unwrap();
    std::os::unix::fs::chown(share.join("plain"), Some(4242), Some(4343)).unwrap();
    // Guest root is host uid 4242 here: give it the share.
    std::os::unix::fs::chown(&share, Some(4242), Some(4343)).unwrap();
    let args = [
        "--translate-uid",
        "squash-guest:0:4242:1",
        "--translate-uid",
        "host:4242:0:1",
        "--translate-gid",
        "map:0:4343:1",
        "--translate-uid",
        "forbid-guest:7000:10",
        "--xattrmap",
        ":map::user.virtiofs.:",
    ];
    let _m = Mounted::start_logging(&share, &mnt, &args, None);
    // Guest root creates: the host owner is the squashed id, shown back as 0.
    std::fs::write(mnt.join("mine"), b"x").unwrap();
    let host = std::fs::metadata(share.join("mine")).unwrap();
    assert_eq!((host.uid(), host.gid()), (4242, 4343));
    let guest = std::fs::metadata(mnt.join("plain")).unwrap();
    assert_eq!((guest.uid(), guest.gid()), (0, 0));
    assert_eq!(errno(std::os::unix::fs::chown(mnt.join("mine"), Some(7005), None)), Some(libc::EPERM));
    assert_eq!(std::fs::metadata(share.join("mine")).unwrap().uid(), 4242, "a refused chown changes nothing");
    // Every guest xattr lives under user.virtiofs. on the host.
    let p = mnt.join("mine");
    xattr_set(&p, "trusted.label", b"g").unwrap();
    assert_eq!(xattr_get(&share.join("mine"), "user.virtiofs.trusted.label").unwrap(), b"g");
    assert_eq!(errno(xattr_get(&share.join("mine"), "trusted.label")), Some(libc::ENODATA));
    assert_eq!(xattr_get(&p, "trusted.label").unwrap(), b"g");
}
