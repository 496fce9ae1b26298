#!/usr/bin/env python3
# The output file under hostile conditions: a full filesystem, a program that closes or dup2()s
# over writewatch's descriptors, a pre-existing file or symlink at the output path. The program
# is never affected, never receives our output, and the file holds only whole lines.
import json
import os
import shutil
import subprocess
import time

from wwtest import (BUILD, TESTS, Output, Skip, case, check_expectations, finish, load, run,
                    run_tracked, tmpdir, tracked_env, writewatch_lines)

PROG = os.path.join(TESTS, "t_io_fds")


def whole_json_lines(path):
    data = open(path, "rb").read()
    assert data.endswith(b"\n"), "last line cut"
    for line in data.split(b"\n")[:-1]:
        json.loads(line)
    return data


@case
def output_disk_full_keeps_whole_lines():
    d = tmpdir()
    mnt = os.path.join(d, "small")
    os.mkdir(mnt)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", mnt],
                      stderr=subprocess.DEVNULL).returncode:
        raise Skip("cannot mount a small tmpfs (not root?)")
    try:
        script = ("import ctypes\nsnap=getattr(ctypes.CDLL(None), 'writewatch_snapshot', None)\n"
                  "bufs=[]\n"
                  "for i in range(300):\n"
                  "    bufs.append(bytearray(200000))\n"
                  "    snap and snap(b'x'*100)\n"
                  "print('done', len(bufs))\n")
        plain = run(["python3", "-c", script])
        env = tracked_env(d, {"WRITEWATCH_OUTPUT": os.path.join(mnt, "ww.%p.jsonl")})
        p = run(["python3", "-c", script], env=env)
        assert p.returncode == plain.returncode == 0, p.stderr.decode()
        assert p.stdout == plain.stdout, "program output changed"
        lines = writewatch_lines(p.stderr)
        assert len(lines) == 1 and "ENOSPC" in lines[0], lines
        files = os.listdir(mnt)
        assert len(files) == 1, files
        data = whole_json_lines(os.path.join(mnt, files[0]))
        assert len(data) <= 16384
    finally:
        subprocess.run(["umount", mnt])


@case
def output_directory_removed_while_running():
    """The output directory is removed while the program runs with 20 ms snapshots: one line
    saying so, snapshots stop, the program's output and status as untracked."""
    d = tmpdir()
    gone = os.path.join(d, "out")
    os.mkdir(gone)
    script = ("import os, sys, time\n"
              "while os.path.isdir(sys.argv[1]): time.sleep(0.01)\n"
              "bufs = []\n"
              "for i in range(30):\n"
              "    bufs.append(bytearray(100000)); time.sleep(0.01)\n"
              "print('done', len(bufs))\n")
    flag = os.path.join(d, "running")
    plain = run(["python3", "-c", script, flag])  # no flag directory: runs straight through
    os.mkdir(flag)
    env = tracked_env(gone, {"WRITEWATCH_INTERVAL_MS": "20"})
    p = subprocess.Popen(["python3", "-c", script, flag], env=env, cwd=d,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while not os.listdir(gone) and time.time() < deadline:  # the file is there: tracking runs
        time.sleep(0.01)
    time.sleep(0.1)
    shutil.rmtree(gone)
    os.rmdir(flag)
    out, err = p.communicate(timeout=60)
    assert p.returncode == plain.returncode == 0, err.decode()
    assert out == plain.stdout, "program output changed"
    lines = writewatch_lines(err)
    assert len(lines) == 1 and "removed" in lines[0], lines
    assert not os.path.exists(gone), "the output directory was created again"


def hostile(mode):
    d = tmpdir()
    own = os.path.join(d, "own.txt")
    p, _ = run_tracked([PROG, mode, own], outdir=d)
    assert p.returncode == 0, p.stderr.decode()
    assert open(own).read() == "own line 1\nown line 2\n", "the program's file got other bytes"
    out = Output(os.path.join(d, [f for f in os.listdir(d) if f.startswith("ww.")][0]))
    lines = writewatch_lines(p.stderr)
    assert len(lines) == 1 and "userfaultfd" in lines[0], lines
    after = out.snapshot("after")
    assert after["lost_regions"] >= 1, "the interval with the vanished userfaultfd must be 'lost'"
    check_expectations(out, os.path.join(d, "expect.jsonl"))
    return out


@case
def program_closes_our_descriptors():
    hostile("close_range")


@case
def program_dup2s_over_our_descriptors():
    hostile("dup2")


@case
def output_never_overwrites_or_follows_symlinks():
    d = tmpdir()
    target = os.path.join(d, "precious")
    with open(target, "w") as f:
        f.write("keep me\n")
    os.symlink(target, os.path.join(d, "ww.true.jsonl"))
    p = run(["true"], env=tracked_env(d, {"WRITEWATCH_OUTPUT": os.path.join(d, "ww.%e.jsonl")}))
    assert p.returncode == 0
    assert open(target).read() == "keep me\n", "wrote through a symlink"
    made = os.path.join(d, "ww.true.jsonl.1")
    assert os.path.exists(made), os.listdir(d)
    assert (os.stat(made).st_mode & 0o777) == 0o600
    snaps = [r for r in load(made) if r["type"] == "snapshot"]
    assert [s["trigger"] for s in snaps] == ["exit"], snaps


finish()
