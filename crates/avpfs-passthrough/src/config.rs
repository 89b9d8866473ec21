//! What the passthrough is configured with, and the strategies chosen from it
//! once at start-up.

use std::path::PathBuf;
use std::time::Duration;

use fuse_abi::fopen;

/// How much the client may cache (virtiofsd's `--cache`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CachePolicy {
    /// Nothing: names and attributes are revalidated on every use, file
    /// data goes to the server on every read and write (`FOPEN_DIRECT_IO`).
    Never,
    /// Names and attributes for a second, file data not cached.
    Metadata,
    /// Names and attributes for a second; file data cached while the file is
    /// open, dropped on the next open.
    #[default]
    Auto,
    /// Everything for a day, file data kept across opens (`FOPEN_KEEP_CACHE`)
    /// and directory listings cached (`FOPEN_CACHE_DIR`). Only for trees no
    /// one else changes.
    Always,
}

impl CachePolicy {
    /// How long names and attributes may be cached.
    pub fn timeout(self) -> Duration {
        match self {
            CachePolicy::Never => Duration::ZERO,
            CachePolicy::Metadata | CachePolicy::Auto => Duration::from_secs(1),
            CachePolicy::Always => Duration::from_secs(86400),
        }
    }

    /// FOPEN_* flags for an opened file.
    pub fn file_open_flags(self) -> u32 {
        match self {
            CachePolicy::Never | CachePolicy::Metadata => fopen::DIRECT_IO,
            CachePolicy::Auto => 0,
            CachePolicy::Always => fopen::KEEP_CACHE,
        }
    }

    /// FOPEN_* flags for an opened directory. `FOPEN_CACHE_DIR` alone keeps
    /// a listing across opens until the guest changes the directory or sees
    /// a new mtime (checked in a Linux 6.1 guest: five passes over a
    /// directory of 2 000 entries sent the READDIRs of one).
    pub fn dir_open_flags(self) -> u32 {
        match self {
            CachePolicy::Always => fopen::CACHE_DIR,
            _ => 0,
        }
    }
}

/// Whether nodes keep an `O_PATH` descriptor or a file handle
/// (virtiofsd's `--inode-file-handles`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FileHandleMode {
    /// Every node keeps an `O_PATH` descriptor (one open file per node the
    /// client knows).
    #[default]
    Never,
    /// Nodes keep a file handle when the host file system gives one and
    /// `CAP_DAC_READ_SEARCH` is held; otherwise a descriptor.
    Prefer,
    /// Nodes keep file handles; start-up fails without `CAP_DAC_READ_SEARCH`
    /// and a lookup fails where the host file system has no handles.
    Mandatory,
}

/// Configuration of a [`PassthroughFs`](crate::PassthroughFs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The host directory to share.
    pub root: PathBuf,
    /// Client caching.
    pub cache: CachePolicy,
    /// Overrides the name and attribute timeout of `cache`.
    pub timeout: Option<Duration>,
    /// Ask for the client's write-back cache (FUSE_WRITEBACK_CACHE).
    pub writeback: bool,
    /// Honour `O_DIRECT` (open the host file with it and answer
    /// `FOPEN_DIRECT_IO`); otherwise `O_DIRECT` is removed.
    pub allow_direct_io: bool,
    /// Serve extended attributes; otherwise the four xattr operations fail
    /// with `ENOSYS` and the client stops asking.
    pub xattr: bool,
    /// Serve POSIX ACLs (`system.posix_acl_*`; needs `xattr`): asks for
    /// FUSE_POSIX_ACL and FUSE_DONT_MASK.
    pub posix_acl: bool,
    /// Refuse every change with `EROFS`.
    pub readonly: bool,
    /// Descriptors or file handles in nodes.
    pub inode_file_handles: FileHandleMode,
    /// Tell the client where host mount points are (FUSE_SUBMOUNTS), so it
    /// shows them as separate file systems.
    pub announce_submounts: bool,
    /// Ask for FUSE_HANDLE_KILLPRIV_V2: the server clears setuid/setgid on
    /// write, truncate and chown as the host kernel decides.
    pub killpriv_v2: bool,
    /// Where the daemon's `/proc/self/fd` is reached (a sandbox may move it):
    /// `None` for `/proc/self/fd`.
    pub proc_self_fd: Option<PathBuf>,
}

impl Default for Config {
    /// The defaults with an empty root, to be filled in (`..Config::default()`).
    fn default() -> Self {
        Config::new(PathBuf::new())
    }
}

impl Config {
    /// The defaults (as virtiofsd's) for sharing `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Config {
            root: root.into(),
            cache: CachePolicy::Auto,
            timeout: None,
            writeback: false,
            allow_direct_io: false,
            xattr: false,
            posix_acl: false,
            readonly: false,
            inode_file_handles: FileHandleMode::Never,
            announce_submounts: false,
            killpriv_v2: false,
            proc_self_fd: None,
        }
    }

    /// The name and attribute timeout in effect.
    pub fn entry_timeout(&self) -> Duration {
        self.timeout.unwrap_or(self.cache.timeout())
    }
}
