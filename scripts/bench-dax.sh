#!/usr/bin/env bash
# Benchmarks the DAX window (issue 21) in a real guest: avpfs with a DAX
# window (-o dax=always) against avpfs without one and virtiofsd 1.14, side
# by side in one run, on QEMU 11.1 (scripts/guest/qemu-trixie.sh), Debian's
# 6.1 guest, TCG, one request queue each, cache=auto for both daemons.
# avpfs-dax uses vhost-user-test-device-pci with a window larger than the
# file; avpfs and virtiofsd use vhost-user-fs-pci (QEMU refuses virtiofsd
# on the test device: it lacks PROTOCOL_F_CONFIG).
#
# In each guest, on a file of SIZE_MIB (default 256) MiB whose pages the
# host's page cache holds: a cold sequential read (the guest's first, 1 MiB
# buffer), a warm one (the second), 200,000 random 8-byte reads of 4 KiB
# pages through mmap after a first pass (warm), the start-up of a static
# binary of the share (first run, then the mean of 20 more), and the
# guest's page cache (`Cached` in /proc/meminfo) grown by the reads.
# Contenders run interleaved for ROUNDS (default 3) rounds; the report gives
# the best and the median of each, and ratios. Then two guests at once on
# one avpfs read the same file, with and without DAX: the `Cached` growth
# of each guest; and they play 1000 rounds of ping-pong through one mapped
# file (with DAX: the time a store takes to reach the other VM's mapping;
# without: it never does, and the first ping times out after 10 s).
#
# Usage: scripts/bench-dax.sh   (root; ROUNDS, SIZE_MIB, GUEST_MEM env)
# Results: bench/results/dax/README.md and results.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3} size_mib=${SIZE_MIB:-256} mem=${GUEST_MEM:-1G}
scripts/install-deps.sh guest
qemu=$(scripts/guest/qemu-trixie.sh)
virtiofsd=$(scripts/install-virtiofsd.sh)
cargo build -q --release -j "${JOBS:-2}" --bin avpfs
avpfs=${CARGO_TARGET_DIR:-target}/release/avpfs
kdir=target/guest/kernel-stable
scripts/guest/fetch-kernel.sh stable "$kdir"
probe=$(scripts/guest/build-guest-workload.sh dax-probe)
out=bench/results/dax
mkdir -p "$out"
# The window: a power of two (a PCI BAR) larger than the file.
window=1
while [ $window -le "$size_mib" ]; do window=$((window * 2)); done

work=$(mktemp -d /tmp/avpfs-bench-dax.XXXXXX)
daemon=""
cleanup() {
  [ -z "$daemon" ] || { kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
share=$work/share
mkdir "$share"
head -c $((size_mib << 20)) /dev/urandom > "$share/big"
install -m 0755 "$probe" "$share/tool"
cat "$share/big" > /dev/null # the host's page cache holds it for every contender

cat > "$work/job.sh" <<'JOB'
p=/bin/dax-probe
cached() { sed -n 's/^Cached: *\([0-9]*\) kB/\1/p' /proc/meminfo; }
c0=$(cached)
echo "RESULT seq-cold $($p seq-read /mnt/big 1048576)"
echo "RESULT seq-warm $($p seq-read /mnt/big 1048576)"
echo "RESULT cached-kib $(( $(cached) - c0 ))"
$p rand-read /mnt/big 200000 1 > /dev/null
echo "RESULT rand-warm $($p rand-read /mnt/big 200000 7)"
echo "RESULT exec $($p exec-time 21 /mnt/tool help)"
JOB

start_daemon() { # contender socket
  rm -f "$2"
  case "$1" in
    avpfs-dax) "$avpfs" --socket-path "$2" --shared-dir "$share" --tag avpfs --request-queues 1 \
                 --dax-window ${window}M --log-level warn 2> "$work/daemon.log" & ;;
    avpfs) "$avpfs" --socket-path "$2" --shared-dir "$share" --tag avpfs --request-queues 1 \
             --log-level warn 2> "$work/daemon.log" & ;;
    virtiofsd) "$virtiofsd" --socket-path "$2" --shared-dir "$share" --tag avpfs --cache auto \
                 2> "$work/daemon.log" & ;;
  esac
  daemon=$!
  for _ in $(seq 200); do [ -S "$2" ] && return 0; sleep 0.05; done
  echo "bench-dax: $1 did not listen: $(tail -n 3 "$work/daemon.log")" >&2
  return 1
}
stop_daemon() { kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; daemon=""; }
device_args() { # contender
  case "$1" in
    avpfs-dax) echo "--fs-device test-device --fs-options dax=always" ;;
    *) echo "--fs-device fs" ;;
  esac
}

: > "$work/results.tsv"
for round in $(seq "$rounds"); do
  for c in avpfs-dax avpfs virtiofsd; do
    echo "bench-dax: round $round/$rounds: $c" >&2
    start_daemon "$c" "$work/vhost.sock"
    # shellcheck disable=SC2046 # device_args is a list of words
    QEMU=$qemu scripts/guest/run-guest.sh --kernel "$kdir" --socket "$work/vhost.sock" --tag avpfs \
      --mem "$mem" $(device_args "$c") --bin "$probe" --job "$work/job.sh" --timeout 1200 > "$work/console" 2>&1 \
      || { echo "bench-dax: the $c guest failed:" >&2; tr -d '\r' < "$work/console" | tail -n 15 >&2; exit 1; }
    stop_daemon
    tr -d '\r' < "$work/console" | sed -n "s/^.*RESULT /$round\t$c\t/p" >> "$work/results.tsv"
  done
done

# Two guests at once on one avpfs, with and without DAX.
for c in avpfs-dax avpfs; do
  echo "bench-dax: two guests: $c" >&2
  window_key=""
  [ $c = avpfs-dax ] && window_key="dax_window = \"${window}M\""
  cat > "$work/two.toml" <<TOML
[[share]]
name = "s"
shared_dir = "$share"
[[guest]]
name = "a"
socket_path = "$work/a.sock"
share = "s"
tag = "avpfs"
request_queues = 1
$window_key
[[guest]]
name = "b"
socket_path = "$work/b.sock"
share = "s"
tag = "avpfs"
request_queues = 1
$window_key
TOML
  rm -f "$work/a.sock" "$work/b.sock"
  "$avpfs" --config "$work/two.toml" --log-level warn 2> "$work/daemon.log" &
  daemon=$!
  for _ in $(seq 200); do [ -S "$work/a.sock" ] && [ -S "$work/b.sock" ] && break; sleep 0.05; done
  dev=(--fs-device test-device)
  [ $c = avpfs-dax ] && dev+=(--fs-options dax=always)
  # Then ping-pong through one mapped file: B stores, A answers.
  head -c 4096 /dev/zero > "$share/pp"
  wait_ms=120000
  [ $c = avpfs ] && wait_ms=10000
  { cat "$work/job.sh"; echo "echo \"RESULT pong \$(/bin/dax-probe pong /mnt/pp 1000 $wait_ms 2>&1 | tail -1)\""; } > "$work/job-a.sh"
  { cat "$work/job.sh"; echo "echo \"RESULT ping \$(/bin/dax-probe ping /mnt/pp 1000 $wait_ms 2>&1 | tail -1)\""; } > "$work/job-b.sh"
  for g in a b; do
    QEMU=$qemu scripts/guest/run-guest.sh --kernel "$kdir" --socket "$work/$g.sock" --tag avpfs --mem "$mem" \
      "${dev[@]}" --bin "$probe" --job "$work/job-$g.sh" --timeout 1200 > "$work/console-$g" 2>&1 &
    eval "q$g=\$!"
  done
  # shellcheck disable=SC2154 # qa and qb are set by the eval above
  wait "$qa" && wait "$qb" || { echo "bench-dax: a two-guest run failed" >&2; exit 1; }
  stop_daemon
  for g in a b; do
    tr -d '\r' < "$work/console-$g" | sed -n -e "s/^.*RESULT cached-kib /two\t$c-$g\tcached-kib /p" \
      -e "s/^.*RESULT ping /pingpong\t$c\t/p" >> "$work/results.tsv"
  done
done
cp "$work/results.tsv" "$out/results.tsv"

/usr/bin/python3 - "$out/results.tsv" "$rounds" "$size_mib" "$mem" "$("$qemu" --version | head -1)" > "$out/README.md" <<'PY'
import re, statistics, sys
path, rounds, size, mem, qemu = sys.argv[1:6]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
vals = {}  # (contender, metric) -> [values]
two = {}
pingpong = {}
def put(c, m, v):
    vals.setdefault((c, m), []).append(v)
for rnd, c, text in rows:
    kind, _, rest = text.partition(" ")
    if rnd == "two":
        two[c] = int(rest)
        continue
    if rnd == "pingpong":
        pingpong[c] = text
        continue
    if kind in ("seq-cold", "seq-warm"):
        put(c, kind, float(re.search(r"([0-9.]+) MiB/s", rest).group(1)))
    elif kind == "rand-warm":
        put(c, kind, float(re.search(r"(\d+) per s", rest).group(1)) / 1e6)
    elif kind == "exec":
        put(c, "exec-first", int(re.search(r"first_us=(\d+)", rest).group(1)) / 1000)
        put(c, "exec-warm", int(re.search(r"rest_mean_us=(\d+)", rest).group(1)) / 1000)
    elif kind == "cached-kib":
        put(c, kind, int(rest) / 1024)
metrics = [
    ("seq-cold", f"cold sequential read of {size} MiB (MiB/s)", True),
    ("seq-warm", f"warm sequential read of {size} MiB (MiB/s)", True),
    ("rand-warm", "warm random 4 KiB-page reads through mmap (M reads/s)", True),
    ("exec-first", "start-up of a binary of the share, first run (ms)", False),
    ("exec-warm", "start-up, mean of the next 20 runs (ms)", False),
    ("cached-kib", "guest page cache grown by the reads (MiB)", False),
]
cs = ["avpfs-dax", "avpfs", "virtiofsd"]
def best(c, m, higher):
    v = vals.get((c, m), [])
    return (max(v) if higher else min(v)) if v else None
def med(c, m):
    v = vals.get((c, m), [])
    return statistics.median(v) if v else None
def f(x):
    return "-" if x is None else (f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}")
def ratio(a, b, higher):
    if a is None or b is None or (a == 0 if not higher else b == 0):
        return "-"
    return f"{(a / b) if higher else (b / a):.2f}x"
print("# DAX window benchmark (issue 21)\n")
print(f"Made by `scripts/bench-dax.sh`: {qemu}, TCG, Debian's Linux 6.1 guest with {mem} of memory, "
      f"one request queue, cache=auto; a {size} MiB file the host's page cache holds; "
      f"{rounds} rounds, contenders interleaved. avpfs-dax: `-o dax=always` with a window larger than the file "
      "(vhost-user-test-device-pci); avpfs and virtiofsd 1.14: vhost-user-fs-pci. Best and median of the rounds; "
      "the ratios compare medians, above 1 meaning avpfs-dax is better.\n")
print("| workload | " + " | ".join(f"{c} best | {c} median" for c in cs) + " | dax vs avpfs | dax vs virtiofsd |")
print("|---|" + "---|" * (2 * len(cs) + 2))
for m, label, higher in metrics:
    cells = []
    for c in cs:
        cells += [f(best(c, m, higher)), f(med(c, m))]
    if m == "cached-kib":
        r1 = r2 = "(less is better)"
    else:
        r1 = ratio(med("avpfs-dax", m), med("avpfs", m), higher)
        r2 = ratio(med("avpfs-dax", m), med("virtiofsd", m), higher)
    print(f"| {label} | " + " | ".join(cells) + f" | {r1} | {r2} |")
print("\n## Two guests reading the same file at once (one avpfs)\n")
print("| | guest a: page cache grown (MiB) | guest b | both |")
print("|---|---|---|---|")
for c in ("avpfs-dax", "avpfs"):
    a, b = two.get(f"{c}-a"), two.get(f"{c}-b")
    if a is None or b is None:
        continue
    print(f"| {c} | {a / 1024:.0f} | {b / 1024:.0f} | {(a + b) / 1024:.0f} |")
print("\nWith DAX the file's pages are the host's page cache, mapped into each guest's window: "
      "neither guest keeps a copy. Without DAX each guest keeps its own.")
print("\n## VM to VM: a store in one guest's mapping, seen in the other's\n")
print("Then the two guests play 1000 rounds of ping-pong through one mapped 4 KiB file: B stores a "
      "number in its mapping and spins until A's answer appears in it; A spins until B's number "
      "appears, and answers. One round trip is two crossings.\n")
print("| | round trip, min | round trip, median | one crossing, median |")
print("|---|---|---|---|")
for c in ("avpfs-dax", "avpfs"):
    t = pingpong.get(c)
    if t is None:
        continue
    m = re.search(r"min_ns=(\d+) median_ns=(\d+)", t)
    if m:
        lo, med = int(m.group(1)), int(m.group(2))
        print(f"| {c} | {lo / 1000:.2f} us | {med / 1000:.2f} us | {med / 2000:.2f} us |")
    else:
        print(f"| {c} | never: `{t.strip()}` | | |")
PY
cat "$out/README.md"
