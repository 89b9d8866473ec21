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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
        Some("--add-under-lock") if args.len() == 4 => {
            let (Ok(times), Some(lock)) =
                (args[2].parse::<u32>(), avpfs_conformance::counter::CounterLock::from_name(&args[3]))
            else {
                eprintln!("usage: conformance --add-under-lock FILE TIMES flock|fcntl | --append FILE TAG TIMES | --check-records FILE TIMES TAG... | --claim DIR TAG COUNT | --take-lock FILE flock|fcntl SECONDS");
                return ExitCode::from(2);
            };
            match avpfs_conformance::counter::add_under_lock(Path::new(&args[1]), times, lock) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("add-under-lock {}: {e}", args[1]);
                    ExitCode::FAILURE
                }
            }
        }
        Some("--append") if args.len() == 4 => {
            let Ok(times) = args[3].parse::<u32>() else {
                eprintln!("usage: conformance --append FILE TAG TIMES");
                return ExitCode::from(2);
            };
            match avpfs_conformance::counter::append_records(Path::new(&args[1]), &args[2], times) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("append {}: {e}", args[1]);
                    ExitCode::FAILURE
                }
            }
        }
        Some("--take-lock") if args.len() == 4 => {
            let (Some(lock), Ok(secs)) =
                (avpfs_conformance::counter::CounterLock::from_name(&args[2]), args[3].parse::<u64>())
            else {
                eprintln!("usage: conformance --take-lock FILE flock|fcntl SECONDS");
                return ExitCode::from(2);
            };
            let hold = std::time::Duration::from_secs(secs);
            match avpfs_conformance::counter::take_lock(
                Path::new(&args[1]),
                lock,
                "AVPFS-LOCK-WAIT",
                "AVPFS-LOCK-HELD",
                hold,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("take-lock {}: {e}", args[1]);
                    ExitCode::FAILURE
                }
            }
        }
        Some("--claim") if args.len() == 4 => {
            let Ok(count) = args[3].parse::<u32>() else {
                eprintln!("usage: conformance --claim DIR TAG COUNT");
                return ExitCode::from(2);
            };
            match avpfs_conformance::counter::claim(Path::new(&args[1]), &args[2], count) {
                Ok(won) => {
                    println!("AVPFS-CLAIMS created={} renamed={}", won.created, won.renamed);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("claim in {}: {e}", args[1]);
                    ExitCode::FAILURE
                }
            }
        }
        Some("--check-records") if args.len() >= 4 => {
            let Ok(times) = args[2].parse::<u32>() else {
                eprintln!("usage: conformance --check-records FILE TIMES TAG...");
                return ExitCode::from(2);
            };
            let tags: Vec<&str> = args[3..].iter().map(String::as_str).collect();
            let text = std::fs::read_to_string(&args[1]).unwrap_or_default();
            match avpfs_conformance::counter::check_records(&text, &tags, times) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    println!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
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
