//! The chart: for each share location, avpfs against virtiofsd case by
//! case — throughput ratio and p99 latency gain, both "higher is better" —
//! as horizontal bars with the repetitions' range, and lines at 1.0 (par)
//! and 1.3 (the target for metadata).
//!
//! SVG only, drawn by `plotters` without a font back end: text is written as
//! SVG `<text>` and laid out by the viewer, so no system font is needed.

use std::path::Path;

use plotters::prelude::*;

use crate::contenders::Contender;
use crate::error::Error;
use crate::report::Summary;
use crate::share::DirKind;

/// One bar group: a case, its throughput ratio (median, min, max) and p99 gain.
struct Row {
    label: String,
    ratio: (f64, f64, f64),
    p99_gain: Option<f64>,
}

fn rows(sums: &[Summary], kind: DirKind) -> Vec<Row> {
    sums.iter()
        .filter(|s| s.dir_kind == kind && s.contender == Contender::Avpfs)
        .filter_map(|s| {
            let r = s.vs_virtiofsd?;
            Some(Row { label: s.case.label(), ratio: (r.median, r.min, r.max), p99_gain: s.p99_gain_vs_virtiofsd })
        })
        .collect()
}

const THROUGHPUT: RGBColor = RGBColor(31, 119, 180);
const LATENCY: RGBColor = RGBColor(255, 127, 14);
const TARGET: RGBColor = RGBColor(44, 160, 44);

/// Writes the chart to `path`. Returns `false` (and writes nothing) when no
/// case has both avpfs and virtiofsd figures.
pub fn write(path: &Path, sums: &[Summary], kinds: &[DirKind], title: &str) -> Result<bool, Error> {
    let panels: Vec<(DirKind, Vec<Row>)> =
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
    draw_header(&head, title).map_err(|e| err(&e))?;
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

/// The title and, below it, the legend (kept out of the plots, where it would hide bars).
fn draw_header<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    area.draw(&Text::new(title.to_string(), (20, 12), ("sans-serif", 20).into_font()))?;
    let font = ("sans-serif", 12).into_font();
    let items: [(&str, RGBColor, bool); 4] = [
        ("throughput: avpfs rate / virtiofsd rate (whisker: range over repetitions)", THROUGHPUT, true),
        ("tail latency: virtiofsd p99 / avpfs p99", LATENCY, true),
        ("par (1.0)", BLACK, false),
        ("metadata target (1.3)", TARGET, false),
    ];
    for (i, (text, color, bar)) in items.iter().enumerate() {
        let (x, y) = (20 + 480 * (i as i32 % 2), 44 + 18 * (i as i32 / 2));
        if *bar {
            area.draw(&Rectangle::new([(x, y), (x + 14, y + 10)], color.filled()))?;
        } else {
            area.draw(&PathElement::new(vec![(x + 7, y - 2), (x + 7, y + 12)], color.stroke_width(2)))?;
        }
        area.draw(&Text::new(text.to_string(), (x + 20, y - 1), font.clone()))?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    kind: DirKind,
    rows: &[Row],
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

/// The label of the row drawn at height `y` of a chart with one row per
/// label, row 0 at the top; nothing between rows.
pub(crate) fn row_label(labels: &[String], y: f64) -> String {
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

    #[test]
    fn draws_a_well_formed_svg() {
        let r = crate::report::tests::fake_results();
        let sums = crate::report::summarize(&r);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c.svg");
        assert!(write(&path, &sums, &[DirKind::Tmpfs, DirKind::Disk], "test").unwrap());
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains("lookup q1 d1"));
        assert!(svg.contains("<rect"));
        assert!(!write(&tmp.path().join("none.svg"), &[], &[DirKind::Tmpfs], "t").unwrap());
    }
}
