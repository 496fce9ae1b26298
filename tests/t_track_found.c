/* Exact tracking of memory no hook sees, found in /proc/self/maps at the snapshot: glibc's
 * large malloc blocks and realloc's internal mremap, a thread's stack, the brk heap grown with
 * sbrk, a raw syscall(SYS_mmap); and read(2) into tracked memory (the kernel writes it).
 * Usage: t_track_found SEED */
#define _GNU_SOURCE
#include "tprog.h"

#include <malloc.h>
#include <stdbool.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static void fail(const char *what)
{
	errno = 0;
	tp_die(what);
}

/* ---- glibc malloc: large blocks and realloc ----
 * A block above the mmap threshold is its own mapping: [chunk header (16 bytes) | user data],
 * the mapping rounded up to whole pages, the pointer 16 bytes into it. glibc writes the header
 * (page 0 of the mapping) at malloc; the program writes the rest. So the exact set of the first
 * snapshot is {page 0} + the pages the program wrote (the region is new: its present pages
 * count, and nothing else is present). realloc moves the block with an internal mremap (a
 * guard page after the block rules out growing in place); the moved mapping lost its
 * registration, so it is a new region at the next snapshot and every present page counts:
 * page 0 (glibc rewrites the header after the move anyway), every page ever written in the old
 * block (their contents moved with them) and the pages written after the move.
 * That is discovery (WRITEWATCH_METHOD=discovery). By default writewatch interposes glibc's
 * malloc and sees the realloc as the move it is: the region keeps its identity, nothing is
 * retired, and the new address reports exactly the pages written in the interval, before the
 * move (carried over) and after it, plus the header page glibc rewrites. */
#define BIG_OLD (4ul << 20)
#define BIG_NEW (8ul << 20)
#define BIG_HDR 16
static struct tp_window Bold, Bnew;
static unsigned char present[TP_MAX_PAGES]; /* pages of the old block ever stored to */

static void big_write(struct tp_window *w, unsigned pct)
{
	for (size_t i = 1; i < w->npages; i++) /* page 0 holds glibc's header: never stored to */
		if (tp_rand() % 100 < pct) {
			tp_write(w, i);
			present[i] = 1;
		}
}

static void test_malloc(void)
{
	/* A fixed threshold: glibc's sliding threshold would otherwise depend on earlier frees. */
	if (!mallopt(M_MMAP_THRESHOLD, 128 * 1024))
		fail("mallopt");
	char *p = malloc(BIG_OLD);
	if (!p)
		tp_die("malloc");
	if (((uintptr_t)p & (TP_PAGE - 1)) != BIG_HDR)
		fail("large malloc block is not a mapping of its own");
	char *base = p - BIG_HDR;
	size_t old_pages = (BIG_OLD + BIG_HDR + TP_PAGE - 1) / TP_PAGE;
	tp_window_init(&Bold, "malloc-old", base, old_pages);
	big_write(&Bold, 25);
	tp_mark(&Bold, 0);
	present[0] = 1;
	SNAP("big-new", &Bold);

	big_write(&Bold, 15);
	tp_read_some(&Bold, 1, old_pages, 30);
	SNAP("big-rewrite", &Bold);

	void *g = mmap(base + old_pages * TP_PAGE, TP_PAGE, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (g == MAP_FAILED && errno != EEXIST)
		tp_die("guard");
	big_write(&Bold, 15);
	char *q = realloc(p, BIG_NEW);
	if (!q)
		tp_die("realloc");
	if (q == p)
		fail("realloc grew in place despite the guard page");
	if (((uintptr_t)q & (TP_PAGE - 1)) != BIG_HDR)
		fail("reallocated block is not a mapping of its own");
	size_t new_pages = (BIG_NEW + BIG_HDR + TP_PAGE - 1) / TP_PAGE;
	const char *method = getenv("WRITEWATCH_METHOD");
	bool discovery = method && !strcmp(method, "discovery");
	tp_window_init(&Bnew, "malloc-new", q - BIG_HDR, new_pages);
	for (size_t i = 0; i < old_pages; i++)
		if (discovery ? present[i] : Bold.written[i])
			tp_mark(&Bnew, i);
	tp_mark(&Bnew, 0);
	tp_window_init(&Bold, "malloc-old", base, old_pages); /* moved away: nothing there */
	tp_write_some(&Bnew, 1, new_pages, 10);
	if (discovery) {
		/* The old mapping went behind the hooks' back (glibc's mremap): found gone at the
		 * snapshot, retired whole; its writes are not lost but reported at the new address. */
		tp_expect_field("big-realloc", "retired_regions", 1);
		tp_expect_field("big-realloc", "retired_bytes", old_pages * TP_PAGE);
	} else {
		tp_expect_field("big-realloc", "retired_regions", 0);
		tp_expect_field("big-realloc", "retired_bytes", 0);
	}
	tp_expect_field("big-realloc", "retired_written_bytes", 0);
	SNAP("big-realloc", &Bold, &Bnew);

	tp_write_some(&Bnew, 1, new_pages, 10);
	tp_read_some(&Bnew, 1, new_pages, 30);
	SNAP("big-after", &Bold, &Bnew);

	free(q);
	tp_window_init(&Bnew, "malloc-new", q - BIG_HDR, new_pages);
	tp_expect_field("big-freed", "retired_regions", 1);
	tp_expect_field("big-freed", "retired_bytes", new_pages * TP_PAGE);
	SNAP("big-freed", &Bold, &Bnew);
}

/* ---- a thread's stack: a local array, snapshots taken by the main thread while it lives ---- */
#define TS_BYTES (80 * TP_PAGE)
static struct tp_window Tstack;
static pthread_barrier_t bar;

static void *stack_thread(void *arg)
{
	(void)arg;
	char buf[TS_BYTES];
	uintptr_t first = ((uintptr_t)buf + TP_PAGE - 1) & ~(TP_PAGE - 1);
	size_t n = ((uintptr_t)buf + TS_BYTES - first) / TP_PAGE; /* whole pages inside buf */
	tp_window_init(&Tstack, "thread-stack", (void *)first, n);
	tp_write_some(&Tstack, 0, n, 30);
	tp_read_some(&Tstack, 0, n, 30);
	pthread_barrier_wait(&bar); /* main: snapshot 1 */
	pthread_barrier_wait(&bar);
	tp_write_some(&Tstack, 0, n, 20);
	tp_read_some(&Tstack, 0, n, 50);
	pthread_barrier_wait(&bar); /* main: snapshot 2 */
	pthread_barrier_wait(&bar);
	tp_write_some(&Tstack, 0, n, 25); /* and the thread ends: glibc discards its stack */
	tp_sink += buf[0];
	return NULL;
}

static void test_thread_stack(void)
{
	pthread_t t;
	pthread_barrier_init(&bar, NULL, 2);
	if (pthread_create(&t, NULL, stack_thread, NULL) != 0)
		fail("pthread_create");
	pthread_barrier_wait(&bar);
	SNAP("tstack-1", &Tstack);
	pthread_barrier_wait(&bar);
	pthread_barrier_wait(&bar);
	SNAP("tstack-2", &Tstack);
	pthread_barrier_wait(&bar);
	pthread_join(t, NULL);
	SNAP("tstack-ended", &Tstack);
}

/* ---- the brk heap, grown by sbrk directly ---- */
static struct tp_window Heap;

static void test_brk(void)
{
	char *cur = sbrk(0);
	size_t pad = (TP_PAGE - ((uintptr_t)cur & (TP_PAGE - 1))) & (TP_PAGE - 1);
	if (sbrk((intptr_t)pad) == (void *)-1)
		tp_die("sbrk pad");
	char *h = sbrk(64 * TP_PAGE);
	if (h == (void *)-1)
		tp_die("sbrk");
	if ((uintptr_t)h & (TP_PAGE - 1))
		fail("sbrk not page aligned");
	tp_window_init(&Heap, "brk", h, 64);
	tp_write_some(&Heap, 0, 64, 30);
	tp_read_some(&Heap, 0, 64, 30);
	SNAP("brk-1", &Heap);

	tp_write_some(&Heap, 0, 64, 30);
	tp_read_some(&Heap, 0, 64, 50);
	SNAP("brk-2", &Heap);

	/* The program shrinks the heap itself: the top 32 pages' writes of this interval retire
	 * with them, the rest is reported. */
	tp_write_some(&Heap, 0, 64, 40);
	size_t gone = 0;
	for (size_t i = 32; i < 64; i++)
		gone += Heap.written[i];
	if (sbrk(-32 * (intptr_t)TP_PAGE) == (void *)-1)
		tp_die("sbrk shrink");
	unsigned char kept[32];
	memcpy(kept, Heap.written, sizeof kept);
	tp_window_init(&Heap, "brk", h, 32); /* the 32 pages left, their writes kept */
	for (size_t i = 0; i < 32; i++)
		if (kept[i])
			tp_mark(&Heap, i);
	tp_expect_field("brk-shrunk", "retired_written_bytes", gone * TP_PAGE);
	tp_expect_field("brk-shrunk", "retired_bytes", 32 * TP_PAGE);
	SNAP("brk-shrunk", &Heap);
}

/* ---- memory mapped by a raw system call ---- */
static struct tp_window Raw;

static void test_raw(void)
{
	long r = syscall(SYS_mmap, 0L, 40 * TP_PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1L, 0L);
	if (r == -1)
		tp_die("syscall mmap");
	tp_window_init(&Raw, "raw-mmap", (void *)r, 40);
	tp_write_some(&Raw, 0, 40, 30);
	tp_read_some(&Raw, 0, 40, 30);
	SNAP("raw-1", &Raw);

	tp_write_some(&Raw, 0, 40, 30);
	tp_read_some(&Raw, 0, 40, 50);
	SNAP("raw-2", &Raw);

	/* Half of it unmapped behind the shim's back, the rest written. */
	if (syscall(SYS_munmap, r + 20 * (long)TP_PAGE, 20 * TP_PAGE) != 0)
		tp_die("syscall munmap");
	memset(Raw.written, 0, sizeof Raw.written);
	tp_write_some(&Raw, 0, 20, 40);
	tp_expect_field("raw-3", "retired_regions", 1); /* a part of a region counts as one */
	tp_expect_field("raw-3", "retired_bytes", 20 * TP_PAGE);
	SNAP("raw-3", &Raw);
}

/* ---- read(2) from a pipe into a fresh tracked region: the kernel's stores count ---- */
static struct tp_window Pipe;

static void pipe_into(int fd[2], size_t page, size_t off, size_t len)
{
	static char src[TP_PAGE];
	memset(src, (int)(page + 1), len);
	if (write(fd[1], src, len) != (ssize_t)len)
		tp_die("write pipe");
	if (read(fd[0], (char *)Pipe.start + page * TP_PAGE + off, len) != (ssize_t)len)
		tp_die("read pipe");
	tp_mark(&Pipe, page);
}

static void pipe_some(int fd[2], unsigned pct)
{
	for (size_t i = 0; i < Pipe.npages; i++) {
		unsigned x = (unsigned)(tp_rand() % 100);
		if (x < pct / 2)
			pipe_into(fd, i, 0, TP_PAGE); /* a whole page */
		else if (x < pct)
			pipe_into(fd, i, 1000, 100); /* a few bytes inside the page */
		else if (x < pct + 20)
			tp_sink += tp_read(&Pipe, i);
	}
}

static void test_pipe(void)
{
	int fd[2];
	if (pipe(fd) != 0)
		tp_die("pipe");
	void *p = mmap(NULL, 32 * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		tp_die("mmap");
	tp_window_init(&Pipe, "pipe-read", p, 32);
	pipe_some(fd, 40);
	SNAP("pipe-1", &Pipe);

	pipe_some(fd, 40); /* now into write-protected pages */
	SNAP("pipe-2", &Pipe);
	close(fd[0]);
	close(fd[1]);
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	tp_seed(seed);
	tp_open();
	test_malloc();
	test_thread_stack();
	test_brk();
	test_raw();
	test_pipe();
	return 0;
}
