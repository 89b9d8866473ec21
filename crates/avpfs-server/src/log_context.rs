//! Which session a thread works for, for log lines: the daemon's log format
//! names the guest and the share of every event a session's thread logs
//! (`--log-format`). A thread-local label, set when a thread starts serving
//! a session (cheap to set again: a pointer comparison).

use std::cell::RefCell;
use std::sync::Arc;

/// The guest and share a thread serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLabel {
    /// The guest's (session's) name.
    pub guest: String,
    /// Its share's name.
    pub share: String,
}

thread_local! {
    static LABEL: RefCell<Option<Arc<SessionLabel>>> = const { RefCell::new(None) };
}

/// Marks the calling thread as serving `label`'s session (`None`: none).
#[inline]
pub fn enter(label: Option<&Arc<SessionLabel>>) {
    LABEL.with(|l| {
        let mut l = l.borrow_mut();
        let same = match (l.as_ref(), label) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            *l = label.cloned();
        }
    });
}

/// The session the calling thread serves, if any.
pub fn current() -> Option<Arc<SessionLabel>> {
    LABEL.with(|l| l.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_is_per_thread() {
        let label = Arc::new(SessionLabel { guest: "vm1".into(), share: "data".into() });
        enter(Some(&label));
        assert_eq!(current().as_deref(), Some(&*label));
        std::thread::spawn(|| assert!(current().is_none())).join().unwrap();
        enter(None);
        assert!(current().is_none());
    }
}
