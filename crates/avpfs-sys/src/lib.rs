//! The Linux system calls the avpfs passthrough file system needs, each as a
//! small safe function returning [`std::io::Result`].
//!
//! This crate is the only place of the passthrough where `unsafe` appears.
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
//! - [`lock`]: open-file-description locks and `flock`;
//! - [`dir`]: `getdents64` and a parser for its buffer;
//! - positional I/O, `preadv`/`pwritev`: [`io`];
//! - [`memory`]: giving freed heap memory back to the kernel.

#![deny(missing_docs)]

pub mod creds;
pub mod dir;
pub mod fhandle;
pub mod fs;
pub mod io;
pub mod lock;
pub mod memory;
pub mod open;
pub mod stat;
pub mod xattr;

mod util;

pub use creds::{DropEffectiveCap, ScopedCreds};
pub use fhandle::FileHandle;
pub use open::ProcSelfFd;
