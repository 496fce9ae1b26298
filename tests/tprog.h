/* Ground truth for test programs: each program records which pages it wrote in which window
 * before each snapshot, in the JSON Lines file named by $WW_EXPECT, for tests/wwtest.py to
 * compare with writewatch's output. Header-only; test programs only (it uses stdio). */
#ifndef TPROG_H
#define TPROG_H

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "writewatch.h"

#define TP_PAGE 4096ul
#define TP_MAX_PAGES 65536

/* One window: [start, start + npages*4096) whose written pages the test knows exactly. */
struct tp_window {
	const char *name;
	uintptr_t start;
	size_t npages;
	unsigned char written[TP_MAX_PAGES]; /* pages written since the last snapshot */
};

static FILE *tp_out;
static uint64_t tp_rng = 0x9e3779b97f4a7c15ull;

static inline void tp_seed(uint64_t s)
{
	tp_rng = s ? s : 1;
}

static inline uint64_t tp_rand(void)
{
	tp_rng ^= tp_rng << 13;
	tp_rng ^= tp_rng >> 7;
	tp_rng ^= tp_rng << 17;
	return tp_rng;
}

static inline void tp_die(const char *what)
{
	fprintf(stderr, "test program: %s: %s\n", what, strerror(errno));
	exit(99);
}

static inline void tp_window_init(struct tp_window *w, const char *name, void *start, size_t npages)
{
	if (npages > TP_MAX_PAGES)
		tp_die("window too large");
	w->name = name;
	w->start = (uintptr_t)start;
	w->npages = npages;
	memset(w->written, 0, sizeof w->written);
}

/* Store to page i of the window and remember it. */
static inline void tp_write(struct tp_window *w, size_t i)
{
	volatile char *p = (volatile char *)(w->start + i * TP_PAGE);
	p[(i * 97) % TP_PAGE] = (char)(i + 1);
	w->written[i] = 1;
}

/* Load from page i without storing: must never be reported. */
static inline int tp_read(struct tp_window *w, size_t i)
{
	volatile char *p = (volatile char *)(w->start + i * TP_PAGE);
	return p[(i * 31) % TP_PAGE];
}

/* Mark page i written by someone else on our behalf (the kernel, a realloc copy). */
static inline void tp_mark(struct tp_window *w, size_t i)
{
	w->written[i] = 1;
}

/* Write about `percent` of the window's pages at random; returns how many. */
static inline size_t tp_write_random(struct tp_window *w, unsigned percent)
{
	size_t n = 0;
	for (size_t i = 0; i < w->npages; i++)
		if (tp_rand() % 100 < percent) {
			tp_write(w, i);
			n++;
		}
	return n;
}

static inline void tp_open(void)
{
	if (tp_out)
		return;
	const char *path = getenv("WW_EXPECT");
	tp_out = fopen(path ? path : "/dev/null", "a");
	if (!tp_out)
		tp_die("open WW_EXPECT");
	setvbuf(tp_out, NULL, _IOLBF, 0);
}

/* Record the windows' truth for the snapshot labelled `label`, then reset them. Call it just
 * before writewatch_snapshot(label). */
static inline void tp_expect(const char *label, struct tp_window **ws, size_t nw)
{
	tp_open();
	for (size_t k = 0; k < nw; k++) {
		struct tp_window *w = ws[k];
		fprintf(tp_out, "{\"label\":\"%s\",\"window\":\"%s\",\"start\":\"0x%lx\",\"npages\":%zu,"
				"\"pages\":[",
			label, w->name, (unsigned long)w->start, w->npages);
		int first = 1;
		for (size_t i = 0; i < w->npages; i++)
			if (w->written[i]) {
				fprintf(tp_out, first ? "%zu" : ",%zu", i);
				first = 0;
			}
		fprintf(tp_out, "]}\n");
		memset(w->written, 0, w->npages);
	}
}

/* Record a figure of the snapshot the test knows exactly (e.g. retired_written_bytes). */
static inline void tp_expect_field(const char *label, const char *field, unsigned long value)
{
	tp_open();
	fprintf(tp_out, "{\"label\":\"%s\",\"field\":\"%s\",\"value\":%lu}\n", label, field, value);
}

/* tp_expect + writewatch_snapshot, failing the program if the snapshot fails. */
static inline void tp_snapshot(const char *label, struct tp_window **ws, size_t nw)
{
	tp_expect(label, ws, nw);
	if (writewatch_snapshot(label) != 0)
		tp_die("writewatch_snapshot");
}

/* Take snapshot `label` with the truth of the windows given: SNAP("x", &a, &b). */
#define SNAP(label, ...)                                                                           \
	do {                                                                                       \
		struct tp_window *ws_[] = {__VA_ARGS__};                                           \
		tp_snapshot(label, ws_, sizeof ws_ / sizeof ws_[0]);                               \
	} while (0)

/* For programs also run untracked (a twin run compared with the tracked one): a snapshot must
 * succeed under the shim; without it the API is absent and the program goes on. */
static inline void tp_snapshot_or_absent(const char *label)
{
	if (writewatch_snapshot(label) != 0 && dlsym(RTLD_DEFAULT, "writewatch_snapshot"))
		tp_die("writewatch_snapshot");
}

/* SNAP for such programs. */
#define TWIN_SNAP(label, ...)                                                                      \
	do {                                                                                       \
		struct tp_window *ws_[] = {__VA_ARGS__};                                           \
		tp_expect(label, ws_, sizeof ws_ / sizeof ws_[0]);                                 \
		tp_snapshot_or_absent(label);                                                      \
	} while (0)

static volatile int tp_sink;

static inline void *tp_map(size_t pages, int prot)
{
	void *p = mmap(NULL, pages * TP_PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		tp_die("mmap");
	return p;
}

/* Write about pct% of the pages [from, to) of w, at random. */
static inline void tp_write_some(struct tp_window *w, size_t from, size_t to, unsigned pct)
{
	for (size_t i = from; i < to; i++)
		if (tp_rand() % 100 < pct)
			tp_write(w, i);
}

/* Load from about pct% of the pages [from, to) of w: never reported. */
static inline void tp_read_some(struct tp_window *w, size_t from, size_t to, unsigned pct)
{
	for (size_t i = from; i < to; i++)
		if (tp_rand() % 100 < pct)
			tp_sink += tp_read(w, i);
}

#endif
