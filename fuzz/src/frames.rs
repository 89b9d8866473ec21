//! The input format of the `fuse_request` target: a sequence of plain FUSE
//! requests, as a kernel would send them, one after the other.
//!
//! Each request ("frame") starts with its 40-byte [`InHeader`]; its `len`
//! field says where the next one starts. When `len` is smaller than a header
//! or larger than what is left, the frame is the rest of the input (and the
//! server sees the bad length). So a seed file is simply a concatenation of
//! valid requests, and the fuzzer can still produce every malformed length.
//!
//! Two things the server never reads are given a meaning by the harness:
//!
//! - Node ids and file handles can be written as *references*
//!   ([`node_ref`], [`fh_ref`]): a u64 whose high 56 bits are a marker and
//!   whose low byte is an index into the node ids (handles) that earlier
//!   replies of the same input handed out. The harness replaces them before
//!   the request reaches the server, in the header's `nodeid` and in every
//!   8-byte aligned word of the body. This makes the seeds independent of
//!   how a file system numbers its nodes, and lets the fuzzer reach a file it
//!   created two requests earlier.
//! - The header's `padding` field, when non-zero, is the capacity of the
//!   reply buffer (0: room for the largest reply, as the kernel gives).

use fuse_abi::{self as abi, opcode, InHeader};
use zerocopy::{FromBytes, IntoBytes};

/// Size of a request header.
pub const IN_HEADER_SIZE: usize = core::mem::size_of::<InHeader>();
/// Most frames one input is cut into.
pub const MAX_FRAMES: usize = 64;

/// Marker of a node reference (low byte: index).
pub const NODE_MARK: u64 = 0xa5a5_a5a5_a5a5_4e00;
/// Marker of a handle reference (low byte: index).
pub const FH_MARK: u64 = 0xa5a5_a5a5_a5a5_4600;
const MARK_MASK: u64 = !0xff;

/// A node id that the harness replaces with the `i`-th node id handed out
/// (0 is the root; then in reply order).
pub const fn node_ref(i: u8) -> u64 {
    NODE_MARK | i as u64
}

/// A handle that the harness replaces with the `i`-th handle handed out.
pub const fn fh_ref(i: u8) -> u64 {
    FH_MARK | i as u64
}

/// Builds one request with a correct `len`; `unique` is taken as given.
pub fn request(op: u32, unique: u64, nodeid: u64, parts: &[&[u8]]) -> Vec<u8> {
    request_as(op, unique, nodeid, 0, 0, parts)
}

/// Builds one request sent by `uid`/`gid`.
pub fn request_as(op: u32, unique: u64, nodeid: u64, uid: u32, gid: u32, parts: &[&[u8]]) -> Vec<u8> {
    let body: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(IN_HEADER_SIZE + body).unwrap_or(u32::MAX);
    let h = InHeader { len, opcode: op, unique, nodeid, uid, gid, pid: 4242, total_extlen: 0, padding: 0 };
    let mut out = h.as_bytes().to_vec();
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A FUSE_INIT as a Linux 6.x virtio-fs client sends it, offering `flags`.
pub fn init_request(unique: u64, flags: u64) -> Vec<u8> {
    let i = abi::InitIn {
        major: abi::KERNEL_VERSION,
        minor: abi::KERNEL_MINOR_VERSION,
        max_readahead: 128 * 1024,
        flags: flags as u32,
        flags2: (flags >> 32) as u32,
        unused: [0; 11],
    };
    request(opcode::INIT, unique, 0, &[i.as_bytes()])
}

/// Every FUSE_INIT flag a recent kernel may offer.
pub const ALL_CLIENT_FLAGS: u64 = {
    use abi::init_flags::*;
    ASYNC_READ
        | POSIX_LOCKS
        | ATOMIC_O_TRUNC
        | EXPORT_SUPPORT
        | BIG_WRITES
        | DONT_MASK
        | SPLICE_WRITE
        | SPLICE_MOVE
        | SPLICE_READ
        | FLOCK_LOCKS
        | HAS_IOCTL_DIR
        | AUTO_INVAL_DATA
        | DO_READDIRPLUS
        | READDIRPLUS_AUTO
        | ASYNC_DIO
        | WRITEBACK_CACHE
        | NO_OPEN_SUPPORT
        | PARALLEL_DIROPS
        | HANDLE_KILLPRIV
        | POSIX_ACL
        | ABORT_ERROR
        | MAX_PAGES
        | CACHE_SYMLINKS
        | NO_OPENDIR_SUPPORT
        | EXPLICIT_INVAL_DATA
        | MAP_ALIGNMENT
        | SUBMOUNTS
        | HANDLE_KILLPRIV_V2
        | SETXATTR_EXT
        | INIT_EXT
        | SECURITY_CTX
        | HAS_INODE_DAX
        | CREATE_SUPP_GROUP
        | HAS_EXPIRE_ONLY
        | DIRECT_IO_ALLOW_MMAP
        | NO_EXPORT_SUPPORT
        | HAS_RESEND
        | ALLOW_IDMAP
};

/// Cuts a fuzz input into at most [`MAX_FRAMES`] frames (see the module doc).
/// A tail shorter than a header is a frame of its own (the server must
/// refuse it without a reply).
pub fn split_frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while !data.is_empty() && frames.len() < MAX_FRAMES {
        let len = match InHeader::read_from_prefix(data) {
            Ok((h, _)) => h.len as usize,
            Err(_) => data.len(),
        };
        let take = if (IN_HEADER_SIZE..=data.len()).contains(&len) { len } else { data.len() };
        let (frame, rest) = data.split_at(take);
        frames.push(frame);
        data = rest;
    }
    frames
}

/// The node ids and handles handed out so far while running one input.
#[derive(Debug, Clone)]
pub struct Ids {
    /// Node ids, the root first.
    pub nodes: Vec<u64>,
    /// File and directory handles.
    pub handles: Vec<u64>,
}

impl Default for Ids {
    fn default() -> Self {
        Ids { nodes: vec![abi::ROOT_ID], handles: Vec::new() }
    }
}

/// At most this many ids of each kind are remembered.
const MAX_IDS: usize = 256;

impl Ids {
    fn resolve(&self, v: u64) -> u64 {
        let pick = |list: &[u64], i: u64| if list.is_empty() { v } else { list[i as usize % list.len()] };
        match v & MARK_MASK {
            NODE_MARK => pick(&self.nodes, v & 0xff),
            FH_MARK => pick(&self.handles, v & 0xff),
            _ => v,
        }
    }

    /// Replaces node and handle references in `frame` (the header's nodeid
    /// and every aligned word of the body).
    pub fn resolve_frame(&self, frame: &mut [u8]) {
        // InHeader::nodeid, then the body's aligned words.
        let words = std::iter::once(16).chain((IN_HEADER_SIZE..).step_by(8));
        let len = frame.len();
        for at in words.take_while(|at| at + 8 <= len) {
            let word = &mut frame[at..at + 8];
            let v = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
            word.copy_from_slice(&self.resolve(v).to_le_bytes());
        }
    }

    fn add_node(&mut self, n: u64) {
        if n != 0 && self.nodes.len() < MAX_IDS {
            self.nodes.push(n);
        }
    }

    fn add_handle(&mut self, fh: u64) {
        if self.handles.len() < MAX_IDS {
            self.handles.push(fh);
        }
    }

    /// Remembers the ids a successful reply (`body`, without header) to
    /// `op` hands out.
    pub fn record(&mut self, op: u32, body: &[u8]) {
        match op {
            opcode::LOOKUP | opcode::MKNOD | opcode::MKDIR | opcode::SYMLINK | opcode::LINK => {
                if let Ok((e, _)) = abi::EntryOut::read_from_prefix(body) {
                    self.add_node(e.nodeid);
                }
            }
            opcode::CREATE | opcode::TMPFILE => {
                if let Ok((e, rest)) = abi::EntryOut::read_from_prefix(body) {
                    self.add_node(e.nodeid);
                    if let Ok((o, _)) = abi::OpenOut::read_from_prefix(rest) {
                        self.add_handle(o.fh);
                    }
                }
            }
            opcode::OPEN | opcode::OPENDIR => {
                if let Ok((o, _)) = abi::OpenOut::read_from_prefix(body) {
                    self.add_handle(o.fh);
                }
            }
            opcode::READDIRPLUS => {
                let mut rest = body;
                while let Ok((d, _)) = abi::DirentPlus::read_from_prefix(rest) {
                    self.add_node(d.entry_out.nodeid);
                    let size = abi::direntplus_size(d.dirent.namelen as usize);
                    match rest.get(size..) {
                        Some(r) => rest = r,
                        None => break,
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_the_length_field() {
        let a = request(opcode::GETATTR, 1, 1, &[&[0; 16]]);
        let b = request(opcode::STATFS, 2, 1, &[]);
        let mut input = [a.clone(), b.clone()].concat();
        assert_eq!(split_frames(&input), vec![&a[..], &b[..]]);
        // A length beyond the input: the rest is one frame.
        input[0] = 0xff;
        assert_eq!(split_frames(&input).len(), 1);
        assert_eq!(split_frames(&[1, 2, 3]), vec![&[1u8, 2, 3][..]]);
    }

    #[test]
    fn references_resolve_to_recorded_ids() {
        let mut ids = Ids::default();
        let e = abi::EntryOut { nodeid: 77, ..Default::default() };
        ids.record(opcode::LOOKUP, e.as_bytes());
        ids.record(opcode::OPEN, abi::OpenOut { fh: 9, ..Default::default() }.as_bytes());
        let mut f =
            request(opcode::READ, 1, node_ref(1), &[abi::ReadIn { fh: fh_ref(0), ..Default::default() }.as_bytes()]);
        ids.resolve_frame(&mut f);
        let h = InHeader::read_from_prefix(&f).unwrap().0;
        assert_eq!(h.nodeid, 77);
        let r = abi::ReadIn::read_from_prefix(&f[IN_HEADER_SIZE..]).unwrap().0;
        assert_eq!(r.fh, 9);
        // Index wraps around; the root is node 0.
        assert_eq!(ids.resolve(node_ref(2)), abi::ROOT_ID);
    }
}
