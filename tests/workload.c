/* The bundled demo workload (make demo): a small program with recognisable write phases, a
 * bulk fill, a hot spot, heap churn and a sparse table, each closed by an API snapshot. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "writewatch.h"

static void phase(const char *label)
{
	if (writewatch_snapshot(label) != 0)
		perror("writewatch_snapshot (is the shim loaded?)");
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

int main(void)
{
	const size_t fill = 32u << 20, sparse = 256u << 20;
	unsigned long checksum = 0;

	/* 1. fill: 32 MiB written once, front to back. */
	unsigned char *big = malloc(fill);
	if (!big)
		return 1;
	memset(big, 1, fill);
	phase("fill");

	/* 2. hot: the same 1 MiB rewritten, across several intervals. */
	for (int round = 0; round < 5; round++) {
		for (size_t i = 0; i < (1u << 20); i += 64)
			big[i] = (unsigned char)round;
		sleep_ms(60);
	}
	phase("hot");

	/* 3. churn: 1 MiB buffers allocated, filled and freed: written, then thrown away. */
	for (int i = 0; i < 200; i++) {
		unsigned char *tmp = mmap(NULL, 1u << 20, PROT_READ | PROT_WRITE,
					  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (tmp == MAP_FAILED)
			return 1;
		memset(tmp, i, 1u << 20);
		checksum += tmp[i];
		munmap(tmp, 1u << 20);
	}
	phase("churn");

	/* 4. sparse: a 256 MiB table with one page in 64 written. */
	unsigned char *table = mmap(NULL, sparse, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (table == MAP_FAILED)
		return 1;
	for (size_t off = 0; off < sparse; off += 64 * 4096)
		table[off] = 7;
	phase("sparse");

	munmap(table, sparse);
	free(big);
	printf("workload done (checksum %lu)\n", checksum);
	return 0;
}
