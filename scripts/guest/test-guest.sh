#!/usr/bin/env bash
# Real guest tests: boots Debian's kernels under QEMU (TCG) on an avpfs share
# and runs, inside the guest, the POSIX conformance suite (compared with the
# same suite run on the host), a data-integrity run (checksums compared on
# guest and host), two guests at once appending to one file, racing for
# O_EXCL creates and renames, adding to shared counters under flock and
# fcntl locks, and waiting for a flock whose holder's VMM is killed, a
# software update by the host and by a second guest while a guest reads
# and runs the files updated, and the visibility delay of a change per
# cache policy (6.1) and, on the multi-queue kernel, a check that several
# request queues were used.
#
# The two-guest sections (3 to 7) run twice for avpfs: with a daemon per
# guest, and with one daemon serving both guests through --config.
#
# Usage: test-guest.sh [--daemon PATH] [--kernels "stable backports"] [--label NAME]
#                      [--sections "posix integrity pair lock update install coherence multiqueue"]
#                      [--pair-modes "separate shared"] [--coherence-table FILE]
# --sections runs only the sections named; --pair-modes the ways the
# two-guest sections start their daemons (shared: one avpfs --config for
# both; not for virtiofsd); --coherence-table writes the visibility-delay
# table (Markdown) of the first pair mode to FILE (scripts/guest/coherence.sh).
# Prints "guest: N passed, M failed" at the end; exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
daemon=target/debug/avpfs kernels="stable backports" label=avpfs daemon_args=() table_out="" pair_modes=""
sections="posix integrity pair lock update install coherence multiqueue"
while [ $# -gt 0 ]; do
  case "$1" in
    --daemon) daemon=$2; shift 2 ;;
    --kernels) kernels=$2; shift 2 ;;
    --label) label=$2; shift 2 ;;
    --sections) sections=$2; shift 2 ;;
    --coherence-table) table_out=$2; shift 2 ;;
    --pair-modes) pair_modes=$2; shift 2 ;;
    --) shift; daemon_args=("$@"); break ;;
    *) echo "test-guest: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$pair_modes" ]; then
  pair_modes="separate shared"; [ "$label" = virtiofsd ] && pair_modes=separate
fi
scripts/install-deps.sh guest
[ "$daemon" = target/debug/avpfs ] && cargo build -q --bin avpfs
conformance=$(scripts/guest/build-conformance.sh)

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "guest test ok: $*"; }
fail() { failed=$((failed + 1)); echo "guest test FAILED: $*"; }

work=$(mktemp -d /tmp/avpfs-guest.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start_daemon() { # share socket [daemon flags...]
  local share=$1 sock=$2; shift 2
  rm -f "$sock"
  case "$label" in
    virtiofsd) "$daemon" --socket-path "$sock" --shared-dir "$share" --tag avpfs --log-level error \
                 --sandbox none --seccomp none --xattr "$@" "${daemon_args[@]}" & ;;
    *) "$daemon" --socket-path "$sock" --shared-dir "$share" --tag avpfs --log-level warn --xattr --modcaps=+sys_admin \
         "$@" "${daemon_args[@]}" & ;;
  esac
  daemon_pid=$!
  for _ in $(seq 200); do [ -S "$sock" ] && return 0; sleep 0.05; done
  echo "test-guest: $daemon did not create $sock" >&2
  return 1
}

run_job() { # kernel-dir share job queues log
  local sock=$work/vhost.sock attempt rc
  for attempt in 1 2; do
    start_daemon "$2" "$sock"
    rc=0
    scripts/guest/run-guest.sh --kernel "$1" --socket "$sock" --tag avpfs --job "$3" \
      --queues "$4" --bin "$conformance" --timeout 900 > "$5" 2>&1 || rc=$?
    wait "$daemon_pid" 2>/dev/null || kill "$daemon_pid" 2>/dev/null || true
    # Under TCG with two vCPUs the 6.12 kernel now and then trips over its
    # own code patching (static branches, also when a module loads): an
    # "Oops: int3" at a patched site, not a fault any daemon could cause;
    # likewise any oops before a module is loaded. Boot it once more; any
    # other failure stands.
    if [ $attempt = 1 ] && [ $rc = 124 ] &&
       tr -d '\r' < "$5" | grep -q -e 'Oops: int3' -e 'Modules linked in: *$'; then
      echo "test-guest: the guest kernel crashed in its own code patching (TCG); booting it again" >&2
      mv "$5" "$5.boot-crash"
      continue
    fi
    return $rc
  done
}

# Two guests at once on one share. With pair_mode=separate each has its
# own daemon; with pair_mode=shared one avpfs serves both through a
# --config file (a [[share]] per distinct cache mode, all on SHARE; a
# --readonly guest gets a read-only guest policy). By default both use
# --cache never: every read goes to the host, so what the guests see of
# each other is the daemons' doing, not their page caches. Guest G (1 or 2)
# runs JOB-G with its log in $work/NAME-G.log and its socket
# $work/vhost-NAME-G.sock; the daemons' pids go to dpids, the guests'
# (run-guest.sh's) to gpids. The arrays DAEMON1_ARGS and DAEMON2_ARGS, if
# set, replace guest 1's and guest 2's daemon flags (--cache never; only
# --cache and --readonly in shared mode). This and end_guest_pair are the
# only places that know how a pair's daemons are started and stopped.
start_guest_pair() { # name kernel-dir share job-1 job-2
  local name=$1 kdir=$2 share=$3 g
  dpids=() gpids=()
  local -a flags1=(--cache never) flags2=(--cache never)
  for g in 1 2; do
    if declare -p "DAEMON${g}_ARGS" > /dev/null 2>&1; then
      local -n given="DAEMON${g}_ARGS" into="flags$g"
      into=("${given[@]}")
      unset -n given into
    fi
  done
  if [ "$pair_mode" = shared ]; then
    start_config_daemon "$name" "$share"
    dpids+=("$daemon_pid")
  else
    for g in 1 2; do
      local -n fl="flags$g"
      start_daemon "$share" "$work/vhost-$name-$g.sock" "${fl[@]}"
      unset -n fl
      dpids+=("$daemon_pid")
    done
  fi
  for g in 1 2; do
    local job=$4; [ $g = 2 ] && job=$5
    scripts/guest/run-guest.sh --kernel "$kdir" --socket "$work/vhost-$name-$g.sock" --tag avpfs \
      --job "$job" --queues 1 --bin "$conformance" --timeout 600 > "$work/$name-$g.log" 2>&1 &
    gpids+=($!)
  done
}

# One avpfs for both guests of a pair (start_guest_pair's flags1 and
# flags2): writes $work/NAME.toml and starts `avpfs --config` on it.
start_config_daemon() { # name share
  local name=$1 share=$2 conf=$work/$1.toml g i
  printf '[daemon]\ncontrol_socket = "%s"\n\n' "$work/$name-control.sock" > "$conf"
  for g in 1 2; do
    local -n fl="flags$g"
    local cache=never readonly=0
    for ((i = 0; i < ${#fl[@]}; i++)); do
      case "${fl[i]}" in
        --cache) cache=${fl[i + 1]}; i=$((i + 1)) ;;
        --readonly) readonly=1 ;;
        *) echo "test-guest: $name: ${fl[i]} has no --config form here" >&2; return 1 ;;
      esac
    done
    unset -n fl
    grep -q "^name = \"tree-$cache\"" "$conf" ||
      printf '[[share]]\nname = "tree-%s"\nshared_dir = "%s"\ncache = "%s"\nxattr = true\n\n' \
        "$cache" "$share" "$cache" >> "$conf"
    printf '[[guest]]\nname = "g%s"\nsocket_path = "%s"\nshare = "tree-%s"\ntag = "avpfs"\nrequest_queues = 1\n' \
      "$g" "$work/vhost-$name-$g.sock" "$cache" >> "$conf"
    if [ $readonly = 1 ]; then
      printf '[share]\nreadonly = true\n' > "$work/$name-g$g-ro.toml"
      printf 'policy = "%s"\n' "$work/$name-g$g-ro.toml" >> "$conf"
    fi
    echo >> "$conf"
  done
  rm -f "$work/vhost-$name-1.sock" "$work/vhost-$name-2.sock"
  "$daemon" --config "$conf" --log-level warn --modcaps=+sys_admin "${daemon_args[@]}" &
  daemon_pid=$!
  for _ in $(seq 200); do
    [ -S "$work/vhost-$name-1.sock" ] && [ -S "$work/vhost-$name-2.sock" ] && return 0
    sleep 0.05
  done
  echo "test-guest: $daemon --config $conf did not create both sockets" >&2
  return 1
}

# Asks a shared pair's daemon, through its control socket, until both
# guests are connected and each has sent LOOKUPs and OPENs (up to 300 s);
# then checks that the metrics parse (python3-prometheus-client). Prints
# "ok" or what went wrong.
control_sees_pair() { # control-socket
  local sock=$1 i
  for i in $(seq 1500); do
    if "$daemon" ctl --control-socket "$sock" stats > "$work/ctl-stats.json" 2>/dev/null &&
       "$daemon" ctl --control-socket "$sock" status > "$work/ctl-status.json" 2>/dev/null &&
       /usr/bin/python3 - "$work/ctl-status.json" "$work/ctl-stats.json" <<'PY'
import json, sys
status, stats = (json.load(open(f)) for f in sys.argv[1:3])
assert all(g["connected"] and g["fuse_minor"] > 0 for g in status["guests"]), "not both connected"
for g in stats["guests"]:
    ops = {o["op"]: o for o in g["ops"]}
    assert ops.get("LOOKUP", {}).get("requests", 0) > 0 and ops.get("OPEN", {}).get("requests", 0) > 0, g["name"]
PY
    then
      "$daemon" ctl --control-socket "$sock" metrics > "$work/ctl-metrics.txt" || { echo "ctl metrics failed"; return; }
      /usr/bin/python3 -c 'import sys
from prometheus_client.parser import text_string_to_metric_families as p
n = sum(1 for _ in p(open(sys.argv[1]).read()))
assert n > 5, n' "$work/ctl-metrics.txt" 2>&1 | tail -1 | grep . || echo ok
      return
    fi
    sleep 0.2
  done
  echo "the guests were not seen connected and counted within 300 s: $(head -c 300 "$work/ctl-status.json" 2>/dev/null)"
}

# Waits for a pair's guests (pair_ok=0 if one failed), then for its
# daemons: a daemon per guest ends with its guest; the one daemon of a
# shared pair keeps listening, and is stopped (SIGTERM).
end_guest_pair() {
  local p
  pair_ok=1
  for p in "${gpids[@]}"; do wait "$p" || pair_ok=0; done
  if [ "$pair_mode" = shared ]; then kill -TERM "${dpids[@]}" 2>/dev/null || true; fi
  for p in "${dpids[@]}"; do wait "$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
}

# Software update (sections 5 and 6). Version 1 of an application goes into
# SHARE (app/prog: a copy of the static conformance program, app/data,
# app/run.sh and the directory release), version 2 into STAGE (prog with
# bytes appended, so a different file that still runs); SHARE/upd/sums.sh
# gets each path's two sums for the readers (jobs/update-reader.sh).
make_versions() { # share stage
  local share=$1 stage=$2 f
  mkdir -p "$share/app" "$share/release" "$share/upd" "$stage/release"
  cp "$conformance" "$share/app/prog"
  { cat "$conformance"; echo "avpfs software update: version 2"; } > "$stage/prog"
  chmod 755 "$share/app/prog" "$stage/prog"
  head -c 262144 /dev/urandom > "$share/app/data"; head -c 200000 /dev/urandom > "$stage/data"
  for f in lib conf; do
    head -c 65536 /dev/urandom > "$share/release/$f"; head -c 70000 /dev/urandom > "$stage/release/$f"
  done
  echo 2 > "$stage/release/version"
  update_script 1 > "$share/app/run.sh"; update_script 2 > "$stage/run.sh"
  sums() { "$conformance" --sum "$1" "$2" | cut -d' ' -f1 | tr '\n' ' '; }
  { echo "data_sums='$(sums "$share/app/data" "$stage/data")'"
    echo "release_sums='$(sums "$share/release" "$stage/release")'"
    echo "prog_sums='$(sums "$share/app/prog" "$stage/prog")'"; } > "$share/upd/sums.sh"
  new_exe=$("$conformance" --sum "$stage/prog" | cut -d' ' -f1)
}

# Version N of a script the guest runs from the share: it waits for the
# stop marker, then prints its last line, after 15 KiB of comments (busybox
# sh reads a script 1 KiB at a time as it runs it, so the end is read late).
update_script() { # version
  echo "echo \"AVPFS-SCRIPT \$1 v$1 start\""
  echo "while [ ! -e /mnt/upd/stop ]; do sleep 1; done"
  for i in $(seq $((250 + 7 * $1))); do echo "# line $i of version $1, read by the shell while it runs"; done
  echo "echo \"AVPFS-SCRIPT \$1 v$1 end\""
}

# Installs version 2 from STAGE into ROOT as an updater should (what
# jobs/update-installer.sh does in a guest): each file written beside,
# fsync, renamed over; the directory staged and swapped in with
# RENAME_EXCHANGE; then the "changed" marker.
install_update() { # stage root
  local stage=$1 root=$2 f
  "$conformance" --install "$stage/data" "$root/app/data"
  "$conformance" --install "$stage/prog" "$root/app/prog"
  "$conformance" --install "$stage/run.sh" "$root/app/run.sh"
  mkdir "$root/release.new"
  for f in "$stage"/release/*; do "$conformance" --install "$f" "$root/release.new/${f##*/}"; done
  "$conformance" --exchange "$root/release.new" "$root/release"
  : > "$root/upd/changed"
}

# Until every reader of guest G (tag gG) has read version 1 and its script
# runs.
readers_started() { # log g
  local r
  for r in data held release exe; do wait_for "$1" "AVPFS-VERSIONS-START tag=g$2-$r " 300 || return 1; done
  wait_for "$1" "AVPFS-SCRIPT g$2 v1 start" 60
}

field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<< "$2"; } # name line

# The verdicts on one reading guest (tag T) of a software-update section.
# Under --cache never (MODE) every read that starts after the guest saw the
# "changed" marker must be version 2.
check_readers() { # what log tag mode
  local what=$1 log=$2 t=$3 mode=$4 r line torn="" kept="" new=""
  for r in data held release exe; do
    line=$(tr -d '\r' < "$log" | grep -o "AVPFS-VERSIONS tag=$t-$r .*" | head -n1)
    if [ -z "$line" ]; then torn+=" $r: no report;"; continue; fi
    [ "$(field unknown "$line")" = 0 ] && [ "$(field errors "$line")" = 0 ] || torn+=" $line;"
    case $r in
      held|exe) [ "$(field v2 "$line")" = 0 ] && [ "$(field v1 "$line")" -gt 0 ] || kept+=" $line;" ;;
      *) { [ "$(field v2 "$line")" -gt 0 ] && { [ "$mode" != never ] || [ "$(field stale "$line")" = 0 ]; }; } ||
           new+=" $line;" ;;
    esac
  done
  seen "$log" "AVPFS-SCRIPT $t v1 end" && ! seen "$log" "AVPFS-SCRIPT $t v2" || kept+=" run.sh did not end as version 1;"
  if [ -z "$torn" ]; then pass "$what: every read whole and one of the two versions"
  else fail "$what: torn, unknown or failed reads:$torn"; fi
  if [ -z "$kept" ]; then pass "$what: the open file, the running program and the running script keep version 1"
  else fail "$what: the old version was not kept:$kept"; fi
  if [ -z "$new" ]; then pass "$what: new opens see version 2 (--cache $mode)"
  else fail "$what: version 2 not seen as it should be:$new"; fi
  if seen "$log" "AVPFS-NEW-EXE $t $new_exe"; then pass "$what: a program started after the update is version 2"
  else fail "$what: a program started after the update is not version 2"; fi
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

want() { [[ " $sections " == *" $1 "* ]]; } # section
seen() { tr -d '\r' < "$1" | grep -q "$2"; } # log pattern
wait_for() { # log pattern seconds: until the guest printed it
  local i; for i in $(seq $(($3 * 10))); do seen "$1" "$2" && return 0; sleep 0.1; done; return 1
}

for k in $kernels; do
  kdir=target/guest/kernel-$k
  scripts/guest/fetch-kernel.sh "$k" "$kdir"
  kver=$(cat "$kdir/package")
  queues=1
  # virtiofsd serves a single request queue.
  [ "$k" = backports ] && [ "$label" != virtiofsd ] && queues=2

  # 1. POSIX conformance: the guest's observations against the host's.
  if want posix; then
    share=$work/share-$k; base=$work/base-$k
    mkdir -p "$share" "$base"
    "$conformance" --dump "$base" > "$work/host-$k.txt"
    if run_job "$kdir" "$share" scripts/guest/jobs/conformance.sh "$queues" "$work/conf-$k.log"; then :; fi
    tr -d '\r' < "$work/conf-$k.log" | sed -n 's/.*AVPFS-OBS //p' > "$work/guest-$k.txt"
    cases=$(awk -F' [|] ' '{print $1}' "$work/host-$k.txt" | sort -u)
    for c in $cases; do
      if diff <(awk -F' [|] ' -v c="$c" '$1 == c' "$work/host-$k.txt") \
              <(awk -F' [|] ' -v c="$c" '$1 == c' "$work/guest-$k.txt") > "$work/diff" 2>&1; then
        pass "[$label $kver] posix $c"
      else
        fail "[$label $kver] posix $c"; sed 's/^/    /' "$work/diff" | head -20
      fi
    done
  fi

  # 2. Data integrity: checksums seen by the guest and by the host.
  if want integrity; then
    share=$work/share2-$k; mkdir -p "$share"
    if run_job "$kdir" "$share" scripts/guest/jobs/integrity.sh "$queues" "$work/int-$k.log" \
       && grep -q AVPFS-INTEGRITY-OK "$work/int-$k.log"; then
      bad=0
      while read -r _ name size sum; do
        host=$(md5sum < "$share/integrity/$name" | cut -d' ' -f1)
        [ "$host" = "$sum" ] && [ "$(stat -c %s "$share/integrity/$name")" = "$size" ] || { bad=1; echo "    $name: host $host guest $sum"; }
      done < <(tr -d '\r' < "$work/int-$k.log" | grep -o 'AVPFS-SUM.*')
      [ $bad = 0 ] && pass "[$label $kver] data integrity" || fail "[$label $kver] data integrity (host and guest differ)"
    else
      fail "[$label $kver] data integrity"; grep AVPFS-FAIL "$work/int-$k.log" | head || tail -20 "$work/int-$k.log"
    fi
  fi

  # Sections 3 to 7 run with each pair mode: a daemon per guest, then one
  # daemon (--config) for both guests.
  for pair_mode in $pair_modes; do
  pair_tag=""; [ "$pair_mode" = shared ] && pair_tag=", one daemon"
    # 3. Two guests at once on one tree (the 6.1 guest): records appended by
    # both through O_APPEND are all there, O_EXCL creates and renames have
    # one winner each, and counters shared under flock and fcntl locks by
    # both guests and a host process end exact only if the locks are host
    # locks that exclude each other across sessions, daemons and the host.
    if [ "$k" = stable ] && want pair; then
      share=$work/share4-$k-$pair_mode; mkdir -p "$share"
      times=200 claims=100 ok=1  # as in jobs/counter.sh
      mkdir "$share/claims"
      for i in $(seq 0 $((claims - 1))); do : > "$share/claims/ren-$i"; done
      for g in 1 2; do sed "s/@GUEST@/g$g/" scripts/guest/jobs/counter.sh > "$work/counter-g$g.sh"; done
      start_guest_pair counter "$kdir" "$share" "$work/counter-g1.sh" "$work/counter-g2.sh"
      # A host process adds to each counter too, once the guests have begun.
      ( for lock in flock fcntl; do
          for _ in $(seq 3000); do [ -e "$share/counter-$lock" ] && break; sleep 0.1; done
          "$conformance" --add-under-lock "$share/counter-$lock" $times $lock
        done ) > "$work/counter-host.log" 2>&1 &
      host_adder=$!
      # With one daemon: its control socket sees both guests connected and
      # counts their requests while they run.
      if [ "$pair_mode" = shared ]; then
        verdict=$(control_sees_pair "$work/counter-control.sock")
        if [ "$verdict" = ok ]; then pass "[$label $kver$pair_tag] control socket: both guests connected, their requests counted, metrics parse"
        else fail "[$label $kver$pair_tag] control socket: $verdict"; fi
      fi
      end_guest_pair; [ $pair_ok = 1 ] || ok=0
      wait $host_adder || { ok=0; tail -3 "$work/counter-host.log"; }
      for g in 1 2; do seen "$work/counter-$g.log" AVPFS-COUNTER-OK || { ok=0; tail -5 "$work/counter-$g.log"; }; done
      wrong="a guest's job failed"
      if [ $ok = 1 ] && wrong=$("$conformance" --check-records "$share/records" $times g1 g2); then
        pass "[$label $kver$pair_tag] two guests, O_APPEND records: all $((2 * times)) there once"
      else fail "[$label $kver$pair_tag] two guests, O_APPEND records: $wrong"; fi
      # Every O_EXCL create and every rename won by exactly one guest: the wins
      # add up, and the files agree.
      read -r created renamed < <(cat "$work"/counter-[12].log | tr -d '\r' |
        sed -n 's/.*AVPFS-CLAIMS created=\([0-9]*\) renamed=\([0-9]*\).*/\1 \2/p' |
        awk '{c += $1; r += $2; n++} END {print (n == 2 ? c : -1), (n == 2 ? r : -1)}')
      files=$(find "$share/claims" -name 'excl-*' | wc -l)
      moved=$(find "$share/claims" -name 'ren-*.g[12]' | wc -l)
      left=$(find "$share/claims" -name 'ren-*' ! -name 'ren-*.g*' | wc -l)
      if [ "$created" = $claims ] && [ "$files" = $claims ]; then
        pass "[$label $kver$pair_tag] two guests, O_EXCL create: one winner for each of $claims"
      else fail "[$label $kver$pair_tag] two guests, O_EXCL create: $created wins for $files files of $claims"; fi
      if [ "$renamed" = $claims ] && [ "$moved" = $claims ] && [ "$left" = 0 ]; then
        pass "[$label $kver$pair_tag] two guests, rename: one winner for each of $claims"
      else fail "[$label $kver$pair_tag] two guests, rename: $renamed wins, $moved renamed, $left left of $claims"; fi
      for lock in flock fcntl; do
        got=$(cat "$share/counter-$lock" 2>/dev/null || echo none)
        if [ $ok = 1 ] && [ "$got" = $((3 * times)) ]; then pass "[$label $kver$pair_tag] two guests and a host process, one counter under $lock: $got"
        else fail "[$label $kver$pair_tag] two guests and a host process, one counter under $lock: $got of $((3 * times))"; fi
      done
    fi

    # 4. Two guests, each through its own daemon: guest B waits for a flock
    # that guest A holds, and gets it when A's VMM is killed (SIGKILL): the
    # lock goes with the dead guest's connection.
    if [ "$k" = stable ] && want lock; then
      share=$work/share5-$k-$pair_mode; mkdir -p "$share"
      # Guest 1 (A) holds the lock, guest 2 (B) waits for it.
      start_guest_pair lock "$kdir" "$share" scripts/guest/jobs/lock-holder.sh scripts/guest/jobs/lock-waiter.sh
      verdict="A never held the lock"
      if wait_for "$work/lock-1.log" AVPFS-LOCK-HELD 300; then
        : > "$share/go"
        verdict="B never asked for the lock"
        if wait_for "$work/lock-2.log" AVPFS-LOCK-WAIT 300; then
          sleep 2
          if seen "$work/lock-2.log" AVPFS-LOCK-HELD; then verdict="B got the lock while A held it"
          else
            pkill -KILL -f "qemu-system.*vhost-lock-1.sock" || true
            verdict="B did not get the lock after A's VMM was killed"
            wait_for "$work/lock-2.log" AVPFS-WAITER-DONE 120 && verdict=ok
          fi
        fi
      fi
      pkill -KILL -f "qemu-system.*vhost-lock-[12].sock" 2>/dev/null || true
      end_guest_pair
      if [ "$verdict" = ok ]; then pass "[$label $kver$pair_tag] two guests: a flock waiter proceeds when the holder's VMM is killed"
      else fail "[$label $kver$pair_tag] two guests, killed lock holder: $verdict"; tail -5 "$work/lock-1.log" "$work/lock-2.log"; fi
    fi

    # 5. Software update by the host, two guests reading and running the
    # application meanwhile: guest 1 with --cache never, guest 2 with --cache
    # auto. Every read is a whole version; what is open or running stays
    # version 1; new opens see version 2 at once (never: the first read after
    # the guest saw the "changed" marker) or within the 1 s attribute and entry
    # timeout plus 3 s of slack (auto), timed on the host's clock from the
    # readers' acknowledgements (seen-TAG-v2).
    if [ "$k" = stable ] && want update; then
      t_section=$(now_ms)
      share=$work/share6-$k-$pair_mode; stage=$work/stage6-$k-$pair_mode
      make_versions "$share" "$stage"
      for g in 1 2; do sed "s/@TAG@/g$g/" scripts/guest/jobs/update-reader.sh > "$work/reader-g$g.sh"; done
      DAEMON1_ARGS=(--cache never) DAEMON2_ARGS=(--cache auto)
      start_guest_pair update "$kdir" "$share" "$work/reader-g1.sh" "$work/reader-g2.sh"
      unset DAEMON1_ARGS DAEMON2_ARGS
      delays="" late=""
      if readers_started "$work/update-1.log" 1 && readers_started "$work/update-2.log" 2; then
        sleep 1
        install_update "$stage" "$share"; t1=$(now_ms)
        for x in g1-data g1-release g2-data g2-release; do
          while [ ! -e "$share/upd/seen-$x-v2" ] && [ $(($(now_ms) - t1)) -lt 30000 ]; do sleep 0.02; done
          d=none; [ -e "$share/upd/seen-$x-v2" ] && d=$(($(now_ms) - t1))
          delays+=" $x=${d}ms"
          case $x in g2-*) [ "$d" != none ] && [ "$d" -le 4000 ] || late+=" $x=$d" ;; esac
        done
      else late=" the readers did not start"; fi
      : > "$share/upd/stop"
      end_guest_pair
      echo "software update by the host: version 2 first read after$delays"
      if [ -z "$late" ]; then pass "[$label $kver$pair_tag] software update by the host: the auto guest's new opens see version 2 within 1 s + 3 s"
      else fail "[$label $kver$pair_tag] software update by the host, auto guest: version 2 late or never:$late"; fi
      check_readers "[$label $kver$pair_tag] software update by the host, never guest" "$work/update-1.log" g1 never
      check_readers "[$label $kver$pair_tag] software update by the host, auto guest" "$work/update-2.log" g2 auto
      echo "software update by the host: $((($(now_ms) - t_section) / 1000)) s"
    fi

    # 6. The reverse: a guest (2) installs the update through its own mount
    # while a read-only guest (1: its daemon has --readonly) reads and runs
    # the application; both --cache never.
    if [ "$k" = stable ] && want install; then
      t_section=$(now_ms)
      share=$work/share7-$k-$pair_mode
      make_versions "$share" "$share/stage"
      sed "s/@TAG@/g1/" scripts/guest/jobs/update-reader.sh > "$work/reader-ro.sh"
      DAEMON1_ARGS=(--cache never --readonly) DAEMON2_ARGS=(--cache never)
      start_guest_pair install "$kdir" "$share" "$work/reader-ro.sh" scripts/guest/jobs/update-installer.sh
      unset DAEMON1_ARGS DAEMON2_ARGS
      verdict=ok
      if readers_started "$work/install-1.log" 1; then
        : > "$share/upd/go"
        if ! wait_for "$work/install-2.log" AVPFS-INSTALLED 120; then verdict="the installing guest did not finish"
        else
          for r in data release; do
            wait_for "$work/install-1.log" "AVPFS-VERSIONS-SEEN tag=g1-$r version=2" 30 || verdict="the read-only guest never read version 2 of $r"
          done
        fi
      else verdict="the read-only guest's readers did not start"; fi
      : > "$share/upd/stop"
      end_guest_pair
      if [ "$verdict" = ok ] && seen "$work/install-1.log" "AVPFS-UPDATE-READONLY g1 .*Read-only file system"; then
        pass "[$label $kver$pair_tag] software update by a guest: installed while a read-only guest (writes fail with EROFS) runs the application"
      else fail "[$label $kver$pair_tag] software update by a guest: ${verdict/#ok/the read-only guest could write}"; tail -5 "$work/install-2.log"; fi
      check_readers "[$label $kver$pair_tag] software update by a guest, read-only guest" "$work/install-1.log" g1 never
      echo "software update by a guest: $((($(now_ms) - t_section) / 1000)) s"
    fi

    # 7. Visibility delay per cache policy: guest B (2, the policy under
    # test) polls for changes made by the host and by guest A (1, --cache
    # never, so that it sees the host's go-marker at once): a file written in
    # place, a file replaced by rename, a new name in a listing and looked up.
    # Timed on the host's clock (avpfs_conformance::visibility). never: every
    # change on the first poll after it was complete; metadata and auto:
    # within 1 s + 3 s; always: measured, no promise (one round per writer).
    if [ "$k" = stable ] && want coherence; then
      t_section=$(now_ms)
      for mode in never metadata auto always; do
        plan=hahaha; [ $mode = always ] && plan=ha
        share=$work/share-vis-$mode-$k-$pair_mode; mkdir -p "$share/vis"
        "$conformance" --vis-prepare "$share/vis" ${#plan}
        sed "s/@PLAN@/$plan/" scripts/guest/jobs/coherence-write.sh > "$work/vis-write.sh"
        sed "s/@MODE@/$mode/; s/@PLAN@/$plan/" scripts/guest/jobs/coherence-watch.sh > "$work/vis-watch.sh"
        DAEMON1_ARGS=(--cache never) DAEMON2_ARGS=(--cache "$mode")
        start_guest_pair "vis-$mode" "$kdir" "$share" "$work/vis-write.sh" "$work/vis-watch.sh"
        unset DAEMON1_ARGS DAEMON2_ARGS
        rc=0; "$conformance" --vis-measure "$share/vis" "$mode" "$plan" > "$work/vis-$mode.txt" 2>&1 || rc=$?
        end_guest_pair
        verdict=ok
        [ $rc = 0 ] || verdict=host:$(grep -v '^AVPFS-VIS ' "$work/vis-$mode.txt" | head -3)
        seen "$work/vis-$mode-1.log" AVPFS-WRITE-OK || verdict="guest A failed: $(tail -3 "$work/vis-$mode-1.log")"
        seen "$work/vis-$mode-2.log" AVPFS-WATCH-OK || verdict="guest B: $(tr -d '\r' < "$work/vis-$mode-2.log" | grep -e FAILED -e 'vis-watch' | head -3)"
        what="visibility with --cache $mode"
        case $mode in never) what+=": every change on the first poll after it" ;;
          metadata|auto) what+=": every change within 1 s + 3 s" ;; always) what+=": measured, nothing promised" ;; esac
        if [ "$verdict" = ok ]; then pass "[$label $kver$pair_tag] $what"; else fail "[$label $kver$pair_tag] $what: $verdict"; fi
      done
      "$conformance" --vis-table "$work"/vis-{never,metadata,auto,always}.txt > "$work/coherence.md"
      sed 's/^/coherence: /' "$work/coherence.md"
      [ -z "$table_out" ] || [ "$pair_mode" != "${pair_modes%% *}" ] || cp "$work/coherence.md" "$table_out"
      echo "visibility per cache policy: $((($(now_ms) - t_section) / 1000)) s"
    fi
  done

  # 8. Multi-queue (the 6.12 guest with two request queues).
  if [ "$queues" -gt 1 ] && want multiqueue; then
    share=$work/share3-$k; mkdir -p "$share"
    run_job "$kdir" "$share" scripts/guest/jobs/multiqueue.sh "$queues" "$work/mq-$k.log" || true
    used=$(tr -d '\r' < "$work/mq-$k.log" | sed -n 's/.*AVPFS-QUEUES-USED //p')
    if [ "${used:-0}" -ge 2 ]; then pass "[$label $kver] $used request queues used"; else
      fail "[$label $kver] multi-queue: ${used:-no} queues used"; tail -20 "$work/mq-$k.log"; fi
  fi
done
echo "guest: $passed passed, $failed failed"
[ "$failed" = 0 ]
