//! Locks between clients of one tree, on the host: a process on the avpfs
//! `/dev/fuse` mount and a process on the shared directory itself, two
//! processes on the mount, and processes on two mounts of one tree by two
//! daemons, add at once to one counter under flock and under
//! fcntl locks, through a fresh open each time. The count ends exact only if
//! the locks avpfs takes are host locks that exclude the host's own.
//! (`--cache never`: every read goes to the daemon, so the count measures
//! the locks, not the mount's page cache.) The real-guest counterpart, two
//! guests at once, is in `scripts/guest/test-guest.sh`.

mod common;

use std::path::{Path, PathBuf};

use avpfs_conformance::counter::{add_under_lock, CounterLock};
use common::Mounted;

const TIMES: u32 = 300;

/// Adds `TIMES` to the counter at `here` in this process and `TIMES` at
/// `there` (the same file, seen through another path) in a child process,
/// at once; returns the file's content. A child that fails leaves the count
/// short.
fn race(here: &Path, there: PathBuf, lock: CounterLock) -> String {
    let child = avpfs_conformance::proc::spawn(None, move |_, _| add_under_lock(&there, TIMES, lock).unwrap()).unwrap();
    add_under_lock(here, TIMES, lock).unwrap();
    child.join();
    std::fs::read_to_string(here).unwrap()
}

#[test]
fn counters_shared_by_the_mount_and_the_host_are_exact() {
    let t = tempfile::tempdir().unwrap();
    let (share, mnt) = (t.path().join("share"), t.path().join("mnt"));
    let _m = Mounted::start(&share, &mnt, &["--cache", "never"]);
    let expected = format!("{}\n", 2 * TIMES);
    for (lock, name) in [(CounterLock::Flock, "flock"), (CounterLock::Fcntl, "fcntl")] {
        let host = race(&share.join(name), mnt.join(name), lock);
        assert_eq!(host, expected, "{name}: a process on the host and one on the mount");
        let both = format!("{name}-mount");
        let mount = race(&mnt.join(&both), mnt.join(&both), lock);
        assert_eq!(mount, expected, "{name}: two processes on the mount");
    }
}

#[test]
fn counters_shared_through_two_daemons_on_one_tree_are_exact() {
    let t = tempfile::tempdir().unwrap();
    let (share, mnt1, mnt2) = (t.path().join("share"), t.path().join("mnt1"), t.path().join("mnt2"));
    let _m1 = Mounted::start(&share, &mnt1, &["--cache", "never"]);
    let _m2 = Mounted::start(&share, &mnt2, &["--cache", "never"]);
    let expected = format!("{}\n", 2 * TIMES);
    for (lock, name) in [(CounterLock::Flock, "flock"), (CounterLock::Fcntl, "fcntl")] {
        let got = race(&mnt1.join(name), mnt2.join(name), lock);
        assert_eq!(got, expected, "{name}: a process on each daemon's mount");
    }
}
