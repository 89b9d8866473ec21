//! Signals: masks ([`SigSet`], [`thread_mask`]), [`sigwait`], handlers, and
//! signalling one thread of this process ([`Thread`]).
//!
//! Every function here but [`install_sigsys_reporter`] is allocation-free
//! and may be used in a child after `fork` (async-signal-safe); the SIGSYS
//! handler itself is async-signal-safe.

use std::fmt;
use std::io;
use std::sync::OnceLock;

use crate::fmt::{decimal, U64_DIGITS};
use crate::util::{cvt, err};

/// A set of signals (`sigset_t`).
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl SigSet {
    /// No signal.
    pub fn empty() -> Self {
        // SAFETY: an all-zero sigset_t is a valid value for sigemptyset to fill.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t owned by this frame.
        unsafe { libc::sigemptyset(&mut set) };
        SigSet(set)
    }

    /// The signals in `signals`.
    pub fn of(signals: &[libc::c_int]) -> Self {
        let mut set = Self::empty();
        for &s in signals {
            set.add(s);
        }
        set
    }

    /// Adds `sig` (a number that is not a signal is ignored).
    pub fn add(&mut self, sig: libc::c_int) -> &mut Self {
        // SAFETY: `self.0` is a valid sigset_t; sigaddset checks the number.
        unsafe { libc::sigaddset(&mut self.0, sig) };
        self
    }

    /// Whether `sig` is in the set.
    pub fn contains(&self, sig: libc::c_int) -> bool {
        // SAFETY: `self.0` is a valid sigset_t; sigismember only reads it.
        unsafe { libc::sigismember(&self.0, sig) == 1 }
    }
}

impl fmt::Debug for SigSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries((1..=64).filter(|&s| self.contains(s))).finish()
    }
}

/// How [`thread_mask`] changes the mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskHow {
    /// Adds the set (`SIG_BLOCK`).
    Block,
    /// Removes the set (`SIG_UNBLOCK`).
    Unblock,
    /// Replaces the mask by the set (`SIG_SETMASK`).
    Set,
}

/// `pthread_sigmask(3)`: changes the calling thread's signal mask (threads
/// it starts afterwards inherit it); returns the mask before.
pub fn thread_mask(how: MaskHow, set: &SigSet) -> io::Result<SigSet> {
    let how = match how {
        MaskHow::Block => libc::SIG_BLOCK,
        MaskHow::Unblock => libc::SIG_UNBLOCK,
        MaskHow::Set => libc::SIG_SETMASK,
    };
    let mut old = SigSet::empty();
    // SAFETY: both pointers are valid sigset_t for the call.
    let rc = unsafe { libc::pthread_sigmask(how, &set.0, &mut old.0) };
    if rc != 0 {
        return Err(err(rc));
    }
    Ok(old)
}

/// `sigwait(3)`: waits for one of the signals of `set` (which the caller
/// has blocked) and returns it.
pub fn sigwait(set: &SigSet) -> io::Result<libc::c_int> {
    let mut sig = 0;
    // SAFETY: `set` and `sig` are valid for the call.
    let rc = unsafe { libc::sigwait(&set.0, &mut sig) };
    if rc != 0 {
        return Err(err(rc));
    }
    Ok(sig)
}

extern "C" fn do_nothing(_: libc::c_int) {}

/// Installs, for `sig`, a handler that does nothing, without `SA_RESTART`:
/// a system call that the signal interrupts in the thread that gets it
/// returns `EINTR` (to wake a thread up, see [`Thread::signal`]).
pub fn install_wakeup_handler(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: an all-zero `sigaction` is a valid value to fill in.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = do_nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
    sa.sa_flags = 0; // no SA_RESTART: blocking calls return EINTR
    sa.sa_mask = SigSet::empty().0;
    // SAFETY: the handler is async-signal-safe (it does nothing) and `sa` is
    // fully initialised; the old action is not needed.
    cvt(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) })?;
    Ok(())
}

/// The message of the SIGSYS reporter: before and after the number.
static SIGSYS_MESSAGE: OnceLock<(&'static str, &'static str)> = OnceLock::new();

/// Offset of `si_syscall` in `siginfo_t` for SIGSYS on x86_64 and the other
/// 64-bit architectures (`si_signo`, `si_errno`, `si_code`, padding,
/// `_call_addr`).
const SI_SYSCALL_OFFSET: usize = 24;

/// Puts `prefix`, `nr` in decimal and `suffix` in `buf`, cut to its size;
/// returns the length. Allocation-free (async-signal-safe).
fn compose_report(buf: &mut [u8; 256], prefix: &[u8], nr: i64, suffix: &[u8]) -> usize {
    let mut digits = [0u8; U64_DIGITS];
    let mut len = 0;
    for part in [prefix, decimal(nr.unsigned_abs(), &mut digits), suffix] {
        let n = part.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&part[..n]);
        len += n;
    }
    len
}

/// Writes the report of [`compose_report`] to stderr in one `write`
/// (async-signal-safe).
fn write_report(prefix: &[u8], nr: i64, suffix: &[u8]) {
    let mut buf = [0u8; 256];
    let len = compose_report(&mut buf, prefix, nr, suffix);
    // SAFETY: `buf[..len]` is initialised; write(2) is async-signal-safe.
    unsafe { libc::write(libc::STDERR_FILENO, buf.as_ptr().cast(), len) };
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t (SA_SIGINFO); for SIGSYS
    // from seccomp, an int at this offset holds the system call number.
    let nr = unsafe { info.cast::<u8>().add(SI_SYSCALL_OFFSET).cast::<libc::c_int>().read_unaligned() };
    let (prefix, suffix) = SIGSYS_MESSAGE.get().copied().unwrap_or(("system call ", " is not allowed\n"));
    write_report(prefix.as_bytes(), nr.into(), suffix.as_bytes());
    // Die of SIGSYS as without a handler: the default action is restored and
    // the signal sent again; it is delivered when this handler returns.
    // SAFETY: signal(2) and raise(3) are async-signal-safe (they make the
    // rt_sigaction, rt_sigprocmask, getpid, gettid and tgkill calls).
    unsafe {
        libc::signal(libc::SIGSYS, libc::SIG_DFL);
        libc::raise(libc::SIGSYS);
    }
}

/// Installs a SIGSYS handler (for seccomp's `SECCOMP_RET_TRAP`) that writes
/// `prefix`, the number of the system call refused and `suffix` to stderr,
/// then lets the process die of SIGSYS. The handler allocates nothing. The
/// message of the first call is kept for the life of the process.
pub fn install_sigsys_reporter(prefix: &'static str, suffix: &'static str) -> io::Result<()> {
    let _ = SIGSYS_MESSAGE.set((prefix, suffix));
    // SAFETY: an all-zero sigaction is a valid value to fill in.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigsys as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
    sa.sa_flags = libc::SA_SIGINFO;
    sa.sa_mask = SigSet::empty().0;
    // SAFETY: the handler only does async-signal-safe work; `sa` is initialised.
    cvt(unsafe { libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) })?;
    Ok(())
}

/// A thread of this process, by its kernel thread id, to send signals to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thread {
    pid: libc::pid_t,
    tid: libc::pid_t,
}

impl Thread {
    /// The calling thread (`getpid`, `gettid`).
    pub fn current() -> Self {
        // SAFETY: getpid and gettid take no arguments.
        unsafe { Thread { pid: libc::getpid(), tid: libc::syscall(libc::SYS_gettid) as libc::pid_t } }
    }

    /// `tgkill(2)`: sends `sig` to this thread, only if it is still a thread
    /// of this process (`ESRCH` when it has ended). The caller makes sure it
    /// has not ended, or its id could have gone to a new thread.
    pub fn signal(&self, sig: libc::c_int) -> io::Result<()> {
        // SAFETY: tgkill takes integers only.
        cvt(unsafe { libc::syscall(libc::SYS_tgkill, self.pid, self.tid, sig) })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn sets_and_masks() {
        let set = SigSet::of(&[libc::SIGUSR1, libc::SIGHUP]);
        assert!(set.contains(libc::SIGUSR1) && set.contains(libc::SIGHUP) && !set.contains(libc::SIGTERM));
        assert_eq!(format!("{set:?}"), format!("{{{}, {}}}", libc::SIGHUP, libc::SIGUSR1));
        std::thread::spawn(move || {
            let old = thread_mask(MaskHow::Block, &set).unwrap();
            assert!(!old.contains(libc::SIGUSR1));
            let now = thread_mask(MaskHow::Unblock, &SigSet::of(&[libc::SIGHUP])).unwrap();
            assert!(now.contains(libc::SIGUSR1) && now.contains(libc::SIGHUP));
            // A blocked signal sent to this thread waits for sigwait.
            Thread::current().signal(libc::SIGUSR1).unwrap();
            assert_eq!(sigwait(&set).unwrap(), libc::SIGUSR1);
            let before = thread_mask(MaskHow::Set, &old).unwrap();
            assert!(before.contains(libc::SIGUSR1) && !before.contains(libc::SIGHUP));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_wakeup_signal_interrupts_a_blocked_read() {
        const SIG: libc::c_int = libc::SIGUSR2;
        install_wakeup_handler(SIG).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let done = Arc::new(AtomicBool::new(false));
        let done2 = done.clone();
        let (mut a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            tx.send(Thread::current()).unwrap();
            let r = std::io::Read::read(&mut a, &mut [0u8; 1]);
            done2.store(true, Ordering::Release);
            r.unwrap_err().raw_os_error()
        });
        let thread = rx.recv().unwrap();
        // The thread may not be inside read() yet: signal until it returns.
        while !done.load(Ordering::Acquire) {
            thread.signal(SIG).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(t.join().unwrap(), Some(libc::EINTR));
    }

    #[test]
    fn the_sigsys_reporter_writes_the_message_and_dies() {
        let name = "signal::tests::the_sigsys_reporter_writes_the_message_and_dies";
        if crate::test_child::is(name) {
            install_sigsys_reporter("avpfs-sys test: call ", " refused\n").unwrap();
            // A SIGSYS not from seccomp: the number read is whatever the
            // siginfo holds there (0 for kill).
            crate::process::kill(std::process::id() as libc::pid_t, libc::SIGSYS).unwrap();
            std::thread::sleep(std::time::Duration::from_secs(5));
            std::process::exit(3);
        }
        let out = crate::test_child::run(name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("avpfs-sys test: call ") && stderr.contains(" refused\n"), "{stderr}");
        assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{:?}", out.status);
    }

    #[test]
    fn reports_are_composed_and_cut_to_the_buffer() {
        let mut buf = [0u8; 256];
        let n = compose_report(&mut buf, b"call ", 231, b" refused\n");
        assert_eq!(&buf[..n], b"call 231 refused\n");
        let n = compose_report(&mut buf, b"", i64::MIN, b"");
        assert_eq!(&buf[..n], b"9223372036854775808");
        let n = compose_report(&mut buf, &[b'x'; 250], 1234567890, b"\n");
        assert_eq!(n, 256);
        assert_eq!(&buf[250..], b"123456");
    }
}
