#!/usr/bin/env python3
# The report's call-site views on a real run: build/tests/t_attrib (named functions allocating in
# known patterns) under the shim, then `writewatch report --json` (and the text report and the
# page): top sites by churn, by write working set and by over-allocation, each symbolized, and
# per-interval churn. The expected figures come from the program's known patterns and from the
# output's own site and snapshot records, computed here independently of the report's code.
# Also, on hand-made files: the views survive the report's bounded site table, and a site known
# only from region records still gets its working set.
import json
import os
import re
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wwtest import (LAUNCHER, LIB, PAGE, TESTS, Skip, case, finish, load_launcher, one_output,  # noqa: E402
                    run_tracked, tmpdir)

PROG = os.path.join(TESTS, "t_attrib")
MIB = 1 << 20
HDR = 16                                    # glibc's chunk header before a mapped block


def pages_of(size):
    """Pages of a block glibc maps for malloc(size) (tests/t_attrib.c's pages_of)."""
    return (size + HDR + PAGE - 1) // PAGE


CHURN_BYTES = 1000 * pages_of(MIB) * PAGE   # churn_loop: 1000 x 257 pages written, then freed
BIG_BYTES = pages_of(4 * MIB) * PAGE        # one 4 MiB block: 1025 pages
MALLOC_SITES = ("alloc_full", "alloc_part", "alloc_none", "churn_loop")


def clean_env():
    """This environment without the shim or its variables (the report runs untracked)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("WRITEWATCH_") and k != "LD_PRELOAD"}


def report(*args):
    """Run `writewatch report ARGS`; its standard output."""
    p = subprocess.run([sys.executable, LAUNCHER, "report"] + list(args), env=clean_env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"report {args} exited {p.returncode}: {p.stderr[-800:]}"
    assert "writewatch:" not in p.stderr, p.stderr
    return p.stdout


def function_of(frame):
    """The function a symbolized frame names ("churn_loop (t_attrib.c:62)", "f in lib.so")."""
    match = re.match(r"[^\s(]+", frame)
    return match.group(0) if match else frame


def symbolize(out):
    """site id -> function of its first frame, found here with the module records and addr2line
    (independently of the report)."""
    modules = [r for r in out.recs if r["type"] == "module"]
    names = {}
    for r in out.recs:
        if r["type"] != "site" or "frames" not in r:
            continue
        address = int(r["frames"][0], 16)
        for m in modules:
            if int(m["start"], 16) <= address < int(m["end"], 16):
                p = subprocess.run(["addr2line", "-f", "-e", m["path"],
                                    hex(address - int(m["bias"], 16))],
                                   stdout=subprocess.PIPE, text=True)
                names[r["id"]] = p.stdout.split("\n")[0]
                break
    return names


class Expected:
    """Per site, from the output's site records: the latest cumulative figures, the bytes written
    summed over intervals, and the most written in one interval (and its seq)."""

    def __init__(self, out):
        self.latest, self.written, self.per_seq = {}, {}, {}
        for r in out.recs:
            if r["type"] != "site":
                continue
            self.latest.setdefault(r["id"], {}).update(r)
            self.written[r["id"]] = self.written.get(r["id"], 0) + r.get("written_bytes", 0)
            seqs = self.per_seq.setdefault(r["id"], {})
            seqs[r["seq"]] = seqs.get(r["seq"], 0) + r.get("written_bytes", 0)
        self.peak = {i: max(((b, s) for s, b in seqs.items()), key=lambda x: (x[0], -x[1]))
                     for i, seqs in self.per_seq.items()}

    def churn(self, i):
        return self.latest[i]["churn_bytes"]

    def never(self, i):
        return max(0, self.latest[i]["bytes_made"] - self.latest[i]["ever_written_bytes"])

    def ranking(self, key):
        """Site ids with a positive first key, in the report's order: key desc, then the bytes
        written desc, then str(id) desc (as for the report's ranking by bytes written)."""
        ids = [i for i in self.latest if key(i) > 0]
        return sorted(ids, key=lambda i: (key(i), self.written[i], str(i)), reverse=True)[:10]

    def check_view(self, what, sites, key, field, names):
        """A view ranks its sites by key(id), each showing that figure as field, symbolized."""
        assert [s["id"] for s in sites] == self.ranking(key), \
            f"{what} order {[s['id'] for s in sites]} != {self.ranking(key)}"
        for s in sites:
            assert s[field] == key(s["id"]), s
            check_symbolized(s, names)


_run = {}


def traced():
    """One run of t_attrib under the shim, reported: (output, --json summary, text, names)."""
    if "run" not in _run:
        if not os.path.exists(LIB) or not os.path.exists(PROG):
            raise Skip(f"{LIB} or {PROG} is not built (run make)")
        if not shutil.which("addr2line"):
            raise Skip("addr2line (binutils) is not installed: the stacks cannot be symbolized")
        p, outdir = run_tracked([PROG], timeout=120)
        assert p.returncode == 0, p.stderr.decode(errors="replace")[-1000:]
        out = one_output(outdir)
        summary = json.loads(report(out.path, "--json"))
        _run["run"] = (out, summary, report(out.path), symbolize(out))
    return _run["run"]


def page_data(path):
    """The data embedded in a generated page."""
    with open(path) as f:
        match = re.search(r'<script type="application/json" id="ww-data">(.*?)</script>', f.read(), re.S)
    assert match, "no data block in the page"
    return json.loads(match.group(1))


def view(summary, name):
    return summary["site_views"][name]


def check_symbolized(entry, names):
    """The report's stack of entry names the function found here independently."""
    assert entry["frames"], f"site {entry['id']} has no stack"
    got = function_of(entry["frames"][0])
    assert got == names.get(entry["id"]), \
        f"site {entry['id']}: report says {entry['frames'][0]!r}, addr2line {names.get(entry['id'])!r}"
    assert "(" in entry["frames"][0] and "t_attrib.c:" in entry["frames"][0], \
        f"site {entry['id']}: no file:line in {entry['frames'][0]!r}"
    return got


@case
def churn_view_starts_with_churn_loop():
    out, summary, _, names = traced()
    sites = view(summary, "churn")
    assert sites, "no site in the churn view"
    first = sites[0]
    assert check_symbolized(first, names) == "churn_loop", first["frames"]
    assert first["churn_bytes"] == CHURN_BYTES, \
        f"churn_loop churned {first['churn_bytes']}, the program made 1000 x 257 pages: {CHURN_BYTES}"
    assert first["written_bytes"] == CHURN_BYTES and first["regions"] == 1000 \
        and first["regions_retired"] == 1000, first
    expected = Expected(out)
    expected.check_view("churn", sites, expected.churn, "churn_bytes", names)
    full = next(s for s in sites if names[s["id"]] == "alloc_full")
    assert full["churn_bytes"] == BIG_BYTES, f"alloc_full's block freed whole: {full}"


@case
def over_allocation_view_ranks_alloc_none_first_of_the_mallocs():
    """alloc_none maps 4 MiB (1025 pages) and writes only glibc's header page: 1024 pages never
    written. It comes first of the program's malloc sites. The one site that may outrank it is
    spawn_workers: its two thread stacks are mapped at glibc's default size (RLIMIT_STACK, 8 MiB
    by default) and only a few dozen of their pages are written. alloc_part is grown to 8 MiB by
    realloc, but a site's bytes_made counts what its regions were made with (docs/format.md), so
    it stays below alloc_none unless the shim counts the growth as made."""
    out, summary, _, names = traced()
    sites = view(summary, "over_allocation")
    expected = Expected(out)
    expected.check_view("over-allocation", sites, expected.never, "never_written_bytes", names)
    order = [names[s["id"]] for s in sites]
    assert "alloc_none" in order, f"alloc_none not in the over-allocation view: {order}"
    rank = order.index("alloc_none")
    none = sites[rank]
    assert (none["bytes_made"], none["ever_written_bytes"], none["never_written_bytes"]) == \
        (BIG_BYTES, PAGE, BIG_BYTES - PAGE), f"alloc_none: {none}"
    mallocs = [name for name in order if name in MALLOC_SITES]
    for above in sites[:rank]:
        name = names[above["id"]]
        assert above["never_written_bytes"] > none["never_written_bytes"], (above, none)
        if name == "spawn_workers":
            kinds = {r["kind"] for r in out.recs if r["type"] == "region" and r.get("site") == above["id"]}
            assert kinds == {"thread_stack"} and above["regions"] == 2, (kinds, above)
            assert above["bytes_made"] > 2 * 4 * MIB, f"thread stacks smaller than 4 MiB: {above}"
        elif name == "alloc_part":
            assert above["bytes_made"] > BIG_BYTES, \
                f"alloc_part outranks alloc_none without its growth counted as made: {above}"
        else:
            raise AssertionError(f"{name} outranks alloc_none in the over-allocation view: "
                                 f"{above} (order {order})")
    assert mallocs[0] == "alloc_none" or (mallocs[0] == "alloc_part" and
                                          sites[order.index("alloc_part")]["bytes_made"] > BIG_BYTES), \
        f"first malloc site by over-allocation is {mallocs[0]} ({order})"
    assert "churn_loop" not in order and "alloc_full" not in order, \
        f"fully written sites listed as over-allocating: {order}"


@case
def working_set_view_has_alloc_full_and_churn_loop_on_top():
    out, summary, _, names = traced()
    sites = view(summary, "working_set")
    expected = Expected(out)
    assert [s["id"] for s in sites] == expected.ranking(lambda i: expected.peak[i][0]), \
        f"working-set order {[s['id'] for s in sites]}"
    for s in sites:
        check_symbolized(s, names)
        assert (s["peak_interval_written_bytes"], s["peak_interval_seq"]) == expected.peak[s["id"]], s
        assert s["written_bytes"] == expected.written[s["id"]], s
    top = {names[s["id"]]: s for s in sites[:2]}
    assert set(top) == {"alloc_full", "churn_loop"}, f"working-set top two: {list(top)}"
    seq = {s["label"]: s["seq"] for s in out.snapshots}
    assert (top["churn_loop"]["peak_interval_written_bytes"], top["churn_loop"]["peak_interval_seq"]) \
        == (CHURN_BYTES, seq["churned"]), top["churn_loop"]
    assert (top["alloc_full"]["peak_interval_written_bytes"], top["alloc_full"]["peak_interval_seq"]) \
        == (BIG_BYTES, seq["made"]), top["alloc_full"]


@case
def per_interval_churn_is_the_snapshots_churn():
    out, summary, text, _ = traced()
    want = {s["seq"]: s["churn_bytes"] for s in out.snapshots}
    got = {row["seq"]: row["churn_bytes"] for row in summary["snapshots"]}
    assert got == want, f"--json per-interval churn {got} != the snapshots' {want}"
    assert out.snapshot("churned")["churn_bytes"] == CHURN_BYTES
    assert summary["totals"]["churn_bytes"] == sum(want.values())
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["seq", "time_ms"])
    columns = lines[head].split()
    assert "churn_MiB" in columns, lines[head]
    shown = {}
    for line in lines[head + 1:head + 1 + len(want)]:
        cells = line.split()
        shown[int(cells[0])] = cells[columns.index("churn_MiB")]
    assert shown == {seq: f"{value / MIB:.2f}" for seq, value in want.items()}, shown
    page = os.path.join(tmpdir(), "page.html")
    report(out.path, "--html", page)
    timeline = page_data(page)["processes"][0]["heatmap"]["timeline"]
    assert timeline["churn_bytes"] == [want[seq] for seq in sorted(want)], timeline["churn_bytes"]


def text_view(text, heading):
    """The entries of the text report's table that starts with heading: [(site, line)]."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if heading in line), None)
    assert start is not None, f"no {heading!r} in the text report"
    entries = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        if line[:10].strip():
            entries.append((line.split()[0], line))
    return entries


@case
def text_report_names_the_functions():
    out, summary, text, names = traced()
    for name, heading in (("churn", "call site(s) by churn"),
                          ("working_set", "call site(s) by write working set"),
                          ("over_allocation", "call site(s) by over-allocation")):
        entries = text_view(text, heading)
        sites = view(summary, name)
        assert [e[0] for e in entries] == [str(s["id"]) for s in sites], (name, entries)
        for (_, line), site in zip(entries, sites):
            assert names[site["id"]] in line, f"{name}: {line!r} does not name {names[site['id']]}"
    churn = text_view(text, "call site(s) by churn")[0][1]
    assert "churn_loop" in churn and f"{CHURN_BYTES / MIB:.2f}" in churn, churn
    top = " ".join(line for _, line in text_view(text, "call site(s) by write working set")[:2])
    assert "alloc_full" in top and "churn_loop" in top, top
    over = [line for _, line in text_view(text, "call site(s) by over-allocation")]
    assert any("alloc_none" in line and f"{(BIG_BYTES - PAGE) / MIB:.2f}" in line for line in over), over


@case
def page_shows_the_same_views():
    out, summary, _, _ = traced()
    page = os.path.join(tmpdir(), "page.html")
    report(out.path, "--html", page)
    process = page_data(page)["processes"][0]
    assert process["site_views"] == summary["site_views"], "the page's site views differ from --json"
    assert process["top_sites"] == summary["top_sites"], "the page's top sites differ from --json"


# ---- hand-made files, in this process

WW = load_launcher("writewatch_report_sites")


def header():
    return {"type": "header", "format": 1, "tool": "writewatch", "version": "0.1.0", "pid": 7,
            "ppid": 1, "cause": "start", "exe": "/usr/bin/demo", "argv": ["demo"],
            "page_size": PAGE, "tracking": "on"}


def snapshot(seq, churn=0):
    return {"type": "snapshot", "seq": seq, "trigger": "interval", "label": None, "t_ns": seq,
            "written_pages": 0, "written_bytes": 0, "churn_bytes": churn}


def summarise(records):
    path = os.path.join(tmpdir(), "hand.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    summary = WW.Summary(keep_rows=True)
    with open(path, "rb") as f:
        WW.read_file(f, summary, None)
    summary.finish(heatmap=False)
    return summary


@case
def views_survive_the_bounded_site_table():
    """With the site table full, the sites that weigh least go; a site that mapped much and
    wrote nothing is kept for the over-allocation view, a churning one for the churn view."""
    saved = WW.MAX_SITES
    WW.MAX_SITES = 8
    try:
        records = [header(), snapshot(1),
                   {"type": "site", "seq": 1, "id": 1000, "frames": ["idle (a.c:1)"],
                    "bytes_made": 1 << 30, "ever_written_bytes": 0, "written_bytes": 0},
                   {"type": "site", "seq": 1, "id": 1001, "frames": ["churner (a.c:2)"],
                    "bytes_made": 64 * PAGE, "ever_written_bytes": 64 * PAGE,
                    "written_bytes": 64 * PAGE, "churn_bytes": 64 * PAGE}]
        for seq in range(2, 12):
            records.append(snapshot(seq))
            records += [{"type": "site", "seq": seq, "id": seq * 10 + k, "frames": [f"f{k} (b.c:{k})"],
                         "bytes_made": (k + 1) * PAGE, "ever_written_bytes": (k + 1) * PAGE,
                         "written_bytes": (k + 1) * PAGE} for k in range(3)]
        summary = summarise(records)
        assert summary.sites_dropped > 0, "the table never filled"
        json_views = WW.site_views_json(summary)
        assert [s["id"] for s in json_views["over_allocation"]][:1] == [1000], json_views["over_allocation"]
        assert json_views["over_allocation"][0]["never_written_bytes"] == 1 << 30
        assert [s["id"] for s in json_views["churn"]] == [1001], json_views["churn"]
        assert json_views["churn"][0]["frames"] == ["churner (a.c:2)"]
    finally:
        WW.MAX_SITES = saved


@case
def working_set_from_region_records():
    """A site known only from the region records that name it (site records without figures):
    its working set is the most pages those regions wrote in one interval."""
    def region(seq, pages):
        return {"type": "region", "seq": seq, "id": 5, "start": "0x10000000", "end": "0x10100000",
                "kind": "mmap", "name": "", "new": seq == 1, "site": "s", "written_pages": pages,
                "ever_written_pages": pages, "ranges": [[0, pages]]}
    records = [header(), snapshot(1), region(1, 5), {"type": "site", "seq": 1, "id": "s",
                                                     "frames": ["g (c.c:9)"]},
               snapshot(2, churn=3 * PAGE), region(2, 9), snapshot(3), region(3, 2)]
    summary = summarise(records)
    site = WW.site_views_json(summary)["working_set"][0]
    assert (site["id"], site["peak_interval_written_bytes"], site["peak_interval_seq"],
            site["written_bytes"]) == ("s", 9 * PAGE, 2, 16 * PAGE), site
    rows = WW.summary_json("hand.jsonl", summary)["snapshots"]
    assert [row["churn_bytes"] for row in rows] == [0, 3 * PAGE, 0], rows


finish()
