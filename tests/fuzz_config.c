/* libFuzzer target: the configuration parser must turn any environment into a valid
 * configuration (bad values warn and keep defaults), and signal names must round-trip. */
#include "ww.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char vars[8][2][256];
static int nvars;

static const char *get(const char *name)
{
	for (int i = 0; i < nvars; i++)
		if (!strcmp(vars[i][0], name))
			return vars[i][1];
	return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	ww_warn_fd = open("/dev/null", O_WRONLY); /* the warnings are expected: keep them quiet */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Input: lines "NAME=value"; NAME may be given without its WRITEWATCH_ prefix. */
	const char *p = (const char *)data, *end = p + size;
	nvars = 0;
	while (p < end && nvars < 8) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl ? nl : end) - p);
		const char *eq = memchr(p, '=', len);
		if (eq) {
			size_t kl = (size_t)(eq - p), vl = len - kl - 1;
			if (kl < 200 && vl < 255) {
				const char *pre = kl >= 11 && !memcmp(p, "WRITEWATCH_", 11) ? "" : "WRITEWATCH_";
				strcpy(vars[nvars][0], pre);
				strncat(vars[nvars][0], p, kl);
				memcpy(vars[nvars][1], eq + 1, vl);
				vars[nvars][1][vl] = 0;
				if (strlen(vars[nvars][1]) == vl) /* an embedded NUL cannot be in an env */
					nvars++;
			}
		}
		p += len + 1;
	}
	struct ww_config c;
	ww_config_parse(&c, get);
	if (c.interval_ms < 0 || c.interval_ms > 86400000 || c.scan_vec < 1 || c.scan_vec > 65536)
		__builtin_trap();
	if (c.signal < 0 || c.signal > 64 || c.signal == SIGKILL || c.signal == SIGSEGV)
		__builtin_trap();
	if (!c.output[0] || strlen(c.output) >= sizeof c.output)
		__builtin_trap();
	char buf[16];
	if (c.signal && ww_signal_parse(ww_signal_name(c.signal, buf, sizeof buf)) != c.signal)
		__builtin_trap();
	return 0;
}
