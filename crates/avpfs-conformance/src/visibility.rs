//! How soon a change made by one client of a tree shows to another: the
//! visibility delay per cache policy, measured on one clock.
//!
//! Three parties share a directory: a watcher (guest B, on the cache
//! policy under test), a writer (the host, or guest A) and the driver (on
//! the host). The tree is made beforehand by [`prepare`]: one
//! subdirectory per round. Each round:
//!
//! 1. the watcher reads the old state of the round's four objects ([`Change`])
//!    and creates `ready-R` ([`watch`]);
//! 2. the driver makes the change itself, or creates `go-R` and guest A,
//!    which waits for it ([`write_rounds`]), makes it; both end it with
//!    `done-R` ([`change`]);
//! 3. the watcher polls the four objects and creates `seen-R-CHANGE` the
//!    first time it sees each change; the driver ([`measure`]) times, on
//!    the host's clock, from the moment the change was complete to the
//!    moment each `seen` file appears.
//!
//! Creating a file is a request the host sees when the guest's system call
//! returns, whatever the cache policy, so the acknowledgements reach the
//! driver at once; the guests' clocks are never compared. The watcher
//! also looks for `done-R` before each poll: on a mount with no caching
//! the `done` marker shows at once, so a poll that started after it was
//! seen must see the change ("stale" polls are counted and must be zero
//! for `never`). Guest A itself should use `cache never` so that it sees
//! `go-R` at once.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys;

/// The name and attribute timeout of the `metadata` and `auto` policies.
pub const ATTR_TIMEOUT: Duration = Duration::from_secs(1);
/// What the bounded policies get on top of [`ATTR_TIMEOUT`]: guests under
/// emulation are slow and their timers coarse.
pub const SLACK: Duration = Duration::from_secs(3);
/// How long the driver waits for a change under `always`, which promises
/// nothing.
pub const ALWAYS_CAP: Duration = Duration::from_millis(2500);
/// Pause between two polls of the watcher and between two looks of the
/// driver.
const POLL: Duration = Duration::from_millis(10);
/// How long anyone waits for the other side to get to a round.
const ROUND_WAIT: Duration = Duration::from_secs(300);

/// The cache policy of the watcher's mount (avpfs `--cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing cached.
    Never,
    /// Names and attributes for a second.
    Metadata,
    /// Names and attributes for a second, data while open.
    Auto,
    /// Everything for a day.
    Always,
}

impl Mode {
    /// Every mode, in the order of the table.
    pub const ALL: [Mode; 4] = [Mode::Never, Mode::Metadata, Mode::Auto, Mode::Always];

    /// `never`, `metadata`, `auto` or `always`.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The `--cache` value.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Never => "never",
            Mode::Metadata => "metadata",
            Mode::Auto => "auto",
            Mode::Always => "always",
        }
    }

    /// The delay within which a change must show (`None`: no promise).
    pub fn bound(self) -> Option<Duration> {
        match self {
            Mode::Never | Mode::Metadata | Mode::Auto => Some(ATTR_TIMEOUT + SLACK),
            Mode::Always => None,
        }
    }

    /// How long the driver waits for a change to show.
    pub fn cap(self) -> Duration {
        self.bound().unwrap_or(ALWAYS_CAP)
    }

    /// Whether a poll that starts after the change is complete must see it.
    pub fn first_poll(self) -> bool {
        self == Mode::Never
    }
}

/// What changes in a round, each on an object of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `inplace`: new bytes written over the old ones (same size), fsync;
    /// the watcher opens and reads it.
    Write,
    /// `replaced`: a new file written beside, fsync, renamed over it; the
    /// watcher opens and reads it.
    Rename,
    /// `list/new` created; the watcher lists `list`.
    Readdir,
    /// `look/new` created; the watcher looks the name up (`lstat`).
    Lookup,
}

impl Change {
    /// Every change, in the order of the table.
    pub const ALL: [Change; 4] = [Change::Write, Change::Rename, Change::Readdir, Change::Lookup];

    /// Its name in markers and reports.
    pub fn name(self) -> &'static str {
        match self {
            Change::Write => "write",
            Change::Rename => "rename",
            Change::Readdir => "readdir",
            Change::Lookup => "lookup",
        }
    }

    /// What the table says it is.
    pub fn describe(self) -> &'static str {
        match self {
            Change::Write => "file content written in place",
            Change::Rename => "file replaced by rename",
            Change::Readdir => "new name in a listing",
            Change::Lookup => "new name looked up",
        }
    }

    fn from_name(name: &str) -> Option<Change> {
        Change::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether the change of the round in `round_dir` shows. Content that
    /// is neither the old nor the new is an error (`InvalidData`).
    pub fn observe(self, round_dir: &Path, round: u32) -> io::Result<bool> {
        let file = |name: &str| {
            let got = std::fs::read(round_dir.join(name))?;
            if got == content(round, true) {
                Ok(true)
            } else if got == content(round, false) {
                Ok(false)
            } else {
                Err(io::Error::new(io::ErrorKind::InvalidData, format!("{name} holds {got:?}")))
            }
        };
        match self {
            Change::Write => file("inplace"),
            Change::Rename => file("replaced"),
            Change::Readdir => {
                for e in std::fs::read_dir(round_dir.join("list"))? {
                    if e?.file_name() == "new" {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Change::Lookup => match std::fs::symlink_metadata(round_dir.join("look/new")) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            },
        }
    }
}

/// The content of a round's files: old or new, of the same size.
fn content(round: u32, new: bool) -> Vec<u8> {
    format!("round {round:4} {} content\n", if new { "new" } else { "old" }).into_bytes()
}

fn round_dir(dir: &Path, round: u32) -> PathBuf {
    dir.join(format!("r{round}"))
}

/// Creates an empty marker file.
fn mark(path: &Path) -> io::Result<()> {
    OpenOptions::new().write(true).create(true).truncate(false).mode(0o644).open(path).map(drop)
}

/// Waits until `path` exists; `TimedOut` after `timeout`.
fn wait_for(path: &Path, timeout: Duration) -> io::Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > timeout {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("{} did not appear", path.display())));
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// Makes the tree of `rounds` rounds in `dir` (which must exist).
pub fn prepare(dir: &Path, rounds: u32) -> io::Result<()> {
    for r in 1..=rounds {
        let d = round_dir(dir, r);
        std::fs::create_dir_all(d.join("list"))?;
        std::fs::create_dir_all(d.join("look"))?;
        std::fs::write(d.join("list/keep"), b"")?;
        std::fs::write(d.join("inplace"), content(r, false))?;
        std::fs::write(d.join("replaced"), content(r, false))?;
    }
    Ok(())
}

/// Makes the four changes of `round` (each complete: written, synced,
/// renamed, created), then creates `done-ROUND`.
pub fn change(dir: &Path, round: u32) -> io::Result<()> {
    let d = round_dir(dir, round);
    let new = content(round, true);
    let f = OpenOptions::new().write(true).open(d.join("inplace"))?;
    f.write_all_at(&new, 0)?;
    sys::fsync(&f)?;
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o644).open(d.join("replaced.new"))?;
    f.write_all(&new)?;
    sys::fsync(&f)?;
    std::fs::rename(d.join("replaced.new"), d.join("replaced"))?;
    mark(&d.join("list/new"))?;
    mark(&d.join("look/new"))?;
    mark(&dir.join(format!("done-{round}")))
}

/// Guest A's part: for each round whose letter in `plan` is `a`, waits for
/// `go-ROUND` and makes the round's [`change`].
pub fn write_rounds(dir: &Path, plan: &str) -> io::Result<()> {
    for (round, _) in rounds(plan).filter(|&(_, w)| w == Writer::Guest) {
        wait_for(&dir.join(format!("go-{round}")), ROUND_WAIT)?;
        change(dir, round)?;
    }
    Ok(())
}

/// Who makes a round's change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// The host, on the shared directory itself (`h` in a plan).
    Host,
    /// Another guest through its own mount (`a` in a plan).
    Guest,
}

impl Writer {
    fn name(self) -> &'static str {
        match self {
            Writer::Host => "host",
            Writer::Guest => "guest",
        }
    }
}

/// The rounds of a plan (`h` and `a` letters, one per round), from 1.
fn rounds(plan: &str) -> impl Iterator<Item = (u32, Writer)> + '_ {
    plan.chars().zip(1..).map(|(c, r)| (r, if c == 'a' { Writer::Guest } else { Writer::Host }))
}

/// Whether `plan` is made of `h` and `a` only, and not empty.
pub fn valid_plan(plan: &str) -> bool {
    !plan.is_empty() && plan.chars().all(|c| c == 'h' || c == 'a')
}

/// What the watcher saw of one change in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    /// The change.
    pub change: Change,
    /// The poll (from 1) that first saw it, if any did.
    pub seen_at: Option<u64>,
    /// Polls that started after `done-R` had shown and did not see it.
    pub stale: u64,
}

/// The watcher (guest B): runs every round of `plan` in `dir`, as the
/// module describes, and prints `AVPFS-WATCH round=R change=C seen=POLL|no
/// stale=N` for each change. Gives up on a round `mode.cap()` plus 2 s
/// after its `ready`. Returns what it saw; [`check_watch`] judges it.
pub fn watch(dir: &Path, mode: Mode, plan: &str) -> io::Result<Vec<Watched>> {
    let mut all = Vec::new();
    let mut out = io::stdout();
    for (round, _) in rounds(plan) {
        let d = round_dir(dir, round);
        for c in Change::ALL {
            if c.observe(&d, round)? {
                return Err(io::Error::other(format!("round {round}: saw the {} change before it was made", c.name())));
            }
        }
        let mut w: Vec<Watched> =
            Change::ALL.iter().map(|&change| Watched { change, seen_at: None, stale: 0 }).collect();
        let done = dir.join(format!("done-{round}"));
        mark(&dir.join(format!("ready-{round}")))?;
        let (start, mut done_seen) = (Instant::now(), false);
        let mut poll = 0;
        while w.iter().any(|x| x.seen_at.is_none()) && start.elapsed() < mode.cap() + Duration::from_secs(2) {
            poll += 1;
            done_seen = done_seen || done.exists();
            for x in w.iter_mut().filter(|x| x.seen_at.is_none()) {
                if x.change.observe(&d, round)? {
                    x.seen_at = Some(poll);
                    mark(&dir.join(format!("seen-{round}-{}", x.change.name())))?;
                } else if done_seen {
                    x.stale += 1;
                }
            }
            std::thread::sleep(POLL);
        }
        for x in &w {
            let seen = x.seen_at.map_or("no".to_string(), |p| p.to_string());
            writeln!(out, "AVPFS-WATCH round={round} change={} seen={seen} stale={}", x.change.name(), x.stale)?;
        }
        out.flush()?;
        all.extend(w);
    }
    Ok(all)
}

/// Judges a watcher's observations: under `never` every change must have
/// shown, on the first poll that started after its `done` marker showed.
pub fn check_watch(mode: Mode, watched: &[Watched]) -> Result<(), String> {
    if !mode.first_poll() {
        return Ok(());
    }
    let wrong: Vec<String> = watched
        .iter()
        .filter(|x| x.seen_at.is_none() || x.stale > 0)
        .map(|x| format!("{}: seen {:?}, {} stale polls after done", x.change.name(), x.seen_at, x.stale))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// One measured delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The watcher's cache policy.
    pub mode: Mode,
    /// Who made the change.
    pub writer: Writer,
    /// What changed.
    pub change: Change,
    /// The round (from 1).
    pub round: u32,
    /// From the change complete to the watcher's acknowledgement, on the
    /// driver's clock; `None`: not within `mode.cap()`.
    pub delay: Option<Duration>,
}

impl Sample {
    /// `AVPFS-VIS cache=M writer=W change=C round=R delay_ms=D|none`.
    pub fn line(&self) -> String {
        let delay = self.delay.map_or("none".to_string(), |d| d.as_millis().to_string());
        format!(
            "AVPFS-VIS cache={} writer={} change={} round={} delay_ms={delay}",
            self.mode.name(),
            self.writer.name(),
            self.change.name(),
            self.round
        )
    }

    /// Parses a [`Sample::line`] (anywhere in `line`).
    pub fn parse(line: &str) -> Option<Sample> {
        let rest = &line[line.find("AVPFS-VIS ")? + "AVPFS-VIS ".len()..];
        let field =
            |key: &str| rest.split_whitespace().find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')));
        let writer = match field("writer")? {
            "host" => Writer::Host,
            "guest" => Writer::Guest,
            _ => return None,
        };
        let delay = match field("delay_ms")? {
            "none" => None,
            ms => Some(Duration::from_millis(ms.parse().ok()?)),
        };
        Some(Sample {
            mode: Mode::from_name(field("cache")?)?,
            writer,
            change: Change::from_name(field("change")?)?,
            round: field("round")?.parse().ok()?,
            delay,
        })
    }
}

/// The driver: for each round of `plan`, waits for the watcher's `ready`,
/// has the change made (by the host here, or by guest A through `go`),
/// and times the watcher's `seen` files from the moment it was complete,
/// for at most `mode.cap()`. Prints and returns one [`Sample`] per change
/// and round.
pub fn measure(dir: &Path, mode: Mode, plan: &str) -> io::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    let mut out = io::stdout();
    for (round, writer) in rounds(plan) {
        wait_for(&dir.join(format!("ready-{round}")), ROUND_WAIT)?;
        match writer {
            Writer::Host => change(dir, round)?,
            Writer::Guest => {
                mark(&dir.join(format!("go-{round}")))?;
                wait_for(&dir.join(format!("done-{round}")), Duration::from_secs(60))?;
            }
        }
        let complete = Instant::now();
        let mut delays: Vec<Option<Duration>> = vec![None; Change::ALL.len()];
        while delays.iter().any(Option::is_none) && complete.elapsed() < mode.cap() {
            for (c, d) in Change::ALL.iter().zip(delays.iter_mut()).filter(|(_, d)| d.is_none()) {
                if dir.join(format!("seen-{round}-{}", c.name())).exists() {
                    // Whole milliseconds, as printed.
                    *d = Some(Duration::from_millis(complete.elapsed().as_millis() as u64));
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for (change, delay) in Change::ALL.into_iter().zip(delays) {
            let s = Sample { mode, writer, change, round, delay };
            writeln!(out, "{}", s.line())?;
            samples.push(s);
        }
        out.flush()?;
    }
    Ok(samples)
}

/// Judges measured delays: under every policy but `always`, each change
/// must have shown within the policy's bound.
pub fn check_samples(samples: &[Sample]) -> Result<(), String> {
    let wrong: Vec<String> = samples
        .iter()
        .filter(|s| s.mode.bound().is_some_and(|b| s.delay.map_or(true, |d| d > b)))
        .map(|s| {
            format!(
                "{} by the {}, round {}: not seen within {:?}",
                s.change.name(),
                s.writer.name(),
                s.round,
                s.mode.cap()
            )
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// Best and median of the delays of one cell, or how many were not seen.
fn cell(delays: &[Option<Duration>], cap: Duration) -> String {
    let mut seen: Vec<u128> = delays.iter().flatten().map(Duration::as_millis).collect();
    seen.sort_unstable();
    let missing = delays.len() - seen.len();
    match (seen.first(), missing) {
        (None, 0) => "–".to_string(),
        (None, n) => format!("not seen in {} s ({n} of {n})", cap.as_secs_f64()),
        (Some(best), 0) => format!("{best} / {}", seen[(seen.len() - 1) / 2]),
        (Some(best), n) => format!(
            "{best} / {}, {n} of {} not seen in {} s",
            seen[(seen.len() - 1) / 2],
            delays.len(),
            cap.as_secs_f64()
        ),
    }
}

/// A Markdown table of samples: one row per policy and change, the best
/// and median delay in milliseconds by writer (the median of an even count
/// is the lower middle one).
pub fn table(samples: &[Sample]) -> String {
    let mut t = String::from(
        "| cache | change | by the host: best / median ms | by another guest: best / median ms | rounds |\n|---|---|---|---|---|\n",
    );
    for mode in Mode::ALL {
        for change in Change::ALL {
            let of = |w: Writer| -> Vec<Option<Duration>> {
                samples
                    .iter()
                    .filter(|s| s.mode == mode && s.change == change && s.writer == w)
                    .map(|s| s.delay)
                    .collect()
            };
            let (host, guest) = (of(Writer::Host), of(Writer::Guest));
            if host.is_empty() && guest.is_empty() {
                continue;
            }
            t.push_str(&format!(
                "| {} | {} | {} | {} | {} + {} |\n",
                mode.name(),
                change.describe(),
                cell(&host, mode.cap()),
                cell(&guest, mode.cap()),
                host.len(),
                guest.len()
            ));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole protocol on one host directory: the watcher, guest A and
    /// the driver as three threads; with no cache anywhere every change
    /// shows on the first poll after it was made.
    #[test]
    fn a_round_trip_on_a_plain_directory() {
        let d = tempfile::tempdir().unwrap();
        let plan = "hah";
        prepare(d.path(), 3).unwrap();
        let (w, a) = (d.path().to_path_buf(), d.path().to_path_buf());
        let watcher = std::thread::spawn(move || watch(&w, Mode::Never, plan));
        let writer = std::thread::spawn(move || write_rounds(&a, plan));
        let samples = measure(d.path(), Mode::Never, plan).unwrap();
        writer.join().unwrap().unwrap();
        let watched = watcher.join().unwrap().unwrap();
        assert_eq!(watched.len(), 12);
        assert_eq!(check_watch(Mode::Never, &watched), Ok(()));
        assert_eq!(samples.len(), 12);
        assert_eq!(check_samples(&samples), Ok(()));
        assert_eq!(samples.iter().filter(|s| s.writer == Writer::Guest).count(), 4);
        for s in &samples {
            assert_eq!(Sample::parse(&format!("x {}\r", s.line())).as_ref(), Some(s));
        }
        // A round already changed is refused by the watcher.
        let e = watch(d.path(), Mode::Never, "h").unwrap_err();
        assert!(e.to_string().contains("before it was made"), "{e}");
    }

    #[test]
    fn mixed_content_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        prepare(d.path(), 1).unwrap();
        std::fs::write(d.path().join("r1/inplace"), b"round    1 nEw content\n").unwrap();
        let e = Change::Write.observe(&d.path().join("r1"), 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(!Change::Rename.observe(&d.path().join("r1"), 1).unwrap());
    }

    #[test]
    fn the_checks_fail_on_late_or_stale_changes() {
        let late = |mode, ms: Option<u64>| Sample {
            mode,
            writer: Writer::Host,
            change: Change::Lookup,
            round: 1,
            delay: ms.map(Duration::from_millis),
        };
        assert_eq!(check_samples(&[late(Mode::Auto, Some(3900)), late(Mode::Always, None)]), Ok(()));
        assert!(check_samples(&[late(Mode::Auto, Some(4100))]).is_err());
        assert!(check_samples(&[late(Mode::Never, None)]).is_err());
        let stale = Watched { change: Change::Write, seen_at: Some(3), stale: 1 };
        assert!(check_watch(Mode::Never, &[stale]).is_err());
        assert_eq!(check_watch(Mode::Auto, &[stale]), Ok(()));
        let unseen = Watched { change: Change::Readdir, seen_at: None, stale: 0 };
        assert!(check_watch(Mode::Never, &[unseen]).is_err());
    }

    #[test]
    fn the_table_has_best_and_median_per_writer() {
        let s = |writer, change, ms: Option<u64>| Sample {
            mode: Mode::Auto,
            writer,
            change,
            round: 1,
            delay: ms.map(Duration::from_millis),
        };
        let samples = [
            s(Writer::Host, Change::Write, Some(30)),
            s(Writer::Host, Change::Write, Some(10)),
            s(Writer::Host, Change::Write, Some(20)),
            s(Writer::Guest, Change::Write, Some(40)),
            s(Writer::Guest, Change::Write, None),
            s(Writer::Host, Change::Lookup, None),
        ];
        let t = table(&samples);
        assert!(
            t.contains("| auto | file content written in place | 10 / 20 | 40 / 40, 1 of 2 not seen in 4 s | 3 + 2 |"),
            "{t}"
        );
        assert!(t.contains("| auto | new name looked up | not seen in 4 s (1 of 1) | – | 1 + 0 |"), "{t}");
        assert!(!t.contains("never"), "{t}");
    }
}
