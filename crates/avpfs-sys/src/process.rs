//! Processes: `fork`, `waitpid`, `kill`, `gettid`, `unshare`, `prctl`, resource
//! limits, clocks.
//!
//! Apart from [`thread_count`] and [`fork`] (which reads `/proc` before it
//! forks), every function here is a single system call that allocates
//! nothing, so it may be used in a child after `fork` (async-signal-safe).

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::util::{cvt, err};

/// A process id.
pub type Pid = libc::pid_t;

/// The type of a resource of [`getrlimit`] (`libc::RLIMIT_*`).
#[cfg(target_env = "gnu")]
pub type Resource = libc::__rlimit_resource_t;
/// The type of a resource of [`getrlimit`] (`libc::RLIMIT_*`).
#[cfg(not(target_env = "gnu"))]
pub type Resource = libc::c_int;

/// The number of threads of the calling process (entries of
/// `/proc/self/task`). Fails unless `/proc` is the kernel's procfs: a `/proc`
/// inside a chroot into a share that a guest can write could list anything,
/// and [`fork`]'s soundness rests on this count.
pub fn thread_count() -> io::Result<usize> {
    let task = crate::open::open_path(std::path::Path::new("/proc/self/task"), libc::O_RDONLY | libc::O_DIRECTORY)?;
    if crate::stat::fstatfs(task.as_fd())?.f_type != libc::PROC_SUPER_MAGIC {
        return Err(io::Error::other("/proc/self/task is not on procfs"));
    }
    let mut buf = [0u8; 4096];
    let mut threads = 0;
    loop {
        let filled = crate::dir::getdents64(task.as_fd(), &mut buf)?;
        if filled == 0 {
            return Ok(threads);
        }
        threads += crate::dir::DirEntries::new(&buf[..filled]).filter(|e| e.name != b"." && e.name != b"..").count();
    }
}

/// Which side of a [`fork`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    /// The parent; the child has this id.
    Parent(Pid),
    /// The child.
    Child,
}

/// `fork(2)` of a single-threaded process. A child of a process with
/// threads could find a lock held by a thread that does not exist in it
/// (the allocator's, say), so this refuses (an error of kind `Other`) when
/// [`thread_count`] is not 1; a process with one thread cannot gain another
/// but by itself, so the check holds at the fork. The child is a complete
/// copy and may keep running any code.
pub fn fork() -> io::Result<Fork> {
    let n = thread_count()?;
    if n != 1 {
        return Err(io::Error::other(format!("cannot fork a process of {n} threads")));
    }
    // SAFETY: the process has one thread (checked just above), so no lock
    // can be held by a thread missing in the child.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 { Fork::Child } else { Fork::Parent(pid) })
}

/// `waitpid(2)` for `pid` with `flags` (`libc::WNOHANG`, ...): the wait
/// status (decode it with `libc::WIFEXITED` and the like), or `None` when
/// `WNOHANG` was given and the child has not changed state. Not retried on
/// `EINTR`.
pub fn waitpid(pid: Pid, flags: libc::c_int) -> io::Result<Option<libc::c_int>> {
    let mut status = 0;
    // SAFETY: `status` is a writable int for the duration of the call.
    let r = cvt(unsafe { libc::waitpid(pid, &mut status, flags) })?;
    Ok((r != 0).then_some(status))
}

/// `gettid(2)`: the kernel id of the calling thread (the process id in the
/// main thread), as `/proc/self/task` names it.
pub fn gettid() -> Pid {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// `kill(2)`: sends `sig` to the process `pid`.
pub fn kill(pid: Pid, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes integers only.
    cvt(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// `unshare(2)` with `flags` (`libc::CLONE_*`).
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes flags only.
    cvt(unsafe { libc::unshare(flags) })?;
    Ok(())
}

/// `prctl(PR_SET_PDEATHSIG)`: the calling thread gets `sig` when the thread
/// that created it ends.
pub fn set_parent_death_signal(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number; no memory is passed.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// `prctl(PR_SET_NO_NEW_PRIVS)`: no exec can ever give the calling thread
/// (or what it starts afterwards) more privileges.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// `getrlimit(2)` of `resource` (`libc::RLIMIT_NOFILE`, ...).
pub fn getrlimit(resource: Resource) -> io::Result<libc::rlimit> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `rl` is a writable rlimit for the duration of the call.
    cvt(unsafe { libc::getrlimit(resource, &mut rl) })?;
    Ok(rl)
}

/// `setrlimit(2)` of `resource`.
pub fn setrlimit(resource: Resource, limit: &libc::rlimit) -> io::Result<()> {
    // SAFETY: `limit` is a valid rlimit for the duration of the call.
    cvt(unsafe { libc::setrlimit(resource, limit) })?;
    Ok(())
}

/// The CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> io::Result<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a writable timespec for the duration of the call.
    cvt(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) })?;
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of the CPU
/// times in `/proc/PID/stat`.
pub fn clock_ticks_per_second() -> io::Result<u64> {
    // SAFETY: sysconf takes an integer only.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        Ok(hz as u64)
    } else {
        Err(err(libc::EINVAL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn the_tests_have_threads_so_fork_refuses() {
        let t = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(200)));
        assert!(thread_count().unwrap() > 1);
        let e = fork().unwrap_err();
        assert!(e.to_string().contains("threads"), "{e}");
        t.join().unwrap();
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by `waitpid` below, not by `Child::wait`
    fn kill_and_waitpid_a_child() {
        let child = std::process::Command::new("sleep").arg("10").spawn().unwrap();
        let pid = child.id() as Pid;
        assert_eq!(waitpid(pid, libc::WNOHANG).unwrap(), None, "still running");
        kill(pid, libc::SIGTERM).unwrap();
        let status = waitpid(pid, 0).unwrap().unwrap();
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM, "{status:#x}");
        assert_eq!(std::process::ExitStatus::from_raw(status).signal(), Some(libc::SIGTERM));
        assert_eq!(waitpid(pid, libc::WNOHANG).unwrap_err().raw_os_error(), Some(libc::ECHILD));
        assert_eq!(kill(-999_999, 0).unwrap_err().raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn thread_ids() {
        let main = gettid();
        assert!(std::path::Path::new(&format!("/proc/self/task/{main}")).exists());
        let other = std::thread::spawn(gettid).join().unwrap();
        assert_ne!(other, main, "each thread has its own id");
        assert!(other > 0);
    }

    #[test]
    fn prctls_of_one_thread() {
        std::thread::spawn(|| {
            set_parent_death_signal(libc::SIGKILL).unwrap();
            set_no_new_privs().unwrap();
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            assert!(status.lines().any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')), "{status}");
        })
        .join()
        .unwrap();
        assert!(set_parent_death_signal(1000).is_err());
    }

    #[test]
    fn nofile_limit_round_trips() {
        let rl = getrlimit(libc::RLIMIT_NOFILE).unwrap();
        assert!(rl.rlim_cur <= rl.rlim_max);
        setrlimit(libc::RLIMIT_NOFILE, &rl).unwrap();
        let bad = libc::rlimit { rlim_cur: 2, rlim_max: 1 };
        assert_eq!(setrlimit(libc::RLIMIT_NOFILE, &bad).unwrap_err().raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn clocks() {
        let a = thread_cpu_time().unwrap();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(thread_cpu_time().unwrap() >= a);
        assert!(clock_ticks_per_second().unwrap() >= 100);
    }

    #[test]
    fn unshare_of_one_thread() {
        std::thread::spawn(|| unshare(libc::CLONE_FS).unwrap()).join().unwrap();
        assert!(unshare(-1).is_err());
    }
}
