//! Rate-limited warnings for what a client controls: a hostile guest must not
//! be able to flood the host's log with malformed requests.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many guest-triggered warnings are logged per window.
pub const BURST: u32 = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct State {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

static STATE: Mutex<State> = Mutex::new(State { window_start: None, logged: 0, suppressed: 0 });

/// Decides whether one more guest-triggered warning may be logged now. When a
/// new window opens after suppression, returns how many were suppressed, so
/// the caller can say so.
pub fn admit() -> (bool, u64) {
    let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let mut reported = 0;
    if s.window_start.is_none_or(|t| now.duration_since(t) >= WINDOW) {
        s.window_start = Some(now);
        s.logged = 0;
        reported = std::mem::take(&mut s.suppressed);
    }
    if s.logged < BURST {
        s.logged += 1;
        (true, reported)
    } else {
        s.suppressed += 1;
        (false, reported)
    }
}

/// Logs a warning about client input, at most [`BURST`] per [`WINDOW`].
///
/// `guest_warn!(target: "t", ...)` logs both the warning and the count of
/// suppressed ones under target `t` instead of the calling module's path.
#[macro_export]
macro_rules! guest_warn {
    (target: $target:expr, $($arg:tt)*) => {{
        let (ok, suppressed) = $crate::ratelimit::admit();
        if suppressed > 0 {
            log::warn!(target: $target, "{suppressed} similar warnings about client input were suppressed");
        }
        if ok {
            log::warn!(target: $target, $($arg)*);
        }
    }};
    ($($arg:tt)*) => {
        $crate::guest_warn!(target: module_path!(), $($arg)*)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_admitted_then_the_rest_is_counted() {
        let admitted = (0..BURST * 3).filter(|_| admit().0).count() as u32;
        // Other tests in this process may share the window; never more than a burst.
        assert!(admitted <= BURST, "{admitted}");
        assert!(STATE.lock().unwrap().suppressed >= u64::from(BURST));
    }
}
