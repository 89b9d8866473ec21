//! The vhost-user-fs backend driven through the real vhost-user protocol by
//! an in-process front end (vhost-harness) playing the VMM and the guest's
//! virtio-fs driver.

mod common;
mod dax;
mod escape;
mod exhaustion;
mod io;
mod lifecycle;
mod locks;
mod malformed;
mod migration;
mod policy;
mod protocol;
mod share;
