#!/bin/sh
# Run writewatch's whole test suite: the unit tests (C, linked with the core), then every
# tests/test_*.py. Each prints PASS/FAIL/SKIP lines; the last line counts them.
cd "$(dirname "$0")/.." || exit 1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
for t in build/tests/unit_*; do
	[ -x "$t" ] || continue
	timeout 300 "$t" 2>&1 | tee -a "$log" || status=1
done
for t in tests/test_*.py; do
	timeout 600 python3 "$t" 2>&1 | tee -a "$log"
	rc=$?
	[ $rc -eq 0 ] || { status=1; echo "FAIL $t: exited with status $rc" | tee -a "$log"; }
done
pass=$(grep -c '^PASS ' "$log")
fail=$(grep -c '^FAIL ' "$log")
skip=$(grep -c '^SKIP ' "$log")
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] && [ $status -eq 0 ]
