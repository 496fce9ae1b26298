/* The module table for offline symbolization: path, address range, load bias and GNU build-id
 * of every loaded object, written as "module" records once each (and again after dlopen). */
#define _GNU_SOURCE
#include "ww.h"

#include <elf.h>
#include <link.h>
#include <string.h>

#define WW_MAX_MODULES 1024

static uintptr_t emitted[WW_MAX_MODULES]; /* start address of the modules described */
static size_t nemitted;
static struct ww_buf pending; /* records collected, not yet written */
static int lock;

struct emit_ctx {
	struct ww_buf *b;
};

static bool already(uintptr_t key)
{
	for (size_t i = 0; i < nemitted; i++)
		if (emitted[i] == key)
			return true;
	return false;
}

static void build_id(struct ww_buf *b, const struct dl_phdr_info *info)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
		while (p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
			const char *name = p + sizeof *n;
			const unsigned char *desc = (const unsigned char *)name + ((n->n_namesz + 3) & ~3u);
			if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && !memcmp(name, "GNU", 4) &&
			    (const char *)desc + n->n_descsz <= end) {
				char hex[2 * 64 + 1];
				size_t len = n->n_descsz > 64 ? 64 : n->n_descsz;
				for (size_t k = 0; k < len; k++) {
					hex[2 * k] = "0123456789abcdef"[desc[k] >> 4];
					hex[2 * k + 1] = "0123456789abcdef"[desc[k] & 15];
				}
				hex[2 * len] = 0;
				ww_buf_str(b, ",\"build_id\":\"");
				ww_buf_str(b, hex);
				ww_buf_str(b, "\"");
				return;
			}
			p = (const char *)desc + ((n->n_descsz + 3) & ~3u);
		}
	}
}

static int on_module(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct emit_ctx *c = arg;
	(void)size;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t s = info->dlpi_addr + ph->p_vaddr, e = s + ph->p_memsz;
		if (s < lo)
			lo = s;
		if (e > hi)
			hi = e;
	}
	if (hi == 0 || already(lo) || nemitted == WW_MAX_MODULES)
		return 0;
	emitted[nemitted++] = lo;
	char exe[512];
	const char *path = info->dlpi_name;
	if (!path || !*path) { /* the main program has an empty name */
		ww_self_exe(exe, sizeof exe);
		path = exe;
	}
	ww_buf_str(c->b, "{\"type\":\"module\",\"path\":");
	ww_buf_json_str(c->b, path);
	ww_buf_str(c->b, ",\"start\":");
	ww_buf_hex(c->b, lo);
	ww_buf_str(c->b, ",\"end\":");
	ww_buf_hex(c->b, hi);
	ww_buf_str(c->b, ",\"bias\":");
	ww_buf_hex(c->b, info->dlpi_addr);
	build_id(c->b, info);
	ww_buf_str(c->b, "}\n");
	return 0;
}

static void take_lock(void)
{
	while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE))
		__builtin_ia32_pause();
}

static void drop_lock(void)
{
	__atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
}

/* dl_iterate_phdr holds the loader's lock while it calls us; a program callback of its own
 * could take our core lock under it, so this runs without the core lock. */
void ww_modules_refresh(void)
{
	struct emit_ctx c = {&pending};
	take_lock();
	dl_iterate_phdr(on_module, &c);
	drop_lock();
}

void ww_modules_take(struct ww_buf *b)
{
	take_lock();
	if (pending.len && !pending.oom)
		ww_buf_put(b, pending.data, pending.len);
	pending.len = 0;
	pending.oom = false;
	drop_lock();
}

/* glibc (2.36) does not reset the loader's dl_iterate_phdr lock in a fork child: a fork while
 * one of our snapshots walks the modules leaves every later walk in the child (ours, the
 * program's unwinding) blocked forever. Our walks hold this lock, so the fork handlers take it
 * to fork between walks. */
void ww_modules_fork_lock(void)
{
	take_lock();
}

void ww_modules_fork_unlock(void)
{
	drop_lock();
}

void ww_modules_fork_child(void)
{
	nemitted = 0; /* the child's file needs the table again */
	pending.len = 0;
	lock = 0;
}
