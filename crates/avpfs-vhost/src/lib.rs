//! avpfs-vhost: the vhost-user-fs device backend of avpfs.
//!
//! A VMM (QEMU's `vhost-user-fs-pci`, cloud-hypervisor, ...) connects to a
//! unix socket and hands over the guest memory and the virtqueues through the
//! vhost-user protocol. Each descriptor chain the guest's virtio-fs driver
//! puts in a queue carries one FUSE request (device-readable buffers) and the
//! room for its reply (device-writable buffers); the chain is validated
//! ([`descriptor_chain`]), given to the transport-free [`avpfs_server::Server`]
//! as a [`avpfs_server::Reader`]/[`avpfs_server::Writer`] pair, and returned to
//! the used ring.
//!
//! Entry point for the daemon: [`serve`] (or [`VhostDaemon`] for a daemon
//! that can be stopped from another thread).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn run<F: avpfs_server::FileSystem + 'static>(fs: F) -> Result<(), avpfs_vhost::Error> {
//! let server = Arc::new(avpfs_server::Server::new(fs));
//! let options = avpfs_vhost::VhostOptions { tag: "share".into(), ..Default::default() };
//! avpfs_vhost::serve(std::path::Path::new("/run/avpfs.sock"), server, options)
//! # }
//! ```

#![deny(missing_docs)]
// guest_io, the one module with unsafe code (vectored I/O straight into
// guest memory), allows it for itself; every other system call goes through
// avpfs-sys.
#![deny(unsafe_code)]

pub mod backend;
pub mod bulk_helper;
mod chain_kind;
mod chain_reader_writer;
mod chain_server;
pub mod daemon;
pub mod descriptor_chain;
mod device_state;
mod guest_io;
mod poll_window;
mod queue_worker;
pub mod shmem;
mod signal_pacer;
mod virtqueue;

pub use backend::{DeviceConfig, VhostUserFsBackend};

/// The log target of the queue workers' records: the module they came from
/// before the backend was split (`AVPFS_LOG=avpfs_vhost::backend=debug`
/// keeps selecting them).
pub(crate) const LOG_TARGET: &str = "avpfs_vhost::backend";
pub use daemon::{serve, Error, Socket, Stopper, VhostDaemon, VhostOptions, DEFAULT_FORGET_BATCH, DEFAULT_POLL_MAX};
