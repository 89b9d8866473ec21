//! Writes the seed corpus: `gen_corpus [DIR]` (default: the `corpus`
//! directory of the fuzz project) gets `fuse_request/` and
//! `descriptor_chain/`, `virtio_request/` and `p9_codec/`, one file per seed. Existing seed files are
//! overwritten; other files are left alone.

use std::path::PathBuf;
use std::process::ExitCode;

fn run() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let sets = [
        ("fuse_request", avpfs_fuzz::seeds::fuse_requests()),
        ("descriptor_chain", avpfs_fuzz::seeds::descriptor_chains()),
        ("virtio_request", avpfs_fuzz::seeds::virtio_requests()),
        ("p9_codec", avpfs_fuzz::p9::seeds()),
        ("p9_server", avpfs_fuzz::p9_server::seeds()),
    ];
    for (target, seeds) in sets {
        let out = dir.join(target);
        std::fs::create_dir_all(&out)?;
        let mut bytes = 0;
        for (name, data) in &seeds {
            std::fs::write(out.join(format!("seed-{name}")), data)?;
            bytes += data.len();
        }
        println!("{}: {} seeds, {bytes} bytes", out.display(), seeds.len());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_corpus: {e}");
            ExitCode::FAILURE
        }
    }
}
