//! The command line: virtiofsd-compatible flags plus avpfs's own.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// avpfs: share a host directory with virtual machines over virtio-fs
/// (a vhost-user-fs backend, a drop-in replacement for virtiofsd), or mount
/// it on the host through /dev/fuse.
#[derive(Debug, Parser, Default, Clone)]
#[command(name = "avpfs", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A subcommand instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Daemon configuration file (TOML): several shares and the guests they
    /// are served to, each guest on its own socket with its own session, in
    /// one process. Replaces the share and guest flags. See `avpfs
    /// check-config`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Control socket: a unix socket at PATH (mode 0600, or 0660 with
    /// --control-socket-group) that answers `avpfs ctl` (status, stats,
    /// reload, metrics).
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,

    /// Group that may use the control socket (its mode becomes 0660).
    #[arg(long, value_name = "GROUP", requires = "control_socket")]
    pub control_socket_group: Option<String>,

    /// Serve Prometheus metrics over HTTP at ADDR (e.g. 127.0.0.1:9101),
    /// path /metrics; loopback addresses only unless --metrics-allow-remote.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Let --metrics-listen use an address that is not loopback.
    #[arg(long, requires = "metrics_listen")]
    pub metrics_allow_remote: bool,

    /// Count requests per guest and opcode (status, stats, metrics).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub stats: bool,

    /// Share policy file (TOML): hidden and read-only subtrees, id mapping,
    /// xattr rules, allowed file types, limits. See `avpfs check-config`.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Shared directory path.
    #[arg(long, value_name = "DIR")]
    pub shared_dir: Option<PathBuf>,

    /// Serve the share on the host: mount it at MOUNTPOINT through /dev/fuse.
    #[arg(long, value_name = "MOUNTPOINT")]
    pub fuse_mount: Option<PathBuf>,

    /// Also serve the share over 9P2000.L at ADDR: `unix:PATH` (the unix
    /// socket a vsock device's port reaches, e.g. vhost-device-vsock's
    /// `UDS_PORT`, or local clients), or `vsock:PORT` (an AF_VSOCK socket
    /// on every CID of this machine; `vsock:CID:PORT` on one CID), which
    /// guests reach through /dev/vhost-vsock at CID 2 and that port; each
    /// connection is a session of its own. May be given without
    /// --socket-path.
    #[arg(long = "9p-listen", value_name = "ADDR")]
    pub p9_listen: Option<String>,

    /// vhost-user socket path to listen on.
    #[arg(long, value_name = "PATH")]
    pub socket_path: Option<PathBuf>,

    /// Name of the group to own the socket (with --socket-path).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,

    /// A listening vhost-user socket file descriptor inherited from the parent.
    #[arg(long, value_name = "FD", conflicts_with_all = ["socket_path", "fuse_mount"])]
    pub fd: Option<i32>,

    /// The file system tag, exposed in the device config space (mount -t virtiofs TAG).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,

    /// Number of request queues (default: the number of host cores).
    #[arg(long, value_name = "N")]
    pub request_queues: Option<usize>,

    /// Longest time (µs) a request queue's worker keeps watching a drained
    /// queue for the guest's next request before it sleeps (the hiprio
    /// queue's never does); adaptive, 0 turns it off.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 50)]
    pub poll_max_us: u64,

    /// How long (µs) the hiprio queue's worker lets FORGETs gather after a
    /// kick, with notifications off, before it serves them and signals the
    /// guest once (one kick and one interrupt per batch instead of per
    /// FORGET); 0 serves each kick at once.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 2000)]
    pub forget_batch_us: u64,

    /// Size of the DAX window, the shared-memory region the VMM maps file
    /// data into for the guest (bytes, or with a K, M or G suffix, a
    /// power of two, 4 KiB or more; needs a front end with vhost-user SHMEM, e.g.
    /// QEMU 11.1's vhost-user-test-device-pci). Default: no window.
    #[arg(long, value_name = "SIZE", value_parser = parse_dax_window)]
    pub dax_window: Option<u64>,

    /// How the VMM maps the files avpfs lends it in the DAX window.
    /// `qemu-11.1`: every mapping shared and writable, none longer than
    /// the file (QEMU 11.1; a refused request closes the channel): a read
    /// mapping is made from a writable descriptor, so only files the guest
    /// may write are mapped, and the last, partial page of a file is lent
    /// as a copy. `mmap`: read mappings read-only, as mmap(2) maps.
    #[arg(long, value_name = "FRONT_END", default_value = "qemu-11.1", value_parser = parse_dax_front_end)]
    pub dax_front_end: avpfs_server::DaxFrontEnd,

    /// Let each request queue's worker share large READs with a helper
    /// thread while fewer workers are busy than there are CPUs, so that one
    /// queue's copies use two CPUs: every other READ of 64 KiB or more of a
    /// batch that has several, else the second half of each READ of 128 KiB
    /// or more from a regular file.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub bulk_helper: bool,

    /// Caching policy the guest may use.
    #[arg(long, value_enum, default_value_t = CacheArg::Auto)]
    pub cache: CacheArg,

    /// Number of worker threads for /dev/fuse (0: default); accepted for virtiofsd compatibility.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub thread_pool_size: usize,

    /// Enable support for extended attributes.
    #[arg(long)]
    pub xattr: bool,

    /// Enable support for POSIX ACLs (implies --xattr).
    #[arg(long)]
    pub posix_acl: bool,

    /// Share the directory read-only.
    #[arg(long)]
    pub readonly: bool,

    /// Sandbox mechanism to isolate the daemon process [default: namespace
    /// when the daemon may create namespaces (CAP_SYS_ADMIN), else none].
    #[arg(long, value_enum)]
    pub sandbox: Option<SandboxArg>,

    /// Action to take when seccomp finds a not allowed syscall.
    #[arg(long, value_enum, default_value_t = SeccompArg::Kill)]
    pub seccomp: SeccompArg,

    /// Tell the guest which directories are mount points (FUSE_ATTR_SUBMOUNT).
    #[arg(long)]
    pub announce_submounts: bool,

    /// Hold file handles (name_to_handle_at) instead of O_PATH descriptors for inodes.
    #[arg(long, value_enum, default_value_t = FileHandlesArg::Never, num_args = 0..=1, default_missing_value = "prefer")]
    pub inode_file_handles: FileHandlesArg,

    /// Live migration, source side: how the guest's files are described to
    /// the destination: find-paths (their paths in the share, found at
    /// migration time) or file-handles (file handles; source and
    /// destination must share the very same directory on the same file
    /// system, and the destination needs CAP_DAC_READ_SEARCH).
    #[arg(long, value_enum, default_value_t = MigrationModeArg::FindPaths)]
    pub migration_mode: MigrationModeArg,

    /// Live migration, destination side: what to do when a file of the
    /// guest cannot be found again: abort (fail the migration; the guest
    /// stays on the source) or guest-error (finish it; the guest gets
    /// errors on that file).
    #[arg(long, value_enum, default_value_t = MigrationOnErrorArg::Abort)]
    pub migration_on_error: MigrationOnErrorArg,

    /// Live migration with find-paths: the source adds each file's handle
    /// and the destination checks it opened the very same file (same
    /// shared directory on the same file system only).
    #[arg(long)]
    pub migration_verify_handles: bool,

    /// Live migration with find-paths: just before switching over, the
    /// source checks each path still leads to its file and corrects it
    /// when a third party renamed it.
    #[arg(long)]
    pub migration_confirm_paths: bool,

    /// Enable writeback caching in the guest.
    #[arg(long)]
    pub writeback: bool,

    /// Let the guest kernel delegate clearing setuid/setgid/capabilities on
    /// write, truncate and chown to avpfs (FUSE_HANDLE_KILLPRIV_V2).
    #[arg(long)]
    pub killpriv_v2: bool,

    /// Honour O_DIRECT from the guest.
    #[arg(long)]
    pub allow_direct_io: bool,

    /// Set the maximum number of open files (default: raise to the hard limit).
    /// The descriptor table is grown at start-up to 65 536 slots or this
    /// limit, whichever is lower (512 KiB of kernel memory at most): a table
    /// that grows later, once threads run, stalls every thread that opens a
    /// file for an RCU grace period.
    #[arg(long, value_name = "N")]
    pub rlimit_nofile: Option<u64>,

    /// Log level.
    #[arg(long, value_enum, default_value_t = LogLevelArg::Info)]
    pub log_level: LogLevelArg,

    /// Log line format: text, or one JSON object per line (ts, level,
    /// target, msg, and guest and share for a session's events).
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,

    /// Log to syslog instead of stderr.
    #[arg(long)]
    pub syslog: bool,

    /// Print the vhost-user capabilities JSON (for libvirt) and exit.
    #[arg(long)]
    pub print_capabilities: bool,

    /// Keep listening for a new front end after the VMM disconnects.
    #[arg(long)]
    pub keep_listening: bool,

    /// Legacy options: -o source=DIR,cache=auto,xattr,no_xattr,readonly,...
    #[arg(short = 'o', value_name = "OPTIONS", action = clap::ArgAction::Append)]
    pub legacy_options: Vec<String>,

    /// Debug mode (legacy; same as --log-level debug).
    #[arg(short = 'd')]
    pub debug: bool,

    /// Foreground (legacy; avpfs always runs in the foreground).
    #[arg(short = 'f')]
    pub foreground: bool,

    /// Add or remove capabilities from the default set, e.g. "+sys_admin:-mknod"
    /// (CAP_SYS_ADMIN is needed for trusted.* extended attributes).
    #[arg(long, value_name = "CAPS", allow_hyphen_values = true)]
    pub modcaps: Option<String>,

    /// Translate uids between guest and host, virtiofsd's form
    /// TYPE:SOURCE:TARGET:COUNT with TYPE map (both ways), guest (guest to
    /// host), host (host to guest), squash-guest, squash-host, or
    /// forbid-guest:BASE:COUNT (EPERM); repeatable; ids no rule covers pass
    /// unchanged. Same as the policy file's `[uid]` section.
    #[arg(long, value_name = "MAP", action = clap::ArgAction::Append)]
    pub translate_uid: Vec<String>,

    /// Translate gids between guest and host, as --translate-uid does uids.
    #[arg(long, value_name = "MAP", action = clap::ArgAction::Append)]
    pub translate_gid: Vec<String>,

    /// virtiofsd's user-namespace uid mapping, `:GUEST:HOST:COUNT:` (libvirt
    /// passes it for `<idmap>`): guest uids GUEST.. are host uids HOST..,
    /// both ways; the same as --translate-uid map:GUEST:HOST:COUNT.
    #[arg(long, value_name = ":GUEST:HOST:COUNT:", action = clap::ArgAction::Append)]
    pub uid_map: Vec<String>,

    /// virtiofsd's user-namespace gid mapping, as --uid-map does uids.
    #[arg(long, value_name = ":GUEST:HOST:COUNT:", action = clap::ArgAction::Append)]
    pub gid_map: Vec<String>,

    /// Rename or filter extended attribute names, virtiofsd's form: rules
    /// :TYPE:SCOPE:KEY:PREPEND: (TYPE prefix, ok, bad, unsupported; SCOPE
    /// client, server, all) or a final :map:KEY:PREPEND:, e.g.
    /// ":map::user.virtiofs.:"; implies --xattr. Same as the policy file's
    /// `[xattr]` rules.
    #[arg(long, value_name = "MAP")]
    pub xattrmap: Option<String>,
}

/// Subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Check a daemon configuration file (`--config`) or a policy file
    /// (`--policy`) and print what it makes: shares, guests and each guest's
    /// effective policy, or the effective policy.
    CheckConfig {
        /// The configuration or policy file.
        file: PathBuf,
    },
    /// Ask a running daemon through its control socket.
    Ctl {
        /// The daemon's --control-socket.
        #[arg(long, value_name = "PATH")]
        control_socket: PathBuf,
        /// What to ask.
        #[arg(value_enum)]
        command: CtlCommand,
    },
}

/// `avpfs ctl` commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CtlCommand {
    /// Shares and guests, each guest's state, the uptime (JSON).
    Status,
    /// Per guest and share, per opcode: requests, errors, bytes, latency;
    /// open files, cached inodes, locks (JSON).
    Stats,
    /// Read the configuration's policies again and put them in force.
    Reload,
    /// The counters in Prometheus text format.
    Metrics,
}

/// `--cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum CacheArg {
    /// Nothing is cached; every read goes to the host (FOPEN_DIRECT_IO), and
    /// directories are listed with plain READDIR (no attributes to cache).
    Never,
    /// Metadata is cached for one second, file data not; listings of
    /// directories unchanged for over 2 s until their mtime changes.
    Metadata,
    /// Metadata for one second; file data until the file changes; listings
    /// of directories unchanged for over 2 s until their mtime changes.
    #[default]
    Auto,
    /// Everything, listings included, is cached for a long time (the host
    /// tree is not changed by others).
    Always,
}

/// `--sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxArg {
    /// New mount/pid/net/ipc namespaces and pivot_root: a supervisor stays
    /// on the host, the daemon runs as pid 1 of the new namespaces, whose
    /// read-only root holds only the share and `/proc/self/fd`.
    Namespace,
    /// chroot into the share (for containers).
    Chroot,
    /// No sandbox.
    None,
}

/// `--seccomp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum SeccompArg {
    /// No seccomp filter.
    None,
    /// Kill the process on a disallowed syscall.
    #[default]
    Kill,
    /// Log disallowed syscalls.
    Log,
    /// Send SIGSYS on a disallowed syscall.
    Trap,
}

/// `--inode-file-handles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum FileHandlesArg {
    /// Always hold O_PATH descriptors.
    #[default]
    Never,
    /// Use file handles where the host file system supports them.
    Prefer,
    /// Use file handles; fail where they are not supported.
    Mandatory,
}

/// `--migration-mode` (virtiofsd's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum MigrationModeArg {
    /// Send each file's path in the share, found at migration time.
    #[default]
    FindPaths,
    /// Send each file's file handle.
    FileHandles,
}

/// `--migration-on-error` (virtiofsd's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum MigrationOnErrorArg {
    /// Fail the migration: the guest keeps running on the source.
    #[default]
    Abort,
    /// Finish the migration; the guest gets errors on the files not found again.
    GuestError,
}

/// The live-migration settings of a share (command line or `[[share]]` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MigrationOptions {
    /// `--migration-mode`, `migration_mode`.
    pub mode: MigrationModeArg,
    /// `--migration-on-error`, `migration_on_error`.
    pub on_error: MigrationOnErrorArg,
    /// `--migration-verify-handles`, `migration_verify_handles`.
    pub verify_handles: bool,
    /// `--migration-confirm-paths`, `migration_confirm_paths`.
    pub confirm_paths: bool,
}

impl Cli {
    /// The command line's migration settings.
    pub fn migration_options(&self) -> MigrationOptions {
        MigrationOptions {
            mode: self.migration_mode,
            on_error: self.migration_on_error,
            verify_handles: self.migration_verify_handles,
            confirm_paths: self.migration_confirm_paths,
        }
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormatArg {
    /// `[timestamp LEVEL target guest=NAME share=NAME] message`.
    #[default]
    Text,
    /// `{"ts":...,"level":...,"target":...,"guest":...,"share":...,"msg":...}`.
    Json,
}

/// `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogLevelArg {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Informational messages.
    #[default]
    Info,
    /// Debug messages (one line per request).
    Debug,
    /// Everything.
    Trace,
    /// Nothing.
    Off,
}

impl Cli {
    /// Folds the legacy `-o` options into the modern flags. Options are
    /// separated by `,`; a doubled `,,` is a comma inside a value, as libvirt
    /// writes one in `source=`.
    pub fn apply_legacy_options(&mut self) -> Result<(), String> {
        let opts: Vec<String> = self.legacy_options.iter().flat_map(|o| split_legacy_options(o)).collect();
        for opt in opts {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt.as_str(), None),
            };
            match (key, value) {
                ("source", Some(v)) => self.shared_dir = Some(v.into()),
                // libvirt's <cache mode='none'/> (virtiofsd's old name for never).
                ("cache", Some("none")) => self.cache = CacheArg::Never,
                ("cache", Some(v)) => {
                    self.cache = CacheArg::from_str(v, true).map_err(|_| format!("-o cache={v}: unknown cache mode"))?
                }
                // libvirt's <sandbox mode='namespace|chroot'/>.
                ("sandbox", Some(v)) => {
                    self.sandbox =
                        Some(SandboxArg::from_str(v, true).map_err(|_| format!("-o sandbox={v}: unknown sandbox"))?)
                }
                ("xattr", None) => self.xattr = true,
                ("no_xattr", None) => self.xattr = false,
                ("posix_acl", None) => self.posix_acl = true,
                ("no_posix_acl", None) => self.posix_acl = false,
                ("readonly", None) | ("ro", None) => self.readonly = true,
                ("writeback", None) => self.writeback = true,
                ("no_writeback", None) => self.writeback = false,
                ("allow_direct_io", None) => self.allow_direct_io = true,
                ("killpriv_v2", None) => self.killpriv_v2 = true,
                ("no_killpriv_v2", None) => self.killpriv_v2 = false,
                ("announce_submounts", None) => self.announce_submounts = true,
                ("flock", None) | ("posix_lock", None) | ("no_flock", None) | ("no_posix_lock", None) => {}
                ("log_level", Some(v)) => {
                    self.log_level =
                        LogLevelArg::from_str(v, true).map_err(|_| format!("-o log_level={v}: unknown level"))?
                }
                ("tag", Some(v)) => self.tag = Some(v.to_string()),
                _ => return Err(format!("-o {opt}: unknown or unsupported legacy option")),
            }
        }
        Ok(())
    }
}

/// Splits one `-o` argument at single commas; `,,` stands for a comma.
fn split_legacy_options(arg: &str) -> Vec<String> {
    let mut opts = Vec::new();
    let mut current = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        if c != ',' {
            current.push(c);
        } else if chars.next_if_eq(&',').is_some() {
            current.push(',');
        } else {
            opts.push(std::mem::take(&mut current));
        }
    }
    opts.push(current);
    opts
}

/// The JSON that `--print-capabilities` prints (vhost-user.json `type: fs`).
pub const CAPABILITIES_JSON: &str = "{\n  \"type\": \"fs\",\n  \"features\": [\n    \"separate-options\"\n  ]\n}";

/// Parses a DAX front end: `qemu-11.1` or `mmap`.
pub fn parse_dax_front_end(text: &str) -> Result<avpfs_server::DaxFrontEnd, String> {
    avpfs_server::DaxFrontEnd::from_name(text)
        .ok_or_else(|| format!("{text:?} is not a DAX front end (qemu-11.1, mmap)"))
}

/// Parses the size of a DAX window: a size (see [`parse_size`]) that is 0
/// or a power of two (the window is a PCI BAR, and QEMU aborts on any other
/// size).
pub fn parse_dax_window(text: &str) -> Result<u64, String> {
    let size = parse_size(text)?;
    if size != 0 && !size.is_power_of_two() {
        return Err(format!("{text:?} is not a power of two (the DAX window is a PCI BAR)"));
    }
    Ok(size)
}

/// Parses a size: bytes, or a number with a `K`, `M` or `G` suffix (powers
/// of 1024), a multiple of 4 KiB.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = match t.as_bytes().last() {
        Some(b'K' | b'k') => (&t[..t.len() - 1], 10),
        Some(b'M' | b'm') => (&t[..t.len() - 1], 20),
        Some(b'G' | b'g') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size (bytes, or with K, M or G)"))?;
    let size = n.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large"))?;
    if !size.is_multiple_of(4096) {
        return Err(format!("{text:?} is not a multiple of 4 KiB"));
    }
    Ok(size)
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_suffixes_and_whole_pages() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("4097").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }
}
