#!/bin/sh
# Builds pm_bench (RelWithDebInfo, jemalloc, no HDF5 layer) in build-bench/ and runs it.
# Arguments go to pm_bench, e.g.:  bench/run_pm_bench.sh -n 100000 -w paths
# The output is also kept in build-bench/pm_bench-<date>.log.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${PM_BENCH_BUILD:-$root/build-bench}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPM_BUILD_IO=OFF >/dev/null
cmake --build "$build" --target pm_bench -j2
log=$build/pm_bench-$(date +%Y%m%d-%H%M%S).log
status=0
"$build/bench/pm_bench" "$@" | tee "$log" || status=$?
# tee hides pm_bench's status in plain sh; the last line tells.
tail -n 1 "$log" | grep -q '^all checks passed' || status=1
echo "log: $log"
exit $status
