//! FUSE requests as the guest's virtio-fs driver sends them, built from the
//! `fuse-abi` wire structs, and their replies decoded.
//!
//! [`request`] builds any request from its parts; [`FuseClient`] sends the
//! usual ones through a [`crate::Harness`] and decodes the answers.

use std::sync::atomic::{AtomicU64, Ordering};

use fuse_abi::{self as abi, opcode};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{Error, Harness, HIPRIO_QUEUE};

/// Size of the request header.
pub const IN_HEADER_SIZE: usize = core::mem::size_of::<abi::InHeader>();
/// Size of the reply header.
pub const OUT_HEADER_SIZE: usize = core::mem::size_of::<abi::OutHeader>();

/// Builds a request: header (with the total length filled in) and `parts`.
pub fn request(opcode: u32, unique: u64, nodeid: u64, parts: &[&[u8]]) -> Vec<u8> {
    let body: usize = parts.iter().map(|p| p.len()).sum();
    let h = abi::InHeader {
        len: (IN_HEADER_SIZE + body) as u32,
        opcode,
        unique,
        nodeid,
        uid: 0,
        gid: 0,
        pid: 1,
        total_extlen: 0,
        padding: 0,
    };
    let mut out = Vec::with_capacity(IN_HEADER_SIZE + body);
    out.extend_from_slice(h.as_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A name as the wire carries it: the bytes and a NUL.
pub fn name(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply header.
    pub header: abi::OutHeader,
    /// Everything after the header.
    pub body: Vec<u8>,
}

impl Reply {
    /// Decodes `bytes` (the used part of the reply buffer), checking that the
    /// header's length matches.
    pub fn parse(bytes: &[u8]) -> Result<Reply, Error> {
        let (header, body) = abi::OutHeader::read_from_prefix(bytes)
            .map_err(|_| Error::BadReply(format!("reply of {} bytes has no header", bytes.len())))?;
        if header.len as usize != bytes.len() {
            return Err(Error::BadReply(format!("header says {} bytes, device wrote {}", header.len, bytes.len())));
        }
        Ok(Reply { header, body: body.to_vec() })
    }

    /// The errno of an error reply (positive), or `None` for success.
    pub fn errno(&self) -> Option<i32> {
        (self.header.error != 0).then_some(-self.header.error)
    }

    /// The body of a successful reply, or [`Error::Fuse`] with the errno.
    pub fn ok(self) -> Result<Vec<u8>, Error> {
        match self.errno() {
            Some(e) => Err(Error::Fuse(e)),
            None => Ok(self.body),
        }
    }

    /// A successful reply's body decoded as `T`.
    pub fn decode<T: FromBytes + KnownLayout + Immutable>(self) -> Result<T, Error> {
        let body = self.ok()?;
        T::read_from_prefix(&body)
            .map(|(t, _)| t)
            .map_err(|_| Error::BadReply(format!("body of {} bytes is too short", body.len())))
    }
}

/// Room for most replies (entry, attributes, open, init).
pub const SMALL_REPLY: usize = 4096;

/// A FUSE client over the harness: numbers requests, sends them on a chosen
/// request queue and decodes the replies.
pub struct FuseClient<'h> {
    harness: &'h Harness,
    queue: usize,
    unique: AtomicU64,
}

impl<'h> FuseClient<'h> {
    /// A client that sends its requests on queue `queue` (1 is the first
    /// request queue; FORGET always goes to the hiprio queue).
    pub fn new(harness: &'h Harness, queue: usize) -> Self {
        FuseClient { harness, queue, unique: AtomicU64::new(1 + ((queue as u64) << 48)) }
    }

    /// The same client on another queue (request ids stay unique).
    pub fn on_queue(&self, queue: usize) -> FuseClient<'h> {
        FuseClient { harness: self.harness, queue, unique: AtomicU64::new(self.next_unique() + (1 << 40)) }
    }

    /// A fresh request id.
    pub fn next_unique(&self) -> u64 {
        self.unique.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `req` with `reply_capacity` bytes of reply buffer and decodes the reply.
    pub fn call(&self, req: &[u8], reply_capacity: usize) -> Result<Reply, Error> {
        Reply::parse(&self.harness.request(self.queue, req, reply_capacity)?)
    }

    /// FUSE_INIT with protocol 7.`minor` and the given flags; returns the
    /// server's answer.
    pub fn init_with(&self, minor: u32, flags: u64) -> Result<abi::InitOut, Error> {
        let init = abi::InitIn {
            major: abi::KERNEL_VERSION,
            minor,
            max_readahead: 128 * 1024,
            flags: flags as u32,
            flags2: (flags >> 32) as u32,
            unused: [0; 11],
        };
        let req = request(opcode::INIT, self.next_unique(), 0, &[init.as_bytes()]);
        self.call(&req, SMALL_REPLY)?.decode()
    }

    /// FUSE_INIT as a Linux 6.x guest sends it.
    pub fn init(&self) -> Result<abi::InitOut, Error> {
        use abi::init_flags as f;
        self.init_with(
            abi::KERNEL_MINOR_VERSION,
            f::ASYNC_READ | f::BIG_WRITES | f::MAX_PAGES | f::INIT_EXT | f::DO_READDIRPLUS | f::PARALLEL_DIROPS,
        )
    }

    /// LOOKUP `name` in `parent`.
    pub fn lookup(&self, parent: u64, name_: &str) -> Result<abi::EntryOut, Error> {
        let req = request(opcode::LOOKUP, self.next_unique(), parent, &[&name(name_)]);
        self.call(&req, SMALL_REPLY)?.decode()
    }

    /// GETATTR of `node`.
    pub fn getattr(&self, node: u64) -> Result<abi::AttrOut, Error> {
        let g = abi::GetattrIn::default();
        let req = request(opcode::GETATTR, self.next_unique(), node, &[g.as_bytes()]);
        self.call(&req, SMALL_REPLY)?.decode()
    }

    /// MKDIR `name` in `parent`.
    pub fn mkdir(&self, parent: u64, name_: &str, mode: u32) -> Result<abi::EntryOut, Error> {
        let m = abi::MkdirIn { mode, umask: 0o022 };
        let req = request(opcode::MKDIR, self.next_unique(), parent, &[m.as_bytes(), &name(name_)]);
        self.call(&req, SMALL_REPLY)?.decode()
    }

    /// CREATE `name` in `parent` opened with `flags`; returns the entry and the open reply.
    pub fn create(
        &self,
        parent: u64,
        name_: &str,
        mode: u32,
        flags: u32,
    ) -> Result<(abi::EntryOut, abi::OpenOut), Error> {
        let c = abi::CreateIn { flags, mode, umask: 0o022, open_flags: 0 };
        let req = request(opcode::CREATE, self.next_unique(), parent, &[c.as_bytes(), &name(name_)]);
        let body = self.call(&req, SMALL_REPLY)?.ok()?;
        let (entry, rest) =
            abi::EntryOut::read_from_prefix(&body).map_err(|_| Error::BadReply("CREATE reply without entry".into()))?;
        let (open, _) =
            abi::OpenOut::read_from_prefix(rest).map_err(|_| Error::BadReply("CREATE reply without open".into()))?;
        Ok((entry, open))
    }

    /// OPEN `node` with open(2) `flags`.
    pub fn open(&self, node: u64, flags: u32) -> Result<abi::OpenOut, Error> {
        let o = abi::OpenIn { flags, open_flags: 0 };
        let req = request(opcode::OPEN, self.next_unique(), node, &[o.as_bytes()]);
        self.call(&req, SMALL_REPLY)?.decode()
    }

    /// WRITE `data` at `offset`; returns the bytes written.
    pub fn write(&self, node: u64, fh: u64, offset: u64, data: &[u8]) -> Result<u32, Error> {
        let w = abi::WriteIn { fh, offset, size: data.len() as u32, ..Default::default() };
        let req = request(opcode::WRITE, self.next_unique(), node, &[w.as_bytes(), data]);
        Ok(self.call(&req, SMALL_REPLY)?.decode::<abi::WriteOut>()?.size)
    }

    /// READ up to `size` bytes at `offset`.
    pub fn read(&self, node: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, Error> {
        let r = abi::ReadIn { fh, offset, size, ..Default::default() };
        let req = request(opcode::READ, self.next_unique(), node, &[r.as_bytes()]);
        self.call(&req, OUT_HEADER_SIZE + size as usize)?.ok()
    }

    /// RELEASE the open file `fh`.
    pub fn release(&self, node: u64, fh: u64) -> Result<(), Error> {
        let r = abi::ReleaseIn { fh, ..Default::default() };
        let req = request(opcode::RELEASE, self.next_unique(), node, &[r.as_bytes()]);
        self.call(&req, SMALL_REPLY)?.ok().map(drop)
    }

    /// STATFS.
    pub fn statfs(&self, node: u64) -> Result<abi::StatfsOut, Error> {
        let req = request(opcode::STATFS, self.next_unique(), node, &[]);
        self.call(&req, SMALL_REPLY)?.decode()
    }

    /// FORGET `nlookup` references of `node`, on the hiprio queue (no reply).
    pub fn forget(&self, node: u64, nlookup: u64) -> Result<(), Error> {
        let f = abi::ForgetIn { nlookup };
        let req = request(opcode::FORGET, self.next_unique(), node, &[f.as_bytes()]);
        let reply = self.harness.request(HIPRIO_QUEUE, &req, 0)?;
        if reply.is_empty() {
            Ok(())
        } else {
            Err(Error::BadReply(format!("FORGET got a reply of {} bytes", reply.len())))
        }
    }
}
