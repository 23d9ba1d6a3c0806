# Thin wrapper: the build is CMake's. `make demo` and `make test` are the
# README's quick start and must work on a fresh Debian 12 machine.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
# Tests in flight: most integration tests wait (on a server, a timeout, a
# child) more than they compute, so twice the cores keeps both busy; the
# few that saturate the CPU count as two (PROCESSORS in tests/CMakeLists.txt).
TEST_JOBS  ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) * 2 )))
# Size of the synthetic weights shard in the demo registry.
DEMO_SHARD_MIB ?= 256

.PHONY: all deps test-deps build build-asan demo test bench clean

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

demo: build
	bash runbooks/tinylm/make-registry.sh $(BUILD)/demo/registry $(DEMO_SHARD_MIB) $(BUILD)
	$(BUILD)/rehydra drill runbooks/tinylm-local.json --var registry=$(abspath $(BUILD))/demo/registry

test: test-deps build build-asan
	cd $(BUILD) && ctest -j $(TEST_JOBS) --output-on-failure
	cd $(ASAN_BUILD) && ctest -j $(TEST_JOBS) --output-on-failure -LE once

# The goals table (tests/bench/goals.sh): rehydra, its peer or the limit,
# and the ratio, for every measure in one run. BENCH_QUICK=1 for a smoke run;
# sizes and BENCH_ONLY as goals.sh says. engine.sh, audit.sh, sync.sh and
# sftp.sh (the SSH cipher/MAC ranking) run alone for more detail.
bench: build
	bash tests/bench/goals.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
