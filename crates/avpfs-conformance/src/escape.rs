//! Escape checks that only make sense on a **mount point** (run them with
//! [`crate::run_escape_suite`], never on the baseline directory, where
//! `..` of the root really leaves it).
//!
//! What the client side can show is modest, and these cases say no more:
//! path walking, `..` and symlink targets are resolved by the *client*
//! kernel in the client's namespace; a file server only ever receives
//! single names relative to a directory it already handed out. So:
//!
//! - `..` of the mount root is the mount point's parent in the client's
//!   view (the kernel steps off the mount), never a directory of the
//!   server's host above the shared root;
//! - a name containing `/` cannot reach the server: the kernel splits it;
//! - rename and link out of the mount fail with `EXDEV`;
//! - a symlink's target is stored verbatim and resolved by the client.
//!
//! Whether the *server* keeps a malicious client (one that sends `..` or
//! names with `/` in raw FUSE requests) beneath its root is tested on the
//! server side, with crafted requests, not here.
//!
//! Each case asserts absolute expectations with [`Outcome::expect`]; see
//! [`crate::violations`].

use std::path::{Path, PathBuf};

use libc::{O_CREAT, O_NOFOLLOW, O_RDONLY, O_WRONLY};

use crate::recorder::{Flow, Outcome};
use crate::sys::{self, Dir};
use crate::{case, Case, Env};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("escape.dotdot_of_root", false, dotdot_of_root),
        case!("escape.slash_in_names", false, slash_in_names),
        case!("escape.cross_mount", false, cross_mount),
        case!("escape.symlink_resolved_by_client", false, symlink_resolved_by_client),
    ]
}

fn parent_of(root: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    abs.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"))
}

fn dotdot_of_root(env: &Env, o: &mut Outcome) -> Flow {
    let root = o.need("stat root", sys::stat_path(&env.root, true))?;
    let parent = o.need("stat parent of root", sys::stat_path(&parent_of(&env.root), true))?;
    o.expect("root is a mount point (st_dev differs from its parent)", root.dev != parent.dev, true);
    let dotdot = sys::stat_path(&env.root.join(".."), true);
    o.expect("stat(root/..) is the mount point's parent", dotdot.map(|s| s.same_file(&parent)).unwrap_or(false), true);
    let rd = o.need("open root", Dir::open_path(&env.root))?;
    o.expect(
        "openat(root, \"..\") is the mount point's parent",
        rd.sub("..").and_then(|d| sys::fstat(&d)).map(|s| s.same_file(&parent)).unwrap_or(false),
        true,
    );
    o.expect(
        "openat(root, \"../../../../..\") is /",
        rd.stat("../../../../../../../../..")
            .and_then(|s| sys::stat_path(Path::new("/"), true).map(|r| r.same_file(&s)))
            .unwrap_or(false),
        true,
    );
    o.expect(
        "case dir/../.. is the mount point's parent",
        env.d.stat("../..").map(|s| s.same_file(&parent)).unwrap_or(false),
        true,
    );
    let name = env.root.file_name().map(|n| n.to_os_string());
    o.expect(
        "root/.. lists the mount point's name",
        rd.sub("..")
            .and_then(|d| d.names())
            .map(|v| name.is_some_and(|n| v.iter().any(|e| e.as_slice() == n.as_encoded_bytes())))
            .unwrap_or(false),
        true,
    );
    Ok(())
}

fn slash_in_names(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.expect(
        "create a/b without a",
        d.open("a/b", O_CREAT | O_WRONLY, 0o644).map(drop).map_err(|e| crate::error_name(&e)),
        Err("ENOENT".to_string()),
    );
    o.need("mkdir a", d.mkdir("a", 0o755))?;
    o.need("create a/b", d.write_file("a/b", b"b"))?;
    o.expect(
        "a/b was created inside a",
        d.sub("a").and_then(|s| s.names()).map(crate::files::names_str).unwrap_or_default(),
        vec!["b".to_string()],
    );
    o.need("create x/../y", d.mkdir("x", 0o755).and_then(|_| d.write_file("x/../y", b"y")))?;
    let names = d.names().unwrap_or_default();
    o.expect("no name with '/' in the listing", names.iter().any(|n| n.contains(&b'/')), false);
    o.expect(
        "listing is a, x, y",
        crate::files::names_str(names),
        vec!["a".to_string(), "x".to_string(), "y".to_string()],
    );
    o.expect(
        "O_CREAT of '..' is the parent directory",
        d.open("..", O_CREAT | O_WRONLY, 0o644).map(drop).map_err(|e| crate::error_name(&e)),
        Err("EISDIR".to_string()),
    );
    Ok(())
}

fn cross_mount(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create f", d.write_file("f", b"f"))?;
    let rd = o.need("open root", Dir::open_path(&env.root))?;
    let rel = format!("{}/f", env.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let outside = format!("../avpfs-escape-{}", sys::getpid());
    o.expect(
        "rename out of the mount",
        rd.rename(&rel, &outside, 0).map_err(|e| crate::error_name(&e)),
        Err("EXDEV".to_string()),
    );
    o.expect(
        "link out of the mount",
        rd.link_to(&rel, &rd, &outside, 0).map_err(|e| crate::error_name(&e)),
        Err("EXDEV".to_string()),
    );
    o.expect(
        "nothing appeared outside",
        std::fs::symlink_metadata(parent_of(&env.root).join(&outside[3..])).is_ok(),
        false,
    );
    Ok(())
}

fn symlink_resolved_by_client(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    let up = format!("{}etc/passwd", "../".repeat(64));
    o.need("symlink up -> ../../…/etc/passwd", d.symlink(&up, "up"))?;
    o.expect("readlink is stored verbatim", d.readlink("up").map(|v| v == up.as_bytes()).unwrap_or(false), true);
    o.need("symlink abs -> /etc/passwd", d.symlink("/etc/passwd", "abs"))?;
    let client = sys::stat_path(Path::new("/etc/passwd"), true);
    if let Ok(client) = client {
        o.expect(
            "relative target resolved in the client's namespace",
            d.stat("up").map(|s| s.same_file(&client)).unwrap_or(false),
            true,
        );
        o.expect(
            "absolute target resolved in the client's namespace",
            d.stat("abs").map(|s| s.same_file(&client)).unwrap_or(false),
            true,
        );
    } else {
        o.raw("client has no /etc/passwd", "skipped");
    }
    o.expect(
        "O_NOFOLLOW refuses the link",
        d.open("up", O_RDONLY | O_NOFOLLOW, 0).map(drop).map_err(|e| crate::error_name(&e)),
        Err("ELOOP".to_string()),
    );
    o.expect("lstat sees a symlink", d.lstat("up").map(|s| s.kind()).unwrap_or("error"), "lnk");
    Ok(())
}
