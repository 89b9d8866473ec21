//! Message type numbers (`enum p9_msg_t` of Linux's `include/net/9p/9p.h`).

use std::fmt;

macro_rules! msg_types {
    ($($(#[$m:meta])* $name:ident = $value:literal,)*) => {
        /// A 9P message type: the byte after the frame's size.
        ///
        /// Every number of 9P2000, 9P2000.u and 9P2000.L, so that a decoder
        /// can tell a message of another dialect from garbage. A request
        /// type is even; its reply is the next odd number.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum MsgType {
            $($(#[$m])* $name = $value,)*
        }

        impl MsgType {
            /// The type for a wire number, if 9P defines it.
            pub const fn from_u8(value: u8) -> Option<MsgType> {
                match value {
                    $($value => Some(MsgType::$name),)*
                    _ => None,
                }
            }

            /// The name 9P documents use (`Tversion`, `Rlerror`, ...).
            pub const fn name(self) -> &'static str {
                match self {
                    $(MsgType::$name => stringify!($name),)*
                }
            }
        }
    };
}

msg_types! {
    /// Not used (9P2000.L).
    Tlerror = 6,
    /// Error reply of 9P2000.L: a Linux errno.
    Rlerror = 7,
    /// File system statistics.
    Tstatfs = 8,
    /// Reply to `Tstatfs`.
    Rstatfs = 9,
    /// Open a fid (9P2000.L flags).
    Tlopen = 12,
    /// Reply to `Tlopen`.
    Rlopen = 13,
    /// Create and open a regular file.
    Tlcreate = 14,
    /// Reply to `Tlcreate`.
    Rlcreate = 15,
    /// Create a symbolic link.
    Tsymlink = 16,
    /// Reply to `Tsymlink`.
    Rsymlink = 17,
    /// Create a device node, fifo or socket.
    Tmknod = 18,
    /// Reply to `Tmknod`.
    Rmknod = 19,
    /// Rename a fid's file into a directory fid.
    Trename = 20,
    /// Reply to `Trename`.
    Rrename = 21,
    /// Read a symbolic link.
    Treadlink = 22,
    /// Reply to `Treadlink`.
    Rreadlink = 23,
    /// Get attributes.
    Tgetattr = 24,
    /// Reply to `Tgetattr`.
    Rgetattr = 25,
    /// Set attributes.
    Tsetattr = 26,
    /// Reply to `Tsetattr`.
    Rsetattr = 27,
    /// Open an extended attribute (or the list of names) for reading.
    Txattrwalk = 30,
    /// Reply to `Txattrwalk`.
    Rxattrwalk = 31,
    /// Prepare a fid to write an extended attribute.
    Txattrcreate = 32,
    /// Reply to `Txattrcreate`.
    Rxattrcreate = 33,
    /// Read directory entries.
    Treaddir = 40,
    /// Reply to `Treaddir`.
    Rreaddir = 41,
    /// Sync a file.
    Tfsync = 50,
    /// Reply to `Tfsync`.
    Rfsync = 51,
    /// Take or release a POSIX record lock.
    Tlock = 52,
    /// Reply to `Tlock`.
    Rlock = 53,
    /// Test for a POSIX record lock.
    Tgetlock = 54,
    /// Reply to `Tgetlock`.
    Rgetlock = 55,
    /// Create a hard link.
    Tlink = 70,
    /// Reply to `Tlink`.
    Rlink = 71,
    /// Create a directory.
    Tmkdir = 72,
    /// Reply to `Tmkdir`.
    Rmkdir = 73,
    /// Rename by directory fid and name.
    Trenameat = 74,
    /// Reply to `Trenameat`.
    Rrenameat = 75,
    /// Remove by directory fid and name.
    Tunlinkat = 76,
    /// Reply to `Tunlinkat`.
    Runlinkat = 77,
    /// Negotiate the protocol version and msize.
    Tversion = 100,
    /// Reply to `Tversion`.
    Rversion = 101,
    /// Open an authentication fid.
    Tauth = 102,
    /// Reply to `Tauth`.
    Rauth = 103,
    /// Attach a fid to the root of a tree.
    Tattach = 104,
    /// Reply to `Tattach`.
    Rattach = 105,
    /// Not used.
    Terror = 106,
    /// Error reply of 9P2000 and 9P2000.u (a string): never sent by this server.
    Rerror = 107,
    /// Abort an outstanding request.
    Tflush = 108,
    /// Reply to `Tflush`.
    Rflush = 109,
    /// Walk a fid through names to a new fid.
    Twalk = 110,
    /// Reply to `Twalk`.
    Rwalk = 111,
    /// Open (9P2000 modes).
    Topen = 112,
    /// Reply to `Topen`.
    Ropen = 113,
    /// Create (9P2000).
    Tcreate = 114,
    /// Reply to `Tcreate`.
    Rcreate = 115,
    /// Read from an open fid.
    Tread = 116,
    /// Reply to `Tread`.
    Rread = 117,
    /// Write to an open fid.
    Twrite = 118,
    /// Reply to `Twrite`.
    Rwrite = 119,
    /// Forget a fid.
    Tclunk = 120,
    /// Reply to `Tclunk`.
    Rclunk = 121,
    /// Remove a fid's file and forget the fid.
    Tremove = 122,
    /// Reply to `Tremove`.
    Rremove = 123,
    /// Get a 9P2000 stat.
    Tstat = 124,
    /// Reply to `Tstat`.
    Rstat = 125,
    /// Set a 9P2000 stat.
    Twstat = 126,
    /// Reply to `Twstat`.
    Rwstat = 127,
}

impl MsgType {
    /// True for a type a client sends (T-messages), `Tlerror` and `Terror`
    /// included (they are defined, never valid).
    pub const fn is_t(self) -> bool {
        (self as u8) & 1 == 0
    }

    /// The 9P2000 and 9P2000.u requests a 9P2000.L session does not use.
    pub const fn is_legacy(self) -> bool {
        matches!(
            self,
            MsgType::Topen
                | MsgType::Ropen
                | MsgType::Tcreate
                | MsgType::Rcreate
                | MsgType::Tstat
                | MsgType::Rstat
                | MsgType::Twstat
                | MsgType::Rwstat
                | MsgType::Rerror
        )
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_round_trips() {
        let mut known = 0;
        for value in 0..=u8::MAX {
            if let Some(t) = MsgType::from_u8(value) {
                assert_eq!(t as u8, value);
                assert_eq!(t.is_t(), t.name().starts_with('T'), "{t}");
                known += 1;
            }
        }
        // 20 pairs of 9P2000.L (Tlerror/Rlerror included) and 14 of 9P2000.
        assert_eq!(known, 68);
    }
}
