#!/bin/sh
# make demo: run the bundled workload under writewatch with 50 ms snapshots and print the report.
set -e
cd "$(dirname "$0")/.."
mkdir -p build/demo
rm -f build/demo/*.jsonl*
cc -std=gnu11 -O1 -Wall -Wextra -Iinclude tests/workload.c -o build/workload -ldl
echo "== scripts/writewatch -i 50 -o build/demo/writewatch.%e.%p.jsonl -- build/workload"
scripts/writewatch -i 50 -o 'build/demo/writewatch.%e.%p.jsonl' -- build/workload
for f in build/demo/writewatch.*.jsonl*; do
	echo "== scripts/writewatch report $f"
	scripts/writewatch report "$f"
done
