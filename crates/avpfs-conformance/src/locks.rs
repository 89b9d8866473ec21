//! Locks between two processes: POSIX record locks (fcntl), open file
//! description locks and flock.
//!
//! The processes agree on each step through pipes, never through sleeps.
//! A blocking wait is verified twice: the parent sees the child asleep
//! inside the system call (`/proc/PID/syscall`) before it releases, and
//! both write to one ordering log, which must read
//! `child:blocking, parent:releasing, child:acquired`.

use std::fs::File;

use libc::{F_GETLK, F_OFD_GETLK, F_OFD_SETLK, F_RDLCK, F_SETLK, F_SETLKW, F_UNLCK, F_WRLCK};
use libc::{LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN, O_RDWR};

use crate::proc::{Chan, Child};
use crate::recorder::{Flow, Outcome, Stop};
use crate::sys::{self, LockInfo};
use crate::{case, Case, Env};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("locks.posix_conflict", false, posix_conflict),
        case!("locks.posix_setlkw_wait", false, posix_setlkw_wait),
        case!("locks.posix_close_releases", false, posix_close_releases),
        case!("locks.posix_ranges", false, posix_ranges),
        case!("locks.ofd", false, ofd),
        case!("locks.flock_conflict", false, flock_conflict),
        case!("locks.flock_wait_unlock", false, flock_wait_unlock),
        case!("locks.flock_wait_close", false, flock_wait_close),
    ]
}

fn spawn(env: &Env, o: &mut Outcome, f: impl FnOnce(&Chan, &mut Outcome)) -> Result<Child, Stop> {
    let r = env.spawn(f);
    o.need("fork", r)
}

/// Parent side: waits for `msg`, recording only a failure.
fn wait(o: &mut Outcome, child: &mut Child, msg: &str) {
    if let Err(e) = child.expect_msg(msg) {
        o.raw(format!("wait for {msg}"), e);
    }
}

/// Child side: waits for `msg`, recording only a failure.
fn cwait(o: &mut Outcome, chan: &Chan, msg: &str) {
    match chan.recv() {
        Ok(m) if m == msg => {}
        Ok(m) => o.raw(format!("wait for {msg}"), format!("got {m:?}")),
        Err(e) => o.raw(format!("wait for {msg}"), crate::error_name(&e)),
    }
}

fn show(l: LockInfo, holder: i32) -> String {
    if l.kind == "F_UNLCK" {
        "F_UNLCK".to_string()
    } else {
        format!("{} start={} len={} pid_is_holder={}", l.kind, l.start, l.len, l.pid == holder)
    }
}

fn getppid() -> i32 {
    std::os::unix::process::parent_id() as i32
}

fn create(env: &Env, o: &mut Outcome) -> Result<File, Stop> {
    o.need("create lk", env.d.write_file("lk", &[b'l'; 1000]))?;
    o.need("open lk", env.d.open("lk", O_RDWR, 0))
}

fn posix_conflict(env: &Env, o: &mut Outcome) -> Flow {
    let f = create(env, o)?;
    let d = &env.d;
    let mut child = spawn(env, o, |chan, o| {
        cwait(o, chan, "locked");
        let Ok(g) = d.open("lk", O_RDWR, 0) else {
            o.raw("open", "failed");
            return;
        };
        let pp = getppid();
        o.step("F_SETLK W [50,60) over parent's W", sys::setlk(&g, F_SETLK, F_WRLCK, 50, 10));
        o.step("F_SETLK R [0,10) over parent's W", sys::setlk(&g, F_SETLK, F_RDLCK, 0, 10));
        o.step("F_SETLK W [100,200) free", sys::setlk(&g, F_SETLK, F_WRLCK, 100, 100));
        o.step("F_GETLK W [0,1000)", sys::getlk(&g, F_GETLK, F_WRLCK, 0, 1000).map(|l| show(l, pp)));
        o.step("F_GETLK R [300,310) vs parent's R", sys::getlk(&g, F_GETLK, F_RDLCK, 300, 10).map(|l| show(l, pp)));
        o.step("F_SETLK R [300,310) shared", sys::setlk(&g, F_SETLK, F_RDLCK, 300, 10));
        o.step("F_SETLK W [350,360) over parent's R", sys::setlk(&g, F_SETLK, F_WRLCK, 350, 10));
        o.step("F_GETLK W [350,360)", sys::getlk(&g, F_GETLK, F_WRLCK, 350, 10).map(|l| show(l, pp)));
        o.step("F_GETLK W [120,130) own lock", sys::getlk(&g, F_GETLK, F_WRLCK, 120, 10).map(|l| show(l, pp)));
        chan.send("checked");
        cwait(o, chan, "unlocked");
        o.step("F_SETLK W [50,60) after unlock", sys::setlk(&g, F_SETLK, F_WRLCK, 50, 10));
        chan.send("done");
        cwait(o, chan, "exit");
    })?;
    o.step("F_SETLK W [0,100)", sys::setlk(&f, F_SETLK, F_WRLCK, 0, 100));
    o.step("F_SETLK R [300,400)", sys::setlk(&f, F_SETLK, F_RDLCK, 300, 100));
    child.send("locked");
    wait(o, &mut child, "checked");
    let cp = child.pid();
    o.step("F_GETLK W [100,200) sees child's W", sys::getlk(&f, F_GETLK, F_WRLCK, 100, 100).map(|l| show(l, cp)));
    o.step("unlock [0,100)", sys::setlk(&f, F_SETLK, F_UNLCK, 0, 100));
    child.send("unlocked");
    wait(o, &mut child, "done");
    o.step("F_GETLK W [0,100) sees child's [50,60)", sys::getlk(&f, F_GETLK, F_WRLCK, 0, 100).map(|l| show(l, cp)));
    o.step("F_SETLK W [55,56) conflicts", sys::setlk(&f, F_SETLK, F_WRLCK, 55, 1));
    child.send("exit");
    o.merge("child: ", child.join());
    o.step("F_GETLK W [0,1000) after child exit", sys::getlk(&f, F_GETLK, F_WRLCK, 0, 1000).map(|l| show(l, cp)));
    Ok(())
}

fn posix_setlkw_wait(env: &Env, o: &mut Outcome) -> Flow {
    let f = create(env, o)?;
    let d = &env.d;
    o.step("F_SETLK W [0,10)", sys::setlk(&f, F_SETLK, F_WRLCK, 0, 10));
    let mut child = spawn(env, o, |chan, o| {
        let Ok(g) = d.open("lk", O_RDWR, 0) else {
            o.raw("open", "failed");
            return;
        };
        o.step("F_SETLK W [5,6) busy", sys::setlk(&g, F_SETLK, F_WRLCK, 5, 1));
        chan.log("blocking");
        chan.send("blocking");
        let r = sys::setlk(&g, F_SETLKW, F_WRLCK, 0, 10);
        chan.log("acquired");
        o.step("F_SETLKW W [0,10)", r);
        chan.send("got");
        cwait(o, chan, "exit");
    })?;
    wait(o, &mut child, "blocking");
    o.val("child blocked in fcntl", child.wait_blocked_in(libc::SYS_fcntl));
    child.log("releasing");
    o.step("unlock", sys::setlk(&f, F_SETLK, F_UNLCK, 0, 10));
    wait(o, &mut child, "got");
    let cp = child.pid();
    o.step("F_GETLK sees child's lock", sys::getlk(&f, F_GETLK, F_WRLCK, 0, 10).map(|l| show(l, cp)));
    o.step("F_SETLK now conflicts", sys::setlk(&f, F_SETLK, F_WRLCK, 0, 10));
    child.send("exit");
    let order = child.order();
    o.merge("child: ", child.join());
    o.val("order", order);
    Ok(())
}

fn posix_close_releases(env: &Env, o: &mut Outcome) -> Flow {
    let f = create(env, o)?;
    let d = &env.d;
    let mut child = spawn(env, o, |chan, o| {
        let Ok(g) = d.open("lk", O_RDWR, 0) else {
            o.raw("open", "failed");
            return;
        };
        cwait(o, chan, "locked");
        o.step("F_SETLK W while parent holds it", sys::setlk(&g, F_SETLK, F_WRLCK, 0, 100));
        chan.send("c1");
        cwait(o, chan, "closed");
        o.step(
            "F_GETLK after parent closed another fd",
            sys::getlk(&g, F_GETLK, F_WRLCK, 0, 100).map(|l| show(l, getppid())),
        );
        o.step("F_SETLK W now free", sys::setlk(&g, F_SETLK, F_WRLCK, 0, 100));
        chan.send("c2");
        cwait(o, chan, "exit");
    })?;
    o.step("F_SETLK W [0,100) on fd 1", sys::setlk(&f, F_SETLK, F_WRLCK, 0, 100));
    child.send("locked");
    wait(o, &mut child, "c1");
    let f2 = o.need("open lk as fd 2", env.d.open("lk", libc::O_RDONLY, 0))?;
    o.step("read on fd 2", sys::pread(&f2, 0, 4).map(|v| v.len()));
    drop(f2);
    child.send("closed");
    wait(o, &mut child, "c2");
    let cp = child.pid();
    o.step("F_GETLK sees child's lock", sys::getlk(&f, F_GETLK, F_WRLCK, 0, 100).map(|l| show(l, cp)));
    child.send("exit");
    o.merge("child: ", child.join());
    o.step("F_GETLK after child exit", sys::getlk(&f, F_GETLK, F_WRLCK, 0, 100).map(|l| show(l, cp)));
    o.step("F_SETLK W after child exit", sys::setlk(&f, F_SETLK, F_WRLCK, 0, 100));
    Ok(())
}

fn posix_ranges(env: &Env, o: &mut Outcome) -> Flow {
    let f = create(env, o)?;
    let d = &env.d;
    o.step("W [0,100)", sys::setlk(&f, F_SETLK, F_WRLCK, 0, 100));
    o.step("unlock [40,60) splits it", sys::setlk(&f, F_SETLK, F_UNLCK, 40, 20));
    o.step("R [200,300)", sys::setlk(&f, F_SETLK, F_RDLCK, 200, 100));
    o.step("W [250,260) upgrades a part", sys::setlk(&f, F_SETLK, F_WRLCK, 250, 10));
    o.step("W from 1000 to EOF (len 0)", sys::setlk(&f, F_SETLK, F_WRLCK, 1000, 0));
    o.step("W [590,600) via negative len", sys::setlk(&f, F_SETLK, F_WRLCK, 600, -10));
    o.step("negative start", sys::setlk(&f, F_SETLK, F_WRLCK, -5, 1));
    o.step("bad type", sys::setlk(&f, F_SETLK, 77, 0, 1));
    let mut child = spawn(env, o, |chan, o| {
        let Ok(g) = d.open("lk", O_RDWR, 0) else {
            o.raw("open", "failed");
            return;
        };
        let pp = getppid();
        for (label, kind, start, len) in [
            ("W [0,100)", F_WRLCK, 0, 100),
            ("W [40,60)", F_WRLCK, 40, 20),
            ("W [45,100)", F_WRLCK, 45, 55),
            ("R [200,300)", F_RDLCK, 200, 100),
            ("W [200,250)", F_WRLCK, 200, 50),
            ("R [260,300)", F_RDLCK, 260, 40),
            ("W [5000,5001)", F_WRLCK, 5000, 1),
            ("W [1 << 40, +1)", F_WRLCK, 1 << 40, 1),
            ("W [580,590)", F_WRLCK, 580, 10),
            ("W [595,596)", F_WRLCK, 595, 1),
        ] {
            o.step(&format!("F_GETLK {label}"), sys::getlk(&g, F_GETLK, kind, start, len).map(|l| show(l, pp)));
        }
        o.step("F_GETLK with F_UNLCK type", sys::getlk(&g, F_GETLK, F_UNLCK, 0, 10).map(|l| show(l, pp)));
        chan.send("done");
    })?;
    wait(o, &mut child, "done");
    o.merge("child: ", child.join());
    Ok(())
}

fn ofd(env: &Env, o: &mut Outcome) -> Flow {
    let f = create(env, o)?;
    let g = o.need("open second fd", env.d.open("lk", O_RDWR, 0))?;
    let me = sys::getpid();
    o.step("OFD W [0,10) on fd 1", sys::setlk(&f, F_OFD_SETLK, F_WRLCK, 0, 10));
    o.step("OFD W [0,10) on fd 2", sys::setlk(&g, F_OFD_SETLK, F_WRLCK, 0, 10));
    o.step(
        "OFD GETLK on fd 2",
        sys::getlk(&g, F_OFD_GETLK, F_WRLCK, 0, 10).map(|l| {
            format!(
                "{} start={} len={} pid={}",
                l.kind,
                l.start,
                l.len,
                if l.pid == me { "self".to_string() } else { l.pid.to_string() }
            )
        }),
    );
    o.step("OFD GETLK on fd 1 (own)", sys::getlk(&f, F_OFD_GETLK, F_WRLCK, 0, 10).map(|l| l.kind));
    o.step("classic F_SETLK on fd 2", sys::setlk(&g, F_SETLK, F_WRLCK, 0, 10));
    o.step("OFD R [20,30) on fd 2", sys::setlk(&g, F_OFD_SETLK, F_RDLCK, 20, 10));
    o.step("OFD R [20,30) on fd 1 shared", sys::setlk(&f, F_OFD_SETLK, F_RDLCK, 20, 10));
    drop(f);
    // A FUSE client sends RELEASE (which drops the description's OFD locks)
    // asynchronously after close(2) returns, so the lock may linger briefly:
    // it must be gone within a bounded wait, never stay.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let after_close = loop {
        let r = sys::setlk(&g, F_OFD_SETLK, F_WRLCK, 0, 10);
        let busy = matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EAGAIN));
        if !busy || std::time::Instant::now() >= deadline {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    o.step("OFD W [0,10) on fd 2 after fd 1 closed", after_close);
    Ok(())
}

fn flock_conflict(env: &Env, o: &mut Outcome) -> Flow {
    o.need("create lk", env.d.write_file("lk", b"lock"))?;
    let d = &env.d;
    // Fork before the parent opens the file, so that the child holds no
    // copy of the parent's open file description.
    let mut child = spawn(env, o, |chan, o| {
        let Ok(g) = d.open("lk", O_RDWR, 0) else {
            o.raw("open", "failed");
            return;
        };
        cwait(o, chan, "ex");
        o.step("LOCK_EX|LOCK_NB vs EX", sys::flock(&g, LOCK_EX | LOCK_NB));
        o.step("LOCK_SH|LOCK_NB vs EX", sys::flock(&g, LOCK_SH | LOCK_NB));
        chan.send("c1");
        cwait(o, chan, "sh");
        o.step("LOCK_SH|LOCK_NB vs SH", sys::flock(&g, LOCK_SH | LOCK_NB));
        o.step("upgrade LOCK_EX|LOCK_NB vs SH", sys::flock(&g, LOCK_EX | LOCK_NB));
        o.step("LOCK_UN", sys::flock(&g, LOCK_UN));
        chan.send("c2");
        cwait(o, chan, "exit");
    })?;
    let f = o.need("open lk", env.d.open("lk", O_RDWR, 0))?;
    o.step("LOCK_EX", sys::flock(&f, LOCK_EX));
    let f2 = o.need("open lk again", env.d.open("lk", O_RDWR, 0))?;
    o.step("LOCK_EX|LOCK_NB on another fd, same process", sys::flock(&f2, LOCK_EX | LOCK_NB));
    let dup = o.need("dup fd", f.try_clone())?;
    o.step("LOCK_EX|LOCK_NB on a dup (same description)", sys::flock(&dup, LOCK_EX | LOCK_NB));
    child.send("ex");
    wait(o, &mut child, "c1");
    o.step("downgrade to LOCK_SH", sys::flock(&f, LOCK_SH));
    child.send("sh");
    wait(o, &mut child, "c2");
    o.step("LOCK_EX|LOCK_NB after child unlocked", sys::flock(&f, LOCK_EX | LOCK_NB));
    o.step("bad operation", sys::flock(&f, 0));
    child.send("exit");
    o.merge("child: ", child.join());
    Ok(())
}

fn flock_wait(env: &Env, o: &mut Outcome, by_close: bool) -> Flow {
    o.need("create lk", env.d.write_file("lk", b"lock"))?;
    let d = &env.d;
    let mut child = spawn(env, o, |chan, o| {
        let Ok(g) = d.open("lk", O_RDWR, 0) else {
            o.raw("open", "failed");
            return;
        };
        cwait(o, chan, "locked");
        o.step("LOCK_EX|LOCK_NB busy", sys::flock(&g, LOCK_EX | LOCK_NB));
        chan.log("blocking");
        chan.send("blocking");
        let r = sys::flock(&g, LOCK_EX);
        chan.log("acquired");
        o.step("LOCK_EX (blocking)", r);
        chan.send("got");
        cwait(o, chan, "exit");
    })?;
    let f = o.need("open lk", env.d.open("lk", O_RDWR, 0))?;
    o.step("LOCK_EX", sys::flock(&f, LOCK_EX));
    child.send("locked");
    wait(o, &mut child, "blocking");
    o.val("child blocked in flock", child.wait_blocked_in(libc::SYS_flock));
    child.log("releasing");
    if by_close {
        drop(f);
        o.raw("close", "done");
    } else {
        o.step("LOCK_UN", sys::flock(&f, LOCK_UN));
    }
    wait(o, &mut child, "got");
    let g = o.need("open lk again", env.d.open("lk", O_RDWR, 0))?;
    o.step("LOCK_SH|LOCK_NB vs child's EX", sys::flock(&g, LOCK_SH | LOCK_NB));
    child.send("exit");
    let order = child.order();
    o.merge("child: ", child.join());
    o.val("order", order);
    o.step("LOCK_EX|LOCK_NB after child exit", flock_once_free(&g));
    Ok(())
}

/// `flock(LOCK_EX | LOCK_NB)` on `f` after another process's last
/// descriptor holding the lock was closed. A local file system frees the
/// lock at the close; a FUSE client sends the unlock with RELEASE, which the
/// kernel queues without waiting for it, so the server may see this request
/// first. Tries again on EAGAIN for up to 2 s: a lock that is never freed
/// still fails.
fn flock_once_free(f: &std::fs::File) -> std::io::Result<()> {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sys::flock(f, LOCK_EX | LOCK_NB) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && std::time::Instant::now() < give_up => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

fn flock_wait_unlock(env: &Env, o: &mut Outcome) -> Flow {
    flock_wait(env, o, false)
}

fn flock_wait_close(env: &Env, o: &mut Outcome) -> Flow {
    flock_wait(env, o, true)
}
