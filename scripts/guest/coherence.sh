#!/usr/bin/env bash
# Regenerates the visibility-delay table of docs/coherence.md: runs only the
# visibility section of test-guest.sh (two 6.1 guests per cache policy,
# about 100 s here) and writes the Markdown table to FILE (default: stdout,
# after the test's own output).
#
# Usage: coherence.sh [FILE]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
scripts/guest/test-guest.sh --kernels stable --sections coherence --pair-modes separate --coherence-table "$tmp"
if [ -n "$out" ]; then cp "$tmp" "$out"; else cat "$tmp"; fi
