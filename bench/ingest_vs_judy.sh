#!/bin/sh
# ingest_vs_judy.sh BUILD_DIR [RECORDS] [REPEATS] - end-to-end records/s of `pmingest ingest`
# and of the JudySL baseline (bench/judy_baseline.c) on RECORDS (default 10 M) random 16-byte
# keys with int64 values from one HDF5 file, at 1 and 2 threads, interleaved in one run;
# REPEATS (default 3) rounds. Prints one line per run, the min/median per configuration, and
# the ratios round by round with their medians.
# Checks: both programs find the same number of distinct keys. Also measures, after the
# rounds, the disk's floor for the write phase: as many bytes as the KB has, written in 1 MiB
# pieces and fsync'd, in the same directory (the baseline writes nothing, so on a slow disk
# that floor bounds the end-to-end ratio).
set -eu
B=${1:?usage: ingest_vs_judy.sh BUILD_DIR [RECORDS] [REPEATS]}
N=${2:-10000000}
R=${3:-3}
D=${BENCH_DIR:-/tmp/pme_bench}
mkdir -p "$D"
PM=$B/engine/pmingest
JB=$B/bench/judy_baseline
H5=$D/rand$N.h5
[ -f "$H5" ] || "$PM" gen --output "$H5" --records "$N" --key-kind random --key-len 16 --seed 7
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
OUT=$D/results.tsv
: > "$OUT"
i=0
while [ $i -lt "$R" ]; do
  for t in 1 2; do
    # a fresh output path each run: replacing the last run's KB would add the freeing of
    # page cache to this run's write (the baseline writes nothing)
    rm -f "$D/out.kb"
    "$PM" ingest --input "$H5:/data" --output "$D/out.kb" --threads $t --quiet \
      --report "$D/r.json"
    /usr/bin/python3 - "$D/r.json" $t >> "$OUT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = r["seconds"]
print("pmingest\t%s\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%s" % (sys.argv[2],
      r["records_per_s"], s["total"], s["read"], s["route"], s["fill"], s["write"],
      r["distinct_keys"], r["allocator"]))
PY
    "$JB" "$H5:/data" $t | /usr/bin/python3 -c '
import json, sys
r = json.loads(sys.stdin.read()); s = r["seconds"]
print("judy\t%d\t%.0f\t%.3f\t%.3f\t-\t%.3f\t-\t%d\t-" % (r["threads"], r["records_per_s"],
      s["total"], s["read"], s["fill"], r["distinct_keys"]))' >> "$OUT"
  done
  i=$((i + 1))
done
echo "program threads rec/s total read route fill write distinct allocator"
cat "$OUT"
/usr/bin/python3 - "$OUT" "$D" <<'PY'
import os, statistics, sys, time
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r[0], r[1]), []).append(r)
print("\nmedian (min) over %d rounds:" % (len(rows) // 4))
med = {}
for k, rs in sorted(by.items()):
    rate = [float(r[2]) for r in rs]
    med[k] = statistics.median(rate)
    line = "%-9s %s thr: %.2f M rec/s (max %.2f)" % (k[0], k[1], med[k] / 1e6, max(rate) / 1e6)
    fills = [float(r[6]) for r in rs]
    line += ", fill %.3f s (min %.3f)" % (statistics.median(fills), min(fills))
    if k[0] == "pmingest":
        line += ", write %.3f s" % statistics.median([float(r[7]) for r in rs])
    print(line)
d = {r[8] for r in rows}
print("distinct keys agree:", "yes" if len(d) == 1 else "NO %s" % d)
pf = {t: statistics.median([float(r[6]) for r in by[("pmingest", t)]]) for t in "12"}
print("pmingest fill speedup 2 vs 1 thread: %.2fx" % (pf["1"] / pf["2"]))
for t in "12":
    print("pmingest / judy end-to-end at %s thread(s): %.2fx" % (t, med[("pmingest", t)] /
                                                              med[("judy", t)]))
# the same, round by round: each ratio from runs minutes apart, so that a slow spell of the
# machine moves both sides of a ratio; their median is the steadier figure on a shared host
fr = [float(a[6]) / float(b[6]) for a, b in zip(by[("pmingest", "1")], by[("pmingest", "2")])]
print("per round, fill speedup: %s (median %.2fx)"
      % (" ".join("%.2f" % x for x in fr), statistics.median(fr)))
for t in "12":
    er = [float(a[2]) / float(b[2]) for a, b in zip(by[("pmingest", t)], by[("judy", t)])]
    print("per round, pmingest / judy at %s thread(s): %s (median %.2fx)"
          % (t, " ".join("%.2f" % x for x in er), statistics.median(er)))
kb = os.path.join(sys.argv[2], "out.kb")
floor = os.path.join(sys.argv[2], "floor.bin")
size = os.path.getsize(kb)
fd = os.open(floor, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
try:
    buf = b"\0" * (1 << 20)
    t0 = time.monotonic()
    left = size
    while left > 0:
        left -= os.write(fd, buf[:min(left, len(buf))])
    os.fsync(fd)
    fl = time.monotonic() - t0
finally:
    os.close(fd)
    os.unlink(floor)
print("disk floor: %d bytes (the KB's size) written and fsync'd in %.3f s" % (size, fl))
for t in "12":
    rs = by[("pmingest", t)]
    nw = statistics.median([float(r[3]) - float(r[7]) for r in rs])
    jt = statistics.median([float(r[3]) for r in by[("judy", t)]])
    print("at %s thread(s): pmingest without its write phase %.3f s, judy %.3f s (%.2fx); "
          "with the disk floor as the write: %.2fx" % (t, nw, jt, jt / nw, jt / (nw + fl)))
sys.exit(0 if len(d) == 1 else 1)
PY
