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
