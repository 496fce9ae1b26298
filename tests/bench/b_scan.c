/* Benchmark 4, snapshot speed: a fully populated region of MIB MiB, with 0%, 1%, 10% and 100%
 * of its pages written (spread evenly: every 100th, every 10th, all), then one snapshot timed.
 * ww: writewatch_snapshot(), the whole user-visible cost (maps, bookkeeping, output). raw: the
 * PAGEMAP_SCAN loop alone with writewatch's masks, re-arming, results summed.
 * usage: b_scan ww|raw MIB REPS  -> one JSON line per percentage: median ns per snapshot */
#include "bench.h"

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: b_scan ww|raw MIB REPS\n");
		return 2;
	}
	enum mode mode = parse_mode(argv[1]);
	size_t len = strtoul(argv[2], NULL, 0) * MIB;
	int reps = atoi(argv[3]);
	size_t npages = len / PAGE;
	static const int pct[] = {0, 1, 10, 100};
	struct raw raw = {.uffd = -1, .pm = -1};

	char *p = map_anon(len, PROT_READ | PROT_WRITE, 0);
	if (mode == M_RAW) {
		raw_open(&raw);
		raw_register(&raw, p, len);
	}
	touch_pages(p, npages, 1, 1);
	if (mode == M_WW)
		ww_snap("arm");
	else
		raw_scan(&raw, (uintptr_t)p, (uintptr_t)p + len, 1);

	double *ns = calloc((size_t)reps, sizeof *ns);
	for (size_t k = 0; k < sizeof pct / sizeof pct[0]; k++) {
		size_t stride = pct[k] ? 100 / (size_t)pct[k] : 0;
		size_t written = stride ? npages / stride : 0;
		for (int r = 0; r < reps; r++) {
			if (written)
				touch_pages(p, written, stride, (char)r);
			char label[32];
			snprintf(label, sizeof label, "pct%d-%d", pct[k], r);
			uint64_t t0 = now_ns();
			long got = (long)written;
			if (mode == M_WW)
				ww_snap(label);
			else
				got = raw_scan(&raw, (uintptr_t)p, (uintptr_t)p + len, 1);
			ns[r] = (double)(now_ns() - t0);
			if (got != (long)written) {
				fprintf(stderr, "bench: raw scan saw %ld of %zu pages\n", got, written);
				return 1;
			}
		}
		printf("{\"bench\":\"scan\",\"mode\":\"%s\",\"mib\":%zu,\"pct\":%d,\"written_pages\":%zu,"
		       "\"ns\":%.0f}\n",
		       argv[1], len / MIB, pct[k], written, median(ns, reps));
	}
	return 0;
}
