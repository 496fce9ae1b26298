/* Benchmark 2, first touch of fresh memory: a new mapping written once per page (4 KiB pages),
 * and a MADV_HUGEPAGE mapping written once per page with its AnonHugePages read back from
 * /proc/self/smaps, so a tracker that costs a second fault or loses THP shows.
 * usage: b_touch plain|ww PAGES ROUNDS THP_MIB
 *   -> {"bench":"touch",...}: median ns per page (4 KiB) and per 2 MiB block (THP),
 *      AnonHugePages of the THP mapping */
#include "bench.h"

#define HUGE (2 * MIB)

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: b_touch plain|ww PAGES ROUNDS THP_MIB\n");
		return 2;
	}
	enum mode mode = parse_mode(argv[1]);
	size_t npages = strtoul(argv[2], NULL, 0);
	int rounds = atoi(argv[3]);
	size_t thp_len = strtoul(argv[4], NULL, 0) * MIB;
	double *small = calloc((size_t)rounds, sizeof *small);
	double *huge = calloc((size_t)rounds, sizeof *huge);
	long huge_kb = -1;

	if (mode == M_WW)
		ww_snap("start"); /* proves the shim is tracking this process */
	for (int r = 0; r < rounds; r++) {
		char *p = map_anon(npages * PAGE, PROT_READ | PROT_WRITE, 0);
		uint64_t t0 = now_ns();
		touch_pages(p, npages, 1, 1);
		uint64_t t1 = now_ns();
		small[r] = (double)(t1 - t0) / (double)npages;
		munmap(p, npages * PAGE);

		/* THP: align by hand (over-map by one huge page), as a program asking for THP does. */
		char *q = map_anon(thp_len + HUGE, PROT_READ | PROT_WRITE, 0);
		char *a = (char *)(((uintptr_t)q + HUGE - 1) & ~(HUGE - 1));
		if (madvise(a, thp_len, MADV_HUGEPAGE) != 0)
			die("madvise(MADV_HUGEPAGE)");
		t0 = now_ns();
		touch_pages(a, thp_len / PAGE, 1, 1);
		t1 = now_ns();
		huge[r] = (double)(t1 - t0) / (double)(thp_len / HUGE);
		long kb = smaps_anon_huge_kb((uintptr_t)a, (uintptr_t)a + thp_len);
		if (huge_kb < 0 || kb < huge_kb)
			huge_kb = kb; /* the worst round */
		munmap(q, thp_len + HUGE);
	}
	if (mode == M_WW)
		ww_snap("end");
	printf("{\"bench\":\"touch\",\"mode\":\"%s\",\"pages\":%zu,\"ns_per_page\":%.1f,"
	       "\"thp_kib\":%zu,\"ns_per_2mib\":%.1f,\"anon_huge_kb\":%ld}\n",
	       argv[1], npages, median(small, rounds), thp_len / 1024, median(huge, rounds), huge_kb);
	return 0;
}
