//! Listeners: `unix:PATH` (local clients, and guests through
//! `vhost-device-vsock`'s hybrid-vsock sockets `U_PORT`) and
//! `vsock:[CID:]PORT` (`AF_VSOCK`, for hosts whose guests reach them
//! through `/dev/vhost-vsock`, or a guest serving its host). Both are
//! served by one accept loop, generic over the stream.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use avpfs_server::FileSystem;
use avpfs_sys::vsock::{VsockAddr, VsockListener, VsockStream, CID_ANY, PORT_ANY};

use crate::{serve_connection, Error, P9Options};

/// Where a 9P server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A unix stream socket at this path.
    Unix(PathBuf),
    /// An AF_VSOCK stream socket on this port.
    Vsock {
        /// The context id bound: [`CID_ANY`] (every CID of this machine,
        /// `vsock:PORT`) or one (`vsock:CID:PORT`).
        cid: u32,
        /// The port.
        port: u32,
    },
}

/// A decimal `u32` of digits only (no sign, no spaces).
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl ListenAddr {
    /// Parses `unix:PATH`, `vsock:PORT` or `vsock:CID:PORT` (decimal, at
    /// most 4294967294: 4294967295 is "any port", which no client could
    /// find).
    pub fn parse(s: &str) -> Result<ListenAddr, Error> {
        let bad = || Error::BadAddress(s.to_string());
        match s.split_once(':') {
            Some(("unix", path)) if !path.is_empty() => Ok(ListenAddr::Unix(PathBuf::from(path))),
            Some(("vsock", rest)) => {
                let (cid, port) = match rest.split_once(':') {
                    Some((cid, port)) => (number(cid).ok_or_else(bad)?, port),
                    None => (CID_ANY, rest),
                };
                match number(port) {
                    Some(port) if port != PORT_ANY => Ok(ListenAddr::Vsock { cid, port }),
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }

    /// `vsock:PORT` (any CID).
    pub fn vsock(port: u32) -> ListenAddr {
        ListenAddr::Vsock { cid: CID_ANY, port }
    }
}

/// The address as [`ListenAddr::parse`] reads it.
impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            ListenAddr::Vsock { cid: CID_ANY, port } => write!(f, "vsock:{port}"),
            ListenAddr::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ListenAddr::parse(s)
    }
}

/// A bound, listening 9P socket, for [`listen`].
#[derive(Debug)]
pub enum Listener {
    /// A unix stream socket.
    Unix(UnixListener),
    /// An AF_VSOCK stream socket.
    Vsock(VsockListener),
}

impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Listener {
        Listener::Unix(l)
    }
}

impl From<VsockListener> for Listener {
    fn from(l: VsockListener) -> Listener {
        Listener::Vsock(l)
    }
}

impl Listener {
    /// The address it listens on (`unix:` with an empty path for an
    /// unnamed unix socket).
    pub fn addr(&self) -> ListenAddr {
        match self {
            Listener::Unix(l) => {
                let path = l.local_addr().ok().and_then(|a| a.as_pathname().map(PathBuf::from));
                ListenAddr::Unix(path.unwrap_or_default())
            }
            Listener::Vsock(l) => {
                let a = l.local_addr();
                ListenAddr::Vsock { cid: a.cid, port: a.port }
            }
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Listener::Unix(l) => l.as_fd(),
            Listener::Vsock(l) => l.as_fd(),
        }
    }
}

/// Binds and listens on `addr` (a unix socket's path must not exist yet).
/// A vsock port already bound is [`Error::VsockPortInUse`], a CID not
/// this machine's [`Error::VsockCidNotLocal`], no AF_VSOCK
/// [`Error::NoVsock`].
pub fn bind(addr: &ListenAddr) -> Result<Listener, Error> {
    let listen_err = |source| Error::Listen { addr: addr.to_string(), source };
    match addr {
        ListenAddr::Unix(path) => UnixListener::bind(path).map(Listener::Unix).map_err(listen_err),
        &ListenAddr::Vsock { cid, port } => match VsockListener::bind(VsockAddr::new(cid, port)) {
            Ok(l) => Ok(Listener::Vsock(l)),
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
                Err(Error::VsockPortInUse { addr: addr.to_string(), port })
            }
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                Err(Error::VsockCidNotLocal { addr: addr.to_string(), cid })
            }
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                Err(Error::NoVsock { addr: addr.to_string(), source: e })
            }
            Err(e) => Err(listen_err(e)),
        },
    }
}

/// A listening socket of one kind, as the accept loop sees it.
trait Accept {
    /// Its connections.
    type Stream: Read + Write + Send + 'static;

    /// Waits for a connection; returns it and its peer, for the logs.
    fn accept_one(&self) -> io::Result<(Self::Stream, String)>;

    /// Sets the connection's write timeout.
    fn set_write_timeout(stream: &Self::Stream, timeout: Option<Duration>) -> io::Result<()>;
}

impl Accept for UnixListener {
    type Stream = UnixStream;

    /// The peer of a unix socket is named by its process and user (its
    /// address is usually unnamed).
    fn accept_one(&self) -> io::Result<(UnixStream, String)> {
        let (stream, _) = self.accept()?;
        let peer = match avpfs_sys::socket::peer_cred(stream.as_fd()) {
            Ok(c) => format!("pid {} uid {}", c.pid, c.uid),
            Err(_) => "an unknown peer".into(),
        };
        Ok((stream, peer))
    }

    fn set_write_timeout(stream: &UnixStream, timeout: Option<Duration>) -> io::Result<()> {
        stream.set_write_timeout(timeout)
    }
}

impl Accept for VsockListener {
    type Stream = VsockStream;

    /// The peer of a vsock connection is its CID and port.
    fn accept_one(&self) -> io::Result<(VsockStream, String)> {
        let (stream, peer) = self.accept()?;
        Ok((stream, format!("vsock {}:{}", peer.cid, peer.port)))
    }

    fn set_write_timeout(stream: &VsockStream, timeout: Option<Duration>) -> io::Result<()> {
        stream.set_write_timeout(timeout)
    }
}

/// Accepts connections on `listener` for ever, each served on a thread of
/// its own by [`serve_connection`] over a file system `session()` makes
/// for it (for a passthrough share: `|| Arc::new(share.session())`, behind
/// the share's `PolicyFs`); the connection's reference is dropped when it
/// ends, so a caller that keeps a `Weak` (to change the policy of the live
/// connections, say) sees it go. Each
/// connection gets [`P9Options::write_timeout`]. A connection that fails
/// ends alone; the listener goes on. Connections and their ends are
/// logged with the peer (a unix peer's pid and uid, a vsock peer's CID
/// and port).
pub fn listen<F, M>(listener: impl Into<Listener>, options: P9Options, session: M) -> Result<(), Error>
where
    F: FileSystem + 'static,
    M: FnMut() -> Arc<F>,
{
    let listener = listener.into();
    let addr = listener.addr();
    match listener {
        Listener::Unix(l) => accept_loop(&l, &addr, options, session),
        Listener::Vsock(l) => accept_loop(&l, &addr, options, session),
    }
}

/// [`listen`]'s loop over one kind of socket.
fn accept_loop<L, F, M>(listener: &L, addr: &ListenAddr, options: P9Options, mut session: M) -> Result<(), Error>
where
    L: Accept,
    F: FileSystem + 'static,
    M: FnMut() -> Arc<F>,
{
    let mut next: u64 = 0;
    loop {
        let n = next;
        let (stream, peer) = match listener.accept_one() {
            Ok(s) => s,
            Err(e) => {
                log::warn!("9p: accept on {addr}: {e}");
                continue;
            }
        };
        next += 1;
        log::info!("9p: connection {n} from {peer} on {addr}");
        if let Err(e) = L::set_write_timeout(&stream, options.write_timeout) {
            log::warn!("9p: connection {n} ({peer}): cannot set a write timeout: {e}");
        }
        let fs = session();
        let options = options.clone();
        thread::Builder::new()
            .name(format!("9p-conn-{n}"))
            .spawn(move || match serve_connection(stream, &*fs, &options) {
                Ok(()) => log::info!("9p: connection {n} ({peer}) closed by the client"),
                Err(e) => log::warn!("9p: connection {n} ({peer}): {e}"),
            })
            .map_err(Error::Thread)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(ListenAddr::parse("unix:/run/x_564").unwrap(), ListenAddr::Unix("/run/x_564".into()));
        assert_eq!(ListenAddr::parse("vsock:564").unwrap(), ListenAddr::Vsock { cid: CID_ANY, port: 564 });
        assert_eq!(ListenAddr::parse("vsock:564").unwrap(), ListenAddr::vsock(564));
        assert_eq!(ListenAddr::parse("vsock:3:5640").unwrap(), ListenAddr::Vsock { cid: 3, port: 5640 });
        assert_eq!(ListenAddr::parse("vsock:4294967294").unwrap(), ListenAddr::vsock(4294967294));
        for bad in [
            "unix:",
            "vsock:",
            "vsock:x",
            "vsock:abc",
            "vsock:99999999999",
            "vsock:4294967295",
            "vsock:+5",
            "vsock: 5",
            "vsock:-1",
            "vsock:3:",
            "vsock::5",
            "vsock:x:5",
            "vsock:1:2:3",
            "tcp:1",
            "564",
            "",
        ] {
            assert!(matches!(ListenAddr::parse(bad), Err(Error::BadAddress(_))), "{bad}");
        }
    }

    #[test]
    fn addresses_print_as_they_parse() {
        for a in ["unix:/run/x_564", "vsock:5640", "vsock:3:5640"] {
            assert_eq!(ListenAddr::parse(a).unwrap().to_string(), a);
        }
        let e = ListenAddr::parse("vsock:abc").unwrap_err().to_string();
        assert!(e.contains("\"vsock:abc\"") && e.contains("vsock:PORT"), "{e}");
    }

    #[test]
    fn a_unix_listener_names_its_address() {
        let dir = tempfile::tempdir().unwrap();
        let addr = ListenAddr::Unix(dir.path().join("p9.sock"));
        let l = bind(&addr).unwrap();
        assert_eq!(l.addr(), addr);
        let e = bind(&addr).unwrap_err().to_string();
        assert!(e.contains(&addr.to_string()), "{e}");
    }

    /// A vsock port the kernel picks, so tests never take a port a
    /// service of the machine uses; `None` (and why) without AF_VSOCK.
    fn vsock_port() -> Option<VsockListener> {
        match VsockListener::bind(VsockAddr::new(CID_ANY, PORT_ANY)) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("skipped: no AF_VSOCK here ({e})");
                None
            }
        }
    }

    #[test]
    fn a_vsock_port_in_use_is_named_in_the_error() {
        let Some(taken) = vsock_port() else { return };
        let port = taken.local_addr().port;
        let addr = ListenAddr::vsock(port);
        let e = bind(&addr).unwrap_err();
        assert!(matches!(e, Error::VsockPortInUse { port: p, .. } if p == port), "{e}");
        let text = e.to_string();
        assert!(text.contains(&format!("vsock port {port} is already in use")), "{text}");
        drop(taken);
        let l = bind(&addr).unwrap();
        assert_eq!(l.addr(), addr);
    }

    #[test]
    fn a_cid_not_of_this_machine_is_named_in_the_error() {
        let Some(_vsock_here) = vsock_port() else { return };
        let e = bind(&ListenAddr::Vsock { cid: 0x7fff_fff0, port: PORT_ANY }).unwrap_err();
        assert!(matches!(e, Error::VsockCidNotLocal { cid: 0x7fff_fff0, .. }), "{e}");
    }
}
