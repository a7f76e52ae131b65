//! The broker driven packet by packet, without sockets.

use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use super::*;
use crate::protocol::{
    Ack, ConnectProperties, Disconnect, LastWill, Publish, PublishProperties, QoS, Subscribe,
    SubscribeProperties, SubscriptionOptions, Unsubscribe, WillProperties,
};
use crate::session::OverflowPolicy;
use crate::topic::{TopicFilter, TopicName};

/// Small limits, so tests reach them; shared with other modules' broker tests.
pub(crate) fn settings() -> Settings {
    Settings {
        connect: ConnectPolicy {
            allowed_versions: vec![Version::V3_1, Version::V3_1_1, Version::V5],
            max_client_id_len: 64,
            max_keepalive: None,
            max_packet_size: 1 << 20,
            receive_maximum: 10,
        },
        limits: Limits {
            max_inflight: 10,
            max_online_messages: 10,
            max_offline_messages: 3,
            overflow: OverflowPolicy::DropNewest,
        },
        max_topic_levels: 8,
        topic_alias_maximum: 4,
        retry_interval: Some(Duration::from_secs(20)),
        stall: Duration::from_secs(1),
        send_timeout: Some(Duration::from_secs(3)),
    }
}

use crate::protocol::Version;

pub(super) fn connect(version: Version, id: &str, clean: bool) -> Connect {
    Connect {
        version,
        clean_start: clean,
        keep_alive: 30,
        client_id: ByteString::from(id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

pub(super) fn publish(topic: &str, qos: QoS, id: u16, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: TopicName::new(topic.to_owned()).unwrap(),
        packet_id: crate::protocol::PacketId::new(id),
        payload: Bytes::from_static(payload),
        properties: PublishProperties::default(),
    })
}

pub(super) fn subscribe(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: vec![(
            TopicFilter::new(filter.to_owned()).unwrap(),
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
        properties: SubscribeProperties::default(),
    })
}

pub(super) fn pid(n: u16) -> crate::protocol::PacketId {
    crate::protocol::PacketId::new(n).unwrap()
}

/// Connects and drops the CONNACK output.
pub(super) fn online(b: &mut Broker, conn: ConnId, c: Connect) -> Client {
    let client = b.connect(conn, &c, Instant::now()).expect("accepted");
    let out = b.take_output(conn);
    assert!(matches!(out.packets[0], Packet::ConnAck(_)));
    client
}

/// Payloads of the PUBLISHes queued for `conn`.
pub(super) fn received(b: &mut Broker, conn: ConnId) -> Vec<(Bytes, QoS, bool)> {
    b.take_output(conn)
        .packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.payload, p.qos, p.retain)),
            _ => None,
        })
        .collect()
}

#[test]
fn qos1_publish_reaches_a_subscriber_and_is_acked() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut sub = online(&mut b, 1, connect(Version::V3_1_1, "sub", true));
    let mut publ = online(&mut b, 2, connect(Version::V5, "pub", true));
    b.handle(&mut sub, subscribe("a/+", QoS::AtLeastOnce), now)
        .unwrap();
    assert!(
        matches!(&b.take_output(1).packets[..], [Packet::SubAck(s)] if s.reason_codes == [ReasonCode::GrantedQos1])
    );
    b.handle(&mut publ, publish("a/b", QoS::AtLeastOnce, 7, b"hi"), now)
        .unwrap();
    assert_eq!(b.take_output(2).packets, [Packet::PubAck(Ack::new(pid(7)))]);
    assert_eq!(
        received(&mut b, 1),
        [(Bytes::from_static(b"hi"), QoS::AtLeastOnce, false)]
    );
}

#[test]
fn qos2_resend_is_routed_once_and_pubrel_completes() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut sub = online(&mut b, 1, connect(Version::V5, "sub", true));
    let mut publ = online(&mut b, 2, connect(Version::V5, "pub", true));
    b.handle(&mut sub, subscribe("t", QoS::AtMostOnce), now)
        .unwrap();
    b.take_output(1);
    for _ in 0..2 {
        b.handle(&mut publ, publish("t", QoS::ExactlyOnce, 5, b"x"), now)
            .unwrap();
        assert_eq!(b.take_output(2).packets, [Packet::PubRec(Ack::new(pid(5)))]);
    }
    assert_eq!(received(&mut b, 1).len(), 1);
    b.handle(&mut publ, Packet::PubRel(Ack::new(pid(5))), now)
        .unwrap();
    assert_eq!(
        b.take_output(2).packets,
        [Packet::PubComp(Ack::new(pid(5)))]
    );
    b.handle(&mut publ, Packet::PubRel(Ack::new(pid(5))), now)
        .unwrap();
    let Packet::PubComp(c) = &b.take_output(2).packets[0] else {
        panic!()
    };
    assert_eq!(c.reason_code, ReasonCode::PacketIdentifierNotFound);
}

#[test]
fn takeover_closes_the_old_connection_and_keeps_the_session() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut c = connect(Version::V5, "c", false);
    c.properties.session_expiry_interval = Some(60);
    let mut first = online(&mut b, 1, c.clone());
    b.handle(&mut first, subscribe("t", QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(1);
    let second = b.connect(2, &c, now).unwrap();
    assert_eq!(b.take_output(1).close, Some(ReasonCode::SessionTakenOver));
    let Packet::ConnAck(ack) = &b.take_output(2).packets[0] else {
        panic!()
    };
    assert!(ack.session_present);
    // The old connection ends after the takeover; the session stays with the new.
    b.disconnected(&first, first.will.clone(), now);
    let mut publ = online(&mut b, 3, connect(Version::V5, "p", true));
    b.handle(&mut publ, publish("t", QoS::AtLeastOnce, 1, b"m"), now)
        .unwrap();
    assert_eq!(received(&mut b, second.conn).len(), 1);
}

#[test]
fn persistent_session_queues_while_offline_within_the_limit() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut sub = online(&mut b, 1, connect(Version::V3_1_1, "s", false));
    b.handle(&mut sub, subscribe("t", QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(1);
    b.disconnected(&sub, None, now);
    let mut publ = online(&mut b, 2, connect(Version::V3_1_1, "p", true));
    for n in 0..5 {
        b.handle(&mut publ, publish("t", QoS::AtLeastOnce, n + 1, b"q"), now)
            .unwrap();
    }
    assert_eq!(b.stats.dropped_queue_full, 2, "max-offline-messages is 3");
    let _sub = b
        .connect(3, &connect(Version::V3_1_1, "s", false), now)
        .unwrap();
    let out = b.take_output(3).packets;
    let Packet::ConnAck(ack) = &out[0] else {
        panic!()
    };
    assert!(ack.session_present);
    assert_eq!(out.len(), 4, "CONNACK and the three queued messages");
}

#[test]
fn clean_session_ends_on_disconnect() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut sub = online(&mut b, 1, connect(Version::V3_1_1, "s", true));
    b.handle(&mut sub, subscribe("t", QoS::AtLeastOnce), now)
        .unwrap();
    b.disconnected(&sub, None, now);
    assert_eq!(b.session_count(), 0);
    assert!(b.router.is_empty());
    assert!(b.index.is_empty());
}

fn will(topic: &str, delay: Option<u32>) -> LastWill {
    LastWill {
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new(topic.to_owned()).unwrap(),
        payload: Bytes::from_static(b"gone"),
        properties: WillProperties {
            will_delay_interval: delay,
            ..Default::default()
        },
    }
}

/// A broker with a QoS 1 subscriber to `wills/#` on connection 1.
fn watched() -> Broker {
    let mut b = Broker::new(0, 1, settings());
    let mut watcher = online(&mut b, 1, connect(Version::V5, "w", true));
    b.handle(
        &mut watcher,
        subscribe("wills/#", QoS::AtLeastOnce),
        Instant::now(),
    )
    .unwrap();
    b.take_output(1);
    b
}

/// Ends `client`'s connection the way the connection layer does: always
/// with the client's will, and the reason the connection ended.
fn ends(b: &mut Broker, client: &Client, code: Option<ReasonCode>, now: Instant) {
    let reason = OfflineReason::from_reason_code(code);
    b.disconnected_because(client, client.will.clone(), reason, now);
}

/// The broker, not its caller, decides: only a normal DISCONNECT (0x00)
/// deletes the will [MQTT-3.1.2-10] [MQTT-3.14.4-3]. MQTT 3.1.1
/// [MQTT-3.1.2-8] publishes it on any other close, "the Server closes the
/// Network Connection because of a protocol error" among them (3.1.2.5), and
/// MQTT 5 on any close but DISCONNECT 0x00 (3.1.2.5): DISCONNECT 0x04, a
/// protocol error, a keepalive timeout, a close by the broker (0x97 for a
/// client that reads nothing, shutdown).
#[test]
fn only_a_normal_disconnect_discards_the_will() {
    let now = Instant::now();
    let mut b = watched();
    let mut conn = 2;
    let mut c = connect(Version::V5, "dies", true);
    c.will = Some(will("wills/dies", None));
    let mut wills_after = |b: &mut Broker, code: Option<ReasonCode>| {
        conn += 1;
        let client = online(b, conn, c.clone());
        ends(b, &client, code, now);
        received(b, 1).len()
    };
    assert_eq!(wills_after(&mut b, Some(ReasonCode::Success)), 0, "0x00");
    for code in [
        None,
        Some(ReasonCode::DisconnectWithWillMessage),
        Some(ReasonCode::ProtocolError),
        Some(ReasonCode::MalformedPacket),
        Some(ReasonCode::KeepAliveTimeout),
        Some(ReasonCode::QuotaExceeded),
        Some(ReasonCode::ServerShuttingDown),
        Some(ReasonCode::UnspecifiedError),
    ] {
        assert_eq!(wills_after(&mut b, code), 1, "{code:?}");
    }

    // The codes as the broker hands them out: DISCONNECT 0x00 from the
    // client, and a protocol error it detects.
    let mut polite = online(&mut b, 20, c.clone());
    let closed = b.handle(&mut polite, Packet::Disconnect(Disconnect::default()), now);
    assert_eq!(closed, Ok(Some(publish::Closed::Normal)));
    let mut unhappy = online(&mut b, 22, c.clone());
    let d = Disconnect {
        reason_code: ReasonCode::UnspecifiedError,
        ..Default::default()
    };
    let closed = b.handle(&mut unhappy, Packet::Disconnect(d), now);
    let code = ReasonCode::UnspecifiedError;
    assert_eq!(closed, Ok(Some(publish::Closed::WithWill(code))));
    ends(&mut b, &polite, Some(ReasonCode::Success), now);
    assert!(received(&mut b, 1).is_empty(), "normal DISCONNECT");
    let mut rude = online(&mut b, 21, c);
    let error = b.handle(&mut rude, Packet::PingResp, now).unwrap_err();
    ends(&mut b, &rude, Some(error), now);
    assert_eq!(received(&mut b, 1).len(), 1, "protocol error");
}

/// The broker's own close of a client, here with 0x97 as for a client
/// that reads nothing for `send-timeout`, publishes its will (MQTT 5 3.1.2.5:
/// "The Server closes the Network Connection without first receiving a
/// DISCONNECT packet with a Reason Code 0x00").
#[test]
fn a_close_by_the_broker_publishes_the_will() {
    let now = Instant::now();
    let mut b = watched();
    let mut c = connect(Version::V5, "stuck", true);
    c.will = Some(will("wills/stuck", None));
    let stuck = online(&mut b, 2, c);
    b.outputs.close(2, ReasonCode::QuotaExceeded);
    let reason = b.closing_reason(2);
    assert_eq!(reason, Some(ReasonCode::QuotaExceeded));
    ends(&mut b, &stuck, reason, now);
    assert_eq!(received(&mut b, 1).len(), 1);
}

/// A takeover closes the old connection; its will is then "published as
/// described in section 3.1.2.5" (MQTT 5 3.1.4 step 1, [MQTT-3.1.4-3]): at
/// once with no will delay, and in MQTT 3.1.1, which has none
/// [MQTT-3.1.2-8]. A will delay is cancelled by the new connection when the
/// session lives on [MQTT-3.1.3-9], and the will goes out at once when the
/// takeover ends the session (the new CONNECT starts clean, or the old
/// session expiry is 0): the non-normative comment under 3.1.4 step 1.
#[test]
fn a_takeover_publishes_the_old_connections_will_unless_its_delay_is_cancelled() {
    let now = Instant::now();
    // (old version, old will delay, old session expiry, new clean start) and
    // whether the will goes out.
    let cases = [
        (Version::V3_1_1, None, None, false, true),
        (Version::V3_1_1, None, None, true, true),
        (Version::V5, None, Some(60), false, true),
        (Version::V5, Some(0), Some(60), false, true),
        (Version::V5, Some(10), Some(60), false, false),
        (Version::V5, Some(10), Some(60), true, true),
        (Version::V5, Some(10), None, false, true),
    ];
    for (i, (version, delay, expiry, clean, published)) in cases.into_iter().enumerate() {
        let mut b = watched();
        let mut c = connect(version, "twin", false);
        c.properties.session_expiry_interval = expiry;
        c.will = Some(will("wills/twin", delay));
        let old = online(&mut b, 2, c.clone());
        let mut again = c.clone();
        again.clean_start = clean;
        again.will = None;
        let new = b.connect(3, &again, now).unwrap();
        let Packet::ConnAck(ack) = &b.take_output(3).packets[0] else {
            panic!()
        };
        let kept = !clean && (version == Version::V3_1_1 || expiry.is_some());
        assert_eq!(ack.session_present, kept, "case {i}: session present");
        assert_eq!(b.take_output(2).close, Some(ReasonCode::SessionTakenOver));
        assert!(
            received(&mut b, 1).is_empty(),
            "case {i}: not before the close"
        );
        // The old connection's reader sees the broker's close.
        ends(&mut b, &old, Some(ReasonCode::SessionTakenOver), now);
        b.tick(now + Duration::from_secs(30));
        let wills = received(&mut b, 1).len();
        assert_eq!(wills, usize::from(published), "case {i}: will published");
        // The new connection owns the session: it ends normally, no will.
        ends(&mut b, &new, Some(ReasonCode::Success), now);
        b.tick(now + Duration::from_secs(60));
        assert!(received(&mut b, 1).is_empty(), "case {i}: one will at most");
        assert!(b.ended_by_takeover.is_empty(), "case {i}");
    }
}

/// A client back before its will delay ran out cancels the will when it
/// resumes the session [MQTT-3.1.3-9]; starting clean ends the session, which
/// publishes the will at once [MQTT-3.1.2-8] ("either the Will Delay
/// Interval has elapsed or the Session ends").
#[test]
fn a_clean_start_within_the_will_delay_publishes_the_will() {
    let now = Instant::now();
    for (clean, published) in [(false, 0), (true, 1)] {
        let mut b = watched();
        let mut c = connect(Version::V5, "d", false);
        c.properties.session_expiry_interval = Some(100);
        c.will = Some(will("wills/d", Some(10)));
        let dying = online(&mut b, 2, c.clone());
        ends(&mut b, &dying, None, now);
        assert!(received(&mut b, 1).is_empty());
        c.clean_start = clean;
        c.will = None;
        online(&mut b, 3, c);
        b.tick(now + Duration::from_secs(20));
        assert_eq!(received(&mut b, 1).len(), published, "clean start {clean}");
    }
}

#[test]
fn delayed_will_is_cancelled_by_reconnect_or_sent_later() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut watcher = online(&mut b, 1, connect(Version::V5, "w", true));
    b.handle(&mut watcher, subscribe("wills/#", QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(1);
    let mut c = connect(Version::V5, "d", false);
    c.properties.session_expiry_interval = Some(100);
    c.will = Some(will("wills/d", Some(10)));
    let dying = online(&mut b, 2, c.clone());
    b.disconnected(&dying, dying.will.clone(), now);
    b.tick(now + Duration::from_secs(5));
    assert!(received(&mut b, 1).is_empty());
    // Back within the delay: no will.
    let back = online(&mut b, 3, c.clone());
    b.tick(now + Duration::from_secs(20));
    assert!(received(&mut b, 1).is_empty());
    // Gone again: the will goes out after the delay.
    b.disconnected(&back, back.will.clone(), now);
    b.tick(now + Duration::from_secs(11));
    assert_eq!(received(&mut b, 1).len(), 1);
    // And the session expires after its interval.
    assert_eq!(b.session_count(), 2);
    b.tick(now + Duration::from_secs(101));
    assert_eq!(b.session_count(), 1);
}

#[test]
fn retained_messages_follow_retain_handling() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut publ = online(&mut b, 1, connect(Version::V5, "p", true));
    let Packet::Publish(mut p) = publish("r/1", QoS::AtLeastOnce, 1, b"kept") else {
        unreachable!()
    };
    p.retain = true;
    b.handle(&mut publ, Packet::Publish(p.clone()), now)
        .unwrap();
    let mut sub = online(&mut b, 2, connect(Version::V5, "s", true));
    let mut options = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        ..Default::default()
    };
    let sub_packet = |options| {
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![(TopicFilter::new("r/+").unwrap(), options)],
            properties: SubscribeProperties::default(),
        })
    };
    b.handle(&mut sub, sub_packet(options), now).unwrap();
    assert_eq!(
        received(&mut b, 2),
        [(Bytes::from_static(b"kept"), QoS::AtMostOnce, true)]
    );
    options.retain_handling = crate::protocol::RetainHandling::OnNewSubscribe;
    b.handle(&mut sub, sub_packet(options), now).unwrap();
    assert!(
        received(&mut b, 2).is_empty(),
        "not new: nothing retained sent"
    );
    options.retain_handling = crate::protocol::RetainHandling::OnSubscribe;
    b.handle(&mut sub, sub_packet(options), now).unwrap();
    assert_eq!(received(&mut b, 2).len(), 1);
    // An empty retained payload clears it.
    p.payload = Bytes::new();
    b.handle(&mut publ, Packet::Publish(p), now).unwrap();
    assert_eq!(b.retained_count(), 0);
}

#[test]
fn topic_alias_sets_then_resolves() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut sub = online(&mut b, 1, connect(Version::V5, "s", true));
    b.handle(&mut sub, subscribe("long/topic", QoS::AtMostOnce), now)
        .unwrap();
    b.take_output(1);
    let mut publ = online(&mut b, 2, connect(Version::V5, "p", true));
    let Packet::Publish(mut p) = publish("long/topic", QoS::AtMostOnce, 0, b"1") else {
        unreachable!()
    };
    p.properties.topic_alias = Some(2);
    b.handle(&mut publ, Packet::Publish(p.clone()), now)
        .unwrap();
    let mut by_alias = p.clone();
    by_alias.topic = TopicName::alias_only();
    b.handle(&mut publ, Packet::Publish(by_alias.clone()), now)
        .unwrap();
    assert_eq!(received(&mut b, 1).len(), 2);
    by_alias.properties.topic_alias = Some(3);
    assert_eq!(
        b.handle(&mut publ, Packet::Publish(by_alias.clone()), now),
        Err(ReasonCode::ProtocolError)
    );
    by_alias.properties.topic_alias = Some(5);
    assert_eq!(
        b.handle(&mut publ, Packet::Publish(by_alias), now),
        Err(ReasonCode::TopicAliasInvalid)
    );
}

#[test]
fn publishes_cross_shards_through_the_index() {
    let now = Instant::now();
    let mut shards = [Broker::new(0, 2, settings()), Broker::new(1, 2, settings())];
    let mut sub = online(&mut shards[1], 1, connect(Version::V3_1_1, "s", true));
    shards[1]
        .handle(&mut sub, subscribe("x/#", QoS::AtMostOnce), now)
        .unwrap();
    shards[1].take_output(1);
    deliver_forwards(&mut shards, now);
    let mut publ = online(&mut shards[0], 1, connect(Version::V3_1_1, "p", true));
    shards[0]
        .handle(&mut publ, publish("x/y", QoS::AtMostOnce, 0, b"far"), now)
        .unwrap();
    shards[0]
        .handle(&mut publ, publish("z", QoS::AtMostOnce, 0, b"nobody"), now)
        .unwrap();
    assert_eq!(shards[0].forwards.len(), 1, "only x/y is forwarded");
    deliver_forwards(&mut shards, now);
    assert_eq!(
        received(&mut shards[1], 1),
        [(Bytes::from_static(b"far"), QoS::AtMostOnce, false)]
    );
    // Unsubscribing tells the other shard to stop forwarding.
    shards[1]
        .handle(
            &mut sub,
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(2),
                filters: vec![TopicFilter::new("x/#").unwrap()],
                user_properties: Vec::new(),
            }),
            now,
        )
        .unwrap();
    deliver_forwards(&mut shards, now);
    shards[0]
        .handle(&mut publ, publish("x/y", QoS::AtMostOnce, 0, b"far"), now)
        .unwrap();
    assert!(shards[0].forwards.is_empty());
}

/// A SUBACK goes out only once the other shard has the new filter: a
/// publish there after the SUBACK must find it. A reply behind a held one
/// waits too, so the client's acknowledgements keep its order.
#[test]
fn a_suback_waits_until_every_other_shard_has_the_filter() {
    let now = Instant::now();
    let kinds = |b: &mut Broker, conn| -> Vec<&'static str> {
        b.take_output(conn)
            .packets
            .iter()
            .map(|p| match p {
                Packet::SubAck(_) => "suback",
                Packet::UnsubAck(_) => "unsuback",
                Packet::Publish(_) => "publish",
                _ => "other",
            })
            .collect()
    };
    let mut shards = [Broker::new(0, 2, settings()), Broker::new(1, 2, settings())];
    let mut sub = online(&mut shards[1], 1, connect(Version::V5, "s", true));
    shards[1]
        .handle(&mut sub, subscribe("x/#", QoS::AtMostOnce), now)
        .unwrap();
    // Again (its options replaced, nothing new to tell), then gone.
    shards[1]
        .handle(&mut sub, subscribe("x/#", QoS::AtLeastOnce), now)
        .unwrap();
    shards[1]
        .handle(
            &mut sub,
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(2),
                filters: vec![TopicFilter::new("x/#").unwrap()],
                user_properties: Vec::new(),
            }),
            now,
        )
        .unwrap();
    assert_eq!(kinds(&mut shards[1], 1), Vec::<&str>::new());
    // Shard 0 applies the filter and answers; the replies go, in order.
    let told = std::mem::take(&mut shards[1].forwards);
    for (to, f) in told {
        shards[to].on_forward(1, f, now);
    }
    assert_eq!(kinds(&mut shards[1], 1), Vec::<&str>::new());
    let answers = std::mem::take(&mut shards[0].forwards);
    assert!(
        matches!(answers[..], [(1, Forward::Synced(_))]),
        "{answers:?}"
    );
    for (to, f) in answers {
        shards[to].on_forward(0, f, now);
    }
    assert_eq!(kinds(&mut shards[1], 1), ["suback", "suback", "unsuback"]);
    // Shard 0's first subscriber to x/# waits for shard 1 in turn; a
    // SUBSCRIBE with nothing new to tell and nothing held goes at once.
    let mut other = online(&mut shards[0], 2, connect(Version::V5, "o", true));
    shards[0]
        .handle(&mut other, subscribe("x/#", QoS::AtMostOnce), now)
        .unwrap();
    assert_eq!(kinds(&mut shards[0], 2), Vec::<&str>::new());
    deliver_forwards(&mut shards, now);
    assert_eq!(kinds(&mut shards[0], 2), ["suback"]);
    shards[0]
        .handle(&mut other, subscribe("x/#", QoS::AtMostOnce), now)
        .unwrap();
    assert!(shards[0].forwards.is_empty());
    assert_eq!(kinds(&mut shards[0], 2), ["suback"]);
    // One shard has no one to wait for.
    let mut alone = Broker::new(0, 1, settings());
    let mut c = online(&mut alone, 1, connect(Version::V5, "a", true));
    alone
        .handle(&mut c, subscribe("y", QoS::AtMostOnce), now)
        .unwrap();
    assert_eq!(kinds(&mut alone, 1), ["suback"]);
}

/// Delivers what each shard queued for the other, answers included, until
/// nothing is left.
pub(super) fn deliver_forwards(shards: &mut [Broker; 2], now: Instant) {
    for _ in 0..8 {
        for from in 0..2 {
            let forwards = std::mem::take(&mut shards[from].forwards);
            for (to, f) in forwards {
                shards[to].on_forward(from, f, now);
            }
        }
    }
    assert!(
        shards.iter().all(|s| s.forwards.is_empty()),
        "still talking"
    );
}

#[test]
fn slow_reader_output_is_bounded_for_qos0() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut sub = online(&mut b, 1, connect(Version::V3_1_1, "slow", true));
    b.handle(&mut sub, subscribe("t", QoS::AtMostOnce), now)
        .unwrap();
    b.take_output(1);
    let mut publ = online(&mut b, 2, connect(Version::V3_1_1, "p", true));
    // While it reads, its publishers wait for it (flow control): nothing dropped.
    for _ in 0..25 {
        b.handle(&mut publ, publish("t", QoS::AtMostOnce, 0, b"x"), now)
            .unwrap();
    }
    assert_eq!(b.stats.dropped_queue_full, 0);
    // Each time an output goes from empty to non-empty, its writer is woken.
    assert_eq!(b.drain_dirty().collect::<Vec<_>>(), [1, 1, 2, 1]);
    assert_eq!(received(&mut b, 1).len(), 25);
    // Nothing written for stall-timeout: stalled, held to max-online-messages.
    let later = now + settings().stall;
    for _ in 0..25 {
        b.handle(&mut publ, publish("t", QoS::AtMostOnce, 0, b"x"), later)
            .unwrap();
    }
    assert_eq!(received(&mut b, 1).len(), 10, "max-online-messages is 10");
    assert_eq!(b.stats.dropped_queue_full, 15);
}

/// Regression: AUTH from a client closed the connection with DISCONNECT 0x8C,
/// which is a CONNACK reason and not valid in DISCONNECT (MQTT 5 3.14.2.1).
#[test]
fn unexpected_auth_is_a_protocol_error() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut c = online(&mut b, 1, connect(Version::V5, "c", true));
    let auth = Packet::Auth(crate::protocol::Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: crate::protocol::AuthProperties {
            authentication_method: Some(ByteString::from("x")),
            ..Default::default()
        },
    });
    let reason = b.handle(&mut c, auth, now).unwrap_err();
    assert_eq!(reason, ReasonCode::ProtocolError);
    assert!(reason.allowed_in(crate::protocol::ReasonPacket::Disconnect));
}

/// Regression: a share group with members on two shards got every message
/// twice, once from each shard's own round-robin.
#[test]
fn a_share_group_across_shards_gets_each_message_once() {
    let now = Instant::now();
    let mut shards = [Broker::new(0, 2, settings()), Broker::new(1, 2, settings())];
    let mut members = Vec::new();
    for (shard, conn) in [(0, 1), (1, 1), (1, 2)] {
        let id = format!("m{shard}{conn}");
        let mut c = online(&mut shards[shard], conn, connect(Version::V5, &id, true));
        shards[shard]
            .handle(&mut c, subscribe("$share/g/t", QoS::AtMostOnce), now)
            .unwrap();
        shards[shard].take_output(conn);
        members.push((shard, conn, c));
    }
    deliver_forwards(&mut shards, now);
    let mut publ = online(&mut shards[0], 9, connect(Version::V5, "p", true));
    for _ in 0..30 {
        shards[0]
            .handle(&mut publ, publish("t", QoS::AtMostOnce, 0, b"x"), now)
            .unwrap();
        deliver_forwards(&mut shards, now);
    }
    let counts: Vec<usize> = members
        .iter()
        .map(|(shard, conn, _)| received(&mut shards[*shard], *conn).len())
        .collect();
    assert_eq!(counts, [10, 10, 10]);

    // Both members on shard 1 go offline: shard 0's member gets everything.
    for (shard, _, c) in members.drain(1..) {
        shards[shard].disconnected(&c, None, now);
    }
    deliver_forwards(&mut shards, now);
    for _ in 0..5 {
        shards[0]
            .handle(&mut publ, publish("t", QoS::AtMostOnce, 0, b"x"), now)
            .unwrap();
        deliver_forwards(&mut shards, now);
    }
    assert_eq!(received(&mut shards[0], 1).len(), 5);
}

/// A connected client is never closed for its queue (issue 12 replaced the
/// 0x97 close): while it reads, QoS 1 messages past `max-online-messages`
/// are queued, not dropped (its publishers are slowed instead); once it has
/// stalled they overflow by `queue-overflow`, counted, and it stays connected.
#[test]
fn qos1_overflow_of_a_connected_client_queues_then_drops_when_stalled() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut sub = online(&mut b, 1, connect(Version::V5, "slow", true));
    b.handle(&mut sub, subscribe("t", QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(1);
    let mut publ = online(&mut b, 2, connect(Version::V5, "p", true));
    // Window 10 + online queue 10, and one more: still reading, so queued.
    for i in 0..21 {
        b.handle(&mut publ, publish("t", QoS::AtLeastOnce, i + 1, b"x"), now)
            .unwrap();
    }
    assert_eq!(b.queue_depths(), (11, 10));
    assert_eq!(b.stats.dropped_queue_full, 0);
    assert!(b.take_closing().is_empty(), "not closed");

    // Neither written nor acknowledged for stall-timeout: stalled.
    let later = now + settings().stall;
    b.handle(&mut publ, publish("t", QoS::AtLeastOnce, 22, b"x"), later)
        .unwrap();
    assert_eq!(b.queue_depths(), (11, 10), "held to the bound");
    assert_eq!(b.stats.dropped_queue_full, 1);
    assert!(b.take_closing().is_empty(), "still not closed");
    // QoS 0 to the stalled client's full output (10 unwritten packets) is
    // dropped and counted, and does not close it either.
    b.handle(&mut publ, publish("t", QoS::AtMostOnce, 0, b"x"), later)
        .unwrap();
    assert_eq!(b.stats.dropped_queue_full, 2);
    assert!(b.take_closing().is_empty(), "not closed for QoS 0");
    assert_eq!(b.closing_reason(1), None);
}

#[test]
fn retry_interval_resends_to_connected_mqtt3_clients_only() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings());
    let mut v3 = online(&mut b, 1, connect(Version::V3_1_1, "v3", true));
    let mut v5 = online(&mut b, 2, connect(Version::V5, "v5", true));
    for c in [&mut v3, &mut v5] {
        b.handle(c, subscribe("t", QoS::AtLeastOnce), now).unwrap();
        b.take_output(c.conn);
    }
    let mut publ = online(&mut b, 3, connect(Version::V3_1_1, "p", true));
    b.handle(&mut publ, publish("t", QoS::AtLeastOnce, 1, b"m"), now)
        .unwrap();
    assert_eq!(received(&mut b, 1).len(), 1);
    assert_eq!(received(&mut b, 2).len(), 1);
    b.tick(now + Duration::from_secs(10));
    assert!(received(&mut b, 1).is_empty(), "not due yet");
    b.tick(now + Duration::from_secs(21));
    let again = b.take_output(1).packets;
    assert!(matches!(&again[..], [Packet::Publish(p)] if p.dup && p.packet_id == Some(pid(1))));
    assert!(
        received(&mut b, 2).is_empty(),
        "MQTT 5 is never resent on a live connection"
    );
}

#[test]
fn a_recipient_past_half_its_bound_is_reported_congested_until_taken() {
    // (max_online_messages 10: half is 5, under the pinning backlog.)
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings()); // max_online_messages: 10
    let mut sub = online(&mut b, 1, connect(Version::V5, "sub", true));
    b.handle(&mut sub, subscribe("t", QoS::AtMostOnce), now)
        .unwrap();
    b.take_output(1);
    let mut publisher = online(&mut b, 2, connect(Version::V5, "pub", true));
    for _ in 0..4 {
        b.handle(&mut publisher, publish("t", QoS::AtMostOnce, 0, b"x"), now)
            .unwrap();
        assert_eq!(b.take_congested(), None, "4 of 10 is not congested");
    }
    b.handle(&mut publisher, publish("t", QoS::AtMostOnce, 0, b"x"), now)
        .unwrap();
    assert_eq!(b.take_congested(), Some((1, ByteString::from("sub"))));
    assert_eq!(b.take_congested(), None, "reported once");
    assert!(b.is_congested(1, &ByteString::from("sub")));
    assert_eq!(b.take_output(1).packets.len(), 5);
    assert!(!b.is_congested(1, &ByteString::from("sub")));
}

#[test]
fn a_backed_up_output_holds_copies_not_read_buffer_views() {
    let now = Instant::now();
    let mut s = settings();
    s.limits.max_online_messages = 1000;
    let mut b = Broker::new(0, 1, s);
    let mut sub = online(&mut b, 1, connect(Version::V5, "sub", true));
    b.handle(&mut sub, subscribe("t", QoS::AtMostOnce), now)
        .unwrap();
    b.take_output(1);
    let mut publisher = online(&mut b, 2, connect(Version::V5, "pub", true));
    let buffer = Bytes::from(vec![1u8; 16]);
    for _ in 0..publish::PINNING_BACKLOG + 2 {
        let Packet::Publish(mut p) = publish("t", QoS::AtMostOnce, 0, b"") else {
            unreachable!()
        };
        p.payload = buffer.slice(0..8);
        b.handle(&mut publisher, Packet::Publish(p), now).unwrap();
    }
    let views: Vec<bool> = b
        .take_output(1)
        .packets
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => buffer.as_ptr_range().contains(&p.payload.as_ptr()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(views.len(), publish::PINNING_BACKLOG + 2);
    assert!(views[..publish::PINNING_BACKLOG].iter().all(|v| *v));
    assert!(!views[publish::PINNING_BACKLOG..].iter().any(|v| *v));
}

/// Every session keeps an entry, online or not: with the allocator's 8 bytes,
/// 200 is one 208-byte chunk (issue 15, memory per idle connection; benchmarks.md).
#[test]
fn a_session_entry_stays_small() {
    let entry = std::mem::size_of::<Entry>();
    assert!(entry <= 200, "Entry is {entry} bytes");
}
