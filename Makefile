# Airlock build. GNU Make, C17, warnings are errors.
#
#   make                 build bin/airlock
#   make SANITIZE=address,undefined   build into build/sanitize/ with ASan+UBSan
#   make run             install dependencies, build, start the embedded airlock
#   make test            install test dependencies, build, run every test
#   make fuzz            build libFuzzer targets with clang (build/fuzz/)

CC ?= gcc
VERSION := 0.1.0
# libcurl, libpq and libmariadb are compiled against but not linked: they are
# loaded (dlopen, src/net/curl_dl.c and the runner's *_dl.c) only in the
# processes that need them, which keeps `airlock serve` small.
PKGS := libmicrohttpd jansson yaml-0.1 sqlite3 libsodium libcrypto zlib cjose
DL_PKGS := libcurl libpq libmariadb
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(DL_PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CURL_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wmissing-prototypes -Wvla -Wno-unused-parameter
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c17 -D_GNU_SOURCE -DAIRLOCK_VERSION=\"$(VERSION)\" -Isrc $(WARN) $(CFLAGS) $(PKG_CFLAGS) -pthread -MMD -MP
LDLIBS := $(PKG_LIBS) -ldl -pthread -lm

ifdef SANITIZE
BUILD ?= build/sanitize
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
BIN := $(BUILD)/bin/airlock
else
BUILD ?= build/release
BIN := bin/airlock
endif

SRCS := $(shell find src -name '*.c' | sort)
MAIN_SRC := src/cli/main.c
LIB_SRCS := $(filter-out $(MAIN_SRC),$(SRCS))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/gen/crd_data.o
CRDS := $(sort $(wildcard deploy/crds/*.yaml))
MAIN_OBJ := $(MAIN_SRC:%.c=$(BUILD)/%.o)

TEST_SRCS := $(sort $(wildcard tests/unit/test_*.c))
TEST_BINS := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
CORPUS_BINS := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=$(BUILD)/tests/corpus_%)

.PHONY: all tests run test fuzz clean deps test-deps
all: $(BIN)

$(BUILD)/lib/libairlock.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BIN): $(MAIN_OBJ) $(BUILD)/lib/libairlock.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The web frontend's static files are embedded by assets.c (.incbin), which
# the compiler's dependency files cannot see: our own (src/web/assets/) and
# tus-js-client's browser bundle with its licences, installed from npm into
# the cache and prepared in $(WEB_GEN) by scripts/web-deps.sh (one copy for
# every build flavour: the incbin paths are fixed).
WEB_GEN := build/web
WEB_DEPS := $(WEB_GEN)/tus.min.js $(WEB_GEN)/tus-licenses.txt
$(WEB_DEPS) &: scripts/web-deps.sh
	scripts/web-deps.sh $(WEB_GEN)
$(BUILD)/src/web/assets/assets.o: $(wildcard src/web/assets/*.css src/web/assets/*.js src/web/assets/*.svg) $(WEB_DEPS)

# The CRDs are embedded verbatim: the C validator interprets their schemas.
$(BUILD)/gen/crd_data.c: $(CRDS) scripts/embed-crds.sh
	@mkdir -p $(dir $@)
	scripts/embed-crds.sh $@
$(BUILD)/gen/crd_data.o: $(BUILD)/gen/crd_data.c
	$(CC) $(ALL_CFLAGS) -Wno-missing-variable-declarations -c -o $@ $<

# Unit tests: one cmocka binary per tests/unit/test_*.c.
$(BUILD)/tests/test_%: tests/unit/test_%.c $(BUILD)/lib/libairlock.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(BUILD)/lib/libairlock.a $(LDLIBS) $(CURL_LIBS) -lcmocka

# Fuzz corpora as ordinary tests: the fuzz target linked with a main() that
# feeds it every file of its corpus.
$(BUILD)/tests/corpus_%: tests/fuzz/fuzz_%.c tests/fuzz/corpus_main.c $(BUILD)/lib/libairlock.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< tests/fuzz/corpus_main.c $(BUILD)/lib/libairlock.a $(LDLIBS)

tests: $(BIN) $(TEST_BINS) $(CORPUS_BINS)

# libFuzzer builds (clang).
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=build/fuzz/fuzz_%)
fuzz: $(FUZZ_BINS)
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_SRCS) build/fuzz/gen/crd_data.c $(WEB_DEPS)
	@mkdir -p $(dir $@)
	clang -std=c17 -D_GNU_SOURCE -DAIRLOCK_VERSION=\"$(VERSION)\" -Isrc -g -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) \
		-o $@ $< $(filter-out src/cli/%,$(LIB_SRCS)) build/fuzz/gen/crd_data.c $(LDLIBS)
build/fuzz/gen/crd_data.c: $(CRDS) scripts/embed-crds.sh
	@mkdir -p $(dir $@)
	scripts/embed-crds.sh $@

deps:
	scripts/bootstrap.sh build

test-deps:
	scripts/bootstrap.sh test

run: deps
	$(MAKE) $(BIN)
	scripts/run.sh

test: test-deps
	scripts/test.sh

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
