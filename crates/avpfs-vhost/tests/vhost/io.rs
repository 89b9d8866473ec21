//! Data through the queues: round trips with large payloads split over many
//! descriptors, indirect tables, and several request queues in parallel.

use std::collections::HashSet;
use std::sync::Barrier;

use fuse_abi::{self as abi, opcode};
use vhost_harness::fuse::{request, FuseClient, Reply};
use vhost_harness::{Chain, Harness, HarnessConfig, Layout};
use zerocopy::IntoBytes;

use crate::common::Backend;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

#[test]
fn create_write_read_round_trip() {
    let b = Backend::start(1);
    let h = b.connect(2);
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();

    let dir = c.mkdir(abi::ROOT_ID, "d", 0o755).unwrap();
    let (entry, open) = c.create(dir.nodeid, "f", 0o644, libc::O_RDWR as u32).unwrap();
    assert_eq!(entry.attr.mode & libc::S_IFMT, libc::S_IFREG);

    let data = pattern(200 * 1024 + 123, 7);
    assert_eq!(c.write(entry.nodeid, open.fh, 0, &data).unwrap(), data.len() as u32);
    assert_eq!(c.getattr(entry.nodeid).unwrap().attr.size, data.len() as u64);
    assert_eq!(c.lookup(dir.nodeid, "f").unwrap().nodeid, entry.nodeid);

    let back = c.read(entry.nodeid, open.fh, 0, data.len() as u32).unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "read data differs from written data");
    // A read at an offset, and past the end.
    assert_eq!(c.read(entry.nodeid, open.fh, 1000, 4096).unwrap(), &data[1000..5096]);
    assert!(c.read(entry.nodeid, open.fh, data.len() as u64 + 10, 4096).unwrap().is_empty());
    c.release(entry.nodeid, open.fh).unwrap();
    assert_eq!(b.fs().open_handles(), 0);
}

/// WRITE and READ with the payload in many small descriptors (as a guest
/// with scattered pages sends them), directly and through an indirect table.
#[test]
fn payloads_split_over_many_descriptors() {
    let b = Backend::start(1);
    let h = b.connect(2);
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    let (entry, open) = c.create(abi::ROOT_ID, "split", 0o644, libc::O_RDWR as u32).unwrap();

    for (i, layout) in [
        Layout { max_segment: Some(4096), ..Default::default() },
        Layout { max_segment: Some(1000), ..Default::default() },
        Layout { max_segment: Some(4096), indirect: true, ..Default::default() },
    ]
    .into_iter()
    .enumerate()
    {
        let data = pattern(96 * 1024 + i, i as u8);
        let offset = (i * 300 * 1024) as u64;
        let w = abi::WriteIn { fh: open.fh, offset, size: data.len() as u32, ..Default::default() };
        let req = request(opcode::WRITE, 100 + i as u64, entry.nodeid, &[w.as_bytes(), &data]);
        let reply = Reply::parse(&h.request_with(1, &req, 4096, layout).unwrap()).unwrap();
        assert_eq!(reply.decode::<abi::WriteOut>().unwrap().size, data.len() as u32, "{layout:?}");

        let r = abi::ReadIn { fh: open.fh, offset, size: data.len() as u32, ..Default::default() };
        let req = request(opcode::READ, 200 + i as u64, entry.nodeid, &[r.as_bytes()]);
        let cap = 16 + data.len();
        let reply = Reply::parse(&h.request_with(1, &req, cap, layout).unwrap()).unwrap();
        assert_eq!(reply.header.unique, 200 + i as u64);
        assert!(reply.ok().unwrap() == data, "{layout:?}: data differs");
    }
}

/// Several threads, each on its own request queue, plus two threads sharing
/// one queue, all at once. Each request queue has its own worker thread.
#[test]
fn requests_spread_over_queues_in_parallel() {
    const QUEUES: usize = 4;
    const ROUNDS: usize = 30;
    let b = Backend::start(QUEUES);
    let h = b.connect(QUEUES + 1);
    FuseClient::new(&h, 1).init().unwrap();

    let workers: Vec<(usize, usize)> = (1..=QUEUES).map(|q| (q, 0)).chain([(1, 1)]).collect();
    let barrier = Barrier::new(workers.len());
    std::thread::scope(|s| {
        for &(queue, n) in &workers {
            let (h, barrier) = (&h, &barrier);
            s.spawn(move || {
                let c = FuseClient::new(h, queue);
                let name = format!("q{queue}-{n}");
                let (entry, open) = c.create(abi::ROOT_ID, &name, 0o644, libc::O_RDWR as u32).unwrap();
                barrier.wait();
                for round in 0..ROUNDS {
                    let data = pattern(8192 + round * 100, (queue * 10 + n) as u8);
                    let off = (round * 16384) as u64;
                    assert_eq!(c.write(entry.nodeid, open.fh, off, &data).unwrap(), data.len() as u32);
                    assert!(c.read(entry.nodeid, open.fh, off, data.len() as u32).unwrap() == data);
                    assert_eq!(c.lookup(abi::ROOT_ID, &name).unwrap().nodeid, entry.nodeid);
                }
                c.release(entry.nodeid, open.fh).unwrap();
            });
        }
    });
    assert_eq!(b.fs().open_handles(), 0);
    // Every request queue was served by its own worker thread.
    let threads: HashSet<_> = b.fs().serving_threads();
    assert!(threads.len() >= QUEUES, "only {} worker threads served {QUEUES} queues", threads.len());
}

/// Three slow READs (200 ms each) made available with one kick are served as
/// one batch; the driver is signalled as each reply is returned, not once
/// at the end of the batch: a guest would otherwise see the first reply
/// 400 ms late.
#[test]
fn replies_of_a_batch_of_slow_requests_are_each_signalled() {
    // No polling: the worker sleeps until the kick that follows all three.
    let b = Backend::start_with(avpfs_vhost::VhostOptions {
        tag: "testfs".into(),
        num_request_queues: 1,
        keep_listening_after_disconnect: true,
        poll_max: std::time::Duration::ZERO,
        ..Default::default()
    });
    b.fs().add_file("slow", b"data");
    let h = b.connect(2);
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    let node = c.lookup(abi::ROOT_ID, "slow").unwrap().nodeid;
    let fh = c.open(node, libc::O_RDONLY as u32).unwrap().fh;
    b.fs().set_read_delay(std::time::Duration::from_millis(200));
    // Let the worker finish its turn after OPEN (turn notifications back on
    // and sleep), so that it sees the three READs only at the kick.
    std::thread::sleep(std::time::Duration::from_millis(100));

    let before = h.notifications(1).unwrap();
    let chains: Vec<Chain> = (0..3u64)
        .map(|i| {
            let body = abi::ReadIn { fh, offset: 0, size: 4, ..Default::default() };
            let req = request(opcode::READ, 900 + i, node, &[body.as_bytes()]);
            let addr = h.alloc(req.len()).unwrap();
            h.write_guest(addr, &req).unwrap();
            let reply = h.alloc(4096).unwrap();
            Chain { readable: vec![(addr, req.len() as u32)], writable: vec![(reply, 4096)], indirect: false }
        })
        .collect();
    let mut p = h.pipeline(1).unwrap();
    for chain in &chains {
        p.push(chain).unwrap();
    }
    // Taking each reply as it comes re-arms the interrupt (EVENT_IDX) for
    // the next one.
    let mut done = Vec::new();
    while done.len() < chains.len() {
        p.wait_any(&mut done).unwrap();
    }
    assert!(done.iter().all(|&(_, used)| used as usize == std::mem::size_of::<abi::OutHeader>() + 4));
    let after = h.notifications(1).unwrap();
    assert_eq!(after.kicks - before.kicks, 1, "the three READs went out with one kick");
    assert!(after.signals - before.signals >= 2, "{} signal(s) for three slow replies", after.signals - before.signals);
}

/// Many chains in flight on a small queue (more than one signal interval),
/// in indirect tables, several times around the ring,
/// with and without EVENT_IDX: every chain is answered once, in batches.
#[test]
fn full_queue_batches_wrap_the_ring() {
    for event_idx in [true, false] {
        let b = Backend::start(1);
        b.fs().add_file("hello", b"hi\n");
        let cfg = HarnessConfig { num_queues: 2, queue_size: 64, event_idx, ..Default::default() };
        let h = Harness::connect(&b.socket, cfg).unwrap();
        assert_eq!(h.acked_features() & (1 << 29) != 0, event_idx);
        FuseClient::new(&h, 1).init().unwrap();
        for round in 0..5u64 {
            let mut pending = Vec::new();
            for i in 0..40u64 {
                let unique = 1000 + round * 100 + i;
                let req = h.alloc(64).unwrap();
                h.write_guest(req, &request(opcode::LOOKUP, unique, abi::ROOT_ID, &[b"hello\0"])).unwrap();
                let reply = h.alloc(4096).unwrap();
                let chain = Chain { readable: vec![(req, 46)], writable: vec![(reply, 4096)], indirect: true };
                pending.push((unique, reply, h.submit(1, &chain).unwrap()));
            }
            for (unique, reply, token) in pending {
                let used = h.wait(token).unwrap();
                let r = Reply::parse(&h.read_guest(reply, used as usize).unwrap()).unwrap();
                assert_eq!(r.header.unique, unique);
                assert_eq!(r.decode::<abi::EntryOut>().unwrap().attr.size, 3);
            }
        }
        assert_eq!(b.fs().lookups(), 200);
    }
}

/// A pipeline that polls for the device's signal for longer than the
/// harness's timeout before it would sleep (it reads the used ring only on
/// a signal): every reply is signalled and taken while it polls (a reply
/// the device did not signal would end in the harness's timeout error), in
/// order of completion, across several turns of a small ring, with and
/// without EVENT_IDX.
#[test]
fn polling_pipeline_takes_every_reply() {
    for event_idx in [true, false] {
        let b = Backend::start(1);
        b.fs().add_file("hello", b"hi\n");
        let cfg = HarnessConfig { num_queues: 2, queue_size: 16, event_idx, ..Default::default() };
        let h = Harness::connect(&b.socket, cfg).unwrap();
        FuseClient::new(&h, 1).init().unwrap();
        let mut p = h.pipeline(1).unwrap();
        p.poll_for_completions(std::time::Duration::from_secs(3600));
        let slots: Vec<_> = (0..8).map(|_| (h.alloc(64).unwrap(), h.alloc(4096).unwrap())).collect();
        let mut by_head = std::collections::HashMap::new();
        let mut done = Vec::new();
        let (mut sent, mut answered) = (0u64, 0u64);
        let mut free: Vec<usize> = (0..slots.len()).collect();
        while answered < 100 {
            while sent < 100 {
                let Some(s) = free.pop() else { break };
                let unique = 500 + sent;
                let (req, reply) = slots[s];
                h.write_guest(req, &request(opcode::LOOKUP, unique, abi::ROOT_ID, &[b"hello\0"])).unwrap();
                let t = p.push_buffers(&[(req.0, 46)], &[(reply.0, 4096)]).unwrap();
                by_head.insert(t.head(), (s, unique));
                sent += 1;
            }
            done.clear();
            p.wait_any(&mut done).unwrap();
            for &(t, used) in &done {
                let (s, unique) = by_head.remove(&t.head()).expect("a chain returned twice or never sent");
                let r = Reply::parse(&h.read_guest(slots[s].1, used as usize).unwrap()).unwrap();
                assert_eq!(r.header.unique, unique);
                assert_eq!(r.decode::<abi::EntryOut>().unwrap().attr.size, 3);
                answered += 1;
                free.push(s);
            }
        }
        assert_eq!(p.in_flight(), 0);
        assert_eq!(b.fs().lookups(), 100);
    }
}

/// Serves rounds of 8 large READs (256 KiB each), each round made available
/// with one kick, on one request queue; returns how many threads served
/// requests in all. Every reply is checked.
fn large_read_batches(bulk_helper: bool) -> usize {
    const READ: usize = 256 * 1024;
    let b = Backend::start_with(avpfs_vhost::VhostOptions {
        tag: "testfs".into(),
        num_request_queues: 1,
        keep_listening_after_disconnect: true,
        // No polling: the worker pops each round whole, after the kick.
        poll_max: std::time::Duration::ZERO,
        bulk_helper,
        ..Default::default()
    });
    let h = b.connect(2);
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    let data = pattern(8 * READ, 3);
    let (entry, open) = c.create(abi::ROOT_ID, "big", 0o644, libc::O_RDWR as u32).unwrap();
    for (i, part) in data.chunks(READ).enumerate() {
        assert_eq!(c.write(entry.nodeid, open.fh, (i * READ) as u64, part).unwrap(), READ as u32);
    }
    for round in 0..5u64 {
        let mut pending = Vec::new();
        let mut chains = Vec::new();
        for i in 0..8u64 {
            let unique = 1000 + round * 10 + i;
            let r = abi::ReadIn { fh: open.fh, offset: i * READ as u64, size: READ as u32, ..Default::default() };
            let req_bytes = request(opcode::READ, unique, entry.nodeid, &[r.as_bytes()]);
            let req = h.alloc(req_bytes.len()).unwrap();
            h.write_guest(req, &req_bytes).unwrap();
            let reply = h.alloc(16 + READ).unwrap();
            chains.push(Chain {
                readable: vec![(req, req_bytes.len() as u32)],
                writable: vec![(reply, (16 + READ) as u32)],
                indirect: false,
            });
            pending.push((unique, reply, i as usize));
        }
        let tokens = h.submit_all(1, &chains).unwrap();
        let used = h.wait_all(&tokens).unwrap();
        for ((unique, reply, i), used) in pending.into_iter().zip(used) {
            let r = Reply::parse(&h.read_guest(reply, used as usize).unwrap()).unwrap();
            assert_eq!(r.header.unique, unique);
            assert!(r.ok().unwrap() == data[i * READ..(i + 1) * READ], "READ {i} of round {round}: data differs");
        }
    }
    c.release(entry.nodeid, open.fh).unwrap();
    b.fs().serving_threads().len()
}

/// A batch of large READs on one queue is split between the queue's worker
/// and its helper thread when the host has a second CPU (and every reply is
/// right); with `bulk_helper` off, the worker serves everything.
#[test]
fn large_reads_of_a_batch_are_shared_with_a_helper_thread() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let with_helper = large_read_batches(true);
    if cpus >= 2 {
        assert_eq!(with_helper, 2, "the worker and its helper should have served the READs");
    } else {
        assert_eq!(with_helper, 1, "one CPU: no helper");
    }
    assert_eq!(large_read_batches(false), 1, "bulk_helper off: the worker alone");
}

/// The threads of this process named `name`.
fn threads_named(name: &str) -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| {
            let tid: i32 = t.ok()?.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            (comm.trim_end() == name).then_some(tid)
        })
        .collect()
}

/// Reads a 1 MiB file 8 times with one READ at a time on queue 5 and checks
/// every reply; returns the CPU time of the queue's bulk helper threads
/// (`None`: there is none).
fn single_large_reads(bulk_helper: bool) -> Option<u64> {
    const QUEUE: usize = 5;
    const SIZE: usize = 1 << 20;
    let b = Backend::start_with(avpfs_vhost::VhostOptions {
        tag: "testfs".into(),
        num_request_queues: QUEUE,
        keep_listening_after_disconnect: true,
        bulk_helper,
        ..Default::default()
    });
    let h = b.connect(QUEUE + 1);
    let c = FuseClient::new(&h, QUEUE);
    c.init().unwrap();
    // Odd-sized, so that the file ends inside the second half of the last READ.
    let data = pattern(3 * SIZE + 12345, 9);
    let (entry, open) = c.create(abi::ROOT_ID, "big", 0o644, libc::O_RDWR as u32).unwrap();
    for (i, part) in data.chunks(256 << 10).enumerate() {
        assert_eq!(c.write(entry.nodeid, open.fh, (i * (256 << 10)) as u64, part).unwrap(), part.len() as u32);
    }
    for round in 0..8usize {
        let off = (round % 4) * SIZE;
        let got = c.read(entry.nodeid, open.fh, off as u64, SIZE as u32).unwrap();
        assert!(got == data[off.min(data.len())..(off + SIZE).min(data.len())], "READ at {off}: data differs");
    }
    // A READ that ends inside the first half, and one past the end.
    let off = data.len() - 1000;
    assert!(c.read(entry.nodeid, open.fh, off as u64, SIZE as u32).unwrap() == data[off..]);
    assert!(c.read(entry.nodeid, open.fh, data.len() as u64, SIZE as u32).unwrap().is_empty());
    let helpers = threads_named(&format!("vq{QUEUE}-bulk"));
    c.release(entry.nodeid, open.fh).unwrap();
    (!helpers.is_empty()).then(|| helpers.iter().map(|&tid| thread_cpu_ns(tid)).sum())
}

/// A large READ that comes alone is split: its queue's worker reads the
/// first half while the worker's helper thread reads the second (when the
/// host has a second CPU). Every reply is whole, short ones included; with
/// `bulk_helper` off there is no helper.
#[test]
fn a_large_read_alone_is_split_with_the_helper_thread() {
    assert_eq!(single_large_reads(false), None, "bulk_helper off: no helper thread");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let helper_cpu = single_large_reads(true);
    if cpus >= 2 {
        assert!(helper_cpu.is_some_and(|ns| ns > 0), "the helper should have read the second halves");
    } else {
        assert_eq!(helper_cpu, None, "one CPU: no helper");
    }
}

/// Nanoseconds thread `tid` of this process has run (from its schedstat).
fn thread_cpu_ns(tid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

/// After a reply, a request queue's worker watches its ring (and so runs)
/// for its polling window; the hiprio queue's worker, whose FORGETs nobody
/// waits for, goes to sleep at once. The window is 400 ms here so that the
/// two differ by far more than any scheduling noise.
#[test]
fn only_request_queue_workers_poll() {
    let b = Backend::start_with(avpfs_vhost::VhostOptions {
        tag: "testfs".into(),
        num_request_queues: 1,
        keep_listening_after_disconnect: true,
        poll_max: std::time::Duration::from_millis(400),
        ..Default::default()
    });
    b.fs().add_file("f", b"x");
    let h = b.connect(2);
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    let window = std::time::Duration::from_millis(250);

    let node = c.lookup(abi::ROOT_ID, "f").unwrap().nodeid;
    let worker = b.fs().lookup_tid();
    let before = thread_cpu_ns(worker);
    std::thread::sleep(window);
    let request_worker_ran = thread_cpu_ns(worker) - before;
    assert!(
        request_worker_ran > 60_000_000,
        "the request queue's worker ran {request_worker_ran} ns in its 400 ms window: it does not poll"
    );

    // Let the request worker's window run out, then FORGET on hiprio.
    std::thread::sleep(std::time::Duration::from_millis(200));
    c.forget(node, 1).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while b.fs().lookups() != 0 {
        assert!(std::time::Instant::now() < deadline, "FORGET not served");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let hiprio = b.fs().forget_tid();
    assert_ne!(hiprio, worker, "FORGET should be served by the hiprio queue's worker");
    let before = thread_cpu_ns(hiprio);
    std::thread::sleep(window);
    let hiprio_ran = thread_cpu_ns(hiprio) - before;
    assert!(hiprio_ran < 20_000_000, "the hiprio worker ran {hiprio_ran} ns after a FORGET: it polls");
}

/// FORGETs that reach the hiprio queue while its worker lets them gather
/// (300 ms here, far above any scheduling noise) are served together: the
/// driver kicks once, for the first, and the device signals once, for all.
/// Served as they come, 50 ms apart, each would take a kick and a signal.
/// Each FORGET takes 1 ms to serve here, so a worker that signalled within
/// a long batch, as request queues do, would signal more than once.
#[test]
fn forgets_gather_for_one_kick_and_one_signal() {
    let b = Backend::start_with(avpfs_vhost::VhostOptions {
        tag: "testfs".into(),
        num_request_queues: 1,
        keep_listening_after_disconnect: true,
        forget_batch: std::time::Duration::from_millis(300),
        ..Default::default()
    });
    let names = ["a", "b", "c"];
    for n in names {
        b.fs().add_file(n, b"x");
    }
    b.fs().set_forget_delay(std::time::Duration::from_millis(1));
    let h = b.connect(2);
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    let nodes: Vec<u64> = names.iter().map(|n| c.lookup(abi::ROOT_ID, n).unwrap().nodeid).collect();
    assert_eq!(b.fs().lookups(), 3);

    let hiprio = avpfs_vhost::backend::HIPRIO_QUEUE;
    let before = h.notifications(hiprio).unwrap();
    let mut tokens = Vec::new();
    for (i, &node) in nodes.iter().enumerate() {
        if i > 0 {
            // Ample time for a worker that serves at once to answer the last one.
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let body = abi::ForgetIn { nlookup: 1 };
        let req = request(opcode::FORGET, 100 + i as u64, node, &[body.as_bytes()]);
        let addr = h.alloc(req.len()).unwrap();
        h.write_guest(addr, &req).unwrap();
        let chain = Chain { readable: vec![(addr, req.len() as u32)], writable: vec![], indirect: false };
        tokens.push(h.submit(hiprio, &chain).unwrap());
    }
    for t in tokens {
        assert_eq!(h.wait(t).unwrap(), 0, "a FORGET has no reply");
    }
    assert_eq!(b.fs().lookups(), 0, "every FORGET was served");
    let after = h.notifications(hiprio).unwrap();
    assert_eq!(after.kicks - before.kicks, 1, "kicks for three FORGETs that gathered");
    assert_eq!(after.signals - before.signals, 1, "signals for three FORGETs that gathered");
}
