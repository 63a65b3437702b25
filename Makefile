# Thin wrapper around CMake.  `make run` and `make test` are all a new
# machine needs: both install missing Debian packages first (scripts/deps.sh).
BUILD ?= build
JOBS ?= $(shell nproc)
CONF ?=
# In CI (.ci/run: CI=true) every build treats warnings as errors.
CMAKE_FLAGS := $(if $(filter-out 0 false no,$(CI)),-DSLUICE_WERROR=ON)

.PHONY: all build install deps run test unit integration check-layers check-faults soak check-sanitize fuzz-build fuzz check-fuzz bench clean format

all: build

deps:
	@bash scripts/deps.sh

# A configure that fails leaves no cache behind, so the next make configures again.
$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null || \
	    { rm -f $(BUILD)/CMakeCache.txt; exit 1; }

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The programs, <sluice/sink.h> and sluice-sink.pc under PREFIX (staged
# under DESTDIR when set): docs/writing-sinks.md, "Building out of the tree".
PREFIX ?= /usr/local
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

run: deps build var/tls/cert.pem
	@bash scripts/run.sh $(CONF)

# A self-signed pair for `make run`'s STARTTLS and implicit TLS (not for production).
var/tls/cert.pem:
	@mkdir -p var/tls
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=localhost \
	    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	    -keyout var/tls/key.pem -out var/tls/cert.pem 2>/dev/null
	@chmod 600 var/tls/key.pem

unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

integration: build
	bash tests/integration/run.sh $(BUILD)

# The include floors, file lengths, core/ rooms and library cycles
# (scripts/check-layers.py; docs/architecture.md).
check-layers:
	/usr/bin/python3 scripts/check-layers.py

test: deps build check-layers
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	bash tests/integration/run.sh $(BUILD)

# Power loss and crash loops (docs/faults.md): FAULT_CUTS cut points of the
# LD_PRELOAD power-loss shim and FAULT_ROUNDS rounds of kill -9 under ingest
# and delivery load (`make test` runs 10 and 5).
FAULT_CUTS ?= 200
FAULT_ROUNDS ?= 20
check-faults: deps build
	SLUICE_POWERCUT_CUTS=$(FAULT_CUTS) SLUICE_CRASH_ROUNDS=$(FAULT_ROUNDS) SLUICE_TEST_TIMEOUT=1200 \
	    bash tests/integration/run.sh $(BUILD) -s tests/integration/test_powercut.py \
	    tests/integration/test_delivery_crash.py::test_crash_loop_ingest_and_delivery

# The soak (tests/soak/soak.py, docs/faults.md): SOAK_MINUTES at 70% of the
# peak the clients reach, TLS, AUTH, sinks, a counting next hop that
# temp-fails some; RSS and fds printed every minute, checked flat at the end,
# every acknowledged message delivered exactly once.  One load test at a
# time on the machine (the benchmark lock).  `make test` runs a 1-minute form.
SOAK_MINUTES ?= 10
soak: deps build
	flock /tmp/sluice-bench.lock /usr/bin/python3 tests/soak/soak.py $(BUILD) --minutes $(SOAK_MINUTES)

# ASan+UBSan over every unit test, TSan over sched/ (a separate build each).
check-sanitize: deps
	cmake -S . -B build-asan -DSLUICE_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS) >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j $(JOBS)
	# the queue manager and the TLS paths with the real daemon built with ASan+UBSan (a
	# report makes sluiced exit 23, which the tests check on stop)
	ASAN_OPTIONS=detect_leaks=1:exitcode=23 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    bash tests/integration/run.sh build-asan tests/integration/test_delivery.py \
	    tests/integration/test_bounce.py tests/integration/test_mx.py \
	    tests/integration/test_maildir.py tests/integration/test_outbound_tls.py \
	    tests/integration/test_relay_chunking.py tests/integration/test_delivery_crash.py \
	    tests/integration/test_tls.py tests/integration/test_auth.py \
	    tests/integration/test_sink_services.py tests/integration/test_sink_faults.py
	cmake -S . -B build-tsan -DSLUICE_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS) >/dev/null
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -L tsan -j $(JOBS)

# libFuzzer harnesses (docs/fuzzing.md), built with clang into build-fuzz.
# `make fuzz` runs each for FUZZ_SECONDS; CI runs each for CI_FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
CI_FUZZ_SECONDS ?= 12
fuzz-build: deps
	cmake -S . -B build-fuzz -DSLUICE_FUZZ=ON -DCMAKE_C_COMPILER=clang \
	    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || { rm -f build-fuzz/CMakeCache.txt; exit 1; }
	cmake --build build-fuzz -j $(JOBS) --target fuzz

fuzz: fuzz-build
	bash tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

check-fuzz: fuzz-build
	bash tests/fuzz/run.sh build-fuzz $(CI_FUZZ_SECONDS) $(FUZZ_TARGETS)

bench: deps build
	bash bench/ingest.sh
	bash bench/relay.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
