/* Stress (tests/test_stress.py): NTHREADS threads map, write, remap (grow in place or moved, and
 * moved onto a reservation with MREMAP_FIXED), discard, mprotect, replace (MAP_FIXED) and unmap
 * in a storm, malloc/calloc/realloc/free large (glibc-mapped) and small blocks, and start
 * short-lived threads, while snapshots come by timer (the test sets WRITEWATCH_INTERVAL_MS=1),
 * by signal (a thread of ours sends the trigger, SIGUSR2, RATE times a second; the test may send
 * more) and by API (threads 0-2 every few ms). The program's data is checked: every page of a
 * region holds 0 or its stamp (region tag + page index), every block its pattern, so a shim that
 * moved, lost or scribbled on program memory fails the run.
 * Options after SECONDS:
 *   fork    threads 3 and 4 fork children that map a window, take "child-0", write a recorded
 *           page set, take "child-1" (truth in $WW_EXPECT.PID) and exit(0)
 *   exec    thread 5 forks children that execv /bin/true; thread 6 posix_spawns /bin/true
 *   alrm    a 100 us SIGALRM interval timer whose handler (no SA_RESTART: it interrupts every
 *           call) stores to memory and, every 16th time, maps, writes and unmaps a page
 *   rate=N  trigger signals per second from our sender thread (default 500; 0 = none)
 * After SECONDS the storm stops; each thread checks its data, makes its slots writable and adds
 * final windows (a fresh mmap, a region moved by mremap, a large malloc block, a block grown by
 * realloc); main takes "quiesce"; the threads write a recorded page set once into all of them
 * (and discard part of the fresh one); main takes "final". The 1 ms timer keeps running, so
 * test_stress.py checks the union of the snapshots after "quiesce" up to "final": exactly the
 * recorded pages in every window, each reported once.
 * Prints "stress seconds=... ops=... failures=0" and exits 0 when every check inside passed.
 * Usage: t_stress SECONDS [fork] [exec] [alrm] [rate=N] */
#define _GNU_SOURCE
#include "tprog.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

#define NTHREADS 8
#define NSLOTS 12
#define MAXPAGES 256
#define NBIG 4
#define NSMALL 16
#define NFINAL 4 /* final windows besides the slots */
#define ALRM_PAGES 64

extern char **environ;

struct slot {
	char *p;
	size_t pages;
	uint64_t tag;
	bool ro;
};

struct blk {
	char *p;
	size_t n;
	uint64_t tag;
};

struct worker {
	int id;
	pthread_t tid;
	uint64_t rng;
	struct slot s[NSLOTS];
	struct blk big[NBIG], small[NSMALL];
	struct tp_window w[NSLOTS + NFINAL];
	size_t nw;
	unsigned long ops, maps, fixed, unmaps, remaps, moves, discards, protects, writes;
	unsigned long mallocs, frees, reallocs, threads, snaps, forks, execs, spawns;
	uint64_t next_snap, next_fork, next_exec, next_thread;
};

static struct worker workers[NTHREADS];
static pthread_barrier_t bar;
static int stop_storm, stop_sender;
static int failures;
static bool tracked; /* the shim is loaded: API snapshots must succeed */
static bool opt_fork, opt_exec, opt_alrm;
static long opt_rate = 500;
static unsigned long sent_signals;
static volatile unsigned long alarms;
static volatile char *alrm_mem;
static uint64_t tag_counter;

static void fail(struct worker *me, const char *what)
{
	__atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
	/* stdio from a storm thread: only on failure, which ends the test anyway */
	fprintf(stderr, "t_stress: thread %d: %s (errno %d)\n", me ? me->id : -1, what, errno);
}

static uint64_t rnd(struct worker *me)
{
	me->rng ^= me->rng << 13;
	me->rng ^= me->rng >> 7;
	me->rng ^= me->rng << 17;
	return me->rng;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A short sleep; a signal may end it early, which is fine. */
static void nap_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	nanosleep(&ts, NULL);
}

static uint64_t new_tag(void)
{
	return __atomic_add_fetch(&tag_counter, 1, __ATOMIC_RELAXED) << 20;
}

/* ---- regions: page i of a slot holds 0 (never written, or discarded) or tag + i ---- */

static void stamp(struct slot *s, size_t i)
{
	*(volatile uint64_t *)(s->p + i * TP_PAGE) = s->tag + i;
}

static void check_slot(struct worker *me, const struct slot *s)
{
	for (size_t i = 0; i < s->pages; i++) {
		uint64_t v = *(volatile uint64_t *)(s->p + i * TP_PAGE);
		if (v != 0 && v != s->tag + i) {
			fail(me, "a page of a region lost its contents");
			return;
		}
	}
}

static void writable(struct worker *me, struct slot *s)
{
	if (!s->ro)
		return;
	if (mprotect(s->p, s->pages * TP_PAGE, PROT_READ | PROT_WRITE) != 0)
		fail(me, "mprotect rw");
	s->ro = false;
	me->protects++;
}

static void op_map(struct worker *me, struct slot *s)
{
	size_t pages = 1 + rnd(me) % MAXPAGES;
	int flags = MAP_PRIVATE | MAP_ANONYMOUS;
	unsigned kind = (unsigned)(rnd(me) % 4);
	if (kind == 1)
		flags |= MAP_NORESERVE;
	if (kind == 2)
		flags |= MAP_POPULATE;
	char *p = mmap(NULL, pages * TP_PAGE, kind == 3 ? PROT_NONE : PROT_READ | PROT_WRITE, flags,
		       -1, 0);
	if (p == MAP_FAILED) {
		fail(me, "mmap");
		return;
	}
	/* A reservation made writable afterwards, the way allocators grow. */
	if (kind == 3 && mprotect(p, pages * TP_PAGE, PROT_READ | PROT_WRITE) != 0)
		fail(me, "mprotect reservation");
	*s = (struct slot){p, pages, new_tag(), false};
	me->maps++;
}

/* MAP_FIXED over the whole slot: the old region is replaced by a new one. */
static void op_fixed(struct worker *me, struct slot *s)
{
	check_slot(me, s);
	char *p = mmap(s->p, s->pages * TP_PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (p != s->p) {
		fail(me, "mmap MAP_FIXED");
		s->p = NULL;
		return;
	}
	s->tag = new_tag();
	s->ro = false;
	me->fixed++;
}

static void op_write(struct worker *me, struct slot *s)
{
	writable(me, s);
	size_t n = 1 + rnd(me) % 32;
	for (size_t k = 0; k < n; k++)
		stamp(s, rnd(me) % s->pages);
	me->writes += n;
}

static void op_unmap(struct worker *me, struct slot *s)
{
	check_slot(me, s);
	if (s->pages > 1 && rnd(me) % 3 == 0) { /* only the tail */
		size_t keep = 1 + rnd(me) % (s->pages - 1);
		if (munmap(s->p + keep * TP_PAGE, (s->pages - keep) * TP_PAGE) != 0)
			fail(me, "munmap tail");
		s->pages = keep;
	} else {
		if (munmap(s->p, s->pages * TP_PAGE) != 0)
			fail(me, "munmap");
		s->p = NULL;
	}
	me->unmaps++;
}

static void op_remap(struct worker *me, struct slot *s)
{
	size_t old = s->pages * TP_PAGE;
	unsigned kind = (unsigned)(rnd(me) % 3);
	check_slot(me, s);
	if (kind == 0) { /* grow, moving if it must */
		size_t pages = s->pages + 1 + rnd(me) % 64;
		if (pages > MAXPAGES)
			pages = MAXPAGES;
		char *q = mremap(s->p, old, pages * TP_PAGE, MREMAP_MAYMOVE);
		if (q == MAP_FAILED) {
			fail(me, "mremap grow");
			return;
		}
		s->p = q;
		s->pages = pages;
	} else if (kind == 1 && s->pages > 1) { /* shrink in place */
		size_t pages = 1 + rnd(me) % (s->pages - 1);
		if (mremap(s->p, old, pages * TP_PAGE, 0) != s->p) {
			fail(me, "mremap shrink");
			return;
		}
		s->pages = pages;
	} else { /* move onto a reservation of our own */
		size_t pages = s->pages + rnd(me) % 16;
		if (pages > MAXPAGES)
			pages = MAXPAGES;
		char *dst = mmap(NULL, pages * TP_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (dst == MAP_FAILED) {
			fail(me, "mmap reservation");
			return;
		}
		char *q = mremap(s->p, old, pages * TP_PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
		if (q != dst) {
			fail(me, "mremap fixed");
			munmap(dst, pages * TP_PAGE);
			return;
		}
		s->p = q;
		s->pages = pages;
		me->moves++;
	}
	check_slot(me, s);
	me->remaps++;
}

static void op_discard(struct worker *me, struct slot *s)
{
	size_t from = rnd(me) % s->pages;
	size_t n = 1 + rnd(me) % (s->pages - from);
	int advice = rnd(me) % 4 ? MADV_DONTNEED : MADV_FREE;
	if (madvise(s->p + from * TP_PAGE, n * TP_PAGE, advice) != 0)
		fail(me, "madvise");
	me->discards++;
}

static void op_protect(struct worker *me, struct slot *s)
{
	if (s->ro) {
		writable(me, s);
		return;
	}
	if (mprotect(s->p, s->pages * TP_PAGE, PROT_READ) != 0)
		fail(me, "mprotect ro");
	s->ro = true;
	me->protects++;
}

/* ---- malloc blocks: every 4 KiB step of a block holds tag + step ---- */

static void fill_blk(struct blk *b)
{
	for (size_t k = 0; k * TP_PAGE + 8 <= b->n; k++)
		*(volatile uint64_t *)(b->p + k * TP_PAGE) = b->tag + k;
}

static void check_blk(struct worker *me, const struct blk *b, size_t n)
{
	for (size_t k = 0; k * TP_PAGE + 8 <= n; k++)
		if (*(volatile uint64_t *)(b->p + k * TP_PAGE) != b->tag + k) {
			fail(me, "a malloc block lost its contents");
			return;
		}
}

static void op_big(struct worker *me)
{
	struct blk *b = &me->big[rnd(me) % NBIG];
	if (b->p) {
		check_blk(me, b, b->n);
		if (rnd(me) % 2) {
			size_t n = (64 + rnd(me) % 2048) * 1024;
			char *q = realloc(b->p, n);
			if (!q) {
				fail(me, "realloc");
				return;
			}
			b->p = q;
			check_blk(me, b, n < b->n ? n : b->n);
			b->n = n;
			fill_blk(b);
			me->reallocs++;
			return;
		}
		free(b->p);
		b->p = NULL;
		me->frees++;
		return;
	}
	b->n = (128 + rnd(me) % 2048) * 1024; /* above glibc's mmap threshold */
	b->p = rnd(me) % 2 ? malloc(b->n) : calloc(1, b->n);
	if (!b->p) {
		fail(me, "malloc");
		return;
	}
	b->tag = new_tag();
	fill_blk(b);
	me->mallocs++;
}

static void op_small(struct worker *me)
{
	struct blk *b = &me->small[rnd(me) % NSMALL];
	if (b->p) {
		for (size_t i = 0; i < b->n; i++)
			if (b->p[i] != (char)b->tag) {
				fail(me, "a small block lost its contents");
				break;
			}
		free(b->p);
		b->p = NULL;
		me->frees++;
		return;
	}
	b->n = 16 + rnd(me) % 4000;
	b->p = malloc(b->n);
	if (!b->p) {
		fail(me, "malloc small");
		return;
	}
	b->tag = rnd(me) | 1;
	memset(b->p, (char)b->tag, b->n);
	me->mallocs++;
}

/* ---- threads, snapshots, children ---- */

static void *short_thread(void *arg)
{
	volatile char buf[8 * TP_PAGE];
	for (size_t i = 0; i < sizeof buf; i += TP_PAGE)
		buf[i] = (char)(uintptr_t)arg;
	return (void *)(uintptr_t)buf[0];
}

static void op_thread(struct worker *me)
{
	pthread_t t;
	void *ret;
	if (pthread_create(&t, NULL, short_thread, (void *)(uintptr_t)7) != 0) {
		fail(me, "pthread_create");
		return;
	}
	if (pthread_join(t, &ret) != 0 || (uintptr_t)ret != 7)
		fail(me, "pthread_join");
	me->threads++;
}

static void op_snapshot(struct worker *me)
{
	int rc = writewatch_snapshot("api");
	if (tracked && rc != 0)
		fail(me, "writewatch_snapshot");
	me->snaps++;
}

static int wait_child(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A fork child: only this thread survives. Its own window and truth file; two API snapshots
 * around a recorded page set; exit() takes the exit snapshot. */
static void child_main(struct worker *me)
{
	static struct tp_window cw;
	struct tp_window *ws[] = {&cw};
	char path[600];
	const char *e = getenv("WW_EXPECT");
	snprintf(path, sizeof path, "%s.%d", e ? e : "/dev/null", (int)getpid());
	if (!e)
		snprintf(path, sizeof path, "/dev/null");
	tp_out = fopen(path, "a"); /* the inherited stream is the parent's */
	if (!tp_out)
		_exit(2);
	setvbuf(tp_out, NULL, _IOLBF, 0);
	char *p = mmap(NULL, 16 * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);
	if (p == MAP_FAILED)
		_exit(3);
	tp_window_init(&cw, "child", p, 16);
	if (writewatch_snapshot("child-0") != 0 && tracked)
		_exit(4);
	for (size_t i = 0; i < 16; i++)
		if (rnd(me) % 2)
			tp_write(&cw, i);
	tp_expect("child-1", ws, 1);
	if (writewatch_snapshot("child-1") != 0 && tracked)
		_exit(5);
	exit(0);
}

static void op_fork(struct worker *me)
{
	pid_t pid = fork();
	if (pid < 0) {
		fail(me, "fork");
		return;
	}
	if (pid == 0)
		child_main(me);
	int st = wait_child(pid);
	if (st != 0) {
		errno = st;
		fail(me, "a fork child failed (errno holds its status)");
	}
	me->forks++;
}

/* The children's pids, one "KIND PID" line each in $WW_EXPECT.children, for the test to name
 * a child whose file is missing. */
static int children_fd = -1;
static pthread_once_t children_once = PTHREAD_ONCE_INIT;

static void open_children(void)
{
	char path[600];
	const char *e = getenv("WW_EXPECT");
	snprintf(path, sizeof path, "%s.children", e ? e : "/dev/null");
	if (e)
		children_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

static void note_child(const char *kind, pid_t pid)
{
	pthread_once(&children_once, open_children);
	if (children_fd >= 0)
		dprintf(children_fd, "%s %d\n", kind, (int)pid);
}

static void op_exec(struct worker *me)
{
	char *argv[] = {"true", NULL};
	pid_t pid;
	int st;
	if (me->id == 5) {
		pid = fork();
		if (pid == 0) {
			execv("/bin/true", argv);
			_exit(127);
		}
		if (pid < 0) {
			fail(me, "fork for exec");
			return;
		}
		me->execs++;
		note_child("exec", pid);
	} else {
		int rc = posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ);
		if (rc != 0) {
			errno = rc;
			fail(me, "posix_spawn");
			return;
		}
		me->spawns++;
		note_child("spawn", pid);
	}
	st = wait_child(pid);
	if (st != 0) {
		errno = st;
		fail(me, "/bin/true failed (errno holds its status)");
	}
}

static void storm_step(struct worker *me, uint64_t now)
{
	me->ops++;
	if (me->id <= 2 && now >= me->next_snap) {
		op_snapshot(me);
		me->next_snap = now + 3000000 + rnd(me) % 3000000;
		return;
	}
	if (opt_fork && (me->id == 3 || me->id == 4) && now >= me->next_fork) {
		op_fork(me);
		me->next_fork = now + 20000000 + rnd(me) % 20000000;
		return;
	}
	if (opt_exec && (me->id == 5 || me->id == 6) && now >= me->next_exec) {
		op_exec(me);
		me->next_exec = now + 30000000 + rnd(me) % 20000000;
		return;
	}
	if (me->id == 7 && now >= me->next_thread) {
		op_thread(me);
		me->next_thread = now + 5000000;
		return;
	}
	unsigned r = (unsigned)(rnd(me) % 100);
	if (r < 6) {
		op_big(me);
		return;
	}
	if (r < 16) {
		op_small(me);
		return;
	}
	struct slot *s = &me->s[rnd(me) % NSLOTS];
	if (!s->p) {
		op_map(me, s);
		return;
	}
	if (r < 50)
		op_write(me, s);
	else if (r < 60)
		op_remap(me, s);
	else if (r < 70)
		op_discard(me, s);
	else if (r < 76)
		op_protect(me, s);
	else if (r < 82)
		op_fixed(me, s);
	else if (r < 90)
		op_unmap(me, s);
	else
		op_write(me, s);
}

/* ---- the final, recorded phase ---- */

static char *map_rw(struct worker *me, size_t pages)
{
	char *p = mmap(NULL, pages * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED) {
		fail(me, "mmap final");
		return NULL;
	}
	return p;
}

/* The whole pages inside a malloc block, past glibc's header. */
static void block_window(struct worker *me, const char *name, char *p, size_t n)
{
	uintptr_t s = ((uintptr_t)p + TP_PAGE - 1) & ~(TP_PAGE - 1);
	uintptr_t e = ((uintptr_t)p + n) & ~(TP_PAGE - 1);
	tp_window_init(&me->w[me->nw++], name, (void *)s, (e - s) / TP_PAGE);
}

static void final_setup(struct worker *me)
{
	static const char *const names[NSLOTS] = {"slot0", "slot1", "slot2", "slot3",
						  "slot4", "slot5", "slot6", "slot7",
						  "slot8", "slot9", "slot10", "slot11"};
	me->nw = 0;
	for (int i = 0; i < NSLOTS; i++) {
		struct slot *s = &me->s[i];
		if (!s->p)
			continue;
		check_slot(me, s);
		writable(me, s);
		tp_window_init(&me->w[me->nw++], names[i], s->p, s->pages);
	}
	for (int i = 0; i < NBIG; i++)
		if (me->big[i].p)
			check_blk(me, &me->big[i], me->big[i].n);
	char *f = map_rw(me, 64);
	if (f)
		tp_window_init(&me->w[me->nw++], "fresh", f, 64);
	/* Written, then moved by mremap onto a reservation three times its size. */
	char *m = map_rw(me, 32), *dst = map_rw(me, 96);
	if (m && dst) {
		for (size_t i = 0; i < 32; i++)
			m[i * TP_PAGE] = 1;
		char *q = mremap(m, 32 * TP_PAGE, 96 * TP_PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
		if (q != dst)
			fail(me, "mremap final");
		else
			tp_window_init(&me->w[me->nw++], "moved", q, 96);
	}
	char *b = malloc(1 << 20);
	if (b) {
		memset(b, 1, 1 << 20);
		block_window(me, "malloc", b, 1 << 20);
	}
	char *r = malloc(512 << 10);
	if (r) {
		memset(r, 2, 512 << 10);
		char *q = realloc(r, 2 << 20);
		if (q)
			block_window(me, "realloc", q, 2 << 20);
	}
}

static void final_writes(struct worker *me)
{
	for (size_t k = 0; k < me->nw; k++) {
		struct tp_window *w = &me->w[k];
		for (size_t i = 0; i < w->npages; i++)
			if (rnd(me) % 4 == 0)
				tp_write(w, i);
		/* The fresh window: written pages discarded still count, once. */
		if (!strcmp(w->name, "fresh") &&
		    madvise((char *)w->start + 16 * TP_PAGE, 16 * TP_PAGE, MADV_DONTNEED) != 0)
			fail(me, "madvise final");
	}
}

static void *worker_main(void *arg)
{
	struct worker *me = arg;
	while (!__atomic_load_n(&stop_storm, __ATOMIC_ACQUIRE))
		storm_step(me, now_ns());
	final_setup(me);
	pthread_barrier_wait(&bar); /* main: quiesce */
	pthread_barrier_wait(&bar);
	final_writes(me);
	pthread_barrier_wait(&bar); /* main: final */
	pthread_barrier_wait(&bar);
	return NULL;
}

static void *sender_main(void *arg)
{
	(void)arg;
	long gap_us = 1000000 / opt_rate;
	while (!__atomic_load_n(&stop_sender, __ATOMIC_ACQUIRE)) {
		kill(getpid(), SIGUSR2);
		sent_signals++;
		nap_us(gap_us);
	}
	return NULL;
}

static void on_alrm(int sig)
{
	(void)sig;
	int saved = errno;
	unsigned long n = ++alarms;
	alrm_mem[(n % ALRM_PAGES) * TP_PAGE] = (char)n;
	if ((n & 15) == 0) { /* a hook entered from a signal handler */
		char *q = mmap(NULL, TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			       0);
		if (q != MAP_FAILED) {
			*(volatile char *)q = 1;
			munmap(q, TP_PAGE);
		}
	}
	errno = saved;
}

static void alarm_timer(long us)
{
	struct itimerval it = {{0, us}, {0, us}};
	if (setitimer(ITIMER_REAL, &it, NULL) != 0)
		tp_die("setitimer");
}

/* Memory the shim knows (found in the maps) unmapped behind its hooks by a raw syscall, then
 * handed to a hooked mmap at the same address: the new region must take over, the stale one go
 * (no overlapping regions, the writes reported in the new one). */
static struct tp_window stale_w;

static bool stale_setup(void)
{
	long r = syscall(SYS_mmap, 0L, 16 * TP_PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1L, 0L);
	if (r == -1)
		return false;
	((volatile char *)r)[0] = 1;
	if (writewatch_snapshot("stale-seen") != 0 && tracked)
		fail(NULL, "writewatch_snapshot stale-seen");
	syscall(SYS_munmap, r, 16 * TP_PAGE);
	char *p = mmap((void *)r, 32 * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED)
		return false;
	tp_window_init(&stale_w, "stale", p, 32);
	return true;
}

static void block_alarms(bool block)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGALRM);
	pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &s, NULL);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "fork"))
			opt_fork = true;
		else if (!strcmp(argv[i], "exec"))
			opt_exec = true;
		else if (!strcmp(argv[i], "alrm"))
			opt_alrm = true;
		else if (!strncmp(argv[i], "rate=", 5))
			opt_rate = atol(argv[i] + 5);
		else
			tp_die("usage: t_stress SECONDS [fork] [exec] [alrm] [rate=N]");
	}
	/* Signals only where the shim catches them: without it SIGUSR2 would kill us. */
	tracked = dlsym(RTLD_DEFAULT, "writewatch_snapshot") != NULL;
	tp_open();
	pthread_barrier_init(&bar, NULL, NTHREADS + 1);
	alrm_mem = mmap(NULL, ALRM_PAGES * TP_PAGE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (alrm_mem == MAP_FAILED)
		tp_die("mmap");
	if (opt_alrm) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_alrm; /* no SA_RESTART: every slow call gets EINTR */
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGALRM, &sa, NULL) != 0)
			tp_die("sigaction");
		alarm_timer(100);
	}
	pthread_t sender;
	bool sending = tracked && opt_rate > 0;
	if (sending && pthread_create(&sender, NULL, sender_main, NULL) != 0)
		tp_die("pthread_create sender");
	uint64_t t0 = now_ns();
	for (int t = 0; t < NTHREADS; t++) {
		struct worker *w = &workers[t];
		w->id = t;
		w->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1) ^ (uint64_t)t0;
		if (pthread_create(&w->tid, NULL, worker_main, w) != 0)
			tp_die("pthread_create");
	}
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	while (now_ns() - t0 < (uint64_t)(seconds * 1e9))
		nap_us(10000);
	__atomic_store_n(&stop_storm, 1, __ATOMIC_RELEASE);
	double storm = (double)(now_ns() - t0) / 1e9;

	pthread_barrier_wait(&bar);
	bool stale = stale_setup();
	if (writewatch_snapshot("quiesce") != 0 && tracked)
		fail(NULL, "writewatch_snapshot quiesce");
	pthread_barrier_wait(&bar);
	for (size_t i = 0; stale && i < stale_w.npages; i += 3)
		tp_write(&stale_w, i);
	pthread_barrier_wait(&bar);
	struct tp_window *ws[NTHREADS * (NSLOTS + NFINAL) + 1];
	size_t nw = 0;
	if (stale)
		ws[nw++] = &stale_w;
	for (int t = 0; t < NTHREADS; t++)
		for (size_t k = 0; k < workers[t].nw; k++)
			ws[nw++] = &workers[t].w[k];
	block_alarms(true); /* stdio would lose a line to EINTR */
	tp_expect("final", ws, nw);
	block_alarms(false);
	if (writewatch_snapshot("final") != 0 && tracked)
		fail(NULL, "writewatch_snapshot final");
	pthread_barrier_wait(&bar);
	for (int t = 0; t < NTHREADS; t++)
		pthread_join(workers[t].tid, NULL);
	__atomic_store_n(&stop_sender, 1, __ATOMIC_RELEASE);
	if (sending)
		pthread_join(sender, NULL);
	if (opt_alrm)
		alarm_timer(0);

	struct worker sum = {0};
	for (int t = 0; t < NTHREADS; t++) {
		struct worker *w = &workers[t];
		sum.ops += w->ops, sum.maps += w->maps, sum.fixed += w->fixed;
		sum.unmaps += w->unmaps, sum.remaps += w->remaps, sum.moves += w->moves;
		sum.discards += w->discards, sum.protects += w->protects, sum.writes += w->writes;
		sum.mallocs += w->mallocs, sum.frees += w->frees, sum.reallocs += w->reallocs;
		sum.threads += w->threads, sum.snaps += w->snaps, sum.forks += w->forks;
		sum.execs += w->execs, sum.spawns += w->spawns;
	}
	printf("stress seconds=%.2f threads=%d ops=%lu maps=%lu fixed=%lu unmaps=%lu remaps=%lu "
	       "moves=%lu discards=%lu protects=%lu page_writes=%lu mallocs=%lu frees=%lu "
	       "reallocs=%lu short_threads=%lu api_snapshots=%lu signals_sent=%lu alarms=%lu "
	       "forks=%lu execs=%lu spawns=%lu windows=%zu failures=%d\n",
	       storm, NTHREADS, sum.ops, sum.maps, sum.fixed, sum.unmaps, sum.remaps, sum.moves,
	       sum.discards, sum.protects, sum.writes, sum.mallocs, sum.frees, sum.reallocs,
	       sum.threads, sum.snaps, sent_signals, alarms, sum.forks, sum.execs, sum.spawns, nw,
	       failures);
	return failures ? 1 : 0;
}
