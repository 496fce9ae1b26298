/* Unit tests of the shim's core, linked directly (no LD_PRELOAD): the configuration parser, the
 * page sets, the region table (splits, cuts, moves), the JSON writer and the maps parser,
 * including allocation failures injected through the shim's allocator. */
#define _GNU_SOURCE
#include "ww.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int failures;
static const char *current;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("FAIL %s: %s:%d: %s\n", current, __FILE__, __LINE__, #cond);       \
			failures++;                                                                \
			return;                                                                    \
		}                                                                                  \
	} while (0)

static void run(const char *name, void (*fn)(void))
{
	int before = failures;
	current = name;
	fn();
	if (failures == before)
		printf("PASS %s\n", name);
	fflush(stdout);
}

/* ---- configuration ---- */

static const char *env_vals[16][2];

static const char *fake_get(const char *name)
{
	for (int i = 0; i < 16 && env_vals[i][0]; i++)
		if (!strcmp(env_vals[i][0], name))
			return env_vals[i][1];
	return NULL;
}

static void set_env(int i, const char *k, const char *v)
{
	env_vals[i][0] = k;
	env_vals[i][1] = v;
	env_vals[i + 1][0] = NULL;
}

static void t_config_defaults(void)
{
	struct ww_config c;
	env_vals[0][0] = NULL;
	ww_config_parse(&c, fake_get);
	CHECK(!strcmp(c.output, "writewatch.%e.%p.jsonl"));
	CHECK(c.interval_ms == 0 && c.signal == SIGUSR2 && c.ranges && c.follow && !c.quiet);
	CHECK(c.scan_vec == 1024 && !c.disable);
}

static void t_config_values(void)
{
	struct ww_config c;
	set_env(0, "WRITEWATCH_INTERVAL_MS", "250");
	set_env(1, "WRITEWATCH_SIGNAL", "RTMIN+3");
	set_env(2, "WRITEWATCH_RANGES", "0");
	set_env(3, "WRITEWATCH_FOLLOW", "no");
	set_env(4, "WRITEWATCH_OUTPUT", "/tmp/x.%p");
	set_env(5, "WRITEWATCH_SCAN_VEC", "50");
	ww_config_parse(&c, fake_get);
	CHECK(c.interval_ms == 250 && c.signal == SIGRTMIN + 3 && !c.ranges && !c.follow);
	CHECK(!strcmp(c.output, "/tmp/x.%p") && c.scan_vec == 50);
}

static void t_config_bad_values_keep_defaults(void)
{
	struct ww_config c;
	set_env(0, "WRITEWATCH_INTERVAL_MS", "abc");
	set_env(1, "WRITEWATCH_SIGNAL", "BOGUS");
	set_env(2, "WRITEWATCH_RANGES", "maybe");
	set_env(3, "WRITEWATCH_SCAN_VEC", "0");
	set_env(4, "WRITEWATCH_OUTPUT", "");
	set_env(5, "WRITEWATCH_QUIET", "1"); /* keeps this test's output clean, and is tested */
	ww_config_parse(&c, fake_get);
	CHECK(c.interval_ms == 0 && c.signal == SIGUSR2 && c.ranges && c.scan_vec == 1024);
	CHECK(!strcmp(c.output, "writewatch.%e.%p.jsonl") && c.quiet && ww_quiet);
	ww_quiet = false;
	set_env(0, "WRITEWATCH_INTERVAL_MS", "99999999999999999999999");
	set_env(1, "WRITEWATCH_QUIET", "1");
	ww_config_parse(&c, fake_get);
	CHECK(c.interval_ms == 0);
	ww_quiet = false;
}

static void t_config_unknown_names(void)
{
	char *env[] = {"WRITEWATCH_INTERVL=5", "WRITEWATCH_OUTPUT=x", "WRITEWATCH_EXEC_PID=7",
		       "PATH=/bin", "WRITEWATCH_=1", "WRITEWATCH_OUTPUTS=y", "WRITEWATCH_QUIET", "WRITEWATCH_LIB=/x", NULL};
	ww_quiet = true;
	CHECK(ww_config_check_names(env) == 3); /* INTERVL, the empty name, OUTPUTS */
	CHECK(ww_config_check_names(NULL) == 0);
	ww_quiet = false;
}

static void t_signal_names(void)
{
	char buf[16];
	CHECK(ww_signal_parse("USR1") == SIGUSR1 && ww_signal_parse("SIGUSR2") == SIGUSR2);
	CHECK(ww_signal_parse("usr2") == SIGUSR2 && ww_signal_parse("12") == 12);
	CHECK(ww_signal_parse("RTMIN") == SIGRTMIN && ww_signal_parse("RTMAX-1") == SIGRTMAX - 1);
	CHECK(ww_signal_parse("none") == 0 && ww_signal_parse("0") == 0);
	CHECK(ww_signal_parse("KILL") == -1 && ww_signal_parse("SEGV") == -1);
	CHECK(ww_signal_parse("TERM") == -1 && ww_signal_parse("INT") == -1);
	CHECK(ww_signal_parse("CHLD") == -1 && ww_signal_parse("HUP") == -1);
	CHECK(ww_signal_parse("32") == -1 && ww_signal_parse("33") == -1);
	CHECK(ww_signal_parse("RTMAX-31") == -1 && ww_signal_parse("ALRM") == SIGALRM);
	CHECK(ww_signal_parse("RTMIN-1") == -1 && ww_signal_parse("RTMIN+99") == -1);
	CHECK(ww_signal_parse("") == -1 && ww_signal_parse("RTMIN+") == -1);
	CHECK(!strcmp(ww_signal_name(SIGUSR2, buf, sizeof buf), "USR2"));
	CHECK(!strcmp(ww_signal_name(SIGRTMIN + 3, buf, sizeof buf), "RTMIN+3"));
	CHECK(!strcmp(ww_signal_name(0, buf, sizeof buf), "none"));
}

/* ---- page sets ---- */

struct runs {
	uint64_t v[64][2];
	int n;
};

static void collect(void *ctx, uint64_t first, uint64_t n)
{
	struct runs *r = ctx;
	if (r->n < 64) {
		r->v[r->n][0] = first;
		r->v[r->n][1] = n;
	}
	r->n++;
}

static void t_pageset_basic(void)
{
	struct ww_pageset ps = {0};
	CHECK(ww_ps_set(&ps, 10, 5) == 5);
	CHECK(ww_ps_set(&ps, 12, 5) == 2); /* 12..14 already set */
	CHECK(ps.count == 7 && ww_ps_count(&ps, 0, 100) == 7);
	CHECK(ww_ps_set(&ps, 510, 4) == 4); /* crosses a chunk edge */
	struct runs r = {.n = 0};
	ww_ps_runs(&ps, 0, 1024, collect, &r);
	CHECK(r.n == 2 && r.v[0][0] == 10 && r.v[0][1] == 7 && r.v[1][0] == 510 && r.v[1][1] == 4);
	CHECK(ww_ps_clear(&ps, 11, 500) == 6 + 1); /* 11..16 and 510 */
	CHECK(ps.count == 4 && ww_ps_count(&ps, 10, 1) == 1 && ww_ps_count(&ps, 512, 2) == 2);
	ww_ps_free(&ps);
	CHECK(ps.count == 0 && ps.chunks == NULL);
}

static void t_pageset_huge_sparse(void)
{
	struct ww_pageset ps = {0};
	/* a terabyte range with three pages: walks the table, not the 2^28 pages */
	uint64_t base = 1ull << 30;
	ww_ps_set(&ps, base + 5, 1);
	ww_ps_set(&ps, base + (1ull << 27), 2);
	ww_ps_set(&ps, base + (1ull << 28) - 1, 1);
	struct runs r = {.n = 0};
	ww_ps_runs(&ps, base, 1ull << 28, collect, &r);
	CHECK(r.n == 3 && r.v[0][0] == base + 5 && r.v[1][1] == 2 &&
	      r.v[2][0] == base + (1ull << 28) - 1);
	CHECK(ww_ps_count(&ps, base, 1ull << 28) == 4);
	CHECK(ww_ps_clear(&ps, base, 1ull << 28) == 4 && ps.count == 0);
	ww_ps_free(&ps);
}

static void t_pageset_move(void)
{
	struct ww_pageset ps = {0};
	ww_ps_set(&ps, 100, 3);
	ww_ps_set(&ps, 150, 1);
	ww_ps_move(&ps, 100, 100000 + 7, 64); /* an unaligned shift */
	CHECK(ww_ps_count(&ps, 100, 64) == 0 && ps.count == 4);
	struct runs r = {.n = 0};
	ww_ps_runs(&ps, 100000, 200, collect, &r);
	CHECK(r.n == 2 && r.v[0][0] == 100007 && r.v[0][1] == 3 && r.v[1][0] == 100057);
	ww_ps_free(&ps);
}

static void t_pageset_oom(void)
{
	struct ww_pageset ps = {0};
	ww_alloc_fail_after(1);
	CHECK(ww_ps_set(&ps, 0, 10) == 0 && ps.oom && ps.count == 0);
	ww_alloc_fail_after(0);
	ps.oom = false;
	CHECK(ww_ps_set(&ps, 0, 10) == 10);
	ww_ps_free(&ps);
}

/* ---- region table ---- */

#define P 4096ul

static struct ww_table tbl;

static void reset_table(void)
{
	ww_rt_clear(&tbl);
	memset(&tbl, 0, sizeof tbl);
}

static size_t count_regions(void)
{
	return HASH_COUNT(tbl.regions);
}

static void t_table_add_find(void)
{
	reset_table();
	struct ww_region *a = ww_rt_add(&tbl, 100 * P, 110 * P, WW_KIND_MMAP, PROT_READ, "x", NULL);
	struct ww_region *b = ww_rt_add(&tbl, 200 * P, 210 * P, WW_KIND_ANON, PROT_WRITE, NULL, NULL);
	CHECK(a && b && a->id == 1 && b->id == 2 && (a->flags & WW_RF_NEW));
	CHECK(ww_rt_find(&tbl, 100 * P) == a && ww_rt_find(&tbl, 101 * P) == NULL);
	CHECK(!strcmp(a->name, "x") && b->name[0] == 0);
	reset_table();
}

static void t_table_cut_middle_splits(void)
{
	reset_table();
	struct ww_region *a = ww_rt_add(&tbl, 0x1000 * P, 0x1030 * P, WW_KIND_MMAP, 3, "", NULL);
	ww_ps_set(&tbl.ever, 0x1000, 0x30); /* every page written once */
	ww_rt_recount(&tbl, a);
	CHECK(a->ever_pages == 0x30);
	uint64_t cut = ww_rt_cut(&tbl, 0x1010 * P, 0x1020 * P, true);
	CHECK(cut == 0x10 * P && count_regions() == 2);
	struct ww_region *lo = ww_rt_find(&tbl, 0x1000 * P), *hi = ww_rt_find(&tbl, 0x1020 * P);
	CHECK(lo && hi && lo->end == 0x1010 * P && hi->end == 0x1030 * P);
	CHECK(lo->id == 1 && hi->id == 2 && lo->ever_pages == 0x10 && hi->ever_pages == 0x10);
	CHECK(ww_ps_count(&tbl.ever, 0x1010, 0x10) == 0); /* the unmapped third forgets its pages */
	reset_table();
}

/* ww_rt_forget: the region alone loses the range, the page sets keep it (another region's now). */
static void t_table_forget(void)
{
	reset_table();
	struct ww_region *a = ww_rt_add(&tbl, 0x2000 * P, 0x2030 * P, WW_KIND_ANON, 3, "", NULL);
	ww_ps_set(&tbl.ever, 0x2000, 0x30);
	ww_rt_recount(&tbl, a);
	CHECK(ww_rt_forget(&tbl, a, 0x2010 * P, 0x2020 * P) == 0x10 * P && count_regions() == 2);
	struct ww_region *lo = ww_rt_find(&tbl, 0x2000 * P), *hi = ww_rt_find(&tbl, 0x2020 * P);
	CHECK(lo && hi && lo->end == 0x2010 * P && hi->end == 0x2030 * P);
	CHECK(lo->ever_pages == 0x10 && hi->ever_pages == 0x10);
	CHECK(ww_ps_count(&tbl.ever, 0x2010, 0x10) == 0x10); /* the bits stay */
	CHECK(ww_rt_forget(&tbl, hi, 0x2020 * P, 0x2028 * P) == 8 * P); /* the head: rekeyed */
	hi = ww_rt_find(&tbl, 0x2028 * P);
	CHECK(hi && !ww_rt_find(&tbl, 0x2020 * P) && hi->end == 0x2030 * P && hi->ever_pages == 8);
	CHECK(ww_rt_forget(&tbl, lo, 0x2008 * P, 0x2100 * P) == 8 * P && lo->end == 0x2008 * P);
	CHECK(lo->ever_pages == 8);
	CHECK(ww_rt_forget(&tbl, lo, 0, 0x2100 * P) == 8 * P && count_regions() == 1); /* whole */
	CHECK(ww_rt_forget(&tbl, hi, 0x3000 * P, 0x3001 * P) == 0);
	reset_table();
}

static void t_table_cut_edges_and_many(void)
{
	reset_table();
	for (uintptr_t i = 0; i < 100; i++)
		CHECK(ww_rt_add(&tbl, (1000 + 10 * i) * P, (1005 + 10 * i) * P, WW_KIND_MMAP, 3, "", NULL));
	/* a cut from the middle of region 0 to the middle of region 99 covers 100 regions */
	uint64_t cut = ww_rt_cut(&tbl, 1002 * P, 1993 * P, true);
	CHECK(count_regions() == 2);
	struct ww_region *first = ww_rt_find(&tbl, 1000 * P), *last = ww_rt_find(&tbl, 1993 * P);
	CHECK(first && first->end == 1002 * P && last && last->end == 1995 * P);
	CHECK(cut == (3 + 98 * 5 + 3) * P);
	CHECK(ww_rt_cut(&tbl, 5000 * P, 6000 * P, true) == 0);
	reset_table();
}

static void t_table_sort(void)
{
	reset_table();
	uintptr_t starts[] = {500, 100, 300, 200, 400};
	for (int i = 0; i < 5; i++)
		ww_rt_add(&tbl, starts[i] * P, (starts[i] + 10) * P, WW_KIND_ANON, 3, "", NULL);
	ww_rt_sort(&tbl);
	uintptr_t prev = 0;
	int n = 0;
	for (struct ww_region *r = tbl.regions; r; r = r->hh.next, n++) {
		CHECK(r->start > prev);
		prev = r->start;
	}
	CHECK(n == 5);
	reset_table();
}

static void t_table_oom(void)
{
	reset_table();
	ww_alloc_fail_after(1);
	CHECK(ww_rt_add(&tbl, 10 * P, 20 * P, WW_KIND_MMAP, 3, "", NULL) == NULL);
	CHECK(tbl.oom_untracked == 1 && count_regions() == 0);
	ww_alloc_fail_after(0);
	/* the table still works afterwards */
	CHECK(ww_rt_add(&tbl, 10 * P, 20 * P, WW_KIND_MMAP, 3, "", NULL) != NULL);
	/* fail every allocation in turn while splitting: never a crash, never a lie about bytes */
	for (long k = 1; k < 6; k++) {
		reset_table();
		ww_rt_add(&tbl, 100 * P, 200 * P, WW_KIND_MMAP, 3, "", NULL);
		ww_alloc_fail_after(k);
		uint64_t cut = ww_rt_cut(&tbl, 120 * P, 130 * P, true);
		ww_alloc_fail_after(0);
		CHECK(cut == 10 * P);
		CHECK(ww_rt_find(&tbl, 100 * P) && ww_rt_find(&tbl, 100 * P)->end == 120 * P);
	}
	reset_table();
}

/* ---- JSON ---- */

static void t_json(void)
{
	struct ww_buf b = {0};
	ww_buf_json_str(&b, "a\"b\\c\n\x01\x7f\xc3\xa9");
	ww_buf_str(&b, " ");
	ww_buf_u64(&b, 0);
	ww_buf_str(&b, " ");
	ww_buf_u64(&b, UINT64_MAX);
	ww_buf_str(&b, " ");
	ww_buf_i64(&b, INT64_MIN);
	ww_buf_str(&b, " ");
	ww_buf_hex(&b, 0x7fffdeadb000ull);
	ww_buf_str(&b, " ");
	ww_buf_json_str(&b, NULL);
	ww_buf_str(&b, " ");
	ww_buf_json_str(&b, "\xff\xfe \xe2\x82\xac \xed\xa0\x80 \xf0\x9f\x98\x80 \xc3");
	ww_buf_put(&b, "", 1);
	CHECK(!b.oom);
	CHECK(!strcmp(b.data, "\"a\\\"b\\\\c\\u000a\\u0001\\u007f\xc3\xa9\" 0 18446744073709551615 "
			      "-9223372036854775808 \"0x7fffdeadb000\" null "
			      "\"\xef\xbf\xbd\xef\xbf\xbd \xe2\x82\xac \xef\xbf\xbd\xef\xbf\xbd"
			      "\xef\xbf\xbd \xf0\x9f\x98\x80 \xef\xbf\xbd\""));
	ww_buf_free(&b);
	/* a failed growth marks the buffer, and it stays marked */
	ww_alloc_fail_after(1);
	ww_buf_str(&b, "x");
	ww_alloc_fail_after(0);
	ww_buf_str(&b, "y");
	CHECK(b.oom && b.len == 0);
	ww_buf_free(&b);
}

/* ---- maps lines ---- */

static void t_maps_parse(void)
{
	struct ww_vma v;
	const char *l1 = "7f2c1a000000-7f2c1a021000 rw-p 00000000 00:00 0 ";
	CHECK(ww_maps_parse_line(l1, strlen(l1), &v));
	CHECK(v.start == 0x7f2c1a000000 && v.end == 0x7f2c1a021000 && v.priv_anon);
	CHECK(v.prot == (PROT_READ | PROT_WRITE) && v.kind == WW_KIND_ANON && v.name[0] == 0);
	const char *l2 = "55d0c3a9e000-55d0c3abf000 rw-p 00000000 00:00 0                          [heap]";
	CHECK(ww_maps_parse_line(l2, strlen(l2), &v) && v.kind == WW_KIND_HEAP && v.priv_anon);
	const char *l3 = "7ffd1c9d4000-7ffd1c9f5000 rw-p 00000000 00:00 0                          [stack]";
	CHECK(ww_maps_parse_line(l3, strlen(l3), &v) && v.kind == WW_KIND_STACK);
	const char *l4 = "7f2c1a200000-7f2c1a228000 r--p 00000000 fe:01 1234567                    /usr/lib/x86_64-linux-gnu/libc.so.6";
	CHECK(ww_maps_parse_line(l4, strlen(l4), &v) && !v.priv_anon && v.prot == PROT_READ);
	const char *l5 = "7f2c1a000000-7f2c1a021000 rw-s 00000000 00:01 77 /dev/zero (deleted)";
	CHECK(ww_maps_parse_line(l5, strlen(l5), &v) && !v.priv_anon);
	const char *l6 = "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]";
	CHECK(ww_maps_parse_line(l6, strlen(l6), &v) && !v.priv_anon);
	const char *bad[] = {"", "zz-10 rw-p 0 00:00 0", "10-5 rw-p 0 00:00 0", "10-20 rwxq 0 00:00 0",
			     "10-20 rw-p", "10-20 rw-p 0 00:00", "10-20 rw-p 0 0000 0",
			     "ffffffffffffffffff-1 rw-p 0 00:00 0"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK(!ww_maps_parse_line(bad[i], strlen(bad[i]), &v));
	/* never reads past len: a valid line cut short is rejected */
	CHECK(!ww_maps_parse_line(l1, 20, &v));
}

static void t_fmt(void)
{
	char buf[64];
	ww_fmt(buf, sizeof buf, "%s=%d %ld %lu %x %%", "a", -5, -7l, 9ul, 255u);
	CHECK(!strcmp(buf, "a=-5 -7 9 0xff %"));
	ww_fmt(buf, 5, "%s", "truncated");
	CHECK(!strcmp(buf, "trun"));
}

int main(void)
{
	run("unit_config_defaults", t_config_defaults);
	run("unit_config_values", t_config_values);
	run("unit_config_bad_values_keep_defaults", t_config_bad_values_keep_defaults);
	run("unit_config_unknown_names", t_config_unknown_names);
	run("unit_signal_names", t_signal_names);
	run("unit_pageset_basic", t_pageset_basic);
	run("unit_pageset_huge_sparse", t_pageset_huge_sparse);
	run("unit_pageset_move", t_pageset_move);
	run("unit_pageset_oom", t_pageset_oom);
	run("unit_table_add_find", t_table_add_find);
	run("unit_table_cut_middle_splits", t_table_cut_middle_splits);
	run("unit_table_cut_edges_and_many", t_table_cut_edges_and_many);
	run("unit_table_forget", t_table_forget);
	run("unit_table_sort", t_table_sort);
	run("unit_table_oom", t_table_oom);
	run("unit_json", t_json);
	run("unit_maps_parse", t_maps_parse);
	run("unit_fmt", t_fmt);
	return failures ? 1 : 0;
}
