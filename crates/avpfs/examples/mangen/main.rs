//! Writes avpfs's man pages, made from its command-line definition, into a
//! directory (`make install` runs it; so can a packager):
//!
//! ```sh
//! cargo run -p avpfs --example mangen -- target/man
//! man -l target/man/avpfs.1
//! ```

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

mod pages;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: mangen OUTDIR");
        return ExitCode::from(2);
    };
    match pages::write_pages(&PathBuf::from(dir)) {
        Ok(pages) => {
            for page in pages {
                println!("{}", page.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mangen: {e}");
            ExitCode::FAILURE
        }
    }
}
