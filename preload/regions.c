/* The region table: the tracked ranges of the process, in a uthash table keyed by start address,
 * with splits, cuts and gap queries. Pure bookkeeping: no system calls, so unit tests drive it. */
#define _GNU_SOURCE
#include "ww.h"

#include <string.h>

unsigned long ww_page_shift = 12;

static int by_start(const struct ww_region *a, const struct ww_region *b)
{
	return a->start < b->start ? -1 : a->start > b->start;
}

struct ww_region *ww_rt_add(struct ww_table *t, uintptr_t start, uintptr_t end, enum ww_kind kind,
			    uint8_t prot, const char *name, struct ww_site *site)
{
	struct ww_region *r = ww_alloc(sizeof *r);
	if (!r) {
		t->oom_untracked++;
		return NULL;
	}
	r->start = start;
	r->end = end;
	r->id = ++t->next_id;
	r->kind = kind;
	r->site = site;
	r->prot = prot;
	r->flags = WW_RF_NEW;
	if (name) {
		size_t n = strlen(name);
		if (n >= sizeof r->name)
			n = sizeof r->name - 1;
		memcpy(r->name, name, n);
	}
	ww_hash_oom = false;
	HASH_ADD(hh, t->regions, start, sizeof r->start, r);
	if (ww_hash_oom) {
		ww_free(r, sizeof *r);
		t->oom_untracked++;
		return NULL;
	}
	t->sorted = false;
	r->ever_pages = ww_ps_count(&t->ever, WW_PAGE(start), WW_PAGE(end - start));
	return r;
}

void ww_rt_remove(struct ww_table *t, struct ww_region *r)
{
	uint64_t p = WW_PAGE(r->start), n = WW_PAGE(r->end - r->start);
	ww_ps_clear(&t->ever, p, n);
	ww_ps_clear(&t->live, p, n);
	if (r->flags & WW_RF_PENDING)
		ww_ps_clear(&t->pending, p, n);
	HASH_DEL(t->regions, r);
	ww_free(r, sizeof *r);
}

struct ww_region *ww_rt_find(struct ww_table *t, uintptr_t start)
{
	struct ww_region *r;
	HASH_FIND(hh, t->regions, &start, sizeof start, r);
	return r;
}

size_t ww_rt_overlaps(struct ww_table *t, uintptr_t start, uintptr_t end, ww_region_fn fn,
		      void *ctx)
{
	struct ww_region *r = ww_rt_find(t, start), *tmp;
	if (r && r->end >= end) { /* the common case: the call names one whole region */
		fn(ctx, r);
		return 1;
	}
	size_t n = 0;
	HASH_ITER(hh, t->regions, r, tmp) {
		if (r->start < end && r->end > start) {
			fn(ctx, r);
			n++;
		}
	}
	return n;
}

/* Change r's start: the hash key moves with it. If the table cannot take it back (out of
 * memory while growing), the region is dropped and counted as untracked. */
static void rekey(struct ww_table *t, struct ww_region *r, uintptr_t start)
{
	HASH_DEL(t->regions, r);
	r->start = start;
	ww_hash_oom = false;
	HASH_ADD(hh, t->regions, start, sizeof r->start, r);
	t->sorted = false;
	if (ww_hash_oom) {
		ww_ps_clear(&t->ever, WW_PAGE(r->start), WW_PAGE(r->end - r->start));
		ww_free(r, sizeof *r);
		t->oom_untracked++;
	}
}

struct cut_ctx {
	struct ww_region *hit[64];
	size_t n;
	bool more;
};

static void collect(void *ctx, struct ww_region *r)
{
	struct cut_ctx *c = ctx;
	if (c->n < sizeof c->hit / sizeof c->hit[0])
		c->hit[c->n++] = r;
	else
		c->more = true;
}

/* [s,e) goes from the middle of r: r keeps the lower part, a new region the upper (a new id,
 * so new:true in its first record and counted in new_regions), one more region of r's site
 * (made by the split, retired when it goes). */
static void cut_middle(struct ww_table *t, struct ww_region *r, uintptr_t s, uintptr_t e)
{
	uintptr_t old_end = r->end;
	r->end = s;
	struct ww_region *u = ww_rt_add(t, e, old_end, r->kind, r->prot, r->name, r->site);
	if (u) {
		u->flags = r->flags | WW_RF_NEW;
		t->iv.new_regions++;
		ww_site_region_split(r->site);
	}
	ww_rt_recount(t, r);
}

uint64_t ww_rt_cut(struct ww_table *t, uintptr_t start, uintptr_t end, bool retire)
{
	uint64_t bytes = 0;
	struct cut_ctx c;
	do {
		c.n = 0;
		c.more = false;
		ww_rt_overlaps(t, start, end, collect, &c);
		for (size_t i = 0; i < c.n; i++) {
			struct ww_region *r = c.hit[i];
			uintptr_t s = r->start > start ? r->start : start;
			uintptr_t e = r->end < end ? r->end : end;
			bytes += e - s;
			bool whole = s == r->start && e == r->end;
			if (retire) {
				uint64_t churn = ww_ps_count(&t->live, WW_PAGE(s), WW_PAGE(e - s));
				t->iv.churn_pages += churn;
				ww_site_region_gone(r->site, e - s, churn, whole);
			}
			if (whole) {
				ww_rt_remove(t, r);
				continue;
			}
			ww_ps_clear(&t->live, WW_PAGE(s), WW_PAGE(e - s));
			uint64_t cleared = ww_ps_clear(&t->ever, WW_PAGE(s), WW_PAGE(e - s));
			if (r->flags & WW_RF_PENDING)
				ww_ps_clear(&t->pending, WW_PAGE(s), WW_PAGE(e - s));
			/* only ever short of cleared while regions overlap (see drop_stale) */
			r->ever_pages = r->ever_pages > cleared ? r->ever_pages - cleared : 0;
			if (s == r->start) {
				rekey(t, r, e);
			} else if (e == r->end) {
				r->end = s;
			} else {
				cut_middle(t, r, s, e);
			}
		}
	} while (c.more);
	return bytes;
}

uint64_t ww_rt_forget(struct ww_table *t, struct ww_region *r, uintptr_t start, uintptr_t end)
{
	uintptr_t s = r->start > start ? r->start : start;
	uintptr_t e = r->end < end ? r->end : end;
	if (s >= e)
		return 0;
	bool whole = s == r->start && e == r->end;
	ww_site_region_gone(r->site, e - s, 0, whole);
	if (whole) {
		HASH_DEL(t->regions, r);
		ww_free(r, sizeof *r);
	} else if (s == r->start) {
		r->ever_pages = ww_ps_count(&t->ever, WW_PAGE(e), WW_PAGE(r->end - e));
		rekey(t, r, e);
	} else if (e == r->end) {
		r->end = s;
		ww_rt_recount(t, r);
	} else {
		cut_middle(t, r, s, e);
	}
	t->sorted = false;
	return e - s;
}

void ww_rt_sort(struct ww_table *t)
{
	if (!t->sorted)
		HASH_SRT(hh, t->regions, by_start);
	t->sorted = true;
}

void ww_rt_recount(struct ww_table *t, struct ww_region *r)
{
	r->ever_pages = ww_ps_count(&t->ever, WW_PAGE(r->start), WW_PAGE(r->end - r->start));
}

void ww_rt_clear(struct ww_table *t)
{
	struct ww_region *r, *tmp;
	HASH_ITER(hh, t->regions, r, tmp) {
		HASH_DEL(t->regions, r);
		ww_free(r, sizeof *r);
	}
	ww_ps_free(&t->ever);
	ww_ps_free(&t->pending);
	ww_ps_free(&t->live);
	memset(&t->iv, 0, sizeof t->iv);
	t->sorted = false;
}

const char *ww_kind_name(enum ww_kind k)
{
	switch (k) {
	case WW_KIND_MMAP: return "mmap";
	case WW_KIND_HEAP: return "heap";
	case WW_KIND_STACK: return "stack";
	case WW_KIND_THREAD_STACK: return "thread_stack";
	case WW_KIND_ANON: return "anon";
	case WW_KIND_MALLOC: return "malloc";
	case WW_KIND_ARENA: return "arena";
	}
	return "anon";
}
