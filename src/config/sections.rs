//! One struct per config section, with the defaults `configs/default.toml` documents.
//!
//! Every struct is `#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]`:
//! a missing key takes its default, an unknown key is an error. Field-level rules
//! (ranges, duplicates) live in `validate.rs`, not here.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::de;
use crate::protocol::Version;
use crate::session::OverflowPolicy;

/// `[shards]`: which cores run a shard.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ShardsConfig {
    /// One shard (executor) is pinned to each of these CPUs. Whether a CPU exists is
    /// checked at start-up by the runtime, which knows the machine.
    pub cores: Cores,
}

impl Default for ShardsConfig {
    fn default() -> Self {
        ShardsConfig { cores: Cores::All }
    }
}

/// `cores = "all"` or `cores = [0, 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cores {
    /// Every CPU the process may run on, as the runtime finds them at start-up.
    All,
    /// Exactly these CPU numbers, in this order: shard `i` runs on `cores[i]`.
    List(Vec<usize>),
}

/// One `[[listeners]]` entry: an MQTT listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListenerConfig {
    /// Address and port to accept MQTT clients on. Required in each entry: a listener
    /// without an address is a mistake, not a wish for the default.
    pub bind: SocketAddr,
    /// Transport; only plain TCP exists today.
    #[serde(default)]
    pub protocol: ListenerProtocol,
}

impl ListenerConfig {
    /// The default listener: plain TCP on 127.0.0.1:1883.
    pub fn default_tcp() -> Self {
        ListenerConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1883),
            protocol: ListenerProtocol::Tcp,
        }
    }
}

/// The transport of a listener. `tls` and `ws` are planned; naming them today is an
/// error that says so (see `de.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerProtocol {
    /// MQTT over plain TCP.
    #[default]
    Tcp,
}

/// `[mqtt]`: protocol limits, per client unless said otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MqttConfig {
    /// Largest packet accepted from a client, fixed header included; refused before
    /// any memory is reserved for it. Also sent to v5 clients as Maximum Packet Size.
    pub max_packet_size: u32,
    /// QoS 1 and 2 messages in flight to one client (sent, not yet acknowledged).
    /// The v5 Receive Maximum the broker announces.
    pub max_inflight: u16,
    /// Messages queued for one offline persistent session; more are dropped by
    /// `queue-overflow`. 0: nothing is queued while offline.
    pub max_offline_messages: u32,
    /// Messages queued for one online client that has stalled (see `stall-timeout`);
    /// past it messages are dropped by `queue-overflow`. 0: no queue.
    pub max_online_messages: u32,
    /// Longest client id accepted, in bytes.
    pub max_client_id_len: u16,
    /// Longest keepalive an MQTT 5 client may keep (longer or zero ones are told this
    /// value); whole seconds, 1 s ..= 65535 s, and 65535 s means no cap.
    #[serde(with = "de::duration")]
    pub max_keepalive: Duration,
    /// How long an unacknowledged QoS 1/2 message waits before it is sent again to a
    /// connected client. Zero: only on reconnect, as the MQTT spec says.
    #[serde(with = "de::duration")]
    pub retry_interval: Duration,
    /// Protocol versions accepted in CONNECT; others get "unacceptable protocol version".
    #[serde(with = "de::versions")]
    pub allowed_protocol_versions: Vec<Version>,
    /// Most `/`-separated levels in a topic name or filter.
    pub max_topic_levels: u16,
    /// Concurrent client connections on this node, all listeners and shards together.
    /// 0: no limit other than the process's open-file limit.
    pub max_connections: u32,
    /// A connection that has not completed CONNECT within this time is closed.
    #[serde(with = "de::duration")]
    pub connect_timeout: Duration,
    /// Which message a full queue drops: the newest (arriving) or the oldest.
    #[serde(with = "de::overflow")]
    pub queue_overflow: OverflowPolicy,
    /// How long a congested recipient may make no progress (no write finished, no
    /// acknowledgement) before it stops slowing its publishers down.
    #[serde(with = "de::duration")]
    pub stall_timeout: Duration,
    /// A congested client that has made no progress (no write finished, nothing
    /// acknowledged) for this long is disconnected. Zero: never.
    #[serde(with = "de::duration")]
    pub send_timeout: Duration,
}

impl MqttConfig {
    /// `max-keepalive` as a cap in seconds, as MQTT carries it; `None` at 65535 s,
    /// the largest keepalive MQTT can express, which means no cap.
    pub fn keepalive_cap(&self) -> Option<u16> {
        match u16::try_from(self.max_keepalive.as_secs()) {
            Ok(u16::MAX) | Err(_) => None,
            Ok(secs) => Some(secs),
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_packet_size: 1_048_576,
            max_inflight: 100,
            max_offline_messages: 1000,
            max_online_messages: 1000,
            max_client_id_len: 128,
            max_keepalive: Duration::from_secs(65535),
            retry_interval: Duration::from_secs(20),
            allowed_protocol_versions: vec![Version::V3_1, Version::V3_1_1, Version::V5],
            max_topic_levels: 32,
            max_connections: 0,
            connect_timeout: Duration::from_secs(10),
            queue_overflow: OverflowPolicy::DropNewest,
            stall_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// `[http]`: the listener for `/health` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpConfig {
    /// Address and port of the HTTP listener.
    pub bind: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8888),
        }
    }
}

/// `[log]`: what the broker logs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogConfig {
    /// A `tracing` filter: a level, or `target=level` directives separated by commas.
    /// `RUST_LOG`, when set, replaces it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
        }
    }
}

/// `[sys]`: the `$SYS/broker/...` topics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SysConfig {
    /// How often the `$SYS` topics are published. Zero: never.
    #[serde(with = "de::duration")]
    pub interval: Duration,
}

impl Default for SysConfig {
    fn default() -> Self {
        SysConfig {
            interval: Duration::from_secs(10),
        }
    }
}

/// `[auth]`: who may connect.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthConfig {
    /// Whether a CONNECT without username and password is accepted. Credentials
    /// that are present are always checked, whatever this says.
    pub allow_anonymous: bool,
    /// `username:$argon2id$...` lines (or bcrypt `$2b$` hashes); empty: none.
    pub password_file: PathBuf,
    /// `[auth.jwt]`: tokens as passwords; off while `algorithms` is empty.
    pub jwt: JwtConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_anonymous: true,
            password_file: PathBuf::new(),
            jwt: JwtConfig::default(),
        }
    }
}

/// `[auth.jwt]`: JWT verification. Empty strings mean "not set".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct JwtConfig {
    /// Accepted `alg` values; a token with any other, or `none`, is refused.
    /// Empty: JWT authentication is off.
    pub algorithms: Vec<String>,
    /// The HMAC secret for HS256/384/512, inline.
    pub secret: String,
    /// A file holding the HMAC secret (trailing newline ignored).
    pub secret_file: PathBuf,
    /// An environment variable holding the HMAC secret.
    pub secret_env: String,
    /// A PEM public key for RS*, ES* or EdDSA tokens.
    pub public_key_file: PathBuf,
    /// A local JWKS file; keys are chosen by the token's `kid`, and the file is
    /// read again when it changes.
    pub jwks_file: PathBuf,
    /// The claim that must equal the username or client id (the fork's `rid`).
    pub bind_claim: String,
    /// What `bind-claim` is compared with.
    pub bind_to: BindTo,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(with = "de::duration")]
    pub leeway: Duration,
    /// Required `iss`; empty: not checked.
    pub issuer: String,
    /// Required `aud` (one of the token's); empty: not checked.
    pub audience: String,
    /// Where the token is: the MQTT password or the username.
    pub token_from: TokenFrom,
}

impl JwtConfig {
    /// Whether JWT authentication is on.
    pub fn enabled(&self) -> bool {
        !self.algorithms.is_empty()
    }
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            algorithms: Vec::new(),
            secret: String::new(),
            secret_file: PathBuf::new(),
            secret_env: String::new(),
            public_key_file: PathBuf::new(),
            jwks_file: PathBuf::new(),
            bind_claim: "rid".to_owned(),
            bind_to: BindTo::Username,
            leeway: Duration::from_secs(30),
            issuer: String::new(),
            audience: String::new(),
            token_from: TokenFrom::Password,
        }
    }
}

/// What a token's binding claim must equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindTo {
    Username,
    ClientId,
}

/// Which CONNECT field carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenFrom {
    Password,
    Username,
}

/// `[acl]`: what clients may publish and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AclConfig {
    /// A VerneMQ-syntax ACL file; empty: everything is allowed.
    pub file: PathBuf,
    /// How often the file is checked for changes (SIGHUP also reloads it).
    /// Zero: only on SIGHUP.
    #[serde(with = "de::duration")]
    pub reload_interval: Duration,
    /// Publishes per second, per node, allowed under each rule label.
    pub rate_limit: BTreeMap<String, u32>,
}

impl Default for AclConfig {
    fn default() -> Self {
        AclConfig {
            file: PathBuf::new(),
            reload_interval: Duration::from_secs(10),
            rate_limit: BTreeMap::new(),
        }
    }
}

/// `[events]`: the event stream (issue 6).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EventsConfig {
    /// Where events go; each sink gets every event it asks for. Empty: none are
    /// built, and an event costs one branch.
    pub sinks: Vec<SinkConfig>,
}

/// One `[[events.sinks]]` entry: a consumer the broker connects out to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SinkConfig {
    /// `host:port` of the consumer, which listens; the broker connects to it.
    /// Required: a sink without an address is a mistake, not a wish for a default.
    pub address: String,
    /// The wire format: batched native frames, or the fork's one-event frames.
    #[serde(default)]
    pub format: SinkFormat,
    /// The fork's hook names of the events this sink wants.
    #[serde(default = "default_hooks")]
    pub hooks: Vec<String>,
    /// Connections per node, split across the shards (each shard has at least one).
    #[serde(default = "default_connections")]
    pub connections: u32,
    /// A native frame is sent once it reaches this size (or after
    /// `max-batch-delay`): big enough to amortise a write, small enough to bound
    /// latency and the consumer's read buffer.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: u32,
    /// The longest an event waits in an unfinished batch.
    #[serde(default = "default_max_batch_delay", with = "de::duration")]
    pub max_batch_delay: Duration,
    /// Bytes held per shard for this sink (batches not yet written, and with
    /// `acks` frames not yet acknowledged); past it new events are dropped, so a
    /// slow consumer costs memory up to here and then counted drops, never a stall.
    #[serde(default = "default_buffer_bytes")]
    pub buffer_bytes: u64,
    /// Whether the consumer acks sequence numbers: frames are kept until acked and
    /// sent again after a reconnect (at-least-once). Native format only.
    #[serde(default)]
    pub acks: bool,
    /// `sample.<hook>.<label> = percent`: of the events of `hook` whose ACL label is
    /// `label`, keep this percentage (at random). Unlisted ones are all kept.
    #[serde(default)]
    pub sample: BTreeMap<String, BTreeMap<String, u32>>,
}

impl SinkConfig {
    /// A sink to `address` with every other setting at its default.
    pub fn new(address: impl Into<String>) -> SinkConfig {
        SinkConfig {
            address: address.into(),
            format: SinkFormat::default(),
            hooks: default_hooks(),
            connections: default_connections(),
            max_batch_bytes: default_max_batch_bytes(),
            max_batch_delay: default_max_batch_delay(),
            buffer_bytes: default_buffer_bytes(),
            acks: false,
            sample: BTreeMap::new(),
        }
    }
}

fn default_hooks() -> Vec<String> {
    ["on_register", "on_publish", "on_subscribe", "on_deliver"]
        .map(str::to_owned)
        .to_vec()
}

fn default_connections() -> u32 {
    4
}

fn default_max_batch_bytes() -> u32 {
    65536
}

fn default_max_batch_delay() -> Duration {
    Duration::from_millis(1)
}

fn default_buffer_bytes() -> u64 {
    16 << 20
}

/// How a sink frames its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkFormat {
    /// Batched frames with a header (shard, first sequence number, count).
    #[default]
    Native,
    /// The fork's sidecar framing: 4-byte length + `google.protobuf.Any`, one
    /// event per frame, no sequence numbers, no acks.
    VmqCompat,
}

/// `[store]`: where durable state lives (issue 13).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreConfig {
    /// In memory (lost on restart), or in Redis.
    pub kind: StoreKind,
    /// `redis://[user:password@]host:port/db`, read only with `kind = "redis"`.
    pub redis: String,
    /// Every key the broker writes starts with this, so several brokers or
    /// other programs can share one Redis.
    pub key_prefix: String,
    /// What must reach Redis before it is acknowledged.
    pub durability: Durability,
    /// The longest a Redis command may take before it counts as failed.
    #[serde(with = "de::duration")]
    pub timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Memory,
            redis: "redis://127.0.0.1:6379/0".to_owned(),
            key_prefix: "shardmq:".to_owned(),
            durability: Durability::Sessions,
            timeout: Duration::from_secs(2),
        }
    }
}

/// `[store] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// Every shard keeps its state in its own maps; a restart forgets it.
    #[default]
    Memory,
    /// Persistent sessions, routes and retained messages are kept in Redis.
    Redis,
}

/// `[store] durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Sessions (subscriptions, will, expiry) are stored; queued messages stay
    /// in memory.
    #[default]
    Sessions,
    /// Also every QoS 1/2 message queued for a persistent session, stored
    /// before the publisher's PUBACK/PUBREC.
    Messages,
}

/// `[cluster]`: who this node is among others sharing the store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterConfig {
    /// This node's name in the store; empty: the host name, ":" and the first
    /// MQTT listener's port, which stays the same across restarts.
    pub node_id: String,
    /// The node-to-node listener; empty: a single node.
    pub bind: String,
    /// The address other nodes dial; empty: `bind`.
    pub advertise: String,
    /// A node whose lease lapses this long is dead to the others.
    #[serde(with = "de::duration")]
    pub lease: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: String::new(),
            bind: String::new(),
            advertise: String::new(),
            lease: Duration::from_secs(3),
        }
    }
}

impl ClusterConfig {
    /// Whether this node is one of a cluster (`bind` is set).
    pub fn enabled(&self) -> bool {
        !self.bind.is_empty()
    }

    /// The address the other nodes dial.
    pub fn advertised(&self) -> &str {
        if self.advertise.is_empty() {
            &self.bind
        } else {
            &self.advertise
        }
    }
}
