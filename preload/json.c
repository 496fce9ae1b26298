/* A growable text buffer in the shim's own memory, with the few JSON pieces the records need:
 * escaped strings, decimal and hex numbers. Our own formatting: no stdio, no locale. */
#define _GNU_SOURCE
#include "ww.h"

#include <string.h>

static bool grow(struct ww_buf *b, size_t need)
{
	if (b->oom)
		return false;
	if (b->len + need <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + need)
		cap *= 2;
	char *d = ww_alloc(cap);
	if (!d) {
		b->oom = true;
		return false;
	}
	if (b->data) {
		memcpy(d, b->data, b->len);
		ww_free(b->data, b->cap);
	}
	b->data = d;
	b->cap = cap;
	return true;
}

void ww_buf_put(struct ww_buf *b, const char *s, size_t n)
{
	if (!grow(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
}

void ww_buf_str(struct ww_buf *b, const char *s)
{
	ww_buf_put(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when the bytes there are not one. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned c = p[0];
	size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
	if (!n)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if (n == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)))
		return 0; /* overlong, or a UTF-16 surrogate */
	if (n == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)))
		return 0; /* overlong, or past U+10FFFF */
	return n;
}

/* JSON strings must be UTF-8: argv, paths and labels may hold any bytes; a byte that does not
 * start a valid sequence becomes U+FFFD, the replacement character. */
void ww_buf_json_str(struct ww_buf *b, const char *s)
{
	if (!s) {
		ww_buf_str(b, "null");
		return;
	}
	ww_buf_put(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			ww_buf_put(b, esc, 2);
		} else if (*p < 0x20 || *p == 0x7f) {
			static const char hex[] = "0123456789abcdef";
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 15];
			ww_buf_put(b, esc, 6);
		} else if (*p < 0x80) {
			ww_buf_put(b, (const char *)p, 1);
		} else {
			size_t n = utf8_len(p);
			if (n) {
				ww_buf_put(b, (const char *)p, n);
				p += n - 1;
			} else {
				ww_buf_put(b, "\xef\xbf\xbd", 3);
			}
		}
	}
	ww_buf_put(b, "\"", 1);
}

void ww_buf_u64(struct ww_buf *b, uint64_t v)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	ww_buf_put(b, tmp + sizeof tmp - n, (size_t)n);
}

void ww_buf_i64(struct ww_buf *b, int64_t v)
{
	if (v < 0) {
		ww_buf_put(b, "-", 1);
		ww_buf_u64(b, -(uint64_t)v);
	} else {
		ww_buf_u64(b, (uint64_t)v);
	}
}

void ww_buf_hex(struct ww_buf *b, uint64_t v)
{
	char tmp[20];
	int n = 0;
	do {
		tmp[sizeof tmp - 1 - n++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	ww_buf_put(b, "\"0x", 3);
	ww_buf_put(b, tmp + sizeof tmp - n, (size_t)n);
	ww_buf_put(b, "\"", 1);
}

void ww_buf_free(struct ww_buf *b)
{
	if (b->data)
		ww_free(b->data, b->cap);
	memset(b, 0, sizeof *b);
}
