//! Extended attributes: the `user.*` namespace end to end, flags, buffer
//! sizes, symlinks and directories, a non-root user, `trusted.*`.
//!
//! Lists are filtered to the namespaces a case set (`user.`/`trusted.`)
//! because a host may add its own (`security.selinux`, ...).

use std::path::Path;

use libc::{O_RDWR, XATTR_CREATE, XATTR_REPLACE};

use crate::proc::Creds;
use crate::recorder::{Flow, Outcome};
use crate::sys;
use crate::{case, Case, Env};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("xattr.user_basic", false, user_basic),
        case!("xattr.names_and_sizes", false, names_and_sizes),
        case!("xattr.dirs_links", false, dirs_links),
        case!("xattr.fd", false, fd),
        case!("xattr.many", false, many),
        case!("xattr.nonroot", true, nonroot),
        case!("xattr.trusted", true, trusted),
    ]
}

fn get(p: &Path, name: &str) -> std::io::Result<String> {
    sys::getxattr(p, name, 65536, true).map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
}

fn list(p: &Path, prefix: &str, follow: bool) -> std::io::Result<Vec<String>> {
    let (_, mut v) = sys::listxattr(p, 65536, follow)?;
    v.retain(|n| n.starts_with(prefix));
    v.sort();
    Ok(v)
}

fn user_basic(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"f"))?;
    let p = env.path("f");
    o.step("get missing", get(&p, "user.a"));
    o.step("size probe missing", sys::getxattr(&p, "user.a", 0, true).map(|r| r.0));
    o.step("set user.a", sys::setxattr(&p, "user.a", b"hello", 0, true));
    o.step("get user.a", get(&p, "user.a"));
    o.step("size probe", sys::getxattr(&p, "user.a", 0, true).map(|r| r.0));
    o.step("get with 3-byte buffer", sys::getxattr(&p, "user.a", 3, true).map(|r| r.0));
    o.step("get with exact buffer", sys::getxattr(&p, "user.a", 5, true).map(|r| r.0));
    o.step("XATTR_CREATE existing", sys::setxattr(&p, "user.a", b"again", XATTR_CREATE, true));
    o.step("XATTR_REPLACE missing", sys::setxattr(&p, "user.b", b"b", XATTR_REPLACE, true));
    o.step("XATTR_REPLACE existing", sys::setxattr(&p, "user.a", b"bye", XATTR_REPLACE, true));
    o.step("get after replace", get(&p, "user.a"));
    o.step("XATTR_CREATE new", sys::setxattr(&p, "user.b", b"bee", XATTR_CREATE, true));
    o.step("XATTR_CREATE|XATTR_REPLACE", sys::setxattr(&p, "user.c", b"c", XATTR_CREATE | XATTR_REPLACE, true));
    o.step("set empty value", sys::setxattr(&p, "user.empty", b"", 0, true));
    o.step("get empty value", sys::getxattr(&p, "user.empty", 16, true).map(|r| r.0));
    o.step("set binary value", sys::setxattr(&p, "user.bin", b"\0\x01\xff\0end", 0, true));
    o.step("get binary value", sys::getxattr(&p, "user.bin", 64, true).map(|r| r.1));
    o.step("list user.*", list(&p, "user.", true));
    let probe = sys::listxattr(&p, 0, true).map(|r| r.0);
    let full = sys::listxattr(&p, 65536, true).map(|r| r.0);
    o.step("list size probe equals list length", probe.and_then(|a| full.map(|b| a == b)));
    o.step("list with 1-byte buffer", sys::listxattr(&p, 1, true).map(|r| r.0));
    o.step("remove user.a", sys::removexattr(&p, "user.a", true));
    o.step("get removed", get(&p, "user.a"));
    o.step("remove again", sys::removexattr(&p, "user.a", true));
    o.step("list after remove", list(&p, "user.", true));
    o.step("on missing file", get(&env.path("missing"), "user.a"));
    // The attributes follow the inode: through a hard link and a rename.
    o.need("link f g", d.link_to("f", d, "g", 0))?;
    o.step("get through hard link", get(&env.path("g"), "user.b"));
    o.need("rename f h", d.rename("f", "h", 0))?;
    o.step("get after rename", get(&env.path("h"), "user.b"));
    Ok(())
}

fn names_and_sizes(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"f"))?;
    let p = env.path("f");
    let v4000 = crate::pattern(4000, 1);
    o.step("set 4000-byte value", sys::setxattr(&p, "user.big", &v4000, 0, true));
    o.step("get 4000-byte value", sys::getxattr(&p, "user.big", 65536, true).map(|(n, v)| (n, v == v4000)));
    o.step("set 65537-byte value", sys::setxattr(&p, "user.huge", &vec![b'h'; 65537], 0, true));
    // Names on a second file, so that no block-size limit of the host
    // file system (ext4 keeps one file's attributes in one block) mixes
    // in.
    o.need("create g", d.write_file("g", b"g"))?;
    let q = env.path("g");
    let long_name = format!("user.{}", "n".repeat(250));
    o.step("name of 255 bytes", sys::setxattr(&q, &long_name, b"x", 0, true));
    o.step("get it", get(&q, &long_name));
    let too_long = format!("user.{}", "n".repeat(251));
    o.step("name of 256 bytes", sys::setxattr(&q, &too_long, b"x", 0, true));
    o.step("get 256-byte name", get(&q, &too_long));
    o.step("empty name", sys::setxattr(&p, "", b"x", 0, true));
    o.step("bare prefix user.", sys::setxattr(&p, "user.", b"x", 0, true));
    o.step("no namespace", sys::setxattr(&p, "plain", b"x", 0, true));
    o.step("unknown namespace", sys::setxattr(&p, "bogus.x", b"x", 0, true));
    o.step("get unknown namespace", get(&p, "bogus.x"));
    o.step("name with odd bytes", sys::setxattr(&q, "user.a b\tc=d/é", b"odd", 0, true));
    o.step("get odd name", get(&q, "user.a b\tc=d/é"));
    o.step("list user.* of f", list(&p, "user.", true));
    o.step("list user.* of g", list(&q, "user.", true));
    Ok(())
}

fn dirs_links(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"f"))?;
    o.need("mkdir dir", d.mkdir("dir", 0o755))?;
    o.need("symlink l -> f", d.symlink("f", "l"))?;
    o.need("mkfifo", d.mknod("fifo", libc::S_IFIFO | 0o644, 0))?;
    let (dir, l, f) = (env.path("dir"), env.path("l"), env.path("f"));
    o.step("set on dir", sys::setxattr(&dir, "user.d", b"dir", 0, true));
    o.step("get on dir", get(&dir, "user.d"));
    o.step("list dir", list(&dir, "user.", true));
    o.step("lsetxattr user.* on symlink", sys::setxattr(&l, "user.l", b"l", 0, false));
    o.step("setxattr through symlink", sys::setxattr(&l, "user.t", b"target", 0, true));
    o.step("get on target", get(&f, "user.t"));
    o.step("lgetxattr on symlink", sys::getxattr(&l, "user.t", 64, false).map(|r| r.0));
    o.step("llistxattr on symlink", list(&l, "user.", false));
    o.step("listxattr through symlink", list(&l, "user.", true));
    o.step("lremovexattr on symlink", sys::removexattr(&l, "user.t", false));
    o.step("removexattr through symlink", sys::removexattr(&l, "user.t", true));
    o.step("user.* on fifo", sys::setxattr(&env.path("fifo"), "user.p", b"p", 0, false));
    Ok(())
}

fn fd(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"f"))?;
    let f = o.need("open f", d.open("f", O_RDWR, 0))?;
    o.step("fsetxattr", sys::fsetxattr(&f, "user.fd", b"via fd", 0));
    o.step("fgetxattr", sys::fgetxattr(&f, "user.fd", 64).map(|(_, v)| String::from_utf8_lossy(&v).into_owned()));
    o.step("getxattr by path", get(&env.path("f"), "user.fd"));
    o.step("unlink f", d.unlink("f"));
    o.step("fsetxattr on unlinked file", sys::fsetxattr(&f, "user.gone", b"g", 0));
    o.step(
        "fgetxattr on unlinked file",
        sys::fgetxattr(&f, "user.fd", 64).map(|(_, v)| String::from_utf8_lossy(&v).into_owned()),
    );
    o.step("fgetxattr size 0", sys::fgetxattr(&f, "user.fd", 0).map(|(n, _)| n));
    o.step("fgetxattr 2-byte buffer", sys::fgetxattr(&f, "user.fd", 2).map(|(n, _)| n));
    Ok(())
}

fn many(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"f"))?;
    let p = env.path("f");
    let mut ok = 0;
    for i in 0..50 {
        if sys::setxattr(&p, &format!("user.k{i:02}"), format!("value {i}").as_bytes(), 0, true).is_ok() {
            ok += 1;
        }
    }
    o.val("set 50 attributes", ok);
    let names = list(&p, "user.", true);
    o.step("list count", names.as_ref().map(|v| v.len()).map_err(clone_err));
    o.step("list is k00..k49", names.map(|v| v == (0..50).map(|i| format!("user.k{i:02}")).collect::<Vec<_>>()));
    let mut good = 0;
    for i in 0..50 {
        if get(&p, &format!("user.k{i:02}")).ok() == Some(format!("value {i}")) {
            good += 1;
        }
    }
    o.val("values read back", good);
    Ok(())
}

fn clone_err(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(n) => std::io::Error::from_raw_os_error(n),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

fn nonroot(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create pub 0644", d.write_file("pub", b"p"))?;
    o.need("create priv 0600", d.write_file("priv", b"p"))?;
    o.need("chmod priv", d.chmod("priv", 0o600))?;
    o.need("mkdir open", d.mkdir("open", 0o777))?;
    o.need("chmod open", d.chmod("open", 0o777))?;
    let (pb, pv) = (env.path("pub"), env.path("priv"));
    o.step("root sets user.x on pub", sys::setxattr(&pb, "user.x", b"x", 0, true));
    o.step("root sets user.x on priv", sys::setxattr(&pv, "user.x", b"x", 0, true));
    // The child works through /proc/self/fd paths of the case directory,
    // which it reaches without search permission on the ancestors.
    let base = format!("/proc/self/fd/{}", d.raw());
    env.as_user(o, &Creds::nobody(), |o| {
        let at = |n: &str| Path::new(&base).join(n);
        o.step("get on readable file", get(&at("pub"), "user.x"));
        o.step("get on unreadable file", get(&at("priv"), "user.x"));
        o.step("set on read-only file", sys::setxattr(&at("pub"), "user.y", b"y", 0, true));
        o.step("remove on read-only file", sys::removexattr(&at("pub"), "user.x", true));
        o.step("list on unreadable file", list(&at("priv"), "user.", true));
        o.step("create own file", d.write_file("open/mine", b"m"));
        o.step("set on own file", sys::setxattr(&at("open/mine"), "user.m", b"m", 0, true));
        o.step("get on own file", get(&at("open/mine"), "user.m"));
        o.step("trusted.* as non-root", sys::setxattr(&at("open/mine"), "trusted.t", b"t", 0, true));
    });
    Ok(())
}

fn trusted(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"f"))?;
    let p = env.path("f");
    o.step("set trusted.t", sys::setxattr(&p, "trusted.t", b"trusted", 0, true));
    o.step("get trusted.t", get(&p, "trusted.t"));
    o.step("list trusted.*", list(&p, "trusted.", true));
    o.step("remove trusted.t", sys::removexattr(&p, "trusted.t", true));
    o.step("get removed", get(&p, "trusted.t"));
    Ok(())
}
