//! What the passthrough is configured with, and the strategies chosen from it
//! once at start-up.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use fuse_abi::fopen;

/// How much the client may cache (virtiofsd's `--cache`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CachePolicy {
    /// Nothing: names and attributes are revalidated on every use, file
    /// data goes to the server on every read and write (`FOPEN_DIRECT_IO`).
    Never,
    /// Names and attributes for a second, file data not cached; the
    /// listings of settled directories cached (see
    /// [`CachePolicy::dir_open_flags`]).
    Metadata,
    /// Names and attributes for a second; file data cached while the file is
    /// open, dropped on the next open; the listings of settled directories
    /// cached (see [`CachePolicy::dir_open_flags`]).
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

    /// FOPEN_* flags for an opened directory; `mtime_age` tells how old its
    /// mtime is (`None`: unknown, or in the future), asked only by the
    /// policies that depend on it.
    ///
    /// `FOPEN_CACHE_DIR` lets the guest cache the listing, and
    /// `FOPEN_KEEP_CACHE` keep it across opens (without it, Linux drops the
    /// listing at every OPENDIR: Debian's 6.1.0-56 guest read a settled
    /// directory of 2 000 entries five times with 410 READDIRPLUS, the
    /// host's 6.18 FUSE mount likewise; with both flags the guest sent the
    /// 82 of one pass), until the guest changes the directory itself or
    /// sees a new mtime. The guest looks at the mtime when it starts a
    /// listing and its attributes are older than their timeout, so a
    /// change elsewhere (the host, another guest) shows within the same
    /// timeout as the change's names and attributes do. That only works if
    /// the change gives the directory a new mtime: a change within the same
    /// tick of the host's clock as the one the guest saw would not, so
    /// `never`-to-`auto` policies cache only *settled* directories, whose
    /// mtime is older than `SETTLED_DIR_AGE` (2 s) (any later change then has a
    /// later mtime on every Linux file system, FAT's 2 s steps included).
    /// `always` caches every listing (its trees change only through the
    /// guest); `never` none.
    pub fn dir_open_flags(self, mtime_age: impl FnOnce() -> Option<Duration>) -> u32 {
        let cached = fopen::CACHE_DIR | fopen::KEEP_CACHE;
        match self {
            CachePolicy::Never => 0,
            CachePolicy::Metadata | CachePolicy::Auto => {
                if mtime_age().is_some_and(|age| age > SETTLED_DIR_AGE) {
                    cached
                } else {
                    0
                }
            }
            CachePolicy::Always => cached,
        }
    }
}

/// A directory unchanged for longer than this is settled: the `auto` and
/// `metadata` policies let the guest cache its listing. Coarser than the
/// timestamps of every Linux file system (FAT keeps mtimes in 2 s steps).
pub const SETTLED_DIR_AGE: Duration = Duration::from_secs(2);

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

/// How a live-migration source tells the destination where each node's
/// host file is (virtiofsd's `--migration-mode`). The destination follows
/// what the state says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MigrationMode {
    /// By its path beneath the share, found when the state is saved
    /// (`find-paths`). Works between different file systems with the same
    /// contents; a file renamed or deleted on the host after the save is
    /// not found.
    #[default]
    FindPaths,
    /// By its file handle (`file-handles`): found even when renamed, or
    /// deleted while still open on the source. Source and destination must
    /// share the same file system, and the destination needs
    /// `CAP_DAC_READ_SEARCH`.
    FileHandles,
}

/// What a live-migration destination does with a node whose host file it
/// cannot find or that is not the same file (virtiofsd's
/// `--migration-on-error`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MigrationOnError {
    /// Refuse the whole state (`abort`): the migration fails and the source
    /// keeps serving.
    #[default]
    Abort,
    /// Take the state; the node becomes one whose every operation fails
    /// with `EIO`, and its open handles with `EBADF` (`guest-error`).
    GuestError,
}

/// A value of one of the migration options that is not one of its names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {value:?} (expected {expected})")]
pub struct UnknownValue {
    /// What was given.
    pub value: String,
    /// The accepted names.
    pub expected: &'static str,
}

impl FromStr for MigrationMode {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "find-paths" => Ok(MigrationMode::FindPaths),
            "file-handles" => Ok(MigrationMode::FileHandles),
            _ => Err(UnknownValue { value: s.into(), expected: "find-paths or file-handles" }),
        }
    }
}

impl fmt::Display for MigrationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MigrationMode::FindPaths => "find-paths",
            MigrationMode::FileHandles => "file-handles",
        })
    }
}

impl FromStr for MigrationOnError {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "abort" => Ok(MigrationOnError::Abort),
            "guest-error" => Ok(MigrationOnError::GuestError),
            _ => Err(UnknownValue { value: s.into(), expected: "abort or guest-error" }),
        }
    }
}

impl fmt::Display for MigrationOnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MigrationOnError::Abort => "abort",
            MigrationOnError::GuestError => "guest-error",
        })
    }
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
    /// Live migration, source: how nodes are found again
    /// (`--migration-mode`).
    pub migration_mode: MigrationMode,
    /// Live migration, destination: a node not found, or not the same
    /// file, fails the migration or only that node
    /// (`--migration-on-error`).
    pub migration_on_error: MigrationOnError,
    /// Live migration, destination: check that each file found by its
    /// path is the very file the source had (same file handle, or same
    /// device and inode when there is no handle)
    /// (`--migration-verify-handles`). Needs the same file system on both
    /// sides.
    pub migration_verify_handles: bool,
    /// Live migration, source: check right before saving that each path
    /// still leads to the node's file (`--migration-confirm-paths`); a
    /// node whose path does not is saved as not found.
    pub migration_confirm_paths: bool,
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
            inode_file_handles: FileHandleMode::Never,
            announce_submounts: false,
            killpriv_v2: false,
            proc_self_fd: None,
            migration_mode: MigrationMode::FindPaths,
            migration_on_error: MigrationOnError::Abort,
            migration_verify_handles: false,
            migration_confirm_paths: false,
        }
    }

    /// The name and attribute timeout in effect.
    pub fn entry_timeout(&self) -> Duration {
        self.timeout.unwrap_or(self.cache.timeout())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_options_parse_and_print_as_virtiofsd_spells_them() {
        for m in [MigrationMode::FindPaths, MigrationMode::FileHandles] {
            assert_eq!(m.to_string().parse::<MigrationMode>().unwrap(), m);
        }
        for m in [MigrationOnError::Abort, MigrationOnError::GuestError] {
            assert_eq!(m.to_string().parse::<MigrationOnError>().unwrap(), m);
        }
        assert_eq!("file-handles".parse::<MigrationMode>().unwrap(), MigrationMode::FileHandles);
        assert_eq!("guest-error".parse::<MigrationOnError>().unwrap(), MigrationOnError::GuestError);
        assert!("paths".parse::<MigrationMode>().is_err());
        assert!("Abort".parse::<MigrationOnError>().is_err());
        let c = Config::default();
        assert_eq!((c.migration_mode, c.migration_on_error), (MigrationMode::FindPaths, MigrationOnError::Abort));
        assert!(!c.migration_verify_handles && !c.migration_confirm_paths);
    }
}
