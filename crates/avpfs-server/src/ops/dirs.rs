//! Directory handle opcodes: OPENDIR, READDIR, READDIRPLUS, RELEASEDIR,
//! FSYNCDIR.

use fuse_abi::{self as abi, opcode};
use zerocopy::IntoBytes;

use super::{open_out, Request};
use crate::args::Args;
use crate::filesystem::{DirEntry, DirSink, Entry, FileSystem, Handle};
use crate::reply::{DirBuffer, OUT_HEADER_SIZE};
use crate::server::{errno, Handled, Server};
use crate::transport::Writer;

impl<F: FileSystem> Server<F> {
    pub(crate) fn do_opendir(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let o: abi::OpenIn = a.fetch()?;
        let reply = self.fs.opendir(&rq.ctx, rq.node, o.flags).map_err(errno)?;
        rq.ok(w, &[open_out(reply).as_bytes()])
    }

    /// READDIR and READDIRPLUS: the same listing, with or without entries.
    pub(crate) fn do_readdir(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let rd: abi::ReadIn = a.fetch()?;
        let room = w.available().saturating_sub(OUT_HEADER_SIZE);
        let mut buf = DirBuffer::new((rd.size as usize).min(room), rq.h.opcode == opcode::READDIRPLUS);
        if buf.is_plus() && self.inode_dax() {
            let mut marked = DaxSink { server: self, inner: &mut buf };
            self.fs.readdir(&rq.ctx, rq.node, Handle(rd.fh), rd.offset, &mut marked).map_err(errno)?;
        } else {
            self.fs.readdir(&rq.ctx, rq.node, Handle(rd.fh), rd.offset, &mut buf).map_err(errno)?;
        }
        rq.ok(w, &[buf.as_bytes()])
    }

    pub(crate) fn do_releasedir(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let rel: abi::ReleaseIn = a.fetch()?;
        self.fs.releasedir(&rq.ctx, rq.node, Handle(rel.fh), rel.flags).map_err(errno)?;
        rq.empty(w)
    }

    pub(crate) fn do_fsyncdir(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let f: abi::FsyncIn = a.fetch()?;
        let datasync = f.fsync_flags & abi::FUSE_FSYNC_FDATASYNC != 0;
        self.fs.fsyncdir(&rq.ctx, rq.node, Handle(f.fh), datasync).map_err(errno)?;
        rq.empty(w)
    }
}

/// A READDIRPLUS listing under per-inode DAX: each entry is marked by
/// [`Server::dax_entry`] on its way into the reply.
struct DaxSink<'a, F: FileSystem> {
    server: &'a Server<F>,
    inner: &'a mut DirBuffer,
}

impl<F: FileSystem> DirSink for DaxSink<'_, F> {
    fn is_plus(&self) -> bool {
        self.inner.is_plus()
    }
    fn has_room(&self, namelen: usize) -> bool {
        self.inner.has_room(namelen)
    }
    fn remaining(&self) -> usize {
        self.inner.remaining()
    }
    fn add(&mut self, entry: DirEntry<'_>, plus: Option<&Entry>) -> bool {
        let plus = plus.map(|e| self.server.dax_entry(*e));
        self.inner.add(entry, plus.as_ref())
    }
}
