//! Attribute opcodes: GETATTR, SETATTR, STATX, ACCESS, and the file system
//! wide STATFS and SYNCFS.

use std::time::Duration;

use fuse_abi as abi;
use zerocopy::IntoBytes;

use super::Request;
use crate::args::Args;
use crate::dax::Resize;
use crate::filesystem::{FileSystem, Handle, SetattrIn, TimeSpec};
use crate::reply::timeout_parts;
use crate::server::{errno, Handled, Server};
use crate::transport::Writer;

impl<F: FileSystem> Server<F> {
    #[inline]
    pub(crate) fn do_getattr(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let g: abi::GetattrIn = a.fetch()?;
        let fh = (g.getattr_flags & abi::FUSE_GETATTR_FH != 0).then_some(Handle(g.fh));
        let (attr, t) = self.fs.getattr(&rq.ctx, rq.node, fh).map_err(errno)?;
        rq.ok(w, &[attr_out(self.dax_attr(rq.node, attr), t).as_bytes()])
    }

    pub(crate) fn do_setattr(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let s: abi::SetattrIn = a.fetch()?;
        let set = setattr_in(&s);
        // A truncation refits the DAX mappings of the file first.
        let _resize = set.size.map(|size| Resize::begin(|| self.fs.host_inode(rq.node), Some(size)));
        let (attr, t) = self.fs.setattr(&rq.ctx, rq.node, set).map_err(errno)?;
        rq.ok(w, &[attr_out(self.dax_attr(rq.node, attr), t).as_bytes()])
    }

    pub(crate) fn do_statx(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let s: abi::StatxIn = a.fetch()?;
        let fh = (s.getattr_flags & abi::FUSE_GETATTR_FH != 0).then_some(Handle(s.fh));
        let (stat, t) = self.fs.statx(&rq.ctx, rq.node, fh, s.sx_flags, s.sx_mask).map_err(errno)?;
        let (secs, nsecs) = timeout_parts(t);
        let out = abi::StatxOut { attr_valid: secs, attr_valid_nsec: nsecs, flags: 0, spare: [0; 2], stat };
        rq.ok(w, &[out.as_bytes()])
    }

    pub(crate) fn do_access(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let acc: abi::AccessIn = a.fetch()?;
        self.fs.access(&rq.ctx, rq.node, acc.mask).map_err(errno)?;
        rq.empty(w)
    }

    pub(crate) fn do_statfs(&self, rq: &Request<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let st = self.fs.statfs(&rq.ctx, rq.node).map_err(errno)?;
        rq.ok(w, &[abi::StatfsOut { st }.as_bytes()])
    }

    pub(crate) fn do_syncfs(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let _: abi::SyncfsIn = a.fetch()?;
        self.fs.syncfs(&rq.ctx, rq.node).map_err(errno)?;
        rq.empty(w)
    }
}

#[inline]
fn attr_out(attr: abi::Attr, t: Duration) -> abi::AttrOut {
    let (secs, nsecs) = timeout_parts(t);
    abi::AttrOut { attr_valid: secs, attr_valid_nsec: nsecs, dummy: 0, attr }
}

/// Turns the wire SETATTR into the typed change set.
pub fn setattr_in(s: &abi::SetattrIn) -> SetattrIn {
    use abi::fattr;
    let v = s.valid;
    let time = |set: u32, now: u32, secs: u64, nsecs: u32| {
        if v & now != 0 {
            Some(TimeSpec::Now)
        } else if v & set != 0 {
            Some(TimeSpec::At(secs, nsecs))
        } else {
            None
        }
    };
    SetattrIn {
        mode: (v & fattr::MODE != 0).then_some(s.mode),
        uid: (v & fattr::UID != 0).then_some(s.uid),
        gid: (v & fattr::GID != 0).then_some(s.gid),
        size: (v & fattr::SIZE != 0).then_some(s.size),
        atime: time(fattr::ATIME, fattr::ATIME_NOW, s.atime, s.atimensec),
        mtime: time(fattr::MTIME, fattr::MTIME_NOW, s.mtime, s.mtimensec),
        ctime: (v & fattr::CTIME != 0).then_some((s.ctime, s.ctimensec)),
        handle: (v & fattr::FH != 0).then_some(Handle(s.fh)),
        kill_suidgid: v & fattr::KILL_SUIDGID != 0,
    }
}
