//! Golden frames: every 9P2000.L request and reply, laid out by hand
//! field by field from the protocol description (little endian; `size`
//! counts the whole frame), beside the value it decodes to.

#![allow(dead_code)]

use p9_abi::*;

/// Joins the annotated pieces of a frame.
fn cat(pieces: &[&[u8]]) -> Vec<u8> {
    pieces.concat()
}

fn name(s: &'static [u8]) -> Name<'static> {
    Name::entry(s).unwrap()
}

/// Tag 1, used by every frame but Tversion/Rversion.
pub const TAG: Tag = Tag(1);

/// The qid used in replies: a directory, version 0, path 2.
pub const DIR_QID: Qid = Qid { typ: qid_type::DIR, version: 0, path: 2 };
const DIR_QID_BYTES: &[u8] = &[0x80, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
/// A regular file's qid: type 0, version 7, path 0x1234.
pub const FILE_QID: Qid = Qid { typ: qid_type::FILE, version: 7, path: 0x1234 };
const FILE_QID_BYTES: &[u8] = &[0x00, 7, 0, 0, 0, 0x34, 0x12, 0, 0, 0, 0, 0, 0];

/// Every request: (frame, tag, value).
pub fn requests() -> Vec<(Vec<u8>, Tag, Request<'static>)> {
    let walk_names = WalkNames::from_slice(&[
        Name::walk_element(b"a").unwrap(),
        Name::walk_element(b"..").unwrap(),
        Name::walk_element(b"bc").unwrap(),
    ])
    .unwrap();
    vec![
        (
            cat(&[
                &[21, 0, 0, 0],      // size: 7 + 4 + 2 + 8
                &[100],              // Tversion
                &[0xff, 0xff],       // tag: NOTAG
                &[0x00, 0x20, 0, 0], // msize: 8192
                &[8, 0],
                b"9P2000.L", // version
            ]),
            Tag::NOTAG,
            Request::Version(Tversion { msize: 8192, version: b"9P2000.L" }),
        ),
        (
            cat(&[
                &[20, 0, 0, 0], // size: 7 + 4 + 3 + 2 + 4
                &[102],         // Tauth
                &[1, 0],        // tag
                &[5, 0, 0, 0],  // afid
                &[1, 0],
                b"u",             // uname
                &[0, 0],          // aname: empty
                &[0xe8, 3, 0, 0], // n_uname: 1000
            ]),
            TAG,
            Request::Auth(Tauth { afid: Fid(5), uname: b"u", aname: b"", n_uname: 1000 }),
        ),
        (
            cat(&[
                &[31, 0, 0, 0],            // size: 7 + 4 + 4 + 6 + 6 + 4
                &[104],                    // Tattach
                &[1, 0],                   // tag
                &[0, 0, 0, 0],             // fid
                &[0xff, 0xff, 0xff, 0xff], // afid: NOFID
                &[4, 0],
                b"root", // uname
                &[4, 0],
                b"/srv",       // aname
                &[0, 0, 0, 0], // n_uname: 0
            ]),
            TAG,
            Request::Attach(Tattach { fid: Fid(0), afid: Fid::NOFID, uname: b"root", aname: b"/srv", n_uname: 0 }),
        ),
        (
            cat(&[
                &[9, 0, 0, 0], // size: 7 + 2
                &[108],        // Tflush
                &[1, 0],       // tag
                &[3, 0],       // oldtag
            ]),
            TAG,
            Request::Flush { oldtag: Tag(3) },
        ),
        (
            cat(&[
                &[28, 0, 0, 0], // size: 7 + 4 + 4 + 2 + 3 + 4 + 4
                &[110],         // Twalk
                &[1, 0],        // tag
                &[0, 0, 0, 0],  // fid
                &[1, 0, 0, 0],  // newfid
                &[3, 0],        // nwname
                &[1, 0],
                b"a",
                &[2, 0],
                b"..",
                &[2, 0],
                b"bc",
            ]),
            TAG,
            Request::Walk(Twalk { fid: Fid(0), newfid: Fid(1), names: walk_names }),
        ),
        (
            cat(&[
                &[17, 0, 0, 0], // size: 7 + 4 + 4 + 2
                &[110],         // Twalk
                &[1, 0],        // tag
                &[0, 0, 0, 0],  // fid
                &[1, 0, 0, 0],  // newfid
                &[0, 0],        // nwname: 0 (clone)
            ]),
            TAG,
            Request::Walk(Twalk { fid: Fid(0), newfid: Fid(1), names: WalkNames::new() }),
        ),
        (
            cat(&[
                &[15, 0, 0, 0],      // size: 7 + 4 + 4
                &[12],               // Tlopen
                &[1, 0],             // tag
                &[1, 0, 0, 0],       // fid
                &[0x02, 0x04, 0, 0], // flags: RDWR | APPEND (0o2002)
            ]),
            TAG,
            Request::Lopen(Tlopen { fid: Fid(1), flags: open_flags::RDWR | open_flags::APPEND }),
        ),
        (
            cat(&[
                &[26, 0, 0, 0], // size: 7 + 4 + 3 + 4 + 4 + 4
                &[14],          // Tlcreate
                &[1, 0],        // tag
                &[1, 0, 0, 0],  // fid
                &[1, 0],
                b"f",                // name
                &[0x42, 0, 0, 0],    // flags: CREATE | RDWR (0o102)
                &[0xa4, 0x01, 0, 0], // mode: 0o644
                &[100, 0, 0, 0],     // gid
            ]),
            TAG,
            Request::Lcreate(Tlcreate {
                fid: Fid(1),
                name: name(b"f"),
                flags: open_flags::CREATE | open_flags::RDWR,
                mode: 0o644,
                gid: 100,
            }),
        ),
        (
            cat(&[
                &[23, 0, 0, 0],               // size: 7 + 4 + 8 + 4
                &[116],                       // Tread
                &[1, 0],                      // tag
                &[1, 0, 0, 0],                // fid
                &[0, 0x10, 0, 0, 0, 0, 0, 0], // offset: 4096
                &[0, 0x10, 0, 0],             // count: 4096
            ]),
            TAG,
            Request::Read(Tread { fid: Fid(1), offset: 4096, count: 4096 }),
        ),
        (
            cat(&[
                &[26, 0, 0, 0],            // size: 7 + 4 + 8 + 4 + 3
                &[118],                    // Twrite
                &[1, 0],                   // tag
                &[1, 0, 0, 0],             // fid
                &[2, 0, 0, 0, 0, 0, 0, 0], // offset: 2
                &[3, 0, 0, 0],             // count
                b"abc",                    // data
            ]),
            TAG,
            Request::Write(Twrite { fid: Fid(1), offset: 2, data: b"abc" }),
        ),
        (
            cat(&[&[11, 0, 0, 0], &[120], &[1, 0], &[1, 0, 0, 0]]), // Tclunk fid 1
            TAG,
            Request::Clunk(Fid(1)),
        ),
        (
            cat(&[&[11, 0, 0, 0], &[122], &[1, 0], &[1, 0, 0, 0]]), // Tremove fid 1
            TAG,
            Request::Remove(Fid(1)),
        ),
        (
            cat(&[
                &[19, 0, 0, 0],                  // size: 7 + 4 + 8
                &[24],                           // Tgetattr
                &[1, 0],                         // tag
                &[1, 0, 0, 0],                   // fid
                &[0xff, 0x07, 0, 0, 0, 0, 0, 0], // request_mask: BASIC
            ]),
            TAG,
            Request::Getattr(Tgetattr { fid: Fid(1), request_mask: getattr::BASIC }),
        ),
        (
            cat(&[
                &[67, 0, 0, 0],               // size: 7 + 4 + 4 * 4 + 5 * 8
                &[26],                        // Tsetattr
                &[1, 0],                      // tag
                &[1, 0, 0, 0],                // fid
                &[0xb9, 0x00, 0, 0],          // valid: MODE | SIZE | ATIME | MTIME | ATIME_SET (0xb9)
                &[0xed, 0x01, 0, 0],          // mode: 0o755
                &[0xff, 0xff, 0xff, 0xff],    // uid: unset
                &[0xff, 0xff, 0xff, 0xff],    // gid: unset
                &[0, 0x02, 0, 0, 0, 0, 0, 0], // size: 512
                &[10, 0, 0, 0, 0, 0, 0, 0],   // atime_sec
                &[11, 0, 0, 0, 0, 0, 0, 0],   // atime_nsec
                &[0, 0, 0, 0, 0, 0, 0, 0],    // mtime_sec
                &[0, 0, 0, 0, 0, 0, 0, 0],    // mtime_nsec
            ]),
            TAG,
            Request::Setattr(Tsetattr {
                fid: Fid(1),
                attr: SetAttr {
                    valid: setattr::MODE | setattr::SIZE | setattr::ATIME | setattr::MTIME | setattr::ATIME_SET,
                    mode: 0o755,
                    uid: u32::MAX,
                    gid: u32::MAX,
                    size: 512,
                    atime_sec: 10,
                    atime_nsec: 11,
                    mtime_sec: 0,
                    mtime_nsec: 0,
                },
            }),
        ),
        (
            cat(&[
                &[23, 0, 0, 0],            // size: 7 + 4 + 8 + 4
                &[40],                     // Treaddir
                &[1, 0],                   // tag
                &[1, 0, 0, 0],             // fid
                &[0, 0, 0, 0, 0, 0, 0, 0], // offset: 0
                &[0, 0x20, 0, 0],          // count: 8192
            ]),
            TAG,
            Request::Readdir(Tread { fid: Fid(1), offset: 0, count: 8192 }),
        ),
        (
            cat(&[
                &[22, 0, 0, 0], // size: 7 + 4 + 3 + 4 + 4
                &[72],          // Tmkdir
                &[1, 0],        // tag
                &[1, 0, 0, 0],  // dfid
                &[1, 0],
                b"d",                // name
                &[0xed, 0x01, 0, 0], // mode: 0o755
                &[100, 0, 0, 0],     // gid
            ]),
            TAG,
            Request::Mkdir(Tmkdir { dfid: Fid(1), name: name(b"d"), mode: 0o755, gid: 100 }),
        ),
        (
            cat(&[
                &[24, 0, 0, 0], // size: 7 + 4 + 3 + 6 + 4
                &[16],          // Tsymlink
                &[1, 0],        // tag
                &[1, 0, 0, 0],  // fid
                &[1, 0],
                b"l", // name
                &[4, 0],
                b"../t",         // symtgt: may hold '/' and '..'
                &[100, 0, 0, 0], // gid
            ]),
            TAG,
            Request::Symlink(Tsymlink { dfid: Fid(1), name: name(b"l"), target: b"../t", gid: 100 }),
        ),
        (
            cat(&[
                &[30, 0, 0, 0], // size: 7 + 4 + 3 + 4 * 4
                &[18],          // Tmknod
                &[1, 0],        // tag
                &[1, 0, 0, 0],  // dfid
                &[1, 0],
                b"p",                // name
                &[0x80, 0x11, 0, 0], // mode: S_IFIFO | 0o600 (0o10600)
                &[0, 0, 0, 0],       // major
                &[0, 0, 0, 0],       // minor
                &[100, 0, 0, 0],     // gid
            ]),
            TAG,
            Request::Mknod(Tmknod { dfid: Fid(1), name: name(b"p"), mode: 0o10600, major: 0, minor: 0, gid: 100 }),
        ),
        (
            cat(&[
                &[18, 0, 0, 0], // size: 7 + 4 + 4 + 3
                &[20],          // Trename
                &[1, 0],        // tag
                &[2, 0, 0, 0],  // fid
                &[1, 0, 0, 0],  // dfid
                &[1, 0],
                b"n", // name
            ]),
            TAG,
            Request::Rename(Trename { fid: Fid(2), dfid: Fid(1), name: name(b"n") }),
        ),
        (
            cat(&[
                &[21, 0, 0, 0], // size: 7 + 4 + 3 + 4 + 3
                &[74],          // Trenameat
                &[1, 0],        // tag
                &[1, 0, 0, 0],  // olddirfid
                &[1, 0],
                b"a",          // oldname
                &[3, 0, 0, 0], // newdirfid
                &[1, 0],
                b"b", // newname
            ]),
            TAG,
            Request::Renameat(Trenameat {
                olddirfid: Fid(1),
                oldname: name(b"a"),
                newdirfid: Fid(3),
                newname: name(b"b"),
            }),
        ),
        (
            cat(&[
                &[18, 0, 0, 0], // size: 7 + 4 + 3 + 4
                &[76],          // Tunlinkat
                &[1, 0],        // tag
                &[1, 0, 0, 0],  // dirfid
                &[1, 0],
                b"d",             // name
                &[0, 0x02, 0, 0], // flags: AT_REMOVEDIR (0x200)
            ]),
            TAG,
            Request::Unlinkat(Tunlinkat { dirfid: Fid(1), name: name(b"d"), flags: unlinkat::REMOVEDIR }),
        ),
        (
            cat(&[
                &[18, 0, 0, 0], // size: 7 + 4 + 4 + 3
                &[70],          // Tlink
                &[1, 0],        // tag
                &[1, 0, 0, 0],  // dfid
                &[2, 0, 0, 0],  // fid
                &[1, 0],
                b"h", // name
            ]),
            TAG,
            Request::Link(Tlink { dfid: Fid(1), fid: Fid(2), name: name(b"h") }),
        ),
        (
            cat(&[&[11, 0, 0, 0], &[22], &[1, 0], &[2, 0, 0, 0]]), // Treadlink fid 2
            TAG,
            Request::Readlink(Fid(2)),
        ),
        (
            cat(&[&[11, 0, 0, 0], &[8], &[1, 0], &[0, 0, 0, 0]]), // Tstatfs fid 0
            TAG,
            Request::Statfs(Fid(0)),
        ),
        (
            cat(&[
                &[15, 0, 0, 0], // size: 7 + 4 + 4
                &[50],          // Tfsync
                &[1, 0],        // tag
                &[1, 0, 0, 0],  // fid
                &[1, 0, 0, 0],  // datasync
            ]),
            TAG,
            Request::Fsync(Tfsync { fid: Fid(1), datasync: 1 }),
        ),
        (
            cat(&[
                &[23, 0, 0, 0], // size: 7 + 4 + 4 + 8
                &[30],          // Txattrwalk
                &[1, 0],        // tag
                &[1, 0, 0, 0],  // fid
                &[4, 0, 0, 0],  // newfid
                &[6, 0],
                b"user.a", // name
            ]),
            TAG,
            Request::Xattrwalk(Txattrwalk { fid: Fid(1), newfid: Fid(4), name: b"user.a" }),
        ),
        (
            cat(&[
                &[17, 0, 0, 0], // size: 7 + 4 + 4 + 2
                &[30],          // Txattrwalk
                &[1, 0],        // tag
                &[1, 0, 0, 0],  // fid
                &[4, 0, 0, 0],  // newfid
                &[0, 0],        // name: empty, the list of names
            ]),
            TAG,
            Request::Xattrwalk(Txattrwalk { fid: Fid(1), newfid: Fid(4), name: b"" }),
        ),
        (
            cat(&[
                &[31, 0, 0, 0], // size: 7 + 4 + 8 + 8 + 4
                &[32],          // Txattrcreate
                &[1, 0],        // tag
                &[4, 0, 0, 0],  // fid
                &[6, 0],
                b"user.a",                 // name
                &[5, 0, 0, 0, 0, 0, 0, 0], // attr_size
                &[1, 0, 0, 0],             // flags: XATTR_CREATE
            ]),
            TAG,
            Request::Xattrcreate(Txattrcreate { fid: Fid(4), name: b"user.a", attr_size: 5, flags: 1 }),
        ),
        (
            cat(&[
                &[40, 0, 0, 0],            // size: 7 + 4 + 1 + 4 + 8 + 8 + 4 + 4
                &[52],                     // Tlock
                &[1, 0],                   // tag
                &[1, 0, 0, 0],             // fid
                &[1],                      // type: WRLCK
                &[1, 0, 0, 0],             // flags: BLOCK
                &[0, 0, 0, 0, 0, 0, 0, 0], // start
                &[0, 0, 0, 0, 0, 0, 0, 0], // length: to the end
                &[42, 0, 0, 0],            // proc_id
                &[2, 0],
                b"vm", // client_id
            ]),
            TAG,
            Request::Lock(Tlock {
                fid: Fid(1),
                lock_type: LockType::Write,
                flags: lock_flags::BLOCK,
                start: 0,
                length: 0,
                proc_id: 42,
                client_id: b"vm",
            }),
        ),
        (
            cat(&[
                &[36, 0, 0, 0],             // size: 7 + 4 + 1 + 8 + 8 + 4 + 4
                &[54],                      // Tgetlock
                &[1, 0],                    // tag
                &[1, 0, 0, 0],              // fid
                &[0],                       // type: RDLCK
                &[10, 0, 0, 0, 0, 0, 0, 0], // start
                &[20, 0, 0, 0, 0, 0, 0, 0], // length
                &[42, 0, 0, 0],             // proc_id
                &[2, 0],
                b"vm", // client_id
            ]),
            TAG,
            Request::Getlock(Tgetlock {
                fid: Fid(1),
                lock: Getlock { lock_type: LockType::Read, start: 10, length: 20, proc_id: 42, client_id: b"vm" },
            }),
        ),
    ]
}

/// The `Rreaddir` data of [`replies`]: entries `.` and `file`.
pub const READDIR_DATA: &[u8] = &[
    // "." : qid (dir, 0, 2), offset 1, DT_DIR, name
    0x80, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, //
    1, 0, 0, 0, 0, 0, 0, 0, //
    4, //
    1, 0, b'.', //
    // "file": qid (file, 7, 0x1234), offset 2, DT_REG, name
    0x00, 7, 0, 0, 0, 0x34, 0x12, 0, 0, 0, 0, 0, 0, //
    2, 0, 0, 0, 0, 0, 0, 0, //
    8, //
    4, 0, b'f', b'i', b'l', b'e',
];

/// The `Rgetattr` value of [`replies`].
pub const STAT: Stat = Stat {
    valid: getattr::BASIC,
    qid: FILE_QID,
    mode: 0o100644,
    uid: 1000,
    gid: 100,
    nlink: 1,
    rdev: 0,
    size: 5,
    blksize: 4096,
    blocks: 8,
    atime_sec: 1,
    atime_nsec: 2,
    mtime_sec: 3,
    mtime_nsec: 4,
    ctime_sec: 5,
    ctime_nsec: 6,
    btime_sec: 0,
    btime_nsec: 0,
    gen: 0,
    data_version: 0,
};

/// Every reply: (frame, tag, value).
pub fn replies() -> Vec<(Vec<u8>, Tag, Reply<'static>)> {
    let u64le = |v: u8| -> [u8; 8] { [v, 0, 0, 0, 0, 0, 0, 0] };
    let empty = |typ: u8| (cat(&[&[7, 0, 0, 0], &[typ], &[1, 0]]), TAG);
    let qid_reply = |typ: u8| (cat(&[&[20, 0, 0, 0], &[typ], &[1, 0], FILE_QID_BYTES]), TAG);
    let (rflush, _) = empty(109);
    let (rclunk, _) = empty(121);
    let (rremove, _) = empty(123);
    let (rsetattr, _) = empty(27);
    let (rrename, _) = empty(21);
    let (rrenameat, _) = empty(75);
    let (runlinkat, _) = empty(77);
    let (rlink, _) = empty(71);
    let (rfsync, _) = empty(51);
    let (rxattrcreate, _) = empty(33);
    let (rmkdir, _) = qid_reply(73);
    let (rsymlink, _) = qid_reply(17);
    let (rmknod, _) = qid_reply(19);
    vec![
        (
            cat(&[
                &[21, 0, 0, 0],      // size: 7 + 4 + 2 + 8
                &[101],              // Rversion
                &[0xff, 0xff],       // tag: NOTAG
                &[0x00, 0x20, 0, 0], // msize: 8192
                &[8, 0],
                b"9P2000.L",
            ]),
            Tag::NOTAG,
            Reply::Version(Rversion { msize: 8192, version: VERSION_9P2000_L }),
        ),
        (
            cat(&[&[20, 0, 0, 0], &[101], &[0xff, 0xff], &[0x00, 0x20, 0, 0], &[7, 0], b"unknown"]), // 7 + 4 + 2 + 7
            Tag::NOTAG,
            Reply::Version(Rversion { msize: 8192, version: VERSION_UNKNOWN }),
        ),
        (cat(&[&[20, 0, 0, 0], &[103], &[1, 0], DIR_QID_BYTES]), TAG, Reply::Auth(DIR_QID)),
        (cat(&[&[20, 0, 0, 0], &[105], &[1, 0], DIR_QID_BYTES]), TAG, Reply::Attach(DIR_QID)),
        (
            cat(&[&[11, 0, 0, 0], &[7], &[1, 0], &[2, 0, 0, 0]]), // Rlerror ENOENT
            TAG,
            Reply::Lerror { ecode: 2 },
        ),
        (rflush, TAG, Reply::Flush),
        (
            cat(&[
                &[35, 0, 0, 0], // size: 7 + 2 + 2 * 13
                &[111],         // Rwalk
                &[1, 0],        // tag
                &[2, 0],        // nwqid
                DIR_QID_BYTES,
                FILE_QID_BYTES,
            ]),
            TAG,
            Reply::Walk(WalkQids::from_slice(&[DIR_QID, FILE_QID]).unwrap()),
        ),
        (
            cat(&[&[9, 0, 0, 0], &[111], &[1, 0], &[0, 0]]), // Rwalk of a clone
            TAG,
            Reply::Walk(WalkQids::new()),
        ),
        (
            cat(&[
                &[24, 0, 0, 0], // size: 7 + 13 + 4
                &[13],          // Rlopen
                &[1, 0],        // tag
                FILE_QID_BYTES,
                &[0xe8, 0xff, 0, 0], // iounit: 65512
            ]),
            TAG,
            Reply::Lopen(Ropen { qid: FILE_QID, iounit: 65512 }),
        ),
        (
            cat(&[&[24, 0, 0, 0], &[15], &[1, 0], FILE_QID_BYTES, &[0, 0, 0, 0]]), // Rlcreate, iounit 0
            TAG,
            Reply::Lcreate(Ropen { qid: FILE_QID, iounit: 0 }),
        ),
        (
            cat(&[
                &[16, 0, 0, 0], // size: 7 + 4 + 5
                &[117],         // Rread
                &[1, 0],        // tag
                &[5, 0, 0, 0],  // count
                b"hello",
            ]),
            TAG,
            Reply::Read { data: b"hello" },
        ),
        (cat(&[&[11, 0, 0, 0], &[119], &[1, 0], &[3, 0, 0, 0]]), TAG, Reply::Write { count: 3 }),
        (rclunk, TAG, Reply::Clunk),
        (rremove, TAG, Reply::Remove),
        (
            cat(&[
                &[160, 0, 0, 0],                 // size: 7 + 8 + 13 + 3 * 4 + 15 * 8
                &[25],                           // Rgetattr
                &[1, 0],                         // tag
                &[0xff, 0x07, 0, 0, 0, 0, 0, 0], // valid: BASIC
                FILE_QID_BYTES,
                &[0xa4, 0x81, 0, 0],          // mode: 0o100644
                &[0xe8, 0x03, 0, 0],          // uid: 1000
                &[100, 0, 0, 0],              // gid
                &u64le(1),                    // nlink
                &u64le(0),                    // rdev
                &u64le(5),                    // size
                &[0, 0x10, 0, 0, 0, 0, 0, 0], // blksize: 4096
                &u64le(8),                    // blocks
                &u64le(1),                    // atime_sec
                &u64le(2),                    // atime_nsec
                &u64le(3),                    // mtime_sec
                &u64le(4),                    // mtime_nsec
                &u64le(5),                    // ctime_sec
                &u64le(6),                    // ctime_nsec
                &u64le(0),                    // btime_sec
                &u64le(0),                    // btime_nsec
                &u64le(0),                    // gen
                &u64le(0),                    // data_version
            ]),
            TAG,
            Reply::Getattr(STAT),
        ),
        (rsetattr, TAG, Reply::Setattr),
        (
            cat(&[
                &[64, 0, 0, 0], // size: 7 + 4 + (24 + 1) + (24 + 4)
                &[41],          // Rreaddir
                &[1, 0],        // tag
                &[53, 0, 0, 0], // count
                READDIR_DATA,
            ]),
            TAG,
            Reply::Readdir(Rreaddir { data: READDIR_DATA }),
        ),
        (rmkdir, TAG, Reply::Mkdir(FILE_QID)),
        (rsymlink, TAG, Reply::Symlink(FILE_QID)),
        (rmknod, TAG, Reply::Mknod(FILE_QID)),
        (rrename, TAG, Reply::Rename),
        (rrenameat, TAG, Reply::Renameat),
        (runlinkat, TAG, Reply::Unlinkat),
        (rlink, TAG, Reply::Link),
        (
            cat(&[&[13, 0, 0, 0], &[23], &[1, 0], &[4, 0], b"../t"]), // Rreadlink
            TAG,
            Reply::Readlink { target: b"../t" },
        ),
        (
            cat(&[
                &[67, 0, 0, 0],            // size: 7 + 4 + 4 + 6 * 8 + 4
                &[9],                      // Rstatfs
                &[1, 0],                   // tag
                &[0x97, 0x19, 0x02, 0x01], // type: V9FS_MAGIC 0x01021997
                &[0, 0x10, 0, 0],          // bsize: 4096
                &u64le(100),               // blocks
                &u64le(50),                // bfree
                &u64le(40),                // bavail
                &u64le(30),                // files
                &u64le(20),                // ffree
                &u64le(9),                 // fsid
                &[255, 0, 0, 0],           // namelen
            ]),
            TAG,
            Reply::Statfs(StatFs {
                fs_type: 0x0102_1997,
                bsize: 4096,
                blocks: 100,
                bfree: 50,
                bavail: 40,
                files: 30,
                ffree: 20,
                fsid: 9,
                namelen: 255,
            }),
        ),
        (rfsync, TAG, Reply::Fsync),
        (cat(&[&[15, 0, 0, 0], &[31], &[1, 0], &u64le(5)]), TAG, Reply::Xattrwalk { size: 5 }),
        (rxattrcreate, TAG, Reply::Xattrcreate),
        (cat(&[&[8, 0, 0, 0], &[53], &[1, 0], &[1]]), TAG, Reply::Lock(LockStatus::Blocked)),
        (
            cat(&[
                &[30, 0, 0, 0], // size: 7 + 1 + 8 + 8 + 4 + 2
                &[55],          // Rgetlock
                &[1, 0],        // tag
                &[2],           // type: UNLCK (no conflict)
                &u64le(10),     // start
                &u64le(20),     // length
                &[0, 0, 0, 0],  // proc_id
                &[0, 0],        // client_id: empty
            ]),
            TAG,
            Reply::Getlock(Getlock { lock_type: LockType::Unlock, start: 10, length: 20, proc_id: 0, client_id: b"" }),
        ),
    ]
}
