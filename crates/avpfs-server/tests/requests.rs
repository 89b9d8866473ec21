//! Requests in, replies out: the server against a small file system double,
//! with golden requests built field by field. Malformed requests must get
//! the right errno and leave the server serving.

use std::ffi::CStr;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use avpfs_server::{
    Context, DirEntry, DirSink, Entry, FileSystem, Handle, Handled, InitOptions, NodeId, ReadRequest, Server,
    SetxattrRequest, SliceReader, VecWriter, WriteRequest, Writer, ZeroCopyReader, ZeroCopyWriter,
};
use fuse_abi::{self as abi, init_flags, opcode};
use zerocopy::{FromBytes, IntoBytes};

/// A file system double that records calls and answers from fixed data.
#[derive(Default)]
struct Double {
    calls: Mutex<Vec<String>>,
}

impl Double {
    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn attr(ino: u64) -> abi::Attr {
    abi::Attr { ino, mode: libc::S_IFREG | 0o644, nlink: 1, size: 5, ..Default::default() }
}

impl FileSystem for Double {
    fn init(&self, _: InitOptions) -> io::Result<u64> {
        Ok(init_flags::ASYNC_READ | init_flags::POSIX_LOCKS | init_flags::SETXATTR_EXT)
    }
    fn lookup(&self, _: &Context, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        self.log(format!("lookup {parent} {}", name.to_str().unwrap()));
        if name.to_bytes() == b"missing" {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        Ok(Entry {
            nodeid: NodeId(2),
            generation: 1,
            attr: attr(2),
            attr_timeout: Duration::from_secs(1),
            entry_timeout: Duration::from_secs(1),
        })
    }
    fn destroy(&self) {
        self.log("destroy".into());
    }
    fn forget(&self, node: NodeId, count: u64) {
        self.log(format!("forget {node} {count}"));
    }
    fn getattr(&self, _: &Context, node: NodeId, fh: Option<Handle>) -> io::Result<(abi::Attr, Duration)> {
        self.log(format!("getattr {node} {:?}", fh.map(Handle::get)));
        if node != NodeId::ROOT && node != NodeId(2) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        Ok((attr(node.0), Duration::from_millis(1500)))
    }
    fn read(&self, _: &Context, _: NodeId, req: ReadRequest, w: &mut dyn ZeroCopyWriter) -> io::Result<usize> {
        let ReadRequest { handle, size, offset: off, .. } = req;
        if handle != Handle(7) {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let f = tempfile::tempfile()?;
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"hello", 0)?;
        use std::os::fd::AsFd;
        w.write_from(f.as_fd(), size as usize, off)
    }
    fn write(&self, _: &Context, _: NodeId, req: WriteRequest, r: &mut dyn ZeroCopyReader) -> io::Result<usize> {
        let WriteRequest { size, offset: off, .. } = req;
        let f = tempfile::tempfile()?;
        use std::os::fd::AsFd;
        let n = r.read_to(f.as_fd(), size as usize, off)?;
        self.log(format!("write {n} at {off}"));
        Ok(n)
    }
    fn getxattr(&self, _: &Context, _: NodeId, name: &CStr) -> io::Result<Vec<u8>> {
        match name.to_bytes() {
            b"user.a" => Ok(b"value".to_vec()),
            _ => Err(io::Error::from_raw_os_error(libc::ENODATA)),
        }
    }
    fn setxattr(&self, _: &Context, _: NodeId, name: &CStr, req: SetxattrRequest<'_>) -> io::Result<()> {
        let (value, flags) = (req.value, req.flags);
        self.log(format!("setxattr {} {} {flags}", name.to_str().unwrap(), String::from_utf8_lossy(value)));
        Ok(())
    }
    fn readdir(&self, _: &Context, _: NodeId, _: Handle, offset: u64, sink: &mut dyn DirSink) -> io::Result<()> {
        for i in offset..100 {
            let name = format!("entry{i}");
            if !sink
                .add(DirEntry { ino: 100 + i, offset: i + 1, typ: libc::DT_REG as u32, name: name.as_bytes() }, None)
            {
                break;
            }
        }
        Ok(())
    }
}

fn header(op: u32, unique: u64, nodeid: u64, body_len: usize) -> abi::InHeader {
    abi::InHeader {
        len: (40 + body_len) as u32,
        opcode: op,
        unique,
        nodeid,
        uid: 1000,
        gid: 1000,
        pid: 4242,
        total_extlen: 0,
        padding: 0,
    }
}

fn request(op: u32, unique: u64, nodeid: u64, parts: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = parts.concat();
    let mut v = header(op, unique, nodeid, body.len()).as_bytes().to_vec();
    v.extend_from_slice(&body);
    v
}

fn send(server: &Server<Double>, req: &[u8]) -> Result<(abi::OutHeader, Vec<u8>), Handled> {
    let mut r = SliceReader::new(req);
    let mut w = VecWriter::new(1 << 20);
    match server.handle_message(&mut r, &mut w).expect("a reply can be written") {
        Handled::Reply(len) => {
            let bytes = w.as_slice()[..len].to_vec();
            let hdr = abi::OutHeader::read_from_prefix(&bytes).unwrap().0;
            assert_eq!(hdr.len as usize, len, "the header length is the reply length");
            Ok((hdr, bytes[16..].to_vec()))
        }
        h => Err(h),
    }
}

fn errno_of(server: &Server<Double>, req: &[u8]) -> i32 {
    let (hdr, body) = send(server, req).expect("a reply");
    assert!(body.is_empty(), "error replies carry no body");
    -hdr.error
}

fn init_request(unique: u64, major: u32, minor: u32, flags: u64) -> Vec<u8> {
    let i = abi::InitIn {
        major,
        minor,
        max_readahead: 131072,
        flags: flags as u32,
        flags2: (flags >> 32) as u32,
        unused: [0; 11],
    };
    request(opcode::INIT, unique, 0, &[i.as_bytes()])
}

fn initialized() -> Server<Double> {
    let s = Server::new(Double::default());
    let all = u64::MAX >> 1;
    let (hdr, _) = send(&s, &init_request(1, 7, 41, all)).unwrap();
    assert_eq!(hdr.error, 0);
    s
}

#[test]
fn init_negotiates_the_lower_minor_and_common_flags() {
    let s = Server::new(Double::default());
    let offered = init_flags::ASYNC_READ | init_flags::INIT_EXT | init_flags::MAX_PAGES | init_flags::SETXATTR_EXT;
    let (hdr, body) = send(&s, &init_request(1, 7, 31, offered)).unwrap();
    assert_eq!(hdr, abi::OutHeader { len: 16 + 64, error: 0, unique: 1 });
    let out = abi::InitOut::read_from_bytes(&body).unwrap();
    assert_eq!((out.major, out.minor), (7, 31));
    let enabled = u64::from(out.flags) | (u64::from(out.flags2) << 32);
    // POSIX_LOCKS is wanted by the file system but was not offered.
    assert_eq!(
        enabled,
        init_flags::ASYNC_READ | init_flags::INIT_EXT | init_flags::MAX_PAGES | init_flags::SETXATTR_EXT
    );
    assert_eq!(out.max_write, avpfs_server::MAX_WRITE);
    assert_eq!(out.max_pages, 256);
    assert_eq!(out.max_readahead, 131072);
    assert!(s.is_initialized());
}

#[test]
fn init_accepts_the_short_pre_7_36_layout() {
    let s = Server::new(Double::default());
    let i = abi::InitIn { major: 7, minor: 27, flags: init_flags::ASYNC_READ as u32, ..Default::default() };
    let req = request(opcode::INIT, 1, 0, &[&i.as_bytes()[..16]]);
    let (hdr, body) = send(&s, &req).unwrap();
    assert_eq!(hdr.error, 0);
    assert_eq!(abi::InitOut::read_from_bytes(&body).unwrap().minor, 27);
}

#[test]
fn init_with_newer_minor_answers_ours() {
    let s = Server::new(Double::default());
    let (_, body) = send(&s, &init_request(1, 7, 99, 0)).unwrap();
    assert_eq!(abi::InitOut::read_from_bytes(&body).unwrap().minor, abi::KERNEL_MINOR_VERSION);
}

#[test]
fn init_with_newer_major_asks_for_ours_without_initializing() {
    let s = Server::new(Double::default());
    let (hdr, body) = send(&s, &init_request(1, 8, 0, 0)).unwrap();
    assert_eq!(hdr.error, 0);
    assert_eq!(abi::InitOut::read_from_bytes(&body).unwrap().major, 7);
    assert!(!s.is_initialized());
}

#[test]
fn init_with_too_old_protocol_is_eproto() {
    let s = Server::new(Double::default());
    assert_eq!(errno_of(&s, &init_request(1, 7, 26, 0)), libc::EPROTO);
    assert_eq!(errno_of(&s, &init_request(2, 6, 40, 0)), libc::EPROTO);
    assert!(!s.is_initialized());
}

#[test]
fn requests_before_init_are_eio() {
    let s = Server::new(Double::default());
    assert_eq!(errno_of(&s, &request(opcode::LOOKUP, 3, 1, &[b"a\0"])), libc::EIO);
}

#[test]
fn lookup_replies_with_an_entry() {
    let s = initialized();
    let (hdr, body) = send(&s, &request(opcode::LOOKUP, 5, 1, &[b"file\0"])).unwrap();
    assert_eq!(hdr, abi::OutHeader { len: 16 + 128, error: 0, unique: 5 });
    let e = abi::EntryOut::read_from_bytes(&body).unwrap();
    assert_eq!((e.nodeid, e.generation, e.entry_valid, e.attr.ino), (2, 1, 1, 2));
    assert_eq!(s.fs().calls().last().unwrap(), "lookup 1 file");
}

#[test]
fn bad_names_are_einval_and_never_reach_the_file_system() {
    let s = initialized();
    for bad in [&b"no-nul"[..], b"a/b\0", b".\0", b"..\0", b"\0", b"/\0"] {
        assert_eq!(errno_of(&s, &request(opcode::LOOKUP, 6, 1, &[bad])), libc::EINVAL, "name {bad:?}");
        let c = abi::CreateIn { flags: libc::O_RDWR as u32, mode: 0o644, umask: 0, open_flags: 0 };
        assert_eq!(errno_of(&s, &request(opcode::CREATE, 7, 1, &[c.as_bytes(), bad])), libc::EINVAL);
        assert_eq!(errno_of(&s, &request(opcode::UNLINK, 8, 1, &[bad])), libc::EINVAL);
        let m = abi::MkdirIn { mode: 0o755, umask: 0 };
        assert_eq!(errno_of(&s, &request(opcode::MKDIR, 9, 1, &[m.as_bytes(), bad])), libc::EINVAL);
    }
    let long = [vec![b'x'; 256], vec![0]].concat();
    assert_eq!(errno_of(&s, &request(opcode::LOOKUP, 10, 1, &[&long])), libc::ENAMETOOLONG);
    assert!(s.fs().calls().iter().all(|c| !c.starts_with("lookup")), "{:?}", s.fs().calls());
    // Still serving.
    assert_eq!(send(&s, &request(opcode::LOOKUP, 11, 1, &[b"ok\0"])).unwrap().0.error, 0);
}

#[test]
fn rename_needs_both_names() {
    let s = initialized();
    let r = abi::Rename2In { newdir: 1, flags: 0, padding: 0 };
    assert_eq!(errno_of(&s, &request(opcode::RENAME2, 12, 1, &[r.as_bytes(), b"old\0"])), libc::EINVAL);
    assert_eq!(errno_of(&s, &request(opcode::RENAME2, 12, 1, &[r.as_bytes(), b"old\0new"])), libc::EINVAL);
    // Both names valid: reaches the file system, whose default is ENOSYS.
    assert_eq!(errno_of(&s, &request(opcode::RENAME2, 12, 1, &[r.as_bytes(), b"old\0new\0"])), libc::ENOSYS);
}

#[test]
fn truncated_struct_is_einval() {
    let s = initialized();
    let g = abi::GetattrIn::default();
    assert_eq!(errno_of(&s, &request(opcode::GETATTR, 13, 1, &[&g.as_bytes()[..15]])), libc::EINVAL);
    assert_eq!(errno_of(&s, &request(opcode::SETATTR, 14, 1, &[&[0u8; 87]])), libc::EINVAL);
}

#[test]
fn length_field_larger_than_the_request_is_einval() {
    let s = initialized();
    let mut req = request(opcode::GETATTR, 15, 1, &[abi::GetattrIn::default().as_bytes()]);
    req[0] = req[0].wrapping_add(1);
    assert_eq!(errno_of(&s, &req), libc::EINVAL);
    let mut req = request(opcode::GETATTR, 16, 1, &[abi::GetattrIn::default().as_bytes()]);
    req[..4].copy_from_slice(&39u32.to_ne_bytes());
    assert_eq!(errno_of(&s, &req), libc::EINVAL);
}

#[test]
fn length_field_smaller_than_the_buffer_ignores_the_trailer() {
    let s = initialized();
    let mut req = request(opcode::GETATTR, 17, 1, &[abi::GetattrIn::default().as_bytes()]);
    req.extend_from_slice(&[0xee; 32]);
    let (hdr, body) = send(&s, &req).unwrap();
    assert_eq!(hdr.error, 0);
    assert_eq!(body.len(), 104);
}

#[test]
fn short_header_gets_no_reply_but_an_error() {
    let s = initialized();
    let mut r = SliceReader::new(&[0u8; 39]);
    let mut w = VecWriter::new(4096);
    assert!(matches!(s.handle_message(&mut r, &mut w), Err(avpfs_server::Error::ShortHeader(39))));
    assert_eq!(w.bytes_written(), 0);
}

#[test]
fn oversized_request_is_e2big() {
    let s = initialized();
    let big = vec![b'a'; 300 * 1024];
    assert_eq!(errno_of(&s, &request(opcode::LOOKUP, 18, 1, &[&big])), libc::E2BIG);
}

#[test]
fn unknown_opcodes_are_enosys() {
    let s = initialized();
    for op in [0, 7, 19, 53, 999, 4096, u32::MAX] {
        assert_eq!(errno_of(&s, &request(op, 19, 1, &[&[0u8; 16]])), libc::ENOSYS, "opcode {op}");
    }
    assert_eq!(errno_of(&s, &request(opcode::IOCTL, 20, 1, &[&[0u8; 32]])), libc::ENOSYS);
}

#[test]
fn unknown_node_and_handle_errors_pass_through() {
    let s = initialized();
    let g = abi::GetattrIn::default();
    assert_eq!(errno_of(&s, &request(opcode::GETATTR, 21, 999, &[g.as_bytes()])), libc::ENOENT);
    let rd = abi::ReadIn { fh: 8, size: 10, ..Default::default() };
    assert_eq!(errno_of(&s, &request(opcode::READ, 22, 2, &[rd.as_bytes()])), libc::EBADF);
}

#[test]
fn getattr_passes_the_handle_only_with_the_flag() {
    let s = initialized();
    let g = abi::GetattrIn { getattr_flags: 0, dummy: 0, fh: 5 };
    send(&s, &request(opcode::GETATTR, 23, 1, &[g.as_bytes()])).unwrap();
    let g = abi::GetattrIn { getattr_flags: abi::FUSE_GETATTR_FH, dummy: 0, fh: 5 };
    let (_, body) = send(&s, &request(opcode::GETATTR, 24, 1, &[g.as_bytes()])).unwrap();
    let out = abi::AttrOut::read_from_bytes(&body).unwrap();
    assert_eq!((out.attr_valid, out.attr_valid_nsec), (1, 500_000_000));
    let calls = s.fs().calls();
    assert_eq!(&calls[calls.len() - 2..], ["getattr 1 None", "getattr 1 Some(5)"]);
}

#[test]
fn read_reply_length_is_header_plus_data() {
    let s = initialized();
    let rd = abi::ReadIn { fh: 7, offset: 1, size: 100, ..Default::default() };
    let (hdr, body) = send(&s, &request(opcode::READ, 25, 2, &[rd.as_bytes()])).unwrap();
    assert_eq!(hdr, abi::OutHeader { len: 16 + 4, error: 0, unique: 25 });
    assert_eq!(body, b"ello");
}

#[test]
fn read_is_bounded_by_the_reply_buffer() {
    let s = initialized();
    let rd = abi::ReadIn { fh: 7, offset: 0, size: 100, ..Default::default() };
    let req = request(opcode::READ, 27, 2, &[rd.as_bytes()]);
    let mut r = SliceReader::new(&req);
    let mut w = VecWriter::new(16 + 3);
    assert_eq!(s.handle_message(&mut r, &mut w).unwrap(), Handled::Reply(19));
    assert_eq!(&w.as_slice()[16..], b"hel");
}

#[test]
fn write_payload_must_match_its_size() {
    let s = initialized();
    let wi = abi::WriteIn { fh: 1, offset: 10, size: 4, ..Default::default() };
    let (hdr, body) = send(&s, &request(opcode::WRITE, 28, 2, &[wi.as_bytes(), b"data"])).unwrap();
    assert_eq!(hdr.error, 0);
    assert_eq!(abi::WriteOut::read_from_bytes(&body).unwrap().size, 4);
    assert_eq!(s.fs().calls().last().unwrap(), "write 4 at 10");
    assert_eq!(errno_of(&s, &request(opcode::WRITE, 29, 2, &[wi.as_bytes(), b"dat"])), libc::EINVAL);
    assert_eq!(errno_of(&s, &request(opcode::WRITE, 30, 2, &[wi.as_bytes(), b"data!"])), libc::EINVAL);
    assert_eq!(errno_of(&s, &request(opcode::WRITE, 31, 2, &[&wi.as_bytes()[..39]])), libc::EINVAL);
    let huge = abi::WriteIn { fh: 1, offset: u64::MAX - 1, size: 4, ..Default::default() };
    assert_eq!(errno_of(&s, &request(opcode::WRITE, 32, 2, &[huge.as_bytes(), b"data"])), libc::EFBIG);
}

#[test]
fn getxattr_size_probe_and_erange() {
    let s = initialized();
    let probe = abi::GetxattrIn { size: 0, padding: 0 };
    let (hdr, body) = send(&s, &request(opcode::GETXATTR, 33, 1, &[probe.as_bytes(), b"user.a\0"])).unwrap();
    assert_eq!(hdr.error, 0);
    assert_eq!(abi::GetxattrOut::read_from_bytes(&body).unwrap().size, 5);
    let small = abi::GetxattrIn { size: 4, padding: 0 };
    assert_eq!(errno_of(&s, &request(opcode::GETXATTR, 34, 1, &[small.as_bytes(), b"user.a\0"])), libc::ERANGE);
    let exact = abi::GetxattrIn { size: 5, padding: 0 };
    let (_, body) = send(&s, &request(opcode::GETXATTR, 35, 1, &[exact.as_bytes(), b"user.a\0"])).unwrap();
    assert_eq!(body, b"value");
    assert_eq!(errno_of(&s, &request(opcode::GETXATTR, 36, 1, &[exact.as_bytes(), b"user.b\0"])), libc::ENODATA);
    assert_eq!(errno_of(&s, &request(opcode::GETXATTR, 37, 1, &[exact.as_bytes(), b"user.a"])), libc::EINVAL);
}

#[test]
fn setxattr_layout_follows_the_negotiated_flag() {
    let s = initialized(); // SETXATTR_EXT negotiated: 16-byte struct
    let x = abi::SetxattrIn { size: 3, flags: 1, setxattr_flags: 0, padding: 0 };
    let (hdr, _) = send(&s, &request(opcode::SETXATTR, 38, 1, &[x.as_bytes(), b"user.k\0", b"abc"])).unwrap();
    assert_eq!(hdr.error, 0);
    assert_eq!(s.fs().calls().last().unwrap(), "setxattr user.k abc 1");
    // Value shorter than its size.
    assert_eq!(errno_of(&s, &request(opcode::SETXATTR, 39, 1, &[x.as_bytes(), b"user.k\0", b"ab"])), libc::EINVAL);
    // Value larger than XATTR_SIZE_MAX.
    let big = abi::SetxattrIn { size: 70000, ..x };
    assert_eq!(errno_of(&s, &request(opcode::SETXATTR, 40, 1, &[big.as_bytes(), b"user.k\0"])), libc::E2BIG);

    let old = Server::new(Double::default());
    send(&old, &init_request(1, 7, 31, 0)).unwrap(); // no SETXATTR_EXT: 8-byte struct
    let (hdr, _) = send(&old, &request(opcode::SETXATTR, 41, 1, &[&x.as_bytes()[..8], b"user.k\0", b"abc"])).unwrap();
    assert_eq!(hdr.error, 0);
    assert_eq!(old.fs().calls().last().unwrap(), "setxattr user.k abc 1");
}

#[test]
fn a_request_body_larger_than_the_stack_buffer_is_decoded() {
    let s = initialized();
    let value = vec![b'v'; 4000];
    let x = abi::SetxattrIn { size: 4000, flags: 0, setxattr_flags: 0, padding: 0 };
    let (hdr, _) = send(&s, &request(opcode::SETXATTR, 60, 1, &[x.as_bytes(), b"user.big\0", &value])).unwrap();
    assert_eq!(hdr.error, 0);
    assert_eq!(s.fs().calls().last().unwrap(), &format!("setxattr user.big {} 0", "v".repeat(4000)));
}

#[test]
fn forget_and_batch_forget_take_no_reply() {
    let s = initialized();
    let f = abi::ForgetIn { nlookup: 3 };
    assert_eq!(send(&s, &request(opcode::FORGET, 42, 2, &[f.as_bytes()])), Err(Handled::NoReply));
    let b = abi::BatchForgetIn { count: 2, dummy: 0 };
    let one = abi::ForgetOne { nodeid: 5, nlookup: 1 };
    let two = abi::ForgetOne { nodeid: 6, nlookup: 2 };
    let req = request(opcode::BATCH_FORGET, 43, 0, &[b.as_bytes(), one.as_bytes(), two.as_bytes()]);
    assert_eq!(send(&s, &req), Err(Handled::NoReply));
    // A count larger than the list: only the entries present are used.
    let lying = abi::BatchForgetIn { count: 1000, dummy: 0 };
    let req = request(opcode::BATCH_FORGET, 44, 0, &[lying.as_bytes(), one.as_bytes()]);
    assert_eq!(send(&s, &req), Err(Handled::NoReply));
    // A truncated FORGET is dropped without a reply.
    assert_eq!(send(&s, &request(opcode::FORGET, 45, 2, &[&[0u8; 4]])), Err(Handled::NoReply));
    let calls: Vec<_> = s.fs().calls().into_iter().filter(|c| c.starts_with("forget")).collect();
    assert_eq!(calls, ["forget 2 3", "forget 5 1", "forget 6 2", "forget 5 1"]);
}

#[test]
fn readdir_fills_up_to_the_requested_size() {
    let s = initialized();
    let rd = abi::ReadIn { fh: 1, offset: 0, size: 100, ..Default::default() };
    let (hdr, body) = send(&s, &request(opcode::READDIR, 46, 1, &[rd.as_bytes()])).unwrap();
    assert_eq!(hdr.error, 0);
    // "entryN" is 6 bytes: 24 + 6 -> 32 bytes each; three fit in 100.
    assert_eq!(body.len(), 96);
    let d = abi::Dirent::read_from_prefix(&body[64..]).unwrap().0;
    assert_eq!((d.ino, d.off, d.namelen), (102, 3, 6));
    let rd = abi::ReadIn { fh: 1, offset: 3, size: 32, ..Default::default() };
    let (_, body) = send(&s, &request(opcode::READDIR, 47, 1, &[rd.as_bytes()])).unwrap();
    assert_eq!(&body[24..30], b"entry3");
}

#[test]
fn destroy_requires_a_new_init() {
    let s = initialized();
    assert_eq!(send(&s, &request(opcode::DESTROY, 48, 0, &[])).unwrap().0.error, 0);
    assert!(!s.is_initialized());
    assert_eq!(errno_of(&s, &request(opcode::LOOKUP, 49, 1, &[b"a\0"])), libc::EIO);
}

#[test]
fn a_second_init_resets_the_previous_session() {
    let s = initialized();
    send(&s, &init_request(2, 7, 41, 0)).unwrap();
    assert!(s.is_initialized());
    assert_eq!(s.fs().calls().last().unwrap(), "destroy");
}

#[test]
fn supplementary_groups_extension_reaches_the_context() {
    // A CREATE carrying FUSE_EXT_GROUPS: the name is parsed before the extension.
    let s = initialized();
    let c = abi::CreateIn { flags: 0, mode: 0o644, umask: 0, open_flags: 0 };
    #[rustfmt::skip]
    let ext: [u8; 16] = [16, 0, 0, 0, 32, 0, 0, 0, 1, 0, 0, 0, 44, 0, 0, 0];
    let body = [c.as_bytes(), b"f\0\0\0\0\0\0\0", &ext[..]].concat();
    let mut h = header(opcode::CREATE, 50, 1, body.len());
    h.total_extlen = 2;
    let req = [h.as_bytes(), &body].concat();
    // The double has no create: ENOSYS proves the request was decoded that far.
    assert_eq!(errno_of(&s, &req), libc::ENOSYS);
    // A malformed extension is EINVAL.
    let mut bad = req.clone();
    bad[40 + body.len() - 16] = 3;
    assert_eq!(errno_of(&s, &bad), libc::EINVAL);
    // An extension length larger than the body is EINVAL.
    let mut h2 = h;
    h2.total_extlen = 200;
    assert_eq!(errno_of(&s, &[h2.as_bytes(), &body].concat()), libc::EINVAL);
}
