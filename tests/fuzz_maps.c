/* libFuzzer target: the /proc/self/maps line parser must accept or reject any bytes without
 * reading outside them, and what it accepts must be self-consistent. */
#include "ww.h"

#include <string.h>
#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Each newline-separated piece is one line, as ww_maps_each hands them over. */
	const char *p = (const char *)data, *end = p + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl ? nl : end) - p);
		struct ww_vma v;
		if (ww_maps_parse_line(p, len, &v)) {
			if (v.start >= v.end || strlen(v.name) >= sizeof v.name ||
			    (v.prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
				__builtin_trap();
			if (v.kind == WW_KIND_HEAP && strncmp(v.name, "[heap]", 6))
				__builtin_trap();
		}
		p += len + 1;
	}
	return 0;
}
