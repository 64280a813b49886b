#!/usr/bin/env bash
# Where a proxied request's CPU time goes, for Aralez, a bare Pingora proxy, the same proxy on
# hyper without Pingora (examples/hyper_baseline.rs) and nginx, under load.sh's load (one host,
# `/` over three nginx backends, one injected header, wrk -c300; the proxy on CPU 0, backends
# and wrk on CPU 1). perf samples each proxy's CPU (every thread,
# user and kernel; cpu-clock, as VMs rarely expose hardware counters), the samples are
# grouped by the code they ran in, and each group's share of the proxy's CPU time is turned
# into microseconds per request with the requests wrk counted. Writes
# benches/results/profile.md.
#
#   benches/profile.sh          DURATION=10 CONNECTIONS=300 benches/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-300}

. benches/lib.sh
need wrk wrk
need nginx nginx
need perf linux-perf
need taskset util-linux
need python3 python3

# perf needs the right to sample the kernel (root, or kernel.perf_event_paranoid <= 1) and,
# in containers, perf_event_open itself; without them there is nothing to measure.
if ! perf record -q -e cpu-clock:k -o /dev/null -- true 2>/dev/null; then
    echo "profile.sh: perf cannot sample here (run as root, or lower kernel.perf_event_paranoid); skipped" >&2
    exit 0
fi

cargo build --release --bin aralez --example pingora_baseline --example hyper_baseline

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
render_peers backends.nginx.conf nginx.conf aralez-main.yaml aralez-upstreams.yaml
start_backends

HZ=$(getconf CLK_TCK)
: > "$WORK/runs"
for proxy in aralez pingora-defaults hyper-baseline nginx; do
    start_proxy "$proxy"
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -s benches/report.lua "http://127.0.0.1:$PORT/" >/dev/null
    before=$(cpu_ticks "$PID")
    perf record -q -e cpu-clock -F 1999 -p "$PID" -o "$WORK/$proxy.data" -- sleep "$DURATION" 2>/dev/null &
    PERF=$!
    line=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s benches/report.lua "http://127.0.0.1:$PORT/" | grep '^RESULT')
    after=$(cpu_ticks "$PID")
    wait "$PERF" || true
    echo "$proxy $line cpu_ticks=$((after - before))" | tee -a "$WORK/runs"
    perf report -i "$WORK/$proxy.data" --no-children --sort dso,sym --stdio -q 2>/dev/null > "$WORK/$proxy.report"
    stop_proxy
done

mkdir -p benches/results
python3 - "$WORK" "$HZ" "$DURATION" "$CONNECTIONS" <<'PY' | tee benches/results/profile.md
import collections, re, subprocess, sys
work, hz, duration, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

# What each group of samples is, in the order the rows are printed.
GROUPS = [
    ("kernel", "kernel: loopback TCP, waking the other core, epoll, syscalls"),
    ("pingora", "Pingora: HTTP/1 sessions, proxy loop, connection pool"),
    ("tokio", "tokio: tasks, wakers, timers, I/O readiness"),
    ("http", "HTTP types and parsing (http, httparse, bytes)"),
    ("hyper", "hyper: HTTP/1 connections and client pool"),
    ("alloc", "allocator (mimalloc; malloc and free in libc)"),
    ("rust", "Rust core, alloc and std (hashing, formatting, copies)"),
    ("aralez", "Aralez's own code (routing, headers, metrics, hooks)"),
    ("nginx", "nginx's own code"),
    ("libc", "libc and the vDSO (memcpy, clock reads, syscall wrappers)"),
    ("other", "other crates (futures, dashmap, arc-swap, rand, prometheus...)"),
]
CRATES = {"pingora": "pingora", "tokio": "tokio", "mio": "tokio", "http": "http",
          "httparse": "http", "bytes": "http", "hyper": "hyper", "hyper_util": "hyper",
          "aralez": "aralez", "core": "rust",
          "alloc": "rust", "std": "rust", "hashbrown": "rust", "foldhash": "rust"}

def group(dso, kind, sym):
    if kind == "k" or dso.startswith("[kernel"):
        return "kernel"
    if sym.startswith(("mi_", "_mi_", "malloc", "free", "cfree", "realloc", "calloc", "_int_", "__libc_malloc", "__libc_free")):
        return "alloc"
    if dso == "nginx":
        return "nginx"
    if dso.startswith(("libc", "[vdso]")):
        return "libc"
    # A Rust symbol belongs to the crate its path starts with (`<aralez::X as Trait>::f` to aralez).
    crate = re.match(r"[<&\s]*(?:dyn\s+)?([A-Za-z_][A-Za-z0-9_]*)", sym)
    if crate:
        name = crate.group(1)
        return CRATES.get(name.split("_")[0] if name.startswith("pingora") else name, "other")
    return "other"

runs = {}
for line in open(f"{work}/runs"):
    name, _, *fields = line.split()
    runs[name] = {k: float(v) for k, v in (f.split("=") for f in fields)}

table = {}
for name, run in runs.items():
    shares = collections.Counter()
    for line in open(f"{work}/{name}.report"):
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
        if m:
            shares[group(m.group(2), m.group(3), m.group(4).strip())] += float(m.group(1)) / 100
    us_per_request = run["cpu_ticks"] / hz / run["requests"] * 1e6
    total = sum(shares.values()) or 1
    table[name] = (run["requests"] / (run["duration_us"] / 1e6), us_per_request,
                   {g: shares[g] / total * us_per_request for g in shares})

names = list(table)
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print(f"Machine: {cpu}; proxy pinned to one core; wrk -c{conns}, {duration} s per proxy, perf cpu-clock samples of every proxy thread\n")
print("CPU time per request, in microseconds, by the code it ran in:\n")
print("| where | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
for key, label in GROUPS:
    if any(table[n][2].get(key, 0) >= 0.05 for n in names):
        print(f"| {label} | " + " | ".join(f"{table[n][2].get(key, 0):.1f}" for n in names) + " |")
print("| **all** | " + " | ".join(f"**{table[n][1]:.1f}**" for n in names) + " |")
print("| requests/s | " + " | ".join(f"{table[n][0]:.0f}" for n in names) + " |")
PY
