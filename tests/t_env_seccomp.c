/* A launcher for the environment tests: optionally drops to another user, installs a seccomp
 * filter that refuses chosen system calls with chosen errnos, then execs the target.
 *
 *   t_env_seccomp [--uid N] [--preload LIB] [RULE...] -- PROG ARGS...
 *
 * RULE is WHAT=ERRNO with WHAT one of userfaultfd (the syscall), uffd-dev (the ioctl
 * USERFAULTFD_IOC_NEW on /dev/userfaultfd), uffd-api (the ioctl UFFDIO_API: EINVAL is what a
 * kernel before 6.7 says to UFFD_FEATURE_WP_ASYNC) or pagemap-scan (the ioctl PAGEMAP_SCAN), and
 * ERRNO one of EPERM, ENOSYS, ENOTTY, EACCES, EINVAL. --preload sets LD_PRELOAD for the target only, so the
 * launcher itself is never tracked. Raw seccomp BPF (no libseccomp), x86-64 only. */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ww_uapi.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

static struct sock_filter prog[64];
static unsigned short len;

static void emit(struct sock_filter f)
{
	if (len == sizeof prog / sizeof prog[0]) {
		fprintf(stderr, "t_env_seccomp: too many rules\n");
		exit(97);
	}
	prog[len++] = f;
}

static void rule_syscall(int nr, int err)
{
	emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
	emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1));
	emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err));
}

/* ioctl(fd, cmd, ...) with this cmd (the low 32 bits of the second argument, as the kernel's
 * ioctl takes an unsigned int). */
static void rule_ioctl(unsigned long cmd, int err)
{
	emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
	emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 3));
	emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					  offsetof(struct seccomp_data, args[1])));
	emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)cmd, 0, 1));
	emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err));
}

static int parse_errno(const char *s)
{
	static const struct {
		const char *name;
		int err;
	} t[] = {{"EPERM", EPERM}, {"ENOSYS", ENOSYS}, {"ENOTTY", ENOTTY}, {"EACCES", EACCES},
		      {"EINVAL", EINVAL}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcmp(s, t[i].name))
			return t[i].err;
	fprintf(stderr, "t_env_seccomp: unknown errno %s\n", s);
	exit(97);
}

int main(int argc, char **argv)
{
	int i = 1, rules = 0;
	long uid = -1;
	const char *preload = NULL;
	/* Refuse nothing on another architecture's entry points: only x86-64 is filtered. */
	emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
	emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
	emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
	for (; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--uid") && i + 1 < argc) {
			uid = strtol(argv[++i], NULL, 10);
			continue;
		}
		if (!strcmp(argv[i], "--preload") && i + 1 < argc) {
			preload = argv[++i];
			continue;
		}
		char *eq = strchr(argv[i], '=');
		if (!eq) {
			fprintf(stderr, "t_env_seccomp: bad rule %s\n", argv[i]);
			return 97;
		}
		*eq = 0;
		int err = parse_errno(eq + 1);
		if (!strcmp(argv[i], "userfaultfd"))
			rule_syscall(SYS_userfaultfd, err);
		else if (!strcmp(argv[i], "uffd-dev"))
			rule_ioctl(USERFAULTFD_IOC_NEW, err);
		else if (!strcmp(argv[i], "uffd-api"))
			rule_ioctl(UFFDIO_API, err);
		else if (!strcmp(argv[i], "pagemap-scan"))
			rule_ioctl(PAGEMAP_SCAN, err);
		else {
			fprintf(stderr, "t_env_seccomp: unknown rule %s\n", argv[i]);
			return 97;
		}
		rules++;
	}
	if (i + 1 >= argc) {
		fprintf(stderr, "usage: t_env_seccomp [--uid N] [--preload LIB] [RULE...] -- PROG ARGS\n");
		return 97;
	}
	emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
	if (uid >= 0) {
		if (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0) {
			perror("t_env_seccomp: drop privileges");
			return 97;
		}
	}
	if (rules) {
		/* no_new_privs is what lets an unprivileged process install a filter; it also makes
		 * setuid bits inert, so it is only set when there is a filter. */
		struct sock_fprog fp = {.len = len, .filter = prog};
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
		    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp) != 0) {
			perror("t_env_seccomp: install the filter");
			return 97;
		}
	}
	if (preload && setenv("LD_PRELOAD", preload, 1) != 0) {
		perror("t_env_seccomp: setenv");
		return 97;
	}
	execv(argv[i + 1], argv + i + 1);
	perror("t_env_seccomp: exec");
	return 127;
}
