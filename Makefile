# Aralez: the two commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo
# Build tools pingora needs: cmake (zlib-ng), a C compiler, perl and make (vendored OpenSSL).
BUILD_TOOLS := cmake pkg-config cc c++ perl make
APT_PACKAGES := cmake pkg-config gcc g++ make perl

.PHONY: run test test-parity deps build bench bench-load profile soak ci fmt clippy

## Install missing build prerequisites (apt-get as root; otherwise print the command).
deps:
	@missing=""; \
	for tool in $(BUILD_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "missing build tools:$$missing"; \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	  else \
	    echo "install them with: sudo apt-get install -y $(APT_PACKAGES)"; exit 1; \
	  fi; \
	fi

## Release build of the proxy and the demo backend.
build: deps
	$(CARGO) build --release --bin aralez --example demo_backend

## Start the proxy on etc/ with a demo backend on 127.0.0.1:8000 and :8001.
## Then: curl -H 'Host: localhost' http://127.0.0.1:6193/
run: build
	@./target/release/examples/demo_backend 8000 8001 & backend=$$!; \
	trap 'kill $$backend 2>/dev/null' EXIT INT TERM; \
	./target/release/aralez -c etc/main.yaml

## Every test: unit, integration (real binary, real sockets) and doc tests.
test: deps
	$(CARGO) test --all-targets
	$(CARGO) test --doc

## The parity run: every integration test again with the fast lane off (CI runs it after
## `make test`), so that both engines are held to the same answers.
test-parity: deps
	ARALEZ_TEST_FAST_LANE=off $(CARGO) test --tests

## Criterion micro-benchmarks, instruction counts of a 10,000-host parse, the load
## benchmarks against nginx and HAProxy, then where a request's CPU time goes (perf).
bench: deps
	$(CARGO) bench --bench routing
	benches/instructions.sh
	benches/load.sh
	benches/extras.sh
	benches/profile.sh

## Only the load benchmark (DURATION, ROUNDS, CONNECTIONS may be set).
bench-load: deps
	benches/load.sh

## Only the CPU profile per request: Aralez, bare Pingora and nginx (benches/results/profile.md).
profile: deps
	benches/profile.sh

## Soak: HTTP/1.1, h2 and WebSocket clients, a config push every second, a backend killed
## and restarted every 10 s (SOAK_MINUTES, default 10). Report in benches/results/soak.md.
soak: deps
	$(CARGO) build --release --bin aralez --example demo_backend --example soak
	./target/release/examples/soak

fmt:
	$(CARGO) fmt --all -- --check

clippy: deps
	$(CARGO) clippy --all-targets -- -D warnings

ci:
	.ci/run
