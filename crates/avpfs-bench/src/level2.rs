//! Level 2: a real guest. For every repetition and every contender (order
//! rotating from one repetition to the next) a fresh tmpfs share, a fresh
//! daemon (avpfs or virtiofsd, both `--cache auto`) or QEMU's own 9p server,
//! and a fresh guest booted by `scripts/guest/run-guest.sh` with the same
//! kernel, QEMU flags, vCPUs and memory. The guest runs the static workload
//! runner (`examples/guest-workload.rs`), which times each workload with
//! CLOCK_MONOTONIC and prints one line per workload on the serial console;
//! this module collects them.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{Config, GuestConfig, Mode};
use crate::contenders::{self, Contender, Daemon, DaemonSpec, TAG};
use crate::error::{Error, IoContext};
use crate::guest::{self, GuestLine, GuestWorkload};
use crate::procstat::CpuSample;
use crate::results::{Boot, GuestSetup, Metrics, Results, Row, RunStart, Sample, Setup, Tarball};
use crate::runner::{names, nr_open, raise_nofile, rotated};
use crate::share::{DirKind, DiskFs, Share};

/// Where the guest runner works on the share.
const GUEST_DIR: &str = "/mnt/avpfs-l2";
/// The tarball's name in the guest's /data.
const TARBALL: &str = "src.tar";
/// The runner's arguments' file name in the guest's /data.
const ARGS_FILE: &str = "bench.args";

/// The workspace root (this crate is `crates/avpfs-bench`).
fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The static runner: `explicit`, or `guest-workload` built for
/// x86_64-unknown-linux-gnu in one of the target directories we know of.
pub fn locate_runner(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(p) = explicit {
        return crate::contenders::explicit_file(p, "--guest-workload-bin");
    }
    const REL: &str = "x86_64-unknown-linux-gnu/release/examples/guest-workload";
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join(REL));
    }
    if let Ok(exe) = std::env::current_exe() {
        // We are TARGET/release/avpfs-bench (or TARGET/PROFILE/deps/... in tests).
        for dir in exe.ancestors().skip(2).take(2) {
            candidates.push(dir.join(REL));
        }
    }
    candidates.push(workspace().join("target").join(REL));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::Usage(
            "no guest workload runner found: build it with scripts/guest/build-guest-workload.sh \
             (a static binary) or pass --guest-workload-bin"
                .into(),
        )
    })
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

/// The figures of what the guest reported for one workload, with the
/// daemon's CPU seconds during it when they were sampled.
fn metrics_of(l: &GuestLine, cpu_s: Option<f64>) -> Metrics {
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
        cpu_s,
        fe_cpu_s: None,
    }
}

/// What one boot needs, the same for every boot.
struct Bench<'a> {
    cfg: &'a Config,
    specs: Vec<DaemonSpec>,
    runner: PathBuf,
    run_dir: &'a Path,
    tarball: PathBuf,
    args_file: PathBuf,
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
    /// The daemon's CPU time per workload (see [`follow_console`]).
    daemon_cpu: Vec<(GuestWorkload, Duration)>,
}

/// Copies the guest's console from `from` to `log` line by line as it comes
/// and, when `daemon` is given, samples that process's CPU time at each
/// runner start line and again at the workload's result line. The runner
/// pauses after both lines (`guest::MARK_PAUSE`), so a sample taken a little
/// late counts no other work.
fn follow_console(
    from: impl Read,
    mut log: impl Write,
    daemon: Option<u32>,
) -> std::io::Result<Vec<(GuestWorkload, Duration)>> {
    let mut from = BufReader::new(from);
    let mut line = Vec::new();
    let mut started: Vec<(GuestWorkload, CpuSample)> = Vec::new();
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
            started.retain(|(sw, _)| *sw != w);
            if let Ok(s) = CpuSample::read(pid) {
                started.push((w, s));
            }
        } else if let Some(l) = GuestLine::parse(&text) {
            if let Some(i) = started.iter().position(|(sw, _)| *sw == l.workload) {
                let (w, before) = started.swap_remove(i);
                if let Ok(now) = CpuSample::read(pid) {
                    used.push((w, now.since(&before)));
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
                        let cpu_s = con.daemon_cpu.iter().find(|(cw, _)| *cw == w).map(|(_, d)| d.as_secs_f64());
                        s.metrics = con.lines.iter().find(|l| l.workload == w).map(|l| metrics_of(l, cpu_s));
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
        if c == Contender::NineP {
            cmd.arg("--9p").arg(share.root()).args(["--9p-cache", &g.ninep_cache]);
        } else {
            let spec = self
                .specs
                .iter()
                .find(|s| s.contender == c)
                .ok_or_else(|| Error::Usage(format!("no {} program", c.name())))?;
            let d = Daemon::start(spec, share.root(), self.run_dir, label)?;
            cmd.arg("--socket").arg(d.socket()).args(["--queues", "1"]);
            daemon = Some(d);
        }
        let log = self.run_dir.join(format!("{label}.console"));
        let out = std::fs::File::create(&log).ctx(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().ctx(|| "duplicating the console log".into())?;
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(err).spawn().ctx(|| format!("running {}", g.run_guest.display()))?;
        let mut stdout = child.stdout.take().expect("stdout was piped");
        let followed = follow_console(&mut stdout, &out, daemon.as_ref().map(Daemon::pid));
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
    let bench = Bench { cfg, specs, runner, run_dir: run_dir.path(), tarball, args_file };
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
        .map(|&c| {
            let d = if c == Contender::NineP {
                format!(
                    "-fsdev local,id=f0,path=SHARE,security_model=none -device virtio-9p-pci,fsdev=f0,mount_tag={TAG}; \
                     guest: mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache={}",
                    g.ninep_cache
                )
            } else {
                format!(
                    "-chardev socket,id=c0,path=SOCKET -device vhost-user-fs-pci,chardev=c0,tag={TAG},queue-size=1024,\
                     num-request-queues=1; guest: mount -t virtiofs {TAG}"
                )
            };
            (c, d)
        })
        .collect();
    if cfg.contenders.contains(&Contender::NineP) && g.ninep_cache == "none" {
        let virtio_fs = if cfg.cache == "never" {
            "the virtio-fs daemons run with --cache never too (FOPEN_DIRECT_IO: no guest page cache either)".to_string()
        } else {
            format!(
                "the virtio-fs guests (--cache {}) write through their page cache and read after drop_caches",
                cfg.cache
            )
        };
        notes.push(format!(
            "9p is mounted with cache=none (run-guest.sh's default; its mount shows sync,dirsync): no guest page \
             cache, every read and write goes to QEMU's server, so drop_caches changes nothing for it; {virtio_fs}."
        ));
    }
    notes.push(format!("Both virtio-fs daemons run with --cache {}.", cfg.cache));
    notes.push(
        "QEMU runs with TCG (no KVM): the guest kernel's own work is emulated, which adds the same large cost to \
         every contender; ratios understate the daemons' differences."
            .into(),
    );
    let daemon_command_lines =
        bench.specs.iter().map(|s| s.command_line(Path::new("SOCKET"), Path::new("SHARE"))).collect();
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
        let used = follow_console(console(), &mut log, Some(std::process::id())).unwrap();
        assert_eq!(String::from_utf8(log).unwrap(), chunks.concat());
        assert_eq!(used.len(), 1, "{used:?}");
        assert_eq!(used[0].0, GuestWorkload::Create);
        assert!(used[0].1 >= Duration::from_millis(55), "{used:?}");
        // Without a daemon (9p) the console is copied and nothing sampled.
        let mut log = Vec::new();
        assert!(follow_console(console(), &mut log, None).unwrap().is_empty());
        assert_eq!(log.len(), chunks.concat().len());
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

    #[test]
    fn runner_arguments_and_tarball() {
        let mut g = GuestConfig {
            kernel: "/k".into(),
            runner: None,
            run_guest: "/r".into(),
            qemu: "qemu".into(),
            smp: 2,
            mem: "1G".into(),
            warmup: 0,
            timeout_s: 10,
            ninep_cache: "none".into(),
            tar_sources: vec![],
            sizes: GuestSizes::QUICK,
            workloads: GuestWorkload::ALL.to_vec(),
        };
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
    }
}
