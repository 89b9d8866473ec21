//! Extended attribute opcodes: SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR.

use std::ffi::CStr;

use fuse_abi::{self as abi, init_flags as init};
use zerocopy::IntoBytes;

use super::Request;
use crate::args::{self, Args};
use crate::filesystem::{FileSystem, SetxattrRequest};
use crate::server::{errno, Handled, Server};
use crate::transport::Writer;

impl<F: FileSystem> Server<F> {
    pub(crate) fn do_setxattr(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let ext = self.negotiated_flags() & init::SETXATTR_EXT != 0;
        let size = if ext { core::mem::size_of::<abi::SetxattrIn>() } else { abi::SETXATTR_IN_COMPAT_SIZE };
        let s: abi::SetxattrIn = a.fetch_prefix(size)?;
        let name = xattr_name(a)?;
        if s.size as usize > args::XATTR_SIZE_MAX {
            return Err(libc::E2BIG);
        }
        let value = a.bytes(s.size as usize)?;
        let kill_sgid = s.setxattr_flags & abi::FUSE_SETXATTR_ACL_KILL_SGID != 0;
        let req = SetxattrRequest { value, flags: s.flags, kill_sgid };
        self.fs.setxattr(&rq.ctx, rq.node, name, req).map_err(errno)?;
        rq.empty(w)
    }

    pub(crate) fn do_getxattr(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let g: abi::GetxattrIn = a.fetch()?;
        let name = xattr_name(a)?;
        let value = self.fs.getxattr(&rq.ctx, rq.node, name).map_err(errno)?;
        xattr_reply(rq, w, g.size, &value)
    }

    pub(crate) fn do_listxattr(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let g: abi::GetxattrIn = a.fetch()?;
        let value = self.fs.listxattr(&rq.ctx, rq.node).map_err(errno)?;
        xattr_reply(rq, w, g.size, &value)
    }

    pub(crate) fn do_removexattr(
        &self,
        rq: &Request<'_>,
        a: &mut Args<'_>,
        w: &mut dyn Writer,
    ) -> Result<Handled, i32> {
        let name = xattr_name(a)?;
        self.fs.removexattr(&rq.ctx, rq.node, name).map_err(errno)?;
        rq.empty(w)
    }
}

/// The reply to GETXATTR and LISTXATTR: the size of `value` when the
/// client asked for it (`size` 0), else `value` if it fits in `size`.
fn xattr_reply(rq: &Request<'_>, w: &mut dyn Writer, size: u32, value: &[u8]) -> Result<Handled, i32> {
    if size == 0 {
        rq.ok(w, &[abi::GetxattrOut { size: value.len() as u32, padding: 0 }.as_bytes()])
    } else if value.len() > size as usize {
        Err(libc::ERANGE)
    } else {
        rq.ok(w, &[value])
    }
}

/// Decodes an attribute name: non-empty and at most XATTR_NAME_MAX bytes,
/// `ERANGE` otherwise.
fn xattr_name<'a>(a: &mut Args<'a>) -> Result<&'a CStr, i32> {
    let name = a.cstr(args::XATTR_NAME_MAX).map_err(|e| if e == libc::ENAMETOOLONG { libc::ERANGE } else { e })?;
    if name.is_empty() {
        return Err(libc::ERANGE);
    }
    Ok(name)
}
