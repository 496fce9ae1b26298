# writewatch: build the preload library, the tests and the demo.
# `make demo` and `make test` install what a fresh Debian machine lacks (scripts/deps.sh).

CC ?= cc
PREFIX ?= /usr/local
BUILD := build
CFLAGS ?= -O2 -g
WW_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-fPIC -fvisibility=hidden -ftls-model=initial-exec -fno-strict-aliasing \
	-Iinclude -Ipreload $(CFLAGS) $(EXTRA_CFLAGS)
WW_LDFLAGS := -shared -Wl,-z,defs -Wl,--version-script=preload/writewatch.map \
	-Wl,-z,now -Wl,-z,relro $(LDFLAGS) $(EXTRA_LDFLAGS)

CORE_SRC := preload/sys.c preload/alloc.c preload/config.c preload/pageset.c \
	preload/regions.c preload/maps.c preload/kern.c preload/json.c preload/output.c \
	preload/snapshot.c preload/events.c preload/sites.c preload/stack.c preload/unwind.c \
	preload/modules.c \
	preload/mallocs.c preload/core.c preload/real.c
LIB_SRC := $(CORE_SRC) preload/hooks.c preload/hooks_alloc.c
HDRS := $(wildcard preload/*.h include/*.h)
LIB := $(BUILD)/libwritewatch.so

# tests/t_env_early.c is a shared library (libearly.so, a neighbour in LD_PRELOAD), not a program.
TEST_LIB_SRC := tests/t_env_early.c
TEST_PROGS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(filter-out $(TEST_LIB_SRC),$(wildcard tests/t_*.c)))
TEST_LIBS := $(BUILD)/tests/libearly.so
UNIT_SRC := $(wildcard tests/unit_*.c)
UNIT_BINS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
# The unit tests link the core directly (no LD_PRELOAD, no hooks).
UNIT_CORE := preload/sys.c preload/alloc.c preload/config.c preload/pageset.c \
	preload/regions.c preload/maps.c preload/json.c preload/sites.c preload/unwind.c

.PHONY: all deps demo test bench install clean fuzz fuzz-build stress check-sanitize lint

all: $(LIB) $(TEST_PROGS) $(TEST_LIBS) $(UNIT_BINS)

deps:
	@scripts/deps.sh

$(LIB): | deps
$(LIB): $(LIB_SRC) $(HDRS) preload/writewatch.map
	@mkdir -p $(BUILD)
	$(CC) $(WW_CFLAGS) $(LIB_SRC) -o $@ $(WW_LDFLAGS) -lpthread -ldl -lgcc_s

$(BUILD)/tests/t_%: tests/t_%.c tests/tprog.h include/writewatch.h
	@mkdir -p $(BUILD)/tests
	$(CC) -std=gnu11 -O1 -g -Wall -Wextra -Werror -Iinclude -Itests $< -o $@ -lpthread -ldl

$(BUILD)/tests/libearly.so: tests/t_env_early.c
	@mkdir -p $(BUILD)/tests
	$(CC) -std=gnu11 -O1 -g -Wall -Wextra -Werror -fPIC -shared $< -o $@ -lpthread

$(BUILD)/tests/unit_%: tests/unit_%.c $(UNIT_CORE) $(HDRS)
	@mkdir -p $(BUILD)/tests
	$(CC) $(filter-out -fvisibility=hidden,$(WW_CFLAGS)) -Itests $< $(UNIT_CORE) -o $@ -lpthread -lgcc_s

demo: $(LIB)
	@scripts/demo.sh

test: all
	@scripts/run-tests.sh

# Benchmarks (tests/bench/, issue 5): `make bench` runs the suite (about 10 minutes) and writes
# build/bench/results.json and results.md; BENCH_QUICK=1 runs it once at tiny sizes.
BENCH_BINS := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(wildcard tests/bench/b_*.c))

$(BUILD)/bench/b_%: tests/bench/b_%.c tests/bench/bench.h include/writewatch.h include/ww_uapi.h
	@mkdir -p $(BUILD)/bench
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Iinclude $< -o $@ -ldl

bench: $(LIB) $(BENCH_BINS)
	@python3 tests/bench/bench.py

install: $(LIB)
	install -d $(DESTDIR)$(PREFIX)/lib/writewatch $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include
	install -m 0644 $(LIB) $(DESTDIR)$(PREFIX)/lib/writewatch/libwritewatch.so
	install -m 0755 scripts/writewatch $(DESTDIR)$(PREFIX)/bin/writewatch
	install -m 0644 include/writewatch.h $(DESTDIR)$(PREFIX)/include/writewatch.h

clean:
	rm -rf $(BUILD)

# Fuzzing (clang's libFuzzer): `make fuzz` runs each target for FUZZ_SECONDS; make test runs a
# bounded pass (tests/test_fuzz.py). Crashes found are kept in tests/fuzz/<target>/ as inputs.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-Iinclude -Ipreload -std=gnu11
FUZZ_BINS := $(BUILD)/fuzz/fuzz_maps $(BUILD)/fuzz/fuzz_config

$(BUILD)/fuzz/fuzz_%: tests/fuzz_%.c $(UNIT_CORE) $(HDRS)
	@mkdir -p $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) $< $(UNIT_CORE) -o $@ -lpthread -lgcc_s

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@for t in maps config; do \
		mkdir -p $(BUILD)/fuzz/corpus_$$t; \
		$(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=tests/fuzz/$$t/crash- \
			$(BUILD)/fuzz/corpus_$$t tests/fuzz/$$t || exit 1; \
	done

# Stress (tests/test_stress.py): make test runs each of its four variants for 3 s; `make stress`
# runs them for STRESS_SECONDS each.
STRESS_SECONDS ?= 60

stress: all
	@WW_STRESS_SECONDS=$(STRESS_SECONDS) python3 tests/test_stress.py

# Sanitizers: `make check-sanitize` builds the shim three ways and the unit tests with ASan+UBSan,
# then runs, each of which must pass with no sanitizer report (a report fails the program):
#  1. the unit tests, ASan+UBSan (the core linked in, no preload);
#  2. tests/test_tracking.py and a short stress run on the ASan+UBSan shim, with ASan's runtime
#     first in LD_PRELOAD. t_track_found is skipped there: it needs glibc's malloc, which ASan
#     replaces; and the stress variants with fork: GCC 12's ASan allocator is not fork-safe. So
#  3. tests/test_tracking.py and the whole stress run again on a UBSan-only shim, where glibc's
#     malloc stays;
#  4. a short stress run on the TSan shim (ThreadSanitizer can run a preloaded shim if its
#     runtime comes first). hooks.c, hooks_alloc.c and real.c are built uninstrumented: TSan's
#     runtime calls our sigaction hook while it initializes, before instrumented code can run.
#     The run uses no trigger signal and WRITEWATCH_METHOD=discovery (tests/test_stress.py says
#     why), symbolize=0 (the symbolizer maps files through our mmap hook while holding its own
#     lock: reports show module+offset, for addr2line -e $(BUILD)/tsan/libwritewatch.so), and
#     without the fork variants: a child of a threaded parent can inherit TSan's allocator
#     locked and hang in calloc (seen: the child's pthread_create waiting in TSan's allocator),
#     shim or not; the UBSan run covers fork.
# ASAN_OPTIONS: detect_leaks=0, the shim keeps its tables for the life of the process by
# design; clear_shadow_mmap_threshold, so that ASan clears its shadow with memset instead of
# replacing it by raw mmap calls, which the shim (rightly) reports as lost tracking.
SAN_SECONDS ?= 2
SAN_CFLAGS := -O1 -g -fno-omit-frame-pointer
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all
UBSAN_FLAGS := -fsanitize=undefined -fno-sanitize-recover=all
SAN_ASAN_OPTIONS := detect_leaks=0:clear_shadow_mmap_threshold=1073741824
SAN_UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1
SAN_TSAN_OPTIONS := symbolize=0:die_after_fork=0
TSAN_PLAIN := preload/hooks.c preload/hooks_alloc.c preload/real.c
TSAN_OBJS := $(patsubst preload/%.c,$(BUILD)/tsan/%.o,$(LIB_SRC))
ASAN_UNIT_BINS := $(patsubst tests/%.c,$(BUILD)/asan/tests/%,$(UNIT_SRC))

$(BUILD)/asan/libwritewatch.so: $(LIB_SRC) $(HDRS) preload/writewatch.map
	@mkdir -p $(BUILD)/asan
	$(CC) $(WW_CFLAGS) $(SAN_CFLAGS) $(ASAN_FLAGS) $(LIB_SRC) -o $@ $(WW_LDFLAGS) -lpthread -ldl -lgcc_s

$(BUILD)/ubsan/libwritewatch.so: $(LIB_SRC) $(HDRS) preload/writewatch.map
	@mkdir -p $(BUILD)/ubsan
	$(CC) $(WW_CFLAGS) $(SAN_CFLAGS) $(UBSAN_FLAGS) $(LIB_SRC) -o $@ $(WW_LDFLAGS) -lpthread -ldl -lgcc_s

$(BUILD)/tsan/%.o: preload/%.c $(HDRS)
	@mkdir -p $(BUILD)/tsan
	$(CC) $(WW_CFLAGS) $(SAN_CFLAGS) $(if $(filter $<,$(TSAN_PLAIN)),,-fsanitize=thread) -c $< -o $@

$(BUILD)/tsan/libwritewatch.so: $(TSAN_OBJS) preload/writewatch.map
	$(CC) -fsanitize=thread $(TSAN_OBJS) -o $@ $(WW_LDFLAGS) -lpthread -ldl -lgcc_s

$(BUILD)/asan/tests/unit_%: tests/unit_%.c $(UNIT_CORE) $(HDRS)
	@mkdir -p $(BUILD)/asan/tests
	$(CC) $(filter-out -fvisibility=hidden,$(WW_CFLAGS)) $(SAN_CFLAGS) $(ASAN_FLAGS) -Itests $< \
		$(UNIT_CORE) -o $@ -lpthread -lgcc_s

check-sanitize: all $(BUILD)/asan/libwritewatch.so $(BUILD)/ubsan/libwritewatch.so \
		$(BUILD)/tsan/libwritewatch.so $(ASAN_UNIT_BINS)
	@asan=$$($(CC) -print-file-name=libasan.so); tsan=$$($(CC) -print-file-name=libtsan.so); \
	failed=""; \
	for t in $(ASAN_UNIT_BINS); do \
		echo "== $$t (ASan+UBSan)"; \
		ASAN_OPTIONS=$(SAN_ASAN_OPTIONS) UBSAN_OPTIONS=$(SAN_UBSAN_OPTIONS) $$t || failed="$$failed $$t"; \
	done; \
	echo "== tests/test_tracking.py on $(BUILD)/asan/libwritewatch.so (ASan+UBSan)"; \
	WW_LIB=$(CURDIR)/$(BUILD)/asan/libwritewatch.so WW_PRELOAD_FIRST=$$asan WW_SKIP_PROGS=t_track_found \
		ASAN_OPTIONS=$(SAN_ASAN_OPTIONS) UBSAN_OPTIONS=$(SAN_UBSAN_OPTIONS) \
		python3 tests/test_tracking.py || failed="$$failed tracking-asan"; \
	echo "== tests/test_stress.py on $(BUILD)/asan/libwritewatch.so (ASan+UBSan)"; \
	WW_LIB=$(CURDIR)/$(BUILD)/asan/libwritewatch.so WW_PRELOAD_FIRST=$$asan WW_STRESS_SECONDS=$(SAN_SECONDS) \
		WW_STRESS_NO_FORK=1 ASAN_OPTIONS=$(SAN_ASAN_OPTIONS) UBSAN_OPTIONS=$(SAN_UBSAN_OPTIONS) \
		python3 tests/test_stress.py || failed="$$failed stress-asan"; \
	echo "== tests/test_tracking.py on $(BUILD)/ubsan/libwritewatch.so (UBSan)"; \
	WW_LIB=$(CURDIR)/$(BUILD)/ubsan/libwritewatch.so UBSAN_OPTIONS=$(SAN_UBSAN_OPTIONS) \
		python3 tests/test_tracking.py || failed="$$failed tracking-ubsan"; \
	echo "== tests/test_stress.py on $(BUILD)/ubsan/libwritewatch.so (UBSan)"; \
	WW_LIB=$(CURDIR)/$(BUILD)/ubsan/libwritewatch.so WW_STRESS_SECONDS=$(SAN_SECONDS) \
		UBSAN_OPTIONS=$(SAN_UBSAN_OPTIONS) \
		python3 tests/test_stress.py || failed="$$failed stress-ubsan"; \
	echo "== tests/test_stress.py on $(BUILD)/tsan/libwritewatch.so (TSan)"; \
	WW_LIB=$(CURDIR)/$(BUILD)/tsan/libwritewatch.so WW_PRELOAD_FIRST=$$tsan WW_STRESS_TSAN=1 WW_STRESS_NO_FORK=1 \
		WW_STRESS_SECONDS=$(SAN_SECONDS) TSAN_OPTIONS=$(SAN_TSAN_OPTIONS) \
		python3 tests/test_stress.py || failed="$$failed stress-tsan"; \
	if [ -n "$$failed" ]; then echo "check-sanitize: FAILED:$$failed"; exit 1; fi; \
	echo "check-sanitize: all clean"

# Static checks of preload/ (`make lint`), both must be clean:
#  - cppcheck: warning, style, performance and portability, with uthash's macros visible (a
#    link to the system header, not all of /usr/include) and three suppressions: constParameter
#    (the exec hooks keep execve's own prototype), variableScope (a style choice) and
#    knownConditionTrueFalse in modules.c and regions.c (false positives of its value flow).
#  - clang-tidy: clang-analyzer-* and bugprone-*, less what only flags this code's deliberate
#    choices: insecureAPI.DeprecatedOrUnsafeBufferHandling (Annex K memcpy_s), reserved-identifier
#    (_GNU_SOURCE, __libc_malloc, __bss_start are what they are), easily-swappable-parameters,
#    suspicious-string-compare (!strcmp), and three false positives here: valist.Uninitialized
#    (va_list parameters), sizeof-expression (arrays of pointers), not-null-terminated-result
#    (JSON escapes are not C strings).
CPPCHECK_FLAGS := --enable=warning,style,performance,portability --std=c11 --library=posix \
	--inline-suppr -q -D__x86_64__ -D__linux__ -D__GNUC__ --error-exitcode=1 \
	--suppress=constParameter --suppress=variableScope \
	--suppress=knownConditionTrueFalse:preload/modules.c \
	--suppress=knownConditionTrueFalse:preload/regions.c
TIDY_CHECKS := -*,clang-analyzer-*,bugprone-*,$\
	-clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling,$\
	-clang-analyzer-valist.Uninitialized,-bugprone-reserved-identifier,$\
	-bugprone-easily-swappable-parameters,-bugprone-suspicious-string-compare,$\
	-bugprone-sizeof-expression,-bugprone-not-null-terminated-result

lint: | deps
	@mkdir -p $(BUILD)/lint && ln -sf /usr/include/uthash.h $(BUILD)/lint/uthash.h; \
	ran=""; status=0; \
	if command -v cppcheck >/dev/null; then ran="$$ran cppcheck"; \
		cppcheck $(CPPCHECK_FLAGS) -I$(BUILD)/lint -Iinclude -Ipreload preload/ || status=1; fi; \
	if command -v clang-tidy >/dev/null; then ran="$$ran clang-tidy"; \
		out=$$(clang-tidy --quiet -checks='$(TIDY_CHECKS)' --warnings-as-errors='*' \
			preload/*.c -- -std=gnu11 -Iinclude -Ipreload 2>&1) || { echo "$$out"; status=1; }; fi; \
	[ -n "$$ran" ] || { echo "lint: neither cppcheck nor clang-tidy is installed"; exit 1; }; \
	[ $$status -eq 0 ] && echo "lint:$$ran clean on preload/"; exit $$status
