#!/usr/bin/env bash
# Mosquitto's side of the restart comparison (benchmarks/store-restart.sh is
# shardmq's): persistent sessions made by loadtest's conn-storm (each connects
# with clean session 0, subscribes to its own topic and leaves), Mosquitto
# stopped with SIGTERM (it writes its persistence file then; a kill -9 would
# lose what came after the last autosave), started again, and timed from exec
# to the first CONNACK.
#
#   benchmarks/mosquitto-restart.sh [STORM_SECONDS]      # default 15
#
# Needs mosquitto, mosquitto_pub and target/release/loadtest. 127.0.0.1 only;
# everything started is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DIR=$(mktemp -d)
cleanup() { [ -n "${MPID:-}" ] && kill "$MPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
cat >"$DIR/m.conf" <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $DIR/
autosave_interval 0
max_connections -1
user root
CONF
start() {
    T0=$(date +%s%N)
    /usr/sbin/mosquitto -c "$DIR/m.conf" 2>>"$DIR/m.log" & MPID=$!
    until mosquitto_pub -h 127.0.0.1 -p "$PORT" -t bench/ping -m x -q 0 2>/dev/null; do
        [ $(( ($(date +%s%N) - T0) / 1000000 )) -gt 120000 ] && { echo "no CONNACK within 120 s"; exit 1; }
        sleep 0.005
    done
    T1=$(date +%s%N)
}
start
ulimit -n 20000 2>/dev/null || true
target/release/loadtest --broker "127.0.0.1:$PORT" --scenario conn-storm --clients 50 --rate max \
    --duration "${SECS}s" --warmup 0s --session persistent --json "$DIR/storm.json" >/dev/null 2>&1
N=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["received"])' "$DIR/storm.json")
kill -TERM "$MPID"; wait "$MPID" 2>/dev/null || true
SIZE=$(stat -c %s "$DIR/mosquitto.db")
start
echo "persistent sessions made:   $N (conn-storm, ${SECS} s)"
echo "mosquitto.db:               $SIZE bytes ($(( SIZE / N )) per session)"
echo "exec to first CONNACK:      $(( (T1 - T0) / 1000000 )) ms"
echo "mosquitto RSS after load:   $(( $(ps -o rss= -p "$MPID") / 1024 )) MiB"
