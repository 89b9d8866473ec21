//! Live migration: a session's state, saved on the source and restored on
//! the destination (the vhost-user device-state channel carries the
//! bytes). The server adds what the client negotiated in FUSE_INIT; the
//! file system adds its nodes and open handles
//! ([`FileSystem::save_state`](crate::FileSystem::save_state)).

use std::io;

/// Why a state could not be saved or restored. Nothing is changed on the
/// side that reports it: a source keeps serving, a destination starts no
/// session from a state it refused.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The file system keeps no migratable state.
    #[error("this file system cannot migrate its state")]
    Unsupported,
    /// The bytes are not an avpfs migration state, or are damaged or cut.
    #[error("the migration state is damaged: {0}")]
    Corrupt(String),
    /// The state was written by a newer avpfs in a format this one cannot read.
    #[error("the migration state has format version {found}; this avpfs reads up to {supported}")]
    NewerVersion {
        /// The state's version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The state is sound but cannot be moved or restored (a lock is held, a
    /// file vanished or changed identity, a path leads outside the share).
    #[error("migration refused: {0}")]
    Refused(String),
    /// Reading or writing the state failed.
    #[error("migration I/O: {0}")]
    Io(#[from] io::Error),
}

/// The first bytes of a state [`Server::save_state`](crate::Server::save_state) writes.
pub const STATE_MAGIC: [u8; 8] = *b"AVPFSMIG";
/// The newest format version of the state this build writes and reads.
pub const STATE_VERSION: u32 = 1;
/// Bytes of the envelope's header: magic, version (u32), body length
/// (u64) and the body's FNV-1a-64 checksum (u64), little-endian.
pub const STATE_HEADER_SIZE: usize = 8 + 4 + 8 + 8;

/// FNV-1a, 64 bit: the checksum of a state's body (against damage in
/// transit or storage, not against a forger: the destination checks what
/// it restores on its own).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Wraps `body` in the envelope: header, then the body.
pub fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(STATE_HEADER_SIZE + body.len());
    out.extend_from_slice(&STATE_MAGIC);
    out.extend_from_slice(&STATE_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&fnv1a64(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Checks the envelope and returns its body: `Corrupt` for a wrong magic,
/// a cut or over-long state or a bad checksum, `NewerVersion` for a
/// format this build cannot read.
pub fn unseal(state: &[u8]) -> Result<&[u8], MigrationError> {
    let mut d = Decoder::new(state);
    let magic = d.array::<8>().map_err(|_| corrupt("shorter than its header"))?;
    if magic != STATE_MAGIC {
        return Err(corrupt("not an avpfs migration state (wrong magic)"));
    }
    // The version comes before anything a newer format might lay out anew.
    let version = d.u32().map_err(|_| corrupt("shorter than its header"))?;
    check_version(version, STATE_VERSION)?;
    let len = d.u64().map_err(|_| corrupt("shorter than its header"))?;
    let sum = d.u64().map_err(|_| corrupt("shorter than its header"))?;
    let body = d.rest();
    if (body.len() as u64) < len {
        return Err(corrupt(format!("truncated: {} of {len} body bytes", body.len())));
    }
    if body.len() as u64 != len {
        return Err(corrupt(format!("{} bytes after the body", body.len() as u64 - len)));
    }
    if fnv1a64(body) != sum {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(body)
}

/// `Corrupt` for version 0, `NewerVersion` beyond `supported`.
pub fn check_version(found: u32, supported: u32) -> Result<(), MigrationError> {
    match found {
        0 => Err(corrupt("format version 0")),
        v if v > supported => Err(MigrationError::NewerVersion { found: v, supported }),
        _ => Ok(()),
    }
}

/// A `Corrupt` error.
pub fn corrupt(why: impl Into<String>) -> MigrationError {
    MigrationError::Corrupt(why.into())
}

/// Writes the fields of a state: little-endian integers and
/// length-prefixed byte strings. The file systems lay out their own parts
/// with it.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An empty state.
    pub fn new() -> Self {
        Encoder::default()
    }

    /// A four-byte tag and a format version: the start of a part.
    pub fn header(&mut self, tag: &[u8; 4], version: u32) {
        self.buf.extend_from_slice(tag);
        self.u32(version);
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A boolean, as one byte (0 or 1).
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// A u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// An i32.
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A byte string, after its length (u64).
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// The state written so far.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads what an [`Encoder`] wrote. Every read checks the length left: a
/// cut or damaged state yields `Corrupt`, never a panic or a huge
/// allocation.
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MigrationError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(corrupt(format!("truncated at byte {} (wanted {n} more)", self.pos))),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MigrationError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// A part's tag and version: `Corrupt` for another tag,
    /// `NewerVersion` beyond `supported`. Returns the version.
    pub fn header(&mut self, tag: &[u8; 4], supported: u32) -> Result<u32, MigrationError> {
        let found = self.array::<4>()?;
        if &found != tag {
            return Err(corrupt(format!(
                "expected a part tagged {:?}, found {:?}",
                String::from_utf8_lossy(tag),
                String::from_utf8_lossy(&found)
            )));
        }
        let version = self.u32()?;
        check_version(version, supported)?;
        Ok(version)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, MigrationError> {
        Ok(self.take(1)?[0])
    }

    /// A boolean (`Corrupt` for a byte other than 0 and 1).
    pub fn bool(&mut self) -> Result<bool, MigrationError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(corrupt(format!("boolean byte {b}"))),
        }
    }

    /// A u32.
    pub fn u32(&mut self) -> Result<u32, MigrationError> {
        self.array().map(u32::from_le_bytes)
    }

    /// A u64.
    pub fn u64(&mut self) -> Result<u64, MigrationError> {
        self.array().map(u64::from_le_bytes)
    }

    /// An i32.
    pub fn i32(&mut self) -> Result<i32, MigrationError> {
        self.array().map(i32::from_le_bytes)
    }

    /// A byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8], MigrationError> {
        let len = self.u64()?;
        if len > max as u64 {
            return Err(corrupt(format!("a string of {len} bytes (at most {max})")));
        }
        self.take(len as usize)
    }

    /// A count of items that take at least `min_size` bytes each: `Corrupt`
    /// when that many cannot fit in what is left (so that a damaged count
    /// never makes the reader reserve memory for it).
    pub fn count(&mut self, min_size: usize) -> Result<usize, MigrationError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_size.max(1) as u64) > left {
            return Err(corrupt(format!("{n} items cannot fit in {left} bytes")));
        }
        Ok(n as usize)
    }

    /// What is left, all of it.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// Checks that everything was read.
    pub fn end(&self) -> Result<(), MigrationError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(corrupt(format!("{n} bytes left over"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_refusals() {
        let sealed = seal(b"body");
        assert_eq!(unseal(&sealed).unwrap(), b"body");
        assert_eq!(sealed.len(), STATE_HEADER_SIZE + 4);
        // Every cut is refused as corrupt.
        for n in 0..sealed.len() {
            assert!(matches!(unseal(&sealed[..n]), Err(MigrationError::Corrupt(_))), "cut at {n}");
        }
        let mut long = sealed.clone();
        long.push(0);
        assert!(matches!(unseal(&long), Err(MigrationError::Corrupt(_))));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(unseal(&flipped), Err(MigrationError::Corrupt(_))));
        let mut magic = sealed.clone();
        magic[0] = b'X';
        assert!(matches!(unseal(&magic), Err(MigrationError::Corrupt(_))));
        let mut newer = sealed.clone();
        newer[8..12].copy_from_slice(&(STATE_VERSION + 1).to_le_bytes());
        assert!(matches!(
            unseal(&newer),
            Err(MigrationError::NewerVersion { found, supported }) if found == STATE_VERSION + 1 && supported == STATE_VERSION
        ));
    }

    #[test]
    fn decoder_checks_every_length() {
        let mut e = Encoder::new();
        e.header(b"TEST", 2);
        e.bytes(b"abc");
        e.u64(u64::MAX);
        e.bool(true);
        let b = e.finish();
        let mut d = Decoder::new(&b);
        assert_eq!(d.header(b"TEST", 2).unwrap(), 2);
        assert!(matches!(d.bytes(2), Err(MigrationError::Corrupt(_))), "longer than allowed");
        let mut d = Decoder::new(&b);
        d.header(b"TEST", 2).unwrap();
        assert_eq!(d.bytes(3).unwrap(), b"abc");
        // u64::MAX items of one byte each cannot fit.
        assert!(matches!(d.count(1), Err(MigrationError::Corrupt(_))));
        let mut d = Decoder::new(&b);
        assert!(matches!(d.header(b"TEST", 1), Err(MigrationError::NewerVersion { found: 2, supported: 1 })));
        let mut d = Decoder::new(&b);
        assert!(matches!(d.header(b"ELSE", 2), Err(MigrationError::Corrupt(_))));
        let mut d = Decoder::new(&b[..b.len() - 1]);
        d.header(b"TEST", 2).unwrap();
        d.bytes(3).unwrap();
        d.u64().unwrap();
        assert!(matches!(d.bool(), Err(MigrationError::Corrupt(_))));
    }
}
