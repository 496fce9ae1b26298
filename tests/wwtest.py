# Shared helpers for writewatch's Python tests: run programs with and without the shim, read
# the output files, compare them with the ground truth a test program recorded (tests/tprog.h).
import glob
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
# make check-sanitize runs the tests on a sanitizer build: WW_LIB names it, and
# WW_PRELOAD_FIRST the sanitizer runtime that must come first in LD_PRELOAD.
LIB = os.environ.get("WW_LIB") or os.path.join(BUILD, "libwritewatch.so")
PRELOAD_FIRST = os.environ.get("WW_PRELOAD_FIRST", "")
# Test programs that cannot run there (t_track_found needs glibc's malloc, which ASan replaces).
SKIP_PROGS = os.environ.get("WW_SKIP_PROGS", "").split()
TESTS = os.path.join(BUILD, "tests")
LAUNCHER = os.path.join(ROOT, "scripts", "writewatch")
PAGE = 4096

_results = {"pass": 0, "fail": 0, "skip": 0}


def load_launcher(name="writewatch_launcher"):
    """scripts/writewatch (no .py suffix) imported as a module, for its report helpers."""
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader(name, LAUNCHER)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def report(name, ok, why=""):
    """Print one PASS/FAIL line; ok=None means SKIP (why says what is missing)."""
    if ok is None:
        print(f"SKIP {name}: {why}", flush=True)
        _results["skip"] += 1
    elif ok:
        print(f"PASS {name}", flush=True)
        _results["pass"] += 1
    else:
        print(f"FAIL {name}: {why}", flush=True)
        _results["fail"] += 1


def finish():
    sys.exit(1 if _results["fail"] else 0)


def case(fn):
    """Decorator: run the test function now; an exception or AssertionError is a FAIL,
    a raised Skip a SKIP, a normal return a PASS. With WW_ONLY set (development), only the
    cases whose name contains it run."""
    name = fn.__name__
    if os.environ.get("WW_ONLY") and os.environ["WW_ONLY"] not in name:
        return fn
    try:
        fn()
        report(name, True)
    except Skip as s:
        report(name, None, str(s))
    except AssertionError as e:
        report(name, False, str(e) or "assertion failed")
    except Exception as e:  # a crash in the test itself is a failure, not a pass
        report(name, False, f"{type(e).__name__}: {e}")
    return fn


class Skip(Exception):
    pass


def tmpdir():
    return tempfile.mkdtemp(prefix="wwtest.")


def tracked_env(outdir, extra=None, preload=True):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("WRITEWATCH_"):
            del env[k]
    if preload:
        env["LD_PRELOAD"] = f"{PRELOAD_FIRST}:{LIB}" if PRELOAD_FIRST else LIB
    env["WRITEWATCH_OUTPUT"] = os.path.join(outdir, "ww.%e.%p.jsonl")
    env["WW_EXPECT"] = os.path.join(outdir, "expect.jsonl")
    if extra:
        env.update(extra)
    return env


def run(cmd, env=None, timeout=120, input=None, cwd=None):
    return subprocess.run(cmd, env=env, timeout=timeout, input=input, cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_tracked(cmd, extra=None, timeout=120, input=None, outdir=None):
    """Run cmd under the shim; returns (completed process, outdir)."""
    if os.path.basename(cmd[0]) in SKIP_PROGS:
        raise Skip(f"{os.path.basename(cmd[0])} is in WW_SKIP_PROGS (a sanitizer build)")
    outdir = outdir or tmpdir()
    p = run(cmd, env=tracked_env(outdir, extra), timeout=timeout, input=input, cwd=outdir)
    return p, outdir


def outputs(outdir):
    return sorted(glob.glob(os.path.join(outdir, "ww.*.jsonl*")))


def load(path):
    """Parse an output file; asserts every line is one whole JSON object."""
    recs = []
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n"), f"{path}: last line not terminated"
    for i, line in enumerate(data.split(b"\n")[:-1]):
        try:
            recs.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{path}:{i + 1}: not a JSON object: {line[:120]!r}")
    assert recs and recs[0].get("type") == "header", f"{path}: no header first"
    return recs


class Output:
    """One output file, indexed: header, snapshots in order, regions per seq."""

    def __init__(self, path):
        self.path = path
        self.recs = load(path)
        self.header = self.recs[0]
        self.snapshots = [r for r in self.recs if r["type"] == "snapshot"]
        self.regions = {}
        for r in self.recs:
            if r["type"] == "region":
                self.regions.setdefault(r["seq"], []).append(r)
        seqs = [s["seq"] for s in self.snapshots]
        assert seqs == list(range(1, len(seqs) + 1)), f"seq not 1..n: {seqs}"

    def snapshot(self, label):
        hits = [s for s in self.snapshots if s.get("label") == label]
        assert len(hits) == 1, f"{len(hits)} snapshots labelled {label!r}"
        return hits[0]

    def written_pages(self, seq):
        """Absolute page numbers reported written in snapshot seq."""
        pages = set()
        for r in self.regions.get(seq, []):
            base = int(r["start"], 16) // PAGE
            n = 0
            for first, count in r.get("ranges", []):
                pages.update(range(base + first, base + first + count))
                n += count
            if "ranges" in r:
                assert n == r["written_pages"], f"region {r['id']}: ranges sum {n} != written_pages"
        return pages


def check_expectations(out, expect_path):
    """Compare every window of every labelled snapshot with the program's ground truth.
    Returns the number of windows checked."""
    checked = 0
    with open(expect_path) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    for e in lines:
        snap = out.snapshot(e["label"])
        if "field" in e:
            got = snap.get(e["field"])
            assert got == e["value"], \
                f"{e['label']}: {e['field']} is {got}, the program knows it is {e['value']}"
            checked += 1
            continue
        base = int(e["start"], 16) // PAGE
        window = set(range(base, base + e["npages"]))
        want = {base + p for p in e["pages"]}
        got = out.written_pages(snap["seq"]) & window
        missing, extra = sorted(want - got), sorted(got - want)
        assert not missing and not extra, (
            f"{e['label']}/{e['window']}: {len(missing)} missing {[p - base for p in missing][:10]}, "
            f"{len(extra)} extra {[p - base for p in extra][:10]} (page offsets in the window)")
        checked += 1
    assert checked, "the program recorded no expectations"
    return checked


def one_output(outdir):
    files = outputs(outdir)
    assert len(files) == 1, f"expected one output file, found {len(files)}: {files}"
    return Output(files[0])


def writewatch_lines(stderr):
    return [l for l in stderr.decode(errors="replace").splitlines() if l.startswith("writewatch:")]
