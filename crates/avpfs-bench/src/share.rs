//! The shared directory every contender works on: a tmpfs mounted for the
//! run or a directory on a disk file system, the file tree of the metadata
//! workloads and the data files of the I/O workloads.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, IoContext};

/// Where the shared directory lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DirKind {
    /// A tmpfs mounted for the run (no disk in the way: the daemons' own costs show).
    Tmpfs,
    /// A directory on a disk file system (under `--disk-dir`).
    Disk,
}

impl DirKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            DirKind::Tmpfs => "tmpfs",
            DirKind::Disk => "disk",
        }
    }
}

/// Where the disk share lives: a file system of its own or a directory on
/// the file system of `--disk-dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFs {
    /// A fresh ext4 of this many GiB, made in a sparse image file under
    /// `--disk-dir` and mounted through a loop device, for every run: the
    /// same empty file system for every run and every machine, whatever
    /// state the machine's own disk is in.
    Image {
        /// Size of the image (sparse: only what is written takes room).
        gib: u64,
    },
    /// A new directory on the file system of `--disk-dir` itself.
    Directory,
}

/// The shared directory; unmounted and removed when dropped.
pub struct Share {
    kind: DirKind,
    root: PathBuf,
    /// The mount made for the share (a tmpfs, or the loop-mounted image),
    /// unmounted on drop.
    mount: Option<PathBuf>,
    fs_type: String,
    // Dropped after `Drop::drop` has unmounted the mount.
    _base: tempfile::TempDir,
}

impl Share {
    /// Makes a fresh shared directory: a tmpfs mounted on a new directory
    /// under the system's temporary directory, or for [`DirKind::Disk`] a
    /// new directory under `disk_parent`, on a file system of its own
    /// there if `disk` says so.
    pub fn create(kind: DirKind, disk_parent: &Path, disk: DiskFs) -> Result<Share, Error> {
        let base = match kind {
            DirKind::Tmpfs => tempfile::Builder::new().prefix("avpfs-bench-").tempdir(),
            DirKind::Disk => tempfile::Builder::new().prefix("avpfs-bench-").tempdir_in(disk_parent),
        }
        .ctx(|| "making the share's directory".into())?;
        let mount = base.path().join("mnt");
        let mut share = Share { kind, root: mount.join("share"), mount: None, fs_type: String::new(), _base: base };
        fs::create_dir(&mount).ctx(|| format!("mkdir {}", mount.display()))?;
        let mut described = None;
        match (kind, disk) {
            (DirKind::Tmpfs, _) => {
                mount_tmpfs(&mount)?;
                share.mount = Some(mount);
            }
            (DirKind::Disk, DiskFs::Image { gib }) => {
                let image = share._base.path().join("disk.img");
                mount_image(&image, gib, &mount)?;
                share.mount = Some(mount);
                described = Some(format!("a fresh {gib} GiB image on a loop device"));
            }
            (DirKind::Disk, DiskFs::Directory) => {}
        }
        fs::create_dir(&share.root).ctx(|| format!("mkdir {}", share.root.display()))?;
        let ty = fs_type_of(&share.root);
        share.fs_type = match described {
            Some(d) => format!("{ty}, {d}"),
            None => ty,
        };
        Ok(share)
    }

    /// The directory the contenders share.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// tmpfs or disk.
    pub fn kind(&self) -> DirKind {
        self.kind
    }

    /// The file system type the directory is on (from /proc/self/mounts).
    pub fn fs_type(&self) -> &str {
        &self.fs_type
    }

    /// Writes back every dirty page and the journal of the share's file
    /// system (`syncfs`), so that a timed pass does not pay for the
    /// write-back of what the one before it (another contender's, as often
    /// as not) left behind. On ext4 that write-back ran under whichever pass
    /// came next: the host's own 4 KiB file creation ranged from 5 500 to
    /// 31 900 files/s from one pass to the next.
    pub fn sync(&self) -> Result<(), Error> {
        let dir = File::open(&self.root).ctx(|| format!("opening {}", self.root.display()))?;
        avpfs_sys::fs::syncfs(dir.as_fd()).ctx(|| format!("syncfs {}", self.root.display()))
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Some(mount) = &self.mount {
            if let Ok(c) = CString::new(mount.as_os_str().as_bytes()) {
                let _ = avpfs_sys::mount::umount2(&c, libc::MNT_DETACH);
            }
        }
    }
}

fn mount_tmpfs(dir: &Path) -> Result<(), Error> {
    let target = CString::new(dir.as_os_str().as_bytes()).map_err(|_| Error::Usage("NUL in a path".into()))?;
    avpfs_sys::mount::mount(Some(c"tmpfs"), &target, Some(c"tmpfs"), 0, Some(c"mode=0755,size=90%")).map_err(|source| {
        Error::Io {
            context: format!("mounting a tmpfs on {} (needs root; or use --dir-kind disk)", dir.display()),
            source,
        }
    })
}

/// Makes an ext4 file system of `gib` GiB in the sparse file `image` and
/// mounts it on `dir` through a loop device (released when unmounted).
/// Nothing is zeroed (the sparse image reads as zeros already), so no
/// background initialisation runs under the timed passes, and discards are
/// off, as on a disk that does not need them.
fn mount_image(image: &Path, gib: u64, dir: &Path) -> Result<(), Error> {
    let f = File::create(image).ctx(|| format!("creating {}", image.display()))?;
    f.set_len(gib << 30).ctx(|| format!("sizing {}", image.display()))?;
    drop(f);
    // One inode per 8 KiB: room for the memory probe's million files.
    run_tool(
        "mkfs.ext4",
        &["-q", "-F", "-i", "8192", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"],
        &[image.as_os_str()],
    )?;
    // Direct I/O on the loop device: the image's blocks are cached once, in
    // the page cache of the ext4 on it, not a second time as pages of the
    // image file. The device is detached at once: the kernel then frees it
    // when the file system on it is unmounted.
    let dev = tool_output("losetup", &["--find", "--show", "--direct-io=on"], &[image.as_os_str()])?;
    let dev = std::ffi::OsString::from(dev.trim());
    let mounted = run_tool("mount", &["-t", "ext4", "-o", "noinit_itable,nodiscard"], &[&dev, dir.as_os_str()]);
    let detached = run_tool("losetup", &["--detach"], &[&dev]);
    mounted.and(detached)
}

/// Runs `tool` with `args` and then `paths`; what it printed, or an error
/// that quotes its complaint.
fn tool_output(tool: &str, args: &[&str], paths: &[&std::ffi::OsStr]) -> Result<String, Error> {
    let out = std::process::Command::new(tool)
        .args(args)
        .args(paths)
        .output()
        .ctx(|| format!("running {tool} (a disk image share needs it; or use --disk-image-gib 0)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Io {
            context: format!("{tool} {} {:?}: {}", args.join(" "), paths, String::from_utf8_lossy(&out.stderr).trim()),
            source: std::io::Error::other(format!("{tool} failed ({})", out.status)),
        })
    }
}

/// Runs `tool` with `args` and then `paths`.
fn run_tool(tool: &str, args: &[&str], paths: &[&std::ffi::OsStr]) -> Result<(), Error> {
    tool_output(tool, args, paths).map(drop)
}

/// The type of the file system holding `dir`: the longest mount point of
/// /proc/self/mounts that is a prefix of it.
fn fs_type_of(dir: &Path) -> String {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else { return "unknown".into() };
    let Ok(dir) = dir.canonicalize() else { return "unknown".into() };
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mnt, ty) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(mnt).then(|| (mnt.len(), ty.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, ty)| ty)
}

/// A tree of empty files: `NAME/dDDDD/fFFFFFFF`, `per_dir` files in each directory.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The tree's directory, relative to the share.
    pub name: String,
    /// Number of files.
    pub files: usize,
    /// Files per directory.
    pub per_dir: usize,
    dir_names: Vec<CString>,
    file_names: Vec<CString>,
}

impl Tree {
    /// The layout of a tree (nothing is created yet).
    pub fn new(name: &str, files: usize, per_dir: usize) -> Tree {
        let per_dir = per_dir.max(1);
        let dirs = files.div_ceil(per_dir).max(1);
        let cname = |s: String| CString::new(s).unwrap_or_default();
        Tree {
            name: name.to_string(),
            files,
            per_dir,
            dir_names: (0..dirs).map(|i| cname(format!("d{i:05}"))).collect(),
            file_names: (0..files).map(|k| cname(format!("f{k:08}"))).collect(),
        }
    }

    /// Number of directories.
    pub fn dirs(&self) -> usize {
        self.dir_names.len()
    }

    /// Name of directory `i`.
    pub fn dir_name(&self, i: usize) -> &CString {
        &self.dir_names[i]
    }

    /// Name of file `k` (in directory [`dir_of`](Self::dir_of)`(k)`).
    pub fn file_name(&self, k: usize) -> &CString {
        &self.file_names[k]
    }

    /// The directory of file `k`.
    pub fn dir_of(&self, k: usize) -> usize {
        k / self.per_dir
    }

    /// Files of directory `i`.
    pub fn files_in(&self, i: usize) -> std::ops::Range<usize> {
        (i * self.per_dir).min(self.files)..((i + 1) * self.per_dir).min(self.files)
    }

    /// Creates the tree under `share` (files that exist are kept).
    pub fn build(&self, share: &Path) -> Result<(), Error> {
        let top = share.join(&self.name);
        fs::create_dir_all(&top).ctx(|| format!("mkdir {}", top.display()))?;
        for i in 0..self.dirs() {
            let dir = top.join(self.dir_names[i].to_string_lossy().as_ref());
            fs::create_dir_all(&dir).ctx(|| format!("mkdir {}", dir.display()))?;
            for k in self.files_in(i) {
                let path = dir.join(self.file_names[k].to_string_lossy().as_ref());
                match File::options().write(true).create_new(true).open(&path) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::Io { context: format!("creating {}", path.display()), source: e }),
                }
            }
        }
        Ok(())
    }
}

/// Creates `path` with `size` bytes of a non-zero pattern (so that no file
/// system can skip storing it).
pub fn make_data_file(path: &Path, size: u64) -> Result<(), Error> {
    if fs::metadata(path).map(|m| m.len() == size).unwrap_or(false) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).ctx(|| format!("mkdir {}", dir.display()))?;
    }
    let mut f = File::create(path).ctx(|| format!("creating {}", path.display()))?;
    let chunk: Vec<u8> = (0..1usize << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1).collect();
    write_repeated(&mut f, path, &chunk, size)?;
    f.sync_all().ctx(|| format!("syncing {}", path.display()))?;
    Ok(())
}

/// Reads `path` to the end (untimed), so that a timed pass over it reads
/// from the page cache whatever happened to it since it was written: these
/// VMs page out memory that has not been used for a while (DAMON's
/// `pageout`), and a data file paged out between two passes made a pass
/// read from the disk (1 MiB READs at 383 MB/s instead of 13 458).
pub fn read_into_cache(path: &Path) -> Result<(), Error> {
    let mut f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io { context: format!("reading {}", path.display()), source: e }),
        }
    }
}

/// Creates (or truncates) `path` and writes `len` bytes into it, so that
/// timed writes overwrite pages that exist instead of measuring the file
/// system's page allocation and, on a VM, the hypervisor's: pages the guest
/// freed are handed back to the host (free page reporting), and the first
/// store to such a page faults in the hypervisor. fallocate is not enough,
/// as tmpfs leaves the pages it allocates untouched until the first write.
///
/// The file is synced, so on a disk file system the timed writes start from
/// clean pages and the write-back of this set-up does not run under them
/// (it did, and made one contender's seqwrite on ext4 0.4x the other's in
/// one repetition and 3x in the next).
pub fn prewritten_file(path: &Path, len: u64) -> Result<File, Error> {
    let mut f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .ctx(|| format!("creating {}", path.display()))?;
    write_repeated(&mut f, path, &vec![0x5a; 1 << 20], len)?;
    f.sync_data().ctx(|| format!("syncing {}", path.display()))?;
    Ok(f)
}

/// Writes `len` bytes to `f` (the file at `path`), `chunk` after `chunk`.
fn write_repeated(f: &mut File, path: &Path, chunk: &[u8], len: u64) -> Result<(), Error> {
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).ctx(|| format!("writing {}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_layout() {
        let t = Tree::new("tree", 25, 10);
        assert_eq!(t.dirs(), 3);
        assert_eq!(t.files_in(2), 20..25);
        assert_eq!(t.dir_of(19), 1);
        assert_eq!(t.file_name(7).to_str().unwrap(), "f00000007");
        assert_eq!(t.dir_name(2).to_str().unwrap(), "d00002");
    }

    #[test]
    fn builds_a_tree_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let t = Tree::new("t", 5, 2);
        t.build(tmp.path()).unwrap();
        t.build(tmp.path()).unwrap();
        assert!(tmp.path().join("t/d00002/f00000004").is_file());
        make_data_file(&tmp.path().join("data/x"), 3 << 20 | 5).unwrap();
        assert_eq!(fs::metadata(tmp.path().join("data/x")).unwrap().len(), 3 << 20 | 5);
        read_into_cache(&tmp.path().join("data/x")).unwrap();
        assert!(read_into_cache(&tmp.path().join("data/missing")).unwrap_err().to_string().contains("missing"));
        prewritten_file(&tmp.path().join("p"), 1 << 20).unwrap();
        assert_eq!(fs::metadata(tmp.path().join("p")).unwrap().len(), 1 << 20);
    }

    #[test]
    fn a_share_syncs_its_file_system_and_says_when_it_cannot() {
        let share = Share::create(DirKind::Disk, &std::env::temp_dir(), DiskFs::Directory).unwrap();
        fs::write(share.root().join("dirty"), vec![7u8; 1 << 16]).unwrap();
        share.sync().unwrap();
        fs::remove_dir_all(share.root()).unwrap();
        let e = share.sync().unwrap_err().to_string();
        assert!(e.contains("opening"), "{e}");
    }

    #[test]
    fn a_disk_image_share_is_an_ext4_of_its_own_until_dropped() {
        let share = Share::create(DirKind::Disk, &std::env::temp_dir(), DiskFs::Image { gib: 1 }).unwrap();
        assert!(share.fs_type().starts_with("ext4, a fresh 1 GiB image"), "{}", share.fs_type());
        let mount = share.mount.clone().unwrap();
        let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&fs::metadata(p).unwrap());
        assert_ne!(dev(&mount), dev(mount.parent().unwrap()), "the image is mounted");
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
        let loop_dev = mounts
            .lines()
            .find_map(|l| {
                l.split_whitespace().nth(1).filter(|m| Path::new(m) == mount).and(l.split_whitespace().next())
            })
            .unwrap()
            .to_string();
        let dio = fs::read_to_string(format!("/sys/block/{}/loop/dio", loop_dev.trim_start_matches("/dev/"))).unwrap();
        assert_eq!(dio.trim(), "1", "the loop device of {loop_dev} does direct I/O");
        fs::write(share.root().join("f"), b"x").unwrap();
        share.sync().unwrap();
        let image = mount.parent().unwrap().join("disk.img");
        drop(share);
        assert!(!image.exists(), "the image is removed with the share");
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(mount.to_str().unwrap()), "unmounted");
    }
}
