//! `AF_VSOCK` stream sockets: a listener bound to a port (on any or one
//! context id) and the connected streams it accepts, with the parts of
//! [`std::os::unix::net::UnixStream`]'s API a server needs (`Read`,
//! `Write`, read and write timeouts, the peer's address).
//!
//! A vsock address is a context id (CID: which machine, 2 is the host) and
//! a port. Whether a connection can be made at all depends on the kernel's
//! transports: a host needs `vhost_vsock` (`/dev/vhost-vsock`) for its
//! guests to reach it, a guest its virtio transport, and a connection to
//! the machine itself needs `vsock_loopback` (CID 1, [`CID_LOCAL`]).

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::util::{cvt, err, retry};

/// Any context id: a listener bound to it accepts connections addressed to
/// every CID of this machine (`VMADDR_CID_ANY`).
pub const CID_ANY: u32 = libc::VMADDR_CID_ANY;
/// The machine itself, through the loopback transport (`VMADDR_CID_LOCAL`).
pub const CID_LOCAL: u32 = libc::VMADDR_CID_LOCAL;
/// The host, as its guests name it (`VMADDR_CID_HOST`).
pub const CID_HOST: u32 = libc::VMADDR_CID_HOST;
/// "Any port": a bind to it picks a free one (`VMADDR_PORT_ANY`).
pub const PORT_ANY: u32 = libc::VMADDR_PORT_ANY;

/// `IOCTL_VM_SOCKETS_GET_LOCAL_CID` (`_IO(7, 0xb9)`, linux/vm_sockets.h),
/// which the libc crate does not define.
const IOCTL_VM_SOCKETS_GET_LOCAL_CID: libc::c_ulong = 0x7b9;

/// The length of a `sockaddr_vm`, as the socket calls take it.
const ADDR_LEN: libc::socklen_t = core::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;

/// A vsock address: a context id and a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VsockAddr {
    /// The context id ([`CID_ANY`] for a listener on every CID).
    pub cid: u32,
    /// The port.
    pub port: u32,
}

impl VsockAddr {
    /// The address `cid`:`port`.
    pub fn new(cid: u32, port: u32) -> VsockAddr {
        VsockAddr { cid, port }
    }

    fn to_raw(self) -> libc::sockaddr_vm {
        // SAFETY: sockaddr_vm is plain old data (integers and a byte
        // array): all zeroes is a valid value.
        let mut raw: libc::sockaddr_vm = unsafe { core::mem::zeroed() };
        raw.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        raw.svm_cid = self.cid;
        raw.svm_port = self.port;
        raw
    }

    fn from_raw(raw: &libc::sockaddr_vm) -> VsockAddr {
        VsockAddr { cid: raw.svm_cid, port: raw.svm_port }
    }
}

/// `CID:PORT`, with `any` for [`CID_ANY`].
impl fmt::Display for VsockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cid {
            CID_ANY => write!(f, "any:{}", self.port),
            cid => write!(f, "{cid}:{}", self.port),
        }
    }
}

/// A new `AF_VSOCK` stream socket, close-on-exec.
fn stream_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    let fd = cvt(unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The address `fd` is bound to (`getsockname`).
fn local_addr_of(fd: BorrowedFd<'_>) -> io::Result<VsockAddr> {
    let mut raw = VsockAddr::new(0, 0).to_raw();
    let mut len = ADDR_LEN;
    // SAFETY: `fd` is open for the call; `raw` is a sockaddr_vm valid for
    // writes of `len` bytes, and `len` is valid for writes.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), (&mut raw as *mut libc::sockaddr_vm).cast(), &mut len) })?;
    Ok(VsockAddr::from_raw(&raw))
}

/// Whether this kernel has `AF_VSOCK` sockets at all (`socket(2)` does
/// not answer `EAFNOSUPPORT`): `Err` with the reason when it has not.
pub fn available() -> io::Result<()> {
    stream_socket().map(drop)
}

/// This machine's own context id, from `/dev/vsock`
/// (`IOCTL_VM_SOCKETS_GET_LOCAL_CID`): a guest's CID in a guest,
/// [`CID_HOST`] on a host with no guest transport.
pub fn local_cid() -> io::Result<u32> {
    let dev = std::fs::File::open("/dev/vsock")?;
    let mut cid: u32 = 0;
    // SAFETY: `dev` is open for the call; the request writes one unsigned
    // int to the pointer, which points to `cid`.
    cvt(unsafe { libc::ioctl(dev.as_raw_fd(), IOCTL_VM_SOCKETS_GET_LOCAL_CID, &mut cid as *mut u32) })?;
    Ok(cid)
}

/// A listening `AF_VSOCK` stream socket.
#[derive(Debug)]
pub struct VsockListener {
    fd: OwnedFd,
    addr: VsockAddr,
}

impl VsockListener {
    /// Binds a stream socket to `addr` and listens (backlog 128). A port
    /// another socket has bound fails with `EADDRINUSE`; a CID that is not
    /// this machine's with `EADDRNOTAVAIL`; a kernel without vsock with
    /// `EAFNOSUPPORT`.
    pub fn bind(addr: VsockAddr) -> io::Result<VsockListener> {
        let fd = stream_socket()?;
        let raw = addr.to_raw();
        // SAFETY: `fd` is open for the call; `raw` is a sockaddr_vm of
        // ADDR_LEN bytes, only read.
        cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw as *const libc::sockaddr_vm).cast(), ADDR_LEN) })?;
        // SAFETY: `fd` is open for the call; listen(2) takes no pointers.
        cvt(unsafe { libc::listen(fd.as_raw_fd(), 128) })?;
        // The port the kernel chose when `addr` asked for PORT_ANY.
        let addr = local_addr_of(fd.as_fd())?;
        Ok(VsockListener { fd, addr })
    }

    /// The address it is bound to (the port picked, for [`PORT_ANY`]).
    pub fn local_addr(&self) -> VsockAddr {
        self.addr
    }

    /// Waits for a connection (`accept4`, close-on-exec; `EINTR` retried)
    /// and returns it with its peer's address.
    pub fn accept(&self) -> io::Result<(VsockStream, VsockAddr)> {
        let mut raw = VsockAddr::new(0, 0).to_raw();
        let fd = retry(|| {
            let mut len = ADDR_LEN;
            // SAFETY: the listener's descriptor is open for the call; `raw`
            // is a sockaddr_vm valid for writes of `len` bytes, and `len`
            // is valid for writes.
            unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    (&mut raw as *mut libc::sockaddr_vm).cast(),
                    &mut len,
                    libc::SOCK_CLOEXEC,
                )
            }
        })?;
        // SAFETY: `fd` was just returned by accept4 and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let peer = VsockAddr::from_raw(&raw);
        Ok((VsockStream { fd, peer }, peer))
    }

    /// Sets or clears `O_NONBLOCK` (then [`accept`](Self::accept) answers
    /// `WouldBlock` when no connection waits).
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        set_nonblocking(self.fd.as_fd(), nonblocking)
    }
}

impl AsFd for VsockListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for VsockListener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// `ioctl(FIONBIO)`, as the standard library's sockets do it.
fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    let mut on = libc::c_int::from(nonblocking);
    // SAFETY: `fd` is open for the call; FIONBIO reads one int from the
    // pointer, which points to `on`.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONBIO, &mut on as *mut libc::c_int) })?;
    Ok(())
}

/// A connected `AF_VSOCK` stream.
#[derive(Debug)]
pub struct VsockStream {
    fd: OwnedFd,
    peer: VsockAddr,
}

impl VsockStream {
    /// Connects to `addr` (the kernel gives up after its vsock connect
    /// timeout, 2 s by default, with `ETIMEDOUT`; `ENODEV` when no
    /// transport reaches that CID).
    pub fn connect(addr: VsockAddr) -> io::Result<VsockStream> {
        let fd = stream_socket()?;
        let raw = addr.to_raw();
        // SAFETY: `fd` is open for the call; `raw` is a sockaddr_vm of
        // ADDR_LEN bytes, only read.
        cvt(unsafe { libc::connect(fd.as_raw_fd(), (&raw as *const libc::sockaddr_vm).cast(), ADDR_LEN) })?;
        Ok(VsockStream { fd, peer: addr })
    }

    /// The address of the other end.
    pub fn peer_addr(&self) -> VsockAddr {
        self.peer
    }

    /// The address of this end (`getsockname`).
    pub fn local_addr(&self) -> io::Result<VsockAddr> {
        local_addr_of(self.fd.as_fd())
    }

    /// How long a read may wait (`SO_RCVTIMEO`; `None`: for ever). A
    /// zero duration is `EINVAL`, as for the standard library's sockets.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        set_timeout(self.fd.as_fd(), libc::SO_RCVTIMEO, timeout)
    }

    /// How long a write may wait for the peer to take data (`SO_SNDTIMEO`;
    /// `None`: for ever); then it fails with `WouldBlock`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        set_timeout(self.fd.as_fd(), libc::SO_SNDTIMEO, timeout)
    }

    /// The read timeout set ([`set_read_timeout`](Self::set_read_timeout)).
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        timeout(self.fd.as_fd(), libc::SO_RCVTIMEO)
    }

    /// The write timeout set ([`set_write_timeout`](Self::set_write_timeout)).
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        timeout(self.fd.as_fd(), libc::SO_SNDTIMEO)
    }

    /// Shuts down one or both directions (`shutdown(2)`).
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        let how = match how {
            std::net::Shutdown::Read => libc::SHUT_RD,
            std::net::Shutdown::Write => libc::SHUT_WR,
            std::net::Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: the descriptor is open for the call; no pointers.
        cvt(unsafe { libc::shutdown(self.fd.as_raw_fd(), how) })?;
        Ok(())
    }
}

/// Sets `SO_RCVTIMEO` or `SO_SNDTIMEO`.
fn set_timeout(fd: BorrowedFd<'_>, option: libc::c_int, timeout: Option<Duration>) -> io::Result<()> {
    let tv = match timeout {
        Some(d) if d.is_zero() => return Err(err(libc::EINVAL)),
        Some(d) => {
            let tv_sec = libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX);
            let mut tv_usec = libc::suseconds_t::from(d.subsec_micros());
            if tv_sec == 0 && tv_usec == 0 {
                // Under a microsecond: a zero timeval would mean "for ever".
                tv_usec = 1;
            }
            libc::timeval { tv_sec, tv_usec }
        }
        None => libc::timeval { tv_sec: 0, tv_usec: 0 },
    };
    let len = core::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `fd` is open for the call; `tv` is a timeval of `len` bytes,
    // only read.
    cvt(unsafe {
        libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, option, (&tv as *const libc::timeval).cast(), len)
    })?;
    Ok(())
}

/// Reads `SO_RCVTIMEO` or `SO_SNDTIMEO`.
fn timeout(fd: BorrowedFd<'_>, option: libc::c_int) -> io::Result<Option<Duration>> {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut len = core::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `fd` is open for the call; `tv` and `len` are valid for
    // writes and `len` holds the size of `tv`.
    cvt(unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, option, (&mut tv as *mut libc::timeval).cast(), &mut len)
    })?;
    if tv.tv_sec == 0 && tv.tv_usec == 0 {
        return Ok(None);
    }
    Ok(Some(Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000)))
}

impl Read for &VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the descriptor is open for the call; `buf` is valid for
        // writes of `buf.len()` bytes.
        let n = cvt(unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) })?;
        Ok(n as usize)
    }
}

impl Write for &VsockStream {
    /// `send` with `MSG_NOSIGNAL`: a peer that went away is `EPIPE`, never
    /// a SIGPIPE.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: the descriptor is open for the call; `buf` is valid for
        // reads of `buf.len()` bytes.
        let n = cvt(unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) })?;
        Ok(n as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for VsockStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for VsockStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for VsockStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<VsockStream> for OwnedFd {
    fn from(s: VsockStream) -> OwnedFd {
        s.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the tests can use AF_VSOCK here; prints why not.
    fn vsock_here() -> bool {
        match available() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("skipped: this kernel has no AF_VSOCK sockets ({e})");
                false
            }
        }
    }

    /// A listener on a port the kernel picks (so tests never collide with
    /// each other or with a service of the machine).
    fn any_port() -> VsockListener {
        VsockListener::bind(VsockAddr::new(CID_ANY, PORT_ANY)).unwrap()
    }

    #[test]
    fn a_bound_port_is_in_use_until_the_listener_is_dropped() {
        if !vsock_here() {
            return;
        }
        let l = any_port();
        let addr = l.local_addr();
        assert_eq!(addr.cid, CID_ANY);
        assert_ne!(addr.port, PORT_ANY);
        let e = VsockListener::bind(addr).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE), "{e}");
        drop(l);
        let again = VsockListener::bind(addr).unwrap();
        assert_eq!(again.local_addr(), addr);
        // Close-on-exec, like every descriptor avpfs opens.
        let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", again.as_raw_fd())).unwrap();
        let flags = fdinfo.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim().to_owned();
        assert_ne!(u32::from_str_radix(&flags, 8).unwrap() & libc::O_CLOEXEC as u32, 0);
    }

    #[test]
    fn accept_without_a_connection_would_block_when_nonblocking() {
        if !vsock_here() {
            return;
        }
        let l = any_port();
        l.set_nonblocking(true).unwrap();
        let e = l.accept().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
    }

    #[test]
    fn a_cid_that_is_not_ours_cannot_be_bound() {
        if !vsock_here() {
            return;
        }
        // CID 2 is the host's; in a guest it is not this machine's, and on
        // a host without guests loaded neither is 0x7fff_fff0.
        let e = VsockListener::bind(VsockAddr::new(0x7fff_fff0, PORT_ANY)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{e}");
    }

    #[test]
    fn timeouts_are_set_and_read_back() {
        if !vsock_here() {
            return;
        }
        // An unconnected socket takes the options as a connected one does.
        let s = VsockStream { fd: stream_socket().unwrap(), peer: VsockAddr::new(CID_LOCAL, 0) };
        assert_eq!(s.write_timeout().unwrap(), None);
        s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
        assert_eq!(s.write_timeout().unwrap(), Some(Duration::from_secs(60)));
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(s.read_timeout().unwrap(), Some(Duration::from_secs(2)));
        // The kernel keeps timeouts in clock ticks: a tiny one reads back
        // as a tick or so, and never as "for ever".
        s.set_read_timeout(Some(Duration::from_nanos(10))).unwrap();
        let t = s.read_timeout().unwrap();
        assert!(t.is_some_and(|t| t <= Duration::from_millis(20)), "{t:?}");
        s.set_write_timeout(None).unwrap();
        assert_eq!(s.write_timeout().unwrap(), None);
        let e = s.set_write_timeout(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn addresses_print_as_cid_and_port() {
        assert_eq!(VsockAddr::new(CID_ANY, 564).to_string(), "any:564");
        assert_eq!(VsockAddr::new(3, 1024).to_string(), "3:1024");
    }

    /// A connection through the loopback transport, where the kernel has
    /// one (`vsock_loopback`); skipped (with the reason) where it has not.
    #[test]
    fn a_connection_carries_bytes_both_ways() {
        if !vsock_here() {
            return;
        }
        let l = any_port();
        let port = l.local_addr().port;
        let client = match VsockStream::connect(VsockAddr::new(CID_LOCAL, port)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: no vsock loopback transport here (connect to CID 1: {e})");
                return;
            }
        };
        let (server, peer) = l.accept().unwrap();
        assert_eq!(server.peer_addr(), peer);
        assert_eq!(client.local_addr().unwrap().port, peer.port);
        (&client).write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        (&server).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        server.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let e = (&server).read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        (&server).write_all(b"pong").unwrap();
        (&client).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        drop(client);
        assert_eq!((&server).read(&mut buf).unwrap(), 0, "end of stream once the client is gone");
    }
}
