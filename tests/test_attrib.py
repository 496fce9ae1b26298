#!/usr/bin/env python3
# Attribution: a program with named functions allocating in known patterns; each function's
# call site (found by symbolizing the site's first frame with addr2line, independently of the
# report) must carry exactly the figures the program recorded. Also: stacks off, discovery only.
import json
import os
import shutil
import subprocess

from wwtest import TESTS, Output, Skip, case, finish, one_output, run_tracked

PROG = os.path.join(TESTS, "t_attrib")


def symbolize(out):
    """site id -> function name of its first frame, via the module records and addr2line."""
    mods = [r for r in out.recs if r["type"] == "module"]
    sites = {}
    for r in out.recs:
        if r["type"] == "site" and "frames" in r:
            sites[r["id"]] = int(r["frames"][0], 16)
    names = {}
    for sid, addr in sites.items():
        for m in mods:
            if int(m["start"], 16) <= addr < int(m["end"], 16):
                if os.path.realpath(m["path"]) != os.path.realpath(PROG):
                    break
                off = addr - int(m["bias"], 16)
                p = subprocess.run(["addr2line", "-f", "-e", m["path"], hex(off)],
                                   stdout=subprocess.PIPE, text=True)
                names[sid] = p.stdout.split("\n")[0]
                break
    return names


def site_records(out, seq):
    return {r["id"]: r for r in out.recs if r["type"] == "site" and r["seq"] == seq}


def run(extra=None):
    p, outdir = run_tracked([PROG], extra=extra, timeout=120)
    assert p.returncode == 0, p.stderr.decode()[-1000:]
    assert b"writewatch:" not in p.stderr, p.stderr.decode()
    return one_output(outdir), outdir


_cached = {}


def default_run():
    if "out" not in _cached:
        _cached["out"] = run()
    return _cached["out"]


@case
def sites_carry_exact_figures():
    if not shutil.which("addr2line"):
        raise Skip("addr2line (binutils) is not installed")
    out, outdir = default_run()
    assert out.header["discovery"] == "hooks+glibc-malloc+pthread+proc-maps", out.header
    names = symbolize(out)
    by_name = {}
    for sid, name in names.items():
        by_name.setdefault(name, []).append(sid)
    checked = 0
    with open(os.path.join(outdir, "expect.jsonl")) as f:
        for line in f:
            e = json.loads(line)
            ids = by_name.get(e["function"], [])
            assert len(ids) == 1, f"{e['function']}: sites {ids} (known: {sorted(by_name)})"
            seq = out.snapshot(e["label"])["seq"]
            rec = site_records(out, seq).get(ids[0])
            assert rec, f"{e['label']}: no site record for {e['function']}"
            assert rec[e["field"]] == e["value"], \
                f"{e['label']}/{e['function']}: {e['field']} is {rec[e['field']]}, " \
                f"the program knows it is {e['value']}"
            checked += 1
    assert checked >= 25, checked


@case
def regions_name_their_site_and_kind():
    out, _ = default_run()
    made = out.snapshot("made")["seq"]
    sites = {r["id"] for r in out.recs if r["type"] == "site"}
    regions = out.regions[made]
    kinds = {r["kind"] for r in regions if "site" in r}
    assert {"malloc", "mmap", "thread_stack"} <= kinds, kinds
    for r in regions:
        if "site" in r:
            assert r["site"] in sites, f"region {r['id']} names unknown site {r['site']}"


@case
def churn_totals_in_the_snapshot():
    out, _ = default_run()
    s = out.snapshot("churned")
    one = (1 << 20) + 16
    pages = (one + 4095) // 4096
    assert s["churn_bytes"] == 1000 * pages * 4096, s["churn_bytes"]
    assert s["retired_regions"] == 1000 and s["retired_written_bytes"] == 1000 * pages * 4096, s


@case
def modules_describe_the_program():
    out, _ = default_run()
    mods = [r for r in out.recs if r["type"] == "module"]
    paths = [os.path.realpath(m["path"]) for m in mods]
    assert os.path.realpath(PROG) in paths, paths
    assert any("libc.so" in p for p in paths), paths
    assert all(m.get("build_id") for m in mods if "libc.so" in m["path"]), "libc has a build-id"
    first = next(i for i, r in enumerate(out.recs) if r["type"] == "site")
    assert all(out.recs.index(m) < first for m in mods[:3]), "modules come before the sites"


@case
def stacks_off_gives_no_sites():
    out, _ = run({"WRITEWATCH_STACK_DEPTH": "0"})
    assert not [r for r in out.recs if r["type"] == "site"]
    assert out.header["stack_depth"] == 0


@case
def discovery_only_method():
    out, _ = run({"WRITEWATCH_METHOD": "discovery"})
    assert out.header["discovery"] == "hooks+proc-maps", out.header
    made = out.snapshot("made")["seq"]
    kinds = {r["kind"] for r in out.regions[made]}
    assert "malloc" not in kinds, kinds
    # the glibc blocks are still found, in the maps, as anonymous memory
    s = out.snapshot("made")
    assert s["written_bytes"] >= (1025 + 11 + 1 + 10) * 4096, s["written_bytes"]


finish()
