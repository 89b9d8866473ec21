//! Escapes, hostile clients, locks shared with another session, and the
//! policy layer: the server over a real passthrough on a socket pair.

mod common;

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use avpfs_9p::{Error, P9Options};
use avpfs_passthrough::{Config, PassthroughFs, Share};
use avpfs_policy::{config::parse, PolicyFs};
use avpfs_server::{Context, FileSystem, LockOwner, LockRequest, NodeId};
use common::{connect, name, Client, MSIZE};
use fuse_abi::FileLock;
use p9_abi::*;
use tempfile::TempDir;

/// A share at `tmp/share` with `sub/inner`, and `tmp/secret` beside it.
fn tree() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    fs::create_dir_all(share.join("sub")).unwrap();
    fs::write(share.join("sub/inner"), b"inner").unwrap();
    fs::write(tmp.path().join("secret"), b"secret beside the export\n").unwrap();
    (tmp, share)
}

fn passthrough(share: &PathBuf) -> Arc<PassthroughFs> {
    Arc::new(PassthroughFs::new(Config::new(share)).unwrap())
}

fn walk_qids(c: &mut Client, fid: u32, newfid: u32, path: &[&str]) -> Result<Vec<Qid>, i32> {
    let names: Vec<Name<'_>> = path.iter().map(|s| name(s)).collect();
    let frame = c.rpc(&Client::walk_req(fid, newfid, &names));
    match decode_reply(&frame, 1 << 20).unwrap().1 {
        Reply::Walk(q) => Ok(q.as_slice().to_vec()),
        Reply::Lerror { ecode } => Err(ecode as i32),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dotdot_from_the_root_stays_inside() {
    let (_tmp, share) = tree();
    let mut c = connect(passthrough(&share), P9Options::default());
    let root = c.start();
    // `..` alone: the root itself.
    assert_eq!(walk_qids(&mut c, 0, 1, &[".."]).unwrap(), vec![root]);
    c.getattr(1);
    // diod's escape (docs/9p.md): ['..', 'secret'] walks one name (the
    // root again) and stops: no fid 2, and the client sees ENOENT.
    assert_eq!(walk_qids(&mut c, 0, 2, &["..", "secret"]).unwrap(), vec![root]);
    assert_eq!(c.errno(&Request::Lopen(Tlopen { fid: Fid(2), flags: 0 })), libc::EBADF);
    assert_eq!(walk_qids(&mut c, 0, 2, &["secret"]), Err(libc::ENOENT));
    // Many `..` after going down come back up to the root, never above.
    let q = walk_qids(&mut c, 0, 3, &["sub", "..", "..", "..", ".", "sub", "inner"]).unwrap();
    assert_eq!(q[1], root);
    assert_eq!(q[2], root);
    c.lopen(3, 0);
    assert_eq!(c.read(3, 0, 100), b"inner");
    // From a fid at the root reached by `..`, too.
    assert_eq!(walk_qids(&mut c, 1, 4, &["..", "..", "secret"]).unwrap().len(), 2);
}

#[test]
fn attach_names_stay_inside_the_share() {
    let (tmp, share) = tree();
    let opts = P9Options { share_path: Some(share.to_str().unwrap().as_bytes().to_vec()), ..P9Options::default() };
    let mut c = connect(passthrough(&share), opts);
    c.version(MSIZE);
    let root = c.ok(&Client::attach_req(0, share.to_str().unwrap().as_bytes(), 0), |r| match r {
        Reply::Attach(q) => q,
        other => panic!("{other:?}"),
    });
    // The share's host path, a path under it, and a path inside the share.
    let sub_path = format!("{}/sub", share.display());
    let sub = c.ok(&Client::attach_req(1, sub_path.as_bytes(), 0), |r| match r {
        Reply::Attach(q) => q,
        other => panic!("{other:?}"),
    });
    assert_ne!(sub, root);
    assert!(c.ok(&Client::attach_req(2, b"/sub/", 0), |r| matches!(r, Reply::Attach(q) if q == sub)));
    // `..` at an attach root below the share's root stays there.
    assert_eq!(walk_qids(&mut c, 1, 3, &[".."]).unwrap(), vec![sub]);
    assert_eq!(walk_qids(&mut c, 1, 5, &["..", "inner"]).unwrap().len(), 2);
    // Leaving the share by name is refused; so is a file as the root.
    assert_eq!(c.errno(&Client::attach_req(4, b"..", 0)), libc::EINVAL);
    assert_eq!(c.errno(&Client::attach_req(4, b"sub/../..", 0)), libc::EINVAL);
    let parent = tmp.path().to_str().unwrap().as_bytes().to_vec();
    assert_eq!(c.errno(&Client::attach_req(4, &parent, 0)), libc::ENOENT);
    assert_eq!(c.errno(&Client::attach_req(4, b"/sub/inner", 0)), libc::ENOTDIR);
    // An authentication fid that never was.
    let auth = Request::Attach(Tattach { fid: Fid(4), afid: Fid(9), uname: b"", aname: b"", n_uname: 0 });
    assert_eq!(c.errno(&auth), libc::EINVAL);
    let tauth = Request::Auth(Tauth { afid: Fid(9), uname: b"", aname: b"", n_uname: 0 });
    assert_eq!(c.errno(&tauth), libc::EOPNOTSUPP);
}

/// A raw frame: header and body.
fn frame(typ: u8, tag: u16, body: &[u8]) -> Vec<u8> {
    let mut f = ((7 + body.len()) as u32).to_le_bytes().to_vec();
    f.push(typ);
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(body);
    f
}

fn lerror_of(frame: &[u8]) -> i32 {
    match decode_reply(frame, 1 << 20).unwrap().1 {
        Reply::Lerror { ecode } => ecode as i32,
        other => panic!("{other:?}"),
    }
}

#[test]
fn hostile_requests_get_errors() {
    let (_tmp, share) = tree();
    let mut c = connect(passthrough(&share), P9Options::default());
    // Anything before Tversion.
    assert_eq!(c.errno(&Client::attach_req(0, b"", 0)), libc::EPROTO);
    c.start();
    // Fid reuse.
    assert_eq!(c.errno(&Client::attach_req(0, b"", 0)), libc::EEXIST);
    c.walk(0, 1, &["sub"]);
    assert_eq!(walk_qids(&mut c, 0, 1, &["sub"]), Err(libc::EEXIST));
    assert_eq!(c.errno(&Request::Xattrwalk(Txattrwalk { fid: Fid(0), newfid: Fid(1), name: b"" })), libc::EEXIST);
    assert_eq!(walk_qids(&mut c, 0, u32::MAX, &[]), Err(libc::EINVAL), "NOFID");
    // Unknown fids.
    assert_eq!(walk_qids(&mut c, 77, 78, &[]), Err(libc::EBADF));
    assert_eq!(c.errno(&Request::Read(Tread { fid: Fid(77), offset: 0, count: 10 })), libc::EBADF);
    assert_eq!(c.errno(&Request::Clunk(Fid(77))), libc::EBADF);
    assert_eq!(c.errno(&Request::Getattr(Tgetattr { fid: Fid(77), request_mask: 0 })), libc::EBADF);
    // I/O on a fid that is not open; opening twice; walking an open fid onto itself.
    assert_eq!(c.errno(&Request::Read(Tread { fid: Fid(1), offset: 0, count: 10 })), libc::EBADF);
    c.lopen(1, 0);
    assert_eq!(c.errno(&Request::Lopen(Tlopen { fid: Fid(1), flags: 0 })), libc::EBUSY);
    assert_eq!(walk_qids(&mut c, 1, 1, &["inner"]), Err(libc::EBUSY));
    // A name with '/', an empty name, a NUL: refused by the codec (raw frames).
    let mut walk = Vec::new();
    walk.extend_from_slice(&0u32.to_le_bytes());
    walk.extend_from_slice(&5u32.to_le_bytes());
    walk.extend_from_slice(&1u16.to_le_bytes());
    walk.extend_from_slice(&9u16.to_le_bytes());
    walk.extend_from_slice(b"sub/inner");
    c.send_raw(&frame(MsgType::Twalk as u8, 3, &walk));
    assert_eq!(lerror_of(&c.recv().unwrap()), libc::EINVAL);
    // Unknown and 9P2000 message types.
    c.send_raw(&frame(250, 4, b""));
    assert_eq!(lerror_of(&c.recv().unwrap()), libc::EOPNOTSUPP);
    c.send_raw(&frame(MsgType::Topen as u8, 5, &[0; 5]));
    assert_eq!(lerror_of(&c.recv().unwrap()), libc::EOPNOTSUPP);
    // A count beyond the frame.
    let mut bad = Vec::new();
    bad.extend_from_slice(&0u32.to_le_bytes());
    bad.extend_from_slice(&6u32.to_le_bytes());
    bad.extend_from_slice(&1u16.to_le_bytes());
    bad.extend_from_slice(&60000u16.to_le_bytes());
    c.send_raw(&frame(MsgType::Twalk as u8, 6, &bad));
    assert_eq!(lerror_of(&c.recv().unwrap()), libc::EPROTO);
    // Tflush of an answered (or unknown) tag: acknowledged.
    c.ok(&Request::Flush { oldtag: Tag(3) }, |r| assert_eq!(r, Reply::Flush));
    // Huge counts are capped by msize.
    fs::write(share.join("big"), vec![1u8; 200_000]).unwrap();
    c.walk(0, 2, &["big"]);
    c.lopen(2, 0);
    assert_eq!(c.read(2, 0, u32::MAX).len(), max_read_count(MSIZE) as usize);
    let mut dir = c.rpc(&Request::Readdir(Tread { fid: Fid(1), offset: 0, count: u32::MAX }));
    assert!(dir.len() <= MSIZE as usize);
    dir.clear();
    // The session still works.
    c.getattr(0);
    // A frame larger than msize: the connection is closed.
    c.send_raw(&(MSIZE + 1).to_le_bytes());
    assert!(c.recv().is_none());
    let result = c.server.take().unwrap().join().unwrap();
    assert!(matches!(result, Err(Error::Frame(FrameError::TooLarge { .. }))), "{result:?}");
}

#[test]
fn small_frames_close_the_connection() {
    let (_tmp, share) = tree();
    let mut c = connect(passthrough(&share), P9Options::default());
    c.send_raw(&3u32.to_le_bytes());
    assert!(c.recv().is_none());
    assert!(matches!(c.server.take().unwrap().join().unwrap(), Err(Error::Frame(FrameError::TooSmall { .. }))));
    // A stream that ends inside a frame.
    let mut c = connect(passthrough(&share), P9Options::default());
    c.send_raw(&[20, 0, 0, 0, 100]);
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(matches!(c.server.take().unwrap().join().unwrap(), Err(Error::Read(_))));
    // Too many fids.
    let mut c = connect(passthrough(&share), P9Options { max_fids: 3, ..P9Options::default() });
    c.start();
    c.walk(0, 1, &[]);
    c.walk(0, 2, &[]);
    assert_eq!(walk_qids(&mut c, 0, 3, &[]), Err(libc::EMFILE));
}

#[test]
fn a_client_that_does_not_read_blocks_only_itself() {
    let (_tmp, share) = tree();
    fs::write(share.join("big"), vec![1u8; 70_000]).unwrap();
    let fs = passthrough(&share);
    let mut slow = connect(fs.clone(), P9Options::default());
    slow.start();
    slow.walk(0, 1, &["big"]);
    slow.lopen(1, 0);
    // Many reads, no reply taken: the server's thread for it blocks in write.
    let mut req = Vec::new();
    for tag in 0..200u16 {
        Request::Read(Tread { fid: Fid(1), offset: 0, count: 60_000 }).encode(Tag(tag), MSIZE, &mut req).unwrap();
    }
    slow.stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = slow.stream.write_all(&req);
    // Another connection on the same file system is served meanwhile.
    let mut other = connect(fs.clone(), P9Options::default());
    other.start();
    other.walk(0, 1, &["sub", "inner"]);
    other.lopen(1, 0);
    assert_eq!(other.read(1, 0, 10), b"inner");
    // Closing the slow client ends its connection with a write error.
    let server = slow.server.take().unwrap();
    drop(slow);
    assert!(matches!(server.join().unwrap(), Err(Error::Write(_))));
}

#[test]
fn locks_are_host_locks_shared_with_other_sessions() {
    let (_tmp, share) = tree();
    fs::write(share.join("f"), b"0123456789").unwrap();
    let share_state = Share::new(Config::new(&share)).unwrap();
    let other = share_state.session();
    let mut c = connect(Arc::new(share_state.session()), P9Options::default());
    c.start();
    c.walk(0, 1, &["f"]);
    c.lopen(1, open_flags::RDWR);

    // Another session (a virtio-fs guest, say) takes a write lock.
    let ctx = Context::default();
    let e = other.lookup(&ctx, NodeId::ROOT, c"f").unwrap();
    let h = other.open(&ctx, e.nodeid, libc::O_RDWR as u32, false).unwrap().handle;
    let lock = |typ: i32| LockRequest {
        handle: h,
        owner: LockOwner(1),
        lock: FileLock { start: 0, end: i64::MAX as u64, typ: typ as u32, pid: 4242 },
        flock: false,
    };
    other.setlk(&ctx, e.nodeid, lock(libc::F_WRLCK), false).unwrap();

    let tlock = |typ, flags| {
        Request::Lock(Tlock {
            fid: Fid(1),
            lock_type: typ,
            flags,
            start: 2,
            length: 3,
            proc_id: 7,
            client_id: b"guest",
        })
    };
    let status = |c: &mut Client, r: &Request<'_>| {
        c.ok(r, |r| match r {
            Reply::Lock(s) => s,
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(status(&mut c, &tlock(LockType::Write, 0)), LockStatus::Blocked);
    // BLOCK never waits in the server: the Linux client retries.
    assert_eq!(status(&mut c, &tlock(LockType::Read, lock_flags::BLOCK)), LockStatus::Blocked);
    let getlock = Request::Getlock(Tgetlock {
        fid: Fid(1),
        lock: Getlock { lock_type: LockType::Write, start: 0, length: 0, proc_id: 7, client_id: b"guest" },
    });
    let got = c.ok(&getlock, |r| match r {
        Reply::Getlock(g) => (g.lock_type, g.start, g.length),
        other => panic!("{other:?}"),
    });
    assert_eq!(got, (LockType::Write, 0, 0));
    // The Linux client asks with type Unlock (it has lost the type it
    // tests): another session's lock is still reported.
    assert_eq!(linux_getlock(&mut c, 7, 2, 3), (LockType::Write, 0, 0));

    // Released there: granted here, and now the other session conflicts.
    other.setlk(&ctx, e.nodeid, lock(libc::F_UNLCK), false).unwrap();
    assert_eq!(status(&mut c, &tlock(LockType::Write, lock_flags::BLOCK)), LockStatus::Success);
    let err = other.setlk(&ctx, e.nodeid, lock(libc::F_WRLCK), false).unwrap_err();
    assert!(matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)), "{err}");
    let seen = other.getlk(&ctx, e.nodeid, lock(libc::F_WRLCK)).unwrap();
    assert_eq!((seen.typ as i32, seen.start, seen.end), (libc::F_WRLCK, 2, 4));
    // The same 9P process may take it again; another process may not.
    assert_eq!(status(&mut c, &tlock(LockType::Write, 0)), LockStatus::Success);
    // The Linux client's test (type Unlock) leaves out this connection's
    // own holders, whose locks the client has judged itself: its own
    // lock, and another process's of the same client.
    assert_eq!(linux_getlock(&mut c, 7, 0, 0).0, LockType::Unlock);
    assert_eq!(linux_getlock(&mut c, 8, 0, 0).0, LockType::Unlock);
    // A client that names the type gets exactly that test.
    let named = Request::Getlock(Tgetlock {
        fid: Fid(1),
        lock: Getlock { lock_type: LockType::Write, start: 0, length: 0, proc_id: 8, client_id: b"guest" },
    });
    let got = c.ok(&named, |r| match r {
        Reply::Getlock(g) => (g.lock_type, g.start, g.length, g.proc_id),
        other => panic!("{other:?}"),
    });
    assert_eq!(got, (LockType::Write, 2, 3, 7));
    // Clunking the fid releases the 9P client's locks.
    c.clunk(1);
    other.setlk(&ctx, e.nodeid, lock(libc::F_WRLCK), false).unwrap();
}

/// A Tgetlock as the Linux client sends it: type Unlock.
fn linux_getlock(c: &mut Client, proc_id: u32, start: u64, length: u64) -> (LockType, u64, u64) {
    let req = Request::Getlock(Tgetlock {
        fid: Fid(1),
        lock: Getlock { lock_type: LockType::Unlock, start, length, proc_id, client_id: b"guest" },
    });
    c.ok(&req, |r| match r {
        Reply::Getlock(g) => (g.lock_type, g.start, g.length),
        other => panic!("{other:?}"),
    })
}

fn policy_fs(share: &PathBuf, policy: &str) -> Arc<PolicyFs<PassthroughFs>> {
    Arc::new(PolicyFs::new(PassthroughFs::new(Config::new(share)).unwrap(), parse(policy).unwrap()))
}

#[test]
fn a_read_only_policy_refuses_changes_with_erofs() {
    let (_tmp, share) = tree();
    let mut c = connect(policy_fs(&share, "[share]\nreadonly = true\n"), P9Options::default());
    c.start();
    c.walk(0, 1, &["sub", "inner"]);
    assert_eq!(c.errno(&Request::Lopen(Tlopen { fid: Fid(1), flags: open_flags::RDWR })), libc::EROFS);
    c.lopen(1, open_flags::RDONLY);
    assert_eq!(c.read(1, 0, 100), b"inner");
    c.walk(0, 2, &[]);
    let create = Request::Lcreate(Tlcreate {
        fid: Fid(2),
        name: Name::entry(b"new").unwrap(),
        flags: open_flags::RDWR,
        mode: 0o644,
        gid: 0,
    });
    assert_eq!(c.errno(&create), libc::EROFS);
    let mkdir = Request::Mkdir(Tmkdir { dfid: Fid(0), name: Name::entry(b"d").unwrap(), mode: 0o755, gid: 0 });
    assert_eq!(c.errno(&mkdir), libc::EROFS);
    let unlink = Request::Unlinkat(Tunlinkat { dirfid: Fid(0), name: Name::entry(b"sub").unwrap(), flags: 0x200 });
    assert_eq!(c.errno(&unlink), libc::EROFS);
    c.walk(0, 3, &["sub", "inner"]);
    let chmod = Request::Setattr(Tsetattr {
        fid: Fid(3),
        attr: SetAttr { valid: setattr::MODE, mode: 0o777, ..Default::default() },
    });
    assert_eq!(c.errno(&chmod), libc::EROFS);
    assert!(!share.join("new").exists() && !share.join("d").exists() && share.join("sub").exists());
}

#[test]
fn a_hidden_path_is_not_found() {
    let (_tmp, share) = tree();
    fs::create_dir(share.join("hidden")).unwrap();
    fs::write(share.join("hidden/x"), b"x").unwrap();
    let mut c = connect(policy_fs(&share, "[paths]\nhidden = [\"hidden\"]\n"), P9Options::default());
    c.start();
    assert_eq!(walk_qids(&mut c, 0, 1, &["hidden"]), Err(libc::ENOENT));
    assert_eq!(walk_qids(&mut c, 0, 1, &["sub", "..", "hidden", "x"]).unwrap().len(), 2);
    c.walk(0, 2, &[]);
    c.lopen(2, open_flags::RDONLY);
    let names = c.readdir_names(2, 4096);
    assert!(names.contains(&"sub".to_string()));
    assert!(!names.contains(&"hidden".to_string()), "{names:?}");
}
