//! The seccomp filter: an allow-list of the system calls the serving daemon
//! really makes (`--seccomp kill|log|trap|none`).
//!
//! [`install`] is called once the start-up is done (sandbox entered,
//! capabilities dropped, the share and the front end opened), just before
//! the daemon starts serving; it applies to every thread (`TSYNC`) and to
//! the threads started later. Each allowed call carries its reason in
//! [`ALLOWED`]; a few are allowed only with certain arguments
//! ([`conditional_rules`]): `clone` only for threads, `unshare` only for
//! `CLONE_FS`, `tgkill` only within this process, `prctl` only to name
//! threads, `mmap`/`mprotect` never executable, `ioctl` only `FIONBIO` and
//! `FIOCLEX`.
//!
//! `clone3` gets `ENOSYS` (its flags are in memory, where a filter cannot
//! look) so that the C library falls back to `clone`, whose flags it can.
//!
//! The test `seccomp_kill_runs_the_conformance_suite` (tests/sandbox.rs)
//! runs the whole POSIX conformance suite under `--seccomp kill`: a call
//! missing here is found by that test, not by users.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction as Action, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond,
    SeccompFilter, SeccompRule, TargetArch,
};

/// What happens on a system call that is not allowed (`--seccomp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompAction {
    /// The whole process is killed (`SECCOMP_RET_KILL_PROCESS`).
    Kill,
    /// The call is allowed and logged by the kernel (audit log or `dmesg`).
    Log,
    /// The thread gets SIGSYS: avpfs prints the call's number to stderr and
    /// dies of the signal.
    Trap,
    /// No filter.
    None,
}

/// Errors of [`install`].
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccomp filters exist on x86_64 only in this build.
    #[error("seccomp filters are only built for x86_64")]
    UnsupportedArch,
    /// Building the filter failed (a bug in the rules).
    #[error("cannot build the seccomp filter: {0}")]
    Build(String),
    /// Installing the SIGSYS handler for `trap` failed.
    #[error("cannot install the SIGSYS handler: {0}")]
    TrapHandler(#[source] io::Error),
    /// Loading the filter into the kernel failed.
    #[error("cannot install the seccomp filter: {0}")]
    Install(String),
}

macro_rules! allow {
    ($($sys:ident => $why:literal,)*) => {
        /// The system calls allowed with any arguments: number, name, why.
        pub const ALLOWED: &[(i64, &str, &str)] = &[
            $((libc::$sys, stringify!($sys), $why),)*
        ];
    };
}

allow! {
    // --- Requests and replies: /dev/fuse, eventfds, the vhost-user socket.
    SYS_read => "/dev/fuse requests, eventfd counters, file data (READ)",
    SYS_write => "/dev/fuse replies, eventfd kicks, file data (WRITE), log lines to stderr",
    SYS_readv => "vectored reads of file data into reply buffers",
    SYS_writev => "vectored replies and file data",
    SYS_pread64 => "READ at an offset",
    SYS_pwrite64 => "WRITE at an offset",
    SYS_preadv => "READ straight into guest buffers (zero copy)",
    SYS_pwritev => "WRITE straight from guest buffers (zero copy)",
    SYS_preadv2 => "READ with RWF_* flags",
    SYS_pwritev2 => "WRITE with RWF_* flags",
    SYS_close => "RELEASE, FORGET, and every temporary descriptor",
    SYS_dup => "duplicating descriptors",
    SYS_dup3 => "duplicating descriptors with O_CLOEXEC",
    SYS_fcntl => "F_DUPFD_CLOEXEC (worker descriptors), F_GETFL/F_SETFL, POSIX and OFD locks (GETLK/SETLK/SETLKW)",
    SYS_lseek => "LSEEK (SEEK_DATA/SEEK_HOLE) and directory offsets",
    // --- The passthrough file system: every path is resolved beneath the share.
    SYS_openat => "LOOKUP/OPEN/CREATE/OPENDIR beneath a directory, re-opening through /proc/self/fd",
    SYS_openat2 => "resolution with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS",
    SYS_open_by_handle_at => "nodes kept as file handles (--inode-file-handles)",
    SYS_name_to_handle_at => "file handles of looked-up nodes, mount ids",
    SYS_statx => "GETATTR, LOOKUP (mount id, inode), STATX",
    SYS_newfstatat => "stat of a name or of an O_PATH descriptor",
    SYS_fstat => "stat of an open file",
    SYS_fstatfs => "STATFS",
    SYS_getdents64 => "READDIR/READDIRPLUS",
    SYS_readlinkat => "READLINK",
    SYS_mkdirat => "MKDIR",
    SYS_mknodat => "MKNOD (fifos, sockets, devices if the policy allows)",
    SYS_symlinkat => "SYMLINK",
    SYS_linkat => "LINK (through /proc/self/fd with AT_SYMLINK_FOLLOW)",
    SYS_unlinkat => "UNLINK/RMDIR",
    SYS_unlink => "removing the vhost-user socket file at exit without a supervisor (--sandbox none or chroot); no more than unlinkat(AT_FDCWD) allows",
    SYS_renameat2 => "RENAME/RENAME2 (NOREPLACE, EXCHANGE, WHITEOUT)",
    SYS_fchmod => "SETATTR mode on an open file",
    SYS_fchmodat => "SETATTR mode through /proc/self/fd",
    SYS_fchown => "SETATTR uid/gid on an open file",
    SYS_fchownat => "SETATTR uid/gid, and owning a new node by the caller",
    SYS_utimensat => "SETATTR atime/mtime (UTIME_NOW/OMIT)",
    SYS_ftruncate => "SETATTR size, OPEN with O_TRUNC",
    SYS_fallocate => "FALLOCATE (all modes)",
    SYS_copy_file_range => "COPY_FILE_RANGE",
    SYS_memfd_create => "DAX: the copy of a file's last, partial page lent to QEMU 11.1 (a 4 KiB memfd)",
    SYS_fsync => "FSYNC/FSYNCDIR",
    SYS_fdatasync => "FSYNC with the datasync flag",
    SYS_syncfs => "SYNCFS",
    SYS_flock => "FLOCK locks (SETLK/SETLKW with FUSE_LK_FLOCK)",
    SYS_faccessat => "ACCESS",
    SYS_faccessat2 => "ACCESS with AT_EACCESS, as the caller",
    SYS_getxattr => "GETXATTR through /proc/self/fd/N",
    SYS_lgetxattr => "GETXATTR on a symlink",
    SYS_fgetxattr => "GETXATTR on an open file",
    SYS_setxattr => "SETXATTR through /proc/self/fd/N",
    SYS_lsetxattr => "SETXATTR on a symlink",
    SYS_fsetxattr => "SETXATTR on an open file",
    SYS_listxattr => "LISTXATTR through /proc/self/fd/N",
    SYS_llistxattr => "LISTXATTR on a symlink",
    SYS_flistxattr => "LISTXATTR on an open file",
    SYS_removexattr => "REMOVEXATTR through /proc/self/fd/N",
    SYS_lremovexattr => "REMOVEXATTR on a symlink",
    SYS_fremovexattr => "REMOVEXATTR on an open file",
    SYS_umask => "the caller's umask, per thread (after unshare(CLONE_FS))",
    // --- Acting as the caller, per thread.
    SYS_setresuid => "per-thread effective uid of the caller",
    SYS_setresgid => "per-thread effective gid of the caller",
    SYS_setgroups => "per-thread supplementary groups of the caller",
    SYS_getgroups => "saving the groups to restore them",
    SYS_getresuid => "reading the thread's ids",
    SYS_getresgid => "reading the thread's ids",
    SYS_geteuid => "reading the thread's effective uid",
    SYS_getegid => "reading the thread's effective gid",
    SYS_getuid => "reading the real uid",
    SYS_getgid => "reading the real gid",
    SYS_capget => "is CAP_FSETID/CAP_DAC_READ_SEARCH effective",
    SYS_capset => "dropping CAP_FSETID for a write that must clear setuid/setgid",
    // --- Memory.
    SYS_brk => "the allocator's main heap",
    SYS_munmap => "freeing memory, thread stacks, guest memory regions removed",
    SYS_mremap => "growing large buffers",
    SYS_madvise => "the allocator returning memory (MADV_DONTNEED)",
    // --- Threads, time, randomness.
    SYS_set_robust_list => "every new thread (C library)",
    SYS_rseq => "every new thread (C library)",
    SYS_futex => "locks and condition variables",
    SYS_sched_yield => "spin locks",
    SYS_sched_getaffinity => "the number of cores (request queue and thread counts)",
    SYS_gettid => "thread ids (interrupting a blocked request)",
    SYS_getpid => "the process id",
    SYS_exit => "a thread ends (SETLKW threads, workers at disconnect)",
    SYS_exit_group => "the daemon ends",
    SYS_clock_gettime => "time stamps (when the vDSO cannot answer)",
    SYS_clock_nanosleep => "sleeping in retry loops and while FORGETs gather",
    SYS_nanosleep => "sleeping in retry loops",
    SYS_getrandom => "hash map keys of new threads",
    // --- Signals.
    SYS_rt_sigaction => "the interrupt signal handler, SIGSYS reporting",
    SYS_rt_sigprocmask => "thread creation and the signal thread's mask",
    SYS_rt_sigreturn => "returning from the interrupt signal handler",
    SYS_rt_sigtimedwait => "the signal thread waits for SIGTERM/SIGINT/SIGHUP (sigwait)",
    SYS_sigaltstack => "stack overflow guard of every new thread (Rust)",
    // --- Waiting for events.
    SYS_epoll_create1 => "vhost-user worker event loops",
    SYS_epoll_ctl => "vhost-user worker event loops",
    SYS_epoll_wait => "vhost-user worker event loops",
    SYS_epoll_pwait => "vhost-user worker event loops",
    SYS_eventfd2 => "queue kicks, calls and stop events",
    SYS_poll => "the accept loop waits for a front end or a stop event",
    SYS_ppoll => "the accept loop waits for a front end or a stop event",
    // --- The vhost-user socket (bound before the sandbox; no socket() here).
    SYS_accept4 => "accepting the front end's connection, and 9P clients on unix and vsock listeners",
    SYS_accept => "accepting the front end's connection",
    SYS_recvmsg => "vhost-user messages and the descriptors they carry (SCM_RIGHTS: memory, eventfds)",
    SYS_sendmsg => "vhost-user replies",
    SYS_recvfrom => "vhost-user messages",
    SYS_sendto => "vhost-user replies",
    SYS_shutdown => "closing the front end's connection to stop",
    SYS_getsockopt => "socket errors and peer credentials",
    SYS_getsockname => "the 9P listener names its socket in its log lines",
    SYS_setsockopt => "a write timeout on each 9P connection (SO_SNDTIMEO), so a client that never reads cannot hold its thread for ever",
    // --- Unmounting the /dev/fuse mount on SIGTERM.
    SYS_umount2 => "without a supervisor the daemon unmounts its /dev/fuse mount itself (it then keeps CAP_SYS_ADMIN); otherwise fails with EPERM",
}

/// A system call allowed only with certain arguments.
#[derive(Debug, Clone)]
pub struct ConditionalRule {
    /// The system call number.
    pub nr: i64,
    /// Its name.
    pub name: &'static str,
    /// Why it is allowed, and with what.
    pub why: &'static str,
    /// Any one rule matching allows the call (none: always allowed).
    pub rules: Vec<SeccompRule>,
}

/// The calls allowed only with certain arguments.
pub fn conditional_rules() -> Result<Vec<ConditionalRule>, SeccompError> {
    let b = |e: seccompiler::BackendError| SeccompError::Build(e.to_string());
    let masked_eq = |arg, len, mask: u64, value: u64| Cond::new(arg, len, Op::MaskedEq(mask), value).map_err(b);
    let eq = |arg, len, value: u64| Cond::new(arg, len, Op::Eq, value).map_err(b);
    let rule = |conds: Vec<Cond>| SeccompRule::new(conds).map_err(b);
    let thread = libc::CLONE_THREAD as u64;
    let exec = libc::PROT_EXEC as u64;
    let pid = u64::from(std::process::id());
    let r = |nr, name, why, rules| ConditionalRule { nr, name, why, rules };
    Ok(vec![
        r(
            libc::SYS_clone,
            "clone",
            "new threads only (CLONE_THREAD): never a new process",
            vec![rule(vec![masked_eq(0, Len::Qword, thread, thread)?])?],
        ),
        r(libc::SYS_clone3, "clone3", "answered ENOSYS by a first filter, so the C library uses clone", vec![]),
        r(
            libc::SYS_unshare,
            "unshare",
            "CLONE_FS only: a private umask per worker thread",
            vec![rule(vec![eq(0, Len::Qword, libc::CLONE_FS as u64)?])?],
        ),
        r(
            libc::SYS_tgkill,
            "tgkill",
            "signals to this process's own threads only (FUSE_INTERRUPT, abort)",
            vec![rule(vec![eq(0, Len::Dword, pid)?])?],
        ),
        r(
            libc::SYS_prctl,
            "prctl",
            "naming threads only",
            vec![
                rule(vec![eq(0, Len::Dword, libc::PR_SET_NAME as u64)?])?,
                rule(vec![eq(0, Len::Dword, libc::PR_GET_NAME as u64)?])?,
            ],
        ),
        r(
            libc::SYS_mmap,
            "mmap",
            "memory, thread stacks, guest memory (memfd, shared); never executable",
            vec![rule(vec![masked_eq(2, Len::Dword, exec, 0)?])?],
        ),
        r(
            libc::SYS_mprotect,
            "mprotect",
            "guard pages of thread stacks; never executable",
            vec![rule(vec![masked_eq(2, Len::Dword, exec, 0)?])?],
        ),
        r(
            libc::SYS_ioctl,
            "ioctl",
            "FIONBIO (blocking mode of sockets) and FIOCLEX only",
            vec![rule(vec![eq(1, Len::Dword, libc::FIONBIO)?])?, rule(vec![eq(1, Len::Dword, libc::FIOCLEX)?])?],
        ),
    ])
}

/// Builds the two filters: the first answers `clone3` with `ENOSYS`, the
/// second is the allow-list with `mismatch` for everything else.
fn build(mismatch: Action) -> Result<[BpfProgram; 2], SeccompError> {
    let b = |e: seccompiler::BackendError| SeccompError::Build(e.to_string());
    let arch = TargetArch::x86_64;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|&(nr, _, _)| (nr, vec![])).collect();
    for c in conditional_rules()? {
        rules.insert(c.nr, c.rules);
    }
    let main = SeccompFilter::new(rules, mismatch, Action::Allow, arch).map_err(b)?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        Action::Allow,
        Action::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(b)?;
    Ok([BpfProgram::try_from(clone3).map_err(b)?, BpfProgram::try_from(main).map_err(b)?])
}

/// Installs the filter on every thread of the process (and those started
/// later). `None` installs nothing. Also sets no_new_privs (the kernel
/// requires it for an unprivileged filter).
pub fn install(action: SeccompAction) -> Result<(), SeccompError> {
    if !cfg!(target_arch = "x86_64") {
        return match action {
            SeccompAction::None => Ok(()),
            _ => Err(SeccompError::UnsupportedArch),
        };
    }
    let mismatch = match action {
        SeccompAction::None => return Ok(()),
        SeccompAction::Kill => Action::KillProcess,
        SeccompAction::Log => Action::Log,
        SeccompAction::Trap => {
            install_sigsys_reporter().map_err(SeccompError::TrapHandler)?;
            Action::Trap
        }
    };
    let [clone3, main] = build(mismatch)?;
    // The clone3 filter first: installing the allow-list after it needs
    // prctl(PR_SET_NO_NEW_PRIVS) and seccomp(2), which the allow-list forbids.
    seccompiler::apply_filter_all_threads(&clone3).map_err(|e| SeccompError::Install(e.to_string()))?;
    seccompiler::apply_filter_all_threads(&main).map_err(|e| SeccompError::Install(e.to_string()))?;
    log::info!("seccomp: {} system calls allowed, others: {action:?}", ALLOWED.len() + conditional_rules()?.len());
    Ok(())
}

/// The name of an allowed system call, for messages.
pub fn name_of(nr: i64) -> Option<&'static str> {
    ALLOWED.iter().find(|(n, _, _)| *n == nr).map(|(_, name, _)| name.trim_start_matches("SYS_"))
}

/// Installs the SIGSYS handler of `--seccomp trap`: it writes `avpfs:
/// seccomp: system call N is not allowed (--seccomp trap)` to stderr with no
/// allocation (async-signal-safe), and the thread dies of the signal.
fn install_sigsys_reporter() -> io::Result<()> {
    avpfs_sys::signal::install_sigsys_reporter("avpfs: seccomp: system call ", " is not allowed (--seccomp trap)\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_call_is_listed_once_with_a_reason() {
        let mut seen = HashSet::new();
        for (nr, name, why) in ALLOWED {
            assert!(seen.insert(*nr), "{name} listed twice");
            assert!(!why.is_empty(), "{name} has no reason");
        }
        for c in conditional_rules().unwrap() {
            assert!(seen.insert(c.nr), "{} is both conditional and unconditional", c.name);
            assert!(!c.why.is_empty(), "{} has no reason", c.name);
        }
    }

    #[test]
    fn dangerous_calls_are_not_allowed() {
        let allowed: HashSet<i64> = ALLOWED.iter().map(|(nr, _, _)| *nr).collect();
        for nr in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_kill,
            libc::SYS_setns,
            libc::SYS_bpf,
            libc::SYS_init_module,
            libc::SYS_process_vm_writev,
            libc::SYS_open, // every open is *at, beneath a directory
        ] {
            assert!(!allowed.contains(&nr), "{nr} must not be allowed");
        }
    }

    #[test]
    fn the_filters_build_for_every_action() {
        for a in [Action::KillProcess, Action::Log, Action::Trap] {
            let [clone3, main] = build(a).unwrap();
            assert!(!clone3.is_empty());
            assert!(main.len() > ALLOWED.len());
        }
    }

    #[test]
    fn names_are_found() {
        assert_eq!(name_of(libc::SYS_openat), Some("openat"));
        assert_eq!(name_of(libc::SYS_execve), None);
    }

    /// A child process installs the filter with `kill`, makes allowed calls
    /// (a thread: clone3 falls back to clone; a stat; a write to stdout),
    /// then calls `execve`: it must die of SIGSYS, not run `true`.
    #[test]
    fn a_call_outside_the_list_kills_the_process() {
        use std::io::Write;
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let name = "seccomp::tests::a_call_outside_the_list_kills_the_process";
        if avpfs_sys::test_child::is(name) {
            let code = match install(SeccompAction::Kill) {
                Ok(()) => {
                    let ok = std::thread::spawn(|| std::fs::metadata("/").is_ok()).join().unwrap_or(false);
                    let mut out = std::io::stdout();
                    let _ = out.write_all(format!("\nallowed calls: {ok}\n").as_bytes()).and_then(|()| out.flush());
                    // execve, with no fork.
                    let _ = std::process::Command::new("/bin/true").exec();
                    4
                }
                Err(_) => 2,
            };
            std::process::exit(code);
        }
        let out = avpfs_sys::test_child::run(name);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("\nallowed calls: true\n"),
            "the allowed calls failed under the filter ({:?}): {stdout}",
            out.status
        );
        assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{:?}", out.status);
    }

    /// With `trap`, a call outside the list is reported on stderr by number
    /// and the process dies of SIGSYS.
    #[test]
    fn trap_reports_the_call_and_dies_of_sigsys() {
        use std::os::unix::process::ExitStatusExt;
        let name = "seccomp::tests::trap_reports_the_call_and_dies_of_sigsys";
        if avpfs_sys::test_child::is(name) {
            if install(SeccompAction::Trap).is_ok() {
                // getppid is not allowed.
                let _ = std::os::unix::process::parent_id();
            }
            std::process::exit(5);
        }
        let out = avpfs_sys::test_child::run(name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!("avpfs: seccomp: system call {} is not allowed (--seccomp trap)\n", libc::SYS_getppid);
        assert!(stderr.contains(&expected), "stderr: {stderr:?}");
        assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{:?}", out.status);
    }
}
