# Thin wrapper: the build is CMake's. `make demo` and `make test` are the
# README's quick start and must work on a fresh Debian 12 machine.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
# libFuzzer needs clang; `make fuzz` runs each target this long (seconds).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 300
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
# Tests in flight: most integration tests wait (on a server, a timeout, a
# child) more than they compute, so twice the cores keeps both busy; the
# longest start first (COST in tests/CMakeLists.txt).
TEST_JOBS  ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) * 2 )))
# Size of the synthetic weights shard in the demo registry.
DEMO_SHARD_MIB ?= 256

.PHONY: all deps test-deps build build-asan build-fuzz demo test fuzz bench clean

all: build

deps:
	@bash .ci/install-deps

test-deps: deps
	@bash tests/tools/install.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DREHYDRA_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# The fuzz targets (tests/fuzz) in a clang build of their own. clang and
# libFuzzer come from .ci/install-deps; without them this fails, saying so.
build-fuzz: deps
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { echo "fuzz: $(FUZZ_CC) not found: the fuzz" \
		"targets need clang and libFuzzer (make deps installs them)" >&2; exit 2; }
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=$(FUZZ_CC) \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DREHYDRA_FUZZ=ON >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers

demo: build
	bash runbooks/tinylm/make-registry.sh $(BUILD)/demo/registry $(DEMO_SHARD_MIB) $(BUILD)
	$(BUILD)/rehydra drill runbooks/tinylm-local.json --var registry=$(abspath $(BUILD))/demo/registry

test: test-deps build build-asan build-fuzz
	cd $(BUILD) && ctest -j $(TEST_JOBS) --output-on-failure
	cd $(ASAN_BUILD) && ctest -j $(TEST_JOBS) --output-on-failure -LE once
	cd $(FUZZ_BUILD) && ctest -j $(JOBS) --output-on-failure

# Each fuzz target for FUZZ_SECONDS on a corpus kept in $(FUZZ_BUILD)/fuzz
# (it grows from run to run); a crash stops it, keeping the input there.
fuzz: build-fuzz
	@for src in tests/fuzz/fuzz_*.c; do \
		t=$$(basename $$src .c); t=$${t#fuzz_}; \
		[ -x $(FUZZ_BUILD)/tests/fuzz/fuzz_$$t ] || continue; \
		bash tests/fuzz/run.sh $(FUZZ_BUILD)/tests/fuzz/fuzz_$$t $$t $(FUZZ_SECONDS) \
			$(abspath $(FUZZ_BUILD))/fuzz || exit 1; \
	done

# The goals table (tests/bench/goals.sh): rehydra, its peer or the limit,
# and the ratio, for every measure in one run. BENCH_QUICK=1 for a smoke run;
# sizes and BENCH_ONLY as goals.sh says. engine.sh, audit.sh, sync.sh and
# sftp.sh (the SSH cipher/MAC ranking) run alone for more detail.
bench: build
	bash tests/bench/goals.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
