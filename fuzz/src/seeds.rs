//! The seed corpus: valid requests for every FUSE opcode the server knows
//! (most preceded by the LOOKUP/OPEN they need, using node and handle
//! references), a few malformed ones, and valid and invalid descriptor
//! chains. Written to `fuzz/corpus/` by the `gen_corpus` binary; replayed by
//! the tests of this crate.

use fuse_abi::{self as abi, opcode as op};
use zerocopy::IntoBytes;

use crate::chain::{Control, Image};
use crate::frames::{fh_ref, init_request, node_ref, request, request_as, ALL_CLIENT_FLAGS};

const ROOT: u64 = node_ref(0);
/// The node handed out by the first LOOKUP/CREATE of a seed.
const N1: u64 = node_ref(1);
const N2: u64 = node_ref(2);
const FH0: u64 = fh_ref(0);
const FH1: u64 = fh_ref(1);

fn z(name: &str) -> Vec<u8> {
    [name.as_bytes(), b"\0"].concat()
}

/// Builds a seed of several requests with increasing `unique`s.
#[derive(Debug, Default)]
struct Seq {
    bytes: Vec<u8>,
    unique: u64,
}

impl Seq {
    fn req(mut self, opc: u32, node: u64, parts: &[&[u8]]) -> Self {
        self.unique += 1;
        self.bytes.extend(request(opc, self.unique, node, parts));
        self
    }
    fn lookup(self, parent: u64, name: &str) -> Self {
        self.req(op::LOOKUP, parent, &[&z(name)])
    }
    fn open(self, node: u64, flags: i32) -> Self {
        self.req(op::OPEN, node, &[abi::OpenIn { flags: flags as u32, open_flags: 0 }.as_bytes()])
    }
    fn read(self, node: u64, fh: u64, offset: u64, size: u32) -> Self {
        self.req(op::READ, node, &[abi::ReadIn { fh, offset, size, ..Default::default() }.as_bytes()])
    }
    fn write(self, node: u64, fh: u64, offset: u64, data: &[u8]) -> Self {
        let w = abi::WriteIn { fh, offset, size: data.len() as u32, ..Default::default() };
        self.req(op::WRITE, node, &[w.as_bytes(), data])
    }
    /// LOOKUP of `share/file` and OPEN of it (node 1, handle 0).
    fn opened_file(self, flags: i32) -> Self {
        self.lookup(ROOT, "file").open(N1, flags)
    }
    fn done(self) -> Vec<u8> {
        self.bytes
    }
}

fn lk(typ: i32) -> abi::FileLock {
    abi::FileLock { start: 0, end: u64::MAX >> 1, typ: typ as u32, pid: 4242 }
}

fn seq() -> Seq {
    Seq::default()
}

/// The FUSE request seeds: (file name, input).
pub fn fuse_requests() -> Vec<(&'static str, Vec<u8>)> {
    let getattr = abi::GetattrIn::default();
    let rdwr = libc::O_RDWR;
    let mut seeds = vec![
        ("init", init_request(1, ALL_CLIENT_FLAGS)),
        ("init-7.27-compat", {
            let i = abi::InitIn { major: 7, minor: 27, max_readahead: 65536, flags: 0x3fff_ffff, ..Default::default() };
            request(op::INIT, 1, 0, &[&i.as_bytes()[..abi::INIT_IN_COMPAT_SIZE]])
        }),
        ("init-major-8", {
            let i = abi::InitIn { major: 8, minor: 0, ..Default::default() };
            request(op::INIT, 1, 0, &[i.as_bytes()])
        }),
        ("lookup", seq().lookup(ROOT, "file").lookup(ROOT, "dir").lookup(N2, "inner").lookup(ROOT, "missing").done()),
        (
            "getattr",
            seq()
                .req(op::GETATTR, ROOT, &[getattr.as_bytes()])
                .lookup(ROOT, "file")
                .req(op::GETATTR, N1, &[getattr.as_bytes()])
                .done(),
        ),
        ("getattr-fh", {
            let g = abi::GetattrIn { getattr_flags: abi::FUSE_GETATTR_FH, dummy: 0, fh: FH0 };
            seq().opened_file(libc::O_RDONLY).req(op::GETATTR, N1, &[g.as_bytes()]).done()
        }),
        ("setattr", {
            use abi::fattr::*;
            let s = abi::SetattrIn {
                valid: MODE | UID | GID | SIZE | ATIME | MTIME_NOW | CTIME,
                size: 4,
                atime: 1_700_000_000,
                mode: 0o600,
                uid: 1000,
                gid: 1000,
                ..Default::default()
            };
            seq().lookup(ROOT, "file").req(op::SETATTR, N1, &[s.as_bytes()]).done()
        }),
        ("setattr-fh-truncate", {
            let s = abi::SetattrIn {
                valid: abi::fattr::SIZE | abi::fattr::FH,
                fh: FH0,
                size: 1 << 20,
                ..Default::default()
            };
            seq().opened_file(rdwr).req(op::SETATTR, N1, &[s.as_bytes()]).done()
        }),
        ("readlink", seq().lookup(ROOT, "link").req(op::READLINK, N1, &[]).done()),
        ("symlink", seq().req(op::SYMLINK, ROOT, &[&z("newlink"), &z("file")]).req(op::READLINK, N1, &[]).done()),
        ("mknod", {
            let m = abi::MknodIn { mode: libc::S_IFREG | 0o644, rdev: 0, umask: 0o022, padding: 0 };
            seq().req(op::MKNOD, ROOT, &[m.as_bytes(), &z("newfile")]).done()
        }),
        ("mknod-fifo", {
            let m = abi::MknodIn { mode: libc::S_IFIFO | 0o644, rdev: 0, umask: 0o022, padding: 0 };
            seq().req(op::MKNOD, ROOT, &[m.as_bytes(), &z("newfifo")]).done()
        }),
        ("mkdir", {
            let m = abi::MkdirIn { mode: 0o755, umask: 0o022 };
            seq()
                .req(op::MKDIR, ROOT, &[m.as_bytes(), &z("newdir")])
                .req(op::MKDIR, N1, &[m.as_bytes(), &z("sub")])
                .done()
        }),
        ("create", {
            let c = abi::CreateIn {
                flags: (rdwr | libc::O_CREAT) as u32,
                mode: libc::S_IFREG | 0o644,
                umask: 0o022,
                open_flags: 0,
            };
            seq()
                .req(op::CREATE, ROOT, &[c.as_bytes(), &z("created")])
                .write(N1, FH0, 0, b"fuzz data")
                .read(N1, FH0, 0, 4096)
                .done()
        }),
        (
            "open",
            seq()
                .opened_file(rdwr)
                .open(N1, libc::O_RDONLY | libc::O_APPEND)
                .open(N1, libc::O_WRONLY | libc::O_SYNC)
                .done(),
        ),
        ("open-trunc", seq().opened_file(rdwr | libc::O_TRUNC).done()),
        (
            "read",
            seq()
                .opened_file(libc::O_RDONLY)
                .read(N1, FH0, 0, 4096)
                .read(N1, FH0, 7, 3)
                .read(N1, FH0, 1 << 40, 16)
                .done(),
        ),
        (
            "write",
            seq()
                .opened_file(rdwr)
                .write(N1, FH0, 0, b"HELLO")
                .write(N1, FH0, 8192, &[0x55; 512])
                .read(N1, FH0, 0, 16384)
                .done(),
        ),
        ("readdir", {
            let rd = abi::ReadIn { fh: FH0, size: 4096, ..Default::default() };
            let rd2 = abi::ReadIn { fh: FH0, offset: 3, size: 64, ..Default::default() };
            let rel = abi::ReleaseIn { fh: FH0, ..Default::default() };
            seq()
                .req(op::OPENDIR, ROOT, &[abi::OpenIn::default().as_bytes()])
                .req(op::READDIR, ROOT, &[rd.as_bytes()])
                .req(op::READDIR, ROOT, &[rd2.as_bytes()])
                .req(op::RELEASEDIR, ROOT, &[rel.as_bytes()])
                .done()
        }),
        ("readdirplus", {
            let rd = abi::ReadIn { fh: FH0, size: 4096, ..Default::default() };
            seq()
                .req(op::OPENDIR, ROOT, &[abi::OpenIn::default().as_bytes()])
                .req(op::READDIRPLUS, ROOT, &[rd.as_bytes()])
                .req(op::GETATTR, N1, &[getattr.as_bytes()])
                .done()
        }),
        ("setxattr", {
            let value = b"fuzz-value";
            let s = abi::SetxattrIn { size: value.len() as u32, flags: 0, setxattr_flags: 0, padding: 0 };
            seq().lookup(ROOT, "file").req(op::SETXATTR, N1, &[s.as_bytes(), &z("user.fuzz"), value]).done()
        }),
        ("setxattr-security", {
            let value = b"system_u:object_r:etc_t:s0";
            let s = abi::SetxattrIn {
                size: value.len() as u32,
                flags: libc::XATTR_CREATE as u32,
                setxattr_flags: 0,
                padding: 0,
            };
            seq().lookup(ROOT, "file").req(op::SETXATTR, N1, &[s.as_bytes(), &z("security.selinux"), value]).done()
        }),
        ("getxattr", {
            let probe = abi::GetxattrIn { size: 0, padding: 0 };
            let get = abi::GetxattrIn { size: 64, padding: 0 };
            seq()
                .lookup(ROOT, "file")
                .req(op::GETXATTR, N1, &[probe.as_bytes(), &z("user.test")])
                .req(op::GETXATTR, N1, &[get.as_bytes(), &z("user.test")])
                .req(op::GETXATTR, N1, &[get.as_bytes(), &z("user.missing")])
                .done()
        }),
        ("listxattr", {
            let probe = abi::GetxattrIn { size: 0, padding: 0 };
            let get = abi::GetxattrIn { size: 256, padding: 0 };
            seq()
                .lookup(ROOT, "file")
                .req(op::LISTXATTR, N1, &[probe.as_bytes()])
                .req(op::LISTXATTR, N1, &[get.as_bytes()])
                .done()
        }),
        ("removexattr", seq().lookup(ROOT, "file").req(op::REMOVEXATTR, N1, &[&z("user.test")]).done()),
        (
            "rename",
            seq().req(op::RENAME, ROOT, &[abi::RenameIn { newdir: ROOT }.as_bytes(), &z("file"), &z("renamed")]).done(),
        ),
        ("rename2", {
            let r = abi::Rename2In { newdir: N1, flags: libc::RENAME_NOREPLACE, padding: 0 };
            seq().lookup(ROOT, "dir").req(op::RENAME2, ROOT, &[r.as_bytes(), &z("file"), &z("moved")]).done()
        }),
        ("rename2-exchange", {
            let r = abi::Rename2In { newdir: ROOT, flags: libc::RENAME_EXCHANGE, padding: 0 };
            seq().req(op::RENAME2, ROOT, &[r.as_bytes(), &z("file"), &z("dir")]).done()
        }),
        ("rename2-into-itself", {
            let r = abi::Rename2In { newdir: N1, flags: 0, padding: 0 };
            seq().lookup(ROOT, "dir").req(op::RENAME2, ROOT, &[r.as_bytes(), &z("dir"), &z("loop")]).done()
        }),
        (
            "link",
            seq()
                .lookup(ROOT, "file")
                .req(op::LINK, ROOT, &[abi::LinkIn { oldnodeid: N1 }.as_bytes(), &z("hardlink")])
                .done(),
        ),
        ("unlink", seq().req(op::UNLINK, ROOT, &[&z("file")]).req(op::UNLINK, ROOT, &[&z("link")]).done()),
        (
            "rmdir",
            seq().lookup(ROOT, "dir").req(op::UNLINK, N1, &[&z("inner")]).req(op::RMDIR, ROOT, &[&z("dir")]).done(),
        ),
        ("fallocate", {
            let f = abi::FallocateIn { fh: FH0, offset: 0, length: 8192, mode: 0, padding: 0 };
            let punch = abi::FallocateIn {
                fh: FH0,
                offset: 0,
                length: 4096,
                mode: (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32,
                padding: 0,
            };
            seq()
                .opened_file(rdwr)
                .req(op::FALLOCATE, N1, &[f.as_bytes()])
                .req(op::FALLOCATE, N1, &[punch.as_bytes()])
                .done()
        }),
        ("lseek", {
            let data = abi::LseekIn { fh: FH0, offset: 0, whence: libc::SEEK_DATA as u32, padding: 0 };
            let hole = abi::LseekIn { fh: FH0, offset: 0, whence: libc::SEEK_HOLE as u32, padding: 0 };
            seq()
                .opened_file(libc::O_RDONLY)
                .req(op::LSEEK, N1, &[data.as_bytes()])
                .req(op::LSEEK, N1, &[hole.as_bytes()])
                .done()
        }),
        ("copy_file_range", {
            let c = abi::CreateIn {
                flags: (rdwr | libc::O_CREAT) as u32,
                mode: libc::S_IFREG | 0o644,
                umask: 0,
                open_flags: 0,
            };
            let cfr = abi::CopyFileRangeIn {
                fh_in: FH0,
                off_in: 0,
                nodeid_out: N2,
                fh_out: FH1,
                off_out: 0,
                len: 13,
                flags: 0,
            };
            seq()
                .opened_file(libc::O_RDONLY)
                .req(op::CREATE, ROOT, &[c.as_bytes(), &z("copy")])
                .req(op::COPY_FILE_RANGE, N1, &[cfr.as_bytes()])
                .read(N2, FH1, 0, 64)
                .done()
        }),
        ("getlk", {
            let l = abi::LkIn { fh: FH0, owner: 1, lk: lk(libc::F_WRLCK), lk_flags: 0, padding: 0 };
            seq().opened_file(rdwr).req(op::GETLK, N1, &[l.as_bytes()]).done()
        }),
        ("setlk", {
            let set = abi::LkIn { fh: FH0, owner: 1, lk: lk(libc::F_WRLCK), lk_flags: 0, padding: 0 };
            let unlock = abi::LkIn { fh: FH0, owner: 1, lk: lk(libc::F_UNLCK), lk_flags: 0, padding: 0 };
            let flock =
                abi::LkIn { fh: FH0, owner: 1, lk: lk(libc::F_RDLCK), lk_flags: abi::FUSE_LK_FLOCK, padding: 0 };
            seq()
                .opened_file(rdwr)
                .req(op::SETLK, N1, &[set.as_bytes()])
                .req(op::SETLK, N1, &[unlock.as_bytes()])
                .req(op::SETLK, N1, &[flock.as_bytes()])
                .done()
        }),
        ("flush", {
            let f = abi::FlushIn { fh: FH0, unused: 0, padding: 0, lock_owner: 1 };
            seq().opened_file(libc::O_RDONLY).req(op::FLUSH, N1, &[f.as_bytes()]).done()
        }),
        ("release", {
            let r = abi::ReleaseIn {
                fh: FH0,
                flags: 0,
                release_flags: abi::FUSE_RELEASE_FLUSH | abi::FUSE_RELEASE_FLOCK_UNLOCK,
                lock_owner: 1,
            };
            seq().opened_file(libc::O_RDONLY).req(op::RELEASE, N1, &[r.as_bytes()]).read(N1, FH0, 0, 16).done()
        }),
        ("fsync", {
            let f = abi::FsyncIn { fh: FH0, fsync_flags: 0, padding: 0 };
            let d = abi::FsyncIn { fh: FH0, fsync_flags: abi::FUSE_FSYNC_FDATASYNC, padding: 0 };
            seq().opened_file(rdwr).req(op::FSYNC, N1, &[f.as_bytes()]).req(op::FSYNC, N1, &[d.as_bytes()]).done()
        }),
        ("fsyncdir", {
            let f = abi::FsyncIn { fh: FH0, fsync_flags: 0, padding: 0 };
            seq()
                .req(op::OPENDIR, ROOT, &[abi::OpenIn::default().as_bytes()])
                .req(op::FSYNCDIR, ROOT, &[f.as_bytes()])
                .done()
        }),
        ("statfs", seq().req(op::STATFS, ROOT, &[]).done()),
        ("forget", seq().lookup(ROOT, "file").req(op::FORGET, N1, &[abi::ForgetIn { nlookup: 1 }.as_bytes()]).done()),
        ("batch_forget", {
            let b = abi::BatchForgetIn { count: 2, dummy: 0 };
            let one = abi::ForgetOne { nodeid: N1, nlookup: 1 };
            let two = abi::ForgetOne { nodeid: N2, nlookup: 1 };
            seq()
                .lookup(ROOT, "file")
                .lookup(ROOT, "dir")
                .req(op::BATCH_FORGET, 0, &[b.as_bytes(), one.as_bytes(), two.as_bytes()])
                .done()
        }),
        ("interrupt", seq().req(op::INTERRUPT, 0, &[abi::InterruptIn { unique: 1 }.as_bytes()]).done()),
        ("access", {
            let a = abi::AccessIn { mask: (libc::R_OK | libc::W_OK | libc::X_OK) as u32, padding: 0 };
            seq()
                .req(op::ACCESS, ROOT, &[a.as_bytes()])
                .lookup(ROOT, "file")
                .req(op::ACCESS, N1, &[abi::AccessIn::default().as_bytes()])
                .done()
        }),
        ("statx", {
            let s = abi::StatxIn { sx_mask: libc::STATX_BASIC_STATS | libc::STATX_BTIME, ..Default::default() };
            seq().req(op::STATX, ROOT, &[s.as_bytes()]).lookup(ROOT, "file").req(op::STATX, N1, &[s.as_bytes()]).done()
        }),
        ("tmpfile", {
            let c = abi::CreateIn { flags: rdwr as u32, mode: libc::S_IFREG | 0o600, umask: 0o022, open_flags: 0 };
            seq().req(op::TMPFILE, ROOT, &[c.as_bytes()]).write(N1, FH0, 0, b"tmp").read(N1, FH0, 0, 16).done()
        }),
        ("syncfs", seq().req(op::SYNCFS, ROOT, &[abi::SyncfsIn::default().as_bytes()]).done()),
        ("destroy", {
            let mut s = seq().lookup(ROOT, "file").req(op::DESTROY, 0, &[]).lookup(ROOT, "file");
            s.bytes.extend(init_request(99, ALL_CLIENT_FLAGS));
            s.lookup(ROOT, "file").done()
        }),
        ("groups-extension", {
            // MKDIR in `pub` with a FUSE_EXT_GROUPS extension after its
            // arguments; total_extlen counts 8-byte units.
            let m = abi::MkdirIn { mode: 0o755, umask: 0 };
            let ext = abi::ExtHeader { size: 24, typ: abi::FUSE_EXT_GROUPS };
            let groups = abi::SuppGroups { nr_groups: 2 };
            let ids: [u32; 3] = [100, 200, 0];
            let mut r = request_as(
                op::MKDIR,
                2,
                N1,
                1000,
                1000,
                &[m.as_bytes(), &z("grp"), ext.as_bytes(), groups.as_bytes(), ids.as_bytes()],
            );
            r[36..38].copy_from_slice(&3u16.to_le_bytes());
            [request(op::LOOKUP, 1, ROOT, &[&z("pub")]), r].concat()
        }),
        ("as-user", {
            // Unprivileged callers: create in the sticky world-writable `pub`
            // (node 1), fail to create in the root, open as nobody.
            let m = abi::MkdirIn { mode: 0o700, umask: 0 };
            let c = abi::CreateIn {
                flags: (rdwr | libc::O_CREAT) as u32,
                mode: libc::S_IFREG | 0o4755,
                umask: 0,
                open_flags: 0,
            };
            [
                request(op::LOOKUP, 1, ROOT, &[&z("pub")]),
                request_as(op::MKDIR, 2, N1, 1000, 1000, &[m.as_bytes(), &z("userdir")]),
                request_as(op::CREATE, 3, N1, 1000, 1000, &[c.as_bytes(), &z("setuid")]),
                request_as(
                    op::WRITE,
                    4,
                    node_ref(3),
                    1000,
                    1000,
                    &[abi::WriteIn { fh: FH0, size: 2, ..Default::default() }.as_bytes(), b"#!"],
                ),
                request_as(op::MKDIR, 5, ROOT, 1000, 1000, &[m.as_bytes(), &z("denied")]),
                request_as(op::LOOKUP, 6, ROOT, 65534, 65534, &[&z("file")]),
                request_as(
                    op::OPEN,
                    7,
                    node_ref(4),
                    65534,
                    65534,
                    &[abi::OpenIn { flags: rdwr as u32, open_flags: 0 }.as_bytes()],
                ),
                request_as(op::UNLINK, 8, N1, 65534, 65534, &[&z("setuid")]),
            ]
            .concat()
        }),
        // Escape attempts: symlinks out of the share, a FIFO, forged node ids.
        ("escape-symlinks", {
            seq()
                .lookup(ROOT, "escape")
                .open(N1, libc::O_RDONLY)
                .read(N1, FH0, 0, 4096)
                .lookup(ROOT, "abs")
                .open(N2, libc::O_RDONLY)
                .read(N2, FH1, 0, 4096)
                .req(op::READLINK, N2, &[])
                .done()
        }),
        (
            "escape-fifo",
            seq().lookup(ROOT, "fifo").open(N1, libc::O_RDONLY | libc::O_NONBLOCK).read(N1, FH0, 0, 16).done(),
        ),
        ("forged-ids", {
            seq()
                .req(op::GETATTR, 0x7fff_ffff_ffff, &[getattr.as_bytes()])
                .read(ROOT, 12345, 0, 16)
                .req(op::LOOKUP, 0, &[&z("file")])
                .done()
        }),
        ("unsupported", {
            seq()
                .req(op::BMAP, ROOT, &[&[0u8; 16]])
                .req(op::IOCTL, ROOT, &[&[0u8; 32]])
                .req(op::POLL, ROOT, &[&[0u8; 24]])
                .req(op::SETUPMAPPING, ROOT, &[&[0u8; 40]])
                .req(op::NOTIFY_REPLY, 0, &[])
                .req(999, ROOT, &[])
                .done()
        }),
        ("malformed-lengths", {
            let mut long = request(op::LOOKUP, 2, ROOT, &[&z("file")]);
            long[0] = 0xff; // len beyond the frame: the rest of the input
            [request(op::STATFS, 1, ROOT, &[]), long].concat()
        }),
        ("short-header", request(op::GETATTR, 1, ROOT, &[])[..20].to_vec()),
        ("small-reply-buffer", {
            let mut r = seq().opened_file(libc::O_RDONLY).read(N1, FH0, 0, 4096).done();
            // The header's padding is the reply capacity: 24 bytes for the
            // READ, the last request (header and ReadIn, 80 bytes).
            let padding = r.len() - 80 + 38;
            r[padding..padding + 2].copy_from_slice(&24u16.to_le_bytes());
            r
        }),
    ];
    seeds.sort_by_key(|s| s.0);
    seeds
}

const Q: u16 = 16;
const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;

/// The descriptor-chain seeds: (file name, input).
pub fn descriptor_chains() -> Vec<(&'static str, Vec<u8>)> {
    let control = Control { queue_size: Q, head: 0, desc_table: 0, read_chunk: 7, write_chunk: 5, copy_bytes: 40 };
    let lookup = request(op::LOOKUP, 1, 1, &[b"file\0"]);
    let req_at = 0x400;
    let chain = |descs: &[(u64, u32, u16, u16)]| {
        let mut i = Image::default();
        i.table(0, descs).put(req_at, &lookup);
        i.input(control)
    };
    let len = lookup.len() as u32;
    let mut seeds = vec![
        ("request-and-reply", chain(&[(req_at, len, NEXT, 1), (0x800, 256, WRITE, 0)])),
        (
            "split-header",
            chain(&[
                (req_at, 10, NEXT, 1),
                (req_at + 10, len - 10, NEXT, 2),
                (0x800, 16, NEXT | WRITE, 3),
                (0x900, 240, WRITE, 0),
            ]),
        ),
        ("straddles-regions", chain(&[(req_at, len, NEXT, 1), (0xfff0, 0x20, WRITE, 0)])),
        ("third-region", chain(&[(req_at, len, NEXT, 1), (0x30000, 0x1000, WRITE, 0)])),
        ("gap", chain(&[(req_at, len, NEXT, 1), (0x20000, 16, WRITE, 0)])),
        (
            "zero-length",
            chain(&[
                (req_at, 0, NEXT, 1),
                (req_at, len, NEXT, 2),
                (0x123456789, 0, NEXT | WRITE, 3),
                (0x800, 64, WRITE, 0),
            ]),
        ),
        ("readable-only", chain(&[(req_at, len, 0, 0)])),
        ("writable-only", chain(&[(0x800, 64, WRITE, 0)])),
        ("readable-after-writable", chain(&[(0x800, 16, NEXT | WRITE, 1), (req_at, len, 0, 0)])),
        ("loop", chain(&[(req_at, len, NEXT, 1), (0x800, 16, NEXT | WRITE, 1)])),
        ("next-out-of-range", chain(&[(req_at, len, NEXT, Q)])),
        ("too-large", chain(&[(0, u32::MAX, NEXT, 1), (0x800, 16, WRITE, 0)])),
        ("overflowing-address", chain(&[(u64::MAX - 8, 16, 0, 0)])),
        ("overlapping", chain(&[(req_at, len, NEXT, 1), (0x800, 64, NEXT | WRITE, 2), (0x820, 64, WRITE, 0)])),
        ("reply-over-table", chain(&[(req_at, len, NEXT, 1), (0, 64, WRITE, 0)])),
        ("indirect", {
            let mut i = Image::default();
            i.table(0, &[(0x100, 48, INDIRECT, 0)])
                .table(0x100, &[(req_at, len, NEXT, 1), (0x800, 16, NEXT | WRITE, 2), (0x900, 240, WRITE, 0)])
                .put(req_at, &lookup);
            i.input(control)
        }),
        ("indirect-after-direct", {
            let mut i = Image::default();
            i.table(0, &[(req_at, len, NEXT, 1), (0x100, 16, INDIRECT, 0)])
                .table(0x100, &[(0x800, 64, WRITE, 0)])
                .put(req_at, &lookup);
            i.input(control)
        }),
        ("indirect-nested", {
            let mut i = Image::default();
            i.table(0, &[(0x100, 16, INDIRECT, 0)]).table(0x100, &[(0x200, 16, INDIRECT, 0)]);
            i.input(control)
        }),
        ("indirect-loop", {
            let mut i = Image::default();
            i.table(0, &[(0x100, 32, INDIRECT, 0)]).table(0x100, &[(req_at, len, NEXT, 1), (req_at, len, NEXT, 0)]);
            i.input(control)
        }),
        ("indirect-bad-length", {
            let mut i = Image::default();
            i.table(0, &[(0x100, 20, INDIRECT, 0)]);
            i.input(control)
        }),
        ("indirect-with-next", {
            let mut i = Image::default();
            i.table(0, &[(0x100, 16, INDIRECT | NEXT, 1)]).table(0x100, &[(0x800, 64, WRITE, 0)]);
            i.input(control)
        }),
    ];
    // A long chain in a bigger queue, head in the middle of the table.
    let mut i = Image::default();
    let n = 64u16;
    let descs: Vec<(u64, u32, u16, u16)> = (0..n)
        .map(|k| {
            let flags = if k < n / 2 { NEXT } else { NEXT | WRITE };
            let flags = if k == n - 1 { flags & !NEXT } else { flags };
            (0x1000 + 64 * u64::from(k), 64, flags, k + 1)
        })
        .collect();
    i.table(0, &descs);
    seeds.push(("long-chain", i.input(Control { queue_size: 256, head: 0, copy_bytes: 1000, ..control })));
    let mut i = Image::default();
    i.table(0x10, &[(req_at, len, NEXT, 9), (0x800, 64, WRITE, 0)])
        .table(0x10 + 16 * 9, &[(0x800, 64, WRITE, 0)])
        .put(req_at, &lookup);
    seeds.push(("unaligned-table", i.input(Control { desc_table: 0x10, ..control })));
    seeds.sort_by_key(|s| s.0);
    seeds
}

/// The virtio_request seeds: one request per chain, split over buffers in
/// various ways (see [`crate::virtio`] for the nodes and handles the harness
/// opens first).
pub fn virtio_requests() -> Vec<(&'static str, Vec<u8>)> {
    use crate::virtio::{chain_input, FILE_FH, FILE_NODE, ROOT_FH};
    let lookup = request(op::LOOKUP, 10, abi::ROOT_ID, &[&z("file")]);
    let read =
        request(op::READ, 11, FILE_NODE, &[abi::ReadIn { fh: FILE_FH, size: 4096, ..Default::default() }.as_bytes()]);
    let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let wi = abi::WriteIn { fh: FILE_FH, offset: 5, size: payload.len() as u32, ..Default::default() };
    let write = request(op::WRITE, 12, FILE_NODE, &[wi.as_bytes(), &payload]);
    let rdp = request(
        op::READDIRPLUS,
        13,
        abi::ROOT_ID,
        &[abi::ReadIn { fh: ROOT_FH, size: 4096, ..Default::default() }.as_bytes()],
    );
    let getxattr =
        request(op::GETXATTR, 14, FILE_NODE, &[abi::GetxattrIn { size: 64, padding: 0 }.as_bytes(), &z("user.test")]);
    let forget = request(op::FORGET, 15, FILE_NODE, &[abi::ForgetIn { nlookup: 1 }.as_bytes()]);
    let mut seeds = vec![
        ("lookup", chain_input(&lookup, &[], &[4096])),
        ("lookup-split", chain_input(&lookup, &[10, 30], &[16, 128])),
        ("read", chain_input(&read, &[], &[16, 4096])),
        ("read-scattered", chain_input(&read, &[40], &[8, 8, 3, 5, 4096])),
        ("read-short-buffer", chain_input(&read, &[], &[20])),
        ("write", chain_input(&write, &[40, 40], &[64])),
        ("write-scattered", chain_input(&write, &[40, 40, 100, 1, 77], &[8, 16])),
        ("write-small-reply", chain_input(&write, &[], &[16])),
        ("readdirplus", chain_input(&rdp, &[], &[4096])),
        ("getxattr", chain_input(&getxattr, &[], &[16, 64])),
        ("statfs", chain_input(&request(op::STATFS, 16, abi::ROOT_ID, &[]), &[], &[96])),
        ("no-reply-room", chain_input(&lookup, &[], &[])),
        ("forget", chain_input(&forget, &[], &[])),
        ("short-request", chain_input(&lookup[..30], &[], &[64])),
    ];
    seeds.sort_by_key(|s| s.0);
    seeds
}
