/* Benchmark 3, the mmap + munmap pair: what the hooks add to a program that maps and unmaps
 * anonymous memory (an allocator, a runtime). Untouched, and with every page written once, since
 * the munmap hook harvests the writes of the region first.
 * usage: b_mmap plain|ww KIB ITERS ROUNDS TOUCH  -> median ns per pair */
#include "bench.h"

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: b_mmap plain|ww KIB ITERS ROUNDS TOUCH(0|1)\n");
		return 2;
	}
	enum mode mode = parse_mode(argv[1]);
	size_t len = strtoul(argv[2], NULL, 0) * 1024;
	long iters = atol(argv[3]);
	int rounds = atoi(argv[4]);
	int touch = atoi(argv[5]);
	double *ns = calloc((size_t)rounds, sizeof *ns);

	if (mode == M_WW)
		ww_snap("start");
	for (int r = 0; r < rounds; r++) {
		uint64_t t0 = now_ns();
		for (long i = 0; i < iters; i++) {
			char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED)
				die("mmap");
			if (touch)
				touch_pages(p, len / PAGE, 1, 1);
			if (munmap(p, len) != 0)
				die("munmap");
		}
		ns[r] = (double)(now_ns() - t0) / (double)iters;
	}
	if (mode == M_WW)
		ww_snap("end");
	printf("{\"bench\":\"mmap\",\"mode\":\"%s\",\"kib\":%zu,\"touch\":%d,\"ns_per_pair\":%.1f}\n",
	       argv[1], len / 1024, touch, median(ns, rounds));
	return 0;
}
