/* Field case C14: KSM merging and unmerging are not writes by the program. 512 identical pages
 * written, snapshot; MADV_MERGEABLE and wait until KSM has merged them (the caller turns KSM on);
 * snapshot: the pages KSM mapped to a shared copy read as written (the kernel drops the
 * write-protect marker when it replaces an entry), those whose frame became the copy do not; one page written (which breaks its sharing by copy-on-write):
 * exactly 1; MADV_UNMERGEABLE (the kernel copies every page back): nothing written; one page
 * written: exactly 1. Exits 77 if KSM did not merge within 8 s (busy machine, KSM off).
 * Usage: t_track_ksm SEED */
#define _GNU_SOURCE
#include "tprog.h"

#include <fcntl.h>
#include <time.h>

#define NPAGES 512

/* Pages of this process merged by KSM, from /proc/self/ksm_stat (Linux 6.1+). */
static long merging_pages(void)
{
	char buf[512];
	int fd = open("/proc/self/ksm_stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	const char *p = strstr(buf, "ksm_merging_pages ");
	return p ? strtol(p + strlen("ksm_merging_pages "), NULL, 10) : -1;
}

static struct tp_window K;

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	tp_seed(seed);
	tp_open();

	char *m = tp_map(NPAGES, PROT_READ | PROT_WRITE);
	if (madvise(m, NPAGES * TP_PAGE, MADV_NOHUGEPAGE) != 0) /* KSM merges small pages */
		tp_die("madvise nohugepage");
	tp_window_init(&K, "K", m, NPAGES);
	for (size_t i = 0; i < NPAGES; i++) {
		memset(m + i * TP_PAGE, 0x5a, TP_PAGE); /* identical, and not zero */
		tp_mark(&K, i);
	}
	SNAP("ksm-fill", &K);

	if (madvise(m, NPAGES * TP_PAGE, MADV_MERGEABLE) != 0)
		tp_die("madvise mergeable");
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		long merged = merging_pages();
		if (merged >= NPAGES)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (merged < 0 || t.tv_sec - t0.tv_sec >= 8) {
			fprintf(stderr, "t_track_ksm: KSM merged %ld of %d pages in 8 s\n", merged,
				NPAGES);
			return 77;
		}
		usleep(20000);
	}
	/* KSM copies the content to no new page: it keeps the frames of one page in every
	 * max_page_sharing (256) as the shared copies and maps the others to them. */
	long shared = -1;
	FILE *f = fopen("/sys/kernel/mm/ksm/pages_shared", "r");
	if (!f || fscanf(f, "%ld", &shared) != 1)
		tp_die("read /sys/kernel/mm/ksm/pages_shared");
	fclose(f);
	fprintf(tp_out, "{\"label\":\"ksm-merged\",\"pages_shared\":%ld}\n", shared);
	SNAP("ksm-merged", &K);

	tp_write(&K, tp_rand() % NPAGES);
	SNAP("ksm-cow", &K);

	if (madvise(m, NPAGES * TP_PAGE, MADV_UNMERGEABLE) != 0)
		tp_die("madvise unmergeable");
	SNAP("ksm-unmerged", &K);

	tp_write(&K, tp_rand() % NPAGES);
	SNAP("ksm-one", &K);
	return 0;
}
