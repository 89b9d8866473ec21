//! The avpfs daemon: command line, start-up and the choice of front end.

#![deny(missing_docs)]
// The system calls are made through avpfs-sys's safe wrappers; the one
// `unsafe` left (taking ownership of an inherited descriptor) is allowed
// where it is, with its reason.
#![deny(unsafe_code)]

pub mod cli;
pub mod sandbox;
pub mod seccomp;
mod signals;
pub mod syslog;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use avpfs_passthrough::{CachePolicy, Config as PassthroughConfig, FileHandleMode, PassthroughFs};
use avpfs_server::Server;
use log::{debug, info};

use cli::{CacheArg, Cli, FileHandlesArg, LogLevelArg, SandboxArg, SeccompArg};

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is inconsistent.
    #[error("{0}")]
    Usage(String),
    /// The passthrough file system could not be set up.
    #[error("cannot share the directory: {0}")]
    Passthrough(#[from] avpfs_passthrough::Error),
    /// The /dev/fuse front end failed.
    #[error(transparent)]
    Fuse(#[from] avpfs_fusedev::Error),
    /// The policy file cannot be read or is invalid.
    #[error("policy {path}: {message}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// What is wrong (with line and key).
        message: String,
    },
    /// The vhost-user front end failed.
    #[error(transparent)]
    Vhost(#[from] avpfs_vhost::Error),
    /// Entering the sandbox or dropping privileges failed.
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// Installing the seccomp filter failed.
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    /// A system call at start-up failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Where the share is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontEnd {
    /// Mounted on the host through /dev/fuse.
    FuseMount(PathBuf),
    /// A vhost-user-fs backend on a unix socket path.
    VhostSocket(PathBuf),
    /// A vhost-user-fs backend on an inherited listening socket.
    VhostFd(i32),
}

/// The daemon's configuration, checked and complete.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The passthrough file system configuration.
    pub fs: PassthroughConfig,
    /// The share policy, when one restricts anything. `--readonly` is its
    /// `readonly`, so a read-only share always has one: the policy layer is
    /// where read-only is enforced (the passthrough has no such mode).
    pub policy: Option<avpfs_policy::Policy>,
    /// `--readonly`: the /dev/fuse mount is made read-only as well.
    pub readonly_mount: bool,
    /// The front end.
    pub front_end: FrontEnd,
    /// Worker threads for /dev/fuse.
    pub threads: usize,
    /// The vhost-user device options.
    pub vhost: avpfs_vhost::VhostOptions,
    /// Group to own the vhost-user socket.
    pub socket_group: Option<String>,
    /// File descriptor limit to set.
    pub rlimit_nofile: Option<u64>,
    /// How the daemon isolates itself.
    pub sandbox: sandbox::SandboxMode,
    /// What happens on a system call outside the allow-list.
    pub seccomp: seccomp::SeccompAction,
    /// Capabilities added to or removed from the defaults (`--modcaps`).
    pub modcaps: sandbox::ModCaps,
}

/// virtiofsd's `--translate-uid`, `--translate-gid` and `--xattrmap`,
/// read into the policy's id maps and xattr rules (one enforcement layer
/// for both ways of saying it; saying it both ways is an error).
fn apply_virtiofsd_translations(cli: &Cli, policy: &mut avpfs_policy::Policy) -> Result<(), Error> {
    use avpfs_policy::virtiofsd::{parse_translate, parse_xattrmap};
    for (flag, args, map) in [
        ("--translate-uid", &cli.translate_uid, &mut policy.uid),
        ("--translate-gid", &cli.translate_gid, &mut policy.gid),
    ] {
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

impl TryFrom<Cli> for DaemonConfig {
    type Error = Error;

    fn try_from(mut cli: Cli) -> Result<Self, Error> {
        cli.apply_legacy_options().map_err(Error::Usage)?;
        let modcaps = match &cli.modcaps {
            Some(spec) => sandbox::parse_modcaps(spec)?,
            None => sandbox::ModCaps::default(),
        };
        let root = cli.shared_dir.clone().ok_or_else(|| Error::Usage("--shared-dir is required".into()))?;
        let front_end = match (&cli.fuse_mount, &cli.socket_path, cli.fd) {
            (Some(m), None, None) => FrontEnd::FuseMount(m.clone()),
            (None, Some(s), None) => FrontEnd::VhostSocket(s.clone()),
            (None, None, Some(fd)) => FrontEnd::VhostFd(fd),
            (None, None, None) => {
                return Err(Error::Usage("one of --socket-path, --fd or --fuse-mount is required".into()))
            }
            _ => return Err(Error::Usage("--socket-path, --fd and --fuse-mount exclude each other".into())),
        };
        let fs = PassthroughConfig {
            root,
            cache: match cli.cache {
                CacheArg::Never => CachePolicy::Never,
                CacheArg::Metadata => CachePolicy::Metadata,
                CacheArg::Auto => CachePolicy::Auto,
                CacheArg::Always => CachePolicy::Always,
            },
            writeback: cli.writeback,
            allow_direct_io: cli.allow_direct_io,
            xattr: cli.xattr || cli.posix_acl || cli.xattrmap.is_some(),
            posix_acl: cli.posix_acl,
            inode_file_handles: match cli.inode_file_handles {
                FileHandlesArg::Never => FileHandleMode::Never,
                FileHandlesArg::Prefer => FileHandleMode::Prefer,
                FileHandlesArg::Mandatory => FileHandleMode::Mandatory,
            },
            announce_submounts: cli.announce_submounts,
            killpriv_v2: cli.killpriv_v2,
            ..PassthroughConfig::default()
        };
        let mut policy = match &cli.policy {
            Some(path) => load_policy(path)?,
            None => avpfs_policy::Policy::permissive(),
        };
        policy.readonly |= cli.readonly;
        apply_virtiofsd_translations(&cli, &mut policy)?;
        let policy = (!policy.is_permissive()).then_some(policy);
        let threads = if cli.thread_pool_size > 0 { cli.thread_pool_size } else { default_threads() };
        let mut vhost = avpfs_vhost::VhostOptions {
            tag: cli.tag.clone().unwrap_or_else(|| "avpfs".into()),
            keep_listening_after_disconnect: cli.keep_listening,
            poll_max: std::time::Duration::from_micros(cli.poll_max_us),
            bulk_helper: cli.bulk_helper,
            forget_batch: std::time::Duration::from_micros(cli.forget_batch_us),
            ..Default::default()
        };
        if let Some(n) = cli.request_queues {
            vhost.num_request_queues = n;
        }
        Ok(DaemonConfig {
            fs,
            policy,
            readonly_mount: cli.readonly,
            front_end,
            threads,
            vhost,
            socket_group: cli.socket_group.clone(),
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
        })
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).max(2) * 2
}

/// Reads and checks a policy file.
pub fn load_policy(path: &std::path::Path) -> Result<avpfs_policy::Policy, Error> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::Policy { path: path.into(), message: e.to_string() })?;
    avpfs_policy::parse(&text).map_err(|e| Error::Policy { path: path.into(), message: e.to_string() })
}

/// Sets up logging from the command line.
pub fn init_logging(cli: &Cli) {
    let level = if cli.debug {
        log::LevelFilter::Debug
    } else {
        match cli.log_level {
            LogLevelArg::Error => log::LevelFilter::Error,
            LogLevelArg::Warn => log::LevelFilter::Warn,
            LogLevelArg::Info => log::LevelFilter::Info,
            LogLevelArg::Debug => log::LevelFilter::Debug,
            LogLevelArg::Trace => log::LevelFilter::Trace,
            LogLevelArg::Off => log::LevelFilter::Off,
        }
    };
    if cli.syslog {
        match syslog::SyslogLogger::connect(std::path::Path::new(syslog::SYSLOG_SOCKET), level) {
            Ok(logger) => {
                let _ = logger.install();
                return;
            }
            Err(e) => {
                eprintln!("avpfs: --syslog: cannot connect to {} ({e}); logging to stderr", syslog::SYSLOG_SOCKET)
            }
        }
    }
    let _ = env_logger::Builder::new().filter_level(level).format_timestamp_micros().parse_env("AVPFS_LOG").try_init();
}

/// Runs the daemon until its front end ends.
pub fn run(cli: Cli) -> Result<(), Error> {
    if cli.print_capabilities {
        println!("{}", cli::CAPABILITIES_JSON);
        return Ok(());
    }
    if let Some(cli::Command::CheckConfig { file }) = &cli.command {
        let policy = load_policy(file)?;
        print!("{policy}");
        return Ok(());
    }
    init_logging(&cli);
    signals::block_termination_signals().map_err(|source| Error::Sys { what: "block signals", source })?;
    let mut config = DaemonConfig::try_from(cli)?;
    signals::raise_nofile_limit(config.rlimit_nofile).map_err(|source| Error::Sys { what: "setrlimit", source })?;
    reserve_descriptor_table()?;
    // What must be done in the host's view happens before the sandbox: the
    // /dev/fuse mount, the vhost-user socket (and its group).
    let opened = open_front_end(&config)?;
    let supervised = confine(&mut config, &opened)?;
    let fs = PassthroughFs::new(config.fs.clone())?;
    match config.policy.clone() {
        Some(policy) => serve(&config, opened, supervised, avpfs_policy::PolicyFs::new(fs, policy)),
        None => serve(&config, opened, supervised, fs),
    }
}

/// Descriptors the table is grown to at start-up: an O_PATH descriptor per
/// inode the guest holds, so that the first 65 536 never make the kernel grow
/// the table (each growth, once threads run, stalls every thread that opens
/// a file for an RCU grace period, 10-20 ms). It costs 512 KiB of kernel
/// memory. Beyond it the table still grows, by doubling.
const DESCRIPTOR_TABLE_RESERVE: u32 = 1 << 16;

/// Grows the descriptor table to [`DESCRIPTOR_TABLE_RESERVE`] (or the
/// descriptor limit) while the process has one thread. Must run before any
/// thread starts.
fn reserve_descriptor_table() -> Result<(), Error> {
    let sys = |what: &'static str| move |source| Error::Sys { what, source };
    let root = std::fs::File::open("/").map_err(sys("open /"))?;
    let slots = avpfs_sys::fs::reserve_descriptor_table(std::os::fd::AsFd::as_fd(&root), DESCRIPTOR_TABLE_RESERVE)
        .map_err(sys("grow the descriptor table"))?;
    debug!("descriptor table: {slots} slots");
    Ok(())
}

/// Enters the sandbox (`--sandbox`) and drops privileges: capabilities to
/// the minimum (with a sandbox or `--modcaps`), Landlock (with a sandbox),
/// no_new_privs. Points the passthrough at the share and at /proc/self/fd as
/// the sandbox shows them. Returns whether a supervisor process does the
/// host-side clean-up. Must run before any thread starts.
fn confine(config: &mut DaemonConfig, opened: &OpenedFrontEnd) -> Result<bool, Error> {
    let root = sandbox::Sandbox::new(config.sandbox, &config.fs.root).on_host_cleanup(opened.host_cleanup(config));
    let root = root.enter()?;
    config.fs.root = root.shared_dir.clone();
    config.fs.proc_self_fd = Some(root.proc_self_fd.clone());
    let sandboxed = config.sandbox != sandbox::SandboxMode::None;
    if sandboxed || config.modcaps != sandbox::ModCaps::default() {
        let file_handles = config.fs.inode_file_handles != FileHandleMode::Never;
        let mut keep = sandbox::keep_set(file_handles, &config.modcaps);
        if matches!(config.front_end, FrontEnd::FuseMount(_)) && !root.supervised {
            // Nobody else can unmount the /dev/fuse mount at the end.
            keep.insert(sandbox::Capability::CAP_SYS_ADMIN);
        }
        let kept = sandbox::drop_capabilities(&keep)?;
        info!("capabilities kept: {}", sandbox::capability_names(&kept));
    }
    if sandboxed {
        match sandbox::restrict_to(&root.shared_dir, &root.proc_self_fd)? {
            sandbox::LandlockEnforcement::Full => info!("landlock: enforced"),
            sandbox::LandlockEnforcement::Partial => info!("landlock: partly enforced (older kernel)"),
            sandbox::LandlockEnforcement::None => log::warn!("landlock: not supported by this kernel"),
        }
    }
    sandbox::set_no_new_privs()?;
    Ok(root.supervised)
}

/// The front end's host-side part, opened before the sandbox.
enum OpenedFrontEnd {
    /// `/dev/fuse`, mounted.
    Fuse(std::fs::File),
    /// The vhost-user socket: bound already (sandboxed) or to bind.
    Vhost(avpfs_vhost::Socket),
}

impl OpenedFrontEnd {
    /// What the supervisor does in the host's view when the daemon stops.
    fn host_cleanup(&self, config: &DaemonConfig) -> impl FnOnce() + 'static {
        let front_end = config.front_end.clone();
        move || match front_end {
            FrontEnd::FuseMount(mountpoint) => {
                if let Err(e) = avpfs_fusedev::unmount(&mountpoint) {
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        log::warn!("unmount {}: {e}", mountpoint.display());
                    }
                }
            }
            FrontEnd::VhostSocket(path) => {
                let _ = std::fs::remove_file(path);
            }
            FrontEnd::VhostFd(_) => {}
        }
    }
}

fn open_front_end(config: &DaemonConfig) -> Result<OpenedFrontEnd, Error> {
    Ok(match &config.front_end {
        FrontEnd::FuseMount(mountpoint) => {
            let opts = avpfs_fusedev::MountOptions { read_only: config.readonly_mount, ..Default::default() };
            let dev = avpfs_fusedev::mount(mountpoint, &opts)
                .map_err(|source| avpfs_fusedev::Error::Mount { path: mountpoint.clone(), source })?;
            info!("mounted on {}", mountpoint.display());
            OpenedFrontEnd::Fuse(dev)
        }
        FrontEnd::VhostFd(fd) => OpenedFrontEnd::Vhost(avpfs_vhost::Socket::Fd(inherited_fd(*fd)?)),
        FrontEnd::VhostSocket(path) if config.sandbox == sandbox::SandboxMode::None => {
            OpenedFrontEnd::Vhost(avpfs_vhost::Socket::Path(path.clone()))
        }
        FrontEnd::VhostSocket(path) => {
            use std::os::unix::fs::FileTypeExt;
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(path);
            }
            let listener = std::os::unix::net::UnixListener::bind(path)
                .map_err(|source| Error::Sys { what: "bind the vhost-user socket", source })?;
            if let Some(group) = &config.socket_group {
                set_socket_group(path, group)?;
            }
            OpenedFrontEnd::Vhost(avpfs_vhost::Socket::Listener(listener))
        }
    })
}

fn serve<F: avpfs_server::FileSystem + 'static>(
    config: &DaemonConfig,
    opened: OpenedFrontEnd,
    supervised: bool,
    fs: F,
) -> Result<(), Error> {
    let server = Arc::new(Server::new(fs));
    match (&config.front_end, opened) {
        (FrontEnd::FuseMount(mountpoint), OpenedFrontEnd::Fuse(dev)) => {
            let session = avpfs_fusedev::FuseSession::from_device(server, dev, mountpoint);
            let unmounter = session.unmounter();
            seccomp::install(config.seccomp)?;
            signals::on_termination(move || {
                // A supervisor unmounts (it sees the host's mounts); the
                // workers then end.
                if supervised {
                    return;
                }
                if let Err(e) = unmounter.unmount() {
                    log::warn!("unmount: {e}");
                }
            })
            .map_err(|source| Error::Sys { what: "signal handling", source })?;
            info!("serving {} on {} with {} threads", config.fs.root.display(), mountpoint.display(), config.threads);
            session.serve(config.threads)?;
            Ok(())
        }
        (_, OpenedFrontEnd::Vhost(socket)) => {
            let bind_here = matches!(socket, avpfs_vhost::Socket::Path(_));
            let daemon = avpfs_vhost::VhostDaemon::new(socket, server, config.vhost.clone())?;
            if let (FrontEnd::VhostSocket(path), Some(group), true) =
                (&config.front_end, &config.socket_group, bind_here)
            {
                set_socket_group(path, group)?;
            }
            let stopper = daemon.stopper();
            seccomp::install(config.seccomp)?;
            signals::on_termination(move || stopper.stop())
                .map_err(|source| Error::Sys { what: "signal handling", source })?;
            info!("serving {} to a vhost-user front end, tag {:?}", config.fs.root.display(), config.vhost.tag);
            daemon.run()?;
            Ok(())
        }
        (_, OpenedFrontEnd::Fuse(_)) => unreachable!("/dev/fuse is opened for --fuse-mount only"),
    }
}

/// Takes ownership of a listening socket inherited from the parent (`--fd`).
fn inherited_fd(fd: i32) -> Result<std::os::fd::OwnedFd, Error> {
    use std::os::fd::FromRawFd;
    if !avpfs_sys::fs::fd_is_open(fd) {
        return Err(Error::Usage(format!("--fd {fd}: not an open file descriptor")));
    }
    // Taking ownership of a descriptor number cannot be made safe by a
    // wrapper: only the caller knows that nothing else owns it.
    // SAFETY: the descriptor is open (checked above) and was handed to this
    // process on its command line to own; nothing else in the process uses it.
    #[allow(unsafe_code)]
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    Ok(owned)
}

/// Gives the socket file to `group` and lets that group connect.
fn set_socket_group(path: &std::path::Path, group: &str) -> Result<(), Error> {
    let gid = lookup_group(group).ok_or_else(|| Error::Usage(format!("--socket-group {group}: no such group")))?;
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(|source| Error::Sys { what: "chown socket", source })?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o770))
        .map_err(|source| Error::Sys { what: "chmod socket", source })
}

/// A group id from a name or a number, using /etc/group.
fn lookup_group(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == group).then(|| f.nth(1)?.parse().ok()).flatten()
    })
}
