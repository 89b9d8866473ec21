//! `avpfs-9p-mount PORT MOUNTPOINT [-o OPTIONS]`: see the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    match avpfs_9p_mount::run(std::env::args_os().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("avpfs-9p-mount: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
