//! `avpfs-bench`: see the library crate.

#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = avpfs_bench::run(avpfs_bench::cli::Cli::parse()) {
        eprintln!("avpfs-bench: {e}");
        std::process::exit(1);
    }
}
