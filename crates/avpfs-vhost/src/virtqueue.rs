//! [`Virtqueue`]: one virtqueue as its worker uses it. Pops chain heads
//! from the available ring, returns chains to the used ring, signals the
//! guest and turns its notifications (kicks) off and on, logging what
//! fails: a queue the front end broke is logged, not fatal to the device.

use log::warn;
use vhost_user_backend::{VringMutex, VringT};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{GuestAddress, GuestAddressSpace, GuestMemoryLoadGuard};

use crate::backend::{GuestMemory, GuestMemoryShared};

/// Where a queue's descriptors are: the guest address of its descriptor
/// table and the number of entries, for walking the chains it popped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DescriptorTable {
    /// Guest address of the table.
    pub(crate) addr: GuestAddress,
    /// Entries in the table (the queue size).
    pub(crate) size: u16,
}

/// One virtqueue of the device, as the thread that serves it (or a thread
/// that answers one of its chains late) uses it.
#[derive(Clone, Copy)]
pub(crate) struct Virtqueue<'a> {
    /// The queue's index (0: hiprio), for the logs.
    pub(crate) index: usize,
    /// Its vring.
    pub(crate) vring: &'a VringMutex<GuestMemoryShared>,
}

impl Virtqueue<'_> {
    /// Pops every available chain head; returns them with the descriptor
    /// table they index. The ring is read through a memory snapshot taken
    /// once the queue is locked.
    #[inline]
    pub(crate) fn pop_available(&self, memory: &GuestMemoryShared) -> (Vec<u16>, DescriptorTable) {
        let mut state = self.vring.get_mut();
        let mem = memory.memory();
        let q = state.get_queue_mut();
        let table = DescriptorTable { addr: GuestAddress(q.desc_table()), size: q.size() };
        let heads = match q.iter(&*mem) {
            Ok(iter) => iter.map(|chain| chain.head_index()).collect(),
            Err(e) => {
                warn!(target: crate::LOG_TARGET, "queue {}: cannot read the available ring: {e}", self.index);
                Vec::new()
            }
        };
        (heads, table)
    }

    /// Whether the driver has published chains this worker has not popped yet.
    #[inline]
    pub(crate) fn has_available(&self, mem: &GuestMemoryLoadGuard<GuestMemory>) -> bool {
        let state = self.vring.get_ref();
        let q = state.get_queue();
        q.avail_idx(&**mem, std::sync::atomic::Ordering::Acquire).is_ok_and(|idx| idx.0 != q.next_avail())
    }

    /// Whether the queue is still set up and enabled (not stopped or reset).
    #[inline]
    pub(crate) fn is_serving(&self) -> bool {
        let state = self.vring.get_ref();
        state.get_queue().ready() && state.is_enabled()
    }

    /// Puts the chain at `head` in the used ring with `len` bytes written.
    #[inline]
    pub(crate) fn return_chain(&self, head: u16, len: u32) {
        if let Err(e) = self.vring.add_used(head, len) {
            warn!(target: crate::LOG_TARGET, "queue {}: cannot return descriptor {head}: {e}", self.index);
        }
    }

    /// Signals the guest if it wants to know about the new used entries
    /// (always without EVENT_IDX; with it, when `used_event` was passed).
    #[inline]
    pub(crate) fn notify(&self) {
        match self.vring.needs_notification() {
            Ok(false) => {}
            Ok(true) => self.signal(),
            Err(e) => {
                warn!(target: crate::LOG_TARGET, "queue {}: cannot read used_event ({e}); signalling", self.index);
                self.signal();
            }
        }
    }

    #[inline]
    fn signal(&self) {
        if let Err(e) = self.vring.signal_used_queue() {
            warn!(target: crate::LOG_TARGET, "queue {}: cannot signal the guest: {e}", self.index);
        }
    }

    /// Asks the guest not to kick (EVENT_IDX).
    #[inline]
    pub(crate) fn disable_notification(&self) {
        if let Err(e) = self.vring.disable_notification() {
            warn!(target: crate::LOG_TARGET, "queue {}: cannot disable notifications: {e}", self.index);
        }
    }

    /// Asks the guest to kick again (EVENT_IDX); true if chains arrived
    /// while notifications were off, so the worker must not sleep yet.
    #[inline]
    pub(crate) fn enable_notification(&self) -> bool {
        match self.vring.enable_notification() {
            Ok(more) => more,
            Err(e) => {
                warn!(target: crate::LOG_TARGET, "queue {}: cannot enable notifications: {e}", self.index);
                false
            }
        }
    }
}
