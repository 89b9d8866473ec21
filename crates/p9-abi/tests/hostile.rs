//! A hostile client: each malformed frame gets the exact typed error, and
//! the action a server takes (an `Rlerror` on the tag, or closing the
//! connection). No input panics.

mod frames;

use p9_abi::*;

const MSIZE: u32 = 8192;

/// A frame of `msg_type` with tag 7 and `body`, its size computed.
fn frame(msg_type: u8, body: &[&[u8]]) -> Vec<u8> {
    let body = body.concat();
    let size = (7 + body.len()) as u32;
    [&size.to_le_bytes()[..], &[msg_type], &7u16.to_le_bytes(), &body].concat()
}

fn s(bytes: &[u8]) -> Vec<u8> {
    [&(bytes.len() as u16).to_le_bytes()[..], bytes].concat()
}

fn body_error(frame: &[u8]) -> BodyError {
    match decode_request(frame, MSIZE) {
        Err(DecodeError::Body { tag: Tag(7), error, .. }) => error,
        other => panic!("{other:?}"),
    }
}

fn rlerror(errno: i32) -> Action {
    Action::Reply { tag: Tag(7), errno: errno as u32 }
}

#[test]
fn a_size_below_the_header_closes_the_connection() {
    for size in 0..7u32 {
        assert_eq!(frame_size(size.to_le_bytes(), MSIZE), Err(FrameError::TooSmall { size }));
        let mut f = vec![0; 7];
        f[..4].copy_from_slice(&size.to_le_bytes());
        let e = decode_request(&f, MSIZE).unwrap_err();
        assert_eq!(e, DecodeError::Frame(FrameError::TooSmall { size }));
        assert_eq!(e.action(), Action::Close);
        assert_eq!(first_frame(&f, MSIZE), Err(FrameError::TooSmall { size }));
    }
}

#[test]
fn a_size_above_msize_closes_the_connection_before_reading_it() {
    assert_eq!(frame_size(8193u32.to_le_bytes(), MSIZE), Err(FrameError::TooLarge { size: 8193, msize: MSIZE }));
    assert_eq!(frame_size(u32::MAX.to_le_bytes(), MSIZE), Err(FrameError::TooLarge { size: u32::MAX, msize: MSIZE }));
    assert_eq!(frame_size(8192u32.to_le_bytes(), MSIZE), Ok(8192));
    // The four bytes alone are enough to refuse it.
    assert_eq!(first_frame(&u32::MAX.to_le_bytes(), MSIZE), Err(FrameError::TooLarge { size: u32::MAX, msize: MSIZE }));
    let mut f = frame(120, &[&[1, 0, 0, 0]]);
    f[..4].copy_from_slice(&9000u32.to_le_bytes());
    let e = decode_request(&f, MSIZE).unwrap_err();
    assert_eq!(e, DecodeError::Frame(FrameError::TooLarge { size: 9000, msize: MSIZE }));
    assert_eq!(e.action(), Action::Close);
}

#[test]
fn a_buffer_that_is_not_exactly_one_frame_is_refused() {
    let f = frame(120, &[&[1, 0, 0, 0]]);
    for cut in 0..4 {
        assert_eq!(
            decode_request(&f[..cut], MSIZE),
            Err(DecodeError::Frame(FrameError::SizeMismatch { size: 0, len: cut }))
        );
    }
    for cut in 4..f.len() {
        assert_eq!(
            decode_request(&f[..cut], MSIZE),
            Err(DecodeError::Frame(FrameError::SizeMismatch { size: 11, len: cut }))
        );
    }
    let longer = [&f[..], &[0]].concat();
    assert_eq!(decode_request(&longer, MSIZE), Err(DecodeError::Frame(FrameError::SizeMismatch { size: 11, len: 12 })));
}

/// Every golden request cut short at every byte of its body (the size
/// field patched to match) fails with a body error, never a panic.
#[test]
fn every_truncated_request_is_an_error_on_its_tag() {
    for (full, tag, request) in frames::requests() {
        for len in 7..full.len() {
            let mut f = full[..len].to_vec();
            f[..4].copy_from_slice(&(len as u32).to_le_bytes());
            match decode_request(&f, MSIZE) {
                Err(
                    e @ DecodeError::Body {
                        error: BodyError::Truncated { .. } | BodyError::CountBeyondFrame { .. },
                        ..
                    },
                ) => {
                    assert_eq!(
                        e.action(),
                        Action::Reply { tag, errno: libc::EPROTO as u32 },
                        "{request:?} cut at {len}"
                    )
                }
                other => panic!("{request:?} cut at {len}: {other:?}"),
            }
        }
    }
}

#[test]
fn every_truncated_reply_is_an_error() {
    for (full, _, reply) in frames::replies() {
        for len in 7..full.len() {
            let mut f = full[..len].to_vec();
            f[..4].copy_from_slice(&(len as u32).to_le_bytes());
            assert!(
                matches!(
                    decode_reply(&f, MSIZE),
                    Err(DecodeError::Body {
                        error: BodyError::Truncated { .. } | BodyError::CountBeyondFrame { .. },
                        ..
                    })
                ),
                "{reply:?} cut at {len}"
            );
        }
    }
}

#[test]
fn a_byte_after_the_last_field_is_an_error() {
    for (full, tag, request) in frames::requests() {
        let mut f = [&full[..], &[0xaa]].concat();
        let len = f.len() as u32;
        f[..4].copy_from_slice(&len.to_le_bytes());
        let e = decode_request(&f, MSIZE).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Body { tag, msg_type: full[4], error: BodyError::TrailingBytes { count: 1 } },
            "{request:?}"
        );
    }
    for (full, _, reply) in frames::replies() {
        let mut f = [&full[..], &[0xaa, 0xbb]].concat();
        let len = f.len() as u32;
        f[..4].copy_from_slice(&len.to_le_bytes());
        assert!(
            matches!(
                decode_reply(&f, MSIZE),
                Err(DecodeError::Body { error: BodyError::TrailingBytes { count: 2 }, .. })
            ),
            "{reply:?}"
        );
    }
}

#[test]
fn a_string_length_beyond_the_frame() {
    // Tattach whose uname says 0xffff bytes.
    let f = frame(104, &[&[0; 4], &[0xff; 4], &[0xff, 0xff], b"root"]);
    assert_eq!(body_error(&f), BodyError::CountBeyondFrame { field: "uname", count: 0xffff, left: 4 });
    // A Twalk name that runs past the end.
    let f = frame(110, &[&[0; 4], &[1, 0, 0, 0], &[1, 0], &[9, 0], b"abc"]);
    assert_eq!(body_error(&f), BodyError::CountBeyondFrame { field: "wname", count: 9, left: 3 });
    assert_eq!(decode_request(&f, MSIZE).unwrap_err().action(), rlerror(libc::EPROTO));
}

#[test]
fn a_write_count_beyond_or_short_of_the_frame() {
    let head = |count: u32| [&[1, 0, 0, 0][..], &[0; 8], &count.to_le_bytes()].concat();
    let f = frame(118, &[&head(4), b"abc"]);
    assert_eq!(body_error(&f), BodyError::CountBeyondFrame { field: "count", count: 4, left: 3 });
    let f = frame(118, &[&head(u32::MAX), b"abc"]);
    assert_eq!(body_error(&f), BodyError::CountBeyondFrame { field: "count", count: u32::MAX, left: 3 });
    let f = frame(118, &[&head(2), b"abc"]);
    assert_eq!(body_error(&f), BodyError::TrailingBytes { count: 1 });
    // The data is the frame's own bytes, not a copy.
    let f = frame(118, &[&head(3), b"abc"]);
    let Ok((_, Request::Write(w))) = decode_request(&f, MSIZE) else { panic!() };
    assert_eq!(w.data.as_ptr(), f[23..].as_ptr());
}

#[test]
fn a_read_reply_count_beyond_the_frame() {
    let mut f = frame(117, &[&[6, 0, 0, 0], b"hello"]);
    assert!(matches!(
        decode_reply(&f, MSIZE),
        Err(DecodeError::Body { error: BodyError::CountBeyondFrame { count: 6, left: 5, .. }, .. })
    ));
    f[7] = 5;
    assert!(matches!(decode_reply(&f, MSIZE), Ok((_, Reply::Read { data: b"hello" }))));
}

#[test]
fn strings_with_nul() {
    let f = frame(104, &[&[0; 4], &[0xff; 4], &s(b"ro\0ot"), &s(b""), &[0; 4]]);
    assert_eq!(body_error(&f), BodyError::Nul { field: "uname" });
    assert_eq!(decode_request(&f, MSIZE).unwrap_err().action(), rlerror(libc::EINVAL));
    let f = frame(16, &[&[1, 0, 0, 0], &s(b"l"), &s(b"\0"), &[0; 4]]);
    assert_eq!(body_error(&f), BodyError::Nul { field: "symtgt" });
    let f = frame(30, &[&[1, 0, 0, 0], &[2, 0, 0, 0], &s(b"user.\0")]);
    assert_eq!(body_error(&f), BodyError::Nul { field: "name" });
    let f = frame(52, &[&[1, 0, 0, 0], &[0], &[0; 4], &[0; 8], &[0; 8], &[0; 4], &s(b"v\0m")]);
    assert_eq!(body_error(&f), BodyError::Nul { field: "client_id" });
}

#[test]
fn names_that_are_not_one_component() {
    let bad = |field, error| BodyError::BadName { field, error };
    let walk = |name: &[u8]| frame(110, &[&[0; 4], &[1, 0, 0, 0], &[1, 0], &s(name)]);
    assert_eq!(body_error(&walk(b"a/b")), bad("wname", NameError::Slash));
    assert_eq!(body_error(&walk(b"/")), bad("wname", NameError::Slash));
    assert_eq!(body_error(&walk(b"a\0")), bad("wname", NameError::Nul));
    assert_eq!(body_error(&walk(b"")), bad("wname", NameError::Empty));
    assert_eq!(decode_request(&walk(b"a/b"), MSIZE).unwrap_err().action(), rlerror(libc::EINVAL));
    // `..` and `.` are walkable: the server keeps `..` inside the share.
    assert!(decode_request(&walk(b".."), MSIZE).is_ok());
    assert!(decode_request(&walk(b"."), MSIZE).is_ok());

    let mkdir = |name: &[u8]| frame(72, &[&[1, 0, 0, 0], &s(name), &[0; 4], &[0; 4]]);
    assert_eq!(body_error(&mkdir(b"..")), bad("name", NameError::Dot));
    assert_eq!(body_error(&mkdir(b".")), bad("name", NameError::Dot));
    assert_eq!(body_error(&mkdir(b"../x")), bad("name", NameError::Slash));
    assert_eq!(body_error(&mkdir(b"")), bad("name", NameError::Empty));

    let lcreate = frame(14, &[&[1, 0, 0, 0], &s(b"a/b"), &[0; 4], &[0; 4], &[0; 4]]);
    assert_eq!(body_error(&lcreate), bad("name", NameError::Slash));
    let renameat = frame(74, &[&[1, 0, 0, 0], &s(b"a"), &[1, 0, 0, 0], &s(b"..")]);
    assert_eq!(body_error(&renameat), bad("newname", NameError::Dot));
    let rename = frame(20, &[&[1, 0, 0, 0], &[1, 0, 0, 0], &s(b"x/..")]);
    assert_eq!(body_error(&rename), bad("name", NameError::Slash));
    let unlinkat = frame(76, &[&[1, 0, 0, 0], &s(b".."), &[0, 2, 0, 0]]);
    assert_eq!(body_error(&unlinkat), bad("name", NameError::Dot));
    let link = frame(70, &[&[1, 0, 0, 0], &[2, 0, 0, 0], &s(b"/etc")]);
    assert_eq!(body_error(&link), bad("name", NameError::Slash));
    let symlink = frame(16, &[&[1, 0, 0, 0], &s(b"a/b"), &s(b"t"), &[0; 4]]);
    assert_eq!(body_error(&symlink), bad("name", NameError::Slash));
    let mknod = frame(18, &[&[1, 0, 0, 0], &s(b"."), &[0; 4], &[0; 4], &[0; 4], &[0; 4]]);
    assert_eq!(body_error(&mknod), bad("name", NameError::Dot));
    // An xattr to create needs a name.
    let xattrcreate = frame(32, &[&[1, 0, 0, 0], &s(b""), &[0; 8], &[0; 4]]);
    assert_eq!(body_error(&xattrcreate), BodyError::Empty { field: "name" });
}

#[test]
fn too_many_walk_names() {
    let mut names = Vec::new();
    for _ in 0..17 {
        names.extend_from_slice(&s(b"n"));
    }
    let f = frame(110, &[&[0; 4], &[1, 0, 0, 0], &[17, 0], &names]);
    assert_eq!(body_error(&f), BodyError::TooManyWalkElements { count: 17 });
    assert_eq!(decode_request(&f, MSIZE).unwrap_err().action(), rlerror(libc::EINVAL));
    // Refused from the count alone, before any name is read.
    let f = frame(110, &[&[0; 4], &[1, 0, 0, 0], &[0xff, 0xff]]);
    assert_eq!(body_error(&f), BodyError::TooManyWalkElements { count: 0xffff });
    // And in a reply.
    let f = frame(111, &[&[17, 0], &[0; 13 * 17]]);
    assert!(matches!(
        decode_reply(&f, MSIZE),
        Err(DecodeError::Body { error: BodyError::TooManyWalkElements { count: 17 }, .. })
    ));
}

#[test]
fn unknown_and_foreign_message_types() {
    for t in [0u8, 1, 5, 10, 11, 28, 42, 99, 128, 200, 255] {
        let f = frame(t, &[&[1, 0, 0, 0]]);
        let e = decode_request(&f, MSIZE).unwrap_err();
        assert_eq!(e, DecodeError::Body { tag: Tag(7), msg_type: t, error: BodyError::UnknownType(t) });
        assert_eq!(e.action(), rlerror(libc::EOPNOTSUPP));
        assert!(matches!(decode_reply(&f, MSIZE), Err(DecodeError::Body { error: BodyError::UnknownType(_), .. })));
    }
    // 9P2000 and 9P2000.u requests.
    for t in [MsgType::Topen, MsgType::Tcreate, MsgType::Tstat, MsgType::Twstat] {
        let f = frame(t as u8, &[&[1, 0, 0, 0]]);
        assert_eq!(body_error(&f), BodyError::NotDotL(t));
        assert_eq!(decode_request(&f, MSIZE).unwrap_err().action(), rlerror(libc::EOPNOTSUPP));
    }
    // Replies sent as requests, and the two never-valid T types.
    for t in [MsgType::Rversion, MsgType::Rlerror, MsgType::Rread, MsgType::Tlerror, MsgType::Terror] {
        let f = frame(t as u8, &[&[0; 4]]);
        assert_eq!(body_error(&f), BodyError::WrongDirection(t));
        assert_eq!(decode_request(&f, MSIZE).unwrap_err().action(), rlerror(libc::EPROTO));
    }
    // And requests where a reply is expected.
    let f = frame(MsgType::Tclunk as u8, &[&[0; 4]]);
    assert!(matches!(decode_reply(&f, MSIZE), Err(DecodeError::Body { error: BodyError::WrongDirection(_), .. })));
    let f = frame(MsgType::Rerror as u8, &[&s(b"x")]);
    assert!(matches!(decode_reply(&f, MSIZE), Err(DecodeError::Body { error: BodyError::NotDotL(_), .. })));
}

#[test]
fn bad_lock_values() {
    let f = frame(52, &[&[1, 0, 0, 0], &[3], &[0; 4], &[0; 8], &[0; 8], &[0; 4], &s(b"vm")]);
    assert_eq!(body_error(&f), BodyError::BadLockType(3));
    let f = frame(54, &[&[1, 0, 0, 0], &[0xff], &[0; 8], &[0; 8], &[0; 4], &s(b"vm")]);
    assert_eq!(body_error(&f), BodyError::BadLockType(0xff));
    let f = frame(53, &[&[4]]);
    assert!(matches!(decode_reply(&f, MSIZE), Err(DecodeError::Body { error: BodyError::BadLockStatus(4), .. })));
}

#[test]
fn a_malformed_readdir_reply() {
    // An entry whose name runs past the data.
    let entry = [&[0u8; 13][..], &[0; 8], &[4], &[9, 0], b"abc"].concat();
    let f = frame(41, &[&(entry.len() as u32).to_le_bytes(), &entry]);
    assert!(matches!(
        decode_reply(&f, MSIZE),
        Err(DecodeError::Body { error: BodyError::CountBeyondFrame { field: "dirent name", .. }, .. })
    ));
    // An entry with a '/' in its name.
    let entry = [&[0u8; 13][..], &[0; 8], &[4], &s(b"a/b")].concat();
    let f = frame(41, &[&(entry.len() as u32).to_le_bytes(), &entry]);
    assert!(matches!(
        decode_reply(&f, MSIZE),
        Err(DecodeError::Body { error: BodyError::BadName { error: NameError::Slash, .. }, .. })
    ));
}

#[test]
fn the_encoder_refuses_what_does_not_fit_and_appends_nothing() {
    let mut out = vec![1, 2, 3];
    let long = vec![b'x'; 65536];
    let e = Reply::Readlink { target: &long }.encode(Tag(1), u32::MAX, &mut out);
    assert_eq!(e, Err(EncodeError::StringTooLong { field: "target", len: 65536 }));
    assert_eq!(out, [1, 2, 3]);

    let data = vec![0; 8192];
    let e = Reply::Read { data: &data }.encode(Tag(1), 8192, &mut out);
    assert_eq!(e, Err(EncodeError::TooLarge { size: 8192 + 11, msize: 8192 }));
    assert_eq!(out, [1, 2, 3]);
    let e = Reply::Read { data: &data[..8192 - 11] }.encode(Tag(1), 8192, &mut out);
    assert_eq!(e, Ok(()));
    assert_eq!(out.len(), 3 + 8192);
}

/// Mutations of the golden frames and pseudo-random bytes: never a panic,
/// and what decodes re-encodes to the same bytes (the fuzz target does
/// the same at length).
#[test]
fn mutated_frames_never_panic_and_round_trip_when_they_decode() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let goldens: Vec<Vec<u8>> = frames::requests()
        .into_iter()
        .map(|(f, _, _)| f)
        .chain(frames::replies().into_iter().map(|(f, _, _)| f))
        .collect();
    let mut decoded = 0;
    for round in 0..200_000 {
        let mut f = goldens[(next() % goldens.len() as u64) as usize].clone();
        for _ in 0..=(next() % 3) {
            let i = (next() % f.len() as u64) as usize;
            f[i] = next() as u8;
        }
        if round % 2 == 0 {
            // Keep the size field right so the body gets checked.
            let len = f.len() as u32;
            f[..4].copy_from_slice(&len.to_le_bytes());
        }
        if let Ok((tag, request)) = decode_request(&f, MSIZE) {
            let mut out = Vec::new();
            request.encode(tag, MSIZE, &mut out).unwrap();
            assert_eq!(out, f);
            decoded += 1;
        }
        if let Ok((tag, reply)) = decode_reply(&f, MSIZE) {
            let mut out = Vec::new();
            reply.encode(tag, MSIZE, &mut out).unwrap();
            assert_eq!(out, f);
            decoded += 1;
        }
    }
    assert!(decoded > 1000, "{decoded}");
}
