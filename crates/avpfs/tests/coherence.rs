//! Coherence between clients of one tree, on the host: a change made on the
//! shared directory itself, or through another daemon's mount of the same
//! tree, becomes visible through an avpfs `/dev/fuse` mount within the
//! share's cache policy: at the next look with `--cache never`, within the
//! one-second attribute and entry timeout (plus slack) with `metadata` and
//! `auto`. A file replaced by rename keeps its old content for whoever has
//! it open. (The real-guest counterpart is in `scripts/guest/test-guest.sh`.)

mod common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Mounted;

/// How long `metadata` and `auto` may take: their 1 s timeout, plus slack
/// for a loaded machine (this is a bound, not a timing measurement).
const CACHED_BOUND: Duration = Duration::from_secs(4);

/// Polls `seen` every 10 ms until it holds; returns how many polls failed
/// first, or `None` if it never held within `bound`.
fn polls_until(bound: Duration, mut seen: impl FnMut() -> bool) -> Option<u32> {
    let deadline = Instant::now() + bound;
    let mut failed = 0;
    loop {
        if seen() {
            return Some(failed);
        }
        if Instant::now() > deadline {
            return None;
        }
        failed += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn content(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Checks, through `seen_via`, the changes made through `changed_via` (the
/// same tree): new content of a file, a new name, a removed name.
fn check_visibility(cache: &str, changed_via: &Path, seen_via: &Path) {
    std::fs::write(changed_via.join("f"), "old").unwrap();
    std::fs::write(changed_via.join("gone"), "x").unwrap();
    // Warm the mount's caches: the content, the name that is not there yet.
    assert_eq!(content(&seen_via.join("f")).as_deref(), Some("old"));
    assert!(!seen_via.join("new").exists() && seen_via.join("gone").exists());
    std::thread::sleep(Duration::from_millis(50));

    std::fs::write(changed_via.join("f"), "new").unwrap();
    std::fs::write(changed_via.join("new"), "n").unwrap();
    std::fs::remove_file(changed_via.join("gone")).unwrap();
    let bound = if cache == "never" { Duration::ZERO } else { CACHED_BOUND };
    for (what, check) in [
        ("new content", Box::new(|| content(&seen_via.join("f")).as_deref() == Some("new")) as Box<dyn Fn() -> bool>),
        ("a new name", Box::new(|| seen_via.join("new").exists())),
        ("a removed name", Box::new(|| !seen_via.join("gone").exists())),
    ] {
        match polls_until(bound, check) {
            Some(n) => eprintln!("cache {cache}: {what} seen after {n} failed polls"),
            None => panic!("cache {cache}: {what} not seen within {bound:?}"),
        }
    }
}

#[test]
fn host_changes_show_through_the_mount_within_the_cache_policy() {
    for cache in ["never", "metadata", "auto"] {
        let t = tempfile::tempdir().unwrap();
        let (share, mnt) = (t.path().join("share"), t.path().join("mnt"));
        let _m = Mounted::start(&share, &mnt, &["--cache", cache]);
        check_visibility(cache, &share, &mnt);
    }
}

#[test]
fn one_daemons_changes_show_through_another_daemons_mount() {
    for cache in ["never", "auto"] {
        let t = tempfile::tempdir().unwrap();
        let (share, mnt1, mnt2) = (t.path().join("share"), t.path().join("mnt1"), t.path().join("mnt2"));
        let _m1 = Mounted::start(&share, &mnt1, &["--cache", cache]);
        let _m2 = Mounted::start(&share, &mnt2, &["--cache", cache]);
        check_visibility(cache, &mnt1, &mnt2);
    }
}

#[test]
fn a_file_replaced_by_rename_keeps_its_old_content_for_open_readers() {
    for cache in ["never", "auto"] {
        let t = tempfile::tempdir().unwrap();
        let (share, mnt) = (t.path().join("share"), t.path().join("mnt"));
        let _m = Mounted::start(&share, &mnt, &["--cache", cache]);
        std::fs::write(share.join("prog"), "version 1").unwrap();
        let mut open = std::fs::File::open(mnt.join("prog")).unwrap();
        // The update: write beside, fsync, rename over.
        let staged = share.join(".prog.new");
        std::fs::write(&staged, "version 2, longer").unwrap();
        std::fs::File::open(&staged).unwrap().sync_all().unwrap();
        std::fs::rename(&staged, share.join("prog")).unwrap();
        let mut old = String::new();
        open.read_to_string(&mut old).unwrap();
        assert_eq!(old, "version 1", "cache {cache}: the open file changed under its reader");
        let bound = if cache == "never" { Duration::ZERO } else { CACHED_BOUND };
        let seen = polls_until(bound, || content(&mnt.join("prog")).as_deref() == Some("version 2, longer"));
        assert!(seen.is_some(), "cache {cache}: new opens do not see the new version");
    }
}
