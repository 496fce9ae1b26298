/* Benchmark 1, the tracked write: the cost of the first write to a page in an interval, after
 * the tracker re-armed it. Modes: ww (writewatch_snapshot re-arms), raw (our own userfaultfd +
 * PAGEMAP_SCAN WP_MATCHING, the kernel mechanism alone), mprotect (a classic mprotect+SIGSEGV
 * tracker). Only the writes are timed; pages are written in address order (seq) or in a fixed
 * random permutation (random), where an mprotect tracker must split a VMA per page.
 * usage: b_write MODE PAGES INTERVALS seq|random  -> one JSON line: median ns per first write */
#include "bench.h"

#include <signal.h>

static char *base;
static size_t npages;
static uint64_t *dirty; /* the mprotect tracker's bitmap */
static volatile size_t ndirty;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	uintptr_t a = (uintptr_t)si->si_addr;
	if (a < (uintptr_t)base || a >= (uintptr_t)base + npages * PAGE) {
		signal(sig, SIG_DFL); /* a real crash: let it happen */
		return;
	}
	size_t pg = (a - (uintptr_t)base) / PAGE;
	if (mprotect(base + pg * PAGE, PAGE, PROT_READ | PROT_WRITE) != 0)
		abort();
	dirty[pg / 64] |= 1ull << (pg % 64);
	ndirty++;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: b_write ww|raw|mprotect PAGES INTERVALS seq|random\n");
		return 2;
	}
	enum mode mode = parse_mode(argv[1]);
	npages = strtoul(argv[2], NULL, 0);
	int intervals = atoi(argv[3]);
	int random_order = !strcmp(argv[4], "random");
	size_t len = npages * PAGE;
	struct raw raw = {.uffd = -1, .pm = -1};

	base = map_anon(len, PROT_READ | PROT_WRITE, 0);
	if (mode == M_RAW) {
		raw_open(&raw);
		raw_register(&raw, base, len);
	}
	if (mode == M_MPROTECT) {
		dirty = calloc(npages / 64 + 1, sizeof *dirty);
		struct sigaction sa = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO};
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, NULL);
	}
	touch_pages(base, npages, 1, 1); /* populate: the pages exist, as in a steady state */
	size_t *order = malloc(npages * sizeof *order);
	for (size_t i = 0; i < npages; i++)
		order[i] = i * PAGE;
	if (random_order) {
		uint64_t x = 88172645463325252ull; /* xorshift64: the same permutation every run */
		for (size_t i = npages - 1; i > 0; i--) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			size_t j = x % (i + 1), t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
	}

	double *ns = calloc((size_t)intervals, sizeof *ns);
	for (int i = 0; i < intervals; i++) {
		/* Re-arm: the previous interval ends here. */
		if (mode == M_WW) {
			ww_snap("reset");
		} else if (mode == M_RAW) {
			raw_scan(&raw, (uintptr_t)base, (uintptr_t)base + len, 1);
		} else if (mode == M_MPROTECT) {
			if (mprotect(base, len, PROT_READ) != 0)
				die("mprotect");
			memset(dirty, 0, (npages / 64 + 1) * sizeof *dirty);
			ndirty = 0;
		}
		char v = (char)(i + 2);
		uint64_t t0 = now_ns();
		for (size_t k = 0; k < npages; k++)
			((volatile char *)base)[order[k]] = v;
		uint64_t t1 = now_ns();
		ns[i] = (double)(t1 - t0) / (double)npages;
		/* Every tracker must have seen every page: a benchmark of a broken tracker is void. */
		if (mode == M_RAW) {
			long got = raw_scan(&raw, (uintptr_t)base, (uintptr_t)base + len, 0);
			if (got != (long)npages) {
				fprintf(stderr, "bench: raw tracker saw %ld of %zu pages\n", got, npages);
				return 1;
			}
		} else if (mode == M_MPROTECT && ndirty != npages) {
			fprintf(stderr, "bench: mprotect tracker saw %zu of %zu pages\n", ndirty, npages);
			return 1;
		}
	}
	double med = median(ns, intervals);
	printf("{\"bench\":\"write\",\"mode\":\"%s\",\"order\":\"%s\",\"pages\":%zu,"
	       "\"intervals\":%d,\"ns_per_page\":%.1f}\n",
	       argv[1], argv[4], npages, intervals, med);
	return 0;
}
