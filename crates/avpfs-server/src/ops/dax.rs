//! DAX window opcodes: SETUPMAPPING and REMOVEMAPPING (the rules are
//! [`crate::dax`]'s), and per-inode DAX: the one place where FUSE_ATTR_DAX
//! is set or cleared on the entries and attributes the server replies.

use fuse_abi::{self as abi, attr_flags, init_flags as init, setupmapping_flags as map};
use zerocopy::IntoBytes;

use super::Request;
use crate::args::Args;
use crate::dax::DAX_ALIGNMENT;
use crate::filesystem::{Entry, FileSystem, Handle, NodeId};
use crate::server::{errno, Handled, Server};
use crate::transport::Writer;

/// The `fh` of a SETUPMAPPING that names no handle (the Linux client's).
const NO_HANDLE: u64 = u64::MAX;

impl<F: FileSystem> Server<F> {
    /// Whether the session negotiated per-inode DAX (FUSE_HAS_INODE_DAX:
    /// it has a window and the client offered it).
    #[inline]
    pub(crate) fn inode_dax(&self) -> bool {
        self.negotiated_flags() & init::HAS_INODE_DAX != 0
    }

    /// `attr` of `node` as the client gets it: FUSE_ATTR_DAX set exactly
    /// when the session negotiated per-inode DAX, the node is a regular
    /// file and the file system picks it ([`FileSystem::dax_pick`]);
    /// cleared otherwise, whatever the file system returned.
    #[inline]
    pub(crate) fn dax_attr(&self, node: NodeId, mut attr: abi::Attr) -> abi::Attr {
        attr.flags &= !attr_flags::DAX;
        if attr.mode & libc::S_IFMT == libc::S_IFREG && self.inode_dax() && self.dax_pick(node, attr.mode) {
            attr.flags |= attr_flags::DAX;
        }
        attr
    }

    /// Whether the file system picks `node` for per-inode DAX, asking for a
    /// file the client may write when the window's front end maps every
    /// file writable.
    fn dax_pick(&self, node: NodeId, mode: u32) -> bool {
        let writable = self.dax.window().is_none_or(|w| w.front_end().maps_all_writable());
        self.fs.dax_pick(node, mode, writable)
    }

    /// An entry as the client gets it (see [`Server::dax_attr`]); a
    /// negative entry is left alone.
    #[inline]
    pub(crate) fn dax_entry(&self, e: Entry) -> Entry {
        if e.nodeid == NodeId::NONE {
            return e;
        }
        Entry { attr: self.dax_attr(e.nodeid, e.attr), ..e }
    }

    /// Writes the entry reply of LOOKUP, MKNOD, MKDIR, SYMLINK and LINK.
    #[inline]
    pub(crate) fn reply_entry(&self, rq: &Request<'_>, w: &mut dyn Writer, e: Entry) -> Result<Handled, i32> {
        rq.ok(w, &[crate::reply::entry_out(&self.dax_entry(e)).as_bytes()])
    }

    pub(crate) fn do_setupmapping(
        &self,
        rq: &Request<'_>,
        a: &mut Args<'_>,
        w: &mut dyn Writer,
    ) -> Result<Handled, i32> {
        let window = self.dax.window().ok_or(libc::ENOSYS)?;
        let m: abi::SetupMappingIn = a.fetch()?;
        if m.flags & !(map::READ | map::WRITE) != 0 {
            return Err(libc::EINVAL);
        }
        let writable = m.flags & map::WRITE != 0;
        crate::dax::check_range(window.size(), m.moffset, m.len)?;
        if !m.foffset.is_multiple_of(DAX_ALIGNMENT) || m.foffset.checked_add(m.len).is_none_or(|e| e > i64::MAX as u64)
        {
            return Err(libc::EINVAL);
        }
        let handle = (m.fh != NO_HANDLE).then_some(Handle(m.fh));
        // A front end that maps every request writable needs a writable
        // descriptor even for a read mapping: the guest gets no more than
        // a write mapping would give it, and the same checks.
        let fd_writable = writable || window.front_end().maps_all_writable();
        // No size change by avpfs from the size read here to the mapping.
        let _sizes = crate::dax::steady_sizes();
        let fd = self.fs.dax_fd(&rq.ctx, rq.node, handle, fd_writable).map_err(errno)?;
        let st = avpfs_sys::stat::fstat(std::os::fd::AsFd::as_fd(&fd)).map_err(errno)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(libc::ENODEV);
        }
        // Per-inode DAX: only a file the client was told to map.
        if self.inode_dax() && !self.dax_pick(rq.node, st.st_mode) {
            return Err(libc::EPERM);
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        if m.foffset >= size {
            return Err(libc::ENXIO);
        }
        let file = (st.st_dev, st.st_ino);
        self.dax.setup(&*window, fd, file, size, m.foffset, m.moffset, m.len, writable)?;
        rq.empty(w)
    }

    pub(crate) fn do_removemapping(
        &self,
        rq: &Request<'_>,
        a: &mut Args<'_>,
        w: &mut dyn Writer,
    ) -> Result<Handled, i32> {
        let window = self.dax.window().ok_or(libc::ENOSYS)?;
        let r: abi::RemoveMappingIn = a.fetch()?;
        let count = r.count as usize;
        if count == 0 || count > abi::REMOVEMAPPING_MAX_ENTRY {
            return Err(libc::EINVAL);
        }
        let mut ranges = Vec::with_capacity(count);
        for _ in 0..count {
            let one: abi::RemoveMappingOne = a.fetch()?;
            ranges.push((one.moffset, one.len));
        }
        self.dax.remove(&*window, &ranges)?;
        rq.empty(w)
    }
}
