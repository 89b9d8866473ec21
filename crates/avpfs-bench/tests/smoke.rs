//! Smoke tests of the whole benchmark pipeline on tiny sizes: they check that
//! it keeps working, never how fast anything is.

use std::path::PathBuf;

use avpfs_bench::cli::Cli;
use avpfs_bench::config::Config;
use avpfs_bench::contenders::Contender;
use avpfs_bench::{report, runner};
use clap::Parser;

fn config(tmp: &std::path::Path, contenders: &str, extra: &[&str]) -> Config {
    let out = tmp.join("out");
    let disk = tmp.to_str().unwrap().to_string();
    let mut args = vec![
        "avpfs-bench",
        "--contenders",
        contenders,
        "--workloads",
        "lookup,getattr",
        "--files",
        "40",
        "--reps",
        "1",
        "--depths",
        "1,4",
        "--queues",
        "2",
        "--dir-kind",
        "disk",
        "--disk-dir",
        &disk,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Config::try_from(Cli::parse_from(args)).unwrap()
}

/// The host baseline needs no daemon: runs in the default test run.
#[test]
fn host_only_run_writes_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "host", &["--no-memory"]);
    let results = runner::run(&cfg).unwrap();
    assert!(results.samples.iter().all(|s| s.metrics.is_some()), "{:?}", results.samples);
    // lookup and getattr, with 1 and 2 threads.
    assert_eq!(results.samples.len(), 4);
    let files = report::write_all(&cfg.out, &results).unwrap();
    let md = std::fs::read_to_string(&files[0]).unwrap();
    assert!(md.contains("| lookup | 1 | 1 | host |"), "{md}");
}

fn avpfs_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AVPFS_BIN") {
        return Some(p.into());
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .take(3)
        .flat_map(|d| [d.join("release/avpfs"), d.join("debug/avpfs"), d.join("avpfs")])
        .find(|p| p.is_file())
}

/// One workload against the avpfs daemon, with tiny sizes. Ignored by
/// default because it needs the avpfs binary built first (`cargo build
/// --release --bin avpfs`, or `AVPFS_BIN=path`), and runs as root:
/// `cargo test -p avpfs-bench --test smoke -- --ignored`.
#[test]
#[ignore = "needs the avpfs binary (cargo build --release --bin avpfs, or AVPFS_BIN)"]
fn avpfs_runs_a_tiny_benchmark() {
    let bin = avpfs_bin().expect("no avpfs binary: cargo build --release --bin avpfs, or set AVPFS_BIN");
    let tmp = tempfile::tempdir().unwrap();
    let bin = bin.to_str().unwrap().to_string();
    let cfg = config(tmp.path(), "avpfs,host", &["--avpfs-bin", &bin]);
    let results = runner::run(&cfg).unwrap();
    let failed: Vec<_> = results.samples.iter().filter(|s| s.metrics.is_none()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    let avpfs = results.samples.iter().filter(|s| s.contender == Contender::Avpfs).count();
    // lookup and getattr at q1 d1, q1 d4 and q2 d4.
    assert_eq!(avpfs, 6);
    assert!(results.memory.iter().all(|m| m.error.is_none() && m.files == 40), "{:?}", results.memory);
}
