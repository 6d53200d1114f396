#!/usr/bin/env bash
# One fuzz ctest: every committed seed once, then SECONDS of mutation. New inputs go to SCRATCH
# (libFuzzer writes to the first corpus directory only), never into the committed seeds. A crash
# or sanitizer report fails the test; the input that caused it goes to SCRATCH.artifacts/.
# usage: run_fuzz_test.sh HARNESS SEEDS SCRATCH SECONDS
set -euo pipefail
harness="$1" seeds="$2" scratch="$3" seconds="$4"
mkdir -p "$scratch" "$scratch.artifacts"
exec "$harness" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$scratch.artifacts/" "$scratch" "$seeds"
