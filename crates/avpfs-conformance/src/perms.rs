//! Attributes (chmod, chown, utimensat) and permission checks made by a
//! non-root user (set-id bits, sticky directories, groups).

use libc::{O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, UTIME_NOW, UTIME_OMIT};

use crate::proc::Creds;
use crate::recorder::{Flow, Outcome};
use crate::sys::{self, ts, Dir};
use crate::{case, Case, Env};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("attrs.chmod", false, chmod),
        case!("attrs.chown", true, chown),
        case!("attrs.utimensat", false, utimensat),
        case!("perms.nonroot_access", true, nonroot_access),
        case!("perms.sticky_dir", true, sticky_dir),
        case!("perms.setid_clear", true, setid_clear),
        case!("perms.setgid_dir", true, setgid_dir),
        case!("perms.groups", true, groups),
    ]
}

/// The unprivileged users the cases act as.
const NOBODY: u32 = 65534;
const OTHER: u32 = 60001;
/// A group the suite's users are not in, unless a case adds it.
const GROUP: u32 = 61234;

fn perm(d: &Dir, name: &str) -> std::io::Result<String> {
    d.stat(name).map(|s| format!("{:o}", s.perm()))
}

fn owner(d: &Dir, name: &str) -> std::io::Result<String> {
    d.lstat(name).map(|s| format!("{}:{}", s.uid, s.gid))
}

fn chmod(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"f"))?;
    for mode in [0o000, 0o777, 0o4755, 0o2755, 0o1755, 0o7777, 0o640] {
        o.step(&format!("chmod {mode:o}"), d.chmod("f", mode));
        o.step("perm", perm(d, "f"));
    }
    o.step("chmod with type bits ignored", d.chmod("f", libc::S_IFDIR | 0o600));
    o.step("stat", d.stat("f").map(|s| s.summary()));
    let f = o.need("open f", d.open("f", O_RDONLY, 0))?;
    o.step("fchmod 0604 on O_RDONLY fd", sys::fchmod(&f, 0o604));
    o.step("perm", perm(d, "f"));
    o.need("symlink l -> f", d.symlink("f", "l"))?;
    o.step("chmod through symlink", d.chmod("l", 0o611));
    o.step("perm of target", perm(d, "f"));
    o.step("perm of link itself", d.lstat("l").map(|s| format!("{:o}", s.perm())));
    o.step("chmod missing", d.chmod("missing", 0o600));
    o.need("mkdir dir", d.mkdir("dir", 0o755))?;
    o.step("chmod dir 0", d.chmod("dir", 0));
    o.step("perm dir", perm(d, "dir"));
    o.step("root still creates inside", d.write_file("dir/x", b"x"));
    o.step("chmod dir 03777", d.chmod("dir", 0o3777));
    o.step("perm dir", perm(d, "dir"));
    Ok(())
}

fn chown(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"f"))?;
    o.step("chown 1000:1000", d.chown("f", 1000, 1000, 0));
    o.step("owner", owner(d, "f"));
    o.step("chown -1:2000", d.chown("f", u32::MAX, 2000, 0));
    o.step("owner", owner(d, "f"));
    o.step("chown 3000:-1", d.chown("f", 3000, u32::MAX, 0));
    o.step("owner", owner(d, "f"));
    let f = o.need("open f", d.open("f", O_RDONLY, 0))?;
    o.step("fchown 0:0", sys::fchown(&f, 0, 0));
    o.step("owner", owner(d, "f"));
    o.need("symlink l -> f", d.symlink("f", "l"))?;
    o.step("lchown link 4000:4000", d.chown("l", 4000, 4000, libc::AT_SYMLINK_NOFOLLOW));
    o.step("owner of link", owner(d, "l"));
    o.step("owner of target", owner(d, "f"));
    o.step("chown through link 5000:5000", d.chown("l", 5000, 5000, 0));
    o.step("owner of target", owner(d, "f"));
    // Set-id bits are cleared by chown, even by root.
    for (name, mode) in [("s6755", 0o6755), ("s2755", 0o2755), ("s2745", 0o2745), ("s4700", 0o4700)] {
        o.need(&format!("create {name}"), d.write_file(name, b"x"))?;
        o.step(&format!("chmod {mode:o}"), d.chmod(name, mode));
        o.step(&format!("chown {name} 1001:1001"), d.chown(name, 1001, 1001, 0));
        o.step("perm after chown", perm(d, name));
    }
    o.need("create s4755", d.write_file("s4755", b"x"))?;
    o.step("chmod 4755", d.chmod("s4755", 0o4755));
    o.step("chown -1:-1", d.chown("s4755", u32::MAX, u32::MAX, 0));
    o.step("perm after no-op chown", perm(d, "s4755"));
    o.need("mkdir sgdir", d.mkdir("sgdir", 0o755))?;
    o.step("chmod dir 02755", d.chmod("sgdir", 0o2755));
    o.step("chown dir 1001:1001", d.chown("sgdir", 1001, 1001, 0));
    o.step("dir perm after chown", perm(d, "sgdir"));
    o.step("chown missing", d.chown("missing", 1, 1, 0));
    Ok(())
}

/// "Now" by the clock that stamps the files of `d` (the host's, also for
/// a guest whose own clock drifts from it under TCG): the mtime, in
/// seconds, of a file written now.
fn fs_now(d: &Dir, name: &str) -> i64 {
    d.write_file(name, b"t").and_then(|()| d.stat(name)).map(|s| s.mtime.0).unwrap_or(0)
}

fn times(d: &Dir, name: &str, follow: bool) -> std::io::Result<String> {
    let s = if follow { d.stat(name)? } else { d.lstat(name)? };
    Ok(format!("atime={}.{:09} mtime={}.{:09}", s.atime.0, s.atime.1, s.mtime.0, s.mtime.1))
}

fn utimensat(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"f"))?;
    let a = ts(1_000_000_000, 123_456_789);
    let m = ts(1_500_000_000, 987_654_321);
    o.step("set explicit times", d.utimens("f", [a, m], 0));
    o.step("read back", times(d, "f", true));
    o.step("UTIME_OMIT atime, new mtime", d.utimens("f", [ts(0, UTIME_OMIT), ts(1_600_000_000, 1)], 0));
    o.step("read back", times(d, "f", true));
    o.step("new atime, UTIME_OMIT mtime", d.utimens("f", [ts(1_200_000_000, 999_999_999), ts(0, UTIME_OMIT)], 0));
    o.step("read back", times(d, "f", true));
    o.step("both UTIME_OMIT", d.utimens("f", [ts(0, UTIME_OMIT), ts(0, UTIME_OMIT)], 0));
    o.step("read back", times(d, "f", true));
    let t0 = fs_now(d, "clock0");
    o.step("UTIME_NOW mtime, UTIME_OMIT atime", d.utimens("f", [ts(0, UTIME_OMIT), ts(0, UTIME_NOW)], 0));
    let t1 = fs_now(d, "clock1");
    let s = d.stat("f");
    o.step(
        "mtime is now, atime kept",
        s.map(|s| (s.mtime.0 >= t0 - 1 && s.mtime.0 <= t1 + 1, s.atime == (1_200_000_000, 999_999_999))),
    );
    let t0 = fs_now(d, "clock2");
    o.step("both UTIME_NOW", d.utimens("f", [ts(0, UTIME_NOW), ts(0, UTIME_NOW)], 0));
    let t1 = fs_now(d, "clock3");
    o.step(
        "both are now",
        d.stat("f").map(|s| {
            let ok = |t: (i64, i64)| t.0 >= t0 - 1 && t.0 <= t1 + 1;
            (ok(s.atime), ok(s.mtime))
        }),
    );
    o.step("nsec out of range", d.utimens("f", [a, ts(5, 1_000_000_000)], 0));
    o.step("negative nsec", d.utimens("f", [a, ts(5, -2)], 0));
    o.step("time before 1970", d.utimens("f", [ts(-1, 0), ts(-86_400, 500)], 0));
    o.step("read back", times(d, "f", true));
    o.step("time after 2038", d.utimens("f", [ts(4_000_000_000, 1), ts(8_589_934_592, 2)], 0));
    o.step("read back", times(d, "f", true));
    o.step("zero", d.utimens("f", [ts(0, 0), ts(0, 0)], 0));
    o.step("read back", times(d, "f", true));
    // Symlinks: follow by default, the link itself with NOFOLLOW.
    o.need("symlink l -> f", d.symlink("f", "l"))?;
    o.step("through symlink", d.utimens("l", [a, m], 0));
    o.step("target", times(d, "f", true));
    o.step(
        "AT_SYMLINK_NOFOLLOW",
        d.utimens("l", [ts(1_111_111_111, 111), ts(1_222_222_222, 222)], libc::AT_SYMLINK_NOFOLLOW),
    );
    o.step("link itself", times(d, "l", false));
    o.step("target unchanged", times(d, "f", true));
    // Data changes move mtime away from an explicit old value.
    let f = o.need("open f", d.open("f", O_RDWR, 0))?;
    o.step("set old times", d.utimens("f", [a, m], 0));
    o.step("write", sys::pwrite_once(&f, b"x", 0));
    o.step("mtime moved by write", d.stat("f").map(|s| s.mtime != (m.tv_sec, m.tv_nsec)));
    o.step("set old times", d.utimens("f", [a, m], 0));
    o.step("read", sys::pread(&f, 0, 1).map(|v| v.len()));
    o.step("mtime not moved by read", d.stat("f").map(|s| s.mtime == (m.tv_sec, m.tv_nsec)));
    o.need("mkdir dir", d.mkdir("dir", 0o755))?;
    o.step("set old times on dir", d.utimens("dir", [a, m], 0));
    o.step("create in dir", d.write_file("dir/new", b""));
    o.step("dir mtime moved by create", d.stat("dir").map(|s| s.mtime != (m.tv_sec, m.tv_nsec)));
    o.step("missing", d.utimens("missing", [a, m], 0));
    Ok(())
}

fn nonroot_access(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create secret 0600", d.write_file("secret", b"secret"))?;
    o.need("chmod secret", d.chmod("secret", 0o600))?;
    o.need("create public 0644", d.write_file("public", b"public"))?;
    o.need("mkdir open 0777", d.mkdir("open", 0o777))?;
    o.need("chmod open", d.chmod("open", 0o777))?;
    o.need("mkdir xonly 0711", d.mkdir("xonly", 0o711))?;
    o.need("create xonly/inside", d.write_file("xonly/inside", b"in"))?;
    o.need("mkdir noexec 0744", d.mkdir("noexec", 0o744))?;
    o.need("create noexec/inside", d.write_file("noexec/inside", b"in"))?;
    o.need("chmod noexec", d.chmod("noexec", 0o744))?;
    env.as_user(o, &Creds::nobody(), |o| {
        o.step("read secret", d.read_file("secret").map(|v| v.len()));
        o.step("access secret R_OK", d.access("secret", libc::R_OK));
        o.step("stat secret", d.stat("secret").map(|s| s.summary()));
        o.step("read public", d.read_file("public").map(|v| v.len()));
        o.step("open public O_WRONLY", d.open("public", O_WRONLY, 0).map(drop));
        o.step("open public O_RDONLY|O_TRUNC", d.open("public", O_RDONLY | O_TRUNC, 0).map(drop));
        o.step("access public W_OK", d.access("public", libc::W_OK));
        o.step("create in 0755 root dir", d.open("new", O_CREAT | O_WRONLY, 0o644).map(drop));
        o.step("mkdir in 0755 root dir", d.mkdir("newdir", 0o755));
        o.step("symlink in 0755 root dir", d.symlink("public", "newlink"));
        o.step("unlink in 0755 root dir", d.unlink("public"));
        o.step("rename in 0755 root dir", d.rename("public", "moved", 0));
        o.step("chmod root's file", d.chmod("public", 0o666));
        o.step("chown root's file", d.chown("public", NOBODY, NOBODY, 0));
        o.step("utimensat explicit on root's file", d.utimens("public", [ts(1, 0), ts(1, 0)], 0));
        o.step("utimensat UTIME_NOW on root's 0644 file", d.utimens("public", [ts(0, UTIME_NOW), ts(0, UTIME_NOW)], 0));
        o.step("readdir 0755 dir", d.names().map(|v| v.len()));
        o.step("stat xonly/inside", d.stat("xonly/inside").map(|s| s.summary()));
        o.step("read xonly/inside", d.read_file("xonly/inside").map(|v| v.len()));
        o.step("readdir xonly", d.sub("xonly").map(drop));
        o.step("stat noexec/inside", d.stat("noexec/inside").map(|s| s.summary()));
        o.step(
            "readdir noexec",
            d.stream("noexec").and_then(|mut s| {
                let mut n = 0;
                while s.next_entry()?.is_some() {
                    n += 1;
                }
                Ok(n)
            }),
        );
        o.step("create in open dir", d.write_file("open/mine", b"mine"));
        o.step("owner of created file", owner(d, "open/mine"));
        o.step("perm of created file", perm(d, "open/mine"));
        o.step("mkdir in open dir", d.mkdir("open/mydir", 0o700));
        o.step("owner of created dir", owner(d, "open/mydir"));
        o.step("symlink in open dir", d.symlink("mine", "open/mylink"));
        o.step("owner of created symlink", owner(d, "open/mylink"));
        o.step("mknod fifo in open dir", d.mknod("open/myfifo", libc::S_IFIFO | 0o600, 0));
        o.step("owner of fifo", owner(d, "open/myfifo"));
        o.step("chmod own file", d.chmod("open/mine", 0o600));
        o.step("chown own file to root", d.chown("open/mine", 0, u32::MAX, 0));
        o.step("chown own file to own ids", d.chown("open/mine", NOBODY, NOBODY, 0));
        o.step("chown own file to foreign group", d.chown("open/mine", u32::MAX, GROUP, 0));
        o.step("utimensat explicit on own file", d.utimens("open/mine", [ts(7, 7), ts(8, 8)], 0));
        o.step("read back", times(d, "open/mine", true));
        o.step("chmod own dir 0", d.chmod("open/mydir", 0));
        o.step("create in own 000 dir", d.write_file("open/mydir/x", b""));
        o.step("chmod own dir back", d.chmod("open/mydir", 0o700));
        o.step("link to root's secret", d.link_to("secret", d, "open/hard", 0));
        o.step("rename own file", d.rename("open/mine", "open/mine2", 0));
        o.step("unlink own file", d.unlink("open/mine2"));
    });
    o.step("root reads secret", d.read_file("secret").map(|v| v.len()));
    o.step("root opens 000 file", {
        let _ = d.chmod("secret", 0);
        d.open("secret", O_RDWR, 0).map(drop)
    });
    o.step("open dir listing", d.sub("open").and_then(|s| s.names()).map(crate::files::names_str));
    Ok(())
}

fn sticky_dir(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("mkdir tmp", d.mkdir("tmp", 0o777))?;
    o.need("chmod tmp 01777", d.chmod("tmp", 0o1777))?;
    o.step("perm", perm(d, "tmp"));
    o.need("create tmp/rootfile 0666", d.write_file("tmp/rootfile", b"root"))?;
    o.need("chmod rootfile", d.chmod("tmp/rootfile", 0o666))?;
    o.need("create tmp/target", d.write_file("tmp/target", b"t"))?;
    o.need("chmod target", d.chmod("tmp/target", 0o666))?;
    env.as_user(o, &Creds::nobody(), |o| {
        o.step("unlink root's file", d.unlink("tmp/rootfile"));
        o.step("rename root's file", d.rename("tmp/rootfile", "tmp/stolen", 0));
        o.step(
            "write root's 0666 file",
            d.open("tmp/rootfile", O_WRONLY, 0).and_then(|f| sys::pwrite_once(&f, b"R", 0)),
        );
        o.step("create own file", d.write_file("tmp/mine", b"mine"));
        o.step("rename own file over root's", d.rename("tmp/mine", "tmp/target", 0));
        o.step("rename own file", d.rename("tmp/mine", "tmp/mine2", 0));
        o.step("create second own file", d.write_file("tmp/keep", b"keep"));
        o.step("unlink own file", d.unlink("tmp/mine2"));
    });
    env.as_user(o, &Creds::user(OTHER, OTHER), |o| {
        o.step("other user unlinks nobody's file", d.unlink("tmp/keep"));
        o.step("other user renames nobody's file", d.rename("tmp/keep", "tmp/k2", 0));
    });
    o.step("root unlinks nobody's file", d.unlink("tmp/keep"));
    o.step("listing", d.sub("tmp").and_then(|s| s.names()).map(crate::files::names_str));
    Ok(())
}

fn setid_clear(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    for name in ["w", "t", "r", "g", "k"] {
        o.need(&format!("create {name}"), d.write_file(name, b"0123456789"))?;
    }
    o.step("chmod w 06777", d.chmod("w", 0o6777));
    o.step("chmod t 06777", d.chmod("t", 0o6777));
    o.step("chmod r 06777", d.chmod("r", 0o6777));
    o.step("chmod g 02767 (no group exec)", d.chmod("g", 0o2767));
    o.step("chmod k 04777", d.chmod("k", 0o4777));
    env.as_user(o, &Creds::nobody(), |o| {
        o.step("non-owner write", d.open("w", O_WRONLY, 0).and_then(|f| sys::pwrite_once(&f, b"X", 0)));
        o.step("non-owner ftruncate", d.open("t", O_WRONLY, 0).and_then(|f| sys::ftruncate(&f, 2)));
        o.step(
            "non-owner write, sgid without group exec",
            d.open("g", O_WRONLY, 0).and_then(|f| sys::pwrite_once(&f, b"X", 0)),
        );
        o.step("non-owner O_TRUNC", d.open("k", O_WRONLY | O_TRUNC, 0).map(drop));
    });
    o.step("perm w after write", perm(d, "w"));
    o.step("perm t after ftruncate", perm(d, "t"));
    o.step("perm g after write", perm(d, "g"));
    o.step("perm k after O_TRUNC", perm(d, "k"));
    o.step("root write", d.open("r", O_WRONLY, 0).and_then(|f| sys::pwrite_once(&f, b"X", 0)));
    o.step("perm r after root write", perm(d, "r"));
    // An owner that is not in the file's group cannot set S_ISGID.
    o.need("mkdir open", d.mkdir("open", 0o777))?;
    o.need("chmod open", d.chmod("open", 0o777))?;
    env.as_user(o, &Creds::nobody(), |o| {
        o.step("create own file", d.write_file("open/own", b"own"));
        o.step("chown to foreign group refused", d.chown("open/own", u32::MAX, 0, 0));
        o.step("chmod own file 06755", d.chmod("open/own", 0o6755));
        o.step("perm own", perm(d, "open/own"));
        o.step(
            "owner writes own setuid file",
            d.open("open/own", O_WRONLY, 0).and_then(|f| sys::pwrite_once(&f, b"X", 0)),
        );
        o.step("perm own after owner write", perm(d, "open/own"));
    });
    o.step("root chowns own to group 0", d.chown("open/own", u32::MAX, 0, 0));
    o.step("root sets 06755", d.chmod("open/own", 0o6755));
    env.as_user(o, &Creds::nobody(), |o| {
        o.step("chmod own file in foreign group 02755", d.chmod("open/own", 0o2755));
        o.step("perm own", perm(d, "open/own"));
    });
    Ok(())
}

fn setgid_dir(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("mkdir shared", d.mkdir("shared", 0o777))?;
    o.need("chown shared :GROUP", d.chown("shared", 0, GROUP, 0))?;
    o.need("chmod shared 02777", d.chmod("shared", 0o2777))?;
    o.step("perm shared", perm(d, "shared"));
    o.step("root creates file", d.write_file("shared/byroot", b""));
    o.step("owner", owner(d, "shared/byroot"));
    o.step("root mkdir", d.mkdir("shared/rootdir", 0o755));
    o.step("owner", owner(d, "shared/rootdir"));
    o.step("perm inherits setgid", perm(d, "shared/rootdir"));
    env.as_user(o, &Creds::nobody(), |o| {
        o.step("create file", d.write_file("shared/bynobody", b""));
        o.step("owner", owner(d, "shared/bynobody"));
        o.step("mkdir", d.mkdir("shared/nobodydir", 0o755));
        o.step("owner", owner(d, "shared/nobodydir"));
        o.step("perm", perm(d, "shared/nobodydir"));
        o.step(
            "create with mode 02755 (not in group)",
            d.open("shared/sgidfile", O_CREAT | O_WRONLY, 0o2755).map(drop),
        );
        o.step("perm", perm(d, "shared/sgidfile"));
        o.step("mknod fifo", d.mknod("shared/fifo", libc::S_IFIFO | 0o644, 0));
        o.step("owner", owner(d, "shared/fifo"));
        o.step("symlink", d.symlink("x", "shared/link"));
        o.step("owner", owner(d, "shared/link"));
    });
    Ok(())
}

fn groups(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create grp 0640", d.write_file("grp", b"group data"))?;
    o.need("chmod grp", d.chmod("grp", 0o640))?;
    o.need("chown grp :GROUP", d.chown("grp", 0, GROUP, 0))?;
    o.need("mkdir gdir 0770", d.mkdir("gdir", 0o770))?;
    o.need("chmod gdir", d.chmod("gdir", 0o770))?;
    o.need("chown gdir :GROUP", d.chown("gdir", 0, GROUP, 0))?;
    env.as_user(o, &Creds::nobody(), |o| {
        o.step("read without the group", d.read_file("grp").map(|v| v.len()));
        o.step("create in gdir without the group", d.write_file("gdir/a", b""));
    });
    let supp = Creds { uid: NOBODY, gid: NOBODY, groups: vec![GROUP] };
    env.as_user(o, &supp, |o| {
        o.step("read with supplementary group", d.read_file("grp").map(|v| v.len()));
        o.step("write with supplementary group", d.open("grp", O_WRONLY, 0).map(drop));
        o.step("create in gdir with supplementary group", d.write_file("gdir/b", b""));
        o.step("owner of created", owner(d, "gdir/b"));
        o.step("chown own file to supplementary group", d.chown("gdir/b", u32::MAX, GROUP, 0));
        o.step("owner after", owner(d, "gdir/b"));
        o.step("chmod own file g+s", d.chmod("gdir/b", 0o2750));
        o.step("perm", perm(d, "gdir/b"));
    });
    let primary = Creds { uid: NOBODY, gid: GROUP, groups: Vec::new() };
    env.as_user(o, &primary, |o| {
        o.step("read with primary group", d.read_file("grp").map(|v| v.len()));
        o.step("create in gdir with primary group", d.write_file("gdir/c", b""));
        o.step("owner of created", owner(d, "gdir/c"));
    });
    Ok(())
}
