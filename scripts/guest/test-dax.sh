#!/usr/bin/env bash
# The DAX window (issue 21) with real guests: QEMU 11.1 from a Debian 13
# chroot (scripts/guest/qemu-trixie.sh) with vhost-user-test-device-pci
# (virtio-id 26, whose shared-memory BAR avpfs sizes with --dax-window),
# Debian's 6.1 guest, avpfs with its sandbox and --seccomp kill.
#
# Part 1, one guest, two request queues, an 8 MiB window, mount -o
# dax=always: reads through read(2) and mmap of a page-aligned file, of
# one whose last page is partial (lent as a copy), and of a 24 MiB file
# (three times the window: mappings recycled); a binary of the share
# executed; stores through mmap and dd conv=notrunc into a file, a new
# file written, a file grown by appending after it was mapped (a refit).
# The host compares every checksum (the same FNV-1a-64 program,
# dax-probe, runs on both sides), and avpfs's control socket shows the
# data went through SETUPMAPPING, not READ, and that mappings were
# recycled (REMOVEMAPPING). Then the guest reboots: the window works in
# the next boot, and the mappings of the first are dropped.
#
# Part 2, VM to VM: one avpfs (--config) serves one share to two guests at
# once, A with -o dax=always, B with -o dax=inode (the share's policy
# picks every file). They map one file and play ping-pong through it, each
# storing to its mapping and spinning on the other's: every round trip
# crosses from one VM to the other through the host's page cache, with no
# file system request (the control socket counts no READ and no WRITE for
# either guest). Then the truncation scenario: A keeps a page of `victim`
# mapped past 2 MiB and reads it in a loop; B truncates `victim` to 4 KiB.
# avpfs refits A's mapping before the file shrinks, so A's QEMU survives
# (without it, QEMU dies of SIGBUS on the first access past the new end):
# A's reads see zeros, and A then reads the 4 KiB file.
#
# Usage: test-dax.sh
# Prints "dax: N passed, M failed"; exits non-zero on a failure. Where
# QEMU 11.1 cannot be installed it says so and skips (exit 0).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh guest test
if ! qemu=$(scripts/guest/qemu-trixie.sh); then
  echo "dax: SKIPPED: QEMU 11.1 cannot be installed here (see ${AVPFS_TRIXIE_DIR:-$HOME/.cache/avpfs-trixie}/setup.log)"
  exit 0
fi
kdir=target/guest/kernel-stable
scripts/guest/fetch-kernel.sh stable "$kdir"
cargo build -q --bin avpfs
probe=$(scripts/guest/build-guest-workload.sh dax-probe)

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "dax ok: $*"; }
fail() { failed=$((failed + 1)); echo "dax FAILED: $*"; }

work=$(mktemp -d /tmp/avpfs-dax.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_sockets() { for _ in $(seq 300); do local all=1; for s in "$@"; do [ -S "$s" ] || all=0; done; [ $all = 1 ] && return 0; sleep 0.05; done; return 1; }
# The value of "KEY value" printed by the guest in console file $1.
said() { tr -d '\r' < "$1" | sed -n "s/.*$2 //p" | head -1; }
# Guest check lines "CHECK name ok|FAIL ..." of console $1 named $2...
checks() {
  local console=$1; shift
  for name in "$@"; do
    local line; line=$(tr -d '\r' < "$console" | grep -o "CHECK $name .*" | head -1 || true)
    case "$line" in
      "CHECK $name ok") pass "guest: $name" ;;
      "") fail "guest: $name did not run" ;;
      *) fail "guest: ${line#CHECK }" ;;
    esac
  done
}
# The statistics of guest $2 (index) from the stats JSON $1: "OP requests" lines.
op_count() {
  /usr/bin/python3 - "$1" "$2" "$3" "$4" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["guests"][int(sys.argv[2])]
ops = {o["op"]: o for o in g["ops"]}
print(ops.get(sys.argv[3], {}).get(sys.argv[4], 0))
PY
}
hostsum() { "$probe" sum "$1" | cut -d' ' -f1; }

# ---------------------------------------------------------------- part 1
share=$work/share
mkdir "$share"
head -c 4194304 /dev/urandom > "$share/aligned"
head -c 3000000 /dev/urandom > "$share/odd"
head -c 25165824 /dev/urandom > "$share/big"
head -c 5000 /dev/urandom > "$share/grow"
head -c 100000 /dev/urandom > "$work/append"
install -m 0755 "$probe" "$share/tool"
for f in aligned odd big; do eval "sum_$f=$(hostsum "$share/$f")"; done
sum_append=$(hostsum "$work/append")

cat > "$work/job1.sh" <<JOB
p=/bin/dax-probe
opts=\$(grep ' /mnt virtiofs ' /proc/mounts)
case "\$opts" in *dax=always*) echo "CHECK mount ok" ;; *) echo "CHECK mount FAIL \$opts" ;; esac
for f in aligned odd big; do
  echo "GUEST-READ-\$f \$(\$p sum /mnt/\$f | cut -d' ' -f1)"
  echo "GUEST-MMAP-\$f \$(\$p mmap-sum /mnt/\$f | cut -d' ' -f1)"
done
echo "GUEST-EXEC \$(/mnt/tool sum /mnt/odd | cut -d' ' -f1)"
\$p mmap-fill /mnt/aligned 8192 100000 171 > /dev/null && echo "CHECK mmap-store ok" || echo "CHECK mmap-store FAIL"
dd if=/dev/urandom of=/mnt/aligned bs=4096 seek=300 count=10 conv=notrunc 2>/dev/null && echo "CHECK dd-notrunc ok" || echo "CHECK dd-notrunc FAIL"
sync
echo "GUEST-AFTER \$(\$p sum /mnt/aligned | cut -d' ' -f1)"
dd if=/dev/urandom of=/tmp/data bs=64k count=8 2>/dev/null
cp /tmp/data /mnt/from-guest && sync
echo "GUEST-NEW \$(\$p sum /tmp/data | cut -d' ' -f1)"
# Map the last chunk of a 5000-byte file (a copy of its last page), then
# append: the mapping must show the new bytes.
\$p mmap-sum /mnt/grow > /dev/null
cat /data/append >> /mnt/grow
echo "GUEST-GROWN-READ \$(\$p sum /mnt/grow | cut -d' ' -f1)"
echo "GUEST-GROWN-MMAP \$(\$p mmap-sum /mnt/grow | cut -d' ' -f1)"
dmesg | grep -o 'Cache len: 0x[0-9a-f]*' | head -1 | sed 's/^/GUEST-WINDOW /'
echo "CHECK done ok"
JOB

sock=$work/a.sock control=$work/control.sock
target/debug/avpfs --socket-path "$sock" --shared-dir "$share" --tag avpfs --request-queues 2 \
  --dax-window 8M --seccomp kill --control-socket "$control" --keep-listening --log-level warn 2> "$work/daemon1.log" &
daemon=$!
pids+=("$daemon")
wait_sockets "$sock" "$control"
rc=0
QEMU=$qemu scripts/guest/run-guest.sh --kernel "$kdir" --socket "$sock" --tag avpfs --queues 2 \
  --fs-device test-device --fs-options dax=always --bin "$probe" --file "$work/append" \
  --job "$work/job1.sh" --timeout 600 > "$work/console1" 2>&1 || rc=$?
target/debug/avpfs ctl --control-socket "$control" stats > "$work/stats1.json" || true
tr -d '\r' < "$work/console1" | grep -oE '(CHECK|GUEST-[A-Z-]+|GUEST-[A-Z]+-[a-z]+) .*' | sed 's/^/  guest 1: /' || true
[ $rc = 0 ] && pass "part 1: the guest job finished" || fail "part 1: guest job exit $rc"
checks "$work/console1" mount mmap-store dd-notrunc done
[ "$(said "$work/console1" 'GUEST-WINDOW Cache len:')" = 0x800000 ] && pass "the guest sees an 8 MiB window" \
  || fail "the guest's window: $(said "$work/console1" 'GUEST-WINDOW Cache len:')"
for f in aligned odd big; do
  want=$(eval echo "\$sum_$f")
  [ "$(said "$work/console1" "GUEST-READ-$f")" = "$want" ] && pass "read(2) of $f ($(stat -c %s "$share/$f") bytes) matches the host" \
    || fail "read(2) of $f: guest $(said "$work/console1" "GUEST-READ-$f"), host $want"
  [ "$(said "$work/console1" "GUEST-MMAP-$f")" = "$want" ] && pass "mmap of $f matches the host" \
    || fail "mmap of $f: guest $(said "$work/console1" "GUEST-MMAP-$f"), host $want"
done
[ "$(said "$work/console1" GUEST-EXEC)" = "$sum_odd" ] && pass "a binary of the share runs (and reads odd right)" \
  || fail "the binary of the share: '$(said "$work/console1" GUEST-EXEC)'"
[ -n "$(said "$work/console1" GUEST-AFTER)" ] && [ "$(said "$work/console1" GUEST-AFTER)" = "$(hostsum "$share/aligned")" ] \
  && [ "$(hostsum "$share/aligned")" != "$sum_aligned" ] && pass "the stores through mmap and dd reached the host file" \
  || fail "stores: guest '$(said "$work/console1" GUEST-AFTER)', host $(hostsum "$share/aligned")"
[ -n "$(said "$work/console1" GUEST-NEW)" ] && [ "$(said "$work/console1" GUEST-NEW)" = "$(hostsum "$share/from-guest" 2>/dev/null)" ] \
  && pass "the guest's new file arrived intact" || fail "the guest's new file is missing or differs"
grown=$(hostsum "$share/grow")
[ "$(stat -c %s "$share/grow")" = 105000 ] && [ "$(said "$work/console1" GUEST-GROWN-READ)" = "$grown" ] \
  && [ "$(said "$work/console1" GUEST-GROWN-MMAP)" = "$grown" ] \
  && pass "a mapped file grown by appending shows its new bytes (read and mmap)" \
  || fail "grown file: read '$(said "$work/console1" GUEST-GROWN-READ)' mmap '$(said "$work/console1" GUEST-GROWN-MMAP)' host $grown"
maps=$(op_count "$work/stats1.json" 0 SETUPMAPPING requests 2>/dev/null || echo 0)
unmaps=$(op_count "$work/stats1.json" 0 REMOVEMAPPING requests 2>/dev/null || echo 0)
read_bytes=$(op_count "$work/stats1.json" 0 READ bytes_out 2>/dev/null || echo unknown)
[ "$maps" -gt 12 ] && [ "$unmaps" -gt 0 ] && pass "$maps SETUPMAPPINGs, $unmaps REMOVEMAPPINGs: mappings recycled in a window smaller than a file" \
  || fail "SETUPMAPPING $maps, REMOVEMAPPING $unmaps"
[ "$read_bytes" != unknown ] && [ "$read_bytes" -lt 1000000 ] && pass "READ carried $read_bytes bytes of the ~70 MB read: the data went through the window" \
  || fail "READ carried $read_bytes bytes"
kill -0 "$daemon" 2>/dev/null && pass "avpfs (sandbox, --seccomp kill) still runs" || fail "avpfs died: $(tail -3 "$work/daemon1.log")"

# A guest reboot: the first boot maps all of the 8 MiB window (24 MiB
# file), unmounts and reboots; the second maps two chunks of `odd` and
# waits while the host asks avpfs how many mappings the window holds: the
# first boot's are gone (else at least 4).
cat > "$work/job-reboot.sh" <<JOB
p=/bin/dax-probe
if [ -e /mnt/booted-once ]; then
  echo "GUEST-BOOT2 \$(\$p mmap-sum /mnt/odd | cut -d' ' -f1)"
  echo "GUEST-BOOT2-MAPPED"
  sleep 8
else
  touch /mnt/booted-once
  \$p mmap-sum /mnt/big > /dev/null
  echo "GUEST-BOOT1-MAPPED"
  # As an init system reboots: unmount (FUSE_DESTROY), then reset.
  cd / && umount /mnt && echo "GUEST-UNMOUNTED"
  reboot -f
fi
JOB
QEMU=$qemu scripts/guest/run-guest.sh --kernel "$kdir" --socket "$sock" --tag avpfs --queues 2 \
  --fs-device test-device --fs-options dax=always --bin "$probe" --allow-reboot \
  --job "$work/job-reboot.sh" --timeout 600 > "$work/console-reboot" 2>&1 &
qr=$!
mapped=""
for _ in $(seq 1200); do
  kill -0 $qr 2>/dev/null || break
  if grep -q GUEST-BOOT2-MAPPED "$work/console-reboot" 2>/dev/null; then
    mapped=$(target/debug/avpfs ctl --control-socket "$control" stats \
      | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["guests"][0]["dax_mappings"])' || true)
    break
  fi
  sleep 0.25
done
rc=0; wait $qr || rc=$?
grep -q GUEST-UNMOUNTED "$work/console-reboot" && [ $rc = 0 ] && [ "$(said "$work/console-reboot" GUEST-BOOT2)" = "$sum_odd" ] \
  && pass "after a guest reboot the window works: odd reads right" || fail "reboot: exit $rc, boot 2 read '$(said "$work/console-reboot" GUEST-BOOT2)'"
[ -n "$mapped" ] && [ "$mapped" -le 2 ] && pass "after the reboot the window holds $mapped mappings: the first boot's were dropped" \
  || fail "after the reboot the window holds '${mapped}' mappings"
kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true

# ---------------------------------------------------------------- part 2
share2=$work/share2
mkdir "$share2"
head -c 4194304 /dev/zero > "$share2/shared"
head -c 4194304 /dev/urandom > "$share2/victim"
rounds=200
printf '[dax]\nfiles = "all"\n' > "$work/policy.toml"
cat > "$work/avpfs.toml" <<TOML
[[share]]
name = "s"
shared_dir = "$share2"
policy = "$work/policy.toml"

[[guest]]
name = "a"
socket_path = "$work/a2.sock"
share = "s"
tag = "avpfs"
request_queues = 1
dax_window = "64M"

[[guest]]
name = "b"
socket_path = "$work/b2.sock"
share = "s"
tag = "avpfs"
request_queues = 1
dax_window = "64M"
TOML
cat > "$work/job-a.sh" <<JOB
p=/bin/dax-probe
\$p pong /mnt/shared $rounds 300000 | tail -1 | sed 's/^/GUEST-PONG /'
# Keep a page past 2 MiB of victim mapped and read it in a loop (30 s).
\$p watch /mnt/victim 3145728 12345 30000 > /tmp/watch 2>&1 &
w=\$!
sleep 3
\$p store /mnt/shared 256 7 > /dev/null
wait \$w
echo "GUEST-WATCH \$(cat /tmp/watch)"
echo "GUEST-VICTIM \$(\$p sum /mnt/victim)"
echo "CHECK a-survived ok"
JOB
cat > "$work/job-b.sh" <<JOB
p=/bin/dax-probe
case "\$(grep ' /mnt virtiofs ' /proc/mounts)" in *dax=inode*) echo "CHECK dax-inode ok" ;; *) echo "CHECK dax-inode FAIL" ;; esac
\$p ping /mnt/shared $rounds 300000 | sed 's/^/GUEST-PING /'
\$p watch /mnt/shared 256 7 200000 > /dev/null && truncate -s 4096 /mnt/victim && echo "CHECK truncated ok" || echo "CHECK truncated FAIL"
JOB
# Boots guests A and B at once on the part-2 daemon, with mount options
# $1 and $2, running job-a$3.sh and job-b$3.sh; consoles console-a$3 and
# console-b$3; exit statuses in rca and rcb.
two_guests() {
  rca=0 rcb=0
  QEMU=$qemu scripts/guest/run-guest.sh --kernel "$kdir" --socket "$work/a2.sock" --tag avpfs --fs-device test-device \
    --fs-options "$1" --bin "$probe" --job "$work/job-a$3.sh" --timeout 900 > "$work/console-a$3" 2>&1 &
  local qa=$!
  QEMU=$qemu scripts/guest/run-guest.sh --kernel "$kdir" --socket "$work/b2.sock" --tag avpfs --fs-device test-device \
    --fs-options "$2" --bin "$probe" --job "$work/job-b$3.sh" --timeout 900 > "$work/console-b$3" 2>&1 || rcb=$?
  wait $qa || rca=$?
}
control2=$work/control2.sock
target/debug/avpfs --config "$work/avpfs.toml" --seccomp kill --control-socket "$control2" --log-level warn 2> "$work/daemon2.log" &
daemon=$!
pids+=("$daemon")
wait_sockets "$work/a2.sock" "$work/b2.sock" "$control2"
two_guests dax=always dax=inode ""
target/debug/avpfs ctl --control-socket "$control2" stats > "$work/stats2.json" || true
for g in a b; do tr -d '\r' < "$work/console-$g" | grep -oE '(CHECK|GUEST-[A-Z]+) .*' | sed "s/^/  guest $g: /" || true; done
[ $rca = 0 ] && pass "guest A's QEMU ran its job to the end (the truncation did not kill it)" || fail "guest A exit $rca"
[ $rcb = 0 ] && pass "guest B's job finished" || fail "guest B exit $rcb"
checks "$work/console-a" a-survived
checks "$work/console-b" dax-inode truncated
ping=$(said "$work/console-b" GUEST-PING)
case "$ping" in
  "ping $rounds rounds: min_us="*) pass "VM-to-VM ping-pong through one mapped file: $ping (round trips)" ;;
  *) fail "ping-pong: '$ping' / '$(said "$work/console-a" GUEST-PONG)'" ;;
esac
[ "$(said "$work/console-a" GUEST-PONG)" = "pong ok $rounds" ] && pass "guest A answered every ping" || fail "guest A: '$(said "$work/console-a" GUEST-PONG)'"
for i in 0 1; do
  name=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['guests'][$i]['name'])" "$work/stats2.json" 2>/dev/null || echo "?")
  r=$(op_count "$work/stats2.json" $i READ requests 2>/dev/null || echo unknown)
  wr=$(op_count "$work/stats2.json" $i WRITE requests 2>/dev/null || echo unknown)
  m=$(op_count "$work/stats2.json" $i SETUPMAPPING requests 2>/dev/null || echo 0)
  [ "$r" = 0 ] && [ "$wr" = 0 ] && [ "$m" -gt 0 ] && pass "guest $name: $m SETUPMAPPINGs, no READ, no WRITE: the data crossed in shared memory" \
    || fail "guest $name: READ $r WRITE $wr SETUPMAPPING $m"
done
[ "$(said "$work/console-a" GUEST-VICTIM)" = "$("$probe" sum "$share2/victim")" ] && [ "$(stat -c %s "$share2/victim")" = 4096 ] \
  && pass "guest A then reads the truncated 4 KiB file right" \
  || fail "after the truncation guest A read '$(said "$work/console-a" GUEST-VICTIM)'"
kill -0 "$daemon" 2>/dev/null && pass "avpfs (two guests, --seccomp kill) still runs" || fail "avpfs died: $(tail -3 "$work/daemon2.log")"

# ---------------------------------------------------------------- part 3
# The control: the same two guests and file without DAX (-o dax=never).
# Each guest's mapping is its own page cache: a store never reaches the
# other guest's mapping, and the first ping waits in vain.
head -c 4194304 /dev/zero > "$share2/shared"
cat > "$work/job-a3.sh" <<JOB
/bin/dax-probe pong /mnt/shared 3 40000 > /dev/null 2>&1; echo "GUEST-PONG-EXIT \$?"
JOB
cat > "$work/job-b3.sh" <<JOB
/bin/dax-probe ping /mnt/shared 3 20000 > /tmp/ping 2>&1; echo "GUEST-PING-EXIT \$?"
JOB
two_guests dax=never dax=never 3
if [ $rca = 0 ] && [ $rcb = 0 ] && [ "$(said "$work/console-b3" GUEST-PING-EXIT)" = 1 ] \
  && [ "$(said "$work/console-a3" GUEST-PONG-EXIT)" = 1 ]; then
  pass "without DAX the other guest's mapping never sees the store (ping and pong time out)"
else
  fail "without DAX: ping exit '$(said "$work/console-b3" GUEST-PING-EXIT)', pong exit '$(said "$work/console-a3" GUEST-PONG-EXIT)', guests $rca $rcb"
fi

if [ $failed != 0 ]; then
  for c in console1 console-reboot console-a console-b console-a3 console-b3; do [ -f "$work/$c" ] && { echo "--- $c"; tr -d '\r' < "$work/$c" | tail -n 25; }; done
  for d in daemon1.log daemon2.log; do [ -f "$work/$d" ] && { echo "--- $d"; tail -n 15 "$work/$d"; }; done
fi
echo "dax: $passed passed, $failed failed"
[ $failed = 0 ]
