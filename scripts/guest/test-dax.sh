#!/usr/bin/env bash
# The DAX window (issue 21) with a real guest: QEMU 11.1 from a Debian 13
# chroot (scripts/guest/qemu-trixie.sh) with vhost-user-test-device-pci
# (virtio-id 26, whose shared-memory BAR avpfs sizes with --dax-window),
# Debian's 6.1 guest mounting the share with -o dax=always. The guest reads
# a host file and writes a file through the window; the host compares
# checksums, and avpfs's control socket shows the data went through
# SETUPMAPPING, not READ and WRITE. A smoke test: the truncation, VM-to-VM
# and benchmark parts of issue 21 are still to come.
#
# Usage: test-dax.sh
# Prints "dax: N passed, M failed"; exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh guest test
qemu=$(scripts/guest/qemu-trixie.sh)
kdir=target/guest/kernel-stable
scripts/guest/fetch-kernel.sh stable "$kdir"
cargo build -q --bin avpfs

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "dax ok: $*"; }
fail() { failed=$((failed + 1)); echo "dax FAILED: $*"; }

work=$(mktemp -d /tmp/avpfs-dax.XXXXXX)
daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

share=$work/share
mkdir "$share"
head -c 3000000 /dev/urandom > "$share/from-host"
host_sum=$(md5sum < "$share/from-host" | cut -d' ' -f1)

# run-guest.sh mounts the tag on /mnt with -o dax=always.
cat > "$work/job.sh" <<JOB
opts=\$(grep ' /mnt virtiofs ' /proc/mounts)
case "\$opts" in *dax=always*) echo "CHECK mount ok" ;; *) echo "CHECK mount FAIL \$opts"; exit 1 ;; esac
sum=\$(md5sum < /mnt/from-host | cut -d' ' -f1)
[ "\$sum" = $host_sum ] && echo "CHECK read ok" || echo "CHECK read FAIL md5 \$sum"
dd if=/dev/urandom of=/tmp/data bs=64k count=8 2>/dev/null
cp /tmp/data /mnt/from-guest && sync
echo "GUEST-SUM \$(md5sum < /tmp/data | cut -d' ' -f1)"
dmesg | grep -o 'Cache len: 0x[0-9a-f]*' | head -1 | sed 's/^/GUEST-WINDOW /'
echo "CHECK umount ok"
JOB

sock=$work/vhost.sock control=$work/control.sock
target/debug/avpfs --socket-path "$sock" --shared-dir "$share" --tag avpfs --request-queues 1 \
  --dax-window 64M --control-socket "$control" --keep-listening --log-level warn 2> "$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 200); do [ -S "$sock" ] && [ -S "$control" ] && break; sleep 0.05; done
rc=0
QEMU=$qemu scripts/guest/run-guest.sh --kernel "$kdir" --socket "$sock" --tag avpfs --fs-device test-device \
  --fs-options dax=always \
  --job "$work/job.sh" --timeout 300 > "$work/console" 2>&1 || rc=$?
target/debug/avpfs ctl --control-socket "$control" stats > "$work/stats.json" || true
tr -d '\r' < "$work/console" | grep -oE '(CHECK|GUEST-[A-Z]+) .*' | sed 's/^/  guest: /' || true
[ $rc = 0 ] && pass "guest job finished" || fail "guest job exit $rc"
for name in mount read; do
  line=$(tr -d '\r' < "$work/console" | grep -o "CHECK $name .*" || true)
  case "$line" in
    "CHECK $name ok") pass "guest: $name" ;;
    "") fail "guest: $name did not run" ;;
    *) fail "guest: ${line#CHECK }" ;;
  esac
done
window=$(tr -d '\r' < "$work/console" | sed -n 's/.*GUEST-WINDOW Cache len: //p')
[ "$window" = 0x4000000 ] && pass "the guest sees a 64 MiB window" || fail "the guest's window: ${window:-none}"
guest_sum=$(tr -d '\r' < "$work/console" | sed -n 's/.*GUEST-SUM //p')
if [ -n "$guest_sum" ] && [ "$(md5sum < "$share/from-guest" 2>/dev/null | cut -d' ' -f1)" = "$guest_sum" ]; then
  pass "host: the guest's 512 KiB file arrived intact"
else fail "host: the guest's file is missing or differs"; fi
# The file data went through the window: mappings were set up, and far
# fewer bytes were READ than the 3 MB the guest read.
verdict=$(/usr/bin/python3 - "$work/stats.json" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["guests"][0]
ops = {o["op"]: o for o in g["ops"]}
maps = ops.get("SETUPMAPPING", {}).get("requests", 0)
read = ops.get("READ", {}).get("bytes_out", 0)
print("ok" if maps > 0 and read < 1_000_000 else f"SETUPMAPPING {maps}, READ bytes {read}")
PY
) || verdict="no statistics from the control socket"

[ "$verdict" = ok ] && pass "the data went through SETUPMAPPING, not READ" || fail "DAX not used: $verdict"
if [ $failed != 0 ]; then
  echo "--- guest console"; tr -d '\r' < "$work/console" | tail -n 30
  echo "--- daemon log"; tail -n 20 "$work/daemon.log"
fi
echo "dax: $passed passed, $failed failed"
[ $failed = 0 ]
