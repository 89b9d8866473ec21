//! `poll(2)`.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use crate::util::cvt;

/// One entry of [`poll`]: a descriptor, the events asked for and those
/// reported. Layout-compatible with `struct pollfd`.
#[derive(Debug, Clone, Copy)]
#[repr(transparent)]
pub struct PollFd<'fd> {
    raw: libc::pollfd,
    _fd: PhantomData<BorrowedFd<'fd>>,
}

impl<'fd> PollFd<'fd> {
    /// Waits for `events` (`libc::POLLIN`, ...) on `fd`.
    pub fn new(fd: BorrowedFd<'fd>, events: libc::c_short) -> Self {
        Self::from_raw_fd(fd.as_raw_fd(), events)
    }

    /// Waits for `events` on the descriptor number `fd`. Sound for any
    /// number: `poll` only looks the number up in the descriptor table and
    /// reports a closed one as `POLLNVAL`; a negative one is ignored (its
    /// `revents` stay 0), which makes a place holder for an optional entry.
    pub fn from_raw_fd(fd: RawFd, events: libc::c_short) -> Self {
        PollFd { raw: libc::pollfd { fd, events, revents: 0 }, _fd: PhantomData }
    }

    /// The events reported by the last [`poll`].
    pub fn revents(&self) -> libc::c_short {
        self.raw.revents
    }
}

/// `poll(2)` on `fds` for up to `timeout_ms` milliseconds (-1: no limit).
/// Returns how many entries have events. Not retried on `EINTR`: the error
/// is returned (with `io::ErrorKind::Interrupted`) so that the caller can
/// look at what the signal changed. Allocation-free.
pub fn poll(fds: &mut [PollFd<'_>], timeout_ms: libc::c_int) -> io::Result<usize> {
    let n = fds.len() as libc::nfds_t;
    // SAFETY: `PollFd` is `repr(transparent)` over `pollfd`, so `fds` is a
    // valid, writable array of `n` pollfd for the duration of the call.
    let r = cvt(unsafe { libc::poll(fds.as_mut_ptr().cast::<libc::pollfd>(), n, timeout_ms) })?;
    Ok(r as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reports_readable_and_times_out() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut fds = [PollFd::new(b.as_fd(), libc::POLLIN), PollFd::from_raw_fd(-1, libc::POLLIN)];
        assert_eq!(poll(&mut fds, 0).unwrap(), 0);
        a.write_all(b"x").unwrap();
        assert_eq!(poll(&mut fds, 1000).unwrap(), 1);
        assert_ne!(fds[0].revents() & libc::POLLIN, 0);
        assert_eq!(fds[1].revents(), 0, "a negative descriptor is ignored");
    }
}
