//! The result files of either level, written once over the one result
//! model: `levelN.md` (the level's Markdown report), `levelN.json` (every
//! run and the summaries), `levelN.csv` (one line per run) and `levelN.svg`
//! (the level's chart, when there is something to draw).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, IoContext};
use crate::results::{Metrics, Results, Row, Setup};
use crate::summary::{summarize, Summary};
use crate::{chart, level1_report, level2_report};

/// A CSV column after the row's own and the contender and repetition.
enum Column {
    /// A figure of a successful run (empty for a failed one).
    Figure(&'static str, fn(&Metrics) -> String),
    /// The rate's unit (also on a failed run's line).
    Unit,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(String::new, |x| format!("{x:.digits$}"))
}

/// The CSV columns of a level: the row's, then the figures'.
fn columns(level: u8) -> (&'static [&'static str], Vec<Column>) {
    use Column::{Figure, Unit};
    if level == 2 {
        return (
            &["workload"],
            vec![
                Figure("seconds", |m| format!("{:.6}", m.wall_s)),
                Figure("ops", |m| m.ops.to_string()),
                Figure("bytes", |m| m.units.to_string()),
                Figure("rate", |m| format!("{:.3}", m.rate)),
                Unit,
            ],
        );
    }
    (
        &["dir_kind", "workload", "queues", "depth"],
        vec![
            Figure("ops", |m| m.ops.to_string()),
            Figure("units", |m| m.units.to_string()),
            Figure("wall_s", |m| format!("{:.6}", m.wall_s)),
            Figure("rate", |m| format!("{:.3}", m.rate)),
            Unit,
            Figure("p50_us", |m| opt(m.p50_us, 3)),
            Figure("p99_us", |m| opt(m.p99_us, 3)),
            Figure("cpu_us_per_op", |m| opt(m.cpu_us_per_op(), 4)),
            Figure("fe_cpu_us_per_op", |m| opt(m.fe_cpu_us_per_op(), 4)),
        ],
    )
}

/// The row's own CSV cells.
fn row_cells(row: &Row) -> Vec<String> {
    match row {
        Row::Case { dir_kind, case } => {
            vec![dir_kind.name().into(), case.workload.name().into(), case.queues.to_string(), case.depth.to_string()]
        }
        Row::Guest { workload } => vec![workload.name().into()],
    }
}

/// One CSV line per run.
pub fn csv(r: &Results) -> String {
    let (keys, figures) = columns(r.meta.level);
    let mut names: Vec<&str> = keys.to_vec();
    names.extend(["contender", "rep"]);
    names.extend(figures.iter().map(|c| match c {
        Column::Figure(name, _) => *name,
        Column::Unit => "unit",
    }));
    names.push("error");
    let mut s = names.join(",");
    s.push('\n');
    for x in &r.samples {
        let mut cells = row_cells(&x.row);
        cells.extend([x.contender.name().to_string(), x.rep.to_string()]);
        cells.extend(figures.iter().map(|c| match (c, &x.metrics) {
            (Column::Figure(_, f), Some(m)) => f(m),
            (Column::Figure(..), None) => String::new(),
            (Column::Unit, _) => x.row.rate_label().to_string(),
        }));
        cells.push(match &x.metrics {
            Some(_) => String::new(),
            None => format!("\"{}\"", x.error.clone().unwrap_or_default().replace(['"', '\n'], " ")),
        });
        let _ = writeln!(s, "{}", cells.join(","));
    }
    s
}

#[derive(Serialize)]
struct JsonOut<'a> {
    results: &'a Results,
    summaries: &'a [Summary],
}

/// The level's Markdown report.
pub fn markdown(r: &Results, sums: &[Summary]) -> String {
    match &r.meta.setup {
        Setup::Daemons(d) => level1_report::markdown(r, d, sums),
        Setup::Guest(g) => level2_report::markdown(r, g, sums),
    }
}

/// Writes `levelN.{md,json,csv}` under `out`, and `levelN.svg` when the
/// chart has something to draw; returns the paths written.
pub fn write_all(out: &Path, r: &Results) -> Result<Vec<PathBuf>, Error> {
    let sums = summarize(r);
    let level = r.meta.level;
    std::fs::create_dir_all(out).ctx(|| format!("mkdir {}", out.display()))?;
    let md = out.join(format!("level{level}.md"));
    std::fs::write(&md, markdown(r, &sums)).ctx(|| format!("writing {}", md.display()))?;
    let json = out.join(format!("level{level}.json"));
    let text = serde_json::to_string_pretty(&JsonOut { results: r, summaries: &sums })
        .map_err(|source| Error::Json { path: json.clone(), source })?;
    std::fs::write(&json, text).ctx(|| format!("writing {}", json.display()))?;
    let csv_path = out.join(format!("level{level}.csv"));
    std::fs::write(&csv_path, csv(r)).ctx(|| format!("writing {}", csv_path.display()))?;
    let mut written = vec![md, json, csv_path];
    let svg = out.join(format!("level{level}.svg"));
    let title =
        format!("avpfs level {level} ({}, {} repetitions, {})", r.meta.machine.avpfs_rev, r.meta.reps, r.meta.date);
    let drawn = match &r.meta.setup {
        Setup::Daemons(_) => chart::level1(&svg, &sums, &r.dir_kinds(), &title)?,
        Setup::Guest(_) => {
            let rows: Vec<_> = r
                .rows
                .iter()
                .filter_map(|row| match row {
                    Row::Guest { workload } => Some(*workload),
                    Row::Case { .. } => None,
                })
                .collect();
            chart::level2(&svg, &rows, &sums, &title)?
        }
    };
    if drawn {
        written.push(svg);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::fixtures;

    #[test]
    fn csv_has_each_levels_columns_and_a_line_per_run() {
        let c = csv(&fixtures::level1());
        assert_eq!(c.lines().count(), 7);
        assert!(c.starts_with(
            "dir_kind,workload,queues,depth,contender,rep,ops,units,wall_s,rate,unit,p50_us,p99_us,cpu_us_per_op,\
             fe_cpu_us_per_op,error\n"
        ));
        assert!(
            c.contains("\ntmpfs,lookup,1,1,avpfs,0,10,10,0.076923,130.000,ops/s,7692.308,15384.615,5.0000,1.0000,\n"),
            "{c}"
        );
        let c = csv(&fixtures::level2());
        assert_eq!(c.lines().count(), 1 + 19);
        assert!(c.starts_with("workload,contender,rep,seconds,ops,bytes,rate,unit,error\n"));
        assert!(c.contains("\ncreate,avpfs,0,1.000000,100,1000000,100.000,ops/s,\n"), "{c}");
        assert!(c.ends_with("\ntar,9p,0,,,,,ops/s,\"boom\"\n"), "{c}");
    }

    #[test]
    fn both_levels_write_their_four_files() {
        let tmp = tempfile::tempdir().unwrap();
        for (level, r) in [(1, fixtures::level1()), (2, fixtures::level2())] {
            let written = write_all(tmp.path(), &r).unwrap();
            let names: Vec<String> =
                written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
            assert_eq!(names, ["md", "json", "csv", "svg"].map(|e| format!("level{level}.{e}")));
            let svg = std::fs::read_to_string(tmp.path().join(format!("level{level}.svg"))).unwrap();
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains(if level == 1 { "lookup q1 d1" } else { "seqread" }) && svg.contains("<rect"));
            let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&written[1]).unwrap()).unwrap();
            assert_eq!(json["results"]["meta"]["level"], level);
        }
    }
}
