//! [`Server`]: decodes one FUSE request from a [`Reader`], calls the
//! [`FileSystem`], and encodes the reply into a [`Writer`].
//!
//! This module frames requests (length fields, the FUSE_INIT gate, room for
//! the reply, the body and its extensions) and holds the one match on the
//! opcode, in `Server::dispatch`. The method of each opcode, `do_<opcode>`,
//! is in the `ops` module of its concern: `ops/entries.rs`, `ops/files.rs`,
//! `ops/attrs.rs`, `ops/xattrs.rs`, `ops/dirs.rs`, `ops/locks.rs` and
//! `ops/session.rs`, and `ops/dax.rs` (over the window state of `dax.rs`).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fuse_abi::{self as abi, opcode};
use log::debug;
use zerocopy::FromBytes;

use crate::args::{self, Args};
use crate::dax::{Dax, DaxWindow};
use crate::filesystem::{Context, FileSystem, NodeId};
use crate::interrupt::Interrupts;
use crate::migration::{self, Decoder, Encoder, MigrationError};
pub use crate::ops::attrs::setattr_in;
use crate::ops::Request;
use crate::reply::{reply_error, OUT_HEADER_SIZE};
use crate::stats::Stats;
use crate::transport::{Reader, Writer};

/// Size of the request header.
pub const IN_HEADER_SIZE: usize = core::mem::size_of::<abi::InHeader>();
/// Largest WRITE payload we accept (and announce as max_write).
pub const MAX_WRITE: u32 = 1 << 20;
/// Largest request body other than a WRITE payload (SETXATTR value + name,
/// BATCH_FORGET lists).
pub const MAX_ARGS: usize = 256 * 1024;
/// Request bodies up to this size are decoded from a stack buffer.
const SMALL_ARGS: usize = 1024;
/// Size of a buffer that holds any request: header, WRITE header, payload, slack.
pub const MAX_REQUEST_SIZE: usize = MAX_WRITE as usize + 4096;

/// Errors that leave a request without any reply.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is shorter than its header: there is no `unique` to reply to.
    #[error("request of {0} bytes is shorter than the FUSE header")]
    ShortHeader(usize),
    /// Writing the reply failed (the reply buffer is too small even for an error).
    #[error("cannot write the reply: {0}")]
    Reply(#[source] io::Error),
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// A reply of this many bytes was written.
    Reply(usize),
    /// The request takes no reply (FORGET, BATCH_FORGET, INTERRUPT, NOTIFY_REPLY).
    NoReply,
}

/// The tag and version of the server's part of a migration state.
const SESSION_TAG: &[u8; 4] = b"SESS";
const SESSION_VERSION: u32 = 1;

/// The protocol state agreed in FUSE_INIT.
#[derive(Debug, Default)]
pub(crate) struct Session {
    pub(crate) initialized: AtomicBool,
    pub(crate) minor: AtomicU32,
    pub(crate) flags: AtomicU64,
}

/// A FUSE protocol server over a file system `F`, shared by all worker threads.
pub struct Server<F: FileSystem> {
    pub(crate) fs: F,
    pub(crate) session: Session,
    pub(crate) interrupts: Interrupts,
    pub(crate) dax: Dax,
    destroy_lock: Mutex<()>,
    stats: Stats,
}

impl<F: FileSystem> Server<F> {
    /// Serves `fs`.
    pub fn new(fs: F) -> Self {
        Server {
            fs,
            session: Session::default(),
            interrupts: Interrupts::new(),
            dax: Dax::default(),
            destroy_lock: Mutex::new(()),
            stats: Stats::default(),
        }
    }

    /// Live migration, source side: what the client negotiated in
    /// FUSE_INIT and the file system's state
    /// ([`FileSystem::save_state`]), as one versioned blob (the layout is
    /// in `docs/migration.md`, "State format"). Called with the device
    /// stopped. Refused while the DAX window holds mappings (they are not
    /// moved). Nothing changes: on any error the source keeps serving.
    pub fn save_state(&self) -> Result<Vec<u8>, MigrationError> {
        let mappings = self.dax.mapping_count();
        if mappings > 0 {
            return Err(MigrationError::Refused(format!(
                "the DAX window holds {mappings} mappings, which are not migrated"
            )));
        }
        let fs = self.fs.save_state()?;
        let mut e = Encoder::new();
        e.header(SESSION_TAG, SESSION_VERSION);
        e.bool(self.is_initialized());
        e.u32(self.session.minor.load(Ordering::Acquire));
        e.u64(self.negotiated_flags());
        e.bytes(&fs);
        Ok(migration::seal(&e.finish()))
    }

    /// Live migration, destination side: restores what
    /// [`Server::save_state`] wrote, before the client's first request
    /// (the client does not send FUSE_INIT again: the session is
    /// initialized with the saved minor version and flags). The whole
    /// state is checked (envelope, checksum, version, layout) before the
    /// file system is asked to restore its part, and the session is
    /// changed only once the file system took it; a session already
    /// started is refused.
    pub fn load_state(&self, state: &[u8]) -> Result<(), MigrationError> {
        let body = migration::unseal(state)?;
        let mut d = Decoder::new(body);
        d.header(SESSION_TAG, SESSION_VERSION)?;
        let initialized = d.bool()?;
        let minor = d.u32()?;
        let flags = d.u64()?;
        let fs = d.bytes(usize::MAX)?;
        d.end()?;
        if initialized && minor > abi::KERNEL_MINOR_VERSION {
            return Err(MigrationError::Refused(format!(
                "the client negotiated protocol 7.{minor}; this avpfs speaks up to 7.{}",
                abi::KERNEL_MINOR_VERSION
            )));
        }
        let _g = self.destroy_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_initialized() {
            return Err(MigrationError::Refused("the session has already started".into()));
        }
        self.fs.load_state(fs)?;
        if initialized {
            self.session.minor.store(minor, Ordering::Release);
            self.session.flags.store(flags, Ordering::Release);
            self.session.initialized.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// The request statistics of this session (counted from its start, over
    /// reconnects).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The FUSE minor version the client negotiated (0 before FUSE_INIT).
    pub fn negotiated_minor(&self) -> u32 {
        if self.is_initialized() {
            self.session.minor.load(Ordering::Acquire)
        } else {
            0
        }
    }

    /// The file system being served.
    pub fn fs(&self) -> &F {
        &self.fs
    }

    /// Whether FUSE_INIT has completed.
    pub fn is_initialized(&self) -> bool {
        self.session.initialized.load(Ordering::Acquire)
    }

    /// The negotiated FUSE_INIT flags (64 bit).
    pub fn negotiated_flags(&self) -> u64 {
        self.session.flags.load(Ordering::Acquire)
    }

    /// The client went away (device reset, disconnect, unmount): drop every
    /// reference and handle it held, and wait for a new FUSE_INIT.
    pub fn reset(&self) {
        let _g = self.destroy_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.session.initialized.store(false, Ordering::Release);
        // The mappings go before the handles they were made through.
        self.dax.clear();
        self.fs.destroy();
    }

    /// Lends the session a DAX window (a transport's shared-memory region),
    /// or takes it back with `None`. FUSE_INIT announces MAP_ALIGNMENT and
    /// SETUPMAPPING/REMOVEMAPPING work only while one is set; the mappings
    /// of a previous window are forgotten.
    pub fn set_dax_window(&self, window: Option<Arc<dyn DaxWindow>>) {
        self.dax.set_window(window);
    }

    /// Whether a DAX window is set.
    pub fn has_dax_window(&self) -> bool {
        self.dax.window().is_some()
    }

    /// How many mappings the DAX window holds now.
    pub fn dax_mappings(&self) -> usize {
        self.dax.mapping_count()
    }

    /// Handles one request read from `r`, writing the reply to `w`.
    pub fn handle_message(&self, r: &mut dyn Reader, w: &mut dyn Writer) -> Result<Handled, Error> {
        let total = r.remaining();
        let mut hb = [0u8; IN_HEADER_SIZE];
        r.read_exact(&mut hb).map_err(|_| Error::ShortHeader(total))?;
        let h = abi::InHeader::read_from_bytes(&hb[..]).map_err(|_| Error::ShortHeader(total))?;
        debug!("<- {} unique={} node={} len={}", opcode::name(h.opcode), h.unique, h.nodeid, h.len);
        let start = self.stats.enabled().then(avpfs_sys::clock::ticks);
        let result = self.dispatch(&h, total, r, w);
        let (handled, errno) = match result {
            Ok(h) => (h, 0),
            Err(errno) => {
                if matches!(h.opcode, opcode::FORGET | opcode::BATCH_FORGET | opcode::INTERRUPT | opcode::NOTIFY_REPLY)
                {
                    crate::guest_warn!("dropping malformed {} request: errno {errno}", opcode::name(h.opcode));
                    (Handled::NoReply, errno)
                } else {
                    (Handled::Reply(reply_error(w, h.unique, errno).map_err(Error::Reply)?), errno)
                }
            }
        };
        if let Some(start) = start {
            let out = match handled {
                Handled::Reply(n) => n,
                Handled::NoReply => 0,
            };
            let elapsed = avpfs_sys::clock::to_duration(avpfs_sys::clock::ticks().wrapping_sub(start));
            self.stats.record(h.opcode, errno, total, out, elapsed);
        }
        Ok(handled)
    }

    /// Frames the request, reads its body, and calls the method of its
    /// opcode, found in the `ops` module of its concern.
    fn dispatch(
        &self,
        h: &abi::InHeader,
        total: usize,
        r: &mut dyn Reader,
        w: &mut dyn Writer,
    ) -> Result<Handled, i32> {
        let (body_len, args_len) = self.check_frame(h, total, w)?;
        if h.opcode == opcode::WRITE {
            // The file system reads the payload from `r` itself.
            return self.do_write(h, args_len, r, w);
        }
        if body_len > MAX_ARGS {
            return Err(libc::E2BIG);
        }
        // Most requests (a struct and a name or two) fit on the stack: no
        // allocation on the hot path.
        let mut small = [0u8; SMALL_ARGS];
        let mut large = Vec::new();
        let body: &mut [u8] = if body_len <= SMALL_ARGS {
            &mut small[..body_len]
        } else {
            large.resize(body_len, 0);
            &mut large
        };
        r.read_exact(body).map_err(|_| libc::EINVAL)?;
        let (arg_bytes, ext_bytes) = body.split_at(args_len);
        let groups = if ext_bytes.is_empty() { None } else { args::parse_extensions(ext_bytes)? };
        let ctx = Context { uid: h.uid, gid: h.gid, pid: h.pid, groups };
        let rq = &Request { h, ctx, node: NodeId(h.nodeid) };
        let a = &mut Args::new(arg_bytes);

        match h.opcode {
            // ops/session.rs
            opcode::INIT => self.do_init(rq, a, w),
            opcode::DESTROY => self.do_destroy(rq, w),
            opcode::INTERRUPT => self.do_interrupt(a),
            opcode::NOTIFY_REPLY => Ok(Handled::NoReply),
            // ops/entries.rs
            opcode::LOOKUP => self.do_lookup(rq, a, w),
            opcode::FORGET => self.do_forget(rq, a),
            opcode::BATCH_FORGET => self.do_batch_forget(a),
            opcode::MKNOD => self.do_mknod(rq, a, w),
            opcode::MKDIR => self.do_mkdir(rq, a, w),
            opcode::SYMLINK => self.do_symlink(rq, a, w),
            opcode::LINK => self.do_link(rq, a, w),
            opcode::UNLINK => self.do_unlink(rq, a, w),
            opcode::RMDIR => self.do_rmdir(rq, a, w),
            opcode::RENAME | opcode::RENAME2 => self.do_rename(rq, a, w),
            opcode::READLINK => self.do_readlink(rq, w),
            // ops/files.rs (and WRITE, above: it is served before its body is read)
            opcode::OPEN => self.do_open(rq, a, w),
            opcode::CREATE => self.do_create(rq, a, w),
            opcode::TMPFILE => self.do_tmpfile(rq, a, w),
            opcode::READ => self.do_read(rq, a, w),
            opcode::FLUSH => self.do_flush(rq, a, w),
            opcode::RELEASE => self.do_release(rq, a, w),
            opcode::FSYNC => self.do_fsync(rq, a, w),
            opcode::FALLOCATE => self.do_fallocate(rq, a, w),
            opcode::LSEEK => self.do_lseek(rq, a, w),
            opcode::COPY_FILE_RANGE => self.do_copy_file_range(rq, a, w),
            // ops/attrs.rs
            opcode::GETATTR => self.do_getattr(rq, a, w),
            opcode::SETATTR => self.do_setattr(rq, a, w),
            opcode::STATX => self.do_statx(rq, a, w),
            opcode::ACCESS => self.do_access(rq, a, w),
            opcode::STATFS => self.do_statfs(rq, w),
            opcode::SYNCFS => self.do_syncfs(rq, a, w),
            // ops/xattrs.rs
            opcode::SETXATTR => self.do_setxattr(rq, a, w),
            opcode::GETXATTR => self.do_getxattr(rq, a, w),
            opcode::LISTXATTR => self.do_listxattr(rq, a, w),
            opcode::REMOVEXATTR => self.do_removexattr(rq, a, w),
            // ops/dirs.rs
            opcode::OPENDIR => self.do_opendir(rq, a, w),
            opcode::READDIR | opcode::READDIRPLUS => self.do_readdir(rq, a, w),
            opcode::RELEASEDIR => self.do_releasedir(rq, a, w),
            opcode::FSYNCDIR => self.do_fsyncdir(rq, a, w),
            // ops/locks.rs
            opcode::GETLK => self.do_getlk(rq, a, w),
            opcode::SETLK | opcode::SETLKW => self.do_setlk(rq, a, w),
            // ops/dax.rs
            opcode::SETUPMAPPING => self.do_setupmapping(rq, a, w),
            opcode::REMOVEMAPPING => self.do_removemapping(rq, a, w),
            other => unsupported(other),
        }
    }

    /// Checks the framing of a request before any of it is decoded: its
    /// length fields, that FUSE_INIT came first, and that a reply of fixed
    /// size fits `w`. Returns the length of the body and of its arguments
    /// (the body without the extensions).
    #[inline]
    fn check_frame(&self, h: &abi::InHeader, total: usize, w: &dyn Writer) -> Result<(usize, usize), i32> {
        let len = h.len as usize;
        if len < IN_HEADER_SIZE || len > total {
            crate::guest_warn!(
                "{}: length field {} does not match the request size {}",
                opcode::name(h.opcode),
                len,
                total
            );
            return Err(libc::EINVAL);
        }
        let body_len = len - IN_HEADER_SIZE;
        let ext_len = h.total_extlen as usize * 8;
        let args_len = body_len.checked_sub(ext_len).ok_or(libc::EINVAL)?;

        if h.opcode != opcode::INIT && !self.is_initialized() {
            return Err(libc::EIO);
        }

        // A reply of known size must fit before the operation runs: the
        // client learns of a reference or a handle only through the reply.
        if let Some(size) = fixed_reply_size(h.opcode) {
            if w.available() < OUT_HEADER_SIZE + size {
                return Err(libc::ERANGE);
            }
        }
        Ok((body_len, args_len))
    }
}

fn unsupported(op: u32) -> Result<Handled, i32> {
    debug!("unsupported opcode {op} ({})", opcode::name(op));
    Err(libc::ENOSYS)
}

/// The size of the reply body of opcodes whose successful reply has a fixed
/// size (`None` for variable replies and for requests without a reply).
pub fn fixed_reply_size(op: u32) -> Option<usize> {
    use core::mem::size_of;
    let entry = size_of::<abi::EntryOut>();
    let open = size_of::<abi::OpenOut>();
    Some(match op {
        opcode::LOOKUP | opcode::MKNOD | opcode::MKDIR | opcode::SYMLINK | opcode::LINK => entry,
        opcode::CREATE | opcode::TMPFILE => entry + open,
        opcode::OPEN | opcode::OPENDIR => open,
        opcode::GETATTR | opcode::SETATTR => size_of::<abi::AttrOut>(),
        opcode::WRITE | opcode::COPY_FILE_RANGE => size_of::<abi::WriteOut>(),
        opcode::STATFS => size_of::<abi::StatfsOut>(),
        opcode::GETLK => size_of::<abi::LkOut>(),
        opcode::LSEEK => size_of::<abi::LseekOut>(),
        opcode::STATX => size_of::<abi::StatxOut>(),
        opcode::INIT => size_of::<abi::InitOut>(),
        opcode::SETUPMAPPING | opcode::REMOVEMAPPING => 0,
        opcode::UNLINK
        | opcode::RMDIR
        | opcode::RENAME
        | opcode::RENAME2
        | opcode::RELEASE
        | opcode::RELEASEDIR
        | opcode::FSYNC
        | opcode::FSYNCDIR
        | opcode::FLUSH
        | opcode::SETXATTR
        | opcode::REMOVEXATTR
        | opcode::SETLK
        | opcode::SETLKW
        | opcode::ACCESS
        | opcode::FALLOCATE
        | opcode::SYNCFS
        | opcode::DESTROY => 0,
        _ => return None,
    })
}

/// The errno of an I/O error (EIO when it carries none).
pub fn errno(e: io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}
