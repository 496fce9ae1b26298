# Helpers shared by test_env.py and test_programs.py (on top of wwtest.py): the environment test
# programs (build/tests/t_env_*), untracked twin runs, window ground truth from $WW_INFO, and the
# checks every output file must pass whatever the program did.
import json
import os
import shutil
import subprocess
import time
from contextlib import contextmanager

import wwtest as W
from wwtest import Skip

PROG = os.path.join(W.TESTS, "t_env_prog")
FORK = os.path.join(W.TESTS, "t_env_fork")
SECCOMP = os.path.join(W.TESTS, "t_env_seccomp")
EARLY = os.path.join(W.TESTS, "libearly.so")


def need(*paths):
    for p in paths:
        if not os.path.exists(p):
            raise Skip(f"{p} is missing (run make)")


def plain_env(extra=None):
    """The environment of an untracked run: no LD_PRELOAD, no WRITEWATCH_* variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WRITEWATCH_") and k != "LD_PRELOAD"}
    if extra:
        env.update(extra)
    return env


def env_for(outdir, extra=None, preload=True):
    """wwtest's tracked environment plus $WW_INFO; preload=False drops LD_PRELOAD (for launchers
    that set it themselves) but keeps the WRITEWATCH_* variables."""
    env = W.tracked_env(outdir, extra)
    env["WW_INFO"] = os.path.join(outdir, "info.jsonl")
    if not preload and not (extra and "LD_PRELOAD" in extra):
        env.pop("LD_PRELOAD", None)
    return env


def run_tracked(cmd, extra=None, timeout=60, input=None, outdir=None):
    """wwtest.run_tracked with $WW_INFO set too: (completed process, outdir)."""
    outdir = outdir or W.tmpdir()
    p = W.run(cmd, env=env_for(outdir, extra), timeout=timeout, input=input, cwd=outdir)
    return p, outdir


def run_pair(cmd, extra=None, timeout=60, input=None, untracked_cmd=None, untracked_extra=None):
    """Run cmd tracked and untracked (each in its own directory, as its cwd). Returns
    (tracked process, outdir, untracked process)."""
    t, outdir = run_tracked(cmd, extra=extra, timeout=timeout, input=input)
    udir = W.tmpdir()
    u = W.run(untracked_cmd or cmd, env=plain_env(dict(untracked_extra or {}, WW_INFO=os.devnull)),
              timeout=timeout, input=input, cwd=udir)
    shutil.rmtree(udir, ignore_errors=True)
    return t, outdir, u


def same_result(t, u, what=""):
    """The program's stdout and exit status are those of the untracked run."""
    assert t.returncode == u.returncode, \
        f"{what}exit status {t.returncode} tracked, {u.returncode} untracked; stderr {t.stderr[-300:]!r}"
    assert t.stdout == u.stdout, f"{what}stdout differs: tracked {t.stdout[-300:]!r}, untracked {u.stdout[-300:]!r}"


def no_ww_lines(p):
    lines = W.writewatch_lines(p.stderr)
    assert not lines, f"unexpected writewatch lines: {lines}"


def one_ww_line(p):
    """stderr is exactly one line, and it starts with writewatch:. Returns it."""
    text = p.stderr.decode(errors="replace")
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("writewatch: ") and text.endswith("\n"), \
        f"stderr should be exactly one writewatch: line, is {text!r}"
    return lines[0]


def windows(outdir):
    """name -> (first absolute page, npages, tracked) from the program's $WW_INFO."""
    out = {}
    path = os.path.join(outdir, "info.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if "window" in rec:
                    out[rec["window"]] = (int(rec["start"], 16) // W.PAGE, rec["npages"], rec["tracked"])
    return out


def info_records(outdir):
    path = os.path.join(outdir, "info.jsonl")
    with open(path) as f:
        return [json.loads(l) for l in f]


def window_pages(out, seq, win):
    """Page offsets inside window win = (first, npages, _) reported written in snapshot seq."""
    first, n = win[0], win[1]
    return sorted(p - first for p in out.written_pages(seq) if first <= p < first + n)


def regions_overlapping(out, win):
    first, n = win[0] * W.PAGE, (win[0] + win[1]) * W.PAGE
    return [r for rs in out.regions.values() for r in rs
            if int(r["start"], 16) < n and int(r["end"], 16) > first]


def check_consistent(out):
    """What every output file must satisfy: whole JSON lines (Output does that), one header,
    region records that belong to a snapshot and agree with it, figures that add up."""
    headers = [r for r in out.recs if r["type"] == "header"]
    assert len(headers) == 1, f"{out.path}: {len(headers)} headers"
    ps = out.header["page_size"]
    seqs = {s["seq"] for s in out.snapshots}
    for seq, regs in out.regions.items():
        assert seq in seqs, f"{out.path}: region records for seq {seq} without its snapshot"
    for s in out.snapshots:
        regs = out.regions.get(s["seq"], [])
        total = sum(r["written_pages"] for r in regs)
        assert total == s["written_pages"], \
            f"{out.path} seq {s['seq']}: regions sum to {total} pages, snapshot says {s['written_pages']}"
        assert s["written_bytes"] == s["written_pages"] * ps, f"{out.path} seq {s['seq']}: bytes != pages"
        assert s["ever_written_bytes"] <= s["tracked_bytes"], \
            f"{out.path} seq {s['seq']}: ever_written {s['ever_written_bytes']} > tracked {s['tracked_bytes']}"
        for r in regs:
            size = (int(r["end"], 16) - int(r["start"], 16)) // ps
            assert r["ever_written_pages"] <= size, f"{out.path}: region {r['id']} ever > size"
            for first, count in r.get("ranges", []):
                assert 0 <= first and first + count <= size, \
                    f"{out.path}: region {r['id']} range {[first, count]} outside {size} pages"
    if out.header.get("tracking") == "off":
        assert not out.snapshots, f"{out.path}: tracking off but {len(out.snapshots)} snapshots"
    return out


def load_all(outdir):
    return [check_consistent(W.Output(p)) for p in W.outputs(outdir)]


def by_cause(outs, cause):
    return [o for o in outs if o.header["cause"] == cause]


def last_trigger(out):
    assert out.snapshots, f"{out.path}: no snapshots"
    return out.snapshots[-1]["trigger"]


def wait_for(pred, timeout=5.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def snapshots_in(outdir, trigger):
    """The snapshots with this trigger in outdir's single output file, read while it grows
    (only whole lines)."""
    files = W.outputs(outdir)
    if len(files) != 1:
        return []
    with open(files[0], "rb") as f:
        data = f.read()
    lines = data.split(b"\n")[:-1]
    return [r for r in map(json.loads, lines) if r["type"] == "snapshot" and r["trigger"] == trigger]


class Interactive:
    """A program started with pipes: wait for its "ready", act, then let it go on."""

    def __init__(self, cmd, env, cwd):
        self.p = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = b""

    def wait_ready(self, timeout=10):
        end = time.monotonic() + timeout
        while not self.out.endswith(b"ready\n"):
            if time.monotonic() > end:
                self.p.kill()
                raise AssertionError("the program never said ready")
            b = self.p.stdout.read1(4096) if hasattr(self.p.stdout, "read1") else self.p.stdout.read(1)
            if not b:
                raise AssertionError(f"the program ended before ready: {self.out!r}")
            self.out += b

    def signal(self, sig):
        os.kill(self.p.pid, sig)

    def release(self, timeout=30):
        try:
            out, err = self.p.communicate(b"go\n", timeout=timeout)
        except BrokenPipeError:
            out, err = self.p.communicate(timeout=timeout)
        return subprocess.CompletedProcess(self.p.args, self.p.returncode, self.out + out, err)


def sysctl(name):
    with open("/proc/sys/" + name.replace(".", "/")) as f:
        return f.read().strip()


@contextmanager
def sysctl_set(settings):
    """Set /proc/sys values ({"vm.max_map_count": "40000", ...}, in order) for the duration of a
    with block and put the old values back afterwards, also when the block fails or skips.
    Skip when not root, when a file cannot be written (a read-only /proc/sys), or when the
    kernel does not take the value (it reads back different, e.g. huge pages it cannot find)."""
    if os.geteuid() != 0:
        raise Skip(f"needs root to set {', '.join(settings)}")
    saved = []
    try:
        for name, value in settings.items():
            path = "/proc/sys/" + name.replace(".", "/")
            old = sysctl(name)
            saved.append((name, path, old))  # before the write: a partial one is undone too
            try:
                with open(path, "w") as f:
                    f.write(str(value))
            except OSError as e:
                raise Skip(f"cannot set {name}={value}: {e}")
            got = sysctl(name)
            if got != str(value):
                raise Skip(f"{name}={value} does not take here (reads {got})")
        yield
    finally:
        failed = []
        for name, path, old in reversed(saved):
            try:
                with open(path, "w") as f:
                    f.write(old)
            except OSError as e:
                failed.append(f"{name}={old}: {e}")
            if sysctl(name) != old:
                failed.append(f"{name} reads {sysctl(name)}, was {old}")
        if failed:
            raise AssertionError(f"could not restore {failed}")


def public_dir():
    """A fresh directory every user can read, write and traverse (for uid 65534)."""
    d = W.tmpdir()
    os.chmod(d, 0o1777)
    return d


def nobody_can_reach(path):
    """True when uid 65534 can traverse every directory above path."""
    d = os.path.dirname(os.path.abspath(path))
    while d != "/":
        if not os.stat(d).st_mode & 0o001:
            return False
        d = os.path.dirname(d)
    return True
