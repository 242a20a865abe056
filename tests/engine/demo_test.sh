#!/bin/sh
# demo_test.sh PMINGEST DIR - runs `pmingest demo` (the README's main job, smaller) and checks
# what it claims: exit status 0, a KB that verifies, a key count equal to the distinct keys
# of the run's summary, and the sample queries' output. DIR does not exist beforehand: the
# demo makes it, and missing parents (mkdir -p); one under a file is refused (exit 4, the
# directory named).
set -eu
PM=$1
DIR=$2
rm -rf "$DIR" "$DIR.file"
"$PM" demo --records 100 --dir "$DIR.p/missing/run" > /dev/null 2>&1 || {
  echo "demo into missing parents: status $?"; exit 1; }
[ -s "$DIR.p/missing/run/demo.kb" ] || { echo "demo into missing parents: no KB"; exit 1; }
rm -rf "$DIR.p"
: > "$DIR.file"
status=0
"$PM" demo --records 100 --dir "$DIR.file/run" 2> "$DIR.err" || status=$?
[ "$status" = 4 ] && grep -q "cannot create the directory $DIR.file/run" "$DIR.err" || {
  echo "demo under a file: status $status"; cat "$DIR.err"; exit 1; }
rm -f "$DIR.err" "$DIR.file"
"$PM" demo --records 100000 --dir "$DIR" > "$DIR.out" 2>&1 || {
  echo "demo failed with status $?"; cat "$DIR.out"; exit 1; }
mv "$DIR.out" "$DIR/out.txt"
"$PM" verify "$DIR/demo.kb" > /dev/null
distinct=$(sed -n 's/.*: \([0-9]*\) distinct keys.*/\1/p' "$DIR/out.txt")
count=$("$PM" count "$DIR/demo.kb")
[ -n "$distinct" ] && [ "$distinct" = "$count" ] || {
  echo "summary says '$distinct' distinct keys, pmingest count says '$count'"; exit 1; }
grep -q '^\$ pmingest scan ' "$DIR/out.txt"
# the scan printed 5 keys under the cell prefix it was given
cell=$(sed -n 's/^\$ pmingest scan [^ ]* \([^ ]*\) --limit 5$/\1/p' "$DIR/out.txt")
n=$(grep -c "^$cell" "$DIR/out.txt" || true)
[ "$n" -ge 1 ] || { echo "no scan output under '$cell'"; cat "$DIR/out.txt"; exit 1; }
grep -q "not found in $DIR/demo.kb" "$DIR/out.txt"
grep -q '(exit status 1: a key was missing)' "$DIR/out.txt"
echo "demo: $count keys, scan and get as expected"
