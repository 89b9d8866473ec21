//! Per-session request statistics: for each opcode, how many requests,
//! errors by errno, bytes in and out, and a latency histogram. Each thread
//! that serves the session counts in a shard of its own, with plain loads
//! and stores (no locked instruction), so that counting costs two reads of
//! the time-stamp counter ([`avpfs_sys::clock`]) and a few cache-local
//! writes per request; [`Stats::set_enabled`] turns it off (the daemon's
//! `--stats false`). A [`StatsSnapshot`] is a consistent-enough copy for the
//! control socket and the metrics: every counter is read once, in any order.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fuse_abi::opcode;

/// Opcodes 0..OPCODE_SLOTS are counted each on their own; others (and
/// CUSE_INIT) in the last slot.
pub const OPCODE_SLOTS: usize = 64;
/// errno values 1..ERRNO_SLOTS are counted each; others in slot 0.
const ERRNO_SLOTS: usize = 134;

/// Upper bounds of the latency histogram's buckets, in microseconds: powers
/// of two from 1 µs to about 1 s (the last bucket, `+Inf`, takes the rest).
pub const LATENCY_BOUNDS_US: [u64; 21] = {
    let mut b = [0u64; 21];
    let mut i = 0;
    while i < 21 {
        b[i] = 1 << i;
        i += 1;
    }
    b
};
const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// One opcode's counters; its request count is the sum of its buckets.
#[derive(Debug, Default)]
struct OpCounters {
    errors: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    latency_ns: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

/// Adds `v` to a counter only its own thread writes: a load and a store,
/// no locked instruction; readers see each store whole.
#[inline]
fn bump(c: &AtomicU64, v: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

/// The counters one thread writes.
#[derive(Debug)]
struct Shard {
    ops: Box<[OpCounters]>,
}

impl Shard {
    fn new() -> Self {
        Shard { ops: (0..OPCODE_SLOTS).map(|_| OpCounters::default()).collect() }
    }
}

/// Stats ids, to find a thread's shard of a given [`Stats`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's shards, by the id of their [`Stats`].
    static SHARDS: RefCell<Vec<(u64, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

/// The statistics of one session.
#[derive(Debug)]
pub struct Stats {
    id: u64,
    enabled: AtomicBool,
    /// One per thread that counted.
    shards: Mutex<Vec<Arc<Shard>>>,
    /// (opcode slot, errno slot) counts, made at the first error.
    errnos: OnceLock<Box<[AtomicU64]>>,
}

impl Default for Stats {
    /// Counting on, from zero (the request clock is calibrated here, once
    /// per process).
    fn default() -> Self {
        avpfs_sys::clock::calibrate();
        Stats {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            enabled: AtomicBool::new(true),
            shards: Mutex::new(Vec::new()),
            errnos: OnceLock::new(),
        }
    }
}

fn slot(op: u32) -> usize {
    (op as usize).min(OPCODE_SLOTS - 1)
}

/// The bucket of `latency`: the first whose bound (2^i µs) it does not
/// exceed, found from the bit length of the microseconds.
fn bucket(latency: Duration) -> usize {
    let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
    if us <= 1 {
        return 0;
    }
    // ceil(log2(us)) for us >= 2.
    ((u64::BITS - (us - 1).leading_zeros()) as usize).min(BUCKETS - 1)
}

impl Stats {
    /// Whether requests are counted.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Turns counting on or off (what was counted stays).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Runs `f` on the calling thread's shard (made at its first request).
    #[inline]
    fn with_shard(&self, f: impl FnOnce(&Shard)) {
        SHARDS.with(|shards| {
            let mut shards = shards.borrow_mut();
            if let Some((_, shard)) = shards.iter().find(|(id, _)| *id == self.id) {
                return f(shard);
            }
            let shard = Arc::new(Shard::new());
            self.shards.lock().unwrap_or_else(|e| e.into_inner()).push(shard.clone());
            f(&shard);
            shards.push((self.id, shard));
        })
    }

    /// Counts one request of `op`: `errno` 0 for success.
    #[inline]
    pub fn record(&self, op: u32, errno: i32, bytes_in: usize, bytes_out: usize, latency: Duration) {
        let s = slot(op);
        self.with_shard(|shard| {
            let c = &shard.ops[s];
            bump(&c.bytes_in, bytes_in as u64);
            bump(&c.bytes_out, bytes_out as u64);
            bump(&c.latency_ns, latency.as_nanos().min(u128::from(u64::MAX)) as u64);
            bump(&c.buckets[bucket(latency)], 1);
            if errno != 0 {
                bump(&c.errors, 1);
            }
        });
        if errno != 0 {
            let e = if (1..ERRNO_SLOTS as i32).contains(&errno) { errno as usize } else { 0 };
            let table =
                self.errnos.get_or_init(|| (0..OPCODE_SLOTS * ERRNO_SLOTS).map(|_| AtomicU64::new(0)).collect());
            table[s * ERRNO_SLOTS + e].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A copy of the counters (every thread's, added up), the opcodes
    /// that saw requests only.
    pub fn snapshot(&self) -> StatsSnapshot {
        let shards: Vec<Arc<Shard>> = self.shards.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut ops = Vec::new();
        for s in 0..OPCODE_SLOTS {
            let sum = |f: &dyn Fn(&OpCounters) -> &AtomicU64| -> u64 {
                shards.iter().map(|sh| f(&sh.ops[s]).load(Ordering::Relaxed)).fold(0, u64::wrapping_add)
            };
            let buckets: Vec<u64> = (0..BUCKETS).map(|b| sum(&|c| &c.buckets[b])).collect();
            let requests = buckets.iter().sum();
            if requests == 0 {
                continue;
            }
            let errnos = match self.errnos.get() {
                Some(t) => (0..ERRNO_SLOTS)
                    .filter_map(|e| {
                        let n = t[s * ERRNO_SLOTS + e].load(Ordering::Relaxed);
                        (n > 0).then_some((e as i32, n))
                    })
                    .collect(),
                None => Vec::new(),
            };
            ops.push(OpSnapshot {
                opcode: s as u32,
                name: if s == OPCODE_SLOTS - 1 { "OTHER" } else { opcode::name(s as u32) },
                requests,
                errors: sum(&|c| &c.errors),
                errnos,
                bytes_in: sum(&|c| &c.bytes_in),
                bytes_out: sum(&|c| &c.bytes_out),
                latency_ns: sum(&|c| &c.latency_ns),
                buckets,
            });
        }
        StatsSnapshot { ops }
    }
}

/// One opcode's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSnapshot {
    /// The opcode (`OPCODE_SLOTS - 1`: every other opcode).
    pub opcode: u32,
    /// Its name (`LOOKUP`).
    pub name: &'static str,
    /// Requests served.
    pub requests: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Errors by errno (0: an errno outside the table), only those seen.
    pub errnos: Vec<(i32, u64)>,
    /// Request bytes (headers included).
    pub bytes_in: u64,
    /// Reply bytes (headers included).
    pub bytes_out: u64,
    /// Total time spent serving them, in nanoseconds.
    pub latency_ns: u64,
    /// Requests per latency bucket (not cumulative): one per bound of
    /// [`LATENCY_BOUNDS_US`], then the rest.
    pub buckets: Vec<u64>,
}

/// A copy of a session's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// The opcodes that saw requests, by opcode.
    pub ops: Vec<OpSnapshot>,
}

impl StatsSnapshot {
    /// The counters of `op`, if it saw requests.
    pub fn op(&self, op: u32) -> Option<&OpSnapshot> {
        self.ops.iter().find(|o| o.opcode == slot(op) as u32)
    }

    /// Requests of every opcode.
    pub fn requests(&self) -> u64 {
        self.ops.iter().map(|o| o.requests).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_errors_bytes_and_latency_per_opcode() {
        let s = Stats::default();
        s.record(opcode::LOOKUP, 0, 50, 144, Duration::from_micros(3));
        s.record(opcode::LOOKUP, libc::ENOENT, 50, 16, Duration::from_micros(40));
        s.record(opcode::READ, 0, 80, 4112, Duration::from_millis(2));
        s.record(9999, libc::ENOSYS, 40, 16, Duration::from_secs(5));
        let snap = s.snapshot();
        let l = snap.op(opcode::LOOKUP).unwrap();
        assert_eq!((l.requests, l.errors, l.bytes_in, l.bytes_out), (2, 1, 100, 160));
        assert_eq!(l.errnos, vec![(libc::ENOENT, 1)]);
        assert_eq!(l.latency_ns, 43_000);
        // 3 µs falls in the 4 µs bucket, 40 µs in the 64 µs one.
        assert_eq!(l.buckets[2], 1);
        assert_eq!(l.buckets[6], 1);
        assert_eq!(l.buckets.iter().sum::<u64>(), 2);
        assert_eq!(snap.op(opcode::READ).unwrap().buckets[11], 1, "2 ms: the 2048 µs bucket");
        let other = snap.op(9999).unwrap();
        assert_eq!((other.name, other.requests), ("OTHER", 1));
        assert_eq!(other.buckets[BUCKETS - 1], 1, "5 s: past the last bound");
        assert_eq!(snap.requests(), 4);
        assert!(snap.op(opcode::WRITE).is_none());
    }

    #[test]
    fn buckets_are_the_first_bound_not_exceeded() {
        for (us, b) in [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (1024, 10), (1025, 11), (1 << 20, 20)] {
            assert_eq!(bucket(Duration::from_micros(us)), b, "{us} µs");
            assert!(us <= LATENCY_BOUNDS_US[b]);
        }
        assert_eq!(bucket(Duration::from_micros((1 << 20) + 1)), BUCKETS - 1);
        assert_eq!(bucket(Duration::MAX), BUCKETS - 1);
    }

    #[test]
    fn each_thread_counts_in_its_own_shard_and_snapshots_add_them_up() {
        let s = Arc::new(Stats::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        s.record(opcode::GETATTR, 0, 40, 120, Duration::from_micros(2));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let g = s.snapshot().op(opcode::GETATTR).cloned().unwrap();
        assert_eq!((g.requests, g.bytes_in, g.bytes_out), (40_000, 1_600_000, 4_800_000));
        assert_eq!(s.shards.lock().unwrap().len(), 4);
        // A second Stats on the same thread gets a shard of its own.
        let other = Stats::default();
        other.record(opcode::GETATTR, 0, 1, 1, Duration::ZERO);
        s.record(opcode::GETATTR, 0, 1, 1, Duration::ZERO);
        assert_eq!(other.snapshot().requests(), 1);
        assert_eq!(s.snapshot().requests(), 40_001);
    }

    #[test]
    fn errnos_outside_the_table_share_slot_zero() {
        let s = Stats::default();
        s.record(opcode::GETATTR, 500, 40, 16, Duration::ZERO);
        s.record(opcode::GETATTR, -3, 40, 16, Duration::ZERO);
        assert_eq!(s.snapshot().op(opcode::GETATTR).unwrap().errnos, vec![(0, 2)]);
    }
}
