/* writewatch's public API: phase markers for programs run under writewatch. Safe to call when
 * the shim is not loaded: the call then returns -1 with errno ENOSYS. Header-only; link -ldl on
 * glibc older than 2.34. */
#ifndef WRITEWATCH_H
#define WRITEWATCH_H

#include <dlfcn.h>
#include <errno.h>

/* Take a snapshot now, labelled `label` (may be NULL), and return once it is in the output
 * file: 0 on success, -1 with errno set otherwise (ENOSYS: writewatch not loaded or not
 * tracking; EDEADLK: called from a signal handler that interrupted writewatch itself). */
static inline int writewatch_snapshot(const char *label)
{
	typedef int (*ww_snapshot_fn)(const char *);
	static ww_snapshot_fn fn;
	static int looked;
	if (!__atomic_load_n(&looked, __ATOMIC_ACQUIRE)) {
		fn = (ww_snapshot_fn)dlsym(RTLD_DEFAULT, "writewatch_snapshot");
		__atomic_store_n(&looked, 1, __ATOMIC_RELEASE);
	}
	if (!fn) {
		errno = ENOSYS;
		return -1;
	}
	return fn(label);
}

#endif
