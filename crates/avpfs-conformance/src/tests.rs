//! The suite checked against itself: two plain directories on the same
//! host file system must give identical logs.

use std::collections::HashSet;

use crate::{all_cases, compare, escape_cases, run_escape_suite, run_suite, violations, Outcome};

#[test]
fn case_names_are_unique_and_well_formed() {
    let mut seen = HashSet::new();
    for c in all_cases().into_iter().chain(escape_cases()) {
        assert!(seen.insert(c.name), "duplicate case name {}", c.name);
        assert!(c.name.contains('.') && !c.name.contains('/'), "bad name {}", c.name);
    }
}

#[test]
fn baseline_twice_agrees() {
    let a = tempfile::tempdir().expect("tempdir a");
    let b = tempfile::tempdir().expect("tempdir b");
    let start = std::time::Instant::now();
    let ra = run_suite(a.path(), None);
    let elapsed = start.elapsed();
    let rb = run_suite(b.path(), None);
    eprintln!("one suite run took {elapsed:?}");
    if std::env::var_os("AVPFS_CONFORMANCE_DUMP").is_some() {
        eprintln!("{}", crate::format_results(&ra));
    }
    assert_eq!(ra.len(), all_cases().len());
    let diffs = compare(&ra, &rb);
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    for (name, o) in &ra {
        assert!(!o.steps.is_empty(), "{name} recorded nothing");
        for (s, v) in &o.steps {
            assert_ne!(s, "panic", "{name} panicked: {v}");
            if s == "exit" || s.ends_with(": exit") {
                assert_eq!(v, "exit:0", "{name}: child {s}");
            }
            assert!(!s.starts_with("wait for"), "{name}: {s} = {v}");
        }
    }
    assert!(violations(&ra).is_empty(), "{:?}", violations(&ra));
    // The case directories are cleaned up.
    let left: Vec<_> = std::fs::read_dir(a.path()).expect("read_dir").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn filter_selects_cases() {
    let a = tempfile::tempdir().expect("tempdir");
    let r = run_suite(a.path(), Some("files.rw_offsets"));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, "files.rw_offsets");
    assert!(r[0].1.steps.len() > 10);
}

fn sample() -> Vec<(String, Outcome)> {
    let mut o = Outcome::new();
    o.raw("open", "ok");
    o.raw("read", "ok:5");
    o.raw("close", "ok");
    vec![("x.one".to_string(), o.clone()), ("x.two".to_string(), o)]
}

#[test]
fn compare_finds_a_changed_value() {
    let base = sample();
    assert!(compare(&base, &base).is_empty());
    let mut cand = sample();
    cand[1].1.steps[1].1 = "err:EIO".to_string();
    let d = compare(&base, &cand);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].contains("x.two") && d[0].contains("read") && d[0].contains("err:EIO"));
}

#[test]
fn compare_finds_divergence_and_missing_cases() {
    let base = sample();
    let mut cand = sample();
    cand[0].1.steps[1].0 = "other".to_string();
    cand[1].1.steps.pop();
    cand.push(("x.three".to_string(), Outcome::new()));
    let d = compare(&base, &cand);
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(d[0].contains("x.one") && d[0].contains("diverges"));
    assert!(d[1].contains("x.two") && d[1].contains("baseline has 1 more"));
    assert!(d[2].contains("x.three") && d[2].contains("not in the baseline"));
    let d = compare(&cand, &base);
    assert!(d.iter().any(|l| l.contains("x.three") && l.contains("missing")));
}

#[test]
fn escape_cases_flag_a_plain_directory() {
    // A plain directory is not a mount point: the suite must say so rather
    // than pass. The root is a subdirectory so that anything that does
    // escape stays inside the temporary directory.
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("share");
    std::fs::create_dir(&root).expect("mkdir");
    let r = run_escape_suite(&root);
    let v = violations(&r);
    assert!(v.iter().any(|l| l.contains("mount point")), "{v:?}");
    // The name and symlink checks hold on any directory.
    assert!(!v.iter().any(|l| l.starts_with("escape.slash_in_names")), "{v:?}");
    assert!(!v.iter().any(|l| l.starts_with("escape.symlink_resolved_by_client")), "{v:?}");
}

#[test]
fn suite_leaves_the_process_umask_alone() {
    let t = tempfile::tempdir().expect("tempdir");
    let before = crate::sys::umask(0o027);
    let r = run_suite(t.path(), Some("files.open_flags"));
    let during = crate::sys::umask(before);
    assert_eq!(during, 0o027);
    // The case itself saw 022.
    let (_, o) = &r[0];
    assert!(o.steps.iter().any(|(s, v)| s == "perm of b" && v == "ok:\"755\""), "{o:?}");
}
