//! A queue worker's helper thread for bulk data requests.
//!
//! A worker that pops a batch holding several large READs (the copies from
//! the host's page cache into guest memory are most of their cost)
//! hands every other one to its helper and serves the rest itself, so that
//! two copies run at once on two CPUs; it then waits for the helper before
//! it signals the guest for the batch. A large READ without another in its
//! batch is split in two halves instead: the helper reads the second while
//! the worker reads the first (on this machine, a 1 MiB read from the page
//! cache took 85–91 µs on one thread and 36 µs as two halves on two). The
//! worker does this only while fewer queue workers are busy than the host
//! has CPUs: with one busy worker per CPU, a helper would only take CPU
//! time from another queue.
//!
//! Each worker thread has at most one helper, started the first time it is
//! needed and ended when the worker thread ends (the job channel closes).
//! Between jobs the helper watches its channel for a short while before it
//! sleeps, so that the next batch's job does not pay for a wake-up.

use std::cell::RefCell;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use log::warn;

/// A piece of a batch, run on the helper thread.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long the helper looks for its next job before it sleeps.
const WATCH_JOBS: Duration = Duration::from_micros(50);
/// How long the worker looks for the helper's "done" before it sleeps (the
/// two halves of a batch take about as long).
const WATCH_DONE: Duration = Duration::from_micros(200);

/// The helper thread of one worker thread.
struct BulkHelper {
    jobs: Sender<Job>,
    done: Receiver<()>,
}

impl BulkHelper {
    fn start(name: String) -> std::io::Result<BulkHelper> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new().name(name).spawn(move || {
            while let Some(job) = recv_watching(&job_rx, WATCH_JOBS) {
                job();
                if done_tx.send(()).is_err() {
                    break;
                }
            }
        })?;
        Ok(BulkHelper { jobs, done })
    }
}

/// The next message on `rx`: looks for one for `watch` (yielding the CPU
/// between looks), then sleeps until one comes; `None` once the other side
/// is gone (even while asleep).
fn recv_watching<T>(rx: &Receiver<T>, watch: Duration) -> Option<T> {
    let until = Instant::now() + watch;
    loop {
        match rx.try_recv() {
            Ok(message) => return Some(message),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if Instant::now() < until => std::thread::yield_now(),
            Err(TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

/// The name of the helper thread of the worker of queue `queue`.
pub(crate) fn thread_name(queue: usize) -> String {
    format!("vq{queue}-bulk")
}

thread_local! {
    static HELPER: RefCell<Option<BulkHelper>> = const { RefCell::new(None) };
}

/// Runs `theirs` on the calling thread's helper (started if need be, named
/// `name`) while the caller runs `ours`, and returns once both are done. If
/// the helper cannot be started or has died, or is already in use by a
/// split that this call is part of, the caller runs both.
pub(crate) fn run_split(name: impl FnOnce() -> String, theirs: Job, ours: impl FnOnce()) {
    HELPER.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            ours();
            theirs();
            return;
        };
        if slot.is_none() {
            match BulkHelper::start(name()) {
                Ok(h) => *slot = Some(h),
                Err(e) => warn!("cannot start a bulk I/O helper thread: {e}; serving the batch alone"),
            }
        }
        let Some(helper) = slot.as_ref() else {
            drop(slot);
            ours();
            theirs();
            return;
        };
        if let Err(mpsc::SendError(job)) = helper.jobs.send(theirs) {
            warn!("the bulk I/O helper thread has ended; serving the batch alone");
            *slot = None;
            drop(slot);
            ours();
            job();
            return;
        }
        // Waits for the helper's job when this scope ends, even if `ours`
        // unwinds: the job may write into memory that the caller frees next.
        let _wait = WaitForJob(helper);
        ours();
    });
}

/// Waits, when dropped, until the helper has finished the job it was sent.
struct WaitForJob<'h>(&'h BulkHelper);

impl Drop for WaitForJob<'_> {
    fn drop(&mut self) {
        // `None`: the helper died mid-job; nothing more will come.
        let _ = recv_watching(&self.0.done, WATCH_DONE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    #[test]
    fn both_halves_run_at_once_on_two_threads() {
        // Each half waits for the other at a barrier: this only returns if
        // they ran at the same time, on different threads.
        let barrier = Arc::new(Barrier::new(2));
        let theirs_thread = Arc::new(std::sync::Mutex::new(None));
        let (b, t) = (barrier.clone(), theirs_thread.clone());
        run_split(
            || "test-helper".into(),
            Box::new(move || {
                b.wait();
                *t.lock().unwrap() = Some(std::thread::current().id());
            }),
            || {
                barrier.wait();
            },
        );
        let theirs = theirs_thread.lock().unwrap().expect("the helper's half ran before run_split returned");
        assert_ne!(theirs, std::thread::current().id());
    }

    #[test]
    fn one_helper_serves_every_batch_of_its_worker() {
        let ran = Arc::new(AtomicUsize::new(0));
        let mut threads = std::collections::HashSet::new();
        for _ in 0..50 {
            let r = ran.clone();
            let (tx, rx) = mpsc::channel();
            run_split(
                || "test-helper".into(),
                Box::new(move || {
                    r.fetch_add(1, Ordering::SeqCst);
                    tx.send(std::thread::current().id()).unwrap();
                }),
                || {},
            );
            // Done means done: the helper's half has finished.
            threads.insert(rx.try_recv().expect("the helper's half finished before run_split returned"));
        }
        assert_eq!(ran.load(Ordering::SeqCst), 50);
        assert_eq!(threads.len(), 1, "a new helper thread per batch");
    }

    #[test]
    fn a_split_inside_a_split_runs_on_the_caller() {
        let inner_threads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let outer = inner_threads.clone();
        run_split(
            || "test-helper".into(),
            Box::new(|| {}),
            move || {
                let t = outer.clone();
                run_split(
                    || "test-helper".into(),
                    Box::new(move || t.lock().unwrap().push(std::thread::current().id())),
                    || outer.lock().unwrap().push(std::thread::current().id()),
                );
            },
        );
        let me = std::thread::current().id();
        assert_eq!(*inner_threads.lock().unwrap(), vec![me, me]);
    }
}
