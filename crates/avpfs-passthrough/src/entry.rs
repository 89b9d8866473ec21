//! Names: LOOKUP, FORGET, MKNOD, MKDIR, SYMLINK, LINK, UNLINK, RMDIR,
//! RENAME, READLINK, and the making of entries for new nodes.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use avpfs_server::{Context, Entry, MknodRequest, NodeId, RenameRequest};
use avpfs_sys::open::open_beneath;
use avpfs_sys::{fs, stat, FileHandle};

use crate::config::FileHandleMode;
use crate::inode::{InodeKey, Node, NodeFile};
use crate::passthrough::PassthroughFs;
use crate::statx::{attr_from_statx, decode_rdev};
use crate::util::{check_name, errno};

/// `fuse_attr.flags`: the directory is the root of a host mount.
pub(crate) const FUSE_ATTR_SUBMOUNT: u32 = 1 << 0;

impl PassthroughFs {
    /// The node for a descriptor just opened (`O_PATH`) under `parent`,
    /// taking one lookup reference, and its entry.
    pub(crate) fn entry_for(&self, fd: OwnedFd, parent: Option<&Node>) -> io::Result<(Entry, Arc<Node>)> {
        let st = stat::fstatx(fd.as_fd())?;
        let key = InodeKey::of(&st);
        let kind = u32::from(st.stx_mode) & libc::S_IFMT;
        let file = self.node_file(fd, key.mnt_id, kind)?;
        let node = self.inodes.get_or_insert(key, kind, file);
        let mut attr = attr_from_statx(&st);
        if self.cfg.announce_submounts && kind == libc::S_IFDIR && parent.is_some_and(|p| p.key.mnt_id != key.mnt_id) {
            attr.flags |= FUSE_ATTR_SUBMOUNT;
        }
        let t = self.timeout();
        let entry = Entry { nodeid: node.id, generation: node.generation, attr, attr_timeout: t, entry_timeout: t };
        Ok((entry, node))
    }

    /// What a new node keeps: the descriptor, or a file handle.
    pub(crate) fn node_file(&self, fd: OwnedFd, mnt_id: u64, kind: u32) -> io::Result<NodeFile> {
        if !self.use_handles {
            return Ok(NodeFile::Fd(fd));
        }
        let handle = FileHandle::of(fd.as_fd()).and_then(|(h, _)| Ok((h, self.mount_fd(fd.as_fd(), mnt_id, kind)?)));
        match handle {
            Ok((handle, mount)) => Ok(NodeFile::Handle { handle, mount }),
            Err(e) if self.cfg.inode_file_handles == FileHandleMode::Mandatory => Err(e),
            Err(e) => {
                log::debug!("no file handle ({e}): keeping a descriptor");
                Ok(NodeFile::Fd(fd))
            }
        }
    }

    /// A descriptor of mount `mnt_id`, opened from `fd` (a file of type
    /// `kind` on it) the first time the mount is seen. Only directories and
    /// regular files are opened for this (never a device or a fifo).
    fn mount_fd(&self, fd: std::os::fd::BorrowedFd<'_>, mnt_id: u64, kind: u32) -> io::Result<Arc<OwnedFd>> {
        let mut mounts = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = mounts.get(&mnt_id) {
            return Ok(m.clone());
        }
        if kind != libc::S_IFDIR && kind != libc::S_IFREG {
            return Err(errno(libc::EOPNOTSUPP));
        }
        let m = Arc::new(self.proc.reopen(fd, libc::O_RDONLY | libc::O_NONBLOCK)?);
        mounts.insert(mnt_id, m.clone());
        Ok(m)
    }

    /// Looks up the single component `name` in `parent`.
    pub(crate) fn lookup_child(&self, parent: &Node, name: &CStr) -> io::Result<(Entry, Arc<Node>)> {
        let pfd = parent.fd()?;
        let fd = open_beneath(pfd.as_fd(), name, libc::O_PATH, 0)?;
        self.entry_for(fd, Some(parent))
    }

    /// Another reference to an existing node, with fresh attributes.
    pub(crate) fn node_entry(&self, node: &Node) -> io::Result<Entry> {
        let st = stat::fstatx(node.fd()?.as_fd())?;
        self.inodes.add_ref(node.id)?;
        let t = self.timeout();
        Ok(Entry {
            nodeid: node.id,
            generation: node.generation,
            attr: attr_from_statx(&st),
            attr_timeout: t,
            entry_timeout: t,
        })
    }

    pub(crate) fn do_lookup(&self, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        let p = self.inodes.get(parent)?;
        match name.to_bytes() {
            b"" => Err(errno(libc::ENOENT)),
            n if n.contains(&b'/') => Err(errno(libc::EINVAL)),
            b"." => self.node_entry(&p),
            // The root's parent is the root: the share is never left.
            b".." if parent == NodeId::ROOT => self.node_entry(&p),
            // The client does not ask without EXPORT_SUPPORT; a directory
            // moved out of the share by the host would lead outside.
            b".." => Err(errno(libc::EINVAL)),
            _ => match self.lookup_child(&p, name) {
                Ok((e, _)) => Ok(e),
                // A negative entry the client may cache for the entry timeout.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !self.timeout().is_zero() => {
                    Ok(Entry { entry_timeout: self.timeout(), ..Entry::default() })
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Runs `make` (which creates `name` in `parent`) as the caller, then
    /// looks the new file up.
    fn make_node(
        &self,
        ctx: &Context,
        parent: NodeId,
        name: &CStr,
        make: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> io::Result<()>,
    ) -> io::Result<Entry> {
        check_name(name)?;
        let p = self.inodes.get(parent)?;
        let pfd = p.fd()?;
        {
            let _creds = self.as_caller_on(ctx, pfd.as_fd())?;
            make(pfd.as_fd())?;
        }
        self.lookup_child(&p, name).map(|(e, _)| e)
    }

    pub(crate) fn do_mknod(&self, ctx: &Context, parent: NodeId, name: &CStr, req: MknodRequest) -> io::Result<Entry> {
        let MknodRequest { mode, rdev, umask } = req;
        self.make_node(ctx, parent, name, |dir| {
            let mode = self.creation_mode(mode, umask)?;
            fs::mknodat(dir, name, mode, decode_rdev(rdev))
        })
    }

    pub(crate) fn do_mkdir(
        &self,
        ctx: &Context,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        self.make_node(ctx, parent, name, |dir| {
            let mode = self.creation_mode(mode, umask)?;
            fs::mkdirat(dir, name, mode & 0o7777)
        })
    }

    pub(crate) fn do_symlink(&self, ctx: &Context, target: &CStr, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        self.make_node(ctx, parent, name, |dir| fs::symlinkat(target, dir, name))
    }

    pub(crate) fn do_link(&self, node: NodeId, newparent: NodeId, newname: &CStr) -> io::Result<Entry> {
        check_name(newname)?;
        let n = self.inodes.get(node)?;
        let np = self.inodes.get(newparent)?;
        self.proc.link(n.fd()?.as_fd(), np.fd()?.as_fd(), newname)?;
        self.node_entry(&n)
    }

    pub(crate) fn do_unlink(&self, parent: NodeId, name: &CStr, flags: i32) -> io::Result<()> {
        check_name(name)?;
        let p = self.inodes.get(parent)?;
        fs::unlinkat(p.fd()?.as_fd(), name, flags)
    }

    pub(crate) fn do_rename(&self, req: RenameRequest<'_>) -> io::Result<()> {
        let RenameRequest { olddir, oldname, newdir, newname, flags } = req;
        const KNOWN: u32 = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT;
        if flags & !KNOWN != 0 {
            return Err(errno(libc::EINVAL));
        }
        check_name(oldname)?;
        check_name(newname)?;
        let od = self.inodes.get(olddir)?;
        let nd = self.inodes.get(newdir)?;
        fs::renameat2(od.fd()?.as_fd(), oldname, nd.fd()?.as_fd(), newname, flags)
    }

    pub(crate) fn do_readlink(&self, node: NodeId) -> io::Result<Vec<u8>> {
        let n = self.inodes.get(node)?;
        if n.kind != libc::S_IFLNK {
            return Err(errno(libc::EINVAL));
        }
        fs::readlinkat(n.fd()?.as_fd(), c"")
    }
}
