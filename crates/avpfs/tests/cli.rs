//! The virtiofsd-compatible command line of the real binary.

use std::process::Command;

fn avpfs(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_avpfs")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn print_capabilities_is_the_vhost_user_json_libvirt_reads() {
    let (ok, out, _) = avpfs(&["--print-capabilities"]);
    assert!(ok);
    assert!(out.contains("\"type\": \"fs\""), "{out}");
}

#[test]
fn virtiofsd_translation_flags_are_checked_and_name_the_bad_part() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let sock = tmp.path().join("s");
    let sock = sock.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--translate-uid", "map:0:1000"],
            "--translate-uid map:0:1000: expected map:<guest base>:<host base>:<count>",
        ),
        (&["--translate-gid", "forbid-guest:0:10", "--translate-gid", "map:5:5:1"], "--translate-gid map:5:5:1:"),
        (&["--translate-uid", "squash:0:0:1"], "unknown type \"squash\""),
        (&["--translate-uid", "map:0:0:1", "--posix-acl"], "cannot be used with --posix-acl"),
        (&["--xattrmap", ":ok:all::"], "--xattrmap rule 1: missing fields"),
        (&["--xattrmap", ":map::p: :ok:all:::"], "the map rule must be the last rule"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["--socket-path", sock, "--shared-dir", dir];
        args.extend_from_slice(extra);
        let (ok, _, err) = avpfs(&args);
        assert!(!ok, "{extra:?} must fail");
        assert!(err.contains(expected), "{extra:?}: {err}");
    }
    // The policy file and the flag cannot both set the uid map.
    let policy = tmp.path().join("p.toml");
    std::fs::write(&policy, "[uid]\nmap = [{ guest = 0, host = 1000, count = 1 }]\n").unwrap();
    let p = policy.to_str().unwrap();
    let (ok, _, err) =
        avpfs(&["--socket-path", sock, "--shared-dir", dir, "--policy", p, "--translate-uid", "map:0:0:1"]);
    assert!(!ok);
    assert!(err.contains("--translate-uid and the policy file both set a map"), "{err}");
}

#[test]
fn bad_modcaps_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let sock = tmp.path().join("s");
    let (ok, _, err) = avpfs(&["--socket-path", sock.to_str().unwrap(), "--shared-dir", dir, "--modcaps", "+no_such"]);
    assert!(!ok);
    assert!(err.contains("--modcaps: \"no_such\": unknown capability"), "{err}");
}

#[test]
fn usage_errors_are_reported() {
    let (ok, _, err) = avpfs(&["--socket-path", "/tmp/x"]);
    assert!(!ok);
    assert!(err.contains("--shared-dir is required"), "{err}");
    let (ok, _, err) = avpfs(&["--shared-dir", "/tmp"]);
    assert!(!ok);
    assert!(err.contains("--socket-path, --fd, --fuse-mount or --9p-listen"), "{err}");
    let (ok, _, err) = avpfs(&["--shared-dir", "/tmp", "-o", "cache=sometimes", "--socket-path", "/tmp/x"]);
    assert!(!ok);
    assert!(err.contains("cache=sometimes"), "{err}");
    let (ok, _, err) = avpfs(&["--shared-dir", "/tmp", "--fd", "987"]);
    assert!(!ok);
    assert!(err.contains("--fd 987"), "{err}");
}

#[test]
fn legacy_o_options_fill_the_modern_flags() {
    use avpfs::cli::{CacheArg, Cli};
    use clap::Parser;
    let mut cli =
        Cli::parse_from(["avpfs", "-o", "source=/srv,cache=always,xattr", "-o", "readonly", "--socket-path", "s"]);
    cli.apply_legacy_options().unwrap();
    assert_eq!(cli.shared_dir.as_deref(), Some(std::path::Path::new("/srv")));
    assert_eq!(cli.cache, CacheArg::Always);
    assert!(cli.xattr && cli.readonly);
}

/// What libvirt 9.0 passes for `<filesystem>`'s `<binary>`: cache `none`, a
/// sandbox, lock switches and a source whose commas it doubles.
#[test]
fn legacy_o_options_as_libvirt_writes_them() {
    use avpfs::cli::{CacheArg, Cli, SandboxArg};
    use clap::Parser;
    let mut cli = Cli::parse_from([
        "avpfs",
        "--fd=3",
        "-o",
        "source=/srv/a,,b,,,cache=none,sandbox=chroot,xattr,no_flock,posix_lock",
        "--thread-pool-size=2",
    ]);
    cli.apply_legacy_options().unwrap();
    assert_eq!(cli.shared_dir.as_deref(), Some(std::path::Path::new("/srv/a,b,")));
    assert_eq!(cli.cache, CacheArg::Never);
    assert_eq!(cli.sandbox, Some(SandboxArg::Chroot));
    assert!(cli.xattr);
    let mut cli = Cli::parse_from(["avpfs", "--fd=3", "-o", "source=/srv,sandbox=namespace"]);
    cli.apply_legacy_options().unwrap();
    assert_eq!(cli.sandbox, Some(SandboxArg::Namespace));
    let mut cli = Cli::parse_from(["avpfs", "--fd=3", "-o", "source=/srv,sandbox=jail"]);
    assert!(cli.apply_legacy_options().unwrap_err().contains("sandbox=jail"));
}

/// What newer libvirt passes to a binary whose `--print-capabilities` lists
/// `separate-options` (as avpfs's does) instead of `-o`.
#[test]
fn separate_options_as_newer_libvirt_writes_them() {
    use avpfs::cli::{CacheArg, Cli, LogLevelArg, SandboxArg};
    use clap::Parser;
    let cli = Cli::try_parse_from([
        "avpfs",
        "--fd=3",
        "--shared-dir",
        "/srv/a,b",
        "--cache",
        "never",
        "--sandbox",
        "chroot",
        "--xattr",
        "--thread-pool-size=2",
        "--rlimit-nofile=4096",
        "--log-level",
        "debug",
    ])
    .unwrap();
    assert_eq!(cli.fd, Some(3));
    assert_eq!(cli.shared_dir.as_deref(), Some(std::path::Path::new("/srv/a,b")));
    assert_eq!((cli.cache, cli.sandbox, cli.xattr), (CacheArg::Never, Some(SandboxArg::Chroot), true));
    assert_eq!((cli.rlimit_nofile, cli.log_level), (Some(4096), LogLevelArg::Debug));
}

#[test]
fn uid_and_gid_maps_as_newer_libvirt_writes_them_become_the_policys_id_maps() {
    use avpfs::cli::Cli;
    use clap::Parser;
    let config = |extra: &[&str]| {
        let mut args = vec!["avpfs", "--socket-path", "/tmp/unused.sock", "--shared-dir", "/tmp", "--sandbox", "none"];
        args.extend_from_slice(extra);
        avpfs::DaemonConfig::try_from(Cli::try_parse_from(args).unwrap())
    };
    let c = config(&["--uid-map=:0:100000:65536:", "--gid-map=:0:100000:65536:"]).unwrap();
    let p = c.sessions[0].policy.as_ref().expect("a policy layer with the maps");
    assert_eq!((p.uid.to_host(0), p.uid.to_host(1000), p.uid.to_guest(100_005)), (Some(100_000), Some(101_000), 5));
    assert_eq!(p.gid.to_host(7), Some(100_007));
    for bad in
        [&["--uid-map=0:1:2"][..], &["--uid-map=:a:1:2:"], &["--uid-map=:0:1:1:", "--translate-uid", "map:0:1:1"]]
    {
        let e = config(bad).unwrap_err().to_string();
        assert!(e.contains("--uid-map"), "{bad:?}: {e}");
    }
}

/// A daemon serving a temporary directory on a vhost-user socket with the
/// `extra` options, started and waited for until its socket exists.
struct SocketDaemon {
    child: std::process::Child,
    sock: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl SocketDaemon {
    fn start(extra: &[&str]) -> SocketDaemon {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("vhost.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_avpfs"))
            .args(["--shared-dir", tmp.path().to_str().unwrap(), "--socket-path", sock.to_str().unwrap()])
            .args(extra)
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !sock.exists() {
            assert!(std::time::Instant::now() < deadline, "no socket");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        SocketDaemon { child, sock, _tmp: tmp }
    }

    /// Sends SIGTERM; checks the daemon exits with success and removes its socket.
    fn stop_cleanly(mut self) {
        avpfs_sys::process::kill(self.child.id() as i32, libc::SIGTERM).expect("SIGTERM to avpfs");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
        assert!(!self.sock.exists(), "the socket file is removed on exit");
    }
}

#[test]
fn the_vhost_socket_is_created_and_removed() {
    SocketDaemon::start(&[]).stop_cleanly();
}

/// The daemon grows its descriptor table before its threads start (later
/// growths stall every thread that opens a file for an RCU grace period):
/// a table of 64 slots at start would show here as FDSize 64. Without a
/// sandbox (so without a supervisor) and with the default seccomp filter, it
/// removes its socket itself and exits cleanly on SIGTERM.
#[test]
fn the_descriptor_table_is_grown_at_start_up_and_an_unsandboxed_daemon_stops_cleanly() {
    let d = SocketDaemon::start(&["--sandbox", "none", "--rlimit-nofile", "4096"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let slots: u32 = status.lines().find_map(|l| l.strip_prefix("FDSize:")).unwrap().trim().parse().unwrap();
    d.stop_cleanly();
    assert!(slots >= 4096, "a table of {slots} slots under a limit of 4096 descriptors");
}

/// virtiofsd's migration flags, with its names and values, reach the
/// share's settings; a bad value is a usage error naming the flag.
#[test]
fn virtiofsd_migration_flags_are_taken() {
    use avpfs::cli::{Cli, MigrationModeArg, MigrationOnErrorArg, MigrationOptions};
    use clap::Parser;
    let config = |extra: &[&str]| {
        let mut args = vec!["avpfs", "--socket-path", "/tmp/unused.sock", "--shared-dir", "/tmp", "--sandbox", "none"];
        args.extend_from_slice(extra);
        avpfs::DaemonConfig::try_from(Cli::try_parse_from(args).unwrap())
    };
    assert_eq!(config(&[]).unwrap().shares[0].migration, MigrationOptions::default());
    let c = config(&[
        "--migration-mode",
        "file-handles",
        "--migration-on-error=guest-error",
        "--migration-verify-handles",
        "--migration-confirm-paths",
    ])
    .unwrap();
    assert_eq!(
        c.shares[0].migration,
        MigrationOptions {
            mode: MigrationModeArg::FileHandles,
            on_error: MigrationOnErrorArg::GuestError,
            verify_handles: true,
            confirm_paths: true,
        }
    );
    let d = MigrationOptions::default();
    assert_eq!((d.mode, d.on_error), (MigrationModeArg::FindPaths, MigrationOnErrorArg::Abort));
    let (ok, _, err) = avpfs(&["--socket-path", "/tmp/x.sock", "--shared-dir", "/tmp", "--migration-mode", "paths"]);
    assert!(!ok && err.contains("--migration-mode"), "{err}");
    let (ok, out, _) = avpfs(&["--help"]);
    assert!(
        ok && ["--migration-mode", "--migration-on-error", "--migration-verify-handles", "--migration-confirm-paths"]
            .iter()
            .all(|f| out.contains(f))
    );
}
