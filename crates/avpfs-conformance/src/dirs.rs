//! Directories: mkdir/rmdir, readdir (small, 10 000 entries, telldir /
//! seekdir, changes during iteration), removed directories, unlink of open
//! files, odd names and special files.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;

use libc::{O_CREAT, O_EXCL, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY};

use crate::files::names_str;
use crate::recorder::{Flow, Outcome};
use crate::sys::{self, dtype_name, Dir, DirStream};
use crate::{case, Case, Env};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("dirs.mkdir_rmdir", false, mkdir_rmdir),
        case!("dirs.readdir_small", false, readdir_small),
        case!("dirs.readdir_large", false, readdir_large),
        case!("dirs.readdir_concurrent", false, readdir_concurrent),
        case!("dirs.readdir_unlink_all", false, readdir_unlink_all),
        case!("dirs.removed_dir", false, removed_dir),
        case!("dirs.unlink_open", false, unlink_open),
        case!("dirs.names", false, names),
        case!("dirs.special_files", false, special_files),
        case!("dirs.device_nodes", true, device_nodes),
    ]
}

fn perm(d: &Dir, name: &str) -> std::io::Result<String> {
    d.stat(name).map(|s| format!("{:o}", s.perm()))
}

fn mkdir_rmdir(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.step("nlink of fresh dir", d.stat(".").map(|s| s.nlink));
    o.step("mkdir a 0750", d.mkdir("a", 0o750));
    o.step("perm a", perm(d, "a"));
    o.step("stat a", d.stat("a").map(|s| s.summary()));
    o.step("parent nlink", d.stat(".").map(|s| s.nlink));
    o.step("mkdir b 0777 (umask 022)", d.mkdir("b", 0o777));
    o.step("perm b", perm(d, "b"));
    o.step("mkdir sticky 01777", d.mkdir("st", 0o1777));
    o.step("perm st", perm(d, "st"));
    o.step("mkdir setgid 02755", d.mkdir("sg", 0o2755));
    o.step("perm sg", perm(d, "sg"));
    o.step("mkdir existing", d.mkdir("a", 0o755));
    o.need("create f", d.write_file("f", b"f"))?;
    o.step("mkdir over file", d.mkdir("f", 0o755));
    o.need("symlink l -> a", d.symlink("a", "l"))?;
    o.step("mkdir over symlink", d.mkdir("l", 0o755));
    o.step("mkdir missing parents", d.mkdir("x/y/z", 0o755));
    o.step("mkdir under a file", d.mkdir("f/x", 0o755));
    o.step("mkdir with trailing slash", d.mkdir("t/", 0o755));
    o.step("mkdir '.'", d.mkdir(".", 0o755));
    o.step("mkdir '..'", d.mkdir("..", 0o755));
    o.step("mkdir a/inner", d.mkdir("a/inner", 0o755));
    o.step("nlink of a", d.stat("a").map(|s| s.nlink));
    o.step("rmdir non-empty", d.rmdir("a"));
    o.step("rmdir file", d.rmdir("f"));
    o.step("unlink dir", d.unlink("a"));
    o.step("rmdir '.'", d.rmdir("."));
    o.step("rmdir a/.", d.rmdir("a/."));
    o.step("rmdir '..'", d.rmdir("a/inner/.."));
    o.step("rmdir missing", d.rmdir("missing"));
    o.step("rmdir symlink to dir", d.rmdir("l"));
    o.step("rmdir with trailing slash", d.rmdir("t/"));
    o.step("rmdir a/inner", d.rmdir("a/inner"));
    o.step("nlink of a after", d.stat("a").map(|s| s.nlink));
    o.step("rmdir a", d.rmdir("a"));
    o.step("parent nlink after", d.stat(".").map(|s| s.nlink));
    o.step("names", d.names().map(names_str));
    Ok(())
}

fn readdir_small(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create file", d.write_file("file", b"1"))?;
    o.need("mkdir dir", d.mkdir("dir", 0o755))?;
    o.need("symlink link", d.symlink("file", "link"))?;
    o.need("mkfifo fifo", d.mknod("fifo", libc::S_IFIFO | 0o644, 0))?;
    o.step("empty subdir entries", {
        d.stream("dir").and_then(|mut s| {
            let mut v = Vec::new();
            while let Some((n, t)) = s.next_entry()? {
                v.push(format!("{}:{}", String::from_utf8_lossy(&n), dtype_name(t)));
            }
            v.sort();
            Ok(v)
        })
    });
    let mut s = o.need("opendir", d.stream("."))?;
    let mut v = Vec::new();
    loop {
        match s.next_entry() {
            Ok(Some((n, t))) => v.push(format!("{}:{}", String::from_utf8_lossy(&n), dtype_name(t))),
            Ok(None) => break,
            Err(e) => {
                o.step::<()>("readdir", Err(e));
                return Ok(());
            }
        }
    }
    v.sort();
    o.val("entries with d_type", v);
    o.val("end is sticky", s.next_entry().map(|e| e.is_none()).unwrap_or(false));
    s.rewind();
    let mut n = 0;
    while let Ok(Some(_)) = s.next_entry() {
        n += 1;
    }
    o.val("count after rewinddir", n);
    o.step("opendir on a file", d.stream("file").map(drop));
    o.step("opendir missing", d.stream("missing").map(drop));
    Ok(())
}

/// Reads a stream to the end.
fn drain(s: &mut DirStream) -> std::io::Result<Vec<Vec<u8>>> {
    let mut v = Vec::new();
    while let Some((n, _)) = s.next_entry()? {
        v.push(n);
    }
    Ok(v)
}

/// Reads up to `n` entries.
fn take(s: &mut DirStream, n: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let mut v = Vec::new();
    while v.len() < n {
        match s.next_entry()? {
            Some((name, _)) => v.push(name),
            None => break,
        }
    }
    Ok(v)
}

/// `(entries, distinct, duplicates, missing of expected, unexpected)`.
fn tally(seen: &[Vec<u8>], expected: &HashSet<Vec<u8>>) -> String {
    let mut count: HashMap<&[u8], usize> = HashMap::new();
    for n in seen {
        *count.entry(n.as_slice()).or_default() += 1;
    }
    let dups = count.values().filter(|c| **c > 1).count();
    let missing = expected.iter().filter(|n| !count.contains_key(n.as_slice())).count();
    let unexpected = count.keys().filter(|n| !expected.contains(**n)).count();
    format!(
        "entries={} distinct={} dup_names={dups} missing={missing} unexpected={unexpected}",
        seen.len(),
        count.len()
    )
}

const LARGE: usize = 10_000;

fn readdir_large(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("mkdir big", d.mkdir("big", 0o755))?;
    let big = o.need("open big", d.sub("big"))?;
    let mut expected: HashSet<Vec<u8>> = HashSet::new();
    expected.insert(b".".to_vec());
    expected.insert(b"..".to_vec());
    let mut failed = 0;
    for i in 0..LARGE {
        let name = format!("entry-{i:05}");
        if big.open(&name, O_CREAT | O_EXCL | O_WRONLY, 0o644).is_err() {
            failed += 1;
        }
        expected.insert(name.into_bytes());
    }
    o.val("create 10000 files, failures", failed);

    let mut s = o.need("opendir", big.stream("."))?;
    let all = o.need("readdir all", drain(&mut s))?;
    o.val("one pass", tally(&all, &expected));

    // telldir / seekdir within one stream.
    let mut s2 = o.need("opendir 2", big.stream("."))?;
    let first = o.need("read 2500", take(&mut s2, 2500))?;
    let pos = s2.tell();
    let a = o.need("read next 100", take(&mut s2, 100))?;
    s2.seek(pos);
    let b = o.need("read 100 after seekdir", take(&mut s2, 100))?;
    o.val("seekdir repeats the same entries", a == b && a.len() == 100);
    let rest = o.need("read rest", drain(&mut s2))?;
    let mut joined = first.clone();
    joined.extend(b);
    joined.extend(rest);
    o.val("pass with seekdir back", tally(&joined, &expected));

    // The position is a cookie of the directory, usable from another
    // stream on the same directory.
    let mut s3 = o.need("opendir 3", big.stream("."))?;
    s3.seek(pos);
    let c = o.need("read 100 on new stream after seekdir", take(&mut s3, 100))?;
    o.val("cookie valid across streams", c == a);

    // Seek to the start via a cookie taken at the start.
    let mut s4 = o.need("opendir 4", big.stream("."))?;
    let zero = s4.tell();
    let head = o.need("read 10", take(&mut s4, 10))?;
    let _ = o.need("read 5000", take(&mut s4, 5000))?;
    s4.seek(zero);
    let head2 = o.need("read 10 after seekdir to start", take(&mut s4, 10))?;
    o.val("seekdir to start", head == head2);
    s4.rewind();
    let again = o.need("read all after rewinddir", drain(&mut s4))?;
    o.val("pass after rewinddir", tally(&again, &expected));
    o.step("stat an entry", big.stat("entry-04321").map(|s| s.summary()));
    Ok(())
}

fn readdir_concurrent(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("mkdir c", d.mkdir("c", 0o755))?;
    let c = o.need("open c", d.sub("c"))?;
    let n = 2000;
    let mut failed = 0;
    for i in 0..n {
        if c.write_file(format!("keep-{i:04}"), b"").is_err() {
            failed += 1;
        }
    }
    o.val("create 2000, failures", failed);
    let mut s = o.need("opendir", c.stream("."))?;
    let mut seen = o.need("read 500", take(&mut s, 500))?;
    let (mut created, mut removed) = (0, 0);
    let mut removed_names = HashSet::new();
    for i in 0..500 {
        if c.write_file(format!("new-{i:04}"), b"").is_ok() {
            created += 1;
        }
    }
    for i in (0..n).step_by(10) {
        let name = format!("keep-{i:04}");
        if c.unlink(&name).is_ok() {
            removed += 1;
        }
        removed_names.insert(name.into_bytes());
    }
    o.val("created during iteration", created);
    o.val("removed during iteration", removed);
    let rest = o.need("read rest", drain(&mut s))?;
    seen.extend(rest);
    // POSIX: entries neither added nor removed are returned exactly once;
    // added or removed ones may or may not be.
    let unchanged: HashSet<Vec<u8>> =
        (0..n).map(|i| format!("keep-{i:04}").into_bytes()).filter(|k| !removed_names.contains(k)).collect();
    let mut count: HashMap<&[u8], usize> = HashMap::new();
    for e in &seen {
        *count.entry(e.as_slice()).or_default() += 1;
    }
    let missing = unchanged.iter().filter(|k| !count.contains_key(k.as_slice())).count();
    let dups = unchanged.iter().filter(|k| count.get(k.as_slice()).copied().unwrap_or(0) > 1).count();
    o.val("unchanged entries missing", missing);
    o.val("unchanged entries seen twice", dups);
    o.val("dot entries once", (count.get(&b"."[..]).copied(), count.get(&b".."[..]).copied()));
    let final_names = c.names().map(|v| v.len());
    o.step("entries after", final_names);
    Ok(())
}

fn readdir_unlink_all(env: &Env, o: &mut Outcome) -> Flow {
    // The `rm -r` pattern: unlink each entry as soon as readdir returns it.
    let d = &env.d;
    o.need("mkdir r", d.mkdir("r", 0o755))?;
    let r = o.need("open r", d.sub("r"))?;
    for i in 0..1500 {
        let _ = r.write_file(format!("victim-{i:04}"), b"v");
    }
    let mut s = o.need("opendir", r.stream("."))?;
    let (mut unlinked, mut errors) = (0, 0);
    loop {
        match s.next_entry() {
            Ok(Some((n, _))) => {
                if n == b"." || n == b".." {
                    continue;
                }
                match r.unlink(std::ffi::OsStr::from_bytes(&n)) {
                    Ok(()) => unlinked += 1,
                    Err(_) => errors += 1,
                }
            }
            Ok(None) => break,
            Err(e) => {
                o.step::<()>("readdir", Err(e));
                break;
            }
        }
    }
    o.val("unlinked in one pass", unlinked);
    o.val("unlink errors", errors);
    o.step("left after one pass", r.names().map(|v| v.len()));
    o.step("rmdir", d.rmdir("r"));
    Ok(())
}

fn removed_dir(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("mkdir gone", d.mkdir("gone", 0o755))?;
    let g = o.need("open gone", d.sub("gone"))?;
    let mut s = o.need("opendir gone", d.stream("gone"))?;
    o.step("rmdir gone", d.rmdir("gone"));
    o.step("getdents64 on removed dir", sys::getdents_count(&g));
    o.step("readdir(3) on removed dir", drain(&mut s).map(names_str));
    o.step("create in removed dir", g.write_file("x", b"x"));
    o.step("mkdir in removed dir", g.mkdir("x", 0o755));
    o.step("fstat removed dir nlink", sys::fstat(&g).map(|s| s.nlink));
    o.step("stat . in removed dir", g.stat(".").map(|s| s.kind()));
    o.step("stat .. of removed dir is parent", g.stat("..").and_then(|p| d.stat(".").map(|s| s.same_file(&p))));
    o.step("mkdir same name again", d.mkdir("gone", 0o755));
    o.step("old fd still sees it empty", sys::getdents_count(&g));
    Ok(())
}

fn unlink_open(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create u", d.write_file("u", b"payload"))?;
    let f = o.need("open u rdwr", d.open("u", O_RDWR, 0))?;
    let r = o.need("open u rdonly", d.open("u", O_RDONLY, 0))?;
    o.step("unlink u", d.unlink("u"));
    o.step("stat u", d.stat("u").map(|s| s.summary()));
    o.step("names", d.names().map(names_str));
    o.step("fstat", sys::fstat(&f).map(|s| s.summary()));
    o.bytes("read via fd", sys::pread(&f, 0, 100));
    o.step("write via fd", sys::pwrite_once(&f, b"+more", 7));
    o.bytes("read via second fd", sys::pread(&r, 0, 100));
    o.step("ftruncate via fd", sys::ftruncate(&f, 3));
    o.bytes("read after truncate", sys::pread(&r, 0, 100));
    o.step("fchmod via fd", sys::fchmod(&f, 0o600));
    o.step("fstat after fchmod", sys::fstat(&r).map(|s| s.summary()));
    o.step("fsync", sys::fsync(&f));
    o.step("create same name anew", d.write_file("u", b"fresh"));
    o.bytes("old fd unaffected", sys::pread(&r, 0, 100));
    o.bytes("new file", d.read_file("u"));
    // Relink through /proc is refused for a file with no links left.
    use std::os::fd::AsRawFd;
    o.step(
        "linkat /proc/self/fd of unlinked file",
        sys::link_raw(libc::AT_FDCWD, format!("/proc/self/fd/{}", f.as_raw_fd()), d, "back", libc::AT_SYMLINK_FOLLOW),
    );
    // With two links, unlinking one leaves the other.
    o.need("create v", d.write_file("v", b"two"))?;
    o.need("link v w", d.link_to("v", d, "w", 0))?;
    let v = o.need("open v", d.open("v", O_RDONLY, 0))?;
    o.step("unlink v", d.unlink("v"));
    o.step("fstat nlink", sys::fstat(&v).map(|s| s.nlink));
    o.bytes("read w", d.read_file("w"));
    Ok(())
}

fn names(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    let n255 = "n".repeat(255);
    let n256 = "n".repeat(256);
    o.step("create 255-byte name", d.write_file(&n255, b"long"));
    o.step("stat 255-byte name", d.stat(&n255).map(|s| s.summary()));
    o.step("create 256-byte name", d.write_file(&n256, b"too long"));
    o.step("mkdir 256-byte name", d.mkdir(&n256, 0o755));
    o.step("stat 256-byte name", d.stat(&n256).map(|s| s.summary()));
    let odd: Vec<&[u8]> = vec![
        b"with space",
        b"new\nline",
        b"tab\there",
        b"\xff\xfe-not-utf8",
        b"-leading-dash",
        b"caf\xc3\xa9",
        b"...",
        b" ",
        b"back\\slash",
        b"colon:star*question?",
    ];
    let mut ok = 0;
    for n in &odd {
        if d.write_file(std::ffi::OsStr::from_bytes(n), n).is_ok() {
            ok += 1;
        }
    }
    o.val("created odd names", ok);
    let listed = d.names();
    o.step(
        "readdir returns odd names exactly",
        listed.map(|v| {
            let set: HashSet<Vec<u8>> = v.into_iter().collect();
            odd.iter().all(|n| set.contains(*n))
        }),
    );
    let mut contents_ok = true;
    for n in &odd {
        let c = d.read_file(std::ffi::OsStr::from_bytes(n));
        contents_ok &= c.map(|c| c == *n).unwrap_or(false);
    }
    o.val("odd names read back", contents_ok);
    o.step("create empty name", d.write_file("", b""));
    o.step("create '.'", d.open(".", O_CREAT | O_WRONLY, 0o644).map(drop));
    o.step("create '..' O_EXCL", d.open("..", O_CREAT | O_EXCL | O_WRONLY, 0o644).map(drop));
    let long_path = format!("{}/x", "a/".repeat(2100));
    o.step("path of 4202 bytes", d.stat(&long_path).map(|s| s.kind()));
    // 40 nested directories and a file at the bottom.
    let mut path = String::new();
    let mut nested_ok = true;
    for _ in 0..40 {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str("deep");
        nested_ok &= d.mkdir(&path, 0o755).is_ok();
    }
    o.val("40 nested mkdirs", nested_ok);
    o.step("file at depth 40", d.write_file(format!("{path}/leaf"), b"leaf"));
    o.step("read it", d.read_file(format!("{path}/leaf")).map(|v| v.len()));
    Ok(())
}

fn special_files(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.step("mknod fifo", d.mknod("fifo", libc::S_IFIFO | 0o640, 0));
    o.step("stat fifo", d.lstat("fifo").map(|s| s.summary()));
    o.step("open fifo O_RDONLY|O_NONBLOCK", d.open("fifo", O_RDONLY | O_NONBLOCK, 0).map(drop));
    o.step("open fifo O_WRONLY|O_NONBLOCK without reader", d.open("fifo", O_WRONLY | O_NONBLOCK, 0).map(drop));
    // A FIFO on the file system connects two opens like a pipe.
    let rd = o.need("open fifo reader", d.open("fifo", O_RDONLY | O_NONBLOCK, 0))?;
    let wr = o.need("open fifo writer", d.open("fifo", O_WRONLY | O_NONBLOCK, 0))?;
    o.step("write into fifo", sys::write_once(&wr, b"through"));
    o.bytes("read from fifo", sys::read_once(&rd, 100));
    o.step("mknod socket", d.mknod("sock", libc::S_IFSOCK | 0o600, 0));
    o.step("stat socket", d.lstat("sock").map(|s| s.summary()));
    o.step("mknod regular", d.mknod("reg", libc::S_IFREG | 0o600, 0));
    o.step("stat regular", d.lstat("reg").map(|s| s.summary()));
    o.step("mknod existing", d.mknod("reg", libc::S_IFREG | 0o600, 0));
    o.step("mknod bad type", d.mknod("bad", 0o170000 | 0o600, 0));
    o.step("mknod dir type", d.mknod("dirnode", libc::S_IFDIR | 0o755, 0));
    o.step("names", d.names().map(names_str));
    Ok(())
}

fn device_nodes(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    let null = libc::makedev(1, 3);
    o.step("mknod chr 1:3", d.mknod("null", libc::S_IFCHR | 0o666, null));
    o.step("stat chr", d.lstat("null").map(|s| format!("{} rdev_ok={}", s.summary(), s.rdev == null)));
    o.step("mknod blk 7:0", d.mknod("loop", libc::S_IFBLK | 0o600, libc::makedev(7, 0)));
    o.step("stat blk", d.lstat("loop").map(|s| s.summary()));
    o.step("write to the chr node", d.open("null", O_WRONLY, 0).and_then(|f| sys::write_once(&f, b"gone")));
    Ok(())
}
