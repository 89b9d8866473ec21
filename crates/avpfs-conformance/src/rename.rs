//! rename / renameat2 with every flag, over files and directories, within
//! and across directories.

use libc::{O_RDONLY, O_RDWR};

use crate::files::names_str;
use crate::recorder::{Flow, Outcome};
use crate::sys::{self, Dir};
use crate::{case, Case, Env};

const NOREPLACE: u32 = libc::RENAME_NOREPLACE;
const EXCHANGE: u32 = libc::RENAME_EXCHANGE;
const WHITEOUT: u32 = libc::RENAME_WHITEOUT;

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("rename.files", false, files),
        case!("rename.noreplace", false, noreplace),
        case!("rename.exchange", false, exchange),
        case!("rename.dirs", false, dirs),
        case!("rename.across_dirs", false, across_dirs),
        case!("rename.bad_flags", false, bad_flags),
        case!("rename.open_fd", false, open_fd),
        case!("rename.whiteout", true, whiteout),
    ]
}

/// The sorted names of a directory with each one's content or type:
/// `name=content` for files, `name/` for directories.
fn listing(d: &Dir) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for n in d.names()? {
        let name = String::from_utf8_lossy(&n).into_owned();
        let st = d.lstat(&name)?;
        match st.kind() {
            "reg" => {
                let c = d.read_file(&name)?;
                out.push(format!("{name}={}", String::from_utf8_lossy(&c)));
            }
            "dir" => out.push(format!("{name}/")),
            k => out.push(format!("{name}:{k}")),
        }
    }
    Ok(out)
}

fn files(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create a", d.write_file("a", b"A"))?;
    o.need("create b", d.write_file("b", b"B"))?;
    o.step("rename a -> c (new name)", d.rename("a", "c", 0));
    o.step("listing", listing(d));
    o.step("stat a", d.stat("a").map(|s| s.summary()));
    o.step("rename c -> b (over existing)", d.rename("c", "b", 0));
    o.step("listing", listing(d));
    o.step("nlink of b", d.stat("b").map(|s| s.nlink));
    o.step("rename missing", d.rename("nope", "x", 0));
    o.step("rename to itself", d.rename("b", "b", 0));
    o.step("listing", listing(d));
    // Two hard links of the same inode: rename is a successful no-op.
    o.need("link b -> h", d.link_to("b", d, "h", 0))?;
    o.step("rename b -> h (same inode)", d.rename("b", "h", 0));
    o.step("listing", listing(d));
    o.step("nlink of h", d.stat("h").map(|s| s.nlink));
    o.step("rename into missing dir", d.rename("h", "nodir/h", 0));
    o.step("rename to name with trailing slash", d.rename("h", "h2/", 0));
    o.step("rename file with trailing slash", d.rename("h/", "h2", 0));
    o.step("rename '.'", d.rename(".", "x", 0));
    o.step("rename to '..'", d.rename("h", "..", 0));
    // Over a symlink: the link is replaced, its target untouched.
    o.need("create target", d.write_file("target", b"T"))?;
    o.need("symlink l -> target", d.symlink("target", "l"))?;
    o.step("rename h -> l (over symlink)", d.rename("h", "l", 0));
    o.step("listing", listing(d));
    // Rename a symlink itself.
    o.need("symlink s -> target", d.symlink("target", "s"))?;
    o.step("rename symlink s -> s2", d.rename("s", "s2", 0));
    o.step("readlink s2", d.readlink("s2").map(|v| String::from_utf8_lossy(&v).into_owned()));
    Ok(())
}

fn noreplace(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create a", d.write_file("a", b"A"))?;
    o.need("create b", d.write_file("b", b"B"))?;
    o.need("mkdir d", d.mkdir("d", 0o755))?;
    o.step("NOREPLACE over file", d.rename("a", "b", NOREPLACE));
    o.step("NOREPLACE over dir", d.rename("a", "d", NOREPLACE));
    o.step("NOREPLACE dir over file", d.rename("d", "a", NOREPLACE));
    o.step("NOREPLACE to new name", d.rename("a", "c", NOREPLACE));
    o.step("NOREPLACE missing source", d.rename("a", "e", NOREPLACE));
    o.step("NOREPLACE to itself", d.rename("b", "b", NOREPLACE));
    o.need("symlink dangling", d.symlink("nowhere", "dl"))?;
    o.step("NOREPLACE over dangling symlink", d.rename("c", "dl", NOREPLACE));
    o.step("listing", listing(d));
    Ok(())
}

fn exchange(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create a", d.write_file("a", b"A"))?;
    o.need("create b", d.write_file("b", b"B"))?;
    o.step("EXCHANGE a b", d.rename("a", "b", EXCHANGE));
    o.step("listing", listing(d));
    o.step("EXCHANGE with missing target", d.rename("a", "missing", EXCHANGE));
    o.step("EXCHANGE with missing source", d.rename("missing", "a", EXCHANGE));
    o.need("mkdir d", d.mkdir("d", 0o755))?;
    o.need("create d/in", d.sub("d").and_then(|s| s.write_file("in", b"I")))?;
    o.step("EXCHANGE file and non-empty dir", d.rename("a", "d", EXCHANGE));
    o.step("listing", listing(d));
    o.step("type of a", d.lstat("a").map(|s| s.kind()));
    o.step("a/in", d.sub("a").and_then(|s| s.read_file("in")).map(|v| String::from_utf8_lossy(&v).into_owned()));
    o.step("EXCHANGE with itself", d.rename("b", "b", EXCHANGE));
    o.need("mkdir e", d.mkdir("e", 0o755))?;
    o.need("create e/x", d.sub("e").and_then(|s| s.write_file("x", b"X")))?;
    o.step("EXCHANGE two non-empty dirs", d.rename("a", "e", EXCHANGE));
    o.step("a contains", d.sub("a").and_then(|s| s.names()).map(names_str));
    o.step("e contains", d.sub("e").and_then(|s| s.names()).map(names_str));
    // A directory with its own subdirectory: exchange parent and child.
    o.need("mkdir e/sub", d.sub("e").and_then(|s| s.mkdir("sub", 0o755)))?;
    let e = o.need("open e", d.sub("e"))?;
    o.step("EXCHANGE dir with its own child", d.rename_to("e", &e, "sub", EXCHANGE));
    o.step("nlink of a", d.stat("a").map(|s| s.nlink));
    o.step("nlink of e", d.stat("e").map(|s| s.nlink));
    // Across directories.
    o.step("EXCHANGE across dirs b <-> e/in", d.rename_to("b", &e, "in", EXCHANGE));
    o.step("listing", listing(d));
    o.step("e listing", listing(&e));
    Ok(())
}

fn dirs(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("mkdir src", d.mkdir("src", 0o755))?;
    o.need("create src/f", d.sub("src").and_then(|s| s.write_file("f", b"F")))?;
    o.need("mkdir empty", d.mkdir("empty", 0o755))?;
    o.need("mkdir full", d.mkdir("full", 0o755))?;
    o.need("create full/g", d.sub("full").and_then(|s| s.write_file("g", b"G")))?;
    o.need("create file", d.write_file("file", b"file"))?;
    o.step("dir over non-empty dir", d.rename("src", "full", 0));
    o.step("dir over file", d.rename("src", "file", 0));
    o.step("file over empty dir", d.rename("file", "empty", 0));
    o.step("file over non-empty dir", d.rename("file", "full", 0));
    o.step("dir into own subdir", {
        let _ = d.sub("src").and_then(|s| s.mkdir("child", 0o755));
        let src = d.sub("src");
        src.and_then(|s| d.rename_to("src", &s, "moved", 0))
    });
    o.step("dir over empty dir", d.rename("src", "empty", 0));
    o.step("listing", listing(d));
    o.step("empty/ contains", d.sub("empty").and_then(|s| s.names()).map(names_str));
    o.step("nlink of parent", d.stat(".").map(|s| s.nlink));
    o.step("dir to itself", d.rename("empty", "empty", 0));
    o.step("dir to new name with trailing slash", d.rename("empty", "renamed/", 0));
    o.step("listing", listing(d));
    o.step("dir over own parent '..'", d.rename("renamed", "..", 0));
    o.step("rename '.' inside a dir", {
        let r = d.sub("renamed");
        r.and_then(|s| s.rename(".", "x", 0))
    });
    Ok(())
}

fn across_dirs(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("mkdir a", d.mkdir("a", 0o755))?;
    o.need("mkdir b", d.mkdir("b", 0o755))?;
    let a = o.need("open a", d.sub("a"))?;
    let b = o.need("open b", d.sub("b"))?;
    o.need("create a/f", a.write_file("f", b"F"))?;
    o.need("mkdir a/sub", a.mkdir("sub", 0o755))?;
    o.need("create a/sub/x", a.sub("sub").and_then(|s| s.write_file("x", b"X")))?;
    o.step("nlink a before", a.stat(".").map(|s| s.nlink));
    o.step("nlink b before", b.stat(".").map(|s| s.nlink));
    o.step("move file a/f -> b/g", a.rename_to("f", &b, "g", 0));
    o.step("move dir a/sub -> b/sub", a.rename_to("sub", &b, "sub", 0));
    o.step("a listing", listing(&a));
    o.step("b listing", listing(&b));
    o.step("nlink a after", a.stat(".").map(|s| s.nlink));
    o.step("nlink b after", b.stat(".").map(|s| s.nlink));
    o.step("b/sub/.. is b", b.stat("sub/..").and_then(|p| b.stat(".").map(|s| s.same_file(&p))));
    o.step("b/sub/x", b.read_file("sub/x").map(|v| String::from_utf8_lossy(&v).into_owned()));
    o.need("create a/over", a.write_file("over", b"new"))?;
    o.step("move over existing in other dir", a.rename_to("over", &b, "g", 0));
    o.step("b listing", listing(&b));
    o.step("move dir over non-empty across", {
        let _ = a.mkdir("sub", 0o755);
        a.rename_to("sub", &b, "sub", 0)
    });
    o.step("move dir over empty across", {
        let _ = b.mkdir("empty", 0o755);
        a.rename_to("sub", &b, "empty", 0)
    });
    o.step("nlink a final", a.stat(".").map(|s| s.nlink));
    o.step("nlink b final", b.stat(".").map(|s| s.nlink));
    o.step("move b into its own child", {
        let sub = b.sub("sub");
        sub.and_then(|s| d.rename_to("b", &s, "b", 0))
    });
    Ok(())
}

fn bad_flags(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create a", d.write_file("a", b"A"))?;
    o.need("create b", d.write_file("b", b"B"))?;
    o.step("NOREPLACE|EXCHANGE", d.rename("a", "b", NOREPLACE | EXCHANGE));
    o.step("EXCHANGE|WHITEOUT", d.rename("a", "b", EXCHANGE | WHITEOUT));
    o.step("unknown flag bit", d.rename("a", "b", 1 << 10));
    o.step("listing", listing(d));
    Ok(())
}

fn open_fd(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create a", d.write_file("a", b"before"))?;
    let f = o.need("open a", d.open("a", O_RDWR, 0))?;
    o.step("rename a -> b while open", d.rename("a", "b", 0));
    o.step("write through fd", sys::pwrite_once(&f, b"AFTER!", 0));
    o.step("read b", d.read_file("b").map(|v| String::from_utf8_lossy(&v).into_owned()));
    o.need("create c", d.write_file("c", b"victim"))?;
    let c = o.need("open c", d.open("c", O_RDONLY, 0))?;
    o.step("rename b over open c", d.rename("b", "c", 0));
    o.step("old c still readable", sys::read_all(&c).map(|v| String::from_utf8_lossy(&v).into_owned()));
    o.step("old c nlink", sys::fstat(&c).map(|s| s.nlink));
    o.step("new c content", d.read_file("c").map(|v| String::from_utf8_lossy(&v).into_owned()));
    o.step("fstat renamed fd", sys::fstat(&f).map(|s| s.summary()));
    // A directory fd keeps working after its directory is renamed.
    o.need("mkdir dir", d.mkdir("dir", 0o755))?;
    let dd = o.need("open dir", d.sub("dir"))?;
    o.step("rename dir -> dir2", d.rename("dir", "dir2", 0));
    o.step("create through old dir fd", dd.write_file("inside", b"in"));
    o.step("dir2 contains", d.sub("dir2").and_then(|s| s.names()).map(names_str));
    Ok(())
}

fn whiteout(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create a", d.write_file("a", b"A"))?;
    o.need("create b", d.write_file("b", b"B"))?;
    o.step("WHITEOUT a -> c", d.rename("a", "c", WHITEOUT));
    o.step("a after", d.lstat("a").map(|s| format!("{} rdev={}", s.kind(), s.rdev)));
    o.step("WHITEOUT c over b", d.rename("c", "b", WHITEOUT));
    o.step("c after", d.lstat("c").map(|s| format!("{} rdev={}", s.kind(), s.rdev)));
    o.step("listing names", d.names().map(names_str));
    Ok(())
}
