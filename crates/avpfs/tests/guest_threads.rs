//! Threads per guest of one `avpfs --config` process (issue 20): a guest
//! that connects with one request queue adds exactly its connection's
//! thread and one worker per queue (the hiprio queue and the request
//! queue), and those threads end when it disconnects. No timing and no
//! memory figure is asserted: only thread counts and names, read from
//! /proc of the serving process (the sandbox supervisor's child).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vhost_harness::fuse::FuseClient;
use vhost_harness::Harness;

/// Guests in the configuration.
const GUESTS: usize = 4;

/// Threads one connected guest with one request queue adds: the
/// vhost-user connection's thread (`avpfs-vhost`, which reads the front
/// end's messages) and one `vring_worker` per queue (hiprio + 1 request).
const THREADS_PER_CONNECTED_GUEST: usize = 1 + 2;

/// A running `avpfs --config` with [`GUESTS`] guests; stopped on drop.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the daemon (default sandbox and seccomp) and waits for every
    /// guest's socket.
    fn start() -> Daemon {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let share = dir.path().join("share");
        std::fs::create_dir(&share).unwrap();
        std::fs::write(share.join("f"), "x").unwrap();
        let mut config = format!("[[share]]\nname = \"data\"\nshared_dir = \"{}\"\n", share.display());
        for g in 0..GUESTS {
            config += &format!(
                "\n[[guest]]\nname = \"vm{g}\"\nsocket_path = \"vm{g}.sock\"\nshare = \"data\"\nrequest_queues = 1\n"
            );
        }
        let file = dir.path().join("avpfs.toml");
        std::fs::write(&file, config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_avpfs"))
            .arg("--config")
            .arg(&file)
            .env("AVPFS_LOG", std::env::var("AVPFS_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .spawn()
            .expect("start avpfs");
        let mut d = Daemon { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(0..GUESTS).all(|g| d.socket(g).exists()) {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("avpfs exited before listening: {status}");
            }
            assert!(Instant::now() < deadline, "avpfs did not listen in 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn socket(&self, guest: usize) -> PathBuf {
        self.dir.path().join(format!("vm{guest}.sock"))
    }

    /// Connects guest `guest` with one request queue and sends INIT.
    fn connect(&self, guest: usize) -> Harness {
        let h = Harness::start(self.socket(guest), 2).unwrap();
        FuseClient::new(&h, 1).init().unwrap();
        FuseClient::new(&h, 1).lookup(1, "f").unwrap();
        h
    }

    /// The process that serves: the supervisor's only child (namespace
    /// sandbox), or the process itself when it has none.
    fn serving_pid(&self) -> u32 {
        let launched = self.child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let children =
                std::fs::read_to_string(format!("/proc/{launched}/task/{launched}/children")).unwrap_or_default();
            let children: Vec<u32> = children.split_whitespace().filter_map(|p| p.parse().ok()).collect();
            match children[..] {
                [one] => return one,
                [] if Instant::now() > deadline => return launched,
                [] => std::thread::sleep(Duration::from_millis(20)),
                _ => panic!("{launched} has several children: {children:?}"),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = avpfs_sys::process::kill(self.child.id() as i32, libc::SIGTERM);
        let _ = self.child.wait();
    }
}

/// The threads of `pid`, counted by name.
fn threads(pid: u32) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        // A thread may end between the listing and the read.
        if let Ok(comm) = std::fs::read_to_string(task.unwrap().path().join("comm")) {
            *names.entry(comm.trim().to_string()).or_insert(0) += 1;
        }
    }
    names
}

fn total(names: &BTreeMap<String, usize>) -> usize {
    names.values().sum()
}

/// The threads of `pid` once they have stopped changing for 300 ms (the
/// daemon starts and ends threads a little after the front end's last
/// message), within 10 s.
fn settled_threads(pid: u32) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = threads(pid);
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(300) {
        assert!(Instant::now() < deadline, "the threads of {pid} keep changing: {last:?}");
        std::thread::sleep(Duration::from_millis(20));
        let now = threads(pid);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

/// `after` minus `before`, per name, for the failure messages.
fn added(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>) -> BTreeMap<String, i64> {
    let mut d = BTreeMap::new();
    for name in before.keys().chain(after.keys()) {
        let n = *after.get(name).unwrap_or(&0) as i64 - *before.get(name).unwrap_or(&0) as i64;
        if n != 0 {
            d.insert(name.clone(), n);
        }
    }
    d
}

#[test]
fn each_idle_guest_adds_only_its_queue_threads_and_they_end_with_it() {
    let d = Daemon::start();
    let pid = d.serving_pid();
    assert!(Path::new(&format!("/proc/{pid}/task")).exists());
    let listening = settled_threads(pid);
    for g in 0..GUESTS {
        assert_eq!(listening.get(&format!("guest-vm{g}")), Some(&1), "each configured guest's accept thread");
    }

    let first = d.connect(0);
    let one = settled_threads(pid);
    assert_eq!(
        total(&one),
        total(&listening) + THREADS_PER_CONNECTED_GUEST,
        "one connected guest (1 request queue) adds {:?}",
        added(&listening, &one)
    );
    assert_eq!(one.get("vring_worker"), Some(&2), "a worker for the hiprio queue and one for the request queue");

    let others: Vec<Harness> = (1..GUESTS).map(|g| d.connect(g)).collect();
    let all = settled_threads(pid);
    assert_eq!(
        total(&all),
        total(&one) + (GUESTS - 1) * THREADS_PER_CONNECTED_GUEST,
        "{} more guests add {:?}",
        GUESTS - 1,
        added(&one, &all)
    );
    let mut expected = one.clone();
    for (name, n) in added(&listening, &one) {
        *expected.entry(name).or_insert(0) += (GUESTS - 1) * n as usize;
    }
    assert_eq!(all, expected, "every guest adds threads of the same names");

    // The extra guests leave: their threads end, the first guest's stay.
    for h in others {
        h.disconnect();
    }
    let back_to_one = settled_threads(pid);
    assert_eq!(back_to_one, one, "threads left behind by the guests that left: {:?}", added(&one, &back_to_one));

    // And the last one: back to the listening daemon's threads.
    first.disconnect();
    let back = settled_threads(pid);
    assert_eq!(back, listening, "threads left behind: {:?}", added(&listening, &back));

    // A guest that comes back gets the same threads again.
    let again = d.connect(0);
    assert_eq!(settled_threads(pid), one);
    drop(again);
}
