//! The FUSE request engine for the daemons: a connected harness with
//! pre-allocated guest buffers, and a closed loop that keeps `depth`
//! requests in flight on each request queue, one thread per queue.
//!
//! A workload is an [`OpStream`] per queue: it writes the first request of
//! each operation, and on each reply either writes the next request of the
//! same operation (CREATE then WRITE then RELEASE) or ends the operation.
//! The engine measures each operation from its first submission to its last
//! reply.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use fuse_abi::{self as abi, opcode};
use vhost_harness::fuse::{FuseClient, IN_HEADER_SIZE, OUT_HEADER_SIZE};
use vhost_harness::{Harness, HarnessConfig, HIPRIO_QUEUE};
use vm_memory::GuestAddress;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::contenders::Daemon;
use crate::error::Error;

/// Largest request header and arguments a slot holds (names included).
const REQ_CAP: usize = 4096;
/// Largest reply of the small kind (entry, attributes, open...).
const REPLY_CAP: usize = 4096;
/// The bulk buffer of each slot: WRITE payload or READ/READDIRPLUS data.
pub const BULK_CAP: usize = 1 << 20;
/// Alignment of the bulk buffers: a page, as the page-cache pages a guest's
/// driver passes are (see bench/README.md, "Where the 1 MiB buffers lie").
const BULK_ALIGN: u64 = 4096;

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyShape {
    /// One writable buffer of this many bytes (header and body).
    Small(u32),
    /// The reply header in one buffer, then this many bytes of the slot's
    /// bulk buffer, as a guest puts page-cache pages after the header.
    Bulk(u32),
}

/// The request a stream writes for the engine to submit.
#[derive(Debug)]
pub struct RequestBuf {
    bytes: Vec<u8>,
    payload: u32,
    reply: ReplyShape,
    read_bulk: bool,
    op: &'static str,
    unique: u64,
}

impl RequestBuf {
    fn new(unique_base: u64) -> Self {
        RequestBuf {
            bytes: Vec::with_capacity(REQ_CAP),
            payload: 0,
            reply: ReplyShape::Small(OUT_HEADER_SIZE as u32),
            read_bulk: false,
            op: "",
            unique: unique_base,
        }
    }

    /// Sets the request: `opcode` on `nodeid` with the argument `parts`, the
    /// reply going to `reply`. No payload, and the bulk reply is not read back.
    pub fn set(&mut self, op: &'static str, opcode: u32, nodeid: u64, parts: &[&[u8]], reply: ReplyShape) {
        self.unique += 1;
        let body: usize = parts.iter().map(|p| p.len()).sum();
        let h = abi::InHeader {
            len: (IN_HEADER_SIZE + body) as u32,
            opcode,
            unique: self.unique,
            nodeid,
            uid: 0,
            gid: 0,
            pid: 1,
            total_extlen: 0,
            padding: 0,
        };
        self.bytes.clear();
        self.bytes.extend_from_slice(h.as_bytes());
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
        self.payload = 0;
        self.reply = reply;
        self.read_bulk = false;
        self.op = op;
    }

    /// Appends `n` bytes of the slot's bulk buffer as a second readable
    /// buffer (the WRITE payload); the header's length counts them.
    pub fn with_payload(&mut self, n: u32) {
        self.payload = n;
        let len = (self.bytes.len() as u32).saturating_add(n);
        self.bytes[..4].copy_from_slice(&len.to_le_bytes());
    }

    /// Asks for the bulk part of the reply to be read back (READDIRPLUS).
    pub fn read_bulk(&mut self) {
        self.read_bulk = true;
    }
}

/// A reply as a stream sees it.
#[derive(Debug)]
pub struct ReplyView<'a> {
    /// The request it answers.
    pub op: &'static str,
    /// Bytes the device wrote, header included.
    pub len: usize,
    /// The body: the small reply's body, or the bulk part when asked for.
    pub body: &'a [u8],
}

impl ReplyView<'_> {
    /// The body decoded as `T`.
    pub fn decode<T: FromBytes + KnownLayout + Immutable>(&self) -> Result<T, Error> {
        T::read_from_prefix(self.body).map(|(t, _)| t).map_err(|_| Error::BadReply {
            op: self.op,
            detail: format!("body of {} bytes, {} expected", self.body.len(), std::mem::size_of::<T>()),
        })
    }
}

/// What happened to an operation after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The stream wrote the next request of the same operation.
    More,
    /// The operation is complete; it counts `units` (entries, bytes, or 1).
    Done {
        /// What the operation counts for the rate.
        units: u64,
    },
}

/// One queue's share of a workload.
pub trait OpStream: Send {
    /// Writes the first request of the next operation for `slot`, or
    /// returns `false` when no operation is left for it (the slot then
    /// stays idle; the run ends when every slot is).
    fn start(&mut self, slot: usize, req: &mut RequestBuf) -> Result<bool, Error>;
    /// Takes the (successful) reply to `slot`'s last request.
    fn step(&mut self, slot: usize, reply: &ReplyView<'_>, req: &mut RequestBuf) -> Result<Step, Error>;
}

/// Guest buffers of one request in flight.
#[derive(Debug, Clone, Copy)]
struct Slot {
    req: u64,
    reply: u64,
    bulk: u64,
}

/// A daemon, the harness connected to it, and guest buffers for `depth`
/// requests in flight on each request queue.
pub struct Session {
    /// The harness (the VMM and guest driver).
    pub harness: Harness,
    /// The daemon (its pid for /proc).
    pub daemon: Daemon,
    /// The daemon's answer to FUSE_INIT.
    pub init: abi::InitOut,
    slots: Vec<Vec<Slot>>,
    completion_poll: Duration,
}

impl Session {
    /// Connects to `daemon` with `request_queues` request queues, sends
    /// FUSE_INIT and allocates `depth` slots per queue. Each front-end
    /// thread polls for a reply for up to `completion_poll` before it sleeps,
    /// in runs where every front-end thread and every daemon queue thread can
    /// have a CPU of its own (KVM, likewise, halt-polls only while no other
    /// task wants the CPU).
    pub fn connect(
        daemon: Daemon,
        request_queues: usize,
        depth: usize,
        completion_poll: Duration,
    ) -> Result<Session, Error> {
        let per_slot = REQ_CAP + REPLY_CAP + BULK_CAP + BULK_ALIGN as usize + 3 * 64;
        let memory_size = (request_queues * depth * per_slot + (32 << 20)).next_multiple_of(2 << 20);
        let cfg = HarnessConfig {
            num_queues: 1 + request_queues,
            queue_size: 256,
            memory_size,
            event_idx: true,
            timeout: Duration::from_secs(60),
            qemu11_shmem: false,
        };
        // The daemon creates its socket before it listens: retry briefly.
        let deadline = Instant::now() + Duration::from_secs(5);
        let harness = loop {
            match Harness::connect(daemon.socket(), cfg.clone()) {
                Ok(h) => break h,
                Err(vhost_harness::Error::Vhost(e)) if Instant::now() < deadline => {
                    log::debug!("connect: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(daemon.failure(&format!("vhost-user set-up failed: {e}"))),
            }
        };
        let init = FuseClient::new(&harness, 1).init().map_err(|e| daemon.failure(&format!("FUSE_INIT: {e}")))?;
        let mut slots = Vec::with_capacity(request_queues);
        for _ in 0..request_queues {
            let mut q = Vec::with_capacity(depth);
            for _ in 0..depth {
                q.push(Slot {
                    req: harness.alloc(REQ_CAP)?.0,
                    reply: harness.alloc(REPLY_CAP)?.0,
                    // At the same page offset whatever else the session
                    // allocated (the queue count changes the rings' size).
                    bulk: harness.alloc_aligned(BULK_CAP, BULK_ALIGN)?.0,
                });
            }
            slots.push(q);
        }
        // A non-zero payload in every bulk buffer.
        let pattern: Vec<u8> = (0..BULK_CAP).map(|i| (i % 251) as u8 | 1).collect();
        for s in slots.iter().flatten() {
            harness.write_guest(vm_addr(s.bulk), &pattern)?;
        }
        Ok(Session { harness, daemon, init, slots, completion_poll })
    }

    /// Request queues set up.
    pub fn request_queues(&self) -> usize {
        self.slots.len()
    }

    /// Slots per queue.
    pub fn max_depth(&self) -> usize {
        self.slots.first().map_or(0, Vec::len)
    }

    /// Largest READ/WRITE the daemon accepts (`max_write`, capped at the bulk buffer).
    pub fn max_io(&self) -> u32 {
        self.init.max_write.clamp(4096, BULK_CAP as u32)
    }

    /// A FUSE client on the first request queue, for untimed set-up requests.
    pub fn client(&self) -> FuseClient<'_> {
        FuseClient::new(&self.harness, 1)
    }

    /// Sends BATCH_FORGET for `nodes` (node id, lookup count), in batches, on
    /// the hiprio queue. As a guest does, it does not wait for one batch
    /// before it sends the next: up to `FORGETS_IN_FLIGHT` go out with one
    /// kick, then it waits for them.
    pub fn forget(&self, nodes: &[(u64, u64)]) -> Result<(), Error> {
        let requests: Vec<Vec<u8>> = nodes
            .chunks(512)
            .enumerate()
            .map(|(i, batch)| {
                let head = abi::BatchForgetIn { count: batch.len() as u32, dummy: 0 };
                let mut body = Vec::with_capacity(8 + 16 * batch.len());
                body.extend_from_slice(head.as_bytes());
                for &(nodeid, nlookup) in batch {
                    body.extend_from_slice(abi::ForgetOne { nodeid, nlookup }.as_bytes());
                }
                vhost_harness::fuse::request(opcode::BATCH_FORGET, (1 << 62) + i as u64, 0, &[&body])
            })
            .collect();
        for group in requests.chunks(FORGETS_IN_FLIGHT) {
            let mut addrs = Vec::with_capacity(group.len());
            let result = (|| {
                let mut chains = Vec::with_capacity(group.len());
                for req in group {
                    let addr = self.harness.alloc(req.len())?;
                    addrs.push(addr);
                    self.harness.write_guest(addr, req)?;
                    chains.push(vhost_harness::Chain {
                        readable: vec![(addr, req.len() as u32)],
                        writable: vec![],
                        indirect: false,
                    });
                }
                let tokens = self.harness.submit_all(HIPRIO_QUEUE, &chains)?;
                self.harness.wait_all(&tokens)
            })();
            for a in addrs {
                let _ = self.harness.free(a);
            }
            result?;
        }
        Ok(())
    }

    /// How long the front-end threads of a run on `queues` queues poll for
    /// replies: [`Session::connect`]'s `completion_poll` when each of them
    /// and each daemon queue thread has a CPU of its own, else zero.
    pub fn completion_poll_for(&self, queues: usize) -> Duration {
        if queues * 2 <= crate::procstat::nproc() {
            self.completion_poll
        } else {
            Duration::ZERO
        }
    }

    /// Runs one stream per queue (queue `i + 1` for `streams[i]`) with
    /// `depth` operations in flight on each; returns the measurement and the
    /// streams (which hold what the replies told).
    pub fn run<S: OpStream>(&self, depth: usize, mut streams: Vec<S>) -> Result<(RunResult, Vec<S>), Error> {
        if streams.len() > self.slots.len() || depth > self.max_depth() || depth == 0 {
            return Err(Error::Usage(format!(
                "{} queues at depth {depth} asked; the session has {} queues of {} slots",
                streams.len(),
                self.slots.len(),
                self.max_depth()
            )));
        }
        let poll = self.completion_poll_for(streams.len());
        let barrier = Barrier::new(streams.len());
        let results: Vec<Result<QueueResult, Error>> = std::thread::scope(|scope| {
            let handles: Vec<_> = streams
                .iter_mut()
                .enumerate()
                .map(|(i, stream)| {
                    let slots = &self.slots[i][..depth];
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        drive(&self.harness, i + 1, slots, stream, poll)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(Err(Error::Panic))).collect()
        });
        let mut total = RunResult::default();
        let mut start: Option<Instant> = None;
        let mut end: Option<Instant> = None;
        for r in results {
            let r = r?;
            total.ops += r.ops;
            total.units += r.units;
            total.driver_cpu += r.cpu;
            total.latencies.extend(r.latencies);
            start = Some(start.map_or(r.start, |s| s.min(r.start)));
            end = Some(end.map_or(r.end, |e| e.max(r.end)));
        }
        total.wall = match (start, end) {
            (Some(s), Some(e)) => e - s,
            _ => Duration::ZERO,
        };
        Ok((total, streams))
    }
}

fn vm_addr(a: u64) -> GuestAddress {
    GuestAddress(a)
}

/// BATCH_FORGETs [`Session::forget`] keeps in flight (well under a queue's size).
const FORGETS_IN_FLIGHT: usize = 128;

/// What a run measured.
#[derive(Debug, Default, Clone)]
pub struct RunResult {
    /// Operations completed.
    pub ops: u64,
    /// Units they count (entries, bytes, or one per operation).
    pub units: u64,
    /// Latency of each operation, in nanoseconds.
    pub latencies: Vec<u64>,
    /// From the first submission to the last reply, over all queues.
    pub wall: Duration,
    /// CPU time of the front end's own threads (the harness playing the guest).
    pub driver_cpu: Duration,
}

struct QueueResult {
    cpu: Duration,
    ops: u64,
    units: u64,
    latencies: Vec<u64>,
    start: Instant,
    end: Instant,
}

/// The closed loop of one queue.
fn drive<S: OpStream>(
    harness: &Harness,
    queue: usize,
    slots: &[Slot],
    stream: &mut S,
    completion_poll: Duration,
) -> Result<QueueResult, Error> {
    let mut pipe = harness.pipeline(queue)?;
    pipe.poll_for_completions(completion_poll);
    let mut reqs: Vec<RequestBuf> =
        (0..slots.len()).map(|i| RequestBuf::new(((queue as u64) << 48) | ((i as u64) << 32))).collect();
    let mut started = vec![Instant::now(); slots.len()];
    let mut by_head: Vec<usize> = vec![usize::MAX; usize::from(u16::MAX) + 1];
    let mut latencies = Vec::new();
    let (mut ops, mut units) = (0u64, 0u64);
    let mut done = Vec::with_capacity(slots.len());
    let mut returned: Vec<(usize, u32)> = Vec::with_capacity(slots.len());
    let mut reply_buf = vec![0u8; REPLY_CAP.max(BULK_CAP)];
    let cpu0 = crate::procstat::thread_cpu_time();
    let start = Instant::now();
    for s in 0..slots.len() {
        if !stream.start(s, &mut reqs[s])? {
            continue;
        }
        started[s] = Instant::now();
        let head = submit(&mut pipe, harness, &slots[s], &reqs[s])?;
        by_head[usize::from(head)] = s;
    }
    while pipe.in_flight() > 0 {
        done.clear();
        pipe.wait_any(&mut done)?;
        // Map every returned chain to its slot before submitting anything:
        // a new chain may reuse the head of one returned in the same batch.
        returned.clear();
        returned.extend(done.iter().map(|&(token, used)| (by_head[usize::from(token.head())], used)));
        for &(s, used) in &returned {
            let slot =
                slots.get(s).ok_or_else(|| Error::BadReply { op: "?", detail: "unknown chain returned".into() })?;
            let req = &mut reqs[s];
            let body_len = read_reply(harness, slot, req, used as usize, &mut reply_buf)?;
            let view = ReplyView { op: req.op, len: used as usize, body: &reply_buf[..body_len] };
            let step = stream.step(s, &view, req)?;
            let next = match step {
                Step::More => true,
                Step::Done { units: u } => {
                    latencies.push(started[s].elapsed().as_nanos() as u64);
                    ops += 1;
                    units += u;
                    let go = stream.start(s, req)?;
                    if go {
                        started[s] = Instant::now();
                    }
                    go
                }
            };
            if next {
                let head = submit(&mut pipe, harness, slot, req)?;
                by_head[usize::from(head)] = s;
            }
        }
    }
    let end = Instant::now();
    Ok(QueueResult { cpu: crate::procstat::thread_cpu_time().saturating_sub(cpu0), ops, units, latencies, start, end })
}

fn submit(
    pipe: &mut vhost_harness::batch::Pipeline<'_>,
    h: &Harness,
    slot: &Slot,
    req: &RequestBuf,
) -> Result<u16, Error> {
    if req.bytes.len() > REQ_CAP || req.payload as usize > BULK_CAP {
        return Err(Error::Usage(format!("{} request of {} bytes does not fit a slot", req.op, req.bytes.len())));
    }
    h.write_guest(vm_addr(slot.req), &req.bytes)?;
    let both = [(slot.req, req.bytes.len() as u32), (slot.bulk, req.payload)];
    let readable = if req.payload > 0 { &both[..] } else { &both[..1] };
    let token = match req.reply {
        ReplyShape::Small(n) => pipe.push_buffers(readable, &[(slot.reply, n.min(REPLY_CAP as u32))])?,
        ReplyShape::Bulk(n) => {
            pipe.push_buffers(readable, &[(slot.reply, OUT_HEADER_SIZE as u32), (slot.bulk, n.min(BULK_CAP as u32))])?
        }
    };
    Ok(token.head())
}

/// Reads the reply of `slot` into `buf`; checks its header; returns the body length in `buf`.
fn read_reply(h: &Harness, slot: &Slot, req: &RequestBuf, used: usize, buf: &mut [u8]) -> Result<usize, Error> {
    let op = req.op;
    let cap = match req.reply {
        ReplyShape::Small(n) => n as usize,
        ReplyShape::Bulk(n) => OUT_HEADER_SIZE + n as usize,
    };
    if used < OUT_HEADER_SIZE || used > cap {
        return Err(Error::BadReply { op, detail: format!("device wrote {used} bytes into a {cap}-byte reply") });
    }
    let first = match req.reply {
        ReplyShape::Small(_) => used,
        ReplyShape::Bulk(_) => OUT_HEADER_SIZE,
    };
    let head = h.read_guest(vm_addr(slot.reply), first)?;
    let (header, small_body) = abi::OutHeader::read_from_prefix(&head)
        .map_err(|_| Error::BadReply { op, detail: "no reply header".into() })?;
    if header.error != 0 {
        return Err(Error::Fuse { op, errno: -header.error });
    }
    if header.len as usize != used {
        return Err(Error::BadReply { op, detail: format!("header says {} bytes, device wrote {used}", header.len) });
    }
    if header.unique != req.unique {
        return Err(Error::BadReply { op, detail: format!("unique {} for request {}", header.unique, req.unique) });
    }
    match req.reply {
        ReplyShape::Small(_) => {
            buf[..small_body.len()].copy_from_slice(small_body);
            Ok(small_body.len())
        }
        ReplyShape::Bulk(_) if req.read_bulk => {
            let n = used - OUT_HEADER_SIZE;
            let data = h.read_guest(vm_addr(slot.bulk), n)?;
            buf[..n].copy_from_slice(&data);
            Ok(n)
        }
        ReplyShape::Bulk(_) => Ok(0),
    }
}
