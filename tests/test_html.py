#!/usr/bin/env python3
# The report's aggregation and its HTML page (scripts/writewatch report ... --html OUT):
# known answers on small hand-made files (heatmap bands and columns, the "other" row, the
# region cap, long lines, sites, the process tree, bad input), and a real browser (Debian's
# chromium, headless) loading the page of a real run under the shim: no script error, the
# heatmap and the figures the test computes itself from the JSONL, a non-blank screenshot.
import glob
import html.parser
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wwtest import (BUILD, LIB, LAUNCHER, ROOT, Skip, case, finish, load_launcher, tmpdir,  # noqa: E402
                    tracked_env)

PAGE = 4096
MIB = 1024 * 1024
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]




WW = load_launcher("writewatch_report")


# ---------------------------------------------------------------------------------------------
# hand-made files


def header(pid=4242, **fields):
    record = {"type": "header", "format": 1, "tool": "writewatch", "version": "0.1.0", "pid": pid,
              "ppid": 1, "cause": "start", "exe": "/usr/bin/demo", "argv": ["demo"],
              "page_size": PAGE, "start_realtime_ns": 1700000000000000000 + pid, "interval_ms": 50,
              "signal": "USR2", "ranges": True, "follow": True, "tracking": "on",
              "method": "uffd-wp-async+pagemap-scan", "discovery": "hooks+proc-maps",
              "tracked": ["anonymous-private"], "untracked": ["shared", "file-backed"]}
    record.update(fields)
    return record


def snapshot(seq, written_pages=0, **fields):
    record = {"type": "snapshot", "seq": seq, "trigger": "interval", "label": None,
              "t_ns": seq * 50000000, "tracked_regions": 3, "tracked_bytes": 1000 * PAGE,
              "written_pages": written_pages, "written_bytes": written_pages * PAGE,
              "ever_written_bytes": 0, "new_regions": 0, "retired_regions": 0, "retired_bytes": 0,
              "retired_written_bytes": 0, "discarded_bytes": 0, "lost_regions": 0, "scan_ns": 1000}
    record.update(fields)
    return record


def region(seq, region_id, start, pages, ranges, kind="mmap", name="", new=False, **fields):
    written = sum(count for _, count in ranges)
    record = {"type": "region", "seq": seq, "id": region_id, "start": hex(start),
              "end": hex(start + pages * PAGE), "prot": "rw-", "kind": kind, "name": name,
              "new": new, "ranges": ranges, "written_pages": written, "ever_written_pages": written}
    record.update(fields)
    return record


def write_jsonl(path, records, tail=""):
    with open(path, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
        f.write(tail)
    return path


def run_report(args, input=None):
    return subprocess.run([sys.executable, LAUNCHER, "report"] + args, capture_output=True,
                          text=True, timeout=120, input=input)


def page_data(path):
    """The data embedded in a generated page."""
    with open(path) as f:
        page = f.read()
    match = re.search(r'<script type="application/json" id="ww-data">(.*?)</script>', page, re.S)
    assert match, "no data block in the page"
    return json.loads(match.group(1)), page


def summarise(path):
    """Pass 1 of the report on path, in this process; the Result (not finished)."""
    summary = WW.Summary(keep_rows=False)
    with open(path, "rb") as f:
        WW.read_file(f, summary, None)
    return summary


def finished(path):
    summary = summarise(path)
    summary.finish()
    return WW.Result(WW.Input(path), summary)


LAYOUT = [  # id, start, pages: A is 4 bands of 256 pages, B one band, C 16 bands of 512 pages
    (1, 0x7F0000000000, 1024), (2, 0x5000000, 10), (3, 0x7F1000000000, 8192)]


def layout_records():
    a, b, c = ((region_id, start, pages) for region_id, start, pages in LAYOUT)
    return [header(),
            snapshot(1, 212, label="first"),
            region(1, *a, [[0, 10], [250, 10]], new=True),
            region(1, *c, [[8000, 192]], new=True),
            snapshot(2, 27),
            region(2, *b, [[0, 3]], kind="heap", name="[heap]", new=True),
            region(2, *a, [[1000, 24]]),
            snapshot(3, 0, lost_regions=1),
            dict(region(3, *a, []), lost=True, written_pages=0)]


@case
def heatmap_bands_known_answer():
    """Rows by address, a region in ceil(pages/256) bands (16 at most), pages in their bands."""
    path = write_jsonl(os.path.join(tmpdir(), "layout.jsonl"), layout_records())
    plan, builder = WW.heat_pass(finished(path))
    data = builder.page_data()
    rows = [(row["id"], row["band"], row["first_page"], row["pages"]) for row in data["rows"]]
    want = [(2, 0, 0, 10)] + [(1, b, b * 256, 256) for b in range(4)] + \
           [(3, b, b * 512, 512) for b in range(16)]
    assert rows == want, f"rows {rows}"
    assert data["columns"] == 3 and data["width"] == 1, (data["columns"], data["width"])
    cells = {(r, data["cells"][r][i]): data["cells"][r][i + 1]
             for r in range(len(rows)) for i in range(0, len(data["cells"][r]), 2)}
    assert cells == {(1, 0): 16, (2, 0): 4, (20, 0): 192, (0, 1): 3, (4, 1): 24}, cells
    assert data["lost"][1:5] == [[2]] * 4 and data["lost"][0] == [], data["lost"][:6]
    assert data["timeline"]["written_bytes"] == [212 * PAGE, 27 * PAGE, 0], data["timeline"]
    assert data["labels"] == [[0, "first"]], data["labels"]


@case
def html_page_of_hand_made_file():
    """The page embeds the same rows, cells and figures; nothing in it loads from elsewhere."""
    tmp = tmpdir()
    path = write_jsonl(os.path.join(tmp, "layout.jsonl"), layout_records())
    out = os.path.join(tmp, "page.html")
    result = run_report([path, "--html", out])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}: 1 process(es)"), result.stdout
    data, page = page_data(out)
    process = data["processes"][0]
    assert process["detailed"] and len(process["heatmap"]["rows"]) == 21
    figures = process["figures"]
    assert (figures["snapshots"], figures["written_bytes"], figures["regions_seen"]) == \
        (3, 239 * PAGE, 3), figures
    assert [r["id"] for r in process["top_regions"]] == [3, 1, 2], process["top_regions"]
    assert ["program", "/usr/bin/demo"] in process["meta"], process["meta"]
    assert ["tracking", "on (method uffd-wp-async+pagemap-scan)"] in process["meta"]
    for forbidden in ("<link", "src=", "@import", "url(", "https:", "fetch(", "XMLHttpRequest"):
        assert forbidden not in page, f"the page contains {forbidden!r}"
    assert "default-src 'none'" in page, "no Content-Security-Policy"
    assert re.findall(r"http://[^\"' ]*", page) == ["http://www.w3.org/2000/svg"], \
        re.findall(r"http://[^\"' ]*", page)


@case
def html_escapes_hostile_strings():
    """argv, labels and names cannot end the data block or inject markup."""
    tmp = tmpdir()
    evil = "</script><script>window.pwned=1</script><!--"
    path = write_jsonl(os.path.join(tmp, "evil.jsonl"), [
        header(argv=["demo", evil], exe="/tmp/</title><b>x"), snapshot(1, 1, label=evil),
        region(1, 1, 0x1000000, 4, [[0, 1]], name=evil)])
    out = os.path.join(tmp, "page.html")
    assert run_report([path, "--html", out]).returncode == 0
    data, page = page_data(out)
    assert "<script>window" not in page and "</title><b>" not in page, "markup got through"
    assert page.count("</script>") == 3, "a string ended a script element"
    process = data["processes"][0]
    assert process["heatmap"]["labels"][0][1] == evil, process["heatmap"]["labels"]
    assert ["argv", "demo '" + evil + "'"] in process["meta"], process["meta"]


@case
def columns_merge_beyond_the_limit():
    """2500 snapshots: 3 per column, 834 columns; sums exact; the page says so."""
    tmp = tmpdir()
    records = [header()]
    for seq in range(1, 2501):
        records += [snapshot(seq, seq % 7, tracked_bytes=seq * PAGE, retired_written_bytes=PAGE),
                    region(seq, 1, 0x1000000, 64, [[0, seq % 7]] if seq % 7 else [[0, 0]])]
    path = write_jsonl(os.path.join(tmp, "long.jsonl"), records)
    out = os.path.join(tmp, "page.html")
    assert run_report([path, "--html", out]).returncode == 0
    process = page_data(out)[0]["processes"][0]
    heat = process["heatmap"]
    assert (heat["columns"], heat["width"]) == (834, 3), (heat["columns"], heat["width"])
    line = heat["timeline"]
    assert line["count"][:2] == [3, 3] and line["count"][-1] == 1, line["count"][-3:]
    assert line["written_bytes"][0] == (1 + 2 + 3) * PAGE and line["retired_written_bytes"][5] == 3 * PAGE
    assert line["tracked_bytes"][0] == 3 * PAGE, "tracked is the column's last snapshot's"
    assert sum(line["written_bytes"]) == sum(seq % 7 for seq in range(1, 2501)) * PAGE
    cells = heat["cells"][0]
    assert sum(cells[1::2]) == sum(seq % 7 for seq in range(1, 2501)), "heatmap pages"
    assert any("merges 3 consecutive snapshots" in note for note in process["notes"]), process["notes"]
    assert len(json.dumps(heat)) < 200000, "the page's heatmap is not small"


@case
def least_written_regions_share_the_other_row():
    """300 one-band regions, region i writing i pages: 239 rows, then "other" with the 61 least."""
    records = [header(), snapshot(1, sum(range(1, 301)))]
    records += [region(1, i, 0x1000000 + i * 0x100000, 8, [[0, i]], new=True)
                for i in range(1, 301)]
    path = write_jsonl(os.path.join(tmpdir(), "many.jsonl"), records)
    plan, builder = WW.heat_pass(finished(path))
    data = builder.page_data()
    assert len(data["rows"]) == WW.HEATMAP_ROWS == 240, len(data["rows"])
    other = data["rows"][-1]
    assert other.get("other") and other["regions"] == 61 and other["written_pages"] == sum(range(1, 62)), other
    assert data["cells"][-1] == [0, sum(range(1, 62))], data["cells"][-1]
    assert [row["id"] for row in data["rows"][:-1]] == list(range(62, 301)), "rows by address"


@case
def region_table_is_bounded():
    """With room for 100 regions, 1000 distinct ones: the table stays within the cap, every region
    is counted once, the one that wrote most stays exact, and the report says it is approximate."""
    saved = WW.MAX_REGIONS
    WW.MAX_REGIONS = 100
    try:
        records = [header()]
        for seq in range(1, 11):
            records.append(snapshot(seq, 100 + 100))
            records.append(region(seq, 1, 0x1000000, 1000, [[0, 100]], new=seq == 1))
            records += [region(seq, 1000 + seq * 100 + i, 0x2000000 + (seq * 100 + i) * PAGE, 1,
                               [[0, 1]], new=True) for i in range(100)]
        records.append(snapshot(11, 0))
        records.append(region(11, 1005 + 100, 0x3000000, 1, [[0, 0]], new=False))  # seen before
        path = write_jsonl(os.path.join(tmpdir(), "cap.jsonl"), records)
        summary = summarise(path)
        assert len(summary.regions) <= 100, len(summary.regions)
        assert summary.regions_seen == 1001, summary.regions_seen
        assert summary.regions_dropped > 0
        top = summary.top_regions()
        assert top[0][0] == 1 and top[0][1].written_pages == 1000, (top[0][0], top[0][1].written_pages)
        assert any("more than 100 regions" in p for p in WW.problems(path, summary)), \
            WW.problems(path, summary)
    finally:
        WW.MAX_REGIONS = saved


@case
def long_lines_are_streamed():
    """A region record longer than the line limit is read without being held: its figures count
    and its ranges still land in the right bands; other long lines are skipped as malformed."""
    saved = WW.MAX_LINE_BYTES, WW.LONG_LINE_CHUNK
    WW.MAX_LINE_BYTES, WW.LONG_LINE_CHUNK = 4096, 333
    try:
        ranges = [[2 * i, 1] for i in range(3000)]      # pages 0, 2, ... 5998: ~35 KB of ranges
        records = [header(argv=["x" * 9000]), snapshot(1, 3000),
                   region(1, 7, 0x1000000, 6000, ranges, new=True), snapshot(2, 1),
                   region(2, 7, 0x1000000, 6000, [[5999, 1]])]
        path = write_jsonl(os.path.join(tmpdir(), "long.jsonl"), records,
                           tail=json.dumps(region(3, 7, 0x1000000, 6000, ranges))[:6000])
        summary = summarise(path)
        assert summary.header is None, "a 9 KB header line should have been skipped"
        assert summary.malformed == 2 and summary.truncated_tail, (summary.malformed, summary.truncated_tail)
        assert summary.long_lines == 1, summary.long_lines
        assert summary.regions[7].written_pages == 3001, summary.regions[7].written_pages
        summary.finish()
        plan, builder = WW.heat_pass(WW.Result(WW.Input(path), summary))
        data = builder.page_data()
        bands = len(data["rows"])                      # 6000 pages: 16 bands of 375
        assert bands == 16 and data["rows"][1]["first_page"] == 375, data["rows"][:2]
        want = [0] * 16
        for first, _ in ranges:
            want[first // 375] += 1
        got = [dict(zip(row[::2], row[1::2])).get(0, 0) for row in data["cells"]]
        assert got == want, f"bands {got} != {want}"
        assert data["cells"][15] == [0, want[15], 1, 1], data["cells"][15]
    finally:
        WW.MAX_LINE_BYTES, WW.LONG_LINE_CHUNK = saved


@case
def sites_when_present():
    """site records (the shim's call sites): top sites by bytes written, their churn and peak,
    stacks as module+offset (or symbolized); region records name their site."""
    tmp = tmpdir()
    lib = "/nonexistent/libdemo.so"           # not on this machine: module+offset, no addr2line
    records = [header(), snapshot(1, 30),
               {"type": "module", "path": lib, "start": "0x7f0000000000", "end": "0x7f0000100000",
                "bias": "0x7f0000000000", "build_id": "00ff"},
               {"type": "site", "seq": 1, "id": 9, "frames": ["0x7f0000001235", "0x5555"],
                "regions_made": 3, "bytes_peak": 8 * PAGE, "bytes_made": 32 * PAGE,
                "written_bytes": 20 * PAGE,
                "ever_written_bytes": 20 * PAGE, "churn_bytes": 0, "interval_churn_bytes": 0},
               {"type": "site", "seq": 1, "id": 4, "frames": ["main (t.c:40)"], "regions_made": 1,
                "bytes_peak": PAGE, "written_bytes": 10 * PAGE, "churn_bytes": 0},
               region(1, 1, 0x1000000, 64, [[0, 20]], site=9, new=True),
               region(1, 2, 0x2000000, 64, [[0, 10]], site=4, new=True),
               snapshot(2, 5),
               {"type": "site", "seq": 2, "id": 4, "regions_made": 2, "bytes_peak": 2 * PAGE,
                "written_bytes": 5 * PAGE, "churn_bytes": 3 * PAGE, "interval_churn_bytes": 3 * PAGE},
               region(2, 2, 0x2000000, 64, [[0, 5]], site=4)]
    path = write_jsonl(os.path.join(tmp, "sites.jsonl"), records)
    result = run_report([path, "--json"])
    assert result.returncode == 0 and "unknown type" not in result.stderr, result.stderr
    sites = json.loads(result.stdout)["top_sites"]
    got = [(s["id"], s["written_bytes"], s["churn_bytes"], s["bytes_peak"], s["regions"],
            s["never_written_bytes"]) for s in sites]
    assert got == [(9, 20 * PAGE, 0, 8 * PAGE, 3, 12 * PAGE), (4, 15 * PAGE, 3 * PAGE, 2 * PAGE, 2, 0)], got
    assert sites[0]["frames"] == ["libdemo.so+0x1235", "0x5555"], sites[0]["frames"]
    assert sites[1]["frames"] == ["main (t.c:40)"], sites[1]["frames"]
    text = run_report([path]).stdout
    assert "top 2 call site(s) by bytes written" in text and "libdemo.so+0x1235" in text, text
    out = os.path.join(tmp, "page.html")
    assert run_report([path, "--html", out]).returncode == 0
    process = page_data(out)[0]["processes"][0]
    assert process["top_sites"][0]["frames"][0] == "libdemo.so+0x1235"
    assert process["heatmap"]["rows"][0]["site"] == 9
    # the older provisional form: per-interval pages and readable frames
    old = write_jsonl(os.path.join(tmp, "old.jsonl"), [
        header(), snapshot(1, 2), {"type": "site", "id": "s1", "written_pages": 2,
                                   "stack": [{"function": "f", "file": "a.c", "line": 3}]}])
    sites = json.loads(run_report([old, "--json"]).stdout)["top_sites"]
    assert [(s["id"], s["written_bytes"], s["frames"]) for s in sites] == \
        [("s1", 2 * PAGE, ["f (a.c:3)"])], sites


@case
def build_ids_are_read():
    """The build-id check that guards symbolization reads real ELF notes."""
    python = os.path.realpath(sys.executable)
    found = WW.file_build_id(python)
    assert found is None or re.fullmatch(r"[0-9a-f]{16,64}", found), found
    assert WW.file_build_id(__file__) is None
    readelf = shutil.which("readelf")
    if readelf and found:
        notes = subprocess.run([readelf, "-n", python], capture_output=True, text=True).stdout
        assert found in notes, f"build-id {found} not in readelf's notes"
    assert WW.addr2line(python, "not-its-build-id", [0x1000]) == {}, "a foreign build was used"


def tree_files(tmp):
    """A process tree in five files: 100 starts, forks 101, which execs; 102 is spawned by 100
    (vfork: cause start, ppid 100); 200 is unrelated. Start times order them."""
    specs = [("a", 100, dict(cause="start", ppid=1), 1),
             ("b", 101, dict(cause="fork", ppid=100, parent_pid=100), 2),
             ("c", 101, dict(cause="exec", ppid=100, exe="/usr/bin/child"), 3),
             ("d", 102, dict(cause="start", ppid=100, exe="/usr/bin/spawned"), 4),
             ("e", 200, dict(cause="start", ppid=1, exe="/usr/bin/other"), 5)]
    paths = []
    for name, pid, fields, order in specs:
        records = [header(pid=pid, start_realtime_ns=1700000000000000000 + order, **fields),
                   snapshot(1, order), region(1, 1, 0x1000000, 16, [[0, order]], new=True)]
        paths.append(write_jsonl(os.path.join(tmp, f"ww.{name}.{pid}.jsonl"), records))
    with open(os.path.join(tmp, "notes.txt"), "w") as f:
        f.write("not writewatch output\n")
    return paths


@case
def process_tree_links():
    """fork, exec and ppid links, in text, --json and the page; a directory is read by name."""
    tmp = tmpdir()
    tree_files(tmp)
    result = run_report([tmp, "--json"])
    assert result.returncode == 0, result.stderr
    assert "skipped 1 file(s) that are not writewatch output (notes.txt)" in result.stderr, result.stderr
    data = json.loads(result.stdout)
    links = [(p["header"]["pid"], p["parent"], p["link"]) for p in data["processes"]]
    assert links == [(100, None, None), (101, 0, "fork"), (101, 1, "exec"), (102, 0, "child"),
                     (200, None, None)], links
    assert data["tree"] == [{"process": 0, "depth": 0}, {"process": 1, "depth": 1},
                            {"process": 2, "depth": 2}, {"process": 3, "depth": 1},
                            {"process": 4, "depth": 0}], data["tree"]
    text = run_report([tmp]).stdout
    assert "process tree (5 file(s)):" in text and "      exec: pid 101 /usr/bin/child [exec]" in text, text
    assert text.count("=" * 100) == 4, "the five reports are not separated"
    out = os.path.join(tmp, "page.html")
    assert run_report(sorted(glob.glob(os.path.join(tmp, "ww.*.jsonl"))) + ["--html", out]).returncode == 0
    page = page_data(out)[0]
    assert page["tree"] == [[0, 0], [1, 1], [2, 2], [3, 1], [4, 0]], page["tree"]


@case
def bad_input_is_reported_not_fatal():
    """Truncated last line, unknown record, junk: messages, the rest reported, exit 0; exit 1 only
    when nothing at all could be read."""
    tmp = tmpdir()
    good = write_jsonl(os.path.join(tmp, "good.jsonl"),
                       layout_records() + [{"type": "from_the_future", "x": 1}],
                       tail='{"type":"snapshot","seq":4,"trig')
    junk = os.path.join(tmp, "junk.txt")
    with open(junk, "w") as f:
        f.write("hello\n")
    out = os.path.join(tmp, "page.html")
    result = run_report([good, junk, os.path.join(tmp, "missing.jsonl"), "--html", out])
    assert result.returncode == 0, result.stderr
    for message in (f"{good}: skipped 1 malformed line(s), the last one cut short",
                    f"{good}: ignored 1 record(s) of unknown type (from_the_future)",
                    f"{junk}: not a writewatch output file; skipped",
                    "missing.jsonl: No such file or directory; skipped"):
        assert message in result.stderr, f"{message!r} not in {result.stderr!r}"
    data = page_data(out)[0]
    assert data["processes"][0]["figures"]["snapshots"] == 3
    assert any("cut short" in p for p in data["processes"][0]["problems"])
    assert [s["file"] for s in data["skipped"]] == [junk, os.path.join(tmp, "missing.jsonl")]
    nothing = run_report([junk, os.path.join(tmp, "missing.jsonl")])
    assert nothing.returncode == 1 and "nothing could be read from the 2 input(s)" in nothing.stderr, \
        nothing.stderr
    empty_dir = os.path.join(tmp, "empty")
    os.mkdir(empty_dir)
    empty = run_report([empty_dir])
    assert empty.returncode == 1 and "no files in this directory" in empty.stderr, empty.stderr
    with open(good) as f:
        piped = run_report(["-", "--html", os.path.join(tmp, "stdin.html")], input=f.read())
    assert piped.returncode == 0, piped.stderr
    assert page_data(os.path.join(tmp, "stdin.html"))[0]["processes"][0]["figures"]["snapshots"] == 3
    assert run_report([good, "--html"]).returncode == 2, "--html without a file name"


@case
def html_never_written_over_an_input():
    """--html naming one of the input files: a usage error, the input untouched."""
    tmp = tempfile.mkdtemp(prefix="ww-html-")
    path = os.path.join(tmp, "in.jsonl")
    write_jsonl(path, [header(), snapshot(1, 0)])
    before = open(path, "rb").read()
    for out in (path, os.path.join(tmp, ".", "in.jsonl")):
        p = run_report([path, "--html", out])
        assert p.returncode == 2 and "one of the inputs" in p.stderr, (p.returncode, p.stderr)
    assert open(path, "rb").read() == before, "the input was changed"


@case
def text_json_and_page_agree():
    """The text report's totals, --json and the page's figures are the same numbers."""
    tmp = tmpdir()
    path = write_jsonl(os.path.join(tmp, "layout.jsonl"), layout_records())
    text = run_report([path]).stdout
    summary = json.loads(run_report([path, "--json"]).stdout)
    out = os.path.join(tmp, "page.html")
    run_report([path, "--html", out])
    figures = page_data(out)[0]["processes"][0]["figures"]
    totals = summary["totals"]
    assert figures["written_bytes"] == totals["written_bytes"] == 239 * PAGE
    assert figures["duration_ns"] == totals["duration_ns"] == 150000000
    assert f"3 snapshot(s) over 0.150 s, {239 * PAGE / MIB:.2f} MiB written" in text, text


# ---------------------------------------------------------------------------------------------
# the real browser


def find_browser():
    """chromium's path, installing Debian's package when it is missing and we may; or Skip."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("WRITEWATCH_NO_BROWSER_INSTALL") == "1":
        raise Skip("no chromium, and WRITEWATCH_NO_BROWSER_INSTALL=1")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Skip("no chromium, and no apt-get as root to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "install", "-y", "-qq", "chromium"],
                    ["sh", "-c", "apt-get update -qq && apt-get install -y -qq chromium"]):
        try:
            subprocess.run(command, env=env, capture_output=True, timeout=900)
        except subprocess.TimeoutExpired:
            break
        if shutil.which("chromium"):
            return shutil.which("chromium")
    raise Skip("no chromium, and apt-get install chromium failed")


def browse(browser, url, *extra, timeout=60):
    """Run headless chromium on url with a fresh profile; (stdout, stderr)."""
    profile = tempfile.mkdtemp(prefix="wwtest.chromium.")
    try:
        result = subprocess.run([browser] + BROWSER_FLAGS + [f"--user-data-dir={profile}",
                                "--enable-logging=stderr", "--v=0"] + list(extra) + [url],
                                capture_output=True, timeout=timeout)
        return result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class Dom(html.parser.HTMLParser):
    """What the test reads of a dumped DOM: attributes of some elements, and texts by id/role."""

    def __init__(self):
        super().__init__()
        self.root = self.body = None
        self.canvases, self.figures, self.tree, self.sections = [], {}, [], []
        self.texts = {}
        self.section = None
        self.capture = []   # [(key, depth)] of elements whose text is collected
        self.depth = 0
        self.site_rows = {}  # section -> [[cell text, ...], ...] of its top sites table
        self.table = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.depth += 1
        if tag == "html":
            self.root = a
        elif tag == "body":
            self.body = a
        elif tag == "section" and "proc" in (a.get("class") or ""):
            self.section = int(a["data-proc"])
            self.sections.append(self.section)
        elif tag == "canvas":
            self.canvases.append(dict(a, section=self.section))
        elif tag == "li" and "data-depth" in a:
            self.tree.append((int(a["data-proc"]), int(a["data-depth"])))
        elif tag == "table" and a.get("data-table") == "sites":
            self.table = self.site_rows.setdefault(self.section, [])
        elif tag == "tr" and self.table is not None:
            self.table.append([])
        key = None
        if "data-fig" in a:
            key = ("fig", self.section, a["data-fig"])
        elif a.get("id") in ("ww-errors", "ww-tip"):
            key = a["id"]
            self.texts[key + ":attrs"] = a
        if tag == "td" and self.table:
            self.table[-1].append("")
            key = ("td",)
        if key:
            self.texts[key] = ""
            self.capture.append((key, self.depth))
        if tag in ("meta", "link", "br", "img", "input"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        while self.capture and self.capture[-1][1] >= self.depth:
            self.capture.pop()
        self.depth -= 1
        if tag == "section":
            self.section = None
        if tag == "table":
            self.table = None

    def handle_data(self, data):
        for key, _ in self.capture:
            if key == ("td",):
                self.table[-1][-1] += data
            else:
                self.texts[key] += data


def exact_seconds(ns):
    """ns as seconds with 3 decimals, rounded half to even on the exact value."""
    millis, rest = divmod(ns, 1000000)
    if rest * 2 > 1000000 or (rest * 2 == 1000000 and millis % 2):
        millis += 1
    return f"{millis // 1000}.{millis % 1000:03d}"


def expected_from_jsonl(path):
    """The figures and the heatmap of one file, computed here from its records (independently of
    the report's code, by the rule documented in the README)."""
    records = [json.loads(line) for line in open(path, "rb") if line.strip()]
    head = records[0]
    page_size = head["page_size"]
    snaps = [r for r in records if r["type"] == "snapshot"]
    regions = [r for r in records if r["type"] == "region"]
    total, size, start = {}, {}, {}
    for r in regions:
        total[r["id"]] = total.get(r["id"], 0) + r["written_pages"]
        size[r["id"]] = max(size.get(r["id"], 0), int(r["end"], 16) - int(r["start"], 16))
        start[r["id"]] = int(r["start"], 16)
    written = sorted((i for i in total if total[i] > 0), key=lambda i: (start[i], i))
    rows, used = {}, 0
    for i in written:
        pages = -(-size[i] // page_size)
        bands = min(16, max(1, -(-pages // 256)))
        rows[i] = (used, bands, -(-pages // bands))
        used += bands
    assert used <= 240, f"{path}: {used} rows; this test does not model the 'other regions' row"
    cells = {}
    column = -1
    for r in records:
        if r["type"] == "snapshot":
            column += 1
        elif r["type"] == "region" and r["id"] in rows:
            first_row, bands, band_pages = rows[r["id"]]
            for first, count in r["ranges"]:
                for page in range(first, first + count):
                    key = (first_row + min(page // band_pages, bands - 1), column)
                    cells[key] = cells.get(key, 0) + 1
    sites = {}
    for r in records:
        if r["type"] == "site":
            site = sites.setdefault(r["id"], {"written": 0, "churn": 0, "frames": None})
            site["written"] += r.get("written_bytes", 0)
            site["churn"] = r.get("churn_bytes", site["churn"])
            site["frames"] = site["frames"] or r.get("frames")
    last = snaps[-1] if snaps else {}
    figures = {
        "snapshots": str(len(snaps)),
        "written_bytes": f"{sum(s['written_bytes'] for s in snaps) / MIB:.2f}",
        "final_tracked_bytes": f"{last.get('tracked_bytes', 0) / MIB:.2f}",
        "final_ever_written_bytes": f"{last.get('ever_written_bytes', 0) / MIB:.2f}",
        "retired_written_bytes": f"{sum(s['retired_written_bytes'] for s in snaps) / MIB:.2f}",
        "retired_bytes": f"{sum(s['retired_bytes'] for s in snaps) / MIB:.2f}",
        "discarded_bytes": f"{sum(s['discarded_bytes'] for s in snaps) / MIB:.2f}",
        "duration": exact_seconds(last.get("t_ns", 0)),
        "regions_seen": str(len(total)),
    }
    if any("churn_bytes" in s for s in snaps):
        figures["churn_bytes"] = f"{sum(s.get('churn_bytes', 0) for s in snaps) / MIB:.2f}"
    return {"header": head, "figures": figures, "rows": sum(b for _, b, _ in rows.values()),
            "columns": len(snaps), "cells": cells, "layout": rows, "total": total,
            "pages": sum(r["written_pages"] for r in regions if r["id"] in rows), "sites": sites}


def png_colours(path):
    """The distinct colours of a PNG (8-bit RGB/RGBA, not interlaced), decoded with zlib here;
    and the share of the most common one."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    assert depth == 8 and colour_type in (2, 6) and not interlace, (depth, colour_type, interlace)
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(b"".join(idat)), width * bpp
    previous, counts, offset = bytearray(stride), {}, 0
    for y in range(height):
        kind, line = raw[offset], bytearray(raw[offset + 1:offset + 1 + stride])
        offset += 1 + stride
        if kind == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, previous))
        elif kind == 3:
            for x in range(stride):
                line[x] = (line[x] + ((line[x - bpp] if x >= bpp else 0) + previous[x]) // 2) & 255
        elif kind == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b, c = previous[x], previous[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        for x in range(0, stride, bpp * 2):
            pixel = bytes(line[x:x + 3])
            counts[pixel] = counts.get(pixel, 0) + 1
        previous = line
    return len(counts), max(counts.values()) / sum(counts.values())


def build_workload(tmp):
    """tests/workload.c built as scripts/demo.sh builds it."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise Skip("no C compiler for tests/workload.c")
    out = os.path.join(tmp, "workload")
    result = subprocess.run([compiler, "-std=gnu11", "-O1", "-Wall", "-Wextra",
                             "-I" + os.path.join(ROOT, "include"), os.path.join(ROOT, "tests", "workload.c"),
                             "-o", out, "-ldl"], capture_output=True, text=True)
    assert result.returncode == 0, f"building the workload failed: {result.stderr}"
    return out


FORK_EXEC = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1]])
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@case
def browser_renders_a_real_run():
    """A real run under the shim (python3 forks, the child execs the workload, 50 ms snapshots),
    reported with --html, loaded by headless chromium: no script error, the heatmap rows, columns
    and pages and the figures this test computes from the JSONL, the tree, a hover tooltip, and a
    screenshot that is not blank."""
    began = time.monotonic()
    if not os.path.exists(LIB):
        raise Skip(f"{LIB} is not built (run make)")
    browser = find_browser()
    began = time.monotonic()                       # the install, if any, is set-up
    tmp = tmpdir()
    probe = os.path.join(tmp, "probe.html")
    with open(probe, "w") as f:
        f.write("<!DOCTYPE html><p id=p>static</p><script>p.textContent='ran'</script>")
    try:
        out, err = browse(browser, "file://" + probe, "--dump-dom", timeout=60)
    except subprocess.TimeoutExpired:
        raise Skip(f"{browser} did not finish a trivial page in 60 s")
    if ">ran<" not in out:
        raise Skip(f"{browser} cannot run a trivial page here: {err.strip().splitlines()[-1:]}")
    workload = build_workload(tmp)
    outdir = os.path.join(tmp, "out")
    os.mkdir(outdir)
    env = tracked_env(outdir, {"WRITEWATCH_INTERVAL_MS": "50"})
    run = subprocess.run([sys.executable, "-c", FORK_EXEC, workload], env=env, cwd=outdir,
                         capture_output=True, timeout=120)
    assert run.returncode == 0, f"the tracked run failed: {run.stderr[-500:]!r}"
    files = sorted(glob.glob(os.path.join(outdir, "ww.*.jsonl*")))
    assert len(files) == 3, f"expected python3, its fork child and the exec'd workload: {files}"
    page = os.path.join(tmp, "report.html")
    report = run_report([outdir, "--html", page])
    assert report.returncode == 0, report.stderr
    expected = [expected_from_jsonl(path) for path in files]
    causes = sorted(e["header"]["cause"] for e in expected)
    assert causes == ["exec", "fork", "start"], causes
    index = next(i for i, e in enumerate(expected) if e["header"]["exe"].endswith("/workload"))
    work = expected[index]
    big = max(work["total"], key=lambda i: work["total"][i])   # the 32 MiB fill
    first_row, bands, band_pages = work["layout"][big]
    hover_column = max(range(work["columns"]), key=lambda c: work["cells"].get((first_row, c), 0))
    hover_pages = work["cells"].get((first_row, hover_column), 0)
    assert hover_pages > 0, "the fill's first band has no writes"
    url = f"file://{page}#hover={index},{first_row},{hover_column}"
    dump, err = browse(browser, url, "--dump-dom", "--window-size=1280,1600")
    dom = Dom()
    dom.feed(dump)
    errors = dom.texts.get("ww-errors", "").strip()
    assert dom.body and dom.body.get("data-status") == "ok", \
        f"page status {dom.body and dom.body.get('data-status')}: {errors[:500]}"
    assert not errors and "data-errors" not in (dom.root or {}), f"script errors: {errors[:500]}"
    console = [line for line in err.splitlines() if ":CONSOLE" in line]
    assert not console, f"console messages: {console[:3]}"
    assert dom.body.get("data-processes") == "3" and sorted(dom.sections) == [0, 1, 2], dom.sections
    for i, e in enumerate(expected):
        canvas = next(c for c in dom.canvases if c["section"] == i)
        got = (int(canvas["data-rows"]), int(canvas["data-columns"]), int(canvas["data-pages"]),
               int(canvas["data-cells"]))
        want = (e["rows"], e["columns"], e["pages"], len(e["cells"]))
        assert got == want, f"{files[i]}: heatmap rows/columns/pages/cells {got} != {want}"
        for name, value in e["figures"].items():
            shown = dom.texts.get(("fig", i, name))
            assert shown == value, f"{files[i]}: figure {name} shows {shown!r}, the JSONL says {value!r}"
    depth = dict(dom.tree)
    by_cause = {e["header"]["cause"]: i for i, e in enumerate(expected)}
    assert (depth[by_cause["start"]], depth[by_cause["fork"]], depth[by_cause["exec"]]) == (0, 1, 2), dom.tree
    tip = dom.texts.get("ww-tip", "")
    attrs = dom.texts.get("ww-tip:attrs", {})
    assert "hidden" not in attrs and (attrs.get("data-row"), attrs.get("data-col")) == \
        (str(first_row), str(hover_column)), (attrs, tip)
    assert f"region #{big}" in tip and f"written: {hover_pages} pages" in tip, f"tooltip: {tip!r}"
    assert f"band 1 of {bands}" in tip or bands == 1, f"tooltip: {tip!r}"
    sites = work["sites"]
    if sites:                                  # a shim with call-site attribution
        rows = dom.site_rows.get(index, [])[1:]      # after the heading row
        assert len(rows) == min(10, len(sites)), f"{len(rows)} site rows for {len(sites)} sites"
        top = max(sites, key=lambda i: (sites[i]["written"], sites[i]["churn"], str(i)))
        assert rows[0][:2] == [str(top), f"{sites[top]['written'] / MIB:.2f}"], (rows[0], top, sites[top])
        if shutil.which("addr2line"):
            assert rows[0][-1].startswith("main in "), f"top site's stack not symbolized: {rows[0][-1]!r}"
    shot = os.path.join(tmp, "shot.png")
    browse(browser, "file://" + page, f"--screenshot={shot}", "--window-size=1280,1400",
           "--hide-scrollbars")
    assert os.path.exists(shot), "no screenshot written"
    colours, top_share = png_colours(shot)
    assert colours >= 40 and top_share < 0.95, f"screenshot looks blank: {colours} colours, " \
        f"the commonest {top_share:.0%} of the pixels"
    spent = time.monotonic() - began
    assert spent < 60, f"the browser test took {spent:.0f} s"
    print(f"  browser test: {len(files)} files, workload heatmap {work['rows']}x{work['columns']}, "
          f"{work['pages']} pages in {len(work['cells'])} cells, {len(sites)} sites, "
          f"screenshot {colours} colours, "
          f"{spent:.1f} s", flush=True)


if __name__ == "__main__":
    finish()
