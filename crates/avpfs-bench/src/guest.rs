//! Level 2's guest protocol: the workloads the guest runner
//! (`examples/guest-workload.rs`, a static binary in the guest's initramfs)
//! times with CLOCK_MONOTONIC, their sizes, and the lines it prints on the
//! serial console for the host to collect. Shared by both sides so that the
//! names and the line format cannot drift apart.

use serde::Serialize;

/// What a workload's rate counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestUnit {
    /// Operations (files, system calls) per second.
    Ops,
    /// Bytes (shown as MB/s, 10^6 bytes).
    Bytes,
}

impl GuestUnit {
    /// The rate's label.
    pub fn rate_label(self) -> &'static str {
        match self {
            GuestUnit::Ops => "ops/s",
            GuestUnit::Bytes => "MB/s",
        }
    }
}

/// A workload the guest runner times, in the order it runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GuestWorkload {
    /// Create N empty files in one directory (open O_CREAT|O_EXCL + close).
    Create,
    /// After drop_caches, lstat each of the N files (cold: LOOKUP each).
    Stat,
    /// After drop_caches, read the directory of N files (getdents64 to the end), a few passes.
    Readdir,
    /// Unlink the N files.
    Unlink,
    /// Extract a tarball of a source tree (busybox tar, from the initramfs) into the share.
    Tar,
    /// After drop_caches, open + read 4 KiB + close each of M small files.
    Smallread,
    /// Write a file in 1 MiB writes, then fsync.
    Seqwrite,
    /// After drop_caches, read that file in 1 MiB reads.
    Seqread,
    /// After drop_caches, 4 KiB preads at distinct random offsets of that file (POSIX_FADV_RANDOM).
    Randread,
    /// 4 KiB pwrites at distinct random offsets of that file, then fsync.
    Randwrite,
}

impl GuestWorkload {
    /// Every workload, in run order.
    pub const ALL: [GuestWorkload; 10] = [
        GuestWorkload::Create,
        GuestWorkload::Stat,
        GuestWorkload::Readdir,
        GuestWorkload::Unlink,
        GuestWorkload::Tar,
        GuestWorkload::Smallread,
        GuestWorkload::Seqwrite,
        GuestWorkload::Seqread,
        GuestWorkload::Randread,
        GuestWorkload::Randwrite,
    ];

    /// The name used on the console and in reports.
    pub fn name(self) -> &'static str {
        match self {
            GuestWorkload::Create => "create",
            GuestWorkload::Stat => "stat",
            GuestWorkload::Readdir => "readdir",
            GuestWorkload::Unlink => "unlink",
            GuestWorkload::Tar => "tar",
            GuestWorkload::Smallread => "smallread",
            GuestWorkload::Seqwrite => "seqwrite",
            GuestWorkload::Seqread => "seqread",
            GuestWorkload::Randread => "randread",
            GuestWorkload::Randwrite => "randwrite",
        }
    }

    /// The workload called `name`.
    pub fn from_name(name: &str) -> Option<GuestWorkload> {
        GuestWorkload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// A metadata workload (the issue's "metadata": create, stat, readdir,
    /// unlink and the tar extract).
    pub fn is_metadata(self) -> bool {
        matches!(
            self,
            GuestWorkload::Create
                | GuestWorkload::Stat
                | GuestWorkload::Readdir
                | GuestWorkload::Unlink
                | GuestWorkload::Tar
        )
    }

    /// A write workload (seqwrite, randwrite).
    pub fn is_write(self) -> bool {
        matches!(self, GuestWorkload::Seqwrite | GuestWorkload::Randwrite)
    }

    /// What its rate counts.
    pub fn unit(self) -> GuestUnit {
        match self {
            GuestWorkload::Seqwrite | GuestWorkload::Seqread => GuestUnit::Bytes,
            _ => GuestUnit::Ops,
        }
    }

    /// What one run does, with the sizes, for the report.
    pub fn describe(self, s: &GuestSizes) -> String {
        match self {
            GuestWorkload::Create => format!("create {} empty files in one directory", s.files),
            GuestWorkload::Stat => format!("drop_caches, then lstat each of the {} files", s.files),
            GuestWorkload::Readdir => format!(
                "drop_caches, then read the directory of {} files to the end, {} times (ops: entries)",
                s.files, s.readdir_passes
            ),
            GuestWorkload::Unlink => format!("unlink the {} files", s.files),
            GuestWorkload::Tar => "busybox tar -xf of the tarball (ops: entries extracted)".into(),
            GuestWorkload::Smallread => {
                format!("drop_caches, then open + read 4 KiB + close each of {} files", s.small_files)
            }
            GuestWorkload::Seqwrite => format!("write {} MiB in 1 MiB writes + fsync", s.seq_bytes >> 20),
            GuestWorkload::Seqread => format!("drop_caches, then read the {} MiB in 1 MiB reads", s.seq_bytes >> 20),
            GuestWorkload::Randread => {
                format!("drop_caches, then {} preads of 4 KiB at distinct random offsets", s.rand_ops)
            }
            GuestWorkload::Randwrite => format!("{} pwrites of 4 KiB at distinct random offsets + fsync", s.rand_ops),
        }
    }
}

/// The sizes of the guest workloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestSizes {
    /// N: files of create, stat, readdir and unlink.
    pub files: usize,
    /// M: 4 KiB files of smallread.
    pub small_files: usize,
    /// Bytes of the seqwrite/seqread file (also the randread/randwrite file).
    pub seq_bytes: u64,
    /// 4 KiB operations of randread and of randwrite.
    pub rand_ops: usize,
    /// Passes of readdir over the directory (the first one after drop_caches).
    pub readdir_passes: usize,
}

impl GuestSizes {
    /// The quick preset.
    pub const QUICK: GuestSizes =
        GuestSizes { files: 2000, small_files: 1000, seq_bytes: 64 << 20, rand_ops: 2000, readdir_passes: 5 };
    /// The full preset.
    pub const FULL: GuestSizes =
        GuestSizes { files: 10_000, small_files: 5000, seq_bytes: 256 << 20, rand_ops: 10_000, readdir_passes: 5 };
}

/// The prefix of a result line.
pub const RESULT: &str = "AVPFS-BENCH";
/// The prefix of a failed workload's line.
pub const FAILURE: &str = "AVPFS-BENCH-ERROR";
/// The prefix of an information line (`AVPFS-BENCH-INFO key value`).
pub const INFO: &str = "AVPFS-BENCH-INFO";
/// The prefix of the line the runner prints just before it starts a
/// workload's clock (`AVPFS-BENCH-START <workload>`): the host samples the
/// daemon's CPU time when it sees this line and again at the result line.
pub const START: &str = "AVPFS-BENCH-START";
/// How long the runner stays idle after its start line and after its result
/// line, so that the host's CPU samples, taken when the lines reach it, fall
/// in time when the daemon has nothing to do (a late sample then counts no
/// other work; the set-up and clean-up of the next workload come after).
pub const MARK_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// One timed workload, as the guest reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestLine {
    /// The workload.
    pub workload: GuestWorkload,
    /// Guest-side wall time (CLOCK_MONOTONIC), seconds.
    pub seconds: f64,
    /// Operations done.
    pub ops: u64,
    /// Bytes read or written (0 for metadata).
    pub bytes: u64,
}

impl GuestLine {
    /// `AVPFS-BENCH create seconds=0.123456789 ops=2000 bytes=0`.
    pub fn format(&self) -> String {
        format!("{RESULT} {} seconds={:.9} ops={} bytes={}", self.workload.name(), self.seconds, self.ops, self.bytes)
    }

    /// The result line within `line` (console noise around it is ignored).
    pub fn parse(line: &str) -> Option<GuestLine> {
        let at = line.find(&format!("{RESULT} "))?;
        let mut f = line[at + RESULT.len() + 1..].split_whitespace();
        let workload = GuestWorkload::from_name(f.next()?)?;
        let mut field = |key: &str| f.next()?.strip_prefix(key)?.strip_prefix('=').map(str::to_string);
        let seconds = field("seconds")?.parse().ok()?;
        let ops = field("ops")?.parse().ok()?;
        let bytes = field("bytes")?.parse().ok()?;
        Some(GuestLine { workload, seconds, ops, bytes })
    }
}

/// A failed workload within `line`: (workload name, message).
pub fn parse_failure(line: &str) -> Option<(String, String)> {
    let at = line.find(&format!("{FAILURE} "))?;
    let rest = line[at + FAILURE.len() + 1..].trim();
    let (name, msg) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((name.to_string(), msg.trim().to_string()))
}

/// The workload a start line within `line` names.
pub fn parse_start(line: &str) -> Option<GuestWorkload> {
    let at = line.find(&format!("{START} "))?;
    GuestWorkload::from_name(line[at + START.len() + 1..].split_whitespace().next()?)
}

/// An information line within `line`: (key, value).
pub fn parse_info(line: &str) -> Option<(String, String)> {
    let at = line.find(&format!("{INFO} "))?;
    let rest = line[at + INFO.len() + 1..].trim();
    let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((k.to_string(), v.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_through_console_noise() {
        let l = GuestLine { workload: GuestWorkload::Seqread, seconds: 1.5, ops: 64, bytes: 64 << 20 };
        let text = format!("[  3.1] junk\r{}\r", l.format());
        assert_eq!(GuestLine::parse(&text), Some(l));
        assert_eq!(GuestLine::parse("AVPFS-BENCH-ERROR tar boom"), None);
        assert_eq!(GuestLine::parse("AVPFS-BENCH nope seconds=1 ops=1 bytes=1"), None);
        assert_eq!(
            parse_failure("x AVPFS-BENCH-ERROR tar no such file\r"),
            Some(("tar".into(), "no such file".into()))
        );
        assert_eq!(parse_info("AVPFS-BENCH-INFO kernel 6.1.0-1"), Some(("kernel".into(), "6.1.0-1".into())));
        assert_eq!(parse_start("[ 9.0] AVPFS-BENCH-START unlink\r"), Some(GuestWorkload::Unlink));
        assert_eq!(parse_start("AVPFS-BENCH-START nope"), None);
        // A start line is neither a result nor a failure.
        assert_eq!(GuestLine::parse("AVPFS-BENCH-START unlink"), None);
        assert_eq!(parse_failure("AVPFS-BENCH-START unlink"), None);
        for w in GuestWorkload::ALL {
            assert_eq!(GuestWorkload::from_name(w.name()), Some(w));
        }
    }
}
