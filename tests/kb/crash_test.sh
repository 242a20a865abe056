#!/bin/bash
# crash_test.sh PMINGEST WORKDIR - a KB write interrupted by kill -9, by SIGTERM, or failing
# on a full file-size limit never leaves a truncated file under the KB's name: the old KB
# stays byte-identical (or, when the kill comes after the rename, the new KB is complete).
set -u
PM=$1
W=$2
rm -rf "$W"
mkdir -p "$W"
cd "$W" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

/usr/bin/python3 - <<'PY'
import random
r = random.Random(4)
with open("small.tsv", "w") as f:
    for i in range(1000):
        f.write("old-%d\t%d\n" % (i, i))
with open("big.tsv", "w") as f:
    for i in range(600000):
        f.write("key-%016x-%d\tvalue %s\n" % (r.getrandbits(64), i, "x" * r.randrange(40)))
PY
"$PM" kb-build small.tsv --output old.kb || exit 1
"$PM" kb-build small.tsv --output old2.kb --value-type string || exit 1
cp old.kb pristine.kb
old_sum=$(sha256sum < old.kb)

start=$(date +%s.%N)
"$PM" kb-build big.tsv --output new.kb --value-type string || exit 1
end=$(date +%s.%N)
new_sum=$(sha256sum < new.kb)
full=$(echo "$end - $start" | bc)
echo "full write: $full s"

check_target() { # $1: what happened
	local s
	s=$(sha256sum < target.kb)
	if [ "$s" != "$old_sum" ] && [ "$s" != "$new_sum" ]; then
		fail "$1: target.kb is neither the old nor the new KB"
	fi
	"$PM" verify --quiet target.kb || fail "$1: target.kb does not verify"
}

# kill -9 at spread-out moments of the run (most in its last half, where the file is written).
for frac in 0.1 0.3 0.5 0.6 0.7 0.75 0.8 0.85 0.9 0.95 0.98 1.0 1.05; do
	cp pristine.kb target.kb
	"$PM" kb-build big.tsv --output target.kb --value-type string &
	pid=$!
	sleep "$(echo "$full * $frac" | bc)"
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	check_target "kill -9 at $frac"
done

# SIGTERM: exit 130 (or 0 if it had finished), old KB intact, no temporary file left.
for frac in 0.2 0.6 0.8 0.95; do
	cp pristine.kb target.kb
	"$PM" kb-build big.tsv --output target.kb --value-type string &
	pid=$!
	sleep "$(echo "$full * $frac" | bc)"
	kill -TERM $pid 2>/dev/null
	wait $pid
	rc=$?
	[ $rc -eq 130 ] || [ $rc -eq 0 ] || fail "SIGTERM at $frac: exit $rc"
	check_target "SIGTERM at $frac"
	ls -a | grep -q '\.tmp\.' && fail "SIGTERM at $frac left a temporary file"
done

# merge interrupted by kill -9
"$PM" kb-build big.tsv --output big.kb --value-type string || exit 1
cp old2.kb target.kb
old_sum=$(sha256sum < target.kb)
"$PM" merge big.kb old2.kb --output m.kb || exit 1
new_sum=$(sha256sum < m.kb)
for delay in 0.05 0.2 0.4; do
	cp old2.kb target.kb
	"$PM" merge big.kb old2.kb --output target.kb &
	pid=$!
	sleep $delay
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	check_target "merge kill -9 after $delay s"
done

# A full disk (file-size limit): the OS error is reported, exit 4, old KB intact, no temp.
cp old2.kb target.kb
old_sum=$(sha256sum < target.kb)
(
	trap '' XFSZ
	ulimit -f 256
	"$PM" kb-build big.tsv --output target.kb --value-type string 2> err.txt
	echo $? > rc.txt
)
[ "$(cat rc.txt)" = 4 ] || fail "file-size limit: exit $(cat rc.txt), expected 4"
grep -q "File too large" err.txt || fail "file-size limit: message: $(cat err.txt)"
grep -q "target.kb" err.txt || fail "file-size limit: message does not name the file"
[ "$(sha256sum < target.kb)" = "$old_sum" ] || fail "file-size limit: target.kb changed"
ls -a | grep -q '\.tmp\.' && fail "file-size limit left a temporary file"

# An unwritable directory: exit 4, message with the OS error.
mkdir -p ro && chmod 555 ro
if [ "$(id -u)" != 0 ]; then
	"$PM" kb-build small.tsv --output ro/x.kb 2> err.txt
	[ $? = 4 ] || fail "read-only directory: exit status"
	grep -q "Permission denied" err.txt || fail "read-only directory: message"
fi

stale=$(ls -a | grep -c '\.tmp\.')
echo "stale temporary files after kill -9 runs: $stale (O_TMPFILE leaves none)"
if [ $fails -ne 0 ]; then
	echo "crash_test: $fails failures"
	exit 1
fi
echo "crash_test: all checks passed"
