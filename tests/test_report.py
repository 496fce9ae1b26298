#!/usr/bin/env python3
# Self-contained test of scripts/writewatch: report figures on hand-made JSONL files, launcher and dump.
# Plain python3, no pytest: prints "PASS test_report" and exits 0, or "FAIL test_report: reason", exit 1.

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # importing scripts/writewatch must not leave a __pycache__ behind

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wwtest  # noqa: E402

SCRIPT = wwtest.LAUNCHER
PAGE = 4096


class Failure(Exception):
    """A failed check."""


def check(condition, message):
    """Fail the test with message unless condition holds."""
    if not condition:
        raise Failure(message)


def clean_env(**extra):
    """The environment without anything of ours or the user's that would change results."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WRITEWATCH_") and k != "LD_PRELOAD"}
    env.update(extra)
    return env


def run(args, env=None, script=SCRIPT, **kwargs):
    """Run the script with args; returns the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, script] + args, env=env or clean_env(),
                          capture_output=True, text=True, timeout=60, **kwargs)


def skip(part, reason):
    """Say that part of the test could not run here."""
    print(f"SKIP test_report: {part}: {reason}")


# ---------------------------------------------------------------------------------------------
# report


def header(**fields):
    """A header record as docs/format.md describes it."""
    record = {"type": "header", "format": 1, "tool": "writewatch", "version": "0.1.0",
              "pid": 4242, "ppid": 1, "cause": "start", "exe": "/usr/bin/demo",
              "argv": ["demo", "--size", "1 MiB"], "page_size": PAGE,
              "start_realtime_ns": 1700000000000000000, "interval_ms": 0, "signal": "USR2",
              "ranges": True, "follow": True, "tracking": "on",
              "method": "uffd-wp-async+pagemap-scan", "discovery": "hooks+proc-maps",
              "tracked": ["anonymous-private"], "untracked": ["shared", "file-backed"]}
    record.update(fields)
    return record


def snapshot(seq, written_pages, trigger="interval", label=None, **fields):
    """A snapshot record; fields not given are 0."""
    record = {"type": "snapshot", "seq": seq, "trigger": trigger, "label": label,
              "t_ns": seq * 1500000, "tracked_regions": 3, "tracked_bytes": 64 * PAGE,
              "written_pages": written_pages, "written_bytes": written_pages * PAGE,
              "ever_written_bytes": 0, "new_regions": 0, "retired_regions": 0,
              "retired_bytes": 0, "retired_written_bytes": 0, "discarded_bytes": 0,
              "lost_regions": 0, "scan_ns": 250000}
    record.update(fields)
    return record


REGION_INFO = {1: ("heap", "[heap]", 0x5000000), 2: ("mmap", "", 0x7F0000000000),
               3: ("anon", "[anon:arena]", 0x7F1000000000)}


def region(seq, region_id, written_pages, ever, lost=False):
    """A region record of one of the three fixture regions."""
    kind, name, start = REGION_INFO[region_id]
    record = {"type": "region", "seq": seq, "id": region_id, "start": hex(start),
              "end": hex(start + 64 * PAGE), "prot": "rw-", "kind": kind, "name": name,
              "new": seq == 1, "written_pages": written_pages, "ever_written_pages": ever,
              "ranges": [[0, written_pages]] if written_pages else []}
    if lost:
        record["lost"] = True
    return record


def fixture_records():
    """Three snapshots with known totals (see check_fixture_summary)."""
    return [
        header(),
        snapshot(1, 10, trigger="api", label="start", ever_written_bytes=10 * PAGE, new_regions=2),
        region(1, 1, 6, 6),
        region(1, 2, 4, 4),
        snapshot(2, 25, ever_written_bytes=30 * PAGE, new_regions=1, retired_regions=1,
                 retired_bytes=16 * PAGE, retired_written_bytes=2 * PAGE, discarded_bytes=PAGE,
                 future_field="ignored"),
        region(2, 2, 20, 20),
        region(2, 3, 5, 5),
        {"type": "future_record", "seq": 2, "what": "readers must ignore this"},
        snapshot(3, 1, trigger="exit", ever_written_bytes=26 * PAGE, lost_regions=1,
                 retired_regions=2, retired_bytes=32 * PAGE, retired_written_bytes=PAGE),
        region(3, 1, 1, 7),
        region(3, 3, 0, 5, lost=True),
    ]


def write_jsonl(path, records, tail=""):
    """Write records one per line, then tail verbatim."""
    with open(path, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
        f.write(tail)


def report_json(path):
    """Run report --json on path; returns (summary, stderr)."""
    result = run(["report", path, "--json"])
    check(result.returncode == 0, f"report --json {path} exited {result.returncode}: {result.stderr}")
    return json.loads(result.stdout), result.stderr


def check_fixture_summary(summary):
    """The figures the fixture was built to give."""
    totals, retired = summary["totals"], summary["retired"]
    check(totals["snapshots"] == 3, f"snapshot count {totals['snapshots']} != 3")
    check(totals["written_bytes"] == 36 * PAGE, f"written total {totals['written_bytes']}")
    check(totals["regions_seen"] == 3, f"regions seen {totals['regions_seen']}")
    check(totals["lost_regions"] == 1, f"lost regions {totals['lost_regions']}")
    check(totals["final_ever_written_bytes"] == 26 * PAGE, "final ever written")
    top = [(r["id"], r["written_bytes"]) for r in summary["top_regions"]]
    check(top == [(2, 24 * PAGE), (1, 7 * PAGE), (3, 5 * PAGE)], f"top regions {top}")
    first = summary["top_regions"][1]
    check((first["kind"], first["name"], first["ever_written_bytes"]) == ("heap", "[heap]", 7 * PAGE),
          f"region 1 details {first}")
    check(retired == {"retired_regions": 3, "retired_bytes": 48 * PAGE,
                      "retired_written_bytes": 3 * PAGE, "discarded_bytes": PAGE},
          f"retired churn {retired}")
    rows = summary["snapshots"]
    check([r["seq"] for r in rows] == [1, 2, 3], "snapshot rows")
    check(rows[0]["label"] == "start" and rows[0]["trigger"] == "api", f"row 1 {rows[0]}")
    check(summary["header"]["pid"] == 4242 and summary["page_size"] == PAGE, "header")


def test_report_clean(tmp):
    """A well-formed file: exact figures, no complaints, unknown record types ignored."""
    path = os.path.join(tmp, "clean.jsonl")
    write_jsonl(path, fixture_records())
    summary, stderr = report_json(path)
    check_fixture_summary(summary)
    check(summary["skipped_malformed_lines"] == 0, "clean file has malformed lines")
    check(summary["unknown_records"] == {"future_record": 1}, f"unknown {summary['unknown_records']}")
    check("malformed" not in stderr, f"clean file warned: {stderr}")
    text = run(["report", path])
    check(text.returncode == 0, f"text report exited {text.returncode}: {text.stderr}")
    for expected in ("/usr/bin/demo", "demo --size '1 MiB'", "uffd-wp-async+pagemap-scan",
                     "written_MiB", "top 3 region(s)", "[anon:arena]", "3 snapshot(s)"):
        check(expected in text.stdout, f"text report lacks {expected!r}")


def test_report_damaged(tmp):
    """A garbage line and a truncated last line are skipped and counted; figures unchanged."""
    records = fixture_records()
    path = os.path.join(tmp, "damaged.jsonl")
    with open(path, "w") as f:
        for index, record in enumerate(records):
            f.write(json.dumps(record) + "\n")
            if index == 3:
                f.write("this is not json\n")
        f.write('{"type":"snapshot","seq":4,"trigger":"sig')
    summary, stderr = report_json(path)
    check_fixture_summary(summary)
    check(summary["skipped_malformed_lines"] == 2, f"skipped {summary['skipped_malformed_lines']} != 2")
    check(f"writewatch: {path}: skipped 2 malformed line(s), the last one cut short" in stderr,
          f"stderr: {stderr!r}")


def test_report_elides_rows(tmp):
    """--json keeps a bounded number of snapshot rows but totals cover them all."""
    path = os.path.join(tmp, "long.jsonl")
    write_jsonl(path, [header()] + [snapshot(seq, 1) for seq in range(1, 2501)])
    summary, stderr = report_json(path)
    check(summary["totals"]["snapshots"] == 2500, "long file snapshot count")
    check(summary["totals"]["written_bytes"] == 2500 * PAGE, "long file written total")
    kept = summary["snapshots"]
    check(len(kept) + summary["snapshots_elided"] == 2500 and summary["snapshots_elided"] > 0,
          "rows not elided")
    check(kept[0]["seq"] == 1 and kept[-1]["seq"] == 2500, "kept rows are not head and tail")
    check("snapshot rows" in stderr, "elision not reported")


def test_report_rejects(tmp):
    """Files that are not writewatch output, and missing files, exit 1 with one line."""
    cases = {"other.jsonl": '{"foo": 1}\n{"type": "something"}\n', "text.txt": "hello\nworld\n",
             "empty.jsonl": ""}
    for name, content in cases.items():
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(content)
        result = run(["report", path, "--json"])
        check(result.returncode == 1, f"{name}: exit {result.returncode}")
        check(f"writewatch: {path}: not a writewatch output file" in result.stderr,
              f"{name}: stderr {result.stderr!r}")
        check(result.stdout == "", f"{name}: printed {result.stdout!r}")
    missing = run(["report", os.path.join(tmp, "missing.jsonl")])
    check(missing.returncode == 1 and missing.stderr.startswith("writewatch: "), "missing file")
    check(missing.stderr.count("\n") == 1, f"missing file message is not one line: {missing.stderr!r}")


def test_report_tracking_off(tmp):
    """A header with tracking off and no snapshots is a valid file."""
    path = os.path.join(tmp, "off.jsonl")
    write_jsonl(path, [header(tracking="off", reason="userfaultfd is not available")])
    summary, _ = report_json(path)
    check(summary["totals"]["snapshots"] == 0 and summary["header"]["tracking"] == "off",
          "tracking off file")
    text = run(["report", path])
    check("off: userfaultfd is not available" in text.stdout, "tracking off reason not shown")


# ---------------------------------------------------------------------------------------------
# launcher


FAKE_SHIM_C = r"""
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static char marker[4096];
static void on_usr2(int sig)
{
    (void)sig;
    int fd = open(marker, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { (void)!write(fd, "dump\n", 5); close(fd); }
}
__attribute__((constructor)) static void init(void)
{
    const char *path = getenv("FAKE_WRITEWATCH_MARKER");
    if (!path) return;
    strncpy(marker, path, sizeof marker - 1);
    signal(SIGUSR2, on_usr2);
}
"""

STATIC_C = r"""
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    const char *preload = getenv("LD_PRELOAD");
    printf("LD_PRELOAD=%s\n", preload ? preload : "(unset)");
    return 3;
}
"""


def compile_c(tmp, name, source, flags):
    """Build source with gcc; returns the output path or None (with the reason) if it cannot."""
    if not shutil.which("gcc"):
        return None, "gcc not found"
    source_path = os.path.join(tmp, name + ".c")
    with open(source_path, "w") as f:
        f.write(source)
    output = os.path.join(tmp, name)
    result = subprocess.run(["gcc"] + flags + ["-o", output, source_path],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return None, "gcc " + " ".join(flags) + " failed: " + result.stderr.strip().splitlines()[-1]
    return output, None


def fake_library(tmp):
    """A stand-in libwritewatch.so: a real shared object when gcc works, else an empty file."""
    lib_dir = os.path.join(tmp, "fakelib")
    os.makedirs(lib_dir, exist_ok=True)
    library, _ = compile_c(tmp, "fake_shim.so", FAKE_SHIM_C, ["-shared", "-fPIC"])
    path = os.path.join(lib_dir, "libwritewatch.so")
    if library:
        shutil.copy(library, path)
    else:
        open(path, "w").close()
    return path, library is not None


def test_launcher_environment(tmp, library, real_library):
    """Options become WRITEWATCH_* variables and the library goes first in LD_PRELOAD."""
    other = os.path.join(tmp, "libother.so")
    shutil.copy(library, other)
    show = 'printf "%s|%s|%s|%s|%s|%s|%s" "$LD_PRELOAD" "$WRITEWATCH_OUTPUT" ' \
           '"$WRITEWATCH_INTERVAL_MS" "$WRITEWATCH_SIGNAL" "$WRITEWATCH_FOLLOW" ' \
           '"$WRITEWATCH_RANGES" "$WRITEWATCH_LIB"'
    env = clean_env(WRITEWATCH_LIB=library, LD_PRELOAD=other)
    result = run(["-o", "out.%p.jsonl", "-i", "50", "-s", "RTMIN+1", "--no-follow",
                  "--no-ranges", "--", "sh", "-c", show], env=env)
    check(result.returncode == 0, f"launcher exited {result.returncode}: {result.stderr}")
    expected = f"{library}:{other}|out.%p.jsonl|50|RTMIN+1|0|0|{library}"
    check(result.stdout == expected, f"environment {result.stdout!r} != {expected!r}")
    kept = run(["sh", "-c", 'printf "%s" "$WRITEWATCH_SIGNAL"'],
               env=clean_env(WRITEWATCH_LIB=library, WRITEWATCH_SIGNAL="USR1"))
    check(kept.stdout == "USR1", f"user's WRITEWATCH_SIGNAL not kept: {kept.stdout!r}")
    status = run(["sh", "-c", "exit 7"], env=clean_env(WRITEWATCH_LIB=library))
    check(status.returncode == 7, f"exit status {status.returncode} not passed through")
    if real_library:  # an empty stand-in makes ld.so complain on stderr
        check(status.stderr == "", f"launcher was not silent: {status.stderr!r}")


def test_library_lookup(tmp, library):
    """Without WRITEWATCH_LIB the library is found next to the script, or exit 127."""
    for layout in (("tree", "scripts", "build"), ("prefix", "bin", os.path.join("lib", "writewatch"))):
        root = os.path.join(tmp, layout[0])
        os.makedirs(os.path.join(root, layout[1]))
        os.makedirs(os.path.join(root, layout[2]))
        script = os.path.join(root, layout[1], "writewatch")
        shutil.copy(SCRIPT, script)
        expected = os.path.join(root, layout[2], "libwritewatch.so")
        result = run(["sh", "-c", 'printf "%s" "$LD_PRELOAD"'], script=script)
        check(result.returncode == 127 and "cannot find libwritewatch.so" in result.stderr,
              f"{layout[0]}: missing library not reported: {result.stderr!r}")
        check(result.stderr.endswith("run make first\n"), "missing library message")
        shutil.copy(library, expected)
        result = run(["sh", "-c", 'printf "%s" "$LD_PRELOAD"'], script=script)
        check(result.stdout == expected, f"{layout[0]}: LD_PRELOAD {result.stdout!r} != {expected!r}")
    missing = run(["true"], env=clean_env(WRITEWATCH_LIB=os.path.join(tmp, "nope.so")))
    check(missing.returncode == 127, "missing WRITEWATCH_LIB not exit 127")


def test_program_errors(tmp, library):
    """Not found exits 127 like a shell; not executable exits 126."""
    env = clean_env(WRITEWATCH_LIB=library)
    result = run(["no-such-command-writewatch-test"], env=env)
    check(result.returncode == 127, f"not found exit {result.returncode}")
    check(result.stderr == "writewatch: no-such-command-writewatch-test: command not found\n",
          f"not found message {result.stderr!r}")
    plain = os.path.join(tmp, "not-executable")
    open(plain, "w").close()
    os.chmod(plain, 0o644)
    result = run([plain], env=env)
    check(result.returncode == 126 and result.stderr.startswith("writewatch: "),
          f"not executable: exit {result.returncode}, {result.stderr!r}")
    usage = run(["--bogus", "true"], env=env)
    check(usage.returncode == 2 and usage.stderr.startswith("writewatch: "), "unknown option")
    check("WRITEWATCH_LIB" in run(["--help"], env=env).stdout, "--help lacks WRITEWATCH_LIB")


def test_static_program(tmp, library):
    """A static binary runs untracked, with one warning and an unchanged environment."""
    program, reason = compile_c(tmp, "static_prog", STATIC_C, ["-static", "-O1"])
    if not program:
        skip("static-binary detection", reason)
        return
    result = run(["-o", "x.jsonl", program], env=clean_env(WRITEWATCH_LIB=library))
    expected = (f"writewatch: {program} is statically linked; LD_PRELOAD cannot load into it, "
                "so it runs untracked\n")
    check(result.stderr == expected, f"static warning {result.stderr!r}")
    check(result.returncode == 3 and result.stdout == "LD_PRELOAD=(unset)\n",
          f"static program: exit {result.returncode}, output {result.stdout!r}")


def test_setuid_program(tmp, library):
    """A setuid binary owned by someone else runs untracked (needs root to set up)."""
    if os.geteuid() != 0:
        skip("setuid detection", "needs root to chown a setuid file")
        return
    if os.statvfs(tmp).f_flag & os.ST_NOSUID:
        skip("setuid detection", f"{tmp} is mounted nosuid")
        return
    program = os.path.join(tmp, "suid-true")
    shutil.copy(shutil.which("true"), program)
    os.chown(program, 65534, -1)
    os.chmod(program, 0o4755)
    result = run([program], env=clean_env(WRITEWATCH_LIB=library))
    check("is setuid/setgid; the loader ignores LD_PRELOAD" in result.stderr,
          f"setuid warning {result.stderr!r}")


def elf_bytes(bits, endian, e_type, headers, flags_1=None):
    """A minimal ELF file: header, program headers of the given types, optional dynamic section."""
    e = "<" if endian == "little" else ">"
    ehdr_fmt, phdr_fmt, dyn_fmt = ((e + "HHIQQQIHHHHHH", e + "IIQQQQQQ", e + "qQ") if bits == 64
                                   else (e + "HHIIIIIHHHHHH", e + "IIIIIIII", e + "iI"))
    ehsize = 16 + struct.calcsize(ehdr_fmt)
    phentsize = struct.calcsize(phdr_fmt)
    dyn_offset = ehsize + phentsize * len(headers)
    dynamic = b""
    if flags_1 is not None:
        dynamic = struct.pack(dyn_fmt, 0x6FFFFFFB, flags_1) + struct.pack(dyn_fmt, 0, 0)
    ident = b"\x7fELF" + bytes([bits // 32, 1 if endian == "little" else 2, 1]) + bytes(9)
    ehdr = struct.pack(ehdr_fmt, e_type, 0, 1, 0, ehsize, 0, 0, ehsize, phentsize, len(headers), 0, 0, 0)
    phdrs = b""
    for p_type in headers:
        offset, size = (dyn_offset, len(dynamic)) if p_type == 2 else (0, 0)
        if bits == 64:
            phdrs += struct.pack(phdr_fmt, p_type, 0, offset, 0, 0, size, size, 0)
        else:
            phdrs += struct.pack(phdr_fmt, p_type, offset, 0, 0, size, size, 0, 0)
    return ident + ehdr + phdrs + dynamic


def test_elf_detection(tmp, module):
    """PT_INTERP detection for 32/64-bit, little/big-endian files, static-pie and ld.so."""
    pt_load, pt_dynamic, pt_interp, et_exec, et_dyn, pie = 1, 2, 3, 2, 3, 0x08000000
    cases = [
        ((32, "little", et_exec, [pt_load]), True),
        ((32, "big", et_exec, [pt_load, pt_interp]), False),
        ((64, "big", et_exec, [pt_load]), True),
        ((64, "little", et_dyn, [pt_interp, pt_dynamic], pie), False),
        ((64, "big", et_dyn, [pt_load, pt_dynamic], pie), True),     # static-pie
        ((32, "big", et_dyn, [pt_load, pt_dynamic], 0), False),      # ld.so run directly
    ]
    for index, (spec, expected) in enumerate(cases):
        path = os.path.join(tmp, f"elf{index}")
        with open(path, "wb") as f:
            f.write(elf_bytes(*spec))
        check(module.is_statically_linked(path) == expected, f"ELF case {spec}: expected {expected}")
    check(not module.is_statically_linked(shutil.which("sh")), "/bin/sh reported static")
    check(not module.is_statically_linked(__file__), "a Python file reported static")


def test_signal_names(module):
    """WRITEWATCH_SIGNAL spellings."""
    parse = module.parse_signal
    check(parse("USR2") == signal.SIGUSR2 and parse("sigusr1") == signal.SIGUSR1, "USR names")
    check(parse("RTMIN+3") == signal.SIGRTMIN + 3 and parse("RTMAX-2") == signal.SIGRTMAX - 2, "RT")
    check(parse("12") == 12 and parse("none") is None and parse("0") is None, "numbers and none")
    for bad in ("FOO", "RTMAX+1", "RTMIN+", "KILL", "SEGV", "STKFLT", " USR1", "999", ""):
        try:
            parse(bad)
        except ValueError:
            continue
        raise Failure(f"parse_signal accepted {bad!r}")


# ---------------------------------------------------------------------------------------------
# dump


def start_sleeper(args, env):
    """Start a long sleep (through the launcher when args are given); returns the Popen."""
    command = [sys.executable, SCRIPT] + args + ["sleep", "60"] if args is not None else ["sleep", "60"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(predicate, what, timeout=10.0):
    """Poll predicate until it holds, or fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise Failure(f"timed out waiting for {what}")


def catches_usr2(pid):
    """True once pid has a SIGUSR2 handler."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(line for line in f if line.startswith("SigCgt:")).split()[1]
        return bool(int(mask, 16) >> (signal.SIGUSR2 - 1) & 1)
    except (OSError, StopIteration):
        return False


def test_dump(tmp, library, real_library):
    """dump signals a tracked process, and refuses processes that would die of the signal."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    result = run(["dump", str(gone.pid)])
    check(result.returncode == 1 and f"no process {gone.pid}" in result.stderr, "dump of a dead pid")
    check(run(["dump", "0"]).returncode == 2, "dump 0 accepted")
    plain = start_sleeper(None, clean_env())
    sleepers = [plain]
    try:
        result = run(["dump", str(plain.pid)])
        check(result.returncode == 1 and result.stderr == (
            f"writewatch: process {plain.pid} is not tracked by writewatch (no libwritewatch.so in "
            "its maps); not sending a signal that could kill it\n"), f"untracked: {result.stderr!r}")
        check(plain.poll() is None, "dump killed an untracked process")
        if not real_library:
            skip("dump of a tracked process", "no gcc to build a stand-in shim")
            return
        marker = os.path.join(tmp, "dumped")
        env = clean_env(WRITEWATCH_LIB=library, FAKE_WRITEWATCH_MARKER=marker)
        tracked, off, other = (start_sleeper(args, env) for args in ([], ["-s", "none"], ["-s", "USR1"]))
        sleepers += [tracked, off, other]
        for process in (tracked, off, other):
            wait_for(lambda: catches_usr2(process.pid), "the stand-in shim's handler")
        result = run(["dump", str(tracked.pid)])
        check(result.returncode == 0 and result.stderr == "", f"dump failed: {result.stderr!r}")
        wait_for(lambda: os.path.exists(marker), "the snapshot signal to arrive")
        check(tracked.poll() is None, "dump killed the tracked process")
        test_dump_invalid_signal(tmp, library)
        result = run(["dump", str(off.pid)])
        check(result.returncode == 1 and "WRITEWATCH_SIGNAL=none" in result.stderr, "signals off")
        result = run(["dump", str(other.pid)])
        check(result.returncode == 1 and "does not catch SIGUSR1" in result.stderr,
              f"uncaught signal: {result.stderr!r}")
        check(other.poll() is None, "dump killed a process that does not catch its signal")
    finally:
        for process in sleepers:
            process.kill()
            process.wait()


def test_dump_invalid_signal(tmp, library):
    """An invalid WRITEWATCH_SIGNAL makes the shim keep USR2, so dump sends USR2."""
    marker = os.path.join(tmp, "dumped-default")
    env = clean_env(WRITEWATCH_LIB=library, FAKE_WRITEWATCH_MARKER=marker, WRITEWATCH_SIGNAL="bogus")
    process = start_sleeper([], env)
    try:
        wait_for(lambda: catches_usr2(process.pid), "the stand-in shim's handler")
        result = run(["dump", str(process.pid)])
        check(result.returncode == 0, f"dump with an invalid WRITEWATCH_SIGNAL: {result.stderr!r}")
        wait_for(lambda: os.path.exists(marker), "USR2 for an invalid WRITEWATCH_SIGNAL")
    finally:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------------------------


def main():
    module = wwtest.load_launcher("writewatch_cli")
    with tempfile.TemporaryDirectory(prefix="writewatch-test-") as tmp:
        test_report_clean(tmp)
        test_report_damaged(tmp)
        test_report_elides_rows(tmp)
        test_report_rejects(tmp)
        test_report_tracking_off(tmp)
        test_signal_names(module)
        test_elf_detection(tmp, module)
        library, real_library = fake_library(tmp)
        test_launcher_environment(tmp, library, real_library)
        test_library_lookup(tmp, library)
        test_program_errors(tmp, library)
        test_static_program(tmp, library)
        test_setuid_program(tmp, library)
        test_dump(tmp, library, real_library)


if __name__ == "__main__":
    try:
        main()
    except Failure as failure:
        print(f"FAIL test_report: {failure}")
        sys.exit(1)
    except Exception as error:  # an unexpected crash is a failure too, with its reason
        print(f"FAIL test_report: {type(error).__name__}: {error}")
        sys.exit(1)
    print("PASS test_report")
