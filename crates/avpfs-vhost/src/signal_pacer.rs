//! When a queue worker signals the guest in the middle of a batch: the
//! pacing rule of [`SignalPacer`], pure logic over a clock the caller reads.
//!
//! A worker puts each reply in the used ring as soon as it is done, but
//! signals the guest once per batch (when EVENT_IDX says the guest wants
//! it). In a long batch the guest would then see its first replies only at
//! the end, so the worker also signals every [`SIGNAL_INTERVAL`]. Which
//! queues are paced, and that the last reply of a batch is left to the
//! batch's own signal, is the worker's business.

use std::time::{Duration, Instant};

/// The longest a worker serves on after a signal (or after the start of its
/// batch) before it signals the replies it has put in the used ring since:
/// a batch of short requests is signalled once, at its end, while in a
/// batch of long ones (1 MiB WRITEs, ~150 µs each) every reply is signalled
/// as it is returned, not held until the whole batch is done.
pub(crate) const SIGNAL_INTERVAL: Duration = Duration::from_micros(50);

/// When a worker in the middle of a batch signals the replies it has put in
/// the used ring: once [`SIGNAL_INTERVAL`] has passed since the batch began
/// or since the last signal. It reads the clock only when the interval may
/// have passed at the batch's pace so far (about twice per batch of short
/// requests, after every reply when each takes longer than the interval).
pub(crate) struct SignalPacer {
    start: Instant,
    last_signal: Instant,
    returned: u32,
    /// The reply count at which to look at the clock next.
    check_at: u32,
}

impl SignalPacer {
    /// A pacer for a batch that begins at `now`.
    #[inline]
    pub(crate) fn new(now: Instant) -> Self {
        SignalPacer { start: now, last_signal: now, returned: 0, check_at: 1 }
    }

    /// One more reply was returned; true if the guest is to be signalled now.
    #[inline]
    pub(crate) fn returned(&mut self, clock: impl FnOnce() -> Instant) -> bool {
        self.returned += 1;
        if self.returned < self.check_at {
            return false;
        }
        let now = clock();
        let signal = now.saturating_duration_since(self.last_signal) >= SIGNAL_INTERVAL;
        if signal {
            self.last_signal = now;
        }
        // Look again about when the interval runs out at the pace so far.
        let pace = now.saturating_duration_since(self.start) / self.returned;
        let left = SIGNAL_INTERVAL.saturating_sub(now.saturating_duration_since(self.last_signal));
        let more = if pace.is_zero() { u32::MAX } else { (left.as_nanos() / pace.as_nanos()) as u32 };
        self.check_at = self.returned.saturating_add(more.max(1));
        signal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a pacer over replies that each take `took`; returns the replies
    /// after which it signalled and how many times it read the clock.
    fn pace(took: &[Duration]) -> (Vec<usize>, usize) {
        let t0 = Instant::now();
        let mut pacer = SignalPacer::new(t0);
        let (mut now, mut reads, mut signals) = (t0, 0, Vec::new());
        for (n, d) in took.iter().enumerate() {
            now += *d;
            if pacer.returned(|| {
                reads += 1;
                now
            }) {
                signals.push(n + 1);
            }
        }
        (signals, reads)
    }

    #[test]
    fn a_batch_of_short_replies_is_signalled_at_its_end_only() {
        let (signals, reads) = pace(&[Duration::from_micros(1); 40]);
        assert_eq!(signals, Vec::<usize>::new(), "40 µs of replies: no signal before the end");
        assert!(reads <= 3, "the clock was read {reads} times for 40 short replies");
    }

    #[test]
    fn long_replies_are_each_signalled_as_they_are_returned() {
        let (signals, reads) = pace(&[Duration::from_micros(150); 6]);
        assert_eq!(signals, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(reads, 6);
    }

    #[test]
    fn a_long_batch_of_short_replies_is_signalled_every_interval() {
        let (signals, _) = pace(&[Duration::from_micros(2); 100]);
        // 200 µs of replies: a signal about every 50 µs (25 replies).
        assert_eq!(signals.len(), 4, "signals after replies {signals:?}");
        assert!(signals.windows(2).all(|w| (20..=30).contains(&(w[1] - w[0]))), "{signals:?}");
    }

    #[test]
    fn a_long_reply_after_short_ones_is_signalled_soon_after_it() {
        let mut took = vec![Duration::from_micros(1); 10];
        took.push(Duration::from_micros(500));
        took.extend([Duration::from_micros(1); 60]);
        let (signals, reads) = pace(&took);
        // At the pace of the first reply the next look is 49 replies later:
        // the slow reply is caught there (about an interval of short
        // replies after it), not at the end of the batch.
        assert_eq!(signals.first(), Some(&50), "signals after replies {signals:?}");
        assert!(reads < 10, "the clock was read {reads} times for 71 replies");
    }

    #[test]
    fn replies_that_take_no_time_read_the_clock_once() {
        // No measurable pace: the pacer does not look again in this batch.
        let (signals, reads) = pace(&[Duration::ZERO; 1000]);
        assert_eq!(signals, Vec::<usize>::new());
        assert_eq!(reads, 1);
    }

    #[test]
    fn a_signal_is_due_when_the_interval_is_reached_not_only_passed() {
        let (signals, _) = pace(&[SIGNAL_INTERVAL, SIGNAL_INTERVAL - Duration::from_nanos(1)]);
        assert_eq!(signals, vec![1], "the second reply came within an interval of the first signal");
    }
}
