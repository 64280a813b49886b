#!/usr/bin/env bash
# Instructions (callgrind) to parse and validate the 10,000-host routing document that
# extras.sh pushes, as YAML and as JSON. Unlike times, instruction counts do not move with
# what else the machine is doing, so two builds can be compared in one run each.
# Each figure is (instructions of 3 parses - instructions of 1 parse) / 2: start-up and
# reading the file cancel out. Writes benches/results/instructions.md.
#
#   benches/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
need valgrind valgrind
need python3 python3

cargo build --release --example parse_cost
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
push_documents "$WORK"

# instructions FILE N: instructions of a whole `parse_cost FILE N` run.
instructions() {
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
        ./target/release/examples/parse_cost "$1" "$2" 2>/dev/null
    awk '/^summary:/ {print $2}' "$WORK/cg.out"
}

out=benches/results/instructions.md
{
    echo "Instructions to parse and validate the 10,000-host document (callgrind; commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
    echo
    echo "| document | instructions per parse |"
    echo "|---|---|"
    for fmt in yaml json; do
        one=$(instructions "$WORK/big.$fmt" 1)
        three=$(instructions "$WORK/big.$fmt" 3)
        echo "| $fmt ($(wc -c < "$WORK/big.$fmt") bytes) | $(( (three - one) / 2 )) |"
    done
} | tee "$out"
