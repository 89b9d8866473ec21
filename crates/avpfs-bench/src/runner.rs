//! The run: for each share location and each repetition, every contender
//! runs every case, contenders interleaved (their order rotates from one
//! repetition to the next), then the memory probe.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{Config, MemoryHandles, Mode};
use crate::contenders::{self, Contender, Daemon, DaemonSpec};
use crate::engine::Session;
use crate::error::{Error, IoContext};
use crate::host::HostCtx;
use crate::procstat::{fd_count, Memory};
use crate::results::{DaemonSetup, MemorySample, Metrics, Results, Row, RunStart, Sample, Setup};
use crate::share::{make_data_file, DirKind, Share, Tree};
use crate::stats::Latency;
use crate::workloads::{paths, Case, FuseCtx, LookupStream, Measurement, Unit, Workload};

/// The figures of a measurement of `workload`.
fn metrics_of(workload: Workload, mut m: Measurement) -> Metrics {
    let wall_s = m.run.wall.as_secs_f64().max(1e-9);
    let lat = Latency::of(&mut m.run.latencies);
    let unit = workload.unit();
    let count = if unit == Unit::Ops { m.run.ops } else { m.run.units };
    Metrics {
        ops: m.run.ops,
        units: m.run.units,
        wall_s,
        rate: unit.scale(count as f64 / wall_s),
        p50_us: Some(lat.p50_ns as f64 / 1e3),
        p99_us: Some(lat.p99_ns as f64 / 1e3),
        cpu_s: Some(m.cpu.as_secs_f64()),
        fe_cpu_s: Some(m.run.driver_cpu.as_secs_f64()),
        relay_cpu_s: None,
    }
}

/// The cases: for each depth one queue, then N queues at the largest depth;
/// every workload in each.
pub fn cases(cfg: &Config) -> Vec<Case> {
    let mut variants: Vec<(usize, usize)> = cfg.depths.iter().map(|&d| (1, d)).collect();
    if cfg.queues > 1 {
        variants.push((cfg.queues, *cfg.depths.iter().max().unwrap_or(&1)));
    }
    variants
        .into_iter()
        .flat_map(|(queues, depth)| cfg.workloads.iter().map(move |&workload| Case { workload, queues, depth }))
        .collect()
}

/// Whether `c` runs `case`: virtiofsd has one request queue; the host runs
/// each workload once per thread count (depth does not apply to it).
pub fn applies(c: Contender, case: &Case, cases: &[Case]) -> bool {
    match c {
        Contender::Avpfs => true,
        Contender::Virtiofsd => case.queues == 1,
        Contender::NineP | Contender::NinePMapped | Contender::AvpfsNineP => false,
        Contender::Host => {
            cases.iter().find(|k| k.workload == case.workload && k.queues == case.queues).map(|k| k.depth)
                == Some(case.depth)
        }
    }
}

/// The largest descriptor count a process may have (`/proc/sys/fs/nr_open`).
pub(crate) fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1 << 20)
}

/// Raises our descriptor limit as far as allowed (the host getattr baseline
/// holds one per file); returns the hard limit, which the daemons get too.
pub fn raise_nofile(want: u64) -> u64 {
    use avpfs_sys::process::{getrlimit, setrlimit};
    if setrlimit(libc::RLIMIT_NOFILE, &libc::rlimit { rlim_cur: want, rlim_max: want }).is_ok() {
        return want;
    }
    // Without CAP_SYS_RESOURCE the hard limit stays: take all of it.
    let Ok(cur) = getrlimit(libc::RLIMIT_NOFILE) else {
        return 1024;
    };
    let _ = setrlimit(libc::RLIMIT_NOFILE, &libc::rlimit { rlim_cur: cur.rlim_max, rlim_max: cur.rlim_max });
    cur.rlim_max
}

/// The `--inode-file-handles` value both daemons get for the memory probe
/// (`None`: their defaults): file handles in full mode and whenever the probe
/// has more files than the descriptor limit, unless the user chose.
pub fn memory_inode_mode(choice: MemoryHandles, mode: Mode, too_many_files: bool) -> Option<&'static str> {
    match choice {
        MemoryHandles::Auto if mode == Mode::Full || too_many_files => Some("mandatory"),
        MemoryHandles::Auto | MemoryHandles::Default => None,
        MemoryHandles::Never => Some("never"),
        MemoryHandles::Prefer => Some("prefer"),
        MemoryHandles::Mandatory => Some("mandatory"),
    }
}

/// Runs the benchmark.
pub fn run(cfg: &Config) -> Result<Results, Error> {
    let start = RunStart::now();
    let nofile = raise_nofile(nr_open());
    let mut notes = Vec::new();
    let mut capped;
    let mut cfg = cfg;
    let needed = |files: usize, per_dir: usize| (files + files / per_dir.max(1) + 1000) as u64;
    if needed(cfg.sizes.files, cfg.sizes.per_dir) > nofile {
        // The daemons hold one descriptor per inode (O_PATH mode), and so does
        // the host getattr baseline: the tree must fit the descriptor limit.
        let files =
            ((nofile.saturating_sub(1000) as usize * cfg.sizes.per_dir) / (cfg.sizes.per_dir + 1)) / 1000 * 1000;
        let note = format!(
            "The descriptor limit is {nofile} (RLIMIT_NOFILE hard limit; raising it needs CAP_SYS_RESOURCE): \
             the tree was cut from {} to {files} files.",
            cfg.sizes.files
        );
        eprintln!("note: {note}");
        notes.push(note);
        capped = cfg.clone();
        capped.sizes.files = files.max(1000);
        capped.sizes.create_files = capped.sizes.create_files.min(capped.sizes.files);
        cfg = &capped;
    }
    // The memory probe: with more files than descriptors, a daemon that holds
    // one O_PATH descriptor per inode fails with EMFILE, so both daemons keep
    // file handles instead (and always in full mode, so that full runs compare
    // the same way whatever the limit).
    let too_many = needed(cfg.sizes.memory_files, cfg.sizes.per_dir) > nofile;
    let memory_handles = memory_inode_mode(cfg.memory_file_handles, cfg.mode, too_many);
    let memory_args: Vec<String> =
        memory_handles.map(|m| vec![format!("--inode-file-handles={m}")]).unwrap_or_default();
    if cfg.memory {
        match memory_handles {
            Some(m) => notes.push(format!(
                "Memory probe: both daemons ran with `--inode-file-handles={m}` (inodes kept as file handles, not \
                 O_PATH descriptors){}.",
                if too_many {
                    format!(": its {} files are more than the descriptor limit ({nofile})", cfg.sizes.memory_files)
                } else {
                    String::new()
                }
            )),
            None if too_many => notes.push(format!(
                "The memory probe looks up {} files, more than the descriptor limit ({nofile}), with the daemons' \
                 default inode mode: a daemon that holds one O_PATH descriptor per inode fails it with EMFILE.",
                cfg.sizes.memory_files
            )),
            None => notes.push(
                "Memory probe: each daemon with its default inode mode (avpfs: O_PATH descriptors; virtiofsd: \
                 file handles when it may, `--inode-file-handles=prefer`)."
                    .into(),
            ),
        }
    }
    let (specs, virtiofsd_version) =
        contenders::daemon_specs(&cfg.contenders, &cfg.programs, &cfg.cache, cfg.queues, nofile)?;
    let cases = cases(cfg);
    let run_dir =
        tempfile::Builder::new().prefix("avpfs-bench-run-").tempdir().ctx(|| "making a run directory".into())?;
    let daemon_command_lines = specs.iter().map(|s| s.command_line(Path::new("SOCKET"), Path::new("SHARE"))).collect();
    let mut setup = DaemonSetup {
        memory_daemon_args: memory_args.join(" "),
        sizes: cfg.sizes.clone(),
        min_time_s: cfg.min_time.as_secs_f64(),
        fe_poll_us: cfg.fe_poll.as_micros() as u64,
        file_systems: Vec::new(),
        max_io: Vec::new(),
    };
    let mut samples = Vec::new();
    let mut memory = Vec::new();
    for &kind in &cfg.dir_kinds {
        let share = prepare_share(kind, cfg)?;
        setup.file_systems.push((kind, share.fs_type().to_string()));
        let tree = Tree::new(paths::TREE, cfg.sizes.files, cfg.sizes.per_dir);
        let mtree = if cfg.sizes.memory_files > cfg.sizes.files {
            Tree::new(paths::MEMORY_TREE, cfg.sizes.memory_files, cfg.sizes.per_dir)
        } else {
            Tree::new(paths::TREE, cfg.sizes.memory_files, cfg.sizes.per_dir)
        };
        for rep in 0..cfg.reps {
            let order = rotated(&cfg.contenders, rep);
            eprintln!("== {} repetition {}/{}: {}", kind.name(), rep + 1, cfg.reps, names(&order));
            let mut run = RepRun::new(cfg, &specs, &share, &tree, run_dir.path(), rep);
            for (ci, case) in cases.iter().enumerate() {
                for &c in &order {
                    if !applies(c, case, &cases) {
                        continue;
                    }
                    let label = format!("{}-r{rep}-c{ci}", c.name());
                    let outcome = run.case(c, *case, &label);
                    if let Some(io) = run.max_io(c) {
                        if !setup.max_io.iter().any(|(k, _)| *k == c) {
                            setup.max_io.push((c, io));
                        }
                    }
                    report_line(kind, rep, case, c, &outcome);
                    let (metrics, error) = match outcome {
                        Ok(m) => (Some(m), None),
                        Err(e) => (None, Some(e.to_string())),
                    };
                    samples.push(Sample {
                        row: Row::Case { dir_kind: kind, case: *case },
                        contender: c,
                        rep,
                        metrics,
                        error,
                    });
                }
            }
            run.finish();
            if cfg.memory {
                for spec in order.iter().filter_map(|c| specs.iter().find(|s| s.contender == *c)) {
                    let label = format!("mem-r{rep}");
                    let mut spec = spec.clone();
                    spec.extra_args.extend(memory_args.iter().cloned());
                    let m = memory_probe(&spec, &share, &mtree, run_dir.path(), &label, kind, rep);
                    match &m.error {
                        None => eprintln!(
                            "   memory {:9}: {:.0} bytes/inode, RSS {} -> {} -> {} MiB, {} fds",
                            spec.contender.name(),
                            m.bytes_per_inode,
                            m.before.rss >> 20,
                            m.after_lookup.rss >> 20,
                            m.after_forget.rss >> 20,
                            m.fds_after_lookup
                        ),
                        Some(e) => eprintln!("   memory {:9}: FAILED {e}", spec.contender.name()),
                    }
                    memory.push(m);
                }
            }
        }
    }
    let rows = setup
        .file_systems
        .iter()
        .flat_map(|&(dir_kind, _)| cases.iter().map(move |&case| Row::Case { dir_kind, case }))
        .collect();
    let meta = start.meta(cfg, virtiofsd_version, daemon_command_lines, notes, Setup::Daemons(setup));
    Ok(Results { meta, contenders: cfg.contenders.clone(), rows, samples, memory, boots: Vec::new() })
}

pub(crate) fn names(cs: &[Contender]) -> String {
    cs.iter().map(|c| c.name()).collect::<Vec<_>>().join(" ")
}

pub(crate) fn rotated(cs: &[Contender], by: usize) -> Vec<Contender> {
    let mut v = cs.to_vec();
    if !v.is_empty() {
        let n = by % v.len();
        v.rotate_left(n);
    }
    v
}

fn report_line(kind: DirKind, rep: usize, case: &Case, c: Contender, outcome: &Result<Metrics, Error>) {
    match outcome {
        Ok(m) => {
            // Level 1's runs have every figure.
            let v = |x: Option<f64>| x.unwrap_or(f64::NAN);
            eprintln!(
                "   [{} r{}] {:20} {:9} {:>11.1} {:9} p50 {:>7.1} µs  p99 {:>8.1} µs  cpu {:>6.2} µs/op  fe {:>5.2}",
                kind.name(),
                rep + 1,
                case.label(),
                c.name(),
                m.rate,
                case.workload.unit().rate_label(),
                v(m.p50_us),
                v(m.p99_us),
                v(m.cpu_us_per_op()),
                v(m.fe_cpu_us_per_op())
            )
        }
        Err(e) => eprintln!("   [{} r{}] {:20} {:9} FAILED: {e}", kind.name(), rep + 1, case.label(), c.name()),
    }
}

/// Makes the share and everything the workloads read.
fn prepare_share(kind: DirKind, cfg: &Config) -> Result<Share, Error> {
    let t = Instant::now();
    let share = Share::create(kind, &cfg.disk_dir, cfg.disk_fs)?;
    let root = share.root();
    eprintln!("== preparing the {} share at {} ({})", kind.name(), root.display(), share.fs_type());
    Tree::new(paths::TREE, cfg.sizes.files, cfg.sizes.per_dir).build(root)?;
    if cfg.memory && cfg.sizes.memory_files > cfg.sizes.files {
        Tree::new(paths::MEMORY_TREE, cfg.sizes.memory_files, cfg.sizes.per_dir).build(root)?;
    }
    let work = root.join(paths::WORK);
    std::fs::create_dir_all(&work).ctx(|| format!("mkdir {}", work.display()))?;
    let data = root.join(paths::DATA);
    if cfg.workloads.contains(&Workload::Randread) {
        make_data_file(&data.join(paths::RAND), cfg.sizes.rand_file_bytes)?;
    }
    if cfg.workloads.contains(&Workload::Seqread) {
        make_data_file(&data.join(paths::SEQ), cfg.sizes.seq_bytes)?;
    }
    std::fs::create_dir_all(&data).ctx(|| format!("mkdir {}", data.display()))?;
    eprintln!("   ready in {:.1} s", t.elapsed().as_secs_f64());
    Ok(share)
}

/// The contenders' sessions of one repetition.
struct RepRun<'a> {
    cfg: &'a Config,
    specs: &'a [DaemonSpec],
    share: &'a Share,
    tree: &'a Tree,
    run_dir: &'a Path,
    rep: usize,
    sessions: Vec<(Contender, Option<FuseCtx<'a>>)>,
    host: Option<HostCtx<'a>>,
    restarts: usize,
}

impl<'a> RepRun<'a> {
    fn new(
        cfg: &'a Config,
        specs: &'a [DaemonSpec],
        share: &'a Share,
        tree: &'a Tree,
        run_dir: &'a Path,
        rep: usize,
    ) -> Self {
        RepRun { cfg, specs, share, tree, run_dir, rep, sessions: Vec::new(), host: None, restarts: 0 }
    }

    fn depth(&self) -> usize {
        self.cfg.depths.iter().copied().max().unwrap_or(1)
    }

    fn start(&mut self, c: Contender) -> Result<FuseCtx<'a>, Error> {
        let spec =
            self.specs.iter().find(|s| s.contender == c).ok_or_else(|| Error::Usage(format!("no {}", c.name())))?;
        self.restarts += 1;
        let label = format!("r{}-{}", self.rep, self.restarts);
        let daemon = Daemon::start(spec, self.share.root(), self.run_dir, &label)?;
        let queues = if c == Contender::Avpfs { self.cfg.queues } else { 1 };
        let session = Session::connect(daemon, queues, self.depth(), self.cfg.fe_poll)?;
        FuseCtx::new(session, self.tree)
    }

    fn max_io(&self, c: Contender) -> Option<u32> {
        self.sessions.iter().find(|(k, _)| *k == c)?.1.as_ref().map(|f| f.session.max_io())
    }

    /// Runs `case` in passes until `min_time` of it has been measured.
    fn case(&mut self, c: Contender, case: Case, label: &str) -> Result<Metrics, Error> {
        const MAX_PASSES: usize = 200;
        let mut total = self.pass(c, case, &format!("{label}-p0"))?;
        for pass in 1..MAX_PASSES {
            if total.run.wall >= self.cfg.min_time {
                break;
            }
            total.merge(self.pass(c, case, &format!("{label}-p{pass}"))?);
        }
        Ok(metrics_of(case.workload, total))
    }

    fn pass(&mut self, c: Contender, case: Case, label: &str) -> Result<Measurement, Error> {
        self.share.sync()?;
        let data = match case.workload {
            Workload::Randread => Some(paths::RAND),
            Workload::Seqread => Some(paths::SEQ),
            _ => None,
        };
        if let Some(name) = data {
            crate::share::read_into_cache(&self.share.root().join(paths::DATA).join(name))?;
        }
        if c == Contender::Host {
            if self.host.is_none() {
                self.host = Some(HostCtx::new(self.share.root(), self.tree)?);
            }
            let host = self.host.as_ref().ok_or(Error::Panic)?;
            return host.run_case(case, &self.cfg.sizes, label);
        }
        let pos = match self.sessions.iter().position(|(k, _)| *k == c) {
            Some(p) => p,
            None => {
                self.sessions.push((c, None));
                self.sessions.len() - 1
            }
        };
        if self.sessions[pos].1.is_none() {
            let ctx = self.start(c)?;
            self.sessions[pos].1 = Some(ctx);
        }
        let ctx = self.sessions[pos].1.as_mut().ok_or(Error::Panic)?;
        match ctx.run_case(case, &self.cfg.sizes, self.share.root(), label) {
            Ok(m) => Ok(m),
            Err(e) => {
                // The daemon may be dead or the session out of step: the next
                // case starts a fresh one (this one is killed when dropped).
                let mut ctx = self.sessions[pos].1.take().ok_or(Error::Panic)?;
                let daemon = &mut ctx.session.daemon;
                Err(match daemon.exited() {
                    Some(status) => daemon.failure(&format!("{e}; the daemon exited ({status})")),
                    None => e,
                })
            }
        }
    }

    /// Disconnects every session (the daemons exit) after forgetting what they hold.
    fn finish(&mut self) {
        for (c, ctx) in self.sessions.drain(..) {
            if let Some(ctx) = ctx {
                match ctx.close() {
                    Ok(session) => {
                        let Session { harness, daemon, .. } = session;
                        harness.disconnect();
                        daemon.stop();
                    }
                    Err(e) => eprintln!("   closing the {} session: {e}", c.name()),
                }
            }
        }
        self.host = None;
    }
}

/// Starts a fresh daemon, looks up every file of `tree` and forgets them,
/// reading the daemon's memory at each step.
fn memory_probe(
    spec: &DaemonSpec,
    share: &Share,
    tree: &Tree,
    run_dir: &Path,
    label: &str,
    kind: DirKind,
    rep: usize,
) -> MemorySample {
    let mut m = MemorySample {
        dir_kind: kind,
        contender: spec.contender,
        rep,
        files: tree.files,
        before: Memory::default(),
        after_lookup: Memory::default(),
        after_forget: Memory::default(),
        fds_after_lookup: 0,
        bytes_per_inode: f64::NAN,
        error: None,
    };
    if let Err(e) = memory_probe_inner(spec, share.root(), tree, run_dir, label, &mut m) {
        m.error = Some(e.to_string());
    }
    m
}

fn memory_probe_inner(
    spec: &DaemonSpec,
    share: &Path,
    tree: &Tree,
    run_dir: &Path,
    label: &str,
    m: &mut MemorySample,
) -> Result<(), Error> {
    const DEPTH: usize = 16;
    let daemon = Daemon::start(spec, share, run_dir, label)?;
    let session = Session::connect(daemon, 1, DEPTH, std::time::Duration::ZERO)?;
    let pid = session.daemon.pid();
    let c = session.client();
    let top = c.lookup(fuse_abi::ROOT_ID, &tree.name)?.nodeid;
    let dirs = (0..tree.dirs())
        .map(|i| Ok(c.lookup(top, &tree.dir_name(i).to_string_lossy())?.nodeid))
        .collect::<Result<Vec<u64>, Error>>()?;
    let settle = Duration::from_millis(300);
    std::thread::sleep(settle);
    m.before = Memory::read(pid)?;
    let (_, streams) = session.run(DEPTH, vec![LookupStream::new(tree, &dirs, 0, 1)])?;
    let found: Vec<u64> = streams.into_iter().flat_map(|s| s.found).collect();
    m.after_lookup = Memory::read(pid)?;
    m.fds_after_lookup = fd_count(pid)?;
    session.forget(&crate::workloads::forget_list(found))?;
    std::thread::sleep(settle);
    m.after_forget = Memory::read(pid)?;
    m.bytes_per_inode = (m.after_lookup.anon as f64 - m.before.anon as f64) / tree.files.max(1) as f64;
    let Session { harness, daemon, .. } = session;
    harness.disconnect();
    daemon.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn cases_and_who_runs_them() {
        let cfg =
            Config::try_from(crate::cli::Cli::parse_from(["b", "--workloads", "lookup", "--queues", "2"])).unwrap();
        let cs = cases(&cfg);
        let labels: Vec<String> = cs.iter().map(Case::label).collect();
        assert_eq!(labels, ["lookup q1 d1", "lookup q1 d16", "lookup q2 d16"]);
        assert!(cs.iter().all(|c| applies(Contender::Avpfs, c, &cs)));
        assert_eq!(cs.iter().filter(|c| applies(Contender::Virtiofsd, c, &cs)).count(), 2);
        let host: Vec<String> = cs.iter().filter(|c| applies(Contender::Host, c, &cs)).map(Case::label).collect();
        assert_eq!(host, ["lookup q1 d1", "lookup q2 d16"]);
    }

    #[test]
    fn the_memory_probe_uses_file_handles_in_full_mode_and_when_fds_run_out() {
        use MemoryHandles::*;
        assert_eq!(memory_inode_mode(Auto, Mode::Full, false), Some("mandatory"));
        assert_eq!(memory_inode_mode(Auto, Mode::Quick, true), Some("mandatory"));
        assert_eq!(memory_inode_mode(Auto, Mode::Quick, false), None);
        assert_eq!(memory_inode_mode(Default, Mode::Full, true), None);
        assert_eq!(memory_inode_mode(Prefer, Mode::Quick, false), Some("prefer"));
        let f = Config::try_from(crate::cli::Cli::parse_from(["b", "--full"])).unwrap();
        assert_eq!(f.memory_file_handles, Auto);
    }

    #[test]
    fn rotation() {
        use Contender::*;
        assert_eq!(rotated(&[Avpfs, Virtiofsd, Host], 1), vec![Virtiofsd, Host, Avpfs]);
        assert_eq!(rotated(&[Avpfs, Virtiofsd, Host], 3), vec![Avpfs, Virtiofsd, Host]);
    }
}
