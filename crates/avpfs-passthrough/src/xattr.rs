//! Extended attributes: SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR.
//!
//! Nodes hold `O_PATH` descriptors, which the `f*xattr` calls reject; the
//! calls go through the `/proc/self/fd/N` magic link instead, which reaches
//! the node's own inode (a symlink or a device node itself, never what it
//! points to, and without opening it).
//!
//! With xattrs disabled every call fails with `ENOSYS`, so the client stops
//! asking. POSIX ACLs (`system.posix_acl_*`) pass only when enabled.

use std::ffi::CStr;
use std::io;
use std::os::fd::AsFd;

use avpfs_server::{Context, NodeId, SetxattrRequest};
use avpfs_sys::xattr::{self, Target};

use crate::passthrough::PassthroughFs;
use crate::util::errno;

const ACL_PREFIX: &[u8] = b"system.posix_acl_";

fn is_acl(name: &[u8]) -> bool {
    name.starts_with(ACL_PREFIX)
}

impl PassthroughFs {
    fn check_xattr(&self, name: Option<&CStr>) -> io::Result<()> {
        if !self.cfg.xattr {
            return Err(errno(libc::ENOSYS));
        }
        if name.is_some_and(|n| is_acl(n.to_bytes())) && !self.cfg.posix_acl {
            return Err(errno(libc::EOPNOTSUPP));
        }
        Ok(())
    }

    pub(crate) fn do_getxattr(&self, node: NodeId, name: &CStr) -> io::Result<Vec<u8>> {
        self.check_xattr(Some(name))?;
        let n = self.inodes.get(node)?;
        let fd = n.fd()?;
        xattr::get(Target::Path(&self.proc.path_of(fd.as_fd())), name)
    }

    pub(crate) fn do_listxattr(&self, node: NodeId) -> io::Result<Vec<u8>> {
        self.check_xattr(None)?;
        let n = self.inodes.get(node)?;
        let fd = n.fd()?;
        let list = xattr::list(Target::Path(&self.proc.path_of(fd.as_fd())))?;
        if self.cfg.posix_acl {
            return Ok(list);
        }
        let mut out = Vec::with_capacity(list.len());
        for name in list.split_inclusive(|&c| c == 0) {
            if !is_acl(name) {
                out.extend_from_slice(name);
            }
        }
        Ok(out)
    }

    pub(crate) fn do_setxattr(
        &self,
        ctx: &Context,
        node: NodeId,
        name: &CStr,
        req: SetxattrRequest<'_>,
    ) -> io::Result<()> {
        let SetxattrRequest { value, flags, kill_sgid } = req;
        self.check_xattr(Some(name))?;
        let n = self.inodes.get(node)?;
        let fd = n.fd()?;
        let path = self.proc.path_of(fd.as_fd());
        // Setting an access ACL clears setgid when the caller is not in the
        // file's group: let the host kernel decide, as the caller.
        let _creds = if kill_sgid && is_acl(name.to_bytes()) { self.as_caller(ctx)? } else { None };
        xattr::set(Target::Path(&path), name, value, flags as i32)
    }

    pub(crate) fn do_removexattr(&self, node: NodeId, name: &CStr) -> io::Result<()> {
        self.check_xattr(Some(name))?;
        let n = self.inodes.get(node)?;
        let fd = n.fd()?;
        xattr::remove(Target::Path(&self.proc.path_of(fd.as_fd())), name)
    }
}
