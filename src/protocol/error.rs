use thiserror::Error;

use crate::topic::TopicError;

/// Why bytes from a peer are not a valid MQTT packet.
///
/// Each variant is one kind of violation and its message names the spec clause
/// (MQTT 5.0 numbering unless it says 3.1.1), so a client developer reading a log
/// line can look it up. [`DecodeError::reason_code`] turns it into what the broker
/// tells the peer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error(
        "[MQTT-3.2.2.3.6] packet of {size} bytes exceeds the maximum packet size of {max} bytes"
    )]
    PacketTooLarge { size: usize, max: usize },
    #[error("[MQTT-1.5.5] variable byte integer is longer than 4 bytes")]
    MalformedVarInt,
    #[error("[MQTT-2.1.2] packet type 0 is reserved")]
    ReservedPacketType,
    #[error("[MQTT-2.1.2] packet type 15 (AUTH) does not exist before MQTT 5")]
    AuthBeforeV5,
    #[error("[MQTT-2.1.3-1] reserved flags 0x{flags:x} in the fixed header of {packet}")]
    InvalidHeaderFlags { packet: &'static str, flags: u8 },
    #[error("[MQTT-2.1.4] {packet} must have a remaining length of {expected}, not {actual}")]
    InvalidRemainingLength {
        packet: &'static str,
        expected: &'static str,
        actual: usize,
    },
    #[error("[MQTT-2.1.4] {packet} ended before its {field}")]
    Truncated {
        packet: &'static str,
        field: &'static str,
    },
    #[error("[MQTT-2.1.4] {packet} has {extra} bytes after its last field")]
    TrailingBytes { packet: &'static str, extra: usize },
    #[error("[MQTT-1.5.4-1] a UTF-8 string in {packet} is not valid UTF-8")]
    InvalidUtf8 { packet: &'static str },
    #[error("[MQTT-1.5.4-2] a UTF-8 string in {packet} contains U+0000")]
    NulInString { packet: &'static str },
    #[error("[MQTT-3.1.2-1] protocol name must be \"MQTT\" (or \"MQIsdp\" for 3.1)")]
    InvalidProtocolName,
    #[error(
        "[MQTT-3.1.2-2] unsupported protocol level {0}: shardmq speaks 3 (3.1), 4 (3.1.1) and 5"
    )]
    UnsupportedProtocolLevel(u8),
    #[error("[MQTT-3.1.2-3] reserved flag set in CONNECT")]
    ConnectReservedFlag,
    #[error("[MQTT-3.1.2-11] will QoS is set but the will flag is not")]
    WillQosWithoutWill,
    #[error("[MQTT-3.1.2-12] will QoS 3 is not a QoS level")]
    InvalidWillQos,
    #[error("[MQTT-3.1.2-13] will retain is set but the will flag is not")]
    WillRetainWithoutWill,
    #[error("[MQTT-3.1.2-22] 3.1.1: password flag set without the user name flag")]
    PasswordWithoutUsername,
    #[error("Courier 3.1.1: CONNECT has byte 0x{0:02x} after the payload where only user properties (0x26) may follow")]
    InvalidCourierProperty(u8),
    #[error("[MQTT-3.1.2.11.10] authentication data without an authentication method")]
    AuthDataWithoutMethod,
    #[error("[MQTT-3.15.2.2.2] AUTH without an authentication method")]
    AuthWithoutMethod,
    #[error("[MQTT-3.2.2-1] reserved bits set in CONNACK acknowledge flags")]
    ConnAckReservedFlags,
    #[error("[MQTT-3.3.1-2] DUP must be 0 on a QoS 0 PUBLISH")]
    DupOnQos0,
    #[error("[MQTT-3.3.1-4] PUBLISH with QoS 3")]
    InvalidPublishQos,
    #[error("{0} (topic name)")]
    InvalidTopicName(TopicError),
    #[error("{0} (topic filter)")]
    InvalidTopicFilter(TopicError),
    #[error("[MQTT-3.3.2-1] PUBLISH with an empty topic and no topic alias")]
    EmptyTopicWithoutAlias,
    #[error("[MQTT-3.3.2-8] topic alias 0 is not allowed")]
    ZeroTopicAlias,
    #[error("[MQTT-2.2.1-3] {packet} needs a non-zero packet identifier")]
    ZeroPacketId { packet: &'static str },
    #[error("[MQTT-2.2.2-1] unknown property identifier 0x{id:02x} in {packet}")]
    UnknownProperty { packet: &'static str, id: u32 },
    #[error("[MQTT-2.2.2-1] property 0x{id:02x} is not allowed in {packet}")]
    PropertyNotAllowed { packet: &'static str, id: u8 },
    #[error("[MQTT-2.2.2-2] property 0x{id:02x} appears more than once in {packet}")]
    DuplicateProperty { packet: &'static str, id: u8 },
    #[error(
        "[MQTT-2.2.2] property 0x{id:02x} has the value {value}, which the spec does not allow"
    )]
    InvalidPropertyValue { id: u8, value: u32 },
    #[error("[MQTT-3.8.3-2] SUBSCRIBE with no topic filters")]
    EmptySubscribe,
    #[error("[MQTT-3.10.3-2] UNSUBSCRIBE with no topic filters")]
    EmptyUnsubscribe,
    #[error("[MQTT-3.8.3-5] reserved bits 0x{0:02x} set in subscription options")]
    SubscriptionReservedBits(u8),
    #[error("[MQTT-3.8.3.1] subscription with maximum QoS 3")]
    InvalidSubscriptionQos,
    #[error("[MQTT-3.8.3.1] retain handling 3 is not a valid value")]
    InvalidRetainHandling,
    #[error("[MQTT-3.8.3-4] no-local set on a shared subscription")]
    NoLocalOnSharedSubscription,
    #[error("[MQTT-2.4] reason code 0x{code:02x} is not valid in {packet}")]
    InvalidReasonCode { packet: &'static str, code: u8 },
}

impl DecodeError {
    /// The MQTT 5 reason code a server sends for this error: in a DISCONNECT, or in
    /// a CONNACK when it concerns the CONNECT. MQTT 3 peers just see the connection
    /// close (or CONNACK 1 for an unsupported protocol level).
    pub fn reason_code(&self) -> super::ReasonCode {
        use super::ReasonCode as R;
        match self {
            DecodeError::PacketTooLarge { .. } => R::PacketTooLarge,
            DecodeError::UnsupportedProtocolLevel(_) => R::UnsupportedProtocolVersion,
            DecodeError::InvalidTopicFilter(_) => R::TopicFilterInvalid,
            DecodeError::InvalidTopicName(_) => R::TopicNameInvalid,
            DecodeError::ZeroTopicAlias => R::TopicAliasInvalid,
            DecodeError::AuthBeforeV5
            | DecodeError::AuthDataWithoutMethod
            | DecodeError::AuthWithoutMethod
            | DecodeError::EmptySubscribe
            | DecodeError::EmptyUnsubscribe
            | DecodeError::EmptyTopicWithoutAlias
            | DecodeError::DuplicateProperty { .. }
            | DecodeError::InvalidPropertyValue { .. }
            | DecodeError::NoLocalOnSharedSubscription
            | DecodeError::InvalidRetainHandling
            | DecodeError::InvalidSubscriptionQos => R::ProtocolError,
            _ => R::MalformedPacket,
        }
    }
}

/// Why a packet could not be encoded. The buffer is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("a string or binary field of {0} bytes is longer than 65535 bytes")]
    FieldTooLong(usize),
    #[error("a value of {0} does not fit a variable byte integer (max 268435455)")]
    VarIntTooLarge(usize),
    #[error("{packet} does not exist in MQTT {version}")]
    NotInVersion {
        packet: &'static str,
        version: &'static str,
    },
    #[error("PUBLISH with QoS {qos} must {} a packet identifier", if *.qos == 0 { "not have" } else { "have" })]
    PacketIdMismatch { qos: u8 },
    #[error("{packet} needs at least one topic filter")]
    Empty { packet: &'static str },
    #[error("reason code 0x{code:02x} cannot be sent in {packet} in MQTT {version}")]
    ReasonCodeNotInVersion {
        packet: &'static str,
        code: u8,
        version: &'static str,
    },
}
