//! Session opcodes: INIT, DESTROY and INTERRUPT.

use std::sync::atomic::Ordering;

use fuse_abi::{self as abi, init_flags as init};
use log::{info, warn};
use zerocopy::IntoBytes;

use super::{Request, LOG_TARGET};
use crate::args::Args;
use crate::filesystem::{FileSystem, InitOptions};
use crate::server::{errno, Handled, Server, MAX_WRITE};
use crate::transport::Writer;

impl<F: FileSystem> Server<F> {
    pub(crate) fn do_init(&self, rq: &Request<'_>, a: &mut Args<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        let i: abi::InitIn = a.fetch_prefix(abi::INIT_IN_COMPAT_SIZE.max(a.rest().len()))?;
        if i.major < abi::KERNEL_VERSION {
            warn!(target: LOG_TARGET, "FUSE_INIT: unsupported major version {}", i.major);
            return Err(libc::EPROTO);
        }
        let mut out =
            abi::InitOut { major: abi::KERNEL_VERSION, minor: abi::KERNEL_MINOR_VERSION, ..Default::default() };
        if i.major > abi::KERNEL_VERSION {
            // The client will retry with our major version.
            return rq.ok(w, &[out.as_bytes()]);
        }
        if i.minor < abi::MIN_KERNEL_MINOR_VERSION {
            warn!(
                target: LOG_TARGET,
                "FUSE_INIT: protocol 7.{} is older than 7.{}",
                i.minor,
                abi::MIN_KERNEL_MINOR_VERSION
            );
            return Err(libc::EPROTO);
        }
        let mut client = u64::from(i.flags);
        if client & init::INIT_EXT != 0 {
            client |= u64::from(i.flags2) << 32;
        }
        if self.is_initialized() {
            // A second FUSE_INIT without DESTROY: the guest rebooted. Drop
            // everything the previous session held before starting anew.
            info!(target: LOG_TARGET, "FUSE_INIT on an initialized session: resetting");
            self.reset();
        }
        let minor = i.minor.min(abi::KERNEL_MINOR_VERSION);
        let wanted = self.fs.init(InitOptions { minor, client_flags: client }).map_err(errno)?;
        let mut ours = init::INIT_EXT | init::MAX_PAGES | init::BIG_WRITES;
        let dax_flags = init::MAP_ALIGNMENT | init::HAS_INODE_DAX;
        let wanted = if self.dax.window().is_some() {
            ours |= dax_flags;
            wanted
        } else {
            // Without a window neither may be announced, whatever the file
            // system wants.
            wanted & !dax_flags
        };
        let enabled = (wanted | ours) & client;
        out.minor = minor;
        out.max_readahead = i.max_readahead;
        out.flags = enabled as u32;
        out.flags2 = (enabled >> 32) as u32;
        out.max_background = 256;
        out.congestion_threshold = 192;
        out.max_write = MAX_WRITE;
        out.time_gran = 1;
        out.max_pages = abi::FUSE_DEFAULT_MAX_PAGES;
        if enabled & init::MAP_ALIGNMENT != 0 {
            out.map_alignment = crate::dax::DAX_ALIGNMENT_LOG2;
        }
        self.session.minor.store(minor, Ordering::Release);
        self.session.flags.store(enabled, Ordering::Release);
        self.session.initialized.store(true, Ordering::Release);
        info!(target: LOG_TARGET, "FUSE_INIT: protocol 7.{minor}, flags {enabled:#x}");
        rq.ok(w, &[out.as_bytes()])
    }

    pub(crate) fn do_destroy(&self, rq: &Request<'_>, w: &mut dyn Writer) -> Result<Handled, i32> {
        self.reset();
        rq.empty(w)
    }

    pub(crate) fn do_interrupt(&self, a: &mut Args<'_>) -> Result<Handled, i32> {
        let i: abi::InterruptIn = a.fetch()?;
        self.interrupts.interrupt(i.unique);
        Ok(Handled::NoReply)
    }
}
