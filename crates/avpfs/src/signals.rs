//! Process-wide start-up settings: termination signals and resource limits.

use std::io;
use std::thread;

use avpfs_sys::process;
use avpfs_sys::signal::{self, MaskHow, SigSet};
use log::info;

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and the threads
/// it starts afterwards); returns the set. Called first thing at start-up, so
/// that a signal that comes before [`on_termination`] waits for it (stays
/// pending) instead of killing the daemon half set up, its socket file left
/// behind.
pub fn block_termination_signals() -> io::Result<SigSet> {
    let set = SigSet::of(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
    // Threads spawned afterwards inherit the mask.
    signal::thread_mask(MaskHow::Block, &set)?;
    Ok(set)
}

/// Blocks SIGINT, SIGTERM and SIGHUP in every thread and starts a thread that
/// waits for them (those that came since [`block_termination_signals`]
/// included): SIGINT and SIGTERM run `stop` (unmount, or stop the
/// vhost-user daemon), so the workers end cleanly; SIGHUP runs `reload`
/// each time. Call before starting any other thread.
pub fn on_signals(stop: impl FnOnce() + Send + 'static, reload: impl Fn() + Send + 'static) -> io::Result<()> {
    let set = block_termination_signals()?;
    let mut stop = Some(stop);
    thread::Builder::new().name("signals".into()).spawn(move || loop {
        match signal::sigwait(&set) {
            Ok(libc::SIGHUP) => {
                info!("SIGHUP: reloading");
                reload();
            }
            Ok(sig) => {
                info!("signal {sig}: stopping");
                if let Some(stop) = stop.take() {
                    stop();
                }
                return;
            }
            Err(_) => {}
        }
    })?;
    Ok(())
}

/// Sets RLIMIT_NOFILE to `limit`, or raises the soft limit to the hard limit.
pub fn raise_nofile_limit(limit: Option<u64>) -> io::Result<()> {
    let mut rl = process::getrlimit(libc::RLIMIT_NOFILE)?;
    match limit {
        Some(n) => {
            rl.rlim_cur = n;
            rl.rlim_max = rl.rlim_max.max(n);
        }
        None => rl.rlim_cur = rl.rlim_max.min(1_000_000),
    }
    process::setrlimit(libc::RLIMIT_NOFILE, &rl)
}
