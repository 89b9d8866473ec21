//! What an extra guest costs (issue 20): memory, threads and descriptors
//! of one `avpfs --config` process serving 1, 4 and 16 idle guests against
//! as many separate daemons, and the cost of a cached inode for the first
//! and a second guest of one daemon. The work is in
//! `avpfs_bench::guest_cost`; this is its command line.
//!
//! ```sh
//! cargo build --release --bin avpfs
//! cargo run --release -p avpfs-bench --example guest-cost -- --out bench/results/guest-cost
//! ```

#![forbid(unsafe_code)]

use std::path::PathBuf;

use avpfs_bench::contenders::locate_avpfs;
use avpfs_bench::guest_cost::{self, CostConfig};
use clap::Parser;

/// Measures the memory, threads and descriptors per idle guest and per
/// cached inode (as root: the daemons run in their namespace sandbox).
#[derive(Debug, Parser)]
#[command(name = "guest-cost")]
struct Args {
    /// Where to write guest-cost.md, .json and .csv.
    #[arg(long, default_value = "bench/results/guest-cost")]
    out: PathBuf,
    /// The avpfs binary (default: target/release/avpfs).
    #[arg(long)]
    avpfs_bin: Option<PathBuf>,
    /// Guest counts, the first being the base of the cost per extra guest.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    guests: Vec<usize>,
    /// Rounds (every configuration once per round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Files each of the two guests looks up in the per-inode measurement
    /// (0: skip it). The daemon holds two O_PATH descriptors per file: 9 000
    /// fits a hard RLIMIT_NOFILE of 20 000.
    #[arg(long, default_value_t = 9_000)]
    files: usize,
    /// --rlimit-nofile of the per-inode daemon (default: the daemon's own,
    /// the hard limit; raising it needs CAP_SYS_RESOURCE).
    #[arg(long)]
    inode_rlimit_nofile: Option<u64>,
    /// An argument added to every daemon's command line (repeatable).
    #[arg(long = "daemon-arg", allow_hyphen_values = true)]
    daemon_args: Vec<String>,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let result = locate_avpfs(args.avpfs_bin.as_deref()).and_then(|avpfs| {
        let cfg = CostConfig {
            avpfs,
            out: args.out.clone(),
            guests: args.guests.clone(),
            rounds: args.rounds,
            files: args.files,
            extra_args: args.daemon_args.clone(),
            inode_rlimit_nofile: args.inode_rlimit_nofile,
            command_line: std::env::args().collect::<Vec<_>>().join(" "),
        };
        let report = guest_cost::run(&cfg)?;
        guest_cost::write_all(&cfg.out, &report)
    });
    match result {
        Ok(paths) => paths.iter().for_each(|p| eprintln!("wrote {}", p.display())),
        Err(e) => {
            eprintln!("guest-cost: {e}");
            std::process::exit(1);
        }
    }
}
