# locust-c: two commands do everything on a fresh Debian machine.
#   make demo   set up, build, run the performance lab for 20 s: the demo shop, a master and two workers, the gate
#   make test   set up, build, run the whole test suite
# The lab's scenarios, each an exit code and a short account (locust-c lab --help):
#   make lab | smoke | baseline | stress | spike | soak | leak-test | compare   [WORKERS=2 USERS=N DURATION=30s
#   SHOP_ARGS="--search-tail-ratio 0.1" LAB_OUT=lab-results]
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEBS := libcurl4-openssl-dev libssl-dev libuv1-dev clang zlib1g-dev libbrotli-dev pkg-config prometheus
DEMO_PORT ?= 18089
WORKERS ?= 2
LAB_OUT ?= lab-results
LAB_SCENARIOS := smoke baseline stress spike soak leak-test compare
LAB = $(PY) -m locust_c lab --workers $(WORKERS) --out $(LAB_OUT) $(if $(USERS),--users $(USERS)) \
	$(if $(DURATION),--duration $(DURATION)) $(if $(SHOP_ARGS),--shop-args "$(SHOP_ARGS)")

.PHONY: all deps venv build test sanitize tsan fuzz fuzz-h1 demo engine-demo bench lint clean wheel lab $(LAB_SCENARIOS)

all: build

# Debian packages, installed only when one is missing (root is expected; sudo is used when present).
deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml setup.py | deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q --no-build-isolation -e '.[dev]'
	$(PY) -m pip install -q --no-deps 'apache-otava==0.8.0'  # locust-c history (see pyproject's "history" extra)
	touch $@

venv: $(VENV)/.installed

build: venv
	$(PY) setup.py -q build_ext --inplace

# The suite as TEST_SHARDS halves side by side (tests/conftest.py: --shard): most tests wait on sockets and child
# processes rather than on the CPU, so two shards on 2 cores take about half the time. Shard 1 prints as it goes,
# the others when they are done; `make test TEST_SHARDS=1` runs the suite in one process.
TEST_SHARDS ?= 2
test: build
	@mkdir -p build; status=0; pids=""; \
	for i in $$(seq 2 $(TEST_SHARDS)); do \
		$(PY) -m pytest -q --shard $$i/$(TEST_SHARDS) > build/test-shard-$$i.log 2>&1 & pids="$$pids $$!"; \
	done; \
	$(PY) -m pytest -q --shard 1/$(TEST_SHARDS) || status=$$?; \
	for pid in $$pids; do wait $$pid || status=1; done; \
	for i in $$(seq 2 $(TEST_SHARDS)); do echo "--- shard $$i of $(TEST_SHARDS)"; cat build/test-shard-$$i.log; done; \
	exit $$status

# The engine suites on an ASan + UBSan build (assertions on). greenlet's stack switching needs tests/asan.supp.
# The normal build is put back afterwards, whatever the outcome.
SANITIZE_SUITES := tests/test_session.py tests/test_faults.py tests/test_connect_faults.py \
	tests/test_hostile_server.py tests/test_stats_exact.py tests/test_idle_users.py tests/test_tls_http2.py \
	tests/test_streaming.py tests/test_httpuser_api.py tests/test_cookie_jar.py tests/test_transport_differential.py \
	tests/test_request_path.py
sanitize: venv
	@status=0; \
	LOCUST_C_SANITIZE=1 $(PY) setup.py -q build_ext --inplace --force || exit 1; \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so.6)" \
	ASAN_OPTIONS=detect_leaks=0:suppressions=$(CURDIR)/tests/asan.supp:fast_unwind_on_fatal=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(PY) -m pytest -q -p no:cacheprovider $(SANITIZE_SUITES) || status=$$?; \
	$(PY) setup.py -q build_ext --inplace --force; \
	[ $$status = 0 ] || exit $$status; \
	$(MAKE) --no-print-directory tsan

# The engine's queues and life cycle under ThreadSanitizer: a C-only stress test (TSan cannot follow greenlets).
ENGINE_C := csrc/loop.c csrc/buf.c csrc/sockets.c csrc/users.c csrc/curl.c csrc/decode.c csrc/stats.c csrc/tls.c csrc/stream.c \
	csrc/url.c csrc/cookies.c csrc/request.c csrc/h1.c csrc/native.c
build/engine_stress: tests/c/engine_stress.c $(ENGINE_C) csrc/locust_c.h | deps
	mkdir -p build
	gcc -std=gnu11 -Wall -g -O1 -fsanitize=thread -o $@ tests/c/engine_stress.c $(ENGINE_C) \
		$$(pkg-config --cflags --libs libcurl libssl libcrypto libuv zlib libbrotlidec) -lpthread -lm

tsan: build/engine_stress
	TSAN_OPTIONS=halt_on_error=1 build/engine_stress 20 20000

lint: venv
	$(VENV)/bin/ruff check locust_c tests bench examples

# The short lab run; the engine alone against the C test server is engine-demo.
demo: build
	$(LAB) run $(if $(DURATION),,--duration 20s)

engine-demo: build
	$(PY) examples/run_demo.py --port $(DEMO_PORT)

lab: build
	$(LAB) run

$(LAB_SCENARIOS): build
	$(LAB) $@

# wrk is the benchmark's reference for latency and the ceiling for throughput.
BENCH_DEBS := wrk
bench: build
	@$(MAKE) --no-print-directory deps DEBS="$(BENCH_DEBS)"
	$(PY) bench/run.py

clean:
	rm -rf build *.egg-info locust_c/*.so dist wheelhouse $(LAB_OUT)

# A wheel that installs without a compiler or libcurl's and libuv's development packages: auditwheel copies
# libcurl, libuv and what they need (OpenSSL too) into it and names the oldest glibc it runs on (manylinux_2_34
# from Debian bookworm). With its own OpenSSL, an ssl_context_factory context is copied option by option rather
# than shared (session.py: _shares_openssl). cibuildwheel ([tool.cibuildwheel] in pyproject.toml) builds the same
# from the manylinux images for older systems.
wheel: venv
	rm -rf dist wheelhouse
	$(PY) -m pip wheel -q --no-deps --no-build-isolation . -w dist
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m auditwheel repair -w wheelhouse dist/locust_c-*.whl
	$(PY) -m auditwheel show wheelhouse/locust_c-*.whl

# The content decoder under libFuzzer with ASan and UBSan (tests/fuzz/fuzz_decode.c); the test suite runs it for a
# few seconds from a seed corpus it writes, `make fuzz FUZZ_SECONDS=600` longer.
FUZZ_SECONDS ?= 60
build/fuzz_decode: tests/fuzz/fuzz_decode.c csrc/decode.c csrc/buf.c csrc/locust_c.h | deps
	mkdir -p build
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ \
		tests/fuzz/fuzz_decode.c csrc/decode.c csrc/buf.c $$(pkg-config --cflags --libs libcurl libuv zlib libbrotlidec)

fuzz: build/fuzz_decode
	mkdir -p build/fuzz-corpus
	build/fuzz_decode -max_total_time=$(FUZZ_SECONDS) -max_len=65536 build/fuzz-corpus

# The native transport's response parser (tests/fuzz/fuzz_h1.c): every input parsed whole and in random reads,
# which must agree. `make fuzz-h1 FUZZ_SECONDS=600` by hand; the test suite runs it for a few seconds.
build/fuzz_h1: tests/fuzz/fuzz_h1.c csrc/h1.c csrc/buf.c csrc/locust_c.h | deps
	mkdir -p build
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ \
		tests/fuzz/fuzz_h1.c csrc/h1.c csrc/buf.c $$(pkg-config --cflags libcurl libuv)

fuzz-h1: build/fuzz_h1
	mkdir -p build/fuzz-h1-corpus
	build/fuzz_h1 -max_total_time=$(FUZZ_SECONDS) -max_len=8192 build/fuzz-h1-corpus
