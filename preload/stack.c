/* Call stacks for attribution: raw return addresses from libgcc's unwinder (no frame pointers
 * needed, no allocation), the shim's own frames left out, never symbolized in the process: the
 * report does that offline. */
#define _GNU_SOURCE
#include "ww.h"

#include <link.h>
#include <unwind.h>

static uintptr_t own_lo, own_hi; /* the shim's mapped object */

static int find_self(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	uintptr_t me = (uintptr_t)arg, lo = UINTPTR_MAX, hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t s = info->dlpi_addr + ph->p_vaddr, e = s + ph->p_memsz;
		lo = s < lo ? s : lo;
		hi = e > hi ? e : hi;
	}
	if (me >= lo && me < hi) {
		own_lo = lo;
		own_hi = hi;
		return 1;
	}
	return 0;
}

void ww_stack_init(void)
{
	dl_iterate_phdr(find_self, (void *)(uintptr_t)ww_stack_init);
}

struct walk {
	uintptr_t *out;
	int max, n;
};

static _Unwind_Reason_Code on_frame(struct _Unwind_Context *ctx, void *arg)
{
	struct walk *w = arg;
	uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
	if (!ip)
		return _URC_END_OF_STACK;
	if (w->n == 0 && ip >= own_lo && ip < own_hi)
		return _URC_NO_REASON; /* still inside the shim: the caller comes next */
	/* A return address points after the call; step back into it so it symbolizes to the
	 * calling line, as debuggers do. */
	w->out[w->n++] = ip - 1;
	return w->n < w->max ? _URC_NO_REASON : _URC_END_OF_STACK;
}

__attribute__((noinline)) int ww_stack_capture(uintptr_t *out, int max)
{
	struct walk w = {out, max, 0};
	if (max <= 0)
		return 0;
	/* The names may resolve to libunwind's versions (perf, many C++ programs), which map
	 * memory under their own lock: their mmap must pass through, not capture a stack again. */
	ww_in_shim++;
	int n = ww_unwind_fast(out, max, (uintptr_t)__builtin_return_address(0),
			       (uintptr_t)__builtin_dwarf_cfa(), own_lo, own_hi);
	if (n < 0) /* a frame the fast walk does not take: libgcc's, from the start */
		_Unwind_Backtrace(on_frame, &w);
	ww_in_shim--;
	return n < 0 ? w.n : n;
}
