# prefetchd — build, run, test, bench. Plain make; flags from pkg-config.
#
#   make          build build/prefetchd
#   make run      install missing packages, build, start the private demo
#                 cluster (.pgdata/) and prefetchd on 127.0.0.1:8080
#   make test     the same set-up, then the unit and integration tests
#   make asan     the same tests with AddressSanitizer + UBSan
#   make format / format-check

PKGS      := libevent libpq jansson
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

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
