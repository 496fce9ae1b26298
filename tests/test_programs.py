#!/usr/bin/env python3
# Real, unmodified programs under the shim (C01's sort, C20's runtimes): each runs with and
# without writewatch; stdout bytes and exit status must match, every output file must be whole
# and consistent, and the figures must be plausible for what the program is known to write.
# Also an outside oracle: Python's own /proc/self/smaps_rollup against an API snapshot.
import json
import os
import random
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wwtest as W  # noqa: E402
from wwtest import Skip, case  # noqa: E402
import wwenv as E  # noqa: E402

MB = 1000 * 1000
# The real interpreter: python3 on PATH may be a shell-script shim (pyenv) that execs it.
PYTHON = os.path.realpath(sys.executable)


def tool(name):
    path = shutil.which(name)
    if not path:
        raise Skip(f"{name} is not installed")
    return path


def big_text(d, size=4 * MB):
    """A deterministic file of about size bytes of random-ordered lines."""
    path = os.path.join(d, "big.txt")
    r = random.Random(20260101)
    with open(path, "w") as f:
        n = 0
        while n < size:
            line = "%08x %s\n" % (r.getrandbits(32), "x" * r.randint(0, 20))
            f.write(line)
            n += len(line)
    return path


def compare(cmd, extra=None, cwd_files=(), stdin=None, timeout=120):
    """Run cmd untracked and tracked, each from a fresh directory holding cwd_files (copies).
    Returns (tracked process, outdir, untracked process, outputs); compare.udir is the
    untracked run's directory."""
    dirs = []
    for _ in range(2):
        d = W.tmpdir()
        for f in cwd_files:
            shutil.copy(f, d)
        dirs.append(d)
    inp = open(stdin, "rb").read() if stdin else None
    u = W.run(cmd, env=E.plain_env(), cwd=dirs[1], timeout=timeout, input=inp)
    compare.udir = dirs[1]
    t, outdir = E.run_tracked(cmd, extra, timeout=timeout, input=inp, outdir=dirs[0])
    E.same_result(t, u)
    assert t.stderr == u.stderr, f"stderr differs: tracked {t.stderr[-300:]!r}, untracked {u.stderr[-300:]!r}"
    outs = E.load_all(outdir)
    assert outs, "no output file"
    for o in outs:
        assert o.header["tracking"] == "on", f"{o.path}: {o.header.get('reason')}"
        assert o.header["untracked"] == ["shared", "file-backed", "hugetlb"]
    return t, outdir, u, outs


def main_output(outs, exe_suffix):
    hits = [o for o in outs if o.header["exe"].endswith(exe_suffix) and o.header["cause"] == "start"]
    assert len(hits) == 1, f"{len(hits)} files for {exe_suffix}: {[(o.header['exe'], o.header['cause']) for o in outs]}"
    o = hits[0]
    assert o.snapshots and o.snapshots[-1]["trigger"] == "exit", f"{o.path}: no exit snapshot"
    return o


def total_written(o):
    """Bytes written over the whole run: every interval's working set, plus what was written and
    unmapped in between (harvested by the hooks)."""
    return sum(s["written_bytes"] + s["retired_written_bytes"] for s in o.snapshots)


def peak_ever(o):
    return max(s["ever_written_bytes"] for s in o.snapshots)


# ---------------------------------------------------------------------------------------------


@case
def test_python_list_comprehension():
    n = 2_000_000
    t, outdir, u, outs = compare([PYTHON, "-c", f"x = [i * 2 for i in range({n})]; print(len(x), sum(x))"])
    assert t.stdout == f"{n} {n * (n - 1)}\n".encode()
    o = main_output(outs, os.path.basename(PYTHON))
    assert len(outs) == 1
    # 2 M int objects of 28 bytes (32 in obmalloc's pools) plus the list's 16 MB of pointers.
    assert total_written(o) >= n * 28, f"python wrote {total_written(o)} bytes for {n} ints"
    assert total_written(o) <= 1000 * MB


SMAPS_SNIPPET = r"""
import ctypes, json, sys
x = [i * 2 for i in range(1_000_000)]
rc = ctypes.CDLL(None).writewatch_snapshot(b"mark")
with open("/proc/self/smaps_rollup") as f:
    roll = f.read()
kb = {l.split(":")[0]: int(l.split()[1]) for l in roll.splitlines()[1:] if l.split()[-1] == "kB"}
json.dump({"rc": rc, "Anonymous": kb["Anonymous"] * 1024, "Rss": kb["Rss"] * 1024}, sys.stderr)
"""


@case
def test_python_snapshot_matches_smaps_anonymous():
    outdir = W.tmpdir()
    p = W.run([PYTHON, "-c", SMAPS_SNIPPET], env=E.env_for(outdir), cwd=outdir)
    assert p.returncode == 0, p.stderr[-500:]
    got = json.loads(p.stderr)
    assert got["rc"] == 0, f"writewatch_snapshot returned {got['rc']}"
    out = E.check_consistent(W.one_output(outdir))
    snap = out.snapshot("mark")
    ever, anon = snap["ever_written_bytes"], got["Anonymous"]
    # smaps counts every anonymous page: also the copy-on-write pages of private file mappings
    # (libraries' .data and relocations: untracked, "file-backed") and the shim's own memory
    # (never reported). Both are small next to a 40 MB working set.
    assert abs(ever - anon) <= anon * 0.10, \
        f"ever_written_bytes {ever} vs smaps Anonymous {anon} ({(ever - anon) / anon:+.1%})"


@case
def test_sort_big_file():
    d = W.tmpdir()
    src = big_text(d)
    size = os.path.getsize(src)
    t, outdir, u, outs = compare([tool("sort"), "big.txt"], {"WRITEWATCH_INTERVAL_MS": "10"},
                                 cwd_files=[src])
    with open(src, "rb") as f:
        assert t.stdout == b"".join(sorted(f.read().splitlines(keepends=True)))
    o = main_output(outs, "/sort")
    # sort holds the whole input in its buffer: at some point at least that much was written.
    assert peak_ever(o) >= size, f"sort's peak ever_written_bytes {peak_ever(o)} < input {size}"
    for other in outs:  # sort's helper threads are not processes: one file
        assert other is o, [x.path for x in outs]


@case
def test_sort_with_jemalloc_c01():
    # An allocator that maps, discards and unmaps through the public functions (our hooks run
    # inside it), preloaded before and after the shim.
    lib = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    if not os.path.exists(lib):
        raise Skip(f"{lib} not installed (apt-get install libjemalloc2)")
    d = W.tmpdir()
    src = big_text(d)
    with open(src, "rb") as f:
        want = b"".join(sorted(f.read().splitlines(keepends=True)))
    for order in ([lib, W.LIB], [W.LIB, lib]):
        t, outdir, u, outs = compare([tool("sort"), "big.txt"], {"LD_PRELOAD": ":".join(order)},
                                     cwd_files=[src])
        assert t.stdout == want
        o = main_output(outs, "/sort")
        # jemalloc's arenas come through the hooked mmap: the input buffer is in them.
        assert total_written(o) >= os.path.getsize(src), f"{order}: {total_written(o)} bytes written"


@case
def test_gzip_round_trip():
    gzip = tool("gzip")
    d = W.tmpdir()
    src = big_text(d, 2 * MB)
    results = []
    for tracked in (True, False):
        outdir = W.tmpdir()
        env = E.env_for(outdir) if tracked else E.plain_env()
        c = subprocess.Popen([gzip, "-c", src], env=env, cwd=outdir, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        dd = subprocess.Popen([gzip, "-d"], env=env, cwd=outdir, stdin=c.stdout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        c.stdout.close()
        out, err = dd.communicate(timeout=60)
        cerr = c.stderr.read()
        c.wait(timeout=60)
        results.append((out, err + cerr, c.returncode, dd.returncode, outdir))
    (t_out, t_err, t_c, t_d, outdir), (u_out, u_err, u_c, u_d, _) = results
    with open(src, "rb") as f:
        assert t_out == u_out == f.read(), "the round trip changed the data"
    assert (t_c, t_d) == (u_c, u_d) == (0, 0) and t_err == u_err == b"", (t_c, t_d, t_err)
    outs = E.load_all(outdir)
    assert len(outs) == 2, [o.path for o in outs]
    for o in outs:
        assert o.header["exe"].endswith("gzip") and o.snapshots[-1]["trigger"] == "exit"
        # gzip's window and buffers are static arrays (its .bss): over 100 KiB written.
        assert total_written(o) >= 100 * 1024, f"{o.path}: {total_written(o)} bytes written"


HELLO = r"""
#include <stdio.h>
static int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
int main(void) { printf("fib(20) = %d\n", fib(20)); return 3; }
"""


@case
def test_cc_compiles():
    cc = tool("cc")
    d = W.tmpdir()
    src = os.path.join(d, "hello.c")
    with open(src, "w") as f:
        f.write(HELLO)
    t, outdir, u, outs = compare([cc, "-O2", "-S", "-o", "-", "hello.c"], cwd_files=[src])
    assert b"fib" in t.stdout and b"main" in t.stdout
    main_output(outs, "/" + os.path.basename(os.path.realpath(cc)))  # the driver
    cc1 = [o for o in outs if o.header["exe"].endswith("/cc1")]
    assert len(cc1) == 1 and len(outs) == 2, [o.header["exe"] for o in outs]
    assert cc1[0].snapshots[-1]["trigger"] == "exit"
    assert total_written(cc1[0]) >= 1 * MB, f"cc1 wrote {total_written(cc1[0])} bytes"
    # And a whole compile and link (cc1, as, collect2, ld): the program it builds is the same.
    t, outdir, u, outs = compare([cc, "-O2", "-o", "hello", "hello.c"], cwd_files=[src])
    with open(os.path.join(outdir, "hello"), "rb") as f:
        built = f.read()
    with open(os.path.join(compare.udir, "hello"), "rb") as f:
        assert f.read() == built, "the program built under writewatch differs from the untracked build"
    r = W.run([os.path.join(outdir, "hello")], env=E.plain_env())
    assert r.returncode == 3 and r.stdout == b"fib(20) = 6765\n", (r.returncode, r.stdout)
    exes = sorted(os.path.basename(o.header["exe"]) for o in outs)
    for need in ("cc1", "as", "collect2", "ld"):
        assert any(e == need or e.endswith("-" + need) or f"-{need}." in e for e in exes), \
            f"no output file for {need}: {exes}"
    for o in outs:
        assert o.snapshots and o.snapshots[-1]["trigger"] in ("exit", "exec"), \
            f"{o.path}: last snapshot {o.snapshots[-1]['trigger'] if o.snapshots else None}"
    assert len(built) > 1000


@case
def test_sqlite_many_rows():
    sqlite = tool("sqlite3")
    n = 100_000
    sql = ("create table t(a integer primary key, b text); "
           f"with recursive c(x) as (select 1 union all select x + 1 from c where x < {n}) "
           "insert into t select x, printf('row-%08d', x) from c; "
           "create index tb on t(b); select count(*), sum(a), max(b) from t;")
    t, outdir, u, outs = compare([sqlite, "db.sqlite", sql])
    assert t.stdout == f"{n}|{n * (n + 1) // 2}|row-{n:08d}\n".encode(), t.stdout
    o = main_output(outs, "/sqlite3")
    assert len(outs) == 1
    assert total_written(o) >= 1 * MB, f"sqlite3 wrote {total_written(o)} bytes"


@case
def test_node_large_array():
    node = tool("node")
    n = 2_000_000
    js = f"const a = []; for (let i = 0; i < {n}; i++) a.push(i * 2); console.log(a.length, a[a.length - 1]);"
    t, outdir, u, outs = compare([node, "-e", js])
    assert t.stdout == f"{n} {2 * (n - 1)}\n".encode(), t.stdout
    o = main_output(outs, "/node")
    # V8 maps its heap through the public mmap: the array's backing store (8 bytes per element,
    # grown by copying) was written, and is either still mapped or harvested when unmapped.
    assert total_written(o) >= n * 8, f"node wrote {total_written(o)} bytes"


JAVA_HELLO = r"""
public class Hello {
    public static void main(String[] args) {
        int[] x = new int[1 << 22];
        long s = 0;
        for (int i = 0; i < x.length; i++) { x[i] = i; s += x[i]; }
        System.out.println("hello " + s);
    }
}
"""


@case
def test_java_hello_c20():
    java = tool("java")
    d = W.tmpdir()
    src = os.path.join(d, "Hello.java")
    with open(src, "w") as f:
        f.write(JAVA_HELLO)
    n = 1 << 22
    # HotSpot takes SIGUSR2 for itself (thread suspension): the shim leaves it to the JVM and
    # says so once (C19). With another trigger signal there is nothing to say.
    dirs = [W.tmpdir(), W.tmpdir()]
    for x in dirs:
        shutil.copy(src, x)
    u = W.run([java, "Hello.java"], env=E.plain_env(), cwd=dirs[1], timeout=120)
    t, outdir = E.run_tracked([java, "Hello.java"], timeout=120, outdir=dirs[0])
    E.same_result(t, u)
    assert t.stdout == f"hello {n * (n - 1) // 2}\n".encode(), t.stdout
    line = E.one_ww_line(t) if not u.stderr else None
    assert line and "SIGUSR2" in line, f"stderr {t.stderr!r}"
    outs = E.load_all(outdir)
    o = main_output(outs, "/java")
    assert len(outs) == 1
    assert not [s for s in o.snapshots if s["trigger"] == "signal"]
    assert total_written(o) >= n * 4, f"the JVM wrote {total_written(o)} bytes for a {n * 4}-byte array"
    t, outdir, u, outs = compare([java, "Hello.java"], {"WRITEWATCH_SIGNAL": "RTMIN+3"}, cwd_files=[src])
    main_output(outs, "/java")


W.finish()
