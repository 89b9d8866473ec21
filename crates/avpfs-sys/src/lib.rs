//! The Linux system calls avpfs needs (the passthrough file system, the
//! daemon's sandbox, the front ends, the test harness), each as a small safe
//! function returning [`std::io::Result`].
//!
//! `unsafe` belongs here. Elsewhere it is forbidden, but for what no safe
//! wrapper can vouch for (the daemon taking ownership of an inherited
//! descriptor, avpfs-vhost's vectored I/O into guest memory) and for the
//! conformance suite, which keeps its own system calls as the oracle avpfs
//! is compared with.
//!
//! Every wrapper takes borrowed descriptors ([`BorrowedFd`](std::os::fd::BorrowedFd))
//! and NUL-terminated names ([`CStr`](std::ffi::CStr)), so the checks that make
//! each call sound are made by the types: a descriptor stays open for the
//! duration of the call, and a name is a valid C string.
//!
//! Modules by concern:
//! - [`open`]: `openat2` beneath a directory, and re-opening `O_PATH`
//!   descriptors through `/proc/self/fd`;
//! - [`stat`]: `statx`, `fstatat`, `fstatfs`;
//! - [`creds`]: per-thread credential switching ([`creds::ScopedCreds`]),
//!   capabilities and the per-thread umask;
//! - [`fhandle`]: `name_to_handle_at` / `open_by_handle_at`;
//! - [`fs`]: directory-entry and file operations (`mknodat`, `renameat2`,
//!   `fallocate`, `copy_file_range`, `lseek`, `fsync`, ...);
//! - [`xattr`]: extended attributes by path and by descriptor;
//! - [`lock`]: open-file-description locks, classic POSIX record locks
//!   and `flock`;
//! - [`dir`]: `getdents64` and a parser for its buffer;
//! - positional I/O, `preadv`/`pwritev`: [`io`];
//! - [`clock`]: a cheap monotonic clock for timing requests (the time-stamp
//!   counter);
//! - [`memory`]: giving freed heap memory back to the kernel;
//! - [`memfd`]: anonymous memory files (`memfd_create`);
//! - [`mount`]: `mount`, `umount2`, `open_tree` clones, `move_mount`,
//!   `pivot_root`, `chroot`, `chdir`/`fchdir`;
//! - [`process`]: `fork` (of a single-threaded process), `waitpid`, `kill`,
//!   `gettid`, `unshare`, `prctl` (parent-death signal, no_new_privs),
//!   resource limits, the thread CPU clock;
//! - [`signal`]: signal sets and masks, `sigwait`, handlers (a wake-up
//!   handler, a SIGSYS reporter), signalling one thread (`tgkill`);
//! - [`poll`](mod@poll): `poll(2)`;
//! - [`socket`]: the credentials of a unix socket's peer;
//! - [`vsock`]: `AF_VSOCK` stream sockets (a listener, its connections);
//! - [`window`]: a reserved address range that files are mapped into at
//!   fixed offsets (the test harness's DAX window);
//! - [`fmt`]: decimal formatting without allocation (for signal handlers);
//! - `test_child` (feature `test-utils`): running one test alone in a new
//!   process, for tests that change process-wide state.
//!
//! Wrappers documented as allocation-free (the mount calls, the process and
//! signal calls but `fork`, `thread_count` and the handler installers,
//! [`poll::poll`], [`fmt::decimal`]) are async-signal-safe: they may be used
//! in a child after `fork` and in signal handlers.

#![deny(missing_docs)]

pub mod clock;
pub mod creds;
pub mod dir;
pub mod fhandle;
pub mod fmt;
pub mod fs;
pub mod io;
pub mod lock;
pub mod memfd;
pub mod memory;
pub mod mount;
pub mod open;
pub mod poll;
pub mod process;
pub mod signal;
pub mod socket;
pub mod stat;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_child;
pub mod vsock;
pub mod window;
pub mod xattr;

mod util;

pub use creds::{DropEffectiveCap, ScopedCreds};
pub use fhandle::FileHandle;
pub use open::ProcSelfFd;
