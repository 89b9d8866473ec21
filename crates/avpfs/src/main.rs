//! `avpfs`: see the library crate for the work.

#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = avpfs::cli::Cli::parse();
    if let Err(e) = avpfs::run(cli) {
        eprintln!("avpfs: {e}");
        std::process::exit(1);
    }
}
