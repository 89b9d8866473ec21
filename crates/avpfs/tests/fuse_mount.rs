//! The /dev/fuse front end of the real binary: mount, serve, unmount on SIGTERM.

mod common;

use common::{is_fuse_mount, Mounted};

#[test]
fn mounts_serves_and_unmounts_on_sigterm() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let share = tmp.path().join("share");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("hello"), b"from the host\n").unwrap();
    let mut m = Mounted::start(&share, &mnt, &[]);
    assert_eq!(std::fs::read(mnt.join("hello")).unwrap(), b"from the host\n");
    std::fs::write(mnt.join("new"), b"through fuse").unwrap();
    assert_eq!(std::fs::read(share.join("new")).unwrap(), b"through fuse");
    let status = m.stop();
    assert!(status.success(), "avpfs exit status {status}");
    assert!(!is_fuse_mount(&mnt), "mount is gone after SIGTERM");
}

#[test]
fn readonly_share_refuses_writes_with_erofs() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let share = tmp.path().join("share");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("f"), b"x").unwrap();
    let _m = Mounted::start(&share, &mnt, &["--readonly"]);
    assert_eq!(std::fs::read(mnt.join("f")).unwrap(), b"x");
    let err = std::fs::write(mnt.join("g"), b"y").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert!(!share.join("g").exists());
}

/// READDIR and READDIRPLUS requests the daemon has logged so far.
fn listing_requests(log: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines().filter(|l| l.contains("<- READDIR ") || l.contains("<- READDIRPLUS ")).count()
}

fn list(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// With the default `--cache auto`, the kernel keeps the listing of a
/// settled directory (unchanged for over 2 s) across opens, and a change
/// made on the host shows once the attribute timeout (1 s) has passed; a
/// directory that just changed is read from the host on every pass.
#[test]
fn settled_directory_listings_are_cached_until_the_host_changes_them() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let share = tmp.path().join("share");
    let mnt = tmp.path().join("mnt");
    let log = tmp.path().join("avpfs.log");
    for d in ["settled", "fresh"] {
        std::fs::create_dir_all(share.join(d)).unwrap();
        for i in 0..300 {
            std::fs::write(share.join(d).join(format!("file-with-a-longish-name-{i:04}")), b"").unwrap();
        }
    }
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(share.join("settled")).unwrap().set_modified(hour_ago).unwrap();
    let _m = Mounted::start_logging_at(&share, &mnt, &[], Some(&log), "avpfs_server=debug");

    let settled = mnt.join("settled");
    let first = list(&settled);
    assert_eq!(first.len(), 300);
    let one_pass = listing_requests(&log);
    assert!(one_pass >= 2, "a listing of 300 entries takes several requests ({one_pass})");
    for _ in 0..4 {
        assert_eq!(list(&settled), first);
    }
    assert_eq!(listing_requests(&log), one_pass, "later passes over a settled directory come from the cache");

    // A change on the host: a new mtime, seen once the attributes time out.
    std::fs::write(share.join("settled/added-on-the-host"), b"").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let after = list(&settled);
    assert_eq!(after.len(), 301);
    assert!(after.iter().any(|n| n == "added-on-the-host"), "the host's new file is listed");

    // A directory changed just now is listed from the host every time.
    std::fs::write(share.join("fresh/just-now"), b"").unwrap();
    let before = listing_requests(&log);
    assert_eq!(list(&mnt.join("fresh")).len(), 301);
    let pass = listing_requests(&log) - before;
    assert_eq!(list(&mnt.join("fresh")).len(), 301);
    assert_eq!(listing_requests(&log) - before, 2 * pass, "a fresh directory is not cached");
}
