/* Exact tracking of memory the program maps through the hooked mmap family: random writes,
 * re-writes, pages only read, untouched pages, partial munmap, mremap moves (MAYMOVE, and
 * MAYMOVE|FIXED onto a reservation and onto written memory), MAP_FIXED over half a region and
 * mprotect cycles. Every phase ends with an API snapshot whose written set the program records
 * exactly (tests/tprog.h). Usage: t_track_mmap SEED */
#define _GNU_SOURCE
#include "tprog.h"

#include <sys/mman.h>

static size_t count_written(const struct tp_window *w, size_t from, size_t to)
{
	size_t n = 0;
	for (size_t i = from; i < to; i++)
		n += w->written[i];
	return n;
}

/* Make the page right after [p, p+pages) unavailable so that growing p must move it. */
/* Make sure the page after [p, p + pages) is taken, so that growing p must move it. Returns
 * the guard page mapped for it, or NULL when something else already is there. */
static void *block_after(void *p, size_t pages)
{
	void *g = mmap((char *)p + pages * TP_PAGE, TP_PAGE, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (g == MAP_FAILED && errno != EEXIST)
		tp_die("mmap guard");
	return g == MAP_FAILED ? NULL : g;
}

/* Grow p from `from` to `to` pages with MREMAP_MAYMOVE, which must move it (a page after it is
 * taken: block_after). */
static char *grow_and_move(char *p, size_t from, size_t to)
{
	char *n = mremap(p, from * TP_PAGE, to * TP_PAGE, MREMAP_MAYMOVE);
	if (n == MAP_FAILED)
		tp_die("mremap");
	if (n == p) {
		errno = 0;
		tp_die("mremap grew in place despite the guard page");
	}
	return n;
}

static struct tp_window A, B, C, U, Mlo, Mmid, Mhi, R1, N1, R2, N2, S3, T3, F, P, Q, M3;

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	tp_seed(seed);
	tp_open(); /* stdio's buffers exist before the first phase: no allocation noise later */

	/* ---- random writes over several regions; re-writes; reads; untouched pages ---- */
	tp_window_init(&A, "A", tp_map(200, PROT_READ | PROT_WRITE), 200);
	tp_window_init(&B, "B", tp_map(50, PROT_READ | PROT_WRITE), 50);
	tp_window_init(&C, "C", tp_map(333, PROT_READ | PROT_WRITE), 333);
	tp_window_init(&U, "U", tp_map(100, PROT_READ | PROT_WRITE), 100);
	tp_write_some(&A, 0, 200, 30);
	tp_write_some(&B, 0, 50, 50);
	tp_write_some(&C, 0, 333, 10);
	SNAP("mm-write", &A, &B, &C, &U);

	tp_write_some(&A, 0, 200, 20);
	tp_write_some(&B, 0, 50, 20);
	tp_write_some(&C, 0, 333, 20);
	tp_read_some(&A, 0, 200, 50);
	tp_read_some(&B, 0, 50, 50);
	tp_read_some(&C, 0, 333, 50);
	tp_read_some(&U, 0, 100, 100); /* every page of U read, none written: the zero page */
	SNAP("mm-rewrite", &A, &B, &C, &U);

	tp_read_some(&A, 0, 200, 100);
	tp_read_some(&B, 0, 50, 100);
	tp_read_some(&C, 0, 333, 100);
	tp_read_some(&U, 0, 100, 100);
	SNAP("mm-read-only", &A, &B, &C, &U);

	tp_write_some(&U, 0, 100, 10); /* zero-page mappings written: copy on write, reported */
	SNAP("mm-zero-then-write", &A, &B, &C, &U);

	/* ---- partial munmap: the middle third of a 90-page region goes ---- */
	char *m = tp_map(90, PROT_READ | PROT_WRITE);
	tp_window_init(&Mlo, "M-low", m, 30);
	tp_window_init(&Mmid, "M-mid", m + 30 * TP_PAGE, 30);
	tp_window_init(&Mhi, "M-high", m + 60 * TP_PAGE, 30);
	tp_write_some(&Mlo, 0, 30, 40);
	tp_write_some(&Mmid, 0, 30, 40);
	tp_write_some(&Mhi, 0, 30, 40);
	SNAP("un-before", &Mlo, &Mmid, &Mhi);

	tp_write_some(&Mlo, 0, 30, 40);
	tp_write_some(&Mmid, 0, 30, 40);
	tp_write_some(&Mhi, 0, 30, 40);
	size_t mid_written = count_written(&Mmid, 0, 30);
	if (munmap(m + 30 * TP_PAGE, 30 * TP_PAGE) != 0)
		tp_die("munmap");
	tp_window_init(&Mmid, "M-mid", m + 30 * TP_PAGE, 30); /* gone: nothing may be reported */
	tp_write_some(&Mlo, 0, 30, 40);
	tp_write_some(&Mhi, 0, 30, 40);
	tp_expect_field("un-after", "retired_written_bytes", mid_written * TP_PAGE);
	tp_expect_field("un-after", "retired_bytes", 30 * TP_PAGE);
	tp_expect_field("un-after", "retired_regions", 1);
	tp_expect_field("un-after", "new_regions", 1); /* the high third: a region of its own */
	SNAP("un-after", &Mlo, &Mmid, &Mhi);

	tp_write_some(&Mlo, 0, 30, 40);
	tp_write_some(&Mhi, 0, 30, 40);
	tp_expect_field("un-next", "retired_written_bytes", 0);
	tp_expect_field("un-next", "retired_bytes", 0);
	SNAP("un-next", &Mlo, &Mmid, &Mhi);

	/* ---- mremap grow-and-move (MREMAP_MAYMOVE) of a 64-page region ---- */
	char *r1 = tp_map(64, PROT_READ | PROT_WRITE);
	block_after(r1, 64);
	tp_window_init(&R1, "R1-old", r1, 64);
	tp_write_some(&R1, 0, 64, 40);
	SNAP("mr1-before", &R1);

	tp_write_some(&R1, 0, 64, 40);
	char *n1 = grow_and_move(r1, 64, 128);
	tp_window_init(&N1, "R1-new", n1, 128);
	for (size_t i = 0; i < 64; i++) /* written before the move: reported at the new address */
		if (R1.written[i])
			tp_mark(&N1, i);
	tp_window_init(&R1, "R1-old", r1, 64); /* nothing at the old address */
	tp_write(&N1, 50);
	tp_expect_field("mr1-move", "retired_bytes", 0);
	tp_expect_field("mr1-move", "retired_written_bytes", 0);
	SNAP("mr1-move", &R1, &N1);

	tp_write_some(&N1, 0, 128, 30); /* the moved pages were re-armed: only these count */
	SNAP("mr1-after", &R1, &N1);

	/* ---- mremap MAYMOVE|FIXED to an address reserved with PROT_NONE ---- */
	char *r2 = tp_map(64, PROT_READ | PROT_WRITE);
	char *dest = tp_map(128, PROT_NONE);
	tp_window_init(&R2, "R2-old", r2, 64);
	tp_write_some(&R2, 0, 64, 40);
	SNAP("mr2-before", &R2);

	tp_write_some(&R2, 0, 64, 40);
	char *n2 = mremap(r2, 64 * TP_PAGE, 128 * TP_PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
	if (n2 == MAP_FAILED)
		tp_die("mremap fixed");
	if (n2 != dest) {
		errno = 0;
		tp_die("mremap MREMAP_FIXED did not honour the address");
	}
	tp_window_init(&N2, "R2-new", n2, 128);
	for (size_t i = 0; i < 64; i++)
		if (R2.written[i])
			tp_mark(&N2, i);
	tp_window_init(&R2, "R2-old", r2, 64);
	tp_write(&N2, 50);
	/* The reservation was a tracked region, replaced by the move: it retires, unwritten. */
	tp_expect_field("mr2-fixed", "retired_bytes", 128 * TP_PAGE);
	tp_expect_field("mr2-fixed", "retired_regions", 1);
	tp_expect_field("mr2-fixed", "retired_written_bytes", 0);
	SNAP("mr2-fixed", &R2, &N2);

	tp_write_some(&N2, 0, 128, 30);
	SNAP("mr2-after", &R2, &N2);

	/* ---- mremap MAYMOVE|FIXED onto memory written in the same interval ---- */
	char *s3 = tp_map(32, PROT_READ | PROT_WRITE);
	char *t3 = tp_map(64, PROT_READ | PROT_WRITE);
	tp_window_init(&S3, "S3", s3, 32);
	tp_window_init(&T3, "T3", t3, 64);
	tp_write_some(&S3, 0, 32, 50);
	tp_write_some(&T3, 0, 64, 50);
	SNAP("mr3-before", &S3, &T3);

	tp_write_some(&S3, 0, 32, 50);
	tp_write_some(&T3, 0, 64, 50);
	size_t t3_written = count_written(&T3, 0, 64);
	if (mremap(s3, 32 * TP_PAGE, 64 * TP_PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, t3) != t3)
		tp_die("mremap onto written memory");
	tp_window_init(&T3, "T3", t3, 64); /* its old contents are gone; S3's moved in */
	for (size_t i = 0; i < 32; i++)
		if (S3.written[i])
			tp_mark(&T3, i);
	tp_window_init(&S3, "S3", s3, 32);
	tp_write(&T3, 40);
	tp_expect_field("mr3-fixed", "retired_written_bytes", t3_written * TP_PAGE);
	tp_expect_field("mr3-fixed", "retired_bytes", 64 * TP_PAGE);
	tp_expect_field("mr3-fixed", "retired_regions", 1);
	SNAP("mr3-fixed", &S3, &T3);

	/* ---- MAP_FIXED anonymous over the second half of a tracked region ---- */
	char *f = tp_map(64, PROT_READ | PROT_WRITE);
	tp_window_init(&F, "F", f, 64);
	tp_write_some(&F, 0, 64, 40);
	SNAP("mf-before", &F);

	tp_write_some(&F, 0, 64, 40);
	size_t f_high = count_written(&F, 32, 64);
	if (mmap(f + 32 * TP_PAGE, 32 * TP_PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != f + 32 * TP_PAGE)
		tp_die("mmap MAP_FIXED");
	memset(F.written + 32, 0, 32); /* the old second half is gone */
	tp_write(&F, 32 + tp_rand() % 32);
	tp_expect_field("mf-fixed", "retired_written_bytes", f_high * TP_PAGE);
	tp_expect_field("mf-fixed", "retired_bytes", 32 * TP_PAGE);
	tp_expect_field("mf-fixed", "retired_regions", 1);
	SNAP("mf-fixed", &F);

	tp_write_some(&F, 0, 64, 30);
	SNAP("mf-after", &F);

	/* ---- mprotect: PROT_READ made RW; RW->RO->RW; a split; PROT_NONE made RW ---- */
	char *pp = tp_map(64, PROT_READ);
	char *qq = tp_map(32, PROT_NONE);
	tp_window_init(&P, "P", pp, 64);
	tp_window_init(&Q, "Q", qq, 32);
	tp_read_some(&P, 0, 64, 100);
	SNAP("mp-ro", &P, &Q);

	if (mprotect(pp, 64 * TP_PAGE, PROT_READ | PROT_WRITE) != 0 ||
	    mprotect(qq, 32 * TP_PAGE, PROT_READ | PROT_WRITE) != 0)
		tp_die("mprotect rw");
	tp_write_some(&P, 0, 64, 40);
	tp_write_some(&Q, 0, 32, 40);
	SNAP("mp-rw", &P, &Q);

	if (mprotect(pp, 64 * TP_PAGE, PROT_READ) != 0)
		tp_die("mprotect ro");
	tp_read_some(&P, 0, 64, 100);
	SNAP("mp-cycle-ro", &P, &Q);

	if (mprotect(pp, 64 * TP_PAGE, PROT_READ | PROT_WRITE) != 0)
		tp_die("mprotect rw again");
	tp_write_some(&P, 0, 64, 40);
	SNAP("mp-cycle-rw", &P, &Q);

	if (mprotect(pp + 20 * TP_PAGE, 20 * TP_PAGE, PROT_READ) != 0)
		tp_die("mprotect split");
	tp_write_some(&P, 0, 20, 40);
	tp_write_some(&P, 40, 64, 40);
	tp_read_some(&P, 20, 40, 100);
	SNAP("mp-split", &P, &Q);

	if (mprotect(pp, 64 * TP_PAGE, PROT_READ | PROT_WRITE) != 0)
		tp_die("mprotect unsplit");
	tp_write_some(&P, 0, 64, 40);
	tp_write_some(&Q, 0, 32, 40);
	SNAP("mp-joined", &P, &Q);

	/* ---- made, written, grown and moved, written again, all in one interval: reported once
	 * at the new address, as a new region; then the same again, unmapped before the snapshot:
	 * each page once in retired_written_bytes (written before and after the move) ---- */
	for (int round = 0; round < 2; round++) {
		char *m = tp_map(16, PROT_READ | PROT_WRITE);
		void *guard = block_after(m, 16);
		memset(m, 1, 16 * TP_PAGE);
		char *moved = grow_and_move(m, 16, 64);
		if (guard)
			munmap(guard, TP_PAGE);
		tp_window_init(&M3, "M3", moved, 64);
		for (size_t i = 0; i < 64; i++)
			tp_write(&M3, i);
		if (round == 0) {
			SNAP("mm-moved", &M3);
			if (munmap(moved, 64 * TP_PAGE) != 0)
				tp_die("munmap");
			tp_window_init(&M3, "M3", moved, 64);
			SNAP("mm-unmapped-later", &M3);
		} else {
			if (munmap(moved, 64 * TP_PAGE) != 0)
				tp_die("munmap");
			tp_window_init(&M3, "M3", moved, 64);
			tp_expect_field("mm-gone", "retired_written_bytes", 64 * TP_PAGE);
			/* and the guard page if ours, mapped and unmapped in this interval */
			tp_expect_field("mm-gone", "retired_bytes", (guard ? 65 : 64) * TP_PAGE);
			SNAP("mm-gone", &M3);
		}
	}
	return 0;
}
