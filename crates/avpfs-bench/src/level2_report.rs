//! Level 2's Markdown report: per workload the median guest-side time and
//! its range for each contender, avpfs's speedup over virtiofsd and over
//! QEMU's 9p, avpfs-9p's (avpfs's 9P server over vsock) over QEMU's 9p, the
//! daemons' CPU time, the issues' targets checked.

use std::fmt::Write as _;

use crate::contenders::Contender;
use crate::guest::{GuestUnit, GuestWorkload};
use crate::markdown;
use crate::results::{GuestSetup, Results, Row};
use crate::stats::Spread;
use crate::summary::{bases, Ratio, Summary};

/// The workloads of the rows, in report order.
fn workloads(r: &Results) -> Vec<GuestWorkload> {
    r.rows
        .iter()
        .filter_map(|row| match row {
            Row::Guest { workload } => Some(*workload),
            Row::Case { .. } => None,
        })
        .collect()
}

/// The summary of workload `w` for contender `c`.
fn find(sums: &[Summary], w: GuestWorkload, c: Contender) -> Option<&Summary> {
    sums.iter().find(|x| x.row == Row::Guest { workload: w } && x.contender == c)
}

fn fmt_seconds(s: Option<Spread>) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:.3} ({:.3}–{:.3})", s.median, s.min, s.max),
        Some(s) => format!("{:.3}", s.median),
        None => "FAILED".into(),
    }
}

fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn fmt_speedup(s: Option<Ratio>) -> String {
    match s {
        Some(Ratio { of_medians, paired: Some(p), wins, sign_p, .. }) if p.n > 1 => {
            format!("{of_medians:.2}x ({:.2}–{:.2}; {wins}/{}, p {sign_p:.2})", p.min, p.max, p.n)
        }
        Some(s) => format!("{:.2}x", s.of_medians),
        None => "—".into(),
    }
}

fn contender_label(c: Contender) -> &'static str {
    match c {
        Contender::NineP => "9p (QEMU)",
        Contender::NinePMapped => "9p-mapped (QEMU)",
        _ => c.name(),
    }
}

/// The (contender, base) pairs whose time ratio the report shows, among
/// the contenders `cs` that ran: avpfs against virtiofsd and QEMU's 9p
/// servers, avpfs-9p against QEMU's 9p servers.
fn comparisons(cs: &[Contender]) -> Vec<(Contender, Contender)> {
    let guest = Row::Guest { workload: GuestWorkload::Create };
    [Contender::Avpfs, Contender::AvpfsNineP]
        .into_iter()
        .filter(|c| cs.contains(c))
        .flat_map(|c| bases(&guest, c).iter().filter(|b| cs.contains(b)).map(move |&b| (c, b)))
        .collect()
}

/// The workloads issue 24's target names as metadata workloads: those of
/// [`GuestWorkload::is_metadata`] and *smallread* (an open, a 4 KiB read and
/// a close per file).
fn issue24_metadata(w: GuestWorkload) -> bool {
    w.is_metadata() || w == GuestWorkload::Smallread
}

/// The Markdown report.
pub fn markdown(r: &Results, g: &GuestSetup, sums: &[Summary]) -> String {
    let m = &r.meta;
    let mut s = String::new();
    let _ = writeln!(s, "# avpfs benchmark, level 2: a real guest\n");
    let _ = writeln!(
        s,
        "Every repetition boots one guest per contender (their order rotates from one repetition to the next) \
         with the same kernel, initramfs, QEMU flags, vCPUs and memory, on a fresh tmpfs share served by a fresh \
         avpfs or virtiofsd (the same `--cache` mode for both, see the notes) or by QEMU's own 9p server. In the guest a \
         static runner (`crates/avpfs-bench/examples/guest-workload.rs`) times each workload with CLOCK_MONOTONIC; \
         set-up and clean-up are not timed.\n"
    );
    s.push_str(&markdown::run_and_machine(m));
    let _ = writeln!(
        s,
        "- **Versions**: avpfs {}, {}, {}, guest kernel {} ({})",
        m.machine.avpfs_rev, m.virtiofsd_version, g.qemu_version, g.guest_kernel, g.guest_kernel_package
    );
    let _ = writeln!(s, "- **Guest**: {} vCPUs, {} memory; QEMU `{}`", g.guest_smp, g.guest_mem, g.qemu_flags);
    for (c, d) in &g.devices {
        let _ = writeln!(s, "- **Share, {}**: `{d}`", contender_label(*c));
    }
    s.push_str(&markdown::daemons(m));
    for (c, mount) in &g.mounts {
        let cap = if *c == Contender::AvpfsNineP {
            " (the 6.1 kernel caps msize at 65536 for trans=fd; QEMU's virtio 9p mounts get 524288)"
        } else {
            ""
        };
        let _ = writeln!(s, "- **Guest mount, {}**: `{mount}`{cap}", contender_label(*c));
    }
    let _ = writeln!(
        s,
        "- **Tarball**: {:.1} MB, {} entries, of {}",
        g.tarball.bytes as f64 / 1e6,
        g.tarball.entries,
        g.tarball.sources.iter().map(|x| format!("`{x}`")).collect::<Vec<_>>().join(", ")
    );
    s.push_str(&markdown::notes(m));
    let _ = writeln!(s, "\nWorkloads, in the order each guest runs them:\n");
    for w in workloads(r) {
        let _ = writeln!(s, "- *{}*: {}", w.name(), w.describe(&g.sizes));
    }
    let _ = writeln!(s, "\nHow to read the table:\n");
    let _ = writeln!(
        s,
        "- *seconds*: guest-side time, median over the repetitions, then the min–max range; lower is better.\n\
         - *rate*: from the median time; ops/s (files, system calls, tar entries) or MB/s (10^6 bytes).\n\
         - *avpfs vs X* (and *avpfs-9p vs X*): X's median time / avpfs's median time, a speedup factor (above \
         1: avpfs is faster), then the range of the same ratio taken repetition by repetition, the repetitions in \
         which avpfs was faster, and the two-sided sign test of that count (p below 0.05: the difference is \
         unlikely to be noise; with 5 repetitions p cannot go below 0.06).\n\
         - The machine is shared and QEMU emulates the guest's CPU (TCG): trust ratios with a narrow range more \
         than absolute figures.\n"
    );
    let cs = &r.contenders;
    let _ = write!(s, "| workload |");
    for c in cs {
        let _ = write!(s, " {} seconds |", contender_label(*c));
    }
    for c in cs {
        let _ = write!(s, " {} rate |", contender_label(*c));
    }
    let _ = write!(s, " unit |");
    let pairs = comparisons(cs);
    for (c, b) in &pairs {
        let _ = write!(s, " {} vs {} |", contender_label(*c), contender_label(*b));
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---:|".repeat(2 * cs.len() + 1 + pairs.len()));
    for w in workloads(r) {
        let sum = |c: Contender| find(sums, w, c);
        let _ = write!(s, "| {} |", w.name());
        for &c in cs {
            let cell = sum(c).map_or_else(|| "—".into(), |x| fmt_seconds(x.seconds));
            let _ = write!(s, " {cell} |");
        }
        for &c in cs {
            // The rate of the median time (every repetition does the same ops and bytes).
            let figures = r
                .samples
                .iter()
                .find(|x| x.row == Row::Guest { workload: w } && x.contender == c)
                .and_then(|x| x.metrics.as_ref());
            let cell = match (sum(c).and_then(|x| x.seconds), figures) {
                (Some(t), Some(f)) => {
                    let n = if w.unit() == GuestUnit::Bytes { f.units as f64 / 1e6 } else { f.ops as f64 };
                    fmt_rate(n / t.median.max(1e-9))
                }
                _ => "—".into(),
            };
            let _ = write!(s, " {cell} |");
        }
        let _ = write!(s, " {} |", w.unit().rate_label());
        for (c, b) in &pairs {
            let v = sum(*c).and_then(|a| a.vs(*b));
            let _ = write!(s, " {} |", fmt_speedup(v));
        }
        let _ = writeln!(s);
    }
    let failed: Vec<&Summary> = sums.iter().filter(|x| x.failures > 0).collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "\n## Failures\n");
        for x in failed {
            let _ = writeln!(
                s,
                "- {} / {}: {} of {} repetitions gave no figure: {}",
                x.row.workload_name(),
                contender_label(x.contender),
                x.failures,
                m.reps,
                x.first_error.clone().unwrap_or_default()
            );
        }
    }
    s.push_str(&ninep_table(r, sums));
    s.push_str(&daemon_cpu_table(r, sums));
    s.push_str(&targets(sums));
    let _ = writeln!(
        s,
        "\nRaw numbers: `level2.json` (every boot, every workload and these summaries) and `level2.csv` (one line \
         per workload per boot). Chart: `level2.svg`."
    );
    s
}

/// The ratio to 9p that contender `c` (avpfs or avpfs-9p) would reach on
/// workload `w` if its daemon (and relay) used no CPU (see
/// [`Summary::seconds_without_daemon`]).
fn vs_9p_without_daemon(sums: &[Summary], w: GuestWorkload, c: Contender) -> Option<f64> {
    Some(find(sums, w, Contender::NineP)?.seconds?.median / find(sums, w, c)?.seconds_without_daemon()?)
}

/// A median time and the best (least) one, in seconds.
fn fmt_median_best(s: Option<&Summary>) -> String {
    match s.and_then(|x| x.seconds) {
        Some(t) => format!("{:.3} | {:.3}", t.median, t.min),
        None => "— | —".into(),
    }
}

/// A ratio as median and best, then the repetitions won and the sign test.
fn fmt_median_best_ratio(v: Option<Ratio>) -> String {
    match v {
        Some(v) => {
            let best = v.best.map_or_else(|| "—".into(), |b| format!("{b:.2}x"));
            let n = v.paired.map_or(0, |p| p.n);
            format!("{:.2}x | {best} | {}/{n}, p {:.2}", v.of_medians, v.wins, v.sign_p)
        }
        None => "— | — | —".into(),
    }
}

/// avpfs-9p against QEMU's 9p servers, median and best (issue 24), with the
/// issue's target checked; empty unless avpfs-9p and one of them ran.
fn ninep_table(r: &Results, sums: &[Summary]) -> String {
    let mut s = String::new();
    let cs = &r.contenders;
    let bases: Vec<Contender> =
        [Contender::NineP, Contender::NinePMapped].into_iter().filter(|b| cs.contains(b)).collect();
    if !cs.contains(&Contender::AvpfsNineP) || bases.is_empty() {
        return s;
    }
    let _ = writeln!(s, "\n## avpfs-9p (avpfs's 9P server over vsock) against QEMU's 9p\n");
    let _ = writeln!(
        s,
        "Guest-side seconds, the median over the repetitions and the best (least: outside load only ever slows \
         a run down); *vs X*: X's time / avpfs-9p's time (above 1: avpfs-9p is faster), of the medians and of the \
         best times, then the repetitions avpfs-9p won and the two-sided sign test. avpfs-9p's requests travel \
         guest → virtio-vsock → vhost-device-vsock → unix socket → avpfs and back; QEMU's 9p serves them inside \
         QEMU, straight from its virtqueue.\n"
    );
    let _ = write!(s, "| workload | avpfs-9p median | avpfs-9p best |");
    for b in &bases {
        let l = contender_label(*b);
        let _ = write!(s, " {l} median | {l} best |");
    }
    for b in &bases {
        let l = contender_label(*b);
        let _ = write!(s, " vs {l}, median | vs {l}, best | won |");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|---:|---:|{}", "---:|---:|".repeat(bases.len()) + &"---:|---:|---:|".repeat(bases.len()));
    for w in workloads(r) {
        let a = find(sums, w, Contender::AvpfsNineP);
        let _ = write!(s, "| {} | {} |", w.name(), fmt_median_best(a));
        for &b in &bases {
            let _ = write!(s, " {} |", fmt_median_best(find(sums, w, b)));
        }
        for &b in &bases {
            let _ = write!(s, " {} |", fmt_median_best_ratio(a.and_then(|a| a.vs(b))));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "\nIssue 24's target, every metadata workload (create, stat, readdir, unlink, tar, smallread) faster than QEMU's 9p (median ratio above 1):\n");
    for &b in &bases {
        let mut won = Vec::new();
        let mut lost = Vec::new();
        for w in workloads(r).into_iter().filter(|w| issue24_metadata(*w)) {
            let Some(v) = find(sums, w, Contender::AvpfsNineP).and_then(|a| a.vs(b)) else { continue };
            let best = v.best.map_or_else(String::new, |x| format!(", best {x:.2}x"));
            let item = format!("{} {:.2}x{best}", w.name(), v.of_medians);
            if v.of_medians > 1.0 {
                won.push(item);
            } else {
                let floor = if b == Contender::NineP {
                    vs_9p_without_daemon(sums, w, Contender::AvpfsNineP)
                        .map_or_else(String::new, |x| format!(", with daemon and relay of no cost at most {x:.2}x"))
                } else {
                    String::new()
                };
                lost.push(format!("{item} ({}/{} won, p {:.2}{floor})", v.wins, v.wins + v.losses, v.sign_p));
            }
        }
        if won.is_empty() && lost.is_empty() {
            continue;
        }
        let verdict =
            if lost.is_empty() { "met".to_string() } else { format!("**not met**: slower on {}", lost.join("; ")) };
        let _ = write!(s, "- Against {}: {verdict}", contender_label(b));
        if !won.is_empty() {
            let _ = write!(s, "; faster on {}", won.join(", "));
        }
        let _ = writeln!(s);
    }
    s
}

/// The daemons' CPU time per workload (empty when no daemon's was sampled).
fn daemon_cpu_table(r: &Results, sums: &[Summary]) -> String {
    let mut s = String::new();
    let daemons: Vec<Contender> = r.contenders.iter().copied().filter(|c| c.is_daemon()).collect();
    if !sums.iter().any(|x| x.cpu_s.is_some()) || daemons.is_empty() {
        return s;
    }
    let nine_p_of: Vec<Contender> = if r.contenders.contains(&Contender::NineP) {
        daemons.iter().copied().filter(|c| matches!(c, Contender::Avpfs | Contender::AvpfsNineP)).collect()
    } else {
        Vec::new()
    };
    let relay = sums.iter().any(|x| x.contender == Contender::AvpfsNineP && x.relay_cpu_s.is_some());
    let _ = writeln!(
        s,
        "
## The daemons' CPU time
"
    );
    let _ = writeln!(
        s,
        "CPU time of the daemon's process (all threads, from /proc) between the runner's start line and its \
         result line, median over the repetitions; *per op*: divided by the workload's operations. The \
         requests of a workload are served one after another, so *share* (CPU time / guest time) bounds what \
         any saving in the daemon's own work can gain (the time an idle host CPU takes to wake up for a kick is \
         not in it), and the last column is the ratio to 9p that avpfs would reach if its \
         daemon used no CPU at all (9p's time / (avpfs's time − avpfs's CPU time)): the rest of the guest's time \
         is the guest kernel, QEMU and the notifications between them.{}\n",
        if relay {
            " For avpfs-9p, *vsock relay* is vhost-device-vsock's process (which run-guest.sh starts per guest), \
             part of that contender's host cost; its last column takes both the daemon's and the relay's CPU time \
             out."
        } else {
            ""
        }
    );
    let _ = write!(s, "| workload |");
    for c in &daemons {
        let l = contender_label(*c);
        let _ = write!(s, " {l} CPU s | {l} µs/op | {l} share |");
        if *c == Contender::AvpfsNineP && relay {
            let _ = write!(s, " vsock relay CPU s | vsock relay µs/op |");
        }
    }
    for c in &nine_p_of {
        let _ = write!(s, " {} vs 9p with a daemon of no cost |", contender_label(*c));
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---:|".repeat(3 * daemons.len() + 2 * usize::from(relay) + nine_p_of.len()));
    for w in workloads(r) {
        let _ = write!(s, "| {} |", w.name());
        for &c in &daemons {
            match find(sums, w, c).filter(|x| x.cpu_s.is_some()) {
                Some(x) => {
                    let cpu = x.cpu_s.expect("filtered");
                    let share = x
                        .seconds
                        .map_or_else(|| "—".into(), |t| format!("{:.0}%", 100.0 * cpu.median / t.median.max(1e-9)));
                    let per_op = x.cpu_us_per_op.map_or_else(|| "—".into(), |v| format!("{v:.1}"));
                    let _ = write!(s, " {:.3} | {per_op} | {share} |", cpu.median);
                }
                None => {
                    let _ = write!(s, " — | — | — |");
                }
            }
            if c == Contender::AvpfsNineP && relay {
                match find(sums, w, c).and_then(|x| Some((x.relay_cpu_s?, x.relay_cpu_us_per_op))) {
                    Some((cpu, per_op)) => {
                        let per_op = per_op.map_or_else(|| "—".into(), |v| format!("{v:.1}"));
                        let _ = write!(s, " {:.3} | {per_op} |", cpu.median);
                    }
                    None => {
                        let _ = write!(s, " — | — |");
                    }
                }
            }
        }
        for &c in &nine_p_of {
            let cell = vs_9p_without_daemon(sums, w, c).map_or_else(|| "—".into(), |v| format!("{v:.2}x"));
            let _ = write!(s, " {cell} |");
        }
        let _ = writeln!(s);
    }
    s
}

/// The issue's level 2 targets checked against `sums` (empty when avpfs or
/// both others are missing).
fn targets(sums: &[Summary]) -> String {
    let avpfs: Vec<&Summary> = sums.iter().filter(|x| x.contender == Contender::Avpfs).collect();
    let mut s = String::new();
    if avpfs.iter().all(|x| x.vs_virtiofsd.is_none() && x.vs_9p.is_none()) {
        return s;
    }
    let _ = writeln!(s, "\n## Issue 5 targets (level 2)\n");
    let with = |base: Contender| -> Vec<(GuestWorkload, Ratio)> {
        avpfs
            .iter()
            .filter_map(|x| match (x.row, x.vs(base)) {
                (Row::Guest { workload }, Some(v)) => Some((workload, v)),
                _ => None,
            })
            .collect()
    };
    let vs_v = with(Contender::Virtiofsd);
    if !vs_v.is_empty() {
        let slower: Vec<String> = vs_v
            .iter()
            .filter(|(_, v)| v.clearly_worse())
            .map(|(w, v)| format!("{} {:.2}x", w.name(), v.of_medians))
            .collect();
        let below: Vec<String> = vs_v
            .iter()
            .filter(|(_, v)| v.of_medians < 1.0 && !v.clearly_worse())
            .map(|(w, v)| format!("{} {:.2}x (p {:.2})", w.name(), v.of_medians, v.sign_p))
            .collect();
        let verdict = if slower.is_empty() {
            "met: slower beyond noise on none".to_string()
        } else {
            format!("**not met**: slower beyond noise on {}", slower.join(", "))
        };
        let _ = write!(s, "- Not slower than virtiofsd on any workload: {verdict}");
        if !below.is_empty() {
            let _ = write!(s, "; median below 1 within noise: {}", below.join(", "));
        }
        let _ = writeln!(s);
    }
    let vs_9p: Vec<String> = with(Contender::NineP)
        .iter()
        .filter(|(w, _)| w.is_metadata() || w.is_write())
        .map(|(w, v)| {
            if v.of_medians >= 3.0 {
                return format!("{} {:.2}x met", w.name(), v.of_medians);
            }
            let floor = vs_9p_without_daemon(sums, *w, Contender::Avpfs)
                .map_or_else(String::new, |b| format!(" (with a daemon of no cost at most {b:.2}x)"));
            format!("{} {:.2}x **not met**{floor}", w.name(), v.of_medians)
        })
        .collect();
    if !vs_9p.is_empty() {
        let _ = writeln!(s, "- At least 3x QEMU 9p on metadata and write workloads: {}", vs_9p.join("; "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{fixtures, Sample, Setup};
    use crate::summary::summarize;

    fn guest(r: &Results) -> &GuestSetup {
        let Setup::Guest(g) = &r.meta.setup else { unreachable!() };
        g
    }

    #[test]
    fn slower_is_reported_only_beyond_noise() {
        let mut r = fixtures::level2();
        // Six repetitions of create with avpfs slower in all of them, and
        // seqread slower in only four of the six.
        r.meta.reps = 6;
        r.rows = vec![Row::Guest { workload: GuestWorkload::Create }, Row::Guest { workload: GuestWorkload::Seqread }];
        r.samples.clear();
        for rep in 0..6 {
            for w in [GuestWorkload::Create, GuestWorkload::Seqread] {
                for (c, t) in [(Contender::Avpfs, 2.0), (Contender::Virtiofsd, 1.0), (Contender::NineP, 9.0)] {
                    let t = if w == GuestWorkload::Seqread && c == Contender::Avpfs && rep >= 4 { 0.5 } else { t };
                    let metrics = Some(fixtures::guest_metrics(w, t, None));
                    r.samples.push(Sample { row: Row::Guest { workload: w }, contender: c, rep, metrics, error: None });
                }
            }
        }
        let sums = summarize(&r);
        let create = find(&sums, GuestWorkload::Create, Contender::Avpfs);
        let v = create.unwrap().vs_virtiofsd.unwrap();
        assert_eq!((v.wins, v.losses), (0, 6));
        assert!(v.clearly_worse());
        let md = markdown(&r, guest(&r), &sums);
        assert!(
            md.contains(
                "**not met**: slower beyond noise on create 0.50x; median below 1 within noise: seqread 0.50x (p 0.69)"
            ),
            "{md}"
        );
        assert!(md.contains("create 4.50x met"), "{md}");
    }

    #[test]
    fn the_daemon_cpu_table_and_the_floor_of_a_missed_9p_target() {
        let mut r = fixtures::level2();
        // 9p takes 2.0 s on create: 2.0 / 1.1 = 1.82x, short of 3x; taking
        // avpfs's 0.25 s of daemon CPU out leaves 2.0 / 0.85 = 2.35x.
        let create = Row::Guest { workload: GuestWorkload::Create };
        for x in r.samples.iter_mut().filter(|x| x.contender == Contender::NineP && x.row == create) {
            x.metrics = Some(fixtures::guest_metrics(GuestWorkload::Create, 2.0, None));
        }
        let sums = summarize(&r);
        let md = markdown(&r, guest(&r), &sums);
        assert!(md.contains("create 1.82x **not met** (with a daemon of no cost at most 2.35x)"), "{md}");
        assert!(md.contains("| create | 0.250 | 2500.0 | 23% | 0.250 | 2500.0 | 16% | 2.35x |"), "{md}");
        assert!(md.contains("| tar | — | — | — | — | — | — | — |"), "{md}");
        // No samples, no table.
        for m in r.samples.iter_mut().filter_map(|x| x.metrics.as_mut()) {
            m.cpu_s = None;
        }
        let sums = summarize(&r);
        assert!(!markdown(&r, guest(&r), &sums).contains("The daemons' CPU time"));
    }

    #[test]
    fn speedups_tables_and_files() {
        let r = fixtures::level2();
        let sums = summarize(&r);
        let a = find(&sums, GuestWorkload::Create, Contender::Avpfs).unwrap();
        assert!((a.vs_virtiofsd.unwrap().of_medians - 1.6 / 1.1).abs() < 1e-9);
        assert!((a.vs_9p.unwrap().of_medians - 4.1 / 1.1).abs() < 1e-9);
        assert_eq!(a.vs_9p.unwrap().paired.unwrap().n, 3);
        let md = markdown(&r, guest(&r), &sums);
        assert!(
            md.contains("| create | 1.100 (1.000–1.200) | 1.600 (1.500–1.700) | 4.100 (4.000–4.200) | 90.9 |"),
            "{md}"
        );
        assert!(md.contains("| 1.45x (1.42–1.50; 3/3, p 0.25) | 3.73x (3.50–4.00; 3/3, p 0.25) |"), "{md}");
        assert!(md.contains("- Not slower than virtiofsd on any workload: met: slower beyond noise on none\n"), "{md}");
        assert!(md.contains("create 3.73x met"), "{md}");
        assert!(md.contains("| tar | — | — | FAILED | — | — | — | ops/s | — | — |"), "{md}");
        assert!(md.contains("- tar / 9p (QEMU): 1 of 3 repetitions gave no figure: boom"), "{md}");
    }

    /// The level-2 fixture with avpfs-9p (1.0 s on create, 3.0 s on
    /// seqread, a daemon of 0.2 s and a relay of 0.3 s) and 9p-mapped
    /// (1.2 s + 0.1 s per repetition) added.
    fn with_9p_contenders() -> Results {
        let mut r = fixtures::level2();
        r.contenders = vec![Contender::AvpfsNineP, Contender::NineP, Contender::NinePMapped, Contender::Avpfs];
        r.samples.retain(|x| x.contender != Contender::Virtiofsd);
        for rep in 0..3 {
            for w in [GuestWorkload::Create, GuestWorkload::Seqread] {
                let t = if w == GuestWorkload::Create { 1.0 } else { 3.0 };
                let mut m = fixtures::guest_metrics(w, t + rep as f64 * 0.1, Some(0.2));
                m.relay_cpu_s = Some(0.3);
                let row = Row::Guest { workload: w };
                r.samples.push(Sample { row, contender: Contender::AvpfsNineP, rep, metrics: Some(m), error: None });
                let metrics = Some(fixtures::guest_metrics(w, 1.2 + rep as f64 * 0.1, None));
                r.samples.push(Sample { row, contender: Contender::NinePMapped, rep, metrics, error: None });
            }
        }
        r
    }

    #[test]
    fn avpfs_9p_is_compared_with_both_9p_servers_median_and_best() {
        let r = with_9p_contenders();
        assert_eq!(
            comparisons(&r.contenders),
            vec![
                (Contender::Avpfs, Contender::NineP),
                (Contender::Avpfs, Contender::NinePMapped),
                (Contender::AvpfsNineP, Contender::NineP),
                (Contender::AvpfsNineP, Contender::NinePMapped),
            ]
        );
        let sums = summarize(&r);
        let a = find(&sums, GuestWorkload::Create, Contender::AvpfsNineP).unwrap();
        // 9p: 4.0, 4.1, 4.2 against 1.0, 1.1, 1.2.
        assert!((a.vs_9p.unwrap().of_medians - 4.1 / 1.1).abs() < 1e-9);
        assert!((a.vs_9p.unwrap().best.unwrap() - 4.0).abs() < 1e-9);
        assert!((a.vs_9p_mapped.unwrap().of_medians - 1.3 / 1.1).abs() < 1e-9);
        assert!(a.vs_virtiofsd.is_none());
        let md = markdown(&r, guest(&r), &sums);
        // The main table has a column per comparison.
        assert!(
            md.contains(" avpfs vs 9p-mapped (QEMU) | avpfs-9p vs 9p (QEMU) | avpfs-9p vs 9p-mapped (QEMU) |"),
            "{md}"
        );
        assert!(md.contains("## avpfs-9p (avpfs's 9P server over vsock) against QEMU's 9p"), "{md}");
        assert!(
            md.contains("| create | 1.100 | 1.000 | 4.100 | 4.000 | 1.300 | 1.200 | 3.73x | 4.00x | 3/3, p 0.25 | 1.18x | 1.20x | 3/3, p 0.25 |"),
            "{md}"
        );
        // seqread is no metadata workload: it is in the table, not in the target.
        assert!(md.contains("| seqread | 3.100 | 3.000 | 4.100 | 4.000 | 1.300 | 1.200 | 1.32x | 1.33x | 3/3, p 0.25 | 0.42x | 0.40x | 0/3, p 0.25 |"), "{md}");
        assert!(md.contains("- Against 9p (QEMU): met; faster on create 3.73x, best 4.00x\n"), "{md}");
        assert!(md.contains("- Against 9p-mapped (QEMU): met; faster on create 1.18x, best 1.20x\n"), "{md}");
        // The relay's CPU time has its columns, and comes out of the floor:
        // 4.1 / (1.1 - 0.2 - 0.3) = 6.83x.
        assert!(
            md.contains(" avpfs-9p CPU s | avpfs-9p µs/op | avpfs-9p share | vsock relay CPU s | vsock relay µs/op |"),
            "{md}"
        );
        assert!(
            md.contains("| create | 0.200 | 2000.0 | 18% | 0.300 | 3000.0 | 0.250 | 2500.0 | 23% | 6.83x | 4.82x |"),
            "{md}"
        );
        assert!(md.contains("msize=65536") || !md.contains("Guest mount, avpfs-9p"));
    }

    #[test]
    fn a_slower_avpfs_9p_misses_the_issue_24_target() {
        let mut r = with_9p_contenders();
        let create = Row::Guest { workload: GuestWorkload::Create };
        for x in r.samples.iter_mut().filter(|x| x.contender == Contender::AvpfsNineP && x.row == create) {
            let m = x.metrics.as_mut().unwrap();
            m.wall_s += 4.0;
        }
        r.meta.setup = {
            let Setup::Guest(mut g) = r.meta.setup.clone() else { unreachable!() };
            g.mounts = vec![(Contender::AvpfsNineP, "vsock:2:564 /mnt 9p rw,msize=65536,trans=fd 0 0".into())];
            Setup::Guest(g)
        };
        let sums = summarize(&r);
        let md = markdown(&r, guest(&r), &sums);
        // 4.1 / 5.1 = 0.80x; without 0.5 s of daemon and relay 4.1 / 4.6 = 0.89x.
        assert!(
            md.contains(
                "- Against 9p (QEMU): **not met**: slower on create 0.80x, best 0.80x (0/3 won, p 0.25, with daemon \
                 and relay of no cost at most 0.89x)\n"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "- Against 9p-mapped (QEMU): **not met**: slower on create 0.25x, best 0.24x (0/3 won, p 0.25)\n"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "- **Guest mount, avpfs-9p**: `vsock:2:564 /mnt 9p rw,msize=65536,trans=fd 0 0` (the 6.1 kernel caps \
                 msize at 65536 for trans=fd"
            ),
            "{md}"
        );
    }
}
