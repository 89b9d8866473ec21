//! Regular files: open flags, reads and writes at offsets, sparse files,
//! truncation, fallocate, sync, statfs and copy_file_range.

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use libc::{O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};

use crate::recorder::{fnv1a, Flow, Outcome};
use crate::sys::{self, fstat};
use crate::{case, pattern, Case, Env};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("files.open_flags", false, open_flags),
        case!("files.trunc_append", false, trunc_append),
        case!("files.tmpfile", false, tmpfile),
        case!("files.rw_offsets", false, rw_offsets),
        case!("files.large_io", false, large_io),
        case!("files.sparse_seek", false, sparse_seek),
        case!("files.truncate", false, truncate),
        case!("files.fallocate", false, fallocate),
        case!("files.sync_statfs", false, sync_statfs),
        case!("files.copy_file_range", false, copy_file_range),
    ]
}

fn perm_of(env: &Env, name: &str) -> std::io::Result<String> {
    env.d.stat(name).map(|s| format!("{:o}", s.perm()))
}

fn open_flags(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.step_ok("open missing, no O_CREAT", d.open("a", O_RDONLY, 0));
    let f = o.need("O_CREAT|O_EXCL new, mode 0640", d.open("a", O_CREAT | O_EXCL | O_RDWR, 0o640))?;
    o.step("stat new", d.stat("a").map(|s| s.summary()));
    o.step("write to new", sys::write_once(&f, b"data"));
    o.step_ok("O_CREAT|O_EXCL existing", d.open("a", O_CREAT | O_EXCL | O_RDWR, 0o600));
    o.step_ok("O_CREAT existing", d.open("a", O_CREAT | O_RDWR, 0o600));
    o.step("perm after O_CREAT existing", perm_of(env, "a"));
    o.step_ok("O_CREAT 0777 (umask 022)", d.open("b", O_CREAT | O_WRONLY, 0o777));
    o.step("perm of b", perm_of(env, "b"));
    o.step_ok("symlink dangling", d.symlink("target", "dangling"));
    o.step_ok("O_CREAT|O_EXCL on dangling symlink", d.open("dangling", O_CREAT | O_EXCL | O_WRONLY, 0o644));
    o.step_ok("O_CREAT through dangling symlink", d.open("dangling", O_CREAT | O_WRONLY, 0o644));
    o.step("target created", d.lstat("target").map(|s| s.summary()));
    o.step_ok("O_DIRECTORY on file", d.open("a", O_RDONLY | O_DIRECTORY, 0));
    o.need("mkdir sub", d.mkdir("sub", 0o755))?;
    o.step_ok("open dir O_WRONLY", d.open("sub", O_WRONLY, 0));
    o.step_ok("open dir O_RDWR", d.open("sub", O_RDWR, 0));
    o.step_ok("open dir O_RDONLY", d.open("sub", O_RDONLY, 0));
    o.step_ok("O_CREAT on dir name", d.open("sub", O_CREAT | O_WRONLY, 0o644));
    o.step_ok("O_CREAT|O_EXCL on dir name", d.open("sub", O_CREAT | O_EXCL | O_WRONLY, 0o644));
    o.step_ok("file with trailing slash", d.open("a/", O_RDONLY, 0));
    o.step_ok("O_CREAT new name with trailing slash", d.open("c/", O_CREAT | O_WRONLY, 0o644));
    o.step_ok("O_CREAT in missing dir", d.open("nodir/x", O_CREAT | O_WRONLY, 0o644));
    o.step_ok("O_CREAT under a file", d.open("a/x", O_CREAT | O_WRONLY, 0o644));
    let ro = o.need("open O_RDONLY", d.open("a", O_RDONLY, 0))?;
    o.step("write on O_RDONLY fd", sys::write_once(&ro, b"x"));
    let wo = o.need("open O_WRONLY", d.open("a", O_WRONLY, 0))?;
    o.step("read on O_WRONLY fd", sys::read_once(&wo, 4).map(|v| v.len()));
    o.step("names", d.names().map(names_str));
    Ok(())
}

pub(crate) fn names_str(v: Vec<Vec<u8>>) -> Vec<String> {
    v.into_iter().map(|n| String::from_utf8_lossy(&n).into_owned()).collect()
}

fn trunc_append(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create t", d.write_file("t", b"hello world"))?;
    let f = o.need("O_TRUNC|O_WRONLY", d.open("t", O_TRUNC | O_WRONLY, 0))?;
    o.step("size after O_TRUNC", fstat(&f).map(|s| s.size));
    o.step("write", sys::write_once(&f, b"abc"));
    o.bytes("content", d.read_file("t"));
    drop(f);
    let f = o.need("O_TRUNC|O_RDONLY", d.open("t", O_TRUNC | O_RDONLY, 0))?;
    o.step("size after O_TRUNC|O_RDONLY", fstat(&f).map(|s| s.size));
    drop(f);

    o.need("create ap", d.write_file("ap", b"0123456789"))?;
    let a = o.need("O_APPEND|O_WRONLY", d.open("ap", O_APPEND | O_WRONLY, 0))?;
    o.step("lseek 0", sys::lseek(&a, 0, libc::SEEK_SET));
    o.step("append write", sys::write_once(&a, b"XY"));
    o.step("position after append", sys::lseek(&a, 0, libc::SEEK_CUR));
    o.bytes("content after append", d.read_file("ap"));
    o.step("pwrite at 0 on O_APPEND", sys::pwrite_once(&a, b"Z", 0));
    o.bytes("content after pwrite", d.read_file("ap"));
    let w = o.need("second fd O_WRONLY", d.open("ap", O_WRONLY, 0))?;
    o.step("plain write at 0", sys::write_once(&w, b"AB"));
    o.step("append write after", sys::write_once(&a, b"!"));
    o.bytes("final content", d.read_file("ap"));
    let f = o.need("O_APPEND|O_TRUNC|O_RDWR", d.open("ap", O_APPEND | O_TRUNC | O_RDWR, 0))?;
    o.step("append into empty", sys::write_once(&f, b"new"));
    o.bytes("content after trunc+append", d.read_file("ap"));
    Ok(())
}

fn tmpfile(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.step_ok("O_TMPFILE|O_RDONLY", d.open(".", libc::O_TMPFILE | O_RDONLY, 0o600));
    let f = o.need("O_TMPFILE|O_RDWR", d.open(".", libc::O_TMPFILE | O_RDWR, 0o600))?;
    o.step("write", sys::write_once(&f, b"tmp data"));
    o.step("fstat unnamed", fstat(&f).map(|s| s.summary()));
    o.step("dir is empty", d.names().map(names_str));
    let proc_path = format!("/proc/self/fd/{}", f.as_raw_fd());
    o.step(
        "linkat /proc/self/fd AT_SYMLINK_FOLLOW",
        sys::link_raw(libc::AT_FDCWD, &proc_path, d, "linked", libc::AT_SYMLINK_FOLLOW),
    );
    o.bytes("read linked", d.read_file("linked"));
    o.step("fstat after link", fstat(&f).map(|s| s.summary()));
    o.step(
        "linkat again to second name",
        sys::link_raw(libc::AT_FDCWD, &proc_path, d, "linked2", libc::AT_SYMLINK_FOLLOW),
    );
    o.step("nlink after second link", fstat(&f).map(|s| s.nlink));
    o.step("linkat AT_EMPTY_PATH", sys::link_raw(f.as_raw_fd(), "", d, "linked3", libc::AT_EMPTY_PATH));

    let x = o.need("O_TMPFILE|O_EXCL", d.open(".", libc::O_TMPFILE | O_EXCL | O_RDWR, 0o600))?;
    let xp = format!("/proc/self/fd/{}", x.as_raw_fd());
    o.step("linkat of O_EXCL tmpfile", sys::link_raw(libc::AT_FDCWD, &xp, d, "never", libc::AT_SYMLINK_FOLLOW));
    o.step("O_TMPFILE on a file", d.open("linked", libc::O_TMPFILE | O_RDWR, 0o600).map(drop));
    o.step("names", d.names().map(names_str));
    Ok(())
}

fn rw_offsets(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    let f = o.need("create", d.open("rw", O_CREAT | O_RDWR, 0o644))?;
    o.step("write", sys::write_once(&f, b"abcdefghij"));
    o.step("position", sys::lseek(&f, 0, libc::SEEK_CUR));
    o.bytes("pread 0..4", sys::pread(&f, 0, 4));
    o.bytes("pread 8..18 (short)", sys::pread(&f, 8, 10));
    o.bytes("pread at EOF", sys::pread(&f, 10, 5));
    o.bytes("pread past EOF", sys::pread(&f, 100, 5));
    o.bytes("read at EOF", sys::read_once(&f, 10));
    o.step("pwrite inside", sys::pwrite_once(&f, b"XYZ", 3));
    o.step("position unchanged by pwrite", sys::lseek(&f, 0, libc::SEEK_CUR));
    o.step("pwrite past EOF", sys::pwrite_once(&f, b"end", 20));
    o.step("size", fstat(&f).map(|s| s.size));
    o.bytes("content", sys::pread(&f, 0, 100));
    o.step("lseek SEEK_END", sys::lseek(&f, 0, libc::SEEK_END));
    o.step("lseek negative", sys::lseek(&f, -1, libc::SEEK_SET));
    o.step("lseek SEEK_END+5", sys::lseek(&f, 5, libc::SEEK_END));
    o.step("write after gap", sys::write_once(&f, b"Q"));
    o.step("size after gap write", fstat(&f).map(|s| s.size));
    o.step("lseek SEEK_CUR -4", sys::lseek(&f, -4, libc::SEEK_CUR));
    o.bytes("read tail", sys::read_once(&f, 100));
    o.step("lseek 0", sys::lseek(&f, 0, libc::SEEK_SET));
    o.bytes("read all", sys::read_once(&f, 100));
    // A second descriptor sees the data and size at once.
    let g = o.need("second fd", d.open("rw", O_RDONLY, 0))?;
    o.step("pwrite via first", sys::pwrite_once(&f, b"Mm", 0));
    o.bytes("read via second", sys::pread(&g, 0, 4));
    o.step("extend via first", sys::pwrite_once(&f, b"+", 40));
    o.step("size via second", fstat(&g).map(|s| s.size));
    o.step("write of zero bytes", sys::write_once(&f, b""));
    o.step("pwrite negative offset", sys::pwrite_once(&f, b"n", -1));
    Ok(())
}

fn large_io(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    let data = pattern(4 << 20, 7);
    let f = o.need("create", d.open("big", O_CREAT | O_RDWR, 0o644))?;
    o.step("write 4 MiB at once", f.write_all_at(&data, 0));
    o.step("size", fstat(&f).map(|s| s.size));
    let back = sys::pread(&f, 0, data.len());
    o.val("read back equal", back.as_ref().map(|b| b == &data).unwrap_or(false));
    o.step("unaligned pwrite across pages", sys::pwrite_once(&f, &pattern(10000, 3), 4093));
    let mut expect = data.clone();
    expect[4093..14093].copy_from_slice(&pattern(10000, 3));
    let back = sys::pread(&f, 0, data.len());
    o.val("unaligned read back equal", back.as_ref().map(|b| b == &expect).unwrap_or(false));
    o.bytes("unaligned pread", sys::pread(&f, 4090, 8).map(|v| v.to_vec()));
    let g = o.need("reopen", d.open("big", O_RDONLY, 0))?;
    o.step("lseek 1 MiB - 3", sys::lseek(&g, (1 << 20) - 3, libc::SEEK_SET));
    let r = sys::read_once(&g, 1 << 20);
    o.step("read 1 MiB from odd offset", r.map(|v| (v.len(), v == expect[(1 << 20) - 3..(2 << 20) - 3])));
    Ok(())
}

const MIB: i64 = 1 << 20;

fn sparse_seek(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    let f = o.need("create", d.open("sparse", O_CREAT | O_RDWR, 0o644))?;
    o.step("ftruncate 2 MiB", sys::ftruncate(&f, 2 * MIB));
    o.step("write 4 KiB at 0", sys::pwrite_once(&f, &[b'a'; 4096], 0));
    o.step("write 4 KiB at 1 MiB", sys::pwrite_once(&f, &[b'b'; 4096], MIB));
    o.step("fsync", sys::fsync(&f));
    for (label, off, whence) in [
        ("SEEK_DATA 0", 0, libc::SEEK_DATA),
        ("SEEK_HOLE 0", 0, libc::SEEK_HOLE),
        ("SEEK_DATA 4096", 4096, libc::SEEK_DATA),
        ("SEEK_HOLE 4096", 4096, libc::SEEK_HOLE),
        ("SEEK_HOLE 1 MiB", MIB, libc::SEEK_HOLE),
        ("SEEK_DATA 1 MiB+8192", MIB + 8192, libc::SEEK_DATA),
        ("SEEK_HOLE 1 MiB+8192", MIB + 8192, libc::SEEK_HOLE),
        ("SEEK_DATA at EOF", 2 * MIB, libc::SEEK_DATA),
        ("SEEK_HOLE at EOF", 2 * MIB, libc::SEEK_HOLE),
        ("SEEK_HOLE past EOF", 3 * MIB, libc::SEEK_HOLE),
        ("SEEK_DATA negative", -1, libc::SEEK_DATA),
    ] {
        o.step(label, sys::lseek(&f, off, whence));
    }
    let hole = sys::pread(&f, 4096, 8192);
    o.val("hole reads as zeros", hole.map(|v| v.len() == 8192 && v.iter().all(|b| *b == 0)).unwrap_or(false));
    o.bytes("data around hole edge", sys::pread(&f, (MIB - 2) as u64, 4));
    // Fill the end: the last region becomes data.
    o.step("write at end", sys::pwrite_once(&f, b"z", 2 * MIB - 1));
    o.step("SEEK_DATA 1 MiB+8192 after", sys::lseek(&f, MIB + 8192, libc::SEEK_DATA));
    o.step("SEEK_HOLE 2 MiB-1", sys::lseek(&f, 2 * MIB - 1, libc::SEEK_HOLE));
    o.step("size", fstat(&f).map(|s| s.size));
    Ok(())
}

fn truncate(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create", d.write_file("t", b"0123456789"))?;
    let p = env.path("t");
    o.step("truncate shrink to 4", sys::truncate(&p, 4));
    o.bytes("content", d.read_file("t"));
    o.step("truncate grow to 8", sys::truncate(&p, 8));
    o.bytes("content", d.read_file("t"));
    let f = o.need("open rdwr", d.open("t", O_RDWR, 0))?;
    o.step("ftruncate to 2", sys::ftruncate(&f, 2));
    o.bytes("content", d.read_file("t"));
    o.step("ftruncate grow to 1 GiB", sys::ftruncate(&f, 1 << 30));
    o.step("size", fstat(&f).map(|s| s.size));
    o.bytes("read near end", sys::pread(&f, (1 << 30) - 4, 10));
    o.step("ftruncate back to 3", sys::ftruncate(&f, 3));
    o.bytes("content", d.read_file("t"));
    o.step("ftruncate 0", sys::ftruncate(&f, 0));
    o.step("size", fstat(&f).map(|s| s.size));
    o.step("ftruncate negative", sys::ftruncate(&f, -1));
    o.step("truncate negative", sys::truncate(&p, -1));
    let ro = o.need("open rdonly", d.open("t", O_RDONLY, 0))?;
    o.step("ftruncate on O_RDONLY fd", sys::ftruncate(&ro, 5));
    o.need("mkdir", d.mkdir("dir", 0o755))?;
    o.step("truncate dir", sys::truncate(&env.path("dir"), 0));
    o.step("truncate missing", sys::truncate(&env.path("missing"), 0));
    // Truncation updates mtime: set an old one first.
    o.step("set old mtime", d.utimens("t", [sys::ts(1_000_000_000, 5), sys::ts(1_000_000_000, 5)], 0));
    o.step("truncate to 7", sys::truncate(&p, 7));
    o.val("mtime moved", d.stat("t").map(|s| s.mtime != (1_000_000_000, 5)).unwrap_or(false));
    // Write after the fd position is past the new end.
    let w = o.need("open wr", d.open("t", O_WRONLY, 0))?;
    o.step("lseek 100", sys::lseek(&w, 100, libc::SEEK_SET));
    o.step("truncate to 1", sys::ftruncate(&w, 1));
    o.step("write at 100", sys::write_once(&w, b"x"));
    o.step("size", fstat(&w).map(|s| s.size));
    Ok(())
}

fn content_summary(f: &std::fs::File) -> std::io::Result<String> {
    let v = sys::read_all(f)?;
    // Run-length summary: ("x" * 4096, "\0" * 4096, ...)
    let mut runs: Vec<(u8, usize)> = Vec::new();
    for b in v {
        match runs.last_mut() {
            Some((c, n)) if *c == b => *n += 1,
            _ => runs.push((b, 1)),
        }
    }
    Ok(runs.iter().map(|(c, n)| format!("{:?}x{n}", *c as char)).collect::<Vec<_>>().join(","))
}

fn fallocate(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    let f = o.need("create", d.open("fa", O_CREAT | O_RDWR, 0o644))?;
    o.step("fallocate mode 0 0..8192", sys::fallocate(&f, 0, 0, 8192));
    o.step("size", fstat(&f).map(|s| s.size));
    o.step("content", content_summary(&f));
    o.step("KEEP_SIZE 8192..16384", sys::fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 8192, 8192));
    o.step("size", fstat(&f).map(|s| s.size));
    o.step("write 16 KiB of x", sys::pwrite_once(&f, &[b'x'; 16384], 0));
    o.step(
        "PUNCH_HOLE|KEEP_SIZE 4096..8192",
        sys::fallocate(&f, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 4096, 4096),
    );
    o.step("size", fstat(&f).map(|s| s.size));
    o.step("content", content_summary(&f));
    o.step("PUNCH_HOLE without KEEP_SIZE", sys::fallocate(&f, libc::FALLOC_FL_PUNCH_HOLE, 0, 4096));
    o.step(
        "PUNCH_HOLE|KEEP_SIZE unaligned 100..200",
        sys::fallocate(&f, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 100, 100),
    );
    o.step("content", content_summary(&f));
    o.step("ZERO_RANGE 8192..12288", sys::fallocate(&f, libc::FALLOC_FL_ZERO_RANGE, 8192, 4096));
    o.step("content", content_summary(&f));
    o.step("ZERO_RANGE past EOF", sys::fallocate(&f, libc::FALLOC_FL_ZERO_RANGE, 16384, 4096));
    o.step("size", fstat(&f).map(|s| s.size));
    o.step(
        "ZERO_RANGE|KEEP_SIZE past EOF",
        sys::fallocate(&f, libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE, 65536, 4096),
    );
    o.step("size", fstat(&f).map(|s| s.size));
    o.step("len 0", sys::fallocate(&f, 0, 0, 0));
    o.step("negative offset", sys::fallocate(&f, 0, -1, 10));
    o.step("mode 0 growing 1 MiB", sys::fallocate(&f, 0, MIB, 4096));
    o.step("size", fstat(&f).map(|s| s.size));
    let ro = o.need("open rdonly", d.open("fa", O_RDONLY, 0))?;
    o.step("on O_RDONLY fd", sys::fallocate(&ro, 0, 0, 10));
    Ok(())
}

fn sync_statfs(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    let f = o.need("create", d.open("s", O_CREAT | O_RDWR, 0o644))?;
    o.step("write", sys::write_once(&f, b"sync me"));
    o.step("fsync", sys::fsync(&f));
    o.step("fdatasync", sys::fdatasync(&f));
    let ro = o.need("open rdonly", d.open("s", O_RDONLY, 0))?;
    o.step("fsync O_RDONLY fd", sys::fsync(&ro));
    o.step("fsync dir", sys::fsync(d));
    o.step("fdatasync dir", sys::fdatasync(d));
    let sf = sys::fstatfs(&f);
    o.step("statfs f_bsize > 0", sf.as_ref().map(|(b, _)| *b > 0).map_err(copy_err));
    o.step("statfs f_namelen", sf.map(|(_, n)| n));
    o.step("statfs on dir f_namelen", sys::fstatfs(d).map(|(_, n)| n));
    Ok(())
}

fn copy_err(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(n) => std::io::Error::from_raw_os_error(n),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

/// Copies with copy_file_range until `len` bytes or a 0/short result;
/// returns the total (a single call may legitimately copy less).
fn cfr_all(fin: &std::fs::File, off_in: i64, fout: &std::fs::File, off_out: i64, len: usize) -> std::io::Result<usize> {
    let mut done = 0;
    while done < len {
        let n = sys::copy_file_range(fin, Some(off_in + done as i64), fout, Some(off_out + done as i64), len - done)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

fn copy_file_range(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    let data = pattern(100_000, 11);
    o.need("create src", d.write_file("src", &data))?;
    let src = o.need("open src", d.open("src", O_RDONLY, 0))?;
    let dst = o.need("create dst", d.open("dst", O_CREAT | O_RDWR, 0o644))?;
    o.step("full copy", cfr_all(&src, 0, &dst, 0, data.len()));
    o.step("dst size", fstat(&dst).map(|s| s.size));
    o.val("dst equals src", sys::read_all(&dst).map(|v| v == data).unwrap_or(false));

    o.need("create part", d.write_file("part", &[b'z'; 10000]))?;
    let part = o.need("open part", d.open("part", O_RDWR, 0))?;
    o.step("partial copy 1000+3000 -> 5000", cfr_all(&src, 1000, &part, 5000, 3000));
    let mut expect = vec![b'z'; 10000];
    expect[5000..8000].copy_from_slice(&data[1000..4000]);
    o.val("partial content as expected", sys::read_all(&part).map(|v| v == expect).unwrap_or(false));
    o.step("copy from past EOF", sys::copy_file_range(&src, Some(200_000), &part, Some(0), 100));
    o.step("copy across EOF", cfr_all(&src, 99_990, &part, 0, 100));
    o.step("copy beyond dst EOF", cfr_all(&src, 0, &part, 20_000, 3000));
    o.step("part size", fstat(&part).map(|s| s.size));
    o.step("hole before copied range", sys::pread(&part, 10_000, 10_000).map(|v| v.iter().all(|b| *b == 0)));
    o.val("part fnv", sys::read_all(&part).map(|v| format!("{:016x}", fnv1a(&v))).unwrap_or_default());
    o.step("overlapping range in same file", sys::copy_file_range(&part, Some(0), &part, Some(100), 1000));
    o.step("non-overlapping range in same file", sys::copy_file_range(&part, Some(0), &part, Some(12000), 1000));
    o.step("using file positions: lseek src 10", sys::lseek(&src, 10, libc::SEEK_SET));
    let pos = o.need("create pos", d.open("pos", O_CREAT | O_RDWR, 0o644))?;
    o.step("copy 20 with positions", sys::copy_file_range(&src, None, &pos, None, 20));
    o.step("src position", sys::lseek(&src, 0, libc::SEEK_CUR));
    o.step("dst position", sys::lseek(&pos, 0, libc::SEEK_CUR));
    o.val("copied bytes", sys::read_all(&pos).map(|v| v == data[10..30]).unwrap_or(false));
    let wo = o.need("src O_WRONLY", d.open("src", O_WRONLY, 0))?;
    o.step("from O_WRONLY fd", sys::copy_file_range(&wo, Some(0), &pos, Some(0), 10));
    let ap = o.need("dst O_APPEND", d.open("pos", O_WRONLY | O_APPEND, 0))?;
    o.step("to O_APPEND fd", sys::copy_file_range(&src, Some(0), &ap, Some(0), 10));
    o.step("to O_RDONLY fd", sys::copy_file_range(&src, Some(0), &src, Some(200_000), 10));
    o.need("mkdir", d.mkdir("dir", 0o755))?;
    let dir = o.need("open dir", d.open("dir", O_RDONLY | O_DIRECTORY, 0))?;
    o.step("from a dir", sys::copy_file_range(&dir, Some(0), &pos, Some(0), 10));
    Ok(())
}
