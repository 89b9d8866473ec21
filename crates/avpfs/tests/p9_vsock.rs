//! `--9p-listen vsock:PORT` and `p9_listen = "vsock:PORT"` with the real
//! binary, sandbox and `--seccomp kill` on.
//!
//! What a machine allows decides how far a test goes: without AF_VSOCK
//! the tests that need it say so and pass; with AF_VSOCK but no transport
//! that connects to this machine itself (no `vsock_loopback`, no
//! `/dev/vhost-vsock`), the daemon is shown to bind and hold its port
//! through the sandbox and under seccomp, and a 9P client is tried and
//! skipped with the reason; with a loopback transport the client attaches
//! and walks over vsock.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use avpfs_sys::vsock::{VsockAddr, VsockListener, VsockStream, CID_ANY, CID_LOCAL, PORT_ANY};
use common::{p9_rpc as rpc, P9_MSIZE as MSIZE};
use p9_abi::*;

fn avpfs() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_avpfs"));
    cmd.env("AVPFS_LOG", "info").stdin(Stdio::null());
    cmd
}

/// A port nobody holds now (the kernel's pick), or `None` and why when
/// this kernel has no AF_VSOCK.
fn free_port() -> Option<u32> {
    match VsockListener::bind(VsockAddr::new(CID_ANY, PORT_ANY)) {
        Ok(l) => Some(l.local_addr().port),
        Err(e) => {
            eprintln!("skipped: no AF_VSOCK sockets here ({e})");
            None
        }
    }
}

/// Whether a second socket can bind `port`: `Err` with the errno when not.
fn bind_errno(port: u32) -> Result<(), i32> {
    VsockListener::bind(VsockAddr::new(CID_ANY, port)).map(drop).map_err(|e| e.raw_os_error().unwrap_or(0))
}

/// A running daemon whose stderr goes to a file; stopped on drop.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn start(cmd: &mut Command, log: PathBuf) -> Daemon {
        let stderr = std::fs::File::create(&log).unwrap();
        let child = cmd.stderr(stderr).spawn().expect("start avpfs");
        Daemon { child: Some(child), log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has `text`; panics if avpfs exits first.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(text) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("avpfs exited ({status}) before logging {text:?}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no {text:?} in 20 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// SIGTERM; the exit status's success.
    fn stop(&mut self) -> bool {
        let mut child = self.child.take().unwrap();
        avpfs_sys::process::kill(child.id() as i32, libc::SIGTERM).unwrap();
        child.wait().unwrap().success()
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

/// Tversion, Tattach of the root and a walk to `name` over `stream`; the
/// walked file's qid path.
fn attach_and_walk<S: Read + Write>(stream: &mut S, name: &str) -> u64 {
    let frame = rpc(stream, Tag::NOTAG, &Request::Version(Tversion { msize: MSIZE, version: b"9P2000.L" }));
    assert!(matches!(decode_reply(&frame, MSIZE).unwrap().1, Reply::Version(_)), "{frame:?}");
    let attach = Tattach { fid: Fid(0), afid: Fid::NOFID, uname: b"root", aname: b"", n_uname: 0 };
    let frame = rpc(stream, Tag(1), &Request::Attach(attach));
    assert!(matches!(decode_reply(&frame, MSIZE).unwrap().1, Reply::Attach(_)), "{frame:?}");
    let names = [Name::walk_element(name.as_bytes()).unwrap()];
    let walk = Twalk { fid: Fid(0), newfid: Fid(1), names: WalkNames::from_slice(&names).unwrap() };
    let frame = rpc(stream, Tag(2), &Request::Walk(walk));
    match decode_reply(&frame, MSIZE).unwrap().1 {
        Reply::Walk(qids) if qids.as_slice().len() == 1 => qids.as_slice()[0].path,
        other => panic!("walk to {name}: {other:?}"),
    }
}

/// A share with a file `hello`; its inode number.
fn share(dir: &Path) -> (PathBuf, u64) {
    let share = dir.join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("hello"), "hi\n").unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(share.join("hello")).unwrap());
    (share, ino)
}

/// The configuration file form: one share served only over 9P at `addr`.
fn config_file(dir: &Path, share: &Path, addr: &str) -> PathBuf {
    let file = dir.join("avpfs.toml");
    let text = format!("[[share]]\nname = \"data\"\nshared_dir = \"{}\"\np9_listen = \"{addr}\"\n", share.display());
    std::fs::write(&file, text).unwrap();
    file
}

/// The daemon started with `args` listens on vsock `port` through its
/// sandbox and under `--seccomp kill`: the port is held (a second bind is
/// EADDRINUSE) while it runs, and free once it stopped with status 0. A 9P
/// client attaches over vsock where this machine can connect to itself.
fn listens_on_vsock(dir: &Path, port: u32, ino: u64, args: &[&std::ffi::OsStr]) {
    let mut d =
        Daemon::start(avpfs().args(args).args(["--sandbox", "namespace", "--seccomp", "kill"]), dir.join("log"));
    d.wait_for(&format!("9P2000.L listens on vsock:{port}"));
    d.wait_for("sandbox: namespaces entered");
    d.wait_for("seccomp: ");
    assert_eq!(bind_errno(port), Err(libc::EADDRINUSE), "the daemon holds vsock port {port}");
    // Its 9p-listen thread starts after the filter and waits in accept4:
    // a call the filter refused would have killed the process by now.
    std::thread::sleep(Duration::from_millis(300));
    assert!(d.running(), "avpfs died under seccomp:\n{}", d.log());
    match VsockStream::connect(VsockAddr::new(CID_LOCAL, port)) {
        Ok(mut s) => {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            assert_eq!(attach_and_walk(&mut s, "hello"), ino);
            drop(s);
            d.wait_for("9p: connection 0 from vsock 1:");
            d.wait_for("closed by the client");
        }
        Err(e) => eprintln!("end-to-end part skipped: no vsock transport connects to this machine (CID 1: {e})"),
    }
    assert!(d.running(), "avpfs died:\n{}", d.log());
    assert!(d.stop(), "avpfs did not stop cleanly:\n{}", d.log());
    assert_eq!(bind_errno(port), Ok(()), "vsock port {port} is free once avpfs stopped");
}

#[test]
fn the_command_line_listens_on_vsock_in_the_sandbox_under_seccomp_kill() {
    let Some(port) = free_port() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (share, ino) = share(dir.path());
    let addr = format!("vsock:{port}");
    listens_on_vsock(
        dir.path(),
        port,
        ino,
        &["--shared-dir".as_ref(), share.as_ref(), "--9p-listen".as_ref(), addr.as_ref()],
    );
}

#[test]
fn the_configuration_file_listens_on_vsock_in_the_sandbox_under_seccomp_kill() {
    let Some(port) = free_port() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (share, ino) = share(dir.path());
    let file = config_file(dir.path(), &share, &format!("vsock:{port}"));
    listens_on_vsock(dir.path(), port, ino, &["--config".as_ref(), file.as_ref()]);
}

fn assert_refused(out: &Output, what: &str, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    assert!(stderr.contains(expected), "{what}: expected {expected:?} in {stderr}");
}

#[test]
fn a_vsock_port_in_use_is_a_clear_error() {
    let Some(port) = free_port() else { return };
    let taken = VsockListener::bind(VsockAddr::new(CID_ANY, port)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (share, _) = share(dir.path());
    let expected = format!("cannot listen on vsock:{port}: vsock port {port} is already in use");
    let out = avpfs().arg("--shared-dir").arg(&share).arg("--9p-listen").arg(format!("vsock:{port}")).output().unwrap();
    assert_refused(&out, "--9p-listen", &expected);
    let file = config_file(dir.path(), &share, &format!("vsock:{port}"));
    let out = avpfs().arg("--config").arg(&file).output().unwrap();
    assert_refused(&out, "p9_listen", &expected);
    // The port is bound first: with a front end, nothing is made either.
    let sock = dir.path().join("vhost.sock");
    let out = avpfs()
        .arg("--shared-dir")
        .arg(&share)
        .arg("--socket-path")
        .arg(&sock)
        .arg("--9p-listen")
        .arg(format!("vsock:{port}"))
        .output()
        .unwrap();
    assert_refused(&out, "--9p-listen with --socket-path", &expected);
    assert!(!sock.exists(), "no vhost-user socket is made");
    // Nor is anything mounted.
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = avpfs()
        .arg("--shared-dir")
        .arg(&share)
        .arg("--fuse-mount")
        .arg(&mnt)
        .arg("--9p-listen")
        .arg(format!("vsock:{port}"))
        .output()
        .unwrap();
    assert_refused(&out, "--9p-listen with --fuse-mount", &expected);
    assert!(!common::is_fuse_mount(&mnt), "nothing is mounted");
    drop(taken);
}

#[test]
fn bad_vsock_addresses_are_refused_by_the_parser_and_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let (share, _) = share(dir.path());
    for bad in ["vsock:", "vsock:abc", "vsock:99999999999", "vsock:4294967295", "vsock:-1", "vsock:1:2:3"] {
        let out = avpfs().arg("--shared-dir").arg(&share).arg("--9p-listen").arg(bad).output().unwrap();
        assert_refused(&out, bad, &format!("--9p-listen {bad:?}: expected unix:PATH, vsock:PORT"));
        let file = config_file(dir.path(), &share, bad);
        let check = avpfs().arg("check-config").arg(&file).output().unwrap();
        assert_refused(&check, bad, "line 4: share.p9_listen");
        assert_refused(&check, bad, &format!("{bad:?}: expected unix:PATH, vsock:PORT"));
        let out = avpfs().arg("--config").arg(&file).output().unwrap();
        assert_refused(&out, bad, "line 4: share.p9_listen");
    }
    for good in ["vsock:5640", "vsock:3:5640"] {
        let file = config_file(dir.path(), &share, good);
        let check = avpfs().arg("check-config").arg(&file).output().unwrap();
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success(), "{good}: {}", String::from_utf8_lossy(&check.stderr));
        assert!(stdout.contains(&format!("9P2000.L on {good}")), "{stdout}");
    }
}
