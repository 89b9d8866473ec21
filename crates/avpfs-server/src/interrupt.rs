//! FUSE_INTERRUPT for requests that block (SETLKW): the worker thread that
//! waits is registered under the request's `unique`; an INTERRUPT sends it a
//! signal whose handler does nothing and is installed without `SA_RESTART`,
//! so the blocking system call returns `EINTR` and the request is answered.

use std::collections::HashMap;
use std::sync::{Mutex, Once};

/// The signal used to interrupt a blocked worker thread.
pub const INTERRUPT_SIGNAL: libc::c_int = libc::SIGUSR2;

extern "C" fn on_interrupt_signal(_: libc::c_int) {}

fn install_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: an all-zero `sigaction` is a valid value to fill in.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_interrupt_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = 0; // no SA_RESTART: blocking calls return EINTR
                         // SAFETY: `sa.sa_mask` is a valid sigset_t owned by this frame.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: the handler is async-signal-safe (it does nothing) and `sa`
        // is fully initialised; the old action is not needed.
        let rc = unsafe { libc::sigaction(INTERRUPT_SIGNAL, &sa, std::ptr::null_mut()) };
        if rc != 0 {
            log::warn!("cannot install the interrupt signal handler: {}", std::io::Error::last_os_error());
        }
    });
}

/// The blocking requests in flight, by `unique`.
#[derive(Debug)]
pub struct Interrupts {
    waiting: Mutex<HashMap<u64, libc::pthread_t>>,
}

/// Keeps a request registered while it blocks; unregisters on drop.
#[derive(Debug)]
pub struct Registration<'a> {
    owner: &'a Interrupts,
    unique: u64,
}

impl Interrupts {
    /// An empty registry; installs the signal handler once per process.
    pub fn new() -> Self {
        install_handler();
        Interrupts { waiting: Mutex::new(HashMap::new()) }
    }

    /// Registers the calling thread as blocked on request `unique`.
    pub fn register(&self, unique: u64) -> Registration<'_> {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.lock().insert(unique, me);
        Registration { owner: self, unique }
    }

    /// Interrupts request `unique` if it is blocked; returns whether it was.
    pub fn interrupt(&self, unique: u64) -> bool {
        let waiting = self.lock();
        match waiting.get(&unique) {
            Some(&thread) => {
                // SAFETY: `thread` is a live thread: it stays registered (and
                // so alive, inside the blocking call) while we hold the lock,
                // because Registration::drop takes the same lock.
                unsafe { libc::pthread_kill(thread, INTERRUPT_SIGNAL) };
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, libc::pthread_t>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for Interrupts {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.owner.lock().remove(&self.unique);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn interrupt_wakes_a_blocked_read_with_eintr() {
        let irq = Arc::new(Interrupts::new());
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let irq2 = irq.clone();
        let reader = fds[0];
        let t = std::thread::spawn(move || {
            let _reg = irq2.register(77);
            tx.send(()).unwrap();
            let mut b = [0u8; 1];
            // SAFETY: reading one byte into a valid buffer from our pipe.
            let n = unsafe { libc::read(reader, b.as_mut_ptr().cast(), 1) };
            (n, std::io::Error::last_os_error().raw_os_error())
        });
        rx.recv().unwrap();
        assert!(!irq.interrupt(78));
        // The thread may not be inside read() yet: keep interrupting until it returns.
        while !t.is_finished() {
            irq.interrupt(77);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(t.join().unwrap(), (-1, Some(libc::EINTR)));
        assert!(!irq.interrupt(77), "registration is removed when the request ends");
        // SAFETY: closing our own pipe descriptors.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
