//! Device setup and the first FUSE requests.

use fuse_abi::{self as abi, init_flags};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_harness::FuseClient;

use crate::common::Backend;

#[test]
fn negotiates_features_and_config() {
    let b = Backend::start(3);
    let h = b.connect(4);
    assert_eq!(h.backend_queues(), 4);
    assert_eq!(h.tag(), "testfs");
    assert_eq!(h.num_request_queues(), Some(3));
    let virtio = h.acked_features();
    assert_ne!(virtio & (1 << 32), 0, "VERSION_1");
    assert_ne!(virtio & (1 << 28), 0, "RING_INDIRECT_DESC");
    assert_ne!(virtio & (1 << 29), 0, "RING_EVENT_IDX");
    let proto = h.protocol_features();
    for f in [
        VhostUserProtocolFeatures::MQ,
        VhostUserProtocolFeatures::REPLY_ACK,
        VhostUserProtocolFeatures::CONFIG,
        VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS,
        VhostUserProtocolFeatures::RESET_DEVICE,
    ] {
        assert!(proto.contains(f), "{f:?}");
    }
}

#[test]
fn init_and_lookup_over_the_queue() {
    let b = Backend::start(1);
    b.fs().add_file("hello.txt", b"hello, guest\n");
    let h = b.connect(2);
    let c = FuseClient::new(&h, 1);

    // Before FUSE_INIT every other request fails with EIO.
    assert!(matches!(c.lookup(abi::ROOT_ID, "hello.txt"), Err(vhost_harness::Error::Fuse(libc::EIO))));

    let init = c.init().unwrap();
    assert_eq!(init.major, abi::KERNEL_VERSION);
    assert_eq!(init.minor, abi::KERNEL_MINOR_VERSION);
    assert_ne!(init.flags as u64 & init_flags::MAX_PAGES, 0);
    assert_eq!(init.max_write, avpfs_server::MAX_WRITE);
    assert!(b.server.is_initialized());

    let e = c.lookup(abi::ROOT_ID, "hello.txt").unwrap();
    assert_ne!(e.nodeid, 0);
    assert_eq!(e.attr.size, 13);
    assert_eq!(e.attr.mode & libc::S_IFMT, libc::S_IFREG);
    assert!(matches!(c.lookup(abi::ROOT_ID, "missing"), Err(vhost_harness::Error::Fuse(libc::ENOENT))));
    assert_eq!(b.fs().lookups(), 1);

    // FORGET on the hiprio queue: no reply, the reference is dropped.
    c.forget(e.nodeid, 1).unwrap();
    crate::common::eventually("FORGET", || b.fs().lookups() == 0);
}
