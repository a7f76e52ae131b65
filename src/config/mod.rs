//! The broker's configuration: a TOML file with one section per concern, every
//! setting documented once in `configs/default.toml`, which the binary embeds.
//!
//! Loading is TiKV-style, in four steps, each with errors that name the file, the
//! line, the key, the allowed values and a fix:
//! 1. the text must be TOML ([`ConfigError::Syntax`]);
//! 2. every key must exist in its section ([`ConfigError::UnknownSection`],
//!    [`ConfigError::UnknownKey`], listing the valid keys);
//! 3. serde fills the structs; a missing key takes its default, a value of the wrong
//!    type or a bad duration is [`ConfigError::Invalid`];
//! 4. [`Config::validate`] checks ranges and the rules between settings.
//!
//! # Layout
//! - `sections.rs`: one struct per section, with its defaults.
//! - `de.rs`: deserializers for durations, protocol versions, `cores`, protocols.
//! - `validate.rs`: the rules after parsing.
//! - `error.rs`: [`ConfigError`] and [`Location`].
//! - `locate.rs`: key path ↔ line, so serde errors get a key and rule errors a line.
//! - `schema.rs`: the valid keys of each section (read from the serde derives), what
//!   each key allows, and its documented default.
//!
//! # Why not just `toml::from_str`
//! toml's own errors name a line but not always the key, never list what is allowed,
//! and rule violations found after parsing have no line at all. A broker is
//! configured by people on call; the message should be enough to fix the file.
//!
//! # Secrets
//! There are none yet. When one arrives (a JWT key, a Redis password), give it a
//! newtype whose `Debug` prints `"<redacted>"`: every struct here derives `Debug`,
//! and configs get logged.

mod de;
mod error;
mod locate;
mod schema;
mod sections;
mod validate;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

pub use error::{ConfigError, Location};
pub use sections::{
    AclConfig, AuthConfig, BindTo, ClusterConfig, Cores, Durability, EventsConfig, HttpConfig,
    JwtConfig, ListenerConfig, ListenerProtocol, LogConfig, MqttConfig, ShardsConfig, SinkConfig,
    SinkFormat, StoreConfig, StoreKind, SysConfig, TokenFrom,
};
pub use validate::EVENT_HOOKS;

use locate::Index;

/// `configs/default.toml`: every setting with its default and what it is for. The
/// binary prints it for `--print-default-config` and runs on it without `--config`.
pub const DEFAULT_TOML: &str = include_str!("../../configs/default.toml");

/// How errors in [`DEFAULT_TOML`] name their origin.
pub const DEFAULT_ORIGIN: &str = "<built-in default config>";

/// The whole configuration. Fields are sections, in the order of `default.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// The cores that run shards.
    pub shards: ShardsConfig,
    /// MQTT listeners; a file that has `[[listeners]]` replaces the default list.
    pub listeners: Vec<ListenerConfig>,
    /// Protocol limits.
    pub mqtt: MqttConfig,
    /// The `/health` and `/metrics` listener.
    pub http: HttpConfig,
    /// Log filter.
    pub log: LogConfig,
    /// `$SYS` topics.
    pub sys: SysConfig,
    /// Who may connect.
    pub auth: AuthConfig,
    /// What clients may publish and subscribe to.
    pub acl: AclConfig,
    /// Where broker events are streamed.
    pub events: EventsConfig,
    /// Where durable state lives.
    pub store: StoreConfig,
    /// This node's identity in the store.
    pub cluster: ClusterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: ShardsConfig::default(),
            listeners: vec![ListenerConfig::default_tcp()],
            mqtt: MqttConfig::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            sys: SysConfig::default(),
            auth: AuthConfig::default(),
            acl: AclConfig::default(),
            events: EventsConfig::default(),
            store: StoreConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`; errors name it as given.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; errors name it `origin` (a path, usually).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let index = Index::parse(text).map_err(|e| ConfigError::Syntax {
            at: Location::at(origin, text, e.span()).into(),
            message: one_line(e.message()),
        })?;
        check_keys(&index, origin, text)?;
        let config: Config =
            toml::from_str(text).map_err(|e| typed_error(&e, &index, origin, text))?;
        validate::check(&config).map_err(|v| {
            let at = Location::at(origin, text, index.span_of(&v.path));
            schema::invalid(at, &v.path, v.problem, v.fix)
        })?;
        Ok(config)
    }

    /// The embedded [`DEFAULT_TOML`], parsed. Equal to [`Config::default`].
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::from_toml_str(DEFAULT_TOML, DEFAULT_ORIGIN)
    }

    /// Checks the rules between settings. Loading does this already; call it again
    /// after changing a config in code (as `--bind` does).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::check(self).map_err(|v| {
            let at = Location {
                origin: "the configuration".to_owned(),
                line_col: None,
            };
            schema::invalid(at, &v.path, v.problem, v.fix)
        })
    }

    /// `--bind ADDR`: the first MQTT listener's address becomes `addr` (a TCP listener
    /// is added if there is none).
    pub fn set_bind(&mut self, addr: SocketAddr) {
        match self.listeners.first_mut() {
            Some(listener) => listener.bind = addr,
            None => self.listeners.push(ListenerConfig {
                bind: addr,
                protocol: ListenerProtocol::Tcp,
            }),
        }
    }
}

/// Step 2: every key must be one its section has.
fn check_keys(index: &Index, origin: &str, text: &str) -> Result<(), ConfigError> {
    for entry in index.entries() {
        let Some(key) = entry.key.as_deref() else {
            continue;
        };
        // Keys below a scalar setting (`[mqtt.max-inflight]`) are serde's to refuse.
        let Some(valid) = schema::section_keys(&schema::schema_key(&entry.parent)) else {
            continue;
        };
        if valid.contains(&key) {
            continue;
        }
        let at = Location::at(origin, text, entry.span()).into();
        let top_level = entry.parent.is_empty();
        let fix = unknown_key_fix(key, valid, top_level);
        return Err(if top_level {
            let shown: Vec<String> = valid.iter().map(|s| schema::section_display(s)).collect();
            ConfigError::UnknownSection {
                at,
                section: if entry.is_table {
                    format!("[{key}]")
                } else {
                    format!("`{key}`")
                },
                valid: shown.join(", "),
                fix,
            }
        } else {
            ConfigError::UnknownKey {
                at,
                section: schema::section_display(&entry.parent),
                key: key.to_owned(),
                valid: valid.join(", "),
                fix,
            }
        });
    }
    Ok(())
}

/// Advice for an unknown `key` among `valid`: the section where a key of that exact
/// name lives, else the closest valid name, else just the way to the docs.
fn unknown_key_fix(key: &str, valid: &[&str], top_level: bool) -> String {
    let advice = "`shardmq --print-default-config` documents every setting";
    if let Some(home) = home_section(key) {
        let home = schema::section_display(home);
        return format!("`{key}` is a setting of {home}: move it there; {advice}");
    }
    match schema::suggest(key, valid) {
        Some(near) if top_level => format!(
            "did you mean {}? Rename or delete it; {advice}",
            schema::section_display(near)
        ),
        Some(near) => format!("did you mean `{near}`? Rename or delete the key; {advice}"),
        None => format!("rename or delete it; {advice}"),
    }
}

/// The section that has a key named `key`, for keys put in the wrong place.
fn home_section(key: &str) -> Option<&'static str> {
    schema::SECTIONS
        .iter()
        .copied()
        .find(|s| schema::section_keys(s).is_some_and(|keys| keys.contains(&key)))
}

/// Step 3's errors: serde's message, with the key found from the error's span.
fn typed_error(e: &toml::de::Error, index: &Index, origin: &str, text: &str) -> ConfigError {
    let message = humanize(&one_line(e.message()));
    let at = Location::at(origin, text, e.span());
    let Some(path) = e.span().and_then(|s| index.path_at(s.start)) else {
        return ConfigError::Syntax {
            at: at.into(),
            message,
        };
    };
    if let Some(field) = missing_field(&message) {
        let full = format!("{path}.{field}");
        let fix = schema::default_line(&schema::schema_key(&full)).map(|line| {
            format!(
                "add a line such as `{line}` to {}",
                schema::section_display(path)
            )
        });
        return schema::invalid(at, &full, "missing: this entry must set it".to_owned(), fix);
    }
    schema::invalid(at, path, message, None)
}

/// `field` from serde's "missing field `field`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// serde's messages speak Rust ("expected u16", "expected struct MqttConfig"); the
/// reader wrote TOML.
fn humanize(message: &str) -> String {
    let mut out = message.to_owned();
    if let Some(i) = out.find("expected struct ") {
        out.replace_range(i.., "expected a table of settings");
    }
    for int in ["u8", "u16", "u32", "u64", "usize"] {
        if let Some(rest) = out.strip_suffix(&format!("expected {int}")) {
            out = format!("{rest}expected a whole number");
        }
    }
    out.replace("expected a sequence", "expected a list")
        .replace("invalid type: map", "invalid type: table")
        .replace("invalid type: sequence", "invalid type: list")
}

fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("; ")
}
