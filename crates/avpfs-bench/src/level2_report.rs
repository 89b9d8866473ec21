//! Level 2's results as a reader wants them: per workload the median
//! guest-side time and its range for each contender, avpfs's speedup over
//! virtiofsd and over QEMU's 9p, as Markdown, SVG, JSON and CSV.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;

use crate::contenders::Contender;
use crate::error::{Error, IoContext};
use crate::guest::{GuestUnit, GuestWorkload};
use crate::level2::{GuestSample, Results2};
use crate::report::run_line;
use crate::stats::Spread;

/// avpfs's speedup over another contender on one workload: its time / avpfs's time.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Speedup {
    /// The other's median time / avpfs's median time (above 1: avpfs is faster).
    pub of_medians: f64,
    /// The same ratio repetition by repetition (the boots of one repetition ran back to back).
    pub paired: Option<Spread>,
    /// Repetitions in which avpfs took less time than the other.
    pub wins: usize,
    /// Repetitions in which avpfs took more time.
    pub losses: usize,
    /// The two-sided sign test of `wins` against `losses`
    /// ([`crate::stats::sign_test`]): below 0.05, the difference is unlikely
    /// to be the machine's noise.
    pub sign_p: f64,
}

impl Speedup {
    /// Whether avpfs is slower, and not by chance (sign test below 0.05).
    pub fn clearly_slower(&self) -> bool {
        self.of_medians < 1.0 && self.losses > self.wins && self.sign_p < 0.05
    }
}

/// One workload for one contender over the repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Summary2 {
    /// The workload.
    pub workload: GuestWorkload,
    /// The contender.
    pub contender: Contender,
    /// Guest-side seconds.
    pub seconds: Option<Spread>,
    /// Rate (ops/s or MB/s).
    pub rate: Option<Spread>,
    /// Boots that gave no figure.
    pub failures: usize,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// avpfs over virtiofsd (avpfs's summaries only).
    pub vs_virtiofsd: Option<Speedup>,
    /// avpfs over QEMU's 9p (avpfs's summaries only).
    pub vs_9p: Option<Speedup>,
    /// CPU seconds the daemon's process used during the workload (the
    /// daemons only).
    pub daemon_cpu: Option<Spread>,
}

impl Summary2 {
    /// The daemon's median CPU time per operation, µs.
    fn cpu_us_per_op(&self, ops: u64) -> Option<f64> {
        Some(self.daemon_cpu?.median * 1e6 / ops.max(1) as f64)
    }

    /// The median guest time less the daemon's median CPU time: a floor for
    /// what a daemon that used no CPU at all could reach on this guest (the
    /// requests of one workload are served one after another, so the daemon's
    /// CPU time is at most the part of the guest's wait it accounts for).
    fn seconds_without_daemon(&self) -> Option<f64> {
        let t = self.seconds?.median;
        Some((t - self.daemon_cpu?.median).max(1e-9))
    }
}

fn samples_of(r: &Results2, w: GuestWorkload, c: Contender) -> impl Iterator<Item = &GuestSample> {
    r.samples.iter().filter(move |s| s.workload == w && s.contender == c)
}

fn speedup(r: &Results2, w: GuestWorkload, base: Contender) -> Option<Speedup> {
    let a = Spread::of(samples_of(r, w, Contender::Avpfs).filter_map(GuestSample::seconds))?;
    let b = Spread::of(samples_of(r, w, base).filter_map(GuestSample::seconds))?;
    if a.median <= 0.0 {
        return None;
    }
    let time = |c: Contender, rep: usize| samples_of(r, w, c).find(|s| s.rep == rep).and_then(GuestSample::seconds);
    let ratios: Vec<f64> = (0..r.meta.reps)
        .filter_map(|rep| match (time(Contender::Avpfs, rep), time(base, rep)) {
            (Some(a), Some(b)) if a > 0.0 => Some(b / a),
            _ => None,
        })
        .collect();
    let wins = ratios.iter().filter(|&&x| x > 1.0).count();
    let losses = ratios.iter().filter(|&&x| x < 1.0).count();
    Some(Speedup {
        of_medians: b.median / a.median,
        paired: Spread::of(ratios),
        wins,
        losses,
        sign_p: crate::stats::sign_test(wins, losses),
    })
}

/// Summaries of every (workload, contender), in report order.
pub fn summarize(r: &Results2) -> Vec<Summary2> {
    let mut out = Vec::new();
    for &w in &r.workloads {
        for &c in &r.contenders {
            let runs: Vec<&GuestSample> = samples_of(r, w, c).collect();
            if runs.is_empty() {
                continue;
            }
            let avpfs = c == Contender::Avpfs;
            out.push(Summary2 {
                workload: w,
                contender: c,
                seconds: Spread::of(runs.iter().filter_map(|s| s.seconds())),
                rate: Spread::of(runs.iter().filter_map(|s| s.rate())),
                failures: runs.iter().filter(|s| s.line.is_none()).count(),
                first_error: runs.iter().find_map(|s| s.error.clone()),
                vs_virtiofsd: if avpfs { speedup(r, w, Contender::Virtiofsd) } else { None },
                vs_9p: if avpfs { speedup(r, w, Contender::NineP) } else { None },
                daemon_cpu: Spread::of(runs.iter().filter_map(|s| s.daemon_cpu_seconds)),
            });
        }
    }
    out
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

fn fmt_speedup(s: Option<Speedup>) -> String {
    match s {
        Some(Speedup { of_medians, paired: Some(p), wins, sign_p, .. }) if p.n > 1 => {
            format!("{of_medians:.2}x ({:.2}–{:.2}; {wins}/{}, p {sign_p:.2})", p.min, p.max, p.n)
        }
        Some(s) => format!("{:.2}x", s.of_medians),
        None => "—".into(),
    }
}

fn contender_label(c: Contender) -> &'static str {
    match c {
        Contender::NineP => "9p (QEMU)",
        _ => c.name(),
    }
}

/// The Markdown report.
pub fn markdown(r: &Results2, sums: &[Summary2]) -> String {
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
    let _ = writeln!(s, "{}", run_line(&m.date, &m.command_line, m.mode, m.reps, m.seconds));
    let _ = writeln!(s, "{}", m.machine.markdown_line());
    let _ = writeln!(
        s,
        "- **Versions**: avpfs {}, {}, {}, guest kernel {} ({})",
        m.machine.avpfs_rev, m.virtiofsd_version, m.qemu_version, m.guest_kernel, m.guest_kernel_package
    );
    let _ = writeln!(s, "- **Guest**: {} vCPUs, {} memory; QEMU `{}`", m.guest_smp, m.guest_mem, m.qemu_flags);
    for (c, d) in &m.devices {
        let _ = writeln!(s, "- **Share, {}**: `{d}`", contender_label(*c));
    }
    for cl in &m.daemon_command_lines {
        let _ = writeln!(s, "- **Daemon**: `{cl}`");
    }
    for (c, mount) in &m.mounts {
        let _ = writeln!(s, "- **Guest mount, {}**: `{mount}`", contender_label(*c));
    }
    let _ = writeln!(
        s,
        "- **Tarball**: {:.1} MB, {} entries, of {}",
        m.tarball.bytes as f64 / 1e6,
        m.tarball.entries,
        m.tarball.sources.iter().map(|x| format!("`{x}`")).collect::<Vec<_>>().join(", ")
    );
    for n in &m.notes {
        let _ = writeln!(s, "- **Note**: {n}");
    }
    let _ = writeln!(s, "\nWorkloads, in the order each guest runs them:\n");
    for &w in &r.workloads {
        let _ = writeln!(s, "- *{}*: {}", w.name(), w.describe(&m.sizes));
    }
    let _ = writeln!(s, "\nHow to read the table:\n");
    let _ = writeln!(
        s,
        "- *seconds*: guest-side time, median over the repetitions, then the min–max range; lower is better.\n\
         - *rate*: from the median time; ops/s (files, system calls, tar entries) or MB/s (10^6 bytes).\n\
         - *avpfs vs X*: X's median time / avpfs's median time, a speedup factor (above 1: avpfs is faster), \
         then the range of the same ratio taken repetition by repetition, the repetitions in which avpfs was \
         faster, and the two-sided sign test of that count (p below 0.05: the difference is unlikely to be noise; \
         with 5 repetitions p cannot go below 0.06).\n\
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
    let bases: Vec<Contender> = if cs.contains(&Contender::Avpfs) {
        [Contender::Virtiofsd, Contender::NineP].into_iter().filter(|b| cs.contains(b)).collect()
    } else {
        Vec::new()
    };
    for b in &bases {
        let _ = write!(s, " avpfs vs {} |", contender_label(*b));
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---:|".repeat(2 * cs.len() + 1 + bases.len()));
    for &w in &r.workloads {
        let find = |c: Contender| sums.iter().find(|x| x.workload == w && x.contender == c);
        let _ = write!(s, "| {} |", w.name());
        for &c in cs {
            let cell = find(c).map_or_else(|| "—".into(), |x| fmt_seconds(x.seconds));
            let _ = write!(s, " {cell} |");
        }
        for &c in cs {
            // The rate of the median time (every repetition does the same ops and bytes).
            let units = r.samples.iter().find(|g| g.workload == w && g.contender == c).and_then(|g| g.line.as_ref());
            let cell = match (find(c).and_then(|x| x.seconds), units) {
                (Some(t), Some(l)) => {
                    let n = if w.unit() == GuestUnit::Bytes { l.bytes as f64 / 1e6 } else { l.ops as f64 };
                    fmt_rate(n / t.median.max(1e-9))
                }
                _ => "—".into(),
            };
            let _ = write!(s, " {cell} |");
        }
        let _ = write!(s, " {} |", w.unit().rate_label());
        let a = find(Contender::Avpfs);
        for b in &bases {
            let v = a.and_then(|a| if *b == Contender::Virtiofsd { a.vs_virtiofsd } else { a.vs_9p });
            let _ = write!(s, " {} |", fmt_speedup(v));
        }
        let _ = writeln!(s);
    }
    let failed: Vec<&Summary2> = sums.iter().filter(|x| x.failures > 0).collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "\n## Failures\n");
        for x in failed {
            let _ = writeln!(
                s,
                "- {} / {}: {} of {} repetitions gave no figure: {}",
                x.workload.name(),
                contender_label(x.contender),
                x.failures,
                m.reps,
                x.first_error.clone().unwrap_or_default()
            );
        }
    }
    s.push_str(&daemon_cpu_table(r, sums));
    s.push_str(&targets(sums));
    let _ = writeln!(
        s,
        "\nRaw numbers: `level2.json` (every boot, every workload and these summaries) and `level2.csv` (one line \
         per workload per boot). Chart: `level2.svg`."
    );
    s
}

/// The ratio to 9p that avpfs would reach on workload `w` if its daemon
/// used no CPU (see [`Summary2::seconds_without_daemon`]).
fn vs_9p_without_daemon(sums: &[Summary2], w: GuestWorkload) -> Option<f64> {
    let find = |c: Contender| sums.iter().find(|x| x.workload == w && x.contender == c);
    Some(find(Contender::NineP)?.seconds?.median / find(Contender::Avpfs)?.seconds_without_daemon()?)
}

/// The daemons' CPU time per workload (empty when no daemon's was sampled).
fn daemon_cpu_table(r: &Results2, sums: &[Summary2]) -> String {
    let mut s = String::new();
    let daemons: Vec<Contender> = r.contenders.iter().copied().filter(|c| c.is_daemon()).collect();
    if !sums.iter().any(|x| x.daemon_cpu.is_some()) || daemons.is_empty() {
        return s;
    }
    let nine_p = r.contenders.contains(&Contender::NineP) && daemons.contains(&Contender::Avpfs);
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
         is the guest kernel, QEMU and the notifications between them.\n"
    );
    let _ = write!(s, "| workload |");
    for c in &daemons {
        let l = contender_label(*c);
        let _ = write!(s, " {l} CPU s | {l} µs/op | {l} share |");
    }
    if nine_p {
        let _ = write!(s, " vs 9p with a daemon of no cost |");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---:|".repeat(3 * daemons.len() + usize::from(nine_p)));
    for &w in &r.workloads {
        let ops = r.samples.iter().find_map(|g| g.line.as_ref().filter(|l| l.workload == w)).map_or(0, |l| l.ops);
        let _ = write!(s, "| {} |", w.name());
        for &c in &daemons {
            match sums.iter().find(|x| x.workload == w && x.contender == c).filter(|x| x.daemon_cpu.is_some()) {
                Some(x) => {
                    let cpu = x.daemon_cpu.expect("filtered");
                    let share = x
                        .seconds
                        .map_or_else(|| "—".into(), |t| format!("{:.0}%", 100.0 * cpu.median / t.median.max(1e-9)));
                    let per_op = x.cpu_us_per_op(ops).map_or_else(|| "—".into(), |v| format!("{v:.1}"));
                    let _ = write!(s, " {:.3} | {per_op} | {share} |", cpu.median);
                }
                None => {
                    let _ = write!(s, " — | — | — |");
                }
            }
        }
        if nine_p {
            let cell = vs_9p_without_daemon(sums, w).map_or_else(|| "—".into(), |v| format!("{v:.2}x"));
            let _ = write!(s, " {cell} |");
        }
        let _ = writeln!(s);
    }
    s
}

/// The level 2 targets checked against `sums` (empty when avpfs or
/// both others are missing).
fn targets(sums: &[Summary2]) -> String {
    let avpfs: Vec<&Summary2> = sums.iter().filter(|x| x.contender == Contender::Avpfs).collect();
    let mut s = String::new();
    if avpfs.iter().all(|x| x.vs_virtiofsd.is_none() && x.vs_9p.is_none()) {
        return s;
    }
    let _ = writeln!(s, "\n## Issue 5 targets (level 2)\n");
    let with = |f: fn(&Summary2) -> Option<Speedup>| -> Vec<(GuestWorkload, Speedup)> {
        avpfs.iter().filter_map(|x| f(x).map(|v| (x.workload, v))).collect()
    };
    let vs_v = with(|x| x.vs_virtiofsd);
    if !vs_v.is_empty() {
        let slower: Vec<String> = vs_v
            .iter()
            .filter(|(_, v)| v.clearly_slower())
            .map(|(w, v)| format!("{} {:.2}x", w.name(), v.of_medians))
            .collect();
        let below: Vec<String> = vs_v
            .iter()
            .filter(|(_, v)| v.of_medians < 1.0 && !v.clearly_slower())
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
    let vs_9p: Vec<String> = with(|x| x.vs_9p)
        .iter()
        .filter(|(w, _)| w.is_metadata() || w.is_write())
        .map(|(w, v)| {
            if v.of_medians >= 3.0 {
                return format!("{} {:.2}x met", w.name(), v.of_medians);
            }
            let floor = vs_9p_without_daemon(sums, *w)
                .map_or_else(String::new, |b| format!(" (with a daemon of no cost at most {b:.2}x)"));
            format!("{} {:.2}x **not met**{floor}", w.name(), v.of_medians)
        })
        .collect();
    if !vs_9p.is_empty() {
        let _ = writeln!(s, "- At least 3x QEMU 9p on metadata and write workloads: {}", vs_9p.join("; "));
    }
    s
}

/// One CSV line per workload per boot.
pub fn csv(r: &Results2) -> String {
    let mut s = String::from("workload,contender,rep,seconds,ops,bytes,rate,unit,error\n");
    for x in &r.samples {
        let unit = x.workload.unit().rate_label();
        match (&x.line, x.rate()) {
            (Some(l), Some(rate)) => {
                let _ = writeln!(
                    s,
                    "{},{},{},{:.6},{},{},{rate:.3},{unit},",
                    x.workload.name(),
                    x.contender.name(),
                    x.rep,
                    l.seconds,
                    l.ops,
                    l.bytes
                );
            }
            _ => {
                let e = x.error.clone().unwrap_or_default().replace(['"', '\n'], " ");
                let _ = writeln!(s, "{},{},{},,,,,{unit},\"{e}\"", x.workload.name(), x.contender.name(), x.rep);
            }
        }
    }
    s
}

#[derive(Serialize)]
struct JsonOut<'a> {
    results: &'a Results2,
    summaries: &'a [Summary2],
}

const VS_VIRTIOFSD: RGBColor = RGBColor(31, 119, 180);
const VS_9P: RGBColor = RGBColor(255, 127, 14);

/// The chart: avpfs's speedup over virtiofsd and over 9p per workload, on a
/// log scale around 1 (bars grow right when avpfs is faster, left when
/// slower), whiskers for the per-repetition range. Returns `false` (nothing
/// written) when there is no speedup to draw.
pub fn chart(path: &Path, r: &Results2, sums: &[Summary2], title: &str) -> Result<bool, Error> {
    type Bar = (usize, usize, Speedup); // row, which comparison, value
    let rows: Vec<GuestWorkload> = r.workloads.clone();
    let mut bars: Vec<Bar> = Vec::new();
    for (i, w) in rows.iter().enumerate() {
        if let Some(a) = sums.iter().find(|x| x.workload == *w && x.contender == Contender::Avpfs) {
            if let Some(v) = a.vs_virtiofsd {
                bars.push((i, 0, v));
            }
            if let Some(v) = a.vs_9p {
                bars.push((i, 1, v));
            }
        }
    }
    if bars.is_empty() {
        return Ok(false);
    }
    let values = bars.iter().flat_map(|(_, _, v)| {
        let p = v.paired.unwrap_or(Spread { median: v.of_medians, min: v.of_medians, max: v.of_medians, n: 1 });
        [v.of_medians, p.min, p.max]
    });
    let (lo, hi) = values.fold((1.0f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = ((lo / 1.3).clamp(0.01, 0.7), (hi * 1.3).clamp(1.5, 1000.0));
    let n = rows.len();
    let err = |e: &dyn std::fmt::Display| Error::Chart { path: path.to_path_buf(), detail: e.to_string() };
    let height = 150 + 40 * n as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (head, body) = root.split_vertically(70);
    head.draw(&Text::new(title.to_string(), (20, 12), ("sans-serif", 20).into_font())).map_err(|e| err(&e))?;
    let font = ("sans-serif", 12).into_font();
    let legend: [(&str, RGBColor); 2] = [
        ("avpfs vs virtiofsd: virtiofsd time / avpfs time (whisker: range over repetitions)", VS_VIRTIOFSD),
        ("avpfs vs QEMU 9p: 9p time / avpfs time", VS_9P),
    ];
    for (i, (text, color)) in legend.iter().enumerate() {
        let (x, y) = (20 + 560 * i as i32, 46);
        head.draw(&Rectangle::new([(x, y), (x + 14, y + 10)], color.filled())).map_err(|e| err(&e))?;
        head.draw(&Text::new(text.to_string(), (x + 20, y - 1), font.clone())).map_err(|e| err(&e))?;
    }
    let labels: Vec<String> = rows.iter().map(|w| w.name().to_string()).collect();
    let mut chart = ChartBuilder::on(&body)
        .caption("speedup of avpfs, guest-side time (log scale; right of 1: avpfs faster)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(100)
        .build_cartesian_2d((lo..hi).log_scale(), -0.5f64..(n as f64 - 0.5))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(RGBColor(245, 245, 245))
        .y_labels(n.max(2))
        .y_label_formatter(&|y| crate::chart::row_label(&labels, *y))
        .x_label_formatter(&|x| format!("{x:.2}x"))
        .x_desc("speedup factor")
        .label_style(("sans-serif", 12).into_font())
        .draw()
        .map_err(|e| err(&e))?;
    let y_of = |row: usize, which: usize| (n - 1 - row) as f64 + if which == 0 { 0.0 } else { -0.38 };
    chart
        .draw_series(bars.iter().map(|(row, which, v)| {
            let y = y_of(*row, *which);
            let x = v.of_medians.clamp(lo, hi);
            let color = if *which == 0 { VS_VIRTIOFSD } else { VS_9P };
            Rectangle::new([(x.min(1.0), y), (x.max(1.0), y + 0.36)], color.filled())
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(bars.iter().filter_map(|(row, which, v)| {
            let p = v.paired.filter(|p| p.n > 1)?;
            let y = y_of(*row, *which) + 0.18;
            Some(PathElement::new(vec![(p.min.clamp(lo, hi), y), (p.max.clamp(lo, hi), y)], BLACK.stroke_width(2)))
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(1.0, -0.5), (1.0, n as f64 - 0.5)], BLACK.stroke_width(1))))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(true)
}

/// Writes `level2.{md,json,csv,svg}` under `out`; returns the paths written.
pub fn write_all(out: &Path, r: &Results2) -> Result<Vec<PathBuf>, Error> {
    let sums = summarize(r);
    std::fs::create_dir_all(out).ctx(|| format!("mkdir {}", out.display()))?;
    let md = out.join("level2.md");
    std::fs::write(&md, markdown(r, &sums)).ctx(|| format!("writing {}", md.display()))?;
    let json = out.join("level2.json");
    let text = serde_json::to_string_pretty(&JsonOut { results: r, summaries: &sums })
        .map_err(|source| Error::Json { path: json.clone(), source })?;
    std::fs::write(&json, text).ctx(|| format!("writing {}", json.display()))?;
    let csv_path = out.join("level2.csv");
    std::fs::write(&csv_path, csv(r)).ctx(|| format!("writing {}", csv_path.display()))?;
    let mut written = vec![md, json, csv_path];
    let svg = out.join("level2.svg");
    let title = format!("avpfs level 2 ({}, {} repetitions, {})", r.meta.machine.avpfs_rev, r.meta.reps, r.meta.date);
    if chart(&svg, r, &sums, &title)? {
        written.push(svg);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{GuestLine, GuestSizes};
    use crate::level2::{Boot, Meta2, Tarball};

    fn fake() -> Results2 {
        let mut samples = Vec::new();
        for rep in 0..3 {
            for (c, t) in [(Contender::Avpfs, 1.0), (Contender::Virtiofsd, 1.5), (Contender::NineP, 4.0)] {
                for w in [GuestWorkload::Create, GuestWorkload::Seqread] {
                    let seconds = t + rep as f64 * 0.1;
                    let line = Some(GuestLine { workload: w, seconds, ops: 100, bytes: 1_000_000 });
                    let daemon_cpu_seconds = c.is_daemon().then_some(0.25);
                    samples.push(GuestSample { workload: w, contender: c, rep, line, error: None, daemon_cpu_seconds });
                }
            }
        }
        samples.push(GuestSample {
            workload: GuestWorkload::Tar,
            contender: Contender::NineP,
            rep: 0,
            line: None,
            error: Some("boom".into()),
            daemon_cpu_seconds: None,
        });
        Results2 {
            meta: Meta2 {
                date: "today".into(),
                command_line: "avpfs-bench --level 2".into(),
                mode: crate::config::Mode::Quick,
                reps: 3,
                machine: crate::runner::Machine {
                    nproc: 2,
                    cpu: "cpu".into(),
                    kernel: "6".into(),
                    mem_total: "1 GiB".into(),
                    avpfs_rev: "abc".into(),
                },
                virtiofsd_version: "virtiofsd 1.14.0".into(),
                qemu_version: "QEMU 7.2".into(),
                guest_kernel_package: "linux-image".into(),
                guest_kernel: "6.1".into(),
                guest_smp: 2,
                guest_mem: "1G".into(),
                qemu_flags: "-accel tcg".into(),
                devices: vec![(Contender::NineP, "-fsdev".into())],
                daemon_command_lines: vec!["avpfs --cache auto".into()],
                mounts: vec![(Contender::Avpfs, "bench /mnt virtiofs rw 0 0".into())],
                sizes: GuestSizes::QUICK,
                tarball: Tarball { sources: vec!["/src".into()], bytes: 5_000_000, entries: 600 },
                seconds: 60.0,
                notes: vec!["a note".into()],
            },
            contenders: vec![Contender::Avpfs, Contender::Virtiofsd, Contender::NineP],
            workloads: vec![GuestWorkload::Create, GuestWorkload::Tar, GuestWorkload::Seqread],
            samples,
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

    #[test]
    fn slower_is_reported_only_beyond_noise() {
        let mut r = fake();
        // Six repetitions of create with avpfs slower in all of them, and
        // seqread slower in only four of the six.
        r.meta.reps = 6;
        r.workloads = vec![GuestWorkload::Create, GuestWorkload::Seqread];
        r.samples.clear();
        for rep in 0..6 {
            for w in [GuestWorkload::Create, GuestWorkload::Seqread] {
                for (c, t) in [(Contender::Avpfs, 2.0), (Contender::Virtiofsd, 1.0), (Contender::NineP, 9.0)] {
                    let t = if w == GuestWorkload::Seqread && c == Contender::Avpfs && rep >= 4 { 0.5 } else { t };
                    let line = Some(GuestLine { workload: w, seconds: t, ops: 100, bytes: 1_000_000 });
                    r.samples.push(GuestSample {
                        workload: w,
                        contender: c,
                        rep,
                        line,
                        error: None,
                        daemon_cpu_seconds: None,
                    });
                }
            }
        }
        let sums = summarize(&r);
        let create = sums.iter().find(|x| x.workload == GuestWorkload::Create && x.contender == Contender::Avpfs);
        let v = create.unwrap().vs_virtiofsd.unwrap();
        assert_eq!((v.wins, v.losses), (0, 6));
        assert!(v.clearly_slower());
        let md = markdown(&r, &sums);
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
        let mut r = fake();
        // 9p takes 2.0 s on create: 2.0 / 1.1 = 1.82x, short of 3x; taking
        // avpfs's 0.25 s of daemon CPU out leaves 2.0 / 0.85 = 2.35x.
        for x in r.samples.iter_mut().filter(|x| x.contender == Contender::NineP && x.workload == GuestWorkload::Create)
        {
            x.line.as_mut().unwrap().seconds = 2.0;
        }
        let sums = summarize(&r);
        let md = markdown(&r, &sums);
        assert!(md.contains("create 1.82x **not met** (with a daemon of no cost at most 2.35x)"), "{md}");
        assert!(md.contains("| create | 0.250 | 2500.0 | 23% | 0.250 | 2500.0 | 16% | 2.35x |"), "{md}");
        assert!(md.contains("| tar | — | — | — | — | — | — | — |"), "{md}");
        // No samples, no table.
        for x in &mut r.samples {
            x.daemon_cpu_seconds = None;
        }
        let sums = summarize(&r);
        assert!(!markdown(&r, &sums).contains("The daemons' CPU time"));
    }

    #[test]
    fn speedups_tables_and_files() {
        let r = fake();
        let sums = summarize(&r);
        let a = sums.iter().find(|x| x.workload == GuestWorkload::Create && x.contender == Contender::Avpfs).unwrap();
        assert!((a.vs_virtiofsd.unwrap().of_medians - 1.6 / 1.1).abs() < 1e-9);
        assert!((a.vs_9p.unwrap().of_medians - 4.1 / 1.1).abs() < 1e-9);
        assert_eq!(a.vs_9p.unwrap().paired.unwrap().n, 3);
        let md = markdown(&r, &sums);
        assert!(
            md.contains("| create | 1.100 (1.000–1.200) | 1.600 (1.500–1.700) | 4.100 (4.000–4.200) | 90.9 |"),
            "{md}"
        );
        assert!(md.contains("| 1.45x (1.42–1.50; 3/3, p 0.25) | 3.73x (3.50–4.00; 3/3, p 0.25) |"), "{md}");
        assert!(md.contains("- Not slower than virtiofsd on any workload: met: slower beyond noise on none\n"), "{md}");
        assert!(md.contains("create 3.73x met"), "{md}");
        assert!(md.contains("| tar | — | — | FAILED | — | — | — | ops/s | — | — |"), "{md}");
        assert!(md.contains("- tar / 9p (QEMU): 1 of 3 repetitions gave no figure: boom"), "{md}");
        assert_eq!(csv(&r).lines().count(), 1 + 19);
        let tmp = tempfile::tempdir().unwrap();
        let written = write_all(tmp.path(), &r).unwrap();
        assert_eq!(written.len(), 4);
        let svg = std::fs::read_to_string(tmp.path().join("level2.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("seqread") && svg.contains("<rect"));
    }
}
