//! Live migration: a session saved on one `PassthroughFs` (the source)
//! and restored into a fresh one on the same directory (the destination
//! daemon), on real host files.

use std::ffi::CString;
use std::io;
use std::path::Path;

use avpfs_server::{
    Context, FileSystem, Handle, InitOptions, LockOwner, LockRequest, MigrationError, NodeId, ReadRequest, Server,
    SliceReader, VecWriter, WriteRequest,
};
use fuse_abi::{self as abi, opcode, FileLock};
use zerocopy::IntoBytes;

use crate::config::{Config, FileHandleMode, MigrationMode, MigrationOnError};
use crate::migration::testing::edit;
use crate::passthrough::PassthroughFs;

fn ctx() -> Context {
    Context { uid: 0, gid: 0, pid: 1, groups: None }
}

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn fs_with(cfg: Config) -> PassthroughFs {
    let fs = PassthroughFs::new(cfg).unwrap();
    fs.init(InitOptions { minor: 41, client_flags: u64::MAX }).unwrap();
    fs
}

fn cfg(root: &Path, mode: MigrationMode, on_error: MigrationOnError) -> Config {
    Config { migration_mode: mode, migration_on_error: on_error, ..Config::new(root) }
}

fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    r.unwrap_err().raw_os_error().unwrap()
}

fn read(fs: &impl FileSystem, node: NodeId, h: Handle, size: u32) -> io::Result<Vec<u8>> {
    let mut w = VecWriter::new(size as usize);
    fs.read(&ctx(), node, ReadRequest { handle: h, offset: 0, size, flags: 0 }, &mut w)?;
    Ok(w.into_inner())
}

fn write(fs: &impl FileSystem, node: NodeId, h: Handle, offset: u64, data: &[u8]) -> io::Result<usize> {
    let req = WriteRequest { handle: h, offset, size: data.len() as u32, kill_suidgid: false, flags: 0 };
    fs.write(&ctx(), node, req, &mut SliceReader::new(data))
}

/// A share with `d/f` ("hello") and `g` ("other"), and a source session
/// that looked up `d` once and `d/f` twice and opened `f` read-write, and
/// read through it, and opened `d` as a directory.
struct Source {
    _t: tempfile::TempDir,
    root: std::path::PathBuf,
    fs: PassthroughFs,
    d: NodeId,
    f: NodeId,
    fh: Handle,
    dh: Handle,
}

fn source(mode: MigrationMode) -> Source {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("share");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/f"), b"hello").unwrap();
    std::fs::write(root.join("g"), b"other").unwrap();
    // Beside the share: must never be reachable.
    std::fs::write(t.path().join("secret"), b"secret").unwrap();
    let fs = fs_with(Config { inode_file_handles: FileHandleMode::Never, ..cfg(&root, mode, MigrationOnError::Abort) });
    let d = fs.lookup(&ctx(), NodeId::ROOT, &cs("d")).unwrap().nodeid;
    let f = fs.lookup(&ctx(), d, &cs("f")).unwrap().nodeid;
    assert_eq!(fs.lookup(&ctx(), d, &cs("f")).unwrap().nodeid, f);
    let fh = fs.open(&ctx(), f, libc::O_RDWR as u32, false).unwrap().handle;
    assert_eq!(read(&fs, f, fh, 16).unwrap(), b"hello");
    let dh = fs.opendir(&ctx(), d, 0).unwrap().handle;
    Source { _t: t, root, fs, d, f, fh, dh }
}

fn refused<T: std::fmt::Debug>(r: Result<T, MigrationError>) -> String {
    match r {
        Err(MigrationError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn restored_nodes_and_handles_work_on_the_destination() {
    let s = source(MigrationMode::FindPaths);
    let state = s.fs.save_state().unwrap();
    let b = fs_with(cfg(&s.root, MigrationMode::FindPaths, MigrationOnError::Abort));
    b.load_state(&state).unwrap();
    assert_eq!((b.node_count(), b.handle_count()), (3, 2));
    let (attr, _) = b.getattr(&ctx(), s.f, None).unwrap();
    assert_eq!(attr.size, 5);
    b.getattr(&ctx(), s.f, Some(s.fh)).unwrap();
    // The open handle reads and writes the same file.
    assert_eq!(read(&b, s.f, s.fh, 16).unwrap(), b"hello");
    assert_eq!(write(&b, s.f, s.fh, 5, b", world").unwrap(), 7);
    assert_eq!(std::fs::read(s.root.join("d/f")).unwrap(), b"hello, world");
    // The directory handle lists.
    let mut sink = Names(Vec::new());
    b.readdir(&ctx(), s.d, s.dh, 0, &mut sink).unwrap();
    assert!(sink.0.contains(&b"f".to_vec()));
    // A lookup of the same name finds the restored node, one count more.
    let again = b.lookup(&ctx(), s.d, &cs("f")).unwrap();
    assert_eq!(again.nodeid, s.f);
    // New nodes and handles get new ids.
    let g = b.lookup(&ctx(), NodeId::ROOT, &cs("g")).unwrap().nodeid;
    assert!(g.get() > s.f.get() && g.get() > s.d.get());
    let gh = b.open(&ctx(), g, libc::O_RDONLY as u32, false).unwrap().handle;
    assert!(gh != s.fh && gh != s.dh);
    // Two counts from the source and one here: three forgets drop it.
    b.release(&ctx(), s.f, s.fh, 0, None).unwrap();
    b.forget(s.f, 2);
    b.getattr(&ctx(), s.f, None).unwrap();
    b.forget(s.f, 1);
    assert_eq!(errno(b.getattr(&ctx(), s.f, None)), libc::ENOENT);
    // The source was not changed by saving.
    assert_eq!(s.fs.node_count(), 3);
    assert_eq!(read(&s.fs, s.f, s.fh, 32).unwrap(), b"hello, world");
}

struct Names(Vec<Vec<u8>>);

impl avpfs_server::DirSink for Names {
    fn is_plus(&self) -> bool {
        false
    }
    fn has_room(&self, _: usize) -> bool {
        true
    }
    fn add(&mut self, e: avpfs_server::DirEntry<'_>, _: Option<&avpfs_server::Entry>) -> bool {
        self.0.push(e.name.to_vec());
        true
    }
}

/// The file `d/f` changes on the host between the save and the load.
fn after_host_change(mode: MigrationMode, change: impl FnOnce(&Path)) -> (Source, Vec<u8>) {
    let s = source(mode);
    let state = s.fs.save_state().unwrap();
    change(&s.root);
    (s, state)
}

fn rename(root: &Path) {
    std::fs::rename(root.join("d/f"), root.join("d/moved")).unwrap();
}

fn delete(root: &Path) {
    std::fs::remove_file(root.join("d/f")).unwrap();
}

#[test]
fn find_paths_fails_on_a_renamed_or_deleted_file_per_on_error() {
    for change in [rename as fn(&Path), delete] {
        let (s, state) = after_host_change(MigrationMode::FindPaths, change);
        // abort: the whole load is refused and the destination is untouched.
        let b = fs_with(cfg(&s.root, MigrationMode::FindPaths, MigrationOnError::Abort));
        let why = refused(b.load_state(&state));
        assert!(why.contains("d/f"), "{why}");
        assert_eq!((b.node_count(), b.handle_count()), (1, 0));
        // guest-error: the rest is restored; that node's operations fail.
        let b = fs_with(cfg(&s.root, MigrationMode::FindPaths, MigrationOnError::GuestError));
        b.load_state(&state).unwrap();
        assert_eq!(errno(b.getattr(&ctx(), s.f, None)), libc::EIO);
        assert_eq!(errno(b.open(&ctx(), s.f, libc::O_RDONLY as u32, false)), libc::EIO);
        assert_eq!(errno(read(&b, s.f, s.fh, 16)), libc::EBADF);
        b.getattr(&ctx(), s.d, None).unwrap();
        let mut sink = Names(Vec::new());
        b.readdir(&ctx(), s.d, s.dh, 0, &mut sink).unwrap();
        // A lost node is forgotten as any other.
        b.forget(s.f, 2);
        assert_eq!(errno(b.getattr(&ctx(), s.f, None)), libc::ENOENT);
    }
}

/// Whether file handles can be opened here (root with CAP_DAC_READ_SEARCH,
/// a file system that gives handles).
fn handles_usable(dir: &Path) -> bool {
    let d = std::fs::File::open(dir).unwrap();
    avpfs_sys::creds::has_effective_cap(avpfs_sys::creds::CAP_DAC_READ_SEARCH).unwrap_or(false)
        && avpfs_sys::FileHandle::of(std::os::fd::AsFd::as_fd(&d)).is_ok()
}

#[test]
fn file_handles_find_a_renamed_or_deleted_file() {
    for change in [rename as fn(&Path), delete] {
        let (s, state) = after_host_change(MigrationMode::FileHandles, change);
        if !handles_usable(&s.root) {
            eprintln!("skipped: file handles cannot be opened here");
            return;
        }
        let b = fs_with(cfg(&s.root, MigrationMode::FileHandles, MigrationOnError::Abort));
        b.load_state(&state).unwrap();
        assert_eq!(read(&b, s.f, s.fh, 16).unwrap(), b"hello");
        b.getattr(&ctx(), s.f, None).unwrap();
    }
}

#[test]
fn verify_handles_catches_a_replaced_file() {
    let (s, state) = after_host_change(MigrationMode::FindPaths, |root| {
        std::fs::rename(root.join("d/f"), root.join("d/old")).unwrap();
        std::fs::write(root.join("d/f"), b"impostor").unwrap();
    });
    // Without the check the other file is taken (virtiofsd's find-paths).
    let b = fs_with(cfg(&s.root, MigrationMode::FindPaths, MigrationOnError::Abort));
    b.load_state(&state).unwrap();
    assert_eq!(read(&b, s.f, s.fh, 16).unwrap(), b"impostor");
    let b = fs_with(Config {
        migration_verify_handles: true,
        ..cfg(&s.root, MigrationMode::FindPaths, MigrationOnError::Abort)
    });
    assert!(refused(b.load_state(&state)).contains("not the same file"));
}

#[test]
fn the_source_saves_current_paths_and_marks_deleted_files() {
    let s = source(MigrationMode::FindPaths);
    // With confirm-paths every path is checked again at the save.
    let src = fs_with(Config { migration_confirm_paths: true, ..s.fs.config().clone() });
    let d = src.lookup(&ctx(), NodeId::ROOT, &cs("d")).unwrap().nodeid;
    let f = src.lookup(&ctx(), d, &cs("f")).unwrap().nodeid;
    let g = src.lookup(&ctx(), NodeId::ROOT, &cs("g")).unwrap().nodeid;
    // Renamed on the host before the save: saved under its new name.
    std::fs::rename(s.root.join("d/f"), s.root.join("d/renamed")).unwrap();
    // Deleted before the save: saved as not found.
    std::fs::remove_file(s.root.join("g")).unwrap();
    let state = src.save_state().unwrap();
    let b = fs_with(cfg(&s.root, MigrationMode::FindPaths, MigrationOnError::Abort));
    assert!(refused(b.load_state(&state)).contains(&format!("node {g}")));
    let b = fs_with(cfg(&s.root, MigrationMode::FindPaths, MigrationOnError::GuestError));
    b.load_state(&state).unwrap();
    assert_eq!(b.getattr(&ctx(), f, None).unwrap().0.size, 5);
    assert_eq!(b.lookup(&ctx(), d, &cs("renamed")).unwrap().nodeid, f);
    assert_eq!(errno(b.getattr(&ctx(), g, None)), libc::EIO);
}

#[test]
fn damaged_states_are_refused_before_anything_changes() {
    let s = source(MigrationMode::FindPaths);
    let state = s.fs.save_state().unwrap();
    let b = fs_with(cfg(&s.root, MigrationMode::FindPaths, MigrationOnError::Abort));
    for n in [0, 3, 8, state.len() / 2, state.len() - 1] {
        assert!(matches!(b.load_state(&state[..n]), Err(MigrationError::Corrupt(_))), "cut at {n}");
    }
    let mut newer = state.clone();
    newer[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert!(matches!(b.load_state(&newer), Err(MigrationError::NewerVersion { found: 2, supported: 1 })));
    let mut extra = state.clone();
    extra.push(0);
    assert!(matches!(b.load_state(&extra), Err(MigrationError::Corrupt(_))));
    assert_eq!((b.node_count(), b.handle_count()), (1, 0));
    b.load_state(&state).unwrap();
    // A destination that already serves is refused.
    assert!(refused(b.load_state(&state)).contains("already"));
}

#[test]
fn paths_leading_outside_the_share_are_refused() {
    let s = source(MigrationMode::FindPaths);
    // A symlink inside the share to its parent, where `secret` lives.
    std::os::unix::fs::symlink("..", s.root.join("up")).unwrap();
    let state = s.fs.save_state().unwrap();
    let f = s.f.get();
    let outside = [&b"../secret"[..], b"/etc/passwd", b"d/../../secret", b"up/secret", b"d//f", b"./d/f"];
    for bad in outside {
        let evil = edit(&state, |nodes| {
            for n in nodes.iter_mut().filter(|n| n.0 == f) {
                n.1 = Some(bad.to_vec());
            }
        });
        let b = fs_with(cfg(&s.root, MigrationMode::FindPaths, MigrationOnError::GuestError));
        let why = refused(b.load_state(&evil));
        assert!(why.contains(&format!("node {f}")), "{why}");
        assert_eq!((b.node_count(), b.handle_count()), (1, 0), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn a_file_handle_leading_outside_the_share_is_refused() {
    let s = source(MigrationMode::FileHandles);
    if !handles_usable(&s.root) {
        eprintln!("skipped: file handles cannot be opened here");
        return;
    }
    let secret = std::fs::File::open(s.root.parent().unwrap().join("secret")).unwrap();
    let (h, _) = avpfs_sys::FileHandle::of(std::os::fd::AsFd::as_fd(&secret)).unwrap();
    let state = s.fs.save_state().unwrap();
    let f = s.f.get();
    let evil = edit(&state, |nodes| {
        for n in nodes.iter_mut().filter(|n| n.0 == f) {
            n.2 = Some((h.handle_type(), h.as_bytes().to_vec()));
        }
    });
    let b = fs_with(cfg(&s.root, MigrationMode::FileHandles, MigrationOnError::GuestError));
    assert!(refused(b.load_state(&evil)).contains("outside the share"));
    assert_eq!((b.node_count(), b.handle_count()), (1, 0));
}

#[test]
fn held_locks_refuse_the_save() {
    let s = source(MigrationMode::FindPaths);
    let lock = |typ: i32, flock: bool| LockRequest {
        handle: s.fh,
        owner: LockOwner(7),
        lock: FileLock { start: 0, end: u64::MAX >> 1, typ: typ as u32, pid: 1 },
        flock,
    };
    s.fs.setlk(&ctx(), s.f, lock(libc::F_WRLCK, false), false).unwrap();
    let why = refused(s.fs.save_state());
    assert!(why.contains("holds 1 locks"), "{why}");
    // The owner's close drops its locks: then the save goes through.
    s.fs.flush(&ctx(), s.f, s.fh, LockOwner(7)).unwrap();
    s.fs.save_state().unwrap();
    s.fs.setlk(&ctx(), s.f, lock(libc::F_WRLCK, true), false).unwrap();
    assert!(refused(s.fs.save_state()).contains("holds 1 locks"));
    s.fs.setlk(&ctx(), s.f, lock(libc::F_UNLCK, true), false).unwrap();
    s.fs.save_state().unwrap();
    // The source kept serving throughout.
    assert_eq!(read(&s.fs, s.f, s.fh, 16).unwrap(), b"hello");
}

fn init_request(minor: u32, flags: u64) -> Vec<u8> {
    let i = abi::InitIn {
        major: 7,
        minor,
        max_readahead: 131072,
        flags: flags as u32,
        flags2: (flags >> 32) as u32,
        unused: [0; 11],
    };
    let body = i.as_bytes();
    let h = abi::InHeader {
        len: (40 + body.len()) as u32,
        opcode: opcode::INIT,
        unique: 1,
        nodeid: 0,
        uid: 0,
        gid: 0,
        pid: 1,
        total_extlen: 0,
        padding: 0,
    };
    [h.as_bytes(), body].concat()
}

#[test]
fn server_round_trip_keeps_the_negotiated_session() {
    let s = source(MigrationMode::FindPaths);
    let a = Server::new(s.fs);
    let flags = abi::init_flags::INIT_EXT | abi::init_flags::POSIX_LOCKS | abi::init_flags::ASYNC_READ;
    let mut w = VecWriter::new(4096);
    a.handle_message(&mut SliceReader::new(&init_request(31, flags)), &mut w).unwrap();
    assert_eq!(a.negotiated_minor(), 31);
    let state = a.save_state().unwrap();

    let b = Server::new(fs_with(cfg(&s.root, MigrationMode::FindPaths, MigrationOnError::Abort)));
    assert!(!b.is_initialized());
    b.load_state(&state).unwrap();
    assert!(b.is_initialized(), "the client does not send FUSE_INIT again");
    assert_eq!(b.negotiated_minor(), 31);
    assert_eq!(b.negotiated_flags(), a.negotiated_flags());
    assert_eq!(b.fs().node_count(), 3);
    // A request on a restored node is served without a new FUSE_INIT.
    let h = abi::InHeader {
        len: 40 + 16,
        opcode: opcode::GETATTR,
        unique: 2,
        nodeid: s.f.get(),
        uid: 0,
        gid: 0,
        pid: 1,
        total_extlen: 0,
        padding: 0,
    };
    let req = [h.as_bytes(), &[0u8; 16][..]].concat();
    let mut w = VecWriter::new(4096);
    b.handle_message(&mut SliceReader::new(&req), &mut w).unwrap();
    let out = w.into_inner();
    assert_eq!(i32::from_le_bytes(out[4..8].try_into().unwrap()), 0, "GETATTR succeeds");
    // Damaged envelopes change nothing.
    let c = Server::new(fs_with(cfg(&s.root, MigrationMode::FindPaths, MigrationOnError::Abort)));
    let mut bad = state.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(matches!(c.load_state(&bad), Err(MigrationError::Corrupt(_))));
    let mut newer = state.clone();
    newer[8..12].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(c.load_state(&newer), Err(MigrationError::NewerVersion { found: 99, .. })));
    assert!(matches!(c.load_state(&state[..state.len() - 3]), Err(MigrationError::Corrupt(_))));
    assert!(!c.is_initialized());
    assert_eq!(c.fs().node_count(), 1);
    // A started session is not overwritten.
    assert!(matches!(b.load_state(&state), Err(MigrationError::Refused(_))));
}

#[test]
fn policy_positions_survive_the_migration() {
    use avpfs_policy::{Access, PathRules, Policy, PolicyFs};
    let policy = || Policy { paths: PathRules::new([("d/secret", Access::Hidden)]).unwrap(), ..Policy::permissive() };
    let s = source(MigrationMode::FindPaths);
    std::fs::write(s.root.join("d/secret"), b"x").unwrap();
    std::fs::write(s.root.join("secret"), b"y").unwrap();
    let a = PolicyFs::new(fs_with(Config::new(&s.root)), policy());
    let d = a.lookup(&ctx(), NodeId::ROOT, &cs("d")).unwrap().nodeid;
    let f = a.lookup(&ctx(), d, &cs("f")).unwrap().nodeid;
    assert_eq!(errno(a.lookup(&ctx(), d, &cs("secret"))), libc::ENOENT);
    let fh = a.open(&ctx(), f, libc::O_RDONLY as u32, false).unwrap().handle;
    let state = a.save_state().unwrap();

    let b = PolicyFs::new(fs_with(Config::new(&s.root)), policy());
    b.load_state(&state).unwrap();
    assert_eq!((b.node_count(), b.open_handle_count()), (2, 1));
    // `d` is placed at d/, not at the root: its `secret` stays hidden
    // (while the root's own `secret` is not).
    assert_eq!(errno(b.lookup(&ctx(), d, &cs("secret"))), libc::ENOENT);
    b.lookup(&ctx(), NodeId::ROOT, &cs("secret")).unwrap();
    assert_eq!(b.lookup(&ctx(), d, &cs("f")).unwrap().nodeid, f);
    assert_eq!(read(&b, f, fh, 16).unwrap(), b"hello");
    b.release(&ctx(), f, fh, 0, None).unwrap();
    assert_eq!(b.open_handle_count(), 0);
    // A damaged inner part refuses the whole load.
    let c = PolicyFs::new(fs_with(Config::new(&s.root)), policy());
    assert!(c.load_state(&state[..state.len() - 20]).is_err());
    assert_eq!(c.node_count(), 0);
}
