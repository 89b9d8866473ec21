//! The sandbox: what a compromised daemon can still reach.
//!
//! Four independent layers, applied by the daemon at start-up in this order,
//! all before any thread exists (every one of them is per-thread state that
//! threads inherit, and `fork` must not run beside other threads):
//!
//! 1. [`Sandbox::enter`]: the file system view.
//!    - [`SandboxMode::Namespace`] (like virtiofsd's): the process forks. The
//!      parent stays in the host's namespaces as a small supervisor: it waits
//!      for the child, forwards SIGTERM/SIGINT/SIGHUP to it, runs the
//!      caller's host-side clean-up (unmounting a `/dev/fuse` mount, removing
//!      a socket file) and exits with the child's status. The child is
//!      process 1 of a new PID namespace and has new mount, network and IPC
//!      namespaces. Its root becomes a small read-only tmpfs that holds only
//!      the shares, share N at [`NAMESPACE_SHARED_DIR`]`/N` (recursive
//!      binds, so submounts stay visible), and the daemon's own `/proc/self/fd`
//!      directory, at `/proc/self/fd` (a bind of that one directory of a
//!      fresh proc: no other process, no `/proc/sys`). Nothing else of the
//!      host is reachable, and the proc directory is *not* inside the share,
//!      so a guest can never see it.
//!    - [`SandboxMode::Chroot`] (for containers, where namespaces cannot be
//!      made; one share only): `chroot` into the share; the working directory is left on
//!      `/proc/self/fd`, which the file system reaches as `.`.
//!    - [`SandboxMode::None`] changes nothing.
//! 2. [`drop_capabilities`]: every capability but those the options need
//!    ([`keep_set`], virtiofsd's list and `--modcaps`), from the effective,
//!    permitted, inheritable, ambient and bounding sets.
//! 3. [`restrict_to`]: Landlock, where the kernel has it: file access only
//!    beneath the shares and reading `/proc/self/fd`. It also sets
//!    no_new_privs ([`set_no_new_privs`] does it alone).
//! 4. [`crate::seccomp::install`]: the system call allow-list, last, once
//!    the set-up calls above are done.
//!
//! Why the namespace root is a tmpfs and not the share itself (virtiofsd
//! pivots straight into the share): the passthrough reaches `O_PATH`
//! descriptors through `/proc/self/fd/N` *paths* (the extended-attribute
//! calls have no `*at` form before Linux 6.13), so the proc directory must be
//! reachable by a path, and any path under a root that *is* the share would
//! also be visible to the guest.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use avpfs_sys::fs::mkdirat;
use avpfs_sys::mount;
use avpfs_sys::open::cwd;
use avpfs_sys::process::{self, Fork};
use avpfs_sys::signal::{self, MaskHow, SigSet};
use avpfs_sys::stat::{fstat, fstatfs};
pub use caps::Capability;
use log::{info, warn};

/// Where the shares are in the namespace sandbox's root: share N (0, 1, ...
/// in the order given) at `/shared/N`.
pub const NAMESPACE_SHARED_DIR: &str = "/shared";
/// Where the daemon's `/proc/self/fd` is, outside the chroot sandbox (the
/// working directory, see [`SandboxMode::Chroot`]) and everywhere else.
pub const PROC_SELF_FD: &str = "/proc/self/fd";

/// How the daemon isolates itself (`--sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// New mount, PID, network and IPC namespaces; the root is a read-only
    /// tmpfs that holds only the share and the daemon's `/proc/self/fd`.
    Namespace,
    /// `chroot` into the share (for containers without namespaces).
    Chroot,
    /// No isolation of the file system view.
    None,
}

/// Errors of the sandbox set-up: one per step.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The process already has threads: the sandbox must be entered first.
    #[error("the sandbox must be entered before any thread starts ({0} threads are running)")]
    Threaded(usize),
    /// Counting the threads failed.
    #[error("cannot count the threads of the process: {0}")]
    CountThreads(#[source] io::Error),
    /// A path contains a NUL byte.
    #[error("path {0:?} contains a NUL byte")]
    NulInPath(PathBuf),
    /// Blocking the signals the supervisor forwards failed.
    #[error("cannot block the termination signals: {0}")]
    BlockSignals(#[source] io::Error),
    /// `unshare(CLONE_NEWPID)` failed (needs CAP_SYS_ADMIN).
    #[error("cannot create a PID namespace: {0}")]
    UnsharePid(#[source] io::Error),
    /// `fork` failed.
    #[error("cannot fork the sandboxed daemon: {0}")]
    Fork(#[source] io::Error),
    /// `prctl(PR_SET_PDEATHSIG)` failed.
    #[error("cannot ask to be killed with the supervisor: {0}")]
    ParentDeathSignal(#[source] io::Error),
    /// `unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC)` failed.
    #[error("cannot create mount, network and IPC namespaces: {0}")]
    UnshareNamespaces(#[source] io::Error),
    /// Making every mount a slave of the host's failed.
    #[error("cannot make the mounts private to the sandbox (MS_SLAVE): {0}")]
    MakeMountsSlave(#[source] io::Error),
    /// The shared directory cannot be opened.
    #[error("cannot open the shared directory {path}: {source}")]
    OpenSharedDir {
        /// The shared directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Mounting a proc for the new PID namespace failed.
    #[error("cannot mount proc for the PID namespace: {0}")]
    MountProc(#[source] io::Error),
    /// Cloning the share's mount tree (`open_tree`) failed.
    #[error("cannot clone the shared directory's mounts: {0}")]
    CloneSharedDir(#[source] io::Error),
    /// Cloning `/proc/self/fd` (`open_tree`) failed.
    #[error("cannot clone /proc/self/fd: {0}")]
    CloneProcSelfFd(#[source] io::Error),
    /// Mounting the tmpfs that becomes the root failed.
    #[error("cannot mount the sandbox root (tmpfs): {0}")]
    MountRoot(#[source] io::Error),
    /// Opening the new root failed.
    #[error("cannot open the sandbox root: {0}")]
    OpenNewRoot(#[source] io::Error),
    /// Making the directories of the new root failed.
    #[error("cannot make the directories of the sandbox root: {0}")]
    MakeRootDirs(#[source] io::Error),
    /// Attaching the share in the new root (`move_mount`) failed.
    #[error("cannot attach the shared directory in the sandbox root: {0}")]
    AttachSharedDir(#[source] io::Error),
    /// Attaching `/proc/self/fd` in the new root (`move_mount`) failed.
    #[error("cannot attach /proc/self/fd in the sandbox root: {0}")]
    AttachProcSelfFd(#[source] io::Error),
    /// Opening the old root failed.
    #[error("cannot open the old root: {0}")]
    OpenOldRoot(#[source] io::Error),
    /// Changing to the new root failed.
    #[error("cannot change to the sandbox root: {0}")]
    ChdirNewRoot(#[source] io::Error),
    /// `pivot_root` failed.
    #[error("pivot_root into the sandbox root failed: {0}")]
    PivotRoot(#[source] io::Error),
    /// Changing to the old root (to unmount it) failed.
    #[error("cannot change to the old root: {0}")]
    ChdirOldRoot(#[source] io::Error),
    /// Unmounting the old root failed.
    #[error("cannot unmount the old root: {0}")]
    UnmountOldRoot(#[source] io::Error),
    /// Changing to `/` of the new root failed.
    #[error("cannot change to / in the sandbox: {0}")]
    ChdirRoot(#[source] io::Error),
    /// Making the new root read-only failed.
    #[error("cannot make the sandbox root read-only: {0}")]
    RemountRootReadOnly(#[source] io::Error),
    /// The share seen from inside is not the share opened before.
    #[error("the shared directory is not at {0} in the sandbox: {1}")]
    VerifySharedDir(String, String),
    /// Chroot mode serves one share (there is one root to change to).
    #[error("--sandbox chroot serves one share ({0} configured): use namespace or none")]
    ChrootSeveralShares(usize),
    /// Opening `/proc/self/fd` failed.
    #[error("cannot open /proc/self/fd (is proc mounted?): {0}")]
    OpenProcSelfFd(#[source] io::Error),
    /// `chroot` failed (needs CAP_SYS_CHROOT).
    #[error("cannot chroot into {path}: {source}")]
    Chroot {
        /// The shared directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Changing to `/proc/self/fd` after `chroot` failed.
    #[error("cannot change to /proc/self/fd: {0}")]
    ChdirProcSelfFd(#[source] io::Error),
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(#[source] io::Error),
    /// A `--modcaps` entry is invalid.
    #[error("--modcaps: {0}")]
    Modcaps(String),
    /// Reading or changing a capability set failed.
    #[error("cannot drop capabilities ({what}): {source}")]
    Capabilities {
        /// Which set.
        what: &'static str,
        /// The cause.
        #[source]
        source: caps::errors::CapsError,
    },
    /// A directory of the Landlock rules cannot be opened.
    #[error("cannot open {path} for a Landlock rule: {source}")]
    LandlockPath {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: landlock::PathFdError,
    },
    /// Setting up Landlock failed.
    #[error("cannot restrict the daemon with Landlock: {0}")]
    Landlock(#[source] landlock::RulesetError),
}

/// What the daemon sees after [`Sandbox::enter`].
#[derive(Debug)]
pub struct SandboxedRoot {
    /// The mode entered.
    pub mode: SandboxMode,
    /// The shared directories as the daemon now names them, in the order
    /// given: give these to the passthrough as its roots.
    pub shared_dirs: Vec<PathBuf>,
    /// The directory through which the daemon reaches its own descriptors
    /// (`/proc/self/fd`), as a path: `/proc/self/fd`, or `.` in chroot mode
    /// (the working directory, left there on purpose).
    pub proc_self_fd: PathBuf,
    /// A supervisor process (in the host's namespaces) waits for this one:
    /// it runs the host-side clean-up, so this process must not (it could
    /// not: the host's mounts and files are out of its sight).
    pub supervised: bool,
    /// Where the supervisor sends what its reload reader read, after
    /// forwarding a SIGHUP (see [`Sandbox::on_reload`]): a length (u32, little
    /// endian) and that many bytes.
    pub reload_channel: Option<UnixStream>,
}

/// Reads, in the host's view, what a reload needs (run by the supervisor).
type ReloadReader = Box<dyn FnMut() -> Vec<u8>>;

/// Host-side clean-up run by the supervisor.
type HostCleanup = Box<dyn FnOnce()>;

/// The sandbox to enter, built with [`Sandbox::new`].
pub struct Sandbox {
    mode: SandboxMode,
    shared_dirs: Vec<PathBuf>,
    host_cleanup: Option<HostCleanup>,
    reload_reader: Option<ReloadReader>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("mode", &self.mode)
            .field("shared_dirs", &self.shared_dirs)
            .field("host_cleanup", &self.host_cleanup.is_some())
            .finish()
    }
}

/// Enters `mode` for `shared_dir` (see [`Sandbox::enter`]).
pub fn enter(mode: SandboxMode, shared_dir: &Path) -> Result<SandboxedRoot, SandboxError> {
    Sandbox::new(mode, [shared_dir]).enter()
}

impl Sandbox {
    /// A sandbox of `mode` around the `shared_dirs` (at least one).
    pub fn new<P: Into<PathBuf>>(mode: SandboxMode, shared_dirs: impl IntoIterator<Item = P>) -> Self {
        Sandbox {
            mode,
            shared_dirs: shared_dirs.into_iter().map(Into::into).collect(),
            host_cleanup: None,
            reload_reader: None,
        }
    }

    /// What the supervisor reads for a reload, in the host's view (the
    /// sandboxed daemon cannot see the configuration files): on each SIGHUP
    /// it forwards the signal, runs `read`, and sends the bytes through
    /// [`SandboxedRoot::reload_channel`].
    pub fn on_reload(mut self, read: impl FnMut() -> Vec<u8> + 'static) -> Self {
        self.reload_reader = Some(Box::new(read));
        self
    }

    /// Work that must happen in the host's view once the daemon stops: run by
    /// the supervisor on the first SIGTERM/SIGINT (before forwarding
    /// it) or when the daemon ends, whichever comes first. Unmounting the
    /// `/dev/fuse` mount here makes the daemon's workers end (`ENODEV`).
    ///
    /// With a clean-up, chroot mode forks a supervisor too; without one it
    /// does not. Mode none ignores it (the daemon can still do it itself).
    pub fn on_host_cleanup(mut self, cleanup: impl FnOnce() + 'static) -> Self {
        self.host_cleanup = Some(Box::new(cleanup));
        self
    }

    /// Enters the sandbox. Call it before any thread starts (this is
    /// checked): in namespace mode, and in chroot mode with a host clean-up,
    /// the process forks and only the child returns; the parent supervises
    /// and exits with the child's status. The child returns with SIGTERM,
    /// SIGINT and SIGHUP *blocked*, so that a stop request that arrives
    /// during start-up waits for the daemon's own signal handling instead of
    /// being dropped (process 1 of a PID namespace ignores signals it has no
    /// handler for).
    ///
    /// Descriptors opened before (a `/dev/fuse` device already mounted, a
    /// bound vhost-user listener) stay open and usable in the child.
    pub fn enter(self) -> Result<SandboxedRoot, SandboxError> {
        let mode = self.mode;
        let default = |shared_dirs: Vec<PathBuf>, supervised, reload_channel| SandboxedRoot {
            mode,
            shared_dirs,
            proc_self_fd: PathBuf::from(PROC_SELF_FD),
            supervised,
            reload_channel,
        };
        match self.mode {
            SandboxMode::None => Ok(default(self.shared_dirs.clone(), false, None)),
            SandboxMode::Namespace => {
                ensure_single_threaded()?;
                let channel = fork_supervised(true, self.host_cleanup, self.reload_reader)?;
                let inside = enter_namespaces(&self.shared_dirs)?;
                for (outside, inside) in self.shared_dirs.iter().zip(&inside) {
                    info!("sandbox: namespaces entered, {} is at {}", outside.display(), inside.display());
                }
                Ok(default(inside, true, channel))
            }
            SandboxMode::Chroot => {
                let [shared_dir] = &self.shared_dirs[..] else {
                    return Err(SandboxError::ChrootSeveralShares(self.shared_dirs.len()));
                };
                ensure_single_threaded()?;
                let supervised = self.host_cleanup.is_some();
                let mut reload_channel = None;
                if supervised {
                    reload_channel = fork_supervised(false, self.host_cleanup, self.reload_reader)?;
                }
                enter_chroot(shared_dir)?;
                info!("sandbox: chroot into {}", shared_dir.display());
                Ok(SandboxedRoot {
                    mode: self.mode,
                    shared_dirs: vec![PathBuf::from("/")],
                    proc_self_fd: PathBuf::from("."),
                    supervised,
                    reload_channel,
                })
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Processes: the supervisor and the sandboxed child.

/// The signals the supervisor forwards.
const FORWARDED: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn ensure_single_threaded() -> Result<(), SandboxError> {
    let n = process::thread_count().map_err(SandboxError::CountThreads)?;
    if n > 1 {
        return Err(SandboxError::Threaded(n));
    }
    Ok(())
}

/// Forks; returns in the child only. The parent supervises (never returns).
/// With `new_pid_ns` the child is process 1 of a new PID namespace.
/// Forks; the parent becomes the supervisor and never returns. Returns, in
/// the child, its end of the reload channel (with a reload reader).
fn fork_supervised(
    new_pid_ns: bool,
    cleanup: Option<HostCleanup>,
    reload: Option<ReloadReader>,
) -> Result<Option<UnixStream>, SandboxError> {
    let mut set = SigSet::of(&FORWARDED);
    set.add(libc::SIGCHLD);
    // Blocked before the fork so that no signal is lost between the fork and
    // the supervisor's sigwait; the child keeps the forwarded ones blocked.
    let old = signal::thread_mask(MaskHow::Block, &set).map_err(SandboxError::BlockSignals)?;
    let restore = || {
        let _ = signal::thread_mask(MaskHow::Set, &old);
    };
    if new_pid_ns {
        // CLONE_NEWPID only changes the namespace the *children* of this
        // process are created in.
        if let Err(e) = process::unshare(libc::CLONE_NEWPID) {
            restore();
            return Err(SandboxError::UnsharePid(e));
        }
    }
    let channel = match reload {
        Some(reader) => match UnixStream::pair() {
            Ok((ours, theirs)) => Some((ours, theirs, reader)),
            Err(e) => {
                restore();
                return Err(SandboxError::Fork(e));
            }
        },
        None => None,
    };
    let parent = std::process::id();
    // The process is single-threaded (checked by the caller, and by fork),
    // so the child is a complete copy and may keep running Rust code.
    match process::fork() {
        Ok(Fork::Parent(child)) => supervise(child, set, cleanup, channel.map(|(ours, _, reader)| (ours, reader))),
        Ok(Fork::Child) => {}
        Err(e) => {
            restore();
            return Err(SandboxError::Fork(e));
        }
    }
    let channel = channel.map(|(_, theirs, _)| theirs);
    let supervisor = parent;
    // The child: SIGCHLD as before, the forwarded signals stay blocked.
    let mut child_mask = old;
    for s in FORWARDED {
        child_mask.add(s);
    }
    signal::thread_mask(MaskHow::Set, &child_mask).map_err(SandboxError::BlockSignals)?;
    // If the supervisor is killed, nobody could stop or clean up after us.
    process::set_parent_death_signal(libc::SIGKILL).map_err(SandboxError::ParentDeathSignal)?;
    // The supervisor may have died before the prctl: then we were reparented.
    // (In a new PID namespace the parent is outside it: getppid gives 0
    // either way, and the check cannot be made.)
    let ppid = std::os::unix::process::parent_id();
    if !new_pid_ns && ppid != supervisor {
        return Err(SandboxError::ParentDeathSignal(io::Error::other("the supervisor has gone")));
    }
    Ok(channel)
}

/// The supervisor's loop: waits for the child, forwards termination signals,
/// runs the host clean-up once, and exits with the child's status.
fn supervise(
    child: process::Pid,
    set: SigSet,
    mut cleanup: Option<HostCleanup>,
    mut reload: Option<(UnixStream, ReloadReader)>,
) -> ! {
    let mut run_cleanup = || {
        if let Some(f) = cleanup.take() {
            f();
        }
    };
    loop {
        let Ok(sig) = signal::sigwait(&set) else {
            continue;
        };
        if sig == libc::SIGCHLD {
            match process::waitpid(child, libc::WNOHANG) {
                Ok(Some(status)) => {
                    run_cleanup();
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else if libc::WIFSIGNALED(status) {
                        let s = libc::WTERMSIG(status);
                        eprintln!("avpfs: the sandboxed daemon was killed by signal {s}");
                        128 + s
                    } else {
                        1
                    };
                    std::process::exit(code);
                }
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    run_cleanup();
                    std::process::exit(1);
                }
                Ok(None) | Err(_) => {}
            }
        } else {
            // SIGHUP asks for a reload: the daemon goes on.
            if sig != libc::SIGHUP {
                run_cleanup();
            }
            // Signalling our own child process; if it is gone, SIGCHLD tells.
            let _ = process::kill(child, sig);
            if sig == libc::SIGHUP {
                if let Some((channel, read)) = &mut reload {
                    // The child reads it on the SIGHUP just sent.
                    use std::io::Write;
                    let bytes = read();
                    let len = u32::try_from(bytes.len()).unwrap_or(0).to_le_bytes();
                    if let Err(e) = channel.write_all(&len).and_then(|()| channel.write_all(&bytes)) {
                        eprintln!("avpfs: cannot pass the reload to the daemon: {e}");
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Namespace mode.

fn cpath(p: &Path) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| SandboxError::NulInPath(p.into()))
}

/// Opens the directory at `path` (relative to the working directory) with
/// `flags`, `O_DIRECTORY` and `O_CLOEXEC`.
fn open_dir(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    avpfs_sys::open::openat(cwd(), path, flags | libc::O_DIRECTORY, 0)
}

/// In the forked child: makes the namespaces and the new root; returns the
/// shares' paths inside.
fn enter_namespaces(shared_dirs: &[PathBuf]) -> Result<Vec<PathBuf>, SandboxError> {
    use SandboxError as E;
    process::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC).map_err(E::UnshareNamespaces)?;
    // Nothing done below propagates back to the host; the host's later
    // mounts and unmounts still reach us.
    mount::mount(None, c"/", None, libc::MS_SLAVE | libc::MS_REC, None).map_err(E::MakeMountsSlave)?;
    let mut shares = Vec::new();
    for shared_dir in shared_dirs {
        let open_err = |source| E::OpenSharedDir { path: shared_dir.clone(), source };
        let share = open_dir(&cpath(shared_dir)?, libc::O_PATH).map_err(open_err)?;
        let id = fstat(share.as_fd()).map_err(open_err)?;
        shares.push((share, (id.st_dev, id.st_ino)));
    }
    // A proc of the new PID namespace: /proc/self is process 1, ourselves.
    let proc_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME;
    mount::mount(Some(c"proc"), c"/proc", Some(c"proc"), proc_flags, None).map_err(E::MountProc)?;
    // Detached copies, made before the new root exists so that the recursive
    // copy of a share cannot contain it.
    let mut share_trees = Vec::new();
    for (share, _) in &shares {
        share_trees.push(mount::open_tree_clone(share.as_fd(), c"", true).map_err(E::CloneSharedDir)?);
    }
    let proc_tree = mount::open_tree_clone(cwd(), c"/proc/self/fd", false).map_err(E::CloneProcSelfFd)?;
    // The new root: a tmpfs over /proc, whose needed part is cloned already
    // (in this namespace only; /proc always exists and is never the root,
    // over which a mount would not be seen).
    let root_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let tmpfs_options = CString::new(format!("mode=0755,size=64k,nr_inodes={}", 16 + shares.len()))
        .map_err(|_| E::MountRoot(io::Error::from_raw_os_error(libc::EINVAL)))?;
    mount::mount(Some(c"avpfs-sandbox"), c"/proc", Some(c"tmpfs"), root_flags, Some(&tmpfs_options))
        .map_err(E::MountRoot)?;
    let root = open_dir(c"/proc", libc::O_PATH).map_err(E::OpenNewRoot)?;
    // Never make directories anywhere but in that tmpfs.
    if fstatfs(root.as_fd()).map_err(E::OpenNewRoot)?.f_type != libc::TMPFS_MAGIC {
        return Err(E::OpenNewRoot(io::Error::other("/proc is not the sandbox's tmpfs")));
    }
    for dir in [c"shared", c"proc", c"proc/self", c"proc/self/fd"] {
        mkdirat(root.as_fd(), dir, 0o755).map_err(E::MakeRootDirs)?;
    }
    let inside: Vec<PathBuf> =
        (0..shares.len()).map(|i| PathBuf::from(format!("{NAMESPACE_SHARED_DIR}/{i}"))).collect();
    for (tree, path) in share_trees.iter().zip(&inside) {
        // "shared/N", relative to the new root.
        let relative = cpath(path.strip_prefix("/").unwrap_or(path))?;
        mkdirat(root.as_fd(), &relative, 0o755).map_err(E::MakeRootDirs)?;
        mount::move_mount(tree.as_fd(), root.as_fd(), &relative).map_err(E::AttachSharedDir)?;
    }
    mount::move_mount(proc_tree.as_fd(), root.as_fd(), c"proc/self/fd").map_err(E::AttachProcSelfFd)?;
    drop((share_trees, proc_tree));

    // pivot_root(".", ".") puts the old root on top of the new one; it is
    // then unmounted from there (as virtiofsd does).
    let old_root = open_dir(c"/", libc::O_RDONLY).map_err(E::OpenOldRoot)?;
    mount::fchdir(root.as_fd()).map_err(E::ChdirNewRoot)?;
    mount::pivot_root(c".", c".").map_err(E::PivotRoot)?;
    mount::fchdir(old_root.as_fd()).map_err(E::ChdirOldRoot)?;
    mount::mount(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None).map_err(E::MakeMountsSlave)?;
    mount::umount2(c".", libc::MNT_DETACH).map_err(E::UnmountOldRoot)?;
    drop(old_root);
    mount::chdir(c"/").map_err(E::ChdirRoot)?;
    let ro = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | root_flags;
    mount::mount(None, c"/", None, ro, None).map_err(E::RemountRootReadOnly)?;

    // Each share inside must be the directory opened outside.
    for ((_, id), path) in shares.iter().zip(&inside) {
        let verify = |e: String| E::VerifySharedDir(path.display().to_string(), e);
        let seen = open_dir(&cpath(path)?, libc::O_PATH)
            .and_then(|fd| fstat(fd.as_fd()))
            .map_err(|e| verify(e.to_string()))?;
        if (seen.st_dev, seen.st_ino) != *id {
            return Err(verify("another directory is there".into()));
        }
    }
    Ok(inside)
}

// ---------------------------------------------------------------------------
// Chroot mode.

fn enter_chroot(shared_dir: &Path) -> Result<(), SandboxError> {
    use SandboxError as E;
    let share_path = cpath(shared_dir)?;
    let proc = open_dir(c"/proc/self/fd", libc::O_PATH).map_err(E::OpenProcSelfFd)?;
    mount::chroot(&share_path).map_err(|source| E::Chroot { path: shared_dir.into(), source })?;
    // The working directory stays outside the new root, on /proc/self/fd:
    // the passthrough reaches `/proc/self/fd/N` as `./N` (threads that
    // unshare CLONE_FS keep a copy of it). Landlock, where available, keeps
    // the daemon from walking up from there.
    mount::fchdir(proc.as_fd()).map_err(E::ChdirProcSelfFd)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// no_new_privs and capabilities.

/// Whether this process may create the namespaces of
/// [`SandboxMode::Namespace`] (it has CAP_SYS_ADMIN): the default sandbox
/// is chosen by it.
pub fn may_create_namespaces() -> bool {
    caps::has_cap(None, caps::CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap_or(false)
}

/// Sets `PR_SET_NO_NEW_PRIVS`: no exec can ever give this process (or its
/// children) more privileges. Per thread: call before threads start.
pub fn set_no_new_privs() -> Result<(), SandboxError> {
    process::set_no_new_privs().map_err(SandboxError::NoNewPrivs)
}

/// The capabilities a passthrough daemon needs by default (virtiofsd's set):
/// act for any caller on any file.
pub const DEFAULT_CAPABILITIES: [Capability; 8] = [
    // chown(2) to the caller's ids, and to any id the client asks for.
    Capability::CAP_CHOWN,
    // Permission checks are done by the host kernel *as the caller*; root's
    // own opens (re-opening O_PATH descriptors, lookups) bypass DAC.
    Capability::CAP_DAC_OVERRIDE,
    // chmod/utimensat/xattrs on files the daemon does not own.
    Capability::CAP_FOWNER,
    // Keep setuid/setgid bits where the client asks for them.
    Capability::CAP_FSETID,
    // Per-thread setresgid/setgroups to the caller's groups.
    Capability::CAP_SETGID,
    // Per-thread setresuid to the caller's uid.
    Capability::CAP_SETUID,
    // MKNOD of device nodes (the policy decides whether a guest may).
    Capability::CAP_MKNOD,
    // security.capability xattrs (file capabilities) set by the guest.
    Capability::CAP_SETFCAP,
];

/// What `--modcaps` asks: capabilities to add to and remove from the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModCaps {
    /// `+name` entries.
    pub add: Vec<Capability>,
    /// `-name` entries.
    pub remove: Vec<Capability>,
}

/// Parses virtiofsd's `--modcaps` syntax: entries separated by `:`, each a
/// `+` or `-` followed by a capability name, case-insensitive, with or
/// without the `cap_` prefix (`+sys_admin:-mknod`, `-CAP_SETFCAP`).
pub fn parse_modcaps(spec: &str) -> Result<ModCaps, SandboxError> {
    let mut out = ModCaps::default();
    for entry in spec.split(':') {
        let entry = entry.trim();
        let (add, name) = match entry.split_at_checked(1) {
            Some(("+", name)) => (true, name),
            Some(("-", name)) => (false, name),
            _ => {
                return Err(SandboxError::Modcaps(format!(
                    "{entry:?}: each entry must be +NAME or -NAME (entries separated by ':')"
                )))
            }
        };
        let upper = name.trim().to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
        let cap =
            Capability::from_str(&full).map_err(|_| SandboxError::Modcaps(format!("{name:?}: unknown capability")))?;
        // The last mention of a capability wins.
        out.add.retain(|c| *c != cap);
        out.remove.retain(|c| *c != cap);
        if add {
            out.add.push(cap);
        } else {
            out.remove.push(cap);
        }
    }
    Ok(out)
}

/// The capabilities to keep: [`DEFAULT_CAPABILITIES`], plus
/// `CAP_DAC_READ_SEARCH` when nodes hold file handles or a migration
/// state is read in file-handles mode (`open_by_handle_at` needs it),
/// changed by `modcaps`. Pure.
pub fn keep_set(inode_file_handles: bool, modcaps: &ModCaps) -> HashSet<Capability> {
    let mut keep: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
    if inode_file_handles {
        keep.insert(Capability::CAP_DAC_READ_SEARCH);
    }
    keep.extend(modcaps.add.iter().copied());
    for c in &modcaps.remove {
        keep.remove(c);
    }
    keep
}

/// Drops every capability not in `keep` from the bounding, inheritable,
/// ambient, permitted and effective sets of the calling thread (threads
/// started afterwards inherit them: call before any starts). A capability in
/// `keep` that the process does not hold is not gained. Returns the
/// capabilities kept.
pub fn drop_capabilities(keep: &HashSet<Capability>) -> Result<HashSet<Capability>, SandboxError> {
    use caps::CapSet;
    let err = |what| move |source| SandboxError::Capabilities { what, source };
    let permitted = caps::read(None, CapSet::Permitted).map_err(err("read permitted"))?;
    let kept: HashSet<Capability> = keep.intersection(&permitted).copied().collect();
    if let Err(e) = caps::clear(None, CapSet::Ambient) {
        // Kernels before 4.3 have no ambient set.
        warn!("cannot clear the ambient capabilities: {e}");
    }
    // The bounding set needs CAP_SETPCAP, dropped just below.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        let bounding = caps::read(None, CapSet::Bounding).map_err(err("read bounding"))?;
        for cap in bounding.difference(&kept) {
            caps::drop(None, CapSet::Bounding, *cap).map_err(err("bounding"))?;
        }
    }
    caps::clear(None, CapSet::Inheritable).map_err(err("inheritable"))?;
    // Effective first: it must stay a subset of permitted.
    caps::set(None, CapSet::Effective, &kept).map_err(err("effective"))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(err("permitted"))?;
    Ok(kept)
}

/// Formats capabilities as `--modcaps` names (`chown,dac_override,...`), sorted.
pub fn capability_names(set: &HashSet<Capability>) -> String {
    let mut v: Vec<String> = set.iter().map(|c| c.to_string().trim_start_matches("CAP_").to_lowercase()).collect();
    v.sort();
    v.join(",")
}

// ---------------------------------------------------------------------------
// Landlock.

/// How much of the Landlock restriction the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockEnforcement {
    /// Every requested restriction is enforced.
    Full,
    /// Some restrictions (those of newer Landlock ABIs) are not.
    Partial,
    /// The kernel has no Landlock (or it is disabled): nothing is enforced.
    None,
}

/// Restricts the calling thread, and the threads it starts afterwards, with
/// Landlock: files may be used only beneath the `shared_dirs` (every access) and
/// `proc_self_fd` (read), abstract unix sockets and signals only within the
/// sandbox. Best effort: what the kernel lacks is skipped and reported.
/// Also sets no_new_privs. Call after [`Sandbox::enter`], with its paths,
/// and before threads start. Landlock also forbids every later mount and
/// unmount by this process.
pub fn restrict_to(shared_dirs: &[PathBuf], proc_self_fd: &Path) -> Result<LandlockEnforcement, SandboxError> {
    use landlock::{
        Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, Scope, ABI,
    };
    let abi = ABI::V6;
    let open =
        |path: &Path| PathFd::new(path).map_err(|source| SandboxError::LandlockPath { path: path.into(), source });
    let mut shares = Vec::new();
    for shared_dir in shared_dirs {
        shares.push(PathBeneath::new(open(shared_dir)?, AccessFs::from_all(abi)));
    }
    let proc = PathBeneath::new(open(proc_self_fd)?, AccessFs::from_read(abi));
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(shares.into_iter().map(Ok::<_, landlock::RulesetError>)))
        .and_then(|r| r.add_rule(proc))
        .and_then(|r| r.restrict_self())
        .map_err(SandboxError::Landlock)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockEnforcement::Full,
        RulesetStatus::PartiallyEnforced => LandlockEnforcement::Partial,
        _ => LandlockEnforcement::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(v: &[Capability]) -> HashSet<Capability> {
        v.iter().copied().collect()
    }

    #[test]
    fn modcaps_adds_and_removes_in_virtiofsd_syntax() {
        let m = parse_modcaps("+sys_admin:-mknod").unwrap();
        assert_eq!(m.add, vec![Capability::CAP_SYS_ADMIN]);
        assert_eq!(m.remove, vec![Capability::CAP_MKNOD]);
    }

    #[test]
    fn modcaps_names_are_case_insensitive_with_optional_prefix() {
        let m = parse_modcaps("+CAP_SYS_ADMIN:-Cap_Setfcap:+dac_read_search").unwrap();
        assert_eq!(m.add, vec![Capability::CAP_SYS_ADMIN, Capability::CAP_DAC_READ_SEARCH]);
        assert_eq!(m.remove, vec![Capability::CAP_SETFCAP]);
    }

    #[test]
    fn modcaps_last_mention_wins() {
        let m = parse_modcaps("+mknod:-mknod").unwrap();
        assert!(m.add.is_empty());
        assert_eq!(m.remove, vec![Capability::CAP_MKNOD]);
    }

    #[test]
    fn modcaps_rejects_bad_entries_with_the_entry() {
        for (spec, needle) in [
            ("sys_admin", "\"sys_admin\""),
            ("+sys_admin:", "\"\""),
            ("+no_such_cap", "unknown capability"),
            ("", "\"\""),
            ("*chown", "\"*chown\""),
            ("+sys_admin,-mknod", "unknown capability"),
        ] {
            let e = parse_modcaps(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec:?}: {e}");
        }
    }

    #[test]
    fn keep_set_is_virtiofsds_default() {
        let k = keep_set(false, &ModCaps::default());
        assert_eq!(k, caps(&DEFAULT_CAPABILITIES));
        assert!(!k.contains(&Capability::CAP_SYS_ADMIN));
        assert!(!k.contains(&Capability::CAP_DAC_READ_SEARCH));
        assert_eq!(capability_names(&k), "chown,dac_override,fowner,fsetid,mknod,setfcap,setgid,setuid");
    }

    #[test]
    fn keep_set_adds_dac_read_search_for_file_handles() {
        let k = keep_set(true, &ModCaps::default());
        assert!(k.contains(&Capability::CAP_DAC_READ_SEARCH));
        assert_eq!(k.len(), DEFAULT_CAPABILITIES.len() + 1);
    }

    #[test]
    fn keep_set_applies_modcaps_after_the_options() {
        let k = keep_set(true, &parse_modcaps("+sys_admin:-mknod:-dac_read_search").unwrap());
        assert!(k.contains(&Capability::CAP_SYS_ADMIN));
        assert!(!k.contains(&Capability::CAP_MKNOD));
        assert!(!k.contains(&Capability::CAP_DAC_READ_SEARCH));
    }

    #[test]
    fn none_mode_changes_nothing() {
        let r = enter(SandboxMode::None, Path::new("/some/dir")).unwrap();
        assert_eq!(r.shared_dirs, [PathBuf::from("/some/dir")]);
        assert_eq!(r.proc_self_fd, PathBuf::from("/proc/self/fd"));
        assert!(!r.supervised);
    }

    #[test]
    fn entering_with_threads_is_refused() {
        // The test harness runs tests on threads: the process is threaded.
        let e = enter(SandboxMode::Namespace, Path::new("/tmp")).unwrap_err();
        assert!(matches!(e, SandboxError::Threaded(n) if n > 1), "{e}");
        let e = Sandbox::new(SandboxMode::Chroot, ["/tmp"]).enter().unwrap_err();
        assert!(matches!(e, SandboxError::Threaded(_)), "{e}");
    }

    #[test]
    fn chroot_mode_refuses_several_shares() {
        let e = Sandbox::new(SandboxMode::Chroot, ["/tmp", "/var/tmp"]).enter().unwrap_err();
        assert!(matches!(e, SandboxError::ChrootSeveralShares(2)), "{e}");
    }
}
