#!/usr/bin/env python3
# A bounded fuzzing pass over the configuration and /proc/self/maps parsers (libFuzzer with
# ASan and UBSan), plus every input kept in tests/fuzz/<target>/ as a regression. make fuzz
# runs the same targets for longer.
import os
import re
import shutil

from wwtest import BUILD, ROOT, Skip, case, finish, run, tmpdir

RUNS = {"maps": 300000, "config": 300000}


def fuzz(target):
    if not shutil.which("clang"):
        raise Skip("clang (libFuzzer) is not installed")
    # make's rule is the relative build/fuzz/fuzz_%: name the target that way, so that make
    # rebuilds it when a source changed
    p = run(["make", "-s", f"build/fuzz/fuzz_{target}"], cwd=ROOT, timeout=300)
    if p.returncode:
        raise Skip(f"cannot build the fuzzer: {p.stderr.decode()[-300:]}")
    seeds = os.path.join(ROOT, "tests", "fuzz", target)
    corpus = tmpdir()  # new inputs go here, never into the kept seeds
    p = run([f"{BUILD}/fuzz/fuzz_{target}", f"-runs={RUNS[target]}", "-max_len=4096",
             f"-artifact_prefix={corpus}/crash-", corpus, seeds], timeout=300)
    log = p.stderr.decode(errors="replace")
    assert p.returncode == 0, f"fuzzer found a problem:\n{log[-3000:]}"
    done = re.search(r"Done (\d+) runs", log)
    assert done and int(done.group(1)) >= RUNS[target], log[-500:]
    print(f"  fuzz_{target}: {done.group(1)} runs, corpus {len(os.listdir(corpus))} new inputs",
          flush=True)


@case
def fuzz_maps_parser():
    fuzz("maps")


@case
def fuzz_config_parser():
    fuzz("config")


finish()
