//! The control socket and the metrics of a running `avpfs --config` (the
//! real binary, sandbox and seccomp on), while in-process vhost-user guests
//! send requests: the counters move exactly as the requests sent, `reload`
//! flips a guest read-only and back without disconnecting it, a bad reload
//! changes nothing, the metrics parse with the Prometheus client library's
//! own parser, and bad clients get an answer or a closed socket while the
//! guests go on.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use serde_json::Value;
use vhost_harness::fuse::FuseClient;
use vhost_harness::Harness;

struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    metrics_port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = avpfs_sys::process::kill(child.id() as i32, libc::SIGTERM);
            let _ = child.wait();
        }
    }
}

impl Daemon {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn connect(&self, guest: &str) -> Harness {
        let h = Harness::start(self.path(&format!("{guest}.sock")), 2).unwrap();
        FuseClient::new(&h, 1).init().unwrap();
        h
    }

    fn ctl(&self, command: &str) -> (bool, String) {
        let out =
            avpfs().args(["ctl", "--control-socket"]).arg(self.path("control.sock")).arg(command).output().unwrap();
        let text = String::from_utf8_lossy(if out.status.success() { &out.stdout } else { &out.stderr }).into_owned();
        (out.status.success(), text)
    }

    fn ctl_json(&self, command: &str) -> Value {
        let (ok, text) = self.ctl(command);
        assert!(ok, "ctl {command}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

fn avpfs() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_avpfs"));
    cmd.env("AVPFS_LOG", std::env::var("AVPFS_LOG").unwrap_or_else(|_| "warn".into())).stdin(Stdio::null());
    cmd
}

const CONFIG: &str = r#"
[daemon]
control_socket = "control.sock"

[[share]]
name = "data"
shared_dir = "share"
cache = "never"

[[guest]]
name = "vm1"
socket_path = "vm1.sock"
share = "data"
request_queues = 1

[[guest]]
name = "vm2"
socket_path = "vm2.sock"
share = "data"
request_queues = 1
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start() -> Daemon {
    start_with(CONFIG, &["vm1.sock", "vm2.sock", "control.sock"])
}

/// The daemon on `config`, once each of `sockets` exists.
fn start_with(config: &str, sockets: &[&str]) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("share")).unwrap();
    std::fs::write(dir.path().join("share/a"), "hello").unwrap();
    std::fs::write(dir.path().join("ro.toml"), "[share]\nreadonly = true\n").unwrap();
    std::fs::write(dir.path().join("avpfs.toml"), config).unwrap();
    let port = free_port();
    let child = avpfs()
        .arg("--config")
        .arg(dir.path().join("avpfs.toml"))
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let mut d = Daemon { child: Some(child), dir, metrics_port: port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sockets.iter().all(|s| d.path(s).exists()) {
        if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("avpfs exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "avpfs did not listen in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

fn guest<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["guests"].as_array().unwrap().iter().find(|g| g["name"] == name).unwrap()
}

fn op<'a>(g: &'a Value, name: &str) -> &'a Value {
    g["ops"].as_array().unwrap().iter().find(|o| o["op"] == name).unwrap_or_else(|| panic!("no {name} in {g}"))
}

#[test]
fn status_and_stats_count_exactly_the_requests_sent() {
    let d = start();
    let h = d.connect("vm1");
    let c = FuseClient::new(&h, 1);
    for _ in 0..3 {
        c.lookup(1, "a").unwrap();
    }
    for _ in 0..2 {
        assert!(c.lookup(1, "missing").is_err());
    }
    let node = c.lookup(1, "a").unwrap().nodeid;
    let fh = c.open(node, libc::O_RDONLY as u32).unwrap().fh;
    assert_eq!(c.read(node, fh, 0, 5).unwrap(), b"hello");

    let status = d.ctl_json("status");
    let (g1, g2) = (guest(&status, "vm1"), guest(&status, "vm2"));
    assert_eq!((g1["connected"].as_bool(), g2["connected"].as_bool()), (Some(true), Some(false)));
    assert!(g1["fuse_minor"].as_u64().unwrap() >= 27, "{g1}");
    assert_eq!(g1["request_queues"], 1);
    assert_eq!(status["shares"][0]["guests"], serde_json::json!(["vm1", "vm2"]));

    let stats = d.ctl_json("stats");
    let g = guest(&stats, "vm1");
    let lookup = op(g, "LOOKUP");
    assert_eq!((lookup["requests"].as_u64(), lookup["errors"].as_u64()), (Some(6), Some(2)));
    assert_eq!(lookup["errnos"]["ENOENT"], 2);
    assert_eq!(op(g, "INIT")["requests"], 1);
    let read = op(g, "READ");
    assert_eq!(read["requests"], 1);
    assert_eq!(read["bytes_out"], 16 + 5, "the reply header and the 5 bytes");
    let buckets: u64 = lookup["latency_buckets"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(buckets, 6);
    assert_eq!((g["open_files"].as_u64(), g["cached_inodes"].as_u64()), (Some(1), Some(2)), "{g}");
    assert!(guest(&stats, "vm2")["ops"].as_array().unwrap().is_empty());
    // The share's totals add its guests up.
    let share_lookup = stats["shares"][0]["ops"].as_array().unwrap().iter().find(|o| o["op"] == "LOOKUP").unwrap();
    assert_eq!(share_lookup["requests"], 6);
}

#[test]
fn reload_flips_a_guest_read_only_and_back_and_a_bad_file_changes_nothing() {
    let d = start();
    let h = d.connect("vm1");
    let c = FuseClient::new(&h, 1);
    c.create(1, "before", 0o644, libc::O_RDWR as u32).unwrap();
    let with_policy = CONFIG.replace("name = \"vm1\"\n", "name = \"vm1\"\npolicy = \"ro.toml\"\n");
    std::fs::write(d.path("avpfs.toml"), &with_policy).unwrap();
    let reply = d.ctl_json("reload");
    assert_eq!(reply["changed"], serde_json::json!(["vm1"]));
    let e = c.create(1, "during", 0o644, libc::O_RDWR as u32).unwrap_err();
    assert!(matches!(e, vhost_harness::Error::Fuse(libc::EROFS)), "{e}");
    assert_eq!(c.lookup(1, "before").unwrap().attr.size, 0, "the guest is still connected and served");
    // A broken file: refused with its line, the read-only policy stays.
    std::fs::write(d.path("avpfs.toml"), with_policy.replace("cache = \"never\"", "cache = \"sometimes\"")).unwrap();
    let (ok, text) = d.ctl("reload");
    assert!(!ok && text.contains("line") && text.contains("share.cache"), "{text}");
    assert!(c.create(1, "during", 0o644, libc::O_RDWR as u32).is_err());
    // Guests added: refused too.
    std::fs::write(
        d.path("avpfs.toml"),
        format!("{CONFIG}\n[[guest]]\nname = \"vm3\"\nsocket_path = \"vm3.sock\"\nshare = \"data\"\n"),
    )
    .unwrap();
    let (ok, text) = d.ctl("reload");
    assert!(!ok && text.contains("restart"), "{text}");
    // Back to read-write.
    std::fs::write(d.path("avpfs.toml"), CONFIG).unwrap();
    assert_eq!(d.ctl_json("reload")["changed"], serde_json::json!(["vm1"]));
    c.create(1, "after", 0o644, libc::O_RDWR as u32).unwrap();
    assert!(d.path("share/after").exists());
    // SIGHUP reloads too (the supervisor reads the files for the sandboxed daemon).
    std::fs::write(d.path("avpfs.toml"), &with_policy).unwrap();
    avpfs_sys::process::kill(d.child.as_ref().unwrap().id() as i32, libc::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.create(1, &format!("hup-{}", Instant::now().elapsed().as_nanos()), 0o644, libc::O_RDWR as u32).is_ok() {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.ctl_json("status")["guests"][0]["connected"].as_bool().unwrap());
}

/// Parses `text` with the Prometheus client library's parser (Debian's
/// python3-prometheus-client) and returns its families as `name type
/// samples` lines.
fn parse_prometheus(text: &str) -> String {
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
                  for f in p(sys.stdin.read()):\n    print(f.name, f.type, len(f.samples))\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (scripts/install-deps.sh test)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Prometheus parser refused it: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn metrics_parse_as_prometheus_text_with_cumulative_buckets() {
    let d = start();
    let h = d.connect("vm1");
    let c = FuseClient::new(&h, 1);
    for _ in 0..4 {
        c.lookup(1, "a").unwrap();
    }
    let (ok, text) = d.ctl("metrics");
    assert!(ok, "{text}");
    let families = parse_prometheus(&text);
    assert!(families.contains("avpfs_request_duration_seconds histogram"), "{families}");
    assert!(families.contains("avpfs_requests counter"), "{families}");
    assert!(text.contains("avpfs_requests_total{guest=\"vm1\",share=\"data\",op=\"LOOKUP\"} 4"), "{text}");
    assert!(text.contains("avpfs_guest_connected{guest=\"vm2\",share=\"data\"} 0"));
    // Buckets never decrease, and +Inf is the count.
    let prefix = "avpfs_request_duration_seconds_bucket{guest=\"vm1\",share=\"data\",op=\"LOOKUP\"";
    let counts: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), avpfs_server::stats::LATENCY_BOUNDS_US.len() + 1);
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert_eq!(*counts.last().unwrap(), 4);
    // The same over HTTP.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.metrics_port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.0 200 OK") && reply.contains("text/plain; version=0.0.4"), "{reply}");
    let body = reply.split("\r\n\r\n").nth(1).unwrap();
    parse_prometheus(body);
    assert!(body.contains("avpfs_requests_total{guest=\"vm1\",share=\"data\",op=\"LOOKUP\"} 4"));
}

fn raw(path: &Path, line: &[u8]) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A refused client may find the socket closed before it writes.
    let _ = s.write_all(line);
    let mut r = BufReader::new(s);
    let mut reply = String::new();
    r.read_line(&mut reply).unwrap();
    reply
}

#[test]
fn bad_clients_are_answered_or_closed_and_guests_go_on() {
    let d = start();
    let h = d.connect("vm1");
    let c = FuseClient::new(&h, 1);
    let sock = d.path("control.sock");
    assert!(raw(&sock, b"{not json\n").contains("malformed request"));
    assert!(raw(&sock, b"{\"command\": 3}\n").contains("no \\\"command\\\" string"));
    assert!(raw(&sock, b"{\"command\": \"format-disk\"}\n").contains("unknown command"));
    // A huge line: an error, then the connection is closed.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(&vec![b'x'; 200 * 1024]);
    let mut all = String::new();
    let _ = s.read_to_string(&mut all);
    assert!(all.contains("request longer than 65536 bytes"), "{all}");
    // Clients that connect and never speak do not stop the others.
    let silent: Vec<UnixStream> = (0..10).map(|_| UnixStream::connect(&sock).unwrap()).collect();
    assert!(raw(&sock, b"{\"command\": \"status\"}\n").contains("\"ok\":true"));
    // 100 clients at once: each answered or closed.
    let many: Vec<UnixStream> = (0..100)
        .map(|_| {
            let mut s = UnixStream::connect(&sock).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let _ = s.write_all(b"{\"command\": \"status\"}\n");
            s
        })
        .collect();
    let mut answered = 0;
    for s in many {
        let mut line = String::new();
        match BufReader::new(s).read_line(&mut line) {
            Ok(_) if line.contains("\"ok\":true") => answered += 1,
            Ok(_) => assert!(line.is_empty() || line.contains("too many clients"), "{line}"),
            Err(e) => panic!("a client was neither answered nor closed: {e}"),
        }
    }
    assert!(answered >= 40, "only {answered} of 100 answered");
    drop(silent);
    // The guest was served all along.
    assert_eq!(c.lookup(1, "a").unwrap().attr.size, 5);
    assert!(d.ctl_json("status")["ok"].as_bool().unwrap());
}

#[test]
fn other_users_are_refused() {
    let d = start();
    let sock = d.path("control.sock");
    use std::os::unix::fs::PermissionsExt;
    // The socket file is the owner's only.
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
    // Even let through by the file's mode, another user's connection is refused.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let creds = avpfs_conformance::proc::Creds { uid: 65534, gid: 65534, groups: vec![] };
    let path = sock.clone();
    let child = avpfs_conformance::proc::spawn(Some(&creds), move |_, out| {
        out.raw("reply", raw(&path, b"{\"command\": \"status\"}\n"));
    })
    .unwrap();
    let outcome = child.join();
    let reply = outcome.steps.iter().find(|(k, _)| k == "reply").map(|(_, v)| v.clone()).unwrap_or_default();
    assert!(reply.contains("permission denied"), "{:?}", outcome.steps);
    assert!(d.ctl_json("status")["ok"].as_bool().unwrap());
}

#[test]
fn sigterm_stops_gracefully_releasing_locks_and_removing_sockets() {
    let mut d = start();
    let h = d.connect("vm1");
    let c = FuseClient::new(&h, 1);
    let node = c.lookup(1, "a").unwrap().nodeid;
    let fh = c.open(node, libc::O_RDWR as u32).unwrap().fh;
    let lk = |typ: i32, flags: u32| fuse_abi::LkIn {
        fh,
        owner: 7,
        lk: fuse_abi::FileLock { start: 0, end: u64::MAX, typ: typ as u32, pid: 1 },
        lk_flags: flags,
        padding: 0,
    };
    use zerocopy::IntoBytes;
    for flags in [0, fuse_abi::FUSE_LK_FLOCK] {
        let req = vhost_harness::fuse::request(
            fuse_abi::opcode::SETLK,
            c.next_unique(),
            node,
            &[lk(libc::F_WRLCK, flags).as_bytes()],
        );
        assert_eq!(c.call(&req, 64).unwrap().errno(), None);
    }
    // Both locks are held: a host process cannot take either.
    let file = std::fs::OpenOptions::new().read(true).write(true).open(d.path("share/a")).unwrap();
    use std::os::fd::AsFd;
    let whole = avpfs_sys::lock::Lock { typ: libc::F_WRLCK, start: 0, len: 0, pid: 0 };
    assert!(avpfs_sys::lock::ofd_setlk(file.as_fd(), whole, false).is_err());
    assert!(avpfs_sys::lock::flock(file.as_fd(), libc::LOCK_EX, false).is_err());
    // SIGTERM, with the guest still connected: the daemon ends within its
    // bounded wait for requests in progress, cleanly.
    let start = Instant::now();
    let mut child = d.child.take().unwrap();
    avpfs_sys::process::kill(child.id() as i32, libc::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    for s in ["vm1.sock", "vm2.sock", "control.sock"] {
        assert!(!d.path(s).exists(), "{s} left behind");
    }
    // The guest's locks went with it.
    avpfs_sys::lock::ofd_setlk(file.as_fd(), whole, false).unwrap();
    avpfs_sys::lock::flock(file.as_fd(), libc::LOCK_EX, false).unwrap();
    drop(h);
}

/// A 9P2000.L client of the daemon's `p9_listen` socket, attached to the
/// share's root as fid 0.
struct P9Client {
    stream: UnixStream,
    tag: u16,
}

impl P9Client {
    fn connect(path: &Path) -> P9Client {
        use p9_abi::*;
        let mut c = P9Client { stream: UnixStream::connect(path).unwrap(), tag: 0 };
        let v = c.rpc(&Request::Version(Tversion { msize: common::P9_MSIZE, version: b"9P2000.L" }));
        assert!(v.is_ok(), "{v:?}");
        let attach = Tattach { fid: Fid(0), afid: Fid::NOFID, uname: b"root", aname: b"", n_uname: 0 };
        assert!(c.rpc(&Request::Attach(attach)).is_ok());
        c
    }

    /// Sends `req`; Ok, or the errno of its Rlerror.
    fn rpc(&mut self, req: &p9_abi::Request<'_>) -> Result<(), i32> {
        use p9_abi::*;
        self.tag += 1;
        let tag = if matches!(req, Request::Version(_)) { Tag::NOTAG } else { Tag(self.tag) };
        let frame = common::p9_rpc(&mut self.stream, tag, req);
        match decode_reply(&frame, common::P9_MSIZE).unwrap().1 {
            Reply::Lerror { ecode } => Err(ecode as i32),
            _ => Ok(()),
        }
    }

    /// Creates `name` in the root (and clunks it); the errno on failure.
    fn create(&mut self, name: &str) -> Result<(), i32> {
        use p9_abi::*;
        let walk = Twalk { fid: Fid(0), newfid: Fid(1), names: WalkNames::from_slice(&[]).unwrap() };
        self.rpc(&Request::Walk(walk)).unwrap();
        let name = Name::entry(name.as_bytes()).unwrap();
        let req = Tlcreate { fid: Fid(1), name, flags: open_flags::RDWR, mode: 0o644, gid: 0 };
        let created = self.rpc(&Request::Lcreate(req));
        self.rpc(&Request::Clunk(Fid(1))).unwrap();
        created
    }
}

fn p9_listener(status: &Value) -> &Value {
    &status["p9"][0]
}

/// A share also served over 9P: status and the metrics count its
/// connections, and a reload of the share's policy reaches the 9P
/// connections already open as well as new ones.
#[test]
fn reload_reaches_open_9p_connections_and_status_counts_them() {
    let config = CONFIG.replace("cache = \"never\"\n", "cache = \"never\"\np9_listen = \"unix:p9.sock\"\n");
    let d = start_with(&config, &["vm1.sock", "vm2.sock", "control.sock", "p9.sock"]);
    let mut a = P9Client::connect(&d.path("p9.sock"));
    a.create("before").unwrap();
    let b = P9Client::connect(&d.path("p9.sock"));
    let status = d.ctl_json("status");
    let l = p9_listener(&status);
    assert_eq!(l["listen"], format!("unix:{}", d.path("p9.sock").display()), "{status}");
    assert_eq!(
        (l["share"].as_str(), l["connections"].as_u64(), l["accepted"].as_u64()),
        (Some("data"), Some(2), Some(2))
    );
    // A closed connection leaves the count.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while p9_listener(&d.ctl_json("status"))["connections"] != 1 {
        assert!(Instant::now() < deadline, "the closed 9P connection is still counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let metrics = d.ctl("metrics").1;
    let who = format!("listen=\"unix:{}\",share=\"data\"", d.path("p9.sock").display());
    assert!(metrics.contains(&format!("avpfs_9p_connections{{{who}}} 1")), "{metrics}");
    assert!(metrics.contains(&format!("avpfs_9p_connections_accepted_total{{{who}}} 2")), "{metrics}");
    parse_prometheus(&metrics);

    // The share's policy becomes read-only: the open connection and a new one.
    let ro = config.replace("p9_listen", "policy = \"ro.toml\"\np9_listen");
    std::fs::write(d.path("avpfs.toml"), &ro).unwrap();
    let changed = d.ctl_json("reload")["changed"].clone();
    let p9_name = format!("9p unix:{}", d.path("p9.sock").display());
    assert_eq!(changed, serde_json::json!(["vm1", "vm2", p9_name]));
    assert_eq!(a.create("during"), Err(libc::EROFS));
    let mut c = P9Client::connect(&d.path("p9.sock"));
    assert_eq!(c.create("new-during"), Err(libc::EROFS));
    assert!(!d.path("share/during").exists() && !d.path("share/new-during").exists());
    // Moving the listener needs a restart: refused, nothing changes.
    std::fs::write(d.path("avpfs.toml"), config.replace("unix:p9.sock", "unix:other.sock")).unwrap();
    let (ok, text) = d.ctl("reload");
    assert!(!ok && text.contains("restart"), "{text}");
    assert_eq!(a.create("during"), Err(libc::EROFS));
    // And back.
    std::fs::write(d.path("avpfs.toml"), &config).unwrap();
    d.ctl_json("reload");
    a.create("after").unwrap();
    c.create("new-after").unwrap();
    assert!(d.path("share/after").exists() && d.path("share/new-after").exists());
}
