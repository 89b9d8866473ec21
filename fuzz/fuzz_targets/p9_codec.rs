//! The 9P2000.L codec: a stream of frames decoded as requests and replies,
//! re-encoded, and checked (see `avpfs_fuzz::p9`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| avpfs_fuzz::p9::run(data));
