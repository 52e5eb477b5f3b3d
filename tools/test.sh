#!/bin/sh
# Builds graphd and runs the whole test suite:
#   1. unit tests (C, per layer), black-box tests (the real daemon on a
#      temporary directory and a free port, driven by Python grpcio and by
#      graphctl), the benchmark tool's quick smoke run and the client
#      tools' tests (suite tools: graphctl export and report, the Python
#      client, meson install) and the detection quality gates (suite
#      quality) in a normal build (build/);
#   2. unit and black-box tests again under AddressSanitizer +
#      UndefinedBehaviorSanitizer (build-asan/), but the black-box files
#      of suite no_asan;
#   3. the black-box suite again with the daemon under valgrind memcheck
#      (any definite leak or memory error fails the daemon's exit code),
#      in the background from the start, side by side with the rest;
#   4. a short libFuzzer run of each tests/fuzz target (clang build in
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

# setup DIR [meson options...]: configure DIR, or reconfigure it: a
# reconfigure looks for every program again, so a build directory set up
# before the test packages were installed (tools/demo.sh first) finds
# them now.
setup() {
  dir=$1
  shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}

# How many tests each suite registers. A suite that shrank (a program not
# found at configure time, a test file dropped from a meson.build) fails
# here by name instead of passing with fewer tests; a suite that cannot
# run at all registers a failing "-cannot-run" test and is caught too.
# Adding a test means raising its count here.
EXPECT="unit:13 blackbox:25 bench:8 tools:5 quality:1"

# check_counts DIR SUITE...: compares each suite's registered tests with
# EXPECT; every mismatch counts as one failure.
check_counts() {
  dir=$1
  shift
  list=$(meson test -C "$dir" --list 2>/dev/null)
  for s in "$@"; do
    want=$(echo " $EXPECT " | sed -n "s/.* $s:\([0-9]*\) .*/\1/p")
    # A test in several suites is listed as "graphd:a+b / name".
    got=$(printf '%s\n' "$list" | grep -cE ":([a-z_]+\+)*$s(\+[a-z_]+)* / ")
    bad=$(printf '%s\n' "$list" | grep -cE ":([a-z_]+\+)*$s(\+[a-z_]+)* / .*-cannot-run")
    if [ "$got" != "$want" ] || [ "$bad" != 0 ]; then
      echo "suite $s in $dir: $got tests registered ($bad that cannot run), expected $want"
      failed=$((failed + 1))
    fi
  done
}

# run_suites DIR SUITE...: builds and runs, adds to the totals. $LOGBASE
# names meson's log files (passes that share a build directory run side by
# side); $NO_BUILD=1 skips the build (already done); $NO_SUITE leaves a
# suite's tests out.
run_suites() {
  dir=$1
  shift
  args="--logbase ${LOGBASE:-testlog}"
  for s in "$@"; do args="$args --suite $s"; done
  [ -n "${NO_SUITE:-}" ] && args="$args --no-suite $NO_SUITE"
  if [ "${NO_BUILD:-0}" != 1 ] && ! ninja -C "$dir" >"$dir/ninja.log" 2>&1; then
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

# add_counts FILE: adds FILE's "PASSED FAILED" to the totals (a pass that
# left no counts failed).
add_counts() {
  if [ -s "$1" ]; then
    read -r p f <"$1"
    passed=$((passed + p))
    failed=$((failed + f))
  else
    failed=$((failed + 1))
  fi
}

setup build
check_counts build unit blackbox bench tools quality
if [ "$full" = 0 ]; then
  run_suites build unit blackbox bench tools quality
else
  # The black-box suite with the daemon under valgrind runs in the
  # background from the start, side by side with everything else: it is
  # the longest pass and keeps about one core busy (valgrind runs a
  # process's threads one at a time). Its output is shown at the end; its
  # counts come back through a file.
  if ! ninja -C build >build/ninja.log 2>&1; then
    tail -n 40 build/ninja.log
    echo "0 passed, 1 failed"
    exit 1
  fi
  vdir=$(mktemp -d)
  (
    passed=0
    failed=0
    export GRAPHD_WRAPPER="valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=9"
    # Without the no_valgrind files (tests/blackbox/meson.build says why).
    NO_BUILD=1 NO_SUITE=no_valgrind LOGBASE=testlog-valgrind run_suites build blackbox \
      >"$vdir/valgrind.out" 2>&1
    echo "$passed $failed" >"$vdir/valgrind.counts"
  ) &
  vpid=$!

  NO_BUILD=1 run_suites build unit blackbox bench tools quality

  setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
  check_counts build-asan unit blackbox
  (
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}"
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
    export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}"
    passed=0
    failed=0
    # Without the no_asan files (tests/blackbox/meson.build says why).
    NO_SUITE=no_asan run_suites build-asan unit blackbox
    echo "$passed $failed" >"$vdir/asan.counts"
  )
  add_counts "$vdir/asan.counts"
fi

if [ "$full" = 1 ]; then
  fout=$(mktemp)
  tools/fuzz.sh build-fuzz "${FUZZ_SECONDS:-10}" | tee "$fout"
  passed=$((passed + $(grep -c ' 0 crashes$' "$fout")))
  failed=$((failed + 3 - $(grep -c ' 0 crashes$' "$fout")))
  rm -f "$fout"
fi

if [ "$full" = 1 ]; then
  wait "$vpid"
  echo "==== black-box suite, daemon under valgrind ===="
  cat "$vdir/valgrind.out"
  add_counts "$vdir/valgrind.counts"
  rm -rf "$vdir"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
