/* Exact tracking around madvise discards: pages discarded after a snapshot are not reported
 * again; pages written and then discarded before the snapshot are reported exactly once (the
 * shim harvests them before the discard); discarded_bytes is exact; a discarded region that is
 * then unmapped retires its harvested writes. Usage: t_track_discard SEED */
#define _GNU_SOURCE
#include "tprog.h"

#include <sys/mman.h>

#define SNAP(label, ...)                                                                           \
	do {                                                                                       \
		struct tp_window *ws_[] = {__VA_ARGS__};                                           \
		tp_snapshot(label, ws_, sizeof ws_ / sizeof ws_[0]);                               \
	} while (0)

static volatile int sink;

static void *map_anon(size_t pages)
{
	void *p = mmap(NULL, pages * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED)
		tp_die("mmap");
	return p;
}

static void write_some(struct tp_window *w, size_t from, size_t to, unsigned pct)
{
	for (size_t i = from; i < to; i++)
		if (tp_rand() % 100 < pct)
			tp_write(w, i);
}

static void read_some(struct tp_window *w, size_t from, size_t to, unsigned pct)
{
	for (size_t i = from; i < to; i++)
		if (tp_rand() % 100 < pct)
			sink += tp_read(w, i);
}

static void discard(struct tp_window *w, size_t from, size_t n, int advice)
{
	if (madvise((char *)w->start + from * TP_PAGE, n * TP_PAGE, advice) != 0)
		tp_die("madvise");
}

static struct tp_window D, E, G, H, J, K;

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	tp_seed(seed);
	tp_open();

	/* 16 pages written, snapshot; all discarded: 0, 0; one written again: exactly 1. */
	tp_window_init(&D, "D", map_anon(16), 16);
	write_some(&D, 0, 16, 100);
	SNAP("dn-write", &D);

	discard(&D, 0, 16, MADV_DONTNEED);
	tp_expect_field("dn-discard", "discarded_bytes", 16 * TP_PAGE);
	SNAP("dn-discard", &D);

	read_some(&D, 0, 16, 100); /* zero pages again: still nothing */
	tp_expect_field("dn-idle", "discarded_bytes", 0);
	SNAP("dn-idle", &D);

	tp_write(&D, tp_rand() % 16);
	SNAP("dn-one", &D);

	/* Written, then discarded before the snapshot: reported once, and not again. */
	tp_window_init(&E, "E", map_anon(48), 48);
	write_some(&E, 0, 48, 50);
	SNAP("dw-before", &E);

	write_some(&E, 0, 48, 40);
	discard(&E, 0, 48, MADV_DONTNEED);
	tp_expect_field("dw-discard", "discarded_bytes", 48 * TP_PAGE);
	SNAP("dw-discard", &E);

	tp_expect_field("dw-idle", "discarded_bytes", 0);
	SNAP("dw-idle", &E);

	/* Writes, partial discards and re-writes of the same pages in one interval: each page
	 * written in the interval once, whether it was discarded or not. */
	size_t a = tp_rand() % 16, an = 1 + tp_rand() % 24;
	size_t b = 20 + tp_rand() % 12, bn = 1 + tp_rand() % 16;
	write_some(&E, 0, 48, 40);
	discard(&E, a, an, MADV_DONTNEED);
	write_some(&E, 0, 48, 30);
	discard(&E, b, bn, MADV_DONTNEED);
	write_some(&E, 0, 48, 20);
	tp_expect_field("dw-mixed", "discarded_bytes", (an + bn) * TP_PAGE);
	SNAP("dw-mixed", &E);

	write_some(&E, 0, 48, 30);
	SNAP("dw-after", &E);

	/* MADV_FREE: lazily freed pages keep their write protection (or are dropped): a write
	 * before the advice is reported once, a later write again. */
	tp_window_init(&G, "G", map_anon(32), 32);
	write_some(&G, 0, 32, 50);
	SNAP("fr-before", &G);

	write_some(&G, 0, 32, 50);
	discard(&G, 0, 32, MADV_FREE);
	tp_expect_field("fr-free", "discarded_bytes", 32 * TP_PAGE);
	SNAP("fr-free", &G);

	read_some(&G, 0, 32, 100);
	SNAP("fr-idle", &G);

	write_some(&G, 0, 32, 40);
	SNAP("fr-write", &G);

	/* A run of written pages across a 2 MiB boundary (where the shim's page sets change
	 * chunk), discarded before the snapshot: still one merged run in "ranges". */
	char *big = map_anon(1024);
	if (madvise(big, 1024 * TP_PAGE, MADV_NOHUGEPAGE) != 0)
		tp_die("madvise nohugepage");
	size_t cross = (size_t)((((uintptr_t)big + (2ul << 20)) & ~((2ul << 20) - 1)) -
				(uintptr_t)big) / TP_PAGE;
	tp_window_init(&J, "J", big, 1024);
	size_t lo = cross - 1 - tp_rand() % 40, hi = cross + 1 + tp_rand() % 40;
	for (size_t i = lo; i < hi; i++)
		tp_write(&J, i);
	discard(&J, 0, 1024, MADV_DONTNEED);
	SNAP("dx-boundary", &J);

	/* Written, discarded, then unmapped before the snapshot: the harvested writes retire. */
	tp_window_init(&H, "H", map_anon(24), 24);
	tp_window_init(&K, "K", map_anon(24), 24);
	write_some(&H, 0, 24, 50);
	write_some(&K, 0, 24, 50);
	SNAP("du-before", &H, &K);

	write_some(&H, 0, 24, 50);
	size_t hw = 0;
	for (size_t i = 0; i < 24; i++)
		hw += H.written[i];
	discard(&H, 0, 24, MADV_DONTNEED);
	if (munmap((void *)H.start, 24 * TP_PAGE) != 0)
		tp_die("munmap");
	tp_window_init(&H, "H", (void *)H.start, 24);
	write_some(&K, 0, 24, 50); /* a neighbour, written as usual */
	tp_expect_field("du-unmapped", "retired_written_bytes", hw * TP_PAGE);
	tp_expect_field("du-unmapped", "retired_bytes", 24 * TP_PAGE);
	tp_expect_field("du-unmapped", "discarded_bytes", 24 * TP_PAGE);
	SNAP("du-unmapped", &H, &K);
	return 0;
}
