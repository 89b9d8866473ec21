#!/usr/bin/env bash
# Fetches a Debian guest kernel without installing it on the host.
# Usage: fetch-kernel.sh stable|backports OUTDIR
# Leaves OUTDIR/vmlinuz and OUTDIR/modules/ (the lib/modules/<version> tree).
set -euo pipefail
flavour=$1 out=$2
[ -f "$out/vmlinuz" ] && [ -d "$out/modules" ] && exit 0
mkdir -p "$out"
suite_args=()
if [ "$flavour" = backports ]; then
  src=/etc/apt/sources.list.d/avpfs-bookworm-backports.sources
  if [ ! -f "$src" ]; then
    cat > "$src" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
SRC
    apt-get update -qq
  fi
  suite_args=(-t bookworm-backports)
fi
# The versioned image package that the linux-image-amd64 meta package depends on.
pkg=$(apt-cache "${suite_args[@]}" depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ] && [ "$flavour" = backports ]; then
  ver=$(apt-cache policy linux-image-amd64 | awk '/bpo/ {print $1; exit}')
  pkg=$(apt-cache show "linux-image-amd64=$ver" | awk -F': ' '/^Depends/ {split($2,a,/[ ,]/); print a[1]; exit}')
fi
[ -n "$pkg" ] || { echo "fetch-kernel: no kernel package found for $flavour" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "${suite_args[@]}" "$pkg" >/dev/null 2>&1 || apt-get download "$pkg" >/dev/null)
dpkg-deb -x "$work"/*.deb "$work/root"
cp "$work"/root/boot/vmlinuz-* "$out/vmlinuz"
rm -rf "$out/modules"
mv "$work"/root/lib/modules/* "$out/modules"
echo "$pkg" > "$out/package"
