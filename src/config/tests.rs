//! Loading, defaults, and one case per validation rule, each checking the key and the
//! line the error points at.

use std::net::SocketAddr;
use std::time::Duration;

use super::locate::Index;
use super::schema::{self, SECTIONS};
use super::*;
use crate::protocol::Version;
use crate::session::OverflowPolicy;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "test.toml")
}

fn load_err(text: &str) -> ConfigError {
    match load(text) {
        Ok(config) => panic!("accepted:\n{text}\nas {config:?}"),
        Err(e) => e,
    }
}

/// The error's line, key path (or unknown key) and full message.
fn describe(e: &ConfigError) -> (Option<usize>, String, String) {
    let line = e.location().and_then(|l| l.line_col).map(|(line, _)| line);
    let key = match e {
        ConfigError::Invalid { key, .. } | ConfigError::UnknownKey { key, .. } => key.clone(),
        ConfigError::UnknownSection { section, .. } => section.clone(),
        _ => String::new(),
    };
    (line, key, e.to_string())
}

#[test]
fn default_toml_is_config_default() {
    assert_eq!(Config::embedded_default().unwrap(), Config::default());
}

#[test]
fn an_empty_file_is_all_defaults() {
    assert_eq!(load("").unwrap(), Config::default());
    assert_eq!(load("[mqtt]\n[sys]\n").unwrap(), Config::default());
}

#[test]
fn default_toml_documents_every_key_once() {
    let index = Index::parse(DEFAULT_TOML).unwrap();
    let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
    for section in SECTIONS {
        let keys = schema::section_keys(section).unwrap();
        assert!(!keys.is_empty(), "[{section}] has no keys");
        let table = if *section == "listeners" {
            "listeners[0]".to_owned()
        } else {
            section.to_string()
        };
        for key in keys {
            let path = format!("{table}.{key}");
            let entry = index
                .get(&path)
                .unwrap_or_else(|| panic!("{path} is not in default.toml"));
            let (line, _) = error::line_col(DEFAULT_TOML, entry.span().unwrap().start);
            assert!(
                lines[line - 2].starts_with('#'),
                "{path} (line {line}) has no comment right above it"
            );
            let schema_key = format!("{section}.{key}");
            assert_ne!(
                schema::allowed(&schema_key),
                schema::allowed("no.such.key"),
                "{schema_key} has no `allowed` description"
            );
        }
    }
    assert!(index.get("listeners[1]").is_none(), "one default listener");
}

#[test]
fn examples_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen > 0, "no examples in {}", dir.display());
}

#[test]
fn every_setting_can_be_changed() {
    let config = load(
        r#"
        [shards]
        cores = [1, 0]
        [[listeners]]
        bind = "0.0.0.0:1883"
        [[listeners]]
        bind = "[::1]:0"
        protocol = "tcp"
        [mqtt]
        max-packet-size = 16
        max-inflight = 65535
        max-offline-messages = 0
        max-online-messages = 4294967295
        max-client-id-len = 23
        max-keepalive = "1h"
        retry-interval = "0s"
        allowed-protocol-versions = ["5", "3.1.1"]
        max-topic-levels = 8
        max-connections = 10000
        connect-timeout = "1500ms"
        queue-overflow = "drop-oldest"
        [http]
        bind = "127.0.0.1:0"
        [log]
        level = "warn,shardmq::session=debug"
        [sys]
        interval = "0s"
        [auth]
        allow-anonymous = false
        password-file = "configs/passwd"
        [auth.jwt]
        algorithms = ["HS512", "ES256"]
        secret-env = "JWT_SECRET"
        jwks-file = "keys.jwks"
        bind-claim = "sub"
        bind-to = "client-id"
        leeway = "5s"
        issuer = "iss"
        audience = "aud"
        token-from = "username"
        [acl]
        file = "configs/example.acl"
        reload-interval = "0s"
        [acl.rate-limit]
        telemetry = 100
        "#,
    )
    .unwrap();
    let auth = &config.auth;
    assert!(!auth.allow_anonymous);
    assert_eq!(auth.password_file, std::path::Path::new("configs/passwd"));
    let jwt = &auth.jwt;
    assert!(jwt.enabled());
    assert_eq!(jwt.algorithms, ["HS512", "ES256"]);
    assert_eq!(
        (jwt.secret_env.as_str(), jwt.jwks_file.to_str()),
        ("JWT_SECRET", Some("keys.jwks"))
    );
    assert_eq!(jwt.bind_claim, "sub");
    assert_eq!(jwt.bind_to, crate::config::BindTo::ClientId);
    assert_eq!(jwt.leeway, Duration::from_secs(5));
    assert_eq!((jwt.issuer.as_str(), jwt.audience.as_str()), ("iss", "aud"));
    assert_eq!(jwt.token_from, crate::config::TokenFrom::Username);
    assert_eq!(config.acl.file, std::path::Path::new("configs/example.acl"));
    assert_eq!(config.acl.reload_interval, Duration::ZERO);
    assert_eq!(config.acl.rate_limit.get("telemetry"), Some(&100));
    assert!(!Config::default().auth.jwt.enabled());
    assert_eq!(config.shards.cores, Cores::List(vec![1, 0]));
    assert_eq!(config.listeners.len(), 2);
    assert_eq!(
        config.listeners[1].bind,
        "[::1]:0".parse::<SocketAddr>().unwrap()
    );
    let m = &config.mqtt;
    assert_eq!(m.max_packet_size, 16);
    assert_eq!(m.max_inflight, 65535);
    assert_eq!(m.max_offline_messages, 0);
    assert_eq!(m.max_online_messages, u32::MAX);
    assert_eq!(m.max_client_id_len, 23);
    assert_eq!(m.max_keepalive, Duration::from_secs(3600));
    assert_eq!(m.keepalive_cap(), Some(3600));
    assert_eq!(m.retry_interval, Duration::ZERO);
    assert_eq!(
        m.allowed_protocol_versions,
        vec![Version::V5, Version::V3_1_1]
    );
    assert_eq!(m.max_topic_levels, 8);
    assert_eq!(m.max_connections, 10000);
    assert_eq!(m.connect_timeout, Duration::from_millis(1500));
    assert_eq!(m.queue_overflow, OverflowPolicy::DropOldest);
    assert_eq!(config.http.bind.port(), 0);
    assert_eq!(config.log.level, "warn,shardmq::session=debug");
    assert_eq!(config.sys.interval, Duration::ZERO);
    assert_eq!(
        Config::default().mqtt.keepalive_cap(),
        None,
        "65535s means no cap"
    );
}

#[test]
fn dotted_keys_and_inline_tables_work() {
    let config = load("mqtt.max-inflight = 7\nlisteners = [{ bind = \"127.0.0.1:1\" }]\n").unwrap();
    assert_eq!(config.mqtt.max_inflight, 7);
    assert_eq!(config.listeners[0].protocol, ListenerProtocol::Tcp);
}

/// `(file, line, key path, words the message must contain)`: one per rule.
const INVALID: &[(&str, usize, &str, &[&str])] = &[
    ("[shards]\ncores = []\n", 2, "shards.cores", &["empty"]),
    (
        "[shards]\ncores = [0, 64]\n",
        2,
        "shards.cores[1]",
        &["out of range", "below 64"],
    ),
    (
        "[shards]\n\ncores = [1, 0, 1]\n",
        3,
        "shards.cores[2]",
        &["listed twice"],
    ),
    (
        "[shards]\ncores = \"some\"\n",
        2,
        "shards.cores",
        &["\"some\"", "\"all\""],
    ),
    ("[shards]\ncores = [-1]\n", 2, "shards.cores[0]", &["-1"]),
    ("listeners = []\n", 1, "listeners", &["no MQTT listener"]),
    (
        "[[listeners]]\nbind = \"127.0.0.1:1\"\n[[listeners]]\nbind = \"127.0.0.1:1\"\n",
        4,
        "listeners[1].bind",
        &["already the address of listeners[0]"],
    ),
    (
        "[[listeners]]\nbind = \"localhost:1883\"\n",
        2,
        "listeners[0].bind",
        &["socket address"],
    ),
    (
        "[[listeners]]\nprotocol = \"tcp\"\n",
        1,
        "listeners[0].bind",
        &["missing", "bind = "],
    ),
    (
        "[[listeners]]\nbind = \"127.0.0.1:1\"\nprotocol = \"tls\"\n",
        3,
        "listeners[0].protocol",
        &["not supported yet"],
    ),
    (
        "[[listeners]]\nbind = \"127.0.0.1:1\"\nprotocol = \"udp\"\n",
        3,
        "",
        &["unknown"],
    ),
    (
        "[http]\nbind = \"127.0.0.1:1883\"\n",
        2,
        "http.bind",
        &["also the address"],
    ),
    (
        "[mqtt]\nmax-packet-size = 15\n",
        2,
        "mqtt.max-packet-size",
        &["16 to 268435460"],
    ),
    (
        "[mqtt]\nmax-packet-size = 268435461\n",
        2,
        "mqtt.max-packet-size",
        &["out of range"],
    ),
    (
        "[mqtt]\nmax-inflight = 0\n",
        2,
        "mqtt.max-inflight",
        &["1 to 65535"],
    ),
    (
        "[mqtt]\nmax-inflight = 70000\n",
        2,
        "mqtt.max-inflight",
        &["70000", "1 to 65535"],
    ),
    (
        "[mqtt]\nmax-inflight = \"100\"\n",
        2,
        "mqtt.max-inflight",
        &["invalid type"],
    ),
    (
        "[mqtt]\nmax-inflight = 1.5\n",
        2,
        "mqtt.max-inflight",
        &["invalid type"],
    ),
    (
        "[mqtt]\nmax-offline-messages = -1\n",
        2,
        "mqtt.max-offline-messages",
        &["-1"],
    ),
    (
        "[mqtt]\nmax-client-id-len = 0\n",
        2,
        "mqtt.max-client-id-len",
        &["out of range"],
    ),
    (
        "[mqtt]\nmax-keepalive = \"0s\"\n",
        2,
        "mqtt.max-keepalive",
        &["1 to 65535"],
    ),
    (
        "[mqtt]\nmax-keepalive = \"1500ms\"\n",
        2,
        "mqtt.max-keepalive",
        &["whole number"],
    ),
    (
        "[mqtt]\nmax-keepalive = \"65536s\"\n",
        2,
        "mqtt.max-keepalive",
        &["18h 12m 16s"],
    ),
    (
        "[mqtt]\nretry-interval = \"20 parsecs\"\n",
        2,
        "mqtt.retry-interval",
        &["not a duration"],
    ),
    (
        "[mqtt]\nretry-interval = \"20\"\n",
        2,
        "mqtt.retry-interval",
        &["not a duration"],
    ),
    (
        "[mqtt]\nretry-interval = 20\n",
        2,
        "mqtt.retry-interval",
        &["\"30s\""],
    ),
    (
        "[mqtt]\nallowed-protocol-versions = []\n",
        2,
        "mqtt.allowed-protocol-versions",
        &["empty"],
    ),
    (
        "[mqtt]\nallowed-protocol-versions = [\"5\", \"5\"]\n",
        2,
        "mqtt.allowed-protocol-versions[1]",
        &["twice"],
    ),
    (
        "[mqtt]\nallowed-protocol-versions = [\"3.1.1\", \"4\"]\n",
        2,
        "mqtt.allowed-protocol-versions[1]",
        &[
            "unknown protocol version \"4\"",
            "\"3.1\", \"3.1.1\" and \"5\"",
        ],
    ),
    (
        "[mqtt]\nmax-topic-levels = 0\n",
        2,
        "mqtt.max-topic-levels",
        &["at least one level"],
    ),
    (
        "[mqtt]\nmax-connections = -5\n",
        2,
        "mqtt.max-connections",
        &["-5"],
    ),
    (
        "[mqtt]\nconnect-timeout = \"0s\"\n",
        2,
        "mqtt.connect-timeout",
        &["above zero"],
    ),
    (
        "[mqtt]\nqueue-overflow = \"drop-all\"\n",
        2,
        "mqtt.queue-overflow",
        &["\"drop-all\"", "\"drop-newest\" or \"drop-oldest\""],
    ),
    (
        "[log]\nlevel = \"infoo\"\n",
        2,
        "log.level",
        &["not a level", "infoo=info"],
    ),
    ("[log]\nlevel = \"\"\n", 2, "log.level", &["empty"]),
    (
        "[log]\nlevel = \"shardmq=loud\"\n",
        2,
        "log.level",
        &["not a valid filter"],
    ),
    (
        "[sys]\ninterval = \"500ms\"\n",
        2,
        "sys.interval",
        &["below 1s"],
    ),
    (
        "mqtt = 5\n",
        1,
        "mqtt",
        &["expected a table of settings", "an [mqtt] table"],
    ),
    (
        "[mqtt]\nmax-inflight = true\n",
        2,
        "mqtt.max-inflight",
        &["expected a whole number"],
    ),
    (
        "[[listeners]]\nbind = [1]\n",
        2,
        "listeners[0].bind",
        &["invalid type: list"],
    ),
    (
        "mqtt.max-inflight = 0\n",
        1,
        "mqtt.max-inflight",
        &["out of range"],
    ),
    (
        "[auth.jwt]\nsecret = \"s\"\nalgorithms = [\"HS256\", \"none\"]\n",
        3,
        "auth.jwt.algorithms[1]",
        &["\"none\" is not a supported algorithm", "never accepted"],
    ),
    (
        "[auth.jwt]\nalgorithms = [\"RS256\"]\n",
        2,
        "auth.jwt.algorithms",
        &[
            "need a public key",
            "auth.jwt.public-key-file, auth.jwt.jwks-file",
        ],
    ),
    (
        "[auth.jwt]\nalgorithms = [\"HS256\"]\nsecret = \"a\"\nsecret-env = \"B\"\n",
        4,
        "auth.jwt.secret-env",
        &["auth.jwt.secret is also set", "keep one"],
    ),
    (
        "[auth.jwt]\nalgorithms = [\"HS256\"]\nsecret = \"a\"\npublic-key-file = \"k.pem\"\n",
        4,
        "auth.jwt.public-key-file",
        &["no algorithm in the list uses it"],
    ),
    (
        "[auth.jwt]\nbind-to = \"user\"\n",
        2,
        "auth.jwt.bind-to",
        &["unknown variant", "client-id"],
    ),
    (
        "[auth.jwt]\nalgorithms = [\"HS256\"]\nsecret = \"a\"\ntoken-from = \"username\"\n",
        1,
        "auth.jwt.bind-to",
        &["never equal", "client-id"],
    ),
    (
        "[acl.rate-limit]\nchatty = 0\n",
        2,
        "acl.rate-limit.chatty",
        &["0 msgs/s"],
    ),
    (
        "[store]\ndurability = \"messages\"\n",
        2,
        "store.durability",
        &["kind is \"memory\"", "set kind = \"redis\""],
    ),
    (
        "[cluster]\nbind = \"127.0.0.1:18900\"\n",
        2,
        "cluster.bind",
        &["kind is \"memory\"", "bind = \"\" for a single node"],
    ),
    (
        "[store]\nkind = \"redis\"\n[cluster]\nbind = \"node-a\"\n",
        4,
        "cluster.bind",
        &["not an address host:port"],
    ),
    (
        "[store]\nkind = \"redis\"\n[cluster]\nbind = \"0.0.0.0:18900\"\n",
        3,
        "cluster.advertise",
        &["other nodes cannot dial", "set advertise"],
    ),
    (
        "[cluster]\nlease = \"500ms\"\n",
        2,
        "cluster.lease",
        &["outside 1s .. 60s"],
    ),
];

#[test]
fn each_rule_names_its_key_and_line() {
    for (text, line, key, words) in INVALID {
        let e = load_err(text);
        let (got_line, got_key, message) = describe(&e);
        assert_eq!(got_line, Some(*line), "line for:\n{text}\n{message}");
        if !key.is_empty() {
            assert_eq!(&got_key, key, "key for:\n{text}\n{message}");
            assert!(message.contains(&format!(": {key}: ")), "{message}");
        }
        assert!(
            message.starts_with(&format!("test.toml:{line}:")),
            "{message}"
        );
        assert!(message.contains("\n  allowed: "), "{message}");
        assert!(message.contains("\n  fix: "), "{message}");
        for word in *words {
            assert!(message.contains(word), "{word:?} missing from:\n{message}");
        }
    }
}

#[test]
fn valid_edge_values_pass() {
    for text in [
        "[shards]\ncores = \"all\"\n",
        "[shards]\ncores = [63]\n",
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\n",
        "[http]\nbind = \"127.0.0.1:0\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\n",
        "[mqtt]\nmax-packet-size = 268435460\n",
        "[mqtt]\nmax-keepalive = \"1s\"\n",
        "[mqtt]\nmax-keepalive = \"18h 12m 15s\"\n",
        "[mqtt]\nretry-interval = \"0s\"\n",
        "[mqtt]\nallowed-protocol-versions = [\"3.1\"]\n",
        "[log]\nlevel = \"OFF\"\n",
        "[log]\nlevel = \"debug,glommio=warn\"\n",
        "[sys]\ninterval = \"1s\"\n",
    ] {
        if let Err(e) = load(text) {
            panic!("refused:\n{text}\n{e}");
        }
    }
}

#[test]
fn unknown_keys_list_the_valid_ones() {
    let e = load_err("[mqtt]\nmax-inflight = 5\nmax-inflite = 5\n");
    let ConfigError::UnknownKey {
        at,
        section,
        key,
        valid,
        fix,
    } = &e
    else {
        panic!("{e:?}");
    };
    assert_eq!(at.line_col, Some((3, 1)));
    assert_eq!((section.as_str(), key.as_str()), ("[mqtt]", "max-inflite"));
    assert!(
        valid.starts_with("max-packet-size, max-inflight, "),
        "{valid}"
    );
    assert!(fix.contains("did you mean `max-inflight`?"), "{fix}");
    let message = e.to_string();
    assert!(
        message.contains("unknown key `max-inflite` in section [mqtt]"),
        "{message}"
    );
    assert!(
        message.contains("valid keys in [mqtt]: max-packet-size"),
        "{message}"
    );
}

#[test]
fn unknown_keys_anywhere_are_found() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "[[listeners]]\nbind = \"127.0.0.1:1\"\nport = 1\n",
            3,
            "[[listeners]] (entry 1)",
        ),
        (
            "listeners = [{ bind = \"127.0.0.1:1\", port = 1 }]\n",
            1,
            "[[listeners]] (entry 1)",
        ),
        (
            "[http]\nbind = \"127.0.0.1:1\"\n\n[http.tls]\ncert = \"x\"\n",
            4,
            "[http]",
        ),
        ("[log]\nformat = \"json\"\n", 2, "[log]"),
    ];
    for (text, line, section) in cases {
        let e = load_err(text);
        let message = e.to_string();
        assert!(matches!(e, ConfigError::UnknownKey { .. }), "{message}");
        assert!(
            message.starts_with(&format!("test.toml:{line}:")),
            "{message}"
        );
        assert!(
            message.contains(&format!("in section {section}")),
            "{message}"
        );
    }
}

#[test]
fn unknown_sections_list_the_valid_ones() {
    let e = load_err("[mqtt]\n\n[mqttt]\nx = 1\n");
    let message = e.to_string();
    assert!(matches!(e, ConfigError::UnknownSection { .. }), "{message}");
    assert!(message.starts_with("test.toml:3:"), "{message}");
    assert!(message.contains("unknown section [mqttt]"), "{message}");
    assert!(
        message.contains("valid sections: [shards], [[listeners]], [mqtt], [http], [log], [sys]"),
        "{message}"
    );
    assert!(message.contains("did you mean [mqtt]?"), "{message}");

    let message = load_err("max-inflight = 5\n").to_string();
    assert!(
        message.contains("is a setting of [mqtt]: move it there"),
        "{message}"
    );
}

#[test]
fn a_key_in_the_wrong_section_says_where_it_belongs() {
    let message = load_err("[sys]\nmax-connections = 5\n").to_string();
    assert!(
        message.contains("`max-connections` is a setting of [mqtt]"),
        "{message}"
    );
}

#[test]
fn syntax_errors_have_a_line() {
    let e = load_err("[mqtt]\nmax-inflight = = 5\n");
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    assert_eq!(e.location().unwrap().line_col.map(|(l, _)| l), Some(2));
    let e = load_err("[mqtt]\nmax-inflight = 1\nmax-inflight = 2\n");
    assert!(
        e.to_string().starts_with("test.toml:3:"),
        "duplicate key: {e}"
    );
}

#[test]
fn out_of_range_message_reads_well() {
    let e = load_err("# comment\n[mqtt]\nmax-inflight = 0\n");
    assert_eq!(
        e.to_string(),
        "test.toml:3:16: mqtt.max-inflight: 0 is out of range: no QoS 1 or 2 message could \
         ever be sent\n  \
         allowed: an integer from 1 to 65535\n  \
         fix: set `max-inflight` in [mqtt] to an allowed value, or delete it to use the \
         default `max-inflight = 100`"
    );
}

#[test]
fn missing_files_say_which() {
    let e = Config::from_file("/nonexistent/shardmq.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_eq!(
        e.to_string(),
        "cannot read config file /nonexistent/shardmq.toml"
    );
}

#[test]
fn set_bind_replaces_the_first_listener() {
    let addr: SocketAddr = "127.0.0.1:18830".parse().unwrap();
    let mut config = Config::default();
    config.set_bind(addr);
    assert_eq!(config.listeners[0].bind, addr);
    assert_eq!(config.listeners.len(), 1);
    config.validate().unwrap();

    config.listeners.clear();
    config.set_bind(addr);
    assert_eq!(
        config.listeners,
        vec![ListenerConfig {
            bind: addr,
            ..ListenerConfig::default_tcp()
        }]
    );

    config.set_bind(config.http.bind);
    let message = config.validate().unwrap_err().to_string();
    assert!(
        message.starts_with("the configuration: http.bind: "),
        "{message}"
    );
}

#[test]
fn event_sinks_parse_with_defaults_and_samples() {
    let config = load(
        r#"
[[events.sinks]]
address = "127.0.0.1:8890"
format = "vmq-compat"
hooks = ["on_publish", "on_deliver"]
connections = 2
max-batch-bytes = 1024
max-batch-delay = "500us"
buffer-bytes = 4096
[events.sinks.sample.on_publish]
some_label = 10
[[events.sinks]]
address = "consumer.local:9000"
acks = true
"#,
    )
    .unwrap();
    let sinks = &config.events.sinks;
    assert_eq!(sinks.len(), 2);
    assert_eq!(sinks[0].format, SinkFormat::VmqCompat);
    assert_eq!(sinks[0].hooks, ["on_publish", "on_deliver"]);
    assert_eq!(sinks[0].max_batch_delay, Duration::from_micros(500));
    assert_eq!(sinks[0].sample["on_publish"]["some_label"], 10);
    let mut want = SinkConfig::new("consumer.local:9000");
    want.acks = true;
    assert_eq!(sinks[1], want);
    assert_eq!(want.connections, 4);
    assert_eq!(want.max_batch_bytes, 65536);
    assert_eq!(want.buffer_bytes, 16 << 20);
    assert_eq!(want.format, SinkFormat::Native);
}

#[test]
fn event_sink_rules_name_their_key_and_line() {
    let sink = "[[events.sinks]]\naddress = \"127.0.0.1:1\"\n";
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "[[events.sinks]]\nformat = \"native\"\n",
            1,
            "events.sinks[0].address",
            "missing",
        ),
        (
            "[[events.sinks]]\naddress = \"nowhere\"\n",
            2,
            "events.sinks[0].address",
            "no port",
        ),
        (
            "hooks = [\"on_publish\", \"on_publsh\"]\n",
            3,
            "events.sinks[0].hooks[1]",
            "\"on_publish\"?",
        ),
        ("hooks = []\n", 3, "events.sinks[0].hooks", "empty"),
        (
            "hooks = [\"on_deliver\", \"on_deliver\"]\n",
            3,
            "events.sinks[0].hooks[1]",
            "twice",
        ),
        (
            "connections = 0\n",
            3,
            "events.sinks[0].connections",
            "out of range",
        ),
        (
            "max-batch-bytes = 10\n",
            3,
            "events.sinks[0].max-batch-bytes",
            "out of range",
        ),
        (
            "max-batch-delay = \"0s\"\n",
            3,
            "events.sinks[0].max-batch-delay",
            "out of range",
        ),
        (
            "buffer-bytes = 100\n",
            3,
            "events.sinks[0].buffer-bytes",
            "one batch",
        ),
        (
            "format = \"vmq-compat\"\nacks = true\n",
            4,
            "events.sinks[0].acks",
            "no sequence",
        ),
        (
            "format = \"json\"\n",
            3,
            "events.sinks[0].format",
            "unknown variant",
        ),
        (
            "[events.sinks.sample.on_publish]\na = 101\n",
            4,
            "events.sinks[0].sample.on_publish.a",
            "not a percentage",
        ),
        (
            "[events.sinks.sample.on_unsubscribe]\na = 1\n",
            3,
            "events.sinks[0].sample.on_unsubscribe",
            "not in this sink's hooks",
        ),
    ];
    for (extra, line, key, words) in cases {
        let text = if extra.starts_with("[[") {
            extra.to_string()
        } else {
            format!("{sink}{extra}")
        };
        let e = load_err(&text);
        let (got_line, got_key, message) = describe(&e);
        assert_eq!(got_line, Some(*line), "line for:\n{text}\n{message}");
        assert_eq!(&got_key, key, "key for:\n{text}\n{message}");
        assert!(
            message.contains(words),
            "{words:?} missing from:\n{message}"
        );
        assert!(message.contains("\n  fix: "), "{message}");
    }
    let e = load_err(&format!("{sink}colour = 1\n"));
    let (line, key, message) = describe(&e);
    assert_eq!((line, key.as_str()), (Some(3), "colour"), "{message}");
    assert!(message.contains("[[events.sinks]] (entry 1)"), "{message}");
}
