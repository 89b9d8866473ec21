#!/usr/bin/env bash
# Builds the DAX tests' guest probe (crates/avpfs-bench, example dax-probe)
# as a static binary for the guest initramfs and prints its path. The same
# binary runs on the host. Honours CARGO_TARGET_DIR and JOBS (cargo -j,
# default 2). Shares target/x86_64-unknown-linux-gnu with
# build-guest-workload.sh (the same RUSTFLAGS).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --release -j "${JOBS:-2}" -p avpfs-bench \
  --example dax-probe --target $target >&2
dir="${CARGO_TARGET_DIR:-target}"
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
echo "$dir/$target/release/examples/dax-probe"
