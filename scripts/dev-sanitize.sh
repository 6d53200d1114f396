# Sourced by scripts/dev: the sanitizer + fuzzing build (clang, ASan + UBSan, libFuzzer coverage)
# in $SAN_BUILD. One build serves both the sanitized test suite (scripts/dev test) and the
# fuzzers (scripts/dev fuzz), so CI compiles the project twice, not three times.

SAN_BUILD="${HOOKRELAY_SAN_BUILD_DIR:-$ROOT/build-san}"
# clang-16 and its runtimes (ASan, UBSan, LSan, libFuzzer and FuzzedDataProvider.h are all in
# libclang-rt-16-dev; libfuzzer-16-dev is not needed for -fsanitize=fuzzer), and llvm-16 for
# llvm-symbolizer: without it a report's stack is bare addresses.
SAN_PACKAGES=(clang-16 libclang-rt-16-dev llvm-16)
SAN_SYMBOLIZER=/usr/lib/llvm-16/bin/llvm-symbolizer

# Every sanitizer report ends the process with a stack; leaks are reported at exit (LSan), with
# only the third-party leaks listed in tests/sanitizers/lsan.supp suppressed. Child processes
# (the services the integration tests start) inherit these.
san_env() {
  export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:print_stacktrace=1:strict_init_order=1:detect_stack_use_after_return=0"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
  export LSAN_OPTIONS="suppressions=$ROOT/tests/sanitizers/lsan.supp:print_suppressions=0"
  export ASAN_SYMBOLIZER_PATH="$SAN_SYMBOLIZER"
}

cmd_build_san() {
  install_packages "${PACKAGES[@]}" "${SAN_PACKAGES[@]}"
  log "building the sanitizer + fuzzing build in $SAN_BUILD"
  # -O0 by default: this build compiles in 668 s of CPU at -O0 against 1,037 s at -O1 (clang's
  # optimizer dominates on the Beast, asio and json templates), and the sanitized suite mostly
  # waits on services, so its run barely changes. A fuzzing campaign runs faster at -O1:
  # HOOKRELAY_SAN_OPT=-O1 scripts/dev fuzz 600. Asserts stay on (no NDEBUG). No -Werror here: the
  # warning flags are gcc's choice, and clang's extra warnings must not fail this build (the gcc
  # build in $BUILD enforces -Werror).
  local opt="${HOOKRELAY_SAN_OPT:--O0}"
  [[ "$opt" =~ ^-O[0-3sgz]$ ]] || die "HOOKRELAY_SAN_OPT must be an optimization flag like -O0 or -O1, got '$opt'"
  # shellcheck disable=SC2046  # unity_flag (scripts/dev) prints zero or one word
  cmake -S "$ROOT" -B "$SAN_BUILD" -G Ninja -DCMAKE_CXX_COMPILER=clang++-16 -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS_RELEASE="$opt -gline-tables-only" -DHOOKRELAY_SANITIZE=ON -DHOOKRELAY_FUZZ=ON \
    $(unity_flag "$SAN_BUILD") >/dev/null
  san_env  # gtest discovery runs the sanitized test binaries during the build
  # Only what the sanitized suite runs (the integration tests pull in the service binaries):
  # the tools, benchmark helpers and ops checks are the gcc build's.
  cmake --build "$SAN_BUILD" -j "${HOOKRELAY_JOBS:-$(nproc)}" --target unit_tests integration_tests fuzz_harnesses
}

# The sanitized suite: unit and integration tests (the integration tests start the sanitized
# service binaries of $SAN_BUILD), and every fuzz harness briefly on its committed corpus.
# HOOKRELAY_SAN_TESTS narrows it (a ctest -R regex); extra args go to ctest.
cmd_test_san() {
  san_env
  log "running the sanitized suite (ASan + UBSan + LSan) in $SAN_BUILD"
  local filter=()
  [ -n "${HOOKRELAY_SAN_TESTS:-}" ] && filter=(-R "$HOOKRELAY_SAN_TESTS")
  run_ctest "$SAN_BUILD" sanitized -j "${HOOKRELAY_TEST_JOBS:-4}" -L 'unit|integration|fuzz' \
    "${filter[@]}" "$@"
}

# scripts/dev fuzz [SECONDS] [HARNESS...]: every harness (or the named ones) for SECONDS each
# (default 60), one after another, on a working corpus in $STATE/fuzz/<name> that starts from the
# committed seeds (tests/fuzz/corpus/<name>, which stay as committed). Crash inputs go to
# $STATE/fuzz/artifacts/. Exit status 1 when any harness crashed.
cmd_fuzz() {
  local seconds="${1:-60}"
  [ $# -gt 0 ] && shift
  [[ "$seconds" =~ ^[0-9]+$ ]] || die "fuzz: SECONDS must be a number, got '$seconds'"
  cmd_build_san
  san_env
  local names=("$@") name bin log execs rate rc failed=0 summary=()
  if [ ${#names[@]} -eq 0 ]; then
    for bin in "$SAN_BUILD"/tests/fuzz/fuzz_*; do names+=("$(basename "$bin" | sed 's/^fuzz_//')"); done
  fi
  mkdir -p "$STATE/fuzz/artifacts"
  for name in "${names[@]}"; do
    bin="$SAN_BUILD/tests/fuzz/fuzz_$name"
    [ -x "$bin" ] || die "fuzz: no harness '$name' (have: $(ls "$SAN_BUILD/tests/fuzz" | grep '^fuzz_' | sed 's/^fuzz_//' | tr '\n' ' '))"
    mkdir -p "$STATE/fuzz/$name"
    log="$STATE/fuzz/$name.log"
    log "fuzzing $name for ${seconds}s (log: $log)"
    rc=0
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$STATE/fuzz/artifacts/$name-" "$STATE/fuzz/$name" "$ROOT/tests/fuzz/corpus/$name" \
      >"$log" 2>&1 || rc=$?
    execs=$(sed -n -E 's/^stat::(number_of_executed_units|number_executed_total): *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ "$rc" -ne 0 ]; then
      failed=1
      summary+=("$(printf '%-18s %12s %9s  CRASH (exit %s): %s' "$name" "${execs:--}" "${rate:--}" "$rc" \
        "$(grep -o "$STATE/fuzz/artifacts/[^ ]*" "$log" | tail -1)")")
      tail -40 "$log" >&2
    else
      summary+=("$(printf '%-18s %12s %9s  ok' "$name" "$execs" "$rate")")
    fi
  done
  printf '%-18s %12s %9s  %s\n' harness executions "exec/s" result
  printf '%s\n' "${summary[@]}"
  return "$failed"
}
