#!/bin/sh
# run_fuzz_ops.sh SRC_DIR WORK_DIR SECONDS - builds the pathmap operation fuzzer with clang
# (-fsanitize=fuzzer,address,undefined) and runs it for a bounded time from
# tests/fuzz/ops_corpus. Crashes are written to WORK_DIR; copy them into tests/fuzz/ops_corpus
# so that the replay test keeps running them.
set -eu
src=$1
work=$2
secs=${3:-30}
mkdir -p "$work/corpus"
bin=$work/fuzz_ops
clang -g -O1 -std=c11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$src/pathmap" -I"$src/tests/pathmap" \
	"$src/tests/fuzz/fuzz_ops.c" "$src/tests/pathmap/model.c" "$src"/pathmap/src/*.c \
	-lxxhash -o "$bin"
cd "$work"
exec "$bin" -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 -timeout=20 \
	-print_final_stats=1 corpus "$src/tests/fuzz/ops_corpus"
