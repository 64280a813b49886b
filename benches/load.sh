#!/usr/bin/env bash
# Load benchmark: Aralez against nginx and HAProxy on the same backends, same route, same
# pinning (proxy on CPU 0; backends and load tool on CPU 1), alternating runs so that drift
# cancels out. Prints a table and writes it to benches/results/latest.md.
#
#   benches/load.sh                 (or: make bench-load)
#   DURATION=20 ROUNDS=3 CONNECTIONS=300 benches/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-300}

. benches/lib.sh
need wrk wrk
need nginx nginx
want haproxy haproxy
need taskset util-linux

# pingora_baseline: a minimal Pingora proxy with default settings, to tell Pingora's own cost
# from Aralez's (its row is `pingora-defaults`); hyper_baseline: the same proxy on hyper and
# tokio without Pingora, to tell Pingora's cost from the async stack's (`hyper-baseline`).
cargo build --release --bin aralez --example pingora_baseline --example hyper_baseline

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
render_peers backends.nginx.conf nginx.conf haproxy.cfg aralez-main.yaml aralez-upstreams.yaml

start_backends

peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

PEERS="aralez pingora-defaults hyper-baseline"
command -v nginx >/dev/null && PEERS="$PEERS nginx"
command -v haproxy >/dev/null && PEERS="$PEERS haproxy"
HZ=$(getconf CLK_TCK)
: > "$WORK/runs"
for round in $(seq "$ROUNDS"); do
    for proxy in $PEERS; do
        start_proxy "$proxy"
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -s benches/report.lua "http://127.0.0.1:$PORT/" >/dev/null
        before=$(cpu_ticks "$PID")
        line=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s benches/report.lua "http://127.0.0.1:$PORT/" | grep '^RESULT')
        after=$(cpu_ticks "$PID")
        rss=$(peak_rss_kib "$PID")
        echo "$proxy $line cpu_ticks=$((after - before)) rss_kib=$rss" | tee -a "$WORK/runs"
        stop_proxy
    done
done

mkdir -p benches/results
python3 - "$WORK/runs" "$HZ" "$DURATION" "$CONNECTIONS" <<'PY' | tee benches/results/latest.md
import collections, statistics, sys, platform, subprocess
runs, hz, duration, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = collections.defaultdict(list)
for line in open(runs):
    name, _, *fields = line.split()
    kv = dict(f.split("=") for f in fields)
    data[name].append({k: float(v) for k, v in kv.items()})
def med(name, key): return statistics.median(r[key] for r in data[name])
rows = {}
for name in data:
    reqs = med(name, "requests"); secs = med(name, "duration_us") / 1e6
    rows[name] = dict(rps=reqs / secs, p50=med(name, "p50_us") / 1000, p99=med(name, "p99_us") / 1000,
                      p999=med(name, "p999_us") / 1000, errors=int(sum(r["errors"] for r in data[name])),
                      rss=max(r["rss_kib"] for r in data[name]) / 1024,
                      cpu=med(name, "cpu_ticks") / hz / reqs * 100000)
base = rows.get("nginx")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print(f"Machine: {cpu}, {platform.machine()}; proxy pinned to one core; wrk -c{conns}, {duration} s per run, median of {len(next(iter(data.values())))} alternating runs\n")
print("| proxy | requests/s | vs nginx | p50 ms | p99 ms | p99.9 ms | errors | peak RSS MiB | CPU s / 100k req |")
print("|---|---|---|---|---|---|---|---|---|")
for name, r in rows.items():
    ratio = f"{r['rps'] / base['rps']:.2f}x" if base else "-"
    print(f"| {name} | {r['rps']:.0f} | {ratio} | {r['p50']:.2f} | {r['p99']:.2f} | {r['p999']:.2f} | {r['errors']} | {r['rss']:.1f} | {r['cpu']:.2f} |")
if base:
    print("\nEach as a ratio to nginx (requests/s: above 1 is better; the others: below 1 is better):\n")
    print("| proxy | requests/s | p50 | p99 | p99.9 | peak RSS | CPU / 100k req |")
    print("|---|---|---|---|---|---|---|")
    keys = ("rps", "p50", "p99", "p999", "rss", "cpu")
    for name, r in rows.items():
        cells = " | ".join(f"{r[k] / base[k]:.2f}x" if base[k] else "-" for k in keys)
        print(f"| {name} | {cells} |")
PY
