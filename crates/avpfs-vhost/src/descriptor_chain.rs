//! Descriptor chains: walking and validation.
//!
//! [`walk_chain`] follows one split-virtqueue descriptor chain (direct or
//! through an indirect table) and checks every descriptor before anything
//! touches guest memory: the index stays inside its table, the chain ends
//! before it could loop, no device-readable descriptor follows a
//! device-writable one, each buffer lies inside guest memory without wrapping
//! the address space, and the total length stays under [`MAX_CHAIN_BYTES`].
//! What it returns is the list of readable and writable buffers.
//!
//! The [`ChainReader`] and [`ChainWriter`] the FUSE server reads a request
//! from and writes its reply into, over those buffers, live in a module of
//! their own and are re-exported here, their public path.

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryError, Permissions};

pub use crate::chain_reader_writer::{ChainReader, ChainWriter, SPLIT_READ_BYTES};

/// Size of one split-ring descriptor in bytes.
const DESC_SIZE: u64 = 16;

/// Largest total length (readable plus writable) of a chain we accept.
///
/// The largest legitimate request is a 1 MiB WRITE plus headers, the largest
/// legitimate reply a 1 MiB READ plus its header; 64 MiB leaves room for a
/// guest with a larger `max_pages` while refusing absurd chains.
pub const MAX_CHAIN_BYTES: u64 = 64 << 20;

/// Why a descriptor chain was refused, or why its memory could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `next` field (or the head) names a descriptor outside the table.
    #[error("descriptor index {index} is outside its table of {size} entries")]
    IndexOutOfRange {
        /// The index found.
        index: u16,
        /// The size of the table it indexes.
        size: u32,
    },
    /// The chain has more descriptors than its table: it loops.
    #[error("descriptor chain is longer than its table of {0} entries (a loop)")]
    ChainLoop(u32),
    /// The descriptor itself could not be read from guest memory.
    #[error("cannot read descriptor at {addr:#x}: {source}")]
    ReadDescriptor {
        /// Guest address of the descriptor.
        addr: u64,
        /// The memory error.
        #[source]
        source: GuestMemoryError,
    },
    /// An indirect descriptor inside an indirect table.
    #[error("indirect descriptor inside an indirect table")]
    NestedIndirect,
    /// An indirect descriptor that also has the NEXT flag.
    #[error("indirect descriptor with the NEXT flag")]
    IndirectWithNext,
    /// An indirect table whose length is zero, not a multiple of 16 or too large.
    #[error("indirect table of {0} bytes is not a valid descriptor table")]
    BadIndirectTable(u32),
    /// A device-readable descriptor follows a device-writable one.
    #[error("device-readable descriptor after a device-writable one")]
    ReadableAfterWritable,
    /// `addr + len` wraps the 64-bit address space.
    #[error("buffer at {addr:#x} of {len} bytes wraps the address space")]
    AddressOverflow {
        /// Guest address of the buffer.
        addr: u64,
        /// Its length.
        len: u32,
    },
    /// The buffer is not entirely inside guest memory.
    #[error("buffer at {addr:#x} of {len} bytes is outside guest memory")]
    OutsideMemory {
        /// Guest address of the buffer.
        addr: u64,
        /// Its length.
        len: u32,
    },
    /// The chain's buffers add up to more than [`MAX_CHAIN_BYTES`].
    #[error("descriptor chain of more than {MAX_CHAIN_BYTES} bytes")]
    TooLarge,
    /// Guest memory could not be mapped as slices.
    #[error("cannot map guest memory: {0}")]
    GuestMemory(#[source] GuestMemoryError),
}

/// One guest buffer of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// Guest physical address.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
}

/// Buffers of one direction of a chain. Up to four are kept inline: a FUSE
/// request is usually one or two buffers each way, so walking a chain
/// allocates nothing (the two heap vectors it used were 42% of the
/// daemon's allocations in a LOOKUP storm, callgrind).
pub type Buffers = smallvec::SmallVec<[Buffer; 4]>;

/// The buffers of a descriptor chain, split into the device-readable part
/// (the request) and the device-writable part (room for the reply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitChain {
    /// Device-readable buffers, in chain order.
    pub readable: Buffers,
    /// Device-writable buffers, in chain order.
    pub writable: Buffers,
}

impl SplitChain {
    /// Total bytes of the readable part.
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|b| u64::from(b.len)).sum()
    }

    /// Total bytes of the writable part.
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|b| u64::from(b.len)).sum()
    }
}

/// A refused chain: the error, and the buffers validated before it was found.
///
/// The validated prefix lets the caller still write an error reply when the
/// bad descriptor comes after a usable reply buffer.
#[derive(Debug)]
pub struct BadChain {
    /// What is wrong with the chain.
    pub error: Error,
    /// The descriptors checked and accepted before the error (boxed: the
    /// error path should not make every `Result` of a walk large).
    pub valid: Box<SplitChain>,
}

/// Follows the chain that starts at `head` in the descriptor table at
/// `desc_table` of `queue_size` entries, validating every descriptor.
pub fn walk_chain<M: GuestMemory + ?Sized>(
    mem: &M,
    desc_table: GuestAddress,
    queue_size: u16,
    head: u16,
) -> Result<SplitChain, BadChain> {
    let mut chain = SplitChain::default();
    match walk_into(mem, desc_table, queue_size, head, &mut chain) {
        Ok(()) => Ok(chain),
        Err(error) => Err(BadChain { error, valid: Box::new(chain) }),
    }
}

fn walk_into<M: GuestMemory + ?Sized>(
    mem: &M,
    desc_table: GuestAddress,
    queue_size: u16,
    head: u16,
    chain: &mut SplitChain,
) -> Result<(), Error> {
    let mut table = desc_table;
    let mut table_size = u32::from(queue_size);
    let mut index = head;
    // Each table can contribute at most as many descriptors as it has entries;
    // one more means the `next` fields form a loop.
    let mut ttl = table_size;
    let mut indirect = false;
    let mut total: u64 = 0;

    loop {
        if u32::from(index) >= table_size {
            return Err(Error::IndexOutOfRange { index, size: table_size });
        }
        if ttl == 0 {
            return Err(Error::ChainLoop(table_size));
        }
        ttl -= 1;

        // Cannot overflow: index < 2^16 and the table lies in guest memory
        // (checked below for indirect tables; the ring's own table was checked
        // when the queue was set up), but stay checked anyway.
        let desc_addr = table
            .checked_add(u64::from(index) * DESC_SIZE)
            .ok_or(Error::AddressOverflow { addr: table.raw_value(), len: u32::from(index) * 16 })?;
        let desc: Descriptor =
            mem.read_obj(desc_addr).map_err(|source| Error::ReadDescriptor { addr: desc_addr.raw_value(), source })?;

        if desc.refers_to_indirect_table() {
            if indirect {
                return Err(Error::NestedIndirect);
            }
            if desc.has_next() {
                return Err(Error::IndirectWithNext);
            }
            let len = desc.len();
            if len == 0 || u64::from(len) % DESC_SIZE != 0 || u64::from(len) / DESC_SIZE > u64::from(u16::MAX) + 1 {
                return Err(Error::BadIndirectTable(len));
            }
            check_buffer(mem, desc.addr(), len)?;
            table = desc.addr();
            table_size = (u64::from(len) / DESC_SIZE) as u32;
            ttl = table_size;
            index = 0;
            indirect = true;
            continue;
        }

        let len = desc.len();
        let addr = desc.addr();
        addr.raw_value().checked_add(u64::from(len)).ok_or(Error::AddressOverflow { addr: addr.raw_value(), len })?;
        // The total is checked before the memory range, so that a huge length
        // is reported as such rather than as a buffer outside memory.
        total += u64::from(len);
        if total > MAX_CHAIN_BYTES {
            return Err(Error::TooLarge);
        }
        check_buffer(mem, addr, len)?;

        let buffer = Buffer { addr: desc.addr(), len };
        if desc.is_write_only() {
            chain.writable.push(buffer);
        } else if !chain.writable.is_empty() {
            return Err(Error::ReadableAfterWritable);
        } else {
            chain.readable.push(buffer);
        }

        if !desc.has_next() {
            return Ok(());
        }
        index = desc.next();
    }
}

/// Checks that `[addr, addr + len)` does not wrap and lies in guest memory.
fn check_buffer<M: GuestMemory + ?Sized>(mem: &M, addr: GuestAddress, len: u32) -> Result<(), Error> {
    let raw = addr.raw_value();
    raw.checked_add(u64::from(len)).ok_or(Error::AddressOverflow { addr: raw, len })?;
    if len > 0 && !mem.check_range(addr, len as usize, Permissions::ReadWrite) {
        return Err(Error::OutsideMemory { addr: raw, len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use vm_memory::GuestMemoryMmap;

    use super::*;

    const TABLE: u64 = 0x1000;
    const NEXT: u16 = VRING_DESC_F_NEXT as u16;
    const WRITE: u16 = VRING_DESC_F_WRITE as u16;
    const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

    fn memory() -> GuestMemoryMmap {
        // Two adjacent regions, so that buffers can straddle them.
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000), (GuestAddress(0x10000), 0x10000)]).unwrap()
    }

    fn put(mem: &GuestMemoryMmap, table: u64, descs: &[(u64, u32, u16, u16)]) {
        for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
            mem.write_obj(Descriptor::new(addr, len, flags, next), GuestAddress(table + 16 * i as u64)).unwrap();
        }
    }

    #[test]
    fn splits_readable_and_writable() {
        let mem = memory();
        put(&mem, TABLE, &[(0x2000, 40, NEXT, 1), (0x3000, 8, NEXT, 2), (0x4000, 100, WRITE, 0)]);
        let c = walk_chain(&mem, GuestAddress(TABLE), 16, 0).unwrap();
        assert_eq!(c.readable.len(), 2);
        assert_eq!(c.readable_len(), 48);
        assert_eq!(c.writable[..], [Buffer { addr: GuestAddress(0x4000), len: 100 }]);
    }

    #[test]
    fn refuses_bad_chains() {
        let mem = memory();
        let err = |descs: &[(u64, u32, u16, u16)]| {
            put(&mem, TABLE, descs);
            walk_chain(&mem, GuestAddress(TABLE), 16, 0).unwrap_err().error
        };
        assert!(matches!(err(&[(0x2000, 8, NEXT | WRITE, 1), (0x3000, 8, 0, 0)]), Error::ReadableAfterWritable));
        assert!(matches!(err(&[(0x2000, 8, NEXT, 0)]), Error::ChainLoop(16)));
        assert!(matches!(err(&[(0x2000, 8, NEXT, 99)]), Error::IndexOutOfRange { index: 99, size: 16 }));
        assert!(matches!(err(&[(u64::MAX - 4, 8, 0, 0)]), Error::AddressOverflow { .. }));
        assert!(matches!(err(&[(0x100_0000, 8, 0, 0)]), Error::OutsideMemory { .. }));
        assert!(matches!(err(&[(0x1_0000 - 4, 0x10008, 0, 0)]), Error::OutsideMemory { .. }));
        assert!(matches!(err(&[(0, u32::MAX, 0, 0)]), Error::TooLarge));
        assert!(matches!(err(&[(0x2000, 17, INDIRECT, 0)]), Error::BadIndirectTable(17)));
        assert!(matches!(err(&[(0x2000, 16, INDIRECT | NEXT, 1)]), Error::IndirectWithNext));
        assert!(matches!(
            walk_chain(&mem, GuestAddress(TABLE), 16, 16).unwrap_err().error,
            Error::IndexOutOfRange { index: 16, size: 16 }
        ));
        // The validated prefix is kept.
        put(&mem, TABLE, &[(0x2000, 40, NEXT, 1), (0x4000, 64, NEXT | WRITE, 2), (0x100_0000, 8, WRITE, 0)]);
        let bad = walk_chain(&mem, GuestAddress(TABLE), 16, 0).unwrap_err();
        assert_eq!(bad.valid.readable_len(), 40);
        assert_eq!(bad.valid.writable_len(), 64);
    }

    #[test]
    fn follows_indirect_tables() {
        let mem = memory();
        put(&mem, 0x8000, &[(0x2000, 40, NEXT, 1), (0x4000, 100, WRITE, 0)]);
        put(&mem, TABLE, &[(0x8000, 32, INDIRECT, 0)]);
        let c = walk_chain(&mem, GuestAddress(TABLE), 16, 0).unwrap();
        assert_eq!((c.readable_len(), c.writable_len()), (40, 100));
        // Nested indirect tables are refused.
        put(&mem, 0x8000, &[(0x9000, 16, INDIRECT, 0)]);
        assert!(matches!(walk_chain(&mem, GuestAddress(TABLE), 16, 0).unwrap_err().error, Error::NestedIndirect));
        // A loop inside an indirect table is bounded by the table size.
        put(&mem, 0x8000, &[(0x2000, 8, NEXT, 1), (0x2000, 8, NEXT, 0)]);
        assert!(matches!(walk_chain(&mem, GuestAddress(TABLE), 16, 0).unwrap_err().error, Error::ChainLoop(2)));
    }
}
