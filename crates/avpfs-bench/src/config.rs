//! The configuration the benchmark runs with, checked and complete: what
//! the modules take as parameters. [`crate::cli`] makes it from the command
//! line (only `MemoryHandles` derives clap's `ValueEnum`, so that its docs
//! are the `--help` text of its flag).

use std::path::PathBuf;

use crate::contenders::{Contender, Programs};
use crate::guest::{GuestSizes, GuestWorkload};
use crate::share::{DirKind, DiskFs};
use crate::workloads::{Sizes, Workload};

/// The inode mode of the daemons in the memory probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MemoryHandles {
    /// mandatory in full mode or when the files outnumber the descriptors, else each daemon's default.
    Auto,
    /// Each daemon's default (no option passed).
    Default,
    /// `--inode-file-handles=never`.
    Never,
    /// `--inode-file-handles=prefer`.
    Prefer,
    /// `--inode-file-handles=mandatory`.
    Mandatory,
}

/// Which preset the sizes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A few minutes.
    Quick,
    /// The sizes.
    Full,
}

/// A checked, complete configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// 1 (the daemons alone) or 2 (a real guest).
    pub level: u8,
    /// The preset.
    pub mode: Mode,
    /// Output directory.
    pub out: PathBuf,
    /// Workloads, in report order.
    pub workloads: Vec<Workload>,
    /// Contenders, in the order of the first repetition.
    pub contenders: Vec<Contender>,
    /// Share locations.
    pub dir_kinds: Vec<DirKind>,
    /// Parent of the disk share.
    pub disk_dir: PathBuf,
    /// The disk share's own file system, or none.
    pub disk_fs: DiskFs,
    /// Repetitions.
    pub reps: usize,
    /// Workload sizes.
    pub sizes: Sizes,
    /// Least measured time per run (passes are repeated until it is reached).
    pub min_time: std::time::Duration,
    /// How long the front end polls for a reply before it sleeps.
    pub fe_poll: std::time::Duration,
    /// Depths of the one-queue cases.
    pub depths: Vec<usize>,
    /// N of the multi-queue cases (1: none).
    pub queues: usize,
    /// The daemons' `--cache` mode.
    pub cache: String,
    /// Measure memory.
    pub memory: bool,
    /// Inode mode of the daemons in the memory probe.
    pub memory_file_handles: MemoryHandles,
    /// Level 2's settings.
    pub guest: GuestConfig,
    /// The daemon programs and their extra arguments.
    pub programs: Programs,
    /// The command line, for the report.
    pub command_line: String,
}

/// Level 2's settings.
#[derive(Debug, Clone)]
pub struct GuestConfig {
    /// fetch-kernel.sh's output directory (vmlinuz, modules/, package).
    pub kernel: PathBuf,
    /// The static workload runner, when given.
    pub runner: Option<PathBuf>,
    /// scripts/guest/run-guest.sh.
    pub run_guest: PathBuf,
    /// The QEMU program.
    pub qemu: String,
    /// Guest vCPUs.
    pub smp: usize,
    /// Guest memory (`-m`).
    pub mem: String,
    /// Untimed boots before the repetitions.
    pub warmup: usize,
    /// Seconds one guest may run.
    pub timeout_s: u64,
    /// The 9p mounts' `cache=` mode (QEMU's 9p and avpfs-9p).
    pub ninep_cache: String,
    /// avpfs-9p: the guest's static mount helper (`avpfs-9p-mount`).
    pub ninep_mount_bin: Option<PathBuf>,
    /// Directories of the tarball (default: registry sources, see [`crate::level2::default_tar_sources`]).
    pub tar_sources: Vec<PathBuf>,
    /// Workload sizes.
    pub sizes: GuestSizes,
    /// Workloads, in run order.
    pub workloads: Vec<GuestWorkload>,
}
