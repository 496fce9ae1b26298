#!/usr/bin/env python3
# Proves `make bench` works: runs the benchmark suite once in quick mode (BENCH_QUICK=1: tiny
# sizes, one round) into a temporary directory and checks that the results file holds every
# item with numeric figures and that the table was written. Benchmarks are not tests: no timing
# figure or target is asserted here.
import json
import math
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wwtest import BUILD, ROOT, case, finish, tmpdir  # noqa: E402

ITEMS = range(1, 8)
OUT = tmpdir()
_run = {}


def quick_run():
    """Run the quick suite once; later cases reuse the result."""
    if not _run:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("WRITEWATCH_", "BENCH_")) and k != "LD_PRELOAD"}
        env.update(BENCH_QUICK="1", BENCH_OUT=OUT)
        p = subprocess.run(["make", "-s", "-C", ROOT, "bench"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=540)
        _run["rc"], _run["out"] = p.returncode, p.stdout.decode(errors="replace")
    return _run


def results():
    r = quick_run()
    path = os.path.join(OUT, "results.json")
    assert os.path.exists(path), f"make bench exited {r['rc']}, no results: {r['out'][-1500:]}"
    with open(path) as f:
        return json.load(f)


def numeric(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@case
def bench_quick_runs():
    res = results()
    r = quick_run()
    assert r["rc"] == 0, f"make bench exited {r['rc']}: {r['out'][-1500:]}"
    assert res["quick"] is True and res["reps"] == 1, "quick mode not recorded as such"
    assert os.path.getsize(os.path.join(OUT, "results.md")) > 0, "results.md is empty"


@case
def bench_every_item_has_numeric_figures():
    res = results()
    got = {i["item"]: i for i in res["items"]}
    assert sorted(got) == list(ITEMS), f"items {sorted(got)}, want 1..7"
    for n, item in got.items():
        assert not item.get("error"), f"item {n} failed: {item['error'][:500]}"
        assert item["figures"], f"item {n} has no figures"
        for f in item["figures"]:
            if f.get("na"):  # a tool that is not installed: the reason must say so
                assert isinstance(f["na"], str) and f["na"], f"item {n}: n/a without a reason"
                continue
            for k in ("median", "min", "max"):
                assert numeric(f[k]), f"item {n}, {f['name']}: {k} is {f[k]!r}"
            assert f["min"] <= f["median"] <= f["max"], f"item {n}, {f['name']}: min/median/max"
            assert f["n"] == 1, f"item {n}, {f['name']}: {f['n']} rounds in quick mode"
            for side, s in f["side_by_side"].items():
                assert numeric(s["median"]), f"item {n}, {f['name']}: {side} not numeric"
            if f["target"] is not None:  # the verdict is recorded, never asserted
                assert f["met"] in (True, False), f"item {n}, {f['name']}: met is {f['met']!r}"


@case
def bench_table_lists_every_figure():
    res = results()
    with open(os.path.join(OUT, "results.md")) as f:
        rows = [l for l in f if l.startswith("| ") and not l.startswith("| #")]
    rows = [l for l in rows if ": FAILED |" not in l]
    want = sum(len(i["figures"]) for i in res["items"])
    assert len(rows) == want, f"{len(rows)} table rows for {want} figures"
    for f in (fig for i in res["items"] for fig in i["figures"]):
        assert any(f["name"] in r for r in rows), f"no row for {f['name']}"


@case
def bench_cleans_up():
    scratch = results()["scratch"]  # the run's generated inputs and outputs lived here
    assert scratch.startswith(os.path.join(BUILD, "bench")), f"scratch outside build/bench: {scratch}"
    assert not os.path.exists(scratch), f"{scratch} left behind"


shutil.rmtree(OUT, ignore_errors=True)
finish()
