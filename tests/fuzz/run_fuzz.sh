#!/bin/sh
# run_fuzz.sh NAME WORK_DIR SECONDS MAX_LEN CLANG_ARGS... - builds the libFuzzer target
# tests/fuzz/fuzz_NAME.c with clang (-fsanitize=fuzzer,address,undefined; CLANG_ARGS name its
# include directories, the sources it tests and its libraries) and runs it for a bounded time
# on inputs of up to MAX_LEN bytes, starting from tests/fuzz/NAME_corpus. New inputs go to
# WORK_DIR/corpus: merge them into tests/fuzz/NAME_corpus with -merge=1, and copy every
# crash-* file there, so that the replay test (fuzz_NAME_replay) runs them from then on.
set -eu
name=$1
work=$2
secs=$3
maxlen=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work/corpus"
bin=$work/fuzz_$name
clang -g -O1 -std=c11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	"$here/fuzz_$name.c" "$@" -o "$bin"
cd "$work"
exec "$bin" -max_total_time="$secs" -max_len="$maxlen" -rss_limit_mb=2048 -timeout=20 \
	-print_final_stats=1 corpus "$here/${name}_corpus"
