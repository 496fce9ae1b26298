/* Attribution ground truth: named functions (never inlined) allocate in known patterns, and
 * the program records, per function and snapshot, the site figures writewatch must report:
 * regions made and retired, bytes, written pages, churn, malloc calls. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tprog.h"

#define MiB (1ul << 20)
#define NOINLINE __attribute__((noinline, noclone))
#define HDR 16 /* glibc's chunk header before a mapped block */

static size_t pages_of(size_t bytes)
{
	return (bytes + HDR + TP_PAGE - 1) / TP_PAGE;
}

static void expect(const char *label, const char *fn, const char *field, unsigned long v)
{
	tp_open();
	fprintf(tp_out, "{\"label\":\"%s\",\"function\":\"%s\",\"field\":\"%s\",\"value\":%lu}\n",
		label, fn, field, v);
}

static void touch(char *p, size_t first_page, size_t npages)
{
	for (size_t i = first_page; i < first_page + npages; i++)
		((volatile char *)p)[i * TP_PAGE - (i ? HDR : 0)] = 1;
}

/* Written fully: every page of the mapping (header page included). */
NOINLINE static char *alloc_full(void)
{
	char *p = malloc(4 * MiB);
	memset(p, 1, 4 * MiB);
	return p;
}

/* Written at 10 pages besides the header page. */
NOINLINE static char *alloc_part(void)
{
	char *p = malloc(4 * MiB);
	touch(p, 100, 10);
	return p;
}

/* Never written: only glibc's header page. */
NOINLINE static char *alloc_none(void)
{
	return malloc(4 * MiB);
}

/* 1,000 buffers of 1 MiB mapped, filled and freed: written, then thrown away. */
NOINLINE static void churn_loop(void)
{
	for (int i = 0; i < 1000; i++) {
		char *p = malloc(MiB);
		memset(p, i, MiB);
		__asm__ volatile("" : : "r"(p) : "memory"); /* or the compiler drops the pair */
		free(p);
	}
}

/* A region through the public mmap: 64 pages, 10 written. */
NOINLINE static char *map_direct(void)
{
	char *p = mmap(NULL, 64 * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int i = 0; i < 10; i++)
		p[i * 6 * TP_PAGE] = 1;
	return p;
}

static pthread_barrier_t bar;

static void *worker(void *arg)
{
	(void)arg;
	volatile char buf[16 * 4096];
	for (size_t i = 0; i < sizeof buf; i += 4096)
		buf[i] = 1;
	pthread_barrier_wait(&bar); /* alive at the snapshot */
	pthread_barrier_wait(&bar);
	return NULL;
}

NOINLINE static void spawn_workers(pthread_t *t)
{
	/* One call site for both threads: a loop the compiler may not unroll. */
	static volatile int nthreads = 2;
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&t[i], NULL, worker, NULL))
			tp_die("pthread_create");
}

static void snap(const char *label)
{
	if (writewatch_snapshot(label) != 0)
		tp_die(label);
}

int main(void)
{
	/* A fixed threshold: every block of 1 MiB is glibc's own mapping, however many are freed. */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	pthread_barrier_init(&bar, NULL, 3);
	snap("start");

	char *full = alloc_full(), *part = alloc_part(), *none = alloc_none();
	char *direct = map_direct();
	pthread_t t[2];
	spawn_workers(t);
	pthread_barrier_wait(&bar);
	size_t big = pages_of(4 * MiB);
	expect("made", "alloc_full", "regions_live", 1);
	expect("made", "alloc_full", "bytes_live", big * TP_PAGE);
	expect("made", "alloc_full", "written_bytes", big * TP_PAGE);
	expect("made", "alloc_full", "mallocs", 1);
	expect("made", "alloc_full", "malloc_bytes", 4 * MiB);
	expect("made", "alloc_part", "written_bytes", 11 * TP_PAGE);
	expect("made", "alloc_none", "written_bytes", 1 * TP_PAGE);
	expect("made", "alloc_none", "bytes_live", big * TP_PAGE);
	expect("made", "map_direct", "written_bytes", 10 * TP_PAGE);
	expect("made", "map_direct", "bytes_live", 64 * TP_PAGE);
	expect("made", "map_direct", "mallocs", 0);
	expect("made", "spawn_workers", "regions_live", 2);
	snap("made");
	pthread_barrier_wait(&bar);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);

	churn_loop();
	size_t one = pages_of(MiB);
	expect("churned", "churn_loop", "regions_made", 1000);
	expect("churned", "churn_loop", "regions_retired", 1000);
	expect("churned", "churn_loop", "regions_live", 0);
	expect("churned", "churn_loop", "bytes_peak", one * TP_PAGE);
	expect("churned", "churn_loop", "interval_churn_bytes", 1000 * one * TP_PAGE);
	expect("churned", "churn_loop", "written_bytes", 1000 * one * TP_PAGE);
	expect("churned", "churn_loop", "mallocs", 1000);
	expect("churned", "churn_loop", "malloc_bytes", 1000 * MiB);
	snap("churned");

	/* Growth keeps the region and its site: alloc_part's block, moved by glibc's mremap. */
	part = realloc(part, 8 * MiB);
	touch(part, 1500, 5);
	expect("grown", "alloc_part", "regions_live", 1);
	expect("grown", "alloc_part", "bytes_live", pages_of(8 * MiB) * TP_PAGE);
	expect("grown", "alloc_part", "churn_bytes", 0);
	snap("grown");

	free(full);
	munmap(direct, 64 * TP_PAGE);
	expect("freed", "alloc_full", "regions_live", 0);
	expect("freed", "alloc_full", "regions_retired", 1);
	expect("freed", "alloc_full", "churn_bytes", big * TP_PAGE);
	expect("freed", "map_direct", "churn_bytes", 10 * TP_PAGE);
	snap("freed");
	free(part);
	free(none);
	return 0;
}
