//! The benchmark's error type: one variant per layer it drives.

use std::path::PathBuf;

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The vhost-user front end (the harness) failed.
    #[error("vhost-user front end: {0}")]
    Harness(#[from] vhost_harness::Error),
    /// A FUSE request got an error reply.
    #[error("{op} failed: errno {errno} ({})", std::io::Error::from_raw_os_error(*errno))]
    Fuse {
        /// The request.
        op: &'static str,
        /// The errno of the reply (positive).
        errno: i32,
    },
    /// A FUSE reply is not what the request asks for.
    #[error("bad reply to {op}: {detail}")]
    BadReply {
        /// The request.
        op: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A daemon did not start, died, or could not be stopped.
    #[error("{name}: {detail}")]
    Daemon {
        /// The contender.
        name: String,
        /// What happened (with the end of its log when there is one).
        detail: String,
    },
    /// A contender binary is missing and could not be installed.
    #[error("installing {what}: {detail}")]
    Install {
        /// The program.
        what: String,
        /// Why it failed.
        detail: String,
    },
    /// The options do not make a runnable benchmark.
    #[error("{0}")]
    Usage(String),
    /// Encoding the raw results failed.
    #[error("writing {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Drawing the chart failed.
    #[error("chart {path}: {detail}")]
    Chart {
        /// The file.
        path: PathBuf,
        /// The cause.
        detail: String,
    },
    /// A worker thread panicked.
    #[error("a worker thread panicked")]
    Panic,
}

/// Attaches a description of the operation to an I/O error.
pub trait IoContext<T> {
    /// Wraps the error in [`Error::Io`] with the context `f()` returns.
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Io { context: f(), source })
    }
}
