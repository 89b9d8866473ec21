//! avpfs-bench: avpfs side by side with virtiofsd and the host.
//!
//! Level 1 (this crate): each vhost-user-fs daemon is started on a fresh
//! socket and driven by the in-process front end of `vhost-harness` with
//! the same FUSE request streams; the host baseline runs the equivalent
//! system calls. Per workload it reports rate, p50/p99 latency, the daemon's
//! CPU time per operation, ratios to virtiofsd and to the host, and each
//! daemon's memory per cached inode; as Markdown, SVG, JSON and CSV.
//!
//! Level 2 ([`level2`]): one guest per contender per repetition under QEMU
//! (`scripts/guest/run-guest.sh`), avpfs and virtiofsd against QEMU's own
//! 9p server; the guest runner (`examples/guest-workload.rs`, protocol in
//! [`guest`]) times each workload.
//!
//! Layers, top down: [`cli`] (the arguments, made into a [`config::Config`],
//! which every layer below takes as a parameter and none imports back) →
//! [`runner`] (level 1: repetitions, interleaving, memory probe) or
//! [`level2`] (the guests) → [`workloads`] (FUSE request streams) over
//! [`engine`] (slots and the closed loop over the harness) and [`host`] (the
//! system-call baseline) → [`contenders`] (daemon processes), [`share`] (the
//! shared directory), [`procstat`] (/proc).
//!
//! Both levels produce the one result model of [`results`], summarized by
//! [`summary`] (medians, ratios, [`stats`]) and written by [`report`]: the
//! level's Markdown ([`level1_report`], [`level2_report`], with the parts
//! they share in [`markdown`]), its chart ([`chart`]), JSON and CSV.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod chart;
pub mod cli;
pub mod config;
pub mod contenders;
pub mod engine;
pub mod error;
pub mod guest;
pub mod guest_cost;
pub mod host;
pub mod level1_report;
pub mod level2;
pub mod level2_report;
pub mod markdown;
pub mod procstat;
pub mod report;
pub mod results;
pub mod runner;
pub mod share;
pub mod stats;
pub mod summary;
pub mod workloads;

pub use error::Error;

/// Runs the benchmark the command line asks for and writes the results.
pub fn run(cli: cli::Cli) -> Result<(), Error> {
    let cfg = config::Config::try_from(cli)?;
    let results = if cfg.level == 2 { level2::run(&cfg)? } else { runner::run(&cfg)? };
    for p in report::write_all(&cfg.out, &results)? {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
