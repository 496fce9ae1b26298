/* Benchmark 5, large reservations: reserve GIB GiB PROT_NONE|MAP_NORESERVE (as runtimes and
 * allocators do), make 2 MiB in its middle writable and write it. Measures the set-up (mmap +
 * mprotect, where the hooks register), the page-table memory added (VmPTE) and an idle snapshot
 * (nothing written since the previous one).
 * usage: b_reserve plain|ww|raw GIB REPS  -> one JSON line */
#include "bench.h"

#define USED (2 * MIB)

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: b_reserve plain|ww|raw GIB REPS\n");
		return 2;
	}
	enum mode mode = parse_mode(argv[1]);
	size_t len = strtoul(argv[2], NULL, 0) * GIB;
	int reps = atoi(argv[3]);
	struct raw raw = {.uffd = -1, .pm = -1};

	if (mode == M_RAW)
		raw_open(&raw);
	if (mode == M_WW)
		ww_snap("start");
	long pte0 = status_kb("VmPTE");
	uint64_t t0 = now_ns();
	char *p = map_anon(len, PROT_NONE, MAP_NORESERVE);
	if (mode == M_RAW)
		raw_register(&raw, p, len);
	char *used = p + len / 2;
	if (mprotect(used, USED, PROT_READ | PROT_WRITE) != 0)
		die("mprotect");
	uint64_t setup = now_ns() - t0;
	touch_pages(used, USED / PAGE, 1, 1);
	if (mode == M_WW)
		ww_snap("arm");
	else if (mode == M_RAW)
		raw_scan(&raw, (uintptr_t)p, (uintptr_t)p + len, 1);
	long pte1 = status_kb("VmPTE");

	double idle = -1;
	if (mode != M_PLAIN) {
		double *ns = calloc((size_t)reps, sizeof *ns);
		for (int r = 0; r < reps; r++) {
			uint64_t t = now_ns();
			if (mode == M_WW)
				ww_snap("idle");
			else if (raw_scan(&raw, (uintptr_t)p, (uintptr_t)p + len, 1) != 0)
				die("idle raw scan found writes");
			ns[r] = (double)(now_ns() - t);
		}
		idle = median(ns, reps);
	}
	printf("{\"bench\":\"reserve\",\"mode\":\"%s\",\"gib\":%zu,\"setup_ns\":%llu,"
	       "\"vmpte_added_kb\":%ld,\"idle_ns\":%.0f}\n",
	       argv[1], len / GIB, (unsigned long long)setup, pte1 - pte0, idle);
	return 0;
}
