/* The exported malloc-family and pthread_create hooks: forward to the allocator behind us and,
 * for blocks glibc served with its own mmap, tell the core (attribution of glibc's mappings). */
#define _GNU_SOURCE
#include "ww.h"

#include <errno.h>
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

WW_EXPORT void *malloc(size_t n)
{
	if (!next_ready())
		return ww_boot_alloc(n, 16);
	return made(ww_next.malloc(n), n);
}

WW_EXPORT void *calloc(size_t k, size_t n)
{
	if (!next_ready()) {
		size_t total;
		if (__builtin_mul_overflow(k, n, &total))
			return NULL;
		return ww_boot_alloc(total, 16); /* static memory: already zero */
	}
	return made(ww_next.calloc(k, n), k * n);
}

WW_EXPORT void free(void *p)
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

WW_EXPORT void *realloc(void *p, size_t n)
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

/* ---- threads: learn each new thread's stack, attributed to the pthread_create caller ---- */

WW_EXPORT int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
			     void *arg)
{
	return ww_thread_create(t, attr, fn, arg);
}
