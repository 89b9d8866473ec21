//! FUSE_INTERRUPT for requests that block (SETLKW): the worker thread that
//! waits is registered under the request's `unique`; an INTERRUPT sends it a
//! signal whose handler does nothing and is installed without `SA_RESTART`,
//! so the blocking system call returns `EINTR` and the request is answered.

use std::collections::HashMap;
use std::sync::{Mutex, Once};

use avpfs_sys::signal::{self, Thread};

/// The signal used to interrupt a blocked worker thread.
pub const INTERRUPT_SIGNAL: libc::c_int = libc::SIGUSR2;

fn install_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // A handler that does nothing, without SA_RESTART: blocking calls
        // return EINTR.
        if let Err(e) = signal::install_wakeup_handler(INTERRUPT_SIGNAL) {
            log::warn!("cannot install the interrupt signal handler: {e}");
        }
    });
}

/// The blocking requests in flight, by `unique`.
#[derive(Debug)]
pub struct Interrupts {
    waiting: Mutex<HashMap<u64, Thread>>,
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
        self.lock().insert(unique, Thread::current());
        Registration { owner: self, unique }
    }

    /// Interrupts request `unique` if it is blocked; returns whether it was.
    pub fn interrupt(&self, unique: u64) -> bool {
        let waiting = self.lock();
        match waiting.get(&unique) {
            Some(&thread) => {
                // `thread` is alive: it stays registered (and so alive, inside
                // the blocking call) while we hold the lock, because
                // Registration::drop takes the same lock; so its id is not
                // another thread's.
                let _ = thread.signal(INTERRUPT_SIGNAL);
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Thread>> {
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
        let (mut reader, _writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let irq2 = irq.clone();
        let t = std::thread::spawn(move || {
            let _reg = irq2.register(77);
            tx.send(()).unwrap();
            let mut b = [0u8; 1];
            // One read(2), not retried on EINTR.
            std::io::Read::read(&mut reader, &mut b).map_err(|e| e.raw_os_error())
        });
        rx.recv().unwrap();
        assert!(!irq.interrupt(78));
        // The thread may not be inside read() yet: keep interrupting until it returns.
        while !t.is_finished() {
            irq.interrupt(77);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(t.join().unwrap(), Err(Some(libc::EINTR)));
        assert!(!irq.interrupt(77), "registration is removed when the request ends");
    }
}
