#!/bin/sh
# run_fuzz_kb.sh SRC_DIR WORK_DIR SECONDS - builds the libFuzzer target over the KB and snapshot
# readers with clang (-fsanitize=fuzzer,address,undefined) and runs it for a bounded time,
# starting from tests/fuzz/kb_corpus. New inputs go to WORK_DIR/corpus (merge them into
# tests/fuzz/kb_corpus with -merge=1, and copy every crash-* file there: the replay test then
# runs them forever).
set -eu
src=$1
work=$2
secs=${3:-60}
mkdir -p "$work/corpus"
bin=$work/fuzz_kb
clang -g -O1 -std=c11 -fopenmp=libomp -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined \
	-I"$src/pathmap" -I"$src/pathmap/src" -I"$src/engine" -I"$src/io" \
	"$src/tests/fuzz/fuzz_kb.c" "$src/engine/kb.c" "$src/io/src/typemerge.c" \
	"$src"/pathmap/src/*.c \
	-lxxhash -o "$bin"
cd "$work"
exec "$bin" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=20 \
	-print_final_stats=1 corpus "$src/tests/fuzz/kb_corpus"
