//! Per-session request statistics: for each opcode, how many requests,
//! errors by errno, bytes in and out, and a latency histogram. Counting is a
//! few relaxed atomic additions and two reads of the time-stamp counter per
//! request ([`avpfs_sys::clock`]); [`Server::set_stats`](crate::Server::set_stats)
//! turns it off. A [`StatsSnapshot`] is a consistent-enough copy for the
//! control socket and the metrics: every counter is read once, in any order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
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

/// The statistics of one session.
#[derive(Debug)]
pub struct Stats {
    enabled: AtomicBool,
    ops: Box<[OpCounters]>,
    /// (opcode slot, errno slot) counts, made at the first error.
    errnos: OnceLock<Box<[AtomicU64]>>,
}

impl Default for Stats {
    /// Counting on, from zero (the request clock is calibrated here, once
    /// per process).
    fn default() -> Self {
        avpfs_sys::clock::calibrate();
        Stats {
            enabled: AtomicBool::new(true),
            ops: (0..OPCODE_SLOTS).map(|_| OpCounters::default()).collect(),
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

    /// Counts one request of `op`: `errno` 0 for success.
    #[inline]
    pub fn record(&self, op: u32, errno: i32, bytes_in: usize, bytes_out: usize, latency: Duration) {
        let s = slot(op);
        let c = &self.ops[s];
        c.bytes_in.fetch_add(bytes_in as u64, Ordering::Relaxed);
        c.bytes_out.fetch_add(bytes_out as u64, Ordering::Relaxed);
        c.latency_ns.fetch_add(latency.as_nanos().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
        c.buckets[bucket(latency)].fetch_add(1, Ordering::Relaxed);
        if errno != 0 {
            c.errors.fetch_add(1, Ordering::Relaxed);
            let e = if (1..ERRNO_SLOTS as i32).contains(&errno) { errno as usize } else { 0 };
            let table =
                self.errnos.get_or_init(|| (0..OPCODE_SLOTS * ERRNO_SLOTS).map(|_| AtomicU64::new(0)).collect());
            table[s * ERRNO_SLOTS + e].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A copy of the counters, the opcodes that saw requests only.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut ops = Vec::new();
        for (s, c) in self.ops.iter().enumerate() {
            let buckets: Vec<u64> = c.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
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
                errors: c.errors.load(Ordering::Relaxed),
                errnos,
                bytes_in: c.bytes_in.load(Ordering::Relaxed),
                bytes_out: c.bytes_out.load(Ordering::Relaxed),
                latency_ns: c.latency_ns.load(Ordering::Relaxed),
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
    fn errnos_outside_the_table_share_slot_zero() {
        let s = Stats::default();
        s.record(opcode::GETATTR, 500, 40, 16, Duration::ZERO);
        s.record(opcode::GETATTR, -3, 40, 16, Duration::ZERO);
        assert_eq!(s.snapshot().op(opcode::GETATTR).unwrap().errnos, vec![(0, 2)]);
    }
}
