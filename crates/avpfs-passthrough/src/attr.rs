//! Attributes: GETATTR, SETATTR, STATX, STATFS, ACCESS.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use avpfs_server::{Context, Handle, NodeId, SetattrIn, TimeSpec};
use avpfs_sys::{fs, stat};
use fuse_abi::{Attr, Kstatfs, Statx, SxTime};

use crate::{errno, PassthroughFs};

/// Encodes a device number as Linux `new_encode_dev` does (what the client decodes).
pub(crate) fn encode_rdev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// The FUSE attributes of a `statx` result.
pub(crate) fn attr_from_statx(st: &libc::statx) -> Attr {
    Attr {
        ino: st.stx_ino,
        size: st.stx_size,
        blocks: st.stx_blocks,
        atime: st.stx_atime.tv_sec as u64,
        mtime: st.stx_mtime.tv_sec as u64,
        ctime: st.stx_ctime.tv_sec as u64,
        atimensec: st.stx_atime.tv_nsec,
        mtimensec: st.stx_mtime.tv_nsec,
        ctimensec: st.stx_ctime.tv_nsec,
        mode: u32::from(st.stx_mode),
        nlink: st.stx_nlink,
        uid: st.stx_uid,
        gid: st.stx_gid,
        rdev: encode_rdev(st.stx_rdev_major, st.stx_rdev_minor),
        blksize: st.stx_blksize,
        flags: 0,
    }
}

fn sx_time(t: &libc::statx_timestamp) -> SxTime {
    SxTime { tv_sec: t.tv_sec, tv_nsec: t.tv_nsec, reserved: 0 }
}

/// The FUSE statx reply of a `statx` result.
pub(crate) fn statx_reply(st: &libc::statx) -> Statx {
    Statx {
        // Only what the FUSE structure can carry (basic stats and btime).
        mask: st.stx_mask & (libc::STATX_BASIC_STATS | libc::STATX_BTIME),
        blksize: st.stx_blksize,
        attributes: st.stx_attributes,
        nlink: st.stx_nlink,
        uid: st.stx_uid,
        gid: st.stx_gid,
        mode: st.stx_mode,
        spare0: 0,
        ino: st.stx_ino,
        size: st.stx_size,
        blocks: st.stx_blocks,
        attributes_mask: st.stx_attributes_mask,
        atime: sx_time(&st.stx_atime),
        btime: sx_time(&st.stx_btime),
        ctime: sx_time(&st.stx_ctime),
        mtime: sx_time(&st.stx_mtime),
        rdev_major: st.stx_rdev_major,
        rdev_minor: st.stx_rdev_minor,
        dev_major: st.stx_dev_major,
        dev_minor: st.stx_dev_minor,
        spare2: [0; 14],
    }
}

fn timespec(t: Option<TimeSpec>) -> libc::timespec {
    match t {
        None => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        Some(TimeSpec::Now) => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
        Some(TimeSpec::At(s, ns)) => libc::timespec { tv_sec: s as i64, tv_nsec: i64::from(ns) },
    }
}

impl PassthroughFs {
    fn statx_of(&self, node: NodeId, handle: Option<Handle>, flags: i32, mask: u32) -> io::Result<libc::statx> {
        let flags = flags | libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW;
        match handle {
            Some(h) => stat::statx(self.handles.get(h, node)?.fd.as_fd(), c"", flags, mask),
            None => stat::statx(self.inodes.get(node)?.fd()?.as_fd(), c"", flags, mask),
        }
    }

    pub(crate) fn do_getattr(&self, node: NodeId, handle: Option<Handle>) -> io::Result<(Attr, Duration)> {
        let st = self.statx_of(node, handle, 0, stat::STATX_WANTED)?;
        Ok((attr_from_statx(&st), self.timeout()))
    }

    pub(crate) fn do_statx(
        &self,
        node: NodeId,
        handle: Option<Handle>,
        flags: u32,
        mask: u32,
    ) -> io::Result<(Statx, Duration)> {
        let sync = flags as i32 & libc::AT_STATX_SYNC_TYPE;
        let st = self.statx_of(node, handle, sync, mask | libc::STATX_BASIC_STATS)?;
        Ok((statx_reply(&st), self.timeout()))
    }

    pub(crate) fn do_setattr(&self, ctx: &Context, node: NodeId, set: SetattrIn) -> io::Result<(Attr, Duration)> {
        let n = self.inodes.get(node)?;
        let of = set.handle.map(|h| self.handles.get(h, node)).transpose()?;
        let pfd = n.fd()?;
        if let Some(mode) = set.mode {
            match &of {
                Some(of) => fs::fchmod(of.fd.as_fd(), mode & 0o7777)?,
                None => self.proc.chmod(pfd.as_fd(), mode & 0o7777)?,
            }
        }
        if set.uid.is_some() || set.gid.is_some() {
            // Changing the owner clears setuid/setgid in the host kernel as
            // it does in the client's.
            fs::fchown(pfd.as_fd(), set.uid.unwrap_or(u32::MAX), set.gid.unwrap_or(u32::MAX))?;
        }
        if let Some(size) = set.size {
            match n.kind {
                libc::S_IFREG => {}
                libc::S_IFDIR => return Err(errno(libc::EISDIR)),
                _ => return Err(errno(libc::EINVAL)),
            }
            let reopened;
            let fd = match &of {
                Some(of) => of.fd.as_fd(),
                None => {
                    reopened = self.proc.reopen(pfd.as_fd(), libc::O_WRONLY | libc::O_NONBLOCK)?;
                    reopened.as_fd()
                }
            };
            let kill = crate::file::kills_privs(ctx, set.kill_suidgid);
            let _unprivileged = self.unprivileged_for(ctx, fd, kill)?;
            fs::ftruncate(fd, size)?;
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let times = [timespec(set.atime), timespec(set.mtime)];
            match &of {
                Some(of) => fs::futimens(of.fd.as_fd(), &times)?,
                None => self.proc.utimens(pfd.as_fd(), &times)?,
            }
        }
        let st = stat::fstatx(pfd.as_fd())?;
        Ok((attr_from_statx(&st), self.timeout()))
    }

    pub(crate) fn do_statfs(&self, node: NodeId) -> io::Result<Kstatfs> {
        let n = self.inodes.get(node)?;
        let st = stat::fstatfs(n.fd()?.as_fd())?;
        Ok(Kstatfs {
            blocks: st.f_blocks,
            bfree: st.f_bfree,
            bavail: st.f_bavail,
            files: st.f_files,
            ffree: st.f_ffree,
            bsize: st.f_bsize as u32,
            namelen: st.f_namelen as u32,
            frsize: st.f_frsize as u32,
            padding: 0,
            spare: [0; 6],
        })
    }

    pub(crate) fn do_access(&self, ctx: &Context, node: NodeId, mask: u32) -> io::Result<()> {
        let n = self.inodes.get(node)?;
        let pfd = n.fd()?;
        let _creds = self.as_caller(ctx)?;
        self.proc.access(pfd.as_fd(), mask as i32)
    }
}
