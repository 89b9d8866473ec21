//! What every reply of the server must satisfy, whatever the request.

use avpfs_server::{Error, Handled};
use fuse_abi::{self as abi, opcode, InHeader, OutHeader};
use zerocopy::FromBytes;

use crate::frames::IN_HEADER_SIZE;

/// Size of a reply header.
pub const OUT_HEADER_SIZE: usize = core::mem::size_of::<OutHeader>();
/// The kernel refuses replies whose error is outside `-511..=0`
/// (`fuse_dev_do_write`: `oh.error <= -512 || oh.error > 0`).
pub const MIN_ERROR: i32 = -511;

fn no_reply(op: u32) -> bool {
    matches!(op, opcode::FORGET | opcode::BATCH_FORGET | opcode::INTERRUPT | opcode::NOTIFY_REPLY)
}

fn arg<T: FromBytes + zerocopy::KnownLayout + zerocopy::Immutable>(frame: &[u8]) -> Option<T> {
    T::read_from_prefix(frame.get(IN_HEADER_SIZE..)?).ok().map(|(v, _)| v)
}

/// How many entries of a READDIRPLUS reply body carry a node id (each one a
/// lookup reference the client now holds).
pub fn direntplus_nodes(mut body: &[u8]) -> usize {
    let mut n = 0;
    while let Ok((d, _)) = abi::DirentPlus::read_from_prefix(body) {
        n += usize::from(d.entry_out.nodeid != 0);
        match body.get(abi::direntplus_size(d.dirent.namelen as usize)..) {
            Some(rest) => body = rest,
            None => break,
        }
    }
    n
}

/// Checks one directory listing: every entry complete, aligned, with a
/// plausible name; the entries fill the body exactly.
fn check_dirents(mut body: &[u8], plus: bool) {
    while !body.is_empty() {
        let (dirent, size) = if plus {
            let (d, _) = abi::DirentPlus::read_from_prefix(body).expect("truncated READDIRPLUS entry");
            (d.dirent, abi::direntplus_size(d.dirent.namelen as usize))
        } else {
            let (d, _) = abi::Dirent::read_from_prefix(body).expect("truncated READDIR entry");
            (d, abi::dirent_size(d.namelen as usize))
        };
        let namelen = dirent.namelen as usize;
        assert!((1..=255).contains(&namelen), "directory entry with a name of {namelen} bytes");
        assert!(size <= body.len(), "directory entry of {size} bytes overruns the reply ({} left)", body.len());
        let header = if plus { core::mem::size_of::<abi::DirentPlus>() } else { core::mem::size_of::<abi::Dirent>() };
        let name = &body[header..header + namelen];
        assert!(!name.contains(&b'/') && !name.contains(&0), "directory entry name {name:?}");
        body = &body[size..];
    }
}

/// Checks the outcome of one request and returns the body of a successful
/// reply (for recording node ids and handles).
///
/// - `frame`: the request as given to the server;
/// - `cap`: the writer's capacity;
/// - `initialized`: whether the session was initialized before the request;
/// - `written`: the bytes in the writer afterwards.
pub fn check<'w>(
    frame: &[u8],
    cap: usize,
    initialized: bool,
    result: &Result<Handled, Error>,
    written: &'w [u8],
) -> Option<&'w [u8]> {
    assert!(written.len() <= cap, "{} bytes written into a writer of {cap}", written.len());
    let Ok((h, _)) = InHeader::read_from_prefix(frame) else {
        assert!(matches!(result, Err(Error::ShortHeader(n)) if *n == frame.len()), "short frame: {result:?}");
        assert!(written.is_empty(), "a reply to a request without header");
        return None;
    };
    let op = h.opcode;
    let n = match result {
        Err(Error::ShortHeader(_)) => panic!("ShortHeader for a frame of {} bytes", frame.len()),
        Err(Error::Reply(_)) => {
            assert!(cap < OUT_HEADER_SIZE, "no reply written although {cap} bytes of room");
            return None;
        }
        Ok(Handled::NoReply) => {
            assert!(no_reply(op), "opcode {op} ({}) left without a reply", opcode::name(op));
            assert!(written.is_empty(), "{} bytes written for a request without reply", written.len());
            return None;
        }
        Ok(Handled::Reply(n)) => *n,
    };
    assert!(!no_reply(op), "a reply to {} (the kernel expects none)", opcode::name(op));
    assert!((OUT_HEADER_SIZE..=cap).contains(&n), "reply length {n} with a writer of {cap}");
    assert_eq!(written.len(), n, "returned length {n} but {} bytes written", written.len());
    let (out, _) = OutHeader::read_from_prefix(written).expect("reply without header");
    assert_eq!(out.len as usize, n, "header length {} but reply of {n} bytes", out.len);
    assert_eq!(out.unique, h.unique, "reply to the wrong unique");
    let len_ok = (IN_HEADER_SIZE..=frame.len()).contains(&(h.len as usize));
    // The extensions (total_extlen, 8-byte units) must fit in the body.
    let ext_ok = usize::from(h.total_extlen) * 8 <= (h.len as usize).saturating_sub(IN_HEADER_SIZE);
    if out.error != 0 {
        assert!((MIN_ERROR..0).contains(&out.error), "error {} out of range", out.error);
        assert_eq!(n, OUT_HEADER_SIZE, "error reply with a body");
        if !len_ok {
            assert_eq!(out.error, -libc::EINVAL, "bad length field not refused with EINVAL");
        } else if !initialized && op != opcode::INIT && ext_ok {
            assert_eq!(out.error, -libc::EIO, "{} before INIT", opcode::name(op));
        }
        return None;
    }
    assert!(len_ok, "{} with length field {} (frame of {}) succeeded", opcode::name(op), h.len, frame.len());
    assert!(initialized || op == opcode::INIT, "{} succeeded before INIT", opcode::name(op));
    let body = &written[OUT_HEADER_SIZE..];
    let room = cap - OUT_HEADER_SIZE;
    let exact = |size: usize| assert_eq!(body.len(), size, "{} reply of {} bytes", opcode::name(op), body.len());
    let entry = |typ: Option<u32>| {
        exact(core::mem::size_of::<abi::EntryOut>());
        let (e, _) = abi::EntryOut::read_from_prefix(body).expect("entry");
        if op != opcode::LOOKUP {
            assert_ne!(e.nodeid, 0, "{} returned node 0", opcode::name(op));
        }
        if let Some(t) = typ {
            assert_eq!(e.attr.mode & libc::S_IFMT, t, "{} made a node of mode {:o}", opcode::name(op), e.attr.mode);
        }
    };
    match op {
        opcode::INIT => exact(core::mem::size_of::<abi::InitOut>()),
        opcode::LOOKUP | opcode::MKNOD | opcode::LINK => entry(None),
        opcode::MKDIR => entry(Some(libc::S_IFDIR)),
        opcode::SYMLINK => entry(Some(libc::S_IFLNK)),
        opcode::CREATE | opcode::TMPFILE => {
            exact(core::mem::size_of::<abi::EntryOut>() + core::mem::size_of::<abi::OpenOut>());
            let (e, _) = abi::EntryOut::read_from_prefix(body).expect("entry");
            assert_eq!(
                e.attr.mode & libc::S_IFMT,
                libc::S_IFREG,
                "{} made a node of mode {:o}",
                opcode::name(op),
                e.attr.mode
            );
        }
        opcode::GETATTR | opcode::SETATTR => exact(core::mem::size_of::<abi::AttrOut>()),
        opcode::OPEN | opcode::OPENDIR => exact(core::mem::size_of::<abi::OpenOut>()),
        opcode::READ => {
            let size = arg::<abi::ReadIn>(frame).map_or(0, |r| r.size as usize);
            assert!(body.len() <= size.min(room), "READ of {size} returned {} bytes", body.len());
        }
        opcode::WRITE => {
            exact(core::mem::size_of::<abi::WriteOut>());
            let (wo, _) = abi::WriteOut::read_from_prefix(body).expect("write out");
            let size = arg::<abi::WriteIn>(frame).map_or(0, |w| w.size);
            assert!(wo.size <= size, "WRITE of {size} bytes reports {}", wo.size);
        }
        opcode::STATFS => exact(core::mem::size_of::<abi::StatfsOut>()),
        opcode::READLINK => assert!(body.len() < 4096, "READLINK of {} bytes", body.len()),
        opcode::GETXATTR | opcode::LISTXATTR => {
            let size = arg::<abi::GetxattrIn>(frame).map_or(0, |g| g.size as usize);
            if size == 0 {
                exact(core::mem::size_of::<abi::GetxattrOut>());
            } else {
                assert!(body.len() <= size, "{} of size {size} returned {} bytes", opcode::name(op), body.len());
            }
        }
        opcode::READDIR | opcode::READDIRPLUS => {
            let size = arg::<abi::ReadIn>(frame).map_or(0, |r| r.size as usize);
            assert!(body.len() <= size.min(room), "{} of {size} returned {} bytes", opcode::name(op), body.len());
            check_dirents(body, op == opcode::READDIRPLUS);
        }
        opcode::GETLK => exact(core::mem::size_of::<abi::LkOut>()),
        opcode::LSEEK => exact(core::mem::size_of::<abi::LseekOut>()),
        opcode::COPY_FILE_RANGE => {
            exact(core::mem::size_of::<abi::WriteOut>());
            let (wo, _) = abi::WriteOut::read_from_prefix(body).expect("write out");
            let len = arg::<abi::CopyFileRangeIn>(frame).map_or(0, |c| c.len);
            assert!(u64::from(wo.size) <= len, "COPY_FILE_RANGE of {len} bytes reports {}", wo.size);
        }
        opcode::STATX => exact(core::mem::size_of::<abi::StatxOut>()),
        _ => exact(0),
    }
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::request;
    use zerocopy::IntoBytes;

    fn reply(len: u32, error: i32, unique: u64, body: &[u8]) -> Vec<u8> {
        [OutHeader { len, error, unique }.as_bytes(), body].concat()
    }

    #[test]
    fn good_replies_pass() {
        let lookup = request(opcode::LOOKUP, 7, 1, &[b"f\0"]);
        let entry = abi::EntryOut { nodeid: 2, ..Default::default() };
        let r = reply(144, 0, 7, entry.as_bytes());
        assert_eq!(check(&lookup, 4096, true, &Ok(Handled::Reply(144)), &r), Some(entry.as_bytes()));
        let r = reply(16, -libc::ENOENT, 7, &[]);
        assert_eq!(check(&lookup, 4096, true, &Ok(Handled::Reply(16)), &r), None);
        let forget = request(opcode::FORGET, 8, 2, &[&1u64.to_le_bytes()]);
        assert_eq!(check(&forget, 4096, true, &Ok(Handled::NoReply), &[]), None);
    }

    fn fails(f: impl FnOnce()) -> bool {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err()
    }

    #[test]
    fn bad_replies_are_caught() {
        let lookup = request(opcode::LOOKUP, 7, 1, &[b"f\0"]);
        let ok = |n: usize| Ok(Handled::Reply(n));
        // Positive or huge errno.
        assert!(fails(|| _ = check(&lookup, 4096, true, &ok(16), &reply(16, libc::ENOENT, 7, &[]))));
        assert!(fails(|| _ = check(&lookup, 4096, true, &ok(16), &reply(16, -600, 7, &[]))));
        // Header length differs from the returned length.
        assert!(fails(|| _ = check(&lookup, 4096, true, &ok(16), &reply(20, -2, 7, &[]))));
        // Wrong unique.
        assert!(fails(|| _ = check(&lookup, 4096, true, &ok(16), &reply(16, -2, 8, &[]))));
        // An error reply with a body.
        assert!(fails(|| _ = check(&lookup, 4096, true, &ok(24), &reply(24, -2, 7, &[0; 8]))));
        // A LOOKUP success of the wrong size.
        assert!(fails(|| _ = check(&lookup, 4096, true, &ok(24), &reply(24, 0, 7, &[0; 8]))));
        // Longer than the writer.
        assert!(fails(|| _ = check(&lookup, 100, true, &ok(144), &reply(144, 0, 7, &[0; 128]))));
        // Success before INIT.
        let entry = abi::EntryOut { nodeid: 2, ..Default::default() };
        assert!(fails(|| _ = check(&lookup, 4096, false, &ok(144), &reply(144, 0, 7, entry.as_bytes()))));
        // A reply to FORGET, silence for LOOKUP.
        let forget = request(opcode::FORGET, 8, 2, &[&1u64.to_le_bytes()]);
        assert!(fails(|| _ = check(&forget, 4096, true, &ok(16), &reply(16, -22, 8, &[]))));
        assert!(fails(|| _ = check(&lookup, 4096, true, &Ok(Handled::NoReply), &[])));
        // A READDIR entry that overruns the reply.
        let rd = request(opcode::READDIR, 9, 1, &[abi::ReadIn { size: 4096, ..Default::default() }.as_bytes()]);
        let d = abi::Dirent { ino: 1, off: 1, namelen: 200, typ: 8 };
        let body = [d.as_bytes(), b"abc"].concat();
        let n = 16 + body.len();
        assert!(fails(|| _ = check(&rd, 4096, true, &ok(n), &reply(n as u32, 0, 9, &body))));
    }
}
