#!/usr/bin/env bash
# Builds the level-2 benchmark's guest workload runner (crates/avpfs-bench,
# example guest-workload) as a static binary for the guest initramfs and
# prints its path. Honours CARGO_TARGET_DIR and JOBS (cargo -j, default 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --release -j "${JOBS:-2}" -p avpfs-bench \
  --example guest-workload --target $target >&2
dir="${CARGO_TARGET_DIR:-target}"
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
echo "$dir/$target/release/examples/guest-workload"
