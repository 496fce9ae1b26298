/* Field case C15: one address range that mixes tracked memory, anonymous memory no hook saw
 * and a hole. A reserved range of 4 x 16 pages is laid out as
 *     A (tracked: hooked mmap MAP_FIXED) | B (raw syscall(SYS_mmap) MAP_FIXED) | hole | C (tracked)
 * and each gets one write per phase. A and C must be exact; B either discovered and exact, or
 * listed as untracked (the snapshot's untracked_bytes, or a lost region record), never all
 * written and never a silent 0; nothing in the hole; every snapshot succeeds. The Python test
 * decides between B's two answers; the truth recorded here is the exact one.
 * Three layouts:
 *   fresh:    the reservation is a raw syscall too; A, B, C made in one interval (A and B,
 *             alike and unregistered, merge into one VMA);
 *   armed:    the same, with a snapshot between A and B (A is registered first: B's VMA is a
 *             separate, unregistered neighbour);
 *   replaced: the reservation is a hooked (tracked) PROT_NONE mmap, armed by a snapshot, and
 *             B replaces part of it behind the hooks' back.
 * Usage: t_case_mixed SEED */
#define _GNU_SOURCE
#include "tprog.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#define PIECE 16 /* pages */
#define RW (PROT_READ | PROT_WRITE)
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)

static struct tp_window A, B, H, C;

static void *raw_mmap(void *addr, size_t len, int prot, int flags)
{
	long r = syscall(SYS_mmap, addr, len, prot, flags, -1, 0); /* -1 and errno on failure */
	return r == -1 ? MAP_FAILED : (void *)r;
}

static void fixed(void *at, int raw, const char *what)
{
	void *p = raw ? raw_mmap(at, PIECE * TP_PAGE, RW, ANON | MAP_FIXED)
		      : mmap(at, PIECE * TP_PAGE, RW, ANON | MAP_FIXED, -1, 0);
	if (p == MAP_FAILED)
		tp_die(what);
	if (p != at) {
		errno = 0;
		tp_die(what);
	}
}

static void write_one(struct tp_window *w)
{
	tp_write(w, tp_rand() % PIECE);
}

static void layout(const char *name)
{
	char label[64];
	size_t len = 4 * PIECE * TP_PAGE;
	int replaced = !strcmp(name, "replaced"), armed = !strcmp(name, "armed");
	char *r = replaced ? mmap(NULL, len, PROT_NONE, ANON, -1, 0)
			   : raw_mmap(NULL, len, PROT_NONE, ANON);
	if (r == MAP_FAILED)
		tp_die("reserve");
	tp_window_init(&A, "A", r, PIECE);
	tp_window_init(&B, "B", r + PIECE * TP_PAGE, PIECE);
	tp_window_init(&H, "hole", r + 2 * PIECE * TP_PAGE, PIECE);
	tp_window_init(&C, "C", r + 3 * PIECE * TP_PAGE, PIECE);
	if (replaced) { /* the reservation is tracked and armed before B replaces part of it */
		snprintf(label, sizeof label, "mx-%s-reserved", name);
		TWIN_SNAP(label, &A, &B, &H, &C);
	}
	fixed(r, 0, "mmap A");
	if (armed) {
		write_one(&A);
		snprintf(label, sizeof label, "mx-%s-a", name);
		TWIN_SNAP(label, &A, &B, &H, &C);
	}
	fixed(r + PIECE * TP_PAGE, 1, "raw mmap B");
	if (munmap(r + 2 * PIECE * TP_PAGE, PIECE * TP_PAGE) != 0)
		tp_die("munmap the hole");
	fixed(r + 3 * PIECE * TP_PAGE, 0, "mmap C");

	write_one(&A);
	write_one(&B);
	write_one(&C);
	snprintf(label, sizeof label, "mx-%s-write", name);
	TWIN_SNAP(label, &A, &B, &H, &C);

	write_one(&A);
	write_one(&B);
	write_one(&C);
	tp_read_some(&A, 0, PIECE, 100);
	tp_read_some(&B, 0, PIECE, 100);
	tp_read_some(&C, 0, PIECE, 100);
	snprintf(label, sizeof label, "mx-%s-again", name);
	TWIN_SNAP(label, &A, &B, &H, &C);

	snprintf(label, sizeof label, "mx-%s-idle", name);
	TWIN_SNAP(label, &A, &B, &H, &C);

	/* One write each, then the whole range unmapped by one hooked munmap: every write retires
	 * (if B is tracked by now: the Python test checks these figures only then). */
	write_one(&A);
	write_one(&B);
	write_one(&C);
	if (munmap(r, len) != 0)
		tp_die("munmap all");
	snprintf(label, sizeof label, "mx-%s-unmap", name);
	tp_expect_field(label, "retired_written_bytes", 3 * TP_PAGE);
	tp_expect_field(label, "retired_bytes", 3 * PIECE * TP_PAGE);
	tp_window_init(&A, "A", r, PIECE);
	tp_window_init(&B, "B", r + PIECE * TP_PAGE, PIECE);
	tp_window_init(&C, "C", r + 3 * PIECE * TP_PAGE, PIECE);
	TWIN_SNAP(label, &A, &B, &H, &C);
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	tp_seed(seed);
	tp_open();
	layout("fresh");
	layout("armed");
	layout("replaced");
	return 0;
}
