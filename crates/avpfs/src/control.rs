//! The control socket (`--control-socket PATH`): a unix stream socket that
//! answers one JSON object per line with one JSON object per line.
//!
//! Requests (`avpfs ctl` sends them):
//! - `{"command": "status"}`: the shares and guests, each guest's state
//!   (connected, negotiated FUSE minor, queues), the uptime;
//! - `{"command": "stats"}`: per guest and per share, per opcode: requests,
//!   errors by errno, bytes in and out, latency histogram; each guest's open
//!   files, cached inodes and held locks;
//! - `{"command": "reload"}`: reads the configuration's policies again and
//!   puts them in force for the next requests, without disconnecting any
//!   guest; all or nothing. `"files": {"PATH": "TEXT", ...}` gives the files'
//!   texts (a sandboxed daemon cannot read them; `avpfs ctl` always sends
//!   them);
//! - `{"command": "metrics"}`: the Prometheus text, as `"text"`.
//!
//! Every reply has `"ok"`; a failed one has `"error"`. A malformed line, an
//! unknown command, a line over [`MAX_LINE`] bytes (after which the
//! connection is closed), a client silent for [`IDLE`], or one past
//! [`MAX_CLIENTS`] is answered or closed; guests are never affected. The
//! socket file is mode 0600 (0660 with a group); peers other than root and
//! the daemon's own user are refused unless a group was given.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use avpfs_sys::poll::{poll, PollFd};
use serde_json::{json, Value};

use crate::metrics::{errno_name, render};
use crate::sessions::{Registry, Transport};

/// Longest request line, in bytes.
pub const MAX_LINE: usize = 64 * 1024;
/// How long a client may stay silent.
pub const IDLE: Duration = Duration::from_secs(10);
/// Most clients at once.
pub const MAX_CLIENTS: usize = 64;

/// Who may use the socket besides root and the daemon's own user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nobody else.
    OwnerOnly,
    /// Whoever the socket file's group lets connect.
    Group,
}

/// Binds the control socket at `path` (a stale socket there is replaced),
/// mode 0600, or 0660 owned by `group`.
pub fn bind(path: &Path, group: Option<u32>) -> io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    Ok(listener)
}

struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    last: Instant,
    /// Close once the output is written.
    closing: bool,
}

/// Serves the control socket until the process ends.
pub fn serve(listener: UnixListener, access: Access, registry: Arc<Registry>) {
    if let Err(e) = listener.set_nonblocking(true) {
        log::error!("control socket: {e}");
        return;
    }
    let own_uid = avpfs_sys::creds::geteuid();
    let mut clients: Vec<Client> = Vec::new();
    loop {
        let mut fds = vec![PollFd::new(listener.as_fd(), libc::POLLIN)];
        for c in &clients {
            let events = if c.output.is_empty() { libc::POLLIN } else { libc::POLLIN | libc::POLLOUT };
            fds.push(PollFd::new(c.stream.as_fd(), events));
        }
        if let Err(e) = poll(&mut fds, 1000) {
            if e.kind() != io::ErrorKind::Interrupted {
                log::warn!("control socket: poll: {e}");
            }
            continue;
        }
        let revents: Vec<libc::c_short> = fds.iter().map(|f| f.revents()).collect();
        drop(fds);
        for (c, &ev) in clients.iter_mut().zip(&revents[1..]) {
            if ev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                read_requests(c, &registry);
            }
            if !c.output.is_empty() {
                write_replies(c);
            }
        }
        let now = Instant::now();
        clients.retain(|c| {
            let idle = now.duration_since(c.last) > IDLE;
            let done = c.closing && c.output.is_empty();
            !(idle || done)
        });
        if revents[0] & libc::POLLIN != 0 {
            accept_all(&listener, access, own_uid, &mut clients);
        }
    }
}

fn accept_all(listener: &UnixListener, access: Access, own_uid: u32, clients: &mut Vec<Client>) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("control socket: accept: {e}");
                return;
            }
        };
        let _ = stream.set_nonblocking(true);
        let refuse = |mut s: UnixStream, why: &str| {
            let _ = s.write_all(format!("{}\n", json!({"ok": false, "error": why})).as_bytes());
        };
        let allowed = match avpfs_sys::socket::peer_cred(stream.as_fd()) {
            Ok(p) => p.uid == 0 || p.uid == own_uid || access == Access::Group,
            Err(_) => false,
        };
        if !allowed {
            log::warn!("control socket: refused a client of another user");
            refuse(stream, "permission denied");
            continue;
        }
        if clients.len() >= MAX_CLIENTS {
            refuse(stream, "too many clients");
            continue;
        }
        clients.push(Client { stream, input: Vec::new(), output: Vec::new(), last: Instant::now(), closing: false });
    }
}

fn read_requests(c: &mut Client, registry: &Registry) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => {
                c.closing = true;
                break;
            }
            Ok(n) => c.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                c.closing = true;
                c.output.clear();
                break;
            }
        }
        if c.input.len() > MAX_LINE {
            break;
        }
    }
    while let Some(end) = c.input.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = c.input.drain(..=end).collect();
        c.last = Instant::now();
        let reply = answer(&line[..line.len() - 1], registry);
        c.output.extend_from_slice(reply.to_string().as_bytes());
        c.output.push(b'\n');
    }
    if c.input.len() > MAX_LINE {
        let e = json!({"ok": false, "error": format!("request longer than {MAX_LINE} bytes")});
        c.output.extend_from_slice(format!("{e}\n").as_bytes());
        c.input.clear();
        c.closing = true;
    }
}

fn write_replies(c: &mut Client) {
    while !c.output.is_empty() {
        match c.stream.write(&c.output) {
            Ok(0) => break,
            Ok(n) => {
                c.output.drain(..n);
                c.last = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {
                c.output.clear();
                c.closing = true;
            }
        }
    }
}

fn failure(message: impl Into<String>) -> Value {
    json!({"ok": false, "error": message.into()})
}

/// The reply to one request line.
pub fn answer(line: &[u8], registry: &Registry) -> Value {
    let request: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return failure(format!("malformed request: {e}")),
    };
    let Some(command) = request.get("command").and_then(Value::as_str) else {
        return failure("malformed request: no \"command\" string");
    };
    match command {
        "status" => status(registry),
        "stats" => stats(registry),
        "metrics" => json!({"ok": true, "text": render(registry)}),
        "reload_files" => match registry.reload_file() {
            Some((path, config)) => json!({"ok": true, "file": path.display().to_string(), "config": config}),
            None => failure("nothing to reload: no --config and no --policy file"),
        },
        "reload" => {
            let files = match request.get("files") {
                None => None,
                Some(v) => match files_of(v) {
                    Ok(f) => Some(f),
                    Err(e) => return failure(format!("malformed request: {e}")),
                },
            };
            match registry.reload(files.as_ref()) {
                Ok(changed) => json!({"ok": true, "changed": changed}),
                Err(e) => failure(format!("reload refused, nothing changed: {e}")),
            }
        }
        other => failure(format!("unknown command {other:?} (status, stats, reload, metrics)")),
    }
}

/// A `{path: text}` object as a map.
pub fn files_of(v: &Value) -> Result<HashMap<PathBuf, String>, String> {
    let Value::Object(m) = v else { return Err("\"files\" is not an object".into()) };
    let mut files = HashMap::new();
    for (k, v) in m {
        let text = v.as_str().ok_or_else(|| format!("files.{k} is not a string"))?;
        files.insert(PathBuf::from(k), text.to_string());
    }
    Ok(files)
}

fn status(registry: &Registry) -> Value {
    let guests: Vec<Value> = registry
        .sessions
        .iter()
        .map(|s| {
            let mut g = json!({
                "name": s.name,
                "share": registry.shares[s.share].name,
                "connected": (s.connected)(),
                "fuse_minor": s.server.fuse_minor(),
                "policy_layer": s.server.policy_layer().is_some(),
            });
            match &s.transport {
                Transport::VhostUser { socket, tag, request_queues } => {
                    g["transport"] = json!("vhost-user");
                    g["socket"] = json!(socket);
                    g["tag"] = json!(tag);
                    g["request_queues"] = json!(request_queues);
                }
                Transport::FuseMount(m) => {
                    g["transport"] = json!("fuse");
                    g["mountpoint"] = json!(m.display().to_string());
                }
            }
            g
        })
        .collect();
    let shares: Vec<Value> = registry
        .shares
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let guests: Vec<&str> =
                registry.sessions.iter().filter(|g| g.share == i).map(|g| g.name.as_str()).collect();
            json!({"name": s.name, "shared_dir": s.shared_dir.display().to_string(), "cache": s.cache, "guests": guests})
        })
        .collect();
    let p9: Vec<Value> = registry
        .p9
        .iter()
        .map(|l| {
            json!({
                "listen": l.addr,
                "share": registry.shares[l.share].name,
                "connections": l.connections(),
                "accepted": l.accepted(),
            })
        })
        .collect();
    json!({
        "ok": true,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": registry.started.elapsed().as_secs(),
        "shares": shares,
        "guests": guests,
        "p9": p9,
    })
}

/// One opcode's counters as JSON.
fn op_json(op: &avpfs_server::stats::OpSnapshot) -> Value {
    let errnos: serde_json::Map<String, Value> = op.errnos.iter().map(|(e, n)| (errno_name(*e), json!(n))).collect();
    let bounds = avpfs_server::stats::LATENCY_BOUNDS_US;
    let buckets: Vec<Value> = op
        .buckets
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"le_us": bounds.get(i).map_or(json!("+Inf"), |b| json!(b)), "count": n}))
        .collect();
    json!({
        "op": op.name,
        "requests": op.requests,
        "errors": op.errors,
        "errnos": errnos,
        "bytes_in": op.bytes_in,
        "bytes_out": op.bytes_out,
        "latency_us_total": op.latency_ns / 1000,
        "latency_buckets": buckets,
    })
}

/// Requests, errors, bytes in, bytes out.
type Totals = (u64, u64, u64, u64);

fn stats(registry: &Registry) -> Value {
    let mut share_totals: Vec<HashMap<&'static str, Totals>> = vec![HashMap::new(); registry.shares.len()];
    let guests: Vec<Value> = registry
        .sessions
        .iter()
        .map(|s| {
            let snap = s.server.stats();
            let usage = s.server.usage();
            for op in &snap.ops {
                let t = share_totals[s.share].entry(op.name).or_default();
                t.0 += op.requests;
                t.1 += op.errors;
                t.2 += op.bytes_in;
                t.3 += op.bytes_out;
            }
            json!({
                "name": s.name,
                "share": registry.shares[s.share].name,
                "open_files": usage.handles,
                "cached_inodes": usage.nodes,
                "locks": usage.locks,
                "dax_mappings": s.server.dax_mappings(),
                "ops": snap.ops.iter().map(op_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let shares: Vec<Value> = registry
        .shares
        .iter()
        .zip(share_totals)
        .map(|(s, totals)| {
            let mut ops: Vec<_> = totals.into_iter().collect();
            ops.sort();
            let ops: Vec<Value> = ops
                .into_iter()
                .map(|(name, (r, e, bi, bo))| {
                    json!({"op": name, "requests": r, "errors": e, "bytes_in": bi, "bytes_out": bo})
                })
                .collect();
            json!({"name": s.name, "ops": ops})
        })
        .collect();
    json!({"ok": true, "guests": guests, "shares": shares})
}

/// `avpfs ctl`: sends `command` to the control socket at `path` and returns
/// the reply. `reload` sends the configuration's files, read here (outside
/// any sandbox), the ones the daemon names in `status`.
pub fn request(path: &Path, command: &str) -> io::Result<Value> {
    let stream = UnixStream::connect(path)?;
    let mut replies = io::BufReader::new(&stream);
    let mut ask = |request: Value| -> io::Result<Value> {
        (&stream).write_all(format!("{request}\n").as_bytes())?;
        let mut reply = String::new();
        if io::BufRead::read_line(&mut replies, &mut reply)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the daemon closed the connection"));
        }
        serde_json::from_str(&reply).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    };
    if command != "reload" {
        return ask(json!({ "command": command }));
    }
    let which = ask(json!({"command": "reload_files"}))?;
    let Some(main) = which.get("file").and_then(Value::as_str).map(PathBuf::from) else {
        return Ok(which);
    };
    let files = reload_files(&main, which.get("config").and_then(Value::as_bool) == Some(true));
    ask(json!({"command": "reload", "files": files}))
}

/// Reads what a reload of `main` reads (outside the sandbox: `avpfs ctl`,
/// or the supervisor on SIGHUP): the file, and for a daemon configuration
/// (`config`) the policy files it names now, as `{path: text}`. A file that
/// cannot be read is left out: the daemon's reload then says which.
pub fn reload_files(main: &Path, config: bool) -> serde_json::Map<String, Value> {
    let read = std::cell::RefCell::new(serde_json::Map::new());
    let record = |p: &Path| -> io::Result<String> {
        let text = std::fs::read_to_string(p)?;
        read.borrow_mut().insert(p.display().to_string(), json!(text));
        Ok(text)
    };
    if let Ok(text) = record(main) {
        if config {
            let _ = crate::config_file::parse_with(main, &text, &record, false);
        }
    }
    read.into_inner()
}
