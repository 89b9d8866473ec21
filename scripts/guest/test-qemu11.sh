#!/usr/bin/env bash
# Smoke test of QEMU 11.1 from the Debian 13 chroot (scripts/guest/qemu-trixie.sh),
# the ground the DAX and migration work builds on:
#  1. the chroot is made (or found) and its QEMU is 11.1;
#  2. Debian's 6.1 and 6.12 guests mount an avpfs share on it, through
#     vhost-user-fs-pci and through vhost-user-test-device-pci with
#     virtio-id=26 (run-guest.sh --fs-device test-device), read what the
#     host wrote and write what the host then checks; with the test device
#     the guest's dmesg shows virtiofs probing without a DAX window;
#  3. migration between two QEMU 11.1 processes over a unix socket, driven
#     by QMP (scripts/guest/qmp.py): a guest without virtio-fs migrates mid-
#     job and finishes on the destination (with an avpfs share:
#     scripts/guest/test-migration.sh, in make test).
# Not part of `make test`. Installs what it needs; stops what it started.
#
# Usage: test-qemu11.sh [--sections "chroot guests migration"] [--kernels "stable backports"]
# Prints one line per check, timings, and "qemu11: N passed, M failed";
# exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
sections="chroot guests migration" kernels="stable backports"
while [ $# -gt 0 ]; do
  case "$1" in
    --sections) sections=$2; shift 2 ;;
    --kernels) kernels=$2; shift 2 ;;
    *) echo "test-qemu11: unknown argument $1" >&2; exit 2 ;;
  esac
done
want() { case " $sections " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "qemu11 ok: $*"; }
fail() { failed=$((failed + 1)); echo "qemu11 FAILED: $*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

work=$(mktemp -d /tmp/avpfs-qemu11.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

scripts/install-deps.sh guest
cargo build -q --bin avpfs
avpfs=target/debug/avpfs
for k in $kernels; do scripts/guest/fetch-kernel.sh "$k" "target/guest/kernel-$k"; done

# 1. The chroot and its QEMU.
t=$(now_ms)
if ! qemu=$(scripts/guest/qemu-trixie.sh); then
  fail "chroot: qemu-trixie.sh failed"
  echo "qemu11: $passed passed, $((failed)) failed"
  exit 1
fi
echo "qemu11: qemu-trixie.sh took $(($(now_ms) - t)) ms"
version=$("$qemu" --version | head -n1)
if want chroot; then
  case "$version" in
    "QEMU emulator version 11.1."*) pass "chroot: $version" ;;
    *) fail "chroot: QEMU is not 11.1: $version" ;;
  esac
  (cd / && "$qemu" -device help) > "$work/devices" 2>&1 || true
  grep -q '"vhost-user-test-device-pci"' "$work/devices" &&
    pass "chroot: QEMU has vhost-user-test-device-pci" || fail "chroot: no vhost-user-test-device-pci"
  # The wrapper leaves no mount behind.
  if findmnt -rn -o TARGET | grep -q "avpfs-trixie"; then
    fail "chroot: something stays mounted under the chroot: $(findmnt -rn -o TARGET | grep avpfs-trixie | head -n3)"
  else
    pass "chroot: nothing stays mounted after QEMU runs"
  fi
fi

start_avpfs() { # share socket [flags...]; sets avpfs_pid
  local share=$1 sock=$2; shift 2
  rm -f "$sock"
  "$avpfs" --socket-path "$sock" --shared-dir "$share" --log-level warn "$@" 2>> "$work/avpfs.log" &
  avpfs_pid=$!
  pids+=("$avpfs_pid")
  for _ in $(seq 200); do [ -S "$sock" ] && return 0; sleep 0.05; done
  echo "test-qemu11: avpfs did not create $sock" >&2
  return 1
}

# 2. Guests on avpfs, both device models, both kernels.
if want guests; then
  cat > "$work/guest-job.sh" <<'JOB'
check() { if [ "$2" = ok ]; then echo "CHECK $1 ok"; else echo "CHECK $1 FAIL $2"; fi; }
grep -q ' /mnt virtiofs ' /proc/mounts && check mount ok || check mount "not mounted"
sum=$(md5sum < /mnt/from-host | cut -d' ' -f1)
echo "GUEST-READ $sum"
dd if=/dev/urandom of=/mnt/from-guest bs=64k count=16 2>/dev/null && sync
echo "GUEST-WROTE $(md5sum < /mnt/from-guest | cut -d' ' -f1)"
dmesg | grep -iE 'virtio|fuse' | sed 's/^/DMESG /'
JOB
  for k in $kernels; do
    kdir=target/guest/kernel-$k
    kver=$(sed 's/linux-image-//; s/-amd64//' "$kdir/package")
    for dev in fs test-device; do
      name="guest $kver $dev"
      share=$work/share-$k-$dev
      mkdir -p "$share"
      head -c 200000 /dev/urandom > "$share/from-host"
      host_sum=$(md5sum < "$share/from-host" | cut -d' ' -f1)
      flags=(--tag q11)
      [ "$dev" = fs ] || flags+=(--request-queues 1)
      rc=0
      for attempt in 1 2; do
        start_avpfs "$share" "$work/fs.sock" "${flags[@]}"
        t=$(now_ms) rc=0
        QEMU=$qemu scripts/guest/run-guest.sh --kernel "$kdir" --socket "$work/fs.sock" --tag q11 \
          --fs-device "$dev" --queues 1 --job "$work/guest-job.sh" --timeout 240 \
          > "$work/console-$k-$dev" 2>&1 || rc=$?
        ms=$(($(now_ms) - t))
        wait "$avpfs_pid" 2>/dev/null || kill "$avpfs_pid" 2>/dev/null || true
        # A TCG guest now and then hangs or oopses while booting, before
        # the job starts (see test-guest.sh); boot it once more.
        if [ $rc = 0 ] || grep -q "CHECK mount" "$work/console-$k-$dev"; then break; fi
        echo "qemu11: $name: the guest did not start the job (rc $rc), booting it again"
      done
      console=$work/console-$k-$dev
      if [ $rc = 0 ] && grep -q "CHECK mount ok" "$console"; then
        pass "$name: boots, mounts the avpfs share and exits 0 (${ms} ms)"
      else
        fail "$name: rc $rc; console: $(tr -d '\r' < "$console" | grep -v '^DMESG' | tail -n 5 | tr '\n' '|')"
        continue
      fi
      grep -q "GUEST-READ $host_sum" "$console" && pass "$name: the guest reads the host's file" ||
        fail "$name: the guest read other data"
      guest_sum=$(sed -n 's/.*GUEST-WROTE \([0-9a-f]*\).*/\1/p' "$console")
      if [ -n "$guest_sum" ] && [ "$(md5sum < "$share/from-guest" | cut -d' ' -f1)" = "$guest_sum" ]; then
        pass "$name: the host reads the guest's file"
      else
        fail "$name: the guest's file differs on the host"
      fi
      if [ "$dev" = test-device ]; then
        dax=$(tr -d '\r' < "$console" | grep -o 'virtiofs virtio[0-9]*: virtio_fs_setup_dax: .*' | head -n1)
        [ -n "$dax" ] && pass "$name: dmesg: $dax" || fail "$name: no virtio_fs_setup_dax line in dmesg"
      fi
      grep -h 'qemu-system-x86_64:' "$console" | sort -u | sed "s/^/qemu11: $name: QEMU: /" || true
    done
  done
fi

# 3. Migration between two QEMU processes on this machine.
if want migration; then
  kdir=target/guest/kernel-stable
  [ -d "$kdir" ] || scripts/guest/fetch-kernel.sh stable "$kdir"
  qmp=scripts/guest/qmp.py
  # The guest prints a numbered line every 0.25 s, then exits.
  cat > "$work/tick-job.sh" <<'JOB'
i=0
while [ $i -lt 40 ]; do
  i=$((i + 1))
  echo "TICK $i"
  sleep 0.25
done
JOB
  scripts/guest/make-initramfs.sh --kernel "$kdir" --job "$work/tick-job.sh" --no-share --out "$work/plain.gz"

  start_vm() { # name initrd [qemu args...]; sets vm_pid; serial to $work/NAME.serial
    local name=$1 initrd=$2; shift 2
    rm -f "$work/$name.qmp"
    "$qemu" -accel tcg -nic none -m 1G -smp 2 -display none -no-reboot \
      -kernel "$kdir/vmlinuz" -initrd "$initrd" \
      -append "console=ttyS0 quiet loglevel=3 panic=-1 tsc=reliable" \
      -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem \
      -serial "file:$work/$name.serial" -monitor none \
      -qmp "unix:$work/$name.qmp,server=on,wait=off" "$@" 2> "$work/$name.stderr" &
    vm_pid=$!
    pids+=("$vm_pid")
    "$qmp" "$work/$name.qmp" --wait-socket --timeout 30
  }
  . scripts/guest/vm-wait.sh

  # 3a. No virtio-fs device: the migration machinery itself.
  for _ in 1 2; do
    rm -f "$work"/plain-*.serial "$work/mig.sock"
    start_vm plain-src "$work/plain.gz"; src=$vm_pid
    start_vm plain-dst "$work/plain.gz" -incoming "unix:$work/mig.sock"; dst=$vm_pid
    wait_serial plain-src "TICK 4" 120 && break
    echo "qemu11: migration: the source guest did not start its job, booting it again"
    stop_vm plain-src "$src"; stop_vm plain-dst "$dst"
  done
  t=$(now_ms)
  if "$qmp" "$work/plain-src.qmp" migrate "{\"uri\": \"unix:$work/mig.sock\"}" > /dev/null 2> "$work/migrate.err" &&
     "$qmp" "$work/plain-src.qmp" --wait-migration --timeout 120 > "$work/migrate.json" 2>> "$work/migrate.err"; then
    ms=$(($(now_ms) - t))
    stats=$(python3 - "$work/migrate.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
r = m.get("ram", {})
print("QEMU: total-time %s ms, downtime %s ms, setup %s ms, %d KiB sent, %s zero pages"
      % (m.get("total-time"), m.get("downtime"), m.get("setup-time"),
         r.get("transferred", 0) // 1024, r.get("duplicate")))
PY
)
    pass "migration without virtio-fs: completed in $ms ms ($stats)"
    src_status=$("$qmp" "$work/plain-src.qmp" query-status || true)
    case "$src_status" in *postmigrate*) pass "migration: the source is in postmigrate" ;;
      *) fail "migration: the source is $src_status" ;; esac
    if wait_exit "$dst" 120 && grep -q "AVPFS-EXIT 0" "$work/plain-dst.serial"; then
      first=$(tr -d '\r' < "$work/plain-dst.serial" | sed -n 's/^TICK \([0-9]*\)$/\1/p' | head -n1)
      last_src=$(tr -d '\r' < "$work/plain-src.serial" | sed -n 's/^TICK \([0-9]*\)$/\1/p' | tail -n1)
      if [ -n "$first" ] && [ "$first" -gt 1 ] && [ "$first" -le $((last_src + 1)) ]; then
        pass "migration: the job went on on the destination (source's last TICK $last_src, destination's first TICK $first) and exited 0"
      else
        fail "migration: the destination's ticks do not continue the source's (source's last $last_src, destination's first ${first:-none})"
      fi
    else
      fail "migration: the destination did not finish the job: $(tr -d '\r' < "$work/plain-dst.serial" | tail -n3 | tr '\n' '|') $(cat "$work/plain-dst.stderr")"
    fi
  else
    fail "migration without virtio-fs: $(cat "$work/migrate.err") $(cat "$work/migrate.json" 2>/dev/null)"
  fi
  stop_vm plain-src "$src"; stop_vm plain-dst "$dst"

  # Migration with an avpfs share: scripts/guest/test-migration.sh.
fi

echo "qemu11: $passed passed, $failed failed"
[ $failed = 0 ]
