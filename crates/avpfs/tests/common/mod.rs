//! Starting the real `avpfs` binary on a share and mounting it through /dev/fuse.

#![allow(dead_code)]

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// FUSE_SUPER_MAGIC from statfs(2).
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// A running `avpfs --fuse-mount` process; unmounts and stops it on drop.
pub struct Mounted {
    pub child: Option<Child>,
    pub share: PathBuf,
    pub mountpoint: PathBuf,
}

/// Whether `path` is the root of a FUSE mount.
pub fn is_fuse_mount(path: &Path) -> bool {
    // statfs(2) by path is an O_PATH open and fstatfs(2) of it.
    let st = avpfs_sys::open::open_path(path, libc::O_PATH).and_then(|fd| avpfs_sys::stat::fstatfs(fd.as_fd()));
    st.is_ok_and(|st| st.f_type == FUSE_SUPER_MAGIC)
}

impl Mounted {
    /// Starts avpfs on `share`, mounted at `mountpoint`, with extra flags.
    pub fn start(share: &Path, mountpoint: &Path, extra: &[&str]) -> Mounted {
        Self::start_logging(share, mountpoint, extra, None)
    }

    /// Like [`Mounted::start`], with the daemon's stderr going to `log`.
    pub fn start_logging(share: &Path, mountpoint: &Path, extra: &[&str], log: Option<&Path>) -> Mounted {
        let filter = std::env::var("AVPFS_LOG").unwrap_or_else(|_| "warn".into());
        Self::start_logging_at(share, mountpoint, extra, log, &filter)
    }

    /// Like [`Mounted::start_logging`], with the log filter `filter`
    /// (`AVPFS_LOG` syntax; `avpfs_server=debug` logs every request).
    pub fn start_logging_at(
        share: &Path,
        mountpoint: &Path,
        extra: &[&str],
        log: Option<&Path>,
        filter: &str,
    ) -> Mounted {
        let stderr = match log {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::inherit(),
        };
        std::fs::create_dir_all(share).unwrap();
        std::fs::create_dir_all(mountpoint).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_avpfs"))
            .arg("--shared-dir")
            .arg(share)
            .arg("--fuse-mount")
            .arg(mountpoint)
            .args(extra)
            .env("AVPFS_LOG", filter)
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start avpfs");
        let mut m = Mounted { child: Some(child), share: share.into(), mountpoint: mountpoint.into() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_fuse_mount(mountpoint) {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("avpfs exited before mounting: {status}");
            }
            assert!(Instant::now() < deadline, "avpfs did not mount {} in 20 s", mountpoint.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    /// Sends SIGTERM and waits for the process; returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("already stopped");
        avpfs_sys::process::kill(child.id() as i32, libc::SIGTERM).expect("SIGTERM to avpfs");
        child.wait().unwrap()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Best effort, as the drop of a test that may have failed.
            let _ = avpfs_sys::process::kill(child.id() as i32, libc::SIGTERM);
            let _ = child.wait();
        }
        if is_fuse_mount(&self.mountpoint) {
            let c = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes()).unwrap();
            let _ = avpfs_sys::mount::umount2(&c, libc::MNT_DETACH);
        }
    }
}

/// The msize the tests' 9P clients ask for.
pub const P9_MSIZE: u32 = 65536;

/// A 9P2000.L client's one exchange with the daemon's 9P listener over
/// `stream`: sends `req` with `tag` and reads the reply frame.
pub fn p9_rpc<S: std::io::Read + std::io::Write>(
    stream: &mut S,
    tag: p9_abi::Tag,
    req: &p9_abi::Request<'_>,
) -> Vec<u8> {
    let mut out = Vec::new();
    req.encode(tag, P9_MSIZE, &mut out).unwrap();
    stream.write_all(&out).unwrap();
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let mut frame = prefix.to_vec();
    frame.resize(p9_abi::frame_size(prefix, P9_MSIZE).unwrap(), 0);
    stream.read_exact(&mut frame[4..]).unwrap();
    frame
}
