//! The level-2 workload runner: runs inside the benchmark guest (a static
//! binary in the busybox initramfs, see scripts/guest/build-guest-workload.sh)
//! on the mounted share, times each workload with CLOCK_MONOTONIC
//! (`std::time::Instant`) and prints one line per workload on stdout (the
//! serial console):
//!
//! `AVPFS-BENCH <workload> seconds=<s> ops=<n> bytes=<n>`, or
//! `AVPFS-BENCH-ERROR <workload> <message>` when it failed.
//!
//! Before it starts each workload's clock it prints
//! `AVPFS-BENCH-START <workload>` and pauses, and it pauses again after the
//! result line: the host samples the daemon's CPU time at both lines.
//!
//! Set-up and clean-up (writing the small files, removing what a workload
//! left) are not timed. The workloads and sizes are in `avpfs_bench::guest`.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use avpfs_bench::guest::{GuestLine, GuestSizes, GuestWorkload, FAILURE, MARK_PAUSE, START};
use clap::Parser;

/// Times the level-2 workloads on a mounted share.
#[derive(Debug, Parser)]
struct Args {
    /// Working directory on the share (created; removed at the end).
    #[arg(long, default_value = "/mnt/avpfs-l2")]
    dir: PathBuf,
    /// Workloads (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    workloads: Vec<GuestWorkload>,
    /// N: files of create, stat, readdir, unlink.
    #[arg(long, default_value_t = GuestSizes::QUICK.files)]
    files: usize,
    /// M: 4 KiB files of smallread.
    #[arg(long, default_value_t = GuestSizes::QUICK.small_files)]
    small_files: usize,
    /// MiB of the seqwrite/seqread/randread/randwrite file.
    #[arg(long, default_value_t = GuestSizes::QUICK.seq_bytes >> 20)]
    seq_mib: u64,
    /// 4 KiB operations of randread and of randwrite.
    #[arg(long, default_value_t = GuestSizes::QUICK.rand_ops)]
    rand_ops: usize,
    /// Passes of readdir over the directory.
    #[arg(long, default_value_t = GuestSizes::QUICK.readdir_passes)]
    readdir_passes: usize,
    /// The tarball the tar workload extracts (skipped without one).
    #[arg(long)]
    tar: Option<PathBuf>,
    /// Do not drop the page cache before the read workloads.
    #[arg(long)]
    no_drop_caches: bool,
}

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

const CHUNK: usize = 1 << 20;
const PAGE: usize = 4096;

/// xorshift64*: a fixed, seeded sequence (the same offsets for every contender).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `count` distinct page indexes below `pages` (a partial Fisher–Yates shuffle).
    fn distinct_pages(&mut self, pages: usize, count: usize) -> Vec<u64> {
        let mut all: Vec<u64> = (0..pages as u64).collect();
        let count = count.min(pages);
        for i in 0..count {
            let j = i + (self.next() % (pages - i) as u64) as usize;
            all.swap(i, j);
        }
        all.truncate(count);
        all
    }
}

struct Runner {
    args: Args,
    failed: bool,
}

impl Runner {
    fn settle(&self, drop: bool) -> Res<()> {
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        if drop && !self.args.no_drop_caches {
            fs::write("/proc/sys/vm/drop_caches", "3").map_err(err("drop_caches"))?;
        }
        Ok(())
    }

    /// Syncs (and drops the page cache when `drop`), then runs `f` (which
    /// returns ops and bytes) timed and prints its line.
    fn timed(&mut self, w: GuestWorkload, drop: bool, f: impl FnOnce(&Args) -> Res<(u64, u64)>) {
        let result = self.settle(drop).and_then(|()| {
            // The host samples the daemon's CPU time at this line and at the
            // result line; the pauses keep those samples in idle time (the
            // first lets the FORGETs of drop_caches be served before it).
            std::thread::sleep(MARK_PAUSE);
            println!("{START} {}", w.name());
            let _ = std::io::stdout().flush();
            std::thread::sleep(MARK_PAUSE);
            let t = Instant::now();
            let (ops, bytes) = f(&self.args)?;
            Ok(GuestLine { workload: w, seconds: t.elapsed().as_secs_f64(), ops, bytes })
        });
        match result {
            Ok(line) => println!("{}", line.format()),
            Err(e) => {
                self.failed = true;
                println!("{FAILURE} {} {}", w.name(), e.replace('\n', " "));
            }
        }
        let _ = std::io::stdout().flush();
        std::thread::sleep(MARK_PAUSE);
    }

    fn wants(&self, w: GuestWorkload) -> bool {
        self.args.workloads.is_empty() || self.args.workloads.contains(&w)
    }
}

fn cstr(p: &Path) -> Res<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(err(p.display()))
}

fn lstat(p: &Path) -> Res<()> {
    let c = cstr(p)?;
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is writable.
    if unsafe { libc::lstat(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("lstat {}: {}", p.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

fn small_name(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("f{i:06}"))
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| r.next() as u8).collect()
}

/// Entries of a tar archive (files, directories, links; not the GNU/pax
/// extension headers), from its 512-byte headers.
fn tar_entries(tar: &[u8]) -> u64 {
    let (mut at, mut n) = (0usize, 0u64);
    while at + 512 <= tar.len() {
        let h = &tar[at..at + 512];
        if h[0] == 0 {
            break;
        }
        let size_field = String::from_utf8_lossy(&h[124..136]);
        let size = u64::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap_or(0);
        if !matches!(h[156], b'L' | b'K' | b'x' | b'g') {
            n += 1;
        }
        at += 512 + (size as usize).div_ceil(512) * 512;
    }
    n
}

fn main() {
    let args = Args::parse();
    let root = args.dir.clone();
    if let Err(e) = fs::create_dir_all(&root) {
        println!("{FAILURE} setup mkdir {}: {e}", root.display());
        std::process::exit(1);
    }
    let mut r = Runner { args, failed: false };
    let meta = root.join("meta");
    let n = r.args.files;

    // Metadata: create, stat, readdir, unlink N files in one directory.
    let meta_wanted = [GuestWorkload::Create, GuestWorkload::Stat, GuestWorkload::Readdir, GuestWorkload::Unlink]
        .into_iter()
        .any(|w| r.wants(w));
    if meta_wanted {
        let _ = fs::create_dir_all(&meta);
        r.timed(GuestWorkload::Create, false, |_| {
            for i in 0..n {
                let p = small_name(&meta, i);
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&p)
                    .map_err(err(format!("create {}", p.display())))?;
            }
            Ok((n as u64, 0))
        });
        if r.wants(GuestWorkload::Stat) {
            r.timed(GuestWorkload::Stat, true, |_| {
                for i in 0..n {
                    lstat(&small_name(&meta, i))?;
                }
                Ok((n as u64, 0))
            });
        }
        if r.wants(GuestWorkload::Readdir) {
            r.timed(GuestWorkload::Readdir, true, |a| {
                let mut total = 0u64;
                for _ in 0..a.readdir_passes.max(1) {
                    let mut entries = 0u64;
                    for e in fs::read_dir(&meta).map_err(err("opendir"))? {
                        e.map_err(err("readdir"))?;
                        entries += 1;
                    }
                    if entries != n as u64 {
                        return Err(format!("readdir: {entries} entries, expected {n}"));
                    }
                    total += entries;
                }
                Ok((total, 0))
            });
        }
        r.timed(GuestWorkload::Unlink, false, |_| {
            for i in 0..n {
                let p = small_name(&meta, i);
                fs::remove_file(&p).map_err(err(format!("unlink {}", p.display())))?;
            }
            Ok((n as u64, 0))
        });
        let _ = fs::remove_dir_all(&meta);
    }

    // A source tree extracted by busybox tar (the tarball is in the initramfs).
    if r.wants(GuestWorkload::Tar) {
        if let Some(tarball) = r.args.tar.clone() {
            let out = root.join("tar");
            let _ = fs::create_dir_all(&out);
            // Read the tarball once (it is then in the guest's page cache for every contender).
            let (bytes, entries) = match fs::read(&tarball) {
                Ok(t) => (t.len() as u64, tar_entries(&t)),
                Err(_) => (0, 0),
            };
            r.timed(GuestWorkload::Tar, false, |_| {
                let st = Command::new("tar").arg("-xf").arg(&tarball).arg("-C").arg(&out).status();
                match st {
                    Ok(s) if s.success() => Ok((entries, bytes)),
                    Ok(s) => Err(format!("tar -xf: {s}")),
                    Err(e) => Err(format!("tar: {e}")),
                }
            });
            let _ = fs::remove_dir_all(&out);
        }
    }

    // Small files: read back M 4 KiB files after dropping the caches.
    if r.wants(GuestWorkload::Smallread) {
        let dir = root.join("small");
        let m = r.args.small_files;
        let data = pattern(PAGE, 7);
        let setup = (|| -> Res<()> {
            fs::create_dir_all(&dir).map_err(err("mkdir small"))?;
            for i in 0..m {
                fs::write(small_name(&dir, i), &data).map_err(err("writing the small files"))?;
            }
            Ok(())
        })();
        match setup {
            Ok(()) => r.timed(GuestWorkload::Smallread, true, |_| {
                let mut buf = vec![0u8; PAGE];
                for i in 0..m {
                    let p = small_name(&dir, i);
                    let mut f = File::open(&p).map_err(err(format!("open {}", p.display())))?;
                    let got = f.read(&mut buf).map_err(err(format!("read {}", p.display())))?;
                    if got != PAGE {
                        return Err(format!("read {}: {got} bytes", p.display()));
                    }
                }
                Ok((m as u64, (m * PAGE) as u64))
            }),
            Err(e) => {
                r.failed = true;
                println!("{FAILURE} smallread {e}");
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }

    // One big file: sequential write + fsync, sequential read, random reads, random writes + fsync.
    let big = root.join("big.bin");
    let seq_bytes = (r.args.seq_mib as usize) << 20;
    let data_wanted =
        [GuestWorkload::Seqwrite, GuestWorkload::Seqread, GuestWorkload::Randread, GuestWorkload::Randwrite]
            .into_iter()
            .any(|w| r.wants(w));
    if data_wanted {
        let chunk = pattern(CHUNK, 11);
        r.timed(GuestWorkload::Seqwrite, false, |_| {
            let mut f =
                OpenOptions::new().write(true).create(true).truncate(true).open(&big).map_err(err("create big.bin"))?;
            let mut left = seq_bytes;
            while left > 0 {
                let n = left.min(CHUNK);
                f.write_all(&chunk[..n]).map_err(err("write"))?;
                left -= n;
            }
            f.sync_all().map_err(err("fsync"))?;
            Ok(((seq_bytes / CHUNK) as u64, seq_bytes as u64))
        });
        if r.wants(GuestWorkload::Seqread) {
            r.timed(GuestWorkload::Seqread, true, |_| {
                let mut f = File::open(&big).map_err(err("open big.bin"))?;
                let mut buf = vec![0u8; CHUNK];
                let (mut total, mut ops) = (0u64, 0u64);
                loop {
                    let got = f.read(&mut buf).map_err(err("read"))?;
                    if got == 0 {
                        break;
                    }
                    total += got as u64;
                    ops += 1;
                }
                if total != seq_bytes as u64 {
                    return Err(format!("read {total} bytes, expected {seq_bytes}"));
                }
                Ok((ops, total))
            });
        }
        let pages = seq_bytes / PAGE;
        let ops = r.args.rand_ops;
        if r.wants(GuestWorkload::Randread) {
            let offsets = Rng(0x5eed_0001).distinct_pages(pages, ops);
            r.timed(GuestWorkload::Randread, true, |_| {
                let f = File::open(&big).map_err(err("open big.bin"))?;
                // SAFETY: posix_fadvise has no memory-safety preconditions; `f` is open.
                unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
                let mut buf = vec![0u8; PAGE];
                for &p in &offsets {
                    let got = f.read_at(&mut buf, p * PAGE as u64).map_err(err("pread"))?;
                    if got != PAGE {
                        return Err(format!("pread at page {p}: {got} bytes"));
                    }
                }
                Ok((offsets.len() as u64, (offsets.len() * PAGE) as u64))
            });
        }
        if r.wants(GuestWorkload::Randwrite) {
            let offsets = Rng(0x5eed_0002).distinct_pages(pages, ops);
            let page = pattern(PAGE, 13);
            r.timed(GuestWorkload::Randwrite, false, |_| {
                let f = OpenOptions::new().write(true).open(&big).map_err(err("open big.bin"))?;
                for &p in &offsets {
                    f.write_all_at(&page, p * PAGE as u64).map_err(err("pwrite"))?;
                }
                f.sync_all().map_err(err("fsync"))?;
                Ok((offsets.len() as u64, (offsets.len() * PAGE) as u64))
            });
        }
        let _ = fs::remove_file(&big);
    }
    let _ = fs::remove_dir_all(&root);
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    println!("AVPFS-BENCH-INFO done {}", if r.failed { "with-errors" } else { "ok" });
    std::process::exit(i32::from(r.failed));
}
