//! Resource exhaustion by a guest: the policy's node and open-file limits,
//! the daemon process's descriptor limit, and a flood of requests on every
//! queue. Each limit is an errno, never a crash; freeing (FORGET, RELEASE)
//! makes room again; memory stays bounded; another guest (another daemon on
//! the same tree, or another queue of the flooded one) keeps its answers.

use std::sync::atomic::{AtomicBool, Ordering};

use avpfs_passthrough::PassthroughFs;
use avpfs_policy::{parse, PolicyFs};
use fuse_abi::{self as abi, opcode};
use vhost_harness::fuse::{name, request, FuseClient, Reply};
use vhost_harness::{Harness, HarnessConfig, Token};
use vm_memory::GuestAddress;
use zerocopy::IntoBytes;

use crate::share::{child_daemon_main, passthrough_config, serve_share, ChildDaemon, Guest, Served, Tree};

/// The daemon process the tests below start (see [`ChildDaemon`]): does
/// nothing unless started by one of them.
#[test]
#[ignore = "the child daemon of the exhaustion tests; they start it themselves"]
fn child_daemon() {
    child_daemon_main();
}

fn policy_share(tree: &Tree, policy: &str) -> Served<PolicyFs<PassthroughFs>> {
    let inner = PassthroughFs::new(passthrough_config(&tree.share)).unwrap();
    Served::start(PolicyFs::new(inner, parse(policy).unwrap()), 1)
}

fn files(tree: &Tree, n: usize) {
    for i in 0..n {
        std::fs::write(tree.share.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
}

#[test]
fn lookups_past_max_inodes_are_enfile_until_forgotten() {
    const MAX: usize = 16;
    let tree = Tree::new();
    files(&tree, 40);
    let a = policy_share(&tree, &format!("[share]\nmax_inodes = {MAX}\n"));
    let ga = Guest::new(&a.harness, 1, &tree);
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..40 {
        match ga.lookup(abi::ROOT_ID, &format!("f{i}")) {
            Ok(e) => held.push(e.nodeid),
            Err(e) => {
                assert_eq!(e, libc::ENFILE, "LOOKUP f{i}");
                refused += 1;
            }
        }
    }
    assert_eq!((held.len(), refused), (MAX, 40 - MAX));
    // Refused lookups leave nothing behind in the passthrough.
    assert_eq!(a.fs().inner().node_count(), MAX + 1);
    // More references to nodes already held are fine; new ones are not.
    assert_eq!(ga.lookup(abi::ROOT_ID, "f0").map(|e| e.nodeid), Ok(held[0]));
    assert_eq!(ga.lookup(abi::ROOT_ID, "dir").unwrap_err(), libc::ENFILE);
    // GETATTR, OPEN and READ of held nodes still work.
    let fh = ga.open(held[3], libc::O_RDONLY).unwrap();
    assert_eq!(ga.read(held[3], fh, 0, 100).unwrap(), b"file 3");
    ga.release(held[3], fh).unwrap();
    assert_eq!(ga.getattr(abi::ROOT_ID).unwrap().mode & libc::S_IFMT, libc::S_IFDIR);

    // Meanwhile guest B, on another daemon over the same tree, is not limited.
    let b = serve_share(&tree);
    let gb = Guest::new(&b.harness, 1, &tree);
    for i in 0..40 {
        let e = gb.lookup(abi::ROOT_ID, &format!("f{i}")).unwrap();
        assert_eq!(e.attr.size, format!("file {i}").len() as u64);
    }
    gb.assert_serving();

    // FORGET frees: one node back, one new lookup; all back, all new ones.
    ga.forget(held[0], 2);
    let e = ga.lookup(abi::ROOT_ID, &format!("f{MAX}")).unwrap();
    assert_eq!(ga.lookup(abi::ROOT_ID, &format!("f{}", MAX + 1)).unwrap_err(), libc::ENFILE);
    ga.forget(e.nodeid, 1);
    for &n in &held[1..] {
        ga.forget(n, 1);
    }
    assert_eq!(a.fs().node_count(), 0);
    for i in 40 - MAX..40 {
        ga.lookup(abi::ROOT_ID, &format!("f{i}")).unwrap();
    }
    assert_eq!(ga.lookup(abi::ROOT_ID, "f0").unwrap_err(), libc::ENFILE);
}

#[test]
fn opens_past_max_open_files_are_emfile_until_released() {
    const MAX: usize = 8;
    let tree = Tree::new();
    let s = policy_share(&tree, &format!("[share]\nmax_open_files = {MAX}\n"));
    let g = Guest::new(&s.harness, 1, &tree);
    let hello = g.lookup(abi::ROOT_ID, "hello").unwrap().nodeid;
    let dir = g.lookup(abi::ROOT_ID, "dir").unwrap().nodeid;
    let mut held: Vec<u64> = (0..MAX).map(|_| g.open(hello, libc::O_RDONLY).unwrap()).collect();
    assert_eq!(g.open(hello, libc::O_RDONLY), Err(libc::EMFILE));
    assert_eq!(g.create(dir, "new", 0o644, libc::O_RDWR), Err(libc::EMFILE));
    assert_eq!(g.errno(opcode::OPENDIR, dir, &[abi::OpenIn::default().as_bytes()]), libc::EMFILE);
    assert!(!tree.share.join("dir/new").exists(), "a refused CREATE made the file");
    assert_eq!(s.fs().inner().handle_count(), MAX);
    // The handles held still work.
    assert_eq!(g.read(hello, held[5], 0, 10).unwrap(), b"hi\n");
    // RELEASE frees one; a bad RELEASE frees nothing.
    assert_eq!(g.release(hello, 0xdead), Err(libc::EBADF));
    assert_eq!(g.open(hello, libc::O_RDONLY), Err(libc::EMFILE));
    g.release(hello, held.pop().unwrap()).unwrap();
    let (e, fh) = g.create(dir, "new", 0o644, libc::O_RDWR).unwrap();
    assert_eq!(g.open(hello, libc::O_RDONLY), Err(libc::EMFILE));
    g.release(e.nodeid, fh).unwrap();
    for fh in held {
        g.release(hello, fh).unwrap();
    }
    assert_eq!(s.fs().open_handle_count(), 0);
    let again: Vec<u64> = (0..MAX).map(|_| g.open(hello, libc::O_RDONLY).unwrap()).collect();
    assert_eq!(again.len(), MAX);
    assert_eq!(g.open(hello, libc::O_RDONLY), Err(libc::EMFILE));
}

/// Without a policy, the daemon's own descriptor limit (256 here) is what a
/// guest can exhaust: every node holds an `O_PATH` descriptor. Past it the
/// guest gets EMFILE for LOOKUP and OPEN, the daemon keeps serving what needs
/// no new descriptor, and FORGET makes room again.
#[test]
fn descriptor_limit_of_the_daemon_is_emfile_and_recoverable() {
    const FILES: usize = 300;
    let tree = Tree::new();
    files(&tree, FILES);
    let mut d = ChildDaemon::start(&tree.share, 1, Some(256));
    {
        let h = Harness::connect(&d.socket, HarnessConfig { num_queues: 2, ..Default::default() }).unwrap();
        FuseClient::new(&h, 1).init().unwrap();
        let g = Guest::new(&h, 1, &tree);
        let mut held = Vec::new();
        let mut refused = 0;
        for i in 0..FILES {
            match g.lookup(abi::ROOT_ID, &format!("f{i}")) {
                Ok(e) => held.push(e.nodeid),
                Err(e) => {
                    assert_eq!(e, libc::EMFILE, "LOOKUP f{i}");
                    refused += 1;
                }
            }
        }
        assert!(refused > 0 && held.len() > 100, "{} held, {refused} refused", held.len());
        // What needs no new descriptor still works.
        assert_eq!(g.getattr(held[7]).map(|a| a.size), Ok(6));
        assert_eq!(g.getattr(abi::ROOT_ID).unwrap().mode & libc::S_IFMT, libc::S_IFDIR);
        g.ok(opcode::STATFS, abi::ROOT_ID, &[]);
        // OPEN needs one.
        assert_eq!(g.open(held[0], libc::O_RDONLY), Err(libc::EMFILE));
        assert!(d.alive());
        // FORGET makes room again.
        for &n in &held[..50] {
            g.forget(n, 1);
        }
        let fh = g.open(held[60], libc::O_RDONLY).unwrap();
        assert_eq!(g.read(held[60], fh, 0, 100).unwrap(), b"file 60");
        g.release(held[60], fh).unwrap();
        let e = g.lookup(abi::ROOT_ID, &format!("f{}", FILES - 1)).unwrap();
        assert_eq!(e.attr.size, format!("file {}", FILES - 1).len() as u64);
        g.assert_serving();
        h.disconnect();
    }
    // The front end left: the daemon ends normally.
    d.assert_exits_cleanly();
}

/// One pre-built request and the reply it expects, in guest memory.
struct Slot {
    req: GuestAddress,
    req_len: u32,
    reply: GuestAddress,
    unique: u64,
}

const REPLY_CAP: u32 = 4096 + 16;

/// The request of flood slot `i`: a mix of LOOKUP, GETATTR, READ and a
/// GETATTR of an unknown node (an error reply).
fn flood_request(i: usize, unique: u64, hello_fh: u64, hello: u64) -> Vec<u8> {
    match i % 4 {
        0 => request(opcode::LOOKUP, unique, abi::ROOT_ID, &[&name("hello")]),
        1 => request(opcode::GETATTR, unique, abi::ROOT_ID, &[abi::GetattrIn::default().as_bytes()]),
        2 => {
            let r = abi::ReadIn { fh: hello_fh, size: 4096, ..Default::default() };
            request(opcode::READ, unique, hello, &[r.as_bytes()])
        }
        _ => request(opcode::GETATTR, unique, 0xdead_0000 + i as u64, &[abi::GetattrIn::default().as_bytes()]),
    }
}

/// Checks the reply of flood slot `i`.
fn check_flood_reply(i: usize, r: &Reply) {
    match i % 4 {
        0 => assert_eq!((r.errno(), r.body.len()), (None, core::mem::size_of::<abi::EntryOut>())),
        1 => assert_eq!((r.errno(), r.body.len()), (None, core::mem::size_of::<abi::AttrOut>())),
        2 => assert_eq!((r.errno(), r.body.as_slice()), (None, &b"hi\n"[..])),
        _ => assert_eq!(r.errno(), Some(libc::ENOENT)),
    }
}

/// Keeps `queue` full (`depth` chains in flight) until `count` requests have
/// been answered; checks every reply. Returns the number answered.
fn flood(h: &Harness, queue: usize, depth: usize, count: usize, hello: u64, hello_fh: u64, base_unique: u64) -> usize {
    let mut slots: Vec<Slot> = (0..depth)
        .map(|_| Slot {
            req: h.alloc(128).unwrap(),
            req_len: 0,
            reply: h.alloc(REPLY_CAP as usize).unwrap(),
            unique: 0,
        })
        .collect();
    let mut p = h.pipeline(queue).unwrap();
    let mut by_head: std::collections::HashMap<u16, usize> = std::collections::HashMap::new();
    let mut sent = 0usize;
    let mut answered = 0usize;
    let mut free: Vec<usize> = (0..depth).collect();
    let mut done: Vec<(Token, u32)> = Vec::new();
    while answered < count {
        while sent < count {
            let Some(s) = free.pop() else { break };
            let unique = base_unique + sent as u64;
            let req = flood_request(sent, unique, hello_fh, hello);
            h.write_guest(slots[s].req, &req).unwrap();
            slots[s].req_len = req.len() as u32;
            slots[s].unique = unique;
            let t = p.push_buffers(&[(slots[s].req.0, slots[s].req_len)], &[(slots[s].reply.0, REPLY_CAP)]).unwrap();
            by_head.insert(t.head(), s);
            sent += 1;
        }
        done.clear();
        p.wait_any(&mut done).unwrap();
        for &(t, used) in &done {
            let s = by_head.remove(&t.head()).expect("a chain returned twice or never sent");
            let r = Reply::parse(&h.read_guest(slots[s].reply, used as usize).unwrap()).unwrap();
            assert_eq!(r.header.unique, slots[s].unique);
            check_flood_reply((slots[s].unique - base_unique) as usize, &r);
            answered += 1;
            free.push(s);
        }
    }
    assert_eq!(p.in_flight(), 0);
    answered
}

/// Every request queue of a daemon (a child process, so that its memory is
/// its own) kept full, 100 000 requests in all: each is answered with the
/// right reply, and the daemon's resident anonymous memory (RssAnon: its
/// heap and stacks; the guest memory it maps is not its own) grows by less than 4 MiB
/// between the first 10 000 and the last 10 000. In the middle, the last
/// queue is left to guest B, whose requests (create, write, read back,
/// lookup) are all answered correctly while the other queue is flooded.
#[test]
fn queue_flood_keeps_memory_bounded_and_every_request_answered() {
    const QUEUES: usize = 2;
    const DEPTH: usize = 512;
    const FIRST: usize = 10_000;
    const MIDDLE: usize = 80_000;
    const LAST: usize = 10_000;
    let tree = Tree::new();
    let mut d = ChildDaemon::start(&tree.share, QUEUES, None);
    let cfg = HarnessConfig { num_queues: QUEUES + 1, queue_size: 1024, memory_size: 64 << 20, ..Default::default() };
    let h = Harness::connect(&d.socket, cfg).unwrap();
    let c = FuseClient::new(&h, 1);
    c.init().unwrap();
    let hello = c.lookup(abi::ROOT_ID, "hello").unwrap().nodeid;
    let fh = c.open(hello, libc::O_RDONLY as u32).unwrap().fh;

    let all_queues = |per_queue: usize, round: u64| -> usize {
        std::thread::scope(|s| {
            let workers: Vec<_> = (1..=QUEUES)
                .map(|q| {
                    let h = &h;
                    s.spawn(move || flood(h, q, DEPTH, per_queue, hello, fh, (round << 40) | ((q as u64) << 32)))
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        })
    };
    let mut answered = all_queues(FIRST / QUEUES, 1);
    let rss_first = d.rss_anon_kib();

    // The middle: queue 1 flooded, guest B on the last queue.
    let flooding = AtomicBool::new(true);
    let b_rounds = std::thread::scope(|s| {
        let a = s.spawn(|| {
            let n = flood(&h, 1, DEPTH, MIDDLE, hello, fh, 2 << 40);
            flooding.store(false, Ordering::Release);
            n
        });
        let gb = Guest::new(&h, QUEUES, &tree);
        let mut rounds = 0;
        while flooding.load(Ordering::Acquire) || rounds < 20 {
            let n = format!("b{rounds}");
            let data = format!("guest B round {rounds}");
            let (e, bfh) = gb.create(abi::ROOT_ID, &n, 0o644, libc::O_RDWR).unwrap();
            let w = abi::WriteIn { fh: bfh, size: data.len() as u32, ..Default::default() };
            gb.ok(opcode::WRITE, e.nodeid, &[w.as_bytes(), data.as_bytes()]);
            assert_eq!(gb.read(e.nodeid, bfh, 0, 100).unwrap(), data.as_bytes());
            gb.release(e.nodeid, bfh).unwrap();
            assert_eq!(gb.lookup(abi::ROOT_ID, &n).map(|l| l.nodeid), Ok(e.nodeid));
            gb.forget(e.nodeid, 2);
            rounds += 1;
        }
        answered += a.join().unwrap();
        rounds
    });
    assert!(b_rounds >= 20);
    for i in 0..b_rounds {
        assert_eq!(std::fs::read(tree.share.join(format!("b{i}"))).unwrap(), format!("guest B round {i}").as_bytes());
    }

    answered += all_queues(LAST / QUEUES, 3);
    let rss_last = d.rss_anon_kib();
    eprintln!("flood: {answered} requests answered, guest B {b_rounds} rounds, RssAnon {rss_first} -> {rss_last} KiB");
    assert_eq!(answered, FIRST + MIDDLE + LAST);
    assert!(
        rss_last < rss_first + 4096,
        "daemon memory grew from {rss_first} KiB to {rss_last} KiB over {} requests",
        MIDDLE + LAST
    );
    assert!(d.alive());
    h.disconnect();
    d.assert_exits_cleanly();
}
