# relais - VPS-to-home tunnelling reverse proxy.  See README.md.

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
CC      ?= cc
FUZZ_CC ?= clang
FUZZ_TIME ?= 60

PKGS     := libwebsockets openssl libsodium yaml-0.1
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter -Wformat=2 -Wvla
CFLAGS  ?= -O2 -g
override CFLAGS += -std=c11 -D_GNU_SOURCE -fno-strict-aliasing $(WARN) $(PKG_CFLAGS) -I.
override LDLIBS += $(PKG_LIBS) -lpthread

PROTO_SRC  := $(wildcard proto/*.c)
COMMON_SRC := $(wildcard common/*.c)
# edge/ modules that are pure (no libwebsockets): unit-tested and fuzzed.
EDGE_PURE  := $(wildcard edge/http1.c edge/clienthello.c edge/proxyproto.c edge/certs.c \
                edge/policy.c edge/auth.c edge/dashboard.c \
                edge/clients.c)
EDGE_SRC   := $(filter-out $(EDGE_PURE),$(wildcard edge/*.c))
AGENT_SRC  := $(wildcard agent/*.c)
LIB_SRC    := $(PROTO_SRC) $(COMMON_SRC) $(EDGE_PURE)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
EDGE_OBJ  := $(EDGE_SRC:%.c=$(BUILD)/%.o)
AGENT_OBJ := $(AGENT_SRC:%.c=$(BUILD)/%.o)
LIB       := $(BUILD)/librelais.a

UNIT_SRC  := $(wildcard tests/unit/*/*.c)
UNIT_BIN  := $(UNIT_SRC:%.c=$(BUILD)/%)

BINS := $(BUILD)/relais-edge $(BUILD)/relais-agent

.PHONY: all test asan fuzz clean install demo bench format unit install-files uninstall \
        container-test
all: $(BINS) $(UNIT_BIN)

$(BUILD)/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/relais-edge: $(EDGE_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/relais-agent: $(AGENT_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/unit/%: tests/unit/%.c tests/unit/unit.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

unit: $(UNIT_BIN)

# edge/acme is not pure (a thread, files, OpenSSL, lws_cancel_service): its unit
# tests and the stand-alone ACME test driver link its objects explicitly.
ACME_OBJ := $(BUILD)/edge/acme.o $(BUILD)/edge/acme_http.o

$(BUILD)/tests/unit/edge/acme $(BUILD)/tests/unit/edge/acme_http: $(BUILD)/tests/unit/edge/%: \
  tests/unit/edge/%.c tests/unit/unit.h $(ACME_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(ACME_OBJ) $(LIB) $(LDLIBS)

# edge/acme.c with a tiny HTTP-01 server, for tests/e2e/test_acme.py.
$(BUILD)/tests/acme_driver: tests/acme_driver.c $(ACME_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(ACME_OBJ) $(LIB) $(LDLIBS)

all: $(BUILD)/tests/acme_driver

test: all
	tests/run.sh $(BUILD)

asan:
	$(MAKE) BUILD=build-asan CC=clang \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  RELAIS_ASAN=1 tests/run.sh build-asan

FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB_SRC) $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(LIB_SRC) $(LDLIBS)

# Build every fuzz target and run each for FUZZ_TIME seconds on a copy of its seed corpus.
fuzz: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  rm -rf $(BUILD)/fuzz/corpus-$$t; mkdir -p $(BUILD)/fuzz/corpus-$$t; \
	  cp tests/fuzz/corpus/$$t/* $(BUILD)/fuzz/corpus-$$t/ 2>/dev/null || true; \
	  echo "fuzz: $$t for $(FUZZ_TIME)s"; \
	  if ! $(BUILD)/fuzz/$$t -max_total_time=$(FUZZ_TIME) -max_len=70000 -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus-$$t > $(BUILD)/fuzz/$$t.log 2>&1; then \
	    tail -n 60 $(BUILD)/fuzz/$$t.log; echo "fuzz: $$t FAILED (input saved in $(BUILD)/fuzz/)"; exit 1; \
	  fi; tail -n 12 $(BUILD)/fuzz/$$t.log; \
	done

# One command on a fresh machine: dependencies, build, then edge + agent + origin.
demo:
	./deploy/install-deps.sh
	$(MAKE) all
	deploy/demo.sh $(BUILD)

bench: all
	bench/run.sh $(BUILD)

# make install [PREFIX=/usr/local] [DESTDIR=] [SYSTEMDUNITDIR=$(PREFIX)/lib/systemd/system]
# Binaries, man pages, example configurations and the systemd units (whose
# paths are rewritten for PREFIX).  install -C leaves identical files alone.
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR ?= $(PREFIX)/share/man
INSTALL_UNITS := deploy/relais-edge.service deploy/relais-agent.service
INSTALL_MANS  := deploy/relais-edge.8 deploy/relais-agent.8

install: $(BINS)
	@$(MAKE) --no-print-directory install-files

# The copying part of install, without building: for binaries built earlier
# (deploy/install-*.sh --no-build, the container test).
install-files:
	@test -x $(BUILD)/relais-edge -a -x $(BUILD)/relais-agent || \
	  { echo "install: build $(BUILD)/relais-edge and $(BUILD)/relais-agent first (make)"; exit 1; }
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/relais/examples \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMDUNITDIR)
	install -C -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -C -m 0644 deploy/edge.example.yaml deploy/agent.example.yaml \
	  $(DESTDIR)$(PREFIX)/share/relais/examples/
	@set -e; t=$$(mktemp); trap 'rm -f "$$t"' EXIT; \
	for f in $(INSTALL_MANS) $(INSTALL_UNITS); do \
	  case $$f in *.8) d='$(DESTDIR)$(MANDIR)/man8' ;; *) d='$(DESTDIR)$(SYSTEMDUNITDIR)' ;; esac; \
	  sed -e 's|/usr/local/|$(PREFIX)/|g' "$$f" > "$$t"; \
	  install -C -m 0644 "$$t" "$$d/$${f#deploy/}"; \
	done

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/relais-edge $(DESTDIR)$(PREFIX)/bin/relais-agent \
	  $(DESTDIR)$(MANDIR)/man8/relais-edge.8 $(DESTDIR)$(MANDIR)/man8/relais-agent.8 \
	  $(DESTDIR)$(SYSTEMDUNITDIR)/relais-edge.service $(DESTDIR)$(SYSTEMDUNITDIR)/relais-agent.service
	rm -rf $(DESTDIR)$(PREFIX)/share/relais/examples
	-rmdir $(DESTDIR)$(PREFIX)/share/relais 2>/dev/null

# Dockerfile + podman: build the images on a debootstrapped Debian base, pass a
# request through the containerised edge and agent, then run the install
# scripts and the systemd units in a systemd container (needs root and podman).
container-test:
	tests/container/run.sh

format:
	clang-format -i $(wildcard */*.c */*.h tests/unit/*/*.c tests/fuzz/*.c)

clean:
	rm -rf build build-asan
