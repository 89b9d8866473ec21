//! Memory table changes, disconnects, reconnects, device resets and stopping.

use std::time::{Duration, Instant};

use fuse_abi::{self as abi, opcode};
use vhost_harness::fuse::{request, FuseClient, Reply};
use vhost_harness::{Desc, Layout, F_NEXT, F_WRITE};
use zerocopy::IntoBytes;

use crate::common::{eventually, Backend};
use avpfs_vhost::VhostOptions;

const REGION: u64 = 0x1_0000_0000;
const REGION_SIZE: usize = 16 << 20;

#[test]
fn memory_region_added_and_removed_at_run_time() {
    let b = Backend::start(1);
    b.fs().add_file("hello", b"hi\n");
    let h = b.connect(2);
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();

    h.add_memory_region(REGION, REGION_SIZE).unwrap();
    let in_region = Layout { within: Some((REGION, REGION + REGION_SIZE as u64)), ..Default::default() };
    let req = request(opcode::LOOKUP, 50, abi::ROOT_ID, &[b"hello\0"]);
    let reply = Reply::parse(&h.request_with(1, &req, 4096, in_region).unwrap()).unwrap();
    assert_eq!(reply.decode::<abi::EntryOut>().unwrap().attr.size, 3);

    // Payload in the new region, split in pages, and read back from it.
    let (e, o) = c.create(abi::ROOT_ID, "f", 0o644, libc::O_RDWR as u32).unwrap();
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let w = abi::WriteIn { fh: o.fh, offset: 0, size: data.len() as u32, ..Default::default() };
    let layout = Layout { max_segment: Some(4096), ..in_region };
    let req = request(opcode::WRITE, 51, e.nodeid, &[w.as_bytes(), &data]);
    let reply = Reply::parse(&h.request_with(1, &req, 4096, layout).unwrap()).unwrap();
    assert_eq!(reply.decode::<abi::WriteOut>().unwrap().size, data.len() as u32);
    let r = abi::ReadIn { fh: o.fh, offset: 0, size: data.len() as u32, ..Default::default() };
    let req = request(opcode::READ, 52, e.nodeid, &[r.as_bytes()]);
    let reply = Reply::parse(&h.request_with(1, &req, 16 + data.len(), layout).unwrap()).unwrap();
    assert!(reply.ok().unwrap() == data);

    // Once removed, the region is outside guest memory for the device.
    h.remove_memory_region(REGION).unwrap();
    let reply_buf = h.alloc(4096).unwrap().0;
    let t = h
        .submit_raw(
            1,
            &[
                Desc { addr: REGION, len: 46, flags: F_NEXT, next: 1 },
                Desc { addr: reply_buf, len: 4096, flags: F_WRITE, next: 0 },
            ],
        )
        .unwrap();
    assert_eq!(h.wait(t).unwrap(), 0);
    assert_eq!(c.lookup(abi::ROOT_ID, "hello").unwrap().attr.size, 3);
}

#[test]
fn disconnect_frees_nodes_and_reconnect_serves_again() {
    let b = Backend::start(2);
    b.fs().add_file("hello", b"hi\n");
    {
        let h = b.connect(3);
        let c = FuseClient::new(&h, 2);
        c.init().unwrap();
        let e = c.lookup(abi::ROOT_ID, "hello").unwrap();
        c.lookup(abi::ROOT_ID, "hello").unwrap();
        c.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
        c.create(abi::ROOT_ID, "new", 0o644, libc::O_RDWR as u32).unwrap();
        assert_eq!(b.fs().lookups(), 3);
        assert_eq!(b.fs().open_handles(), 2);
        h.disconnect();
    }
    eventually("the reset after the disconnect", || b.fs().destroys() == 1);
    assert_eq!(b.fs().lookups(), 0);
    assert_eq!(b.fs().open_handles(), 0);
    assert!(!b.server.is_initialized());

    // A new front end (a rebooted VMM) gets a fresh session.
    let h = b.connect(3);
    let c = FuseClient::new(&h, 1);
    assert!(matches!(c.getattr(abi::ROOT_ID), Err(vhost_harness::Error::Fuse(libc::EIO))));
    c.init().unwrap();
    assert_eq!(c.lookup(abi::ROOT_ID, "new").unwrap().attr.mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(b.fs().lookups(), 1);
}

#[test]
fn reset_device_drops_the_guest_state() {
    let b = Backend::start(1);
    b.fs().add_file("hello", b"hi\n");
    let h = b.connect(2);
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    c.lookup(abi::ROOT_ID, "hello").unwrap();
    h.reset_device().unwrap();
    // RESET_DEVICE is acknowledged after the reset (REPLY_ACK).
    assert_eq!(b.fs().destroys(), 1);
    assert_eq!(b.fs().lookups(), 0);
    assert!(!b.server.is_initialized());
    h.disconnect();
    let h = b.connect(2);
    FuseClient::new(&h, 1).init().unwrap();
}

#[test]
fn serve_returns_after_the_front_end_leaves() {
    let b = Backend::start_with(VhostOptions {
        tag: "once".into(),
        num_request_queues: 1,
        queue_size: 256,
        keep_listening_after_disconnect: false,
        ..Default::default()
    });
    let h = b.connect(2);
    assert_eq!(h.tag(), "once");
    FuseClient::new(&h, 1).init().unwrap();
    h.disconnect();
    b.wait_exit().unwrap();
}

#[test]
fn stopper_ends_a_connected_daemon() {
    let b = Backend::start(1);
    let h = b.connect(2);
    FuseClient::new(&h, 1).init().unwrap();
    let start = Instant::now();
    b.stop().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(h);
}

#[test]
fn stopper_ends_a_listening_daemon() {
    let b = Backend::start(1);
    b.stop().unwrap();
}
