//! `--syslog`: log records go to the local syslog daemon's socket
//! (`/dev/log`) instead of stderr, as virtiofsd's `--syslog` does.
//!
//! The socket is connected once, before the sandbox is entered; a connected
//! datagram socket keeps working after `pivot_root` and under the seccomp
//! filter (`sendto` is allowed for the vhost-user socket anyway).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The local syslog socket.
pub const SYSLOG_SOCKET: &str = "/dev/log";
/// syslog facility LOG_DAEMON.
const FACILITY_DAEMON: u8 = 3;
/// Longest message sent; longer ones are cut (syslog daemons cut them anyway).
const MAX_MESSAGE: usize = 8 * 1024;

/// A [`Log`] that sends each record as one RFC 3164 style datagram,
/// `<PRI>avpfs[PID]: target: message`.
#[derive(Debug)]
pub struct SyslogLogger {
    socket: UnixDatagram,
    level: LevelFilter,
    pid: u32,
}

impl SyslogLogger {
    /// Connects to the syslog socket at `path`.
    pub fn connect(path: &Path, level: LevelFilter) -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        Ok(SyslogLogger { socket, level, pid: std::process::id() })
    }

    /// Installs this logger as the process's logger.
    pub fn install(self) -> Result<(), log::SetLoggerError> {
        let level = self.level;
        log::set_boxed_logger(Box::new(self))?;
        log::set_max_level(level);
        Ok(())
    }

    fn severity(level: Level) -> u8 {
        match level {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        }
    }
}

impl Log for SyslogLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let pri = FACILITY_DAEMON * 8 + Self::severity(record.level());
        let mut line = format!("<{pri}>avpfs[{}]: {}: {}", self.pid, record.target(), record.args());
        if line.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        // A log line that cannot be delivered is dropped: there is nowhere
        // else to report it.
        let _ = self.socket.send(line.as_bytes());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_arrive_with_priority_ident_and_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let logger = SyslogLogger::connect(&path, LevelFilter::Info).unwrap();
        let warn = Record::builder().level(Level::Warn).target("avpfs::audit").args(format_args!("denied")).build();
        logger.log(&warn);
        let debug = Record::builder().level(Level::Debug).target("x").args(format_args!("hidden")).build();
        logger.log(&debug);
        let long = "é".repeat(MAX_MESSAGE);
        logger.log(&Record::builder().level(Level::Error).target("t").args(format_args!("{long}")).build());
        let mut buf = vec![0u8; 2 * MAX_MESSAGE];
        let n = server.recv(&mut buf).unwrap();
        let pid = std::process::id();
        assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), format!("<28>avpfs[{pid}]: avpfs::audit: denied"));
        // The debug record was filtered: the next datagram is the long error, cut.
        let n = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with(&format!("<27>avpfs[{pid}]: t: é")), "{}", &text[..40]);
        assert!(n <= MAX_MESSAGE);
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SyslogLogger::connect(&dir.path().join("none"), LevelFilter::Info).is_err());
    }
}
