# Shared by the benchmark scripts: installing the tools they need.

# The pinning every script uses: the proxy on one core, backends and load tools on the other.
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

# render_peers FILE...: copies peer configs from benches/peers into $WORK, @DIR@ set to $WORK.
render_peers() {
    for f in "$@"; do sed "s|@DIR@|$WORK|g" "benches/peers/$f" > "$WORK/$f"; done
}

# start_backends: the three nginx backends every proxy forwards to (127.0.0.1:9101-9103), on
# $LOAD_CPU; needs backends.nginx.conf rendered into $WORK.
start_backends() {
    taskset -c "$LOAD_CPU" nginx -c "$WORK/backends.nginx.conf" -p "$WORK" &
    wait_port 9101
}

# need COMMAND PACKAGE: install PACKAGE (as root, with apt) when COMMAND is missing.
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            # A fresh machine may have no package lists yet: update once, then retry.
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
                { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
        else
            echo "missing $1: sudo apt-get install -y $2" >&2
            exit 1
        fi
    fi
}

# wait_port PORT [SECONDS]: wait up to SECONDS (10 by default) for something to listen on
# 127.0.0.1:PORT.
wait_port() {
    for _ in $(seq $((${2:-10} * 10))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 never opened" >&2
    return 1
}

# start_proxy NAME: starts aralez (the build ARALEZ_BIN names, target/release by default),
# pingora-defaults, hyper-baseline, nginx or haproxy on CPU
# $PROXY_CPU with the plain-HTTP peer configs rendered into $WORK, and waits for its port. Sets PORT, MASTER
# (the process to stop) and PID (the process that does the work: nginx's worker).
start_proxy() {
    case $1 in
        aralez) taskset -c "$PROXY_CPU" "${ARALEZ_BIN:-./target/release/aralez}" -c "$WORK/aralez-main.yaml" 2>"$WORK/aralez.err" & PORT=8080 ;;
        pingora-defaults) taskset -c "$PROXY_CPU" ./target/release/examples/pingora_baseline 2>"$WORK/pingora.err" & PORT=8083 ;;
        hyper-baseline) taskset -c "$PROXY_CPU" ./target/release/examples/hyper_baseline 2>"$WORK/hyper.err" & PORT=8084 ;;
        nginx) taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx.conf" -p "$WORK" & PORT=8081 ;;
        haproxy) taskset -c "$PROXY_CPU" haproxy -f "$WORK/haproxy.cfg" -db & PORT=8082 ;;
    esac
    PID=$!
    MASTER=$PID
    wait_port "$PORT"
    # nginx's master forks the worker that does the work; measure the worker.
    if [ "$1" = nginx ]; then sleep 0.3; PID=$(pgrep -P "$PID" | head -1); fi
}

# stop_proxy: stops what start_proxy started.
stop_proxy() { kill "$MASTER" 2>/dev/null || true; wait "$MASTER" 2>/dev/null || true; sleep 0.5; }

# cpu_ticks PID: user + system CPU time the process has used, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# push_documents DIR: the 10,000-host routing documents the push benchmarks use, in DIR:
# big.yaml and big2.yaml (the same hosts on another server pair, so that alternating the two
# makes every push a change), and big.json and big2.json (the same, written as JSON).
push_documents() {
    # A 10,000-host document (every host on the same three backends).
    python3 - "$1/big.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("upstreams:\n  bench.local:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:9101\", \"127.0.0.1:9102\", \"127.0.0.1:9103\"]\n        headers: [\"X-Proxy-From:Aralez\"]\n")
    for i in range(10000):
        f.write(f"  host{i}.bench.local:\n    paths:\n      \"/\":\n        servers: [\"127.0.0.1:9101\", \"127.0.0.1:9102\"]\n")
PY
    # The same hosts on another server pair: alternating the two makes every push a real change.
    sed 's/"127.0.0.1:9102"\]$/"127.0.0.1:9103"]/' "$1/big.yaml" > "$1/big2.yaml"
    # The same two documents written as JSON (also valid YAML), which Aralez reads with serde_json.
    python3 - "$1" <<'PY'
import json, sys
for name in ("big", "big2"):
    with open(f"{sys.argv[1]}/{name}.yaml") as f:
        lines = f.read().splitlines()
    hosts, i = {}, 1
    while i < len(lines):
        host = lines[i].strip().rstrip(":")
        servers = json.loads(lines[i + 3].split("servers:", 1)[1])
        route = {"servers": servers}
        i += 4
        if i < len(lines) and lines[i].strip().startswith("headers:"):
            route["headers"] = json.loads(lines[i].split("headers:", 1)[1])
            i += 1
        hosts[host] = {"paths": {"/": route}}
    # One host per line, as a generator would write it.
    with open(f"{sys.argv[1]}/{name}.json", "w") as f:
        f.write('{"upstreams": {\n' + ",\n".join(f"  {json.dumps(h)}: {json.dumps(b)}" for h, b in hosts.items()) + "\n}}\n")
PY
}

# want COMMAND PACKAGE: like need, but only a note when it cannot be installed (a peer the
# benchmark can leave out).
want() {
    (need "$1" "$2") || echo "leaving $1 out" >&2
}
