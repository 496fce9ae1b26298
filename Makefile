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
	preload/snapshot.c preload/events.c preload/sites.c preload/stack.c preload/modules.c \
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
	preload/regions.c preload/maps.c preload/json.c preload/sites.c

.PHONY: all deps demo test bench install clean fuzz fuzz-build

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
	$(CC) $(filter-out -fvisibility=hidden,$(WW_CFLAGS)) -Itests $< $(UNIT_CORE) -o $@ -lpthread

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
	$(FUZZ_CC) $(FUZZ_FLAGS) $< $(UNIT_CORE) -o $@ -lpthread

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@for t in maps config; do \
		mkdir -p $(BUILD)/fuzz/corpus_$$t; \
		$(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=tests/fuzz/$$t/crash- \
			$(BUILD)/fuzz/corpus_$$t tests/fuzz/$$t || exit 1; \
	done
