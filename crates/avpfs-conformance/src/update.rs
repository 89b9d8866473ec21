//! Software update of files that clients run code from, as those clients
//! see it.
//!
//! An updater installs a new version of a file next to the old one and
//! renames it over ([`install`]), or stages a whole directory and swaps it
//! with the live one ([`exchange`], `renameat2(RENAME_EXCHANGE)`). A reader
//! ([`verify_versions`]) meanwhile opens and reads the file (or the
//! directory's files) again and again, and checks that every content it
//! reads is exactly one of the known versions ([`content_sum`]): never a
//! mix of two, never a half-written file. A reader that keeps a
//! descriptor (the old file, the old directory, `/proc/self/exe` of a
//! running program) must keep seeing the old version.
//!
//! Readers and the test driver talk through marker files in a directory
//! of the share ([`Marks`]): the driver creates `changed` once the update is
//! complete and `stop` to end the readers; a reader that may write creates
//! `seen-TAG-vN` the first time it reads version N, so that the driver can
//! time, on its own clock, when a new version became visible.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::recorder::fnv1a;
use crate::sys::{self, Dir};

/// The checksum of a file's content, or of a flat directory: its regular
/// files' names, sizes and contents in name order, read through one
/// descriptor of the directory (so one call sees one directory, even if
/// another is renamed into its place meanwhile).
pub fn content_sum(path: &Path) -> io::Result<u64> {
    if std::fs::metadata(path)?.is_dir() {
        dir_sum(&Dir::open_path(path)?)
    } else {
        Ok(fnv1a(&sys::read_all(&File::open(path)?)?))
    }
}

/// [`content_sum`] of the directory `dir` refers to.
fn dir_sum(dir: &Dir) -> io::Result<u64> {
    let mut all = Vec::new();
    for name in dir.names()? {
        let data = dir.read_file(std::ffi::OsStr::from_bytes(&name))?;
        all.extend_from_slice(&name);
        all.push(0);
        all.extend_from_slice(&(data.len() as u64).to_le_bytes());
        all.extend_from_slice(&data);
    }
    Ok(fnv1a(&all))
}

/// Formats a sum the way the command line takes it (16 hex digits).
pub fn format_sum(sum: u64) -> String {
    format!("{sum:016x}")
}

/// Parses a sum printed by [`format_sum`].
pub fn parse_sum(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16).ok()
}

/// The directory `path` is in (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The last component of `path`, or `InvalidInput`.
fn name_of(path: &Path) -> io::Result<&std::ffi::OsStr> {
    path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{path:?} has no file name")))
}

/// Installs a copy of `src` as `dest` the way an update should: writes it
/// to `.NAME.new` beside `dest` (mode 0755), `fsync`s it, renames it over
/// `dest` and `fsync`s the directory. A reader opens either the whole old
/// file or the whole new one; one that has the old file open keeps it.
pub fn install(src: &Path, dest: &Path) -> io::Result<()> {
    let data = std::fs::read(src)?;
    let dir = Dir::open_path(parent_of(dest))?;
    let name = name_of(dest)?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(".new");
    let f = dir.open(&tmp, libc::O_CREAT | libc::O_TRUNC | libc::O_WRONLY, 0o755)?;
    f.write_all_at(&data, 0)?;
    sys::fsync(&f)?;
    drop(f);
    dir.rename(&tmp, name, 0)?;
    sys::fsync(&dir)
}

/// Swaps `a` and `b` atomically (`renameat2(RENAME_EXCHANGE)`): both must
/// exist; they may be directories. A staged directory becomes the live one
/// in one step, and the old one stays whole under the other name.
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let da = Dir::open_path(parent_of(a))?;
    let db = Dir::open_path(parent_of(b))?;
    da.rename_to(name_of(a)?, &db, name_of(b)?, libc::RENAME_EXCHANGE)
}

/// The marker files of one reader in a directory of the share: `changed`
/// (the update is complete), `stop`, and, if the reader has a tag,
/// `seen-TAG-vN`.
#[derive(Debug, Clone)]
pub struct Marks {
    /// The directory the markers are in.
    pub dir: PathBuf,
    /// Creates `seen-TAG-vN` files when set (a reader on a read-only
    /// mount has none).
    pub ack: Option<String>,
}

impl Marks {
    fn exists(&self, name: &str) -> bool {
        self.dir.join(name).exists()
    }

    /// Creates `seen-TAG-vN` (N from 1) for the first read of a version.
    fn ack(&self, version: usize) -> io::Result<()> {
        match &self.ack {
            Some(tag) => OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(self.dir.join(format!("seen-{tag}-v{}", version + 1)))
                .map(drop),
            None => Ok(()),
        }
    }
}

/// What [`verify_versions`] does.
#[derive(Debug, Clone)]
pub struct Verify {
    /// The file or flat directory read again and again.
    pub path: PathBuf,
    /// The sums of its known versions, oldest first.
    pub versions: Vec<u64>,
    /// Opens `path` once and reads the same file (or directory) every
    /// time, instead of opening it anew for every read.
    pub hold: bool,
    /// Pause between reads.
    pub period: Duration,
    /// How long to go on at most.
    pub duration: Duration,
    /// Markers that stop the reader early and tell it the update is
    /// complete.
    pub marks: Option<Marks>,
    /// The reader's name in what it prints.
    pub tag: String,
}

/// What a [`verify_versions`] run read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Reads of each known version, in [`Verify::versions`] order.
    pub counts: Vec<u64>,
    /// Reads whose content was none of the versions.
    pub unknown: u64,
    /// Opens or reads that failed.
    pub errors: u64,
    /// Reads that started after the reader had seen the `changed` marker
    /// and still returned a version other than the newest.
    pub stale: u64,
    /// The first unknown sum or failure, for the report.
    pub first_problem: Option<String>,
}

impl Tally {
    /// Whether every read returned a known version without error.
    pub fn clean(&self) -> bool {
        self.unknown == 0 && self.errors == 0
    }

    /// One line: `AVPFS-VERSIONS tag=T reads=N v1=A v2=B unknown=U
    /// errors=E stale=S`.
    pub fn line(&self, tag: &str) -> String {
        let reads: u64 = self.counts.iter().sum::<u64>() + self.unknown + self.errors;
        let mut s = format!("AVPFS-VERSIONS tag={tag} reads={reads}");
        for (i, n) in self.counts.iter().enumerate() {
            s.push_str(&format!(" v{}={n}", i + 1));
        }
        s.push_str(&format!(" unknown={} errors={} stale={}", self.unknown, self.errors, self.stale));
        if let Some(p) = &self.first_problem {
            s.push_str(&format!(" first-problem={p}"));
        }
        s
    }

    fn problem(&mut self, what: String) {
        self.first_problem.get_or_insert(what);
    }
}

/// A held file or directory, or none (open anew each time).
enum Held {
    File(File),
    Dir(Dir),
}

impl Held {
    fn open(path: &Path) -> io::Result<Held> {
        if std::fs::metadata(path)?.is_dir() {
            Ok(Held::Dir(Dir::open_path(path)?))
        } else {
            Ok(Held::File(File::open(path)?))
        }
    }

    fn sum(&self) -> io::Result<u64> {
        match self {
            Held::File(f) => Ok(fnv1a(&sys::read_all(f)?)),
            Held::Dir(d) => dir_sum(d),
        }
    }
}

/// Reads `v.path` whole, again and again, until `v.duration` has passed
/// or the `stop` marker appears, and counts what it read. Prints (and
/// flushes) `AVPFS-VERSIONS-START tag=T` after the first read and
/// `AVPFS-VERSIONS-SEEN tag=T version=N read=I` whenever it reads a
/// version other than the one before; the caller prints the returned
/// [`Tally`]. An error here is a failure to set up (the held open);
/// failed reads are counted.
pub fn verify_versions(v: &Verify) -> io::Result<Tally> {
    let held = if v.hold { Some(Held::open(&v.path)?) } else { None };
    let mut t = Tally { counts: vec![0; v.versions.len()], ..Tally::default() };
    let (start, mut out) = (Instant::now(), io::stdout());
    let (mut last, mut changed, mut read) = (None, false, 0u64);
    loop {
        // The marker is looked at before the read: a change complete
        // before the marker was made must show in this read.
        if let Some(m) = &v.marks {
            if m.exists("stop") {
                break;
            }
            changed = changed || m.exists("changed");
        }
        read += 1;
        let sum = match &held {
            Some(h) => h.sum(),
            None => Held::open(&v.path).and_then(|h| h.sum()),
        };
        match sum {
            Ok(sum) => match v.versions.iter().position(|&k| k == sum) {
                Some(i) => {
                    t.counts[i] += 1;
                    if changed && i + 1 != v.versions.len() {
                        t.stale += 1;
                    }
                    if last != Some(i) {
                        if let Some(m) = &v.marks {
                            if let Err(e) = m.ack(i) {
                                t.errors += 1;
                                t.problem(format!("ack:{e}").replace(' ', "_"));
                            }
                        }
                        let what = if last.is_none() { "START" } else { "SEEN" };
                        writeln!(out, "AVPFS-VERSIONS-{what} tag={} version={} read={read}", v.tag, i + 1)?;
                        out.flush()?;
                        last = Some(i);
                    }
                }
                None => {
                    t.unknown += 1;
                    t.problem(format_sum(sum));
                }
            },
            Err(e) => {
                t.errors += 1;
                t.problem(e.to_string().replace(' ', "_"));
            }
        }
        if start.elapsed() >= v.duration {
            break;
        }
        std::thread::sleep(v.period);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_of(data: &[u8]) -> u64 {
        fnv1a(data)
    }

    #[test]
    fn a_directory_sum_covers_names_sizes_and_contents() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("r");
        std::fs::create_dir(&r).unwrap();
        std::fs::write(r.join("a"), b"one").unwrap();
        std::fs::write(r.join("b"), b"two").unwrap();
        let first = content_sum(&r).unwrap();
        std::fs::write(r.join("b"), b"twO").unwrap();
        let changed = content_sum(&r).unwrap();
        std::fs::rename(r.join("b"), r.join("c")).unwrap();
        let renamed = content_sum(&r).unwrap();
        assert!(first != changed && changed != renamed && first != renamed);
        assert_eq!(content_sum(&r.join("a")).unwrap(), sum_of(b"one"));
        assert_eq!(parse_sum(&format_sum(first)), Some(first));
    }

    /// The old file stays whole for its readers; new opens get the new one.
    #[test]
    fn install_replaces_whole_and_keeps_the_old_file_for_its_readers() {
        let d = tempfile::tempdir().unwrap();
        let (live, new) = (d.path().join("prog"), d.path().join("prog.v2"));
        std::fs::write(&live, vec![1u8; 100_000]).unwrap();
        std::fs::write(&new, vec![2u8; 50_000]).unwrap();
        let old = File::open(&live).unwrap();
        let half = sys::pread(&old, 0, 50_000).unwrap();
        install(&new, &live).unwrap();
        let rest = sys::pread(&old, 50_000, 50_000).unwrap();
        assert_eq!([half, rest].concat(), vec![1u8; 100_000]);
        assert_eq!(std::fs::read(&live).unwrap(), vec![2u8; 50_000]);
        assert!(!d.path().join(".prog.new").exists());
    }

    /// What the documentation warns of: overwriting in place (truncate,
    /// then write) gives a reader that is half-way through a mix of both
    /// versions, which the checksum check reports as unknown.
    #[test]
    fn overwriting_in_place_gives_a_reader_a_mix() {
        let d = tempfile::tempdir().unwrap();
        let live = d.path().join("data");
        let (v1, v2) = (vec![1u8; 100_000], vec![2u8; 100_000]);
        std::fs::write(&live, &v1).unwrap();
        let reader = File::open(&live).unwrap();
        let half = sys::pread(&reader, 0, 50_000).unwrap();
        std::fs::write(&live, &v2).unwrap();
        let rest = sys::pread(&reader, 50_000, 50_000).unwrap();
        let seen = sum_of(&[half, rest].concat());
        assert!(seen != sum_of(&v1) && seen != sum_of(&v2));
    }

    #[test]
    fn exchange_swaps_two_directories() {
        let d = tempfile::tempdir().unwrap();
        let (live, staged) = (d.path().join("release"), d.path().join("release.new"));
        for (dir, text) in [(&live, "v1"), (&staged, "v2")] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("lib"), text).unwrap();
        }
        let held = Dir::open_path(&live).unwrap();
        exchange(&staged, &live).unwrap();
        assert_eq!(std::fs::read(live.join("lib")).unwrap(), b"v2");
        assert_eq!(std::fs::read(staged.join("lib")).unwrap(), b"v1");
        assert_eq!(held.read_file("lib").unwrap(), b"v1");
        let e = exchange(&live, &d.path().join("missing")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    /// A reader during updates by rename sees only known versions, and the
    /// marks tell it when to stop; a held reader keeps the first version.
    #[test]
    fn verify_counts_versions_and_finds_unknown_content() {
        let d = tempfile::tempdir().unwrap();
        let (live, marks) = (d.path().join("data"), d.path().join("marks"));
        std::fs::create_dir(&marks).unwrap();
        let versions: Vec<Vec<u8>> = (1..=3u8).map(|i| vec![i; 20_000]).collect();
        std::fs::write(&live, &versions[0]).unwrap();
        let v = |hold, tag: &str| Verify {
            path: live.clone(),
            versions: versions.iter().map(|c| sum_of(c)).collect(),
            hold,
            period: Duration::from_millis(1),
            duration: Duration::from_secs(30),
            marks: Some(Marks { dir: marks.clone(), ack: Some(tag.into()) }),
            tag: tag.into(),
        };
        let (reopen, held) = (v(false, "reopen"), v(true, "held"));
        let readers =
            [std::thread::spawn(move || verify_versions(&reopen)), std::thread::spawn(move || verify_versions(&held))];
        while !marks.join("seen-held-v1").exists() || !marks.join("seen-reopen-v1").exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
        for (i, content) in versions.iter().enumerate().skip(1) {
            let src = d.path().join(format!("v{i}"));
            std::fs::write(&src, content).unwrap();
            install(&src, &live).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::write(marks.join("changed"), b"").unwrap();
        while !marks.join("seen-reopen-v3").exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(marks.join("stop"), b"").unwrap();
        let [reopen, held] = readers.map(|r| r.join().unwrap().unwrap());
        assert!(reopen.clean() && reopen.stale == 0, "{}", reopen.line("reopen"));
        assert!(reopen.counts[2] > 0, "{}", reopen.line("reopen"));
        assert!(held.clean() && held.counts[1] == 0 && held.counts[2] == 0, "{}", held.line("held"));
        assert!(held.stale > 0, "the held reader keeps version 1 after the change");

        // Content that is no known version is counted and named.
        std::fs::write(&live, b"something else").unwrap();
        let mut once = v(false, "once");
        once.duration = Duration::ZERO;
        once.marks = None;
        let t = verify_versions(&once).unwrap();
        assert_eq!((t.unknown, t.errors), (1, 0));
        assert_eq!(t.first_problem, Some(format_sum(sum_of(b"something else"))));
        assert!(t.line("once").starts_with("AVPFS-VERSIONS tag=once reads=1 v1=0 v2=0 v3=0 unknown=1"));
    }
}
