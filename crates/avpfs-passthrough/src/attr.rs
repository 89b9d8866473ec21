//! Attributes: GETATTR, SETATTR, STATX, STATFS, ACCESS.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use avpfs_server::{Context, Handle, NodeId, SetattrIn, TimeSpec};
use avpfs_sys::{fs, stat};
use fuse_abi::{Attr, Kstatfs, Statx};

use crate::creds::kills_privs;
use crate::passthrough::PassthroughFs;
use crate::statx::{attr_from_statx, statx_reply};
use crate::util::errno;

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
            let kill = kills_privs(ctx, set.kill_suidgid);
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
