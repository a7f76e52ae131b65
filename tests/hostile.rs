//! Hostile input on live connections: malformed packets close only the
//! connection that sent them (MQTT 5: with the DISCONNECT reason the spec asks
//! for), silent sockets are dropped after `connect-timeout`, and a thousand of
//! them do not stop anyone else.

mod common;

use std::time::{Duration, Instant};

use common::scenarios::publish_qos1;
use common::*;
use shardmq::protocol::{Packet, QoS, ReasonCode, Version};

const V3_1: Version = Version::V3_1;
const V311: Version = Version::V3_1_1;
const V5: Version = Version::V5;

use ReasonCode as R;

/// What is wrong, the connection's version, the bytes sent after a valid
/// CONNECT, and the reason an MQTT 5 client is told (`None` for 3.x, which has
/// no server DISCONNECT). Most rows are from the codec's table in
/// src/protocol/malformed.rs; the last ones decode fine but break the
/// protocol's rules for a client.
#[rustfmt::skip]
const CASES: &[(&str, Version, &[u8], Option<ReasonCode>)] = &[
    // Over max-packet-size (256 here): refused from the length prefix alone.
    ("declared size over the maximum", V5, b"\x30\xff\x01", Some(R::PacketTooLarge)),
    ("property length of five bytes", V5, b"\x30\x08\x00\x01t\xff\xff\xff\xff\x7f", Some(R::MalformedPacket)),
    ("PUBREL header flags 0000", V5, b"\x60\x02\x00\x01", Some(R::MalformedPacket)),
    ("UNSUBSCRIBE header flags 0000", V5, b"\xa0\x00", Some(R::MalformedPacket)),
    ("DISCONNECT header flags 1000", V5, b"\xe8\x00", Some(R::MalformedPacket)),
    ("property identifier cut short", V5, b"\x30\x05\x00\x01t\x01\x80", Some(R::MalformedPacket)),
    ("v5 SUBSCRIBE without property length", V5, b"\x82\x02\x00\x01", Some(R::MalformedPacket)),
    ("v5 DISCONNECT with bytes after properties", V5, b"\xe0\x04\x00\x00\xff\xff", Some(R::MalformedPacket)),
    ("user property name not UTF-8", V5, b"\x40\x0b\x00\x01\x00\x07\x26\x00\x01\xff\x00\x01v", Some(R::MalformedPacket)),
    ("'#' in topic name", V5, b"\x30\x04\x00\x01#\x00", Some(R::TopicNameInvalid)),
    ("wildcard in response topic", V5, b"\x30\x09\x00\x01t\x05\x08\x00\x02a#", Some(R::TopicNameInvalid)),
    ("empty topic without alias", V5, b"\x30\x03\x00\x00\x00", Some(R::ProtocolError)),
    ("topic alias 0", V5, b"\x30\x06\x00\x00\x03\x23\x00\x00", Some(R::TopicAliasInvalid)),
    ("payload format indicator 2", V5, b"\x30\x06\x00\x01t\x02\x01\x02", Some(R::ProtocolError)),
    ("unknown property 0x04", V5, b"\x30\x05\x00\x01t\x01\x04", Some(R::MalformedPacket)),
    ("session expiry in PUBLISH", V5, b"\x30\x09\x00\x01t\x05\x11\x00\x00\x00\x00", Some(R::MalformedPacket)),
    ("message expiry twice", V5, b"\x30\x0e\x00\x01t\x0a\x02\x00\x00\x00\x01\x02\x00\x00\x00\x02", Some(R::ProtocolError)),
    ("PUBACK reason 0x8f", V5, b"\x40\x03\x00\x01\x8f", Some(R::MalformedPacket)),
    ("empty v5 SUBSCRIBE", V5, b"\x82\x03\x00\x01\x00", Some(R::ProtocolError)),
    ("'#' inside a level", V5, b"\x82\x08\x00\x01\x00\x00\x02a#\x00", Some(R::TopicFilterInvalid)),
    ("no local on a shared subscription", V5, b"\x82\x10\x00\x01\x00\x00\x0a$share/g/a\x04", Some(R::ProtocolError)),
    ("retain handling 3", V5, b"\x82\x07\x00\x01\x00\x00\x01a\x30", Some(R::ProtocolError)),
    ("v5 options bit 6", V5, b"\x82\x07\x00\x01\x00\x00\x01a\x40", Some(R::MalformedPacket)),
    ("subscription id twice", V5, b"\x82\x0b\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00", Some(R::ProtocolError)),
    ("DISCONNECT reason 0x05", V5, b"\xe0\x01\x05", Some(R::MalformedPacket)),
    ("AUTH without method", V5, b"\xf0\x02\x18\x00", Some(R::ProtocolError)),
    ("CONNECT reserved flag", V5, b"\x10\x08\x00\x04MQTT\x05\x03", Some(R::MalformedPacket)),
    ("packet type 0", V311, b"\x00\x00", None),
    ("remaining length of five bytes", V311, b"\x30\xff\xff\xff\xff\x7f", None),
    ("AUTH in 3.1.1", V311, b"\xf0\x00", None),
    ("PINGREQ with a body", V311, b"\xc0\x01\x00", None),
    ("3.1.1 DISCONNECT with a reason code", V311, b"\xe0\x01\x00", None),
    ("QoS 1 PUBLISH without packet id", V311, b"\x32\x03\x00\x01t", None),
    ("PUBLISH topic not UTF-8", V311, b"\x30\x04\x00\x02\xc3\x28", None),
    ("NUL in topic name", V311, b"\x30\x05\x00\x03a\x00b", None),
    ("DUP on QoS 0", V311, b"\x38\x03\x00\x01t", None),
    ("PUBLISH QoS 3", V311, b"\x36\x05\x00\x01t\x00\x01", None),
    ("'+' in topic name", V311, b"\x30\x05\x00\x03a/+", None),
    ("empty topic in 3.1.1", V311, b"\x30\x02\x00\x00", None),
    ("PUBLISH packet id 0", V311, b"\x32\x05\x00\x01t\x00\x00", None),
    ("3.1.1 options bits 4-7", V311, b"\x82\x06\x00\x01\x00\x01a\xfd", None),
    ("empty UNSUBSCRIBE", V311, b"\xa2\x02\x00\x01", None),
    ("share name without filter", V311, b"\x82\x0d\x00\x01\x00\x08$share/g\x00", None),
    ("SUBSCRIBE filter with a surrogate", V311, b"\x82\x08\x00\x01\x00\x03\xed\xa0\x80\x00", None),
    ("Courier 0x0d in 3.1", V3_1, b"\x82\x06\x00\x01\x00\x01a\x0d", None),
    ("UNSUBSCRIBE header flags 1000 in 3.1", V3_1, b"\xa8\x05\x00\x01\x00\x01a", None),
    // Well-formed, but not for a client to send.
    ("a second CONNECT", V5, b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x00", Some(R::ProtocolError)),
    ("CONNACK from a client", V5, b"\x20\x03\x00\x00\x00", Some(R::ProtocolError)),
    ("SUBACK from a client", V5, b"\x90\x04\x00\x01\x00\x00", Some(R::ProtocolError)),
    // AUTH without having started extended authentication (4.12); 0x8C is
    // not a DISCONNECT reason.
    ("AUTH with a method nobody offered", V5, b"\xf0\x08\x18\x06\x15\x00\x03abc", Some(R::ProtocolError)),
    ("PINGRESP from a client", V311, b"\xd0\x00", None),
    ("a second CONNECT in 3.1.1", V311, b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02id", None),
];

#[tokio::test]
async fn each_malformed_packet_closes_only_its_connection() {
    assert!(CASES.len() >= 20);
    let b = TestBroker::with(|c| c.mqtt.max_packet_size = 256);
    let mut sub = Raw::connect(b.addr(), V5, &id_on_shard("h-sub", 1), true).await;
    sub.sub("steady/#", QoS::AtLeastOnce).await;
    let mut steady = Raw::connect(b.addr(), V311, &id_on_shard("h-pub", 0), true).await;

    for (i, (what, version, bytes, reason)) in CASES.iter().enumerate() {
        // Victims on both shards.
        let id = id_on_shard(&format!("victim-{i}"), i % 2);
        let mut victim = Raw::connect(b.addr(), *version, &id, true).await;
        victim.send_bytes(bytes).await;
        let sent = victim.expect_closed().await;
        let last = sent.last().cloned();
        match (version, reason) {
            (Version::V5, Some(r)) => assert!(
                matches!(&last, Some(Packet::Disconnect(d)) if d.reason_code == *r),
                "{what}: expected DISCONNECT {r:?}, got {sent:?}"
            ),
            _ => assert!(
                sent.is_empty(),
                "{what}: MQTT 3 gets no DISCONNECT: {sent:?}"
            ),
        }

        // Everyone else carries on.
        let payload = format!("after {what}");
        publish_qos1(&mut steady, "steady/t", (i + 1) as u16, payload.as_bytes()).await;
        let m = sub.recv_publish().await;
        assert_eq!(std::str::from_utf8(&m.payload).unwrap(), payload);
        sub.puback(m.packet_id.unwrap()).await;
    }
}

#[tokio::test]
async fn silent_and_half_connects_are_dropped_after_the_connect_timeout() {
    let timeout = Duration::from_secs(1);
    let b = TestBroker::with(|c| c.mqtt.connect_timeout = timeout);
    // Nothing at all, then the first 8 bytes of a 3.1.1 CONNECT. Each is timed
    // from just before its own connection opened: it must not close before
    // `timeout`, and must close by `timeout` + 1.5 s: generous for a busy
    // 2-core machine, and still short of a timeout applied three times over.
    for (what, bytes) in [("silent", &b""[..]), ("half", b"\x10\x0f\x00\x04MQTT")] {
        let start = Instant::now();
        let mut raw = Raw::open(b.addr(), V311).await;
        raw.send_bytes(bytes).await;
        assert!(raw.expect_closed().await.is_empty(), "{what}");
        let took = start.elapsed();
        assert!(
            took >= timeout - Duration::from_millis(100),
            "{what}: closed after {took:?}, before the connect timeout"
        );
        assert!(
            took <= timeout + Duration::from_millis(1500),
            "{what}: closed after {took:?}, long past the connect timeout of {timeout:?}"
        );
    }
    // A prompt CONNECT is not affected, and the connect timeout does not
    // apply once connected.
    let mut fine = Raw::connect(b.addr(), V311, "prompt", true).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fine.send(Packet::PingReq).await;
    assert_eq!(fine.recv().await, Packet::PingResp);
}

/// A slow-loris: a CONNECT sent a byte at a time, each byte well within
/// `connect-timeout` of the one before, is still closed once the timeout has
/// passed since the connection opened ("has not sent a complete CONNECT
/// within this time", configs/default.toml), not kept open byte after byte.
#[tokio::test]
async fn a_connect_dripped_byte_by_byte_is_dropped_at_the_connect_timeout() {
    let timeout = Duration::from_secs(1);
    let b = TestBroker::with(|c| c.mqtt.connect_timeout = timeout);
    let connect = connect_v311_bytes("drip", true, 60);
    let start = Instant::now();
    let mut raw = Raw::open(b.addr(), V311).await;
    // 17 bytes, one every 300 ms: 5 s if the broker never closes.
    for byte in &connect[..connect.len() - 1] {
        if !raw.try_send_bytes(&[*byte]).await {
            break;
        }
        match raw.recv_within(Duration::from_millis(300)).await {
            Recv::Timeout => {}
            Recv::Closed => break,
            Recv::Packet(p) => panic!("{p:?} before a whole CONNECT"),
        }
    }
    let took = start.elapsed();
    assert!(
        took <= timeout + Duration::from_millis(1500),
        "a CONNECT still incomplete after {took:?} was not closed (connect-timeout {timeout:?})"
    );
}

#[tokio::test]
async fn a_thousand_silent_sockets_do_not_stop_a_publisher() {
    let b = TestBroker::with(|c| c.mqtt.connect_timeout = Duration::from_secs(2));
    let mut sub = Raw::connect(b.addr(), V5, &id_on_shard("thou-sub", 1), true).await;
    sub.sub("busy/t", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(b.addr(), V5, &id_on_shard("thou-pub", 0), true).await;

    let mut idle = Vec::with_capacity(1000);
    for i in 0..1000u16 {
        idle.push(Raw::open(b.addr(), V311).await);
        if i % 100 == 99 {
            publish_qos1(&mut publ, "busy/t", i, format!("{i}").as_bytes()).await;
            let m = sub.recv_publish().await;
            assert_eq!(std::str::from_utf8(&m.payload).unwrap(), format!("{i}"));
            sub.puback(m.packet_id.unwrap()).await;
        }
    }
    // A new client can still connect and publish while they are all open.
    let mut late = Raw::connect(b.addr(), V311, "thou-late", true).await;
    publish_qos1(&mut late, "busy/t", 1, b"late").await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"late");

    // Then every one of them is dropped.
    for raw in &mut idle {
        assert!(raw.expect_closed().await.is_empty());
    }
    publish_qos1(&mut publ, "busy/t", 7, b"after").await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"after");
}
