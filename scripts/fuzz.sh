#!/usr/bin/env bash
# Runs the cargo-fuzz (libFuzzer) targets of fuzz/ for a bounded time each;
# fails when one of them finds a crash.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#        scripts/fuzz.sh --gen-corpus      (rewrite the seed corpus only)
#   SECONDS: per target (default 60), passed as -max_total_time.
#   TARGET:  fuse_request, descriptor_chain, virtio_request, p9_codec, p9_server (default: all).
#
# Environment:
#   FUZZ_FS=passthrough|memfs  what fuse_request serves (default: passthrough
#                              as root, in its own mount namespace on a tmpfs;
#                              memfs otherwise).
#   FUZZ_SANITIZER=address|none  (default address)
#   FUZZ_ARGS                  extra libFuzzer flags (e.g. "-jobs=2 -workers=2").
#   AVPFS_FUZZ_PT              passthrough options (see fuzz/src/fuse.rs).
#   CARGO_BUILD_JOBS           (default 1)
#
# Only a stable toolchain is needed: cargo-fuzz asks for nightly-only flags
# (-Zsanitizer, -Cpasses=sancov-module), which RUSTC_BOOTSTRAP=1 allows.
# The fuzzer grows its corpus in fuzz/work/TARGET (not committed) and reads
# the seeds in fuzz/corpus/TARGET (committed; regenerate with --gen-corpus).
# A crash leaves its input in fuzz/artifacts/TARGET/; reproduce with
#   (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run [--features passthrough] TARGET artifacts/TARGET/crash-...)
# and minimize with `cargo fuzz tmin TARGET artifacts/TARGET/crash-...`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz="$root/fuzz"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$fuzz/target"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

gen_corpus() {
  (cd "$fuzz" && cargo run --quiet --features gen-corpus --bin gen_corpus)
}

if [ "${1:-}" = "--gen-corpus" ]; then
  gen_corpus
  exit 0
fi

seconds=60
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuse_request descriptor_chain virtio_request p9_codec p9_server)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi

fs="${FUZZ_FS:-}"
if [ -z "$fs" ]; then
  if [ "$(id -u)" = 0 ]; then fs=passthrough; else fs=memfs; fi
fi
features=()
case "$fs" in
  passthrough) features=(--features passthrough) ;;
  memfs) ;;
  *) echo "fuzz.sh: FUZZ_FS must be passthrough or memfs, not $fs" >&2; exit 2 ;;
esac
sanitizer=(--sanitizer "${FUZZ_SANITIZER:-address}")

# The seeds are generated from the fuse-abi structs: keep them current.
gen_corpus

cd "$fuzz"
# The harnesses' own tests: the seeds replay cleanly, the invariant checks
# and the sandbox work.
if ! cargo test --quiet "${features[@]}" >work-selftest.log 2>&1; then
  cat work-selftest.log >&2
  echo "fuzz.sh: the fuzz harness tests fail" >&2
  rm -f work-selftest.log
  exit 2
fi
rm -f work-selftest.log
echo "fuzz.sh: building ${targets[*]} (fuse_request on $fs)" >&2
for t in "${targets[@]}"; do
  if ! cargo fuzz build "${sanitizer[@]}" "${features[@]}" "$t"; then
    echo "fuzz.sh: cannot build $t (a build error, not a fuzzing finding)" >&2
    exit 2
  fi
done
# The binaries are run directly (as `cargo fuzz run` does, without its
# rebuild), so that edits made meanwhile do not stop a run.
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

mkdir -p work/logs
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | sort)
  extra=(-max_len=16384)
  [ "$t" = fuse_request ] && extra+=(-dict=fuse_request.dict)
  log="work/logs/$t.log"
  echo "fuzz.sh: $t for ${seconds}s (log: fuzz/$log)" >&2
  status=0
  # shellcheck disable=SC2086
  "$bin/$t" "work/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "${extra[@]}" ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  new=$(comm -13 <(echo "$before") <(find "artifacts/$t" -type f | sort) | grep . || true)
  line="$t: ${execs:-?} execs, ${rate:-?} exec/s, ${cov:-cov: ?}, corpus $(find "work/$t" -type f | wc -l) files"
  if [ "$status" != 0 ] || [ -n "$new" ]; then
    line="$line: FAILED (exit $status)"
    failed+=("$t")
    grep -m1 -A3 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY' "$log" >&2 || tail -20 "$log" >&2
    [ -z "$new" ] || echo "fuzz.sh: new artifacts: $new" >&2
  fi
  summary+=("$line")
done

printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crash in ${failed[*]}" >&2
  exit 1
fi
