//! The command line: the arguments (clap), and the [`Config`] they make
//! (`TryFrom<Cli>`), checked and with the presets applied.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{Config, GuestConfig, MemoryHandles, Mode};
use crate::contenders::{Contender, Programs};
use crate::error::Error;
use crate::guest::{GuestSizes, GuestWorkload};
use crate::procstat::nproc;
use crate::share::{DirKind, DiskFs};
use crate::workloads::{Sizes, Workload};

/// Benchmarks avpfs side by side with virtiofsd and the host (level 1: the
/// daemons driven by an in-process vhost-user front end, no guest), or with
/// virtiofsd and QEMU's 9p server under a real guest (level 2).
#[derive(Debug, Parser, Clone)]
#[command(name = "avpfs-bench", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// 1: the daemons alone (results level1.*); 2: a real guest under QEMU
    /// (results level2.*; the options marked "level 2" apply).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub level: u8,

    /// A quick run (a few minutes): 10 000-file tree, 3 repetitions (level 2:
    /// 2 000 files, 64 MiB file, 3 repetitions). The default.
    #[arg(long, conflicts_with = "full")]
    pub quick: bool,

    /// A full run: 100 000-file tree, 1 million files for the memory figures,
    /// 5 repetitions, tmpfs and disk (level 2: 10 000 files, 256 MiB file,
    /// larger tarball, 5 repetitions).
    #[arg(long)]
    pub full: bool,

    /// Where the results go (level1.md, level1.svg, level1.json, level1.csv; or level2.*).
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,

    /// Workloads to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workloads: Vec<Workload>,

    /// Contenders (default: avpfs,virtiofsd,host; level 2: avpfs,virtiofsd,9p;
    /// level 2 also has avpfs-9p, avpfs's 9P server over vsock, and
    /// 9p-mapped, QEMU's 9p with security_model=mapped-xattr).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub contenders: Vec<Contender>,

    /// Where the shared directory lives (default: tmpfs; --full: tmpfs,disk).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub dir_kind: Vec<DirKind>,

    /// Parent directory of the share for --dir-kind disk.
    #[arg(long, default_value = "/var/tmp")]
    pub disk_dir: PathBuf,

    /// Size of the ext4 image made under --disk-dir for the disk share and
    /// mounted through a loop device (sparse: only what the run writes takes
    /// room), so every run starts from the same empty file system; 0 puts the
    /// share on the file system of --disk-dir itself, as it is.
    #[arg(long, default_value_t = 8)]
    pub disk_image_gib: u64,

    /// Repetitions (default: 3 quick, 5 full).
    #[arg(long)]
    pub reps: Option<usize>,

    /// Files of the metadata tree (level 2: N of create, stat, readdir, unlink).
    #[arg(long)]
    pub files: Option<usize>,

    /// Files looked up for the memory figures (a second tree when larger than --files).
    #[arg(long)]
    pub memory_files: Option<usize>,

    /// Requests in flight per queue, one case each (the largest is also used with N queues).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub depths: Vec<usize>,

    /// N: request queues of the multi-queue cases (avpfs only; default: the number of cores).
    #[arg(long)]
    pub queues: Option<usize>,

    /// Each run repeats its workload (untimed clean-up between passes) until
    /// it has measured this many seconds (default: 0.5 quick, 2 full).
    #[arg(long)]
    pub min_time: Option<f64>,

    /// Level 1: the front end polls the call eventfd for the daemon's signal
    /// for up to this many µs (yielding the CPU between looks) before it
    /// sleeps on it, as a KVM vCPU halt-polls for an interrupt (halt_poll_ns,
    /// 200 µs by default) before it sleeps; it reads the used ring on a
    /// signal, as a guest does. 0: sleep at once, so every reply also pays
    /// for waking the front end's thread.
    #[arg(long, default_value_t = 200)]
    pub fe_poll_us: u64,

    /// Skip the memory figures.
    #[arg(long)]
    pub no_memory: bool,

    /// Inode mode of both daemons for the memory probe: auto (the default:
    /// `--inode-file-handles=mandatory` in full mode or when the probe has
    /// more files than descriptors, else each daemon's default), default
    /// (never pass the option), never, prefer, mandatory.
    #[arg(long, value_enum, default_value = "auto")]
    pub memory_file_handles: MemoryHandles,

    /// Level 2: guest workloads to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub guest_workloads: Vec<GuestWorkload>,

    /// Level 2: the guest kernel (fetch-kernel.sh's output directory;
    /// default: target/guest/kernel-stable of the workspace).
    #[arg(long)]
    pub guest_kernel: Option<PathBuf>,

    /// Level 2: the static workload runner (scripts/guest/build-guest-workload.sh
    /// prints its path; default: looked up in the target directories).
    #[arg(long)]
    pub guest_workload_bin: Option<PathBuf>,

    /// Level 2: scripts/guest/run-guest.sh (default: the workspace's).
    #[arg(long)]
    pub run_guest: Option<PathBuf>,

    /// Level 2: the QEMU program (default: $QEMU, else qemu-system-x86_64).
    #[arg(long)]
    pub qemu: Option<String>,

    /// Level 2: guest vCPUs.
    #[arg(long, default_value_t = 2)]
    pub guest_smp: usize,

    /// Level 2: guest memory (QEMU -m, also the memfd backend's size).
    #[arg(long, default_value = "1G")]
    pub guest_mem: String,

    /// Level 2: seconds one guest may run (default: 900 quick, 1800 full).
    #[arg(long)]
    pub guest_timeout: Option<u64>,

    /// Level 2: untimed guest boots (of the first contender) before the
    /// repetitions, so that no contender pays for a cold host (page cache,
    /// QEMU's first start).
    #[arg(long, default_value_t = 1)]
    pub guest_warmup: usize,

    /// The virtio-fs daemons' `--cache` mode (the same for avpfs and
    /// virtiofsd): auto (virtiofsd's default) or never (no guest page cache,
    /// like 9p's cache=none), metadata, always.
    #[arg(long, default_value = "auto", value_parser = ["auto", "never", "metadata", "always"])]
    pub cache: String,

    /// Level 2: the 9p mounts' cache mode (run-guest.sh's default: none),
    /// QEMU's 9p and avpfs-9p alike.
    #[arg(long, default_value = "none")]
    pub ninep_cache: String,

    /// Level 2: the guest's static 9P-over-vsock mount helper for avpfs-9p
    /// (scripts/guest/build-9p-mount.sh prints its path; default: looked up
    /// in the target directories).
    #[arg(long)]
    pub guest_9p_mount_bin: Option<PathBuf>,

    /// Level 2: directories packed into the tarball the tar workload extracts
    /// (default: the registry sources of crates in Cargo.lock: libc; full mode
    /// adds syn, clap_builder and serde).
    #[arg(long, value_delimiter = ',')]
    pub tar_source: Vec<PathBuf>,

    /// Level 2: M, the 4 KiB files of smallread (default: 1000 quick, 5000 full).
    #[arg(long)]
    pub guest_small_files: Option<usize>,

    /// Level 2: MiB of the sequential/random I/O file (default: 64 quick, 256 full).
    #[arg(long)]
    pub guest_seq_mib: Option<u64>,

    /// Level 2: 4 KiB random reads, and random writes (default: 2000 quick, 10000 full).
    #[arg(long)]
    pub guest_rand_ops: Option<usize>,

    /// The avpfs binary (default: beside this program, or target/release/avpfs).
    #[arg(long)]
    pub avpfs_bin: Option<PathBuf>,

    /// The virtiofsd binary (default: TOOLS_DIR/virtiofsd/bin/virtiofsd, installed when missing).
    #[arg(long)]
    pub virtiofsd_bin: Option<PathBuf>,

    /// Where contenders are installed (default: ~/.cache/avpfs-bench).
    #[arg(long)]
    pub tools_dir: Option<PathBuf>,

    /// Never install anything: fail when a contender is missing.
    #[arg(long)]
    pub no_install: bool,

    /// Extra avpfs arguments (one string, split on spaces).
    #[arg(long, default_value = "--sandbox none --seccomp none", allow_hyphen_values = true)]
    pub avpfs_args: String,

    /// Extra virtiofsd arguments (one string, split on spaces). Its defaults
    /// otherwise (file handles preferred, no thread pool).
    #[arg(long, default_value = "--sandbox none --seccomp none", allow_hyphen_values = true)]
    pub virtiofsd_args: String,
}

impl TryFrom<Cli> for Config {
    type Error = Error;

    fn try_from(cli: Cli) -> Result<Config, Error> {
        let mode = if cli.full { Mode::Full } else { Mode::Quick };
        let full = mode == Mode::Full;
        let files = cli.files.unwrap_or(if full { 100_000 } else { 10_000 });
        let sizes = Sizes {
            files,
            per_dir: 1000.min(files.max(1)),
            memory_files: cli.memory_files.unwrap_or(if full { 1_000_000 } else { files }),
            create_files: if full { 20_000 } else { 5_000 }.min(files.max(100)),
            rand_ops: if full { 100_000 } else { 20_000 },
            rand_file_bytes: if full { 1 << 30 } else { 256 << 20 },
            seq_bytes: if full { 2 << 30 } else { 1 << 30 },
            readdir_buf: 4096,
        };
        let mut depths = cli.depths.clone();
        depths.sort_unstable();
        depths.dedup();
        if depths.is_empty() || depths[0] == 0 || depths[depths.len() - 1] > 64 {
            return Err(Error::Usage("--depths takes values from 1 to 64".into()));
        }
        if files == 0 {
            return Err(Error::Usage("--files must be at least 1".into()));
        }
        let mut contenders = cli.contenders.clone();
        if contenders.is_empty() {
            contenders = if cli.level == 2 {
                vec![Contender::Avpfs, Contender::Virtiofsd, Contender::NineP]
            } else {
                vec![Contender::Avpfs, Contender::Virtiofsd, Contender::Host]
            };
        }
        let mut seen = Vec::new();
        contenders.retain(|c| {
            !seen.contains(c) && {
                seen.push(*c);
                true
            }
        });
        let wrong = |c: &Contender| if cli.level == 2 { *c == Contender::Host } else { c.is_guest_only() };
        if let Some(c) = contenders.iter().find(|c| wrong(c)) {
            return Err(Error::Usage(format!("contender {} is not part of level {}", c.name(), cli.level)));
        }
        let preset = if full { GuestSizes::FULL } else { GuestSizes::QUICK };
        let guest_sizes = GuestSizes {
            files: cli.files.unwrap_or(preset.files).max(1),
            small_files: cli.guest_small_files.unwrap_or(preset.small_files).max(1),
            seq_bytes: cli.guest_seq_mib.map_or(preset.seq_bytes, |m| m.max(1) << 20),
            rand_ops: cli.guest_rand_ops.unwrap_or(preset.rand_ops).max(1),
            readdir_passes: preset.readdir_passes,
        };
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let guest = GuestConfig {
            kernel: cli.guest_kernel.clone().unwrap_or_else(|| workspace.join("target/guest/kernel-stable")),
            runner: cli.guest_workload_bin.clone(),
            run_guest: cli.run_guest.clone().unwrap_or_else(|| workspace.join("scripts/guest/run-guest.sh")),
            qemu: cli
                .qemu
                .clone()
                .or_else(|| std::env::var("QEMU").ok().filter(|q| !q.is_empty()))
                .unwrap_or_else(|| "qemu-system-x86_64".into()),
            smp: cli.guest_smp.clamp(1, 64),
            mem: cli.guest_mem.clone(),
            warmup: cli.guest_warmup,
            timeout_s: cli.guest_timeout.unwrap_or(if full { 1800 } else { 900 }),
            ninep_cache: cli.ninep_cache.clone(),
            ninep_mount_bin: cli.guest_9p_mount_bin.clone(),
            tar_sources: cli.tar_source.clone(),
            sizes: guest_sizes,
            workloads: if cli.guest_workloads.is_empty() {
                GuestWorkload::ALL.to_vec()
            } else {
                GuestWorkload::ALL.into_iter().filter(|w| cli.guest_workloads.contains(w)).collect()
            },
        };
        let workloads = if cli.workloads.is_empty() {
            Workload::ALL.to_vec()
        } else {
            Workload::ALL.into_iter().filter(|w| cli.workloads.contains(w)).collect()
        };
        let dir_kinds = if !cli.dir_kind.is_empty() {
            cli.dir_kind.clone()
        } else if full {
            vec![DirKind::Tmpfs, DirKind::Disk]
        } else {
            vec![DirKind::Tmpfs]
        };
        let tools_dir = cli.tools_dir.clone().unwrap_or_else(|| {
            std::env::var_os("HOME").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from).join(".cache/avpfs-bench")
        });
        let split = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        Ok(Config {
            level: cli.level,
            mode,
            out: cli.out.clone(),
            workloads,
            contenders,
            dir_kinds,
            disk_dir: cli.disk_dir.clone(),
            disk_fs: match cli.disk_image_gib {
                0 => DiskFs::Directory,
                gib => DiskFs::Image { gib },
            },
            reps: cli.reps.unwrap_or(if full { 5 } else { 3 }).max(1),
            sizes,
            min_time: std::time::Duration::from_secs_f64(
                cli.min_time.unwrap_or(if full { 2.0 } else { 0.5 }).clamp(0.0, 600.0),
            ),
            fe_poll: std::time::Duration::from_micros(cli.fe_poll_us.min(1_000_000)),
            depths,
            queues: cli.queues.unwrap_or_else(nproc).clamp(1, 64),
            cache: cli.cache.clone(),
            memory: !cli.no_memory,
            memory_file_handles: cli.memory_file_handles,
            guest,
            programs: Programs {
                avpfs_bin: cli.avpfs_bin.clone(),
                virtiofsd_bin: cli.virtiofsd_bin.clone(),
                tools_dir,
                install: !cli.no_install,
                avpfs_args: split(&cli.avpfs_args),
                virtiofsd_args: split(&cli.virtiofsd_args),
            },
            command_line: std::env::args().collect::<Vec<_>>().join(" "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_is_the_default_and_full_scales_up() {
        let q = Config::try_from(Cli::parse_from(["avpfs-bench"])).unwrap();
        assert_eq!((q.mode, q.reps, q.sizes.files), (Mode::Quick, 3, 10_000));
        assert_eq!(q.dir_kinds, vec![DirKind::Tmpfs]);
        assert_eq!(q.workloads, Workload::ALL.to_vec());
        assert_eq!(q.workloads.len(), 8);
        let f = Config::try_from(Cli::parse_from(["avpfs-bench", "--full"])).unwrap();
        assert_eq!((f.mode, f.reps, f.sizes.files, f.sizes.memory_files), (Mode::Full, 5, 100_000, 1_000_000));
        assert_eq!(f.dir_kinds, vec![DirKind::Tmpfs, DirKind::Disk]);
        assert_eq!(f.disk_fs, DiskFs::Image { gib: 8 });
        assert_eq!(q.contenders, vec![Contender::Avpfs, Contender::Virtiofsd, Contender::Host]);
    }

    #[test]
    fn level_two_has_its_own_contenders_and_sizes() {
        let q = Config::try_from(Cli::parse_from(["avpfs-bench", "--level", "2"])).unwrap();
        assert_eq!(q.level, 2);
        assert_eq!(q.contenders, vec![Contender::Avpfs, Contender::Virtiofsd, Contender::NineP]);
        assert_eq!(q.guest.sizes, GuestSizes::QUICK);
        assert_eq!(q.guest.workloads.len(), GuestWorkload::ALL.len());
        let f = Config::try_from(Cli::parse_from([
            "avpfs-bench",
            "--level=2",
            "--full",
            "--files",
            "500",
            "--guest-workloads",
            "tar,create",
        ]))
        .unwrap();
        assert_eq!((f.reps, f.guest.sizes.files, f.guest.sizes.seq_bytes), (5, 500, 256 << 20));
        assert_eq!(f.guest.workloads, vec![GuestWorkload::Create, GuestWorkload::Tar]);
        assert!(Config::try_from(Cli::parse_from(["avpfs-bench", "--level", "2", "--contenders", "host"])).is_err());
        assert!(Config::try_from(Cli::parse_from(["avpfs-bench", "--contenders", "9p"])).is_err());
        for c in ["avpfs-9p", "9p-mapped"] {
            assert!(Config::try_from(Cli::parse_from(["avpfs-bench", "--contenders", c])).is_err(), "{c}");
        }
        assert!(Cli::try_parse_from(["avpfs-bench", "--level", "3"]).is_err());
    }

    #[test]
    fn level_two_takes_the_9p_contenders_in_the_order_given() {
        let c = Config::try_from(Cli::parse_from([
            "avpfs-bench",
            "--level",
            "2",
            "--contenders",
            "avpfs-9p,9p,9p-mapped,avpfs,9p",
            "--ninep-cache",
            "loose",
        ]))
        .unwrap();
        assert_eq!(
            c.contenders,
            vec![Contender::AvpfsNineP, Contender::NineP, Contender::NinePMapped, Contender::Avpfs]
        );
        assert_eq!(c.guest.ninep_cache, "loose");
        assert!(c.guest.ninep_mount_bin.is_none());
        let c = Config::try_from(Cli::parse_from([
            "avpfs-bench",
            "--level=2",
            "--contenders=avpfs-9p",
            "--guest-9p-mount-bin",
            "/m",
        ]))
        .unwrap();
        assert_eq!(c.guest.ninep_mount_bin.as_deref(), Some(std::path::Path::new("/m")));
    }

    #[test]
    fn options_are_checked() {
        let c = Config::try_from(Cli::parse_from([
            "avpfs-bench",
            "--workloads",
            "seqread,lookup",
            "--contenders",
            "avpfs,host",
            "--depths",
            "4,1,4",
            "--virtiofsd-args",
            "--thread-pool-size 4",
        ]))
        .unwrap();
        assert_eq!(c.workloads, vec![Workload::Lookup, Workload::Seqread]);
        assert_eq!(c.contenders, vec![Contender::Avpfs, Contender::Host]);
        assert_eq!(c.depths, vec![1, 4]);
        assert_eq!(c.programs.virtiofsd_args, vec!["--thread-pool-size", "4"]);
        assert!(Config::try_from(Cli::parse_from(["avpfs-bench", "--depths", "0"])).is_err());
        assert!(Cli::try_parse_from(["avpfs-bench", "--quick", "--full"]).is_err());
    }
}
