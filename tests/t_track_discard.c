/* Exact tracking around madvise discards: pages discarded after a snapshot are not reported
 * again; pages written and then discarded before the snapshot are reported exactly once (the
 * shim harvests them before the discard); discarded_bytes is exact; a discarded region that is
 * then unmapped retires its harvested writes. Usage: t_track_discard SEED */
#define _GNU_SOURCE
#include "tprog.h"

#include <sys/mman.h>

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
	tp_window_init(&D, "D", tp_map(16, PROT_READ | PROT_WRITE), 16);
	tp_write_some(&D, 0, 16, 100);
	SNAP("dn-write", &D);

	discard(&D, 0, 16, MADV_DONTNEED);
	tp_expect_field("dn-discard", "discarded_bytes", 16 * TP_PAGE);
	SNAP("dn-discard", &D);

	tp_read_some(&D, 0, 16, 100); /* zero pages again: still nothing */
	tp_expect_field("dn-idle", "discarded_bytes", 0);
	SNAP("dn-idle", &D);

	tp_write(&D, tp_rand() % 16);
	SNAP("dn-one", &D);

	/* Written, then discarded before the snapshot: reported once, and not again. */
	tp_window_init(&E, "E", tp_map(48, PROT_READ | PROT_WRITE), 48);
	tp_write_some(&E, 0, 48, 50);
	SNAP("dw-before", &E);

	tp_write_some(&E, 0, 48, 40);
	discard(&E, 0, 48, MADV_DONTNEED);
	tp_expect_field("dw-discard", "discarded_bytes", 48 * TP_PAGE);
	SNAP("dw-discard", &E);

	tp_expect_field("dw-idle", "discarded_bytes", 0);
	SNAP("dw-idle", &E);

	/* Writes, partial discards and re-writes of the same pages in one interval: each page
	 * written in the interval once, whether it was discarded or not. */
	size_t a = tp_rand() % 16, an = 1 + tp_rand() % 24;
	size_t b = 20 + tp_rand() % 12, bn = 1 + tp_rand() % 16;
	tp_write_some(&E, 0, 48, 40);
	discard(&E, a, an, MADV_DONTNEED);
	tp_write_some(&E, 0, 48, 30);
	discard(&E, b, bn, MADV_DONTNEED);
	tp_write_some(&E, 0, 48, 20);
	tp_expect_field("dw-mixed", "discarded_bytes", (an + bn) * TP_PAGE);
	SNAP("dw-mixed", &E);

	tp_write_some(&E, 0, 48, 30);
	SNAP("dw-after", &E);

	/* MADV_FREE: lazily freed pages keep their write protection (or are dropped): a write
	 * before the advice is reported once, a later write again. */
	tp_window_init(&G, "G", tp_map(32, PROT_READ | PROT_WRITE), 32);
	tp_write_some(&G, 0, 32, 50);
	SNAP("fr-before", &G);

	tp_write_some(&G, 0, 32, 50);
	discard(&G, 0, 32, MADV_FREE);
	tp_expect_field("fr-free", "discarded_bytes", 32 * TP_PAGE);
	SNAP("fr-free", &G);

	tp_read_some(&G, 0, 32, 100);
	SNAP("fr-idle", &G);

	tp_write_some(&G, 0, 32, 40);
	SNAP("fr-write", &G);

	/* A run of written pages across a 2 MiB boundary (where the shim's page sets change
	 * chunk), discarded before the snapshot: still one merged run in "ranges". */
	char *big = tp_map(1024, PROT_READ | PROT_WRITE);
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
	tp_window_init(&H, "H", tp_map(24, PROT_READ | PROT_WRITE), 24);
	tp_window_init(&K, "K", tp_map(24, PROT_READ | PROT_WRITE), 24);
	tp_write_some(&H, 0, 24, 50);
	tp_write_some(&K, 0, 24, 50);
	SNAP("du-before", &H, &K);

	tp_write_some(&H, 0, 24, 50);
	size_t hw = 0;
	for (size_t i = 0; i < 24; i++)
		hw += H.written[i];
	discard(&H, 0, 24, MADV_DONTNEED);
	if (munmap((void *)H.start, 24 * TP_PAGE) != 0)
		tp_die("munmap");
	tp_window_init(&H, "H", (void *)H.start, 24);
	tp_write_some(&K, 0, 24, 50); /* a neighbour, written as usual */
	tp_expect_field("du-unmapped", "retired_written_bytes", hw * TP_PAGE);
	tp_expect_field("du-unmapped", "retired_bytes", 24 * TP_PAGE);
	tp_expect_field("du-unmapped", "discarded_bytes", 24 * TP_PAGE);
	SNAP("du-unmapped", &H, &K);
	return 0;
}
