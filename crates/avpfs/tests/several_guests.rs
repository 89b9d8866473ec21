//! One `avpfs --config` process serving several guests: the real binary
//! (sandbox, seccomp and all) with in-process vhost-user front ends that
//! speak the real protocol. Each guest has its own session (node ids,
//! handles, limits, policy) on one host tree; locks are host locks, so the
//! guests exclude each other; a guest that goes drops only its own session.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fuse_abi::{self as abi, opcode};
use vhost_harness::fuse::{request, FuseClient, Reply};
use vhost_harness::{Harness, Submitted};
use zerocopy::IntoBytes;

/// A running `avpfs --config`; stopped on drop.
struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn share(&self) -> PathBuf {
        self.dir.path().join("share")
    }

    fn socket(&self, guest: &str) -> PathBuf {
        self.dir.path().join(format!("{guest}.sock"))
    }

    /// Connects as guest `guest` (one request queue) and sends INIT.
    fn connect(&self, guest: &str) -> Harness {
        let h = Harness::start(self.socket(guest), 2).unwrap();
        FuseClient::new(&h, 1).init().unwrap();
        h
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = avpfs_sys::process::kill(child.id() as i32, libc::SIGTERM);
            let _ = child.wait();
        }
    }
}

/// `[[guest]]` tables for `guests` ((name, extra lines)) on share "data".
fn config(share: &Path, guests: &[(&str, &str)]) -> String {
    let mut c = format!("[[share]]\nname = \"data\"\nshared_dir = \"{}\"\ncache = \"never\"\n", share.display());
    for (name, extra) in guests {
        c += &format!("\n[[guest]]\nname = \"{name}\"\nsocket_path = \"{name}.sock\"\nshare = \"data\"\n{extra}");
    }
    c
}

fn avpfs() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_avpfs"));
    cmd.env("AVPFS_LOG", std::env::var("AVPFS_LOG").unwrap_or_else(|_| "warn".into())).stdin(Stdio::null());
    cmd
}

/// Starts one daemon for `guests`, with `files` (name, content) in the share
/// and the policy files `policies` (name, text) beside the configuration.
fn start(guests: &[(&str, &str)], files: &[(&str, &str)], policies: &[(&str, &str)]) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    for (name, content) in files {
        std::fs::write(share.join(name), content).unwrap();
    }
    for (name, text) in policies {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let file = dir.path().join("avpfs.toml");
    std::fs::write(&file, config(&share, guests)).unwrap();
    let child = avpfs().arg("--config").arg(&file).spawn().expect("start avpfs");
    let mut d = Daemon { child: Some(child), dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !guests.iter().all(|(g, _)| d.socket(g).exists()) {
        if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("avpfs exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "avpfs did not listen in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

fn errno<T: std::fmt::Debug>(r: Result<T, vhost_harness::Error>) -> i32 {
    match r {
        Err(vhost_harness::Error::Fuse(e)) => e,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn each_guest_has_its_own_node_ids_and_handles_on_one_tree() {
    let d = start(&[("vm1", ""), ("vm2", "tag = \"second\"\n")], &[("a", "A"), ("b", "B"), ("c", "C")], &[]);
    let (h1, h2) = (d.connect("vm1"), d.connect("vm2"));
    assert_eq!((h1.tag().as_str(), h2.tag().as_str()), ("data", "second"), "each guest's own tag");
    let (c1, c2) = (FuseClient::new(&h1, 1), FuseClient::new(&h2, 1));
    let ids1: Vec<u64> = ["a", "b", "c"].iter().map(|n| c1.lookup(1, n).unwrap().nodeid).collect();
    // Guest 2's first node gets the first id of its own session.
    let c_in_2 = c2.lookup(1, "c").unwrap().nodeid;
    assert_eq!(c_in_2, ids1[0], "node ids are per session");
    assert_ne!(ids1[2], c_in_2);
    // Guest 1's id of "c" means nothing to guest 2.
    assert_eq!(errno(c2.getattr(ids1[2])), libc::ENOENT);
    // Both reach the same host file.
    assert_eq!(c1.getattr(ids1[2]).unwrap().attr.ino, c2.getattr(c_in_2).unwrap().attr.ino);
    // Handles are per session as well.
    let fh1 = c1.open(ids1[2], libc::O_RDWR as u32).unwrap().fh;
    let fh2 = c2.open(c_in_2, libc::O_RDONLY as u32).unwrap().fh;
    assert_eq!(fh1, fh2, "each session numbers its own handles");
    c1.write(ids1[2], fh1, 0, b"new").unwrap();
    assert_eq!(c2.read(c_in_2, fh2, 0, 16).unwrap(), b"new", "one host tree");
    // A write through guest 2's handle number in guest 1 would use guest
    // 1's own (read-write) handle; guest 2's handle is read-only.
    assert_eq!(errno(c2.write(c_in_2, fh2, 0, b"x")), libc::EBADF);
}

#[test]
fn a_guest_that_disconnects_drops_only_its_session_and_can_come_back() {
    let d = start(&[("vm1", ""), ("vm2", "")], &[("f", "shared")], &[]);
    let h1 = d.connect("vm1");
    let c1 = FuseClient::new(&h1, 1);
    let f1 = c1.lookup(1, "f").unwrap().nodeid;
    let fh1 = c1.open(f1, libc::O_RDWR as u32).unwrap().fh;
    let old_f2 = {
        let h2 = d.connect("vm2");
        let c2 = FuseClient::new(&h2, 1);
        let (e, _) = c2.create(1, "g", 0o644, libc::O_RDWR as u32).unwrap();
        e.nodeid
        // Guest 2's VMM goes away with a file open.
    };
    // Guest 1's open file keeps working.
    c1.write(f1, fh1, 0, b"still").unwrap();
    assert_eq!(c1.read(f1, fh1, 0, 16).unwrap(), b"stilld");
    // Guest 2 comes back on its socket: a fresh session.
    let deadline = Instant::now() + Duration::from_secs(10);
    let h2 = loop {
        match Harness::start(d.socket("vm2"), 2) {
            Ok(h) => break h,
            Err(e) if Instant::now() < deadline => {
                eprintln!("reconnect: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("guest 2 cannot reconnect: {e}"),
        }
    };
    let c2 = FuseClient::new(&h2, 1);
    c2.init().unwrap();
    assert_eq!(errno(c2.getattr(old_f2)), libc::ENOENT, "the old session's nodes are gone");
    assert_eq!(c2.lookup(1, "g").unwrap().attr.size, 0);
    let f2 = c2.lookup(1, "f").unwrap().nodeid;
    let fh2 = c2.open(f2, libc::O_RDONLY as u32).unwrap().fh;
    assert_eq!(c2.read(f2, fh2, 0, 16).unwrap(), b"stilld");
    // And guest 1 never noticed.
    assert_eq!(c1.read(f1, fh1, 0, 5).unwrap(), b"still");
}

#[test]
fn each_guest_has_its_own_policy_and_limits() {
    let ro = "[share]\nreadonly = true\nmax_open_files = 2\n";
    let d = start(
        &[("rw", ""), ("ro", "policy = \"ro.toml\"\n")],
        &[("a", "1"), ("b", "2"), ("c", "3")],
        &[("ro.toml", ro)],
    );
    let (hw, hr) = (d.connect("rw"), d.connect("ro"));
    let (w, r) = (FuseClient::new(&hw, 1), FuseClient::new(&hr, 1));
    // The read-only guest cannot change the tree; the other can.
    assert_eq!(errno(r.create(1, "new", 0o644, libc::O_RDWR as u32)), libc::EROFS);
    assert_eq!(errno(r.mkdir(1, "d", 0o755)), libc::EROFS);
    w.create(1, "new", 0o644, libc::O_RDWR as u32).unwrap();
    assert!(d.share().join("new").exists());
    // Its limit of two open files is its own.
    let ids: Vec<u64> = ["a", "b", "c"].iter().map(|n| r.lookup(1, n).unwrap().nodeid).collect();
    r.open(ids[0], libc::O_RDONLY as u32).unwrap();
    r.open(ids[1], libc::O_RDONLY as u32).unwrap();
    assert_eq!(errno(r.open(ids[2], libc::O_RDONLY as u32)), libc::EMFILE);
    for n in ["a", "b", "c"] {
        let id = w.lookup(1, n).unwrap().nodeid;
        w.open(id, libc::O_RDWR as u32).unwrap();
    }
}

fn lk(fh: u64, owner: u64, typ: i32, start: u64, end: u64) -> abi::LkIn {
    abi::LkIn { fh, owner, lk: abi::FileLock { start, end, typ: typ as u32, pid: 42 }, lk_flags: 0, padding: 0 }
}

fn setlk(c: &FuseClient<'_>, node: u64, l: &abi::LkIn) -> Option<i32> {
    c.call(&request(opcode::SETLK, c.next_unique(), node, &[l.as_bytes()]), 64).unwrap().errno()
}

/// Submits a SETLKW on queue 1 without waiting for it.
fn submit_setlkw(h: &Harness, unique: u64, node: u64, l: &abi::LkIn) -> Submitted {
    h.submit_request(1, &request(opcode::SETLKW, unique, node, &[l.as_bytes()]), 64).unwrap()
}

fn reply_of(h: &Harness, waiting: &Submitted, wait: Duration) -> Option<Reply> {
    Some(Reply::parse(&h.reply_within(waiting, wait).unwrap()?).unwrap())
}

#[test]
fn record_locks_exclude_each_other_across_guests_of_one_daemon() {
    let d = start(&[("vm1", ""), ("vm2", "")], &[("f", "0123456789")], &[]);
    let (h1, h2) = (d.connect("vm1"), d.connect("vm2"));
    let (c1, c2) = (FuseClient::new(&h1, 1), FuseClient::new(&h2, 1));
    let (n1, n2) = (c1.lookup(1, "f").unwrap().nodeid, c2.lookup(1, "f").unwrap().nodeid);
    let fh1 = c1.open(n1, libc::O_RDWR as u32).unwrap().fh;
    let fh2 = c2.open(n2, libc::O_RDWR as u32).unwrap().fh;
    // Guest 1 write-locks bytes 2..=5; guest 2 may lock bytes 6.. but not 4..
    assert_eq!(setlk(&c1, n1, &lk(fh1, 1, libc::F_WRLCK, 2, 5)), None);
    assert_eq!(setlk(&c2, n2, &lk(fh2, 1, libc::F_WRLCK, 6, 9)), None, "byte ranges are honoured");
    assert_eq!(setlk(&c2, n2, &lk(fh2, 1, libc::F_RDLCK, 4, 4)), Some(libc::EAGAIN));
    // GETLK in guest 2 reports guest 1's lock: its type and range.
    let probe = lk(fh2, 1, libc::F_WRLCK, 0, 5);
    let got: abi::LkOut =
        c2.call(&request(opcode::GETLK, c2.next_unique(), n2, &[probe.as_bytes()]), 64).unwrap().decode().unwrap();
    assert_eq!((got.lk.typ, got.lk.start, got.lk.end), (libc::F_WRLCK as u32, 2, 5));

    // A SETLKW in guest 2 waits, without holding up guest 2's other requests.
    let waiting = submit_setlkw(&h2, 1 << 40, n2, &lk(fh2, 1, libc::F_WRLCK, 0, 5));
    assert!(reply_of(&h2, &waiting, Duration::from_millis(200)).is_none(), "granted while guest 1 holds it");
    assert_eq!(c2.read(n2, fh2, 0, 4).unwrap(), b"0123", "guest 2's queue still answers");
    // Guest 1 unlocks: guest 2's wait ends with the lock.
    assert_eq!(setlk(&c1, n1, &lk(fh1, 1, libc::F_UNLCK, 0, u64::MAX)), None);
    let reply = reply_of(&h2, &waiting, Duration::from_secs(10)).expect("SETLKW granted after the unlock");
    assert_eq!(reply.errno(), None);
    assert_eq!(setlk(&c1, n1, &lk(fh1, 1, libc::F_WRLCK, 0, 0)), Some(libc::EAGAIN), "guest 2 holds it now");

    // INTERRUPT ends guest 1's wait for guest 2's lock with EINTR.
    let waiter = 3 << 40;
    let waiting = submit_setlkw(&h1, waiter, n1, &lk(fh1, 1, libc::F_WRLCK, 0, 0));
    let interrupt = request(opcode::INTERRUPT, c1.next_unique(), 0, &[abi::InterruptIn { unique: waiter }.as_bytes()]);
    let reply = loop {
        h1.request(0, &interrupt, 0).unwrap();
        if let Some(r) = reply_of(&h1, &waiting, Duration::from_millis(50)) {
            break r;
        }
    };
    assert_eq!(reply.errno(), Some(libc::EINTR));
}

#[test]
fn a_guest_that_goes_away_loses_its_locks_at_once() {
    let d = start(&[("vm1", ""), ("vm2", "")], &[("f", "x")], &[]);
    let h2 = d.connect("vm2");
    let c2 = FuseClient::new(&h2, 1);
    let n2 = c2.lookup(1, "f").unwrap().nodeid;
    let fh2 = c2.open(n2, libc::O_RDWR as u32).unwrap().fh;
    let waiting = {
        let h1 = d.connect("vm1");
        let c1 = FuseClient::new(&h1, 1);
        let n1 = c1.lookup(1, "f").unwrap().nodeid;
        let fh1 = c1.open(n1, libc::O_RDWR as u32).unwrap().fh;
        assert_eq!(setlk(&c1, n1, &lk(fh1, 1, libc::F_WRLCK, 0, u64::MAX)), None);
        let mut flock = lk(fh1, 2, libc::F_WRLCK, 0, u64::MAX);
        flock.lk_flags = abi::FUSE_LK_FLOCK;
        assert_eq!(setlk(&c1, n1, &flock), None);
        // Guest 2 waits for guest 1's record lock...
        let waiting = submit_setlkw(&h2, 1 << 40, n2, &lk(fh2, 1, libc::F_WRLCK, 0, u64::MAX));
        assert!(reply_of(&h2, &waiting, Duration::from_millis(200)).is_none());
        waiting
        // ...and guest 1's VMM goes away, holding both locks.
    };
    let reply = reply_of(&h2, &waiting, Duration::from_secs(10)).expect("the waiter proceeds");
    assert_eq!(reply.errno(), None);
    let mut flock = lk(fh2, 2, libc::F_WRLCK, 0, u64::MAX);
    flock.lk_flags = abi::FUSE_LK_FLOCK;
    assert_eq!(setlk(&c2, n2, &flock), None, "the flock went with guest 1's session");
}

#[test]
fn bad_configurations_are_refused_naming_the_line_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("share")).unwrap();
    std::fs::write(dir.path().join("rw.toml"), "[share]\n").unwrap();
    std::fs::write(dir.path().join("ro.toml"), "[share]\nreadonly = true\n").unwrap();
    let share = dir.path().join("share");
    let two = config(&share, &[("vm1", ""), ("vm2", "")]);
    let cases = [
        (two.replace("vm2.sock", "vm1.sock"), "line 13: guest.socket_path", "also the socket of guest \"vm1\""),
        (two.replace("share = \"data\"\n", "share = \"dta\"\n"), "line 9: guest.share", "unknown share \"dta\""),
        (two.clone() + "tag = \"0123456789012345678901234567890123456\"\n", "line 15: guest.tag", "37 bytes"),
        (
            two.replace("cache = \"never\"", "policy = \"ro.toml\"") + "policy = \"rw.toml\"\n",
            "line 15: guest.policy",
            "the share is read-only",
        ),
    ];
    for (text, at, what) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, &text).unwrap();
        let out = avpfs().arg("--config").arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {text}");
        assert!(stderr.contains(at) && stderr.contains(what), "{at} / {what}: {stderr}");
        assert!(!dir.path().join("vm1.sock").exists() && !dir.path().join("vm2.sock").exists(), "a socket was made");
        let check = avpfs().arg("check-config").arg(&file).output().unwrap();
        assert!(!check.status.success() && String::from_utf8_lossy(&check.stderr).contains(at));
    }
    // The good one checks out, naming both guests.
    let file = dir.path().join("good.toml");
    std::fs::write(&file, &two).unwrap();
    let check = avpfs().arg("check-config").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && stdout.contains("guests: vm1, vm2"), "{stdout}");
    // Share flags do not mix with --config.
    let out = avpfs().arg("--config").arg(&file).args(["--cache", "never"]).output().unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--cache cannot be used with --config")
    );
}

#[test]
fn the_readme_example_configuration_checks_out() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("## Several guests on one tree").nth(1).expect("the README section");
    let example = section.split("```toml\n").nth(1).and_then(|s| s.split("```").next()).expect("its TOML example");
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data-policy.toml"), "[share]\nmax_open_files = 100\n").unwrap();
    std::fs::write(dir.path().join("vm2-ro.toml"), "[share]\nreadonly = true\nmax_open_files = 10\n").unwrap();
    let text = example
        .replace("/srv/data", &p("data"))
        .replace("/etc/avpfs/", &format!("{}/", dir.path().display()))
        .replace("/run/avpfs/", &format!("{}/", dir.path().display()));
    let file = dir.path().join("avpfs.toml");
    std::fs::write(&file, text).unwrap();
    let check = avpfs().arg("check-config").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(stdout.contains("guests: vm1, vm2") && stdout.contains("share:          read-only"), "{stdout}");
}

#[test]
fn a_share_is_served_over_9p_beside_its_vhost_user_guest() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(dir.path().join("secret"), "beside the share").unwrap();
    let text = config(&share, &[("vm1", "")])
        .replace("cache = \"never\"\n", "cache = \"never\"\np9_listen = \"unix:p9.sock\"\n");
    let file = dir.path().join("avpfs.toml");
    std::fs::write(&file, text).unwrap();
    let mut child = avpfs().arg("--config").arg(&file).spawn().unwrap();
    let p9 = dir.path().join("p9.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(p9.exists() && dir.path().join("vm1.sock").exists()) {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "avpfs did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A 9P client attaches, and walking '..' from the root to the file
    // beside the share is refused.
    let probe = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/guest/9p-walk-probe.py");
    let out = Command::new("/usr/bin/python3").arg(probe).arg(&p9).arg("").arg("secret").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("refused"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    // The vhost-user guest of the same share is served meanwhile.
    let h = Harness::start(dir.path().join("vm1.sock"), 2).unwrap();
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    c.create(1, "both", 0o644, libc::O_RDWR as u32).unwrap();
    assert!(share.join("both").exists());
    let _ = avpfs_sys::process::kill(child.id() as i32, libc::SIGTERM);
    child.wait().unwrap();
    assert!(!p9.exists(), "the 9P socket is removed when avpfs stops");
}
