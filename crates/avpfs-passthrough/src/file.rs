//! Open files: OPEN, CREATE, TMPFILE, READ, WRITE, FLUSH, RELEASE, FSYNC,
//! FALLOCATE, LSEEK, COPY_FILE_RANGE, SYNCFS.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use avpfs_server::{
    Context, CopyRange, CreateRequest, Entry, FallocateRequest, Handle, LockOwner, NodeId, OpenReply, ReadRequest,
    WriteRequest, ZeroCopyReader, ZeroCopyWriter,
};
use avpfs_sys::open::open_beneath;
use avpfs_sys::{fs, lock};
use fuse_abi::{fopen, init_flags as init};

use crate::creds::{clear_suidgid, kills_privs};
use crate::inode::Node;
use crate::passthrough::PassthroughFs;
use crate::util::{check_name, errno};

/// Flags that make no sense when re-opening or that the server decides.
const STRIPPED: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_NOFOLLOW | libc::O_PATH;

impl PassthroughFs {
    /// The host open flags for client `flags`, and the FOPEN_* reply flags.
    fn open_flags(&self, flags: u32) -> (i32, u32) {
        let mut f = flags as i32 & !STRIPPED;
        let mut reply = self.cfg.cache.file_open_flags();
        if f & libc::O_DIRECT != 0 {
            if self.cfg.allow_direct_io {
                reply |= fopen::DIRECT_IO;
            } else {
                f &= !libc::O_DIRECT;
            }
        }
        if self.negotiated(init::WRITEBACK_CACHE) {
            // The client's page cache reads even files opened write-only,
            // and appends itself.
            if f & libc::O_ACCMODE == libc::O_WRONLY {
                f = (f & !libc::O_ACCMODE) | libc::O_RDWR;
            }
            f &= !libc::O_APPEND;
        }
        (f | libc::O_CLOEXEC, reply)
    }

    pub(crate) fn do_open(&self, ctx: &Context, node: NodeId, flags: u32, kill_suidgid: bool) -> io::Result<OpenReply> {
        let n = self.inodes.get(node)?;
        match n.kind {
            libc::S_IFREG => {}
            libc::S_IFDIR => return Err(errno(libc::EISDIR)),
            // Special files are the client's own (its devices, its fifos);
            // opening the host's would be an escape.
            _ => return Err(errno(libc::ENXIO)),
        }
        let (host, open_flags) = self.open_flags(flags);
        let fd = self.proc.reopen(n.fd()?.as_fd(), host)?;
        if host & libc::O_TRUNC != 0 && kills_privs(ctx, kill_suidgid) {
            clear_suidgid(fd.as_fd(), ctx)?;
        }
        Ok(OpenReply { handle: self.handles.insert(n, fd, host, false), open_flags })
    }

    /// CREATE (with a name) or TMPFILE (without).
    pub(crate) fn do_create(
        &self,
        ctx: &Context,
        parent: NodeId,
        name: Option<&CStr>,
        req: CreateRequest,
    ) -> io::Result<(Entry, OpenReply)> {
        let CreateRequest { mode, umask, flags } = req;
        let p = self.inodes.get(parent)?;
        let pfd = p.fd()?;
        let (host, open_flags) = self.open_flags(flags);
        let created = {
            let _creds = self.as_caller_on(ctx, pfd.as_fd())?;
            let mode = self.creation_mode(mode, umask)? & 0o7777;
            match name {
                Some(name) => {
                    check_name(name)?;
                    // O_EXCL always: an existing name is opened below, as
                    // OPEN would, never a host fifo or device by surprise.
                    open_beneath(pfd.as_fd(), name, host | libc::O_CREAT | libc::O_EXCL, mode)
                }
                None => {
                    let mut host = host | libc::O_TMPFILE;
                    if host & libc::O_ACCMODE == libc::O_RDONLY {
                        host |= libc::O_RDWR;
                    }
                    open_beneath(pfd.as_fd(), c".", host, mode)
                }
            }
        };
        let fd = match (created, name) {
            (Ok(fd), _) => fd,
            (Err(e), Some(name)) if e.raw_os_error() == Some(libc::EEXIST) && flags as i32 & libc::O_EXCL == 0 => {
                return self.open_existing(ctx, &p, name, host, open_flags);
            }
            (Err(e), _) => return Err(e),
        };
        let path_fd = self.proc.reopen(fd.as_fd(), libc::O_PATH)?;
        let (entry, node) = self.entry_for(path_fd, Some(&p))?;
        Ok((entry, OpenReply { handle: self.handles.insert(node, fd, host, false), open_flags }))
    }

    /// CREATE without O_EXCL of a name that exists: opens the file as the
    /// caller (the client did not check its permissions: it did not know
    /// the file), regular files only.
    fn open_existing(
        &self,
        ctx: &Context,
        parent: &Node,
        name: &CStr,
        host: i32,
        open_flags: u32,
    ) -> io::Result<(Entry, OpenReply)> {
        let (entry, node) = self.lookup_child(parent, name)?;
        let opened = match node.kind {
            libc::S_IFREG => node.fd().and_then(|pfd| {
                let _creds = self.as_caller_on(ctx, pfd.as_fd())?;
                self.proc.reopen(pfd.as_fd(), host)
            }),
            libc::S_IFDIR => Err(errno(libc::EISDIR)),
            libc::S_IFLNK => Err(errno(libc::ELOOP)),
            _ => Err(errno(libc::ENXIO)),
        };
        match opened {
            Ok(fd) => Ok((entry, OpenReply { handle: self.handles.insert(node, fd, host, false), open_flags })),
            Err(e) => {
                self.inodes.forget(entry.nodeid, 1);
                Err(e)
            }
        }
    }

    /// The descriptor a DAX mapping of `node` is made from: a duplicate of
    /// the open file `handle`, which must be open for reading (an mmap
    /// needs it) and, for a write mapping, for writing (`EACCES`); or, with
    /// no handle, the node's file opened anew for the access asked, with
    /// the caller's credentials (the host checks the access as for OPEN).
    pub(crate) fn do_dax_fd(
        &self,
        ctx: &Context,
        node: NodeId,
        handle: Option<Handle>,
        writable: bool,
    ) -> io::Result<OwnedFd> {
        let Some(handle) = handle else {
            let n = self.inodes.get(node)?;
            if n.kind != libc::S_IFREG {
                return Err(errno(libc::ENODEV));
            }
            let flags = if writable { libc::O_RDWR } else { libc::O_RDONLY };
            let pfd = n.fd()?;
            let _creds = self.as_caller_on(ctx, pfd.as_fd())?;
            return self.proc.reopen(pfd.as_fd(), flags | libc::O_CLOEXEC);
        };
        let of = self.handles.get(handle, node)?;
        if of.is_dir {
            return Err(errno(libc::EBADF));
        }
        match fs::access_mode(of.fd.as_fd())? {
            libc::O_RDWR => {}
            libc::O_RDONLY if !writable => {}
            _ => return Err(errno(libc::EACCES)),
        }
        fs::dup(of.fd.as_fd())
    }

    pub(crate) fn do_read(&self, node: NodeId, req: ReadRequest, w: &mut dyn ZeroCopyWriter) -> io::Result<usize> {
        let of = self.handles.get(req.handle, node)?;
        if of.node.kind == libc::S_IFREG {
            w.write_from_file(of.fd.as_fd(), req.size as usize, req.offset)
        } else {
            w.write_from(of.fd.as_fd(), req.size as usize, req.offset)
        }
    }

    pub(crate) fn do_write(
        &self,
        ctx: &Context,
        node: NodeId,
        req: WriteRequest,
        r: &mut dyn ZeroCopyReader,
    ) -> io::Result<usize> {
        let of = self.handles.get(req.handle, node)?;
        let _unprivileged = self.unprivileged_for(ctx, of.fd.as_fd(), kills_privs(ctx, req.kill_suidgid))?;
        r.read_to(of.fd.as_fd(), req.size as usize, req.offset)
    }

    pub(crate) fn do_flush(&self, node: NodeId, handle: Handle, lock_owner: LockOwner) -> io::Result<()> {
        let of = self.handles.get(handle, node)?;
        self.release_posix_locks(&of.node, lock_owner)?;
        fs::flush_by_close(of.fd.as_fd())
    }

    pub(crate) fn do_release(&self, node: NodeId, handle: Handle, flock_owner: Option<LockOwner>) -> io::Result<()> {
        let of = self.handles.remove(handle, node)?;
        self.release_handle_locks(&of.node, handle);
        if flock_owner.is_some() {
            if let Err(e) = lock::flock(of.fd.as_fd(), libc::LOCK_UN, false) {
                log::debug!("flock unlock on release: {e}");
            }
        }
        Ok(())
    }

    pub(crate) fn do_fsync(&self, node: NodeId, handle: Handle, datasync: bool) -> io::Result<()> {
        let of = self.handles.get(handle, node)?;
        fs::fsync(of.fd.as_fd(), datasync)
    }

    pub(crate) fn do_fallocate(&self, node: NodeId, req: FallocateRequest) -> io::Result<()> {
        let of = self.handles.get(req.handle, node)?;
        fs::fallocate(of.fd.as_fd(), req.mode as i32, req.offset, req.length)
    }

    pub(crate) fn do_lseek(&self, node: NodeId, handle: Handle, offset: u64, whence: u32) -> io::Result<u64> {
        let of = self.handles.get(handle, node)?;
        let whence = whence as i32;
        if self.negotiated(init::WRITEBACK_CACHE) && (whence == libc::SEEK_DATA || whence == libc::SEEK_HOLE) {
            // The client does not flush its write-back cache before LSEEK:
            // the host would call dirty ranges holes (and `cp --sparse`
            // would skip them). ENOSYS makes the client answer from its
            // own size: data up to the end, a hole there.
            return Err(errno(libc::ENOSYS));
        }
        if ![libc::SEEK_SET, libc::SEEK_CUR, libc::SEEK_END, libc::SEEK_DATA, libc::SEEK_HOLE].contains(&whence) {
            return Err(errno(libc::EINVAL));
        }
        // The offset is a signed value on the wire (SEEK_CUR/END may go back).
        fs::lseek(of.fd.as_fd(), offset as i64, whence)
    }

    pub(crate) fn do_copy_file_range(&self, range: CopyRange) -> io::Result<usize> {
        let flags = u32::try_from(range.flags).map_err(|_| errno(libc::EINVAL))?;
        let fin = self.handles.get(range.handle_in, range.node_in)?;
        let fout = self.handles.get(range.handle_out, range.node_out)?;
        let len = usize::try_from(range.len).unwrap_or(usize::MAX);
        fs::copy_file_range(fin.fd.as_fd(), range.offset_in, fout.fd.as_fd(), range.offset_out, len, flags)
    }

    pub(crate) fn do_syncfs(&self, node: NodeId) -> io::Result<()> {
        let mut n = self.inodes.get(node)?;
        if n.kind != libc::S_IFDIR && n.kind != libc::S_IFREG {
            n = self.inodes.root();
        }
        // syncfs needs a real open; O_NONBLOCK keeps it from waiting on anything.
        let fd = self.proc.reopen(n.fd()?.as_fd(), libc::O_RDONLY | libc::O_NONBLOCK)?;
        fs::syncfs(fd.as_fd())
    }
}
