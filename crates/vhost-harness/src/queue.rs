//! The guest driver's side of a split virtqueue (VIRTIO 1.2, 2.7): the
//! descriptor table, the available ring it fills and the used ring it reaps,
//! laid out in guest memory and written through vm-memory.

use std::collections::HashMap;
use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_USED_F_NO_NOTIFY};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

/// Errors of the queue driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not enough consecutive free descriptors for a chain.
    #[error("no {0} consecutive free descriptors")]
    NoDescriptors(usize),
    /// An empty chain.
    #[error("a chain needs at least one descriptor")]
    EmptyChain,
    /// Reading or writing the rings failed.
    #[error("ring access: {0}")]
    Memory(#[from] GuestMemoryError),
}

/// One descriptor as the driver writes it. In chains given to
/// [`SplitQueue::place`], `next` is the index of the next descriptor *within
/// the given slice* (the driver turns it into a table index); it may point
/// anywhere, which is how malformed chains are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Desc {
    /// Guest physical address of the buffer.
    pub addr: u64,
    /// Length of the buffer.
    pub len: u32,
    /// `VRING_DESC_F_*` flags.
    pub flags: u16,
    /// Next descriptor (relative, see above); used with `VRING_DESC_F_NEXT`.
    pub next: u16,
}

/// Byte sizes of the three parts of a split ring of `size` entries:
/// (descriptor table, available ring, used ring), each with its event field.
pub fn ring_sizes(size: u16) -> (u64, u64, u64) {
    let n = u64::from(size);
    (16 * n, 6 + 2 * n, 6 + 8 * n)
}

/// What the driver keeps about a chain in flight.
#[derive(Debug)]
struct InFlight {
    first_slot: u16,
    slots: u16,
}

/// The driver side of one split virtqueue.
#[derive(Debug)]
pub struct SplitQueue {
    size: u16,
    desc: GuestAddress,
    avail: GuestAddress,
    used: GuestAddress,
    event_idx: bool,
    slot_used: Vec<bool>,
    next_avail: Wrapping<u16>,
    last_used: Wrapping<u16>,
    in_flight: HashMap<u16, InFlight>,
    completed: HashMap<u16, u32>,
}

impl SplitQueue {
    /// A queue of `size` entries whose parts lie at the given guest addresses.
    pub fn new(size: u16, desc: GuestAddress, avail: GuestAddress, used: GuestAddress, event_idx: bool) -> Self {
        SplitQueue {
            size,
            desc,
            avail,
            used,
            event_idx,
            slot_used: vec![false; usize::from(size)],
            next_avail: Wrapping(0),
            last_used: Wrapping(0),
            in_flight: HashMap::new(),
            completed: HashMap::new(),
        }
    }

    /// Number of entries.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Guest addresses of the descriptor table, the available ring and the used ring.
    pub fn addresses(&self) -> (GuestAddress, GuestAddress, GuestAddress) {
        (self.desc, self.avail, self.used)
    }

    /// Zeroes the rings (before the queue is handed to the device).
    pub fn clear(&self, mem: &GuestMemoryMmap) -> Result<(), Error> {
        let (d, a, u) = ring_sizes(self.size);
        mem.write_slice(&vec![0u8; d as usize], self.desc)?;
        mem.write_slice(&vec![0u8; a as usize], self.avail)?;
        mem.write_slice(&vec![0u8; u as usize], self.used)?;
        Ok(())
    }

    /// Writes `descs` into consecutive free table slots; returns the index of
    /// the first (the chain head). The chain is not yet made available.
    pub fn place(&mut self, mem: &GuestMemoryMmap, descs: &[Desc]) -> Result<u16, Error> {
        if descs.is_empty() {
            return Err(Error::EmptyChain);
        }
        let n = descs.len();
        let base = (0..self.slot_used.len().saturating_sub(n - 1))
            .find(|&b| self.slot_used[b..b + n].iter().all(|u| !u))
            .ok_or(Error::NoDescriptors(n))?;
        for (i, d) in descs.iter().enumerate() {
            let next = if d.flags & VRING_DESC_F_NEXT as u16 != 0 { (base as u16).wrapping_add(d.next) } else { 0 };
            let addr = self.desc.unchecked_add(16 * (base + i) as u64);
            mem.write_obj(Descriptor::new(d.addr, d.len, d.flags, next), addr)?;
            self.slot_used[base + i] = true;
        }
        let head = base as u16;
        self.in_flight.insert(head, InFlight { first_slot: head, slots: n as u16 });
        Ok(head)
    }

    /// Makes the chain at `head` available. Returns whether the device asked
    /// to be kicked (EVENT_IDX `avail_event`, or the used ring's NO_NOTIFY flag).
    pub fn publish(&mut self, mem: &GuestMemoryMmap, head: u16) -> Result<bool, Error> {
        let slot = u64::from(self.next_avail.0 % self.size);
        mem.write_obj(head.to_le(), self.avail.unchecked_add(4 + 2 * slot))?;
        let old = self.next_avail;
        self.next_avail += Wrapping(1);
        // The ring entry must be visible before the index that publishes it.
        fence(Ordering::SeqCst);
        mem.store(self.next_avail.0.to_le(), self.avail.unchecked_add(2), Ordering::Release)?;
        // And the index before the device's notification state is read.
        fence(Ordering::SeqCst);
        if self.event_idx {
            let avail_event = Wrapping(u16::from_le(
                mem.load(self.used.unchecked_add(4 + 8 * u64::from(self.size)), Ordering::Acquire)?,
            ));
            // vring_need_event(): did the index pass the device's avail_event?
            Ok((self.next_avail - avail_event - Wrapping(1)).0 < (self.next_avail - old).0)
        } else {
            let flags = u16::from_le(mem.load(self.used, Ordering::Acquire)?);
            Ok(flags & VRING_USED_F_NO_NOTIFY as u16 == 0)
        }
    }

    /// Moves the used ring's new entries into the completed set, and (with
    /// EVENT_IDX) asks for an interrupt at the next one.
    pub fn reap(&mut self, mem: &GuestMemoryMmap) -> Result<(), Error> {
        loop {
            let used_idx = Wrapping(u16::from_le(mem.load(self.used.unchecked_add(2), Ordering::Acquire)?));
            while self.last_used != used_idx {
                let slot = u64::from(self.last_used.0 % self.size);
                let elem = self.used.unchecked_add(4 + 8 * slot);
                let id: u32 = u32::from_le(mem.read_obj(elem)?);
                let len: u32 = u32::from_le(mem.read_obj(elem.unchecked_add(4))?);
                self.completed.insert(id as u16, len);
                self.last_used += Wrapping(1);
            }
            if !self.event_idx {
                return Ok(());
            }
            // used_event: interrupt me when the entry after these is used.
            mem.store(
                self.last_used.0.to_le(),
                self.avail.unchecked_add(4 + 2 * u64::from(self.size)),
                Ordering::Release,
            )?;
            fence(Ordering::SeqCst);
            // An entry added before the device saw the new used_event would not
            // be signalled: look again.
            let again = u16::from_le(mem.load(self.used.unchecked_add(2), Ordering::Acquire)?);
            if again == self.last_used.0 {
                return Ok(());
            }
        }
    }

    /// If the chain at `head` completed, frees its descriptors and returns
    /// the length the device wrote.
    pub fn take_completed(&mut self, head: u16) -> Option<u32> {
        let len = self.completed.remove(&head)?;
        if let Some(f) = self.in_flight.remove(&head) {
            for s in f.first_slot..f.first_slot + f.slots {
                if let Some(u) = self.slot_used.get_mut(usize::from(s)) {
                    *u = false;
                }
            }
        }
        Some(len)
    }

    /// Number of chains made available and not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

trait UncheckedAdd {
    fn unchecked_add(self, off: u64) -> Self;
}

impl UncheckedAdd for GuestAddress {
    /// Ring offsets are small and the rings lie in guest memory.
    fn unchecked_add(self, off: u64) -> Self {
        GuestAddress(self.0.wrapping_add(off))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_publish_and_reap() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let mut q = SplitQueue::new(8, GuestAddress(0), GuestAddress(0x1000), GuestAddress(0x2000), true);
        q.clear(&mem).unwrap();
        let h = q
            .place(&mem, &[Desc { addr: 0x4000, len: 8, flags: VRING_DESC_F_NEXT as u16, next: 1 }, Desc::default()])
            .unwrap();
        assert_eq!(h, 0);
        let d: Descriptor = mem.read_obj(GuestAddress(0)).unwrap();
        assert_eq!(d.next(), 1);
        // avail_event is 0: the first publication must kick.
        assert!(q.publish(&mem, h).unwrap());
        assert_eq!(u16::from_le(mem.read_obj(GuestAddress(0x1002)).unwrap()), 1);
        // Play the device: used entry for head 0, length 5.
        mem.write_obj(0u32, GuestAddress(0x2004)).unwrap();
        mem.write_obj(5u32, GuestAddress(0x2008)).unwrap();
        mem.write_obj(1u16, GuestAddress(0x2002)).unwrap();
        q.reap(&mem).unwrap();
        assert_eq!(q.take_completed(h), Some(5));
        assert_eq!(q.in_flight(), 0);
        // used_event now asks for the next entry.
        assert_eq!(u16::from_le(mem.read_obj(GuestAddress(0x1000 + 4 + 16)).unwrap()), 1);
        // The slots are free again.
        assert_eq!(q.place(&mem, &[Desc::default(); 8]).unwrap(), 0);
    }
}
