#!/usr/bin/env bash
# Publisher and subscriber on different nodes of a cluster against the same
# node, side by side in one run: Redis and two nodes (one shard each, both on
# CPU 0; or every core with CORES=all), loadtest on CPU 1. Prints each run's
# summary and, for the cross-node runs, the messages the link carried per
# second (each node's shardmq_cluster_messages_out_total over the window: a's
# carry the messages, b's the answers: credits, and barriers' answers).
#
# Usage: loadtest/scripts/cluster-bench.sh [pairs] [duration]
# Environment: QOS (default "0 1"), CORES (default 0; "all": the default config,
# a shard per core), RATE (default max; msgs/s in all), DURABILITY (default sessions).
# Needs: redis-server, target/release/{shardmq,loadtest} (cargo build --release --workspace).
set -euo pipefail
PAIRS=${1:-100}
DURATION=${2:-10s}
CORES=${CORES:-0}
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
pids+=($!)

cores_line() { [ "$CORES" = all ] && echo "" || echo "[shards]
cores = [$CORES]"; }
declare -A mqtt http
for n in a b; do
  mqtt[$n]=$(free_port); http[$n]=$(free_port); link=$(free_port)
  cat > "$work/$n.toml" <<TOML
$(cores_line)
[[listeners]]
bind = "127.0.0.1:${mqtt[$n]}"
[http]
bind = "127.0.0.1:${http[$n]}"
[store]
kind = "redis"
redis = "redis://127.0.0.1:$redis_port/0"
durability = "${DURABILITY:-sessions}"
[cluster]
node-id = "$n"
bind = "127.0.0.1:$link"
lease = "3s"
[log]
level = "warn"
TOML
  target/release/shardmq --config "$work/$n.toml" > "$work/$n.log" 2>&1 &
  pids+=($!)
done
for n in a b; do
  for _ in $(seq 100); do
    curl -sf "127.0.0.1:${http[$n]}/health" > /dev/null && break; sleep 0.1
  done
done
# Until each node lists the other and the links are up.
for _ in $(seq 100); do
  up=$(curl -s "127.0.0.1:${http[a]}/metrics" | awk '/^shardmq_cluster_links_up/ {print $2}')
  [ "${up:-0}" -ge 2 ] && break; sleep 0.1
done

out_total() { curl -s "127.0.0.1:${http[$1]}/metrics" | awk '/^shardmq_cluster_messages_out_total/ {print $2}'; }
for qos in ${QOS:-0 1}; do
  for where in same cross; do
    sub=${mqtt[a]}; [ $where = cross ] && sub=${mqtt[b]}
    before=$(out_total a); before_b=$(out_total b)
    echo "== p2p, $PAIRS pairs, QoS $qos, rate ${RATE:-max}, subscriber on the $where node"
    taskset -c 1 target/release/loadtest --broker "127.0.0.1:${mqtt[a]}" \
      --subscriber-broker "127.0.0.1:$sub" --scenario p2p --clients "$PAIRS" \
      --qos "$qos" --rate "${RATE:-max}" --duration "$DURATION" --warmup 2s --cores 1 \
      --client-id "bench-$qos-$where-{i}" | grep -E "msgs/s|latency|lost|sent|received" || true
    after=$(out_total a); after_b=$(out_total b)
    secs=$(( ${DURATION%s} + 2 ))
    echo "   link: $(( (after - before) / secs )) messages/s out of node a, $(( (after_b - before_b) / secs )) out of node b (window and warm-up)"
  done
done
