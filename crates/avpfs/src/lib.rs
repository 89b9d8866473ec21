//! The avpfs daemon: command line, start-up and the choice of front end.

#![deny(missing_docs)]
// The system calls are made through avpfs-sys's safe wrappers; the one
// `unsafe` left (taking ownership of an inherited descriptor) is allowed
// where it is, with its reason.
#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod config_file;
pub mod control;
pub mod metrics;
pub mod sandbox;
pub mod seccomp;
pub mod sessions;
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
    /// A `--9p-listen` (or `p9_listen`) address cannot be listened on.
    #[error("9P: {0}")]
    P9Listen(#[source] avpfs_9p::Error),
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
    let json = cli.log_format == cli::LogFormatArg::Json;
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .parse_env("AVPFS_LOG")
        .format(move |buf, record| {
            use std::io::Write;
            let label = avpfs_server::log_context::current();
            let ts = buf.timestamp_micros();
            if json {
                let mut event = serde_json::json!({
                    "ts": ts.to_string(),
                    "level": record.level().as_str(),
                    "target": record.target(),
                    "msg": record.args().to_string(),
                });
                if let Some(l) = &label {
                    event["guest"] = serde_json::json!(l.guest);
                    event["share"] = serde_json::json!(l.share);
                }
                writeln!(buf, "{event}")
            } else {
                let who = label.map(|l| format!(" guest={} share={}", l.guest, l.share)).unwrap_or_default();
                writeln!(buf, "[{ts} {:<5} {}{who}] {}", record.level(), record.target(), record.args())
            }
        })
        .try_init();
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
        if let Some(addr) = &s.p9_listen {
            println!("  9P2000.L on {addr}");
        }
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
    match &cli.command {
        Some(cli::Command::CheckConfig { file }) => return check_config(file),
        Some(cli::Command::Ctl { control_socket, command }) => return ctl(control_socket, *command),
        None => {}
    }
    init_logging(&cli);
    signals::block_termination_signals().map_err(|source| Error::Sys { what: "block signals", source })?;
    let mut config = match &cli.config {
        Some(file) => DaemonConfig::from_file(&cli, file, &config_file::load(file)?)?,
        None => DaemonConfig::try_from(cli)?,
    };
    signals::raise_nofile_limit(config.rlimit_nofile).map_err(|source| Error::Sys { what: "setrlimit", source })?;
    reserve_descriptor_table()?;
    // What must be done in the host's view happens before the sandbox: the
    // 9P listeners first (a vsock port in use is found before anything is
    // mounted or made), the /dev/fuse mounts, the vhost-user sockets (and
    // their groups).
    let p9_listeners = open_p9_listeners(&config)?;
    let opened = config.sessions.iter().map(|s| open_front_end(s, config.sandbox)).collect::<Result<Vec<_>, _>>()?;
    let operations = open_operations(&config)?;
    let share_entries: Vec<sessions::ShareEntry> = config
        .shares
        .iter()
        .map(|s| sessions::ShareEntry {
            name: s.name.clone(),
            shared_dir: s.fs.root.clone(),
            cache: format!("{:?}", s.fs.cache).to_lowercase(),
        })
        .collect();
    let confined = confine(&mut config, &opened)?;
    let supervised = confined.supervised;
    let shares = config.shares.iter().map(|s| Share::new(s.fs.clone())).collect::<Result<Vec<_>, _>>()?;
    let mut ready = Vec::new();
    let mut entries = Vec::new();
    for (session, opened) in config.sessions.iter().zip(opened) {
        // Each session has its own node ids, handles and INIT state on its
        // share's tree; the sessions of a share share its host files.
        let fs = shares[session.share].session();
        let (r, e) = match session.policy.clone() {
            Some(policy) => prepare(&config, session, opened, supervised, avpfs_policy::PolicyFs::new(fs, policy))?,
            None => prepare(&config, session, opened, supervised, fs)?,
        };
        ready.push(r);
        entries.push(e);
    }
    let p9_entries: Vec<Arc<sessions::P9Entry>> = config
        .p9
        .iter()
        .map(|l| {
            let policy = l.policy.clone().unwrap_or_else(avpfs_policy::Policy::permissive);
            Arc::new(sessions::P9Entry::new(l.share, l.addr.to_string(), policy))
        })
        .collect();
    let registry = Arc::new(sessions::Registry::new(share_entries, entries, p9_entries.clone(), config.reload.clone()));
    let p9: Vec<P9Ready> = config
        .p9
        .iter()
        .zip(p9_listeners)
        .zip(p9_entries)
        .map(|((l, listener), entry)| p9_ready(&shares[l.share], entry, listener))
        .collect();
    serve(&config, ready, registry, operations, confined.reload_channel, p9)
}

/// A 9P listener with what makes its sessions, ready to accept.
type P9Ready = Box<dyn FnOnce() + Send>;

/// Binds each `--9p-listen` address (before the sandbox: in the host's
/// file system, and before seccomp, which forbids `socket` and `bind`); a
/// stale unix socket file is replaced. A vsock port in use is an error
/// naming the port.
fn open_p9_listeners(config: &DaemonConfig) -> Result<Vec<avpfs_9p::Listener>, Error> {
    use std::os::unix::fs::FileTypeExt;
    let mut listeners = Vec::new();
    for l in &config.p9 {
        if let avpfs_9p::ListenAddr::Unix(path) = &l.addr {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(path);
            }
        }
        let listener = avpfs_9p::bind(&l.addr).map_err(Error::P9Listen)?;
        info!("9P2000.L listens on {}", listener.addr());
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Accepting on `listener`: each connection gets a session of `share`
/// behind a policy layer with `entry`'s policy, which `entry` tracks so
/// that a reload reaches it.
fn p9_ready(share: &Share, entry: Arc<sessions::P9Entry>, listener: avpfs_9p::Listener) -> P9Ready {
    let share = share.clone();
    let options = avpfs_9p::P9Options::default();
    Box::new(move || {
        let result = avpfs_9p::listen(listener, options, move || {
            let fs = Arc::new(avpfs_policy::PolicyFs::new(share.session(), (*entry.policy()).clone()));
            let layer: Arc<dyn sessions::PolicyLayer + Send + Sync> = fs.clone();
            entry.track(&layer);
            fs
        });
        if let Err(e) = result {
            log::error!("9p: {e}");
        }
    })
}

/// `avpfs ctl`: one request to a running daemon's control socket; prints
/// the reply (the metrics as text).
fn ctl(socket: &std::path::Path, command: cli::CtlCommand) -> Result<(), Error> {
    let name = match command {
        cli::CtlCommand::Status => "status",
        cli::CtlCommand::Stats => "stats",
        cli::CtlCommand::Reload => "reload",
        cli::CtlCommand::Metrics => "metrics",
    };
    let reply =
        control::request(socket, name).map_err(|source| Error::Sys { what: "talk to the control socket", source })?;
    if reply.get("ok").and_then(serde_json::Value::as_bool) != Some(true) {
        let why = reply.get("error").and_then(serde_json::Value::as_str).unwrap_or("no reason given");
        return Err(Error::Usage(format!("{name}: {why}")));
    }
    match reply.get("text").and_then(serde_json::Value::as_str) {
        Some(text) if name == "metrics" => print!("{text}"),
        _ => println!("{}", serde_json::to_string_pretty(&reply).unwrap_or_default()),
    }
    Ok(())
}

/// The control socket and the metrics listener, bound before the sandbox
/// (in the host's file system and network namespace).
struct Operations {
    control: Option<(std::os::unix::net::UnixListener, control::Access)>,
    metrics: Option<std::net::TcpListener>,
}

fn open_operations(config: &DaemonConfig) -> Result<Operations, Error> {
    let control = match &config.control_socket {
        Some(path) => {
            let gid = match &config.control_socket_group {
                Some(g) => Some(
                    lookup_group(g)
                        .ok_or_else(|| Error::Usage(format!("--control-socket-group {g}: no such group")))?,
                ),
                None => None,
            };
            let listener =
                control::bind(path, gid).map_err(|source| Error::Sys { what: "bind the control socket", source })?;
            let access = if gid.is_some() { control::Access::Group } else { control::Access::OwnerOnly };
            info!("control socket on {}", path.display());
            Some((listener, access))
        }
        None => None,
    };
    let metrics = match config.metrics_listen {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .map_err(|source| Error::Sys { what: "bind --metrics-listen", source })?;
            info!("metrics on http://{addr}/metrics");
            Some(l)
        }
        None => None,
    };
    Ok(Operations { control, metrics })
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
fn confine(config: &mut DaemonConfig, opened: &[OpenedFrontEnd]) -> Result<Confined, Error> {
    let cleanups: Vec<_> = config.sessions.iter().zip(opened).map(|(s, o)| o.host_cleanup(s)).collect();
    let control_socket = config.control_socket.clone();
    let p9_sockets: Vec<std::path::PathBuf> = config
        .p9
        .iter()
        .filter_map(|l| match &l.addr {
            avpfs_9p::ListenAddr::Unix(p) => Some(p.clone()),
            avpfs_9p::ListenAddr::Vsock { .. } => None,
        })
        .collect();
    let roots = config.shares.iter().map(|s| s.fs.root.clone());
    let mut sandbox = sandbox::Sandbox::new(config.sandbox, roots).on_host_cleanup(move || {
        cleanups.into_iter().for_each(|c| c());
        if let Some(path) = control_socket {
            let _ = std::fs::remove_file(path);
        }
        for path in p9_sockets {
            let _ = std::fs::remove_file(path);
        }
    });
    // On SIGHUP the supervisor reads the configuration's files, which the
    // sandboxed daemon cannot see, and passes them on.
    if let Some(source) = &config.reload {
        if let Some(main) = source.main_file() {
            let main = main.to_path_buf();
            let is_config = matches!(source, config::ReloadSource::ConfigFile { .. });
            sandbox = sandbox
                .on_reload(move || serde_json::to_vec(&control::reload_files(&main, is_config)).unwrap_or_default());
        }
    }
    let mut root = sandbox.enter()?;
    for (share, root_dir) in config.shares.iter_mut().zip(&root.shared_dirs) {
        share.fs.root = root_dir.clone();
        share.fs.proc_self_fd = Some(root.proc_self_fd.clone());
    }
    let sandboxed = config.sandbox != sandbox::SandboxMode::None;
    if sandboxed || config.modcaps != sandbox::ModCaps::default() {
        // open_by_handle_at needs CAP_DAC_READ_SEARCH: for nodes held by
        // file handle, and for a migration state in file-handles mode.
        let file_handles = config.shares.iter().any(|s| {
            s.fs.inode_file_handles != FileHandleMode::Never
                || s.fs.migration_mode == avpfs_passthrough::MigrationMode::FileHandles
        });
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
    Ok(Confined { supervised: root.supervised, reload_channel: root.reload_channel.take() })
}

/// What [`confine`] leaves the daemon.
struct Confined {
    /// A supervisor does the host-side clean-up.
    supervised: bool,
    /// Where the supervisor passes a reload's files (see [`sandbox::Sandbox::on_reload`]).
    reload_channel: Option<std::os::unix::net::UnixStream>,
}

/// Reads the files the supervisor passes after a SIGHUP (waiting up to 5 s
/// for them: a SIGHUP sent to the daemon itself comes with none).
fn files_from_supervisor(
    channel: &mut std::os::unix::net::UnixStream,
) -> Result<std::collections::HashMap<std::path::PathBuf, String>, String> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut fds = [avpfs_sys::poll::PollFd::new(channel.as_fd(), libc::POLLIN)];
    match avpfs_sys::poll::poll(&mut fds, 5000) {
        Ok(n) if n > 0 => {}
        _ => return Err("the supervisor sent no files (was the SIGHUP sent to it?)".into()),
    }
    let mut len = [0u8; 4];
    channel.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
    channel.read_exact(&mut bytes).map_err(|e| e.to_string())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    control::files_of(&value)
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

/// Puts `fs` behind a FUSE server on the session's front end; returns it
/// ready to serve, and what the control socket sees of it.
fn prepare<F: avpfs_server::FileSystem + sessions::MaybePolicy + 'static>(
    config: &DaemonConfig,
    session: &SessionConfig,
    opened: OpenedFrontEnd,
    supervised: bool,
    fs: F,
) -> Result<(ReadySession, sessions::SessionEntry), Error> {
    let server = Arc::new(Server::new(fs));
    server.stats().set_enabled(config.stats);
    let label = Arc::new(avpfs_server::log_context::SessionLabel {
        guest: session.name.clone(),
        share: config.shares[session.share].name.clone(),
    });
    let view: Arc<dyn sessions::ServerView> = server.clone();
    let root = config.shares[session.share].fs.root.display().to_string();
    let name = session.name.clone();
    let entry = |transport, connected: Box<dyn Fn() -> bool + Send + Sync>| sessions::SessionEntry {
        name: session.name.clone(),
        share: session.share,
        transport,
        server: view.clone(),
        connected,
    };
    match (&session.front_end, opened) {
        (FrontEnd::FuseMount(mountpoint), OpenedFrontEnd::Fuse(dev)) => {
            let e = entry(sessions::Transport::FuseMount(mountpoint.clone()), Box::new(|| true));
            let fuse = avpfs_fusedev::FuseSession::from_device(server, dev, mountpoint);
            let fuse_label = label.clone();
            let unmounter = fuse.unmounter();
            let threads = config.threads;
            let mountpoint = mountpoint.clone();
            let ready = ReadySession {
                name,
                serve: Box::new(move || {
                    avpfs_server::log_context::enter(Some(&fuse_label));
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
            };
            Ok((ready, e))
        }
        (_, OpenedFrontEnd::Vhost(socket)) => {
            let bind_here = matches!(socket, avpfs_vhost::Socket::Path(_));
            let options = avpfs_vhost::VhostOptions { label: Some(label.clone()), ..session.vhost.clone() };
            let daemon = avpfs_vhost::VhostDaemon::new(socket, server, options)?;
            if let (FrontEnd::VhostSocket(path), Some(group), true) =
                (&session.front_end, &session.socket_group, bind_here)
            {
                set_socket_group(path, group)?;
            }
            let stopper = daemon.stopper();
            let tag = session.vhost.tag.clone();
            let socket = match &session.front_end {
                FrontEnd::VhostSocket(p) => p.display().to_string(),
                FrontEnd::VhostFd(fd) => format!("fd {fd}"),
                FrontEnd::FuseMount(_) => unreachable!("a vhost-user front end"),
            };
            let transport = sessions::Transport::VhostUser {
                socket,
                tag: tag.clone(),
                request_queues: session.vhost.num_request_queues,
            };
            let watch = stopper.clone();
            let e = entry(transport, Box::new(move || watch.is_connected()));
            let ready = ReadySession {
                name,
                serve: Box::new(move || {
                    avpfs_server::log_context::enter(Some(&label));
                    info!("serving {root} to a vhost-user front end, tag {tag:?}");
                    Ok(daemon.run()?)
                }),
                stop: Box::new(move || stopper.stop()),
            };
            Ok((ready, e))
        }
        (_, OpenedFrontEnd::Fuse(_)) => unreachable!("/dev/fuse is opened for --fuse-mount only"),
    }
}

/// Installs seccomp and the signal handling (SIGTERM and SIGINT stop every
/// session, SIGHUP reloads), starts the control socket and the metrics
/// listener, then serves every session until each has ended: one session
/// on this thread, several on a thread each. Returns the first error.
fn serve(
    config: &DaemonConfig,
    ready: Vec<ReadySession>,
    registry: Arc<sessions::Registry>,
    operations: Operations,
    reload_channel: Option<std::os::unix::net::UnixStream>,
    p9: Vec<P9Ready>,
) -> Result<(), Error> {
    seccomp::install(config.seccomp)?;
    let (serves, stops): (Vec<_>, Vec<_>) = ready.into_iter().map(|r| ((r.name, r.serve), r.stop)).unzip();
    let unsandboxed_control = (config.sandbox == sandbox::SandboxMode::None).then(|| config.control_socket.clone());
    // A daemon with only 9P listeners waits here for the stop.
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
    let reloading = registry.clone();
    let reload_channel = std::sync::Mutex::new(reload_channel);
    signals::on_signals(
        move || {
            stops.into_iter().for_each(|stop| stop());
            let _ = stopped_tx.send(());
            // Without a supervisor, the control socket file is ours to remove.
            if let Some(Some(path)) = &unsandboxed_control {
                let _ = std::fs::remove_file(path);
            }
        },
        move || {
            let mut channel = reload_channel.lock().unwrap_or_else(|e| e.into_inner());
            let result = match channel.as_mut() {
                Some(c) => files_from_supervisor(c).and_then(|files| reloading.reload(Some(&files))),
                None => reloading.reload(None),
            };
            match result {
                Ok(changed) => info!("reload: policies changed for {changed:?}"),
                Err(e) => log::error!("reload refused, nothing changed: {e}"),
            }
        },
    )
    .map_err(|source| Error::Sys { what: "signal handling", source })?;
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|source| Error::Sys { what: "start an operations thread", source })
    };
    if let Some((listener, access)) = operations.control {
        let r = registry.clone();
        spawn("control", Box::new(move || control::serve(listener, access, r)))?;
    }
    if let Some(listener) = operations.metrics {
        let r = registry.clone();
        spawn("metrics", Box::new(move || metrics::serve_http(listener, r)))?;
    }
    for accept in p9 {
        spawn("9p-listen", accept)?;
    }
    if serves.is_empty() {
        let _ = stopped_rx.recv();
        return Ok(());
    }
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
