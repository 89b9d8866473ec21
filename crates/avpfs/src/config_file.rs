//! The daemon configuration file (`avpfs --config FILE`, TOML): the shares
//! one process serves and the guests it serves them to. Every error names
//! the line and the key, and nothing starts while one is left.
//!
//! ```toml
//! [[share]]
//! name = "data"
//! shared_dir = "/srv/data"
//! cache = "auto"                  # never, metadata, auto, always
//! xattr = true                    # also posix_acl, readonly, writeback,
//!                                 # allow_direct_io, killpriv_v2,
//!                                 # announce_submounts, inode_file_handles,
//!                                 # migration_mode, migration_on_error,
//!                                 # migration_verify_handles,
//!                                 # migration_confirm_paths
//! policy = "/etc/avpfs/data-policy.toml"   # optional
//! p9_listen = "unix:/run/avpfs/data.9p"    # optional: also over 9P2000.L
//!                                 # (or "vsock:PORT", "vsock:CID:PORT")
//!
//! [[guest]]
//! name = "vm1"
//! socket_path = "/run/avpfs/vm1.sock"
//! share = "data"
//! tag = "data"                    # default: the share's name
//! request_queues = 2              # default: one per host core
//! queue_size = 1024
//! dax_window = "256M"             # optional: bytes or K/M/G (default: --dax-window)
//! socket_group = "kvm"            # optional
//! policy = "/etc/avpfs/vm1-ro.toml"        # optional, no wider than the share's
//! ```
//!
//! An optional `[daemon]` table sets what the command line's operations
//! flags do (the command line wins):
//!
//! ```toml
//! [daemon]
//! control_socket = "/run/avpfs/control.sock"
//! control_socket_group = "avpfs"
//! metrics_listen = "127.0.0.1:9101"
//! ```
//!
//! Relative paths are taken from the file's directory.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use avpfs_passthrough::{CachePolicy, FileHandleMode};

use crate::cli::{MigrationModeArg, MigrationOnErrorArg, MigrationOptions};
use avpfs_policy::config::line_of;
use avpfs_policy::Policy;
use serde::Deserialize;
use toml::Spanned;

/// Longest mount tag (the virtio-fs config space field).
pub const MAX_TAG_LEN: usize = 36;
/// Most request queues of one guest.
pub const MAX_REQUEST_QUEUES: usize = 63;

/// A configuration file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: line {line}: {key}: {message}")]
pub struct ConfigFileError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line of the offending value.
    pub line: usize,
    /// The key of the offending value (`guest.socket_path`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// The per-share settings (the single-guest command line's share flags).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShareOptions {
    /// `cache`.
    pub cache: CachePolicy,
    /// `xattr`.
    pub xattr: bool,
    /// `posix_acl` (implies `xattr`).
    pub posix_acl: bool,
    /// `readonly`.
    pub readonly: bool,
    /// `writeback`.
    pub writeback: bool,
    /// `allow_direct_io`.
    pub allow_direct_io: bool,
    /// `killpriv_v2`.
    pub killpriv_v2: bool,
    /// `announce_submounts`.
    pub announce_submounts: bool,
    /// `inode_file_handles`.
    pub inode_file_handles: FileHandleMode,
    /// `migration_mode`, `migration_on_error`, `migration_verify_handles`,
    /// `migration_confirm_paths`.
    pub migration: crate::cli::MigrationOptions,
}

/// One `[[share]]`, checked.
#[derive(Debug, Clone)]
pub struct ShareEntry {
    /// Its name, unique in the file.
    pub name: String,
    /// The host directory.
    pub shared_dir: PathBuf,
    /// Its settings.
    pub options: ShareOptions,
    /// Its policy (with `readonly` folded in); permissive when none.
    pub policy: Policy,
    /// `p9_listen`: where it is also served over 9P2000.L, a session per
    /// connection (`unix:PATH`).
    pub p9_listen: Option<avpfs_9p::ListenAddr>,
}

/// One `[[guest]]`, checked.
#[derive(Debug, Clone)]
pub struct GuestEntry {
    /// Its name, unique in the file.
    pub name: String,
    /// The index of its share in [`ConfigFile::shares`].
    pub share: usize,
    /// The vhost-user socket it connects to.
    pub socket_path: PathBuf,
    /// The group to own the socket.
    pub socket_group: Option<String>,
    /// The mount tag.
    pub tag: String,
    /// Request queues (`None`: the default).
    pub request_queues: Option<usize>,
    /// Largest queue size (`None`: the default).
    pub queue_size: Option<u16>,
    /// Size of the DAX window (`None`: the command line's).
    pub dax_window: Option<u64>,
    /// The policy its session is served with: its own (checked to be no
    /// wider than the share's) or the share's.
    pub policy: Policy,
}

/// The `[daemon]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonSection {
    /// `control_socket`.
    pub control_socket: Option<PathBuf>,
    /// `control_socket_group`.
    pub control_socket_group: Option<String>,
    /// `metrics_listen`.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// A checked configuration file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The `[daemon]` table.
    pub daemon: DaemonSection,
    /// The shares, in file order.
    pub shares: Vec<ShareEntry>,
    /// The guests, in file order.
    pub guests: Vec<GuestEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    daemon: Option<RawDaemon>,
    #[serde(default)]
    share: Vec<Spanned<RawShare>>,
    #[serde(default)]
    guest: Vec<Spanned<RawGuest>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    control_socket: Option<PathBuf>,
    control_socket_group: Option<String>,
    metrics_listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShare {
    name: Spanned<String>,
    shared_dir: Spanned<PathBuf>,
    cache: Option<Spanned<String>>,
    xattr: Option<bool>,
    posix_acl: Option<bool>,
    readonly: Option<bool>,
    writeback: Option<bool>,
    allow_direct_io: Option<bool>,
    killpriv_v2: Option<bool>,
    announce_submounts: Option<bool>,
    inode_file_handles: Option<Spanned<String>>,
    migration_mode: Option<Spanned<String>>,
    migration_on_error: Option<Spanned<String>>,
    migration_verify_handles: Option<bool>,
    migration_confirm_paths: Option<bool>,
    policy: Option<Spanned<PathBuf>>,
    p9_listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuest {
    name: Spanned<String>,
    socket_path: Spanned<PathBuf>,
    share: Spanned<String>,
    socket_group: Option<Spanned<String>>,
    tag: Option<Spanned<String>>,
    request_queues: Option<Spanned<usize>>,
    queue_size: Option<Spanned<u16>>,
    dax_window: Option<Spanned<RawSize>>,
    policy: Option<Spanned<PathBuf>>,
}

/// A size: bytes, or a string with a K/M/G suffix.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

/// Whether `text` (TOML) is a daemon configuration rather than a policy
/// file: it has `[[share]]` or `[[guest]]` tables (a policy file has a
/// single `[share]` table).
pub fn is_daemon_config(text: &str) -> bool {
    match text.parse::<toml::Table>() {
        Ok(t) => t.get("guest").is_some() || t.get("share").is_some_and(|s| s.is_array()),
        Err(_) => text.lines().any(|l| matches!(l.trim(), "[[share]]" | "[[guest]]")),
    }
}

/// Reads a file the configuration names (a policy file).
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

struct Ctx<'a> {
    file: &'a Path,
    src: &'a str,
    dir: PathBuf,
    read: ReadFile<'a>,
    check_dirs: bool,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigFileError {
        ConfigFileError {
            file: self.file.into(),
            line: line_of(self.src, span.start),
            key: key.into(),
            message: message.into(),
        }
    }

    /// Checks a `[[share]]` or `[[guest]]` (`table`) name: valid, and not
    /// one `seen` already (names to the line they were defined on).
    fn check_name(
        &self,
        table: &str,
        name: &Spanned<String>,
        seen: &mut HashMap<String, usize>,
    ) -> Result<(), ConfigFileError> {
        let (key, text) = (format!("{table}.name"), name.get_ref());
        if !valid_name(text) {
            return Err(self.err(name.span(), &key, format!("{text:?}: 1 to 64 letters, digits, '-', '_' or '.'")));
        }
        if let Some(line) = seen.insert(text.clone(), line_of(self.src, name.span().start)) {
            return Err(self.err(name.span(), &key, format!("{table} {text:?} is already defined on line {line}")));
        }
        Ok(())
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// Reads a policy file named at `span` under `key`.
    fn policy(&self, p: &Spanned<PathBuf>, key: &str) -> Result<Policy, ConfigFileError> {
        let path = self.path(p.get_ref());
        let text =
            (self.read)(&path).map_err(|e| self.err(p.span(), key, format!("cannot read {}: {e}", path.display())))?;
        avpfs_policy::parse(&text).map_err(|e| self.err(p.span(), key, format!("{}: {e}", path.display())))
    }
}

/// Whether `name` may name a share or a guest: 1 to 64 letters, digits,
/// `-`, `_` or `.`, not `.` or `..` (a share's name is also a directory
/// name in the sandbox).
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigFileError> {
    let src = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
        file: path.into(),
        line: 0,
        key: "(file)".into(),
        message: e.to_string(),
    })?;
    parse(path, &src)
}

/// Checks the configuration `src`, read from `file` (relative paths in it
/// are taken from `file`'s directory).
pub fn parse(file: &Path, src: &str) -> Result<ConfigFile, ConfigFileError> {
    parse_with(file, src, &|p| std::fs::read_to_string(p), true)
}

/// [`parse`], reading the policy files it names with `read` (a reload in a
/// sandbox gets their texts from outside), and checking that each shared
/// directory is one only with `check_dirs` (a sandboxed daemon cannot see
/// them).
pub fn parse_with(file: &Path, src: &str, read: ReadFile<'_>, check_dirs: bool) -> Result<ConfigFile, ConfigFileError> {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let cx = Ctx { file, src, dir, read, check_dirs };
    let raw: RawFile = toml::from_str(src).map_err(|e| {
        let e = avpfs_policy::config::toml_error(src, &e);
        ConfigFileError { file: file.into(), line: e.line, key: e.key, message: e.message }
    })?;
    if raw.share.is_empty() {
        return Err(cx.err(0..0, "share", "no [[share]]: a configuration needs at least one share"));
    }
    if raw.guest.is_empty() && raw.share.iter().all(|s| s.get_ref().p9_listen.is_none()) {
        return Err(cx.err(0..0, "guest", "no [[guest]] and no share's p9_listen: nothing would be served"));
    }
    let mut shares = Vec::new();
    let mut share_lines: HashMap<String, usize> = HashMap::new();
    for s in &raw.share {
        let s = s.get_ref();
        cx.check_name("share", &s.name, &mut share_lines)?;
        shares.push(share(&cx, s)?);
    }
    let mut guests = Vec::new();
    let mut guest_lines: HashMap<String, usize> = HashMap::new();
    let mut socket_lines: HashMap<PathBuf, (String, usize)> = HashMap::new();
    for g in &raw.guest {
        let g = g.get_ref();
        cx.check_name("guest", &g.name, &mut guest_lines)?;
        let name = g.name.get_ref();
        let socket_path = normalize(&cx.path(g.socket_path.get_ref()));
        let line = line_of(src, g.socket_path.span().start);
        if let Some((other, at)) = socket_lines.insert(socket_path.clone(), (name.clone(), line)) {
            return Err(cx.err(
                g.socket_path.span(),
                "guest.socket_path",
                format!(
                    "{} is also the socket of guest {other:?} (line {at}): each guest needs its own",
                    socket_path.display()
                ),
            ));
        }
        let Some(share) = shares.iter().position(|s| s.name == *g.share.get_ref()) else {
            let known: Vec<&str> = shares.iter().map(|s| s.name.as_str()).collect();
            return Err(cx.err(
                g.share.span(),
                "guest.share",
                format!("unknown share {:?} (defined: {})", g.share.get_ref(), known.join(", ")),
            ));
        };
        let tag = match &g.tag {
            Some(t) => {
                let len = t.get_ref().len();
                if len == 0 || len > MAX_TAG_LEN {
                    return Err(cx.err(
                        t.span(),
                        "guest.tag",
                        format!("{:?} is {len} bytes; a tag has 1 to {MAX_TAG_LEN}", t.get_ref()),
                    ));
                }
                t.get_ref().clone()
            }
            None => shares[share].name.chars().take(MAX_TAG_LEN).collect(),
        };
        if let Some(q) = &g.request_queues {
            if !(1..=MAX_REQUEST_QUEUES).contains(q.get_ref()) {
                return Err(cx.err(q.span(), "guest.request_queues", format!("1 to {MAX_REQUEST_QUEUES}")));
            }
        }
        if let Some(q) = &g.queue_size {
            if !q.get_ref().is_power_of_two() {
                return Err(cx.err(q.span(), "guest.queue_size", "a power of two"));
            }
        }
        let dax_window = match &g.dax_window {
            Some(d) => Some(
                match d.get_ref() {
                    RawSize::Bytes(n) => crate::cli::parse_dax_window(&n.to_string()),
                    RawSize::Text(t) => crate::cli::parse_dax_window(t),
                }
                .map_err(|e| cx.err(d.span(), "guest.dax_window", e))?,
            ),
            None => None,
        };
        let share_policy = &shares[share].policy;
        let policy = match &g.policy {
            Some(p) => {
                let mut policy = cx.policy(p, "guest.policy")?;
                // The share's read-only setting holds for every guest.
                policy.readonly |= shares[share].options.readonly;
                policy.check_narrower_than(share_policy).map_err(|e| {
                    cx.err(
                        p.span(),
                        "guest.policy",
                        format!("{}: {e} (share {:?})", p.get_ref().display(), shares[share].name),
                    )
                })?;
                policy
            }
            None => share_policy.clone(),
        };
        guests.push(GuestEntry {
            name: name.clone(),
            share,
            socket_path,
            socket_group: g.socket_group.as_ref().map(|s| s.get_ref().clone()),
            tag,
            request_queues: g.request_queues.as_ref().map(|q| *q.get_ref()),
            queue_size: g.queue_size.as_ref().map(|q| *q.get_ref()),
            dax_window,
            policy,
        });
    }
    let mut daemon = DaemonSection::default();
    if let Some(d) = &raw.daemon {
        daemon.control_socket = d.control_socket.as_deref().map(|p| cx.path(p));
        daemon.control_socket_group = d.control_socket_group.clone();
        if let Some(m) = &d.metrics_listen {
            daemon.metrics_listen = Some(m.get_ref().parse().map_err(|_| {
                cx.err(
                    m.span(),
                    "daemon.metrics_listen",
                    format!("{:?}: an address and port, e.g. 127.0.0.1:9101", m.get_ref()),
                )
            })?);
        }
    }
    Ok(ConfigFile { daemon, shares, guests })
}

/// `path` without `.` components and with `..` folded lexically, so that
/// two spellings of one socket are seen as one.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn share(cx: &Ctx<'_>, s: &RawShare) -> Result<ShareEntry, ConfigFileError> {
    let shared_dir = cx.path(s.shared_dir.get_ref());
    if cx.check_dirs && !shared_dir.is_dir() {
        return Err(cx.err(
            s.shared_dir.span(),
            "share.shared_dir",
            format!("{}: not a directory", shared_dir.display()),
        ));
    }
    let cache = match &s.cache {
        None => CachePolicy::default(),
        Some(c) => match c.get_ref().as_str() {
            "never" | "none" => CachePolicy::Never,
            "metadata" => CachePolicy::Metadata,
            "auto" => CachePolicy::Auto,
            "always" => CachePolicy::Always,
            other => {
                return Err(cx.err(c.span(), "share.cache", format!("{other:?}: never, metadata, auto or always")))
            }
        },
    };
    let inode_file_handles = match &s.inode_file_handles {
        None => FileHandleMode::Never,
        Some(m) => match m.get_ref().as_str() {
            "never" => FileHandleMode::Never,
            "prefer" => FileHandleMode::Prefer,
            "mandatory" => FileHandleMode::Mandatory,
            other => {
                return Err(cx.err(
                    m.span(),
                    "share.inode_file_handles",
                    format!("{other:?}: never, prefer or mandatory"),
                ))
            }
        },
    };
    let mode = match &s.migration_mode {
        None => MigrationModeArg::FindPaths,
        Some(m) => match m.get_ref().as_str() {
            "find-paths" => MigrationModeArg::FindPaths,
            "file-handles" => MigrationModeArg::FileHandles,
            other => {
                return Err(cx.err(m.span(), "share.migration_mode", format!("{other:?}: find-paths or file-handles")))
            }
        },
    };
    let on_error = match &s.migration_on_error {
        None => MigrationOnErrorArg::Abort,
        Some(m) => match m.get_ref().as_str() {
            "abort" => MigrationOnErrorArg::Abort,
            "guest-error" => MigrationOnErrorArg::GuestError,
            other => {
                return Err(cx.err(m.span(), "share.migration_on_error", format!("{other:?}: abort or guest-error")))
            }
        },
    };
    let migration = MigrationOptions {
        mode,
        on_error,
        verify_handles: s.migration_verify_handles.unwrap_or(false),
        confirm_paths: s.migration_confirm_paths.unwrap_or(false),
    };
    let posix_acl = s.posix_acl.unwrap_or(false);
    let options = ShareOptions {
        cache,
        xattr: s.xattr.unwrap_or(false) || posix_acl,
        posix_acl,
        readonly: s.readonly.unwrap_or(false),
        writeback: s.writeback.unwrap_or(false),
        allow_direct_io: s.allow_direct_io.unwrap_or(false),
        killpriv_v2: s.killpriv_v2.unwrap_or(false),
        announce_submounts: s.announce_submounts.unwrap_or(false),
        inode_file_handles,
        migration,
    };
    let mut policy = match &s.policy {
        Some(p) => cx.policy(p, "share.policy")?,
        None => Policy::permissive(),
    };
    policy.readonly |= options.readonly;
    let p9_listen = match &s.p9_listen {
        Some(a) => Some(match avpfs_9p::ListenAddr::parse(a.get_ref()) {
            Ok(avpfs_9p::ListenAddr::Unix(p)) => avpfs_9p::ListenAddr::Unix(cx.path(&p)),
            Ok(other) => other,
            Err(e) => return Err(cx.err(a.span(), "share.p9_listen", e.to_string())),
        }),
        None => None,
    };
    Ok(ShareEntry { name: s.name.get_ref().clone(), shared_dir, options, policy, p9_listen })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir {
        tmp: tempfile::TempDir,
    }

    impl Dir {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            std::fs::create_dir(tmp.path().join("data")).unwrap();
            std::fs::write(tmp.path().join("ro.toml"), "[share]\nreadonly = true\n").unwrap();
            std::fs::write(tmp.path().join("rw.toml"), "[share]\nreadonly = false\n").unwrap();
            Dir { tmp }
        }

        fn parse(&self, src: &str) -> Result<ConfigFile, ConfigFileError> {
            parse(&self.tmp.path().join("avpfs.toml"), src)
        }
    }

    const TWO_GUESTS: &str = r#"
[[share]]
name = "data"
shared_dir = "data"
cache = "never"

[[guest]]
name = "vm1"
socket_path = "vm1.sock"
share = "data"

[[guest]]
name = "vm2"
socket_path = "vm2.sock"
share = "data"
tag = "other"
request_queues = 2
policy = "ro.toml"
"#;

    #[test]
    fn two_guests_on_one_share() {
        let d = Dir::new();
        let c = d.parse(TWO_GUESTS).unwrap();
        assert_eq!(c.shares.len(), 1);
        assert_eq!(c.shares[0].options.cache, CachePolicy::Never);
        assert_eq!(c.shares[0].shared_dir, d.tmp.path().join("data"));
        assert!(c.shares[0].policy.is_permissive());
        let [g1, g2] = &c.guests[..] else { panic!("two guests") };
        assert_eq!((g1.tag.as_str(), g1.request_queues, g1.share), ("data", None, 0));
        assert_eq!((g2.tag.as_str(), g2.request_queues), ("other", Some(2)));
        assert_eq!(g2.socket_path, d.tmp.path().join("vm2.sock"));
        assert!(g1.policy.is_permissive() && g2.policy.readonly);
    }

    #[test]
    fn a_shares_migration_keys() {
        use crate::cli::{MigrationModeArg, MigrationOnErrorArg};
        let d = Dir::new();
        let with = |keys: &str| TWO_GUESTS.replace("cache = \"never\"", &format!("cache = \"never\"\n{keys}"));
        assert_eq!(d.parse(TWO_GUESTS).unwrap().shares[0].options.migration, MigrationOptions::default());
        let c = d
            .parse(&with(
                "migration_mode = \"file-handles\"\nmigration_on_error = \"guest-error\"\n\
                 migration_verify_handles = true\nmigration_confirm_paths = true",
            ))
            .unwrap();
        let m = c.shares[0].options.migration;
        assert_eq!((m.mode, m.on_error), (MigrationModeArg::FileHandles, MigrationOnErrorArg::GuestError));
        assert!(m.verify_handles && m.confirm_paths);
        let e = d.parse(&with("migration_mode = \"paths\"")).unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (6, "share.migration_mode"), "{e}");
        assert!(e.message.contains("find-paths or file-handles"), "{e}");
        let e = d.parse(&with("migration_on_error = \"ignore\"")).unwrap_err();
        assert_eq!(e.key, "share.migration_on_error", "{e}");
    }

    #[test]
    fn a_guest_dax_window_is_a_size() {
        let d = Dir::new();
        let with = |v: &str| TWO_GUESTS.replace("request_queues = 2", &format!("request_queues = 2\ndax_window = {v}"));
        let c = d.parse(&with("\"256M\"")).unwrap();
        assert_eq!((c.guests[0].dax_window, c.guests[1].dax_window), (None, Some(256 << 20)));
        assert_eq!(d.parse(&with("8192")).unwrap().guests[1].dax_window, Some(8192));
        let e = d.parse(&with("\"1000\"")).unwrap_err();
        assert_eq!(e.key, "guest.dax_window", "{e}");
        let e = d.parse(&with("\"96M\"")).unwrap_err();
        assert!(e.to_string().contains("power of two"), "{e}");
    }

    fn error(src: &str) -> ConfigFileError {
        Dir::new().parse(src).unwrap_err()
    }

    #[test]
    fn two_guests_on_one_socket_is_an_error_naming_the_line() {
        let e = error(&TWO_GUESTS.replace("vm2.sock", "./vm1.sock"));
        assert_eq!((e.line, e.key.as_str()), (14, "guest.socket_path"), "{e}");
        assert!(e.message.contains("guest \"vm1\" (line 9)"), "{e}");
    }

    #[test]
    fn unknown_share_is_an_error_naming_the_line() {
        let e = error(&TWO_GUESTS.replace("share = \"data\"\ntag", "share = \"dta\"\ntag"));
        assert_eq!((e.line, e.key.as_str()), (15, "guest.share"), "{e}");
        assert!(e.message.contains("unknown share \"dta\" (defined: data)"), "{e}");
    }

    #[test]
    fn too_long_a_tag_is_an_error_naming_the_line() {
        let e = error(&TWO_GUESTS.replace("\"other\"", &format!("\"{}\"", "t".repeat(37))));
        assert_eq!((e.line, e.key.as_str()), (16, "guest.tag"), "{e}");
        assert!(e.message.contains("37 bytes"), "{e}");
    }

    #[test]
    fn a_guest_policy_wider_than_its_share_is_an_error_naming_the_line() {
        let src = TWO_GUESTS.replace("\"ro.toml\"", "\"rw.toml\"").replace("cache = \"never\"", "policy = \"ro.toml\"");
        let e = error(&src);
        assert_eq!((e.line, e.key.as_str()), (18, "guest.policy"), "{e}");
        assert!(e.message.contains("read-only"), "{e}");
        // A share made read-only by its own setting makes every guest's policy read-only.
        let src = TWO_GUESTS.replace("\"ro.toml\"", "\"rw.toml\"").replace("cache = \"never\"", "readonly = true");
        let c = Dir::new().parse(&src).unwrap();
        assert!(c.guests.iter().all(|g| g.policy.readonly));
    }

    #[test]
    fn other_mistakes_name_their_line_and_key() {
        for (from, to, line, key) in [
            ("cache = \"never\"", "cache = \"sometimes\"", 5, "share.cache"),
            ("cache = \"never\"", "cahce = \"never\"", 5, "cahce"),
            ("shared_dir = \"data\"", "shared_dir = \"nope\"", 4, "share.shared_dir"),
            ("request_queues = 2", "request_queues = 64", 17, "guest.request_queues"),
            ("name = \"vm2\"", "name = \"vm1\"", 13, "guest.name"),
            ("name = \"vm2\"", "name = \"vm 2\"", 13, "guest.name"),
            ("policy = \"ro.toml\"", "policy = \"missing.toml\"", 18, "guest.policy"),
        ] {
            let e = error(&TWO_GUESTS.replace(from, to));
            assert_eq!((e.line, e.key.as_str()), (line, key), "{to}: {e}");
        }
        let e = error("[[share]]\nname = \"a\"\nshared_dir = \"data\"\n");
        assert_eq!(e.key, "guest", "{e}");
        let e = error("[[guest]]\nname = \"a\"\nshare = \"a\"\n");
        assert_eq!(e.key, "socket_path", "{e}");
    }

    #[test]
    fn a_share_is_also_served_over_9p_on_unix_or_vsock() {
        let d = Dir::new();
        let with =
            |v: &str| TWO_GUESTS.replace("cache = \"never\"", &format!("cache = \"never\"\np9_listen = \"{v}\""));
        let c = d.parse(&with("vsock:5640")).unwrap();
        assert_eq!(c.shares[0].p9_listen, Some(avpfs_9p::ListenAddr::vsock(5640)));
        let c = d.parse(&with("vsock:3:5640")).unwrap();
        assert_eq!(c.shares[0].p9_listen, Some(avpfs_9p::ListenAddr::Vsock { cid: 3, port: 5640 }));
        let c = d.parse(&with("unix:p9.sock")).unwrap();
        assert_eq!(c.shares[0].p9_listen, Some(avpfs_9p::ListenAddr::Unix(d.tmp.path().join("p9.sock"))));
        for bad in ["vsock:", "vsock:abc", "vsock:99999999999", "tcp:564"] {
            let e = d.parse(&with(bad)).unwrap_err();
            assert_eq!((e.line, e.key.as_str()), (6, "share.p9_listen"), "{bad}: {e}");
            assert!(e.message.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn policy_files_and_daemon_configurations_are_told_apart() {
        assert!(is_daemon_config(TWO_GUESTS));
        assert!(!is_daemon_config("[share]\nreadonly = true\n"));
        assert!(is_daemon_config("[[share]]\nname = \n"), "a broken daemon configuration is still one");
    }
}
