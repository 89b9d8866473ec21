//! The project's POSIX conformance suite, run on a plain host directory (the
//! real kernel's answers) and on an avpfs /dev/fuse mount of another
//! directory on the same host file system. Every observation must match.

mod common;

use common::Mounted;

fn run_against_baseline(extra_flags: &[&str]) {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let baseline = tmp.path().join("baseline");
    let share = tmp.path().join("share");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&baseline).unwrap();
    let filter = std::env::var("AVPFS_CASE").ok();
    let expected = avpfs_conformance::run_suite(&baseline, filter.as_deref());
    let mut m = Mounted::start(&share, &mnt, extra_flags);
    let observed = avpfs_conformance::run_suite(&mnt, filter.as_deref());
    let diffs = avpfs_conformance::compare(&expected, &observed);
    let status = m.stop();
    assert!(status.success(), "avpfs exited with {status}");
    assert!(!expected.is_empty());
    if !diffs.is_empty() {
        panic!("{} differences between the host and avpfs {:?}:\n{}", diffs.len(), extra_flags, diffs.join("\n"));
    }
}

/// The default sandbox (namespaces, seccomp kill, capabilities dropped);
/// trusted.* attributes need CAP_SYS_ADMIN, which the host side has.
#[test]
fn posix_suite_matches_the_host_cache_auto() {
    run_against_baseline(&["--xattr", "--cache", "auto", "--modcaps=+sys_admin"]);
}

/// No sandbox at all.
#[test]
fn posix_suite_matches_the_host_cache_never() {
    run_against_baseline(&["--xattr", "--cache", "never", "--sandbox", "none", "--seccomp", "none"]);
}
