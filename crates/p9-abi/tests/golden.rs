//! Golden frames: each hand-laid-out frame decodes to its value, and the
//! value encodes to exactly that frame.

mod frames;

use std::collections::HashSet;

use p9_abi::*;

const MSIZE: u32 = 8192;

#[test]
fn requests_decode_to_their_value_and_encode_to_their_frame() {
    for (frame, tag, request) in frames::requests() {
        assert_eq!(decode_request(&frame, MSIZE), Ok((tag, request)), "{request:?}");
        let mut out = Vec::new();
        request.encode(tag, MSIZE, &mut out).unwrap();
        assert_eq!(out, frame, "{request:?}");
    }
}

#[test]
fn replies_decode_to_their_value_and_encode_to_their_frame() {
    for (frame, tag, reply) in frames::replies() {
        assert_eq!(decode_reply(&frame, MSIZE), Ok((tag, reply)), "{reply:?}");
        let mut out = Vec::new();
        reply.encode(tag, MSIZE, &mut out).unwrap();
        assert_eq!(out, frame, "{reply:?}");
    }
}

#[test]
fn every_dotl_message_has_a_golden_frame() {
    let requests: HashSet<_> = frames::requests().iter().map(|(_, _, r)| r.msg_type()).collect();
    let replies: HashSet<_> = frames::replies().iter().map(|(_, _, r)| r.msg_type()).collect();
    for value in 0..=u8::MAX {
        let Some(t) = MsgType::from_u8(value) else { continue };
        if t.is_legacy() || matches!(t, MsgType::Tlerror | MsgType::Terror) {
            continue;
        }
        let covered = if t.is_t() { requests.contains(&t) } else { replies.contains(&t) };
        assert!(covered, "no golden frame for {t}");
    }
    assert_eq!(requests.len(), 28);
    assert_eq!(replies.len(), 29);
}

#[test]
fn frames_in_a_stream_split_one_by_one() {
    let mut stream = Vec::new();
    for (frame, _, _) in frames::requests() {
        stream.extend_from_slice(&frame);
    }
    let mut rest = &stream[..];
    let mut n = 0;
    while let Some(frame) = first_frame(rest, MSIZE).unwrap() {
        decode_request(frame, MSIZE).unwrap();
        rest = &rest[frame.len()..];
        n += 1;
    }
    assert!(rest.is_empty());
    assert_eq!(n, frames::requests().len());
    // An incomplete frame waits for more bytes.
    let first = &frames::requests()[0].0;
    for cut in 0..first.len() {
        assert_eq!(first_frame(&first[..cut], MSIZE), Ok(None), "{cut}");
    }
}

#[test]
fn rread_header_matches_the_encoded_reply() {
    let data = b"hello";
    let mut whole = Vec::new();
    Reply::Read { data }.encode(frames::TAG, MSIZE, &mut whole).unwrap();
    let header = rread_header(frames::TAG, data.len() as u32);
    assert_eq!([&header[..], data].concat(), whole);

    // The same, with the data read in place after room for the header.
    let mut buf = vec![0; RREAD_HEADER_LEN];
    buf.extend_from_slice(data);
    let (head, _) = buf.split_first_chunk_mut::<RREAD_HEADER_LEN>().unwrap();
    put_rread_header(head, frames::TAG, data.len() as u32);
    assert_eq!(buf, whole);
}

#[test]
fn twrite_header_matches_the_encoded_request() {
    let (frame, tag, request) =
        frames::requests().into_iter().find(|(_, _, r)| matches!(r, Request::Write(_))).unwrap();
    let Request::Write(w) = request else { unreachable!() };
    let header = twrite_header(tag, w.fid, w.offset, w.data.len() as u32);
    assert_eq!([&header[..], w.data].concat(), frame);
}

#[test]
fn dirent_writer_builds_the_golden_rreaddir() {
    let (frame, tag, _) = frames::replies().into_iter().find(|(_, _, r)| matches!(r, Reply::Readdir(_))).unwrap();
    let mut w = DirentWriter::new(8192, MSIZE);
    assert!(w.add(&DirEntry { qid: frames::DIR_QID, offset: 1, typ: libc::DT_DIR, name: b"." }));
    assert!(w.add(&DirEntry { qid: frames::FILE_QID, offset: 2, typ: libc::DT_REG, name: b"file" }));
    assert_eq!(w.len(), 53);
    assert_eq!(w.finish(tag), frame);

    // And the entries read back.
    let Ok((_, Reply::Readdir(r))) = decode_reply(&frame, MSIZE) else { panic!() };
    let names: Vec<_> = r.entries().map(|e| e.unwrap().name).collect();
    assert_eq!(names, [&b"."[..], b"file"]);
}

#[test]
fn dirent_writer_stops_at_the_count_and_at_msize() {
    let entry = DirEntry { qid: frames::FILE_QID, offset: 1, typ: libc::DT_REG, name: b"abcdef" };
    assert_eq!(entry.wire_len(), 30);
    // count 85 holds two entries of 30 bytes, and 25 bytes more.
    let mut w = DirentWriter::new(85, MSIZE);
    assert!(w.add(&entry) && w.add(&entry));
    assert!(!w.has_room(6));
    assert!(w.has_room(1)); // 25 bytes left: a 1-byte name fits
    assert!(!w.add(&entry));
    assert_eq!(w.len(), 60);
    let frame = w.finish(Tag(9));
    assert_eq!(frame.len(), RREAD_HEADER_LEN + 60);
    assert!(matches!(decode_reply(&frame, MSIZE), Ok((Tag(9), Reply::Readdir(_)))));

    // A count beyond msize is held to what fits in msize.
    let mut w = DirentWriter::new(u32::MAX, 4096);
    while w.add(&entry) {}
    assert_eq!(w.len(), (max_read_count(4096) as usize / 30) * 30);
    let frame = w.finish(Tag(9));
    assert!(frame.len() <= 4096);
    decode_reply(&frame, 4096).unwrap();

    // A name longer than a 9P string never fits.
    let long = vec![b'x'; 70000];
    let mut w = DirentWriter::new(u32::MAX, u32::MAX);
    assert!(!w.add(&DirEntry { name: &long, ..entry }));
    assert!(w.is_empty());
}

#[test]
fn a_walk_of_sixteen_names_round_trips() {
    let names = [Name::walk_element(b"n").unwrap(); MAXWELEM];
    let request = Request::Walk(Twalk { fid: Fid(1), newfid: Fid(2), names: WalkNames::from_slice(&names).unwrap() });
    let mut out = Vec::new();
    request.encode(Tag(4), MSIZE, &mut out).unwrap();
    assert_eq!(out.len(), 7 + 4 + 4 + 2 + 16 * 3);
    assert_eq!(decode_request(&out, MSIZE), Ok((Tag(4), request)));

    let reply = Reply::Walk(WalkQids::from_slice(&[frames::FILE_QID; MAXWELEM]).unwrap());
    let mut out = Vec::new();
    reply.encode(Tag(4), MSIZE, &mut out).unwrap();
    assert_eq!(decode_reply(&out, MSIZE), Ok((Tag(4), reply)));
}

#[test]
fn a_frame_of_exactly_msize_is_accepted() {
    let msize = 4096;
    let data = vec![7; max_write_count(msize) as usize];
    let request = Request::Write(Twrite { fid: Fid(1), offset: 0, data: &data });
    let mut out = Vec::new();
    request.encode(Tag(1), msize, &mut out).unwrap();
    assert_eq!(out.len(), msize as usize);
    assert_eq!(decode_request(&out, msize), Ok((Tag(1), request)));
}

#[test]
fn io_errors_become_rlerror() {
    let e = std::io::Error::from_raw_os_error(libc::ENOENT);
    assert_eq!(Reply::from_io_error(&e), Reply::Lerror { ecode: libc::ENOENT as u32 });
    let e = std::io::Error::other("no errno");
    assert_eq!(Reply::from_io_error(&e), Reply::Lerror { ecode: libc::EIO as u32 });
}
