#!/usr/bin/env bash
# The rest of the load benchmark, Aralez and nginx side by side with the same pinning as
# load.sh (proxy on CPU 0; backends and load tools on CPU 1):
#   - HTTP/2 over TLS (h2load, 100 connections x 10 streams) and new TLS connections per
#     second (wrk over HTTPS with `Connection: close`): ROUNDS alternating runs, medians;
#   - memory held by 10,000 idle keep-alive client connections, plain and TLS (fresh process);
#   - Aralez only: a 10,000-host upstreams document, as YAML and as JSON, pushed through the
#     config API PUSHES times each on an idle core, then PUSHES times each under load (time
#     until the API answers, i.e. until it is live; failed requests during the swaps).
# Writes benches/results/extras.md.
#
#   benches/extras.sh          DURATION=10 PUSHES=5 ROUNDS=3 benches/extras.sh
#   PARTS=reload benches/extras.sh   (some of: idle h2 reload; a partial run only prints)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
IDLE=${IDLE:-10000}
PUSHES=${PUSHES:-5}
ROUNDS=${ROUNDS:-3}
ALL_PARTS="idle h2 reload"
PARTS=${PARTS:-$ALL_PARTS}
part() { [[ " $PARTS " == *" $1 "* ]]; }

. benches/lib.sh
need wrk wrk
need nginx nginx
need h2load nghttp2-client
need openssl openssl
need curl curl

# The same build as load.sh and profile.sh (their examples need dev-dependency features), so
# that `make bench` builds once.
cargo build --release --bin aralez --example pingora_baseline --example hyper_baseline
# 10,000 idle clients and the proxies' sockets for them: as many descriptors as allowed.
ulimit -n "$(ulimit -Hn)"
if [ "$IDLE" -gt $(( $(ulimit -n) - 1000 )) ]; then IDLE=$(( $(ulimit -n) - 1000 )); fi

WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
render_peers backends.nginx.conf nginx-tls.conf aralez-tls-main.yaml aralez-tls-upstreams.yaml
mkdir -p "$WORK/certs"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$WORK/certs/localhost.key" -out "$WORK/certs/localhost.crt" 2>/dev/null

start_backends

start_tls_proxy() {
    case $1 in
        aralez) taskset -c "$PROXY_CPU" ./target/release/aralez -c "$WORK/aralez-tls-main.yaml" 2>"$WORK/aralez.err" & PLAIN=8080 TLS=8443 ;;
        nginx) taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx-tls.conf" -p "$WORK" & PLAIN=8081 TLS=8444 ;;
    esac
    MASTER=$!
    PID=$MASTER
    wait_port "$PLAIN"
    wait_port "$TLS"
    if [ "$1" = nginx ]; then sleep 0.3; PID=$(pgrep -P "$MASTER" | head -1); fi
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
load() { taskset -c "$LOAD_CPU" "$@"; }

# Opens N keep-alive connections that each made one request, holds them, prints when ready.
cat > "$WORK/idle.py" <<'PY'
import asyncio, ssl, sys
port, n, tls, source = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "tls", sys.argv[4]
ctx = None
if tls:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
async def one(held):
    # From a source address of its own: each run leaves its ephemeral ports in TIME_WAIT.
    r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0),
                                         ssl=ctx, server_hostname="localhost" if tls else None)
    w.write(b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n")
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    length = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
    if length:
        await r.readexactly(int(length[0].split(b":")[1]))
    held.append(w)
async def main():
    held = []
    for i in range(0, n, 500):
        await asyncio.gather(*(one(held) for _ in range(min(500, n - i))))
    print("ready", len(held), flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
PY

push_documents "$WORK"


: > "$WORK/results"
# Idle connections first, plain and TLS, each on a fresh process: after other runs, memory
# those freed would be reused for the idle connections and hide what they cost.
source=1
part idle && for proxy in aralez nginx; do
  for kind in plain tls; do
    source=$((source + 1))
    start_tls_proxy "$proxy"
    port=$PLAIN; [ "$kind" = tls ] && port=$TLS
    before=$(rss_kib "$PID")
    # Not through `load`: a backgrounded function is a subshell, and killing it would leave
    # python (and its 10,000 connections) running.
    taskset -c "$LOAD_CPU" python3 "$WORK/idle.py" "$port" "$IDLE" "$kind" "127.0.0.$source" > "$WORK/idle.out" 2>&1 &
    IDLER=$!
    for _ in $(seq 1200); do grep -q '^ready' "$WORK/idle.out" 2>/dev/null && break; sleep 0.1; done
    held=$(awk '/^ready/ {print $2}' "$WORK/idle.out")
    [ -n "$held" ] || { echo "idle clients failed:" >&2; tail -5 "$WORK/idle.out" >&2; }
    after=$(rss_kib "$PID")
    kill "$IDLER" 2>/dev/null || true
    wait "$IDLER" 2>/dev/null || true
    echo "idle $proxy kind=$kind held=${held:-0} kib=$((after - before)) base_kib=$before" | tee -a "$WORK/results"
    stop_proxy
  done
done

# h2 and new TLS connections: ROUNDS alternating runs (A B A B ...), each on a fresh process;
# on this kind of VM one run's figure can be off by 2x.
part h2 && for round in $(seq "$ROUNDS"); do
    for proxy in aralez nginx; do
        start_tls_proxy "$proxy"
        # h2 routes by :authority (localhost here); a Host header beside it would be malformed.
        load h2load -c100 -m10 -D"$DURATION" "https://localhost:$TLS/" 2>/dev/null > "$WORK/h2.out" || true
        h2_rps=$(awk '/finished in/ {gsub(",", ""); for (i=1;i<=NF;i++) if ($i ~ /req\/s/) print $(i-1)}' "$WORK/h2.out")
        h2_failed=$(awk '/^requests:/ {for (i=1;i<=NF;i++) if ($(i+1) ~ /failed/) print $i}' "$WORK/h2.out")
        tls_out=$(load wrk -t1 -c50 -d"${DURATION}s" -H "Connection: close" -H "Host: bench.local" "https://localhost:$TLS/")
        tls_cps=$(echo "$tls_out" | awk '/Requests\/sec/ {print $2}')
        tls_err=$(echo "$tls_out" | awk '/Socket errors/ {print}' | tr -d '\n')
        echo "run $proxy round=$round h2_rps=${h2_rps:-0} h2_failed=${h2_failed:-?} tls_cps=${tls_cps:-0} tls_errors='${tls_err:-none}'" | tee -a "$WORK/results"
        stop_proxy
    done
done

if part reload; then
    start_tls_proxy aralez
    # The big document pushed PUSHES times on an idle core, then PUSHES times while wrk
    # keeps the bench route busy; the first push of a process also pays for fresh memory.
    push() {
        local doc=$WORK/big.$2
        [ $(( $1 % 2 )) = 0 ] && doc=$WORK/big2.$2
        curl -s -o "$WORK/push.json" -w '%{http_code}:%{time_total}' --data-binary @"$doc" "http://127.0.0.1:3999/conf?key=bench-key"
    }
    # Numbered on across formats and phases so that every push is a change.
    n=0
    declare -A idle busy
    for fmt in yaml json; do
        for _ in $(seq "$PUSHES"); do n=$((n + 1)); idle[$fmt]="${idle[$fmt]:-} $(push "$n" "$fmt")"; done
    done
    taskset -c "$LOAD_CPU" wrk -t1 -c50 -d$((PUSHES * 4 + 4))s -H "Host: bench.local" "http://127.0.0.1:$PLAIN/" > "$WORK/reload-wrk.out" &
    WRK=$!
    sleep 2
    for fmt in yaml json; do
        for _ in $(seq "$PUSHES"); do n=$((n + 1)); busy[$fmt]="${busy[$fmt]:-} $(push "$n" "$fmt")"; sleep 1; done
    done
    wait "$WRK"
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/reload-wrk.out")
    sock=$(awk '/Socket errors/ {print}' "$WORK/reload-wrk.out" | tr -d '\n')
    echo "reload idle_yaml='${idle[yaml]# }' busy_yaml='${busy[yaml]# }' idle_json='${idle[json]# }' busy_json='${busy[json]# }' non2xx=${non2xx:-0} socket_errors='${sock:-none}' answer=$(tr -d '\n' < "$WORK/push.json")" | tee -a "$WORK/results"
    stop_proxy
fi

mkdir -p benches/results
out=benches/results/extras.md
[ "$PARTS" = "$ALL_PARTS" ] || out=/dev/null
python3 - "$WORK/results" "$DURATION" "$IDLE" <<'PY' | tee "$out"
import shlex, statistics, sys, platform, subprocess
runs, idle, reload = {}, {}, None
for line in open(sys.argv[1]):
    kind, *fields = shlex.split(line)
    if kind == "reload":
        reload = dict(f.split("=", 1) for f in fields)
    else:
        name, *fields = fields
        kv = dict(f.split("=", 1) for f in fields)
        if kind == "idle":
            idle[(name, kv["kind"])] = kv
        else:
            runs.setdefault(name, []).append(kv)
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
rounds = max((len(r) for r in runs.values()), default=0)
print(f"Machine: {cpu}, {platform.machine()}; proxy pinned to one core; {sys.argv[2]} s per measurement; "
      f"{rounds} alternating runs per proxy for h2 and TLS (median, and the range)\n")
def spread(values):
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"
def held(name, kind):
    i = idle.get((name, kind))
    if not i:
        return "-"
    kib, base = int(i["kib"]), int(i["base_kib"])
    return f"{base / 1024:.0f} -> {(base + kib) / 1024:.0f} MiB ({kib / max(int(i['held']), 1):.1f} KiB each, {i['held']} held)"
if runs or idle:
  print(f"| proxy | h2 over TLS req/s (h2load -c100 -m10) | h2 failed | new TLS connections/s (wrk, Connection: close) | TLS socket errors "
        f"| {sys.argv[3]} idle keep-alive connections, plain (RSS of a fresh process before and with them) | {sys.argv[3]} idle keep-alive connections, TLS |")
  print("|---|---|---|---|---|---|---|")
for name, rs in runs.items():
    failed = sum(int(r["h2_failed"]) if r["h2_failed"].isdigit() else 0 for r in rs)
    errors = "; ".join(sorted({r["tls_errors"] for r in rs}))
    print(f"| {name} | {spread([float(r['h2_rps']) for r in rs])} | {failed} | {spread([float(r['tls_cps']) for r in rs])} | {errors} "
          f"| {held(name, 'plain')} | {held(name, 'tls')} |")
def pushes(text):
    out = [p.split(":") for p in text.split()]
    return [c for c, _ in out], [float(t) * 1000 for _, t in out]
if reload:
    print("\n10,000-host upstreams document pushed through `POST /conf` (time until the answer: upload, parse, "
          "validate, compile, fsync, swap), alternating two documents so that every push is a change; "
          "the same documents as YAML (1.0 MB) and as JSON (which Aralez reads with serde_json):\n")
    print("| document | core | pushes (ms) | median ms | HTTP status |\n|---|---|---|---|---|")
    for fmt in ("yaml", "json"):
        for label, key in (("idle", "idle"), ("busy (wrk -c50 on the bench route)", "busy")):
            codes, ms = pushes(reload[f"{key}_{fmt}"])
            print(f"| {fmt.upper()} | {label} | {', '.join(f'{m:.0f}' for m in ms)} | {statistics.median(ms):.0f} | {', '.join(sorted(set(codes)))} |")
    print(f"\nDuring the busy pushes: non-2xx responses {reload['non2xx']}; socket errors: {reload['socket_errors']}.")
PY
