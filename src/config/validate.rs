//! Rules serde's types cannot express: ranges, non-empty lists, duplicates, and
//! settings that must agree with each other (TiKV's `validate()` after parsing).
//!
//! A rule names the key path it is about; the loader turns that into a line.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::Duration;

use super::sections::{
    AclConfig, BindTo, ClusterConfig, Cores, Durability, EventsConfig, JwtConfig, LogConfig,
    SinkConfig, SinkFormat, StoreConfig, StoreKind, TokenFrom,
};
use super::Config;
use crate::topic::MAX_SHARDS;

/// The largest packet MQTT can describe (see `protocol::MAX_PACKET_SIZE`).
const MAX_PACKET_SIZE: u32 = crate::protocol::MAX_PACKET_SIZE as u32;
/// The smallest `max-packet-size`: room for a CONNECT with a short client id.
const MIN_PACKET_SIZE: u32 = 16;

/// One broken rule: the key path it is about and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Violation {
    /// `mqtt.max-inflight`, `listeners[1].bind`, `shards.cores[2]`.
    pub path: String,
    pub problem: String,
    /// Advice better than "set it to an allowed value", when the rule has some.
    pub fix: Option<String>,
}

fn violation(path: impl Into<String>, problem: impl Into<String>) -> Violation {
    Violation {
        path: path.into(),
        problem: problem.into(),
        fix: None,
    }
}

/// Checks every rule, in file order, and returns the first broken one.
pub(super) fn check(config: &Config) -> Result<(), Violation> {
    check_cores(&config.shards.cores)?;
    check_listeners(config)?;
    check_mqtt(config)?;
    check_log(&config.log)?;
    check_sys(config.sys.interval)?;
    check_jwt(&config.auth.jwt)?;
    check_jwt_binding(&config.auth.jwt)?;
    check_acl(&config.acl)?;
    check_events(&config.events)?;
    check_store(&config.store)?;
    check_node_id(&config.cluster.node_id)?;
    check_cluster(&config.cluster, &config.store)
}

fn check_cluster(cluster: &ClusterConfig, store: &StoreConfig) -> Result<(), Violation> {
    if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&cluster.lease) {
        return Err(violation(
            "cluster.lease",
            format!(
                "{} is outside 1s .. 60s",
                humantime::format_duration(cluster.lease)
            ),
        ));
    }
    if !cluster.enabled() {
        return Ok(());
    }
    for (key, addr) in [
        ("cluster.bind", &cluster.bind),
        ("cluster.advertise", &cluster.advertise),
    ] {
        if !addr.is_empty() && addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(violation(
                key,
                format!("\"{addr}\" is not an address host:port with an IP host"),
            ));
        }
    }
    if cluster.advertise.is_empty() && cluster.bind.starts_with("0.0.0.0:") {
        return Err(Violation {
            path: "cluster.advertise".into(),
            problem: format!(
                "bind is \"{}\", which other nodes cannot dial",
                cluster.bind
            ),
            fix: Some("set advertise to this node's address, such as \"10.0.0.5:18900\"".into()),
        });
    }
    if store.kind != StoreKind::Redis {
        return Err(Violation {
            path: "cluster.bind".into(),
            problem: "a cluster keeps its sessions and routes in Redis, and [store] kind is \"memory\""
                .into(),
            fix: Some(
                "set kind = \"redis\" in [store] with the redis URL every node shares, or bind = \"\" for a single node"
                    .into(),
            ),
        });
    }
    Ok(())
}

/// The longest `key-prefix`: every key carries it, so a long one costs Redis
/// memory on every session.
const MAX_KEY_PREFIX: usize = 64;

fn check_store(store: &StoreConfig) -> Result<(), Violation> {
    if store.key_prefix.len() > MAX_KEY_PREFIX {
        return Err(violation(
            "store.key-prefix",
            format!(
                "\"{}\" is {} bytes, over {MAX_KEY_PREFIX}",
                store.key_prefix,
                store.key_prefix.len()
            ),
        ));
    }
    if store.key_prefix.contains(['{', '}']) {
        return Err(violation(
            "store.key-prefix",
            format!(
                "\"{}\" holds a brace, which would change the keys' Redis Cluster hash tag",
                store.key_prefix
            ),
        ));
    }
    let timeout = store.timeout;
    if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&timeout) {
        return Err(violation(
            "store.timeout",
            format!(
                "{} is outside 10ms .. 1m",
                humantime::format_duration(timeout)
            ),
        ));
    }
    if store.durability == Durability::Messages && store.kind == StoreKind::Memory {
        return Err(Violation {
            path: "store.durability".into(),
            problem: "\"messages\" stores queued messages in Redis, and kind is \"memory\"".into(),
            fix: Some("set kind = \"redis\" with a redis URL, or durability = \"sessions\"".into()),
        });
    }
    if let Err(e) = crate::store::RedisUrl::parse(&store.redis) {
        return Err(violation(
            "store.redis",
            format!("\"{}\": {e}", store.redis),
        ));
    }
    Ok(())
}

/// The longest `node-id`: it is part of every session's owner field.
const MAX_NODE_ID: usize = 128;

fn check_node_id(id: &str) -> Result<(), Violation> {
    let bad = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".:_-".contains(*c)));
    if let Some(c) = bad {
        return Err(violation(
            "cluster.node-id",
            format!("\"{id}\" holds {c:?}, outside letters, digits and `.:_-`"),
        ));
    }
    if id.len() > MAX_NODE_ID {
        return Err(violation(
            "cluster.node-id",
            format!("\"{id}\" is {} bytes, over {MAX_NODE_ID}", id.len()),
        ));
    }
    Ok(())
}

fn check_cores(cores: &Cores) -> Result<(), Violation> {
    let Cores::List(list) = cores else {
        return Ok(());
    };
    if list.is_empty() {
        return Err(violation(
            "shards.cores",
            "the list is empty: no shard would run",
        ));
    }
    if let Some(i) = list.iter().position(|&c| c >= MAX_SHARDS) {
        return Err(violation(
            format!("shards.cores[{i}]"),
            format!(
                "CPU {} is out of range (shard masks hold {MAX_SHARDS} shards)",
                list[i]
            ),
        ));
    }
    if let Some((i, first)) = first_duplicate(list) {
        return Err(Violation {
            path: format!("shards.cores[{i}]"),
            problem: format!(
                "CPU {} is listed twice (elements {first} and {i}): two shards cannot share a core",
                list[i]
            ),
            fix: Some("list each CPU once".to_owned()),
        });
    }
    Ok(())
}

fn check_listeners(config: &Config) -> Result<(), Violation> {
    if config.listeners.is_empty() {
        return Err(Violation {
            path: "listeners".to_owned(),
            problem: "no MQTT listener: clients could not connect".to_owned(),
            fix: Some(
                "add a [[listeners]] table with `bind = \"127.0.0.1:1883\"`, or remove \
                 `listeners = []` to use the default listener"
                    .to_owned(),
            ),
        });
    }
    // Port 0 asks the OS for a free port, so several port-0 binds do not collide.
    let binds: Vec<SocketAddr> = config.listeners.iter().map(|l| l.bind).collect();
    let fixed: Vec<(usize, SocketAddr)> = binds
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, a)| a.port() != 0)
        .collect();
    let addrs: Vec<SocketAddr> = fixed.iter().map(|(_, a)| *a).collect();
    if let Some((j, first)) = first_duplicate(&addrs) {
        let (i, addr) = fixed[j];
        return Err(Violation {
            path: format!("listeners[{i}].bind"),
            problem: format!(
                "{addr} is already the address of listeners[{}]; with SO_REUSEPORT both \
                 would bind and silently split the connections",
                fixed[first].0
            ),
            fix: Some("give each listener its own address or port".to_owned()),
        });
    }
    let http = config.http.bind;
    if http.port() != 0 {
        if let Some(i) = binds.iter().position(|&b| b == http) {
            return Err(Violation {
                path: "http.bind".to_owned(),
                problem: format!("{http} is also the address of MQTT listeners[{i}]"),
                fix: Some("give [http] bind a port no MQTT listener uses".to_owned()),
            });
        }
    }
    Ok(())
}

fn check_mqtt(config: &Config) -> Result<(), Violation> {
    let m = &config.mqtt;
    if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&m.max_packet_size) {
        return Err(violation(
            "mqtt.max-packet-size",
            format!("{} is out of range", m.max_packet_size),
        ));
    }
    if m.max_inflight == 0 {
        return Err(violation(
            "mqtt.max-inflight",
            "0 is out of range: no QoS 1 or 2 message could ever be sent",
        ));
    }
    if m.max_client_id_len == 0 {
        return Err(violation(
            "mqtt.max-client-id-len",
            "0 is out of range: every client id would be refused",
        ));
    }
    let keepalive = m.max_keepalive;
    if keepalive.subsec_nanos() != 0 || !(1..=u64::from(u16::MAX)).contains(&keepalive.as_secs()) {
        return Err(violation(
            "mqtt.max-keepalive",
            format!(
                "{} is not a whole number of seconds from 1 to 65535 (MQTT carries the \
                 keepalive as a 16-bit number of seconds)",
                humantime::format_duration(keepalive)
            ),
        ));
    }
    let versions = &m.allowed_protocol_versions;
    if versions.is_empty() {
        return Err(violation(
            "mqtt.allowed-protocol-versions",
            "the list is empty: every client would be refused",
        ));
    }
    if let Some((i, _)) = first_duplicate(versions) {
        return Err(violation(
            format!("mqtt.allowed-protocol-versions[{i}]"),
            format!("\"{}\" is listed twice", versions[i].name()),
        ));
    }
    if m.max_topic_levels == 0 {
        return Err(violation(
            "mqtt.max-topic-levels",
            "0 is out of range: every topic has at least one level",
        ));
    }
    if m.connect_timeout.is_zero() {
        return Err(violation(
            "mqtt.connect-timeout",
            "0s would drop every client before it could send CONNECT",
        ));
    }
    if m.stall_timeout.is_zero() {
        return Err(violation(
            "mqtt.stall-timeout",
            "0s would count every busy subscriber as stalled and drop its messages",
        ));
    }
    if !m.send_timeout.is_zero() && m.send_timeout < m.stall_timeout {
        return Err(violation(
            "mqtt.send-timeout",
            "it is shorter than mqtt.stall-timeout: a subscriber would be disconnected \
             before it counts as stalled; raise it, or set \"0s\" to never disconnect",
        ));
    }
    Ok(())
}

/// Bare words in a filter are `tracing` targets, so a misspelt level ("infoo") would
/// silently mean "everything from target infoo". Only levels may stand alone here.
fn check_log(log: &LogConfig) -> Result<(), Violation> {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    let level = log.level.trim();
    if level.is_empty() {
        return Err(violation("log.level", "the filter is empty"));
    }
    for directive in level.split(',').map(str::trim) {
        let bare = !directive.contains('=') && !directive.contains('[');
        if bare && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(violation(
                "log.level",
                format!(
                    "\"{directive}\" is not a level; to filter a target write `{directive}=info`"
                ),
            ));
        }
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
        return Err(violation(
            "log.level",
            format!("\"{level}\" is not a valid filter ({e})"),
        ));
    }
    Ok(())
}

fn check_sys(interval: Duration) -> Result<(), Violation> {
    if !interval.is_zero() && interval < Duration::from_secs(1) {
        return Err(violation(
            "sys.interval",
            format!(
                "{} is below 1s: $SYS topics that often cost more than they tell",
                humantime::format_duration(interval)
            ),
        ));
    }
    Ok(())
}

/// The `alg` names `[auth.jwt] algorithms` accepts.
pub const JWT_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA",
];

/// Algorithms must be known and distinct, and each family needs exactly one key
/// source: HMAC a secret, the others a public key or a JWKS file.
fn check_jwt(jwt: &JwtConfig) -> Result<(), Violation> {
    let algs = &jwt.algorithms;
    if let Some(i) = algs
        .iter()
        .position(|a| !JWT_ALGORITHMS.contains(&a.as_str()))
    {
        let fix = if algs[i].eq_ignore_ascii_case("none") {
            "unsigned tokens are never accepted; remove it"
        } else {
            "use one of the allowed names, spelled as in a token's `alg` header"
        };
        return Err(Violation {
            path: format!("auth.jwt.algorithms[{i}]"),
            problem: format!("\"{}\" is not a supported algorithm", algs[i]),
            fix: Some(fix.to_owned()),
        });
    }
    if let Some((i, _)) = first_duplicate(algs) {
        return Err(violation(
            format!("auth.jwt.algorithms[{i}]"),
            format!("\"{}\" is listed twice", algs[i]),
        ));
    }
    let secrets = [
        ("auth.jwt.secret", !jwt.secret.is_empty()),
        (
            "auth.jwt.secret-file",
            !jwt.secret_file.as_os_str().is_empty(),
        ),
        ("auth.jwt.secret-env", !jwt.secret_env.is_empty()),
    ];
    let public = [
        (
            "auth.jwt.public-key-file",
            !jwt.public_key_file.as_os_str().is_empty(),
        ),
        ("auth.jwt.jwks-file", !jwt.jwks_file.as_os_str().is_empty()),
    ];
    let hmac = algs.iter().any(|a| a.starts_with("HS"));
    let asymmetric = algs.iter().any(|a| !a.starts_with("HS"));
    for (sources, needed, what) in [
        (&secrets[..], hmac, "an HMAC secret"),
        (&public[..], asymmetric, "a public key"),
    ] {
        let set: Vec<&str> = sources.iter().filter(|s| s.1).map(|s| s.0).collect();
        if set.len() > 1 {
            return Err(Violation {
                path: set[1].to_owned(),
                problem: format!("{} is also set: which one is {what}?", set[0]),
                fix: Some("keep one of them".to_owned()),
            });
        }
        if needed && set.is_empty() {
            let names: Vec<&str> = sources.iter().map(|s| s.0).collect();
            return Err(Violation {
                path: "auth.jwt.algorithms".to_owned(),
                problem: format!("the algorithms need {what}, and none is configured"),
                fix: Some(format!("set one of {}", names.join(", "))),
            });
        }
        if !needed && !set.is_empty() {
            return Err(Violation {
                path: set[0].to_owned(),
                problem: format!("{what} is set, but no algorithm in the list uses it"),
                fix: Some("add its algorithm to auth.jwt.algorithms, or remove it".to_owned()),
            });
        }
    }
    Ok(())
}

/// With the token in the username, binding it to the username compares the
/// token with itself: every client would be refused.
fn check_jwt_binding(jwt: &JwtConfig) -> Result<(), Violation> {
    let to_itself = jwt.token_from == TokenFrom::Username
        && jwt.bind_to == BindTo::Username
        && !jwt.bind_claim.is_empty();
    if jwt.enabled() && to_itself {
        return Err(Violation {
            path: "auth.jwt.bind-to".to_owned(),
            problem: "token-from = \"username\" makes the username the token itself, so \
                      the binding claim can never equal it"
                .to_owned(),
            fix: Some(
                "set bind-to = \"client-id\", or bind-claim = \"\" for no binding".to_owned(),
            ),
        });
    }
    Ok(())
}

fn check_acl(acl: &AclConfig) -> Result<(), Violation> {
    if let Some((label, _)) = acl.rate_limit.iter().find(|(_, &n)| n == 0) {
        return Err(Violation {
            path: format!("acl.rate-limit.{label}"),
            problem: "0 msgs/s would drop every publish under that label".to_owned(),
            fix: Some("deny the topics with a `deny` rule instead, or raise the limit".to_owned()),
        });
    }
    Ok(())
}

/// The fork's hook names, which `[[events.sinks]] hooks` and `sample` use.
pub const EVENT_HOOKS: &[&str] = &crate::events::HOOK_NAMES;

/// The largest frame a sink may batch: consumers size their read buffers by it.
const MAX_BATCH_BYTES: u32 = 16 << 20;
/// Room for a native header and a small event.
const MIN_BATCH_BYTES: u32 = 64;

fn check_events(events: &EventsConfig) -> Result<(), Violation> {
    for (i, sink) in events.sinks.iter().enumerate() {
        check_sink(&format!("events.sinks[{i}]"), sink)?;
    }
    Ok(())
}

fn check_sink(at: &str, sink: &SinkConfig) -> Result<(), Violation> {
    if let Err(problem) = check_address(&sink.address) {
        return Err(violation(format!("{at}.address"), problem));
    }
    if sink.hooks.is_empty() {
        return Err(violation(
            format!("{at}.hooks"),
            "the list is empty: the sink would never get an event",
        ));
    }
    if let Some(i) = sink
        .hooks
        .iter()
        .position(|h| !EVENT_HOOKS.contains(&h.as_str()))
    {
        return Err(unknown_hook(format!("{at}.hooks[{i}]"), &sink.hooks[i]));
    }
    if let Some((i, _)) = first_duplicate(&sink.hooks) {
        return Err(violation(
            format!("{at}.hooks[{i}]"),
            format!("\"{}\" is listed twice", sink.hooks[i]),
        ));
    }
    if !(1..=1024).contains(&sink.connections) {
        return Err(violation(
            format!("{at}.connections"),
            format!("{} is out of range", sink.connections),
        ));
    }
    if !(MIN_BATCH_BYTES..=MAX_BATCH_BYTES).contains(&sink.max_batch_bytes) {
        return Err(violation(
            format!("{at}.max-batch-bytes"),
            format!("{} is out of range", sink.max_batch_bytes),
        ));
    }
    let delay = sink.max_batch_delay;
    if delay.is_zero() || delay > Duration::from_secs(1) {
        return Err(violation(
            format!("{at}.max-batch-delay"),
            format!("{} is out of range", humantime::format_duration(delay)),
        ));
    }
    if sink.buffer_bytes < u64::from(sink.max_batch_bytes) || sink.buffer_bytes > 1 << 32 {
        return Err(Violation {
            path: format!("{at}.buffer-bytes"),
            problem: format!(
                "{} is out of range: the buffer must hold at least one batch ({} bytes)",
                sink.buffer_bytes, sink.max_batch_bytes
            ),
            fix: None,
        });
    }
    if sink.acks && sink.format == SinkFormat::VmqCompat {
        return Err(Violation {
            path: format!("{at}.acks"),
            problem: "the vmq-compat format has no sequence numbers to ack".to_owned(),
            fix: Some("set acks = false, or format = \"native\"".to_owned()),
        });
    }
    for (hook, labels) in &sink.sample {
        let path = format!("{at}.sample.{hook}");
        if !EVENT_HOOKS.contains(&hook.as_str()) {
            return Err(unknown_hook(path, hook));
        }
        if !sink.hooks.contains(hook) {
            return Err(Violation {
                path,
                problem: format!("\"{hook}\" is sampled but not in this sink's hooks"),
                fix: Some(format!(
                    "add \"{hook}\" to hooks, or remove its sample table"
                )),
            });
        }
        if let Some((label, percent)) = labels.iter().find(|(_, &p)| p > 100) {
            return Err(violation(
                format!("{path}.{label}"),
                format!("{percent} is not a percentage"),
            ));
        }
    }
    Ok(())
}

fn unknown_hook(path: String, hook: &str) -> Violation {
    let fix = match super::schema::suggest(hook, EVENT_HOOKS) {
        Some(near) => format!("did you mean \"{near}\"?"),
        None => "use one of the fork's hook names".to_owned(),
    };
    Violation {
        path,
        problem: format!("\"{hook}\" is not a hook"),
        fix: Some(fix),
    }
}

/// `host:port`, with a port; whether the host resolves is checked at start-up.
fn check_address(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("\"{address}\" has no port"));
    };
    if host.is_empty() {
        return Err(format!("\"{address}\" has no host"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("\"{port}\" is not a port from 1 to 65535")),
        Ok(_) => Ok(()),
    }
}

/// `(i, j)`: `items[i]` is the first element equal to an earlier one, `items[j]`.
fn first_duplicate<T: Eq + Hash>(items: &[T]) -> Option<(usize, usize)> {
    let mut seen = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(&j) = seen.get(item) {
            return Some((i, j));
        }
        seen.insert(item, i);
    }
    None
}
