//! Packaging: the man pages made from the command-line definition, `make
//! install` and `make uninstall`, the systemd units checked by
//! `systemd-analyze verify`, and the socket-activated unit's command line
//! run for real under `systemd-socket-activate` with a vhost-user front end.
//!
//! The tools these use (man, systemd-analyze, systemd-socket-activate,
//! setpriv) are installed by `scripts/install-deps.sh packaging` when one is
//! missing; a check whose tool still cannot be had is skipped with a message.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vhost_harness::fuse::FuseClient;
use vhost_harness::Harness;

#[path = "../examples/mangen/pages.rs"]
mod pages;

/// The units `make install` installs, by their installed names.
const UNITS: [&str; 3] = ["avpfs@.service", "avpfs-vhost@.socket", "avpfs-vhost@.service"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// `name`'s path; when it is missing, the packaging tools are installed
/// (once per test run) and it is looked for again.
fn tool(name: &str) -> Option<PathBuf> {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    which(name).or_else(|| {
        let installed = *INSTALLED.get_or_init(|| {
            let script = workspace_root().join("scripts/install-deps.sh");
            Command::new(script).arg("packaging").status().is_ok_and(|s| s.success())
        });
        installed.then(|| which(name)).flatten()
    })
}

fn skip(check: &str, tool: &str) {
    eprintln!(
        "SKIPPED {check}: {tool} is missing and scripts/install-deps.sh packaging could not install it \
         (run it as root)"
    );
}

fn assert_quiet_success(what: &str, out: &Output) {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(stderr.trim().is_empty(), "{what} warned:\n{stderr}");
}

/// The visible long flags of `cmd` itself (not of its subcommands).
fn long_flags(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments().filter(|a| !a.is_hide_set()).filter_map(|a| a.get_long()).map(str::to_string).collect()
}

/// The page as `man -l` shows it, 200 columns wide so that no flag is
/// hyphenated, with groff's Unicode hyphens and minus signs made ASCII.
fn render_with_man(man: &Path, page: &Path) -> String {
    let out = Command::new(man)
        .args(["--warnings=w", "-l"])
        .arg(page)
        .env("MANWIDTH", "200")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("LC_ALL", "C.UTF-8")
        .env_remove("MANOPT")
        .stdin(Stdio::null())
        .output()
        .expect("run man");
    assert_quiet_success(&format!("man -l {}", page.display()), &out);
    String::from_utf8_lossy(&out.stdout).replace(['\u{2010}', '\u{2212}'], "-")
}

#[test]
fn man_pages_document_every_long_flag_and_render_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let written = pages::write_pages(dir.path()).unwrap();
    assert_eq!(written.first(), Some(&dir.path().join("avpfs.1")), "the main page comes first");
    let man = tool("man");
    if man.is_none() {
        skip("rendering the man pages", "man (man-db)");
    }
    let mut commands = vec![pages::command()];
    let (mut pages_seen, mut flags_seen) = (0, 0);
    while let Some(cmd) = commands.pop() {
        commands.extend(pages::visible_subcommands(&cmd).cloned());
        let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
        let page = dir.path().join(format!("{name}.1"));
        assert!(written.contains(&page), "no page for {name}: {written:?}");
        let roff = fs::read_to_string(&page).unwrap();
        let flags = long_flags(&cmd);
        for long in &flags {
            // clap_mangen writes an option's tag as bold roff with escaped hyphens.
            let tag = format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-"));
            assert!(roff.contains(&tag), "{name}.1 does not document --{long}");
        }
        if let Some(man) = &man {
            let text = render_with_man(man, &page);
            for long in &flags {
                assert!(text.contains(&format!("--{long}")), "man -l {name}.1 does not show --{long}");
            }
        }
        pages_seen += 1;
        flags_seen += flags.len();
    }
    assert_eq!(pages_seen, written.len(), "pages written for no command: {written:?}");
    // The flags are read from clap, so a slip that hid them all would pass.
    assert!(flags_seen >= 30, "only {flags_seen} long flags found in the command line");
    let main = fs::read_to_string(&written[0]).unwrap();
    for section in ["OPTIONS", "SUBCOMMANDS", "ENVIRONMENT", "FILES", "\"SEE ALSO\"", "VERSION"] {
        assert!(main.contains(&format!("\n.SH {section}\n")), "avpfs.1 has no {section} section");
    }
}

/// Runs `make VARS... TARGET` in the workspace, with the build and the man
/// pages taken as made: the binary is this test's, the pages are in
/// `man_dir`.
fn make(target: &str, destdir: &Path, prefix: &Path, man_dir: &Path) -> Output {
    let var = |name: &str, value: &Path| format!("{name}={}", value.display());
    Command::new(tool("make").expect("make"))
        .arg("-C")
        .arg(workspace_root())
        .args(["--no-print-directory", "-o", "build", "-o", "man", target])
        .arg(var("DESTDIR", destdir))
        .arg(var("PREFIX", prefix))
        .arg(var("AVPFS_BIN", Path::new(env!("CARGO_BIN_EXE_avpfs"))))
        .arg(var("MAN_BUILD_DIR", man_dir))
        // Not a sub-make of the `make test` that may be running this.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .stdin(Stdio::null())
        .output()
        .expect("run make")
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

/// The example configuration with its share in `share`, for check-config
/// (which wants the shared directory to exist).
fn example_config_at(example: &Path, share: &Path) -> String {
    let text = fs::read_to_string(example).unwrap();
    assert!(text.contains("shared_dir = \"/srv/data\""), "the example's share moved: update this test");
    text.replace("\"/srv/data\"", &format!("{:?}", share.display().to_string()))
}

#[test]
fn make_install_puts_each_file_under_destdir_and_uninstall_removes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let man_dir = tmp.path().join("man");
    let pages = pages::write_pages(&man_dir).unwrap();
    let dest = tmp.path().join("dest");
    let prefix = Path::new("/usr/local");
    let out = make("install", &dest, prefix, &man_dir);
    assert_quiet_success("make install", &out);

    let installed = files_under(&dest);
    eprintln!("installed under DESTDIR:\n  {}", installed.iter().cloned().collect::<Vec<_>>().join("\n  "));
    let mut want: BTreeSet<String> = [
        "bin/avpfs",
        "share/doc/avpfs/avpfs.toml.example",
        "share/doc/avpfs/avpfs.env.example",
        "share/doc/avpfs/operations.md",
    ]
    .iter()
    .map(|f| format!("usr/local/{f}"))
    .collect();
    want.extend(UNITS.iter().map(|u| format!("usr/local/lib/systemd/system/{u}")));
    for page in &pages {
        let name = page.file_name().unwrap().to_string_lossy();
        want.insert(format!("usr/local/share/man/man1/{name}.gz"));
    }
    assert_eq!(installed, want);

    let root = dest.join("usr/local");
    let version = Command::new(root.join("bin/avpfs")).arg("--version").output().unwrap();
    assert_quiet_success("avpfs --version", &version);
    assert_eq!(String::from_utf8_lossy(&version.stdout), format!("avpfs {}\n", env!("CARGO_PKG_VERSION")));
    for page in &pages {
        let gz = root.join("share/man/man1").join(format!("{}.gz", page.file_name().unwrap().to_string_lossy()));
        let unzipped = Command::new("gzip").arg("-dc").arg(&gz).output().unwrap();
        assert!(unzipped.status.success());
        assert_eq!(unzipped.stdout, fs::read(page).unwrap(), "{} is not the generated page", gz.display());
    }
    for unit in UNITS {
        let text = fs::read_to_string(root.join("lib/systemd/system").join(unit)).unwrap();
        assert!(!text.contains("@BINDIR@"), "{unit}: @BINDIR@ left");
        for line in text.lines().filter(|l| l.starts_with("ExecStart=")) {
            assert!(line.starts_with("ExecStart=/usr/local/bin/avpfs "), "{unit}: {line}");
        }
    }
    // The example configuration is one that the installed avpfs accepts.
    let share = tmp.path().join("share");
    fs::create_dir(&share).unwrap();
    let config = tmp.path().join("example.toml");
    fs::write(&config, example_config_at(&root.join("share/doc/avpfs/avpfs.toml.example"), &share)).unwrap();
    let check = Command::new(root.join("bin/avpfs")).arg("check-config").arg(&config).output().unwrap();
    assert_quiet_success("avpfs check-config on the example", &check);
    assert!(String::from_utf8_lossy(&check.stdout).contains("guest \"vm2\""));

    let out = make("uninstall", &dest, prefix, &man_dir);
    assert_quiet_success("make uninstall", &out);
    assert_eq!(files_under(&dest), BTreeSet::new(), "make uninstall left files");
}

#[test]
fn systemd_analyze_verify_passes_on_the_installed_units() {
    let Some(analyze) = tool("systemd-analyze") else {
        return skip("systemd-analyze verify", "systemd-analyze (systemd)");
    };
    if tool("man").is_none() {
        // verify runs `man` for each unit's Documentation=man:avpfs(1).
        return skip("systemd-analyze verify", "man (man-db)");
    }
    // Installed with an absolute PREFIX and no DESTDIR, so that the units'
    // ExecStart= names the binary where it is (verify checks it), and
    // MANPATH finds the installed page.
    let tmp = tempfile::tempdir().unwrap();
    let man_dir = tmp.path().join("man");
    pages::write_pages(&man_dir).unwrap();
    let prefix = tmp.path().join("usr");
    assert_quiet_success("make install", &make("install", Path::new(""), &prefix, &man_dir));
    let unit_dir = prefix.join("lib/systemd/system");
    let instances: Vec<PathBuf> = UNITS.iter().map(|u| unit_dir.join(u.replace("@.", "@example."))).collect();
    let out = Command::new(analyze)
        .arg("verify")
        .args(&instances)
        .env("MANPATH", prefix.join("share/man"))
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_quiet_success("systemd-analyze verify", &out);
    assert!(out.stdout.is_empty(), "systemd-analyze verify: {}", String::from_utf8_lossy(&out.stdout));
}

/// The unit's `KEY=` value (the first one).
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|l| l.strip_prefix('=')))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
}

/// The unit's ExecStart= as the arguments systemd would pass: `vars` give
/// the `${NAME}` values (one argument each), `$AVPFS_OPTS` is unset, and
/// `@BINDIR@/avpfs` is this test's binary.
fn exec_start(unit: &str, vars: &[(&str, &str)]) -> Vec<String> {
    unit_value(unit, "ExecStart")
        .split_whitespace()
        .filter(|word| *word != "$AVPFS_OPTS")
        .map(|word| {
            if word == "@BINDIR@/avpfs" {
                return env!("CARGO_BIN_EXE_avpfs").to_string();
            }
            if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
                let (_, value) = vars.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no ${{{name}}}"));
                return value.to_string();
            }
            assert!(!word.contains(['$', '%', '@']), "ExecStart= word {word:?} is not handled here");
            word.to_string()
        })
        .collect()
}

/// A started process, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn socket_activated_unit_serves_a_vhost_user_guest() {
    let Some(activate) = tool("systemd-socket-activate") else {
        return skip("socket activation", "systemd-socket-activate (systemd)");
    };
    let unit = fs::read_to_string(workspace_root().join("dist/systemd/avpfs-vhost@.service.in")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    fs::create_dir(&share).unwrap();
    fs::write(share.join("f"), "from the host\n").unwrap();
    let socket = tmp.path().join("vm.sock");
    let argv = exec_start(&unit, &[("SHARED_DIR", share.to_str().unwrap()), ("TAG", "vm-test")]);

    // The unit's NoNewPrivileges= and CapabilityBoundingSet=, applied with
    // setpriv, so that avpfs's own sandbox is shown to work under them.
    let mut cmd = match tool("setpriv") {
        Some(setpriv) => {
            let mut cmd = Command::new(setpriv);
            if unit_value(&unit, "NoNewPrivileges") == "yes" {
                cmd.arg("--no-new-privs");
            }
            let keep: Vec<String> = unit_value(&unit, "CapabilityBoundingSet")
                .split_whitespace()
                .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
                .collect();
            cmd.arg(format!("--bounding-set=-all,{}", keep.join(",")));
            cmd.arg(&activate);
            cmd
        }
        None => {
            eprintln!("setpriv is missing: the unit's capability bounding set is not applied");
            Command::new(&activate)
        }
    };
    // systemd-socket-activate passes no environment but LISTEN_*: avpfs
    // logs at its default level, info, as under systemd.
    cmd.arg("-l").arg(&socket).args(&argv).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut daemon = Running(cmd.spawn().expect("start systemd-socket-activate"));

    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!("systemd-socket-activate exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "no socket in 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The first connection makes systemd-socket-activate exec avpfs with
    // the listening socket as descriptor 3.
    let h = Harness::start(&socket, 2).expect("vhost-user handshake with the socket-activated avpfs");
    assert_eq!(h.tag(), "vm-test");
    let client = FuseClient::new(&h, 1);
    client.init().unwrap();
    let node = client.lookup(1, "f").unwrap().nodeid;
    let fh = client.open(node, libc::O_RDONLY as u32).unwrap().fh;
    assert_eq!(client.read(node, fh, 0, 4096).unwrap(), b"from the host\n");
    client.release(node, fh).unwrap();

    // The VMM goes: avpfs ends cleanly (systemd would wait on the socket
    // for the next one).
    drop(h);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "avpfs still runs 20 s after the front end left");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut daemon.0.stderr.take().unwrap(), &mut log).unwrap();
    assert!(status.success(), "avpfs ended with {status}:\n{log}");
    // Without CAP_SYS_ADMIN avpfs would fall back to no sandbox, and serve.
    for line in ["sandbox: namespaces entered", "landlock: enforced", "seccomp: "] {
        assert!(log.contains(line), "avpfs did not log {line:?} under the unit's limits:\n{log}");
    }
}
