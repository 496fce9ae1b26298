/* The exported malloc-family and pthread_create hooks: forward to the allocator behind us and,
 * for blocks glibc served with its own mmap, tell the core (attribution of glibc's mappings).
 * The common case (a small block, never mapped) costs one compare and a tail call. */
#define _GNU_SOURCE
#include "ww.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <string.h>

#define WW_EXPORT __attribute__((visibility("default")))

/* Resolved (or resolving: then the bootstrap arena serves dlsym's own needs). */
static inline bool next_ready(void)
{
	return WW_LIKELY(__atomic_load_n(&ww_malloc_state, __ATOMIC_ACQUIRE) == 1) ||
	       ww_malloc_resolve();
}

/* A new block: if glibc mapped it for us, it is a region with a call site. */
static inline void *made(void *p, size_t n)
{
	uintptr_t start;
	size_t len;
	if (WW_UNLIKELY(p && ww_glibc_chunks && !ww_in_shim && ww_chunk_mapping(p, &start, &len)))
		ww_on_block_made(start, len, n);
	return p;
}

/* The slow paths live in functions of their own so that the fast paths stay a few
 * instructions with no stack frame. */
__attribute__((noinline)) static void *malloc_slow(size_t n)
{
	if (!next_ready())
		return ww_boot_alloc(n, 16);
	return made(ww_next.malloc(n), n);
}

WW_EXPORT void *malloc(size_t n)
{
	if (WW_LIKELY(n < ww_mmap_floor)) /* glibc never maps a block this small itself */
		return ww_next.malloc(n);
	return malloc_slow(n);
}

__attribute__((noinline)) static void *calloc_slow(size_t k, size_t n, size_t total)
{
	if (!next_ready())
		return total == SIZE_MAX ? NULL : ww_boot_alloc(total, 16); /* static: already zero */
	return made(ww_next.calloc(k, n), total);
}

WW_EXPORT void *calloc(size_t k, size_t n)
{
	size_t total;
	if (__builtin_mul_overflow(k, n, &total))
		total = SIZE_MAX; /* the allocator behind us reports the overflow */
	if (WW_LIKELY(total < ww_mmap_floor))
		return ww_next.calloc(k, n);
	return calloc_slow(k, n, total);
}

__attribute__((noinline)) static void free_slow(void *p)
{
	uintptr_t start;
	size_t len;
	if (!p || WW_UNLIKELY(ww_boot_owns(p)))
		return;
	if (!next_ready())
		return;
	if (WW_UNLIKELY(ww_glibc_chunks && !ww_in_shim && ww_chunk_mapping(p, &start, &len))) {
		ww_block_free(p, start, len); /* harvests, then frees through ww_next.free */
		return;
	}
	ww_next.free(p);
}

WW_EXPORT void free(void *p)
{
	/* With glibc behind us the chunk header says whether the block is a mapping of its own;
	 * bootstrap blocks carry the same bit, so they take the slow path too. */
	if (WW_LIKELY(ww_glibc_chunks) && p && WW_LIKELY(!ww_chunk_maybe_mapped(p)))
		return ww_next.free(p);
	free_slow(p);
}

__attribute__((noinline)) static void *realloc_slow(void *p, size_t n)
{
	uintptr_t start;
	size_t len;
	if (p && WW_UNLIKELY(ww_boot_owns(p))) {
		void *q = malloc(n);
		size_t old = ww_boot_size(p);
		if (q)
			memcpy(q, p, old < n ? old : n);
		return q;
	}
	if (!next_ready())
		return ww_boot_alloc(n, 16);
	if (p && WW_UNLIKELY(ww_glibc_chunks && !ww_in_shim && ww_chunk_mapping(p, &start, &len)))
		return ww_block_realloc(p, start, len, n);
	return made(ww_next.realloc(p, n), n);
}

WW_EXPORT void *realloc(void *p, size_t n)
{
	if (WW_LIKELY(ww_glibc_chunks) && p && n < ww_mmap_floor && !ww_chunk_maybe_mapped(p))
		return ww_next.realloc(p, n); /* a heap block staying small */
	return realloc_slow(p, n);
}

WW_EXPORT void *memalign(size_t align, size_t n)
{
	if (!next_ready())
		return ww_boot_alloc(n, align);
	return made(ww_next.memalign(align, n), n);
}

WW_EXPORT void *aligned_alloc(size_t align, size_t n)
{
	if (!next_ready())
		return ww_boot_alloc(n, align);
	return made(ww_next.aligned_alloc(align, n), n);
}

WW_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	if (!next_ready()) {
		*out = ww_boot_alloc(n, align);
		return *out ? 0 : ENOMEM;
	}
	int rc = ww_next.posix_memalign(out, align, n);
	if (rc == 0)
		made(*out, n);
	return rc;
}

WW_EXPORT void *valloc(size_t n)
{
	if (!next_ready())
		return ww_boot_alloc(n, 4096);
	return made(ww_next.valloc(n), n);
}

WW_EXPORT void *pvalloc(size_t n)
{
	if (!next_ready())
		return ww_boot_alloc((n + 4095) & ~(size_t)4095, 4096);
	return made(ww_next.pvalloc(n), n);
}

/* A lower mmap threshold lets glibc map smaller blocks: follow it. */
WW_EXPORT int mallopt(int param, int value)
{
	if (!next_ready())
		return 0;
	int rc = ww_next.mallopt(param, value);
	if (rc == 1 && param == M_MMAP_THRESHOLD)
		ww_malloc_threshold(value);
	return rc;
}

/* ---- threads: learn each new thread's stack, attributed to the pthread_create caller ---- */

WW_EXPORT int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
			     void *arg)
{
	return ww_thread_create(t, attr, fn, arg);
}
