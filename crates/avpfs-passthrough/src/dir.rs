//! Directories: OPENDIR, READDIR, READDIRPLUS (RELEASEDIR and FSYNCDIR use
//! the handle table directly).
//!
//! The offset of each entry is the host file system's `d_off` cookie, so a
//! listing continues after any entry the client saw (`seekdir`/`telldir`).

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avpfs_server::{DirEntry, DirSink, Entry, Handle, NodeId, OpenReply};
use avpfs_sys::dir::{getdents64, DirEntries};
use fuse_abi::Attr;

use crate::passthrough::PassthroughFs;
use crate::util::errno;

/// Bytes of host directory entries read at a time.
const DIRENT_BUF: usize = 16 * 1024;
/// Smallest buffer for getdents64: room for a few entries with long names.
const DIRENT_BUF_MIN: usize = 2048;

/// `S_IF*` file-type bits of a `DT_*` type.
fn dtype_mode(typ: u8) -> u32 {
    u32::from(typ) << 12
}

/// How long ago `mtime` was (`None` when it is in the future).
fn mtime_age(mtime: &libc::statx_timestamp) -> Option<Duration> {
    let since_epoch = Duration::new(u64::try_from(mtime.tv_sec).ok()?, mtime.tv_nsec);
    SystemTime::now().duration_since(UNIX_EPOCH).ok()?.checked_sub(since_epoch)
}

impl PassthroughFs {
    pub(crate) fn do_opendir(&self, node: NodeId) -> io::Result<OpenReply> {
        let n = self.inodes.get(node)?;
        if !n.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NONBLOCK;
        let fd = self.proc.reopen(n.fd()?.as_fd(), flags)?;
        // A failed fstat only costs the guest its cached listing.
        let open_flags = self
            .cfg
            .cache
            .dir_open_flags(|| avpfs_sys::stat::fstatx(fd.as_fd()).ok().and_then(|st| mtime_age(&st.stx_mtime)));
        let handle = self.handles.insert(n, fd, flags, true);
        Ok(OpenReply { handle, open_flags })
    }

    pub(crate) fn do_readdir(
        &self,
        node: NodeId,
        handle: Handle,
        offset: u64,
        sink: &mut dyn DirSink,
    ) -> io::Result<()> {
        let of = self.handles.get(handle, node)?;
        if !of.is_dir {
            return Err(errno(libc::ENOTDIR));
        }
        let _pos = of.dir_pos.lock().unwrap_or_else(|e| e.into_inner());
        let dir = of.fd.as_fd();
        // Cookies are opaque 64-bit values that lseek takes as off_t bit patterns.
        avpfs_sys::fs::lseek(dir, offset as i64, libc::SEEK_SET)?;
        // Read about as much of the directory as the reply can hold (a host
        // dirent is a little smaller than a FUSE one): on file systems where
        // seeking to a cookie walks the directory, reading far ahead for
        // entries that are thrown away costs each request dearly.
        let mut buf = vec![0u8; sink.remaining().clamp(DIRENT_BUF_MIN, DIRENT_BUF)];
        let mut added = false;
        loop {
            let n = getdents64(dir, &mut buf)?;
            if n == 0 {
                return Ok(());
            }
            for e in DirEntries::new(&buf[..n]) {
                if !sink.has_room(e.name.len()) {
                    return Ok(());
                }
                // The root's parent is the root (as LOOKUP of ".." answers):
                // the host directory above the share never shows, not even
                // its inode number.
                let ino = if e.name == b".." && of.node.id == NodeId::ROOT { of.node.key.ino } else { e.ino };
                let de = DirEntry { ino, offset: e.off, typ: u32::from(e.typ), name: e.name };
                if !sink.is_plus() {
                    if !sink.add(de, None) {
                        return Ok(());
                    }
                    added = true;
                    continue;
                }
                let entry = if e.name == b"." || e.name == b".." {
                    // No lookup, no reference: the client knows these.
                    let attr = Attr { ino, mode: dtype_mode(e.typ), ..Attr::default() };
                    Entry { nodeid: NodeId::NONE, attr, ..Entry::default() }
                } else {
                    let name = CString::new(e.name).map_err(|_| errno(libc::EIO))?;
                    match self.lookup_child(&of.node, &name) {
                        Ok((entry, _)) => entry,
                        // Removed since it was listed: leave it out.
                        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
                        Err(_) if added => return Ok(()),
                        Err(err) => return Err(err),
                    }
                };
                if !sink.add(de, Some(&entry)) {
                    if entry.nodeid != NodeId::NONE {
                        self.inodes.forget(entry.nodeid, 1);
                    }
                    return Ok(());
                }
                added = true;
            }
        }
    }
}
