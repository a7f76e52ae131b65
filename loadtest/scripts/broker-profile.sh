#!/usr/bin/env bash
# A load with the broker's CPU counted by the kernel: a broker (shardmq or
# Mosquitto) on a free 127.0.0.1 port, loadtest for 10 s after 2 s of warm-up
# (by default conn-storm: `--scenario conn-storm --clients 50 --rate max`), and
# from 5 s into the run one of:
#   perfstat  `perf stat -e task-clock,context-switches` over 5 s (the default)
#   strace    `strace -c -f` over 6 s (slows the broker: count calls, not time)
#   perfrec   `perf record -F 999 -g` over 5 s, kept as $OUT/perf.data
# Prints the run's rate (conn-storm: connections/s) and p50, and the profile's
# summary; divide task-clock by the rate times 5 s for the CPU per message.
#
# Usage: loadtest/scripts/broker-profile.sh shardmq|mosquitto [pinned|default] [perfstat|strace|perfrec]
#   pinned:  the broker on CPU 0 (shardmq: [shards] cores = [0]), loadtest on CPU 1
#   default: every process on its defaults (shardmq: a shard per core), nothing pinned
# Environment: SHARDMQ (default target/release/shardmq), OUT (default: a temporary
# directory, removed at exit), LOAD (loadtest's scenario arguments, default
# "--scenario conn-storm --clients 50 --rate max"; the quiet regime of issue 15:
# "--scenario p2p --clients 1000 --qos 0 --rate 5000").
# Needs: target/release/loadtest, perf or strace, mosquitto for that broker.
set -euo pipefail
BROKER=${1:?shardmq or mosquitto}
MODE=${2:-pinned}
PROF=${3:-perfstat}
LOAD=${LOAD:---scenario conn-storm --clients 50 --rate max}
cd "$(dirname "$0")/../.."
SHARDMQ=${SHARDMQ:-target/release/shardmq}
if [ -n "${OUT:-}" ]; then work=$OUT; mkdir -p "$work"; else work=$(mktemp -d); fi
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "${OUT:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
pin_broker=() pin_load=() load_cores=()
if [ "$MODE" = pinned ]; then
    pin_broker=(taskset -c 0) pin_load=(taskset -c 1) load_cores=(--cores 1)
fi
case $BROKER in
    shardmq)
        {
            [ "$MODE" = pinned ] && printf '[shards]\ncores = [0]\n'
            printf '[[listeners]]\nbind = "127.0.0.1:%s"\n' "$port"
            printf '[http]\nbind = "127.0.0.1:%s"\n' "$(free_port)"
            printf '[log]\nlevel = "warn"\n'
        } > "$work/shardmq.toml"
        "${pin_broker[@]}" "$SHARDMQ" --config "$work/shardmq.toml" > "$work/broker.log" 2>&1 &
        ;;
    mosquitto)
        printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\nlog_dest stderr\nlog_type error\n' \
            "$port" > "$work/mosquitto.conf"
        "${pin_broker[@]}" mosquitto -c "$work/mosquitto.conf" > "$work/broker.log" 2>&1 &
        ;;
    *) echo "unknown broker $BROKER" >&2; exit 2 ;;
esac
broker=$!
pids+=("$broker")
sleep 1
# shellcheck disable=SC2086 # LOAD is a list of arguments
"${pin_load[@]}" target/release/loadtest --broker "127.0.0.1:$port" $LOAD \
    --duration 10s --warmup 2s "${load_cores[@]}" \
    --json "$work/run.json" > "$work/loadtest.log" 2>&1 &
load=$!
pids+=("$load")
sleep 5
case $PROF in
    perfstat) perf stat -e task-clock,context-switches -x, -o "$work/perf.txt" -p "$broker" -- sleep 5 ;;
    strace) timeout 6 strace -c -f -o "$work/strace.txt" -p "$broker" > /dev/null 2>&1 || true ;;
    perfrec) perf record -F 999 -g -o "$work/perf.data" -p "$broker" -- sleep 5 > /dev/null 2>&1 ;;
    *) echo "unknown profile $PROF" >&2; exit 2 ;;
esac
wait "$load"
python3 - "$work/run.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
print(f"received/s {run['received_per_sec']:.0f}, p50 {run['latency_us']['p50']} µs")
PY
case $PROF in
    perfstat) grep -v '^#' "$work/perf.txt" | grep . ;;
    strace) head -20 "$work/strace.txt" ;;
    perfrec) echo "perf report -i $work/perf.data (set OUT to keep it)" ;;
esac
