/* Call sites: a uthash table keyed by the raw stack that created a region, with the statistics
 * a churn hunt needs (mapped, written, written-then-thrown-away), emitted as "site" records. */
#define _GNU_SOURCE
#include "ww.h"

#include <string.h>

static struct ww_site *sites; /* uthash head, keyed by the frames array */
static uint64_t next_site_id;

struct ww_site *ww_site_get(const uintptr_t *frames, int depth)
{
	struct ww_site *s;
	size_t keylen = (size_t)depth * sizeof(uintptr_t);
	if (depth <= 0)
		return NULL;
	HASH_FIND(hh, sites, frames, keylen, s);
	if (s)
		return s;
	s = ww_alloc(sizeof *s + keylen);
	if (!s)
		return NULL; /* the region is simply unattributed */
	s->id = ++next_site_id;
	s->depth = depth;
	memcpy(s->frames, frames, keylen);
	ww_hash_oom = false;
	HASH_ADD_KEYPTR(hh, sites, s->frames, keylen, s);
	if (ww_hash_oom) {
		ww_free(s, sizeof *s + keylen);
		return NULL;
	}
	return s;
}

void ww_site_region_made(struct ww_site *s, uint64_t bytes)
{
	if (!s)
		return;
	s->regions_made++;
	s->regions_live++;
	s->bytes_made += bytes;
	s->bytes_live += bytes;
	if (s->bytes_live > s->bytes_peak)
		s->bytes_peak = s->bytes_live;
	s->dirty = true;
}

void ww_site_region_split(struct ww_site *s)
{
	if (!s)
		return;
	s->regions_made++;
	s->regions_live++;
	s->dirty = true;
}

void ww_site_region_gone(struct ww_site *s, uint64_t bytes, uint64_t written_pages, bool whole)
{
	if (!s)
		return;
	if (whole) {
		s->regions_retired++;
		if (s->regions_live)
			s->regions_live--;
	}
	s->bytes_live = s->bytes_live > bytes ? s->bytes_live - bytes : 0;
	s->churn_pages += written_pages;
	s->churn_pages_iv += written_pages;
	s->dirty = true;
}

void ww_site_resized(struct ww_site *s, int64_t delta)
{
	if (!s)
		return;
	s->bytes_live = (uint64_t)((int64_t)s->bytes_live + delta);
	if (delta > 0)
		s->bytes_made += (uint64_t)delta; /* growth is memory made, as for a new region */
	if (s->bytes_live > s->bytes_peak)
		s->bytes_peak = s->bytes_live;
	s->dirty = true;
}

void ww_site_written(struct ww_site *s, uint64_t pages, uint64_t new_ever)
{
	if (!s || (!pages && !new_ever))
		return;
	s->written_pages_iv += pages;
	s->ever_pages += new_ever;
	s->dirty = true;
}

void ww_site_discarded(struct ww_site *s, uint64_t written_pages)
{
	if (!s || !written_pages)
		return;
	s->churn_pages += written_pages;
	s->churn_pages_iv += written_pages;
	s->dirty = true;
}

void ww_site_malloc(struct ww_site *s, uint64_t bytes)
{
	if (!s)
		return;
	s->mallocs++;
	s->malloc_bytes += bytes;
	s->dirty = true;
}

static void u64_field(struct ww_buf *b, const char *name, uint64_t v)
{
	ww_buf_str(b, ",\"");
	ww_buf_str(b, name);
	ww_buf_str(b, "\":");
	ww_buf_u64(b, v);
}

void ww_sites_emit(struct ww_buf *b, uint64_t seq)
{
	uint64_t ps = 1ull << ww_page_shift;
	for (struct ww_site *s = sites; s; s = s->hh.next) {
		if (!s->dirty)
			continue;
		ww_buf_str(b, "{\"type\":\"site\",\"seq\":");
		ww_buf_u64(b, seq);
		u64_field(b, "id", s->id);
		if (!s->announced) {
			/* The stack is written once, in the first record of the site. */
			ww_buf_str(b, ",\"frames\":[");
			for (int i = 0; i < s->depth; i++) {
				if (i)
					ww_buf_str(b, ",");
				ww_buf_hex(b, s->frames[i]);
			}
			ww_buf_str(b, "]");
		}
		u64_field(b, "regions_live", s->regions_live);
		u64_field(b, "regions_made", s->regions_made);
		u64_field(b, "regions_retired", s->regions_retired);
		u64_field(b, "bytes_live", s->bytes_live);
		u64_field(b, "bytes_peak", s->bytes_peak);
		u64_field(b, "bytes_made", s->bytes_made);
		u64_field(b, "written_bytes", s->written_pages_iv * ps);
		u64_field(b, "ever_written_bytes", s->ever_pages * ps);
		u64_field(b, "churn_bytes", s->churn_pages * ps);
		u64_field(b, "interval_churn_bytes", s->churn_pages_iv * ps);
		u64_field(b, "mallocs", s->mallocs);
		u64_field(b, "malloc_bytes", s->malloc_bytes);
		ww_buf_str(b, "}\n");
		if (!b->oom) {
			s->announced = true;
			s->dirty = false;
			s->written_pages_iv = 0;
			s->churn_pages_iv = 0;
		}
	}
}

void ww_sites_fork_child(void)
{
	/* The child's file starts afresh: what is live stays, made when the child began (so that
	 * retired never exceeds made there), the history is the parent's. */
	for (struct ww_site *s = sites; s; s = s->hh.next) {
		uint64_t live = s->regions_live, bytes = s->bytes_live;
		size_t keep = offsetof(struct ww_site, regions_live);
		memset((char *)s + keep, 0, offsetof(struct ww_site, hh) - keep);
		s->regions_live = s->regions_made = live;
		s->bytes_live = s->bytes_peak = s->bytes_made = bytes;
		s->dirty = live != 0;
		s->announced = false;
	}
}
