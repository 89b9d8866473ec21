#!/usr/bin/env bash
# Builds the conformance runner as a static binary for the guest initramfs and
# prints its path.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --release -p avpfs-conformance \
  --example conformance --target $target >&2
echo "$PWD/target/$target/release/examples/conformance"
