/* The shim's own memory: size classes carved from 1 MiB arenas mapped with raw mmap, large blocks
 * mapped directly. It never calls malloc, and it remembers every mapping so scans skip it. */
#define _GNU_SOURCE
#include "ww.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define WW_ARENA_SIZE (1u << 20)
#define WW_MIN_SHIFT 4   /* 16-byte blocks */
#define WW_MAX_SHIFT 16  /* blocks above 64 KiB get their own mapping */
#define WW_NCLASS (WW_MAX_SHIFT - WW_MIN_SHIFT + 1)
#define WW_MAX_OWN 4096

struct ww_own {
	uintptr_t start, end;
};

struct ww_free_block {
	struct ww_free_block *next;
};

static struct {
	int lock;
	struct ww_free_block *free[WW_NCLASS];
	char *bump, *bump_end;
	struct ww_own own[WW_MAX_OWN];
	size_t nown;
	size_t in_use;
	long fail_after;
} A;

/* Defined here, with the allocator, so that the core links into the unit tests on its own. */
__thread int ww_in_shim __attribute__((tls_model("initial-exec")));

/* The guard is up while the lock is held: a signal handler's hook on this thread passes
 * through instead of spinning forever on the lock this thread holds (ww_alloc is also called
 * outside the core, from pthread_create and exec). */
static void lock(void)
{
	ww_in_shim++;
	for (unsigned spins = 0; __atomic_exchange_n(&A.lock, 1, __ATOMIC_ACQUIRE); spins++) {
		if (spins < 1000)
			__builtin_ia32_pause();
		else
			ww_sys(SYS_sched_yield, 0, 0, 0, 0, 0, 0); /* a fork can hold it for long */
	}
}

static void unlock(void)
{
	__atomic_store_n(&A.lock, 0, __ATOMIC_RELEASE);
	ww_in_shim--;
}

/* MAP_NORESERVE gives our mappings VMA flags the program's plain anonymous maps lack, so the
 * kernel does not merge the two and /proc/self/maps shows ours as their own lines. */
static void *map_own(size_t len)
{
	void *p = ww_sys_mmap(NULL, len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (A.nown < WW_MAX_OWN)
		A.own[A.nown++] = (struct ww_own){(uintptr_t)p, (uintptr_t)p + len};
	return p;
}

static void unmap_own(void *p, size_t len)
{
	for (size_t i = 0; i < A.nown; i++) {
		if (A.own[i].start == (uintptr_t)p) {
			A.own[i] = A.own[--A.nown];
			break;
		}
	}
	ww_sys_munmap(p, len);
}

static int size_class(size_t size)
{
	int c = 0;
	while (((size_t)1 << (c + WW_MIN_SHIFT)) < size)
		c++;
	return c;
}

static bool should_fail(void)
{
	if (A.fail_after <= 0)
		return false;
	return --A.fail_after == 0;
}

void *ww_alloc(size_t size)
{
	void *p = NULL;
	if (size == 0)
		size = 1;
	lock();
	if (should_fail())
		goto out;
	if (size > ((size_t)1 << WW_MAX_SHIFT)) {
		size_t len = (size + 4095) & ~(size_t)4095;
		p = map_own(len); /* fresh mappings are already zero */
		if (p)
			A.in_use += len;
		goto out;
	}
	int c = size_class(size);
	size_t bsize = (size_t)1 << (c + WW_MIN_SHIFT);
	if (A.free[c]) {
		p = A.free[c];
		A.free[c] = A.free[c]->next;
		memset(p, 0, bsize);
	} else {
		if ((size_t)(A.bump_end - A.bump) < bsize) {
			char *arena = map_own(WW_ARENA_SIZE);
			if (!arena)
				goto out;
			A.bump = arena;
			A.bump_end = arena + WW_ARENA_SIZE;
		}
		p = A.bump;
		A.bump += bsize;
	}
	A.in_use += bsize;
out:
	unlock();
	return p;
}

void ww_free(void *ptr, size_t size)
{
	if (!ptr)
		return;
	if (size == 0)
		size = 1;
	lock();
	if (size > ((size_t)1 << WW_MAX_SHIFT)) {
		size_t len = (size + 4095) & ~(size_t)4095;
		unmap_own(ptr, len);
		A.in_use -= len;
	} else {
		int c = size_class(size);
		struct ww_free_block *b = ptr;
		b->next = A.free[c];
		A.free[c] = b;
		A.in_use -= (size_t)1 << (c + WW_MIN_SHIFT);
	}
	unlock();
}

bool ww_own_overlap(uintptr_t start, uintptr_t end, uintptr_t *own_start, uintptr_t *own_end)
{
	bool found = false;
	uintptr_t best_s = 0, best_e = 0;
	lock();
	for (size_t i = 0; i < A.nown; i++) {
		if (A.own[i].start < end && A.own[i].end > start &&
		    (!found || A.own[i].start < best_s)) {
			found = true;
			best_s = A.own[i].start;
			best_e = A.own[i].end;
		}
	}
	unlock();
	if (found) {
		*own_start = best_s;
		*own_end = best_e;
	}
	return found;
}

void ww_own_note(uintptr_t start, uintptr_t end)
{
	lock();
	if (A.nown < WW_MAX_OWN)
		A.own[A.nown++] = (struct ww_own){start, end};
	unlock();
}

void ww_alloc_fork_lock(void)
{
	lock();
}

void ww_alloc_fork_unlock(void)
{
	unlock();
}

void ww_alloc_fail_after(long n)
{
	A.fail_after = n;
}

size_t ww_alloc_bytes_in_use(void)
{
	return A.in_use;
}
