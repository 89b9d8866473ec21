#!/usr/bin/env bash
# Installs virtiofsd 1.14.0, the benchmarks' contender, when it is missing
# (`cargo install`, with its build dependencies libseccomp-dev and
# libcap-ng-dev from Debian), and prints the path of its binary. Where:
# $AVPFS_BENCH_TOOLS/virtiofsd, default /work/tools when that exists, else
# ~/.cache/avpfs-bench. Honours JOBS (cargo -j, default 2).
#
# Usage: scripts/install-virtiofsd.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${AVPFS_BENCH_TOOLS:-}"
if [ -z "$tools" ]; then
  if [ -d /work/tools ]; then tools=/work/tools; else tools="$HOME/.cache/avpfs-bench"; fi
fi
bin=$tools/virtiofsd/bin/virtiofsd
if [ ! -x "$bin" ]; then
  scripts/install-deps.sh virtiofsd
  echo "install-virtiofsd: installing virtiofsd 1.14.0 into $tools/virtiofsd" >&2
  cargo install -q --locked virtiofsd --version 1.14.0 --root "$tools/virtiofsd" -j "${JOBS:-2}" >&2
fi
echo "$bin"
