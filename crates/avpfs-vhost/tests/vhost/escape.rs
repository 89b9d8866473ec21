//! A hostile guest against the real passthrough: hand-made FUSE requests
//! that try to leave the share (names, symlinks, magic links, links,
//! renames, special files, ids never handed out, absurd sizes, a race with
//! the host). Each gets an errno or a harmless answer; no reply carries the
//! secret beside the share or an inode from outside it (checked by
//! [`Guest`] on every reply); nothing outside changes; and the daemon keeps
//! serving.
//!
//! What the guest sees of a symlink is its target string, never what it
//! points to: the passthrough opens every name `O_PATH | O_NOFOLLOW`
//! beneath its parent and refuses to OPEN anything but a regular file
//! (`ENXIO` for symlinks, fifos, sockets and devices: the guest kernel
//! resolves its own symlinks and drives its own devices, so it never sends
//! OPEN for one).

use std::ffi::CString;
use std::os::unix::fs::{symlink, MetadataExt};
use std::sync::atomic::{AtomicBool, Ordering};

use fuse_abi::{self as abi, fattr, opcode};
use vhost_harness::fuse::{name, request, SMALL_REPLY};
use zerocopy::IntoBytes;

use crate::share::{serve_share, Guest, Tree, SECRET};

const Q: usize = 1;

fn mkdir_in(name_: &str) -> Vec<u8> {
    let mut v = abi::MkdirIn { mode: 0o755, umask: 0 }.as_bytes().to_vec();
    v.extend_from_slice(&name(name_));
    v
}

fn rename_in(newdir: u64, old: &str, new: &str, flags: u32) -> Vec<u8> {
    let mut v = abi::Rename2In { newdir, flags, padding: 0 }.as_bytes().to_vec();
    v.extend_from_slice(&name(old));
    v.extend_from_slice(&name(new));
    v
}

fn mknod_host(path: &std::path::Path, mode: u32, dev: u64) {
    let p = CString::new(path.to_str().unwrap()).unwrap();
    let r = avpfs_sys::fs::mknodat(avpfs_sys::open::cwd(), &p, mode, dev);
    assert!(r.is_ok(), "mknod {}: {r:?}", path.display());
}

#[test]
fn dot_dotdot_slash_and_empty_names_are_einval() {
    let tree = Tree::new();
    let before = tree.outside_snapshot();
    let s = serve_share(&tree);
    let g = Guest::new(&s.harness, Q, &tree);
    let dir = g.lookup(abi::ROOT_ID, "dir").unwrap().nodeid;
    let bad = ["..", ".", "", "../outside", "../outside/secret", "dir/../../outside", "/", "/etc/passwd", "a/b"];
    for parent in [abi::ROOT_ID, dir] {
        for n in bad {
            let nm = name(n);
            assert_eq!(g.errno(opcode::LOOKUP, parent, &[&nm]), libc::EINVAL, "LOOKUP {n:?}");
            assert_eq!(g.errno(opcode::MKDIR, parent, &[&mkdir_in(n)]), libc::EINVAL, "MKDIR {n:?}");
            let c = abi::CreateIn { flags: libc::O_RDWR as u32, mode: 0o644, umask: 0, open_flags: 0 };
            assert_eq!(g.errno(opcode::CREATE, parent, &[c.as_bytes(), &nm]), libc::EINVAL, "CREATE {n:?}");
            let m = abi::MknodIn { mode: libc::S_IFREG | 0o644, ..Default::default() };
            assert_eq!(g.errno(opcode::MKNOD, parent, &[m.as_bytes(), &nm]), libc::EINVAL, "MKNOD {n:?}");
            assert_eq!(g.errno(opcode::SYMLINK, parent, &[&nm, b"x\0"]), libc::EINVAL, "SYMLINK {n:?}");
            assert_eq!(g.errno(opcode::UNLINK, parent, &[&nm]), libc::EINVAL, "UNLINK {n:?}");
            assert_eq!(g.errno(opcode::RMDIR, parent, &[&nm]), libc::EINVAL, "RMDIR {n:?}");
            let l = abi::LinkIn { oldnodeid: dir };
            assert_eq!(g.errno(opcode::LINK, parent, &[l.as_bytes(), &nm]), libc::EINVAL, "LINK {n:?}");
            assert_eq!(g.errno(opcode::RENAME2, parent, &[&rename_in(parent, "hello", n, 0)]), libc::EINVAL);
            assert_eq!(g.errno(opcode::RENAME2, parent, &[&rename_in(parent, n, "x", 0)]), libc::EINVAL);
            g.assert_serving();
        }
        // A name without its NUL, and one longer than NAME_MAX.
        assert_eq!(g.errno(opcode::LOOKUP, parent, &[b"hello"]), libc::EINVAL);
        assert_eq!(g.errno(opcode::LOOKUP, parent, &[b".."]), libc::EINVAL);
        assert_eq!(g.errno(opcode::LOOKUP, parent, &[]), libc::EINVAL);
        assert_eq!(g.errno(opcode::LOOKUP, parent, &[&name(&"a".repeat(256))]), libc::ENAMETOOLONG);
        assert_eq!(g.errno(opcode::MKDIR, parent, &[&mkdir_in(&"b".repeat(300))]), libc::ENAMETOOLONG);
        // A NUL inside the name ends it: "hello\0/../x" is "hello".
        match g.lookup(parent, "hello\0/../../outside") {
            Ok(e) if parent == abi::ROOT_ID => {
                assert_eq!(e.attr.size, 3);
                g.forget(e.nodeid, 1);
            }
            r => assert_eq!(r.map(|e| e.nodeid), Err(libc::ENOENT)),
        }
        g.assert_serving();
    }
    // Nothing was made anywhere: the share holds what it held.
    let mut names: Vec<_> = std::fs::read_dir(&tree.share).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["dir", "hello"]);
    assert_eq!(std::fs::read_dir(tree.share.join("dir")).unwrap().count(), 0);
    assert_eq!(tree.outside_snapshot(), before);
}

/// The root's parent never shows: READDIRPLUS of the root lists `..` with
/// the root's own inode (as LOOKUP of `..` would answer), not the host
/// directory above the share.
#[test]
fn listing_the_root_shows_nothing_above_it() {
    let tree = Tree::new();
    let s = serve_share(&tree);
    let g = Guest::new(&s.harness, Q, &tree);
    let root_ino = std::fs::metadata(&tree.share).unwrap().ino();
    let listed = g.list_plus(abi::ROOT_ID);
    let mut names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, [".", "..", "dir", "hello"]);
    for (n, e) in &listed {
        if n == "." || n == ".." {
            assert_eq!((e.nodeid, e.attr.ino), (0, root_ino), "{n}");
        }
    }
    // Plain READDIR too (checked by the guest for outside inodes).
    let fh = g.ok(opcode::OPENDIR, abi::ROOT_ID, &[abi::OpenIn::default().as_bytes()]);
    let fh = u64::from_le_bytes(fh[..8].try_into().unwrap());
    let rd = abi::ReadIn { fh, size: 4096, ..Default::default() };
    let r = g.call(opcode::READDIR, abi::ROOT_ID, &[rd.as_bytes()], 16 + 4096);
    assert_eq!(r.errno(), None);
    assert!(!r.body.is_empty());
    g.assert_serving();
}

/// Symlinks to outside, absolute and relative, made by the host and by the
/// guest: a LOOKUP gives the link itself; OPEN is ENXIO; a LOOKUP through it
/// is ENOTDIR; READLINK gives the target string only; nothing reaches the
/// file it names.
#[test]
fn symlinks_out_of_the_share_are_never_followed() {
    let tree = Tree::new();
    let secret = tree.outside.join("secret");
    symlink(&tree.outside, tree.share.join("abs_dir")).unwrap();
    symlink(&secret, tree.share.join("abs_secret")).unwrap();
    symlink("../outside", tree.share.join("rel_dir")).unwrap();
    symlink("../outside/secret", tree.share.join("rel_secret")).unwrap();
    symlink("dir/../../outside/secret", tree.share.join("rel_deep")).unwrap();
    let before = tree.outside_snapshot();
    let s = serve_share(&tree);
    let g = Guest::new(&s.harness, Q, &tree);

    // The guest makes one too: stored verbatim, like any symlink.
    let sl = g.ok(opcode::SYMLINK, abi::ROOT_ID, &[&name("guest_link"), b"../outside/secret\0"]);
    assert!(!sl.is_empty());
    assert_eq!(std::fs::read_link(tree.share.join("guest_link")).unwrap().to_str(), Some("../outside/secret"));

    let outside_str = tree.outside.to_str().unwrap().to_string();
    let secret_str = secret.to_str().unwrap().to_string();
    let cases = [
        ("abs_dir", outside_str.as_str()),
        ("abs_secret", secret_str.as_str()),
        ("rel_dir", "../outside"),
        ("rel_secret", "../outside/secret"),
        ("rel_deep", "dir/../../outside/secret"),
        ("guest_link", "../outside/secret"),
    ];
    for (n, target) in cases {
        let e = g.lookup(abi::ROOT_ID, n).unwrap();
        assert_eq!(e.attr.mode & libc::S_IFMT, libc::S_IFLNK, "{n}");
        assert_eq!(e.attr.ino, std::fs::symlink_metadata(tree.share.join(n)).unwrap().ino(), "{n}");
        let node = e.nodeid;
        assert_eq!(g.ok(opcode::READLINK, node, &[]), target.as_bytes(), "{n}");
        for flags in [libc::O_RDONLY, libc::O_RDWR, libc::O_WRONLY | libc::O_TRUNC, libc::O_RDONLY | libc::O_NOFOLLOW] {
            assert_eq!(g.open(node, flags), Err(libc::ENXIO), "OPEN {n} {flags:#o}");
        }
        assert_eq!(g.lookup(node, "secret").unwrap_err(), libc::ENOTDIR, "{n}");
        assert_eq!(g.lookup(node, "sub").unwrap_err(), libc::ENOTDIR, "{n}");
        assert_eq!(g.errno(opcode::OPENDIR, node, &[abi::OpenIn::default().as_bytes()]), libc::ENOTDIR);
        assert_eq!(g.create(node, "planted", 0o644, libc::O_RDWR), Err(libc::ENOTDIR), "{n}");
        assert_eq!(g.errno(opcode::MKDIR, node, &[&mkdir_in("planted")]), libc::ENOTDIR, "{n}");
        assert_eq!(g.mknod(node, "planted", libc::S_IFIFO | 0o644, 0), Err(libc::ENOTDIR), "{n}");
        assert_eq!(g.errno(opcode::SYMLINK, node, &[&name("planted"), b"x\0"]), libc::ENOTDIR, "{n}");
        // Attributes are the link's own; a truncate is refused; a mode change
        // (if the host allows one on a link) is the link's.
        assert_eq!(g.getattr(node).unwrap().mode & libc::S_IFMT, libc::S_IFLNK);
        let trunc = abi::SetattrIn { valid: fattr::SIZE, size: 0, ..Default::default() };
        assert_eq!(g.setattr(node, trunc), Err(libc::EINVAL), "{n}");
        let chmod = abi::SetattrIn { valid: fattr::MODE, mode: 0o777, ..Default::default() };
        let _ = g.setattr(node, chmod);
        // Extended attributes go to the link itself (user.* is not allowed on one).
        let set = abi::SetxattrIn { size: 4, ..Default::default() };
        assert_eq!(
            g.errno(opcode::SETXATTR, node, &[&set.as_bytes()[..abi::SETXATTR_IN_COMPAT_SIZE], b"user.x\0", b"evil"]),
            libc::EPERM,
            "{n}"
        );
        // CREATE of the link's name opens nothing: EEXIST with O_EXCL, ELOOP without.
        assert_eq!(g.create(abi::ROOT_ID, n, 0o644, libc::O_RDWR | libc::O_EXCL), Err(libc::EEXIST), "{n}");
        assert_eq!(g.create(abi::ROOT_ID, n, 0o644, libc::O_RDWR | libc::O_TRUNC), Err(libc::ELOOP), "{n}");
        // A hard link of the link is another name of the link, in the share.
        let l = abi::LinkIn { oldnodeid: node };
        let linked = format!("{n}.hard");
        g.ok(opcode::LINK, abi::ROOT_ID, &[l.as_bytes(), &name(&linked)]);
        let m = std::fs::symlink_metadata(tree.share.join(&linked)).unwrap();
        assert!(m.file_type().is_symlink());
        assert_eq!(m.ino(), e.attr.ino);
        g.forget(node, 2);
        g.assert_serving();
    }
    assert_eq!(std::fs::read(&secret).unwrap(), SECRET);
    assert_eq!(std::fs::metadata(&secret).unwrap().nlink(), 1);
    assert_eq!(tree.outside_snapshot(), before);
}

/// Magic links: symlinks in the share to `/proc/self/...`. The daemon
/// resolves none of them (they would lead to its own descriptors and root).
#[test]
fn magic_links_in_the_share_are_not_followed() {
    let tree = Tree::new();
    for (n, t) in [
        ("fd0", "/proc/self/fd/0"),
        ("fd3", "/proc/self/fd/3"),
        ("proot", "/proc/self/root"),
        ("pfd", "/proc/self/fd"),
        ("pcwd", "/proc/self/cwd"),
    ] {
        symlink(t, tree.share.join(n)).unwrap();
    }
    let before = tree.outside_snapshot();
    let s = serve_share(&tree);
    let g = Guest::new(&s.harness, Q, &tree);
    for n in ["fd0", "fd3", "proot", "pfd", "pcwd"] {
        let e = g.lookup(abi::ROOT_ID, n).unwrap();
        assert_eq!(e.attr.mode & libc::S_IFMT, libc::S_IFLNK, "{n}");
        assert_eq!(g.open(e.nodeid, libc::O_RDONLY), Err(libc::ENXIO), "{n}");
        assert_eq!(g.open(e.nodeid, libc::O_WRONLY), Err(libc::ENXIO), "{n}");
        for child in ["etc", "0", "1", "3", "passwd"] {
            assert_eq!(g.lookup(e.nodeid, child).unwrap_err(), libc::ENOTDIR, "{n}/{child}");
        }
        assert_eq!(g.errno(opcode::OPENDIR, e.nodeid, &[abi::OpenIn::default().as_bytes()]), libc::ENOTDIR);
        g.assert_serving();
    }
    // The guest cannot name the daemon's descriptors either: `/proc/self/fd/N`
    // as a name is a name with `/` in it.
    for n in ["/proc/self/fd/0", "proc/self/root", "/proc/self/fd/3/secret"] {
        assert_eq!(g.lookup(abi::ROOT_ID, n).unwrap_err(), libc::EINVAL, "{n}");
    }
    assert_eq!(tree.outside_snapshot(), before);
}

/// A hard link the host admin made from inside the share to a file beside
/// it is served, as any file in the share: the admin shared that inode (the
/// guest reads it and sees its inode number). The guest itself cannot make
/// such a link: LINK names a node it was given, and it is only given nodes
/// found beneath the share; directories cannot be linked; inode numbers are
/// not node ids.
#[test]
fn links_reach_only_nodes_the_guest_was_given() {
    let tree = Tree::new();
    let exported = tree.base.join("exported");
    std::fs::create_dir(&exported).unwrap();
    std::fs::write(exported.join("shared_by_admin"), b"the admin shares this").unwrap();
    std::fs::hard_link(exported.join("shared_by_admin"), tree.share.join("admin_link")).unwrap();
    let exported_ino = std::fs::metadata(exported.join("shared_by_admin")).unwrap().ino();
    let secret_ino = std::fs::metadata(tree.outside.join("secret")).unwrap().ino();
    let before = tree.outside_snapshot();
    let s = serve_share(&tree);
    let g = Guest::new(&s.harness, Q, &tree).allowing(exported_ino);

    let e = g.lookup(abi::ROOT_ID, "admin_link").unwrap();
    assert_eq!((e.attr.ino, e.attr.nlink), (exported_ino, 2));
    let fh = g.open(e.nodeid, libc::O_RDONLY).unwrap();
    assert_eq!(g.read(e.nodeid, fh, 0, 100).unwrap(), b"the admin shares this");
    g.release(e.nodeid, fh).unwrap();

    let dir = g.lookup(abi::ROOT_ID, "dir").unwrap().nodeid;
    let link = |old: u64, parent: u64, n: &str| {
        g.errno(opcode::LINK, parent, &[abi::LinkIn { oldnodeid: old }.as_bytes(), &name(n)])
    };
    // Inode numbers of outside files, and ids never handed out, are not nodes.
    for old in [secret_ino, exported_ino + 1, 0, u64::MAX, 0xdead_beef] {
        if old != e.nodeid && old != dir && old != abi::ROOT_ID {
            assert_eq!(link(old, abi::ROOT_ID, "stolen"), libc::ENOENT, "LINK of node {old}");
        }
    }
    // Directories (the root included) cannot be linked.
    assert_eq!(link(abi::ROOT_ID, dir, "root_again"), libc::EPERM);
    assert_eq!(link(dir, abi::ROOT_ID, "dir_again"), libc::EPERM);
    // Into a parent that is not a directory, or unknown.
    assert_eq!(link(e.nodeid, e.nodeid, "x"), libc::ENOTDIR);
    assert_eq!(link(e.nodeid, 0xdead_beef, "x"), libc::ENOENT);
    // Onto an existing name.
    assert_eq!(link(e.nodeid, abi::ROOT_ID, "hello"), libc::EEXIST);
    // A link of a node the guest holds, inside the share: fine.
    let l = abi::LinkIn { oldnodeid: e.nodeid };
    g.ok(opcode::LINK, dir, &[l.as_bytes(), &name("again")]);
    assert_eq!(std::fs::metadata(tree.share.join("dir/again")).unwrap().ino(), exported_ino);
    assert_eq!(std::fs::metadata(tree.outside.join("secret")).unwrap().nlink(), 1);
    assert!(!tree.share.join("stolen").exists());
    assert_eq!(tree.outside_snapshot(), before);
    g.assert_serving();
}

/// FIFOs and device nodes in the share (made by the host, or by the guest
/// with MKNOD) are never opened by the daemon: OPEN is ENXIO at once (a
/// FIFO open would otherwise block a worker until a writer comes; a device
/// open would hand the guest the host's device), CREATE of their name is
/// ENXIO, a truncate EINVAL.
#[test]
fn fifos_and_devices_are_never_opened_on_the_host() {
    let tree = Tree::new();
    mknod_host(&tree.share.join("fifo"), libc::S_IFIFO | 0o666, 0);
    // The host's /dev/null and /dev/mem, as nodes in the share.
    mknod_host(&tree.share.join("null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    mknod_host(&tree.share.join("mem"), libc::S_IFCHR | 0o600, libc::makedev(1, 1));
    let s = serve_share(&tree);
    let g = Guest::new(&s.harness, Q, &tree);
    // The guest may make its own nodes (no policy here), and gets no further.
    let own = g.mknod(abi::ROOT_ID, "guest_mem", libc::S_IFCHR | 0o600, (1 << 8) | 1).unwrap();
    assert_eq!(own.attr.mode & libc::S_IFMT, libc::S_IFCHR);
    let own_fifo = g.mknod(abi::ROOT_ID, "guest_fifo", libc::S_IFIFO | 0o600, 0).unwrap();
    assert_eq!(own_fifo.attr.mode & libc::S_IFMT, libc::S_IFIFO);

    let flags = [
        libc::O_RDONLY,
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_NONBLOCK,
        libc::O_WRONLY | libc::O_TRUNC,
    ];
    for n in ["fifo", "null", "mem", "guest_mem", "guest_fifo"] {
        let e = g.lookup(abi::ROOT_ID, n).unwrap();
        for f in flags {
            // A blocking FIFO open would stall this queue: the next request
            // is sent on the same queue right after it, and both are answered.
            let o = abi::OpenIn { flags: f as u32, open_flags: 0 };
            let req = request(opcode::OPEN, 7000, e.nodeid, &[o.as_bytes()]);
            let look = request(opcode::LOOKUP, 7001, abi::ROOT_ID, &[&name("hello")]);
            let t1 = submit(&s.harness, &req);
            let t2 = submit(&s.harness, &look);
            let (r1, r2) = (wait(&s.harness, t1), wait(&s.harness, t2));
            assert_eq!((r1.header.unique, r1.errno()), (7000, Some(libc::ENXIO)), "OPEN {n} {f:#o}");
            assert_eq!((r2.header.unique, r2.errno()), (7001, None));
            g.forget(g.lookup(abi::ROOT_ID, "hello").unwrap().nodeid, 2);
        }
        assert_eq!(g.create(abi::ROOT_ID, n, 0o644, libc::O_RDWR), Err(libc::ENXIO), "CREATE {n}");
        assert_eq!(g.create(abi::ROOT_ID, n, 0o644, libc::O_RDWR | libc::O_EXCL), Err(libc::EEXIST));
        let trunc = abi::SetattrIn { valid: fattr::SIZE, size: 0, ..Default::default() };
        assert_eq!(g.setattr(e.nodeid, trunc), Err(libc::EINVAL), "truncate {n}");
        assert_eq!(g.errno(opcode::OPENDIR, e.nodeid, &[abi::OpenIn::default().as_bytes()]), libc::ENOTDIR);
        // SYNCFS of a special file syncs the share's file system, opening nothing.
        g.ok(opcode::SYNCFS, e.nodeid, &[abi::SyncfsIn::default().as_bytes()]);
        g.assert_serving();
    }
}

/// Harness helpers for two requests in flight on one queue.
fn submit(h: &vhost_harness::Harness, req: &[u8]) -> (vhost_harness::Token, vm_memory::GuestAddress) {
    let a = h.alloc(req.len()).unwrap();
    h.write_guest(a, req).unwrap();
    let reply = h.alloc(SMALL_REPLY).unwrap();
    let chain = vhost_harness::Chain {
        readable: vec![(a, req.len() as u32)],
        writable: vec![(reply, SMALL_REPLY as u32)],
        indirect: false,
    };
    (h.submit(Q, &chain).unwrap(), reply)
}

fn wait(
    h: &vhost_harness::Harness,
    (t, reply): (vhost_harness::Token, vm_memory::GuestAddress),
) -> vhost_harness::fuse::Reply {
    let used = h.wait(t).unwrap();
    let r = vhost_harness::fuse::Reply::parse(&h.read_guest(reply, used as usize).unwrap()).unwrap();
    assert!(!r.body.windows(SECRET.len()).any(|w| w == SECRET));
    r
}

/// Renames that would move the root, a directory into itself, or use
/// `.`/`..`: errnos, and the tree is unchanged.
#[test]
fn renames_of_the_root_and_into_itself_are_refused() {
    let tree = Tree::new();
    std::fs::create_dir(tree.share.join("dir/sub")).unwrap();
    symlink(&tree.outside, tree.share.join("out")).unwrap();
    let before = tree.outside_snapshot();
    let s = serve_share(&tree);
    let g = Guest::new(&s.harness, Q, &tree);
    let dir = g.lookup(abi::ROOT_ID, "dir").unwrap().nodeid;
    let sub = g.lookup(dir, "sub").unwrap().nodeid;
    let out = g.lookup(abi::ROOT_ID, "out").unwrap().nodeid;
    let hello = g.lookup(abi::ROOT_ID, "hello").unwrap().nodeid;
    let r = |olddir: u64, old: &str, newdir: u64, new: &str, flags: u32| {
        g.errno(opcode::RENAME2, olddir, &[&rename_in(newdir, old, new, flags)])
    };
    // A directory into its own child or grandchild.
    assert_eq!(r(abi::ROOT_ID, "dir", dir, "x", 0), libc::EINVAL);
    assert_eq!(r(abi::ROOT_ID, "dir", sub, "x", 0), libc::EINVAL);
    assert_eq!(r(abi::ROOT_ID, "dir", sub, "x", libc::RENAME_NOREPLACE), libc::EINVAL);
    // `.` and `..` on either side, the root by any name.
    for (old, new) in [("..", "x"), (".", "x"), ("dir", ".."), ("dir", "."), ("", "x"), ("dir", "")] {
        assert_eq!(r(abi::ROOT_ID, old, dir, new, 0), libc::EINVAL, "{old:?} -> {new:?}");
        assert_eq!(r(dir, old, abi::ROOT_ID, new, 0), libc::EINVAL, "{old:?} -> {new:?}");
    }
    // Through a symlink to outside, into an unknown or non-directory parent.
    assert_eq!(r(abi::ROOT_ID, "hello", out, "hello", 0), libc::ENOTDIR);
    assert_eq!(r(out, "secret", abi::ROOT_ID, "stolen", 0), libc::ENOTDIR);
    assert_eq!(r(abi::ROOT_ID, "hello", hello, "x", 0), libc::ENOTDIR);
    for bad in [0, u64::MAX, 0xdead_beef] {
        assert_eq!(r(abi::ROOT_ID, "hello", bad, "x", 0), libc::ENOENT);
        assert_eq!(r(bad, "secret", abi::ROOT_ID, "stolen", 0), libc::ENOENT);
    }
    // Unknown flags, and EXCHANGE with WHITEOUT.
    assert_eq!(r(abi::ROOT_ID, "hello", dir, "h", 1 << 7), libc::EINVAL);
    assert_eq!(r(abi::ROOT_ID, "hello", dir, "h", libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT), libc::EINVAL);
    // Exchanging a directory with its own child.
    assert_eq!(r(abi::ROOT_ID, "dir", dir, "sub", libc::RENAME_EXCHANGE), libc::EINVAL);
    // Old RENAME (no flags) with `..`.
    let mut old_rename = abi::RenameIn { newdir: abi::ROOT_ID }.as_bytes().to_vec();
    old_rename.extend_from_slice(b"..\0x\0");
    assert_eq!(g.errno(opcode::RENAME, dir, &[&old_rename]), libc::EINVAL);
    assert!(tree.share.join("dir/sub").is_dir());
    assert!(std::fs::symlink_metadata(tree.share.join("out")).unwrap().file_type().is_symlink());
    assert_eq!(tree.outside_snapshot(), before);
    g.assert_serving();
}

/// Node ids never handed out, and forgotten ones: ENOENT for every kind of
/// request; FORGETs of them are dropped; the root survives any FORGET.
#[test]
fn unknown_and_forgotten_node_ids_are_enoent() {
    let tree = Tree::new();
    let s = serve_share(&tree);
    let g = Guest::new(&s.harness, Q, &tree);
    let e = g.lookup(abi::ROOT_ID, "hello").unwrap();
    g.forget(e.nodeid, 1);
    let forgotten = e.nodeid;
    for node in [0, u64::MAX, 1 << 63, 0x5eed_1234_abcd, 987_654, forgotten] {
        assert_eq!(g.getattr(node), Err(libc::ENOENT), "GETATTR {node}");
        assert_eq!(g.lookup(node, "hello").unwrap_err(), libc::ENOENT, "LOOKUP in {node}");
        assert_eq!(g.open(node, libc::O_RDONLY), Err(libc::ENOENT));
        assert_eq!(g.errno(opcode::OPENDIR, node, &[abi::OpenIn::default().as_bytes()]), libc::ENOENT);
        assert_eq!(g.errno(opcode::READLINK, node, &[]), libc::ENOENT);
        assert_eq!(g.errno(opcode::MKDIR, node, &[&mkdir_in("x")]), libc::ENOENT);
        assert_eq!(g.create(node, "x", 0o644, libc::O_RDWR), Err(libc::ENOENT));
        assert_eq!(g.mknod(node, "x", libc::S_IFIFO | 0o644, 0), Err(libc::ENOENT));
        assert_eq!(g.errno(opcode::UNLINK, node, &[&name("hello")]), libc::ENOENT);
        let chmod = abi::SetattrIn { valid: fattr::MODE, mode: 0o777, ..Default::default() };
        assert_eq!(g.setattr(node, chmod), Err(libc::ENOENT));
        let gx = abi::GetxattrIn { size: 100, padding: 0 };
        assert_eq!(g.errno(opcode::GETXATTR, node, &[gx.as_bytes(), b"user.x\0"]), libc::ENOENT);
        assert_eq!(g.errno(opcode::LISTXATTR, node, &[gx.as_bytes()]), libc::ENOENT);
        assert_eq!(g.errno(opcode::STATFS, node, &[]), libc::ENOENT);
        let acc = abi::AccessIn { mask: libc::R_OK as u32, padding: 0 };
        assert_eq!(g.errno(opcode::ACCESS, node, &[acc.as_bytes()]), libc::ENOENT);
        // FORGET of it: no reply, nothing changes.
        g.forget(node, u64::MAX);
        let bf = abi::BatchForgetIn { count: 2, dummy: 0 };
        let one = abi::ForgetOne { nodeid: node, nlookup: 1 };
        let req = request(opcode::BATCH_FORGET, 1, 0, &[bf.as_bytes(), one.as_bytes(), one.as_bytes()]);
        assert!(s.harness.request(0, &req, 0).unwrap().is_empty());
        g.assert_serving();
    }
    // The root cannot be forgotten.
    g.forget(abi::ROOT_ID, u64::MAX);
    g.assert_serving();
    assert_eq!(s.fs().node_count(), 1);
}

/// File handles never handed out, of another node, or released: EBADF.
#[test]
fn unknown_and_released_handles_are_ebadf() {
    let tree = Tree::new();
    let s = serve_share(&tree);
    let g = Guest::new(&s.harness, Q, &tree);
    let e = g.lookup(abi::ROOT_ID, "hello").unwrap();
    let dir = g.lookup(abi::ROOT_ID, "dir").unwrap();
    let fh = g.open(e.nodeid, libc::O_RDWR).unwrap();
    let dfh = u64::from_le_bytes(
        g.ok(opcode::OPENDIR, dir.nodeid, &[abi::OpenIn::default().as_bytes()])[..8].try_into().unwrap(),
    );
    let check = |node: u64, bad: u64| {
        assert_eq!(g.read(node, bad, 0, 10), Err(libc::EBADF), "READ {bad}");
        let w = abi::WriteIn { fh: bad, size: 1, ..Default::default() };
        assert_eq!(g.errno(opcode::WRITE, node, &[w.as_bytes(), b"x"]), libc::EBADF);
        let f = abi::FlushIn { fh: bad, ..Default::default() };
        assert_eq!(g.errno(opcode::FLUSH, node, &[f.as_bytes()]), libc::EBADF);
        let fs = abi::FsyncIn { fh: bad, ..Default::default() };
        assert_eq!(g.errno(opcode::FSYNC, node, &[fs.as_bytes()]), libc::EBADF);
        let l = abi::LseekIn { fh: bad, whence: libc::SEEK_SET as u32, ..Default::default() };
        assert_eq!(g.errno(opcode::LSEEK, node, &[l.as_bytes()]), libc::EBADF);
        let fa = abi::FallocateIn { fh: bad, length: 10, ..Default::default() };
        assert_eq!(g.errno(opcode::FALLOCATE, node, &[fa.as_bytes()]), libc::EBADF);
        let ga = abi::GetattrIn { getattr_flags: abi::FUSE_GETATTR_FH, fh: bad, ..Default::default() };
        assert_eq!(g.errno(opcode::GETATTR, node, &[ga.as_bytes()]), libc::EBADF);
        let rd = abi::ReadIn { fh: bad, size: 4096, ..Default::default() };
        assert_eq!(g.errno(opcode::READDIR, node, &[rd.as_bytes()]), libc::EBADF);
        assert_eq!(g.release(node, bad), Err(libc::EBADF));
        let rel = abi::ReleaseIn { fh: bad, ..Default::default() };
        assert_eq!(g.errno(opcode::RELEASEDIR, node, &[rel.as_bytes()]), libc::EBADF);
    };
    for bad in [0, u64::MAX, fh + 1000, 0x1234_5678_9abc] {
        check(e.nodeid, bad);
    }
    // A handle belongs to its node: the directory's handle on the file, and back.
    check(e.nodeid, dfh);
    assert_eq!(g.read(dir.nodeid, fh, 0, 10), Err(libc::EBADF));
    // A file handle read as a directory listing.
    let rd = abi::ReadIn { fh, size: 4096, ..Default::default() };
    assert_eq!(g.errno(opcode::READDIR, e.nodeid, &[rd.as_bytes()]), libc::ENOTDIR);
    // Released: gone.
    g.release(e.nodeid, fh).unwrap();
    check(e.nodeid, fh);
    let rel = abi::ReleaseIn { fh: dfh, ..Default::default() };
    g.ok(opcode::RELEASEDIR, dir.nodeid, &[rel.as_bytes()]);
    let rd = abi::ReadIn { fh: dfh, size: 4096, ..Default::default() };
    assert_eq!(g.errno(opcode::READDIR, dir.nodeid, &[rd.as_bytes()]), libc::EBADF);
    assert_eq!(s.fs().handle_count(), 0);
    assert_eq!(std::fs::read(tree.share.join("hello")).unwrap(), b"hi\n");
    g.assert_serving();
}

/// Sizes and offsets at the ends of their ranges.
#[test]
fn huge_sizes_and_offsets_are_bounded_or_refused() {
    let tree = Tree::new();
    std::fs::write(tree.share.join("big"), vec![7u8; 8192]).unwrap();
    let s = serve_share(&tree);
    let g = Guest::new(&s.harness, Q, &tree);
    let e = g.lookup(abi::ROOT_ID, "hello").unwrap();
    let n = e.nodeid;
    let fh = g.open(n, libc::O_RDWR).unwrap();

    // READ of 4 GiB - 1: bounded by the reply buffer.
    let rd = abi::ReadIn { fh, size: u32::MAX, ..Default::default() };
    let r = g.call(opcode::READ, n, &[rd.as_bytes()], 4096);
    assert_eq!((r.errno(), r.body.as_slice()), (None, &b"hi\n"[..]));
    // READ far past the end: nothing; a READ whose end passes the largest
    // offset: the host's EINVAL; an offset past it: EINVAL.
    assert_eq!(g.read(n, fh, 1 << 60, 4096), Ok(Vec::new()));
    assert_eq!(g.read(n, fh, i64::MAX as u64, 4096), Err(libc::EINVAL));
    assert_eq!(g.read(n, fh, i64::MAX as u64 + 1, 4096), Err(libc::EINVAL));
    assert_eq!(g.read(n, fh, u64::MAX, 4096), Err(libc::EINVAL));

    // WRITE whose end overflows or passes the largest offset: EFBIG.
    for offset in [u64::MAX, u64::MAX - 1, i64::MAX as u64, i64::MAX as u64 - 1, 1 << 63] {
        let w = abi::WriteIn { fh, offset, size: 3, ..Default::default() };
        assert_eq!(g.errno(opcode::WRITE, n, &[w.as_bytes(), b"abc"]), libc::EFBIG, "WRITE at {offset:#x}");
    }
    // Past what the host file system stores (ext4: 16 TiB): the host's EFBIG.
    let w = abi::WriteIn { fh, offset: 1 << 62, size: 3, ..Default::default() };
    assert_eq!(g.errno(opcode::WRITE, n, &[w.as_bytes(), b"abc"]), libc::EFBIG);
    // WRITE whose size field disagrees with its payload.
    for size in [u32::MAX, 4, 2, 0] {
        let w = abi::WriteIn { fh, size, ..Default::default() };
        assert_eq!(g.errno(opcode::WRITE, n, &[w.as_bytes(), b"abc"]), libc::EINVAL, "WRITE size {size}");
    }

    // FALLOCATE: offsets that are not file offsets, a sum past the limit, no length.
    let fa = |offset: u64, length: u64| {
        let f = abi::FallocateIn { fh, offset, length, mode: 0, padding: 0 };
        g.errno(opcode::FALLOCATE, n, &[f.as_bytes()])
    };
    assert_eq!(fa(u64::MAX, 1), libc::EINVAL);
    assert_eq!(fa(0, u64::MAX), libc::EINVAL);
    assert_eq!(fa(i64::MAX as u64, i64::MAX as u64), libc::EFBIG);
    assert_eq!(fa(i64::MAX as u64, 1), libc::EFBIG);
    assert_eq!(fa(0, 0), libc::EINVAL);

    // LSEEK: negative absolute offset, unknown whence, data past the end.
    let ls = |offset: u64, whence: i32| {
        let l = abi::LseekIn { fh, offset, whence: whence as u32, padding: 0 };
        g.errno(opcode::LSEEK, n, &[l.as_bytes()])
    };
    assert_eq!(ls(u64::MAX, libc::SEEK_SET), libc::EINVAL);
    assert_eq!(ls(1 << 63, libc::SEEK_SET), libc::EINVAL);
    assert_eq!(ls(0, 99), libc::EINVAL);
    assert_eq!(ls(4096, libc::SEEK_DATA), libc::ENXIO);
    assert_eq!(ls(u64::MAX, libc::SEEK_HOLE), libc::ENXIO);

    // COPY_FILE_RANGE with offsets out of range, or an end past the limit.
    let big = g.lookup(abi::ROOT_ID, "big").unwrap().nodeid;
    let bfh = g.open(big, libc::O_RDWR).unwrap();
    let cfr = |off_in: u64, off_out: u64, len: u64| {
        let c = abi::CopyFileRangeIn { fh_in: bfh, off_in, nodeid_out: n, fh_out: fh, off_out, len, flags: 0 };
        let r = g.call(opcode::COPY_FILE_RANGE, big, &[c.as_bytes()], SMALL_REPLY);
        r.errno().ok_or_else(|| u32::from_le_bytes(r.body[..4].try_into().unwrap()))
    };
    assert_eq!(cfr(u64::MAX, 0, 10), Ok(libc::EINVAL));
    assert_eq!(cfr(0, u64::MAX, 10), Ok(libc::EINVAL));
    assert_eq!(cfr(0, i64::MAX as u64, 10), Ok(libc::EFBIG));
    // Reading from the largest offset: nothing to copy.
    assert_eq!(cfr(i64::MAX as u64, 0, 10), Err(0));
    // A huge length copies what there is.
    assert_eq!(cfr(0, 100, u64::MAX), Err(8192));
    let c =
        abi::CopyFileRangeIn { fh_in: bfh, nodeid_out: n, fh_out: fh, len: 1, flags: u64::MAX, ..Default::default() };
    assert_eq!(g.errno(opcode::COPY_FILE_RANGE, big, &[c.as_bytes()]), libc::EINVAL);

    // SETATTR size: not a file offset, or past the limit.
    let trunc =
        |size: u64| g.setattr(n, abi::SetattrIn { valid: fattr::SIZE | fattr::FH, fh, size, ..Default::default() });
    assert_eq!(trunc(u64::MAX), Err(libc::EINVAL));
    assert_eq!(trunc(i64::MAX as u64), Err(libc::EFBIG));
    assert_eq!(trunc(3).map(|a| a.size), Ok(3));

    // SETXATTR: a size field larger than the body, larger than XATTR_SIZE_MAX.
    let sx = |size: u32, value: &[u8]| {
        let s = abi::SetxattrIn { size, ..Default::default() };
        g.errno(opcode::SETXATTR, n, &[&s.as_bytes()[..abi::SETXATTR_IN_COMPAT_SIZE], b"user.k\0", value])
    };
    assert_eq!(sx(100, b"short"), libc::EINVAL);
    assert_eq!(sx(u32::MAX, b"short"), libc::E2BIG);
    assert_eq!(sx(65537, &[0u8; 16]), libc::E2BIG);
    // GETXATTR / LISTXATTR with a huge size: the value, bounded by what there is.
    let s = abi::SetxattrIn { size: 5, ..Default::default() };
    g.ok(opcode::SETXATTR, n, &[&s.as_bytes()[..abi::SETXATTR_IN_COMPAT_SIZE], b"user.k\0", b"value"]);
    let gx = abi::GetxattrIn { size: u32::MAX, padding: 0 };
    assert_eq!(g.ok(opcode::GETXATTR, n, &[gx.as_bytes(), b"user.k\0"]), b"value");
    assert_eq!(g.ok(opcode::LISTXATTR, n, &[gx.as_bytes()]), b"user.k\0");
    let small = abi::GetxattrIn { size: 2, padding: 0 };
    assert_eq!(g.errno(opcode::GETXATTR, n, &[small.as_bytes(), b"user.k\0"]), libc::ERANGE);
    // READDIR with a huge size: bounded by the reply buffer.
    let dfh = u64::from_le_bytes(
        g.ok(opcode::OPENDIR, abi::ROOT_ID, &[abi::OpenIn::default().as_bytes()])[..8].try_into().unwrap(),
    );
    for (op, cap) in [(opcode::READDIR, 200), (opcode::READDIRPLUS, 400), (opcode::READDIR, 65536)] {
        let rd = abi::ReadIn { fh: dfh, size: u32::MAX, offset: 0, ..Default::default() };
        let r = g.call(op, abi::ROOT_ID, &[rd.as_bytes()], cap);
        assert_eq!(r.errno(), None);
        assert!(!r.body.is_empty() && r.body.len() + 16 <= cap);
    }
    // A directory cookie that is not one.
    let rd = abi::ReadIn { fh: dfh, size: 4096, offset: u64::MAX, ..Default::default() };
    let r = g.call(opcode::READDIR, abi::ROOT_ID, &[rd.as_bytes()], 4096);
    assert!(r.errno().is_none() || r.errno() == Some(libc::EINVAL));

    assert_eq!(std::fs::read(tree.share.join("hello")).unwrap(), b"hi\n");
    g.assert_serving();
}

/// Length fields of the header and bodies that do not match the request.
#[test]
fn length_fields_that_lie_are_einval() {
    let tree = Tree::new();
    let s = serve_share(&tree);
    let g = Guest::new(&s.harness, Q, &tree);
    let good = request(opcode::LOOKUP, 42, abi::ROOT_ID, &[&name("hello")]);
    for len in [0u32, 1, 39, u32::MAX, good.len() as u32 + 1, 1 << 20] {
        let mut req = good.clone();
        req[0..4].copy_from_slice(&len.to_le_bytes());
        let r = g.send(opcode::LOOKUP, &req, SMALL_REPLY);
        assert_eq!((r.header.unique, r.errno()), (42, Some(libc::EINVAL)), "len {len}");
        g.assert_serving();
    }
    // A header length shorter than the chain: the rest is ignored, so the
    // name loses its NUL.
    let mut req = good.clone();
    req[0..4].copy_from_slice(&(good.len() as u32 - 1).to_le_bytes());
    assert_eq!(g.send(opcode::LOOKUP, &req, SMALL_REPLY).errno(), Some(libc::EINVAL));
    // total_extlen (in 8-byte units) larger than the body.
    let mut req = good.clone();
    req[36..38].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(g.send(opcode::LOOKUP, &req, SMALL_REPLY).errno(), Some(libc::EINVAL));
    // Bodies shorter than their struct.
    for op in [
        opcode::READ,
        opcode::OPEN,
        opcode::SETATTR,
        opcode::GETXATTR,
        opcode::FALLOCATE,
        opcode::LSEEK,
        opcode::COPY_FILE_RANGE,
        opcode::RENAME2,
        opcode::LINK,
        opcode::MKNOD,
    ] {
        assert_eq!(g.errno(op, abi::ROOT_ID, &[&[0u8; 3]]), libc::EINVAL, "{}", opcode::name(op));
    }
    // A SYMLINK target longer than PATH_MAX, a name with no end.
    let long = vec![b'a'; 5000];
    assert_eq!(g.errno(opcode::SYMLINK, abi::ROOT_ID, &[&name("l"), &long, b"\0"]), libc::ENAMETOOLONG);
    assert_eq!(g.errno(opcode::SYMLINK, abi::ROOT_ID, &[&name("l"), b"x"]), libc::EINVAL);
    // A body beyond what any request carries.
    let huge = vec![0u8; 300 * 1024];
    assert_eq!(g.errno(opcode::SETXATTR, abi::ROOT_ID, &[&huge]), libc::E2BIG);
    // BATCH_FORGET that claims more entries than it has: no reply, nothing forgotten.
    let e = g.lookup(abi::ROOT_ID, "hello").unwrap();
    let bf = abi::BatchForgetIn { count: u32::MAX, dummy: 0 };
    let req = request(opcode::BATCH_FORGET, 1, 0, &[bf.as_bytes()]);
    assert!(s.harness.request(0, &req, 0).unwrap().is_empty());
    assert_eq!(g.getattr(e.nodeid).map(|a| a.size), Ok(3));
    g.assert_serving();
}

/// The host swaps a directory of the share with a symlink to outside
/// (`renameat2(RENAME_EXCHANGE)`) as fast as it can, while the guest looks
/// up, opens, reads, creates, makes nodes and changes modes beneath the
/// name. Whatever the guest gets is inside the share: never the secret, never
/// an outside inode, nothing made or changed outside.
#[test]
fn race_swapping_a_directory_with_a_symlink_never_escapes() {
    const ROUNDS: usize = 1500;
    let tree = Tree::new();
    std::fs::create_dir(tree.share.join("race")).unwrap();
    std::fs::write(tree.share.join("race/secret"), b"inside").unwrap();
    symlink(&tree.outside, tree.share.join("swap")).unwrap();
    let before = tree.outside_snapshot();
    let secret_mode = std::fs::metadata(tree.outside.join("secret")).unwrap().mode();
    let s = serve_share(&tree);
    let g = Guest::new(&s.harness, Q, &tree);
    let stop = AtomicBool::new(false);
    let race = CString::new(tree.share.join("race").to_str().unwrap()).unwrap();
    let swap = CString::new(tree.share.join("swap").to_str().unwrap()).unwrap();
    let mut swaps = 0u64;
    let mut seen_dir = 0;
    let mut seen_link = 0;
    std::thread::scope(|sc| {
        let swapper = sc.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let cwd = avpfs_sys::open::cwd();
                let r = avpfs_sys::fs::renameat2(cwd, &race, cwd, &swap, libc::RENAME_EXCHANGE);
                assert!(r.is_ok(), "renameat2: {r:?}");
                n += 1;
            }
            n
        });
        for i in 0..ROUNDS {
            match g.lookup(abi::ROOT_ID, "race") {
                Ok(e) => {
                    let node = e.nodeid;
                    match e.attr.mode & libc::S_IFMT {
                        libc::S_IFDIR => seen_dir += 1,
                        libc::S_IFLNK => seen_link += 1,
                        m => panic!("race is of type {m:o}"),
                    }
                    if let Ok(f) = g.lookup(node, "secret") {
                        if let Ok(fh) = g.open(f.nodeid, libc::O_RDONLY) {
                            assert_eq!(g.read(f.nodeid, fh, 0, 100), Ok(b"inside".to_vec()));
                            g.release(f.nodeid, fh).unwrap();
                        }
                        g.forget(f.nodeid, 1);
                    }
                    let nm = format!("c{i}");
                    if let Ok((c, fh)) = g.create(node, &nm, 0o644, libc::O_RDWR | libc::O_EXCL) {
                        g.release(c.nodeid, fh).unwrap();
                        g.forget(c.nodeid, 1);
                    }
                    if let Ok(m) = g.mknod(node, &format!("f{i}"), libc::S_IFIFO | 0o644, 0) {
                        g.forget(m.nodeid, 1);
                    }
                    let _ = g.setattr(node, abi::SetattrIn { valid: fattr::MODE, mode: 0o777, ..Default::default() });
                    let _ = g.lookup(node, "sub");
                    g.forget(node, 1);
                }
                Err(e) => panic!("LOOKUP race: errno {e}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        swaps = swapper.join().unwrap();
    });
    assert!(swaps > 0);
    // Both shapes were seen (else the race did not happen).
    assert!(seen_dir > 0 && seen_link > 0, "dir {seen_dir} times, link {seen_link} times in {ROUNDS}");
    assert_eq!(std::fs::metadata(tree.outside.join("secret")).unwrap().mode(), secret_mode);
    assert_eq!(tree.outside_snapshot(), before);
    g.assert_serving();
}
