/* Events from the hooks: what mmap, munmap, mremap, madvise, glibc's malloc blocks and
 * new threads change in the region table. Memory about to go is harvested first, so its last
 * writes count; the call site of every region the hooks see is recorded for attribution. */
#define _GNU_SOURCE
#include "ww.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

static uint64_t page_round(uint64_t len)
{
	uint64_t ps = 1ull << ww_page_shift;
	return (len + ps - 1) & ~(ps - 1);
}

/* ---- harvesting ---- */

struct harvest {
	uint64_t pages, new_ever;
	bool to_pending;
};

static void harvest_run(void *ctx, uint64_t first, uint64_t n)
{
	struct harvest *h = ctx;
	h->pages += n;
	h->new_ever += ww_ps_set(&ww.table.ever, first, n);
	ww_ps_set(&ww.table.live, first, n);
	if (h->to_pending)
		ww_ps_set(&ww.table.pending, first, n);
}

struct range_ctx {
	uintptr_t start, end;
	uint64_t pages;
};

static void clip(const struct range_ctx *c, const struct ww_region *r, uintptr_t *s, uintptr_t *e)
{
	*s = r->start > c->start ? r->start : c->start;
	*e = r->end < c->end ? r->end : c->end;
}

/* Before an unmap: read the part's writes without re-arming (it is going away). */
static void peek_region(void *ctx, struct ww_region *r)
{
	struct range_ctx *c = ctx;
	uintptr_t s, e;
	clip(c, r, &s, &e);
	/* Pages harvested earlier (before a discard or a move) and not yet reported go with the
	 * region: the written pages are those and the ones read now, each once (a page written
	 * before a move and again after it is in both). */
	bool pending = r->flags & WW_RF_PENDING;
	struct harvest h = {.to_pending = pending};
	ww_kern_scan(&ww.kern, s, e, r->flags & WW_RF_REGISTERED ? WW_SCAN_PEEK : WW_SCAN_FRESH,
		     harvest_run, &h);
	uint64_t pages = pending ? ww_ps_count(&ww.table.pending, WW_PAGE(s), WW_PAGE(e - s))
				 : h.pages;
	r->ever_pages += h.new_ever;
	ww_site_written(r->site, pages, h.new_ever);
	c->pages += pages;
}

/* Before a discard or a move: read the part's writes and re-arm them, keeping them for the
 * next snapshot (the kernel is about to drop or move the pages). */
static void rearm_region(void *ctx, struct ww_region *r)
{
	struct range_ctx *c = ctx;
	uintptr_t s, e;
	clip(c, r, &s, &e);
	if (!(r->flags & WW_RF_REGISTERED))
		ww_track_register(r); /* not yet (see new_region): it has to be now, to re-arm */
	if (!(r->flags & WW_RF_REGISTERED))
		return;
	struct harvest h = {.to_pending = true};
	ww_kern_scan(&ww.kern, s, e, WW_SCAN_REARM, harvest_run, &h);
	r->ever_pages += h.new_ever;
	ww_site_written(r->site, 0, h.new_ever); /* the pages themselves count when reported */
	if (h.pages)
		r->flags |= WW_RF_PENDING;
	c->pages += e - s;
}

/* ---- munmap ---- */

static uint64_t munmap_pending_pages;
static size_t nclaims; /* ranges the program claimed with its own userfaultfd (below) */
static void drop_claims(uintptr_t s, uintptr_t e);

void ww_on_munmap_pre(uintptr_t addr, size_t len)
{
	struct range_ctx c = {addr, addr + page_round(len), 0};
	ww_rt_overlaps(&ww.table, c.start, c.end, peek_region, &c);
	munmap_pending_pages = c.pages;
}

static void count_one(void *ctx, struct ww_region *r)
{
	(void)ctx, (void)r;
}

void ww_on_munmap_post(uintptr_t addr, size_t len)
{
	if (WW_UNLIKELY(nclaims))
		drop_claims(addr, addr + page_round(len));
	struct ww_interval *iv = &ww.table.iv;
	/* Each region unmapped, whole or in part, counts one (docs/format.md). */
	size_t touched = ww_rt_overlaps(&ww.table, addr, addr + page_round(len), count_one, NULL);
	uint64_t bytes = ww_rt_cut(&ww.table, addr, addr + page_round(len), true);
	if (bytes) {
		iv->retired_regions += touched;
		iv->retired_bytes += bytes;
		iv->retired_written_pages += munmap_pending_pages;
	}
	munmap_pending_pages = 0;
}

/* ---- madvise discards ---- */

static void discard_region(void *ctx, struct ww_region *r)
{
	struct range_ctx *c = ctx;
	uintptr_t s, e;
	uint64_t before = c->pages;
	rearm_region(ctx, r);
	if (c->pages == before)
		return; /* not registered: nothing we could harvest */
	clip(c, r, &s, &e);
	uint64_t churn = ww_ps_clear(&ww.table.live, WW_PAGE(s), WW_PAGE(e - s));
	ww.table.iv.churn_pages += churn;
	ww_site_discarded(r->site, churn);
}

void ww_on_discard_pre(uintptr_t addr, size_t len, int advice)
{
	(void)advice;
	struct range_ctx c = {addr, addr + page_round(len), 0};
	ww_rt_overlaps(&ww.table, c.start, c.end, discard_region, &c);
	ww.table.iv.discarded_bytes += c.pages;
}

/* ---- mmap ---- */

static struct ww_region *new_region(uintptr_t s, uintptr_t e, enum ww_kind kind, uint8_t prot,
				    struct ww_site *site)
{
	struct ww_region *r = ww_rt_add(&ww.table, s, e, kind, prot, "", site);
	if (!r)
		return NULL;
	ww.table.iv.new_regions++;
	ww_site_region_made(site, e - s);
	/* Registered at the next snapshot, not now: with the register-only strategy its pages
	 * count the same either way, and a mapping unmapped before then (most short-lived ones)
	 * never costs the ioctl. Until then harvests read it as fresh memory. */
	return r;
}

struct ww_site *ww_caller_site_locked(const uintptr_t *frames, int depth)
{
	return depth > 0 ? ww_site_get(frames, depth) : NULL;
}

void ww_on_mmap(uintptr_t addr, size_t len, int prot, int flags, const uintptr_t *frames,
		int depth)
{
	len = page_round(len);
	if (!(flags & MAP_FIXED))
		munmap_pending_pages = 0; /* no pre-harvest ran: nothing of ours was replaced */
	if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
		ww_on_munmap_post(addr, len); /* whatever was there is gone */
	} else {
		/* The kernel handed the range out as free, yet the table may still hold memory there
		 * that went behind the hooks' back (glibc's own munmap, posix_spawn's stack, a raw
		 * syscall): its page bits are stale, so clear them (cheap, by page), and let such
		 * regions go (cheap, through the last reconcile's index; not a walk of the table). */
		uint64_t p = WW_PAGE(addr), n = WW_PAGE(len);
		ww_ps_clear(&ww.table.ever, p, n);
		ww_ps_clear(&ww.table.pending, p, n);
		ww_ps_clear(&ww.table.live, p, n);
		ww_forget_stale(addr, addr + len);
	}
	if (!(flags & MAP_ANONYMOUS) || (flags & MAP_SHARED) || (flags & MAP_HUGETLB))
		return;
	new_region(addr, addr + len, WW_KIND_MMAP, (uint8_t)prot,
		   ww_caller_site_locked(frames, depth));
}

/* ---- mremap: the pages' write-protect bits do not survive a move, so the old range is
 * harvested into the pending set first; then the new range is re-armed and the bits carried
 * over. ---- */

static struct {
	bool tracked; /* a region held the old range */
	uint64_t id;
	enum ww_kind kind;
	struct ww_site *site;
	char name[64];
	bool unregistered; /* the pre hook took the old range out of our registration */
	bool was_new;      /* the region moving has not been reported yet */
} moving;

void ww_on_mremap_pre(uintptr_t old, size_t oldlen, uintptr_t dest, size_t newlen, int flags)
{
	/* MREMAP_FIXED first unmaps whatever is at the destination: harvest it as munmap would,
	 * so its writes of this interval count in retired_written_bytes (the post hook retires
	 * it). Without the flag the destination was free: nothing to carry over. */
	if (flags & MREMAP_FIXED)
		ww_on_munmap_pre(dest, newlen);
	else
		munmap_pending_pages = 0;
	oldlen = page_round(oldlen);
	struct ww_region *r = ww_rt_find(&ww.table, old);
	if (!r) { /* a part of a region: find the one containing it */
		struct ww_region *q;
		for (q = ww.table.regions; q; q = q->hh.next)
			if (q->start <= old && q->end > old)
				break;
		r = q;
	}
	moving.tracked = r != NULL;
	moving.id = (r && r->start == old && r->end == old + oldlen) ? r->id : 0;
	moving.kind = r ? r->kind : WW_KIND_MMAP;
	moving.site = r ? r->site : NULL;
	moving.was_new = r && (r->flags & WW_RF_NEW);
	if (r)
		memcpy(moving.name, r->name, sizeof moving.name);
	else
		moving.name[0] = 0;
	struct range_ctx c = {old, old + oldlen, 0};
	ww_rt_overlaps(&ww.table, c.start, c.end, rearm_region, &c);
	/* A move re-creates the VMA at its new place still registered with our context; there the
	 * kernel may merge it with a registered neighbour, then drops the context of the whole
	 * merged VMA (we take no remap events): the neighbour goes unwatched and its
	 * write-protected pages can be written unseen (seen on 6.18 in threaded programs). So a
	 * call that may move first takes the range out of our registration, its writes harvested
	 * just above; the post hook registers it wherever it ends up. (A call that then fails
	 * leaves it unregistered: the next snapshot reports its interval lost.) */
	moving.unregistered = moving.tracked && (flags & MREMAP_MAYMOVE) &&
			      (page_round(newlen) > oldlen || (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)));
	if (moving.unregistered)
		ww_kern_unregister(&ww.kern, old, old + oldlen);
}

/* Register a region again after the pre hook unregistered it, or after a move, and re-arm it:
 * its pages carry no write protection now; their writes of this interval are pending. */
static void register_again(struct ww_region *r)
{
	r->flags = (uint8_t)((r->flags & ~WW_RF_REGISTERED) | WW_RF_PENDING);
	ww_track_register(r);
	if (r->flags & WW_RF_REGISTERED)
		ww_kern_scan(&ww.kern, r->start, r->end, WW_SCAN_DISCARD, NULL, NULL);
}

static void register_again_fn(void *ctx, struct ww_region *r)
{
	(void)ctx;
	register_again(r);
}

void ww_on_mremap_post(uintptr_t old, size_t oldlen, uintptr_t new_addr, size_t newlen)
{
	oldlen = page_round(oldlen);
	newlen = page_round(newlen);
	struct ww_region *r = ww_rt_find(&ww.table, old);
	if (new_addr == old && moving.tracked) { /* in place: only the tail changed */
		if (newlen < oldlen) {
			uint64_t tail = ww_ps_count(&ww.table.pending, WW_PAGE(old + newlen),
						    WW_PAGE(oldlen - newlen));
			ww.table.iv.retired_bytes +=
				ww_rt_cut(&ww.table, old + newlen, old + oldlen, true);
			ww.table.iv.retired_written_pages += tail;
		} else if (r && r->end == old + oldlen) {
			r->end = old + newlen;
			ww_site_resized(r->site, (int64_t)(newlen - oldlen));
		}
		if (moving.unregistered)
			ww_rt_overlaps(&ww.table, old, old + newlen, register_again_fn, NULL);
		return;
	}
	if (!moving.tracked)
		return; /* not ours: the new place is found in the maps */
	/* Moved: whatever was at the destination is gone (MREMAP_FIXED: retired like an munmap,
	 * with the writes the pre hook harvested), then the bits of the old range move to the new
	 * one before the old range leaves the table. */
	ww_on_munmap_post(new_addr, newlen);
	uint64_t keep = oldlen < newlen ? oldlen : newlen;
	if (oldlen > newlen) {
		ww.table.iv.retired_written_pages += ww_ps_count(
			&ww.table.pending, WW_PAGE(old + newlen), WW_PAGE(oldlen - newlen));
		/* the tail that did not come along is thrown away */
		ww_rt_cut(&ww.table, old + newlen, old + oldlen, true);
	}
	ww_ps_move(&ww.table.ever, WW_PAGE(old), WW_PAGE(new_addr), WW_PAGE(keep));
	ww_ps_move(&ww.table.pending, WW_PAGE(old), WW_PAGE(new_addr), WW_PAGE(keep));
	ww_ps_move(&ww.table.live, WW_PAGE(old), WW_PAGE(new_addr), WW_PAGE(keep));
	ww_rt_cut(&ww.table, old, old + keep, false);
	struct ww_region *n = ww_rt_add(&ww.table, new_addr, new_addr + newlen, moving.kind,
					PROT_READ | PROT_WRITE, moving.name, moving.site);
	if (!n)
		return;
	if (moving.id) {
		n->id = moving.id; /* the same region, moved: new only if never reported */
		if (!moving.was_new)
			n->flags &= (uint8_t)~WW_RF_NEW;
		ww_site_resized(n->site, (int64_t)newlen - (int64_t)oldlen);
	} else {
		ww.table.iv.new_regions++;
		ww_site_region_made(n->site, newlen);
	}
	register_again(n);
}

/* ---- memory the program claims with a userfaultfd of its own ---- */

/* A range can be registered with one userfaultfd only: when the program registers its own on
 * memory we watch, we let go of it (the program's use wins) and stop tracking it. */
#define WW_MAX_CLAIMS 256
static struct {
	uintptr_t start, end;
} claims[WW_MAX_CLAIMS];
static int warned_claim;

bool ww_claimed(uintptr_t s, uintptr_t e)
{
	for (size_t i = 0; i < nclaims; i++)
		if (claims[i].start < e && claims[i].end > s)
			return true;
	return false;
}

uint64_t ww_claimed_bytes(void)
{
	uint64_t n = 0;
	for (size_t i = 0; i < nclaims; i++)
		n += claims[i].end - claims[i].start;
	return n;
}

/* The range is unmapped or replaced: the program's claim went with it. */
static void drop_claims(uintptr_t s, uintptr_t e)
{
	for (size_t i = 0; i < nclaims;) {
		if (claims[i].start >= s && claims[i].end <= e)
			claims[i] = claims[--nclaims];
		else
			i++;
	}
}

static void unregister_part(void *ctx, struct ww_region *r)
{
	struct range_ctx *c = ctx;
	uintptr_t s, e;
	clip(c, r, &s, &e);
	ww_kern_unregister(&ww.kern, s, e);
}

void ww_on_foreign_register(uintptr_t start, uint64_t len)
{
	uintptr_t end = start + page_round(len);
	if (!ww_enter_hook())
		return;
	if (!ww_claimed(start, end) && nclaims < WW_MAX_CLAIMS) {
		/* Its last writes count, as for an unmap; then the range leaves the table. */
		ww_on_munmap_pre(start, end - start);
		struct range_ctx c = {start, end, 0};
		size_t n = ww_rt_overlaps(&ww.table, start, end, unregister_part, &c);
		ww_on_munmap_post(start, end - start);
		claims[nclaims].start = start;
		claims[nclaims].end = end;
		nclaims++;
		if (n)
			ww_warn_once(warned_claim,
				     "the program registers its own userfaultfd on %lx-%lx; that memory "
				     "is its own now and no longer tracked (counted in untracked_bytes)",
				     (unsigned long)start, (unsigned long)end);
	}
	ww_leave_hook();
}

/* ---- glibc's malloc blocks ---- */

void ww_on_block_made(uintptr_t start, size_t len, size_t requested)
{
	uintptr_t frames[WW_MAX_DEPTH];
	int saved = errno;
	int depth = ww_stack_capture(frames, (int)ww.cfg.stack_depth);
	if (ww_enter_hook()) {
		munmap_pending_pages = 0;
		ww_on_munmap_post(start, len); /* a stale entry where glibc unmapped unseen */
		struct ww_region *r = new_region(start, start + len, WW_KIND_MALLOC,
						 PROT_READ | PROT_WRITE, ww_caller_site_locked(frames, depth));
		if (r)
			ww_site_malloc(r->site, requested);
		ww_leave_hook();
	}
	errno = saved;
}

void ww_block_free(void *p, uintptr_t start, size_t len)
{
	int saved = errno;
	if (!ww_enter_hook()) {
		ww_next.free(p);
		errno = saved;
		return;
	}
	ww_on_munmap_pre(start, len);
	ww_next.free(p);
	ww_on_munmap_post(start, len);
	ww_leave_hook();
	errno = saved;
}

void *ww_block_realloc(void *p, uintptr_t start, size_t len, size_t n)
{
	if (n == 0) { /* glibc frees the block and returns NULL */
		ww_block_free(p, start, len);
		return NULL;
	}
	if (!ww_enter_hook())
		return ww_next.realloc(p, n);
	/* glibc resizes the mapping with mremap(MREMAP_MAYMOVE) (its chunk header on top of n) */
	ww_on_mremap_pre(start, len, 0, n + 4 * sizeof(size_t), MREMAP_MAYMOVE);
	void *q = ww_next.realloc(p, n);
	int saved = errno;
	uintptr_t ns;
	size_t nl;
	if (q && ww_chunk_mapping(q, &ns, &nl)) {
		ww_on_mremap_post(start, len, ns, nl); /* glibc's mremap: in place or moved */
		/* glibc rewrote the chunk header after the move, before the re-arm above could
		 * see it: that store is the program's allocator's, so it counts. */
		struct ww_region *r = ww_rt_find(&ww.table, ns);
		if (r && (r->flags & WW_RF_REGISTERED)) {
			struct harvest h = {.to_pending = true};
			harvest_run(&h, WW_PAGE(ns), 1);
			r->ever_pages += h.new_ever;
			r->flags |= WW_RF_PENDING;
		}
	} else if (q) {
		/* Copied into the heap: the old mapping is gone, with its unreported writes. */
		munmap_pending_pages = ww_ps_count(&ww.table.pending, WW_PAGE(start), WW_PAGE(len));
		ww_on_munmap_post(start, len);
	}
	ww_leave_hook();
	errno = saved;
	return q;
}

/* ---- threads: each new thread learns its own stack and records it under its creator ---- */

static int (*next_pthread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

struct thread_start {
	void *(*fn)(void *);
	void *arg;
	struct ww_site *site;
};

static bool overlaps_none(uintptr_t s, uintptr_t e)
{
	return ww_rt_overlaps(&ww.table, s, e, count_one, NULL) == 0;
}

/* When a thread ends, glibc discards most of its stack with its own madvise (unseen by the
 * hooks) before caching or unmapping it: harvest the stack first, as for a discard, so that the
 * thread's last writes count. A key's destructor runs after the thread function returns or
 * pthread_exit unwinds, and before that discard. */
struct thread_stack {
	uintptr_t start, end;
};
static pthread_key_t stack_key;
static pthread_once_t stack_key_once = PTHREAD_ONCE_INIT;
static bool stack_key_ok;

static void harvest_thread_stack(void *v)
{
	struct thread_stack ts = *(struct thread_stack *)v;
	ww_free(v, sizeof ts);
	if (!ww_enter_hook())
		return;
	struct range_ctx c = {ts.start, ts.end, 0};
	ww_rt_overlaps(&ww.table, c.start, c.end, rearm_region, &c);
	ww_leave_hook();
}

static void make_stack_key(void)
{
	stack_key_ok = pthread_key_create(&stack_key, harvest_thread_stack) == 0;
}

static void harvest_at_exit(uintptr_t s, uintptr_t e)
{
	pthread_once(&stack_key_once, make_stack_key);
	struct thread_stack *ts = stack_key_ok ? ww_alloc(sizeof *ts) : NULL;
	if (!ts)
		return;
	ts->start = s;
	ts->end = e;
	if (pthread_setspecific(stack_key, ts) != 0)
		ww_free(ts, sizeof *ts);
}

static void on_thread_started(struct ww_site *site)
{
	pthread_attr_t a;
	void *lo = NULL;
	size_t size = 0;
	int saved = errno;
	ww_in_shim++; /* pthread_getattr_np allocates: let those calls through untouched */
	int rc = pthread_getattr_np(pthread_self(), &a);
	if (rc == 0) {
		rc = pthread_attr_getstack(&a, &lo, &size);
		pthread_attr_destroy(&a);
	}
	ww_in_shim--;
	if (rc == 0 && ww_enter_hook()) {
		uintptr_t s = (uintptr_t)lo, e = s + size;
		struct ww_region *r = ww_rt_find(&ww.table, s);
		if (r && r->end == e && !r->site) {
			r->site = site; /* found earlier in the maps, or a cached stack reused */
			r->kind = WW_KIND_THREAD_STACK;
			ww_site_region_made(site, e - s);
		} else if (!r && overlaps_none(s, e)) {
			new_region(s, e, WW_KIND_THREAD_STACK, PROT_READ | PROT_WRITE, site);
		}
		ww_leave_hook();
		ww_in_shim++; /* the first pthread_setspecific of a key may allocate */
		harvest_at_exit(s, e);
		ww_in_shim--;
	}
	errno = saved;
}

static void *thread_trampoline(void *arg)
{
	struct thread_start st = *(struct thread_start *)arg;
	ww_free(arg, sizeof st);
	on_thread_started(st.site);
	return st.fn(st.arg);
}

int ww_thread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	if (!next_pthread_create) {
		ww_in_shim++;
		next_pthread_create = (int (*)(pthread_t *, const pthread_attr_t *,
					       void *(*)(void *), void *))dlsym(RTLD_NEXT, "pthread_create");
		ww_in_shim--;
		if (!next_pthread_create)
			return EAGAIN;
	}
	if (ww_in_shim || !ww_ready() || ww.cfg.discovery)
		return next_pthread_create(t, attr, fn, arg);
	uintptr_t frames[WW_MAX_DEPTH];
	int depth = ww_stack_capture(frames, (int)ww.cfg.stack_depth);
	struct thread_start *st = ww_alloc(sizeof *st);
	if (!st)
		return next_pthread_create(t, attr, fn, arg);
	st->fn = fn;
	st->arg = arg;
	st->site = NULL;
	if (ww_enter_hook()) {
		st->site = ww_caller_site_locked(frames, depth);
		ww_leave_hook();
	}
	int rc = next_pthread_create(t, attr, thread_trampoline, st);
	if (rc != 0)
		ww_free(st, sizeof *st);
	return rc;
}
