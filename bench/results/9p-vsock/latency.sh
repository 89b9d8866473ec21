#!/usr/bin/env bash
# Where a 9P request's time goes on avpfs-9p (avpfs's 9P server reached
# over vsock): one guest creates, stats and unlinks N files on a share
# served by `avpfs --9p-listen`, with avpfs and vhost-device-vsock each
# under `strace -f -ttt -T`, so every read and write of a request on the
# way carries a timestamp. latency.py then splits each round trip into
# the server's part (avpfs: request read -> reply written), the relay's
# (vhost-device-vsock) and the guest's (everything else: the guest's 9p
# client, its vsock driver, QEMU, the interrupts).
# Usage (as root, from the repository): latency.sh [N] [OUTDIR]
set -euo pipefail
n=${1:-300} out=${2:-/tmp/p9lat}
cd "$(dirname "$0")/../../.."
mkdir -p "$out"
work=$(mktemp -d /tmp/p9lat.XXXXXX)
mkdir "$work/share"
real_vsock=$(scripts/guest/install-vsock.sh)
# vhost-device-vsock under strace, started by run-guest.sh.
# strace does not end its tracee on SIGTERM, which run-guest.sh sends: the
# wrapper does.
cat > "$work/vsock-traced" <<W
#!/bin/sh
strace -f -ttt -T -xx -e trace=read,write,recvfrom,sendto,recvmsg,sendmsg,epoll_wait -o "$out/vsock.strace" "$real_vsock" "\$@" &
s=\$!
trap 'kill \$(pgrep -P \$s) 2>/dev/null; wait \$s; exit 0' TERM
wait \$s
W
chmod +x "$work/vsock-traced"
strace -f -ttt -T -xx -e trace=read,write,recvfrom,sendto,recvmsg,sendmsg -o "$out/avpfs.strace" \
  target/release/avpfs --shared-dir "$work/share" --9p-listen "unix:$work/vs_564" --cache auto \
  --log-level error --sandbox none --seccomp none &
avpfs_pid=$!
for _ in $(seq 100); do [ -S "$work/vs_564" ] && break; sleep 0.05; done
cat > "$work/job.sh" <<J
avpfs-9p-mount 564 /mnt -o cache=none || exit 1
echo "GUEST-MOUNT \$(grep ' /mnt ' /proc/mounts)"
guest-workload --dir /mnt/lat --files $n --small-files 1 --seq-mib 1 --rand-ops 1 --readdir-passes 1 \
  --workloads create,stat,unlink
J
VHOST_DEVICE_VSOCK=$work/vsock-traced scripts/guest/run-guest.sh --kernel target/guest/kernel-stable \
  --vsock-uds "$work/vs" --bin "$(scripts/guest/build-9p-mount.sh)" \
  --bin target/x86_64-unknown-linux-gnu/release/examples/guest-workload --job "$work/job.sh" --timeout 600 \
  | tr -d '\r' | grep -E 'AVPFS-BENCH |GUEST-MOUNT' | tee "$out/guest.txt"
kill $(pgrep -P "$avpfs_pid") 2>/dev/null || true
wait "$avpfs_pid" 2>/dev/null || true
rm -rf "$work"
python3 "$(dirname "$0")/latency.py" "$out"
