# Shared by the benchmark scripts: installing the tools they need.

# need COMMAND PACKAGE: install PACKAGE (as root, with apt) when COMMAND is missing.
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
        else
            echo "missing $1: sudo apt-get install -y $2" >&2
            exit 1
        fi
    fi
}

# wait_port PORT: wait up to 10 s for something to listen on 127.0.0.1:PORT.
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 never opened" >&2
    return 1
}

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
