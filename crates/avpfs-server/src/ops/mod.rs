//! The per-opcode methods of [`Server`](crate::server::Server), by concern.
//! `Server::dispatch` frames a request and calls one of these from its
//! match on the opcode; each decodes its arguments, calls the
//! [`FileSystem`](crate::filesystem::FileSystem) and encodes the reply.
//!
//! | module | opcodes |
//! |---|---|
//! | `session` | INIT DESTROY INTERRUPT (NOTIFY_REPLY takes no work: `dispatch` answers it) |
//! | `entries` | LOOKUP FORGET BATCH_FORGET MKNOD MKDIR SYMLINK LINK UNLINK RMDIR RENAME RENAME2 READLINK |
//! | `files` | OPEN CREATE TMPFILE READ WRITE FLUSH RELEASE FSYNC FALLOCATE LSEEK COPY_FILE_RANGE |
//! | `attrs` | GETATTR SETATTR STATX ACCESS STATFS SYNCFS |
//! | `xattrs` | SETXATTR GETXATTR LISTXATTR REMOVEXATTR |
//! | `dirs` | OPENDIR READDIR READDIRPLUS RELEASEDIR FSYNCDIR |
//! | `locks` | GETLK SETLK SETLKW |
//! | `dax` | SETUPMAPPING REMOVEMAPPING, and FUSE_ATTR_DAX on every entry and attribute reply |

use fuse_abi as abi;

use crate::filesystem::{Context, NodeId, OpenReply};
use crate::reply::reply_ok;
use crate::server::Handled;
use crate::transport::Writer;

pub(crate) mod attrs;
pub(crate) mod dax;
pub(crate) mod dirs;
pub(crate) mod entries;
pub(crate) mod files;
pub(crate) mod locks;
pub(crate) mod session;
pub(crate) mod xattrs;

/// The log target of everything the server logs, wherever the code is.
pub(crate) const LOG_TARGET: &str = "avpfs_server::server";

/// A request after framing: its header, caller and node. The arguments
/// are decoded separately, from an [`Args`](crate::args::Args).
pub(crate) struct Request<'a> {
    pub(crate) h: &'a abi::InHeader,
    pub(crate) ctx: Context,
    pub(crate) node: NodeId,
}

impl Request<'_> {
    /// Writes a successful reply of `parts`.
    #[inline]
    pub(crate) fn ok(&self, w: &mut dyn Writer, parts: &[&[u8]]) -> Result<Handled, i32> {
        reply(w, self.h.unique, parts)
    }

    /// Writes a successful reply without a body.
    #[inline]
    pub(crate) fn empty(&self, w: &mut dyn Writer) -> Result<Handled, i32> {
        self.ok(w, &[])
    }
}

/// Writes a successful reply of `parts` to request `unique`; `ERANGE` when
/// it does not fit the reply buffer.
#[inline]
pub(crate) fn reply(w: &mut dyn Writer, unique: u64, parts: &[&[u8]]) -> Result<Handled, i32> {
    reply_ok(w, unique, parts).map(Handled::Reply).map_err(|_| libc::ERANGE)
}

/// Encodes an open or opendir reply.
#[inline]
pub(crate) fn open_out(o: OpenReply) -> abi::OpenOut {
    abi::OpenOut { fh: o.handle.0, open_flags: o.open_flags, backing_id: 0 }
}
