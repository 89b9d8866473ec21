//! [`QueueWorker`]: what the worker thread of one queue does after a kick.
//!
//! The worker drains its queue in batches: it pops every available chain,
//! hands each to the FUSE server ([`ChainServer`]), puts the replies in the
//! used ring, and signals the guest once per batch (when EVENT_IDX says the
//! guest wants it), and within a long batch as [`SignalPacer`] says. With
//! EVENT_IDX, a drained queue is watched for its [polling
//! window](crate::poll_window) before the worker sleeps.
//!
//! The hiprio queue's worker never polls: nobody waits for a FORGET. It
//! batches instead ([`DeviceConfig::forget_batch`]): after a kick it leaves
//! notifications off and sleeps for the batching delay, then serves every
//! FORGET that gathered and signals the guest once, and goes on so while
//! FORGETs keep coming. A guest evicting inodes one by one (an `rm -r`)
//! then kicks once and takes one interrupt per delay instead of one of each
//! per FORGET. Nor is it signalled in the middle of a batch.
//!
//! A request that may block for long (SETLKW) is served on a thread of its
//! own ([`ChainKind::Blocking`]). A batch with several large READs, popped
//! while fewer workers are busy than the host has CPUs, is shared with the
//! worker's helper thread ([`crate::bulk_helper`]): the two copy into guest
//! memory at once, and the worker signals the guest when both are done. A
//! large READ from a regular file in a batch without another is split in
//! two halves instead, read at once by the worker and its helper
//! ([`ChainWriter::with_read_split`](crate::descriptor_chain::ChainWriter::with_read_split)).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use avpfs_server::{FileSystem, Server};
use log::{debug, warn};
use vm_memory::{GuestAddressSpace, GuestMemoryLoadGuard};

use crate::backend::{DeviceConfig, GuestMemory, GuestMemoryShared, InFlight, HIPRIO_QUEUE};
use crate::chain_kind::{classify, deal_out, walk_all, ChainKind, WalkedChain};
use crate::chain_server::{error_reply, ChainServer};
use crate::descriptor_chain::walk_chain;
use crate::poll_window::POLL_WINDOW;
use crate::signal_pacer::SignalPacer;
use crate::virtqueue::{DescriptorTable, Virtqueue};

/// The worker of one queue, for one kick: the queue, the guest memory, and
/// what it shares with the other workers. Built by the backend for each
/// kick (a few references: nothing to allocate).
pub(crate) struct QueueWorker<'a, F: FileSystem> {
    /// The queue it serves.
    pub(crate) queue: Virtqueue<'a>,
    /// The guest memory of the connection (which the front end's memory
    /// table updates); each batch takes a snapshot of it.
    pub(crate) guest_memory: GuestMemoryShared,
    /// The FUSE server.
    pub(crate) server: &'a Arc<Server<F>>,
    /// The device settings.
    pub(crate) config: &'a DeviceConfig,
    /// The batches in progress on every queue.
    pub(crate) in_flight: &'a InFlight,
    /// The device's reset count, so that late replies of lock waits are
    /// dropped after a reset.
    pub(crate) generation: &'a Arc<AtomicU64>,
    /// CPUs this process may run on.
    pub(crate) cpus: usize,
    /// Whether the guest negotiated EVENT_IDX.
    pub(crate) event_idx: bool,
}

impl<F: FileSystem + 'static> QueueWorker<'_, F> {
    /// Drains the queue until it is empty (with EVENT_IDX: until no new
    /// chain arrived while notifications were being re-enabled). Each pass
    /// takes every available chain, answers them, and signals the guest once
    /// (and within long batches, every
    /// [`SIGNAL_INTERVAL`](crate::signal_pacer::SIGNAL_INTERVAL)).
    pub(crate) fn process_queue(&self) {
        let queue = self.queue.index;
        // The hiprio queue carries FORGETs and INTERRUPTs, which the guest
        // does not wait for: its worker never spins (a second spinning
        // thread would take a CPU from the guest's vCPUs).
        let poll_max = if self.event_idx && queue != HIPRIO_QUEUE { self.config.poll_max } else { Duration::ZERO };
        POLL_WINDOW.with(|w| w.woken(poll_max));
        loop {
            if self.event_idx {
                self.queue.disable_notification();
            }
            let (heads, table) = self.queue.pop_available(&self.guest_memory);
            // One memory snapshot per batch, taken after the chains were
            // popped: a region the front end added before publishing a chain
            // is in it, and the mappings stay valid until the batch is done.
            let mem = self.guest_memory.memory();
            if !heads.is_empty() {
                debug!(target: crate::LOG_TARGET, "queue {queue}: batch of {}", heads.len());
                self.serve_batch(&mem, table, heads);
                self.queue.notify();
            }
            if !self.event_idx {
                break;
            }
            // Notifications are still off: watch the ring for a while.
            if POLL_WINDOW.with(|w| w.poll(|| self.queue.has_available(&mem))) {
                continue;
            }
            // More chains may have arrived while notifications were off.
            if !self.queue.enable_notification() {
                break;
            }
        }
    }

    /// The hiprio queue's worker after a kick (EVENT_IDX): with
    /// notifications off, sleep [`DeviceConfig::forget_batch`], then serve
    /// what gathered and signal once; repeat until a delay passes without a
    /// FORGET, then turn notifications back on. The sleep is not counted as
    /// a batch in progress (a reset does not wait for it, and the bulk
    /// helper's count of busy workers leaves it out).
    pub(crate) fn process_forgets_in_batches(&self) {
        let queue = self.queue.index;
        loop {
            self.queue.disable_notification();
            std::thread::sleep(self.config.forget_batch);
            if !self.queue.is_serving() {
                // Stopped or reset while the FORGETs gathered: the chains
                // stay in the ring for whoever serves the queue next.
                return;
            }
            let served = {
                let _busy = self.in_flight.enter();
                let (heads, table) = self.queue.pop_available(&self.guest_memory);
                let mem = self.guest_memory.memory();
                let served = heads.len();
                if served > 0 {
                    debug!(target: crate::LOG_TARGET, "queue {queue}: batch of {served}");
                    let chains = walk_all(&mem, table, heads);
                    self.serve_and_return(&mem, &chains, false);
                    self.queue.notify();
                }
                served
            };
            if served > 0 {
                continue;
            }
            // A FORGET may have come while notifications were being turned on.
            if !self.queue.enable_notification() {
                return;
            }
        }
    }

    /// Serves the chains of one batch and puts them in the used ring. Lock
    /// waits go to threads of their own. While fewer workers are busy than
    /// there are CPUs, the worker's helper thread takes a share of the
    /// large READs: every other bulk request of a batch that has two or
    /// more, else the second half of each large read from a regular file
    /// (see [`ChainWriter::with_read_split`](crate::descriptor_chain::ChainWriter::with_read_split)),
    /// so that the copies into guest memory run on two CPUs. (Only READs:
    /// WRITEs to one host file take its inode lock in turn, so a helper
    /// would mostly wait.)
    fn serve_batch(&self, mem: &GuestMemoryLoadGuard<GuestMemory>, table: DescriptorTable, heads: Vec<u16>) {
        let hiprio = self.queue.index == HIPRIO_QUEUE;
        if let [head] = heads[..] {
            // The common case at low depth: nothing to allocate.
            let chain = [WalkedChain::walk(mem, table, head)];
            let kind = if hiprio { ChainKind::Plain } else { classify(mem, &chain[0]) };
            if kind == ChainKind::Blocking {
                let [chain] = chain;
                self.process_blocking_chain(table, chain);
            } else {
                self.serve_and_return(mem, &chain, kind == ChainKind::Bulk && self.helper_free());
            }
            return;
        }
        let chains = walk_all(mem, table, heads);
        let kinds: Vec<ChainKind> = if hiprio {
            vec![ChainKind::Plain; chains.len()]
        } else {
            chains.iter().map(|chain| classify(mem, chain)).collect()
        };
        let bulk = kinds.iter().filter(|&&k| k == ChainKind::Bulk).count();
        let helper = bulk > 0 && self.helper_free();
        let split = helper && bulk >= 2;
        let (mine, theirs) = deal_out(chains, kinds, split, |chain| self.process_blocking_chain(table, chain));
        if theirs.is_empty() {
            // At most one bulk request: its read may be split.
            self.serve_and_return(mem, &mine, helper);
        } else {
            self.serve_with_helper(mem, mine, theirs);
        }
    }

    /// Whether the helper thread may take a share of a batch's bulk
    /// requests. Asked only of batches with a bulk request (it takes the
    /// lock of the in-flight count).
    fn helper_free(&self) -> bool {
        self.config.bulk_helper && self.in_flight.busy() < self.cpus
    }

    /// Serves `mine` while the helper thread serves `theirs`, then returns
    /// every chain. Both halves keep their replies' lengths; the worker
    /// returns every chain once both are done, so the guest sees the batch
    /// end at once (as its one signal tells it) and the two threads do not
    /// take turns at the used ring.
    fn serve_with_helper(
        &self,
        mem: &GuestMemoryLoadGuard<GuestMemory>,
        mine: Vec<WalkedChain>,
        theirs: Vec<WalkedChain>,
    ) {
        let queue = self.queue.index;
        let their_replies = Arc::new(Mutex::new(Vec::with_capacity(theirs.len())));
        let (server, guest_memory, out) = (self.server.clone(), self.guest_memory.clone(), their_replies.clone());
        let job = Box::new(move || {
            let mem = guest_memory.memory();
            let chains = ChainServer { server: &server, queue, mem: &mem };
            let replies: Vec<(u16, u32)> =
                theirs.iter().map(|chain| (chain.head, chains.serve(chain, false))).collect();
            *out.lock().unwrap_or_else(|e| e.into_inner()) = replies;
        });
        let chains = ChainServer { server: self.server, queue, mem };
        let mut replies = Vec::with_capacity(mine.len());
        crate::bulk_helper::run_split(
            || crate::bulk_helper::thread_name(queue),
            job,
            || replies.extend(mine.iter().map(|chain| (chain.head, chains.serve(chain, false)))),
        );
        replies.append(&mut their_replies.lock().unwrap_or_else(|e| e.into_inner()));
        for (head, len) in replies {
            self.queue.return_chain(head, len);
        }
    }

    /// Serves a request that may block for long (SETLKW) on a thread of its
    /// own, so that the queue keeps being served: the lock holder's unlock
    /// may be the very next request on this queue. The reply is put in the
    /// used ring when the request ends, unless the device was reset since.
    fn process_blocking_chain(&self, table: DescriptorTable, chain: WalkedChain) {
        let queue = self.queue.index;
        let head = chain.head;
        let server = self.server.clone();
        let thread_vring = self.queue.vring.clone();
        let thread_memory = self.guest_memory.clone();
        let generation = self.generation.clone();
        let started = generation.load(Ordering::Acquire);
        let spawned = std::thread::Builder::new().name(format!("vq{queue}-setlkw")).spawn(move || {
            let mem = thread_memory.memory();
            let len = ChainServer { server: &server, queue, mem: &mem }.serve(&chain, false);
            if generation.load(Ordering::Acquire) != started {
                debug!(target: crate::LOG_TARGET, "queue {queue}: device reset while a lock wait was in progress; reply dropped");
                return;
            }
            let thread_queue = Virtqueue { index: queue, vring: &thread_vring };
            thread_queue.return_chain(head, len);
            thread_queue.notify();
        });
        if let Err(e) = spawned {
            // No thread: answer EAGAIN-like failure rather than block the queue
            // (the walked chain went with the thread's closure: walk it again).
            warn!(target: crate::LOG_TARGET, "queue {queue}: cannot start a thread for a lock wait: {e}");
            let mem = self.guest_memory.memory();
            let len = match walk_chain(&*mem, table.addr, table.size, head) {
                Ok(chain) => error_reply(&mem, &chain, libc::ENOLCK),
                Err(bad) => error_reply(&mem, &bad.valid, libc::ENOLCK),
            };
            self.queue.return_chain(head, len);
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
    fn serve_and_return(&self, mem: &GuestMemoryLoadGuard<GuestMemory>, chains: &[WalkedChain], split_reads: bool) {
        let server = ChainServer { server: self.server, queue: self.queue.index, mem };
        let mut pacer = SignalPacer::new(Instant::now());
        let paced = self.queue.index != HIPRIO_QUEUE;
        for (n, chain) in chains.iter().enumerate() {
            let len = server.serve(chain, split_reads);
            self.queue.return_chain(chain.head, len);
            if paced && n + 1 < chains.len() && pacer.returned(Instant::now) {
                self.queue.notify();
            }
        }
    }
}
