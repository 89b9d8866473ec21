#!/usr/bin/env bash
# Installs what avpfs needs to build and test, idempotently and quietly.
# Usage: scripts/install-deps.sh [build|test|packaging|guest|bench|virtiofsd|libvirt|vsock]...
set -euo pipefail

want_pkgs=(gcc make pkg-config)
for what in "$@"; do
  case "$what" in
    build) ;;
    test) want_pkgs+=(python3 python3-prometheus-client) ;;
    # The packaging checks (crates/avpfs/tests/packaging.rs): man and groff
    # render the man pages, systemd gives systemd-analyze and
    # systemd-socket-activate (systemd need not run), util-linux setpriv.
    packaging) want_pkgs+=(man-db groff-base systemd util-linux gzip) ;;
    guest) want_pkgs+=(qemu-system-x86 busybox-static cpio gzip) ;;
    bench) want_pkgs+=(qemu-system-x86 busybox-static cpio gzip libseccomp-dev libcap-ng-dev fio) ;;
    # Building virtiofsd with cargo install (scripts/install-virtiofsd.sh).
    virtiofsd) want_pkgs+=(libseccomp-dev libcap-ng-dev) ;;
    # The daemon, virsh and the QEMU driver; not the full `libvirt-daemon-system`
    # (systemd units, default networks), which a test does not need.
    libvirt) want_pkgs+=(qemu-system-x86 busybox-static cpio gzip libvirt-daemon libvirt-clients libvirt-daemon-driver-qemu) ;;
    vsock) want_pkgs+=(qemu-system-x86 busybox-static cpio gzip diod) ;; # diod: test-9p-plumbing.sh's stand-in 9P server
    *) echo "install-deps: unknown group $what" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi
[ -e /dev/fuse ] || { echo "install-deps: /dev/fuse is missing (modprobe fuse)" >&2; exit 1; }
