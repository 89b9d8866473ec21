//! Shared test setup: an in-memory file system double and a backend started
//! in-process on a socket in a temporary directory.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use avpfs_server::{
    Context, CreateRequest, Entry, FileSystem, Handle, InitOptions, LockOwner, MigrationError, NodeId, OpenReply,
    ReadRequest, Server, WriteRequest,
};
use avpfs_server::{ZeroCopyReader, ZeroCopyWriter};
use avpfs_vhost::{Stopper, VhostDaemon, VhostOptions};
use fuse_abi::{self as abi, init_flags};
use vhost_harness::{Harness, HarnessConfig};

/// First word of a [`MemFs`] state.
const MEMFS_STATE: &str = "MEMFS-STATE-1";

fn enoent() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
}

enum Kind {
    Dir,
    /// File data lives in an unlinked temporary file, so that READ and WRITE
    /// go through the zero-copy `preadv`/`pwritev` path.
    File(File),
}

struct Node {
    parent: NodeId,
    name: Vec<u8>,
    kind: Kind,
    mode: u32,
    lookups: u64,
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<NodeId, Node>,
    next_node: u64,
    handles: HashMap<Handle, NodeId>,
    next_handle: u64,
}

/// An in-memory file system: directories and regular files, lookup counts
/// and open handles tracked so that tests can see a reset drop them.
pub struct MemFs {
    inner: Mutex<Inner>,
    destroys: AtomicUsize,
    threads: Mutex<HashSet<ThreadId>>,
    /// Kernel thread ids of the threads that served the last LOOKUP and the
    /// last FORGET (0: none yet).
    lookup_tid: AtomicI32,
    forget_tid: AtomicI32,
    /// How long each READ takes (as a slow host file system would).
    read_delay: Mutex<Duration>,
    forget_delay: Mutex<Duration>,
    /// Whether `save_state`/`load_state` work (else: Unsupported, as a file
    /// system without migration support answers).
    migratable: std::sync::atomic::AtomicBool,
}

impl MemFs {
    pub fn new() -> Self {
        let mut inner = Inner { next_node: 2, next_handle: 1, ..Default::default() };
        inner.nodes.insert(
            NodeId::ROOT,
            Node { parent: NodeId::ROOT, name: Vec::new(), kind: Kind::Dir, mode: libc::S_IFDIR | 0o755, lookups: 0 },
        );
        MemFs {
            inner: Mutex::new(inner),
            destroys: AtomicUsize::new(0),
            threads: Mutex::default(),
            lookup_tid: AtomicI32::new(0),
            forget_tid: AtomicI32::new(0),
            read_delay: Mutex::new(Duration::ZERO),
            forget_delay: Mutex::new(Duration::ZERO),
            migratable: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Lookup references the client holds, summed over all nodes.
    pub fn lookups(&self) -> u64 {
        self.inner.lock().unwrap().nodes.values().map(|n| n.lookups).sum()
    }

    /// The kernel thread id of the thread that served the last LOOKUP (0: none).
    pub fn lookup_tid(&self) -> i32 {
        self.lookup_tid.load(Ordering::SeqCst)
    }

    /// The kernel thread id of the thread that served the last FORGET (0: none).
    pub fn forget_tid(&self) -> i32 {
        self.forget_tid.load(Ordering::SeqCst)
    }

    /// Makes every READ take `delay` longer.
    pub fn set_read_delay(&self, delay: Duration) {
        *self.read_delay.lock().unwrap() = delay;
    }

    /// Makes every FORGET take `delay` longer.
    pub fn set_forget_delay(&self, delay: Duration) {
        *self.forget_delay.lock().unwrap() = delay;
    }

    /// Makes `save_state`/`load_state` answer Unsupported (false) or work.
    pub fn set_migratable(&self, on: bool) {
        self.migratable.store(on, Ordering::SeqCst);
    }

    /// Open handles.
    pub fn open_handles(&self) -> usize {
        self.inner.lock().unwrap().handles.len()
    }

    /// How many times the server reset the file system.
    pub fn destroys(&self) -> usize {
        self.destroys.load(Ordering::SeqCst)
    }

    /// The threads that served LOOKUP, READ or WRITE.
    pub fn serving_threads(&self) -> HashSet<ThreadId> {
        self.threads.lock().unwrap().clone()
    }

    fn note_thread(&self) {
        self.threads.lock().unwrap().insert(std::thread::current().id());
    }

    /// Adds a file with `data` under the root (as if created on the host).
    pub fn add_file(&self, name: &str, data: &[u8]) {
        use std::os::unix::fs::FileExt;
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(data, 0).unwrap();
        let mut inner = self.inner.lock().unwrap();
        let id = NodeId(inner.next_node);
        inner.next_node += 1;
        inner.nodes.insert(
            id,
            Node {
                parent: NodeId::ROOT,
                name: name.as_bytes().to_vec(),
                kind: Kind::File(f),
                mode: libc::S_IFREG | 0o644,
                lookups: 0,
            },
        );
    }

    fn attr(id: NodeId, n: &Node) -> abi::Attr {
        let size = match &n.kind {
            Kind::Dir => 4096,
            Kind::File(f) => f.metadata().map(|m| m.len()).unwrap_or(0),
        };
        abi::Attr {
            ino: id.0,
            size,
            blocks: size.div_ceil(512),
            mode: n.mode,
            nlink: 1,
            blksize: 4096,
            ..Default::default()
        }
    }

    fn entry(id: NodeId, n: &mut Node) -> Entry {
        n.lookups += 1;
        Entry {
            nodeid: id,
            generation: 1,
            attr: Self::attr(id, n),
            attr_timeout: Duration::from_secs(1),
            entry_timeout: Duration::from_secs(1),
        }
    }

    fn add(&self, parent: NodeId, name: &CStr, kind: Kind, mode: u32) -> io::Result<(NodeId, Entry)> {
        let mut inner = self.inner.lock().unwrap();
        match inner.nodes.get(&parent) {
            Some(Node { kind: Kind::Dir, .. }) => {}
            Some(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            None => return Err(enoent()),
        }
        if inner.nodes.values().any(|n| n.parent == parent && n.name == name.to_bytes()) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let id = NodeId(inner.next_node);
        inner.next_node += 1;
        let mut node = Node { parent, name: name.to_bytes().to_vec(), kind, mode, lookups: 0 };
        let e = Self::entry(id, &mut node);
        inner.nodes.insert(id, node);
        Ok((id, e))
    }

    fn with_file<T>(&self, handle: Handle, f: impl FnOnce(&File) -> io::Result<T>) -> io::Result<T> {
        let inner = self.inner.lock().unwrap();
        let node = inner.handles.get(&handle).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        match inner.nodes.get(node).map(|n| &n.kind) {
            Some(Kind::File(file)) => f(file),
            Some(Kind::Dir) => Err(io::Error::from_raw_os_error(libc::EISDIR)),
            None => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }
}

impl FileSystem for MemFs {
    fn init(&self, _: InitOptions) -> io::Result<u64> {
        Ok(init_flags::ASYNC_READ | init_flags::BIG_WRITES | init_flags::MAX_PAGES)
    }

    fn destroy(&self) {
        self.destroys.fetch_add(1, Ordering::SeqCst);
        let mut inner = self.inner.lock().unwrap();
        inner.handles.clear();
        for n in inner.nodes.values_mut() {
            n.lookups = 0;
        }
    }

    fn lookup(&self, _: &Context, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        self.note_thread();
        self.lookup_tid.store(avpfs_sys::process::gettid(), Ordering::SeqCst);
        let mut inner = self.inner.lock().unwrap();
        let (&id, node) = inner
            .nodes
            .iter_mut()
            .find(|(&id, n)| id != NodeId::ROOT && n.parent == parent && n.name == name.to_bytes())
            .ok_or_else(enoent)?;
        Ok(Self::entry(id, node))
    }

    fn forget(&self, node: NodeId, count: u64) {
        self.forget_tid.store(avpfs_sys::process::gettid(), Ordering::SeqCst);
        std::thread::sleep(*self.forget_delay.lock().unwrap());
        if let Some(n) = self.inner.lock().unwrap().nodes.get_mut(&node) {
            n.lookups = n.lookups.saturating_sub(count);
        }
    }

    fn getattr(&self, _: &Context, node: NodeId, _: Option<Handle>) -> io::Result<(abi::Attr, Duration)> {
        let inner = self.inner.lock().unwrap();
        let n = inner.nodes.get(&node).ok_or_else(enoent)?;
        Ok((Self::attr(node, n), Duration::from_secs(1)))
    }

    fn mkdir(&self, _: &Context, parent: NodeId, name: &CStr, mode: u32, umask: u32) -> io::Result<Entry> {
        Ok(self.add(parent, name, Kind::Dir, libc::S_IFDIR | (mode & !umask & 0o7777))?.1)
    }

    fn create(&self, _: &Context, parent: NodeId, name: &CStr, req: CreateRequest) -> io::Result<(Entry, OpenReply)> {
        let CreateRequest { mode, umask, .. } = req;
        let (id, e) =
            self.add(parent, name, Kind::File(tempfile::tempfile()?), libc::S_IFREG | (mode & !umask & 0o7777))?;
        let mut inner = self.inner.lock().unwrap();
        let h = Handle(inner.next_handle);
        inner.next_handle += 1;
        inner.handles.insert(h, id);
        Ok((e, OpenReply { handle: h, open_flags: 0 }))
    }

    fn open(&self, _: &Context, node: NodeId, _: u32, _: bool) -> io::Result<OpenReply> {
        let mut inner = self.inner.lock().unwrap();
        if !inner.nodes.contains_key(&node) {
            return Err(enoent());
        }
        let h = Handle(inner.next_handle);
        inner.next_handle += 1;
        inner.handles.insert(h, node);
        Ok(OpenReply { handle: h, open_flags: 0 })
    }

    fn read(&self, _: &Context, _: NodeId, req: ReadRequest, w: &mut dyn ZeroCopyWriter) -> io::Result<usize> {
        let ReadRequest { handle, size, offset, .. } = req;
        self.note_thread();
        std::thread::sleep(*self.read_delay.lock().unwrap());
        self.with_file(handle, |f| {
            let mut done = 0;
            while done < size as usize {
                let n = w.write_from_file(f.as_fd(), size as usize - done, offset + done as u64)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            Ok(done)
        })
    }

    fn write(&self, _: &Context, _: NodeId, req: WriteRequest, r: &mut dyn ZeroCopyReader) -> io::Result<usize> {
        let WriteRequest { handle, size, offset, .. } = req;
        self.note_thread();
        self.with_file(handle, |f| {
            let mut done = 0;
            while done < size as usize {
                let n = r.read_to(f.as_fd(), size as usize - done, offset + done as u64)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            Ok(done)
        })
    }

    fn release(&self, _: &Context, _: NodeId, handle: Handle, _: u32, _: Option<LockOwner>) -> io::Result<()> {
        self.inner
            .lock()
            .unwrap()
            .handles
            .remove(&handle)
            .map(drop)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// The whole tree, file data included, with lookup counts and handles,
    /// as text lines (a test double: the destination is another `MemFs`).
    fn save_state(&self) -> Result<Vec<u8>, MigrationError> {
        use std::os::unix::fs::FileExt;
        if !self.migratable.load(Ordering::SeqCst) {
            return Err(MigrationError::Unsupported);
        }
        let inner = self.inner.lock().unwrap();
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut out = format!("{MEMFS_STATE} {} {}\n", inner.next_node, inner.next_handle);
        for (id, n) in &inner.nodes {
            let data = match &n.kind {
                Kind::Dir => "-".to_string(),
                Kind::File(f) => {
                    let mut data = vec![0u8; f.metadata()?.len() as usize];
                    f.read_exact_at(&mut data, 0)?;
                    hex(&data) + "."
                }
            };
            out += &format!("node {} {} {} {} {} {data}\n", id.0, n.parent.0, n.mode, n.lookups, hex(&n.name) + ".");
        }
        for (h, id) in &inner.handles {
            out += &format!("handle {} {}\n", h.0, id.0);
        }
        Ok(out.into_bytes())
    }

    fn load_state(&self, state: &[u8]) -> Result<(), MigrationError> {
        use std::os::unix::fs::FileExt;
        if !self.migratable.load(Ordering::SeqCst) {
            return Err(MigrationError::Unsupported);
        }
        let corrupt = |what: &str| MigrationError::Corrupt(what.to_string());
        let text = std::str::from_utf8(state).map_err(|_| corrupt("not text"))?;
        let unhex = |s: &str| -> Result<Vec<u8>, MigrationError> {
            let s = s.strip_suffix('.').ok_or_else(|| corrupt("bad hex"))?;
            (0..s.len())
                .step_by(2)
                .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()).ok_or_else(|| corrupt("bad hex")))
                .collect()
        };
        let num = |s: Option<&str>| -> Result<u64, MigrationError> {
            s.and_then(|s| s.parse().ok()).ok_or_else(|| corrupt("bad number"))
        };
        let mut lines = text.lines();
        let mut head = lines.next().ok_or_else(|| corrupt("empty"))?.split(' ');
        if head.next() != Some(MEMFS_STATE) {
            return Err(corrupt("not a MemFs state"));
        }
        let mut new = Inner { next_node: num(head.next())?, next_handle: num(head.next())?, ..Default::default() };
        for line in lines {
            let mut f = line.split(' ');
            match f.next() {
                Some("node") => {
                    let (id, parent, mode, lookups) = (num(f.next())?, num(f.next())?, num(f.next())?, num(f.next())?);
                    let name = unhex(f.next().ok_or_else(|| corrupt("no name"))?)?;
                    let kind = match f.next() {
                        Some("-") => Kind::Dir,
                        Some(data) => {
                            let file = tempfile::tempfile()?;
                            file.write_all_at(&unhex(data)?, 0)?;
                            Kind::File(file)
                        }
                        None => return Err(corrupt("no data")),
                    };
                    let mode = u32::try_from(mode).map_err(|_| corrupt("bad mode"))?;
                    new.nodes.insert(NodeId(id), Node { parent: NodeId(parent), name, kind, mode, lookups });
                }
                Some("handle") => {
                    new.handles.insert(Handle(num(f.next())?), NodeId(num(f.next())?));
                }
                _ => return Err(corrupt("unknown line")),
            }
        }
        if !new.nodes.contains_key(&NodeId::ROOT) {
            return Err(corrupt("no root"));
        }
        *self.inner.lock().unwrap() = new;
        Ok(())
    }

    fn statfs(&self, _: &Context, _: NodeId) -> io::Result<abi::Kstatfs> {
        Ok(abi::Kstatfs {
            blocks: 1000,
            bfree: 500,
            bavail: 500,
            bsize: 4096,
            namelen: 255,
            frsize: 4096,
            ..Default::default()
        })
    }
}

/// A backend serving a [`MemFs`] in a thread of this process.
pub struct Backend {
    pub socket: PathBuf,
    pub server: Arc<Server<MemFs>>,
    stopper: Stopper,
    thread: Option<JoinHandle<Result<(), avpfs_vhost::Error>>>,
    _dir: tempfile::TempDir,
}

impl Backend {
    /// Starts a backend with `num_request_queues` request queues that keeps
    /// listening after a disconnect.
    pub fn start(num_request_queues: usize) -> Backend {
        Self::start_with(VhostOptions {
            tag: "testfs".into(),
            num_request_queues,
            queue_size: 1024,
            keep_listening_after_disconnect: true,
            ..Default::default()
        })
    }

    pub fn start_with(options: VhostOptions) -> Backend {
        static LOG: Once = Once::new();
        LOG.call_once(|| {
            let _ = env_logger::builder().is_test(true).try_init();
        });
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vhost.sock");
        let server = Arc::new(Server::new(MemFs::new()));
        // Bound before the thread starts: the harness can connect at once.
        let daemon = VhostDaemon::new(socket.as_path(), server.clone(), options).unwrap();
        let stopper = daemon.stopper();
        let thread = std::thread::spawn(move || daemon.run());
        Backend { socket, server, stopper, thread: Some(thread), _dir: dir }
    }

    pub fn fs(&self) -> &MemFs {
        self.server.fs()
    }

    /// Connects a harness with `num_queues` queues.
    pub fn connect(&self, num_queues: usize) -> Harness {
        Harness::connect(&self.socket, HarnessConfig { num_queues, ..Default::default() }).unwrap()
    }

    /// Waits until the daemon returns on its own.
    pub fn wait_exit(mut self) -> Result<(), avpfs_vhost::Error> {
        self.thread.take().unwrap().join().unwrap()
    }

    /// Stops the daemon and returns what `run` returned.
    pub fn stop(mut self) -> Result<(), avpfs_vhost::Error> {
        self.stopper.stop();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stopper.stop();
            let _ = t.join();
        }
    }
}

/// Waits until `cond` holds (at most 5 s).
pub fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
