/* The configuration: one table of WRITEWATCH_* variables, parsed once at start. A bad value
 * warns once, naming the variable, and keeps the default; nothing here can fail the program. */
#define _GNU_SOURCE
#include "ww.h"

#include <signal.h>
#include <string.h>

enum ww_opt_type { WW_OPT_BOOL, WW_OPT_LONG, WW_OPT_SIGNAL, WW_OPT_STRING, WW_OPT_METHOD };

struct ww_opt {
	const char *name;
	enum ww_opt_type type;
	size_t offset;
	long min, max; /* for WW_OPT_LONG */
	const char *def_text;
};

#define OFF(f) offsetof(struct ww_config, f)
static const struct ww_opt opts[] = {
	{"WRITEWATCH_OUTPUT", WW_OPT_STRING, OFF(output), 0, 0, "writewatch.%e.%p.jsonl"},
	{"WRITEWATCH_INTERVAL_MS", WW_OPT_LONG, OFF(interval_ms), 0, 86400000, "0"},
	{"WRITEWATCH_SIGNAL", WW_OPT_SIGNAL, OFF(signal), 0, 0, "USR2"},
	{"WRITEWATCH_RANGES", WW_OPT_BOOL, OFF(ranges), 0, 0, "1"},
	{"WRITEWATCH_FOLLOW", WW_OPT_BOOL, OFF(follow), 0, 0, "1"},
	{"WRITEWATCH_QUIET", WW_OPT_BOOL, OFF(quiet), 0, 0, "0"},
	{"WRITEWATCH_SCAN_VEC", WW_OPT_LONG, OFF(scan_vec), 1, 65536, "1024"},
	{"WRITEWATCH_DISABLE", WW_OPT_BOOL, OFF(disable), 0, 0, "0"},
	{"WRITEWATCH_STACK_DEPTH", WW_OPT_LONG, OFF(stack_depth), 0, WW_MAX_DEPTH, "16"},
	{"WRITEWATCH_METHOD", WW_OPT_METHOD, OFF(discovery), 0, 0, "auto"},
};

static bool parse_long(const char *s, long *out)
{
	long v = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (__LONG_MAX__ - 9) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return true;
}

static bool parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "yes", "true", "on"};
	static const char *const no[] = {"0", "no", "false", "off"};
	for (size_t i = 0; i < 4; i++) {
		if (!strcasecmp(s, yes[i]))
			return *out = true, true;
		if (!strcasecmp(s, no[i]))
			return *out = false, true;
	}
	return false;
}

static const struct {
	const char *name;
	int sig;
} signames[] = {
	{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"USR1", SIGUSR1},
	{"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},   {"TERM", SIGTERM},
	{"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
	{"TTOU", SIGTTOU}, {"URG", SIGURG},   {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ},
	{"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
	{"PWR", SIGPWR},   {"SYS", SIGSYS},
};

/* The trigger may only be a signal nobody relies on for something else: not the terminating,
 * job-control and fault signals (a handler would change what they do to the program), not the
 * resource-limit ones, not glibc's reserved 32 and 33. */
static bool signal_usable(int sig)
{
	switch (sig) {
	case SIGUSR1: case SIGUSR2: case SIGALRM: case SIGVTALRM: case SIGPROF:
	case SIGWINCH: case SIGURG: case SIGIO: case SIGPWR:
		return true;
	default:
		return sig >= SIGRTMIN && sig <= SIGRTMAX;
	}
}

int ww_signal_parse(const char *s)
{
	long n;
	if (!strcasecmp(s, "none") || !strcmp(s, "0"))
		return 0;
	if (parse_long(s, &n))
		return n < 65 && signal_usable((int)n) ? (int)n : -1;
	if (!strncasecmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < sizeof signames / sizeof signames[0]; i++)
		if (!strcasecmp(s, signames[i].name))
			return signal_usable(signames[i].sig) ? signames[i].sig : -1;
	bool min = !strncasecmp(s, "RTMIN", 5), max = !strncasecmp(s, "RTMAX", 5);
	if (!min && !max)
		return -1;
	s += 5;
	long off = 0;
	if (*s) {
		if ((min && *s != '+') || (max && *s != '-') || !parse_long(s + 1, &off))
			return -1;
	}
	long sig = min ? SIGRTMIN + off : SIGRTMAX - off;
	return signal_usable((int)sig) ? (int)sig : -1;
}

const char *ww_signal_name(int sig, char *buf, size_t cap)
{
	if (sig == 0)
		return "none";
	for (size_t i = 0; i < sizeof signames / sizeof signames[0]; i++)
		if (signames[i].sig == sig)
			return signames[i].name;
	if (sig >= SIGRTMIN && sig <= SIGRTMAX) {
		if (sig == SIGRTMIN)
			ww_fmt(buf, cap, "RTMIN");
		else
			ww_fmt(buf, cap, "RTMIN+%d", sig - SIGRTMIN);
		return buf;
	}
	ww_fmt(buf, cap, "%d", sig);
	return buf;
}

/* Apply one value; false when it is not valid for the option. */
static bool apply(struct ww_config *cfg, const struct ww_opt *o, const char *v)
{
	char *field = (char *)cfg + o->offset;
	long n;
	bool b;
	int sig;
	switch (o->type) {
	case WW_OPT_BOOL:
		if (!parse_bool(v, &b))
			return false;
		*(bool *)field = b;
		return true;
	case WW_OPT_LONG:
		if (!parse_long(v, &n) || n < o->min || n > o->max)
			return false;
		*(long *)field = n;
		return true;
	case WW_OPT_SIGNAL:
		sig = ww_signal_parse(v);
		if (sig < 0)
			return false;
		*(int *)field = sig;
		return true;
	case WW_OPT_METHOD:
		if (strcasecmp(v, "auto") && strcasecmp(v, "discovery"))
			return false;
		*(bool *)field = !strcasecmp(v, "discovery");
		return true;
	case WW_OPT_STRING:
		if (!*v || strlen(v) >= sizeof cfg->output)
			return false;
		memcpy(field, v, strlen(v) + 1);
		return true;
	}
	return false;
}

/* Is the first n bytes of v exactly name? */
static bool names(const char *v, size_t n, const char *name)
{
	return strlen(name) == n && !strncmp(v, name, n);
}

size_t ww_config_check_names(char *const *env)
{
	size_t unknown = 0;
	for (; env && *env; env++) {
		const char *v = *env;
		if (strncmp(v, "WRITEWATCH_", 11) != 0)
			continue;
		size_t n = strcspn(v, "=");
		/* Not the shim's, yet ours: the exec marker, the launcher's, the test suite's. */
		static const char *const others[] = {"WRITEWATCH_EXEC_PID", "WRITEWATCH_EXEC_DIR",
						     "WRITEWATCH_LIB",
						     "WRITEWATCH_NO_BROWSER_INSTALL"};
		bool known = false;
		for (size_t i = 0; !known && i < sizeof others / sizeof others[0]; i++)
			known = names(v, n, others[i]);
		for (size_t i = 0; !known && i < sizeof opts / sizeof opts[0]; i++)
			known = names(v, n, opts[i].name);
		if (known)
			continue;
		unknown++;
		char list[256], entry[72]; /* entry: NAME=value, as the bad-value lines say it */
		size_t at = 0;
		for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
			at += ww_fmt(list + at, sizeof list - at, i ? ", %s" : "%s", opts[i].name + 11);
		ww_fmt(entry, sizeof entry, "%s", v);
		ww_warn("%s: not a writewatch variable (a typo?), ignored; the variables are "
			"WRITEWATCH_ with %s",
			entry, list);
	}
	return unknown;
}

void ww_config_parse(struct ww_config *cfg, const char *(*get)(const char *name))
{
	memset(cfg, 0, sizeof *cfg);
	for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
		(void)apply(cfg, &opts[i], opts[i].def_text);
	/* WRITEWATCH_QUIET first, so that it also silences the warnings about the others. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
			const struct ww_opt *o = &opts[i];
			if ((o->offset == OFF(quiet)) != (pass == 0))
				continue;
			const char *v = get(o->name);
			if (!v || apply(cfg, o, v))
				continue;
			if (o->type == WW_OPT_LONG)
				ww_warn("%s=%s is not a whole number from %ld to %ld; using %s", o->name,
					v, o->min, o->max, o->def_text);
			else if (o->type == WW_OPT_SIGNAL)
				ww_warn("%s=%s is not a usable signal (USR1, USR2, ALRM, VTALRM, PROF, "
					"WINCH, URG, IO, PWR, RTMIN+N, RTMAX-N, their numbers, or none); "
					"using %s",
					o->name, v, o->def_text);
			else if (o->type == WW_OPT_METHOD)
				ww_warn("%s=%s is not auto or discovery; using %s", o->name, v,
					o->def_text);
			else if (o->type == WW_OPT_BOOL)
				ww_warn("%s=%s is not 1/0, yes/no, true/false or on/off; using %s",
					o->name, v, o->def_text);
			else
				ww_warn("%s is empty or longer than %ld bytes; using %s", o->name,
					(long)sizeof cfg->output - 1, o->def_text);
		}
		if (pass == 0)
			ww_quiet = cfg->quiet;
	}
}
