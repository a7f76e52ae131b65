//! Malformed packets: each a complete byte literal that breaks one rule, and the
//! exact [`DecodeError`] it must produce.
//!
//! Every literal is whole (its remaining length matches its bytes), so a failure
//! here is never "read more": the decoder has to reject what it was given. The
//! table covers every reachable `DecodeError` variant; [`variant`] is an
//! exhaustive match, so a new variant cannot be added without a row here.

use bytes::BytesMut;

use super::*;
use crate::topic::TopicError;

/// The maximum packet size passed to [`decode`] for every row.
const MAX: usize = 256;

const V3_1: Version = Version::V3_1;
const V3_1_1: Version = Version::V3_1_1;
const V5: Version = Version::V5;

/// What is wrong, the connection's version, the bytes, the error.
type Case = (&'static str, Version, &'static [u8], DecodeError);

use DecodeError as E;

#[rustfmt::skip]
const CASES: &[Case] = &[
    // ---- Fixed header -----------------------------------------------------
    // Remaining length 255 (ff 01): 258 bytes in all, over the maximum of 256.
    ("declared size over the maximum", V5, b"\x30\xff\x01",
        E::PacketTooLarge { size: 258, max: MAX }),
    // Remaining length with a continuation bit on its fourth byte (five bytes).
    ("remaining length of five bytes", V3_1_1, b"\x30\xff\xff\xff\xff\x7f",
        E::MalformedVarInt),
    // PUBLISH "t" whose property length is a five-byte variable byte integer.
    ("property length of five bytes", V5, b"\x30\x08\x00\x01t\xff\xff\xff\xff\x7f",
        E::MalformedVarInt),
    // Packet type 0 is reserved.
    ("packet type 0", V3_1_1, b"\x00\x00",
        E::ReservedPacketType),
    // Packet type 15 (AUTH) on a 3.1.1 connection.
    ("AUTH in 3.1.1", V3_1_1, b"\xf0\x00",
        E::AuthBeforeV5),
    // Packet type 15 (AUTH) on a 3.1 connection.
    ("AUTH in 3.1", V3_1, b"\xf0\x00",
        E::AuthBeforeV5),
    // CONNECT flags must be 0000.
    ("CONNECT header flags 0001", V3_1_1, b"\x11\x00",
        E::InvalidHeaderFlags { packet: "CONNECT", flags: 0x1 }),
    // PUBACK flags must be 0000.
    ("PUBACK header flags 0001", V3_1_1, b"\x41\x02\x00\x01",
        E::InvalidHeaderFlags { packet: "PUBACK", flags: 0x1 }),
    // PUBREL flags must be 0010.
    ("PUBREL header flags 0000", V5, b"\x60\x02\x00\x01",
        E::InvalidHeaderFlags { packet: "PUBREL", flags: 0x0 }),
    // SUBSCRIBE flags must be 0010.
    ("SUBSCRIBE header flags 0000", V3_1_1, b"\x80\x06\x00\x01\x00\x01a\x00",
        E::InvalidHeaderFlags { packet: "SUBSCRIBE", flags: 0x0 }),
    // DUP on SUBSCRIBE (1010) was allowed by 3.1 only.
    ("SUBSCRIBE with DUP in 3.1.1", V3_1_1, b"\x8a\x06\x00\x01\x00\x01a\x00",
        E::InvalidHeaderFlags { packet: "SUBSCRIBE", flags: 0xa }),
    // UNSUBSCRIBE flags must be 0010.
    ("UNSUBSCRIBE header flags 0000", V5, b"\xa0\x00",
        E::InvalidHeaderFlags { packet: "UNSUBSCRIBE", flags: 0x0 }),
    // 3.1 allows DUP on UNSUBSCRIBE only together with QoS 1 (1010), not 1000.
    ("UNSUBSCRIBE header flags 1000 in 3.1", V3_1, b"\xa8\x05\x00\x01\x00\x01a",
        E::InvalidHeaderFlags { packet: "UNSUBSCRIBE", flags: 0x8 }),
    // PINGREQ flags must be 0000.
    ("PINGREQ header flags 0010", V3_1_1, b"\xc2\x00",
        E::InvalidHeaderFlags { packet: "PINGREQ", flags: 0x2 }),
    // DISCONNECT flags must be 0000.
    ("DISCONNECT header flags 1000", V5, b"\xe8\x00",
        E::InvalidHeaderFlags { packet: "DISCONNECT", flags: 0x8 }),
    // AUTH flags must be 0000.
    ("AUTH header flags 0001", V5, b"\xf1\x00",
        E::InvalidHeaderFlags { packet: "AUTH", flags: 0x1 }),
    // PINGREQ has no body.
    ("PINGREQ with a body", V3_1_1, b"\xc0\x01\x00",
        E::InvalidRemainingLength { packet: "PINGREQ", expected: "0", actual: 1 }),
    // PINGRESP has no body.
    ("PINGRESP with a body", V5, b"\xd0\x02\x00\x00",
        E::InvalidRemainingLength { packet: "PINGRESP", expected: "0", actual: 2 }),
    // DISCONNECT has no body before MQTT 5.
    ("3.1.1 DISCONNECT with a reason code", V3_1_1, b"\xe0\x01\x00",
        E::InvalidRemainingLength { packet: "DISCONNECT", expected: "0 before MQTT 5", actual: 1 }),

    // ---- Truncated fields -------------------------------------------------
    // PUBACK with one byte of packet identifier.
    ("PUBACK with half a packet id", V3_1_1, b"\x40\x01\x00",
        E::Truncated { packet: "PUBACK", field: "packet identifier" }),
    // Protocol name declares 4 bytes, 2 follow.
    ("CONNECT protocol name cut short", V3_1_1, b"\x10\x04\x00\x04MQ",
        E::Truncated { packet: "CONNECT", field: "protocol name" }),
    // Ends with one byte of keep alive.
    ("CONNECT without keep alive", V3_1_1, b"\x10\x09\x00\x04MQTT\x04\x02\x00",
        E::Truncated { packet: "CONNECT", field: "keep alive" }),
    // Ends after keep alive.
    ("CONNECT without client id", V3_1_1, b"\x10\x0a\x00\x04MQTT\x04\x02\x00\x3c",
        E::Truncated { packet: "CONNECT", field: "client identifier" }),
    // Will flag set, ends after the client id.
    ("CONNECT without will topic", V3_1_1, b"\x10\x0c\x00\x04MQTT\x04\x06\x00\x3c\x00\x00",
        E::Truncated { packet: "CONNECT", field: "will topic" }),
    // User name and password flags set, ends after the user name "u".
    ("CONNECT without password", V3_1_1, b"\x10\x0f\x00\x04MQTT\x04\xc2\x00\x3c\x00\x00\x00\x01u",
        E::Truncated { packet: "CONNECT", field: "password" }),
    // Courier user property "k" without its value.
    ("Courier user property without value", V3_1_1,
        b"\x10\x11\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c\x26\x00\x01k",
        E::Truncated { packet: "CONNECT", field: "user property value" }),
    // CONNACK with flags but no return code.
    ("CONNACK without return code", V3_1_1, b"\x20\x01\x00",
        E::Truncated { packet: "CONNACK", field: "reason code" }),
    // MQTT 5 CONNACK must have a property length.
    ("v5 CONNACK without property length", V5, b"\x20\x02\x00\x00",
        E::Truncated { packet: "CONNACK", field: "property length" }),
    // Topic name declares 5 bytes, 1 follows.
    ("PUBLISH topic cut short", V3_1_1, b"\x30\x03\x00\x05t",
        E::Truncated { packet: "PUBLISH", field: "topic name" }),
    // QoS 1 needs a packet identifier.
    ("QoS 1 PUBLISH without packet id", V3_1_1, b"\x32\x03\x00\x01t",
        E::Truncated { packet: "PUBLISH", field: "packet identifier" }),
    // Property section [80]: an identifier whose continuation never comes.
    ("property identifier cut short", V5, b"\x30\x05\x00\x01t\x01\x80",
        E::Truncated { packet: "PUBLISH", field: "property identifier" }),
    // Property length 5, one byte follows.
    ("property length past the end", V5, b"\x40\x05\x00\x01\x87\x05\x1f",
        E::Truncated { packet: "PUBACK", field: "properties" }),
    // Reason string whose 2-byte length has only one byte in the section.
    ("property value cut short", V5, b"\x40\x06\x00\x01\x87\x02\x1f\x00",
        E::Truncated { packet: "PUBACK", field: "property value" }),
    // MQTT 5 SUBSCRIBE must have a property length.
    ("v5 SUBSCRIBE without property length", V5, b"\x82\x02\x00\x01",
        E::Truncated { packet: "SUBSCRIBE", field: "property length" }),
    // Filter "a" without its options byte.
    ("SUBSCRIBE filter without options", V3_1_1, b"\x82\x05\x00\x01\x00\x01a",
        E::Truncated { packet: "SUBSCRIBE", field: "subscription options" }),
    // SUBACK needs at least one return code.
    ("SUBACK without return codes", V3_1_1, b"\x90\x02\x00\x01",
        E::Truncated { packet: "SUBACK", field: "reason codes" }),
    // MQTT 5 SUBACK with properties but no reason codes.
    ("v5 SUBACK without reason codes", V5, b"\x90\x03\x00\x01\x00",
        E::Truncated { packet: "SUBACK", field: "reason codes" }),
    // MQTT 5 UNSUBACK needs at least one reason code.
    ("v5 UNSUBACK without reason codes", V5, b"\xb0\x03\x00\x01\x00",
        E::Truncated { packet: "UNSUBACK", field: "reason codes" }),

    // ---- Trailing bytes ---------------------------------------------------
    // A 3.1.1 PUBACK is just the packet identifier.
    ("3.1.1 PUBACK with a reason code", V3_1_1, b"\x40\x03\x00\x01\x00",
        E::TrailingBytes { packet: "PUBACK", extra: 1 }),
    // A 3.1.1 CONNACK has no properties.
    ("3.1.1 CONNACK with a property length", V3_1_1, b"\x20\x03\x00\x00\x00",
        E::TrailingBytes { packet: "CONNACK", extra: 1 }),
    // Courier user properties exist in 3.1.1 only, not in 3.1.
    ("3.1 CONNECT with Courier user properties", V3_1,
        b"\x10\x16\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x01c\x26\x00\x01k\x00\x01v",
        E::TrailingBytes { packet: "CONNECT", extra: 7 }),
    // A 3.1.1 UNSUBACK is just the packet identifier.
    ("3.1.1 UNSUBACK with a reason code", V3_1_1, b"\xb0\x03\x00\x01\x00",
        E::TrailingBytes { packet: "UNSUBACK", extra: 1 }),
    // Two bytes after the (empty) properties.
    ("v5 DISCONNECT with bytes after properties", V5, b"\xe0\x04\x00\x00\xff\xff",
        E::TrailingBytes { packet: "DISCONNECT", extra: 2 }),
    // One byte after the (empty) properties.
    ("v5 PUBACK with bytes after properties", V5, b"\x40\x05\x00\x01\x00\x00\xff",
        E::TrailingBytes { packet: "PUBACK", extra: 1 }),
    // One byte after the (empty) properties.
    ("v5 CONNACK with bytes after properties", V5, b"\x20\x04\x00\x00\x00\x00",
        E::TrailingBytes { packet: "CONNACK", extra: 1 }),
    // One byte after the (empty) properties.
    ("v5 AUTH with bytes after properties", V5, b"\xf0\x03\x00\x00\xff",
        E::TrailingBytes { packet: "AUTH", extra: 1 }),

    // ---- UTF-8 strings ----------------------------------------------------
    // c3 28: a lead byte followed by a non-continuation byte.
    ("PUBLISH topic not UTF-8", V3_1_1, b"\x30\x04\x00\x02\xc3\x28",
        E::InvalidUtf8 { packet: "PUBLISH" }),
    // ed a0 80: the UTF-16 surrogate U+D800 [MQTT-1.5.4-1].
    ("SUBSCRIBE filter with a surrogate", V3_1_1, b"\x82\x08\x00\x01\x00\x03\xed\xa0\x80\x00",
        E::InvalidUtf8 { packet: "SUBSCRIBE" }),
    // c0 af: an overlong encoding of '/'.
    ("overlong encoding in client id", V3_1_1, b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02\xc0\xaf",
        E::InvalidUtf8 { packet: "CONNECT" }),
    // User property name ff.
    ("user property name not UTF-8", V5, b"\x40\x0b\x00\x01\x00\x07\x26\x00\x01\xff\x00\x01v",
        E::InvalidUtf8 { packet: "PUBACK" }),
    // Topic "a\0b" [MQTT-1.5.4-2].
    ("NUL in topic name", V3_1_1, b"\x30\x05\x00\x03a\x00b",
        E::NulInString { packet: "PUBLISH" }),
    // User name "\0".
    ("NUL in user name", V3_1_1, b"\x10\x10\x00\x04MQTT\x04\x82\x00\x3c\x00\x01c\x00\x01\x00",
        E::NulInString { packet: "CONNECT" }),

    // ---- CONNECT ----------------------------------------------------------
    // Protocol name "MQTX".
    ("protocol name MQTX", V3_1_1, b"\x10\x07\x00\x04MQTX\x04",
        E::InvalidProtocolName),
    // Protocol names are case-sensitive.
    ("protocol name mqtt", V5, b"\x10\x07\x00\x04mqtt\x05",
        E::InvalidProtocolName),
    // Level 6 does not exist.
    ("protocol level 6", V3_1_1, b"\x10\x07\x00\x04MQTT\x06",
        E::UnsupportedProtocolLevel(6)),
    // "MQIsdp" is only level 3.
    ("MQIsdp with level 4", V3_1_1, b"\x10\x09\x00\x06MQIsdp\x04",
        E::UnsupportedProtocolLevel(4)),
    // "MQTT" is only levels 4 and 5.
    ("MQTT with level 3", V3_1_1, b"\x10\x07\x00\x04MQTT\x03",
        E::UnsupportedProtocolLevel(3)),
    // Connect flags 0000 0011: reserved bit 0 set.
    ("CONNECT reserved flag", V3_1_1, b"\x10\x08\x00\x04MQTT\x04\x03",
        E::ConnectReservedFlag),
    // Connect flags 0000 1010: will QoS 1 without the will flag.
    ("will QoS without will", V5, b"\x10\x08\x00\x04MQTT\x05\x0a",
        E::WillQosWithoutWill),
    // Connect flags 0001 1110: will QoS 3.
    ("will QoS 3", V3_1_1, b"\x10\x08\x00\x04MQTT\x04\x1e",
        E::InvalidWillQos),
    // Connect flags 0010 0010: will retain without the will flag.
    ("will retain without will", V3_1_1, b"\x10\x08\x00\x04MQTT\x04\x22",
        E::WillRetainWithoutWill),
    // Connect flags 0100 0010: password without user name in 3.1.1.
    ("password without user name", V3_1_1, b"\x10\x08\x00\x04MQTT\x04\x42",
        E::PasswordWithoutUsername),
    // After the client id "c": 0x27 where only a user property (0x26) may be.
    ("Courier property other than 0x26", V3_1_1, b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c\x27",
        E::InvalidCourierProperty(0x27)),
    // CONNECT properties: authentication data 01 02, no method.
    ("CONNECT auth data without method", V5,
        b"\x10\x12\x00\x04MQTT\x05\x02\x00\x00\x05\x16\x00\x02\x01\x02\x00\x00",
        E::AuthDataWithoutMethod),
    // AUTH properties: authentication data 01 02, no method.
    ("AUTH auth data without method", V5, b"\xf0\x07\x18\x05\x16\x00\x02\x01\x02",
        E::AuthWithoutMethod),
    // AUTH continue authentication, property length 0: no method.
    ("AUTH without method", V5, b"\xf0\x02\x18\x00", E::AuthWithoutMethod),
    // CONNECT properties: receive maximum 0.
    ("receive maximum 0", V5, b"\x10\x10\x00\x04MQTT\x05\x02\x00\x00\x03\x21\x00\x00\x00\x00",
        E::InvalidPropertyValue { id: 0x21, value: 0 }),
    // CONNECT properties: request problem information 2.
    ("request problem information 2", V5, b"\x10\x0f\x00\x04MQTT\x05\x02\x00\x00\x02\x17\x02\x00\x00",
        E::InvalidPropertyValue { id: 0x17, value: 2 }),
    // Will properties: topic alias, which only PUBLISH may carry.
    ("topic alias in will properties", V5,
        b"\x10\x11\x00\x04MQTT\x05\x06\x00\x00\x00\x00\x00\x03\x23\x00\x01",
        E::PropertyNotAllowed { packet: "CONNECT", id: 0x23 }),
    // Will topic "".
    ("empty will topic", V3_1_1, b"\x10\x11\x00\x04MQTT\x04\x06\x00\x3c\x00\x01c\x00\x00\x00\x00",
        E::InvalidTopicName(TopicError::Empty)),

    // ---- CONNACK ----------------------------------------------------------
    // Acknowledge flags 0000 0010: reserved bit 1.
    ("CONNACK reserved flags", V3_1_1, b"\x20\x02\x02\x00",
        E::ConnAckReservedFlags),
    // Acknowledge flags 1000 0000: reserved bit 7.
    ("v5 CONNACK reserved flags", V5, b"\x20\x03\x80\x00\x00",
        E::ConnAckReservedFlags),
    // 3.1.1 return codes stop at 5.
    ("CONNACK return code 6", V3_1_1, b"\x20\x02\x00\x06",
        E::InvalidReasonCode { packet: "CONNACK", code: 6 }),
    // 0x01 (Granted QoS 1) is a reason code, but not a CONNACK one.
    ("v5 CONNACK reason 0x01", V5, b"\x20\x03\x00\x01\x00",
        E::InvalidReasonCode { packet: "CONNACK", code: 0x01 }),
    // Maximum QoS is 0 or 1.
    ("maximum QoS 2", V5, b"\x20\x05\x00\x00\x02\x24\x02",
        E::InvalidPropertyValue { id: 0x24, value: 2 }),
    // Retain available is 0 or 1.
    ("retain available 2", V5, b"\x20\x05\x00\x00\x02\x25\x02",
        E::InvalidPropertyValue { id: 0x25, value: 2 }),
    // Maximum packet size 0.
    ("maximum packet size 0", V5, b"\x20\x08\x00\x00\x05\x27\x00\x00\x00\x00",
        E::InvalidPropertyValue { id: 0x27, value: 0 }),
    // Two (empty) reason strings.
    ("CONNACK reason string twice", V5, b"\x20\x09\x00\x00\x06\x1f\x00\x00\x1f\x00\x00",
        E::DuplicateProperty { packet: "CONNACK", id: 0x1f }),

    // ---- PUBLISH ----------------------------------------------------------
    // Header 0011 1000: DUP with QoS 0.
    ("DUP on QoS 0", V3_1_1, b"\x38\x03\x00\x01t",
        E::DupOnQos0),
    // Header 0011 0110: QoS 3.
    ("PUBLISH QoS 3", V3_1_1, b"\x36\x05\x00\x01t\x00\x01",
        E::InvalidPublishQos),
    // Topic "a/+".
    ("'+' in topic name", V3_1_1, b"\x30\x05\x00\x03a/+",
        E::InvalidTopicName(TopicError::WildcardInName)),
    // Topic "#", then property length 0.
    ("'#' in topic name", V5, b"\x30\x04\x00\x01#\x00",
        E::InvalidTopicName(TopicError::WildcardInName)),
    // An empty topic is valid only with a topic alias, which 3.1.1 lacks.
    ("empty topic in 3.1.1", V3_1_1, b"\x30\x02\x00\x00",
        E::InvalidTopicName(TopicError::Empty)),
    // Same in 3.1, with payload "hi".
    ("empty topic in 3.1", V3_1, b"\x30\x04\x00\x00hi",
        E::InvalidTopicName(TopicError::Empty)),
    // Response topic "a#" [MQTT-3.3.2-14].
    ("wildcard in response topic", V5, b"\x30\x09\x00\x01t\x05\x08\x00\x02a#",
        E::InvalidTopicName(TopicError::WildcardInName)),
    // Empty topic, property length 0.
    ("empty topic without alias", V5, b"\x30\x03\x00\x00\x00",
        E::EmptyTopicWithoutAlias),
    // Empty topic, topic alias 0.
    ("topic alias 0", V5, b"\x30\x06\x00\x00\x03\x23\x00\x00",
        E::ZeroTopicAlias),
    // QoS 1 with packet identifier 0.
    ("PUBLISH packet id 0", V3_1_1, b"\x32\x05\x00\x01t\x00\x00",
        E::ZeroPacketId { packet: "PUBLISH" }),
    // Payload format indicator 2.
    ("payload format indicator 2", V5, b"\x30\x06\x00\x01t\x02\x01\x02",
        E::InvalidPropertyValue { id: 0x01, value: 2 }),
    // Subscription identifier 0.
    ("PUBLISH subscription id 0", V5, b"\x30\x06\x00\x01t\x02\x0b\x00",
        E::InvalidPropertyValue { id: 0x0b, value: 0 }),
    // Property 0x04 is not defined.
    ("unknown property 0x04", V5, b"\x30\x05\x00\x01t\x01\x04",
        E::UnknownProperty { packet: "PUBLISH", id: 0x04 }),
    // Property 0x40, the first identifier past those MQTT 5 defines.
    ("unknown property 0x40", V5, b"\x30\x05\x00\x01t\x01\x40",
        E::UnknownProperty { packet: "PUBLISH", id: 0x40 }),
    // Property 128, a two-byte identifier (80 01).
    ("unknown two-byte property 128", V5, b"\x30\x06\x00\x01t\x02\x80\x01",
        E::UnknownProperty { packet: "PUBLISH", id: 128 }),
    // Session expiry interval belongs to CONNECT, CONNACK and DISCONNECT.
    ("session expiry in PUBLISH", V5, b"\x30\x09\x00\x01t\x05\x11\x00\x00\x00\x00",
        E::PropertyNotAllowed { packet: "PUBLISH", id: 0x11 }),
    // Message expiry interval 1, then 2.
    ("message expiry twice", V5, b"\x30\x0e\x00\x01t\x0a\x02\x00\x00\x00\x01\x02\x00\x00\x00\x02",
        E::DuplicateProperty { packet: "PUBLISH", id: 0x02 }),
    // Topic alias 1, then 2.
    ("topic alias twice", V5, b"\x30\x0a\x00\x01t\x06\x23\x00\x01\x23\x00\x02",
        E::DuplicateProperty { packet: "PUBLISH", id: 0x23 }),

    // ---- PUBACK, PUBREC, PUBREL, PUBCOMP ----------------------------------
    ("PUBACK packet id 0", V3_1_1, b"\x40\x02\x00\x00",
        E::ZeroPacketId { packet: "PUBACK" }),
    ("PUBREC packet id 0", V5, b"\x50\x02\x00\x00",
        E::ZeroPacketId { packet: "PUBREC" }),
    // 0x8f (Topic Filter invalid) is not a PUBACK reason.
    ("PUBACK reason 0x8f", V5, b"\x40\x03\x00\x01\x8f",
        E::InvalidReasonCode { packet: "PUBACK", code: 0x8f }),
    // PUBREL carries only 0x00 and 0x92.
    ("PUBREL reason 0x10", V5, b"\x62\x03\x00\x01\x10",
        E::InvalidReasonCode { packet: "PUBREL", code: 0x10 }),
    // 0x03 is not a reason code at all.
    ("PUBCOMP reason 0x03", V5, b"\x70\x03\x00\x01\x03",
        E::InvalidReasonCode { packet: "PUBCOMP", code: 0x03 }),
    // Content type "x" is a PUBLISH property.
    ("content type in PUBACK", V5, b"\x40\x08\x00\x01\x00\x04\x03\x00\x01x",
        E::PropertyNotAllowed { packet: "PUBACK", id: 0x03 }),
    // Two (empty) reason strings.
    ("PUBACK reason string twice", V5, b"\x40\x0a\x00\x01\x00\x06\x1f\x00\x00\x1f\x00\x00",
        E::DuplicateProperty { packet: "PUBACK", id: 0x1f }),

    // ---- SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK -------------------------
    ("SUBSCRIBE packet id 0", V3_1_1, b"\x82\x06\x00\x00\x00\x01a\x00",
        E::ZeroPacketId { packet: "SUBSCRIBE" }),
    ("UNSUBSCRIBE packet id 0", V3_1_1, b"\xa2\x05\x00\x00\x00\x01a",
        E::ZeroPacketId { packet: "UNSUBSCRIBE" }),
    ("SUBACK packet id 0", V3_1_1, b"\x90\x03\x00\x00\x00",
        E::ZeroPacketId { packet: "SUBACK" }),
    // Packet identifier and nothing else.
    ("empty SUBSCRIBE", V3_1_1, b"\x82\x02\x00\x01",
        E::EmptySubscribe),
    // Packet identifier, property length 0, no filters.
    ("empty v5 SUBSCRIBE", V5, b"\x82\x03\x00\x01\x00",
        E::EmptySubscribe),
    ("empty UNSUBSCRIBE", V3_1_1, b"\xa2\x02\x00\x01",
        E::EmptyUnsubscribe),
    ("empty v5 UNSUBSCRIBE", V5, b"\xa2\x03\x00\x01\x00",
        E::EmptyUnsubscribe),
    // Filter "": a filter is at least one character.
    ("empty topic filter", V3_1_1, b"\x82\x05\x00\x01\x00\x00\x00",
        E::InvalidTopicFilter(TopicError::Empty)),
    // Filter "a/#/b": '#' must be last.
    ("'#' not last", V3_1_1, b"\x82\x0a\x00\x01\x00\x05a/#/b\x00",
        E::InvalidTopicFilter(TopicError::MultiLevelWildcard)),
    // Filter "a#": '#' must be a whole level.
    ("'#' inside a level", V5, b"\x82\x08\x00\x01\x00\x00\x02a#\x00",
        E::InvalidTopicFilter(TopicError::MultiLevelWildcard)),
    // Filter "a+": '+' must be a whole level.
    ("'+' inside a level", V3_1_1, b"\x82\x07\x00\x01\x00\x02a+\x00",
        E::InvalidTopicFilter(TopicError::SingleLevelWildcard)),
    // UNSUBSCRIBE filter "a#".
    ("UNSUBSCRIBE '#' inside a level", V3_1_1, b"\xa2\x06\x00\x01\x00\x02a#",
        E::InvalidTopicFilter(TopicError::MultiLevelWildcard)),
    // Filter "$share//a": empty share name.
    ("empty share name", V5, b"\x82\x0f\x00\x01\x00\x00\x09$share//a\x00",
        E::InvalidTopicFilter(TopicError::EmptyShareName)),
    // Filter "$share/g": no filter after the share name.
    ("share name without filter", V3_1_1, b"\x82\x0d\x00\x01\x00\x08$share/g\x00",
        E::InvalidTopicFilter(TopicError::InvalidShareName)),
    // UNSUBSCRIBE filter "$share/g+/a": wildcard in the share name.
    ("wildcard in share name", V5, b"\xa2\x10\x00\x01\x00\x00\x0b$share/g+/a",
        E::InvalidTopicFilter(TopicError::InvalidShareName)),
    // Options 0001 0001: bit 4 is reserved in 3.1.1 even with Courier's bits.
    ("3.1.1 options bit 4", V3_1_1, b"\x82\x06\x00\x01\x00\x01a\x11",
        E::SubscriptionReservedBits(0x10)),
    // Options 1111 1101: bits 4-7 reserved, Courier bits 2-3 fine.
    ("3.1.1 options bits 4-7", V3_1_1, b"\x82\x06\x00\x01\x00\x01a\xfd",
        E::SubscriptionReservedBits(0xf0)),
    // Options 0000 1101: Courier's non_retry + non_persistence, reserved in 3.1.
    ("Courier 0x0d in 3.1", V3_1, b"\x82\x06\x00\x01\x00\x01a\x0d",
        E::SubscriptionReservedBits(0x0c)),
    // Options 0000 0101: Courier's non_persistence, reserved in 3.1.
    ("Courier 0x05 in 3.1", V3_1, b"\x82\x06\x00\x01\x00\x01a\x05",
        E::SubscriptionReservedBits(0x04)),
    // Options 0000 1001: Courier's non_retry, reserved in 3.1.
    ("Courier 0x09 in 3.1", V3_1, b"\x82\x06\x00\x01\x00\x01a\x09",
        E::SubscriptionReservedBits(0x08)),
    // Options 0100 0000: bit 6 is reserved in MQTT 5.
    ("v5 options bit 6", V5, b"\x82\x07\x00\x01\x00\x00\x01a\x40",
        E::SubscriptionReservedBits(0x40)),
    // Options 0000 0011: QoS 3.
    ("subscription QoS 3", V3_1_1, b"\x82\x06\x00\x01\x00\x01a\x03",
        E::InvalidSubscriptionQos),
    // Options 0000 0011 in MQTT 5.
    ("v5 subscription QoS 3", V5, b"\x82\x07\x00\x01\x00\x00\x01a\x03",
        E::InvalidSubscriptionQos),
    // Options 0011 0000: retain handling 3.
    ("retain handling 3", V5, b"\x82\x07\x00\x01\x00\x00\x01a\x30",
        E::InvalidRetainHandling),
    // "$share/g/a" with options 0000 0100: no local.
    ("no local on a shared subscription", V5, b"\x82\x10\x00\x01\x00\x00\x0a$share/g/a\x04",
        E::NoLocalOnSharedSubscription),
    // Subscription identifier 0.
    ("SUBSCRIBE subscription id 0", V5, b"\x82\x09\x00\x01\x02\x0b\x00\x00\x01a\x00",
        E::InvalidPropertyValue { id: 0x0b, value: 0 }),
    // Subscription identifiers 1 and 2: once per SUBSCRIBE.
    ("subscription id twice", V5, b"\x82\x0b\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00",
        E::DuplicateProperty { packet: "SUBSCRIBE", id: 0x0b }),
    // Reason string (empty) in SUBSCRIBE.
    ("reason string in SUBSCRIBE", V5, b"\x82\x0a\x00\x01\x03\x1f\x00\x00\x00\x01a\x00",
        E::PropertyNotAllowed { packet: "SUBSCRIBE", id: 0x1f }),
    // Subscription identifier 1 in UNSUBSCRIBE.
    ("subscription id in UNSUBSCRIBE", V5, b"\xa2\x08\x00\x01\x02\x0b\x01\x00\x01a",
        E::PropertyNotAllowed { packet: "UNSUBSCRIBE", id: 0x0b }),
    // 0x87 is an MQTT 5 SUBACK reason; 3.1.1 has only 0, 1, 2 and 0x80.
    ("3.1.1 SUBACK code 0x87", V3_1_1, b"\x90\x03\x00\x01\x87",
        E::InvalidReasonCode { packet: "SUBACK", code: 0x87 }),
    // 0x03 is not a reason code.
    ("v5 SUBACK code 0x03", V5, b"\x90\x04\x00\x01\x00\x03",
        E::InvalidReasonCode { packet: "SUBACK", code: 0x03 }),
    // 0x02 (Granted QoS 2) is not an UNSUBACK reason.
    ("UNSUBACK code 0x02", V5, b"\xb0\x04\x00\x01\x00\x02",
        E::InvalidReasonCode { packet: "UNSUBACK", code: 0x02 }),

    // ---- DISCONNECT, AUTH -------------------------------------------------
    // 0x05 is not a reason code.
    ("DISCONNECT reason 0x05", V5, b"\xe0\x01\x05",
        E::InvalidReasonCode { packet: "DISCONNECT", code: 0x05 }),
    // 0x18 (Continue authentication) belongs to AUTH.
    ("DISCONNECT reason 0x18", V5, b"\xe0\x01\x18",
        E::InvalidReasonCode { packet: "DISCONNECT", code: 0x18 }),
    // Authentication method (empty) in DISCONNECT.
    ("auth method in DISCONNECT", V5, b"\xe0\x05\x00\x03\x15\x00\x00",
        E::PropertyNotAllowed { packet: "DISCONNECT", id: 0x15 }),
    // AUTH carries only 0x00, 0x18 and 0x19.
    ("AUTH reason 0x01", V5, b"\xf0\x01\x01",
        E::InvalidReasonCode { packet: "AUTH", code: 0x01 }),
    // Session expiry interval 0 in AUTH.
    ("session expiry in AUTH", V5, b"\xf0\x07\x18\x05\x11\x00\x00\x00\x00",
        E::PropertyNotAllowed { packet: "AUTH", id: 0x11 }),
];

/// The variant's name. Exhaustive on purpose: a new variant fails to compile
/// here until it is listed, and then fails [`every_variant_has_a_case`] until
/// the table has a row for it.
fn variant(e: &DecodeError) -> &'static str {
    match e {
        E::PacketTooLarge { .. } => "PacketTooLarge",
        E::MalformedVarInt => "MalformedVarInt",
        E::ReservedPacketType => "ReservedPacketType",
        E::AuthBeforeV5 => "AuthBeforeV5",
        E::InvalidHeaderFlags { .. } => "InvalidHeaderFlags",
        E::InvalidRemainingLength { .. } => "InvalidRemainingLength",
        E::Truncated { .. } => "Truncated",
        E::TrailingBytes { .. } => "TrailingBytes",
        E::InvalidUtf8 { .. } => "InvalidUtf8",
        E::NulInString { .. } => "NulInString",
        E::InvalidProtocolName => "InvalidProtocolName",
        E::UnsupportedProtocolLevel(_) => "UnsupportedProtocolLevel",
        E::ConnectReservedFlag => "ConnectReservedFlag",
        E::WillQosWithoutWill => "WillQosWithoutWill",
        E::InvalidWillQos => "InvalidWillQos",
        E::WillRetainWithoutWill => "WillRetainWithoutWill",
        E::PasswordWithoutUsername => "PasswordWithoutUsername",
        E::InvalidCourierProperty(_) => "InvalidCourierProperty",
        E::AuthDataWithoutMethod => "AuthDataWithoutMethod",
        E::AuthWithoutMethod => "AuthWithoutMethod",
        E::ConnAckReservedFlags => "ConnAckReservedFlags",
        E::DupOnQos0 => "DupOnQos0",
        E::InvalidPublishQos => "InvalidPublishQos",
        E::InvalidTopicName(_) => "InvalidTopicName",
        E::InvalidTopicFilter(_) => "InvalidTopicFilter",
        E::EmptyTopicWithoutAlias => "EmptyTopicWithoutAlias",
        E::ZeroTopicAlias => "ZeroTopicAlias",
        E::ZeroPacketId { .. } => "ZeroPacketId",
        E::UnknownProperty { .. } => "UnknownProperty",
        E::PropertyNotAllowed { .. } => "PropertyNotAllowed",
        E::DuplicateProperty { .. } => "DuplicateProperty",
        E::InvalidPropertyValue { .. } => "InvalidPropertyValue",
        E::EmptySubscribe => "EmptySubscribe",
        E::EmptyUnsubscribe => "EmptyUnsubscribe",
        E::SubscriptionReservedBits(_) => "SubscriptionReservedBits",
        E::InvalidSubscriptionQos => "InvalidSubscriptionQos",
        E::InvalidRetainHandling => "InvalidRetainHandling",
        E::NoLocalOnSharedSubscription => "NoLocalOnSharedSubscription",
        E::InvalidReasonCode { .. } => "InvalidReasonCode",
    }
}

/// Every variant, by name, as [`variant`] spells them.
const ALL_VARIANTS: &[&str] = &[
    "PacketTooLarge",
    "MalformedVarInt",
    "ReservedPacketType",
    "AuthBeforeV5",
    "InvalidHeaderFlags",
    "InvalidRemainingLength",
    "Truncated",
    "TrailingBytes",
    "InvalidUtf8",
    "NulInString",
    "InvalidProtocolName",
    "UnsupportedProtocolLevel",
    "ConnectReservedFlag",
    "WillQosWithoutWill",
    "InvalidWillQos",
    "WillRetainWithoutWill",
    "PasswordWithoutUsername",
    "InvalidCourierProperty",
    "AuthDataWithoutMethod",
    "AuthWithoutMethod",
    "ConnAckReservedFlags",
    "DupOnQos0",
    "InvalidPublishQos",
    "InvalidTopicName",
    "InvalidTopicFilter",
    "EmptyTopicWithoutAlias",
    "ZeroTopicAlias",
    "ZeroPacketId",
    "UnknownProperty",
    "PropertyNotAllowed",
    "DuplicateProperty",
    "InvalidPropertyValue",
    "EmptySubscribe",
    "EmptyUnsubscribe",
    "SubscriptionReservedBits",
    "InvalidSubscriptionQos",
    "InvalidRetainHandling",
    "NoLocalOnSharedSubscription",
    "InvalidReasonCode",
];

#[test]
fn every_case_fails_with_its_exact_error() {
    assert!(CASES.len() >= 45, "only {} cases", CASES.len());
    for (what, version, bytes, want) in CASES {
        let mut buf = BytesMut::from(*bytes);
        let got = decode(&mut buf, *version, MAX);
        assert_eq!(
            got,
            Err(want.clone()),
            "{what} (MQTT {}): {bytes:02x?}",
            version.name()
        );
    }
}

#[test]
fn case_names_are_unique() {
    let mut names: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "two cases share a name");
}

#[test]
fn every_variant_has_a_case() {
    for name in ALL_VARIANTS {
        assert!(
            CASES.iter().any(|c| variant(&c.3) == *name),
            "no malformed case for {name}"
        );
    }
}

#[test]
fn every_literal_is_exactly_one_packet() {
    // The declared remaining length matches the bytes given, so an error is never
    // caused by a miscounted literal. Rows whose fixed header is itself the error
    // (oversized, five-byte length) are skipped.
    for (what, _, bytes, want) in CASES {
        if matches!(want, E::PacketTooLarge { .. } | E::MalformedVarInt) && bytes.len() <= 6 {
            continue;
        }
        let (mut remaining, mut len_len) = (0usize, 0);
        for &b in &bytes[1..] {
            remaining |= usize::from(b & 0x7f) << (7 * len_len);
            len_len += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        assert_eq!(1 + len_len + remaining, bytes.len(), "{what}: {bytes:02x?}");
    }
}

#[test]
fn messages_name_the_spec_clause() {
    for (what, _, _, e) in CASES {
        let msg = e.to_string();
        match e {
            // Not a spec violation: Courier's own extension.
            E::InvalidCourierProperty(_) => assert!(msg.starts_with("Courier 3.1.1: "), "{msg}"),
            _ => assert!(msg.starts_with("[MQTT-"), "{what}: {msg}"),
        }
    }
}

#[test]
fn topic_error_messages_start_with_the_clause() {
    for e in [
        E::InvalidTopicName(TopicError::WildcardInName),
        E::InvalidTopicFilter(TopicError::MultiLevelWildcard),
    ] {
        let msg = e.to_string();
        assert!(msg.starts_with("[MQTT-"), "{msg}");
    }
}

#[test]
fn reason_codes_for_the_peer() {
    use ReasonCode as R;
    let cases = [
        (
            E::PacketTooLarge {
                size: 258,
                max: MAX,
            },
            R::PacketTooLarge,
        ),
        (
            E::UnsupportedProtocolLevel(6),
            R::UnsupportedProtocolVersion,
        ),
        (
            E::InvalidTopicFilter(TopicError::MultiLevelWildcard),
            R::TopicFilterInvalid,
        ),
        (
            E::InvalidTopicName(TopicError::WildcardInName),
            R::TopicNameInvalid,
        ),
        (E::ZeroTopicAlias, R::TopicAliasInvalid),
        // "It is a Protocol Error to include ... more than once" (2.2.2.2).
        (
            E::DuplicateProperty {
                packet: "PUBLISH",
                id: 0x02,
            },
            R::ProtocolError,
        ),
        // "It is a Protocol Error to include the Receive Maximum value ... 0" (3.1.2.11.3).
        (
            E::InvalidPropertyValue { id: 0x21, value: 0 },
            R::ProtocolError,
        ),
        // [MQTT-3.8.3-4] and 3.8.3.1: protocol errors.
        (E::NoLocalOnSharedSubscription, R::ProtocolError),
        (E::InvalidRetainHandling, R::ProtocolError),
        (E::InvalidSubscriptionQos, R::ProtocolError),
        // Malformed packets.
        (E::MalformedVarInt, R::MalformedPacket),
        (
            E::Truncated {
                packet: "PUBACK",
                field: "packet identifier",
            },
            R::MalformedPacket,
        ),
        (E::InvalidUtf8 { packet: "PUBLISH" }, R::MalformedPacket),
        (E::InvalidPublishQos, R::MalformedPacket), // [MQTT-3.3.1-4]
        (E::InvalidWillQos, R::MalformedPacket),    // [MQTT-3.1.2-12]
        (E::SubscriptionReservedBits(0x40), R::MalformedPacket), // [MQTT-3.8.3-5]
        (
            E::UnknownProperty {
                packet: "PUBLISH",
                id: 4,
            },
            R::MalformedPacket,
        ), // 2.2.2.2
        (
            E::PropertyNotAllowed {
                packet: "PUBLISH",
                id: 0x11,
            },
            R::MalformedPacket,
        ), // 2.2.2.2
    ];
    for (e, want) in cases {
        assert_eq!(e.reason_code(), want, "{e:?}");
    }
}

// ---------------------------------------------------------------------------
// Regressions: codec bugs found by these fixtures, now fixed.
// ---------------------------------------------------------------------------

#[test]
fn connect_reserved_flag_is_a_malformed_packet() {
    assert_eq!(
        E::ConnectReservedFlag.reason_code(),
        ReasonCode::MalformedPacket
    );
}

#[test]
fn auth_data_without_method_is_a_protocol_error() {
    assert_eq!(
        E::AuthDataWithoutMethod.reason_code(),
        ReasonCode::ProtocolError
    );
}

#[test]
fn empty_subscribe_and_unsubscribe_are_protocol_errors() {
    assert_eq!(E::EmptySubscribe.reason_code(), ReasonCode::ProtocolError);
    assert_eq!(E::EmptyUnsubscribe.reason_code(), ReasonCode::ProtocolError);
}

#[test]
fn empty_topic_without_alias_is_a_protocol_error() {
    assert_eq!(
        E::EmptyTopicWithoutAlias.reason_code(),
        ReasonCode::ProtocolError
    );
}

#[test]
fn auth_without_method_is_rejected() {
    let cases: [(&str, &[u8]); 3] = [
        // Continue authentication, property length 0.
        ("continue, no properties", b"\xf0\x02\x18\x00"),
        // Continue authentication, no property length.
        ("continue, no property length", b"\xf0\x01\x18"),
        // Re-authenticate, property length 5: reason string "hi", no method.
        (
            "re-authenticate, reason string only",
            b"\xf0\x07\x19\x05\x1f\x00\x02hi",
        ),
    ];
    for (what, bytes) in cases {
        let mut buf = BytesMut::from(bytes);
        let got = decode(&mut buf, V5, MAX);
        assert_eq!(got, Err(E::AuthWithoutMethod), "{what}: {bytes:02x?}");
    }
}
