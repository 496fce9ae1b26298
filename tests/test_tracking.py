#!/usr/bin/env python3
# Exact ground-truth tests of writewatch's tracking. C programs (tests/t_track_*.c) write known
# page sets in each phase, record them (tests/tprog.h) and end the phase with an API snapshot;
# every labelled snapshot must report exactly those pages in each window - nothing missing,
# nothing extra - and the figures the program knows (retired_*, discarded_bytes) exactly.
# Each program runs with several seeds (a different random page set per phase). Every output
# also passes the record checks of check_records.
import json
import os
import shutil
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wwtest  # noqa: E402
from wwtest import (PAGE, TESTS, Skip, case, check_expectations, finish, one_output,  # noqa: E402
                    run_tracked)

SEEDS = (1, 2, 3)
_runs = {}  # (program, seed, extra) -> (Output, outdir), or the AssertionError it gave


def prog(name):
    path = os.path.join(TESTS, name)
    if not os.access(path, os.X_OK):
        raise Skip(f"{path} not built (run make)")
    return path


def tracked(name, seed, extra=None):
    """Run a test program once under the shim (cached: several cases check one run)."""
    key = (name, seed, tuple(sorted((extra or {}).items())))
    if key not in _runs:
        try:
            p, outdir = run_tracked([prog(name), str(seed)], extra=extra, timeout=60)
            err = p.stderr.decode(errors="replace")
            assert p.returncode == 0, f"{name} {seed}: exit {p.returncode}: {err[-800:]}"
            assert "writewatch:" not in err, f"{name} {seed}: the shim warned: {err[-800:]}"
            _runs[key] = (one_output(outdir), outdir)
        except AssertionError as e:
            _runs[key] = e
    got = _runs[key]
    if isinstance(got, AssertionError):
        raise got
    return got


def expectations(outdir):
    with open(os.path.join(outdir, "expect.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def check_phases(name, prefixes, extra=None, seeds=SEEDS, kind=None):
    """The exact check of every window and figure the program recorded for snapshots whose
    label starts with one of prefixes, for each seed; with kind, the regions reporting pages
    in those windows must be of that kind."""
    for seed in seeds:
        out, outdir = tracked(name, seed, extra)
        lines = [e for e in expectations(outdir) if e["label"].startswith(prefixes)]
        assert lines, f"{name}: no expectations labelled {prefixes}"
        path = os.path.join(outdir, f"expect.{prefixes[0].rstrip('-')}.jsonl")
        with open(path, "w") as f:
            for e in lines:
                f.write(json.dumps(e) + "\n")
        try:
            check_expectations(out, path)
            if kind:
                check_kind(out, lines, kind)
        except AssertionError as e:
            raise AssertionError(f"seed {seed}: {e}") from None


def check_kind(out, lines, kind):
    for e in lines:
        if "field" in e or not e["pages"]:
            continue
        seq = out.snapshot(e["label"])["seq"]
        ws = int(e["start"], 16)
        we = ws + e["npages"] * PAGE
        for r in out.regions.get(seq, []):
            if int(r["start"], 16) < we and int(r["end"], 16) > ws:
                assert r["kind"] == kind, \
                    f"{e['label']}/{e['window']}: reported by a region of kind {r['kind']}, " \
                    f"not {kind}"


def check_records(out):
    """Invariants of every snapshot and region record of one output file: written_bytes is the
    sum of the regions' written_pages * page_size; ranges sorted, non-overlapping, merged and
    summing to written_pages (or absent with WRITEWATCH_RANGES=0); written <= ever <= size;
    ever_written_pages never falls for a region id while the region keeps its size; new:true
    never after a region's first record; no lost or untracked regions."""
    h = out.header
    assert h.get("tracking") == "on", f"tracking is {h.get('tracking')}: {h.get('reason')}"
    ps = h["page_size"]
    ranges_on = h["ranges"]
    alive = {}  # region id -> (pages, ever_written_pages) at its last record
    for snap in out.snapshots:
        seq = snap["seq"]
        regs = out.regions.get(seq, [])
        total = sum(r["written_pages"] for r in regs)
        assert snap["written_pages"] == total, \
            f"seq {seq}: written_pages {snap['written_pages']} != sum of regions {total}"
        assert snap["written_bytes"] == total * ps, \
            f"seq {seq}: written_bytes {snap['written_bytes']} != {total} pages * {ps}"
        assert snap["lost_regions"] == 0, f"seq {seq}: {snap['lost_regions']} lost regions"
        assert snap.get("untracked_regions", 0) == 0, f"seq {seq}: untracked regions"
        ids = [r["id"] for r in regs]
        assert len(ids) == len(set(ids)), f"seq {seq}: a region id twice: {ids}"
        spans = sorted((int(r["start"], 16), int(r["end"], 16)) for r in regs)
        for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
            assert e1 <= s2, f"seq {seq}: regions overlap: {s1:#x}-{e1:#x} and {s2:#x}-{e2:#x}"
        for r in regs:
            rid = r["id"]
            where = f"seq {seq} region {rid} ({r['kind']} {r['start']}-{r['end']})"
            start, end = int(r["start"], 16), int(r["end"], 16)
            assert start < end and start % ps == 0 and end % ps == 0, f"{where}: bad bounds"
            npages = (end - start) // ps
            assert not r.get("lost"), f"{where}: lost"
            assert r["written_pages"] > 0, f"{where}: emitted with nothing written"
            assert r["written_pages"] <= r["ever_written_pages"] <= npages, \
                f"{where}: written {r['written_pages']} ever {r['ever_written_pages']} pages {npages}"
            if ranges_on:
                rg = r["ranges"]
                assert sum(n for _, n in rg) == r["written_pages"], \
                    f"{where}: ranges sum != written_pages"
                prev_end = None
                for first, n in rg:
                    assert n > 0 and first >= 0 and first + n <= npages, \
                        f"{where}: range {[first, n]} outside the region"
                    assert prev_end is None or first > prev_end, \
                        f"{where}: ranges not sorted, overlapping or not merged: {rg[:20]}"
                    prev_end = first + n
            else:
                assert "ranges" not in r, f"{where}: ranges present with WRITEWATCH_RANGES=0"
            if rid in alive:
                old_pages, old_ever = alive[rid]
                if npages >= old_pages:  # the same memory (or moved or grown with it)
                    assert r["ever_written_pages"] >= old_ever, \
                        f"{where}: ever_written_pages fell from {old_ever} to " \
                        f"{r['ever_written_pages']}"
                assert not r["new"], f"{where}: new:true in a later record of the region"
            alive[rid] = (npages, r["ever_written_pages"])


# ---- hooked mmap regions (t_track_mmap) ----

@case
def test_mmap_random_writes():
    """Several regions written at random, re-written, only read (never reported), and a
    100-page region only read (0 reported) then written (exactly those pages)."""
    check_phases("t_track_mmap", ("mm-",), kind="mmap")


@case
def test_partial_munmap():
    """The middle third unmapped, the rest written: nothing reported in the third; its writes
    of the interval are exactly retired_written_bytes (retired_bytes, retired_regions exact);
    the high third is a new region (new_regions 1, new:true in its first record)."""
    check_phases("t_track_mmap", ("un-",))
    for seed in SEEDS:
        out, outdir = tracked("t_track_mmap", seed)
        hi = [e for e in expectations(outdir) if e["label"] == "un-after" and
              e.get("window") == "M-high"][0]
        regs = [r for r in out.regions.get(out.snapshot("un-after")["seq"], [])
                if r["start"] == hi["start"]]
        assert len(regs) == 1 and regs[0]["new"] is True, f"seed {seed}: high third {regs}"


@case
def test_mremap_maymove():
    """A 64-page region grown to 128 with MREMAP_MAYMOVE (a guard page forces the move), page
    50 written: reported at the new address with the pages written before the move in the same
    interval; nothing at the old address; moved pages not re-reported afterwards."""
    check_phases("t_track_mmap", ("mr1-",))


@case
def test_made_moved_and_unmapped_in_one_interval():
    """Mapped, written, grown and moved by mremap, written again, in one interval: one record
    at the new address, new:true, every page once; the same unmapped before the snapshot:
    retired_written_bytes counts each page once (not once before and once after the move)."""
    check_phases("t_track_mmap", ("mm-",))
    for seed in SEEDS:
        out, outdir = tracked("t_track_mmap", seed)
        win = [e for e in expectations(outdir) if e["label"] == "mm-moved" and "pages" in e][0]
        seq = out.snapshot("mm-moved")["seq"]
        regs = [r for r in out.regions.get(seq, []) if r["start"] == win["start"]]
        assert len(regs) == 1 and regs[0]["new"] is True, \
            f"seed {seed}: the moved region's first record: {regs and regs[0]}"


@case
def test_mremap_fixed():
    """MREMAP_MAYMOVE|MREMAP_FIXED to a reserved address (honoured), and onto memory written
    in the same interval (its writes retire exactly)."""
    check_phases("t_track_mmap", ("mr2-", "mr3-"))


@case
def test_map_fixed_over_half():
    """MAP_FIXED anonymous over the second half of a tracked region, one page written there:
    reported; the replaced half's writes retire exactly."""
    check_phases("t_track_mmap", ("mf-",))


@case
def test_mprotect_cycles():
    """PROT_READ and PROT_NONE regions made RW and written; RW->RO->RW cycles; a split by a
    partial mprotect."""
    check_phases("t_track_mmap", ("mp-",))


# ---- memory found in /proc/self/maps (t_track_found) ----

@case
def test_glibc_large_malloc_and_realloc():
    """A 4 MiB malloc block (glibc's own mmap): its header page + the written pages; realloc to
    8 MiB (glibc's own mremap, moved): a new region, every present page; then exact re-writes;
    retired figures of the moves and of free exact."""
    check_phases("t_track_found", ("big-",), kind="malloc")


@case
def test_glibc_large_malloc_and_realloc_by_discovery():
    """The same with the malloc family not interposed (WRITEWATCH_METHOD=discovery): the block
    is found in /proc/self/maps, and after glibc's own mremap it is a new region."""
    check_phases("t_track_found", ("big-",), extra={"WRITEWATCH_METHOD": "discovery"},
                 kind="anon")


@case
def test_thread_stack():
    """A local array on a live thread's stack, snapshots taken by the main thread; then the
    thread writes and ends, and glibc discards its stack: the last writes still count."""
    check_phases("t_track_found", ("tstack-",), kind="thread_stack")


@case
def test_brk_heap():
    """The brk heap grown by sbrk directly; then shrunk by the program itself: the writes of
    its top retire with it (retired_written_bytes exact), the rest is reported."""
    check_phases("t_track_found", ("brk-",), kind="heap")


@case
def test_raw_syscall_mmap():
    """Memory from syscall(SYS_mmap), then half of it unmapped by syscall(SYS_munmap)."""
    check_phases("t_track_found", ("raw-",), kind="anon")


@case
def test_read_into_tracked_memory():
    """read(2) from a pipe into a fresh tracked region (whole pages and 100 bytes), then into
    the same, now write-protected, region: the kernel's stores are reported."""
    check_phases("t_track_found", ("pipe-",), kind="mmap")


# ---- discards (t_track_discard) ----

@case
def test_madv_dontneed():
    """16 pages written; DONTNEED all: 0, 0; one written: exactly 1. Writes then DONTNEED
    before the snapshot: reported exactly once (also with partial discards and re-writes in one
    interval, and for a run across a 2 MiB boundary: one merged run). discarded_bytes exact.
    Written, discarded, unmapped: the writes retire."""
    check_phases("t_track_discard", ("dn-", "dw-", "dx-", "du-"))


@case
def test_madv_free():
    """Writes then MADV_FREE before the snapshot: reported once; not again; later writes."""
    check_phases("t_track_discard", ("fr-",))


# ---- KSM merging and unmerging (t_track_ksm), field case C14 ----

KSM = "/sys/kernel/mm/ksm"


@case
def test_ksm_merge_unmerge():
    """512 identical pages written: 512. KSM merges them (turned on for the test, restored
    after): the pages it remapped to a shared copy read as written in that interval (all but the
    pages_shared frames kept as the copies), or none on a kernel that keeps the write-protect
    marker when merging; the snapshot says how many pages are
    merged (ksm_merging_pages); a write to one (copy-on-write): exactly 1; MADV_UNMERGEABLE: 0;
    a write to one: exactly 1. Under a 10 s timeout."""
    knobs = ("run", "pages_to_scan", "sleep_millisecs")
    try:
        saved = {k: open(f"{KSM}/{k}").read().strip() for k in knobs}
    except OSError as e:
        raise Skip(f"no KSM in this kernel ({e.strerror})")
    if not os.access(f"{KSM}/run", os.W_OK):
        raise Skip("KSM cannot be turned on here (needs root)")
    try:
        for k, v in (("pages_to_scan", "2000"), ("sleep_millisecs", "5"), ("run", "1")):
            with open(f"{KSM}/{k}", "w") as f:
                f.write(v)
        p, outdir = wwtest.run_tracked([prog("t_track_ksm"), "1"], timeout=10)
    finally:
        for k in ("run", "pages_to_scan", "sleep_millisecs"):
            with open(f"{KSM}/{k}", "w") as f:
                f.write(saved[k])
    err = p.stderr.decode(errors="replace")
    if p.returncode == 77:
        raise Skip(err.strip().splitlines()[-1])
    assert p.returncode == 0, f"t_track_ksm: exit {p.returncode}: {err[-800:]}"
    assert "writewatch:" not in err, f"the shim warned: {err[-800:]}"
    out = one_output(outdir)
    exact = [e for e in expectations(outdir) if e["label"] != "ksm-merged"]
    path = os.path.join(outdir, "expect.exact.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in exact)
    check_expectations(out, path)
    win = [e for e in expectations(outdir) if e["label"] == "ksm-merged" and "pages" in e][0]
    shared = [e for e in expectations(outdir) if "pages_shared" in e][0]["pages_shared"]
    base = int(win["start"], 16) // PAGE
    window = set(range(base, base + win["npages"]))
    merged = out.snapshot("ksm-merged")
    got = out.written_pages(merged["seq"]) & window
    assert not got or len(got) == len(window) - shared, \
        f"ksm-merged: {len(got)} of {len(window)} pages read as written; KSM kept {shared} " \
        f"frames as shared copies and remapped the other {len(window) - shared}"
    assert merged.get("ksm_merging_pages", 0) >= win["npages"], \
        f"ksm-merged: ksm_merging_pages {merged.get('ksm_merging_pages')}"
    assert "ksm_merging_pages" not in out.snapshot("ksm-fill"), "ksm_merging_pages before MADV_MERGEABLE"


# ---- many runs, small scan vector (t_track_scan) ----

SCAN_VEC = {"WRITEWATCH_SCAN_VEC": "50"}


@case
def test_scan_vec_small():
    """10,000 pages, every other one written, WRITEWATCH_SCAN_VEC=50: exactly 5,000 pages;
    the next snapshot 0; then every third page."""
    check_phases("t_track_scan", ("sv-",), SCAN_VEC)
    for seed in SEEDS:
        out, outdir = tracked("t_track_scan", seed, SCAN_VEC)
        win = [e for e in expectations(outdir) if e["label"] == "sv-half"][0]
        regs = [r for r in out.regions.get(out.snapshot("sv-half")["seq"], [])
                if r["start"] == win["start"]]
        assert len(regs) == 1 and regs[0]["written_pages"] == 5000, \
            f"seed {seed}: sv-half region records {regs and regs[0]['written_pages']}"
        assert len(regs[0]["ranges"]) == 5000, "5,000 separate one-page runs expected"


# ---- writer threads racing snapshots (t_track_race) ----

def check_race(seeds, extra=None):
    """The checks t_track_race.c describes, for each seed."""
    check_phases("t_track_race", ("race-0", "race-final"), extra, seeds)
    for seed in seeds:
        out, outdir = tracked("t_track_race", seed, extra)
        with open(os.path.join(outdir, "expect.jsonl.race")) as f:
            writers = [json.loads(line) for line in f if line.strip()]
        nsnap = writers[0]["snapshots"]
        labels = [f"race-{k}" for k in range(1, nsnap + 1)] + ["race-quiesce"]
        # sets[j]: the pages of racing snapshot j, j = 1..nsnap; nsnap+1 is race-quiesce
        sets = [None] + [out.written_pages(out.snapshot(lb)["seq"]) for lb in labels]
        must_total = 0
        for w in writers:
            base = int(w["start"], 16) // PAGE
            name = f"seed {seed} {w['window']}"
            assert w["stores"] > nsnap, f"{name}: only {w['stores']} stores"
            for i, k in enumerate(w["last"]):
                if k >= 0:
                    assert any(base + i in s for s in sets[k + 1:]), \
                        f"{name}: page {i} stored after snapshot {k}, in no later snapshot"
            for k, pages in enumerate(w["must"]):
                must_total += len(pages)
                missing = [i for i in pages if base + i not in sets[k + 1]]
                assert not missing, (f"{name}: pages {missing[:10]} stored after snapshot {k} "
                                     f"and before {k + 1} was called, missing from {k + 1}")
            for j in range(1, nsnap + 2):
                possible = set(w["possible"][j])
                extra_pages = sorted(p - base for p in sets[j]
                                     if base <= p < base + w["npages"] and p - base not in possible)
                assert not extra_pages, f"{name}: snapshot {j} reports pages {extra_pages[:10]} " \
                                        f"no store could have written in that interval"
        assert must_total >= nsnap, f"seed {seed}: only {must_total} 'must' stores: too weak"


@case
def test_writers_race_snapshots():
    """Threads store continuously while snapshots are taken: a page stored after snapshot k
    appears in a later one; stored after k and before k+1 was called: in k+1 itself; a page
    reported in snapshot j had a store that could fall in interval j; baseline and final burst
    exact. (Scans of these 4096-page regions need several PAGEMAP_SCAN batches.)"""
    check_race(SEEDS)


@case
def test_writers_race_snapshots_small_vec():
    """The same with WRITEWATCH_SCAN_VEC=50: every scan is many calls resumed at walk_end."""
    check_race((4, 5), SCAN_VEC)


# ---- WRITEWATCH_RANGES=0: no ranges, same counts ----

@case
def test_ranges_off_keeps_counts():
    """With WRITEWATCH_RANGES=0 records carry no ranges, and the counts stay exact: a window
    no region record overlaps was not written; the region records inside a window sum to the
    window's recorded page count."""
    off = {"WRITEWATCH_RANGES": "0"}
    checked = 0
    for name in ("t_track_mmap", "t_track_discard"):
        out, outdir = tracked(name, 1, off)
        assert out.header["ranges"] is False, "header ranges not false"
        for e in expectations(outdir):
            if "field" in e:
                got = out.snapshot(e["label"]).get(e["field"])
                assert got == e["value"], f"{e['label']}: {e['field']} {got} != {e['value']}"
                continue
            seq = out.snapshot(e["label"])["seq"]
            ws = int(e["start"], 16)
            we = ws + e["npages"] * PAGE
            regs = [r for r in out.regions.get(seq, [])
                    if int(r["start"], 16) < we and int(r["end"], 16) > ws]
            where = f"{name} {e['label']}/{e['window']}"
            if not regs:
                assert not e["pages"], f"{where}: {len(e['pages'])} pages written, no record"
                checked += 1
            elif all(int(r["start"], 16) >= ws and int(r["end"], 16) <= we for r in regs):
                got = sum(r["written_pages"] for r in regs)
                assert got == len(e["pages"]), f"{where}: {got} pages, want {len(e['pages'])}"
                checked += 1
    assert checked > 30, f"only {checked} windows could be compared"


# ---- record invariants of every output above ----

@case
def test_record_invariants():
    """check_records on every output the cases above produced."""
    n = 0
    for key, got in sorted(_runs.items(), key=lambda kv: str(kv[0])):
        if isinstance(got, AssertionError):
            continue  # failed already in its own case
        try:
            check_records(got[0])
        except AssertionError as e:
            raise AssertionError(f"{key[0]} seed {key[1]} {dict(key[2])}: {e}") from None
        n += 1
    assert n, "no outputs to check"


def cleanup():
    """Remove the output directories when every case passed (kept for a look otherwise)."""
    if wwtest._results["fail"]:
        return
    for got in _runs.values():
        if not isinstance(got, AssertionError):
            shutil.rmtree(got[1], ignore_errors=True)


cleanup()
finish()
