#!/usr/bin/env python3
# Coexistence with a program that uses userfaultfd itself: it keeps working exactly as without
# writewatch, writewatch lets go of the range the program claims and says so once, and keeps
# tracking the rest exactly.
import os

from wwtest import (TESTS, case, check_expectations, finish, one_output, run, run_tracked,
                    tmpdir, writewatch_lines)

PROG = os.path.join(TESTS, "t_coexist")


@case
def program_with_its_own_userfaultfd():
    plain = run([PROG], env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
                cwd=tmpdir())
    assert plain.returncode == 0, plain.stderr.decode()
    p, outdir = run_tracked([PROG])
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.replace(b"snapshot taken", b"snapshot unavailable") == plain.stdout, \
        (p.stdout, plain.stdout)
    lines = writewatch_lines(p.stderr)
    assert len(lines) == 1 and "its own userfaultfd" in lines[0], lines
    out = one_output(outdir)
    snap = out.snapshot("after")
    assert snap["untracked_bytes"] >= 64 * 4096, snap
    check_expectations(out, os.path.join(outdir, "expect.jsonl"))


finish()
