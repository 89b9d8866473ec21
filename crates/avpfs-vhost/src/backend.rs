//! [`VhostUserFsBackend`]: the virtio-fs device model behind the vhost-user
//! protocol.
//!
//! The device has one high-priority queue (index 0: FORGET, INTERRUPT) and
//! `num_request_queues` request queues (1..). vhost-user-backend runs one
//! epoll worker thread per queue ([`VhostUserBackend::queues_per_thread`]),
//! so worker thread `i` serves queue `i` and the request queues are served in
//! parallel. Each worker drains its queue in batches: it pops every available
//! chain, hands each to the FUSE [`Server`], puts the replies in the used ring,
//! and signals the guest once per batch (when EVENT_IDX says the guest wants
//! it).
//!
//! With EVENT_IDX, a worker that has drained its queue keeps watching the
//! available ring for a short, adaptive window ([`DeviceConfig::poll_max`],
//! like QEMU's `poll-max-ns` for its own I/O threads) before it re-enables
//! notifications and sleeps: a guest that sends its next request within the
//! window needs no kick and the worker no wake-up. The window doubles when
//! a kick comes sooner than `poll_max` after the worker went to sleep and
//! halves when the sleep was longer, so an idle or sparse queue stops
//! spinning.
//!
//! The hiprio queue's worker never polls: nobody waits for a FORGET. It
//! batches instead ([`DeviceConfig::forget_batch`]): after a kick it leaves
//! notifications off and sleeps for the batching delay, then serves every
//! FORGET that gathered and signals the guest once, and goes on so while
//! FORGETs keep coming. A guest evicting inodes one by one (an `rm -r`)
//! then kicks once and takes one interrupt per delay instead of one of each
//! per FORGET.
//!
//! A batch with several large READs, popped while fewer workers are busy
//! than the host has CPUs, is shared with the worker's helper thread
//! ([`crate::bulk_helper`]): the two copy into guest memory at once, and the
//! worker signals the guest when both are done. A large READ from a regular
//! file in a batch without another is split in two halves instead, read at
//! once by the worker and its helper
//! ([`ChainWriter::with_read_split`](crate::descriptor_chain::ChainWriter::with_read_split)).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use avpfs_server::{FileSystem, Handled, Server, Writer};
use fuse_abi::OutHeader;
use log::{debug, error, info, warn};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::Backend;
use vhost_user_backend::{VhostUserBackend, VringMutex, VringState, VringT};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryLoadGuard, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier};
use zerocopy::IntoBytes;

use crate::chain_kind::{classify, request_header, walk_all, ChainKind, WalkedChain};
use crate::descriptor_chain::{walk_chain, ChainReader, ChainWriter, SplitChain};
use crate::poll_window::POLL_WINDOW;
use crate::signal_pacer::SignalPacer;

/// Guest memory as the backend maps it (no dirty-page bitmap: no migration yet).
pub type GuestMemory = GuestMemoryMmap<()>;
/// The guest memory shared between the vhost-user thread and the workers.
pub type GuestMemoryShared = GuestMemoryAtomic<GuestMemory>;

/// Length of the `tag` field of the virtio-fs configuration space.
pub const TAG_LEN: usize = 36;
/// Index of the high-priority queue.
pub const HIPRIO_QUEUE: usize = 0;
/// Most queues one device can have: vhost-user-backend assigns queues to
/// worker threads with a 64-bit mask.
pub const MAX_QUEUES: usize = 64;
/// How long a reset waits for requests in progress before it drops the nodes anyway.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(5);

/// Configuration errors of the backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tag is empty or longer than [`TAG_LEN`] bytes.
    #[error("the tag must be 1 to {TAG_LEN} bytes of UTF-8, not {0}")]
    InvalidTag(usize),
    /// Zero request queues, or more than `MAX_QUEUES - 1`.
    #[error("the number of request queues must be 1 to {max}, not {0}", max = MAX_QUEUES - 1)]
    InvalidQueueCount(usize),
    /// The queue size is not a power of two in 1..=32768.
    #[error("the queue size must be a power of two up to 32768, not {0}")]
    InvalidQueueSize(u16),
}

/// Settings of one virtio-fs device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The mount tag (`mount -t virtiofs TAG /mnt`), 1 to 36 bytes.
    pub tag: String,
    /// Number of request queues (the hiprio queue comes on top).
    pub num_request_queues: usize,
    /// Largest queue size the front end may set.
    pub queue_size: u16,
    /// Longest time a worker watches its drained queue for the next request
    /// before it sleeps (EVENT_IDX only; zero: never).
    pub poll_max: Duration,
    /// Let a worker hand half of a batch's large READs, or half of a large
    /// READ alone, to a helper thread while CPUs are idle (see
    /// [`crate::bulk_helper`]).
    pub bulk_helper: bool,
    /// How long the hiprio queue's worker lets FORGETs gather after a kick
    /// before it serves them and signals the guest once (EVENT_IDX only;
    /// zero: serve each kick at once).
    pub forget_batch: Duration,
}

impl DeviceConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), Error> {
        if self.tag.is_empty() || self.tag.len() > TAG_LEN {
            return Err(Error::InvalidTag(self.tag.len()));
        }
        if self.num_request_queues == 0 || self.num_request_queues >= MAX_QUEUES {
            return Err(Error::InvalidQueueCount(self.num_request_queues));
        }
        if !self.queue_size.is_power_of_two() {
            return Err(Error::InvalidQueueSize(self.queue_size));
        }
        Ok(())
    }

    /// The device configuration space (VIRTIO 1.2, 5.11.4): the tag padded
    /// with NUL bytes, then `num_request_queues` as le32.
    pub fn config_space(&self) -> [u8; TAG_LEN + 4] {
        let mut space = [0u8; TAG_LEN + 4];
        let tag = self.tag.as_bytes();
        let n = tag.len().min(TAG_LEN);
        space[..n].copy_from_slice(&tag[..n]);
        let queues = u32::try_from(self.num_request_queues).unwrap_or(u32::MAX);
        space[TAG_LEN..].copy_from_slice(&queues.to_le_bytes());
        space
    }
}

/// Counts the batches being processed, so that a reset can wait for them.
///
/// The end of a batch wakes only when a reset is waiting: `Condvar::notify_all`
/// makes a futex system call whether or not anyone waits, and a batch ends
/// after every reply at low depth.
#[derive(Debug, Default)]
struct InFlight {
    state: Mutex<InFlightState>,
    idle: Condvar,
}

#[derive(Debug, Default)]
struct InFlightState {
    /// Batches in progress.
    batches: usize,
    /// Threads in [`InFlight::wait_idle`].
    waiters: usize,
}

impl InFlight {
    fn state(&self) -> std::sync::MutexGuard<'_, InFlightState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Batches in progress now.
    fn busy(&self) -> usize {
        self.state().batches
    }

    fn enter(&self) -> InFlightGuard<'_> {
        self.state().batches += 1;
        InFlightGuard(self)
    }

    /// Waits until no batch is in progress; false on timeout.
    fn wait_idle(&self, timeout: Duration) -> bool {
        let mut state = self.state();
        state.waiters += 1;
        let (mut state, result) =
            self.idle.wait_timeout_while(state, timeout, |s| s.batches > 0).unwrap_or_else(|e| e.into_inner());
        state.waiters -= 1;
        !result.timed_out()
    }
}

struct InFlightGuard<'a>(&'a InFlight);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.batches = state.batches.saturating_sub(1);
        if state.batches == 0 && state.waiters > 0 {
            self.0.idle.notify_all();
        }
    }
}

/// The vhost-user-fs device backend for one front-end connection.
///
/// Create one per connection ([`crate::serve`] does): the guest memory and the
/// negotiated features belong to the connection, the [`Server`] (and with it
/// the file system) outlives it.
pub struct VhostUserFsBackend<F: FileSystem> {
    server: Arc<Server<F>>,
    config: DeviceConfig,
    mem: RwLock<Option<GuestMemoryShared>>,
    event_idx: AtomicBool,
    in_flight: InFlight,
    /// The back-end request channel (for later use: DAX mappings, notifications).
    backend_req: Mutex<Option<Backend>>,
    /// Bumped on every reset, so late replies of lock waits are dropped.
    generation: Arc<std::sync::atomic::AtomicU64>,
    /// CPUs this process may run on.
    cpus: usize,
}

impl<F: FileSystem + 'static> VhostUserFsBackend<F> {
    /// A backend that serves `server` with the device settings `config`.
    pub fn new(server: Arc<Server<F>>, config: DeviceConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(VhostUserFsBackend {
            server,
            config,
            mem: RwLock::new(None),
            event_idx: AtomicBool::new(false),
            in_flight: InFlight::default(),
            backend_req: Mutex::new(None),
            generation: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    /// The FUSE server.
    pub fn server(&self) -> &Arc<Server<F>> {
        &self.server
    }

    /// Waits (bounded) for the requests in progress, then drops every node
    /// and handle the guest held.
    pub fn reset_server(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if !self.in_flight.wait_idle(QUIESCE_TIMEOUT) {
            warn!("reset: requests still in progress after {QUIESCE_TIMEOUT:?}; resetting anyway");
        }
        self.server.reset();
    }

    /// Drains queue `queue` until it is empty (with EVENT_IDX: until no new
    /// chain arrived while notifications were being re-enabled). Each pass
    /// takes every available chain, answers them, and signals the guest once
    /// (and within long batches, every [`SIGNAL_INTERVAL`](crate::signal_pacer::SIGNAL_INTERVAL)).
    fn process_queue(&self, queue: usize, vring: &VringMutex<GuestMemoryShared>) {
        let event_idx = self.event_idx.load(Ordering::Acquire);
        if queue == HIPRIO_QUEUE && event_idx && !self.config.forget_batch.is_zero() {
            self.process_forgets_in_batches(vring);
            return;
        }
        let _busy = self.in_flight.enter();
        let Some(atomic) = self.mem.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            warn!("queue {queue}: kicked before any memory table was set");
            return;
        };
        // The hiprio queue carries FORGETs and INTERRUPTs, which the guest
        // does not wait for: its worker never spins (a second spinning
        // thread would take a CPU from the guest's vCPUs).
        let poll_max = if event_idx && queue != HIPRIO_QUEUE { self.config.poll_max } else { Duration::ZERO };
        POLL_WINDOW.with(|w| w.woken(poll_max));
        loop {
            if event_idx {
                if let Err(e) = vring.disable_notification() {
                    warn!("queue {queue}: cannot disable notifications: {e}");
                }
            }
            let (heads, desc_table, size) = pop_available(queue, &mut vring.get_mut(), &atomic.memory());
            // One memory snapshot per batch, taken after the chains were
            // popped: a region the front end added before publishing a chain
            // is in it, and the mappings stay valid until the batch is done.
            let mem = atomic.memory();
            if !heads.is_empty() {
                debug!("queue {queue}: batch of {}", heads.len());
                self.serve_batch(queue, vring, &atomic, &mem, desc_table, size, heads);
                notify(queue, vring);
            }
            if !event_idx {
                break;
            }
            // Notifications are still off: watch the ring for a while.
            if POLL_WINDOW.with(|w| w.poll(|| has_available(vring, &mem))) {
                continue;
            }
            match vring.enable_notification() {
                // More chains arrived while notifications were off.
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    warn!("queue {queue}: cannot enable notifications: {e}");
                    break;
                }
            }
        }
    }

    /// The hiprio queue's worker after a kick (EVENT_IDX): with
    /// notifications off, sleep [`DeviceConfig::forget_batch`], then serve
    /// what gathered and signal once; repeat until a delay passes without a
    /// FORGET, then turn notifications back on. The sleep is not counted as
    /// a batch in progress (a reset does not wait for it, and the bulk
    /// helper's count of busy workers leaves it out).
    fn process_forgets_in_batches(&self, vring: &VringMutex<GuestMemoryShared>) {
        let queue = HIPRIO_QUEUE;
        let Some(atomic) = self.mem.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            warn!("queue {queue}: kicked before any memory table was set");
            return;
        };
        loop {
            if let Err(e) = vring.disable_notification() {
                warn!("queue {queue}: cannot disable notifications: {e}");
            }
            std::thread::sleep(self.config.forget_batch);
            let serving = {
                let state = vring.get_ref();
                state.get_queue().ready() && state.is_enabled()
            };
            if !serving {
                // Stopped or reset while the FORGETs gathered: the chains
                // stay in the ring for whoever serves the queue next.
                return;
            }
            let served = {
                let _busy = self.in_flight.enter();
                let (heads, desc_table, size) = pop_available(queue, &mut vring.get_mut(), &atomic.memory());
                let mem = atomic.memory();
                let served = heads.len();
                if served > 0 {
                    debug!("queue {queue}: batch of {served}");
                    let chains = walk_all(&mem, desc_table, size, heads);
                    serve_and_return(&self.server, queue, vring, &mem, &chains, false);
                    notify(queue, vring);
                }
                served
            };
            if served > 0 {
                continue;
            }
            match vring.enable_notification() {
                // A FORGET came while notifications were being turned on.
                Ok(true) => continue,
                Ok(false) => return,
                Err(e) => {
                    warn!("queue {queue}: cannot enable notifications: {e}");
                    return;
                }
            }
        }
    }

    /// Serves the chains of one batch and puts them in the used ring. Lock
    /// waits go to threads of their own. While fewer workers are busy than
    /// there are CPUs, the worker's helper thread takes a share of the
    /// large READs: every other bulk request of a batch that has two or
    /// more, else the second half of each large read from a regular file
    /// (see [`ChainWriter::with_read_split`]), so that the copies into
    /// guest memory run on two CPUs. (Only READs: WRITEs to one host file
    /// take its inode lock in turn, so a helper would mostly wait.)
    #[allow(clippy::too_many_arguments)]
    fn serve_batch(
        &self,
        queue: usize,
        vring: &VringMutex<GuestMemoryShared>,
        atomic: &GuestMemoryShared,
        mem: &GuestMemoryLoadGuard<GuestMemory>,
        desc_table: GuestAddress,
        size: u16,
        heads: Vec<u16>,
    ) {
        // Asked only of batches with a bulk request (it takes the lock of
        // the in-flight count).
        let helper_free = || self.config.bulk_helper && self.in_flight.busy() < self.cpus;
        if let [head] = heads[..] {
            // The common case at low depth: nothing to allocate.
            let chain = [WalkedChain::walk(mem, desc_table, size, head)];
            let kind = if queue == HIPRIO_QUEUE { ChainKind::Plain } else { classify(mem, &chain[0]) };
            if kind == ChainKind::Blocking {
                let [chain] = chain;
                self.process_blocking_chain(queue, vring, atomic, desc_table, size, chain);
            } else {
                serve_and_return(&self.server, queue, vring, mem, &chain, kind == ChainKind::Bulk && helper_free());
            }
            return;
        }
        let chains = walk_all(mem, desc_table, size, heads);
        let kinds: Vec<ChainKind> = if queue == HIPRIO_QUEUE {
            vec![ChainKind::Plain; chains.len()]
        } else {
            chains.iter().map(|chain| classify(mem, chain)).collect()
        };
        let bulk = kinds.iter().filter(|&&k| k == ChainKind::Bulk).count();
        let helper = bulk > 0 && helper_free();
        let split = helper && bulk >= 2;
        let mut mine = Vec::with_capacity(chains.len());
        let mut theirs = Vec::new();
        let mut nth_bulk = 0;
        for (chain, kind) in chains.into_iter().zip(kinds) {
            match kind {
                ChainKind::Blocking => self.process_blocking_chain(queue, vring, atomic, desc_table, size, chain),
                ChainKind::Bulk if split && nth_bulk % 2 == 1 => {
                    theirs.push(chain);
                    nth_bulk += 1;
                }
                ChainKind::Bulk => {
                    mine.push(chain);
                    nth_bulk += 1;
                }
                ChainKind::Plain => mine.push(chain),
            }
        }
        if theirs.is_empty() {
            // At most one bulk request: its read may be split.
            serve_and_return(&self.server, queue, vring, mem, &mine, helper);
            return;
        }
        // Both halves keep their replies' lengths; the worker returns every
        // chain once both are done, so the guest sees the batch end at once
        // (as its one signal tells it) and the two threads do not take turns
        // at the used ring.
        let their_replies = Arc::new(Mutex::new(Vec::with_capacity(theirs.len())));
        let (server, thread_atomic, out) = (self.server.clone(), atomic.clone(), their_replies.clone());
        let job = Box::new(move || {
            let mem = thread_atomic.memory();
            let replies: Vec<(u16, u32)> =
                theirs.iter().map(|chain| (chain.head, serve_chain(&server, queue, &mem, chain, false))).collect();
            *out.lock().unwrap_or_else(|e| e.into_inner()) = replies;
        });
        let mut replies = Vec::with_capacity(mine.len());
        crate::bulk_helper::run_split(
            || crate::bulk_helper::thread_name(queue),
            job,
            || {
                replies
                    .extend(mine.iter().map(|chain| (chain.head, serve_chain(&self.server, queue, mem, chain, false))))
            },
        );
        replies.append(&mut their_replies.lock().unwrap_or_else(|e| e.into_inner()));
        for (head, len) in replies {
            if let Err(e) = vring.add_used(head, len) {
                warn!("queue {queue}: cannot return descriptor {head}: {e}");
            }
        }
    }

    /// Serves a request that may block for long (SETLKW) on a thread of its
    /// own, so that the queue keeps being served: the lock holder's unlock
    /// may be the very next request on this queue. The reply is put in the
    /// used ring when the request ends, unless the device was reset since.
    fn process_blocking_chain(
        &self,
        queue: usize,
        vring: &VringMutex<GuestMemoryShared>,
        atomic: &GuestMemoryShared,
        desc_table: GuestAddress,
        size: u16,
        chain: WalkedChain,
    ) {
        let head = chain.head;
        let server = self.server.clone();
        let thread_vring = vring.clone();
        let thread_atomic = atomic.clone();
        let generation = self.generation.clone();
        let started = generation.load(Ordering::Acquire);
        let spawned = std::thread::Builder::new().name(format!("vq{queue}-setlkw")).spawn(move || {
            let mem = thread_atomic.memory();
            let len = serve_chain(&server, queue, &mem, &chain, false);
            if generation.load(Ordering::Acquire) != started {
                debug!("queue {queue}: device reset while a lock wait was in progress; reply dropped");
                return;
            }
            if let Err(e) = thread_vring.add_used(head, len) {
                warn!("queue {queue}: cannot return descriptor {head}: {e}");
            }
            notify(queue, &thread_vring);
        });
        if let Err(e) = spawned {
            // No thread: answer EAGAIN-like failure rather than block the queue
            // (the walked chain went with the thread's closure: walk it again).
            warn!("queue {queue}: cannot start a thread for a lock wait: {e}");
            let mem = atomic.memory();
            let len = match walk_chain(&*mem, desc_table, size, head) {
                Ok(chain) => error_reply(&mem, &chain, libc::ENOLCK),
                Err(bad) => error_reply(&mem, &bad.valid, libc::ENOLCK),
            };
            if let Err(e) = vring.add_used(head, len) {
                warn!("queue {queue}: cannot return descriptor {head}: {e}");
            }
        }
    }
}

/// Serves `chains` in order, puts each in the used ring, and signals the
/// guest (if it wants to know) whenever [`SignalPacer`] says so (every
/// [`SIGNAL_INTERVAL`](crate::signal_pacer::SIGNAL_INTERVAL) since the
/// start or the last signal), so that in a long batch it sees the first
/// replies early. The caller signals the rest at the end of the batch. On
/// the hiprio queue nothing is signalled mid-batch: its FORGETs have no
/// reply a guest waits for, and a batch of them is to cost one interrupt.
/// `split_reads`: large reads may be split with the worker's helper thread.
fn serve_and_return<F: FileSystem>(
    server: &Server<F>,
    queue: usize,
    vring: &VringMutex<GuestMemoryShared>,
    mem: &GuestMemoryLoadGuard<GuestMemory>,
    chains: &[WalkedChain],
    split_reads: bool,
) {
    let mut pacer = SignalPacer::new(Instant::now());
    let paced = queue != HIPRIO_QUEUE;
    for (n, chain) in chains.iter().enumerate() {
        let len = serve_chain(server, queue, mem, chain, split_reads);
        if let Err(e) = vring.add_used(chain.head, len) {
            warn!("queue {queue}: cannot return descriptor {}: {e}", chain.head);
        }
        if paced && n + 1 < chains.len() && pacer.returned(Instant::now) {
            notify(queue, vring);
        }
    }
}

/// Serves one chain with `server`; returns the number of bytes written to
/// its writable part. `split_reads`: a large read may be split with the
/// calling worker's helper thread ([`ChainWriter::with_read_split`]).
fn serve_chain<F: FileSystem>(
    server: &Server<F>,
    queue: usize,
    mem: &GuestMemoryLoadGuard<GuestMemory>,
    walked: &WalkedChain,
    split_reads: bool,
) -> u32 {
    {
        let head = walked.head;
        let chain = match &walked.chain {
            Ok(chain) => chain,
            Err(bad) => {
                avpfs_server::guest_warn!("queue {queue}: bad descriptor chain at head {head}: {}", bad.error);
                return error_reply(mem, &bad.valid, libc::EIO);
            }
        };
        let (mut r, mut w) = match (ChainReader::new(&**mem, chain), ChainWriter::new(&**mem, chain)) {
            (Ok(r), Ok(w)) => (r, w.with_read_split(split_reads.then_some(queue))),
            (Err(e), _) | (_, Err(e)) => {
                avpfs_server::guest_warn!("queue {queue}: descriptor chain at head {head}: {e}");
                return 0;
            }
        };
        match server.handle_message(&mut r, &mut w) {
            Ok(Handled::Reply(len)) => u32::try_from(len.min(w.bytes_written())).unwrap_or(0),
            Ok(Handled::NoReply) => 0,
            Err(avpfs_server::Error::ShortHeader(n)) => {
                avpfs_server::guest_warn!("queue {queue}: request of {n} bytes has no complete FUSE header");
                error_reply(mem, chain, libc::EIO)
            }
            Err(e) => {
                avpfs_server::guest_warn!("queue {queue}: {e}");
                0
            }
        }
    }
}

/// Whether the driver has published chains this worker has not popped yet.
fn has_available(vring: &VringMutex<GuestMemoryShared>, mem: &GuestMemoryLoadGuard<GuestMemory>) -> bool {
    let state = vring.get_ref();
    let q = state.get_queue();
    q.avail_idx(&**mem, std::sync::atomic::Ordering::Acquire).is_ok_and(|idx| idx.0 != q.next_avail())
}

/// Pops every available chain head; returns them with the descriptor table
/// address and the queue size.
fn pop_available(
    queue: usize,
    state: &mut VringState<GuestMemoryShared>,
    mem: &GuestMemoryLoadGuard<GuestMemory>,
) -> (Vec<u16>, GuestAddress, u16) {
    let q = state.get_queue_mut();
    let desc_table = GuestAddress(q.desc_table());
    let size = q.size();
    let heads = match q.iter(&**mem) {
        Ok(iter) => iter.map(|chain| chain.head_index()).collect(),
        Err(e) => {
            warn!("queue {queue}: cannot read the available ring: {e}");
            Vec::new()
        }
    };
    (heads, desc_table, size)
}

/// Signals the guest if it wants to know about the new used entries
/// (always without EVENT_IDX; with it, when `used_event` was passed).
fn notify(queue: usize, vring: &VringMutex<GuestMemoryShared>) {
    match vring.needs_notification() {
        Ok(false) => {}
        Ok(true) => signal(queue, vring),
        Err(e) => {
            warn!("queue {queue}: cannot read used_event ({e}); signalling");
            signal(queue, vring);
        }
    }
}

fn signal(queue: usize, vring: &VringMutex<GuestMemoryShared>) {
    if let Err(e) = vring.signal_used_queue() {
        warn!("queue {queue}: cannot signal the guest: {e}");
    }
}

/// Writes an error reply into the writable part of a chain the server could
/// not take, when it has room for a reply header. The `unique` comes from the
/// request header when the readable part holds one (0 otherwise: the guest
/// matches replies by chain, not by `unique`). Returns the used length.
fn error_reply(mem: &GuestMemoryLoadGuard<GuestMemory>, chain: &SplitChain, errno: i32) -> u32 {
    let unique = request_header(mem, chain).map_or(0, |h| h.unique);
    let Ok(mut w) = ChainWriter::<()>::from_buffers(&**mem, &chain.writable) else {
        return 0;
    };
    let len = std::mem::size_of::<OutHeader>() as u32;
    let out = OutHeader { len, error: -errno, unique };
    match w.write_all(out.as_bytes()) {
        Ok(()) => len,
        Err(_) => 0,
    }
}

impl<F: FileSystem + 'static> VhostUserBackend for VhostUserFsBackend<F> {
    type Bitmap = ();
    type Vring = VringMutex<GuestMemoryShared>;

    fn num_queues(&self) -> usize {
        self.config.num_request_queues + 1
    }

    fn max_queue_size(&self) -> usize {
        usize::from(self.config.queue_size)
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&self, features: u64) {
        info!("front end acked virtio features {features:#x}");
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::BACKEND_REQ
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
            | VhostUserProtocolFeatures::RESET_DEVICE
    }

    fn reset_device(&self) {
        info!("device reset: dropping the guest's nodes and handles");
        self.reset_server();
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Release);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let space = self.config.config_space();
        let (offset, size) = (offset as usize, size as usize);
        if offset >= space.len() {
            // An empty answer tells the front end the request failed.
            return Vec::new();
        }
        let mut out: Vec<u8> = space[offset..].iter().copied().take(size).collect();
        out.resize(size, 0);
        out
    }

    fn set_config(&self, _offset: u32, _buf: &[u8]) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::PermissionDenied, "the virtio-fs configuration space is read-only"))
    }

    fn update_memory(&self, mem: GuestMemoryShared) -> io::Result<()> {
        *self.mem.write().unwrap_or_else(|e| e.into_inner()) = Some(mem);
        Ok(())
    }

    fn set_backend_req_fd(&self, backend: Backend) {
        *self.backend_req.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend);
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        // One worker thread per queue: thread `i` serves queue `i`.
        (0..self.num_queues()).map(|i| 1u64 << i).collect()
    }

    fn exit_event(&self, thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        match new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC) {
            Ok(pair) => Some(pair),
            Err(e) => {
                error!("worker {thread_index}: cannot create its exit event ({e}); it will outlive the connection");
                None
            }
        }
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[Self::Vring],
        thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            warn!("queue {thread_id}: unexpected event set {evset:?}");
            return Ok(());
        }
        // Each worker owns exactly one vring, so the event index is 0 and the
        // queue index is the thread index.
        match vrings.get(usize::from(device_event)) {
            Some(vring) => self.process_queue(thread_id, vring),
            None => warn!("queue {thread_id}: event {device_event} for no vring"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tag: &str, queues: usize, size: u16) -> DeviceConfig {
        DeviceConfig {
            poll_max: Duration::ZERO,
            bulk_helper: true,
            forget_batch: Duration::ZERO,
            tag: tag.into(),
            num_request_queues: queues,
            queue_size: size,
        }
    }

    #[test]
    fn a_reset_waiting_for_batches_wakes_when_the_last_one_ends() {
        let in_flight = &InFlight::default();
        std::thread::scope(|s| {
            let first = in_flight.enter();
            let second = in_flight.enter();
            assert_eq!(in_flight.busy(), 2);
            // A missed wake-up would return only at the timeout.
            let timeout = Duration::from_secs(60);
            let waiter = s.spawn(move || {
                let started = Instant::now();
                (in_flight.wait_idle(timeout), started.elapsed())
            });
            // The waiter registers under the lock before it sleeps.
            while in_flight.state().waiters == 0 {
                std::thread::yield_now();
            }
            drop(first);
            assert_eq!(in_flight.busy(), 1);
            drop(second);
            let (idle, waited) = waiter.join().unwrap();
            assert!(idle);
            assert!(waited < timeout, "the end of the last batch must wake the reset, not its timeout");
        });
        assert_eq!(in_flight.state().waiters, 0);
        assert_eq!(in_flight.busy(), 0);
    }

    #[test]
    fn a_reset_gives_up_waiting_on_a_batch_that_does_not_end() {
        let in_flight = InFlight::default();
        let _busy = in_flight.enter();
        assert!(!in_flight.wait_idle(Duration::from_millis(20)));
        assert_eq!(in_flight.state().waiters, 0);
    }

    #[test]
    fn validates_settings() {
        assert!(config("fs", 1, 1024).validate().is_ok());
        assert!(matches!(config("", 1, 1024).validate(), Err(Error::InvalidTag(0))));
        assert!(matches!(config(&"x".repeat(37), 1, 1024).validate(), Err(Error::InvalidTag(37))));
        assert!(config(&"x".repeat(36), 1, 1024).validate().is_ok());
        assert!(matches!(config("fs", 0, 1024).validate(), Err(Error::InvalidQueueCount(0))));
        assert!(matches!(config("fs", 64, 1024).validate(), Err(Error::InvalidQueueCount(64))));
        assert!(matches!(config("fs", 1, 1000).validate(), Err(Error::InvalidQueueSize(1000))));
        assert!(matches!(config("fs", 1, 0).validate(), Err(Error::InvalidQueueSize(0))));
    }

    #[test]
    fn config_space_layout() {
        let space = config("myfs", 3, 1024).config_space();
        assert_eq!(&space[..4], b"myfs");
        assert!(space[4..36].iter().all(|&b| b == 0));
        assert_eq!(&space[36..], &3u32.to_le_bytes());
    }
}
