#!/usr/bin/env bash
# Side-by-side benchmark: shardmq, Mosquitto and rumqttd, each started in turn on
# its own 127.0.0.1 port, pinned with taskset to the same broker core(s), driven by
# the bundled `loadtest` pinned to the load core(s) with the same scenarios (or, with
# --default-config, every broker on its defaults and nothing pinned). For
# each run it reads loadtest's --json output and the broker's CPU time (utime +
# stime from /proc/<pid>/stat) and prints one Markdown table of absolute figures
# and ratios to Mosquitto and rumqttd. See `loadtest/compare.sh --help`.
set -uo pipefail
# The whole script is one { } block, read before it runs, so a checkout or edit of
# this file during a run (which takes minutes) cannot change what bash executes.
{

usage() {
    cat <<'EOF'
Usage: loadtest/compare.sh [OPTIONS]

Runs the same load scenarios against shardmq, Mosquitto and rumqttd, one broker at a
time, each pinned to the same core(s), and prints a Markdown table: received msgs/s
(connections/s for conn-storm), p50/p99/p99.9 latency (µs, from the intended send
time), lost messages, broker CPU-µs per received message, and ratios of each broker
to Mosquitto and rumqttd; then a table of the broker's resident memory per idle
connection, measured on a freshly started broker.

With --default-config, the same comparison as a user would first run it: every
broker on its defaults and nothing pinned (see that option).

Installs what is missing first, for the brokers --brokers names: mosquitto
(apt-get), rumqttd 0.20.0 (cargo install, not --locked); and builds
target/release/loadtest (and target/release/shardmq when shardmq is compared).
Everything binds to 127.0.0.1; every process started is stopped by PID (also on
exit or Ctrl-C).

Options:
  --broker-cores LIST   CPUs for the broker, taskset syntax and shardmq [shards]
                        cores (default: 0)
  --load-cores LIST     CPUs for the load generator (default: 1)
  --default-config      every broker on its defaults, as a user first runs it, and
                        no process pinned (neither --broker-cores nor --load-cores):
                        shardmq on its embedded default config (cores = "all", a
                        shard per CPU); Mosquitto on its defaults (as with no
                        config file: anonymous clients allowed); rumqttd on the
                        values of the rumqttd.toml its repository ships (without
                        its console, prometheus and websocket listeners). Only
                        the listener ports (and shardmq's [http] port) differ.
                        Defaults in this mode: --pairs 20 and --scenarios
                        p2p-qos0,p2p-qos1,fan-in-qos1-max,fan-out. Scenario labels
                        and plot names say "default config".
  --brokers LIST        comma-separated subset of shardmq,mosquitto,rumqttd
                        (default: all three, in that order)
  --scenarios LIST      comma-separated subset of p2p-qos0,p2p-qos1,
                        p2p-qos1-half,fan-out,fan-in,fan-in-max,fan-in-qos1-max,
                        conn-storm,idle-10k,idle-19k,fleet-<N>k (default:
                        all but fan-in-qos1-max and fleet). p2p-qos1-half runs QoS 1 at
                        half the rate that broker reached in p2p-qos1 (its
                        latency at half saturation), so it needs p2p-qos1
                        before it. fan-in offers --fan-in-rate, which every
                        broker can carry, and compares CPU and latency;
                        fan-in-max offers --rate; fan-in-qos1-max is fan-in-max
                        at QoS 1. conn-storm: --storm-workers clients each
                        connecting, subscribing and disconnecting in a loop.
                        idle-N: N idle connections held for 5 s, the
                        broker's RSS read from /proc. fleet-Nk (e.g.
                        fleet-5k): N thousand persistent QoS 1 sessions, each
                        publishing to the next one's topic at its own slow
                        rate (--fleet-rate in all), --fleet-reconnect of
                        them leaving and coming back a third into the
                        window; its own table adds the broker's CPU %, RSS,
                        reconnect times and loadtest's warnings (its broker
                        CPU is loadtest's --broker-pid sample, timed from
                        the start after every connect). Each
                        scenario runs on a freshly started broker.
                        --rate applies to the message scenarios.
  --duration D          measured time per run, loadtest syntax (default: 10s)
  --warmup D            warm-up per run, not measured (default: 2s)
  --payload BYTES       payload size (default: 64)
  --pairs N             p2p publisher/subscriber pairs (default: 1)
  --fan N               subscribers for fan-out, publishers for fan-in (default: 1000)
  --storm-workers N     conn-storm clients (default: 50)
  --fan-in-rate R       aggregate msgs/s of the fan-in scenario (default: 50000,
                        under Mosquitto's saturation: at --rate max its fan-in
                        figure varied by 45 % between two runs)
  --rate R              loadtest --rate for every scenario, a number or max
                        (default: max); not fleet
  --fleet-rate R        fleet: msgs/s over all clients (default: a tenth of
                        the clients, one message per client every 10 s on
                        average)
  --fleet-reconnect F   fleet: the fraction of clients in the reconnect storm
                        (default: 0.1; 0 for none)
  --mqtt-version V      3.1.1 or 5 (default: 3.1.1); rumqttd gets a [v4] or a
                        [v5] listener to match
  --session S           clean or persistent (default: clean): loadtest --session
                        for the message scenarios and conn-storm; persistent
                        sessions are what a store keeps
  --shardmq-store S     memory or redis (default: memory): with redis, a
                        redis-server (Debian package) is started on a free
                        127.0.0.1 port, emptied before each shardmq start, and
                        shardmq gets [store] kind = "redis" pointing at it
  --shardmq-durability D
                        sessions or messages (default: sessions): shardmq's
                        [store] durability with --shardmq-store redis
  --base-port P         first port to try; each broker gets the next free one
                        (default: 18830)
  --write-benchmarks    append the table, with date, commit, machine and command,
                        to benchmarks.md, and save one latency plot per scenario
                        (all brokers overlaid, `loadtest plot`) under
                        benchmarks/plots/, linked from the table
  --benchmarks-file F   the file --write-benchmarks appends to (default:
                        benchmarks.md at the repository root)
  --loadtest PATH       load generator to run instead of target/release/loadtest
                        (same CLI and --json output; e.g. a stand-in for testing)
  --no-install          do not install mosquitto/rumqttd or build; fail if missing
  --keep                keep the work directory (configs, logs, JSON, and the
                        latency plots when --write-benchmarks is not given) and
                        print it; without it the work directory is removed at exit
  --dry-run             print the commands that would run, run nothing
  -h, --help            this text

Broker CPU-µs/msg is the broker's CPU time over a window inside the measured period
(sampled at warm-up + 0.5 s and at the end of the period - 0.5 s) divided by the
messages received in that window (received msgs/s x window length). For fan-out a
message is one delivery. /proc ticks are 1/CLK_TCK s (usually 10 ms).

A scenario that fails (loadtest exits non-zero, writes no JSON, broker dies) is
reported as FAILED in the table and the script carries on with the next run.
Exit status: 0 when every run measured something, 1 when any failed, 2 on bad usage.
Example: loadtest/compare.sh --duration 10s --warmup 2s --write-benchmarks
         loadtest/compare.sh --default-config --brokers shardmq,mosquitto --duration 5s
EOF
}

broker_cores=0
load_cores=1
default_config=0
pinning_given="" # the first of --broker-cores/--load-cores given: --default-config refuses it
brokers=shardmq,mosquitto,rumqttd
scenarios=""     # set after parsing: its default depends on --default-config
storm_workers=50
duration=10s
warmup=2s
payload=64
pairs=""         # likewise
fan=1000
fan_in_rate=50000
fleet_rate=""
fleet_reconnect=0.1
rate=max
mqtt_version=3.1.1
session=clean
shardmq_store=memory
shardmq_durability=sessions
base_port=18830
write_benchmarks=0
install=1
keep=0
dry_run=0
loadtest_override=""
benchmarks_file=""
orig_args=("$@")

die() { echo "compare.sh: $*" >&2; exit 2; }
need_arg() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --broker-cores) need_arg "$@"; broker_cores=$2; pinning_given=${pinning_given:-$1}; shift 2 ;;
        --load-cores) need_arg "$@"; load_cores=$2; pinning_given=${pinning_given:-$1}; shift 2 ;;
        --default-config) default_config=1; shift ;;
        --brokers) need_arg "$@"; brokers=$2; shift 2 ;;
        --scenarios) need_arg "$@"; scenarios=$2; shift 2 ;;
        --duration) need_arg "$@"; duration=$2; shift 2 ;;
        --warmup) need_arg "$@"; warmup=$2; shift 2 ;;
        --payload) need_arg "$@"; payload=$2; shift 2 ;;
        --pairs) need_arg "$@"; pairs=$2; shift 2 ;;
        --fan) need_arg "$@"; fan=$2; shift 2 ;;
        --storm-workers) need_arg "$@"; storm_workers=$2; shift 2 ;;
        --fan-in-rate) need_arg "$@"; fan_in_rate=$2; shift 2 ;;
        --rate) need_arg "$@"; rate=$2; shift 2 ;;
        --fleet-rate) need_arg "$@"; fleet_rate=$2; shift 2 ;;
        --fleet-reconnect) need_arg "$@"; fleet_reconnect=$2; shift 2 ;;
        --mqtt-version) need_arg "$@"; mqtt_version=$2; shift 2 ;;
        --session) need_arg "$@"; session=$2; shift 2 ;;
        --shardmq-store) need_arg "$@"; shardmq_store=$2; shift 2 ;;
        --shardmq-durability) need_arg "$@"; shardmq_durability=$2; shift 2 ;;
        --base-port) need_arg "$@"; base_port=$2; shift 2 ;;
        --write-benchmarks) write_benchmarks=1; shift ;;
        --benchmarks-file) need_arg "$@"; benchmarks_file=$2; shift 2 ;;
        --loadtest) need_arg "$@"; loadtest_override=$2; shift 2 ;;
        --no-install) install=0; shift ;;
        --keep) keep=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

# --- argument checks -------------------------------------------------------------
if [[ $default_config == 1 ]]; then
    [[ -z $pinning_given ]] || die "$pinning_given: --default-config pins nothing (brokers and loadtest run where the kernel puts them)"
    : "${scenarios:=p2p-qos0,p2p-qos1,fan-in-qos1-max,fan-out}"
    : "${pairs:=20}"
else
    : "${scenarios:=p2p-qos0,p2p-qos1,p2p-qos1-half,fan-out,fan-in,fan-in-max,conn-storm,idle-10k,idle-19k}"
    : "${pairs:=1}"
fi
[[ $broker_cores =~ ^[0-9]+([,-][0-9]+)*$ ]] || die "--broker-cores '$broker_cores': want a CPU list like 0 or 0,1"
[[ $load_cores =~ ^[0-9]+([,-][0-9]+)*$ ]] || die "--load-cores '$load_cores': want a CPU list like 1 or 1,2"
[[ $payload =~ ^[0-9]+$ && $payload -ge 20 ]] || die "--payload '$payload': want a number of bytes, at least 20 (loadtest's header)"
[[ $pairs =~ ^[1-9][0-9]*$ ]] || die "--pairs '$pairs': want a positive number"
[[ $fan =~ ^[1-9][0-9]*$ ]] || die "--fan '$fan': want a positive number"
[[ $storm_workers =~ ^[1-9][0-9]*$ ]] || die "--storm-workers '$storm_workers': want a positive number"
[[ $rate == max || $rate =~ ^[1-9][0-9]*$ ]] || die "--rate '$rate': want a number or max"
[[ -z $fleet_rate || $fleet_rate =~ ^[1-9][0-9]*$ ]] || die "--fleet-rate '$fleet_rate': want a number of msgs/s"
[[ $fleet_reconnect =~ ^(0(\.[0-9]+)?|1(\.0*)?)$ ]] || die "--fleet-reconnect '$fleet_reconnect': want a fraction from 0 to 1"
[[ $fan_in_rate =~ ^[1-9][0-9]*$ ]] || die "--fan-in-rate '$fan_in_rate': want a number of msgs/s"
[[ $mqtt_version == 3.1.1 || $mqtt_version == 5 ]] || die "--mqtt-version '$mqtt_version': want 3.1.1 or 5"
[[ $session == clean || $session == persistent ]] || die "--session '$session': want clean or persistent"
[[ $shardmq_store == memory || $shardmq_store == redis ]] || die "--shardmq-store '$shardmq_store': want memory or redis"
[[ $shardmq_durability == sessions || ( $shardmq_durability == messages && $shardmq_store == redis ) ]] ||
    die "--shardmq-durability '$shardmq_durability': want sessions, or messages with --shardmq-store redis"
[[ $base_port =~ ^[0-9]+$ && $base_port -ge 1024 && $base_port -le 65000 ]] || die "--base-port '$base_port': want 1024..65000"

# Durations such as 10s, 500ms, 1m -> seconds (float), for the CPU sampling window.
to_secs() {
    local d=$1
    case $d in
        *ms) awk -v v="${d%ms}" 'BEGIN { print v / 1000 }' ;;
        *s) awk -v v="${d%s}" 'BEGIN { print v + 0 }' ;;
        *m) awk -v v="${d%m}" 'BEGIN { print v * 60 }' ;;
        *) return 1 ;;
    esac
}
[[ $duration =~ ^[0-9]+(\.[0-9]+)?(ms|s|m)$ ]] || die "--duration '$duration': want e.g. 10s, 500ms or 1m"
[[ $warmup =~ ^[0-9]+(\.[0-9]+)?(ms|s|m)$ ]] || die "--warmup '$warmup': want e.g. 2s, 500ms or 0s"
# CPU list (0,2-3) -> comma-separated CPUs (0,2,3), for shardmq's config and loadtest --cores.
expand_cpus() {
    local part a b out=()
    IFS=, read -r -a parts <<<"$1"
    for part in "${parts[@]}"; do
        a=${part%-*} b=${part#*-}
        ((a <= b)) || return 1
        for ((; a <= b; a++)); do out+=("$a"); done
    done
    (IFS=,; echo "${out[*]}")
}
broker_cpus=$(expand_cpus "$broker_cores") || die "--broker-cores '$broker_cores': a range runs backwards"
load_cpus=$(expand_cpus "$load_cores") || die "--load-cores '$load_cores': a range runs backwards"
duration_s=$(to_secs "$duration")
warmup_s=$(to_secs "$warmup")
awk -v d="$duration_s" 'BEGIN { exit !(d >= 2) }' || die "--duration must be at least 2s (the CPU window drops 0.5 s at each end)"

IFS=, read -r -a broker_list <<<"$brokers"
for b in "${broker_list[@]}"; do
    case $b in shardmq|mosquitto|rumqttd) ;; *) die "--brokers: unknown broker '$b'" ;; esac
done
IFS=, read -r -a scenario_list <<<"$scenarios"

# Scenario name -> loadtest arguments (besides --broker, --cores, --json).
scenario_args() {
    local common=(--payload "$payload" --rate "$rate" --duration "$duration" --warmup "$warmup" --mqtt-version "$mqtt_version" --session "$session")
    case $1 in
        # --clients: the pairs of p2p, the publishers of fan-in (each with one subscriber).
        p2p-qos0) echo --scenario p2p --clients "$pairs" --qos 0 "${common[@]}" ;;
        p2p-qos1) echo --scenario p2p --clients "$pairs" --qos 1 "${common[@]}" ;;
        p2p-qos1-half) common[3]=${half_rate:-1}
            echo --scenario p2p --clients "$pairs" --qos 1 "${common[@]}" ;;
        fan-out) echo --scenario fan-out --publishers 1 --subscribers "$fan" --qos 0 "${common[@]}" ;;
        fan-in) common[3]=$fan_in_rate
            echo --scenario fan-in --clients "$fan" --qos 0 "${common[@]}" ;;
        fan-in-max) echo --scenario fan-in --clients "$fan" --qos 0 "${common[@]}" ;;
        fan-in-qos1-max) echo --scenario fan-in --clients "$fan" --qos 1 "${common[@]}" ;;
        conn-storm) echo --scenario conn-storm --clients "$storm_workers" --rate max --duration "$duration" --warmup "$warmup" --mqtt-version "$mqtt_version" --session "$session" ;;
        fleet-[1-9]*k) local n r reconnect=()
            n=$(fleet_clients "$1"); r=${fleet_rate:-$(( (n + 9) / 10 ))}
            [[ $fleet_reconnect =~ ^0(\.0*)?$ ]] || reconnect=(--reconnect-fraction "$fleet_reconnect")
            echo --scenario fleet --clients "$n" --rate "$r" --qos 1 --payload "$payload" --duration "$duration" --warmup "$warmup" --mqtt-version "$mqtt_version" "${reconnect[@]}" --broker-pid "${broker_pid:-PID}" ;;
        idle-[1-9]*k) echo --scenario idle --clients "$(idle_clients "$1")" --duration 5s --warmup 0s --mqtt-version "$mqtt_version" --broker-pid "${broker_pid:-PID}" ;;
        *) return 1 ;;
    esac
}
# The row label; under --default-config it says so, so the rows can sit beside the
# pinned ones in benchmarks.md.
scenario_label() {
    [[ $default_config == 1 ]] && printf 'default config: '
    [[ $session == persistent ]] && printf 'persistent sessions: '
    [[ $shardmq_store == redis ]] && printf 'shardmq on its Redis store%s: ' \
        "$([[ $shardmq_durability == messages ]] && echo ' with durability = messages')"
    case $1 in
        p2p-qos0) echo "p2p QoS 0, $pairs→$pairs" ;;
        p2p-qos1) echo "p2p QoS 1, $pairs→$pairs" ;;
        p2p-qos1-half) echo "p2p QoS 1, $pairs→$pairs, half saturation" ;;
        fan-out) echo "fan-out QoS 0, 1→$fan" ;;
        fan-in) echo "fan-in QoS 0, $fan→1, $fan_in_rate msgs/s offered" ;;
        fan-in-max) echo "fan-in QoS 0, $fan→1, rate $rate" ;;
        fan-in-qos1-max) echo "fan-in QoS 1, $fan→1, rate $rate" ;;
        conn-storm) echo "conn-storm, $storm_workers workers (connections/s)" ;;
        idle-*) echo "idle, $(idle_clients "$1") connections" ;;
        fleet-*) local n; n=$(fleet_clients "$1")
            echo "fleet QoS 1, $n sessions, ${fleet_rate:-$(( (n + 9) / 10 ))} msgs/s, $fleet_reconnect reconnecting" ;;
    esac
}
# fleet-5k -> 5000
fleet_clients() { local n=${1#fleet-}; echo $((${n%k} * 1000)); }
# idle-10k -> 10000
idle_clients() { local n=${1#idle-}; echo $((${n%k} * 1000)); }
is_idle() { [[ $1 == idle-* ]]; }
for s in "${scenario_list[@]}"; do
    scenario_args "$s" >/dev/null || die "--scenarios: unknown scenario '$s' (p2p-qos0, p2p-qos1, p2p-qos1-half, fan-out, fan-in, fan-in-max, fan-in-qos1-max, conn-storm, idle-<N>k, fleet-<N>k)"
done

cd "$(dirname "$0")/.." || die "cannot cd to the repository root"
root=$PWD
shardmq_bin=$root/target/release/shardmq
loadtest_bin=$root/target/release/loadtest
if [[ -n $benchmarks_file ]]; then
    [[ $benchmarks_file == /* ]] || benchmarks_file=$OLDPWD/$benchmarks_file
else
    benchmarks_file=$root/benchmarks.md
fi
if [[ -n $loadtest_override ]]; then
    loadtest_bin=$(cd "$OLDPWD" && realpath -e "$loadtest_override") || die "--loadtest '$loadtest_override' not found"
fi

# Prints a command, quoted so it can be pasted back into a shell.
show() {
    local a out="+"
    for a in "$@"; do
        if [[ $a =~ ^[][A-Za-z0-9_./:=,@%+-]+$ ]]; then out+=" $a"; else out+=" $(printf '%q' "$a")"; fi
    done
    printf '%s\n' "$out"
}
# Runs a command, or only shows it under --dry-run.
run() { show "$@"; [[ $dry_run == 1 ]] || "$@"; }

# --- cleanup: everything we start is recorded here and stopped by PID ------------
started_pids=()
work=""
cleanup() {
    local pid
    for pid in "${started_pids[@]}"; do
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${started_pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ -n $work && -d $work ]]; then
        if [[ $keep == 1 ]]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
    fi
}
trap cleanup EXIT
trap 'echo "compare.sh: interrupted" >&2; exit 130' INT TERM

forget_pid() {
    local p keep_pids=()
    for p in "${started_pids[@]}"; do [[ $p == "$1" ]] || keep_pids+=("$p"); done
    started_pids=("${keep_pids[@]}")
}

# --- install / build -------------------------------------------------------------
sudo_cmd=()
if [[ $(id -u) != 0 ]]; then
    s=$(command -v sudo) || true
    [[ -n $s ]] && sudo_cmd=("$s")
fi
# mosquitto lives in /usr/sbin, outside a non-root PATH.
find_mosquitto() { command -v mosquitto 2>/dev/null || { [[ -x /usr/sbin/mosquitto ]] && echo /usr/sbin/mosquitto; }; }
find_rumqttd() {
    command -v rumqttd 2>/dev/null ||
        { [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/rumqttd ]] && echo "${CARGO_HOME:-$HOME/.cargo}/bin/rumqttd"; }
}
# Whether --brokers names this broker: only those are installed, built and run.
compares() { [[ ,$brokers, == *,$1,* ]]; }
if [[ $install == 1 ]]; then
    if compares mosquitto && ! find_mosquitto >/dev/null; then
        run "${sudo_cmd[@]}" apt-get update || die "apt-get update failed"
        run "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto || die "installing mosquitto failed"
    fi
    if compares rumqttd && ! find_rumqttd >/dev/null; then
        # Not --locked: rumqttd 0.20.0's locked metrics 0.22.1 does not build on Rust 1.95.
        run cargo install rumqttd --version 0.20.0 || die "cargo install rumqttd failed"
    fi
    compares mosquitto && find_mosquitto >/dev/null && echo "mosquitto present: $(find_mosquitto)"
    compares rumqttd && find_rumqttd >/dev/null && echo "rumqttd present: $(find_rumqttd)"
    # shardmq only when it is compared; loadtest always.
    build_pkgs=(-p loadtest)
    compares shardmq && build_pkgs=(-p shardmq "${build_pkgs[@]}")
    if ! run cargo build --release "${build_pkgs[@]}"; then
        [[ -x $loadtest_bin ]] && { ! compares shardmq || [[ -x $shardmq_bin ]]; } || die "cargo build --release failed"
        echo "!!! cargo build --release failed; going on with the binaries already in target/release (they may be stale)" >&2
    fi
fi
mosquitto_bin=$(find_mosquitto || true)
[[ -n $mosquitto_bin ]] || mosquitto_bin=/usr/sbin/mosquitto
rumqttd_bin=$(find_rumqttd || true)
[[ -n $rumqttd_bin ]] || rumqttd_bin=${CARGO_HOME:-$HOME/.cargo}/bin/rumqttd
if [[ $dry_run == 0 ]]; then
    for b in "${broker_list[@]}"; do
        case $b in
            shardmq) [[ -x $shardmq_bin ]] || die "missing $shardmq_bin (cargo build --release -p shardmq)" ;;
            mosquitto) [[ -x $mosquitto_bin ]] || die "mosquitto not found (apt-get install mosquitto)" ;;
            rumqttd) [[ -x $rumqttd_bin ]] || die "rumqttd not found (cargo install rumqttd --version 0.20.0)" ;;
        esac
    done
    [[ -x $loadtest_bin ]] || die "missing $loadtest_bin (cargo build --release -p loadtest)"
    [[ $default_config == 1 ]] || command -v taskset >/dev/null || die "taskset not found (util-linux)"
    command -v python3 >/dev/null || die "python3 not found"
fi

# 1000-client scenarios need file descriptors in both the broker and loadtest.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d /tmp/shardmq-compare.XXXXXX)
hz=$(getconf CLK_TCK)

# --- helpers ---------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
next_port=$base_port
free_port() { # sets $port to the next port nobody listens on, at or after $next_port
    port=$next_port
    while port_open "$port"; do port=$((port + 1)); done
    next_port=$((port + 1))
}
# utime + stime of a process, in clock ticks; fields counted after the ")" of comm.
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo $((${12} + ${13}))
}

# Config for one broker, written to $work; prints the start command (one word a line).
write_config() { # broker port
    if [[ $default_config == 1 ]]; then write_default_config "$@"; else write_tuned_config "$@"; fi
    if [[ $1 == shardmq && $shardmq_store == redis ]]; then
        printf '[store]\nkind = "redis"\nredis = "redis://127.0.0.1:%s/0"\ndurability = "%s"\n' \
            "$redis_port" "$shardmq_durability" >>"$work/shardmq.toml"
    fi
}

# The pinned comparison: each broker sized for overload on the same core(s).
write_tuned_config() { # broker port
    local b=$1 port=$2 cores_toml
    local listen_port=$port
    case $b in
        shardmq)
            local http_port
            free_port
            http_port=$port
            cores_toml=${broker_cpus//,/, }
            cat >"$work/shardmq.toml" <<CONF
[shards]
cores = [$cores_toml]
[[listeners]]
bind = "127.0.0.1:$listen_port"
[http]
bind = "127.0.0.1:$http_port"
[mqtt]
max-inflight = 100
# The default online bound (1000): past half of it a subscriber slows its
# publishers down instead of dropping, so no bigger queue is needed.
max-online-messages = 1000
[log]
level = "warn"
CONF
            printf '%s\n' "$shardmq_bin" --config "$work/shardmq.toml"
            ;;
        mosquitto)
            cat >"$work/mosquitto.conf" <<CONF
listener $listen_port 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 100
max_queued_messages 1000000
max_queued_bytes 0
max_connections -1
log_dest stderr
log_type error
log_type warning
CONF
            printf '%s\n' "$mosquitto_bin" -c "$work/mosquitto.conf"
            ;;
        rumqttd)
            # rumqttd speaks 3.1.1 on a [v4] listener and 5 on a [v5] one.
            local v=v4
            [[ $mqtt_version == 5 ]] && v=v5
            cat >"$work/rumqttd.toml" <<CONF
id = 0
[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 100000
max_segment_size = 104857600
max_segment_count = 10
[$v.1]
name = "$v-1"
listen = "127.0.0.1:$listen_port"
next_connection_delay_ms = 0
[$v.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 100
dynamic_filters = true
CONF
            printf '%s\n' "$rumqttd_bin" --quiet --config "$work/rumqttd.toml"
            ;;
    esac
}

# --default-config: each broker as it ships, only its ports moved to free ones on
# 127.0.0.1 (a user's first run, where the defaults are what is measured).
write_default_config() { # broker port
    local b=$1 port=$2
    local listen_port=$port
    case $b in
        shardmq)
            local http_port
            free_port
            http_port=$port
            # Everything else from the embedded configs/default.toml: cores = "all".
            cat >"$work/shardmq.toml" <<CONF
[[listeners]]
bind = "127.0.0.1:$listen_port"
[http]
bind = "127.0.0.1:$http_port"
CONF
            printf '%s\n' "$shardmq_bin" --config "$work/shardmq.toml"
            ;;
        mosquitto)
            # Run without a config file, Mosquitto 2 listens on localhost:1883 and
            # allows anonymous clients; a listener line alone would refuse them.
            cat >"$work/mosquitto.conf" <<CONF
listener $listen_port 127.0.0.1
allow_anonymous true
CONF
            printf '%s\n' "$mosquitto_bin" -c "$work/mosquitto.conf"
            ;;
        rumqttd)
            # rumqttd needs a config file; these are the values of the rumqttd.toml
            # in its repository (rumqttd/rumqttd.toml), without its custom segment,
            # console, prometheus and websocket listeners.
            local v=v4 filters="dynamic_filters = true"
            [[ $mqtt_version == 5 ]] && { v=v5; filters=""; }
            cat >"$work/rumqttd.toml" <<CONF
id = 0
[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[$v.1]
name = "$v-1"
listen = "127.0.0.1:$listen_port"
next_connection_delay_ms = 1
[$v.1.connections]
connection_timeout_ms = 60000
max_payload_size = 20480
max_inflight_count = 100
$filters
CONF
            printf '%s\n' "$rumqttd_bin" --quiet --config "$work/rumqttd.toml"
            ;;
    esac
}

# taskset prefixes for the broker and loadtest: none under --default-config.
broker_pin=(taskset -c "$broker_cores")
load_pin=(taskset -c "$load_cores")
load_cores_args=(--cores "$load_cpus")
if [[ $default_config == 1 ]]; then broker_pin=() load_pin=() load_cores_args=(); fi

broker_pid=""
broker_port=""
start_broker() { # broker; sets broker_pid, broker_port
    local b=$1 cmd=() port
    free_port
    broker_port=$port
    write_config "$b" "$broker_port" >"$work/$b.cmd" # not a subshell: free_port counts on
    mapfile -t cmd <"$work/$b.cmd"
    if [[ $default_config == 1 ]]; then
        echo "### $b on 127.0.0.1:$broker_port, default config, unpinned"
    else
        echo "### $b on 127.0.0.1:$broker_port, cores $broker_cores"
    fi
    show "${broker_pin[@]}" "${cmd[@]}"
    if [[ $dry_run == 1 ]]; then broker_pid=DRY; return 0; fi
    # Each start on an empty store: what an earlier run left is not loaded.
    if [[ $b == shardmq && $shardmq_store == redis ]]; then
        redis-cli -p "$redis_port" flushall >/dev/null || echo "!!! could not empty Redis" >&2
    fi
    "${broker_pin[@]}" "${cmd[@]}" >"$work/$b.log" 2>&1 &
    broker_pid=$!
    started_pids+=("$broker_pid")
    for _ in $(seq 100); do
        if port_open "$broker_port"; then return 0; fi
        if ! kill -0 "$broker_pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    if kill -0 "$broker_pid" 2>/dev/null; then
        echo "!!! $b did not listen on 127.0.0.1:$broker_port within 10 s; its log:" >&2
    else
        echo "!!! $b exited before listening on 127.0.0.1:$broker_port; its log:" >&2
    fi
    tail -n 20 "$work/$b.log" >&2
    stop_broker "$b"
    return 1
}
stop_broker() { # broker
    local b=$1
    [[ $dry_run == 1 ]] && { show kill -TERM "<$b pid>"; return 0; }
    [[ -n $broker_pid ]] || return 0
    kill -TERM "$broker_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$broker_pid" 2>/dev/null; then
        echo "!!! $b (pid $broker_pid) ignored SIGTERM for 5 s; SIGKILL" >&2
        kill -KILL "$broker_pid" 2>/dev/null
    fi
    wait "$broker_pid" 2>/dev/null
    forget_pid "$broker_pid"
    for _ in $(seq 50); do port_open "$broker_port" || break; sleep 0.1; done
    port_open "$broker_port" && echo "!!! port $broker_port still open after stopping $b" >&2
    broker_pid=""
}

# The broker's last error or warning line since the run began (ANSI colours removed).
broker_says() { # broker log-offset
    local line
    line=$(tail -c +"$(($2 + 1))" "$work/$1.log" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' |
        grep -iE 'error|warn' | tail -n 1 | tr -s ' ' | cut -c1-200)
    [[ -n $line ]] && echo "    $1 logged: $line" >&2
}

# One result line per run: scenario broker status json cpu_us_per_msg note
results=$work/results.tsv
: >"$results"
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"; }

run_scenario() { # broker scenario
    local b=$1 s=$2 args json=$work/$b-$s.json
    local half_rate=""
    if [[ $s == p2p-qos1-half && $dry_run == 0 ]]; then
        local full=$work/$b-p2p-qos1.json
        half_rate=$([[ -s $full ]] && python3 -c 'import json, sys
print(int(float(json.load(open(sys.argv[1]))["received_per_sec"]) / 2))' "$full" 2>/dev/null)
        if [[ ! $half_rate =~ ^[1-9][0-9]*$ ]]; then
            echo "--- $b / $(scenario_label "$s")"
            echo "!!! $b / $s FAILED: needs a p2p-qos1 run of $b with messages received, for its rate" >&2
            record "$s" "$b" FAILED - - "no p2p-qos1 rate of this broker to halve"
            return 1
        fi
    fi
    [[ $s == p2p-qos1-half && $dry_run == 1 ]] && half_rate=HALF_OF_P2P_QOS1_RATE
    read -r -a args <<<"$(scenario_args "$s")"
    local cmd=("${load_pin[@]}" "$loadtest_bin" --broker "127.0.0.1:$broker_port"
        "${args[@]}" "${load_cores_args[@]}" --json "$json")
    echo "--- $b / $(scenario_label "$s")"
    show "${cmd[@]}"
    [[ $dry_run == 1 ]] && return 0
    if ! kill -0 "$broker_pid" 2>/dev/null; then
        echo "!!! $b is not running; skipping $s" >&2
        record "$s" "$b" FAILED - - "broker not running"
        return 1
    fi
    rm -f "$json"
    local log_offset
    log_offset=$(stat -c %s "$work/$b.log" 2>/dev/null || echo 0)
    # CPU sampler: broker ticks at warm-up + 0.5 s and at the end of the period - 0.5 s
    # (none for idle: it measures memory).
    local t_a t_b sampler=""
    t_a=$(awk -v w="$warmup_s" 'BEGIN { print w + 0.5 }')
    t_b=$(awk -v d="$duration_s" 'BEGIN { print d - 1 }')
    : >"$work/$b-$s.cpu"
    if ! is_idle "$s"; then
        (
            sleep "$t_a"
            printf '%s %s\n' "$(date +%s.%N)" "$(cpu_ticks "$broker_pid" || echo x)"
            sleep "$t_b"
            printf '%s %s\n' "$(date +%s.%N)" "$(cpu_ticks "$broker_pid" || echo x)"
        ) >"$work/$b-$s.cpu" &
        sampler=$!
        started_pids+=("$sampler")
    fi
    local budget rc
    budget=$(awk -v w="$warmup_s" -v d="$duration_s" 'BEGIN { printf "%d", w + d + 30 }')
    # fleet: connecting thousands of clients comes before the warm-up.
    [[ $s == fleet-* ]] && budget=$((budget + $(fleet_clients "$s") / 500))
    # In the background, so a Ctrl-C reaches our trap at once; timeout passes a TERM on.
    timeout --kill-after=5 "$budget" "${cmd[@]}" >"$work/$b-$s.out" 2>&1 &
    local lt=$!
    started_pids+=("$lt")
    wait "$lt"
    rc=$?
    forget_pid "$lt"
    if [[ -n $sampler ]]; then
        [[ $rc != 0 ]] && kill "$sampler" 2>/dev/null
        wait "$sampler" 2>/dev/null
        forget_pid "$sampler"
    fi
    local note=""
    if ! kill -0 "$broker_pid" 2>/dev/null; then note="broker died during the run"; fi
    if [[ $rc != 0 || ! -s $json ]]; then
        local why
        # The error line, not a backtrace under it; else the last line printed.
        why=$(grep -m1 -E '^(Error|error)\b|panicked' "$work/$b-$s.out" ||
            grep -v '^[[:space:]]*$' "$work/$b-$s.out" | tail -n 1)
        why=$(printf '%s' "$why" | tr '\t|' ' /' | cut -c1-160)
        [[ $rc == 124 || $rc == 137 ]] && why="timed out after ${budget}s"
        [[ $rc == 0 ]] && why="no JSON written"
        echo "!!! $b / $s FAILED (loadtest exit $rc): $why" >&2
        [[ $keep == 1 ]] && echo "    full output: $work/$b-$s.out" >&2
        broker_says "$b" "$log_offset"
        record "$s" "$b" FAILED - - "exit $rc: ${why:-no output}${note:+; $note}"
        return 1
    fi
    if [[ -n $note ]]; then # the broker died: its figures are not comparable
        echo "!!! $b / $s FAILED: $note" >&2
        broker_says "$b" "$log_offset"
        record "$s" "$b" FAILED - - "$note"
        return 1
    fi
    # A run that received nothing has no figures to compare: a failure, with its reasons.
    local empty
    empty=$(python3 - "$json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
if j.get("scenario") == "idle":
    if not j.get("connections") or j.get("broker_rss_bytes_per_connection") is None:
        print("no idle connection measured (connections %s, errors %s)" % (j.get("connections"), j.get("errors")))
elif not j.get("received"):
    reasons = j.get("error_reasons") or {}
    why = "; ".join("%s x%s" % (k, v) for k, v in reasons.items()) if isinstance(reasons, dict) else str(reasons)
    # Deliveries in the window of messages sent before it: a broker still working
    # through what it took in earlier (its publishers blocked all along), not one
    # that delivered nothing. A longer --warmup did not change that for Mosquitto.
    backlog = j.get("received_in_window_per_sec") or 0
    if backlog:
        print("nothing sent in the window arrived, but %.0f msgs/s sent before it did "
              "(errors %s%s)" % (backlog, j.get("errors"), ": " + why if why else ""))
    else:
        print("nothing received (errors %s%s)" % (j.get("errors"), ": " + why if why else ""))
PY
    ) || empty="JSON unreadable"
    if [[ -n $empty ]]; then
        empty=$(printf '%s' "$empty" | tr '\t|' ' /' | cut -c1-160)
        echo "!!! $b / $s FAILED: $empty" >&2
        broker_says "$b" "$log_offset"
        record "$s" "$b" FAILED - - "$empty${note:+; $note}"
        return 1
    fi
    # CPU-µs per received message over the sampled window.
    local cpu="-"
    if is_idle "$s"; then
        :
    elif [[ $s == fleet-* ]]; then
        # loadtest samples the broker itself (--broker-pid) from the shared start: our
        # sampler's clock starts before thousands of connects, and would measure them.
        cpu=$(python3 -c 'import json, sys
v = json.load(open(sys.argv[1])).get("broker_cpu_us_per_message")
print("-" if v is None else "%.3f" % v)' "$json" 2>/dev/null) || cpu="-"
    elif [[ $(wc -l <"$work/$b-$s.cpu") == 2 ]] && ! grep -q ' x$' "$work/$b-$s.cpu"; then
        cpu=$(python3 - "$work/$b-$s.cpu" "$json" "$hz" <<'PY'
import json, sys
(t0, c0), (t1, c1) = [map(float, l.split()) for l in open(sys.argv[1])]
rate = float(json.load(open(sys.argv[2])).get("received_per_sec") or 0)
hz = float(sys.argv[3])
if t1 <= t0 or rate <= 0:
    print("-")
else:
    print("%.3f" % ((c1 - c0) / hz * 1e6 / (t1 - t0) / rate))
PY
        ) || cpu="-"
    else
        note="${note:+$note; }no CPU sample"
    fi
    record "$s" "$b" ok "$json" "$cpu" "$note"
    python3 - "$json" <<'PY' || true
import json, sys
j = json.load(open(sys.argv[1]))
l = j.get("latency_us") or {}
print("    received %s (%s msgs/s), lost %s, dup %s, reordered %s, p50 %s µs, p99 %s µs, p99.9 %s µs, errors %s"
      % (j.get("received"), j.get("received_per_sec"), j.get("lost"), j.get("duplicated"),
         j.get("reordered"), l.get("p50"), l.get("p99"), l.get("p999"), j.get("errors")))
PY
}

# --- the runs --------------------------------------------------------------------
if [[ $default_config == 1 ]]; then
    echo "side by side, default config: brokers ${broker_list[*]} on their defaults, nothing pinned ($(nproc) CPUs)"
else
    echo "side by side: brokers ${broker_list[*]} on cores $broker_cores, loadtest on cores $load_cores"
fi
echo "scenarios: ${scenario_list[*]}; warm-up $warmup, duration $duration, payload $payload B, rate $rate, MQTT $mqtt_version"
if [[ $keep == 1 ]]; then
    echo "work directory: $work (kept)"
else
    echo "work directory: $work (removed at exit; --keep keeps it)"
fi
redis_port=""
if compares shardmq && [[ $shardmq_store == redis ]]; then
    free_port
    redis_port=$port
    echo "### redis-server on 127.0.0.1:$redis_port (shardmq's store)"
    if [[ $dry_run == 0 ]]; then
        command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
        redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
            --dir "$work" >"$work/redis.log" 2>&1 &
        started_pids+=("$!")
        for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 || die "redis-server did not answer on 127.0.0.1:$redis_port"
    fi
fi
for b in "${broker_list[@]}"; do
    if ! start_broker "$b"; then
        for s in "${scenario_list[@]}"; do record "$s" "$b" FAILED - - "broker did not start"; done
        continue
    fi
    first=1
    for s in "${scenario_list[@]}"; do
        if [[ $first == 0 ]]; then
            # Every scenario on a fresh broker: what an earlier run left behind
            # (heap for idle memory, or a broker a run broke, as rumqttd 0.20's
            # router after fan-out) must not count against the next one.
            stop_broker "$b"
            if ! start_broker "$b"; then
                record "$s" "$b" FAILED - - "broker did not restart"
                continue
            fi
        fi
        first=0
        run_scenario "$b" "$s" || true
        [[ $dry_run == 1 ]] || sleep 1
    done
    stop_broker "$b"
done

[[ $dry_run == 1 ]] && { echo "(dry run: nothing was started)"; exit 0; }

# --- the table -------------------------------------------------------------------
labels=$work/labels.tsv
for s in "${scenario_list[@]}"; do printf '%s\t%s\n' "$s" "$(scenario_label "$s")"; done >"$labels"
table=$(python3 - "$results" "$labels" <<'PY'
import json, sys

labels = dict(l.rstrip("\n").split("\t", 1) for l in open(sys.argv[2]) if l.strip())
runs = {}
order = []
for line in open(sys.argv[1]):
    s, b, status, path, cpu, note = line.rstrip("\n").split("\t")
    r = {"status": status, "note": note, "idle": s.startswith("idle-")}
    if status == "ok":
        try:
            j = json.load(open(path))
            lat = j.get("latency_us") or {}
            if r["idle"]:
                r.update(connections=j.get("connections"), errors=j.get("errors"),
                         per_conn=j.get("broker_rss_bytes_per_connection"),
                         before=j.get("broker_rss_kib_before"), after=j.get("broker_rss_kib_connected"))
            else:
                r.update(rate=float(j["received_per_sec"]), p50=lat.get("p50"), p99=lat.get("p99"),
                     p999=lat.get("p999"), lost=j.get("lost"), errors=j.get("errors"),
                     reasons=j.get("error_reasons"),
                     cpu=None if cpu == "-" else float(cpu))
            if s == "conn-storm":  # a run's "messages" are its connect-subscribe-disconnect cycles
                r["lost"] = None
            if s.startswith("fleet-"):
                rec = j.get("reconnect_us") or {}
                r.update(connections=j.get("connections"), reconnects=j.get("reconnects"),
                         rec_p99=rec.get("p99"), cpu_pct=j.get("broker_cpu_percent"),
                         rss=j.get("broker_rss_kib_connected"), missing=(j.get("lost") or 0) + (j.get("not_arrived") or 0),
                         dup=j.get("duplicated"), warnings=len(j.get("warnings") or []))
        except Exception as e:  # a JSON without the agreed keys
            r = {"status": "FAILED", "note": "bad JSON: %s" % e}
    runs[(s, b)] = r
    if s not in order:
        order.append(s)

def num(v, fmt="{:,.0f}"):
    if v is None:
        return "–"
    if isinstance(v, (int, float)):
        return fmt.format(v)
    if isinstance(v, (list, dict)):
        return str(len(v))
    return str(v)

def ratio(a, b, higher_better=True):
    if a is None or b is None or b == 0 or a == 0:
        return "–"
    return "%.2f×" % (a / b)

print("| scenario | broker | received msgs/s | p50 µs | p99 µs | p99.9 µs | lost | errors | broker CPU-µs/msg "
      "| msgs/s vs Mosquitto | msgs/s vs rumqttd | CPU/msg vs Mosquitto | CPU/msg vs rumqttd |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in order:
    if s.startswith("idle-"):
        continue
    brokers = [b for (ss, b) in runs if ss == s]
    mos = runs.get((s, "mosquitto"), {})
    rum = runs.get((s, "rumqttd"), {})
    for b in brokers:
        r = runs[(s, b)]
        if r["status"] != "ok":
            print("| %s | %s | FAILED: %s | | | | | | | | | | |" % (labels.get(s, s), b, r["note"].replace("|", "/")))
            continue
        cpu = r.get("cpu")
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            labels.get(s, s), b, num(r["rate"]), num(r["p50"]), num(r["p99"]), num(r["p999"]),
            num(r["lost"]), num(r["errors"]), num(cpu, "{:.2f}"),
            ratio(r["rate"], mos.get("rate")), ratio(r["rate"], rum.get("rate")),
            ratio(cpu, mos.get("cpu")), ratio(cpu, rum.get("cpu"))))

fleet = [s for s in order if s.startswith("fleet-")]
if fleet:
    print()
    print("| scenario | broker | connections | missing | duplicated | reconnects | reconnect p99 µs "
          "| broker CPU % | broker RSS KiB | loadtest warnings | CPU % vs Mosquitto | RSS vs Mosquitto |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in fleet:
    mos = runs.get((s, "mosquitto"), {})
    for b in [b for (ss, b) in runs if ss == s]:
        r = runs[(s, b)]
        if r["status"] != "ok":
            continue
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            labels.get(s, s), b, num(r["connections"]), num(r["missing"]), num(r["dup"]),
            num(r["reconnects"]), num(r["rec_p99"]), num(r["cpu_pct"], "{:.1f}"), num(r["rss"]),
            num(r["warnings"]), ratio(r["cpu_pct"], mos.get("cpu_pct")), ratio(r["rss"], mos.get("rss"))))

idle = [s for s in order if s.startswith("idle-")]
if idle:
    print()
    print("| scenario | broker | connections | RSS before KiB | RSS connected KiB | RSS B/connection "
          "| vs Mosquitto | vs rumqttd |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
for s in idle:
    mos = runs.get((s, "mosquitto"), {})
    rum = runs.get((s, "rumqttd"), {})
    for b in [b for (ss, b) in runs if ss == s]:
        r = runs[(s, b)]
        if r["status"] != "ok":
            print("| %s | %s | FAILED: %s | | | | | |" % (labels.get(s, s), b, r["note"].replace("|", "/")))
            continue
        print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            labels.get(s, s), b, num(r["connections"]), num(r["before"]), num(r["after"]),
            num(r["per_conn"]), ratio(r["per_conn"], mos.get("per_conn")),
            ratio(r["per_conn"], rum.get("per_conn"))))
PY
)
echo
echo "$table"
notes=$(awk -F'\t' '$3 == "ok" && $6 != "" { print "- " $2 " / " $1 ": " $6 }' "$results")
[[ -n $notes ]] && { echo; echo "$notes"; }
echo
echo "Ratios: msgs/s above 1× is better; CPU/msg and RSS/connection below 1× are better. Latency from the intended send time."

# One latency-percentile chart per message scenario, every broker that measured it
# overlaid (legend: the broker). Kept with --write-benchmarks, else in the work dir,
# which only --keep keeps: its paths are printed only then.
stamp=$(date -u +%Y%m%d-%H%M)
[[ $default_config == 1 ]] && stamp+=-default
plot_dir=$work/plots
[[ $write_benchmarks == 1 ]] && plot_dir=$root/benchmarks/plots
plots=()
for s in "${scenario_list[@]}"; do
    is_idle "$s" && continue
    runs_dir=$work/plot-$s
    mkdir -p "$runs_dir" "$plot_dir"
    jsons=()
    while IFS=$'\t' read -r rs rb status path _; do
        [[ $rs == "$s" && $status == ok ]] || continue
        cp "$path" "$runs_dir/$rb.json" && jsons+=("$runs_dir/$rb.json")
    done <"$results"
    [[ ${#jsons[@]} -gt 0 ]] || continue
    png=$plot_dir/$stamp-$s.png
    if "$loadtest_bin" plot --title "$(scenario_label "$s")" --out "$png" "${jsons[@]}" >/dev/null 2>"$work/plot-$s.err"; then
        plots+=("$s	$png")
        [[ $write_benchmarks == 1 || $keep == 1 ]] && echo "latency plot: $png"
    else
        echo "!!! plotting $s failed: $(head -n 1 "$work/plot-$s.err")" >&2
    fi
done

if [[ ${#plots[@]} -gt 0 && $write_benchmarks == 0 && $keep == 0 ]]; then
    echo "${#plots[@]} latency plot(s) made in the work directory, removed at exit (--keep or --write-benchmarks keeps them)"
fi
ok_runs=$(awk -F'\t' '$3 == "ok"' "$results" | wc -l)
failed_runs=$(awk -F'\t' '$3 != "ok"' "$results" | wc -l)
echo "$ok_runs run(s) measured, $failed_runs failed."
if [[ $write_benchmarks == 1 && $ok_runs == 0 ]]; then
    echo "compare.sh: no run measured anything; benchmarks.md left alone" >&2
    write_benchmarks=0
fi
if [[ $write_benchmarks == 1 ]]; then
    commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | head -c1)
    cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
    # The versions of the brokers compared, and the compiler.
    versions=()
    for b in "${broker_list[@]}"; do
        case $b in
            shardmq) versions+=("shardmq $commit${dirty:+ (dirty tree)}") ;;
            mosquitto) versions+=("$("$mosquitto_bin" -h 2>/dev/null | awk 'NR == 1 { print $1, $3 }')") ;;
            rumqttd) versions+=("$("$rumqttd_bin" --version 2>/dev/null)") ;;
        esac
    done
    versions+=("$(rustc --version 2>/dev/null | cut -d' ' -f1-2)")
    versions=$(printf '%s, ' "${versions[@]}")
    versions=${versions%, }
    names=$(printf '%s, ' "${broker_list[@]}" | sed 's/mosquitto/Mosquitto/; s/, $//')
    {
        echo
        if [[ $default_config == 1 ]]; then
            echo "## Side by side, default config: $names ($(date -u +%F), commit $commit)"
            echo
            echo "Command: \`loadtest/compare.sh${orig_args[*]:+ ${orig_args[*]}}\`"
            # What "its defaults" means, for each broker compared.
            defaults=()
            for b in "${broker_list[@]}"; do
                case $b in
                    shardmq) defaults+=("shardmq on its embedded default config (\`cores = \"all\"\`, $(nproc) shards here)") ;;
                    mosquitto) defaults+=("Mosquitto on its defaults, anonymous clients allowed as without a config file") ;;
                    rumqttd) defaults+=("rumqttd on the values of its repository's rumqttd.toml") ;;
                esac
            done
            echo "(every broker on its defaults and unpinned, loadtest unpinned: $(printf '%s; ' "${defaults[@]}" | sed 's/; $//')."
            echo "Only the ports differ. Warm-up $warmup, measured $duration, payload $payload B, rate $rate,"
            echo "MQTT $mqtt_version, everything on 127.0.0.1.)"
        else
            echo "## Side by side: $names ($(date -u +%F), commit $commit)"
            echo
            echo "Command: \`loadtest/compare.sh${orig_args[*]:+ ${orig_args[*]}}\`"
            echo "(broker on CPU $broker_cores, loadtest on CPU $load_cores, warm-up $warmup, measured $duration,"
            echo "payload $payload B, rate $rate, MQTT $mqtt_version, everything on 127.0.0.1)."
        fi
        echo
        echo "Machine: $(nproc) CPUs, $cpu_model, $mem, $(uname -sr). Versions: $versions."
        echo "Date: $(date -u '+%F %H:%M UTC')."
        echo
        echo "$table"
        [[ -n $notes ]] && { echo; echo "$notes"; }
        if [[ ${#plots[@]} -gt 0 ]]; then
            echo
            echo "Latency by percentile (from the intended send time), brokers overlaid:"
            echo
            for entry in "${plots[@]}"; do
                echo "- $(scenario_label "${entry%%	*}"): ![](${entry#*	})"
            done | sed "s#$root/##"
        fi
        echo
        echo "Broker CPU-µs/msg: utime + stime from /proc/<pid>/stat over a window inside the measured"
        echo "period, divided by the messages received in it (deliveries, for fan-out)."
    } >>"$benchmarks_file"
    echo "appended to $benchmarks_file"
fi
# 1 when any run failed, so a caller sees it; the table above says which.
[[ $failed_runs == 0 ]]
exit
}
