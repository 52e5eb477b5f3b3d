#!/bin/sh
# Runs the libFuzzer targets of tests/fuzz: first once over each target's
# corpus (tests/fuzz/corpus/NAME: seeds and every crash found so far, kept
# as regression inputs), then SECONDS of fuzzing per target. Crashes are
# written to BUILD/fuzz-artifacts/ (add them to the corpus once fixed).
# Prints "fuzz NAME: N executions in S s, K crashes" per target and exits
# non-zero if any target crashed.
#
#   tools/fuzz.sh [BUILD] [SECONDS]     default build-fuzz, 30
#
# BUILD is configured by this script when it has no build.ninja yet:
#   CC=clang meson setup BUILD -Dfuzz=true -Db_sanitize=address,undefined \
#     -Db_lundef=false -Dbuildtype=debug -Dblackbox_tests=false
set -u
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
secs=${2:-30}
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug -Dblackbox_tests=false >/dev/null || exit 1
fi
ninja -C "$build" tests/fuzz/fuzz_ingest tests/fuzz/fuzz_requests tests/fuzz/fuzz_pbjson >"$build/fuzz-ninja.log" 2>&1 ||
  { tail -n 30 "$build/fuzz-ninja.log"; exit 1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
mkdir -p "$build/fuzz-artifacts"
bad=0
for name in ingest requests pbjson; do
  exe="$build/tests/fuzz/fuzz_$name"
  corpus="tests/fuzz/corpus/$name"
  work=$(mktemp -d)
  log="$build/fuzz-$name.log"
  if ! "$exe" -runs=0 "$corpus" >"$log" 2>&1; then
    echo "fuzz $name: a corpus input fails (regression); see $log"
    bad=1
    rm -rf "$work"
    continue
  fi
  "$exe" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$name-" \
    "$work" "$corpus" >>"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  crashes=0
  [ "$rc" -ne 0 ] && crashes=1 && bad=1
  echo "fuzz $name: ${execs:-0} executions in $secs s, $crashes crashes"
  [ "$rc" -ne 0 ] && tail -n 30 "$log"
  rm -rf "$work"
done
exit $bad
