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

static int raw_mprotect(void *a, size_t l, int p)
{
	return (int)ret_errno(ww_sys(SYS_mprotect, (long)a, (long)l, p, 0, 0, 0));
}

static int raw_madvise(void *a, size_t l, int adv)
{
	return (int)ret_errno(ww_sys(SYS_madvise, (long)a, (long)l, adv, 0, 0, 0));
}

static int raw_execve(const char *p, char *const a[], char *const e[])
{
	return (int)ret_errno(ww_sys(SYS_execve, (long)p, (long)a, (long)e, 0, 0, 0));
}

static int no_execvpe(const char *p, char *const a[], char *const e[])
{
	(void)p, (void)a, (void)e;
	errno = ENOSYS;
	return -1;
}

static int raw_fexecve(int fd, char *const a[], char *const e[])
{
	return (int)ret_errno(ww_sys(SYS_execveat, fd, (long)"", (long)a, (long)e, 0x1000, 0));
}

static int raw_sigaction(int s, const struct sigaction *a, struct sigaction *o)
{
	(void)s, (void)a, (void)o;
	errno = ENOSYS;
	return -1;
}

struct ww_real_fns ww_real = {
	raw_mmap, raw_munmap, raw_mremap, raw_mprotect, raw_madvise,
	raw_execve, no_execvpe, raw_fexecve, raw_sigaction,
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
	RESOLVE(mprotect, "mprotect");
	RESOLVE(madvise, "madvise");
	RESOLVE(execve, "execve");
	RESOLVE(execvpe, "execvpe");
	RESOLVE(fexecve, "fexecve");
	RESOLVE(sigaction, "sigaction");
}
