/* The exported hooks and nothing else: each checks the re-entrancy guard, makes the real call
 * with the core's bookkeeping around it, and returns the real result with the real errno. */
#define _GNU_SOURCE
#include "real.h"
#include "ww.h"
#include "ww_uapi.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WW_EXPORT __attribute__((visibility("default")))

extern char **environ;

static void leave(int saved_errno)
{
	ww_leave_hook();
	errno = saved_errno;
}

WW_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	uintptr_t frames[WW_MAX_DEPTH];
	int depth = 0;
	/* The caller's stack, taken before the lock: only for memory we will track. */
	if ((flags & MAP_ANONYMOUS) && !(flags & MAP_SHARED) && !ww_in_shim && ww_ready())
		depth = ww_stack_capture(frames, (int)ww.cfg.stack_depth);
	if (!ww_enter_hook())
		return ww_real.mmap(addr, len, prot, flags, fd, off);
	if (flags & MAP_FIXED)
		ww_on_munmap_pre((uintptr_t)addr, len);
	void *p = ww_real.mmap(addr, len, prot, flags, fd, off);
	int saved = errno;
	if (p != MAP_FAILED)
		ww_on_mmap((uintptr_t)p, len, prot, flags, frames, depth);
	leave(saved);
	return p;
}

/* On 64-bit glibc mmap64 is mmap; programs built with _FILE_OFFSET_BITS=64 call this name. */
WW_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}

WW_EXPORT int munmap(void *addr, size_t len)
{
	if (!ww_enter_hook())
		return ww_real.munmap(addr, len);
	ww_on_munmap_pre((uintptr_t)addr, len);
	int rc = ww_real.munmap(addr, len);
	int saved = errno;
	if (rc == 0)
		ww_on_munmap_post((uintptr_t)addr, len);
	leave(saved);
	return rc;
}

WW_EXPORT void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
	void *new_addr = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	if (!ww_enter_hook())
		return ww_real.mremap(old, oldlen, newlen, flags, new_addr);
	ww_on_mremap_pre((uintptr_t)old, oldlen, (uintptr_t)new_addr, newlen, flags);
	void *p = ww_real.mremap(old, oldlen, newlen, flags, new_addr);
	int saved = errno;
	if (p != MAP_FAILED)
		ww_on_mremap_post((uintptr_t)old, oldlen, (uintptr_t)p, newlen);
	leave(saved);
	return p;
}

static bool discards(int advice)
{
	return advice == MADV_DONTNEED || advice == MADV_FREE || advice == MADV_REMOVE ||
	       advice == 24 /* MADV_DONTNEED_LOCKED */;
}

WW_EXPORT int madvise(void *addr, size_t len, int advice)
{
	if (!discards(advice) || !ww_enter_hook())
		return ww_real.madvise(addr, len, advice);
	ww_on_discard_pre((uintptr_t)addr, len, advice);
	int rc = ww_real.madvise(addr, len, advice);
	leave(errno);
	return rc;
}

/* ---- ioctl: a userfaultfd of the program's own takes precedence over ours ---- */

WW_EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *); /* every ioctl takes at most one pointer-sized argument */
	va_end(ap);
	if (WW_UNLIKELY(req == UFFDIO_REGISTER) && fd != ww.kern.uffd && arg && ww_ready()) {
		const uint64_t *range = arg; /* struct uffdio_register starts with {start, len} */
		ww_on_foreign_register((uintptr_t)range[0], range[1]);
	}
	return ww_real.ioctl(fd, req, arg);
}

/* ---- exec: a snapshot first, then the real exec with the follow policy applied ---- */

/* The exec'd image's environment lives on this stack frame (the exec either replaces the
 * process or fails and returns here): no allocation, so a vfork child, which shares the
 * parent's memory, leaves nothing behind in it. Very large environments use the allocator. */
#define WW_ENV_STACK 1024
#define EXEC_WITH_ENV(envp, call)                                                                  \
	do {                                                                                       \
		ww_before_exec();                                                                  \
		size_t slots = ww_exec_env_slots(envp);                                            \
		bool big = slots > WW_ENV_STACK;                                                   \
		char *room[big ? 1 : slots];                                                       \
		char **heap = big ? ww_alloc(slots * sizeof(char *)) : NULL;                       \
		char **env = ww_exec_env(envp, heap ? heap : room, big && !heap ? 0 : slots);      \
		int rc = call;                                                                     \
		int saved = errno;                                                                 \
		ww_after_exec();                                                                   \
		if (heap)                                                                          \
			ww_free(heap, slots * sizeof(char *));                                     \
		errno = saved;                                                                     \
		return rc;                                                                         \
	} while (0)

WW_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	EXEC_WITH_ENV(envp, ww_real.execve(path, argv, env));
}

WW_EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

WW_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	EXEC_WITH_ENV(envp, ww_real.execvpe(file, argv, env));
}

WW_EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

WW_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	EXEC_WITH_ENV(envp, ww_real.fexecve(fd, argv, env));
}

WW_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
		       int flags)
{
	EXEC_WITH_ENV(envp, ww_real.execveat(dirfd, path, argv, env, flags));
}

/* execl and friends: gather the variable arguments into an argv array first. */
static char **gather(const char *arg0, va_list ap, size_t *count, char ***envp_out)
{
	va_list copy;
	size_t n = 1;
	va_copy(copy, ap);
	while (va_arg(copy, char *))
		n++;
	va_end(copy);
	char **argv = ww_alloc((n + 1) * sizeof *argv);
	if (!argv)
		return NULL;
	argv[0] = (char *)arg0;
	for (size_t i = 1; i <= n; i++)
		argv[i] = va_arg(ap, char *); /* the last one read is the terminating NULL */
	if (envp_out)
		*envp_out = va_arg(ap, char **);
	*count = n + 1;
	return argv;
}

#define EXECL_BODY(call, want_env)                                                                 \
	do {                                                                                       \
		va_list ap;                                                                        \
		size_t count;                                                                      \
		char **envp = environ;                                                             \
		va_start(ap, arg0);                                                                \
		char **argv = gather(arg0, ap, &count, (want_env) ? &envp : NULL);                 \
		va_end(ap);                                                                        \
		if (!argv) {                                                                       \
			errno = ENOMEM;                                                            \
			return -1;                                                         \
		}                                                                                  \
		int rc = call;                                                                     \
		int saved = errno;                                                                 \
		ww_free(argv, count * sizeof *argv);                                               \
		errno = saved;                                                                     \
		return rc;                                                                         \
	} while (0)

WW_EXPORT int execl(const char *path, const char *arg0, ...)
{
	EXECL_BODY(execve(path, argv, envp), false);
}

WW_EXPORT int execle(const char *path, const char *arg0, ...)
{
	EXECL_BODY(execve(path, argv, envp), true);
}

WW_EXPORT int execlp(const char *file, const char *arg0, ...)
{
	EXECL_BODY(execvpe(file, argv, envp), false);
}

/* ---- the trigger signal belongs to the program if it wants it ---- */

static int warned_signal;

static void program_claims(int sig, const struct sigaction *act)
{
	/* Resetting to the default is what a child does before exec (Python's subprocess, in a
	 * vfork child that shares our memory): only a handler or SIG_IGN takes the signal away. */
	if (!act || sig != ww.cfg.signal || sig == 0 || !ww_ready() ||
	    (!(act->sa_flags & SA_SIGINFO) && act->sa_handler == SIG_DFL) ||
	    ww_sys_getpid() != ww.pid)
		return;
	char name[16];
	bool ignores = !(act->sa_flags & SA_SIGINFO) && act->sa_handler == SIG_IGN;
	ww_warn_once(warned_signal,
		     "the program %s SIG%s; it keeps it, and `writewatch dump` no longer triggers "
		     "snapshots (set WRITEWATCH_SIGNAL to another signal)",
		     ignores ? "ignores" : "installs its own handler for",
		     ww_signal_name(sig, name, sizeof name));
}

WW_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	if (!ww_in_shim)
		program_claims(sig, act);
	return ww_real.sigaction(sig, act, old);
}

WW_EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
	if (!ww_in_shim) {
		struct sigaction sa = {.sa_handler = handler};
		program_claims(sig, &sa);
	}
	return ww_real.signal(sig, handler);
}

/* ---- _exit: programs that leave without exit() (dash, fork children) get their exit
 * snapshot too; exit() itself reaches the kernel through glibc's internal _exit, after our
 * destructor took it. ---- */

WW_EXPORT _Noreturn void _exit(int status)
{
	ww_exit_snapshot();
	for (;;) { /* what glibc's _exit does */
		ww_sys(SYS_exit_group, status, 0, 0, 0, 0, 0);
		ww_sys(SYS_exit, status, 0, 0, 0, 0, 0);
	}
}

WW_EXPORT _Noreturn void _Exit(int status)
{
	_exit(status);
}

/* ---- dlclose: the unwinder's cached rules describe code by address; code unloaded may be
 * replaced by other code at the same address. ---- */

/* The next definition of name, looked up once into *slot; NULL (errno ENOSYS) if none. */
static void *next_sym(void **slot, const char *name)
{
	void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	if (!f) {
		ww_in_shim++; /* dlsym may allocate */
		f = dlsym(RTLD_NEXT, name);
		ww_in_shim--;
		__atomic_store_n(slot, f, __ATOMIC_RELEASE);
	}
	if (!f)
		errno = ENOSYS;
	return f;
}

WW_EXPORT int dlclose(void *handle)
{
	static void *slot; // cppcheck-suppress unassignedVariable ; set by next_sym
	int (*next)(void *) = (int (*)(void *))next_sym(&slot, "dlclose");
	if (!next)
		return -1;
	int rc = next(handle);
	int saved = errno;
	ww_unwind_flush();
	errno = saved;
	return rc;
}

/* ---- sbrk and brk: a program shrinking the heap itself unmaps its top, as munmap would
 * (glibc's malloc trims through its internal sbrk, unseen: README, Limitations). Growth is
 * found in the maps at the next snapshot. ---- */

/* The pages the kernel frees when the break goes from *top down to *low: whole pages from the
 * new break rounded up. False if none. */
static bool heap_pages(uintptr_t *low, uintptr_t *top)
{
	uintptr_t mask = ((uintptr_t)1 << ww_page_shift) - 1;
	*low = (*low + mask) & ~mask;
	*top = (*top + mask) & ~mask;
	return *low < *top;
}

static void *sbrk_slot; /* the real sbrk, for both hooks (set by next_sym) */

static void *(*next_sbrk(void))(intptr_t)
{
	return (void *(*)(intptr_t))next_sym(&sbrk_slot, "sbrk");
}

WW_EXPORT void *sbrk(intptr_t increment)
{
	void *(*next)(intptr_t) = next_sbrk();
	if (!next)
		return (void *)-1;
	if (increment >= 0 || !ww_enter_hook())
		return next(increment);
	uintptr_t top = (uintptr_t)next(0), low = top + (uintptr_t)increment;
	bool shrinks = top != (uintptr_t)-1 && low < top && heap_pages(&low, &top);
	if (shrinks)
		ww_on_munmap_pre(low, top - low);
	void *old = next(increment);
	int saved = errno;
	if (shrinks && old != (void *)-1)
		ww_on_munmap_post(low, top - low);
	leave(saved);
	return old;
}

WW_EXPORT int brk(void *addr)
{
	static void *slot; // cppcheck-suppress unassignedVariable ; set by next_sym
	int (*next)(void *) = (int (*)(void *))next_sym(&slot, "brk");
	void *(*real_sbrk)(intptr_t) = next_sbrk();
	if (!next || !real_sbrk)
		return -1;
	uintptr_t top = (uintptr_t)real_sbrk(0), low = (uintptr_t)addr;
	if (top == (uintptr_t)-1 || low >= top || !heap_pages(&low, &top) || !ww_enter_hook())
		return next(addr);
	ww_on_munmap_pre(low, top - low);
	int rc = next(addr);
	int saved = errno;
	if (rc == 0)
		ww_on_munmap_post(low, top - low);
	leave(saved);
	return rc;
}
