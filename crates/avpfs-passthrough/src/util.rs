//! Small helpers every concern module uses; a leaf: it imports no other
//! module of the crate.

use std::ffi::CStr;
use std::io;

/// The `io::Error` of an errno.
pub(crate) fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// Checks that `name` is one component naming an entry of a directory
/// (not empty, not `.` or `..`, no `/`). The server checks the same; the
/// passthrough does not rely on it, since `mkdirat(dir, "../x")` would
/// leave the share.
pub(crate) fn check_name(name: &CStr) -> io::Result<()> {
    let b = name.to_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(errno(libc::EINVAL));
    }
    Ok(())
}
