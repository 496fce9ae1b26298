/* The real functions behind our hooks, resolved once with dlsym(RTLD_NEXT) in the constructor.
 * Until then (another library's constructor calling mmap first) the raw syscall stands in. */
#ifndef WW_REAL_H
#define WW_REAL_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

struct ww_real_fns {
	void *(*mmap)(void *, size_t, int, int, int, off_t);
	int (*munmap)(void *, size_t);
	void *(*mremap)(void *, size_t, size_t, int, ...);
	int (*madvise)(void *, size_t, int);
	int (*ioctl)(int, unsigned long, ...);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
	int (*execveat)(int, const char *, char *const[], char *const[], int);
	int (*sigaction)(int, const struct sigaction *, struct sigaction *);
	sighandler_t (*signal)(int, sighandler_t);
};
extern struct ww_real_fns ww_real;

/* Resolve every entry; entries dlsym cannot find keep their raw-syscall fallback. */
void ww_real_resolve(void);
/* For the calls with no raw-syscall equivalent (execvpe, sigaction, signal): resolve now if the
 * constructor has not run yet. */
void ww_real_resolve_late(void);

#endif
