//! POSIX and flock lock opcodes: GETLK, SETLK, SETLKW.

use fuse_abi::{self as abi, opcode};
use zerocopy::IntoBytes;

use super::Request;
use crate::args::Args;
use crate::filesystem::{FileSystem, Handle, LockOwner, LockRequest};
use crate::server::{errno, Handled, Server};
use crate::transport::Writer;

impl<F: FileSystem> Server<F> {
    pub(crate) fn do_getlk(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let lk: abi::LkIn = a.fetch()?;
        let lock = self.fs.getlk(&rq.ctx, rq.node, lock_request(&lk)).map_err(errno)?;
        rq.ok(w, &[abi::LkOut { lk: lock }.as_bytes()])
    }

    /// SETLK and SETLKW; a SETLKW can be interrupted while it waits.
    pub(crate) fn do_setlk(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let lk: abi::LkIn = a.fetch()?;
        let wait = rq.h.opcode == opcode::SETLKW;
        let res = if wait {
            let _guard = self.interrupts.register(rq.h.unique);
            self.fs.setlk(&rq.ctx, rq.node, lock_request(&lk), true)
        } else {
            self.fs.setlk(&rq.ctx, rq.node, lock_request(&lk), false)
        };
        res.map_err(errno)?;
        rq.empty(w)
    }
}

fn lock_request(lk: &abi::LkIn) -> LockRequest {
    LockRequest {
        handle: Handle(lk.fh),
        owner: LockOwner(lk.owner),
        lock: lk.lk,
        flock: lk.lk_flags & abi::FUSE_LK_FLOCK != 0,
    }
}
