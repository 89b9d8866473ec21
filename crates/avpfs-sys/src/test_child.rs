//! Running one test of the current test binary alone in a new process, for
//! tests that change process-wide state (a seccomp filter, a signal
//! disposition) or must be single-threaded: the test harness runs tests on
//! several threads, so such a test re-runs itself as a new process (not a
//! fork of the threaded harness) and checks what that process did.
//!
//! ```no_run
//! # fn test_body() {}
//! #[test]
//! fn changes_the_process() {
//!     let name = "module::tests::changes_the_process";
//!     if avpfs_sys::test_child::is(name) {
//!         test_body(); // runs in the new process only
//!         return;
//!     }
//!     let out = avpfs_sys::test_child::run(name);
//!     assert!(out.status.success());
//! }
//! ```
//!
//! Only with the `test-utils` feature (and in this crate's own tests).

use std::process::{Command, Output};

/// Set in the new process: the name of the test it runs.
const CHILD: &str = "AVPFS_TEST_CHILD";

/// Whether this process is the new process started by [`run`] for the test
/// `name`.
pub fn is(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}

/// Runs the test `name` (its full path, `module::tests::test`) of this
/// binary alone in a new process, where [`is`] is true, and returns what it
/// did (exit status, standard output and error).
///
/// # Panics
/// When the test binary cannot be found or started: this is test support.
pub fn run(name: &str) -> Output {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .expect("starting the test binary again")
}
