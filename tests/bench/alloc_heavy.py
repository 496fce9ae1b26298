# The python3 workload of `make bench` (item 6): allocation-heavy work of the kind Python programs
# do, in phases that grow and shrink the heap (dicts of tuples, lists of strings and bytes, a sort,
# a reference cycle collection), so obmalloc's arenas are mapped, written and unmapped many times.
# usage: python3 alloc_heavy.py ROUNDS   (prints a checksum; about 0.35 s per round here)
import gc
import sys


def round_(seed):
    table = {}
    for i in range(120_000):
        table[(i * 7919 + seed) % 1_000_003] = (i, str(i), [i, i + 1])
    words = [f"w{i % 5000}-{seed}" * 3 for i in range(80_000)]
    blobs = [bytes(200 + i % 300) for i in range(20_000)]
    ordered = sorted(table.values(), key=lambda v: v[1])
    cycles = []
    for i in range(20_000):
        a, b = [i], [i]
        a.append(b)
        b.append(a)
        cycles.append(a)
    del cycles
    gc.collect()
    total = len(ordered) + sum(len(w) for w in words[:1000]) + sum(len(b) for b in blobs[:100])
    del table, words, blobs, ordered
    return total


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(sum(round_(r) for r in range(rounds)))


if __name__ == "__main__":
    main()
