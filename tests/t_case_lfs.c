/* Field case C02, built as a large-file program: with _FILE_OFFSET_BITS=64 glibc's headers
 * turn every mmap() into a call to mmap64 (checked below), so this is what such programs do:
 * anonymous memory from mmap64 (exact pages), a sparse file mapped at offset 6 GiB (the marker
 * read back intact: an offset cut to 32 bits would land on the decoy written at 2 GiB), the
 * 5-argument mremap with MREMAP_MAYMOVE|MREMAP_FIXED to a free address (the address
 * honoured, the pages exact there, nothing at the old address) and munmap of the middle third
 * of a region, then writes to the rest (nothing reported in the third, its writes retired).
 * The file is made in the current directory. Exit 77: the file system cannot hold the sparse
 * file. Usage: t_case_lfs SEED */
#define _FILE_OFFSET_BITS 64
#define _GNU_SOURCE
#include "tprog.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>

#define GIB (1ull << 30)
#define HIGH_OFF (6 * GIB)
#define LOW_OFF (HIGH_OFF & 0xffffffffull) /* where a truncated offset would point: 2 GiB */

static const char high_marker[] = "writewatch C02 marker at 6 GiB";
static const char low_marker[] = "decoy at 2 GiB: the offset was cut to 32 bits";

static struct tp_window A, F, R, N, Mlo, Mmid, Mhi;

static void fail(const char *what)
{
	errno = 0;
	tp_die(what);
}

static size_t count_written(const struct tp_window *w)
{
	size_t n = 0;
	for (size_t i = 0; i < w->npages; i++)
		n += w->written[i];
	return n;
}

/* The mapping of the sparse file at 6 GiB, read (shared) and written (private, copy on write:
 * file-backed, not tracked). Returns the bytes that differ from the marker. */
static void sparse_file(void)
{
	int fd = open("sparse.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		tp_die("open sparse.dat");
	if (ftruncate(fd, (off_t)(HIGH_OFF + 2 * TP_PAGE)) != 0) {
		fprintf(stderr, "t_case_lfs: cannot make a sparse file past 6 GiB here: %s\n",
			strerror(errno));
		exit(77);
	}
	if (pwrite(fd, low_marker, sizeof low_marker, (off_t)LOW_OFF) != (ssize_t)sizeof low_marker ||
	    pwrite(fd, high_marker, sizeof high_marker, (off_t)HIGH_OFF) !=
		    (ssize_t)sizeof high_marker)
		tp_die("pwrite");
	char *ro = mmap(NULL, TP_PAGE, PROT_READ, MAP_SHARED, fd, (off_t)HIGH_OFF);
	if (ro == MAP_FAILED)
		tp_die("mmap the file at 6 GiB");
	char *pv = mmap64(NULL, 2 * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
			  (off64_t)HIGH_OFF);
	if (pv == MAP_FAILED)
		tp_die("mmap64 the file at 6 GiB");
	printf("shared mapping at 6 GiB reads: %s\n", ro);
	printf("private mapping at 6 GiB reads: %s\n", pv);
	if (memcmp(ro, high_marker, sizeof high_marker) || memcmp(pv, high_marker, sizeof high_marker))
		fail("the marker at 6 GiB did not read back intact");
	pv[TP_PAGE] = 1; /* a copy-on-write page of a file mapping */
	if (memcmp(ro, high_marker, sizeof high_marker))
		fail("the shared mapping changed");
	munmap(ro, TP_PAGE);
	munmap(pv, 2 * TP_PAGE);
	close(fd);
	unlink("sparse.dat");
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	tp_seed(seed);
	tp_open();
	/* The point of the build: the program's mmap is the mmap64 symbol. */
	void *(*called)(void *, size_t, int, int, int, off_t) = mmap;
	if ((void *)called != dlsym(RTLD_DEFAULT, "mmap64"))
		fail("mmap() does not call mmap64 in a _FILE_OFFSET_BITS=64 build");
	printf("t_case_lfs seed %lu: sizeof(off_t) %zu\n", (unsigned long)seed, sizeof(off_t));

	/* ---- anonymous memory from mmap64 (both spellings) ---- */
	tp_window_init(&A, "A", tp_map(64, PROT_READ | PROT_WRITE), 64);
	char *f = mmap64(NULL, 40 * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	if (f == MAP_FAILED)
		tp_die("mmap64");
	tp_window_init(&F, "F", f, 40);
	tp_write_some(&A, 0, 64, 40);
	tp_write_some(&F, 0, 40, 40);
	TWIN_SNAP("lfs-anon", &A, &F);

	tp_write_some(&A, 0, 64, 30);
	tp_write_some(&F, 0, 40, 30);
	tp_read_some(&A, 0, 64, 50);
	TWIN_SNAP("lfs-anon-again", &A, &F);

	/* ---- a sparse file mapped at 6 GiB, beside tracked memory ---- */
	sparse_file();
	tp_write_some(&A, 0, 64, 20);
	TWIN_SNAP("lfs-file", &A, &F);

	/* ---- mremap(MAYMOVE|FIXED) to a free address ---- */
	char *r = tp_map(32, PROT_READ | PROT_WRITE);
	char *dest = tp_map(64, PROT_NONE); /* find a free range, then free it */
	if (munmap(dest, 64 * TP_PAGE) != 0)
		tp_die("munmap dest");
	tp_window_init(&R, "R-old", r, 32);
	tp_window_init(&N, "R-new", dest, 64);
	tp_write_some(&R, 0, 32, 50);
	TWIN_SNAP("lfs-mr-before", &R, &N);

	tp_write_some(&R, 0, 32, 50);
	char *n = mremap(r, 32 * TP_PAGE, 64 * TP_PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
	if (n == MAP_FAILED)
		tp_die("mremap MAYMOVE|FIXED");
	if (n != dest)
		fail("mremap MREMAP_FIXED did not honour the new address");
	for (size_t i = 0; i < 32; i++) /* written in this interval before the move: carried */
		if (R.written[i])
			tp_mark(&N, i);
	tp_window_init(&R, "R-old", r, 32); /* nothing at the old address */
	tp_write(&N, 40);
	tp_expect_field("lfs-mr-fixed", "retired_bytes", 0);
	tp_expect_field("lfs-mr-fixed", "retired_written_bytes", 0);
	TWIN_SNAP("lfs-mr-fixed", &R, &N);

	tp_write_some(&N, 0, 64, 30);
	TWIN_SNAP("lfs-mr-after", &R, &N);
	if (munmap(n, 64 * TP_PAGE) != 0)
		tp_die("munmap moved");

	/* ---- munmap of the middle third, then writes to the rest ---- */
	char *m = tp_map(90, PROT_READ | PROT_WRITE);
	tp_window_init(&Mlo, "M-low", m, 30);
	tp_window_init(&Mmid, "M-mid", m + 30 * TP_PAGE, 30);
	tp_window_init(&Mhi, "M-high", m + 60 * TP_PAGE, 30);
	tp_write_some(&Mlo, 0, 30, 50);
	tp_write_some(&Mmid, 0, 30, 50);
	tp_write_some(&Mhi, 0, 30, 50);
	TWIN_SNAP("lfs-un-before", &Mlo, &Mmid, &Mhi);

	tp_write_some(&Mmid, 0, 30, 50);
	size_t mid_written = count_written(&Mmid);
	if (munmap(m + 30 * TP_PAGE, 30 * TP_PAGE) != 0)
		tp_die("munmap the middle third");
	tp_window_init(&Mmid, "M-mid", m + 30 * TP_PAGE, 30); /* gone: nothing may be reported */
	tp_write_some(&Mlo, 0, 30, 50);
	tp_write_some(&Mhi, 0, 30, 50);
	tp_expect_field("lfs-un-after", "retired_written_bytes", mid_written * TP_PAGE);
	tp_expect_field("lfs-un-after", "retired_bytes", 30 * TP_PAGE);
	tp_expect_field("lfs-un-after", "retired_regions", 1);
	TWIN_SNAP("lfs-un-after", &Mlo, &Mmid, &Mhi);

	tp_write_some(&Mlo, 0, 30, 50);
	tp_write_some(&Mhi, 0, 30, 50);
	TWIN_SNAP("lfs-un-next", &Mlo, &Mmid, &Mhi);
	printf("done\n");
	return 0;
}
