#!/usr/bin/env bash
# The whole test run of pathmap-ingest (the README's test command calls this):
#   1. clang-format over every tracked .c/.h file;
#   2. an optimised build with -Werror and every CTest suite (unit, integration, omp, hdf5,
#      kb, fuzz replay and a bounded libFuzzer run);
#   3. the same suites under AddressSanitizer + UBSan;
#   4. the concurrent suites (label omp) under ThreadSanitizer with clang, libomp and Archer.
# Exits non-zero at the first failing step.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==== %s\n' "$*"; }

step "format (clang-format --dry-run --Werror)"
git ls-files -z '*.c' '*.h' | xargs -0 -r clang-format --dry-run --Werror
echo "format: clean"

for preset in ci asan tsan; do
  step "$preset: configure, build, test"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -- -j"$(nproc)" | tail -n 1
  ctest --preset "$preset"
done
step "all steps passed"
