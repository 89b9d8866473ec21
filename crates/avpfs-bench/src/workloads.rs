//! The workloads, as FUSE request streams for the daemons. The host
//! baseline's equivalents are in [`crate::host`].
//!
//! | workload    | FUSE requests (timed)              | host system calls             |
//! |-------------|------------------------------------|-------------------------------|
//! | lookup      | LOOKUP of every file of the tree   | fstatat                       |
//! | getattr     | GETATTR of every file              | fstat on O_PATH descriptors   |
//! | readdirplus | READDIRPLUS (4 KiB) of every dir   | getdents64 (4 KiB) + fstatat  |
//! | create      | CREATE + WRITE 4 KiB + RELEASE     | openat(O_CREAT) + write + close |
//! | randread    | READ 4 KiB at random offsets       | pread 4 KiB                   |
//! | seqread     | READ 1 MiB, in order               | pread 1 MiB                   |
//! | seqwrite    | WRITE 1 MiB, in order (*)          | pwrite 1 MiB                  |
//! | randwrite   | WRITE 4 KiB at random offsets (*)  | pwrite 4 KiB                  |
//!
//! (*) over a file written beforehand, untimed: the daemons' write
//! path is measured, not the file system's block allocation.
//!
//! Untimed around each run: the LOOKUPs, OPENs and OPENDIRs it needs, and
//! afterwards the RELEASEs and a BATCH_FORGET of every node it looked up,
//! so each run starts from the same daemon state.

use std::collections::HashMap;
use std::ffi::CString;
use std::path::Path;
use std::time::Duration;

use fuse_abi::{self as abi, opcode};
use serde::Serialize;
use vhost_harness::fuse::{request, Reply, OUT_HEADER_SIZE, SMALL_REPLY};
use zerocopy::IntoBytes;

use crate::engine::{OpStream, ReplyShape, ReplyView, RequestBuf, RunResult, Session, Step};
use crate::error::{Error, IoContext};
use crate::procstat::CpuSample;
use crate::share::Tree;

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// LOOKUP storm on the tree.
    Lookup,
    /// GETATTR storm on the tree.
    Getattr,
    /// READDIRPLUS of the tree's directories.
    Readdirplus,
    /// CREATE + WRITE 4 KiB + RELEASE of new files.
    Create,
    /// 4 KiB READs at random offsets.
    Randread,
    /// 1 MiB READs in order.
    Seqread,
    /// 1 MiB WRITEs in order.
    Seqwrite,
    /// 4 KiB WRITEs at random offsets.
    Randwrite,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 8] = [
        Workload::Lookup,
        Workload::Getattr,
        Workload::Readdirplus,
        Workload::Create,
        Workload::Randread,
        Workload::Seqread,
        Workload::Seqwrite,
        Workload::Randwrite,
    ];

    /// The name used in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Lookup => "lookup",
            Workload::Getattr => "getattr",
            Workload::Readdirplus => "readdirplus",
            Workload::Create => "create",
            Workload::Randread => "randread",
            Workload::Seqread => "seqread",
            Workload::Seqwrite => "seqwrite",
            Workload::Randwrite => "randwrite",
        }
    }

    /// What its rate counts.
    pub fn unit(self) -> Unit {
        match self {
            Workload::Readdirplus => Unit::Entries,
            Workload::Seqread | Workload::Seqwrite => Unit::Bytes,
            _ => Unit::Ops,
        }
    }

    /// One operation, as the report explains it.
    pub fn op_description(self) -> &'static str {
        match self {
            Workload::Lookup => "LOOKUP / fstatat",
            Workload::Getattr => "GETATTR / fstat",
            Workload::Readdirplus => "READDIRPLUS 4 KiB / getdents64 4 KiB + fstatat per entry",
            Workload::Create => "CREATE+WRITE 4 KiB+RELEASE / openat+write+close",
            Workload::Randread => "READ 4 KiB / pread",
            Workload::Seqread => "READ 1 MiB / pread",
            Workload::Seqwrite => "WRITE 1 MiB / pwrite",
            Workload::Randwrite => "WRITE 4 KiB / pwrite",
        }
    }
}

/// What a rate counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Operations.
    Ops,
    /// Directory entries.
    Entries,
    /// Bytes (shown as MB/s, 10^6 bytes).
    Bytes,
}

impl Unit {
    /// The rate's label.
    pub fn rate_label(self) -> &'static str {
        match self {
            Unit::Ops => "ops/s",
            Unit::Entries => "entries/s",
            Unit::Bytes => "MB/s",
        }
    }

    /// A rate in units per second, in the label's scale.
    pub fn scale(self, per_second: f64) -> f64 {
        match self {
            Unit::Bytes => per_second / 1e6,
            _ => per_second,
        }
    }
}

/// A workload with its queue count and requests in flight per queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Case {
    /// The workload.
    pub workload: Workload,
    /// Request queues (host: threads).
    pub queues: usize,
    /// Operations in flight per queue (host: always 1 per thread).
    pub depth: usize,
}

impl Case {
    /// `lookup q1 d16`.
    pub fn label(&self) -> String {
        format!("{} q{} d{}", self.workload.name(), self.queues, self.depth)
    }
}

/// How big the workloads are.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// Files of the tree (lookup, getattr, readdirplus).
    pub files: usize,
    /// Files per directory of the tree.
    pub per_dir: usize,
    /// Files looked up for the memory figures.
    pub memory_files: usize,
    /// Files made per create run.
    pub create_files: usize,
    /// READs per randread run, and WRITEs per randwrite run.
    pub rand_ops: usize,
    /// Size of the randread file, and of the file randwrite writes in.
    pub rand_file_bytes: u64,
    /// Size of the seqread file, and bytes written per seqwrite run.
    pub seq_bytes: u64,
    /// READDIRPLUS and getdents64 buffer size.
    pub readdir_buf: u32,
}

/// Paths inside the share.
pub mod paths {
    /// The tree of the metadata workloads.
    pub const TREE: &str = "tree";
    /// The larger tree of the memory figures (when it is not [`TREE`]).
    pub const MEMORY_TREE: &str = "mtree";
    /// The directory of the data files.
    pub const DATA: &str = "data";
    /// The randread file, in [`DATA`].
    pub const RAND: &str = "rand.bin";
    /// The seqread file, in [`DATA`].
    pub const SEQ: &str = "seq.bin";
    /// Where create, seqwrite and randwrite write, one entry per run.
    pub const WORK: &str = "w";
}

/// One timed run: what the engine measured and the daemon's CPU time.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Operations, units, latencies and wall time.
    pub run: RunResult,
    /// CPU time of the daemon (or of the host threads) during the run.
    pub cpu: Duration,
}

impl Measurement {
    /// Adds the figures of another pass of the same case.
    pub fn merge(&mut self, other: Measurement) {
        self.run.ops += other.run.ops;
        self.run.units += other.run.units;
        self.run.latencies.extend(other.run.latencies);
        self.run.wall += other.run.wall;
        self.run.driver_cpu += other.run.driver_cpu;
        self.cpu += other.cpu;
    }
}

/// xorshift64*: the same random offsets for every contender.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for stream `stream` (never the zero state).
    pub fn new(stream: usize) -> Rng {
        Rng(0x9E37_79B9_7F4A_7C15 ^ (stream as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9))
    }

    /// The next value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Operation indices of stream `q` of `n`: `q, q + n, q + 2n, ...` below `total`.
pub fn share_of(total: usize, q: usize, n: usize) -> impl Iterator<Item = usize> {
    (q..total).step_by(n.max(1))
}

fn entry_reply() -> ReplyShape {
    ReplyShape::Small((OUT_HEADER_SIZE + std::mem::size_of::<abi::EntryOut>()) as u32)
}

/// LOOKUP of every file of a tree.
pub struct LookupStream<'a> {
    tree: &'a Tree,
    parents: &'a [u64],
    todo: std::iter::StepBy<std::ops::Range<usize>>,
    /// Node ids looked up (one reference each).
    pub found: Vec<u64>,
}

impl<'a> LookupStream<'a> {
    /// Stream `q` of `n` over `tree`, whose directory `i` is node `parents[i]`.
    pub fn new(tree: &'a Tree, parents: &'a [u64], q: usize, n: usize) -> Self {
        LookupStream { tree, parents, todo: (q..tree.files).step_by(n.max(1)), found: Vec::new() }
    }
}

impl OpStream for LookupStream<'_> {
    fn start(&mut self, _slot: usize, req: &mut RequestBuf) -> Result<bool, Error> {
        let Some(k) = self.todo.next() else { return Ok(false) };
        let parent = self.parents[self.tree.dir_of(k)];
        req.set("LOOKUP", opcode::LOOKUP, parent, &[self.tree.file_name(k).as_bytes_with_nul()], entry_reply());
        Ok(true)
    }

    fn step(&mut self, _slot: usize, reply: &ReplyView<'_>, _req: &mut RequestBuf) -> Result<Step, Error> {
        self.found.push(reply.decode::<abi::EntryOut>()?.nodeid);
        Ok(Step::Done { units: 1 })
    }
}

/// GETATTR of given nodes.
pub struct GetattrStream<'a> {
    nodes: &'a [u64],
    todo: std::iter::StepBy<std::ops::Range<usize>>,
}

impl<'a> GetattrStream<'a> {
    /// Stream `q` of `n` over `nodes`.
    pub fn new(nodes: &'a [u64], q: usize, n: usize) -> Self {
        GetattrStream { nodes, todo: (q..nodes.len()).step_by(n.max(1)) }
    }
}

impl OpStream for GetattrStream<'_> {
    fn start(&mut self, _slot: usize, req: &mut RequestBuf) -> Result<bool, Error> {
        let Some(k) = self.todo.next() else { return Ok(false) };
        let g = abi::GetattrIn::default();
        let reply = ReplyShape::Small((OUT_HEADER_SIZE + std::mem::size_of::<abi::AttrOut>()) as u32);
        req.set("GETATTR", opcode::GETATTR, self.nodes[k], &[g.as_bytes()], reply);
        Ok(true)
    }

    fn step(&mut self, _slot: usize, reply: &ReplyView<'_>, _req: &mut RequestBuf) -> Result<Step, Error> {
        reply.decode::<abi::AttrOut>()?;
        Ok(Step::Done { units: 1 })
    }
}

/// READDIRPLUS of whole directories; each slot lists one directory at a time.
pub struct ReaddirplusStream {
    dirs: Vec<(u64, u64)>,
    next_dir: usize,
    cursor: Vec<Option<(usize, u64)>>,
    buf: u32,
    /// Node ids the entries carried (one reference each).
    pub found: Vec<u64>,
}

impl ReaddirplusStream {
    /// Lists `dirs` (node id, open handle) with `buf`-byte requests, `depth` at a time.
    pub fn new(dirs: Vec<(u64, u64)>, depth: usize, buf: u32) -> Self {
        ReaddirplusStream { dirs, next_dir: 0, cursor: vec![None; depth], buf, found: Vec::new() }
    }
}

/// Walks the `fuse_direntplus` records of a READDIRPLUS reply: calls `f`
/// with each entry's node id and name; returns the offset of the last one.
pub fn parse_direntplus(mut body: &[u8], mut f: impl FnMut(u64, &[u8])) -> Result<Option<u64>, Error> {
    use zerocopy::FromBytes;
    let bad = |detail: String| Error::BadReply { op: "READDIRPLUS", detail };
    let mut last = None;
    while !body.is_empty() {
        let (d, rest) =
            abi::DirentPlus::read_from_prefix(body).map_err(|_| bad(format!("{} bytes left", body.len())))?;
        let namelen = d.dirent.namelen as usize;
        let name = rest.get(..namelen).ok_or_else(|| bad(format!("name of {namelen} bytes past the end")))?;
        f(d.entry_out.nodeid, name);
        last = Some(d.dirent.off);
        let size = abi::direntplus_size(namelen);
        body = body.get(size..).unwrap_or(&[]);
    }
    Ok(last)
}

impl OpStream for ReaddirplusStream {
    fn start(&mut self, slot: usize, req: &mut RequestBuf) -> Result<bool, Error> {
        if self.cursor[slot].is_none() {
            if self.next_dir >= self.dirs.len() {
                return Ok(false);
            }
            self.cursor[slot] = Some((self.next_dir, 0));
            self.next_dir += 1;
        }
        let Some((d, offset)) = self.cursor[slot] else { return Ok(false) };
        let (node, fh) = self.dirs[d];
        let r = abi::ReadIn { fh, offset, size: self.buf, ..Default::default() };
        req.set("READDIRPLUS", opcode::READDIRPLUS, node, &[r.as_bytes()], ReplyShape::Bulk(self.buf));
        req.read_bulk();
        Ok(true)
    }

    fn step(&mut self, slot: usize, reply: &ReplyView<'_>, _req: &mut RequestBuf) -> Result<Step, Error> {
        let mut entries = 0u64;
        let found = &mut self.found;
        let last = parse_direntplus(reply.body, |node, name| {
            if name != b"." && name != b".." {
                entries += 1;
                if node != 0 {
                    found.push(node);
                }
            }
        })?;
        match (last, &mut self.cursor[slot]) {
            (Some(off), Some((_, cur))) => *cur = off,
            _ => self.cursor[slot] = None,
        }
        Ok(Step::Done { units: entries })
    }
}

/// CREATE, WRITE 4 KiB and RELEASE of new files in one directory.
pub struct CreateStream {
    dir: u64,
    names: Vec<CString>,
    next: usize,
    state: Vec<(u8, u64, u64)>,
    /// Node ids of the new files (one reference each).
    pub found: Vec<u64>,
}

/// Size of each file the create workload writes.
pub const SMALL_FILE: u32 = 4096;

impl CreateStream {
    /// Stream `q` of `n` making `files` files named `cNNNNNNNN` in `dir`, `depth` at a time.
    pub fn new(dir: u64, files: usize, q: usize, n: usize, depth: usize) -> Self {
        let names = share_of(files, q, n).map(|k| CString::new(format!("c{k:08}")).unwrap_or_default()).collect();
        CreateStream { dir, names, next: 0, state: vec![(0, 0, 0); depth], found: Vec::new() }
    }
}

impl OpStream for CreateStream {
    fn start(&mut self, slot: usize, req: &mut RequestBuf) -> Result<bool, Error> {
        let Some(name) = self.names.get(self.next) else { return Ok(false) };
        self.next += 1;
        let c = abi::CreateIn {
            flags: (libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL) as u32,
            mode: libc::S_IFREG | 0o644,
            umask: 0o022,
            open_flags: 0,
        };
        let reply =
            (OUT_HEADER_SIZE + std::mem::size_of::<abi::EntryOut>() + std::mem::size_of::<abi::OpenOut>()) as u32;
        req.set(
            "CREATE",
            opcode::CREATE,
            self.dir,
            &[c.as_bytes(), name.as_bytes_with_nul()],
            ReplyShape::Small(reply),
        );
        self.state[slot] = (0, 0, 0);
        Ok(true)
    }

    fn step(&mut self, slot: usize, reply: &ReplyView<'_>, req: &mut RequestBuf) -> Result<Step, Error> {
        use zerocopy::FromBytes;
        let (stage, node, fh) = self.state[slot];
        let small = |n: usize| ReplyShape::Small((OUT_HEADER_SIZE + n) as u32);
        match stage {
            0 => {
                let bad = || Error::BadReply { op: "CREATE", detail: format!("{} bytes", reply.body.len()) };
                let (entry, rest) = abi::EntryOut::read_from_prefix(reply.body).map_err(|_| bad())?;
                let (open, _) = abi::OpenOut::read_from_prefix(rest).map_err(|_| bad())?;
                let w = abi::WriteIn { fh: open.fh, offset: 0, size: SMALL_FILE, ..Default::default() };
                req.set("WRITE", opcode::WRITE, entry.nodeid, &[w.as_bytes()], small(8));
                req.with_payload(SMALL_FILE);
                self.state[slot] = (1, entry.nodeid, open.fh);
                Ok(Step::More)
            }
            1 => {
                let written = reply.decode::<abi::WriteOut>()?.size;
                if written != SMALL_FILE {
                    return Err(Error::BadReply { op: "WRITE", detail: format!("{written} bytes written") });
                }
                let r = abi::ReleaseIn { fh, flags: libc::O_WRONLY as u32, ..Default::default() };
                req.set("RELEASE", opcode::RELEASE, node, &[r.as_bytes()], small(0));
                self.state[slot] = (2, node, fh);
                Ok(Step::More)
            }
            _ => {
                self.found.push(node);
                Ok(Step::Done { units: 1 })
            }
        }
    }
}

/// READs of `chunk` bytes of one open file: in order, or at random
/// `chunk`-aligned offsets.
pub struct ReadStream {
    node: u64,
    fh: u64,
    chunk: u32,
    offsets: Vec<u64>,
    next: usize,
}

impl ReadStream {
    /// Reads at `offsets`.
    pub fn new(node: u64, fh: u64, chunk: u32, offsets: Vec<u64>) -> Self {
        ReadStream { node, fh, chunk, offsets, next: 0 }
    }
}

/// Offsets of stream `q` of `n` for randread and randwrite: `ops` random
/// 4 KiB blocks of a `file_bytes` file.
pub fn random_offsets(ops: usize, file_bytes: u64, q: usize, n: usize) -> Vec<u64> {
    let mut rng = Rng::new(q);
    let blocks = file_bytes / u64::from(SMALL_FILE);
    share_of(ops, q, n).map(|_| rng.below(blocks) * u64::from(SMALL_FILE)).collect()
}

/// Offsets of stream `q` of `n` for sequential I/O of `total` bytes in `chunk`s.
pub fn sequential_offsets(total: u64, chunk: u32, q: usize, n: usize) -> Vec<u64> {
    let chunks = (total / u64::from(chunk)) as usize;
    share_of(chunks, q, n).map(|k| k as u64 * u64::from(chunk)).collect()
}

impl OpStream for ReadStream {
    fn start(&mut self, _slot: usize, req: &mut RequestBuf) -> Result<bool, Error> {
        let Some(&offset) = self.offsets.get(self.next) else { return Ok(false) };
        self.next += 1;
        let r = abi::ReadIn { fh: self.fh, offset, size: self.chunk, ..Default::default() };
        req.set("READ", opcode::READ, self.node, &[r.as_bytes()], ReplyShape::Bulk(self.chunk));
        Ok(true)
    }

    fn step(&mut self, _slot: usize, reply: &ReplyView<'_>, _req: &mut RequestBuf) -> Result<Step, Error> {
        let got = reply.len - OUT_HEADER_SIZE;
        if got != self.chunk as usize {
            return Err(Error::BadReply { op: "READ", detail: format!("{got} bytes of {}", self.chunk) });
        }
        Ok(Step::Done { units: got as u64 })
    }
}

/// WRITEs of `chunk` bytes at given offsets of one open file.
pub struct WriteStream {
    node: u64,
    fh: u64,
    chunk: u32,
    offsets: Vec<u64>,
    next: usize,
}

impl WriteStream {
    /// Writes at `offsets`.
    pub fn new(node: u64, fh: u64, chunk: u32, offsets: Vec<u64>) -> Self {
        WriteStream { node, fh, chunk, offsets, next: 0 }
    }
}

impl OpStream for WriteStream {
    fn start(&mut self, _slot: usize, req: &mut RequestBuf) -> Result<bool, Error> {
        let Some(&offset) = self.offsets.get(self.next) else { return Ok(false) };
        self.next += 1;
        let w = abi::WriteIn { fh: self.fh, offset, size: self.chunk, ..Default::default() };
        let reply = ReplyShape::Small((OUT_HEADER_SIZE + std::mem::size_of::<abi::WriteOut>()) as u32);
        req.set("WRITE", opcode::WRITE, self.node, &[w.as_bytes()], reply);
        req.with_payload(self.chunk);
        Ok(true)
    }

    fn step(&mut self, _slot: usize, reply: &ReplyView<'_>, _req: &mut RequestBuf) -> Result<Step, Error> {
        let written = reply.decode::<abi::WriteOut>()?.size;
        if written != self.chunk {
            return Err(Error::BadReply { op: "WRITE", detail: format!("{written} bytes of {}", self.chunk) });
        }
        Ok(Step::Done { units: u64::from(written) })
    }
}

/// Reference counts to forget, one per node id occurrence.
pub fn forget_list(nodes: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut counts: HashMap<u64, u64> = HashMap::new();
    for n in nodes {
        *counts.entry(n).or_default() += 1;
    }
    let mut v: Vec<(u64, u64)> = counts.into_iter().collect();
    v.sort_unstable();
    v
}

/// A daemon session with the nodes of the share that every run uses.
pub struct FuseCtx<'t> {
    /// The session.
    pub session: Session,
    tree: &'t Tree,
    tree_node: u64,
    dir_nodes: Vec<u64>,
    work_node: u64,
    data_node: u64,
    kept: Option<Vec<u64>>,
}

impl<'t> FuseCtx<'t> {
    /// Looks up the tree's directories, the work and the data directories.
    pub fn new(session: Session, tree: &'t Tree) -> Result<Self, Error> {
        let c = session.client();
        let tree_node = c.lookup(abi::ROOT_ID, &tree.name)?.nodeid;
        let dir_nodes = (0..tree.dirs())
            .map(|i| Ok(c.lookup(tree_node, &tree.dir_name(i).to_string_lossy())?.nodeid))
            .collect::<Result<Vec<u64>, Error>>()?;
        let work_node = c.lookup(abi::ROOT_ID, paths::WORK)?.nodeid;
        let data_node = c.lookup(abi::ROOT_ID, paths::DATA)?.nodeid;
        Ok(FuseCtx { session, tree, tree_node, dir_nodes, work_node, data_node, kept: None })
    }

    /// The directories' node ids.
    pub fn dir_nodes(&self) -> &[u64] {
        &self.dir_nodes
    }

    fn timed<S: OpStream>(&self, depth: usize, streams: Vec<S>) -> Result<(Measurement, Vec<S>), Error> {
        let pid = self.session.daemon.pid();
        let before = CpuSample::read(pid)?;
        let (run, streams) = self.session.run(depth, streams)?;
        let after = CpuSample::read(pid)?;
        Ok((Measurement { run, cpu: after.since(&before) }, streams))
    }

    /// Forgets the nodes a lookup run kept for the getattr run.
    pub fn forget_kept(&mut self) -> Result<(), Error> {
        if let Some(nodes) = self.kept.take() {
            self.session.forget(&forget_list(nodes))?;
        }
        Ok(())
    }

    /// Looks up every file of the tree (untimed when `measure` is false).
    fn lookup_all(&self, queues: usize, depth: usize) -> Result<(Measurement, Vec<u64>), Error> {
        let streams = (0..queues).map(|q| LookupStream::new(self.tree, &self.dir_nodes, q, queues)).collect();
        let (m, streams) = self.timed(depth, streams)?;
        Ok((m, streams.into_iter().flat_map(|s| s.found).collect()))
    }

    /// Runs one case; `label` names what it creates in the share (unique per run).
    pub fn run_case(&mut self, case: Case, sizes: &Sizes, share: &Path, label: &str) -> Result<Measurement, Error> {
        let (q, d) = (case.queues, case.depth);
        if case.workload != Workload::Getattr {
            self.forget_kept()?;
        }
        let c = self.session.client();
        match case.workload {
            Workload::Lookup => {
                let (m, found) = self.lookup_all(q, d)?;
                self.kept = Some(found);
                Ok(m)
            }
            Workload::Getattr => {
                let nodes = match self.kept.take() {
                    Some(n) => n,
                    None => self.lookup_all(q, d)?.1,
                };
                let streams = (0..q).map(|i| GetattrStream::new(&nodes, i, q)).collect();
                let result = self.timed(d, streams);
                self.session.forget(&forget_list(nodes.iter().copied()))?;
                Ok(result?.0)
            }
            Workload::Readdirplus => {
                let mut dirs = Vec::new();
                for &node in &self.dir_nodes {
                    dirs.push((node, opendir(&c, node)?));
                }
                let streams = (0..q)
                    .map(|i| {
                        ReaddirplusStream::new(
                            share_of(dirs.len(), i, q).map(|k| dirs[k]).collect(),
                            d,
                            sizes.readdir_buf,
                        )
                    })
                    .collect();
                let result = self.timed(d, streams);
                for &(node, fh) in &dirs {
                    releasedir(&c, node, fh)?;
                }
                let (m, streams) = result?;
                self.session.forget(&forget_list(streams.into_iter().flat_map(|s| s.found)))?;
                Ok(m)
            }
            Workload::Create => {
                let host_dir = share.join(paths::WORK).join(label);
                std::fs::create_dir(&host_dir).ctx(|| format!("mkdir {}", host_dir.display()))?;
                let dir = c.lookup(self.work_node, label)?.nodeid;
                let streams = (0..q).map(|i| CreateStream::new(dir, sizes.create_files, i, q, d)).collect();
                let result = self.timed(d, streams);
                let mut nodes: Vec<u64> = vec![dir];
                if let Ok((_, streams)) = &result {
                    nodes.extend(streams.iter().flat_map(|s| s.found.iter().copied()));
                }
                self.session.forget(&forget_list(nodes))?;
                std::fs::remove_dir_all(&host_dir).ctx(|| format!("rm -r {}", host_dir.display()))?;
                Ok(result?.0)
            }
            Workload::Randread | Workload::Seqread => {
                let name = if case.workload == Workload::Randread { paths::RAND } else { paths::SEQ };
                let node = c.lookup(self.data_node, name)?.nodeid;
                let fh = c.open(node, libc::O_RDONLY as u32)?.fh;
                let streams = (0..q)
                    .map(|i| {
                        if case.workload == Workload::Randread {
                            ReadStream::new(
                                node,
                                fh,
                                SMALL_FILE,
                                random_offsets(sizes.rand_ops, sizes.rand_file_bytes, i, q),
                            )
                        } else {
                            let chunk = self.session.max_io();
                            ReadStream::new(node, fh, chunk, sequential_offsets(sizes.seq_bytes, chunk, i, q))
                        }
                    })
                    .collect();
                let result = self.timed(d, streams);
                c.release(node, fh)?;
                self.session.forget(&[(node, 1)])?;
                Ok(result?.0)
            }
            Workload::Seqwrite | Workload::Randwrite => {
                let seq = case.workload == Workload::Seqwrite;
                let name = format!("{label}.bin");
                let host_file = share.join(paths::WORK).join(&name);
                let bytes = if seq { sizes.seq_bytes } else { sizes.rand_file_bytes };
                drop(crate::share::prewritten_file(&host_file, bytes)?);
                let node = c.lookup(self.work_node, &name)?.nodeid;
                let fh = c.open(node, libc::O_WRONLY as u32)?.fh;
                let chunk = self.session.max_io();
                let streams = (0..q)
                    .map(|i| {
                        if seq {
                            WriteStream::new(node, fh, chunk, sequential_offsets(bytes, chunk, i, q))
                        } else {
                            WriteStream::new(node, fh, SMALL_FILE, random_offsets(sizes.rand_ops, bytes, i, q))
                        }
                    })
                    .collect();
                let result = self.timed(d, streams);
                c.release(node, fh)?;
                self.session.forget(&[(node, 1)])?;
                std::fs::remove_file(&host_file).ctx(|| format!("rm {}", host_file.display()))?;
                Ok(result?.0)
            }
        }
    }

    /// Forgets everything this context looked up; the session can then be dropped.
    pub fn close(mut self) -> Result<Session, Error> {
        self.forget_kept()?;
        let mut nodes: Vec<(u64, u64)> = self.dir_nodes.iter().map(|&n| (n, 1)).collect();
        nodes.extend([(self.tree_node, 1), (self.work_node, 1), (self.data_node, 1)]);
        self.session.forget(&nodes)?;
        Ok(self.session)
    }
}

fn opendir(c: &vhost_harness::FuseClient<'_>, node: u64) -> Result<u64, Error> {
    let o = abi::OpenIn { flags: (libc::O_RDONLY | libc::O_DIRECTORY) as u32, open_flags: 0 };
    let req = request(opcode::OPENDIR, c.next_unique(), node, &[o.as_bytes()]);
    Ok(c.call(&req, SMALL_REPLY)?.decode::<abi::OpenOut>()?.fh)
}

fn releasedir(c: &vhost_harness::FuseClient<'_>, node: u64, fh: u64) -> Result<(), Error> {
    let r = abi::ReleaseIn { fh, flags: (libc::O_RDONLY | libc::O_DIRECTORY) as u32, ..Default::default() };
    let req = request(opcode::RELEASEDIR, c.next_unique(), node, &[r.as_bytes()]);
    let _: Reply = c.call(&req, SMALL_REPLY)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_once() {
        let mut all: Vec<usize> = (0..3).flat_map(|q| share_of(10, q, 3)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn offsets_are_deterministic_and_in_range() {
        let a = random_offsets(100, 1 << 20, 0, 2);
        assert_eq!(a, random_offsets(100, 1 << 20, 0, 2));
        assert_eq!(a.len(), 50);
        assert!(a.iter().all(|&o| o % 4096 == 0 && o < 1 << 20));
        assert_ne!(a, random_offsets(100, 1 << 20, 1, 2));
        assert_eq!(sequential_offsets(4 << 20, 1 << 20, 1, 2), vec![1 << 20, 3 << 20]);
    }

    #[test]
    fn parses_direntplus_records() {
        let mut body = Vec::new();
        for (i, name) in [&b"."[..], b"..", b"file"].iter().enumerate() {
            let mut d = abi::DirentPlus::default();
            d.entry_out.nodeid = if i == 2 { 42 } else { 0 };
            d.dirent.off = i as u64 + 1;
            d.dirent.namelen = name.len() as u32;
            body.extend_from_slice(d.as_bytes());
            body.extend_from_slice(name);
            body.resize(body.len().next_multiple_of(8), 0);
        }
        let mut seen = Vec::new();
        let last = parse_direntplus(&body, |n, name| seen.push((n, name.to_vec()))).unwrap();
        assert_eq!(last, Some(3));
        assert_eq!(seen[2], (42, b"file".to_vec()));
        assert!(parse_direntplus(&body[..100], |_, _| {}).is_err());
        assert_eq!(forget_list([3, 1, 3]), vec![(1, 1), (3, 2)]);
    }
}
