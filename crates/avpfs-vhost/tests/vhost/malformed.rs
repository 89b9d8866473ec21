//! Malformed descriptor chains: each is answered with an error when the
//! chain has room for one, or returned with length 0 when it has not, and
//! the device keeps serving: every test ends with a valid request.

use fuse_abi::{self as abi, opcode};
use vhost_harness::fuse::{request, FuseClient, Reply};
use vhost_harness::{Desc, Harness, F_INDIRECT, F_NEXT, F_WRITE};
use vm_memory::GuestAddress;
use zerocopy::IntoBytes;

use crate::common::Backend;

const QUEUE: usize = 1;

/// A backend with a file `hello` and an initialized harness.
fn setup() -> (Backend, Harness) {
    let b = Backend::start(1);
    b.fs().add_file("hello", b"hi\n");
    let h = b.connect(2);
    FuseClient::new(&h, QUEUE).init().unwrap();
    (b, h)
}

/// A valid request after the bad one must still succeed.
fn assert_still_serving(h: &Harness) {
    let c = FuseClient::new(h, QUEUE);
    let e = c.lookup(abi::ROOT_ID, "hello").expect("the device stopped serving");
    assert_eq!(e.attr.size, 3);
    assert_eq!(c.getattr(abi::ROOT_ID).unwrap().attr.mode & libc::S_IFMT, libc::S_IFDIR);
}

/// Guest memory holding `data`.
fn guest(h: &Harness, data: &[u8]) -> u64 {
    let a = h.alloc(data.len()).unwrap();
    h.write_guest(a, data).unwrap();
    a.0
}

/// A LOOKUP request for `hello` with the given unique.
fn lookup_req(unique: u64) -> Vec<u8> {
    request(opcode::LOOKUP, unique, abi::ROOT_ID, &[b"hello\0"])
}

/// Sends `descs` and returns the used length and the reply buffer at `reply`.
fn send(h: &Harness, descs: &[Desc], reply: Option<u64>) -> (u32, Vec<u8>) {
    let used = h.wait(h.submit_raw(QUEUE, descs).unwrap()).unwrap();
    let bytes = match reply {
        Some(a) => h.read_guest(GuestAddress(a), used as usize).unwrap(),
        None => Vec::new(),
    };
    (used, bytes)
}

fn error_of(bytes: &[u8]) -> (i32, u64) {
    let r = Reply::parse(bytes).unwrap();
    (r.errno().unwrap_or(0), r.header.unique)
}

#[test]
fn request_too_short_for_the_header() {
    let (_b, h) = setup();
    let req = guest(&h, &lookup_req(5)[..10]);
    let reply = h.alloc(4096).unwrap().0;
    let (used, bytes) = send(
        &h,
        &[
            Desc { addr: req, len: 10, flags: F_NEXT, next: 1 },
            Desc { addr: reply, len: 4096, flags: F_WRITE, next: 0 },
        ],
        Some(reply),
    );
    assert_eq!(used, 16);
    assert_eq!(error_of(&bytes), (libc::EIO, 0));
    assert_still_serving(&h);
}

#[test]
fn header_length_field_larger_than_the_chain() {
    let (_b, h) = setup();
    let mut bytes = lookup_req(6);
    bytes[0..4].copy_from_slice(&1000u32.to_le_bytes());
    let req = guest(&h, &bytes);
    let reply = h.alloc(4096).unwrap().0;
    let (used, out) = send(
        &h,
        &[
            Desc { addr: req, len: bytes.len() as u32, flags: F_NEXT, next: 1 },
            Desc { addr: reply, len: 4096, flags: F_WRITE, next: 0 },
        ],
        Some(reply),
    );
    assert_eq!(used, 16);
    assert_eq!(error_of(&out), (libc::EINVAL, 6));
    assert_still_serving(&h);
}

#[test]
fn descriptor_outside_guest_memory() {
    let (_b, h) = setup();
    let reply = h.alloc(4096).unwrap().0;
    // The request buffer is outside memory: nothing can be trusted, no reply.
    let (used, _) = send(
        &h,
        &[
            Desc { addr: 1 << 40, len: 64, flags: F_NEXT, next: 1 },
            Desc { addr: reply, len: 4096, flags: F_WRITE, next: 0 },
        ],
        None,
    );
    assert_eq!(used, 0);
    // The reply buffer straddles the end of guest memory.
    let req = guest(&h, &lookup_req(7));
    let (used, _) = send(
        &h,
        &[
            Desc { addr: req, len: 46, flags: F_NEXT, next: 1 },
            Desc { addr: (64 << 20) - 100, len: 4096, flags: F_WRITE, next: 0 },
        ],
        None,
    );
    assert_eq!(used, 0);
    assert_still_serving(&h);
}

#[test]
fn readable_after_writable() {
    let (_b, h) = setup();
    let req = guest(&h, &lookup_req(8));
    let reply = h.alloc(4096).unwrap().0;
    let extra = guest(&h, &[0u8; 8]);
    let (used, bytes) = send(
        &h,
        &[
            Desc { addr: req, len: 46, flags: F_NEXT, next: 1 },
            Desc { addr: reply, len: 4096, flags: F_WRITE | F_NEXT, next: 2 },
            Desc { addr: extra, len: 8, flags: 0, next: 0 },
        ],
        Some(reply),
    );
    // The chain is refused; the valid part has the header and a reply buffer.
    assert_eq!(used, 16);
    assert_eq!(error_of(&bytes), (libc::EIO, 8));
    assert_still_serving(&h);
}

#[test]
fn length_overflow_wraps_the_address_space() {
    let (_b, h) = setup();
    let reply = h.alloc(4096).unwrap().0;
    let (used, _) = send(
        &h,
        &[
            Desc { addr: u64::MAX - 0x10, len: 0x100, flags: F_NEXT, next: 1 },
            Desc { addr: reply, len: 4096, flags: F_WRITE, next: 0 },
        ],
        None,
    );
    assert_eq!(used, 0);
    assert_still_serving(&h);
}

#[test]
fn chain_too_large() {
    let (_b, h) = setup();
    let req = guest(&h, &lookup_req(9));
    let reply = h.alloc(4096).unwrap().0;
    // 3 GiB of "reply buffer": inside the address space, but absurd.
    let (used, bytes) = send(
        &h,
        &[
            Desc { addr: req, len: 46, flags: F_NEXT, next: 1 },
            Desc { addr: reply, len: 4096, flags: F_WRITE | F_NEXT, next: 2 },
            Desc { addr: 0, len: 0xc000_0000, flags: F_WRITE, next: 0 },
        ],
        Some(reply),
    );
    assert_eq!(used, 16);
    assert_eq!(error_of(&bytes), (libc::EIO, 9));
    assert_still_serving(&h);
}

#[test]
fn chain_loop() {
    let (_b, h) = setup();
    let req = guest(&h, &lookup_req(10));
    // A descriptor pointing back to itself: no reply possible.
    let (used, _) = send(&h, &[Desc { addr: req, len: 46, flags: F_NEXT, next: 0 }], None);
    assert_eq!(used, 0);
    // A loop among the writable descriptors: answered with an error.
    let reply = h.alloc(4096).unwrap().0;
    let (used, bytes) = send(
        &h,
        &[
            Desc { addr: req, len: 46, flags: F_NEXT, next: 1 },
            Desc { addr: reply, len: 2048, flags: F_WRITE | F_NEXT, next: 2 },
            Desc { addr: reply + 2048, len: 2048, flags: F_WRITE | F_NEXT, next: 1 },
        ],
        Some(reply),
    );
    assert_eq!(used, 16);
    assert_eq!(error_of(&bytes), (libc::EIO, 10));
    assert_still_serving(&h);
}

#[test]
fn next_index_outside_the_table() {
    let (_b, h) = setup();
    let req = guest(&h, &lookup_req(11));
    let (used, _) = send(&h, &[Desc { addr: req, len: 46, flags: F_NEXT, next: 5000 }], None);
    assert_eq!(used, 0);
    assert_still_serving(&h);
}

#[test]
fn write_only_chain_without_request() {
    let (_b, h) = setup();
    let reply = h.alloc(4096).unwrap().0;
    let (used, bytes) = send(&h, &[Desc { addr: reply, len: 4096, flags: F_WRITE, next: 0 }], Some(reply));
    assert_eq!(used, 16);
    assert_eq!(error_of(&bytes), (libc::EIO, 0));
    assert_still_serving(&h);
}

#[test]
fn empty_chain_of_zero_length_descriptors() {
    let (_b, h) = setup();
    let (used, _) = send(&h, &[Desc { addr: 0, len: 0, flags: 0, next: 0 }], None);
    assert_eq!(used, 0);
    assert_still_serving(&h);
}

#[test]
fn reply_buffer_too_small() {
    let (_b, h) = setup();
    let g = abi::GetattrIn::default();
    let req_bytes = request(opcode::GETATTR, 12, abi::ROOT_ID, &[g.as_bytes()]);
    let req = guest(&h, &req_bytes);
    let len = req_bytes.len() as u32;
    // Room for the header but not for the attributes: ERANGE.
    let reply = h.alloc(4096).unwrap().0;
    let (used, bytes) = send(
        &h,
        &[Desc { addr: req, len, flags: F_NEXT, next: 1 }, Desc { addr: reply, len: 24, flags: F_WRITE, next: 0 }],
        Some(reply),
    );
    assert_eq!(used, 16);
    assert_eq!(error_of(&bytes), (libc::ERANGE, 12));
    // Not even room for a header: returned unanswered.
    let (used, _) = send(
        &h,
        &[Desc { addr: req, len, flags: F_NEXT, next: 1 }, Desc { addr: reply, len: 8, flags: F_WRITE, next: 0 }],
        None,
    );
    assert_eq!(used, 0);
    // A READ larger than the reply buffer is cut to the buffer.
    let c = FuseClient::new(&h, QUEUE);
    let e = c.lookup(abi::ROOT_ID, "hello").unwrap();
    let o = c.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
    let r = abi::ReadIn { fh: o.fh, offset: 0, size: 4096, ..Default::default() };
    let reply =
        Reply::parse(&h.request(QUEUE, &request(opcode::READ, 13, e.nodeid, &[r.as_bytes()]), 18).unwrap()).unwrap();
    assert_eq!(reply.ok().unwrap(), b"hi");
    assert_still_serving(&h);
}

#[test]
fn bad_indirect_tables() {
    let (_b, h) = setup();
    let req = guest(&h, &lookup_req(14));
    let reply = h.alloc(4096).unwrap().0;
    // Indirect descriptor with NEXT.
    let (used, _) = send(
        &h,
        &[
            Desc { addr: req, len: 32, flags: F_INDIRECT | F_NEXT, next: 1 },
            Desc { addr: reply, len: 4096, flags: F_WRITE, next: 0 },
        ],
        None,
    );
    assert_eq!(used, 0);
    // Table length not a multiple of 16, and a table outside memory.
    for (addr, len) in [(req, 20), (1 << 40, 32)] {
        let (used, _) = send(&h, &[Desc { addr, len, flags: F_INDIRECT, next: 0 }], None);
        assert_eq!(used, 0);
    }
    // A table that points to another table.
    let inner = guest(&h, &[0u8; 16]);
    let mut outer = Vec::new();
    outer.extend_from_slice(&inner.to_le_bytes());
    outer.extend_from_slice(&16u32.to_le_bytes());
    outer.extend_from_slice(&F_INDIRECT.to_le_bytes());
    outer.extend_from_slice(&0u16.to_le_bytes());
    let table = guest(&h, &outer);
    let (used, _) = send(&h, &[Desc { addr: table, len: 16, flags: F_INDIRECT, next: 0 }], None);
    assert_eq!(used, 0);
    assert_still_serving(&h);
}

/// Many bad chains in one batch, valid ones between them: each gets its own answer.
#[test]
fn bad_and_good_chains_in_one_batch() {
    let (_b, h) = setup();
    let mut tokens = Vec::new();
    for i in 0..20u64 {
        let reply = h.alloc(4096).unwrap().0;
        let descs = if i % 2 == 0 {
            let req = guest(&h, &lookup_req(100 + i));
            vec![
                Desc { addr: req, len: 46, flags: F_NEXT, next: 1 },
                Desc { addr: reply, len: 4096, flags: F_WRITE, next: 0 },
            ]
        } else {
            vec![
                Desc { addr: 1 << 40, len: 46, flags: F_NEXT, next: 1 },
                Desc { addr: reply, len: 4096, flags: F_WRITE, next: 0 },
            ]
        };
        tokens.push((i, reply, h.submit_raw(QUEUE, &descs).unwrap()));
    }
    for (i, reply, t) in tokens {
        let used = h.wait(t).unwrap();
        if i % 2 == 0 {
            let r = Reply::parse(&h.read_guest(GuestAddress(reply), used as usize).unwrap()).unwrap();
            assert_eq!((r.header.unique, r.errno()), (100 + i, None));
        } else {
            assert_eq!(used, 0);
        }
    }
    assert_still_serving(&h);
}
