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
//! ```

use std::path::Path;
use std::process::ExitCode;

use avpfs_conformance::counter::{self, CounterLock};

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
                 --add-under-lock FILE TIMES flock|fcntl | --append FILE TAG TIMES | --check-records FILE TIMES TAG... | --claim DIR TAG COUNT | --take-lock FILE flock|fcntl SECONDS"
            );
            ExitCode::from(2)
        }
    }
}
