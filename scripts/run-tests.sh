#!/bin/sh
# Run writewatch's whole test suite: the unit tests (C, linked with the core), then every
# tests/test_*.py. Each prints PASS/FAIL/SKIP lines; the last line counts them.
cd "$(dirname "$0")/.." || exit 1
log=$(mktemp)
status=0
out=$(mktemp)
trap 'rm -f "$log" "$out"' EXIT
# Each test's own exit status counts too (a crash after its PASS lines is a failure).
run_one() {
	timeout "$1" "$2" "$3" >"$out" 2>&1
	rc=$?
	cat "$out"
	cat "$out" >>"$log"
	[ $rc -eq 0 ] || { status=1; echo "FAIL $3: exited with status $rc" | tee -a "$log"; }
}
for t in build/tests/unit_*; do
	[ -x "$t" ] || continue
	run_one 300 env "$t"
done
for t in tests/test_*.py; do
	run_one 600 python3 "$t"
done
pass=$(grep -c '^PASS ' "$log")
fail=$(grep -c '^FAIL ' "$log")
skip=$(grep -c '^SKIP ' "$log")
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] && [ $status -eq 0 ]
