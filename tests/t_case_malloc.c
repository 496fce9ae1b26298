/* Field case C01: the program is its own allocator. It defines the whole malloc family
 * (malloc, free, calloc, realloc, memalign, posix_memalign, aligned_alloc, valloc, pvalloc,
 * malloc_usable_size) on top of plain mmap() called through the PLT, so glibc, the loader and
 * the shim's own lazy lookups (dlsym) all allocate here, and every chunk it maps goes through
 * the shim's mmap hook. It then makes 10,000 allocations and touches each.
 *
 * The allocator is a bump allocator: 1 MiB chunks carved in order, a 16-byte header
 * {size, magic} before each block, blocks above 64 KiB in a mapping of their own (freed with
 * munmap, grown with mremap). It never reuses memory, so it knows exactly which pages it and
 * the program stored to: every header write and every touch marks its page in a per-mapping
 * map, and the truth is written in tprog.h's format (windows per mapping, $WW_EXPECT).
 * Allocations made by the main thread while `in_test` is set (the program's own, in which it
 * calls nothing else of libc) come from a test arena whose mappings are the windows; every
 * other allocation (stdio's buffers, dlsym's, other threads') from a second arena, whose
 * writes the program cannot know and which no window covers.
 *
 * A re-entry (the allocator's own mmap calling back into the allocator, as a hook whose lazy
 * resolver allocates would) is detected and fails the program with exit 98 rather than
 * deadlocking. Usage: t_case_malloc SEED */
#define _GNU_SOURCE
#include "tprog.h"

#include <malloc.h>
#include <stdbool.h>

#define PG 4096ul
#define CHUNK (1ul << 20)
#define BIG (64ul << 10)   /* blocks at least this large get a mapping of their own */
#define HDR 16ul
#define MAGIC 0x77a110c8d00dfee0ul
#define MAX_MAPS 4096
#define MAP_PAGES_POOL (1ul << 20) /* page marks for all test mappings (4 GiB worth) */
#define NALLOC 10000

struct hdr {
	size_t size;  /* bytes asked for */
	size_t magic; /* MAGIC | 1 while freed (chunk blocks) */
};

struct map {
	uintptr_t start;
	size_t npages;
	unsigned char *written; /* pages stored to since the last snapshot (test mappings) */
	bool test, live, reported_dead, big;
};

static struct map maps[MAX_MAPS];
static size_t nmaps;
static unsigned char pool[MAP_PAGES_POOL];
static size_t pool_used;

struct arena {
	int map; /* index of the current chunk, -1 for none */
	size_t used;
};
static struct arena arenas[2] = {{-1, 0}, {-1, 0}}; /* [0] everything else, [1] the test's */

static __thread bool in_test; /* main thread, inside the program's own allocation loop */
static __thread bool inside;  /* this thread is inside the allocator */
static int lock;
static size_t other_allocs; /* allocations served to libc, the loader, other threads */

static void say(const char *s)
{
	ssize_t r = write(2, s, strlen(s));
	(void)r;
}

static void enter(void)
{
	if (inside) {
		say("t_case_malloc: the allocator was re-entered from inside itself (its mmap called "
		    "malloc)\n");
		_exit(98);
	}
	inside = true;
	while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE))
		;
}

static void leave(void)
{
	__atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
	inside = false;
}

static void oom(const char *what)
{
	say("t_case_malloc: out of room: ");
	say(what);
	say("\n");
	_exit(99);
}

static int find_map(uintptr_t a)
{
	for (size_t i = nmaps; i-- > 0;)
		if (maps[i].live && a >= maps[i].start && a < maps[i].start + maps[i].npages * PG)
			return (int)i;
	return -1;
}

/* A store to [a, a+n) by the allocator or the program: mark its pages. */
static void mark(uintptr_t a, size_t n)
{
	if (!n)
		return;
	int m = find_map(a);
	if (m < 0 || !maps[m].test)
		return;
	struct map *mp = &maps[m];
	for (uintptr_t p = a / PG; p <= (a + n - 1) / PG; p++)
		mp->written[p - mp->start / PG] = 1;
}

static int add_map(void *p, size_t len, bool test, bool big)
{
	if (nmaps == MAX_MAPS)
		oom("mappings");
	struct map *m = &maps[nmaps];
	m->start = (uintptr_t)p;
	m->npages = len / PG;
	m->test = test;
	m->live = true;
	m->reported_dead = false;
	m->big = big;
	m->written = NULL;
	if (test) {
		if (pool_used + m->npages > MAP_PAGES_POOL)
			oom("page marks");
		m->written = pool + pool_used;
		pool_used += m->npages;
	}
	return (int)nmaps++;
}

/* Plain mmap, through the PLT: the shim's hook sees it. */
static void *map_pages(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* Where THP is "always", one store would make a whole 2 MiB block present. */
	madvise(p, len, MADV_NOHUGEPAGE);
	return p;
}

static size_t round_up(size_t n, size_t a)
{
	return (n + a - 1) & ~(a - 1);
}

/* The block for n bytes aligned to align (a power of two, at least 16); lock held. */
static void *carve(size_t n, size_t align)
{
	bool test = in_test;
	if (!test)
		other_allocs++;
	if (align < 16)
		align = 16;
	if (n >= BIG || align > PG) {
		size_t off = round_up(HDR, align);
		size_t len = round_up(off + n + (align > PG ? align : 0), PG);
		char *p = map_pages(len);
		if (!p)
			return NULL;
		char *user = (char *)round_up((uintptr_t)p + HDR, align);
		add_map(p, len, test, true);
		struct hdr *h = (struct hdr *)(user - HDR);
		h->size = n;
		h->magic = MAGIC;
		mark((uintptr_t)h, sizeof *h);
		return user;
	}
	struct arena *a = &arenas[test];
	for (;;) {
		if (a->map >= 0) {
			struct map *m = &maps[a->map];
			uintptr_t at = round_up(m->start + a->used + HDR, align);
			if (at + n <= m->start + m->npages * PG) {
				struct hdr *h = (struct hdr *)(at - HDR);
				h->size = n;
				h->magic = MAGIC;
				mark((uintptr_t)h, sizeof *h);
				a->used = at + (n ? n : 1) - m->start;
				return (void *)at;
			}
		}
		void *c = map_pages(CHUNK);
		if (!c)
			return NULL;
		a->map = add_map(c, CHUNK, test, false);
		a->used = 0;
	}
}

static struct hdr *header(void *p)
{
	struct hdr *h = (struct hdr *)((char *)p - HDR);
	return (h->magic & ~1ul) == MAGIC ? h : NULL;
}

static void release(void *p)
{
	struct hdr *h = header(p);
	if (!h)
		return; /* not ours (the loader's early blocks): leave it */
	int m = find_map((uintptr_t)h);
	if (m >= 0 && maps[m].big) {
		if (munmap((void *)maps[m].start, maps[m].npages * PG) == 0)
			maps[m].live = false;
		return;
	}
	h->magic = MAGIC | 1;
	mark((uintptr_t)h, sizeof *h);
}

void *malloc(size_t n)
{
	enter();
	void *p = carve(n, 16);
	leave();
	return p;
}

void *calloc(size_t k, size_t n)
{
	size_t total;
	if (__builtin_mul_overflow(k, n, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return malloc(total); /* never reused: fresh mapped memory is zero already */
}

void free(void *p)
{
	if (!p)
		return;
	enter();
	release(p);
	leave();
}

void *realloc(void *p, size_t n)
{
	if (!p)
		return malloc(n);
	if (!n) {
		free(p);
		return NULL;
	}
	enter();
	struct hdr *h = header(p);
	void *q = NULL;
	if (!h) {
		leave();
		return NULL;
	}
	size_t old = h->size;
	int m = find_map((uintptr_t)h);
	if (n <= old) {
		h->size = n;
		mark((uintptr_t)h, sizeof *h);
		q = p;
	} else if (m >= 0 && maps[m].big && (uintptr_t)p - maps[m].start == HDR) {
		/* A mapping of its own: mremap it, as glibc does. */
		struct map *mp = &maps[m];
		size_t len = round_up(HDR + n, PG);
		char *np = mremap((void *)mp->start, mp->npages * PG, len, MREMAP_MAYMOVE);
		if (np != MAP_FAILED) {
			int k = add_map(np, len, mp->test, true);
			if (mp->test) /* the pages moved with their contents */
				for (size_t i = 0; i < mp->npages; i++)
					maps[k].written[i] = mp->written[i];
			mp->live = false;
			h = (struct hdr *)np;
			h->size = n;
			mark((uintptr_t)h, sizeof *h);
			q = np + HDR;
		}
	} else {
		q = carve(n, 16);
		if (q) {
			memcpy(q, p, old);
			mark((uintptr_t)q, old);
			release(p);
		}
	}
	leave();
	return q;
}

void *memalign(size_t align, size_t n)
{
	if (!align || (align & (align - 1))) {
		errno = EINVAL;
		return NULL;
	}
	enter();
	void *p = carve(n, align);
	leave();
	return p;
}

void *aligned_alloc(size_t align, size_t n)
{
	return memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
	if (!align || (align & (align - 1)) || align % sizeof(void *))
		return EINVAL;
	void *p = memalign(align, n);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

void *valloc(size_t n)
{
	return memalign(PG, n);
}

void *pvalloc(size_t n)
{
	return memalign(PG, round_up(n, PG));
}

size_t malloc_usable_size(void *p)
{
	struct hdr *h = p ? header(p) : NULL;
	return h ? h->size : 0;
}

/* ---- the truth, in tprog.h's format ---- */

static void expect(const char *label)
{
	tp_open();
	for (size_t i = 0; i < nmaps; i++) {
		struct map *m = &maps[i];
		if (!m->test || (!m->live && m->reported_dead))
			continue;
		if (!m->live) {
			/* Gone since the last snapshot: nothing may be reported there, unless the
			 * kernel handed the range out again to a mapping that is still live. */
			m->reported_dead = true;
			bool reused = false;
			for (size_t j = 0; j < nmaps; j++)
				if (maps[j].live && maps[j].start < m->start + m->npages * PG &&
				    m->start < maps[j].start + maps[j].npages * PG)
					reused = true;
			if (reused)
				continue;
		}
		fprintf(tp_out, "{\"label\":\"%s\",\"window\":\"map%zu%s\",\"start\":\"0x%lx\","
				"\"npages\":%zu,\"pages\":[",
			label, i, m->live ? "" : "-gone", (unsigned long)m->start, m->npages);
		int first = 1;
		for (size_t p = 0; p < m->npages; p++)
			if (m->live && m->written[p]) {
				fprintf(tp_out, first ? "%zu" : ",%zu", p);
				first = 0;
			}
		fprintf(tp_out, "]}\n");
		memset(m->written, 0, m->npages);
	}
}

static void snap(const char *label)
{
	expect(label);
	tp_snapshot_or_absent(label);
}

/* ---- the program: 10,000 allocations, each touched ---- */

static char *ptr[NALLOC];
static size_t len[NALLOC];
static unsigned char tag[NALLOC];

static void touch(int i)
{
	volatile unsigned char *p = (volatile unsigned char *)ptr[i];
	if (!len[i])
		return;
	p[0] = tag[i];
	p[len[i] - 1] = tag[i];
	mark((uintptr_t)p, 1);
	mark((uintptr_t)p + len[i] - 1, 1);
}

static size_t pick_size(void)
{
	unsigned r = (unsigned)(tp_rand() % 100);
	if (r < 88)
		return 1 + tp_rand() % 512;
	if (r < 99)
		return 513 + tp_rand() % 12000;
	return BIG + tp_rand() % (300u << 10);
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	tp_seed(seed);
	tp_open();
	printf("t_case_malloc seed %lu\n", (unsigned long)seed);
	fflush(stdout);
	if (!other_allocs) { /* stdio's buffers came from us, or this tests nothing */
		errno = 0;
		tp_die("glibc did not allocate through this program's malloc");
	}
	snap("c01-begin"); /* the API's own lookup (dlsym) allocates before the phases */

	/* 10,000 allocations: malloc, calloc, the aligned ones, realloc (grow) and free of
	 * earlier blocks; each new block touched at its first and last byte. */
	size_t frees = 0, reallocs = 0, aligned = 0, big_freed = 0, big_freed_bytes = 0,
	       big_freed_written = 0;
	in_test = true;
	for (int i = 0; i < NALLOC; i++) {
		unsigned kind = (unsigned)(tp_rand() % 100);
		size_t n = pick_size();
		tag[i] = (unsigned char)(1 + i % 251);
		if (kind < 60) {
			ptr[i] = malloc(n);
		} else if (kind < 70) {
			ptr[i] = calloc(1, n);
		} else if (kind < 74) {
			ptr[i] = memalign(64, n);
			aligned++;
		} else if (kind < 77) {
			void *q = NULL;
			ptr[i] = posix_memalign(&q, 256, n) == 0 ? q : NULL;
			aligned++;
		} else if (kind < 80) {
			ptr[i] = aligned_alloc(4096, n);
			aligned++;
		} else if (kind < 92 && i > 0) {
			/* grow an earlier live block; its contents must survive */
			int j = (int)(tp_rand() % (unsigned)i);
			if (!ptr[j] || n <= len[j]) {
				ptr[i] = malloc(n);
			} else {
				char *q = realloc(ptr[j], n);
				if (!q)
					tp_die("realloc");
				if (len[j] && (q[0] != (char)tag[j] || q[len[j] - 1] != (char)tag[j])) {
					errno = 0;
					tp_die("realloc lost the contents");
				}
				ptr[j] = NULL;
				ptr[i] = q;
				reallocs++;
			}
		} else {
			ptr[i] = malloc(n);
			if (i > 0) { /* and free an earlier live block */
				int j = (int)(tp_rand() % (unsigned)i);
				if (ptr[j]) {
					int m = find_map((uintptr_t)ptr[j]);
					if (m >= 0 && maps[m].big) {
						big_freed++;
						big_freed_bytes += maps[m].npages * PG;
						for (size_t p = 0; p < maps[m].npages; p++)
							big_freed_written += maps[m].written[p];
					}
					free(ptr[j]);
					ptr[j] = NULL;
					frees++;
				}
			}
		}
		if (!ptr[i])
			tp_die("allocation");
		len[i] = n;
		touch(i);
	}
	in_test = false;
	/* Big blocks freed in this interval were made in it too: all their written pages retire. */
	tp_expect_field("c01-alloc", "retired_regions", big_freed);
	tp_expect_field("c01-alloc", "retired_bytes", big_freed_bytes);
	tp_expect_field("c01-alloc", "retired_written_bytes", big_freed_written * PG);
	snap("c01-alloc");

	/* Touch about a fifth of the live blocks again, one byte somewhere inside each. */
	unsigned long sum = 0;
	size_t live = 0;
	for (int i = 0; i < NALLOC; i++) {
		if (!ptr[i])
			continue;
		live++;
		sum += (unsigned char)ptr[i][0] + (unsigned char)ptr[i][len[i] - 1];
		if (tp_rand() % 5 == 0) {
			size_t at = tp_rand() % len[i];
			((volatile char *)ptr[i])[at] = 7;
			mark((uintptr_t)ptr[i] + at, 1);
		}
	}
	tp_expect_field("c01-retouch", "retired_bytes", 0);
	snap("c01-retouch");

	/* Free everything: chunk blocks get their header's freed mark, big blocks are unmapped
	 * (nothing written in them in this interval). */
	size_t big_live = 0, big_live_bytes = 0;
	for (int i = 0; i < NALLOC; i++) {
		if (!ptr[i])
			continue;
		int m = find_map((uintptr_t)ptr[i]);
		if (m >= 0 && maps[m].big) {
			big_live++;
			big_live_bytes += maps[m].npages * PG;
		}
		free(ptr[i]);
		ptr[i] = NULL;
	}
	tp_expect_field("c01-free", "retired_regions", big_live);
	tp_expect_field("c01-free", "retired_bytes", big_live_bytes);
	tp_expect_field("c01-free", "retired_written_bytes", 0);
	snap("c01-free");

	snap("c01-idle"); /* nothing written: nothing reported */

	size_t test_maps = 0;
	for (size_t i = 0; i < nmaps; i++)
		test_maps += maps[i].test;
	printf("allocations %d live %zu frees %zu reallocs %zu aligned %zu test-mappings %zu "
	       "checksum %lu\n",
	       NALLOC, live, frees, reallocs, aligned, test_maps, sum);
	return 0;
}
