#!/usr/bin/env bash
# A first, crude throughput figure until `loadtest` has its scenarios: one
# mosquitto_pub streams N QoS-0 messages (-l, one connection) to one
# mosquitto_sub through a broker pinned to CPU 0, clients pinned to CPU 1.
# Reports wall time, messages/s and the broker's CPU-µs per message (from
# /proc/<pid>/stat). The clients, not the broker, are usually the limit, so this
# understates every broker; the ratio between brokers is what to read.
#
# Usage: loadtest/scripts/mosquitto-clients-p2p.sh [N] [payload-bytes]
# Needs: mosquitto, mosquitto-clients, rumqttd (cargo install rumqttd --version 0.20.0),
#        target/release/shardmq (cargo build --release).
set -euo pipefail
N=${1:-200000}
SIZE=${2:-64}
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

payload=$(head -c "$SIZE" /dev/zero | tr '\0' 'x')
{ yes "$payload" || true; } | head -n "$N" > "$work/lines"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

run() { # name port command...
    local name=$1 port=$2; shift 2
    taskset -c 0 "$@" > "$work/$name.log" 2>&1 &
    local pid=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
    timeout 120 taskset -c 1 mosquitto_sub -h 127.0.0.1 -p "$port" -t bench -q 0 -C "$N" > "$work/$name.out" &
    local sub=$!
    sleep 0.5
    local t0 c0 t1 c1
    c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
    taskset -c 1 mosquitto_pub -h 127.0.0.1 -p "$port" -t bench -q 0 -l < "$work/lines"
    wait "$sub" || true
    t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
    local got
    got=$(wc -l < "$work/$name.out")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    awk -v n="$got" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v hz="$hz" -v name="$name" \
        'BEGIN { s = t1 - t0; printf "%-10s %8d msgs received %7.3f s %10.0f msgs/s %8.2f broker-CPU-us/msg\n", name, n, s, n / s, c / hz * 1e6 / n }'
}

cat > "$work/shardmq.toml" <<CONF
[shards]
cores = [0]
[[listeners]]
bind = "127.0.0.1:18830"
[http]
bind = "127.0.0.1:18880"
[mqtt]
max-online-messages = 1000000
CONF
cat > "$work/mosquitto.conf" <<CONF
listener 18831 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
CONF
cat > "$work/rumqttd.toml" <<CONF
id = 0
[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:18832"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 20480
max_inflight_count = 100
dynamic_filters = true
CONF

echo "p2p QoS 0, $N x $SIZE B, one publisher -> one subscriber (mosquitto_pub -l / mosquitto_sub), $(date -u +%F)"
run shardmq 18830 target/release/shardmq --config "$work/shardmq.toml"
run mosquitto 18831 mosquitto -c "$work/mosquitto.conf"
run rumqttd 18832 rumqttd --config "$work/rumqttd.toml"
