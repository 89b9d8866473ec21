//! Live migration: the nodes and open handles of a session, saved on the
//! source and restored on the destination (`FileSystem::save_state` and
//! `load_state`). No file data moves: both sides serve the same tree.
//!
//! The source saves, for every node, its id, generation, lookup count,
//! file type, host identity (device, inode, and the file handle when the
//! file system gives one) and how to find it again: its path beneath the
//! share, read from `/proc/self/fd` and made relative to the root, or why
//! there is none (the file was deleted, or is outside the share now). For
//! every open handle: its id, node, host open flags and whether it is a
//! directory handle. A guest holding locks is refused: locks do not move.
//!
//! The destination checks the whole state before it opens anything: paths
//! must be relative, without `.`, `..` or empty components. It then opens
//! each node beneath the share root only (`openat2` with `RESOLVE_BENEATH
//! | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS`, `O_PATH | O_NOFOLLOW`),
//! or by its file handle in `file-handles` mode (then checking, through
//! `/proc/self/fd`, that the file is beneath the root), checks its type
//! and, when asked, its identity, keeps the node ids, re-opens the
//! handles, and only then replaces its (empty) tables. A node not found
//! fails the whole load (`abort`) or becomes a node whose every use fails
//! (`guest-error`); a path or handle leading outside the share always
//! fails the whole load.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use avpfs_server::migration::{corrupt, Decoder, Encoder};
use avpfs_server::{Handle, MigrationError, NodeId};
use avpfs_sys::open::{open_beneath, openat2, FdName};
use avpfs_sys::{fs, stat, FileHandle};

use crate::config::{MigrationMode, MigrationOnError};
use crate::handle::OpenFile;
use crate::inode::{InodeKey, Node, NodeFile, RestoredNode};
use crate::passthrough::PassthroughFs;

/// The tag and version of the passthrough's part of a state.
const TAG: &[u8; 4] = b"PTFS";
const VERSION: u32 = 1;
/// The longest path saved.
const MAX_PATH: usize = libc::PATH_MAX as usize;
/// What `/proc/self/fd` adds to the path of a file that has none left.
const DELETED: &[u8] = b" (deleted)";
/// The errno of every operation on a node a migration lost.
const LOST_ERRNO: i32 = libc::EIO;

/// How the destination finds a node's file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    /// Its path beneath the share root (checked by [`check_relative`]).
    Path(Vec<u8>),
    /// The source found no path (the errno says why).
    NotFound(i32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SavedNode {
    id: NodeId,
    generation: u64,
    refs: u64,
    kind: u32,
    dev: u64,
    ino: u64,
    handle: Option<FileHandle>,
    location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SavedHandle {
    handle: Handle,
    node: NodeId,
    flags: i32,
    is_dir: bool,
}

/// The passthrough's part of a migration state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SavedState {
    mode: MigrationMode,
    root_refs: u64,
    root_dev: u64,
    next_node: u64,
    next_handle: u64,
    nodes: Vec<SavedNode>,
    handles: Vec<SavedHandle>,
}

/// Bytes of the smallest encoded node and handle (for count checks).
const MIN_NODE: usize = 8 * 5 + 4 + 1 + 1 + 4;
const MIN_HANDLE: usize = 8 + 8 + 4 + 1;

impl SavedState {
    fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.header(TAG, VERSION);
        e.u8(match self.mode {
            MigrationMode::FindPaths => 0,
            MigrationMode::FileHandles => 1,
        });
        e.u64(self.root_refs);
        e.u64(self.root_dev);
        e.u64(self.next_node);
        e.u64(self.next_handle);
        e.u64(self.nodes.len() as u64);
        for n in &self.nodes {
            e.u64(n.id.get());
            e.u64(n.generation);
            e.u64(n.refs);
            e.u32(n.kind);
            e.u64(n.dev);
            e.u64(n.ino);
            match &n.handle {
                Some(h) => {
                    e.u8(1);
                    e.i32(h.handle_type());
                    e.bytes(h.as_bytes());
                }
                None => e.u8(0),
            }
            match &n.location {
                Location::Path(p) => {
                    e.u8(0);
                    e.bytes(p);
                }
                Location::NotFound(errno) => {
                    e.u8(1);
                    e.i32(*errno);
                }
            }
        }
        e.u64(self.handles.len() as u64);
        for h in &self.handles {
            e.u64(h.handle.get());
            e.u64(h.node.get());
            e.i32(h.flags);
            e.bool(h.is_dir);
        }
        e.finish()
    }

    /// Reads and checks a state: `Corrupt` for a damaged layout or
    /// inconsistent ids, `Refused` for a path that would leave the share.
    /// Nothing is opened.
    fn decode(bytes: &[u8]) -> Result<SavedState, MigrationError> {
        let mut d = Decoder::new(bytes);
        d.header(TAG, VERSION)?;
        let mode = match d.u8()? {
            0 => MigrationMode::FindPaths,
            1 => MigrationMode::FileHandles,
            m => return Err(corrupt(format!("migration mode {m}"))),
        };
        let root_refs = d.u64()?;
        let root_dev = d.u64()?;
        let next_node = d.u64()?;
        let next_handle = d.u64()?;
        let mut ids = HashSet::new();
        let mut kinds = HashMap::new();
        let count = d.count(MIN_NODE)?;
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            let id = NodeId(d.u64()?);
            if id == NodeId::NONE || id == NodeId::ROOT || !ids.insert(id) {
                return Err(corrupt(format!("node id {id} is reserved or repeated")));
            }
            let generation = d.u64()?;
            let refs = d.u64()?;
            if refs == 0 {
                return Err(corrupt(format!("node {id} without a lookup reference")));
            }
            let kind = d.u32()?;
            if !is_file_type(kind) {
                return Err(corrupt(format!("node {id} has file type {kind:#o}")));
            }
            kinds.insert(id, kind);
            let dev = d.u64()?;
            let ino = d.u64()?;
            let handle = match d.u8()? {
                0 => None,
                1 => {
                    let typ = d.i32()?;
                    let bytes = d.bytes(avpfs_sys::fhandle::MAX_HANDLE_SZ)?;
                    Some(FileHandle::from_parts(typ, bytes).map_err(|_| corrupt(format!("node {id}: bad handle")))?)
                }
                b => return Err(corrupt(format!("node {id}: handle marker {b}"))),
            };
            let location = match d.u8()? {
                0 => {
                    let p = d.bytes(MAX_PATH)?;
                    check_relative(p).map_err(|why| {
                        MigrationError::Refused(format!("node {id}: path {:?} {why}", String::from_utf8_lossy(p)))
                    })?;
                    Location::Path(p.to_vec())
                }
                1 => Location::NotFound(d.i32()?),
                b => return Err(corrupt(format!("node {id}: location marker {b}"))),
            };
            nodes.push(SavedNode { id, generation, refs, kind, dev, ino, handle, location });
        }
        kinds.insert(NodeId::ROOT, libc::S_IFDIR);
        let count = d.count(MIN_HANDLE)?;
        let mut handles = Vec::with_capacity(count);
        let mut seen = HashSet::new();
        for _ in 0..count {
            let handle = Handle(d.u64()?);
            let node = NodeId(d.u64()?);
            let flags = d.i32()?;
            let is_dir = d.bool()?;
            if handle.get() == 0 || !seen.insert(handle) {
                return Err(corrupt(format!("handle {handle} is 0 or repeated")));
            }
            match kinds.get(&node) {
                None => return Err(corrupt(format!("handle {handle} of unknown node {node}"))),
                Some(&k) if is_dir != (k == libc::S_IFDIR) => {
                    return Err(corrupt(format!("handle {handle}: directory handle mismatch")))
                }
                Some(&k) if !is_dir && k != libc::S_IFREG => {
                    return Err(corrupt(format!("handle {handle} of a special file")))
                }
                _ => {}
            }
            handles.push(SavedHandle { handle, node, flags, is_dir });
        }
        d.end()?;
        Ok(SavedState { mode, root_refs, root_dev, next_node, next_handle, nodes, handles })
    }
}

fn is_file_type(kind: u32) -> bool {
    [libc::S_IFREG, libc::S_IFDIR, libc::S_IFLNK, libc::S_IFIFO, libc::S_IFSOCK, libc::S_IFCHR, libc::S_IFBLK]
        .contains(&kind)
}

/// Checks that `p` is a path beneath a directory: relative, not empty, no
/// NUL, and no empty, `.` or `..` component.
fn check_relative(p: &[u8]) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("is empty");
    }
    if p[0] == b'/' {
        return Err("is absolute");
    }
    if p.contains(&0) {
        return Err("contains a NUL byte");
    }
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" => return Err("has an empty component"),
            b"." | b".." => return Err("has a . or .. component"),
            _ => {}
        }
    }
    Ok(())
}

/// `path` made relative to `root` (both absolute, as `/proc/self/fd`
/// gives them); `None` when it is not strictly beneath it.
fn relative_to<'a>(root: &[u8], path: &'a [u8]) -> Option<&'a [u8]> {
    let rest = if root == b"/" { path.strip_prefix(b"/")? } else { path.strip_prefix(root)?.strip_prefix(b"/")? };
    (!rest.is_empty()).then_some(rest)
}

/// Opens the relative `path` beneath `root`, `O_PATH | O_NOFOLLOW`,
/// never leaving it and never following a symlink on the way (a symlink
/// as the last component is opened itself): one `openat2`, or, on kernels
/// without it, one `open_beneath` per component.
fn open_relative(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<OwnedFd> {
    check_relative(path).map_err(|_| io::Error::from_raw_os_error(libc::EXDEV))?;
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_SYMLINKS;
    match openat2(root, &c, libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0, resolve) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
        other => return other,
    }
    let mut at: Option<OwnedFd> = None;
    for comp in path.split(|&b| b == b'/') {
        let name = CString::new(comp).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let dir = at.as_ref().map_or(root, |f| f.as_fd());
        at = Some(open_beneath(dir, &name, libc::O_PATH, 0)?);
    }
    at.ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Why a node was not restored.
enum Miss {
    /// Not found, or not the same file: handled per `--migration-on-error`.
    Missing(String),
    /// It would lead outside the share: the whole state is refused.
    Outside(String),
}

fn os_errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn describe(n: &SavedNode) -> String {
    match &n.location {
        Location::Path(p) => format!("node {} ({})", n.id, String::from_utf8_lossy(p)),
        Location::NotFound(_) => format!("node {}", n.id),
    }
}

impl PassthroughFs {
    /// The path `/proc/self/fd` gives for `fd`.
    fn proc_link(&self, fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
        fs::readlinkat(self.proc.as_fd(), FdName::new(fd).as_cstr())
    }

    /// Where the node whose file `fd` is can be found beneath the root
    /// (whose path is `root_path`).
    fn find_path(&self, root_path: &[u8], root: BorrowedFd<'_>, fd: BorrowedFd<'_>, key: InodeKey) -> Location {
        let link = match self.proc_link(fd) {
            Ok(l) => l,
            Err(e) => return Location::NotFound(os_errno(&e)),
        };
        let Some(rel) = relative_to(root_path, &link).filter(|r| check_relative(r).is_ok()) else {
            // Moved out of the share on the host, or unreachable from here.
            return Location::NotFound(libc::EXDEV);
        };
        // The kernel marks a file without a name left; a file may also be
        // named so: only the path itself can tell.
        let deleted = link.ends_with(DELETED);
        if deleted || self.cfg.migration_confirm_paths {
            let same = open_relative(root, rel)
                .and_then(|f| stat::fstatx(f.as_fd()))
                .is_ok_and(|st| InodeKey::of(&st).dev == key.dev && st.stx_ino == key.ino);
            if !same {
                return Location::NotFound(if deleted { libc::ENOENT } else { libc::ESTALE });
            }
        }
        Location::Path(rel.to_vec())
    }

    /// `FileSystem::save_state`: the session's nodes and handles.
    pub(crate) fn save_migration_state(&self) -> Result<Vec<u8>, MigrationError> {
        let locks = self.inodes.lock_owner_count() + self.handles.flocked_count();
        if locks > 0 {
            return Err(MigrationError::Refused(format!(
                "the guest holds {locks} locks (POSIX record locks or flocks), which avpfs does not migrate"
            )));
        }
        let (nodes, next_node) = self.inodes.snapshot();
        let (handles, next_handle) = self.handles.snapshot();
        let root = self.inodes.root();
        let root_fd = root.fd()?;
        let root_path = self.proc_link(root_fd.as_fd())?;
        let mut state = SavedState {
            mode: self.cfg.migration_mode,
            root_refs: 1,
            root_dev: root.key.dev,
            next_node,
            next_handle,
            nodes: Vec::with_capacity(nodes.len()),
            handles: Vec::with_capacity(handles.len()),
        };
        for (node, refs) in nodes {
            if node.id == NodeId::ROOT {
                state.root_refs = refs;
                continue;
            }
            let (handle, location) = match node.fd() {
                Ok(fd) => {
                    let handle = node.handle().cloned().or_else(|| FileHandle::of(fd.as_fd()).ok().map(|(h, _)| h));
                    (handle, self.find_path(&root_path, root_fd.as_fd(), fd.as_fd(), node.key))
                }
                Err(e) => (None, Location::NotFound(os_errno(&e))),
            };
            if let Location::NotFound(errno) = location {
                log::warn!("migration: no path for node {} ({})", node.id, io::Error::from_raw_os_error(errno));
            }
            state.nodes.push(SavedNode {
                id: node.id,
                generation: node.generation,
                refs,
                kind: node.kind,
                dev: node.key.dev,
                ino: node.key.ino,
                handle,
                location,
            });
        }
        for (handle, of) in handles {
            state.handles.push(SavedHandle { handle, node: of.node.id, flags: of.flags, is_dir: of.is_dir });
        }
        Ok(state.encode())
    }

    /// Opens the file of saved node `n` (`O_PATH`) and checks it.
    fn find_node(
        &self,
        st: &SavedState,
        n: &SavedNode,
        root: BorrowedFd<'_>,
        by_handle: Option<&HandleOpener>,
    ) -> Result<(OwnedFd, libc::statx), Miss> {
        let via_handle = by_handle.zip(n.handle.as_ref()).filter(|_| n.dev == st.root_dev);
        let fd = match (via_handle, &n.location) {
            (Some((op, h)), _) => {
                let fd = h
                    .open(op.mount.as_fd(), libc::O_PATH | libc::O_NOFOLLOW)
                    .map_err(|e| Miss::Missing(format!("cannot open its file handle: {e}")))?;
                // A handle names any file of the file system: the file must
                // be beneath the share root.
                let link = self.proc_link(fd.as_fd()).map_err(|e| Miss::Missing(format!("no path: {e}")))?;
                let path = link.strip_suffix(DELETED).unwrap_or(&link);
                if !matches!(relative_to(&op.root_path, path), Some(r) if check_relative(r).is_ok()) {
                    return Err(Miss::Outside(format!(
                        "its file handle leads outside the share, to {:?}",
                        String::from_utf8_lossy(&link)
                    )));
                }
                fd
            }
            (None, Location::NotFound(errno)) => {
                let e = io::Error::from_raw_os_error(*errno);
                return Err(Miss::Missing(format!("the source found no path ({e})")));
            }
            (None, Location::Path(p)) => open_relative(root, p).map_err(|e| match e.raw_os_error() {
                Some(libc::EXDEV) | Some(libc::ELOOP) => {
                    Miss::Outside(format!("its path leads outside the share or through a symlink ({e})"))
                }
                _ => Miss::Missing(format!("cannot open it: {e}")),
            })?,
        };
        let sx = stat::fstatx(fd.as_fd()).map_err(|e| Miss::Missing(format!("cannot stat it: {e}")))?;
        let kind = u32::from(sx.stx_mode) & libc::S_IFMT;
        if kind != n.kind {
            return Err(Miss::Missing(format!("it is of another file type now ({kind:#o}, was {:#o})", n.kind)));
        }
        // Found by path: check the identity when asked (always in
        // file-handles mode, which needs the same file system anyway).
        let verify =
            via_handle.is_none() && (self.cfg.migration_verify_handles || st.mode == MigrationMode::FileHandles);
        if verify {
            let same = match (&n.handle, FileHandle::of(fd.as_fd())) {
                (Some(saved), Ok((h, _))) => *saved == h,
                _ => InodeKey::of(&sx).dev == n.dev && sx.stx_ino == n.ino,
            };
            if !same {
                return Err(Miss::Missing("the file found is not the same file".into()));
            }
        }
        Ok((fd, sx))
    }

    /// `FileSystem::load_state`: takes over the nodes and handles of a
    /// saved session, all or nothing, on a session that holds nothing yet.
    pub(crate) fn load_migration_state(&self, bytes: &[u8]) -> Result<(), MigrationError> {
        let st = SavedState::decode(bytes)?;
        if !self.inodes.is_fresh() || self.handles.len() != 0 {
            return Err(MigrationError::Refused("this session already holds nodes or handles".into()));
        }
        let root = self.inodes.root();
        let root_fd = root.fd()?;
        let by_handle = match st.mode {
            MigrationMode::FindPaths => None,
            MigrationMode::FileHandles => Some(HandleOpener {
                mount: self.proc.reopen(root_fd.as_fd(), libc::O_RDONLY | libc::O_DIRECTORY)?,
                root_path: self.proc_link(root_fd.as_fd())?,
            }),
        };
        let abort = self.cfg.migration_on_error == MigrationOnError::Abort;
        let mut missing = Vec::new();
        let mut nodes: HashMap<NodeId, (Arc<Node>, u64)> = HashMap::with_capacity(st.nodes.len());
        for n in &st.nodes {
            let found = self.find_node(&st, n, root_fd.as_fd(), by_handle.as_ref()).and_then(|(fd, sx)| {
                let key = InodeKey::of(&sx);
                self.node_file(fd, key.mnt_id, n.kind)
                    .map(|file| (key, file))
                    .map_err(|e| Miss::Missing(format!("cannot keep it: {e}")))
            });
            let (key, file) = match found {
                Ok(v) => v,
                Err(Miss::Outside(why)) => {
                    return Err(MigrationError::Refused(format!("{}: {why}", describe(n))));
                }
                Err(Miss::Missing(why)) => {
                    missing.push(format!("{}: {why}", describe(n)));
                    (InodeKey { mnt_id: 0, dev: n.dev, ino: n.ino }, NodeFile::Lost(LOST_ERRNO))
                }
            };
            if abort && !missing.is_empty() {
                continue; // refused below; open nothing more
            }
            let r = RestoredNode { id: n.id, generation: n.generation, key, kind: n.kind, file };
            nodes.insert(n.id, (self.inodes.restored_node(r), n.refs));
        }
        if abort && !missing.is_empty() {
            return Err(MigrationError::Refused(format!(
                "{} of {} nodes not restored: {}",
                missing.len(),
                st.nodes.len(),
                missing.join("; ")
            )));
        }
        for m in &missing {
            log::warn!("migration: {m}: its operations will fail");
        }
        let mut files = Vec::with_capacity(st.handles.len());
        for h in &st.handles {
            let node = match nodes.get(&h.node) {
                Some((n, _)) => n.clone(),
                None => root.clone(),
            };
            if node.is_lost() {
                log::warn!("migration: handle {} of lost node {}: dropped", h.handle, h.node);
                continue;
            }
            let flags = h.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY);
            match node.fd().and_then(|fd| self.proc.reopen(fd.as_fd(), flags)) {
                Ok(fd) => files.push((h.handle, OpenFile::new(node, fd, flags, h.is_dir))),
                Err(e) if abort => {
                    return Err(MigrationError::Refused(format!(
                        "handle {} of node {}: cannot open it again: {e}",
                        h.handle, h.node
                    )));
                }
                Err(e) => {
                    log::warn!("migration: handle {} of node {}: cannot open it again ({e}): dropped", h.handle, h.node)
                }
            }
        }
        self.inodes.restore(st.root_refs, nodes.into_values().collect(), st.next_node);
        self.handles.restore(files, st.next_handle);
        Ok(())
    }
}

/// What opening nodes by file handle needs on the destination.
struct HandleOpener {
    /// A descriptor (not `O_PATH`) on the share root's file system.
    mount: OwnedFd,
    /// The root's path, as `/proc/self/fd` gives it.
    root_path: Vec<u8>,
}

#[cfg(test)]
pub(crate) mod testing {
    //! Access to the state's layout for the tests that damage it.
    use super::*;

    /// Decodes a passthrough state, lets `f` change it, encodes it again.
    pub(crate) fn edit(
        bytes: &[u8],
        f: impl FnOnce(&mut Vec<(u64, Option<Vec<u8>>, Option<(i32, Vec<u8>)>)>),
    ) -> Vec<u8> {
        let mut st = SavedState::decode(bytes).unwrap();
        let mut view: Vec<_> = st
            .nodes
            .iter()
            .map(|n| {
                let path = match &n.location {
                    Location::Path(p) => Some(p.clone()),
                    Location::NotFound(_) => None,
                };
                (n.id.get(), path, n.handle.as_ref().map(|h| (h.handle_type(), h.as_bytes().to_vec())))
            })
            .collect();
        f(&mut view);
        for (n, (_, path, handle)) in st.nodes.iter_mut().zip(view) {
            n.location = match path {
                Some(p) => Location::Path(p),
                None => Location::NotFound(libc::ENOENT),
            };
            n.handle = handle.map(|(t, b)| FileHandle::from_parts(t, &b).unwrap());
        }
        st.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_beneath() {
        assert!(check_relative(b"a/b").is_ok());
        for bad in [&b""[..], b"/etc/passwd", b"a/../b", b"..", b"./a", b"a//b", b"a/", b"a\0b"] {
            assert!(check_relative(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(relative_to(b"/srv/share", b"/srv/share/a/b"), Some(&b"a/b"[..]));
        assert_eq!(relative_to(b"/srv/share", b"/srv/shared/a"), None);
        assert_eq!(relative_to(b"/srv/share", b"/srv/share"), None);
        assert_eq!(relative_to(b"/", b"/a"), Some(&b"a"[..]));
    }
}
