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
,           := ,

C_TESTS     := $(patsubst c_tests/%.c,%,$(wildcard c_tests/test_*.c))

.PHONY: all lib deps test test-rust test-c test-c-memcheck check-generated lint demo bench bench-memory \
        install clean test-python test-go test-examples test-install test-interop \
        wheel sdist sdist-check test-wheel test-symbols fuzz fuzz-quick soak soak-quick \
        test-interleavings

# In-repository pkg-config file (header in include/, library in build/lib, with an rpath), so
# the Go binding builds here exactly as it does against an install: through pkg-config.
PCDIR       := $(BUILD)/pkgconfig
# write_pc(output, prefix, libdir, includedir, rpath flags): fills in smartcache.pc.in.
write_pc = sed -e 's|@PREFIX@|$(2)|g' -e 's|@LIBDIR@|$(3)|g' -e 's|@INCLUDEDIR@|$(4)|g' \
  -e 's|@RPATH@|$(5)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@STATIC_LIBS@|$(STATIC_LIBS)|g' \
  smartcache.pc.in > $(1)

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
	@# The archive as one object whose only globals are the sz_* API: the bundled LZ4, XXH,
	@# hiredis/sds and jemalloc names become local, so they cannot clash with an application's.
	scripts/localize-static-symbols.sh include/smartcache.h $(RELEASE)/libsmartcache.a \
	  $(LIBDIR)/libsmartcache.a
	@mkdir -p $(PCDIR)
	@$(call write_pc,$(PCDIR)/smartcache.pc,$(CURDIR),$(LIBDIR),$(CURDIR)/include,-Wl$(,)-rpath$(,)$(LIBDIR) )

deps:
	@scripts/ensure-deps.sh

# Every suite. Installs what a fresh Debian machine lacks, and starts its own redis-server.
test: deps lib check-generated lint test-rust test-interleavings test-c test-c-memcheck test-symbols fuzz-quick \
      soak-quick test-python test-wheel test-go test-examples test-interop test-install
	@echo "make test: all suites passed"

test-rust:
	scripts/with-redis.sh $(CARGO) test --release --lib --tests
	$(CARGO) test --release --doc

# The memory tier's pin counts, the write log and the copy fence under the shuttle schedule
# checker (tests/interleavings.rs): the real code over shuttle's atomics and locks, through
# crate::sync, in thousands of schedules per model. A build of its own (the `shuttle` feature);
# SHUTTLE_ITERATIONS (4000) sets the schedules per model and scheduler.
test-interleavings:
	$(CARGO) test --release --features shuttle --test interleavings

# Each C test built twice: against the shared library and against the static one.
$(BUILD)/c/%.so.bin: c_tests/%.c $(wildcard c_tests/*.h) include/smartcache.h lib
	@mkdir -p $(BUILD)/c
	$(CC) $(CFLAGS_TEST) $< -o $@ -L$(LIBDIR) -lsmartcache -Wl,-rpath,$(LIBDIR)

$(BUILD)/c/%.a.bin: c_tests/%.c $(wildcard c_tests/*.h) include/smartcache.h lib
	@mkdir -p $(BUILD)/c
	$(CC) $(CFLAGS_TEST) $< -o $@ $(LIBDIR)/libsmartcache.a $(STATIC_LIBS)

test-c: $(foreach t,$(C_TESTS),$(BUILD)/c/$(t).so.bin $(BUILD)/c/$(t).a.bin)
	@set -e; for t in $^; do echo "== $$t"; scripts/with-redis.sh $$t; done

# The C suites again under valgrind's memcheck: leaks, invalid reads and writes fail the run.
test-c-memcheck: $(foreach t,$(C_TESTS),$(BUILD)/c/$(t).so.bin)
	@set -e; for t in $^; do echo "== memcheck $$t"; \
	  SMARTCACHE_QUICK=1 SMARTCACHE_NO_TSC=1 scripts/with-redis.sh valgrind -q --error-exitcode=3 \
	    --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite $$t; done

# Only the sz_* API is global in the .so and the .a; and an application linking the .a with the
# system liblz4 gets the system's LZ4 while the cache keeps compressing with its own.
test-symbols: lib $(BUILD)/c/static_system_lz4.a.bin $(BUILD)/c/static_system_lz4.so.bin
	scripts/check-exported-symbols.sh include/smartcache.h $(LIBDIR)/libsmartcache.so \
	  $(LIBDIR)/libsmartcache.a
	$(BUILD)/c/static_system_lz4.a.bin
	$(BUILD)/c/static_system_lz4.so.bin

$(BUILD)/c/static_system_lz4.a.bin: c_tests/static_system_lz4.c c_tests/check.h include/smartcache.h lib
	@mkdir -p $(BUILD)/c
	$(CC) $(CFLAGS_TEST) $< -o $@ $(LIBDIR)/libsmartcache.a -llz4 $(STATIC_LIBS)

$(BUILD)/c/static_system_lz4.so.bin: c_tests/static_system_lz4.c c_tests/check.h include/smartcache.h lib
	@mkdir -p $(BUILD)/c
	$(CC) $(CFLAGS_TEST) $< -o $@ -L$(LIBDIR) -lsmartcache -llz4 -Wl,-rpath,$(LIBDIR)

# Coverage-guided fuzzing (fuzz/, libFuzzer on the stable toolchain; see docs/fuzzing.md):
# every target for FUZZ_SECONDS each. fuzz-quick, part of `make test`, gives each a short
# bounded run from the committed seeds and fails on any crash.
FUZZ_SECONDS       ?= 300
FUZZ_QUICK_SECONDS ?= 10
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-quick:
	scripts/fuzz.sh $(FUZZ_QUICK_SECONDS)

# The consistency soak (tests/soak): worker processes doing random operations on all three
# tiers while Redis is paused, killed and restarted and writers are SIGKILLed; every hit is
# checked against the logged history, and any replaced value served fails it
# (docs/coherence.md, "How it is checked"). `make soak` runs SOAK_SECONDS (300) with every
# fault; soak-quick, part of `make test`, runs SOAK_QUICK_SECONDS (45) with every fault too
# (about a minute in all, with its start-up and the check).
SOAK_SECONDS       ?= 300
SOAK_QUICK_SECONDS ?= 45
SOAK_TEST          := $(CARGO) test --release --test soak -- --ignored --nocapture

soak:
	SOAK_SECONDS=$(SOAK_SECONDS) $(SOAK_TEST)

soak-quick:
	SOAK_SECONDS=$(SOAK_QUICK_SECONDS) $(SOAK_TEST)

# The committed header (and Python declarations) must be what the build generates.
check-generated: lib
	@if [ -f scripts/gen_ffi.py ]; then $(VENV)/bin/python scripts/gen_ffi.py; fi
	@git diff --exit-code -- include/ bindings/python/smartcache/_native.py \
	  bindings/python/smartcache/_cdef.h || \
	  { echo "generated files are stale: commit the regenerated include/smartcache.h / _native.py / _cdef.h"; exit 1; }
	@# The Go module carries copies of the licence texts (a module zip holds no symlinks).
	@cmp -s LICENSE-MIT bindings/go/LICENSE-MIT && cmp -s LICENSE-APACHE bindings/go/LICENSE-APACHE || \
	  { echo "bindings/go/LICENSE-* differ from the repository's LICENSE-*: copy them again"; exit 1; }

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings

# The editable install compiles the cffi backend's module in place (gitignored). The whole suite
# runs on it (forced: a module that failed to build fails the run instead of falling back), then
# again on the ctypes fallback the suites
# that cross into the library in their own ways (calls, buffers, threads, closing, async,
# fork); the rest (configuration, middleware, servers, decorator rules) is the same Python
# code above either backend. test-wheel runs the whole suite once more, from the wheel.
PY_BACKEND_SUITES := test_native test_cache test_receive_buffers test_close_races \
  test_reentrant_unpickling test_threads test_async_api test_async_queue test_many test_tiers \
  test_fork \
  test_backend
test-python:
	@if [ -d bindings/python ]; then \
	  $(VENV)/bin/pip install -q --disable-pip-version-check -e bindings/python && \
	  SMARTCACHE_LIB=$(LIBDIR)/libsmartcache.so SMARTCACHE_BACKEND=cffi scripts/with-redis.sh \
	    $(VENV)/bin/pytest -q bindings/python/tests && \
	  SMARTCACHE_LIB=$(LIBDIR)/libsmartcache.so SMARTCACHE_BACKEND=ctypes scripts/with-redis.sh \
	    $(VENV)/bin/pytest -q $(patsubst %,bindings/python/tests/%.py,$(PY_BACKEND_SUITES)); \
	fi

# The Go binding finds the library through pkg-config (build/pkgconfig/smartcache.pc here).
test-go: lib
	@if [ -d bindings/go ]; then cd bindings/go && export PKG_CONFIG_PATH=$(PCDIR) && \
	  go vet ./... && $(CURDIR)/scripts/with-redis.sh go test -race -count=1 ./...; fi

# A C program and a Go module outside the checkout, built against `make install PREFIX=<tmp>`
# through pkg-config only (C shared and static, Go with no CGO_* flags), and run.
test-install: lib
	scripts/test-install.sh

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
	cd bindings/go && PKG_CONFIG_PATH=$(PCDIR) \
	  go test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count 5 .

# The main job on embedded defaults (memory + disk, no Redis). Builds only what the demo needs,
# so a fresh clone runs it quickly: the library alone (no tests, benches or dev-dependencies;
# the committed header instead of regenerating it with cbindgen) in the `demo` profile (release
# code without LTO), copied under its soname into build/demo/lib.
DEMO_LIB    := $(BUILD)/demo/lib
demo:
	$(CARGO) build --profile demo --lib --no-default-features
	@mkdir -p $(DEMO_LIB)
	cp -f $(CURDIR)/target/demo/libsmartcache.so $(DEMO_LIB)/.libsmartcache.so.new
	mv -f $(DEMO_LIB)/.libsmartcache.so.new $(DEMO_LIB)/libsmartcache.so.$(MAJOR)
	ln -sf libsmartcache.so.$(MAJOR) $(DEMO_LIB)/libsmartcache.so
	$(CC) -std=c11 -O2 -Wall -Wextra -Iinclude examples/c/demo.c -o $(BUILD)/demo/demo \
	  -L$(DEMO_LIB) -lsmartcache -Wl,-rpath,$(DEMO_LIB)
	@rm -rf $(BUILD)/demo-cache
	@echo "--- first run: computes, stores in memory and on disk"
	$(BUILD)/demo/demo $(BUILD)/demo-cache
	@echo "--- second run, a new process: served from the disk tier"
	$(BUILD)/demo/demo $(BUILD)/demo-cache
	@echo "--- the disk tier's files take (du):"
	@du -sh $(BUILD)/demo-cache

bench: lib
	scripts/with-redis.sh $(CARGO) bench

# Bytes per entry by RSS at 1,000,000 entries, beside quick_cache and moka (a few seconds).
bench-memory:
	$(CARGO) bench --bench memory_rss

# What an application pays through the shared library (docs/BENCHMARKS.md, "Through
# libsmartcache.so"): the C program benches/c/so_get.c linked against build/lib's .so; the Rust
# bench benches/so_get.rs loading the same .so beside quick_cache and moka in one run (ns per
# get at 1 and 2 threads, replacing sets); then instructions and cache misses per operation
# under callgrind. SO_GET_GETS gets per thread (the issue's 1,500,000: ~2 minutes in all).
SO_GET_GETS          ?= 1500000
SO_GET_CALLGRIND_OPS ?= 200000
SO_GET_C             := $(BUILD)/bench/so_get
.PHONY: bench-so
bench-so: lib
	@mkdir -p $(BUILD)/bench
	$(CC) -std=c11 -O2 -Wall -Wextra -Iinclude -pthread benches/c/so_get.c -o $(SO_GET_C) \
	  -L$(LIBDIR) -lsmartcache -Wl,-rpath,$(LIBDIR)
	$(SO_GET_C) $(SO_GET_GETS)
	$(CARGO) bench --bench so_get --no-run
	SMARTCACHE_LIB=$(LIBDIR)/libsmartcache.so SO_GET_GETS=$(SO_GET_GETS) $(CARGO) bench --bench so_get
	scripts/so-get-callgrind.sh $(SO_GET_C) \
	  "$$($(CARGO) bench --bench so_get --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))/\1/p')" \
	  $(SO_GET_CALLGRIND_OPS)

install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(LIBDIR)/libsmartcache.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libsmartcache.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libsmartcache.so.$(MAJOR)
	ln -sf libsmartcache.so.$(MAJOR) $(DESTDIR)$(PREFIX)/lib/libsmartcache.so
	install -m 0644 $(LIBDIR)/libsmartcache.a $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 include/smartcache.h $(DESTDIR)$(PREFIX)/include/
	$(call write_pc,$(DESTDIR)$(PREFIX)/lib/pkgconfig/smartcache.pc,$(PREFIX),$${prefix}/lib,$${prefix}/include,)
	@# The dynamic loader's cache must learn the new soname, or programs linked against it
	@# build but fail to start (a prefix the loader does not search needs LD_LIBRARY_PATH or an
	@# rpath; see the guide). Not when staging into DESTDIR: the package manager does it.
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
	  ldconfig; fi

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
