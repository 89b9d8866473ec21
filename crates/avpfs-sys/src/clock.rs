//! A cheap monotonic clock for timing requests: the CPU's time-stamp
//! counter on x86-64 (invariant on every CPU the daemon targets: it ticks
//! at a constant rate in every power state and is synchronised across
//! cores), about 8 ns to read against about 24 ns for `clock_gettime`;
//! elsewhere, nanoseconds from [`std::time::Instant`].
//!
//! Ticks convert to nanoseconds with a rate measured once per process
//! against `Instant` ([`calibrate`], about 5 ms).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The counter now, in ticks.
#[inline]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads a register; it has no memory effects and is
        // available on every x86-64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Nanoseconds per tick, as a 32.32 fixed-point factor.
static NS_PER_TICK: OnceLock<u64> = OnceLock::new();

/// Measures the tick rate: ticks against `Instant` over 5 ms.
fn measure() -> u64 {
    if !cfg!(target_arch = "x86_64") {
        return 1 << 32;
    }
    let (t0, i0) = (ticks(), Instant::now());
    std::thread::sleep(Duration::from_millis(5));
    let (t1, i1) = (ticks(), Instant::now());
    let ns = i1.duration_since(i0).as_nanos() as f64;
    let per_tick = ns / (t1.wrapping_sub(t0).max(1)) as f64;
    (per_tick * (1u64 << 32) as f64) as u64
}

/// Measures the tick rate (once per process; later calls return at once).
/// Call it at start-up: otherwise the first [`to_duration`] pays for it.
pub fn calibrate() {
    NS_PER_TICK.get_or_init(measure);
}

/// The length of `ticks` ticks.
#[inline]
pub fn to_duration(ticks: u64) -> Duration {
    let factor = *NS_PER_TICK.get_or_init(measure);
    Duration::from_nanos(((u128::from(ticks) * u128::from(factor)) >> 32) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_measure_time() {
        calibrate();
        let t0 = ticks();
        std::thread::sleep(Duration::from_millis(20));
        let d = to_duration(ticks().wrapping_sub(t0));
        assert!(d >= Duration::from_millis(19) && d < Duration::from_millis(500), "{d:?}");
    }
}
