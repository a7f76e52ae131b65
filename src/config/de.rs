//! Hand-written deserializers for the values serde cannot derive with good messages:
//! durations, protocol versions, the overflow policy, `cores` and the listener protocol.
//!
//! Their errors become the "what is wrong" part of a [`ConfigError`](super::ConfigError);
//! the key, the line and the allowed values are added by the loader.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use super::sections::{Cores, ListenerProtocol};
use crate::protocol::Version;

/// Durations as human strings ("1ms", "30s", "5m", "1h 30m"), parsed by humantime.
pub mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration string such as \"30s\"")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            humantime::parse_duration(s.trim())
                .map_err(|e| E::custom(format_args!("\"{s}\" is not a duration ({e})")))
        }
    }
}

/// `allowed-protocol-versions = ["3.1", "3.1.1", "5"]`.
pub mod versions {
    use serde::de::{Deserialize, Deserializer};

    use super::VersionName;
    use crate::protocol::Version;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Version>, D::Error> {
        let names = Vec::<VersionName>::deserialize(d)?;
        Ok(names.into_iter().map(|n| n.0).collect())
    }
}

/// `queue-overflow = "drop-newest" | "drop-oldest"`, as the session's policy.
pub mod overflow {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};

    use crate::session::OverflowPolicy;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OverflowPolicy, D::Error> {
        d.deserialize_str(OverflowVisitor)
    }

    struct OverflowVisitor;

    impl Visitor<'_> for OverflowVisitor {
        type Value = OverflowPolicy;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("\"drop-newest\" or \"drop-oldest\"")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<OverflowPolicy, E> {
            match s {
                "drop-newest" => Ok(OverflowPolicy::DropNewest),
                "drop-oldest" => Ok(OverflowPolicy::DropOldest),
                _ => Err(E::custom(format_args!(
                    "unknown queue-overflow policy \"{s}\""
                ))),
            }
        }
    }
}

/// One protocol version, by the name [`Version::name`] gives it.
struct VersionName(Version);

impl<'de> Deserialize<'de> for VersionName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(VersionVisitor)
    }
}

struct VersionVisitor;

impl Visitor<'_> for VersionVisitor {
    type Value = VersionName;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a protocol version string: \"3.1\", \"3.1.1\" or \"5\"")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<VersionName, E> {
        [Version::V3_1, Version::V3_1_1, Version::V5]
            .into_iter()
            .find(|v| v.name() == s)
            .map(VersionName)
            .ok_or_else(|| E::custom(format_args!("unknown protocol version \"{s}\"")))
    }
}

impl<'de> Deserialize<'de> for Cores {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CoresVisitor)
    }
}

struct CoresVisitor;

impl<'de> Visitor<'de> for CoresVisitor {
    type Value = Cores;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"all\" or a list of CPU numbers such as [0, 1]")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Cores, E> {
        if s == "all" {
            Ok(Cores::All)
        } else {
            Err(E::custom(format_args!(
                "\"{s}\" is neither \"all\" nor a list of CPU numbers"
            )))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cores, A::Error> {
        let mut cores = Vec::new();
        while let Some(core) = seq.next_element::<usize>()? {
            cores.push(core);
        }
        Ok(Cores::List(cores))
    }
}

impl<'de> Deserialize<'de> for ListenerProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ProtocolVisitor)
    }
}

struct ProtocolVisitor;

impl Visitor<'_> for ProtocolVisitor {
    type Value = ListenerProtocol;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a listener protocol string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<ListenerProtocol, E> {
        match s {
            "tcp" => Ok(ListenerProtocol::Tcp),
            "tls" | "ssl" | "ws" | "wss" | "websocket" => Err(E::custom(format_args!(
                "protocol \"{s}\" is not supported yet (TLS and WebSocket listeners are planned)"
            ))),
            _ => Err(E::custom(format_args!("unknown listener protocol \"{s}\""))),
        }
    }
}
