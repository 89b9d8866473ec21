//! The `virtio_request` target: one FUSE request carried by a descriptor
//! chain in guest memory, served the way avpfs-vhost serves it
//! (`walk_chain`, then `Server::handle_message` over a `ChainReader` and a
//! `ChainWriter`), by the in-memory file system.
//!
//! Input: as for `descriptor_chain` (see [`crate::chain`]): a control block,
//! then the guest memory image holding the descriptor table, the request and
//! room for the reply. Before the chain, the harness initializes the session
//! and opens `file` (node [`FILE_NODE`], handle [`FILE_FH`]) and the root
//! directory (handle [`ROOT_FH`]), so that a chain can READ, WRITE or
//! READDIR at once.
//!
//! The reply is read back from the writable buffers and checked like any
//! other ([`replies::check`]) when no two buffers of the chain overlap (with
//! overlapping buffers the guest memory holds whatever was written last).
//! The zero-copy READ and WRITE paths move bytes with `preadv`/`pwritev`
//! straight between the memfd of the file and guest memory: AddressSanitizer
//! watches the `unsafe` code there.

use avpfs_server::{Server, SliceReader, VecWriter, Writer, MAX_REQUEST_SIZE};
use avpfs_vhost::descriptor_chain::{walk_chain, Buffer, ChainReader, ChainWriter, SplitChain};
use fuse_abi::{self as abi, opcode};
use vm_memory::GuestAddress;
use zerocopy::IntoBytes;

use crate::chain::{gather, load, Control, MODEL_LIMIT};
use crate::frames::{init_request, request, ALL_CLIENT_FLAGS};
use crate::memfs::MemFs;
use crate::replies;

/// The node id of `file` in [`MemFs::populated`].
pub const FILE_NODE: u64 = 2;
/// The handle of `file`, opened read-write by the harness.
pub const FILE_FH: u64 = 1;
/// The handle of the root directory, opened by the harness.
pub const ROOT_FH: u64 = 2;

fn overlap(chain: &SplitChain) -> bool {
    let mut ranges: Vec<(u64, u64)> = chain
        .readable
        .iter()
        .chain(&chain.writable)
        .filter(|b| b.len > 0)
        .map(|b| (b.addr.0, b.addr.0 + u64::from(b.len)))
        .collect();
    ranges.sort_unstable();
    ranges.windows(2).any(|w| w[1].0 < w[0].1)
}

/// The server after INIT, with `file` and the root directory open.
fn prepared() -> Server<MemFs> {
    let server = Server::new(MemFs::populated());
    let setup = [
        init_request(1, ALL_CLIENT_FLAGS),
        request(opcode::OPEN, 2, FILE_NODE, &[abi::OpenIn { flags: libc::O_RDWR as u32, open_flags: 0 }.as_bytes()]),
        request(opcode::OPENDIR, 3, abi::ROOT_ID, &[abi::OpenIn::default().as_bytes()]),
    ];
    for req in setup {
        let mut w = VecWriter::new(MAX_REQUEST_SIZE);
        let result = server.handle_message(&mut SliceReader::new(&req), &mut w);
        let ok = replies::check(&req, MAX_REQUEST_SIZE, true, &result, w.as_slice());
        assert!(ok.is_some(), "harness setup request failed: {:?}", w.as_slice());
    }
    server
}

/// Runs one input.
pub fn run(data: &[u8]) {
    run_with(data);
}

/// Runs one input; returns the reply as read back from guest memory (when
/// the chain was accepted and its buffers do not overlap).
pub fn run_with(data: &[u8]) -> Option<Vec<u8>> {
    let (control, image) = Control::decode(data)?;
    let mem = load(image);
    // Refused chains are the descriptor_chain target's.
    let chain =
        walk_chain(&*mem, GuestAddress(u64::from(control.desc_table)), control.queue_size, control.head).ok()?;
    let server = prepared();
    let checked = !overlap(&chain) && chain.readable_len() <= MODEL_LIMIT && chain.writable_len() <= MODEL_LIMIT;
    let request = if checked { gather(&mem, &chain.readable) } else { Vec::new() };
    let mut r = ChainReader::new(&*mem, &chain).expect("reader over an accepted chain");
    let mut w = ChainWriter::new(&*mem, &chain).expect("writer over an accepted chain");
    let cap = w.available();
    let result = server.handle_message(&mut r, &mut w);
    let written = w.bytes_written();
    assert!(written <= cap, "{written} bytes written into {cap}");
    if !checked {
        return None;
    }
    let reply: Vec<u8> = gather(&mem, &chain.writable).into_iter().take(written).collect();
    replies::check(&request, cap, true, &result, &reply);
    Some(reply)
}

/// A chain: the request in one or more readable buffers, the reply room in
/// writable buffers (for seeds).
pub fn chain_input(req: &[u8], split_request: &[u32], reply: &[u32]) -> Vec<u8> {
    let mut image = crate::chain::Image::default();
    let mut descs = Vec::new();
    let (mut at, mut rest) = (0x200u64, req);
    for &n in split_request.iter().chain([&(rest.len() as u32)]) {
        let n = n.min(rest.len() as u32);
        if n == 0 {
            continue;
        }
        image.put(at, &rest[..n as usize]);
        descs.push(Buffer { addr: GuestAddress(at), len: n });
        rest = &rest[n as usize..];
        at += u64::from(n) + 64;
    }
    let readable = descs.len();
    let mut at = 0x8000u64;
    for &n in reply {
        descs.push(Buffer { addr: GuestAddress(at), len: n });
        at += u64::from(n) + 64;
    }
    let table: Vec<(u64, u32, u16, u16)> = descs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut flags = if i + 1 < descs.len() { 1 } else { 0 };
            if i >= readable {
                flags |= 2;
            }
            (b.addr.0, b.len, flags, (i + 1) as u16)
        })
        .collect();
    image.table(0, &table);
    image.input(Control { queue_size: 64, head: 0, desc_table: 0, read_chunk: 1, write_chunk: 1, copy_bytes: 0 })
}
