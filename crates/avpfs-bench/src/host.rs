//! The host baseline: the system calls an application on the host makes for
//! each workload, on the same directory, one thread per "queue". It is the
//! ceiling: no daemon, no FUSE, no copy into guest memory.

use std::ffi::CStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use avpfs_sys::dir::getdents64;
use avpfs_sys::open::openat;
use avpfs_sys::stat::fstat;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::engine::{RunResult, BULK_CAP};
use crate::error::{Error, IoContext};
use crate::procstat::thread_cpu_time;
use crate::share::Tree;
use crate::workloads::{
    paths, random_offsets, sequential_offsets, share_of, Case, Measurement, Sizes, Workload, SMALL_FILE,
};

/// The host's side of a run: the share and the tree's directories opened.
pub struct HostCtx<'t> {
    root: PathBuf,
    tree: &'t Tree,
    dirs: Vec<OwnedFd>,
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)` (the attributes are dropped).
fn fstatat(dir: BorrowedFd<'_>, name: &CStr) -> std::io::Result<()> {
    avpfs_sys::stat::fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW).map(drop)
}

/// Calls `f` with the name of each `linux_dirent64` record in `buf`.
fn each_dirent(buf: &[u8], mut f: impl FnMut(&CStr) -> std::io::Result<()>) -> std::io::Result<()> {
    // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    let mut at = 0;
    while at + 19 <= buf.len() {
        let reclen = usize::from(u16::from_ne_bytes([buf[at + 16], buf[at + 17]]));
        if reclen == 0 || at + reclen > buf.len() {
            break;
        }
        if let Ok(name) = CStr::from_bytes_until_nul(&buf[at + 19..at + reclen]) {
            f(name)?;
        }
        at += reclen;
    }
    Ok(())
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io { context: format!("host {what}"), source }
}

/// What each host thread records.
#[derive(Default)]
struct Recorder {
    latencies: Vec<u64>,
    ops: u64,
    units: u64,
}

impl Recorder {
    fn time(&mut self, f: impl FnOnce() -> Result<u64, Error>) -> Result<(), Error> {
        let t = Instant::now();
        let units = f()?;
        self.latencies.push(t.elapsed().as_nanos() as u64);
        self.ops += 1;
        self.units += units;
        Ok(())
    }
}

/// Runs `work(thread, recorder)` on `threads` threads started together;
/// measures the wall time and the threads' CPU time.
fn run_threads<F>(threads: usize, work: F) -> Result<Measurement, Error>
where
    F: Fn(usize, &mut Recorder) -> Result<(), Error> + Sync,
{
    let barrier = Barrier::new(threads);
    let results: Vec<Result<(Recorder, Duration, Instant, Instant), Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (work, barrier) = (&work, &barrier);
                scope.spawn(move || {
                    let mut r = Recorder::default();
                    barrier.wait();
                    let cpu0 = thread_cpu_time();
                    let start = Instant::now();
                    work(t, &mut r)?;
                    let end = Instant::now();
                    Ok((r, thread_cpu_time().saturating_sub(cpu0), start, end))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err(Error::Panic))).collect()
    });
    let mut run = RunResult::default();
    let mut cpu = Duration::ZERO;
    let (mut start, mut end): (Option<Instant>, Option<Instant>) = (None, None);
    for r in results {
        let (rec, c, s, e) = r?;
        run.ops += rec.ops;
        run.units += rec.units;
        run.latencies.extend(rec.latencies);
        cpu += c;
        start = Some(start.map_or(s, |x| x.min(s)));
        end = Some(end.map_or(e, |x| x.max(e)));
    }
    if let (Some(s), Some(e)) = (start, end) {
        run.wall = e - s;
    }
    Ok(Measurement { run, cpu })
}

impl<'t> HostCtx<'t> {
    /// Opens the tree's directories under `root`.
    pub fn new(root: &Path, tree: &'t Tree) -> Result<Self, Error> {
        let top = root.join(&tree.name);
        let top_fd = File::open(&top).ctx(|| format!("opening {}", top.display()))?;
        let dirs = (0..tree.dirs())
            .map(|i| openat(top_fd.as_fd(), tree.dir_name(i), libc::O_PATH | libc::O_DIRECTORY, 0))
            .collect::<std::io::Result<Vec<_>>>()
            .ctx(|| format!("opening the directories of {}", top.display()))?;
        Ok(HostCtx { root: root.to_path_buf(), tree, dirs })
    }

    /// Runs one case. A thread has one system call in flight; for the data
    /// workloads it cycles through `case.depth` buffers, the memory the
    /// daemons' guest buffers take with that many requests in flight (one
    /// buffer reread again and again would stay in the CPU cache, which the
    /// guest's buffers do not).
    pub fn run_case(&self, case: Case, sizes: &Sizes, label: &str) -> Result<Measurement, Error> {
        let (tree, n) = (self.tree, case.queues);
        match case.workload {
            Workload::Lookup => run_threads(n, |t, r| {
                for k in share_of(tree.files, t, n) {
                    let dir = self.dirs[tree.dir_of(k)].as_fd();
                    r.time(|| fstatat(dir, tree.file_name(k)).map(|_| 1).map_err(io_err("fstatat")))?;
                }
                Ok(())
            }),
            Workload::Getattr => {
                let fds = (0..tree.files)
                    .map(|k| openat(self.dirs[tree.dir_of(k)].as_fd(), tree.file_name(k), libc::O_PATH, 0))
                    .collect::<std::io::Result<Vec<_>>>()
                    .map_err(io_err("O_PATH open of the tree (raise RLIMIT_NOFILE)"))?;
                run_threads(n, |t, r| {
                    for k in share_of(fds.len(), t, n) {
                        r.time(|| fstat(fds[k].as_fd()).map(|_| 1).map_err(io_err("fstat")))?;
                    }
                    Ok(())
                })
            }
            Workload::Readdirplus => {
                let dirs = (0..tree.dirs())
                    .map(|i| {
                        let top = self.root.join(&tree.name);
                        let p = top.join(tree.dir_name(i).to_string_lossy().as_ref());
                        File::open(&p).map(OwnedFd::from)
                    })
                    .collect::<std::io::Result<Vec<_>>>()
                    .map_err(io_err("opendir"))?;
                let buf_len = sizes.readdir_buf as usize;
                run_threads(n, |t, r| {
                    let mut buf = vec![0u8; buf_len];
                    for d in share_of(dirs.len(), t, n) {
                        let fd = dirs[d].as_fd();
                        loop {
                            let mut got = 0;
                            r.time(|| {
                                got = getdents64(fd, &mut buf).map_err(io_err("getdents64"))?;
                                let mut entries = 0;
                                each_dirent(&buf[..got], |name| {
                                    if name.to_bytes() != b"." && name.to_bytes() != b".." {
                                        entries += 1;
                                        fstatat(fd, name)?;
                                    }
                                    Ok(())
                                })
                                .map_err(io_err("fstatat"))?;
                                Ok(entries)
                            })?;
                            if got == 0 {
                                break;
                            }
                        }
                    }
                    Ok(())
                })
            }
            Workload::Create => {
                let dir_path = self.root.join(paths::WORK).join(label);
                std::fs::create_dir(&dir_path).ctx(|| format!("mkdir {}", dir_path.display()))?;
                let dir = File::open(&dir_path).ctx(|| format!("opening {}", dir_path.display()))?;
                let data = vec![0x5au8; SMALL_FILE as usize];
                let m = run_threads(n, |t, r| {
                    for k in share_of(sizes.create_files, t, n) {
                        let name = std::ffi::CString::new(format!("c{k:08}")).unwrap_or_default();
                        r.time(|| {
                            let fd = openat(dir.as_fd(), &name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644)
                                .map_err(io_err("openat(O_CREAT)"))?;
                            File::from(fd).write_all(&data).map_err(io_err("write"))?;
                            Ok(1)
                        })?;
                    }
                    Ok(())
                });
                std::fs::remove_dir_all(&dir_path).ctx(|| format!("rm -r {}", dir_path.display()))?;
                m
            }
            Workload::Randread | Workload::Seqread => {
                let rand = case.workload == Workload::Randread;
                let path = self.root.join(paths::DATA).join(if rand { paths::RAND } else { paths::SEQ });
                let file = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
                let chunk = if rand { SMALL_FILE } else { BULK_CAP as u32 };
                run_threads(n, |t, r| {
                    let offsets = if rand {
                        random_offsets(sizes.rand_ops, sizes.rand_file_bytes, t, n)
                    } else {
                        sequential_offsets(sizes.seq_bytes, chunk, t, n)
                    };
                    let mut bufs: Vec<PageAligned> =
                        (0..case.depth.max(1)).map(|_| PageAligned::new(chunk as usize)).collect();
                    for (i, off) in offsets.into_iter().enumerate() {
                        let k = i % bufs.len();
                        let buf = bufs[k].bytes_mut();
                        r.time(|| {
                            let got = file.read_at(buf, off).map_err(io_err("pread"))?;
                            if got != buf.len() {
                                return Err(Error::BadReply { op: "pread", detail: format!("{got} bytes") });
                            }
                            Ok(got as u64)
                        })?;
                    }
                    Ok(())
                })
            }
            Workload::Seqwrite | Workload::Randwrite => {
                let seq = case.workload == Workload::Seqwrite;
                let path = self.root.join(paths::WORK).join(format!("{label}.bin"));
                let bytes = if seq { sizes.seq_bytes } else { sizes.rand_file_bytes };
                let file = crate::share::prewritten_file(&path, bytes)?;
                let chunk = if seq { BULK_CAP as u32 } else { SMALL_FILE };
                let data: Vec<u8> = (0..chunk as usize).map(|i| (i % 251) as u8 | 1).collect();
                let m = run_threads(n, |t, r| {
                    let bufs: Vec<PageAligned> = (0..case.depth.max(1))
                        .map(|_| {
                            let mut b = PageAligned::new(data.len());
                            b.bytes_mut().copy_from_slice(&data);
                            b
                        })
                        .collect();
                    let offsets = if seq {
                        sequential_offsets(bytes, chunk, t, n)
                    } else {
                        random_offsets(sizes.rand_ops, bytes, t, n)
                    };
                    for (i, off) in offsets.into_iter().enumerate() {
                        let buf = bufs[i % bufs.len()].bytes();
                        r.time(|| {
                            let put = file.write_at(buf, off).map_err(io_err("pwrite"))?;
                            Ok(put as u64)
                        })?;
                    }
                    Ok(())
                });
                drop(file);
                std::fs::remove_file(&path).ctx(|| format!("rm {}", path.display()))?;
                m
            }
        }
    }
}

/// A buffer that starts on a page boundary, as the daemons' 1 MiB buffers in
/// guest memory do (the front end allocates them page aligned, like the
/// page-cache pages a guest's driver passes): where a copy's buffers lie can
/// change its speed, so every contender gets the same alignment.
struct PageAligned {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl PageAligned {
    const PAGE: usize = 4096;

    fn new(len: usize) -> Self {
        let storage = vec![0u8; len + Self::PAGE];
        let start = storage.as_ptr().align_offset(Self::PAGE);
        PageAligned { storage, start, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_aligned_buffers_start_on_a_page() {
        for len in [1, 4096, 1 << 20] {
            let mut b = PageAligned::new(len);
            assert_eq!(b.bytes().as_ptr() as usize % 4096, 0);
            assert_eq!(b.bytes_mut().len(), len);
        }
    }

    #[test]
    fn runs_every_workload_on_a_small_share() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let tree = Tree::new(paths::TREE, 50, 20);
        tree.build(root).unwrap();
        std::fs::create_dir(root.join(paths::WORK)).unwrap();
        crate::share::make_data_file(&root.join(paths::DATA).join(paths::RAND), 1 << 20).unwrap();
        crate::share::make_data_file(&root.join(paths::DATA).join(paths::SEQ), 4 << 20).unwrap();
        let sizes = Sizes {
            files: 50,
            per_dir: 20,
            memory_files: 50,
            create_files: 10,
            rand_ops: 20,
            rand_file_bytes: 1 << 20,
            seq_bytes: 4 << 20,
            readdir_buf: 4096,
        };
        let host = HostCtx::new(root, &tree).unwrap();
        for w in Workload::ALL {
            for (queues, depth) in [(1, 1), (2, 1), (2, 3)] {
                let label = format!("t{queues}d{depth}");
                let m = host.run_case(Case { workload: w, queues, depth }, &sizes, &label).unwrap();
                let expected_units = match w {
                    Workload::Lookup | Workload::Getattr | Workload::Readdirplus => 50,
                    Workload::Create => 10,
                    Workload::Randread | Workload::Randwrite => 20 * 4096,
                    Workload::Seqread | Workload::Seqwrite => 4 << 20,
                };
                assert_eq!(m.run.units, expected_units, "{w:?} q{queues} d{depth}");
                assert_eq!(m.run.latencies.len() as u64, m.run.ops);
            }
        }
    }
}
