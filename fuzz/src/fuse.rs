//! The `fuse_request` target: FUSE request decoding and dispatch through
//! `avpfs_server::Server::handle_message`, after a valid FUSE_INIT.
//!
//! The input is a sequence of requests (see [`crate::frames`]). Each run
//! starts from a fresh server over a fresh file system: the passthrough on
//! the sandboxed tmpfs share (feature `passthrough`, see [`crate::sandbox`])
//! or the in-memory [`MemFs`]. Every reply is checked by
//! [`replies::check`]; no reply may carry the content of the sentinel files
//! outside the share; after the run nothing outside the share has changed.

use avpfs_server::{FileSystem, Server, SliceReader, VecWriter, MAX_REQUEST_SIZE};
use fuse_abi::{opcode, InHeader};
use zerocopy::FromBytes;

use crate::frames::{init_request, split_frames, Ids, ALL_CLIENT_FLAGS};
use crate::replies;

/// The `unique` of the harness's own FUSE_INIT.
pub const INIT_UNIQUE: u64 = u64::MAX;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// How a run treats requests that may block for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// Serve them (the file system never blocks).
    Serve,
    /// Skip SETLKW: with real locks it waits for a conflicting lock that no
    /// one will release in a single-threaded run (a daemon answers it when
    /// the guest sends INTERRUPT from another request queue).
    SkipSetlkw,
}

/// One request and the outcome of it, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The opcode (0 for a frame without a complete header).
    pub opcode: u32,
    /// The reply's error (negative errno), 0 on success, `None` without a reply.
    pub error: Option<i32>,
    /// The reply body.
    pub body: Vec<u8>,
}

/// Reads the number of nodes and of handles a file system holds for the client.
pub type Counts<F> = fn(&F) -> (usize, usize);

/// What a run checks beyond the replies themselves.
pub struct Oracle<'a, F> {
    /// Bytes no reply may contain (the content of files outside the share).
    pub secret: Option<&'a [u8]>,
    /// How requests that may block are treated.
    pub blocking: Blocking,
    /// The number of nodes and of handles the file system holds for the
    /// client: a request that fails takes no reference and opens no handle,
    /// one that succeeds at most those its reply hands out.
    pub counts: Option<Counts<F>>,
}

/// Initializes a session on `fs`, sends the requests of `data` and checks
/// every reply.
pub fn exercise<F: FileSystem>(fs: F, data: &[u8], oracle: &Oracle<'_, F>) {
    exercise_with(fs, data, oracle, &mut |_| {});
}

/// Checks that a request took at most the references and handles its reply
/// hands out (`body`: the body of a successful reply).
fn check_counts(op: u32, body: Option<&[u8]>, before: (usize, usize), after: (usize, usize)) {
    let (new_nodes, new_handles) = match body {
        None => (0, 0),
        Some(body) => match op {
            opcode::LOOKUP | opcode::MKNOD | opcode::MKDIR | opcode::SYMLINK | opcode::LINK => (1, 0),
            opcode::CREATE | opcode::TMPFILE => (1, 1),
            opcode::OPEN | opcode::OPENDIR => (0, 1),
            opcode::READDIRPLUS => (replies::direntplus_nodes(body), 0),
            _ => (0, 0),
        },
    };
    let name = opcode::name(op);
    let outcome = if body.is_some() { "successful" } else { "failed" };
    assert!(after.0 <= before.0 + new_nodes, "a {outcome} {name} took node references: {} -> {}", before.0, after.0);
    assert!(after.1 <= before.1 + new_handles, "a {outcome} {name} opened handles: {} -> {}", before.1, after.1);
}

/// [`exercise`], telling `seen` about every request and its outcome.
pub fn exercise_with<F: FileSystem>(fs: F, data: &[u8], oracle: &Oracle<'_, F>, seen: &mut dyn FnMut(Exchange)) {
    let Oracle { secret, blocking, counts } = *oracle;
    let counts = |server: &Server<F>| counts.map(|c| c(server.fs()));
    let server = Server::new(fs);
    let init = init_request(INIT_UNIQUE, ALL_CLIENT_FLAGS);
    let mut w = VecWriter::new(MAX_REQUEST_SIZE);
    let result = server.handle_message(&mut SliceReader::new(&init), &mut w);
    let ok = replies::check(&init, MAX_REQUEST_SIZE, false, &result, w.as_slice());
    assert!(ok.is_some() && server.is_initialized(), "the harness's FUSE_INIT failed: {result:?} {:?}", w.as_slice());

    // The fuzzer could learn the secret and write it into a share file;
    // then reading it back is no escape.
    let secret = secret.filter(|s| !contains(data, s));
    let mut ids = Ids::default();
    for frame in split_frames(data) {
        let mut f = frame.to_vec();
        ids.resolve_frame(&mut f);
        let header = InHeader::read_from_prefix(&f).ok().map(|(h, _)| h);
        if blocking == Blocking::SkipSetlkw && header.is_some_and(|h| h.opcode == opcode::SETLKW) {
            continue;
        }
        let cap = match header {
            Some(h) if h.padding != 0 => usize::from(h.padding),
            _ => MAX_REQUEST_SIZE,
        };
        let initialized = server.is_initialized();
        let before = counts(&server);
        let mut w = VecWriter::new(cap);
        let result = server.handle_message(&mut SliceReader::new(&f), &mut w);
        let body = replies::check(&f, cap, initialized, &result, w.as_slice());
        if let (Some(before), Some(after), Some(h)) = (before, counts(&server), header) {
            check_counts(h.opcode, body, before, after);
        }
        if let (Some(body), Some(h)) = (body, header) {
            ids.record(h.opcode, body);
        }
        let reply = zerocopy::FromBytes::read_from_prefix(w.as_slice()).ok().map(|(o, _): (fuse_abi::OutHeader, _)| o);
        seen(Exchange {
            opcode: header.map_or(0, |h| h.opcode),
            error: reply.map(|o| o.error),
            body: w.as_slice().get(replies::OUT_HEADER_SIZE..).unwrap_or_default().to_vec(),
        });
        if let Some(s) = secret {
            assert!(!contains(w.as_slice(), s), "a reply carries the content of a file outside the share");
        }
    }
}

#[cfg(feature = "passthrough")]
mod fs {
    use std::sync::{Mutex, OnceLock};

    use avpfs_passthrough::PassthroughFs;
    use avpfs_policy::{Policy, PolicyFs};

    use super::Blocking;
    use crate::sandbox::Share;

    fn share() -> &'static Mutex<Share> {
        static SHARE: OnceLock<Mutex<Share>> = OnceLock::new();
        SHARE.get_or_init(|| {
            let sandbox = std::env::var_os("AVPFS_FUZZ_UNSANDBOXED").is_none();
            Mutex::new(Share::new(sandbox).unwrap_or_else(|e| {
                panic!("cannot set up the sandboxed share ({e}); the fuse_request target needs root")
            }))
        })
    }

    /// The passthrough configuration, and whether the share is read-only:
    /// extended attributes on, the rest as the daemon's defaults;
    /// `AVPFS_FUZZ_PT` (comma-separated) turns on `handles` (file handles
    /// preferred), `readonly` (the passthrough behind a read-only
    /// [`PolicyFs`], as the daemon serves `--readonly`), `writeback`,
    /// `posix_acl`, `killpriv_v2`, `direct_io`, `submounts`, `no_xattr`,
    /// `cache_never`, `cache_always`.
    fn config(root: &std::path::Path) -> (avpfs_passthrough::Config, bool) {
        use avpfs_passthrough::{CachePolicy, Config, FileHandleMode};
        let mut c = Config { xattr: true, ..Config::new(root) };
        let mut readonly = false;
        let opts = std::env::var("AVPFS_FUZZ_PT").unwrap_or_default();
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "handles" => c.inode_file_handles = FileHandleMode::Prefer,
                "readonly" => readonly = true,
                "writeback" => c.writeback = true,
                "posix_acl" => c.posix_acl = true,
                "killpriv_v2" => c.killpriv_v2 = true,
                "direct_io" => c.allow_direct_io = true,
                "submounts" => c.announce_submounts = true,
                "no_xattr" => c.xattr = false,
                "cache_never" => c.cache = CachePolicy::Never,
                "cache_always" => c.cache = CachePolicy::Always,
                other => panic!("AVPFS_FUZZ_PT: unknown option {other}"),
            }
        }
        (c, readonly)
    }

    /// Runs one input against the passthrough on the sandboxed share.
    pub fn run(data: &[u8]) {
        run_with(data, &mut |_| {});
    }

    /// [`run`], telling `seen` about every request and its outcome.
    pub fn run_with(data: &[u8], seen: &mut dyn FnMut(super::Exchange)) {
        let mut share = share().lock().unwrap_or_else(|e| e.into_inner());
        share.reset().unwrap_or_else(|e| panic!("cannot reset the share: {e}"));
        let (cfg, readonly) = config(share.root());
        let fs = PassthroughFs::new(cfg).unwrap_or_else(|e| panic!("passthrough: {e}"));
        if readonly {
            let policy = Policy { readonly: true, ..Policy::permissive() };
            let oracle = super::Oracle {
                secret: Some(share.secret()),
                blocking: Blocking::SkipSetlkw,
                counts: Some(|fs: &PolicyFs<PassthroughFs>| (fs.inner().node_count(), fs.inner().handle_count())),
            };
            super::exercise_with(PolicyFs::new(fs, policy), data, &oracle, seen);
        } else {
            let oracle = super::Oracle {
                secret: Some(share.secret()),
                blocking: Blocking::SkipSetlkw,
                counts: Some(|fs: &PassthroughFs| (fs.node_count(), fs.handle_count())),
            };
            super::exercise_with(fs, data, &oracle, seen);
        }
        share.check();
    }
}

#[cfg(not(feature = "passthrough"))]
mod fs {
    use super::Blocking;
    use crate::memfs::MemFs;

    /// Runs one input against the in-memory file system.
    pub fn run(data: &[u8]) {
        run_with(data, &mut |_| {});
    }

    /// [`run`], telling `seen` about every request and its outcome.
    pub fn run_with(data: &[u8], seen: &mut dyn FnMut(super::Exchange)) {
        let oracle = super::Oracle { secret: None, blocking: Blocking::Serve, counts: None };
        super::exercise_with(MemFs::populated(), data, &oracle, seen);
    }
}

pub use fs::{run, run_with};
