//! [`VhostUserFsBackend`]: the virtio-fs device model behind the vhost-user
//! protocol.
//!
//! The device has one high-priority queue (index 0: FORGET, INTERRUPT) and
//! `num_request_queues` request queues (1..). vhost-user-backend runs one
//! epoll worker thread per queue ([`VhostUserBackend::queues_per_thread`]),
//! so worker thread `i` serves queue `i` and the request queues are served in
//! parallel. Each worker drains its queue in batches: it pops every available
//! chain, hands each to the FUSE [`Server`], puts the replies in the used ring,
//! and signals the guest at the end of the batch and, in a long batch, once
//! 50 µs have passed since the last signal (when EVENT_IDX says the guest
//! wants it).
//!
//! What each worker does after a kick is the crate-private `queue_worker`
//! module's: batches, signal pacing (`signal_pacer`), adaptive polling of a
//! drained queue ([`DeviceConfig::poll_max`], `poll_window`), FORGET
//! batching on the hiprio queue ([`DeviceConfig::forget_batch`]), lock
//! waits on threads of their own, and the bulk helper thread
//! ([`crate::bulk_helper`]). This module holds the device settings, the
//! count of batches in progress a reset waits for, and the
//! [`VhostUserBackend`] implementation that hands each kick to its queue's
//! worker.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use avpfs_server::{DaxWindow, FileSystem, Server};
use log::{error, info, warn};
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserVirtioFeatures,
};
use vhost::vhost_user::Backend;
use vhost_user_backend::bitmap::BitmapMmapRegion;
use vhost_user_backend::{VhostUserBackend, VringMutex};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier};

use crate::device_state::DeviceState;
use crate::queue_worker::QueueWorker;
use crate::shmem::ShmemWindow;
use crate::virtqueue::Virtqueue;

/// Guest memory as the backend maps it, with the dirty-page bitmap of live
/// migration: empty until the front end sends `SET_LOG_BASE`, then every
/// write through vm-memory marks its pages in the front end's log (and the
/// zero-copy path marks its own, see `guest_io`).
pub type GuestMemory = GuestMemoryMmap<BitmapMmapRegion>;
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
    /// The DAX window is not a power of two of at least the page size.
    #[error("the DAX window must be a power of two of at least {align} bytes, not {0}", align = avpfs_server::DAX_ALIGNMENT)]
    InvalidDaxWindow(u64),
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
    /// The session the workers serve, for log lines.
    pub label: Option<Arc<avpfs_server::log_context::SessionLabel>>,
    /// Size of the DAX window (shared-memory region 0) in bytes; zero: none.
    pub dax_window: u64,
    /// How the front end maps what the back end asks it to map.
    pub dax_front_end: avpfs_server::DaxFrontEnd,
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
        if self.dax_window != 0 && (!self.dax_window.is_power_of_two() || self.dax_window < avpfs_server::DAX_ALIGNMENT)
        {
            return Err(Error::InvalidDaxWindow(self.dax_window));
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
pub(crate) struct InFlight {
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
    pub(crate) fn busy(&self) -> usize {
        self.state().batches
    }

    /// Counts a batch in progress until the guard is dropped.
    pub(crate) fn enter(&self) -> InFlightGuard<'_> {
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

/// A batch in progress, counted in its [`InFlight`] until dropped.
pub(crate) struct InFlightGuard<'a>(&'a InFlight);

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
    /// The back-end request channel (for later use: notifications).
    backend_req: Mutex<Option<Backend>>,
    /// The DAX window lent to the server, when [`DeviceConfig::dax_window`] is set.
    dax: Option<Arc<ShmemWindow>>,
    /// Bumped on every reset, so late replies of lock waits are dropped.
    generation: Arc<AtomicU64>,
    /// CPUs this process may run on.
    cpus: usize,
    /// The live-migration state transfer in progress.
    device_state: DeviceState,
}

impl<F: FileSystem + 'static> VhostUserFsBackend<F> {
    /// A backend that serves `server` with the device settings `config`.
    pub fn new(server: Arc<Server<F>>, config: DeviceConfig) -> Result<Self, Error> {
        config.validate()?;
        let dax = (config.dax_window > 0).then(|| Arc::new(ShmemWindow::new(config.dax_window, config.dax_front_end)));
        server.set_dax_window(dax.clone().map(|w| w as Arc<dyn DaxWindow>));
        Ok(VhostUserFsBackend {
            server,
            config,
            mem: RwLock::new(None),
            event_idx: AtomicBool::new(false),
            in_flight: InFlight::default(),
            backend_req: Mutex::new(None),
            dax,
            generation: Arc::new(AtomicU64::new(0)),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            device_state: DeviceState::default(),
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

    /// The connection ended: takes the DAX window back from the server
    /// (after [`Self::reset_server`] dropped its mappings), so that nothing
    /// is mapped through a closed channel.
    pub fn release_dax_window(&self) {
        if self.dax.is_some() {
            self.server.set_dax_window(None);
        }
    }

    /// Serves queue `queue` after a kick: the hiprio queue gathers FORGETs
    /// in batches when EVENT_IDX lets it ([`DeviceConfig::forget_batch`]),
    /// every other queue is drained at once (see [`crate::queue_worker`]).
    /// A drain counts as a batch in progress for [`Self::reset_server`] from
    /// before the worker takes the guest memory.
    fn process_queue(&self, queue: usize, vring: &VringMutex<GuestMemoryShared>) {
        let event_idx = self.event_idx.load(Ordering::Acquire);
        if queue == HIPRIO_QUEUE && event_idx && !self.config.forget_batch.is_zero() {
            if let Some(worker) = self.queue_worker(queue, vring, event_idx) {
                worker.process_forgets_in_batches();
            }
            return;
        }
        let _busy = self.in_flight.enter();
        if let Some(worker) = self.queue_worker(queue, vring, event_idx) {
            worker.process_queue();
        }
    }

    /// The worker of queue `queue` for one kick; `None` (logged) before the
    /// front end set a memory table.
    fn queue_worker<'a>(
        &'a self,
        queue: usize,
        vring: &'a VringMutex<GuestMemoryShared>,
        event_idx: bool,
    ) -> Option<QueueWorker<'a, F>> {
        let Some(guest_memory) = self.mem.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            warn!("queue {queue}: kicked before any memory table was set");
            return None;
        };
        Some(QueueWorker {
            queue: Virtqueue { index: queue, vring },
            guest_memory,
            server: &self.server,
            config: &self.config,
            in_flight: &self.in_flight,
            generation: &self.generation,
            cpus: self.cpus,
            event_idx,
        })
    }
}

impl<F: FileSystem + 'static> VhostUserBackend for VhostUserFsBackend<F> {
    type Bitmap = BitmapMmapRegion;
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
            // Live migration: the front end may ask for dirty-page logging.
            | VhostUserVirtioFeatures::LOG_ALL.bits()
    }

    fn acked_features(&self, features: u64) {
        info!("front end acked virtio features {features:#x}");
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        let shmem =
            if self.dax.is_some() { VhostUserProtocolFeatures::SHMEM } else { VhostUserProtocolFeatures::empty() };
        shmem
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::BACKEND_REQ
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
            | VhostUserProtocolFeatures::RESET_DEVICE
            | VhostUserProtocolFeatures::LOG_SHMFD
            | VhostUserProtocolFeatures::DEVICE_STATE
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

    fn set_device_state_fd(
        &self,
        direction: VhostTransferStateDirection,
        phase: VhostTransferStatePhase,
        file: std::fs::File,
    ) -> io::Result<Option<std::fs::File>> {
        avpfs_server::log_context::enter(self.config.label.as_ref());
        info!("migration: device state transfer {direction:?} in phase {phase:?}");
        let quiesce = || {
            if !self.in_flight.wait_idle(QUIESCE_TIMEOUT) {
                warn!("migration: requests still in progress after {QUIESCE_TIMEOUT:?}; saving anyway");
            }
        };
        self.device_state.start(&self.server, direction, phase, file, self.config.label.clone(), quiesce)?;
        // The front end's pipe carries the bytes: no channel of our own.
        Ok(None)
    }

    fn check_device_state(&self) -> io::Result<()> {
        self.device_state.check()
    }

    fn get_shmem_config(&self) -> io::Result<VhostUserShMemConfig> {
        match &self.dax {
            Some(w) => Ok(VhostUserShMemConfig::new(1, &[w.size()])),
            None => Ok(VhostUserShMemConfig::default()),
        }
    }

    fn set_backend_req_fd(&self, backend: Backend) {
        if let Some(w) = &self.dax {
            w.set_backend(backend.clone());
        }
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
        avpfs_server::log_context::enter(self.config.label.as_ref());
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
    use std::time::Instant;

    use super::*;

    fn config(tag: &str, queues: usize, size: u16) -> DeviceConfig {
        DeviceConfig {
            poll_max: Duration::ZERO,
            bulk_helper: true,
            forget_batch: Duration::ZERO,
            tag: tag.into(),
            num_request_queues: queues,
            queue_size: size,
            label: None,
            dax_window: 0,
            dax_front_end: Default::default(),
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
