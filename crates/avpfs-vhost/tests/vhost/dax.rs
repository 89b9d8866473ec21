//! The DAX window through vhost-user: GET_SHMEM_CONFIG, FUSE_INIT's
//! MAP_ALIGNMENT, and SETUPMAPPING/REMOVEMAPPING turned into SHMEM_MAP and
//! SHMEM_UNMAP on the back-end channel, which the harness answers by really
//! mapping the descriptor into its own window. Every bad request gets its
//! errno and sends nothing to the front end. Per-inode DAX (`dax=inode`):
//! HAS_INODE_DAX, FUSE_ATTR_DAX as `[dax] files` picks, and SETUPMAPPING
//! refused for the files not picked.

use avpfs_passthrough::PassthroughFs;
use avpfs_policy::{parse, PolicyFs};
use avpfs_server::{DaxFrontEnd, FileSystem};
use avpfs_vhost::VhostOptions;
use std::os::unix::fs::PermissionsExt;

use fuse_abi::{self as abi, attr_flags, init_flags as init, opcode, setupmapping_flags as map};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_harness::dax::ShmemRequest;
use vhost_harness::FuseClient;
use zerocopy::IntoBytes;

use crate::share::{passthrough_config, Guest, Served, Tree};

const PAGE: u64 = 4096;
const WINDOW: u64 = 64 * PAGE;
/// The `fh` of the Linux client's requests: no handle.
const NO_FH: u64 = u64::MAX;
/// Three pages and a bit.
const DATA_LEN: usize = 3 * PAGE as usize + 100;

fn data() -> Vec<u8> {
    (0..DATA_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

/// Serves `fs` with a window of `window` bytes to a front end that maps
/// as mmap(2) does.
fn serve_fs<F: FileSystem + 'static>(fs: F, window: u64) -> Served<F> {
    serve_for(fs, window, DaxFrontEnd::Mmap)
}

/// Serves `fs` with a window of `window` bytes to a front end that maps
/// as `front_end` says (the harness behaves so).
fn serve_for<F: FileSystem + 'static>(fs: F, window: u64, front_end: DaxFrontEnd) -> Served<F> {
    let options =
        VhostOptions { num_request_queues: 1, dax_window: window, dax_front_end: front_end, ..Default::default() };
    Served::start_with(fs, options)
}

/// The share of [`Tree`] with `data` (and `firmware/image`, `secrets/key`)
/// served by the passthrough under `policy` (None: no policy layer).
fn tree() -> Tree {
    let tree = Tree::new();
    std::fs::write(tree.share.join("data"), data()).unwrap();
    std::fs::create_dir_all(tree.share.join("firmware")).unwrap();
    std::fs::write(tree.share.join("firmware/image"), data()).unwrap();
    std::fs::create_dir_all(tree.share.join("secrets")).unwrap();
    std::fs::write(tree.share.join("secrets/key"), data()).unwrap();
    tree
}

fn setup(fh: u64, foffset: u64, len: u64, flags: u64, moffset: u64) -> Vec<u8> {
    abi::SetupMappingIn { fh, foffset, len, flags, moffset }.as_bytes().to_vec()
}

fn remove(ranges: &[(u64, u64)]) -> Vec<u8> {
    let mut v = abi::RemoveMappingIn { count: ranges.len() as u32 }.as_bytes().to_vec();
    for &(moffset, len) in ranges {
        v.extend_from_slice(abi::RemoveMappingOne { moffset, len }.as_bytes());
    }
    v
}

fn requests<F: FileSystem>(s: &Served<F>) -> Vec<ShmemRequest> {
    s.harness.dax().expect("a DAX window").take_requests()
}

fn window_bytes<F: FileSystem>(s: &Served<F>, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    s.harness.dax().unwrap().window().read(offset, &mut buf)?;
    Ok(buf)
}

#[test]
fn the_window_is_offered_only_when_configured() {
    let tree = tree();
    let s = serve_fs(PassthroughFs::new(passthrough_config(&tree.share)).unwrap(), WINDOW);
    assert!(s.harness.protocol_features().contains(VhostUserProtocolFeatures::SHMEM));
    assert_eq!(s.harness.shmem_sizes(), &[WINDOW]);
    let out = FuseClient::new(&s.harness, 1)
        .init_with(abi::KERNEL_MINOR_VERSION, init::INIT_EXT | init::MAP_ALIGNMENT)
        .unwrap();
    assert_ne!(u64::from(out.flags) & init::MAP_ALIGNMENT, 0);
    assert_eq!(out.map_alignment, 12);

    let without = serve_fs(PassthroughFs::new(passthrough_config(&tree.share)).unwrap(), 0);
    assert!(!without.harness.protocol_features().contains(VhostUserProtocolFeatures::SHMEM));
    assert!(without.harness.shmem_sizes().is_empty() && without.harness.dax().is_none());
    let out = FuseClient::new(&without.harness, 1)
        .init_with(abi::KERNEL_MINOR_VERSION, init::INIT_EXT | init::MAP_ALIGNMENT)
        .unwrap();
    assert_eq!((u64::from(out.flags) & init::MAP_ALIGNMENT, out.map_alignment), (0, 0));
    let g = Guest::new(&without.harness, 1, &tree);
    let node = g.lookup(abi::ROOT_ID, "data").unwrap().nodeid;
    assert_eq!(g.errno(opcode::SETUPMAPPING, node, &[&setup(NO_FH, 0, PAGE, map::READ, 0)]), libc::ENOSYS);
    assert_eq!(g.errno(opcode::REMOVEMAPPING, node, &[&remove(&[(0, PAGE)])]), libc::ENOSYS);
}

#[test]
fn a_mapping_shows_the_file_and_removal_unmaps_it() {
    let tree = tree();
    let s = serve_fs(PassthroughFs::new(passthrough_config(&tree.share)).unwrap(), WINDOW);
    let g = Guest::new(&s.harness, 1, &tree);
    let node = g.lookup(abi::ROOT_ID, "data").unwrap().nodeid;
    let fh = g.open(node, libc::O_RDONLY).unwrap();
    let d = data();

    // Pages 1..3 of the file (the last one partly past the end) at 8 KiB.
    g.ok(opcode::SETUPMAPPING, node, &[&setup(fh, PAGE, 3 * PAGE, map::READ, 2 * PAGE)]);
    assert_eq!(
        requests(&s),
        [ShmemRequest::Map { shm_offset: 2 * PAGE, len: 3 * PAGE, fd_offset: PAGE, writable: false }]
    );
    assert_eq!(window_bytes(&s, 2 * PAGE, DATA_LEN - PAGE as usize).unwrap(), d[PAGE as usize..]);
    assert_eq!(s.server.dax_mappings(), 1);

    // The Linux client names no handle: the node's file is opened anew.
    g.ok(opcode::SETUPMAPPING, node, &[&setup(NO_FH, 0, PAGE, map::READ, 10 * PAGE)]);
    assert_eq!(window_bytes(&s, 10 * PAGE, PAGE as usize).unwrap(), d[..PAGE as usize]);
    requests(&s);

    g.ok(opcode::REMOVEMAPPING, node, &[&remove(&[(2 * PAGE, 3 * PAGE), (10 * PAGE, PAGE)])]);
    assert_eq!(
        requests(&s),
        [
            ShmemRequest::Unmap { shm_offset: 2 * PAGE, len: 3 * PAGE },
            ShmemRequest::Unmap { shm_offset: 10 * PAGE, len: PAGE }
        ]
    );
    assert_eq!(window_bytes(&s, 2 * PAGE, 1).unwrap_err().raw_os_error(), Some(libc::EFAULT));
    assert_eq!(s.server.dax_mappings(), 0);
    // Removing what is not mapped is no error and sends nothing.
    g.ok(opcode::REMOVEMAPPING, node, &[&remove(&[(0, WINDOW)])]);
    assert!(requests(&s).is_empty());
}

#[test]
fn a_writable_mapping_writes_the_file_and_a_covering_one_replaces() {
    let tree = tree();
    let s = serve_fs(PassthroughFs::new(passthrough_config(&tree.share)).unwrap(), WINDOW);
    let g = Guest::new(&s.harness, 1, &tree);
    let node = g.lookup(abi::ROOT_ID, "data").unwrap().nodeid;
    let fh = g.open(node, libc::O_RDWR).unwrap();

    g.ok(opcode::SETUPMAPPING, node, &[&setup(fh, 0, PAGE, map::READ, 0)]);
    // The client makes a read mapping writable by mapping it again.
    g.ok(opcode::SETUPMAPPING, node, &[&setup(fh, 0, PAGE, map::READ | map::WRITE, 0)]);
    assert_eq!(
        requests(&s),
        [
            ShmemRequest::Map { shm_offset: 0, len: PAGE, fd_offset: 0, writable: false },
            ShmemRequest::Unmap { shm_offset: 0, len: PAGE },
            ShmemRequest::Map { shm_offset: 0, len: PAGE, fd_offset: 0, writable: true },
        ]
    );
    s.harness.dax().unwrap().window().write(5, b"DAX").unwrap();
    assert_eq!(&std::fs::read(tree.share.join("data")).unwrap()[5..8], b"DAX");

    // A range cutting an existing mapping is refused; one covering it replaces it.
    g.ok(opcode::SETUPMAPPING, node, &[&setup(fh, 0, 2 * PAGE, map::READ, 4 * PAGE)]);
    requests(&s);
    assert_eq!(g.errno(opcode::SETUPMAPPING, node, &[&setup(fh, 0, 2 * PAGE, map::READ, 5 * PAGE)]), libc::EBUSY);
    assert_eq!(g.errno(opcode::REMOVEMAPPING, node, &[&remove(&[(5 * PAGE, PAGE)])]), libc::EINVAL);
    assert!(requests(&s).is_empty());
    g.ok(opcode::SETUPMAPPING, node, &[&setup(fh, 0, 3 * PAGE, map::READ, 3 * PAGE)]);
    assert_eq!(
        requests(&s),
        [
            ShmemRequest::Unmap { shm_offset: 4 * PAGE, len: 2 * PAGE },
            ShmemRequest::Map { shm_offset: 3 * PAGE, len: 3 * PAGE, fd_offset: 0, writable: false },
        ]
    );
    assert_eq!(s.server.dax_mappings(), 2);
}

#[test]
fn bad_mappings_get_their_errno_and_map_nothing() {
    let tree = tree();
    let s = serve_fs(PassthroughFs::new(passthrough_config(&tree.share)).unwrap(), WINDOW);
    let g = Guest::new(&s.harness, 1, &tree);
    let node = g.lookup(abi::ROOT_ID, "data").unwrap().nodeid;
    let other = g.lookup(abi::ROOT_ID, "firmware").unwrap().nodeid;
    let image = g.lookup(other, "image").unwrap().nodeid;
    let ro = g.open(node, libc::O_RDONLY).unwrap();
    let image_fh = g.open(image, libc::O_RDWR).unwrap();
    let r = map::READ;
    let cases: &[(&str, Vec<u8>, i32)] = &[
        ("past the window", setup(ro, 0, PAGE, r, WINDOW), libc::EINVAL),
        ("ending past the window", setup(ro, 0, 2 * PAGE, r, WINDOW - PAGE), libc::EINVAL),
        ("unaligned window offset", setup(ro, 0, PAGE, r, 512), libc::EINVAL),
        ("unaligned length", setup(ro, 0, PAGE + 1, r, 0), libc::EINVAL),
        ("unaligned file offset", setup(ro, 100, PAGE, r, 0), libc::EINVAL),
        ("empty", setup(ro, 0, 0, r, 0), libc::EINVAL),
        ("window offset overflow", setup(ro, 0, 2 * PAGE, r, u64::MAX - PAGE + 1), libc::EINVAL),
        ("file offset overflow", setup(ro, u64::MAX - PAGE + 1, 2 * PAGE, r, 0), libc::EINVAL),
        ("unknown flags", setup(ro, 0, PAGE, r | 4, 0), libc::EINVAL),
        ("unknown handle", setup(ro + 1000, 0, PAGE, r, 0), libc::EBADF),
        ("another node's handle", setup(image_fh, 0, PAGE, r, 0), libc::EBADF),
        ("write through a read-only handle", setup(ro, 0, PAGE, r | map::WRITE, 0), libc::EACCES),
        ("at the end of the file", setup(ro, 4 * PAGE, PAGE, r, 0), libc::ENXIO),
        ("far past the end of the file", setup(ro, 1 << 30, PAGE, r, 0), libc::ENXIO),
    ];
    for (what, body, errno) in cases {
        assert_eq!(g.errno(opcode::SETUPMAPPING, node, &[body]), *errno, "{what}");
    }
    let dir = g.lookup(abi::ROOT_ID, "secrets").unwrap().nodeid;
    assert_eq!(g.errno(opcode::SETUPMAPPING, dir, &[&setup(NO_FH, 0, PAGE, r, 0)]), libc::ENODEV, "a directory");
    let removes: &[(&str, Vec<u8>)] = &[
        ("no range", remove(&[])),
        ("past the window", remove(&[(WINDOW, PAGE)])),
        ("unaligned", remove(&[(0, 100)])),
        ("overflow", remove(&[(u64::MAX - PAGE + 1, 2 * PAGE)])),
        ("fewer ranges than counted", remove(&[(0, PAGE)])[..12].to_vec()),
    ];
    for (what, body) in removes {
        assert_eq!(g.errno(opcode::REMOVEMAPPING, node, &[body]), libc::EINVAL, "{what}");
    }
    assert!(requests(&s).is_empty(), "a bad request reached the front end");
    assert_eq!(s.server.dax_mappings(), 0);
}

#[test]
fn the_policy_denies_hidden_files_and_writes_where_read_only() {
    let tree = tree();
    let policy = "[share]\n[paths]\nreadonly = [\"firmware\"]\n";
    let inner = PassthroughFs::new(passthrough_config(&tree.share)).unwrap();
    let s = serve_fs(PolicyFs::new(inner, parse(policy).unwrap()), WINDOW);
    let g = Guest::new(&s.harness, 1, &tree);
    let firmware = g.lookup(abi::ROOT_ID, "firmware").unwrap().nodeid;
    let image = g.lookup(firmware, "image").unwrap().nodeid;
    let rw = map::READ | map::WRITE;
    assert_eq!(g.errno(opcode::SETUPMAPPING, image, &[&setup(NO_FH, 0, PAGE, rw, 0)]), libc::EROFS);
    g.ok(opcode::SETUPMAPPING, image, &[&setup(NO_FH, 0, PAGE, map::READ, 0)]);
    assert_eq!(requests(&s).len(), 1);

    // A node the guest holds that a reload hides.
    let secrets = g.lookup(abi::ROOT_ID, "secrets").unwrap().nodeid;
    let key = g.lookup(secrets, "key").unwrap().nodeid;
    let fh = g.open(key, libc::O_RDONLY).unwrap();
    s.server.fs().set_policy(parse("[share]\n[paths]\nhidden = [\"secrets\"]\n").unwrap());
    assert_eq!(g.errno(opcode::SETUPMAPPING, key, &[&setup(fh, 0, PAGE, map::READ, PAGE)]), libc::ENOENT);
    assert_eq!(g.errno(opcode::SETUPMAPPING, key, &[&setup(NO_FH, 0, PAGE, map::READ, PAGE)]), libc::ENOENT);
    assert!(requests(&s).is_empty());
}

#[test]
fn a_read_only_share_maps_for_reading_only() {
    let tree = tree();
    let inner = PassthroughFs::new(passthrough_config(&tree.share)).unwrap();
    let s = serve_fs(PolicyFs::new(inner, parse("[share]\nreadonly = true\n").unwrap()), WINDOW);
    let g = Guest::new(&s.harness, 1, &tree);
    let node = g.lookup(abi::ROOT_ID, "data").unwrap().nodeid;
    let fh = g.open(node, libc::O_RDONLY).unwrap();
    let rw = map::READ | map::WRITE;
    assert_eq!(g.errno(opcode::SETUPMAPPING, node, &[&setup(fh, 0, PAGE, rw, 0)]), libc::EROFS);
    assert_eq!(g.errno(opcode::SETUPMAPPING, node, &[&setup(NO_FH, 0, PAGE, rw, 0)]), libc::EROFS);
    assert!(requests(&s).is_empty());
    g.ok(opcode::SETUPMAPPING, node, &[&setup(fh, 0, PAGE, map::READ, 0)]);
    assert_eq!(window_bytes(&s, 0, 16).unwrap(), data()[..16]);
}

#[test]
fn a_reset_drops_every_mapping() {
    let tree = tree();
    let s = serve_fs(PassthroughFs::new(passthrough_config(&tree.share)).unwrap(), WINDOW);
    let g = Guest::new(&s.harness, 1, &tree);
    let node = g.lookup(abi::ROOT_ID, "data").unwrap().nodeid;
    g.ok(opcode::SETUPMAPPING, node, &[&setup(NO_FH, 0, PAGE, map::READ, 0)]);
    g.ok(opcode::SETUPMAPPING, node, &[&setup(NO_FH, PAGE, PAGE, map::READ, 8 * PAGE)]);
    requests(&s);
    s.harness.reset_device().unwrap();
    let mut got = requests(&s);
    got.sort_by_key(|r| match r {
        ShmemRequest::Unmap { shm_offset, .. }
        | ShmemRequest::Map { shm_offset, .. }
        | ShmemRequest::Refused { shm_offset } => *shm_offset,
    });
    assert_eq!(
        got,
        [ShmemRequest::Unmap { shm_offset: 0, len: PAGE }, ShmemRequest::Unmap { shm_offset: 8 * PAGE, len: PAGE }]
    );
    assert_eq!(s.server.dax_mappings(), 0);
    assert_eq!(window_bytes(&s, 0, 1).unwrap_err().raw_os_error(), Some(libc::EFAULT));
}

/// FUSE_INIT as a Linux guest mounting with `-o dax=inode` sends it
/// (again: [`Served`] started the session without DAX flags).
fn init_inode_dax<F: FileSystem>(s: &Served<F>) -> abi::InitOut {
    let flags = init::INIT_EXT | init::MAP_ALIGNMENT | init::HAS_INODE_DAX | init::DO_READDIRPLUS | init::MAX_PAGES;
    FuseClient::new(&s.harness, 1).init_with(abi::KERNEL_MINOR_VERSION, flags).unwrap()
}

fn negotiated(out: &abi::InitOut) -> u64 {
    u64::from(out.flags) | u64::from(out.flags2) << 32
}

fn has_dax(a: &abi::Attr) -> bool {
    a.flags & attr_flags::DAX != 0
}

/// [`tree`] with an executable `tool`, served through `policy`.
fn serve_policy(policy: &str, window: u64) -> (Tree, Served<PolicyFs<PassthroughFs>>) {
    let tree = tree();
    std::fs::write(tree.share.join("tool"), data()).unwrap();
    std::fs::set_permissions(tree.share.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let inner = PassthroughFs::new(passthrough_config(&tree.share)).unwrap();
    let s = serve_fs(PolicyFs::new(inner, parse(policy).unwrap()), window);
    (tree, s)
}

/// Whether each entry of a READDIRPLUS listing of `dir` has FUSE_ATTR_DAX.
fn listed_dax(g: &Guest<'_>, dir: u64) -> Vec<(String, bool)> {
    let mut v: Vec<_> = g
        .list_plus(dir)
        .into_iter()
        .filter(|(n, e)| e.nodeid != 0 && n != "." && n != "..")
        .map(|(n, e)| (n, has_dax(&e.attr)))
        .collect();
    v.sort();
    v
}

#[test]
fn inode_dax_marks_and_maps_only_the_files_the_policy_picks() {
    let (tree, s) = serve_policy("[paths]\nreadonly = [\"firmware\"]\n[dax]\nfiles = \"read-only\"\n", WINDOW);
    let out = init_inode_dax(&s);
    assert_ne!(negotiated(&out) & init::HAS_INODE_DAX, 0, "HAS_INODE_DAX with a window");
    assert_ne!(out.flags2 & 2, 0, "bit 1 of flags2");
    assert_eq!(out.map_alignment, 12);
    let g = Guest::new(&s.harness, 1, &tree);

    // LOOKUP, GETATTR and READDIRPLUS agree: the read-only subtree's file only.
    let firmware = g.lookup(abi::ROOT_ID, "firmware").unwrap();
    assert!(!has_dax(&firmware.attr), "a directory never");
    let image = g.lookup(firmware.nodeid, "image").unwrap();
    assert!(has_dax(&image.attr));
    assert!(has_dax(&g.getattr(image.nodeid).unwrap()));
    let data = g.lookup(abi::ROOT_ID, "data").unwrap();
    assert!(!has_dax(&data.attr));
    assert!(!has_dax(&g.getattr(data.nodeid).unwrap()));
    assert_eq!(listed_dax(&g, firmware.nodeid), [("image".to_string(), true)]);
    assert!(listed_dax(&g, abi::ROOT_ID).iter().all(|(_, dax)| !dax));

    // A file not picked cannot be mapped anyway; a picked one can.
    let fh = g.open(data.nodeid, libc::O_RDONLY).unwrap();
    assert_eq!(g.errno(opcode::SETUPMAPPING, data.nodeid, &[&setup(NO_FH, 0, PAGE, map::READ, 0)]), libc::EPERM);
    assert_eq!(g.errno(opcode::SETUPMAPPING, data.nodeid, &[&setup(fh, 0, PAGE, map::READ, 0)]), libc::EPERM);
    assert!(requests(&s).is_empty(), "a refused mapping reached the front end");
    g.ok(opcode::SETUPMAPPING, image.nodeid, &[&setup(NO_FH, 0, PAGE, map::READ, 0)]);
    assert_eq!(window_bytes(&s, 0, 16).unwrap(), self::data()[..16]);

    // A reload that drops the rule takes the flag and the mapping right away.
    s.server.fs().set_policy(parse("[paths]\nreadonly = [\"firmware\"]\n").unwrap());
    assert!(!has_dax(&g.getattr(image.nodeid).unwrap()));
    assert_eq!(g.errno(opcode::SETUPMAPPING, image.nodeid, &[&setup(NO_FH, 0, PAGE, map::READ, PAGE)]), libc::EPERM);
}

#[test]
fn inode_dax_follows_the_mode_of_executables() {
    let (tree, s) = serve_policy("[dax]\nfiles = \"executables\"\n", WINDOW);
    init_inode_dax(&s);
    let g = Guest::new(&s.harness, 1, &tree);
    assert!(has_dax(&g.lookup(abi::ROOT_ID, "tool").unwrap().attr));
    assert!(!has_dax(&g.lookup(abi::ROOT_ID, "data").unwrap().attr));

    // CREATE, SETATTR and MKNOD replies carry it as well.
    let (e, _) = g.create(abi::ROOT_ID, "script", 0o750, libc::O_RDWR).unwrap();
    assert!(has_dax(&e.attr));
    let chmod = |mode| abi::SetattrIn { valid: abi::fattr::MODE, mode, ..Default::default() };
    assert!(!has_dax(&g.setattr(e.nodeid, chmod(0o640)).unwrap()));
    assert!(has_dax(&g.setattr(e.nodeid, chmod(0o641)).unwrap()));
    let n = g.mknod(abi::ROOT_ID, "plain", libc::S_IFREG | 0o644, 0).unwrap();
    assert!(!has_dax(&n.attr));
    let listed = listed_dax(&g, abi::ROOT_ID);
    for (name, dax) in [("tool", true), ("script", true), ("plain", false), ("data", false)] {
        assert!(listed.contains(&(name.to_string(), dax)), "{name}: {listed:?}");
    }
}

#[test]
fn no_window_no_offer_or_no_rule_marks_no_file() {
    // No window: HAS_INODE_DAX is never announced, whatever the policy.
    let (tree, s) = serve_policy("[dax]\nfiles = \"all\"\n", 0);
    let out = init_inode_dax(&s);
    assert_eq!(negotiated(&out) & (init::HAS_INODE_DAX | init::MAP_ALIGNMENT), 0);
    let g = Guest::new(&s.harness, 1, &tree);
    let data = g.lookup(abi::ROOT_ID, "data").unwrap();
    assert!(!has_dax(&data.attr) && !has_dax(&g.getattr(data.nodeid).unwrap()));
    assert!(listed_dax(&g, abi::ROOT_ID).iter().all(|(_, dax)| !dax));

    // A guest that does not offer it (dax=always, or an older kernel): no
    // flag, and the rule does not restrict its mappings.
    let (tree, s) = serve_policy("[dax]\nfiles = \"executables\"\n", WINDOW);
    let g = Guest::new(&s.harness, 1, &tree);
    assert_eq!(s.server.negotiated_flags() & init::HAS_INODE_DAX, 0);
    assert!(!has_dax(&g.lookup(abi::ROOT_ID, "tool").unwrap().attr));
    let data = g.lookup(abi::ROOT_ID, "data").unwrap().nodeid;
    assert!(!has_dax(&g.getattr(data).unwrap()));
    g.ok(opcode::SETUPMAPPING, data, &[&setup(NO_FH, 0, PAGE, map::READ, 0)]);

    // No [dax] rule, or no policy layer at all: HAS_INODE_DAX is announced
    // and no file is picked or mapped.
    let tree = self::tree();
    let s = serve_fs(PassthroughFs::new(passthrough_config(&tree.share)).unwrap(), WINDOW);
    assert_ne!(negotiated(&init_inode_dax(&s)) & init::HAS_INODE_DAX, 0);
    let g = Guest::new(&s.harness, 1, &tree);
    let data = g.lookup(abi::ROOT_ID, "data").unwrap();
    assert!(!has_dax(&data.attr));
    assert_eq!(g.errno(opcode::SETUPMAPPING, data.nodeid, &[&setup(NO_FH, 0, PAGE, map::READ, 0)]), libc::EPERM);
    let (tree, s) = serve_policy("[paths]\nreadonly = [\"firmware\"]\n", WINDOW);
    init_inode_dax(&s);
    let g = Guest::new(&s.harness, 1, &tree);
    let firmware = g.lookup(abi::ROOT_ID, "firmware").unwrap().nodeid;
    assert!(!has_dax(&g.lookup(firmware, "image").unwrap().attr));
}

fn write_in(fh: u64, offset: u64, data: &[u8]) -> Vec<u8> {
    let w = abi::WriteIn { fh, offset, size: data.len() as u32, write_flags: 0, lock_owner: 0, flags: 0, padding: 0 };
    let mut v = w.as_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

fn truncate_to(size: u64) -> abi::SetattrIn {
    abi::SetattrIn { valid: abi::fattr::SIZE, size, ..Default::default() }
}

/// [`data`] padded with zeros to `len` bytes: a page of a mapping that ends
/// inside the file's last page.
fn data_then_zeros(len: usize) -> Vec<u8> {
    let mut d = data();
    d.resize(len, 0);
    d
}

#[test]
fn qemu11_gets_whole_pages_then_a_copy_of_the_last_one() {
    let tree = tree();
    let s = serve_for(PassthroughFs::new(passthrough_config(&tree.share)).unwrap(), WINDOW, DaxFrontEnd::Qemu11);
    let g = Guest::new(&s.harness, 1, &tree);
    let node = g.lookup(abi::ROOT_ID, "data").unwrap().nodeid;

    // 8 pages asked (the Linux client asks 2 MiB whatever the size); the
    // file has 3 pages and 100 bytes: its pages, then a copy of the last.
    g.ok(opcode::SETUPMAPPING, node, &[&setup(NO_FH, 0, 8 * PAGE, map::READ, 0)]);
    assert_eq!(
        requests(&s),
        [
            ShmemRequest::Map { shm_offset: 0, len: 3 * PAGE, fd_offset: 0, writable: false },
            ShmemRequest::Map { shm_offset: 3 * PAGE, len: PAGE, fd_offset: 0, writable: false },
        ]
    );
    assert_eq!(window_bytes(&s, 0, 4 * PAGE as usize).unwrap(), data_then_zeros(4 * PAGE as usize));
    // Past the file's last page: a hole, no page of the file.
    assert_eq!(window_bytes(&s, 4 * PAGE, 1).unwrap_err().raw_os_error(), Some(libc::EFAULT));

    // The read mapping was made from a writable descriptor (QEMU 11.1 maps
    // it writable): a store reaches the file, as a write mapping's would.
    s.harness.dax().unwrap().window().write(0, b"RW").unwrap();
    assert_eq!(&std::fs::read(tree.share.join("data")).unwrap()[..2], b"RW");

    // A write mapping over the partial last page cannot be lent (stores to
    // a copy reach no file): EOPNOTSUPP, nothing sent. Whole pages can.
    let rw = map::READ | map::WRITE;
    assert_eq!(g.errno(opcode::SETUPMAPPING, node, &[&setup(NO_FH, 0, 8 * PAGE, rw, 16 * PAGE)]), libc::EOPNOTSUPP);
    assert!(requests(&s).is_empty());
    g.ok(opcode::SETUPMAPPING, node, &[&setup(NO_FH, 0, 2 * PAGE, rw, 16 * PAGE)]);
    assert_eq!(
        requests(&s),
        [ShmemRequest::Map { shm_offset: 16 * PAGE, len: 2 * PAGE, fd_offset: 0, writable: true }]
    );

    // Removal unmaps each piece exactly as it was mapped.
    g.ok(opcode::REMOVEMAPPING, node, &[&remove(&[(0, 8 * PAGE)])]);
    assert_eq!(
        requests(&s),
        [ShmemRequest::Unmap { shm_offset: 0, len: 3 * PAGE }, ShmemRequest::Unmap { shm_offset: 3 * PAGE, len: PAGE }]
    );
    assert_eq!(s.server.dax_mappings(), 1);
}

#[test]
fn qemu11_maps_only_files_the_guest_may_write() {
    let tree = tree();
    let policy = "[share]\n[paths]\nreadonly = [\"firmware\"]\n[dax]\nfiles = \"all\"\n";
    let inner = PassthroughFs::new(passthrough_config(&tree.share)).unwrap();
    let s = serve_for(PolicyFs::new(inner, parse(policy).unwrap()), WINDOW, DaxFrontEnd::Qemu11);
    let g = Guest::new(&s.harness, 1, &tree);
    let firmware = g.lookup(abi::ROOT_ID, "firmware").unwrap().nodeid;
    let image = g.lookup(firmware, "image").unwrap().nodeid;
    // Only a writable descriptor can be lent, and the policy denies one.
    assert_eq!(g.errno(opcode::SETUPMAPPING, image, &[&setup(NO_FH, 0, PAGE, map::READ, 0)]), libc::EROFS);
    assert!(requests(&s).is_empty(), "QEMU 11.1 would have refused it and closed the channel");

    // Per-inode DAX offers only the files that can be mapped.
    init_inode_dax(&s);
    let g = Guest::new(&s.harness, 1, &tree);
    let firmware = g.lookup(abi::ROOT_ID, "firmware").unwrap().nodeid;
    assert!(!has_dax(&g.lookup(firmware, "image").unwrap().attr));
    let data = g.lookup(abi::ROOT_ID, "data").unwrap();
    assert!(has_dax(&data.attr));
    g.ok(opcode::SETUPMAPPING, data.nodeid, &[&setup(NO_FH, 0, PAGE, map::READ, 0)]);
    assert_eq!(requests(&s).len(), 1);
}

#[test]
fn a_file_that_grows_through_avpfs_shows_its_new_pages() {
    for front_end in [DaxFrontEnd::Qemu11, DaxFrontEnd::Mmap] {
        let tree = tree();
        let s = serve_for(PassthroughFs::new(passthrough_config(&tree.share)).unwrap(), WINDOW, front_end);
        let g = Guest::new(&s.harness, 1, &tree);
        let node = g.lookup(abi::ROOT_ID, "data").unwrap().nodeid;
        g.ok(opcode::SETUPMAPPING, node, &[&setup(NO_FH, 0, 8 * PAGE, map::READ, 0)]);
        requests(&s);

        // The client appends with WRITE (Linux does, in DAX mode): the
        // mapping is made again for the new size.
        let fh = g.open(node, libc::O_WRONLY).unwrap();
        let tail = vec![b'N'; 2 * PAGE as usize];
        g.ok(opcode::WRITE, node, &[&write_in(fh, DATA_LEN as u64, &tail)]);
        let size = DATA_LEN as u64 + 2 * PAGE;
        let mut want = data();
        want.extend_from_slice(&tail);
        let shown = window_bytes(&s, 0, size as usize).unwrap();
        assert!(shown == want, "{front_end:?}: the window does not show the appended bytes");
        let got = requests(&s);
        assert!(got.iter().all(|r| !matches!(r, ShmemRequest::Refused { .. })), "{front_end:?}: {got:?}");
        // Still no page past the end of the file.
        assert_eq!(
            window_bytes(&s, size.next_multiple_of(PAGE), 1).unwrap_err().raw_os_error(),
            Some(libc::EFAULT),
            "{front_end:?}"
        );
    }
}

#[test]
fn a_truncation_by_another_guest_unmaps_the_pages_past_the_new_end_first() {
    let tree = tree();
    std::fs::write(tree.share.join("big"), vec![b'B'; 8 * PAGE as usize]).unwrap();
    let a = serve_for(PassthroughFs::new(passthrough_config(&tree.share)).unwrap(), WINDOW, DaxFrontEnd::Qemu11);
    let b = serve_for(PassthroughFs::new(passthrough_config(&tree.share)).unwrap(), WINDOW, DaxFrontEnd::Mmap);
    let ga = Guest::new(&a.harness, 1, &tree);
    let gb = Guest::new(&b.harness, 1, &tree);
    let on_a = ga.lookup(abi::ROOT_ID, "big").unwrap().nodeid;
    ga.ok(opcode::SETUPMAPPING, on_a, &[&setup(NO_FH, 0, 8 * PAGE, map::READ | map::WRITE, 0)]);
    assert_eq!(requests(&a), [ShmemRequest::Map { shm_offset: 0, len: 8 * PAGE, fd_offset: 0, writable: true }]);

    // B, another guest of the same process, truncates the file to a page
    // and a bit: A's mapping is cut to the new end before the file shrinks
    // (else A's VMM would die of SIGBUS on the pages past it).
    let on_b = gb.lookup(abi::ROOT_ID, "big").unwrap().nodeid;
    gb.setattr(on_b, truncate_to(PAGE + 10)).unwrap();
    assert_eq!(
        requests(&a),
        [
            ShmemRequest::Unmap { shm_offset: 0, len: 8 * PAGE },
            ShmemRequest::Map { shm_offset: 0, len: PAGE, fd_offset: 0, writable: true },
            ShmemRequest::Map { shm_offset: PAGE, len: PAGE, fd_offset: 0, writable: true },
        ]
    );
    let mut want = vec![b'B'; PAGE as usize + 10];
    want.resize(2 * PAGE as usize, 0);
    assert_eq!(window_bytes(&a, 0, 2 * PAGE as usize).unwrap(), want);
    assert_eq!(window_bytes(&a, 2 * PAGE, 1).unwrap_err().raw_os_error(), Some(libc::EFAULT));

    // An open with O_TRUNC empties it: nothing of the file stays mapped.
    gb.open(on_b, libc::O_RDWR | libc::O_TRUNC).unwrap();
    assert_eq!(
        requests(&a),
        [ShmemRequest::Unmap { shm_offset: 0, len: PAGE }, ShmemRequest::Unmap { shm_offset: PAGE, len: PAGE }]
    );
    assert_eq!(window_bytes(&a, 0, 1).unwrap_err().raw_os_error(), Some(libc::EFAULT));
    assert_eq!(std::fs::metadata(tree.share.join("big")).unwrap().len(), 0);
    // The guest's own removal of the emptied range is no error.
    ga.ok(opcode::REMOVEMAPPING, on_a, &[&remove(&[(0, 8 * PAGE)])]);
    assert!(requests(&a).is_empty());
    assert_eq!(a.server.dax_mappings(), 0);
}
