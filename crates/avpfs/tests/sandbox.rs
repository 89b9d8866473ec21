//! The sandboxed daemon, as the real binary: namespaces and the new root,
//! chroot, capabilities, no_new_privs, and the seccomp allow-list proven by
//! the whole POSIX conformance suite under `--seccomp kill`, through
//! /dev/fuse and through the vhost-user front end.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Mounted;

/// The capability bits of virtiofsd's default set (CAP_CHOWN 0,
/// DAC_OVERRIDE 1, FOWNER 3, FSETID 4, SETGID 6, SETUID 7, MKNOD 27,
/// SETFCAP 31).
const DEFAULT_CAPS: u64 = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 4) | (1 << 6) | (1 << 7) | (1 << 27) | (1 << 31);
const CAP_DAC_READ_SEARCH: u64 = 1 << 2;
const CAP_SYS_ADMIN: u64 = 1 << 21;
const CAP_MKNOD: u64 = 1 << 27;

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// The process that serves: the supervisor's only child when there is one.
fn daemon_pid(launched: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{launched}/task/{launched}/children")).unwrap_or_default();
    let children: Vec<u32> = children.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    match children[..] {
        [] => launched,
        [one] => one,
        _ => panic!("{launched} has several children: {children:?}"),
    }
}

/// A field of /proc/PID/status.
fn status_field(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

fn cap_eff(pid: u32) -> u64 {
    u64::from_str_radix(&status_field(pid, "CapEff"), 16).unwrap()
}

fn ns(pid: &str, kind: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap()
}

/// Starts avpfs with a log file; a file read through the mount proves the
/// daemon finished its start-up (sandbox, capabilities, seccomp).
fn start(tmp: &Path, extra: &[&str]) -> (Mounted, PathBuf) {
    let share = tmp.join("share");
    let mnt = tmp.join("mnt");
    let log = tmp.join("avpfs.log");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("hello"), b"hello from the host\n").unwrap();
    let m = Mounted::start_logging(&share, &mnt, extra, Some(&log));
    assert_eq!(std::fs::read(mnt.join("hello")).unwrap(), b"hello from the host\n");
    (m, log)
}

fn log_of(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

fn stop_cleanly(mut m: Mounted, log: &Path) {
    let mnt = m.mountpoint.clone();
    let status = m.stop();
    assert!(status.success(), "avpfs exited with {status}; log:\n{}", log_of(log));
    assert!(!common::is_fuse_mount(&mnt), "still mounted after the stop");
}

#[test]
fn namespace_sandbox_serves_the_share_from_a_new_root() {
    let tmp = tmpdir();
    let (m, log) = start(tmp.path(), &["--sandbox", "namespace"]);
    let launched = m.child.as_ref().unwrap().id();
    let pid = daemon_pid(launched);
    assert_ne!(pid, launched, "a supervisor waits for the sandboxed daemon");

    // Its own mount, PID, network and IPC namespaces; the supervisor stays in ours.
    for kind in ["mnt", "pid", "net", "ipc"] {
        assert_ne!(ns(&pid.to_string(), kind), ns("self", kind), "{kind} namespace is shared with the host");
        assert_eq!(ns(&launched.to_string(), kind), ns("self", kind), "the supervisor left the host's {kind}");
    }
    assert!(status_field(pid, "NSpid").ends_with("\t1") || status_field(pid, "NSpid").ends_with(" 1"));

    // Its root holds the share and its own /proc/self/fd, nothing else.
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let names: BTreeSet<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["proc".to_string(), "shared".to_string()]));
    let inside = std::fs::metadata(root.join("shared/0")).unwrap();
    let share = std::fs::metadata(&m.share).unwrap();
    assert_eq!((inside.dev(), inside.ino()), (share.dev(), share.ino()), "/shared/0 is not the share");
    let proc_names: BTreeSet<String> =
        std::fs::read_dir(root.join("proc")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(proc_names, BTreeSet::from(["self".to_string()]), "only /proc/self/fd is there");
    assert!(std::fs::read_dir(root.join("proc/self/fd")).unwrap().count() > 3);
    // The root cannot be written.
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root_line = mountinfo.lines().find(|l| l.split(' ').nth(4) == Some("/")).unwrap();
    assert!(root_line.split(' ').nth(5).unwrap().starts_with("ro"), "{root_line}");
    assert_eq!(mountinfo.lines().count(), 3, "{mountinfo}");
    // The guest does not see any of it.
    assert!(!m.mountpoint.join("proc").exists() && !m.mountpoint.join("shared").exists());

    // Files are served both ways.
    std::fs::write(m.mountpoint.join("from-mount"), b"x").unwrap();
    assert_eq!(std::fs::read(m.share.join("from-mount")).unwrap(), b"x");
    stop_cleanly(m, &log);
}

#[test]
fn chroot_sandbox_serves_the_share_with_xattrs() {
    let tmp = tmpdir();
    let (m, log) = start(tmp.path(), &["--sandbox", "chroot", "--xattr", "--seccomp", "kill"]);
    let pid = daemon_pid(m.child.as_ref().unwrap().id());
    let root = std::fs::metadata(format!("/proc/{pid}/root")).unwrap();
    let share = std::fs::metadata(&m.share).unwrap();
    assert_eq!((root.dev(), root.ino()), (share.dev(), share.ino()), "the root is the share");
    // Extended attributes go through /proc/self/fd, reached from outside the chroot.
    let f = m.mountpoint.join("hello");
    let c = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
    let target = avpfs_sys::xattr::Target::Path(&c);
    let set = avpfs_sys::xattr::set(target, c"user.k", b"v", 0);
    assert!(set.is_ok(), "setxattr: {set:?}");
    let got = avpfs_sys::xattr::get(target, c"user.k");
    assert_eq!(got.as_ref().map(Vec::len).ok(), Some(1), "getxattr: {got:?}");
    stop_cleanly(m, &log);
}

#[test]
fn capabilities_are_the_minimal_set() {
    let tmp = tmpdir();
    for (extra, want) in [
        (&["--sandbox", "namespace"][..], DEFAULT_CAPS),
        (&["--sandbox", "namespace", "--inode-file-handles"], DEFAULT_CAPS | CAP_DAC_READ_SEARCH),
        (&["--sandbox", "namespace", "--modcaps", "+sys_admin:-mknod"], (DEFAULT_CAPS | CAP_SYS_ADMIN) & !CAP_MKNOD),
        // Without a supervisor the daemon unmounts /dev/fuse itself.
        (&["--sandbox", "none", "--modcaps", "-mknod"], (DEFAULT_CAPS | CAP_SYS_ADMIN) & !CAP_MKNOD),
    ] {
        let dir = tmp.path().join(format!("{want:x}"));
        let (m, log) = start(&dir, extra);
        let pid = daemon_pid(m.child.as_ref().unwrap().id());
        assert_eq!(cap_eff(pid), want, "{extra:?}: CapEff {:x}", cap_eff(pid));
        let prm = u64::from_str_radix(&status_field(pid, "CapPrm"), 16).unwrap();
        let bnd = u64::from_str_radix(&status_field(pid, "CapBnd"), 16).unwrap();
        assert_eq!((prm, bnd), (want, want), "{extra:?}: permitted and bounding sets");
        assert_eq!(status_field(pid, "CapInh"), "0000000000000000");
        assert_eq!(status_field(pid, "CapAmb"), "0000000000000000");
        stop_cleanly(m, &log);
    }
}

/// As virtiofsd: without flags, a root daemon runs in the namespace sandbox
/// with the seccomp filter killing on a call outside the allow-list and
/// capabilities dropped to the default set.
#[test]
fn the_default_is_the_namespace_sandbox_with_seccomp_kill() {
    let tmp = tmpdir();
    let (m, log) = start(tmp.path(), &[]);
    let launched = m.child.as_ref().unwrap().id();
    let pid = daemon_pid(launched);
    assert_ne!(pid, launched, "a supervisor waits for the sandboxed daemon");
    for kind in ["mnt", "pid", "net", "ipc"] {
        assert_ne!(ns(&pid.to_string(), kind), ns("self", kind), "{kind} namespace is shared with the host");
    }
    assert_eq!(status_field(pid, "Seccomp"), "2", "filter mode");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(cap_eff(pid), DEFAULT_CAPS);
    stop_cleanly(m, &log);
}

#[test]
fn no_new_privs_and_seccomp_are_set() {
    let tmp = tmpdir();
    let (m, log) = start(tmp.path(), &["--sandbox", "namespace", "--seccomp", "kill"]);
    let pid = daemon_pid(m.child.as_ref().unwrap().id());
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(status_field(pid, "Seccomp"), "2", "filter mode");
    // Every thread, including those started before the filter.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        assert!(status.lines().any(|l| l == "Seccomp:\t2"), "a thread without the filter");
    }
    stop_cleanly(m, &log);
}

#[test]
fn the_supervisor_cleans_up_when_the_daemon_dies() {
    let tmp = tmpdir();
    let (mut m, _log) = start(tmp.path(), &["--sandbox", "namespace"]);
    let pid = daemon_pid(m.child.as_ref().unwrap().id());
    avpfs_sys::process::kill(pid as i32, libc::SIGKILL).expect("SIGKILL to the daemon");
    let status = m.child.take().unwrap().wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGKILL), "{status}");
    assert!(!common::is_fuse_mount(&m.mountpoint), "the supervisor unmounts a dead daemon's mount");
}

/// A process waiting for a POSIX lock on the mount is killed: the kernel
/// sends FUSE_INTERRUPT, the daemon signals its waiting thread (tgkill and
/// a signal handler under the filter), answers, and keeps serving.
#[test]
fn an_interrupted_lock_wait_is_answered_under_seccomp_kill() {
    use avpfs_sys::lock::{posix_setlk, Lock};
    use std::io::BufRead;
    use std::os::fd::AsFd;
    const NAME: &str = "an_interrupted_lock_wait_is_answered_under_seccomp_kill";
    const WAITER_FILE: &str = "AVPFS_TEST_LOCK_WAITER_FILE";
    const WAITING: &str = "waiter: waiting for the lock";
    let whole_file = |typ| Lock { typ, start: 0, len: 0, pid: 0 };
    if avpfs_sys::test_child::is(NAME) {
        // The waiter, this test re-run as a new process (the harness has
        // threads, so it is not forked): waits for a write lock on the file.
        let path = std::env::var_os(WAITER_FILE).unwrap();
        let fd = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
        println!("{WAITING}");
        let _ = posix_setlk(fd.as_fd(), whole_file(libc::F_WRLCK), true);
        return;
    }
    let tmp = tmpdir();
    let (mut m, log) = start(tmp.path(), &["--sandbox", "namespace", "--seccomp", "kill"]);
    let file = m.mountpoint.join("hello");
    let holder = std::fs::OpenOptions::new().read(true).write(true).open(&file).unwrap();
    posix_setlk(holder.as_fd(), whole_file(libc::F_WRLCK), false).unwrap();
    let mut waiter = avpfs_sys::test_child::command(NAME)
        .env(WAITER_FILE, &file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the waiter");
    // Count the time from when the waiter is about to wait, as after a fork
    // (the harness may have begun the line with the test's name).
    let mut out = std::io::BufReader::new(waiter.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.contains(WAITING) {
        line.clear();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(waiter.try_wait().unwrap().is_none(), "the lock was not waited for");
    waiter.kill().unwrap(); // SIGKILL
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiter.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the interrupted lock wait was never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(m.child.as_mut().unwrap().try_wait().unwrap().is_none(), "avpfs died; log:\n{}", log_of(&log));
    assert_eq!(std::fs::read(&file).unwrap(), b"hello from the host\n");
    drop(holder);
    stop_cleanly(m, &log);
}

/// Runs the conformance suite on the host and through avpfs with `flags`:
/// the only cases that may differ are `expected_to_differ`, and those must.
fn conformance_under(flags: &[&str], expected_to_differ: &[&str]) {
    let tmp = tmpdir();
    let baseline = tmp.path().join("baseline");
    let share = tmp.path().join("share");
    let mnt = tmp.path().join("mnt");
    let log = tmp.path().join("avpfs.log");
    std::fs::create_dir_all(&baseline).unwrap();
    let filter = std::env::var("AVPFS_CASE").ok();
    let expected = avpfs_conformance::run_suite(&baseline, filter.as_deref());
    let mut m = Mounted::start_logging(&share, &mnt, flags, Some(&log));
    let observed = avpfs_conformance::run_suite(&mnt, filter.as_deref());
    let diffs = avpfs_conformance::compare(&expected, &observed);
    let alive = m.child.as_mut().unwrap().try_wait().unwrap();
    assert!(alive.is_none(), "avpfs {flags:?} died during the suite ({alive:?}); log:\n{}", log_of(&log));
    let pid = daemon_pid(m.child.as_ref().unwrap().id());
    assert_eq!(status_field(pid, "Seccomp"), "2");
    let status = m.stop();
    assert!(status.success(), "avpfs exited with {status}; log:\n{}", log_of(&log));
    assert!(!expected.is_empty());
    let (known, unexpected): (Vec<&String>, Vec<&String>) =
        diffs.iter().partition(|d| expected_to_differ.iter().any(|case| d.starts_with(&format!("{case}:"))));
    if !unexpected.is_empty() {
        panic!(
            "{} differences between the host and avpfs {flags:?}:\n{}",
            unexpected.len(),
            unexpected.iter().map(|d| d.as_str()).collect::<Vec<_>>().join("\n")
        );
    }
    if filter.is_none() {
        for case in expected_to_differ {
            assert!(
                known.iter().any(|d| d.starts_with(&format!("{case}:"))),
                "{case} no longer differs: update the test"
            );
        }
    }
}

#[test]
fn seccomp_kill_runs_the_conformance_suite_in_the_namespace_sandbox() {
    // trusted.* extended attributes need CAP_SYS_ADMIN, kept on request only.
    conformance_under(&["--xattr", "--sandbox", "namespace", "--seccomp", "kill", "--modcaps=+sys_admin"], &[]);
}

#[test]
fn seccomp_kill_runs_the_conformance_suite_with_file_handles_and_no_cache() {
    let flags = ["--xattr", "--cache", "never", "--inode-file-handles", "--sandbox", "namespace", "--seccomp", "kill"];
    // With the default capabilities (no CAP_SYS_ADMIN, as virtiofsd) the
    // host refuses trusted.* extended attributes with EPERM.
    conformance_under(&flags, &["xattr.trusted"]);
}

#[test]
fn seccomp_kill_runs_the_conformance_suite_in_the_chroot_sandbox() {
    conformance_under(&["--xattr", "--sandbox", "chroot", "--seccomp", "kill", "--modcaps=+sys_admin"], &[]);
}

#[test]
fn seccomp_kill_runs_the_conformance_suite_without_a_sandbox() {
    // The daemon then unmounts itself on SIGTERM (umount2 must be allowed).
    conformance_under(&["--xattr", "--sandbox", "none", "--seccomp", "kill"], &[]);
}

/// The vhost-user front end under `--sandbox namespace --seccomp kill`: a
/// front end connects (memory table, eventfds, queues), the usual requests
/// are served, and the daemon ends cleanly when the front end leaves.
#[test]
fn vhost_user_is_served_under_the_sandbox_and_seccomp_kill() {
    use vhost_harness::fuse::FuseClient;
    use vhost_harness::Harness;

    let tmp = tmpdir();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("hello"), b"hello from the host\n").unwrap();
    let sock = tmp.path().join("vhost.sock");
    let log = tmp.path().join("avpfs.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_avpfs"))
        .arg("--shared-dir")
        .arg(&share)
        .arg("--socket-path")
        .arg(&sock)
        .args(["--sandbox", "namespace", "--seccomp", "kill", "--request-queues", "2", "--xattr"])
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(child.try_wait().unwrap().is_none(), "avpfs exited; log:\n{}", log_of(&log));
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    {
        let h = Harness::start(&sock, 3).unwrap_or_else(|e| panic!("connect: {e}; log:\n{}", log_of(&log)));
        let c = FuseClient::new(&h, 1);
        c.init().unwrap();
        let e = c.lookup(1, "hello").unwrap();
        let open = c.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
        assert_eq!(c.read(e.nodeid, open.fh, 0, 4096).unwrap(), b"hello from the host\n");
        c.release(e.nodeid, open.fh).unwrap();
        let c2 = c.on_queue(2);
        let d = c2.mkdir(1, "dir", 0o755).unwrap();
        let (entry, created) = c2.create(d.nodeid, "f", 0o644, libc::O_RDWR as u32).unwrap();
        assert_eq!(c2.write(entry.nodeid, created.fh, 0, b"written by the guest").unwrap(), 20);
        assert_eq!(c2.read(entry.nodeid, created.fh, 0, 100).unwrap(), b"written by the guest");
        c2.release(entry.nodeid, created.fh).unwrap();
        c.statfs(1).unwrap();
        c.forget(e.nodeid, 1).unwrap();
        let pid = daemon_pid(child.id());
        assert_eq!(status_field(pid, "Seccomp"), "2");
        assert_eq!(cap_eff(pid), DEFAULT_CAPS);
        h.disconnect();
    }
    assert_eq!(std::fs::read(share.join("dir/f")).unwrap(), b"written by the guest");
    // Like virtiofsd, the daemon ends when the front end leaves.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "avpfs did not end after the disconnect; log:\n{}", log_of(&log));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "avpfs exited with {status}; log:\n{}", log_of(&log));
    assert!(!sock.exists(), "the supervisor removes the socket file");
}
