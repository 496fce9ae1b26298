/* Shared pieces of writewatch's benchmark programs: clocks, the raw kernel mechanism driven the
 * way a minimal tracker would (uffd async write-protect + PAGEMAP_SCAN), /proc readers, and
 * results printed as one JSON object per line on stdout for tests/bench/bench.py. */
#ifndef WW_BENCH_H
#define WW_BENCH_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "writewatch.h"
#include "ww_uapi.h"

#define PAGE 4096ul
#define MIB (1ul << 20)
#define GIB (1ul << 30)

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void die(const char *what)
{
	fprintf(stderr, "bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static inline void *map_anon(size_t len, int prot, int extra_flags)
{
	void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

/* One store per page: the first write of the page in this interval. */
static inline void touch_pages(char *p, size_t npages, size_t stride, char v)
{
	for (size_t i = 0; i < npages; i++)
		((volatile char *)p)[i * stride * PAGE] = v;
}

/* ---- modes: the same program runs as "plain" (untracked), "ww" (under LD_PRELOAD, API
 * snapshots), "raw" (its own userfaultfd and PAGEMAP_SCAN) or "mprotect" ---- */

enum mode { M_PLAIN, M_WW, M_RAW, M_MPROTECT };

static inline enum mode parse_mode(const char *s)
{
	if (!strcmp(s, "plain"))
		return M_PLAIN;
	if (!strcmp(s, "ww"))
		return M_WW;
	if (!strcmp(s, "raw"))
		return M_RAW;
	if (!strcmp(s, "mprotect"))
		return M_MPROTECT;
	fprintf(stderr, "bench: unknown mode %s\n", s);
	exit(2);
}

/* Under "ww" every snapshot must really happen: a benchmark that silently ran untracked would
 * flatter writewatch. */
static inline void ww_snap(const char *label)
{
	if (writewatch_snapshot(label) != 0)
		die("writewatch_snapshot (is the shim preloaded and tracking?)");
}

/* ---- the raw mechanism ---- */

struct raw {
	int uffd, pm;
	struct page_region *vec;
	long vec_len;
};

static inline void raw_open(struct raw *r)
{
	r->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (r->uffd < 0)
		die("userfaultfd");
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC};
	if (ioctl(r->uffd, UFFDIO_API, &api) < 0)
		die("UFFDIO_API");
	r->pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (r->pm < 0)
		die("open pagemap");
	r->vec_len = 1024; /* writewatch's default WRITEWATCH_SCAN_VEC */
	r->vec = calloc((size_t)r->vec_len, sizeof *r->vec);
	if (!r->vec)
		die("calloc");
}

static inline void raw_register(struct raw *r, void *p, size_t len)
{
	struct uffdio_register reg = {.range = {(uintptr_t)p, len}, .mode = UFFDIO_REGISTER_MODE_WP};
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) < 0)
		die("UFFDIO_REGISTER");
}

/* The scan writewatch's register-only strategy needs (present, not the zero page, not
 * write-protected, in a WP-async VMA), with the same masks and vector length, so the kernel's
 * share of a snapshot is measured exactly; looped on walk_end. Returns the pages reported. */
static inline long raw_scan(struct raw *r, uintptr_t start, uintptr_t end, int rearm)
{
	struct pm_scan_arg arg = {
		.size = sizeof arg,
		.flags = rearm ? PM_SCAN_WP_MATCHING : 0,
		.vec = (uintptr_t)r->vec,
		.vec_len = (uint64_t)r->vec_len,
		.category_inverted = PAGE_IS_PFNZERO,
		.category_mask = PAGE_IS_WPALLOWED | PAGE_IS_WRITTEN | PAGE_IS_PFNZERO,
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.return_mask = PAGE_IS_WRITTEN,
	};
	long pages = 0;
	uintptr_t at = start;
	while (at < end) {
		arg.start = at;
		arg.end = end;
		arg.walk_end = 0;
		long n = ioctl(r->pm, PAGEMAP_SCAN, &arg);
		if (n < 0)
			die("PAGEMAP_SCAN");
		for (long i = 0; i < n; i++)
			pages += (long)((r->vec[i].end - r->vec[i].start) / PAGE);
		/* As writewatch does: a call that did not fill the vector walked the whole range
		 * (walk_end can lag behind its last run: rescanning from it would only cost). */
		if (n < r->vec_len || (n > 0 && arg.walk_end < r->vec[n - 1].end))
			break;
		if (arg.walk_end <= at)
			break;
		at = (uintptr_t)arg.walk_end;
	}
	return pages;
}

/* ---- /proc ---- */

/* A "Name:   123 kB" field of /proc/self/status, in kB; -1 if absent. */
static inline long status_kb(const char *name)
{
	char buf[8192];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	size_t len = strlen(name);
	for (char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, name, len) && p[len] == ':')
			return strtol(p + len + 1, NULL, 10);
	return -1;
}

/* AnonHugePages summed over the VMAs of /proc/self/smaps inside [start, end), in kB. */
static inline long smaps_anon_huge_kb(uintptr_t start, uintptr_t end)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	if (!f)
		return -1;
	char line[512];
	long kb = 0;
	int inside = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			inside = s >= start && e <= end;
			continue;
		}
		long v;
		if (inside && sscanf(line, "AnonHugePages: %ld kB", &v) == 1)
			kb += v;
	}
	fclose(f);
	return kb;
}

/* ---- statistics and output ---- */

static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static inline double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
