#!/usr/bin/env bash
# A/B of two (or more) Aralez builds on load.sh's setup: the same backends, route, pinning and
# wrk load, the builds run in turn (A B A B ...) so that the machine's drift falls on each
# alike. Prints every run and, per build, the median requests/s and p99. For an optimisation,
# pair it with `ARALEZ_BIN=... benches/instructions.sh`, which does not move with the machine.
#
#   cp target/release/aralez /tmp/aralez-before   (then change, rebuild)
#   benches/ab.sh /tmp/aralez-before target/release/aralez
#   ROUNDS=7 DURATION=10 CONNECTIONS=300 benches/ab.sh A B
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-300}
if [ $# -lt 2 ]; then
    echo "usage: benches/ab.sh BINARY_A BINARY_B [BINARY...]" >&2
    exit 2
fi
for bin in "$@"; do
    [ -x "$bin" ] || { echo "ab.sh: $bin is not an executable" >&2; exit 2; }
done

. benches/lib.sh
need wrk wrk
need nginx nginx
need taskset util-linux

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
render_peers backends.nginx.conf aralez-main.yaml aralez-upstreams.yaml
start_backends

: > "$WORK/runs"
for _ in $(seq "$ROUNDS"); do
    for i in $(seq $#); do
        bin=${!i}
        ARALEZ_BIN=$bin start_proxy aralez
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -s benches/report.lua "http://127.0.0.1:$PORT/" >/dev/null
        line=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s benches/report.lua "http://127.0.0.1:$PORT/" | grep '^RESULT')
        echo "$i $bin $line" | tee -a "$WORK/runs"
        stop_proxy
    done
done

python3 - "$WORK/runs" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    index, binary, _, *fields = line.split()
    kv = {k: float(v) for k, v in (f.split("=") for f in fields)}
    runs[(int(index), binary)].append(kv)
print("| build | runs | median requests/s | median p99 ms | errors |")
print("|---|---|---|---|---|")
for (_, binary), rs in sorted(runs.items()):
    rps = statistics.median(r["requests"] / r["duration_us"] * 1e6 for r in rs)
    p99 = statistics.median(r["p99_us"] for r in rs) / 1000
    errors = int(sum(r["errors"] for r in rs))
    print(f"| {binary} | {len(rs)} | {rps:.0f} | {p99:.2f} | {errors} |")
PY
