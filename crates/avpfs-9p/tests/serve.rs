//! The 9P server against a real passthrough on a temporary directory,
//! through a client on a socket pair.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use avpfs_9p::P9Options;
use avpfs_passthrough::{Config, PassthroughFs};
use common::{connect, name, Client, MSIZE};
use p9_abi::*;
use tempfile::TempDir;

struct Fixture {
    _tmp: TempDir,
    share: PathBuf,
    fs: Arc<PassthroughFs>,
}

/// A share at `tmp/share`, with `tmp/secret` beside it (outside).
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    fs::create_dir(&share).unwrap();
    fs::write(tmp.path().join("secret"), b"secret beside the export\n").unwrap();
    let cfg = Config { xattr: true, ..Config::new(&share) };
    let fs = Arc::new(PassthroughFs::new(cfg).unwrap());
    Fixture { _tmp: tmp, share, fs }
}

impl Fixture {
    fn client(&self) -> Client {
        connect(self.fs.clone(), P9Options::default())
    }
}

const RDONLY: u32 = open_flags::RDONLY;
const RDWR: u32 = open_flags::RDWR;

fn lcreate<'a>(fid: u32, n: &'a str, mode: u32) -> Request<'a> {
    Request::Lcreate(Tlcreate { fid: Fid(fid), name: Name::entry(n.as_bytes()).unwrap(), flags: RDWR, mode, gid: 0 })
}

#[test]
fn version_negotiates_msize() {
    let f = fixture();
    let mut c = f.client();
    assert_eq!(c.version(65536), 65536);
    assert_eq!(c.version(16 << 20), 1 << 20);
    // Another version than 9P2000.L: "unknown", and no session.
    let frame = c.rpc(&Request::Version(Tversion { msize: 8192, version: b"9P2000.u" }));
    match decode_reply(&frame, 1 << 20).unwrap().1 {
        Reply::Version(v) => assert_eq!(v.version, b"unknown"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.errno(&Client::attach_req(0, b"", 0)), libc::EPROTO);
    // Too small an msize.
    assert_eq!(c.errno(&Request::Version(Tversion { msize: 100, version: b"9P2000.L" })), libc::EINVAL);
}

#[test]
fn read_write_create() {
    let f = fixture();
    fs::write(f.share.join("a.txt"), b"hello, 9p").unwrap();
    let mut c = f.client();
    c.start();
    c.walk(0, 1, &["a.txt"]);
    let open = c.lopen(1, RDONLY);
    assert_eq!(open.iounit, default_iounit(MSIZE));
    assert_eq!(c.read(1, 0, 4096), b"hello, 9p");
    assert_eq!(c.read(1, 7, 4096), b"9p");
    assert_eq!(c.read(1, 100, 4096), b"");
    // Writing through a read-only fid fails on the host.
    assert_eq!(c.errno(&Request::Write(Twrite { fid: Fid(1), offset: 0, data: b"x" })), libc::EBADF);
    c.clunk(1);

    // Tlcreate on a clone of the root: the fid becomes the open new file.
    c.walk(0, 2, &[]);
    let q = c.ok(&lcreate(2, "new", 0o640), |r| match r {
        Reply::Lcreate(o) => o.qid,
        other => panic!("{other:?}"),
    });
    assert_eq!(q.typ, qid_type::FILE);
    assert_eq!(c.write(2, 0, b"data"), 4);
    assert_eq!(c.write(2, 4, b" more"), 5);
    assert_eq!(c.read(2, 0, 100), b"data more");
    c.clunk(2);
    let meta = fs::metadata(f.share.join("new")).unwrap();
    assert_eq!(fs::read(f.share.join("new")).unwrap(), b"data more");
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(q.path, meta.ino());
    // Creating it again fails (O_EXCL is not implied, but the name exists
    // only for EXCL; without it the open succeeds).
    c.walk(0, 3, &[]);
    let excl = Request::Lcreate(Tlcreate {
        fid: Fid(3),
        name: Name::entry(b"new").unwrap(),
        flags: RDWR | open_flags::EXCL,
        mode: 0o600,
        gid: 0,
    });
    assert_eq!(c.errno(&excl), libc::EEXIST);
    // Tlcreate needs a directory fid.
    c.walk(0, 4, &["new"]);
    assert_eq!(c.errno(&lcreate(4, "x", 0o600)), libc::ENOTDIR);
}

#[test]
fn large_reads_and_writes_are_capped_by_msize() {
    let f = fixture();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(f.share.join("big"), &big).unwrap();
    let mut c = f.client();
    c.start();
    c.walk(0, 1, &["big"]);
    c.lopen(1, RDWR);
    let data = c.read(1, 0, u32::MAX);
    assert_eq!(data.len(), max_read_count(MSIZE) as usize);
    assert_eq!(&data[..], &big[..data.len()]);
    let mut all = Vec::new();
    while all.len() < big.len() {
        let chunk = c.read(1, all.len() as u64, 60_000);
        assert!(!chunk.is_empty());
        all.extend_from_slice(&chunk);
    }
    assert_eq!(all, big);
    // The largest write that fits msize.
    let payload = vec![7u8; max_write_count(MSIZE) as usize];
    assert_eq!(c.write(1, 0, &payload) as usize, payload.len());
    assert_eq!(&fs::read(f.share.join("big")).unwrap()[..payload.len()], &payload[..]);
}

#[test]
fn mkdir_readdir_getattr() {
    let f = fixture();
    let mut c = f.client();
    let root = c.start();
    assert_eq!(root.typ, qid_type::DIR);
    let q =
        c.ok(&Request::Mkdir(Tmkdir { dfid: Fid(0), name: Name::entry(b"d").unwrap(), mode: 0o750, gid: 0 }), |r| {
            match r {
                Reply::Mkdir(q) => q,
                other => panic!("{other:?}"),
            }
        });
    assert_eq!(q.typ, qid_type::DIR);
    let meta = fs::metadata(f.share.join("d")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o750);
    let mut expect: Vec<String> = (0..40).map(|i| format!("file-with-a-longish-name-{i}")).collect();
    for n in &expect {
        fs::write(f.share.join("d").join(n), b"").unwrap();
    }
    c.walk(0, 1, &["d"]);
    c.lopen(1, RDONLY | open_flags::DIRECTORY);
    // Small counts: many Treaddir, continued from the entries' offsets.
    let mut names = c.readdir_names(1, 200);
    names.retain(|n| n != "." && n != "..");
    names.sort();
    expect.sort();
    assert_eq!(names, expect);
    // Reading a directory fid with Tread is refused.
    assert_eq!(c.errno(&Request::Read(Tread { fid: Fid(1), offset: 0, count: 10 })), libc::EISDIR);

    let st = c.getattr(1);
    assert_eq!(st.qid, Qid { typ: qid_type::DIR, ..st.qid });
    assert_eq!(st.qid.path, meta.ino());
    assert_eq!(st.mode & libc::S_IFMT, libc::S_IFDIR);
    assert_eq!(st.nlink, 2);
    assert_eq!(st.valid & getattr::BASIC, getattr::BASIC);
    // Treaddir on a fid that is not open.
    c.walk(0, 2, &["d"]);
    assert_eq!(c.errno(&Request::Readdir(Tread { fid: Fid(2), offset: 0, count: 100 })), libc::EBADF);
}

#[test]
fn setattr_chmod_truncate_utimes() {
    let f = fixture();
    fs::write(f.share.join("f"), b"0123456789").unwrap();
    let mut c = f.client();
    c.start();
    c.walk(0, 1, &["f"]);
    let set = |valid, mode, size, mtime| {
        Request::Setattr(Tsetattr {
            fid: Fid(1),
            attr: SetAttr {
                valid,
                mode,
                uid: u32::MAX,
                gid: u32::MAX,
                size,
                atime_sec: mtime,
                atime_nsec: 5,
                mtime_sec: mtime,
                mtime_nsec: 6,
            },
        })
    };
    c.ok(&set(setattr::MODE, 0o604, 0, 0), |_| ());
    c.ok(&set(setattr::SIZE, 0, 3, 0), |_| ());
    let t = setattr::ATIME | setattr::ATIME_SET | setattr::MTIME | setattr::MTIME_SET;
    c.ok(&set(t, 0, 0, 1_000_000), |_| ());
    let meta = fs::metadata(f.share.join("f")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o604);
    assert_eq!(meta.len(), 3);
    assert_eq!((meta.mtime(), meta.mtime_nsec(), meta.atime()), (1_000_000, 6, 1_000_000));
    let st = c.getattr(1);
    assert_eq!((st.size, st.mode & 0o777, st.mtime_sec, st.mtime_nsec), (3, 0o604, 1_000_000, 6));
    // The Linux client truncates an O_TRUNC|O_RDONLY open through the
    // open fid: the size change must not use the read-only descriptor.
    c.walk(0, 2, &["f"]);
    c.lopen(2, RDONLY);
    c.ok(
        &Request::Setattr(Tsetattr {
            fid: Fid(2),
            attr: SetAttr { valid: setattr::SIZE, uid: u32::MAX, gid: u32::MAX, size: 0, ..SetAttr::default() },
        }),
        |_| (),
    );
    assert_eq!(fs::metadata(f.share.join("f")).unwrap().len(), 0);
    c.clunk(2);
    // A nanosecond count out of range.
    let mut bad = set(t, 0, 0, 1);
    if let Request::Setattr(s) = &mut bad {
        s.attr.mtime_nsec = 2_000_000_000;
    }
    assert_eq!(c.errno(&bad), libc::EINVAL);
}

#[test]
fn names_rename_link_symlink_unlink() {
    let f = fixture();
    fs::write(f.share.join("a"), b"A").unwrap();
    fs::create_dir(f.share.join("sub")).unwrap();
    let mut c = f.client();
    c.start();
    // Trename moves the fid's file; the fid follows it.
    c.walk(0, 1, &["a"]);
    c.walk(0, 2, &["sub"]);
    c.ok(&Request::Rename(Trename { fid: Fid(1), dfid: Fid(2), name: Name::entry(b"b").unwrap() }), |_| ());
    assert!(!f.share.join("a").exists());
    assert_eq!(fs::read(f.share.join("sub/b")).unwrap(), b"A");
    c.lopen(1, RDONLY);
    assert_eq!(c.read(1, 0, 10), b"A");
    c.clunk(1);
    // Trenameat by names.
    c.ok(
        &Request::Renameat(Trenameat {
            olddirfid: Fid(2),
            oldname: Name::entry(b"b").unwrap(),
            newdirfid: Fid(0),
            newname: Name::entry(b"c").unwrap(),
        }),
        |_| (),
    );
    assert_eq!(fs::read(f.share.join("c")).unwrap(), b"A");
    // Tlink, Tsymlink, Treadlink.
    c.walk(0, 3, &["c"]);
    c.ok(&Request::Link(Tlink { dfid: Fid(2), fid: Fid(3), name: Name::entry(b"hard").unwrap() }), |_| ());
    assert_eq!(fs::metadata(f.share.join("c")).unwrap().nlink(), 2);
    let q = c.ok(
        &Request::Symlink(Tsymlink {
            dfid: Fid(0),
            name: Name::entry(b"ln").unwrap(),
            target: b"../../etc/passwd",
            gid: 0,
        }),
        |r| match r {
            Reply::Symlink(q) => q,
            other => panic!("{other:?}"),
        },
    );
    assert_eq!(q.typ, qid_type::SYMLINK);
    assert_eq!(fs::read_link(f.share.join("ln")).unwrap(), PathBuf::from("../../etc/passwd"));
    c.walk(0, 4, &["ln"]);
    c.ok(&Request::Readlink(Fid(4)), |r| match r {
        Reply::Readlink { target } => assert_eq!(target, b"../../etc/passwd"),
        other => panic!("{other:?}"),
    });
    // The link is not followed by a walk through it.
    assert_eq!(c.errno(&Client::walk_req(4, 5, &[name("x")])), libc::ENOTDIR);
    // Tunlinkat of a file and a directory; Tremove.
    c.ok(&Request::Unlinkat(Tunlinkat { dirfid: Fid(0), name: Name::entry(b"ln").unwrap(), flags: 0 }), |_| ());
    assert!(fs::symlink_metadata(f.share.join("ln")).is_err());
    let rmdir = |n: &'static str| {
        Request::Unlinkat(Tunlinkat {
            dirfid: Fid(0),
            name: Name::entry(n.as_bytes()).unwrap(),
            flags: unlinkat::REMOVEDIR,
        })
    };
    assert_eq!(c.errno(&rmdir("sub")), libc::ENOTEMPTY);
    c.ok(&Request::Remove(Fid(3)), |_| ());
    assert!(!f.share.join("c").exists());
    assert_eq!(c.errno(&Request::Clunk(Fid(3))), libc::EBADF, "Tremove clunks");
    c.walk(2, 6, &["hard"]);
    c.ok(&Request::Remove(Fid(6)), |_| ());
    c.clunk(2);
    c.ok(&rmdir("sub"), |_| ());
    assert!(!f.share.join("sub").exists());
    // The attach root cannot be removed (and the fid is clunked anyway).
    c.walk(0, 7, &[]);
    assert_eq!(c.errno(&Request::Remove(Fid(7))), libc::EBUSY);
    assert_eq!(c.errno(&Request::Clunk(Fid(7))), libc::EBADF);
    // A stale name: the file the fid walked to was replaced.
    fs::write(f.share.join("s"), b"1").unwrap();
    c.walk(0, 8, &["s"]);
    fs::remove_file(f.share.join("s")).unwrap();
    fs::write(f.share.join("s"), b"2").unwrap();
    assert_eq!(c.errno(&Request::Remove(Fid(8))), libc::ENOENT);
    assert!(f.share.join("s").exists(), "the new file was not removed");
}

#[test]
fn statfs_fsync_mknod() {
    let f = fixture();
    let mut c = f.client();
    c.start();
    let st = c.ok(&Request::Statfs(Fid(0)), |r| match r {
        Reply::Statfs(s) => s,
        other => panic!("{other:?}"),
    });
    assert_eq!(st.fs_type, 0x0102_1997);
    assert!(st.bsize > 0 && st.blocks > 0 && st.namelen > 0);
    c.walk(0, 1, &[]);
    c.ok(&lcreate(1, "f", 0o600), |_| ());
    c.write(1, 0, b"x");
    c.ok(&Request::Fsync(Tfsync { fid: Fid(1), datasync: 0 }), |_| ());
    c.ok(&Request::Fsync(Tfsync { fid: Fid(1), datasync: 1 }), |_| ());
    assert_eq!(c.errno(&Request::Fsync(Tfsync { fid: Fid(0), datasync: 0 })), libc::EBADF);
    let q = c.ok(
        &Request::Mknod(Tmknod {
            dfid: Fid(0),
            name: Name::entry(b"fifo").unwrap(),
            mode: libc::S_IFIFO | 0o600,
            major: 0,
            minor: 0,
            gid: 0,
        }),
        |r| match r {
            Reply::Mknod(q) => q,
            other => panic!("{other:?}"),
        },
    );
    assert_eq!(q.typ, qid_type::FILE);
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(f.share.join("fifo")).unwrap().file_type().is_fifo());
}

#[test]
fn xattrs() {
    let f = fixture();
    fs::write(f.share.join("f"), b"").unwrap();
    let mut c = f.client();
    c.start();
    c.walk(0, 1, &["f"]);
    // Write: clone, Txattrcreate, Twrite(s), Tclunk.
    c.walk(1, 2, &[]);
    let value = b"some value";
    c.ok(
        &Request::Xattrcreate(Txattrcreate {
            fid: Fid(2),
            name: b"user.test",
            attr_size: value.len() as u64,
            flags: 0,
        }),
        |_| (),
    );
    c.write(2, 0, &value[..4]);
    c.write(2, 4, &value[4..]);
    // Beyond the announced size.
    assert_eq!(c.errno(&Request::Write(Twrite { fid: Fid(2), offset: 8, data: b"xyz" })), libc::ENOSPC);
    c.clunk(2);
    // Read it back.
    let size = c.ok(&Request::Xattrwalk(Txattrwalk { fid: Fid(1), newfid: Fid(3), name: b"user.test" }), |r| match r {
        Reply::Xattrwalk { size } => size,
        other => panic!("{other:?}"),
    });
    assert_eq!(size, value.len() as u64);
    assert_eq!(c.read(3, 0, 100), value);
    assert_eq!(c.read(3, 5, 100), &value[5..]);
    assert_eq!(c.read(3, 1000, 100), b"");
    c.clunk(3);
    // The list of names.
    c.ok(&Request::Xattrwalk(Txattrwalk { fid: Fid(1), newfid: Fid(3), name: b"" }), |_| ());
    let list = c.read(3, 0, 4096);
    assert!(list.split(|&b| b == 0).any(|n| n == b"user.test"), "{list:?}");
    c.clunk(3);
    // A value announced but not all written: the clunk fails, nothing set.
    c.walk(1, 4, &[]);
    c.ok(&Request::Xattrcreate(Txattrcreate { fid: Fid(4), name: b"user.part", attr_size: 10, flags: 0 }), |_| ());
    c.write(4, 0, b"abc");
    assert_eq!(c.errno(&Request::Clunk(Fid(4))), libc::EINVAL);
    assert_eq!(
        c.errno(&Request::Xattrwalk(Txattrwalk { fid: Fid(1), newfid: Fid(5), name: b"user.part" })),
        libc::ENODATA
    );
    // Too large a value is refused up front.
    c.walk(1, 6, &[]);
    let huge = Request::Xattrcreate(Txattrcreate { fid: Fid(6), name: b"user.big", attr_size: 1 << 40, flags: 0 });
    assert_eq!(c.errno(&huge), libc::E2BIG);
    // Removal: an empty Txattrcreate.
    c.ok(
        &Request::Xattrcreate(Txattrcreate {
            fid: Fid(6),
            name: b"user.test",
            attr_size: 0,
            flags: libc::XATTR_REPLACE as u32,
        }),
        |_| (),
    );
    c.clunk(6);
    assert_eq!(
        c.errno(&Request::Xattrwalk(Txattrwalk { fid: Fid(1), newfid: Fid(7), name: b"user.test" })),
        libc::ENODATA
    );
    // An empty value without XATTR_REPLACE is a setxattr of "" (the Linux
    // client's setxattr with size 0), not a removal.
    c.walk(1, 8, &[]);
    c.ok(&Request::Xattrcreate(Txattrcreate { fid: Fid(8), name: b"user.empty", attr_size: 0, flags: 0 }), |_| ());
    c.clunk(8);
    let size =
        c.ok(&Request::Xattrwalk(Txattrwalk { fid: Fid(1), newfid: Fid(9), name: b"user.empty" }), |r| match r {
            Reply::Xattrwalk { size } => size,
            other => panic!("{other:?}"),
        });
    assert_eq!(size, 0);
    c.clunk(9);
    assert_eq!(xattr_of(&f.share.join("f"), "user.empty"), Some(Vec::new()));
}

/// The value of the extended attribute `name` of `path` on the host.
fn xattr_of(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for its length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

#[test]
fn every_reference_is_returned() {
    let f = fixture();
    fs::create_dir_all(f.share.join("a/b/c")).unwrap();
    fs::write(f.share.join("a/b/c/f"), b"x").unwrap();
    let before = f.fs.node_count();
    let handles = f.fs.handle_count();
    {
        let mut c = f.client();
        c.start();
        c.walk(0, 1, &["a", "b", "c", "f"]);
        c.lopen(1, RDONLY);
        c.walk(1, 2, &["..", "..", ".."]);
        c.walk(0, 3, &["a", "b"]);
        c.lopen(3, RDONLY);
        // A partial walk takes nothing.
        let frame = c.rpc(&Client::walk_req(0, 4, &[name("a"), name("nope"), name("x")]));
        match decode_reply(&frame, 1 << 20).unwrap().1 {
            Reply::Walk(q) => assert_eq!(q.len(), 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.errno(&Request::Clunk(Fid(4))), libc::EBADF);
        assert!(f.fs.node_count() > before);
        c.clunk(3);
        // A second Tversion clunks everything.
        c.version(MSIZE);
        assert_eq!(f.fs.node_count(), before);
        assert_eq!(f.fs.handle_count(), handles);
        c.start();
        c.walk(0, 1, &["a", "b", "c", "f"]);
        c.lopen(1, RDONLY);
        // Disconnect with fids held: the server's thread ends when the
        // client's end is closed.
        let server = c.server.take().unwrap();
        drop(c);
        server.join().unwrap().unwrap();
    }
    assert_eq!(f.fs.node_count(), before);
    assert_eq!(f.fs.handle_count(), handles);
}

/// A guest process killed in the middle of a request: the client sends
/// Tflush for it without waiting. The server answers the request first
/// (it serves a connection's requests in order) and then Rflush, so the
/// client learns of the fid the request made and clunks it: nothing is
/// left open.
#[test]
fn a_flushed_request_is_answered_before_its_rflush() {
    let f = fixture();
    let nodes = f.fs.node_count();
    let handles = f.fs.handle_count();
    let mut c = f.client();
    c.start();
    c.walk(0, 1, &[]);
    let mut out = Vec::new();
    lcreate(1, "made", 0o644).encode(Tag(40), MSIZE, &mut out).unwrap();
    Request::Flush { oldtag: Tag(40) }.encode(Tag(41), MSIZE, &mut out).unwrap();
    c.send_raw(&out);
    let first = c.recv().unwrap();
    let second = c.recv().unwrap();
    let (tag, reply) = decode_reply(&first, MSIZE).unwrap();
    assert_eq!(tag, Tag(40));
    assert!(matches!(reply, Reply::Lcreate(_)), "{reply:?}");
    assert_eq!(decode_reply(&second, MSIZE).unwrap(), (Tag(41), Reply::Flush));
    assert!(f.share.join("made").exists());
    // The client clunks what the answered request made.
    assert!(f.fs.handle_count() > handles);
    c.clunk(1);
    c.clunk(0);
    assert_eq!(f.fs.node_count(), nodes);
    assert_eq!(f.fs.handle_count(), handles);
}
