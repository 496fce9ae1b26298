/* A scriptable target for the environment tests (tests/test_env.py): its arguments are a list of
 * commands (map, write, snapshot, wait for the test, signals, exec, exit...), so one program
 * covers the triggers, the life cycle and the bad configurations. stdout carries only what is the
 * same with and without the shim (results, never addresses); addresses and the ground truth go
 * to the files named by $WW_INFO and $WW_EXPECT (tests/tprog.h).
 *
 * Commands (one argument each unless said):
 *   map NAME N | mapnone NAME N    private anonymous window of N pages, rw or PROT_NONE
 *   mapshared NAME N | memfd NAME N  shared anonymous / memfd window (not tracked)
 *   maphuge NAME                   2 MiB MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB window (512 small
 *                                  pages, no ground truth); prints "maphuge NAME aligned" or the
 *                                  errno, and exits 3 when the mapping fails
 *   protect NAME rw|r|none         mprotect the whole window
 *   unmap NAME                     munmap the whole window (its name is free again)
 *   w NAME LIST | r NAME LIST      write / read pages ("1,3-5"); check NAME LIST verifies writes
 *   expect LABEL                   record the private windows' truth for LABEL and reset it
 *   snap LABEL                     expect LABEL + writewatch_snapshot(LABEL); prints the result
 *   ready                          print "ready", then block until a line arrives on stdin
 *   sleep MS | spin MS             sleep / busy-loop writing page 0 of the last window
 *   sigstate SIG                   print whether SIG has the default action, is ignored or caught
 *   catch SIG | catch1 SIG         install a counting handler with sigaction / signal()
 *   block SIG                      block SIG in this thread
 *   openfd PATH | close FD         open PATH (O_CREAT|O_APPEND) and print the descriptor / close
 *   mapped TEXT                    print whether /proc/self/maps mentions TEXT
 *   ramp N                         N 1-page maps of alternating protection, writable ones written
 *   ownrace K                      snapshots while the shim's own VMA array moves (see ownrace)
 *   vmas                           1-page maps of alternating protection until ENOMEM (C12)
 *   waitcount SIG N MS             wait until N deliveries or MS ms; print the count
 *   early                          adopt libearly.so's region as window "early" (see t_env_early.c)
 *   mmaptest WHAT                  hugetlb, noreplace, growsdown, 32bit: print the outcome
 *   exec PROG ARGS... ;            execvp (PATH search); on failure print the errno and go on
 *   execve PATH ARGS... ;          execve with environ
 *   exit CODE | _exit CODE         leave with exit() / _exit(); falling off the end returns 0 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <time.h>

#include "tprog.h"

#define MAX_WINDOWS 16

struct win {
	const char *name;
	char *base;
	size_t npages;
	int tracked; /* private anonymous: has ground truth */
	struct tp_window *tw;
};

static struct win wins[MAX_WINDOWS];
static size_t nwins;
static FILE *info;
static volatile sig_atomic_t counts[65];

static void info_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void info_line(const char *fmt, ...)
{
	if (!info) {
		const char *path = getenv("WW_INFO");
		info = fopen(path ? path : "/dev/null", "a");
		if (!info)
			tp_die("open WW_INFO");
		setvbuf(info, NULL, _IOLBF, 0);
	}
	va_list ap;
	va_start(ap, fmt);
	vfprintf(info, fmt, ap);
	va_end(ap);
}

static const char *errname(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

static struct win *find(const char *name)
{
	for (size_t i = 0; i < nwins; i++)
		if (!strcmp(wins[i].name, name))
			return &wins[i];
	fprintf(stderr, "test program: no window %s\n", name);
	exit(98);
}

static struct win *add(const char *name, void *base, size_t npages, int tracked)
{
	if (nwins == MAX_WINDOWS)
		tp_die("too many windows");
	struct win *w = &wins[nwins++];
	w->name = name;
	w->base = base;
	w->npages = npages;
	w->tracked = tracked;
	if (tracked) {
		w->tw = malloc(sizeof *w->tw);
		if (!w->tw)
			tp_die("malloc");
		tp_window_init(w->tw, name, base, npages);
	}
	info_line("{\"window\":\"%s\",\"start\":\"0x%lx\",\"npages\":%zu,\"tracked\":%s}\n", name,
		  (unsigned long)base, npages, tracked ? "true" : "false");
	return w;
}

/* Call fn(w, page) for each page of a list such as "1,3-5". */
static void each_page(struct win *w, const char *list, void (*fn)(struct win *, size_t))
{
	const char *p = list;
	while (*p) {
		char *end;
		unsigned long a = strtoul(p, &end, 10), b = a;
		if (*end == '-')
			b = strtoul(end + 1, &end, 10);
		if (end == p || b >= w->npages) {
			fprintf(stderr, "test program: bad page list %s\n", list);
			exit(98);
		}
		for (unsigned long i = a; i <= b; i++)
			fn(w, i);
		p = *end == ',' ? end + 1 : end;
	}
}

static void write_page(struct win *w, size_t i)
{
	if (w->tw) {
		tp_write(w->tw, i);
		return;
	}
	w->base[i * TP_PAGE + (i * 97) % TP_PAGE] = (char)(i + 1);
}

static volatile int sink;

static void read_page(struct win *w, size_t i)
{
	sink += w->base[i * TP_PAGE + (i * 31) % TP_PAGE];
}

static int check_failed;

static void check_page(struct win *w, size_t i)
{
	if (w->base[i * TP_PAGE + (i * 97) % TP_PAGE] != (char)(i + 1))
		check_failed = 1;
}

static void expect_all(const char *label)
{
	struct tp_window *ws[MAX_WINDOWS];
	size_t n = 0;
	for (size_t i = 0; i < nwins; i++)
		if (wins[i].tw)
			ws[n++] = wins[i].tw;
	if (n)
		tp_expect(label, ws, n);
}

static int parse_sig(const char *s)
{
	if (!strncmp(s, "SIG", 3))
		s += 3;
	if (!strncmp(s, "RTMIN+", 6))
		return SIGRTMIN + atoi(s + 6);
	static const struct {
		const char *n;
		int s;
	} t[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"HUP", SIGHUP}, {"TERM", SIGTERM},
		 {"ALRM", SIGALRM}, {"INT", SIGINT}, {"CHLD", SIGCHLD}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcmp(s, t[i].n))
			return t[i].s;
	fprintf(stderr, "test program: bad signal %s\n", s);
	exit(98);
}

static void on_sig(int sig)
{
	counts[sig]++;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *map_private(size_t npages, int prot)
{
	void *p = mmap(NULL, npages * TP_PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		tp_die("mmap");
	return p;
}

struct span {
	unsigned long start, end;
};

/* The private anonymous read-write mappings now, into out (at most cap). */
static size_t anon_rw(struct span *out, size_t cap)
{
	char line[512];
	size_t n = 0;
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		tp_die("maps");
	while (fgets(line, sizeof line, f)) {
		unsigned long s, e, off, ino;
		char perm[8], dev[16];
		if (sscanf(line, "%lx-%lx %7s %lx %15s %lu", &s, &e, perm, &off, dev, &ino) == 6 &&
		    ino == 0 && !strcmp(perm, "rw-p") && n < cap)
			out[n++] = (struct span){s, e};
	}
	fclose(f);
	return n;
}

static void ramp(long n)
{
	for (long k = 0; k < n; k++) {
		char *p = map_private(1, k % 2 ? PROT_READ : PROT_READ | PROT_WRITE);
		if (!(k % 2))
			p[0] = 1;
	}
}

/* The shim's VMA array outgrows 512 entries in snapshot r1 and gets a mapping of its own, B;
 * then k 1-page mappings go right below B, so that in snapshot r2 the array must grow again
 * (the 1025th VMA) just before B's line is parsed: B is replaced while its line waits in the
 * maps buffer. B's old range must not be taken for program memory. */
static void ownrace(long k)
{
	static struct span before[8192], after[8192];
	size_t nb = anon_rw(before, 8192);
	ramp(600);
	if (writewatch_snapshot("r1") != 0)
		tp_die("snapshot r1");
	size_t na = anon_rw(after, 8192), found = 0;
	struct span b = {0, 0};
	for (size_t i = 0; i < na; i++) {
		size_t pages = (after[i].end - after[i].start) / TP_PAGE, j;
		for (j = 0; j < nb; j++) /* new address space, not an old mapping grown or merged */
			if (before[j].start < after[i].end && before[j].end > after[i].start)
				break;
		if (j == nb && pages >= 8 && pages != 256) { /* not ours, not a 1 MiB arena */
			b = after[i];
			found++;
		}
	}
	if (found != 1) {
		printf("ownrace unarmed (%zu candidates)\n", found);
		return;
	}
	info_line("{\"window\":\"ownrace\",\"start\":\"0x%lx\",\"npages\":%lu,\"tracked\":false}\n",
		  b.start, (b.end - b.start) / TP_PAGE);
	unsigned long at = b.start;
	for (long made = 0; made < k;) {
		at -= TP_PAGE;
		char *p = mmap((void *)at, TP_PAGE, made % 2 ? PROT_READ : PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (p == MAP_FAILED)
			continue;
		if (!(made % 2))
			p[0] = 1;
		made++;
	}
	if (writewatch_snapshot("r2") != 0 || writewatch_snapshot("r3") != 0)
		tp_die("snapshot r2/r3");
	printf("ownrace armed\n");
}

static void mmaptest(const char *what)
{
	void *p;
	if (!strcmp(what, "hugetlb")) {
		p = mmap(NULL, 2u << 20, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		printf("hugetlb %s\n", p == MAP_FAILED ? errname(errno) : "mapped");
		if (p != MAP_FAILED)
			munmap(p, 2u << 20);
	} else if (!strcmp(what, "noreplace")) {
		/* A window of 8 pages, written; then MAP_FIXED_NOREPLACE over its middle. */
		struct win *w = add("nr", map_private(8, PROT_READ | PROT_WRITE), 8, 1);
		each_page(w, "0-7", write_page);
		p = mmap(w->base + 2 * TP_PAGE, 2 * TP_PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		printf("noreplace %s\n", p == MAP_FAILED ? errname(errno) : "mapped");
		check_failed = 0;
		each_page(w, "0-7", check_page);
		printf("noreplace contents %s\n", check_failed ? "changed" : "intact");
		/* And a free spot: NOREPLACE must succeed at exactly the address asked. */
		char *hole = map_private(4, PROT_NONE);
		munmap(hole, 4 * TP_PAGE);
		p = mmap(hole, 4 * TP_PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		printf("noreplace free %s\n", p == hole ? "at-address" : p == MAP_FAILED ? errname(errno) : "elsewhere");
		if (p == hole) {
			struct win *h = add("hole", p, 4, 1);
			each_page(h, "1,3", write_page);
		}
	} else if (!strcmp(what, "growsdown")) {
		p = mmap(NULL, 4 * TP_PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
		printf("growsdown %s\n", p == MAP_FAILED ? errname(errno) : "mapped");
		if (p != MAP_FAILED) {
			struct win *w = add("gd", p, 4, 1);
			each_page(w, "0,3", write_page);
			check_failed = 0;
			each_page(w, "0,3", check_page);
			printf("growsdown contents %s\n", check_failed ? "bad" : "ok");
		}
	} else if (!strcmp(what, "32bit")) {
		p = mmap(NULL, 4 * TP_PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
		printf("32bit %s\n", p == MAP_FAILED ? errname(errno)
				     : (uintptr_t)p < (1ul << 31) ? "below-2GiB"
								  : "above-2GiB");
		if (p != MAP_FAILED) {
			struct win *w = add("low", p, 4, 1);
			each_page(w, "2", write_page);
		}
	} else {
		fprintf(stderr, "test program: bad mmaptest %s\n", what);
		exit(98);
	}
}

/* The arguments of an exec command, up to ";" (or the end). Returns the index after it. */
static int exec_args(int argc, char **argv, int i, char **out, size_t cap)
{
	size_t n = 0;
	while (i < argc && strcmp(argv[i], ";") && n + 1 < cap)
		out[n++] = argv[i++];
	out[n] = NULL;
	return i < argc ? i + 1 : i;
}

extern char **environ;

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc;) {
		const char *cmd = argv[i++];
#define ARG() (i < argc ? argv[i++] : (fprintf(stderr, "test program: %s needs an argument\n", cmd), exit(98), ""))
		if (!strcmp(cmd, "map") || !strcmp(cmd, "mapnone")) {
			const char *name = ARG();
			size_t n = strtoul(ARG(), NULL, 10);
			int prot = !strcmp(cmd, "map") ? PROT_READ | PROT_WRITE : PROT_NONE;
			add(name, map_private(n, prot), n, 1);
		} else if (!strcmp(cmd, "mapshared")) {
			const char *name = ARG();
			size_t n = strtoul(ARG(), NULL, 10);
			void *p = mmap(NULL, n * TP_PAGE, PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED)
				tp_die("mmap shared");
			add(name, p, n, 0);
		} else if (!strcmp(cmd, "memfd")) {
			const char *name = ARG();
			size_t n = strtoul(ARG(), NULL, 10);
			int fd = memfd_create(name, MFD_CLOEXEC);
			if (fd < 0 || ftruncate(fd, (off_t)(n * TP_PAGE)) != 0)
				tp_die("memfd");
			void *p = mmap(NULL, n * TP_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			if (p == MAP_FAILED)
				tp_die("mmap memfd");
			close(fd);
			add(name, p, n, 0);
		} else if (!strcmp(cmd, "maphuge")) {
			const char *name = ARG();
			void *p = mmap(NULL, 2u << 20, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
			if (p == MAP_FAILED) {
				printf("maphuge %s %s\n", name, errname(errno));
				exit(3);
			}
			printf("maphuge %s %s\n", name, (uintptr_t)p % (2u << 20) ? "unaligned" : "aligned");
			add(name, p, 512, 0);
		} else if (!strcmp(cmd, "unmap")) {
			struct win *w = find(ARG());
			if (munmap(w->base, w->npages * TP_PAGE) != 0)
				tp_die("munmap");
			w->name = "";
			w->tw = NULL; /* no more ground truth for it */
		} else if (!strcmp(cmd, "protect")) {
			struct win *w = find(ARG());
			const char *how = ARG();
			int prot = !strcmp(how, "rw") ? PROT_READ | PROT_WRITE
				   : !strcmp(how, "r") ? PROT_READ
						       : PROT_NONE;
			if (mprotect(w->base, w->npages * TP_PAGE, prot) != 0)
				tp_die("mprotect");
		} else if (!strcmp(cmd, "w") || !strcmp(cmd, "r") || !strcmp(cmd, "check")) {
			struct win *w = find(ARG());
			const char *list = ARG();
			if (cmd[0] == 'c') {
				check_failed = 0;
				each_page(w, list, check_page);
				printf("check %s %s\n", w->name, check_failed ? "BAD" : "ok");
			} else {
				each_page(w, list, cmd[0] == 'w' ? write_page : read_page);
			}
		} else if (!strcmp(cmd, "expect")) {
			expect_all(ARG());
		} else if (!strcmp(cmd, "snap")) {
			const char *label = ARG();
			expect_all(label);
			errno = 0;
			int rc = writewatch_snapshot(label);
			if (rc == 0)
				printf("snap %s 0\n", label);
			else
				printf("snap %s %d %s\n", label, rc, errname(errno));
		} else if (!strcmp(cmd, "ready")) {
			char line[64];
			printf("ready\n");
			if (!fgets(line, sizeof line, stdin))
				printf("stdin closed\n");
		} else if (!strcmp(cmd, "sleep")) {
			sleep_ms(strtol(ARG(), NULL, 10));
		} else if (!strcmp(cmd, "spin")) {
			uint64_t until = now_ms() + (uint64_t)strtol(ARG(), NULL, 10);
			volatile char *p = nwins ? wins[nwins - 1].base : NULL;
			while (now_ms() < until)
				if (p)
					p[0]++;
		} else if (!strcmp(cmd, "sigstate")) {
			const char *name = ARG();
			struct sigaction old;
			sigaction(parse_sig(name), NULL, &old);
			printf("sigstate %s %s\n", name,
			       old.sa_handler == SIG_DFL   ? "default"
			       : old.sa_handler == SIG_IGN ? "ignore"
							   : "handler");
		} else if (!strcmp(cmd, "catch")) {
			struct sigaction sa;
			memset(&sa, 0, sizeof sa);
			sa.sa_handler = on_sig;
			sa.sa_flags = SA_RESTART;
			sigemptyset(&sa.sa_mask);
			if (sigaction(parse_sig(ARG()), &sa, NULL) != 0)
				tp_die("sigaction");
		} else if (!strcmp(cmd, "catch1")) {
			if (signal(parse_sig(ARG()), on_sig) == SIG_ERR)
				tp_die("signal");
		} else if (!strcmp(cmd, "openfd")) {
			int fd = open(ARG(), O_RDWR | O_CREAT | O_APPEND, 0644);
			printf("fd %d\n", fd);
		} else if (!strcmp(cmd, "close")) {
			close(atoi(ARG()));
		} else if (!strcmp(cmd, "mapped")) {
			const char *name = ARG();
			char line[4096];
			int found = 0;
			FILE *f = fopen("/proc/self/maps", "r");
			while (f && fgets(line, sizeof line, f))
				found |= strstr(line, name) != NULL;
			if (f)
				fclose(f);
			printf("mapped %s %s\n", name, found ? "yes" : "no");
		} else if (!strcmp(cmd, "ramp")) {
			ramp(strtol(ARG(), NULL, 10));
		} else if (!strcmp(cmd, "ownrace")) {
			ownrace(strtol(ARG(), NULL, 10));
		} else if (!strcmp(cmd, "vmas")) {
			/* C12: 1-page mappings with alternating protections (no two merge) until the
			 * kernel refuses; print how many. */
			static void *maps[1 << 20];
			long n = 0;
			int err = 0;
			for (; n < (long)(sizeof maps / sizeof maps[0]); n++) {
				maps[n] = mmap(NULL, TP_PAGE, n % 2 ? PROT_READ : PROT_READ | PROT_WRITE,
					       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				if (maps[n] == MAP_FAILED) {
					err = errno;
					break;
				}
			}
			/* Give them back before anything else needs a mapping (stdio buffers). */
			for (long k = 0; k < n; k++)
				munmap(maps[k], TP_PAGE);
			printf("vmas %s\n", err ? errname(err) : "no-limit");
			info_line("{\"vmas\":%ld}\n", n);
		} else if (!strcmp(cmd, "block")) {
			sigset_t set;
			sigemptyset(&set);
			sigaddset(&set, parse_sig(ARG()));
			if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
				tp_die("sigprocmask");
		} else if (!strcmp(cmd, "waitcount")) {
			const char *name = ARG();
			int sig = parse_sig(name);
			long want = strtol(ARG(), NULL, 10);
			uint64_t until = now_ms() + (uint64_t)strtol(ARG(), NULL, 10);
			while (counts[sig] < want && now_ms() < until)
				sleep_ms(1);
			printf("count %s %d\n", name, (int)counts[sig]);
		} else if (!strcmp(cmd, "early")) {
			char *(*region)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "early_region");
			long (*writes)(void) = (long (*)(void))dlsym(RTLD_DEFAULT, "early_writes");
			if (!region || !writes) {
				printf("early missing\n");
				continue;
			}
			/* Wait until the thread has written each of its pages at least twice. */
			uint64_t until = now_ms() + 5000;
			while (writes() < 12 && now_ms() < until)
				sleep_ms(1);
			info_line("{\"window\":\"early\",\"start\":\"0x%lx\",\"npages\":8,\"tracked\":true}\n",
				  (unsigned long)region());
			printf("early %s\n", writes() >= 12 ? "running" : "stalled");
		} else if (!strcmp(cmd, "mmaptest")) {
			mmaptest(ARG());
		} else if (!strcmp(cmd, "exec") || !strcmp(cmd, "execve")) {
			char *args[64];
			i = exec_args(argc, argv, i, args, 64);
			fflush(NULL);
			if (cmd[4] == 'v')
				execve(args[0], args, environ);
			else
				execvp(args[0], args);
			printf("exec failed %s\n", errname(errno));
		} else if (!strcmp(cmd, "exit")) {
			exit(atoi(ARG()));
		} else if (!strcmp(cmd, "_exit")) {
			fflush(NULL);
			_exit(atoi(ARG()));
		} else {
			fprintf(stderr, "test program: unknown command %s\n", cmd);
			return 98;
		}
	}
	return 0;
}
