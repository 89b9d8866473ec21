//! What a popped chain is, for its queue worker: [`WalkedChain`] (walked,
//! and so validated, once for both its classification and its serving) and
//! [`ChainKind`], read from the FUSE opcode at the start of its request and
//! from the room it has for a reply; and how a batch is dealt out by kind
//! between the worker, its helper thread and threads of their own
//! ([`deal_out`]).

use fuse_abi::InHeader;
use vhost_user_backend::bitmap::BitmapMmapRegion;
use vm_memory::GuestMemoryLoadGuard;
use zerocopy::FromBytes;

use crate::backend::GuestMemory;
use crate::descriptor_chain::{walk_chain, BadChain, Buffers, ChainReader, SplitChain};
use crate::virtqueue::DescriptorTable;

/// A chain with room for a reply of at least this many bytes (a large READ)
/// is a bulk request, worth a helper thread's copy.
pub(crate) const BULK_BYTES: u64 = 64 << 10;

/// How a worker serves a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChainKind {
    /// A request that may block for long (SETLKW): on a thread of its own.
    Blocking,
    /// A chain with at least [`BULK_BYTES`] of reply room (a large READ): may
    /// go to the worker's helper thread.
    Bulk,
    /// Anything else, bad chains included: served by the worker.
    Plain,
}

/// What kind of chain `chain` is.
#[inline]
pub(crate) fn classify(mem: &GuestMemoryLoadGuard<GuestMemory>, chain: &WalkedChain) -> ChainKind {
    let Ok(chain) = &chain.chain else {
        return ChainKind::Plain;
    };
    if request_opcode(mem, chain) == Some(fuse_abi::opcode::SETLKW) {
        ChainKind::Blocking
    } else if chain.writable_len() >= BULK_BYTES {
        ChainKind::Bulk
    } else {
        ChainKind::Plain
    }
}

/// A chain popped from the available ring, walked (and so validated) once
/// for both its classification and its serving.
pub(crate) struct WalkedChain {
    /// The index of the chain's first descriptor.
    pub(crate) head: u16,
    /// The chain's buffers, or why it was refused.
    pub(crate) chain: Result<SplitChain, BadChain>,
}

impl WalkedChain {
    /// Walks the chain at `head` of `table`.
    #[inline]
    pub(crate) fn walk(mem: &GuestMemoryLoadGuard<GuestMemory>, table: DescriptorTable, head: u16) -> Self {
        WalkedChain { head, chain: walk_chain(&**mem, table.addr, table.size, head) }
    }
}

/// Walks the chains at `heads` of `table`.
#[inline]
pub(crate) fn walk_all(
    mem: &GuestMemoryLoadGuard<GuestMemory>,
    table: DescriptorTable,
    heads: Vec<u16>,
) -> Vec<WalkedChain> {
    heads.into_iter().map(|head| WalkedChain::walk(mem, table, head)).collect()
}

/// Deals the chains of a batch out by their `kinds`, in batch order: each
/// blocking chain to `blocking` as it comes, plain chains to the worker,
/// and bulk chains to the worker too or, with `share_bulk`, every other
/// one (the second, the fourth, ...) to its helper thread. Returns the
/// worker's chains and the helper's.
#[inline]
pub(crate) fn deal_out(
    chains: Vec<WalkedChain>,
    kinds: Vec<ChainKind>,
    share_bulk: bool,
    mut blocking: impl FnMut(WalkedChain),
) -> (Vec<WalkedChain>, Vec<WalkedChain>) {
    let mut mine = Vec::with_capacity(chains.len());
    let mut theirs = Vec::new();
    let mut nth_bulk = 0;
    for (chain, kind) in chains.into_iter().zip(kinds) {
        match kind {
            ChainKind::Blocking => blocking(chain),
            ChainKind::Bulk if share_bulk && nth_bulk % 2 == 1 => {
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
    (mine, theirs)
}

/// The opcode of the FUSE request at the start of a chain's readable part,
/// if it holds a request header; read straight from the first buffer when
/// it holds the field, as it does for any Linux guest.
#[inline]
fn request_opcode(mem: &GuestMemoryLoadGuard<GuestMemory>, chain: &SplitChain) -> Option<u32> {
    use vm_memory::{Address, Bytes};
    let first = chain.readable.first()?;
    if first.len as usize >= std::mem::size_of::<InHeader>() {
        let at = first.addr.checked_add(std::mem::offset_of!(InHeader, opcode) as u64)?;
        return mem.read_obj::<u32>(at).ok().map(u32::from_le);
    }
    request_header(mem, chain).map(|h| h.opcode)
}

/// The FUSE request header at the start of a chain's readable part, if it holds one.
#[inline]
pub(crate) fn request_header(mem: &GuestMemoryLoadGuard<GuestMemory>, chain: &SplitChain) -> Option<InHeader> {
    let readable = SplitChain { readable: chain.readable.clone(), writable: Buffers::new() };
    let mut r = ChainReader::<BitmapMmapRegion>::new(&**mem, &readable).ok()?;
    let mut hdr = [0u8; std::mem::size_of::<InHeader>()];
    avpfs_server::Reader::read_exact(&mut r, &mut hdr).ok()?;
    InHeader::read_from_bytes(&hdr[..]).ok()
}

#[cfg(test)]
mod tests {
    use vm_memory::{GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
    use zerocopy::IntoBytes;

    use super::*;

    /// Classifies a chain whose request header (with `opcode`) lies at
    /// 0x1000, in one buffer or cut in two after `cut` bytes, with
    /// `reply_room` bytes of writable buffer.
    fn kind_of(opcode: u32, cut: Option<u32>, reply_room: u32) -> ChainKind {
        use crate::descriptor_chain::Buffer;
        use vm_memory::Bytes;
        let atomic = GuestMemoryAtomic::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40000)]).unwrap());
        let mem = atomic.memory();
        let header = InHeader { len: 64, opcode, unique: 7, ..Default::default() };
        let len = std::mem::size_of::<InHeader>() as u32;
        let readable: Buffers = match cut {
            None => {
                mem.write_slice(header.as_bytes(), GuestAddress(0x1000)).unwrap();
                smallvec::smallvec![Buffer { addr: GuestAddress(0x1000), len: 64 }]
            }
            Some(cut) => {
                let (head, tail) = header.as_bytes().split_at(cut as usize);
                mem.write_slice(head, GuestAddress(0x1000)).unwrap();
                mem.write_slice(tail, GuestAddress(0x3000)).unwrap();
                smallvec::smallvec![
                    Buffer { addr: GuestAddress(0x1000), len: cut },
                    Buffer { addr: GuestAddress(0x3000), len: len - cut + 24 },
                ]
            }
        };
        let writable: Buffers = smallvec::smallvec![Buffer { addr: GuestAddress(0x10000), len: reply_room }];
        classify(&mem, &WalkedChain { head: 0, chain: Ok(SplitChain { readable, writable }) })
    }

    #[test]
    fn chains_are_classified_by_opcode_and_reply_room() {
        use fuse_abi::opcode::{LOOKUP, READ, SETLKW};
        let bulk = BULK_BYTES as u32;
        assert_eq!(kind_of(SETLKW, None, 16), ChainKind::Blocking);
        // A header cut over two buffers (the opcode too) is read whole.
        assert_eq!(kind_of(SETLKW, Some(6), 16), ChainKind::Blocking);
        assert_eq!(kind_of(SETLKW, Some(1), 16), ChainKind::Blocking);
        assert_eq!(kind_of(READ, None, bulk), ChainKind::Bulk);
        assert_eq!(kind_of(READ, Some(6), bulk - 1), ChainKind::Plain);
        assert_eq!(kind_of(LOOKUP, None, 200), ChainKind::Plain);
        // A bad chain is served (with an error) by the worker.
        let atomic = GuestMemoryAtomic::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap());
        let bad = walk_chain(&*atomic.memory(), GuestAddress(0x100_0000), 16, 0);
        assert!(bad.is_err());
        assert_eq!(classify(&atomic.memory(), &WalkedChain { head: 0, chain: bad }), ChainKind::Plain);
    }

    #[test]
    fn a_batch_is_dealt_out_by_kind_and_bulk_chains_alternate_when_shared() {
        use ChainKind::{Blocking, Bulk, Plain};
        let kinds = [Plain, Bulk, Blocking, Bulk, Bulk, Plain, Bulk, Blocking];
        let deal = |share_bulk| {
            let chains =
                (0..kinds.len() as u16).map(|head| WalkedChain { head, chain: Ok(SplitChain::default()) }).collect();
            let mut blocking = Vec::new();
            let (mine, theirs) = deal_out(chains, kinds.to_vec(), share_bulk, |c| blocking.push(c.head));
            let heads = |chains: Vec<WalkedChain>| chains.iter().map(|c| c.head).collect::<Vec<_>>();
            (heads(mine), heads(theirs), blocking)
        };
        assert_eq!(deal(true), (vec![0, 1, 4, 5], vec![3, 6], vec![2, 7]));
        assert_eq!(deal(false), (vec![0, 1, 3, 4, 5, 6], vec![], vec![2, 7]));
    }
}
