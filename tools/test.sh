#!/bin/sh
# Builds graphd and runs the whole test suite:
#   1. unit tests (C, per layer) and black-box tests (the real daemon on a
#      temporary directory and a free port, driven by Python grpcio and by
#      graphctl) in a normal build (build/);
#   2. the same again under AddressSanitizer + UndefinedBehaviorSanitizer
#      (build-asan/);
#   3. the black-box suite again with the daemon under valgrind memcheck
#      (any definite leak or memory error fails the daemon's exit code);
#   4. the benchmark tool's quick smoke run (with step 1);
#   5. a short libFuzzer run of each tests/fuzz target (clang build in
#      build-fuzz/; FUZZ_SECONDS each, default 10), after replaying each
#      target's corpus of seeds and past crashes.
# Installs missing Debian packages first. Safe to run twice.
# Ends with one line: "N passed, N failed".
#
#   tools/test.sh            everything above
#   tools/test.sh --quick    only step 1
set -u
cd "$(dirname "$0")/.."

full=1
[ "${1:-}" = "--quick" ] && full=0

tools/deps.sh --test || { echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0

# setup DIR [meson options...]: configure DIR once, reconfigure after.
setup() {
  dir=$1
  shift
  if [ -f "$dir/build.ninja" ]; then
    meson configure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}

# run_suites DIR SUITE...: builds and runs, adds to the totals.
run_suites() {
  dir=$1
  shift
  args=""
  for s in "$@"; do args="$args --suite $s"; done
  if ! ninja -C "$dir" >"$dir/ninja.log" 2>&1; then
    tail -n 40 "$dir/ninja.log"
    echo "build failed in $dir"
    failed=$((failed + 1))
    return
  fi
  out=$(mktemp)
  # shellcheck disable=SC2086
  meson test -C "$dir" --print-errorlogs $args 2>&1 | tee "$out"
  ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$out" | tail -n 1)
  fl=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$out" | tail -n 1)
  to=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$out" | tail -n 1)
  up=$(sed -n 's/^Unexpected Pass: *\([0-9]*\).*/\1/p' "$out" | tail -n 1)
  if [ -z "$ok" ]; then
    failed=$((failed + 1))
  else
    passed=$((passed + ok))
    failed=$((failed + ${fl:-0} + ${to:-0} + ${up:-0}))
  fi
  rm -f "$out"
}

setup build
run_suites build unit blackbox bench tools

if [ "$full" = 1 ]; then
  export GRAPHD_WRAPPER="valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=9"
  run_suites build blackbox
  unset GRAPHD_WRAPPER
fi

if [ "$full" = 1 ]; then
  setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
  export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}"
  run_suites build-asan unit blackbox
fi

if [ "$full" = 1 ]; then
  fout=$(mktemp)
  tools/fuzz.sh build-fuzz "${FUZZ_SECONDS:-10}" | tee "$fout"
  passed=$((passed + $(grep -c ' 0 crashes$' "$fout")))
  failed=$((failed + 2 - $(grep -c ' 0 crashes$' "$fout")))
  rm -f "$fout"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
