/* The output file: created new from the template (never through a symlink, never over an
 * existing file, 0600, close-on-exec), appended in whole lines, truncated back after a failure. */
#define _GNU_SOURCE
#include "ww.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define WW_OUT_FD_BASE 810

/* Expand %p, %e and %% into dst; returns false if the result does not fit. */
static bool expand(char *dst, size_t cap, const char *tmpl, const char *dir, pid_t pid,
		   const char *name)
{
	size_t n = 0;
	char num[24];
	if (tmpl[0] != '/' && dir[0]) {
		n = ww_fmt(dst, cap, "%s/", dir);
	}
	for (const char *t = tmpl; *t; t++) {
		const char *piece = NULL;
		char one[2] = {*t, 0};
		if (*t == '%' && t[1]) {
			t++;
			if (*t == 'p') {
				ww_fmt(num, sizeof num, "%d", (int)pid);
				piece = num;
			} else if (*t == 'e') {
				piece = name;
			} else if (*t == '%') {
				piece = "%";
			} else {
				one[0] = '%';
				t--;
				piece = one;
			}
		} else {
			piece = one;
		}
		size_t len = strlen(piece);
		if (n + len + 1 > cap)
			return false;
		memcpy(dst + n, piece, len);
		n += len;
	}
	dst[n] = 0;
	return true;
}

static int create_new(const char *path)
{
	return ww_sys_open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_APPEND,
			   0600);
}

int ww_out_open(struct ww_out *o, const char *tmpl, const char *dir, pid_t pid, const char *name)
{
	char base[sizeof o->path - 8];
	memset(o, 0, sizeof *o);
	o->fd = -1;
	if (!expand(base, sizeof base, tmpl, dir, pid, name)) {
		ww_warn("WRITEWATCH_OUTPUT=%s gives a path longer than %ld bytes; not tracking", tmpl,
			(long)sizeof base);
		o->failed = true;
		return -ENAMETOOLONG;
	}
	/* A template naming a directory (or ending in '/') means "in there", with the default
	 * name; a missing directory then says ENOENT for that file, not EISDIR. */
	struct stat st;
	size_t blen = strlen(base);
	bool slash = blen > 0 && base[blen - 1] == '/';
	if (slash || (ww_sys(SYS_newfstatat, AT_FDCWD, (long)base, (long)&st, 0, 0, 0) == 0 &&
		      S_ISDIR(st.st_mode))) {
		char dir_path[sizeof base];
		while (blen > 1 && base[blen - 1] == '/')
			base[--blen] = 0;
		ww_fmt(dir_path, sizeof dir_path, "%s", base);
		ww_fmt(base, sizeof base, "%s/writewatch.%s.%d.jsonl", dir_path, name, (int)pid);
	}
	/* An exec'd image keeps the pid: the same template names the same file, so number it.
	 * Only next to a regular file (or a symlink, never followed): never beside a device. */
	int fd = -EEXIST;
	for (int i = 0; i < 100 && fd == -EEXIST; i++) {
		if (i == 0)
			ww_fmt(o->path, sizeof o->path, "%s", base);
		else
			ww_fmt(o->path, sizeof o->path, "%s.%d", base, i);
		fd = create_new(o->path);
		if (fd == -EEXIST && i == 0 &&
		    ww_sys(SYS_newfstatat, AT_FDCWD, (long)o->path, (long)&st, AT_SYMLINK_NOFOLLOW,
			   0, 0) == 0 &&
		    !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
			ww_warn("WRITEWATCH_OUTPUT=%s names %s, which is not a regular file; the "
				"program runs untracked",
				tmpl, o->path);
			o->failed = true;
			return -EEXIST;
		}
	}
	if (fd < 0) {
		ww_warn("cannot create the output file %s: %s (WRITEWATCH_OUTPUT=%s); the program runs "
			"untracked",
			o->path, ww_strerror(fd), tmpl);
		o->failed = true;
		return fd;
	}
	fd = ww_fd_move_high(fd, WW_OUT_FD_BASE);
	ww_sys(SYS_fstat, fd, (long)&st, 0, 0, 0, 0);
	o->dev = st.st_dev;
	o->ino = st.st_ino;
	o->fd = fd;
	return 0;
}

/* Is o->fd still our file, and still in a directory? If the program closed it or put something
 * else in its place, reopen our file by path (only if it still is the same inode) at a fresh
 * descriptor. A file removed (or its directory) takes no more lines: nobody could read them. */
static bool ensure_ours(struct ww_out *o)
{
	struct stat st;
	if (o->fd >= 0 && ww_sys(SYS_fstat, o->fd, (long)&st, 0, 0, 0, 0) == 0 &&
	    st.st_dev == o->dev && st.st_ino == o->ino)
		return st.st_nlink > 0;
	int fd = ww_sys_open(o->path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return false;
	if (ww_sys(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) != 0 || st.st_dev != o->dev ||
	    st.st_ino != o->ino) {
		ww_sys_close(fd);
		return false;
	}
	fd = ww_fd_move_high(fd, WW_OUT_FD_BASE);
	o->fd = fd; /* the old number belongs to the program now: never close it */
	return true;
}

int ww_out_write(struct ww_out *o, const char *data, size_t len)
{
	if (o->failed)
		return -EIO;
	if (!ensure_ours(o)) {
		ww_warn("the output file %s was closed, replaced or removed behind our back; "
			"snapshots stop here",
			o->path);
		o->failed = true;
		o->fd = -1;
		return -EBADF;
	}
	int rc = ww_write_all(o->fd, data, len);
	if (rc < 0) {
		/* Whole lines only: cut a partial batch back to the last complete line. */
		ww_sys(SYS_ftruncate, o->fd, (long)o->size, 0, 0, 0, 0);
		ww_warn("writing %s failed: %s; snapshots stop here, the lines already written are "
			"intact",
			o->path, ww_strerror(rc));
		o->failed = true;
		return rc;
	}
	o->size += len;
	return 0;
}

void ww_out_close(struct ww_out *o)
{
	if (o->fd >= 0 && !o->failed) {
		struct stat st;
		if (ww_sys(SYS_fstat, o->fd, (long)&st, 0, 0, 0, 0) == 0 && st.st_ino == o->ino &&
		    st.st_dev == o->dev)
			ww_sys_close(o->fd);
	}
	o->fd = -1;
}
