#!/usr/bin/python3
"""ingest_test.py PMINGEST WORKDIR [quick|full [STEP...]] - `pmingest ingest` end to end
against Python (STEP names run only those steps).

h5py writes the inputs (random keys with many duplicates, Zipf-skewed keys, the empty key,
keys with NUL bytes, string values); a dict built in Python is the reference for every
duplicate policy. Each run is compared with `pmingest scan --format jsonl` of its KB, under
both schemes, several partition counts, 1 and 2 threads, tiny and multi-batch sizes.
Determinism: KBs of one configuration must be byte-identical for any thread count and batch
size. Also: --into, config files, exit statuses, --on-duplicate error positions, the progress
bars on a terminal, SIGTERM.
Seed: PM_TEST_SEED (printed on failure).
"""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

import h5py
import numpy as np

PM = sys.argv[1]
WORK = sys.argv[2]
SEED = int(os.environ.get("PM_TEST_SEED", "5150"))
rng = random.Random(SEED)
failures = 0
runs = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL:", msg, "(seed %d)" % SEED, flush=True)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def path(name):
    return os.path.join(WORK, name)


def run(args, expect=0, threads=1, env=None):
    global runs
    runs += 1
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = str(threads)
    if env:
        e.update(env)
    p = subprocess.run([PM] + [str(a) for a in args], capture_output=True, env=e)
    if p.returncode < 0:
        fail("%s killed by signal %d: %s" % (args, -p.returncode, p.stderr[-800:]))
    elif expect is not None and p.returncode != expect:
        fail("%s: exit %d, expected %d: %s" % (args, p.returncode, expect,
                                                p.stderr.decode(errors="replace")[-800:]))
    return p


def scan(kb):
    p = run(["scan", kb, "--format", "jsonl"])
    out = []
    for line in p.stdout.decode().splitlines():
        r = json.loads(line)
        out.append((bytes.fromhex(r["key_hex"]), r["value"]))
    return out


# --- inputs ---------------------------------------------------------------------------------
def write_compound(name, keys, vals, width=12, vdtype="i8", chunk=256):
    """Keys as numpy 'S' (NULLPAD: trailing NULs are padding, embedded NULs are kept)."""
    dt = np.dtype([("key", "S%d" % width), ("value", vdtype)])
    a = np.zeros(len(keys), dtype=dt)
    a["key"] = keys
    a["value"] = vals
    with h5py.File(path(name), "w") as f:
        f.create_dataset("data", data=a, chunks=(chunk,) if len(keys) else None,
                         maxshape=(None,))
    return path(name)


def write_pair_strings(name, keys, vals):
    with h5py.File(path(name), "w") as f:
        f.create_dataset("k", data=np.array(keys, dtype="S12"), chunks=(256,))
        f.create_dataset("v", data=vals, dtype=h5py.string_dtype(), chunks=(256,))
    return path(name)


def rand_key(alpha=b"abcdef\x00"):
    n = rng.randint(0, 6)
    k = bytes(rng.choice(alpha) for _ in range(n))
    return k.rstrip(b"\x00")  # NULLPAD strips trailing NULs: the key read back


def dataset_dups(n):
    pool = [rand_key() for _ in range(n // 4)] + [b""]
    keys = [rng.choice(pool) for _ in range(n)]
    vals = [rng.randint(-1000, 1000) for _ in range(n)]
    return keys, vals


def dataset_zipf(n):
    keys = []
    for _ in range(n):
        r = int(1 / (1 - rng.random()) ** 1.2)  # heavy head
        keys.append(b"z%d\x00%d" % (r % 5000, r % 7))
    vals = [rng.randint(0, 1 << 40) for _ in range(n)]
    return keys, vals


def reference(keys, vals, policy):
    d = {}
    for k, v in zip(keys, vals):
        if k not in d:
            d[k] = 1 if policy == "count" else v
        elif policy == "last":
            d[k] = v
        elif policy == "sum":
            d[k] = d[k] + v
        elif policy == "min":
            d[k] = min(d[k], v)
        elif policy == "max":
            d[k] = max(d[k], v)
        elif policy == "count":
            d[k] += 1
    return sorted(d.items())


def wrap64(items):
    out = []
    for k, v in items:
        v = (v + (1 << 63)) % (1 << 64) - (1 << 63)
        out.append((k, v))
    return out


def ingest(inputs, out, extra=(), threads=1, expect=0):
    args = ["ingest", "--output", out, "--quiet"]
    for i in inputs:
        args += ["--input", i]
    return run(args + list(extra), expect=expect, threads=threads)


# --- policies x schemes x P x threads x batch sizes ----------------------------------------
def matrix(quick):
    sets = {"dups": dataset_dups(6000), "zipf": dataset_zipf(6000)}
    for sname, (keys, vals) in sets.items():
        f = write_compound(sname + ".h5", keys, vals)
        for policy in ["last", "first", "sum", "min", "max", "count"]:
            ref = wrap64(reference(keys, vals, policy))
            kbs = {}
            for scheme, parts in [("hash", 1), ("hash", 8), ("hash", 256), ("prefix", 1),
                                  ("prefix", 5), ("prefix", 64)]:
                for threads in ([1, 2] if not quick else [2]):
                    for batch in ([100, 100000] if not quick else [100]):
                        out = path("m_%s_%s_%s%d_t%d_b%d.kb" % (sname, policy, scheme, parts,
                                                               threads, batch))
                        p = ingest([f + ":/data"], out,
                                   ["--on-duplicate", policy, "--scheme", scheme,
                                    "--partitions", parts, "--batch-records", batch],
                                   threads=threads)
                        if p.returncode:
                            continue
                        got = scan(out)
                        check(got == ref, "%s: content differs from the reference (%d vs %d "
                              "keys)" % (os.path.basename(out), len(got), len(ref)))
                        blob = open(out, "rb").read()
                        key = (scheme, parts)
                        if key in kbs:
                            check(blob == kbs[key], "%s: not byte-identical across threads/"
                                  "batch sizes" % os.path.basename(out))
                        else:
                            kbs[key] = blob
                        os.unlink(out)


def strings_and_pairs():
    n = 3000
    keys = [rand_key() for _ in range(n)]
    vals = [("v%d" % rng.randint(0, 50)) * rng.randint(0, 3) for _ in range(n)]
    f = write_pair_strings("str.h5", keys, vals)
    for policy in ["last", "first", "count"]:
        for scheme in ["hash", "prefix"]:
            out = path("s_%s_%s.kb" % (policy, scheme))
            p = ingest([f], out, ["--keys", "/k", "--values", "/v", "--on-duplicate", policy,
                                  "--scheme", scheme, "--batch-records", 256], threads=2)
            if p.returncode:
                continue
            ref = reference(keys, vals, policy)
            got = scan(out)
            check(got == ref, "strings %s/%s: content differs" % (policy, scheme))
    # --into a KB of string values (its values travel through the batch heap): the same
    # file as one run over both inputs
    half = n // 2
    f1 = write_pair_strings("str1.h5", keys[:half], vals[:half])
    f2 = write_pair_strings("str2.h5", keys[half:], vals[half:])
    sa = ["--keys", "/k", "--values", "/v"]
    ingest([f1, f2], path("s_one.kb"), sa, threads=2)
    ingest([f1], path("s_first.kb"), sa)
    ingest([f2], path("s_both.kb"), sa + ["--into", path("s_first.kb"), "--batch-records",
                                          300], threads=2)
    check(open(path("s_both.kb"), "rb").read() == open(path("s_one.kb"), "rb").read(),
          "--into with string values: not the same file as one run over both inputs")
    check(scan(path("s_both.kb")) == reference(keys, vals, "last"),
          "--into with string values: content differs")
    p = ingest([f], path("s_sum.kb"), ["--keys", "/k", "--values", "/v", "--on-duplicate",
                                        "sum"], expect=5)
    check(not os.path.exists(path("s_sum.kb")), "sum of strings left an output")


def into_and_multi():
    k1, v1 = dataset_dups(4000)
    k2, v2 = dataset_dups(3000)
    a = write_compound("a.h5", k1, v1)
    b = write_compound("b.h5", k2, v2)
    for policy in ["last", "first", "sum", "count"]:
        one = path("one_%s.kb" % policy)
        ingest([a + ":/data", b + ":/data"], one, ["--on-duplicate", policy], threads=2)
        ref = wrap64(reference(k1 + k2, v1 + v2, policy))
        check(scan(one) == ref, "two inputs, %s: content differs" % policy)
        first = path("first_%s.kb" % policy)
        ingest([a + ":/data"], first, ["--on-duplicate", policy])
        both = path("both_%s.kb" % policy)
        ingest([b + ":/data"], both, ["--on-duplicate", policy, "--into", first,
                                      "--batch-records", 500], threads=2)
        check(open(both, "rb").read() == open(one, "rb").read(),
              "--into %s: not the same file as one run over both inputs" % policy)
    # keys that are all empty: a run's common prefix is empty, and copying its zero bytes
    # from a NULL pointer was undefined behaviour (UBSan stopped the run, exit 1)
    e = write_compound("empty.h5", [b""] * 3, [1, 2, 3])
    for policy in ["sum", "count", "last"]:
        one = path("e1_%s.kb" % policy)
        ingest([e + ":/data", e + ":/data"], one,
               ["--on-duplicate", policy, "--batch-records", 1], threads=2)
        check(scan(one) == wrap64(reference([b""] * 6, [1, 2, 3] * 2, policy)),
              "empty keys, %s: content differs" % policy)
        first = path("e0_%s.kb" % policy)
        ingest([e + ":/data"], first, ["--on-duplicate", policy])
        both = path("e2_%s.kb" % policy)
        ingest([e + ":/data"], both, ["--on-duplicate", policy, "--into", first,
                                      "--batch-records", 1], threads=2)
        check(os.path.exists(both) and open(both, "rb").read() == open(one, "rb").read(),
              "empty keys, --into %s: not the file of one run" % policy)
    # a glob over both files is the same job (files in sorted order)
    g = path("glob.kb")
    ingest([path("[ab].h5") + ":/data"], g)
    check(open(g, "rb").read() == open(path("one_last.kb"), "rb").read(),
          "a glob input differs from the files listed")


def mixed_types():
    """Inputs whose types differ within a class: one run over all of them, --into and merge
    all widen the same way (variable length over fixed, the larger width, UTF-8 over ASCII,
    the first input's byte order and padding), so the three write the same file. Before,
    --into took the new input's byte order and character set over the KB's, and merge
    refused strings of different widths."""
    utf = h5py.string_dtype("utf-8")
    keys = [rand_key() for _ in range(60)]
    specs = {  # name: (key dtype, value dtype, values)
        "vlen_utf8": ("S8", utf, lambda i: "v%d\u00e9" % i),
        "fixed_ascii": ("S8", "S5", lambda i: b"f%d" % (i % 1000)),
        "int_be": ("S8", ">i8", lambda i: -i),
        "int_le": ("S8", "<i4", lambda i: 3 * i),
        "int_le_k16": ("S16", "<i8", lambda i: i),
    }
    files, content = {}, {}
    for j, (name, (kd, vd, val)) in enumerate(sorted(specs.items())):
        ks = keys[j * 10:j * 10 + 25]  # overlapping key sets
        vs = [val(j * 100 + i) for i in range(len(ks))]
        a = np.zeros(len(ks), dtype=[("key", kd), ("value", vd)])
        a["key"] = ks
        a["value"] = vs
        with h5py.File(path("mt_%s.h5" % name), "w") as f:
            f.create_dataset("data", data=a, chunks=(8,), maxshape=(None,))
        files[name] = path("mt_%s.h5" % name) + ":/data"
        content[name] = (ks, [v.encode() if isinstance(v, str) else v for v in vs])
    for x, y in [("vlen_utf8", "fixed_ascii"), ("fixed_ascii", "vlen_utf8"),
                 ("int_be", "int_le"), ("int_le", "int_be"), ("int_le", "int_le_k16"),
                 ("int_le_k16", "int_be")]:
        tag = "%s+%s" % (x, y)
        one, first, second = path("mt_one.kb"), path("mt_first.kb"), path("mt_second.kb")
        run(["ingest", "--input", files[x], "--input", files[y], "--output", one, "--quiet"])
        run(["ingest", "--input", files[x], "--output", first, "--quiet"])
        run(["ingest", "--input", files[y], "--output", second, "--quiet"])
        ks = content[x][0] + content[y][0]
        vs = content[x][1] + content[y][1]
        got = scan(one)
        want = reference(ks, vs, "last")
        if isinstance(want[0][1], bytes):
            got = [(k, v.encode() if isinstance(v, str) else v) for k, v in got]
        check(got == want, "%s: one run's content differs" % tag)
        into, merged = path("mt_into.kb"), path("mt_merge.kb")
        run(["ingest", "--input", files[y], "--into", first, "--output", into, "--quiet"])
        run(["merge", first, second, "--output", merged])
        for out, how in [(into, "--into"), (merged, "merge")]:
            check(os.path.exists(out) and
                  open(out, "rb").read() == open(one, "rb").read(),
                  "%s: %s is not the file one run over both inputs writes" % (tag, how))
            if os.path.exists(out):
                os.unlink(out)
    # subtract keeps A's key and value types (it used to widen them by B's)
    a, b = path("mt_first.kb"), path("mt_second.kb")
    run(["ingest", "--input", files["int_le"], "--output", a, "--quiet"])
    run(["ingest", "--input", files["int_le_k16"], "--output", b, "--quiet"])
    run(["subtract", a, b, "--output", path("mt_sub.kb")])
    st = json.loads(run(["stats", path("mt_sub.kb"), "--json"]).stdout)
    check((st["key_type"], st["value_type"]) == ("string[8] nullpad ascii", "int32"),
          "subtract: types %s / %s, not A's" % (st["key_type"], st["value_type"]))
    ka, va = content["int_le"]
    keep = [(k, v) for k, v in zip(ka, va) if k not in content["int_le_k16"][0]]
    check(scan(path("mt_sub.kb")) == reference([k for k, _ in keep], [v for _, v in keep],
                                               "last"), "subtract: content differs")
    # classes that differ stay an error (exit 3), for a run, --into and merge alike
    one = path("mt_bad.kb")
    run(["ingest", "--input", files["vlen_utf8"], "--input", files["int_le"], "--output", one,
         "--quiet"], expect=3)
    run(["ingest", "--input", files["vlen_utf8"], "--output", path("mt_s.kb"), "--quiet"])
    run(["ingest", "--input", files["int_le"], "--output", path("mt_i.kb"), "--quiet"])
    run(["ingest", "--input", files["int_le"], "--into", path("mt_s.kb"), "--output", one,
         "--quiet"], expect=3)
    run(["merge", path("mt_s.kb"), path("mt_i.kb"), "--output", one], expect=3)
    check(not os.path.exists(one), "a refused run over mixed classes left an output")
    # merge --help: KBs of counts add up by sum, to the file a count over both inputs writes
    c = [path("mt_c%d.kb" % i) for i in range(4)]
    run(["ingest", "--input", files["int_le"], "--input", files["int_be"], "--on-duplicate",
         "count", "--output", c[0], "--quiet"])
    run(["ingest", "--input", files["int_le"], "--on-duplicate", "count", "--output", c[1],
         "--quiet"])
    run(["ingest", "--input", files["int_be"], "--on-duplicate", "count", "--output", c[2],
         "--quiet"])
    run(["merge", c[1], c[2], "--on-duplicate", "sum", "--output", c[3]])
    check(open(c[3], "rb").read() == open(c[0], "rb").read(),
          "merge --on-duplicate sum of two count KBs differs from a count over both inputs")
    check(scan(c[3]) == reference(content["int_le"][0] + content["int_be"][0],
                                  [0] * 50, "count"), "counts merged by sum: content differs")


def dry_run():
    """--dry-run (also a config key) makes every check that needs no record and prints the
    plan: the inputs and their record count, the types, the output; it writes nothing, and
    a job that would fail before reading fails the same way."""
    k1, v1 = dataset_dups(3000)
    k2, v2 = dataset_dups(2000)
    a = write_compound("dry_a.h5", k1, v1)
    b = write_compound("dry_b.h5", k2, v2, width=16, vdtype="i4")
    out, rep = path("dry.kb"), path("dry.json")
    base = ["ingest", "--input", a + ":/data", "--input", b + ":/data", "--output", out,
            "--report", rep]
    p = run(base + ["--dry-run"])
    text = p.stdout.decode()
    check("inputs     2, 5000 records" in text and a + ":/data" in text and
          "keys string[16] nullpad ascii, values int64" in text and out in text,
          "--dry-run plan: %r" % text)
    check(not os.path.exists(out) and not os.path.exists(rep), "--dry-run wrote a file")
    cfg = path("dry.ini")
    with open(cfg, "w") as f:
        f.write("dry-run = true\n")
    p = run(base + ["-c", cfg, "--partitions", "64"])
    check("64 partitions" in p.stdout.decode() and not os.path.exists(out),
          "dry-run = true in a config: %r" % p.stdout[:300])
    # what fails a run before it reads fails a dry run: mixed value classes, a missing
    # --into KB (3)
    c = path("dry_c.h5")
    with h5py.File(c, "w") as f:
        f["data"] = np.array([(b"k", b"v")], dtype=[("key", "S4"), ("value", "S4")])
    run(base[:3] + ["--input", c + ":/data", "--output", out, "--dry-run"], expect=3)
    run(["ingest", "--input", a + ":/data", "--output", out, "--dry-run", "--on-duplicate",
         "sum", "--into", path("nonexistent.kb")], expect=3)
    check(not os.path.exists(out), "a failed dry run wrote the output")
    # a real run after it: the output the plan named
    run(base)
    check(os.path.exists(out) and json.load(open(rep))["records"] == 5000,
          "the run after a dry run")


def make_cgroup(limit):
    """A memory cgroup limited to limit bytes (v1 or v2), or (None, why not)."""
    name = "pmingest_test_%d" % os.getpid()
    why = "no writable cgroup memory controller"
    for d, f in [("/sys/fs/cgroup/memory/" + name, "memory.limit_in_bytes"),
                 ("/sys/fs/cgroup/" + name, "memory.max")]:
        if not os.path.isdir(os.path.dirname(d)) or not os.access(os.path.dirname(d),
                                                                    os.W_OK):
            continue
        try:
            os.mkdir(d)
        except OSError as e:
            why = str(e)
            continue
        try:
            with open(os.path.join(d, f), "w") as fh:
                fh.write(str(limit))
            return d, None
        except OSError as e:
            why = str(e)
            os.rmdir(d)
    return None, why


def memory_default():
    """--memory's default is a quarter of physical memory, or of the cgroup's memory limit
    when that is lower (a SLURM job's, a container's); the report says which was used."""
    keys, vals = dataset_dups(2000)
    f = write_compound("mem.h5", keys, vals)
    rep = path("mem.json")
    args = ["ingest", "--input", f + ":/data", "--output", path("mem.kb"), "--quiet",
            "--report", rep]
    phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    run(args)
    got = json.load(open(rep))["memory_budget_bytes"]
    # this test may itself run in a limited cgroup: then the budget is at most phys / 4
    check(0 < got <= phys // 4, "memory budget %d outside (0, physical / 4]" % got)
    run(args + ["--memory", "64M"])
    check(json.load(open(rep))["memory_budget_bytes"] == 64 << 20, "--memory 64M not used")
    limit = 512 << 20
    cg, why = make_cgroup(limit)
    if not cg:
        print("memory_default: the cgroup part skipped (%s)" % why, flush=True)
        return
    try:
        procs = os.path.join(cg, "cgroup.procs")

        def enter():
            with open(procs, "w") as fh:
                fh.write(str(os.getpid()))

        e = dict(os.environ, OMP_NUM_THREADS="1")
        p = subprocess.run([PM] + args, capture_output=True, env=e, preexec_fn=enter)
        check(p.returncode == 0, "ingest in a 512 MiB cgroup: exit %d: %s"
              % (p.returncode, p.stderr[-300:]))
        if p.returncode == 0:
            got = json.load(open(rep))["memory_budget_bytes"]
            check(got == limit // 4, "in a 512 MiB cgroup the budget is %d, not %d"
                  % (got, limit // 4))
            check(scan(path("mem.kb")) == reference(keys, vals, "last"),
                  "ingest in a cgroup: content differs")
    finally:
        os.rmdir(cg)


def prefix_stem():
    """Keys under a long common prefix: the prefix scheme splits after it (the report's
    prefix_stem), balanced; --into brings keys outside it (routed to the serial bucket): the
    same content as the hash scheme, for policies, P, threads and batch sizes."""
    n = 5000
    keys = [b"/proj/run%05d/a" % rng.randint(0, 3000) for _ in range(n)]  # stem /proj/run0
    vals = [rng.randint(-1000, 1000) for _ in range(n)]
    f = write_compound("stem.h5", keys, vals, width=20)
    okeys = [b"/other/%d" % i for i in range(300)] + [b"/proj/run", b"/proj/r", b""]
    okeys += keys[:200]  # some keys of the input too
    ovals = [rng.randint(-1000, 1000) for _ in okeys]
    o = write_compound("other.h5", okeys, ovals, width=20)
    for policy in ["last", "sum"]:
        base = path("stem_base_%s.kb" % policy)
        ingest([o + ":/data"], base, ["--on-duplicate", policy])
        ref = wrap64(reference(okeys + keys, ovals + vals, policy))
        want = {}
        for parts in [4, 64]:
            for threads in [1, 2]:
                for batch in [300, 100000]:
                    out = path("stem_%s_%d_%d_%d.kb" % (policy, parts, threads, batch))
                    rep = path("stem.json")
                    pr = ingest([f + ":/data"], out,
                                ["--on-duplicate", policy, "--scheme", "prefix",
                                 "--partitions", parts, "--batch-records", batch, "--into",
                                 base, "--report", rep], threads=threads)
                    if pr.returncode:
                        continue
                    r = json.load(open(rep))
                    check(r["prefix_stem"] == 10, "stem: prefix_stem %d, not 10 (/proj/run0)"
                          % r["prefix_stem"])
                    # all in one partition would be P; at P=64 the 303 keys outside the
                    # stem (one bucket, one thread) are 3.5x a mean partition
                    check(r["imbalance"] < {4: 2.0, 64: 5.0}[parts],
                          "stem: partitions unbalanced (%.2f)" % r["imbalance"])
                    got = scan(out)
                    check(got == ref, "stem %s P=%d t=%d b=%d: content differs" %
                          (policy, parts, threads, batch))
                    blob = open(out, "rb").read()
                    if parts in want:
                        check(blob == want[parts], "stem %s P=%d: not byte-identical across "
                              "threads/batch sizes" % (policy, parts))
                    else:
                        want[parts] = blob
                    os.unlink(out)


def narrow_sums():
    """--on-duplicate sum of int8/uint8/int16/float32 values kept the input's type while the
    sums are 64-bit: an int8 KB held 200, which export refused ('integer out of range'),
    and a float32 KB held doubles that export rounded. The KB's values are int64, uint64 or
    float64 under sum now (ingest, --into, merge and intersect); export and ingest back
    give the same content."""
    keys = [b"a", b"a", b"b", b"b", b"c"]
    for vdt, vals, want_dt in [("i1", [100, 100, -128, -128, 127], "int64"),
                               ("u1", [255, 255, 0, 200, 7], "uint64"),
                               ("i2", [32767, 1, -32768, -32768, 5], "int64"),
                               ("f4", [0.1, 0.2, 3.0e38, 3.0e38, -0.0], "float64")]:
        f = write_compound("sum_%s.h5" % vdt, keys, vals, vdtype=vdt)
        stored = [float(np.array(v, dtype=vdt)) if vdt == "f4" else v for v in vals]
        ref = wrap64(reference(keys, stored, "sum")) if vdt != "f4" else \
            reference(keys, stored, "sum")
        kb = path("sum_%s.kb" % vdt)
        last = path("sum_%s_last.kb" % vdt)
        ingest([f + ":/data"], kb, ["--on-duplicate", "sum"])
        ingest([f + ":/data"], last)
        # --into a KB of the input's type, merge and intersect of two such KBs
        ingest([f + ":/data"], path("sum_into.kb"), ["--on-duplicate", "sum", "--into", last])
        run(["merge", last, last, "--output", path("sum_m.kb"), "--on-duplicate", "sum"])
        run(["intersect", last, last, "--output", path("sum_i.kb"), "--on-duplicate", "sum"])
        lastv = dict(reference(keys, stored, "last"))
        for out, want in [(kb, ref), (path("sum_into.kb"), None),
                          (path("sum_m.kb"), [(k, 2 * v) for k, v in sorted(lastv.items())]),
                          (path("sum_i.kb"), [(k, 2 * v) for k, v in sorted(lastv.items())])]:
            if want is None:  # --into: the KB's records first, then the input
                d = dict(reference(keys, stored, "sum"))
                want = [(k, lastv[k] + d[k]) for k in sorted(d)]
            if vdt != "f4":
                want = wrap64(want)
            st = json.loads(run(["stats", out, "--json"]).stdout)
            check(st["value_type"] == want_dt, "sum of %s: %s holds %s values, not %s"
                  % (vdt, os.path.basename(out), st["value_type"], want_dt))
            check(scan(out) == want, "sum of %s: %s: content %s, expected %s"
                  % (vdt, os.path.basename(out), scan(out), want))
            e = path("sum_e.h5")
            if run(["export", out, "--output", e]).returncode:
                continue
            ingest([e + ":/data"], path("sum_back.kb"))
            check(scan(path("sum_back.kb")) == scan(out),
                  "sum of %s: %s exported and ingested back differs" % (vdt,
                                                                       os.path.basename(out)))


def sum_overflow():
    """--on-duplicate sum wrapped integers at 64 bits: 2^62 + 2^62 came out as -2^63, two
    uint64 2^63 as 0, with exit 0. A sum that leaves the range of its class (int64, uint64),
    at any record in input order, now stops the run with exit 5, naming the key and its
    records up to the one that overflows, and writes nothing (ingest, --into, merge,
    intersect); sums up to the range's ends are exact."""
    big = 1 << 62
    cases = [  # (values of key "a" in input order, value dtype, sum or None: refused)
        ([big, big], "i8", None),
        ([big, big, -big], "i8", None),  # the total fits, a partial sum does not
        ([-big, -big, -1], "i8", None),
        ([(1 << 63) - 6, 5, 1, -1], "i8", None),
        ([(1 << 63) - 6, 5], "i8", (1 << 63) - 1),
        ([-(1 << 63) + 5, -5], "i8", -(1 << 63)),
        ([1 << 63, 1 << 63], "u8", None),
        ([(1 << 64) - 2, 1], "u8", (1 << 64) - 1),
    ]
    for n, (vals, vdt, want) in enumerate(cases):
        keys = [b"b"] + [b"a"] * len(vals) + [b"c"]
        f = write_compound("ovf%d.h5" % n, keys, [7] + vals + [9], vdtype=vdt)
        out = path("ovf%d.kb" % n)
        for threads, scheme in [(1, "hash"), (2, "hash"), (2, "prefix")]:
            p = ingest([f + ":/data"], out, ["--on-duplicate", "sum", "--scheme", scheme],
                       threads=threads, expect=5 if want is None else 0)
            if want is not None:
                check(scan(out) == [(b"a", want), (b"b", 7), (b"c", 9)],
                      "sum %s (%s): %s" % (vals, vdt, scan(out)))
                os.unlink(out)
                continue
            msg = p.stderr.decode()
            over = next(i for i in range(1, len(vals) + 1)
                        if not (-(1 << 63) <= sum(vals[:i]) < (1 << 63)
                                if vdt == "i8" else sum(vals[:i]) < (1 << 64)))
            check('the sum of key "a"' in msg and
                  ("int64 range" if vdt == "i8" else "uint64 range") in msg and
                  msg.rstrip().endswith("ovf%d.h5:/data#%d" % (n, over)) and
                  msg.count("\n") == 1,
                  "sum %s (%s), %d thread(s), %s: message: %s" % (vals, vdt, threads,
                                                                  scheme, msg))
            check(not os.path.exists(out), "sum %s: an overflowing sum left a KB" % vals)
    # --into, merge and intersect: two KBs of 2^62 under key "a"
    f1 = write_compound("ovf_a.h5", [b"a", b"z"], [big, 1])
    f2 = write_compound("ovf_b.h5", [b"a", b"y"], [big, 2])
    k1, k2 = path("ovf_a.kb"), path("ovf_b.kb")
    ingest([f1 + ":/data"], k1)
    ingest([f2 + ":/data"], k2)
    before = open(k1, "rb").read()
    msg = ingest([f2 + ":/data"], k1, ["--on-duplicate", "sum", "--into", k1],
                 expect=5).stderr.decode()
    check('the sum of key "a"' in msg and "ovf_a.kb (the --into KB)" in msg and
          "ovf_b.h5:/data#0" in msg, "--into: message: " + msg)
    check(open(k1, "rb").read() == before, "--into: a refused sum changed the KB")
    for op in ["merge", "intersect"]:
        out = path("ovf_%s.kb" % op)
        msg = run([op, k1, k2, "--output", out, "--on-duplicate", "sum"],
                  expect=5).stderr.decode()
        check('the sum of key "a"' in msg and "int64 range" in msg and "ovf_b.kb" in msg,
              "%s: message: %s" % (op, msg))
        check(not os.path.exists(out), "%s: an overflowing sum left a KB" % op)


def errors_and_config():
    keys = [b"k1", b"k2", b"dup", b"k3", b"dup", b"k4", b"dup"]
    f = write_compound("err.h5", keys, list(range(len(keys))))
    p = ingest([f + ":/data"], path("err.kb"), ["--on-duplicate", "error"], expect=5)
    msg = p.stderr.decode()
    check("dup" in msg and "#2" in msg and "#4" in msg,
          "--on-duplicate error: message lacks the key or its positions: " + msg)
    check(not os.path.exists(path("err.kb")), "a refused run left an output")
    ingest([path("missing.h5")], path("x.kb"), expect=3)
    ingest([f + ":/nope"], path("x.kb"), expect=3)
    # a missing --into KB is an input that cannot be read (3), as for merge; it was 4
    ingest([f], path("x.kb"), ["--into", path("missing.kb")], expect=3)
    ingest([f], path("x.kb"), ["--partitions", "3"], expect=2)
    ingest([f], path("x.kb"), ["--scheme", "radix"], expect=2)
    ingest([f], path("x.kb"), ["--bogus", "1"], expect=2)
    ingest([f], path("/nonexistent-dir/x.kb"), expect=4)
    run(["ingest", "--help"])
    # config file: keys as flags, flags win, unknown keys refused
    cfg = path("job.ini")
    with open(cfg, "w") as c:
        c.write("[ingest]\ninput = %s:/data\noutput = %s\non-duplicate = first\n"
                "threads = 2\nquiet = true\n" % (f, path("cfg.kb")))
    run(["ingest", "-c", cfg])
    check(dict(scan(path("cfg.kb")))[b"dup"] == 2, "config: on-duplicate = first ignored")
    run(["ingest", "-c", cfg, "--on-duplicate", "last"])
    check(dict(scan(path("cfg.kb")))[b"dup"] == 6, "config: the flag did not win")
    with open(cfg, "a") as c:
        c.write("colour = blue\n")
    run(["ingest", "-c", cfg], expect=2)
    # a report is JSON with the documented fields
    ingest([f + ":/data"], path("rep.kb"), ["--report", path("rep.json")])
    rep = json.load(open(path("rep.json")))
    for field in ["seconds", "records_per_s", "distinct_keys", "duplicates", "imbalance",
                  "peak_memory_bytes", "threads", "partitions", "scheme", "allocator",
                  "huge_pages"]:
        check(field in rep, "report lacks " + field)
    check(rep["distinct_keys"] == 5 and rep["duplicates"] == 2, "report counts wrong")
    # huge_pages is jemalloc's own opt.thp, which MALLOC_CONF sets; n/a without jemalloc
    for conf, want in [("thp:always", "always"), ("thp:never", "never")]:
        run(["ingest", "--input", f + ":/data", "--output", path("rep.kb"), "--quiet",
             "--report", path("rep.json")], env={"MALLOC_CONF": conf})
        got = json.load(open(path("rep.json")))
        check(got["huge_pages"] == (want if got["allocator"] == "jemalloc" else "n/a"),
              "report: huge_pages %r with MALLOC_CONF=%s (%s)"
              % (got["huge_pages"], conf, got["allocator"]))


def catches(p, sig, timeout=60):
    """Waits until process p catches sig (its handler shows in /proc/PID/status, SigCgt):
    a signal sent before that kills it as the default action does, which says nothing of
    how it stops (a slow start, as under ThreadSanitizer, made the test fail that way)."""
    bit = 1 << (sig - 1)
    end = time.time() + timeout
    while p.poll() is None and time.time() < end:
        try:
            with open("/proc/%d/status" % p.pid) as f:
                for line in f:
                    if line.startswith("SigCgt:") and int(line.split()[1], 16) & bit:
                        return True
        except OSError:
            pass
        time.sleep(0.002)
    return False


def sigterm():
    n = 400000
    dt = np.dtype([("key", "S16"), ("value", "i8")])
    a = np.zeros(n, dtype=dt)
    a["key"] = [b"%016x" % rng.getrandbits(64) for _ in range(n)]
    with h5py.File(path("big.h5"), "w") as f:
        f.create_dataset("data", data=a, chunks=(1024,))
    out = path("sig.kb")
    for delay in [0.05, 0.3]:
        e = dict(os.environ)
        e["OMP_NUM_THREADS"] = "1"
        p = subprocess.Popen([PM, "ingest", "--input", path("big.h5"), "--output", out,
                              "--batch-records", "1024", "--partitions", "4096", "--quiet"],
                             env=e, stderr=subprocess.PIPE)
        catches(p, signal.SIGTERM)
        time.sleep(delay)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate()
        if p.returncode == 0:
            print("note: the run finished before SIGTERM (delay %.2f)" % delay)
            os.unlink(out)
            continue
        check(p.returncode == 130, "SIGTERM: exit %d, expected 130: %s" % (p.returncode, err))
        check(not os.path.exists(out), "SIGTERM left an output")
        left = [x for x in os.listdir(WORK) if x.startswith(".sig.kb")]
        check(not left, "SIGTERM left a temporary file: %s" % left)


def pty_run(args):
    """Runs pmingest with its stderr on a terminal; returns (exit status, what it printed
    there)."""
    import pty
    try:
        m, s = pty.openpty()
    except OSError as e:  # a machine without pseudo-terminals
        print("note: no pseudo-terminal (%s): progress bars not checked" % e)
        return None, None
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = "2"
    p = subprocess.Popen([PM] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=s, env=e)
    os.close(s)
    got = b""
    while True:
        try:
            d = os.read(m, 65536)
        except OSError:  # EIO: the program has closed its end
            break
        if not d:
            break
        got += d
    os.close(m)
    return p.wait(), got.decode(errors="replace")


def finished_bars(out):
    """The finished progress bars in what a terminal got: their lines, and (phase, count,
    unit) of each."""
    done = [l.strip() for l in out.replace("\r", "\n").split("\n") if "took" in l]
    return done, [(l.split()[0], int(l.split()[3]), l.split()[4].rstrip(",")) for l in done
                  if len(l.split()) > 5]


def progress():
    """On a terminal, one bar a phase, each left finished on its line with the phase's
    count; in a log (not a terminal) a short run prints no progress line; --quiet, none.
    verify and stats had none: minutes on billions of keys, without a word."""
    n = 30000
    keys = [b"%05d" % rng.randrange(12000) for _ in range(n)]
    write_compound("prog.h5", keys, list(range(n)))
    distinct = len(set(keys))
    base = ["ingest", "--input", path("prog.h5") + ":/data", "--output", path("prog.kb"),
            "--batch-records", "4096"]
    # hash scheme, runs held back: read, fill, write; prefix scheme: nothing held, no fill
    for extra, want in [([], [("read", n, "records"), ("fill", n, "records"),
                              ("write", distinct, "keys")]),
                        (["--scheme", "prefix"], [("read", n, "records"),
                                                  ("write", distinct, "keys")])]:
        rc, out = pty_run(base + extra)
        if rc is None:
            break
        check(rc == 0, "progress %s: exit %d: %s" % (extra, rc, out[-400:]))
        done, got = finished_bars(out)
        check(got == want, "progress %s: finished bars %s, expected %s" % (extra, got, want))
        check(all("100.0%" in l for l in done), "progress %s: a bar not at 100%%: %s"
              % (extra, done))
    rc, out = pty_run(base + ["--quiet"])
    check(rc in (0, None) and not out, "--quiet on a terminal printed %r" % out[:200])
    p = run(base, threads=2)
    err = p.stderr.decode(errors="replace")
    check("ETA" not in err and "took" not in err,
          "a short run in a log printed progress: %r" % err[:300])
    # gen, merge (and intersect, subtract) and export have a bar too: one phase each
    kb2 = path("prog2.kb")
    ingest([path("prog.h5") + ":/data"], kb2, ["--partitions", 16])
    for args, want in [(["gen", "--output", path("progg.h5"), "--records", 70000],
                        ("gen", 70000, "records")),
                       (["merge", path("prog.kb"), kb2, "--output", path("progm.kb")],
                        ("merge", 2 * distinct, "keys")),
                       (["subtract", path("prog.kb"), kb2, "--output", path("progm.kb")],
                        ("subtract", 2 * distinct, "keys")),
                       (["export", path("prog.kb"), "--output", path("proge.h5")],
                        ("export", distinct, "keys"))]:
        rc, out = pty_run(args)
        if rc is None:
            break
        check(rc == 0, "progress of %s: exit %d: %s" % (args[0], rc, out[-400:]))
        got = finished_bars(out)[1]
        check(got == [want] and "100.0%" in out,
              "progress of %s: finished bars %s, expected %s" % (args[0], got, [want]))
        rc, out = pty_run(args + ["--quiet"])
        check(rc == 0 and not out, "%s --quiet on a terminal printed %r" % (args[0], out[:200]))
        err = run(args).stderr.decode(errors="replace")
        check(not err, "a short %s in a log printed %r" % (args[0], err[:300]))
    # verify and stats: a bar a pass (stats: and its count by partition, a hash-scheme KB)
    kb = path("prog.kb")
    sums = ("sums", os.path.getsize(kb) - 256, "bytes")  # all but the header
    trie_keys = [("trie", distinct, "keys"), ("keys", distinct, "keys")]
    for args, want in [(["verify", kb], [sums] + trie_keys),
                       (["stats", kb], [sums] + trie_keys + [("parts", distinct, "keys")])]:
        rc, out = pty_run(args)
        if rc is None:
            break
        check(rc == 0, "progress of %s: exit %d: %s" % (args[0], rc, out[-400:]))
        done, got = finished_bars(out)
        check(got == want and all("100.0%" in l for l in done),
              "progress of %s: finished bars %s, expected %s" % (args[0], got, want))
        rc, out = pty_run(args + ["--quiet"])
        check(rc == 0 and not out, "%s --quiet on a terminal printed %r" % (args[0], out[:200]))
        err = run(args).stderr.decode(errors="replace")
        check(not err, "a short %s in a log printed %r" % (args[0], err[:300]))


def main():
    quick = len(sys.argv) > 3 and sys.argv[3] == "quick"
    only = sys.argv[4:]  # step names to run (all by default)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    t = time.time()
    for step in [matrix, strings_and_pairs, into_and_multi, mixed_types, prefix_stem,
                 narrow_sums, sum_overflow, errors_and_config, dry_run, memory_default, progress,
                 sigterm]:
        if only and step.__name__ not in only:
            continue
        if step is matrix:
            step(quick)
        else:
            step()
        print("%s done, %d runs, %.1f s" % (step.__name__, runs, time.time() - t), flush=True)
    if failures:
        print("%d failures (seed %d)" % (failures, SEED))
        sys.exit(1)
    print("all ingest checks passed (%d runs)" % runs)


main()
