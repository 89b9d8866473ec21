//! Process-wide start-up settings: termination signals and resource limits.

use std::io;
use std::thread;

use log::info;

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and the threads
/// it starts afterwards); returns the set. Called first thing at start-up, so
/// that a signal that comes before [`on_termination`] waits for it (stays
/// pending) instead of killing the daemon half set up, its socket file left
/// behind.
pub fn block_termination_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: an all-zero sigset_t is a valid value for sigemptyset to fill.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
    }
    // SAFETY: `set` is initialised; threads spawned afterwards inherit the mask.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(set)
}

/// Blocks SIGINT, SIGTERM and SIGHUP in every thread and starts a thread that
/// waits for them (those that came since [`block_termination_signals`]
/// included) and then runs `stop` (unmount, or stop the vhost-user daemon),
/// so the workers end cleanly. Call before starting any other thread.
pub fn on_termination(stop: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let set = block_termination_signals()?;
    let mut stop = Some(stop);
    thread::Builder::new().name("signals".into()).spawn(move || loop {
        let mut sig = 0;
        // SAFETY: `set` and `sig` are valid for the call.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc == 0 {
            info!("signal {sig}: stopping");
            if let Some(stop) = stop.take() {
                stop();
            }
            return;
        }
    })?;
    Ok(())
}

/// Sets RLIMIT_NOFILE to `limit`, or raises the soft limit to the hard limit.
pub fn raise_nofile_limit(limit: Option<u64>) -> io::Result<()> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `rl` is a valid rlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    match limit {
        Some(n) => {
            rl.rlim_cur = n;
            rl.rlim_max = rl.rlim_max.max(n);
        }
        None => rl.rlim_cur = rl.rlim_max.min(1_000_000),
    }
    // SAFETY: `rl` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
