//! Open file opcodes: OPEN, CREATE, TMPFILE, READ, WRITE, FLUSH, RELEASE,
//! FSYNC, FALLOCATE, LSEEK, COPY_FILE_RANGE.

use std::io;

use fuse_abi as abi;
use zerocopy::{FromBytes, IntoBytes};

use super::{open_out, reply, Request, LOG_TARGET};
use crate::args::Args;
use crate::dax::{self, Resize};
use crate::filesystem::{
    Context, CopyRange, CreateRequest, FallocateRequest, FileSystem, Handle, LockOwner, NodeId, ReadRequest,
    WriteRequest,
};
use crate::reply::{entry_out, OUT_HEADER_SIZE};
use crate::server::{errno, Handled, Server, MAX_REQUEST_SIZE, MAX_WRITE};
use crate::transport::{Reader, Writer};

impl<F: FileSystem> Server<F> {
    pub(crate) fn do_open(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let o: abi::OpenIn = a.fetch()?;
        let kill = o.open_flags & abi::FUSE_OPEN_KILL_SUIDGID != 0;
        let truncates = o.flags & libc::O_TRUNC as u32 != 0;
        let _resize = truncates.then(|| Resize::begin(|| self.fs.host_inode(rq.node), Some(0)));
        let reply = self.fs.open(&rq.ctx, rq.node, o.flags, kill).map_err(errno)?;
        rq.ok(w, &[open_out(reply).as_bytes()])
    }

    pub(crate) fn do_create(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let c: abi::CreateIn = a.fetch()?;
        let name = a.name()?;
        let req = CreateRequest { mode: c.mode, umask: c.umask, flags: c.flags };
        let (e, o) = self.fs.create(&rq.ctx, rq.node, name, req).map_err(errno)?;
        if c.flags & libc::O_TRUNC as u32 != 0 {
            // It may have truncated an existing file some guest maps.
            dax::resized(|| self.fs.host_inode(e.nodeid));
        }
        rq.ok(w, &[entry_out(&self.dax_entry(e)).as_bytes(), open_out(o).as_bytes()])
    }

    pub(crate) fn do_tmpfile(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let c: abi::CreateIn = a.fetch()?;
        let req = CreateRequest { mode: c.mode, umask: c.umask, flags: c.flags };
        let (e, o) = self.fs.tmpfile(&rq.ctx, rq.node, req).map_err(errno)?;
        rq.ok(w, &[entry_out(&self.dax_entry(e)).as_bytes(), open_out(o).as_bytes()])
    }

    /// READ: the file system writes the data straight into the reply, after
    /// a header that is filled in once its length is known.
    #[inline]
    pub(crate) fn do_read(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let rd: abi::ReadIn = a.fetch()?;
        if w.available() < OUT_HEADER_SIZE {
            return Err(libc::ERANGE);
        }
        let size = (rd.size as usize).min(w.available() - OUT_HEADER_SIZE).min(MAX_REQUEST_SIZE);
        if rd.offset > i64::MAX as u64 {
            return Err(libc::EINVAL);
        }
        // Reserve the header; it is written once the payload length is known.
        w.write_all(&[0u8; OUT_HEADER_SIZE]).map_err(|_| libc::ERANGE)?;
        let req = ReadRequest { handle: Handle(rd.fh), offset: rd.offset, size: size as u32, flags: rd.flags };
        let n = self.fs.read(&rq.ctx, rq.node, req, w).map_err(errno)?;
        let len = OUT_HEADER_SIZE + n;
        let hdr = abi::OutHeader { len: len as u32, error: 0, unique: rq.h.unique };
        w.write_at(0, hdr.as_bytes()).map_err(|_| libc::EIO)?;
        Ok(Handled::Reply(len))
    }

    /// WRITE, called before the request body is read: the file system reads
    /// the payload from `r` itself. `args_len` is the body without extensions.
    #[inline]
    pub(crate) fn do_write(
        &self,
        h: &abi::InHeader,
        args_len: usize,
        r: &mut dyn Reader,
        w: &mut dyn Writer,
    ) -> Result<Handled, i32> {
        let mut wb = [0u8; core::mem::size_of::<abi::WriteIn>()];
        if args_len < wb.len() {
            return Err(libc::EINVAL);
        }
        r.read_exact(&mut wb).map_err(|_| libc::EINVAL)?;
        let wi = abi::WriteIn::read_from_bytes(&wb[..]).map_err(|_| libc::EINVAL)?;
        if wi.size as usize != args_len - wb.len() || wi.size > MAX_WRITE {
            crate::guest_warn!(
                target: LOG_TARGET,
                "WRITE: size {} but payload of {} bytes",
                wi.size,
                args_len - wb.len()
            );
            return Err(libc::EINVAL);
        }
        if wi.offset.checked_add(u64::from(wi.size)).is_none_or(|end| end > i64::MAX as u64) {
            return Err(libc::EFBIG);
        }
        let ctx = Context { uid: h.uid, gid: h.gid, pid: h.pid, groups: None };
        let kill = wi.write_flags & abi::FUSE_WRITE_KILL_SUIDGID != 0;
        let req = WriteRequest {
            handle: Handle(wi.fh),
            offset: wi.offset,
            size: wi.size,
            kill_suidgid: kill,
            flags: wi.flags,
        };
        let n = self.fs.write(&ctx, NodeId(h.nodeid), req, r).map_err(errno)?;
        dax::grown(|| self.fs.host_inode(NodeId(h.nodeid)));
        reply(w, h.unique, &[abi::WriteOut { size: n as u32, padding: 0 }.as_bytes()])
    }

    pub(crate) fn do_flush(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let f: abi::FlushIn = a.fetch()?;
        self.fs.flush(&rq.ctx, rq.node, Handle(f.fh), LockOwner(f.lock_owner)).map_err(errno)?;
        rq.empty(w)
    }

    pub(crate) fn do_release(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let rel: abi::ReleaseIn = a.fetch()?;
        let fh = Handle(rel.fh);
        let lock_owner = LockOwner(rel.lock_owner);
        let owner = (rel.release_flags & abi::FUSE_RELEASE_FLOCK_UNLOCK != 0).then_some(lock_owner);
        if rel.release_flags & abi::FUSE_RELEASE_FLUSH != 0 {
            ignore_enosys(self.fs.flush(&rq.ctx, rq.node, fh, lock_owner)).map_err(errno)?;
        }
        self.fs.release(&rq.ctx, rq.node, fh, rel.flags, owner).map_err(errno)?;
        rq.empty(w)
    }

    pub(crate) fn do_fsync(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let f: abi::FsyncIn = a.fetch()?;
        let datasync = f.fsync_flags & abi::FUSE_FSYNC_FDATASYNC != 0;
        self.fs.fsync(&rq.ctx, rq.node, Handle(f.fh), datasync).map_err(errno)?;
        rq.empty(w)
    }

    pub(crate) fn do_fallocate(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let f: abi::FallocateIn = a.fetch()?;
        let req = FallocateRequest { handle: Handle(f.fh), mode: f.mode, offset: f.offset, length: f.length };
        // Collapsing a range shrinks the file: its DAX mappings are
        // unmapped until it is done; any other mode may grow it.
        let moves = f.mode & (libc::FALLOC_FL_COLLAPSE_RANGE | libc::FALLOC_FL_INSERT_RANGE) as u32 != 0;
        let resize = moves.then(|| Resize::begin(|| self.fs.host_inode(rq.node), None));
        self.fs.fallocate(&rq.ctx, rq.node, req).map_err(errno)?;
        if resize.is_none() {
            dax::grown(|| self.fs.host_inode(rq.node));
        }
        rq.empty(w)
    }

    pub(crate) fn do_lseek(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let l: abi::LseekIn = a.fetch()?;
        let offset = self.fs.lseek(&rq.ctx, rq.node, Handle(l.fh), l.offset, l.whence).map_err(errno)?;
        rq.ok(w, &[abi::LseekOut { offset }.as_bytes()])
    }

    pub(crate) fn do_copy_file_range(
        &self,
        rq: &Request<'_>,
        a: &mut Args<'_>,
        w: &mut dyn Writer,
    ) -> Result<Handled, i32> {
        let c: abi::CopyFileRangeIn = a.fetch()?;
        let len = c.len.min(u64::from(u32::MAX) & !0xfff);
        let range = CopyRange {
            node_in: rq.node,
            handle_in: Handle(c.fh_in),
            offset_in: c.off_in,
            node_out: NodeId(c.nodeid_out),
            handle_out: Handle(c.fh_out),
            offset_out: c.off_out,
            len,
            flags: c.flags,
        };
        let n = self.fs.copy_file_range(&rq.ctx, range).map_err(errno)?;
        dax::grown(|| self.fs.host_inode(NodeId(c.nodeid_out)));
        rq.ok(w, &[abi::WriteOut { size: n as u32, padding: 0 }.as_bytes()])
    }
}

/// A FLUSH that the file system does not implement is no error.
fn ignore_enosys(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(()),
        other => other,
    }
}
