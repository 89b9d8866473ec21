//! [`PassthroughFs`] itself: the state every concern module works on, its
//! construction from a [`Config`], and the strategies chosen from it once;
//! and [`Share`], what the sessions of one host directory have in common
//! (several guests served on one tree each have a `PassthroughFs` of their
//! own, made by [`Share::session`]).
//! The operations are implemented by the concern modules (`attr`, `entry`,
//! `file`, ...) in `impl PassthroughFs` blocks of their own.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use avpfs_server::WantedFlags;
use avpfs_sys::creds::{geteuid, has_effective_cap, CAP_DAC_READ_SEARCH};
use avpfs_sys::{FileHandle, ProcSelfFd};
use fuse_abi::init_flags as init;

use crate::config::{CachePolicy, Config, FileHandleMode};
use crate::handle::HandleTable;
use crate::inode::{HostFile, HostFiles, InodeKey, InodeStore, NodeFile};

/// Why a [`PassthroughFs`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The shared directory cannot be opened.
    #[error("cannot open the shared directory {path}: {source}")]
    OpenRoot {
        /// The configured root.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The shared root is not a directory.
    #[error("the shared root {0} is not a directory")]
    RootNotADirectory(PathBuf),
    /// `/proc/self/fd` cannot be opened (is proc mounted?).
    #[error("cannot open /proc/self/fd: {0}")]
    ProcSelfFd(#[source] io::Error),
    /// File handles were made mandatory but cannot be used.
    #[error("file handles are mandatory but unavailable: {0}")]
    FileHandles(#[source] io::Error),
    /// POSIX ACLs are stored in extended attributes.
    #[error("posix_acl needs xattr")]
    PosixAclNeedsXattr,
}

/// Descriptors (not `O_PATH`) of the mounts nodes with file handles are
/// on, by mount id.
type MountFds = Mutex<HashMap<u64, Arc<OwnedFd>>>;

/// A host directory, opened and probed once, that one or more sessions
/// serve: its configuration, root, `/proc/self/fd`, mount descriptors, and
/// the host files its sessions hold (shared between them, see
/// `host_files`). Each session ([`Share::session`]) has its own node ids,
/// lookup counts, handles, locks' owners and INIT state. A clone is the
/// same share.
#[derive(Debug, Clone)]
pub struct Share {
    cfg: Config,
    proc: Arc<ProcSelfFd>,
    root: Arc<HostFile>,
    root_key: InodeKey,
    root_kind: u32,
    mounts: Arc<MountFds>,
    use_handles: bool,
    host_files: Arc<HostFiles>,
}

/// A file system that passes every operation through to a host directory:
/// one session's view of a [`Share`].
#[derive(Debug)]
pub struct PassthroughFs {
    pub(crate) cfg: Config,
    pub(crate) proc: Arc<ProcSelfFd>,
    pub(crate) inodes: InodeStore,
    pub(crate) handles: HandleTable,
    /// Descriptors (not `O_PATH`) of the mounts nodes with file handles are on.
    pub(crate) mounts: Arc<MountFds>,
    /// Nodes keep file handles rather than descriptors.
    pub(crate) use_handles: bool,
    /// The daemon runs as root: switch to the caller's credentials.
    pub(crate) is_root: bool,
    /// The flags enabled in FUSE_INIT (what we asked for and the client offered).
    pub(crate) negotiated: AtomicU64,
}

impl PassthroughFs {
    /// Opens the shared root and prepares the file system: a share with
    /// this one session.
    pub fn new(cfg: Config) -> Result<Self, Error> {
        Ok(Share::new(cfg)?.session())
    }
}

impl Share {
    /// Opens the shared root and prepares what its sessions share.
    pub fn new(cfg: Config) -> Result<Self, Error> {
        if cfg.posix_acl && !cfg.xattr {
            return Err(Error::PosixAclNeedsXattr);
        }
        let proc = match &cfg.proc_self_fd {
            Some(path) => ProcSelfFd::open_at(path),
            None => ProcSelfFd::open(),
        }
        .map_err(Error::ProcSelfFd)?;
        let open_root = |source| Error::OpenRoot { path: cfg.root.clone(), source };
        let root = avpfs_sys::open::open_path(&cfg.root, libc::O_PATH | libc::O_DIRECTORY).map_err(open_root)?;
        let st = avpfs_sys::stat::fstatx(root.as_fd()).map_err(open_root)?;
        let kind = u32::from(st.stx_mode) & libc::S_IFMT;
        if kind != libc::S_IFDIR {
            return Err(Error::RootNotADirectory(cfg.root.clone()));
        }
        let use_handles = match cfg.inode_file_handles {
            FileHandleMode::Never => false,
            mode => {
                let usable = has_effective_cap(CAP_DAC_READ_SEARCH).and_then(|cap| {
                    if cap {
                        FileHandle::of(root.as_fd()).map(|_| true)
                    } else {
                        Ok(false)
                    }
                });
                match (mode, usable) {
                    (_, Ok(true)) => true,
                    (FileHandleMode::Mandatory, Ok(false)) => {
                        return Err(Error::FileHandles(io::Error::from_raw_os_error(libc::EPERM)))
                    }
                    (FileHandleMode::Mandatory, Err(e)) => return Err(Error::FileHandles(e)),
                    (_, _) => {
                        log::warn!(
                            "file handles unavailable (no CAP_DAC_READ_SEARCH or no support): using descriptors"
                        );
                        false
                    }
                }
            }
        };
        let key = InodeKey::of(&st);
        let mut mounts = HashMap::new();
        if use_handles {
            // The descriptor file handles of the root's mount are opened with.
            let m = proc.reopen(root.as_fd(), libc::O_RDONLY | libc::O_DIRECTORY).map_err(Error::FileHandles)?;
            mounts.insert(key.mnt_id, Arc::new(m));
        }
        // The root always keeps its descriptor: it is never forgotten.
        Ok(Share {
            cfg,
            proc: Arc::new(proc),
            root: HostFile::alone(key, NodeFile::Fd(root)),
            root_key: key,
            root_kind: kind,
            mounts: Arc::new(Mutex::new(mounts)),
            use_handles,
            host_files: Arc::default(),
        })
    }

    /// A new session on the share: a file system with no node but the
    /// root, no handle, and no INIT yet.
    pub fn session(&self) -> PassthroughFs {
        self.host_files.add_session();
        let inodes = InodeStore::new(self.root_key, self.root_kind, self.root.clone(), self.host_files.clone());
        PassthroughFs {
            cfg: self.cfg.clone(),
            proc: self.proc.clone(),
            inodes,
            handles: HandleTable::default(),
            mounts: self.mounts.clone(),
            use_handles: self.use_handles,
            is_root: geteuid() == 0,
            negotiated: AtomicU64::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
}

impl PassthroughFs {
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// How many nodes the client holds references to (the root included).
    pub fn node_count(&self) -> usize {
        self.inodes.len()
    }

    /// How many file and directory handles are open.
    pub fn handle_count(&self) -> usize {
        self.handles.len()
    }

    /// Whether nodes keep file handles rather than descriptors.
    pub fn uses_file_handles(&self) -> bool {
        self.use_handles
    }

    pub(crate) fn negotiated(&self, flag: u64) -> bool {
        self.negotiated.load(Ordering::Relaxed) & flag != 0
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.cfg.entry_timeout()
    }

    /// The FUSE_INIT flags this configuration asks for.
    pub fn wanted_flags(&self) -> WantedFlags {
        let mut want = init::ASYNC_READ
            | init::PARALLEL_DIROPS
            | init::BIG_WRITES
            | init::ATOMIC_O_TRUNC
            | init::FLOCK_LOCKS
            | init::POSIX_LOCKS
            | init::MAX_PAGES
            | init::SETXATTR_EXT
            | init::CREATE_SUPP_GROUP
            // Shared mmap of FOPEN_DIRECT_IO files (cache never/metadata).
            | init::DIRECT_IO_ALLOW_MMAP;
        // READDIRPLUS replies carry each entry's attributes for the guest
        // to cache; `never` lets it cache none, so the guest would set up a
        // dentry and an inode for every entry only to look it up again
        // (virtiofsd turns READDIRPLUS off with cache=none for the same
        // reason).
        if self.cfg.cache != CachePolicy::Never {
            want |= init::DO_READDIRPLUS | init::READDIRPLUS_AUTO;
        }
        if self.cfg.writeback {
            want |= init::WRITEBACK_CACHE;
        }
        if self.cfg.posix_acl {
            want |= init::POSIX_ACL | init::DONT_MASK;
        }
        if self.cfg.killpriv_v2 {
            want |= init::HANDLE_KILLPRIV_V2;
        }
        if self.cfg.announce_submounts {
            want |= init::SUBMOUNTS;
        }
        want
    }
}
