//! Level 1's Markdown report: a table per share location (medians, spread,
//! ratios), the memory table, the targets checked.

use std::fmt::Write as _;

use crate::contenders::Contender;
use crate::markdown;
use crate::results::{DaemonSetup, MemorySample, Results, Row};
use crate::share::DirKind;
use crate::stats::Spread;
use crate::summary::{Ratio, Summary};
use crate::workloads::{Case, Unit, Workload};

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

/// A ratio to virtiofsd: the median of the per-repetition ratios, with
/// their range and the ratio of the best rates when there are several.
fn fmt_ratio(v: Option<Ratio>) -> String {
    match v.and_then(|v| v.paired.map(|p| (p, v.best))) {
        Some((s, Some(b))) if s.n > 1 => format!("{:.2}x ({:.2}–{:.2}; best {b:.2}x)", s.median, s.min, s.max),
        Some((s, _)) => format!("{:.2}x", s.median),
        None => "—".into(),
    }
}

/// The level-1 summaries, each with its share and case.
fn cases(sums: &[Summary]) -> impl Iterator<Item = (DirKind, Case, &Summary)> {
    sums.iter().filter_map(|x| match x.row {
        Row::Case { dir_kind, case } => Some((dir_kind, case, x)),
        Row::Guest { .. } => None,
    })
}

/// The Markdown report.
pub fn markdown(r: &Results, d: &DaemonSetup, sums: &[Summary]) -> String {
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
    s.push_str(&markdown::run_and_machine(m));
    let _ = writeln!(s, "- **Versions**: avpfs {}, {}", m.machine.avpfs_rev, m.virtiofsd_version);
    s.push_str(&markdown::daemons(m));
    let shares: Vec<String> = d.file_systems.iter().map(|(k, fs)| format!("{} ({fs})", k.name())).collect();
    let _ = writeln!(s, "- **Shares**: {}", shares.join(", "));
    let io: Vec<String> = d.max_io.iter().map(|(c, n)| format!("{} {} KiB", c.name(), n / 1024)).collect();
    let _ = writeln!(
        s,
        "- **Sizes**: tree of {} files ({} per directory); {} files per create run; {} random 4 KiB reads, and as many writes, of a {} MiB file; \
         {} MiB read and written in order; READDIRPLUS buffer {} bytes; memory probe on {} files. Largest READ/WRITE: {}. \
         Each run repeats its workload until it has measured {:.1} s.",
        d.sizes.files,
        d.sizes.per_dir,
        d.sizes.create_files,
        d.sizes.rand_ops,
        d.sizes.rand_file_bytes >> 20,
        d.sizes.seq_bytes >> 20,
        d.sizes.readdir_buf,
        d.sizes.memory_files,
        if io.is_empty() { "—".into() } else { io.join(", ") },
        d.min_time_s
    );
    let _ = writeln!(s, "- **Front end**: {}", fe_poll_line(d.fe_poll_us));
    s.push_str(&markdown::notes(m));
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
    for kind in r.dir_kinds() {
        let _ = writeln!(s, "## Share on {}\n", kind.name());
        let _ = writeln!(
            s,
            "| workload | q | d | contender | rate | unit | min–max | p50 µs | p99 µs | CPU µs/op | FE CPU µs/op | vs virtiofsd | vs host |"
        );
        let _ = writeln!(s, "|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for (_, case, x) in cases(sums).filter(|(k, _, _)| *k == kind) {
            let unit = case.workload.unit();
            let (rate, range) = match x.rate {
                Some(r) => (fmt_rate(unit, r.median), format!("{}–{}", fmt_rate(unit, r.min), fmt_rate(unit, r.max))),
                None => ("FAILED".into(), x.first_error.clone().unwrap_or_default().replace('|', "/")),
            };
            let fails =
                if x.failures > 0 && x.rate.is_some() { format!(" ({} failed)", x.failures) } else { String::new() };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                case.workload.name(),
                case.queues,
                case.depth,
                if x.contender == Contender::Avpfs { "**avpfs**".to_string() } else { x.contender.name().to_string() },
                rate,
                fails,
                unit.rate_label(),
                range,
                fmt_opt(x.p50_us, 1),
                fmt_opt(x.p99_us, 1),
                fmt_opt(x.cpu_us_per_op, 2),
                if x.contender == Contender::Host { "—".into() } else { fmt_opt(x.fe_cpu_us_per_op, 2) },
                if x.contender == Contender::Virtiofsd { "1.00x".into() } else { fmt_ratio(x.vs_virtiofsd) },
                x.vs_host.map_or_else(|| "—".into(), |v| format!("{:.2}x", v.of_medians)),
            );
        }
        let _ = writeln!(s);
    }
    s.push_str(&memory_table(r, d));
    s.push_str(&targets(r, sums));
    let _ = writeln!(
        s,
        "\nRaw numbers: `level1.json` (every run and these summaries) and `level1.csv` (one line per run). \
         Chart: `level1.svg`."
    );
    s
}

fn memory_table(r: &Results, d: &DaemonSetup) -> String {
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
    if !d.memory_daemon_args.is_empty() {
        let _ = writeln!(s, "Both daemons ran with `{}` for this probe.\n", d.memory_daemon_args);
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
        let med = |f: &dyn Fn(&MemorySample) -> f64| Spread::of(ok.iter().map(|m| f(m)));
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
    let avpfs: Vec<(DirKind, Case, &Summary)> = cases(sums)
        .filter(|(_, _, x)| x.contender == Contender::Avpfs && x.vs_virtiofsd.is_some_and(|v| v.paired.is_some()))
        .collect();
    if avpfs.is_empty() {
        return s;
    }
    let _ = writeln!(s, "## Issue 5 targets (level 1)\n");
    let mark = |ok: bool| if ok { "met" } else { "**not met**" };
    let check = |w: Workload, min: f64| -> Vec<String> {
        avpfs
            .iter()
            .filter(|(_, case, _)| case.workload == w && case.queues == 1)
            .filter_map(|(kind, case, x)| {
                let v = x.vs_virtiofsd?;
                let best = v.best.map_or_else(String::new, |b| format!(" (best {b:.2}x)"));
                let v = v.paired?.median;
                Some(format!("{} d{} {}: {v:.2}x{best} {}", kind.name(), case.depth, w.name(), mark(v >= min)))
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
        .filter(|(_, case, _)| case.workload == Workload::Seqread)
        .filter_map(|(kind, case, x)| {
            let v = x.vs_host?.of_medians;
            Some(format!("{} q{} d{}: {:.0}% {}", kind.name(), case.queues, case.depth, v * 100.0, mark(v >= 0.8)))
        })
        .collect();
    if !host.is_empty() {
        let _ = writeln!(s, "- seqread ≥ 80% of the host's pread: {}", host.join("; "));
    }
    let worse: Vec<String> = avpfs
        .iter()
        .filter(|(_, case, x)| case.queues == 1 && x.p99_gain_vs_virtiofsd.is_some_and(|g| g < 1.0))
        .map(|(kind, case, _)| format!("{} {}", kind.name(), case.label()))
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
mod tests {
    use super::*;
    use crate::results::{fixtures, Setup};
    use crate::summary::summarize;

    #[test]
    fn summaries_and_ratios() {
        let r = fixtures::level1();
        let Setup::Daemons(d) = &r.meta.setup else { unreachable!() };
        let sums = summarize(&r);
        assert_eq!(sums.len(), 3);
        let a = &sums[0];
        assert_eq!(a.contender, Contender::Avpfs);
        assert_eq!(a.rate.unwrap().median, 135.0);
        let v = a.vs_virtiofsd.unwrap().paired.unwrap();
        assert!((v.min - 140.0 / 110.0).abs() < 1e-9 && (v.max - 1.3).abs() < 1e-9);
        assert!((a.vs_host.unwrap().of_medians - 135.0 / 1005.0).abs() < 1e-9);
        assert!(a.p99_gain_vs_virtiofsd.unwrap() > 1.0);
        let md = markdown(&r, d, &sums);
        assert!(md.contains("| lookup | 1 | 1 | **avpfs** | 135 | ops/s | 130–140 |"), "{md}");
        assert!(md.contains("lookup ≥ 1.3x virtiofsd: tmpfs d1 lookup: 1.29x (best 1.27x) **not met**"), "{md}");
        assert_eq!(group_thousands(1234567), "1 234 567");
    }
}
