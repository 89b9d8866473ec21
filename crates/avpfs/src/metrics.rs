//! The daemon's counters in the Prometheus text exposition format (version
//! 0.0.4), and a small HTTP server for them (`--metrics-listen`).
//!
//! Metrics (labels `guest` and `share` on each per-session one):
//! - `avpfs_requests_total{op}`, `avpfs_request_errors_total{op,errno}`,
//!   `avpfs_request_bytes_in_total{op}`, `avpfs_request_bytes_out_total{op}`
//!   (counters);
//! - `avpfs_request_duration_seconds{op}` (histogram, buckets from 1 µs to
//!   about 1 s by powers of two);
//! - `avpfs_guest_connected`, `avpfs_open_files`, `avpfs_cached_inodes`,
//!   `avpfs_locks_held` (gauges);
//! - `avpfs_uptime_seconds`.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use avpfs_server::stats::LATENCY_BOUNDS_US;
use avpfs_sys::poll::{poll, PollFd};

use crate::sessions::Registry;

/// The name of an errno value (`ENOENT`), or `E<n>`.
pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOLCK => "ENOLCK",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::E2BIG => "E2BIG",
        libc::ESTALE => "ESTALE",
        0 => "other",
        _ => return format!("E{e}"),
    };
    name.into()
}

/// A label value, escaped as the exposition format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Renders every metric of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let sessions: Vec<_> = registry
        .sessions
        .iter()
        .map(|s| {
            let who = format!("guest=\"{}\",share=\"{}\"", label(&s.name), label(&registry.shares[s.share].name));
            (s, who, s.server.stats(), s.server.usage())
        })
        .collect();

    family(&mut out, "avpfs_uptime_seconds", "gauge", "Seconds since the daemon started.");
    let _ = writeln!(out, "avpfs_uptime_seconds {:.3}", registry.started.elapsed().as_secs_f64());

    if !registry.p9.is_empty() {
        let p9: Vec<_> = registry
            .p9
            .iter()
            .map(|l| (l, format!("listen=\"{}\",share=\"{}\"", label(&l.addr), label(&registry.shares[l.share].name))))
            .collect();
        family(&mut out, "avpfs_9p_connections", "gauge", "9P connections open on the listener.");
        for (l, who) in &p9 {
            let _ = writeln!(out, "avpfs_9p_connections{{{who}}} {}", l.connections());
        }
        family(&mut out, "avpfs_9p_connections_accepted_total", "counter", "9P connections accepted.");
        for (l, who) in &p9 {
            let _ = writeln!(out, "avpfs_9p_connections_accepted_total{{{who}}} {}", l.accepted());
        }
    }

    type Gauge = fn(&crate::sessions::SessionEntry, &avpfs_server::Usage) -> u64;
    let gauges: [(&str, &str, Gauge); 4] = [
        ("avpfs_guest_connected", "Whether the guest's front end is connected.", |s, _| u64::from((s.connected)())),
        ("avpfs_open_files", "File and directory handles the guest holds open.", |_, u| u.handles),
        ("avpfs_cached_inodes", "Nodes the guest holds lookup references to.", |_, u| u.nodes),
        ("avpfs_locks_held", "Lock owners with record locks, and handles with a flock, of the guest.", |_, u| u.locks),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        for (s, who, _, usage) in &sessions {
            let _ = writeln!(out, "{name}{{{who}}} {}", value(s, usage));
        }
    }

    family(&mut out, "avpfs_requests_total", "counter", "FUSE requests served.");
    for (_, who, stats, _) in &sessions {
        for op in &stats.ops {
            let _ = writeln!(out, "avpfs_requests_total{{{who},op=\"{}\"}} {}", op.name, op.requests);
        }
    }
    family(&mut out, "avpfs_request_errors_total", "counter", "FUSE requests answered with an error, by errno.");
    for (_, who, stats, _) in &sessions {
        for op in &stats.ops {
            for (errno, n) in &op.errnos {
                let _ = writeln!(
                    out,
                    "avpfs_request_errors_total{{{who},op=\"{}\",errno=\"{}\"}} {n}",
                    op.name,
                    errno_name(*errno)
                );
            }
        }
    }
    for (name, help, bytes_in) in [
        ("avpfs_request_bytes_in_total", "Bytes of FUSE requests (headers included).", true),
        ("avpfs_request_bytes_out_total", "Bytes of FUSE replies (headers included).", false),
    ] {
        family(&mut out, name, "counter", help);
        for (_, who, stats, _) in &sessions {
            for op in &stats.ops {
                let v = if bytes_in { op.bytes_in } else { op.bytes_out };
                let _ = writeln!(out, "{name}{{{who},op=\"{}\"}} {v}", op.name);
            }
        }
    }
    family(&mut out, "avpfs_request_duration_seconds", "histogram", "Time to serve a FUSE request.");
    for (_, who, stats, _) in &sessions {
        for op in &stats.ops {
            let mut cumulative = 0;
            for (i, n) in op.buckets.iter().enumerate() {
                cumulative += n;
                let le = match LATENCY_BOUNDS_US.get(i) {
                    Some(us) => format!("{}", *us as f64 / 1e6),
                    None => "+Inf".into(),
                };
                let _ = writeln!(
                    out,
                    "avpfs_request_duration_seconds_bucket{{{who},op=\"{}\",le=\"{le}\"}} {cumulative}",
                    op.name
                );
            }
            let _ = writeln!(
                out,
                "avpfs_request_duration_seconds_sum{{{who},op=\"{}\"}} {}",
                op.name,
                op.latency_ns as f64 / 1e9
            );
            let _ = writeln!(out, "avpfs_request_duration_seconds_count{{{who},op=\"{}\"}} {}", op.name, op.requests);
        }
    }
    out
}

/// Longest request head the HTTP server reads.
const MAX_HEAD: usize = 8192;
/// How long a client has to send its request.
const CLIENT_DEADLINE: Duration = Duration::from_secs(2);

/// Serves `GET /metrics` on `listener` (bound before the sandbox, so that
/// it stays in the host's network namespace), one client at a time, each
/// given 2 s to ask. Runs until the process ends.
pub fn serve_http(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("metrics: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if let Err(e) = answer(&mut stream, &registry) {
            log::debug!("metrics: client: {e}");
        }
    }
}

fn answer(stream: &mut std::net::TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        let mut fds = [PollFd::new(stream.as_fd(), libc::POLLIN)];
        poll(&mut fds, left.as_millis().clamp(1, 2000) as i32)?;
        let mut buf = [0u8; 1024];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, path) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let (status, kind, body) = match (method, path) {
        (b"GET", b"/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render(registry)),
        (b"GET", _) => ("404 Not Found", "text/plain", "not found: try /metrics\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let reply = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.set_nonblocking(false)?;
    stream.write_all(reply.as_bytes())
}
