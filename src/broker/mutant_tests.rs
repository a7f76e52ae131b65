//! Broker behaviour that cargo-mutants found no unit test pinned down
//! (TESTING.md, "src/broker: left"): each test names the mutant it kills.

use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;

use super::tests::{connect, online, publish, settings, subscribe};
use super::*;
use crate::protocol::{LastWill, QoS, Version, WillProperties};
use crate::topic::TopicName;

/// `client.rs` `will_message`: the will's content type and user properties
/// go out with it (MQTT 5 3.1.3.2).
#[test]
fn a_will_keeps_its_content_type_and_user_properties() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut w = online(&mut b, 1, connect(Version::V5, "w", true));
    b.handle(&mut w, subscribe("wills/#", QoS::AtMostOnce), now)
        .unwrap();
    b.take_output(1);
    let mut c = connect(Version::V5, "c", true);
    let user = (ByteString::from("k"), ByteString::from("v"));
    c.will = Some(LastWill {
        qos: QoS::AtMostOnce,
        retain: false,
        topic: TopicName::new("wills/c".to_owned()).unwrap(),
        payload: Bytes::from_static(b"gone"),
        properties: WillProperties {
            content_type: Some(ByteString::from("text/plain")),
            user_properties: vec![user.clone()],
            ..Default::default()
        },
    });
    let client = online(&mut b, 2, c);
    b.disconnected_because(
        &client,
        client.will.clone(),
        crate::events::OfflineReason::TcpClosed,
        now,
    );
    let out = b.take_output(1).packets;
    let [Packet::Publish(p)] = &out[..] else {
        panic!("one will, got {out:?}");
    };
    assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.properties.user_properties, [user]);
}

/// `mod.rs` `Stats::count_sent`: what `/metrics` reports as sent, by QoS.
#[test]
fn sent_messages_are_counted_by_qos() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut sub = online(&mut b, 1, connect(Version::V5, "s", true));
    b.handle(&mut sub, subscribe("t", QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(1);
    let mut publ = online(&mut b, 2, connect(Version::V5, "p", true));
    b.handle(&mut publ, publish("t", QoS::AtMostOnce, 0, b"a"), now)
        .unwrap();
    b.handle(&mut publ, publish("t", QoS::AtLeastOnce, 1, b"b"), now)
        .unwrap();
    b.take_output(1);
    assert_eq!(b.stats.messages_sent, [1, 1, 0]);
}

/// `mod.rs` `assign_client_id`: assigned ids are distinct and owned by the
/// shard that assigns them.
#[test]
fn assigned_client_ids_are_distinct_and_local() {
    let mut b = Broker::new(1, 4, settings());
    let ids: Vec<ByteString> = (0..10).map(|_| b.assign_client_id()).collect();
    for (i, id) in ids.iter().enumerate() {
        assert!(!ids[..i].contains(id), "{id} assigned twice");
        assert_eq!(shards::shard_for(id.as_bytes(), 4), 1, "{id}");
    }
}

/// `mod.rs` `is_connected`: what `max-connections` asks so a client taking
/// over its own session is let in.
#[test]
fn is_connected_follows_the_connection() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    assert!(!b.is_connected("c"));
    let c = online(&mut b, 1, connect(Version::V5, "c", false));
    assert!(b.is_connected("c"));
    b.disconnected(&c, None, now);
    assert!(!b.is_connected("c"), "the session stays, offline");
    assert_eq!(
        b.session_count(),
        0,
        "clean session 0 without expiry (v5) ends"
    );
}

/// `mod.rs` CONNACK: the topic alias maximum is announced to MQTT 5 clients,
/// and not at all when it is 0.
#[test]
fn connack_announces_the_topic_alias_maximum() {
    let now = Instant::now();
    for (max, announced) in [(4, Some(4)), (0, None)] {
        let mut s = settings();
        s.topic_alias_maximum = max;
        let mut b = Broker::new(0, 1, s);
        b.connect(1, &connect(Version::V5, "c", true), now).unwrap();
        let out = b.take_output(1).packets;
        let Packet::ConnAck(ack) = &out[0] else {
            panic!("CONNACK first, got {out:?}");
        };
        assert_eq!(ack.properties.topic_alias_maximum, announced, "max {max}");
    }
}

/// `publish.rs` and `subscribe.rs`: `max-topic-levels` (8 here) refuses
/// every deeper topic and filter, not only max + 1, and accepts max.
#[test]
fn max_topic_levels_is_exact() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let deep = |n: usize| vec!["l"; n].join("/");
    let mut c = online(&mut b, 1, connect(Version::V5, "c", true));
    for (levels, granted) in [(8, true), (9, false), (10, false)] {
        b.handle(&mut c, subscribe(&deep(levels), QoS::AtMostOnce), now)
            .unwrap();
        let out = b.take_output(1).packets;
        let Packet::SubAck(ack) = &out[0] else {
            panic!("SUBACK, got {out:?}");
        };
        let code = ack.reason_codes[0];
        assert_eq!(!code.is_error(), granted, "{levels} levels: {code:?}");
    }
    let mut p = online(&mut b, 2, connect(Version::V5, "p", true));
    for (levels, refused) in [(8, false), (9, true), (10, true)] {
        let result = b.handle(
            &mut p,
            publish(&deep(levels), QoS::AtMostOnce, 0, b"x"),
            now,
        );
        assert_eq!(
            result.is_err(),
            refused,
            "PUBLISH with {levels} levels: {result:?}"
        );
    }
}

/// `publish.rs`: more unacknowledged incoming QoS 2 publishes than the
/// announced Receive Maximum (10 here) is 0x93, at the 11th and after.
#[test]
fn incoming_qos2_past_the_receive_maximum_is_refused() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut p = online(&mut b, 1, connect(Version::V5, "p", true));
    for id in 1..=10 {
        b.handle(&mut p, publish("t", QoS::ExactlyOnce, id, b"x"), now)
            .unwrap();
    }
    for id in [11, 12] {
        assert_eq!(
            b.handle(&mut p, publish("t", QoS::ExactlyOnce, id, b"x"), now),
            Err(ReasonCode::ReceiveMaximumExceeded),
            "packet {id}"
        );
    }
}
