use thiserror::Error;

/// Why a string is not a valid topic name or topic filter.
///
/// Each message names the spec clause so a client developer can look it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TopicError {
    #[error("[MQTT-4.7.3-1] a topic name or filter must be at least one character long")]
    Empty,
    #[error("[MQTT-1.5.4-1] a topic is longer than 65535 bytes")]
    TooLong,
    #[error("[MQTT-4.7.3-2] a topic name or filter must not contain U+0000")]
    Nul,
    #[error("[MQTT-3.3.2-2] a topic name in PUBLISH must not contain wildcards '+' or '#'")]
    WildcardInName,
    #[error("[MQTT-4.7.1-1] '#' must be the whole last level of a topic filter")]
    MultiLevelWildcard,
    #[error("[MQTT-4.7.1-2] '+' must occupy a whole level of a topic filter")]
    SingleLevelWildcard,
    #[error("[MQTT-4.8.2-1] a shared subscription needs a non-empty share name: $share/<group>/<filter>")]
    EmptyShareName,
    #[error("[MQTT-4.8.2-2] a share name must not contain '+' or '#' and must be followed by '/' and a topic filter")]
    InvalidShareName,
}
