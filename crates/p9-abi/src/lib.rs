//! The 9P2000.L wire protocol, as the Linux 9p client (`fs/9p`, `net/9p`)
//! speaks it: message types, the typed body of every request and reply,
//! qids, `getattr`/`setattr` structures, directory entries, locks, open
//! flags, a decoder that checks every length field and an encoder.
//!
//! This crate does no I/O and has no `unsafe` code. It plays the role for
//! 9P that `fuse-abi` plays for FUSE: the server (fid table, dispatch onto
//! `avpfs_server::FileSystem`) and the listeners are built on it.
//!
//! # Frames
//!
//! Every message is `size[4] type[1] tag[2] body`, little endian, where
//! `size` counts the whole frame including itself, and never exceeds the
//! negotiated `msize`. Strings are `len[2]` and `len` bytes, without NUL.
//!
//! - Reading a stream: read 4 bytes, check them with [`frame_size`] (which
//!   refuses a size below the header or above `msize` *before* anything is
//!   allocated), read the rest, then [`decode_request`]. [`first_frame`]
//!   does the same on a buffer that may hold several frames.
//! - A [`DecodeError`] says what to do: [`DecodeError::action`] is either
//!   an `Rlerror` on the request's tag (the frame was sound, its body was
//!   not) or closing the connection (framing is lost).
//! - Replies are encoded with [`Reply::encode`]. The two bulk replies have
//!   a path without a copy of their payload: [`rread_header`] gives the 11
//!   bytes to send before the data (vectored I/O, or read the data into a
//!   buffer after [`RREAD_HEADER_LEN`] bytes and fill them with
//!   [`put_rread_header`]); [`DirentWriter`] lays out `Rreaddir` entries in
//!   the frame it returns. `Twrite`'s payload is a slice of the frame.
//!
//! # What the Linux client sends
//!
//! With `version=9p2000.L` the Linux client sends exactly the requests of
//! [`Request`]. It never sends `Tauth` (it attaches with `afid` =
//! [`Fid::NOFID`]); other clients may, and a server without authentication
//! answers it with `Rlerror` (the 9P rule: "if the server does not require
//! authentication, it returns Rerror to the Tauth"). The 9P2000 and
//! 9P2000.u requests `Topen`, `Tcreate`, `Tstat` and `Twstat` are decoded
//! to [`BodyError::NotDotL`], which the server answers with
//! `Rlerror(EOPNOTSUPP)`: a 9P2000.L client uses `Tlopen`, `Tlcreate`,
//! `Tgetattr` and `Tsetattr` instead, and a server that answers
//! `Tversion` with `9P2000.L` (or `unknown`) never agreed to the others.
//! Errors are `Rlerror` only: a 9P2000.L client reads any error reply
//! (`Rerror` included) as `Rlerror`'s errno, so a server never sends
//! `Rerror`.
//!
//! The codec keeps no session state: that `Tversion` comes first (and
//! ends every outstanding request and fid) is the server's to enforce;
//! it decodes that first frame with its own largest msize.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod decode;
mod encode;
mod message;
mod msg_type;
mod name;
pub mod open_flags;
mod types;
mod version;

pub use decode::{decode_reply, decode_request, first_frame, frame_size, Action, BodyError, DecodeError, FrameError};
pub use encode::{
    put_rread_header, rread_header, twrite_header, DirentWriter, EncodeError, RREAD_HEADER_LEN, TWRITE_HEADER_LEN,
};
pub use message::*;
pub use msg_type::MsgType;
pub use name::{Name, NameError, WalkList, WalkNames, WalkQids};
pub use types::*;
pub use version::{
    default_iounit, max_read_count, max_write_count, negotiate_msize, negotiate_version, MsizeError, MIN_MSIZE,
    VERSION_9P2000_L, VERSION_UNKNOWN,
};

/// The size of the frame header: `size[4] type[1] tag[2]`.
pub const HEADER_LEN: usize = 7;

/// The largest number of names in one `Twalk` and qids in one `Rwalk`
/// (`P9_MAXWELEM`).
pub const MAXWELEM: usize = 16;

/// The room the Linux client keeps for the header of a `Twrite` or `Rread`
/// (`P9_IOHDRSZ`): it sends at most `msize - IOHDRSZ` bytes of data when
/// the server's `iounit` is 0.
pub const IOHDRSZ: u32 = 24;

/// The size of a qid on the wire: `type[1] version[4] path[8]`.
pub const QID_LEN: usize = 13;
