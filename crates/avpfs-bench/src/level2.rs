//! Level 2: a real guest. For every repetition and every contender (order
//! rotating from one repetition to the next) a fresh tmpfs share, a fresh
//! daemon (avpfs or virtiofsd, both `--cache auto`; or avpfs's 9P server,
//! which the guest reaches over vsock through vhost-device-vsock) or QEMU's
//! own 9p server (`security_model=none` or `mapped-xattr`), and a fresh
//! guest booted by `scripts/guest/run-guest.sh` with the same kernel, QEMU
//! flags, vCPUs and memory. The guest runs the static workload
//! runner (`examples/guest-workload.rs`), which times each workload with
//! CLOCK_MONOTONIC and prints one line per workload on the serial console;
//! this module collects them.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{Config, GuestConfig, Mode};
use crate::contenders::{self, Contender, Daemon, DaemonSpec, NINEP_VSOCK_PORT, TAG};
use crate::error::{Error, IoContext};
use crate::guest::{self, GuestLine, GuestWorkload};
use crate::procstat::{find_process_with_args, CpuSample};
use crate::results::{Boot, GuestSetup, Metrics, Results, Row, RunStart, Sample, Setup, Tarball};
use crate::runner::{names, nr_open, raise_nofile, rotated};
use crate::share::{DirKind, DiskFs, Share};

/// Where the guest runner works on the share.
const GUEST_DIR: &str = "/mnt/avpfs-l2";
/// The tarball's name in the guest's /data.
const TARBALL: &str = "src.tar";
/// The runner's arguments' file name in the guest's /data.
const ARGS_FILE: &str = "bench.args";
/// avpfs-9p: the file in the guest's /data that tells the job to mount the
/// share over vsock, and how (`scripts/guest/jobs/bench.sh`): the port, then
/// the mount options.
const VSOCK_MOUNT_FILE: &str = "bench.9p-vsock";

/// The workspace root (this crate is `crates/avpfs-bench`).
fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A static guest program: `explicit` (given with the option `flag`), or
/// the first of `rels` in one of the target directories we know of; `hint`
/// says how to build it.
fn locate_guest_bin(explicit: Option<&Path>, flag: &str, rels: &[&str], hint: &str) -> Result<PathBuf, Error> {
    if let Some(p) = explicit {
        return crate::contenders::explicit_file(p, flag);
    }
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe() {
        // We are TARGET/release/avpfs-bench (or TARGET/PROFILE/deps/... in tests).
        dirs.extend(exe.ancestors().skip(2).take(2).map(Path::to_path_buf));
    }
    dirs.push(workspace().join("target"));
    dirs.iter()
        .flat_map(|d| rels.iter().map(move |r| d.join(r)))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Usage(format!("{hint} or pass {flag}")))
}

/// The static runner: `explicit`, or `guest-workload` built for
/// x86_64-unknown-linux-gnu in one of the target directories we know of.
pub fn locate_runner(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    locate_guest_bin(
        explicit,
        "--guest-workload-bin",
        &["x86_64-unknown-linux-gnu/release/examples/guest-workload"],
        "no guest workload runner found: build it with scripts/guest/build-guest-workload.sh (a static binary)",
    )
}

/// avpfs-9p's guest mount helper: `explicit`, or `avpfs-9p-mount` as
/// `scripts/guest/build-9p-mount.sh` builds it (musl, else glibc static).
pub fn locate_9p_mount(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    locate_guest_bin(
        explicit,
        "--guest-9p-mount-bin",
        &["x86_64-unknown-linux-musl/release/avpfs-9p-mount", "x86_64-unknown-linux-gnu/release/avpfs-9p-mount"],
        "no avpfs-9p-mount found: build it with scripts/guest/build-9p-mount.sh (a static binary)",
    )
}

/// vhost-device-vsock for avpfs-9p's guests: `$VHOST_DEVICE_VSOCK`, or
/// what `scripts/guest/install-vsock.sh` installs (once) and prints.
fn locate_vsock_device() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("VHOST_DEVICE_VSOCK").filter(|p| !p.is_empty()) {
        return crate::contenders::explicit_file(Path::new(&p), "VHOST_DEVICE_VSOCK");
    }
    let script = workspace().join("scripts/guest/install-vsock.sh");
    let out =
        Command::new(&script).stderr(Stdio::inherit()).output().ctx(|| format!("running {}", script.display()))?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success() && path.is_file() {
        Ok(path)
    } else {
        Err(Error::Usage(format!("{} failed ({}): no vhost-device-vsock for avpfs-9p", script.display(), out.status)))
    }
}

/// The mount options of avpfs-9p's guest (`avpfs-9p-mount`'s `-o`; its
/// defaults give version=9p2000.L, msize=65536, uname=root, access=user).
fn vsock_mount_line(g: &GuestConfig) -> String {
    format!("{NINEP_VSOCK_PORT} cache={}\n", g.ninep_cache)
}

/// The registry source directories of `crates` at the versions Cargo.lock
/// pins (the first version listed when there are several).
fn locked_sources(crates: &[&str]) -> Vec<PathBuf> {
    let Ok(lock) = std::fs::read_to_string(workspace().join("Cargo.lock")) else { return Vec::new() };
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    let registries: Vec<PathBuf> = std::fs::read_dir(home.join("registry/src"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for name in crates {
        let needle = format!("name = \"{name}\"\nversion = \"");
        let Some(at) = lock.find(&needle) else { continue };
        let rest = &lock[at + needle.len()..];
        let Some(version) = rest.split('"').next() else { continue };
        if let Some(dir) =
            registries.iter().map(|r| r.join(format!("{name}-{version}"))).find(|d| d.join("Cargo.toml").is_file())
        {
            out.push(dir);
        }
    }
    out
}

/// The tarball's default content: real source trees of a few MB and a few
/// hundred files, the same on every machine that built this workspace (the
/// crate registry's sources at Cargo.lock's versions); the workspace's own
/// `crates/` when the registry has none of them.
pub fn default_tar_sources(mode: Mode) -> Vec<PathBuf> {
    let crates: &[&str] = match mode {
        Mode::Quick => &["libc"],
        Mode::Full => &["libc", "syn", "clap_builder", "serde"],
    };
    let found = locked_sources(crates);
    if found.is_empty() {
        vec![workspace().join("crates")]
    } else {
        found
    }
}

/// Packs `sources` into `out` (GNU format, sorted, owner 0, fixed mtime: the
/// same bytes on every run).
fn make_tarball(sources: &[PathBuf], out: &Path) -> Result<Tarball, Error> {
    let mut cmd = Command::new("tar");
    cmd.args([
        "-cf",
        &out.to_string_lossy(),
        "--format=gnu",
        "--sort=name",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--mtime=@1700000000",
    ]);
    for s in sources {
        let s = s.canonicalize().ctx(|| format!("tar source {}", s.display()))?;
        let (parent, name) = match (s.parent(), s.file_name()) {
            (Some(p), Some(n)) => (p.to_path_buf(), n.to_os_string()),
            _ => return Err(Error::Usage(format!("tar source {}: not a directory below /", s.display()))),
        };
        cmd.arg("-C").arg(parent).arg(name);
    }
    let st = cmd.status().ctx(|| "running tar".into())?;
    if !st.success() {
        return Err(Error::Usage(format!("tar -cf {}: {st}", out.display())));
    }
    let list = Command::new("tar").arg("-tf").arg(out).output().ctx(|| "running tar -tf".into())?;
    let bytes = std::fs::metadata(out).ctx(|| format!("stat {}", out.display()))?.len();
    Ok(Tarball {
        sources: sources.iter().map(|s| s.display().to_string()).collect(),
        bytes,
        entries: String::from_utf8_lossy(&list.stdout).lines().count() as u64,
    })
}

/// The runner's command line in the guest.
fn runner_args(g: &GuestConfig) -> String {
    let s = &g.sizes;
    let mut a = format!(
        "--dir {GUEST_DIR} --files {} --small-files {} --seq-mib {} --rand-ops {} --readdir-passes {} \
         --tar /data/{TARBALL}",
        s.files,
        s.small_files,
        s.seq_bytes >> 20,
        s.rand_ops,
        s.readdir_passes
    );
    if g.workloads.len() != GuestWorkload::ALL.len() {
        let w: Vec<&str> = g.workloads.iter().map(|w| w.name()).collect();
        a.push_str(&format!(" --workloads {}", w.join(",")));
    }
    a
}

/// The figures of what the guest reported for one workload, with the CPU
/// seconds of the daemon and of the relay during it when they were sampled.
fn metrics_of(l: &GuestLine, cpu: Option<&WorkloadCpu>) -> Metrics {
    let s = l.seconds.max(1e-9);
    Metrics {
        ops: l.ops,
        units: l.bytes,
        wall_s: l.seconds,
        rate: match l.workload.unit() {
            guest::GuestUnit::Ops => l.ops as f64 / s,
            guest::GuestUnit::Bytes => l.bytes as f64 / s / 1e6,
        },
        p50_us: None,
        p99_us: None,
        cpu_s: cpu.map(|c| c.daemon.as_secs_f64()),
        fe_cpu_s: None,
        relay_cpu_s: cpu.and_then(|c| c.relay).map(|d| d.as_secs_f64()),
    }
}

/// What one boot needs, the same for every boot.
struct Bench<'a> {
    cfg: &'a Config,
    specs: Vec<DaemonSpec>,
    runner: PathBuf,
    /// avpfs-9p: the guest's mount helper and vhost-device-vsock.
    vsock: Option<VsockTools>,
    run_dir: &'a Path,
    tarball: PathBuf,
    args_file: PathBuf,
}

/// What avpfs-9p's boots need besides the others'.
struct VsockTools {
    mount_bin: PathBuf,
    device: PathBuf,
    mount_file: PathBuf,
}

/// The CPU time that a contender's host processes used during one workload.
#[derive(Debug, Clone, PartialEq)]
struct WorkloadCpu {
    workload: GuestWorkload,
    /// The daemon's.
    daemon: Duration,
    /// The relay's (avpfs-9p: vhost-device-vsock), when there is one.
    relay: Option<Duration>,
}

/// What the console of one boot said.
#[derive(Default)]
struct Console {
    lines: Vec<GuestLine>,
    failures: Vec<(String, String)>,
    mount: Option<String>,
    kernel: Option<String>,
    mount_failed: bool,
    tail: String,
    /// The daemon's (and relay's) CPU time per workload (see [`follow_console`]).
    daemon_cpu: Vec<WorkloadCpu>,
}

/// Copies the guest's console from `from` to `log` line by line as it comes
/// and, when `daemon` is given, samples that process's CPU time at each
/// runner start line and again at the workload's result line; and so the
/// relay's, when `find_relay` names a process (it is asked at each start
/// line until it does: the relay may start after the daemon). The runner
/// pauses after both lines (`guest::MARK_PAUSE`), so a sample taken a little
/// late counts no other work.
fn follow_console(
    from: impl Read,
    mut log: impl Write,
    daemon: Option<u32>,
    mut find_relay: impl FnMut() -> Option<u32>,
) -> std::io::Result<Vec<WorkloadCpu>> {
    let mut from = BufReader::new(from);
    let mut line = Vec::new();
    let mut relay = None;
    let mut started: Vec<(GuestWorkload, CpuSample, Option<CpuSample>)> = Vec::new();
    let mut used = Vec::new();
    loop {
        line.clear();
        if from.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        log.write_all(&line)?;
        let Some(pid) = daemon else { continue };
        let text = String::from_utf8_lossy(&line);
        if let Some(w) = guest::parse_start(&text) {
            started.retain(|(sw, ..)| *sw != w);
            relay = relay.or_else(&mut find_relay);
            if let Ok(s) = CpuSample::read(pid) {
                started.push((w, s, relay.and_then(|r| CpuSample::read(r).ok())));
            }
        } else if let Some(l) = GuestLine::parse(&text) {
            if let Some(i) = started.iter().position(|(sw, ..)| *sw == l.workload) {
                let (workload, before, relay_before) = started.swap_remove(i);
                if let Ok(now) = CpuSample::read(pid) {
                    let relay_used = match (relay, relay_before) {
                        (Some(r), Some(b)) => CpuSample::read(r).ok().map(|n| n.since(&b)),
                        _ => None,
                    };
                    used.push(WorkloadCpu { workload, daemon: now.since(&before), relay: relay_used });
                }
            }
        }
    }
    log.flush()?;
    Ok(used)
}

fn read_console(text: &str) -> Console {
    let mut c = Console::default();
    for raw in text.split(['\n', '\r']) {
        if let Some(l) = GuestLine::parse(raw) {
            c.lines.push(l);
        } else if let Some(f) = guest::parse_failure(raw) {
            c.failures.push(f);
        } else if let Some((k, v)) = guest::parse_info(raw) {
            match k.as_str() {
                "mount" => c.mount = Some(v),
                "kernel" => c.kernel = Some(v),
                _ => {}
            }
        } else if raw.contains("AVPFS-MOUNT-FAILED") {
            c.mount_failed = true;
        }
    }
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    c.tail = lines[lines.len().saturating_sub(6)..].join(" | ");
    c
}

impl Bench<'_> {
    /// Boots one guest for `c` and returns its boot record and samples.
    fn boot(&self, c: Contender, rep: usize, position: usize) -> (Boot, Vec<Sample>) {
        let t = Instant::now();
        let label = format!("l2-r{rep}-{}", c.name());
        let mut boot = Boot {
            contender: c,
            rep,
            position,
            host_seconds: 0.0,
            exit: String::new(),
            mount: None,
            guest_kernel: None,
            error: None,
        };
        let console = match self.boot_inner(c, &label, &mut boot) {
            Ok(console) => Some(console),
            Err(e) => {
                boot.error = Some(e.to_string());
                None
            }
        };
        boot.host_seconds = t.elapsed().as_secs_f64();
        let samples = self
            .cfg
            .guest
            .workloads
            .iter()
            .map(|&w| {
                let mut s = Sample { row: Row::Guest { workload: w }, contender: c, rep, metrics: None, error: None };
                match &console {
                    Some(con) => {
                        let cpu = con.daemon_cpu.iter().find(|x| x.workload == w);
                        s.metrics = con.lines.iter().find(|l| l.workload == w).map(|l| metrics_of(l, cpu));
                        if s.metrics.is_none() {
                            s.error = Some(match con.failures.iter().find(|(n, _)| n == w.name()) {
                                Some((_, msg)) => msg.clone(),
                                None if con.mount_failed => "the guest could not mount the share".into(),
                                None => format!("no result (run-guest.sh: {}; console: {})", boot.exit, con.tail),
                            });
                        }
                    }
                    None => s.error = boot.error.clone(),
                }
                s
            })
            .collect();
        (boot, samples)
    }

    fn boot_inner(&self, c: Contender, label: &str, boot: &mut Boot) -> Result<Console, Error> {
        let g = &self.cfg.guest;
        let share = Share::create(DirKind::Tmpfs, Path::new("/var/tmp"), DiskFs::Directory)?;
        let mut cmd = Command::new(&g.run_guest);
        cmd.arg("--kernel")
            .arg(&g.kernel)
            .arg("--job")
            .arg(workspace().join("scripts/guest/jobs/bench.sh"))
            .arg("--tag")
            .arg(TAG)
            .args(["--smp", &g.smp.to_string(), "--mem", &g.mem, "--timeout", &g.timeout_s.to_string()])
            .arg("--bin")
            .arg(&self.runner)
            .arg("--file")
            .arg(&self.tarball)
            .arg("--file")
            .arg(&self.args_file)
            .env("QEMU", &g.qemu)
            .stdin(Stdio::null());
        let mut daemon = None;
        let mut relay_arg = None;
        if let Some(security) = c.qemu_9p_security() {
            cmd.arg("--9p").arg(share.root()).args(["--9p-cache", &g.ninep_cache, "--9p-security", security]);
        } else {
            let spec = self
                .specs
                .iter()
                .find(|s| s.contender == c)
                .ok_or_else(|| Error::Usage(format!("no {} program", c.name())))?;
            let d = Daemon::start(spec, share.root(), self.run_dir, label)?;
            if let Some(uds) = d.vsock_uds() {
                let v = self.vsock.as_ref().ok_or_else(|| Error::Usage("no vsock tools for avpfs-9p".into()))?;
                cmd.arg("--vsock-uds")
                    .arg(&uds)
                    .arg("--bin")
                    .arg(&v.mount_bin)
                    .arg("--file")
                    .arg(&v.mount_file)
                    .env("VHOST_DEVICE_VSOCK", &v.device);
                relay_arg = Some(uds);
            } else {
                cmd.arg("--socket").arg(d.socket()).args(["--queues", "1"]);
            }
            daemon = Some(d);
        }
        let log = self.run_dir.join(format!("{label}.console"));
        let out = std::fs::File::create(&log).ctx(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().ctx(|| "duplicating the console log".into())?;
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(err).spawn().ctx(|| format!("running {}", g.run_guest.display()))?;
        let mut stdout = child.stdout.take().expect("stdout was piped");
        // The vhost-device-vsock that run-guest.sh starts for this guest
        // alone: the only process with our --uds-path.
        let find_relay =
            || relay_arg.as_deref().and_then(|a| find_process_with_args(&["--uds-path".as_ref(), a.as_os_str()]));
        let followed = follow_console(&mut stdout, &out, daemon.as_ref().map(Daemon::pid), find_relay);
        if followed.is_err() {
            // Keep QEMU from blocking on a full pipe until it ends.
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        }
        let status = child.wait().ctx(|| format!("waiting for {}", g.run_guest.display()))?;
        let daemon_cpu = followed.ctx(|| format!("copying the console to {}", log.display()))?;
        boot.exit = match status.code() {
            Some(124) => "timeout".into(),
            Some(n) => format!("exit {n}"),
            None => status.to_string(),
        };
        if let Some(mut d) = daemon {
            if let Some(st) = d.exited() {
                if !st.contains("exit status: 0") {
                    boot.error = Some(d.failure(&format!("exited with {st}")).to_string());
                }
            }
            d.stop();
        }
        let text =
            String::from_utf8_lossy(&std::fs::read(&log).ctx(|| format!("reading {}", log.display()))?).into_owned();
        let mut console = read_console(&text);
        console.daemon_cpu = daemon_cpu;
        boot.mount = console.mount.clone();
        boot.guest_kernel = console.kernel.clone();
        if !status.success() && boot.error.is_none() {
            boot.error = Some(format!("run-guest.sh {}: {}", boot.exit, console.tail));
        }
        // Keep the console of a failed boot for a look after the run.
        if boot.error.is_some() {
            let keep = std::env::temp_dir().join(format!("avpfs-bench-{label}.console"));
            let _ = std::fs::copy(&log, &keep);
            if let Some(e) = boot.error.as_mut() {
                e.push_str(&format!(" (console kept in {})", keep.display()));
            }
        }
        Ok(console)
    }
}

/// The share's device and guest mount of contender `c`, as the report shows
/// them; `vsock_device` names vhost-device-vsock and its version.
fn device_line(c: Contender, g: &GuestConfig, vsock_device: &str) -> String {
    if let Some(security) = c.qemu_9p_security() {
        format!(
            "-fsdev local,id=f0,path=SHARE,security_model={security} -device virtio-9p-pci,fsdev=f0,\
             mount_tag={TAG}; guest: mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache={}",
            g.ninep_cache
        )
    } else if c == Contender::AvpfsNineP {
        format!(
            "-chardev socket,id=c9,path=VSOCK -device vhost-user-vsock-pci,chardev=c9; host: {vsock_device} \
             --guest-cid 3 --socket VSOCK --uds-path U (guest port {NINEP_VSOCK_PORT} → U_{NINEP_VSOCK_PORT}, \
             where avpfs listens); guest: avpfs-9p-mount {NINEP_VSOCK_PORT} /mnt -o cache={} (trans=fd, \
             version=9p2000.L, msize=65536: the 6.1 kernel's cap for trans=fd)",
            g.ninep_cache
        )
    } else {
        format!(
            "-chardev socket,id=c0,path=SOCKET -device vhost-user-fs-pci,chardev=c0,tag={TAG},queue-size=1024,\
             num-request-queues=1; guest: mount -t virtiofs {TAG}"
        )
    }
}

/// Runs level 2.
pub fn run(cfg: &Config) -> Result<Results, Error> {
    let start = RunStart::now();
    let g = &cfg.guest;
    let mut notes = Vec::new();
    for (what, p) in [("the guest kernel", g.kernel.join("vmlinuz")), ("run-guest.sh", g.run_guest.clone())] {
        if !p.is_file() {
            return Err(Error::Usage(format!(
                "{what} is missing ({}): scripts/guest/fetch-kernel.sh stable DIR fetches a kernel",
                p.display()
            )));
        }
    }
    let runner = locate_runner(g.runner.as_deref())?;
    let nofile = raise_nofile(nr_open());
    let (specs, virtiofsd_version) = contenders::daemon_specs(&cfg.contenders, &cfg.programs, &cfg.cache, 1, nofile)?;
    let run_dir =
        tempfile::Builder::new().prefix("avpfs-bench-l2-").tempdir().ctx(|| "making a run directory".into())?;
    let vsock = if cfg.contenders.contains(&Contender::AvpfsNineP) {
        let mount_file = run_dir.path().join(VSOCK_MOUNT_FILE);
        std::fs::write(&mount_file, vsock_mount_line(g)).ctx(|| format!("writing {}", mount_file.display()))?;
        Some(VsockTools {
            mount_bin: locate_9p_mount(g.ninep_mount_bin.as_deref())?,
            device: locate_vsock_device()?,
            mount_file,
        })
    } else {
        None
    };
    let sources = if g.tar_sources.is_empty() { default_tar_sources(cfg.mode) } else { g.tar_sources.clone() };
    let tarball = run_dir.path().join(TARBALL);
    let tar = make_tarball(&sources, &tarball)?;
    let args_file = run_dir.path().join(ARGS_FILE);
    std::fs::write(&args_file, runner_args(g)).ctx(|| format!("writing {}", args_file.display()))?;
    eprintln!(
        "== level 2: {} repetitions of {}; tarball {:.1} MB, {} entries ({}); runner {}",
        cfg.reps,
        names(&cfg.contenders),
        tar.bytes as f64 / 1e6,
        tar.entries,
        tar.sources.join(", "),
        runner.display()
    );
    let vsock_version = vsock.as_ref().map(|v| contenders::version_of(&v.device));
    let bench = Bench { cfg, specs, runner, vsock, run_dir: run_dir.path(), tarball, args_file };
    if let Some(&first) = cfg.contenders.first() {
        for i in 0..g.warmup {
            let (boot, _) = bench.boot(first, 0, 0);
            eprintln!(
                "== warm-up boot {}/{} ({}): {:.1} s{}",
                i + 1,
                g.warmup,
                first.name(),
                boot.host_seconds,
                boot.error.map(|e| format!(", {e}")).unwrap_or_default()
            );
        }
    }
    let mut samples = Vec::new();
    let mut boots = Vec::new();
    for rep in 0..cfg.reps {
        let order = rotated(&cfg.contenders, rep);
        eprintln!("== repetition {}/{}: {}", rep + 1, cfg.reps, names(&order));
        for (position, &c) in order.iter().enumerate() {
            let (boot, s) = bench.boot(c, rep, position);
            let figures: Vec<String> = s
                .iter()
                .map(|x| match &x.metrics {
                    Some(m) => format!("{} {:.3}s", x.row.workload_name(), m.wall_s),
                    None => format!("{} FAILED", x.row.workload_name()),
                })
                .collect();
            eprintln!("   [r{}] {:9} {:5.1} s host: {}", rep + 1, c.name(), boot.host_seconds, figures.join(", "));
            if let Some(e) = &boot.error {
                eprintln!("   [r{}] {:9} {e}", rep + 1, c.name());
            }
            samples.extend(s);
            boots.push(boot);
        }
    }
    let mounts: Vec<(Contender, String)> = cfg
        .contenders
        .iter()
        .filter_map(|&c| boots.iter().find(|b| b.contender == c).and_then(|b| b.mount.clone()).map(|m| (c, m)))
        .collect();
    let devices = cfg
        .contenders
        .iter()
        .map(|&c| (c, device_line(c, g, vsock_version.as_deref().unwrap_or("vhost-device-vsock"))))
        .collect();
    let any_9p = cfg.contenders.iter().any(|c| c.qemu_9p_security().is_some() || *c == Contender::AvpfsNineP);
    if cfg.contenders.contains(&Contender::AvpfsNineP) {
        notes.push(format!(
            "avpfs-9p: avpfs's 9P2000.L server (`--9p-listen`, one thread per connection serving one request at \
             a time) reached over vsock: the guest's 9p client (trans=fd on an AF_VSOCK stream to port \
             {NINEP_VSOCK_PORT}) → virtio-vsock → vhost-device-vsock, a separate host process \
             ({}) → a unix socket → avpfs. The 6.1 guest kernel caps msize at 65536 for trans=fd, against 524288 \
             for QEMU's virtio 9p: large reads and writes take 8 times as many messages. Its daemon CPU time is \
             avpfs's; vhost-device-vsock's is shown apart as the relay's.",
            vsock_version.as_deref().unwrap_or("vhost-device-vsock")
        ));
    }
    if cfg.contenders.contains(&Contender::NinePMapped) {
        notes.push(
            "9p-mapped: QEMU's 9p server with security_model=mapped-xattr: files are created with the server's \
             credentials and the guest's owner, group and mode are kept in user.virtfs.* extended attributes \
             (an extra getxattr or setxattr on many requests); 9p uses security_model=none."
                .into(),
        );
    }
    if any_9p && g.ninep_cache == "none" {
        let virtio_fs = if cfg.cache == "never" {
            "the virtio-fs daemons run with --cache never too (FOPEN_DIRECT_IO: no guest page cache either)".to_string()
        } else {
            format!(
                "the virtio-fs guests (--cache {}) write through their page cache and read after drop_caches",
                cfg.cache
            )
        };
        notes.push(format!(
            "The 9p mounts use cache=none (run-guest.sh's default; the mount shows sync,dirsync): no guest page \
             cache, every read and write goes to the 9P server, so drop_caches changes nothing for them; {virtio_fs}."
        ));
    }
    notes.push(format!("Both virtio-fs daemons run with --cache {}.", cfg.cache));
    notes.push(
        "QEMU runs with TCG (no KVM): the guest kernel's own work is emulated, which adds the same large cost to \
         every contender; ratios understate the daemons' differences."
            .into(),
    );
    let daemon_command_lines = bench
        .specs
        .iter()
        .map(|s| {
            let socket =
                if s.contender == Contender::AvpfsNineP { format!("U_{NINEP_VSOCK_PORT}") } else { "SOCKET".into() };
            s.command_line(Path::new(&socket), Path::new("SHARE"))
        })
        .collect();
    let setup = Setup::Guest(GuestSetup {
        qemu_version: contenders::version_of(Path::new(&g.qemu)),
        guest_kernel_package: std::fs::read_to_string(g.kernel.join("package"))
            .map_or_else(|_| "unknown".into(), |s| s.trim().into()),
        guest_kernel: boots.iter().find_map(|b| b.guest_kernel.clone()).unwrap_or_else(|| "unknown".into()),
        guest_smp: g.smp,
        guest_mem: g.mem.clone(),
        qemu_flags: format!(
            "-accel tcg -nic none -m {m} -smp {} -nographic -no-reboot -kernel vmlinuz -initrd INITRD \
         -append \"console=ttyS0 quiet loglevel=3 panic=-1 tsc=reliable\" \
         -object memory-backend-memfd,id=mem,size={m},share=on -numa node,memdev=mem",
            g.smp,
            m = g.mem
        ),
        devices,
        mounts,
        sizes: g.sizes.clone(),
        tarball: tar,
    });
    let meta = start.meta(cfg, virtiofsd_version, daemon_command_lines, notes, setup);
    let rows = g.workloads.iter().map(|&workload| Row::Guest { workload }).collect();
    Ok(Results { meta, contenders: cfg.contenders.clone(), rows, samples, memory: Vec::new(), boots })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::GuestSizes;

    /// Hands out `chunks` one read at a time and spends `burn` of CPU time
    /// before handing out chunk `burn_before`.
    struct SlowConsole {
        chunks: Vec<&'static str>,
        next: usize,
        burn_before: usize,
        burn: Duration,
    }

    impl Read for SlowConsole {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some(chunk) = self.chunks.get(self.next) else { return Ok(0) };
            if self.next == self.burn_before {
                let start = crate::procstat::thread_cpu_time();
                while crate::procstat::thread_cpu_time() - start < self.burn {
                    std::hint::spin_loop();
                }
            }
            self.next += 1;
            buf[..chunk.len()].copy_from_slice(chunk.as_bytes());
            Ok(chunk.len())
        }
    }

    #[test]
    fn the_daemon_cpu_between_a_start_line_and_its_result_is_sampled() {
        let chunks = vec![
            "SeaBIOS\n",
            "AVPFS-BENCH-START create\n",
            "AVPFS-BENCH create seconds=1.5 ops=2000 bytes=0\n",
            "AVPFS-BENCH-START stat\n",
            "AVPFS-BENCH-ERROR stat lstat: boom\n",
            "AVPFS-BENCH seqread seconds=1 ops=1 bytes=1\n",
        ];
        let console =
            || SlowConsole { chunks: chunks.clone(), next: 0, burn_before: 2, burn: Duration::from_millis(60) };
        // This process stands in for the daemon: the CPU it spends while
        // "create" runs is counted for create, and only for it.
        let mut log = Vec::new();
        let used = follow_console(console(), &mut log, Some(std::process::id()), || None).unwrap();
        assert_eq!(String::from_utf8(log).unwrap(), chunks.concat());
        assert_eq!(used.len(), 1, "{used:?}");
        assert_eq!(used[0].workload, GuestWorkload::Create);
        assert!(used[0].daemon >= Duration::from_millis(55), "{used:?}");
        assert_eq!(used[0].relay, None);
        // Without a daemon (9p) the console is copied and nothing sampled.
        let mut log = Vec::new();
        assert!(follow_console(console(), &mut log, None, || Some(1)).unwrap().is_empty());
        assert_eq!(log.len(), chunks.concat().len());
        // avpfs-9p: the relay is looked for at start lines until found,
        // then sampled as the daemon is (this process stands in for both).
        let mut asked = 0;
        let find = || {
            asked += 1;
            Some(std::process::id())
        };
        let used = follow_console(console(), std::io::sink(), Some(std::process::id()), find).unwrap();
        assert_eq!(asked, 1, "not asked again once found");
        assert!(used[0].relay.is_some_and(|r| r >= Duration::from_millis(55)), "{used:?}");
    }

    #[test]
    fn the_console_is_read_line_by_line() {
        let text = "SeaBIOS\r\nAVPFS-BENCH-INFO kernel 6.1.0-56-amd64\r\n\
                    AVPFS-BENCH-INFO mount bench /mnt virtiofs rw,relatime 0 0\r\n\
                    AVPFS-BENCH create seconds=1.5 ops=2000 bytes=0\r\n\
                    AVPFS-BENCH-ERROR tar tar -xf: exit status: 1\r\nAVPFS-EXIT 1\r\n";
        let c = read_console(text);
        assert_eq!(c.lines.len(), 1);
        assert_eq!(c.lines[0].workload, GuestWorkload::Create);
        assert_eq!(c.failures, vec![("tar".to_string(), "tar -xf: exit status: 1".to_string())]);
        assert_eq!(c.kernel.as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(c.mount.as_deref(), Some("bench /mnt virtiofs rw,relatime 0 0"));
        assert!(c.tail.ends_with("AVPFS-EXIT 1"));
    }

    /// A guest configuration for the tests: quick sizes, every workload.
    fn test_guest() -> GuestConfig {
        GuestConfig {
            kernel: "/k".into(),
            runner: None,
            run_guest: "/r".into(),
            qemu: "qemu".into(),
            smp: 2,
            mem: "1G".into(),
            warmup: 0,
            timeout_s: 10,
            ninep_cache: "none".into(),
            ninep_mount_bin: None,
            tar_sources: vec![],
            sizes: GuestSizes::QUICK,
            workloads: GuestWorkload::ALL.to_vec(),
        }
    }

    #[test]
    fn runner_arguments_and_tarball() {
        let mut g = test_guest();
        assert_eq!(
            runner_args(&g),
            "--dir /mnt/avpfs-l2 --files 2000 --small-files 1000 --seq-mib 64 --rand-ops 2000 --readdir-passes 5 \
             --tar /data/src.tar"
        );
        g.workloads = vec![GuestWorkload::Create, GuestWorkload::Tar];
        assert!(runner_args(&g).ends_with(" --workloads create,tar"));
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("tree");
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("a/f"), b"x").unwrap();
        let t = make_tarball(std::slice::from_ref(&src), &tmp.path().join("t.tar")).unwrap();
        assert_eq!(t.entries, 3);
        assert!(t.bytes >= 2048);
        g.ninep_cache = "loose".into();
        assert_eq!(vsock_mount_line(&g), "564 cache=loose\n");
    }

    #[test]
    fn each_contender_names_its_device_and_mount() {
        let g = test_guest();
        let line = |c| device_line(c, &g, "vhost-device-vsock 0.3.0");
        assert!(line(Contender::NineP).contains("security_model=none -device virtio-9p-pci"));
        assert!(line(Contender::NinePMapped).contains("security_model=mapped-xattr -device virtio-9p-pci"));
        assert!(line(Contender::NinePMapped).ends_with("msize=524288,cache=none"));
        let v = line(Contender::AvpfsNineP);
        assert!(
            v.contains("vhost-user-vsock-pci") && v.contains("host: vhost-device-vsock 0.3.0 --guest-cid 3"),
            "{v}"
        );
        assert!(v.contains("avpfs-9p-mount 564 /mnt -o cache=none") && v.contains("msize=65536"), "{v}");
        assert!(line(Contender::Avpfs).contains("vhost-user-fs-pci"));
    }
}
