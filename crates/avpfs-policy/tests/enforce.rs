//! PolicyFs against a recording file system double: a denied operation must
//! never reach the inner file system, and allowed ones must arrive translated.

use std::ffi::{CStr, CString};
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use avpfs_policy::{parse, PolicyFs};
use avpfs_server::{
    Context, CopyRange, CreateRequest, DirEntry, DirSink, Entry, FallocateRequest, FileSystem, Handle, LockOwner,
    MknodRequest, NodeId, OpenReply, RenameRequest, SetattrIn, SetxattrRequest, SliceReader, WriteRequest,
};
use fuse_abi::Attr;

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    next: Mutex<u64>,
}

impl Recorder {
    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
    fn entry(&self, mode: u32, uid: u32) -> Entry {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        Entry {
            nodeid: NodeId(100 + *n),
            attr: Attr { mode, uid, gid: uid, ..Default::default() },
            ..Default::default()
        }
    }
}

impl FileSystem for Recorder {
    fn lookup(&self, ctx: &Context, parent: NodeId, name: &CStr) -> io::Result<Entry> {
        self.log(format!("lookup {parent} {} as {}", name.to_str().unwrap(), ctx.uid));
        Ok(self.entry(libc::S_IFDIR | 0o755, 100_000))
    }
    fn forget(&self, node: NodeId, count: u64) {
        self.log(format!("forget {node} {count}"));
    }
    fn mknod(&self, ctx: &Context, _: NodeId, name: &CStr, req: MknodRequest) -> io::Result<Entry> {
        let mode = req.mode;
        self.log(format!("mknod {} {mode:o} as {}", name.to_str().unwrap(), ctx.uid));
        Ok(self.entry(mode, ctx.uid))
    }
    fn mkdir(&self, _: &Context, _: NodeId, name: &CStr, mode: u32, _: u32) -> io::Result<Entry> {
        self.log(format!("mkdir {} {mode:o}", name.to_str().unwrap()));
        Ok(self.entry(libc::S_IFDIR | mode, 0))
    }
    fn setattr(&self, _: &Context, _: NodeId, set: SetattrIn) -> io::Result<(Attr, Duration)> {
        self.log(format!("setattr mode={:?} uid={:?}", set.mode.map(|m| format!("{m:o}")), set.uid));
        Ok((Attr::default(), Duration::ZERO))
    }
    fn open(&self, _: &Context, node: NodeId, _: u32, _: bool) -> io::Result<OpenReply> {
        self.log(format!("open {node}"));
        Ok(OpenReply { handle: Handle(node.0 * 10), open_flags: 0 })
    }
    fn release(&self, _: &Context, _: NodeId, h: Handle, _: u32, _: Option<LockOwner>) -> io::Result<()> {
        self.log(format!("release {h}"));
        Ok(())
    }
    fn unlink(&self, _: &Context, _: NodeId, name: &CStr) -> io::Result<()> {
        self.log(format!("unlink {}", name.to_str().unwrap()));
        Ok(())
    }
    fn setxattr(&self, _: &Context, _: NodeId, name: &CStr, _: SetxattrRequest<'_>) -> io::Result<()> {
        self.log(format!("setxattr {}", name.to_str().unwrap()));
        Ok(())
    }
    fn listxattr(&self, _: &Context, _: NodeId) -> io::Result<Vec<u8>> {
        Ok(b"user.a\0security.selinux\0user.avpfs.security.selinux\0".to_vec())
    }
    fn readdir(&self, _: &Context, _: NodeId, _: Handle, _: u64, sink: &mut dyn DirSink) -> io::Result<()> {
        for (i, name) in ["visible", "secrets", "other"].iter().enumerate() {
            let e = self.entry(libc::S_IFREG | 0o644, 0);
            sink.add(DirEntry { ino: 1, offset: i as u64 + 1, typ: 8, name: name.as_bytes() }, Some(&e));
        }
        Ok(())
    }
}

struct Sink(Vec<(String, u64)>);
impl DirSink for Sink {
    fn is_plus(&self) -> bool {
        true
    }
    fn has_room(&self, _: usize) -> bool {
        true
    }
    fn add(&mut self, e: DirEntry<'_>, plus: Option<&Entry>) -> bool {
        self.0.push((String::from_utf8_lossy(e.name).into_owned(), plus.map_or(0, |p| p.nodeid.0)));
        true
    }
}

fn fs(policy: &str) -> PolicyFs<Recorder> {
    PolicyFs::new(Recorder::default(), parse(policy).unwrap())
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn root() -> Context {
    Context { uid: 0, gid: 0, pid: 1, groups: None }
}

fn calls(p: &PolicyFs<Recorder>) -> Vec<String> {
    p.inner().calls.lock().unwrap().clone()
}

fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    r.unwrap_err().raw_os_error().unwrap()
}

#[test]
fn hidden_lookup_never_reaches_the_file_system() {
    let p = fs("[paths]\nhidden = [\"secrets\"]\n");
    assert_eq!(errno(p.lookup(&root(), NodeId::ROOT, &c("secrets"))), libc::ENOENT);
    assert!(calls(&p).is_empty());
    p.lookup(&root(), NodeId::ROOT, &c("open")).unwrap();
    assert_eq!(calls(&p), ["lookup 1 open as 0"]);
}

#[test]
fn readdirplus_leaves_hidden_entries_out_and_returns_their_reference() {
    let p = fs("[paths]\nhidden = [\"secrets\"]\n");
    let mut sink = Sink(Vec::new());
    p.readdir(&root(), NodeId::ROOT, Handle(0), 0, &mut sink).unwrap();
    let names: Vec<&str> = sink.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["visible", "other"]);
    // The hidden entry's lookup reference was given back to the inner file system.
    assert!(calls(&p).contains(&"forget 102 1".to_string()), "{:?}", calls(&p));
    assert_eq!(p.node_count(), 2);
}

#[test]
fn creation_rules_and_setuid_stripping() {
    let p = fs("[share]\ncreate = [\"file\", \"dir\"]\n");
    assert_eq!(
        errno(p.mknod(
            &root(),
            NodeId::ROOT,
            &c("fifo"),
            MknodRequest { mode: libc::S_IFIFO | 0o644, rdev: 0, umask: 0 }
        )),
        libc::EPERM
    );
    assert_eq!(
        errno(p.mknod(
            &root(),
            NodeId::ROOT,
            &c("dev"),
            MknodRequest { mode: libc::S_IFCHR | 0o644, rdev: 0x0103, umask: 0 }
        )),
        libc::EPERM
    );
    assert!(calls(&p).is_empty());
    p.mknod(&root(), NodeId::ROOT, &c("f"), MknodRequest { mode: libc::S_IFREG | 0o4755, rdev: 0, umask: 0 }).unwrap();
    p.mkdir(&root(), NodeId::ROOT, &c("d"), 0o2775, 0).unwrap();
    let set = SetattrIn { mode: Some(0o6755), ..Default::default() };
    p.setattr(&root(), NodeId(101), set).unwrap();
    assert_eq!(calls(&p), ["mknod f 100755 as 0", "mkdir d 775", "setattr mode=Some(\"755\") uid=None"]);
}

#[test]
fn readonly_share_refuses_every_modification_first() {
    let p = fs("[share]\nreadonly = true\n");
    let f = p.lookup(&root(), NodeId::ROOT, &c("f")).unwrap().nodeid;
    let (dir, n) = (NodeId::ROOT, &c("n"));
    let erofs = |r: io::Result<()>| assert_eq!(errno(r), libc::EROFS);
    erofs(p.unlink(&root(), dir, &c("f")));
    erofs(p.rmdir(&root(), dir, &c("f")));
    erofs(p.rename(&root(), RenameRequest { olddir: dir, oldname: &c("f"), newdir: dir, newname: n, flags: 0 }));
    erofs(p.mkdir(&root(), dir, n, 0o755, 0).map(drop));
    erofs(p.mknod(&root(), dir, n, MknodRequest { mode: libc::S_IFREG | 0o644, rdev: 0, umask: 0 }).map(drop));
    erofs(p.symlink(&root(), c"t", dir, n).map(drop));
    erofs(p.link(&root(), f, dir, n).map(drop));
    erofs(p.create(&root(), dir, n, CreateRequest { mode: 0o644, umask: 0, flags: libc::O_RDWR as u32 }).map(drop));
    erofs(p.tmpfile(&root(), dir, CreateRequest { mode: 0o644, umask: 0, flags: libc::O_RDWR as u32 }).map(drop));
    erofs(p.setattr(&root(), f, SetattrIn { mode: Some(0o600), ..Default::default() }).map(drop));
    erofs(p.setattr(&root(), f, SetattrIn { size: Some(0), ..Default::default() }).map(drop));
    erofs(p.setxattr(&root(), f, &c("user.x"), SetxattrRequest { value: b"v", flags: 0, kill_sgid: false }));
    erofs(p.removexattr(&root(), f, &c("user.x")));
    erofs(p.access(&root(), f, libc::W_OK as u32));
    for flags in [libc::O_WRONLY, libc::O_RDWR, libc::O_RDONLY | libc::O_TRUNC, libc::O_RDONLY | libc::O_APPEND] {
        erofs(p.open(&root(), f, flags as u32, false).map(drop));
    }
    // Through a handle of the file (opened for reading, or before the share
    // became read-only): nothing is written either.
    let h = Handle(1010);
    let write = WriteRequest { handle: h, offset: 0, size: 1, kill_suidgid: false, flags: 0 };
    erofs(p.write(&root(), f, write, &mut SliceReader::new(b"y")).map(drop));
    erofs(p.fallocate(&root(), f, FallocateRequest { handle: h, mode: 0, offset: 0, length: 10 }));
    let range = CopyRange {
        node_in: f,
        handle_in: h,
        offset_in: 0,
        node_out: f,
        handle_out: h,
        offset_out: 0,
        len: 1,
        flags: 0,
    };
    erofs(p.copy_file_range(&root(), range).map(drop));
    assert_eq!(calls(&p), ["lookup 1 f as 0"], "no modification reached the file system");
    p.open(&root(), f, libc::O_RDONLY as u32, false).unwrap();
}

#[test]
fn ids_are_translated_on_the_way_in_and_out() {
    let p = fs("[uid]\nmap = [{ guest = 0, host = 100000, count = 1000 }]\n[gid]\nunmapped = \"identity\"\n");
    let e = p.lookup(&root(), NodeId::ROOT, &c("a")).unwrap();
    assert_eq!(e.attr.uid, 0, "host 100000 shows as guest 0");
    let stranger = Context { uid: 5000, gid: 0, pid: 1, groups: None };
    assert_eq!(errno(p.lookup(&stranger, NodeId::ROOT, &c("b"))), libc::EPERM);
    let set = SetattrIn { uid: Some(5000), ..Default::default() };
    assert_eq!(errno(p.setattr(&root(), NodeId::ROOT, set)), libc::EPERM);
    let set = SetattrIn { uid: Some(7), ..Default::default() };
    p.setattr(&root(), NodeId::ROOT, set).unwrap();
    assert_eq!(calls(&p), ["lookup 1 a as 100000", "setattr mode=None uid=Some(100007)"]);
}

#[test]
fn xattr_names_are_mapped_and_filtered() {
    let p = fs("[xattr]\nrules = [{ prefix = \"security.\", rename = \"user.avpfs.security.\" }, { prefix = \"user.avpfs.\", action = \"deny\" }]\n");
    p.setxattr(
        &root(),
        NodeId::ROOT,
        &c("security.selinux"),
        SetxattrRequest { value: b"x", flags: 0, kill_sgid: false },
    )
    .unwrap();
    assert_eq!(
        errno(p.setxattr(
            &root(),
            NodeId::ROOT,
            &c("user.avpfs.security.selinux"),
            SetxattrRequest { value: b"x", flags: 0, kill_sgid: false }
        )),
        libc::EPERM
    );
    assert_eq!(calls(&p), ["setxattr user.avpfs.security.selinux"]);
    assert_eq!(p.listxattr(&root(), NodeId::ROOT).unwrap(), b"user.a\0security.selinux\0");
}

#[test]
fn limits_on_nodes_and_handles() {
    let p = fs("[share]\nmax_inodes = 2\nmax_open_files = 1\n");
    p.lookup(&root(), NodeId::ROOT, &c("a")).unwrap();
    p.lookup(&root(), NodeId::ROOT, &c("b")).unwrap();
    assert_eq!(errno(p.lookup(&root(), NodeId::ROOT, &c("c"))), libc::ENFILE);
    assert!(calls(&p).contains(&"forget 103 1".to_string()), "the refused reference is returned");
    p.forget(NodeId(101), 1);
    p.lookup(&root(), NodeId::ROOT, &c("c")).unwrap();

    let h = p.open(&root(), NodeId(101), 0, false).unwrap();
    assert_eq!(errno(p.open(&root(), NodeId(102), 0, false)), libc::EMFILE);
    p.release(&root(), NodeId(101), h.handle, 0, None).unwrap();
    p.open(&root(), NodeId(102), 0, false).unwrap();
}

#[test]
fn renames_across_rules_are_exdev() {
    let p = fs("[paths]\nreadonly = [\"ro\"]\nhidden = [\"h\"]\n");
    assert_eq!(
        errno(p.rename(
            &root(),
            RenameRequest { olddir: NodeId::ROOT, oldname: &c("a"), newdir: NodeId::ROOT, newname: &c("ro"), flags: 0 }
        )),
        libc::EROFS
    );
    assert_eq!(
        errno(p.rename(
            &root(),
            RenameRequest { olddir: NodeId::ROOT, oldname: &c("h"), newdir: NodeId::ROOT, newname: &c("x"), flags: 0 }
        )),
        libc::ENOENT
    );
    assert!(calls(&p).is_empty());
}

#[test]
fn a_new_policy_applies_to_the_next_requests_and_replaces_subtree_rules() {
    let p = fs("[share]\n");
    // The guest holds a/ and a/b/ from before the change.
    let a = p.lookup(&root(), NodeId::ROOT, &c("a")).unwrap().nodeid;
    let b = p.lookup(&root(), a, &c("b")).unwrap().nodeid;
    p.mkdir(&root(), b, &c("x"), 0o755, 0).unwrap();
    // Read-only share: the next modification fails, what was held stays.
    p.set_policy(parse("[share]\nreadonly = true\n").unwrap());
    assert_eq!(errno(p.mkdir(&root(), b, &c("y"), 0o755, 0)), libc::EROFS);
    assert!(p.policy().readonly);
    // A rule on a/ now covers the a/b/ the guest already held.
    p.set_policy(parse("[paths]\nreadonly = [\"a\"]\n").unwrap());
    assert_eq!(errno(p.mkdir(&root(), b, &c("y"), 0o755, 0)), libc::EROFS);
    p.mkdir(&root(), NodeId::ROOT, &c("elsewhere"), 0o755, 0).unwrap();
    p.set_policy(parse("[paths]\nhidden = [\"a/b\"]\n").unwrap());
    assert_eq!(errno(p.mkdir(&root(), b, &c("y"), 0o755, 0)), libc::EACCES, "inside a hidden subtree");
    // And back: everything allowed again.
    p.set_policy(parse("[share]\n").unwrap());
    p.mkdir(&root(), b, &c("y"), 0o755, 0).unwrap();
}
