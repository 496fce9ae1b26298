#!/usr/bin/env python3
# Build-level checks: the library exports exactly the hooks and the API (nothing internal leaks),
# links with -z defs, and the public header works without the shim.
import os
import re
import subprocess

from wwtest import BUILD, LIB, ROOT, Skip, case, finish, run, tmpdir

EXPECTED = sorted("""mmap mmap64 munmap mremap madvise ioctl _exit _Exit dlclose sbrk brk execve execv execvp execvpe
execl execle execlp fexecve execveat sigaction signal writewatch_snapshot malloc free calloc realloc
memalign posix_memalign aligned_alloc valloc pvalloc mallopt pthread_create""".split())


def version_script_symbols():
    text = open(os.path.join(ROOT, "preload", "writewatch.map")).read()
    body = text.split("global:")[1].split("local:")[0]
    return sorted(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", body))


@case
def exports_match_the_list():
    out = run(["nm", "-D", "--defined-only", LIB]).stdout.decode()
    syms = sorted(line.split()[-1] for line in out.splitlines() if line.split()[1] in "TtWwDdBb")
    syms = [s for s in syms if s not in ("_init", "_fini")]
    assert syms == EXPECTED, f"exported {syms}"
    assert version_script_symbols() == EXPECTED, "writewatch.map and this list disagree"


@case
def no_malloc_or_stdio_imports():
    # The hooks must never call into malloc or stdio: the library may not even import them.
    out = run(["nm", "-D", "--undefined-only", LIB]).stdout.decode()
    imports = {line.split()[-1].split("@")[0] for line in out.splitlines()}
    bad = imports & {"malloc", "calloc", "realloc", "free", "printf", "fprintf", "fopen",
                     "fwrite", "puts", "snprintf", "sprintf", "strdup", "qsort"}
    assert not bad, f"the library imports {sorted(bad)}"


@case
def builds_with_clang_too():
    if subprocess.run(["sh", "-c", "command -v clang"], stdout=subprocess.DEVNULL).returncode:
        raise Skip("clang is not installed")
    d = tmpdir()
    p = run(["make", "-s", f"BUILD={d}", "CC=clang", f"{d}/libwritewatch.so"], cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr.decode()[-2000:]


@case
def api_without_the_shim_is_enosys():
    d = tmpdir()
    src = os.path.join(d, "api.c")
    with open(src, "w") as f:
        f.write('#include <writewatch.h>\n#include <stdio.h>\n'
                'int main(void){int r=writewatch_snapshot("x");'
                'printf("%d %d\\n", r, r < 0 && errno == ENOSYS);return 0;}\n')
    exe = os.path.join(d, "api")
    p = run(["cc", "-I", os.path.join(ROOT, "include"), src, "-o", exe, "-ldl"])
    assert p.returncode == 0, p.stderr.decode()
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    out = run([exe], env=env).stdout.decode().strip()
    assert out == "-1 1", out


finish()
