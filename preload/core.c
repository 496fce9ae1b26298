/* The tracker's life cycle: start-up in the constructor, the writer thread woken by the signal
 * handler or the interval, fork and exec, the exit snapshot and the public API. */
#define _GNU_SOURCE
#include "ww.h"
#include "real.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct ww_state ww = {.kern = {.uffd = -1, .pagemap = -1}, .out = {.fd = -1}};

static pthread_mutex_t core_lock = PTHREAD_MUTEX_INITIALIZER;
static int init_state; /* 0 not started, 1 in progress, 2 done */
static sem_t wake;
static int signal_pending; /* set by the handler, taken by the writer: atomics, both threads */
static bool writer_running;
static char comm[32];
static int warned_uffd_gone;

void ww_lock(void)
{
	pthread_mutex_lock(&core_lock);
}

void ww_unlock(void)
{
	pthread_mutex_unlock(&core_lock);
}

/* A fork holds the core lock from our prepare handler to fork_parent, and meanwhile waits for
 * locks of others: malloc's arenas, other libraries' prepare handlers. A hook on a thread holding
 * one of those (a signal handler's mmap that interrupted malloc, an allocator calling mmap under
 * its own mutex) would wait for the fork while the fork waits for it. So a hook waits out a fork
 * for WW_FORK_WAIT_MS at most, then makes its call untracked: what it changed is found in
 * /proc/self/maps later or reported lost, only the last writes before a discard are missed. */
#define WW_FORK_WAIT_MS 100
static int forks_holding; /* forks between fork_prepare and fork_parent */

static bool lock_hook(void)
{
	struct timespec ts;
	int waited = 0;
	if (pthread_mutex_trylock(&core_lock) == 0)
		return true;
	/* 1 ms waits: the lock is taken as soon as it is free. timedlock's clock is the realtime
	 * one, which can jump, but a jump only delays giving up on a fork; clocklock(MONOTONIC) would
	 * not be seen by ThreadSanitizer (make check-sanitize). */
	clock_gettime(CLOCK_REALTIME, &ts);
	for (;;) {
		ts.tv_nsec += 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (pthread_mutex_timedlock(&core_lock, &ts) == 0)
			return true;
		if (!__atomic_load_n(&forks_holding, __ATOMIC_ACQUIRE))
			waited = 0; /* a snapshot: wait as long as it takes */
		else if (++waited >= WW_FORK_WAIT_MS)
			return false;
	}
}

uint64_t ww_unseen_calls;

bool ww_enter_hook(void)
{
	if (ww_in_shim || !ww_ready())
		return false;
	ww_in_shim++;
	if (!lock_hook()) {
		ww_in_shim--;
		__atomic_fetch_add(&ww_unseen_calls, 1, __ATOMIC_RELAXED);
		return false;
	}
	return true;
}

void ww_leave_hook(void)
{
	ww_unlock();
	ww_in_shim--;
}

/* A child made without fork()'s handlers (_Fork, a raw clone) inherits our state and the
 * parent's descriptors: tracking there would scan and re-arm the parent's memory and write into
 * the parent's file. The kernel zeroes a MADV_WIPEONFORK page in every such child, so this flag
 * reads 0 there and the shim stands aside; fork_child sets it again. */
static int live_fallback = 1;
static volatile int *live = &live_fallback;

static void live_flag_init(void)
{
	size_t len = 1ul << ww_page_shift;
	void *pg = ww_sys_mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (pg == MAP_FAILED)
		return;
	if (ww_sys(SYS_madvise, (long)pg, (long)len, MADV_WIPEONFORK, 0, 0, 0) != 0) {
		ww_sys_munmap(pg, len);
		return;
	}
	ww_own_note((uintptr_t)pg, (uintptr_t)pg + len);
	live = pg;
	*live = 1;
}

bool ww_ready(void)
{
	return __atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == 2 && ww.tracking && *live;
}

/* ---- the header record ---- */

static void write_header(const char *cause, pid_t parent, const char *off_reason)
{
	struct ww_buf b = {0};
	static char args[16384];
	char exe[1024], sig[16];
	ww_self_exe(exe, sizeof exe);
	ww_buf_str(&b, "{\"type\":\"header\",\"format\":1,\"tool\":\"writewatch\",\"version\":\"" WW_VERSION
		       "\",\"pid\":");
	ww_buf_u64(&b, (uint64_t)ww.pid);
	ww_buf_str(&b, ",\"ppid\":");
	ww_buf_u64(&b, (uint64_t)ww_sys(SYS_getppid, 0, 0, 0, 0, 0, 0));
	ww_buf_str(&b, ",\"cause\":\"");
	ww_buf_str(&b, cause);
	ww_buf_str(&b, "\"");
	if (parent) {
		ww_buf_str(&b, ",\"parent_pid\":");
		ww_buf_u64(&b, (uint64_t)parent);
	}
	ww_buf_str(&b, ",\"exe\":");
	ww_buf_json_str(&b, exe);
	ww_buf_str(&b, ",\"argv\":[");
	ssize_t got = ww_read_file("/proc/self/cmdline", args, sizeof args - 1);
	size_t len = got > 0 ? (size_t)got : 0;
	bool cut = len == sizeof args - 1; /* the header keeps the first 16 KiB of the command line */
	args[len] = 0;
	for (size_t i = 0; i < len; i += strlen(args + i) + 1) {
		if (i)
			ww_buf_str(&b, ",");
		ww_buf_json_str(&b, args + i);
	}
	ww_buf_str(&b, cut ? "],\"argv_truncated\":true,\"page_size\":" : "],\"page_size\":");
	ww_buf_u64(&b, 1ull << ww_page_shift);
	ww_buf_str(&b, ",\"start_realtime_ns\":");
	ww_buf_u64(&b, ww_now_ns(CLOCK_REALTIME));
	ww_buf_str(&b, ",\"interval_ms\":");
	ww_buf_u64(&b, (uint64_t)ww.cfg.interval_ms);
	ww_buf_str(&b, ",\"signal\":");
	ww_buf_json_str(&b, ww_signal_name(ww.cfg.signal, sig, sizeof sig));
	ww_buf_str(&b, ww.cfg.ranges ? ",\"ranges\":true" : ",\"ranges\":false");
	ww_buf_str(&b, ww.cfg.follow ? ",\"follow\":true" : ",\"follow\":false");
	if (off_reason) {
		ww_buf_str(&b, ",\"tracking\":\"off\",\"reason\":");
		ww_buf_json_str(&b, off_reason);
	} else {
		ww_buf_str(&b, ",\"tracking\":\"on\"");
	}
	/* How regions are found: glibc's own mappings are seen as they happen only while the
	 * malloc family is interposed on glibc; otherwise /proc/self/maps finds them later. */
	ww_buf_str(&b, ",\"method\":\"uffd-wp-async+pagemap-scan\",\"discovery\":\"");
	ww_buf_str(&b, ww_glibc_chunks ? "hooks+glibc-malloc+pthread+proc-maps" : "hooks+proc-maps");
	ww_buf_str(&b, "\",\"stack_depth\":");
	ww_buf_u64(&b, (uint64_t)ww.cfg.stack_depth);
	ww_buf_str(&b, ",\"tracked\":[\"anonymous-private\"],\"untracked\":[\"shared\",\"file-backed\",\"hugetlb\"]}\n");
	if (!b.oom)
		ww_out_write(&ww.out, b.data, b.len);
	ww_buf_free(&b);
}

/* ---- start-up ---- */

static void read_comm(void)
{
	ssize_t got = ww_read_file("/proc/self/comm", comm, sizeof comm - 1);
	size_t n = got > 0 ? (size_t)got : 0;
	while (n > 0 && (comm[n - 1] == '\n' || comm[n - 1] == 0))
		n--;
	comm[n] = 0;
	for (size_t i = 0; i < n; i++) {
		char c = comm[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_' || c == '+'))
			comm[i] = '_';
	}
	if (!n)
		memcpy(comm, "unknown", 8);
}

/* Our static buffers live in the library's .bss, which the kernel maps as anonymous memory:
 * it is the shim's, not the program's. The linker defines these for each shared object. */
extern char __bss_start[], _end[];

static void note_own_bss(void)
{
	uintptr_t mask = (1ul << ww_page_shift) - 1;
	ww_own_note((uintptr_t)__bss_start & ~mask, ((uintptr_t)_end + mask) & ~mask);
}

static const char *env_get(const char *name)
{
	return secure_getenv(name);
}

static void on_signal(int sig)
{
	(void)sig;
	int saved = errno;
	__atomic_store_n(&signal_pending, 1, __ATOMIC_RELAXED); /* lock-free: signal-safe */
	sem_post(&wake);
	errno = saved;
}

/* Every trigger comes here. The module table is refreshed before the lock (it takes the
 * loader's lock); nothing is written after the exit snapshot. */
static int take_snapshot(enum ww_trigger trig, const char *label)
{
	ww_modules_refresh();
	ww_lock();
	int rc = ww.finished ? -ENOSYS : ww_snapshot_locked(trig, label);
	if (trig == WW_TRIG_EXIT)
		ww.finished = true;
	ww_unlock();
	return rc;
}

static void *writer_main(void *arg)
{
	(void)arg;
	ww_in_shim = 1; /* this thread is ours: its own maps calls are never tracked */
	for (;;) {
		int rc;
		if (ww.cfg.interval_ms > 0) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += ww.cfg.interval_ms / 1000;
			ts.tv_nsec += (ww.cfg.interval_ms % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			rc = sem_clockwait(&wake, CLOCK_MONOTONIC, &ts);
		} else {
			rc = sem_wait(&wake);
		}
		if (rc != 0 && errno == EINTR)
			continue;
		if (rc != 0 && errno != ETIMEDOUT)
			continue;
		/* Taken in one step: a signal between reading and clearing would lose its label. */
		bool sig = __atomic_exchange_n(&signal_pending, 0, __ATOMIC_RELAXED);
		take_snapshot(sig ? WW_TRIG_SIGNAL : WW_TRIG_INTERVAL, NULL);
	}
	return NULL;
}

/* The writer thread runs on a stack the shim maps itself, with every signal blocked, so the
 * program's signals never land on it and its stack never shows up as program memory. */
static int start_writer_on(size_t stack_size, void **stack)
{
	*stack = ww_alloc(stack_size);
	if (!*stack)
		return ENOMEM;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	int rc = pthread_attr_setstack(&attr, *stack, stack_size);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	if (rc == 0)
		rc = pthread_create(&t, &attr, writer_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return rc;
}

static void start_writer(void)
{
	/* Untouched pages of our mapping cost nothing. glibc puts the static TLS at the top of a
	 * stack it is given and refuses one too small for it (EINVAL): a TLS-heavy program, or a
	 * sanitizer runtime, gets a bigger one. */
	size_t stack_size = 1 << 20;
	void *stack;
	if (ww.cfg.interval_ms == 0 && ww.cfg.signal == 0)
		return;
	int rc = start_writer_on(stack_size, &stack);
	if (rc == EINVAL) {
		ww_free(stack, stack_size);
		stack_size = 16 << 20;
		rc = start_writer_on(stack_size, &stack);
	}
	if (rc == ENOMEM && !stack) {
		ww_warn("out of memory for the writer thread; only exit and API snapshots are taken");
		return;
	}
	if (rc != 0) {
		ww_warn("cannot start the writer thread: %s; only exit and API snapshots are taken",
			ww_strerror(rc));
		ww_free(stack, stack_size);
		return;
	}
	writer_running = true;
}

static void install_signal(void)
{
	if (ww.cfg.signal == 0)
		return;
	struct sigaction sa, old;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (ww_real.sigaction(ww.cfg.signal, NULL, &old) == 0 && old.sa_handler != SIG_DFL &&
	    old.sa_handler != SIG_IGN) {
		char name[16];
		ww_warn("WRITEWATCH_SIGNAL=%s already has a handler in this program; leaving it to the "
			"program (signal snapshots off)",
			ww_signal_name(ww.cfg.signal, name, sizeof name));
		ww.cfg.signal = 0;
		return;
	}
	ww_real.sigaction(ww.cfg.signal, &sa, NULL);
}

/* Open the kernel side and the output file, register what is mapped now. Lock held. */
static void start_tracking(const char *cause, pid_t parent)
{
	char why[400];
	ww.pid = ww_sys_getpid();
	ww.t0_ns = ww_now_ns(CLOCK_MONOTONIC);
	ww.seq = 0;
	int rc = ww_kern_open(&ww.kern, ww.cfg.scan_vec, why, sizeof why);
	if (ww_out_open(&ww.out, ww.cfg.output, ww.start_dir, ww.pid, comm) < 0) {
		ww_kern_close(&ww.kern);
		return;
	}
	if (rc < 0) {
		ww_warn("%s", why);
		write_header(cause, parent, why);
		ww_out_close(&ww.out);
		return;
	}
	ww.tracking = true;
	write_header(cause, parent, NULL);
	ww_reconcile_locked();
}

/* A fork from a signal handler that interrupted the shim on this thread must not wait for the
 * lock this thread already holds: then the child simply starts from the parent's state. */
static __thread int fork_locked __attribute__((tls_model("initial-exec")));

static void fork_prepare(void)
{
	fork_locked = !ww_in_shim;
	/* The lock is held across the whole fork (page tables copied: milliseconds). A signal
	 * handler that maps or unmaps memory on this thread meanwhile must pass through, not wait
	 * for the lock this thread holds: the guard stays up until fork_parent or fork_child. */
	ww_in_shim++;
	if (fork_locked) {
		ww_lock();
		ww_modules_fork_lock();
		ww_alloc_fork_lock();
		__atomic_add_fetch(&forks_holding, 1, __ATOMIC_RELEASE);
	}
}

static void fork_parent(void)
{
	if (fork_locked) {
		__atomic_sub_fetch(&forks_holding, 1, __ATOMIC_RELEASE);
		ww_alloc_fork_unlock();
		ww_modules_fork_unlock();
		ww_unlock();
	}
	ww_in_shim--;
}

/* The child inherits our tables but not the registrations, and its pages carry no write
 * protection: re-register everything and re-arm it, so the child reports only its own writes. */
static void fork_child(void)
{
	pid_t parent = ww.pid;
	int saved = errno;
	/* ww_in_shim is still raised by fork_prepare (the child inherits this thread's TLS). */
	*live = 1; /* wiped by the fork; this child is tracked (or not) by what follows */
	pthread_mutex_init(&core_lock, NULL);
	forks_holding = 0;
	signal_pending = 0; /* a trigger the parent got is the parent's */
	if (fork_locked) {
		ww_alloc_fork_unlock();
		ww_modules_fork_unlock();
	}
	sem_init(&wake, 0, 0);
	writer_running = false;
	if (ww.tracking) {
		/* Descriptors inherited from the parent describe the parent: drop them. */
		ww_kern_close(&ww.kern);
		ww_out_close(&ww.out);
		ww.tracking = false;
		ww.finished = false;
		ww_ps_free(&ww.table.ever);
		ww_ps_free(&ww.table.pending);
		ww_ps_free(&ww.table.live);
		ww_modules_fork_child();
		for (struct ww_region *r = ww.table.regions; r; r = r->hh.next) {
			r->ever_pages = 0;
			r->flags = 0;
		}
		start_tracking("fork", parent);
		if (ww.tracking) {
			for (struct ww_region *r = ww.table.regions; r; r = r->hh.next) {
				if (!(r->flags & WW_RF_REGISTERED) &&
				    ww_kern_register(&ww.kern, r->start, r->end) == 0)
					r->flags |= WW_RF_REGISTERED;
				if (r->flags & WW_RF_REGISTERED)
					ww_kern_scan(&ww.kern, r->start, r->end, WW_SCAN_DISCARD, NULL,
						     NULL);
				r->flags &= (uint8_t)~WW_RF_NEW;
			}
			/* After the first reconcile: memory the child never had (MADV_DONTFORK) went
			 * there, before the child's figures begin. */
			ww_sites_fork_child();
			memset(&ww.table.iv, 0, sizeof ww.table.iv);
			start_writer();
		}
	}
	ww_in_shim--;
	errno = saved;
}

void ww_init(void)
{
	int expected = 0;
	if (!__atomic_compare_exchange_n(&init_state, &expected, 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return; /* done, or in progress on this or another thread: pass through */
	int saved = errno;
	ww_in_shim++;
	ww_real_resolve();
	if (getauxval(AT_SECURE)) /* setuid and friends: do nothing at all */
		goto out;
	ww_stderr_note(); /* before the first warning: the configuration's */
	ww_config_parse(&ww.cfg, env_get);
	ww_config_check_names(environ);
	if (ww.cfg.disable)
		goto out;
	ww_stack_init();
	ww_malloc_resolve();
	ww_malloc_configure(!ww.cfg.discovery);
	unsigned long ps = getauxval(AT_PAGESZ);
	ww_page_shift = (unsigned long)__builtin_ctzl(ps ? ps : 4096);
	long n = ww_sys(SYS_getcwd, (long)ww.start_dir, sizeof ww.start_dir, 0, 0, 0, 0);
	if (n < 0)
		ww.start_dir[0] = 0;
	read_comm();
	note_own_bss();
	live_flag_init();
	sem_init(&wake, 0, 0);
	const char *exec_pid = getenv("WRITEWATCH_EXEC_PID");
	bool after_exec = false;
	if (exec_pid) {
		char me[24];
		ww_fmt(me, sizeof me, "%d", (int)ww_sys_getpid());
		after_exec = !strcmp(exec_pid, me);
		unsetenv("WRITEWATCH_EXEC_PID");
	}
	const char *exec_dir = getenv("WRITEWATCH_EXEC_DIR");
	if (exec_dir) {
		if (after_exec && strlen(exec_dir) < sizeof ww.start_dir)
			memcpy(ww.start_dir, exec_dir, strlen(exec_dir) + 1);
		unsetenv("WRITEWATCH_EXEC_DIR");
	}
	ww_lock();
	start_tracking(after_exec ? "exec" : "start", 0);
	ww_unlock();
	if (ww.tracking) {
		install_signal();
		start_writer();
		pthread_atfork(fork_prepare, fork_parent, fork_child);
	}
out:
	__atomic_store_n(&init_state, 2, __ATOMIC_RELEASE);
	ww_in_shim--;
	errno = saved;
}

__attribute__((constructor)) static void ww_constructor(void)
{
	ww_init();
}

void ww_exit_snapshot(void)
{
	/* Not in a vfork child (it shares our memory), not from a signal handler that
	 * interrupted the shim on this thread (it holds the lock). */
	if (!ww_ready() || ww_in_shim || ww_sys_getpid() != ww.pid)
		return;
	int saved = errno;
	ww_in_shim++;
	take_snapshot(WW_TRIG_EXIT, NULL);
	ww_in_shim--;
	errno = saved;
}

__attribute__((destructor)) static void ww_destructor(void)
{
	ww_exit_snapshot();
}

/* The program closed or replaced our descriptors: open new ones. Lost registrations are then
 * found per region by the next scan and reported as lost, never as all-written. */
void ww_kern_recover(int bad)
{
	char why[400];
	if (bad & 1)
		ww_warn_once(warned_uffd_gone, "the program closed or replaced writewatch's "
					       "userfaultfd; re-arming, the current interval is "
					       "marked lost");
	struct ww_kern fresh = {.uffd = -1, .pagemap = -1, .vec = ww.kern.vec,
				.vec_len = ww.kern.vec_len};
	if (ww_kern_open(&fresh, ww.kern.vec_len, why, sizeof why) < 0) {
		ww_warn("cannot reopen the kernel interfaces: %s", why);
		ww.tracking = false;
		return;
	}
	/* Never close the old numbers: they may belong to the program now. */
	if (bad & 1) {
		for (struct ww_region *r = ww.table.regions; r; r = r->hh.next)
			if (r->flags & WW_RF_REGISTERED)
				r->flags = (uint8_t)((r->flags & ~WW_RF_REGISTERED) | WW_RF_LOST);
		ww.kern.uffd = fresh.uffd;
		ww.kern.uffd_dev = fresh.uffd_dev;
		ww.kern.uffd_ino = fresh.uffd_ino;
	} else {
		ww_sys_close(fresh.uffd);
	}
	if (bad & 2) {
		ww.kern.pagemap = fresh.pagemap;
		ww.kern.pm_dev = fresh.pm_dev;
		ww.kern.pm_ino = fresh.pm_ino;
	} else {
		ww_sys_close(fresh.pagemap);
	}
}

/* ---- exec ---- */

/* The lock stays held from the exec snapshot through the exec call: no snapshot of the writer
 * (or of another thread) lands after the "exec" one, or is cut short mid-write when the exec
 * ends every other thread. ww_after_exec releases it when the exec failed. */
static __thread int exec_locked __attribute__((tls_model("initial-exec")));

void ww_before_exec(void)
{
	if (!ww_ready() || ww_in_shim || ww_sys_getpid() != ww.pid)
		return; /* a vfork child shares our memory: leave the parent's state alone */
	ww_in_shim++;
	ww_modules_refresh();
	ww_lock();
	if (!ww.finished)
		ww_snapshot_locked(WW_TRIG_EXEC, NULL);
	exec_locked = 1;
}

void ww_after_exec(void)
{
	if (!exec_locked)
		return;
	exec_locked = 0;
	ww_unlock();
	ww_in_shim--;
}

/* Strip our library from an LD_PRELOAD value ("a.so:libwritewatch.so b.so"). */
static size_t strip_preload(const char *val, char *out, size_t cap)
{
	size_t n = 0;
	const char *p = val;
	while (*p) {
		while (*p == ':' || *p == ' ')
			p++;
		const char *s = p;
		while (*p && *p != ':' && *p != ' ')
			p++;
		size_t len = (size_t)(p - s);
		if (!len)
			continue;
		bool ours = len >= 16 && memmem(s, len, "libwritewatch.so", 16);
		if (ours || n + len + 2 > cap)
			continue;
		if (n)
			out[n++] = ':';
		memcpy(out + n, s, len);
		n += len;
	}
	out[n] = 0;
	return n;
}

/* The environment for an exec: marks the new image as exec'd (cause "exec" in its header) and,
 * with WRITEWATCH_FOLLOW=0, removes the shim from LD_PRELOAD. The mark goes only into an
 * environment that still preloads the shim: an image that will not load us (`env -i`, a
 * program's own clean environment) must get exactly the environment it was given. Returns envp
 * itself when there is nothing to change or no memory; otherwise an array in *scratch that
 * ww_exec_env_free frees. */
size_t ww_exec_env_slots(char *const envp[])
{
	size_t count = 0;
	while (envp && envp[count])
		count++;
	return count + 3; /* the two markers and the terminating NULL */
}

char **ww_exec_env(char *const envp[], char **env, size_t slots)
{
	static char preload[4096], mark[48], dir[sizeof ww.start_dir + 24];
	size_t n = 0;
	bool loads_us = false;
	if (!ww_ready() || !envp || slots == 0)
		return (char **)envp;
	for (size_t i = 0; envp[i] && n + 3 < slots; i++) {
		if (!strncmp(envp[i], "WRITEWATCH_EXEC_PID=", 20) ||
		    !strncmp(envp[i], "WRITEWATCH_EXEC_DIR=", 20))
			continue;
		if (!ww.cfg.follow && !strncmp(envp[i], "LD_PRELOAD=", 11)) {
			memcpy(preload, "LD_PRELOAD=", 11);
			if (strip_preload(envp[i] + 11, preload + 11, sizeof preload - 11) == 0)
				continue;
			env[n++] = preload;
			continue;
		}
		if (!strncmp(envp[i], "LD_PRELOAD=", 11) &&
		    strstr(envp[i] + 11, "libwritewatch.so")) /* the name strip_preload matches */
			loads_us = true;
		env[n++] = envp[i];
	}
	if (ww.cfg.follow && loads_us) {
		ww_fmt(mark, sizeof mark, "WRITEWATCH_EXEC_PID=%d", (int)ww.pid);
		env[n++] = mark;
		/* A relative WRITEWATCH_OUTPUT stays relative to where the tree started, not to
		 * wherever this process has moved since: one process tree, one directory. */
		if (ww.start_dir[0]) {
			ww_fmt(dir, sizeof dir, "WRITEWATCH_EXEC_DIR=%s", ww.start_dir);
			env[n++] = dir;
		}
	}
	env[n] = NULL;
	return env;
}

/* ---- the public API ---- */

__attribute__((visibility("default"))) int writewatch_snapshot(const char *label)
{
	if (!ww_ready()) {
		errno = ENOSYS;
		return -1;
	}
	if (ww_in_shim) {
		errno = EDEADLK; /* called from a signal handler that interrupted the shim */
		return -1;
	}
	ww_in_shim++;
	int rc = take_snapshot(WW_TRIG_API, label);
	ww_in_shim--;
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	return 0;
}
