//! Runs cases in fresh directories and compares two runs.

use std::ffi::OsStr;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::proc::{self, Chan, Child, Creds};
use crate::recorder::{Flow, Outcome};
use crate::sys::{self, Dir};

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// Unique name, `family.what` (also the name of its directory).
    pub name: &'static str,
    /// The case needs root (chown, other users, device nodes, whiteouts);
    /// it is skipped, with a `skipped` step, when the suite is not root.
    pub needs_root: bool,
    /// The body.
    pub run: fn(&Env) -> Outcome,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).field("needs_root", &self.needs_root).finish()
    }
}

/// What a case runs in.
#[derive(Debug)]
pub struct Env {
    /// The root being tested (the host directory or the mount point).
    pub root: PathBuf,
    /// A fresh, empty directory for this case (mode 0755, owned by the
    /// user running the suite), removed after the case.
    pub dir: PathBuf,
    /// `dir`, open. Cases work relative to it (`*at` calls), which also
    /// lets a child that dropped privileges reach it.
    pub d: Dir,
}

impl Env {
    /// Creates the case directory `root/name` (removing a leftover one)
    /// and opens it.
    pub fn create(root: &Path, name: &str) -> io::Result<Env> {
        let dir = root.join(name);
        if std::fs::symlink_metadata(&dir).is_ok() {
            remove_tree(&dir)?;
        }
        let r = Dir::open_path(root)?;
        r.mkdir(name, 0o755)?;
        r.chmod(name, 0o755)?;
        let d = r.sub(name)?;
        Ok(Env { root: root.to_path_buf(), dir, d })
    }

    /// `dir/name` as a path (for calls that have no `*at` form).
    pub fn path(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.dir.join(name.as_ref())
    }

    /// Runs `f` in a child process with the credentials `creds` and
    /// appends its observations to `o`, each step prefixed with
    /// `as UID:GID: ` (and `+G1,G2` for supplementary groups). The child inherits [`Env::d`], so it reaches the case
    /// directory whatever the permissions of its ancestors.
    ///
    /// On a FUSE mount the other user can only get past the kernel if the
    /// mount has `allow_other`.
    pub fn as_user(&self, o: &mut Outcome, creds: &Creds, f: impl FnOnce(&mut Outcome)) {
        let mut prefix = format!("as {}:{}", creds.uid, creds.gid);
        if !creds.groups.is_empty() {
            let g: Vec<String> = creds.groups.iter().map(u32::to_string).collect();
            prefix.push_str(&format!("+{}", g.join(",")));
        }
        prefix.push_str(": ");
        match proc::spawn(Some(creds), |_chan, co| f(co)) {
            Ok(child) => o.merge(&prefix, child.join()),
            Err(e) => {
                o.step::<()>(&format!("{prefix}fork"), Err(e));
            }
        }
    }

    /// Forks a second process (same credentials) running `f`; the parent
    /// talks to it through the returned [`Child`] and collects its log
    /// with [`Child::join`].
    pub fn spawn(&self, f: impl FnOnce(&Chan, &mut Outcome)) -> io::Result<Child> {
        proc::spawn(None, f)
    }
}

/// Removes a tree without following symlinks, making directories
/// writable first when needed.
fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(_) => {
            // Directories left without write or search permission: open
            // them up and retry once.
            fn open_up(p: &Path) {
                if let Ok(m) = std::fs::symlink_metadata(p) {
                    if m.is_dir() {
                        use std::os::unix::fs::PermissionsExt;
                        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
                        if let Ok(rd) = std::fs::read_dir(p) {
                            for e in rd.flatten() {
                                open_up(&e.path());
                            }
                        }
                    }
                }
            }
            open_up(path);
            std::fs::remove_dir_all(path)
        }
    }
}

/// Runs a case body (used by the `case!` macro).
pub(crate) fn run_body(env: &Env, body: fn(&Env, &mut Outcome) -> Flow) -> Outcome {
    let mut o = Outcome::new();
    let _ = body(env, &mut o);
    o
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
}

/// Runs `cases` (those whose name contains `filter`, if given) under
/// `root`, each in its own fresh directory `root/<case name>`, one after
/// the other.
///
/// The cases run on a thread of their own that has its own umask (022),
/// set with `unshare(CLONE_FS)`, so the umask of the rest of the process
/// (for example a file server running in the same test process) is left
/// alone. Only if that fails is the process umask changed for the run.
pub fn run_cases(root: &Path, cases: &[Case], filter: Option<&str>) -> Vec<(String, Outcome)> {
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let private = sys::unshare_fs().is_ok();
            let old_mask = sys::umask(0o022);
            let results = run_cases_here(root, cases, filter);
            if !private {
                sys::umask(old_mask);
            }
            results
        });
        match worker.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

fn run_cases_here(root: &Path, cases: &[Case], filter: Option<&str>) -> Vec<(String, Outcome)> {
    let is_root = sys::geteuid() == 0;
    let mut results = Vec::new();
    for case in cases {
        if let Some(f) = filter {
            if !case.name.contains(f) {
                continue;
            }
        }
        let mut o = Outcome::new();
        if case.needs_root && !is_root {
            o.raw("skipped", "needs root");
            results.push((case.name.to_string(), o));
            continue;
        }
        let env = match Env::create(root, case.name) {
            Ok(env) => env,
            Err(e) => {
                o.step::<()>("create case directory", Err(e));
                results.push((case.name.to_string(), o));
                continue;
            }
        };
        let o = match catch_unwind(AssertUnwindSafe(|| (case.run)(&env))) {
            Ok(o) => o,
            Err(p) => {
                o.raw("panic", panic_text(p.as_ref()));
                o
            }
        };
        let dir = env.dir.clone();
        drop(env);
        if std::env::var_os("AVPFS_CONFORMANCE_KEEP").is_none() {
            let _ = remove_tree(&dir);
        }
        results.push((case.name.to_string(), o));
    }
    results
}

/// Runs [`crate::all_cases`] under `root` (see [`run_cases`]).
pub fn run_suite(root: &Path, filter: Option<&str>) -> Vec<(String, Outcome)> {
    run_cases(root, &crate::all_cases(), filter)
}

/// Runs [`crate::escape_cases`] under `root`, which must be a mount point.
/// These cases assert absolute expectations: the result is the list of
/// violations (empty when all hold), see [`violations`].
pub fn run_escape_suite(root: &Path) -> Vec<(String, Outcome)> {
    run_cases(root, &crate::escape_cases(), None)
}

/// Every absolute expectation that did not hold, as `case: text`.
pub fn violations(results: &[(String, Outcome)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, o) in results {
        for v in &o.violations {
            out.push(format!("{name}: {v}"));
        }
        if o.steps.is_empty() {
            out.push(format!("{name}: recorded no observation"));
        }
    }
    out
}

/// The human-readable differences between a baseline run and a candidate
/// run of the same cases; empty when they agree.
///
/// Steps are compared in order. At the first step whose *name* differs the
/// two logs have diverged (a step failed on one side and the case took
/// another path), so the rest of that case is summarised, not compared.
pub fn compare(baseline: &[(String, Outcome)], candidate: &[(String, Outcome)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, b) in baseline {
        let Some((_, c)) = candidate.iter().find(|(n, _)| n == name) else {
            out.push(format!("{name}: missing from the candidate run"));
            continue;
        };
        let n = b.steps.len().min(c.steps.len());
        let mut diverged = false;
        for i in 0..n {
            let (bs, bv) = &b.steps[i];
            let (cs, cv) = &c.steps[i];
            if bs != cs {
                out.push(format!(
                    "{name}: step #{i} diverges: baseline {bs:?} = {bv}, candidate {cs:?} = {cv} \
                     (remaining {} baseline / {} candidate steps not compared)",
                    b.steps.len() - i - 1,
                    c.steps.len() - i - 1
                ));
                diverged = true;
                break;
            }
            if bv != cv {
                out.push(format!("{name}: step #{i} {bs:?}: baseline {bv}, candidate {cv}"));
            }
        }
        if !diverged && b.steps.len() != c.steps.len() {
            let (longer, which) =
                if b.steps.len() > c.steps.len() { (&b.steps, "baseline") } else { (&c.steps, "candidate") };
            let (s, v) = &longer[n];
            out.push(format!("{name}: {which} has {} more step(s), first {s:?} = {v}", longer.len() - n));
        }
    }
    for (name, _) in candidate {
        if !baseline.iter().any(|(n, _)| n == name) {
            out.push(format!("{name}: not in the baseline run"));
        }
    }
    out
}

/// A plain-text dump of a run, one `case | step | value` line per step.
pub fn format_results(results: &[(String, Outcome)]) -> String {
    let mut s = String::new();
    for (name, o) in results {
        for (step, v) in &o.steps {
            s.push_str(&format!("{name} | {step} | {v}\n"));
        }
        for v in &o.violations {
            s.push_str(&format!("{name} | VIOLATION | {v}\n"));
        }
    }
    s
}
