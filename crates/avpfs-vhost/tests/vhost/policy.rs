//! Each share policy rule through vhost-user: a `PolicyFs` over the real
//! passthrough, driven by hand-made requests (the same rules are tested
//! through the host kernel's FUSE client in `avpfs/tests/policy_mount.rs`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use avpfs_passthrough::PassthroughFs;
use avpfs_policy::{parse, PolicyFs};
use fuse_abi::{self as abi, fattr, opcode};
use vhost_harness::fuse::{name, request, SMALL_REPLY};
use zerocopy::{FromBytes, IntoBytes};

use crate::share::{passthrough_config, Guest, Served, Tree};

type Fs = PolicyFs<PassthroughFs>;

/// The share of [`Tree`] plus `secrets/key`, `secrets/deeper/`,
/// `firmware/image.bin` and `plain`, served under `policy`.
fn serve(policy: &str, prepare: impl FnOnce(&Tree)) -> (Tree, Served<Fs>) {
    let tree = Tree::new();
    std::fs::create_dir_all(tree.share.join("secrets/deeper")).unwrap();
    std::fs::write(tree.share.join("secrets/key"), b"top secret").unwrap();
    std::fs::create_dir_all(tree.share.join("firmware")).unwrap();
    std::fs::write(tree.share.join("firmware/image.bin"), b"fw").unwrap();
    std::fs::write(tree.share.join("plain"), b"plain").unwrap();
    prepare(&tree);
    let inner = PassthroughFs::new(passthrough_config(&tree.share)).unwrap();
    let served = Served::start(PolicyFs::new(inner, parse(policy).unwrap()), 1);
    (tree, served)
}

const BASIC: &str = r#"
[share]
create = ["file", "dir", "symlink"]
allow_setuid = false
[paths]
hidden = ["secrets"]
readonly = ["firmware"]
"#;

fn mkdir_in(n: &str, mode: u32) -> Vec<u8> {
    let mut v = abi::MkdirIn { mode, umask: 0 }.as_bytes().to_vec();
    v.extend_from_slice(&name(n));
    v
}

fn rename_in(newdir: u64, old: &str, new: &str) -> Vec<u8> {
    let mut v = abi::RenameIn { newdir }.as_bytes().to_vec();
    v.extend_from_slice(&name(old));
    v.extend_from_slice(&name(new));
    v
}

#[test]
fn readonly_share_is_erofs() {
    let (tree, s) = serve("[share]\nreadonly = true\n", |_| {});
    let g = Guest::new(&s.harness, 1, &tree);
    let plain = g.lookup(abi::ROOT_ID, "plain").unwrap().nodeid;
    assert_eq!(g.create(abi::ROOT_ID, "new", 0o644, libc::O_RDWR), Err(libc::EROFS));
    assert_eq!(g.errno(opcode::MKDIR, abi::ROOT_ID, &[&mkdir_in("d", 0o755)]), libc::EROFS);
    assert_eq!(g.mknod(abi::ROOT_ID, "f", libc::S_IFIFO | 0o644, 0), Err(libc::EROFS));
    assert_eq!(g.errno(opcode::SYMLINK, abi::ROOT_ID, &[&name("l"), b"plain\0"]), libc::EROFS);
    assert_eq!(g.errno(opcode::UNLINK, abi::ROOT_ID, &[&name("plain")]), libc::EROFS);
    assert_eq!(g.errno(opcode::RMDIR, abi::ROOT_ID, &[&name("firmware")]), libc::EROFS);
    assert_eq!(g.errno(opcode::RENAME, abi::ROOT_ID, &[&rename_in(abi::ROOT_ID, "plain", "moved")]), libc::EROFS);
    let l = abi::LinkIn { oldnodeid: plain };
    assert_eq!(g.errno(opcode::LINK, abi::ROOT_ID, &[l.as_bytes(), &name("l")]), libc::EROFS);
    for flags in [libc::O_WRONLY, libc::O_RDWR, libc::O_RDONLY | libc::O_TRUNC, libc::O_WRONLY | libc::O_APPEND] {
        assert_eq!(g.open(plain, flags), Err(libc::EROFS), "OPEN {flags:#o}");
    }
    let chmod = abi::SetattrIn { valid: fattr::MODE, mode: 0o600, ..Default::default() };
    assert_eq!(g.setattr(plain, chmod), Err(libc::EROFS));
    let sx = abi::SetxattrIn { size: 1, ..Default::default() };
    assert_eq!(
        g.errno(opcode::SETXATTR, plain, &[&sx.as_bytes()[..abi::SETXATTR_IN_COMPAT_SIZE], b"user.x\0", b"1"]),
        libc::EROFS
    );
    // Reading is fine.
    let fh = g.open(plain, libc::O_RDONLY).unwrap();
    assert_eq!(g.read(plain, fh, 0, 100).unwrap(), b"plain");
    g.release(plain, fh).unwrap();
    assert_eq!(std::fs::read(tree.share.join("plain")).unwrap(), b"plain");
    assert!(!tree.share.join("new").exists() && !tree.share.join("moved").exists());
}

#[test]
fn hidden_subtree_is_enoent_and_not_listed() {
    let (tree, s) = serve(BASIC, |_| {});
    let g = Guest::new(&s.harness, 1, &tree);
    assert_eq!(g.lookup(abi::ROOT_ID, "secrets").unwrap_err(), libc::ENOENT);
    let names: Vec<String> = g.list_plus(abi::ROOT_ID).into_iter().map(|(n, _)| n).collect();
    assert!(!names.contains(&"secrets".to_string()), "{names:?}");
    assert!(names.contains(&"plain".to_string()), "{names:?}");
    // Plain READDIR leaves it out too.
    let fh = u64::from_le_bytes(
        g.ok(opcode::OPENDIR, abi::ROOT_ID, &[abi::OpenIn::default().as_bytes()])[..8].try_into().unwrap(),
    );
    let rd = abi::ReadIn { fh, size: 8192, ..Default::default() };
    let body = g.call(opcode::READDIR, abi::ROOT_ID, &[rd.as_bytes()], 16 + 8192).ok().unwrap();
    assert!(!body.windows(7).any(|w| w == b"secrets"));
    assert!(body.windows(5).any(|w| w == b"plain"));
    // Creating the hidden name is refused, and nothing reaches the host.
    assert_eq!(g.errno(opcode::MKDIR, abi::ROOT_ID, &[&mkdir_in("secrets", 0o755)]), libc::EACCES);
    assert_eq!(g.create(abi::ROOT_ID, "secrets", 0o644, libc::O_RDWR), Err(libc::EACCES));
    assert_eq!(g.errno(opcode::RENAME, abi::ROOT_ID, &[&rename_in(abi::ROOT_ID, "secrets", "open")]), libc::ENOENT);
    assert_eq!(std::fs::read(tree.share.join("secrets/key")).unwrap(), b"top secret");
    assert!(!tree.share.join("open").exists());
}

#[test]
fn readonly_subtree_is_erofs_but_readable() {
    let (tree, s) = serve(BASIC, |_| {});
    let g = Guest::new(&s.harness, 1, &tree);
    let fw = g.lookup(abi::ROOT_ID, "firmware").unwrap().nodeid;
    let img = g.lookup(fw, "image.bin").unwrap().nodeid;
    let fh = g.open(img, libc::O_RDONLY).unwrap();
    assert_eq!(g.read(img, fh, 0, 100).unwrap(), b"fw");
    assert_eq!(g.open(img, libc::O_RDWR), Err(libc::EROFS));
    assert_eq!(g.open(img, libc::O_WRONLY | libc::O_TRUNC), Err(libc::EROFS));
    assert_eq!(g.create(fw, "new", 0o644, libc::O_RDWR), Err(libc::EROFS));
    assert_eq!(g.errno(opcode::UNLINK, fw, &[&name("image.bin")]), libc::EROFS);
    assert_eq!(g.errno(opcode::RENAME, abi::ROOT_ID, &[&rename_in(fw, "plain", "plain")]), libc::EROFS);
    let trunc = abi::SetattrIn { valid: fattr::SIZE, size: 0, ..Default::default() };
    assert_eq!(g.setattr(img, trunc), Err(libc::EROFS));
    assert_eq!(std::fs::read(tree.share.join("firmware/image.bin")).unwrap(), b"fw");
    // The rest of the share stays writable.
    let (e, wfh) = g.create(abi::ROOT_ID, "elsewhere", 0o644, libc::O_RDWR).unwrap();
    let w = abi::WriteIn { fh: wfh, size: 2, ..Default::default() };
    g.ok(opcode::WRITE, e.nodeid, &[w.as_bytes(), b"ok"]);
    assert_eq!(std::fs::read(tree.share.join("elsewhere")).unwrap(), b"ok");
}

#[test]
fn file_types_outside_the_allowed_set_are_eperm() {
    let (tree, s) = serve(BASIC, |_| {});
    let g = Guest::new(&s.harness, 1, &tree);
    assert_eq!(g.mknod(abi::ROOT_ID, "fifo", libc::S_IFIFO | 0o644, 0), Err(libc::EPERM));
    assert_eq!(g.mknod(abi::ROOT_ID, "mem", libc::S_IFCHR | 0o600, (1 << 8) | 1), Err(libc::EPERM));
    assert_eq!(g.mknod(abi::ROOT_ID, "sock", libc::S_IFSOCK | 0o600, 0), Err(libc::EPERM));
    assert!(!tree.share.join("fifo").exists() && !tree.share.join("mem").exists());
    g.ok(opcode::SYMLINK, abi::ROOT_ID, &[&name("link"), b"plain\0"]);
    g.ok(opcode::MKDIR, abi::ROOT_ID, &[&mkdir_in("dir2", 0o755)]);
    assert_eq!(
        g.mknod(abi::ROOT_ID, "regular", libc::S_IFREG | 0o644, 0).map(|e| e.attr.mode & libc::S_IFMT),
        Ok(libc::S_IFREG)
    );
}

#[test]
fn setuid_and_setgid_bits_are_stripped() {
    let (tree, s) = serve(BASIC, |_| {});
    let g = Guest::new(&s.harness, 1, &tree);
    let (e, fh) = g.create(abi::ROOT_ID, "prog", 0o6755, libc::O_RDWR).unwrap();
    g.release(e.nodeid, fh).unwrap();
    assert_eq!(std::fs::metadata(tree.share.join("prog")).unwrap().mode() & 0o7777, 0o755);
    let chmod = abi::SetattrIn { valid: fattr::MODE, mode: 0o6755, ..Default::default() };
    assert_eq!(g.setattr(e.nodeid, chmod).unwrap().mode & 0o7777, 0o755);
    assert_eq!(std::fs::metadata(tree.share.join("prog")).unwrap().mode() & 0o7777, 0o755);
    let m = g.mknod(abi::ROOT_ID, "prog2", libc::S_IFREG | 0o4711, 0).unwrap();
    assert_eq!(m.attr.mode & 0o7777, 0o711);
    // A setuid file the host made keeps its bits (the rule is about the guest).
    std::fs::set_permissions(tree.share.join("plain"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    assert_eq!(g.lookup(abi::ROOT_ID, "plain").unwrap().attr.mode & 0o7777, 0o4755);
}

/// A request as a given guest user and group.
fn as_user(op: u32, node: u64, parts: &[&[u8]], uid: u32, gid: u32) -> Vec<u8> {
    let mut req = request(op, 0, node, parts);
    req[24..28].copy_from_slice(&uid.to_le_bytes());
    req[28..32].copy_from_slice(&gid.to_le_bytes());
    req
}

fn create_as(g: &Guest<'_>, n: &str, uid: u32, gid: u32) -> Result<abi::EntryOut, i32> {
    let c = abi::CreateIn { flags: libc::O_RDWR as u32, mode: 0o644, umask: 0, open_flags: 0 };
    let r = g.send(
        opcode::CREATE,
        &as_user(opcode::CREATE, abi::ROOT_ID, &[c.as_bytes(), &name(n)], uid, gid),
        SMALL_REPLY,
    );
    match r.errno() {
        Some(e) => Err(e),
        None => Ok(abi::EntryOut::read_from_prefix(&r.body).unwrap().0),
    }
}

#[test]
fn uid_and_gid_are_mapped_both_ways() {
    let policy = r#"
[uid]
map = [{ guest = 0, host = 100000, count = 65536 }]
unmapped = "deny"
[gid]
map = [{ guest = 0, host = 200000, count = 65536 }]
unmapped = "deny"
"#;
    let (tree, s) = serve(policy, |t| {
        // Guest root is host 100000 here: give it the share, as one would.
        std::os::unix::fs::chown(&t.share, Some(100000), Some(200000)).unwrap();
        std::fs::set_permissions(&t.share, std::fs::Permissions::from_mode(0o777)).unwrap();
    });
    let g = Guest::new(&s.harness, 1, &tree);
    // Guest root creates as host 100000:200000, and sees 0:0.
    let e = create_as(&g, "mine", 0, 0).unwrap();
    assert_eq!((e.attr.uid, e.attr.gid), (0, 0));
    let host = std::fs::metadata(tree.share.join("mine")).unwrap();
    assert_eq!((host.uid(), host.gid()), (100000, 200000));
    assert_eq!(g.getattr(e.nodeid).map(|a| (a.uid, a.gid)), Ok((0, 0)));
    // Guest user 1000 is host 101000.
    let e2 = create_as(&g, "user", 1000, 1000).unwrap();
    assert_eq!((e2.attr.uid, e2.attr.gid), (1000, 1000));
    let host = std::fs::metadata(tree.share.join("user")).unwrap();
    assert_eq!((host.uid(), host.gid()), (101000, 201000));
    // A host file owned by an unmapped id shows the overflow id.
    assert_eq!(g.lookup(abi::ROOT_ID, "plain").unwrap().attr.uid, 65534);
    // An owner outside the map is refused before any host call.
    let chown = abi::SetattrIn { valid: fattr::UID, uid: 70000, ..Default::default() };
    assert_eq!(g.setattr(e.nodeid, chown), Err(libc::EPERM));
    // A caller outside the map is refused (unmapped = "deny").
    assert_eq!(create_as(&g, "stranger", 70000, 0), Err(libc::EPERM));
    let ga = abi::GetattrIn::default();
    let r = g.send(opcode::GETATTR, &as_user(opcode::GETATTR, e.nodeid, &[ga.as_bytes()], 70000, 70000), SMALL_REPLY);
    assert_eq!(r.errno(), Some(libc::EPERM));
    assert!(!tree.share.join("stranger").exists());
    assert_eq!(std::fs::metadata(tree.share.join("mine")).unwrap().uid(), 100000);
}

#[test]
fn unmapped_callers_are_squashed() {
    let policy = r#"
[uid]
map = [{ guest = 0, host = 100000, count = 1000 }]
unmapped = "squash:99999"
[gid]
map = [{ guest = 0, host = 200000, count = 1000 }]
unmapped = "squash:99998"
"#;
    let (tree, s) = serve(policy, |t| {
        std::fs::set_permissions(&t.share, std::fs::Permissions::from_mode(0o777)).unwrap();
    });
    let g = Guest::new(&s.harness, 1, &tree);
    create_as(&g, "squashed", 5000, 5000).unwrap();
    let host = std::fs::metadata(tree.share.join("squashed")).unwrap();
    assert_eq!((host.uid(), host.gid()), (99999, 99998));
    create_as(&g, "mapped", 10, 10).unwrap();
    let host = std::fs::metadata(tree.share.join("mapped")).unwrap();
    assert_eq!((host.uid(), host.gid()), (100010, 200010));
}

#[test]
fn xattr_names_are_renamed_and_denied() {
    let policy = r#"
[xattr]
rules = [
  { prefix = "user.avpfs.", action = "deny" },
  { prefix = "user.guest.", rename = "user.avpfs.guest." },
  { prefix = "trusted.", action = "deny" },
]
"#;
    let (tree, s) = serve(policy, |_| {});
    let g = Guest::new(&s.harness, 1, &tree);
    let plain = g.lookup(abi::ROOT_ID, "plain").unwrap().nodeid;
    let set = |n: &[u8], v: &[u8]| {
        let sx = abi::SetxattrIn { size: v.len() as u32, ..Default::default() };
        g.call(opcode::SETXATTR, plain, &[&sx.as_bytes()[..abi::SETXATTR_IN_COMPAT_SIZE], n, v], SMALL_REPLY).errno()
    };
    assert_eq!(set(b"user.guest.label\0", b"g"), None);
    let host_path = tree.share.join("plain");
    assert_eq!(host_getxattr(&host_path, "user.avpfs.guest.label"), Ok(b"g".to_vec()));
    assert_eq!(host_getxattr(&host_path, "user.guest.label"), Err(libc::ENODATA));
    let gx = abi::GetxattrIn { size: 100, padding: 0 };
    assert_eq!(g.ok(opcode::GETXATTR, plain, &[gx.as_bytes(), b"user.guest.label\0"]), b"g");
    assert_eq!(set(b"trusted.x\0", b"t"), Some(libc::EPERM));
    assert_eq!(set(b"user.avpfs.guest.label\0", b"t"), Some(libc::EPERM));
    // A denied name reads as absent.
    assert_eq!(g.errno(opcode::GETXATTR, plain, &[gx.as_bytes(), b"user.avpfs.guest.label\0"]), libc::ENODATA);
    assert_eq!(g.errno(opcode::REMOVEXATTR, plain, &[b"trusted.x\0"]), libc::EPERM);
    let list = g.ok(opcode::LISTXATTR, plain, &[gx.as_bytes()]);
    assert!(list.windows(17).any(|w| w == b"user.guest.label\0"), "{list:?}");
    assert!(!list.windows(10).any(|w| w == b"user.avpfs"), "{list:?}");
    assert_eq!(host_getxattr(&host_path, "user.avpfs.guest.label"), Ok(b"g".to_vec()));
}

fn host_getxattr(path: &std::path::Path, n: &str) -> Result<Vec<u8>, i32> {
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new(n).unwrap();
    avpfs_sys::xattr::get(avpfs_sys::xattr::Target::Path(&p), &n).map_err(|e| e.raw_os_error().unwrap())
}

#[test]
fn max_file_size_is_efbig() {
    let (tree, s) = serve("[share]\nmax_file_size = \"64K\"\n", |_| {});
    let g = Guest::new(&s.harness, 1, &tree);
    let (e, fh) = g.create(abi::ROOT_ID, "f", 0o644, libc::O_RDWR).unwrap();
    let n = e.nodeid;
    let write = |offset: u64, data: &[u8]| {
        let w = abi::WriteIn { fh, offset, size: data.len() as u32, ..Default::default() };
        g.call(opcode::WRITE, n, &[w.as_bytes(), data], SMALL_REPLY).errno()
    };
    assert_eq!(write(0, &[1u8; 65536]), None);
    assert_eq!(write(65536, b"x"), Some(libc::EFBIG));
    assert_eq!(write(65000, &[2u8; 1000]), Some(libc::EFBIG));
    assert_eq!(write(u64::MAX - 10, b"x"), Some(libc::EFBIG));
    let trunc = abi::SetattrIn { valid: fattr::SIZE, size: 65537, ..Default::default() };
    assert_eq!(g.setattr(n, trunc), Err(libc::EFBIG));
    let fa = abi::FallocateIn { fh, offset: 65536, length: 1, mode: 0, padding: 0 };
    assert_eq!(g.errno(opcode::FALLOCATE, n, &[fa.as_bytes()]), libc::EFBIG);
    assert_eq!(std::fs::metadata(tree.share.join("f")).unwrap().len(), 65536);
}
