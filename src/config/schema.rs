//! What the config may contain, for error messages: the keys of each section (read
//! from the serde derives, so they cannot drift), what each key allows, and its
//! default as `configs/default.toml` writes it.

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::locate::Index;
use super::sections::{
    AclConfig, AuthConfig, ClusterConfig, EventsConfig, HttpConfig, JwtConfig, ListenerConfig,
    LogConfig, MqttConfig, ShardsConfig, SinkConfig, StoreConfig, SysConfig,
};
use super::{Config, ConfigError, Location, DEFAULT_TOML};

/// The sections, in the order `configs/default.toml` has them.
pub(super) const SECTIONS: &[&str] = &[
    "shards",
    "listeners",
    "mqtt",
    "http",
    "log",
    "sys",
    "auth",
    "auth.jwt",
    "acl",
    "events",
    "store",
    "cluster",
];

/// The keys a section may hold: `""` is the top level, `listeners` one
/// `[[listeners]]` entry. `None` for anything that is not a section.
pub(super) fn section_keys(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "" => fields_of::<Config>(),
        "shards" => fields_of::<ShardsConfig>(),
        "listeners" => fields_of::<ListenerConfig>(),
        "mqtt" => fields_of::<MqttConfig>(),
        "http" => fields_of::<HttpConfig>(),
        "log" => fields_of::<LogConfig>(),
        "sys" => fields_of::<SysConfig>(),
        "auth" => fields_of::<AuthConfig>(),
        "auth.jwt" => fields_of::<JwtConfig>(),
        "acl" => fields_of::<AclConfig>(),
        "events" => fields_of::<EventsConfig>(),
        "store" => fields_of::<StoreConfig>(),
        "cluster" => fields_of::<ClusterConfig>(),
        // Not in SECTIONS: default.toml has no sink, only a commented example.
        "events.sinks" => fields_of::<SinkConfig>(),
        // `[acl.rate-limit]` keys are the operator's label names, and
        // `[events.sinks.sample]` keys are hooks, checked by `validate.rs`.
        _ => return None,
    })
}

/// What `key` (a schema key: `mqtt.max-inflight`, `listeners.bind`) accepts.
pub(super) fn allowed(key: &str) -> &'static str {
    match key {
        "shards" => "a [shards] table",
        "shards.cores" => {
            "\"all\", or a non-empty list of distinct CPU numbers below 64, such as [0, 1]"
        }
        "listeners" => "one or more [[listeners]] tables, each with `bind` and `protocol`",
        "listeners.bind" => {
            "an IP address and port, such as \"127.0.0.1:1883\", \"0.0.0.0:1883\" or \
             \"[::]:1883\"; distinct across listeners and from [http] bind"
        }
        "listeners.protocol" => "\"tcp\" (\"tls\" and \"ws\" are planned, not supported yet)",
        "mqtt" => "an [mqtt] table",
        "mqtt.max-packet-size" => "an integer number of bytes from 16 to 268435460",
        "mqtt.max-inflight" => "an integer from 1 to 65535",
        "mqtt.max-offline-messages" => {
            "an integer from 0 (queue nothing while offline) to 4294967295"
        }
        "mqtt.max-online-messages" => {
            "an integer from 0 (no queue behind the inflight window) to 4294967295"
        }
        "mqtt.max-client-id-len" => "an integer number of bytes from 1 to 65535",
        "mqtt.max-keepalive" => {
            "a whole number of seconds from \"1s\" to \"65535s\" (18h 12m 15s), written as a \
             duration such as \"300s\" or \"1h\""
        }
        "mqtt.retry-interval" => {
            "a duration such as \"500ms\", \"20s\" or \"1m\"; \"0s\" resends only on reconnect"
        }
        "mqtt.allowed-protocol-versions" => {
            "a non-empty list of distinct versions among \"3.1\", \"3.1.1\" and \"5\""
        }
        "mqtt.max-topic-levels" => "an integer from 1 to 65535",
        "mqtt.max-connections" => "an integer from 0 (no limit) to 4294967295",
        "mqtt.connect-timeout" => "a duration above zero, such as \"500ms\", \"10s\" or \"1m\"",
        "mqtt.queue-overflow" => "\"drop-newest\" or \"drop-oldest\"",
        "mqtt.stall-timeout" => "a duration above zero, such as \"500ms\" or \"1s\"",
        "mqtt.send-timeout" => {
            "\"0s\" (never), or a duration at least stall-timeout, such as \"30s\" or \"1m\""
        }
        "http" => "an [http] table",
        "http.bind" => {
            "an IP address and port, such as \"127.0.0.1:8888\", that no MQTT listener uses"
        }
        "log" => "a [log] table",
        "log.level" => {
            "a tracing filter: a level (trace, debug, info, warn, error or off), or \
             comma-separated directives such as \"info,shardmq::session=debug\""
        }
        "sys" => "a [sys] table",
        "sys.interval" => "\"0s\" (off), or a duration of at least 1s such as \"10s\" or \"1m\"",
        "auth" => "an [auth] table",
        "auth.allow-anonymous" => "true or false",
        "auth.password-file" => {
            "a path to a file of `username:hash` lines (argon2 or bcrypt PHC hashes, as \
             `shardmq --passwd USER` writes them), or \"\" for none"
        }
        "auth.jwt" => "an [auth.jwt] table",
        "auth.jwt.algorithms" => {
            "a list of distinct names among \"HS256\", \"HS384\", \"HS512\", \"RS256\", \
             \"RS384\", \"RS512\", \"ES256\", \"ES384\" and \"EdDSA\"; [] turns JWT off"
        }
        "auth.jwt.secret" => "the HMAC secret as a string, or \"\" when another source is used",
        "auth.jwt.secret-file" => "a path to a file holding the HMAC secret, or \"\"",
        "auth.jwt.secret-env" => {
            "the name of an environment variable holding the HMAC secret, or \"\""
        }
        "auth.jwt.public-key-file" => {
            "a path to a PEM public key (RSA, EC P-256/P-384 or Ed25519), or \"\""
        }
        "auth.jwt.jwks-file" => "a path to a JWKS (JSON Web Key Set) file, or \"\"",
        "auth.jwt.bind-claim" => "a claim name such as \"rid\", or \"\" for no binding",
        "auth.jwt.bind-to" => "\"username\" or \"client-id\"",
        "auth.jwt.leeway" => "a duration such as \"0s\", \"30s\" or \"2m\"",
        "auth.jwt.issuer" => "the required `iss`, or \"\" to accept any",
        "auth.jwt.audience" => "the required `aud`, or \"\" to accept any",
        "auth.jwt.token-from" => "\"password\" or \"username\"",
        "acl" => "an [acl] table",
        "acl.file" => "a path to a VerneMQ-syntax ACL file, or \"\" to allow everything",
        "acl.reload-interval" => "a duration such as \"10s\"; \"0s\" reloads only on SIGHUP",
        "acl.rate-limit" => {
            "a table of `label = msgs/s` pairs, such as `telemetry = 100`, each from 1 to \
             4294967295"
        }
        "events" => "an [events] table",
        "events.sinks" => {
            "zero or more [[events.sinks]] tables, each with at least `address`; \
             `sinks = []` for none"
        }
        "events.sinks.address" => {
            "the consumer's \"host:port\", such as \"127.0.0.1:8890\"; the host must \
             resolve at start-up"
        }
        "events.sinks.format" => "\"native\" or \"vmq-compat\"",
        "events.sinks.hooks" => {
            "a non-empty list of distinct hook names among \"on_register\", \
             \"on_register_failed\", \"on_publish\", \"on_subscribe\", \"on_unsubscribe\", \
             \"on_deliver\", \"on_delivery_complete\", \"on_offline_message\", \
             \"on_message_drop\", \"on_client_wakeup\", \"on_client_offline\", \
             \"on_client_gone\" and \"on_session_expired\""
        }
        "events.sinks.connections" => "an integer from 1 to 1024 (per node)",
        "events.sinks.max-batch-bytes" => "an integer number of bytes from 64 to 16777216",
        "events.sinks.max-batch-delay" => {
            "a duration from \"1us\" to \"1s\", such as \"1ms\" or \"500us\""
        }
        "events.sinks.buffer-bytes" => {
            "an integer number of bytes from max-batch-bytes to 4294967296 (per shard)"
        }
        "events.sinks.acks" => "true or false; true needs format = \"native\"",
        "events.sinks.sample" => {
            "tables [events.sinks.sample.<hook>] of `label = percent` pairs, each \
             percent from 0 to 100, for hooks this sink lists"
        }
        "store" => "a [store] table",
        "store.kind" => "\"memory\" or \"redis\"",
        "store.redis" => {
            "a URL redis://[user:password@]host:port/db, such as \"redis://127.0.0.1:6379/0\""
        }
        "store.key-prefix" => "a string of up to 64 bytes, such as \"shardmq:\"; \"\" for none",
        "store.durability" => "\"sessions\" or \"messages\"",
        "store.timeout" => "a duration from \"10ms\" to \"1m\", such as \"2s\"",
        "cluster" => "a [cluster] table",
        "cluster.node-id" => {
            "\"\" (host name and first listener port), or up to 128 bytes of letters, \
             digits and `.:_-`"
        }
        "cluster.bind" => "\"\" (a single node), or host:port such as \"127.0.0.1:18900\"",
        "cluster.advertise" => "\"\" (the bind address), or host:port such as \"10.0.0.5:18900\"",
        "cluster.lease" => "a duration from \"1s\" to \"60s\", such as \"3s\"",
        _ => "see `shardmq --print-default-config`",
    }
}

/// `listeners[1].bind` → `listeners.bind`, `shards.cores[2]` → `shards.cores`.
pub(super) fn schema_key(path: &str) -> String {
    let mut key = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => key.push(c),
            _ => {}
        }
    }
    key
}

/// `max-inflight = 100`: the line `configs/default.toml` has for `key`, if any.
pub(super) fn default_line(key: &str) -> Option<String> {
    // Sections are tables: quoting a whole one would not help.
    let (_, name) = key.rsplit_once('.')?;
    let index = Index::parse(DEFAULT_TOML).ok()?;
    // `listeners.bind` is written `bind` in the first `[[listeners]]` entry.
    let path = match key.strip_prefix("listeners.") {
        Some(rest) => format!("listeners[0].{rest}"),
        None => key.to_owned(),
    };
    let span = index.get(&path)?.value_span.clone()?;
    let value = DEFAULT_TOML.get(span)?;
    Some(format!("{name} = {value}"))
}

/// How a section is written in the file: `[mqtt]`, `[[listeners]]` entry 2,
/// `[[events.sinks]] (entry 1)`.
pub(super) fn section_display(section: &str) -> String {
    const ARRAYS: &[&str] = &["listeners", "events.sinks"];
    if ARRAYS.contains(&section) {
        return format!("[[{section}]]");
    }
    if let Some((array, rest)) = section.split_once('[') {
        if ARRAYS.contains(&array) && !rest.contains('.') {
            let n = rest
                .trim_end_matches(']')
                .parse::<usize>()
                .map_or(0, |i| i + 1);
            return format!("[[{array}]] (entry {n})");
        }
    }
    format!("[{section}]")
}

/// An out-of-range, wrong-typed or conflicting value at `path`, with what is allowed
/// and how to fix it. `fix` replaces the generic advice when the rule has a better one.
pub(super) fn invalid(
    at: Location,
    path: &str,
    problem: String,
    fix: Option<String>,
) -> ConfigError {
    let key = schema_key(path);
    let fix = fix.unwrap_or_else(|| generic_fix(path, &key));
    ConfigError::Invalid {
        at: at.into(),
        key: path.to_owned(),
        problem,
        allowed: allowed(&key).to_owned(),
        fix,
    }
}

/// Keys that have no default within their table.
const REQUIRED: &[&str] = &["listeners.bind", "events.sinks.address"];

/// "set `max-inflight` in [mqtt] to an allowed value, or delete it to use the
/// default `max-inflight = 100`".
fn generic_fix(path: &str, key: &str) -> String {
    let Some((_, name)) = key.rsplit_once('.') else {
        return format!(
            "write {} as a section of settings, or delete it to use its defaults",
            section_display(key)
        );
    };
    // The section as written in the file: `listeners[1]` names the entry.
    let section = path.rfind(&format!(".{name}")).map_or(path, |i| &path[..i]);
    let place = format!("`{name}` in {}", section_display(section));
    match default_line(key) {
        Some(line) if !REQUIRED.contains(&key) => {
            format!("set {place} to an allowed value, or delete it to use the default `{line}`")
        }
        _ => format!("set {place} to an allowed value"),
    }
}

/// The closest of `candidates` to a misspelt `word`, if close enough to suggest.
pub(super) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The field names serde's derive gives a struct, read by asking it to deserialize
/// from a deserializer that only records them.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

struct FieldProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_structs() {
        let top: Vec<&str> = SECTIONS
            .iter()
            .copied()
            .filter(|s| !s.contains('.'))
            .collect();
        assert_eq!(section_keys(""), Some(&top[..]));
        assert!(section_keys("auth").unwrap().contains(&"jwt"));
        assert_eq!(section_keys("listeners"), Some(&["bind", "protocol"][..]));
        assert!(section_keys("mqtt").unwrap().contains(&"max-inflight"));
        assert_eq!(section_keys("mqtt.max-inflight"), None);
    }

    #[test]
    fn schema_keys_drop_indices() {
        assert_eq!(schema_key("listeners[1].bind"), "listeners.bind");
        assert_eq!(schema_key("shards.cores[2]"), "shards.cores");
        assert_eq!(schema_key("mqtt.max-inflight"), "mqtt.max-inflight");
    }

    #[test]
    fn defaults_are_quoted_from_default_toml() {
        assert_eq!(
            default_line("mqtt.max-inflight").as_deref(),
            Some("max-inflight = 100")
        );
        assert_eq!(
            default_line("listeners.bind").as_deref(),
            Some("bind = \"127.0.0.1:1883\"")
        );
        assert_eq!(default_line("mqtt.nope"), None);
        assert_eq!(default_line("mqtt"), None);
    }

    #[test]
    fn suggestions_are_close_words_only() {
        let keys = section_keys("mqtt").unwrap();
        assert_eq!(suggest("max-inflite", keys), Some("max-inflight"));
        assert_eq!(suggest("retry_interval", keys), Some("retry-interval"));
        assert_eq!(suggest("colour", keys), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
