//! A POSIX conformance suite that runs real system calls on a directory.
//!
//! The suite is run twice: once on a plain host directory, where the
//! kernel's own file system gives the reference answers (the baseline), and
//! once on an avpfs mount (the candidate). Each case records an ordered log
//! of observations ([`Outcome`]) that must be identical on both, and
//! [`compare`] lists the differences:
//!
//! ```no_run
//! use std::path::Path;
//! let baseline = avpfs_conformance::run_suite(Path::new("/tmp/plain"), None);
//! let candidate = avpfs_conformance::run_suite(Path::new("/mnt/avpfs"), None);
//! let diffs = avpfs_conformance::compare(&baseline, &candidate);
//! assert!(diffs.is_empty(), "{}", diffs.join("\n"));
//! ```
//!
//! Both directories should live on the same kind of host file system
//! (some answers — `SEEK_HOLE` granularity, `ZERO_RANGE` support, a
//! directory's link count, `d_type` — legitimately depend on it).
//!
//! Requirements for the candidate mount: the suite runs as root; the cases
//! that act as another user (uid 65534 and a few others) need the FUSE
//! mount to be made with `allow_other`, otherwise the kernel refuses every
//! access by other users before avpfs sees it.
//!
//! Case families (one module each): `files.*` (open flags, O_TMPFILE,
//! offsets, sparse files and SEEK_DATA/SEEK_HOLE, truncate, fallocate,
//! sync, statfs, copy_file_range), `rename.*` (renameat2 with every flag),
//! `links.*` (hard links, symlinks, O_NOFOLLOW), `dirs.*` (mkdir/rmdir,
//! readdir of 10 000 entries, telldir/seekdir, changes during iteration,
//! unlink of open files, names, special files), `attrs.*` and `perms.*`
//! (chmod, chown, utimensat, checks made as other users), `xattr.*`,
//! `locks.*` (fcntl, OFD and flock locks between two processes) and
//! `mmap.*`.
//!
//! Answers that legitimately depend on the host file system under both
//! directories, so keep both on the same kind: `files.fallocate`
//! (`ZERO_RANGE` is unsupported on tmpfs), `files.sparse_seek` (hole
//! granularity), directory link counts, `xattr.names_and_sizes`.
//! Answers that depend on how the candidate is mounted: `perms.*`,
//! `xattr.nonroot` and the `as UID:GID:` steps need `allow_other`;
//! `dirs.device_nodes` needs `dev`; `mmap.shared_write` (read() before
//! msync) differs under direct I/O; `locks.*` record whether `l_pid` names
//! the holder, which depends on how the server reports lock owners;
//! `perms.setid_clear` may differ with `default_permissions` (the kernel
//! or the server clears the bits).
//!
//! Each run uses a thread of its own with its own umask (022), so the
//! process umask (and a file server in the same process) is not touched.
//! Within a run the cases go one after the other; the whole suite takes
//! about a second on ext4 and some seconds through FUSE. A case that
//! forks kills its child after 60 s at most (a hung lock fails the case),
//! but a system call of the *parent* that never returns cannot be undone:
//! put a timeout around the test that mounts the candidate.
//!
//! [`escape_cases`] are different: they only make sense on a mount point
//! (on a plain directory `..` does leave it) and assert absolute
//! expectations; see [`run_escape_suite`] and [`violations`].

#![deny(missing_docs)]
// The suite is the oracle avpfs is checked against, so it makes its own
// system calls rather than borrow avpfs-sys: its unsafe code is in `sys` and
// `proc` only.
#![deny(unsafe_code)]

mod recorder;
mod runner;

pub mod counter;
#[allow(unsafe_code)]
pub mod proc;
#[allow(unsafe_code)]
pub mod sys;
pub mod update;
pub mod visibility;

mod dirs;
mod escape;
mod files;
mod links;
mod locks;
mod mmap;
mod perms;
mod rename;
mod xattr;

pub use proc::{Chan, Child, Creds};
pub use recorder::{describe_bytes, errno_name, error_name, fnv1a, Flow, Outcome, Stop};
pub use runner::{compare, format_results, run_cases, run_escape_suite, run_suite, violations, Case, Env};

/// Builds a [`Case`] from a name, a `needs_root` flag and a body
/// `fn(&Env, &mut Outcome) -> Flow`.
macro_rules! case {
    ($name:literal, $root:expr, $body:path) => {
        $crate::Case { name: $name, needs_root: $root, run: |env| $crate::runner::run_body(env, $body) }
    };
}
pub(crate) use case;

/// Every case that compares a candidate with a baseline, in run order.
pub fn all_cases() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(files::cases());
    v.extend(rename::cases());
    v.extend(links::cases());
    v.extend(dirs::cases());
    v.extend(perms::cases());
    v.extend(xattr::cases());
    v.extend(locks::cases());
    v.extend(mmap::cases());
    v
}

/// Cases that only make sense on a mount point and assert absolute
/// expectations: `..` of the mount root, names with `/`, rename and link
/// out of the mount, symlink targets resolved by the client. Run them with
/// [`run_escape_suite`] and check [`violations`].
pub fn escape_cases() -> Vec<Case> {
    escape::cases()
}

/// A deterministic byte pattern of `len` bytes (never all zero).
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + usize::from(seed)) % 251) as u8 + 1).collect()
}

#[cfg(test)]
mod tests;
