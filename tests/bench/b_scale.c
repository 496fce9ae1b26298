/* Benchmark 7, scaling: snapshot time against the number of regions and against the tracked
 * size, with what is written held fixed, so the figures show what the cost grows with.
 *   b_scale ww|raw regions N REPS      N mappings of 4 pages, one page written in each
 *   b_scale ww|raw size MIB WPAGES SPREAD REPS
 *       one MAP_NORESERVE mapping of MIB MiB with WPAGES pages written: from its start
 *       (SPREAD 0), or spread evenly over it (SPREAD 1, one page table per page at worst)
 * Each prints the median time of an idle snapshot (nothing written since the previous one) and
 * of a snapshot after the pages were written again, and the cost per mmap of setting up (ww: the
 * hooks; raw: mmap + UFFDIO_REGISTER). raw scans each mapping with PAGEMAP_SCAN. */
#include "bench.h"

#define REGION_PAGES 4

static struct raw raw;
static char **regs;
static size_t nregs, reg_len;

static void snap(enum mode mode, const char *label)
{
	if (mode == M_WW) {
		ww_snap(label);
		return;
	}
	for (size_t i = 0; i < nregs; i++)
		raw_scan(&raw, (uintptr_t)regs[i], (uintptr_t)regs[i] + reg_len, 1);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: b_scale ww|raw regions N REPS | ww|raw size MIB WPAGES SPREAD REPS\n");
		return 2;
	}
	enum mode mode = parse_mode(argv[1]);
	int by_regions = !strcmp(argv[2], "regions");
	size_t written, stride = 1;
	int reps;
	if (mode == M_RAW)
		raw_open(&raw);
	if (by_regions) {
		nregs = strtoul(argv[3], NULL, 0);
		reps = atoi(argv[4]);
		reg_len = REGION_PAGES * PAGE;
		written = nregs;
	} else {
		if (argc != 7) {
			fprintf(stderr, "usage: b_scale ww|raw size MIB WPAGES SPREAD REPS\n");
			return 2;
		}
		nregs = 1;
		reg_len = strtoul(argv[3], NULL, 0) * MIB;
		written = strtoul(argv[4], NULL, 0);
		reps = atoi(argv[6]);
		stride = written && atoi(argv[5]) ? reg_len / PAGE / written : 1;
		if (written > reg_len / PAGE) {
			fprintf(stderr, "bench: %zu pages do not fit in %s MiB\n", written, argv[3]);
			return 2;
		}
	}
	regs = calloc(nregs, sizeof *regs);
	uint64_t t_map = now_ns(); /* the mappings' own cost: the hooks must not grow with the table */
	for (size_t i = 0; i < nregs; i++) {
		regs[i] = map_anon(reg_len, PROT_READ | PROT_WRITE, by_regions ? 0 : MAP_NORESERVE);
		if (mode == M_RAW)
			raw_register(&raw, regs[i], reg_len);
	}
	double map_ns = (double)(now_ns() - t_map) / (double)nregs;
	/* Write, snapshot to arm, then alternate: idle snapshot, write again, timed snapshot. */
	char v = 1;
	for (size_t i = 0; i < nregs; i++)
		touch_pages(regs[i], by_regions ? 1 : written, stride, v);
	snap(mode, "arm");
	double *idle = calloc((size_t)reps, sizeof *idle), *busy = calloc((size_t)reps, sizeof *busy);
	for (int r = 0; r < reps; r++) {
		uint64_t t = now_ns();
		snap(mode, "idle");
		idle[r] = (double)(now_ns() - t);
		v++;
		for (size_t i = 0; i < nregs; i++)
			touch_pages(regs[i], by_regions ? 1 : written, stride, v);
		t = now_ns();
		snap(mode, "written");
		busy[r] = (double)(now_ns() - t);
	}
	printf("{\"bench\":\"scale\",\"mode\":\"%s\",\"by\":\"%s\",\"regions\":%zu,\"bytes\":%zu,"
	       "\"written_pages\":%zu,\"stride_pages\":%zu,\"idle_ns\":%.0f,\"written_ns\":%.0f,"
	       "\"map_ns_per_region\":%.0f}\n",
	       argv[1], by_regions ? "regions" : "size", nregs, nregs * reg_len, written, stride,
	       median(idle, reps), median(busy, reps), map_ns);
	return 0;
}
