//! The results as a reader wants them: a Markdown table per share location
//! (medians, spread, ratios), the memory table, the targets checked,
//! and the raw numbers as JSON and CSV.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::contenders::Contender;
use crate::error::{Error, IoContext};
use crate::runner::{Results, Sample};
use crate::share::DirKind;
use crate::stats::Spread;
use crate::workloads::{Case, Unit, Workload};

/// The reports' "Run" line: when, the command line, mode, repetitions, time.
pub(crate) fn run_line(date: &str, command_line: &str, mode: crate::config::Mode, reps: usize, seconds: f64) -> String {
    let mode = match mode {
        crate::config::Mode::Quick => "quick",
        crate::config::Mode::Full => "full",
    };
    format!("- **Run**: {date} — `{command_line}` ({mode} mode, {reps} repetitions, {seconds:.0} s)")
}

/// The medians of one case for one contender over the repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// tmpfs or disk.
    pub dir_kind: DirKind,
    /// The case.
    pub case: Case,
    /// The contender.
    pub contender: Contender,
    /// Rate over the successful repetitions.
    pub rate: Option<Spread>,
    /// Median of the runs' p50 latencies, µs.
    pub p50_us: Option<f64>,
    /// Median of the runs' p99 latencies, µs.
    pub p99_us: Option<f64>,
    /// Median CPU time per operation, µs.
    pub cpu_us_per_op: Option<f64>,
    /// Median CPU time of the front end per operation, µs.
    pub fe_cpu_us_per_op: Option<f64>,
    /// Failed repetitions.
    pub failures: usize,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// Rate / virtiofsd's rate (one queue, same depth); paired by repetition.
    pub vs_virtiofsd: Option<Spread>,
    /// Best rate / virtiofsd's best rate: what each reached when least
    /// disturbed (outside load only ever slows a run down).
    pub vs_virtiofsd_best: Option<f64>,
    /// Rate / the host's rate (as many threads as queues).
    pub vs_host: Option<f64>,
    /// virtiofsd's p99 / this p99 (above 1: lower tail latency than virtiofsd).
    pub p99_gain_vs_virtiofsd: Option<f64>,
}

/// Summaries of every (share, case, contender) that ran, in report order.
pub fn summarize(r: &Results) -> Vec<Summary> {
    let mut out: Vec<Summary> = Vec::new();
    let kinds: Vec<DirKind> = r.meta.file_systems.iter().map(|(k, _)| *k).collect();
    for &kind in &kinds {
        for case in &r.cases {
            for &c in &r.contenders {
                let runs: Vec<&Sample> =
                    r.samples.iter().filter(|s| s.dir_kind == kind && s.case == *case && s.contender == c).collect();
                if runs.is_empty() {
                    continue;
                }
                let ok: Vec<_> = runs.iter().filter_map(|s| s.metrics.as_ref()).collect();
                let median =
                    |f: &dyn Fn(&crate::runner::Metrics) -> f64| Spread::of(ok.iter().map(|m| f(m))).map(|s| s.median);
                out.push(Summary {
                    dir_kind: kind,
                    case: *case,
                    contender: c,
                    rate: Spread::of(ok.iter().map(|m| m.rate)),
                    p50_us: median(&|m| m.p50_us),
                    p99_us: median(&|m| m.p99_us),
                    cpu_us_per_op: median(&|m| m.cpu_us_per_op),
                    fe_cpu_us_per_op: median(&|m| m.fe_cpu_us_per_op),
                    failures: runs.len() - ok.len(),
                    first_error: runs.iter().find_map(|s| s.error.clone()),
                    vs_virtiofsd: None,
                    vs_virtiofsd_best: None,
                    vs_host: None,
                    p99_gain_vs_virtiofsd: None,
                });
            }
        }
    }
    // Ratios, now that every summary exists.
    let snapshot = out.clone();
    let find = |kind: DirKind, c: Contender, pred: &dyn Fn(&Case) -> bool| {
        snapshot.iter().find(|s| s.dir_kind == kind && s.contender == c && pred(&s.case))
    };
    for s in &mut out {
        let Some(rate) = s.rate else { continue };
        let (w, q, d) = (s.case.workload, s.case.queues, s.case.depth);
        if s.contender != Contender::Host {
            if let Some(v) =
                find(s.dir_kind, Contender::Virtiofsd, &|k| k.workload == w && k.queues == 1 && k.depth == d)
            {
                s.vs_virtiofsd = paired_ratio(r, s, v);
                s.vs_virtiofsd_best = v.rate.filter(|v| v.max > 0.0).map(|v| rate.max / v.max);
                s.p99_gain_vs_virtiofsd = match (v.p99_us, s.p99_us) {
                    (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                    _ => None,
                };
            }
        }
        if let Some(h) = find(s.dir_kind, Contender::Host, &|k| k.workload == w && k.queues == q) {
            s.vs_host = h.rate.filter(|h| h.median > 0.0).map(|h| rate.median / h.median);
        }
    }
    out
}

/// Ratios of `s`'s rate to `base`'s, repetition by repetition.
fn paired_ratio(r: &Results, s: &Summary, base: &Summary) -> Option<Spread> {
    let rate_of = |sum: &Summary, rep: usize| {
        r.samples
            .iter()
            .find(|x| x.dir_kind == sum.dir_kind && x.case == sum.case && x.contender == sum.contender && x.rep == rep)
            .and_then(|x| x.metrics.as_ref())
            .map(|m| m.rate)
    };
    Spread::of((0..r.meta.reps).filter_map(|rep| match (rate_of(s, rep), rate_of(base, rep)) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }))
}

fn fmt_rate(unit: Unit, v: f64) -> String {
    if unit == Unit::Bytes || v < 100.0 {
        format!("{v:.1}")
    } else {
        group_thousands(v.round() as u64)
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string().into_bytes();
    let mut groups: Vec<String> = digits.rchunks(3).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    groups.reverse();
    groups.join(" ")
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "—".into(), |x| format!("{x:.digits$}"))
}

fn fmt_ratio(v: Option<Spread>, best: Option<f64>) -> String {
    match (v, best) {
        (Some(s), Some(b)) if s.n > 1 => format!("{:.2}x ({:.2}–{:.2}; best {b:.2}x)", s.median, s.min, s.max),
        (Some(s), _) => format!("{:.2}x", s.median),
        (None, _) => "—".into(),
    }
}

/// The Markdown report.
pub fn markdown(r: &Results, sums: &[Summary]) -> String {
    let m = &r.meta;
    let mut s = String::new();
    let _ = writeln!(s, "# avpfs benchmark, level 1: the daemons alone\n");
    let _ = writeln!(
        s,
        "Each vhost-user-fs daemon is driven by the in-process front end of `crates/vhost-harness` \
         (memfd guest memory, split virtqueues with EVENT_IDX, the real vhost-user protocol) with the \
         same FUSE request streams on the same host directory; the host baseline makes the equivalent \
         system calls directly, one thread per queue, cycling through as many buffers as the front end \
         has requests in flight per queue. No guest kernel is involved.\n"
    );
    let _ = writeln!(s, "{}", run_line(&m.date, &m.command_line, m.mode, m.reps, m.seconds));
    let _ = writeln!(s, "{}", m.machine.markdown_line());
    let _ = writeln!(s, "- **Versions**: avpfs {}, {}", m.machine.avpfs_rev, m.virtiofsd_version);
    for cl in &m.daemon_command_lines {
        let _ = writeln!(s, "- **Daemon**: `{cl}`");
    }
    let shares: Vec<String> = m.file_systems.iter().map(|(k, fs)| format!("{} ({fs})", k.name())).collect();
    let _ = writeln!(s, "- **Shares**: {}", shares.join(", "));
    let io: Vec<String> = m.max_io.iter().map(|(c, n)| format!("{} {} KiB", c.name(), n / 1024)).collect();
    let _ = writeln!(
        s,
        "- **Sizes**: tree of {} files ({} per directory); {} files per create run; {} random 4 KiB reads, and as many writes, of a {} MiB file; \
         {} MiB read and written in order; READDIRPLUS buffer {} bytes; memory probe on {} files. Largest READ/WRITE: {}. \
         Each run repeats its workload until it has measured {:.1} s.",
        m.sizes.files,
        m.sizes.per_dir,
        m.sizes.create_files,
        m.sizes.rand_ops,
        m.sizes.rand_file_bytes >> 20,
        m.sizes.seq_bytes >> 20,
        m.sizes.readdir_buf,
        m.sizes.memory_files,
        if io.is_empty() { "—".into() } else { io.join(", ") },
        m.min_time_s
    );
    let _ = writeln!(s, "- **Front end**: {}", fe_poll_line(m.fe_poll_us));
    for n in &m.notes {
        let _ = writeln!(s, "- **Note**: {n}");
    }
    let _ = writeln!(s, "\nHow to read the tables:\n");
    let _ = writeln!(
        s,
        "- *q* request queues (host: threads), *d* requests in flight per queue (host: one system call per thread).\n\
         - *rate*: median over the repetitions, then the min–max range. ops/s, entries/s (READDIRPLUS) or MB/s (10^6 bytes).\n\
         - *p50/p99*: latency of one operation from submission to reply, median over the repetitions. For create an \
         operation is CREATE+WRITE+RELEASE; for readdirplus one 4 KiB READDIRPLUS.\n\
         - *CPU/op*: CPU time of the daemon process (all threads; schedstat, or utime+stime from /proc/PID/stat when \
         threads came and went) per operation; for the host, the CPU time of the calling threads. The front end's own \
         CPU time is not counted in it: *FE CPU* is the front end's (the harness threads playing the guest \
         driver), its polling for replies included, so it is near the wall time per operation whenever the front \
         end polls; with `--fe-poll-us 0`, an *FE CPU* near the wall time means the front end, not the daemon, is \
         the limit.\n\
         - *vs virtiofsd*: rate / virtiofsd's rate at the same depth (virtiofsd has one request queue), median of the \
         per-repetition ratios with their range, and *best*: the ratio of the two best rates (outside load \
         only slows runs down, so on a busy machine it is the less disturbed estimate). *vs host*: rate / the host's rate with as many threads as queues.\n\
         - Contenders run interleaved (their order rotates each repetition) on a noisy shared machine: trust ratios \
         with a narrow range more than absolute figures.\n"
    );
    let kinds: Vec<DirKind> = m.file_systems.iter().map(|(k, _)| *k).collect();
    for kind in kinds {
        let _ = writeln!(s, "## Share on {}\n", kind.name());
        let _ = writeln!(
            s,
            "| workload | q | d | contender | rate | unit | min–max | p50 µs | p99 µs | CPU µs/op | FE CPU µs/op | vs virtiofsd | vs host |"
        );
        let _ = writeln!(s, "|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for x in sums.iter().filter(|x| x.dir_kind == kind) {
            let unit = x.case.workload.unit();
            let (rate, range) = match x.rate {
                Some(r) => (fmt_rate(unit, r.median), format!("{}–{}", fmt_rate(unit, r.min), fmt_rate(unit, r.max))),
                None => ("FAILED".into(), x.first_error.clone().unwrap_or_default().replace('|', "/")),
            };
            let fails =
                if x.failures > 0 && x.rate.is_some() { format!(" ({} failed)", x.failures) } else { String::new() };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                x.case.workload.name(),
                x.case.queues,
                x.case.depth,
                if x.contender == Contender::Avpfs { "**avpfs**".to_string() } else { x.contender.name().to_string() },
                rate,
                fails,
                unit.rate_label(),
                range,
                fmt_opt(x.p50_us, 1),
                fmt_opt(x.p99_us, 1),
                fmt_opt(x.cpu_us_per_op, 2),
                if x.contender == Contender::Host { "—".into() } else { fmt_opt(x.fe_cpu_us_per_op, 2) },
                if x.contender == Contender::Virtiofsd {
                    "1.00x".into()
                } else {
                    fmt_ratio(x.vs_virtiofsd, x.vs_virtiofsd_best)
                },
                x.vs_host.map_or_else(|| "—".into(), |v| format!("{v:.2}x")),
            );
        }
        let _ = writeln!(s);
    }
    s.push_str(&memory_table(r));
    s.push_str(&targets(r, sums));
    let _ = writeln!(
        s,
        "\nRaw numbers: `level1.json` (every run and these summaries) and `level1.csv` (one line per run). \
         Chart: `level1.svg`."
    );
    s
}

fn memory_table(r: &Results) -> String {
    let mut s = String::new();
    if r.memory.is_empty() {
        return s;
    }
    let _ = writeln!(s, "## Memory\n");
    let _ = writeln!(
        s,
        "A fresh daemon, FUSE_INIT, then LOOKUP of every file of a tree (16 in flight), then BATCH_FORGET of all. \
         RSS is VmRSS (guest pages the daemon touched included); *bytes/inode* is the growth of RssAnon (the \
         daemon's heap) per file looked up. Medians over the repetitions.\n"
    );
    if !r.meta.memory_daemon_args.is_empty() {
        let _ = writeln!(s, "Both daemons ran with `{}` for this probe.\n", r.meta.memory_daemon_args);
    }
    let _ = writeln!(s, "| share | daemon | files | RSS after INIT | after LOOKUP | after FORGET | bytes/inode (min–max) | fds after LOOKUP |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    let mib = |v: f64| format!("{:.1} MiB", v / (1u64 << 20) as f64);
    let mut keys: Vec<(DirKind, Contender)> = r.memory.iter().map(|m| (m.dir_kind, m.contender)).collect();
    keys.sort();
    keys.dedup();
    for (kind, c) in keys {
        let ms: Vec<_> = r.memory.iter().filter(|m| m.dir_kind == kind && m.contender == c).collect();
        let ok: Vec<_> = ms.iter().filter(|m| m.error.is_none()).collect();
        let med = |f: &dyn Fn(&crate::runner::MemorySample) -> f64| Spread::of(ok.iter().map(|m| f(m)));
        match med(&|m| m.bytes_per_inode) {
            Some(bpi) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {:.0} ({:.0}–{:.0}) | {:.0} |",
                    kind.name(),
                    c.name(),
                    ms[0].files,
                    mib(med(&|m| m.before.rss as f64).map_or(0.0, |x| x.median)),
                    mib(med(&|m| m.after_lookup.rss as f64).map_or(0.0, |x| x.median)),
                    mib(med(&|m| m.after_forget.rss as f64).map_or(0.0, |x| x.median)),
                    bpi.median,
                    bpi.min,
                    bpi.max,
                    med(&|m| m.fds_after_lookup as f64).map_or(0.0, |x| x.median),
                );
            }
            None => {
                let e = ms.iter().find_map(|m| m.error.clone()).unwrap_or_default().replace('|', "/");
                let _ = writeln!(s, "| {} | {} | {} | FAILED: {e} | | | | |", kind.name(), c.name(), ms[0].files);
            }
        }
    }
    let _ = writeln!(s);
    s
}

/// The level-1 targets, checked against the medians.
fn targets(r: &Results, sums: &[Summary]) -> String {
    let mut s = String::new();
    let avpfs: Vec<&Summary> =
        sums.iter().filter(|x| x.contender == Contender::Avpfs && x.vs_virtiofsd.is_some()).collect();
    if avpfs.is_empty() {
        return s;
    }
    let _ = writeln!(s, "## Issue 5 targets (level 1)\n");
    let mark = |ok: bool| if ok { "met" } else { "**not met**" };
    let check = |w: Workload, min: f64| -> Vec<String> {
        avpfs
            .iter()
            .filter(|x| x.case.workload == w && x.case.queues == 1)
            .filter_map(|x| {
                let v = x.vs_virtiofsd?.median;
                let best = x.vs_virtiofsd_best.map_or_else(String::new, |b| format!(" (best {b:.2}x)"));
                Some(format!("{} d{} {}: {v:.2}x{best} {}", x.dir_kind.name(), x.case.depth, w.name(), mark(v >= min)))
            })
            .collect()
    };
    for (w, min, what) in [
        (Workload::Lookup, 1.3, "≥ 1.3x virtiofsd"),
        (Workload::Getattr, 1.3, "≥ 1.3x virtiofsd"),
        (Workload::Create, 1.3, "≥ 1.3x virtiofsd"),
        (Workload::Seqread, 1.0, "≥ virtiofsd"),
        (Workload::Seqwrite, 1.0, "≥ virtiofsd"),
    ] {
        let lines = check(w, min);
        if !lines.is_empty() {
            let _ = writeln!(s, "- {} {what}: {}", w.name(), lines.join("; "));
        }
    }
    let host: Vec<String> = avpfs
        .iter()
        .filter(|x| x.case.workload == Workload::Seqread)
        .filter_map(|x| {
            let v = x.vs_host?;
            Some(format!(
                "{} q{} d{}: {:.0}% {}",
                x.dir_kind.name(),
                x.case.queues,
                x.case.depth,
                v * 100.0,
                mark(v >= 0.8)
            ))
        })
        .collect();
    if !host.is_empty() {
        let _ = writeln!(s, "- seqread ≥ 80% of the host's pread: {}", host.join("; "));
    }
    let worse: Vec<String> = avpfs
        .iter()
        .filter(|x| x.case.queues == 1)
        .filter(|x| x.p99_gain_vs_virtiofsd.is_some_and(|g| g < 1.0))
        .map(|x| format!("{} {}", x.dir_kind.name(), x.case.label()))
        .collect();
    let _ = writeln!(
        s,
        "- p99 lower than virtiofsd's on every workload: {}",
        if worse.is_empty() { "met".to_string() } else { format!("**not met** on {}", worse.join(", ")) }
    );
    let bpi = |c: Contender| {
        Spread::of(r.memory.iter().filter(|m| m.contender == c && m.error.is_none()).map(|m| m.bytes_per_inode))
            .map(|x| x.median)
    };
    if let (Some(a), Some(v)) = (bpi(Contender::Avpfs), bpi(Contender::Virtiofsd)) {
        let _ = writeln!(s, "- memory per inode below virtiofsd's: {a:.0} vs {v:.0} bytes, {}", mark(a < v));
    }
    let _ = writeln!(s);
    s
}

/// One CSV line per run.
pub fn csv(r: &Results) -> String {
    let mut s = String::from(
        "dir_kind,workload,queues,depth,contender,rep,ops,units,wall_s,rate,unit,p50_us,p99_us,cpu_us_per_op,fe_cpu_us_per_op,error\n",
    );
    for x in &r.samples {
        let unit = x.case.workload.unit().rate_label();
        match &x.metrics {
            Some(m) => {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{},{},{:.6},{:.3},{unit},{:.3},{:.3},{:.4},{:.4},",
                    x.dir_kind.name(),
                    x.case.workload.name(),
                    x.case.queues,
                    x.case.depth,
                    x.contender.name(),
                    x.rep,
                    m.ops,
                    m.units,
                    m.wall_s,
                    m.rate,
                    m.p50_us,
                    m.p99_us,
                    m.cpu_us_per_op,
                    m.fe_cpu_us_per_op
                );
            }
            None => {
                let e = x.error.clone().unwrap_or_default().replace(['"', '\n'], " ");
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},,,,,{unit},,,,,\"{e}\"",
                    x.dir_kind.name(),
                    x.case.workload.name(),
                    x.case.queues,
                    x.case.depth,
                    x.contender.name(),
                    x.rep
                );
            }
        }
    }
    s
}

#[derive(Serialize)]
struct JsonOut<'a> {
    results: &'a Results,
    summaries: &'a [Summary],
}

/// Writes `level1.md`, `level1.json` and `level1.csv` under `out`; returns the paths.
pub fn write_all(out: &Path, r: &Results, sums: &[Summary]) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(out).ctx(|| format!("mkdir {}", out.display()))?;
    let md = out.join("level1.md");
    std::fs::write(&md, markdown(r, sums)).ctx(|| format!("writing {}", md.display()))?;
    let json = out.join("level1.json");
    let text = serde_json::to_string_pretty(&JsonOut { results: r, summaries: sums })
        .map_err(|source| Error::Json { path: json.clone(), source })?;
    std::fs::write(&json, text).ctx(|| format!("writing {}", json.display()))?;
    let csv_path = out.join("level1.csv");
    std::fs::write(&csv_path, csv(r)).ctx(|| format!("writing {}", csv_path.display()))?;
    Ok(vec![md, json, csv_path])
}

/// How the front end waits for replies, in words.
fn fe_poll_line(us: u64) -> String {
    if us == 0 {
        "waits for every reply asleep on the call eventfd (`--fe-poll-us 0`): each reply also pays for a thread \
         wake-up"
            .into()
    } else {
        format!(
            "polls the call eventfd for the daemon's signal for up to {us} µs (yielding the CPU between looks) before \
             it sleeps on it, as a KVM vCPU halt-polls for an interrupt before it sleeps (`--fe-poll-us`), and reads \
             the used ring on a signal, as a guest does; it polls in the runs where every front-end \
             thread and every daemon queue thread has a CPU of its own (q × 2 ≤ CPUs; the other runs sleep at once, \
             as KVM stops polling when another task wants the CPU)"
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::runner::{Meta, Metrics};
    use crate::workloads::Sizes;

    /// Results of two repetitions of lookup q1 d1 by every contender.
    pub(crate) fn fake_results() -> Results {
        let case = Case { workload: Workload::Lookup, queues: 1, depth: 1 };
        let mut samples = Vec::new();
        for rep in 0..2 {
            for (c, rate) in [(Contender::Avpfs, 130.0), (Contender::Virtiofsd, 100.0), (Contender::Host, 1000.0)] {
                let rate = rate + rep as f64 * 10.0;
                let metrics = Some(Metrics {
                    ops: 10,
                    units: 10,
                    wall_s: 10.0 / rate,
                    rate,
                    p50_us: 1e6 / rate,
                    p99_us: 2e6 / rate,
                    cpu_us_per_op: 5.0,
                    fe_cpu_us_per_op: 1.0,
                });
                samples.push(Sample { dir_kind: DirKind::Tmpfs, case, contender: c, rep, metrics, error: None });
            }
        }
        Results {
            meta: Meta {
                date: "today".into(),
                command_line: "avpfs-bench --quick".into(),
                mode: crate::config::Mode::Quick,
                machine: crate::runner::Machine {
                    nproc: 2,
                    cpu: "cpu".into(),
                    kernel: "6".into(),
                    mem_total: "1 kB".into(),
                    avpfs_rev: "abc".into(),
                },
                virtiofsd_version: "virtiofsd 1.14.0".into(),
                daemon_command_lines: vec!["avpfs --x".into()],
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
                reps: 2,
                file_systems: vec![(DirKind::Tmpfs, "tmpfs".into())],
                max_io: vec![],
                seconds: 1.0,
                notes: vec![],
            },
            cases: vec![case],
            contenders: vec![Contender::Avpfs, Contender::Virtiofsd, Contender::Host],
            samples,
            memory: vec![],
        }
    }

    #[test]
    fn summaries_and_ratios() {
        let r = fake_results();
        let sums = summarize(&r);
        assert_eq!(sums.len(), 3);
        let a = &sums[0];
        assert_eq!(a.contender, Contender::Avpfs);
        assert_eq!(a.rate.unwrap().median, 135.0);
        let v = a.vs_virtiofsd.unwrap();
        assert!((v.min - 140.0 / 110.0).abs() < 1e-9 && (v.max - 1.3).abs() < 1e-9);
        assert!((a.vs_host.unwrap() - 135.0 / 1005.0).abs() < 1e-9);
        assert!(a.p99_gain_vs_virtiofsd.unwrap() > 1.0);
        let md = markdown(&r, &sums);
        assert!(md.contains("| lookup | 1 | 1 | **avpfs** | 135 | ops/s | 130–140 |"), "{md}");
        assert!(md.contains("lookup ≥ 1.3x virtiofsd: tmpfs d1 lookup: 1.29x (best 1.27x) **not met**"), "{md}");
        let c = csv(&r);
        assert_eq!(c.lines().count(), 7);
        assert_eq!(group_thousands(1234567), "1 234 567");
    }
}
