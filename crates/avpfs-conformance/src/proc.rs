//! Second processes for the cases: a child that drops to another user for
//! permission checks, and a child that talks to its parent through pipes
//! for lock checks.
//!
//! The child is made with `fork()`. It runs one closure, sends its
//! [`Outcome`] back through a pipe and leaves with `_exit` (no destructors,
//! no atexit handlers of the parent). It never prints. An `alarm` kills a
//! child that hangs, so a broken file system fails a case instead of
//! hanging the suite.
//!
//! The parent never relies on seeing end-of-file on a pipe alone (another
//! thread of the test process may fork at the same moment and keep a copy
//! of a write end): it also watches the child with `waitpid(WNOHANG)`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::recorder::Outcome;

/// Seconds after which a child kills itself (`alarm`).
const CHILD_ALARM_SECS: u32 = 60;
/// How long the parent waits for a child's message or exit.
const PARENT_WAIT: Duration = Duration::from_secs(70);

/// The credentials a child switches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    /// Real, effective, saved and file-system user id.
    pub uid: u32,
    /// Real, effective, saved and file-system group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Creds {
    /// `nobody:nogroup` (65534:65534), no supplementary groups.
    pub fn nobody() -> Creds {
        Creds { uid: 65534, gid: 65534, groups: Vec::new() }
    }

    /// A given uid and gid, no supplementary groups.
    pub fn user(uid: u32, gid: u32) -> Creds {
        Creds { uid, gid, groups: Vec::new() }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn write_all(fd: &impl AsFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match crate::sys::write_once(fd, data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until `fd` is readable or `timeout_ms` passes; true if readable
/// (or hung up).
fn poll_in(fd: &impl AsFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd { fd: fd.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `p` is one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    r > 0
}

/// Reads one byte; `Ok(None)` at end of file.
fn read_byte(fd: &impl AsFd) -> io::Result<Option<u8>> {
    loop {
        match crate::sys::read_once(fd, 1) {
            Ok(v) => return Ok(v.first().copied()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed the pipe")
}

/// The child's side of the pipes.
#[derive(Debug)]
pub struct Chan {
    rx: OwnedFd,
    tx: OwnedFd,
    log: OwnedFd,
}

impl Chan {
    /// Sends one line to the parent.
    pub fn send(&self, msg: &str) {
        let _ = write_all(&self.tx, format!("{msg}\n").as_bytes());
    }

    /// Waits for one line from the parent.
    pub fn recv(&self) -> io::Result<String> {
        let mut line = Vec::new();
        loop {
            match read_byte(&self.rx)? {
                None => return Err(eof()),
                Some(b'\n') => return Ok(String::from_utf8_lossy(&line).into_owned()),
                Some(b) => line.push(b),
            }
        }
    }

    /// Appends an event to the shared ordering log (see [`Child::order`]).
    pub fn log(&self, event: &str) {
        // One short write to a pipe is atomic, so events never interleave.
        let _ = write_all(&self.log, format!("child:{event}\n").as_bytes());
    }
}

/// The parent's handle on a child process.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    tx: OwnedFd,
    rx: OwnedFd,
    result: OwnedFd,
    log_r: OwnedFd,
    log_w: OwnedFd,
    status: Option<i32>,
}

impl Child {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends one line to the child.
    pub fn send(&self, msg: &str) {
        let _ = write_all(&self.tx, format!("{msg}\n").as_bytes());
    }

    /// Reaps the child if it has exited; true if it is gone.
    fn exited(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        let mut st = 0;
        // SAFETY: `st` is writable; `pid` is our own child.
        let r = unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG) };
        if r == self.pid {
            self.status = Some(st);
            true
        } else {
            r == -1
        }
    }

    /// Waits for one line from the child (gives up if it exits or after a
    /// long timeout).
    pub fn recv(&mut self) -> io::Result<String> {
        let start = Instant::now();
        let mut line = Vec::new();
        loop {
            if poll_in(&self.rx, 50) {
                match read_byte(&self.rx)? {
                    None => return Err(eof()),
                    Some(b'\n') => return Ok(String::from_utf8_lossy(&line).into_owned()),
                    Some(b) => line.push(b),
                }
                continue;
            }
            if self.exited() && !poll_in(&self.rx, 0) {
                return Err(eof());
            }
            if start.elapsed() > PARENT_WAIT {
                return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
            }
        }
    }

    /// Waits for the line `expected`; any other line or an error is
    /// reported as the `Err` text.
    pub fn expect_msg(&mut self, expected: &str) -> Result<(), String> {
        match self.recv() {
            Ok(m) if m == expected => Ok(()),
            Ok(m) => Err(format!("unexpected message {m:?}")),
            Err(e) => Err(format!("no message: {}", crate::recorder::error_name(&e))),
        }
    }

    /// Appends an event to the shared ordering log.
    pub fn log(&self, event: &str) {
        let _ = write_all(&self.log_w, format!("parent:{event}\n").as_bytes());
    }

    /// Waits (up to 10 s, polling `/proc/PID/syscall`) until the child
    /// sleeps inside system call `nr`. Returns whether it was seen there.
    /// This is how a case knows the child really blocked on a lock without
    /// relying on timing: a correct implementation is always seen blocked
    /// eventually, a broken one (the lock granted at once) never is.
    pub fn wait_blocked_in(&mut self, nr: libc::c_long) -> bool {
        let path = format!("/proc/{}/syscall", self.pid);
        let stat_path = format!("/proc/{}/stat", self.pid);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(s) = std::fs::read_to_string(&path) {
                let first = s.split_whitespace().next().unwrap_or("");
                if first == nr.to_string() {
                    // Confirm the task is asleep, not just entering.
                    if let Ok(st) = std::fs::read_to_string(&stat_path) {
                        let state = st.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
                        if matches!(state, Some("S") | Some("D")) {
                            return true;
                        }
                    }
                }
            }
            if self.exited() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// Waits for the child to finish and returns its log, with a final
    /// `exit` step (`exit:0`, `exit:N` or `signal:N`).
    pub fn join(mut self) -> Outcome {
        let mut data = Vec::new();
        let start = Instant::now();
        loop {
            if poll_in(&self.result, 50) {
                match crate::sys::read_once(&self.result, 65536) {
                    Ok(v) if v.is_empty() => break,
                    Ok(v) => {
                        data.extend_from_slice(&v);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            if self.exited() && !poll_in(&self.result, 0) {
                break;
            }
            if start.elapsed() > PARENT_WAIT {
                // SAFETY: `pid` is our own, not yet reaped child.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                break;
            }
        }
        let mut o = Outcome::decode(&data);
        let st = match self.status {
            Some(st) => st,
            None => {
                let mut st = 0;
                // SAFETY: `st` is writable; `pid` is our own child.
                unsafe { libc::waitpid(self.pid, &mut st, 0) };
                st
            }
        };
        let status = if libc::WIFEXITED(st) {
            format!("exit:{}", libc::WEXITSTATUS(st))
        } else if libc::WIFSIGNALED(st) {
            format!("signal:{}", libc::WTERMSIG(st))
        } else {
            format!("status:{st}")
        };
        o.raw("exit", status);
        self.status = Some(st);
        o
    }

    /// The shared ordering log so far (events from both processes in the
    /// order they were written), read without blocking.
    pub fn order(&self) -> Vec<String> {
        let mut data = Vec::new();
        while poll_in(&self.log_r, 0) {
            match crate::sys::read_once(&self.log_r, 4096) {
                Ok(v) if !v.is_empty() => data.extend_from_slice(&v),
                _ => break,
            }
        }
        String::from_utf8_lossy(&data).lines().map(str::to_owned).collect()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() && !self.exited() {
            // SAFETY: `pid` is our own, not yet reaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let mut st = 0;
            // SAFETY: as above; reaps it.
            unsafe { libc::waitpid(self.pid, &mut st, 0) };
        }
    }
}

fn set_creds(c: &Creds) -> io::Result<()> {
    // Raw system calls: they change only the calling thread, which after
    // fork() is the whole process; glibc's all-threads machinery is not
    // needed (and not safe to rely on in a forked child).
    // SAFETY: `groups` points to `len` gid_t values.
    let r = unsafe { libc::syscall(libc::SYS_setgroups, c.groups.len(), c.groups.as_ptr()) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain system call with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_setresgid, c.gid, c.gid, c.gid) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain system call with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_setresuid, c.uid, c.uid, c.uid) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Forks a child that (optionally) switches to `creds` and runs `f`.
pub fn spawn<F>(creds: Option<&Creds>, f: F) -> io::Result<Child>
where
    F: FnOnce(&Chan, &mut Outcome),
{
    let (to_child_r, to_child_w) = pipe()?;
    let (from_child_r, from_child_w) = pipe()?;
    let (result_r, result_w) = pipe()?;
    let (log_r, log_w) = pipe()?;
    // Copy of the log write end for the child (the parent keeps its own).
    let child_log = log_w.try_clone()?;

    // SAFETY: fork has no memory-safety preconditions; the child below
    // only runs the case closure (system calls and allocation, which glibc
    // makes fork-safe) and leaves through `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // Child.
        drop(to_child_w);
        drop(from_child_r);
        drop(result_r);
        drop(log_r);
        drop(log_w);
        // SAFETY: alarm cannot fail; SIGALRM's default action ends a hung
        // child.
        unsafe { libc::alarm(CHILD_ALARM_SECS) };
        let chan = Chan { rx: to_child_r, tx: from_child_w, log: child_log };
        let mut o = Outcome::new();
        let ok = match creds {
            Some(c) => match set_creds(c) {
                Ok(()) => true,
                Err(e) => {
                    o.raw("set credentials", format!("err:{}", crate::recorder::error_name(&e)));
                    false
                }
            },
            None => true,
        };
        if ok {
            let r = catch_unwind(AssertUnwindSafe(|| f(&chan, &mut o)));
            if let Err(p) = r {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                o.raw("panic", msg);
            }
        }
        let _ = write_all(&result_w, &o.encode());
        // SAFETY: leaves the child at once, without running the parent's
        // destructors or atexit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(to_child_r);
    drop(from_child_w);
    drop(result_w);
    drop(child_log);
    Ok(Child { pid, tx: to_child_w, rx: from_child_r, result: result_r, log_r, log_w, status: None })
}
