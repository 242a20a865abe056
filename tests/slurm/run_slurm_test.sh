#!/usr/bin/env bash
# run_slurm_test.sh - the job scripts of configs/slurm/ on a real one-node SLURM.
#
#   run_slurm_test.sh PMINGEST SRC_DIR
#
# Installs Debian's slurm-wlm, munge and python3-matplotlib when missing (exit 77, CTest's
# skip, only when that fails), then, all in one temporary directory:
#   - munged on its own socket, with a fresh key;
#   - slurmctld and slurmd (SlurmUser=root, proctrack/linuxproc, task/none, select/cons_tres,
#     a node named $(hostname) with CPUs=$(nproc)), with a generated slurm.conf, free ports,
#     state, spool and logs in the temporary directory; clients reach it through SLURM_CONF;
#   - ingest.sbatch with sbatch --wait on a generated demo input: the KB exists, `pmingest
#     count` equals the records generated, the report sits next to the KB and says the run
#     used the job's CPUs;
#   - scaling.sbatch as an array over the thread counts 1, 2, 4, ... nproc, then
#     scaling_gather.sbatch with --dependency=afterok and sbatch --wait: the CSV has one row
#     per thread count, the PNG exists.
# The daemons it started are stopped by pid (trap on EXIT) and the directory removed, pass or
# fail. Nothing outside the temporary directory is touched (besides apt-get).
set -euo pipefail

SKIP=77
PMINGEST=${1:?usage: run_slurm_test.sh PMINGEST SRC_DIR}
SRC=${2:?usage: run_slurm_test.sh PMINGEST SRC_DIR}
RECORDS=${SLURM_TEST_RECORDS:-50000}
JOB_TIMEOUT=${SLURM_TEST_JOB_TIMEOUT:-240}

say() { printf 'slurm-test: %s\n' "$*"; }
fail() {
	printf 'slurm-test: FAIL: %s\n' "$*" >&2
	exit 1
}

[[ $(id -u) == 0 ]] || {
	say "SKIP: must run as root (SlurmUser=root, apt-get)"
	exit $SKIP
}
[[ -x $PMINGEST ]] || fail "pmingest not found at '$PMINGEST'"
PMINGEST=$(readlink -f "$PMINGEST")
SRC=$(readlink -f "$SRC")

# ---- packages -------------------------------------------------------------------------------
pkgs=(slurm-wlm munge python3-matplotlib)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	say "installing ${missing[*]}"
	if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"${missing[@]}"; } >/dev/null 2>&1; then
		say "SKIP: cannot install ${missing[*]} with apt-get"
		exit $SKIP
	fi
fi
for b in munged mungekey slurmctld slurmd sbatch squeue sinfo scancel; do
	command -v "$b" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
	command -v "$b" >/dev/null || fail "$b not found after installing ${pkgs[*]}"
done

# ---- temporary cluster ----------------------------------------------------------------------
tmp=$(mktemp -d /tmp/pm-slurm-test.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
	local st=$?
	set +e
	if [[ -n ${SLURM_CONF:-} && -f ${SLURM_CONF:-} ]]; then
		scancel --quiet --user=root 2>/dev/null
		for _ in $(seq 20); do
			[[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
			sleep 0.5
		done
	fi
	# A job's slurmstepd outlives it by a moment; it owns a socket in the spool directory
	# until it exits. Let them finish before slurmd goes.
	for _ in $(seq 40); do
		compgen -G "$tmp/spool/*_*" >/dev/null || break
		sleep 0.25
	done
	# Stop what we started, newest first, by pid; SIGKILL whatever is still there after 10 s.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null
	done
	for _ in $(seq 20); do
		local alive=0
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.5
	done
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	if ((st != 0)) && [[ -d $tmp/log ]]; then
		for f in "$tmp"/log/* "$tmp"/work/*.out; do
			[[ -f $f ]] || continue
			echo "---- $f (last lines)" >&2
			tail -n 25 "$f" >&2
		done
	fi
	rm -rf "$tmp"
	exit "$st"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp"/{munge,state,spool,log,run,work}
chmod 755 "$tmp/munge" # clients need to reach the socket; the key itself is 0600

say "munged (socket $tmp/munge/munge.socket)"
mungekey --create --keyfile="$tmp/munge/munge.key" >/dev/null 2>&1 ||
	fail "mungekey could not create a key"
munged --foreground --force --socket="$tmp/munge/munge.socket" \
	--key-file="$tmp/munge/munge.key" --pid-file="$tmp/run/munged.pid" \
	--log-file="$tmp/log/munged.log" --seed-file="$tmp/munge/munged.seed" \
	>"$tmp/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
	[[ -S $tmp/munge/munge.socket ]] && break
	sleep 0.1
done
munge --socket="$tmp/munge/munge.socket" -n | unmunge --socket="$tmp/munge/munge.socket" \
	>/dev/null || fail "munged does not answer on its socket"

# Two free TCP ports on this machine (bound by the kernel, then released).
read -r ctld_port slurmd_port < <(/usr/bin/python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
host=$(hostname)
cpus=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {m = int($2 / 1024 / 2); print (m > 4096 ? 4096 : m)}' /proc/meminfo)

export SLURM_CONF=$tmp/slurm.conf
cat >"$SLURM_CONF" <<EOF
# Generated by tests/slurm/run_slurm_test.sh: a one-node cluster for one test run.
ClusterName=pmtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.socket
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/run/slurmctld.pid
SlurmdPidFile=$tmp/run/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
DependencyParameters=kill_invalid_depend
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

say "slurmctld (port $ctld_port) and slurmd (port $slurmd_port), node $host, $cpus CPUs"
slurmctld -D -i -f "$SLURM_CONF" >"$tmp/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$host" >"$tmp/log/slurmd.out" 2>&1 &
pids+=($!)
state=
for _ in $(seq 100); do
	state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
	[[ $state == idle* ]] && break
	sleep 0.2
done
[[ $state == idle* ]] || fail "node $host did not become idle (state '$state')"

# sbatch --wait, bounded: a job that hangs fails the test instead of the test hanging.
submit_wait() {
	timeout --signal=TERM "$JOB_TIMEOUT" sbatch --wait "$@"
}

export PMINGEST PM_SRC=$SRC
cd "$tmp/work"

# ---- 1. ingest.sbatch -----------------------------------------------------------------------
say "ingest.sbatch: $RECORDS generated records, --cpus-per-task=$cpus --mem=512M"
submit_wait --cpus-per-task="$cpus" --mem=512M --output="$tmp/work/ingest-%j.out" \
	"--export=ALL,PM_OUTDIR=$tmp/work/ingest,PM_DEMO_RECORDS=$RECORDS" \
	"$SRC/configs/slurm/ingest.sbatch" >/dev/null ||
	fail "ingest.sbatch did not succeed (sbatch --wait status $?)"
kb=$tmp/work/ingest/demo.kb
report=$tmp/work/ingest/demo.report.json
[[ -s $kb ]] || fail "ingest.sbatch wrote no KB at $kb"
[[ -s $report ]] || fail "ingest.sbatch wrote no report next to the KB ($report)"
n=$("$PMINGEST" count "$kb" | awk '{print $1}')
[[ $n == "$RECORDS" ]] || fail "pmingest count $kb says $n, expected $RECORDS"
/usr/bin/python3 - "$report" "$cpus" <<'EOF' || fail "the ingest report is not as expected"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["threads"] == int(sys.argv[2]), "threads %r, expected %s" % (r["threads"], sys.argv[2])
assert r["records"] > 0
EOF
grep -q -- "--memory 128M" "$tmp"/work/ingest-*.out ||
	fail "ingest.sbatch did not pass a quarter of SLURM_MEM_PER_NODE (512M) as --memory"
grep -q "OMP_NUM_THREADS=$cpus OMP_PROC_BIND=close OMP_PLACES=cores" "$tmp"/work/ingest-*.out ||
	fail "ingest.sbatch did not set the OpenMP environment from SLURM_CPUS_PER_TASK"
say "ingest.sbatch: ok ($n keys)"

# ---- 1a. a job file: its input, output, report and memory are used (they were overridden by
# a generated demo input, the script's own output, report and --memory) ----------------------
cfg=$tmp/work/cfg
mkdir -p "$cfg"
"$PMINGEST" gen --output "$cfg/in.h5" --records 5000 --seed 3 >/dev/null ||
	fail "pmingest gen of $cfg/in.h5 failed"
printf '[ingest]\ninput = %s\noutput = %s\nreport = %s\nmemory = 64M\nthreads = 1\n' \
	"$cfg/in.h5:/data" "$cfg/out.kb" "$cfg/out.json" >"$cfg/job.ini"
submit_wait --cpus-per-task="$cpus" --mem=512M --output="$tmp/work/cfg-%j.out" \
	"--export=ALL,PM_OUTDIR=$cfg/dir,PM_CONFIG=$cfg/job.ini" \
	"$SRC/configs/slurm/ingest.sbatch" >/dev/null ||
	fail "ingest.sbatch with PM_CONFIG did not succeed (sbatch --wait status $?)"
n=$("$PMINGEST" count "$cfg/out.kb" 2>/dev/null || true)
[[ $n == 5000 ]] || fail "PM_CONFIG: the config's output holds '$n' keys, expected 5000"
[[ -z $(ls "$cfg/dir" 2>/dev/null) ]] || fail "PM_CONFIG: a demo was made: $(ls "$cfg/dir")"
/usr/bin/python3 - "$cfg/out.json" "$cpus" <<'EOF' || fail "PM_CONFIG: the report is not as expected"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["threads"] == int(sys.argv[2]), "threads %r, expected %s" % (r["threads"], sys.argv[2])
assert r["memory_budget_bytes"] == 64 << 20, "memory %r" % r["memory_budget_bytes"]
EOF
grep -q "memory=$cfg/job.ini's" "$tmp"/work/cfg-*.out ||
	fail "PM_CONFIG: the log does not say the config decides the memory"
say "ingest.sbatch with PM_CONFIG: ok"

# ---- 1a'. a glob as PM_INPUT: the KB was named after the glob ('part-*.kb') -------------------
mkdir -p "$cfg/g"
for s in 1 2; do
	"$PMINGEST" gen --output "$cfg/g/part-$s.h5" --records 1000 --key-kind random --seed "$s" \
		>/dev/null || fail "pmingest gen of $cfg/g/part-$s.h5 failed"
done
submit_wait --cpus-per-task="$cpus" --mem=512M --output="$tmp/work/glob-%j.out" \
	"--export=ALL,PM_OUTDIR=$cfg/gout,PM_INPUT=$cfg/g/part-*.h5:/data" \
	"$SRC/configs/slurm/ingest.sbatch" >/dev/null ||
	fail "ingest.sbatch with a glob did not succeed (sbatch --wait status $?)"
n=$("$PMINGEST" count "$cfg/gout/part.kb" 2>/dev/null || true)
[[ $n == 2000 ]] || fail "a glob: $cfg/gout/part.kb holds '$n' keys, expected 2000 ($(ls "$cfg/gout"))"
say "ingest.sbatch with a glob as input: ok (part.kb)"

# ---- 1b. the early TERM of --signal=B:TERM@120 stops the ingest cleanly -----------------------
# scancel --batch --signal=TERM delivers what --signal=B:TERM does near the time limit: TERM to
# the batch shell only, which must pass it on to pmingest (exit 130, no KB left).
big=$tmp/work/big.h5
"$PMINGEST" gen --output "$big" --records "${SLURM_TEST_BIG_RECORDS:-3000000}" --seed 2 \
	>/dev/null || fail "pmingest gen of $big failed"
jid=$(sbatch --parsable --cpus-per-task="$cpus" --mem=512M --output="$tmp/work/term-%j.out" \
	"--export=ALL,PM_INPUT=$big:/data,PM_OUTPUT=$tmp/work/term/big.kb" \
	"$SRC/configs/slurm/ingest.sbatch") || fail "sbatch of ingest.sbatch (TERM case) failed"
jid=${jid%%;*}
for _ in $(seq 300); do
	grep -qs "ingest.sbatch: .* ingest " "$tmp/work/term-$jid.out" && break
	sleep 0.2
done
grep -qs "ingest.sbatch: .* ingest " "$tmp/work/term-$jid.out" ||
	fail "job $jid did not start its ingest"
scancel --batch --signal=TERM "$jid" || fail "scancel --batch --signal=TERM $jid failed"
for _ in $(seq 300); do
	[[ -z $(squeue -h -j "$jid" -o %i 2>/dev/null) ]] && break
	sleep 0.2
done
exitcode=$(scontrol show job "$jid" | grep -o 'ExitCode=[0-9:]*' || true)
[[ $exitcode == ExitCode=130:0 ]] ||
	fail "job $jid after TERM: $exitcode, expected ExitCode=130:0 (pmingest stopped cleanly)"
grep -q "no partial KB" "$tmp/work/term-$jid.out" || fail "job $jid: no clean-stop message"
[[ ! -e $tmp/work/term/big.kb ]] || fail "a KB was left at $tmp/work/term/big.kb after TERM"
say "ingest.sbatch: TERM before the time limit: ok (exit 130, no KB)"

# ---- 2. scaling.sbatch (array) + scaling_gather.sbatch (afterok) ----------------------------
threads=()
for ((t = 1; t < cpus; t *= 2)); do threads+=("$t"); done
threads+=("$cpus")
array=$(
	IFS=,
	echo "${threads[*]}"
)
scal=$tmp/work/scaling
say "scaling.sbatch: --array=$array --cpus-per-task=$cpus, then scaling_gather.sbatch"
aid=$(sbatch --parsable --array="$array" --cpus-per-task="$cpus" --mem=512M \
	--output="$tmp/work/scaling-%A_%a.out" \
	"--export=ALL,SCAL_DIR=$scal,SCAL_RECORDS=$RECORDS,SCAL_REPEAT=2" \
	"$SRC/configs/slurm/scaling.sbatch") || fail "sbatch of scaling.sbatch failed"
aid=${aid%%;*}
gid=$(submit_wait --parsable --dependency=afterok:"$aid" --kill-on-invalid-dep=yes \
	--output="$tmp/work/gather-%j.out" "--export=ALL,SCAL_DIR=$scal" \
	"$SRC/configs/slurm/scaling_gather.sbatch") ||
	fail "scaling_gather.sbatch did not succeed (status $?; array job $aid)"
gid=${gid%%;*}
# sbatch --wait returns 0 for a job cancelled before it ran (its dependency failed): check
# the states themselves.
for t in "${threads[@]}"; do
	st=$(scontrol show job "${aid}_$t" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1)
	[[ $st == JobState=COMPLETED ]] ||
		fail "scaling point T=$t (job ${aid}_$t): $st (see scaling-${aid}_$t.out)"
done
st=$(scontrol show job "$gid" | grep -o 'JobState=[A-Z_]*' | head -n 1)
[[ $st == JobState=COMPLETED ]] || fail "scaling_gather.sbatch (job $gid): $st"
csv=$scal/results/results.csv
png=$scal/results/scaling-random-strong.png
[[ -s $csv ]] || fail "no CSV at $csv"
[[ -s $png ]] || fail "no plot at $png"
/usr/bin/python3 - "$csv" "$array" <<'EOF' || fail "the scaling CSV is not as expected"
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["impl"] == "pathmap-ingest"]
want = [int(t) for t in sys.argv[2].split(",")]
got = [int(r["threads"]) for r in rows]
assert sorted(got) == want, "rows for threads %r, expected one per %r" % (got, want)
for r in rows:
    assert int(r["reps"]) == 2, r
    assert float(r["rate_total_median"]) > 0, r
EOF
say "scaling: ok (rows for threads $array, $(basename "$png"))"
say "PASS"
