//! Byte-literal fixtures: every packet type in MQTT 3.1, 3.1.1 and 5.0, plus
//! Courier's 3.1.1 extensions.
//!
//! Each fixture is written by hand from the spec, field by field, never produced
//! by calling [`encode`]. [`wire`] checks both directions: the bytes decode to the
//! packet (consuming the whole buffer) and the packet encodes to the same bytes.
//! Where the spec allows more than one encoding (MQTT 5 short forms), the
//! non-canonical form is checked with [`decodes_to`] only, since the encoder
//! always emits the shortest form. Down-conversion (encoding a packet for an older
//! version than it was built for) is checked with [`encodes_to`] only.
//!
//! Byte strings are split one field per part, with the field named alongside; the
//! remaining lengths are counted by hand.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use super::*;
use crate::topic::{TopicFilter, TopicName};

const V3_1: Version = Version::V3_1;
const V3_1_1: Version = Version::V3_1_1;
const V5: Version = Version::V5;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Joins the hand-written parts of one packet.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Asserts that `bytes` decode to `want` in `version`, consuming all of them.
fn decodes_to(version: Version, bytes: &[u8], want: &Packet) {
    let mut buf = BytesMut::from(bytes);
    let got = decode(&mut buf, version, MAX_PACKET_SIZE);
    assert_eq!(
        got,
        Ok(Some(want.clone())),
        "decoding {bytes:02x?} in MQTT {}",
        version.name()
    );
    assert!(
        buf.is_empty(),
        "{} bytes left over after decoding {bytes:02x?}",
        buf.len()
    );
}

/// Asserts that `packet` encodes to exactly `want` for a `version` peer.
fn encodes_to(version: Version, packet: &Packet, want: &[u8]) {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf)
        .unwrap_or_else(|e| panic!("{e} encoding {packet:?} for MQTT {}", version.name()));
    assert_eq!(
        &buf[..],
        want,
        "encoding {packet:?} for MQTT {}",
        version.name()
    );
    assert_eq!(
        encoded_len(packet, version),
        Ok(want.len()),
        "encoded_len of {packet:?}"
    );
}

/// Both directions: `bytes` decode to `packet`, and `packet` encodes to `bytes`.
fn wire(version: Version, bytes: &[u8], packet: Packet) {
    decodes_to(version, bytes, &packet);
    encodes_to(version, &packet, bytes);
}

fn s(v: &str) -> ByteString {
    ByteString::from(v)
}

fn name(v: &str) -> TopicName {
    TopicName::new(v).expect("valid topic name")
}

fn filter(v: &str) -> TopicFilter {
    TopicFilter::new(v).expect("valid topic filter")
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero packet id")
}

fn bin(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

fn users(pairs: &[(&str, &str)]) -> UserProperties {
    pairs.iter().map(|&(k, v)| (s(k), s(v))).collect()
}

fn qos(q: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: q,
        ..Default::default()
    }
}

fn ack(id: u16, reason_code: ReasonCode, properties: AckProperties) -> Ack {
    Ack {
        packet_id: pid(id),
        reason_code,
        properties,
    }
}

fn ack_props(reason: Option<&str>, user: &[(&str, &str)]) -> AckProperties {
    AckProperties {
        reason_string: reason.map(s),
        user_properties: users(user),
    }
}

fn connack(session_present: bool, reason_code: ReasonCode) -> ConnAck {
    ConnAck {
        session_present,
        reason_code,
        properties: Default::default(),
    }
}

fn publish(qos: QoS, id: Option<u16>, topic: &str, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: name(topic),
        packet_id: id.map(pid),
        payload: bin(payload),
        properties: Default::default(),
    }
}

fn connect(version: Version, client_id: &str) -> Connect {
    Connect {
        version,
        clean_start: true,
        keep_alive: 0,
        client_id: s(client_id),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    }
}

#[test]
fn cat_joins_parts() {
    assert_eq!(cat(&[b"\x01", b"", b"\x02\x03"]), vec![1, 2, 3]);
}

// ---------------------------------------------------------------------------
// MQTT 3.1 (protocol name "MQIsdp", level 3)
// ---------------------------------------------------------------------------

#[test]
fn v3_1_connect_with_will_and_credentials() {
    let bytes = cat(&[
        b"\x10\x1e",       // CONNECT, remaining length 30
        b"\x00\x06MQIsdp", // protocol name
        b"\x03",           // protocol level 3
        b"\xee",           // user name, password, will retain, will QoS 1, will, clean session
        b"\x00\x3c",       // keep alive 60 s
        b"\x00\x02c1",     // client identifier
        b"\x00\x01w",      // will topic
        b"\x00\x03bye",    // will message
        b"\x00\x01u",      // user name
        b"\x00\x01p",      // password
    ]);
    let packet = Connect {
        keep_alive: 60,
        will: Some(LastWill {
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: name("w"),
            payload: bin(b"bye"),
            properties: Default::default(),
        }),
        username: Some(s("u")),
        password: Some(bin(b"p")),
        ..connect(V3_1, "c1")
    };
    wire(V3_1, &bytes, Packet::Connect(Box::new(packet)));
}

#[test]
fn v3_1_connect_minimal() {
    let bytes = cat(&[
        b"\x10\x0f",       // CONNECT, remaining length 15
        b"\x00\x06MQIsdp", // protocol name
        b"\x03",           // protocol level 3
        b"\x02",           // clean session
        b"\x00\x00",       // keep alive disabled
        b"\x00\x01a",      // client identifier
    ]);
    // The connection's version does not matter: CONNECT carries its own.
    decodes_to(V5, &bytes, &Packet::Connect(Box::new(connect(V3_1, "a"))));
    wire(V3_1, &bytes, Packet::Connect(Box::new(connect(V3_1, "a"))));
}

#[test]
fn v3_1_connack() {
    // Byte 1 is reserved in 3.1; byte 2 the return code.
    wire(
        V3_1,
        b"\x20\x02\x00\x00",
        Packet::ConnAck(connack(false, ReasonCode::Success)),
    );
    wire(
        V3_1,
        b"\x20\x02\x00\x02", // identifier rejected
        Packet::ConnAck(connack(false, ReasonCode::ClientIdentifierNotValid)),
    );
    wire(
        V3_1,
        b"\x20\x02\x00\x03", // server unavailable
        Packet::ConnAck(connack(false, ReasonCode::ServerUnavailable)),
    );
}

#[test]
fn v3_1_publish_qos0() {
    let bytes = cat(&[
        b"\x30\x07",    // PUBLISH QoS 0, remaining length 7
        b"\x00\x03a/b", // topic name
        b"hi",          // payload
    ]);
    wire(
        V3_1,
        &bytes,
        Packet::Publish(publish(QoS::AtMostOnce, None, "a/b", b"hi")),
    );
}

#[test]
fn v3_1_publish_qos1_retain() {
    let bytes = cat(&[
        b"\x33\x08",    // PUBLISH QoS 1 + RETAIN, remaining length 8
        b"\x00\x03a/b", // topic name
        b"\x00\x0a",    // packet identifier 10
        b"x",           // payload
    ]);
    let packet = Publish {
        retain: true,
        ..publish(QoS::AtLeastOnce, Some(10), "a/b", b"x")
    };
    wire(V3_1, &bytes, Packet::Publish(packet));
}

#[test]
fn v3_1_publish_qos2_dup() {
    let bytes = cat(&[
        b"\x3c\x05",  // PUBLISH DUP + QoS 2, remaining length 5
        b"\x00\x01t", // topic name
        b"\x12\x34",  // packet identifier 0x1234
                      // empty payload
    ]);
    let packet = Publish {
        dup: true,
        ..publish(QoS::ExactlyOnce, Some(0x1234), "t", b"")
    };
    wire(V3_1, &bytes, Packet::Publish(packet));
}

#[test]
fn v3_1_puback() {
    wire(V3_1, b"\x40\x02\x00\x01", Packet::PubAck(Ack::new(pid(1))));
}

#[test]
fn v3_1_pubrec() {
    wire(V3_1, b"\x50\x02\x00\x02", Packet::PubRec(Ack::new(pid(2))));
}

#[test]
fn v3_1_pubrel() {
    wire(V3_1, b"\x62\x02\x00\x03", Packet::PubRel(Ack::new(pid(3))));
    // 3.1 let a client set DUP on a resent PUBREL (flags 1010); it is always
    // encoded without.
    decodes_to(V3_1, b"\x6a\x02\x00\x03", &Packet::PubRel(Ack::new(pid(3))));
}

#[test]
fn v3_1_pubcomp() {
    wire(V3_1, b"\x70\x02\x00\x04", Packet::PubComp(Ack::new(pid(4))));
}

#[test]
fn v3_1_subscribe() {
    let bytes = cat(&[
        b"\x82\x0c",        // SUBSCRIBE (flags 0010), remaining length 12
        b"\x00\x0a",        // packet identifier 10
        b"\x00\x03a/+\x01", // filter "a/+", requested QoS 1
        b"\x00\x01#\x02",   // filter "#", requested QoS 2
    ]);
    let packet = Subscribe {
        packet_id: pid(10),
        filters: vec![
            (filter("a/+"), qos(QoS::AtLeastOnce)),
            (filter("#"), qos(QoS::ExactlyOnce)),
        ],
        properties: Default::default(),
    };
    wire(V3_1, &bytes, Packet::Subscribe(packet.clone()));
    // A resent 3.1 SUBSCRIBE may carry DUP (flags 1010).
    let mut dup = bytes.clone();
    dup[0] = 0x8a;
    decodes_to(V3_1, &dup, &Packet::Subscribe(packet));
}

#[test]
fn v3_1_suback() {
    let bytes = cat(&[
        b"\x90\x05",     // SUBACK, remaining length 5
        b"\x00\x0a",     // packet identifier 10
        b"\x00\x01\x02", // granted QoS 0, 1, 2
    ]);
    let packet = SubAck {
        packet_id: pid(10),
        reason_codes: vec![
            ReasonCode::Success,
            ReasonCode::GrantedQos1,
            ReasonCode::GrantedQos2,
        ],
        properties: Default::default(),
    };
    wire(V3_1, &bytes, Packet::SubAck(packet));
}

#[test]
fn v3_1_unsubscribe() {
    let bytes = cat(&[
        b"\xa2\x0a",    // UNSUBSCRIBE (flags 0010), remaining length 10
        b"\x00\x0b",    // packet identifier 11
        b"\x00\x03a/+", // filter
        b"\x00\x01#",   // filter
    ]);
    let packet = Unsubscribe {
        packet_id: pid(11),
        filters: vec![filter("a/+"), filter("#")],
        user_properties: Vec::new(),
    };
    wire(V3_1, &bytes, Packet::Unsubscribe(packet));
}

#[test]
fn v3_1_unsuback() {
    let packet = UnsubAck {
        packet_id: pid(11),
        reason_codes: Vec::new(),
        properties: Default::default(),
    };
    wire(V3_1, b"\xb0\x02\x00\x0b", Packet::UnsubAck(packet));
}

#[test]
fn v3_1_pingreq_pingresp_disconnect() {
    wire(V3_1, b"\xc0\x00", Packet::PingReq);
    wire(V3_1, b"\xd0\x00", Packet::PingResp);
    wire(V3_1, b"\xe0\x00", Packet::Disconnect(Disconnect::default()));
}

// ---------------------------------------------------------------------------
// MQTT 3.1.1 (protocol name "MQTT", level 4)
// ---------------------------------------------------------------------------

#[test]
fn v3_1_1_connect_with_credentials() {
    let bytes = cat(&[
        b"\x10\x1b",      // CONNECT, remaining length 27
        b"\x00\x04MQTT",  // protocol name
        b"\x04",          // protocol level 4
        b"\xc2",          // user name, password, clean session
        b"\x00\x3c",      // keep alive 60 s
        b"\x00\x05dev-1", // client identifier
        b"\x00\x03rid",   // user name
        b"\x00\x03jwt",   // password
    ]);
    let packet = Connect {
        keep_alive: 60,
        username: Some(s("rid")),
        password: Some(bin(b"jwt")),
        ..connect(V3_1_1, "dev-1")
    };
    wire(V3_1_1, &bytes, Packet::Connect(Box::new(packet)));
}

#[test]
fn v3_1_1_connect_with_qos2_will_and_empty_client_id() {
    let bytes = cat(&[
        b"\x10\x11",     // CONNECT, remaining length 17
        b"\x00\x04MQTT", // protocol name
        b"\x04",         // protocol level 4
        b"\x16",         // will QoS 2, will, clean session
        b"\x00\x0a",     // keep alive 10 s
        b"\x00\x00",     // empty client identifier
        b"\x00\x01x",    // will topic
        b"\x00\x00",     // empty will message
    ]);
    let packet = Connect {
        keep_alive: 10,
        will: Some(LastWill {
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: name("x"),
            payload: Bytes::new(),
            properties: Default::default(),
        }),
        ..connect(V3_1_1, "")
    };
    wire(V3_1_1, &bytes, Packet::Connect(Box::new(packet)));
}

#[test]
fn v3_1_1_connack() {
    wire(
        V3_1_1,
        b"\x20\x02\x01\x00", // session present, accepted
        Packet::ConnAck(connack(true, ReasonCode::Success)),
    );
    wire(
        V3_1_1,
        b"\x20\x02\x00\x01", // unacceptable protocol version
        Packet::ConnAck(connack(false, ReasonCode::UnsupportedProtocolVersion)),
    );
    wire(
        V3_1_1,
        b"\x20\x02\x00\x04", // bad user name or password
        Packet::ConnAck(connack(false, ReasonCode::BadUserNameOrPassword)),
    );
    wire(
        V3_1_1,
        b"\x20\x02\x00\x05", // not authorized
        Packet::ConnAck(connack(false, ReasonCode::NotAuthorized)),
    );
}

#[test]
fn v3_1_1_publish_qos0_with_two_byte_remaining_length() {
    let payload = [0xa5; 200];
    let bytes = cat(&[
        b"\x30\xcb\x01", // PUBLISH QoS 0, remaining length 203 = 0x4b + 1 * 128
        b"\x00\x01t",    // topic name
        &payload,        // 200 bytes of payload
    ]);
    wire(
        V3_1_1,
        &bytes,
        Packet::Publish(publish(QoS::AtMostOnce, None, "t", &payload)),
    );
}

#[test]
fn v3_1_1_publish_qos1() {
    let bytes = cat(&[
        b"\x32\x0a",    // PUBLISH QoS 1, remaining length 10
        b"\x00\x03a/b", // topic name
        b"\x00\x01",    // packet identifier 1
        b"abc",         // payload
    ]);
    wire(
        V3_1_1,
        &bytes,
        Packet::Publish(publish(QoS::AtLeastOnce, Some(1), "a/b", b"abc")),
    );
}

#[test]
fn v3_1_1_publish_qos2_dup_retain() {
    let bytes = cat(&[
        b"\x3d\x06",  // PUBLISH DUP + QoS 2 + RETAIN, remaining length 6
        b"\x00\x01t", // topic name
        b"\xff\xff",  // packet identifier 65535
        b"\x00",      // payload: one zero byte
    ]);
    let packet = Publish {
        dup: true,
        retain: true,
        ..publish(QoS::ExactlyOnce, Some(0xffff), "t", b"\x00")
    };
    wire(V3_1_1, &bytes, Packet::Publish(packet));
}

#[test]
fn v3_1_1_puback() {
    wire(
        V3_1_1,
        b"\x40\x02\xff\xff",
        Packet::PubAck(Ack::new(pid(0xffff))),
    );
}

#[test]
fn v3_1_1_pubrec() {
    wire(
        V3_1_1,
        b"\x50\x02\x01\x00",
        Packet::PubRec(Ack::new(pid(256))),
    );
}

#[test]
fn v3_1_1_pubrel() {
    wire(
        V3_1_1,
        b"\x62\x02\x00\x01",
        Packet::PubRel(Ack::new(pid(1))),
    );
}

#[test]
fn v3_1_1_pubcomp() {
    wire(
        V3_1_1,
        b"\x70\x02\x00\x01",
        Packet::PubComp(Ack::new(pid(1))),
    );
}

#[test]
fn v3_1_1_subscribe() {
    let bytes = cat(&[
        b"\x82\x12",        // SUBSCRIBE, remaining length 18
        b"\x00\x01",        // packet identifier 1
        b"\x00\x03a/b\x00", // "a/b", QoS 0
        b"\x00\x03c/+\x01", // "c/+", QoS 1
        b"\x00\x01#\x02",   // "#", QoS 2
    ]);
    let packet = Subscribe {
        packet_id: pid(1),
        filters: vec![
            (filter("a/b"), qos(QoS::AtMostOnce)),
            (filter("c/+"), qos(QoS::AtLeastOnce)),
            (filter("#"), qos(QoS::ExactlyOnce)),
        ],
        properties: Default::default(),
    };
    wire(V3_1_1, &bytes, Packet::Subscribe(packet));
}

#[test]
fn v3_1_1_suback() {
    let bytes = cat(&[
        b"\x90\x06",         // SUBACK, remaining length 6
        b"\x00\x01",         // packet identifier 1
        b"\x00\x01\x02\x80", // granted QoS 0, 1, 2, failure
    ]);
    let packet = SubAck {
        packet_id: pid(1),
        reason_codes: vec![
            ReasonCode::Success,
            ReasonCode::GrantedQos1,
            ReasonCode::GrantedQos2,
            ReasonCode::UnspecifiedError,
        ],
        properties: Default::default(),
    };
    wire(V3_1_1, &bytes, Packet::SubAck(packet));
}

#[test]
fn v3_1_1_unsubscribe() {
    let bytes = cat(&[
        b"\xa2\x08",  // UNSUBSCRIBE, remaining length 8
        b"\x00\x02",  // packet identifier 2
        b"\x00\x01a", // filter "a"
        b"\x00\x01+", // filter "+"
    ]);
    let packet = Unsubscribe {
        packet_id: pid(2),
        filters: vec![filter("a"), filter("+")],
        user_properties: Vec::new(),
    };
    wire(V3_1_1, &bytes, Packet::Unsubscribe(packet));
}

#[test]
fn v3_1_1_unsuback() {
    let packet = UnsubAck {
        packet_id: pid(2),
        reason_codes: Vec::new(),
        properties: Default::default(),
    };
    wire(V3_1_1, b"\xb0\x02\x00\x02", Packet::UnsubAck(packet));
}

#[test]
fn v3_1_1_pingreq_pingresp_disconnect() {
    wire(V3_1_1, b"\xc0\x00", Packet::PingReq);
    wire(V3_1_1, b"\xd0\x00", Packet::PingResp);
    wire(
        V3_1_1,
        b"\xe0\x00",
        Packet::Disconnect(Disconnect::default()),
    );
}

// ---------------------------------------------------------------------------
// Courier's 3.1.1 extensions (DESIGN.md section 4)
// ---------------------------------------------------------------------------

#[test]
fn courier_connect_user_properties_after_password() {
    let bytes = cat(&[
        b"\x10\x38",                      // CONNECT, remaining length 56
        b"\x00\x04MQTT",                  // protocol name
        b"\x04",                          // protocol level 4
        b"\xc0",                          // user name, password; clean session 0
        b"\x01\x2c",                      // keep alive 300 s
        b"\x00\x01c",                     // client identifier
        b"\x00\x01u",                     // user name
        b"\x00\x03jwt",                   // password
        b"\x26\x00\x02os\x00\x07android", // user property os=android (no length prefix)
        b"\x26\x00\x03app\x00\x031.2",    // user property app=1.2
        b"\x26\x00\x02os\x00\x03ios",     // user property os=ios: a name may repeat
    ]);
    let packet = Connect {
        clean_start: false,
        keep_alive: 300,
        username: Some(s("u")),
        password: Some(bin(b"jwt")),
        properties: ConnectProperties {
            user_properties: users(&[("os", "android"), ("app", "1.2"), ("os", "ios")]),
            ..Default::default()
        },
        ..connect(V3_1_1, "c")
    };
    wire(V3_1_1, &bytes, Packet::Connect(Box::new(packet)));
}

#[test]
fn courier_connect_user_properties_follow_the_last_field_present() {
    // No user name or password: the properties follow the client identifier.
    let bytes = cat(&[
        b"\x10\x14",               // CONNECT, remaining length 20
        b"\x00\x04MQTT",           // protocol name
        b"\x04",                   // protocol level 4
        b"\x02",                   // clean session
        b"\x00\x3c",               // keep alive 60 s
        b"\x00\x01c",              // client identifier
        b"\x26\x00\x01k\x00\x01v", // user property k=v
    ]);
    let packet = Connect {
        keep_alive: 60,
        properties: ConnectProperties {
            user_properties: users(&[("k", "v")]),
            ..Default::default()
        },
        ..connect(V3_1_1, "c")
    };
    wire(V3_1_1, &bytes, Packet::Connect(Box::new(packet)));
}

#[test]
fn courier_subscribe_non_retry_and_non_persistence() {
    let bytes = cat(&[
        b"\x82\x12",      // SUBSCRIBE, remaining length 18
        b"\x00\x07",      // packet identifier 7
        b"\x00\x01a\x0d", // 0000 1101: non_retry + non_persistence + QoS 1
        b"\x00\x01b\x05", // 0000 0101: non_persistence + QoS 1
        b"\x00\x01c\x09", // 0000 1001: non_retry + QoS 1
        b"\x00\x01d\x0e", // 0000 1110: non_retry + non_persistence + QoS 2
    ]);
    let courier = |q, non_retry, non_persistence| SubscriptionOptions {
        non_retry,
        non_persistence,
        ..qos(q)
    };
    let packet = Subscribe {
        packet_id: pid(7),
        filters: vec![
            (filter("a"), courier(QoS::AtLeastOnce, true, true)),
            (filter("b"), courier(QoS::AtLeastOnce, false, true)),
            (filter("c"), courier(QoS::AtLeastOnce, true, false)),
            (filter("d"), courier(QoS::ExactlyOnce, true, true)),
        ],
        properties: Default::default(),
    };
    wire(V3_1_1, &bytes, Packet::Subscribe(packet));
}

#[test]
fn courier_subscribe_bits_are_errors_in_3_1_and_bits_4_to_7_still_reserved() {
    let subscribe = |options: u8| {
        let bytes = cat(&[
            b"\x82\x06",  // SUBSCRIBE, remaining length 6
            b"\x00\x07",  // packet identifier 7
            b"\x00\x01a", // filter "a"
            &[options],   // subscription options
        ]);
        move |version| decode(&mut BytesMut::from(&bytes[..]), version, MAX_PACKET_SIZE)
    };
    // MQTT 3.1 has only the two QoS bits: the Courier bits are reserved there.
    assert_eq!(
        subscribe(0x0d)(V3_1),
        Err(DecodeError::SubscriptionReservedBits(0x0c))
    );
    assert_eq!(
        subscribe(0x05)(V3_1),
        Err(DecodeError::SubscriptionReservedBits(0x04))
    );
    assert_eq!(
        subscribe(0x09)(V3_1),
        Err(DecodeError::SubscriptionReservedBits(0x08))
    );
    // In 3.1.1 bits 4-7 stay reserved, with or without the Courier bits.
    assert_eq!(
        subscribe(0x11)(V3_1_1),
        Err(DecodeError::SubscriptionReservedBits(0x10))
    );
    assert_eq!(
        subscribe(0x8d)(V3_1_1),
        Err(DecodeError::SubscriptionReservedBits(0x80))
    );
    assert_eq!(
        subscribe(0xfd)(V3_1_1),
        Err(DecodeError::SubscriptionReservedBits(0xf0))
    );
}

#[test]
fn courier_extensions_are_dropped_for_other_versions() {
    // Courier user properties are not written in a 3.1 CONNECT...
    let c = Connect {
        properties: ConnectProperties {
            user_properties: users(&[("k", "v")]),
            ..Default::default()
        },
        ..connect(V3_1, "a")
    };
    encodes_to(
        V3_1,
        &Packet::Connect(Box::new(c)),
        &cat(&[
            b"\x10\x0f",
            b"\x00\x06MQIsdp",
            b"\x03",
            b"\x02",
            b"\x00\x00",
            b"\x00\x01a",
        ]),
    );
    // ...and the Courier option bits are not written for 3.1 or 5.
    let sub = Packet::Subscribe(Subscribe {
        packet_id: pid(7),
        filters: vec![(
            filter("a"),
            SubscriptionOptions {
                non_retry: true,
                non_persistence: true,
                ..qos(QoS::AtLeastOnce)
            },
        )],
        properties: Default::default(),
    });
    encodes_to(V3_1, &sub, b"\x82\x06\x00\x07\x00\x01a\x01");
    encodes_to(V5, &sub, b"\x82\x07\x00\x07\x00\x00\x01a\x01");
}

// ---------------------------------------------------------------------------
// MQTT 5.0 (protocol name "MQTT", level 5)
// ---------------------------------------------------------------------------

#[test]
fn v5_connect_with_every_property_and_will_property() {
    let bytes = cat(&[
        b"\x10\x7d",               // CONNECT, remaining length 125
        b"\x00\x04MQTT",           // protocol name
        b"\x05",                   // protocol level 5
        b"\xee",     // user name, password, will retain, will QoS 1, will, clean start
        b"\x00\x1e", // keep alive 30 s
        b"\x2f",     // property length 47
        b"\x11\x00\x00\x0e\x10", //   session expiry interval 3600
        b"\x21\x00\x14", //   receive maximum 20
        b"\x27\x00\x00\x10\x00", //   maximum packet size 4096
        b"\x22\x00\x0a", //   topic alias maximum 10
        b"\x19\x01", //   request response information 1
        b"\x17\x00", //   request problem information 0
        b"\x26\x00\x01k\x00\x01v", //   user property k=v
        b"\x26\x00\x01k\x00\x01w", //   user property k=w (names may repeat)
        b"\x15\x00\x05SCRAM", //   authentication method
        b"\x16\x00\x02\x01\x02", //   authentication data
        b"\x00\x03cid", // client identifier
        b"\x27",     // will property length 39
        b"\x18\x00\x00\x00\x05", //   will delay interval 5
        b"\x01\x01", //   payload format indicator: UTF-8
        b"\x02\x00\x00\x00\x3c", //   message expiry interval 60
        b"\x03\x00\x04text", //   content type
        b"\x08\x00\x05reply", //   response topic
        b"\x09\x00\x02\xab\xcd", //   correlation data
        b"\x26\x00\x01a\x00\x01b", //   user property a=b
        b"\x00\x04will", // will topic
        b"\x00\x03bye", // will payload
        b"\x00\x04user", // user name
        b"\x00\x03pwd", // password
    ]);
    let packet = Connect {
        version: V5,
        clean_start: true,
        keep_alive: 30,
        client_id: s("cid"),
        will: Some(LastWill {
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: name("will"),
            payload: bin(b"bye"),
            properties: WillProperties {
                will_delay_interval: Some(5),
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(60),
                content_type: Some(s("text")),
                response_topic: Some(name("reply")),
                correlation_data: Some(bin(b"\xab\xcd")),
                user_properties: users(&[("a", "b")]),
            },
        }),
        username: Some(s("user")),
        password: Some(bin(b"pwd")),
        properties: ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(20),
            maximum_packet_size: Some(4096),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: users(&[("k", "v"), ("k", "w")]),
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(bin(b"\x01\x02")),
        },
    };
    wire(V5, &bytes, Packet::Connect(Box::new(packet)));
}

#[test]
fn v5_connect_password_without_user_name() {
    // MQTT 5 allows a password without a user name (3.1.2.9).
    let bytes = cat(&[
        b"\x10\x10",     // CONNECT, remaining length 16
        b"\x00\x04MQTT", // protocol name
        b"\x05",         // protocol level 5
        b"\x42",         // password, clean start
        b"\x00\x00",     // keep alive disabled
        b"\x00",         // property length 0
        b"\x00\x00",     // empty client identifier
        b"\x00\x01x",    // password
    ]);
    let packet = Connect {
        password: Some(bin(b"x")),
        ..connect(V5, "")
    };
    wire(V5, &bytes, Packet::Connect(Box::new(packet)));
}

#[test]
fn v5_connack_with_every_property() {
    let bytes = cat(&[
        b"\x20\x4c",               // CONNACK, remaining length 76
        b"\x01",                   // session present
        b"\x00",                   // reason code: success
        b"\x49",                   // property length 73
        b"\x11\x00\x00\x00\x78",   //   session expiry interval 120
        b"\x21\x00\x0a",           //   receive maximum 10
        b"\x24\x01",               //   maximum QoS 1
        b"\x25\x00",               //   retain available: no
        b"\x27\x00\x01\x00\x00",   //   maximum packet size 65536
        b"\x12\x00\x04auto",       //   assigned client identifier
        b"\x22\x00\x05",           //   topic alias maximum 5
        b"\x1f\x00\x02ok",         //   reason string
        b"\x26\x00\x01x\x00\x01y", //   user property x=y
        b"\x28\x00",               //   wildcard subscription available: no
        b"\x29\x01",               //   subscription identifiers available: yes
        b"\x2a\x00",               //   shared subscription available: no
        b"\x13\x00\x3c",           //   server keep alive 60
        b"\x1a\x00\x04resp",       //   response information
        b"\x1c\x00\x03srv",        //   server reference
        b"\x15\x00\x05SCRAM",      //   authentication method
        b"\x16\x00\x01\xff",       //   authentication data
    ]);
    let packet = ConnAck {
        session_present: true,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties {
            session_expiry_interval: Some(120),
            receive_maximum: Some(10),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            maximum_packet_size: Some(65536),
            assigned_client_identifier: Some(s("auto")),
            topic_alias_maximum: Some(5),
            reason_string: Some(s("ok")),
            user_properties: users(&[("x", "y")]),
            wildcard_subscription_available: Some(false),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(false),
            server_keep_alive: Some(60),
            response_information: Some(s("resp")),
            server_reference: Some(s("srv")),
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(bin(b"\xff")),
        },
    };
    wire(V5, &bytes, Packet::ConnAck(packet));
}

#[test]
fn v5_connack_short() {
    wire(
        V5,
        b"\x20\x03\x00\x00\x00", // no session, success, property length 0
        Packet::ConnAck(connack(false, ReasonCode::Success)),
    );
    wire(
        V5,
        b"\x20\x03\x00\x87\x00", // not authorized, property length 0
        Packet::ConnAck(connack(false, ReasonCode::NotAuthorized)),
    );
    let max_qos0 = ConnAck {
        properties: ConnAckProperties {
            maximum_qos: Some(QoS::AtMostOnce),
            ..Default::default()
        },
        ..connack(false, ReasonCode::Success)
    };
    wire(
        V5,
        b"\x20\x05\x00\x00\x02\x24\x00", // property length 2: maximum QoS 0
        Packet::ConnAck(max_qos0),
    );
}

#[test]
fn v5_publish_with_every_property() {
    let bytes = cat(&[
        b"\x3b\x4d",                     // PUBLISH DUP + QoS 1 + RETAIN, remaining length 77
        b"\x00\x03a/b",                  // topic name
        b"\x00\x07",                     // packet identifier 7
        b"\x43",                         // property length 67
        b"\x01\x01",                     //   payload format indicator: UTF-8
        b"\x02\x00\x00\x01\x2c",         //   message expiry interval 300
        b"\x23\x00\x04",                 //   topic alias 4
        b"\x08\x00\x05reply",            //   response topic
        b"\x09\x00\x03\x01\x02\x03",     //   correlation data
        b"\x26\x00\x01k\x00\x01v",       //   user property k=v
        b"\x26\x00\x01l\x00\x01w",       //   user property l=w
        b"\x0b\x01",                     //   subscription identifier 1
        b"\x0b\x80\x01",                 //   subscription identifier 128 (two bytes)
        b"\x0b\xff\xff\xff\x7f",         //   subscription identifier 268435455 (four bytes)
        b"\x03\x00\x10application/json", //   content type
        b"{}",                           // payload
    ]);
    let packet = Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: name("a/b"),
        packet_id: Some(pid(7)),
        payload: bin(b"{}"),
        properties: PublishProperties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(300),
            topic_alias: Some(4),
            response_topic: Some(name("reply")),
            correlation_data: Some(bin(b"\x01\x02\x03")),
            user_properties: users(&[("k", "v"), ("l", "w")]),
            subscription_identifiers: vec![1, 128, MAX_SUBSCRIPTION_ID],
            content_type: Some(s("application/json")),
        },
    };
    wire(V5, &bytes, Packet::Publish(packet));
}

#[test]
fn v5_publish_topic_alias_only() {
    let bytes = cat(&[
        b"\x30\x07",     // PUBLISH QoS 0, remaining length 7
        b"\x00\x00",     // empty topic name: the alias names the topic
        b"\x03",         // property length 3
        b"\x23\x00\x04", //   topic alias 4
        b"x",            // payload
    ]);
    let packet = Publish {
        topic: TopicName::alias_only(),
        properties: PublishProperties {
            topic_alias: Some(4),
            ..Default::default()
        },
        ..publish(QoS::AtMostOnce, None, "t", b"x")
    };
    assert!(packet.topic.is_alias_only());
    wire(V5, &bytes, Packet::Publish(packet));
}

#[test]
fn v5_publish_qos0() {
    let bytes = cat(&[
        b"\x30\x06",  // PUBLISH QoS 0, remaining length 6
        b"\x00\x01t", // topic name
        b"\x00",      // property length 0
        b"hi",        // payload
    ]);
    wire(
        V5,
        &bytes,
        Packet::Publish(publish(QoS::AtMostOnce, None, "t", b"hi")),
    );
}

#[test]
fn v5_publish_qos2() {
    let bytes = cat(&[
        b"\x34\x06",  // PUBLISH QoS 2, remaining length 6
        b"\x00\x01t", // topic name
        b"\x00\x05",  // packet identifier 5
        b"\x00",      // property length 0
                      // empty payload
    ]);
    wire(
        V5,
        &bytes,
        Packet::Publish(publish(QoS::ExactlyOnce, Some(5), "t", b"")),
    );
}

#[test]
fn v5_puback() {
    // Remaining length 2: success, no properties.
    wire(V5, b"\x40\x02\x00\x01", Packet::PubAck(Ack::new(pid(1))));
    // Remaining length 3: a reason code, no property length.
    wire(
        V5,
        b"\x40\x03\x00\x01\x10", // no matching subscribers
        Packet::PubAck(ack(
            1,
            ReasonCode::NoMatchingSubscribers,
            Default::default(),
        )),
    );
    // Success spelled out, with and without an empty property length: decode
    // only, since the encoder writes the 2-byte form.
    decodes_to(
        V5,
        b"\x40\x03\x00\x01\x00",
        &Packet::PubAck(Ack::new(pid(1))),
    );
    decodes_to(
        V5,
        b"\x40\x04\x00\x01\x00\x00",
        &Packet::PubAck(Ack::new(pid(1))),
    );
    // Full form.
    let bytes = cat(&[
        b"\x40\x14",               // PUBACK, remaining length 20
        b"\x00\x01",               // packet identifier 1
        b"\x87",                   // not authorized
        b"\x10",                   // property length 16
        b"\x1f\x00\x06denied",     //   reason string
        b"\x26\x00\x01a\x00\x01b", //   user property a=b
    ]);
    let packet = ack(
        1,
        ReasonCode::NotAuthorized,
        ack_props(Some("denied"), &[("a", "b")]),
    );
    wire(V5, &bytes, Packet::PubAck(packet));
}

#[test]
fn v5_pubrec() {
    wire(V5, b"\x50\x02\x00\x02", Packet::PubRec(Ack::new(pid(2))));
    wire(
        V5,
        b"\x50\x03\x00\x02\x10", // no matching subscribers
        Packet::PubRec(ack(
            2,
            ReasonCode::NoMatchingSubscribers,
            Default::default(),
        )),
    );
    decodes_to(
        V5,
        b"\x50\x03\x00\x02\x00",
        &Packet::PubRec(Ack::new(pid(2))),
    );
    let bytes = cat(&[
        b"\x50\x0b",         // PUBREC, remaining length 11
        b"\x00\x02",         // packet identifier 2
        b"\x97",             // quota exceeded
        b"\x07",             // property length 7
        b"\x1f\x00\x04full", //   reason string
    ]);
    let packet = ack(2, ReasonCode::QuotaExceeded, ack_props(Some("full"), &[]));
    wire(V5, &bytes, Packet::PubRec(packet));
}

#[test]
fn v5_pubrel() {
    wire(V5, b"\x62\x02\x00\x03", Packet::PubRel(Ack::new(pid(3))));
    wire(
        V5,
        b"\x62\x03\x00\x03\x92", // packet identifier not found
        Packet::PubRel(ack(
            3,
            ReasonCode::PacketIdentifierNotFound,
            Default::default(),
        )),
    );
    // A reason code with an empty property length: decode only.
    decodes_to(
        V5,
        b"\x62\x04\x00\x03\x92\x00",
        &Packet::PubRel(ack(
            3,
            ReasonCode::PacketIdentifierNotFound,
            Default::default(),
        )),
    );
    let bytes = cat(&[
        b"\x62\x0b",               // PUBREL, remaining length 11
        b"\x00\x03",               // packet identifier 3
        b"\x00",                   // success: written because properties follow
        b"\x07",                   // property length 7
        b"\x26\x00\x01a\x00\x01b", //   user property a=b
    ]);
    let packet = ack(3, ReasonCode::Success, ack_props(None, &[("a", "b")]));
    wire(V5, &bytes, Packet::PubRel(packet));
}

#[test]
fn v5_pubcomp() {
    wire(V5, b"\x70\x02\x00\x04", Packet::PubComp(Ack::new(pid(4))));
    wire(
        V5,
        b"\x70\x03\x00\x04\x92", // packet identifier not found
        Packet::PubComp(ack(
            4,
            ReasonCode::PacketIdentifierNotFound,
            Default::default(),
        )),
    );
    let bytes = cat(&[
        b"\x70\x13",               // PUBCOMP, remaining length 19
        b"\x00\x04",               // packet identifier 4
        b"\x92",                   // packet identifier not found
        b"\x0f",                   // property length 15
        b"\x1f\x00\x05nope!",      //   reason string
        b"\x26\x00\x01a\x00\x01b", //   user property a=b
    ]);
    let packet = ack(
        4,
        ReasonCode::PacketIdentifierNotFound,
        ack_props(Some("nope!"), &[("a", "b")]),
    );
    wire(V5, &bytes, Packet::PubComp(packet));
}

#[test]
fn v5_subscribe_with_identifier_and_every_option() {
    let bytes = cat(&[
        b"\x82\x2a",               // SUBSCRIBE, remaining length 42
        b"\x00\x0a",               // packet identifier 10
        b"\x0a",                   // property length 10
        b"\x0b\xc8\x01",           //   subscription identifier 200 (two bytes)
        b"\x26\x00\x01k\x00\x01v", //   user property k=v
        b"\x00\x03a/+\x00",        // "a/+": QoS 0, retain handling 0
        b"\x00\x01b\x1d",          // "b": 0001 1101 = retain handling 1, RAP, no local, QoS 1
        b"\x00\x03c/#\x22",        // "c/#": 0010 0010 = retain handling 2, QoS 2
        b"\x00\x0a$share/g/d\x09", // shared: 0000 1001 = RAP, QoS 1
    ]);
    let packet = Subscribe {
        packet_id: pid(10),
        filters: vec![
            (filter("a/+"), qos(QoS::AtMostOnce)),
            (
                filter("b"),
                SubscriptionOptions {
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::OnNewSubscribe,
                    ..qos(QoS::AtLeastOnce)
                },
            ),
            (
                filter("c/#"),
                SubscriptionOptions {
                    retain_handling: RetainHandling::Never,
                    ..qos(QoS::ExactlyOnce)
                },
            ),
            (
                filter("$share/g/d"),
                SubscriptionOptions {
                    retain_as_published: true,
                    ..qos(QoS::AtLeastOnce)
                },
            ),
        ],
        properties: SubscribeProperties {
            subscription_identifier: Some(200),
            user_properties: users(&[("k", "v")]),
        },
    };
    wire(V5, &bytes, Packet::Subscribe(packet));
}

#[test]
fn v5_subscribe_without_properties() {
    let bytes = cat(&[
        b"\x82\x07",      // SUBSCRIBE, remaining length 7
        b"\x00\x01",      // packet identifier 1
        b"\x00",          // property length 0
        b"\x00\x01a\x00", // "a", QoS 0
    ]);
    let packet = Subscribe {
        packet_id: pid(1),
        filters: vec![(filter("a"), qos(QoS::AtMostOnce))],
        properties: Default::default(),
    };
    wire(V5, &bytes, Packet::Subscribe(packet));
}

#[test]
fn v5_suback() {
    let bytes = cat(&[
        b"\x90\x16",                             // SUBACK, remaining length 22
        b"\x00\x0a",                             // packet identifier 10
        b"\x0a",                                 // property length 10
        b"\x1f\x00\x07partial",                  //   reason string
        b"\x00\x01\x02\x80\x87\x8f\x9e\xa1\xa2", // nine reason codes
    ]);
    let packet = SubAck {
        packet_id: pid(10),
        reason_codes: vec![
            ReasonCode::GRANTED_QOS0,
            ReasonCode::GrantedQos1,
            ReasonCode::GrantedQos2,
            ReasonCode::UnspecifiedError,
            ReasonCode::NotAuthorized,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::SharedSubscriptionsNotSupported,
            ReasonCode::SubscriptionIdentifiersNotSupported,
            ReasonCode::WildcardSubscriptionsNotSupported,
        ],
        properties: ack_props(Some("partial"), &[]),
    };
    wire(V5, &bytes, Packet::SubAck(packet));
    let short = SubAck {
        packet_id: pid(10),
        reason_codes: vec![ReasonCode::GrantedQos1],
        properties: Default::default(),
    };
    wire(V5, b"\x90\x04\x00\x0a\x00\x01", Packet::SubAck(short));
}

#[test]
fn v5_unsubscribe() {
    let bytes = cat(&[
        b"\xa2\x1b",               // UNSUBSCRIBE, remaining length 27
        b"\x00\x0b",               // packet identifier 11
        b"\x07",                   // property length 7
        b"\x26\x00\x01k\x00\x01v", //   user property k=v
        b"\x00\x03a/+",            // filter
        b"\x00\x0a$share/g/d",     // shared filter, unsubscribed by its full name
    ]);
    let packet = Unsubscribe {
        packet_id: pid(11),
        filters: vec![filter("a/+"), filter("$share/g/d")],
        user_properties: users(&[("k", "v")]),
    };
    wire(V5, &bytes, Packet::Unsubscribe(packet));
}

#[test]
fn v5_unsuback() {
    let bytes = cat(&[
        b"\xb0\x0a",                     // UNSUBACK, remaining length 10
        b"\x00\x0b",                     // packet identifier 11
        b"\x00",                         // property length 0
        b"\x00\x11\x80\x83\x87\x8f\x91", // seven reason codes
    ]);
    let packet = UnsubAck {
        packet_id: pid(11),
        reason_codes: vec![
            ReasonCode::Success,
            ReasonCode::NoSubscriptionExisted,
            ReasonCode::UnspecifiedError,
            ReasonCode::ImplementationSpecificError,
            ReasonCode::NotAuthorized,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::PacketIdentifierInUse,
        ],
        properties: Default::default(),
    };
    wire(V5, &bytes, Packet::UnsubAck(packet));
    let bytes = cat(&[
        b"\xb0\x0b",         // UNSUBACK, remaining length 11
        b"\x00\x0b",         // packet identifier 11
        b"\x07",             // property length 7
        b"\x1f\x00\x04gone", //   reason string
        b"\x11",             // no subscription existed
    ]);
    let packet = UnsubAck {
        packet_id: pid(11),
        reason_codes: vec![ReasonCode::NoSubscriptionExisted],
        properties: ack_props(Some("gone"), &[]),
    };
    wire(V5, &bytes, Packet::UnsubAck(packet));
}

#[test]
fn v5_pingreq_pingresp() {
    wire(V5, b"\xc0\x00", Packet::PingReq);
    wire(V5, b"\xd0\x00", Packet::PingResp);
}

#[test]
fn v5_disconnect() {
    // Remaining length 0: normal disconnection, no properties.
    wire(V5, b"\xe0\x00", Packet::Disconnect(Disconnect::default()));
    let shutting_down = Disconnect {
        reason_code: ReasonCode::ServerShuttingDown,
        ..Default::default()
    };
    // Remaining length 1: a reason code and no property length; decode only, the
    // encoder writes the property length.
    decodes_to(
        V5,
        b"\xe0\x01\x8b",
        &Packet::Disconnect(shutting_down.clone()),
    );
    wire(V5, b"\xe0\x02\x8b\x00", Packet::Disconnect(shutting_down));
    let bytes = cat(&[
        b"\xe0\x1c",               // DISCONNECT, remaining length 28
        b"\x9c",                   // use another server
        b"\x1a",                   // property length 26
        b"\x11\x00\x00\x00\x00",   //   session expiry interval 0
        b"\x1f\x00\x03bye",        //   reason string
        b"\x26\x00\x01k\x00\x01v", //   user property k=v
        b"\x1c\x00\x05other",      //   server reference
    ]);
    let packet = Disconnect {
        reason_code: ReasonCode::UseAnotherServer,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            reason_string: Some(s("bye")),
            user_properties: users(&[("k", "v")]),
            server_reference: Some(s("other")),
        },
    };
    wire(V5, &bytes, Packet::Disconnect(packet));
    // Normal disconnection with a property: the reason code must be written.
    let bytes = cat(&[
        b"\xe0\x07",             // DISCONNECT, remaining length 7
        b"\x00",                 // normal disconnection
        b"\x05",                 // property length 5
        b"\x11\x00\x00\x00\x3c", //   session expiry interval 60
    ]);
    let packet = Disconnect {
        reason_code: ReasonCode::NORMAL_DISCONNECTION,
        properties: DisconnectProperties {
            session_expiry_interval: Some(60),
            ..Default::default()
        },
    };
    wire(V5, &bytes, Packet::Disconnect(packet));
}

#[test]
fn v5_auth() {
    // Remaining length 0: success, no properties.
    wire(V5, b"\xf0\x00", Packet::Auth(Auth::default()));
    let bytes = cat(&[
        b"\xf0\x10",          // AUTH, remaining length 16
        b"\x18",              // continue authentication
        b"\x0e",              // property length 14
        b"\x15\x00\x05SCRAM", //   authentication method
        b"\x16\x00\x03abc",   //   authentication data
    ]);
    let packet = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(bin(b"abc")),
            ..Default::default()
        },
    };
    wire(V5, &bytes, Packet::Auth(packet));
    let bytes = cat(&[
        b"\xf0\x1a",               // AUTH, remaining length 26
        b"\x19",                   // re-authenticate
        b"\x18",                   // property length 24
        b"\x15\x00\x05SCRAM",      //   authentication method
        b"\x16\x00\x01\x00",       //   authentication data
        b"\x1f\x00\x02hi",         //   reason string
        b"\x26\x00\x01a\x00\x01b", //   user property a=b
    ]);
    let packet = Auth {
        reason_code: ReasonCode::ReAuthenticate,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(bin(b"\x00")),
            reason_string: Some(s("hi")),
            user_properties: users(&[("a", "b")]),
        },
    };
    wire(V5, &bytes, Packet::Auth(packet));
}

// ---------------------------------------------------------------------------
// Down-conversion: one packet, encoded for an older peer (encode direction only)
// ---------------------------------------------------------------------------

#[test]
fn publish_properties_are_dropped_for_v3() {
    let packet = Packet::Publish(Publish {
        dup: true,
        retain: true,
        properties: PublishProperties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(300),
            topic_alias: Some(4),
            response_topic: Some(name("reply")),
            correlation_data: Some(bin(b"\x01")),
            user_properties: users(&[("k", "v")]),
            subscription_identifiers: vec![1, 2],
            content_type: Some(s("text")),
        },
        ..publish(QoS::AtLeastOnce, Some(7), "a/b", b"{}")
    });
    let v3 = cat(&[
        b"\x3b\x09",    // PUBLISH DUP + QoS 1 + RETAIN, remaining length 9
        b"\x00\x03a/b", // topic name
        b"\x00\x07",    // packet identifier 7
        b"{}",          // payload; no property length
    ]);
    encodes_to(V3_1_1, &packet, &v3);
    encodes_to(V3_1, &packet, &v3);
}

#[test]
fn suback_failure_codes_become_0x80_for_v3() {
    let packet = Packet::SubAck(SubAck {
        packet_id: pid(10),
        reason_codes: vec![
            ReasonCode::GRANTED_QOS0,
            ReasonCode::NotAuthorized,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::GrantedQos2,
            ReasonCode::QuotaExceeded,
        ],
        properties: ack_props(Some("dropped"), &[("k", "v")]),
    });
    let v3 = cat(&[
        b"\x90\x07",             // SUBACK, remaining length 7
        b"\x00\x0a",             // packet identifier 10
        b"\x00\x80\x80\x02\x80", // QoS 0, failure, failure, QoS 2, failure
    ]);
    encodes_to(V3_1_1, &packet, &v3);
}

#[test]
fn connack_reasons_become_v3_return_codes() {
    let cases = [
        (ReasonCode::Success, 0),
        (ReasonCode::UnsupportedProtocolVersion, 1),
        (ReasonCode::ClientIdentifierNotValid, 2),
        (ReasonCode::ServerUnavailable, 3),
        (ReasonCode::ServerBusy, 3),
        (ReasonCode::UnspecifiedError, 3),
        (ReasonCode::BadUserNameOrPassword, 4),
        (ReasonCode::BadAuthenticationMethod, 4),
        (ReasonCode::NotAuthorized, 5),
        (ReasonCode::Banned, 5),
    ];
    for (reason, code) in cases {
        let packet = Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: reason,
            // MQTT 5 properties are dropped.
            properties: ConnAckProperties {
                reason_string: Some(s("x")),
                ..Default::default()
            },
        });
        encodes_to(V3_1_1, &packet, &[0x20, 0x02, 0x00, code]);
    }
}

#[test]
fn ack_reason_codes_and_properties_are_dropped_for_v3() {
    let a = ack(
        1,
        ReasonCode::NotAuthorized,
        ack_props(Some("no"), &[("k", "v")]),
    );
    encodes_to(V3_1_1, &Packet::PubAck(a.clone()), b"\x40\x02\x00\x01");
    encodes_to(V3_1_1, &Packet::PubRec(a.clone()), b"\x50\x02\x00\x01");
    let b = ack(
        1,
        ReasonCode::PacketIdentifierNotFound,
        ack_props(Some("no"), &[]),
    );
    encodes_to(V3_1, &Packet::PubRel(b.clone()), b"\x62\x02\x00\x01");
    encodes_to(V3_1, &Packet::PubComp(b), b"\x70\x02\x00\x01");
    let unsuback = UnsubAck {
        packet_id: pid(11),
        reason_codes: vec![ReasonCode::NoSubscriptionExisted],
        properties: ack_props(Some("gone"), &[]),
    };
    encodes_to(V3_1_1, &Packet::UnsubAck(unsuback), b"\xb0\x02\x00\x0b");
}

#[test]
fn disconnect_reason_and_properties_are_dropped_for_v3() {
    let packet = Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::ServerShuttingDown,
        properties: DisconnectProperties {
            reason_string: Some(s("bye")),
            ..Default::default()
        },
    });
    encodes_to(V3_1_1, &packet, b"\xe0\x00");
    encodes_to(V3_1, &packet, b"\xe0\x00");
}

#[test]
fn subscribe_v5_options_and_properties_are_dropped_for_v3() {
    let packet = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: vec![(
            filter("a"),
            SubscriptionOptions {
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::Never,
                ..qos(QoS::ExactlyOnce)
            },
        )],
        properties: SubscribeProperties {
            subscription_identifier: Some(5),
            user_properties: users(&[("k", "v")]),
        },
    });
    // SUBSCRIBE, remaining length 6, packet id 1, "a", QoS 2 only.
    encodes_to(V3_1_1, &packet, b"\x82\x06\x00\x01\x00\x01a\x02");
    let unsubscribe = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(1),
        filters: vec![filter("a")],
        user_properties: users(&[("k", "v")]),
    });
    encodes_to(V3_1_1, &unsubscribe, b"\xa2\x05\x00\x01\x00\x01a");
}

#[test]
fn connect_is_encoded_in_its_own_version() {
    let packet = Packet::Connect(Box::new(connect(V5, "a")));
    // CONNECT, remaining length 14: "MQTT", level 5, clean start, keep alive 0,
    // property length 0, client id "a" -- whatever the connection's version.
    let v5 = b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x00\x00\x00\x01a";
    encodes_to(V5, &packet, v5);
    encodes_to(V3_1_1, &packet, v5);
}

#[test]
fn auth_cannot_be_encoded_for_v3() {
    let packet = Packet::Auth(Auth::default());
    for version in [V3_1, V3_1_1] {
        let mut buf = BytesMut::new();
        assert_eq!(
            encode(&packet, version, &mut buf),
            Err(EncodeError::NotInVersion {
                packet: "AUTH",
                version: version.name()
            })
        );
        assert!(buf.is_empty());
    }
}

// ---------------------------------------------------------------------------
// Regressions: codec bugs found by these fixtures, now fixed.
// ---------------------------------------------------------------------------

#[test]
fn connack_maximum_qos_2_is_sent_by_omitting_the_property() {
    let packet = Packet::ConnAck(ConnAck {
        properties: ConnAckProperties {
            maximum_qos: Some(QoS::ExactlyOnce),
            ..Default::default()
        },
        ..connack(false, ReasonCode::Success)
    });
    // CONNACK, remaining length 3: no session, success, property length 0.
    encodes_to(V5, &packet, b"\x20\x03\x00\x00\x00");
}

#[test]
fn v3_1_connack_has_no_session_present_flag() {
    let packet = Packet::ConnAck(connack(true, ReasonCode::Success));
    encodes_to(V3_1, &packet, b"\x20\x02\x00\x00");
}
