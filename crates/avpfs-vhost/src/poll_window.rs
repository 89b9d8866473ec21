//! The adaptive polling window of a queue worker ([`PollWindow`]).
//!
//! With EVENT_IDX, a worker that has drained its queue keeps watching the
//! available ring for a short window ([`crate::DeviceConfig::poll_max`],
//! like QEMU's `poll-max-ns` for its own I/O threads) before it re-enables
//! notifications and sleeps: a guest that sends its next request within the
//! window needs no kick and the worker no wake-up. The window grows when a
//! kick comes sooner than the maximum after the worker went to sleep and
//! halves when the sleep was longer ([`window_after_sleep`]), so an idle or
//! sparse queue stops spinning.
//!
//! Each worker thread serves one queue and keeps its window in the
//! thread-local [`POLL_WINDOW`].

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The smallest window a kick that came soon after sleeping grows to.
pub(crate) const POLL_MIN: Duration = Duration::from_micros(2);

thread_local! {
    /// The polling window of the calling worker thread.
    pub(crate) static POLL_WINDOW: PollWindow = const {
        PollWindow { max: Cell::new(Duration::ZERO), window: Cell::new(Duration::ZERO), asleep_since: Cell::new(None) }
    };
}

/// The adaptive polling window of the calling worker thread (each worker
/// serves one queue).
pub(crate) struct PollWindow {
    max: Cell<Duration>,
    window: Cell<Duration>,
    /// When the last poll ran out and the worker went to sleep.
    asleep_since: Cell<Option<Instant>>,
}

/// The window after a sleep of `slept` that a kick ended, for a window of
/// `window` and a maximum of `max`. A sleep shorter than `max` would have
/// been caught by a longer window: grow it. A sleep longer than `max` means
/// the queue went idle: shrink the window, so that an idle or sparse queue
/// stops spinning (QEMU's adaptive polling does the same).
#[inline]
fn window_after_sleep(window: Duration, max: Duration, slept: Duration) -> Duration {
    if slept > max {
        let half = window / 2;
        if half < POLL_MIN {
            Duration::ZERO
        } else {
            half
        }
    } else if slept > window {
        // Not `clamp`: a maximum below POLL_MIN (`--poll-max-us 1`) is the
        // cap, where `clamp` would panic.
        (window * 2).max(POLL_MIN).min(max)
    } else {
        window
    }
}

impl PollWindow {
    /// The worker was woken by a kick: a new maximum `max` resets the
    /// window to it, and the sleep that ended resizes it
    /// ([`window_after_sleep`]).
    #[inline]
    pub(crate) fn woken(&self, max: Duration) {
        if max != self.max.get() {
            self.max.set(max);
            self.window.set(max);
        }
        if let Some(since) = self.asleep_since.take() {
            self.window.set(window_after_sleep(self.window.get(), max, since.elapsed()));
        }
    }

    /// Spins until `ready()` or the window passes; true if work came.
    #[inline]
    pub(crate) fn poll(&self, ready: impl Fn() -> bool) -> bool {
        let window = self.window.get();
        let start = Instant::now();
        if !window.is_zero() {
            loop {
                if ready() {
                    return true;
                }
                if start.elapsed() >= window {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        self.asleep_since.set(Some(Instant::now()));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(max: Duration, window: Duration, slept: Option<Duration>) -> PollWindow {
        PollWindow {
            max: Cell::new(max),
            window: Cell::new(window),
            asleep_since: Cell::new(slept.map(|d| Instant::now() - d)),
        }
    }

    #[test]
    fn poll_window_grows_after_a_short_sleep() {
        let max = Duration::from_secs(10);
        let w = window(max, Duration::ZERO, Some(Duration::from_micros(10)));
        w.woken(max);
        assert_eq!(w.window.get(), POLL_MIN);
        w.asleep_since.set(Some(Instant::now() - Duration::from_micros(10)));
        w.woken(max);
        assert_eq!(w.window.get(), POLL_MIN * 2);
    }

    #[test]
    fn poll_window_shrinks_after_a_long_sleep_down_to_zero() {
        let max = Duration::from_micros(50);
        let w = window(max, max, None);
        for expected in [25, 12, 6, 3, 0] {
            w.asleep_since.set(Some(Instant::now() - Duration::from_millis(5)));
            w.woken(max);
            assert_eq!(w.window.get().as_micros(), expected);
        }
    }

    #[test]
    fn poll_catches_work_and_sleeps_without_it() {
        let max = Duration::from_millis(1);
        let w = window(max, max, None);
        w.woken(max);
        assert!(w.poll(|| true));
        assert!(w.asleep_since.get().is_none());
        let start = Instant::now();
        assert!(!w.poll(|| false));
        assert!(start.elapsed() >= max, "gave up before the window passed");
        assert!(w.asleep_since.get().is_some());
        let off = window(max, Duration::ZERO, None);
        assert!(!off.poll(|| panic!("a zero window must not look at the ring")));
    }

    #[test]
    fn poll_window_follows_a_new_maximum() {
        let w = window(Duration::from_micros(50), Duration::from_micros(50), None);
        w.woken(Duration::ZERO);
        assert!(!w.poll(|| panic!("polling is off")));
    }

    #[test]
    fn a_kick_without_a_sleep_before_it_leaves_the_window() {
        // The first kick of a thread, or one after the worker found work
        // while polling: nothing to learn from.
        let max = Duration::from_micros(50);
        let w = window(max, Duration::from_micros(8), None);
        w.woken(max);
        assert_eq!(w.window.get(), Duration::from_micros(8));
        assert_eq!(w.max.get(), max);
    }

    #[test]
    fn the_window_doubles_up_to_the_maximum_after_sleeps_shorter_than_it() {
        let us = Duration::from_micros;
        let max = us(50);
        assert_eq!(window_after_sleep(Duration::ZERO, max, us(1)), POLL_MIN);
        assert_eq!(window_after_sleep(us(4), max, us(5)), us(8));
        assert_eq!(window_after_sleep(us(32), max, us(40)), max, "capped at the maximum");
        assert_eq!(window_after_sleep(max, max, max), max, "a sleep of exactly the maximum is short");
        assert_eq!(window_after_sleep(Duration::ZERO, us(1), us(1)), us(1), "a maximum below POLL_MIN caps");
    }

    #[test]
    fn a_sleep_within_the_window_leaves_it() {
        // The kick came sooner than the window the worker had polled for:
        // a longer window would not have caught more.
        let us = Duration::from_micros;
        assert_eq!(window_after_sleep(us(16), us(50), us(10)), us(16));
        assert_eq!(window_after_sleep(us(16), us(50), us(16)), us(16));
    }

    #[test]
    fn the_window_halves_after_a_sleep_longer_than_the_maximum_and_stops_below_the_minimum() {
        let us = Duration::from_micros;
        assert_eq!(window_after_sleep(us(50), us(50), us(51)), us(25));
        assert_eq!(window_after_sleep(POLL_MIN * 2, us(50), us(1000)), POLL_MIN);
        assert_eq!(window_after_sleep(POLL_MIN * 2 - Duration::from_nanos(1), us(50), us(1000)), Duration::ZERO);
        assert_eq!(window_after_sleep(Duration::ZERO, Duration::ZERO, us(1)), Duration::ZERO, "polling off stays off");
    }
}
