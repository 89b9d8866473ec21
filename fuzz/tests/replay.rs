//! Replays the seed corpus through the harnesses, without libFuzzer: every
//! seed passes the invariant checks, and the seeds that should succeed do.

use avpfs_fuzz::fuse::{self, Exchange};
use avpfs_fuzz::{chain, seeds};

/// Seeds that contain requests meant to fail.
const EXPECTED_ERRORS: &[&str] = &[
    "init-major-8",
    "lookup",
    "getxattr",
    "release",
    "rename2-into-itself",
    "setxattr-security",
    "destroy",
    "escape-symlinks",
    "escape-fifo",
    "forged-ids",
    "unsupported",
    "malformed-lengths",
    "short-header",
    "small-reply-buffer",
    "as-user",
];

/// One test for all FUSE seeds: with the passthrough, the sandbox (a mount
/// namespace) belongs to the thread that made it.
#[test]
fn fuse_request_seeds_pass_and_succeed() {
    let mut failures = Vec::new();
    for (name, data) in seeds::fuse_requests() {
        let mut log: Vec<Exchange> = Vec::new();
        fuse::run_with(&data, &mut |e| log.push(e));
        assert!(!log.is_empty(), "{name}: no request");
        let errors: Vec<String> = log
            .iter()
            .filter(|e| e.error.is_some_and(|err| err != 0))
            .map(|e| format!("{} -> {:?}", fuse_abi::opcode::name(e.opcode), e.error))
            .collect();
        println!("{name}: {} requests, errors: {errors:?}", log.len());
        if !errors.is_empty() && !EXPECTED_ERRORS.contains(&name) {
            failures.push(format!("{name}: {errors:?}"));
        }
    }
    // The passthrough may refuse some (e.g. when the host file system lacks a feature).
    if cfg!(not(feature = "passthrough")) {
        assert!(failures.is_empty(), "seeds that should succeed failed: {failures:#?}");
    }

    // The READ of the read seed returns the file.
    let data = seeds::fuse_requests().into_iter().find(|s| s.0 == "read").map(|s| s.1).unwrap_or_default();
    let mut log = Vec::new();
    fuse::run_with(&data, &mut |e| log.push(e));
    let read = log.iter().find(|e| e.opcode == fuse_abi::opcode::READ).expect("a READ");
    assert_eq!((read.error, read.body.as_slice()), (Some(0), avpfs_fuzz::sandbox::FILE_CONTENT));
}

#[test]
fn descriptor_chain_seeds_pass() {
    for (_, data) in seeds::descriptor_chains() {
        chain::run(&data);
    }
}

#[test]
fn virtio_request_seeds_pass() {
    use zerocopy::FromBytes;
    for (name, data) in seeds::virtio_requests() {
        let reply = avpfs_fuzz::virtio::run_with(&data).unwrap_or_default();
        let (h, body) = fuse_abi::OutHeader::read_from_prefix(&reply).map_or((None, &[][..]), |(h, b)| (Some(h), b));
        let error = h.map(|h| h.error);
        match name {
            "read" | "read-scattered" => {
                assert_eq!((error, body), (Some(0), avpfs_fuzz::sandbox::FILE_CONTENT), "{name}")
            }
            "read-short-buffer" => {
                assert_eq!((error, body), (Some(0), &avpfs_fuzz::sandbox::FILE_CONTENT[..4]), "{name}")
            }
            "write" | "write-scattered" => {
                assert_eq!((error, body), (Some(0), &[44, 1, 0, 0, 0, 0, 0, 0][..]), "{name}")
            }
            // The write is done, but the reply does not fit: ERANGE.
            "write-small-reply" => assert_eq!((error, body), (Some(-libc::ERANGE), &[][..]), "{name}"),
            "getxattr" => assert_eq!((error, body), (Some(0), &b"value"[..]), "{name}"),
            // No header: the server writes nothing (the backend answers EIO itself).
            "short-request" | "no-reply-room" | "forget" => assert_eq!(error, None, "{name}"),
            _ => assert_eq!(error, Some(0), "{name}"),
        }
    }
}

#[test]
fn corpus_on_disk_matches_the_generator() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, seeds) in [
        ("fuse_request", seeds::fuse_requests()),
        ("descriptor_chain", seeds::descriptor_chains()),
        ("p9_codec", avpfs_fuzz::p9::seeds()),
    ] {
        for (name, data) in seeds {
            let path = dir.join(target).join(format!("seed-{name}"));
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(on_disk == data, "{} is stale: run scripts/fuzz.sh --gen-corpus", path.display());
        }
    }
}

/// A file system that opens a handle and then fails the OPEN anyway.
#[derive(Default)]
struct Leaky {
    handles: std::sync::atomic::AtomicUsize,
}

impl avpfs_server::FileSystem for Leaky {
    fn open(
        &self,
        _: &avpfs_server::Context,
        _: avpfs_server::NodeId,
        _: u32,
        _: bool,
    ) -> std::io::Result<avpfs_server::OpenReply> {
        self.handles.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(std::io::Error::from_raw_os_error(libc::EACCES))
    }
}

#[test]
fn the_counts_oracle_catches_a_handle_leaked_on_an_error_path() {
    use zerocopy::IntoBytes;
    let open = avpfs_fuzz::frames::request(fuse_abi::opcode::OPEN, 1, 2, &[fuse_abi::OpenIn::default().as_bytes()]);
    let oracle = fuse::Oracle {
        secret: None,
        blocking: fuse::Blocking::Serve,
        counts: Some(|fs: &Leaky| (0, fs.handles.load(std::sync::atomic::Ordering::SeqCst))),
    };
    let caught = std::panic::catch_unwind(|| fuse::exercise(Leaky::default(), &open, &oracle));
    let msg = caught.expect_err("the leak went unnoticed").downcast::<String>().map(|s| *s).unwrap_or_default();
    assert!(msg.contains("a failed OPEN opened handles"), "{msg}");
}
