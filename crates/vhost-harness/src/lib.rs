//! vhost-harness: an in-process vhost-user front end for tests.
//!
//! It plays both the VMM and the guest's virtio-fs driver against a
//! vhost-user-fs backend listening on a unix socket:
//!
//! - guest memory is a memfd mapped here and shared with the backend
//!   (`SET_MEM_TABLE`; more regions with `ADD_MEM_REG`/`REM_MEM_REG`);
//! - the real message sequence is sent with `vhost`'s [`Frontend`]
//!   (`GET_FEATURES`, `SET_OWNER`, `GET_PROTOCOL_FEATURES`, ..., one
//!   `SET_VRING_*` series per queue, `SET_VRING_ENABLE`), with `REPLY_ACK`
//!   so that every setting is confirmed before the next;
//! - split virtqueues are laid out in guest memory ([`queue::SplitQueue`])
//!   and driven as a guest driver does, EVENT_IDX included: descriptor chains
//!   in, a kick when the device asks for one, the call eventfd and the used
//!   ring out.
//!
//! [`migration`] drives live migration's side of the protocol: the
//! dirty-page log and the device state.
//!
//! [`Harness::request`] sends one request and returns the reply bytes;
//! [`Harness::submit`], [`Harness::submit_raw`] and [`Harness::wait`] build
//! any chain, malformed ones included; [`fuse`] builds FUSE requests.
//!
//! ```no_run
//! use vhost_harness::{FuseClient, Harness};
//!
//! # fn main() -> Result<(), vhost_harness::Error> {
//! // The hiprio queue and one request queue.
//! let h = Harness::start("/tmp/avpfs.sock", 2)?;
//! let fuse = FuseClient::new(&h, 1);
//! fuse.init()?;
//! let entry = fuse.lookup(fuse_abi::ROOT_ID, "hello.txt")?;
//! let open = fuse.open(entry.nodeid, libc::O_RDONLY as u32)?;
//! let data = fuse.read(entry.nodeid, open.fh, 0, 4096)?;
//! # let _ = data;
//! h.disconnect();
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod batch;
pub mod dax;
pub mod fuse;
pub mod memory;
pub mod migration;
pub mod queue;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use avpfs_sys::poll::{poll, PollFd};
use log::debug;
use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserHeaderFlag, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use fuse::FuseClient;
pub use migration::StateError;
pub use queue::Desc;

/// Index of the high-priority queue of a virtio-fs device.
pub const HIPRIO_QUEUE: usize = 0;
/// `VRING_DESC_F_NEXT` as the descriptor's `flags` type.
pub const F_NEXT: u16 = VRING_DESC_F_NEXT as u16;
/// `VRING_DESC_F_WRITE` as the descriptor's `flags` type.
pub const F_WRITE: u16 = VRING_DESC_F_WRITE as u16;
/// `VRING_DESC_F_INDIRECT` as the descriptor's `flags` type.
pub const F_INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

/// A request put on a queue by [`Harness::submit_request`], its reply to come.
#[derive(Debug, Clone, Copy)]
pub struct Submitted {
    /// The chain's token.
    pub token: Token,
    reply: GuestAddress,
}

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A vhost-user message failed.
    #[error("vhost-user: {0}")]
    Vhost(#[from] vhost::Error),
    /// Guest memory management failed.
    #[error(transparent)]
    Memory(#[from] memory::Error),
    /// Reading or writing guest memory failed.
    #[error("guest memory access: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
    /// The queue driver failed.
    #[error(transparent)]
    Queue(#[from] queue::Error),
    /// An eventfd or poll failed.
    #[error("eventfd: {0}")]
    Io(#[from] std::io::Error),
    /// The backend did not answer in time.
    #[error("no used buffer on queue {queue} after {timeout:?}")]
    Timeout {
        /// The queue.
        queue: usize,
        /// How long we waited.
        timeout: Duration,
    },
    /// A queue index past the device's queues.
    #[error("no queue {0}")]
    NoQueue(usize),
    /// The backend offers something the harness cannot work with.
    #[error("backend: {0}")]
    Backend(String),
    /// The reply is not a well-formed FUSE reply.
    #[error("bad reply: {0}")]
    BadReply(String),
    /// The FUSE reply carries this errno.
    #[error("FUSE error {0}")]
    Fuse(i32),
}

/// How the harness sets up the device.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// Queues to set up, the hiprio queue included (at most what the backend offers).
    pub num_queues: usize,
    /// Entries per queue (a power of two).
    pub queue_size: u16,
    /// Size of the first guest memory region, at guest address 0.
    pub memory_size: usize,
    /// Negotiate VIRTIO_RING_F_EVENT_IDX when the backend offers it.
    pub event_idx: bool,
    /// How long to wait for a used buffer.
    pub timeout: Duration,
    /// Answer SHMEM_MAP as QEMU 11.1 does: every mapping shared and
    /// writable (a read-only descriptor fails with EACCES), none longer
    /// than the file ([`dax::ShmemRequest::Refused`] is recorded for
    /// each); else as mmap(2) maps.
    pub qemu11_shmem: bool,
}

impl Default for HarnessConfig {
    fn default() -> Self {
        HarnessConfig {
            num_queues: 2,
            queue_size: 256,
            memory_size: 64 << 20,
            event_idx: true,
            timeout: Duration::from_secs(10),
            qemu11_shmem: false,
        }
    }
}

/// How [`Harness::request_with`] lays out a chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// Split the request and the reply buffer into descriptors of at most
    /// this many bytes, each a separate allocation (`None`: one each).
    pub max_segment: Option<usize>,
    /// Put the chain in an indirect descriptor table.
    pub indirect: bool,
    /// Allocate the buffers inside this guest address range.
    pub within: Option<(u64, u64)>,
}

/// The buffers of a chain: device-readable ones first, then device-writable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// Device-readable buffers (address, length).
    pub readable: Vec<(GuestAddress, u32)>,
    /// Device-writable buffers (address, length).
    pub writable: Vec<(GuestAddress, u32)>,
    /// Put the chain in an indirect table.
    pub indirect: bool,
}

/// A chain made available, to [`Harness::wait`] for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    queue: usize,
    head: u16,
}

struct Queue {
    driver: Mutex<queue::SplitQueue>,
    kick: EventFd,
    call: EventFd,
    /// Kicks written to `kick`.
    kicks: AtomicU64,
    /// Signals read from `call` (an eventfd counts the writes between reads).
    signals: AtomicU64,
}

impl Queue {
    /// Kicks the device.
    fn kick(&self) -> Result<(), Error> {
        self.kick.write(1)?;
        self.kicks.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits (up to `timeout`; zero: only looks) for the device to signal,
    /// and counts the signals; true if it signalled.
    fn wait_signal(&self, timeout: Duration) -> Result<bool, Error> {
        let n = wait_readable(&self.call, timeout)?;
        self.signals.fetch_add(n, Ordering::Relaxed);
        Ok(n > 0)
    }
}

/// How often the driver and the device notified each other on one queue,
/// from [`Harness::notifications`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notifications {
    /// Kicks the driver sent (it kicks only when the device asked for it).
    pub kicks: u64,
    /// Signals (used-buffer notifications, the guest's interrupts) the device sent.
    pub signals: u64,
}

/// A memory region added at run time.
#[derive(Debug, Clone, Copy)]
struct AddedRegion {
    gpa: u64,
    size: u64,
}

/// The front end: a vhost-user connection, guest memory and virtqueues.
pub struct Harness {
    frontend: Mutex<Frontend>,
    memory: RwLock<Arc<GuestMemoryMmap>>,
    alloc: Mutex<memory::Allocator>,
    queues: Vec<Queue>,
    added: Mutex<Vec<AddedRegion>>,
    acked_features: u64,
    protocol_features: VhostUserProtocolFeatures,
    backend_queues: u64,
    config_space: Vec<u8>,
    timeout: Duration,
    _backend_channel: Option<UnixStream>,
    shmem_sizes: Vec<u64>,
    dax: Option<Arc<dax::DaxFrontEnd>>,
    /// The dirty-page log, once [`Harness::start_dirty_log`] set it.
    dirty_log: Mutex<Option<migration::DirtyLog>>,
}

/// Length of the virtio-fs configuration space: tag[36] and num_request_queues.
const FS_CONFIG_LEN: u32 = 40;

impl Harness {
    /// Connects to the backend at `socket` and sets up `num_queues` queues
    /// (the hiprio queue and `num_queues - 1` request queues) with the default
    /// settings.
    pub fn start(socket: impl AsRef<Path>, num_queues: usize) -> Result<Self, Error> {
        Self::connect(socket, HarnessConfig { num_queues, ..Default::default() })
    }

    /// Connects to the backend at `socket` and sets the device up as QEMU does.
    pub fn connect(socket: impl AsRef<Path>, cfg: HarnessConfig) -> Result<Self, Error> {
        if cfg.num_queues == 0 || !cfg.queue_size.is_power_of_two() {
            return Err(Error::Backend(format!("bad harness config {cfg:?}")));
        }
        let mut fe = Frontend::connect(socket, cfg.num_queues as u64)?;
        // With REPLY_ACK every setting is acknowledged before the next one.
        fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);

        fe.set_owner()?;
        let features = fe.get_features()?;
        let protocol = fe.get_protocol_features()?;
        let wanted = VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::BACKEND_REQ
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
            | VhostUserProtocolFeatures::RESET_DEVICE
            | VhostUserProtocolFeatures::SHMEM
            | VhostUserProtocolFeatures::LOG_SHMFD
            | VhostUserProtocolFeatures::DEVICE_STATE;
        let protocol = protocol & wanted;
        fe.set_protocol_features(protocol)?;
        // With SHMEM, the regions the back end asks for; the first is the
        // DAX window, which the harness maps for real.
        let shmem_sizes = if protocol.contains(VhostUserProtocolFeatures::SHMEM) {
            let c = fe.get_shmem_config()?;
            let n = (c.nregions as usize).min(c.memory_sizes.len());
            c.memory_sizes[..n].to_vec()
        } else {
            Vec::new()
        };
        // The back-end request channel, as QEMU opens it: served on a thread
        // of its own when there is a window, else left unread.
        let mut dax = None;
        let backend_channel = match shmem_sizes.first() {
            Some(&size) if size > 0 && protocol.contains(VhostUserProtocolFeatures::BACKEND_REQ) => {
                let (front, mut handler) = dax::handler(size, cfg.qemu11_shmem)?;
                handler.set_reply_ack_flag(protocol.contains(VhostUserProtocolFeatures::REPLY_ACK));
                fe.set_backend_request_fd(&handler.get_tx_raw_fd())?;
                dax = Some(front);
                // Detached: it ends when the back end closes the channel.
                drop(dax::DaxFrontEnd::serve(handler));
                None
            }
            _ if protocol.contains(VhostUserProtocolFeatures::BACKEND_REQ) => {
                let (ours, theirs) = UnixStream::pair()?;
                fe.set_backend_request_fd(&theirs)?;
                Some(ours)
            }
            _ => None,
        };
        let backend_queues = if protocol.contains(VhostUserProtocolFeatures::MQ) { fe.get_queue_num()? } else { 1 };
        if (cfg.num_queues as u64) > backend_queues {
            return Err(Error::Backend(format!("{} queues wanted, {backend_queues} offered", cfg.num_queues)));
        }
        let config_space = if protocol.contains(VhostUserProtocolFeatures::CONFIG) {
            let buf = vec![0u8; FS_CONFIG_LEN as usize];
            fe.get_config(0, FS_CONFIG_LEN, VhostUserConfigFlags::empty(), &buf)?.1
        } else {
            Vec::new()
        };
        let mut acked = features;
        if !cfg.event_idx {
            acked &= !(1 << VIRTIO_RING_F_EVENT_IDX);
        }
        fe.set_features(acked)?;
        let event_idx = acked & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;

        // Guest memory: one memfd region at 0, shared with the backend.
        let region = memory::memfd_region(GuestAddress(0), cfg.memory_size)?;
        let mem = GuestMemoryMmap::from_regions(vec![region]).map_err(|e| Error::Backend(e.to_string()))?;
        let mut alloc = memory::Allocator::default();
        alloc.add_range(0x1000, cfg.memory_size as u64 - 0x1000);
        let regions: Vec<_> = mem.iter().map(VhostUserMemoryRegionInfo::from_guest_region).collect::<Result<_, _>>()?;
        fe.set_mem_table(&regions)?;

        let mut queues = Vec::new();
        for index in 0..cfg.num_queues {
            let (d, a, u) = queue::ring_sizes(cfg.queue_size);
            let desc = alloc.alloc(d as usize, None)?;
            let avail = alloc.alloc(a as usize, None)?;
            let used = alloc.alloc(u as usize, None)?;
            let driver = queue::SplitQueue::new(cfg.queue_size, desc, avail, used, event_idx);
            driver.clear(&mem)?;
            let host = |g: GuestAddress| mem.get_host_address(g).map(|p| p as u64);
            let kick = EventFd::new(EFD_NONBLOCK)?;
            let call = EventFd::new(EFD_NONBLOCK)?;
            fe.set_vring_num(index, cfg.queue_size)?;
            fe.set_vring_base(index, 0)?;
            fe.set_vring_addr(
                index,
                &VringConfigData {
                    queue_max_size: cfg.queue_size,
                    queue_size: cfg.queue_size,
                    flags: 0,
                    desc_table_addr: host(desc)?,
                    used_ring_addr: host(used)?,
                    avail_ring_addr: host(avail)?,
                    log_addr: None,
                },
            )?;
            fe.set_vring_kick(index, &kick)?;
            fe.set_vring_call(index, &call)?;
            queues.push(Queue {
                driver: Mutex::new(driver),
                kick,
                call,
                kicks: AtomicU64::new(0),
                signals: AtomicU64::new(0),
            });
        }
        for index in 0..cfg.num_queues {
            fe.set_vring_enable(index, true)?;
        }
        debug!("harness: {} queues of {} set up, features {acked:#x}", cfg.num_queues, cfg.queue_size);
        Ok(Harness {
            frontend: Mutex::new(fe),
            memory: RwLock::new(Arc::new(mem)),
            alloc: Mutex::new(alloc),
            queues,
            added: Mutex::new(Vec::new()),
            acked_features: acked,
            protocol_features: protocol,
            backend_queues,
            config_space,
            timeout: cfg.timeout,
            _backend_channel: backend_channel,
            shmem_sizes,
            dax,
            dirty_log: Mutex::new(None),
        })
    }

    /// Number of queues set up (the hiprio queue included).
    pub fn num_queues(&self) -> usize {
        self.queues.len()
    }

    /// Number of queues the backend offers (`GET_QUEUE_NUM`).
    pub fn backend_queues(&self) -> u64 {
        self.backend_queues
    }

    /// The virtio features acked with `SET_FEATURES`.
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    /// The protocol features acked with `SET_PROTOCOL_FEATURES`.
    pub fn protocol_features(&self) -> VhostUserProtocolFeatures {
        self.protocol_features
    }

    /// The device configuration space read with `GET_CONFIG` (empty without CONFIG).
    pub fn config_space(&self) -> &[u8] {
        &self.config_space
    }

    /// The mount tag from the configuration space.
    pub fn tag(&self) -> String {
        let tag = self.config_space.get(..36).unwrap_or(&[]);
        let end = tag.iter().position(|&b| b == 0).unwrap_or(tag.len());
        String::from_utf8_lossy(&tag[..end]).into_owned()
    }

    /// `num_request_queues` from the configuration space.
    pub fn num_request_queues(&self) -> Option<u32> {
        let b = self.config_space.get(36..40)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn mem(&self) -> Arc<GuestMemoryMmap> {
        self.memory.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn queue(&self, index: usize) -> Result<&Queue, Error> {
        self.queues.get(index).ok_or(Error::NoQueue(index))
    }

    /// The kicks and signals exchanged on `queue` since the connection was
    /// set up (signals not yet waited for included).
    pub fn notifications(&self, queue: usize) -> Result<Notifications, Error> {
        let q = self.queue(queue)?;
        q.wait_signal(Duration::ZERO)?;
        Ok(Notifications { kicks: q.kicks.load(Ordering::Relaxed), signals: q.signals.load(Ordering::Relaxed) })
    }

    /// Allocates `len` bytes of guest memory (64-byte aligned).
    pub fn alloc(&self, len: usize) -> Result<GuestAddress, Error> {
        Ok(self.alloc.lock().unwrap_or_else(|e| e.into_inner()).alloc(len, None)?)
    }

    /// Allocates `len` bytes at a multiple of `align` (rounded up to a power
    /// of two of at least 64 bytes), as a guest's page-cache pages are page
    /// aligned.
    pub fn alloc_aligned(&self, len: usize, align: u64) -> Result<GuestAddress, Error> {
        Ok(self.alloc.lock().unwrap_or_else(|e| e.into_inner()).alloc_aligned(len, align, None)?)
    }

    /// Allocates `len` bytes inside the guest range `[lo, hi)`.
    pub fn alloc_within(&self, len: usize, lo: u64, hi: u64) -> Result<GuestAddress, Error> {
        Ok(self.alloc.lock().unwrap_or_else(|e| e.into_inner()).alloc(len, Some((lo, hi)))?)
    }

    /// Frees an allocation.
    pub fn free(&self, addr: GuestAddress) -> Result<(), Error> {
        Ok(self.alloc.lock().unwrap_or_else(|e| e.into_inner()).free(addr)?)
    }

    /// Writes `data` to guest memory at `addr`.
    pub fn write_guest(&self, addr: GuestAddress, data: &[u8]) -> Result<(), Error> {
        Ok(self.mem().write_slice(data, addr)?)
    }

    /// Reads `len` bytes of guest memory at `addr`.
    pub fn read_guest(&self, addr: GuestAddress, len: usize) -> Result<Vec<u8>, Error> {
        let mut v = vec![0u8; len];
        self.mem().read_slice(&mut v, addr)?;
        Ok(v)
    }

    /// Adds a memfd region of `size` bytes at guest address `gpa` and tells
    /// the backend (`ADD_MEM_REG`). Its memory becomes allocatable.
    pub fn add_memory_region(&self, gpa: u64, size: usize) -> Result<(), Error> {
        let region = memory::memfd_region(GuestAddress(gpa), size)?;
        let info = VhostUserMemoryRegionInfo::from_guest_region(&region)?;
        let new = memory::insert_region(&self.mem(), region)?;
        self.frontend.lock().unwrap_or_else(|e| e.into_inner()).add_mem_region(&info)?;
        *self.memory.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        self.alloc.lock().unwrap_or_else(|e| e.into_inner()).add_range(gpa, size as u64);
        self.added.lock().unwrap_or_else(|e| e.into_inner()).push(AddedRegion { gpa, size: size as u64 });
        Ok(())
    }

    /// Removes a region added with [`add_memory_region`](Self::add_memory_region)
    /// (`REM_MEM_REG`). Allocations inside it are forgotten.
    pub fn remove_memory_region(&self, gpa: u64) -> Result<(), Error> {
        let mut added = self.added.lock().unwrap_or_else(|e| e.into_inner());
        let pos = added.iter().position(|r| r.gpa == gpa).ok_or(Error::Backend(format!("no region at {gpa:#x}")))?;
        let r = added[pos];
        let mem = self.mem();
        let region = mem.find_region(GuestAddress(gpa)).ok_or(Error::Backend(format!("no region at {gpa:#x}")))?;
        let info = VhostUserMemoryRegionInfo::from_guest_region(region)?;
        self.frontend.lock().unwrap_or_else(|e| e.into_inner()).remove_mem_region(&info)?;
        let (new, _) = mem.remove_region(GuestAddress(gpa), r.size).map_err(|e| Error::Backend(e.to_string()))?;
        *self.memory.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        self.alloc.lock().unwrap_or_else(|e| e.into_inner()).remove_range(gpa, r.size);
        added.remove(pos);
        Ok(())
    }

    /// Makes a chain of the given buffers available on `queue` and kicks the
    /// device if it asked for it.
    pub fn submit(&self, queue: usize, chain: &Chain) -> Result<Token, Error> {
        let descs: Vec<Desc> = chain
            .readable
            .iter()
            .map(|&(a, l)| (a, l, 0))
            .chain(chain.writable.iter().map(|&(a, l)| (a, l, F_WRITE)))
            .enumerate()
            .map(|(i, (a, len, flags))| Desc { addr: a.0, len, flags: flags | F_NEXT, next: i as u16 + 1 })
            .collect();
        let mut descs = descs;
        if let Some(last) = descs.last_mut() {
            last.flags &= !F_NEXT;
            last.next = 0;
        }
        if !chain.indirect {
            return self.submit_raw(queue, &descs);
        }
        // The chain goes to a table in guest memory; the ring gets one
        // descriptor pointing to it. (The table is leaked until the harness
        // goes away: tests make few indirect chains.)
        let table = self.alloc(16 * descs.len().max(1))?;
        let mem = self.mem();
        for (i, d) in descs.iter().enumerate() {
            mem.write_obj(Descriptor::new(d.addr, d.len, d.flags, d.next), GuestAddress(table.0 + 16 * i as u64))?;
        }
        let len = 16 * descs.len() as u32;
        self.submit_raw(queue, &[Desc { addr: table.0, len, flags: F_INDIRECT, next: 0 }])
    }

    /// Writes `descs` to consecutive descriptor slots (each `next` is an index
    /// into `descs`, see [`Desc`]), makes the first one available on `queue`
    /// and kicks the device if it asked for it. Nothing is checked: this is
    /// how malformed chains are sent.
    pub fn submit_raw(&self, queue: usize, descs: &[Desc]) -> Result<Token, Error> {
        let q = self.queue(queue)?;
        let mem = self.mem();
        let mut driver = q.driver.lock().unwrap_or_else(|e| e.into_inner());
        let head = driver.place(&mem, descs)?;
        if driver.publish(&mem, head)? {
            q.kick()?;
        }
        Ok(Token { queue, head })
    }

    /// Puts `request` (one readable buffer) and room for a reply of
    /// `reply_capacity` bytes on `queue` without waiting: for a request
    /// that may block in the device (a SETLKW). [`Harness::reply_within`]
    /// collects the reply.
    pub fn submit_request(&self, queue: usize, request: &[u8], reply_capacity: usize) -> Result<Submitted, Error> {
        let inp = self.alloc(request.len())?;
        self.write_guest(inp, request)?;
        let reply = self.alloc(reply_capacity)?;
        let chain = Chain {
            readable: vec![(inp, request.len() as u32)],
            writable: vec![(reply, reply_capacity as u32)],
            indirect: false,
        };
        Ok(Submitted { token: self.submit(queue, &chain)?, reply })
    }

    /// The reply to a [`Harness::submit_request`], or `None` when it has not
    /// come within `timeout` (it can be waited for again).
    pub fn reply_within(&self, submitted: &Submitted, timeout: Duration) -> Result<Option<Vec<u8>>, Error> {
        match self.wait_timeout(submitted.token, timeout)? {
            Some(len) => Ok(Some(self.read_guest(submitted.reply, len as usize)?)),
            None => Ok(None),
        }
    }

    /// Waits until the device returns the chain of `token`; returns the
    /// number of bytes it wrote.
    pub fn wait(&self, token: Token) -> Result<u32, Error> {
        match self.wait_until(token, Instant::now() + self.timeout)? {
            Some(len) => Ok(len),
            None => Err(Error::Timeout { queue: token.queue, timeout: self.timeout }),
        }
    }

    /// Like [`Harness::wait`], but gives up after `timeout` with `None`
    /// (the chain stays outstanding and can be waited for again).
    pub fn wait_timeout(&self, token: Token, timeout: Duration) -> Result<Option<u32>, Error> {
        self.wait_until(token, Instant::now() + timeout)
    }

    fn wait_until(&self, token: Token, deadline: Instant) -> Result<Option<u32>, Error> {
        let q = self.queue(token.queue)?;
        loop {
            {
                let mem = self.mem();
                let mut driver = q.driver.lock().unwrap_or_else(|e| e.into_inner());
                driver.reap(&mem)?;
                if let Some(len) = driver.take_completed(token.head) {
                    return Ok(Some(len));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            // Short slices: another thread waiting on the same queue may
            // consume the interrupt meant for this chain.
            q.wait_signal((deadline - now).min(Duration::from_millis(20)))?;
        }
    }

    /// Sends `request` on `queue` in one readable descriptor, with one
    /// writable descriptor of `reply_capacity` bytes (none when 0), waits
    /// for the device and returns the bytes it wrote.
    pub fn request(&self, queue: usize, request: &[u8], reply_capacity: usize) -> Result<Vec<u8>, Error> {
        self.request_with(queue, request, reply_capacity, Layout::default())
    }

    /// Like [`request`](Self::request) with a chosen chain layout.
    pub fn request_with(
        &self,
        queue: usize,
        request: &[u8],
        reply_capacity: usize,
        layout: Layout,
    ) -> Result<Vec<u8>, Error> {
        let mut allocated = Vec::new();
        let result = self.request_inner(queue, request, reply_capacity, layout, &mut allocated);
        for a in allocated {
            let _ = self.free(a);
        }
        result
    }

    fn request_inner(
        &self,
        queue: usize,
        request: &[u8],
        reply_capacity: usize,
        layout: Layout,
        allocated: &mut Vec<GuestAddress>,
    ) -> Result<Vec<u8>, Error> {
        let seg = layout.max_segment.unwrap_or(usize::MAX).max(1);
        let mut alloc = |len: usize| -> Result<GuestAddress, Error> {
            let a = match layout.within {
                Some((lo, hi)) => self.alloc_within(len, lo, hi)?,
                None => self.alloc(len)?,
            };
            allocated.push(a);
            Ok(a)
        };
        let mut chain = Chain { indirect: layout.indirect, ..Default::default() };
        for part in request.chunks(seg) {
            let a = alloc(part.len())?;
            self.write_guest(a, part)?;
            chain.readable.push((a, part.len() as u32));
        }
        let mut left = reply_capacity;
        while left > 0 {
            let n = left.min(seg);
            let a = alloc(n)?;
            chain.writable.push((a, n as u32));
            left -= n;
        }
        let token = self.submit(queue, &chain)?;
        let used = self.wait(token)? as usize;
        if used > reply_capacity {
            return Err(Error::BadReply(format!("device used {used} bytes of a {reply_capacity}-byte buffer")));
        }
        let mut reply = Vec::with_capacity(used);
        for &(a, l) in &chain.writable {
            if reply.len() == used {
                break;
            }
            let n = (l as usize).min(used - reply.len());
            reply.extend_from_slice(&self.read_guest(a, n)?);
        }
        Ok(reply)
    }

    /// The sizes of the shared-memory regions the back end asked for
    /// (GET_SHMEM_CONFIG; empty without SHMEM).
    pub fn shmem_sizes(&self) -> &[u64] {
        &self.shmem_sizes
    }

    /// The DAX window (shared-memory region 0), when the back end has one.
    pub fn dax(&self) -> Option<&dax::DaxFrontEnd> {
        self.dax.as_deref()
    }

    /// Sends `RESET_DEVICE`.
    pub fn reset_device(&self) -> Result<(), Error> {
        Ok(self.frontend.lock().unwrap_or_else(|e| e.into_inner()).reset_device()?)
    }

    /// Closes the connection (as a VMM that exits). The backend sees the
    /// socket close and drops the guest's state.
    pub fn disconnect(self) {
        drop(self);
    }
}

/// Waits up to `timeout` for `fd` to be readable and reads it; returns the
/// count read (0 when it did not become readable).
fn wait_readable(fd: &EventFd, timeout: Duration) -> Result<u64, Error> {
    // The eventfd stays open (borrowed) for the call.
    let mut p = [PollFd::from_raw_fd(fd.as_raw_fd(), libc::POLLIN)];
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    let n = match poll(&mut p, ms) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
        Err(e) => return Err(e.into()),
    };
    if n > 0 {
        match fd.read() {
            Ok(count) => return Ok(count),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(0)
}
