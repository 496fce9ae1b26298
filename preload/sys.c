/* Raw system calls, clocks and the one-line stderr messages: the shim's own I/O, which never
 * allocates, never uses stdio and leaves the program's errno as it found it. */
#define _GNU_SOURCE
#include "ww.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

bool ww_quiet;
int ww_warn_fd = 2;

/* The stderr the process started with (see ww_stderr_note). */
static struct {
	bool noted, open;
	dev_t dev;
	ino_t ino;
} err_id;

long ww_sys(long nr, long a, long b, long c, long d, long e, long f)
{
	int saved = errno;
	long r = syscall(nr, a, b, c, d, e, f);
	if (r == -1)
		r = -errno;
	errno = saved;
	return r;
}

void *ww_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	long r = ww_sys(SYS_mmap, (long)addr, (long)len, prot, flags, fd, (long)off);
	return (r < 0 && r > -4096) ? ((void *)-1) : (void *)r;
}

int ww_sys_munmap(void *addr, size_t len)
{
	return (int)ww_sys(SYS_munmap, (long)addr, (long)len, 0, 0, 0, 0);
}

int ww_sys_open(const char *path, int flags, int mode)
{
	return (int)ww_sys(SYS_openat, AT_FDCWD, (long)path, flags, mode, 0, 0);
}

int ww_sys_close(int fd)
{
	return (int)ww_sys(SYS_close, fd, 0, 0, 0, 0, 0);
}

ssize_t ww_sys_read(int fd, void *buf, size_t len)
{
	long r;
	do
		r = ww_sys(SYS_read, fd, (long)buf, (long)len, 0, 0, 0);
	while (r == -EINTR);
	return r;
}

long ww_sys_ioctl(int fd, unsigned long req, void *arg)
{
	long r;
	do
		r = ww_sys(SYS_ioctl, fd, (long)req, (long)arg, 0, 0, 0);
	while (r == -EINTR);
	return r;
}

pid_t ww_sys_getpid(void)
{
	return (pid_t)ww_sys(SYS_getpid, 0, 0, 0, 0, 0, 0);
}

uint64_t ww_now_ns(int clock)
{
	struct timespec ts;
	int saved = errno;
	clock_gettime(clock, &ts);
	errno = saved;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

ssize_t ww_read_file(const char *path, char *buf, size_t cap)
{
	int fd = ww_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
	size_t n = 0;
	if (fd < 0)
		return fd;
	while (n < cap) {
		ssize_t r = ww_sys_read(fd, buf + n, cap - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	ww_sys_close(fd);
	return (ssize_t)n;
}

size_t ww_self_exe(char *buf, size_t cap)
{
	long n = ww_sys(SYS_readlink, (long)"/proc/self/exe", (long)buf, (long)cap - 1, 0, 0, 0);
	buf[n > 0 ? n : 0] = 0;
	return n > 0 ? (size_t)n : 0;
}

int ww_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		long r = ww_sys(SYS_write, fd, (long)p, (long)len, 0, 0, 0);
		if (r == -EINTR)
			continue;
		if (r < 0)
			return (int)r;
		if (r == 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

int ww_fd_move_high(int fd, int base)
{
	long nfd = ww_sys(SYS_fcntl, fd, F_DUPFD_CLOEXEC, base, 0, 0, 0);
	if (nfd == -EINVAL) {
		/* base is at or above RLIMIT_NOFILE: use the top of the allowed range instead, so
		 * the program still gets the small numbers it would get without us. */
		struct rlimit rl;
		if (ww_sys(SYS_getrlimit, RLIMIT_NOFILE, (long)&rl, 0, 0, 0, 0) == 0 &&
		    rl.rlim_cur >= 32 && rl.rlim_cur < (rlim_t)base)
			nfd = ww_sys(SYS_fcntl, fd, F_DUPFD_CLOEXEC, (long)rl.rlim_cur - 16, 0, 0, 0);
	}
	if (nfd < 0)
		return fd; /* no room up there: keep the original */
	ww_sys_close(fd);
	return (int)nfd;
}

static size_t put_str(char *buf, size_t pos, size_t cap, const char *s)
{
	if (!s)
		s = "(null)";
	while (*s && pos + 1 < cap)
		buf[pos++] = *s++;
	return pos;
}

static size_t put_num(char *buf, size_t pos, size_t cap, unsigned long v, bool neg, int base)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = "0123456789abcdef"[v % (unsigned)base];
		v /= (unsigned)base;
	} while (v);
	if (neg && pos + 1 < cap)
		buf[pos++] = '-';
	if (base == 16)
		pos = put_str(buf, pos, cap, "0x");
	while (n > 0 && pos + 1 < cap)
		buf[pos++] = tmp[--n];
	return pos;
}

size_t ww_vfmt(char *buf, size_t cap, const char *fmt, va_list ap)
{
	size_t pos = 0;
	if (cap == 0)
		return 0;
	for (const char *f = fmt; *f && pos + 1 < cap; f++) {
		if (*f != '%') {
			buf[pos++] = *f;
			continue;
		}
		f++;
		bool is_long = false;
		if (*f == 'l') {
			is_long = true;
			f++;
		}
		switch (*f) {
		case 's':
			pos = put_str(buf, pos, cap, va_arg(ap, const char *));
			break;
		case 'd': {
			long v = is_long ? va_arg(ap, long) : va_arg(ap, int);
			pos = put_num(buf, pos, cap, v < 0 ? -(unsigned long)v : (unsigned long)v, v < 0,
				      10);
			break;
		}
		case 'u':
			pos = put_num(buf, pos, cap,
				      is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), false,
				      10);
			break;
		case 'x':
			pos = put_num(buf, pos, cap,
				      is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), false,
				      16);
			break;
		case '%':
			buf[pos++] = '%';
			break;
		default:
			return pos; /* a bad directive ends the text rather than misreading args */
		}
	}
	buf[pos] = 0;
	return pos;
}

size_t ww_fmt(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t n = ww_vfmt(buf, cap, fmt, ap);
	va_end(ap);
	return n;
}

void ww_stderr_note(void)
{
	struct stat st;
	err_id.open = ww_sys(SYS_fstat, ww_warn_fd, (long)&st, 0, 0, 0, 0) == 0;
	err_id.dev = err_id.open ? st.st_dev : 0;
	err_id.ino = err_id.open ? st.st_ino : 0;
	err_id.noted = true;
}

/* A daemon closes its stderr and the number goes to its next open file (a log, a database): a
 * line written to descriptor 2 then would corrupt it. Write only to the file noted at start. */
static bool stderr_is_ours(void)
{
	struct stat st;
	if (!err_id.noted)
		return true;
	return err_id.open && ww_sys(SYS_fstat, ww_warn_fd, (long)&st, 0, 0, 0, 0) == 0 &&
	       st.st_dev == err_id.dev && st.st_ino == err_id.ino;
}

void ww_warn(const char *fmt, ...)
{
	char line[1600];
	if (ww_quiet || !stderr_is_ours())
		return;
	size_t n = ww_fmt(line, sizeof line, "%s", "writewatch: ");
	va_list ap;
	va_start(ap, fmt);
	n += ww_vfmt(line + n, sizeof line - n - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	(void)ww_write_all(ww_warn_fd, line, n);
}

const char *ww_strerror(int err)
{
	switch (err < 0 ? -err : err) {
	case EPERM: return "EPERM (operation not permitted)";
	case ENOENT: return "ENOENT (no such file or directory)";
	case EACCES: return "EACCES (permission denied)";
	case EEXIST: return "EEXIST (file exists)";
	case ENOTDIR: return "ENOTDIR (not a directory)";
	case EINVAL: return "EINVAL (invalid argument)";
	case ENOMEM: return "ENOMEM (out of memory)";
	case ENOSPC: return "ENOSPC (no space left on device)";
	case ENOSYS: return "ENOSYS (function not implemented)";
	case ENOTTY: return "ENOTTY (inappropriate ioctl for device)";
	case EBADF: return "EBADF (bad file descriptor)";
	case EMFILE: return "EMFILE (too many open files)";
	case EROFS: return "EROFS (read-only file system)";
	case ELOOP: return "ELOOP (symbolic link in the way)";
	case EDQUOT: return "EDQUOT (disk quota exceeded)";
	case EIO: return "EIO (input/output error)";
	case EFBIG: return "EFBIG (file too large)";
	case ENAMETOOLONG: return "ENAMETOOLONG (name too long)";
	case EISDIR: return "EISDIR (is a directory)";
	case ENXIO: return "ENXIO (no such device or address)";
	case ETXTBSY: return "ETXTBSY (text file busy)";
	case EAGAIN: return "EAGAIN (resource temporarily unavailable)";
	case EFAULT: return "EFAULT (bad address)";
	case EOPNOTSUPP: return "EOPNOTSUPP (operation not supported)";
	default: {
		static char other[32]; /* rare errors: the number, for the one line that names it */
		ww_fmt(other, sizeof other, "errno %d", err < 0 ? -err : err);
		return other;
	}
	}
}
