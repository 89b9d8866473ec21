//! Blocking lock waits (SETLKW) over a virtqueue, on the real passthrough:
//! the wait must not stall its queue, since the unlock that ends it may be
//! the next request on the same queue; an INTERRUPT on the hiprio queue ends
//! it with EINTR.

use std::sync::Arc;
use std::time::Duration;

use avpfs_passthrough::{Config, PassthroughFs};
use avpfs_server::Server;
use avpfs_vhost::{VhostDaemon, VhostOptions};
use fuse_abi::{self as abi, opcode};
use vhost_harness::fuse::{request, FuseClient, Reply};
use vhost_harness::{Harness, HarnessConfig, Submitted};
use zerocopy::IntoBytes;

struct Passthrough {
    _dir: tempfile::TempDir,
    harness: Harness,
    stopper: avpfs_vhost::Stopper,
    thread: Option<std::thread::JoinHandle<Result<(), avpfs_vhost::Error>>>,
}

impl Drop for Passthrough {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start() -> Passthrough {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("f"), b"locked").unwrap();
    let fs = PassthroughFs::new(Config::new(&share)).unwrap();
    let socket = dir.path().join("sock");
    let options = VhostOptions { num_request_queues: 1, ..Default::default() };
    let daemon = VhostDaemon::new(socket.as_path(), Arc::new(Server::new(fs)), options).unwrap();
    let stopper = daemon.stopper();
    let thread = Some(std::thread::spawn(move || daemon.run()));
    let harness = Harness::connect(&socket, HarnessConfig { num_queues: 2, ..Default::default() }).unwrap();
    Passthrough { _dir: dir, harness, stopper, thread }
}

fn lk(fh: u64, owner: u64, typ: i32) -> abi::LkIn {
    abi::LkIn {
        fh,
        owner,
        lk: abi::FileLock { start: 0, end: u64::MAX, typ: typ as u32, pid: owner as u32 },
        lk_flags: 0,
        padding: 0,
    }
}

/// Submits a SETLKW on queue 1 without waiting for it.
fn submit_setlkw(h: &Harness, unique: u64, node: u64, l: &abi::LkIn) -> Submitted {
    h.submit_request(1, &request(opcode::SETLKW, unique, node, &[l.as_bytes()]), 64).unwrap()
}

#[test]
fn setlkw_waits_without_stalling_its_queue() {
    let p = start();
    let c = FuseClient::new(&p.harness, 1);
    c.init().unwrap();
    let node = c.lookup(1, "f").unwrap().nodeid;
    let a = c.open(node, libc::O_RDWR as u32).unwrap().fh;
    let b = c.open(node, libc::O_RDWR as u32).unwrap().fh;
    // Owner 1 holds a write lock.
    let r = c.call(&request(opcode::SETLK, c.next_unique(), node, &[lk(a, 1, libc::F_WRLCK).as_bytes()]), 64).unwrap();
    assert_eq!(r.errno(), None);
    // Owner 2 waits for it on the same queue.
    let waiting = submit_setlkw(&p.harness, 1 << 32, node, &lk(b, 2, libc::F_WRLCK));
    std::thread::sleep(Duration::from_millis(100));
    // The queue still answers: a read, then owner 1's unlock.
    assert_eq!(c.read(node, a, 0, 6).unwrap(), b"locked");
    let r = c.call(&request(opcode::SETLK, c.next_unique(), node, &[lk(a, 1, libc::F_UNLCK).as_bytes()]), 64).unwrap();
    assert_eq!(r.errno(), None);
    // Now the waiter is granted.
    let reply = p.harness.reply_within(&waiting, Duration::from_secs(10)).unwrap().expect("the SETLKW's reply");
    let reply = Reply::parse(&reply).unwrap();
    assert_eq!(reply.errno(), None, "SETLKW granted after the unlock");
    // And owner 1 now conflicts with owner 2.
    let r = c.call(&request(opcode::SETLK, c.next_unique(), node, &[lk(a, 1, libc::F_WRLCK).as_bytes()]), 64).unwrap();
    assert_eq!(r.errno(), Some(libc::EAGAIN));
}

#[test]
fn interrupt_ends_a_lock_wait_with_eintr() {
    let p = start();
    let c = FuseClient::new(&p.harness, 1);
    c.init().unwrap();
    let node = c.lookup(1, "f").unwrap().nodeid;
    let a = c.open(node, libc::O_RDWR as u32).unwrap().fh;
    let b = c.open(node, libc::O_RDWR as u32).unwrap().fh;
    let r = c.call(&request(opcode::SETLK, c.next_unique(), node, &[lk(a, 1, libc::F_WRLCK).as_bytes()]), 64).unwrap();
    assert_eq!(r.errno(), None);
    let waiter = 7 << 32;
    let waiting = submit_setlkw(&p.harness, waiter, node, &lk(b, 2, libc::F_WRLCK));
    // INTERRUPT goes on the hiprio queue and takes no reply; repeat until the
    // waiter is inside its wait and answers.
    let interrupt = request(opcode::INTERRUPT, c.next_unique(), 0, &[abi::InterruptIn { unique: waiter }.as_bytes()]);
    let reply = loop {
        p.harness.request(0, &interrupt, 0).unwrap();
        if let Some(reply) = p.harness.reply_within(&waiting, Duration::from_millis(50)).unwrap() {
            break reply;
        }
    };
    let reply = Reply::parse(&reply).unwrap();
    assert_eq!(reply.errno(), Some(libc::EINTR));
}
