#!/usr/bin/env python3
# Stress (issue 6, item 2): tests/t_stress.c's 8 threads map, write, remap, discard, protect and
# unmap in a storm, with malloc/realloc/free and short-lived threads, while snapshots come every
# millisecond by timer, hundreds of times a second by signal (a thread of the program and this
# script both send the trigger) and by API from three threads. Variants add fork children, exec
# and posix_spawn of /bin/true, and a 100 us SIGALRM timer of the program's own whose handler
# interrupts every call (and maps from inside the handler). Each run must end by itself (no
# deadlock: a timeout, with every thread's stack in the failure), exit 0 (the program checks its
# own data), and leave files of whole JSON lines with seq 1..n; the program's final recorded
# page set must be reported exactly, each page once, in the snapshots after "quiesce" up to
# "final". WW_STRESS_SECONDS sets the storm's length (make stress runs longer).
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wwtest  # noqa: E402
from wwtest import PAGE, TESTS, Output, Skip, case, finish, outputs, tmpdir, tracked_env  # noqa: E402

SECONDS = float(os.environ.get("WW_STRESS_SECONDS", "3"))
ONLY = os.environ.get("WW_STRESS_ONLY")  # run only the variants whose name contains this
# Under ThreadSanitizer (make check-sanitize): no trigger signal, because TSan runs our handler in
# threads it has not set up yet, and no pthread_create interposition, because TSan's wrapper
# must start each thread itself (WRITEWATCH_METHOD=discovery).
TSAN = os.environ.get("WW_STRESS_TSAN") == "1"
# Under AddressSanitizer of GCC 12 (make check-sanitize) no fork: its allocator takes no lock
# around fork, so a child can inherit it locked by another thread and hang in malloc (ours
# starts a thread, the program opens a file), shim or not. The UBSan run covers fork.
NO_FORK = os.environ.get("WW_STRESS_NO_FORK") == "1"
GRACE = 60 + SECONDS  # beyond the storm, time to finish before we call it a deadlock
PROG = os.path.join(TESTS, "t_stress")
_dirs = []


def session(sid):
    """The pids of a session (the program and its children: start_new_session=True)."""
    pids = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:
                pids.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return sorted(pids)


def stacks(sid, outdir):
    """Every thread's stack of each process of a hung run (gdb), kept in outdir/stacks.txt;
    the frames of the shim and the program for the failure message."""
    if not shutil.which("gdb"):
        return "(gdb not installed: no stacks)"
    text = ""
    for pid in session(sid)[:6]:
        p = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        text += f"==== process {pid}\n" + p.stdout.decode(errors="replace")
    with open(os.path.join(outdir, "stacks.txt"), "w") as f:
        f.write(text)
    keep = [l for l in text.splitlines() if l.startswith(("====", "Thread ")) or
            "preload/" in l or "tests/" in l or "signal handler" in l]
    return f"(all stacks in {outdir}/stacks.txt)\n" + "\n".join(keep)[-8000:]


def storm(args, extra=None, py_rate=0):
    """Run t_stress SECONDS args under the shim with the 1 ms timer; py_rate trigger signals a
    second from here too. Returns (stdout text, stderr text, outdir, figures dict)."""
    if not os.access(PROG, os.X_OK):
        raise Skip(f"{PROG} not built (run make)")
    name = sys._getframe(1).f_code.co_name
    if ONLY and ONLY not in name:
        raise Skip(f"WW_STRESS_ONLY={ONLY}")
    if NO_FORK and "fork" in args:
        raise Skip("WW_STRESS_NO_FORK=1: this sanitizer's allocator is not fork-safe")
    if TSAN:
        args = [a for a in args if not a.startswith("rate=")] + ["rate=0"]
        py_rate = 0
        extra = {**(extra or {}), "WRITEWATCH_SIGNAL": "none", "WRITEWATCH_METHOD": "discovery"}
    outdir = tmpdir()
    _dirs.append(outdir)
    env = tracked_env(outdir, {"WRITEWATCH_INTERVAL_MS": "1", **(extra or {})})
    p = subprocess.Popen([PROG, str(SECONDS)] + args, env=env, cwd=outdir,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    first = p.stdout.readline().decode()
    assert first.startswith("ready "), f"no ready line: {first!r} {p.stderr.read()[-2000:]!r}"
    stop = threading.Event()
    sent = [0]

    def sender():
        fd = os.pidfd_open(p.pid)  # never signals a recycled pid
        try:
            while not stop.is_set():
                signal.pidfd_send_signal(fd, signal.SIGUSR2)
                sent[0] += 1
                time.sleep(1 / py_rate)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)

    th = threading.Thread(target=sender) if py_rate else None
    if th:
        th.start()
    try:
        rest, err = p.communicate(timeout=GRACE)
    except subprocess.TimeoutExpired:
        trace = stacks(p.pid, outdir)
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise AssertionError(f"t_stress {args} hung (deadlock?) after {GRACE:.0f} s:\n{trace}")
    finally:
        stop.set()
        if th:
            th.join()
    text = first + rest.decode(errors="replace")
    err = err.decode(errors="replace")
    assert p.returncode == 0, f"t_stress {args}: exit {p.returncode}\n{text[-1000:]}\n{err[-3000:]}"
    assert "writewatch:" not in err, f"the shim warned: {err[-2000:]}"
    line = [l for l in text.splitlines() if l.startswith("stress ")]
    assert line, f"no summary line: {text[-500:]}"
    figs = {}
    for kv in line[0].split()[1:]:
        k, v = kv.split("=")
        figs[k] = float(v) if "." in v else int(v)
    figs["py_signals"] = sent[0]
    return text, err, outdir, figs


def check_records(out, allow_lost=False):
    """Every snapshot's written figures are the sum of its region records; ranges sorted,
    merged, inside the region and summing to written_pages; regions of one snapshot disjoint;
    nothing untracked, nothing lost. allow_lost: True, or the kinds of region that may be (a
    sanitizer runtime remaps its own memory with raw MAP_FIXED mmap calls: any). Any kind may
    be lost once the shim has said it let calls through untracked (unseen_calls: a fork held
    it over 100 ms, which a loaded machine can make happen). Returns the lost regions counted."""
    allow_lost = True if wwtest.PRELOAD_FIRST else allow_lost
    assert out.header.get("tracking") == "on", f"tracking {out.header.get('tracking')}"
    for s in (r for r in out.recs if r["type"] == "site"):  # docs/format.md, site
        assert s["regions_live"] <= s["regions_made"] and s["regions_retired"] <= s["regions_made"] \
            and s["bytes_live"] <= s["bytes_peak"] <= s["bytes_made"], \
            f"{out.path}: seq {s['seq']} site {s['id']}: counts inconsistent: {s}"
    ps = out.header["page_size"]
    lost = 0
    unseen = 0
    for snap in out.snapshots:
        seq = snap["seq"]
        unseen += snap["unseen_calls"]
        regs = out.regions.get(seq, [])
        total = sum(r["written_pages"] for r in regs)
        assert snap["written_pages"] == total and snap["written_bytes"] == total * ps, \
            f"seq {seq}: written_pages {snap['written_pages']} != sum of regions {total}"
        lost += snap["lost_regions"]
        assert snap["untracked_regions"] == 0, f"seq {seq}: untracked regions"
        assert snap["untracked_bytes"] == 0, f"seq {seq}: untracked bytes"
        spans = sorted((int(r["start"], 16), int(r["end"], 16), r["id"]) for r in regs)
        for (s1, e1, i1), (s2, e2, i2) in zip(spans, spans[1:]):
            assert e1 <= s2, (f"{out.path}: seq {seq}: regions {i1} ({s1:x}-{e1:x}) and {i2} "
                              f"({s2:x}-{e2:x}) overlap")
        for r in regs:
            assert not r.get("lost") or allow_lost is True or unseen or \
                r["kind"] in (allow_lost or ()), \
                f"{out.path}: seq {seq}: region {r['id']} ({r['kind']}) lost, no unseen calls said"
            npages = (int(r["end"], 16) - int(r["start"], 16)) // ps
            at = -1
            for first, n in r["ranges"]:
                assert n > 0 and first > at and first + n <= npages, \
                    f"seq {seq} region {r['id']}: bad ranges {r['ranges'][:10]}"
                at = first + n
            assert r.get("lost") or 0 < r["written_pages"] <= r["ever_written_pages"] <= npages, \
                (f"{out.path}: seq {seq} region {r['id']} ({r['kind']}, new {r['new']}): written "
                 f"{r['written_pages']}, ever {r['ever_written_pages']}, {npages} pages")
    return lost


def check_union(out, expect_path, label0, label1):
    """The windows recorded for label1: the pages reported in the snapshots after label0 up to
    label1 are exactly the recorded ones. Each page was stored to once; a store whose fault
    races a scan is reported twice (the fault lifts the write protection, the scan reports the
    page and protects it again before the store is retried, the retry faults once more: seen
    only for stores that took 90 us or more, a thread preempted inside its fault, or one whose
    retry waited for the program's own signal handlers; such a store is reported once per scan
    it raced, three times seen once in a loaded run with SIGALRM every 100 us). Pages reported
    more than once on more than 2% of the pages is a failure. Returns (pages, pages reported
    more than once)."""
    with open(expect_path) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    lines = [e for e in lines if e["label"] == label1]
    assert lines, f"{expect_path}: nothing recorded for {label1}"
    s0, s1 = out.snapshot(label0)["seq"], out.snapshot(label1)["seq"]
    counts = collections.Counter()
    for seq in range(s0 + 1, s1 + 1):
        counts.update(out.written_pages(seq))
    checked = doubles = 0
    for e in lines:
        base = int(e["start"], 16) // PAGE
        want = {base + p for p in e["pages"]}
        got = {p for p in range(base, base + e["npages"]) if counts[p]}
        missing, extra = sorted(want - got), sorted(got - want)
        where = f"{label1}/{e['window']} ({e['start']}, {e['npages']} pages)"
        assert not missing and not extra, (
            f"{where}: {len(missing)} missing {[p - base for p in missing][:10]}, {len(extra)} "
            f"extra {[p - base for p in extra][:10]} (seq {s0 + 1}..{s1})")
        doubles += sum(1 for p in got if counts[p] >= 2)
        checked += len(want)
    assert doubles <= max(2, checked // 50), \
        f"{doubles} of {checked} pages reported more than once"
    return checked, doubles


def triggers(out):
    return collections.Counter(s["trigger"] for s in out.snapshots)


def check_main(outdir, figs, allow_lost=False):
    """The program's own file: records, the final ground truth, the API snapshots all there."""
    main = [f for f in outputs(outdir) if os.path.basename(f).startswith("ww.t_stress.")
            and Output(f).header["cause"] == "start"]
    assert len(main) == 1, f"expected one main output, found {main}"
    out = Output(main[0])
    figs["lost_regions"] = check_records(out, allow_lost)
    pages = check_union(out, os.path.join(outdir, "expect.jsonl"), "quiesce", "final")
    tr = triggers(out)
    api = sum(1 for s in out.snapshots if s["label"] == "api")
    assert api == figs["api_snapshots"], f"{api} api snapshots in the file, {figs['api_snapshots']} made"
    assert tr["interval"] > 0 and (tr["signal"] > 0 or TSAN), f"triggers {dict(tr)}"
    assert out.snapshots[-1]["trigger"] == "exit", "the last snapshot is not the exit snapshot"
    return out, pages, tr


def summary(name, figs, out, tr, pages, extra=""):
    print(f"  {name}: {figs['seconds']:.1f} s storm, {figs['ops']} operations "
          f"({figs['maps']} maps, {figs['remaps']} remaps, {figs['discards']} discards, "
          f"{figs['unmaps']} unmaps, {figs['mallocs']} mallocs, {figs['short_threads']} threads"
          f"), {len(out.snapshots)} snapshots (interval {tr['interval']}, signal {tr['signal']}, "
          f"api {tr['api']}); signals sent {figs['signals_sent']} + {figs['py_signals']}; "
          f"final check {pages[0]} pages in {figs['windows']} windows exact ({pages[1]} reported "
          f"more than once: a store racing a scan){extra}", flush=True)


@case
def test_stress_storm():
    """The storm with the timer, signals from the program and from here, and API snapshots."""
    _, _, outdir, figs = storm(["rate=500"], py_rate=300)
    out, pages, tr = check_main(outdir, figs)
    summary("storm", figs, out, tr, pages)


def check_children(outdir, main_pid, figs, allow_lost=False):
    """Each fork child a valid file of its own with its exact window; each exec a pair (the fork
    image ending in an exec snapshot, the new image); each posix_spawn a file."""
    kinds = collections.Counter()
    seen = collections.defaultdict(list)  # pid: the causes of its files
    for f in outputs(outdir):
        out = Output(f)
        h = out.header
        if h["pid"] == main_pid:
            continue
        check_records(out, allow_lost)
        exe = os.path.basename(h["exe"])
        seen[h["pid"]].append(h["cause"])
        if h["cause"] == "fork":
            assert h["parent_pid"] == main_pid, f"{f}: parent_pid {h.get('parent_pid')}"
            last = out.snapshots[-1]["trigger"] if out.snapshots else None
            if "exec" in triggers(out):
                assert last == "exec", f"{f}: a snapshot after the exec snapshot"
                kinds["fork-exec"] += 1
            else:
                assert last == "exit", f"{f}: last snapshot {last}"
                check_union(out, os.path.join(outdir, f"expect.jsonl.{h['pid']}"),
                            "child-0", "child-1")
                kinds["fork"] += 1
        elif h["cause"] == "exec":
            assert exe == "true" and out.snapshots[-1]["trigger"] == "exit", f"{f}: {h}"
            kinds["exec"] += 1
        else:
            assert exe == "true" and h["ppid"] == main_pid, f"{f}: {h}"
            kinds["spawn"] += 1
    want = {"fork": figs["forks"], "fork-exec": figs["execs"], "exec": figs["execs"],
            "spawn": figs["spawns"]}
    if {k: kinds[k] for k in want} != want:
        made = []
        path = os.path.join(outdir, "expect.jsonl.children")
        if os.path.exists(path):
            with open(path) as f:
                made = [line.split() for line in f if line.strip()]
        odd = [(kind, pid, seen.get(int(pid), [])) for kind, pid in made
               if sorted(seen.get(int(pid), [])) != (["exec", "fork"] if kind == "exec" else ["start"])]
        raise AssertionError(f"files {dict(kinds)}, children made {want}; children whose files "
                             f"are not as expected (kind, pid, causes of its files): {odd[:10]}")
    return kinds


@case
def test_stress_fork_exec():
    """The storm with fork children (each exits quickly with a file of its own and an exact
    window), fork+execv of /bin/true and posix_spawn of /bin/true in the mix."""
    _, _, outdir, figs = storm(["fork", "exec", "rate=500"])
    # posix_spawn maps and unmaps its child's stack with glibc's own calls, unseen: a stack at
    # the same address as the last one, before a reconcile saw it go, is memory replaced behind
    # our back, reported lost (docs/format.md). Only such memory (found in the maps) may be.
    out, pages, tr = check_main(outdir, figs, allow_lost=("anon",))
    kinds = check_children(outdir, out.header["pid"], figs, allow_lost=("anon",))
    assert figs["forks"] > 0 and figs["execs"] > 0 and figs["spawns"] > 0, figs
    summary("fork+exec", figs, out, tr, pages,
            f"; {figs['forks']} fork children, {figs['execs']} exec, {figs['spawns']} spawn, "
            f"{sum(kinds.values())} child files valid, {figs['lost_regions']} regions reported lost")


@case
def test_stress_program_signals():
    """The storm with the program's own SIGALRM every 100 us (no SA_RESTART: it interrupts the
    shim's calls too; its handler stores to memory and maps and unmaps a page)."""
    _, _, outdir, figs = storm(["alrm", "rate=500"], py_rate=200)
    # The handler's mmap and munmap pass through untracked when they interrupt the shim on
    # their thread: a page it maps again where one went unseen is memory replaced behind our
    # back, reported lost. Only such memory (found in the maps) may be.
    out, pages, tr = check_main(outdir, figs, allow_lost=("anon",))
    assert figs["alarms"] > 1000 * SECONDS, f"only {figs['alarms']} alarms"
    summary("signals", figs, out, tr, pages, f"; {figs['alarms']} SIGALRMs handled, "
            f"{figs['lost_regions']} regions reported lost")


@case
def test_stress_everything():
    """All of it at once: fork, exec, the program's SIGALRM and both signal senders. A fork
    that waits for a malloc lock held by a thread whose SIGALRM handler waits in our mmap hook
    is resolved by that hook giving up after 100 ms and mapping untracked (lock_hook in preload/core.c):
    regions changed so are reported lost, so lost regions are allowed here, and counted."""
    _, _, outdir, figs = storm(["fork", "exec", "alrm", "rate=500"], py_rate=200)
    out, pages, tr = check_main(outdir, figs, allow_lost=True)
    kinds = check_children(outdir, out.header["pid"], figs, allow_lost=True)
    summary("everything", figs, out, tr, pages,
            f"; {figs['alarms']} SIGALRMs, {sum(kinds.values())} child files valid, "
            f"{figs['lost_regions']} regions reported lost")


def cleanup():
    if wwtest._results["fail"]:
        return  # kept for a look
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)


cleanup()
finish()
