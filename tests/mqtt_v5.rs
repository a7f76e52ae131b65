//! MQTT 5 protocol behaviour through real sockets, driven by rumqttc's v5
//! client and, where a library would hide the details, by raw bytes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use common::scenarios::{self, expect_ack, options, persistent, publish_qos1, publish_qos2};
use common::*;
use shardmq::protocol::{
    Ack, Disconnect, DisconnectProperties, Packet, QoS, ReasonCode, RetainHandling,
    SubscribeProperties, SubscriptionOptions, Version,
};

const V: Version = Version::V5;

#[tokio::test]
async fn connack_reason_codes_and_properties() {
    let b = TestBroker::with(|c| {
        c.mqtt.max_client_id_len = 16;
        c.mqtt.max_keepalive = Duration::from_secs(5);
        c.mqtt.max_inflight = 7;
        c.mqtt.max_packet_size = 4096;
    });
    // Longer than max-client-id-len: 0x85, then the connection is closed.
    let (mut raw, ack) =
        Raw::connect_with(b.addr(), connect(V, "abcdefghijklmnopq", true, 10)).await;
    assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
    assert!(raw.expect_closed().await.is_empty());

    // An empty client id is assigned one, with clean start 0 or 1, and the
    // session it names works.
    for clean in [true, false] {
        let (mut raw, ack) = Raw::connect_with(b.addr(), connect(V, "", clean, 10)).await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        let id = ack
            .properties
            .assigned_client_identifier
            .expect("assigned id");
        assert!(!id.is_empty());
        raw.sub("assigned/t", QoS::AtLeastOnce).await;
        publish_qos1(&mut raw, "assigned/t", 3, b"me").await;
        assert_eq!(&raw.recv_publish().await.payload[..], b"me");
    }

    // What the server announces.
    let (_raw, ack) = Raw::connect_with(b.addr(), connect(V, "props", true, 0)).await;
    let p = &ack.properties;
    assert_eq!(p.assigned_client_identifier, None);
    assert_eq!(p.receive_maximum, Some(7));
    assert_eq!(p.maximum_packet_size, Some(4096));
    assert!(p.topic_alias_maximum.unwrap_or(0) > 0);
    // Keepalive 0 (none) or over max-keepalive gets the server's keepalive.
    assert_eq!(p.server_keep_alive, Some(5));
    let (_raw, ack) = Raw::connect_with(b.addr(), connect(V, "long-ka", true, 100)).await;
    assert_eq!(ack.properties.server_keep_alive, Some(5));
    let (_raw, ack) = Raw::connect_with(b.addr(), connect(V, "short-ka", true, 3)).await;
    assert_eq!(ack.properties.server_keep_alive, None);

    // Protocol level 6 gets the oldest CONNACK form, 0x01.
    let mut raw = Raw::open(b.addr(), V).await;
    raw.send_bytes(b"\x10\x0f\x00\x04MQTT\x06\x02\x00\x3c\x00\x00\x00\x01c")
        .await;
    let mut buf = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(raw.stream_mut(), &mut buf)
        .await
        .unwrap();
    assert_eq!(buf, [0x20, 0x02, 0x00, 0x01]);

    // MQTT 5 turned off: 0x84.
    let b = TestBroker::with(|c| c.mqtt.allowed_protocol_versions = vec![Version::V3_1_1]);
    let (_raw, ack) = Raw::connect_with(b.addr(), connect(V, "five", true, 10)).await;
    assert_eq!(ack.reason_code, ReasonCode::UnsupportedProtocolVersion);
}

#[tokio::test]
async fn rumqttc_v5_connects_and_is_refused_with_reasons() {
    let b = TestBroker::with(|c| c.mqtt.max_client_id_len = 8);
    let ok = V5::connect(v5_options(b.addr(), "fine")).await;
    let props = ok.connack.properties.clone().unwrap();
    assert_eq!(props.receive_max, Some(100));
    // Longer than max-client-id-len: refused with CONNACK 0x85, not reset or
    // closed without an answer (`V5::start` panics on those).
    let refused = V5::start(v5_options(b.addr(), "far-too-long-an-id")).await;
    assert_eq!(
        refused.err(),
        Some(mqtt5::ConnectReturnCode::ClientIdentifierNotValid)
    );
}

#[tokio::test]
async fn keepalive_one_and_a_half_times() {
    scenarios::keepalive(V).await;
}

fn v5_persistent(
    addr: std::net::SocketAddr,
    id: &str,
    expiry: Option<u32>,
    clean: bool,
) -> rumqttc::v5::MqttOptions {
    let mut o = v5_options(addr, id);
    o.set_clean_start(clean);
    let mut p = mqtt5::ConnectProperties::new();
    p.session_expiry_interval = expiry;
    o.set_connect_properties(p);
    o
}

#[tokio::test]
async fn clean_start_and_session_expiry() {
    let b = TestBroker::start();
    let addr = b.addr();
    let present = |v: &V5| v.connack.session_present;

    // Session expiry 0 (absent): the session ends with the connection.
    let id = id_on_shard("exp0", 1);
    let mut c = V5::connect(v5_persistent(addr, &id, None, false)).await;
    c.subscribe("se/t", QoS5::AtLeastOnce).await;
    c.disconnect().await;
    let c = V5::connect(v5_persistent(addr, &id, None, false)).await;
    assert!(!present(&c));
    c.disconnect().await;

    // Session expiry 2 s: kept across a quick reconnect, with what was queued.
    let id = id_on_shard("exp2", 1);
    let mut c = V5::connect(v5_persistent(addr, &id, Some(2), false)).await;
    c.subscribe("se/t", QoS5::AtLeastOnce).await;
    c.disconnect().await;
    settle().await;
    let mut publ = Raw::connect(addr, V, &id_on_shard("se-pub", 0), true).await;
    publish_qos1(&mut publ, "se/t", 1, b"kept").await;
    settle().await;
    let mut c = V5::connect(v5_persistent(addr, &id, Some(2), false)).await;
    assert!(present(&c));
    assert_eq!(&c.recv().await.payload[..], b"kept");
    c.disconnect().await;
    // ... and gone once it expired.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut c = V5::connect(v5_persistent(addr, &id, Some(2), false)).await;
    assert!(!present(&c), "expired after 2 s");
    publish_qos1(&mut publ, "se/t", 2, b"after expiry").await;
    assert!(c.drain().await.is_empty(), "the subscription expired too");
    c.disconnect().await;

    // Clean start 1 discards a stored session.
    let id = id_on_shard("cs1", 0);
    let mut c = V5::connect(v5_persistent(addr, &id, Some(60), false)).await;
    c.subscribe("se/t", QoS5::AtLeastOnce).await;
    c.disconnect().await;
    let mut c = V5::connect(v5_persistent(addr, &id, Some(60), true)).await;
    assert!(!present(&c));
    publish_qos1(&mut publ, "se/t", 3, b"not for you").await;
    assert!(c.drain().await.is_empty());

    // Session expiry set on DISCONNECT when CONNECT had none: protocol error.
    let mut raw = Raw::connect(addr, V, "late-expiry", true).await;
    raw.send(Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::Success,
        properties: DisconnectProperties {
            session_expiry_interval: Some(30),
            ..Default::default()
        },
    }))
    .await;
    assert_eq!(
        raw.expect_disconnect().await,
        Some(ReasonCode::ProtocolError)
    );
}

#[tokio::test]
async fn takeover_across_shards() {
    scenarios::takeover_across_shards(V).await;
}

#[tokio::test]
async fn qos_0_1_2_delivery_at_the_lower_qos() {
    let b = TestBroker::start();
    let mut subs = Vec::new();
    for (i, qos) in [QoS5::AtMostOnce, QoS5::AtLeastOnce, QoS5::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let mut s = V5::connect(v5_options(b.addr(), &format!("qsub-{i}"))).await;
        s.subscribe("qos/+", qos).await;
        subs.push((qos, s));
    }
    settle().await;
    let publ = V5::connect(v5_options(b.addr(), "qpub")).await;
    for qos in [QoS5::AtMostOnce, QoS5::AtLeastOnce, QoS5::ExactlyOnce] {
        publ.publish(&format!("qos/{}", qos as u8), qos, false, &[qos as u8])
            .await;
    }
    for (sub_qos, s) in &mut subs {
        let mut got = Vec::new();
        for _ in 0..3 {
            let p = s.recv().await;
            got.push((p.payload[0], p.qos as u8));
        }
        got.sort_unstable();
        let want: Vec<(u8, u8)> = (0..3).map(|q| (q, q.min(*sub_qos as u8))).collect();
        assert_eq!(got, want, "subscriber at QoS {}", *sub_qos as u8);
        assert!(s.drain().await.is_empty(), "exactly once each");
    }
}

#[tokio::test]
async fn qos2_across_a_reconnect() {
    scenarios::qos2_across_reconnect(V).await;
}

#[tokio::test]
async fn retained_set_clear_and_delivery() {
    scenarios::retained(V).await;
}

/// Retain handling 0 sends retained messages on every SUBSCRIBE, 1 only when
/// the subscription is new, 2 never; retain-as-published keeps RETAIN on live
/// deliveries.
#[tokio::test]
async fn retain_handling_and_retain_as_published() {
    let b = TestBroker::start();
    let mut publ = Raw::connect(b.addr(), V, &id_on_shard("rh-pub", 0), true).await;
    let mut p = publish("rh/t", QoS::AtLeastOnce, 1, b"kept");
    p.retain = true;
    publ.publish(p.clone()).await;
    expect_ack(&mut publ, "PUBACK", 1).await;
    settle().await;

    let mut sub = Raw::connect(b.addr(), V, &id_on_shard("rh-sub", 1), true).await;
    let cases = [
        (RetainHandling::OnSubscribe, true),
        (RetainHandling::OnSubscribe, true),
        (RetainHandling::Never, false),
    ];
    for (i, (rh, sent)) in cases.into_iter().enumerate() {
        sub.subscribe(subscribe(1, &[("rh/t", options(QoS::AtLeastOnce, rh))]))
            .await;
        if sent {
            let m = sub.recv_publish().await;
            assert!(m.retain, "case {i}");
            sub.puback(m.packet_id.unwrap()).await;
        } else {
            sub.assert_silent().await;
        }
    }
    sub.subscribe(subscribe(
        1,
        &[(
            "rh/+",
            options(QoS::AtLeastOnce, RetainHandling::OnNewSubscribe),
        )],
    ))
    .await;
    let m = sub.recv_publish().await;
    assert!(m.retain, "new subscription with retain handling 1");
    sub.puback(m.packet_id.unwrap()).await;
    sub.subscribe(subscribe(
        1,
        &[(
            "rh/+",
            options(QoS::AtLeastOnce, RetainHandling::OnNewSubscribe),
        )],
    ))
    .await;
    sub.assert_silent().await;

    // Retain as published.
    let mut rap = Raw::connect(b.addr(), V, &id_on_shard("rap", 1), true).await;
    let mut o = options(QoS::AtLeastOnce, RetainHandling::Never);
    o.retain_as_published = true;
    rap.subscribe(subscribe(1, &[("rap/t", o)])).await;
    let mut plain = Raw::connect(b.addr(), V, &id_on_shard("no-rap", 1), true).await;
    plain.sub("rap/t", QoS::AtLeastOnce).await;
    let mut p = publish("rap/t", QoS::AtLeastOnce, 2, b"live");
    p.retain = true;
    publ.publish(p).await;
    expect_ack(&mut publ, "PUBACK", 2).await;
    assert!(rap.recv_publish().await.retain, "retain as published");
    assert!(!plain.recv_publish().await.retain);
}

#[tokio::test]
async fn wills_on_abnormal_close_only() {
    scenarios::wills(V).await;
}

fn will_with(t: &str, delay: Option<u32>) -> shardmq::protocol::LastWill {
    let mut w = scenarios::will(t, b"bye", false);
    w.properties.will_delay_interval = delay;
    w
}

#[tokio::test]
async fn will_delay_disconnect_with_will_and_takeover() {
    let b = TestBroker::start();
    let mut watcher = Raw::connect(b.addr(), V, &id_on_shard("wd-watch", 0), true).await;
    watcher.sub("wd/#", QoS::AtLeastOnce).await;
    let conn = |id: &str, t: &str, delay: Option<u32>, expiry: u32| {
        let mut c = connect(V, id, false, 60);
        c.properties.session_expiry_interval = Some(expiry);
        c.will = Some(will_with(t, delay));
        c
    };

    // Will delay 2 s: not at once, then published.
    let (c, _) = Raw::connect_with(
        b.addr(),
        conn(&id_on_shard("wd-a", 1), "wd/delayed", Some(2), 60),
    )
    .await;
    drop(c);
    assert!(matches!(
        watcher.recv_within(Duration::from_millis(1000)).await,
        Recv::Timeout
    ));
    let w = watcher.recv_publish().await;
    assert_eq!(w.topic.as_str(), "wd/delayed");
    watcher.puback(w.packet_id.unwrap()).await;

    // Coming back within the delay cancels the will.
    let id = id_on_shard("wd-b", 1);
    let (c, _) = Raw::connect_with(b.addr(), conn(&id, "wd/cancelled", Some(2), 60)).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (back, ack) = Raw::connect_with(b.addr(), conn(&id, "wd/other", None, 60)).await;
    assert!(ack.session_present);
    assert!(matches!(
        watcher.recv_within(Duration::from_millis(3000)).await,
        Recv::Timeout
    ));
    back.disconnect().await;

    // A session that ends before the will delay sends the will then.
    let (c, _) = Raw::connect_with(
        b.addr(),
        conn(&id_on_shard("wd-c", 0), "wd/expired", Some(300), 1),
    )
    .await;
    drop(c);
    let w = watcher.recv_publish().await;
    assert_eq!(w.topic.as_str(), "wd/expired");
    watcher.puback(w.packet_id.unwrap()).await;

    // DISCONNECT 0x04 "with will message" publishes it.
    let (mut c, _) =
        Raw::connect_with(b.addr(), conn(&id_on_shard("wd-d", 1), "wd/asked", None, 0)).await;
    c.send(Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::DisconnectWithWillMessage,
        properties: Default::default(),
    }))
    .await;
    let w = watcher.recv_publish().await;
    assert_eq!(w.topic.as_str(), "wd/asked");
    watcher.puback(w.packet_id.unwrap()).await;

    // A takeover during the will delay: no will (the session continues).
    let id = id_on_shard("wd-e", 0);
    let (mut old, _) = Raw::connect_with(b.addr(), conn(&id, "wd/taken", Some(1), 60)).await;
    let (_new, _) = Raw::connect_with(b.addr(), conn(&id, "wd/new", None, 60)).await;
    assert_eq!(
        old.expect_disconnect().await,
        Some(ReasonCode::SessionTakenOver)
    );
    assert!(matches!(
        watcher.recv_within(Duration::from_millis(2500)).await,
        Recv::Timeout
    ));
}

#[tokio::test]
async fn rumqttc_will_with_properties() {
    let b = TestBroker::start();
    let mut watcher = V5::connect(v5_options(b.addr(), "rw-watch")).await;
    watcher.subscribe("rwill/#", QoS5::AtLeastOnce).await;
    let mut opts = v5_options(b.addr(), &id_on_shard("rw-dies", 1));
    let props = mqtt5::LastWillProperties {
        delay_interval: None,
        payload_format_indicator: Some(1),
        message_expiry_interval: None,
        content_type: Some("text/plain".into()),
        response_topic: Some("rwill/reply".into()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        user_properties: vec![("k".into(), "v".into())],
    };
    opts.set_last_will(mqtt5::LastWill::new(
        "rwill/a",
        "dead",
        QoS5::AtLeastOnce,
        false,
        Some(props),
    ));
    V5::connect(opts).await.kill();
    let w = watcher.recv().await;
    assert_eq!(
        (&w.topic[..], &w.payload[..]),
        (&b"rwill/a"[..], &b"dead"[..])
    );
    let p = w.properties.expect("will properties");
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.response_topic.as_deref(), Some("rwill/reply"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"corr"[..]));
    assert_eq!(p.user_properties, [("k".to_string(), "v".to_string())]);
    assert_eq!(p.payload_format_indicator, Some(1));
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_at_max_qos() {
    scenarios::overlapping(V).await;
}

#[tokio::test]
async fn overlapping_subscriptions_carry_every_subscription_id() {
    let b = TestBroker::start();
    let mut sub = Raw::connect(b.addr(), V, &id_on_shard("sid", 1), true).await;
    for (id, f, qos) in [
        (7, "sid/#", QoS::AtLeastOnce),
        (9, "sid/+/x", QoS::ExactlyOnce),
    ] {
        let mut s = subscribe(1, &[(f, sub_options(qos))]);
        s.properties = SubscribeProperties {
            subscription_identifier: Some(id),
            ..Default::default()
        };
        sub.subscribe(s).await;
    }
    sub.sub("sid/a/+", QoS::AtMostOnce).await; // no identifier
    let mut publ = Raw::connect(b.addr(), V, &id_on_shard("sid-pub", 0), true).await;
    publish_qos2(&mut publ, "sid/a/x", 1, b"all three").await;
    publish_qos2(&mut publ, "sid/b", 2, b"one").await;
    let m = sub.recv_publish().await;
    assert_eq!(m.qos, QoS::ExactlyOnce);
    let mut ids = m.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, [7, 9]);
    let n = sub.recv_publish().await;
    assert_eq!(
        (n.qos, n.properties.subscription_identifiers),
        (QoS::AtLeastOnce, vec![7])
    );

    // The same through rumqttc.
    let mut r = V5::connect(v5_options(b.addr(), &id_on_shard("sid-r", 0))).await;
    r.subscribe_with(
        mqtt5::Filter::new("sidr/#", QoS5::AtLeastOnce),
        Some(mqtt5::SubscribeProperties {
            id: Some(42),
            user_properties: vec![],
        }),
    )
    .await;
    settle().await;
    publish_qos1(&mut publ, "sidr/x", 3, b"r").await;
    let p = r.recv().await;
    assert_eq!(p.properties.unwrap().subscription_identifiers, [42]);
}

#[tokio::test]
async fn shared_subscriptions_round_robin() {
    scenarios::shared(V).await;
}

#[tokio::test]
async fn no_local() {
    let b = TestBroker::start();
    let mut me = V5::connect(v5_options(b.addr(), &id_on_shard("nl-me", 0))).await;
    let mut f = mqtt5::Filter::new("nl/t", QoS5::AtLeastOnce);
    f.nolocal = true;
    me.subscribe_with(f, None).await;
    me.subscribe("nl/echo", QoS5::AtLeastOnce).await;
    let mut other = V5::connect(v5_options(b.addr(), &id_on_shard("nl-other", 1))).await;
    other.subscribe("nl/#", QoS5::AtLeastOnce).await;
    me.publish("nl/t", QoS5::AtLeastOnce, false, b"mine").await;
    me.publish("nl/echo", QoS5::AtLeastOnce, false, b"echo")
        .await;
    let mut got: Vec<Bytes> = vec![other.recv().await.payload, other.recv().await.payload];
    got.sort();
    assert_eq!(
        got,
        [Bytes::from_static(b"echo"), Bytes::from_static(b"mine")]
    );
    let mine: Vec<Bytes> = me.drain().await.into_iter().map(|p| p.payload).collect();
    assert_eq!(
        mine,
        [Bytes::from_static(b"echo")],
        "no-local skips only nl/t"
    );
}

#[tokio::test]
async fn topic_aliases_from_the_client() {
    let b = TestBroker::start();
    let mut sub = V5::connect(v5_options(b.addr(), &id_on_shard("ta-sub", 1))).await;
    sub.subscribe("ta/#", QoS5::AtLeastOnce).await;
    let publ = V5::connect(v5_options(b.addr(), &id_on_shard("ta-pub", 0))).await;
    let alias = |a: u16| mqtt5::PublishProperties {
        topic_alias: Some(a),
        ..Default::default()
    };
    for (t, a, payload) in [
        ("ta/long/topic/name", 1, "set 1"),
        ("", 1, "by 1"),
        ("ta/other", 2, "set 2"),
        ("", 2, "by 2"),
        ("ta/moved", 1, "reset 1"),
        ("", 1, "by new 1"),
    ] {
        publ.client
            .publish_with_properties(t, QoS5::AtLeastOnce, false, payload, alias(a))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..6 {
        let p = sub.recv().await;
        got.push((
            String::from_utf8(p.topic.to_vec()).unwrap(),
            String::from_utf8(p.payload.to_vec()).unwrap(),
        ));
    }
    assert_eq!(
        got,
        [
            ("ta/long/topic/name", "set 1"),
            ("ta/long/topic/name", "by 1"),
            ("ta/other", "set 2"),
            ("ta/other", "by 2"),
            ("ta/moved", "reset 1"),
            ("ta/moved", "by new 1"),
        ]
        .map(|(t, p)| (t.to_string(), p.to_string()))
    );

    // An alias above the maximum, or an unknown alias: DISCONNECT.
    let (_, ack) = Raw::connect_with(b.addr(), connect(V, "ta-raw", true, 60)).await;
    let max = ack.properties.topic_alias_maximum.unwrap();
    let mut raw = Raw::connect(b.addr(), V, "ta-raw", true).await;
    let mut p = publish("ta/x", QoS::AtMostOnce, 0, b"x");
    p.properties.topic_alias = Some(max + 1);
    raw.publish(p).await;
    assert_eq!(
        raw.expect_disconnect().await,
        Some(ReasonCode::TopicAliasInvalid)
    );
    let mut raw = Raw::connect(b.addr(), V, "ta-raw", true).await;
    // PUBLISH, empty topic, topic alias 5 never set.
    raw.send_bytes(b"\x30\x07\x00\x00\x03\x23\x00\x05x").await;
    assert_eq!(
        raw.expect_disconnect().await,
        Some(ReasonCode::ProtocolError)
    );
}

#[tokio::test]
async fn receive_maximum_both_ways() {
    let b = TestBroker::with(|c| c.mqtt.max_inflight = 3);
    // The client's receive maximum 2 limits unacknowledged QoS 1 sends to it.
    let mut c = connect(V, &id_on_shard("rm-sub", 1), true, 60);
    c.properties.receive_maximum = Some(2);
    let (mut sub, _) = Raw::connect_with(b.addr(), c).await;
    sub.sub("rm/t", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(b.addr(), V, &id_on_shard("rm-pub", 0), true).await;
    for i in 0..5u16 {
        publish_qos1(&mut publ, "rm/t", i + 1, &[b'0' + i as u8]).await;
    }
    let first = sub.recv_publish().await;
    let second = sub.recv_publish().await;
    assert_eq!(
        (&first.payload[..], &second.payload[..]),
        (&b"0"[..], &b"1"[..])
    );
    sub.assert_silent().await;
    sub.puback(first.packet_id.unwrap()).await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"2");
    sub.assert_silent().await;

    // The server's receive maximum (max-inflight, 3): a fourth unreleased QoS 2
    // PUBLISH is "receive maximum exceeded".
    let mut greedy = Raw::connect(b.addr(), V, "rm-greedy", true).await;
    for id in 1..=3 {
        greedy
            .publish(publish("rm/q2", QoS::ExactlyOnce, id, b"x"))
            .await;
        expect_ack(&mut greedy, "PUBREC", id).await;
    }
    greedy
        .publish(publish("rm/q2", QoS::ExactlyOnce, 4, b"x"))
        .await;
    assert_eq!(
        greedy.expect_disconnect().await,
        Some(ReasonCode::ReceiveMaximumExceeded)
    );
}

#[tokio::test]
async fn maximum_packet_size_both_ways() {
    let b = TestBroker::with(|c| c.mqtt.max_packet_size = 1024);
    let mut bystander = Raw::connect(b.addr(), V, &id_on_shard("mp-by", 1), true).await;
    bystander.sub("mp/#", QoS::AtLeastOnce).await;
    // The client announces 256 bytes, and a receive maximum of 1 so that an
    // unsent QoS 1 message cannot hold the window.
    let mut c = connect(V, &id_on_shard("mp-small", 1), true, 60);
    c.properties.maximum_packet_size = Some(256);
    c.properties.receive_maximum = Some(1);
    let (mut small, _) = Raw::connect_with(b.addr(), c).await;
    small.sub("mp/#", QoS::AtLeastOnce).await;

    let mut publ = Raw::connect(b.addr(), V, &id_on_shard("mp-pub", 0), true).await;
    let big = vec![b'b'; 600];
    publ.publish(publish("mp/big", QoS::AtMostOnce, 0, &big))
        .await;
    publish_qos1(&mut publ, "mp/big", 1, &big).await;
    publish_qos1(&mut publ, "mp/small", 2, b"fits").await;
    let m = small.recv_publish().await;
    assert_eq!(
        &m.payload[..],
        b"fits",
        "larger packets are not sent to the client"
    );
    small.puback(m.packet_id.unwrap()).await;
    for _ in 0..3 {
        let m = bystander.recv_publish().await;
        if let Some(id) = m.packet_id {
            bystander.puback(id).await;
        }
    }

    // A packet over the server's maximum: DISCONNECT 0x95, only for that client.
    let too_big = vec![b'x'; 2000];
    publ.publish(publish("mp/huge", QoS::AtMostOnce, 0, &too_big))
        .await;
    assert_eq!(
        publ.expect_disconnect().await,
        Some(ReasonCode::PacketTooLarge)
    );
    let mut other = Raw::connect(b.addr(), V, "mp-other", true).await;
    publish_qos1(&mut other, "mp/after", 1, b"ok").await;
    assert_eq!(&bystander.recv_publish().await.payload[..], b"ok");
}

#[tokio::test]
async fn message_expiry() {
    let b = TestBroker::start();
    let id = id_on_shard("me-sub", 1);
    let (mut sub, _) = persistent(b.addr(), V, &id).await;
    sub.sub("me/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    settle().await;
    let mut publ = Raw::connect(b.addr(), V, &id_on_shard("me-pub", 0), true).await;
    for (i, expiry) in [Some(1), Some(600), None].into_iter().enumerate() {
        let mut p = publish(
            "me/t",
            QoS::AtLeastOnce,
            i as u16 + 1,
            format!("{expiry:?}").as_bytes(),
        );
        p.properties.message_expiry_interval = expiry;
        publ.publish(p).await;
        expect_ack(&mut publ, "PUBACK", i as u16 + 1).await;
    }
    // A retained message that expires too.
    let mut p = publish("me/r", QoS::AtLeastOnce, 9, b"stale");
    p.retain = true;
    p.properties.message_expiry_interval = Some(1);
    publ.publish(p).await;
    expect_ack(&mut publ, "PUBACK", 9).await;

    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (mut sub, present) = persistent(b.addr(), V, &id).await;
    assert!(present);
    let long = sub.recv_publish().await;
    assert_eq!(&long.payload[..], b"Some(600)");
    let left = long
        .properties
        .message_expiry_interval
        .expect("expiry left");
    assert!(
        (1..=599).contains(&left),
        "the interval left, not the original: {left}"
    );
    sub.puback(long.packet_id.unwrap()).await;
    let none = sub.recv_publish().await;
    assert_eq!(
        (&none.payload[..], none.properties.message_expiry_interval),
        (&b"None"[..], None)
    );
    sub.puback(none.packet_id.unwrap()).await;
    sub.assert_silent().await;
    sub.sub("me/r", QoS::AtLeastOnce).await;
    sub.assert_silent().await;
}

#[tokio::test]
async fn request_response_and_user_properties_pass_through() {
    let b = TestBroker::start();
    let mut responder = V5::connect(v5_options(b.addr(), &id_on_shard("rr-resp", 1))).await;
    responder.subscribe("rr/req", QoS5::AtLeastOnce).await;
    let mut requester = V5::connect(v5_options(b.addr(), &id_on_shard("rr-req", 0))).await;
    requester.subscribe("rr/reply/1", QoS5::AtLeastOnce).await;
    let props = mqtt5::PublishProperties {
        payload_format_indicator: Some(1),
        response_topic: Some("rr/reply/1".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![
            ("a".into(), "1".into()),
            ("b".into(), "2".into()),
            ("a".into(), "3".into()),
        ],
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    requester
        .client
        .publish_with_properties("rr/req", QoS5::AtLeastOnce, false, "{}", props.clone())
        .await
        .unwrap();
    let req = responder.recv().await;
    let got = req.properties.clone().expect("properties");
    assert_eq!(got.payload_format_indicator, props.payload_format_indicator);
    assert_eq!(got.response_topic, props.response_topic);
    assert_eq!(got.correlation_data, props.correlation_data);
    assert_eq!(
        got.user_properties, props.user_properties,
        "order and repeats kept"
    );
    assert_eq!(got.content_type, props.content_type);
    assert_eq!(got.message_expiry_interval, None);

    let reply = mqtt5::PublishProperties {
        correlation_data: got.correlation_data.clone(),
        ..Default::default()
    };
    responder
        .client
        .publish_with_properties(
            got.response_topic.unwrap(),
            QoS5::AtLeastOnce,
            false,
            "ok",
            reply,
        )
        .await
        .unwrap();
    let resp = requester.recv().await;
    assert_eq!(&resp.payload[..], b"ok");
    assert_eq!(
        resp.properties.unwrap().correlation_data,
        props.correlation_data
    );

    // A user property on a 3.1.1 subscriber's delivery is dropped, not an error.
    let mut old = Raw::connect(b.addr(), Version::V3_1_1, "rr-old", true).await;
    old.sub("rr/req", QoS::AtLeastOnce).await;
    requester
        .client
        .publish_with_properties("rr/req", QoS5::AtLeastOnce, false, "{}", props)
        .await
        .unwrap();
    assert_eq!(&old.recv_publish().await.payload[..], b"{}");
}

#[tokio::test]
async fn offline_queue_is_bounded() {
    scenarios::offline_queue_bounded(V).await;
}

#[tokio::test]
async fn shutdown_sends_server_shutting_down() {
    let b = TestBroker::start();
    let mut clients = Vec::new();
    for shard in 0..2 {
        clients.push(Raw::connect(b.addr(), V, &id_on_shard("sd", shard), true).await);
    }
    let stop = tokio::task::spawn_blocking(move || drop(b));
    for c in &mut clients {
        assert_eq!(
            c.expect_disconnect().await,
            Some(ReasonCode::ServerShuttingDown)
        );
    }
    stop.await.unwrap();
}

#[allow(dead_code)]
fn unused(_: ByteString, _: Ack, _: SubscriptionOptions) {}

/// Topic aliases from the server: a client that announces a topic alias
/// maximum gets repeated topics as aliases.
#[tokio::test]
async fn topic_aliases_to_the_client() {
    let b = TestBroker::start();
    let mut c = connect(V, &id_on_shard("tao-sub", 1), true, 60);
    c.properties.topic_alias_maximum = Some(10);
    let (mut sub, _) = Raw::connect_with(b.addr(), c).await;
    sub.sub("tao/#", QoS::AtMostOnce).await;
    let mut publ = Raw::connect(b.addr(), V, &id_on_shard("tao-pub", 0), true).await;
    for _ in 0..2 {
        publ.publish(publish("tao/a/rather/long/topic", QoS::AtMostOnce, 0, b"x"))
            .await;
    }
    let first = sub.recv_publish().await;
    let second = sub.recv_publish().await;
    let alias = first.properties.topic_alias.expect("an alias set");
    assert_eq!(first.topic.as_str(), "tao/a/rather/long/topic");
    assert!(second.topic.is_alias_only());
    assert_eq!(second.properties.topic_alias, Some(alias));
}
