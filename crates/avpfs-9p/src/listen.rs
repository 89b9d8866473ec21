//! Listeners: `unix:PATH` (local clients, and guests through
//! `vhost-device-vsock`'s hybrid-vsock sockets `U_PORT`) and, later,
//! `vsock:PORT`.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::str::FromStr;
use std::thread;

use avpfs_server::FileSystem;

use crate::{serve_connection, Error, P9Options};

/// Where a 9P server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A unix stream socket at this path.
    Unix(PathBuf),
    /// An AF_VSOCK stream socket on this port (any CID).
    Vsock(u32),
}

impl ListenAddr {
    /// Parses `unix:PATH` or `vsock:PORT`.
    pub fn parse(s: &str) -> Result<ListenAddr, Error> {
        let bad = || Error::BadAddress(s.to_string());
        match s.split_once(':') {
            Some(("unix", path)) if !path.is_empty() => Ok(ListenAddr::Unix(PathBuf::from(path))),
            Some(("vsock", port)) => port.parse().map(ListenAddr::Vsock).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ListenAddr::parse(s)
    }
}

/// Binds the listening socket of `addr` (a unix socket's path must not
/// exist yet).
pub fn bind_unix(addr: &ListenAddr) -> Result<UnixListener, Error> {
    match addr {
        ListenAddr::Unix(path) => {
            UnixListener::bind(path).map_err(|source| Error::Listen { path: path.display().to_string(), source })
        }
        ListenAddr::Vsock(port) => Err(Error::VsockUnsupported(*port)),
    }
}

/// Accepts connections on `listener` for ever, each served on a thread of
/// its own by [`serve_connection`] over a file system `session()` makes
/// for it (for a passthrough share: `|| share.session()`, behind the
/// share's `PolicyFs`), which is dropped when the connection ends. A
/// connection that fails ends alone; the listener goes on.
pub fn listen<F, M>(listener: UnixListener, options: P9Options, mut session: M) -> Result<(), Error>
where
    F: FileSystem + 'static,
    M: FnMut() -> F,
{
    let path = listener.local_addr().ok().and_then(|a| a.as_pathname().map(|p| p.display().to_string()));
    let path = path.unwrap_or_default();
    for (n, stream) in listener.incoming().enumerate() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("9p: accept on {path}: {e}");
                continue;
            }
        };
        if let Err(e) = stream.set_write_timeout(options.write_timeout) {
            log::warn!("9p: cannot set a write timeout: {e}");
        }
        let fs = session();
        let options = options.clone();
        thread::Builder::new()
            .name(format!("9p-conn-{n}"))
            .spawn(move || match serve_connection(stream, &fs, &options) {
                Ok(()) => log::info!("9p: connection {n} closed by the client"),
                Err(e) => log::warn!("9p: connection {n}: {e}"),
            })
            .map_err(Error::Thread)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(ListenAddr::parse("unix:/run/x_564").unwrap(), ListenAddr::Unix("/run/x_564".into()));
        assert_eq!(ListenAddr::parse("vsock:564").unwrap(), ListenAddr::Vsock(564));
        for bad in ["unix:", "vsock:x", "tcp:1", "564", ""] {
            assert!(matches!(ListenAddr::parse(bad), Err(Error::BadAddress(_))), "{bad}");
        }
        assert!(matches!(bind_unix(&ListenAddr::Vsock(564)), Err(Error::VsockUnsupported(564))));
    }
}
