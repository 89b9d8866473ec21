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
    fn a_torn_counter_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        std::fs::write(&path, "12x").unwrap();
        let e = add_under_lock(&path, 1, CounterLock::Flock).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
