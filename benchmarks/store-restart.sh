#!/usr/bin/env bash
# Restart with a full store (issue 13): puts N persistent sessions of one
# subscription each in a fresh redis-server, owned by a dead life of node
# "bench", then starts the broker and measures
#   - exec to the first CONNACK (a clean MQTT 3.1.1 client, polled every 5 ms);
#   - exec to every shard having loaded (shardmq_store_load_seconds);
#   - Redis memory per session (INFO memory, before and after filling).
#
#   benchmarks/store-restart.sh [SESSIONS]        # default 1000000
#
# Needs redis-server, redis-cli, mosquitto_pub, python3; builds the release binary.
# Everything listens on 127.0.0.1; everything started is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPORT=$(free_port); MPORT=$(free_port); HPORT=$(free_port)
DIR=$(mktemp -d)
cleanup() {
    [ -n "${BPID:-}" ] && kill "$BPID" 2>/dev/null || true
    [ -n "${RPID:-}" ] && kill "$RPID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
cargo build --release --quiet --bin shardmq

redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" >"$DIR/redis.log" &
RPID=$!
for _ in $(seq 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
used() { redis-cli -p "$RPORT" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
BEFORE=$(used)

# Sessions as the broker writes them (ARCHITECTURE.md, "The store"): offline, an
# hour of expiry left, one QoS 1 subscription each, in the node's sessions set.
python3 - "$N" <<'PY' | redis-cli -p "$RPORT" --pipe >/dev/null
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    out.write(b"".join(parts))
for i in range(n):
    cid = "phone-%d" % i
    s = "shardmq:s:{%s}" % cid
    cmd("HSET", s, "gen", 1, "owner", "bench#0", "expiry", 3600, "online", 0)
    cmd("PEXPIRE", s, 3600000)
    cmd("HSET", s + ":subs", "devices/%d/#" % i, b"\x01\x00")
    cmd("PEXPIRE", s + ":subs", 3600000)
    cmd("SADD", "shardmq:node:bench:sessions", cid)
PY
AFTER=$(used)
KEYS=$(redis-cli -p "$RPORT" dbsize)

cat >"$DIR/shardmq.toml" <<TOML
[[listeners]]
bind = "127.0.0.1:$MPORT"
[http]
bind = "127.0.0.1:$HPORT"
[log]
level = "warn"
[store]
kind = "redis"
redis = "redis://127.0.0.1:$RPORT/0"
[cluster]
node-id = "bench"
TOML

cpu() { redis-cli -p "$RPORT" info cpu | awk -F: '/^used_cpu_(user|sys):/ {s+=$2} END {printf "%.1f", s}'; }
CPU0=$(cpu)
T0=$(date +%s%N)
target/release/shardmq --config "$DIR/shardmq.toml" 2>"$DIR/shardmq.log" &
BPID=$!
until mosquitto_pub -h 127.0.0.1 -p "$MPORT" -t bench/ping -m x -q 0 2>/dev/null; do
    [ $(( ($(date +%s%N) - T0) / 1000000 )) -gt 30000 ] && { echo "no CONNACK within 30 s"; cat "$DIR/shardmq.log"; exit 1; }
    sleep 0.005
done
T1=$(date +%s%N)
LOADED=""
for _ in $(seq 6000); do
    LOADED=$(curl -s "127.0.0.1:$HPORT/metrics" | sed -n 's/^shardmq_store_load_seconds \(.*\)/\1/p')
    [ -n "$LOADED" ] && break
    sleep 0.05
done
CPU1=$(cpu)
sleep 1  # the shards sample their metrics every 250 ms
RSS=$(ps -o rss= -p "$BPID")
SESS=$(curl -s "127.0.0.1:$HPORT/metrics" | awk '/^shardmq_sessions\{/ {s+=$2} END {print s}')
echo "sessions stored:            $N ($KEYS keys)"
echo "redis memory per session:   $(( (AFTER - BEFORE) / N )) bytes (used_memory $BEFORE -> $AFTER)"
echo "exec to first CONNACK:      $(( (T1 - T0) / 1000000 )) ms"
echo "exec to loaded (all shards): ${LOADED:-not within 300 s} s"
echo "redis CPU while loading:    $(python3 -c "print(round($CPU1 - $CPU0, 1))") s"
echo "broker CPU to this point:   $(ps -o times= -p "$BPID") s"
echo "sessions held after load:   $SESS"
echo "broker RSS after load:      $(( RSS / 1024 )) MiB"
