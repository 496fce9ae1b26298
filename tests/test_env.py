#!/usr/bin/env python3
# The shim in its environment: snapshot triggers, fork and exec, bad configuration, sandboxes
# and permissions (seccomp, uid 65534, static and setuid programs), neighbours in LD_PRELOAD,
# programs that own the trigger signal, output file security and unusual mappings.
# Field cases C03-C07, C09-C13, C18, C19 (../shared/cases/README.md). Plain python3.
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wwtest as W  # noqa: E402
from wwtest import Skip, case  # noqa: E402
import wwenv as E  # noqa: E402
from wwenv import PROG, FORK, SECCOMP, EARLY  # noqa: E402

E.need(W.LIB, PROG, FORK, SECCOMP, EARLY)


def last_is_exit(o):
    return bool(o.snapshots) and o.snapshots[-1]["trigger"] == "exit"


last_trigger = E.last_trigger


def as_nobody_ready():
    if os.geteuid() != 0:
        raise Skip("needs root to switch to uid 65534")
    if not E.nobody_can_reach(PROG) or not E.nobody_can_reach(W.LIB):
        raise Skip("uid 65534 cannot reach the build directory")


def with_sysctl_zero(fn):
    """Run fn with vm.unprivileged_userfaultfd=0 (the machine's setting), restoring it."""
    path = "/proc/sys/vm/unprivileged_userfaultfd"
    old = E.sysctl("vm.unprivileged_userfaultfd")
    if old != "0":
        with open(path, "w") as f:
            f.write("0")
    try:
        return fn()
    finally:
        if old != "0":
            with open(path, "w") as f:
                f.write(old)


# ---------------------------------------------------------------------------------------------
# Triggers


def signal_run(extra, send, signame):
    """Window a (32 pages): write 1,3,4,10; wait; the test triggers a snapshot with send(pid);
    then the program writes 20 and returns. The signal snapshot holds exactly the first pages,
    the exit snapshot exactly page 20."""
    outdir = W.tmpdir()
    env = E.env_for(outdir, extra)
    it = E.Interactive([PROG, "map", "a", "32", "w", "a", "1,3-4,10", "ready", "w", "a", "20"],
                       env, outdir)
    it.wait_ready()
    send(it.p.pid)
    E.wait_for(lambda: E.snapshots_in(outdir, "signal"), what="a signal snapshot")
    p = it.release()
    assert p.returncode == 0 and p.stdout == b"ready\n", f"{p.returncode} {p.stdout!r}"
    E.no_ww_lines(p)
    out = E.check_consistent(W.one_output(outdir))
    assert out.header["signal"] == signame, f"header signal {out.header['signal']!r}"
    a = E.windows(outdir)["a"]
    trig = [s["trigger"] for s in out.snapshots]
    assert trig == ["signal", "exit"], f"triggers {trig}"
    got = E.window_pages(out, 1, a)
    assert got == [1, 3, 4, 10], f"signal snapshot reports pages {got} of the window, wrote 1,3,4,10"
    got = E.window_pages(out, 2, a)
    assert got == [20], f"exit snapshot reports pages {got}, wrote 20"
    assert out.snapshots[1]["t_ns"] > out.snapshots[0]["t_ns"]


@case
def test_signal_usr2_via_dump():
    def dump(pid):
        d = W.run([sys.executable, W.LAUNCHER, "dump", str(pid)], env=E.plain_env(), timeout=20)
        assert d.returncode == 0, f"writewatch dump failed: {d.stderr!r}"
    signal_run(None, dump, "USR2")


@case
def test_dump_refuses_a_blocked_signal():
    """A single-threaded program that blocks the trigger signal (our writer thread blocks every
    signal): dump says so and sends nothing; the program's run is unchanged."""
    outdir = W.tmpdir()
    it = E.Interactive([PROG, "block", "USR2", "ready"], E.env_for(outdir), outdir)
    it.wait_ready()
    d = W.run([sys.executable, W.LAUNCHER, "dump", str(it.p.pid)], env=E.plain_env(), timeout=20)
    p = it.release()
    assert d.returncode == 1 and "blocks SIGUSR2 in every thread" in d.stderr.decode(), d.stderr
    assert p.returncode == 0, p.stderr
    triggers = [s["trigger"] for s in E.check_consistent(W.one_output(outdir)).snapshots]
    assert triggers == ["exit"], triggers


@case
def test_signal_usr1():
    signal_run({"WRITEWATCH_SIGNAL": "USR1"}, lambda pid: os.kill(pid, signal.SIGUSR1), "USR1")


@case
def test_signal_rtmin3_via_dump():
    def dump(pid):
        d = W.run([sys.executable, W.LAUNCHER, "dump", str(pid)], env=E.plain_env(), timeout=20)
        assert d.returncode == 0, f"writewatch dump failed: {d.stderr!r}"
    signal_run({"WRITEWATCH_SIGNAL": "RTMIN+3"}, dump, "RTMIN+3")


@case
def test_signal_none_keeps_default_action():
    # The handler state the program sees: the shim's handler by default, none with "none".
    cmd = [PROG, "sigstate", "USR2"]
    t, outdir = E.run_tracked(cmd)
    assert t.stdout == b"sigstate USR2 handler\n", f"default config: {t.stdout!r}"
    t, outdir, u = E.run_pair(cmd, {"WRITEWATCH_SIGNAL": "none"})
    E.same_result(t, u)
    assert t.stdout == b"sigstate USR2 default\n", t.stdout
    E.no_ww_lines(t)
    assert W.one_output(outdir).header["signal"] == "none"
    # And the default action really applies: USR2 terminates it, as it would untracked.
    results = []
    for tracked in (True, False):
        outdir = W.tmpdir()
        env = E.env_for(outdir, {"WRITEWATCH_SIGNAL": "none"}) if tracked else E.plain_env()
        it = E.Interactive([PROG, "map", "a", "4", "w", "a", "0", "ready", "exit", "0"], env, outdir)
        it.wait_ready()
        it.signal(signal.SIGUSR2)
        it.p.wait(timeout=10)
        results.append(it.release())
        if tracked:
            out = E.check_consistent(W.one_output(outdir))
            assert out.snapshots == [], "killed by USR2: no snapshot may be written"
    assert [r.returncode for r in results] == [-signal.SIGUSR2] * 2, [r.returncode for r in results]


@case
def test_interval_snapshots():
    t, outdir, u = E.run_pair([PROG, "map", "a", "4", "spin", "500"],
                              {"WRITEWATCH_INTERVAL_MS": "50"})
    E.same_result(t, u)
    E.no_ww_lines(t)
    out = E.check_consistent(W.one_output(outdir))
    assert out.header["interval_ms"] == 50
    iv = [s for s in out.snapshots if s["trigger"] == "interval"]
    assert 5 <= len(iv) <= 11, f"{len(iv)} interval snapshots in 0.5 s at 50 ms"
    assert [s["trigger"] for s in out.snapshots] == ["interval"] * len(iv) + ["exit"]
    times = [s["t_ns"] for s in out.snapshots]
    gaps = [(b - a) / 1e6 for a, b in zip(times, times[1:len(iv)])]
    assert all(g >= 49 for g in gaps), f"interval gaps (ms) {gaps}"
    a = E.windows(outdir)["a"]
    # The program stores to page 0 of its window all the time, and to nothing else in it.
    for s in iv:
        assert E.window_pages(out, s["seq"], a) == [0], \
            f"interval snapshot {s['seq']}: window pages {E.window_pages(out, s['seq'], a)}"
    assert E.window_pages(out, out.snapshots[-1]["seq"], a) in ([], [0])


@case
def test_exit_snapshot_return_and_exit():
    for cmd, status in (([PROG, "map", "a", "8", "w", "a", "2,5"], 0),
                        ([PROG, "map", "a", "8", "w", "a", "2,5", "exit", "3"], 3)):
        t, outdir, u = E.run_pair(cmd)
        E.same_result(t, u)
        assert t.returncode == status
        E.no_ww_lines(t)
        out = E.check_consistent(W.one_output(outdir))
        assert [s["trigger"] for s in out.snapshots] == ["exit"], [s["trigger"] for s in out.snapshots]
        assert E.window_pages(out, 1, E.windows(outdir)["a"]) == [2, 5]
    # _exit (dash, fork children) takes the exit snapshot too; the status is the program's.
    t, outdir, u = E.run_pair([PROG, "map", "a", "8", "w", "a", "2", "_exit", "4"])
    E.same_result(t, u)
    assert t.returncode == 4
    out = E.check_consistent(W.one_output(outdir))
    assert [s["trigger"] for s in out.snapshots] == ["exit"], [s["trigger"] for s in out.snapshots]
    assert E.window_pages(out, 1, E.windows(outdir)["a"]) == [2]


@case
def test_death_by_signal_leaves_whole_lines():
    # Killed while interval snapshots of 10,000 regions are being written: no exit snapshot
    # (README, Limitations), and only whole lines.
    for sig in (signal.SIGKILL, signal.SIGTERM):
        outdir = W.tmpdir()
        p = subprocess.Popen([PROG, "ramp", "10000", "ready", "spin", "10000"],
                             env=E.env_for(outdir, {"WRITEWATCH_INTERVAL_MS": "1"}), cwd=outdir,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout.readline() == b"ready\n"
        p.stdin.write(b"go\n")
        p.stdin.flush()
        E.wait_for(lambda: len(E.snapshots_in(outdir, "interval")) >= 3, what="interval snapshots")
        p.send_signal(sig)
        p.communicate(timeout=20)
        assert p.returncode == -sig, p.returncode
        # Every line whole JSON, and every snapshot's region records all there (they sum up).
        out = E.check_consistent(W.one_output(outdir))
        trig = {s["trigger"] for s in out.snapshots}
        assert trig == {"interval"}, trig


@case
def test_exec_snapshot_and_new_file():
    cmd = [PROG, "map", "a", "8", "w", "a", "1", "exec", PROG, "map", "b", "8", "w", "b", "2,3",
           "snap", "inchild", ";"]
    t, outdir = E.run_tracked(cmd)
    assert t.returncode == 0 and t.stdout == b"snap inchild 0\n", (t.returncode, t.stdout, t.stderr)
    E.no_ww_lines(t)
    files = W.outputs(outdir)
    assert len(files) == 2 and files[1] == files[0] + ".1", f"files {files}"
    parent, child = (E.check_consistent(W.Output(f)) for f in files)
    assert parent.header["cause"] == "start" and child.header["cause"] == "exec"
    assert child.header["pid"] == parent.header["pid"], "an exec'd image keeps the pid"
    assert "parent_pid" not in child.header
    assert [s["trigger"] for s in parent.snapshots] == ["exec"], [s["trigger"] for s in parent.snapshots]
    assert E.window_pages(parent, 1, E.windows(outdir)["a"]) == [1]
    assert [s["trigger"] for s in child.snapshots] == ["api", "exit"]
    W.check_expectations(child, os.path.join(outdir, "expect.jsonl"))
    assert child.header["argv"][:2] == [PROG, "map"]


@case
def test_api_without_shim():
    p = W.run([PROG, "map", "a", "4", "w", "a", "0", "snap", "x"], env=E.plain_env())
    assert p.returncode == 0 and p.stdout == b"snap x -1 ENOSYS\n" and p.stderr == b"", (p.stdout, p.stderr)


# ---------------------------------------------------------------------------------------------
# fork and exec'd children


@case
def test_fork_child_reports_its_own_writes():
    t, outdir = E.run_tracked([FORK, "basic"])
    assert t.returncode == 0, (t.stdout, t.stderr)
    assert t.stdout == b"child snap 0\nchild status 0, parent snap 0\n", t.stdout
    E.no_ww_lines(t)
    outs = E.load_all(outdir)
    assert len(outs) == 2, [o.path for o in outs]
    (parent,), (child,) = E.by_cause(outs, "start"), E.by_cause(outs, "fork")
    ids = (child.header["parent_pid"], parent.header["pid"], child.header["ppid"], child.header["pid"])
    assert ids[0] == ids[1] == ids[2] != ids[3], f"parent_pid, parent pid, ppid, pid: {ids}"
    expect = os.path.join(outdir, "expect.jsonl")
    W.check_expectations(child, expect + ".child")   # exactly 5,6
    W.check_expectations(parent, expect)             # exactly 0-2 and 9
    trig = ([s["label"] or s["trigger"] for s in child.snapshots],
            [s["label"] or s["trigger"] for s in parent.snapshots])
    assert trig == (["child", "exit"], ["parent", "exit"]), f"child, parent snapshots: {trig}"
    with open(expect) as f:
        win = json.loads(f.readline())
    first = int(win["start"], 16) // W.PAGE
    for s in parent.snapshots:
        got = E.window_pages(parent, s["seq"], (first, 16))
        assert not {5, 6} & set(got), f"the parent's file reports the child's pages: {got}"
    for s in child.snapshots:
        got = E.window_pages(child, s["seq"], (first, 16))
        assert not {0, 1, 2, 9} & set(got), f"the child reports the parent's pages: {got}"


@case
def test_child_without_fork_handlers_stays_untracked():
    # _Fork() runs no atfork handlers: the child holds the parent's descriptors. It must not
    # snapshot into the parent's file nor re-arm the parent's pages through them.
    t, outdir = E.run_tracked([FORK, "rawfork"])
    assert t.returncode == 0, t.stderr
    assert t.stdout == b"child snap -1 ENOSYS\nchild status 0, parent snap 0\n", t.stdout
    E.no_ww_lines(t)
    out = E.check_consistent(W.one_output(outdir))  # seq 1..n: nobody else wrote into it
    assert [s["label"] or s["trigger"] for s in out.snapshots] == ["start", "parent", "exit"]
    W.check_expectations(out, os.path.join(outdir, "expect.jsonl"))  # exactly pages 0 and 3


@case
def test_fork_loop_finishes_c07():
    t0 = time.monotonic()
    t, outdir = E.run_tracked(["timeout", "20", FORK, "loop", "100"], timeout=40)
    took = time.monotonic() - t0
    assert t.returncode == 0, f"status {t.returncode} after {took:.1f}s (124 = timeout): {t.stderr[-300:]!r}"
    assert t.stdout == b"loop 100 done, 0 children failed\n", t.stdout
    E.no_ww_lines(t)
    outs = E.load_all(outdir)
    # timeout (start) forks a child (fork) that execs t_env_fork (exec), which forks 100 times.
    parent = [o for o in E.by_cause(outs, "exec") if o.header["exe"] == FORK]
    assert len(parent) == 1, [(o.header["cause"], o.header["exe"]) for o in outs]
    parent = parent[0]
    forks = [o for o in E.by_cause(outs, "fork") if o.header["parent_pid"] == parent.header["pid"]]
    assert len(outs) == 103 and len(forks) == 100, f"{len(outs)} files, {len(forks)} t_env_fork children"
    for o in outs:
        execs = o.header["exe"].endswith("/timeout") and o.header["cause"] == "fork"
        assert last_trigger(o) == ("exec" if execs else "exit"), f"{o.path}: last snapshot {last_trigger(o)}"
        assert o.snapshots[-1]["lost_regions"] == 0, f"{o.path}: lost regions"
    # The parent unmapped 100 regions of 16 written-and-moved pages.
    assert parent.snapshots[-1]["retired_regions"] >= 100


@case
def test_fork_loop_as_unprivileged_user_c07():
    as_nobody_ready()
    d = E.public_dir()
    env = E.env_for(d, preload=False)
    t = W.run(["timeout", "20", SECCOMP, "--uid", "65534", "--preload", W.LIB, "--", FORK, "loop", "100"],
              env=env, cwd=d, timeout=40)
    assert t.returncode == 0 and t.stdout == b"loop 100 done, 0 children failed\n", (t.returncode, t.stdout)
    E.no_ww_lines(t)
    outs = E.load_all(d)
    assert len(outs) == 101 and len(E.by_cause(outs, "fork")) == 100, len(outs)
    assert all(o.header["tracking"] == "on" and last_is_exit(o) for o in outs)


@case
def test_fork_child_signal_and_interval_triggers():
    # The child has its own handler and writer thread: a signal to the child snapshots the child.
    outdir = W.tmpdir()
    it = E.Interactive([FORK, "childsig"], E.env_for(outdir), outdir)
    it.wait_ready()
    lines = it.out.decode().splitlines()
    child_pid = int(lines[1].split()[1])
    window = int(lines[0].split()[1], 16) // W.PAGE
    os.kill(child_pid, signal.SIGUSR2)

    def child_signal_snapshot():
        for f in W.outputs(outdir):
            with open(f, "rb") as fh:
                if b'"trigger":"signal"' in fh.read():
                    return f
    path = E.wait_for(child_signal_snapshot, what="the child's signal snapshot")
    p = it.release()
    assert p.returncode == 0, p.stderr
    E.no_ww_lines(p)
    outs = E.load_all(outdir)
    child = [o for o in outs if o.header["pid"] == child_pid]
    assert len(outs) == 2 and len(child) == 1 and child[0].path == path, [o.path for o in outs]
    child = child[0]
    assert [s["trigger"] for s in child.snapshots] == ["signal", "exit"]
    got = [E.window_pages(child, s["seq"], (window, 16)) for s in child.snapshots]
    assert got == [[3, 4], [7]], f"child window pages per snapshot: {got}"
    parent = [o for o in outs if o is not child][0]
    assert [s["trigger"] for s in parent.snapshots] == ["exit"]
    # Interval snapshots go on in the child.
    t, outdir = E.run_tracked([FORK, "childspin", "300"], {"WRITEWATCH_INTERVAL_MS": "50"})
    assert t.returncode == 0, t.stderr
    child = E.by_cause(E.load_all(outdir), "fork")
    assert len(child) == 1
    window = int(t.stdout.split()[1], 16) // W.PAGE
    iv = [s for s in child[0].snapshots if s["trigger"] == "interval"]
    assert len(iv) >= 3, f"{len(iv)} interval snapshots in the child's 300 ms"
    assert all(E.window_pages(child[0], s["seq"], (window, 4)) == [0] for s in iv)


def fd_listing(stdout):
    """{fd: target} from `ls -l /proc/self/fd`."""
    fds = {}
    for line in stdout.decode().splitlines():
        if " -> " in line:
            left, target = line.split(" -> ", 1)
            fds[int(left.split()[-1])] = target
    return fds


@case
def test_exec_leaks_no_descriptors_c06():
    cmd = [PROG, "exec", "ls", "-l", "/proc/self/fd", ";"]
    t, outdir, u = E.run_pair(cmd)
    assert t.returncode == u.returncode == 0, (t.stderr, u.stderr)
    E.no_ww_lines(t)
    mine, plain = fd_listing(t.stdout), fd_listing(u.stdout)
    outs = E.load_all(outdir)
    parent = [o for o in outs if o.header["cause"] == "start"][0]
    ls = [o for o in outs if o.header["cause"] == "exec"]
    assert len(ls) == 1 and ls[0].header["exe"].endswith("/ls"), [o.path for o in outs]
    # ls is tracked afresh: it holds its own userfaultfd, pagemap and output file, once each;
    # none of the parent's survived the exec.
    uffd = [fd for fd, tg in mine.items() if "userfaultfd" in tg]
    pm = [fd for fd, tg in mine.items() if tg.endswith("/pagemap")]
    outf = [tg for tg in mine.values() if os.path.basename(tg).startswith("ww.")]
    assert len(uffd) == 1 and len(pm) == 1, f"userfaultfd {uffd}, pagemap {pm} in {mine}"
    assert outf == [ls[0].path], f"output descriptors {outf}; ls writes {ls[0].path}, parent {parent.path}"
    assert last_is_exit(ls[0]) and last_trigger(parent) == "exec"
    assert all(tg.startswith(("/proc/", "/dev", "pipe:", "anon_inode:")) for tg in plain.values()), plain
    assert set(mine) - {uffd[0], pm[0]} - {fd for fd, tg in mine.items() if tg in outf} == set(plain), \
        f"other descriptors differ: tracked {mine}, untracked {plain}"
    # Without follow, ls runs untracked: nothing of writewatch at all.
    t, outdir = E.run_tracked(cmd, {"WRITEWATCH_FOLLOW": "0"})
    mine = fd_listing(t.stdout)
    assert set(mine) == set(plain), f"FOLLOW=0: {mine} vs untracked {plain}"
    assert len(W.outputs(outdir)) == 1


@case
def test_env_i_child_untracked_and_quiet():
    # `env -i env` prints the environment the last image got: nothing, as untracked.
    cmd = [PROG, "exec", "env", "-i", "env", ";"]
    t, outdir, u = E.run_pair(cmd)
    E.same_result(t, u)
    assert t.stdout == b"", f"env -i gave the child an environment: {t.stdout!r}"
    assert t.stderr == b"", t.stderr
    outs = E.load_all(outdir)
    # The t_env_prog image and the `env -i` image (same pid) are tracked; the last is not.
    assert sorted(o.header["cause"] for o in outs) == ["exec", "start"], [o.path for o in outs]


@case
def test_exec_after_cd_keeps_the_output_directory():
    """A relative WRITEWATCH_OUTPUT is relative to where the tree started: a shell that cd's
    elsewhere and execs leaves both files (start, exec) in its start directory."""
    other = W.tmpdir()
    t, outdir = E.run_tracked(["sh", "-c", f"cd {other} && exec /bin/true"],
                              {"WRITEWATCH_OUTPUT": "ww.%e.%p.jsonl"})
    assert t.returncode == 0, t.stderr
    E.no_ww_lines(t)
    assert os.listdir(other) == [], f"files beside the exec'd image: {os.listdir(other)}"
    causes = sorted(W.Output(f).header["cause"] for f in W.outputs(outdir))
    assert causes == ["exec", "start"], causes


@case
def test_output_template_ending_in_slash():
    """WRITEWATCH_OUTPUT=DIR/ with DIR missing: one line naming the file it would have made
    inside DIR, and ENOENT (not EISDIR); with DIR present, the default name inside."""
    d = W.tmpdir()
    t, _ = E.run_tracked(["/bin/true"], {"WRITEWATCH_OUTPUT": os.path.join(d, "missing") + "/"})
    line = E.one_ww_line(t)
    assert "ENOENT" in line and "/missing/writewatch.true." in line, line
    os.mkdir(os.path.join(d, "there"))
    t, _ = E.run_tracked(["/bin/true"], {"WRITEWATCH_OUTPUT": os.path.join(d, "there") + "//"})
    E.no_ww_lines(t)
    files = os.listdir(os.path.join(d, "there"))
    assert len(files) == 1 and files[0].startswith("writewatch.true."), files


@case
def test_failed_exec_keeps_tracking():
    cmd = [PROG, "map", "a", "8", "w", "a", "1", "execve", "/nonexistent/prog", ";",
           "exec", "no-such-command-ww", ";", "w", "a", "2", "snap", "after"]
    t, outdir = E.run_tracked(cmd)
    assert t.stdout == b"exec failed ENOENT\nexec failed ENOENT\nsnap after 0\n", t.stdout
    E.no_ww_lines(t)
    out = E.check_consistent(W.one_output(outdir))
    assert [s["trigger"] for s in out.snapshots] == ["exec", "exec", "api", "exit"], \
        [s["trigger"] for s in out.snapshots]
    a = E.windows(outdir)["a"]
    got = [E.window_pages(out, s["seq"], a) for s in out.snapshots[:3]]
    assert got == [[1], [], [2]], f"window pages in the exec, exec, api snapshots: {got}"


def env_dump(stdout):
    return dict(l.split("=", 1) for l in stdout.decode().splitlines() if "=" in l)


@case
def test_follow_0_exec_untracked():
    # The exec'd image gets no file, and LD_PRELOAD without the shim (other entries kept).
    for preload, want in ((W.LIB, None), (EARLY + ":" + W.LIB, EARLY), (W.LIB + " " + EARLY, EARLY)):
        t, outdir = E.run_tracked([PROG, "exec", "/usr/bin/env", ";"],
                                  {"WRITEWATCH_FOLLOW": "0", "LD_PRELOAD": preload})
        assert t.returncode == 0, t.stderr
        E.no_ww_lines(t)
        env = env_dump(t.stdout)
        assert env.get("LD_PRELOAD") == want, f"LD_PRELOAD={preload!r}: child sees {env.get('LD_PRELOAD')!r}"
        assert not [k for k in env if k.startswith("WRITEWATCH_EXEC")], env
        outs = E.load_all(outdir)
        assert len(outs) == 1 and outs[0].header["follow"] is False, [o.path for o in outs]
        assert last_is_exit(outs[0]) is False and outs[0].snapshots[-1]["trigger"] == "exec"


# ---------------------------------------------------------------------------------------------
# Bad configuration: the program runs as untracked, one line names the variable and the value


BAD_PROG = [PROG, "map", "a", "4", "w", "a", "1", "check", "a", "1", "exit", "7"]


def bad_config(var, value, tracking, outdir=None):
    t, outdir = E.run_tracked(BAD_PROG, {var: value}, outdir=outdir)
    udir = W.tmpdir()
    u = W.run(BAD_PROG, env=E.plain_env(), cwd=udir)
    E.same_result(t, u)
    assert t.stdout == b"check a ok\n" and t.returncode == 7
    line = E.one_ww_line(t)
    assert f"{var}={value}" in line, f"the line does not name {var}={value}: {line}"
    files = W.outputs(outdir)
    if tracking:
        out = E.check_consistent(W.one_output(outdir))
        assert out.header["tracking"] == "on" and last_is_exit(out)
        assert E.window_pages(out, out.snapshots[-1]["seq"], E.windows(outdir)["a"]) == [1]
        return out, line
    assert files == [], f"files were created: {files}"
    return None, line


@case
def test_bad_interval():
    out, line = bad_config("WRITEWATCH_INTERVAL_MS", "abc", True)
    assert out.header["interval_ms"] == 0


@case
def test_bad_signal():
    for value in ("BOGUS", "SEGV"):
        out, line = bad_config("WRITEWATCH_SIGNAL", value, True)
        assert out.header["signal"] == "USR2"


@case
def test_bad_ranges():
    out, line = bad_config("WRITEWATCH_RANGES", "maybe", True)
    assert out.header["ranges"] is True


@case
def test_unknown_variable_named():
    """A misspelt variable (WRITEWATCH_INTERVAL for WRITEWATCH_INTERVAL_MS): one line naming it,
    tracking as with no such variable, the program as untracked."""
    out, line = bad_config("WRITEWATCH_INTERVAL", "20", True)
    assert "not a writewatch variable" in line and "INTERVAL_MS" in line, line
    assert out.header["interval_ms"] == 0


@case
def test_bad_config_quiet():
    t, outdir, u = E.run_pair(BAD_PROG, {"WRITEWATCH_QUIET": "1", "WRITEWATCH_SIGNAL": "BOGUS",
                                         "WRITEWATCH_OUTPUT": "/nonexistent/ww.%p.jsonl"})
    E.same_result(t, u)
    assert t.stderr == b"", f"WRITEWATCH_QUIET=1 still printed {t.stderr!r}"


@case
def test_disable_loads_and_does_nothing():
    cmd = [PROG, "mapped", "libwritewatch.so", "sigstate", "USR2", "map", "a", "2", "w", "a", "0",
           "snap", "x"]
    t, outdir = E.run_tracked(cmd, {"WRITEWATCH_DISABLE": "1"})
    assert t.stdout == b"mapped libwritewatch.so yes\nsigstate USR2 default\nsnap x -1 ENOSYS\n", t.stdout
    assert t.stderr == b"" and t.returncode == 0
    assert W.outputs(outdir) == []


@case
def test_bad_output_missing_dir():
    d = W.tmpdir()
    _, line = bad_config("WRITEWATCH_OUTPUT", os.path.join(d, "no", "such", "ww.%p.jsonl"), False, d)
    assert "ENOENT" in line, line


@case
def test_bad_output_file_in_place_of_dir():
    d = W.tmpdir()
    with open(os.path.join(d, "plain"), "w") as f:
        f.write("x")
    _, line = bad_config("WRITEWATCH_OUTPUT", os.path.join(d, "plain", "ww.%p.jsonl"), False, d)
    assert "ENOTDIR" in line, line


@case
def test_bad_output_dir_not_writable_for_user():
    as_nobody_ready()
    d = W.tmpdir()
    os.chmod(d, 0o755)  # root's, not writable by uid 65534
    tmpl = os.path.join(d, "ww.%p.jsonl")
    env = dict(E.env_for(d, {"WRITEWATCH_OUTPUT": tmpl}, preload=False), WW_INFO=os.devnull)
    pre = [SECCOMP, "--uid", "65534"]
    t = W.run(pre + ["--preload", W.LIB, "--"] + BAD_PROG, env=env, cwd="/")
    u = W.run(pre + ["--"] + BAD_PROG, env=E.plain_env(), cwd="/")
    E.same_result(t, u)
    line = E.one_ww_line(t)
    assert f"WRITEWATCH_OUTPUT={tmpl}" in line and "EACCES" in line, line
    assert not [f for f in os.listdir(d) if f.startswith("ww.")]


@case
def test_bad_output_read_only_dir():
    # Root ignores permission bits: make the directory read-only with a bind mount in a private
    # mount namespace, and start the program from there through t_env_seccomp --preload.
    if not shutil.which("unshare") or not shutil.which("mount"):
        raise Skip("unshare or mount missing")
    d = W.tmpdir()
    ro = os.path.join(d, "ro")
    os.mkdir(ro)
    tmpl = os.path.join(ro, "ww.%p.jsonl")
    inner = " ".join([SECCOMP, "--preload", W.LIB, "--"] + BAD_PROG)
    script = f"mount --bind -o ro {ro} {ro} || exit 200; exec {inner}"
    env = E.env_for(d, {"WRITEWATCH_OUTPUT": tmpl}, preload=False)
    t = W.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=env, cwd=d)
    if t.returncode == 200:
        raise Skip(f"cannot bind-mount read-only here: {t.stderr!r}")
    u = W.run(BAD_PROG, env=E.plain_env(), cwd=d)
    E.same_result(t, u)
    line = E.one_ww_line(t)
    assert f"WRITEWATCH_OUTPUT={tmpl}" in line and "EROFS" in line, line
    assert os.listdir(ro) == []


# ---------------------------------------------------------------------------------------------
# Sandboxes and permissions (C09, C10, C11, C03, C04, secure execution)

SNAP_PROG = [PROG, "map", "a", "16", "w", "a", "0,7-9,15", "snap", "s1", "w", "a", "3", "snap", "s2"]


def filtered(rules, extra=None, uid=None, cmd=None):
    """Run cmd under t_env_seccomp RULES, tracked (--preload) and untracked."""
    cmd = cmd or SNAP_PROG
    pre = [SECCOMP] + (["--uid", str(uid)] if uid is not None else [])
    outdir = E.public_dir() if uid is not None else W.tmpdir()
    env = E.env_for(outdir, extra, preload=False)
    t = W.run(pre + ["--preload", W.LIB] + rules + ["--"] + cmd, env=env, cwd=outdir)
    u = W.run(pre + rules + ["--"] + cmd, env=E.plain_env({"WW_INFO": os.devnull}), cwd=outdir)
    return t, outdir, u


def tracking_off(rules, must_mention, uid=None):
    t, outdir, u = filtered(rules, uid=uid)
    E.same_result(t, u)
    assert t.stdout == b"snap s1 -1 ENOSYS\nsnap s2 -1 ENOSYS\n", t.stdout
    line = E.one_ww_line(t)
    out = E.check_consistent(W.one_output(outdir))
    assert out.header["tracking"] == "off", out.header
    assert out.header["reason"] == line[len("writewatch: "):], (out.header["reason"], line)
    assert out.snapshots == [] and len(out.recs) == 1
    for word in must_mention:
        assert word in line, f"{word!r} not in {line!r}"
    return line


def tracking_exact(t, outdir):
    assert t.returncode == 0 and t.stdout == b"snap s1 0\nsnap s2 0\n", (t.stdout, t.stderr)
    E.no_ww_lines(t)
    out = E.check_consistent(W.one_output(outdir))
    assert out.header["tracking"] == "on"
    assert W.check_expectations(out, os.path.join(outdir, "expect.jsonl")) == 2
    return out


@case
def test_seccomp_userfaultfd_eperm_falls_back_to_dev():
    # As root /dev/userfaultfd is open to us: refusing only the syscall leaves the fallback,
    # and tracking working is the right outcome.
    if os.geteuid() != 0:
        raise Skip("needs root for /dev/userfaultfd")
    t, outdir, u = filtered(["userfaultfd=EPERM"])
    tracking_exact(t, outdir)


@case
def test_seccomp_userfaultfd_refused_eperm_c11():
    tracking_off(["userfaultfd=EPERM", "uffd-dev=EPERM"],
                 ["userfaultfd", "EPERM", "/dev/userfaultfd", "untracked"])


@case
def test_seccomp_userfaultfd_refused_enosys_c11():
    tracking_off(["userfaultfd=ENOSYS", "uffd-dev=ENOSYS"],
                 ["userfaultfd", "ENOSYS", "/dev/userfaultfd", "untracked"])


@case
def test_seccomp_pagemap_scan_enotty_c09():
    tracking_off(["pagemap-scan=ENOTTY"], ["PAGEMAP_SCAN", "ENOTTY", "6.7"])


@case
def test_kernel_without_wp_async_c09():
    """UFFDIO_API refusing the feature, as kernels before 6.7 do (EINVAL): one line naming
    UFFD_FEATURE_WP_ASYNC and 6.7, tracking off, the program as untracked."""
    tracking_off(["uffd-api=EINVAL"], ["UFFD_FEATURE_WP_ASYNC", "6.7", "EINVAL"])


@case
def test_unprivileged_user_mode_only_c10():
    as_nobody_ready()

    def go():
        t, outdir, u = filtered([], uid=65534)
        out = tracking_exact(t, outdir)
        st = os.stat(out.path)
        assert st.st_uid == 65534 and stat.S_IMODE(st.st_mode) == 0o600
    with_sysctl_zero(go)


@case
def test_unprivileged_every_path_refused_c10():
    as_nobody_ready()
    line = with_sysctl_zero(lambda: tracking_off(["userfaultfd=EPERM"], ["EPERM", "EACCES",
                                                 "/dev/userfaultfd", "vm.unprivileged_userfaultfd"],
                                                 uid=65534))
    assert line.count("EACCES") == 1


STATIC_SRC = r"""
#include <stdio.h>
int main(int argc, char **argv) { printf("static %d %s\n", argc, argv[argc - 1]); return 5; }
"""


@case
def test_static_binary_under_launcher_c03():
    d = W.tmpdir()
    src, exe = os.path.join(d, "s.c"), os.path.join(d, "static_prog")
    with open(src, "w") as f:
        f.write(STATIC_SRC)
    c = W.run(["cc", "-static", "-O1", src, "-o", exe])
    if c.returncode != 0:
        raise Skip(f"cannot link statically: {c.stderr[-200:]!r}")
    out = os.path.join(d, "out")
    os.mkdir(out)
    t = W.run([sys.executable, W.LAUNCHER, "-o", os.path.join(out, "ww.%p.jsonl"), "--", exe, "x y"],
              env=E.plain_env(), cwd=d)
    u = W.run([exe, "x y"], env=E.plain_env(), cwd=d)
    E.same_result(t, u)
    assert t.stdout == b"static 2 x y\n"
    line = E.one_ww_line(t)
    assert "statically linked" in line and "untracked" in line, line
    assert os.listdir(out) == [], os.listdir(out)


def setuid_copy(owner):
    d = E.public_dir()
    exe = os.path.join(d, "t_env_prog_suid")
    shutil.copy(PROG, exe)
    os.chown(exe, owner, owner)
    os.chmod(exe, 0o4755)
    return d, exe


@case
def test_setuid_binary_under_launcher_c04():
    if os.geteuid() != 0:
        raise Skip("needs root to make a setuid copy owned by another user")
    d, exe = setuid_copy(65534)
    out = os.path.join(d, "out")
    os.mkdir(out)
    cmd = [exe, "map", "a", "2", "w", "a", "0", "check", "a", "0", "sigstate", "USR2"]
    t = W.run([sys.executable, W.LAUNCHER, "-o", os.path.join(out, "ww.%p.jsonl"), "--"] + cmd,
              env=E.plain_env({"WW_INFO": os.devnull}), cwd=d)
    u = W.run(cmd, env=E.plain_env({"WW_INFO": os.devnull}), cwd=d)
    E.same_result(t, u)
    assert t.stdout == b"check a ok\nsigstate USR2 default\n", t.stdout
    line = E.one_ww_line(t)
    assert "setuid" in line and "untracked" in line, line
    assert os.listdir(out) == []


@case
def test_secure_execution_creates_no_file():
    # A setuid-root copy run by uid 65534 with LD_PRELOAD and WRITEWATCH_OUTPUT set.
    as_nobody_ready()
    d, exe = setuid_copy(0)
    cmd = [exe, "map", "a", "2", "w", "a", "0", "sigstate", "USR2", "snap", "x"]
    env = E.plain_env({"WRITEWATCH_OUTPUT": os.path.join(d, "ww.%p.jsonl"), "WW_INFO": os.devnull})
    t = W.run([SECCOMP, "--uid", "65534", "--preload", W.LIB, "--"] + cmd, env=env, cwd=d)
    assert t.returncode == 0 and t.stderr == b"", (t.returncode, t.stderr)
    assert t.stdout == b"sigstate USR2 default\nsnap x -1 ENOSYS\n", t.stdout
    assert sorted(os.listdir(d)) == ["t_env_prog_suid"], os.listdir(d)


@case
def test_secure_execution_shim_loaded_stays_idle():
    # In secure-execution mode ld.so still preloads a set-user-ID library from a system
    # directory named without a slash: then the shim itself must see AT_SECURE and do nothing.
    as_nobody_ready()
    libdir = "/usr/lib/x86_64-linux-gnu"
    if not os.access(libdir, os.W_OK):
        raise Skip(f"{libdir} not writable")
    name = f"libwwsecuretest{os.getpid()}.so"
    lib = os.path.join(libdir, name)
    d, exe = setuid_copy(0)
    try:
        shutil.copy(W.LIB, lib)
        os.chmod(lib, 0o4755)
        cmd = [exe, "mapped", name, "map", "a", "2", "w", "a", "0", "sigstate", "USR2", "snap", "x"]
        env = E.plain_env({"WRITEWATCH_OUTPUT": os.path.join(d, "ww.%p.jsonl"), "WW_INFO": os.devnull})
        t = W.run([SECCOMP, "--uid", "65534", "--preload", name, "--"] + cmd, env=env, cwd=d)
    finally:
        if os.path.exists(lib):
            os.unlink(lib)
    assert t.returncode == 0 and t.stderr == b"", (t.returncode, t.stderr)
    assert t.stdout == f"mapped {name} yes\nsigstate USR2 default\nsnap x -1 ENOSYS\n".encode(), t.stdout
    assert sorted(os.listdir(d)) == ["t_env_prog_suid"], os.listdir(d)


# ---------------------------------------------------------------------------------------------
# C05: another library's constructor maps and writes before the shim is up


def early(order):
    preload = ":".join([EARLY, W.LIB] if order == "early-first" else [W.LIB, EARLY])
    cmd = [PROG, "early", "snap", "mid", "sleep", "30"]
    t, outdir = E.run_tracked(cmd, {"LD_PRELOAD": preload})
    assert t.returncode == 0, f"{order}: status {t.returncode}, {t.stderr!r}"
    assert t.stdout == b"early running\nsnap mid 0\n", f"{order}: {t.stdout!r}"
    E.no_ww_lines(t)
    out = E.check_consistent(W.one_output(outdir))
    win = E.windows(outdir)["early"]
    mid = out.snapshot("mid")
    got = E.window_pages(out, mid["seq"], win)
    assert got == list(range(8)), f"{order}: first snapshot reports {got} of libearly's 8 pages"
    regs = [r for r in out.regions[mid["seq"]] if int(r["start"], 16) // W.PAGE <= win[0] < int(r["end"], 16) // W.PAGE]
    assert len(regs) == 1 and regs[0]["new"] is True, regs
    ex = out.snapshots[-1]
    assert ex["trigger"] == "exit"
    got = E.window_pages(out, ex["seq"], win)
    assert got and set(got) <= set(range(2, 8)), f"{order}: exit snapshot reports {got}; the thread writes 2-7"


@case
def test_early_library_before_shim_c05():
    early("early-first")


@case
def test_early_library_after_shim_c05():
    early("shim-first")


@case
def test_libc_before_shim_in_preload():
    """LD_PRELOAD="libc.so.6 <shim>": nothing behind the shim to forward malloc to (dlsym's
    RTLD_NEXT finds nothing): glibc's own allocator is used, the program runs as untracked."""
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    if not os.path.exists(libc):
        raise Skip(f"no {libc}")
    cmd = ["sort"]
    data = b"".join(b"%d\n" % (i * 7919 % 100003) for i in range(50000))
    t, outdir, u = E.run_pair(cmd, {"LD_PRELOAD": f"{libc}:{W.LIB}"}, input=data)
    E.same_result(t, u)
    E.no_ww_lines(t)
    out = W.one_output(outdir)
    assert out.header["tracking"] == "on", out.header


# ---------------------------------------------------------------------------------------------
# C19: the program owns the trigger signal


@case
def test_program_handler_for_trigger_signal_c19():
    for how in ("catch", "catch1"):
        results = []
        for tracked in (True, False):
            outdir = W.tmpdir()
            env = E.env_for(outdir) if tracked else E.plain_env({"WW_INFO": os.devnull})
            it = E.Interactive([PROG, how, "USR2", how, "USR2", "map", "a", "4", "w", "a", "1", "ready",
                                "waitcount", "USR2", "5", "3000"], env, outdir)
            it.wait_ready()
            for _ in range(5):
                it.signal(signal.SIGUSR2)
                time.sleep(0.05)
            p = it.release()
            results.append(p)
            if tracked:
                line = E.one_ww_line(p)
                assert "USR2" in line, line
                out = E.check_consistent(W.one_output(outdir))
                assert [s["trigger"] for s in out.snapshots] == ["exit"], \
                    f"{how}: triggers {[s['trigger'] for s in out.snapshots]}"
                assert E.window_pages(out, 1, E.windows(outdir)["a"]) == [1]
        t, u = results
        assert t.stdout == u.stdout == b"ready\ncount USR2 5\n", (how, t.stdout, u.stdout)
        assert t.returncode == u.returncode == 0


@case
def test_trigger_signal_blocked_interval_still_works_c19():
    results = []
    for tracked in (True, False):
        outdir = W.tmpdir()
        env = E.env_for(outdir, {"WRITEWATCH_INTERVAL_MS": "50"}) if tracked else E.plain_env()
        it = E.Interactive([PROG, "block", "USR2", "map", "a", "2", "ready", "spin", "400"], env, outdir)
        it.wait_ready()
        it.signal(signal.SIGUSR2)  # stays pending: blocked in every thread
        p = it.release()
        results.append(p)
        if tracked:
            E.no_ww_lines(p)
            out = E.check_consistent(W.one_output(outdir))
            trig = [s["trigger"] for s in out.snapshots]
            assert trig.count("interval") >= 4 and "signal" not in trig and trig[-1] == "exit", trig
            a = E.windows(outdir)["a"]
            assert all(E.window_pages(out, s["seq"], a) == [0]
                       for s in out.snapshots[1:-1]), "interval snapshots miss the spinning page"
    assert results[0].returncode == results[1].returncode == 0
    assert results[0].stdout == results[1].stdout == b"ready\n"


# ---------------------------------------------------------------------------------------------
# Descriptors: the program's numbers stay the program's


@case
def test_stderr_reused_by_daemon_gets_no_line():
    # A daemon closes stderr and its log takes descriptor 2; a later warning (here: it claims the
    # trigger signal) must not be written into the log.
    cmd = [PROG, "close", "2", "openfd", "log.txt", "catch", "USR2", "map", "a", "2", "w", "a", "0"]
    t, outdir, u = E.run_pair(cmd)
    E.same_result(t, u)
    assert t.stdout == b"fd 2\n"
    with open(os.path.join(outdir, "log.txt"), "rb") as f:
        log = f.read()
    assert log == b"", f"the shim wrote into the program's file on descriptor 2: {log!r}"
    out = E.check_consistent(W.one_output(outdir))
    assert last_is_exit(out)


def low_nofile():
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


@case
def test_low_descriptor_limit_keeps_small_numbers():
    # With RLIMIT_NOFILE below the shim's usual descriptor range, the program's first open still
    # returns 3, and tracking works.
    cmd = [PROG, "openfd", "/dev/null", "openfd", "/dev/null", "map", "a", "4", "w", "a", "1,2"]
    outdir = W.tmpdir()
    t = subprocess.run(cmd, env=E.env_for(outdir), cwd=outdir, preexec_fn=low_nofile,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    u = subprocess.run(cmd, env=E.plain_env(), cwd=W.tmpdir(), preexec_fn=low_nofile,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    E.same_result(t, u)
    assert t.stdout == b"fd 3\nfd 4\n", t.stdout
    E.no_ww_lines(t)
    out = E.check_consistent(W.one_output(outdir))
    assert E.window_pages(out, out.snapshots[-1]["seq"], E.windows(outdir)["a"]) == [1, 2]


@case
def test_own_array_replaced_during_maps_read():
    # The shim reads /proc/self/maps through a buffer while it grows its VMA array; the old
    # array (a mapping of its own) must not become "program memory" when it is replaced while
    # its line waits in the buffer. Where the line falls depends on a few VMAs either way: try
    # a range of layouts around the 1025th VMA.
    armed = 0
    for k in range(1016, 1052, 4):
        t, outdir = E.run_tracked([PROG, "ownrace", str(k)])
        if t.stdout != b"ownrace armed\n":
            continue
        armed += 1
        E.no_ww_lines(t)
        out = E.check_consistent(W.one_output(outdir))
        b = E.windows(outdir)["ownrace"]
        r2 = out.snapshot("r2")
        assert all(s["untracked_bytes"] == 0 for s in out.snapshots), f"k={k}: untracked bytes"
        assert r2["new_regions"] == k, f"k={k}: {r2['new_regions']} new regions in r2, the program made {k}"
        later = [r for r in E.regions_overlapping(out, b) if r["seq"] >= r2["seq"]]
        assert not later, f"k={k}: the shim's old array reported as program memory: {later[0]}"
    if not armed:
        raise Skip("could not find the shim's VMA array in /proc/self/maps (layout changed?)")


# ---------------------------------------------------------------------------------------------
# Output file security


FIXED_PROG = [PROG, "map", "a", "4", "w", "a", "2"]


@case
def test_output_file_mode_0600():
    t, outdir = E.run_tracked(FIXED_PROG)
    out = W.one_output(outdir)
    st = os.lstat(out.path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert st.st_uid == os.geteuid()
    old = os.umask(0)
    try:
        t, outdir = E.run_tracked(FIXED_PROG)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(W.one_output(outdir).path).st_mode) == 0o600, "umask 0 widened the mode"


@case
def test_output_existing_file_not_overwritten():
    d = W.tmpdir()
    path = os.path.join(d, "ww.fixed.jsonl")
    with open(path, "w") as f:
        f.write("precious\n")
    for n in (1, 2):
        t, _ = E.run_tracked(FIXED_PROG, {"WRITEWATCH_OUTPUT": path}, outdir=d)
        assert t.returncode == 0
        E.no_ww_lines(t)
        out = E.check_consistent(W.Output(f"{path}.{n}"))
        assert last_is_exit(out)
    with open(path) as f:
        assert f.read() == "precious\n"


@case
def test_output_symlink_not_followed():
    d = W.tmpdir()
    target, dangling = os.path.join(d, "target"), os.path.join(d, "nothing-here")
    with open(target, "w") as f:
        f.write("target\n")
    for link_to in (target, dangling):
        path = os.path.join(d, "ww.link.jsonl")
        if os.path.lexists(path):
            os.unlink(path)
        for f in os.listdir(d):
            if f.startswith("ww.link.jsonl."):
                os.unlink(os.path.join(d, f))
        os.symlink(link_to, path)
        t, _ = E.run_tracked(FIXED_PROG, {"WRITEWATCH_OUTPUT": path}, outdir=d)
        assert t.returncode == 0
        E.no_ww_lines(t)
        assert os.path.islink(path) and os.readlink(path) == link_to
        out = E.check_consistent(W.Output(path + ".1"))
        assert not os.path.islink(out.path) and last_is_exit(out)
    with open(target) as f:
        assert f.read() == "target\n", "the symlink's target was written"
    assert not os.path.lexists(dangling), "a dangling symlink's target was created"


# ---------------------------------------------------------------------------------------------
# C13: shared memory is untracked; C18: unusual mmap flags behave as without the shim


@case
def test_shared_memory_untracked_c13():
    cmd = [PROG, "mapshared", "s", "4", "memfd", "m", "4", "map", "p", "4",
           "w", "s", "1", "protect", "s", "r", "protect", "s", "rw", "w", "s", "2",
           "w", "m", "1", "protect", "m", "r", "protect", "m", "rw", "w", "m", "2",
           "w", "p", "1", "check", "s", "1-2", "check", "m", "1-2"]
    t, outdir, u = E.run_pair(cmd)
    E.same_result(t, u)
    assert t.stdout == b"check s ok\ncheck m ok\n"
    E.no_ww_lines(t)
    out = E.check_consistent(W.one_output(outdir))
    assert "shared" in out.header["untracked"]
    wins = E.windows(outdir)
    for name in ("s", "m"):
        assert E.regions_overlapping(out, wins[name]) == [], f"region records for shared window {name}"
    assert E.window_pages(out, out.snapshots[-1]["seq"], wins["p"]) == [1]


@case
def test_mmap_flags_as_without_shim_c18():
    # Independent of the machine's huge pages: MAP_HUGETLB is test_hugetlb_*_c18's.
    cases = {"noreplace": (b"noreplace EEXIST\nnoreplace contents intact\nnoreplace free at-address\n",
                           {"nr": list(range(8)), "hole": [1, 3]}),
             "growsdown": (b"growsdown mapped\ngrowsdown contents ok\n", {"gd": [0, 3]}),
             "32bit": (b"32bit below-2GiB\n", {"low": [2]})}
    for what, (stdout, pages) in cases.items():
        t, outdir, u = E.run_pair([PROG, "mmaptest", what])
        E.same_result(t, u, f"{what}: ")
        assert t.stdout == stdout, f"{what}: {t.stdout!r}"
        E.no_ww_lines(t)
        out = E.check_consistent(W.one_output(outdir))
        wins = E.windows(outdir)
        for name, want in pages.items():
            got = E.window_pages(out, out.snapshots[-1]["seq"], wins[name])
            assert got == want, f"{what}: window {name} reports {got}, wrote {want}"


HUGE_SYSCTL = "vm.nr_hugepages"


def restored(name, old):
    now = E.sysctl(name)
    assert now == old, f"{name} is {now} after the test, was {old}"


def same_but_api(t, u, what=""):
    """same_result for a program that calls writewatch_snapshot: untracked, `snap L` prints
    "snap L -1 ENOSYS" where tracked it prints "snap L 0"; every other line is the same."""
    assert t.returncode == u.returncode, f"{what}exit status {t.returncode} tracked, {u.returncode} untracked"
    mine = re.sub(rb"(?m)^snap (\S+) 0$", rb"snap \1 -1 ENOSYS", t.stdout)
    assert mine == u.stdout, f"{what}stdout differs: tracked {t.stdout!r}, untracked {u.stdout!r}"


@case
def test_hugetlb_without_pages_c18():
    # No huge pages (and no surplus ones): MAP_HUGETLB fails, with the errno it has untracked.
    old = (E.sysctl(HUGE_SYSCTL), E.sysctl("vm.nr_overcommit_hugepages"))
    with E.sysctl_set({HUGE_SYSCTL: "0", "vm.nr_overcommit_hugepages": "0"}):
        runs = [E.run_pair([PROG, "mmaptest", "hugetlb"]),
                E.run_pair([PROG, "map", "p", "4", "w", "p", "1,2", "maphuge", "h", "w", "p", "3"])]
    restored(HUGE_SYSCTL, old[0])
    restored("vm.nr_overcommit_hugepages", old[1])
    for (t, outdir, u), stdout, status in zip(runs, (b"hugetlb ENOMEM\n", b"maphuge h ENOMEM\n"), (0, 3)):
        E.same_result(t, u)
        assert (t.stdout, t.returncode) == (stdout, status), (t.stdout, t.returncode, t.stderr[-300:])
        E.no_ww_lines(t)
        out = E.check_consistent(W.one_output(outdir))
        assert last_is_exit(out), [s["trigger"] for s in out.snapshots]
    # maphuge exits 3 when its mmap fails: the window mapped before it is exact at exit.
    t, outdir, u = runs[1]
    out = W.one_output(outdir)
    got = E.window_pages(out, out.snapshots[-1]["seq"], E.windows(outdir)["p"])
    assert got == [1, 2], f"window p reports {got}, wrote 1,2"


HUGE_CMD = [PROG, "map", "p", "4", "maphuge", "h", "mapped", "anon_hugepage",
            "w", "h", "5", "w", "p", "1", "snap", "h1",
            "protect", "h", "r", "protect", "h", "rw", "w", "h", "300", "w", "p", "2", "snap", "h2",
            "check", "h", "5,300", "unmap", "h", "snap", "h3", "w", "p", "3"]
HUGE_STDOUT = (b"maphuge h aligned\nmapped anon_hugepage yes\nsnap h1 0\nsnap h2 0\ncheck h ok\n"
               b"snap h3 0\n")
_huge_runs = {}


def hugetlb_run():
    """HUGE_CMD tracked and untracked with vm.nr_hugepages=4 (2 MiB each), and `mmaptest
    hugetlb` likewise: run once for the two tests below. h is a private MAP_HUGETLB window (one
    huge page, 512 small ones) beside an ordinary window p. Page 5 of h is written (h1); h is
    made read-only and writable again and page 300 written (h2); h is unmapped (h3)."""
    if "r" not in _huge_runs:
        old = E.sysctl(HUGE_SYSCTL)
        try:
            with E.sysctl_set({HUGE_SYSCTL: "4"}):
                _huge_runs["r"] = E.run_pair(HUGE_CMD) + (E.run_pair([PROG, "mmaptest", "hugetlb"]),)
        except Skip as s:
            _huge_runs["r"] = s
        restored(HUGE_SYSCTL, old)
    if isinstance(_huge_runs["r"], Skip):
        raise _huge_runs["r"]
    return _huge_runs["r"]


@case
def test_hugetlb_with_pages_c18():
    t, outdir, u, (mt, mdir, mu) = hugetlb_run()
    E.same_result(mt, mu, "mmaptest hugetlb: ")
    assert mt.stdout == b"hugetlb mapped\n", mt.stdout
    E.no_ww_lines(mt)
    assert last_is_exit(E.check_consistent(W.one_output(mdir)))
    same_but_api(t, u)
    assert t.stdout == HUGE_STDOUT and t.returncode == 0, (t.stdout, t.returncode, t.stderr[-300:])
    # stderr: nothing, or the one line saying huge pages are not tracked.
    assert t.stderr == b"" or "huge" in E.one_ww_line(t).lower(), t.stderr
    out = E.check_consistent(W.one_output(outdir))
    # The ordinary window beside it is exact in every snapshot: 1, 2, nothing.
    n = W.check_expectations(out, os.path.join(outdir, "expect.jsonl"))
    assert n == 3, f"{n} window expectations checked, want 3 (p in h1, h2, h3)"
    h = E.windows(outdir)["h"]
    snaps = [out.snapshot(label) for label in ("h1", "h2", "h3")]
    regs = E.regions_overlapping(out, h)
    if not regs:
        # Untracked (events.c ww_on_mmap leaves MAP_HUGETLB out, discovery skips the
        # "/anon_hugepage" VMA): then it is not memory of writewatch's at all. No snapshot may
        # count it as a new region, as retired while still mapped (the mprotect before h2), or
        # when it is unmapped (h3): nothing else maps or unmaps between these snapshots.
        figures = [{k: s[k] for k in ("new_regions", "retired_regions", "retired_bytes",
                                      "retired_written_bytes", "churn_bytes", "lost_regions")}
                   for s in snaps]
        zero = dict.fromkeys(figures[0], 0)
        want = [dict(zero, new_regions=figures[0]["new_regions"]), zero, zero]
        bad = {s["label"]: {k: v for k, v in f.items() if v != w[k]}
               for s, f, w in zip(snaps, figures, want) if f != w}
        assert not bad, (f"the untracked MAP_HUGETLB window (2 MiB, mapped until h3) is counted in "
                         f"snapshot figures {bad}; want 0 (h2 follows its mprotect RO then RW)")
        return
    # Tracked: at its granularity, one huge page. A store to page 5 dirties all 512 small
    # pages of it (h1), the store to page 300 again all 512 (h2), nothing after the unmap (h3).
    for r in regs:
        assert (int(r["start"], 16) // W.PAGE, int(r["end"], 16) // W.PAGE) == (h[0], h[0] + 512), \
            f"region {r['start']}-{r['end']} is not the huge window"
        assert not r.get("lost"), r
    got = [E.window_pages(out, s["seq"], h) for s in snaps]
    assert got == [list(range(512)), list(range(512)), []], \
        f"huge window: {[len(g) for g in got]} pages in h1, h2, h3; want 512, 512, 0"


@case
def test_hugetlb_listed_as_untracked_c18():
    # The global rule: what writewatch does not track is said in the output file, never left
    # to look like "0 pages written". The header's "untracked" list (docs/format.md) names
    # "shared" and "file-backed"; a private MAP_HUGETLB|MAP_ANONYMOUS mapping is neither to
    # the program that made it.
    t, outdir, u, _ = hugetlb_run()
    out = W.one_output(outdir)
    if E.regions_overlapping(out, E.windows(outdir)["h"]):
        return  # tracked: test_hugetlb_with_pages_c18 checks it is exact
    untracked = out.header["untracked"]
    assert any("huge" in k for k in untracked), \
        f"MAP_HUGETLB memory is not tracked, but the header's untracked list is {untracked}"


@case
def test_prot_none_then_mprotect_c18():
    cmd = [PROG, "mapnone", "a", "64", "protect", "a", "rw", "w", "a", "3,4,63", "snap", "x",
           "protect", "a", "none", "protect", "a", "rw", "w", "a", "5", "snap", "y",
           "check", "a", "3-5,63", "protect", "a", "r", "r", "a", "0-63", "exit", "4"]
    t, outdir, u = E.run_pair(cmd)
    same_but_api(t, u)
    assert t.stdout == b"snap x 0\nsnap y 0\ncheck a ok\n" and t.returncode == 4, (t.stdout, t.returncode)
    assert u.stderr == b"" and t.stderr == b"", (t.stderr, u.stderr)
    out = E.check_consistent(W.one_output(outdir))
    n = W.check_expectations(out, os.path.join(outdir, "expect.jsonl"))
    assert n == 2, f"{n} window expectations checked, want 2 (x, y)"
    # Read, never written after y: the exit snapshot has nothing in the window.
    got = E.window_pages(out, out.snapshots[-1]["seq"], E.windows(outdir)["a"])
    assert [s["trigger"] for s in out.snapshots] == ["api", "api", "exit"] and got == [], \
        f"exit snapshot reports {got} of the window, only read after y"


@case
def test_vma_limit_c12():
    # The case's setting, vm.max_map_count=40000, for both runs; put back afterwards.
    name, limit = "vm.max_map_count", 40000
    old = E.sysctl(name)
    counts = []
    with E.sysctl_set({name: str(limit)}):
        for tracked in (True, False):
            outdir = W.tmpdir()
            env = E.env_for(outdir) if tracked else E.plain_env({"WW_INFO": os.path.join(outdir, "info.jsonl")})
            p = W.run([PROG, "vmas"], env=env, cwd=outdir, timeout=120)
            assert p.returncode == 0 and p.stdout == b"vmas ENOMEM\n", (p.returncode, p.stdout, p.stderr[-300:])
            counts.append(E.info_records(outdir)[-1]["vmas"])
            if tracked:
                E.no_ww_lines(p)
                out = E.check_consistent(W.one_output(outdir))
                assert last_is_exit(out), [s["trigger"] for s in out.snapshots]
    restored(name, old)
    t, u = counts
    # Untracked, the program gets the limit less the VMAs it started with (a few dozen).
    assert limit - 200 <= u < limit, f"{u} mappings untracked under {name}={limit}"
    assert abs(t - u) <= u // 100, f"{t} mappings with writewatch, {u} without (limit {limit})"


W.finish()
