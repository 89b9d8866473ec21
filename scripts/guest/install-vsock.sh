#!/usr/bin/env bash
# Installs vhost-device-vsock (rust-vmm, from the crate registry) once, and
# prints the path of its binary. It serves QEMU's vhost-user-vsock-pci on a
# host without /dev/vhost-vsock: a guest's connection to the host's port P
# reaches the unix socket <uds-path>_P.
# Idempotent and quiet: a second call only prints the path. The build needs
# nothing from Debian beyond a C compiler (about 1.5 min on 2 cores).
# Honours AVPFS_VSOCK_ROOT (default ~/.cache/avpfs-vsock) and JOBS (cargo
# -j, default 2).
set -euo pipefail
version=0.3.0
root=${AVPFS_VSOCK_ROOT:-${HOME:-/root}/.cache/avpfs-vsock}
bin=$root/bin/vhost-device-vsock
if [ ! -x "$bin" ] || ! grep -q "^\"vhost-device-vsock $version " "$root/.crates.toml" 2>/dev/null; then
  # --locked: the dependency versions the release was published with.
  cargo install -q --locked -j "${JOBS:-2}" vhost-device-vsock --version "$version" --root "$root" >&2
fi
echo "$bin"
