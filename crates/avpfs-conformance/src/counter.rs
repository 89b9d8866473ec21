//! A counter shared by several clients of one tree: each adds one to the
//! number in a file, many times, under an exclusive lock, as independent
//! programs would (a fresh open for every addition). Run at once by clients
//! on different machines (two guests, a guest and the host), the final
//! number is exact only if their locks exclude one another.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::sys;

/// The lock the counter is taken under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterLock {
    /// `flock(LOCK_EX)` on the whole file.
    Flock,
    /// A POSIX record lock (`fcntl(F_SETLKW, F_WRLCK)`) on the whole file.
    Fcntl,
}

impl CounterLock {
    /// `flock` or `fcntl`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "flock" => Some(CounterLock::Flock),
            "fcntl" => Some(CounterLock::Fcntl),
            _ => None,
        }
    }

    fn take(self, f: &File) -> io::Result<()> {
        match self {
            CounterLock::Flock => sys::flock(f, libc::LOCK_EX),
            CounterLock::Fcntl => sys::setlk(f, libc::F_SETLKW, libc::F_WRLCK, 0, 0),
        }
    }

    fn release(self, f: &File) -> io::Result<()> {
        match self {
            CounterLock::Flock => sys::flock(f, libc::LOCK_UN),
            CounterLock::Fcntl => sys::setlk(f, libc::F_SETLK, libc::F_UNLCK, 0, 0),
        }
    }
}

/// Adds one to the decimal number in `path` (created empty, read as 0)
/// `times` times, each time opening the file, taking `lock`, reading,
/// rewriting and releasing. A file that holds anything but a number is an
/// error (`InvalidData`): a torn write seen by a reader.
pub fn add_under_lock(path: &Path, times: u32, lock: CounterLock) -> io::Result<()> {
    for _ in 0..times {
        let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o644).open(path)?;
        lock.take(&f)?;
        let mut text = String::new();
        f.read_to_string(&mut text)?;
        let n: u64 = match text.trim() {
            "" => 0,
            t => t.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("counter holds {t:?}")))?,
        };
        f.seek(SeekFrom::Start(0))?;
        f.set_len(0)?;
        writeln!(f, "{}", n + 1)?;
        lock.release(&f)?;
    }
    Ok(())
}

/// Appends `times` records `"{tag} {i}\n"` to `path` (created if missing)
/// through one `O_APPEND` descriptor, one `write` per record: run by several
/// clients at once, every record of every client must be in the file, whole.
pub fn append_records(path: &Path, tag: &str, times: u32) -> io::Result<()> {
    let mut f = OpenOptions::new().append(true).create(true).mode(0o644).open(path)?;
    for i in 0..times {
        f.write_all(format!("{tag} {i}\n").as_bytes())?;
    }
    Ok(())
}

/// Checks a file that clients `tags` each appended `times` records to with
/// [`append_records`]: every record there once, nothing else. Returns what
/// is wrong, if anything.
pub fn check_records(text: &str, tags: &[&str], times: u32) -> Result<(), String> {
    let mut seen = std::collections::HashMap::new();
    for line in text.lines() {
        *seen.entry(line).or_insert(0u32) += 1;
    }
    let mut wrong = Vec::new();
    for tag in tags {
        for i in 0..times {
            let record = format!("{tag} {i}");
            match seen.remove(record.as_str()) {
                Some(1) => {}
                Some(n) => wrong.push(format!("{record:?} {n} times")),
                None => wrong.push(format!("{record:?} missing")),
            }
        }
    }
    wrong.extend(seen.keys().map(|l| format!("stray line {l:?}")));
    if wrong.is_empty() {
        Ok(())
    } else {
        wrong.truncate(5);
        Err(wrong.join("; "))
    }
}

/// Opens `path` (created if missing), prints `before`, takes `lock` on the
/// whole file (waiting for it as long as it takes), prints `after`, then
/// holds the lock for `hold` before it returns (and the file is closed).
/// Another client that holds the lock keeps this one between the two
/// lines; the lines are flushed at once, for a watcher of the output.
pub fn take_lock(
    path: &Path,
    lock: CounterLock,
    before: &str,
    after: &str,
    hold: std::time::Duration,
) -> io::Result<()> {
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o644).open(path)?;
    let mut out = io::stdout();
    writeln!(out, "{before}")?;
    out.flush()?;
    lock.take(&f)?;
    writeln!(out, "{after}")?;
    out.flush()?;
    std::thread::sleep(hold);
    Ok(())
}

/// How many of a [`claim`] run's races a client won.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Claims {
    /// Files `excl-I` this client created with `O_CREAT | O_EXCL`.
    pub created: u32,
    /// Files `ren-I` this client renamed to `ren-I.TAG`.
    pub renamed: u32,
}

/// Races other clients for `count` names in `dir`: creates each `excl-I`
/// with `O_CREAT | O_EXCL` (EEXIST: another won) and renames each `ren-I`,
/// which must exist beforehand, to `ren-I.TAG` (ENOENT: another won).
/// Across all clients, every name must have exactly one winner.
pub fn claim(dir: &Path, tag: &str, count: u32) -> io::Result<Claims> {
    let mut won = Claims::default();
    for i in 0..count {
        match OpenOptions::new().write(true).create_new(true).mode(0o644).open(dir.join(format!("excl-{i}"))) {
            Ok(mut f) => {
                f.write_all(tag.as_bytes())?;
                won.created += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        match std::fs::rename(dir.join(format!("ren-{i}")), dir.join(format!("ren-{i}.{tag}"))) {
            Ok(()) => won.renamed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(won)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processes (this one's threads would share one lock owner for
    /// fcntl) add at once; the count is exact.
    #[test]
    fn two_processes_adding_at_once_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for (lock, name) in [(CounterLock::Flock, "flock"), (CounterLock::Fcntl, "fcntl")] {
            let path = dir.path().join(name);
            // A child that fails leaves the count short.
            let p = path.clone();
            let child = crate::proc::spawn(None, move |_, _| add_under_lock(&p, 300, lock).unwrap()).unwrap();
            add_under_lock(&path, 300, lock).unwrap();
            child.join();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "600\n", "{name}");
        }
    }

    #[test]
    fn appended_records_of_two_processes_are_all_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let p = path.clone();
        let child = crate::proc::spawn(None, move |_, _| append_records(&p, "b", 500).unwrap()).unwrap();
        append_records(&path, "a", 500).unwrap();
        child.join();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(check_records(&text, &["a", "b"], 500), Ok(()));
        // The check sees a lost, a doubled and a torn record.
        let damaged = text.replacen("a 7\n", "", 1).replacen("b 3\n", "b 3\nb 3\n", 1) + "a 1";
        let e = check_records(&damaged, &["a", "b"], 500).unwrap_err();
        assert!(e.contains("\"a 7\" missing") && e.contains("\"b 3\" 2 times"), "{e}");
        assert!(e.contains("\"a 1\" 2 times"), "{e}");
    }

    #[test]
    fn each_name_has_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..200 {
            std::fs::write(dir.path().join(format!("ren-{i}")), b"").unwrap();
        }
        let (d, log) = (dir.path().to_path_buf(), dir.path().join("child-claims"));
        let child = crate::proc::spawn(None, move |_, _| {
            let c = claim(&d, "b", 200).unwrap();
            std::fs::write(&log, format!("{} {}", c.created, c.renamed)).unwrap();
        })
        .unwrap();
        let ours = claim(dir.path(), "a", 200).unwrap();
        child.join();
        let theirs = std::fs::read_to_string(dir.path().join("child-claims")).unwrap();
        let (created, renamed) = theirs.split_once(' ').unwrap();
        assert_eq!(ours.created + created.parse::<u32>().unwrap(), 200);
        assert_eq!(ours.renamed + renamed.parse::<u32>().unwrap(), 200);
    }

    #[test]
    fn a_torn_counter_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        std::fs::write(&path, "12x").unwrap();
        let e = add_under_lock(&path, 1, CounterLock::Flock).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
