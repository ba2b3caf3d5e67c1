# SmartCache build, test, demo, bench and install. `make test` is what CI runs.

PREFIX      ?= /usr/local
CARGO       ?= cargo
CC          ?= cc
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MAJOR       := $(firstword $(subst ., ,$(VERSION)))
BUILD       := $(CURDIR)/build
LIBDIR      := $(BUILD)/lib
RELEASE     := $(CURDIR)/target/release
STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
CFLAGS_TEST := -std=c11 -O1 -g -Wall -Wextra -Wpedantic -Werror -Iinclude -pthread
VENV        := $(BUILD)/venv

C_TESTS     := $(patsubst c_tests/%.c,%,$(wildcard c_tests/test_*.c))

.PHONY: all lib deps test test-rust test-c test-c-memcheck check-generated lint demo bench \
        install clean test-python test-go test-examples test-interop \
        wheel sdist sdist-check test-wheel

all: lib

# Release build, laid out as installed: a versioned .so with its soname link, and the .a.
lib:
	$(CARGO) build --release --lib
	@mkdir -p $(LIBDIR)
	@# Copied beside, then renamed over: a process still running the old library keeps its
	@# mapping (truncating the mapped file in place would crash it).
	cp -f $(RELEASE)/libsmartcache.so $(LIBDIR)/.libsmartcache.so.new
	mv -f $(LIBDIR)/.libsmartcache.so.new $(LIBDIR)/libsmartcache.so.$(VERSION)
	ln -sf libsmartcache.so.$(VERSION) $(LIBDIR)/libsmartcache.so.$(MAJOR)
	ln -sf libsmartcache.so.$(MAJOR) $(LIBDIR)/libsmartcache.so
	cp -f $(RELEASE)/libsmartcache.a $(LIBDIR)/libsmartcache.a

deps:
	@scripts/ensure-deps.sh

# Every suite. Installs what a fresh Debian machine lacks, and starts its own redis-server.
test: deps lib check-generated lint test-rust test-c test-c-memcheck test-python test-wheel test-go test-examples test-interop
	@echo "make test: all suites passed"

test-rust:
	scripts/with-redis.sh $(CARGO) test --release --lib --tests

# Each C test built twice: against the shared library and against the static one.
$(BUILD)/c/%.so.bin: c_tests/%.c c_tests/check.h include/smartcache.h lib
	@mkdir -p $(BUILD)/c
	$(CC) $(CFLAGS_TEST) $< -o $@ -L$(LIBDIR) -lsmartcache -Wl,-rpath,$(LIBDIR)

$(BUILD)/c/%.a.bin: c_tests/%.c c_tests/check.h include/smartcache.h lib
	@mkdir -p $(BUILD)/c
	$(CC) $(CFLAGS_TEST) $< -o $@ $(LIBDIR)/libsmartcache.a $(STATIC_LIBS)

test-c: $(foreach t,$(C_TESTS),$(BUILD)/c/$(t).so.bin $(BUILD)/c/$(t).a.bin)
	@set -e; for t in $^; do echo "== $$t"; scripts/with-redis.sh $$t; done

# The C suites again under valgrind's memcheck: leaks, invalid reads and writes fail the run.
test-c-memcheck: $(foreach t,$(C_TESTS),$(BUILD)/c/$(t).so.bin)
	@set -e; for t in $^; do echo "== memcheck $$t"; \
	  SMARTCACHE_QUICK=1 SMARTCACHE_NO_TSC=1 scripts/with-redis.sh valgrind -q --error-exitcode=3 \
	    --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite $$t; done

# The committed header (and Python declarations) must be what the build generates.
check-generated: lib
	@if [ -f scripts/gen_ffi.py ]; then $(VENV)/bin/python scripts/gen_ffi.py; fi
	@git diff --exit-code -- include/ bindings/python/smartcache/_native.py || \
	  { echo "generated files are stale: commit the regenerated include/smartcache.h / _native.py"; exit 1; }
	@# The Go module carries copies of the licence texts (a module zip holds no symlinks).
	@cmp -s LICENSE-MIT bindings/go/LICENSE-MIT && cmp -s LICENSE-APACHE bindings/go/LICENSE-APACHE || \
	  { echo "bindings/go/LICENSE-* differ from the repository's LICENSE-*: copy them again"; exit 1; }

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings

test-python:
	@if [ -d bindings/python ]; then \
	  $(VENV)/bin/pip install -q --disable-pip-version-check -e bindings/python && \
	  SMARTCACHE_LIB=$(LIBDIR)/libsmartcache.so scripts/with-redis.sh $(VENV)/bin/pytest -q bindings/python/tests; \
	fi

test-go:
	@if [ -d bindings/go ]; then cd bindings/go && \
	  CGO_CFLAGS="-I$(CURDIR)/include" CGO_LDFLAGS="-L$(LIBDIR) -lsmartcache -Wl,-rpath,$(LIBDIR)" \
	  go vet ./... && CGO_CFLAGS="-I$(CURDIR)/include" CGO_LDFLAGS="-L$(LIBDIR) -lsmartcache -Wl,-rpath,$(LIBDIR)" \
	  $(CURDIR)/scripts/with-redis.sh go test -race -count=1 ./...; fi

# The Python wheel: the library make lib built (stripped of debug info by setup.py), in a
# py3-none wheel that setup.py has auditwheel retag manylinux after checking its system
# dependencies (hiredis and lz4 are linked in statically: the .so needs only libc and
# libgcc_s); auditwheel show prints the verdict.
WHEEL_DIR := $(BUILD)/wheel
WHEEL_TOOLS := PATH=$(VENV)/bin:$$PATH
wheel: deps lib
	@rm -rf $(WHEEL_DIR) bindings/python/build
	SMARTCACHE_PREBUILT_LIB=$(LIBDIR)/libsmartcache.so.$(VERSION) $(WHEEL_TOOLS) \
	  $(VENV)/bin/python -m build --no-isolation --wheel --outdir $(WHEEL_DIR) bindings/python
	$(WHEEL_TOOLS) auditwheel show $(WHEEL_DIR)/smartcache-*manylinux*.whl
	@size=$$(stat -c %s $(WHEEL_DIR)/smartcache-*manylinux*.whl); echo "wheel: $$size bytes"; \
	  [ $$size -lt 5242880 ] || { echo "the wheel is over 5 MiB"; exit 1; }

# The wheel installed into a fresh venv outside the checkout passes the Python suite there.
test-wheel: wheel
	scripts/with-redis.sh scripts/test-wheel.sh $(WHEEL_DIR)/smartcache-*manylinux*.whl

# The sdist: the Python package plus the crate's sources under rust/ (built with cargo).
sdist: deps
	@rm -rf $(BUILD)/sdist bindings/python/build
	$(VENV)/bin/python -m build --no-isolation --sdist --outdir $(BUILD)/sdist bindings/python

# A wheel built from the sdist alone, in a directory of its own (a full cargo build of the
# crate, so not part of make test), then the wheel test against it. Its cargo target directory
# is kept in build/ so that a second run is incremental.
sdist-check: sdist
	@rm -rf $(BUILD)/sdist-check && mkdir -p $(BUILD)/sdist-check
	tar -xzf $(BUILD)/sdist/smartcache-$(VERSION).tar.gz -C $(BUILD)/sdist-check
	cd $(BUILD)/sdist-check/smartcache-$(VERSION) && env -u SMARTCACHE_PREBUILT_LIB \
	  CARGO_TARGET_DIR=$(BUILD)/sdist-target $(WHEEL_TOOLS) $(VENV)/bin/python -m build \
	  --no-isolation --wheel --outdir $(BUILD)/sdist-check .
	scripts/with-redis.sh scripts/test-wheel.sh $(BUILD)/sdist-check/smartcache-*manylinux*.whl

# Values every language reads (docs/value-format.md): Python, C and Go processes write and
# read each other's JSON-tagged and raw values through a shared disk file and a private Redis.
test-interop: lib
	SMARTCACHE_LIB=$(LIBDIR)/libsmartcache.so SMARTCACHE_LIBDIR=$(LIBDIR) PYTHONPATH=$(CURDIR)/bindings/python \
	  scripts/with-redis.sh $(VENV)/bin/pytest -q -p no:cacheprovider tests/interop

# Every example under examples/ (C, Go, Python); the Redis ones use the private redis-server.
test-examples:
	@if [ -x examples/run-all.sh ]; then scripts/with-redis.sh examples/run-all.sh; fi

# Go binding benchmarks: Get/GetPinned/Set beside a map under sync.RWMutex and the bare cgo
# call, in one run (docs/BENCHMARKS-go.md). BENCHTIME=2s for steadier figures.
BENCHTIME ?= 1s
.PHONY: bench-go
bench-go: lib
	cd bindings/go && \
	  CGO_CFLAGS="-I$(CURDIR)/include" CGO_LDFLAGS="-L$(LIBDIR) -lsmartcache -Wl,-rpath,$(LIBDIR)" \
	  go test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count 5 .

# The main job on embedded defaults (memory + disk, no Redis).
demo: lib
	@mkdir -p $(BUILD)/demo
	$(CC) -std=c11 -O2 -Wall -Wextra -Iinclude examples/c/demo.c -o $(BUILD)/demo/demo \
	  -L$(LIBDIR) -lsmartcache -Wl,-rpath,$(LIBDIR)
	@rm -rf $(BUILD)/demo-cache
	@echo "--- first run: computes, stores in memory and on disk"
	$(BUILD)/demo/demo $(BUILD)/demo-cache
	@echo "--- second run, a new process: served from the disk tier"
	$(BUILD)/demo/demo $(BUILD)/demo-cache

bench:
	scripts/with-redis.sh $(CARGO) bench

install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(LIBDIR)/libsmartcache.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libsmartcache.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libsmartcache.so.$(MAJOR)
	ln -sf libsmartcache.so.$(MAJOR) $(DESTDIR)$(PREFIX)/lib/libsmartcache.so
	install -m 0644 $(LIBDIR)/libsmartcache.a $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 include/smartcache.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@STATIC_LIBS@|$(STATIC_LIBS)|g' \
	  smartcache.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/smartcache.pc

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
