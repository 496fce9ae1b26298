/* Sparse page bitmaps keyed by absolute page number: 512-page chunks in a uthash table, so a
 * terabyte reservation costs nothing until its pages are written, and splits need no copying. */
#define _GNU_SOURCE
#include "ww.h"

#define CHUNK_PAGES 512u
#define CHUNK_WORDS (CHUNK_PAGES / 64)

struct ww_pchunk {
	uint64_t key; /* page >> 9 */
	uint64_t bits[CHUNK_WORDS];
	uint32_t count;
	UT_hash_handle hh;
};

bool ww_hash_oom;

static struct ww_pchunk *find(const struct ww_pageset *cps, uint64_t key)
{
	struct ww_pageset *ps = (struct ww_pageset *)cps;
	struct ww_pchunk *c = ps->last;
	if (c && c->key == key)
		return c;
	HASH_FIND(hh, ps->chunks, &key, sizeof key, c);
	if (c)
		ps->last = c;
	return c;
}

static struct ww_pchunk *get(struct ww_pageset *ps, uint64_t key)
{
	struct ww_pchunk *c = find(ps, key);
	if (c)
		return c;
	c = ww_alloc(sizeof *c);
	if (!c) {
		ps->oom = true;
		return NULL;
	}
	c->key = key;
	ww_hash_oom = false;
	HASH_ADD(hh, ps->chunks, key, sizeof c->key, c);
	if (ww_hash_oom) {
		ww_free(c, sizeof *c);
		ps->oom = true;
		return NULL;
	}
	return c;
}

static void drop(struct ww_pageset *ps, struct ww_pchunk *c)
{
	if (ps->last == c)
		ps->last = NULL;
	HASH_DEL(ps->chunks, c);
	ww_free(c, sizeof *c);
}

/* Mask of bits [lo, hi) within one 64-bit word, 0 <= lo < hi <= 64. */
static uint64_t word_mask(unsigned lo, unsigned hi)
{
	uint64_t m = hi == 64 ? ~0ull : ((1ull << hi) - 1);
	return m & ~((1ull << lo) - 1);
}

/* Apply op to bits [lo, hi) of chunk c: 0 = count, 1 = set, 2 = clear; returns bits affected. */
static uint64_t chunk_op(struct ww_pchunk *c, unsigned lo, unsigned hi, int op)
{
	uint64_t n = 0;
	if (hi == lo + 1) { /* one page, the common run of a scattered scan: no popcount call */
		uint64_t bit = 1ull << (lo % 64), *w = &c->bits[lo / 64];
		bool was = (*w & bit) != 0;
		if (op == 1)
			*w |= bit;
		else if (op == 2)
			*w &= ~bit;
		return op == 1 ? !was : was;
	}
	for (unsigned w = lo / 64; w * 64 < hi; w++) {
		unsigned a = w * 64 > lo ? 0 : lo - w * 64;
		unsigned b = (w + 1) * 64 < hi ? 64 : hi - w * 64;
		uint64_t m = word_mask(a, b);
		if (op == 0) {
			n += (uint64_t)__builtin_popcountll(c->bits[w] & m);
		} else if (op == 1) {
			n += (uint64_t)__builtin_popcountll(~c->bits[w] & m);
			c->bits[w] |= m;
		} else {
			n += (uint64_t)__builtin_popcountll(c->bits[w] & m);
			c->bits[w] &= ~m;
		}
	}
	return n;
}

/* Chunks touched by [first, first+n): walk them by key when there are fewer keys than chunks in
 * the table, else walk the table. The callback gets the chunk (or NULL if absent, only in the
 * by-key walk) and the bit range inside it. */
typedef uint64_t (*chunk_fn)(struct ww_pageset *ps, uint64_t key, struct ww_pchunk *c, unsigned lo,
			     unsigned hi, void *ctx);

static uint64_t each_chunk(struct ww_pageset *ps, uint64_t first, uint64_t n, bool create,
			   chunk_fn fn, void *ctx)
{
	uint64_t total = 0, end = first + n;
	if (n == 0)
		return 0;
	uint64_t k0 = first / CHUNK_PAGES, k1 = (end - 1) / CHUNK_PAGES;
	if (k0 == k1) { /* one chunk: the common case of a scan's runs */
		struct ww_pchunk *c = create ? get(ps, k0) : find(ps, k0);
		unsigned lo = (unsigned)(first - k0 * CHUNK_PAGES);
		return c || create ? fn(ps, k0, c, lo, lo + (unsigned)n, ctx) : 0;
	}
	if (create || k1 - k0 + 1 <= (uint64_t)HASH_COUNT(ps->chunks) * 2 + 8) {
		for (uint64_t k = k0; k <= k1; k++) {
			uint64_t base = k * CHUNK_PAGES;
			unsigned lo = k == k0 ? (unsigned)(first - base) : 0;
			unsigned hi = k == k1 ? (unsigned)(end - base) : CHUNK_PAGES;
			struct ww_pchunk *c = create ? get(ps, k) : find(ps, k);
			if (c || create)
				total += fn(ps, k, c, lo, hi, ctx);
		}
		return total;
	}
	struct ww_pchunk *c, *tmp;
	HASH_ITER(hh, ps->chunks, c, tmp) {
		if (c->key < k0 || c->key > k1)
			continue;
		uint64_t base = c->key * CHUNK_PAGES;
		unsigned lo = c->key == k0 ? (unsigned)(first - base) : 0;
		unsigned hi = c->key == k1 ? (unsigned)(end - base) : CHUNK_PAGES;
		total += fn(ps, c->key, c, lo, hi, ctx);
	}
	return total;
}

static uint64_t do_set(struct ww_pageset *ps, uint64_t key, struct ww_pchunk *c, unsigned lo,
		       unsigned hi, void *ctx)
{
	(void)key, (void)ctx;
	if (!c)
		return 0; /* out of memory: ps->oom says the set is incomplete */
	uint64_t n = chunk_op(c, lo, hi, 1);
	c->count += (uint32_t)n;
	ps->count += n;
	return n;
}

static uint64_t do_clear(struct ww_pageset *ps, uint64_t key, struct ww_pchunk *c, unsigned lo,
			 unsigned hi, void *ctx)
{
	(void)key, (void)ctx;
	if (!c)
		return 0;
	uint64_t n = chunk_op(c, lo, hi, 2);
	c->count -= (uint32_t)n;
	ps->count -= n;
	if (c->count == 0)
		drop(ps, c);
	return n;
}

static uint64_t do_count(struct ww_pageset *ps, uint64_t key, struct ww_pchunk *c, unsigned lo,
			 unsigned hi, void *ctx)
{
	(void)ps, (void)key, (void)ctx;
	return c ? chunk_op(c, lo, hi, 0) : 0;
}

uint64_t ww_ps_set(struct ww_pageset *ps, uint64_t first, uint64_t n)
{
	return each_chunk(ps, first, n, true, do_set, NULL);
}

uint64_t ww_ps_clear(struct ww_pageset *ps, uint64_t first, uint64_t n)
{
	return each_chunk(ps, first, n, false, do_clear, NULL);
}

uint64_t ww_ps_count(const struct ww_pageset *ps, uint64_t first, uint64_t n)
{
	return each_chunk((struct ww_pageset *)ps, first, n, false, do_count, NULL);
}

/* Runs inside one chunk, reported through a callback that merges runs across chunk edges. */
struct run_acc {
	ww_run_fn fn;
	void *ctx;
	uint64_t start, len;
	/* for the by-table walk, chunks come unordered: collect keys and sort first */
};

static void acc_push(struct run_acc *a, uint64_t first, uint64_t n)
{
	if (a->len && a->start + a->len == first) {
		a->len += n;
		return;
	}
	if (a->len)
		a->fn(a->ctx, a->start, a->len);
	a->start = first;
	a->len = n;
}

static uint64_t do_runs(struct ww_pageset *ps, uint64_t key, struct ww_pchunk *c, unsigned lo,
			unsigned hi, void *ctx)
{
	(void)ps;
	struct run_acc *a = ctx;
	if (!c)
		return 0;
	uint64_t base = key * CHUNK_PAGES;
	unsigned i = lo;
	while (i < hi) {
		uint64_t w = c->bits[i / 64] >> (i % 64);
		if (!w) {
			i = (i / 64 + 1) * 64;
			continue;
		}
		i += (unsigned)__builtin_ctzll(w);
		if (i >= hi)
			break;
		unsigned j = i;
		while (j < hi && (c->bits[j / 64] >> (j % 64) & 1))
			j++;
		acc_push(a, base + i, j - i);
		i = j;
	}
	return 0;
}

/* Heap sort of chunk pointers by key: no allocation, O(n log n). */
static void sift(struct ww_pchunk **v, size_t n, size_t i)
{
	for (;;) {
		size_t m = i, l = 2 * i + 1, r = l + 1;
		if (l < n && v[l]->key > v[m]->key)
			m = l;
		if (r < n && v[r]->key > v[m]->key)
			m = r;
		if (m == i)
			return;
		struct ww_pchunk *t = v[i];
		v[i] = v[m];
		v[m] = t;
		i = m;
	}
}

static void sort_chunks(struct ww_pchunk **v, size_t n)
{
	for (size_t i = n / 2; i-- > 0;)
		sift(v, n, i);
	for (size_t i = n; i-- > 1;) {
		struct ww_pchunk *t = v[0];
		v[0] = v[i];
		v[i] = t;
		sift(v, i, 0);
	}
}

void ww_ps_runs(const struct ww_pageset *cps, uint64_t first, uint64_t n, ww_run_fn fn, void *ctx)
{
	struct ww_pageset *ps = (struct ww_pageset *)cps;
	struct run_acc a = {fn, ctx, 0, 0};
	if (n == 0 || !ps->chunks)
		return;
	uint64_t end = first + n, k0 = first / CHUNK_PAGES, k1 = (end - 1) / CHUNK_PAGES;
	size_t nchunks = HASH_COUNT(ps->chunks);
	if (k1 - k0 + 1 <= (uint64_t)nchunks * 2 + 8) {
		each_chunk(ps, first, n, false, do_runs, &a);
	} else {
		/* A huge range with few chunks: gather the chunks inside it and sort them. */
		struct ww_pchunk **v = ww_alloc(nchunks * sizeof *v);
		size_t m = 0;
		struct ww_pchunk *c, *tmp;
		if (!v)
			return;
		HASH_ITER(hh, ps->chunks, c, tmp)
			if (c->key >= k0 && c->key <= k1)
				v[m++] = c;
		sort_chunks(v, m);
		for (size_t i = 0; i < m; i++) {
			uint64_t base = v[i]->key * CHUNK_PAGES;
			unsigned lo = v[i]->key == k0 ? (unsigned)(first - base) : 0;
			unsigned hi = v[i]->key == k1 ? (unsigned)(end - base) : CHUNK_PAGES;
			do_runs(ps, v[i]->key, v[i], lo, hi, &a);
		}
		ww_free(v, nchunks * sizeof *v);
	}
	if (a.len)
		fn(ctx, a.start, a.len);
}

struct move_ctx {
	struct ww_pageset *dst;
	int64_t delta;
};

static void move_run(void *ctx, uint64_t first, uint64_t n)
{
	struct move_ctx *m = ctx;
	ww_ps_set(m->dst, (uint64_t)((int64_t)first + m->delta), n);
}

void ww_ps_move(struct ww_pageset *ps, uint64_t from, uint64_t to, uint64_t n)
{
	struct ww_pageset tmp = {0};
	struct move_ctx m = {&tmp, (int64_t)(to - from)};
	if (from == to)
		return;
	ww_ps_runs(ps, from, n, move_run, &m);
	ww_ps_clear(ps, from, n);
	m.dst = ps;
	m.delta = 0;
	ww_ps_runs(&tmp, to, n, move_run, &m);
	if (tmp.oom)
		ps->oom = true;
	ww_ps_free(&tmp);
}

void ww_ps_free(struct ww_pageset *ps)
{
	struct ww_pchunk *c, *tmp;
	HASH_ITER(hh, ps->chunks, c, tmp) {
		HASH_DEL(ps->chunks, c);
		ww_free(c, sizeof *c);
	}
	ps->count = 0;
	ps->last = NULL;
}
