#!/usr/bin/env bash
# Installs what the packaging checks use (crates/avpfs/tests/packaging.rs
# runs it when one is missing), idempotently and quietly: man and groff to
# render the man pages, systemd for systemd-analyze and
# systemd-socket-activate (systemd need not run), util-linux for setpriv.
set -euo pipefail

want_pkgs=(man-db groff-base systemd util-linux gzip make)
missing=()
for p in "${want_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-packaging-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
