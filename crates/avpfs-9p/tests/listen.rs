//! `listen`: one accept loop for unix and vsock sockets, a thread and a
//! file system session per connection, against a real passthrough.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use avpfs_9p::{bind, listen, ListenAddr, Listener, P9Options};
use avpfs_passthrough::{Config, PassthroughFs};
use avpfs_sys::vsock::{VsockAddr, VsockStream, CID_ANY, CID_LOCAL, PORT_ANY};
use p9_abi::*;

const MSIZE: u32 = 65536;

/// Starts `listen` on `listener` for a share at `share`, on a thread of
/// its own (it never returns; the test process ends it).
fn serve(listener: Listener, share: &Path) {
    let share = share.to_path_buf();
    std::thread::spawn(move || {
        let options = P9Options { write_timeout: Some(Duration::from_secs(5)), ..P9Options::default() };
        listen(listener, options, move || Arc::new(PassthroughFs::new(Config::new(&share)).unwrap()))
    });
}

/// Sends `req` and reads its reply frame.
fn rpc<S: Read + Write>(stream: &mut S, tag: Tag, req: &Request<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    req.encode(tag, MSIZE, &mut out).unwrap();
    stream.write_all(&out).unwrap();
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let mut frame = prefix.to_vec();
    frame.resize(frame_size(prefix, MSIZE).unwrap(), 0);
    stream.read_exact(&mut frame[4..]).unwrap();
    frame
}

/// Tversion, Tattach of the share's root, and a walk to `name`: the qid
/// of the file the client sees.
fn attach_and_walk<S: Read + Write>(stream: &mut S, name: &str) -> Qid {
    let frame = rpc(stream, Tag::NOTAG, &Request::Version(Tversion { msize: MSIZE, version: b"9P2000.L" }));
    match decode_reply(&frame, MSIZE).unwrap().1 {
        Reply::Version(v) => assert_eq!((v.msize, v.version), (MSIZE, &b"9P2000.L"[..])),
        other => panic!("{other:?}"),
    }
    let attach = Tattach { fid: Fid(0), afid: Fid::NOFID, uname: b"root", aname: b"", n_uname: 0 };
    let frame = rpc(stream, Tag(1), &Request::Attach(attach));
    assert!(matches!(decode_reply(&frame, MSIZE).unwrap().1, Reply::Attach(_)), "{frame:?}");
    let names = [Name::walk_element(name.as_bytes()).unwrap()];
    let walk = Twalk { fid: Fid(0), newfid: Fid(1), names: WalkNames::from_slice(&names).unwrap() };
    let frame = rpc(stream, Tag(2), &Request::Walk(walk));
    match decode_reply(&frame, MSIZE).unwrap().1 {
        Reply::Walk(qids) => {
            assert_eq!(qids.as_slice().len(), 1);
            qids.as_slice()[0]
        }
        other => panic!("walk to {name}: {other:?}"),
    }
}

fn share_with_a_file() -> (tempfile::TempDir, std::path::PathBuf, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("hello"), b"hi\n").unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(share.join("hello")).unwrap());
    (tmp, share, ino)
}

#[test]
fn unix_connections_are_served_side_by_side() {
    let (tmp, share, ino) = share_with_a_file();
    let addr = ListenAddr::Unix(tmp.path().join("p9.sock"));
    serve(bind(&addr).unwrap(), &share);
    let path = tmp.path().join("p9.sock");
    // Two clients at once: each its own thread and session.
    let mut a = UnixStream::connect(&path).unwrap();
    let mut b = UnixStream::connect(&path).unwrap();
    for s in [&mut a, &mut b] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    assert_eq!(attach_and_walk(&mut a, "hello").path, ino);
    assert_eq!(attach_and_walk(&mut b, "hello").path, ino);
}

/// The same loop over AF_VSOCK, end to end, where the kernel can connect
/// to itself (`vsock_loopback`, CID 1). Skipped, with the reason, where
/// it has no AF_VSOCK or no loopback transport.
#[test]
fn vsock_connections_are_served_through_the_loopback() {
    let (_tmp, share, ino) = share_with_a_file();
    let listener = match bind(&ListenAddr::Vsock { cid: CID_ANY, port: PORT_ANY }) {
        // PORT_ANY is not an address a user may give (parse refuses it),
        // but bind takes it: the kernel picks a free port.
        Ok(l) => l,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let ListenAddr::Vsock { port, .. } = listener.addr() else { panic!("a vsock listener") };
    assert_ne!(port, PORT_ANY);
    serve(listener, &share);
    let mut stream = match VsockStream::connect(VsockAddr::new(CID_LOCAL, port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: no vsock loopback transport here (connect to CID 1 port {port}: {e})");
            return;
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(attach_and_walk(&mut stream, "hello").path, ino);
}
