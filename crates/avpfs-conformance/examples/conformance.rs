//! Runs the suite on two directories and prints the differences.
//!
//! ```text
//! cargo run -p avpfs-conformance --example conformance -- BASELINE CANDIDATE [FILTER]
//! cargo run -p avpfs-conformance --example conformance -- --dump DIR [FILTER]
//! cargo run -p avpfs-conformance --example conformance -- --escape MOUNTPOINT
//! cargo run -p avpfs-conformance --example conformance -- --add-under-lock FILE TIMES flock|fcntl
//! cargo run -p avpfs-conformance --example conformance -- --append FILE TAG TIMES
//! cargo run -p avpfs-conformance --example conformance -- --claim DIR TAG COUNT
//! cargo run -p avpfs-conformance --example conformance -- --take-lock FILE flock|fcntl SECONDS
//! cargo run -p avpfs-conformance --example conformance -- --sum PATH...
//! cargo run -p avpfs-conformance --example conformance -- --install SRC DEST
//! cargo run -p avpfs-conformance --example conformance -- --exchange A B
//! cargo run -p avpfs-conformance --example conformance -- --verify-versions PATH SECONDS SUM... [OPTIONS]
//! cargo run -p avpfs-conformance --example conformance -- --vis-prepare DIR ROUNDS
//! cargo run -p avpfs-conformance --example conformance -- --vis-watch|--vis-measure DIR MODE PLAN
//! cargo run -p avpfs-conformance --example conformance -- --vis-write DIR PLAN
//! cargo run -p avpfs-conformance --example conformance -- --vis-table FILE...
//! ```
//!
//! The software-update commands (`avpfs_conformance::update`): `--sum`
//! prints the checksum of each file or flat directory; `--install` copies
//! SRC over DEST by writing beside, fsync and rename; `--exchange` swaps two
//! names with `renameat2(RENAME_EXCHANGE)`; `--verify-versions` reads PATH
//! again and again for up to SECONDS and fails if it ever reads content
//! that is none of the SUMs. Its options: `--hold` (keep PATH open),
//! `--period-ms N` (pause between reads, default 50), `--tag TAG` (its name
//! in what it prints), `--marks DIR` (stop at `DIR/stop`, count reads older
//! than `DIR/changed`) and `--ack` (create `DIR/seen-TAG-vN`).
//!
//! The visibility commands (`avpfs_conformance::visibility`): the host
//! prepares the rounds, guest B watches (MODE: its `--cache`), guest A
//! writes the rounds marked `a` in PLAN (e.g. `hahaha`), the host measures
//! and judges, and `--vis-table` turns the measured lines into a table.

use std::path::Path;
use std::process::ExitCode;

use avpfs_conformance::counter::{self, CounterLock};
use avpfs_conformance::update::{self, Marks, Verify};
use avpfs_conformance::visibility::{self, Mode, Sample};

/// Exit 2 after a usage line for one command.
fn usage(command: &str) -> ExitCode {
    eprintln!("usage: conformance {command}");
    ExitCode::from(2)
}

/// Exit 0, or 1 after naming `what` failed on `target` and why.
fn finish(what: &str, target: &str, r: std::io::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what} {target}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 0, or 1 after printing why `r` failed its check.
fn judge(what: &str, r: std::io::Result<Result<(), String>>) -> ExitCode {
    match r {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(wrong)) => {
            println!("{what} FAILED: {wrong}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{what}: {e}");
            ExitCode::FAILURE
        }
    }
}

const VERIFY_USAGE: &str =
    "--verify-versions PATH SECONDS SUM... [--hold] [--period-ms N] [--tag TAG] [--marks DIR [--ack]]";

/// Parses the arguments of `--verify-versions` (after the command).
fn parse_verify(args: &[String]) -> Option<Verify> {
    let (path, secs) = (args.first()?, args.get(1)?.parse().ok()?);
    let sums: Vec<&String> = args[2..].iter().take_while(|a| !a.starts_with("--")).collect();
    let mut v = Verify {
        path: path.into(),
        versions: sums.iter().map(|s| update::parse_sum(s)).collect::<Option<_>>()?,
        hold: false,
        period: std::time::Duration::from_millis(50),
        duration: std::time::Duration::from_secs(secs),
        marks: None,
        tag: path.clone(),
    };
    let mut ack = false;
    let mut opts = args[2 + sums.len()..].iter();
    while let Some(o) = opts.next() {
        match o.as_str() {
            "--hold" => v.hold = true,
            "--ack" => ack = true,
            "--period-ms" => v.period = std::time::Duration::from_millis(opts.next()?.parse().ok()?),
            "--tag" => v.tag = opts.next()?.clone(),
            "--marks" => v.marks = Some(Marks { dir: opts.next()?.into(), ack: None }),
            _ => return None,
        }
    }
    if ack {
        v.marks.as_mut()?.ack = Some(v.tag.clone());
    }
    (!v.versions.is_empty()).then_some(v)
}

/// The visibility commands: `--vis-*`.
fn visibility_command(command: &str, args: &[String]) -> ExitCode {
    let dir = Path::new(args.first().map_or("", String::as_str));
    let mode_plan = || match (args.get(1).and_then(|m| Mode::from_name(m)), args.get(2)) {
        (Some(mode), Some(plan)) if args.len() == 3 && visibility::valid_plan(plan) => Some((mode, plan.as_str())),
        _ => None,
    };
    match command {
        "--vis-prepare" => match args.get(1).map(|n| n.parse()) {
            Some(Ok(rounds)) if args.len() == 2 => finish("vis-prepare", &args[0], visibility::prepare(dir, rounds)),
            _ => usage("--vis-prepare DIR ROUNDS"),
        },
        "--vis-write" if args.len() == 2 && visibility::valid_plan(&args[1]) => {
            finish("vis-write", &args[0], visibility::write_rounds(dir, &args[1]))
        }
        "--vis-write" => usage("--vis-write DIR PLAN"),
        "--vis-watch" => match mode_plan() {
            Some((mode, plan)) => {
                judge("vis-watch", visibility::watch(dir, mode, plan).map(|w| visibility::check_watch(mode, &w)))
            }
            None => usage("--vis-watch DIR never|metadata|auto|always PLAN"),
        },
        "--vis-measure" => match mode_plan() {
            Some((mode, plan)) => {
                judge("vis-measure", visibility::measure(dir, mode, plan).map(|s| visibility::check_samples(&s)))
            }
            None => usage("--vis-measure DIR never|metadata|auto|always PLAN"),
        },
        "--vis-table" if !args.is_empty() => {
            let mut samples = Vec::new();
            for f in args {
                match std::fs::read_to_string(f) {
                    Ok(text) => samples.extend(text.lines().filter_map(Sample::parse)),
                    Err(e) => return finish("vis-table", f, Err(e)),
                }
            }
            print!("{}", visibility::table(&samples));
            ExitCode::SUCCESS
        }
        _ => usage("--vis-table FILE..."),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The file or directory of the counter commands.
    let path = Path::new(args.get(1).map_or("", String::as_str));
    match args.first().map(String::as_str) {
        Some("--dump") if args.len() >= 2 => {
            let r = avpfs_conformance::run_suite(Path::new(&args[1]), args.get(2).map(String::as_str));
            print!("{}", avpfs_conformance::format_results(&r));
            ExitCode::SUCCESS
        }
        Some("--escape") if args.len() == 2 => {
            let r = avpfs_conformance::run_escape_suite(Path::new(&args[1]));
            print!("{}", avpfs_conformance::format_results(&r));
            let v = avpfs_conformance::violations(&r);
            for l in &v {
                println!("VIOLATION {l}");
            }
            if v.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some("--add-under-lock") if args.len() == 4 => match (args[2].parse(), CounterLock::from_name(&args[3])) {
            (Ok(times), Some(lock)) => finish("add-under-lock", &args[1], counter::add_under_lock(path, times, lock)),
            _ => usage("--add-under-lock FILE TIMES flock|fcntl"),
        },
        Some("--append") if args.len() == 4 => match args[3].parse() {
            Ok(times) => finish("append", &args[1], counter::append_records(path, &args[2], times)),
            Err(_) => usage("--append FILE TAG TIMES"),
        },
        Some("--take-lock") if args.len() == 4 => match (CounterLock::from_name(&args[2]), args[3].parse()) {
            (Some(lock), Ok(secs)) => {
                let hold = std::time::Duration::from_secs(secs);
                finish(
                    "take-lock",
                    &args[1],
                    counter::take_lock(path, lock, "AVPFS-LOCK-WAIT", "AVPFS-LOCK-HELD", hold),
                )
            }
            _ => usage("--take-lock FILE flock|fcntl SECONDS"),
        },
        Some("--claim") if args.len() == 4 => match args[3].parse() {
            Ok(count) => finish(
                "claim in",
                &args[1],
                counter::claim(path, &args[2], count)
                    .map(|won| println!("AVPFS-CLAIMS created={} renamed={}", won.created, won.renamed)),
            ),
            Err(_) => usage("--claim DIR TAG COUNT"),
        },
        Some("--check-records") if args.len() >= 4 => match args[2].parse() {
            Ok(times) => {
                let tags: Vec<&str> = args[3..].iter().map(String::as_str).collect();
                let text = std::fs::read_to_string(&args[1]).unwrap_or_default();
                match counter::check_records(&text, &tags, times) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        println!("{e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(_) => usage("--check-records FILE TIMES TAG..."),
        },
        Some("--sum") if args.len() >= 2 => {
            for p in &args[1..] {
                match update::content_sum(Path::new(p)) {
                    Ok(sum) => println!("{}  {p}", update::format_sum(sum)),
                    Err(e) => return finish("sum of", p, Err(e)),
                }
            }
            ExitCode::SUCCESS
        }
        Some("--install") if args.len() == 3 => finish("install", &args[2], update::install(path, Path::new(&args[2]))),
        Some("--exchange") if args.len() == 3 => {
            finish("exchange", &args[1], update::exchange(path, Path::new(&args[2])))
        }
        Some("--verify-versions") => match parse_verify(&args[1..]) {
            Some(v) => match update::verify_versions(&v) {
                Ok(tally) => {
                    println!("{}", tally.line(&v.tag));
                    if tally.clean() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => finish("verify-versions", &args[1], Err(e)),
            },
            None => usage(VERIFY_USAGE),
        },
        Some(c) if c.starts_with("--vis-") => visibility_command(c, &args[1..]),
        Some(_) if args.len() >= 2 => {
            let filter = args.get(2).map(String::as_str);
            let base = avpfs_conformance::run_suite(Path::new(&args[0]), filter);
            let cand = avpfs_conformance::run_suite(Path::new(&args[1]), filter);
            let diffs = avpfs_conformance::compare(&base, &cand);
            for d in &diffs {
                println!("{d}");
            }
            println!("{} cases, {} differences", base.len(), diffs.len());
            if diffs.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!(
                "usage: conformance BASELINE CANDIDATE [FILTER] | --dump DIR [FILTER] | --escape MOUNTPOINT | \
                 --add-under-lock FILE TIMES flock|fcntl | --append FILE TAG TIMES | --check-records FILE TIMES TAG... | --claim DIR TAG COUNT | --take-lock FILE flock|fcntl SECONDS | \
                 --sum PATH... | --install SRC DEST | --exchange A B | {VERIFY_USAGE} | --vis-prepare DIR ROUNDS | \
                 --vis-watch|--vis-measure DIR MODE PLAN | --vis-write DIR PLAN | --vis-table FILE..."
            );
            ExitCode::from(2)
        }
    }
}
