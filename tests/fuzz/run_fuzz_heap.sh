#!/bin/sh
# run_fuzz_heap.sh SRC_DIR WORK_DIR SECONDS - builds the libFuzzer target over the check of
# variable-length string references (io/src/heapcheck.c) with clang
# (-fsanitize=fuzzer,address,undefined) and runs it for a bounded time, starting from
# tests/fuzz/heap_corpus. New inputs go to WORK_DIR/corpus (merge them into
# tests/fuzz/heap_corpus with -merge=1, and copy every crash-* file there: the replay test
# then runs them forever).
set -eu
src=$1
work=$2
secs=${3:-60}
mkdir -p "$work/corpus"
bin=$work/fuzz_heap
clang -g -O1 -std=c11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$src/io" -I"$src/io/src" -I/usr/include/hdf5/serial \
	"$src/tests/fuzz/fuzz_heap.c" "$src/io/src/heapcheck.c" "$src/io/src/err.c" \
	-L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5 -o "$bin"
cd "$work"
exec "$bin" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=20 \
	-print_final_stats=1 corpus "$src/tests/fuzz/heap_corpus"
