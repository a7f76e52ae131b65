//! Scenarios run with raw bytes in both MQTT 3.1.1 and MQTT 5: the same steps,
//! and the version-specific differences (DISCONNECT reasons, session expiry)
//! asserted where they apply.

use std::time::{Duration, Instant};

use bytes::Bytes;
use shardmq::protocol::{
    Ack, LastWill, Packet, QoS, ReasonCode, RetainHandling, SubscriptionOptions, Version,
    WillProperties,
};

use super::*;

/// A raw client with a session that outlives the connection: clean session 0
/// (3.1.1), or clean start 0 with a long session expiry (5).
pub async fn persistent(addr: SocketAddr, version: Version, id: &str) -> (Raw, bool) {
    let mut c = connect(version, id, false, 60);
    if version == Version::V5 {
        c.properties.session_expiry_interval = Some(600);
    }
    let (raw, ack) = Raw::connect_with(addr, c).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    (raw, ack.session_present)
}

pub fn will(t: &str, payload: &'static [u8], retain: bool) -> LastWill {
    LastWill {
        qos: QoS::AtLeastOnce,
        retain,
        topic: topic(t),
        payload: Bytes::from_static(payload),
        properties: WillProperties::default(),
    }
}

/// Publishes QoS 1 `payload` to `t` from `raw` and waits for the PUBACK.
pub async fn publish_qos1(raw: &mut Raw, t: &str, id: u16, payload: &[u8]) {
    raw.publish(publish(t, QoS::AtLeastOnce, id, payload)).await;
    match raw.recv().await {
        Packet::PubAck(a) => assert_eq!(a.packet_id, pid(id)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// Publishes QoS 2 and runs the whole flow: PUBREC, PUBREL, PUBCOMP.
pub async fn publish_qos2(raw: &mut Raw, t: &str, id: u16, payload: &[u8]) {
    raw.publish(publish(t, QoS::ExactlyOnce, id, payload)).await;
    expect_ack(raw, "PUBREC", id).await;
    raw.send(Packet::PubRel(Ack::new(pid(id)))).await;
    expect_ack(raw, "PUBCOMP", id).await;
}

/// The next packet is the acknowledgement `name` for `id`.
pub async fn expect_ack(raw: &mut Raw, name: &str, id: u16) {
    let p = raw.recv().await;
    let ack = match (&p, name) {
        (Packet::PubAck(a), "PUBACK")
        | (Packet::PubRec(a), "PUBREC")
        | (Packet::PubRel(a), "PUBREL")
        | (Packet::PubComp(a), "PUBCOMP") => a,
        _ => panic!("expected {name} {id}, got {p:?}"),
    };
    assert_eq!(ack.packet_id, pid(id), "{name}");
}

/// Unacknowledged QoS 2 messages to a subscriber are resent with DUP after a
/// reconnect, and a PUBREL whose PUBCOMP never came is resent; a QoS 2 publish
/// resent by its publisher after a reconnect is delivered once.
pub async fn qos2_across_reconnect(version: Version) {
    let b = TestBroker::start();
    let sub_id = id_on_shard("q2-sub", 1);
    let (mut sub, _) = persistent(b.addr(), version, &sub_id).await;
    sub.sub("q2/t", QoS::ExactlyOnce).await;

    let mut publ = Raw::connect(b.addr(), version, &id_on_shard("q2-pub", 0), true).await;
    publish_qos2(&mut publ, "q2/t", 1, b"m1").await;
    publish_qos2(&mut publ, "q2/t", 2, b"m2").await;

    let m1 = sub.recv_publish().await;
    let m2 = sub.recv_publish().await;
    assert_eq!(
        (&m1.payload[..], m1.qos, m1.dup),
        (&b"m1"[..], QoS::ExactlyOnce, false)
    );
    assert_eq!(&m2.payload[..], b"m2");
    let (a, bb) = (m1.packet_id.unwrap(), m2.packet_id.unwrap());
    // m2 gets as far as PUBREL; m1 is not acknowledged at all.
    sub.send(Packet::PubRec(Ack::new(bb))).await;
    expect_ack(&mut sub, "PUBREL", bb.get()).await;
    drop(sub);

    let (mut sub, present) = persistent(b.addr(), version, &sub_id).await;
    assert!(present, "session present after reconnect");
    // Resent in the original order: m1 with DUP, then the PUBREL for m2.
    let again = sub.recv_publish().await;
    assert_eq!(
        (&again.payload[..], again.qos, again.dup, again.packet_id),
        (&b"m1"[..], QoS::ExactlyOnce, true, Some(a))
    );
    expect_ack(&mut sub, "PUBREL", bb.get()).await;
    sub.send(Packet::PubRec(Ack::new(a))).await;
    expect_ack(&mut sub, "PUBREL", a.get()).await;
    sub.send(Packet::PubComp(Ack::new(a))).await;
    sub.send(Packet::PubComp(Ack::new(bb))).await;
    sub.assert_silent().await;
    sub.disconnect().await;

    // Everything was completed: nothing is resent.
    let (mut sub, present) = persistent(b.addr(), version, &sub_id).await;
    assert!(present);
    sub.assert_silent().await;

    // Inbound: the publisher loses its connection after PUBREC and resends.
    let pub_id = id_on_shard("q2-pub2", 1);
    let (mut publ2, _) = persistent(b.addr(), version, &pub_id).await;
    publ2
        .publish(publish("q2/t", QoS::ExactlyOnce, 9, b"m3"))
        .await;
    expect_ack(&mut publ2, "PUBREC", 9).await;
    drop(publ2);
    let (mut publ2, present) = persistent(b.addr(), version, &pub_id).await;
    assert!(present);
    let mut resent = publish("q2/t", QoS::ExactlyOnce, 9, b"m3");
    resent.dup = true;
    publ2.publish(resent).await;
    expect_ack(&mut publ2, "PUBREC", 9).await;
    publ2.send(Packet::PubRel(Ack::new(pid(9)))).await;
    expect_ack(&mut publ2, "PUBCOMP", 9).await;

    let m3 = sub.recv_publish().await;
    assert_eq!(&m3.payload[..], b"m3");
    let id3 = m3.packet_id.unwrap();
    sub.send(Packet::PubRec(Ack::new(id3))).await;
    expect_ack(&mut sub, "PUBREL", id3.get()).await;
    sub.send(Packet::PubComp(Ack::new(id3))).await;
    sub.assert_silent().await;
}

/// The same client id connecting again, its session on either shard, takes
/// the session over: the old connection is closed (MQTT 5: DISCONNECT 0x8E),
/// and the new one carries on. The old connection's will, without a will
/// delay, is published as for any close without DISCONNECT: MQTT 3.1.1
/// [MQTT-3.1.2-8], MQTT 5 3.1.4 step 1 ("If the existing Client has a Will
/// Message, that Will Message is published as described in section 3.1.2.5"
/// and its comment: "If the Will Delay Interval of the existing Network
/// Connection is 0 and there is a Will Message, it will be sent because the
/// Network Connection is closed"). Mosquitto 2.0.11 publishes none when the
/// session is resumed (tests/wills.rs).
pub async fn takeover_across_shards(version: Version) {
    let b = TestBroker::start();
    let mut watcher = Raw::connect(b.addr(), version, "watcher", true).await;
    watcher.sub("will/#", QoS::AtLeastOnce).await;
    for shard in 0..2 {
        let id = id_on_shard("twin", shard);
        let mut c = connect(version, &id, false, 60);
        if version == Version::V5 {
            c.properties.session_expiry_interval = Some(60);
        }
        c.will = Some(will("will/twin", b"gone", false));
        let (mut old, ack) = Raw::connect_with(b.addr(), c.clone()).await;
        assert!(!ack.session_present);
        old.sub("tw/t", QoS::AtLeastOnce).await;
        // Several rounds: the kernel spreads connections over both shards'
        // listeners, so some are accepted by the shard that does not own the id.
        for round in 0..4 {
            let (new, ack) = Raw::connect_with(b.addr(), c.clone()).await;
            assert_eq!(ack.reason_code, ReasonCode::Success);
            assert!(ack.session_present, "round {round}: session kept");
            let reason = old.expect_disconnect().await;
            match version {
                Version::V5 => assert_eq!(reason, Some(ReasonCode::SessionTakenOver)),
                _ => assert_eq!(reason, None),
            }
            // The old client closes, as a real one does after the broker's
            // close; its connection ends and its will goes out.
            old = new;
            old.send(Packet::PingReq).await;
            assert_eq!(old.recv().await, Packet::PingResp);
            let w = watcher.recv_publish().await;
            assert_eq!(
                (w.topic.as_str(), &w.payload[..]),
                ("will/twin", &b"gone"[..]),
                "round {round}: the old connection's will"
            );
            watcher.puback(w.packet_id.unwrap()).await;
        }
        // The subscription made on the first connection still delivers.
        let mut publ = Raw::connect(b.addr(), version, "tw-pub", true).await;
        publish_qos1(&mut publ, "tw/t", 1, b"still").await;
        let p = old.recv_publish().await;
        assert_eq!(&p.payload[..], b"still");
        old.puback(p.packet_id.unwrap()).await;
        publ.disconnect().await;
        // A normal DISCONNECT: no will [MQTT-3.1.2-10].
        old.disconnect().await;
        watcher.assert_silent().await;
    }
}

/// Silence for 1.5 × keepalive closes the connection (MQTT 5: DISCONNECT
/// 0x8D) and publishes the will; PINGREQ keeps it open. The close comes
/// within 1.5 × keepalive (MQTT 3.1.1 [MQTT-3.1.2-24], MQTT 5
/// [MQTT-3.1.2-22]) plus a second of slack for a busy machine, not at some
/// later multiple.
pub async fn keepalive(version: Version) {
    let b = TestBroker::start();
    let mut watcher = Raw::connect(b.addr(), version, "ka-watch", true).await;
    watcher.sub("will/#", QoS::AtLeastOnce).await;

    // Pinging every 1.1 s, later than the 1 s keepalive but within 1.5 times
    // it, keeps the connection open.
    let (mut alive, _) = Raw::connect_with(b.addr(), connect(version, "ka-ping", true, 1)).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        alive.send(Packet::PingReq).await;
        assert_eq!(alive.recv().await, Packet::PingResp);
    }

    let mut c = connect(version, &id_on_shard("ka-idle", 1), true, 1);
    c.will = Some(will("will/ka", b"timeout", false));
    let (mut idle, _) = Raw::connect_with(b.addr(), c).await;
    let start = Instant::now();
    let reason = idle.expect_disconnect().await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400),
        "closed after {elapsed:?}, before 1.5 times the keepalive"
    );
    assert!(
        elapsed <= Duration::from_millis(2500),
        "closed after {elapsed:?}, later than 1.5 times the keepalive plus 1 s"
    );
    match version {
        Version::V5 => assert_eq!(reason, Some(ReasonCode::KeepAliveTimeout)),
        _ => assert_eq!(reason, None),
    }
    let w = watcher.recv_publish().await;
    assert_eq!(
        (w.topic.as_str(), &w.payload[..]),
        ("will/ka", &b"timeout"[..])
    );
}

/// Wills: published on an abnormal close, not on a normal DISCONNECT; a
/// retained will is kept for later subscribers.
pub async fn wills(version: Version) {
    let b = TestBroker::start();
    let mut watcher = Raw::connect(b.addr(), version, &id_on_shard("w-watch", 0), true).await;
    watcher.sub("will/#", QoS::AtLeastOnce).await;

    for shard in 0..2 {
        let mut c = connect(version, &id_on_shard("w-abrupt", shard), true, 60);
        c.will = Some(will("will/abrupt", b"lost", false));
        let (abrupt, _) = Raw::connect_with(b.addr(), c).await;
        drop(abrupt);
        let w = watcher.recv_publish().await;
        assert_eq!(
            (w.topic.as_str(), &w.payload[..]),
            ("will/abrupt", &b"lost"[..])
        );
        assert!(!w.retain);
        watcher.puback(w.packet_id.unwrap()).await;

        let mut c = connect(version, &id_on_shard("w-polite", shard), true, 60);
        c.will = Some(will("will/polite", b"never", false));
        let (polite, _) = Raw::connect_with(b.addr(), c).await;
        polite.disconnect().await;
        watcher.assert_silent().await;
    }

    let mut c = connect(version, "w-retained", true, 60);
    c.will = Some(will("will/kept", b"last words", true));
    let (kept, _) = Raw::connect_with(b.addr(), c).await;
    drop(kept);
    let w = watcher.recv_publish().await;
    assert_eq!(&w.payload[..], b"last words");
    settle().await;
    let mut late = Raw::connect(b.addr(), version, &id_on_shard("w-late", 1), true).await;
    late.sub("will/kept", QoS::AtLeastOnce).await;
    let r = late.recv_publish().await;
    assert!(r.retain, "a retained will is sent on subscribe with RETAIN");
    assert_eq!(&r.payload[..], b"last words");
}

/// Retained messages: set, replaced, cleared by an empty payload, sent with
/// RETAIN to new subscribers on either shard and without it to live ones.
pub async fn retained(version: Version) {
    let b = TestBroker::start();
    let mut live = Raw::connect(b.addr(), version, &id_on_shard("r-live", 1), true).await;
    live.sub("r/#", QoS::AtLeastOnce).await;
    let mut publ = Raw::connect(b.addr(), version, &id_on_shard("r-pub", 0), true).await;
    let mut p = publish("r/a", QoS::AtLeastOnce, 1, b"A1");
    p.retain = true;
    publ.publish(p.clone()).await;
    expect_ack(&mut publ, "PUBACK", 1).await;
    p.payload = Bytes::from_static(b"A2");
    publ.publish(p.clone()).await;
    expect_ack(&mut publ, "PUBACK", 1).await;
    let mut q = publish("r/b", QoS::AtMostOnce, 0, b"B");
    q.retain = true;
    publ.publish(q).await;

    for want in [&b"A1"[..], b"A2", b"B"] {
        let m = live.recv_publish().await;
        assert_eq!(&m.payload[..], want);
        assert!(!m.retain, "live subscribers get RETAIN 0 [MQTT-3.3.1-9]");
        if let Some(id) = m.packet_id {
            live.puback(id).await;
        }
    }
    settle().await;

    for shard in 0..2 {
        let mut new = Raw::connect(b.addr(), version, &id_on_shard("r-new", shard), true).await;
        new.sub("r/+", QoS::AtLeastOnce).await;
        let mut got = [new.recv_publish().await, new.recv_publish().await];
        got.sort_by(|x, y| x.topic.as_str().cmp(y.topic.as_str()));
        assert_eq!(
            got.iter()
                .map(|m| (m.topic.as_str(), &m.payload[..], m.retain, m.qos))
                .collect::<Vec<_>>(),
            [
                ("r/a", &b"A2"[..], true, QoS::AtLeastOnce),
                ("r/b", &b"B"[..], true, QoS::AtMostOnce)
            ]
        );
        new.disconnect().await;
    }

    // An empty retained payload clears the topic.
    let mut clear = publish("r/a", QoS::AtLeastOnce, 2, b"");
    clear.retain = true;
    publ.publish(clear).await;
    expect_ack(&mut publ, "PUBACK", 2).await;
    settle().await;
    for shard in 0..2 {
        let mut new = Raw::connect(b.addr(), version, &id_on_shard("r-after", shard), true).await;
        new.sub("r/+", QoS::AtLeastOnce).await;
        let m = new.recv_publish().await;
        assert_eq!(m.topic.as_str(), "r/b");
        new.assert_silent().await;
    }
}

/// Overlapping subscriptions of one client give one delivery at the highest
/// granted QoS.
pub async fn overlapping(version: Version) {
    let b = TestBroker::start();
    let mut sub = Raw::connect(b.addr(), version, &id_on_shard("ov-sub", 1), true).await;
    sub.sub("ov/#", QoS::AtLeastOnce).await;
    sub.sub("ov/+/x", QoS::ExactlyOnce).await;
    sub.sub("ov/a/x", QoS::AtMostOnce).await;
    let mut publ = Raw::connect(b.addr(), version, &id_on_shard("ov-pub", 0), true).await;
    publish_qos2(&mut publ, "ov/a/x", 1, b"three filters").await;
    publish_qos2(&mut publ, "ov/b", 2, b"one filter").await;

    let m = sub.recv_publish().await;
    assert_eq!(
        (&m.payload[..], m.qos),
        (&b"three filters"[..], QoS::ExactlyOnce)
    );
    let n = sub.recv_publish().await;
    assert_eq!(
        (&n.payload[..], n.qos),
        (&b"one filter"[..], QoS::AtLeastOnce)
    );
    let id = m.packet_id.unwrap();
    sub.send(Packet::PubRec(Ack::new(id))).await;
    expect_ack(&mut sub, "PUBREL", id.get()).await;
    sub.send(Packet::PubComp(Ack::new(id))).await;
    sub.puback(n.packet_id.unwrap()).await;
    sub.assert_silent().await;
}

/// `$share/g/f`: each message goes to one member of the group, round-robin
/// over members on both shards, skipping members that are offline; a plain
/// subscriber of the same filter still gets every message.
pub async fn shared(version: Version) {
    let b = TestBroker::start();
    let ids = [
        id_on_shard("sh-m", 0),
        id_on_shard("sh-n", 0),
        id_on_shard("sh-o", 1),
        id_on_shard("sh-p", 1),
    ];
    let mut members = Vec::new();
    for id in &ids {
        let (mut m, _) = persistent(b.addr(), version, id).await;
        m.sub("$share/g/sh/+", QoS::AtLeastOnce).await;
        members.push(m);
    }
    let mut plain = Raw::connect(b.addr(), version, "sh-plain", true).await;
    plain.sub("sh/+", QoS::AtMostOnce).await;
    settle().await;

    let mut publ = Raw::connect(b.addr(), version, &id_on_shard("sh-pub", 0), true).await;
    let n = 40;
    for i in 0..n {
        publish_qos1(&mut publ, "sh/t", i + 1, format!("{i}").as_bytes()).await;
    }
    let mut seen = Vec::new();
    let mut counts = Vec::new();
    for m in &mut members {
        let got = collect_qos1(m).await;
        counts.push(got.len());
        seen.extend(got);
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..n).collect::<Vec<_>>(),
        "each message once, counts {counts:?}"
    );
    // Round-robin: an even share each (±1 for the interleaving of shards).
    let fair = n as usize / members.len();
    for c in &counts {
        assert!(c.abs_diff(fair) <= 1, "unbalanced: {counts:?}");
    }
    for _ in 0..n {
        plain.recv_publish().await;
    }

    // Both members on shard 1 go offline (sessions kept): the members on
    // shard 0 get everything, whichever shard the message is published on.
    let gone = members.split_off(2);
    for m in gone {
        m.disconnect().await;
    }
    // Shards learn of each other's online members by message.
    settle().await;
    let mut seen = Vec::new();
    for i in 0..n {
        publish_qos1(&mut publ, "sh/t", i + 1, format!("{i}").as_bytes()).await;
    }
    let mut counts = Vec::new();
    for m in &mut members {
        let got = collect_qos1(m).await;
        counts.push(got.len());
        seen.extend(got);
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..n).collect::<Vec<_>>(),
        "online members, counts {counts:?}"
    );
    for c in &counts {
        assert!(*c > 0, "a member online got nothing: {counts:?}");
    }
}

/// QoS 1 messages that arrive within [`QUIET`], acknowledged, as numbers.
async fn collect_qos1(raw: &mut Raw) -> Vec<u16> {
    let mut got = Vec::new();
    while let Recv::Packet(p) = raw.recv_within(QUIET).await {
        let Packet::Publish(p) = p else {
            panic!("expected PUBLISH, got {p:?}")
        };
        raw.puback(p.packet_id.unwrap()).await;
        got.push(std::str::from_utf8(&p.payload).unwrap().parse().unwrap());
    }
    got
}

/// A persistent session keeps at most `max-offline-messages` while offline
/// (drop-newest: the first ones), and delivers them in order on reconnect.
pub async fn offline_queue_bounded(version: Version) {
    let b = TestBroker::with(|c| c.mqtt.max_offline_messages = 5);
    let id = id_on_shard("oq-sub", 1);
    let (mut sub, _) = persistent(b.addr(), version, &id).await;
    sub.sub("oq/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    settle().await;
    let mut publ = Raw::connect(b.addr(), version, &id_on_shard("oq-pub", 0), true).await;
    for i in 0..12u16 {
        publish_qos1(&mut publ, "oq/t", i + 1, format!("{i}").as_bytes()).await;
    }
    // The session is on the other shard: let the forwarded messages arrive.
    settle().await;
    let (mut sub, present) = persistent(b.addr(), version, &id).await;
    assert!(present);
    let got = collect_qos1(&mut sub).await;
    assert_eq!(got, [0, 1, 2, 3, 4]);
}

/// Subscription options with retain handling, for MQTT 5 scenarios.
pub fn options(qos: QoS, rh: RetainHandling) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        retain_handling: rh,
        ..Default::default()
    }
}
