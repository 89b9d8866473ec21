//! Descriptor-chain parsing, reading and writing over guest memory filled
//! from the input (see `avpfs_fuzz::chain`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| avpfs_fuzz::chain::run(data));
