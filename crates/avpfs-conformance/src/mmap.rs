//! Memory mappings: MAP_SHARED writes seen through read() (before and
//! after msync), write() seen through a mapping, MAP_PRIVATE isolation,
//! mapping permissions.

use libc::{MAP_PRIVATE, MAP_SHARED, MS_SYNC, O_RDONLY, O_RDWR, O_WRONLY, PROT_READ, PROT_WRITE};

use crate::recorder::{Flow, Outcome};
use crate::sys::{self, Mapping};
use crate::{case, Case, Env};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("mmap.shared_write", false, shared_write),
        case!("mmap.private", false, private),
        case!("mmap.permissions", false, permissions),
    ]
}

fn shared_write(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create m", d.write_file("m", &[b'a'; 8192]))?;
    let f = o.need("open rdwr", d.open("m", O_RDWR, 0))?;
    let r = o.need("open rdonly", d.open("m", O_RDONLY, 0))?;
    let m = o.need("mmap MAP_SHARED rw", Mapping::new(&f, 8192, PROT_READ | PROT_WRITE, MAP_SHARED))?;
    o.bytes("mapped bytes", Ok(m.read(0, 4)));
    m.write(100, b"SHARED");
    m.write(8190, b"ZZ");
    o.bytes("read() before msync", sys::pread(&r, 98, 10));
    o.step("msync MS_SYNC", m.msync(MS_SYNC));
    o.bytes("read() after msync", sys::pread(&r, 98, 10));
    o.bytes("read() at end", sys::pread(&r, 8188, 10));
    o.step("size unchanged", sys::fstat(&r).map(|s| s.size));
    // write() is seen by the mapping.
    o.step("pwrite 'written' at 4096", sys::pwrite_once(&f, b"written", 4096));
    o.bytes("mapping sees write()", Ok(m.read(4096, 7)));
    // Grow the file and write into the new part through a new mapping.
    o.step("ftruncate to 3 pages", sys::ftruncate(&f, 3 * 4096));
    let m2 = o.need("mmap 3 pages", Mapping::new(&f, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED))?;
    o.bytes("new page is zero", Ok(m2.read(2 * 4096, 4)));
    m2.write(2 * 4096 + 10, b"third page");
    o.step("msync", m2.msync(MS_SYNC));
    o.bytes("read() third page", sys::pread(&r, 2 * 4096 + 8, 14));
    drop(m);
    drop(m2);
    o.step("fsync", sys::fsync(&f));
    drop(f);
    drop(r);
    let back = d.read_file("m");
    o.step(
        "content after unmap and reopen",
        back.map(|v| {
            (
                v.len(),
                String::from_utf8_lossy(&v[98..108]).into_owned(),
                String::from_utf8_lossy(&v[2 * 4096 + 10..2 * 4096 + 20]).into_owned(),
            )
        }),
    );
    Ok(())
}

fn private(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create p", d.write_file("p", &[b'p'; 4096]))?;
    let f = o.need("open rdonly", d.open("p", O_RDONLY, 0))?;
    let m =
        o.need("mmap MAP_PRIVATE rw on O_RDONLY fd", Mapping::new(&f, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE))?;
    m.write(0, b"private");
    o.bytes("mapping has the change", Ok(m.read(0, 7)));
    o.bytes("read() does not", sys::pread(&f, 0, 7));
    o.step("msync", m.msync(MS_SYNC));
    drop(m);
    o.bytes("file unchanged", d.read_file("p").map(|v| v[..7].to_vec()));
    Ok(())
}

fn permissions(env: &Env, o: &mut Outcome) -> Flow {
    let d = &env.d;
    o.need("create q", d.write_file("q", &[b'q'; 4096]))?;
    let ro = o.need("open rdonly", d.open("q", O_RDONLY, 0))?;
    let wo = o.need("open wronly", d.open("q", O_WRONLY, 0))?;
    o.step(
        "MAP_SHARED PROT_WRITE on O_RDONLY fd",
        Mapping::new(&ro, 4096, PROT_READ | PROT_WRITE, MAP_SHARED).map(drop),
    );
    o.step("MAP_SHARED PROT_READ on O_RDONLY fd", Mapping::new(&ro, 4096, PROT_READ, MAP_SHARED).map(drop));
    o.step("MAP_SHARED PROT_READ on O_WRONLY fd", Mapping::new(&wo, 4096, PROT_READ, MAP_SHARED).map(drop));
    o.step("mmap length 0", Mapping::new(&ro, 0, PROT_READ, MAP_SHARED).map(drop));
    o.need("mkdir dir", d.mkdir("dir", 0o755))?;
    let dir = o.need("open dir", d.open("dir", O_RDONLY, 0))?;
    o.step("mmap a directory", Mapping::new(&dir, 4096, PROT_READ, MAP_SHARED).map(drop));
    Ok(())
}
