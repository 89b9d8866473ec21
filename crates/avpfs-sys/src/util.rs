//! Turning C return values into `io::Result`.

use std::io;

/// A C return value whose `-1` means "failed, see errno".
pub(crate) trait MinusOne: Copy + PartialEq {
    const MINUS_ONE: Self;
}

impl MinusOne for i32 {
    const MINUS_ONE: Self = -1;
}

impl MinusOne for i64 {
    const MINUS_ONE: Self = -1;
}

impl MinusOne for isize {
    const MINUS_ONE: Self = -1;
}

/// `Err(errno)` when `r` is -1, else `Ok(r)`.
pub(crate) fn cvt<T: MinusOne>(r: T) -> io::Result<T> {
    if r == T::MINUS_ONE {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Calls `f` until it does not fail with `EINTR`.
pub(crate) fn retry<T: MinusOne>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// An `io::Error` from an errno value.
pub(crate) fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// A non-negative `u64` as `i64` (`off_t`), or `EINVAL`.
pub(crate) fn off(v: u64) -> io::Result<i64> {
    i64::try_from(v).map_err(|_| err(libc::EINVAL))
}
