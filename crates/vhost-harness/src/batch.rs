//! Several requests in flight on one queue, as a guest driver keeps them:
//! chains are made available with one kick for the lot, and completions are
//! reaped in whatever order the device returns them.
//!
//! [`Pipeline`] is the building block (it is what the benchmarks drive);
//! [`Harness::submit_all`] and [`Harness::wait_all`] are the simple form for
//! tests: submit N chains, then wait for every one.
//!
//! ```no_run
//! use vhost_harness::{Chain, Harness};
//!
//! # fn main() -> Result<(), vhost_harness::Error> {
//! let h = Harness::start("/tmp/avpfs.sock", 2)?;
//! # let chains: Vec<Chain> = Vec::new();
//! let tokens = h.submit_all(1, &chains)?;
//! let written = h.wait_all(&tokens)?;
//! # let _ = written;
//! # Ok(())
//! # }
//! ```

use std::time::{Duration, Instant};

use crate::{Chain, Desc, Error, Harness, Token, F_NEXT, F_WRITE};

/// Chains in flight on one queue of a [`Harness`], submitted with deferred
/// kicks and completed in any order.
///
/// Several pipelines (or a pipeline and [`Harness::wait`]) may share a queue:
/// each only takes its own completions. The fastest use is one pipeline per
/// queue, driven by one thread.
pub struct Pipeline<'h> {
    harness: &'h Harness,
    queue: usize,
    pending: Vec<u16>,
    kick_needed: bool,
    completion_poll: Duration,
}

impl<'h> Pipeline<'h> {
    /// A pipeline on `queue`.
    pub fn new(harness: &'h Harness, queue: usize) -> Result<Self, Error> {
        harness.queue(queue)?;
        Ok(Pipeline { harness, queue, pending: Vec::new(), kick_needed: false, completion_poll: Duration::ZERO })
    }

    /// Makes [`wait_any`](Self::wait_any) poll the call eventfd for up to
    /// `poll` (yielding the CPU between looks) before it sleeps on it; zero
    /// (the default) sleeps at once. A vCPU under KVM behaves alike: it
    /// halt-polls (up to `halt_poll_ns`, 200 µs by default on x86) before it
    /// sleeps, so an interrupt that comes soon does not pay for a thread
    /// wake-up. It polls for the interrupt, not the used ring: a guest learns
    /// of replies when the device signals, so a device that holds back its
    /// signal holds back the replies.
    pub fn poll_for_completions(&mut self, poll: Duration) {
        self.completion_poll = poll;
    }

    /// The queue this pipeline submits to.
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// Number of chains submitted and not yet returned by [`wait_any`](Self::wait_any).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Makes the chain `descs` available (see [`Harness::submit_raw`] for
    /// the meaning of `next`); the device is kicked at the next
    /// [`flush`](Self::flush) or [`wait_any`](Self::wait_any), if it asked for it.
    pub fn push_raw(&mut self, descs: &[Desc]) -> Result<Token, Error> {
        let q = self.harness.queue(self.queue)?;
        let mem = self.harness.mem();
        let mut driver = q.driver.lock().unwrap_or_else(|e| e.into_inner());
        let head = driver.place(&mem, descs)?;
        if driver.publish(&mem, head)? {
            self.kick_needed = true;
        }
        self.pending.push(head);
        Ok(Token { queue: self.queue, head })
    }

    /// Makes a direct chain of `readable` then `writable` buffers available
    /// (at most 16 descriptors; see [`push_raw`](Self::push_raw)).
    pub fn push_buffers(&mut self, readable: &[(u64, u32)], writable: &[(u64, u32)]) -> Result<Token, Error> {
        const MAX: usize = 16;
        let n = readable.len() + writable.len();
        if n == 0 || n > MAX {
            return Err(Error::Backend(format!("a pipeline chain has 1 to {MAX} buffers, not {n}")));
        }
        let mut descs = [Desc::default(); MAX];
        let bufs = readable.iter().map(|&(a, l)| (a, l, 0)).chain(writable.iter().map(|&(a, l)| (a, l, F_WRITE)));
        for (i, (addr, len, flags)) in bufs.enumerate() {
            let last = i + 1 == n;
            descs[i] = Desc {
                addr,
                len,
                flags: if last { flags } else { flags | F_NEXT },
                next: if last { 0 } else { i as u16 + 1 },
            };
        }
        self.push_raw(&descs[..n])
    }

    /// Makes `chain` available (direct chains only).
    pub fn push(&mut self, chain: &Chain) -> Result<Token, Error> {
        if chain.indirect {
            return Err(Error::Backend("Pipeline::push takes direct chains; use Harness::submit".into()));
        }
        let r: Vec<(u64, u32)> = chain.readable.iter().map(|&(a, l)| (a.0, l)).collect();
        let w: Vec<(u64, u32)> = chain.writable.iter().map(|&(a, l)| (a.0, l)).collect();
        self.push_buffers(&r, &w)
    }

    /// Kicks the device if a chain made available since the last kick asked for it.
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.kick_needed {
            self.harness.queue(self.queue)?.kick()?;
            self.kick_needed = false;
        }
        Ok(())
    }

    /// Kicks the device if needed, then blocks until at least one chain of
    /// this pipeline is returned; appends every returned chain (token and the
    /// number of bytes the device wrote) to `done`. Returns at once when
    /// nothing is in flight. See [`poll_for_completions`](Self::poll_for_completions).
    pub fn wait_any(&mut self, done: &mut Vec<(Token, u32)>) -> Result<(), Error> {
        self.flush()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let q = self.harness.queue(self.queue)?;
        let timeout = self.harness.timeout;
        let start = Instant::now();
        let deadline = start + timeout;
        let poll_until = start + self.completion_poll;
        // The used ring is read on entry (as a driver looks once more after
        // turning interrupts back on) and after each signal.
        let mut look = true;
        loop {
            let before = done.len();
            if look {
                let mem = self.harness.mem();
                let mut driver = q.driver.lock().unwrap_or_else(|e| e.into_inner());
                driver.reap(&mem)?;
                let queue = self.queue;
                self.pending.retain(|&head| match driver.take_completed(head) {
                    Some(len) => {
                        done.push((Token { queue, head }, len));
                        false
                    }
                    None => true,
                });
            }
            if done.len() > before {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout { queue: self.queue, timeout });
            }
            if now < poll_until {
                look = q.wait_signal(Duration::ZERO)?;
                if !look {
                    // Yield rather than spin: a backend thread waiting for
                    // this CPU gets it.
                    std::thread::yield_now();
                }
                continue;
            }
            // After a sleep the ring is read even without a signal (a
            // timeout slice): a lost signal shows as slowness, not a hang.
            q.wait_signal((deadline - now).min(Duration::from_millis(20)))?;
            look = true;
        }
    }

    /// Waits until every chain in flight is returned; appends them to `done`.
    pub fn drain(&mut self, done: &mut Vec<(Token, u32)>) -> Result<(), Error> {
        while !self.pending.is_empty() {
            self.wait_any(done)?;
        }
        Ok(())
    }
}

impl Token {
    /// The queue the chain was submitted to.
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// The chain's head descriptor index (unique among the chains in flight on its queue).
    pub fn head(&self) -> u16 {
        self.head
    }
}

impl Harness {
    /// A [`Pipeline`] on `queue`.
    pub fn pipeline(&self, queue: usize) -> Result<Pipeline<'_>, Error> {
        Pipeline::new(self, queue)
    }

    /// Makes every chain available on `queue` with at most one kick; returns
    /// their tokens in order (for [`wait_all`](Self::wait_all)).
    pub fn submit_all(&self, queue: usize, chains: &[Chain]) -> Result<Vec<Token>, Error> {
        let mut p = self.pipeline(queue)?;
        let tokens = chains.iter().map(|c| p.push(c)).collect::<Result<Vec<_>, _>>()?;
        p.flush()?;
        Ok(tokens)
    }

    /// Waits for every token; returns the bytes the device wrote for each, in order.
    pub fn wait_all(&self, tokens: &[Token]) -> Result<Vec<u32>, Error> {
        tokens.iter().map(|&t| self.wait(t)).collect()
    }
}
