//! The 9P2000.L server of `avpfs-9p`: a stream of frames served by
//! `serve_connection` over an in-memory stream, against the passthrough
//! on a temporary share (feature `passthrough`) or the in-memory `MemFs`.
//!
//! Input: a flags byte, then the stream the client sends. Flag bit 0
//! prepends a `Tversion` (msize 65536) and a `Tattach` of fid 0, so the
//! fuzzer starts inside a session. Checked: no panic; every reply is a
//! whole frame within the server's msize that decodes as a reply (or an
//! `Rlerror` with an errno in `1..4096`); no reply carries the contents of
//! the file beside the share; when the connection ends, the file system
//! holds exactly the node references and handles it held before.

use std::io::{self, Read, Write};
use std::sync::OnceLock;

use avpfs_9p::{serve_connection, P9Options};
use p9_abi::{decode_reply, first_frame, Fid, Reply, Request, Tag, Tattach, Tversion, VERSION_9P2000_L};

/// What the file beside the share holds: no reply may contain it.
const SECRET: &[u8] = b"avpfs-9p-fuzz secret beside the share";

/// The largest msize the server agrees to.
const MAX_MSIZE: u32 = 1 << 17;

/// The client's bytes in, the server's bytes out.
struct MemStream<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl Read for MemStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for MemStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "passthrough")]
type Fs = avpfs_passthrough::PassthroughFs;
#[cfg(not(feature = "passthrough"))]
type Fs = crate::memfs::MemFs;

#[cfg(feature = "passthrough")]
fn make_fs() -> Fs {
    let dir = std::env::temp_dir().join(format!("avpfs-fuzz-9p-{}", std::process::id()));
    let share = dir.join("share");
    std::fs::create_dir_all(share.join("dir")).expect("the fuzz share");
    std::fs::write(dir.join("secret"), SECRET).expect("the secret beside the share");
    std::fs::write(share.join("file"), b"0123456789").expect("a file in the share");
    let cfg = avpfs_passthrough::Config { xattr: true, ..avpfs_passthrough::Config::new(&share) };
    avpfs_passthrough::PassthroughFs::new(cfg).expect("the passthrough")
}

#[cfg(not(feature = "passthrough"))]
fn make_fs() -> Fs {
    crate::memfs::MemFs::new()
}

fn fs() -> &'static Fs {
    static FS: OnceLock<Fs> = OnceLock::new();
    FS.get_or_init(make_fs)
}

#[cfg(feature = "passthrough")]
fn held(fs: &Fs) -> (usize, usize) {
    (fs.node_count(), fs.handle_count())
}

#[cfg(not(feature = "passthrough"))]
fn held(fs: &Fs) -> avpfs_server::Usage {
    avpfs_server::FileSystem::usage(fs)
}

/// The `Tversion` and `Tattach` a session starts with.
pub fn handshake() -> Vec<u8> {
    let mut out = Vec::new();
    Request::Version(Tversion { msize: 65536, version: VERSION_9P2000_L })
        .encode(Tag::NOTAG, 65536, &mut out)
        .expect("Tversion encodes");
    Request::Attach(Tattach { fid: Fid(0), afid: Fid::NOFID, uname: b"root", aname: b"", n_uname: 0 })
        .encode(Tag(0), 65536, &mut out)
        .expect("Tattach encodes");
    out
}

/// Seeds: each 9P2000.L request of the codec's seeds after the
/// handshake (flag 1), and the whole set as one session.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let codec = crate::p9::seeds();
    let mut out: Vec<(&'static str, Vec<u8>)> =
        codec.iter().map(|(name, data)| (*name, [[1u8].as_slice(), data].concat())).collect();
    let mut all = vec![1u8];
    for (_, data) in &codec {
        all.extend_from_slice(data);
    }
    out.push(("all-in-one-session", all));
    out
}

/// Serves one input and checks the invariants.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut input = Vec::new();
    if flags & 1 != 0 {
        input = handshake();
    }
    input.extend_from_slice(rest);
    let fs = fs();
    let before = held(fs);
    let options = P9Options { max_msize: MAX_MSIZE, max_fids: 256, ..P9Options::default() };
    let mut stream = MemStream { input: &input, output: Vec::new() };
    let _ = serve_connection(&mut stream, fs, &options);
    assert_eq!(held(fs), before, "the connection left references or handles behind");
    let mut out = &stream.output[..];
    while !out.is_empty() {
        let frame = first_frame(out, MAX_MSIZE).expect("a reply frame is sound").expect("a whole reply frame");
        let (_, reply) = decode_reply(frame, MAX_MSIZE).expect("a reply decodes");
        if let Reply::Lerror { ecode } = reply {
            assert!((1..4096).contains(&ecode), "errno {ecode}");
        }
        assert!(!frame.windows(SECRET.len()).any(|w| w == SECRET), "a reply carries the secret");
        out = &out[frame.len()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_replay() {
        for (_, seed) in crate::p9::seeds() {
            run(&[[1].as_slice(), &seed].concat());
            run(&[[0].as_slice(), &seed].concat());
        }
        run(&[1]);
        run(&[]);
    }
}
