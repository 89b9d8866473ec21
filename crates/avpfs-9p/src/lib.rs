//! The 9P2000.L front end of avpfs: serves one 9P connection on top of any
//! [`avpfs_server::FileSystem`], so the same passthrough and the same
//! policy layer (`avpfs_policy::PolicyFs`) serve virtio-fs and 9P guests,
//! and a policy means the same on both.
//!
//! # Layers
//!
//! - `p9-abi` decodes and encodes frames (no I/O, no state).
//! - [`Session`] holds one connection's state (msize, fids, the names it
//!   walked) and maps each request onto the `FileSystem` trait. It takes a
//!   frame and leaves the reply frame in a buffer.
//! - [`serve_connection`] runs a session over a byte stream, one request at
//!   a time; [`listen`] accepts connections on a unix socket, one thread
//!   and one session per connection.
//!
//! # The mapping onto `FileSystem`
//!
//! - A fid names a walked path. Each name walked is one
//!   `FileSystem::lookup`, and the session keeps the lookup reference for
//!   as long as a fid (or a fid below it) needs the name; `Tclunk` (and the
//!   end of the connection) releases the open handle and forgets the node.
//!   A walk is resolved name by name beneath the attach root: `..` goes back
//!   up the path the client walked down and stays at the attach root (as
//!   `/..` is `/`), so a client can never name a file outside its attach,
//!   whatever it sends. Names with `/` never reach the file system (the
//!   codec refuses them).
//! - `Tread` data is read by the file system straight into the reply
//!   buffer after room for the `Rread` header; `Twrite` data is written by
//!   the file system straight from the request frame: no copy besides the
//!   socket's.
//! - `Treaddir` offsets are the file system's (FUSE) readdir offsets: the
//!   offset of an entry is where the next read continues.
//! - qids: `path` is the inode number the file system reports, `type`
//!   follows the mode, `version` mixes mtime and size (QEMU's choice).
//! - Locks are the file system's host locks (`setlk`/`getlk`, never
//!   waiting): a 9P client and a virtio-fs client of one tree see each
//!   other's locks. `Tlock` with the `BLOCK` flag answers `Blocked` while
//!   the lock is held; the Linux client waits and asks again. The lock
//!   owner is the client's `proc_id` within this connection (the Linux
//!   client sends the locking process's pid; its `client_id`, the host
//!   name, is the same for the whole connection). Clunking an open fid
//!   releases the locks its owners took through it.
//! - Extended attributes: `Txattrwalk` reads the value (or the name list)
//!   once and serves it to `Tread`; `Txattrcreate` buffers up to the size
//!   the client announced (at most [`P9Options::max_xattr_size`]) and sets
//!   it on `Tclunk`; an announced size of 0 removes the attribute (how the
//!   Linux client sends `removexattr`).
//! - Errors are `Rlerror` with the file system's errno.
//!
//! # Credentials
//!
//! 9P2000.L carries the caller's numeric uid in `Tattach`'s `n_uname`
//! (with `access=user` the Linux client attaches once per local user and
//! uses that user's fids for its requests), and a group only where a new
//! file's group is named (`Tlcreate`, `Tmkdir`, `Tsymlink`, `Tmknod`). So:
//! each fid acts for the uid of its attach (or
//! [`P9Options::anonymous_uid`] when `n_uname` is unset); the gid is the
//! request's where it carries one, else [`P9Options::default_gid`] (by
//! default the same number as the uid). The uid is the client's claim,
//! trusted as far as a virtio-fs guest's `uid` in a FUSE header is: the
//! share's policy (its id maps, read-only and hidden paths) is what bounds
//! it. The `uname` string is not used.
//!
//! # Order, `Tflush` and clients that do not read
//!
//! A connection's requests are served in order on the connection's thread,
//! so when a `Tflush` arrives the request it names has been answered
//! already: it is acknowledged with `Rflush` at once. A `Tversion` (first,
//! or again later) clunks every fid. A client that never reads its
//! replies blocks only its own connection's thread (in `write`);
//! [`listen`] sets [`P9Options::write_timeout`] on each socket, after
//! which the connection is closed.
//!
//! # A hostile client
//!
//! Every bad request gets an `Rlerror`: an unknown fid `EBADF`, a fid
//! already in use `EEXIST`, a walk name with `/` or NUL `EINVAL`, an
//! unknown message type `EOPNOTSUPP`, a body that does not parse
//! `EPROTO`, any request before `Tversion` `EPROTO`; counts are capped by
//! msize. A frame larger than msize (or smaller than a header) closes the
//! connection: the stream's framing cannot be trusted any more. Nothing a
//! client sends makes the server panic.
//!
//! # vsock
//!
//! `vsock:PORT` (or `vsock:CID:PORT`) listens on an `AF_VSOCK` stream
//! socket (`avpfs_sys::vsock`, where its `unsafe` code lives): on a host
//! with `/dev/vhost-vsock`, guests connect to the host's CID (2) and that
//! port. [`listen`] serves vsock connections as it serves unix ones: one
//! accept loop, generic over the stream, one thread and one session per
//! connection, the same write timeout and limits; the logs name a vsock
//! peer by its CID and port. On hosts without `/dev/vhost-vsock`, guests
//! reach the host through `vhost-device-vsock`'s unix sockets `U_PORT`,
//! and `unix:U_564` serves them.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod fids;
mod io;
mod listen;
mod session;

use std::io::{Read, Write};
use std::time::Duration;

use avpfs_server::FileSystem;
use p9_abi::{frame_size, FrameError};

pub use listen::{bind, listen, ListenAddr, Listener};
pub use session::Session;

/// Errors of the 9P front end: why a connection or a listener ended.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading from the connection failed (or it ended inside a frame).
    #[error("cannot read from the 9P connection: {0}")]
    Read(#[source] std::io::Error),
    /// Writing a reply failed (the client went away, or did not read its
    /// replies within the write timeout).
    #[error("cannot write to the 9P connection: {0}")]
    Write(#[source] std::io::Error),
    /// The client sent an unsound frame; the connection was closed.
    #[error("closing the 9P connection: {0}")]
    Frame(#[from] FrameError),
    /// A listen address is neither `unix:PATH` nor `vsock:[CID:]PORT`.
    #[error("{0:?}: expected unix:PATH, vsock:PORT or vsock:CID:PORT (decimal, below 4294967295)")]
    BadAddress(String),
    /// Another socket has bound the vsock port already.
    #[error("cannot listen on {addr}: vsock port {port} is already in use")]
    VsockPortInUse {
        /// The address asked for.
        addr: String,
        /// The port.
        port: u32,
    },
    /// `vsock:CID:PORT` names a CID that is not this machine's.
    #[error("cannot listen on {addr}: CID {cid} is not this machine's (vsock:PORT listens on every CID it has)")]
    VsockCidNotLocal {
        /// The address asked for.
        addr: String,
        /// The CID.
        cid: u32,
    },
    /// AF_VSOCK sockets cannot be made: the kernel has no `vsock` module,
    /// or a service manager refuses the family (systemd's
    /// `RestrictAddressFamilies=`).
    #[error("cannot listen on {addr}: no AF_VSOCK sockets here (no vsock in the kernel, or the address family is restricted: {source})")]
    NoVsock {
        /// The address asked for.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address (`unix:PATH`, `vsock:PORT`).
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Starting a connection's thread failed.
    #[error("cannot start a 9P connection thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The limits of a 9P server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P9Options {
    /// The largest msize agreed (a client asking less gets what it asks).
    /// The Linux client asks 512 KiB by default, and 6.1 caps `trans=fd`
    /// at 64 KiB.
    pub max_msize: u32,
    /// The most fids one connection may hold (`EMFILE` beyond).
    pub max_fids: usize,
    /// The largest extended attribute value read or written (`E2BIG`
    /// beyond; 64 KiB is Linux's own limit).
    pub max_xattr_size: usize,
    /// The uid of an attach without `n_uname`.
    pub anonymous_uid: u32,
    /// The gid of requests that carry none; `None`: the uid's number.
    pub default_gid: Option<u32>,
    /// The share's path on the host, as clients of other 9P servers name
    /// it in `aname` (diod: `aname=/srv/share`): an aname equal to it, or
    /// beginning with it and `/`, names the share's root or a directory in
    /// it. Any other aname is a path inside the share (empty or `/`: its
    /// root). An aname never leads outside the share.
    pub share_path: Option<Vec<u8>>,
    /// How long [`listen`]'s connections wait for a client to take a
    /// reply before they close it.
    pub write_timeout: Option<Duration>,
}

impl Default for P9Options {
    fn default() -> Self {
        P9Options {
            max_msize: 1 << 20,
            max_fids: 65536,
            max_xattr_size: 64 * 1024,
            anonymous_uid: 65534,
            default_gid: None,
            share_path: None,
            write_timeout: Some(Duration::from_secs(60)),
        }
    }
}

impl P9Options {
    /// The path inside the share an attach's `aname` names.
    pub(crate) fn aname_path<'a>(&self, aname: &'a [u8]) -> &'a [u8] {
        if let Some(share) = self.share_path.as_deref() {
            let share = share.strip_suffix(b"/").unwrap_or(share);
            if let Some(rest) = aname.strip_prefix(share) {
                if rest.is_empty() || rest.starts_with(b"/") {
                    return rest;
                }
            }
        }
        aname
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` when the stream ends
/// before the first byte (a clean end between frames).
fn read_frame_start<S: Read>(stream: &mut S, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Serves one 9P2000.L connection until the client closes it (`Ok`) or
/// sends an unsound frame, or the stream fails (`Err`).
///
/// Requests are read one frame at a time (a frame's size is checked
/// against msize before the rest is read) and answered in order with one
/// `write_all` each. Whatever the session holds is released when this
/// returns; `fs` itself is left as it is (with `Share::session()`, drop
/// the session's file system afterwards).
pub fn serve_connection<S, F>(mut stream: S, fs: &F, options: &P9Options) -> Result<(), Error>
where
    S: Read + Write,
    F: FileSystem + ?Sized,
{
    let mut session = Session::new(fs, options.clone());
    let mut frame = Vec::new();
    let mut out = Vec::new();
    loop {
        let mut prefix = [0u8; 4];
        if !read_frame_start(&mut stream, &mut prefix).map_err(Error::Read)? {
            return Ok(());
        }
        let size = frame_size(prefix, session.msize())?;
        frame.clear();
        frame.extend_from_slice(&prefix);
        frame.resize(size, 0);
        stream.read_exact(&mut frame[4..]).map_err(Error::Read)?;
        session.handle_frame(&frame, &mut out)?;
        stream.write_all(&out).map_err(Error::Write)?;
    }
}
