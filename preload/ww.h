/* writewatch's internal interfaces: the contracts between the thin hooks, the core and the
 * kernel layer. Nothing here is exported from the shared object (see writewatch.map). */
#ifndef WW_H
#define WW_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WW_VERSION "0.1.0"
#define WW_HIDDEN __attribute__((visibility("hidden")))
#define WW_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define WW_LIKELY(x) __builtin_expect(!!(x), 1)
#define WW_MAX_DEPTH 64

struct ww_buf;

/* ---- sys.c: raw system calls and messages; never malloc, never stdio, never errno ---- */

/* Raw syscalls: return -errno on failure, like the kernel. They do not touch errno, so hooks
 * can call them between the real call and returning its errno. */
long ww_sys(long nr, long a, long b, long c, long d, long e, long f);
void *ww_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int ww_sys_munmap(void *addr, size_t len);
int ww_sys_open(const char *path, int flags, int mode);
int ww_sys_close(int fd);
ssize_t ww_sys_read(int fd, void *buf, size_t len);
long ww_sys_ioctl(int fd, unsigned long req, void *arg);
pid_t ww_sys_getpid(void);
uint64_t ww_now_ns(int clock);

/* Up to cap bytes of the file at path into buf (not NUL-terminated): the bytes read, or -errno
 * if it cannot be opened. */
ssize_t ww_read_file(const char *path, char *buf, size_t cap);
/* The path of /proc/self/exe into buf (NUL-terminated, "" on failure); returns its length. */
size_t ww_self_exe(char *buf, size_t cap);
/* Write all of buf to fd, retrying short writes and EINTR. Returns 0 or -errno. */
int ww_write_all(int fd, const void *buf, size_t len);
/* Move fd out of the program's way, close-on-exec: to the lowest free number >= base, or below
 * the descriptor limit when that is lower than base. Returns the new number and closes fd, or
 * returns fd itself when there is no room. */
int ww_fd_move_high(int fd, int base);

/* One line on stderr, "writewatch: " + the formatted text + "\n", in one write(). Format
 * directives: %s, %d (int), %ld, %lu, %lx (with 0x), %%. Silent when WRITEWATCH_QUIET=1. */
void ww_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, but only the first call with the same `once` flag prints. */
#define ww_warn_once(flag, ...)                                                                    \
	do {                                                                                       \
		if (!__atomic_exchange_n(&(flag), 1, __ATOMIC_RELAXED))                            \
			ww_warn(__VA_ARGS__);                                                      \
	} while (0)
extern bool ww_quiet;
extern int ww_warn_fd; /* where ww_warn writes: stderr, except in the fuzzers */
/* Remember which file ww_warn_fd is now (at start-up): ww_warn stays silent once the number
 * names another file (or none), instead of writing into the program's own file. */
void ww_stderr_note(void);

/* Small string helpers that never allocate. ww_fmt formats like ww_warn into buf (always
 * NUL-terminated, truncated to cap), returning the length written. */
size_t ww_fmt(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
size_t ww_vfmt(char *buf, size_t cap, const char *fmt, __builtin_va_list ap);
const char *ww_strerror(int err);

/* ---- alloc.c: the shim's own memory, from raw mmap, never reported ---- */

/* Returns zeroed memory or NULL. Thread-safe (own spin lock), async-signal-unsafe. */
void *ww_alloc(size_t size);
void ww_free(void *ptr, size_t size);
/* True when [start,end) overlaps memory the shim mapped for itself (allocator arenas, large
 * blocks, the writer thread's stack). Fills *own_end with the end of the first overlapping
 * own range at or after start, so callers can subtract it. */
bool ww_own_overlap(uintptr_t start, uintptr_t end, uintptr_t *own_start, uintptr_t *own_end);
/* Test hook: fail the n-th next allocation (1 = the next one); 0 disables. */
void ww_alloc_fail_after(long n);
/* Bytes handed out and not freed (for tests and the header's self-accounting). */
size_t ww_alloc_bytes_in_use(void);
/* Record memory the shim owns that it did not get from ww_alloc (the writer thread's stack). */
void ww_own_note(uintptr_t start, uintptr_t end);
/* fork handlers: hold the allocator across fork, so no child inherits it half updated or locked
 * by a thread the child does not have. Unlock in both parent and child. */
void ww_alloc_fork_lock(void);
void ww_alloc_fork_unlock(void);

/* ---- config.c: every WRITEWATCH_* variable, parsed once ---- */

struct ww_config {
	char output[512];  /* file template, %p %e %% */
	long interval_ms;  /* 0 = off */
	int signal;        /* 0 = none */
	bool ranges;       /* emit "ranges" */
	bool follow;       /* keep LD_PRELOAD across exec */
	bool quiet;        /* no stderr lines */
	long scan_vec;     /* PAGEMAP_SCAN output entries per call */
	bool disable;      /* WRITEWATCH_DISABLE=1: load but do nothing */
	long stack_depth;  /* frames recorded per call site, 0 = no stacks */
	bool discovery;    /* WRITEWATCH_METHOD=discovery: no malloc/pthread interposition */
};

/* Parse the configuration from `get` (getenv-like; NULL values mean unset). Every bad value gives
 * one warning naming the variable and keeps the default. Never fails. */
void ww_config_parse(struct ww_config *cfg, const char *(*get)(const char *name));
/* Warn once for each WRITEWATCH_* name in env that is not a variable of ours (a typo would
 * otherwise be silently ignored). Returns how many. */
size_t ww_config_check_names(char *const *env);
/* Signal name for output: "USR2", "RTMIN+3", "none"... into buf. */
const char *ww_signal_name(int sig, char *buf, size_t cap);
/* Parse "USR2", "SIGUSR2", "RTMIN+3", "12", "none" -> signal number, 0 for none, -1 invalid. */
int ww_signal_parse(const char *s);

/* ---- pageset.c: sparse bitmaps of absolute page numbers ---- */

struct ww_pchunk;
struct ww_pageset {
	struct ww_pchunk *chunks; /* uthash head, keyed by page >> 9 */
	struct ww_pchunk *last;   /* the chunk found last: scans come in address order */
	uint64_t count;           /* pages set */
	bool oom;                 /* an allocation failed: counts are a lower bound */
};

/* Set/clear pages [first, first+n). Return the number of pages whose bit changed. */
uint64_t ww_ps_set(struct ww_pageset *ps, uint64_t first, uint64_t n);
uint64_t ww_ps_clear(struct ww_pageset *ps, uint64_t first, uint64_t n);
uint64_t ww_ps_count(const struct ww_pageset *ps, uint64_t first, uint64_t n);
/* Move the bits of [from, from+n) to [to, to+n); the source range ends cleared. */
void ww_ps_move(struct ww_pageset *ps, uint64_t from, uint64_t to, uint64_t n);
/* Call fn for each maximal run of set pages inside [first, first+n), in ascending order. */
typedef void (*ww_run_fn)(void *ctx, uint64_t first, uint64_t n);
void ww_ps_runs(const struct ww_pageset *ps, uint64_t first, uint64_t n, ww_run_fn fn, void *ctx);
void ww_ps_free(struct ww_pageset *ps);

/* ---- maps.c: /proc/self/maps ---- */

enum ww_kind {
	WW_KIND_MMAP,
	WW_KIND_HEAP,
	WW_KIND_STACK,
	WW_KIND_THREAD_STACK,
	WW_KIND_ANON,
	WW_KIND_MALLOC, /* a block glibc's malloc served with its own mmap */
	WW_KIND_ARENA,  /* a glibc malloc arena (64 MiB-aligned heap of a thread arena) */
};
const char *ww_kind_name(enum ww_kind k);

struct ww_vma {
	uintptr_t start, end;
	uint8_t prot;       /* PROT_READ|PROT_WRITE|PROT_EXEC */
	bool priv_anon;     /* private and anonymous (no file, or [heap]/[stack]/[anon:...]) */
	enum ww_kind kind;  /* WW_KIND_HEAP/STACK from the name, else WW_KIND_ANON */
	char name[64];      /* "[heap]", "[anon:x]", a path (truncated), or "" */
};

/* Parse one line of /proc/PID/maps (without the newline). Returns false when the line is
 * malformed; never reads outside [line, line+len). */
bool ww_maps_parse_line(const char *line, size_t len, struct ww_vma *out);

/* Read /proc/self/maps and call fn for each VMA (parsed lines only), in address order. Returns 0
 * or -errno. Uses a static buffer: callers hold the core lock. */
typedef int (*ww_vma_fn)(void *ctx, const struct ww_vma *vma);
int ww_maps_each(ww_vma_fn fn, void *ctx);

/* ---- regions.c: the region table (pure bookkeeping, no kernel calls) ---- */

/* uthash allocates through the shim's allocator and survives out-of-memory. */
extern bool ww_hash_oom;
#define uthash_malloc(sz) ww_alloc(sz)
#define uthash_free(ptr, sz) ww_free((ptr), (sz))
#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(obj) (ww_hash_oom = true)
#include <uthash.h>

enum {
	WW_RF_NEW = 1 << 0,        /* not yet reported by a snapshot */
	WW_RF_REGISTERED = 1 << 1, /* registered with our userfaultfd */
	WW_RF_LOST = 1 << 2,       /* tracking was lost in this interval */
	WW_RF_PENDING = 1 << 3,    /* has harvested pages in table->pending */
	WW_RF_SEEN = 1 << 4,       /* reconcile mark */
};

/* ---- sites.c: call sites (the stack that created a region) and their statistics ---- */

struct ww_site {
	uint64_t id;
	int depth;
	bool dirty;     /* changed since its last record */
	bool announced; /* its frames were written */
	/* statistics, from regions_live on (ww_sites_fork_child resets this tail) */
	uint64_t regions_live, regions_made, regions_retired;
	uint64_t bytes_live, bytes_peak, bytes_made;
	uint64_t written_pages_iv, ever_pages, churn_pages, churn_pages_iv;
	uint64_t mallocs, malloc_bytes;
	UT_hash_handle hh; /* keyed by frames[0..depth) */
	uintptr_t frames[];
};

/* The site for these frames, created on first use; NULL when out of memory or depth 0. */
struct ww_site *ww_site_get(const uintptr_t *frames, int depth);
void ww_site_region_made(struct ww_site *s, uint64_t bytes);
/* One of the site's regions split in two (its middle unmapped): one more made and live. */
void ww_site_region_split(struct ww_site *s);
/* bytes of one of its regions went away with churn_pages written pages in them. */
void ww_site_region_gone(struct ww_site *s, uint64_t bytes, uint64_t churn_pages, bool whole);
void ww_site_written(struct ww_site *s, uint64_t pages, uint64_t new_ever);
void ww_site_resized(struct ww_site *s, int64_t delta); /* a region grew or shrank in place */
void ww_site_discarded(struct ww_site *s, uint64_t churn_pages);
void ww_site_malloc(struct ww_site *s, uint64_t bytes);
/* Append "site" records for the sites that changed since the last call. */
void ww_sites_emit(struct ww_buf *b, uint64_t seq);
void ww_sites_fork_child(void);

/* ---- stack.c / modules.c: raw stacks and the module table for offline symbolization ---- */

/* unwind.c: walk from return address ra with the caller's stack pointer sp, leading frames in
 * [own_lo, own_hi) left out; -1 if a frame needs libgcc's unwinder. ww_unwind_flush forgets
 * every cached rule (code unloaded). */
int ww_unwind_fast(uintptr_t *out, int max, uintptr_t ra, uintptr_t sp, uintptr_t own_lo,
		   uintptr_t own_hi);
void ww_unwind_flush(void);
/* Up to max return addresses of the caller's stack, the shim's own frames left out. */
int ww_stack_capture(uintptr_t *out, int max);
/* The shim's own text, learnt once, so captures can skip it. */
void ww_stack_init(void);
/* Collect "module" records of objects not yet described. Call WITHOUT the core lock (it takes
 * the loader's); the next snapshot writes them. */
void ww_modules_refresh(void);
/* Move the collected module records into b (core lock held). */
void ww_modules_take(struct ww_buf *b);
void ww_modules_fork_child(void);
/* fork handlers: no walk of the modules (dl_iterate_phdr) runs across a fork. */
void ww_modules_fork_lock(void);
void ww_modules_fork_unlock(void);

/* ---- mallocs.c: glibc's malloc, seen from outside ---- */

struct ww_next_alloc {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	void *(*memalign)(size_t, size_t);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	int (*mallopt)(int, int);
};
extern struct ww_next_alloc ww_next;
extern int ww_malloc_state;
extern bool ww_glibc_chunks;
extern size_t ww_mmap_floor; /* requests below it are never mapped by glibc; 0 = not known */
/* The program lowered glibc's mmap threshold (mallopt M_MMAP_THRESHOLD). */
void ww_malloc_threshold(long value);
/* The IS_MMAPPED bit of a glibc chunk header (also set on bootstrap blocks). */
static inline bool ww_chunk_maybe_mapped(const void *p)
{
	return ((const size_t *)p)[-1] & 0x2;
}
/* Resolve the allocator behind us; false while another thread is resolving it. */
bool ww_malloc_resolve(void);
/* Decide, once configured, whether to read glibc's chunk headers (true only for glibc). */
void ww_malloc_configure(bool want);
void *ww_boot_alloc(size_t n, size_t align);
bool ww_boot_owns(const void *p);
size_t ww_boot_size(const void *p);
/* The mapping behind a glibc chunk served by mmap; false for heap chunks. */
bool ww_chunk_mapping(const void *p, uintptr_t *start, size_t *len);

/* ---- regions ---- */

struct ww_region {
	uintptr_t start, end;
	uint64_t id;
	struct ww_site *site; /* the call site that made it, or NULL (found in the maps) */
	uint64_t ever_pages; /* pages of [start,end) set in table->ever */
	enum ww_kind kind;
	uint8_t prot;
	uint8_t flags;
	char name[64];
	UT_hash_handle hh; /* keyed by start */
};

/* Counters of what happened between two snapshots outside the regions still mapped. */
struct ww_interval {
	uint64_t retired_regions, retired_bytes, retired_written_pages;
	uint64_t discarded_bytes, lost_regions, new_regions;
	uint64_t churn_pages; /* written pages thrown away (unmapped or discarded) */
};

struct ww_table {
	struct ww_region *regions; /* uthash head */
	uint64_t next_id;
	struct ww_pageset ever;    /* pages written at least once, still mapped */
	struct ww_pageset pending; /* pages harvested before a discard, not yet reported */
	struct ww_pageset live;    /* pages written and not thrown away since: churn if they go */
	struct ww_interval iv;
	uint64_t oom_untracked;    /* regions we could not record (allocation failed) */
	bool sorted;
};

extern unsigned long ww_page_shift; /* log2(page size) */
#define WW_PAGE(addr) ((uint64_t)(addr) >> ww_page_shift)

/* Add [start,end) (page aligned, not overlapping any region). Returns NULL and counts
 * oom_untracked when memory runs out. The region gets the next id and WW_RF_NEW. No site
 * accounting: callers count genuinely new regions with ww_site_region_made. */
struct ww_region *ww_rt_add(struct ww_table *t, uintptr_t start, uintptr_t end, enum ww_kind kind,
			    uint8_t prot, const char *name, struct ww_site *site);
/* Remove r and clear its bits in ever and pending. */
void ww_rt_remove(struct ww_table *t, struct ww_region *r);
/* The region starting exactly at start, or NULL. */
struct ww_region *ww_rt_find(struct ww_table *t, uintptr_t start);
/* Call fn for each region overlapping [start,end), in no particular order; fn may not change
 * the table. Returns the number of regions visited. */
typedef void (*ww_region_fn)(void *ctx, struct ww_region *r);
size_t ww_rt_overlaps(struct ww_table *t, uintptr_t start, uintptr_t end, ww_region_fn fn,
		      void *ctx);
/* Remove [start,end) from the table: regions inside go, regions straddling an edge shrink, a
 * region containing the range splits in two (the upper part gets a new id). Bits in ever,
 * pending and live for the range are cleared. With retire, the memory is gone for good: its
 * live pages count as churn (t->iv and the regions' sites). Without (a move carrying its bits
 * away first), nothing is counted. Returns the number of bytes that were tracked. */
uint64_t ww_rt_cut(struct ww_table *t, uintptr_t start, uintptr_t end, bool retire);
/* Take [start,end) out of region r alone and leave the page sets as they are: the memory there
 * is another region's now (r is stale there). Counts it in r's site as gone, without churn.
 * r may be freed. Returns the bytes taken. */
uint64_t ww_rt_forget(struct ww_table *t, struct ww_region *r, uintptr_t start, uintptr_t end);
/* Sort the table by start (for walks in address order); cheap when already sorted. */
void ww_rt_sort(struct ww_table *t);
/* Recount r->ever_pages from the pageset (after a split or move). */
void ww_rt_recount(struct ww_table *t, struct ww_region *r);
void ww_rt_clear(struct ww_table *t);

/* ---- kern.c: userfaultfd and PAGEMAP_SCAN ---- */

struct ww_kern {
	int uffd;       /* -1 when not open */
	int pagemap;    /* /proc/self/pagemap, -1 when not open */
	dev_t uffd_dev, pm_dev;
	ino_t uffd_ino, pm_ino;
	long vec_len;   /* entries per PAGEMAP_SCAN call */
	void *vec;      /* struct page_region[vec_len], own memory */
};

/* Open the userfaultfd (user-mode-only syscall, then /dev/userfaultfd) with WP_ASYNC, and
 * /proc/self/pagemap, probing PAGEMAP_SCAN. Descriptors are close-on-exec and moved above the
 * range programs use. On failure returns -1 and writes a one-line reason into why. */
int ww_kern_open(struct ww_kern *k, long vec_len, char *why, size_t whycap);
void ww_kern_close(struct ww_kern *k);
/* Check our descriptors still are what we opened (the program may close or dup2 over them).
 * Returns a bitmask: 1 = userfaultfd gone, 2 = pagemap gone. */
int ww_kern_check(struct ww_kern *k);
/* Register [start,end) for async write-protect, or undo that. 0 or -errno. */
int ww_kern_register(struct ww_kern *k, uintptr_t start, uintptr_t end);
int ww_kern_unregister(struct ww_kern *k, uintptr_t start, uintptr_t end);
/* True when some part of [start,end) is mapped but not registered with a WP_ASYNC context. */
bool ww_kern_unregistered(struct ww_kern *k, uintptr_t start, uintptr_t end);
/* True when some part of [start,end) is mapped at all (also when the kernel cannot say). */
bool ww_kern_mapped(struct ww_kern *k, uintptr_t start, uintptr_t end);

enum ww_scan_mode {
	WW_SCAN_REARM,   /* report written pages and write-protect them again (a snapshot) */
	WW_SCAN_PEEK,    /* report written pages, change nothing (harvest before munmap) */
	WW_SCAN_DISCARD, /* write-protect everything written, report nothing (after a move/fork) */
	WW_SCAN_FRESH,   /* memory never registered (about to go): every present page is a write */
};
/* Scan [start,end) of registered memory. fn gets runs of written pages (absolute page numbers)
 * in ascending order. Returns pages reported, or -errno (EPERM means registration lost). */
long ww_kern_scan(struct ww_kern *k, uintptr_t start, uintptr_t end, enum ww_scan_mode mode,
		  ww_run_fn fn, void *ctx);

/* ---- json.c: a growable text buffer with JSON formatting ---- */

struct ww_buf {
	char *data;
	size_t len, cap;
	bool oom; /* a growth failed: the content is truncated and must not be written */
};
void ww_buf_put(struct ww_buf *b, const char *s, size_t n);
void ww_buf_str(struct ww_buf *b, const char *s);          /* raw text */
void ww_buf_json_str(struct ww_buf *b, const char *s);     /* "escaped" or null for NULL */
void ww_buf_u64(struct ww_buf *b, uint64_t v);
void ww_buf_i64(struct ww_buf *b, int64_t v);
void ww_buf_hex(struct ww_buf *b, uint64_t v);             /* "0x..." with quotes */
void ww_buf_free(struct ww_buf *b);

/* ---- output.c: the output file ---- */

struct ww_out {
	int fd;            /* -1 when closed or failed */
	dev_t dev;
	ino_t ino;
	uint64_t size;     /* bytes of whole lines written */
	bool failed;       /* writing stopped; the reason was said once */
	char path[1024];
};
/* Expand the template (%p pid, %e name, %% percent) relative to dir and create the file new
 * (O_EXCL|O_NOFOLLOW, 0600, close-on-exec). If it exists, try PATH.1, PATH.2, ...
 * Returns 0, or -errno after one warning. */
int ww_out_open(struct ww_out *o, const char *tmpl, const char *dir, pid_t pid, const char *name);
/* Append whole lines. On a short or failed write the file is truncated back to the last whole
 * line, one warning is given and the output is marked failed. Before writing it checks that the
 * descriptor still is our file (reopening it by path if the program closed it). */
int ww_out_write(struct ww_out *o, const char *data, size_t len);
void ww_out_close(struct ww_out *o);

/* ---- core.c / snapshot.c: the tracker ---- */

enum ww_trigger { WW_TRIG_API, WW_TRIG_SIGNAL, WW_TRIG_INTERVAL, WW_TRIG_EXIT, WW_TRIG_EXEC };

struct ww_state {
	struct ww_config cfg;
	struct ww_table table;
	struct ww_kern kern;
	struct ww_out out;
	bool tracking;  /* kernel set up, output open */
	bool finished;  /* the exit snapshot was written */
	pid_t pid;
	uint64_t seq;
	uint64_t t0_ns;
	uint64_t total_pages_changed;
	char start_dir[1024];
	char lib_path[512];
};
extern struct ww_state ww;

/* The core lock: hooks hold it only around a table change and a real call; snapshots hold it
 * while scanning. Never held across anything that can block on the program. */
void ww_lock(void);
void ww_unlock(void);
/* A hook's way into the core: true (lock held, ww_in_shim raised) when its call is to be
 * tracked; false when the shim is not ready, is re-entered (a signal handler interrupting it),
 * or gave up waiting out a fork (a bounded wait, see core.c). ww_leave_hook undoes a true. */
bool ww_enter_hook(void);
void ww_leave_hook(void);
/* Hook calls let through untracked because a fork held the lock too long, since the last
 * snapshot (the snapshot's unseen_calls). */
extern uint64_t ww_unseen_calls;

/* Per-thread re-entrancy guard: hooks that find it set pass straight to the real call. */
extern __thread int ww_in_shim __attribute__((tls_model("initial-exec")));

/* The exit snapshot, once (exit's destructors, or _exit). */
void ww_exit_snapshot(void);
/* Take one snapshot now (caller holds the lock). label may be NULL. Returns 0 or -errno. */
int ww_snapshot_locked(enum ww_trigger trig, const char *label);
/* Reconcile the table with /proc/self/maps (caller holds the lock). */
void ww_reconcile_locked(void);
/* [start,end) was just handed out free by the kernel: regions the last reconcile saw there are
 * stale (unmapped behind the hooks' back) and go, as retired. O(log regions); lock held. */
void ww_forget_stale(uintptr_t start, uintptr_t end);
/* Register r with our userfaultfd (WW_RF_REGISTERED on success; one warning on refusal). */
void ww_track_register(struct ww_region *r);

/* Events from the hooks, called with the lock held, before (pre) or after the real call. */
void ww_on_mmap(uintptr_t addr, size_t len, int prot, int flags, const uintptr_t *frames,
		int depth);
void ww_on_munmap_pre(uintptr_t addr, size_t len);
void ww_on_munmap_post(uintptr_t addr, size_t len);
void ww_on_discard_pre(uintptr_t addr, size_t len, int advice);
void ww_on_mremap_pre(uintptr_t old, size_t oldlen, uintptr_t dest, size_t newlen, int flags);
void ww_on_mremap_post(uintptr_t old, size_t oldlen, uintptr_t new_addr, size_t newlen);

/* The program registers a userfaultfd of its own on [start, start+len): let go of it. Takes
 * the lock itself. ww_claimed says whether a range overlaps such memory (lock held). */
void ww_on_foreign_register(uintptr_t start, uint64_t len);
bool ww_claimed(uintptr_t s, uintptr_t e);
uint64_t ww_claimed_bytes(void);

/* Events from the allocation hooks (events.c); these take the lock themselves and keep errno. */
void ww_on_block_made(uintptr_t start, size_t len, size_t requested);
void ww_block_free(void *p, uintptr_t start, size_t len);
void *ww_block_realloc(void *p, uintptr_t start, size_t len, size_t n);
int ww_thread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
/* The call site of the hook's caller (no lock needed); NULL when stacks are off. */
struct ww_site *ww_caller_site_locked(const uintptr_t *frames, int depth);

/* Library life cycle (core.c). ww_init is idempotent and safe from any hook. */
void ww_init(void);
bool ww_ready(void);
void ww_before_exec(void); /* takes the exec snapshot and keeps the lock for the exec */
void ww_after_exec(void);  /* the exec call returned (failed): tracking goes on */
/* The environment for an exec'd image: with WRITEWATCH_FOLLOW=0 without the shim in
 * LD_PRELOAD, else with a marker that gives the new image's header cause "exec". env has room
 * for slots entries (ww_exec_env_slots); returns env, or envp itself when nothing changes. */
size_t ww_exec_env_slots(char *const envp[]);
char **ww_exec_env(char *const envp[], char **env, size_t slots);
/* The program closed or replaced our descriptors (ww_kern_check's mask): open new ones. */
void ww_kern_recover(int bad);

#endif
