#!/usr/bin/env bash
# Live migration of a guest with a virtio-fs share between two QEMU 11.1
# processes on this machine (Debian 13 chroot, scripts/guest/qemu-trixie.sh;
# TCG, 1 GiB memfd guests), each with its own daemon on the share:
#  - the guest job keeps files open (a data file read chunk by chunk, a log
#    appended to, a "victim" file read chunk by chunk) and every ~0.5 s
#    prints the checksums of what it read and appends a line to the log;
#  - migration starts over QMP (migrate, query-migrate) mid-job;
#  - after it, the job must finish on the destination with every checksum
#    right and its open files working, and the destination daemon must have
#    served it; a migration that fails must leave the source guest running
#    to the end of its job.
# Variants (--variants, default all):
#   base               the plain scenario
#   file-handles       both daemons with --migration-mode file-handles
#   rename             the victim is renamed on the host during migration
#   delete-abort       the victim is deleted on the host during migration,
#                      destination with --migration-on-error abort
#   delete-guest-error the same with --migration-on-error guest-error
#   upgrade            the destination daemon is another build (--dst-daemon,
#                      default: this tree built with the `upgrade` profile)
#   config             each daemon started with --config: two guests (the
#                      migrated one with 2 request queues), the share behind
#                      a policy hiding /hidden, which must stay hidden
#   refuse             the destination serves a directory without the
#                      guest's files, --migration-on-error abort: it must
#                      refuse, QEMU's migration fails, the source goes on
# --daemon PATH runs the scenario against another daemon (virtiofsd 1.14:
# --daemon /root/.cache/avpfs-bench/virtiofsd/bin/virtiofsd).
# The return-path capability is on (NO_RETURN_PATH=1: off, and a destination
# that refuses the state leaves the source paused in postmigrate).
# Not part of `make test`; about 1 minute per variant on 2 cores.
#
# Usage: test-migration.sh [--daemon PATH] [--dst-daemon PATH]
#                          [--variants "base rename ..."] [--ticks N]
# Prints one line per check and "migration: N passed, M failed"; exits
# non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
daemon="" dst_daemon="" ticks=50
variants="base file-handles rename delete-abort delete-guest-error upgrade refuse config"
while [ $# -gt 0 ]; do
  case "$1" in
    --daemon) daemon=$2; shift 2 ;;
    --dst-daemon) dst_daemon=$2; shift 2 ;;
    --variants) variants=$2; shift 2 ;;
    --ticks) ticks=$2; shift 2 ;;
    *) echo "test-migration: unknown argument $1" >&2; exit 2 ;;
  esac
done

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "migration ok: $*"; }
fail() { failed=$((failed + 1)); echo "migration FAILED: $*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

work=$(mktemp -d /tmp/avpfs-migration.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

scripts/install-deps.sh guest > /dev/null
if [ -z "$daemon" ]; then
  cargo build -q --bin avpfs
  daemon=$PWD/target/debug/avpfs
fi
kind=avpfs
case "$("$daemon" --version 2>&1)" in virtiofsd*) kind=virtiofsd ;; esac
if [ -z "$dst_daemon" ]; then
  if [ $kind = avpfs ]; then
    # Another build of the same tree: the `upgrade` profile (Cargo.toml).
    cargo build -q --profile upgrade --bin avpfs
    dst_daemon=$PWD/target/upgrade/avpfs
  else
    dst_daemon=$daemon
  fi
fi
kdir=target/guest/kernel-stable
[ -d "$kdir" ] || scripts/guest/fetch-kernel.sh stable "$kdir"
qemu=$(scripts/guest/qemu-trixie.sh)
qmp=scripts/guest/qmp.py
echo "migration: daemon $("$daemon" --version 2>&1 | head -n1) ($daemon), $("$qemu" --version | head -n1)"

# The guest job. fd 3: the data file, read 64 KiB further each tick; fd 4:
# the log, one line appended each tick; fd 5: the victim, read 16 KiB
# further each tick; /mnt/small read by path each tick.
cat > "$work/job.sh" <<JOB
exec 3< /mnt/data
exec 4>> /mnt/out/log
exec 5< /mnt/victim
i=0
while [ \$i -lt $ticks ]; do
  i=\$((i + 1))
  c=\$(dd bs=65536 count=1 <&3 2>/dev/null | md5sum | cut -c1-32)
  if dd bs=16384 count=1 <&5 > /tmp/v 2>/dev/null; then v=\$(md5sum < /tmp/v | cut -c1-32); else v=error; fi
  p=\$(md5sum < /mnt/small | cut -c1-32)
  [ -e /mnt/hidden ] && echo "HIDDEN-VISIBLE \$i"
  echo "line \$i \$c" >&4 || echo "WRITE-FAILED \$i"
  echo "TICK \$i \$c \$v \$p"
  sleep 0.5
done
exec 4>&- 3<&- 5<&-
echo "LOG-LINES \$(wc -l < /mnt/out/log)"
JOB
scripts/guest/make-initramfs.sh --kernel "$kdir" --job "$work/job.sh" --tag mig --out "$work/initrd.gz" > /dev/null

start_daemon() { # binary share socket name [flags...]; sets daemon_pid
  local bin=$1 share=$2 sock=$3 name=$4; shift 4
  local extra=()
  rm -f "$sock"
  if [ "$(basename "$bin")" = virtiofsd ]; then
    extra=(--sandbox none --log-level info)
  else
    extra=(--log-level info --control-socket "$work/$name.ctl")
  fi
  "$bin" --socket-path "$sock" --shared-dir "$share" --tag mig "${extra[@]}" "$@" > "$work/$name.log" 2>&1 &
  daemon_pid=$!
  pids+=("$daemon_pid")
  for _ in $(seq 200); do [ -S "$sock" ] && return 0; sleep 0.05; done
  echo "test-migration: $bin did not create $sock: $(tail -n3 "$work/$name.log")" >&2
  return 1
}
start_vm() { # name [qemu args...]; sets vm_pid
  local name=$1; shift
  rm -f "$work/$name.qmp" "$work/$name.serial"
  "$qemu" -accel tcg -nic none -m 1G -smp 2 -display none -no-reboot \
    -kernel "$kdir/vmlinuz" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 tsc=reliable" \
    -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem \
    -serial "file:$work/$name.serial" -monitor none \
    -qmp "unix:$work/$name.qmp,server=on,wait=off" "$@" 2> "$work/$name.stderr" &
  vm_pid=$!
  pids+=("$vm_pid")
  "$qmp" "$work/$name.qmp" --wait-socket --timeout 30
}
fsdev() { # socket [request queues]
  echo "-chardev socket,id=c0,path=$1 -device vhost-user-fs-pci,chardev=c0,tag=mig,queue-size=1024,num-request-queues=${2:-1}"
}
start_config_daemon() { # binary config socket name; sets daemon_pid
  local bin=$1 config=$2 sock=$3 name=$4
  rm -f "$sock"
  "$bin" --config "$config" --log-level info > "$work/$name.log" 2>&1 &
  daemon_pid=$!
  pids+=("$daemon_pid")
  for _ in $(seq 200); do [ -S "$sock" ] && return 0; sleep 0.05; done
  echo "test-migration: $bin did not create $sock: $(tail -n3 "$work/$name.log")" >&2
  return 1
}
. scripts/guest/vm-wait.sh

# Checks a finished job: every TICK's checksums against the host's files,
# the log's lines, the log's line count. Prints "ok ..." / "bad ..." lines.
verify() { # serial-files... (in order)
  python3 - "$work/orig" "$ticks" "$@" <<'PY'
import hashlib, re, sys
orig, ticks, serials = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
data = open(f"{orig}/data", "rb").read()
victim = open(f"{orig}/victim", "rb").read()
small = hashlib.md5(open(f"{orig}/small", "rb").read()).hexdigest()
chunk = lambda b, n, i: hashlib.md5(b[(i - 1) * n:i * n]).hexdigest()
seen, bad_data, bad_small, bad_victim, err_victim, write_fail = {}, [], [], [], [], []
for s in serials:
    for line in open(s, errors="replace"):
        line = line.strip("\r\n")
        m = re.match(r"TICK (\d+) (\w+) (\w+) (\w+)$", line)
        if m:
            i = int(m.group(1)); seen[i] = s
            if m.group(2) != chunk(data, 65536, i): bad_data.append(i)
            if m.group(3) == "error": err_victim.append(i)
            elif m.group(3) != chunk(victim, 16384, i): bad_victim.append(i)
            if m.group(4) != small: bad_small.append(i)
        if line.startswith("WRITE-FAILED"): write_fail.append(line.split()[1])
missing = [i for i in range(1, ticks + 1) if i not in seen]
print("ok ticks" if not missing else f"bad ticks missing {missing[:5]}...")
print("ok data" if not bad_data else f"bad data chunks wrong at ticks {bad_data[:8]}")
print("ok small" if not bad_small else f"bad small wrong at ticks {bad_small[:8]}")
if bad_victim:
    print(f"bad victim wrong data at {len(bad_victim)} ticks from {bad_victim[0]}")
elif err_victim:
    print(f"err victim read errors at {len(err_victim)} ticks from {err_victim[0]}, never wrong data")
else:
    print("ok victim")
print("ok writes" if not write_fail else f"bad log writes failed at ticks {write_fail[:8]}")
PY
}
verify_log() { # share
  python3 - "$work/orig/data" "$1/out/log" "$ticks" <<'PY'
import hashlib, sys
data = open(sys.argv[1], "rb").read()
lines = open(sys.argv[2]).read().splitlines()
n = int(sys.argv[3])
want = [f"line {i} {hashlib.md5(data[(i - 1) * 65536:i * 65536]).hexdigest()}" for i in range(1, n + 1)]
print("ok" if lines == want else f"bad: {len(lines)} lines, first difference at {next((i + 1 for i, (a, b) in enumerate(zip(lines, want)) if a != b), min(len(lines), n) + 1)}")
PY
}
# Requests the destination daemon served (avpfs: its control socket; virtiofsd: none to ask).
served() { # name
  if [ -S "$work/$1.ctl" ]; then
    "$daemon" ctl --control-socket "$work/$1.ctl" stats 2>/dev/null |
      python3 -c 'import json,sys
def walk(o):
    if isinstance(o, dict):
        return sum(v if k == "requests" and isinstance(v, int) else walk(v) for k, v in o.items())
    if isinstance(o, list):
        return sum(walk(v) for v in o)
    return 0
print(walk(json.load(sys.stdin)))' 2>/dev/null || echo "?"
  else
    echo "?"
  fi
}

mkdir -p "$work/orig"
head -c $((ticks * 65536 + 65536)) /dev/urandom > "$work/orig/data"
head -c $((ticks * 16384 + 16384)) /dev/urandom > "$work/orig/victim"
head -c 65536 /dev/urandom > "$work/orig/small"

run_variant() { # variant
  local v=$1 share=$work/share-$1 dst_share dst_bin=$daemon src_flags=() dst_flags=() expect=complete action=""
  rm -rf "$share"; mkdir -p "$share/out"
  cp "$work/orig/data" "$work/orig/victim" "$work/orig/small" "$share/"
  dst_share=$share
  case "$v" in
    base) ;;
    file-handles) src_flags=(--migration-mode file-handles); dst_flags=(--migration-mode file-handles)
      [ $kind = virtiofsd ] && dst_flags+=(--modcaps=+dac_read_search) ;;
    rename) action=rename ;;
    delete-abort) action=delete dst_flags=(--migration-on-error abort) expect=fail ;;
    delete-guest-error) action=delete dst_flags=(--migration-on-error guest-error) ;;
    upgrade) dst_bin=$dst_daemon ;;
    config) if [ $kind != avpfs ]; then echo "migration: $kind config: skipped (avpfs's --config)"; return; fi ;;
    refuse) dst_share=$work/share-$1-empty dst_flags=(--migration-on-error abort) expect=fail
      mkdir -p "$dst_share" ;;
    *) fail "$v: unknown variant"; return ;;
  esac
  local name="$kind $v"
  local queues=1
  if [ "$v" = config ]; then
    # Each daemon serves two guests from a --config file (the migrated one
    # with two request queues), the share behind a policy that hides
    # /hidden; the other guest's session must stay as it is.
    queues=2
    echo "kept from the guest" > "$share/hidden"
    printf '[paths]\nhidden = ["hidden"]\n' > "$work/policy.toml"
    for side in src dst; do
      cat > "$work/$side.toml" <<CONF
[daemon]
control_socket = "$work/$side-$v.ctl"
[[share]]
name = "data"
shared_dir = "$share"
policy = "$work/policy.toml"
[[guest]]
name = "mig"
socket_path = "$work/$side.sock"
share = "data"
tag = "mig"
request_queues = 2
[[guest]]
name = "other"
socket_path = "$work/$side-other.sock"
share = "data"
CONF
    done
    start_config_daemon "$daemon" "$work/src.toml" "$work/src.sock" "src-$v"; local src_d=$daemon_pid
    start_config_daemon "$dst_bin" "$work/dst.toml" "$work/dst.sock" "dst-$v"; local dst_d=$daemon_pid
  else
  start_daemon "$daemon" "$share" "$work/src.sock" "src-$v" "${src_flags[@]}"; local src_d=$daemon_pid
  start_daemon "$dst_bin" "$dst_share" "$work/dst.sock" "dst-$v" "${dst_flags[@]}"; local dst_d=$daemon_pid
  fi
  rm -f "$work/mig.sock"
  # shellcheck disable=SC2046 # the device's words are meant to split
  start_vm "src-$v" $(fsdev "$work/src.sock" $queues); local src=$vm_pid
  # shellcheck disable=SC2046
  start_vm "dst-$v" $(fsdev "$work/dst.sock" $queues) -incoming "unix:$work/mig.sock"; local dst=$vm_pid
  if ! wait_serial "src-$v" "TICK 6 " 180; then
    fail "$name: the source guest did not start its job: $(tr -d '\r' < "$work/src-$v.serial" | tail -n3 | tr '\n' '|')"
    stop_vm "src-$v" "$src"; stop_vm "dst-$v" "$dst"; kill "$src_d" "$dst_d" 2>/dev/null || true
    return
  fi
  # The return path lets the destination report a state it refused: the
  # source then fails the migration and resumes the guest, instead of
  # stopping in postmigrate with nobody running the guest.
  if [ -z "${NO_RETURN_PATH:-}" ]; then
    for side in src dst; do
      "$qmp" "$work/$side-$v.qmp" migrate-set-capabilities \
        '{"capabilities": [{"capability": "return-path", "state": true}]}' > /dev/null
    done
  fi
  local t rc=0 ms
  t=$(now_ms)
  "$qmp" "$work/src-$v.qmp" migrate "{\"uri\": \"unix:$work/mig.sock\"}" > /dev/null 2> "$work/$v.migrate.err" || rc=$?
  case "$action" in
    rename) mv "$share/victim" "$share/victim-renamed" ;;
    delete) rm "$share/victim" ;;
  esac
  if [ $rc = 0 ]; then
    "$qmp" "$work/src-$v.qmp" --wait-migration --timeout 240 > "$work/$v.migrate.json" 2>> "$work/$v.migrate.err" || rc=$?
  fi
  ms=$(($(now_ms) - t))
  local info
  info=$(python3 - "$work/$v.migrate.json" <<'PY' 2>/dev/null || true
import json, sys
m = json.load(open(sys.argv[1]))
print("status %s, total-time %s ms, downtime %s ms, %d KiB sent%s" % (m.get("status"), m.get("total-time"),
      m.get("downtime"), m.get("ram", {}).get("transferred", 0) // 1024,
      ", error: " + m["error-desc"] if "error-desc" in m else ""))
PY
)
  local qerr
  qerr=$(sed 's/^qmp: //' "$work/$v.migrate.err" | tr '\n' ' ')
  if grep -q LOG_SHMFD "$work/$v.migrate.err" "$work/$v.migrate.json" 2>/dev/null; then
    fail "$name: QEMU refuses: it says the back end lacks LOG_SHMFD: $qerr"
  fi
  if [ $rc = 0 ]; then
    if [ $expect = complete ]; then pass "$name: migration completed in $ms ms ($info)"
    else fail "$name: migration completed although the destination should refuse ($info)"; fi
    # The destination's daemon, asked while the job runs there (it exits
    # with its guest): requests served since the switch.
    sleep 2
    local n
    n=$(served "dst-$v")
    if [ "$n" = "?" ]; then
      echo "migration: $name: the destination daemon has no stats to ask (not avpfs)"
    elif [ "$n" -gt 0 ]; then
      pass "$name: the destination daemon served $n requests after the switch"
    else
      fail "$name: the destination daemon served no request"
    fi
    if wait_exit "$dst" 240 && grep -q "AVPFS-EXIT 0" "$work/dst-$v.serial"; then
      local first last
      first=$(tr -d '\r' < "$work/dst-$v.serial" | sed -n 's/^TICK \([0-9]*\) .*/\1/p' | head -n1)
      last=$(tr -d '\r' < "$work/src-$v.serial" | sed -n 's/^TICK \([0-9]*\) .*/\1/p' | tail -n1)
      pass "$name: the job went on on the destination (source's last TICK $last, destination's first ${first:-none}) and exited 0"
    else
      fail "$name: the destination did not finish the job: $(tr -d '\r' < "$work/dst-$v.serial" | tail -n3 | tr '\n' '|')"
    fi
    while read -r verdict what rest; do
      case "$v:$what:$verdict" in
        delete-guest-error:victim:err) pass "$name: the deleted victim's reads fail after migration ($rest)" ;;
        *:ok) pass "$name: $what checksums right on source and destination" ;;
        *) fail "$name: $what: $rest" ;;
      esac
    done < <(verify "$work/src-$v.serial" "$work/dst-$v.serial")
    if [ "$v" = config ]; then
      if grep -q HIDDEN-VISIBLE "$work/src-$v.serial" "$work/dst-$v.serial"; then
        fail "$name: the policy's hidden file was visible: $(grep -h HIDDEN-VISIBLE "$work/src-$v.serial" "$work/dst-$v.serial" | head -n2 | tr -d '\r' | tr '\n' ' ')"
      else
        pass "$name: the policy's hidden file stayed hidden before and after the switch"
      fi
    fi
    local log
    log=$(verify_log "$share")
    [ "$log" = ok ] && pass "$name: the log written through the open handle has every line right" ||
      fail "$name: the log written through the open handle: $log"
  else
    local why="$qerr $info"
    if [ $expect = fail ]; then
      pass "$name: migration refused as it should be after $ms ms: $why"
    else
      fail "$name: migration failed: $why"
    fi
    local st
    st=$("$qmp" "$work/src-$v.qmp" query-status 2>/dev/null || true)
    case "$st" in *'"running"'*) pass "$name: the source guest is running after the failed migration" ;;
      *) fail "$name: the source guest is not running: $st" ;; esac
    if wait_exit "$src" 240 && grep -q "AVPFS-EXIT 0" "$work/src-$v.serial"; then
      pass "$name: the source guest finished its job"
    else
      fail "$name: the source guest did not finish: $(tr -d '\r' < "$work/src-$v.serial" | tail -n3 | tr '\n' '|')"
    fi
    while read -r verdict what rest; do
      case "$v:$what:$verdict" in
        delete-*:victim:bad) echo "migration: $name: victim after its deletion on the source: $rest" ;;
        *:ok) pass "$name: $what checksums right on the source" ;;
        *) fail "$name: $what: $rest" ;;
      esac
    done < <(verify "$work/src-$v.serial")
    local log
    log=$(verify_log "$share")
    [ "$log" = ok ] && pass "$name: the log written through the open handle has every line right" ||
      fail "$name: the log written through the open handle: $log"
  fi
  grep -hiE "migrat|state" "$work/src-$v.log" "$work/dst-$v.log" 2>/dev/null | tail -n 4 | sed "s/^/migration: $name: daemon: /" || true
  stop_vm "src-$v" "$src"; stop_vm "dst-$v" "$dst"
  kill "$src_d" "$dst_d" 2>/dev/null || true
  wait "$src_d" "$dst_d" 2>/dev/null || true
}

for v in $variants; do
  t=$(now_ms)
  run_variant "$v"
  echo "migration: $kind $v took $(($(now_ms) - t)) ms"
done
echo "migration: $passed passed, $failed failed"
[ $failed = 0 ]
