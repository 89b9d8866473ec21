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
    command(name).output().expect("starting the test binary again")
}

/// The command [`run`] starts, for a test that must do more than wait for
/// the new process (signal it while it runs, talk to it through pipes,
/// pass it more of the environment): spawn it and deal with the [`Child`](std::process::Child).
///
/// # Panics
/// When the test binary cannot be found: this is test support.
pub fn command(name: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command.args(["--exact", name, "--nocapture", "--test-threads=1"]).env(CHILD, name);
    command
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::process::Stdio;

    #[test]
    fn a_spawned_child_runs_only_this_test_with_the_environment_given() {
        let name = "test_child::tests::a_spawned_child_runs_only_this_test_with_the_environment_given";
        if super::is(name) {
            println!("child of {}", std::env::var("AVPFS_TEST_CHILD_EXTRA").unwrap());
            return;
        }
        assert!(!super::is(name), "not in the parent");
        let mut child =
            super::command(name).env("AVPFS_TEST_CHILD_EXTRA", "the parent").stdout(Stdio::piped()).spawn().unwrap();
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        assert!(child.wait().unwrap().success(), "{out}");
        assert!(out.contains("child of the parent\n"), "{out}");
        assert!(out.contains("running 1 test"), "only this test runs: {out}");
    }
}
