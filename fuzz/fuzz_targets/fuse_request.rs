//! FUSE request decoding and dispatch: the input is a sequence of FUSE
//! requests served after a valid FUSE_INIT (see `avpfs_fuzz::fuse`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| avpfs_fuzz::fuse::run(data));
