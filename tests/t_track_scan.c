/* Many scattered runs in one region, for a small WRITEWATCH_SCAN_VEC: 10,000 pages with every
 * other page written (5,000 one-page runs, so a scan needs many PAGEMAP_SCAN calls that each
 * stop at walk_end), then nothing, then every third page. Usage: t_track_scan SEED */
#define _GNU_SOURCE
#include "tprog.h"

#include <sys/mman.h>

#define NPAGES 10000

static struct tp_window W;

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	tp_seed(seed);
	tp_open();
	struct tp_window *ws[] = {&W};
	void *p = mmap(NULL, NPAGES * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED)
		tp_die("mmap");
	/* Keep transparent huge pages out even where THP is "always": one written page would
	 * make the whole 2 MiB block present, and present pages of a huge page count as written. */
	if (madvise(p, NPAGES * TP_PAGE, MADV_NOHUGEPAGE) != 0)
		tp_die("madvise");
	tp_window_init(&W, "scattered", p, NPAGES);
	size_t parity = seed & 1; /* odd or even pages, by seed */
	for (size_t i = parity; i < NPAGES; i += 2)
		tp_write(&W, i);
	tp_snapshot("sv-half", ws, 1);
	tp_snapshot("sv-idle", ws, 1);
	for (size_t i = seed % 3; i < NPAGES; i += 3)
		tp_write(&W, i);
	tp_snapshot("sv-third", ws, 1);
	return 0;
}
