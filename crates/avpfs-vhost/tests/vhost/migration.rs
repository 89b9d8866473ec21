//! Live migration, the back end's side: the dirty-page log (every page the
//! device writes while the front end logs is marked, zero-copy READ
//! payloads included) and the device state moved from one back end to
//! another through `SET_DEVICE_STATE_FD` / `CHECK_DEVICE_STATE`.
//!
//! The state tests use the test double's own state (`MemFs::save_state`)
//! wrapped by `Server::save_state`, so they exercise the channel whatever
//! the server's envelope is.

use std::collections::BTreeSet;

use fuse_abi::{self as abi, opcode};
use vhost_harness::fuse::{request, FuseClient, Reply, OUT_HEADER_SIZE};
use vhost_harness::{Chain, Harness, HarnessConfig, StateError};
use zerocopy::IntoBytes;

use crate::common::Backend;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

/// Sends a READ of `size` bytes whose reply lands in a page-aligned
/// header buffer and a page-aligned payload buffer; returns the reply and
/// the pages those buffers span.
fn read_into_known_pages(h: &Harness, queue: usize, node: u64, fh: u64, size: u32) -> (Vec<u8>, BTreeSet<u64>) {
    let r = abi::ReadIn { fh, offset: 0, size, ..Default::default() };
    let req = request(opcode::READ, 99, node, &[r.as_bytes()]);
    let inp = h.alloc(req.len()).unwrap();
    h.write_guest(inp, &req).unwrap();
    let hdr = h.alloc_aligned(OUT_HEADER_SIZE, 4096).unwrap();
    let payload = h.alloc_aligned(size as usize, 4096).unwrap();
    let chain = Chain {
        readable: vec![(inp, req.len() as u32)],
        writable: vec![(hdr, OUT_HEADER_SIZE as u32), (payload, size)],
        indirect: false,
    };
    let used = h.wait(h.submit(queue, &chain).unwrap()).unwrap() as usize;
    let mut reply = h.read_guest(hdr, OUT_HEADER_SIZE).unwrap();
    reply.extend(h.read_guest(payload, used - OUT_HEADER_SIZE).unwrap());
    let pages = Harness::pages_of(hdr, OUT_HEADER_SIZE as u64)
        .chain(Harness::pages_of(payload, (used - OUT_HEADER_SIZE) as u64))
        .collect();
    (reply, pages)
}

fn used_ring_pages(h: &Harness, queue: usize) -> BTreeSet<u64> {
    let (_, _, used) = h.ring_addresses(queue).unwrap();
    // flags, idx, 256 elements of 8 bytes, avail_event.
    Harness::pages_of(used, 4 + 8 * 256 + 2).collect()
}

/// The dirty pages once `expected` are all marked (or after a second): the
/// device marks a page right after its write, which may come after the
/// harness saw the used ring move.
fn dirty_once(h: &Harness, expected: &BTreeSet<u64>) -> BTreeSet<u64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let dirty: BTreeSet<u64> = h.dirty_pages().unwrap().into_iter().collect();
        if expected.is_subset(&dirty) || std::time::Instant::now() > deadline {
            return dirty;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn the_back_end_offers_what_migration_needs() {
    let b = Backend::start(1);
    let h = b.connect(2);
    assert!(h.supports_migration());
    // VHOST_F_LOG_ALL is offered (QEMU refuses to migrate without it).
    let log_all = vhost::vhost_user::message::VhostUserVirtioFeatures::LOG_ALL.bits();
    assert_ne!(h.acked_features() & log_all, 0);
}

/// With the log on, a READ's reply pages (header copied, payload read
/// straight from the file into guest memory) and the used ring are marked,
/// and nothing else; with the log on but no request, nothing is marked.
#[test]
fn dirty_log_marks_read_replies_and_the_used_ring() {
    let b = Backend::start(1);
    let h = b.connect(2);
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    let data = pattern(512 << 10);
    b.fs().add_file("big", &data);
    let entry = c.lookup(abi::ROOT_ID, "big").unwrap();
    let open = c.open(entry.nodeid, libc::O_RDONLY as u32).unwrap();

    // A read before the log exists marks nothing once the log is set.
    let _ = read_into_known_pages(&h, 1, entry.nodeid, open.fh, 8192);
    h.start_dirty_log().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(h.dirty_pages().unwrap(), Vec::<u64>::new(), "an idle device marks nothing");

    // Small (one preadv), large (may be split between the worker and its
    // helper), and larger than one chain's usual size.
    for size in [4096u32, 64 << 10, 256 << 10, 512 << 10] {
        h.clear_dirty_log().unwrap();
        let (reply, pages) = read_into_known_pages(&h, 1, entry.nodeid, open.fh, size);
        let reply = Reply::parse(&reply).unwrap().ok().unwrap();
        assert!(reply == data[..size as usize], "READ of {size} bytes returned other data");
        let mut expected = pages.clone();
        expected.extend(used_ring_pages(&h, 1));
        let dirty = dirty_once(&h, &expected);
        assert!(pages.is_subset(&dirty), "READ of {size}: reply pages {pages:?} not all marked in {dirty:?}");
        assert_eq!(dirty, expected, "READ of {size}: only the reply and the used ring are marked");
    }

    // A WRITE only reads guest memory: only the used ring (and the small
    // reply) are marked, never the payload.
    h.clear_dirty_log().unwrap();
    let (fentry, fopen) = c.create(abi::ROOT_ID, "w", 0o644, libc::O_RDWR as u32).unwrap();
    h.clear_dirty_log().unwrap();
    let w = abi::WriteIn { fh: fopen.fh, offset: 0, size: 65536, ..Default::default() };
    let payload = pattern(65536);
    let req = request(opcode::WRITE, 7, fentry.nodeid, &[w.as_bytes(), &payload]);
    let inp = h.alloc_aligned(req.len(), 4096).unwrap();
    h.write_guest(inp, &req).unwrap();
    let out = h.alloc_aligned(64, 4096).unwrap();
    let chain = Chain { readable: vec![(inp, req.len() as u32)], writable: vec![(out, 64)], indirect: false };
    h.wait(h.submit(1, &chain).unwrap()).unwrap();
    let dirty = dirty_once(&h, &used_ring_pages(&h, 1));
    let request_pages: BTreeSet<u64> = Harness::pages_of(inp, req.len() as u64).collect();
    assert!(dirty.is_disjoint(&request_pages), "a WRITE's payload pages were marked: {dirty:?}");
    assert!(dirty.contains(&(out.0 / 4096)));
}

/// The log works on every request queue (one worker thread each).
#[test]
fn dirty_log_covers_every_request_queue() {
    let b = Backend::start(3);
    let h = Harness::connect(&b.socket, HarnessConfig { num_queues: 4, ..Default::default() }).unwrap();
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    b.fs().add_file("f", &pattern(16384));
    let entry = c.lookup(abi::ROOT_ID, "f").unwrap();
    let open = c.open(entry.nodeid, libc::O_RDONLY as u32).unwrap();
    h.start_dirty_log().unwrap();
    for q in 1..4 {
        h.clear_dirty_log().unwrap();
        let (reply, pages) = read_into_known_pages(&h, q, entry.nodeid, open.fh, 16384);
        assert_eq!(reply.len(), OUT_HEADER_SIZE + 16384);
        let dirty = dirty_once(&h, &pages.iter().copied().chain(used_ring_pages(&h, q)).collect());
        assert!(used_ring_pages(&h, q).is_subset(&dirty), "queue {q}: used ring not marked");
        assert!(pages.is_subset(&dirty), "queue {q}: the reply's pages {pages:?} are not all marked: {dirty:?}");
    }
}

/// Source: nodes and an open handle; the device is stopped, its state
/// saved; the destination (another back end, another connection) loads it
/// and holds the same nodes and handles. Once the server's own state
/// (FUSE_INIT's outcome) travels too, the destination serves the guest's
/// next READ on the old handle without a new FUSE_INIT.
#[test]
fn device_state_moves_from_one_back_end_to_another() {
    let src = Backend::start(2);
    let h = Harness::connect(&src.socket, HarnessConfig { num_queues: 3, ..Default::default() }).unwrap();
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    let data = pattern(100_000);
    src.fs().add_file("kept-open", &data);
    let entry = c.lookup(abi::ROOT_ID, "kept-open").unwrap();
    let open = c.open(entry.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(c.on_queue(2).read(entry.nodeid, open.fh, 0, 10).unwrap(), &data[..10]);

    h.stop_device().unwrap();
    let state = h.save_state().unwrap().expect("the source saves its state");
    assert!(!state.is_empty());
    // Saving changes nothing on the source (a failed migration goes on there).
    assert_eq!(src.fs().open_handles(), 1);
    assert_eq!(src.fs().lookups(), 1);

    let dst = Backend::start(2);
    let h2 = Harness::connect(&dst.socket, HarnessConfig { num_queues: 3, ..Default::default() }).unwrap();
    h2.load_state(&state).unwrap().expect("the destination takes the state");
    assert_eq!(dst.fs().open_handles(), 1);
    assert_eq!(dst.fs().lookups(), 1);
    // The server's state carries FUSE_INIT's outcome: the guest goes on
    // where it was, on any queue, without a new FUSE_INIT.
    assert!(dst.server.is_initialized());
    let c2 = FuseClient::new(&h2, 2);
    assert_eq!(c2.read(entry.nodeid, open.fh, 50_000, 100).unwrap(), &data[50_000..50_100]);
    c2.release(entry.nodeid, open.fh).unwrap();
    assert_eq!(dst.fs().open_handles(), 0);
}

/// A file system that keeps no migratable state: the save is refused at
/// `SET_DEVICE_STATE_FD` and the source goes on serving, as QEMU restarts
/// the device after a failed migration.
#[test]
fn a_save_the_file_system_cannot_do_fails_cleanly_and_the_source_goes_on() {
    let b = Backend::start(1);
    b.fs().set_migratable(false);
    let h = b.connect(2);
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    b.fs().add_file("f", b"still here");
    let entry = c.lookup(abi::ROOT_ID, "f").unwrap();
    let open = c.open(entry.nodeid, libc::O_RDONLY as u32).unwrap();
    match h.save_state().unwrap() {
        Err(StateError::Refused(_)) => {}
        other => panic!("expected a refused save, got {other:?}"),
    }
    assert_eq!(c.read(entry.nodeid, open.fh, 0, 100).unwrap(), b"still here");
    // A load into a back end that cannot migrate fails at the check.
    let dst = Backend::start(1);
    dst.fs().set_migratable(false);
    let h2 = dst.connect(2);
    assert!(matches!(h2.load_state(b"anything").unwrap(), Err(StateError::CheckFailed(_))));
}

/// Garbage, a cut stream and an empty one are refused by the destination;
/// a refused load changes nothing, and the right state is taken afterwards.
#[test]
fn the_destination_refuses_damaged_states() {
    let src = Backend::start(1);
    let h = src.connect(2);
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    src.fs().add_file("a", b"aaaa");
    let entry = c.lookup(abi::ROOT_ID, "a").unwrap();
    c.open(entry.nodeid, libc::O_RDONLY as u32).unwrap();
    let state = h.save_state().unwrap().unwrap();

    let dst = Backend::start(1);
    dst.fs().add_file("other", b"x");
    let h2 = dst.connect(2);
    let cut = &state[..state.len() / 2];
    let mut flipped = state.clone();
    flipped[0] ^= 0x55;
    for (what, bad) in
        [("garbage", &b"\x00\x01garbage\xff"[..]), ("empty", &[][..]), ("cut", cut), ("flipped", &flipped)]
    {
        match h2.load_state(bad).unwrap() {
            Err(StateError::CheckFailed(_)) => {}
            other => panic!("{what} state: expected a refusal at CHECK_DEVICE_STATE, got {other:?}"),
        }
        assert_eq!(dst.fs().open_handles(), 0, "{what} state changed the destination");
    }
    h2.load_state(&state).unwrap().expect("the right state after refused ones");
    assert_eq!(dst.fs().open_handles(), 1);
}

/// Two sessions in one process (as the `--config` daemon runs them): one
/// is saved and reset, the other keeps its nodes and handles.
#[test]
fn migrating_one_session_leaves_another_alone() {
    let a = Backend::start(1);
    let other = Backend::start(1);
    let ha = a.connect(2);
    let hb = other.connect(2);
    let (ca, cb) = (FuseClient::new(&ha, 1), FuseClient::new(&hb, 1));
    ca.init().unwrap();
    cb.init().unwrap();
    other.fs().add_file("b", b"bbb");
    let eb = cb.lookup(abi::ROOT_ID, "b").unwrap();
    let ob = cb.open(eb.nodeid, libc::O_RDONLY as u32).unwrap();
    ha.stop_device().unwrap();
    ha.save_state().unwrap().unwrap();
    ha.disconnect();
    assert_eq!(cb.read(eb.nodeid, ob.fh, 0, 3).unwrap(), b"bbb");
    assert_eq!(other.fs().open_handles(), 1);
}
