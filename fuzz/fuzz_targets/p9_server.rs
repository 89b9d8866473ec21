//! The 9P2000.L server: frame sequences served over an in-memory stream
//! against a file system (see `avpfs_fuzz::p9_server`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| avpfs_fuzz::p9_server::run(data));
