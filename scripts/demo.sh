#!/usr/bin/env bash
# The main job: boots a small Linux guest (QEMU, TCG) whose virtio-fs device is
# served by avpfs, lets it read and write a shared directory, and shows the
# result on the host. SHELL_IN_GUEST=1 leaves you at a shell in the guest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build guest
scripts/guest/fetch-kernel.sh stable target/guest/kernel-stable
[ -x target/release/avpfs ] || cargo build --release --bin avpfs

demo=$(mktemp -d /tmp/avpfs-demo.XXXXXX)
share=$demo/share sock=$demo/vhost.sock
mkdir -p "$share"
echo "hello from the host ($(uname -n))" > "$share/hello.txt"
target/release/avpfs --socket-path "$sock" --shared-dir "$share" --tag demo --log-level warn &
daemon=$!
trap 'kill $daemon 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "demo: avpfs did not create $sock" >&2; exit 1; }

echo "== host: sharing $share through avpfs (pid $daemon), booting the guest"
args=(--kernel target/guest/kernel-stable --socket "$sock" --tag demo --job scripts/guest/jobs/demo.sh)
if [ "${SHELL_IN_GUEST:-0}" = 1 ]; then
  scripts/guest/run-guest.sh "${args[@]}" --shell
else
  scripts/guest/run-guest.sh "${args[@]}" --timeout 300
fi
wait $daemon 2>/dev/null || true
echo "== host: the share after the guest ran:"
ls -lR "$share"
echo "== host: file written by the guest:"
cat "$share/from-guest.txt"
echo "== host: checksum of the guest's random file, as seen by the host and the guest:"
(cd "$share/guest-dir" && md5sum random.bin && cut -d' ' -f1 random.md5)
[ "$(cd "$share/guest-dir" && md5sum < random.bin | cut -d' ' -f1)" = "$(cut -d' ' -f1 "$share/guest-dir/random.md5")" ]
echo "== demo OK"
