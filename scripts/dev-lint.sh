# Sourced by scripts/dev: the project's lint, run by the test suite (ctest labels `lint`).
#
#   scripts/dev format          rewrite every C++ file with the project's .clang-format
#   scripts/dev lint [--all]    clang-format check of every C++ file, then clang-tidy (the
#                               project's .clang-tidy) on the product sources changed since the
#                               tree was last checked whole; --all checks every product source.
#
# Why clang-tidy checks the changed sources only: with the project's checks it costs about 25-30 s
# of CPU per translation unit (measured with clang-tidy-16 on worker/dispatcher.cpp), so the whole
# tree is about 45 CPU-minutes, more than the suite's time budget on a 2-core machine. The commit at
# which `scripts/dev lint` last passed on a committed tree is recorded in tools/lint/tidy-checked-at
# (commit that file); everything changed since then (committed or not) is checked on every run, so
# a finding cannot slip in. Run `scripts/dev lint` before pushing: the suite's lint_tidy then has
# little left to check.

LINT_PACKAGES=(clang-format-16 clang-tidy-16)
LINT_TIDY_CHECKED_AT="$ROOT/tools/lint/tidy-checked-at"
# Product code clang-tidy checks; tests and benchmarks are formatted but not tidied (gtest's macros
# trip the bugprone checks by design).
LINT_TIDY_DIRS=(shared ingest worker admin cli devbroker tools)

lint_cxx_files() {
  git -C "$ROOT" ls-files -- '*.cpp' '*.h' '*.cc' '*.hpp'
}

cmd_format() {
  install_packages "${LINT_PACKAGES[@]}"
  (cd "$ROOT" && lint_cxx_files | xargs -r clang-format-16 -i)
}

cmd_lint_format() {
  install_packages "${LINT_PACKAGES[@]}"
  log "clang-format check of every C++ file"
  local bad
  bad=$(cd "$ROOT" && lint_cxx_files | xargs -r -n 40 clang-format-16 --dry-run 2>&1 | grep -o '^[^:]*:[0-9]*:[0-9]*: warning' |
        cut -d: -f1 | sort -u) || true
  if [ -n "$bad" ]; then
    printf 'not formatted with the project'"'"'s .clang-format (fix: scripts/dev format):\n%s\n' "$bad" >&2
    return 1
  fi
}

# The product sources clang-tidy must check: every one with --all, else those changed since the
# recorded commit (a changed header brings in the sources of the same name beside it).
lint_tidy_sources() {
  local all="$1" base changed f stem
  if [ "$all" = 1 ]; then
    (cd "$ROOT" && git ls-files -- "${LINT_TIDY_DIRS[@]/%//*.cpp}")
    return
  fi
  base=$(cat "$LINT_TIDY_CHECKED_AT" 2>/dev/null || true)
  if [ -z "$base" ] || ! git -C "$ROOT" cat-file -e "$base^{commit}" 2>/dev/null; then
    log "clang-tidy: the recorded commit '${base:-none}' is not in this clone; checking the last commit's changes"
    base=HEAD~1
  fi
  changed=$( (cd "$ROOT" && { git diff --name-only "$base" -- "${LINT_TIDY_DIRS[@]}";
              git ls-files --others --exclude-standard -- "${LINT_TIDY_DIRS[@]}"; }) | sort -u)
  for f in $changed; do
    case "$f" in
      *.cpp) [ -f "$ROOT/$f" ] && echo "$f" ;;
      *.h) stem="${f%.h}"; [ -f "$ROOT/$stem.cpp" ] && echo "$stem.cpp" ;;
    esac
  done | sort -u
}

cmd_lint_tidy() {
  local all=0
  [ "${1:-}" = "--all" ] && all=1
  install_packages "${LINT_PACKAGES[@]}"
  [ -f "$BUILD/compile_commands.json" ] || die "lint: no $BUILD/compile_commands.json (run scripts/dev build first)"
  local sources db="$BUILD"
  mapfile -t sources < <(lint_tidy_sources "$all")
  if [ ${#sources[@]} -eq 0 ]; then
    log "clang-tidy: no product source changed since $(cat "$LINT_TIDY_CHECKED_AT" 2>/dev/null)"
    return 0
  fi
  # A unity build's compile_commands.json names its batch files, not the sources in them, and
  # run-clang-tidy checks only files the database names: the sources get their own database from
  # a configure-only, non-unity directory (seconds; nothing is compiled there).
  if grep -q '^HOOKRELAY_UNITY:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    db="$BUILD/tidy-db"
    cmake -S "$ROOT" -B "$db" -G Ninja -DHOOKRELAY_UNITY=OFF -DHOOKRELAY_TESTS=OFF \
      -DCMAKE_BUILD_TYPE="$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt")" >/dev/null
  fi
  local f missing=0
  for f in "${sources[@]}"; do
    grep -q "\"file\": \"$ROOT/$f\"" "$db/compile_commands.json" ||
      { echo "lint: $f has no compile command in $db/compile_commands.json" >&2; missing=1; }
  done
  [ "$missing" = 0 ] || return 1
  log "clang-tidy on ${#sources[@]} product source(s)"
  # WarningsAsErrors in .clang-tidy makes any finding fail the run; -quiet keeps the log to findings.
  (cd "$ROOT" && run-clang-tidy-16 -quiet -p "$db" -j "${HOOKRELAY_JOBS:-$(nproc)}" \
     -clang-tidy-binary clang-tidy-16 "${sources[@]/#/$ROOT/}" 2>&1 |
     grep -v -E '^[0-9]+ warnings? generated|^Suppressed [0-9]+ warnings|^Use -header-filter|^$' ; exit "${PIPESTATUS[0]}")
}

cmd_lint() {
  local rc=0
  cmd_lint_format || rc=1
  cmd_lint_tidy "$@" || rc=1
  # Clean: every product source changed since the recorded commit (or all of them) passed, and
  # the others passed at that commit, so HEAD becomes the new mark when the tree is committed.
  if [ "$rc" = 0 ]; then
    git -C "$ROOT" diff --quiet HEAD -- . && git -C "$ROOT" rev-parse HEAD >"$LINT_TIDY_CHECKED_AT" &&
      log "clean at $(cat "$LINT_TIDY_CHECKED_AT"): recorded in tools/lint/tidy-checked-at (commit it)"
  fi
  return "$rc"
}
