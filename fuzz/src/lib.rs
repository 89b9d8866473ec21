//! Fuzz targets of avpfs (cargo-fuzz / libFuzzer), and what they share with
//! the seed corpus generator and the tests of this crate.
//!
//! - `fuse_request` ([`fuse`]): FUSE request decoding and dispatch through
//!   `avpfs_server::Server`, over the in-memory [`memfs`] or (feature
//!   `passthrough`) the passthrough on a sandboxed tmpfs share ([`sandbox`]);
//!   input format in [`frames`], reply invariants in [`replies`].
//! - `descriptor_chain` ([`chain`]): avpfs-vhost's descriptor-chain walker,
//!   reader and writer over a small guest memory.
//! - `virtio_request` ([`virtio`]): one FUSE request carried by a descriptor
//!   chain, served over `ChainReader`/`ChainWriter` as avpfs-vhost does.
//! - `p9_codec` ([`p9`]): the 9P2000.L codec of `p9-abi` on a stream of
//!   frames: decode, re-encode, error actions.
//! - `p9_server` ([`p9_server`]): the 9P2000.L server of `avpfs-9p` on a
//!   stream of frames, against the passthrough or [`memfs`].
//! - [`seeds`]: the seed corpus, written by `src/bin/gen_corpus.rs`.
//!
//! Run them with `scripts/fuzz.sh` at the workspace root.

#![deny(missing_docs)]

pub mod chain;
pub mod frames;
pub mod fuse;
pub mod memfs;
pub mod p9;
pub mod p9_server;
pub mod replies;
pub mod sandbox;
pub mod seeds;
pub mod virtio;
