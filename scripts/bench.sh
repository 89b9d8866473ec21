#!/usr/bin/env bash
# Benchmarks avpfs side by side with virtiofsd and the host (level 1: the
# daemons driven by the in-process vhost-user front end).
#
# Usage: scripts/bench.sh [quick|full] [avpfs-bench options...]
#   quick (default): a few minutes; full: the issue's sizes (much longer).
#   Results: bench/results/level1.{md,svg,json,csv}.
# Environment: CARGO_TARGET_DIR (default: target), AVPFS_BENCH_TOOLS (where
# virtiofsd is installed; default /work/tools when it exists, else
# ~/.cache/avpfs-bench), JOBS (cargo -j, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=quick
case "${1:-}" in
  quick|--quick) shift ;;
  full|--full) mode=full; shift ;;
esac

if [ "$(id -u)" != 0 ]; then
  echo "bench.sh: run as root (it mounts a tmpfs and installs packages)" >&2
  exit 1
fi

# Build dependencies of virtiofsd (cargo install) and the usual tool chain.
scripts/install-deps.sh build
missing=()
for p in libseccomp-dev libcap-ng-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

tools="${AVPFS_BENCH_TOOLS:-}"
if [ -z "$tools" ]; then
  if [ -d /work/tools ]; then tools=/work/tools; else tools="$HOME/.cache/avpfs-bench"; fi
fi
if [ ! -x "$tools/virtiofsd/bin/virtiofsd" ]; then
  echo "bench.sh: installing virtiofsd 1.14.0 into $tools/virtiofsd" >&2
  cargo install --locked virtiofsd --version 1.14.0 --root "$tools/virtiofsd" -j "${JOBS:-2}"
fi

target="${CARGO_TARGET_DIR:-target}"
cargo build --release -j "${JOBS:-2}" --bin avpfs --bin avpfs-bench

exec "$target/release/avpfs-bench" "--$mode" \
  --avpfs-bin "$target/release/avpfs" \
  --virtiofsd-bin "$tools/virtiofsd/bin/virtiofsd" \
  --out bench/results "$@"
