/* /proc/self/maps: a bounds-checked line parser (fuzzed by tests/fuzz_maps.c) and a reader that
 * streams the file through a fixed buffer, handing private anonymous VMAs to a callback. */
#define _GNU_SOURCE
#include "ww.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>

static bool hexval(char ch, unsigned *v)
{
	if (ch >= '0' && ch <= '9')
		*v = (unsigned)(ch - '0');
	else if (ch >= 'a' && ch <= 'f')
		*v = (unsigned)(ch - 'a' + 10);
	else if (ch >= 'A' && ch <= 'F')
		*v = (unsigned)(ch - 'A' + 10);
	else
		return false;
	return true;
}

/* Parse a number in base 16 or 10 at *p, stopping at the first non-digit. */
static bool number(const char **p, const char *end, int base, uint64_t *out)
{
	uint64_t v = 0;
	const char *s = *p;
	unsigned d;
	while (s < end && (base == 16 ? hexval(*s, &d) : (*s >= '0' && *s <= '9' && ((d = (unsigned)(*s - '0')), 1)))) {
		if (v > (UINT64_MAX >> 4))
			return false;
		v = v * (unsigned)base + d;
		s++;
	}
	if (s == *p)
		return false;
	*p = s;
	*out = v;
	return true;
}

static bool expect(const char **p, const char *end, char ch)
{
	if (*p >= end || **p != ch)
		return false;
	(*p)++;
	return true;
}

static void skip_spaces(const char **p, const char *end)
{
	while (*p < end && **p == ' ')
		(*p)++;
}

bool ww_maps_parse_line(const char *line, size_t len, struct ww_vma *out)
{
	const char *p = line, *end = line + len;
	uint64_t start, stop, off, major, minor, inode;
	memset(out, 0, sizeof *out);
	if (!number(&p, end, 16, &start) || !expect(&p, end, '-') || !number(&p, end, 16, &stop) ||
	    !expect(&p, end, ' ') || end - p < 5 || start >= stop)
		return false;
	const char *perm = p;
	if ((perm[0] != 'r' && perm[0] != '-') || (perm[1] != 'w' && perm[1] != '-') ||
	    (perm[2] != 'x' && perm[2] != '-') || (perm[3] != 'p' && perm[3] != 's') ||
	    perm[4] != ' ')
		return false;
	p += 5;
	if (!number(&p, end, 16, &off) || !expect(&p, end, ' ') || !number(&p, end, 16, &major) ||
	    !expect(&p, end, ':') || !number(&p, end, 16, &minor) || !expect(&p, end, ' ') ||
	    !number(&p, end, 10, &inode))
		return false;
	skip_spaces(&p, end);
	size_t nlen = (size_t)(end - p);
	if (nlen >= sizeof out->name)
		nlen = sizeof out->name - 1;
	memcpy(out->name, p, nlen);
	out->name[nlen] = 0;
	out->start = (uintptr_t)start;
	out->end = (uintptr_t)stop;
	out->prot = (uint8_t)((perm[0] == 'r' ? PROT_READ : 0) | (perm[1] == 'w' ? PROT_WRITE : 0) |
			      (perm[2] == 'x' ? PROT_EXEC : 0));
	bool anon_name = nlen == 0 || !strncmp(out->name, "[heap]", 6) ||
			 !strncmp(out->name, "[stack]", 7) || !strncmp(out->name, "[anon:", 6);
	out->priv_anon = perm[3] == 'p' && inode == 0 && major == 0 && minor == 0 && anon_name;
	out->kind = !strncmp(out->name, "[heap]", 6)    ? WW_KIND_HEAP
		    : !strncmp(out->name, "[stack]", 7) ? WW_KIND_STACK
							: WW_KIND_ANON;
	return true;
}

static char maps_buf[64 * 1024];

int ww_maps_each(ww_vma_fn fn, void *ctx)
{
	int fd = ww_sys_open("/proc/self/maps", O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	size_t have = 0;
	int rc = 0;
	for (;;) {
		ssize_t n = ww_sys_read(fd, maps_buf + have, sizeof maps_buf - have);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		have += (size_t)n;
		size_t pos = 0;
		for (;;) {
			char *nl = memchr(maps_buf + pos, '\n', have - pos);
			if (!nl)
				break;
			struct ww_vma v;
			if (ww_maps_parse_line(maps_buf + pos, (size_t)(nl - (maps_buf + pos)), &v) &&
			    (rc = fn(ctx, &v)) != 0)
				goto done;
			pos = (size_t)(nl - maps_buf) + 1;
		}
		if (n == 0)
			break;
		memmove(maps_buf, maps_buf + pos, have - pos);
		have -= pos;
		if (have == sizeof maps_buf)
			have = 0; /* an absurdly long line: drop it rather than stall */
	}
done:
	ww_sys_close(fd);
	return rc;
}
