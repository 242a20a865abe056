#!/usr/bin/python3
"""cli_edge_test.py PMINGEST WORKDIR [STEP...] - the command line on bad input, each step a
regression test named for the bug it pins: the exit status and the one-line message that
--help and the README promise, no crash, and no output file damaged or left half-written.
STEP names run only those steps (all by default).
"""
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

PM = os.path.abspath(sys.argv[1])
WORK = os.path.abspath(sys.argv[2])
failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL:", msg, flush=True)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def path(name):
    return os.path.join(WORK, name)


def run(args, expect=0, fsize=None, timeout=None, pass_fds=(), env=None, cwd=None):
    """Runs pmingest (in directory cwd if given); fsize: a file-size limit in bytes (writes
    past it fail with EFBIG, as on a full disk); timeout: seconds before a run counts as
    hung (and is killed)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = "1"
    e.update(env or {})
    if fsize:
        # HDF5 1.10 keeps (leaks) the buffers of a file whose close failed on the limit:
        # not ours to free, and the process ends next (AddressSanitizer builds)
        e["ASAN_OPTIONS"] = (e.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
    try:
        p = subprocess.run([PM] + [str(a) for a in args], capture_output=True, env=e,
                           preexec_fn=limit if fsize else None, timeout=timeout,
                           pass_fds=pass_fds, cwd=cwd)
    except subprocess.TimeoutExpired:
        fail("%s: still running after %s s" % (args, timeout))
        return subprocess.CompletedProcess(args, -1, b"", b"")
    err = p.stderr.decode(errors="replace")
    if p.returncode < 0:
        fail("%s killed by signal %d: %s" % (args, -p.returncode, err[-800:]))
    elif expect is not None and p.returncode != expect:
        fail("%s: exit %d, expected %d: %s" % (args, p.returncode, expect, err[-800:]))
    return p


NOBODY = ["runuser", "-u", "nobody", "--"]


def nobody_can_run(readable):
    """Whether the steps that need an unprivileged user can run: this test runs as root,
    and nobody can run pmingest and read the file readable (else they are skipped)."""
    return (os.geteuid() == 0 and shutil.which("runuser") is not None and
            subprocess.run(NOBODY + [PM, "--help"], capture_output=True).returncode == 0 and
            subprocess.run(NOBODY + ["test", "-r", readable],
                           capture_output=True).returncode == 0)


def no_temp_files(what):
    left = [x for x in os.listdir(WORK) if ".tmp." in x]
    check(not left, "%s left temporary files: %s" % (what, left))


def hdf5_write_fails():
    """An HDF5 output that fails for want of space (here a file-size limit) with variable-
    length strings used to crash at exit (HDF5 closing, at exit, the file whose close had
    failed): gen and export exit 4, name the file and the OS's reason, and leave nothing
    behind."""
    run(["gen", "--output", path("paths.h5"), "--records", 20000, "--key-kind", "path"])
    run(["ingest", "--input", path("paths.h5"), "--output", path("paths.kb"), "--quiet"])
    for args in [["gen", "--output", path("full.h5"), "--records", 20000, "--key-kind",
                  "path"],
                 ["gen", "--output", path("full.h5"), "--records", 20000, "--key-kind",
                  "words"],
                 ["export", path("paths.kb"), "--output", path("full.h5")]]:
        p = run(args, expect=4, fsize=64 << 10)
        msg = p.stderr.decode(errors="replace")
        check("full.h5" in msg, "%s: message does not name the file" % args[0])
        # the OS's reason, not HDF5's whole record of the failed call (time, buffer, ...)
        check("write failed: File too large)" in msg, "%s: message: %s" % (args[0], msg))
        check(not os.path.exists(path("full.h5")), "%s: left an output" % args[0])
        no_temp_files(args[0])


def same_field():
    """--key-field and --value-field naming one field used to fail as 'out of memory
    building types' (exit 6): a bad command line, exit 2, saying so."""
    f = path("strvals.h5")
    run(["gen", "--output", f, "--records", 100, "--value-type", "string"])
    for extra in [["--value-field", "key"], ["--key-field", "value"]]:
        p = run(["ingest", "--input", f, "--output", path("same.kb"), "--quiet"] + extra,
                expect=2)
        msg = p.stderr.decode(errors="replace")
        check("strvals.h5" in msg and "are both '%s'" % extra[1] in msg,
              "%s: message: %s" % (extra, msg))
        check(not os.path.exists(path("same.kb")), "%s: left an output" % extra)


def digest(name):
    with open(path(name), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def outputs_over_inputs():
    """An output naming a file the run reads used to replace it (exit 0): ingest --output or
    --report over an HDF5 input, --report over the KB or the --into KB, export over its KB,
    kb-build over its TSV. Exit 2, naming both, the file untouched. --into and merge over
    their own output stay allowed: that is documented."""
    run(["gen", "--output", path("in.h5"), "--records", 500])
    run(["ingest", "--input", path("in.h5"), "--output", path("in.kb"), "--quiet"])
    with open(path("in.tsv"), "w") as f:
        f.write("a\t1\nb\t2\n")
    before = {n: digest(n) for n in ["in.h5", "in.kb", "in.tsv"]}
    os.chdir(WORK)
    base = ["ingest", "--input", "in.h5", "--quiet"]
    for args, what in [(base + ["--output", "./in.h5"], "is the input"),
                       (base + ["--output", "new.kb", "--report", path("in.h5")],
                        "is the input"),
                       (base + ["--output", "in.kb", "--report", "../%s/in.kb"
                                % os.path.basename(WORK)], "is the --output KB"),
                       (base + ["--output", "new.kb", "--report", "new.kb"],
                        "is the --output KB"),
                       (base + ["--into", "in.kb", "--output", "new.kb", "--report",
                                "in.kb"], "is the --into KB"),
                       (["export", "in.kb", "--output", path("in.kb")], "is the KB"),
                       (["kb-build", "in.tsv", "--output", "./in.tsv"], "is the input")]:
        p = run(args, expect=2)
        msg = p.stderr.decode(errors="replace")
        check(what in msg, "%s: message: %s" % (args, msg))
        check(not os.path.exists(path("new.kb")), "%s: left an output" % args)
    check(before == {n: digest(n) for n in before}, "a refused run changed its input")
    run(base + ["--into", "in.kb", "--output", "in.kb"])
    run(["merge", "in.kb", path("in.kb"), "--output", "in.kb"])
    run(["verify", "in.kb"])


def outputs_checked_first():
    """An output that cannot be written (a missing or unwritable directory, a directory as
    the file, a --report in a missing directory) used to fail only after the whole run, when
    the file was renamed into place; a --report that failed so left the KB written, exit 4.
    Now refused before the run: here the run itself would fail on a duplicate (exit 5), so
    exit 4 shows that the output was looked at first; and no KB is written."""
    import h5py
    import numpy as np
    a = np.zeros(3, dtype=[("key", "S4"), ("value", "i8")])
    a["key"] = [b"x", b"y", b"x"]
    a["value"] = [1, 2, 3]
    with h5py.File(path("dup.h5"), "w") as f:
        f["data"] = a
    os.makedirs(path("adir"), exist_ok=True)
    base = ["ingest", "--input", path("dup.h5"), "--on-duplicate", "error", "--quiet"]
    for extra, what in [(["--output", path("nodir/x.kb")], "nodir"),
                        (["--output", path("adir")], "Is a directory"),
                        (["--output", path("x.kb"), "--report", path("nodir/r.json")],
                         "nodir/r.json")]:
        p = run(base + extra, expect=4)
        msg = p.stderr.decode(errors="replace")
        check(what in msg, "%s: message: %s" % (extra, msg))
        check(not os.path.exists(path("x.kb")), "%s: wrote the KB" % extra)
    with open(path("a.tsv"), "w") as f:
        f.write("k\t1\n")
    with open(path("b.tsv"), "w") as f:
        f.write("k\t2\n")
    run(["kb-build", path("a.tsv"), "--output", path("a.kb")])
    run(["kb-build", path("b.tsv"), "--output", path("b.kb")])
    p = run(["merge", path("a.kb"), path("b.kb"), "--on-duplicate", "error", "--output",
             path("adir")], expect=4)
    check("Is a directory" in p.stderr.decode(errors="replace"),
          "merge into a directory: message: %s" % p.stderr)
    p = run(["export", path("a.kb"), "--output", path("adir")], expect=4)
    check("Is a directory" in p.stderr.decode(errors="replace"),
          "export into a directory: message: %s" % p.stderr)
    # gen wrote the whole file before its rename onto a directory failed
    p = run(["gen", "--output", path("adir"), "--records", 5000000], expect=4, fsize=1 << 20)
    check("Is a directory" in p.stderr.decode(errors="replace"),
          "gen into a directory: message: %s" % p.stderr)
    no_temp_files("outputs refused first")


def config_files():
    """A key set twice in a config file silently took the last value (an indented line, a
    continuation to libinih, too); a line longer than libinih's 200-byte buffer was cut,
    its rest read as the next line ('syntax error' on the wrong line, or a value silently
    cut). Both are refused now with the line's number; 'input' still repeats, and a line of
    199 bytes, CR LF or none at the end of the file, still reads. A config file that cannot
    be read (a directory) is an error, not an empty file."""
    run(["gen", "--output", path("cfg.h5"), "--records", 100])
    cfg = path("c.ini")

    def job(text, expect, what=None):
        with open(cfg, "w", newline="") as f:
            f.write(text)
        p = run(["ingest", "-c", cfg], expect=expect)
        msg = p.stderr.decode(errors="replace")
        if what:
            check(what in msg, "config %r: message: %s" % (text[:60], msg))
        return p

    ok = "input = %s\noutput = %s\nquiet = true\n" % (path("cfg.h5"), path("cfg.kb"))
    job(ok, 0)
    job(ok + "threads = 1\nthreads = 2\n", 2, "c.ini:5: 'threads' is already set on line 4")
    job(ok + "output = %s\n" % path("other.kb"), 2, "'output' is already set on line 2")
    # an indented line was joined to the value above it: a second input, silently, or an
    # indented key read as part of a file name; indentation means nothing now
    job(ok + "threads = 1\n  2\n", 2, "c.ini:5: syntax error")
    job(ok.replace("input = %s\n" % path("cfg.h5"),
                   "input = %s\n  %s\n" % (path("cfg.h5"), path("cfg.h5"))), 2,
        "c.ini:2: syntax error")
    job(ok.replace("quiet", "  report = %s\n\tquiet" % path("ind.json")), 0)
    check(json.load(open(path("ind.json")))["records"] == 100, "indented keys: the report")
    # " #" started no comment: the output was a file named 'cfg2.kb   # the KB'; a value in
    # single quotes kept them
    job(ok.replace(path("cfg.kb"), path("cfg2.kb") + "   # the KB") + "# done\n", 0)
    check(os.path.exists(path("cfg2.kb")), "an inline # comment: no cfg2.kb")
    job(ok.replace(path("cfg.kb"), "'%s'" % path("cfg3.kb")), 0)
    check(os.path.exists(path("cfg3.kb")), "a value in single quotes: no cfg3.kb")
    check(not [n for n in os.listdir(WORK) if "#" in n or "'" in n],
          "files named with the comment or the quotes: %s" % os.listdir(WORK))
    # ... but a '#' within quotes is the value's; a quoted value that ' ;' cut (libinih
    # does, within quotes too) lost its closing quote: refused, not taken as '"run'
    job(ok.replace(path("cfg.kb"), '"%s"' % path("run #3.kb")) + "# done\n", 0)
    check(os.path.exists(path("run #3.kb")), "a quoted '#': no 'run #3.kb'")
    job(ok.replace(path("cfg.kb"), '"%s"' % path("run ;4.kb")), 2, "c.ini:2: the value of "
        "'output' has no closing quote")
    # a key or value refused names its line
    job(ok + "colour = blue\n", 2, "c.ini:4: unknown key 'colour'")
    job(ok + "threads = many\n", 2, "c.ini:4: invalid value 'many' for threads")
    job(ok + "input = %s\n" % path("cfg.h5"), 0)
    # a quoted value was taken with its quotes (a report named "r.json", quotes included)
    job(ok + 'report = "%s"\n' % path("q r.json"), 0)
    check(os.path.exists(path("q r.json")), "a quoted report path: no %s" % path("q r.json"))
    long_out = path("o" * 300)[:199 - len("output = ")]
    job("input = %s\nquiet = 1\noutput = %s\n" % (path("cfg.h5"), long_out), 0)
    check(os.path.exists(long_out), "a 199-byte line: the output is not %s" % long_out)
    job("input = %s\r\nquiet = 1\r\noutput = %s\r\n" % (path("cfg.h5"), long_out), 0)
    job("input = %s\nquiet = 1\noutput = %s" % (path("cfg.h5"), long_out), 0)
    job("input = %s\nquiet = 1\noutput = %sx\n" % (path("cfg.h5"), long_out), 2,
        "c.ini:3: line longer than 199 bytes")
    job("; %s\n%s" % ("c" * 250, ok), 2, "c.ini:1: line longer than 199 bytes")
    # a directory given as the config file was read as an empty file
    os.makedirs(path("cdir"), exist_ok=True)
    p = run(["ingest", "-c", path("cdir"), "--input", path("cfg.h5"), "--output",
             path("cfg.kb"), "--quiet"], expect=2)
    check("cdir: cannot read config file" in p.stderr.decode(errors="replace"),
          "a directory as config: message: %s" % p.stderr)
    # and kb-build read a directory as an empty TSV (an empty KB, exit 0)
    p = run(["kb-build", path("cdir"), "--output", path("cdir.kb")], expect=3)
    check("cannot read %s: Is a directory" % path("cdir") in p.stderr.decode(errors="replace"),
          "kb-build of a directory: message: %s" % p.stderr)
    check(not os.path.exists(path("cdir.kb")), "kb-build of a directory wrote a KB")


def export_dataset():
    """export --layout pair --dataset G silently wrote /keys and /values, not G/keys and
    G/values as gen does; an empty --dataset failed as an output error (exit 4). Now G/keys
    and G/values (ingest reads them back to the same content), and an empty or relative path
    is a bad command line (exit 2)."""
    import h5py
    with open(path("e.tsv"), "w") as f:
        f.write("k\t1\nl\t2\n")
    run(["kb-build", path("e.tsv"), "--output", path("e.kb")])
    run(["export", path("e.kb"), "--output", path("p.h5"), "--layout", "pair", "--dataset",
         "/grp"])
    with h5py.File(path("p.h5"), "r") as f:
        check("grp/keys" in f and "grp/values" in f and "keys" not in f,
              "export --layout pair --dataset /grp wrote %s" % list(f))
    run(["ingest", "--input", path("p.h5"), "--keys", "/grp/keys", "--values", "/grp/values",
         "--output", path("p.kb"), "--quiet"])
    a = run(["scan", path("e.kb")]).stdout
    check(a and run(["scan", path("p.kb")]).stdout == a, "pair export: content differs")
    for bad in ["", "grp"]:
        run(["export", path("e.kb"), "--output", path("q.h5"), "--dataset", bad], expect=2)
        check(not os.path.exists(path("q.h5")), "--dataset %r: left an output" % bad)
    # a key its HDF5 type cannot hold (a NUL in a variable-length string) failed as an
    # output error (exit 4): content refused, exit 5, the record named, nothing written
    with open(path("nul.tsv"), "w") as f:
        f.write("a\\x00b\t1\nc\t2\n")
    run(["kb-build", path("nul.tsv"), "--output", path("nul.kb")])
    p = run(["export", path("nul.kb"), "--output", path("q.h5")], expect=5)
    check("record 0" in p.stderr.decode(errors="replace") and "NUL byte"
          in p.stderr.decode(errors="replace"), "export of a NUL key: %s" % p.stderr)
    check(not os.path.exists(path("q.h5")), "export of a NUL key: left an output")
    no_temp_files("export of a NUL key")
    # a group for the compound dataset ("/", "/g/") failed as an output error (exit 4)
    for bad in ["/", "/grp/"]:
        for args in [["export", path("e.kb")], ["gen", "--records", 5]]:
            p = run(args + ["--output", path("q.h5"), "--dataset", bad], expect=2)
            check("names a group" in p.stderr.decode(errors="replace"),
                  "%s --dataset %s: message: %s" % (args[0], bad, p.stderr))
            check(not os.path.exists(path("q.h5")), "--dataset %r: left an output" % bad)


def stop_when_started(args, pattern, sig, again=None):
    """Starts pmingest, sends sig once a file whose name contains pattern appears in WORK
    (its temporary output), and again after `again` seconds if given, and returns (exit
    status, stderr)."""
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = "1"
    p = subprocess.Popen([PM] + [str(a) for a in args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=e)
    t = time.time()
    while p.poll() is None and time.time() - t < 30:
        if any(pattern in x for _, _, fs in os.walk(WORK) for x in fs):
            break
        time.sleep(0.01)
    p.send_signal(sig)
    if again is not None:
        time.sleep(again)
        if p.poll() is None:
            p.send_signal(sig)
    _, err = p.communicate()
    return p.returncode, err.decode(errors="replace")


def gen_interrupted():
    """gen (and demo while it generates) did not catch SIGINT/SIGTERM: the signal killed it
    and its temporary HDF5 file, hundreds of MB, stayed. Now exit 130, nothing left.
    demo --records took 'abc' as 0 and '12x' as 12 (and '-5' as 2^64 - 5): exit 2.
    One stop sent twice at once (GNU timeout signals the process, then its group) killed
    gen, which left its temporary file: a repeat within a second is the same request."""
    for sig, again in [(signal.SIGTERM, None), (signal.SIGINT, None), (signal.SIGTERM, 0.05)]:
        rc, err = stop_when_started(["gen", "--output", path("big.h5"), "--records",
                                     50000000, "--key-kind", "path"], "big.h5.tmp.", sig,
                                    again)
        check(rc == 130, "gen, signal %d: exit %d, expected 130: %s" % (sig, rc, err))
        check(not os.path.exists(path("big.h5")), "gen, signal %d: left big.h5" % sig)
        no_temp_files("gen stopped by signal %d" % sig)
    rc, err = stop_when_started(["demo", "--records", 50000000, "--dir", path("demo")],
                                "demo.h5.tmp.", signal.SIGTERM)
    check(rc == 130, "demo, SIGTERM: exit %d, expected 130: %s" % (rc, err))
    check(os.listdir(path("demo")) == [], "demo, SIGTERM: left %s" % os.listdir(path("demo")))
    for bad in ["abc", "12x", "-5", ""]:
        p = run(["demo", "--records", bad, "--dir", path("demo2")], expect=2)
        check("--records" in p.stderr.decode(errors="replace"), "demo --records %r: %s"
              % (bad, p.stderr))


def empty_output():
    """An empty --output failed three ways: merge and kb-build with exit 4 ('cannot write :
    No such file or directory'), export and gen with 'pio: writer: missing argument'. Now,
    as ingest does, a bad command line (exit 2) that names --output."""
    with open(path("o.tsv"), "w") as f:
        f.write("k\t1\n")
    run(["kb-build", path("o.tsv"), "--output", path("o.kb")])
    for args in [["merge", path("o.kb")], ["intersect", path("o.kb"), path("o.kb")],
                 ["export", path("o.kb")], ["kb-build", path("o.tsv")],
                 ["gen", "--records", 5], ["ingest", "--input", path("o.h5")]]:
        p = run(args + ["--output", ""], expect=2)
        check("output" in p.stderr.decode(errors="replace"),
              "%s --output '': message: %s" % (args[0], p.stderr))
    # --allocator with an unknown name was told to build with -DPM_JEMALLOC=ON
    p = run(["ingest", "--input", path("o.h5"), "--output", path("x.kb"), "--allocator",
             "tcmalloc"], expect=2)
    check("--allocator tcmalloc: jemalloc or glibc" in p.stderr.decode(errors="replace"),
          "--allocator tcmalloc: message: %s" % p.stderr)


def ignored_options():
    """Options that were silently ignored: a second -c (only the last file was read), the
    dataset of --input FILE:/dataset and --key-field with --keys/--values (the datasets
    named by --keys and --values were read). Each is a bad command line now (exit 2)."""
    run(["gen", "--output", path("io.h5"), "--records", 100])
    run(["gen", "--output", path("pair.h5"), "--records", 100, "--layout", "pair"])
    for name, text in [("a.ini", "threads = 1\n"), ("b.ini", "threads = 2\n")]:
        with open(path(name), "w") as f:
            f.write(text)
    base = ["ingest", "--output", path("io.kb"), "--quiet"]
    cases = [
        (["-c", path("a.ini"), "--config=" + path("b.ini"), "--input", path("io.h5")],
         "one config file only"),
        (["--input", path("pair.h5") + ":/data", "--keys", "/keys", "--values", "/values"],
         "names a dataset, but --keys and --values"),
        (["--input", path("pair.h5"), "--keys", "/keys", "--values", "/values",
          "--key-field", "k"], "--key-field names a field"),
    ]
    for args, what in cases:
        p = run(base + args, expect=2)
        check(what in p.stderr.decode(errors="replace"),
              "%s: message: %s" % (args, p.stderr))
    check(not os.path.exists(path("io.kb")), "a refused command line wrote a KB")
    run(base + ["--input", path("pair.h5"), "--keys", "/keys", "--values", "/values"])


def fifos():
    """A FIFO given as a KB or as an HDF5 input blocked for ever in open() (no writer comes).
    Now it is refused at once as not a regular file: exit 3."""
    fifo = path("fifo")
    os.mkfifo(fifo)
    for args in [["get", fifo, "k"], ["stats", fifo],
                 ["ingest", "--input", fifo, "--output", path("f.kb"), "--quiet"]]:
        p = run(args, expect=3, timeout=30)
        check("not a regular file" in p.stderr.decode(errors="replace"),
              "%s: message: %s" % (args, p.stderr))


def replaced_mode():
    """A KB written over an existing one got the default mode (0644 under the usual umask):
    a KB shared with a group (0640, 0660) lost its sharing at every run. It keeps the
    replaced file's permissions now, for ingest, --into and merge; a new file still gets
    the default."""
    run(["gen", "--output", path("m.h5"), "--records", 100])
    kb = path("m.kb")
    run(["ingest", "--input", path("m.h5"), "--output", kb, "--quiet"])
    um = os.umask(0)
    os.umask(um)
    fresh = os.stat(kb).st_mode & 0o777
    check(fresh == 0o666 & ~um, "a new KB has mode %o (umask %o)" % (fresh, um))
    for mode, args in [(0o640, ["ingest", "--input", path("m.h5"), "--output", kb,
                                "--quiet"]),
                       (0o660, ["ingest", "--input", path("m.h5"), "--into", kb,
                                "--output", kb, "--quiet"]),
                       (0o600, ["merge", kb, kb, "--output", kb])]:
        os.chmod(kb, mode)
        run(args)
        got = os.stat(kb).st_mode & 0o777
        check(got == mode, "%s over a KB of mode %o: mode %o" % (args[0], mode, got))
    no_temp_files("replaced_mode")


def special_outputs():
    """An output that exists and is not a regular file was replaced by the new file renamed
    over it: a FIFO became a KB or an HDF5 file (and --output /dev/null, run as root, would
    have replaced the system's /dev/null, and --report /dev/stdout the /dev/stdout link).
    Each writer refuses it now (exit 4) and leaves it as it was; --report to such a file
    writes the JSON in place (checked on a pipe as /dev/fd/N, which a faulty rename cannot
    replace)."""
    import json
    import stat
    run(["gen", "--output", path("s.h5"), "--records", 50])
    run(["ingest", "--input", path("s.h5"), "--output", path("s.kb"), "--quiet"])
    with open(path("s.tsv"), "w") as f:
        f.write("k\t1\n")
    fifo = path("out.fifo")
    os.mkfifo(fifo)
    for args in [["ingest", "--input", path("s.h5"), "--quiet"], ["gen", "--records", 5],
                 ["merge", path("s.kb")], ["export", path("s.kb")],
                 ["kb-build", path("s.tsv")]]:
        p = run(args + ["--output", fifo], expect=4, timeout=60)
        check("not a regular file" in p.stderr.decode(errors="replace"),
              "%s --output FIFO: message: %s" % (args[0], p.stderr))
        check(stat.S_ISFIFO(os.stat(fifo).st_mode), "%s replaced the FIFO" % args[0])
    r, w = os.pipe()
    run(["ingest", "--input", path("s.h5"), "--output", path("s2.kb"), "--quiet",
         "--report", "/dev/fd/%d" % w], timeout=60, pass_fds=(w,))
    os.close(w)
    with os.fdopen(r, "rb") as f:
        text = f.read()
    try:
        rep = json.loads(text.decode())
        check(rep.get("records") == 50, "--report to a pipe: %s" % rep)
    except ValueError:
        fail("--report to a pipe: not JSON: %r" % text[:200])
    no_temp_files("special_outputs")


def busy_inputs():
    """A sound HDF5 input that a writer holds open (HDF5's file lock), or that a writer left
    marked as open when it died, was refused as 'truncated or damaged': exit 3 still, but
    the message says what is going on and how to get past it, and the way it gives works."""
    import h5py
    import numpy as np
    a = np.zeros(3, dtype=[("key", "S4"), ("value", "<i8")])
    a["key"] = [b"a", b"b", b"c"]
    f = path("held.h5")
    with h5py.File(f, "w") as h:
        h["data"] = a
    args = ["ingest", "--input", f + ":/data", "--output", path("busy.kb"), "--quiet"]
    # file locking on for both sides, whatever the caller's environment says (HPC sites
    # often export HDF5_USE_FILE_LOCKING=FALSE)
    locking = {"HDF5_USE_FILE_LOCKING": "TRUE"}
    holder = subprocess.Popen(["/usr/bin/python3", "-c", "import h5py, sys\n"
                               "f = h5py.File(sys.argv[1], 'a')\nprint('open', flush=True)\n"
                               "sys.stdin.read()", f],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=dict(os.environ, **locking))
    try:
        check(holder.stdout.readline().strip() == b"open", "the writer did not open the file")
        msg = run(args, expect=3, env=locking).stderr.decode(errors="replace")
        check("held.h5" in msg and "another process has it open for writing" in msg and
              "HDF5_USE_FILE_LOCKING=FALSE" in msg and "damaged" not in msg,
              "a locked input: message: %s" % msg)
        check(not os.path.exists(path("busy.kb")), "a locked input left an output")
        run(args, env={"HDF5_USE_FILE_LOCKING": "FALSE"})
        check(os.path.exists(path("busy.kb")), "HDF5_USE_FILE_LOCKING=FALSE did not help")
    finally:
        holder.stdin.close()
        holder.wait()
    os.unlink(path("busy.kb"))
    f = path("crashed.h5")
    subprocess.run(["/usr/bin/python3", "-c", "import h5py, numpy as np, os, sys\n"
                    "f = h5py.File(sys.argv[1], 'w', libver='latest')\n"
                    "f['data'] = np.zeros(3, dtype=[('key', 'S4'), ('value', '<i8')])\n"
                    "f.flush()\nos._exit(0)", f], check=True)
    args[2] = f + ":/data"
    msg = run(args, expect=3, env=locking).stderr.decode(errors="replace")
    check("crashed.h5" in msg and "did not close it" in msg and
          "'h5clear -s %s'" % f in msg and "damaged" not in msg,
          "an input a writer left open: message: %s" % msg)
    subprocess.run(["h5clear", "-s", f], check=True)
    run(args)
    check(os.path.exists(path("busy.kb")), "h5clear -s did not help")


def stored_elsewhere():
    """Records HDF5 reads without an error although they are not there: a virtual dataset
    reads fill values where a source file or dataset is missing, shorter than its mapping,
    or where no mapping covers a record; an external raw file reads zeros past its end; a
    chunked dataset reads fill values where no chunk was written. Each made up records that
    went into the KB; now exit 3 (also under --dry-run), naming the file and the records.
    A filter that cannot be loaded failed at the first read with "can't open directory";
    now it is named with the package that brings it. h5py's LZF
    (Debian 12's plugin for it does not load) is decoded by pmingest itself."""
    import h5py
    import numpy as np
    n = 1000
    a = np.zeros(n, dtype=[("key", "S8"), ("value", "<i8")])
    a["key"] = [b"k%06d" % (i * 7919 % n) for i in range(n)]
    a["value"] = np.arange(n) * 3 - 500
    os.makedirs(path("st/sub"))
    os.makedirs(path("st/elsewhere"))
    plain = path("st/plain.h5")
    with h5py.File(plain, "w") as h:
        h["data"] = a
        h.create_dataset("lzf", data=a, compression="lzf", chunks=(64,))  # last chunk part
        h.create_dataset("lz4", data=a, compression=32004, chunks=(64,))
        h.create_dataset("odd", shape=(n,), dtype=a.dtype, chunks=(n,), compression=32099,
                         allow_unknown_filter=True)
        h["odd"].id.write_direct_chunk((0,), a.tobytes())
        # an optional filter that every chunk skipped (filter mask bit set): no need of it
        h.create_dataset("skipped", shape=(n,), dtype=a.dtype, chunks=(500,),
                         compression=32099, allow_unknown_filter=True)
        for c in range(2):
            h["skipped"].id.write_direct_chunk((c * 500,), a[c * 500:(c + 1) * 500].tobytes(),
                                               filter_mask=1)
    empty_plugins = {"HDF5_PLUGIN_PATH": path("st/elsewhere")}

    def scan_of(inp, env=None, cwd=None):
        kb = path("st/out.kb")
        if run(["ingest", "--input", inp, "--output", kb, "--quiet"], env=env,
               cwd=cwd).returncode:
            return None
        out = run(["scan", kb]).stdout
        os.unlink(kb)
        return out

    def refused(inp, words, env=None, cwd=None):
        for extra in [[], ["--dry-run"]]:
            kb = path("st/out.kb")
            msg = run(["ingest", "--input", inp, "--output", kb, "--quiet"] + extra, expect=3,
                      env=env, cwd=cwd).stderr.decode(errors="replace")
            check(msg.count("\n") == 1 and all(w in msg for w in words),
                  "%s %s: message: %s" % (inp, extra, msg))
            check(not os.path.exists(kb), "%s %s: left an output" % (inp, extra))

    want = scan_of(plain + ":/data")
    check(want and want.count(b"\n") == n, "the plain dataset: %r" % want[:200])
    check(scan_of(plain + ":/lzf") == want, "LZF: not the plain dataset's records")
    check(scan_of(plain + ":/lzf", empty_plugins) == want, "LZF without plugins")
    # an LZF chunk that decodes to half its size: the rest was read as zeros, exit 0
    lit = a.tobytes()[:a.nbytes // 2]
    lit = b"".join(bytes([len(lit[i:i + 32]) - 1]) + lit[i:i + 32]
                   for i in range(0, len(lit), 32))  # LZF literal runs
    with h5py.File(path("st/lzfshort.h5"), "w") as h:
        d = h.create_dataset("data", shape=(n,), dtype=a.dtype, chunks=(n,), compression="lzf")
        d.id.write_direct_chunk((0,), lit)
    msg = run(["ingest", "--input", path("st/lzfshort.h5"), "--output", path("st/out.kb"),
               "--quiet"], expect=3).stderr
    check(b"lzfshort.h5" in msg and b"cannot read records 0..999" in msg,
          "a short LZF chunk: %r" % msg)
    check(scan_of(plain + ":/lz4") == want, "LZ4 (hdf5-filter-plugin): not the records")
    refused(plain + ":/lz4", ["plain.h5", "/lz4", "filter 32004", "hdf5-filter-plugin",
                              "HDF5_PLUGIN_PATH"], empty_plugins)
    refused(plain + ":/odd", ["plain.h5", "/odd", "filter 32099", "cannot load"])
    check(scan_of(plain + ":/skipped") == want, "an optional filter no chunk went through")

    # virtual datasets: two sources in sub/, the virtual one next to them
    for i in range(2):
        with h5py.File(path("st/sub/src%d.h5" % i), "w") as h:
            h["part"] = a[i * 500:(i + 1) * 500]

    def vds(name, parts, same=None):
        """parts: (file, dataset, source records, virtual start) each."""
        lay = h5py.VirtualLayout(shape=(n,), dtype=a.dtype)
        for f, d, cnt, at in parts:
            lay[at:at + cnt] = h5py.VirtualSource(f, d, shape=(cnt,))
        with h5py.File(path("st/sub/" + name), "w") as h:
            if same is not None:
                h["own"] = same
            h.create_virtual_dataset("data", lay)
        return path("st/sub/" + name) + ":/data"

    good = vds("v.h5", [("src0.h5", "part", 500, 0), ("src1.h5", "part", 500, 500)])
    check(scan_of(good) == want, "a virtual dataset: not the records")
    check(scan_of(good, cwd=path("st/elsewhere")) == want,
          "a virtual dataset read from another directory")
    check(scan_of(vds("self.h5", [(".", "own", 500, 0), ("src1.h5", "part", 500, 500)],
                      a[:500])) == want, "a virtual dataset with a source in its own file")
    refused(vds("gone.h5", [("src0.h5", "part", 500, 0), ("nothere.h5", "part", 500, 500)]),
            ["gone.h5", "records 500..999", "nothere.h5", "fill values"])
    refused(vds("nodset.h5", [("src0.h5", "part", 500, 0), ("src1.h5", "nope", 500, 500)]),
            ["nodset.h5", "records 500..999", "src1.h5", "nope", "no such dataset"])
    with h5py.File(path("st/sub/src3.h5"), "w") as h:
        h["part"] = a[600:]
    refused(vds("hole.h5", [("src0.h5", "part", 500, 0), ("src3.h5", "part", 400, 600)]),
            ["hole.h5", "records 500..599", "no source"])
    # a whole source larger than its mapping: HDF5 reads fill values for all of it
    refused(vds("big.h5", [("src0.h5", "part", 500, 0), ("src1.h5", "part", 400, 600)]),
            ["big.h5", "records 600..999", "src1.h5", "has 500 records where the mapping "
             "takes 400"])
    short = vds("short.h5", [("src0.h5", "part", 500, 0), ("src2.h5", "part", 500, 500)])
    with h5py.File(path("st/sub/src2.h5"), "w") as h:
        h["part"] = a[500:900]
    refused(short, ["short.h5", "records 500..999", "src2.h5", "has 400 records where the mapping takes 500"])
    # a source found only through HDF5_VDS_PREFIX
    shutil.move(path("st/sub/src2.h5"), path("st/elsewhere/src1.h5"))
    os.rename(path("st/sub/src1.h5"), path("st/sub/src1.keep"))
    refused(good, ["v.h5", "records 500..999", "src1.h5"])
    os.rename(path("st/sub/src1.keep"), path("st/elsewhere/src1.h5"))
    check(scan_of(good, {"HDF5_VDS_PREFIX": path("st/nothing") + ":" +
                         path("st/elsewhere")}) == want, "a source in HDF5_VDS_PREFIX")

    # a writer that stopped early: chunks never written read as fill values
    with h5py.File(path("st/stopped.h5"), "w") as h:
        d = h.create_dataset("data", shape=(n,), dtype=a.dtype, chunks=(100,))
        d[:500] = a[:500]
        d[700:800] = a[700:800]
        h.create_dataset("none", shape=(n,), dtype=a.dtype)
        d = h.create_dataset("grown", shape=(0,), maxshape=(None,), dtype=a.dtype,
                             chunks=(64,), compression="gzip")
        d.resize((n,))
        d[:] = a
        d.resize((n + 476,))
    refused(path("st/stopped.h5") + ":/data", ["stopped.h5", "/data", "records 500..699",
                                               "never written", "4 of its 10 chunks"])
    refused(path("st/stopped.h5") + ":/none", ["stopped.h5", "/none", "none of its 1000"])
    refused(path("st/stopped.h5") + ":/grown", ["stopped.h5", "records 1024..1475",
                                                "8 of its 24 chunks"])
    # one of 20,000 chunks missing: the search for it, chunk by chunk, took 47 s (HDF5 1.10
    # walks the chunk index for each), and a first SIGTERM did not stop it
    with h5py.File(path("st/many.h5"), "w", libver="latest") as h:
        d = h.create_dataset("data", shape=(20000,), dtype=a.dtype, chunks=(1,),
                             maxshape=(None,))
        d[:19999] = np.zeros(19999, a.dtype)
    t = time.time()
    refused(path("st/many.h5"), ["many.h5", "1 of its 20000 chunks are missing"])
    check(time.time() - t < 20, "20,000 chunks, one missing: %.0f s to refuse" % (time.time() - t))

    # external raw data files, named relative to the working directory
    os.chdir(path("st"))
    with h5py.File("ext.h5", "w") as h:
        h.create_dataset("data", shape=(n,), dtype=a.dtype,
                         external=[("ext.raw", 0, h5py.h5f.UNLIMITED)])
        h["data"][...] = a
    os.chdir(WORK)
    ext = path("st/ext.h5") + ":/data"
    check(scan_of(ext, cwd=path("st")) == want, "an external raw file")
    check(scan_of(ext, {"HDF5_EXTFILE_PREFIX": "${ORIGIN}"}, cwd=path("st/elsewhere")) ==
          want, "an external raw file with HDF5_EXTFILE_PREFIX=${ORIGIN}")
    refused(ext, ["ext.h5", "external file 'ext.raw'", "No such file"],
            cwd=path("st/elsewhere"))
    raw = open(path("st/ext.raw"), "rb").read()
    with open(path("st/ext.raw"), "wb") as w:
        w.write(raw[:len(raw) // 2])
    refused(ext, ["ext.h5", "'ext.raw'", "has %d bytes where %d" % (len(raw) // 2, len(raw)),
                  "zeros"], cwd=path("st"))


def damaged_strings():
    """HDF5 1.10 follows a variable-length string's heap reference without checking it: a
    damaged object index gave a KB holding a wrong key with exit 0 (HDF5 copied memory that
    is not the file's), a larger one a crash (SIGSEGV in H5HG_read), a damaged object size a
    buffer overrun. The references are now checked against their heap collections before
    HDF5 follows them: exit 3 naming the file, the dataset, the record and the damage, no
    output. The strings of sound files, which pmingest now reads from the heap itself, are
    read as h5py reads them: a user block, a string of 300000 bytes (in a heap collection
    too large to be kept: read alone), chunked and compressed, a values dataset of strings,
    a compound of two strings."""
    import h5py
    import numpy as np
    import struct
    n = 300
    keys = ["key%05d" % (i * 7 % n) + ("x" * 300000 if i == 40 else "") for i in range(n)]
    keys[3] = ""
    vals = ["v%d" % i * (i % 4) for i in range(n)]
    os.makedirs(path("ds"))

    def make(name, ub=0, **ds):
        f = path("ds/" + name)
        with h5py.File(f, "w", userblock_size=ub) as h:
            a = np.zeros(n, dtype=[("key", h5py.string_dtype()), ("value", "<i8")])
            a["key"] = keys
            a["value"] = np.arange(n)
            h.create_dataset("data", data=a, **ds)
            h["k"] = np.array([b"k%05d" % i for i in range(n)])
            h.create_dataset("v", data=np.array(vals, dtype=object),
                             dtype=h5py.string_dtype(), **ds)
            b = np.zeros(n, dtype=[("key", h5py.string_dtype()), ("value", h5py.string_dtype())])
            b["key"] = [k.decode() for k in h["k"][:]]
            b["value"] = vals
            h.create_dataset("kv", data=b, **ds)
            offs = (h["data"].id.get_offset(), h["v"].id.get_offset(), h["kv"].id.get_offset())
        return f, offs

    def scan_of(args):
        kb = path("ds/out.kb")
        if run(["ingest", "--output", kb, "--quiet", "--batch-records", 64] + args,
               timeout=120).returncode:
            return None
        out = run(["scan", kb]).stdout
        os.unlink(kb)
        return out

    want_c = "".join("%s\t%d\n" % (k, i) for k, i in sorted(dict(
        (k, i) for i, k in enumerate(keys)).items())).encode()
    want_p = "".join("k%05d\t%s\n" % (i, v) for i, v in enumerate(vals)).encode()
    for name, ub, ds in [("c.h5", 0, {}), ("ub.h5", 512, {}),
                         ("z.h5", 0, dict(chunks=(64,), compression="gzip"))]:
        f, _ = make(name, ub, **ds)
        check(scan_of(["--input", f + ":/data"]) == want_c, "%s: compound read wrong" % name)
        check(scan_of(["--input", f, "--keys", "/k", "--values", "/v"]) == want_p,
              "%s: values dataset read wrong" % name)
        check(scan_of(["--input", f + ":/kv"]) == want_p, "%s: two string fields read wrong" % name)

    # The references as stored: length (4 bytes), collection address (8), object index (4).
    def damaged(base, dset_off, rec, stride, edit):
        data = bytearray(open(base, "rb").read())
        ref = dset_off + rec * stride
        ln, addr, idx = struct.unpack_from("<IQI", data, ref)
        ub = 512 if "ub" in base else 0
        objs, p = {}, ub + addr + 16  # the collection's objects: index -> byte offset
        end = ub + addr + struct.unpack_from("<Q", data, ub + addr + 8)[0]
        while p + 16 <= end:
            i, size = struct.unpack_from("<H", data, p)[0], struct.unpack_from("<Q", data, p + 8)[0]
            objs[i] = p
            if i == 0:
                break
            p += 16 + (size + 7) // 8 * 8
        edit(data, ref, ln, addr, idx, ub, objs)
        out = path("ds/bad.h5")
        with open(out, "wb") as w:
            w.write(data)
        return out

    def refused(args, words):
        kb = path("ds/out.kb")
        msg = run(["ingest", "--output", kb, "--quiet"] + args, expect=3,
                  timeout=120).stderr.decode(errors="replace")
        check(msg.count("\n") == 1 and all(w in msg for w in words),
              "%s: message: %s" % (words, msg))
        check(not os.path.exists(kb), "%s: left an output" % words)

    c, (c_data, c_v, c_kv) = path("ds/c.h5"), make("c.h5")[1]
    ub, (ub_data, _, _) = path("ds/ub.h5"), make("ub.h5", 512)[1]
    cases = [
        ("an index past the collection's objects (a wrong key, exit 0)",
         lambda d, r, ln, a, i, u, o: struct.pack_into("<I", d, r + 12, max(o) + 50),
         ["no such object"]),
        ("a large index (SIGSEGV)",
         lambda d, r, ln, a, i, u, o: struct.pack_into("<I", d, r + 12, 0xFFFF0000),
         ["object 4294901760", "no such object"]),
        ("the free space's index",
         lambda d, r, ln, a, i, u, o: struct.pack_into("<I", d, r + 12, 0),
         ["object 0 ", "no such object"]),
        ("a length that is not the object's (a buffer overrun)",
         lambda d, r, ln, a, i, u, o: struct.pack_into("<I", d, r, ln - 2),
         ["of 6 bytes", "which holds 8 bytes"]),
        ("a collection past the end of the file",
         lambda d, r, ln, a, i, u, o: struct.pack_into("<Q", d, r + 4, len(d) + 4096),
         ["lies past the end of the file"]),
        ("a damaged collection signature",
         lambda d, r, ln, a, i, u, o: d.__setitem__(u + a + 3, ord("X")),
         ["is not a heap collection"]),
        ("an object size past the collection",
         lambda d, r, ln, a, i, u, o: struct.pack_into("<Q", d, o[i] + 8, 1 << 40),
         ["number %d", "does not fit in it"]),
        ("two objects of one index",
         lambda d, r, ln, a, i, u, o: struct.pack_into("<H", d, o[i + 1], i),
         ["two objects numbered"]),
    ]
    for what, edit, words in cases:
        bad = damaged(c, c_data, 7, 24, edit)
        refused(["--input", bad + ":/data"], ["bad.h5", "dataset /data", "the key"] +
                [w.replace("%d", "") for w in words])
    bad = damaged(ub, ub_data, 7, 24, cases[0][1])
    refused(["--input", bad + ":/data"], ["record 7:", "no such object"])
    bad = damaged(c, c_v, 9, 16, cases[0][1])
    refused(["--input", bad, "--keys", "/k", "--values", "/v"],
            ["bad.h5", "dataset /v", "record 9:", "the value", "no such object"])
    bad = damaged(c, c_kv + 16, 11, 32, cases[0][1])
    refused(["--input", bad + ":/kv"], ["dataset /kv", "record 11:", "the value", "no such"])

    # A virtual dataset's strings lie in its sources' heaps: checked at open (--dry-run too).
    def vds(src2):
        lay = h5py.VirtualLayout(shape=(2 * n,), dtype=h5py.File(c)["data"].dtype)
        lay[:n] = h5py.VirtualSource(c, "data", shape=(n,))
        lay[n:] = h5py.VirtualSource(src2, "data", shape=(n,))
        with h5py.File(path("ds/v.h5"), "w") as h:
            h.create_virtual_dataset("data", lay)
        return path("ds/v.h5") + ":/data"

    check(scan_of(["--input", vds(path("ds/z.h5"))]) == want_c,
          "a virtual dataset of strings read wrong")
    bad = damaged(c, c_data, 7, 24, cases[0][1])
    for extra in [[], ["--dry-run"]]:
        refused(["--input", vds(bad)] + extra,
                ["bad.h5: dataset data: record 7:", "field 'key'", "no such object"])


def concurrent_updates():
    """Jobs that add to one KB at once (ingest --into K --output K, merge K X --output K;
    array jobs of a batch system, say) each read K and replaced it with their own result:
    all exit 0 and one job's records were lost. Now a job holds K's update lock (flock)
    from before it reads K until its result is in place, and the others wait, say so, and
    then read the result; a waiter stops on SIGTERM (exit 130, K unchanged). The lock is
    held here by this test, which meanwhile replaces K as a job would, and locks the new K
    as a later job would: the waiter must not go on with the lock of the K it first opened
    (a replaced file), and must read the K in place."""
    import fcntl

    ds = path("cu")
    os.makedirs(ds, exist_ok=True)
    for i, n in enumerate([300, 400, 500]):
        run(["gen", "--output", "%s/s%d.h5" % (ds, i), "--records", n, "--seed", 11 + i])
    for name, src in [("k.kb", 0), ("k2.kb", 1)]:
        run(["ingest", "--input", "%s/s%d.h5" % (ds, src), "--output", "%s/%s" % (ds, name),
             "--quiet"])
    run(["ingest", "--input", "%s/s2.h5" % ds, "--output", "%s/x.kb" % ds, "--quiet"])

    def keys(kb):
        p = run(["scan", kb])
        return sorted(p.stdout.split(b"\n"))

    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = "1"
    jobs = [["ingest", "--input", "%s/s2.h5" % ds, "--into", "k.kb", "--output", "k.kb",
             "--quiet"],
            ["merge", "k.kb", "x.kb", "--output", "k.kb", "--quiet"]]
    for args in jobs:
        shutil.copy("%s/k.kb" % ds, "%s/k.kb.orig" % ds)
        k = "%s/k.kb" % ds
        k2 = "%s/k2.kb" % ds
        want = sorted(set(keys(k2)) | set(keys("%s/x.kb" % ds)))
        held = open(k, "rb")
        fcntl.flock(held, fcntl.LOCK_EX)
        p = subprocess.Popen([PM] + args, cwd=ds, env=e, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        err = b""
        t = time.time()
        while time.time() - t < 30 and b"waiting" not in err:
            time.sleep(0.05)
            if p.poll() is not None:
                break
            os.set_blocking(p.stderr.fileno(), False)
            err += p.stderr.read() or b""
        check(b"waiting for k.kb: another job is replacing it" in err,
              "%s: no word of the wait: %r" % (args, err))
        check(p.poll() is None, "%s did not wait for the lock" % args)
        # the holder's result goes in place (k2 holds other records than k), and a job that
        # came after takes the new file's lock before the holder ends
        shutil.copy(k2, k + ".new")
        os.rename(k + ".new", k)
        later = open(k, "rb")
        fcntl.flock(later, fcntl.LOCK_EX)
        held.close()
        time.sleep(0.5)
        check(p.poll() is None, "%s went on with the lock of a replaced file" % args)
        later.close()
        os.set_blocking(p.stderr.fileno(), True)
        rest = p.communicate(timeout=60)[1]
        check(p.returncode == 0, "%s: exit %s: %r" % (args, p.returncode, rest))
        check(keys(k) == want, "%s: the result is not the KB in place with the input added"
              % args)
        # SIGTERM while waiting: exit 130, K unchanged, nothing left
        before = digest(k)
        with open(k, "rb") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            p = subprocess.Popen([PM] + args, cwd=ds, env=e, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            time.sleep(0.5)
            p.send_signal(signal.SIGTERM)
            rest = p.communicate(timeout=30)[1]
        check(p.returncode == 130, "%s, SIGTERM while waiting: exit %s: %r"
              % (args, p.returncode, rest))
        check(digest(k) == before, "%s, SIGTERM while waiting: changed the KB" % args)
        check(not [x for x in os.listdir(ds) if ".tmp." in x],
              "%s, SIGTERM while waiting: left %s" % (args, os.listdir(ds)))
        shutil.copy("%s/k.kb.orig" % ds, k)
    # three jobs at once, no lock held by the test: every record is kept
    procs = [subprocess.Popen([PM, "ingest", "--input", "%s/s%d.h5" % (ds, i), "--into",
                               "k.kb", "--output", "k.kb", "--quiet"], cwd=ds, env=e,
                              stderr=subprocess.DEVNULL) for i in (1, 2, 1)]
    check(all(p.wait(timeout=60) == 0 for p in procs), "concurrent --into jobs failed")
    want = sorted(set(keys("%s/k.kb.orig" % ds)) | set(keys("%s/k2.kb" % ds))
                  | set(keys("%s/x.kb" % ds)))
    check(keys("%s/k.kb" % ds) == want, "concurrent --into jobs lost records")


def limits_and_streams():
    """Batch-job limits and closed streams (an exploratory pass found each):
    - under ulimit -v, a 2-thread ingest deadlocked in jemalloc (a hung job that ignores
      SIGTERM) or crashed in some runs once mmap failed: now exit 6 with one line, or
      success with the right KB, at every limit;
    - under ulimit -f, writers died of SIGXFSZ (exit 153, no message; gen left its .tmp.
      file): now exit 4 naming the file, nothing left;
    - with stdout or stderr closed, the first file opened took descriptor 1 or 2 (progress
      lines went into the output file; --report /dev/stdout named a missing file, which a
      root run replaced): now the streams are held on /dev/full, and the report fails with
      exit 4."""
    e = dict(os.environ)
    asan = b"libasan" in subprocess.run(["ldd", PM], capture_output=True).stdout
    run(["gen", "--output", path("lim.h5"), "--records", 2000000, "--seed", 5])
    if not asan:  # AddressSanitizer reserves terabytes of address space: no ulimit -v
        for mb in [300, 340, 360, 380, 420, 450]:
            def limit(mb=mb):
                resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))

            out = path("lim.kb")
            try:
                p = subprocess.run([PM, "ingest", "--input", path("lim.h5"), "--output", out,
                                    "--threads", "2", "--quiet"], capture_output=True,
                                   preexec_fn=limit, timeout=120, env=e)
            except subprocess.TimeoutExpired:
                fail("ulimit -v %d MB: ingest hung" % mb)
                continue
            err = p.stderr.decode(errors="replace")
            if p.returncode == 0:
                n = run(["count", out]).stdout
                check(n == b"2000000\n", "ulimit -v %d MB: count %r" % (mb, n))
            else:
                check(p.returncode == 6 and err.count("\n") == 1 and "out of memory" in err,
                      "ulimit -v %d MB: exit %d: %s" % (mb, p.returncode, err[-300:]))
                check(not os.path.exists(out), "ulimit -v %d MB: left %s" % (mb, out))
            if os.path.exists(out):
                os.unlink(out)
            no_temp_files("ulimit -v %d MB" % mb)
        run(["ingest", "--input", path("lim.h5"), "--output", path("lim.kb"), "--quiet"])
        # started by the dynamic loader (ld.so pmingest ...), the restart under a limit
        # ran the loader with pmingest's arguments ("count: cannot open shared object")
        ld = [w for w in subprocess.run(["ldd", PM], capture_output=True).stdout.split()
              if b"/ld-linux" in w]
        if ld:
            p = subprocess.run([ld[0].decode(), PM, "count", path("lim.kb")],
                               capture_output=True, preexec_fn=lambda: resource.setrlimit(
                                   resource.RLIMIT_AS, (3 << 30, 3 << 30)), env=e)
            check(p.returncode == 0 and p.stdout == b"2000000\n",
                  "ld.so pmingest under ulimit -v: exit %d: %r" % (p.returncode, p.stderr))
        # export: an allocation that failed gave exit 6 with no message, and one inside
        # HDF5 exit 4 ("memory allocation failed for chunk"): now exit 6, one line
        for mb in [60, 70, 80, 90, 100, 120]:
            def limit(mb=mb):
                resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))

            p = subprocess.run([PM, "export", path("lim.kb"), "--output", path("lim2.h5"),
                                "--quiet"], capture_output=True, preexec_fn=limit,
                               timeout=120, env=e)
            err = p.stderr.decode(errors="replace")
            check(p.returncode == 0 or (p.returncode == 6 and err.count("\n") == 1),
                  "export under ulimit -v %d MB: exit %d: %r" % (mb, p.returncode, err))
            if p.returncode == 0:
                import h5py
                with h5py.File(path("lim2.h5"), "r") as f:
                    check(len(f["/data"]) == 2000000, "export under ulimit -v %d MB: %d "
                          "records" % (mb, len(f["/data"])))
            if os.path.exists(path("lim2.h5")):
                os.unlink(path("lim2.h5"))
            no_temp_files("export under ulimit -v %d MB" % mb)

    def fsize():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    # HDF5 1.10 keeps (leaks) the buffers of a file whose close failed (as in run())
    ef = dict(e, ASAN_OPTIONS=(e.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":"))
    for args, out in [(["gen", "--records", 200000, "--quiet"], "fz.h5"),
                      (["ingest", "--input", path("lim.h5"), "--quiet"], "fz.kb")]:
        p = subprocess.run([PM] + [str(a) for a in args] + ["--output", path(out)],
                           capture_output=True, preexec_fn=fsize, env=ef)
        err = p.stderr.decode(errors="replace")
        check(p.returncode == 4 and path(out) in err and "too large" in err,
              "%s past ulimit -f: exit %d: %s" % (args[0], p.returncode, err[-300:]))
        check(not os.path.exists(path(out)), "%s past ulimit -f: left its output" % args[0])
        no_temp_files("%s past ulimit -f" % args[0])
    # stderr closed: the KB is right; stdout closed: a report to it fails, exit 4
    run(["ingest", "--input", path("lim.h5"), "--output", path("ref.kb"), "--quiet"])
    p = subprocess.run([PM, "ingest", "--input", path("lim.h5"), "--output", path("se.kb")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e,
                       preexec_fn=lambda: os.close(2))
    check(p.returncode == 0 and digest("se.kb") == digest("ref.kb"),
          "stderr closed: exit %d or another KB" % p.returncode)
    p = subprocess.run([PM, "ingest", "--input", path("lim.h5"), "--output", path("so.kb"),
                        "--quiet", "--report", "/proc/self/fd/1"], stderr=subprocess.PIPE,
                       env=e, preexec_fn=lambda: os.close(1))
    check(p.returncode == 4 and b"report" in p.stderr,
          "a report to a closed stdout: exit %d: %r" % (p.returncode, p.stderr))
    # the plan of --dry-run lost on a full stdout was exit 0
    with open("/dev/full", "w") as full:
        p = subprocess.run([PM, "ingest", "--input", path("lim.h5"), "--output",
                            path("dr.kb"), "--dry-run"], stdout=full, stderr=subprocess.PIPE,
                           env=e)
    check(p.returncode == 4 and b"standard output" in p.stderr,
          "--dry-run to a full stdout: exit %d: %r" % (p.returncode, p.stderr))


def export_batches():
    """export wrote the first 65536 keys (one batch of its loop) and exited 0: the status of
    a batch's write ended the loop. Now every key, whatever the batch and chunk sizes: a
    KB of 3 batches and a bit, exported in both layouts and ingested back, scans the same,
    with int64 and with string values (a heap)."""
    import h5py
    n = 3 * 65536 + 17
    for vt in ["int64", "string"]:
        run(["gen", "--output", path("xb.h5"), "--records", n, "--value-type", vt,
             "--dup-ratio", 0.1, "--quiet"])
        run(["ingest", "--input", path("xb.h5"), "--output", path("xb.kb"), "--quiet"])
        keys = int(run(["count", path("xb.kb")]).stdout)
        ref = run(["scan", path("xb.kb")]).stdout
        for layout, opts in [("compound", ["--input", path("xo.h5")]),
                             ("pair", ["--input", path("xo.h5"), "--keys", "/keys",
                                       "--values", "/values"])]:
            for chunk in [[], ["--chunk", 1000]]:
                what = "export %s %s %s" % (vt, layout, chunk)
                run(["export", path("xb.kb"), "--output", path("xo.h5"), "--layout", layout,
                     "--quiet"] + chunk)
                with h5py.File(path("xo.h5"), "r") as f:
                    got = len(f["/data"] if layout == "compound" else f["/keys"])
                check(got == keys, "%s: %d records, the KB has %d" % (what, got, keys))
                run(["ingest", "--output", path("xr.kb"), "--quiet"] + opts)
                check(run(["scan", path("xr.kb")]).stdout == ref, "%s: ingested back, "
                      "differs" % what)


def truncated_while_read():
    """A KB truncated in place while a command read it (cp or a redirection over it, or a
    read error of a network file system) killed the command with SIGBUS (exit 135, no word
    of which file; export and merge left their temporary files). Now the command ends with
    exit 3 naming the KB, and puts no output in place."""
    import h5py
    run(["gen", "--output", path("tw.h5"), "--records", 1000000, "--quiet"])
    run(["ingest", "--input", path("tw.h5"), "--output", path("tw.kb"), "--quiet"])
    e = dict(os.environ, OMP_NUM_THREADS="2")

    def lost(p, err, what):
        check(p.returncode == 3 and "tv.kb: changed or unreadable while being read" in err,
              "%s: exit %d: %s" % (what, p.returncode, err[-400:]))

    # scan: blocked on a full pipe, then the KB cut to one page
    shutil.copy(path("tw.kb"), path("tv.kb"))
    p = subprocess.Popen([PM, "scan", path("tv.kb")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=e)
    p.stdout.read(4096)
    os.truncate(path("tv.kb"), 4096)
    out, err = p.communicate()
    lost(p, err.decode(errors="replace"), "scan of a KB cut while read")
    # cut inside its last page: no SIGBUS (the page reads zeros past the end), exit 0 with
    # wrong results before; and rewritten in place, same size
    for cut in [lambda: os.truncate(path("tv.kb"), os.path.getsize(path("tw.kb")) - 8),
                lambda: os.utime(path("tv.kb"))]:
        shutil.copy(path("tw.kb"), path("tv.kb"))
        p = subprocess.Popen([PM, "scan", path("tv.kb")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=e)
        p.stdout.read(4096)
        cut()
        out, err = p.communicate()
        lost(p, err.decode(errors="replace"), "scan of a KB changed in its last page")
    # writers: the KB cut as soon as it is mapped (the checksum pass reads all of it)
    for args, out in [(["export", path("tv.kb"), "--output", path("tv.h5")], "tv.h5"),
                      (["merge", path("tv.kb"), path("tw.kb"), "--output", path("tm.kb")],
                       "tm.kb"),
                      (["ingest", "--input", path("tw.h5"), "--into", path("tv.kb"),
                        "--output", path("tm.kb")], "tm.kb")]:
        shutil.copy(path("tw.kb"), path("tv.kb"))
        p = subprocess.Popen([PM] + args + ["--quiet"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=e)
        t = time.time() + 30
        while p.poll() is None and time.time() < t:
            try:
                with open("/proc/%d/maps" % p.pid) as f:
                    if path("tv.kb") in f.read():
                        os.truncate(path("tv.kb"), 4096)
                        break
            except OSError:
                pass
        err = p.communicate()[1].decode(errors="replace")
        if p.returncode == 0:  # done before the cut (a fast machine)
            check(os.path.exists(path(out)), "%s: exit 0, no output" % args[0])
            print("note: %s ended before the KB was cut" % args[0])
        else:
            lost(p, err, "%s of a KB cut while read" % args[0])
            check(not os.path.exists(path(out)), "%s of a KB cut: left %s" % (args[0], out))
        if os.path.exists(path(out)):
            os.unlink(path(out))
        no_temp_files("%s of a KB cut while read" % args[0])


def types_that_do_not_fit():
    """Found by an exploratory pass:
    - opaque keys (or values) of different sizes were joined by ingest, ingest --into and
      merge into one opaque type of the larger size, holding keys of the smaller: a KB that
      verify called corrupt and export refused. Now refused as types of different classes
      (exit 3), as integer keys of different widths are;
    - kb-build --value-type float16 kept its values unrounded (scan printed 1e+300 where
      export wrote inf); now rounded as HDF5 would store them;
    - export of kb-build's variable-length opaque values was exit 2 (bad command line); now
      exit 5 (content HDF5 cannot hold here), nothing written;
    - gen and export wrote 65536-record chunks for a 1-record dataset (1.5 MB);
    - floats of a layout other than IEEE 754's (bfloat16; 4 bytes with an 11-bit exponent)
      were read through IEEE float16/float32: 1e20 became inf or 9.97e19, exit 0; refused
      now (exit 3), while IEEE floats of either byte order still read."""
    import h5py
    import numpy as np
    for name, fields, size, bias in [("bf16", (15, 7, 8, 0, 7), 2, 127),
                                     ("cf32", (31, 20, 11, 0, 20), 4, 1023),
                                     ("be16", None, 2, None)]:
        t = h5py.h5t.IEEE_F16BE.copy() if fields is None else h5py.h5t.IEEE_F32LE.copy()
        if fields:
            t.set_fields(*fields)
            t.set_size(size)
            t.set_ebias(bias)
        with h5py.File(path(name + ".h5"), "w") as f:
            f["keys"] = np.array([0, 1, 2], "<i4")
            ds = h5py.h5d.create(f.id, b"values", t, h5py.h5s.create_simple((3,)))
            ds.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array([1.0, 1e20 if fields else 1e4, -2.5]),
                     mtype=h5py.h5t.NATIVE_DOUBLE)
        p = run(["ingest", "--input", path(name + ".h5"), "--keys", "/keys", "--values",
                 "/values", "--output", path(name + ".kb"), "--quiet"],
                expect=3 if fields else 0)
        if fields:
            check(b"other than IEEE 754" in p.stderr, "%s: %r" % (name, p.stderr))
        else:
            check(float(run(["scan", path(name + ".kb")]).stdout.split()[3]) == 1e4,
                  "a big-endian float16: %r" % run(["scan", path(name + ".kb")]).stdout)
    for w in (2, 3):
        with h5py.File(path("ok%d.h5" % w), "w") as f:
            f["keys"] = np.frombuffer(bytes(range(1, 1 + 2 * w)), dtype="V%d" % w)
            f["values"] = np.array([1, 2], dtype="i8")
        with h5py.File(path("ov%d.h5" % w), "w") as f:
            f["keys"] = np.array([w, w + 10], dtype="i8")
            f["values"] = np.frombuffer(bytes(range(1, 1 + 2 * w)), dtype="V%d" % w)
    pair = ["--keys", "/keys", "--values", "/values", "--quiet"]
    for x in ["ok", "ov"]:
        for w in (2, 3):
            run(["ingest", "--input", path("%s%d.h5" % (x, w)), "--output",
                 path("%s%d.kb" % (x, w))] + pair)
        for args in [["merge", path(x + "2.kb"), path(x + "3.kb")],
                     ["ingest", "--input", path(x + "2.h5"), "--input", path(x + "3.h5")] + pair,
                     ["ingest", "--input", path(x + "3.h5"), "--into", path(x + "2.kb")] + pair]:
            p = run(args + ["--output", path("mix.kb")], expect=3)
            check("differ" in p.stderr.decode(errors="replace") or "match" in
                  p.stderr.decode(errors="replace"), "%s, opaque sizes 2 and 3: %s"
                  % (args[0], p.stderr))
            check(not os.path.exists(path("mix.kb")), "%s of mixed opaque sizes: output"
                  % args[0])
    with open(path("f16.tsv"), "w") as f:
        f.write("a\t0.1\nb\t1e300\nc\t-65519\nd\t6e-8\ne\t1e-8\n")
    run(["kb-build", path("f16.tsv"), "--output", path("f16.kb"), "--value-type", "float16"])
    got = run(["scan", path("f16.kb")]).stdout.decode().split()[1::2]
    with np.errstate(over="ignore"):
        want = [np.float16(x) for x in [0.1, 1e300, -65519, 6e-8, 1e-8]]
        # scan prints the shortest text that reads back as the same float16
        check([np.float16(x) for x in got] == want and "inf" in got,
              "kb-build float16: %s, HDF5 holds %s" % (got, want))
    run(["export", path("f16.kb"), "--output", path("f16.h5"), "--quiet"])
    run(["ingest", "--input", path("f16.h5"), "--output", path("f16b.kb"), "--quiet"])
    check(run(["scan", path("f16b.kb")]).stdout == run(["scan", path("f16.kb")]).stdout,
          "kb-build float16: export and ingest back differ")
    with open(path("vo.tsv"), "w") as f:
        f.write("a\t0001\n")
    run(["kb-build", path("vo.tsv"), "--output", path("vo.kb"), "--value-type", "opaque"])
    p = run(["export", path("vo.kb"), "--output", path("vo.h5")], expect=5)
    check("opaque vlen" in p.stderr.decode(errors="replace"), "export opaque vlen: %s"
          % p.stderr)
    check(not os.path.exists(path("vo.h5")), "export opaque vlen: left an output")
    run(["gen", "--output", path("one.h5"), "--records", 1, "--quiet"])
    run(["ingest", "--input", path("one.h5"), "--output", path("one.kb"), "--quiet"])
    run(["export", path("one.kb"), "--output", path("one2.h5"), "--quiet"])
    for f in ["one.h5", "one2.h5"]:
        check(os.path.getsize(path(f)) < 100000, "%s of 1 record: %d bytes"
              % (f, os.path.getsize(path(f))))


def outputs_through_links():
    """Found by a newcomer's pass: --report /dev/stdout, with stdout sent to a file (every
    batch job's log), wrote the report to a temporary file renamed over the link: as root
    it replaced /dev/stdout with a regular file, and the log got nothing. Now the report
    goes through the stream, after what it holds. And an output named by a symbolic link
    (a KB on scratch space linked from a project directory) replaced the link with the new
    file: now the file the link points to is replaced (made, for a dangling link), and the
    link stays. A replaced report or HDF5 output lost its permissions (0600 became 0644)."""
    import json
    run(["gen", "--output", path("ol.h5"), "--records", 1000, "--quiet"])
    so = path("so")  # this test's own /dev/stdout: never the system's
    os.symlink("/proc/self/fd/1", so)
    with open(path("log.txt"), "w") as f:
        f.write("before\n")
    with open(path("log.txt"), "a") as log:
        p = subprocess.run([PM, "ingest", "--input", path("ol.h5"), "--output",
                            path("ol.kb"), "--report", so], stdout=log,
                           stderr=subprocess.PIPE)
    check(p.returncode == 0, "--report to stdout in a file: exit %d: %s"
          % (p.returncode, p.stderr))
    check(os.path.islink(so), "--report to stdout in a file replaced the link")
    with open(path("log.txt")) as f:
        text = f.read()
    check(text.startswith("before\ningested 1000 records"), "log: %r" % text[:200])
    try:
        rep = json.loads(text[text.index("{"):])
        check(rep["records"] == 1000, "the report in the log: %r" % rep)
    except ValueError:
        fail("no report in the log: %r" % text)
    os.makedirs(path("real"), exist_ok=True)
    for name in ["r.kb", "r.json", "r.h5", "g.h5", "m.kb"]:
        with open(path("real/" + name), "w") as f:
            f.write("old\n")
        os.symlink("real/" + name, path("l" + name))
    run(["ingest", "--input", path("ol.h5"), "--output", path("lr.kb"), "--report",
         path("lr.json"), "--quiet"])
    run(["export", path("lr.kb"), "--output", path("lr.h5"), "--quiet"])
    run(["gen", "--output", path("lg.h5"), "--records", 10, "--quiet"])
    run(["merge", path("lr.kb"), path("ol.kb"), "--output", path("lm.kb"), "--quiet"])
    for name in ["r.kb", "r.json", "r.h5", "g.h5", "m.kb"]:
        check(os.path.islink(path("l" + name)), "output link l%s replaced" % name)
        check(os.path.getsize(path("real/" + name)) > 4, "real/%s not written" % name)
    check(run(["count", path("real/r.kb")]).stdout == b"1000\n", "the linked KB")
    # a dangling link: its file is made (the link was replaced); chains of links
    os.symlink("real/new.kb", path("dangling.kb"))
    os.symlink("dangling.kb", path("chain.kb"))
    run(["merge", path("ol.kb"), "--output", path("chain.kb"), "--quiet"])
    check(os.path.islink(path("dangling.kb")) and os.path.islink(path("chain.kb")) and
          run(["count", path("real/new.kb")]).stdout == b"1000\n", "dangling output link")
    # a replaced report or HDF5 file keeps its permissions, as a KB does (became 0644)
    for name, args in [("p.json", ["ingest", "--input", path("ol.h5"), "--output",
                                   path("p.kb"), "--report", path("p.json")]),
                       ("p.h5", ["gen", "--output", path("p.h5"), "--records", 5])]:
        with open(path(name), "w") as f:
            f.write("old\n")
        os.chmod(path(name), 0o600)
        run(args + ["--quiet"])
        mode = os.stat(path(name)).st_mode & 0o777
        check(mode == 0o600 and os.path.getsize(path(name)) > 4, "%s: mode %o" % (name, mode))
    no_temp_files("outputs through links")
    # a link planted at the temporary name (NAME.tmp.PID, predictable in a shared
    # directory): the report and gen truncated and wrote its target
    with open(path("victim"), "w") as f:
        f.write("precious\n")
    for cmd in ['ln -s victim pl.json.tmp.$$ && exec "$0" ingest --input ol.h5 --output '
                'pl.kb --report pl.json --quiet',
                'ln -s victim pl.h5.tmp.$$ && exec "$0" gen --output pl.h5 --records 5 '
                '--quiet']:
        p = subprocess.run(["bash", "-c", cmd, PM], cwd=WORK, capture_output=True)
        check(p.returncode == 0, "planted link: %s: %r" % (cmd, p.stderr))
        with open(path("victim"), "rb") as f:
            check(f.read() == b"precious\n", "planted link: the target was written (%s)"
                  % cmd)
    for x in os.listdir(WORK):  # the planted links (not pmingest's)
        if x.startswith("pl.") and ".tmp." in x:
            os.unlink(path(x))
    # a loop of links as an output was replaced by the output (as if nothing were there)
    os.symlink("loopb", path("loopa"))
    os.symlink("loopa", path("loopb"))
    for args in [["ingest", "--input", path("ol.h5"), "--output", path("loopa")],
                 ["ingest", "--input", path("ol.h5"), "--output", path("lo.kb"), "--report",
                  path("loopa")],
                 ["gen", "--output", path("loopa"), "--records", 5]]:
        p = run(args + ["--quiet"], expect=4)
        check(b"symbolic links" in p.stderr, "%s into a loop of links: %r" % (args[0], p.stderr))
        check(os.path.islink(path("loopa")) and os.path.islink(path("loopb")),
              "%s replaced a link of a loop" % args[0])


def names_and_globs():
    """Found by a pass in a hostile environment:
    - an output name of 240-255 bytes (valid) failed, after all the work for a KB: its
      temporary file's name (.NAME.tmp.PID) passed NAME_MAX. Now the temporary name keeps
      at most 200 bytes of the output's;
    - --input was globbed again: a file named 'x[1].h5' (as a shell expands it) read x1.h5
      instead, exit 0. A name that exists is now taken as it is;
    - --output or --report over the -c config file, and gen --output over its --words
      list, replaced them (exit 0): now refused, exit 2;
    - a file name that is not UTF-8 made the report and stats --json invalid JSON."""
    d = path("nm")
    os.makedirs(d, exist_ok=True)
    long = "n" * 250
    run(["gen", "--output", "%s/%s.h5" % (d, long[:247]), "--records", 100, "--quiet"])
    run(["ingest", "--input", "%s/%s.h5" % (d, long[:247]), "--output",
         "%s/%s.kb" % (d, long[:252]), "--report", "%s/%s.js" % (d, long[:252]), "--quiet"])
    run(["export", "%s/%s.kb" % (d, long[:252]), "--output", "%s/%s.h5" % (d, long[:252]),
         "--quiet"])
    run(["merge", "%s/%s.kb" % (d, long[:252]), "--output", "%s/m%s.kb" % (d, long[:251]),
         "--quiet"])
    check(run(["count", "%s/m%s.kb" % (d, long[:251])]).stdout == b"100\n",
          "outputs of 255-byte names")
    run(["gen", "--output", "%s/x[1].h5" % d, "--records", 10, "--seed", 5, "--quiet"])
    run(["gen", "--output", "%s/x1.h5" % d, "--records", 20, "--seed", 6, "--quiet"])
    for spec, n in [("x[1].h5", 10), ("x[0-9].h5", 20), ("x*.h5", 30)]:
        run(["ingest", "--input", "%s/%s" % (d, spec), "--output", path("g.kb"), "--quiet"])
        got = run(["count", path("g.kb")]).stdout
        check(got == b"%d\n" % n, "--input %s: %r keys, expected %d" % (spec, got, n))
    with open(path("self.ini"), "w") as f:
        f.write("input = %s/x1.h5\noutput = %s\n" % (d, path("self.ini")))
    with open(path("self2.ini"), "w") as f:
        f.write("input = %s/x1.h5\noutput = %s\nreport = %s\n"
                % (d, path("s2.kb"), path("self2.ini")))
    with open(path("w.txt"), "w") as f:
        f.write("alpha\nbeta\n")
    for args, keep in [(["ingest", "-c", path("self.ini")], "self.ini"),
                       (["ingest", "-c", path("self2.ini")], "self2.ini"),
                       (["gen", "--output", path("w.txt"), "--records", 10, "--key-kind",
                         "words", "--words", path("w.txt")], "w.txt")]:
        before = digest(keep)
        run(args + ["--quiet"], expect=2)
        check(digest(keep) == before, "%s replaced %s" % (args[0], keep))
    # a file name that is not UTF-8: the report and stats --json were not JSON (raw bytes)
    import json
    bad = os.path.join(d.encode(), b"bad\xff.h5")
    shutil.copy(os.path.join(d, "x1.h5").encode(), bad)
    p = subprocess.run([PM.encode(), b"ingest", b"--input", bad, b"--output",
                        path("bad.kb").encode(), b"--report", path("bad.json").encode(),
                        b"--quiet"], capture_output=True)
    check(p.returncode == 0, "non-UTF-8 input name: exit %d %r" % (p.returncode, p.stderr))
    try:
        with open(path("bad.json"), "rb") as f:
            rep = json.loads(f.read().decode("utf-8"))
        check(rep["inputs"][0].endswith("bad\ufffd.h5"), "report inputs %r" % rep["inputs"])
        st = json.loads(run(["stats", path("bad.kb"), "--json"]).stdout.decode("utf-8"))
        check("bad\ufffd.h5" in st["inputs"][0]["name"], "stats inputs %r" % st["inputs"])
    except (ValueError, KeyError, IndexError) as e:
        fail("non-UTF-8 input name: JSON: %s" % e)
    # a newline in a name made a two-line error
    for args in [["count", path("no\nsuch.kb")], ["merge", path("no\nsuch.kb"), "--output",
                                                   path("nl.kb")]]:
        p = run(args, expect=3)
        check(p.stderr.count(b"\n") == 1, "%s: %r" % (args[0], p.stderr))
    no_temp_files("names and globs")


def report_before_kb():
    """Found by a pass in a hostile environment: the report was written after the KB was
    put in place, so a report that could not be written (a full disk, another user's file
    of its name in a sticky directory) gave exit 4 with the KB already replaced: a retry of
    the failed --into job counted its records twice. Now the report is written (flushed)
    before the KB is renamed into place, and names that cannot be replaced are refused
    before the run."""
    run(["gen", "--output", path("rb.h5"), "--records", 1000, "--quiet"])
    run(["ingest", "--input", path("rb.h5"), "--output", path("rb.kb"), "--quiet"])
    before = digest("rb.kb")
    # the report named as the KB's temporary file (.K beside K): the KB's rename removed the
    # staged report, exit 4 with the KB in place (or, without O_TMPFILE, the report
    # renamed over the KB)
    for extra in [[], ["--into", path("rb.kb")]]:
        run(["ingest", "--input", path("rb.h5"), "--output", path("rb.kb"), "--report",
             path(".rb.kb"), "--quiet"] + extra)
        check(os.path.exists(path(".rb.kb")) and run(["count", path("rb.kb")]).stdout ==
              b"1000\n", "report .K beside the KB K %s" % extra)
    before = digest("rb.kb")
    mnt = path("rbmnt")
    os.makedirs(mnt, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt],
                      capture_output=True).returncode == 0:
        try:
            with open(os.path.join(mnt, "fill"), "wb") as f:
                try:
                    f.write(b"\0" * 65536)
                except OSError:
                    pass
            p = run(["ingest", "--input", path("rb.h5"), "--into", path("rb.kb"), "--output",
                     path("rb.kb"), "--report", os.path.join(mnt, "r.json"), "--quiet"],
                    expect=4)
            check(b"r.json" in p.stderr, "report on a full disk: %r" % p.stderr)
            check(digest("rb.kb") == before, "report on a full disk: the KB was replaced")
            check(os.listdir(mnt) == ["fill"], "full disk: left %s" % os.listdir(mnt))
        finally:
            subprocess.run(["umount", mnt])
    else:
        print("note: no tmpfs mount here: the full-disk report case is not run")
    st = path("sticky")
    os.makedirs(st, exist_ok=True)
    os.chmod(st, 0o1777)
    shutil.copy(path("rb.h5"), os.path.join(st, "in.h5"))
    os.chmod(os.path.join(st, "in.h5"), 0o644)
    for name in ["run.json", "taken.kb"]:
        with open(os.path.join(st, name), "w") as f:
            f.write("root's\n")
        os.chmod(os.path.join(st, name), 0o666)
    nobody = NOBODY + [PM]
    if nobody_can_run(path("rb.h5")):
        p = subprocess.run(nobody + ["ingest", "--input", os.path.join(st, "in.h5"), "--output",
                                     os.path.join(st, "run.kb"), "--quiet"], capture_output=True)
        check(p.returncode == 0, "ingest as nobody: %r" % p.stderr)
        kb = os.path.join(st, "run.kb")
        with open(kb, "rb") as f:
            was = f.read()
        for extra, out in [(["--into", kb, "--report", os.path.join(st, "run.json")], kb),
                           ([], os.path.join(st, "taken.kb"))]:
            p = subprocess.run(nobody + ["ingest", "--input", os.path.join(st, "in.h5"),
                                         "--output", out, "--quiet"] + extra,
                               capture_output=True)
            check(p.returncode == 4 and b"sticky directory" in p.stderr,
                  "another user's file in a sticky directory: exit %d: %r"
                  % (p.returncode, p.stderr))
        with open(kb, "rb") as f:
            check(f.read() == was, "sticky directory: the KB was replaced")
        # a link in the sticky directory to a file elsewhere: that file's directory decides
        # (the writer checked the link's and refused after the run)
        ww = path("ww")
        os.makedirs(ww, exist_ok=True)
        os.chmod(ww, 0o777)
        with open(os.path.join(ww, "t.kb"), "w") as f:
            f.write("root's\n")
        os.chmod(os.path.join(ww, "t.kb"), 0o666)
        os.symlink(os.path.join(ww, "t.kb"), os.path.join(st, "lnk.kb"))
        p = subprocess.run(nobody + ["ingest", "--input", os.path.join(st, "in.h5"), "--output",
                                     os.path.join(st, "lnk.kb"), "--quiet"], capture_output=True)
        check(p.returncode == 0, "a sticky directory's link to a free file: exit %d: %r"
              % (p.returncode, p.stderr))
    else:
        print("note: nobody cannot run %s here: the sticky directory case is not run" % PM)
    no_temp_files("report before the KB")


def few_threads():
    """Under ulimit -u (RLIMIT_NPROC; root is not bound by it) a run of 4 threads ended with
    libgomp's 'Thread creation failed' and exit 1, the status of a key not found. Now the
    run probes the threads it can start, says so, and runs with fewer: the same KB."""
    d = path("np")
    os.makedirs(d, exist_ok=True)
    run(["gen", "--output", path("np/in.h5"), "--records", 20000, "--quiet"])
    run(["ingest", "--input", path("np/in.h5"), "--output", path("np/ref.kb"), "--quiet"])
    os.chown(d, 65534, 65534)
    if not nobody_can_run(path("np/in.h5")):
        print("note: nobody cannot run %s here: ulimit -u is not tried" % PM)
        return
    for env in [["--threads", "4"], []]:
        p = subprocess.run(NOBODY + ["bash", "-c", 'ulimit -u 3; OMP_NUM_THREADS=4 exec "$@"',
                                     "sh", PM, "ingest", "--input", path("np/in.h5"),
                                     "--output", path("np/o.kb"), "--quiet"] + env,
                           capture_output=True)
        err = p.stderr.decode(errors="replace")
        check(p.returncode == 0 and "running with" in err,
              "ulimit -u 3 %s: exit %d: %s" % (env, p.returncode, err[-300:]))
        if p.returncode == 0:
            check(run(["scan", path("np/o.kb")]).stdout == run(["scan", path("np/ref.kb")]).stdout,
                  "ulimit -u 3 %s: another KB" % env)


def thread_counts():
    """Found by a pass in a hostile environment: OMP_NUM_THREADS past 2^31 ran one thread
    without a word (libgomp reads it as 1; past 4096 is refused), OMP_THREAD_LIMIT=1 made
    the report say the threads asked for, and --help to a full stdout exited 0."""
    import json
    run(["gen", "--output", path("tc.h5"), "--records", 1000, "--quiet"])
    for n in ["5000", "3000000000"]:
        p = run(["ingest", "--input", path("tc.h5"), "--output", path("tc.kb"), "--quiet"],
                expect=2, env={"OMP_NUM_THREADS": n})
        check(b"OMP_NUM_THREADS" in p.stderr, "OMP_NUM_THREADS=%s: %r" % (n, p.stderr))
    run(["ingest", "--input", path("tc.h5"), "--output", path("tc.kb"), "--threads", 4,
         "--report", path("tc.json"), "--quiet"], env={"OMP_THREAD_LIMIT": "1"})
    with open(path("tc.json")) as f:
        t = json.load(f)["threads"]
    check(t == 1, "OMP_THREAD_LIMIT=1: the report says %d threads" % t)
    with open("/dev/full", "w") as full:
        for args in [["--help"], ["ingest", "--help"], ["count", path("tc.kb")]]:
            p = subprocess.run([PM] + args, stdout=full, stderr=subprocess.PIPE)
            check(p.returncode == 4, "%s to a full stdout: exit %d" % (args, p.returncode))


def long_names():
    """A message about a file of a long name (thousands of bytes, in directories with UTF-8
    names) used to be cut at the end of its buffer, reason and all ("pmingest ingest:
    /dir/dir/...dir/ddd" and no more): now the middle of the line gives way, cut between
    characters, and the line still ends with what is wrong."""
    d = path("ln")
    for i in range(24):
        d = os.path.join(d, "r\u00e9pertoire-%02d-%s" % (i, "x" * 100))
    os.makedirs(d)
    h5, kb = os.path.join(d, "in.h5"), os.path.join(d, "o.kb")
    run(["gen", "--output", h5, "--records", 1000, "--seed", 1])
    run(["ingest", "--input", h5, "--output", kb, "--quiet"])
    bad = os.path.join(d, "bad.kb")
    with open(kb, "rb") as f, open(bad, "wb") as g:
        g.write(f.read()[:100])
    out = os.path.join(d, "x.kb")
    cases = [
        (["ingest", "--input", os.path.join(d, "missing.h5"), "--output", out], 3,
         "/missing.h5: dataset /data: cannot open: No such file or directory"),
        (["ingest", "--input", h5 + ":/nope", "--output", out], 3,
         "/in.h5: dataset /nope: not found"),
        (["ingest", "--input", h5, "--key-field", "zz", "--output", out], 3,
         "has no field 'zz' (its fields: key, value)"),
        (["ingest", "--input", h5, "--input", h5, "--on-duplicate", "error", "--output", out],
         5, "/in.h5:/data#0"),
        (["verify", bad], 3, "/bad.kb: truncated KB file (100 bytes, header needs 256)"),
        (["merge", kb, "--output", os.path.join(d, "no", "m.kb")], 4,
         "/no: No such file or directory"),
        (["ingest", "--input", h5, "--output", out, "--report", os.path.join(d, "no", "r.json")],
         4, "/r.json: cannot write the report (No such file or directory)"),
    ]
    for args, status, end in cases:
        err = run(args, expect=status).stderr
        check(err.count(b"\n") == 1 and err.endswith(b"\n"), "%s: not one line" % args[0])
        try:
            line = err.decode("utf-8").rstrip("\n")
        except UnicodeDecodeError:
            fail("%s: the message is not UTF-8 (cut inside a character)" % args[0])
            continue
        check(line.endswith(end), "%s %s: the message lost its end: ...%s" % (
            args[0], args[1], line[-160:]))
        check("x..." in line or "...x" in line or "\u00e9..." in line or "...r" in line,
              "%s: no cut in the middle of the name: %s" % (args[0], line[:160]))
    check(not os.path.exists(out), "a failed run left %s" % out)


def signed_counts():
    """A count given as " -1" (a space before the sign, as a quoted config value or a shell
    variable can hold) passed the parsers' check of the first character and strtoull made it
    2^64 - 1: `gen --records " -1"` wrote until the disk was full, --memory " -1" was a budget
    of 16 EiB, scan --limit " -1" no limit, `get` of the uint64 key " -1" found key 2^64 - 1.
    Now every count is digits only; OMP_NUM_THREADS=-1 is libgomp's to warn about."""
    h5, kb = path("sc.h5"), path("sc.kb")
    run(["gen", "--output", h5, "--records", 100, "--seed", 2])
    run(["ingest", "--input", h5, "--output", kb, "--quiet"])
    out = path("sc-out")
    with open(path("sc.tsv"), "w") as f:
        f.write("5\t3\n18446744073709551615\t4\n")
    for args in (["gen", "--output", out, "--records", " -1"],
                 ["gen", "--output", out, "--records", "+10"],
                 ["demo", "--dir", out, "--records", " -1"],
                 ["ingest", "--input", h5, "--output", out, "--memory", " -1"],
                 ["ingest", "--input", h5, "--output", out, "--memory", "-1G"],
                 ["ingest", "--input", h5, "--output", out, "--batch-records", " -1"],
                 ["ingest", "--input", h5, "--output", out, "--partitions", " 8"],
                 ["scan", kb, "--limit", " -1"],
                 ["kb-build", "--output", out, "--seed", "0x10", path("sc.tsv")]):
        p = run(args, expect=2, fsize=1 << 24, timeout=60)
        check(p.stderr.count(b"\n") == 1 and b"'" in p.stderr,
              "%s: not one line naming the value: %r" % (args, p.stderr[-300:]))
        check(not os.path.exists(out), "%s left %s" % (args, out))
    with open(path("sc.ini"), "w") as f:
        f.write('[ingest]\nmemory = " -1"\n')
    run(["ingest", "-c", path("sc.ini"), "--input", h5, "--output", out], expect=2)
    ukb = path("sc-u.kb")
    run(["kb-build", "--key-type", "uint64", "--value-type", "uint64", "--output", ukb,
         path("sc.tsv")])
    check(run(["get", ukb, "18446744073709551615"]).stdout.strip() == b"4", "get of 2^64-1")
    run(["get", ukb, " -1"], expect=2)
    with open(path("sc2.tsv"), "w") as f:
        f.write("5\t -1\n")
    run(["kb-build", "--key-type", "uint64", "--value-type", "uint64", "--output", out,
         path("sc2.tsv")], expect=3)
    check(not os.path.exists(out), "kb-build of a bad value left %s" % out)
    p = run(["ingest", "--input", h5, "--output", out, "--quiet"], env={"OMP_NUM_THREADS": "-1"})
    check(b"at most" not in p.stderr, "OMP_NUM_THREADS=-1 called too many threads")
    os.unlink(out)


def help_pages():
    """`pmingest help CMD` printed the list of commands, not CMD's page; options that the
    commands take were missing from their pages (--no-sync of merge, intersect, subtract and
    kb-build; --check of export); --threads above OMP_THREAD_LIMIT was cut without a word."""
    for cmd in ["ingest", "demo", "gen", "get", "scan", "count", "stats", "export", "merge",
                "intersect", "subtract", "verify", "kb-build"]:
        a, b, c = run(["help", cmd]), run([cmd, "--help"]), run([cmd, "-h"])
        check(a.stdout == b.stdout == c.stdout and
              a.stdout.startswith(b"usage: pmingest " + cmd.encode()),
              "pmingest help %s, %s --help and -h differ: %r" % (cmd, cmd, a.stdout[:80]))
    check(b"unknown command 'nope'" in run(["help", "nope"], expect=2).stderr, "help nope")
    for cmd in ["merge", "intersect", "subtract", "kb-build"]:
        check(b"--no-sync" in run([cmd, "--help"]).stdout, "%s --help: no --no-sync" % cmd)
    check(b"--check" in run(["export", "--help"]).stdout, "export --help: no --check")
    h5 = path("hp.h5")
    run(["gen", "--output", h5, "--records", 100])
    p = run(["ingest", "--input", h5, "--output", path("hp.kb"), "--threads", 2, "--dry-run"],
            env={"OMP_THREAD_LIMIT": "1"})
    check(b"OMP_THREAD_LIMIT=1" in p.stderr, "--threads over OMP_THREAD_LIMIT: no warning")
    # a usage error says where help is; gen takes --opt=VALUE as the other commands do;
    # an empty --input is a usage error (it was exit 3, ": dataset /data: cannot open")
    for cmd in ["get", "scan", "count", "stats", "verify", "export"]:
        check(b"--help" in run([cmd], expect=2).stderr, "%s: usage without --help" % cmd)
    run(["gen", "--output=" + path("hp2.h5"), "--records=100"])
    check(digest("hp.h5") == digest("hp2.h5"), "gen --records=100 is not gen --records 100")
    p = run(["demo", "--records"], expect=2)
    check(b"--records needs a value" in p.stderr, "demo --records: %r" % p.stderr)
    p = run(["ingest", "--input", "", "--output", path("hp.kb")], expect=2)
    check(b"'input' needs a non-empty value" in p.stderr, "--input '': %r" % p.stderr)


def integer_prefixes():
    """`count KB 5` of a KB of integer keys counted the keys whose first byte is '5' (0x35),
    not those of the decimal 5 (0 of them, exit 0): a PREFIX of integer keys is refused and
    --prefix-hex named."""
    tsv, kb = path("ip.tsv"), path("ip.kb")
    with open(tsv, "w") as f:
        f.write("".join("%d\t%d\n" % (k, k) for k in [5, 6, 0x35000000, 300]))
    run(["kb-build", "--key-type", "uint32", "--output", kb, tsv])
    for cmd in ["count", "scan"]:
        p = run([cmd, kb, "5"], expect=2)
        check(b"integer keys (uint32" in p.stderr and b"--prefix-hex" in p.stderr,
              "%s of an integer prefix: %r" % (cmd, p.stderr))
    check(run(["count", kb, "--prefix-hex", "000001"]).stdout == b"1\n", "count --prefix-hex")
    check(run(["count", kb, "--prefix-hex", "35"]).stdout == b"1\n", "count --prefix-hex 35")
    p = run(["count", kb, "--prefix-hex", "0"], expect=2)
    check(b"two digits a byte" in p.stderr, "an odd --prefix-hex: %r" % p.stderr)


def early_signals():
    """Commands caught SIGINT and SIGTERM only once they began their work: a signal in
    their first milliseconds (export: during the check of a big KB's checksums), or at any
    time in the commands that only read (scan, verify, ...), ended the process by the signal
    (status 143), not with the documented 130. SIGHUP (a closed ssh session) was not caught
    at all: gen and export left their named temporary file. demo stopped while it generated
    or ingested left its temporary directory; it takes TMPDIR now."""
    kb = path("es.kb")
    run(["gen", "--output", path("es.h5"), "--records", 300000, "--key-kind", "random"])
    run(["ingest", "--input", path("es.h5"), "--output", kb, "--quiet"])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        # scan blocks on a pipe nobody reads, its first 64 KiB written
        p = subprocess.Popen([PM, "scan", kb], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)
        p.send_signal(sig)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
        check(p.returncode == 130, "scan, signal %d: status %d, expected 130" % (sig, p.returncode))
    rc, err = stop_when_started(["gen", "--output", path("hup.h5"), "--records", 50000000],
                                "hup.h5.tmp.", signal.SIGHUP)
    check(rc == 130 and not os.path.exists(path("hup.h5")), "gen, SIGHUP: exit %d: %s" % (rc, err))
    no_temp_files("gen stopped by SIGHUP")
    # under nohup (SIGHUP ignored) a SIGHUP changes nothing
    p = subprocess.Popen([PM, "gen", "--output", path("nohup.h5"), "--records", "2000000"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    t = time.time()
    while p.poll() is None and time.time() - t < 30 and not [
            f for f in os.listdir(WORK) if f.startswith("nohup.h5.tmp.")]:
        time.sleep(0.01)
    check(p.poll() is None, "gen under nohup: finished before the signal could be sent")
    p.send_signal(signal.SIGHUP)
    check(p.wait(timeout=120) == 0 and os.path.exists(path("nohup.h5")),
          "gen under nohup stopped by SIGHUP (status %s)" % p.returncode)
    td = path("tmpd")
    os.makedirs(td)
    e = dict(os.environ, TMPDIR=td, OMP_NUM_THREADS="1")
    for pattern in ("demo.h5.tmp.", "demo.h5"):  # while it generates, then while it ingests
        p = subprocess.Popen([PM, "demo", "--records", "3000000"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=e)
        t = time.time()
        while p.poll() is None and time.time() - t < 60:
            if any(f == pattern or (pattern.endswith(".") and f.startswith(pattern))
                   for _, _, fs in os.walk(td) for f in fs):
                break
            time.sleep(0.01)
        p.send_signal(signal.SIGINT)
        check(p.wait(timeout=120) == 130, "demo, SIGINT at %s: status %d" % (pattern, p.returncode))
        check(os.listdir(td) == [], "demo, SIGINT at %s: left %s" % (pattern, os.listdir(td)))


def long_records():
    """export converted 262144 records at a time whatever their size: 7 records of 100 KiB
    fixed strings asked for 52 GB (exit 6 under ulimit -v, an abort under AddressSanitizer).
    Now a slice holds at most 64 MiB of records; the file reads back the same."""
    import h5py
    import numpy as np
    a = np.zeros(7, dtype=[("key", "S102400"), ("value", "S102400")])
    for i in range(7):
        a["key"][i] = b"k%d" % i + b"x" * 1000
        a["value"][i] = b"v" * 50000
    with h5py.File(path("lr.h5"), "w") as f:
        f["data"] = a
    run(["ingest", "--input", path("lr.h5"), "--output", path("lr.kb"), "--quiet"])
    asan = b"libasan" in subprocess.run(["ldd", PM], capture_output=True).stdout
    p = subprocess.run([PM, "export", path("lr.kb"), "--output", path("lr2.h5"), "--quiet"],
                       capture_output=True, timeout=300,
                       preexec_fn=None if asan else lambda: resource.setrlimit(
                           resource.RLIMIT_AS, (3 << 30, 3 << 30)))
    check(p.returncode == 0, "export of 100 KiB records: exit %d: %r" % (p.returncode, p.stderr))
    run(["ingest", "--input", path("lr2.h5"), "--output", path("lr2.kb"), "--quiet"])
    check(run(["scan", path("lr.kb")]).stdout == run(["scan", path("lr2.kb")]).stdout,
          "export of 100 KiB records: not the KB's records")


def main():
    steps = [hdf5_write_fails, same_field, outputs_over_inputs, outputs_checked_first,
             config_files, export_dataset, export_batches, gen_interrupted, empty_output, ignored_options,
             fifos, replaced_mode, special_outputs, busy_inputs, stored_elsewhere,
             damaged_strings, concurrent_updates, limits_and_streams, truncated_while_read,
             types_that_do_not_fit, outputs_through_links, names_and_globs,
             report_before_kb, few_threads, thread_counts, long_names, signed_counts,
             help_pages, integer_prefixes, early_signals, long_records]
    only = sys.argv[3:]  # step names to run (all by default)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    for step in steps:
        if only and step.__name__ not in only:
            continue
        os.chdir(WORK)
        step()
        print("%s done" % step.__name__, flush=True)
    if failures:
        print("%d failures" % failures)
        sys.exit(1)
    print("all command-line edge checks passed")


main()
