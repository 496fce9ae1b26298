/* Resolution of the real functions, with raw-syscall fallbacks that behave like glibc's
 * wrappers (return -1 and set errno), used before the constructor has run. */
#define _GNU_SOURCE
#include "real.h"
#include "ww.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static long ret_errno(long r)
{
	if (r < 0 && r > -4096) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

static void *raw_mmap(void *a, size_t l, int p, int f, int fd, off_t o)
{
	return (void *)ret_errno(ww_sys(SYS_mmap, (long)a, (long)l, p, f, fd, (long)o));
}

static int raw_munmap(void *a, size_t l)
{
	return (int)ret_errno(ww_sys(SYS_munmap, (long)a, (long)l, 0, 0, 0, 0));
}

static void *raw_mremap(void *a, size_t ol, size_t nl, int f, ...)
{
	va_list ap;
	va_start(ap, f);
	void *na = (f & MREMAP_FIXED) ? va_arg(ap, void *) : NULL;
	va_end(ap);
	return (void *)ret_errno(ww_sys(SYS_mremap, (long)a, (long)ol, (long)nl, f, (long)na, 0));
}

static int raw_madvise(void *a, size_t l, int adv)
{
	return (int)ret_errno(ww_sys(SYS_madvise, (long)a, (long)l, adv, 0, 0, 0));
}

static int raw_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	return (int)ret_errno(ww_sys(SYS_ioctl, fd, (long)req, (long)arg, 0, 0, 0));
}

static int raw_execve(const char *p, char *const a[], char *const e[])
{
	return (int)ret_errno(ww_sys(SYS_execve, (long)p, (long)a, (long)e, 0, 0, 0));
}

static int raw_execveat(int dfd, const char *p, char *const a[], char *const e[], int flags)
{
	return (int)ret_errno(ww_sys(SYS_execveat, dfd, (long)p, (long)a, (long)e, flags, 0));
}

static int late_execvpe(const char *p, char *const a[], char *const e[])
{
	ww_real_resolve_late();
	if (ww_real.execvpe == late_execvpe) {
		errno = ENOSYS;
		return -1;
	}
	return ww_real.execvpe(p, a, e);
}

static int raw_fexecve(int fd, char *const a[], char *const e[])
{
	return (int)ret_errno(ww_sys(SYS_execveat, fd, (long)"", (long)a, (long)e, 0x1000, 0));
}

/* sigaction needs libc's signal trampoline, so there is no raw equivalent: resolve late. */
static int late_sigaction(int s, const struct sigaction *a, struct sigaction *o)
{
	ww_real_resolve_late();
	if (ww_real.sigaction == late_sigaction) {
		errno = ENOSYS;
		return -1;
	}
	return ww_real.sigaction(s, a, o);
}

static sighandler_t late_signal(int s, sighandler_t h)
{
	ww_real_resolve_late();
	if (ww_real.signal == late_signal) {
		errno = ENOSYS;
		return SIG_ERR;
	}
	return ww_real.signal(s, h);
}

struct ww_real_fns ww_real = {
	.mmap = raw_mmap,
	.munmap = raw_munmap,
	.mremap = raw_mremap,
	.madvise = raw_madvise,
	.ioctl = raw_ioctl,
	.execve = raw_execve,
	.execvpe = late_execvpe,
	.fexecve = raw_fexecve,
	.execveat = raw_execveat,
	.sigaction = late_sigaction,
	.signal = late_signal,
};

#define RESOLVE(field, name)                                                                       \
	do {                                                                                       \
		void *p = dlsym(RTLD_NEXT, name);                                                  \
		if (p)                                                                             \
			__atomic_store_n((void **)&ww_real.field, p, __ATOMIC_RELEASE);            \
	} while (0)

void ww_real_resolve(void)
{
	RESOLVE(mmap, "mmap");
	RESOLVE(munmap, "munmap");
	RESOLVE(mremap, "mremap");
	RESOLVE(madvise, "madvise");
	RESOLVE(ioctl, "ioctl");
	RESOLVE(execve, "execve");
	RESOLVE(execvpe, "execvpe");
	RESOLVE(fexecve, "fexecve");
	RESOLVE(execveat, "execveat");
	RESOLVE(sigaction, "sigaction");
	RESOLVE(signal, "signal");
}

void ww_real_resolve_late(void)
{
	ww_in_shim++; /* dlsym may allocate, and the allocator may map: pass those through */
	RESOLVE(execvpe, "execvpe");
	RESOLVE(sigaction, "sigaction");
	RESOLVE(signal, "signal");
	ww_in_shim--;
}
