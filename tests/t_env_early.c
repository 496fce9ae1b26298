/* libearly.so (C05): a library whose constructor runs before the shim may be up. It maps 8 pages
 * through the public mmap, writes pages 0 and 1, and starts a thread that writes pages 2-7 in
 * turn, one every millisecond, for the life of the process. Built as a shared library by the
 * Makefile (build/tests/libearly.so), not as a program. The target finds the region with
 * dlsym("early_region") (t_env_prog's "early" command). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096ul

static char *region;
static long writes;

__attribute__((visibility("default"))) char *early_region(void)
{
	return region;
}

__attribute__((visibility("default"))) long early_writes(void)
{
	return __atomic_load_n(&writes, __ATOMIC_ACQUIRE);
}

static void *writer(void *arg)
{
	(void)arg;
	struct timespec ms = {0, 1000000};
	for (unsigned long k = 0;; k++) {
		((volatile char *)region)[(2 + k % 6) * PAGE + k % 64] = (char)k;
		__atomic_add_fetch(&writes, 1, __ATOMIC_RELEASE);
		nanosleep(&ms, NULL);
	}
	return NULL;
}

__attribute__((constructor)) static void early_init(void)
{
	void *p = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return;
	region = p;
	region[0] = 1;
	region[PAGE] = 1;
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_create(&t, &attr, writer, NULL);
	pthread_attr_destroy(&attr);
}
