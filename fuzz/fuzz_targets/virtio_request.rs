//! One FUSE request in a descriptor chain, served as avpfs-vhost serves it
//! (see `avpfs_fuzz::virtio`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| avpfs_fuzz::virtio::run(data));
