//! Conversions between the host's `statx` results and the FUSE structures
//! (attributes, statx replies) and of device numbers; a leaf: it imports no
//! other module of the crate.

use fuse_abi::{Attr, Statx, SxTime};

/// Encodes a device number as Linux `new_encode_dev` does (what the client decodes).
pub(crate) fn encode_rdev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// The FUSE attributes of a `statx` result.
pub(crate) fn attr_from_statx(st: &libc::statx) -> Attr {
    Attr {
        ino: st.stx_ino,
        size: st.stx_size,
        blocks: st.stx_blocks,
        atime: st.stx_atime.tv_sec as u64,
        mtime: st.stx_mtime.tv_sec as u64,
        ctime: st.stx_ctime.tv_sec as u64,
        atimensec: st.stx_atime.tv_nsec,
        mtimensec: st.stx_mtime.tv_nsec,
        ctimensec: st.stx_ctime.tv_nsec,
        mode: u32::from(st.stx_mode),
        nlink: st.stx_nlink,
        uid: st.stx_uid,
        gid: st.stx_gid,
        rdev: encode_rdev(st.stx_rdev_major, st.stx_rdev_minor),
        blksize: st.stx_blksize,
        flags: 0,
    }
}

fn sx_time(t: &libc::statx_timestamp) -> SxTime {
    SxTime { tv_sec: t.tv_sec, tv_nsec: t.tv_nsec, reserved: 0 }
}

/// The FUSE statx reply of a `statx` result.
pub(crate) fn statx_reply(st: &libc::statx) -> Statx {
    Statx {
        // Only what the FUSE structure can carry (basic stats and btime).
        mask: st.stx_mask & (libc::STATX_BASIC_STATS | libc::STATX_BTIME),
        blksize: st.stx_blksize,
        attributes: st.stx_attributes,
        nlink: st.stx_nlink,
        uid: st.stx_uid,
        gid: st.stx_gid,
        mode: st.stx_mode,
        spare0: 0,
        ino: st.stx_ino,
        size: st.stx_size,
        blocks: st.stx_blocks,
        attributes_mask: st.stx_attributes_mask,
        atime: sx_time(&st.stx_atime),
        btime: sx_time(&st.stx_btime),
        ctime: sx_time(&st.stx_ctime),
        mtime: sx_time(&st.stx_mtime),
        rdev_major: st.stx_rdev_major,
        rdev_minor: st.stx_rdev_minor,
        dev_major: st.stx_dev_major,
        dev_minor: st.stx_dev_minor,
        spare2: [0; 14],
    }
}

/// Decodes a device number as the client encodes it (Linux `new_encode_dev`).
pub(crate) fn decode_rdev(rdev: u32) -> u64 {
    let major = (rdev & 0xfff00) >> 8;
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
    libc::makedev(major, minor)
}
