//! The contenders: the two vhost-user-fs daemons, started on a fresh socket
//! for each session, avpfs's 9P server on a unix socket (level 2, reached
//! over vsock), QEMU's own 9p server (level 2) and the host's own system
//! calls; where their programs are found, and how virtiofsd is installed
//! when it is missing.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, IoContext};

/// Who is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Contender {
    /// This project's daemon.
    Avpfs,
    /// This project's daemon serving 9P2000.L on a unix socket
    /// (`--9p-listen`), which the guest reaches over vsock through
    /// vhost-device-vsock (level 2 only).
    #[value(name = "avpfs-9p")]
    #[serde(rename = "avpfs-9p")]
    AvpfsNineP,
    /// The reference vhost-user-fs daemon.
    Virtiofsd,
    /// The host's own system calls on the shared directory (no daemon, no FUSE).
    Host,
    /// QEMU's own 9p server (virtio-9p-pci; level 2 only).
    #[value(name = "9p")]
    #[serde(rename = "9p")]
    NineP,
    /// QEMU's own 9p server with `security_model=mapped-xattr` (level 2
    /// only): owners and modes kept in `user.virtfs.*` extended attributes.
    #[value(name = "9p-mapped")]
    #[serde(rename = "9p-mapped")]
    NinePMapped,
}

impl Contender {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Avpfs => "avpfs",
            Contender::Virtiofsd => "virtiofsd",
            Contender::Host => "host",
            Contender::NineP => "9p",
            Contender::AvpfsNineP => "avpfs-9p",
            Contender::NinePMapped => "9p-mapped",
        }
    }

    /// Whether a daemon process is started for it (a vhost-user-fs daemon,
    /// or avpfs's 9P server), whose CPU time the benchmark samples.
    pub fn is_daemon(self) -> bool {
        matches!(self, Contender::Avpfs | Contender::Virtiofsd | Contender::AvpfsNineP)
    }

    /// QEMU's own 9p server's `security_model`, for the contenders it serves.
    pub fn qemu_9p_security(self) -> Option<&'static str> {
        match self {
            Contender::NineP => Some("none"),
            Contender::NinePMapped => Some("mapped-xattr"),
            _ => None,
        }
    }

    /// Whether it only runs at level 2 (a guest).
    pub fn is_guest_only(self) -> bool {
        matches!(self, Contender::NineP | Contender::NinePMapped | Contender::AvpfsNineP)
    }
}

/// The vsock port the guest's 9P client connects to (vhost-device-vsock
/// maps it to the unix socket `<uds-path>_564`); 564 is 9P's TCP port.
pub const NINEP_VSOCK_PORT: u32 = 564;

/// How to start one daemon.
#[derive(Debug, Clone)]
pub struct DaemonSpec {
    /// avpfs or virtiofsd.
    pub contender: Contender,
    /// The program.
    pub program: PathBuf,
    /// Arguments after the common ones (`--sandbox none` and the like).
    pub extra_args: Vec<String>,
    /// Request queues to ask for (avpfs only; virtiofsd has one).
    pub request_queues: usize,
    /// `--rlimit-nofile` for both daemons, so neither runs out of descriptors.
    pub rlimit_nofile: u64,
    /// `--cache` for both daemons.
    pub cache: String,
}

/// The mount tag both daemons advertise.
pub const TAG: &str = "bench";

impl DaemonSpec {
    /// The arguments for a daemon on `socket` sharing `share` (for
    /// avpfs-9p, `socket` is the 9P listening socket).
    pub fn args(&self, socket: &Path, share: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = if self.contender == Contender::AvpfsNineP {
            let mut listen = OsString::from("unix:");
            listen.push(socket);
            vec!["--shared-dir".into(), share.into(), "--9p-listen".into(), listen]
        } else {
            vec!["--socket-path".into(), socket.into(), "--shared-dir".into(), share.into(), "--tag".into(), TAG.into()]
        };
        a.extend([
            "--cache".into(),
            self.cache.clone().into(),
            "--log-level".into(),
            "error".into(),
            "--rlimit-nofile".into(),
            self.rlimit_nofile.to_string().into(),
        ]);
        if self.contender == Contender::Avpfs {
            a.push("--request-queues".into());
            a.push(self.request_queues.to_string().into());
        }
        a.extend(self.extra_args.iter().map(OsString::from));
        a
    }

    /// The command line as the report shows it.
    pub fn command_line(&self, socket: &Path, share: &Path) -> String {
        std::iter::once(self.program.as_os_str().to_string_lossy().into_owned())
            .chain(self.args(socket, share).iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The socket a daemon started with `label` listens on: for avpfs-9p
    /// `<vsock_uds>_564`, see [`Daemon::vsock_uds`].
    pub fn socket_path(&self, run_dir: &Path, label: &str) -> PathBuf {
        let name = self.contender.name();
        if self.contender == Contender::AvpfsNineP {
            run_dir.join(format!("{name}-{label}.vsock_{NINEP_VSOCK_PORT}"))
        } else {
            run_dir.join(format!("{name}-{label}.sock"))
        }
    }
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    name: &'static str,
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts a daemon listening on a new socket in `run_dir` (named with
    /// `label`), and waits until the socket exists.
    pub fn start(spec: &DaemonSpec, share: &Path, run_dir: &Path, label: &str) -> Result<Daemon, Error> {
        let name = spec.contender.name();
        let socket = spec.socket_path(run_dir, label);
        let log = run_dir.join(format!("{name}-{label}.log"));
        let _ = std::fs::remove_file(&socket);
        let log_file = File::create(&log).ctx(|| format!("creating {}", log.display()))?;
        let log_err = log_file.try_clone().ctx(|| "duplicating the log descriptor".into())?;
        let child = Command::new(&spec.program)
            .args(spec.args(&socket, share))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .ctx(|| format!("starting {}", spec.program.display()))?;
        let mut d = Daemon { name, child, socket, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.socket.exists() {
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(d.failure(&format!("exited with {status} before listening")));
            }
            if Instant::now() > deadline {
                return Err(d.failure("did not create its socket within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(d)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The vhost-user socket (avpfs-9p: the 9P listening socket).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// avpfs-9p: the `--uds-path` to give vhost-device-vsock, so that the
    /// guest's connections to port [`NINEP_VSOCK_PORT`] reach the daemon's
    /// socket (`<uds-path>_564`); `None` for a vhost-user daemon.
    pub fn vsock_uds(&self) -> Option<PathBuf> {
        let suffix = format!("_{NINEP_VSOCK_PORT}");
        let s = self.socket.to_str()?;
        s.strip_suffix(&suffix).filter(|_| self.name == Contender::AvpfsNineP.name()).map(PathBuf::from)
    }

    /// `Some(status)` when the daemon has exited.
    pub fn exited(&mut self) -> Option<String> {
        self.child.try_wait().ok().flatten().map(|s| s.to_string())
    }

    /// An error naming the daemon, with the end of its log.
    pub fn failure(&self, what: &str) -> Error {
        Error::Daemon { name: self.name.to_string(), detail: format!("{what}; log: {}", self.log_tail()) }
    }

    fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let tail: Vec<&str> = s.lines().rev().take(5).collect();
        if tail.is_empty() {
            "(empty)".into()
        } else {
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        }
    }

    /// Stops the daemon: it normally exits by itself once the front end
    /// disconnected; else SIGTERM, then SIGKILL.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let wait = |c: &mut Child, d: Duration| {
            let until = Instant::now() + d;
            while Instant::now() < until {
                if let Ok(Some(_)) = c.try_wait() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            false
        };
        if wait(&mut self.child, Duration::from_millis(300)) {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // `pid` is our child, not yet reaped: the number names no other process.
            let _ = avpfs_sys::process::kill(pid, libc::SIGTERM);
        }
        if !wait(&mut self.child, Duration::from_secs(3)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

/// `path`, given with the option `flag`, when it is a file.
pub fn explicit_file(path: &Path, flag: &str) -> Result<PathBuf, Error> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(Error::Usage(format!("{flag} {}: no such file", path.display())))
    }
}

/// The avpfs binary: `explicit`, or the one beside this program (same target
/// directory), or `target/release/avpfs` of the workspace.
pub fn locate_avpfs(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(p) = explicit {
        return explicit_file(p, "--avpfs-bin");
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // Beside us (target/release), or from a test binary in target/PROFILE/deps.
        for dir in exe.ancestors().skip(1).take(3) {
            candidates.push(dir.join("avpfs"));
            candidates.push(dir.join("release/avpfs"));
        }
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("release/avpfs"));
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/avpfs"));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::Usage("no avpfs binary found: build it (cargo build --release --bin avpfs) or pass --avpfs-bin".into())
    })
}

/// Where the daemon programs come from and what they are given besides the
/// benchmark's own options.
#[derive(Debug, Clone)]
pub struct Programs {
    /// avpfs binary, when given.
    pub avpfs_bin: Option<PathBuf>,
    /// virtiofsd binary, when given.
    pub virtiofsd_bin: Option<PathBuf>,
    /// Where to find or install virtiofsd.
    pub tools_dir: PathBuf,
    /// Install missing contenders.
    pub install: bool,
    /// Extra avpfs arguments.
    pub avpfs_args: Vec<String>,
    /// Extra virtiofsd arguments.
    pub virtiofsd_args: Vec<String>,
}

/// The virtiofsd version the benchmark installs.
pub const VIRTIOFSD_VERSION: &str = "1.14.0";

/// The virtiofsd binary: `explicit`, or `TOOLS/virtiofsd/bin/virtiofsd`,
/// installed there with `cargo install` (and its build dependencies with
/// apt-get) when `install` is set and it is missing.
pub fn ensure_virtiofsd(explicit: Option<&Path>, tools_dir: &Path, install: bool) -> Result<PathBuf, Error> {
    if let Some(p) = explicit {
        return explicit_file(p, "--virtiofsd-bin");
    }
    let root = tools_dir.join("virtiofsd");
    let bin = root.join("bin/virtiofsd");
    if bin.is_file() {
        return Ok(bin);
    }
    if !install {
        return Err(Error::Usage(format!("{} is missing (run without --no-install to install it)", bin.display())));
    }
    let install_err = |detail: String| Error::Install { what: format!("virtiofsd {VIRTIOFSD_VERSION}"), detail };
    let missing: Vec<&str> = ["libseccomp-dev", "libcap-ng-dev", "pkg-config"]
        .into_iter()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if !missing.is_empty() {
        log::info!("installing {}", missing.join(" "));
        run_checked(Command::new("apt-get").args(["update", "-qq"])).map_err(install_err)?;
        run_checked(
            Command::new("apt-get")
                .args(["install", "-y", "-qq"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .map_err(install_err)?;
    }
    log::info!("cargo install virtiofsd {VIRTIOFSD_VERSION} into {}", root.display());
    run_checked(
        Command::new("cargo")
            .args(["install", "--locked", "virtiofsd", "--version", VIRTIOFSD_VERSION, "--root"])
            .arg(&root)
            .env("CARGO_BUILD_JOBS", "2"),
    )
    .map_err(install_err)?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(install_err(format!("cargo install did not produce {}", bin.display())))
    }
}

fn run_checked(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {status}"))
    }
}

/// How to start each daemon among `contenders` (installing virtiofsd when
/// needed), all with `--cache cache` and avpfs with `request_queues`
/// (avpfs-9p: the same program and extra arguments as avpfs); also
/// virtiofsd's version ("not run" without it).
pub fn daemon_specs(
    contenders: &[Contender],
    programs: &Programs,
    cache: &str,
    request_queues: usize,
    rlimit_nofile: u64,
) -> Result<(Vec<DaemonSpec>, String), Error> {
    let mut specs = Vec::new();
    let mut virtiofsd_version = "not run".to_string();
    for &contender in contenders {
        let (program, extra_args) = match contender {
            Contender::Host | Contender::NineP | Contender::NinePMapped => continue,
            Contender::Avpfs | Contender::AvpfsNineP => {
                (locate_avpfs(programs.avpfs_bin.as_deref())?, programs.avpfs_args.clone())
            }
            Contender::Virtiofsd => {
                let p = ensure_virtiofsd(programs.virtiofsd_bin.as_deref(), &programs.tools_dir, programs.install)?;
                virtiofsd_version = version_of(&p);
                (p, programs.virtiofsd_args.clone())
            }
        };
        specs.push(DaemonSpec { contender, program, extra_args, request_queues, rlimit_nofile, cache: cache.into() });
    }
    Ok((specs, virtiofsd_version))
}

/// The first line a program prints for `--version`.
pub fn version_of(program: &Path) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_command_lines() {
        let spec = DaemonSpec {
            contender: Contender::Avpfs,
            program: "/bin/avpfs".into(),
            extra_args: vec!["--sandbox".into(), "none".into()],
            request_queues: 2,
            rlimit_nofile: 1000,
            cache: "auto".into(),
        };
        let cl = spec.command_line(Path::new("/s.sock"), Path::new("/share"));
        assert_eq!(
            cl,
            "/bin/avpfs --socket-path /s.sock --shared-dir /share --tag bench --cache auto --log-level error \
             --rlimit-nofile 1000 --request-queues 2 --sandbox none"
        );
        let p = DaemonSpec { contender: Contender::AvpfsNineP, ..spec.clone() };
        assert_eq!(
            p.command_line(Path::new("/r/u_564"), Path::new("/share")),
            "/bin/avpfs --shared-dir /share --9p-listen unix:/r/u_564 --cache auto --log-level error \
             --rlimit-nofile 1000 --sandbox none"
        );
        assert_eq!(p.socket_path(Path::new("/r"), "l2-r0"), Path::new("/r/avpfs-9p-l2-r0.vsock_564"));
        assert_eq!(spec.socket_path(Path::new("/r"), "l2-r0"), Path::new("/r/avpfs-l2-r0.sock"));
        let v = DaemonSpec { contender: Contender::Virtiofsd, ..spec };
        assert!(!v.command_line(Path::new("/s"), Path::new("/d")).contains("--request-queues"));
    }

    #[test]
    fn contenders_by_level_and_9p_security_models() {
        assert_eq!(Contender::NineP.qemu_9p_security(), Some("none"));
        assert_eq!(Contender::NinePMapped.qemu_9p_security(), Some("mapped-xattr"));
        assert_eq!(Contender::AvpfsNineP.qemu_9p_security(), None);
        assert!(Contender::AvpfsNineP.is_daemon() && !Contender::NinePMapped.is_daemon());
        let guest_only: Vec<&str> = [
            Contender::Avpfs,
            Contender::AvpfsNineP,
            Contender::Virtiofsd,
            Contender::Host,
            Contender::NineP,
            Contender::NinePMapped,
        ]
        .into_iter()
        .filter(|c| c.is_guest_only())
        .map(Contender::name)
        .collect();
        assert_eq!(guest_only, ["avpfs-9p", "9p", "9p-mapped"]);
    }

    #[test]
    fn an_avpfs_9p_daemon_listens_where_vhost_device_vsock_connects() {
        let tmp = tempfile::tempdir().unwrap();
        // A stand-in daemon that creates the socket it is given.
        let script = tmp.path().join("fake-avpfs");
        std::fs::write(
            &script,
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = --9p-listen ] && touch \"${2#unix:}\"; shift; done\nsleep 5\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let spec = DaemonSpec {
            contender: Contender::AvpfsNineP,
            program: script,
            extra_args: vec![],
            request_queues: 1,
            rlimit_nofile: 1000,
            cache: "auto".into(),
        };
        let d = Daemon::start(&spec, tmp.path(), tmp.path(), "t").unwrap();
        assert_eq!(d.socket(), tmp.path().join("avpfs-9p-t.vsock_564"));
        assert_eq!(d.vsock_uds(), Some(tmp.path().join("avpfs-9p-t.vsock")));
        d.stop();
    }

    #[test]
    fn a_daemon_that_exits_at_once_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = DaemonSpec {
            contender: Contender::Virtiofsd,
            program: "/bin/false".into(),
            extra_args: vec![],
            request_queues: 1,
            rlimit_nofile: 1000,
            cache: "auto".into(),
        };
        let e = Daemon::start(&spec, tmp.path(), tmp.path(), "t").err().unwrap();
        assert!(e.to_string().contains("exited"), "{e}");
    }
}
