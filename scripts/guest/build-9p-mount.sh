#!/usr/bin/env bash
# Builds the guest's 9P-over-vsock mount helper (crates/avpfs-9p-mount) as a
# static binary for the guest initramfs and prints its path. Uses the musl
# target when rustup has it or can add it, else glibc with crt-static (as
# build-guest-workload.sh). Honours CARGO_TARGET_DIR and JOBS (cargo -j,
# default 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx $target &&
   ! rustup target add $target >/dev/null 2>&1; then
  target=x86_64-unknown-linux-gnu
  export RUSTFLAGS="-C target-feature=+crt-static"
fi
cargo build -q --release -j "${JOBS:-2}" -p avpfs-9p-mount --target $target >&2
dir="${CARGO_TARGET_DIR:-target}"
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
echo "$dir/$target/release/avpfs-9p-mount"
