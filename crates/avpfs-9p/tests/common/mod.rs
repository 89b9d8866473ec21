//! A small 9P2000.L client over a `UnixStream::pair`, built from p9-abi's
//! encoder and decoder, and a server thread serving the other end.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;

use avpfs_9p::{serve_connection, Error, P9Options};
use avpfs_server::FileSystem;
use p9_abi::*;

pub const MSIZE: u32 = 65536;

/// The client end of a connection.
pub struct Client {
    pub stream: UnixStream,
    pub msize: u32,
    tag: u16,
    pub server: Option<JoinHandle<Result<(), Error>>>,
}

/// A server thread serving `fs` on one end of a socket pair, and a client
/// on the other.
pub fn connect<F: FileSystem + 'static>(fs: Arc<F>, options: P9Options) -> Client {
    let (a, b) = UnixStream::pair().unwrap();
    let server = std::thread::spawn(move || serve_connection(b, &*fs, &options));
    Client { stream: a, msize: MSIZE, tag: 0, server: Some(server) }
}

pub fn name(s: &str) -> Name<'_> {
    Name::walk_element(s.as_bytes()).unwrap()
}

impl Client {
    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one reply frame, or `None` when the server closed the connection.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        let mut prefix = [0u8; 4];
        if self.stream.read_exact(&mut prefix).is_err() {
            return None;
        }
        let size = frame_size(prefix, self.msize.max(1 << 20)).unwrap();
        let mut frame = prefix.to_vec();
        frame.resize(size, 0);
        self.stream.read_exact(&mut frame[4..]).unwrap();
        Some(frame)
    }

    /// Sends a request and returns its reply frame (its tag checked).
    pub fn rpc(&mut self, req: &Request<'_>) -> Vec<u8> {
        self.tag = (self.tag + 1) % 0xfff0;
        let tag = if matches!(req, Request::Version(_)) { Tag::NOTAG } else { Tag(self.tag) };
        let mut out = Vec::new();
        req.encode(tag, self.msize, &mut out).unwrap();
        self.send_raw(&out);
        let frame = self.recv().expect("a reply");
        let (got, _) = decode_reply(&frame, self.msize.max(1 << 20)).unwrap();
        assert_eq!(got, tag);
        frame
    }

    /// The errno of an `Rlerror` reply (panics on any other reply).
    pub fn errno(&mut self, req: &Request<'_>) -> i32 {
        let frame = self.rpc(req);
        match decode_reply(&frame, 1 << 20).unwrap().1 {
            Reply::Lerror { ecode } => ecode as i32,
            other => panic!("expected Rlerror for {req:?}, got {other:?}"),
        }
    }

    /// Sends a request that must succeed; gives its reply to `f`.
    pub fn ok<T>(&mut self, req: &Request<'_>, f: impl FnOnce(Reply<'_>) -> T) -> T {
        let frame = self.rpc(req);
        let reply = decode_reply(&frame, 1 << 20).unwrap().1;
        if let Reply::Lerror { ecode } = reply {
            panic!("{req:?} failed: errno {ecode}");
        }
        f(reply)
    }

    pub fn version(&mut self, msize: u32) -> u32 {
        let m = self.ok(&Request::Version(Tversion { msize, version: b"9P2000.L" }), |r| match r {
            Reply::Version(v) => {
                assert_eq!(v.version, b"9P2000.L");
                v.msize
            }
            other => panic!("{other:?}"),
        });
        self.msize = m;
        m
    }

    pub fn attach_req(fid: u32, aname: &[u8], uid: u32) -> Request<'_> {
        Request::Attach(Tattach { fid: Fid(fid), afid: Fid::NOFID, uname: b"root", aname, n_uname: uid })
    }

    /// Tversion and an attach of the share's root as root on fid 0.
    pub fn start(&mut self) -> Qid {
        self.version(MSIZE);
        self.ok(&Client::attach_req(0, b"", 0), |r| match r {
            Reply::Attach(q) => q,
            other => panic!("{other:?}"),
        })
    }

    pub fn walk_req<'a>(fid: u32, newfid: u32, names: &[Name<'a>]) -> Request<'a> {
        Request::Walk(Twalk { fid: Fid(fid), newfid: Fid(newfid), names: WalkNames::from_slice(names).unwrap() })
    }

    /// A walk that must succeed fully; returns its qids.
    pub fn walk(&mut self, fid: u32, newfid: u32, path: &[&str]) -> Vec<Qid> {
        let names: Vec<Name<'_>> = path.iter().map(|s| name(s)).collect();
        let qids = self.ok(&Client::walk_req(fid, newfid, &names), |r| match r {
            Reply::Walk(q) => q.as_slice().to_vec(),
            other => panic!("{other:?}"),
        });
        assert_eq!(qids.len(), path.len(), "walk {path:?}");
        qids
    }

    pub fn lopen(&mut self, fid: u32, flags: u32) -> Ropen {
        self.ok(&Request::Lopen(Tlopen { fid: Fid(fid), flags }), |r| match r {
            Reply::Lopen(o) => o,
            other => panic!("{other:?}"),
        })
    }

    pub fn read(&mut self, fid: u32, offset: u64, count: u32) -> Vec<u8> {
        self.ok(&Request::Read(Tread { fid: Fid(fid), offset, count }), |r| match r {
            Reply::Read { data } => data.to_vec(),
            other => panic!("{other:?}"),
        })
    }

    pub fn write(&mut self, fid: u32, offset: u64, data: &[u8]) -> u32 {
        self.ok(&Request::Write(Twrite { fid: Fid(fid), offset, data }), |r| match r {
            Reply::Write { count } => count,
            other => panic!("{other:?}"),
        })
    }

    pub fn clunk(&mut self, fid: u32) {
        self.ok(&Request::Clunk(Fid(fid)), |_| ());
    }

    pub fn getattr(&mut self, fid: u32) -> Stat {
        self.ok(&Request::Getattr(Tgetattr { fid: Fid(fid), request_mask: getattr::ALL }), |r| match r {
            Reply::Getattr(s) => s,
            other => panic!("{other:?}"),
        })
    }

    /// Every entry name of an open directory fid, read in small chunks.
    pub fn readdir_names(&mut self, fid: u32, count: u32) -> Vec<String> {
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let frame = self.rpc(&Request::Readdir(Tread { fid: Fid(fid), offset, count }));
            let Reply::Readdir(r) = decode_reply(&frame, 1 << 20).unwrap().1 else { panic!("readdir failed") };
            let mut any = false;
            for e in r.entries() {
                let e = e.unwrap();
                any = true;
                offset = e.offset;
                names.push(String::from_utf8(e.name.to_vec()).unwrap());
            }
            if !any {
                return names;
            }
        }
    }
}
