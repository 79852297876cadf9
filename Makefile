# prefetchd — build, run, test, bench. Plain make; flags from pkg-config.
#
#   make          build build/prefetchd
#   make run      install missing packages, build, start the private demo
#                 cluster (.pgdata/) and prefetchd on 127.0.0.1:8080
#   make test     the same set-up, then the unit and integration tests
#   make asan     the same tests with AddressSanitizer + UBSan
#   make format / format-check

PKGS      := libevent libevent_pthreads libpq jansson
BUILD     ?= build
SANITIZE  ?=

# Debian packages the project needs: make deps installs the missing ones.
DEB_PKGS  := gcc make pkg-config libpq-dev libevent-dev libjansson-dev check \
             postgresql postgresql-contrib clang clang-format curl procps \
             python3 python3-jsonschema python3-django python3-psycopg2

CC        ?= cc
WARN      := -Wall -Wextra -Wpedantic -Werror -Wstrict-prototypes \
             -Wmissing-prototypes -Wshadow -Wpointer-arith -Wcast-qual \
             -Wformat=2 -Wundef -Wvla -Wno-unused-parameter -fno-common \
             -fstack-protector-strong
CFLAGS    ?= -g -O2
ALL_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(CFLAGS) $(WARN) \
             -MMD -MP $(SAN_FLAGS) $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
             -I$(shell pg_config --includedir 2>/dev/null)
LIBS       = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)
ifneq ($(SANITIZE),)
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
             -fno-omit-frame-pointer
endif

DAEMON_SRC := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(BUILD)/%.o)
# GET /openapi.json serves proto/openapi.json, compiled in as a byte array.
DAEMON_OBJ += $(BUILD)/openapi_doc.o
UNIT_SRC   := $(wildcard tests/unit/*.c)
INTEG_SRC  := $(wildcard tests/integration/*.c)

.PHONY: all deps run test test-only unit integration asan format format-check clean

all: $(BUILD)/prefetchd

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Idaemon -c $< -o $@

$(BUILD)/openapi_doc.c: proto/openapi.json
	@mkdir -p $(dir $@)
	@{ printf '/* Generated from %s by the Makefile. */\n' $<; \
	  printf '#include "openapi_doc.h"\n\nconst unsigned char openapi_doc[] = {\n'; \
	  od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  printf '};\nconst size_t openapi_doc_len = sizeof(openapi_doc);\n'; \
	} >$@.tmp && mv $@.tmp $@

$(BUILD)/openapi_doc.o: $(BUILD)/openapi_doc.c
	$(CC) $(ALL_CFLAGS) -Idaemon -c $< -o $@

$(BUILD)/prefetchd: $(BUILD)/daemon/main.o $(DAEMON_OBJ)
	$(CC) $(SAN_FLAGS) -o $@ $^ $(LIBS)

$(BUILD)/check_unit: $(UNIT_SRC:%.c=$(BUILD)/%.o) $(DAEMON_OBJ)
	$(CC) $(SAN_FLAGS) -o $@ $^ $(LIBS) $(CHECK_LIBS)

$(BUILD)/check_integration: $(INTEG_SRC:%.c=$(BUILD)/%.o) $(DAEMON_OBJ)
	$(CC) $(SAN_FLAGS) -o $@ $^ $(LIBS) $(CHECK_LIBS)

deps:
	@sh tests/deps.sh $(DEB_PKGS)

run: deps
	@$(MAKE) --no-print-directory all
	@sh tests/demo.sh $(BUILD)/prefetchd

# make test = make deps + build + every test. test-only skips the deps check
# (used by make asan, which builds into its own folder).
test: deps
	@$(MAKE) --no-print-directory test-only

test-only: $(BUILD)/prefetchd $(BUILD)/check_unit $(BUILD)/check_integration
	@sh tests/run.sh $(BUILD)

asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan SANITIZE=1 test-only

FORMAT_FILES = $(wildcard daemon/*.[ch] tests/*/*.[ch])
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

# --- reliability: make fuzz, make valgrind, make soak (daemon/README.md)
.PHONY: fuzz valgrind soak

# make fuzz [FUZZ_SECONDS=60]: the libFuzzer target over spec -> resolve ->
# plan against the schema fixtures (clang 14, -fsanitize=fuzzer,address,
# undefined), seeded with every request of proto/examples, tests/cases and
# tests/unit/plan_cases.json; what it finds goes to tests/fuzz/regressions,
# which the unit tests replay. tests/fuzz/run.sh tells the rest. (clang
# checks the va_list wrappers' formats that gcc leaves alone: not here.)
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_SRC     := daemon/spec.c daemon/spec_expr.c daemon/resolve.c \
                daemon/resolve_expr.c daemon/plan.c daemon/plan_sql.c \
                daemon/schema.c daemon/naming.c daemon/overlay.c daemon/err.c \
                daemon/log.c daemon/keys.c
FUZZ_FLAGS    = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -g -O1 \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer $(WARN) -Wno-format-nonliteral \
                $(shell pkg-config --cflags jansson 2>/dev/null) -Idaemon \
                -DFUZZ_FIXTURES='"$(CURDIR)/tests/unit/fixtures"'

$(FUZZ_BUILD)/fuzz_request: tests/fuzz/fuzz_request.c tests/fuzz/fuzz_one.h \
                            $(FUZZ_SRC) $(wildcard daemon/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_request.c $(FUZZ_SRC) \
	  $(shell pkg-config --libs jansson 2>/dev/null)

$(FUZZ_BUILD)/seeds: tests/fuzz/seeds.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 $(WARN) $(shell pkg-config --cflags jansson 2>/dev/null) \
	  -o $@ $< $(shell pkg-config --libs jansson 2>/dev/null)

fuzz:
	@sh tests/deps.sh clang libclang-rt-14-dev libjansson-dev pkg-config
	@$(MAKE) --no-print-directory $(FUZZ_BUILD)/fuzz_request $(FUZZ_BUILD)/seeds
	@sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# make valgrind: the unit tests in-process (CK_FORK=no) and the integration
# tests with every daemon under valgrind (PFTEST_WRAPPER); fails on any
# valgrind error or definite leak. See tests/valgrind.sh.
valgrind:
	@sh tests/deps.sh valgrind $(DEB_PKGS)
	@$(MAKE) --no-print-directory BUILD=build/valgrind build/valgrind/prefetchd \
	  build/valgrind/check_unit build/valgrind/check_integration
	@sh tests/valgrind.sh build/valgrind

# make soak [SOAK_SECONDS=120]: wrk on loopback against a private cluster,
# a mix of valid, invalid and heavy requests, then the checks (no unexpected
# 5xx, RSS, fds, connections, /readyz); run twice, the second time with the
# database restarted halfway. See tests/soak/soak.sh.
SOAK_SECONDS ?= 120
soak:
	@sh tests/deps.sh wrk $(DEB_PKGS)
	@$(MAKE) --no-print-directory BUILD=build/soak build/soak/prefetchd
	@sh tests/soak/soak.sh build/soak/prefetchd $(SOAK_SECONDS)

# --- performance: make bench (tests/bench/README.md; not part of make test)
.PHONY: bench

# make bench [BENCH_SECONDS=2 BENCH_REPS=3 BENCH_ONLY=w1]: prefetchd (-O2, no
# sanitizers) under wrk against pgbench on the same statements and on one
# json_agg + LATERAL statement per workload (tests/bench/*.json), and on the
# hand-written statements of a workload that has them (W7's .hand.sql), on
# the data sets of sql/bench.sql and sql/bench2.sql (BENCH_DATA=bench or
# bench2 for one) in a private cluster kept in .pgbench-data/ (created once,
# reused); with each workload also prefetchd under --prepare-cache 0 and
# --plan-mode custom and generic; prints the table and writes
# tests/bench/results.md. About 30 minutes.
bench:
	@sh tests/deps.sh wrk jq $(DEB_PKGS)
	@$(MAKE) --no-print-directory BUILD=build/bench SANITIZE= CFLAGS="-g -O2" \
	  build/bench/prefetchd
	@sh tests/bench/run.sh build/bench/prefetchd

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
