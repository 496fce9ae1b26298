#!/usr/bin/env python3
# Field cases that had no test (docs/cases.md): C01's program that is its own allocator
# (tests/t_case_malloc.c), C02 in a _FILE_OFFSET_BITS=64 build (tests/t_case_lfs.c) and C15's
# range mixing tracked memory, memory no hook saw and a hole (tests/t_case_mixed.c). Each
# program records its ground truth (tests/tprog.h's format, $WW_EXPECT) and runs twice: under
# the shim, and untracked in a directory of its own, with the same stdout and exit status.
import json
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wwenv  # noqa: E402
import wwtest as W  # noqa: E402
from wwtest import PAGE, TESTS, Skip, case, check_expectations, finish, one_output  # noqa: E402

_runs = {}  # (program, seed) -> Run, or the exception its run gave


class Run:
    def __init__(self, tracked, untracked, out, outdir):
        self.t, self.u, self.out, self.outdir = tracked, untracked, out, outdir

    def expectations(self, prefixes=None):
        with open(os.path.join(self.outdir, "expect.jsonl")) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        return [e for e in lines if prefixes is None or e["label"].startswith(prefixes)]

    def check(self, prefixes, kind=None, skip_windows=()):
        """check_expectations on the windows and figures of the snapshots labelled with one of
        prefixes (all but windows named in skip_windows); with kind, every region reporting
        pages in those windows must be of that kind. Returns the windows and figures checked."""
        lines = [e for e in self.expectations(prefixes) if e.get("window") not in skip_windows]
        assert lines, f"no expectations labelled {prefixes}"
        path = os.path.join(self.outdir, f"expect.{prefixes[0].rstrip('-')}.jsonl")
        with open(path, "w") as f:
            f.writelines(json.dumps(e) + "\n" for e in lines)
        n = check_expectations(self.out, path)
        if kind:
            for e in lines:
                if "field" in e or not e["pages"]:
                    continue
                for r in overlapping(self.out, e["label"], e["start"], e["npages"]):
                    assert r["kind"] == kind, \
                        f"{e['label']}/{e['window']}: reported by a {r['kind']} region, not {kind}"
        return n


def prog(name):
    path = os.path.join(TESTS, name)
    if not os.access(path, os.X_OK):
        raise Skip(f"{path} not built (run make)")
    return path


def both(name, seed, timeout=10, quiet=True):
    """Run a program under the shim and untracked (cached). Checks: it finishes (a deadlock is
    a timeout; each program takes milliseconds), exit 0, the same stdout and exit status
    untracked, no writewatch: line (quiet=False: at most one), tracking on, and a consistent
    output file."""
    key = (name, seed)
    if key not in _runs:
        try:
            path = prog(name)
            cmd = [path, str(seed)]
            try:
                t, outdir = W.run_tracked(cmd, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{name} {seed}: still running after {timeout} s under the "
                                     f"shim (a deadlock?)") from None
            udir = W.tmpdir()
            try:
                u = W.run(cmd, env=wwenv.plain_env({"WW_EXPECT": os.devnull}), timeout=timeout,
                          cwd=udir)
            finally:
                shutil.rmtree(udir, ignore_errors=True)
            err = t.stderr.decode(errors="replace")
            if t.returncode == 77 and u.returncode == 77:
                raise Skip(err.strip().splitlines()[-1] if err.strip() else f"{name}: exit 77")
            assert t.returncode == 0, f"{name} {seed}: exit {t.returncode} under the shim: {err[-800:]}"
            wwenv.same_result(t, u, f"{name} {seed}: ")
            assert len(W.writewatch_lines(t.stderr)) <= (0 if quiet else 1), \
                f"{name} {seed}: the shim warned: {err[-800:]}"
            out = one_output(outdir)
            assert out.header.get("tracking") == "on", \
                f"{name} {seed}: tracking {out.header.get('tracking')}: {out.header.get('reason')}"
            wwenv.check_consistent(out)
            _runs[key] = Run(t, u, out, outdir)
        except (AssertionError, Skip) as e:
            _runs[key] = e
    got = _runs[key]
    if isinstance(got, (AssertionError, Skip)):
        raise got
    return got


def overlapping(out, label, start, npages):
    """The region records of snapshot `label` that overlap [start, start + npages pages)."""
    s = int(start, 16)
    e = s + npages * PAGE
    seq = out.snapshot(label)["seq"]
    return [r for r in out.regions.get(seq, []) if int(r["start"], 16) < e and int(r["end"], 16) > s]


# ---- C01: the program is its own allocator (t_case_malloc) ----

MALLOC_SEEDS = (1, 2, 3)


@case
def test_own_malloc_completes_c01():
    """A program whose malloc family (10 functions) is its own, on mmap() through the PLT,
    makes 10,000 allocations (malloc, calloc, memalign, posix_memalign, aligned_alloc, realloc
    that copies or mremaps, free that unmaps big blocks) and touches each: it finishes within
    10 s (no deadlock, and the allocator was never re-entered from its own mmap, which it
    detects: exit 98), with the untracked run's stdout and exit status and no writewatch: line;
    glibc's stdio allocated through it (the program checks)."""
    for seed in MALLOC_SEEDS:
        r = both("t_case_malloc", seed)
        text = r.t.stdout.decode()
        assert "allocations 10000 " in text, f"seed {seed}: stdout {text!r}"


@case
def test_own_malloc_pages_exact_c01():
    """The pages the allocator (headers, freed marks, realloc copies) and the program (first
    and last byte of each block, then a fifth of them again) wrote in its test arena are
    reported exactly in every phase - 10,000 allocations, re-touch, free all, idle - all in
    regions of kind mmap (the hook saw every chunk); nothing where a big block was unmapped or
    moved away; the big blocks' unmaps are exactly retired_regions, retired_bytes and
    retired_written_bytes."""
    for seed in MALLOC_SEEDS:
        r = both("t_case_malloc", seed)
        try:
            n = r.check(("c01-",), kind="mmap")
        except AssertionError as e:
            raise AssertionError(f"seed {seed}: {e}") from None
        windows = [e for e in r.expectations(("c01-alloc",)) if "window" in e]
        written = sum(len(e["pages"]) for e in windows)
        assert len(windows) >= 50 and written >= 1000 and n > 2 * len(windows), \
            f"seed {seed}: only {len(windows)} mappings, {written} pages, {n} checks: too weak"


# ---- C02: a _FILE_OFFSET_BITS=64 build (t_case_lfs) ----

LFS_SEEDS = (1, 2, 3)


@case
def test_lfs_build_calls_mmap64_c02():
    """The program is built with _FILE_OFFSET_BITS=64: it imports mmap64 and not mmap, and its
    mmap() is the mmap64 symbol (the program checks with dlsym); it runs as untracked."""
    path = prog("t_case_lfs")
    if shutil.which("nm"):
        p = W.run(["nm", "-D", "--undefined-only", path])
        names = {line.split()[-1].split("@")[0] for line in p.stdout.decode().splitlines() if line.strip()}
        assert "mmap64" in names and "mmap" not in names, \
            f"t_case_lfs imports {sorted(n for n in names if 'map' in n)}"
    for seed in LFS_SEEDS:
        both("t_case_lfs", seed)


@case
def test_lfs_mmap64_anonymous_exact_c02():
    """Anonymous memory from mmap64 (through mmap() and by name): exact, in mmap regions (the
    mmap64 hook saw it); re-writes and pages only read exact."""
    for seed in LFS_SEEDS:
        both("t_case_lfs", seed).check(("lfs-anon",), kind="mmap")


@case
def test_lfs_sparse_file_at_6gib_c02():
    """A sparse file of 6 GiB + 2 pages, a marker at 6 GiB and a decoy at 2 GiB (where a 32-bit
    offset would land): mapped shared with mmap() and private with mmap64() at offset 6 GiB,
    both read the marker back intact, tracked as untracked; tracked memory beside it stays
    exact."""
    want = b"shared mapping at 6 GiB reads: writewatch C02 marker at 6 GiB\n" \
           b"private mapping at 6 GiB reads: writewatch C02 marker at 6 GiB\n"
    for seed in LFS_SEEDS:
        r = both("t_case_lfs", seed)
        assert want in r.t.stdout, f"seed {seed}: stdout {r.t.stdout[-300:]!r}"
        r.check(("lfs-file",), kind="mmap")


@case
def test_lfs_mremap_maymove_fixed_c02():
    """mremap(MREMAP_MAYMOVE|MREMAP_FIXED) of a 32-page region to a free 64-page address: the
    address is honoured (the program checks), the pages written before the move and page 40
    after it reported there, nothing at the old address, nothing retired; then exact."""
    for seed in LFS_SEEDS:
        both("t_case_lfs", seed).check(("lfs-mr-",), kind="mmap")


@case
def test_lfs_munmap_middle_third_c02():
    """munmap of the middle 30 pages of a 90-page mmap64 region, then writes to the rest: no
    page of the third reported; its writes of the interval are exactly retired_written_bytes,
    retired_bytes 30 pages, 1 region; the next snapshot exact."""
    for seed in LFS_SEEDS:
        both("t_case_lfs", seed).check(("lfs-un-",), kind="mmap")


# ---- C15: tracked, unseen and unmapped memory in one range (t_case_mixed) ----

MIXED_SEEDS = (1, 2, 3, 4, 5)


def check_mixed(layout):
    """A and C exact (kind mmap), nothing in the hole, in every snapshot of the layout; B each
    time either exact, or listed as untracked: no page reported, and a lost record over it or
    untracked_bytes that cover it. Returns {seed: {label: B's answer}}."""
    answers = {}
    for seed in MIXED_SEEDS:
        r = both("t_case_mixed", seed, quiet=False)
        pre = (f"mx-{layout}-",)
        try:
            r.check(pre, kind="mmap", skip_windows=("B",))
        except AssertionError as e:
            raise AssertionError(f"seed {seed}: {e}") from None
        for e in r.expectations(pre):
            if e.get("window") != "B":
                continue
            snap = r.out.snapshot(e["label"])
            base = int(e["start"], 16) // PAGE
            got = sorted(p - base for p in r.out.written_pages(snap["seq"])
                         if base <= p < base + e["npages"])
            where = f"seed {seed} {e['label']}/B"
            if got == e["pages"]:
                answers.setdefault(seed, {})[e["label"]] = "exact"
                continue
            regs = overlapping(r.out, e["label"], e["start"], e["npages"])
            lost = [g for g in regs if g.get("lost")]
            assert not got, (f"{where}: {len(got)} of {e['npages']} pages reported "
                             f"{got[:20]}, written {e['pages']}" +
                             (" (all written)" if len(got) == e["npages"] else ""))
            assert lost or snap["untracked_bytes"] >= e["npages"] * PAGE, \
                f"{where}: page {e['pages']} written, 0 reported, and B is neither lost nor " \
                f"counted in untracked_bytes ({snap['untracked_bytes']}): a silent 0"
            answers.setdefault(seed, {})[e["label"]] = "lost" if lost else "untracked"
        # The last phase unmaps A, B and C; its figures hold if B was tracked by then.
        unmap = r.out.snapshot(f"mx-{layout}-unmap")
        if answers[seed][f"mx-{layout}-idle"] == "exact":  # B tracked in the phase before
            want = {e["field"]: e["value"] for e in r.expectations((f"mx-{layout}-unmap",))
                    if "field" in e}
        else:
            want = {"retired_written_bytes": 2 * PAGE}
        for k, v in want.items():
            assert unmap[k] == v, f"seed {seed} mx-{layout}-unmap: {k} {unmap[k]}, want {v}"
    return answers


@case
def test_mixed_range_fresh_c15():
    """Reserved by a raw syscall; A (hooked MAP_FIXED) | B (raw MAP_FIXED) | hole | C (hooked)
    made in one interval (A and B merge into one VMA), one write each, three times: A and C
    exact, hole empty, B discovered (kind anon) and exact from the first snapshot; the final
    unmap retires the 3 writes and 48 pages."""
    answers = check_mixed("fresh")
    for seed, a in answers.items():
        assert all(x == "exact" for x in a.values()), f"seed {seed}: B {a}"
    for seed in MIXED_SEEDS:
        r = both("t_case_mixed", seed, quiet=False)
        b = [e for e in r.expectations(("mx-fresh-write",)) if e.get("window") == "B"][0]
        kinds = {g["kind"] for g in overlapping(r.out, "mx-fresh-write", b["start"], b["npages"])}
        assert kinds == {"anon"}, f"seed {seed}: B reported by {kinds}, not a discovered anon region"


@case
def test_mixed_range_armed_c15():
    """The same with A registered (a snapshot) before B is made beside it: A and C exact, B
    discovered and exact."""
    answers = check_mixed("armed")
    for seed, a in answers.items():
        assert all(x == "exact" for x in a.values()), f"seed {seed}: B {a}"


@case
def test_mixed_range_replaced_c15():
    """The reservation is a tracked PROT_NONE mmap, armed by a snapshot; B replaces part of it
    by a raw MAP_FIXED: in that interval B is listed as lost (unknown, not 0 and not all
    written) or exact; A and C exact; from the next snapshot on B is exact."""
    answers = check_mixed("replaced")
    for seed, a in answers.items():
        later = [x for label, x in a.items() if label != "mx-replaced-write"]
        assert all(x == "exact" for x in later), f"seed {seed}: B {a}"


# ---- every output above ----

@case
def test_site_counts_match_live_regions():
    """Found while writing C02 and C15 (not a field-case clause): a site's regions_live, as of
    each snapshot, is at least the number of distinct regions of that site reported in it, and
    its bytes_live at least their size (docs/format.md: "its regions mapped now"; a split gives
    the new part a region, and an id, of its own)."""
    n = 0
    bad = []
    for key, got in sorted(_runs.items()):
        if not isinstance(got, Run):
            continue
        site = {}  # id -> latest site record
        by_seq = {}
        for rec in got.out.recs:
            if rec["type"] == "site":
                by_seq.setdefault(rec["seq"], []).append(rec)
        for snap in got.out.snapshots:
            seq = snap["seq"]
            for rec in by_seq.get(seq, []):
                site[rec["id"]] = rec
            live = {}
            for g in got.out.regions.get(seq, []):
                if "site" in g:
                    live.setdefault(g["site"], {})[g["id"]] = int(g["end"], 16) - int(g["start"], 16)
            for sid, regs in live.items():
                s = site.get(sid)
                assert s, f"{key}: seq {seq}: region of site {sid} before its site record"
                n += 1
                if s["regions_live"] < len(regs) or s["bytes_live"] < sum(regs.values()):
                    bad.append(f"{key[0]} seed {key[1]} seq {seq} ({snap['label']}): site {sid} "
                               f"says regions_live {s['regions_live']}, bytes_live "
                               f"{s['bytes_live']}, yet regions {sorted(regs)} of "
                               f"{sum(regs.values())} bytes with that site are live")
    assert n, "no site to check"
    progs = sorted({b.split()[0] for b in bad})
    assert not bad, f"{len(bad)} of {n} site counts short (in {progs}), e.g. " + "; ".join(
        [next(b for b in bad if b.startswith(p)) for p in progs])


def cleanup():
    """Remove the output directories when every case passed (kept for a look otherwise)."""
    if W._results["fail"]:
        return
    for got in _runs.values():
        if isinstance(got, Run):
            shutil.rmtree(got.outdir, ignore_errors=True)


cleanup()
finish()
