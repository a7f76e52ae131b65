#!/usr/bin/env bash
# A three-node cluster on one machine: Redis on 127.0.0.1:6390 and nodes a,
# b and c (MQTT 1883-1885, HTTP 8888-8890, links 18900-18902), each from
# configs/examples/cluster-<node>.toml, with the release binary.
#
#     bash configs/cluster.sh start    # builds, starts, waits for /health
#     bash configs/cluster.sh kill b   # kill -9 one node
#     bash configs/cluster.sh start b  # start it again
#     bash configs/cluster.sh stop     # everything, by PID
#
# PIDs and logs go to $DIR (default /tmp/shardmq-cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DIR:-/tmp/shardmq-cluster}
mkdir -p "$DIR"
BIN=target/release/shardmq
http_port() { case $1 in a) echo 8888 ;; b) echo 8889 ;; c) echo 8890 ;; esac; }

start_node() {
  local n=$1
  "$BIN" --config "configs/examples/cluster-$n.toml" >>"$DIR/$n.log" 2>&1 &
  echo $! >"$DIR/$n.pid"
}

wait_healthy() {
  local n=$1
  for _ in $(seq 1 100); do
    if curl -sf "127.0.0.1:$(http_port "$n")/health" >/dev/null; then
      echo "node $n: healthy (log $DIR/$n.log)"
      return 0
    fi
    sleep 0.1
  done
  echo "node $n: not healthy after 10 s; see $DIR/$n.log" >&2
  return 1
}

stop_pid() {
  local file=$1 signal=$2
  [ -f "$file" ] || return 0
  kill "-$signal" "$(cat "$file")" 2>/dev/null || true
  rm -f "$file"
}

case "${1:-start}" in
start)
  if [ -n "${2:-}" ]; then
    start_node "$2"
    wait_healthy "$2"
    exit 0
  fi
  cargo build --release --bin shardmq
  if ! redis-cli -p 6390 ping >/dev/null 2>&1; then
    redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no \
      --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
    sleep 0.2
  fi
  for n in a b c; do start_node "$n"; done
  for n in a b c; do wait_healthy "$n"; done
  ;;
kill)
  stop_pid "$DIR/$2.pid" KILL
  ;;
stop)
  for n in a b c; do stop_pid "$DIR/$n.pid" TERM; done
  sleep 0.5
  stop_pid "$DIR/redis.pid" TERM
  ;;
*)
  echo "usage: $0 start [node] | kill <node> | stop" >&2
  exit 2
  ;;
esac
