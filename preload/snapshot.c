/* Snapshots: reconcile the region table with /proc/self/maps, scan every region with
 * PAGEMAP_SCAN (re-arming what was written), and write the snapshot and region records. */
#define _GNU_SOURCE
#include "ww.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* ---- reading the VMAs ---- */

/* An array a growth replaced, kept (linked through its own first bytes) until the read ends. */
struct retired_array {
	struct retired_array *next;
	size_t bytes;
};

struct vma_list {
	struct ww_vma *v;
	size_t n, cap;
	struct ww_vma prev; /* the previous line, for the thread-stack guess */
	bool have_prev;
	bool oom;
	struct retired_array *retired;
};

static struct vma_list vmas; /* reused between snapshots; lock held */

static bool vma_push(struct vma_list *l, const struct ww_vma *v)
{
	/* /proc/self/maps is read in several chunks, each resuming at the end of the last line
	 * shown: a mapping that changed in between (grown, merged) is shown again, overlapping the
	 * lines before it (seen under the stress test: a region made twice at one address). The
	 * later line is the fresher: the older ones give way. */
	while (l->n > 0 && l->v[l->n - 1].end > v->start) {
		struct ww_vma *last = &l->v[l->n - 1];
		if (last->start < v->start) {
			last->end = v->start;
			break;
		}
		l->n--;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct ww_vma *nv = ww_alloc(cap * sizeof *nv);
		if (!nv) {
			l->oom = true;
			return false;
		}
		if (l->v) {
			/* Not freed yet: a large array is unmapped by ww_free, and its line may already
			 * sit in the maps buffer, unparsed; parsed after the unmap it would no longer be
			 * our memory and would be taken for the program's. */
			memcpy(nv, l->v, l->n * sizeof *nv);
			struct retired_array *old = (struct retired_array *)l->v;
			old->bytes = l->cap * sizeof *nv;
			old->next = l->retired;
			l->retired = old;
		}
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = *v;
	return true;
}

/* glibc puts a thread's guard (a small PROT_NONE mapping) right below its stack. */
static bool looks_like_thread_stack(const struct vma_list *l, const struct ww_vma *v)
{
	return l->have_prev && l->prev.end == v->start && l->prev.priv_anon && l->prev.prot == 0 &&
	       l->prev.end - l->prev.start <= (1u << 20) && v->kind == WW_KIND_ANON &&
	       (v->prot & PROT_WRITE);
}

static int on_vma(void *ctx, const struct ww_vma *v)
{
	struct vma_list *l = ctx;
	if (v->priv_anon) {
		struct ww_vma piece = *v;
		if (looks_like_thread_stack(l, v))
			piece.kind = WW_KIND_THREAD_STACK;
		/* Subtract the shim's own memory, which may share a VMA with the program's. */
		uintptr_t os, oe;
		while (piece.start < piece.end && ww_own_overlap(piece.start, piece.end, &os, &oe)) {
			if (os > piece.start) {
				struct ww_vma low = piece;
				low.end = os;
				vma_push(l, &low);
			}
			piece.start = oe;
		}
		if (piece.start < piece.end)
			vma_push(l, &piece);
	}
	l->prev = *v;
	l->have_prev = true;
	return 0;
}

/* glibc's thread arenas are 64 MiB-aligned reservations (HEAP_MAX_SIZE) made writable from
 * the bottom: a writable VMA at such a boundary followed by the PROT_NONE rest of the 64 MiB. */
#define WW_ARENA_SIZE (64ul << 20)

static void label_arenas(void)
{
	for (size_t i = 0; i + 1 < vmas.n; i++) {
		struct ww_vma *v = &vmas.v[i], *next = &vmas.v[i + 1];
		if (v->kind == WW_KIND_ANON && (v->prot & PROT_WRITE) && v->start % WW_ARENA_SIZE == 0 &&
		    next->start == v->end && next->prot == 0 && next->end == v->start + WW_ARENA_SIZE)
			v->kind = WW_KIND_ARENA;
	}
}

static int read_vmas(void)
{
	vmas.n = 0;
	vmas.have_prev = false;
	vmas.oom = false;
	int rc = ww_maps_each(on_vma, &vmas);
	while (vmas.retired) {
		struct retired_array *r = vmas.retired;
		vmas.retired = r->next;
		ww_free(r, r->bytes);
	}
	label_arenas();
	return rc;
}

/* Index of the first VMA with end > addr. */
static size_t vma_lower(uintptr_t addr)
{
	size_t lo = 0, hi = vmas.n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (vmas.v[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* ---- reconcile ---- */

struct range {
	uintptr_t start, end;
};

struct range_list {
	struct range *v;
	size_t n, cap;
};

static void range_push(struct range_list *l, uintptr_t s, uintptr_t e)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct range *nv = ww_alloc(cap * sizeof *nv);
		if (!nv)
			return; /* the region stays; the next reconcile retries */
		if (l->v) {
			memcpy(nv, l->v, l->n * sizeof *nv);
			ww_free(l->v, l->cap * sizeof *nv);
		}
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = (struct range){s, e};
}

static struct range_list gone;

/* Regions (or parts) no longer backed by private anonymous memory: unmapped or replaced by
 * calls we did not see (glibc's internal munmap/mremap, raw syscalls). Their last writes are
 * unknown; they are counted as retired. Also refreshes each region's prot. */
static void find_gone(void)
{
	struct ww_region *r;
	gone.n = 0;
	for (r = ww.table.regions; r; r = r->hh.next) {
		uintptr_t at = r->start;
		uint8_t prot = 0;
		for (size_t i = vma_lower(r->start); i < vmas.n && vmas.v[i].start < r->end; i++) {
			if (vmas.v[i].start > at)
				range_push(&gone, at, vmas.v[i].start);
			prot |= vmas.v[i].prot;
			at = vmas.v[i].end;
		}
		if (at < r->end)
			range_push(&gone, at, r->end);
		r->prot = prot;
	}
	/* Each gone range lies inside one region: a whole region or a part of one, and a part
	 * counts as one retired region, as for a hooked munmap (docs/format.md). */
	for (size_t i = 0; i < gone.n; i++) {
		uint64_t bytes = ww_rt_cut(&ww.table, gone.v[i].start, gone.v[i].end, true);
		if (bytes) {
			ww.table.iv.retired_regions++;
			ww.table.iv.retired_bytes += bytes;
		}
	}
}

/* A hooked mmap handed memory the table still held, unmapped behind the hooks' back since the
 * last reconcile (see ww_on_mmap): find_gone cannot tell, the memory being mapped again, so the
 * two regions overlap, and the older one is stale there. Ids only grow, and a move cuts its
 * destination itself: the newer region has the larger id. The stale part goes, retired; the page
 * bits there are the newer region's (the hook cleared the stale ones). */
static void drop_stale(void)
{
	struct ww_region *r, *q;
restart:
	for (r = ww.table.regions; r && (q = r->hh.next); r = q) {
		if (q->start >= r->end)
			continue;
		struct ww_region *old = r->id < q->id ? r : q, *young = old == r ? q : r;
		/* Harvests meanwhile may have credited either region with the overlap's pages. */
		if (old->flags & WW_RF_PENDING)
			young->flags |= WW_RF_PENDING;
		uint64_t bytes = ww_rt_forget(&ww.table, old, young->start, young->end);
		ww_rt_recount(&ww.table, young);
		ww.table.iv.retired_regions++;
		ww.table.iv.retired_bytes += bytes;
		ww_rt_sort(&ww.table);
		goto restart;
	}
}

/* The regions in address order as of the last reconcile, for ww_forget_stale: those found in
 * the maps are the ones glibc unmaps behind the hooks' back. */
struct known {
	uintptr_t start, end;
	uint64_t id;
};
static struct known *known;
static size_t nknown, known_cap;

static void index_known(void)
{
	size_t n = HASH_COUNT(ww.table.regions);
	nknown = 0;
	if (n > known_cap) {
		size_t cap = n + n / 2 + 64;
		struct known *k = ww_alloc(cap * sizeof *k);
		if (!k)
			return; /* no index: drop_stale still catches them, a snapshot later */
		ww_free(known, known_cap * sizeof *known);
		known = k;
		known_cap = cap;
	}
	for (struct ww_region *r = ww.table.regions; r; r = r->hh.next) /* sorted */
		known[nknown++] = (struct known){r->start, r->end, r->id};
}

void ww_forget_stale(uintptr_t start, uintptr_t end)
{
	size_t lo = 0, hi = nknown;
	while (lo < hi) { /* the first known region ending after start */
		size_t mid = (lo + hi) / 2;
		if (known[mid].end <= start)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < nknown && known[i].start < end; i++) {
		/* Still there as it was (one that moved or split since is drop_stale's). */
		struct ww_region *r = ww_rt_find(&ww.table, known[i].start);
		if (!r || r->id != known[i].id)
			continue;
		uint64_t bytes = ww_rt_forget(&ww.table, r, start, end);
		if (bytes) {
			ww.table.iv.retired_regions++;
			ww.table.iv.retired_bytes += bytes;
		}
	}
}

static uint64_t untracked_bytes; /* this snapshot: regions the kernel would not register */
static int warned_register;

void ww_track_register(struct ww_region *r)
{
	int rc = ww_kern_register(&ww.kern, r->start, r->end);
	if (rc == 0) {
		r->flags |= WW_RF_REGISTERED;
		return;
	}
	/* Unmapped since we saw it, behind the hooks' back (glibc's own munmap, a raw syscall, a
	 * signal handler's call that passed through): nothing to watch, and the next reconcile
	 * retires the region. The kernel then says EINVAL or ENOMEM. Memory mapped there again
	 * behind our back between the two calls (another thread's, unlocked) is registered by
	 * trying once more: its pages are then read as fresh memory. */
	if (rc != -EBUSY && !ww_kern_mapped(&ww.kern, r->start, r->end))
		return;
	if (rc != -EBUSY && ww_kern_register(&ww.kern, r->start, r->end) == 0) {
		r->flags |= WW_RF_REGISTERED;
		return;
	}
	ww_warn_once(warned_register, "cannot watch %lx-%lx: %s%s; such memory is counted as "
				      "untracked_bytes",
		     (unsigned long)r->start, (unsigned long)r->end, ww_strerror(rc),
		     rc == -EBUSY ? " (the program registered its own userfaultfd there)" : "");
}

/* A region that can grow into a gap right after it (the brk heap, discovered memory). */
static struct ww_region *extendable_before(uintptr_t gap_start, const struct ww_vma *v)
{
	struct ww_region *r;
	for (r = ww.table.regions; r; r = r->hh.next) /* sorted walk; called rarely */
		if (r->end == gap_start)
			break;
	/* The heap grows by new VMAs next to the registered one; other memory only within its VMA. */
	if (r && r->kind != WW_KIND_MMAP && r->kind == v->kind &&
	    (r->start >= v->start || r->kind == WW_KIND_HEAP))
		return r;
	return NULL;
}

struct gap_ctx {
	const struct ww_vma *vma;
};

static void on_gap(void *ctx, uintptr_t s, uintptr_t e)
{
	const struct ww_vma *v = ((struct gap_ctx *)ctx)->vma;
	if (ww_claimed(s, e))
		return; /* the program's own userfaultfd holds it */
	struct ww_region *r = extendable_before(s, v);
	if (r) {
		r->end = e;
		int rc = ww_kern_register(&ww.kern, s, e);
		(void)rc;
		return;
	}
	/* The main stack grows down: extend it at its low end. */
	struct ww_region *up = ww_rt_find(&ww.table, e);
	if (up && up->kind == WW_KIND_STACK && v->kind == WW_KIND_STACK) {
		uintptr_t old = up->start;
		HASH_DEL(ww.table.regions, up);
		up->start = s;
		ww_hash_oom = false;
		HASH_ADD(hh, ww.table.regions, start, sizeof up->start, up);
		ww.table.sorted = false;
		if (!ww_hash_oom)
			(void)ww_kern_register(&ww.kern, s, old);
		return;
	}
	r = ww_rt_add(&ww.table, s, e, v->kind, v->prot, v->name, NULL);
	if (!r)
		return;
	ww.table.iv.new_regions++;
	ww_track_register(r);
}

void ww_reconcile_locked(void)
{
	if (read_vmas() < 0)
		return;
	ww_rt_sort(&ww.table);
	find_gone();
	ww_rt_sort(&ww.table);
	drop_stale();
	/* New memory: the writable parts of VMAs no region covers. Walk VMAs and sorted regions
	 * together; gaps are collected first because adding regions reorders the list. */
	static struct range_list gaps;
	gaps.n = 0;
	struct ww_region *r = ww.table.regions;
	for (size_t i = 0; i < vmas.n; i++) {
		const struct ww_vma *v = &vmas.v[i];
		if (!(v->prot & PROT_WRITE))
			continue;
		while (r && r->end <= v->start)
			r = r->hh.next;
		uintptr_t at = v->start;
		for (struct ww_region *q = r; q && q->start < v->end; q = q->hh.next) {
			if (q->start > at)
				range_push(&gaps, at, q->start);
			if (q->end > at)
				at = q->end;
		}
		if (at < v->end)
			range_push(&gaps, at, v->end);
	}
	for (size_t g = 0; g < gaps.n; g++) {
		size_t i = vma_lower(gaps.v[g].start);
		if (i >= vmas.n)
			continue;
		struct gap_ctx ctx = {&vmas.v[i]};
		on_gap(&ctx, gaps.v[g].start, gaps.v[g].end);
	}
	ww_rt_sort(&ww.table);
	index_known();
}

/* ---- scanning and records ---- */

struct emit {
	struct ww_region *r;
	struct ww_buf *buf;
	uint64_t pages;     /* written this interval */
	uint64_t new_ever;
	uint64_t run_start, run_len;
	bool to_pending;    /* collect into the pending set instead of emitting */
	bool ranges;
};

static void flush_run(struct emit *e)
{
	if (!e->run_len)
		return;
	if (e->ranges) { /* one append per run: ",[start,len]" formatted right to left */
		char t[48], *q = t + sizeof t;
		uint64_t v = e->run_len;
		*--q = ']';
		do
			*--q = (char)('0' + v % 10);
		while (v /= 10);
		*--q = ',';
		v = e->run_start;
		do
			*--q = (char)('0' + v % 10);
		while (v /= 10);
		*--q = '[';
		if (e->pages != e->run_len)
			*--q = ',';
		ww_buf_put(e->buf, q, (size_t)(t + sizeof t - q));
	}
	e->run_len = 0;
}

static void emit_run(struct emit *e, uint64_t first, uint64_t n)
{
	uint64_t rel = first - WW_PAGE(e->r->start);
	if (e->run_len && e->run_start + e->run_len == rel) {
		e->run_len += n;
		e->pages += n;
		return;
	}
	flush_run(e);
	e->run_start = rel;
	e->run_len = n;
	e->pages += n;
}

static void on_scan_run(void *ctx, uint64_t first, uint64_t n)
{
	struct emit *e = ctx;
	e->new_ever += ww_ps_set(&ww.table.ever, first, n);
	ww_ps_set(&ww.table.live, first, n);
	if (e->to_pending)
		ww_ps_set(&ww.table.pending, first, n);
	else
		emit_run(e, first, n);
}

static void on_pending_run(void *ctx, uint64_t first, uint64_t n)
{
	emit_run(ctx, first, n);
}

static void region_head(struct ww_buf *b, const struct ww_region *r)
{
	char prot[4] = {r->prot & PROT_READ ? 'r' : '-', r->prot & PROT_WRITE ? 'w' : '-',
			r->prot & PROT_EXEC ? 'x' : '-', 0};
	ww_buf_str(b, "{\"type\":\"region\",\"seq\":");
	ww_buf_u64(b, ww.seq);
	ww_buf_str(b, ",\"id\":");
	ww_buf_u64(b, r->id);
	ww_buf_str(b, ",\"start\":");
	ww_buf_hex(b, r->start);
	ww_buf_str(b, ",\"end\":");
	ww_buf_hex(b, r->end);
	ww_buf_str(b, ",\"prot\":\"");
	ww_buf_str(b, prot);
	ww_buf_str(b, "\",\"kind\":\"");
	ww_buf_str(b, ww_kind_name(r->kind));
	ww_buf_str(b, "\",\"name\":");
	ww_buf_json_str(b, r->name);
	ww_buf_str(b, ",\"new\":");
	ww_buf_str(b, r->flags & WW_RF_NEW ? "true" : "false");
	if (r->site) {
		ww_buf_str(b, ",\"site\":");
		ww_buf_u64(b, r->site->id);
	}
}

/* Scan one region and append its record to b if it has something to say. Returns the pages
 * written in this interval. */
static uint64_t scan_region(struct ww_region *r, struct ww_buf *b)
{
	size_t mark = b->len;
	struct emit e = {.r = r, .buf = b, .ranges = ww.cfg.ranges};
	bool lost = false;

	if ((r->flags & WW_RF_LOST) ||
	    ((r->flags & WW_RF_REGISTERED) && ww_kern_unregistered(&ww.kern, r->start, r->end))) {
		/* Registration vanished (our userfaultfd closed, or the mapping replaced behind
		 * our back): every page would read as written. Re-arm and say "unknown". */
		lost = true;
		r->flags &= (uint8_t)~(WW_RF_REGISTERED | WW_RF_LOST);
	}
	if (!(r->flags & WW_RF_REGISTERED)) {
		ww_track_register(r);
		if (lost && (r->flags & WW_RF_REGISTERED))
			ww_kern_scan(&ww.kern, r->start, r->end, WW_SCAN_DISCARD, NULL, NULL);
		if (!(r->flags & WW_RF_REGISTERED)) {
			if (!ww_kern_mapped(&ww.kern, r->start, r->end))
				return 0; /* gone (see ww_track_register): nothing to say */
			untracked_bytes += r->end - r->start; /* unknown, not "nothing written" */
		}
	}
	region_head(b, r);
	if (lost) {
		ww.table.iv.lost_regions++;
		ww_buf_str(b, ww.cfg.ranges ? ",\"ranges\":[],\"written_pages\":0" : ",\"written_pages\":0");
		ww_buf_str(b, ",\"ever_written_pages\":");
		ww_buf_u64(b, r->ever_pages);
		ww_buf_str(b, ",\"lost\":true}\n");
		r->flags &= (uint8_t)~(WW_RF_NEW | WW_RF_PENDING);
		ww_ps_clear(&ww.table.pending, WW_PAGE(r->start), WW_PAGE(r->end - r->start));
		return 0;
	}
	if (ww.cfg.ranges)
		ww_buf_str(b, ",\"ranges\":[");

	if (r->flags & WW_RF_REGISTERED) {
		e.to_pending = (r->flags & WW_RF_PENDING) != 0;
		long rc = ww_kern_scan(&ww.kern, r->start, r->end, WW_SCAN_REARM, on_scan_run, &e);
		if (rc < 0) {
			/* The runs read before the error stand; the rest of the region is unknown. */
			static int warned_scan;
			ww_warn_once(warned_scan, "PAGEMAP_SCAN of %lx-%lx failed: %s; such memory is "
						  "counted as untracked_bytes",
				     (unsigned long)r->start, (unsigned long)r->end,
				     ww_strerror((int)rc));
			untracked_bytes += r->end - r->start;
		}
	}
	if (r->flags & WW_RF_PENDING) {
		uint64_t p = WW_PAGE(r->start), n = WW_PAGE(r->end - r->start);
		ww_ps_runs(&ww.table.pending, p, n, on_pending_run, &e);
		ww_ps_clear(&ww.table.pending, p, n);
		r->flags &= (uint8_t)~WW_RF_PENDING;
	}
	flush_run(&e);
	r->ever_pages += e.new_ever;
	ww_site_written(r->site, e.pages, e.new_ever);
	bool was_new = r->flags & WW_RF_NEW;
	r->flags &= (uint8_t)~WW_RF_NEW;
	if (e.pages == 0 || b->oom) {
		b->len = mark; /* nothing to say: drop the record */
		if (e.pages == 0 && was_new)
			r->flags |= WW_RF_NEW; /* still unreported: keep "new" for its first record */
		return e.pages;
	}
	ww_buf_str(b, ww.cfg.ranges ? "],\"written_pages\":" : ",\"written_pages\":");
	ww_buf_u64(b, e.pages);
	ww_buf_str(b, ",\"ever_written_pages\":");
	ww_buf_u64(b, r->ever_pages);
	ww_buf_str(b, "}\n");
	return e.pages;
}

static const char *trigger_name(enum ww_trigger t)
{
	switch (t) {
	case WW_TRIG_API: return "api";
	case WW_TRIG_SIGNAL: return "signal";
	case WW_TRIG_INTERVAL: return "interval";
	case WW_TRIG_EXIT: return "exit";
	case WW_TRIG_EXEC: return "exec";
	}
	return "api";
}

static void field(struct ww_buf *b, const char *name, uint64_t v)
{
	ww_buf_str(b, ",\"");
	ww_buf_str(b, name);
	ww_buf_str(b, "\":");
	ww_buf_u64(b, v);
}

/* KSM: when the kernel merges identical pages it maps the shared copy without the write-protect
 * marker, so merged pages read as written in the interval they are merged in (unmerging keeps
 * the marker). Where the process has mergeable memory (MADV_MERGEABLE, PR_SET_MEMORY_MERGE,
 * systemd's MemoryKSM=), say how many of its pages are merged, from /proc/self/ksm_stat, so
 * such figures can be told apart. -1: not mergeable, or no KSM in this kernel. */
static long ksm_merging_pages(void)
{
	static bool absent;
	char buf[512];
	if (absent)
		return -1;
	ssize_t n = ww_read_file("/proc/self/ksm_stat", buf, sizeof buf - 1);
	absent = n == -ENOENT;
	if (n <= 0)
		return -1;
	buf[n] = 0;
	long pages = -1;
	bool mergeable = false;
	for (char *l = buf; *l;) {
		char *nl = strchr(l, '\n');
		if (nl)
			*nl = 0;
		if (!strncmp(l, "ksm_merging_pages ", 18))
			for (const char *d = l + 18, *d0 = d; *d >= '0' && *d <= '9'; d++)
				pages = (d == d0 ? 0 : pages * 10) + (*d - '0');
		else if ((!strncmp(l, "ksm_mergeable", 13) || !strncmp(l, "ksm_merge_any", 13)) &&
			 strstr(l, "yes"))
			mergeable = true;
		if (!nl)
			break;
		l = nl + 1;
	}
	return mergeable || pages > 0 ? pages : -1;
}

int ww_snapshot_locked(enum ww_trigger trig, const char *label)
{
	static struct ww_buf regions_buf, head;
	if (!ww.tracking || ww.out.failed)
		return -ENOSYS;
	uint64_t t_start = ww_now_ns(CLOCK_MONOTONIC);
	int bad = ww_kern_check(&ww.kern);
	if (bad)
		ww_kern_recover(bad);
	ww_reconcile_locked();
	ww.seq++;
	untracked_bytes = ww_claimed_bytes();
	regions_buf.len = 0;
	regions_buf.oom = false;
	uint64_t written = 0, tracked = 0, ever = 0, nregions = 0;
	ww_rt_sort(&ww.table);
	for (struct ww_region *r = ww.table.regions; r; r = r->hh.next) {
		written += scan_region(r, &regions_buf);
		tracked += r->end - r->start;
		ever += r->ever_pages;
		nregions++;
	}
	uint64_t ps = 1ull << ww_page_shift;
	struct ww_interval *iv = &ww.table.iv;
	head.len = 0;
	head.oom = false;
	ww_buf_str(&head, "{\"type\":\"snapshot\",\"seq\":");
	ww_buf_u64(&head, ww.seq);
	ww_buf_str(&head, ",\"trigger\":\"");
	ww_buf_str(&head, trigger_name(trig));
	ww_buf_str(&head, "\",\"label\":");
	ww_buf_json_str(&head, label);
	field(&head, "t_ns", t_start - ww.t0_ns);
	field(&head, "tracked_regions", nregions);
	field(&head, "tracked_bytes", tracked);
	field(&head, "written_pages", written);
	field(&head, "written_bytes", written * ps);
	field(&head, "ever_written_bytes", ever * ps);
	field(&head, "new_regions", iv->new_regions);
	field(&head, "retired_regions", iv->retired_regions);
	field(&head, "retired_bytes", iv->retired_bytes);
	field(&head, "retired_written_bytes", iv->retired_written_pages * ps);
	field(&head, "discarded_bytes", iv->discarded_bytes);
	field(&head, "churn_bytes", iv->churn_pages * ps);
	field(&head, "lost_regions", iv->lost_regions);
	field(&head, "untracked_bytes", untracked_bytes);
	field(&head, "untracked_regions", ww.table.oom_untracked);
	field(&head, "unseen_calls", __atomic_exchange_n(&ww_unseen_calls, 0, __ATOMIC_RELAXED));
	long ksm = ksm_merging_pages();
	if (ksm >= 0)
		field(&head, "ksm_merging_pages", (uint64_t)ksm);
	field(&head, "scan_ns", ww_now_ns(CLOCK_MONOTONIC) - t_start);
	ww_buf_str(&head, "}\n");
	memset(iv, 0, sizeof *iv);
	if (head.oom || regions_buf.oom) {
		ww_warn("out of memory while formatting snapshot %lu; snapshots stop here",
			(unsigned long)ww.seq);
		ww.out.failed = true;
		return -ENOMEM;
	}
	ww_modules_take(&head); /* described before any site refers to them */
	ww_buf_put(&head, regions_buf.data ? regions_buf.data : "", regions_buf.len);
	ww_sites_emit(&head, ww.seq);
	if (head.oom)
		return -ENOMEM;
	return ww_out_write(&ww.out, head.data, head.len);
}
