//! [`ChainServer`]: serves one walked chain with the FUSE server. The
//! request is read with a [`ChainReader`] and the reply written with a
//! [`ChainWriter`] straight in the chain's guest buffers; a chain the server
//! cannot take gets an error reply ([`error_reply`]) when it has room for
//! one.

use avpfs_server::{FileSystem, Handled, Server, Writer};
use fuse_abi::OutHeader;
use vhost_user_backend::bitmap::BitmapMmapRegion;
use vm_memory::GuestMemoryLoadGuard;
use zerocopy::IntoBytes;

use crate::backend::GuestMemory;
use crate::chain_kind::{request_header, WalkedChain};
use crate::descriptor_chain::{ChainReader, ChainWriter, SplitChain};

/// Serves the chains of queue `queue` with `server`, in one snapshot of
/// guest memory.
pub(crate) struct ChainServer<'a, F: FileSystem> {
    /// The FUSE server.
    pub(crate) server: &'a Server<F>,
    /// The queue the chains came from (for the logs, and to name the helper
    /// thread that may split a large read).
    pub(crate) queue: usize,
    /// The guest memory the chains are in.
    pub(crate) mem: &'a GuestMemoryLoadGuard<GuestMemory>,
}

impl<F: FileSystem> ChainServer<'_, F> {
    /// Serves one chain; returns the number of bytes written to its
    /// writable part. `split_reads`: a large read may be split with the
    /// calling worker's helper thread ([`ChainWriter::with_read_split`]).
    pub(crate) fn serve(&self, walked: &WalkedChain, split_reads: bool) -> u32 {
        let (queue, mem, head) = (self.queue, self.mem, walked.head);
        let chain = match &walked.chain {
            Ok(chain) => chain,
            Err(bad) => {
                avpfs_server::guest_warn!(target: crate::LOG_TARGET, "queue {queue}: bad descriptor chain at head {head}: {}", bad.error);
                return error_reply(mem, &bad.valid, libc::EIO);
            }
        };
        let (mut r, mut w) = match (ChainReader::new(&**mem, chain), ChainWriter::new(&**mem, chain)) {
            (Ok(r), Ok(w)) => (r, w.with_read_split(split_reads.then_some(queue))),
            (Err(e), _) | (_, Err(e)) => {
                avpfs_server::guest_warn!(target: crate::LOG_TARGET, "queue {queue}: descriptor chain at head {head}: {e}");
                return 0;
            }
        };
        match self.server.handle_message(&mut r, &mut w) {
            Ok(Handled::Reply(len)) => u32::try_from(len.min(w.bytes_written())).unwrap_or(0),
            Ok(Handled::NoReply) => 0,
            Err(avpfs_server::Error::ShortHeader(n)) => {
                avpfs_server::guest_warn!(target: crate::LOG_TARGET, "queue {queue}: request of {n} bytes has no complete FUSE header");
                error_reply(mem, chain, libc::EIO)
            }
            Err(e) => {
                avpfs_server::guest_warn!(target: crate::LOG_TARGET, "queue {queue}: {e}");
                0
            }
        }
    }
}

/// Writes an error reply into the writable part of a chain the server could
/// not take, when it has room for a reply header. The `unique` comes from the
/// request header when the readable part holds one (0 otherwise: the guest
/// matches replies by chain, not by `unique`). Returns the used length.
pub(crate) fn error_reply(mem: &GuestMemoryLoadGuard<GuestMemory>, chain: &SplitChain, errno: i32) -> u32 {
    let unique = request_header(mem, chain).map_or(0, |h| h.unique);
    let Ok(mut w) = ChainWriter::<BitmapMmapRegion>::from_buffers(&**mem, &chain.writable) else {
        return 0;
    };
    let len = std::mem::size_of::<OutHeader>() as u32;
    let out = OutHeader { len, error: -errno, unique };
    match w.write_all(out.as_bytes()) {
        Ok(()) => len,
        Err(_) => 0,
    }
}
