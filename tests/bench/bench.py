#!/usr/bin/env python3
# writewatch's benchmark suite (`make bench`, issue 5): every figure is measured side by side in
# the same run against its baseline, as the median of REPS rounds with min and max, and written
# to results.json (machine-readable) and results.md (the table), then printed.
#   BENCH_QUICK=1  tiny sizes, one round: proves the suite works (tests/test_bench.py), no figure
#                  means anything
#   BENCH_OUT=DIR  where results.json/.md go (default build/bench)
#   BENCH_REPS=N   rounds in full mode (default 5, at least 5)
#   BENCH_ITEMS=1,4 run only these items (for diagnosis; the files then hold only those)
# Standard library only. The C programs (tests/bench/b_*.c) print one JSON object per line.
import datetime
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(ROOT, "build")
BIN = os.path.join(BUILD, "bench")
LIB = os.path.join(BUILD, "libwritewatch.so")
QUICK = os.environ.get("BENCH_QUICK", "") == "1"
OUT = os.path.abspath(os.environ.get("BENCH_OUT") or BIN)
REPS = 1 if QUICK else max(5, int(os.environ.get("BENCH_REPS", "5")))
ITEMS = {int(x) for x in os.environ.get("BENCH_ITEMS", "").split(",") if x.strip()}
PY = os.path.realpath(sys.executable)  # the interpreter itself, not a pyenv shell shim
MB = 1000 * 1000

# The targets of issue 5: (operator, value). None: no target, shown for comparison.
TARGETS = {
    "write_vs_raw": ("<=", 1.10),
    "mprotect_vs_write": (">=", 6.0),
    "first_touch": ("<=", 1.05),
    "thp_kept": (">=", 1.0),
    "mmap_pair": ("<=", 1.5),
    "scan_rate": (">=", 0.5),
    "vmpte_kb": ("<", 1024),
    "setup_ms": ("<", 10.0),
    "idle_ms": ("<", 5.0),
    "prog_exit": ("<=", 1.05),
    "prog_100ms": ("<=", 1.15),
    "size_flat": ("<=", 2.0),
    "regions_linear": ("<=", 2.0),
}


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---- running things ----

WORK = None  # per-run scratch directory under OUT
LIB_COPY = None  # the library measured: a private copy, so a rebuild mid-run changes nothing


def base_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WRITEWATCH_") and k not in ("LD_PRELOAD", "BENCH_QUICK")}
    env["LC_ALL"] = "C"
    return env


def ww_env(outdir, extra=None):
    env = base_env()
    env["LD_PRELOAD"] = LIB_COPY
    env["WRITEWATCH_OUTPUT"] = os.path.join(outdir, "ww.%e.%p.jsonl")
    env.update(extra or {})
    return env


def scratch():
    return tempfile.mkdtemp(dir=WORK)


def run_c(prog, args, mode, timeout=600):
    """Run tests/bench/<prog> in a mode; returns (JSON records it printed, output dir or None).
    ww runs get their own output directory, which the caller removes with done()."""
    outdir = scratch() if mode == "ww" else None
    env = ww_env(outdir) if mode == "ww" else base_env()
    argv = [os.path.join(BIN, prog), mode] + [str(a) for a in args]
    p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, cwd=outdir or WORK)
    if p.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.decode()[-2000:]}")
    recs = [json.loads(l) for l in p.stdout.decode().splitlines() if l.startswith("{")]
    if mode == "ww":
        check_tracked(outdir, argv)
    return recs, outdir


def done(outdir):
    if outdir:
        shutil.rmtree(outdir, ignore_errors=True)


def ww_files(outdir):
    return sorted(os.path.join(outdir, f) for f in os.listdir(outdir) if f.startswith("ww."))


def check_tracked(outdir, what):
    """A writewatch run that did not track would flatter writewatch: insist on it."""
    files = ww_files(outdir)
    if not files:
        raise BenchError(f"{what}: no writewatch output file")
    for f in files:
        with open(f, "rb") as fh:
            head = json.loads(fh.readline())
        if head.get("tracking") != "on":
            raise BenchError(f"{what}: writewatch did not track: {head.get('reason')}")


def snapshots(path):
    """The snapshot records of one output file, each with 'bytes': the size of its record and
    its region records (the output of that snapshot). Region lines are not parsed."""
    snaps = []
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b'{"type":"snapshot"'):
                s = json.loads(line)
                s["bytes"] = len(line)
                snaps.append(s)
            elif line.startswith(b'{"type":"region"') and snaps:
                snaps[-1]["bytes"] += len(line)
    return snaps


def timed(argv, env, cwd, stdout=subprocess.DEVNULL, timeout=1200):
    """Run argv; returns (wall seconds, CPU seconds of it and its waited-for descendants).
    CPU time is shown beside the wall time: it moves less when other work shares the machine."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=stdout, stderr=err)
        killer = threading.Timer(timeout, p.kill)  # a hung workload must not hang the suite
        killer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        except BaseException:
            p.kill()
            raise
        finally:
            killer.cancel()
        t = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            raise BenchError(f"{' '.join(argv)} exited {p.returncode}: {err.read().decode()[-2000:]}")
    return t, ru.ru_utime + ru.ru_stime


def interval_load(outdir):
    """From a run with periodic snapshots: pages reported written by the interval snapshots
    (each costs one write-protect fault when it is written again) and the shim's snapshot time."""
    pages = scan = 0
    for f in ww_files(outdir):
        for s in snapshots(f):
            if s["trigger"] == "interval":
                pages += s["written_pages"]
                scan += s["scan_ns"]
    return pages, scan / 1e6


# ---- statistics and figures ----

def summary(values):
    v = [float(x) for x in values]
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def rounds(variants, fn):
    """Run fn(variant, round) for every variant in each of REPS rounds, rotating the order so
    no variant always runs first or last. Returns {variant: [result per round]}."""
    out = {v: [] for v in variants}
    for r in range(REPS):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            out[v].append(fn(v, r))
    return out


def figure(name, values, unit, target_key=None, side=None, note=None, na=None):
    """One row: the median of per-round values (ratios measured side by side, or an absolute
    figure for absolute targets) with min and max, its target and whether it is met."""
    f = {"name": name, "unit": unit, "target": None, "met": None, "side_by_side": side or {},
         "note": note}
    if na:
        f.update({"median": None, "min": None, "max": None, "n": 0, "na": na})
        return f
    f.update(summary(values))
    if target_key and TARGETS.get(target_key):
        op, val = TARGETS[target_key]
        f["target"] = {"op": op, "value": val}
        m = f["median"]
        f["met"] = {"<=": m <= val, "<": m < val, ">=": m >= val, ">": m > val}[op]
    return f


def ratios(a, b):
    return [x / y for x, y in zip(a, b)]


def sides(**kv):
    """Absolute medians of the variants, for the side-by-side column."""
    return {k: summary(v) for k, v in kv.items()}


# ---- item 1: the tracked write ----

def item_write():
    pages, intervals = (256, 2) if QUICK else (16384, 5)
    figs = []
    for order in ("seq", "random"):
        def one(mode, r):
            recs, outdir = run_c("b_write", [pages, intervals, order], mode)
            if mode == "ww":  # every interval after the first must report every page written
                snaps = [s for f in ww_files(outdir) for s in snapshots(f) if s["label"] == "reset"]
                for s in snaps[1:]:
                    if s["written_pages"] < pages:
                        raise BenchError(f"b_write ww: a snapshot saw {s['written_pages']} "
                                         f"of {pages} written pages")
                done(outdir)
            return recs[0]["ns_per_page"]
        res = rounds(["ww", "raw", "mprotect"], one)
        side = sides(writewatch_ns=res["ww"], raw_ns=res["raw"], mprotect_ns=res["mprotect"])
        what = "address order" if order == "seq" else "random order"
        figs.append(figure(f"first write per page after a re-arm, {what}: writewatch / raw "
                           f"uffd+PAGEMAP_SCAN", ratios(res["ww"], res["raw"]), "x",
                           "write_vs_raw", side, f"{pages} pages, median of {intervals} intervals "
                           "per round; only the writes are timed"))
        figs.append(figure(f"first write per page, {what}: mprotect+SIGSEGV tracker / "
                           f"writewatch (how many times cheaper)", ratios(res["mprotect"], res["ww"]),
                           "x", "mprotect_vs_write", side))
    return figs


# ---- item 2: first touch ----

def item_touch():
    pages, rnds, thp = (256, 1, 4) if QUICK else (16384, 5, 64)

    def one(mode, r):
        recs, outdir = run_c("b_touch", [pages, rnds, thp], mode)
        done(outdir)
        return recs[0]
    res = rounds(["ww", "plain"], one)
    ww, pl = res["ww"], res["plain"]
    g = lambda rs, k: [x[k] for x in rs]
    figs = [
        figure("first touch of fresh memory (4 KiB pages): writewatch / untracked",
               ratios(g(ww, "ns_per_page"), g(pl, "ns_per_page")), "x", "first_touch",
               sides(writewatch_ns_per_page=g(ww, "ns_per_page"),
                     untracked_ns_per_page=g(pl, "ns_per_page")),
               f"{pages} pages mapped and written once, median of {rnds} per round"),
        figure("first touch of a MADV_HUGEPAGE region: writewatch / untracked",
               ratios(g(ww, "ns_per_2mib"), g(pl, "ns_per_2mib")), "x", "first_touch",
               sides(writewatch_ns_per_2mib=g(ww, "ns_per_2mib"),
                     untracked_ns_per_2mib=g(pl, "ns_per_2mib")), f"{thp} MiB, 2 MiB aligned"),
    ]
    # THP kept: AnonHugePages under writewatch over untracked (1.0 = as many huge pages).
    kept = [w["anon_huge_kb"] / p["anon_huge_kb"] if p["anon_huge_kb"] > 0 else 0.0
            for w, p in zip(ww, pl)]
    figs.append(figure("THP still allocated: AnonHugePages of the MADV_HUGEPAGE region, "
                       "writewatch / untracked", kept, "x", "thp_kept",
                       sides(writewatch_anon_huge_kb=g(ww, "anon_huge_kb"),
                             untracked_anon_huge_kb=g(pl, "anon_huge_kb")),
                       "from /proc/self/smaps; 0 if the untracked run got no THP"))
    return figs


# ---- item 3: mmap + munmap ----

def item_mmap():
    iters, rnds = (50, 1) if QUICK else (4000, 5)
    figs = []
    for kib, touch in ((64, 0), (1024, 0), (64, 1)):
        def one(mode, r):
            recs, outdir = run_c("b_mmap", [kib, iters, rnds, touch], mode)
            done(outdir)
            return recs[0]["ns_per_pair"]
        res = rounds(["ww", "plain"], one)
        size = "64 KiB" if kib == 64 else "1 MiB"
        name = f"mmap+munmap pair, {size}" + (", every page written" if touch else "")
        figs.append(figure(name + ": writewatch / untracked", ratios(res["ww"], res["plain"]), "x",
                           None if touch else "mmap_pair",
                           sides(writewatch_ns=res["ww"], untracked_ns=res["plain"]),
                           f"{iters} pairs, median of {rnds} per round" +
                           ("; shows the munmap harvest, no target" if touch else "")))
    return figs


# ---- item 4: snapshot speed ----

def item_scan():
    mib, reps = (16, 1) if QUICK else (1024, 5)

    def one(mode, r):
        recs, outdir = run_c("b_scan", [mib, reps], mode)
        out = {x["pct"]: {"ns": x["ns"]} for x in recs}
        if mode == "ww":
            snaps = [s for f in ww_files(outdir) for s in snapshots(f)]
            for pct in out:
                mine = [s for s in snaps if (s["label"] or "").startswith(f"pct{pct}-")]
                out[pct]["bytes"] = statistics.median(s["bytes"] for s in mine)
                out[pct]["scan_ns"] = statistics.median(s["scan_ns"] for s in mine)
            done(outdir)
        return out
    res = rounds(["ww", "raw"], one)
    figs = []
    gib = mib / 1024
    for pct in (0, 1, 10, 100):
        ww = [x[pct]["ns"] for x in res["ww"]]
        raw = [x[pct]["ns"] for x in res["raw"]]
        side = sides(writewatch_gib_per_s=[gib / (n / 1e9) for n in ww],
                     raw_gib_per_s=[gib / (n / 1e9) for n in raw],
                     writewatch_ms=[n / 1e6 for n in ww], raw_ms=[n / 1e6 for n in raw],
                     output_bytes=[x[pct]["bytes"] for x in res["ww"]],
                     shim_scan_ns=[x[pct]["scan_ns"] for x in res["ww"]])
        figs.append(figure(f"snapshot of {mib} MiB tracked, {pct}% of pages written: writewatch "
                           f"rate / raw PAGEMAP_SCAN rate", ratios(raw, ww), "x", "scan_rate",
                           side, "written pages spread evenly (every 100th, every 10th, all); "
                           "writewatch timed around writewatch_snapshot(), output included"))
    return figs


# ---- item 5: large reservations ----

def item_reserve():
    reps = 1 if QUICK else 5
    figs = []
    for gb in (1024, 64):
        def one(mode, r):
            recs, outdir = run_c("b_reserve", [gb, reps], mode)
            done(outdir)
            return recs[0]
        res = rounds(["ww", "plain", "raw"], one)
        g = lambda v, k: [x[k] for x in res[v]]
        size = "1 TiB" if gb == 1024 else f"{gb} GiB"
        figs.append(figure(f"{size} PROT_NONE|MAP_NORESERVE reservation, 2 MiB written: "
                           "page tables added (VmPTE) under writewatch", g("ww", "vmpte_added_kb"),
                           "kB", "vmpte_kb",
                           sides(writewatch_kb=g("ww", "vmpte_added_kb"),
                                 untracked_kb=g("plain", "vmpte_added_kb"),
                                 raw_kb=g("raw", "vmpte_added_kb"))))
        figs.append(figure(f"{size} reservation: set-up (mmap + mprotect of 2 MiB) under "
                           "writewatch", [x / 1e6 for x in g("ww", "setup_ns")], "ms", "setup_ms",
                           sides(writewatch_ms=[x / 1e6 for x in g("ww", "setup_ns")],
                                 untracked_ms=[x / 1e6 for x in g("plain", "setup_ns")],
                                 raw_ms=[x / 1e6 for x in g("raw", "setup_ns")])))
        figs.append(figure(f"{size} reservation: idle snapshot under writewatch",
                           [x / 1e6 for x in g("ww", "idle_ns")], "ms", "idle_ms",
                           sides(writewatch_ms=[x / 1e6 for x in g("ww", "idle_ns")],
                                 raw_scan_ms=[x / 1e6 for x in g("raw", "idle_ns")]),
                           "raw: the PAGEMAP_SCAN loop over the reservation"))
    return figs


# ---- item 6: whole programs ----

def make_text(path, nbytes):
    """Random base64 lines of 60 characters: a sort input with no structure to exploit."""
    import base64
    chunk = 3 * 1024 * 1024
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            d = base64.b64encode(os.urandom(chunk))
            block = b"\n".join(d[i:i + 60] for i in range(0, len(d), 60)) + b"\n"
            f.write(block[:left] if left < len(block) else block)
            left -= len(block)


def prefix(src, dst, nbytes):
    with open(src, "rb") as f, open(dst, "wb") as g:
        data = f.read(nbytes)
        g.write(data[:data.rfind(b"\n") + 1])


CC_COMMIT = "d176fd2"  # writewatch's library sources at this commit: the C compile's input


def cc_sources(dst):
    """The C compile's input: writewatch's own library sources as of CC_COMMIT, so the work is
    the same in every run while the working tree changes; without that commit (a tarball, a
    shallow clone), the benchmark's own programs. Returns (files, description)."""
    os.makedirs(dst)
    p = subprocess.run(f"git -C '{ROOT}' archive {CC_COMMIT} preload include | tar -x -C '{dst}'",
                       shell=True, stderr=subprocess.DEVNULL)
    srcdir = os.path.join(dst, "preload")
    if p.returncode == 0 and os.path.isdir(srcdir):
        what = f"writewatch's sources at {CC_COMMIT}"
    else:
        srcdir = HERE
        shutil.copytree(os.path.join(ROOT, "include"), os.path.join(dst, "include"),
                        dirs_exist_ok=True)
        what = "the benchmark's own programs"
    files = sorted(os.path.join(srcdir, f) for f in os.listdir(srcdir) if f.endswith(".c"))
    return files, what


def tool_status():
    """dhat and heaptrack: available, or the reason a column is n/a."""
    st = {}
    st["dhat"] = None if shutil.which("valgrind") else "valgrind is not installed"
    if not shutil.which("heaptrack") and not QUICK and os.geteuid() == 0 and shutil.which("apt-get"):
        log("heaptrack missing: apt-get install -y heaptrack")
        subprocess.run(["apt-get", "install", "-y", "heaptrack"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    st["heaptrack"] = None if shutil.which("heaptrack") else (
        "heaptrack is not installed and apt-get install -y heaptrack failed"
        if not QUICK else "heaptrack is not installed (quick mode does not install it)")
    return st


def item_programs():
    big = os.path.join(WORK, "sort-input.txt")  # WORK is private to this run, under build/bench
    made = [big]
    try:
        return programs(big, made)
    finally:
        for f in made:
            if os.path.isdir(f):
                shutil.rmtree(f, ignore_errors=True)
            elif os.path.exists(f):
                os.unlink(f)


def programs(big, made):
    sort_bytes = 256 * 1024 if QUICK else 200 * MB
    gzip_bytes = 128 * 1024 if QUICK else 40 * MB
    small_sort, small_gzip = (64 * 1024, 32 * 1024) if QUICK else (4 * MB, 2 * MB)
    py_rounds, py_small = (1, 1) if QUICK else (8, 1)
    log(f"generating {sort_bytes / MB:.1f} MB of text in {big}")
    make_text(big, sort_bytes)
    files = {}
    for name, n in (("gzip-input.txt", gzip_bytes), ("sort-small.txt", small_sort),
                    ("gzip-small.txt", small_gzip)):
        files[name] = os.path.join(WORK, name)
        made.append(files[name])
        prefix(big, files[name], n)
    src_dir = os.path.join(WORK, "cc-src")
    made.append(src_dir)
    shutil.rmtree(src_dir, ignore_errors=True)
    srcs, src_what = cc_sources(src_dir)
    os.sync()  # the inputs on disk before timing: writeback must not land in a measured run
    one_src = [s for s in srcs if s.endswith("/config.c")] or srcs[:1]
    inc = ["-I" + os.path.join(src_dir, "include"), "-I" + os.path.join(src_dir, "preload")]
    script = os.path.join(HERE, "alloc_heavy.py")
    # name: (argv, argv for dhat/heaptrack, description of the full and the small work)
    work = {
        "python3": ([PY, script, str(py_rounds)], [PY, script, str(py_small)],
                    f"alloc_heavy.py, {py_rounds} rounds", f"{py_small} round"),
        "sort": (["sort", big], ["sort", files["sort-small.txt"]],
                 f"{sort_bytes / MB:g} MB of text", f"{small_sort / MB:g} MB"),
        "gzip": (["gzip", "-c", files["gzip-input.txt"]], ["gzip", "-c", files["gzip-small.txt"]],
                 f"gzip -6 of {gzip_bytes / MB:g} MB", f"{small_gzip / MB:g} MB"),
        "cc": (["gcc", "-O2"] + inc + ["-c"] + (one_src if QUICK else srcs),
               ["gcc", "-O2"] + inc + ["-c"] + one_src,
               f"gcc -O2 -c of {len(one_src if QUICK else srcs)} files, {src_what}",
               "1 file"),
    }
    tools = tool_status()
    figs = []
    for name, (argv, small, what, what_small) in work.items():
        log(f"item 6: {name}")

        def one(cfg, r):
            d = scratch()
            try:
                if cfg == "untracked":
                    return timed(argv, base_env(), d)
                if cfg in ("exit", "100ms"):
                    extra = {"WRITEWATCH_INTERVAL_MS": "100" if cfg == "100ms" else "0"}
                    t = timed(argv, ww_env(d, extra), d)
                    check_tracked(d, name)
                    return t + interval_load(d) if cfg == "100ms" else t
                if cfg == "untracked-small":
                    return timed(small, base_env(), d)
                if cfg == "dhat":
                    return timed(["valgrind", "--tool=dhat", "--trace-children=yes",
                                  f"--dhat-out-file={d}/dhat.%p"] + small, base_env(), d)
                if cfg == "heaptrack":
                    return timed(["heaptrack", "-o", os.path.join(d, "ht")] + small, base_env(), d)
            finally:
                shutil.rmtree(d, ignore_errors=True)
        cfgs = ["untracked", "exit", "100ms", "untracked-small"]
        cfgs += [t for t in ("dhat", "heaptrack") if not tools[t]]
        res = rounds(cfgs, one)
        wall = {c: [x[0] for x in v] for c, v in res.items()}
        cpu = {c: [x[1] for x in v] for c, v in res.items()}
        pick = lambda *cs: sides(**{f"{c}_s": wall[c] for c in cs})
        side_exit = pick("untracked", "exit")
        side_exit["exit_cpu_ratio"] = summary(ratios(cpu["exit"], cpu["untracked"]))
        side_100 = pick("untracked", "100ms")
        side_100["100ms_cpu_ratio"] = summary(ratios(cpu["100ms"], cpu["untracked"]))
        # What the periodic snapshots cost: each page an interval snapshot reported written was
        # re-armed, and its next write takes a write-protect fault (item 1 measures one).
        side_100["rearmed_pages_per_s"] = summary([x[2] / x[0] for x in res["100ms"]])
        side_100["snapshot_ms_per_s"] = summary([x[3] / x[0] for x in res["100ms"]])
        figs.append(figure(f"{name} ({what}): writewatch, exit snapshot only / untracked",
                           ratios(wall["exit"], wall["untracked"]), "x", "prog_exit", side_exit,
                           "wall time; cpu_ratio: user+sys time, steadier on a shared machine"))
        figs.append(figure(f"{name} ({what}): writewatch, snapshots every 100 ms / untracked",
                           ratios(wall["100ms"], wall["untracked"]), "x", "prog_100ms", side_100))
        for tool, label in (("dhat", "valgrind --tool=dhat"), ("heaptrack", "heaptrack")):
            note = (f"smaller input ({what_small}), ratio to untracked on that input"
                    + ("; heaptrack follows no child process (it traces the gcc driver, not cc1)"
                       if tool == "heaptrack" and name == "cc" else "")
                    + ("; --trace-children=yes" if tool == "dhat" else ""))
            if tools[tool]:
                figs.append(figure(f"{name}: {label} / untracked", [], "x", na=tools[tool]))
            else:
                figs.append(figure(f"{name}: {label} / untracked", ratios(wall[tool],
                                   wall["untracked-small"]), "x", None,
                                   pick("untracked-small", tool), note))
    return figs


# ---- item 7: scaling ----

def item_scale():
    reps = 1 if QUICK else 3
    nregions = (10, 100) if QUICK else (10, 100, 1000, 10000, 100000)
    sizes = (1, 16) if QUICK else (1, 64, 1024, 16384, 65536)
    big = sizes[-1]
    written = (0, 16, 256) if QUICK else (0, 256, 4096, 65536)
    fixed = 16 if QUICK else 256
    points = [("regions", [n, reps], f"{n} regions of 16 KiB, 1 page written in each")
              for n in nregions]
    points += [("size", [m, fixed, 0, reps], f"one region of {fmt_mib(m)}, {fixed} pages written "
                "(contiguous)") for m in sizes]
    points += [("size", [big, w, 0, reps], f"one region of {fmt_mib(big)}, {w} pages written "
                "(contiguous)") for w in written if w != fixed]
    points.append(("size", [big, fixed, 1, reps], f"one region of {fmt_mib(big)}, {fixed} pages "
                   "written, spread evenly (one page table each)"))
    figs = []
    idle_ww, map_ww, map_raw = {}, {}, {}
    for by, args, desc in points:
        def one(mode, r):
            recs, outdir = run_c("b_scale", [by] + args, mode)
            done(outdir)
            return recs[0]
        res = rounds(["ww", "raw"], one)
        g = lambda v, k: [x[k] / 1000 for x in res[v]]
        key = (by, tuple(args[:-1]))
        idle_ww[key] = g("ww", "idle_ns")
        if by == "regions":
            map_ww[args[0]] = g("ww", "map_ns_per_region")
            map_raw[args[0]] = g("raw", "map_ns_per_region")
        side = sides(writewatch_idle_us=g("ww", "idle_ns"), raw_idle_us=g("raw", "idle_ns"),
                     writewatch_written_us=g("ww", "written_ns"), raw_written_us=g("raw", "written_ns"))
        figs.append(figure(f"snapshot after the writes, {desc}: writewatch", g("ww", "written_ns"),
                           "us", None, side, "idle and raw (PAGEMAP_SCAN per region) side by side"))
    # The two claims, as figures: untouched address space costs nothing, regions cost linearly.
    lo, hi = idle_ww[("size", (sizes[0], fixed, 0))], idle_ww[("size", (big, fixed, 0))]
    figs.append(figure(f"idle snapshot, {fmt_mib(big)} / {fmt_mib(sizes[0])} tracked (same "
                       f"{fixed} pages written): growth with untouched address space",
                       ratios(hi, lo), "x", "size_flat", None,
                       f"{big // sizes[0]}x the address space; target: flat within 2x"))
    a, b = nregions[-3] if len(nregions) >= 3 else nregions[0], nregions[-1]
    per_a = [x / a for x in idle_ww[("regions", (a,))]]
    per_b = [x / b for x in idle_ww[("regions", (b,))]]
    figs.append(figure(f"idle snapshot cost per region, {b} / {a} regions: growth beyond "
                       "linear", ratios(per_b, per_a), "x", "regions_linear",
                       sides(us_per_region_at_a=per_a, us_per_region_at_b=per_b),
                       "1.0 = linear in the number of regions; target: within 2x of linear"))
    figs.append(figure(f"mmap of a 16 KiB region while {b} regions are tracked / while {a} are: "
                       "hook cost growth with the table", ratios(map_ww[b], map_ww[a]), "x",
                       "regions_linear",
                       sides(writewatch_us_per_mmap_at_a=map_ww[a], writewatch_us_per_mmap_at_b=map_ww[b],
                             raw_us_per_mmap_at_a=map_raw[a], raw_us_per_mmap_at_b=map_raw[b]),
                       "1.0 = flat: a hook must not walk the table; raw: mmap + UFFDIO_REGISTER"))
    return figs


def fmt_mib(m):
    return f"{m // 1024} GiB" if m >= 1024 else f"{m} MiB"


# ---- the report ----

ITEM_TITLES = {
    1: ("tracked write", item_write),
    2: ("first touch of fresh memory", item_touch),
    3: ("mmap + munmap pair", item_mmap),
    4: ("snapshot speed", item_scan),
    5: ("large reservations", item_reserve),
    6: ("whole programs", item_programs),
    7: ("scaling", item_scale),
}


def machine():
    def first(path, key):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            thp = f.read().strip()
    except OSError:
        thp = None
    return {"kernel": platform.release(), "cpu": first("/proc/cpuinfo", "model name"),
            "cpus": os.cpu_count(), "mem": first("/proc/meminfo", "MemTotal"), "thp": thp,
            "host": platform.node()}


def library_info():
    with open(LIB_COPY, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    git = lambda *a: subprocess.run(["git", "-C", ROOT] + list(a), stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL).stdout.decode().strip()
    dirty = git("status", "--porcelain", "--", "preload", "include")
    return {"path": LIB, "sha256": sha, "built": datetime.datetime.fromtimestamp(
        os.path.getmtime(LIB)).isoformat(timespec="seconds"), "git_head": git("rev-parse", "--short", "HEAD"),
        "preload_uncommitted_changes": bool(dirty)}


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "x":
        return f"{v:.2f}x"
    if abs(v) >= 100:
        return f"{v:.0f} {unit}"
    return f"{v:.3g} {unit}"


def fmt_side(side):
    parts = []
    for k, s in side.items():
        parts.append(f"{k} {s['median']:.4g}")
    return "; ".join(parts)


def table(results):
    lines = ["| # | figure | median | min – max | target | met | side by side (medians) |",
             "|---|---|---|---|---|---|---|"]
    for item in results["items"]:
        if item.get("error"):
            lines.append(f"| {item['item']} | {item['title']}: FAILED | | | | | "
                         f"{item['error'][:300].replace('|', '/').replace(chr(10), ' ')} |")
        for f in item["figures"]:
            tgt = f"{f['target']['op']} {f['target']['value']:g}" if f["target"] else "—"
            met = "—" if f["met"] is None else ("met" if f["met"] else "**MISSED**")
            if f.get("na"):
                rng, med, met = "", "n/a", f"n/a: {f['na']}"
            else:
                med = fmt(f["median"], f["unit"])
                rng = f"{fmt(f['min'], f['unit'])} – {fmt(f['max'], f['unit'])}"
            side = fmt_side(f["side_by_side"])
            if f.get("note"):
                side = (side + "; " if side else "") + f["note"]
            lines.append(f"| {item['item']} | {f['name']} | {med} | {rng} | {tgt} | {met} | "
                         f"{side} |")
    return "\n".join(lines)


def markdown(results):
    m, lib = results["machine"], results["library"]
    head = [f"# writewatch benchmarks ({'QUICK mode: tiny sizes, figures meaningless' if QUICK else 'make bench'})",
            "",
            f"{results['date']} on {m['host']}: Linux {m['kernel']}, {m['cpus']} CPUs "
            f"({m['cpu']}), {m['mem']}, THP {m['thp']}. Library {lib['path']} sha256 "
            f"{lib['sha256'][:12]}, built {lib['built']}, git {lib['git_head']}"
            f"{' with uncommitted changes in preload/' if lib['preload_uncommitted_changes'] else ''}.",
            f"Each figure: median of {results['reps']} rounds (min – max), every round running "
            "the variants back to back; ratios are computed per round. "
            f"Elapsed {results['elapsed_s']:.0f} s.", ""]
    busy = [f"{i['item']} ({max(i['loadavg_before'], i['loadavg_after']):.1f})"
            for i in results["items"] if max(i["loadavg_before"], i["loadavg_after"]) > 1.5]
    if busy:
        head += [f"**The machine was busy** (1-minute load average above 1.5 on {os.cpu_count()} "
                 f"CPUs around items {', '.join(busy)}): other work shared the CPUs, so "
                 "those figures are noisier than usual.", ""]
    return "\n".join(head) + table(results) + "\n"


def main():
    global WORK, LIB_COPY
    os.makedirs(OUT, exist_ok=True)
    for prog in ("b_write", "b_touch", "b_mmap", "b_scan", "b_reserve", "b_scale"):
        if not os.access(os.path.join(BIN, prog), os.X_OK):
            sys.exit(f"bench: {BIN}/{prog} is missing: run `make bench`")
    if not os.path.exists(LIB):
        sys.exit(f"bench: {LIB} is missing: run `make bench`")
    WORK = tempfile.mkdtemp(prefix="run.", dir=BIN)
    LIB_COPY = os.path.join(WORK, "libwritewatch.so")
    shutil.copy2(LIB, LIB_COPY)
    t0 = time.time()
    results = {"suite": "writewatch benchmarks", "format": 1, "quick": QUICK, "reps": REPS,
               "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "machine": machine(), "library": library_info(), "scratch": WORK, "items": []}
    try:
        for n, (title, fn) in ITEM_TITLES.items():
            if ITEMS and n not in ITEMS:
                continue
            t = time.time()
            log(f"item {n}: {title}")
            load0 = os.getloadavg()[0]
            try:
                figs, err = fn(), None
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                figs, err = [], str(e)  # the other items still run; the exit status says so
                log(f"item {n} FAILED: {err}")
            results["items"].append({"item": n, "title": title, "figures": figs, "error": err,
                                     "loadavg_before": load0, "loadavg_after": os.getloadavg()[0]})
            log(f"item {n}: {time.time() - t:.0f} s")
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    results["elapsed_s"] = time.time() - t0
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    md = markdown(results)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(md)
    print(md)
    missed = [f["name"] for i in results["items"] for f in i["figures"] if f["met"] is False]
    print(f"{len(missed)} figures missed their targets" + (":" if missed else "."))
    for name in missed:
        print(f"  - {name}")
    print(f"results: {os.path.join(OUT, 'results.json')}, {os.path.join(OUT, 'results.md')}")
    failed = [i["item"] for i in results["items"] if i.get("error")]
    if failed:
        sys.exit(f"bench: items {failed} failed (see the table)")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        sys.exit(f"bench: {e}")
