//! The open flags of `Tlopen` and `Tlcreate` (`P9_DOTL_*`) and their
//! mapping to the host's `O_*` flags.
//!
//! The `P9_DOTL_*` values are Linux's x86 `O_*` values, fixed by the
//! protocol; on other architectures (arm64, for `O_DIRECTORY`, `O_NOFOLLOW`,
//! `O_DIRECT`, `O_LARGEFILE`) the host's values differ, so a server maps
//! them bit by bit with [`to_linux`] rather than passing them through.
//!
//! What the Linux client sends (`v9fs_open_to_dotl_flags`): the access
//! mode, and `CREATE`, `EXCL`, `NOCTTY`, `APPEND`, `NONBLOCK`, `DSYNC`,
//! `FASYNC`, `DIRECT`, `LARGEFILE`, `DIRECTORY`, `NOFOLLOW`, `NOATIME`,
//! `CLOEXEC`, `SYNC`. It never sends `TRUNC` (it truncates with
//! `Tsetattr`), but other clients may.

/// Read only.
pub const RDONLY: u32 = 0o0;
/// Write only.
pub const WRONLY: u32 = 0o1;
/// Read and write.
pub const RDWR: u32 = 0o2;
/// No access (Linux's `O_PATH`-like access mode 3).
pub const NOACCESS: u32 = 0o3;
/// The access mode bits.
pub const ACCMODE: u32 = 0o3;
/// Create the file (`O_CREAT`).
pub const CREATE: u32 = 0o100;
/// With `CREATE`: fail if it exists (`O_EXCL`).
pub const EXCL: u32 = 0o200;
/// `O_NOCTTY`.
pub const NOCTTY: u32 = 0o400;
/// Truncate (`O_TRUNC`).
pub const TRUNC: u32 = 0o1000;
/// Append (`O_APPEND`).
pub const APPEND: u32 = 0o2000;
/// `O_NONBLOCK`.
pub const NONBLOCK: u32 = 0o4000;
/// `O_DSYNC`.
pub const DSYNC: u32 = 0o10000;
/// `FASYNC`.
pub const FASYNC: u32 = 0o20000;
/// `O_DIRECT`.
pub const DIRECT: u32 = 0o40000;
/// `O_LARGEFILE` (implied on a 64-bit host, where `libc::O_LARGEFILE` is 0).
pub const LARGEFILE: u32 = 0o100000;
/// `O_DIRECTORY`.
pub const DIRECTORY: u32 = 0o200000;
/// `O_NOFOLLOW`.
pub const NOFOLLOW: u32 = 0o400000;
/// `O_NOATIME`.
pub const NOATIME: u32 = 0o1000000;
/// `O_CLOEXEC`.
pub const CLOEXEC: u32 = 0o2000000;
/// `O_SYNC` (on the wire, like Linux's own `O_SYNC`, this bit alone; the
/// client's `O_SYNC` also carries `DSYNC`).
pub const SYNC: u32 = 0o4000000;

/// Each `P9_DOTL_*` flag beside the host's flag.
const MAP: [(u32, i32); 14] = [
    (CREATE, libc::O_CREAT),
    (EXCL, libc::O_EXCL),
    (NOCTTY, libc::O_NOCTTY),
    (TRUNC, libc::O_TRUNC),
    (APPEND, libc::O_APPEND),
    (NONBLOCK, libc::O_NONBLOCK),
    (DSYNC, libc::O_DSYNC),
    (FASYNC, libc::O_ASYNC),
    (DIRECT, libc::O_DIRECT),
    (LARGEFILE, libc::O_LARGEFILE),
    (DIRECTORY, libc::O_DIRECTORY),
    (NOFOLLOW, libc::O_NOFOLLOW),
    (NOATIME, libc::O_NOATIME),
    (CLOEXEC, libc::O_CLOEXEC),
];

/// The host's `open(2)` flags for 9P2000.L `flags`: the access mode, and
/// each known flag mapped bit by bit (`SYNC` to `O_SYNC`); unknown bits are
/// dropped. The server still decides which of them it honours (a
/// passthrough drops `NOCTTY`, `FASYNC` and `CLOEXEC`, and turns
/// `CREATE`/`EXCL` in `Tlopen` into an error or nothing).
pub fn to_linux(flags: u32) -> i32 {
    let mut out = (flags & ACCMODE) as i32;
    for (dotl, host) in MAP {
        if flags & dotl != 0 {
            out |= host;
        }
    }
    if flags & SYNC != 0 {
        out |= libc::O_SYNC;
    }
    out
}

/// The 9P2000.L flags for the host's `open(2)` `flags` (what a client
/// sends; the reverse of [`to_linux`] for the flags it knows).
pub fn from_linux(flags: i32) -> u32 {
    let mut out = (flags & libc::O_ACCMODE) as u32;
    for (dotl, host) in MAP {
        // O_LARGEFILE is 0 in 64-bit user space: it matches no flag.
        if host != 0 && flags & host == host {
            out |= dotl;
        }
    }
    // O_SYNC includes O_DSYNC's bit on Linux.
    if flags & libc::O_SYNC == libc::O_SYNC {
        out |= SYNC;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_modes() {
        assert_eq!(to_linux(RDONLY), libc::O_RDONLY);
        assert_eq!(to_linux(WRONLY), libc::O_WRONLY);
        assert_eq!(to_linux(RDWR), libc::O_RDWR);
        assert_eq!(to_linux(NOACCESS), 3);
    }

    #[test]
    fn every_flag_maps_both_ways() {
        for (dotl, host) in MAP {
            assert_eq!(to_linux(dotl), host, "{dotl:o}");
            if host != 0 {
                assert_eq!(from_linux(host), dotl, "{host:o}");
            }
        }
        assert_eq!(to_linux(SYNC) & libc::O_SYNC, libc::O_SYNC);
        assert_eq!(from_linux(libc::O_SYNC), SYNC | DSYNC);
        let all = MAP.iter().filter(|(_, h)| *h != 0).fold(RDWR | SYNC, |acc, (d, _)| acc | d);
        assert_eq!(from_linux(to_linux(all)), all);
    }

    #[test]
    fn unknown_bits_are_dropped() {
        assert_eq!(to_linux(0o10000000 | 0x8000_0000 | RDWR), libc::O_RDWR);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn on_x86_the_values_are_the_hosts() {
        // But O_LARGEFILE, which 64-bit user space spells 0.
        let all = MAP.iter().fold(RDWR | SYNC, |acc, (d, _)| acc | d);
        assert_eq!(to_linux(all) as u32, (all & !LARGEFILE) | DSYNC);
    }
}
