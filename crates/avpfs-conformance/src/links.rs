//! Hard links and link counts; symbolic links (relative, absolute,
//! dangling, loops, long targets) and O_NOFOLLOW.

use std::os::unix::ffi::OsStrExt;

use libc::{O_CREAT, O_DIRECTORY, O_NOFOLLOW, O_PATH, O_RDONLY, O_RDWR, O_WRONLY};

use crate::files::names_str;
use crate::recorder::{Flow, Outcome};
use crate::sys;
use crate::{case, Case, Env};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("links.hard", false, hard),
        case!("links.symlink_relative", false, symlink_relative),
        case!("links.symlink_absolute", false, symlink_absolute),
        case!("links.symlink_dangling", false, symlink_dangling),
        case!("links.symlink_loops", false, symlink_loops),
        case!("links.nofollow", false, nofollow),
        case!("links.symlink_long", false, symlink_long),
    ]
}

fn text(v: Vec<u8>) -> String {
    String::from_utf8_lossy(&v).into_owned()
}

fn hard(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"data"))?;
    o.step("nlink f", d.stat("f").map(|s| s.nlink));
    o.step("link f -> g", d.link_to("f", d, "g", 0));
    o.step("nlink f", d.stat("f").map(|s| s.nlink));
    o.step("nlink g", d.stat("g").map(|s| s.nlink));
    o.step("f and g same inode", d.stat("f").and_then(|a| d.stat("g").map(|b| a.same_file(&b))));
    let g = o.need("open g", d.open("g", O_RDWR, 0))?;
    o.step("write via g", sys::pwrite_once(&g, b"DATA", 0));
    o.step("read via f", d.read_file("f").map(text));
    o.need("mkdir sub", d.mkdir("sub", 0o755))?;
    let sub = o.need("open sub", d.sub("sub"))?;
    o.step("link into subdir", d.link_to("f", &sub, "h", 0));
    o.step("nlink after 3 links", d.stat("f").map(|s| s.nlink));
    o.step("fstat nlink via fd", sys::fstat(&g).map(|s| s.nlink));
    o.step("unlink f", d.unlink("f"));
    o.step("nlink g after unlink", d.stat("g").map(|s| s.nlink));
    o.step("read sub/h", sub.read_file("h").map(text));
    o.step("link to existing name", d.link_to("g", d, "sub/h", 0));
    o.step("link missing source", d.link_to("missing", d, "x", 0));
    o.step("link a directory", d.link_to("sub", d, "sub2", 0));
    o.step("link with trailing slash", d.link_to("g/", d, "x", 0));
    o.step("link to new name with trailing slash", d.link_to("g", d, "x/", 0));
    o.step("link into missing dir", d.link_to("g", d, "nodir/x", 0));
    o.need("symlink s -> g", d.symlink("g", "s"))?;
    o.step("link symlink (no follow)", d.link_to("s", d, "s_link", 0));
    o.step("new link type", d.lstat("s_link").map(|s| s.kind()));
    o.step("nlink of symlink", d.lstat("s").map(|s| s.nlink));
    o.step("link symlink AT_SYMLINK_FOLLOW", d.link_to("s", d, "s_follow", libc::AT_SYMLINK_FOLLOW));
    o.step("followed link type", d.lstat("s_follow").map(|s| s.kind()));
    o.step("nlink of g", d.stat("g").map(|s| s.nlink));
    for i in 0..8 {
        let _ = d.link_to("g", d, format!("many{i}"), 0);
    }
    o.step("nlink after 8 more", d.stat("g").map(|s| s.nlink));
    for i in 0..8 {
        let _ = d.unlink(format!("many{i}"));
    }
    o.step("nlink after removing them", d.stat("g").map(|s| s.nlink));
    o.step("directory nlink of sub", d.stat("sub").map(|s| s.nlink));
    o.step("names", d.names().map(names_str));
    Ok(())
}

fn symlink_relative(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"content"))?;
    o.step("symlink rel -> f", d.symlink("f", "rel"));
    o.step("readlink rel", d.readlink("rel").map(text));
    o.step("lstat rel", d.lstat("rel").map(|s| s.summary()));
    o.step("stat rel (follows)", d.stat("rel").map(|s| s.summary()));
    o.step("read through rel", d.read_file("rel").map(text));
    o.step("write through rel", d.open("rel", O_WRONLY, 0).and_then(|f| sys::pwrite_once(&f, b"C", 0)));
    o.step("read f", d.read_file("f").map(text));
    o.need("mkdir sub", d.mkdir("sub", 0o755))?;
    o.step("symlink ldir -> sub", d.symlink("sub", "ldir"));
    o.step("create through ldir/x", d.write_file("ldir/x", b"x"));
    o.step("sub contains", d.sub("sub").and_then(|s| s.names()).map(names_str));
    o.step("stat ldir/ (trailing slash follows)", d.lstat("ldir/").map(|s| s.kind()));
    o.step("symlink up -> ../f in sub", d.sub("sub").and_then(|s| s.symlink("../f", "up")));
    o.step("read sub/up", d.read_file("sub/up").map(text));
    o.step("symlink over existing name", d.symlink("f", "rel"));
    o.step("symlink empty target", d.symlink("", "empty"));
    o.step("readlink regular file", d.readlink("f").map(text));
    o.step("readlink missing", d.readlink("missing").map(text));
    o.step("readlink dir", d.readlink("sub").map(text));
    o.step("symlink in missing dir", d.symlink("f", "nodir/l"));
    o.step("symlink with odd target bytes", d.symlink(std::ffi::OsStr::from_bytes(b"a\nb\xff c"), "odd"));
    o.step("readlink odd", d.readlink("odd"));
    o.step("unlink symlink keeps target", d.unlink("rel").and_then(|_| d.read_file("f")).map(text));
    o.step("rmdir on symlink to dir", d.rmdir("ldir"));
    Ok(())
}

fn symlink_absolute(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"absolute"))?;
    let target = env.path("f");
    o.step("symlink abs -> /…/f", d.symlink(&target, "abs"));
    o.step("readlink matches", d.readlink("abs").map(|v| v == target.as_os_str().as_bytes()));
    o.step("read through abs", d.read_file("abs").map(text));
    o.need("mkdir sub", d.mkdir("sub", 0o755))?;
    o.step("symlink absdir -> /…/sub", d.symlink(env.path("sub"), "absdir"));
    o.step("create through absdir/y", d.write_file("absdir/y", b"y"));
    o.step("sub contains", d.sub("sub").and_then(|s| s.names()).map(names_str));
    o.step("lstat abs size is target length", d.lstat("abs").map(|s| s.size == target.as_os_str().len() as i64));
    o.step("symlink to /", d.symlink("/", "slash"));
    o.step("stat through / link is a dir", d.stat("slash").map(|s| s.kind()));
    Ok(())
}

fn symlink_dangling(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.step("symlink dl -> missing", d.symlink("missing", "dl"));
    o.step("stat dl", d.stat("dl").map(|s| s.summary()));
    o.step("lstat dl", d.lstat("dl").map(|s| s.summary()));
    o.step("open dl", d.open("dl", O_RDONLY, 0).map(drop));
    o.step("readlink dl", d.readlink("dl").map(text));
    o.step("create target", d.write_file("missing", b"now here"));
    o.step("read dl", d.read_file("dl").map(text));
    o.step("unlink target", d.unlink("missing"));
    o.step("stat dl again", d.stat("dl").map(|s| s.kind()));
    o.step("symlink dangling into missing dir", d.symlink("nodir/file", "dl2"));
    o.step("O_CREAT through dl2", d.open("dl2", O_CREAT | O_WRONLY, 0o644).map(drop));
    o.step("mkdir through dangling symlink", d.mkdir("dl", 0o755));
    o.step("unlink dl", d.unlink("dl"));
    o.step("names", d.names().map(names_str));
    Ok(())
}

fn symlink_loops(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"end"))?;
    o.step("symlink a -> b", d.symlink("b", "a"));
    o.step("symlink b -> a", d.symlink("a", "b"));
    o.step("open a", d.open("a", O_RDONLY, 0).map(drop));
    o.step("stat a", d.stat("a").map(|s| s.kind()));
    o.step("lstat a", d.lstat("a").map(|s| s.kind()));
    o.step("symlink self -> self", d.symlink("self", "self"));
    o.step("stat self", d.stat("self").map(|s| s.kind()));
    o.step("O_CREAT through self", d.open("self", O_CREAT | O_WRONLY, 0o644).map(drop));
    o.step("symlink ld -> ld (as component)", d.symlink("ld", "ld"));
    o.step("stat ld/x", d.stat("ld/x").map(|s| s.kind()));
    o.step("symlink dot -> .", d.symlink(".", "dot"));
    o.step("read dot/dot/dot/f", d.read_file("dot/dot/dot/f").map(text));
    // A chain: c0 -> c1 -> ... -> c40 -> f. Linux follows at most 40.
    let chain = (0..=40).try_for_each(|i| {
        let t = if i == 40 { "f".to_string() } else { format!("c{}", i + 1) };
        d.symlink(t, format!("c{i}"))
    });
    o.need("symlink chain c0 -> c1 -> ... -> c40 -> f", chain)?;
    o.step("read c1 (40 links)", d.read_file("c1").map(text));
    o.step("read c0 (41 links)", d.read_file("c0").map(text));
    Ok(())
}

fn nofollow(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"file"))?;
    o.need("symlink l -> f", d.symlink("f", "l"))?;
    o.need("mkdir sub", d.mkdir("sub", 0o755))?;
    o.need("symlink ldir -> sub", d.symlink("sub", "ldir"))?;
    o.need("create sub/x", d.write_file("sub/x", b"x"))?;
    o.step("O_NOFOLLOW on symlink", d.open("l", O_RDONLY | O_NOFOLLOW, 0).map(drop));
    o.step("O_NOFOLLOW on file", d.open("f", O_RDONLY | O_NOFOLLOW, 0).map(drop));
    o.step("O_NOFOLLOW|O_CREAT on symlink", d.open("l", O_CREAT | O_WRONLY | O_NOFOLLOW, 0o644).map(drop));
    o.step(
        "O_NOFOLLOW only applies to the last component",
        d.open("ldir/x", O_RDONLY | O_NOFOLLOW, 0).and_then(|f| sys::read_all(&f)).map(text),
    );
    o.step(
        "O_NOFOLLOW|O_DIRECTORY on symlink to dir",
        d.open("ldir", O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0).map(drop),
    );
    let p = o.need("O_PATH|O_NOFOLLOW on symlink", d.open("l", O_PATH | O_NOFOLLOW, 0))?;
    o.step("fstat of O_PATH fd", sys::fstat(&p).map(|s| s.kind()));
    o.step("read on O_PATH fd", sys::read_once(&p, 4).map(text));
    o.step("readlinkat on O_PATH fd with empty name", sys::readlink_fd(&p).map(text));
    o.step("fstatat AT_SYMLINK_NOFOLLOW", d.lstat("l").map(|s| s.kind()));
    o.step("fstatat follow", d.stat("l").map(|s| s.kind()));
    Ok(())
}

fn symlink_long(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    for (name, len) in [("l1000", 1000usize), ("l4095", 4095), ("l4096", 4096)] {
        let target: String = (0..len).map(|i| if i % 50 == 49 { '/' } else { 'a' }).collect();
        o.step(&format!("symlink target of {len} bytes"), d.symlink(&target, name));
        o.step(
            &format!("readlink {name} length and equality"),
            d.readlink(name).map(|v| (v.len(), v == target.as_bytes())),
        );
        o.step(&format!("lstat size {name}"), d.lstat(name).map(|s| s.size));
    }
    let comp: String = "b".repeat(300);
    o.step("symlink with 300-byte component in target", d.symlink(&comp, "lcomp"));
    o.step("stat through it", d.stat("lcomp").map(|s| s.kind()));
    o.step("symlink name of 256 bytes", d.symlink("x", "n".repeat(256)));
    Ok(())
}
