//! The avpfs daemon: command line, start-up and the choice of front end.

#![deny(missing_docs)]
// The system calls are made through avpfs-sys's safe wrappers; the one
// `unsafe` left (taking ownership of an inherited descriptor) is allowed
// where it is, with its reason.
#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod config_file;
pub mod sandbox;
pub mod seccomp;
mod signals;
pub mod syslog;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use avpfs_passthrough::{FileHandleMode, Share};
use avpfs_server::Server;
use log::{debug, info};

use cli::{Cli, LogLevelArg};
pub use config::{DaemonConfig, FrontEnd, SessionConfig, ShareConfig};

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
    /// The configuration file cannot be read or is invalid.
    #[error("configuration {0}")]
    ConfigFile(#[from] config_file::ConfigFileError),
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

/// `avpfs check-config FILE`: checks a daemon configuration or a policy
/// file and prints what it makes.
fn check_config(file: &std::path::Path) -> Result<(), Error> {
    let text =
        std::fs::read_to_string(file).map_err(|e| Error::Policy { path: file.into(), message: e.to_string() })?;
    if !config_file::is_daemon_config(&text) {
        print!("{}", load_policy(file)?);
        return Ok(());
    }
    let c = config_file::parse(file, &text)?;
    for s in &c.shares {
        let guests: Vec<&str> =
            c.guests.iter().filter(|g| c.shares[g.share].name == s.name).map(|g| g.name.as_str()).collect();
        println!(
            "share {:?}: {} ({:?} cache), guests: {}",
            s.name,
            s.shared_dir.display(),
            s.options.cache,
            guests.join(", ")
        );
    }
    for g in &c.guests {
        println!();
        println!(
            "guest {:?}: socket {}, share {:?}, tag {:?}",
            g.name,
            g.socket_path.display(),
            c.shares[g.share].name,
            g.tag
        );
        for line in g.policy.to_string().lines() {
            println!("  {line}");
        }
    }
    Ok(())
}

/// Runs the daemon until its front ends end.
pub fn run(cli: Cli) -> Result<(), Error> {
    if cli.print_capabilities {
        println!("{}", cli::CAPABILITIES_JSON);
        return Ok(());
    }
    if let Some(cli::Command::CheckConfig { file }) = &cli.command {
        return check_config(file);
    }
    init_logging(&cli);
    signals::block_termination_signals().map_err(|source| Error::Sys { what: "block signals", source })?;
    let mut config = match &cli.config {
        Some(file) => DaemonConfig::from_file(&cli, &config_file::load(file)?)?,
        None => DaemonConfig::try_from(cli)?,
    };
    signals::raise_nofile_limit(config.rlimit_nofile).map_err(|source| Error::Sys { what: "setrlimit", source })?;
    reserve_descriptor_table()?;
    // What must be done in the host's view happens before the sandbox: the
    // /dev/fuse mounts, the vhost-user sockets (and their groups).
    let opened = config.sessions.iter().map(|s| open_front_end(s, config.sandbox)).collect::<Result<Vec<_>, _>>()?;
    let supervised = confine(&mut config, &opened)?;
    let shares = config.shares.iter().map(|s| Share::new(s.fs.clone())).collect::<Result<Vec<_>, _>>()?;
    let mut ready = Vec::new();
    for (session, opened) in config.sessions.iter().zip(opened) {
        // Each session has its own node ids, handles and INIT state on its
        // share's tree; the sessions of a share share its host files.
        let fs = shares[session.share].session();
        ready.push(match session.policy.clone() {
            Some(policy) => prepare(&config, session, opened, supervised, avpfs_policy::PolicyFs::new(fs, policy))?,
            None => prepare(&config, session, opened, supervised, fs)?,
        });
    }
    serve(&config, ready)
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
/// no_new_privs. Points the passthrough at the shares and at /proc/self/fd
/// as the sandbox shows them. Returns whether a supervisor process does the
/// host-side clean-up. Must run before any thread starts.
fn confine(config: &mut DaemonConfig, opened: &[OpenedFrontEnd]) -> Result<bool, Error> {
    let cleanups: Vec<_> = config.sessions.iter().zip(opened).map(|(s, o)| o.host_cleanup(s)).collect();
    let roots = config.shares.iter().map(|s| s.fs.root.clone());
    let root = sandbox::Sandbox::new(config.sandbox, roots)
        .on_host_cleanup(move || cleanups.into_iter().for_each(|c| c()))
        .enter()?;
    for (share, root_dir) in config.shares.iter_mut().zip(&root.shared_dirs) {
        share.fs.root = root_dir.clone();
        share.fs.proc_self_fd = Some(root.proc_self_fd.clone());
    }
    let sandboxed = config.sandbox != sandbox::SandboxMode::None;
    if sandboxed || config.modcaps != sandbox::ModCaps::default() {
        let file_handles = config.shares.iter().any(|s| s.fs.inode_file_handles != FileHandleMode::Never);
        let mut keep = sandbox::keep_set(file_handles, &config.modcaps);
        if config.sessions.iter().any(|s| matches!(s.front_end, FrontEnd::FuseMount(_))) && !root.supervised {
            // Nobody else can unmount the /dev/fuse mount at the end.
            keep.insert(sandbox::Capability::CAP_SYS_ADMIN);
        }
        let kept = sandbox::drop_capabilities(&keep)?;
        info!("capabilities kept: {}", sandbox::capability_names(&kept));
    }
    if sandboxed {
        match sandbox::restrict_to(&root.shared_dirs, &root.proc_self_fd)? {
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
    fn host_cleanup(&self, session: &SessionConfig) -> impl FnOnce() + 'static {
        let front_end = session.front_end.clone();
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

fn open_front_end(config: &SessionConfig, sandbox: sandbox::SandboxMode) -> Result<OpenedFrontEnd, Error> {
    Ok(match &config.front_end {
        FrontEnd::FuseMount(mountpoint) => {
            let opts = avpfs_fusedev::MountOptions { read_only: config.readonly_mount, ..Default::default() };
            let dev = avpfs_fusedev::mount(mountpoint, &opts)
                .map_err(|source| avpfs_fusedev::Error::Mount { path: mountpoint.clone(), source })?;
            info!("mounted on {}", mountpoint.display());
            OpenedFrontEnd::Fuse(dev)
        }
        FrontEnd::VhostFd(fd) => OpenedFrontEnd::Vhost(avpfs_vhost::Socket::Fd(inherited_fd(*fd)?)),
        // Without a sandbox the daemon binds (and later removes) the socket itself.
        FrontEnd::VhostSocket(path) if sandbox == sandbox::SandboxMode::None => {
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

/// A session with its front end set up, ready to serve on a thread of its own.
struct ReadySession {
    name: String,
    serve: Box<dyn FnOnce() -> Result<(), Error> + Send>,
    /// Makes `serve` return (from the signal thread).
    stop: Box<dyn FnOnce() + Send>,
}

/// Puts `fs` behind a FUSE server on the session's front end.
fn prepare<F: avpfs_server::FileSystem + 'static>(
    config: &DaemonConfig,
    session: &SessionConfig,
    opened: OpenedFrontEnd,
    supervised: bool,
    fs: F,
) -> Result<ReadySession, Error> {
    let server = Arc::new(Server::new(fs));
    let root = config.shares[session.share].fs.root.display().to_string();
    let name = session.name.clone();
    match (&session.front_end, opened) {
        (FrontEnd::FuseMount(mountpoint), OpenedFrontEnd::Fuse(dev)) => {
            let fuse = avpfs_fusedev::FuseSession::from_device(server, dev, mountpoint);
            let unmounter = fuse.unmounter();
            let threads = config.threads;
            let mountpoint = mountpoint.clone();
            Ok(ReadySession {
                name,
                serve: Box::new(move || {
                    info!("serving {root} on {} with {threads} threads", mountpoint.display());
                    Ok(fuse.serve(threads)?)
                }),
                // A supervisor unmounts (it sees the host's mounts); the
                // workers then end.
                stop: Box::new(move || {
                    if !supervised {
                        if let Err(e) = unmounter.unmount() {
                            log::warn!("unmount: {e}");
                        }
                    }
                }),
            })
        }
        (_, OpenedFrontEnd::Vhost(socket)) => {
            let bind_here = matches!(socket, avpfs_vhost::Socket::Path(_));
            let daemon = avpfs_vhost::VhostDaemon::new(socket, server, session.vhost.clone())?;
            if let (FrontEnd::VhostSocket(path), Some(group), true) =
                (&session.front_end, &session.socket_group, bind_here)
            {
                set_socket_group(path, group)?;
            }
            let stopper = daemon.stopper();
            let tag = session.vhost.tag.clone();
            Ok(ReadySession {
                name,
                serve: Box::new(move || {
                    info!("serving {root} to a vhost-user front end, tag {tag:?}");
                    Ok(daemon.run()?)
                }),
                stop: Box::new(move || stopper.stop()),
            })
        }
        (_, OpenedFrontEnd::Fuse(_)) => unreachable!("/dev/fuse is opened for --fuse-mount only"),
    }
}

/// Installs seccomp and the termination handling, then serves every session
/// until each has ended (a signal stops them all): one session on this
/// thread, several on a thread each. Returns the first error.
fn serve(config: &DaemonConfig, ready: Vec<ReadySession>) -> Result<(), Error> {
    seccomp::install(config.seccomp)?;
    let (serves, stops): (Vec<_>, Vec<_>) = ready.into_iter().map(|r| ((r.name, r.serve), r.stop)).unzip();
    signals::on_termination(move || stops.into_iter().for_each(|stop| stop()))
        .map_err(|source| Error::Sys { what: "signal handling", source })?;
    if serves.len() == 1 {
        let (_, serve) = serves.into_iter().next().expect("one session");
        return serve();
    }
    let mut threads = Vec::new();
    for (name, serve) in serves {
        let thread = std::thread::Builder::new()
            .name(format!("guest-{name}"))
            .spawn(move || {
                let result = serve();
                if let Err(e) = &result {
                    log::error!("guest {name}: {e}");
                }
                result
            })
            .map_err(|source| Error::Sys { what: "start a session thread", source })?;
        threads.push(thread);
    }
    let mut first = Ok(());
    for t in threads {
        let result = t.join().unwrap_or_else(|_| Err(Error::Usage("a session thread panicked".into())));
        if first.is_ok() {
            first = result;
        }
    }
    first
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
