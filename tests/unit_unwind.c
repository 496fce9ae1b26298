/* The fast stack walk (preload/unwind.c) against libgcc's _Unwind_Backtrace on the same stack:
 * whenever the fast walk answers, it answers exactly what libgcc gives, frame for frame, to the
 * end of the stack or to the depth asked; it answers for plain C code (recursion with frames of
 * many sizes), and it hands over (-1) rather than guess for frames it does not take (a
 * frame-pointer-based CFA from a variable-length array, a signal frame). Cached rules give the
 * same answers as fresh ones. */
#define _GNU_SOURCE
#include "ww.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unwind.h>


static volatile int failures, answered, handed_over; /* also counted in a signal handler */

#define MAXF 128

struct walk {
	uintptr_t *out;
	int n, skip;
};

static _Unwind_Reason_Code on_frame(struct _Unwind_Context *ctx, void *arg)
{
	struct walk *w = arg;
	uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
	if (!ip)
		return _URC_END_OF_STACK;
	if (w->skip) { /* compare(): its own frame */
		w->skip--;
		return _URC_NO_REASON;
	}
	w->out[w->n++] = ip - 1;
	return w->n < MAXF ? _URC_NO_REASON : _URC_END_OF_STACK;
}

/* Walk the caller's stack both ways and compare; what = where, for the failure message. */
static __attribute__((noinline)) int compare(const char *what, int max)
{
	uintptr_t fast[MAXF], slow[MAXF];
	int nf = ww_unwind_fast(fast, max, (uintptr_t)__builtin_return_address(0),
				(uintptr_t)__builtin_dwarf_cfa(), 0, 0);
	struct walk w = {slow, 0, 1};
	_Unwind_Backtrace(on_frame, &w);
	int want = w.n < max ? w.n : max;
	if (nf < 0) {
		handed_over++;
		return nf;
	}
	answered++;
	bool same = nf == want && !memcmp(fast, slow, (size_t)nf * sizeof fast[0]);
	if (!same) {
		printf("FAIL unit_unwind: %s (max %d): fast %d frames, libgcc %d\n", what, max, nf,
		       want);
		for (int i = 0; i < (nf > want ? nf : want) && i < 20; i++)
			printf("  %2d %16lx %16lx\n", i, i < nf ? (unsigned long)fast[i] : 0ul,
			       i < want ? (unsigned long)slow[i] : 0ul);
		failures++;
	}
	return nf;
}

static volatile int sink;

/* Recursion through functions of different frame sizes. */
#define LEVEL(name, bytes, next)                                                                   \
	static __attribute__((noinline)) int name(int depth, int max)                              \
	{                                                                                          \
		volatile char pad[bytes];                                                          \
		pad[0] = (char)depth;                                                              \
		int r = depth <= 0 ? compare(#name, max) : next(depth - 1, max);                   \
		sink += pad[0];                                                                    \
		return r;                                                                          \
	}
static int level_a(int depth, int max);
LEVEL(level_c, 4000, level_a)
LEVEL(level_b, 24, level_c)
LEVEL(level_a, 300, level_b)

/* A variable-length array: GCC gives the function a frame-pointer-based CFA. */
static __attribute__((noinline)) int with_vla(int n, int max)
{
	volatile char vla[n];
	vla[0] = 1;
	int r = level_a(2, max);
	sink += vla[0];
	return r;
}

static int cmp_calls;
static int by_value(const void *a, const void *b)
{
	if (!cmp_calls++)
		compare("qsort comparator", MAXF);
	return *(const int *)a - *(const int *)b;
}

static void on_usr1(int sig)
{
	(void)sig;
	compare("signal handler", MAXF);
}

static void *thread_main(void *arg)
{
	(void)arg;
	for (int d = 0; d < 6; d++)
		level_a(d, MAXF);
	return NULL;
}

static void pass_or_fail(const char *name, bool ok)
{
	if (ok)
		printf("PASS %s\n", name);
	else {
		printf("FAIL %s\n", name);
		failures++;
	}
}

/* AddressSanitizer gives functions with arrays frame-pointer-based frames (its redzones):
 * there the fast walk rightly hands those over, and only the exactness checks apply. */
#ifdef __SANITIZE_ADDRESS__
#define PLAIN_FRAMES 0
#else
#define PLAIN_FRAMES 1
#endif

int main(void)
{
	int before = failures;
	for (int round = 0; round < 2; round++) /* fresh rules, then cached ones */
		for (int d = 0; d < 30; d++)
			for (int max = 1; max <= MAXF; max *= 4)
				if (level_a(d, max) < 0)
					handed_over += 1000; /* plain C code must not hand over */
	pass_or_fail("unit_unwind_plain_c_exact",
		     failures == before && (handed_over == 0 || !PLAIN_FRAMES));

	before = failures;
	int fresh = answered;
	ww_unwind_flush();
	for (int d = 0; d < 5; d++)
		level_a(d, MAXF);
	pass_or_fail("unit_unwind_after_flush",
		     failures == before && (answered > fresh || !PLAIN_FRAMES));

	before = failures;
	int ho = handed_over;
	with_vla(100 + (int)(sink & 1), MAXF);
	pass_or_fail("unit_unwind_frame_pointer_cfa_handed_over", failures == before &&
								   handed_over == ho + 1);

	before = failures;
	int v[64];
	for (int i = 0; i < 64; i++)
		v[i] = (i * 37) % 64;
	qsort(v, 64, sizeof v[0], by_value);
	pass_or_fail("unit_unwind_through_libc_exact", failures == before);

	before = failures;
	ho = handed_over;
	signal(SIGUSR1, on_usr1);
	raise(SIGUSR1);
	pass_or_fail("unit_unwind_signal_frame_handed_over",
		     failures == before && handed_over == ho + 1);

	before = failures;
	pthread_t t;
	pthread_create(&t, NULL, thread_main, NULL);
	pthread_join(t, NULL);
	pass_or_fail("unit_unwind_thread_to_its_end", failures == before);
	return failures ? 1 : 0;
}
