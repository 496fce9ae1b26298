/* glibc's malloc, seen from outside: the malloc family is interposed only to learn which blocks
 * glibc served with its own (unhookable) mmap, read from the chunk header's IS_MMAPPED bit. Any
 * other allocator behind us is passed through untouched. */
#define _GNU_SOURCE
#include "ww.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ww_next_alloc ww_next;
size_t ww_mmap_floor; /* requests below this are never mapped by glibc (0: not resolved) */
int ww_malloc_state;   /* 0 unresolved, -1 resolving (dlsym may allocate), 1 resolved */
bool ww_glibc_chunks;  /* the allocator behind us is glibc's and its chunk layout checked out */

/* glibc's chunk: prev_size, size|flags, then the user block. An mmapped chunk's mapping starts
 * prev_size bytes before the chunk (alignment padding) and is prev_size + size long. */
#define WW_IS_MMAPPED 0x2

/* dlsym's own allocations while we resolve come from here; they are never freed. */
static char boot[64 * 1024] __attribute__((aligned(64)));
static size_t boot_used;

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern int __libc_mallopt(int, int);

/* glibc has no __libc_ names for these two. */
static int libc_posix_memalign(void **out, size_t align, size_t n)
{
	if (align < sizeof(void *) || (align & (align - 1)))
		return EINVAL;
	void *p = __libc_memalign(align, n);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

static void *libc_aligned_alloc(size_t align, size_t n)
{
	return __libc_memalign(align, n);
}

static const struct ww_next_alloc libc_alloc = {
	__libc_malloc,	   __libc_free,		 __libc_calloc,	 __libc_realloc, __libc_memalign,
	libc_posix_memalign, libc_aligned_alloc, __libc_valloc, __libc_pvalloc, __libc_mallopt,
};

void *ww_boot_alloc(size_t n, size_t align)
{
	if (align < 16)
		align = 16;
	size_t hdr = align; /* the size sits just before the block, for realloc */
	size_t at = __atomic_load_n(&boot_used, __ATOMIC_RELAXED), start, end;
	do {
		start = (at + hdr + align - 1) & ~(align - 1);
		end = start + n;
		if (end > sizeof boot)
			return NULL;
	} while (!__atomic_compare_exchange_n(&boot_used, &at, end, true, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	/* The size, shifted past a set IS_MMAPPED bit: free's fast path then never takes a
	 * bootstrap block for a glibc heap chunk. */
	((size_t *)(boot + start))[-1] = (n << 3) | WW_IS_MMAPPED;
	return boot + start;
}

bool ww_boot_owns(const void *p)
{
	return (const char *)p >= boot && (const char *)p < boot + sizeof boot;
}

size_t ww_boot_size(const void *p)
{
	return ((const size_t *)p)[-1] >> 3;
}

bool ww_chunk_mapping(const void *p, uintptr_t *start, size_t *len)
{
	const size_t *h = (const size_t *)p;
	size_t size = h[-1];
	if (!(size & WW_IS_MMAPPED))
		return false;
	size_t pad = h[-2];
	*start = (uintptr_t)p - 2 * sizeof(size_t) - pad;
	*len = (size & ~(size_t)7) + pad;
	return true;
}

/* The layout check: a block far above any mmap threshold must come back mmapped, page aligned,
 * and large enough, or we do not trust our reading of glibc's headers. */
static bool chunks_check_out(void)
{
	const size_t n = 64u << 20; /* above glibc's largest dynamic threshold (32 MiB) */
	void *p = ww_next.malloc(n);
	uintptr_t start;
	size_t len;
	bool ok = p && ww_chunk_mapping(p, &start, &len) && (start & 4095) == 0 &&
		  (len & 4095) == 0 && len >= n && start + len >= (uintptr_t)p + n;
	if (p)
		ww_next.free(p);
	return ok;
}

bool ww_malloc_resolve(void)
{
	int expected = 0;
	if (!__atomic_compare_exchange_n(&ww_malloc_state, &expected, -1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return __atomic_load_n(&ww_malloc_state, __ATOMIC_ACQUIRE) == 1;
	struct ww_next_alloc n;
	n.malloc = dlsym(RTLD_NEXT, "malloc");
	n.free = dlsym(RTLD_NEXT, "free");
	n.calloc = dlsym(RTLD_NEXT, "calloc");
	n.realloc = dlsym(RTLD_NEXT, "realloc");
	n.memalign = dlsym(RTLD_NEXT, "memalign");
	n.posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
	n.aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
	n.valloc = dlsym(RTLD_NEXT, "valloc");
	n.pvalloc = dlsym(RTLD_NEXT, "pvalloc");
	n.mallopt = dlsym(RTLD_NEXT, "mallopt");
	if (!n.malloc || !n.free || !n.calloc || !n.realloc) {
		/* Nothing behind us (libc itself first in LD_PRELOAD, say): glibc's own, all of it,
		 * so that blocks always go back to the allocator that made them. */
		n = libc_alloc;
	} else {
		/* An allocator behind us without the rarer calls: glibc's for those. */
		void (**slot)(void) = (void (**)(void))&n;
		void (*const *def)(void) = (void (*const *)(void))&libc_alloc;
		for (size_t i = 0; i < sizeof n / sizeof slot[0]; i++)
			if (!slot[i])
				slot[i] = def[i];
	}
	ww_next = n;
	__atomic_store_n(&ww_malloc_state, 1, __ATOMIC_RELEASE);
	return true;
}

/* glibc's smallest mmap threshold is 128 KiB unless a tunable or mallopt lowers it; a request
 * n is compared as (n + 8) rounded up to 16, so stay well below. */
#define WW_DEFAULT_THRESHOLD (128u * 1024)

void ww_malloc_threshold(long value)
{
	size_t floor = value > 64 ? (size_t)value - 64 : 0;
	if (floor < ww_mmap_floor)
		__atomic_store_n(&ww_mmap_floor, floor, __ATOMIC_RELEASE);
}

static long tunable_threshold(void)
{
	/* GLIBC_TUNABLES=glibc.malloc.mmap_threshold=N:... */
	const char *t = getenv("GLIBC_TUNABLES");
	const char *key = "glibc.malloc.mmap_threshold=";
	const char *at = t ? strstr(t, key) : NULL;
	if (!at)
		return -1;
	long v = 0;
	for (at += strlen(key); *at >= '0' && *at <= '9'; at++)
		v = v * 10 + (*at - '0');
	return v;
}

void ww_malloc_configure(bool want)
{
	/* Only glibc's own malloc has the headers we read; another allocator behind us is left
	 * alone, and its memory is found through the mmap hook or /proc/self/maps. */
	ww_glibc_chunks = want && ww_next.malloc == __libc_malloc && chunks_check_out();
	if (!ww_glibc_chunks)
		return; /* every call takes the slow path, which checks nothing glibc-specific */
	ww_mmap_floor = WW_DEFAULT_THRESHOLD - 64;
	long t = tunable_threshold();
	if (t >= 0)
		ww_malloc_threshold(t);
}
