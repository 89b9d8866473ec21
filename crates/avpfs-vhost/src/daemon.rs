//! The accept loop: listens on the vhost-user socket, serves one front end
//! at a time, and resets the file system server when it goes away.

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use avpfs_server::{FileSystem, Server};
use avpfs_sys::poll::{poll, PollFd};
use log::{info, warn};
use vhost::vhost_user::{Error as VhostUserError, Listener};
use vhost_user_backend::bitmap::BitmapMmapRegion;
use vhost_user_backend::{Error as DaemonError, ShutdownHandle, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::backend::{self, DeviceConfig, VhostUserFsBackend};

/// Errors of the accept loop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options are not valid.
    #[error("invalid options: {0}")]
    Options(#[from] backend::Error),
    /// Binding the socket failed.
    #[error("cannot listen on {path}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The vhost-user error.
        #[source]
        source: VhostUserError,
    },
    /// Preparing the listening socket (blocking mode, stop event) failed.
    #[error("cannot set up the listening socket: {0}")]
    Setup(#[source] std::io::Error),
    /// Starting the vhost-user daemon for a connection failed.
    #[error("cannot serve a front-end connection: {0}")]
    Daemon(DaemonErrorText),
}

/// The text of a vhost-user-backend daemon error (that type implements no
/// `std::error::Error` and is not `Sync`).
#[derive(Debug)]
pub struct DaemonErrorText(String);

impl fmt::Display for DaemonErrorText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<DaemonError> for Error {
    fn from(e: DaemonError) -> Self {
        Error::Daemon(DaemonErrorText(e.to_string()))
    }
}

/// The default longest polling window of a drained queue (QEMU's default
/// `poll-max-ns` for its I/O threads is 32 µs).
pub const DEFAULT_POLL_MAX: std::time::Duration = std::time::Duration::from_micros(50);

/// The default time FORGETs gather on the hiprio queue before they are
/// served together, with one signal to the guest.
pub const DEFAULT_FORGET_BATCH: std::time::Duration = std::time::Duration::from_millis(2);

/// How the daemon presents the device and what it does when the front end leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostOptions {
    /// The mount tag, 1 to 36 bytes (`mount -t virtiofs TAG /mnt`).
    pub tag: String,
    /// Number of request queues (the hiprio queue comes on top), 1 to 63.
    /// Each is served by its own thread.
    pub num_request_queues: usize,
    /// Largest queue size the front end may set: a power of two.
    pub queue_size: u16,
    /// After a disconnect, wait for the next front end instead of returning.
    pub keep_listening_after_disconnect: bool,
    /// Longest time a worker keeps watching its drained queue for the next
    /// request before it sleeps (adaptive; zero: never poll).
    pub poll_max: std::time::Duration,
    /// Let each queue's worker hand half of a batch's large READs, or half
    /// of a large READ alone, to a helper thread while CPUs are idle, so
    /// that one queue's copies run on two CPUs.
    pub bulk_helper: bool,
    /// How long the hiprio queue's worker lets FORGETs gather after a kick
    /// before it serves them and signals the guest once (zero: at once).
    pub forget_batch: std::time::Duration,
    /// The session's guest and share, named in the log lines of its threads.
    pub label: Option<Arc<avpfs_server::log_context::SessionLabel>>,
    /// Size of the DAX window in bytes (a multiple of the page size; zero:
    /// no window). The back end offers it as shared-memory region 0.
    pub dax_window: u64,
    /// How the front end maps what the back end asks it to map (see
    /// [`avpfs_server::DaxFrontEnd`]).
    pub dax_front_end: avpfs_server::DaxFrontEnd,
}

impl Default for VhostOptions {
    /// Tag `avpfs`, one request queue per host core, queues of up to 1024
    /// entries, return after the first front end leaves (as virtiofsd does),
    /// poll a drained queue for up to [`DEFAULT_POLL_MAX`], bulk helper threads on,
    /// FORGETs gathered for [`DEFAULT_FORGET_BATCH`].
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        VhostOptions {
            tag: "avpfs".into(),
            num_request_queues: cores.min(backend::MAX_QUEUES - 1),
            queue_size: 1024,
            keep_listening_after_disconnect: false,
            poll_max: DEFAULT_POLL_MAX,
            bulk_helper: true,
            forget_batch: DEFAULT_FORGET_BATCH,
            label: None,
            dax_window: 0,
            dax_front_end: Default::default(),
        }
    }
}

impl VhostOptions {
    fn device_config(&self) -> DeviceConfig {
        DeviceConfig {
            tag: self.tag.clone(),
            num_request_queues: self.num_request_queues,
            queue_size: self.queue_size,
            poll_max: self.poll_max,
            bulk_helper: self.bulk_helper,
            forget_batch: self.forget_batch,
            label: self.label.clone(),
            dax_window: self.dax_window,
            dax_front_end: self.dax_front_end,
        }
    }
}

/// Where the daemon listens for the front end.
#[derive(Debug)]
pub enum Socket {
    /// Bind a new socket at this path (a stale socket file is replaced; the
    /// file is removed when the daemon ends).
    Path(PathBuf),
    /// An already bound, listening socket, e.g. inherited with `--fd`.
    Fd(OwnedFd),
    /// An already bound, listening socket.
    Listener(UnixListener),
}

impl From<&Path> for Socket {
    fn from(p: &Path) -> Self {
        Socket::Path(p.to_path_buf())
    }
}

impl From<PathBuf> for Socket {
    fn from(p: PathBuf) -> Self {
        Socket::Path(p)
    }
}

impl From<OwnedFd> for Socket {
    fn from(fd: OwnedFd) -> Self {
        Socket::Fd(fd)
    }
}

impl From<UnixListener> for Socket {
    fn from(l: UnixListener) -> Self {
        Socket::Listener(l)
    }
}

/// What a [`Stopper`] shares with the daemon it stops.
#[derive(Default)]
struct StopState {
    stopping: AtomicBool,
    /// Written to wake the accept loop.
    wake: Option<EventFd>,
    /// The connection being served, if any.
    connection: Mutex<Option<ShutdownHandle>>,
}

/// Stops a running [`VhostDaemon`] from another thread (e.g. a signal handler thread).
#[derive(Clone)]
pub struct Stopper(Arc<StopState>);

impl Stopper {
    /// Whether a front end is connected now.
    pub fn is_connected(&self) -> bool {
        self.0.connection.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Closes the current connection and makes [`VhostDaemon::run`] return.
    pub fn stop(&self) {
        self.0.stopping.store(true, Ordering::Release);
        if let Some(wake) = &self.0.wake {
            let _ = wake.write(1);
        }
        if let Some(conn) = self.0.connection.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            conn.shutdown();
        }
    }
}

/// A vhost-user-fs daemon bound to its socket, ready to [`run`](Self::run).
pub struct VhostDaemon<F: FileSystem> {
    listener: Listener,
    server: Arc<Server<F>>,
    options: VhostOptions,
    stop: Arc<StopState>,
}

impl<F: FileSystem + 'static> VhostDaemon<F> {
    /// Checks `options` and binds (or takes over) the socket.
    pub fn new(socket: impl Into<Socket>, server: Arc<Server<F>>, options: VhostOptions) -> Result<Self, Error> {
        options.device_config().validate()?;
        let listener = match socket.into() {
            Socket::Path(path) => {
                Listener::new(&path, true).map_err(|source| Error::Listen { path: path.clone(), source })?
            }
            Socket::Fd(fd) => Listener::from(UnixListener::from(fd)),
            Socket::Listener(l) => Listener::from(l),
        };
        // An inherited socket may be non-blocking; the accept below must block.
        listener.set_nonblocking(false).map_err(|e| Error::Setup(std::io::Error::other(e)))?;
        let wake = EventFd::new(EFD_NONBLOCK).map_err(Error::Setup)?;
        let stop = Arc::new(StopState { wake: Some(wake), ..Default::default() });
        Ok(VhostDaemon { listener, server, options, stop })
    }

    /// A handle that stops [`run`](Self::run) from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }

    /// Serves front ends until one disconnects (or, with
    /// `keep_listening_after_disconnect`, until stopped). After each
    /// connection the server drops every node and handle of the guest.
    pub fn run(mut self) -> Result<(), Error> {
        loop {
            if !self.wait_for_connection()? {
                return Ok(());
            }
            let result = self.serve_one();
            if let Err(e) = &result {
                warn!("connection ended with an error: {e}");
            }
            if self.stop.stopping.load(Ordering::Acquire) {
                return Ok(());
            }
            if !self.options.keep_listening_after_disconnect {
                return result;
            }
            info!("waiting for the next front end");
        }
    }

    /// Waits until a connection is pending; false when stopped.
    fn wait_for_connection(&self) -> Result<bool, Error> {
        let wake = self.stop.wake.as_ref().map(|w| w.as_raw_fd()).unwrap_or(-1);
        loop {
            if self.stop.stopping.load(Ordering::Acquire) {
                return Ok(false);
            }
            // Both descriptors are owned by `self` and stay open; `wake` is -1
            // (ignored by poll) when there is no stop event.
            let mut fds =
                [PollFd::from_raw_fd(self.listener.as_raw_fd(), libc::POLLIN), PollFd::from_raw_fd(wake, libc::POLLIN)];
            if let Err(e) = poll(&mut fds, -1) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::Setup(e));
            }
            if fds[1].revents() != 0 {
                return Ok(false);
            }
            if fds[0].revents() != 0 {
                return Ok(true);
            }
        }
    }

    /// Accepts the pending connection and serves it until it ends.
    fn serve_one(&mut self) -> Result<(), Error> {
        let backend = Arc::new(VhostUserFsBackend::new(self.server.clone(), self.options.device_config())?);
        let memory = GuestMemoryAtomic::new(GuestMemoryMmap::<BitmapMmapRegion>::new());
        let mut daemon = VhostUserDaemon::new("avpfs-vhost".into(), backend.clone(), memory)?;
        daemon.start(&mut self.listener)?;
        info!("front end connected");
        *self.stop.connection.lock().unwrap_or_else(|e| e.into_inner()) = daemon.shutdown_handle();
        if self.stop.stopping.load(Ordering::Acquire) {
            daemon.request_shutdown();
        }
        let result = daemon.wait();
        *self.stop.connection.lock().unwrap_or_else(|e| e.into_inner()) = None;
        // The worker threads end with the connection.
        for handler in daemon.get_epoll_handlers() {
            handler.send_exit_event();
        }
        info!("front end disconnected: dropping the guest's nodes and handles");
        backend.reset_server();
        backend.release_dax_window();
        match result {
            Ok(()) => Ok(()),
            Err(DaemonError::HandleRequest(VhostUserError::Disconnected | VhostUserError::PartialMessage)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Serves `server` on `socket` with `options` until the front end leaves (or
/// forever with `keep_listening_after_disconnect`). `socket` is a path, an
/// inherited listening fd (`--fd`), or a [`UnixListener`].
pub fn serve<F: FileSystem + 'static>(
    socket: impl Into<Socket>,
    server: Arc<Server<F>>,
    options: VhostOptions,
) -> Result<(), Error> {
    VhostDaemon::new(socket, server, options)?.run()
}
