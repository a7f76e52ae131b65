//! Broker behaviour that cargo-mutants found no unit test pinned down
//! (TESTING.md, "src/broker: left"): each test names the mutant it kills.

use std::time::Instant;

use bytes::Bytes;
use bytestring::ByteString;

use super::tests::{connect, deliver_forwards, online, publish, settings, subscribe};
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

/// A persistent MQTT 5 session (expiry 600 s) connected as `conn`.
fn persistent(b: &mut Broker, conn: ConnId, id: &str) -> Client {
    let mut c = connect(Version::V5, id, false);
    c.properties.session_expiry_interval = Some(600);
    online(b, conn, c)
}

/// Share-group online counts (`mod.rs` `disconnected_because`'s and
/// `connect_from`'s `count_online(.., -1)`, "delete -") and the shard-local
/// pick (`publish.rs` `Sessions::is_online -> true`): while a member is
/// online, no message waits for an offline one. Shard 0 has `c`, persistent
/// and offline, and `a`, which connects again with clean start and so leaves
/// the group; shard 1 has `b` online and `d` persistent and offline. Every
/// message goes to `b`, and nothing is queued anywhere.
#[test]
fn share_groups_count_members_that_leave_as_offline() {
    let now = Instant::now();
    let mut s = [Broker::new(0, 2, settings()), Broker::new(1, 2, settings())];
    let share = "$share/g/t";
    for (shard, conn, id) in [(0, 1, "c"), (0, 2, "a"), (1, 1, "b"), (1, 2, "d")] {
        let mut m = persistent(&mut s[shard], conn, id);
        s[shard]
            .handle(&mut m, subscribe(share, QoS::AtLeastOnce), now)
            .unwrap();
        s[shard].take_output(conn);
        if id == "c" || id == "d" {
            s[shard].disconnected(&m, None, now);
        }
    }
    online(&mut s[0], 3, connect(Version::V5, "a", true));
    deliver_forwards(&mut s, now);

    let mut publ = online(&mut s[0], 9, connect(Version::V5, "p", true));
    for id in 1..=4 {
        s[0].handle(&mut publ, publish("t", QoS::AtLeastOnce, id, b"m"), now)
            .unwrap();
    }
    deliver_forwards(&mut s, now);
    let to_b = s[1]
        .take_output(1)
        .packets
        .iter()
        .filter(|p| matches!(p, Packet::Publish(_)))
        .count();
    assert_eq!(to_b, 4, "all to the member online");
    assert_eq!(s[0].queue_depths(), (0, 0), "nothing waits for c");
    assert_eq!(s[1].queue_depths(), (0, 4), "b's in flight, nothing for d");
}

/// An ACL whose `secret/#` grant is withdrawn when `deny` is set (a reload).
struct Revocable(std::rc::Rc<std::cell::Cell<bool>>);

impl crate::acl::Authorizer for Revocable {
    fn publish(&self, _: &crate::auth::Identity, _: &TopicName) -> crate::acl::Decision {
        crate::acl::Decision {
            allow: true,
            ..Default::default()
        }
    }
    fn subscribe(
        &self,
        _: &crate::auth::Identity,
        filter: &crate::topic::TopicFilter,
    ) -> crate::acl::Decision {
        crate::acl::Decision {
            allow: !(self.0.get() && filter.as_str().starts_with("secret/")),
            ..Default::default()
        }
    }
}

/// `mod.rs` `revoke_denied -> 0` / `-> 1` and `subscriptions_revoked` `+=`
/// → `-=`: after a reload withdraws a grant, the subscription is removed,
/// counted once, and delivers nothing more; the one still allowed stays.
#[test]
fn a_withdrawn_grant_revokes_the_subscription() {
    let now = Instant::now();
    let deny = std::rc::Rc::new(std::cell::Cell::new(false));
    let mut b = Broker::new(0, 1, settings()).with_acl(Box::new(Revocable(deny.clone())));
    let mut sub = online(&mut b, 1, connect(Version::V5, "s", true));
    for f in ["secret/#", "open/#"] {
        b.handle(&mut sub, subscribe(f, QoS::AtMostOnce), now)
            .unwrap();
    }
    b.take_output(1);
    deny.set(true);
    assert_eq!(b.revoke_denied(), 1);
    assert_eq!(b.stats.subscriptions_revoked, 1);
    let mut publ = online(&mut b, 2, connect(Version::V5, "p", true));
    for t in ["secret/x", "open/x"] {
        b.handle(&mut publ, publish(t, QoS::AtMostOnce, 0, b"m"), now)
            .unwrap();
    }
    let topics: Vec<String> = b
        .take_output(1)
        .packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.topic.as_str().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(topics, ["open/x"]);
}

/// `mod.rs` `publish_sys` does nothing: `$SYS` topics reach their
/// subscribers, at QoS 0.
#[test]
fn sys_messages_reach_their_subscribers() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut sub = online(&mut b, 1, connect(Version::V5, "s", true));
    b.handle(&mut sub, subscribe("$SYS/#", QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(1);
    let topic = TopicName::new("$SYS/broker/uptime".to_owned()).unwrap();
    b.publish_sys(topic, Bytes::from_static(b"7"), now);
    let out = b.take_output(1).packets;
    let [Packet::Publish(p)] = &out[..] else {
        panic!("one $SYS message, got {out:?}");
    };
    assert_eq!(
        (p.topic.as_str(), p.qos, &p.payload[..]),
        ("$SYS/broker/uptime", QoS::AtMostOnce, &b"7"[..])
    );
}

/// `mod.rs` `is_congested`'s `e.conn == Some(conn)` → `!=`: back-pressure
/// follows the connection the client has now, not an older one of the same
/// client id.
#[test]
fn congestion_is_the_current_connections() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut c = connect(Version::V5, "s", false);
    c.properties.receive_maximum = Some(1);
    c.properties.session_expiry_interval = Some(600);
    let mut sub = online(&mut b, 1, c.clone());
    b.disconnected(&sub, None, now);
    sub = online(&mut b, 2, c);
    b.handle(&mut sub, subscribe("t", QoS::AtLeastOnce), now)
        .unwrap();
    let mut publ = online(&mut b, 9, connect(Version::V5, "p", true));
    // One in flight, five queued: half of max-online-messages (10).
    for id in 1..=6 {
        b.handle(&mut publ, publish("t", QoS::AtLeastOnce, id, b"m"), now)
            .unwrap();
    }
    b.take_output(2);
    let id = ByteString::from("s");
    assert!(b.is_congested(2, &id), "the connection now");
    assert!(!b.is_congested(1, &id), "the connection before");
}

/// Small counters and gauges: `retained_count -> 0`, `stats.connections`
/// `+=` → `*=`, `has_output -> false`, `queue_depths` `+` → `*`, and the
/// subscription count `/metrics` reports.
#[test]
fn counters_and_gauges_count() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut publ = online(&mut b, 1, connect(Version::V5, "p", true));
    assert!(!b.has_output(1));
    let mut retained = |b: &mut Broker, topic: &str, payload: &'static [u8]| {
        let Packet::Publish(mut p) = publish(topic, QoS::AtMostOnce, 0, payload) else {
            unreachable!()
        };
        p.retain = true;
        b.handle(&mut publ, Packet::Publish(p), now).unwrap();
    };
    retained(&mut b, "r/1", b"x");
    retained(&mut b, "r/2", b"y");
    assert_eq!(b.retained_count(), 2);
    retained(&mut b, "r/1", b"");
    assert_eq!(b.retained_count(), 1, "an empty payload clears");

    let mut sub = persistent(&mut b, 2, "s");
    b.handle(&mut sub, subscribe("q", QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(2);
    b.disconnected(&sub, None, now);
    let mut t = persistent(&mut b, 3, "t");
    b.handle(&mut t, subscribe("q", QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(3);
    assert_eq!(b.stats.connections, 3);
    // `router.rs` `Router::len -> 1`, `Router::is_empty -> true`.
    assert_eq!(b.subscription_count(), 2, "s's and t's");
    assert!(!b.router.is_empty());
    let mut p = online(&mut b, 4, connect(Version::V5, "p2", true));
    for id in 1..=2 {
        b.handle(&mut p, publish("q", QoS::AtLeastOnce, id, b"m"), now)
            .unwrap();
    }
    assert!(b.has_output(3), "t's PUBLISHes wait for its writer");
    assert_eq!(b.queue_depths(), (2, 2), "2 queued for s, 2 in flight to t");
}

/// `mod.rs` `connect_from`'s `if !was_online` → `if was_online`: a
/// persistent member that resumes its session counts as online again, so
/// the group's messages go to it and not into the queue of a member that
/// is away. `a` (shard 0) and `b` (shard 1) both leave; `a` comes back.
#[test]
fn a_resumed_member_counts_as_online() {
    let now = Instant::now();
    let mut s = [Broker::new(0, 2, settings()), Broker::new(1, 2, settings())];
    for (shard, id) in [(0, "a"), (1, "b")] {
        let mut m = persistent(&mut s[shard], 1, id);
        s[shard]
            .handle(&mut m, subscribe("$share/g/t", QoS::AtLeastOnce), now)
            .unwrap();
        s[shard].take_output(1);
        s[shard].disconnected(&m, None, now);
    }
    persistent(&mut s[0], 2, "a");
    deliver_forwards(&mut s, now);
    let mut publ = online(&mut s[0], 9, connect(Version::V5, "p", true));
    for id in 1..=4 {
        s[0].handle(&mut publ, publish("t", QoS::AtLeastOnce, id, b"m"), now)
            .unwrap();
    }
    deliver_forwards(&mut s, now);
    assert_eq!(s[0].queue_depths(), (0, 4), "all in flight to a");
    assert_eq!(s[1].queue_depths(), (0, 0), "nothing waits for b");
}

/// `mod.rs` `connect_from`: `on_register` carries the peer address the
/// connection came from ("delete field peer").
#[test]
fn on_register_carries_the_peer_address() {
    let now = Instant::now();
    let recorder = crate::events::Recorder::new(&[EventKind::Register]);
    let mut b = Broker::new(0, 1, settings()).with_events(Box::new(recorder.clone()));
    let peer: std::net::SocketAddr = "127.0.0.9:4321".parse().unwrap();
    b.connect_from(1, &connect(Version::V5, "c", true), Some(peer), now)
        .unwrap();
    assert_eq!(recorder.take(), ["register c from 127.0.0.9:4321"]);
}

/// `publish.rs` `alias > topic_alias_maximum` → `>=`: the maximum itself
/// is a valid alias (MQTT 5 3.3.2.3.4: 1 to Topic Alias Maximum).
#[test]
fn the_topic_alias_maximum_is_a_valid_alias() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut publ = online(&mut b, 1, connect(Version::V5, "p", true));
    let Packet::Publish(mut p) = publish("t", QoS::AtMostOnce, 0, b"m") else {
        unreachable!()
    };
    p.properties.topic_alias = Some(settings().topic_alias_maximum);
    assert_eq!(b.handle(&mut publ, Packet::Publish(p), now), Ok(None));
}

/// An ACL that allows everything under the label `l`.
struct Labelled;

impl crate::acl::Authorizer for Labelled {
    fn publish(&self, _: &crate::auth::Identity, _: &TopicName) -> crate::acl::Decision {
        crate::acl::Decision {
            allow: true,
            label: Some("l".into()),
            pattern: None,
        }
    }
    fn subscribe(
        &self,
        _: &crate::auth::Identity,
        _: &crate::topic::TopicFilter,
    ) -> crate::acl::Decision {
        self.publish(
            &crate::auth::Identity::default(),
            &TopicName::new("x").unwrap(),
        )
    }
}

/// `publish.rs` `messages_in` and `publishes_rate_limited` `+=` → `*=` /
/// `-=`: an MQTT 3.1.1 publisher over its label's 1 message/s has its second
/// publish dropped quietly and counted; both count as received.
#[test]
fn publishes_over_the_rate_are_counted_and_dropped() {
    let now = Instant::now();
    let limits = std::collections::BTreeMap::from([("l".to_owned(), 1)]);
    let mut b = Broker::new(0, 1, settings())
        .with_acl(Box::new(Labelled))
        .with_rate_limits(crate::ratelimit::RateLimits::new(&limits, now));
    let mut sub = online(&mut b, 1, connect(Version::V5, "s", true));
    b.handle(&mut sub, subscribe("t", QoS::AtMostOnce), now)
        .unwrap();
    b.take_output(1);
    let mut publ = online(&mut b, 2, connect(Version::V3_1_1, "p", true));
    for _ in 0..2 {
        b.handle(&mut publ, publish("t", QoS::AtMostOnce, 0, b"m"), now)
            .unwrap();
    }
    assert_eq!(b.stats.messages_in, [2, 0, 0]);
    assert_eq!(b.stats.publishes_rate_limited, 1);
    assert_eq!(
        b.take_output(1)
            .packets
            .iter()
            .filter(|p| matches!(p, Packet::Publish(_)))
            .count(),
        1
    );
}

/// Records the topics of `on_delivery_complete` events.
struct Completed(std::rc::Rc<std::cell::RefCell<Vec<String>>>);

impl crate::events::EventSink for Completed {
    fn wants(&self, kind: crate::events::EventKind) -> bool {
        kind == crate::events::EventKind::DeliveryComplete
    }
    fn emit(&mut self, event: crate::events::Event<'_>) {
        if let crate::events::Event::DeliveryComplete { topic, .. } = event {
            self.0.borrow_mut().push(topic.as_str().to_owned());
        }
    }
}

/// `publish.rs` `delivery_complete`'s `&&` → `||`: with two messages in
/// flight, a PUBACK for the second names the second message, not the first
/// one that is still waiting.
#[test]
fn delivery_complete_names_the_acknowledged_message() {
    let now = Instant::now();
    let done = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut b = Broker::new(0, 1, settings()).with_events(Box::new(Completed(done.clone())));
    let mut sub = online(&mut b, 1, connect(Version::V5, "s", true));
    b.handle(&mut sub, subscribe("+", QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(1);
    let mut publ = online(&mut b, 2, connect(Version::V5, "p", true));
    for (id, t) in [(1, "first"), (2, "second")] {
        b.handle(&mut publ, publish(t, QoS::AtLeastOnce, id, b"m"), now)
            .unwrap();
    }
    let ids: Vec<_> = b
        .take_output(1)
        .packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => p.packet_id,
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2);
    let ack = crate::protocol::Ack::new(ids[1]);
    b.handle(&mut sub, Packet::PubAck(ack), now).unwrap();
    assert_eq!(*done.borrow(), ["second"]);
}
