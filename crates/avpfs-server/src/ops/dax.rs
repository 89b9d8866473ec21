//! DAX window opcodes: SETUPMAPPING and REMOVEMAPPING (the rules are
//! [`crate::dax`]'s).

use fuse_abi::{self as abi, setupmapping_flags as map};

use super::Request;
use crate::args::Args;
use crate::dax::DAX_ALIGNMENT;
use crate::filesystem::{FileSystem, Handle};
use crate::server::{errno, Handled, Server};
use crate::transport::Writer;

/// The `fh` of a SETUPMAPPING that names no handle (the Linux client's).
const NO_HANDLE: u64 = u64::MAX;

impl<F: FileSystem> Server<F> {
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
        let fd = self.fs.dax_fd(&rq.ctx, rq.node, handle, writable).map_err(errno)?;
        let st = avpfs_sys::stat::fstat(std::os::fd::AsFd::as_fd(&fd)).map_err(errno)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(libc::ENODEV);
        }
        if m.foffset >= u64::try_from(st.st_size).unwrap_or(0) {
            return Err(libc::ENXIO);
        }
        self.dax.setup(&*window, &fd, m.foffset, m.moffset, m.len, writable)?;
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
