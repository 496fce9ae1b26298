/* A program that uses userfaultfd itself: it registers a range in MISSING mode and serves the
 * faults from a thread with UFFDIO_COPY. It must work exactly as without writewatch, which lets
 * go of the claimed range; an ordinary region beside it stays tracked exactly. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tprog.h"

#define NPAGES 64

static int uffd;
static char *claimed;

static void *serve(void *arg)
{
	(void)arg;
	static char page[TP_PAGE];
	for (int served = 0; served < NPAGES;) {
		struct uffd_msg msg;
		if (read(uffd, &msg, sizeof msg) != sizeof msg)
			tp_die("read uffd");
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uintptr_t at = msg.arg.pagefault.address & ~(TP_PAGE - 1);
		memset(page, (int)((at - (uintptr_t)claimed) / TP_PAGE + 1), sizeof page);
		struct uffdio_copy copy = {.dst = at, .src = (uintptr_t)page, .len = TP_PAGE};
		if (ioctl(uffd, UFFDIO_COPY, &copy))
			tp_die("UFFDIO_COPY");
		served++;
	}
	return NULL;
}

int main(void)
{
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
	if (uffd < 0)
		tp_die("userfaultfd");
	struct uffdio_api api = {.api = UFFD_API};
	if (ioctl(uffd, UFFDIO_API, &api))
		tp_die("UFFDIO_API");
	claimed = mmap(NULL, NPAGES * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	struct uffdio_register reg = {.range = {(uintptr_t)claimed, NPAGES * TP_PAGE},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		tp_die("UFFDIO_REGISTER"); /* EBUSY here would mean writewatch kept the range */
	pthread_t t;
	pthread_create(&t, NULL, serve, NULL);
	unsigned long sum = 0;
	for (int i = 0; i < NPAGES; i++)
		sum += (unsigned char)claimed[i * TP_PAGE + 7]; /* each read faults to the server */
	pthread_join(t, NULL);
	printf("served %d pages, checksum %lu\n", NPAGES, sum);

	struct tp_window w;
	char *plain = mmap(NULL, 32 * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			   -1, 0);
	tp_window_init(&w, "plain", plain, 32);
	struct tp_window *ws[] = {&w};
	tp_write(&w, 3);
	tp_write(&w, 30);
	tp_expect("after", ws, 1);
	int rc = writewatch_snapshot("after");
	printf("snapshot %s\n", rc == 0 ? "taken" : "unavailable");
	return 0;
}
