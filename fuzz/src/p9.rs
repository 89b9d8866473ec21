//! The `p9_codec` target: the 9P2000.L codec of `p9-abi` on arbitrary bytes.
//!
//! Input: one byte choosing msize (`4096 << (b % 5)`, 4 KiB to 64 KiB),
//! then a stream of frames as a connection would deliver them. Each frame
//! is split off with `first_frame`, decoded as a request and as a reply.
//!
//! Invariants: no panic; a frame error ends the stream (the server closes
//! the connection); a body error's action is an `Rlerror` on the frame's
//! tag that encodes within msize; whatever decodes re-encodes to exactly
//! its bytes; decoded names are one component without NUL, walks hold at
//! most 16 names, `Twrite`'s data lies inside the frame; a `Treaddir`
//! reply built with `DirentWriter` stays within the count and msize.

use p9_abi::{
    decode_reply, decode_request, first_frame, rread_header, Action, DecodeError, DirEntry, DirentWriter, Name, Qid,
    Reply, Request, Tag, MAXWELEM,
};

/// The harness for one input.
pub fn run(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let msize = 4096u32 << (first % 5);
    // The whole input as one frame too (the exact-length check).
    let _ = decode_request(rest, msize);
    while let Ok(Some(frame)) = first_frame(rest, msize) {
        check_frame(frame, msize);
        rest = &rest[frame.len()..];
    }
}

fn check_frame(frame: &[u8], msize: u32) {
    assert!(frame.len() >= 7 && frame.len() <= msize as usize);
    let tag = Tag(u16::from_le_bytes([frame[5], frame[6]]));
    match decode_request(frame, msize) {
        Ok((t, request)) => {
            assert_eq!(t, tag);
            check_request(frame, &request, msize);
            let mut out = Vec::new();
            request.encode(tag, msize, &mut out).expect("a decoded request encodes");
            assert_eq!(out, frame, "{request:?} did not re-encode to its frame");
        }
        Err(DecodeError::Frame(e)) => panic!("first_frame passed a frame that decode refuses: {e}"),
        Err(e @ DecodeError::Body { .. }) => {
            let Action::Reply { tag: t, errno } = e.action() else { panic!("{e}: a body error closes") };
            assert_eq!(t, tag);
            assert!(errno > 0 && errno < 4096, "{e}: errno {errno}");
            let mut out = Vec::new();
            Reply::Lerror { ecode: errno }.encode(tag, msize, &mut out).expect("Rlerror fits any msize");
            assert_eq!(decode_reply(&out, msize), Ok((tag, Reply::Lerror { ecode: errno })));
        }
    }
    if let Ok((t, reply)) = decode_reply(frame, msize) {
        assert_eq!(t, tag);
        let mut out = Vec::new();
        reply.encode(tag, msize, &mut out).expect("a decoded reply encodes");
        assert_eq!(out, frame, "{reply:?} did not re-encode to its frame");
        match reply {
            Reply::Read { data } => {
                let header = rread_header(tag, data.len() as u32);
                assert_eq!([&header[..], data].concat(), frame);
            }
            Reply::Readdir(r) => {
                // Rebuilding the listing entry by entry gives the same frame.
                let mut w = DirentWriter::new(u32::MAX, msize);
                for entry in r.entries() {
                    assert!(w.add(&entry.expect("decode checked the entries")));
                }
                assert_eq!(w.finish(tag), frame);
            }
            _ => {}
        }
    }
}

fn check_name(name: &Name<'_>) {
    let bytes = name.as_bytes();
    assert!(!bytes.is_empty() && !bytes.contains(&b'/') && !bytes.contains(&0), "{name:?}");
}

fn check_request(frame: &[u8], request: &Request<'_>, msize: u32) {
    let range = frame.as_ptr_range();
    match request {
        Request::Walk(w) => {
            assert!(w.names.len() <= MAXWELEM);
            w.names.as_slice().iter().for_each(check_name);
        }
        Request::Write(w) => {
            let data = w.data.as_ptr_range();
            assert!(range.start <= data.start && data.end <= range.end, "Twrite data outside its frame");
        }
        Request::Lcreate(m) => check_entry(&m.name),
        Request::Mkdir(m) => check_entry(&m.name),
        Request::Symlink(m) => {
            check_entry(&m.name);
            assert!(!m.target.contains(&0));
        }
        Request::Mknod(m) => check_entry(&m.name),
        Request::Rename(m) => check_entry(&m.name),
        Request::Renameat(m) => {
            check_entry(&m.oldname);
            check_entry(&m.newname);
        }
        Request::Unlinkat(m) => check_entry(&m.name),
        Request::Link(m) => check_entry(&m.name),
        Request::Attach(m) => assert!(!m.uname.contains(&0) && !m.aname.contains(&0)),
        Request::Xattrcreate(m) => assert!(!m.name.is_empty() && !m.name.contains(&0)),
        Request::Readdir(r) => {
            // A listing answered as a server would: as many entries as fit.
            let mut w = DirentWriter::new(r.count, msize);
            let name = [b'n'; 40];
            let entry = DirEntry { qid: Qid::default(), offset: 1, typ: 8, name: &name };
            while w.add(&entry) {}
            assert!(w.len() <= r.count as usize);
            let reply = w.finish(Tag(0));
            assert!(reply.len() <= msize as usize);
            decode_reply(&reply, msize).expect("the writer's Rreaddir decodes");
        }
        _ => {}
    }
}

fn check_entry(name: &Name<'_>) {
    check_name(name);
    assert!(!name.is_dot_or_dotdot(), "{name:?}");
}

/// Seeds: every 9P2000.L request and reply once, a session as a Linux
/// client opens it, and a few malformed frames (msize byte 4: 64 KiB).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use p9_abi::*;
    let msize = 65536;
    let enc = |request: Request<'_>| {
        let mut out = Vec::new();
        request.encode(Tag(1), msize, &mut out).expect("a seed encodes");
        out
    };
    let encr = |reply: Reply<'_>| {
        let mut out = Vec::new();
        reply.encode(Tag(1), msize, &mut out).expect("a seed encodes");
        out
    };
    let n = |s: &'static [u8]| Name::entry(s).expect("a seed name");
    let qid = Qid { typ: qid_type::DIR, version: 0, path: 2 };
    let getlock = Getlock { lock_type: LockType::Write, start: 0, length: 10, proc_id: 7, client_id: b"vm" };
    let requests = [
        ("version", Request::Version(Tversion { msize: 65536, version: VERSION_9P2000_L })),
        ("auth", Request::Auth(Tauth { afid: Fid(9), uname: b"root", aname: b"", n_uname: 0 })),
        ("attach", Request::Attach(Tattach { fid: Fid(0), afid: Fid::NOFID, uname: b"root", aname: b"", n_uname: 0 })),
        ("flush", Request::Flush { oldtag: Tag(3) }),
        (
            "walk",
            Request::Walk(Twalk {
                fid: Fid(0),
                newfid: Fid(1),
                names: WalkNames::from_slice(&[
                    Name::walk_element(b"..").expect("dotdot"),
                    Name::walk_element(b"file").expect("file"),
                ])
                .expect("two names"),
            }),
        ),
        ("lopen", Request::Lopen(Tlopen { fid: Fid(1), flags: open_flags::RDWR })),
        (
            "lcreate",
            Request::Lcreate(Tlcreate { fid: Fid(1), name: n(b"new"), flags: open_flags::CREATE, mode: 0o644, gid: 0 }),
        ),
        ("read", Request::Read(Tread { fid: Fid(1), offset: 0, count: 4096 })),
        ("write", Request::Write(Twrite { fid: Fid(1), offset: 3, data: b"data" })),
        ("clunk", Request::Clunk(Fid(1))),
        ("remove", Request::Remove(Fid(1))),
        ("getattr", Request::Getattr(Tgetattr { fid: Fid(1), request_mask: getattr::ALL })),
        (
            "setattr",
            Request::Setattr(Tsetattr { fid: Fid(1), attr: SetAttr { valid: setattr::KNOWN, ..SetAttr::default() } }),
        ),
        ("readdir", Request::Readdir(Tread { fid: Fid(1), offset: 0, count: 8192 })),
        ("mkdir", Request::Mkdir(Tmkdir { dfid: Fid(0), name: n(b"d"), mode: 0o755, gid: 0 })),
        ("symlink", Request::Symlink(Tsymlink { dfid: Fid(0), name: n(b"l"), target: b"../../etc", gid: 0 })),
        ("mknod", Request::Mknod(Tmknod { dfid: Fid(0), name: n(b"p"), mode: 0o10600, major: 0, minor: 0, gid: 0 })),
        ("rename", Request::Rename(Trename { fid: Fid(1), dfid: Fid(0), name: n(b"r") })),
        (
            "renameat",
            Request::Renameat(Trenameat { olddirfid: Fid(0), oldname: n(b"a"), newdirfid: Fid(0), newname: n(b"b") }),
        ),
        ("unlinkat", Request::Unlinkat(Tunlinkat { dirfid: Fid(0), name: n(b"d"), flags: unlinkat::REMOVEDIR })),
        ("link", Request::Link(Tlink { dfid: Fid(0), fid: Fid(1), name: n(b"h") })),
        ("readlink", Request::Readlink(Fid(1))),
        ("statfs", Request::Statfs(Fid(0))),
        ("fsync", Request::Fsync(Tfsync { fid: Fid(1), datasync: 0 })),
        ("xattrwalk", Request::Xattrwalk(Txattrwalk { fid: Fid(1), newfid: Fid(2), name: b"user.x" })),
        ("xattrcreate", Request::Xattrcreate(Txattrcreate { fid: Fid(1), name: b"user.x", attr_size: 3, flags: 0 })),
        (
            "lock",
            Request::Lock(Tlock {
                fid: Fid(1),
                lock_type: LockType::Read,
                flags: lock_flags::BLOCK,
                start: 0,
                length: 0,
                proc_id: 7,
                client_id: b"vm",
            }),
        ),
        ("getlock", Request::Getlock(Tgetlock { fid: Fid(1), lock: getlock })),
    ];
    let mut dirents = DirentWriter::new(4096, msize);
    dirents.add(&DirEntry { qid, offset: 1, typ: 4, name: b"." });
    dirents.add(&DirEntry { qid, offset: 2, typ: 4, name: b".." });
    let mut readdir_reply = dirents.finish(Tag(1));
    let replies = [
        ("r-version", Reply::Version(Rversion { msize: 65536, version: VERSION_9P2000_L })),
        ("r-lerror", Reply::Lerror { ecode: 2 }),
        ("r-walk", Reply::Walk(WalkQids::from_slice(&[qid, qid]).expect("two qids"))),
        ("r-lopen", Reply::Lopen(Ropen { qid, iounit: 0 })),
        ("r-read", Reply::Read { data: b"hello" }),
        ("r-getattr", Reply::Getattr(Stat { valid: getattr::BASIC, qid, mode: 0o40755, ..Stat::default() })),
        ("r-statfs", Reply::Statfs(StatFs { bsize: 4096, namelen: 255, ..StatFs::default() })),
        ("r-readlink", Reply::Readlink { target: b"t" }),
        ("r-lock", Reply::Lock(LockStatus::Blocked)),
        ("r-getlock", Reply::Getlock(getlock)),
        ("r-xattrwalk", Reply::Xattrwalk { size: 3 }),
        ("r-clunk", Reply::Clunk),
    ];
    let with_msize = |frames: &[u8]| [&[4u8][..], frames].concat();
    let mut seeds: Vec<(&'static str, Vec<u8>)> =
        requests.iter().map(|&(name, r)| (name, with_msize(&enc(r)))).collect();
    seeds.extend(replies.iter().map(|&(name, r)| (name, with_msize(&encr(r)))));
    readdir_reply.insert(0, 4);
    seeds.push(("r-readdir", readdir_reply));

    // A session: version, attach, walk, open, write, read, readdir, clunk.
    let session: Vec<u8> = ["version", "attach", "walk", "lopen", "write", "read", "readdir", "clunk"]
        .iter()
        .flat_map(|name| requests.iter().find(|r| r.0 == *name).map(|r| enc(r.1)).unwrap_or_default())
        .collect();
    seeds.push(("session", with_msize(&session)));

    // Malformed: a walk of 17 names, a name with '/', a Twrite count past
    // the frame, an unknown type, a size below the header.
    let mut walk17 = vec![0u8, 0, 0, 0, 110, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 17, 0];
    for _ in 0..17 {
        walk17.extend_from_slice(&[1, 0, b'x']);
    }
    let len = walk17.len() as u32;
    walk17[..4].copy_from_slice(&len.to_le_bytes());
    seeds.push(("bad-walk17", with_msize(&walk17)));
    seeds.push((
        "bad-slash",
        with_msize(&[19, 0, 0, 0, 110, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 3, 0, b'a', b'/', b'b'][..]),
    ));
    let mut write = enc(Request::Write(Twrite { fid: Fid(1), offset: 0, data: b"abc" }));
    write[19] = 200;
    seeds.push(("bad-write-count", with_msize(&write)));
    seeds.push(("bad-type", with_msize(&[11, 0, 0, 0, 99, 1, 0, 0, 0, 0, 0])));
    seeds.push(("bad-size", with_msize(&[3, 0, 0, 0, 100, 1, 0])));
    seeds.sort_by_key(|s| s.0);
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_pass_and_valid_ones_decode() {
        for (name, data) in seeds() {
            run(&data);
            if name.starts_with("bad-") {
                continue;
            }
            let frames = &data[1..];
            let frame = first_frame(frames, 65536).unwrap().unwrap();
            let ok = if name.starts_with("r-") {
                decode_reply(frame, 65536).is_ok()
            } else {
                decode_request(frame, 65536).is_ok()
            };
            assert!(ok, "{name}");
        }
    }
}
