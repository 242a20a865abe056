#!/usr/bin/python3
"""sweep.py - the OpenMP scaling study of `pmingest ingest` (issue 6).

Subcommands
  run     generate each workload with `pmingest gen` (seeded), then for every allocator,
          repetition and thread count run `pmingest ingest --report` and the baselines
          (`scal_baselines`, same input), and write results.csv, results.json, table.md and
          one PNG per workload (speedup and efficiency against threads, with the ideal line).
  gather  build the same outputs from reports written elsewhere (the SLURM array job of
          configs/slurm/scaling.sbatch): engine reports *.json and baseline lines *.jsonl.
  table   print the Markdown table of a results.json (--plot DIR: redraw its PNGs).

Every number comes from the programs' own JSON: the engine's --report (keys mapped in
REPORT_KEYS below, the one place that knows them) and scal_baselines' JSON lines.

Definitions (per workload, allocator and implementation):
  t_build      in-memory build seconds: engine route + fill; baselines route + fill + merge.
               Reading HDF5 and writing the KB are reported apart (t_read, t_write).
  rate_build   records / t_build;  rate_total  records / t_total (engine, end to end).
  speedup      median rate at T threads / median rate at 1 thread. In strong mode (fixed
               total records) that is t(1) / t(T); in weak mode (records = N x T) it is the
               scaled speedup. efficiency = speedup / T.
  fill_speedup the same on the engine's fill phase alone (records / t_fill).
Stdlib only; the plots use matplotlib (Debian python3-matplotlib) with the Agg backend.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The engine's report: our name -> dotted path of the key in the JSON report
# (engine/ingest.c, pme_report_write). Change it here and nowhere else.
REPORT_KEYS = {
    "t_read": "seconds.read",
    "t_route": "seconds.route",
    "t_fill": "seconds.fill",
    "t_write": "seconds.write",
    "t_total": "seconds.total",
    "records": "records",
    "distinct": "distinct_keys",
    "duplicates": "duplicates",
    "imbalance": "imbalance",
    "peak_rss": "peak_memory_bytes",
    "threads": "threads",
    "partitions": "partitions",
    "scheme": "scheme",
    "allocator": "allocator",
}

# Workloads: name -> `pmingest gen` arguments (the seed is added by the driver).
WORKLOADS = {
    "random": ["--key-kind", "random", "--key-len", "16"],
    "u64": ["--key-kind", "u64"],
    "path": ["--key-kind", "path"],
    "words": ["--key-kind", "words", "--words", "/usr/share/dict/words"],
    "zipf": ["--key-kind", "random", "--key-len", "16", "--dup-ratio", "0.5", "--zipf", "1.1"],
}

ENGINE = "pathmap-ingest"
BASELINES = ["single", "clone_merge", "mutex", "judy256"]
METRICS = ["t_read", "t_route", "t_fill", "t_merge", "t_write", "t_total", "t_build",
           "rate_build", "rate_total", "rate_fill"]


class SweepError(Exception):
    """A failure with a message for the user (printed without a traceback)."""


def log(msg):
    print("sweep: " + msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Machine description


def machine_description(build_dir=None):
    d = {"hostname": platform.node(), "kernel": platform.release()}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            d["cpu_model"] = m.group(1).strip() if m else platform.processor()
    except OSError:
        d["cpu_model"] = platform.processor()
    d["cores_online"] = os.cpu_count()
    d["cores_given"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemTotal:\s*(\d+) kB", f.read(), re.M)
            d["mem_gib"] = round(int(m.group(1)) / 1048576, 1) if m else None
    except OSError:
        d["mem_gib"] = None
    d["compiler"] = compiler_of(build_dir) if build_dir else None
    d["omp_proc_bind"] = os.environ.get("OMP_PROC_BIND", "close")
    d["omp_places"] = os.environ.get("OMP_PLACES", "cores")
    # transparent huge pages change a pointer-heavy build's speed: the kernel's mode, and
    # MALLOC_CONF (thp:always makes jemalloc ask for them; the engine reports huge_pages)
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            m = re.search(r"\[(\w+)\]", f.read())
            d["thp_enabled"] = m.group(1) if m else None
    except OSError:
        d["thp_enabled"] = None
    d["malloc_conf"] = os.environ.get("MALLOC_CONF", "")
    d["loadavg_start"] = os.getloadavg()[0]
    for k in ("SLURM_JOB_ID", "SLURM_CPUS_PER_TASK", "SLURM_MEM_PER_NODE"):
        if k in os.environ:
            d[k.lower()] = os.environ[k]
    try:
        d["git"] = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                                  capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return d


def compiler_of(build_dir):
    cc = None
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            m = re.search(r"^CMAKE_C_COMPILER:\w+=(.*)$", f.read(), re.M)
            cc = m.group(1) if m else None
    except OSError:
        pass
    if not cc:
        return None
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return cc


def default_threads():
    n = len(os.sched_getaffinity(0))
    ts, t = [], 1
    while t < n:
        ts.append(t)
        t *= 2
    ts.append(n)
    return ts


# ----------------------------------------------------------------------------------------------
# Samples: one measurement, normalised


def dig(obj, dotted):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise KeyError(dotted)
        obj = obj[part]
    return obj


def engine_sample(report, workload, mode, rep=None):
    """A sample from the engine's JSON report (keys through REPORT_KEYS)."""
    s = {}
    for name, key in REPORT_KEYS.items():
        try:
            s[name] = dig(report, key)
        except KeyError:
            raise SweepError("the engine report has no key '%s' (update REPORT_KEYS in %s)"
                             % (key, os.path.abspath(__file__)))
    s.update(impl=ENGINE, workload=workload, mode=mode, rep=rep, t_merge=0.0)
    s["t_build"] = s["t_route"] + s["t_fill"]
    rec = s["records"]
    s["rate_build"] = rec / s["t_build"] if s["t_build"] > 0 else 0.0
    s["rate_total"] = rec / s["t_total"] if s["t_total"] > 0 else 0.0
    s["rate_fill"] = rec / s["t_fill"] if s["t_fill"] > 0 else 0.0
    return s


def baseline_sample(line, workload, mode):
    s = {k: line[k] for k in ("threads", "records", "distinct", "t_read", "t_route", "t_fill",
                              "t_merge", "t_build", "allocator", "peak_rss")}
    s.update(impl=line["baseline"], workload=workload, mode=mode, rep=line.get("rep"),
             t_write=None, t_total=None, rate_total=None, imbalance=None, partitions=None,
             scheme=None, duplicates=None, nul_mapped=line.get("nul_mapped"))
    s["rate_build"] = s["records"] / s["t_build"] if s["t_build"] > 0 else 0.0
    s["rate_fill"] = s["records"] / s["t_fill"] if s["t_fill"] > 0 else 0.0
    return s


# ----------------------------------------------------------------------------------------------
# Aggregation


def stats3(values):
    v = [x for x in values if x is not None]
    if not v:
        return None, None, None
    return min(v), statistics.median(v), max(v)


def aggregate(samples, machine):
    """Rows: one per (workload, mode, allocator, impl, threads), with min/median/max."""
    groups = {}
    for s in samples:
        key = (s["workload"], s["mode"], s["allocator"], s["impl"], int(s["threads"]))
        groups.setdefault(key, []).append(s)
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], impl_order(k[3]), k[4])):
        g = groups[key]
        row = {"workload": key[0], "mode": key[1], "allocator": key[2], "impl": key[3],
               "threads": key[4], "reps": len(g),
               "records": int(statistics.median([s["records"] for s in g])),
               "distinct": g[0]["distinct"]}
        for m in METRICS:
            lo, med, hi = stats3([s.get(m) for s in g])
            row[m + "_min"], row[m + "_median"], row[m + "_max"] = lo, med, hi
        row["peak_rss_max"] = max((s["peak_rss"] or 0) for s in g)
        # CPUs the engine process really got (CPU seconds / wall seconds), and the machine's
        # load average before the runs: a point with cpu_util well below its thread count
        # shared its cores with other work and says little about scaling.
        row["cpu_util_median"] = stats3([s.get("cpu_util") for s in g])[1]
        row["loadavg_max"] = stats3([s.get("loadavg") for s in g])[2]
        for k in ("imbalance", "partitions", "scheme"):
            vals = [s.get(k) for s in g if s.get(k) is not None]
            row[k] = (statistics.median(vals) if k == "imbalance" else vals[0]) if vals else None
        rows.append(row)
    # speedup / efficiency against the same implementation at 1 thread
    by = {(r["workload"], r["mode"], r["allocator"], r["impl"], r["threads"]): r for r in rows}
    for r in rows:
        one = by.get((r["workload"], r["mode"], r["allocator"], r["impl"], 1))
        single = by.get((r["workload"], r["mode"], r["allocator"], "single", 1))
        for prefix, metric in (("", "rate_build"), ("fill_", "rate_fill"),
                               ("total_", "rate_total")):
            sp = None
            if one and one[metric + "_median"] and r[metric + "_median"] is not None:
                sp = r[metric + "_median"] / one[metric + "_median"]
            r[prefix + "speedup"] = sp
            r[prefix + "efficiency"] = sp / r["threads"] if sp is not None else None
        r["vs_single"] = (r["rate_build_median"] / single["rate_build_median"]
                          if single and single["rate_build_median"] else None)
        for k in ("cpu_model", "cores_given", "mem_gib", "compiler", "omp_proc_bind",
                  "omp_places"):
            r[k] = machine.get(k)
    return rows


def impl_order(impl):
    return ([ENGINE] + BASELINES).index(impl) if impl in [ENGINE] + BASELINES else 99


def check_targets(rows):
    """The issue's targets: engine fill >= 1.9x at 2 threads; engine ahead of every baseline
    (median in-memory build rate) at every thread count measured."""
    out = []
    keyset = sorted({(r["workload"], r["mode"], r["allocator"]) for r in rows})
    for wl, mode, alloc in keyset:
        rs = [r for r in rows if (r["workload"], r["mode"], r["allocator"]) == (wl, mode, alloc)]
        eng = {r["threads"]: r for r in rs if r["impl"] == ENGINE}
        if 2 in eng and eng[2]["fill_speedup"] is not None:
            sp = eng[2]["fill_speedup"]
            out.append({"workload": wl, "mode": mode, "allocator": alloc,
                        "target": "fill speedup at 2 threads >= 1.9", "value": round(sp, 3),
                        "holds": sp >= 1.9})
        for r in rs:
            if r["impl"] == ENGINE:
                continue
            e = eng.get(r["threads"]) or (eng.get(1) if r["impl"] == "single" else None)
            if not e:
                continue
            ratio = e["rate_build_median"] / r["rate_build_median"]
            out.append({"workload": wl, "mode": mode, "allocator": alloc,
                        "target": "engine build rate > %s at %d threads"
                        % (r["impl"], r["threads"]),
                        "value": round(ratio, 3), "holds": ratio > 1.0})
    return out


# ----------------------------------------------------------------------------------------------
# Outputs


def write_outputs(outdir, rows, samples, machine, targets, config, plot=True):
    os.makedirs(outdir, exist_ok=True)
    csv_path = os.path.join(outdir, "results.csv")
    cols = list(rows[0].keys()) if rows else []
    with open(csv_path + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: fmt_csv(v) for k, v in r.items()})
    os.replace(csv_path + ".tmp", csv_path)
    machine = dict(machine, loadavg_end=os.getloadavg()[0])
    doc = {"generated": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "config": config, "machine": machine, "rows": rows, "targets": targets,
           "samples": samples}
    with open(os.path.join(outdir, "results.json.tmp"), "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(os.path.join(outdir, "results.json.tmp"), os.path.join(outdir, "results.json"))
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(compact_table(doc) + "\n" + markdown_table(doc))
    pngs = plot_rows(outdir, rows) if plot else []
    return csv_path, pngs


def fmt_csv(v):
    if isinstance(v, float):
        return "%.6g" % v
    return "" if v is None else v


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def markdown_table(doc):
    rows, m = doc["rows"], doc["machine"]
    lines = ["Machine: %s, %s cores given (%s online), %s GiB, %s; OMP_PROC_BIND=%s "
             "OMP_PLACES=%s; transparent huge pages %s, MALLOC_CONF=%s; load average %.2f at "
             "start, %.2f at end."
             % (m.get("cpu_model"), m.get("cores_given"), m.get("cores_online"),
                m.get("mem_gib"), m.get("compiler"), m.get("omp_proc_bind"),
                m.get("omp_places"), m.get("thp_enabled", "?"), m.get("malloc_conf") or "''",
                m.get("loadavg_start", 0), m.get("loadavg_end", 0)), ""]
    lines.append("| workload | mode | alloc | implementation | threads | records | "
                 "build M rec/s (min-max) | speedup | efficiency | fill speedup | "
                 "end-to-end M rec/s | vs single | CPUs used |")
    lines.append("|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        lines.append("| %s | %s | %s | %s | %d | %d | %s (%s-%s) | %s | %s | %s | %s | %s | %s |" % (
            r["workload"], r["mode"], r["allocator"], r["impl"], r["threads"], r["records"],
            fmt(mrate(r["rate_build_median"]), ".2f"), fmt(mrate(r["rate_build_min"]), ".2f"),
            fmt(mrate(r["rate_build_max"]), ".2f"), fmt(r["speedup"], ".2f"),
            fmt(r["efficiency"], ".2f"),
            fmt(r["fill_speedup"], ".2f") if r["impl"] == ENGINE else "-",
            fmt(mrate(r["rate_total_median"]), ".2f"), fmt(r["vs_single"], ".2f"),
            fmt(r.get("cpu_util_median"), ".2f")))
    loads = [r.get("loadavg_max") for r in rows if r.get("loadavg_max") is not None]
    cores = m.get("cores_given") or 1
    if loads and max(loads) > 0.5:
        lines += ["", "Load average before the runs: up to %.2f on %d cores. Other work was "
                  "running: points whose 'CPUs used' (engine CPU seconds / wall seconds) is "
                  "well below their thread count did not get their cores, and their speedup "
                  "measures the machine's contention, not the program." % (max(loads), cores)]
    if doc.get("targets"):
        lines += ["", "Targets:", ""]
        for t in doc["targets"]:
            lines.append("- %s %s %s: %s: %.3f %s" % (
                t["workload"], t["mode"], t["allocator"], t["target"], t["value"],
                "holds" if t["holds"] else "**misses**"))
    return "\n".join(lines) + "\n"


def compact_table(doc):
    """One row per workload, mode, allocator and thread count: the engine and every
    baseline side by side (median build rates, M records/s)."""
    rows = doc["rows"]
    by = {(r["workload"], r["mode"], r["allocator"], r["impl"], r["threads"]): r for r in rows}
    lines = ["| workload | alloc | threads | engine build | speedup | efficiency | fill speedup "
             "| end-to-end | CPUs used | single | clone_merge | mutex | judy256 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["impl"] != ENGINE:
            continue
        k = (r["workload"], r["mode"], r["allocator"])
        cells = []
        for b in BASELINES:
            br = by.get(k + (b, 1 if b == "single" else r["threads"]))
            cells.append(fmt(mrate(br["rate_build_median"]) if br else None, ".2f"))
        lines.append("| %s%s | %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            r["workload"], "" if r["mode"] == "strong" else " (weak)", r["allocator"],
            r["threads"], fmt(mrate(r["rate_build_median"]), ".2f"), fmt(r["speedup"], ".2f"),
            fmt(r["efficiency"], ".2f"), fmt(r["fill_speedup"], ".2f"),
            fmt(mrate(r["rate_total_median"]), ".2f"), fmt(r.get("cpu_util_median"), ".2f"),
            " | ".join(cells)))
    return "\n".join(lines) + "\n"


def mrate(v):
    return None if v is None else v / 1e6


def plot_rows(outdir, rows):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SweepError("matplotlib is missing: apt-get install python3-matplotlib "
                         "(or pass --no-plot)")
    pngs = []
    for wl, mode in sorted({(r["workload"], r["mode"]) for r in rows}):
        rs = [r for r in rows if r["workload"] == wl and r["mode"] == mode]
        ts = sorted({r["threads"] for r in rs})
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        ax1.plot(ts, ts, "k--", lw=1, label="ideal")
        ax2.plot(ts, [1.0] * len(ts), "k--", lw=1, label="ideal")
        styles = {"jemalloc": "-", "glibc": ":"}
        # one colour per curve, the same for both allocators (told apart by line style)
        names = [ENGINE + " fill", ENGINE + " route+fill", ENGINE + " end to end"] + BASELINES
        colour = {n: plt.cm.tab10(i) for i, n in enumerate(names)}
        for alloc in sorted({r["allocator"] for r in rs}):
            for impl in [ENGINE] + BASELINES:
                if impl == "single":
                    continue
                series = sorted((r for r in rs if r["impl"] == impl and r["allocator"] == alloc),
                                key=lambda r: r["threads"])
                if not series:
                    continue
                curves = [("", impl)]
                if impl == ENGINE:
                    curves = [("fill_", ENGINE + " fill"), ("", ENGINE + " route+fill"),
                              ("total_", ENGINE + " end to end")]
                for prefix, label in curves:
                    x = [r["threads"] for r in series if r[prefix + "speedup"] is not None]
                    y = [r[prefix + "speedup"] for r in series if r[prefix + "speedup"]
                         is not None]
                    if not x:
                        continue
                    lab = "%s (%s)" % (label, alloc)
                    st = dict(ls=styles.get(alloc, "-"), marker="o", color=colour[label],
                              label=lab)
                    ax1.plot(x, y, **st)
                    ax2.plot(x, [v / t for v, t in zip(y, x)], **st)
        ax1.set(xlabel="threads", ylabel="speedup vs 1 thread", title="%s, %s scaling: speedup"
                % (wl, mode))
        ax2.set(xlabel="threads", ylabel="parallel efficiency", title="%s, %s scaling: "
                "efficiency" % (wl, mode), ylim=(0, 1.3))
        for ax in (ax1, ax2):
            ax.set_xticks(ts)
            ax.grid(alpha=0.3)
        ax2.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        path = os.path.join(outdir, "scaling-%s-%s.png" % (wl, mode))
        fig.savefig(path, dpi=100)
        plt.close(fig)
        pngs.append(path)
    return pngs


# ----------------------------------------------------------------------------------------------
# Running


def run_cmd(cmd, env=None, timeout=3600, usage=None):
    """Runs cmd; returns its stdout. usage (a dict), if given, receives the run's wall and CPU
    seconds and the load average just before it (to tell a contended machine)."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    load = os.getloadavg()[0]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SweepError("cannot run %s: not found" % cmd[0])
    except subprocess.TimeoutExpired:
        raise SweepError("timed out after %d s: %s" % (timeout, " ".join(cmd)))
    if p.returncode != 0:
        raise SweepError("exit status %d from: %s\n%s" % (p.returncode, " ".join(cmd),
                                                          p.stderr.strip()[-2000:]))
    if usage is not None:
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.monotonic() - t0
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        usage.update(proc_wall_s=wall, proc_cpu_s=cpu, cpu_util=cpu / wall if wall > 0 else None,
                     loadavg=load)
    return p.stdout


def omp_env(threads):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env.setdefault("OMP_PROC_BIND", "close")
    env.setdefault("OMP_PLACES", "cores")
    return env


def ensure_build(build, jemalloc, targets):
    """Configures DIR (Release) when needed, then brings its programs up to date with the
    sources (an incremental build: a stale binary would measure old code)."""
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        log("configuring %s (%s)" % (build, "jemalloc" if jemalloc else "glibc malloc"))
        run_cmd(["cmake", "-S", ROOT, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                 "-DPM_JEMALLOC=" + ("ON" if jemalloc else "OFF")])
    run_cmd(["cmake", "--build", build, "-j2", "--target"] + targets)


def generate(pmingest, workload, records, seed, datadir):
    path = os.path.join(datadir, "%s-%d-s%d.h5" % (workload, records, seed))
    if not os.path.exists(path):
        log("generating %s (%d records)" % (path, records))
        run_cmd([pmingest, "gen", "--output", path, "--records", str(records), "--seed",
                 str(seed)] + WORKLOADS[workload])
    return path


def cmd_run(a):
    threads = [int(t) for t in a.threads.split(",")] if a.threads else default_threads()
    if 1 not in threads:
        threads = [1] + threads
    threads = sorted(set(threads))
    workloads = list(WORKLOADS) if a.workload == ["all"] else a.workload
    for w in workloads:
        if w not in WORKLOADS:
            raise SweepError("unknown workload '%s' (one of %s, or all)"
                             % (w, ", ".join(WORKLOADS)))
    allocs = a.allocators.split(",")
    builds = {}
    for al in allocs:
        if al == "jemalloc":
            builds[al] = a.build
        elif al == "glibc":
            builds[al] = a.glibc_build
        else:
            raise SweepError("unknown allocator '%s' (jemalloc or glibc)" % al)
        ensure_build(builds[al], al == "jemalloc", ["pmingest", "scal_baselines"])
    baselines = [] if a.baselines == "none" else (
        BASELINES if a.baselines == "all" else a.baselines.split(","))
    for b in baselines:
        if b not in BASELINES:
            raise SweepError("unknown baseline '%s' (%s, all or none)" % (b, ", ".join(BASELINES)))
    os.makedirs(a.out, exist_ok=True)
    datadir = a.data or os.path.join(a.out, "data")
    os.makedirs(datadir, exist_ok=True)
    rawdir = os.path.join(a.out, "raw")
    os.makedirs(rawdir, exist_ok=True)
    machine = machine_description(builds[allocs[0]])
    pm0 = os.path.join(builds[allocs[0]], "engine", "pmingest")
    samples = []
    kbdir = tempfile.mkdtemp(prefix="sweep-kb-", dir=a.out)
    try:
        for wl in workloads:
            inputs = {t: generate(pm0, wl, a.records * (t if a.mode == "weak" else 1), a.seed,
                                  datadir) for t in threads}
            for rep in range(a.repeat):
                for al in allocs:
                    pm = os.path.join(builds[al], "engine", "pmingest")
                    sb = os.path.join(builds[al], "bench", "scal_baselines")
                    for t in threads:
                        samples += run_point(a, pm, sb, wl, al, t, rep, inputs[t], baselines,
                                             rawdir, kbdir)
                log("%s: repetition %d/%d done" % (wl, rep + 1, a.repeat))
    finally:
        shutil.rmtree(kbdir, ignore_errors=True)
    check_samples(samples)
    rows = aggregate(samples, machine)
    targets = check_targets(rows)
    config = {k: v for k, v in vars(a).items() if k != "func"}
    config["threads"] = threads
    csv_path, pngs = write_outputs(a.out, rows, samples, machine, targets, config, not a.no_plot)
    print(markdown_table({"rows": rows, "machine": dict(machine, loadavg_end=os.getloadavg()[0]),
                          "targets": targets}))
    log("wrote %s, %s, %s" % (csv_path, os.path.join(a.out, "results.json"),
                              ", ".join(pngs) or "no plot"))
    return 0


def run_point(a, pm, sb, wl, al, t, rep, h5, baselines, rawdir, kbdir):
    out = []
    env = omp_env(t)
    kb = os.path.join(kbdir, "out.kb")
    rpt = os.path.join(rawdir, "%s-%s-%s-t%d-r%d.json" % (wl, a.mode, al, t, rep))
    cmd = [pm, "ingest", "--input", h5 + ":/data", "--output", kb, "--threads", str(t),
           "--scheme", a.scheme, "--report", rpt, "--quiet"]
    if a.partitions:
        cmd += ["--partitions", str(a.partitions)]
    usage = {}
    run_cmd(cmd, env, usage=usage)
    with open(rpt) as f:
        s = engine_sample(json.load(f), wl, a.mode, rep)
    s.update(usage)
    if s["allocator"] != al:
        raise SweepError("%s reports allocator %s, expected %s" % (pm, s["allocator"], al))
    if rep == 0:
        # The KB must hold what the report says (pmingest count).
        n = int(run_cmd([pm, "count", kb]).split()[0])
        if n != s["distinct"]:
            raise SweepError("%s: pmingest count says %d keys, the report %d"
                             % (kb, n, s["distinct"]))
    os.unlink(kb)
    out.append(s)
    todo = [b for b in baselines if b != "single" or t == 1]
    if todo:
        cmd = [sb, "--input", h5 + ":/data", "--threads", str(t)]
        for b in todo:
            cmd += ["--baseline", b]
        usage = {}
        text = run_cmd(cmd, env, usage=usage)
        with open(os.path.join(rawdir, "%s-%s-%s-t%d-r%d.jsonl" % (wl, a.mode, al, t, rep)),
                  "w") as f:
            f.write(text)
        for line in text.splitlines():
            b = baseline_sample(json.loads(line), wl, a.mode)
            b["rep"] = rep
            b["loadavg"] = usage["loadavg"]
            out.append(b)
    return out


def check_samples(samples):
    """Every implementation must find the same number of distinct keys on the same input
    (judy256 on NUL-mapped binary keys may merge a few: it is checked in scal_baselines)."""
    ref = {}
    for s in samples:
        if s["impl"] in (ENGINE, "single", "clone_merge", "mutex"):
            k = (s["workload"], s["mode"], s["records"])
            if ref.setdefault(k, s["distinct"]) != s["distinct"]:
                raise SweepError("%s on %s (%d records): %d distinct keys, others found %d"
                                 % (s["impl"], s["workload"], s["records"], s["distinct"],
                                    ref[k]))


def cmd_gather(a):
    samples = []
    files = []
    for d in a.reports:
        for name in sorted(os.listdir(d)):
            files.append(os.path.join(d, name))
    for path in files:
        if path.endswith(".json"):
            with open(path) as f:
                try:
                    rep = json.load(f)
                except json.JSONDecodeError as e:
                    raise SweepError("%s: not a JSON report (%s)" % (path, e))
            m = re.search(r"-r(\d+)\.json$", path)
            samples.append(engine_sample(rep, a.workload, a.mode, int(m.group(1)) if m else None))
        elif path.endswith(".jsonl"):
            with open(path) as f:
                for line in f:
                    if line.strip():
                        samples.append(baseline_sample(json.loads(line), a.workload, a.mode))
    if not any(s["impl"] == ENGINE for s in samples):
        raise SweepError("no engine report (*.json) found in %s" % ", ".join(a.reports))
    check_samples(samples)
    machine = machine_description(a.build)
    rows = aggregate(samples, machine)
    targets = check_targets(rows)
    config = {k: v for k, v in vars(a).items() if k != "func"}
    csv_path, pngs = write_outputs(a.out, rows, samples, machine, targets, config,
                                   not a.no_plot)
    print(markdown_table({"rows": rows, "machine": dict(machine, loadavg_end=os.getloadavg()[0]),
                          "targets": targets}))
    log("gathered %d samples from %d files into %s%s" % (
        len(samples), len(files), csv_path, "".join(", " + p for p in pngs)))
    return 0


def cmd_table(a):
    with open(a.results) as f:
        doc = json.load(f)
    sys.stdout.write(compact_table(doc) if a.compact else markdown_table(doc))
    if a.plot:
        for path in plot_rows(a.plot, doc["rows"]):
            log("wrote " + path)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See bench/README.md for the full study's command.")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run the study (generate, ingest, baselines, outputs)")
    r.add_argument("--workload", nargs="+", default=["all"],
                   help="one or more of %s, or all (default)" % ", ".join(WORKLOADS))
    r.add_argument("--mode", choices=["strong", "weak"], default="strong",
                   help="strong: --records in total; weak: --records per thread")
    r.add_argument("--records", type=int, default=200000,
                   help="records (strong: total; weak: per thread); default 200000")
    r.add_argument("--threads", help="comma-separated thread counts (default 1,2,4,... up to "
                   "the cores this process may use, os.sched_getaffinity)")
    r.add_argument("--repeat", type=int, default=5, help="runs per point (default 5)")
    r.add_argument("--allocators", default="jemalloc,glibc",
                   help="jemalloc (the --build, linked), glibc (the --glibc-build, configured "
                   "with -DPM_JEMALLOC=OFF); default both")
    r.add_argument("--baselines", default="all",
                   help="comma-separated of %s; all (default) or none" % ", ".join(BASELINES))
    r.add_argument("--scheme", default="hash", choices=["hash", "prefix"])
    r.add_argument("--partitions", type=int, default=0, help="P (default: the engine's)")
    r.add_argument("--seed", type=int, default=1, help="pmingest gen seed (default 1)")
    r.add_argument("--build", default=os.path.join(ROOT, "build-scal"),
                   help="jemalloc build dir (built if missing; default build-scal)")
    r.add_argument("--glibc-build", default=os.path.join(ROOT, "build-scal-glibc"),
                   help="glibc-malloc build dir (built if missing; default build-scal-glibc)")
    r.add_argument("--data", help="where generated inputs are kept (default OUT/data)")
    r.add_argument("--out", default=os.path.join(ROOT, "build-scal", "sweep"),
                   help="output dir (default build-scal/sweep)")
    r.add_argument("--no-plot", action="store_true", help="skip the PNGs")
    r.set_defaults(func=cmd_run)

    g = sub.add_parser("gather", help="aggregate reports written by the SLURM array job")
    g.add_argument("--reports", nargs="+", required=True, help="dirs of *.json / *.jsonl")
    g.add_argument("--out", required=True, help="output dir")
    g.add_argument("--workload", default="custom", help="workload name for the table")
    g.add_argument("--mode", choices=["strong", "weak"], default="strong")
    g.add_argument("--build", help="build dir, for the compiler's name")
    g.add_argument("--no-plot", action="store_true")
    g.set_defaults(func=cmd_gather)

    t = sub.add_parser("table", help="print the Markdown table of a results.json")
    t.add_argument("results")
    t.add_argument("--plot", metavar="DIR", help="also (re)draw the PNGs into DIR")
    t.add_argument("--compact", action="store_true",
                   help="one row per thread count: the engine and the baselines side by side")
    t.set_defaults(func=cmd_table)

    a = p.parse_args(argv)
    try:
        return a.func(a)
    except SweepError as e:
        print("sweep: error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
