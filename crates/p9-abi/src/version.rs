//! `Tversion`: the protocol version and the largest message (msize).

use thiserror::Error;

use crate::{HEADER_LEN, IOHDRSZ};

/// The version string of 9P2000.L.
pub const VERSION_9P2000_L: &[u8] = b"9P2000.L";
/// The version a server answers when it speaks none the client asked for.
pub const VERSION_UNKNOWN: &[u8] = b"unknown";

/// The smallest msize the Linux client accepts from a server (it fails
/// the mount below it); also the smallest this crate negotiates.
pub const MIN_MSIZE: u32 = 4096;

/// Why no msize can be agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MsizeError {
    /// The client's msize is below [`MIN_MSIZE`].
    #[error("client msize {client} is below the minimum of {min}", min = MIN_MSIZE)]
    TooSmall {
        /// What the client asked for.
        client: u32,
    },
}

/// The msize to answer: the client's, capped at the server's largest
/// (`server_max`, itself at least [`MIN_MSIZE`]). A client may ask for less
/// than the server offers, never more (the Linux client rejects a larger
/// answer as a protocol error).
pub fn negotiate_msize(client: u32, server_max: u32) -> Result<u32, MsizeError> {
    if client < MIN_MSIZE {
        return Err(MsizeError::TooSmall { client });
    }
    Ok(client.min(server_max.max(MIN_MSIZE)))
}

/// The version to answer a `Tversion`: 9P2000.L for exactly that string,
/// `unknown` for anything else (9P2000, 9P2000.u: the client then fails,
/// which is right, since this server answers only 9P2000.L messages).
pub fn negotiate_version(requested: &[u8]) -> &'static [u8] {
    if requested == VERSION_9P2000_L {
        VERSION_9P2000_L
    } else {
        VERSION_UNKNOWN
    }
}

/// The most data one `Rread` (or `Rreaddir`) can carry under `msize`:
/// clamp `Tread`'s and `Treaddir`'s count to it.
pub fn max_read_count(msize: u32) -> u32 {
    msize.saturating_sub(HEADER_LEN as u32 + 4)
}

/// The most data one `Twrite` can carry under `msize`.
pub fn max_write_count(msize: u32) -> u32 {
    msize.saturating_sub(crate::TWRITE_HEADER_LEN as u32)
}

/// The `iounit` to return in `Rlopen`/`Rlcreate` (0 would make the Linux
/// client use `msize - IOHDRSZ` itself): the most data per `Tread` or
/// `Twrite` the client will send.
pub fn default_iounit(msize: u32) -> u32 {
    msize.saturating_sub(IOHDRSZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msize() {
        assert_eq!(negotiate_msize(65536, 1 << 20), Ok(65536));
        assert_eq!(negotiate_msize(1 << 20, 262144), Ok(262144));
        assert_eq!(negotiate_msize(4096, 262144), Ok(4096));
        assert_eq!(negotiate_msize(4095, 262144), Err(MsizeError::TooSmall { client: 4095 }));
        assert_eq!(negotiate_msize(0, 262144), Err(MsizeError::TooSmall { client: 0 }));
        // A server maximum below the floor is raised to it.
        assert_eq!(negotiate_msize(8192, 100), Ok(MIN_MSIZE));
        assert_eq!(max_read_count(65536), 65525);
        assert_eq!(max_write_count(65536), 65513);
        assert_eq!(default_iounit(65536), 65512);
        assert_eq!(max_read_count(3), 0);
    }

    #[test]
    fn version() {
        assert_eq!(negotiate_version(b"9P2000.L"), VERSION_9P2000_L);
        assert_eq!(negotiate_version(b"9P2000.u"), VERSION_UNKNOWN);
        assert_eq!(negotiate_version(b"9P2000"), VERSION_UNKNOWN);
        assert_eq!(negotiate_version(b"9P2000.L.x"), VERSION_UNKNOWN);
        assert_eq!(negotiate_version(b""), VERSION_UNKNOWN);
    }
}
