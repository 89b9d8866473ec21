//! The result model of both levels: one [`Results`] of [`Sample`]s, each a
//! repetition of one [`Row`] (level 1: a case on a share; level 2: a guest
//! workload) by one contender, with the same [`Metrics`]; one [`Meta`] for
//! what both levels record about a run, with the level's own set-up in
//! [`Setup`]. The summaries ([`crate::summary`]) and the renderers
//! ([`crate::report`]) work on this model for either level.

use std::path::PathBuf;

use serde::Serialize;

use crate::config::{Config, Mode};
use crate::contenders::Contender;
use crate::guest::{GuestSizes, GuestWorkload};
use crate::procstat::{nproc, Memory};
use crate::share::DirKind;
use crate::workloads::{Case, Sizes};

/// What a row of the results is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Row {
    /// Level 1: a case (workload, queues, depth) on a share.
    Case {
        /// tmpfs or disk.
        dir_kind: DirKind,
        /// The case.
        case: Case,
    },
    /// Level 2: a workload the guest runs.
    Guest {
        /// The workload.
        workload: GuestWorkload,
    },
}

impl Row {
    /// The workload's name.
    pub fn workload_name(&self) -> &'static str {
        match self {
            Row::Case { case, .. } => case.workload.name(),
            Row::Guest { workload } => workload.name(),
        }
    }

    /// The label of the row in tables and charts: `lookup q1 d16`, `create`.
    pub fn label(&self) -> String {
        match self {
            Row::Case { case, .. } => case.label(),
            Row::Guest { workload } => workload.name().to_string(),
        }
    }

    /// The unit of the rate: `ops/s`, `entries/s`, `MB/s`.
    pub fn rate_label(&self) -> &'static str {
        match self {
            Row::Case { case, .. } => case.workload.unit().rate_label(),
            Row::Guest { workload } => workload.unit().rate_label(),
        }
    }

    /// Whether `other` is the row that `base` ran for comparison with this
    /// one: at level 1 the same workload on the same share, for virtiofsd
    /// (one request queue) at the same depth with one queue, for the host
    /// (depth does not apply to it) with as many threads as queues; at
    /// level 2 the same workload.
    pub fn compares_with(&self, base: Contender, other: &Row) -> bool {
        match (self, other) {
            (Row::Case { dir_kind: k, case: c }, Row::Case { dir_kind: ok, case: oc }) => {
                k == ok
                    && c.workload == oc.workload
                    && match base {
                        Contender::Virtiofsd => oc.queues == 1 && oc.depth == c.depth,
                        Contender::Host => oc.queues == c.queues,
                        _ => oc == c,
                    }
            }
            (Row::Guest { workload: w }, Row::Guest { workload: ow }) => w == ow,
            _ => false,
        }
    }
}

/// The figures of one successful run.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// Operations.
    pub ops: u64,
    /// Level 1: what the rate counts (entries or bytes; operations for the
    /// other workloads). Level 2: the bytes the guest runner read or wrote.
    pub units: u64,
    /// Measured time in seconds (level 1: wall time of the passes; level 2:
    /// the guest's own clock).
    pub wall_s: f64,
    /// Rate in the workload's unit (ops/s, entries/s or MB/s).
    pub rate: f64,
    /// Median latency of an operation, µs (level 1 only: the guest times a
    /// workload as a whole).
    pub p50_us: Option<f64>,
    /// 99th percentile latency, µs (level 1 only).
    pub p99_us: Option<f64>,
    /// CPU seconds of the daemon's process (level 1's host: of the calling
    /// threads) during the run; none for QEMU's 9p, or when not sampled.
    pub cpu_s: Option<f64>,
    /// CPU seconds of the front end (the harness playing the guest; 0 for
    /// the host); level 1 only.
    pub fe_cpu_s: Option<f64>,
    /// CPU seconds of the relay between the guest and the daemon during the
    /// run: vhost-device-vsock for avpfs-9p (level 2); none for the others.
    pub relay_cpu_s: Option<f64>,
}

/// Per operation, in µs.
fn per_op_us(seconds: f64, ops: u64) -> f64 {
    seconds * 1e6 / ops.max(1) as f64
}

impl Metrics {
    /// The daemon's CPU time per operation, µs.
    pub fn cpu_us_per_op(&self) -> Option<f64> {
        self.cpu_s.map(|s| per_op_us(s, self.ops))
    }

    /// The front end's CPU time per operation, µs.
    pub fn fe_cpu_us_per_op(&self) -> Option<f64> {
        self.fe_cpu_s.map(|s| per_op_us(s, self.ops))
    }

    /// The relay's CPU time per operation, µs.
    pub fn relay_cpu_us_per_op(&self) -> Option<f64> {
        self.relay_cpu_s.map(|s| per_op_us(s, self.ops))
    }
}

/// One repetition of one row by one contender.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// What ran.
    #[serde(flatten)]
    pub row: Row,
    /// The contender.
    pub contender: Contender,
    /// Repetition (from 0).
    pub rep: usize,
    /// The figures, when the run succeeded.
    pub metrics: Option<Metrics>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Memory of one daemon around a lookup of many files (level 1).
#[derive(Debug, Clone, Serialize)]
pub struct MemorySample {
    /// tmpfs or disk.
    pub dir_kind: DirKind,
    /// The daemon.
    pub contender: Contender,
    /// Repetition.
    pub rep: usize,
    /// Files looked up.
    pub files: usize,
    /// After FUSE_INIT.
    pub before: Memory,
    /// After the lookups.
    pub after_lookup: Memory,
    /// After BATCH_FORGET of every file.
    pub after_forget: Memory,
    /// Open descriptors after the lookups.
    pub fds_after_lookup: usize,
    /// (RssAnon after lookup − before) / files.
    pub bytes_per_inode: f64,
    /// Why it failed.
    pub error: Option<String>,
}

/// One guest boot (level 2).
#[derive(Debug, Clone, Serialize)]
pub struct Boot {
    /// The contender.
    pub contender: Contender,
    /// Repetition.
    pub rep: usize,
    /// Its place in the repetition's order (from 0).
    pub position: usize,
    /// Host wall time of the boot, set-up to power-off, seconds.
    pub host_seconds: f64,
    /// run-guest.sh's exit status.
    pub exit: String,
    /// The guest's `/proc/mounts` line for the share.
    pub mount: Option<String>,
    /// The guest's `uname -r`.
    pub guest_kernel: Option<String>,
    /// What went wrong (with the end of the console).
    pub error: Option<String>,
}

/// The tarball of level 2's tar workload.
#[derive(Debug, Clone, Serialize)]
pub struct Tarball {
    /// The directories packed.
    pub sources: Vec<String>,
    /// Its size.
    pub bytes: u64,
    /// Entries (files, directories, links).
    pub entries: u64,
}

/// The run, the machine and the programs.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    /// 1 (the daemons alone) or 2 (a real guest).
    pub level: u8,
    /// When the run started (UTC).
    pub date: String,
    /// The command line.
    pub command_line: String,
    /// quick or full.
    pub mode: Mode,
    /// Repetitions.
    pub reps: usize,
    /// The machine and avpfs's revision.
    #[serde(flatten)]
    pub machine: Machine,
    /// `virtiofsd --version`.
    pub virtiofsd_version: String,
    /// The daemon command lines (socket and share paths vary per run).
    pub daemon_command_lines: Vec<String>,
    /// Total run time, seconds.
    pub seconds: f64,
    /// What the reader should know (limits that changed the run, modes).
    pub notes: Vec<String>,
    /// What only one level has.
    #[serde(flatten)]
    pub setup: Setup,
}

/// When and on what machine a run started: what its [`Meta`] records of
/// that once the run is done ([`RunStart::meta`]).
pub struct RunStart {
    t0: std::time::Instant,
    date: String,
    machine: Machine,
}

impl RunStart {
    /// A run starts now, on this machine.
    pub fn now() -> Self {
        RunStart { t0: std::time::Instant::now(), date: utc_now(), machine: Machine::probe() }
    }

    /// The [`Meta`] of the run that started at `self`, now that it is done
    /// (the level follows from `setup`).
    pub fn meta(
        self,
        cfg: &Config,
        virtiofsd_version: String,
        daemon_command_lines: Vec<String>,
        notes: Vec<String>,
        setup: Setup,
    ) -> Meta {
        Meta {
            level: match setup {
                Setup::Daemons(_) => 1,
                Setup::Guest(_) => 2,
            },
            date: self.date,
            command_line: cfg.command_line.clone(),
            mode: cfg.mode,
            reps: cfg.reps,
            machine: self.machine,
            virtiofsd_version,
            daemon_command_lines,
            seconds: self.t0.elapsed().as_secs_f64(),
            notes,
            setup,
        }
    }
}

/// The set-up of each level.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Setup {
    /// Level 1.
    Daemons(DaemonSetup),
    /// Level 2.
    Guest(GuestSetup),
}

/// Level 1's set-up: the shares, the sizes, the front end.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonSetup {
    /// Arguments added to both daemons' command lines for the memory probe
    /// (`--inode-file-handles=...`; empty: none).
    pub memory_daemon_args: String,
    /// Workload sizes.
    pub sizes: Sizes,
    /// Least measured seconds per run.
    pub min_time_s: f64,
    /// How long the front end polls for a reply before it sleeps, µs.
    pub fe_poll_us: u64,
    /// The file system type of each share.
    pub file_systems: Vec<(DirKind, String)>,
    /// READ/WRITE size each daemon negotiated (max_write, capped at 1 MiB).
    pub max_io: Vec<(Contender, u32)>,
}

/// Level 2's set-up: QEMU, the guest, the shares as the guest sees them.
#[derive(Debug, Clone, Serialize)]
pub struct GuestSetup {
    /// `qemu --version`, first line.
    pub qemu_version: String,
    /// The Debian package of the guest kernel.
    pub guest_kernel_package: String,
    /// The guest's `uname -r`.
    pub guest_kernel: String,
    /// vCPUs of every guest.
    pub guest_smp: usize,
    /// Guest memory.
    pub guest_mem: String,
    /// The QEMU arguments every guest gets (run-guest.sh), without the share device.
    pub qemu_flags: String,
    /// The share device of each contender.
    pub devices: Vec<(Contender, String)>,
    /// The guest's mount line of each contender's share.
    pub mounts: Vec<(Contender, String)>,
    /// Workload sizes.
    pub sizes: GuestSizes,
    /// The tarball.
    pub tarball: Tarball,
}

/// Everything a run produced, either level.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// The run, the machine and the programs.
    pub meta: Meta,
    /// The contenders, in the first repetition's order.
    pub contenders: Vec<Contender>,
    /// The rows, in report order (level 1: share by share, the cases in
    /// run order; level 2: the workloads in run order).
    pub rows: Vec<Row>,
    /// Every run.
    pub samples: Vec<Sample>,
    /// Level 1's memory probes.
    pub memory: Vec<MemorySample>,
    /// Level 2's boots.
    pub boots: Vec<Boot>,
}

impl Results {
    /// The share locations of a level-1 run, in report order (none at level 2).
    pub fn dir_kinds(&self) -> Vec<DirKind> {
        match &self.meta.setup {
            Setup::Daemons(d) => d.file_systems.iter().map(|(k, _)| *k).collect(),
            Setup::Guest(_) => Vec::new(),
        }
    }

    /// The sample of `row` by `c` in repetition `rep`.
    pub fn sample(&self, row: &Row, c: Contender, rep: usize) -> Option<&Sample> {
        self.samples.iter().find(|s| s.row == *row && s.contender == c && s.rep == rep)
    }
}

/// The machine a run was made on, and the avpfs revision (both levels
/// report them).
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub nproc: usize,
    /// CPU model.
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
    /// Memory of the machine.
    pub mem_total: String,
    /// avpfs git revision.
    pub avpfs_rev: String,
}

impl Machine {
    /// This machine, now.
    pub fn probe() -> Self {
        Machine {
            nproc: nproc(),
            cpu: cpu_model(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |s| s.trim().into()),
            mem_total: mem_total(),
            avpfs_rev: git_rev(),
        }
    }

    /// The reports' "Machine" line.
    pub fn markdown_line(&self) -> String {
        format!("- **Machine**: {} CPUs, {}, kernel {}, {} RAM", self.nproc, self.cpu, self.kernel, self.mem_total)
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let kb: f64 =
                s.lines().next()?.trim_start_matches("MemTotal:").trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(format!("{:.1} GiB", kb / (1u64 << 20) as f64))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `git describe`-like revision of the workspace, with `-dirty` for local changes.
fn git_rev() -> String {
    let dir: PathBuf = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(&dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match out(&["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) => {
            let dirty = out(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => "unknown".into(),
    }
}

/// The current time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Made-up results of both levels for the tests of the summaries and
/// the renderers.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::guest::GuestLine;
    use crate::workloads::Workload;

    fn machine() -> Machine {
        Machine { nproc: 2, cpu: "cpu".into(), kernel: "6".into(), mem_total: "1 kB".into(), avpfs_rev: "abc".into() }
    }

    /// Level 1: two repetitions of lookup q1 d1 by every contender.
    pub(crate) fn level1() -> Results {
        let case = Case { workload: Workload::Lookup, queues: 1, depth: 1 };
        let row = Row::Case { dir_kind: DirKind::Tmpfs, case };
        let mut samples = Vec::new();
        for rep in 0..2 {
            for (c, rate) in [(Contender::Avpfs, 130.0), (Contender::Virtiofsd, 100.0), (Contender::Host, 1000.0)] {
                let rate = rate + rep as f64 * 10.0;
                let metrics = Some(Metrics {
                    ops: 10,
                    units: 10,
                    wall_s: 10.0 / rate,
                    rate,
                    p50_us: Some(1e6 / rate),
                    p99_us: Some(2e6 / rate),
                    cpu_s: Some(5e-5),
                    fe_cpu_s: Some(1e-5),
                    relay_cpu_s: None,
                });
                samples.push(Sample { row, contender: c, rep, metrics, error: None });
            }
        }
        Results {
            meta: Meta {
                level: 1,
                date: "today".into(),
                command_line: "avpfs-bench --quick".into(),
                mode: Mode::Quick,
                reps: 2,
                machine: machine(),
                virtiofsd_version: "virtiofsd 1.14.0".into(),
                daemon_command_lines: vec!["avpfs --x".into()],
                seconds: 1.0,
                notes: vec![],
                setup: Setup::Daemons(DaemonSetup {
                    memory_daemon_args: String::new(),
                    sizes: Sizes {
                        files: 10,
                        per_dir: 10,
                        memory_files: 10,
                        create_files: 10,
                        rand_ops: 10,
                        rand_file_bytes: 1 << 20,
                        seq_bytes: 1 << 20,
                        readdir_buf: 4096,
                    },
                    min_time_s: 0.5,
                    fe_poll_us: 200,
                    file_systems: vec![(DirKind::Tmpfs, "tmpfs".into())],
                    max_io: vec![],
                }),
            },
            contenders: vec![Contender::Avpfs, Contender::Virtiofsd, Contender::Host],
            rows: vec![row],
            samples,
            memory: vec![],
            boots: vec![],
        }
    }

    /// The figures of a guest line, with the daemon's CPU seconds.
    pub(crate) fn guest_metrics(workload: GuestWorkload, seconds: f64, cpu_s: Option<f64>) -> Metrics {
        let l = GuestLine { workload, seconds, ops: 100, bytes: 1_000_000 };
        let rate = match workload.unit() {
            crate::guest::GuestUnit::Ops => l.ops as f64 / seconds,
            crate::guest::GuestUnit::Bytes => l.bytes as f64 / seconds / 1e6,
        };
        Metrics {
            ops: l.ops,
            units: l.bytes,
            wall_s: seconds,
            rate,
            p50_us: None,
            p99_us: None,
            cpu_s,
            fe_cpu_s: None,
            relay_cpu_s: None,
        }
    }

    /// Level 2: three repetitions of create and seqread by every
    /// contender, and a failed tar of 9p.
    pub(crate) fn level2() -> Results {
        let mut samples = Vec::new();
        for rep in 0..3 {
            for (c, t) in [(Contender::Avpfs, 1.0), (Contender::Virtiofsd, 1.5), (Contender::NineP, 4.0)] {
                for w in [GuestWorkload::Create, GuestWorkload::Seqread] {
                    let seconds = t + rep as f64 * 0.1;
                    let metrics = Some(guest_metrics(w, seconds, c.is_daemon().then_some(0.25)));
                    samples.push(Sample { row: Row::Guest { workload: w }, contender: c, rep, metrics, error: None });
                }
            }
        }
        samples.push(Sample {
            row: Row::Guest { workload: GuestWorkload::Tar },
            contender: Contender::NineP,
            rep: 0,
            metrics: None,
            error: Some("boom".into()),
        });
        Results {
            meta: Meta {
                level: 2,
                date: "today".into(),
                command_line: "avpfs-bench --level 2".into(),
                mode: Mode::Quick,
                reps: 3,
                machine: Machine { mem_total: "1 GiB".into(), ..machine() },
                virtiofsd_version: "virtiofsd 1.14.0".into(),
                daemon_command_lines: vec!["avpfs --cache auto".into()],
                seconds: 60.0,
                notes: vec!["a note".into()],
                setup: Setup::Guest(GuestSetup {
                    qemu_version: "QEMU 7.2".into(),
                    guest_kernel_package: "linux-image".into(),
                    guest_kernel: "6.1".into(),
                    guest_smp: 2,
                    guest_mem: "1G".into(),
                    qemu_flags: "-accel tcg".into(),
                    devices: vec![(Contender::NineP, "-fsdev".into())],
                    mounts: vec![(Contender::Avpfs, "bench /mnt virtiofs rw 0 0".into())],
                    sizes: GuestSizes::QUICK,
                    tarball: Tarball { sources: vec!["/src".into()], bytes: 5_000_000, entries: 600 },
                }),
            },
            contenders: vec![Contender::Avpfs, Contender::Virtiofsd, Contender::NineP],
            rows: [GuestWorkload::Create, GuestWorkload::Tar, GuestWorkload::Seqread]
                .into_iter()
                .map(|workload| Row::Guest { workload })
                .collect(),
            samples,
            memory: vec![],
            boots: vec![Boot {
                contender: Contender::Avpfs,
                rep: 0,
                position: 0,
                host_seconds: 20.0,
                exit: "exit 0".into(),
                mount: None,
                guest_kernel: None,
                error: None,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::Workload;

    #[test]
    fn rows_pair_with_the_base_contenders_rows_and_dates_are_utc() {
        let row = |queues, depth| Row::Case {
            dir_kind: DirKind::Tmpfs,
            case: Case { workload: Workload::Lookup, queues, depth },
        };
        assert!(row(2, 16).compares_with(Contender::Virtiofsd, &row(1, 16)));
        assert!(!row(2, 16).compares_with(Contender::Virtiofsd, &row(1, 1)));
        assert!(row(2, 16).compares_with(Contender::Host, &row(2, 1)));
        assert!(!row(2, 16).compares_with(Contender::Host, &row(1, 16)));
        let create = Row::Guest { workload: GuestWorkload::Create };
        assert!(create.compares_with(Contender::NineP, &create));
        assert!(!create.compares_with(Contender::NineP, &row(1, 1)));
        assert_eq!((row(1, 16).label(), create.label()), ("lookup q1 d16".to_string(), "create".to_string()));
        assert!(utc_now().ends_with(" UTC"));
    }
}
