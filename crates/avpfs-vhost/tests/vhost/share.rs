//! The real passthrough (alone or under a share policy) served in-process
//! over vhost-user, on a temporary tree where a directory beside the share
//! holds a secret; a hostile guest that checks every reply it gets; and a
//! daemon in a child process (this test binary started again) for the tests
//! that need a process of its own (an fd limit, a memory measurement).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use avpfs_passthrough::{Config, PassthroughFs};
use avpfs_server::{FileSystem, Server};
use avpfs_vhost::{Stopper, VhostDaemon, VhostOptions};
use fuse_abi::{self as abi, opcode};
use vhost_harness::fuse::{name, request, FuseClient, Reply, SMALL_REPLY};
use vhost_harness::{Harness, HarnessConfig};
use zerocopy::{FromBytes, IntoBytes};

/// What the file outside the share holds: no reply may ever carry it.
pub const SECRET: &[u8] = b"avpfs-outside-secret-3f9c1e0b";

/// A temporary tree: `share/` (served) with `hello` ("hi\n") and `dir/`,
/// and beside it `outside/` with `secret` and `sub/`, on the same file
/// system.
pub struct Tree {
    _tmp: tempfile::TempDir,
    pub base: PathBuf,
    pub share: PathBuf,
    pub outside: PathBuf,
}

/// What can be seen of a directory tree from the host: every path with its
/// type, mode, owner, link count, size and (for files) contents.
pub type Snapshot = Vec<(PathBuf, u32, u32, u64, u64, Option<Vec<u8>>)>;

impl Tree {
    pub fn new() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let share = base.join("share");
        let outside = base.join("outside");
        std::fs::create_dir_all(share.join("dir")).unwrap();
        std::fs::write(share.join("hello"), b"hi\n").unwrap();
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("secret"), SECRET).unwrap();
        Tree { _tmp: tmp, base, share, outside }
    }

    /// Inode numbers of everything outside the share: the share's parent,
    /// and `outside/` with all it holds.
    pub fn outside_inodes(&self) -> HashSet<u64> {
        let mut set: HashSet<u64> = [std::fs::metadata(&self.base).unwrap().ino()].into();
        set.extend(snapshot_paths(&self.outside).iter().map(|p| std::fs::symlink_metadata(p).unwrap().ino()));
        set
    }

    /// The host's view of `outside/` and of the share's parent.
    pub fn outside_snapshot(&self) -> Snapshot {
        let mut paths = snapshot_paths(&self.outside);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.base).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        paths.extend(names);
        paths
            .into_iter()
            .map(|p| {
                let m = std::fs::symlink_metadata(&p).unwrap();
                let data = m.is_file().then(|| std::fs::read(&p).unwrap());
                (p, m.mode(), m.uid(), m.nlink(), m.len(), data)
            })
            .collect()
    }
}

/// `dir` and every path beneath it, sorted.
fn snapshot_paths(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            let mut kids: Vec<PathBuf> = std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect();
            kids.sort();
            out.extend(kids);
        }
        i += 1;
    }
    out
}

/// The passthrough's configuration for these tests: `share` with xattrs.
pub fn passthrough_config(share: &Path) -> Config {
    Config { xattr: true, ..Config::new(share) }
}

/// A file system served in a thread of this process, with a connected and
/// initialized front end.
pub struct Served<F: FileSystem + 'static> {
    pub harness: Harness,
    pub server: Arc<Server<F>>,
    stopper: Stopper,
    thread: Option<JoinHandle<Result<(), avpfs_vhost::Error>>>,
    _dir: tempfile::TempDir,
}

impl<F: FileSystem + 'static> Served<F> {
    /// Serves `fs` with `request_queues` request queues and connects.
    pub fn start(fs: F, request_queues: usize) -> Self {
        Self::start_with(fs, VhostOptions { num_request_queues: request_queues, ..Default::default() })
    }

    /// Serves `fs` with `options` and connects.
    pub fn start_with(fs: F, options: VhostOptions) -> Self {
        let request_queues = options.num_request_queues;
        let qemu11_shmem = options.dax_front_end == avpfs_server::DaxFrontEnd::Qemu11;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vhost.sock");
        let server = Arc::new(Server::new(fs));
        let daemon = VhostDaemon::new(socket.as_path(), server.clone(), options).unwrap();
        let stopper = daemon.stopper();
        let thread = Some(std::thread::spawn(move || daemon.run()));
        let cfg = HarnessConfig { num_queues: request_queues + 1, qemu11_shmem, ..Default::default() };
        let harness = Harness::connect(&socket, cfg).unwrap();
        FuseClient::new(&harness, 1).init().unwrap();
        Served { harness, server, stopper, thread, _dir: dir }
    }

    pub fn fs(&self) -> &F {
        self.server.fs()
    }
}

impl<F: FileSystem + 'static> Drop for Served<F> {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The passthrough on `tree`'s share, served with one request queue.
pub fn serve_share(tree: &Tree) -> Served<PassthroughFs> {
    Served::start(PassthroughFs::new(passthrough_config(&tree.share)).unwrap(), 1)
}

/// A guest that sends hand-made requests and checks every reply: the
/// secret never appears in it, and no inode number it carries (entries,
/// attributes, directory entries) is one of `outside`.
pub struct Guest<'h> {
    pub c: FuseClient<'h>,
    outside: HashSet<u64>,
}

impl<'h> Guest<'h> {
    pub fn new(h: &'h Harness, queue: usize, tree: &Tree) -> Self {
        Guest { c: FuseClient::new(h, queue), outside: tree.outside_inodes() }
    }

    /// A guest that accepts `ino` in replies (a file the host admin linked in).
    pub fn allowing(mut self, ino: u64) -> Self {
        self.outside.remove(&ino);
        self
    }

    /// Sends a request of `parts` and returns the checked reply.
    pub fn call(&self, op: u32, node: u64, parts: &[&[u8]], capacity: usize) -> Reply {
        let req = request(op, self.c.next_unique(), node, parts);
        self.send(op, &req, capacity)
    }

    /// Sends the raw request bytes `req` and returns the checked reply.
    pub fn send(&self, op: u32, req: &[u8], capacity: usize) -> Reply {
        let reply = self.c.call(req, capacity).unwrap_or_else(|e| panic!("{}: {e}", opcode::name(op)));
        self.check(op, &reply);
        reply
    }

    /// The errno of a request that must fail.
    pub fn errno(&self, op: u32, node: u64, parts: &[&[u8]]) -> i32 {
        let r = self.call(op, node, parts, SMALL_REPLY);
        r.errno().unwrap_or_else(|| panic!("{} on node {node} succeeded: {:?}", opcode::name(op), r.body))
    }

    /// The body of a request that must succeed.
    pub fn ok(&self, op: u32, node: u64, parts: &[&[u8]]) -> Vec<u8> {
        let r = self.call(op, node, parts, SMALL_REPLY);
        match r.errno() {
            None => r.body,
            Some(e) => panic!("{} on node {node} failed with errno {e}", opcode::name(op)),
        }
    }

    fn check(&self, op: u32, r: &Reply) {
        assert!(
            !r.body.windows(SECRET.len()).any(|w| w == SECRET),
            "{} reply carries the secret from outside the share",
            opcode::name(op)
        );
        if r.errno().is_some() {
            return;
        }
        let mut inos = Vec::new();
        match op {
            opcode::LOOKUP | opcode::MKNOD | opcode::MKDIR | opcode::SYMLINK | opcode::LINK | opcode::CREATE => {
                inos.push(abi::EntryOut::read_from_prefix(&r.body).unwrap().0.attr.ino);
            }
            opcode::GETATTR | opcode::SETATTR => {
                inos.push(abi::AttrOut::read_from_prefix(&r.body).unwrap().0.attr.ino);
            }
            opcode::READDIR | opcode::READDIRPLUS => {
                for (_, dirent_ino, entry) in parse_dir(&r.body, op == opcode::READDIRPLUS) {
                    inos.push(dirent_ino);
                    inos.extend(entry.map(|(e, _)| e.attr.ino));
                }
            }
            _ => {}
        }
        for ino in inos {
            assert!(!self.outside.contains(&ino), "{} reply carries inode {ino} from outside", opcode::name(op));
        }
    }

    /// LOOKUP: the entry, or the errno. A negative entry (node id 0) is ENOENT.
    pub fn lookup(&self, parent: u64, n: &str) -> Result<abi::EntryOut, i32> {
        let r = self.call(opcode::LOOKUP, parent, &[&name(n)], SMALL_REPLY);
        match r.errno() {
            Some(e) => Err(e),
            None => {
                let e = abi::EntryOut::read_from_prefix(&r.body).unwrap().0;
                if e.nodeid == 0 {
                    Err(libc::ENOENT)
                } else {
                    Ok(e)
                }
            }
        }
    }

    pub fn getattr(&self, node: u64) -> Result<abi::Attr, i32> {
        let r = self.call(opcode::GETATTR, node, &[abi::GetattrIn::default().as_bytes()], SMALL_REPLY);
        match r.errno() {
            Some(e) => Err(e),
            None => Ok(abi::AttrOut::read_from_prefix(&r.body).unwrap().0.attr),
        }
    }

    pub fn open(&self, node: u64, flags: i32) -> Result<u64, i32> {
        let o = abi::OpenIn { flags: flags as u32, open_flags: 0 };
        let r = self.call(opcode::OPEN, node, &[o.as_bytes()], SMALL_REPLY);
        match r.errno() {
            Some(e) => Err(e),
            None => Ok(abi::OpenOut::read_from_prefix(&r.body).unwrap().0.fh),
        }
    }

    pub fn read(&self, node: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32> {
        let rd = abi::ReadIn { fh, offset, size, ..Default::default() };
        let r = self.call(opcode::READ, node, &[rd.as_bytes()], 16 + size as usize);
        r.errno().map_or(Ok(r.body), Err)
    }

    pub fn release(&self, node: u64, fh: u64) -> Result<(), i32> {
        let rel = abi::ReleaseIn { fh, ..Default::default() };
        let r = self.call(opcode::RELEASE, node, &[rel.as_bytes()], SMALL_REPLY);
        r.errno().map_or(Ok(()), Err)
    }

    /// CREATE `n` in `parent`: the entry and the handle, or the errno.
    pub fn create(&self, parent: u64, n: &str, mode: u32, flags: i32) -> Result<(abi::EntryOut, u64), i32> {
        let c = abi::CreateIn { flags: flags as u32, mode, umask: 0, open_flags: 0 };
        let r = self.call(opcode::CREATE, parent, &[c.as_bytes(), &name(n)], SMALL_REPLY);
        match r.errno() {
            Some(e) => Err(e),
            None => {
                let (e, rest) = abi::EntryOut::read_from_prefix(&r.body).unwrap();
                Ok((e, abi::OpenOut::read_from_prefix(rest).unwrap().0.fh))
            }
        }
    }

    pub fn mknod(&self, parent: u64, n: &str, mode: u32, rdev: u32) -> Result<abi::EntryOut, i32> {
        let m = abi::MknodIn { mode, rdev, umask: 0, padding: 0 };
        let r = self.call(opcode::MKNOD, parent, &[m.as_bytes(), &name(n)], SMALL_REPLY);
        match r.errno() {
            Some(e) => Err(e),
            None => Ok(abi::EntryOut::read_from_prefix(&r.body).unwrap().0),
        }
    }

    pub fn setattr(&self, node: u64, s: abi::SetattrIn) -> Result<abi::Attr, i32> {
        let r = self.call(opcode::SETATTR, node, &[s.as_bytes()], SMALL_REPLY);
        match r.errno() {
            Some(e) => Err(e),
            None => Ok(abi::AttrOut::read_from_prefix(&r.body).unwrap().0.attr),
        }
    }

    /// FORGET (no reply).
    pub fn forget(&self, node: u64, n: u64) {
        self.c.forget(node, n).unwrap();
    }

    /// OPENDIR + READDIRPLUS from offset 0 until the end + RELEASEDIR: the
    /// names and entries listed.
    pub fn list_plus(&self, dir: u64) -> Vec<(String, abi::EntryOut)> {
        let o = abi::OpenIn::default();
        let fh = abi::OpenOut::read_from_prefix(&self.ok(opcode::OPENDIR, dir, &[o.as_bytes()])).unwrap().0.fh;
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let rd = abi::ReadIn { fh, offset, size: 8192, ..Default::default() };
            let r = self.call(opcode::READDIRPLUS, dir, &[rd.as_bytes()], 16 + 8192);
            assert_eq!(r.errno(), None);
            let entries = parse_dir(&r.body, true);
            if entries.is_empty() {
                break;
            }
            for (name, _, e) in entries {
                let e = e.unwrap();
                offset = e.1;
                out.push((name, e.0));
            }
        }
        let rel = abi::ReleaseIn { fh, ..Default::default() };
        self.ok(opcode::RELEASEDIR, dir, &[rel.as_bytes()]);
        // Every entry with a node id is a reference: give them back.
        for (_, e) in &out {
            if e.nodeid != 0 {
                self.forget(e.nodeid, 1);
            }
        }
        out
    }

    /// The daemon still answers correctly: LOOKUP of `hello`, GETATTR of the root.
    pub fn assert_serving(&self) {
        let e = self.lookup(abi::ROOT_ID, "hello").expect("the daemon stopped serving");
        assert_eq!(e.attr.size, 3);
        self.forget(e.nodeid, 1);
        assert_eq!(self.getattr(abi::ROOT_ID).unwrap().mode & libc::S_IFMT, libc::S_IFDIR);
    }
}

/// A directory listing: (name, dirent ino, for READDIRPLUS the entry and the
/// dirent offset).
type Listed = Vec<(String, u64, Option<(abi::EntryOut, u64)>)>;

fn parse_dir(mut body: &[u8], plus: bool) -> Listed {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (entry, dirent, rest) = if plus {
            let (d, rest) = abi::DirentPlus::read_from_prefix(body).unwrap();
            (Some(d.entry_out), d.dirent, rest)
        } else {
            let (d, rest) = abi::Dirent::read_from_prefix(body).unwrap();
            (None, d, rest)
        };
        let n = dirent.namelen as usize;
        let name = String::from_utf8_lossy(&rest[..n]).into_owned();
        let size = if plus { abi::direntplus_size(n) } else { abi::dirent_size(n) };
        out.push((name, dirent.ino, entry.map(|e| (e, dirent.off))));
        body = &body[size.min(body.len())..];
    }
    out
}

/// Environment of the child daemon (see [`ChildDaemon`]).
const CHILD_SHARE: &str = "AVPFS_TEST_CHILD_SHARE";
const CHILD_SOCKET: &str = "AVPFS_TEST_CHILD_SOCKET";
const CHILD_QUEUES: &str = "AVPFS_TEST_CHILD_QUEUES";
const CHILD_NOFILE: &str = "AVPFS_TEST_CHILD_NOFILE";

/// The body of the child daemon: when started by [`ChildDaemon::start`],
/// lowers its own RLIMIT_NOFILE if asked, serves the passthrough on the
/// given share and socket until the front end leaves. Does nothing otherwise.
pub fn child_daemon_main() {
    let (Ok(share), Ok(socket)) = (std::env::var(CHILD_SHARE), std::env::var(CHILD_SOCKET)) else {
        return;
    };
    let queues: usize = std::env::var(CHILD_QUEUES).unwrap().parse().unwrap();
    if let Ok(n) = std::env::var(CHILD_NOFILE) {
        let n: u64 = n.parse().unwrap();
        let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
        avpfs_sys::process::setrlimit(libc::RLIMIT_NOFILE, &lim).unwrap();
    }
    let fs = PassthroughFs::new(passthrough_config(Path::new(&share))).unwrap();
    let options = VhostOptions { num_request_queues: queues, ..Default::default() };
    let daemon = VhostDaemon::new(Path::new(&socket), Arc::new(Server::new(fs)), options).unwrap();
    daemon.run().unwrap();
}

/// A daemon in a child process: this test binary, started again to run
/// only the ignored test `exhaustion::child_daemon` (which calls
/// [`child_daemon_main`]). The `avpfs` binary itself cannot be used here:
/// this crate's tests cannot name another package's binary.
pub struct ChildDaemon {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ChildDaemon {
    pub fn start(share: &Path, queues: usize, nofile: Option<u64>) -> ChildDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vhost.sock");
        let log = dir.path().join("daemon.log");
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "exhaustion::child_daemon", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_SHARE, share)
            .env(CHILD_SOCKET, &socket)
            .env(CHILD_QUEUES, queues.to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap());
        if let Some(n) = nofile {
            cmd.env(CHILD_NOFILE, n.to_string());
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(child.try_wait().unwrap().is_none(), "the child daemon exited");
            assert!(Instant::now() < deadline, "the child daemon made no socket");
            std::thread::sleep(Duration::from_millis(5));
        }
        ChildDaemon { child, socket, log, _dir: dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident anonymous memory of the child (its heap and stacks, not
    /// the guest memory it maps), in KiB.
    pub fn rss_anon_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Whether the child is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (at most 10 s) for the child to end after its front end left;
    /// panics with its output unless it exited successfully.
    pub fn assert_exits_cleanly(mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.is_some_and(|s| s.success()), "the child daemon ended with {status:?}; output:\n{log}");
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
