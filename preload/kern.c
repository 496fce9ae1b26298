/* The kernel layer: a userfaultfd in asynchronous write-protect mode and PAGEMAP_SCAN on
 * /proc/self/pagemap, which reads written pages and re-arms them in one call (Linux 6.7+). */
#define _GNU_SOURCE
#include "ww.h"
#include "ww_uapi.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

/* Our descriptors go high, out of the way of programs that assume small numbers are theirs. */
#define WW_FD_BASE 800

static int move_high(int fd)
{
	return ww_fd_move_high(fd, WW_FD_BASE);
}

static bool same_file(int fd, dev_t dev, ino_t ino)
{
	struct stat st;
	return fd >= 0 && ww_sys(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) == 0 && st.st_dev == dev &&
	       st.st_ino == ino;
}

static void remember(int fd, dev_t *dev, ino_t *ino)
{
	struct stat st;
	if (ww_sys(SYS_fstat, fd, (long)&st, 0, 0, 0, 0) == 0) {
		*dev = st.st_dev;
		*ino = st.st_ino;
	}
}

static int open_uffd(char *why, size_t whycap)
{
	long fd = ww_sys(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY, 0, 0, 0, 0, 0);
	long err_sys = fd;
	if (fd < 0) {
		int dev = ww_sys_open("/dev/userfaultfd", O_RDWR | O_CLOEXEC, 0);
		if (dev >= 0) {
			fd = ww_sys_ioctl(dev, USERFAULTFD_IOC_NEW, (void *)(long)(O_CLOEXEC | O_NONBLOCK));
			ww_sys_close(dev);
		} else {
			fd = dev;
		}
	}
	if (fd < 0) {
		ww_fmt(why, whycap,
		       "userfaultfd refused: %s from the syscall, %s from /dev/userfaultfd (a seccomp "
		       "filter or container policy, or vm.unprivileged_userfaultfd=0 without access to "
		       "/dev/userfaultfd); the program runs untracked",
		       ww_strerror((int)err_sys), ww_strerror((int)fd));
		return -1;
	}
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC};
	long r = ww_sys_ioctl((int)fd, UFFDIO_API, &api);
	if (r < 0 || !(api.features & UFFD_FEATURE_WP_ASYNC)) {
		ww_fmt(why, whycap,
		       "kernel lacks userfaultfd asynchronous write-protect (UFFD_FEATURE_WP_ASYNC, "
		       "needs Linux 6.7+): %s; the program runs untracked",
		       r < 0 ? ww_strerror((int)r) : "feature not offered");
		ww_sys_close((int)fd);
		return -1;
	}
	return move_high((int)fd);
}

/* PAGEMAP_SCAN with a NULL-ish bad vector: EFAULT/EINVAL where the ioctl exists, ENOTTY where
 * it does not. */
static bool scan_supported(int pm, long *err)
{
	struct pm_scan_arg arg = {.size = sizeof arg, .start = 0, .end = 4096, .vec = 1, .vec_len = 1,
				  .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN};
	long r = ww_sys_ioctl(pm, PAGEMAP_SCAN, &arg);
	*err = r;
	return r >= 0 || (r != -ENOTTY && r != -ENOSYS && r != -EOPNOTSUPP);
}

int ww_kern_open(struct ww_kern *k, long vec_len, char *why, size_t whycap)
{
	k->uffd = k->pagemap = -1;
	int pm = ww_sys_open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0);
	if (pm < 0) {
		ww_fmt(why, whycap, "cannot open /proc/self/pagemap: %s; the program runs untracked",
		       ww_strerror(pm));
		return -1;
	}
	long err;
	if (!scan_supported(pm, &err)) {
		ww_fmt(why, whycap,
		       "kernel lacks the PAGEMAP_SCAN ioctl (needs Linux 6.7+): %s; the program runs "
		       "untracked",
		       ww_strerror((int)err));
		ww_sys_close(pm);
		return -1;
	}
	int uffd = open_uffd(why, whycap);
	if (uffd < 0) {
		ww_sys_close(pm);
		return -1;
	}
	if (!k->vec || k->vec_len != vec_len) {
		void *vec = ww_alloc((size_t)vec_len * sizeof(struct page_region));
		if (!vec) {
			ww_fmt(why, whycap, "out of memory for the scan buffer; the program runs untracked");
			ww_sys_close(pm);
			ww_sys_close(uffd);
			return -1;
		}
		if (k->vec)
			ww_free(k->vec, (size_t)k->vec_len * sizeof(struct page_region));
		k->vec = vec;
		k->vec_len = vec_len;
	}
	k->pagemap = move_high(pm);
	k->uffd = uffd;
	remember(k->pagemap, &k->pm_dev, &k->pm_ino);
	remember(k->uffd, &k->uffd_dev, &k->uffd_ino);
	return 0;
}

void ww_kern_close(struct ww_kern *k)
{
	if (k->uffd >= 0)
		ww_sys_close(k->uffd);
	if (k->pagemap >= 0)
		ww_sys_close(k->pagemap);
	k->uffd = k->pagemap = -1;
}

int ww_kern_check(struct ww_kern *k)
{
	int bad = 0;
	if (!same_file(k->uffd, k->uffd_dev, k->uffd_ino))
		bad |= 1;
	if (!same_file(k->pagemap, k->pm_dev, k->pm_ino))
		bad |= 2;
	return bad;
}

int ww_kern_register(struct ww_kern *k, uintptr_t start, uintptr_t end)
{
	struct uffdio_register reg = {.range = {start, end - start}, .mode = UFFDIO_REGISTER_MODE_WP};
	return (int)ww_sys_ioctl(k->uffd, UFFDIO_REGISTER, &reg);
}

int ww_kern_unregister(struct ww_kern *k, uintptr_t start, uintptr_t end)
{
	struct uffdio_range range = {start, end - start};
	return (int)ww_sys_ioctl(k->uffd, UFFDIO_UNREGISTER, &range);
}

bool ww_kern_unregistered(struct ww_kern *k, uintptr_t start, uintptr_t end)
{
	struct page_region v;
	struct pm_scan_arg arg = {.size = sizeof arg, .start = start, .end = end,
				  .vec = (uintptr_t)&v, .vec_len = 1, .max_pages = 1,
				  .category_inverted = PAGE_IS_WPALLOWED,
				  .category_mask = PAGE_IS_WPALLOWED,
				  .return_mask = PAGE_IS_WPALLOWED | PAGE_IS_WRITTEN | PAGE_IS_PRESENT};
	return ww_sys_ioctl(k->pagemap, PAGEMAP_SCAN, &arg) > 0;
}

bool ww_kern_mapped(struct ww_kern *k, uintptr_t start, uintptr_t end)
{
	struct page_region v;
	struct pm_scan_arg arg = {.size = sizeof arg, .start = start, .end = end,
				  .vec = (uintptr_t)&v, .vec_len = 1, .max_pages = 1,
				  .return_mask = PAGE_IS_PRESENT}; /* no category: any page of a VMA */
	return ww_sys_ioctl(k->pagemap, PAGEMAP_SCAN, &arg) != 0;
}

long ww_kern_scan(struct ww_kern *k, uintptr_t start, uintptr_t end, enum ww_scan_mode mode,
		  ww_run_fn fn, void *ctx)
{
	struct page_region *vec = k->vec;
	long total = 0;
	/* Written = not write-protected, present (or swapped), not the zero page, in a VMA our
	 * userfaultfd watches. Unregistered VMAs are skipped, never reported as all-written. */
	struct pm_scan_arg arg = {
		.size = sizeof arg,
		.flags = mode == WW_SCAN_PEEK || mode == WW_SCAN_FRESH ? 0 : PM_SCAN_WP_MATCHING,
		.vec = (uintptr_t)vec,
		.vec_len = (uint64_t)k->vec_len,
		.category_inverted = PAGE_IS_PFNZERO,
		.category_mask = (mode == WW_SCAN_FRESH ? 0 : PAGE_IS_WPALLOWED) | PAGE_IS_WRITTEN |
				 PAGE_IS_PFNZERO,
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.return_mask = PAGE_IS_WRITTEN,
	};
	uintptr_t at = start;
	uintptr_t last_end = 0; /* runs must reach fn in ascending order: clip any overlap */
	while (at < end) {
		arg.start = at;
		arg.end = end;
		arg.walk_end = 0;
		long n = ww_sys_ioctl(k->pagemap, PAGEMAP_SCAN, &arg);
		if (n < 0)
			return n;
		for (long i = 0; i < n; i++) {
			uintptr_t s = (uintptr_t)vec[i].start, e = (uintptr_t)vec[i].end;
			if (s < last_end)
				s = last_end;
			if (s >= e)
				continue;
			last_end = e;
			uint64_t pages = WW_PAGE(e - s);
			total += (long)pages;
			if (mode != WW_SCAN_DISCARD && fn)
				fn(ctx, WW_PAGE(s), pages);
		}
		/* The kernel walks in batches of at most 512 entries and sets walk_end only when a
		 * batch fills up; when a later batch then walks on to the end, walk_end stays where
		 * the full batch stopped (seen on 6.18: walk_end thousands of pages behind the last
		 * run returned). A call that did not fill our vector walked the whole range, and so
		 * did one whose walk_end lies behind its own last run. Scanning again from such a
		 * walk_end re-reads pages this call already re-armed: the clip above would drop the
		 * writes other threads made there in between, and the re-arm would hide them. */
		if (n < k->vec_len || (n > 0 && arg.walk_end < vec[n - 1].end))
			break;
		if (arg.walk_end <= at)
			break; /* no progress: never loop forever on a kernel quirk */
		at = (uintptr_t)arg.walk_end;
	}
	return total;
}
