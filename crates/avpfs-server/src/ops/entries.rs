//! Directory entry opcodes: LOOKUP and the references it hands out (FORGET,
//! BATCH_FORGET), creating, linking, removing and renaming names, READLINK.

use fuse_abi::{self as abi, opcode};
use zerocopy::FromBytes;

use super::{Request, LOG_TARGET};
use crate::args::{self, Args};
use crate::filesystem::{FileSystem, MknodRequest, NodeId, RenameRequest};
use crate::server::{errno, Handled, Server};
use crate::transport::Writer;

impl<F: FileSystem> Server<F> {
    #[inline]
    pub(crate) fn do_lookup(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        self.reply_entry(rq, w, self.fs.lookup(&rq.ctx, rq.node, a.name()?).map_err(errno)?)
    }

    #[inline]
    pub(crate) fn do_forget(&self, rq: &Request<'_>, a: &mut Args<'_>) -> Result<Handled, i32> {
        let f: abi::ForgetIn = a.fetch()?;
        self.fs.forget(rq.node, f.nlookup);
        Ok(Handled::NoReply)
    }

    pub(crate) fn do_batch_forget(&self, a: &mut Args<'_>) -> Result<Handled, i32> {
        let b: abi::BatchForgetIn = a.fetch()?;
        let rest = a.rest();
        let n = (b.count as usize).min(rest.len() / core::mem::size_of::<abi::ForgetOne>());
        if n < b.count as usize {
            crate::guest_warn!(target: LOG_TARGET, "BATCH_FORGET: count {} but room for {n}", b.count);
        }
        let list: Vec<(NodeId, u64)> = rest
            .chunks_exact(core::mem::size_of::<abi::ForgetOne>())
            .take(n)
            .filter_map(|c| abi::ForgetOne::read_from_bytes(c).ok())
            .map(|f| (NodeId(f.nodeid), f.nlookup))
            .collect();
        self.fs.batch_forget(&list);
        Ok(Handled::NoReply)
    }

    pub(crate) fn do_readlink(&self, rq: &Request<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let target = self.fs.readlink(&rq.ctx, rq.node).map_err(errno)?;
        rq.ok(w, &[&target])
    }

    pub(crate) fn do_symlink(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let name = a.name()?;
        let target = a.cstr(args::PATH_MAX)?;
        if target.is_empty() {
            return Err(libc::ENOENT);
        }
        self.reply_entry(rq, w, self.fs.symlink(&rq.ctx, target, rq.node, name).map_err(errno)?)
    }

    pub(crate) fn do_mknod(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let m: abi::MknodIn = a.fetch()?;
        let req = MknodRequest { mode: m.mode, rdev: m.rdev, umask: m.umask };
        self.reply_entry(rq, w, self.fs.mknod(&rq.ctx, rq.node, a.name()?, req).map_err(errno)?)
    }

    pub(crate) fn do_mkdir(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let m: abi::MkdirIn = a.fetch()?;
        self.reply_entry(rq, w, self.fs.mkdir(&rq.ctx, rq.node, a.name()?, m.mode, m.umask).map_err(errno)?)
    }

    pub(crate) fn do_unlink(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        self.fs.unlink(&rq.ctx, rq.node, a.name()?).map_err(errno)?;
        rq.empty(w)
    }

    pub(crate) fn do_rmdir(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        self.fs.rmdir(&rq.ctx, rq.node, a.name()?).map_err(errno)?;
        rq.empty(w)
    }

    /// RENAME and RENAME2: they differ only in RENAME2's flags.
    pub(crate) fn do_rename(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let (newdir, flags) = if rq.h.opcode == opcode::RENAME {
            (NodeId(a.fetch::<abi::RenameIn>()?.newdir), 0)
        } else {
            let r: abi::Rename2In = a.fetch()?;
            (NodeId(r.newdir), r.flags)
        };
        let oldname = a.name()?;
        let newname = a.name()?;
        let req = RenameRequest { olddir: rq.node, oldname, newdir, newname, flags };
        self.fs.rename(&rq.ctx, req).map_err(errno)?;
        rq.empty(w)
    }

    pub(crate) fn do_link(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let l: abi::LinkIn = a.fetch()?;
        self.reply_entry(rq, w, self.fs.link(&rq.ctx, NodeId(l.oldnodeid), rq.node, a.name()?).map_err(errno)?)
    }
}
