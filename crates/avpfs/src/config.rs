//! The daemon's configuration, checked and complete: the shares it serves,
//! the sessions it serves them in (one per guest socket or `/dev/fuse`
//! mount), and the process-wide settings. Made from the single-guest command
//! line (one share, one session) or from a configuration file
//! ([`crate::config_file`], any number of each): one shape for both, so
//! that the daemon has one way to start.

use std::path::PathBuf;

use avpfs_passthrough::{CachePolicy, Config as PassthroughConfig, FileHandleMode};
use avpfs_policy::Policy;

use crate::cli::{
    CacheArg, Cli, FileHandlesArg, MigrationModeArg, MigrationOnErrorArg, MigrationOptions, SandboxArg, SeccompArg,
};
use crate::config_file::{self, ReadFile, ShareOptions};
use crate::{sandbox, seccomp, Error};

/// Where a session is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontEnd {
    /// Mounted on the host through /dev/fuse.
    FuseMount(PathBuf),
    /// A vhost-user-fs backend on a unix socket path.
    VhostSocket(PathBuf),
    /// A vhost-user-fs backend on an inherited listening socket.
    VhostFd(i32),
}

/// One share: a host tree and how it is passed through.
#[derive(Debug, Clone)]
pub struct ShareConfig {
    /// Its name (`share` for the command line's).
    pub name: String,
    /// The passthrough file system configuration; its `root` is the shared
    /// directory.
    pub fs: PassthroughConfig,
    /// Its live-migration settings (see `apply_migration_options`).
    pub migration: MigrationOptions,
}

/// One session: a client (a guest's vhost-user connection, or the host's
/// `/dev/fuse` mount) with its own node ids, handles and INIT state, on one
/// share.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Its name (the guest's; `guest` for the command line's).
    pub name: String,
    /// The index of its share in [`DaemonConfig::shares`].
    pub share: usize,
    /// Where it is served.
    pub front_end: FrontEnd,
    /// Its policy, when one restricts anything. A read-only share always has
    /// one: the policy layer is where read-only is enforced (the
    /// passthrough has no such mode).
    pub policy: Option<Policy>,
    /// The /dev/fuse mount is made read-only as well (`--readonly`).
    pub readonly_mount: bool,
    /// The vhost-user device options.
    pub vhost: avpfs_vhost::VhostOptions,
    /// Group to own the vhost-user socket.
    pub socket_group: Option<String>,
}

/// The daemon's configuration, checked and complete.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The shares (at least one).
    pub shares: Vec<ShareConfig>,
    /// The sessions (at least one), each on one of the shares.
    pub sessions: Vec<SessionConfig>,
    /// Worker threads for /dev/fuse.
    pub threads: usize,
    /// File descriptor limit to set.
    pub rlimit_nofile: Option<u64>,
    /// How the daemon isolates itself.
    pub sandbox: sandbox::SandboxMode,
    /// What happens on a system call outside the allow-list.
    pub seccomp: seccomp::SeccompAction,
    /// Capabilities added to or removed from the defaults (`--modcaps`).
    pub modcaps: sandbox::ModCaps,
    /// Where `reload` reads the policies again.
    pub reload: Option<ReloadSource>,
    /// `--control-socket`: where the control socket listens.
    pub control_socket: Option<PathBuf>,
    /// `--control-socket-group`: the group that may use it.
    pub control_socket_group: Option<String>,
    /// `--metrics-listen`: where `/metrics` is served over HTTP.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Count requests (`--stats`).
    pub stats: bool,
    /// 9P listeners: each serves its share, a session per connection.
    pub p9: Vec<P9Listener>,
}

/// A 9P2000.L listener (`--9p-listen`).
#[derive(Debug, Clone)]
pub struct P9Listener {
    /// The index of its share in [`DaemonConfig::shares`].
    pub share: usize,
    /// Where it listens.
    pub addr: avpfs_9p::ListenAddr,
    /// The policy of its sessions, when one restricts anything.
    pub policy: Option<Policy>,
}

/// virtiofsd's `--translate-uid`, `--translate-gid` and `--xattrmap`,
/// read into the policy's id maps and xattr rules (one enforcement layer
/// for both ways of saying it; saying it both ways is an error).
/// The translation rules of `translate` (`--translate-uid` rules) or of
/// `ns_map` (`--uid-map :GUEST:HOST:COUNT:` entries, made `map:` rules),
/// with the flag that gave them; both at once is an error.
fn id_map_args(
    translate_flag: &'static str,
    translate: &[String],
    ns_flag: &'static str,
    ns_map: &[String],
) -> Result<(&'static str, Vec<String>), Error> {
    if ns_map.is_empty() {
        return Ok((translate_flag, translate.to_vec()));
    }
    if !translate.is_empty() {
        return Err(Error::Usage(format!("{translate_flag} and {ns_flag} both set a map; use one")));
    }
    let rules = ns_map
        .iter()
        .map(|m| {
            let fields: Vec<&str> =
                m.strip_prefix(':').and_then(|m| m.strip_suffix(':')).unwrap_or("").split(':').collect();
            match fields[..] {
                [guest, host, count] if [guest, host, count].iter().all(|f| f.parse::<u32>().is_ok()) => {
                    Ok(format!("map:{guest}:{host}:{count}"))
                }
                _ => Err(Error::Usage(format!("{ns_flag} {m}: expected :GUEST:HOST:COUNT:"))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((ns_flag, rules))
}

fn apply_virtiofsd_translations(cli: &Cli, policy: &mut Policy) -> Result<(), Error> {
    use avpfs_policy::virtiofsd::{parse_translate, parse_xattrmap};
    let uid = id_map_args("--translate-uid", &cli.translate_uid, "--uid-map", &cli.uid_map)?;
    let gid = id_map_args("--translate-gid", &cli.translate_gid, "--gid-map", &cli.gid_map)?;
    for (flag, args, map) in [(uid.0, &uid.1, &mut policy.uid), (gid.0, &gid.1, &mut policy.gid)] {
        if args.is_empty() {
            continue;
        }
        if cli.posix_acl {
            return Err(Error::Usage(format!("{flag} cannot be used with --posix-acl: ACLs hold untranslated ids")));
        }
        if !map.is_identity() {
            return Err(Error::Usage(format!("{flag} and the policy file both set a map; use one")));
        }
        *map = parse_translate(args).map_err(|e| Error::Usage(format!("{flag} {e}")))?;
    }
    if let Some(xattrmap) = &cli.xattrmap {
        if !policy.xattr.is_passthrough() {
            return Err(Error::Usage("--xattrmap and the policy file's [xattr] rules both set; use one".into()));
        }
        policy.xattr = parse_xattrmap(xattrmap).map_err(|e| Error::Usage(e.to_string()))?;
    }
    Ok(())
}

/// The passthrough configuration of a share.
fn passthrough_config(root: PathBuf, o: &ShareOptions) -> PassthroughConfig {
    let mut fs = PassthroughConfig {
        root,
        cache: o.cache,
        writeback: o.writeback,
        allow_direct_io: o.allow_direct_io,
        xattr: o.xattr || o.posix_acl,
        posix_acl: o.posix_acl,
        inode_file_handles: o.inode_file_handles,
        announce_submounts: o.announce_submounts,
        killpriv_v2: o.killpriv_v2,
        ..PassthroughConfig::default()
    };
    apply_migration_options(&mut fs, &o.migration);
    fs
}

/// Copies a share's live-migration settings into its passthrough
/// configuration: the one place the flags (`--migration-mode`,
/// `--migration-on-error`, `--migration-verify-handles`,
/// `--migration-confirm-paths`) and the `[[share]]` keys of the same
/// names reach the file system.
fn apply_migration_options(fs: &mut PassthroughConfig, m: &MigrationOptions) {
    use avpfs_passthrough::{MigrationMode, MigrationOnError};
    fs.migration_mode = match m.mode {
        MigrationModeArg::FindPaths => MigrationMode::FindPaths,
        MigrationModeArg::FileHandles => MigrationMode::FileHandles,
    };
    fs.migration_on_error = match m.on_error {
        MigrationOnErrorArg::Abort => MigrationOnError::Abort,
        MigrationOnErrorArg::GuestError => MigrationOnError::GuestError,
    };
    fs.migration_verify_handles = m.verify_handles;
    fs.migration_confirm_paths = m.confirm_paths;
}

/// The share options the command line gives.
fn cli_share_options(cli: &Cli) -> ShareOptions {
    ShareOptions {
        cache: match cli.cache {
            CacheArg::Never => CachePolicy::Never,
            CacheArg::Metadata => CachePolicy::Metadata,
            CacheArg::Auto => CachePolicy::Auto,
            CacheArg::Always => CachePolicy::Always,
        },
        xattr: cli.xattr || cli.posix_acl || cli.xattrmap.is_some(),
        posix_acl: cli.posix_acl,
        readonly: cli.readonly,
        writeback: cli.writeback,
        allow_direct_io: cli.allow_direct_io,
        killpriv_v2: cli.killpriv_v2,
        announce_submounts: cli.announce_submounts,
        inode_file_handles: match cli.inode_file_handles {
            FileHandlesArg::Never => FileHandleMode::Never,
            FileHandlesArg::Prefer => FileHandleMode::Prefer,
            FileHandlesArg::Mandatory => FileHandleMode::Mandatory,
        },
        migration: cli.migration_options(),
    }
}

/// The vhost-user options every session starts from: the command line's
/// queue tuning.
fn cli_vhost_options(cli: &Cli) -> avpfs_vhost::VhostOptions {
    avpfs_vhost::VhostOptions {
        keep_listening_after_disconnect: cli.keep_listening,
        poll_max: std::time::Duration::from_micros(cli.poll_max_us),
        bulk_helper: cli.bulk_helper,
        forget_batch: std::time::Duration::from_micros(cli.forget_batch_us),
        dax_window: cli.dax_window.unwrap_or(0),
        dax_front_end: cli.dax_front_end,
        ..Default::default()
    }
}

/// The command line's share and session flags that a configuration file
/// replaces (given with `--config`, they are an error).
fn share_flags_given(cli: &Cli) -> Vec<&'static str> {
    let d = Cli::default();
    [
        ("--shared-dir", cli.shared_dir.is_some()),
        ("--socket-path", cli.socket_path.is_some()),
        ("--fd", cli.fd.is_some()),
        ("--fuse-mount", cli.fuse_mount.is_some()),
        ("--9p-listen", cli.p9_listen.is_some()),
        ("--socket-group", cli.socket_group.is_some()),
        ("--tag", cli.tag.is_some()),
        ("--request-queues", cli.request_queues.is_some()),
        ("--policy", cli.policy.is_some()),
        ("--cache", cli.cache != d.cache),
        ("--xattr", cli.xattr),
        ("--posix-acl", cli.posix_acl),
        ("--readonly", cli.readonly),
        ("--writeback", cli.writeback),
        ("--allow-direct-io", cli.allow_direct_io),
        ("--killpriv-v2", cli.killpriv_v2),
        ("--announce-submounts", cli.announce_submounts),
        ("--inode-file-handles", cli.inode_file_handles != d.inode_file_handles),
        ("--migration-mode", cli.migration_mode != d.migration_mode),
        ("--migration-on-error", cli.migration_on_error != d.migration_on_error),
        ("--migration-verify-handles", cli.migration_verify_handles),
        ("--migration-confirm-paths", cli.migration_confirm_paths),
        ("--translate-uid", !cli.translate_uid.is_empty()),
        ("--translate-gid", !cli.translate_gid.is_empty()),
        ("--uid-map", !cli.uid_map.is_empty()),
        ("--gid-map", !cli.gid_map.is_empty()),
        ("--xattrmap", cli.xattrmap.is_some()),
        ("-o", !cli.legacy_options.is_empty()),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect()
}

impl DaemonConfig {
    /// The process-wide settings of the command line, with no share yet.
    fn process_settings(cli: &Cli) -> Result<Self, Error> {
        let modcaps = match &cli.modcaps {
            Some(spec) => sandbox::parse_modcaps(spec)?,
            None => sandbox::ModCaps::default(),
        };
        let threads = if cli.thread_pool_size > 0 { cli.thread_pool_size } else { default_threads() };
        Ok(DaemonConfig {
            shares: Vec::new(),
            sessions: Vec::new(),
            threads,
            rlimit_nofile: cli.rlimit_nofile,
            sandbox: match cli.sandbox {
                Some(SandboxArg::Namespace) => sandbox::SandboxMode::Namespace,
                Some(SandboxArg::Chroot) => sandbox::SandboxMode::Chroot,
                Some(SandboxArg::None) => sandbox::SandboxMode::None,
                None if sandbox::may_create_namespaces() => sandbox::SandboxMode::Namespace,
                None => {
                    log::warn!("no CAP_SYS_ADMIN: running without a sandbox (--sandbox chroot for containers)");
                    sandbox::SandboxMode::None
                }
            },
            seccomp: match cli.seccomp {
                SeccompArg::Kill => seccomp::SeccompAction::Kill,
                SeccompArg::Log => seccomp::SeccompAction::Log,
                SeccompArg::Trap => seccomp::SeccompAction::Trap,
                SeccompArg::None => seccomp::SeccompAction::None,
            },
            modcaps,
            reload: None,
            control_socket: cli.control_socket.clone(),
            control_socket_group: cli.control_socket_group.clone(),
            metrics_listen: match cli.metrics_listen {
                Some(addr) if !addr.ip().is_loopback() && !cli.metrics_allow_remote => {
                    return Err(Error::Usage(format!(
                        "--metrics-listen {addr}: not a loopback address (add --metrics-allow-remote to serve it)"
                    )))
                }
                other => other,
            },
            stats: cli.stats,
            p9: Vec::new(),
        })
    }

    /// The shares and guests of the configuration file `file`, with the
    /// command line's process-wide settings (`--sandbox`, `--seccomp`,
    /// `--modcaps`, `--rlimit-nofile`, queue tuning). Every guest keeps
    /// listening after its front end leaves: the daemon serves the others
    /// meanwhile and the guest's next connection.
    pub fn from_file(cli: &Cli, path: &std::path::Path, file: &config_file::ConfigFile) -> Result<Self, Error> {
        let given = share_flags_given(cli);
        if !given.is_empty() {
            return Err(Error::Usage(format!(
                "{} cannot be used with --config: the configuration file sets them per share and guest",
                given.join(", ")
            )));
        }
        let mut config = Self::process_settings(cli)?;
        if config.control_socket.is_none() {
            config.control_socket = file.daemon.control_socket.clone();
            config.control_socket_group = file.daemon.control_socket_group.clone();
        }
        if config.metrics_listen.is_none() {
            config.metrics_listen = match file.daemon.metrics_listen {
                Some(addr) if !addr.ip().is_loopback() && !cli.metrics_allow_remote => {
                    return Err(Error::Usage(format!(
                        "metrics_listen {addr}: not a loopback address (add --metrics-allow-remote to serve it)"
                    )))
                }
                other => other,
            };
        }
        config.reload =
            Some(ReloadSource::ConfigFile { path: path.to_path_buf(), guests: ReloadSource::guests_of(file) });
        for (i, s) in file.shares.iter().enumerate() {
            config.shares.push(ShareConfig {
                name: s.name.clone(),
                fs: passthrough_config(s.shared_dir.clone(), &s.options),
                migration: s.options.migration,
            });
            if let Some(addr) = &s.p9_listen {
                // Behind the share's policy layer always, as the guests are.
                config.p9.push(P9Listener { share: i, addr: addr.clone(), policy: Some(s.policy.clone()) });
            }
        }
        for g in &file.guests {
            let mut vhost = cli_vhost_options(cli);
            vhost.tag = g.tag.clone();
            vhost.keep_listening_after_disconnect = true;
            if let Some(n) = g.request_queues {
                vhost.num_request_queues = n;
            }
            if let Some(n) = g.queue_size {
                vhost.queue_size = n;
            }
            if let Some(n) = g.dax_window {
                vhost.dax_window = n;
            }
            config.sessions.push(SessionConfig {
                name: g.name.clone(),
                share: g.share,
                front_end: FrontEnd::VhostSocket(g.socket_path.clone()),
                // Always a policy layer, so that a reload can restrict any guest.
                policy: Some(g.policy.clone()),
                readonly_mount: false,
                vhost,
                socket_group: g.socket_group.clone(),
            });
        }
        Ok(config)
    }
}

impl TryFrom<Cli> for DaemonConfig {
    type Error = Error;

    /// The single-guest command line: one share, one session.
    fn try_from(mut cli: Cli) -> Result<Self, Error> {
        cli.apply_legacy_options().map_err(Error::Usage)?;
        let mut config = Self::process_settings(&cli)?;
        let root = cli.shared_dir.clone().ok_or_else(|| Error::Usage("--shared-dir is required".into()))?;
        let p9 = match &cli.p9_listen {
            Some(addr) => {
                Some(avpfs_9p::ListenAddr::parse(addr).map_err(|e| Error::Usage(format!("--9p-listen {e}")))?)
            }
            None => None,
        };
        let front_end = match (&cli.fuse_mount, &cli.socket_path, cli.fd) {
            (Some(m), None, None) => Some(FrontEnd::FuseMount(m.clone())),
            (None, Some(s), None) => Some(FrontEnd::VhostSocket(s.clone())),
            (None, None, Some(fd)) => Some(FrontEnd::VhostFd(fd)),
            (None, None, None) if p9.is_some() => None,
            (None, None, None) => {
                return Err(Error::Usage("one of --socket-path, --fd, --fuse-mount or --9p-listen is required".into()))
            }
            _ => return Err(Error::Usage("--socket-path, --fd and --fuse-mount exclude each other".into())),
        };
        let options = cli_share_options(&cli);
        let policy = cli_policy(&cli, &|p| std::fs::read_to_string(p))?;
        let mut vhost = cli_vhost_options(&cli);
        vhost.tag = cli.tag.clone().unwrap_or_else(|| "avpfs".into());
        if let Some(n) = cli.request_queues {
            vhost.num_request_queues = n;
        }
        config.shares.push(ShareConfig {
            name: "share".into(),
            fs: passthrough_config(root, &options),
            migration: options.migration,
        });
        config.reload = Some(ReloadSource::CommandLine(Box::new(cli.clone())));
        let policy = (!policy.is_permissive()).then_some(policy);
        if let Some(addr) = p9 {
            config.p9.push(P9Listener { share: 0, addr, policy: policy.clone() });
        }
        if let Some(front_end) = front_end {
            config.sessions.push(SessionConfig {
                name: "guest".into(),
                share: 0,
                front_end,
                policy,
                readonly_mount: cli.readonly,
                vhost,
                socket_group: cli.socket_group.clone(),
            });
        }
        Ok(config)
    }
}

/// The policy of the command line's session: `--policy`'s file (read with
/// `read`), `--readonly`, virtiofsd's translation flags.
fn cli_policy(cli: &Cli, read: ReadFile<'_>) -> Result<Policy, Error> {
    let mut policy = match &cli.policy {
        Some(path) => {
            let text = read(path).map_err(|e| Error::Policy { path: path.clone(), message: e.to_string() })?;
            avpfs_policy::parse(&text).map_err(|e| Error::Policy { path: path.clone(), message: e.to_string() })?
        }
        None => Policy::permissive(),
    };
    policy.readonly |= cli.readonly;
    apply_virtiofsd_translations(cli, &mut policy)?;
    Ok(policy)
}

/// Where the policies come from, to be read again on `reload`.
#[derive(Debug, Clone)]
pub enum ReloadSource {
    /// The command line (`--policy FILE`, `--readonly`, translations).
    CommandLine(Box<Cli>),
    /// A configuration file; the guests it had at start-up, as (name, share
    /// name, shared directory, socket), which a reload may not change.
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The guests at start-up.
        guests: Vec<GuestKey>,
    },
}

/// The policies a reload read.
#[derive(Debug)]
pub struct Reloaded {
    /// Each guest's (session's), in session order; the command line's one.
    pub guests: Vec<Policy>,
    /// Each 9P listener's address and its share's policy, in listener order.
    pub p9: Vec<(String, Policy)>,
}

/// What a reload may not change of a guest: its name, its share's name and
/// directory, its socket.
pub type GuestKey = (String, String, PathBuf, PathBuf);

impl ReloadSource {
    /// The [`GuestKey`]s of a configuration file.
    pub fn guests_of(file: &config_file::ConfigFile) -> Vec<GuestKey> {
        file.guests
            .iter()
            .map(|g| {
                let share = &file.shares[g.share];
                (g.name.clone(), share.name.clone(), share.shared_dir.clone(), g.socket_path.clone())
            })
            .collect()
    }

    /// The files a reload reads, as the running daemon names them.
    pub fn main_file(&self) -> Option<&std::path::Path> {
        match self {
            ReloadSource::CommandLine(cli) => cli.policy.as_deref(),
            ReloadSource::ConfigFile { path, .. } => Some(path),
        }
    }

    /// Reads the configuration again (files through `read`) and returns
    /// each session's policy, in session order, and each 9P listener's; an
    /// error if it is invalid or changes more than policies.
    pub fn policies(&self, read: ReadFile<'_>) -> Result<Reloaded, String> {
        match self {
            ReloadSource::CommandLine(cli) => {
                let policy = cli_policy(cli, read).map_err(|e| e.to_string())?;
                let p9 = match &cli.p9_listen {
                    Some(a) => {
                        vec![(avpfs_9p::ListenAddr::parse(a).map_err(|e| e.to_string())?.to_string(), policy.clone())]
                    }
                    None => Vec::new(),
                };
                Ok(Reloaded { guests: vec![policy], p9 })
            }
            ReloadSource::ConfigFile { path, guests } => {
                let text = read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let file = config_file::parse_with(path, &text, read, false).map_err(|e| e.to_string())?;
                if ReloadSource::guests_of(&file) != *guests {
                    return Err("reload applies policies only: the guests, their shares, the shares' directories \
                                or the guests' sockets changed (restart avpfs for that)"
                        .into());
                }
                let p9 = file
                    .shares
                    .iter()
                    .filter_map(|s| Some((s.p9_listen.as_ref()?.to_string(), s.policy.clone())))
                    .collect();
                Ok(Reloaded { guests: file.guests.into_iter().map(|g| g.policy).collect(), p9 })
            }
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).max(2) * 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn migration_flags_reach_the_passthrough_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let args = |extra: &[&str]| {
            let mut a = vec!["avpfs", "--socket-path", "/tmp/unused.sock", "--shared-dir"];
            a.push(dir.path().to_str().unwrap());
            a.extend_from_slice(extra);
            DaemonConfig::try_from(Cli::parse_from(a)).unwrap()
        };
        let fs = &args(&[]).shares[0].fs;
        assert_eq!(fs.migration_mode, avpfs_passthrough::MigrationMode::FindPaths);
        assert_eq!(fs.migration_on_error, avpfs_passthrough::MigrationOnError::Abort);
        assert!(!fs.migration_verify_handles && !fs.migration_confirm_paths);
        let c = args(&[
            "--migration-mode",
            "file-handles",
            "--migration-on-error",
            "guest-error",
            "--migration-verify-handles",
            "--migration-confirm-paths",
        ]);
        let fs = &c.shares[0].fs;
        assert_eq!(fs.migration_mode, avpfs_passthrough::MigrationMode::FileHandles);
        assert_eq!(fs.migration_on_error, avpfs_passthrough::MigrationOnError::GuestError);
        assert!(fs.migration_verify_handles && fs.migration_confirm_paths);
    }
}
