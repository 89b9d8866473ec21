//! The summaries of either level: per row and contender the medians over the
//! repetitions, and the ratios to the contenders avpfs is compared with.

use serde::Serialize;

use crate::contenders::Contender;
use crate::results::{Metrics, Results, Row, Sample};
use crate::stats::Spread;

/// One contender against a base contender on one row, as a factor where
/// above 1 is better for the first: rate / the base's rate (level 1), the
/// base's time / the time (level 2).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratio {
    /// The ratio of the two medians.
    pub of_medians: f64,
    /// The ratio repetition by repetition (the contenders of one repetition
    /// ran back to back).
    pub paired: Option<Spread>,
    /// The ratio of the two best figures: outside load only ever slows a run
    /// down, so on a busy machine it is the less disturbed estimate.
    pub best: Option<f64>,
    /// Repetitions in which the first did better than the base.
    pub wins: usize,
    /// Repetitions in which it did worse.
    pub losses: usize,
    /// The two-sided sign test of `wins` against `losses`
    /// ([`crate::stats::sign_test`]): below 0.05, the difference is unlikely
    /// to be the machine's noise.
    pub sign_p: f64,
}

impl Ratio {
    /// `ours` against `theirs`, one figure per repetition (none: the run
    /// failed); `higher_is_better` for a rate, not for a time. None when
    /// either has no figure or the denominator's median is not positive.
    pub fn of(ours: &[Option<f64>], theirs: &[Option<f64>], higher_is_better: bool) -> Option<Ratio> {
        let (num, den) = if higher_is_better { (ours, theirs) } else { (theirs, ours) };
        let n = Spread::of(num.iter().flatten().copied())?;
        let d = Spread::of(den.iter().flatten().copied())?;
        if d.median <= 0.0 {
            return None;
        }
        let ratios: Vec<f64> = num
            .iter()
            .zip(den)
            .filter_map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if *b > 0.0 => Some(a / b),
                _ => None,
            })
            .collect();
        let best =
            if higher_is_better { (d.max > 0.0).then(|| n.max / d.max) } else { (d.min > 0.0).then(|| n.min / d.min) };
        let wins = ratios.iter().filter(|&&x| x > 1.0).count();
        let losses = ratios.iter().filter(|&&x| x < 1.0).count();
        Some(Ratio {
            of_medians: n.median / d.median,
            paired: Spread::of(ratios),
            best,
            wins,
            losses,
            sign_p: crate::stats::sign_test(wins, losses),
        })
    }

    /// Whether the first is worse than the base, and not by chance (sign
    /// test below 0.05).
    pub fn clearly_worse(&self) -> bool {
        self.of_medians < 1.0 && self.losses > self.wins && self.sign_p < 0.05
    }
}

/// One row for one contender over the repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// What ran.
    #[serde(flatten)]
    pub row: Row,
    /// The contender.
    pub contender: Contender,
    /// Rate over the successful repetitions.
    pub rate: Option<Spread>,
    /// Measured seconds over the successful repetitions.
    pub seconds: Option<Spread>,
    /// Median of the runs' p50 latencies, µs (level 1).
    pub p50_us: Option<f64>,
    /// Median of the runs' p99 latencies, µs (level 1).
    pub p99_us: Option<f64>,
    /// Median CPU time of the daemon per operation, µs.
    pub cpu_us_per_op: Option<f64>,
    /// Median CPU time of the front end per operation, µs (level 1).
    pub fe_cpu_us_per_op: Option<f64>,
    /// CPU seconds of the daemon during the run.
    pub cpu_s: Option<Spread>,
    /// CPU seconds of the relay during the run (level 2, avpfs-9p:
    /// vhost-device-vsock).
    pub relay_cpu_s: Option<Spread>,
    /// Median CPU time of the relay per operation, µs.
    pub relay_cpu_us_per_op: Option<f64>,
    /// Failed repetitions.
    pub failures: usize,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// Against virtiofsd (level 1: every contender but the host; level 2:
    /// avpfs).
    pub vs_virtiofsd: Option<Ratio>,
    /// Against the host (level 1).
    pub vs_host: Option<Ratio>,
    /// Against QEMU's 9p (level 2: avpfs and avpfs-9p).
    pub vs_9p: Option<Ratio>,
    /// Against QEMU's 9p with security_model=mapped-xattr (level 2: avpfs
    /// and avpfs-9p).
    pub vs_9p_mapped: Option<Ratio>,
    /// virtiofsd's p99 / this p99 (above 1: lower tail latency than
    /// virtiofsd; level 1).
    pub p99_gain_vs_virtiofsd: Option<f64>,
}

impl Summary {
    /// The ratio against `base`, when there is one.
    pub fn vs(&self, base: Contender) -> Option<Ratio> {
        match base {
            Contender::Virtiofsd => self.vs_virtiofsd,
            Contender::Host => self.vs_host,
            Contender::NineP => self.vs_9p,
            Contender::NinePMapped => self.vs_9p_mapped,
            Contender::Avpfs | Contender::AvpfsNineP => None,
        }
    }

    /// The median time less the daemon's median CPU time (and the relay's,
    /// when there is one): a floor for what a daemon (and relay) that used
    /// no CPU at all could reach (the requests of a level-2 workload are
    /// served one after another, so their CPU time is at most the part of
    /// the guest's wait it accounts for).
    pub fn seconds_without_daemon(&self) -> Option<f64> {
        let t = self.seconds?.median;
        let relay = self.relay_cpu_s.map_or(0.0, |r| r.median);
        Some((t - self.cpu_s?.median - relay).max(1e-9))
    }
}

/// The contenders `c`'s summaries are compared with on `row`.
pub(crate) fn bases(row: &Row, c: Contender) -> &'static [Contender] {
    match (row, c) {
        (Row::Case { .. }, Contender::Host) => &[Contender::Host],
        (Row::Case { .. }, _) => &[Contender::Virtiofsd, Contender::Host],
        (Row::Guest { .. }, Contender::Avpfs) => &[Contender::Virtiofsd, Contender::NineP, Contender::NinePMapped],
        (Row::Guest { .. }, Contender::AvpfsNineP) => &[Contender::NineP, Contender::NinePMapped],
        (Row::Guest { .. }, _) => &[],
    }
}

/// Summaries of every (row, contender) that ran, in report order.
pub fn summarize(r: &Results) -> Vec<Summary> {
    let mut out: Vec<Summary> = Vec::new();
    for row in &r.rows {
        for &c in &r.contenders {
            let runs: Vec<&Sample> = r.samples.iter().filter(|s| s.row == *row && s.contender == c).collect();
            if runs.is_empty() {
                continue;
            }
            let ok: Vec<&Metrics> = runs.iter().filter_map(|s| s.metrics.as_ref()).collect();
            let median =
                |f: &dyn Fn(&Metrics) -> Option<f64>| Spread::of(ok.iter().filter_map(|m| f(m))).map(|s| s.median);
            out.push(Summary {
                row: *row,
                contender: c,
                rate: Spread::of(ok.iter().map(|m| m.rate)),
                seconds: Spread::of(ok.iter().map(|m| m.wall_s)),
                p50_us: median(&|m| m.p50_us),
                p99_us: median(&|m| m.p99_us),
                cpu_us_per_op: median(&Metrics::cpu_us_per_op),
                fe_cpu_us_per_op: median(&Metrics::fe_cpu_us_per_op),
                cpu_s: Spread::of(ok.iter().filter_map(|m| m.cpu_s)),
                relay_cpu_s: Spread::of(ok.iter().filter_map(|m| m.relay_cpu_s)),
                relay_cpu_us_per_op: median(&Metrics::relay_cpu_us_per_op),
                failures: runs.len() - ok.len(),
                first_error: runs.iter().find_map(|s| s.error.clone()),
                vs_virtiofsd: None,
                vs_host: None,
                vs_9p: None,
                vs_9p_mapped: None,
                p99_gain_vs_virtiofsd: None,
            });
        }
    }
    // Ratios, now that every summary exists.
    let snapshot = out.clone();
    for s in &mut out {
        for &base in bases(&s.row, s.contender) {
            let Some(b) = snapshot.iter().find(|b| b.contender == base && s.row.compares_with(base, &b.row)) else {
                continue;
            };
            let ratio = match s.row {
                // Rates, higher is better.
                Row::Case { .. } => {
                    let rates = |x: &Summary| per_rep(r, x, |m| m.rate);
                    Ratio::of(&rates(s), &rates(b), true)
                }
                // Guest-side times, lower is better.
                Row::Guest { .. } => {
                    let times = |x: &Summary| per_rep(r, x, |m| m.wall_s);
                    Ratio::of(&times(s), &times(b), false)
                }
            };
            match base {
                Contender::Virtiofsd => {
                    s.vs_virtiofsd = ratio;
                    if matches!(s.row, Row::Case { .. }) {
                        s.p99_gain_vs_virtiofsd = match (b.p99_us, s.p99_us) {
                            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                            _ => None,
                        };
                    }
                }
                Contender::Host => s.vs_host = ratio,
                Contender::NineP => s.vs_9p = ratio,
                Contender::NinePMapped => s.vs_9p_mapped = ratio,
                Contender::Avpfs | Contender::AvpfsNineP => {}
            }
        }
    }
    out
}

/// `f` of the figures of `x`'s row and contender, repetition by repetition.
fn per_rep(r: &Results, x: &Summary, f: impl Fn(&Metrics) -> f64) -> Vec<Option<f64>> {
    (0..r.meta.reps).map(|rep| r.sample(&x.row, x.contender, rep).and_then(|s| s.metrics.as_ref()).map(&f)).collect()
}
