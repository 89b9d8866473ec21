#!/usr/bin/env bash
# Benchmarks avpfs side by side with virtiofsd and the host (level 1: the
# daemons driven by the in-process vhost-user front end), or with virtiofsd
# and QEMU's 9p server under a real guest (level 2; also avpfs's 9P server
# over vsock and QEMU's 9p with mapped-xattr: --contenders avpfs-9p,9p-mapped).
#
# Usage: scripts/bench.sh [level2] [quick|full] [avpfs-bench options...]
#        scripts/bench.sh [quick|full] --level 2 [avpfs-bench options...]
#   quick (default): a few minutes; full: the issue's sizes (much longer).
#   Results: bench/results/level1.{md,svg,json,csv}, or level2.* for level 2.
# Environment: CARGO_TARGET_DIR (default: target), AVPFS_BENCH_TOOLS (where
# virtiofsd is installed; default /work/tools when it exists, else
# ~/.cache/avpfs-bench), JOBS (cargo -j, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=quick level=1
case "${1:-}" in
  level1) shift ;;
  level2) level=2; shift ;;
esac
case "${1:-}" in
  quick|--quick) shift ;;
  full|--full) mode=full; shift ;;
esac
# "--level 2" / "--level=2" among the options also selects level 2.
prev=""
for a in "$@"; do
  case "$a" in
    --level=2) level=2 ;;
    2) [ "$prev" = --level ] && level=2 ;;
  esac
  prev=$a
done
level_args=()
[ $level = 2 ] && ! printf '%s\n' "$@" | grep -q -- '^--level' && level_args=(--level 2)

if [ "$(id -u)" != 0 ]; then
  echo "bench.sh: run as root (it mounts a tmpfs and installs packages)" >&2
  exit 1
fi

# The usual tool chain; QEMU, busybox and cpio for level 2's guests; and
# virtiofsd.
if [ $level = 2 ]; then scripts/install-deps.sh guest; else scripts/install-deps.sh build; fi
virtiofsd=$(scripts/install-virtiofsd.sh)

target="${CARGO_TARGET_DIR:-target}"
cargo build --release -j "${JOBS:-2}" --bin avpfs --bin avpfs-bench

guest_args=()
if [ $level = 2 ]; then
  # The guest kernel (Debian's, not installed on the host) and the static
  # workload runner for the guest's initramfs.
  scripts/guest/fetch-kernel.sh stable target/guest/kernel-stable
  runner=$(scripts/guest/build-guest-workload.sh)
  guest_args=(--guest-kernel target/guest/kernel-stable --guest-workload-bin "$runner")
  # avpfs-9p: the guest's 9P-over-vsock mount helper and vhost-device-vsock.
  if printf '%s\n' "$@" | grep -q 'avpfs-9p'; then
    guest_args+=(--guest-9p-mount-bin "$(scripts/guest/build-9p-mount.sh)")
    VHOST_DEVICE_VSOCK=$(scripts/guest/install-vsock.sh)
    export VHOST_DEVICE_VSOCK
  fi
fi

exec "$target/release/avpfs-bench" "--$mode" "${level_args[@]}" "${guest_args[@]}" \
  --avpfs-bin "$target/release/avpfs" \
  --virtiofsd-bin "$virtiofsd" \
  --out bench/results "$@"   # a later --out wins
