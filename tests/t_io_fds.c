/* A hostile program for the descriptor tests: it closes every descriptor above 2 (close_range)
 * or dup2()s its own file over each of writewatch's, then keeps writing memory and its own file,
 * taking API snapshots. Its file must only ever contain its own lines. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tprog.h"

/* Our own file, opened after the attack so that it may take any number. */
static void own_line(int fd, const char *text)
{
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		tp_die("write own file");
}

static void dup2_over_all(int fd, int spare)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int fds[256], n = 0;
	if (!d)
		tp_die("opendir");
	while ((e = readdir(d)) && n < 256) {
		int x = atoi(e->d_name);
		if (x > 2 && x != fd && x != spare && x != dirfd(d))
			fds[n++] = x;
	}
	closedir(d);
	for (int i = 0; i < n; i++)
		if (fds[i] != fd)
			dup2(fd, fds[i]);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	const char *mode = argv[1], *own_path = argv[2];
	struct tp_window w;
	char *mem = mmap(NULL, 32 * TP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct tp_window *ws[] = {&w};
	tp_window_init(&w, "mem", mem, 32);
	tp_write(&w, 1);
	tp_write(&w, 5);
	tp_snapshot("before", ws, 1);
	tp_expect("before", ws, 0); /* open the expectations file before the attack */
	int own = open(own_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (own < 0)
		tp_die("open own file");
	if (!strcmp(mode, "close_range")) {
		/* keep our file and the expectations stream: everything else above 2 goes */
		int tp = fileno(tp_out);
		for (int fd = 3; fd < 4096; fd++)
			if (fd != own && fd != tp)
				close(fd);
	} else {
		dup2_over_all(own, fileno(tp_out));
	}
	own_line(own, "own line 1\n");
	tp_write(&w, 7);
	tp_write(&w, 9);
	/* The interval in which the userfaultfd vanished is unknown to writewatch: no truth for it. */
	if (writewatch_snapshot("after") != 0)
		tp_die("snapshot after");
	memset(w.written, 0, w.npages);
	tp_write(&w, 11);
	tp_snapshot("again", ws, 1);
	own_line(own, "own line 2\n");
	close(own);
	return 0;
}
