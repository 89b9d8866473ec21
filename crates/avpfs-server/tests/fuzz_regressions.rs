//! Findings of the fuzz targets (fuzz/), kept as tests.
//!
//! Reply buffer too small for the reply: the guest picks the size of the
//! writable part of a descriptor chain. The server calls the file system
//! first and finds out only when it encodes the reply that it does not fit;
//! it then answers ERANGE. But the operation already happened, and when it
//! handed out a reference (LOOKUP, CREATE: a lookup count) or a handle (OPEN,
//! CREATE: an open file in the daemon), the guest never learns its number
//! and cannot give it back: each such request pins a host descriptor until
//! the session ends. Fixed: for replies of a fixed size, the server checks that the
//! writer has room for header and reply before calling the file system
//! (reply ERANGE without calling it).

use std::ffi::CStr;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use avpfs_server::{Context, Entry, FileSystem, Handle, Handled, NodeId, OpenReply, Server, SliceReader, VecWriter};
use fuse_abi::{self as abi, opcode};
use zerocopy::{FromBytes, IntoBytes};

/// Counts the handles and lookup references it hands out.
#[derive(Default)]
struct Counting {
    handles: AtomicU64,
    lookups: AtomicU64,
}

impl FileSystem for Counting {
    fn lookup(&self, _: &Context, _: NodeId, _: &CStr) -> io::Result<Entry> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let attr = abi::Attr { ino: 2, mode: libc::S_IFREG | 0o644, nlink: 1, ..Default::default() };
        Ok(Entry {
            nodeid: NodeId(2),
            generation: 1,
            attr,
            attr_timeout: Duration::ZERO,
            entry_timeout: Duration::ZERO,
        })
    }
    fn open(&self, _: &Context, _: NodeId, _: u32, _: bool) -> io::Result<OpenReply> {
        let fh = self.handles.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(OpenReply { handle: Handle(fh), open_flags: 0 })
    }
}

fn request(op: u32, unique: u64, nodeid: u64, body: &[u8]) -> Vec<u8> {
    let len = (core::mem::size_of::<abi::InHeader>() + body.len()) as u32;
    let h = abi::InHeader { len, opcode: op, unique, nodeid, ..Default::default() };
    [h.as_bytes(), body].concat()
}

fn send(server: &Server<Counting>, req: &[u8], cap: usize) -> abi::OutHeader {
    let mut w = VecWriter::new(cap);
    let handled = server.handle_message(&mut SliceReader::new(req), &mut w).unwrap();
    assert!(matches!(handled, Handled::Reply(16)), "{handled:?}");
    abi::OutHeader::read_from_prefix(w.as_slice()).unwrap().0
}

fn initialized() -> Server<Counting> {
    let server = Server::new(Counting::default());
    let init = abi::InitIn { major: 7, minor: 41, ..Default::default() };
    let mut w = VecWriter::new(4096);
    server.handle_message(&mut SliceReader::new(&request(opcode::INIT, 1, 0, init.as_bytes())), &mut w).unwrap();
    assert!(server.is_initialized());
    server
}

#[test]
fn open_with_no_room_for_the_reply_hands_out_no_handle() {
    let server = initialized();
    // Room for the header only: the 16-byte OpenOut does not fit.
    let open = request(opcode::OPEN, 2, 2, abi::OpenIn { flags: libc::O_RDONLY as u32, open_flags: 0 }.as_bytes());
    let out = send(&server, &open, 16);
    assert_eq!(out.error, -libc::ERANGE);
    assert_eq!(server.fs().handles.load(Ordering::SeqCst), 0, "a handle was opened that the guest never learns of");
}

#[test]
fn lookup_with_no_room_for_the_reply_takes_no_reference() {
    let server = initialized();
    let out = send(&server, &request(opcode::LOOKUP, 3, 1, b"file\0"), 16);
    assert_eq!(out.error, -libc::ERANGE);
    assert_eq!(server.fs().lookups.load(Ordering::SeqCst), 0, "a lookup reference the guest never learns of");
}
