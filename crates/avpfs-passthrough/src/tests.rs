//! Tests that call the FileSystem methods directly on a temporary directory.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use avpfs_server::{
    Context, CopyRange, CreateRequest, DirEntry, DirSink, Entry, FallocateRequest, FileSystem, Handle, InitOptions,
    LockOwner, LockRequest, MknodRequest, NodeId, ReadRequest, RenameRequest, SetattrIn, SetxattrRequest, SliceReader,
    TimeSpec, VecWriter, WriteRequest,
};
use fuse_abi::FileLock;

use crate::config::{CachePolicy, Config, FileHandleMode};
use crate::passthrough::{PassthroughFs, Share};

/// Whether the tests run as root (credential tests need it).
fn creds_test_root() -> bool {
    avpfs_sys::creds::geteuid() == 0
}

fn root_ctx() -> Context {
    Context { uid: 0, gid: 0, pid: 1, groups: None }
}

fn fs_on(dir: &Path) -> PassthroughFs {
    fs_with(Config::new(dir))
}

fn fs_with(cfg: Config) -> PassthroughFs {
    let fs = PassthroughFs::new(cfg).unwrap();
    fs.init(InitOptions { minor: 41, client_flags: u64::MAX }).unwrap();
    fs
}

fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    r.unwrap_err().raw_os_error().unwrap()
}

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A READ of `size` bytes at `offset` through `handle`.
fn rd(handle: Handle, size: u32, offset: u64) -> ReadRequest {
    ReadRequest { handle, offset, size, flags: 0 }
}

/// A WRITE of `size` bytes at `offset` through `handle`.
fn wr(handle: Handle, size: u32, offset: u64, kill_suidgid: bool) -> WriteRequest {
    WriteRequest { handle, offset, size, kill_suidgid, flags: 0 }
}

fn lookup(fs: &PassthroughFs, parent: NodeId, name: &str) -> io::Result<Entry> {
    fs.lookup(&root_ctx(), parent, &cs(name))
}

/// A [`DirSink`] with room for a fixed number of entries.
struct Sink {
    plus: bool,
    room: usize,
    /// What `remaining()` reports (how far the file system reads ahead).
    bytes: usize,
    got: Vec<(Vec<u8>, u64, Option<Entry>)>,
}

impl Sink {
    fn new(plus: bool, room: usize) -> Self {
        Sink { plus, room, bytes: usize::MAX, got: Vec::new() }
    }
}

impl DirSink for Sink {
    fn is_plus(&self) -> bool {
        self.plus
    }
    fn has_room(&self, _namelen: usize) -> bool {
        self.got.len() < self.room
    }
    fn remaining(&self) -> usize {
        self.bytes
    }
    fn add(&mut self, e: DirEntry<'_>, plus: Option<&Entry>) -> bool {
        if !self.has_room(e.name.len()) {
            return false;
        }
        assert_eq!(self.plus, plus.is_some());
        self.got.push((e.name.to_vec(), e.offset, plus.copied()));
        true
    }
}

fn names_of(sink: &Sink) -> Vec<String> {
    sink.got.iter().map(|(n, _, _)| String::from_utf8(n.clone()).unwrap()).collect()
}

#[test]
fn lookup_getattr_and_hard_links_share_a_node() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("a"), b"hello").unwrap();
    std::fs::hard_link(t.path().join("a"), t.path().join("b")).unwrap();
    let fs = fs_on(t.path());
    let a = lookup(&fs, NodeId::ROOT, "a").unwrap();
    let b = lookup(&fs, NodeId::ROOT, "b").unwrap();
    assert_ne!(a.nodeid, NodeId::ROOT);
    assert_eq!(a.nodeid, b.nodeid);
    assert_eq!(a.attr.size, 5);
    assert_eq!(a.attr.nlink, 2);
    assert_eq!(fs.node_count(), 2);
    let (attr, _) = fs.getattr(&root_ctx(), a.nodeid, None).unwrap();
    assert_eq!(attr.ino, std::fs::metadata(t.path().join("a")).unwrap().ino());
    // LINK makes a third name of the same node.
    let c = fs.link(&root_ctx(), a.nodeid, NodeId::ROOT, &cs("c")).unwrap();
    assert_eq!(c.nodeid, a.nodeid);
    assert_eq!(c.attr.nlink, 3);
    assert_eq!(fs.node_count(), 2);
}

#[test]
fn forget_frees_nodes_and_root_stays() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("d")).unwrap();
    std::fs::write(t.path().join("d/f"), b"").unwrap();
    let fs = fs_on(t.path());
    let d = lookup(&fs, NodeId::ROOT, "d").unwrap();
    let f = lookup(&fs, d.nodeid, "f").unwrap();
    lookup(&fs, d.nodeid, "f").unwrap();
    assert_eq!(fs.node_count(), 3);
    fs.forget(f.nodeid, 1);
    assert_eq!(fs.node_count(), 3, "one reference left");
    fs.batch_forget(&[(f.nodeid, 1), (d.nodeid, 1)]);
    assert_eq!(fs.node_count(), 1);
    assert_eq!(errno(fs.getattr(&root_ctx(), f.nodeid, None)), libc::ENOENT);
    fs.forget(NodeId::ROOT, 100);
    assert_eq!(fs.node_count(), 1);
    fs.getattr(&root_ctx(), NodeId::ROOT, None).unwrap();
}

#[test]
fn inode_reuse_after_unlink_gives_a_new_node() {
    let t = tempfile::tempdir().unwrap();
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    let mut seen = BTreeSet::new();
    for round in 0..20 {
        let (e, o) = fs
            .create(&ctx, NodeId::ROOT, &cs("f"), CreateRequest { mode: 0o644, umask: 0, flags: libc::O_RDWR as u32 })
            .unwrap();
        assert!(seen.insert(e.nodeid), "round {round}: node id {} reused", e.nodeid);
        fs.release(&ctx, e.nodeid, o.handle, 0, None).unwrap();
        fs.unlink(&ctx, NodeId::ROOT, &cs("f")).unwrap();
        // While the node lives its descriptor pins the inode; after the
        // forget the host may hand the inode number to the next file.
        fs.forget(e.nodeid, 1);
    }
    assert_eq!(fs.node_count(), 1);
    // A node still referenced after unlink is not confused with a new file.
    std::fs::write(t.path().join("g"), b"1").unwrap();
    let g = lookup(&fs, NodeId::ROOT, "g").unwrap();
    std::fs::remove_file(t.path().join("g")).unwrap();
    std::fs::write(t.path().join("g"), b"22").unwrap();
    let g2 = lookup(&fs, NodeId::ROOT, "g").unwrap();
    assert_ne!(g.nodeid, g2.nodeid);
    assert_eq!(g2.attr.size, 2);
}

#[test]
fn symlinks_are_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let share = t.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(t.path().join("outside"), b"secret").unwrap();
    symlink("../outside", share.join("esc")).unwrap();
    symlink("/etc", share.join("etc")).unwrap();
    let fs = fs_on(&share);
    let esc = lookup(&fs, NodeId::ROOT, "esc").unwrap();
    assert_eq!(esc.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(fs.readlink(&root_ctx(), esc.nodeid).unwrap(), b"../outside");
    assert_eq!(errno(fs.open(&root_ctx(), esc.nodeid, libc::O_RDONLY as u32, false)), libc::ENXIO);
    let etc = lookup(&fs, NodeId::ROOT, "etc").unwrap();
    assert_eq!(errno(lookup(&fs, etc.nodeid, "passwd")), libc::ENOTDIR);
    assert_eq!(errno(fs.opendir(&root_ctx(), etc.nodeid, 0)), libc::ENOTDIR);
    assert_eq!(errno(fs.readlink(&root_ctx(), NodeId::ROOT)), libc::EINVAL);
}

#[test]
fn dot_and_dotdot_of_the_root_stay_in_the_root() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("d")).unwrap();
    let fs = fs_on(t.path());
    assert_eq!(lookup(&fs, NodeId::ROOT, "..").unwrap().nodeid, NodeId::ROOT);
    assert_eq!(lookup(&fs, NodeId::ROOT, ".").unwrap().nodeid, NodeId::ROOT);
    let d = lookup(&fs, NodeId::ROOT, "d").unwrap();
    assert_eq!(lookup(&fs, d.nodeid, ".").unwrap().nodeid, d.nodeid);
    assert_eq!(errno(lookup(&fs, d.nodeid, "..")), libc::EINVAL);
    assert_eq!(fs.node_count(), 2);
}

#[test]
fn negative_entries_follow_the_cache_policy() {
    let t = tempfile::tempdir().unwrap();
    let fs = fs_on(t.path());
    let e = lookup(&fs, NodeId::ROOT, "missing").unwrap();
    assert_eq!(e.nodeid, NodeId::NONE);
    assert!(!e.entry_timeout.is_zero());
    let mut cfg = Config::new(t.path());
    cfg.cache = CachePolicy::Never;
    let fs = fs_with(cfg);
    assert_eq!(errno(lookup(&fs, NodeId::ROOT, "missing")), libc::ENOENT);
}

#[test]
fn unknown_nodes_and_handles() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"x").unwrap();
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    assert_eq!(errno(fs.getattr(&ctx, NodeId(999), None)), libc::ENOENT);
    assert_eq!(errno(fs.lookup(&ctx, NodeId(999), &cs("f"))), libc::ENOENT);
    assert_eq!(errno(fs.open(&ctx, NodeId(999), 0, false)), libc::ENOENT);
    assert_eq!(errno(fs.opendir(&ctx, NodeId(999), 0)), libc::ENOENT);
    assert_eq!(errno(fs.readlink(&ctx, NodeId(999))), libc::ENOENT);
    let f = lookup(&fs, NodeId::ROOT, "f").unwrap();
    let mut w = VecWriter::new(4096);
    assert_eq!(errno(fs.read(&ctx, f.nodeid, rd(Handle(12345), 10, 0), &mut w)), libc::EBADF);
    assert_eq!(errno(fs.release(&ctx, f.nodeid, Handle(12345), 0, None)), libc::EBADF);
    assert_eq!(errno(fs.fsync(&ctx, f.nodeid, Handle(12345), false)), libc::EBADF);
    assert_eq!(errno(fs.getattr(&ctx, f.nodeid, Some(Handle(12345)))), libc::EBADF);
    // A handle of another node is not accepted either.
    let o = fs.open(&ctx, f.nodeid, libc::O_RDONLY as u32, false).unwrap();
    assert_eq!(errno(fs.read(&ctx, NodeId::ROOT, rd(o.handle, 10, 0), &mut w)), libc::EBADF);
    fs.release(&ctx, f.nodeid, o.handle, 0, None).unwrap();
    assert_eq!(errno(fs.release(&ctx, f.nodeid, o.handle, 0, None)), libc::EBADF);
}

#[test]
fn write_then_read_through_zero_copy_doubles() {
    let t = tempfile::tempdir().unwrap();
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    let (e, o) = fs
        .create(&ctx, NodeId::ROOT, &cs("f"), CreateRequest { mode: 0o644, umask: 0o022, flags: libc::O_RDWR as u32 })
        .unwrap();
    assert_eq!(e.attr.mode, libc::S_IFREG | 0o644);
    let data = b"hello, passthrough";
    let mut r = SliceReader::new(data);
    assert_eq!(fs.write(&ctx, e.nodeid, wr(o.handle, data.len() as u32, 3, false), &mut r).unwrap(), data.len());
    let mut w = VecWriter::new(4096);
    assert_eq!(fs.read(&ctx, e.nodeid, rd(o.handle, 100, 3), &mut w).unwrap(), data.len());
    assert_eq!(w.as_slice(), data);
    fs.flush(&ctx, e.nodeid, o.handle, LockOwner(7)).unwrap();
    fs.fsync(&ctx, e.nodeid, o.handle, true).unwrap();
    fs.release(&ctx, e.nodeid, o.handle, 0, None).unwrap();
    assert_eq!(std::fs::read(t.path().join("f")).unwrap(), [&[0u8; 3][..], data].concat());
    assert_eq!(fs.handle_count(), 0);
}

fn list_all(fs: &PassthroughFs, dir: NodeId, plus: bool, per_call: usize) -> Vec<(Vec<u8>, u64, Option<Entry>)> {
    let ctx = root_ctx();
    let o = fs.opendir(&ctx, dir, 0).unwrap();
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let mut sink = Sink::new(plus, per_call);
        fs.readdir(&ctx, dir, o.handle, offset, &mut sink).unwrap();
        let Some(last) = sink.got.last() else { break };
        offset = last.1;
        all.extend(sink.got);
    }
    fs.releasedir(&ctx, dir, o.handle, 0).unwrap();
    all
}

#[test]
fn readdir_continues_from_the_offset_cookie() {
    let t = tempfile::tempdir().unwrap();
    let want: BTreeSet<String> = (0..100).map(|i| format!("file-{i:03}")).collect();
    for n in &want {
        std::fs::write(t.path().join(n), b"").unwrap();
    }
    let fs = fs_on(t.path());
    let in_one = list_all(&fs, NodeId::ROOT, false, 1000);
    let in_sevens = list_all(&fs, NodeId::ROOT, false, 7);
    let names = |v: &[(Vec<u8>, u64, Option<Entry>)]| -> Vec<Vec<u8>> { v.iter().map(|e| e.0.clone()).collect() };
    assert_eq!(names(&in_one), names(&in_sevens));
    let got: BTreeSet<String> =
        in_one.iter().map(|e| String::from_utf8(e.0.clone()).unwrap()).filter(|n| n != "." && n != "..").collect();
    assert_eq!(got, want);
    // Restart from the middle (seekdir to a telldir cookie).
    let ctx = root_ctx();
    let o = fs.opendir(&ctx, NodeId::ROOT, 0).unwrap();
    let mut sink = Sink::new(false, 1000);
    fs.readdir(&ctx, NodeId::ROOT, o.handle, in_one[49].1, &mut sink).unwrap();
    assert_eq!(names_of(&sink).len(), in_one.len() - 50);
    assert_eq!(sink.got[0].0, in_one[50].0);
    // Past the end: nothing.
    let mut sink = Sink::new(false, 1000);
    fs.readdir(&ctx, NodeId::ROOT, o.handle, in_one.last().unwrap().1, &mut sink).unwrap();
    assert!(sink.got.is_empty());
    assert_eq!(errno(fs.readdir(&ctx, NodeId::ROOT, Handle(4242), 0, &mut sink)), libc::EBADF);
    assert_eq!(fs.node_count(), 1, "plain READDIR takes no references");
}

/// A reply that says it has little room makes the file system read the
/// directory in small steps; a reply with more room than one step holds is
/// still filled, from as many getdents64 calls as it takes.
#[test]
fn readdir_fills_a_reply_from_several_small_reads() {
    let t = tempfile::tempdir().unwrap();
    let want: BTreeSet<String> = (0..300).map(|i| format!("{i:03}-{}", "long-name-".repeat(5))).collect();
    for n in &want {
        std::fs::write(t.path().join(n), b"").unwrap();
    }
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    let o = fs.opendir(&ctx, NodeId::ROOT, 0).unwrap();
    let mut sink = Sink::new(false, 10_000);
    sink.bytes = 0;
    fs.readdir(&ctx, NodeId::ROOT, o.handle, 0, &mut sink).unwrap();
    let got: BTreeSet<String> = names_of(&sink).into_iter().filter(|n| n != "." && n != "..").collect();
    assert_eq!(got, want, "one request returns every entry");
    assert_eq!(sink.got.len(), 302, "each entry once");
}

#[test]
fn readdirplus_takes_one_reference_per_entry_that_fits() {
    let t = tempfile::tempdir().unwrap();
    for i in 0..10 {
        std::fs::write(t.path().join(format!("f{i}")), b"").unwrap();
    }
    std::fs::hard_link(t.path().join("f0"), t.path().join("hard")).unwrap();
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    let o = fs.opendir(&ctx, NodeId::ROOT, 0).unwrap();
    let mut sink = Sink::new(true, 4);
    fs.readdir(&ctx, NodeId::ROOT, o.handle, 0, &mut sink).unwrap();
    assert_eq!(sink.got.len(), 4);
    let refs = |s: &Sink| s.got.iter().filter(|e| e.2.unwrap().nodeid != NodeId::NONE).count();
    assert_eq!(fs.node_count(), 1 + refs(&sink), "only entries that fit were looked up");
    fs.releasedir(&ctx, NodeId::ROOT, o.handle, 0).unwrap();

    let all = list_all(&fs, NodeId::ROOT, true, 3);
    for (name, _, e) in &all {
        let e = e.unwrap();
        if name == b"." || name == b".." {
            assert_eq!(e.nodeid, NodeId::NONE);
        } else {
            assert_ne!(e.nodeid, NodeId::NONE);
            assert_eq!(e.attr.mode & libc::S_IFMT, libc::S_IFREG);
        }
    }
    // 11 names, 10 inodes (a hard link), plus the root.
    assert_eq!(fs.node_count(), 11);
    let mut refs: std::collections::HashMap<NodeId, u64> = Default::default();
    for (_, _, e) in all.iter().chain(sink.got.iter()) {
        let e = e.unwrap();
        if e.nodeid != NodeId::NONE {
            *refs.entry(e.nodeid).or_default() += 1;
        }
    }
    for (&node, &count) in &refs {
        fs.forget(node, count - 1);
    }
    assert_eq!(fs.node_count(), 11, "each node held one more reference");
    for &node in refs.keys() {
        fs.forget(node, 1);
    }
    assert_eq!(fs.node_count(), 1);
}

fn lock(typ: i32, start: u64, end: u64) -> FileLock {
    FileLock { start, end, typ: typ as u32, pid: 0 }
}

#[test]
fn posix_locks_are_per_owner() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"0123456789").unwrap();
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    let f = lookup(&fs, NodeId::ROOT, "f").unwrap().nodeid;
    let h1 = fs.open(&ctx, f, libc::O_RDWR as u32, false).unwrap().handle;
    let h2 = fs.open(&ctx, f, libc::O_RDWR as u32, false).unwrap().handle;
    let req = |handle, owner, l| LockRequest { handle, owner, lock: l, flock: false };
    let (a, b) = (LockOwner(0xaaaa), LockOwner(0xbbbb));
    fs.setlk(&ctx, f, req(h1, a, lock(libc::F_WRLCK, 0, 99)), false).unwrap();
    // The same owner through another handle: one owner, no conflict.
    fs.setlk(&ctx, f, req(h2, a, lock(libc::F_WRLCK, 50, 199)), false).unwrap();
    // Another owner conflicts.
    assert_eq!(errno(fs.setlk(&ctx, f, req(h2, b, lock(libc::F_RDLCK, 150, 150)), false)), libc::EAGAIN);
    let got = fs.getlk(&ctx, f, req(h2, b, lock(libc::F_WRLCK, 0, u64::MAX))).unwrap();
    assert_eq!((got.typ, got.start, got.end), (libc::F_WRLCK as u32, 0, 199));
    let free = fs.getlk(&ctx, f, req(h1, a, lock(libc::F_WRLCK, 0, 10))).unwrap();
    assert_eq!(free.typ, libc::F_UNLCK as u32);
    // Unlocking a part lets the other owner in there.
    fs.setlk(&ctx, f, req(h1, a, lock(libc::F_UNLCK, 100, 199)), false).unwrap();
    fs.setlk(&ctx, f, req(h2, b, lock(libc::F_RDLCK, 150, 150)), false).unwrap();
    // Host processes see the locks too.
    let host = std::fs::OpenOptions::new().read(true).write(true).open(t.path().join("f")).unwrap();
    let l = avpfs_sys::lock::Lock { typ: libc::F_WRLCK, start: 0, len: 1, pid: 0 };
    let e = avpfs_sys::lock::ofd_setlk(std::os::fd::AsFd::as_fd(&host), l, false).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
    // FLUSH of owner a releases all of a's locks.
    fs.flush(&ctx, f, h1, a).unwrap();
    fs.setlk(&ctx, f, req(h2, b, lock(libc::F_WRLCK, 0, 99)), false).unwrap();
    let n = fs.inodes.get(f).unwrap();
    assert_eq!(n.locks.len(), 1);
    fs.release(&ctx, f, h1, 0, None).unwrap();
    fs.release(&ctx, f, h2, 0, None).unwrap();
}

#[test]
fn flock_locks_are_per_handle_and_dropped_on_release() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"").unwrap();
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    let f = lookup(&fs, NodeId::ROOT, "f").unwrap().nodeid;
    let h1 = fs.open(&ctx, f, libc::O_RDONLY as u32, false).unwrap().handle;
    let h2 = fs.open(&ctx, f, libc::O_RDONLY as u32, false).unwrap().handle;
    let req = |handle, typ| LockRequest { handle, owner: LockOwner(1), lock: lock(typ, 0, u64::MAX), flock: true };
    fs.setlk(&ctx, f, req(h1, libc::F_WRLCK), false).unwrap();
    assert_eq!(errno(fs.setlk(&ctx, f, req(h2, libc::F_RDLCK), false)), libc::EAGAIN);
    fs.release(&ctx, f, h1, 0, Some(LockOwner(1))).unwrap();
    fs.setlk(&ctx, f, req(h2, libc::F_RDLCK), false).unwrap();
    fs.release(&ctx, f, h2, 0, Some(LockOwner(1))).unwrap();
}

#[test]
fn blocking_lock_waits_and_is_granted() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"").unwrap();
    let fs = std::sync::Arc::new(fs_on(t.path()));
    let ctx = root_ctx();
    let f = lookup(&fs, NodeId::ROOT, "f").unwrap().nodeid;
    let h = fs.open(&ctx, f, libc::O_RDWR as u32, false).unwrap().handle;
    let whole = lock(libc::F_WRLCK, 0, u64::MAX);
    fs.setlk(&ctx, f, LockRequest { handle: h, owner: LockOwner(1), lock: whole, flock: false }, false).unwrap();
    let fs2 = fs.clone();
    let waiter = std::thread::spawn(move || {
        fs2.setlk(&root_ctx(), f, LockRequest { handle: h, owner: LockOwner(2), lock: whole, flock: false }, true)
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!waiter.is_finished(), "the second owner waits");
    fs.flush(&ctx, f, h, LockOwner(1)).unwrap();
    waiter.join().unwrap().unwrap();
}

#[test]
fn interrupted_blocking_lock_fails_with_eintr() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"").unwrap();
    let fs = std::sync::Arc::new(fs_on(t.path()));
    let ctx = root_ctx();
    let f = lookup(&fs, NodeId::ROOT, "f").unwrap().nodeid;
    let h = fs.open(&ctx, f, libc::O_RDWR as u32, false).unwrap().handle;
    let whole = lock(libc::F_WRLCK, 0, u64::MAX);
    fs.setlk(&ctx, f, LockRequest { handle: h, owner: LockOwner(1), lock: whole, flock: false }, false).unwrap();
    // As the server does for SETLKW: register the waiting thread, interrupt it.
    let irq = std::sync::Arc::new(avpfs_server::interrupt::Interrupts::new());
    let (fs2, irq2) = (fs.clone(), irq.clone());
    let waiter = std::thread::spawn(move || {
        let _reg = irq2.register(9);
        fs2.setlk(&root_ctx(), f, LockRequest { handle: h, owner: LockOwner(2), lock: whole, flock: false }, true)
    });
    while !waiter.is_finished() {
        irq.interrupt(9);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(errno(waiter.join().unwrap()), libc::EINTR);
    // The interrupted owner got nothing; the holder still holds its lock.
    let got = fs.getlk(&ctx, f, LockRequest { handle: h, owner: LockOwner(2), lock: whole, flock: false }).unwrap();
    assert_eq!(got.typ, libc::F_WRLCK as u32);
}

#[test]
fn create_of_an_existing_name_opens_regular_files_only() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"old").unwrap();
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    let fifo = fs
        .mknod(&ctx, NodeId::ROOT, &cs("fifo"), MknodRequest { mode: libc::S_IFIFO | 0o666, rdev: 0, umask: 0 })
        .unwrap();
    let before = fs.node_count();
    let rw = libc::O_RDWR as u32;
    assert_eq!(
        errno(fs.create(
            &ctx,
            NodeId::ROOT,
            &cs("fifo"),
            CreateRequest { mode: 0o644, umask: 0, flags: libc::O_RDONLY as u32 }
        )),
        libc::ENXIO
    );
    std::fs::create_dir(t.path().join("d")).unwrap();
    assert_eq!(
        errno(fs.create(&ctx, NodeId::ROOT, &cs("d"), CreateRequest { mode: 0o644, umask: 0, flags: rw })),
        libc::EISDIR
    );
    symlink("f", t.path().join("l")).unwrap();
    assert_eq!(
        errno(fs.create(&ctx, NodeId::ROOT, &cs("l"), CreateRequest { mode: 0o644, umask: 0, flags: rw })),
        libc::ELOOP
    );
    assert_eq!(fs.node_count(), before, "failed creates leave no references");
    assert_eq!(
        errno(fs.create(
            &ctx,
            NodeId::ROOT,
            &cs("f"),
            CreateRequest { mode: 0o644, umask: 0, flags: rw | libc::O_EXCL as u32 }
        )),
        libc::EEXIST
    );
    let (e, o) = fs
        .create(&ctx, NodeId::ROOT, &cs("f"), CreateRequest { mode: 0o600, umask: 0, flags: rw | libc::O_TRUNC as u32 })
        .unwrap();
    assert_eq!(e.attr.mode & 0o777, 0o644, "an existing file keeps its mode");
    fs.release(&ctx, e.nodeid, o.handle, 0, None).unwrap();
    assert_eq!(std::fs::read(t.path().join("f")).unwrap(), b"");
    assert_ne!(fifo.nodeid, e.nodeid);
}

#[test]
fn create_ops_modes_and_rename() {
    let t = tempfile::tempdir().unwrap();
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    let d = fs.mkdir(&ctx, NodeId::ROOT, &cs("d"), 0o777, 0o022).unwrap();
    assert_eq!(d.attr.mode, libc::S_IFDIR | 0o755);
    let p = fs
        .mknod(&ctx, d.nodeid, &cs("fifo"), MknodRequest { mode: libc::S_IFIFO | 0o666, rdev: 0, umask: 0o027 })
        .unwrap();
    assert_eq!(p.attr.mode, libc::S_IFIFO | 0o640);
    assert_eq!(errno(fs.open(&ctx, p.nodeid, libc::O_RDONLY as u32, false)), libc::ENXIO);
    let r =
        fs.mknod(&ctx, d.nodeid, &cs("reg"), MknodRequest { mode: libc::S_IFREG | 0o600, rdev: 0, umask: 0 }).unwrap();
    assert_eq!(r.attr.mode, libc::S_IFREG | 0o600);
    let s = fs.symlink(&ctx, c"reg", d.nodeid, &cs("sym")).unwrap();
    assert_eq!(fs.readlink(&ctx, s.nodeid).unwrap(), b"reg");
    assert_eq!(errno(fs.mkdir(&ctx, d.nodeid, &cs("reg"), 0o755, 0)), libc::EEXIST);
    // RENAME_NOREPLACE, RENAME_EXCHANGE, plain.
    let rename = |olddir, oldname: &str, newdir, newname: &str, flags| {
        let (oldname, newname) = (cs(oldname), cs(newname));
        fs.rename(&ctx, RenameRequest { olddir, oldname: &oldname, newdir, newname: &newname, flags })
    };
    let dir = d.nodeid;
    assert_eq!(errno(rename(dir, "reg", dir, "sym", libc::RENAME_NOREPLACE)), libc::EEXIST);
    rename(dir, "reg", dir, "sym", libc::RENAME_EXCHANGE).unwrap();
    assert!(std::fs::symlink_metadata(t.path().join("d/reg")).unwrap().file_type().is_symlink());
    rename(dir, "reg", NodeId::ROOT, "moved", 0).unwrap();
    assert_eq!(errno(rename(dir, "sym", NodeId::ROOT, "x", 1 << 10)), libc::EINVAL);
    assert_eq!(lookup(&fs, NodeId::ROOT, "moved").unwrap().nodeid, s.nodeid);
    assert_eq!(errno(fs.rmdir(&ctx, NodeId::ROOT, &cs("d"))), libc::ENOTEMPTY);
    fs.unlink(&ctx, d.nodeid, &cs("fifo")).unwrap();
    fs.unlink(&ctx, d.nodeid, &cs("sym")).unwrap();
    fs.rmdir(&ctx, NodeId::ROOT, &cs("d")).unwrap();
    // O_TMPFILE: unnamed, then linked into the tree.
    let (tf, o) =
        fs.tmpfile(&ctx, NodeId::ROOT, CreateRequest { mode: 0o640, umask: 0, flags: libc::O_RDWR as u32 }).unwrap();
    assert_eq!(tf.attr.nlink, 0);
    let mut rd = SliceReader::new(b"tmp");
    fs.write(&ctx, tf.nodeid, wr(o.handle, 3, 0, false), &mut rd).unwrap();
    let linked = fs.link(&ctx, tf.nodeid, NodeId::ROOT, &cs("from-tmp")).unwrap();
    assert_eq!(linked.nodeid, tf.nodeid);
    assert_eq!(std::fs::read(t.path().join("from-tmp")).unwrap(), b"tmp");
}

#[test]
fn setattr_changes_mode_size_and_times() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"0123456789").unwrap();
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    let f = lookup(&fs, NodeId::ROOT, "f").unwrap().nodeid;
    let (attr, _) = fs.setattr(&ctx, f, SetattrIn { size: Some(4), ..SetattrIn::default() }).unwrap();
    assert_eq!(attr.size, 4);
    let set = SetattrIn {
        mode: Some(libc::S_IFREG | 0o4711),
        atime: Some(TimeSpec::At(1000, 5)),
        mtime: None, // UTIME_OMIT
        ..SetattrIn::default()
    };
    let before = std::fs::metadata(t.path().join("f")).unwrap();
    let (attr, _) = fs.setattr(&ctx, f, set).unwrap();
    assert_eq!(attr.mode, libc::S_IFREG | 0o4711);
    assert_eq!((attr.atime, attr.atimensec), (1000, 5));
    assert_eq!((attr.mtime as i64, attr.mtimensec as i64), (before.mtime(), before.mtime_nsec()));
    // Through a handle, with UTIME_NOW.
    let o = fs.open(&ctx, f, libc::O_RDWR as u32, false).unwrap();
    let set = SetattrIn { size: Some(2), mtime: Some(TimeSpec::Now), handle: Some(o.handle), ..SetattrIn::default() };
    let (attr, _) = fs.setattr(&ctx, f, set).unwrap();
    assert_eq!(attr.size, 2);
    assert!(attr.mtime as i64 >= before.mtime());
    if creds_test_root() {
        let set = SetattrIn { uid: Some(1234), gid: Some(4321), ..SetattrIn::default() };
        let (attr, _) = fs.setattr(&ctx, f, set).unwrap();
        assert_eq!((attr.uid, attr.gid), (1234, 4321));
        assert_eq!(attr.mode & 0o7777, 0o711, "chown clears setuid");
    }
    fs.release(&ctx, f, o.handle, 0, None).unwrap();
    let (x, _) = fs.statx(&ctx, f, None, 0, libc::STATX_BASIC_STATS).unwrap();
    assert_eq!(x.size, 2);
    assert_ne!(x.mask & libc::STATX_SIZE, 0);
    let st = fs.statfs(&ctx, NodeId::ROOT).unwrap();
    assert!(st.bsize > 0 && st.blocks > 0);
}

#[test]
fn files_fallocate_seek_and_copy() {
    let t = tempfile::tempdir().unwrap();
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    let (a, oa) = fs
        .create(&ctx, NodeId::ROOT, &cs("a"), CreateRequest { mode: 0o644, umask: 0, flags: libc::O_RDWR as u32 })
        .unwrap();
    let (b, ob) = fs
        .create(&ctx, NodeId::ROOT, &cs("b"), CreateRequest { mode: 0o644, umask: 0, flags: libc::O_RDWR as u32 })
        .unwrap();
    fs.fallocate(&ctx, a.nodeid, FallocateRequest { handle: oa.handle, mode: 0, offset: 0, length: 1 << 16 }).unwrap();
    let punch = (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32;
    fs.fallocate(&ctx, a.nodeid, FallocateRequest { handle: oa.handle, mode: punch, offset: 0, length: 1 << 15 })
        .unwrap();
    let mut r = SliceReader::new(b"data");
    fs.write(&ctx, a.nodeid, wr(oa.handle, 4, 1 << 20, false), &mut r).unwrap();
    let data = fs.lseek(&ctx, a.nodeid, oa.handle, 0, libc::SEEK_DATA as u32).unwrap();
    assert!(data >= 1 << 15);
    let hole = fs.lseek(&ctx, a.nodeid, oa.handle, 1 << 20, libc::SEEK_HOLE as u32).unwrap();
    assert!(hole > 1 << 20);
    assert_eq!(errno(fs.lseek(&ctx, a.nodeid, oa.handle, 0, 99)), libc::EINVAL);
    let n = fs
        .copy_file_range(
            &ctx,
            CopyRange {
                node_in: a.nodeid,
                handle_in: oa.handle,
                offset_in: 1 << 20,
                node_out: b.nodeid,
                handle_out: ob.handle,
                offset_out: 0,
                len: 4,
                flags: 0,
            },
        )
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(std::fs::read(t.path().join("b")).unwrap(), b"data");
    fs.syncfs(&ctx, NodeId::ROOT).unwrap();
    fs.syncfs(&ctx, a.nodeid).unwrap();
    // With the client's write-back cache the host cannot tell data from holes.
    let wb = fs_with(Config { writeback: true, ..Config::new(t.path()) });
    let a = lookup(&wb, NodeId::ROOT, "a").unwrap().nodeid;
    let h = wb.open(&ctx, a, libc::O_RDWR as u32, false).unwrap().handle;
    assert_eq!(errno(wb.lseek(&ctx, a, h, 0, libc::SEEK_DATA as u32)), libc::ENOSYS);
    assert_eq!(wb.lseek(&ctx, a, h, 0, libc::SEEK_END as u32).unwrap(), (1 << 20) + 4);
}

#[test]
fn xattrs_disabled_enabled_and_acl_filter() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"").unwrap();
    let ctx = root_ctx();
    let fs = fs_on(t.path());
    let f = lookup(&fs, NodeId::ROOT, "f").unwrap().nodeid;
    assert_eq!(errno(fs.getxattr(&ctx, f, c"user.a")), libc::ENOSYS);
    assert_eq!(errno(fs.listxattr(&ctx, f)), libc::ENOSYS);
    assert_eq!(
        errno(fs.setxattr(&ctx, f, c"user.a", SetxattrRequest { value: b"1", flags: 0, kill_sgid: false })),
        libc::ENOSYS
    );
    assert_eq!(errno(fs.removexattr(&ctx, f, c"user.a")), libc::ENOSYS);

    let mut cfg = Config::new(t.path());
    cfg.xattr = true;
    let fs = fs_with(cfg);
    let f = lookup(&fs, NodeId::ROOT, "f").unwrap().nodeid;
    match fs.setxattr(&ctx, f, c"user.a", SetxattrRequest { value: b"1", flags: 0, kill_sgid: false }) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return,
        r => r.unwrap(),
    }
    assert_eq!(fs.getxattr(&ctx, f, c"user.a").unwrap(), b"1");
    let list = fs.listxattr(&ctx, f).unwrap();
    assert!(list.split(|&c| c == 0).any(|n| n == b"user.a"));
    assert_eq!(errno(fs.getxattr(&ctx, f, c"system.posix_acl_access")), libc::EOPNOTSUPP);
    fs.removexattr(&ctx, f, c"user.a").unwrap();
    assert_eq!(errno(fs.getxattr(&ctx, f, c"user.a")), libc::ENODATA);
    // Directories and symlinks go through the same magic link.
    fs.setxattr(&ctx, NodeId::ROOT, c"user.dir", SetxattrRequest { value: b"d", flags: 0, kill_sgid: false }).unwrap();
    assert_eq!(fs.getxattr(&ctx, NodeId::ROOT, c"user.dir").unwrap(), b"d");
    symlink("f", t.path().join("l")).unwrap();
    let l = lookup(&fs, NodeId::ROOT, "l").unwrap().nodeid;
    // user.* is not allowed on symlinks: the link itself is reached, not f.
    assert_eq!(
        errno(fs.setxattr(&ctx, l, c"user.a", SetxattrRequest { value: b"1", flags: 0, kill_sgid: false })),
        libc::EPERM
    );
    assert!(fs.getxattr(&ctx, f, c"user.a").is_err());
    assert!(PassthroughFs::new(Config { posix_acl: true, ..Config::new(t.path()) }).is_err());
}

#[test]
fn destroy_drops_everything_but_the_root() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"").unwrap();
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    let f = lookup(&fs, NodeId::ROOT, "f").unwrap().nodeid;
    let o = fs.open(&ctx, f, 0, false).unwrap();
    fs.opendir(&ctx, NodeId::ROOT, 0).unwrap();
    assert_eq!((fs.node_count(), fs.handle_count()), (2, 2));
    fs.destroy();
    assert_eq!((fs.node_count(), fs.handle_count()), (1, 0));
    assert_eq!(errno(fs.getattr(&ctx, f, Some(o.handle))), libc::EBADF);
    lookup(&fs, NodeId::ROOT, "f").unwrap();
}

#[test]
fn init_asks_for_the_configured_flags() {
    use fuse_abi::init_flags as init;
    let t = tempfile::tempdir().unwrap();
    let fs = PassthroughFs::new(Config::new(t.path())).unwrap();
    let want = fs.init(InitOptions { minor: 41, client_flags: 0 }).unwrap();
    assert_ne!(want & init::POSIX_LOCKS, 0);
    assert_ne!(want & init::FLOCK_LOCKS, 0);
    assert_ne!(want & init::DO_READDIRPLUS, 0);
    assert_eq!(want & (init::WRITEBACK_CACHE | init::POSIX_ACL | init::DONT_MASK | init::EXPORT_SUPPORT), 0);
    let cfg = Config { writeback: true, xattr: true, posix_acl: true, killpriv_v2: true, ..Config::new(t.path()) };
    let fs = PassthroughFs::new(cfg).unwrap();
    let want = fs.init(InitOptions { minor: 41, client_flags: 0 }).unwrap();
    let all = init::WRITEBACK_CACHE | init::POSIX_ACL | init::DONT_MASK | init::HANDLE_KILLPRIV_V2;
    assert_eq!(want & all, all);
}

#[test]
fn readdirplus_is_asked_for_only_when_the_guest_may_cache_attributes() {
    use fuse_abi::init_flags as init;
    let t = tempfile::tempdir().unwrap();
    let plus = init::DO_READDIRPLUS | init::READDIRPLUS_AUTO;
    for (cache, wanted) in
        [(CachePolicy::Never, 0), (CachePolicy::Metadata, plus), (CachePolicy::Auto, plus), (CachePolicy::Always, plus)]
    {
        let fs = PassthroughFs::new(Config { cache, ..Config::new(t.path()) }).unwrap();
        let want = fs.init(InitOptions { minor: 41, client_flags: 0 }).unwrap();
        assert_eq!(want & plus, wanted, "{cache:?}");
    }
}

#[test]
fn open_flags_follow_the_policy() {
    use fuse_abi::fopen;
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"").unwrap();
    let ctx = root_ctx();
    for (cache, want) in [
        (CachePolicy::Never, fopen::DIRECT_IO),
        (CachePolicy::Metadata, fopen::DIRECT_IO),
        (CachePolicy::Auto, 0),
        (CachePolicy::Always, fopen::KEEP_CACHE),
    ] {
        let fs = fs_with(Config { cache, ..Config::new(t.path()) });
        let f = lookup(&fs, NodeId::ROOT, "f").unwrap();
        assert_eq!(f.entry_timeout, cache.timeout());
        assert_eq!(fs.open(&ctx, f.nodeid, 0, false).unwrap().open_flags, want);
    }
    let fs = fs_with(Config { allow_direct_io: true, ..Config::new(t.path()) });
    let f = lookup(&fs, NodeId::ROOT, "f").unwrap().nodeid;
    let direct = fs.open(&ctx, f, libc::O_DIRECT as u32, false);
    if let Ok(o) = direct {
        assert_eq!(o.open_flags, fopen::DIRECT_IO);
    }
}

/// Listings are cached by `always`, and by `auto` and `metadata` once the
/// directory has settled (mtime older than `SETTLED_DIR_AGE`); a change
/// makes the directory unsettled again.
#[test]
fn dir_open_flags_follow_the_policy_and_the_mtime() {
    use fuse_abi::fopen;
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("d")).unwrap();
    let ctx = root_ctx();
    // Cached, and kept across opens.
    let cached = fopen::CACHE_DIR | fopen::KEEP_CACHE;
    let settle = || {
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::open(t.path().join("d")).unwrap().set_modified(hour_ago).unwrap();
    };
    let flags = |cache| {
        let fs = fs_with(Config { cache, ..Config::new(t.path()) });
        let d = lookup(&fs, NodeId::ROOT, "d").unwrap().nodeid;
        fs.opendir(&ctx, d, 0).unwrap().open_flags
    };
    // Just made: only `always` caches it.
    for (cache, want) in
        [(CachePolicy::Never, 0), (CachePolicy::Metadata, 0), (CachePolicy::Auto, 0), (CachePolicy::Always, cached)]
    {
        assert_eq!(flags(cache), want, "new directory, {cache:?}");
    }
    settle();
    for (cache, want) in [
        (CachePolicy::Never, 0),
        (CachePolicy::Metadata, cached),
        (CachePolicy::Auto, cached),
        (CachePolicy::Always, cached),
    ] {
        assert_eq!(flags(cache), want, "settled directory, {cache:?}");
    }
    std::fs::write(t.path().join("d/new"), b"").unwrap();
    assert_eq!(flags(CachePolicy::Auto), 0, "a directory just changed is not settled");
    // An mtime in the future (a clock step) is not settled either.
    let tomorrow = std::time::SystemTime::now() + std::time::Duration::from_secs(86400);
    std::fs::File::open(t.path().join("d")).unwrap().set_modified(tomorrow).unwrap();
    assert_eq!(flags(CachePolicy::Auto), 0, "an mtime in the future");
}

#[test]
fn file_handles_when_available() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("a"), b"x").unwrap();
    std::fs::hard_link(t.path().join("a"), t.path().join("b")).unwrap();
    let fs = fs_with(Config { inode_file_handles: FileHandleMode::Prefer, ..Config::new(t.path()) });
    if !fs.uses_file_handles() {
        return;
    }
    let ctx = root_ctx();
    let a = lookup(&fs, NodeId::ROOT, "a").unwrap();
    let b = lookup(&fs, NodeId::ROOT, "b").unwrap();
    assert_eq!(a.nodeid, b.nodeid);
    let o = fs.open(&ctx, a.nodeid, 0, false).unwrap();
    let mut w = VecWriter::new(16);
    fs.read(&ctx, a.nodeid, rd(o.handle, 16, 0), &mut w).unwrap();
    assert_eq!(w.as_slice(), b"x");
    let d = fs.mkdir(&ctx, NodeId::ROOT, &cs("d"), 0o755, 0).unwrap();
    lookup(&fs, d.nodeid, "x").unwrap();
}

#[test]
fn creation_runs_as_the_caller() {
    if !creds_test_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir(t.path().join("private")).unwrap();
    std::fs::set_permissions(t.path().join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let fs = fs_on(t.path());
    let user = Context { uid: 1000, gid: 1000, pid: 1, groups: Some(vec![1000]) };
    let thread_fs = &fs;
    std::thread::scope(|s| {
        s.spawn(move || {
            let fs = thread_fs;
            let d = fs.mkdir(&user, NodeId::ROOT, &cs("mine"), 0o755, 0).unwrap();
            assert_eq!((d.attr.uid, d.attr.gid), (1000, 1000));
            let (f, o) = fs
                .create(&user, d.nodeid, &cs("f"), CreateRequest { mode: 0o4755, umask: 0, flags: libc::O_RDWR as u32 })
                .unwrap();
            assert_eq!((f.attr.uid, f.attr.gid), (1000, 1000));
            let s = fs.symlink(&user, c"f", NodeId::ROOT, &cs("ln")).unwrap();
            assert_eq!(s.attr.uid, 1000);
            // The host kernel checks the caller's right to create.
            let private = lookup(fs, NodeId::ROOT, "private").unwrap();
            assert_eq!(errno(fs.mkdir(&user, private.nodeid, &cs("no"), 0o755, 0)), libc::EACCES);
            assert_eq!(errno(fs.access(&user, private.nodeid, libc::R_OK as u32)), libc::EACCES);
            fs.access(&root_ctx(), private.nodeid, libc::R_OK as u32).unwrap();
            // A write by the owner with kill_suidgid clears setuid.
            let mut r = SliceReader::new(b"x");
            fs.write(&user, f.nodeid, wr(o.handle, 1, 0, true), &mut r).unwrap();
            let (attr, _) = fs.getattr(&user, f.nodeid, None).unwrap();
            assert_eq!(attr.mode & 0o7777, 0o755);
            // Root's write without kill_suidgid keeps it.
            fs.setattr(&root_ctx(), f.nodeid, SetattrIn { mode: Some(0o4755), ..SetattrIn::default() }).unwrap();
            let mut r = SliceReader::new(b"y");
            fs.write(&root_ctx(), f.nodeid, wr(o.handle, 1, 0, false), &mut r).unwrap();
            assert_eq!(fs.getattr(&user, f.nodeid, None).unwrap().0.mode & 0o7777, 0o4755);
            // Root asked to kill (no CAP_FSETID in the client) loses it too.
            let mut r = SliceReader::new(b"z");
            fs.write(&root_ctx(), f.nodeid, wr(o.handle, 1, 0, true), &mut r).unwrap();
            assert_eq!(fs.getattr(&user, f.nodeid, None).unwrap().0.mode & 0o7777, 0o755);
            assert_eq!(avpfs_sys::creds::geteuid(), 0, "credentials restored");
        });
    });
    let m = std::fs::metadata(t.path().join("mine/f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
}

#[test]
fn names_with_slashes_never_resolve() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("d")).unwrap();
    std::fs::write(t.path().join("d/f"), b"").unwrap();
    let fs = fs_on(t.path());
    let ctx = root_ctx();
    let d = lookup(&fs, NodeId::ROOT, "d").unwrap().nodeid;
    // The server rejects such names; the passthrough does not rely on it.
    assert_eq!(errno(fs.lookup(&ctx, NodeId::ROOT, &cs("d/f"))), libc::EINVAL);
    for bad in ["../x", "..", ".", "", "a/b"] {
        let n = &cs(bad);
        assert_eq!(errno(fs.mkdir(&ctx, d, n, 0o755, 0)), libc::EINVAL, "{bad:?}");
        assert_eq!(
            errno(fs.mknod(&ctx, d, n, MknodRequest { mode: libc::S_IFREG | 0o644, rdev: 0, umask: 0 })),
            libc::EINVAL
        );
        assert_eq!(errno(fs.symlink(&ctx, c"t", d, n)), libc::EINVAL);
        assert_eq!(errno(fs.create(&ctx, d, n, CreateRequest { mode: 0o644, umask: 0, flags: 0 })), libc::EINVAL);
        assert_eq!(errno(fs.unlink(&ctx, d, n)), libc::EINVAL);
        assert_eq!(errno(fs.rmdir(&ctx, d, n)), libc::EINVAL);
        assert_eq!(
            errno(fs.rename(&ctx, RenameRequest { olddir: d, oldname: &cs("f"), newdir: d, newname: n, flags: 0 })),
            libc::EINVAL
        );
        assert_eq!(
            errno(fs.rename(&ctx, RenameRequest { olddir: d, oldname: n, newdir: d, newname: &cs("g"), flags: 0 })),
            libc::EINVAL
        );
        assert_eq!(errno(fs.link(&ctx, d, d, n)), libc::EINVAL);
    }
    // "../x" in `d` would have been `x` beside it, in the share's root.
    assert!(!t.path().join("x").exists());
    assert!(t.path().join("d/f").exists());
}

#[test]
fn creation_without_supplementary_groups_uses_the_directory_group() {
    // Clients before FUSE_CREATE_SUPP_GROUP (guest Linux 6.1) send none; the
    // client allowed the create through a supplementary group already.
    if !creds_test_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let gdir = t.path().join("gdir");
    std::fs::create_dir(&gdir).unwrap();
    std::os::unix::fs::chown(&gdir, Some(0), Some(61234)).unwrap();
    std::fs::set_permissions(&gdir, std::fs::Permissions::from_mode(0o775)).unwrap();
    std::fs::create_dir(t.path().join("other")).unwrap();
    std::fs::set_permissions(t.path().join("other"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fs = fs_on(t.path());
    let user = Context { uid: 65534, gid: 65534, pid: 1, groups: None };
    let g = lookup(&fs, NodeId::ROOT, "gdir").unwrap();
    let other = lookup(&fs, NodeId::ROOT, "other").unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let (f, _) = fs
                .create(&user, g.nodeid, &cs("f"), CreateRequest { mode: 0o644, umask: 0, flags: libc::O_RDWR as u32 })
                .unwrap();
            assert_eq!((f.attr.uid, f.attr.gid), (65534, 65534));
            fs.mkdir(&user, g.nodeid, &cs("d"), 0o755, 0).unwrap();
            // Only the directory's group is lent: a directory writable by
            // no group of the caller still refuses.
            assert_eq!(errno(fs.mkdir(&user, other.nodeid, &cs("no"), 0o755, 0)), libc::EACCES);
        });
    });
}

#[test]
fn sessions_of_one_share_have_their_own_nodes_and_share_host_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), b"a").unwrap();
    std::fs::write(dir.path().join("b"), b"b").unwrap();
    let share = Share::new(Config::new(dir.path())).unwrap();
    let (s1, s2) = (share.session(), share.session());
    for s in [&s1, &s2] {
        s.init(InitOptions { minor: 41, client_flags: u64::MAX }).unwrap();
    }
    let a1 = lookup(&s1, NodeId::ROOT, "a").unwrap().nodeid;
    let b1 = lookup(&s1, NodeId::ROOT, "b").unwrap().nodeid;
    let b2 = lookup(&s2, NodeId::ROOT, "b").unwrap().nodeid;
    assert_eq!(b2, a1, "each session numbers its own nodes");
    assert_eq!(errno(s2.getattr(&root_ctx(), b1, None)), libc::ENOENT);
    let (n1, n2) = (s1.inodes.get(b1).unwrap(), s2.inodes.get(b2).unwrap());
    assert!(n1.shares_host_file_with(&n2), "one descriptor for both sessions");
    // A session that forgets its node leaves the other's working.
    s1.forget(b1, 1);
    drop(n1);
    assert_eq!(s2.getattr(&root_ctx(), b2, None).unwrap().0.size, 1);
    // Dropping a whole session (a guest gone) does too.
    let h = s2.open(&root_ctx(), b2, libc::O_RDONLY as u32, false).unwrap().handle;
    s1.destroy();
    drop(s1);
    let mut out = VecWriter::new(16);
    s2.read(&root_ctx(), b2, rd(h, 1, 0), &mut out).unwrap();
    assert_eq!(out.as_slice(), b"b");
    // A share with one session shares nothing (and keeps no table).
    let alone = PassthroughFs::new(Config::new(dir.path())).unwrap();
    alone.init(InitOptions { minor: 41, client_flags: u64::MAX }).unwrap();
    let x = lookup(&alone, NodeId::ROOT, "a").unwrap().nodeid;
    let y = lookup(&s2, NodeId::ROOT, "a").unwrap().nodeid;
    assert!(!alone.inodes.get(x).unwrap().shares_host_file_with(&s2.inodes.get(y).unwrap()));
}
