//! Delivery behaviours end to end, on the `shardmq` binary with two shards and
//! raw-socket clients placed on different shards: UNSUBSCRIBE,
//! `max-topic-levels`, `queue-overflow = "drop-oldest"`, the exact value of
//! `shardmq_messages_dropped_total`, shared subscriptions when a member leaves
//! or is offline, and the MQTT 3 `retry-interval`.
//!
//! Every client id is picked for its shard ([`id_on_shard`]), so what crosses
//! the mesh between shards is tested, not only the shard-local path.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::scenarios::{persistent, publish_qos1};
use common::{
    filter, http_get, id_on_shard, lines_of, pid, publish, settle, sub_options, subscribe, Raw,
    Recv, QUIET, WAIT,
};
use shardmq::protocol::{Packet, Publish, QoS, ReasonCode, Unsubscribe, Version};

const V3: Version = Version::V3_1_1;
const V5: Version = Version::V5;

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// The `shardmq` binary on shards 0 and 1, MQTT and HTTP on free loopback
/// ports, with `mqtt` added to its `[mqtt]` section; killed on drop.
struct Broker {
    child: Child,
    addr: SocketAddr,
    http: SocketAddr,
    /// Kept so the thread draining the broker's stderr keeps draining it.
    _log: mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Broker {
    /// `name` keeps the config file of tests running at once apart.
    fn start(name: &str, mqtt: &str) -> Broker {
        let dir =
            std::env::temp_dir().join(format!("shardmq-delivery-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "[shards]\ncores = [0, 1]\n\
             [[listeners]]\nbind = \"127.0.0.1:0\"\n\
             [http]\nbind = \"127.0.0.1:0\"\n\
             [log]\nlevel = \"info\"\n\
             [mqtt]\n{mqtt}\n"
        );
        let file = dir.join("shardmq.toml");
        std::fs::write(&file, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
            .arg("--config")
            .arg(&file)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shardmq");
        let log = lines_of(child.stderr.take().unwrap());
        let addr = after(&log, "MQTT listener addr=");
        let http = after(&log, "addr=");
        Broker {
            child,
            addr: addr.parse().expect("listener address"),
            http: http.parse().expect("HTTP address"),
            _log: log,
            dir,
        }
    }

    /// The samples of `shardmq_messages_dropped_total`, as
    /// `(shard, reason, value)`.
    fn dropped(&self) -> Vec<(String, String, u64)> {
        let (status, text) = http_get(self.http, "/metrics");
        assert_eq!(status, 200);
        text.lines()
            .filter_map(|l| l.strip_prefix("shardmq_messages_dropped_total{"))
            .map(|l| {
                let (labels, value) = l.split_once("} ").expect("a sample");
                let label = |name: &str| {
                    labels
                        .split(',')
                        .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("no {name} label in {l}"))
                        .to_owned()
                };
                let value = value.trim().parse().expect("an integer sample");
                (label("shard"), label("reason"), value)
            })
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What follows `marker` on the first log line that has it, within [`WAIT`].
fn after(log: &mpsc::Receiver<String>, marker: &str) -> String {
    loop {
        match log.recv_timeout(WAIT) {
            Ok(line) => {
                if let Some((_, rest)) = line.split_once(marker) {
                    return rest.trim().to_owned();
                }
            }
            Err(_) => panic!("shardmq never logged {marker:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Client helpers
// ---------------------------------------------------------------------------

/// A clean-session client with an id on `shard`.
async fn clean(b: &Broker, version: Version, prefix: &str, shard: usize) -> Raw {
    Raw::connect(b.addr, version, &id_on_shard(prefix, shard), true).await
}

/// The payload of a PUBLISH as a number (every test publishes numbers).
fn number(p: &Publish) -> u16 {
    std::str::from_utf8(&p.payload).unwrap().parse().unwrap()
}

/// Every PUBLISH that arrives until [`QUIET`] passes with none, acknowledged
/// if `ack`. A closed connection fails the test: it is not "nothing came".
async fn collect(raw: &mut Raw, ack: bool) -> Vec<Publish> {
    let mut got = Vec::new();
    loop {
        match raw.recv_within(QUIET).await {
            Recv::Timeout => return got,
            Recv::Closed => panic!("connection closed; got {got:?}"),
            Recv::Packet(Packet::Publish(p)) => {
                if ack {
                    raw.puback(p.packet_id.unwrap()).await;
                }
                got.push(p);
            }
            Recv::Packet(other) => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

/// Up to `n` PUBLISHes, acknowledged, that arrive within [`WAIT`] in all: fewer
/// if the rest never come, for a test to say what it expected.
async fn recv_n(raw: &mut Raw, n: usize) -> Vec<Publish> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match raw.recv_within(left).await {
            Recv::Timeout => break,
            Recv::Closed => panic!("connection closed; got {got:?}"),
            Recv::Packet(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    raw.puback(id).await;
                }
                got.push(p);
            }
            Recv::Packet(other) => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    got
}

fn numbers(ps: &[Publish]) -> Vec<u16> {
    ps.iter().map(number).collect()
}

/// Sends UNSUBSCRIBE for `filters` and returns the UNSUBACK's reason codes
/// (empty for MQTT 3).
async fn unsubscribe(raw: &mut Raw, id: u16, filters: &[&str]) -> Vec<ReasonCode> {
    raw.send(Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(id),
        filters: filters.iter().map(|f| filter(f)).collect(),
        user_properties: Default::default(),
    }))
    .await;
    match raw.recv().await {
        Packet::UnsubAck(ack) => {
            assert_eq!(ack.packet_id, pid(id), "UNSUBACK packet id");
            ack.reason_codes
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// UNSUBSCRIBE
// ---------------------------------------------------------------------------

/// UNSUBSCRIBE removes the subscription everywhere: a publisher on the other
/// shard and one on the subscriber's shard stop reaching it, its other
/// subscription keeps delivering, and its persistent session queues nothing
/// for the removed filter while offline. MQTT 5 UNSUBACK says 0x00 for a
/// filter that was subscribed and 0x11 "no subscription existed" otherwise
/// [MQTT-3.11.3-1, section 3.11.2.1]; MQTT 3.1.1 UNSUBACK has no payload.
async fn unsubscribe_stops_delivery(version: Version) {
    let b = Broker::start(&format!("unsub-{}", version as u8), "");
    let id = id_on_shard("us-sub", 1);
    let (mut sub, _) = persistent(b.addr, version, &id).await;
    sub.sub("us/+", QoS::AtLeastOnce).await;
    sub.sub("other/t", QoS::AtLeastOnce).await;
    let mut far = clean(&b, version, "us-far", 0).await;
    let mut near = clean(&b, version, "us-near", 1).await;

    publish_qos1(&mut far, "us/a", 1, b"1").await;
    publish_qos1(&mut near, "us/b", 1, b"2").await;
    let mut before = numbers(&recv_n(&mut sub, 2).await);
    before.sort_unstable();
    assert_eq!(before, [1, 2], "subscribed: both publishers reach it");

    let codes = unsubscribe(&mut sub, 7, &["us/+", "never/subscribed"]).await;
    let expected: &[ReasonCode] = match version {
        V5 => &[ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
        _ => &[],
    };
    assert_eq!(codes, expected, "UNSUBACK reason codes");
    // The other shard learns of the removal by message.
    settle().await;

    // Each publisher's messages arrive in order: if the first of each got
    // through, it would come before its "other/t".
    publish_qos1(&mut far, "us/a", 2, b"3").await;
    publish_qos1(&mut far, "other/t", 3, b"4").await;
    publish_qos1(&mut near, "us/b", 2, b"5").await;
    publish_qos1(&mut near, "other/t", 3, b"6").await;
    let mut after = numbers(&collect(&mut sub, true).await);
    after.sort_unstable();
    assert_eq!(after, [4, 6], "after UNSUBSCRIBE only other/t is delivered");

    let codes = unsubscribe(&mut sub, 8, &["us/+"]).await;
    let expected: &[ReasonCode] = match version {
        V5 => &[ReasonCode::NoSubscriptionExisted],
        _ => &[],
    };
    assert_eq!(codes, expected, "UNSUBSCRIBE of a removed filter");

    // Offline, the session queues other/t but not us/+.
    sub.disconnect().await;
    publish_qos1(&mut far, "us/a", 4, b"7").await;
    publish_qos1(&mut far, "other/t", 5, b"8").await;
    publish_qos1(&mut near, "us/b", 4, b"9").await;
    settle().await;
    let (mut sub, present) = persistent(b.addr, version, &id).await;
    assert!(present, "the session was kept");
    assert_eq!(numbers(&collect(&mut sub, true).await), [8]);
}

#[tokio::test]
async fn unsubscribe_stops_delivery_v311() {
    unsubscribe_stops_delivery(V3).await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery_v5_with_reason_codes() {
    unsubscribe_stops_delivery(V5).await;
}

// ---------------------------------------------------------------------------
// max-topic-levels
// ---------------------------------------------------------------------------

/// With `max-topic-levels = 4`, as EMQX does with `max_topic_levels`:
/// - a SUBSCRIBE filter deeper than that is refused in the SUBACK (MQTT 5
///   0x8F "topic filter invalid", MQTT 3.1.1 0x80) while the others in the
///   same packet are granted; a shared filter counts the levels after
///   `$share/<group>/`;
/// - a PUBLISH to a deeper topic is not delivered, and the publisher is
///   disconnected (MQTT 5 with DISCONNECT 0x90 "topic name invalid"; MQTT 3
///   has no way to say why, so the connection just closes).
async fn topic_levels_enforced(version: Version) {
    let b = Broker::start(&format!("levels-{}", version as u8), "max-topic-levels = 4");
    let mut watcher = clean(&b, version, "lv-watch", 1).await;
    watcher.sub("#", QoS::AtLeastOnce).await;
    let mut subscriber = clean(&b, version, "lv-sub", 0).await;
    let codes = subscriber
        .subscribe(subscribe(
            1,
            &[
                ("a/b/c/d", sub_options(QoS::AtLeastOnce)),
                ("a/b/c/d/e", sub_options(QoS::AtLeastOnce)),
                ("+/+/+/+/#", sub_options(QoS::AtLeastOnce)),
                ("$share/g/a/b/c/d", sub_options(QoS::AtLeastOnce)),
                ("a/b/c/", sub_options(QoS::AtMostOnce)),
                ("a/b/c/d/", sub_options(QoS::AtMostOnce)),
            ],
        ))
        .await;
    let refused = match version {
        V5 => ReasonCode::TopicFilterInvalid,
        _ => ReasonCode::UnspecifiedError,
    };
    assert_eq!(
        codes,
        [
            ReasonCode::GrantedQos1,
            refused,
            refused,
            ReasonCode::GrantedQos1,
            ReasonCode::Success,
            refused,
        ],
        "SUBACK"
    );
    settle().await;

    // Four levels: delivered to the watcher on the other shard.
    let mut client = clean(&b, version, "lv-client", 0).await;
    publish_qos1(&mut client, "a/b/c/d", 1, b"1").await;
    assert_eq!(numbers(&recv_n(&mut watcher, 1).await), [1]);
    assert_eq!(numbers(&recv_n(&mut subscriber, 2).await), [1, 1]);

    // Five levels (the last one empty): refused, and the publisher closed.
    client
        .publish(publish("a/b/c/d/", QoS::AtLeastOnce, 2, b"2"))
        .await;
    let before_close = client.expect_closed().await;
    match version {
        V5 => assert!(
            matches!(
                before_close.as_slice(),
                [Packet::Disconnect(d)] if d.reason_code == ReasonCode::TopicNameInvalid
            ),
            "MQTT 5: DISCONNECT 0x90 alone, got {before_close:?}"
        ),
        _ => assert!(
            before_close.is_empty(),
            "MQTT 3: closed without an answer, got {before_close:?}"
        ),
    }
    // QoS 0 too, from a publisher on the watcher's shard.
    let mut near = clean(&b, version, "lv-near", 1).await;
    near.publish(publish("x/y/z/w/v", QoS::AtMostOnce, 0, b"3"))
        .await;
    near.expect_closed().await;
    watcher.assert_silent().await;
    subscriber.assert_silent().await;
}

#[tokio::test]
async fn max_topic_levels_v311() {
    topic_levels_enforced(V3).await;
}

#[tokio::test]
async fn max_topic_levels_v5() {
    topic_levels_enforced(V5).await;
}

// ---------------------------------------------------------------------------
// queue-overflow = "drop-oldest"
// ---------------------------------------------------------------------------

/// An offline persistent session with `max-offline-messages = 5` and
/// `queue-overflow = "drop-oldest"` keeps the 5 newest of 12 messages and
/// delivers them in publish order on reconnect; the 7 dropped are counted as
/// queue_full on the session's shard.
async fn drop_oldest(version: Version) {
    let b = Broker::start(
        &format!("oldest-{}", version as u8),
        "max-offline-messages = 5\nqueue-overflow = \"drop-oldest\"",
    );
    let id = id_on_shard("do-sub", 1);
    let (mut sub, _) = persistent(b.addr, version, &id).await;
    sub.sub("do/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    settle().await;
    let mut publ = clean(&b, version, "do-pub", 0).await;
    for i in 0..12u16 {
        publish_qos1(&mut publ, "do/t", i + 1, i.to_string().as_bytes()).await;
    }
    settle().await;
    let (mut sub, present) = persistent(b.addr, version, &id).await;
    assert!(present);
    assert_eq!(
        numbers(&collect(&mut sub, true).await),
        [7, 8, 9, 10, 11],
        "the five newest, in order"
    );
    expect_drops(&b, &[("1", "queue_full", 7)]);
}

#[tokio::test]
async fn drop_oldest_keeps_the_newest_in_order_v311() {
    drop_oldest(V3).await;
}

#[tokio::test]
async fn drop_oldest_keeps_the_newest_in_order_v5() {
    drop_oldest(V5).await;
}

// ---------------------------------------------------------------------------
// shardmq_messages_dropped_total
// ---------------------------------------------------------------------------

/// Waits until `/metrics` shows `expected` drops in total, then checks that
/// every `shardmq_messages_dropped_total` sample is exactly as `expected`
/// says (`(shard, reason, value)`), and 0 where it says nothing, and stays so.
fn expect_drops(b: &Broker, expected: &[(&str, &str, u64)]) {
    let want: u64 = expected.iter().map(|e| e.2).sum();
    let deadline = Instant::now() + WAIT;
    // The metrics are sampled every 250 ms.
    while b.dropped().iter().map(|s| s.2).sum::<u64>() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(600));
    let samples = b.dropped();
    assert_eq!(samples.len(), 2 * 5, "one sample per shard and reason");
    for (shard, reason, value) in &samples {
        let expected = expected
            .iter()
            .find(|e| e.0 == shard && e.1 == reason)
            .map_or(0, |e| e.2);
        assert_eq!(
            *value, expected,
            "shardmq_messages_dropped_total{{shard={shard},reason={reason}}}; all: {samples:?}"
        );
    }
}

/// A known number of drops of two kinds on two shards: 5 QoS 1 messages past
/// a full offline queue (drop-newest, the default) on shard 1, and 4 QoS 0
/// messages to an offline session on shard 0, which keeps no QoS 0. The
/// endpoint shows exactly those, by shard and reason, and 0 elsewhere.
#[tokio::test]
async fn dropped_total_counts_each_drop_by_shard_and_reason() {
    let b = Broker::start("dropped-total", "max-offline-messages = 3");
    let full_id = id_on_shard("dt-full", 1);
    let (mut full, _) = persistent(b.addr, V3, &full_id).await;
    full.sub("dt/q", QoS::AtLeastOnce).await;
    full.disconnect().await;
    let (mut zero, _) = persistent(b.addr, V5, &id_on_shard("dt-zero", 0)).await;
    zero.sub("dt/z", QoS::AtLeastOnce).await;
    zero.disconnect().await;
    settle().await;
    expect_drops(&b, &[]);

    let mut publ = clean(&b, V5, "dt-pub", 0).await;
    for i in 0..8u16 {
        publish_qos1(&mut publ, "dt/q", i + 1, i.to_string().as_bytes()).await;
    }
    for i in 0..4u16 {
        publ.publish(publish(
            "dt/z",
            QoS::AtMostOnce,
            0,
            i.to_string().as_bytes(),
        ))
        .await;
    }
    expect_drops(&b, &[("1", "queue_full", 5), ("0", "offline", 4)]);

    // What was kept is delivered, and delivering drops nothing more.
    let (mut full, _) = persistent(b.addr, V3, &full_id).await;
    assert_eq!(numbers(&collect(&mut full, true).await), [0, 1, 2]);
    expect_drops(&b, &[("1", "queue_full", 5), ("0", "offline", 4)]);
}

// ---------------------------------------------------------------------------
// Shared subscriptions
// ---------------------------------------------------------------------------

const SHARE: &str = "$share/g/sh/t";

/// Publishes `range` as QoS 1 payloads to `sh/t`.
async fn publish_range(publ: &mut Raw, range: std::ops::Range<u16>) {
    for i in range {
        publish_qos1(publ, "sh/t", i + 1, i.to_string().as_bytes()).await;
    }
}

/// MQTT 5 section 4.8.2: "If the Client's Session terminates before the
/// Client reconnects, the Server SHOULD send the Application Message to
/// another Client that is subscribed to the same Shared Subscription." A
/// member with a session that ends with its connection (clean start, no
/// session expiry) is sent QoS 1 messages, acknowledges none, and its
/// connection drops: the other member, on the other shard, gets them.
#[tokio::test]
async fn shared_member_leaving_hands_its_unacked_messages_to_another_member() {
    let b = Broker::start("share-leave", "");
    let mut leaving = clean(&b, V5, "sl-leaving", 0).await;
    leaving.sub(SHARE, QoS::AtLeastOnce).await;
    let mut staying = clean(&b, V5, "sl-staying", 1).await;
    staying.sub(SHARE, QoS::AtLeastOnce).await;
    settle().await;
    let mut publ = clean(&b, V5, "sl-pub", 0).await;
    publish_range(&mut publ, 0..6).await;

    let unacked = numbers(&collect(&mut leaving, false).await);
    let mut got = numbers(&collect(&mut staying, true).await);
    assert!(
        !unacked.is_empty(),
        "round-robin gave the leaving member nothing"
    );
    assert_eq!(unacked.len() + got.len(), 6, "{unacked:?} and {got:?}");
    drop(leaving);

    let handed = numbers(&recv_n(&mut staying, unacked.len()).await);
    assert_eq!(
        handed, unacked,
        "unacknowledged messages handed over, in order"
    );
    got.extend(handed);
    got.sort_unstable();
    assert_eq!(
        got,
        (0..6).collect::<Vec<_>>(),
        "every message reached the group"
    );
    staying.assert_silent().await;
}

/// MQTT 5 section 4.8.2: the Server MAY wait for a member whose connection
/// broke to reconnect and retransmit to it. A persistent member that leaves
/// with unacknowledged QoS 1 messages gets them again, with DUP, in order,
/// when it comes back, and the other member never gets them (one delivery per
/// message to the group); meanwhile new messages go to the member online.
#[tokio::test]
async fn shared_persistent_member_gets_its_unacked_messages_on_reconnect() {
    let b = Broker::start("share-resume", "");
    let id = id_on_shard("sr-away", 0);
    let (mut away, _) = persistent(b.addr, V5, &id).await;
    away.sub(SHARE, QoS::AtLeastOnce).await;
    let mut online = clean(&b, V5, "sr-online", 1).await;
    online.sub(SHARE, QoS::AtLeastOnce).await;
    settle().await;
    let mut publ = clean(&b, V5, "sr-pub", 0).await;
    publish_range(&mut publ, 0..6).await;

    let unacked = collect(&mut away, false).await;
    let mut got = numbers(&collect(&mut online, true).await);
    assert!(!unacked.is_empty(), "round-robin gave the member nothing");
    assert_eq!(unacked.len() + got.len(), 6);
    drop(away);
    settle().await;

    // Offline now: the member online gets everything new.
    publish_range(&mut publ, 6..10).await;
    assert_eq!(
        numbers(&recv_n(&mut online, 4).await),
        [6, 7, 8, 9],
        "all to the member online while the other is away"
    );

    let (mut away, present) = persistent(b.addr, V5, &id).await;
    assert!(present);
    let again = collect(&mut away, true).await;
    assert_eq!(numbers(&again), numbers(&unacked), "resent in order");
    for (first, resent) in unacked.iter().zip(&again) {
        assert!(resent.dup, "resent with DUP: {resent:?}");
        assert_eq!(resent.packet_id, first.packet_id, "same packet id");
    }
    got.extend(collect(&mut online, true).await.iter().map(number));
    assert_eq!(
        got.len() + again.len(),
        6,
        "no message of the first six went to both members: {got:?}"
    );
}

/// A share group whose members are all offline (persistent sessions, on two
/// shards) queues each message for exactly one of them, delivered in order
/// on reconnect. While any member is online, an offline member is skipped
/// and has nothing waiting when it comes back.
///
/// MQTT 5 section 4.8.2 leaves the choice of member to the Server. What
/// others do:
/// - Mosquitto (`subs__shared_process` in src/subs.c) takes the members of a
///   group in strict rotation, online or not, and queues a QoS 1/2 message
///   for an offline persistent member even while another member is online;
///   when that session ends, what it queued is lost (mosquitto issue 2662,
///   still open).
/// - EMQX dispatches to online members first and queues for an offline
///   member only when none is online (emqx PR 2144: "ensured to have one
///   session picked ... when no subscriber is online. The messages
///   dispatched in such scenario are then queued in session state"); since
///   PRs 9094/9104 it re-dispatches a terminated session's in-flight and
///   queued shared messages to other members.
///
/// shardmq does as EMQX does: a message waits for an offline member only
/// when the whole group is offline, so that it is not held back while a
/// member could take it; and an ending session hands its share over
/// ([`an_expiring_offline_member_hands_its_queue_to_a_member_online`]).
#[tokio::test]
async fn shared_messages_queue_for_offline_persistent_members() {
    let b = Broker::start("share-offline", "");
    let ids = [id_on_shard("so-m", 0), id_on_shard("so-n", 1)];
    for id in &ids {
        let (mut m, _) = persistent(b.addr, V5, id).await;
        m.sub(SHARE, QoS::AtLeastOnce).await;
        m.disconnect().await;
    }
    settle().await;
    let mut publ = clean(&b, V5, "so-pub", 0).await;
    publish_range(&mut publ, 0..8).await;
    settle().await;

    let mut all = Vec::new();
    let mut members = Vec::new();
    for id in &ids {
        let (mut m, present) = persistent(b.addr, V5, id).await;
        assert!(present);
        let got = numbers(&collect(&mut m, true).await);
        assert!(!got.is_empty(), "{id} got no share: {got:?}");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
        all.extend(got);
        members.push(m);
    }
    all.sort_unstable();
    assert_eq!(all, (0..8).collect::<Vec<_>>(), "each message once");

    // The member on shard 1 goes offline; the one on shard 0 gets everything,
    // and nothing waits for the one offline.
    let offline = members.pop().unwrap();
    offline.disconnect().await;
    settle().await;
    publish_range(&mut publ, 8..12).await;
    let mut near = clean(&b, V5, "so-near", 1).await;
    for i in 12..14u16 {
        publish_qos1(&mut near, "sh/t", i, i.to_string().as_bytes()).await;
    }
    let mut got = numbers(&recv_n(&mut members[0], 6).await);
    got.sort_unstable();
    assert_eq!(
        got,
        [8, 9, 10, 11, 12, 13],
        "all to the member online, from either shard"
    );
    let (mut back, present) = persistent(b.addr, V5, &ids[1]).await;
    assert!(present);
    back.assert_silent().await;
}

/// The queue of an offline persistent member is handed over when its
/// session expires (MQTT 5 section 4.8.2; the case of emqx issue 12257). A
/// member with a 3 s session expiry goes offline while it is the group's
/// only member, so the four messages published then queue for it. A second
/// member joins on the other shard after the publishes, so it can get them
/// only from the hand-over: when the session expires, all four arrive, in
/// order.
#[tokio::test]
async fn an_expiring_offline_member_hands_its_queue_to_a_member_online() {
    let b = Broker::start("share-expire", "");
    let mut c = common::connect(V5, &id_on_shard("se-away", 0), false, 60);
    c.properties.session_expiry_interval = Some(3);
    let (mut away, ack) = Raw::connect_with(b.addr, c).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    away.sub(SHARE, QoS::AtLeastOnce).await;
    away.disconnect().await;
    let gone = Instant::now();
    settle().await;
    let mut publ = clean(&b, V5, "se-pub", 0).await;
    publish_range(&mut publ, 0..4).await;

    let mut online = clean(&b, V5, "se-online", 1).await;
    online.sub(SHARE, QoS::AtLeastOnce).await;
    let got = recv_n(&mut online, 4).await;
    assert_eq!(
        numbers(&got),
        [0, 1, 2, 3],
        "the queue, handed over in order"
    );
    assert!(got.iter().all(|p| !p.dup), "new to this member: {got:?}");
    let after = gone.elapsed();
    assert!(
        after >= Duration::from_secs(2),
        "handed over when the session expired, not before: {after:?}"
    );
    online.assert_silent().await;
}

// ---------------------------------------------------------------------------
// retry-interval
// ---------------------------------------------------------------------------

/// `retry-interval = "1s"`: an MQTT 3.1.1 subscriber that does not
/// acknowledge a QoS 1 message gets it again with DUP and the same packet id,
/// about every interval, until it sends PUBACK; then resending stops, and a
/// message acknowledged at once is never resent. An MQTT 5 subscriber is
/// never resent to on a live connection [MQTT-4.4.0-1].
#[tokio::test]
async fn retry_interval_resends_until_puback() {
    let b = Broker::start("retry", "retry-interval = \"1s\"");
    let mut v3 = clean(&b, V3, "rt-v3", 1).await;
    v3.sub("rt/t", QoS::AtLeastOnce).await;
    let mut v5 = clean(&b, V5, "rt-v5", 1).await;
    v5.sub("rt/t", QoS::AtLeastOnce).await;
    let mut publ = clean(&b, V3, "rt-pub", 0).await;
    publish_qos1(&mut publ, "rt/t", 1, b"1").await;

    let first = v3.recv_publish().await;
    assert!(!first.dup);
    let start = Instant::now();
    for n in 1..=2 {
        let again = v3.recv_publish().await;
        assert_eq!(
            (again.dup, again.packet_id, number(&again)),
            (true, first.packet_id, 1),
            "resend {n}"
        );
    }
    // Two resends, each an interval (checked once a second) after the last.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "two resends in {took:?}"
    );
    v3.puback(first.packet_id.unwrap()).await;

    publish_qos1(&mut publ, "rt/t", 2, b"2").await;
    let second = v3.recv_publish().await;
    assert_eq!((second.dup, number(&second)), (false, 2));
    v3.puback(second.packet_id.unwrap()).await;
    match v3.recv_within(Duration::from_millis(2500)).await {
        Recv::Timeout => {}
        other => panic!("resent after PUBACK: {other:?}"),
    }

    // The MQTT 5 subscriber got each message once, unacknowledged.
    let got = collect(&mut v5, false).await;
    assert_eq!(numbers(&got), [1, 2], "MQTT 5: each message once");
    assert!(got.iter().all(|p| !p.dup), "{got:?}");
    match v5.recv_within(Duration::from_millis(2500)).await {
        Recv::Timeout => {}
        other => panic!("MQTT 5 resent on a live connection: {other:?}"),
    }
}
