//! The charts. Level 1: for each share location, avpfs against virtiofsd
//! case by case — throughput ratio and p99 latency gain, both "higher is
//! better" — as horizontal bars with the repetitions' range, and lines at 1.0
//! (par) and 1.3 (the target for metadata). Level 2: avpfs's speedup
//! over virtiofsd and over QEMU's 9p per workload, on a log scale around 1.
//! Both: a title and legend band above the plots, one bar row per case or
//! workload.
//!
//! SVG only, drawn by `plotters` without a font back end: text is written as
//! SVG `<text>` and laid out by the viewer, so no system font is needed.

use std::path::Path;

use plotters::prelude::*;

use crate::contenders::Contender;
use crate::error::Error;
use crate::guest::GuestWorkload;
use crate::results::Row;
use crate::share::DirKind;
use crate::stats::Spread;
use crate::summary::{Ratio, Summary};

/// One bar group: a case, its throughput ratio (median, min, max) and p99 gain.
struct Bars {
    label: String,
    ratio: (f64, f64, f64),
    p99_gain: Option<f64>,
}

fn rows(sums: &[Summary], kind: DirKind) -> Vec<Bars> {
    sums.iter()
        .filter(|s| matches!(s.row, Row::Case { dir_kind, .. } if dir_kind == kind) && s.contender == Contender::Avpfs)
        .filter_map(|s| {
            let r = s.vs_virtiofsd?.paired?;
            Some(Bars { label: s.row.label(), ratio: (r.median, r.min, r.max), p99_gain: s.p99_gain_vs_virtiofsd })
        })
        .collect()
}

const THROUGHPUT: RGBColor = RGBColor(31, 119, 180);
const LATENCY: RGBColor = RGBColor(255, 127, 14);
const TARGET: RGBColor = RGBColor(44, 160, 44);

/// Writes level 1's chart, a panel per share of `kinds`, to `path`. Returns
/// `false` (and writes nothing) when no case has both avpfs and virtiofsd
/// figures.
pub fn level1(path: &Path, sums: &[Summary], kinds: &[DirKind], title: &str) -> Result<bool, Error> {
    let panels: Vec<(DirKind, Vec<Bars>)> =
        kinds.iter().map(|&k| (k, rows(sums, k))).filter(|(_, r)| !r.is_empty()).collect();
    if panels.is_empty() {
        return Ok(false);
    }
    let heights: Vec<u32> = panels.iter().map(|(_, r)| 110 + 30 * r.len() as u32).collect();
    let total: u32 = heights.iter().sum::<u32>() + HEADER;
    let err = |e: &dyn std::fmt::Display| Error::Chart { path: path.to_path_buf(), detail: e.to_string() };
    let root = SVGBackend::new(path, (1000, total)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (head, mut rest) = root.split_vertically(HEADER);
    draw_header(&head, title, &level1_legend()).map_err(|e| err(&e))?;
    for ((kind, rows), h) in panels.iter().zip(&heights) {
        let (area, below) = rest.split_vertically(*h);
        rest = below;
        draw_panel(&area, *kind, rows).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(true)
}

/// Height of the title and legend band.
const HEADER: u32 = 80;

/// How a legend item is marked.
#[derive(Clone, Copy)]
enum Mark {
    /// A filled square, for bars.
    Bar,
    /// A short vertical line, for reference lines.
    Line,
}

/// The title and, below it, the legend (kept out of the plots, where it
/// would hide bars): each item's mark and text at its place.
fn draw_header<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    items: &[(&str, RGBColor, Mark, (i32, i32))],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    area.draw(&Text::new(title.to_string(), (20, 12), ("sans-serif", 20).into_font()))?;
    let font = ("sans-serif", 12).into_font();
    for &(text, color, mark, (x, y)) in items {
        match mark {
            Mark::Bar => area.draw(&Rectangle::new([(x, y), (x + 14, y + 10)], color.filled()))?,
            Mark::Line => area.draw(&PathElement::new(vec![(x + 7, y - 2), (x + 7, y + 12)], color.stroke_width(2)))?,
        }
        area.draw(&Text::new(text.to_string(), (x + 20, y - 1), font.clone()))?;
    }
    Ok(())
}

/// Level 1's legend, two items a line.
fn level1_legend() -> Vec<(&'static str, RGBColor, Mark, (i32, i32))> {
    let items = [
        ("throughput: avpfs rate / virtiofsd rate (whisker: range over repetitions)", THROUGHPUT, Mark::Bar),
        ("tail latency: virtiofsd p99 / avpfs p99", LATENCY, Mark::Bar),
        ("par (1.0)", BLACK, Mark::Line),
        ("metadata target (1.3)", TARGET, Mark::Line),
    ];
    items
        .into_iter()
        .enumerate()
        .map(|(i, (text, color, mark))| (text, color, mark, (20 + 480 * (i as i32 % 2), 44 + 18 * (i as i32 / 2))))
        .collect()
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    kind: DirKind,
    rows: &[Bars],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let n = rows.len();
    let top = rows.iter().flat_map(|r| [r.ratio.2, r.p99_gain.unwrap_or(0.0)]).fold(1.5f64, f64::max).min(20.0) * 1.1;
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "share on {}: avpfs / virtiofsd, higher is better for avpfs (qN: avpfs with N queues, virtiofsd with its one)",
                kind.name()
            ),
            ("sans-serif", 16).into_font(),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(150)
        .build_cartesian_2d(0f64..top, -0.5f64..(n as f64 - 0.5))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(RGBColor(245, 245, 245))
        .y_labels(n.max(2))
        .x_labels(12)
        .y_label_formatter(&|y| row_label(&labels, *y))
        .x_desc("ratio")
        .label_style(("sans-serif", 12).into_font())
        .draw()?;
    let y_of = |i: usize| (n - 1 - i) as f64;
    chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
        let y = y_of(i);
        Rectangle::new([(0.0, y), (r.ratio.0.min(top), y + 0.38)], THROUGHPUT.filled())
    }))?;
    chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
        let y = y_of(i) + 0.19;
        PathElement::new(vec![(r.ratio.1.min(top), y), (r.ratio.2.min(top), y)], BLACK.stroke_width(2))
    }))?;
    chart.draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
        let y = y_of(i);
        r.p99_gain.map(|g| Rectangle::new([(0.0, y - 0.38), (g.min(top), y)], LATENCY.filled()))
    }))?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, -0.5), (1.0, n as f64 - 0.5)],
        BLACK.stroke_width(1),
    )))?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.3, -0.5), (1.3, n as f64 - 0.5)],
        TARGET.stroke_width(1),
    )))?;
    Ok(())
}

/// Level 2's comparisons, in the order drawn: who, against whom, colour.
const LEVEL2_PAIRS: [(Contender, Contender, RGBColor); 5] = [
    (Contender::Avpfs, Contender::Virtiofsd, RGBColor(31, 119, 180)),
    (Contender::Avpfs, Contender::NineP, RGBColor(255, 127, 14)),
    (Contender::Avpfs, Contender::NinePMapped, RGBColor(255, 187, 120)),
    (Contender::AvpfsNineP, Contender::NineP, RGBColor(44, 160, 44)),
    (Contender::AvpfsNineP, Contender::NinePMapped, RGBColor(152, 223, 138)),
];

/// Writes level 2's chart to `path`: per workload of `rows`, avpfs's
/// speedup over virtiofsd and over QEMU's 9p servers, and avpfs-9p's over
/// QEMU's 9p servers (those that ran), on a log scale around 1 (bars grow
/// right when the first is faster, left when slower), whiskers for the
/// per-repetition range. Returns `false` (nothing written) when there is no
/// speedup to draw.
pub fn level2(path: &Path, rows: &[GuestWorkload], sums: &[Summary], title: &str) -> Result<bool, Error> {
    type Bar = (usize, usize, Ratio); // row, which comparison, value
    let mut bars: Vec<Bar> = Vec::new();
    for (i, w) in rows.iter().enumerate() {
        let row = Row::Guest { workload: *w };
        for (which, (c, base, _)) in LEVEL2_PAIRS.iter().enumerate() {
            if let Some(v) = sums.iter().find(|x| x.row == row && x.contender == *c).and_then(|x| x.vs(*base)) {
                bars.push((i, which, v));
            }
        }
    }
    if bars.is_empty() {
        return Ok(false);
    }
    // Only the comparisons that have a bar take room, in LEVEL2_PAIRS's order.
    let mut drawn: Vec<usize> = bars.iter().map(|b| b.1).collect();
    drawn.sort_unstable();
    drawn.dedup();
    let slot = |which: usize| drawn.iter().position(|&d| d == which).unwrap_or(0);
    let k = drawn.len();
    let h = 0.76 / k as f64;
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
    let texts: Vec<String> = drawn
        .iter()
        .map(|&which| {
            let (c, base, _) = LEVEL2_PAIRS[which];
            let first = if which == 0 { " (whisker: range over repetitions)" } else { "" };
            format!("{} vs {}: {} time / {} time{first}", c.name(), base.name(), base.name(), c.name())
        })
        .collect();
    let legend: Vec<_> = drawn
        .iter()
        .zip(&texts)
        .enumerate()
        .map(|(i, (&which, text))| {
            (text.as_str(), LEVEL2_PAIRS[which].2, Mark::Bar, (20 + 490 * (i as i32 % 2), 36 + 14 * (i as i32 / 2)))
        })
        .collect();
    draw_header(&head, title, &legend).map_err(|e| err(&e))?;
    let labels: Vec<String> = rows.iter().map(|w| w.name().to_string()).collect();
    let mut chart = ChartBuilder::on(&body)
        .caption("speedup, guest-side time (log scale; right of 1: the first named is faster)", ("sans-serif", 16))
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
        .y_label_formatter(&|y| row_label(&labels, *y))
        .x_label_formatter(&|x| format!("{x:.2}x"))
        .x_desc("speedup factor")
        .label_style(("sans-serif", 12).into_font())
        .draw()
        .map_err(|e| err(&e))?;
    // Slot 0 at the top of the row's band.
    let y_of = |row: usize, which: usize| (n - 1 - row) as f64 + 0.38 - (slot(which) + 1) as f64 * h;
    chart
        .draw_series(bars.iter().map(|(row, which, v)| {
            let y = y_of(*row, *which);
            let x = v.of_medians.clamp(lo, hi);
            Rectangle::new([(x.min(1.0), y), (x.max(1.0), y + 0.95 * h)], LEVEL2_PAIRS[*which].2.filled())
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(bars.iter().filter_map(|(row, which, v)| {
            let p = v.paired.filter(|p| p.n > 1)?;
            let y = y_of(*row, *which) + 0.475 * h;
            Some(PathElement::new(vec![(p.min.clamp(lo, hi), y), (p.max.clamp(lo, hi), y)], BLACK.stroke_width(2)))
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(1.0, -0.5), (1.0, n as f64 - 0.5)], BLACK.stroke_width(1))))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(true)
}

/// The label of the row drawn at height `y` of a chart with one row per
/// label, row 0 at the top; nothing between rows.
fn row_label(labels: &[String], y: f64) -> String {
    let i = y.round();
    if (y - i).abs() < 1e-6 && i >= 0.0 {
        labels.get(labels.len().saturating_sub(1).saturating_sub(i as usize)).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::fixtures;
    use crate::summary::summarize;

    #[test]
    fn draws_a_well_formed_svg() {
        let sums = summarize(&fixtures::level1());
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c.svg");
        assert!(level1(&path, &sums, &[DirKind::Tmpfs, DirKind::Disk], "test").unwrap());
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains("lookup q1 d1"));
        assert!(svg.contains("<rect"));
        assert!(!level1(&tmp.path().join("none.svg"), &[], &[DirKind::Tmpfs], "t").unwrap());
        // Level 2: no speedup, no chart.
        assert!(!level2(&tmp.path().join("none2.svg"), &[GuestWorkload::Create], &[], "t").unwrap());
    }

    #[test]
    fn level_two_draws_avpfs_9p_against_qemus_9p() {
        let mut r = fixtures::level2();
        // virtiofsd's figures stand in for avpfs-9p's.
        for x in r.samples.iter_mut().filter(|x| x.contender == Contender::Virtiofsd) {
            x.contender = Contender::AvpfsNineP;
        }
        r.contenders = vec![Contender::AvpfsNineP, Contender::NineP, Contender::Avpfs];
        let sums = summarize(&r);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("l2.svg");
        assert!(level2(&path, &[GuestWorkload::Create, GuestWorkload::Seqread], &sums, "t").unwrap());
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("avpfs vs 9p: 9p time / avpfs time"), "{svg}");
        assert!(svg.contains("avpfs-9p vs 9p: 9p time / avpfs-9p time"), "{svg}");
        assert!(!svg.contains("avpfs vs virtiofsd"), "{svg}");
    }
}
