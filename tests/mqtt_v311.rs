//! MQTT 3.1.1 (and 3.1) protocol behaviour through real sockets, driven by
//! rumqttc and, where a library would hide the details, by raw bytes.

mod common;

use std::time::Duration;

use common::scenarios::{self, persistent, publish_qos1};
use common::*;
use rumqttc::QoS as Q;
use shardmq::protocol::{Packet, QoS, ReasonCode, Version};

const V: Version = Version::V3_1_1;

#[tokio::test]
async fn connack_return_codes() {
    let b = TestBroker::with(|c| c.mqtt.max_client_id_len = 16);
    let cases: [(&str, &[u8], u8); 5] = [
        // Protocol level 6 does not exist: 0x01, in the 3.1.1 form.
        (
            "level 6",
            b"\x10\x0e\x00\x04MQTT\x06\x02\x00\x3c\x00\x02id",
            0x01,
        ),
        // An empty client id needs clean session 1 [MQTT-3.1.3-8].
        (
            "empty id, clean 0",
            b"\x10\x0c\x00\x04MQTT\x04\x00\x00\x3c\x00\x00",
            0x02,
        ),
        // MQTT 3.1 requires a client id.
        (
            "3.1 empty id",
            b"\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00",
            0x02,
        ),
        // Longer than max-client-id-len (16).
        (
            "id too long",
            b"\x10\x1d\x00\x04MQTT\x04\x02\x00\x3c\x00\x11abcdefghijklmnopq",
            0x02,
        ),
        // An empty id with clean session 1 gets one assigned.
        (
            "empty id, clean 1",
            b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00",
            0x00,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut raw = Raw::open(b.addr(), V).await;
        raw.send_bytes(bytes).await;
        let p = raw.recv().await;
        let Packet::ConnAck(ack) = p else {
            panic!("{what}: expected CONNACK, got {p:?}")
        };
        assert_eq!(ack.reason_code as u8 == 0, code == 0, "{what}: {ack:?}");
        let mut wire = bytes::BytesMut::new();
        shardmq::protocol::encode(&Packet::ConnAck(ack), V, &mut wire).unwrap();
        assert_eq!(&wire[..], [0x20, 0x02, 0x00, code], "{what}");
        if code == 0 {
            raw.sub("anon/t", QoS::AtLeastOnce).await;
            publish_qos1(&mut raw, "anon/t", 5, b"self").await;
        } else {
            assert!(
                raw.expect_closed().await.is_empty(),
                "{what}: closed after refusal"
            );
        }
    }

    // Only 3.1.1 allowed: MQTT 5 and 3.1 are refused as unacceptable versions.
    let b = TestBroker::with(|c| c.mqtt.allowed_protocol_versions = vec![Version::V3_1_1]);
    let mut raw = Raw::open(b.addr(), V).await;
    raw.send_bytes(b"\x10\x10\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x02id")
        .await;
    assert_eq!(
        raw.recv().await,
        Packet::ConnAck(shardmq::protocol::ConnAck {
            session_present: false,
            reason_code: ReasonCode::UnsupportedProtocolVersion,
            properties: Default::default(),
        })
    );
    let (_, ack) = V3::start(v3_options(b.addr(), "fine")).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
}

#[tokio::test]
async fn mqtt_3_1_client_works() {
    let b = TestBroker::start();
    let mut old = Raw::connect(b.addr(), Version::V3_1, "old-timer", true).await;
    old.sub("v31/t", QoS::AtLeastOnce).await;
    let publ = V3::connect(v3_options(b.addr(), "modern")).await;
    publ.publish("v31/t", Q::AtLeastOnce, false, b"hello 3.1")
        .await;
    let p = old.recv_publish().await;
    assert_eq!(&p.payload[..], b"hello 3.1");
}

#[tokio::test]
async fn keepalive_one_and_a_half_times() {
    scenarios::keepalive(V).await;
}

#[tokio::test]
async fn clean_and_persistent_sessions() {
    let b = TestBroker::start();
    let id = id_on_shard("persist", 1);
    let mut opts = v3_options(b.addr(), &id);
    opts.set_clean_session(false);
    let mut sub = V3::connect(opts.clone()).await;
    assert!(!sub.connack.as_ref().unwrap().session_present);
    sub.subscribe("ps/t", Q::AtLeastOnce).await;
    sub.disconnect().await;
    settle().await;

    let mut publ = V3::connect(v3_options(b.addr(), &id_on_shard("ps-pub", 0))).await;
    for i in 0..3 {
        publ.publish("ps/t", Q::AtLeastOnce, false, format!("q{i}").as_bytes())
            .await;
    }
    // Wait for the PUBACKs, so the messages were routed before reconnecting.
    for _ in 0..3 {
        publ.next_incoming(|p| matches!(p, rumqttc::Packet::PubAck(_)).then_some(()))
            .await
            .unwrap();
    }
    // The session is on the other shard: let the forwarded messages arrive.
    settle().await;

    let mut sub = V3::connect(opts.clone()).await;
    assert!(sub.connack.as_ref().unwrap().session_present);
    for i in 0..3 {
        let p = sub.recv().await;
        assert_eq!(p.payload, format!("q{i}").as_bytes());
        assert_eq!(p.qos, Q::AtLeastOnce);
    }
    sub.disconnect().await;

    // Clean session 1 discards the stored session, and ends with the connection.
    let mut clean = v3_options(b.addr(), &id);
    clean.set_clean_session(true);
    let mut c = V3::connect(clean).await;
    assert!(!c.connack.as_ref().unwrap().session_present);
    publ.publish("ps/t", Q::AtLeastOnce, false, b"nobody").await;
    assert!(c.drain().await.is_empty(), "the old subscription is gone");
    c.disconnect().await;
    let sub = V3::connect(opts).await;
    assert!(!sub.connack.as_ref().unwrap().session_present);
}

#[tokio::test]
async fn takeover_across_shards() {
    scenarios::takeover_across_shards(V).await;
}

#[tokio::test]
async fn qos_0_1_2_delivery_at_the_lower_qos() {
    let b = TestBroker::start();
    let mut subs = Vec::new();
    for (i, qos) in [Q::AtMostOnce, Q::AtLeastOnce, Q::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let mut s = V3::connect(v3_options(b.addr(), &format!("qsub-{i}"))).await;
        s.subscribe("qos/+", qos).await;
        subs.push((qos, s));
    }
    settle().await;
    let publ = V3::connect(v3_options(b.addr(), "qpub")).await;
    for qos in [Q::AtMostOnce, Q::AtLeastOnce, Q::ExactlyOnce] {
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

#[tokio::test]
async fn wills_on_abnormal_close_only() {
    scenarios::wills(V).await;
}

#[tokio::test]
async fn wills_with_rumqttc() {
    let b = TestBroker::start();
    let mut watcher = V3::connect(v3_options(b.addr(), "rw-watch")).await;
    watcher.subscribe("rwill/#", Q::AtLeastOnce).await;
    let mut opts = v3_options(b.addr(), &id_on_shard("rw-dies", 1));
    opts.set_last_will(rumqttc::LastWill::new(
        "rwill/a",
        "dead",
        Q::AtLeastOnce,
        false,
    ));
    V3::connect(opts).await.kill();
    let w = watcher.recv().await;
    assert_eq!(
        (w.topic.as_str(), &w.payload[..]),
        ("rwill/a", &b"dead"[..])
    );

    let mut opts = v3_options(b.addr(), &id_on_shard("rw-polite", 0));
    opts.set_last_will(rumqttc::LastWill::new(
        "rwill/b",
        "no",
        Q::AtLeastOnce,
        false,
    ));
    V3::connect(opts).await.disconnect().await;
    assert!(watcher.drain().await.is_empty());
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_at_max_qos() {
    scenarios::overlapping(V).await;
}

#[tokio::test]
async fn shared_subscriptions_round_robin() {
    scenarios::shared(V).await;
}

#[tokio::test]
async fn offline_queue_is_bounded() {
    scenarios::offline_queue_bounded(V).await;
}

/// Courier's SUBSCRIBE option bits (DESIGN.md section 4): 0x05 is
/// non_persistence + QoS 1, 0x0D adds non_retry. Neither is queued for an
/// offline session nor resent after a reconnect; a plain QoS 1 subscription
/// (0x01) is both.
#[tokio::test]
async fn courier_non_retry_and_non_persistence_bits() {
    let b = TestBroker::start();
    let mut publ = Raw::connect(b.addr(), V, &id_on_shard("cr-pub", 0), true).await;
    for (options, kept) in [(0x01u8, true), (0x05, false), (0x0d, false)] {
        let id = id_on_shard(&format!("courier-{options:02x}"), 1);
        let t = format!("cr/{options:02x}");
        let (mut sub, _) = persistent(b.addr(), V, &id).await;
        // SUBSCRIBE packet id 1, filter "cr/xx", options byte as Courier sends it.
        let mut packet = vec![0x82, 0x0a, 0x00, 0x01, 0x00, 0x05];
        packet.extend_from_slice(t.as_bytes());
        packet.push(options);
        sub.send_bytes(&packet).await;
        let ack = sub.recv().await;
        assert_eq!(
            ack,
            Packet::SubAck(shardmq::protocol::SubAck {
                packet_id: pid(1),
                reason_codes: vec![ReasonCode::GrantedQos1],
                properties: Default::default(),
            }),
            "options {options:#04x}"
        );
        settle().await;

        // Online, not acknowledged, then the client reconnects.
        publish_qos1(&mut publ, &t, 1, b"unacked").await;
        let p = sub.recv_publish().await;
        assert_eq!((p.qos, p.dup), (QoS::AtLeastOnce, false));
        drop(sub);
        settle().await;
        // Published while the client is offline.
        publish_qos1(&mut publ, &t, 2, b"offline").await;
        settle().await;
        let (mut sub, present) = persistent(b.addr(), V, &id).await;
        assert!(present);
        if kept {
            let again = sub.recv_publish().await;
            assert_eq!((&again.payload[..], again.dup), (&b"unacked"[..], true));
            sub.puback(again.packet_id.unwrap()).await;
            let queued = sub.recv_publish().await;
            assert_eq!(&queued.payload[..], b"offline");
            sub.puback(queued.packet_id.unwrap()).await;
        }
        sub.assert_silent().await;
        // Still subscribed: a new message arrives, once.
        publish_qos1(&mut publ, &t, 3, b"online").await;
        let p = sub.recv_publish().await;
        assert_eq!(&p.payload[..], b"online");
        sub.puback(p.packet_id.unwrap()).await;
        sub.disconnect().await;
    }
}

/// Courier's 3.1.1 CONNECT user properties (0x26 pairs after the password)
/// are accepted.
#[tokio::test]
async fn courier_connect_user_properties() {
    let b = TestBroker::start();
    let mut raw = Raw::open(b.addr(), V).await;
    // Clean session, keepalive 60, id "c", then user property ("k", "v").
    raw.send_bytes(b"\x10\x14\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c\x26\x00\x01k\x00\x01v")
        .await;
    let p = raw.recv().await;
    assert!(
        matches!(&p, Packet::ConnAck(a) if a.reason_code == ReasonCode::Success),
        "{p:?}"
    );
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Packet::PingResp);
}

/// retry-interval (MQTT 3 only: MQTT 5 forbids resending on a live connection):
/// an unacknowledged QoS 1 message is resent with DUP to a client that stays
/// connected.
#[tokio::test]
async fn unacked_qos1_is_resent_after_the_retry_interval() {
    let b = TestBroker::with(|c| c.mqtt.retry_interval = Duration::from_secs(1));
    let mut sub = Raw::connect(b.addr(), V, &id_on_shard("retry-sub", 1), true).await;
    sub.sub("retry/t", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(b.addr(), V, &id_on_shard("retry-pub", 0), true).await;
    publish_qos1(&mut publ, "retry/t", 1, b"again").await;
    let first = sub.recv_publish().await;
    assert!(!first.dup);
    let again = sub.recv_publish().await;
    assert_eq!((again.dup, again.packet_id), (true, first.packet_id));
}
