//! Acting as the caller.
//!
//! When the daemon runs as root, the operations that create a file (MKNOD,
//! MKDIR, SYMLINK, CREATE, TMPFILE) and ACCESS run with the caller's
//! effective uid, gid and supplementary groups on the worker thread
//! ([`ScopedCreds`]): new files get the caller as owner, the host kernel
//! checks the caller's right to create them, and — since switching the
//! effective uid away from 0 clears the effective capabilities — no
//! `CAP_DAC_OVERRIDE` applies.
//!
//! Other operations run with the daemon's credentials: FUSE sends
//! supplementary groups only with the requests that create files
//! (FUSE_CREATE_SUPP_GROUP), so checking an OPEN or UNLINK as the caller
//! would deny what the caller's groups allow. The client checks those
//! (virtio-fs always mounts with `default_permissions`).
//!
//! Clearing setuid/setgid on WRITE and truncate (`kill_suidgid`) is the
//! host kernel's job too: the call runs without `CAP_FSETID` — as the
//! caller, or as root without that capability when the caller is root.

use std::io;
use std::os::fd::BorrowedFd;

use avpfs_server::Context;
use avpfs_sys::creds::{set_thread_umask, CAP_FSETID};
use avpfs_sys::{fs, stat, DropEffectiveCap, ScopedCreds};
use fuse_abi::init_flags as init;

use crate::passthrough::PassthroughFs;

/// Keeps a thread without the privilege to keep setuid/setgid bits.
#[derive(Debug)]
pub(crate) struct Unprivileged {
    _creds: Option<ScopedCreds>,
    _cap: Option<DropEffectiveCap>,
}

impl PassthroughFs {
    /// Switches the calling thread to the caller's credentials (only when the
    /// daemon runs as root; otherwise the daemon's own are all there is).
    pub(crate) fn as_caller(&self, ctx: &Context) -> io::Result<Option<ScopedCreds>> {
        if !self.is_root {
            return Ok(None);
        }
        ScopedCreds::switch(ctx.uid, ctx.gid, ctx.groups.as_deref()).map(Some)
    }

    /// Like [`PassthroughFs::as_caller`], for a call whose permission check
    /// involves the group of `object` (the directory a file is created in, or
    /// a file being opened). Clients before FUSE_CREATE_SUPP_GROUP (Linux
    /// < 6.3) send no supplementary groups; they checked the caller's access
    /// with all of them already (`default_permissions`). Of those groups only
    /// `object`'s can matter to the host's check, so it is given to the
    /// thread: what the client allowed, the host allows, and no more.
    pub(crate) fn as_caller_on(&self, ctx: &Context, object: BorrowedFd<'_>) -> io::Result<Option<ScopedCreds>> {
        if !self.is_root {
            return Ok(None);
        }
        if ctx.groups.is_some() || ctx.uid == 0 {
            return self.as_caller(ctx);
        }
        let gid = avpfs_sys::stat::fstat(object)?.st_gid;
        ScopedCreds::switch(ctx.uid, ctx.gid, Some(&[gid])).map(Some)
    }

    /// Sets the thread umask for creating a file and returns the mode to pass
    /// to the host. With FUSE_DONT_MASK (POSIX ACLs) the host kernel applies
    /// `umask` itself unless the parent has a default ACL; otherwise the
    /// client's umask is applied here.
    pub(crate) fn creation_mode(&self, mode: u32, umask: u32) -> io::Result<u32> {
        if self.negotiated(init::DONT_MASK) {
            set_thread_umask(umask)?;
            Ok(mode)
        } else {
            set_thread_umask(0)?;
            Ok(mode & !umask)
        }
    }

    /// When `kill` is asked for and the file has setuid/setgid bits, makes
    /// the thread unprivileged for the next call, so the host kernel clears
    /// the bits as it would for the caller.
    pub(crate) fn unprivileged_for(
        &self,
        ctx: &Context,
        fd: BorrowedFd<'_>,
        kill: bool,
    ) -> io::Result<Option<Unprivileged>> {
        if !kill {
            return Ok(None);
        }
        let st = avpfs_sys::stat::fstat(fd)?;
        if st.st_mode & (libc::S_ISUID | libc::S_ISGID) == 0 {
            return Ok(None);
        }
        let creds =
            if self.is_root && ctx.uid != 0 { Some(ScopedCreds::switch(ctx.uid, ctx.gid, None)?) } else { None };
        let cap = if creds.is_none() { Some(DropEffectiveCap::new(CAP_FSETID)?) } else { None };
        Ok(Some(Unprivileged { _creds: creds, _cap: cap }))
    }
}

/// Whether a write or truncate by the caller clears setuid/setgid: when the
/// client says so (FUSE_HANDLE_KILLPRIV_V2), and whenever the caller is not
/// root — without HANDLE_KILLPRIV_V2 the client clears only the bits it
/// knows about (not a setgid without group-exec), and never on an atomic
/// O_TRUNC. Writes of the client's write-back cache come as root.
pub(crate) fn kills_privs(ctx: &Context, kill_suidgid: bool) -> bool {
    kill_suidgid || ctx.uid != 0
}

/// Clears setuid, and setgid when group-executable or when the caller is not
/// in the file's group, as the kernel does when an unprivileged caller
/// truncates (here: an O_TRUNC open, done as the daemon).
pub(crate) fn clear_suidgid(fd: BorrowedFd<'_>, ctx: &Context) -> io::Result<()> {
    let st = stat::fstat(fd)?;
    let mode = st.st_mode;
    let mut kill = mode & libc::S_ISUID;
    if mode & libc::S_ISGID != 0 {
        let in_group = st.st_gid == ctx.gid || ctx.groups.as_ref().is_some_and(|g| g.contains(&st.st_gid));
        if mode & libc::S_IXGRP != 0 || !in_group {
            kill |= libc::S_ISGID;
        }
    }
    if kill != 0 {
        fs::fchmod(fd, mode & 0o7777 & !kill)?;
    }
    Ok(())
}
