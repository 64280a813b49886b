#!/usr/bin/env bash
# Instructions (callgrind) to parse and validate the 10,000-host routing document that
# extras.sh pushes, as YAML and as JSON, and to proxy one request on load.sh's route. Unlike
# times, instruction counts do not move with what else the machine is doing, so two builds
# can be compared in one run each.
# Each parse figure is (instructions of 3 parses - instructions of 1 parse) / 2: start-up and
# reading the file cancel out. The request figure is every instruction the proxy process ran
# (user space: Pingora, hyper, tokio, Aralez, the allocator) while wrk sent it requests for
# 10 s, over the requests wrk counted: callgrind's counters are zeroed after a warm-up and
# dumped at the end. Writes benches/results/instructions.md.
#
#   benches/instructions.sh
#   ARALEZ_BIN=/tmp/aralez-before benches/instructions.sh   (the request figure of another build)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
need valgrind valgrind
need python3 python3

need wrk wrk
need nginx nginx
need taskset util-linux

cargo build --release --example parse_cost --bin aralez
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
push_documents "$WORK"

# instructions FILE N: instructions of a whole `parse_cost FILE N` run.
instructions() {
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
        ./target/release/examples/parse_cost "$1" "$2" 2>/dev/null
    awk '/^summary:/ {print $2}' "$WORK/cg.out"
}

# request_instructions: instructions per request of Aralez on load.sh's route, under callgrind.
request_instructions() {
    render_peers backends.nginx.conf aralez-main.yaml aralez-upstreams.yaml
    start_backends
    taskset -c "$PROXY_CPU" valgrind --tool=callgrind --callgrind-out-file="$WORK/proxy.cg" \
        "${ARALEZ_BIN:-./target/release/aralez}" -c "$WORK/aralez-main.yaml" 2>"$WORK/valgrind.err" &
    local proxy=$!
    # Under valgrind the proxy starts tens of times slower.
    wait_port 8080 30
    taskset -c "$LOAD_CPU" wrk -t1 -c50 -d3s -s benches/report.lua http://127.0.0.1:8080/ >/dev/null
    callgrind_control -z "$proxy" >/dev/null 2>&1
    local line requests
    line=$(taskset -c "$LOAD_CPU" wrk -t1 -c50 -d10s -s benches/report.lua http://127.0.0.1:8080/ | grep '^RESULT')
    callgrind_control -d "$proxy" >/dev/null 2>&1
    requests=$(echo "$line" | sed 's/.*requests=\([0-9]*\).*/\1/')
    kill -INT "$proxy"; wait "$proxy" 2>/dev/null || true
    kill "$(cat "$WORK/backends.pid" 2>/dev/null)" 2>/dev/null || true
    # The dump taken on request (its file name ends in .1) holds the measured span.
    awk -v n="$requests" '/^(summary|totals):/ {print int($2 / n); exit}' "$WORK"/proxy.cg.*1
}

out=benches/results/instructions.md
{
    echo "Instructions to parse and validate the 10,000-host document, and to proxy one request (callgrind; commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
    echo
    echo "| document | instructions per parse |"
    echo "|---|---|"
    for fmt in yaml json; do
        one=$(instructions "$WORK/big.$fmt" 1)
        three=$(instructions "$WORK/big.$fmt" 3)
        echo "| $fmt ($(wc -c < "$WORK/big.$fmt") bytes) | $(( (three - one) / 2 )) |"
    done
    echo
    echo "| proxied request (load.sh's route, wrk -c50) | instructions per request |"
    echo "|---|---|"
    echo "| aralez | $(request_instructions) |"
} | tee "$out"
