/* fork under writewatch (tests/test_env.py).
 *   basic:   window of 16 pages; the parent writes 0-2, forks; the child writes 5,6 and takes
 *            snapshot "child" (truth in $WW_EXPECT.child); the parent waits, writes 9 and takes
 *            "parent" (truth in $WW_EXPECT: pages 0-2 and 9, never the child's).
 *   childsig: the child writes pages 3,4 of a 16-page window, prints "child PID" and "ready",
 *            waits for a line on stdin, writes page 7 and exits; the parent only waits.
 *   childspin MS: the child stores to page 0 of a 4-page window for MS ms and exits.
 *   rawfork: the parent writes pages 0 and 3 of an 8-page window after a snapshot; a child made
 *            by _Fork() (no fork handlers run) calls the API, maps, writes and unmaps, discards
 *            its copy of the window, and _exits; then the parent takes snapshot "parent" (truth
 *            in $WW_EXPECT: exactly 0 and 3).
 *   loop N:  C07: N times: map, write, fork; the child grows-and-moves the region with mremap,
 *            discards it with MADV_DONTNEED, writes, unmaps and exits; the parent does the same
 *            on its own copy after the child is gone. Prints "loop N done". */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "tprog.h"

static int wait_child(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			tp_die("waitpid");
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void churn(char *p, size_t npages)
{
	char *q = mremap(p, npages * TP_PAGE, 2 * npages * TP_PAGE, MREMAP_MAYMOVE);
	if (q == MAP_FAILED)
		tp_die("mremap");
	q[(2 * npages - 1) * TP_PAGE] = 1;
	if (madvise(q, 2 * npages * TP_PAGE, MADV_DONTNEED) != 0)
		tp_die("madvise");
	q[0] = 2;
	if (munmap(q, 2 * npages * TP_PAGE) != 0)
		tp_die("munmap");
}

static int basic(void)
{
	static struct tp_window w;
	struct tp_window *ws[] = {&w};
	char *p = mmap(NULL, 16 * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		tp_die("mmap");
	tp_window_init(&w, "w", p, 16);
	for (size_t i = 0; i < 3; i++)
		tp_write(&w, i);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		tp_die("fork");
	if (pid == 0) {
		char path[512];
		const char *e = getenv("WW_EXPECT");
		snprintf(path, sizeof path, "%s.child", e ? e : "/dev/null");
		setenv("WW_EXPECT", path, 1);
		memset(w.written, 0, w.npages); /* the child's window starts at the fork */
		tp_write(&w, 5);
		tp_write(&w, 6);
		tp_expect("child", ws, 1);
		int rc = writewatch_snapshot("child");
		printf("child snap %d\n", rc);
		exit(0);
	}
	int st = wait_child(pid);
	tp_write(&w, 9);
	tp_expect("parent", ws, 1);
	int rc = writewatch_snapshot("parent");
	printf("child status %d, parent snap %d\n", st, rc);
	return 0;
}

static volatile char *child_window(size_t npages)
{
	char *p = mmap(NULL, npages * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED)
		tp_die("mmap");
	printf("window 0x%lx\n", (unsigned long)p);
	return p;
}

static int childsig(void)
{
	volatile char *w = child_window(16);
	pid_t pid = fork();
	if (pid < 0)
		tp_die("fork");
	if (pid == 0) {
		char line[16];
		w[3 * TP_PAGE] = 3;
		w[4 * TP_PAGE] = 4;
		printf("child %d\nready\n", (int)getpid());
		if (!fgets(line, sizeof line, stdin))
			printf("stdin closed\n");
		w[7 * TP_PAGE] = 7;
		exit(0);
	}
	return wait_child(pid);
}

static int childspin(long ms)
{
	volatile char *w = child_window(4);
	pid_t pid = fork();
	if (pid < 0)
		tp_die("fork");
	if (pid == 0) {
		struct timespec t0, t;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		do {
			w[0]++;
			clock_gettime(CLOCK_MONOTONIC, &t);
		} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
		exit(0);
	}
	return wait_child(pid);
}

static int rawfork(void)
{
	static struct tp_window w;
	struct tp_window *ws[] = {&w};
	char *p = mmap(NULL, 8 * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		tp_die("mmap");
	tp_window_init(&w, "w", p, 8);
	if (writewatch_snapshot("start") != 0)
		tp_die("snapshot start");
	tp_write(&w, 0);
	tp_write(&w, 3);
	fflush(NULL);
	pid_t pid = _Fork();
	if (pid < 0)
		tp_die("_Fork");
	if (pid == 0) {
		errno = 0;
		int rc = writewatch_snapshot("child");
		printf("child snap %d %s\n", rc, rc ? strerrorname_np(errno) : "");
		char *q = mmap(NULL, 4 * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (q != MAP_FAILED) {
			q[0] = 1;
			munmap(q, 4 * TP_PAGE);
		}
		madvise(p, 8 * TP_PAGE, MADV_DONTNEED);
		fflush(NULL);
		_exit(0);
	}
	int st = wait_child(pid);
	tp_expect("parent", ws, 1);
	int rc = writewatch_snapshot("parent");
	printf("child status %d, parent snap %d\n", st, rc);
	return 0;
}

static int loop(int n)
{
	int bad = 0;
	for (int i = 0; i < n; i++) {
		char *p = mmap(NULL, 8 * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (p == MAP_FAILED)
			tp_die("mmap");
		memset(p, i, 8 * TP_PAGE);
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0)
			tp_die("fork");
		if (pid == 0) {
			churn(p, 8);
			exit(0);
		}
		if (wait_child(pid) != 0)
			bad++;
		churn(p, 8);
	}
	printf("loop %d done, %d children failed\n", n, bad);
	return bad != 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "basic"))
		return basic();
	if (argc >= 2 && !strcmp(argv[1], "rawfork"))
		return rawfork();
	if (argc >= 2 && !strcmp(argv[1], "childsig"))
		return childsig();
	if (argc >= 3 && !strcmp(argv[1], "childspin"))
		return childspin(atol(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "loop"))
		return loop(atoi(argv[2]));
	fprintf(stderr, "usage: t_env_fork basic | rawfork | childsig | childspin MS | loop N\n");
	return 98;
}
