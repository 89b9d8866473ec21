//! The avpfs FUSE protocol server.
//!
//! It reads one request from a [`Reader`], calls a [`FileSystem`], and writes
//! the reply into a [`Writer`]. No transport type appears here: the same
//! server answers the host kernel through `/dev/fuse` and guests through
//! virtqueues.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod args;
pub mod dax;
pub mod filesystem;
pub mod interrupt;
pub mod log_context;
pub mod migration;
mod ops;
pub mod ratelimit;
pub mod reply;
pub mod server;
pub mod stats;
pub mod transport;

pub use dax::{DaxFrontEnd, DaxWindow, DAX_ALIGNMENT, DAX_ALIGNMENT_LOG2};
pub use filesystem::{
    enosys, Context, CopyRange, CreateRequest, DirEntry, DirSink, Entry, FallocateRequest, FileSystem, Handle,
    InitOptions, LockOwner, LockRequest, MknodRequest, NodeId, OpenReply, ReadRequest, RenameRequest, SetattrIn,
    SetxattrRequest, TimeSpec, Usage, WantedFlags, WriteRequest,
};
pub use migration::MigrationError;
pub use server::{Error, Handled, Server, MAX_REQUEST_SIZE, MAX_WRITE};
pub use stats::{Stats, StatsSnapshot};
pub use transport::{Reader, SliceReader, VecWriter, Writer, ZeroCopyReader, ZeroCopyWriter};
