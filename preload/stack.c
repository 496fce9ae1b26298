/* Call stacks for attribution: raw return addresses from libgcc's unwinder (no frame pointers
 * needed, no allocation), never symbolized in the process; the report does that offline. */
#define _GNU_SOURCE
#include "ww.h"

#include <unwind.h>

struct walk {
	uintptr_t *out;
	int max, n, skip;
};

static _Unwind_Reason_Code on_frame(struct _Unwind_Context *ctx, void *arg)
{
	struct walk *w = arg;
	uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
	if (!ip)
		return _URC_END_OF_STACK;
	if (w->skip > 0) {
		w->skip--;
		return _URC_NO_REASON;
	}
	/* A return address points after the call; step back into it so it symbolizes to the
	 * calling line, as debuggers do. */
	w->out[w->n++] = ip - 1;
	return w->n < w->max ? _URC_NO_REASON : _URC_END_OF_STACK;
}

int ww_stack_capture(uintptr_t *out, int max, int skip)
{
	struct walk w = {out, max, 0, skip + 1 /* this function */};
	if (max <= 0)
		return 0;
	_Unwind_Backtrace(on_frame, &w);
	return w.n;
}
