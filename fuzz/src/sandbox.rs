//! The share the `fuse_request` target serves, and the sandbox around it.
//!
//! The fuzzer runs as root and drives a real passthrough: a bug could let a
//! request create a device node, fill the disk or write outside the share.
//! So, once per process, [`Share::new`]:
//!
//! - enters a private mount namespace (`unshare(CLONE_NEWNS)`, mounts made
//!   private), mounts a size-limited `tmpfs` (`nodev,nosuid`) at
//!   [`MOUNT_POINT`] and builds the share inside it;
//! - makes every other mount read-only (`mount_setattr(AT_RECURSIVE,
//!   MOUNT_ATTR_RDONLY)`), except the fuzz project directory (libFuzzer
//!   writes its corpus and crash files there) and the directories listed in
//!   `AVPFS_FUZZ_WRITABLE` (colon-separated);
//! - drops `CAP_MKNOD`.
//!
//! Layout of the tmpfs (the "outer" directory):
//!
//! ```text
//! sentinel            secret content (an absolute symlink in the share points here)
//! base/               the share's parent directory
//! base/sentinel       secret content (a relative symlink `../sentinel` points here)
//! base/share/         the share root, emptied and re-populated before every run:
//!   file  dir/  dir/inner  pub/ (mode 1777)  link -> file
//!   escape -> ../sentinel  abs -> /tmp/avpfs-fuzz-share/sentinel  fifo
//! ```
//!
//! After every run [`Share::check`] asserts that nothing outside the share
//! changed (listings, metadata, contents and xattrs of both levels), and that
//! the thread's credentials (fsuid, fsgid, effective capabilities), working
//! directory and the number of open descriptors are what they were. (Not
//! the umask: the passthrough gives each worker thread its own and keeps it
//! set, by design; the share is built with explicit modes.)

use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the tmpfs is mounted (in the fuzzer's own mount namespace only).
pub const MOUNT_POINT: &str = "/tmp/avpfs-fuzz-share";
/// Content of `share/file`.
pub const FILE_CONTENT: &[u8] = b"hello, avpfs\n";
/// Options of the tmpfs.
const TMPFS_OPTIONS: &str = "size=64m,nr_inodes=16384,mode=0700";

/// Metadata that must not change (atime excluded: reading is allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    content: Option<Vec<u8>>,
    listing: Option<Vec<OsString>>,
}

/// Everything outside the share, plus the process state a file system must restore.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    outer: Meta,
    outer_sentinel: Meta,
    base: Meta,
    base_sentinel: Meta,
    share_ino: u64,
    fsuid: i32,
    fsgid: i32,
    cwd: Option<PathBuf>,
    caps: String,
}

impl Snapshot {
    /// The fields that differ, before and after.
    fn diff(&self, now: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            let (a, b) = (format!("{a:?}"), format!("{b:?}"));
            if a != b {
                out.push(format!("{name}: {a} -> {b}"));
            }
        };
        for (name, a, b) in [
            ("outer", &self.outer, &now.outer),
            ("outer/sentinel", &self.outer_sentinel, &now.outer_sentinel),
            ("base", &self.base, &now.base),
            ("base/sentinel", &self.base_sentinel, &now.base_sentinel),
        ] {
            field(&format!("{name}: ino"), &a.ino, &b.ino);
            field(&format!("{name}: mode"), &a.mode, &b.mode);
            field(&format!("{name}: owner"), &(a.uid, a.gid), &(b.uid, b.gid));
            field(&format!("{name}: nlink"), &a.nlink, &b.nlink);
            field(&format!("{name}: size"), &a.size, &b.size);
            field(&format!("{name}: mtime"), &a.mtime, &b.mtime);
            field(&format!("{name}: ctime"), &a.ctime, &b.ctime);
            field(&format!("{name}: xattrs"), &a.xattrs, &b.xattrs);
            field(
                &format!("{name}: content"),
                &a.content.as_deref().map(String::from_utf8_lossy),
                &b.content.as_deref().map(String::from_utf8_lossy),
            );
            field(&format!("{name}: listing"), &a.listing, &b.listing);
        }
        field("share inode", &self.share_ino, &now.share_ino);
        field("fsuid", &self.fsuid, &now.fsuid);
        field("fsgid", &self.fsgid, &now.fsgid);
        field("cwd", &self.cwd, &now.cwd);
        field("capabilities", &self.caps, &now.caps);
        out
    }
}

/// The share and its checked surroundings.
#[derive(Debug)]
pub struct Share {
    outer: PathBuf,
    base: PathBuf,
    root: PathBuf,
    secret: Vec<u8>,
    snapshot: Snapshot,
    fds: Option<usize>,
    sandboxed: bool,
}

impl Drop for Share {
    fn drop(&mut self) {
        // A sandboxed share vanishes with the mount namespace.
        if !self.sandboxed {
            let _ = fs::remove_dir_all(&self.outer);
        }
    }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// The extended attributes of `path` (not following symlinks), sorted.
fn xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = cstring(path)?;
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: `c` is NUL-terminated and `names` is writable for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EOPNOTSUPP) { Ok(Vec::new()) } else { Err(e) };
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let mut value = vec![0u8; 64 * 1024];
        // SAFETY: both strings are NUL-terminated; `value` is writable for its length.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        value.truncate(usize::try_from(len).unwrap_or(0));
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

fn meta(path: &Path) -> io::Result<Meta> {
    let m = fs::symlink_metadata(path)?;
    let content = if m.is_file() { Some(fs::read(path)?) } else { None };
    let listing = if m.is_dir() {
        let mut names: Vec<OsString> =
            fs::read_dir(path)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
        names.sort();
        Some(names)
    } else {
        None
    };
    Ok(Meta {
        ino: m.ino(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        nlink: m.nlink(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        xattrs: xattrs(path)?,
        content,
        listing,
    })
}

fn fsids() -> (i32, i32) {
    // SAFETY: an invalid id (-1) changes nothing and returns the current one.
    let uid = unsafe { libc::setfsuid(u32::MAX) };
    // SAFETY: as above.
    let gid = unsafe { libc::setfsgid(u32::MAX) };
    (uid, gid)
}

/// The calling thread's effective capabilities, sorted.
fn effective_caps() -> String {
    let mut names: Vec<String> = caps::read(None, caps::CapSet::Effective)
        .map(|set| set.iter().map(|c| c.to_string()).collect())
        .unwrap_or_default();
    names.sort();
    names.join(",")
}

/// How many of the process's descriptors refer to the share's tmpfs or to
/// the process's `/proc/PID/fd` (what a passthrough keeps open); other
/// threads' descriptors (a test harness, libFuzzer) are not counted. Other
/// files in /proc are left out: a test running beside this one opens them
/// for a moment (`available_parallelism` reads `/proc/self/cgroup` and
/// `mountinfo`), which made the count flaky.
fn open_fds(outer: &Path) -> usize {
    let own_fd_dir = PathBuf::from(format!("/proc/{}/fd", std::process::id()));
    let Ok(dir) = fs::read_dir("/proc/self/fd") else { return 0 };
    dir.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(outer) || *target == own_fd_dir)
        .count()
}

fn random_secret() -> Vec<u8> {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = io::Read::read_exact(&mut f, &mut bytes);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("AVPFS-FUZZ-OUTSIDE-THE-SHARE-{hex}\n").into_bytes()
}

/// Sets `attr_set`/`attr_clr` on the mount at `path` (and below when `recursive`).
fn mount_setattr(path: &Path, recursive: bool, attr_set: u64, attr_clr: u64) -> io::Result<()> {
    let c = cstring(path)?;
    let attr = libc::mount_attr { attr_set, attr_clr, propagation: 0, userns_fd: 0 };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: `c` is NUL-terminated, `attr` is a valid mount_attr whose size is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            core::mem::size_of::<libc::mount_attr>(),
        )
    };
    check(rc as libc::c_int, &format!("mount_setattr {}", path.display()))
}

fn mount(src: &str, target: &Path, fstype: Option<&str>, flags: libc::c_ulong, data: Option<&str>) -> io::Result<()> {
    let src = CString::new(src).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let target_c = cstring(target)?;
    let fstype = fstype.map(|s| CString::new(s).unwrap_or_default());
    let data = data.map(|s| CString::new(s).unwrap_or_default());
    // SAFETY: every pointer is a NUL-terminated string or null, valid for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref().map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    };
    check(rc, &format!("mount {}", target.display()))
}

/// Builds the mount namespace: tmpfs at [`MOUNT_POINT`], everything else
/// read-only except the writable directories.
fn enter_sandbox() -> io::Result<()> {
    let mnt = Path::new(MOUNT_POINT);
    fs::create_dir_all(mnt)?;
    let mut writable: Vec<PathBuf> = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
    if let Some(extra) = std::env::var_os("AVPFS_FUZZ_WRITABLE") {
        writable.extend(std::env::split_paths(&extra).filter(|p| p.is_dir()));
    }
    // SAFETY: unshare has no memory-safety preconditions; CLONE_NEWNS only
    // affects this thread (and the threads it starts later).
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) }, "unshare(CLONE_NEWNS)")?;
    mount("none", Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE, None)?;
    mount("avpfs-fuzz", mnt, Some("tmpfs"), libc::MS_NODEV | libc::MS_NOSUID, Some(TMPFS_OPTIONS))?;
    for w in &writable {
        mount(&w.to_string_lossy(), w, None, libc::MS_BIND | libc::MS_REC, None)?;
    }
    mount_setattr(Path::new("/"), true, libc::MOUNT_ATTR_RDONLY, 0)?;
    for w in writable.iter().map(PathBuf::as_path).chain([mnt]) {
        mount_setattr(w, true, 0, libc::MOUNT_ATTR_RDONLY)?;
    }
    // The working directory still points into the mount it was entered
    // through, now read-only: enter it again through the bind mount, or
    // libFuzzer's relative corpus paths cannot be written.
    let cwd = std::env::current_dir()?;
    std::env::set_current_dir(&cwd)?;
    for set in [caps::CapSet::Effective, caps::CapSet::Permitted, caps::CapSet::Bounding] {
        caps::drop(None, set, caps::Capability::CAP_MKNOD)
            .map_err(|e| io::Error::other(format!("drop CAP_MKNOD: {e}")))?;
    }
    Ok(())
}

/// Creates the tree every run starts from (the same as `MemFs::populated`).
pub fn populate(root: &Path, outer_sentinel: &Path) -> io::Result<()> {
    let mode = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m));
    let file = root.join("file");
    fs::write(&file, FILE_CONTENT)?;
    mode(&file, 0o644)?;
    let c = cstring(&file)?;
    // SAFETY: the strings are NUL-terminated and the value is valid for its length.
    unsafe { libc::lsetxattr(c.as_ptr(), c"user.test".as_ptr(), b"value".as_ptr().cast(), 5, 0) };
    fs::create_dir(root.join("dir"))?;
    mode(&root.join("dir"), 0o755)?;
    fs::write(root.join("dir/inner"), b"inner\n")?;
    mode(&root.join("dir/inner"), 0o644)?;
    fs::create_dir(root.join("pub"))?;
    mode(&root.join("pub"), 0o1777)?;
    symlink("file", root.join("link"))?;
    symlink("../sentinel", root.join("escape"))?;
    symlink(outer_sentinel, root.join("abs"))?;
    let fifo = root.join("fifo");
    let c = cstring(&fifo)?;
    // SAFETY: `c` is NUL-terminated.
    check(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, "mkfifo")?;
    mode(&fifo, 0o644)?;
    Ok(())
}

fn empty_dir(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            fs::remove_dir_all(e.path())?;
        } else {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

impl Share {
    /// Enters the sandbox and builds the share (once per process). With
    /// `sandbox` false (for file systems that never touch the host) the
    /// share is an ordinary temporary directory.
    pub fn new(sandbox: bool) -> io::Result<Share> {
        let outer = if sandbox {
            enter_sandbox()?;
            PathBuf::from(MOUNT_POINT)
        } else {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("avpfs-fuzz-{}-{n}", std::process::id()));
            fs::create_dir_all(&p)?;
            p
        };
        let base = outer.join("base");
        let root = base.join("share");
        let secret = random_secret();
        fs::write(outer.join("sentinel"), &secret)?;
        fs::create_dir_all(&root)?;
        fs::write(base.join("sentinel"), &secret)?;
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755))?;
        let snapshot = Share::snapshot_of(&outer, &base, &root)?;
        let mut share = Share { outer, base, root, secret, snapshot, fds: None, sandboxed: sandbox };
        share.reset()?;
        Ok(share)
    }

    fn snapshot_of(outer: &Path, base: &Path, root: &Path) -> io::Result<Snapshot> {
        let (fsuid, fsgid) = fsids();
        Ok(Snapshot {
            outer: meta(outer)?,
            outer_sentinel: meta(&outer.join("sentinel"))?,
            base: meta(base)?,
            base_sentinel: meta(&base.join("sentinel"))?,
            share_ino: fs::symlink_metadata(root)?.ino(),
            fsuid,
            fsgid,
            cwd: std::env::current_dir().ok(),
            caps: effective_caps(),
        })
    }

    /// The share root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The content of the sentinels: a reply that contains it read a file
    /// outside the share.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Empties the share and rebuilds the starting tree.
    pub fn reset(&mut self) -> io::Result<()> {
        empty_dir(&self.root)?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o755))?;
        std::os::unix::fs::lchown(&self.root, Some(0), Some(0))?;
        let c = cstring(&self.root)?;
        for (name, _) in xattrs(&self.root)? {
            let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: both strings are NUL-terminated.
            unsafe { libc::lremovexattr(c.as_ptr(), name.as_ptr()) };
        }
        populate(&self.root, &self.outer.join("sentinel"))
    }

    /// Panics when anything outside the share or any process credential
    /// changed during the run, or descriptors leaked.
    pub fn check(&mut self) {
        let now = Share::snapshot_of(&self.outer, &self.base, &self.root)
            .unwrap_or_else(|e| panic!("cannot inspect the share's surroundings: {e}"));
        if now != self.snapshot {
            panic!("changed outside the share or in the process credentials:\n{}", self.snapshot.diff(&now).join("\n"));
        }
        let fds = open_fds(&self.outer);
        match self.fds {
            None => self.fds = Some(fds),
            Some(before) => assert_eq!(fds, before, "descriptors leaked: {before} open before this run, {fds} after"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    fn caught(share: &mut Share) -> String {
        let err = catch_unwind(AssertUnwindSafe(|| share.check())).expect_err("the change went unnoticed");
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[test]
    fn a_clean_run_passes_and_changes_outside_are_caught() {
        let mut share = Share::new(false).unwrap();
        share.check();
        // Inside the share: allowed.
        fs::write(share.root().join("new"), b"x").unwrap();
        fs::remove_file(share.root().join("file")).unwrap();
        share.check();
        share.reset().unwrap();
        assert_eq!(fs::read(share.root().join("file")).unwrap(), FILE_CONTENT);
        assert!(!share.root().join("new").exists());

        // A file appears next to the share.
        fs::write(share.base.join("escaped"), b"x").unwrap();
        assert!(caught(&mut share).contains("base: listing"));
        fs::remove_file(share.base.join("escaped")).unwrap();

        // The sentinel is changed through the `escape` symlink.
        let mut share = Share::new(false).unwrap();
        fs::write(share.root().join("escape"), b"overwritten").unwrap();
        assert!(caught(&mut share).contains("base/sentinel: content"));

        // A hard link to the outer sentinel.
        let mut share = Share::new(false).unwrap();
        fs::hard_link(share.outer.join("sentinel"), share.root().join("stolen")).unwrap();
        assert!(caught(&mut share).contains("outer/sentinel: nlink"));
    }
}
