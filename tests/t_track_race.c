/* Writer threads racing snapshots. NTHREADS threads store to random pages of their own region
 * without pause while the main thread takes NSNAP API snapshots ("race-1".."race-NSNAP"), then
 * "race-quiesce" once they have stopped. Around each store a thread reads how many snapshots
 * have completed, before (k0) and after (k1) the store, and the clock after it. That bounds in
 * which snapshot the store can show up, and gives three checks (tests/test_tracking.py):
 *  - a store after snapshot k completed appears in some snapshot > k (per page, the last k0);
 *  - a store after snapshot k completed and before snapshot k+1 was called (by the clock, with
 *    a margin) appears in snapshot k+1 itself ("must");
 *  - a page reported in snapshot j had a store that could fall in interval j: k0 < j <= k1 + 2
 *    ("possible"; k1 + 2 because done=k1+1 is published before snapshot k1+2 starts).
 * Finally each thread writes a recorded burst and "race-final" must report exactly that.
 * The per-page records go to $WW_EXPECT.race. Usage: t_track_race SEED */
#define _GNU_SOURCE
#include "tprog.h"

#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#define NTHREADS 3
#define NPAGES 4096
#define NSNAP 40
#define MARGIN_NS 50000 /* clocks of two CPUs need not agree to the nanosecond */

struct writer {
	struct tp_window w;
	int last[NPAGES];                      /* the last store's k0, or -1 */
	uint64_t first_t[NSNAP + 1][NPAGES];   /* earliest clock after a store with k0 == k */
	unsigned char poss[NSNAP + 2][NPAGES]; /* a store could show in snapshot j */
	uint64_t rng;
	unsigned long stores;
	pthread_t tid;
};

static struct writer writers[NTHREADS];
static uint64_t t_call[NSNAP + 2]; /* clock just before calling racing snapshot j */
static pthread_barrier_t bar;
static int done_snaps; /* racing snapshots completed */
static int stop;

static uint64_t next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *writer_main(void *arg)
{
	struct writer *me = arg;
	pthread_barrier_wait(&bar); /* main: race-0 */
	pthread_barrier_wait(&bar);
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		size_t i = next(&me->rng) % NPAGES;
		int k0 = __atomic_load_n(&done_snaps, __ATOMIC_SEQ_CST);
		volatile char *p = (volatile char *)(me->w.start + i * TP_PAGE);
		p[(me->stores * 64) % TP_PAGE] = (char)me->stores;
		int k1 = __atomic_load_n(&done_snaps, __ATOMIC_SEQ_CST);
		uint64_t t = now_ns();
		if (t < me->first_t[k0][i])
			me->first_t[k0][i] = t;
		for (int j = k0 + 1; j <= k1 + 2 && j <= NSNAP + 1; j++)
			me->poss[j][i] = 1;
		me->last[i] = k0;
		me->stores++;
	}
	pthread_barrier_wait(&bar); /* stopped; main: race-quiesce */
	pthread_barrier_wait(&bar);
	for (size_t i = 0; i < NPAGES; i++) /* the final burst, recorded exactly */
		if (next(&me->rng) % 100 < 20)
			tp_write(&me->w, i);
	pthread_barrier_wait(&bar); /* main: race-final */
	return NULL;
}

static void list(FILE *f, const char *name, int n, int (*pick)(struct writer *, int, int),
		 struct writer *w)
{
	fprintf(f, ",\"%s\":[", name);
	for (int j = 0; j < n; j++) {
		fprintf(f, j ? ",[" : "[");
		int first = 1;
		for (int i = 0; i < NPAGES; i++)
			if (pick(w, j, i)) {
				fprintf(f, first ? "%d" : ",%d", i);
				first = 0;
			}
		fprintf(f, "]");
	}
	fprintf(f, "]");
}

/* must[k]: stored after snapshot k completed and (by the clock) before k+1 was called. */
static int pick_must(struct writer *w, int k, int i)
{
	return w->first_t[k][i] != UINT64_MAX && w->first_t[k][i] + MARGIN_NS < t_call[k + 1];
}

static int pick_poss(struct writer *w, int j, int i)
{
	return w->poss[j][i];
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	tp_seed(seed);
	tp_open();
	struct tp_window *ws[NTHREADS];
	static const char *names[NTHREADS] = {"writer-0", "writer-1", "writer-2"};
	pthread_barrier_init(&bar, NULL, NTHREADS + 1);
	for (int t = 0; t < NTHREADS; t++) {
		struct writer *w = &writers[t];
		void *p = mmap(NULL, NPAGES * TP_PAGE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			tp_die("mmap");
		/* Where THP is "always" one store would make a whole 2 MiB block present. */
		if (madvise(p, NPAGES * TP_PAGE, MADV_NOHUGEPAGE) != 0)
			tp_die("madvise");
		tp_window_init(&w->w, names[t], p, NPAGES);
		for (size_t i = 0; i < NPAGES; i++) {
			w->last[i] = -1;
			for (int k = 0; k <= NSNAP; k++)
				w->first_t[k][i] = UINT64_MAX;
		}
		w->rng = seed * 0x9e3779b97f4a7c15ull + (uint64_t)t + 1;
		ws[t] = &w->w;
		if (pthread_create(&w->tid, NULL, writer_main, w) != 0)
			tp_die("pthread_create");
	}
	pthread_barrier_wait(&bar);
	tp_snapshot("race-0", ws, NTHREADS); /* nothing written yet */
	pthread_barrier_wait(&bar);
	char label[32];
	for (int k = 1; k <= NSNAP; k++) {
		usleep(2000); /* room for "must" stores between snapshots */
		snprintf(label, sizeof label, "race-%d", k);
		t_call[k] = now_ns();
		if (writewatch_snapshot(label) != 0)
			tp_die("writewatch_snapshot");
		__atomic_store_n(&done_snaps, k, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	pthread_barrier_wait(&bar);
	t_call[NSNAP + 1] = now_ns();
	if (writewatch_snapshot("race-quiesce") != 0)
		tp_die("writewatch_snapshot");
	pthread_barrier_wait(&bar);
	pthread_barrier_wait(&bar);
	tp_snapshot("race-final", ws, NTHREADS);
	for (int t = 0; t < NTHREADS; t++)
		pthread_join(writers[t].tid, NULL);

	const char *ex = getenv("WW_EXPECT");
	char path[1024];
	snprintf(path, sizeof path, "%s.race", ex ? ex : "/dev/null");
	FILE *f = fopen(ex ? path : "/dev/null", "w");
	if (!f)
		tp_die("open race file");
	for (int t = 0; t < NTHREADS; t++) {
		struct writer *w = &writers[t];
		fprintf(f, "{\"window\":\"%s\",\"start\":\"0x%lx\",\"npages\":%d,\"stores\":%lu,"
			   "\"snapshots\":%d,\"last\":[",
			w->w.name, (unsigned long)w->w.start, NPAGES, w->stores, NSNAP);
		for (size_t i = 0; i < NPAGES; i++)
			fprintf(f, i ? ",%d" : "%d", w->last[i]);
		fprintf(f, "]");
		list(f, "must", NSNAP + 1, pick_must, w);
		list(f, "possible", NSNAP + 2, pick_poss, w);
		fprintf(f, "}\n");
	}
	fclose(f);
	return 0;
}
