#!/usr/bin/env bash
# Builds one of crates/avpfs-bench's guest programs as a static binary for
# the guest initramfs and prints its path: EXAMPLE is `guest-workload`
# (the default: the level-2 benchmark's workload runner) or `dax-probe`
# (the DAX tests' program, scripts/guest/test-dax.sh). Honours
# CARGO_TARGET_DIR and JOBS (cargo -j, default 2).
#
# Usage: build-guest-workload.sh [EXAMPLE]
set -euo pipefail
cd "$(dirname "$0")/../.."
example=${1:-guest-workload}
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --release -j "${JOBS:-2}" -p avpfs-bench \
  --example "$example" --target $target >&2
dir="${CARGO_TARGET_DIR:-target}"
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
echo "$dir/$target/release/examples/$example"
