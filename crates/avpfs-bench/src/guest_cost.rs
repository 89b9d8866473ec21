//! The cost of a guest (issue 20): memory, threads and descriptors of one
//! `avpfs --config` process serving N idle guests, against N separate
//! `avpfs` daemons, one per guest, on the same share; and the cost of an
//! inode a guest keeps looked up, for the first guest of a daemon and for
//! a second guest of the same daemon that looks up the same files.
//!
//! An idle guest is a `vhost-harness` front end that connected with one
//! request queue (`request_queues = 1`) and sent FUSE_INIT, nothing else.
//! Each daemon runs with its default sandbox: a supervisor process and
//! the serving process it forks, both counted (the supervisor's figures are
//! also reported apart). Figures come from /proc: `VmRSS`, `RssAnon`,
//! `RssShmem` and `Threads` of `/proc/PID/status`, `Pss` of
//! `/proc/PID/smaps_rollup` (the shared library and executable pages of N
//! processes count once in their Pss sum, N times in their RSS sum), the
//! entries of `/proc/PID/fd`, and the `filp` slab of `/proc/slabinfo` for
//! the kernel's side of a descriptor, which no RSS shows.
//!
//! The run is [`run`]; [`summarize`] reduces the rounds to medians, best
//! values and costs per extra guest and per inode; [`markdown`], [`csv`]
//! and the JSON of [`Report`] are what [`write_all`] writes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use vhost_harness::fuse::FuseClient;
use vhost_harness::Harness;

use crate::error::{Error, IoContext};
use crate::results::{utc_now, Machine};

/// How the guests are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One `avpfs --config` process, a `[[guest]]` per guest.
    OneDaemon,
    /// One `avpfs --socket-path ... --shared-dir ...` per guest.
    SeparateDaemons,
}

impl Layout {
    /// The name in the reports.
    pub fn name(self) -> &'static str {
        match self {
            Layout::OneDaemon => "one daemon",
            Layout::SeparateDaemons => "separate daemons",
        }
    }
}

/// What the measurement is asked to do.
#[derive(Debug, Clone)]
pub struct CostConfig {
    /// The avpfs binary.
    pub avpfs: PathBuf,
    /// Where the report goes.
    pub out: PathBuf,
    /// The guest counts (the first is the base of the cost per extra guest).
    pub guests: Vec<usize>,
    /// Rounds; every configuration is measured once per round.
    pub rounds: usize,
    /// Files each guest looks up in the per-inode measurement (0: skip it).
    pub files: usize,
    /// Arguments added to every daemon's command line.
    pub extra_args: Vec<String>,
    /// `--rlimit-nofile` of the per-inode daemon, which holds a descriptor
    /// per inode per guest (`None`: the daemon's default, the hard limit).
    pub inode_rlimit_nofile: Option<u64>,
    /// The command line, for the report.
    pub command_line: String,
}

/// One process's figures, or the sum of several processes'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ProcSample {
    /// Processes summed.
    pub processes: u64,
    /// `VmRSS`, bytes.
    pub rss: u64,
    /// `RssAnon`, bytes: heap and stacks.
    pub anon: u64,
    /// `RssShmem`, bytes: guest memory the daemon touched, among others.
    pub shmem: u64,
    /// `Pss` of `smaps_rollup`, bytes (0 when the kernel has no rollup).
    pub pss: u64,
    /// `Threads`.
    pub threads: u64,
    /// Open descriptors.
    pub fds: u64,
}

impl ProcSample {
    /// Reads process `pid`.
    pub fn read(pid: u32) -> Result<ProcSample, Error> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ctx(|| format!("reading /proc/{pid}/status"))?;
        let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).ctx(|| format!("listing /proc/{pid}/fd"))?.count() as u64;
        Ok(ProcSample {
            processes: 1,
            rss: kib_field(&status, "VmRSS:") * 1024,
            anon: kib_field(&status, "RssAnon:") * 1024,
            shmem: kib_field(&status, "RssShmem:") * 1024,
            pss: kib_field(&rollup, "Pss:") * 1024,
            threads: kib_field(&status, "Threads:"),
            fds,
        })
    }

    /// The sum of `self` and `other`.
    pub fn plus(self, o: ProcSample) -> ProcSample {
        ProcSample {
            processes: self.processes + o.processes,
            rss: self.rss + o.rss,
            anon: self.anon + o.anon,
            shmem: self.shmem + o.shmem,
            pss: self.pss + o.pss,
            threads: self.threads + o.threads,
            fds: self.fds + o.fds,
        }
    }
}

/// The number of the line that starts with `name` (`VmRSS:   1234 kB`),
/// 0 when there is none.
fn kib_field(text: &str, name: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// Active objects and object size of slab cache `name` in `/proc/slabinfo`
/// text.
fn slab(text: &str, name: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(name))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    Some((f.get(1)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// The `filp` slab (a `struct file` per open descriptor): active objects
/// and object size, when /proc/slabinfo can be read.
fn filp() -> Option<(u64, u64)> {
    slab(&fs::read_to_string("/proc/slabinfo").ok()?, "filp")
}

/// The kind of descriptor whose `/proc/PID/fd` link reads `target`.
fn fd_kind(target: &str) -> String {
    if let Some(inode) = target.strip_prefix("anon_inode:") {
        inode.trim_matches(['[', ']']).to_string()
    } else if target.starts_with("/memfd:") {
        "memfd".into()
    } else if let Some((kind, _)) = target.split_once(":[") {
        kind.to_string()
    } else {
        "file".into()
    }
}

/// The descriptors of process `pid` by kind, added to `kinds`.
fn count_fd_kinds(pid: u32, kinds: &mut BTreeMap<String, u64>) {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else { return };
    for e in dir.flatten() {
        if let Ok(target) = fs::read_link(e.path()) {
            *kinds.entry(fd_kind(&target.to_string_lossy())).or_insert(0) += 1;
        }
    }
}

/// The processes of one daemon, measured after its guests settled.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DaemonSample {
    /// The serving process (the supervisor's child).
    pub serving: ProcSample,
    /// The sandbox supervisor (zero without a sandbox).
    pub supervisor: ProcSample,
}

impl DaemonSample {
    /// Both processes.
    pub fn total(&self) -> ProcSample {
        self.serving.plus(self.supervisor)
    }

    fn plus(self, o: DaemonSample) -> DaemonSample {
        DaemonSample { serving: self.serving.plus(o.serving), supervisor: self.supervisor.plus(o.supervisor) }
    }
}

/// One configuration measured once: `guests` idle guests served as `layout`.
#[derive(Debug, Clone, Serialize)]
pub struct GuestsSample {
    /// How they are served.
    pub layout: Layout,
    /// Idle guests.
    pub guests: usize,
    /// The round.
    pub round: usize,
    /// Every daemon's processes, summed.
    pub daemons: DaemonSample,
    /// The serving processes' descriptors by kind (socket, eventfd,
    /// eventpoll, memfd, file...), summed.
    pub fd_kinds: BTreeMap<String, u64>,
}

/// One round of the per-inode measurement.
#[derive(Debug, Clone, Serialize)]
pub struct InodeSample {
    /// The round.
    pub round: usize,
    /// Files each guest looked up.
    pub files: usize,
    /// The serving process with both guests idle.
    pub before: ProcSample,
    /// After the first guest looked up every file.
    pub first: ProcSample,
    /// After the second guest looked up the same files.
    pub second: ProcSample,
    /// Active `filp` objects at the three points, with their size (no
    /// figures when /proc/slabinfo cannot be read). Machine-wide: other
    /// processes' opens and closes land in it too.
    pub filp: Option<([u64; 3], u64)>,
}

/// A running avpfs: the supervisor process we started (and its serving
/// child); stopped on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `avpfs args` logging to `log` and waits for `sockets`.
    fn start(cfg: &CostConfig, args: &[String], log: PathBuf, sockets: &[PathBuf]) -> Result<Daemon, Error> {
        let file = fs::File::create(&log).ctx(|| format!("creating {}", log.display()))?;
        let child = Command::new(&cfg.avpfs)
            .args(args)
            .args(&cfg.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .ctx(|| format!("starting {}", cfg.avpfs.display()))?;
        let mut d = Daemon { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sockets.iter().all(|s| s.exists()) {
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(d.failure(&format!("exited with {status} before listening")));
            }
            if Instant::now() > deadline {
                return Err(d.failure("did not listen within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(d)
    }

    fn failure(&self, what: &str) -> Error {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        Error::Daemon { name: "avpfs".into(), detail: format!("{what}; log: {}", tail.join(" | ")) }
    }

    /// The serving process: the supervisor's only child, or the process
    /// we started when it has no child (no sandbox).
    fn serving_pid(&self) -> u32 {
        let pid = self.child.id();
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let children: Vec<u32> = children.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        match children[..] {
            [one] => one,
            _ => pid,
        }
    }

    /// Both processes' figures.
    fn sample(&self) -> Result<DaemonSample, Error> {
        let serving = self.serving_pid();
        let supervisor = self.child.id();
        Ok(DaemonSample {
            serving: ProcSample::read(serving)?,
            supervisor: if serving == supervisor { ProcSample::default() } else { ProcSample::read(supervisor)? },
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // `pid` is our child, not yet reaped: the number names no other process.
            let _ = avpfs_sys::process::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `avpfs --config` file for guests `vm0`.. `vm{n-1}` of one share,
/// one request queue each, with sockets in `dir`.
pub fn config_file(share: &Path, dir: &Path, n: usize) -> String {
    let mut c = format!("[[share]]\nname = \"data\"\nshared_dir = \"{}\"\n", share.display());
    for g in 0..n {
        let _ = write!(
            c,
            "\n[[guest]]\nname = \"vm{g}\"\nsocket_path = \"{}\"\nshare = \"data\"\nrequest_queues = 1\n",
            dir.join(format!("vm{g}.sock")).display()
        );
    }
    c
}

/// Connects an idle guest to `socket`: one request queue, FUSE_INIT.
fn connect(socket: &Path) -> Result<Harness, Error> {
    let h = Harness::start(socket, 2)?;
    FuseClient::new(&h, 1).init()?;
    Ok(h)
}

/// Waits until the thread counts of `pids` have not changed for 300 ms
/// (the daemon starts a connection's threads just after its messages),
/// then 200 ms more, within 10 s.
fn settle(pids: &[u32]) {
    let count = || -> Vec<usize> {
        pids.iter().map(|p| fs::read_dir(format!("/proc/{p}/task")).map_or(0, |d| d.count())).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut last, mut since) = (count(), Instant::now());
    while since.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = count();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    std::thread::sleep(Duration::from_millis(200));
}

/// `n` idle guests on one `avpfs --config` process.
fn one_daemon(cfg: &CostConfig, work: &Path, share: &Path, n: usize) -> Result<Measured, Error> {
    let dir = work.join(format!("one-{n}"));
    fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let file = dir.join("avpfs.toml");
    fs::write(&file, config_file(share, &dir, n)).ctx(|| format!("writing {}", file.display()))?;
    let sockets: Vec<PathBuf> = (0..n).map(|g| dir.join(format!("vm{g}.sock"))).collect();
    let args = ["--config".to_string(), file.display().to_string(), "--log-level".into(), "error".into()];
    let d = Daemon::start(cfg, &args, dir.join("avpfs.log"), &sockets)?;
    let guests = sockets.iter().map(|s| connect(s)).collect::<Result<Vec<_>, _>>()?;
    settle(&[d.serving_pid()]);
    let sample = d.sample()?;
    let mut kinds = BTreeMap::new();
    count_fd_kinds(d.serving_pid(), &mut kinds);
    drop(guests);
    Ok((sample, kinds))
}

/// A configuration's figures and its serving processes' descriptor kinds.
type Measured = (DaemonSample, BTreeMap<String, u64>);

/// The command line of a separate daemon for guest `g`.
fn separate_args(share: &Path, socket: &Path) -> Vec<String> {
    [
        "--socket-path",
        &socket.display().to_string(),
        "--shared-dir",
        &share.display().to_string(),
        "--tag",
        "data",
        "--request-queues",
        "1",
        "--log-level",
        "error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `n` idle guests, each on a daemon of its own.
fn separate_daemons(cfg: &CostConfig, work: &Path, share: &Path, n: usize) -> Result<Measured, Error> {
    let dir = work.join(format!("separate-{n}"));
    fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    // Every daemon starts before the first guest connects: a daemon started
    // later would inherit the front ends' eventfds and memfds (not
    // close-on-exec) and count them as its own.
    let sockets: Vec<PathBuf> = (0..n).map(|g| dir.join(format!("vm{g}.sock"))).collect();
    let daemons = sockets
        .iter()
        .enumerate()
        .map(|(g, s)| {
            Daemon::start(cfg, &separate_args(share, s), dir.join(format!("vm{g}.log")), std::slice::from_ref(s))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let guests = sockets.iter().map(|s| connect(s)).collect::<Result<Vec<_>, _>>()?;
    settle(&daemons.iter().map(Daemon::serving_pid).collect::<Vec<_>>());
    let mut sum = DaemonSample::default();
    let mut kinds = BTreeMap::new();
    for d in &daemons {
        sum = sum.plus(d.sample()?);
        count_fd_kinds(d.serving_pid(), &mut kinds);
    }
    drop(guests);
    Ok((sum, kinds))
}

/// Looks up `files` names of directory `files` (node `dir`) and keeps them.
fn look_up_all(h: &Harness, dir: u64, files: usize) -> Result<(), Error> {
    let c = FuseClient::new(h, 1);
    for k in 0..files {
        c.lookup(dir, &file_name(k))?;
    }
    Ok(())
}

fn file_name(k: usize) -> String {
    format!("f{k:06}")
}

/// The per-inode round: two guests of one daemon look up the same files.
fn inodes(cfg: &CostConfig, work: &Path, share: &Path, round: usize) -> Result<InodeSample, Error> {
    let dir = work.join(format!("inodes-{round}"));
    fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let file = dir.join("avpfs.toml");
    fs::write(&file, config_file(share, &dir, 2)).ctx(|| format!("writing {}", file.display()))?;
    let sockets: Vec<PathBuf> = (0..2).map(|g| dir.join(format!("vm{g}.sock"))).collect();
    let mut args = vec!["--config".to_string(), file.display().to_string(), "--log-level".into(), "error".into()];
    if let Some(n) = cfg.inode_rlimit_nofile {
        args.extend(["--rlimit-nofile".into(), n.to_string()]);
    }
    let d = Daemon::start(cfg, &args, dir.join("avpfs.log"), &sockets)?;
    let (a, b) = (connect(&sockets[0])?, connect(&sockets[1])?);
    let pid = d.serving_pid();
    let files_dir = |h: &Harness| -> Result<u64, Error> { Ok(FuseClient::new(h, 1).lookup(1, "files")?.nodeid) };
    let (dir_a, dir_b) = (files_dir(&a)?, files_dir(&b)?);
    settle(&[pid]);
    let f0 = filp();
    let before = ProcSample::read(pid)?;
    look_up_all(&a, dir_a, cfg.files)?;
    settle(&[pid]);
    let f1 = filp();
    let first = ProcSample::read(pid)?;
    look_up_all(&b, dir_b, cfg.files)?;
    settle(&[pid]);
    let f2 = filp();
    let second = ProcSample::read(pid)?;
    let filp = match (f0, f1, f2) {
        (Some((a, size)), Some((b, _)), Some((c, _))) => Some(([a, b, c], size)),
        _ => None,
    };
    Ok(InodeSample { round, files: cfg.files, before, first, second, filp })
}

/// The hard RLIMIT_NOFILE of this process (`/proc/self/limits`), which a
/// daemon started from it raises its own limit to.
fn hard_nofile_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// Makes the share: `files/` with `n` empty files.
fn make_share(share: &Path, n: usize) -> Result<(), Error> {
    let dir = share.join("files");
    fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    for k in 0..n {
        let p = dir.join(file_name(k));
        fs::File::create(&p).ctx(|| format!("creating {}", p.display()))?;
    }
    Ok(())
}

/// Everything a run measured, with the machine and the summaries.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the run started (UTC).
    pub date: String,
    /// The command line.
    pub command_line: String,
    /// The machine and avpfs's revision.
    pub machine: Machine,
    /// `avpfs --version`.
    pub avpfs_version: String,
    /// Extra daemon arguments.
    pub extra_args: Vec<String>,
    /// Seconds the run took.
    pub seconds: f64,
    /// Every configuration of every round.
    pub guests: Vec<GuestsSample>,
    /// Every per-inode round.
    pub inodes: Vec<InodeSample>,
    /// The medians, best values and derived costs.
    pub summary: Summary,
}

/// Runs every round and returns the report.
pub fn run(cfg: &CostConfig) -> Result<Report, Error> {
    if cfg.guests.is_empty() || cfg.rounds == 0 {
        return Err(Error::Usage("nothing to measure: give guest counts and at least one round".into()));
    }
    let limit = cfg.inode_rlimit_nofile.or_else(hard_nofile_limit).unwrap_or(u64::MAX);
    if cfg.files > 0 && 2 * cfg.files as u64 + 200 > limit {
        return Err(Error::Usage(format!(
            "--files {}: two guests hold an O_PATH descriptor per file each, {} in all, beyond the \
             descriptor limit {limit} (raise it, or give fewer files)",
            cfg.files,
            2 * cfg.files
        )));
    }
    let t0 = Instant::now();
    let date = utc_now();
    // Short socket paths (sun_path holds 108 bytes).
    let work = tempfile::Builder::new().prefix("avpfs-gc").tempdir_in("/tmp").ctx(|| "making a work dir".into())?;
    let share = work.path().join("share");
    make_share(&share, cfg.files)?;
    let mut guests = Vec::new();
    let mut inode_rounds = Vec::new();
    for round in 0..cfg.rounds {
        // Alternate the order of the layouts from round to round.
        let layouts = if round % 2 == 0 {
            [Layout::OneDaemon, Layout::SeparateDaemons]
        } else {
            [Layout::SeparateDaemons, Layout::OneDaemon]
        };
        for &n in &cfg.guests {
            for layout in layouts {
                let (daemons, fd_kinds) = match layout {
                    Layout::OneDaemon => one_daemon(cfg, work.path(), &share, n)?,
                    Layout::SeparateDaemons => separate_daemons(cfg, work.path(), &share, n)?,
                };
                log::info!(
                    "round {round}: {} x{n}: RSS {} KiB, threads {}",
                    layout.name(),
                    daemons.total().rss / 1024,
                    daemons.total().threads
                );
                guests.push(GuestsSample { layout, guests: n, round, daemons, fd_kinds });
            }
        }
        if cfg.files > 0 {
            let s = inodes(cfg, work.path(), &share, round)?;
            log::info!("round {round}: {} inodes: RssAnon +{} KiB", s.files, (s.first.anon - s.before.anon) / 1024);
            inode_rounds.push(s);
        }
    }
    let summary = summarize(&guests, &inode_rounds);
    Ok(Report {
        date,
        command_line: cfg.command_line.clone(),
        machine: Machine::probe(),
        avpfs_version: crate::contenders::version_of(&cfg.avpfs),
        extra_args: cfg.extra_args.clone(),
        seconds: t0.elapsed().as_secs_f64(),
        guests,
        inodes: inode_rounds,
        summary,
    })
}

/// Median and best (least) of a figure over the rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The least value.
    pub best: f64,
}

impl Spread {
    /// The spread of `values` (empty: zeros).
    pub fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let median = match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Spread { median, best: v.first().copied().unwrap_or(0.0) }
    }
}

/// One configuration over the rounds: totals of every process of every
/// daemon (bytes, counts), and the supervisors' part.
#[derive(Debug, Clone, Serialize)]
pub struct GuestsSummary {
    /// How the guests are served.
    pub layout: Layout,
    /// Idle guests.
    pub guests: usize,
    /// Processes (serving + supervisors).
    pub processes: u64,
    /// Sum of VmRSS.
    pub rss: Spread,
    /// Sum of RssAnon.
    pub anon: Spread,
    /// Sum of Pss.
    pub pss: Spread,
    /// Sum of Threads.
    pub threads: Spread,
    /// Sum of descriptors.
    pub fds: Spread,
    /// The supervisors' VmRSS.
    pub supervisor_rss: Spread,
    /// The supervisors' Pss.
    pub supervisor_pss: Spread,
}

/// What one more guest costs, from the medians: (total(N) − total(base)) /
/// (N − base).
#[derive(Debug, Clone, Serialize)]
pub struct PerGuest {
    /// How the guests are served.
    pub layout: Layout,
    /// The base guest count.
    pub base: usize,
    /// N.
    pub guests: usize,
    /// VmRSS, bytes.
    pub rss: f64,
    /// RssAnon, bytes.
    pub anon: f64,
    /// Pss, bytes.
    pub pss: f64,
    /// Threads.
    pub threads: f64,
    /// Descriptors.
    pub fds: f64,
}

/// One guest's look-ups of K files, per inode, median over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct PerInode {
    /// "first guest" or "second guest".
    pub step: String,
    /// VmRSS, bytes per inode.
    pub rss: Spread,
    /// RssAnon, bytes per inode.
    pub anon: Spread,
    /// Pss, bytes per inode.
    pub pss: Spread,
    /// Descriptors per inode.
    pub fds: Spread,
    /// `filp` slab objects per inode (machine-wide count).
    pub filp: Option<Spread>,
    /// Size of a `filp` object, bytes.
    pub filp_size: Option<u64>,
}

/// The summaries of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Per configuration.
    pub configurations: Vec<GuestsSummary>,
    /// Cost per extra guest per layout and N.
    pub per_guest: Vec<PerGuest>,
    /// Cost per inode, first and second guest.
    pub per_inode: Vec<PerInode>,
}

/// Reduces the rounds to medians, best values and costs.
pub fn summarize(samples: &[GuestsSample], inodes: &[InodeSample]) -> Summary {
    let mut keys: Vec<(Layout, usize)> = samples.iter().map(|s| (s.layout, s.guests)).collect();
    keys.sort_unstable();
    keys.dedup();
    let configurations: Vec<GuestsSummary> = keys
        .iter()
        .map(|&(layout, guests)| {
            let of: Vec<&GuestsSample> = samples.iter().filter(|s| s.layout == layout && s.guests == guests).collect();
            let spread = |f: &dyn Fn(&DaemonSample) -> u64| {
                Spread::of(&of.iter().map(|s| f(&s.daemons) as f64).collect::<Vec<_>>())
            };
            GuestsSummary {
                layout,
                guests,
                processes: of.first().map_or(0, |s| s.daemons.total().processes),
                rss: spread(&|d| d.total().rss),
                anon: spread(&|d| d.total().anon),
                pss: spread(&|d| d.total().pss),
                threads: spread(&|d| d.total().threads),
                fds: spread(&|d| d.total().fds),
                supervisor_rss: spread(&|d| d.supervisor.rss),
                supervisor_pss: spread(&|d| d.supervisor.pss),
            }
        })
        .collect();
    let mut per_guest = Vec::new();
    for base in &configurations {
        for c in configurations.iter().filter(|c| c.layout == base.layout && c.guests > base.guests) {
            // Only from the least guest count of the layout.
            if configurations.iter().any(|o| o.layout == base.layout && o.guests < base.guests) {
                continue;
            }
            let extra = (c.guests - base.guests) as f64;
            let d = |a: Spread, b: Spread| (a.median - b.median) / extra;
            per_guest.push(PerGuest {
                layout: c.layout,
                base: base.guests,
                guests: c.guests,
                rss: d(c.rss, base.rss),
                anon: d(c.anon, base.anon),
                pss: d(c.pss, base.pss),
                threads: d(c.threads, base.threads),
                fds: d(c.fds, base.fds),
            });
        }
    }
    let mut per_inode = Vec::new();
    if !inodes.is_empty() {
        for (step, i) in [("first guest", 0), ("second guest", 1)] {
            let per = |f: &dyn Fn(&ProcSample) -> u64| {
                Spread::of(
                    &inodes
                        .iter()
                        .map(|s| {
                            let p = [s.before, s.first, s.second];
                            (f(&p[i + 1]) as f64 - f(&p[i]) as f64) / s.files.max(1) as f64
                        })
                        .collect::<Vec<_>>(),
                )
            };
            let filp: Option<Vec<f64>> = inodes
                .iter()
                .map(|s| s.filp.map(|(n, _)| (n[i + 1] as f64 - n[i] as f64) / s.files.max(1) as f64))
                .collect();
            per_inode.push(PerInode {
                step: step.into(),
                rss: per(&|p| p.rss),
                anon: per(&|p| p.anon),
                pss: per(&|p| p.pss),
                fds: per(&|p| p.fds),
                filp: filp.map(|v| Spread::of(&v)),
                filp_size: inodes.first().and_then(|s| s.filp.map(|(_, size)| size)),
            });
        }
    }
    Summary { configurations, per_guest, per_inode }
}

fn mib(bytes: f64) -> String {
    format!("{:.1}", bytes / f64::from(1u32 << 20))
}

fn kib(bytes: f64) -> String {
    format!("{:.0}", bytes / 1024.0)
}

/// "median (best)" of a spread, formatted by `f`.
fn mb(s: Spread, f: fn(f64) -> String) -> String {
    format!("{} ({})", f(s.median), f(s.best))
}

fn count(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The Markdown report.
pub fn markdown(r: &Report) -> String {
    let mut s = String::from("# Cost per guest (issue 20)\n\n");
    let _ = writeln!(s, "- **Run**: {} — `{}` ({:.0} s)", r.date, r.command_line, r.seconds);
    let _ = writeln!(s, "{}", r.machine.markdown_line());
    let _ = writeln!(s, "- **Versions**: avpfs {} ({})", r.machine.avpfs_rev, r.avpfs_version);
    let extra = if r.extra_args.is_empty() { String::new() } else { format!(" {}", r.extra_args.join(" ")) };
    let _ = writeln!(
        s,
        "- **Daemons**: one daemon: `avpfs --config FILE --log-level error{extra}`, a `[[guest]]` per guest with \
         `request_queues = 1`; separate daemons: `avpfs --socket-path S --shared-dir SHARE --tag data \
         --request-queues 1 --log-level error{extra}` per guest. Default sandbox and seccomp: every daemon is a \
         supervisor and the serving process it forks, both counted. One share, `--cache auto`."
    );
    let _ = writeln!(
        s,
        "- **Idle guest**: a `vhost-harness` front end (the real vhost-user protocol, memfd guest memory) with \
         the hiprio queue and 1 request queue, after FUSE_INIT; nothing else. Measured once the daemons' \
         thread counts were steady for 300 ms."
    );
    let rounds = r.guests.iter().map(|g| g.round + 1).max().unwrap_or(0);
    let _ =
        writeln!(s, "- **Rounds**: {rounds}; figures are the median over the rounds, the best (least) in brackets.");
    s.push_str(
        "\n## Idle guests\n\nTotals over every process of every daemon: RSS is the sum of `VmRSS`, Pss the sum \
         of `Pss` (`/proc/PID/smaps_rollup`), which counts a page that N processes share once instead of N \
         times.\n\n\
         | daemons | guests | processes | RSS MiB | Pss MiB | RssAnon MiB | threads | fds | supervisors' RSS MiB | supervisors' Pss MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in &r.summary.configurations {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.layout.name(),
            c.guests,
            c.processes,
            mb(c.rss, mib),
            mb(c.pss, mib),
            mb(c.anon, mib),
            mb(c.threads, count),
            mb(c.fds, count),
            mb(c.supervisor_rss, mib),
            mb(c.supervisor_pss, mib),
        );
    }
    s.push_str(
        "\n### Cost per extra idle guest\n\n(total(N) − total(1)) / (N − 1), from the medians.\n\n\
         | daemons | N | RSS KiB | Pss KiB | RssAnon KiB | threads | fds |\n|---|---|---|---|---|---|---|\n",
    );
    for p in &r.summary.per_guest {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            p.layout.name(),
            p.guests,
            kib(p.rss),
            kib(p.pss),
            kib(p.anon),
            count(p.threads),
            count(p.fds)
        );
    }
    s.push_str("\nDescriptors of the serving processes by kind (first round):\n\n| daemons | guests | kinds |\n|---|---|---|\n");
    for g in r.guests.iter().filter(|g| g.round == 0) {
        let kinds: Vec<String> = g.fd_kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(s, "| {} | {} | {} |", g.layout.name(), g.guests, kinds.join(", "));
    }
    if let Some(first) = r.inodes.first() {
        let _ = write!(
            s,
            "\n## Cached inodes\n\nOne daemon, two idle guests; the first looks up {} files (LOOKUP of each, \
             no FORGET), then the second looks up the same files. The serving process's growth per inode \
             (median, best in brackets); `filp` is the kernel's `struct file` slab (machine-wide active \
             objects, `/proc/slabinfo`): kernel memory a descriptor holds, which no RSS shows.\n\n\
             | guest | RSS B | Pss B | RssAnon B | fds | filp objects | filp B |\n|---|---|---|---|---|---|---|\n",
            first.files
        );
        for p in &r.summary.per_inode {
            let b = |v: f64| format!("{v:.0}");
            let filp = p.filp.map_or("-".into(), |f| mb(f, |v| format!("{v:.2}")));
            let filp_bytes = match (p.filp, p.filp_size) {
                (Some(f), Some(size)) => format!("{:.0}", f.median * size as f64),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {filp} | {filp_bytes} |",
                p.step,
                mb(p.rss, b),
                mb(p.pss, b),
                mb(p.anon, b),
                mb(p.fds, |v| format!("{v:.2}"))
            );
        }
    }
    s
}

/// One CSV line per configuration per round, and per inode round.
pub fn csv(r: &Report) -> String {
    let mut s = String::from(
        "kind,layout,guests,round,processes,rss,anon,shmem,pss,threads,fds,supervisor_rss,supervisor_pss\n",
    );
    for g in &r.guests {
        let (t, sup) = (g.daemons.total(), g.daemons.supervisor);
        let _ = writeln!(
            s,
            "guests,{:?},{},{},{},{},{},{},{},{},{},{},{}",
            g.layout, g.guests, g.round, t.processes, t.rss, t.anon, t.shmem, t.pss, t.threads, t.fds, sup.rss, sup.pss
        );
    }
    for i in &r.inodes {
        for (step, p) in [("before", i.before), ("first", i.first), ("second", i.second)] {
            let _ = writeln!(
                s,
                "inodes-{step},OneDaemon,2,{},{},{},{},{},{},{},{},,",
                i.round, p.processes, p.rss, p.anon, p.shmem, p.pss, p.threads, p.fds
            );
        }
    }
    s
}

/// Writes `guest-cost.md`, `.json` and `.csv` into `out`; returns the paths.
pub fn write_all(out: &Path, r: &Report) -> Result<Vec<PathBuf>, Error> {
    fs::create_dir_all(out).ctx(|| format!("creating {}", out.display()))?;
    let json = serde_json::to_string_pretty(r).map_err(|e| Error::Usage(format!("encoding the report: {e}")))?;
    let files = [("guest-cost.md", markdown(r)), ("guest-cost.json", json + "\n"), ("guest-cost.csv", csv(r))];
    let mut paths = Vec::new();
    for (name, text) in files {
        let p = out.join(name);
        fs::write(&p, text).ctx(|| format!("writing {}", p.display()))?;
        paths.push(p);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(rss_kib: u64, pss_kib: u64, threads: u64, fds: u64) -> ProcSample {
        ProcSample {
            processes: 1,
            rss: rss_kib * 1024,
            anon: rss_kib * 512,
            shmem: 0,
            pss: pss_kib * 1024,
            threads,
            fds,
        }
    }

    #[test]
    fn parses_status_rollup_and_slabinfo() {
        let status = "Name:\tavpfs\nVmRSS:\t    4096 kB\nRssAnon:\t    1024 kB\nRssShmem:\t 8 kB\nThreads:\t5\n";
        assert_eq!(kib_field(status, "VmRSS:"), 4096);
        assert_eq!(kib_field(status, "RssShmem:"), 8);
        assert_eq!(kib_field(status, "Threads:"), 5);
        assert_eq!(kib_field(status, "Pss:"), 0);
        let rollup = "55d0-7ff0 ---p 00000000 00:00 0  [rollup]\nRss:   4096 kB\nPss:   1500 kB\nPss_Anon: 1000 kB\n";
        assert_eq!(kib_field(rollup, "Pss:"), 1500);
        let slabinfo = "slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> ...\n\
                        filp                1596   1596    192   21    1 : tunables    0    0    0\n\
                        dentry            210046 215250    192   21    1 : tunables    0    0    0\n";
        assert_eq!(slab(slabinfo, "filp"), Some((1596, 192)));
        assert_eq!(slab(slabinfo, "filp_x"), None);
    }

    #[test]
    fn descriptor_kinds() {
        assert_eq!(fd_kind("socket:[1234]"), "socket");
        assert_eq!(fd_kind("anon_inode:[eventfd]"), "eventfd");
        assert_eq!(fd_kind("anon_inode:[eventpoll]"), "eventpoll");
        assert_eq!(fd_kind("/memfd:guest (deleted)"), "memfd");
        assert_eq!(fd_kind("pipe:[99]"), "pipe");
        assert_eq!(fd_kind("/srv/share/f"), "file");
    }

    #[test]
    fn reads_our_own_process() {
        let p = ProcSample::read(std::process::id()).unwrap();
        assert!(p.rss > 0 && p.threads >= 1 && p.fds >= 3);
        assert_eq!(p.plus(p).threads, 2 * p.threads);
    }

    #[test]
    fn config_file_has_a_guest_per_socket_with_one_queue() {
        let c = config_file(Path::new("/srv/s"), Path::new("/tmp/d"), 2);
        assert!(c.starts_with("[[share]]\nname = \"data\"\nshared_dir = \"/srv/s\"\n"));
        assert_eq!(c.matches("[[guest]]").count(), 2);
        assert!(c.contains("socket_path = \"/tmp/d/vm1.sock\""));
        assert_eq!(c.matches("request_queues = 1").count(), 2);
    }

    #[test]
    fn spreads_take_the_median_and_the_least() {
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]), Spread { median: 2.0, best: 1.0 });
        assert_eq!(Spread::of(&[4.0, 1.0]), Spread { median: 2.5, best: 1.0 });
        assert_eq!(Spread::of(&[]), Spread { median: 0.0, best: 0.0 });
    }

    fn sample(
        layout: Layout,
        guests: usize,
        round: usize,
        serving: ProcSample,
        supervisor: ProcSample,
    ) -> GuestsSample {
        GuestsSample { layout, guests, round, daemons: DaemonSample { serving, supervisor }, fd_kinds: BTreeMap::new() }
    }

    #[test]
    fn the_cost_per_extra_guest_is_taken_from_the_least_guest_count() {
        let sup = proc(1000, 500, 1, 4);
        let mut s = Vec::new();
        for round in 0..3 {
            let jitter = round as u64 * 8;
            s.push(sample(Layout::OneDaemon, 1, round, proc(4000 + jitter, 2000, 5, 20), sup));
            s.push(sample(Layout::OneDaemon, 4, round, proc(4600 + jitter, 2600, 14, 50), sup));
            let four = |p: ProcSample| p.plus(p).plus(p.plus(p));
            s.push(sample(Layout::SeparateDaemons, 1, round, proc(4000 + jitter, 2000, 5, 20), sup));
            s.push(sample(Layout::SeparateDaemons, 4, round, four(proc(4000, 2000, 5, 20)), four(sup)));
        }
        let sum = summarize(&s, &[]);
        assert_eq!(sum.configurations.len(), 4);
        let one4 = &sum.configurations[1];
        assert_eq!((one4.layout, one4.guests, one4.processes), (Layout::OneDaemon, 4, 2));
        assert_eq!(one4.rss, Spread { median: (5600.0 + 8.0) * 1024.0, best: 5600.0 * 1024.0 });
        assert_eq!(one4.supervisor_rss.median, 1000.0 * 1024.0);
        assert_eq!(sum.per_guest.len(), 2);
        let p = &sum.per_guest[0];
        assert_eq!((p.layout, p.base, p.guests), (Layout::OneDaemon, 1, 4));
        assert_eq!((p.rss, p.pss, p.threads, p.fds), (200.0 * 1024.0, 200.0 * 1024.0, 3.0, 10.0));
        let q = &sum.per_guest[1];
        assert_eq!((q.threads, q.fds), (6.0, 24.0));
        assert!((q.rss - (5000.0 - 8.0 / 3.0) * 1024.0).abs() < 1e-6, "{}", q.rss);
        assert!(sum.per_inode.is_empty());
        assert!(markdown(&report(s, vec![])).contains("| one daemon | 4 | 200 | 200 | 100 | 3 | 10 |"));
    }

    #[test]
    fn the_cost_per_inode_is_per_file_per_step() {
        let i = InodeSample {
            round: 0,
            files: 1000,
            before: proc(4000, 2000, 8, 30),
            first: proc(4000 + 250, 2000 + 250, 8, 1030),
            second: proc(4000 + 500, 2000 + 500, 8, 2030),
            filp: Some(([100, 1100, 2102], 192)),
        };
        let sum = summarize(&[], std::slice::from_ref(&i));
        let (a, b) = (&sum.per_inode[0], &sum.per_inode[1]);
        assert_eq!((a.rss.median, a.fds.median, a.filp.unwrap().median), (256.0, 1.0, 1.0));
        assert_eq!((b.rss.median, b.fds.median, b.filp.unwrap().median), (256.0, 1.0, 1.002));
        let md = markdown(&report(vec![], vec![i]));
        assert!(
            md.contains("| first guest | 256 (256) | 256 (256) | 128 (128) | 1.00 (1.00) | 1.00 (1.00) | 192 |"),
            "{md}"
        );
        let csv = csv(&report(vec![], vec![]));
        assert_eq!(csv.lines().count(), 1);
    }

    fn report(guests: Vec<GuestsSample>, inodes: Vec<InodeSample>) -> Report {
        let summary = summarize(&guests, &inodes);
        Report {
            date: "2026-12-05 00:00:00 UTC".into(),
            command_line: "guest-cost".into(),
            machine: Machine::probe(),
            avpfs_version: "avpfs 0.1.0".into(),
            extra_args: vec![],
            seconds: 1.0,
            guests,
            inodes,
            summary,
        }
    }
}
