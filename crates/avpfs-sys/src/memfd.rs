//! Anonymous memory files (`memfd_create`).

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::util::cvt;

/// `memfd_create(2)` with `flags` (`libc::MFD_*`; `MFD_CLOEXEC` is added).
/// The file is empty: give it a size with `set_len`.
pub fn memfd_create(name: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string for the duration of the call.
    let fd = cvt(unsafe { libc::memfd_create(name.as_ptr(), flags | libc::MFD_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by memfd_create and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Seek, Write};

    #[test]
    fn a_memfd_holds_data() {
        let mut f = File::from(memfd_create(c"avpfs-test", 0).unwrap());
        f.write_all(b"abc").unwrap();
        f.rewind().unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "abc");
        // MFD_CLOEXEC is always added: the descriptor is close-on-exec.
        let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", std::os::fd::AsRawFd::as_raw_fd(&f)));
        let flags = fdinfo.unwrap().lines().find_map(|l| l.strip_prefix("flags:").map(|v| v.trim().to_owned()));
        let flags = u32::from_str_radix(&flags.unwrap(), 8).unwrap();
        assert_ne!(flags & libc::O_CLOEXEC as u32, 0);
    }
}
