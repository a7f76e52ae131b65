//! End to end, issue 13: with `[store] kind = "redis"`, persistent sessions,
//! their subscriptions and wills, and retained messages live in Redis, so a
//! node killed with `kill -9` and started again forgets nothing; a session
//! claimed twice fences its first owner; an expired or clean session leaves
//! no key; and a Redis outage costs only what needs Redis.
//!
//! Everything goes through the built binary ([`BrokerProcess`]), real
//! clients (rumqttc, the raw client, mosquitto_pub/mosquitto_sub) and a real
//! `redis-server` ([`RedisServer`]) of each test's own, under a key prefix of
//! its own: the tests run in parallel and share nothing.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::broker_process::BrokerProcess;
use common::redis::RedisServer;
use common::*;
use shardmq::protocol::{Packet, QoS, ReasonCode, Version};

/// Persistent sessions in the restart tests, as issue 13's "Done when" asks
/// (about 20 s on the 2-core machine).
const SESSIONS: usize = 1_000;

/// The `[store]` and `[cluster]` sections for `redis`: commands time out
/// after 500 ms so an outage shows within the tests' waits.
fn store_config(redis: &RedisServer, prefix: &str, durability: &str, node: &str) -> String {
    format!(
        "[store]\nkind = \"redis\"\nredis = \"{}\"\nkey-prefix = \"{prefix}\"\n\
         durability = \"{durability}\"\ntimeout = \"500ms\"\n\n\
         [cluster]\nnode-id = \"{node}\"\n",
        redis.url()
    )
}

/// Waits up to `within` until at least `n` keys match `pattern`, and returns
/// what matches then. Used before a `kill -9` to let the store's pipelined
/// writes land; it does not assert, so that a test fails later, at the step
/// that shows what was lost.
fn await_keys(redis: &RedisServer, pattern: &str, n: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let keys = redis.keys(pattern);
        if keys.len() >= n || Instant::now() >= deadline {
            eprintln!("{} keys match {pattern} (waited for {n})", keys.len());
            return keys;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The session HASH's `owner` field (`node#boot`), "" when absent.
fn owner(redis: &RedisServer, prefix: &str, id: &str) -> String {
    redis.cli(&["HGET", &format!("{prefix}s:{{{id}}}"), "owner"])
}

/// Polls `check` every 50 ms for up to `within`; true once it holds.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// A population of persistent subscribers
// ---------------------------------------------------------------------------

/// One persistent subscriber of the restart tests.
#[derive(Debug, Clone)]
struct Member {
    id: String,
    /// MQTT 5 with session expiry 3600 s; else MQTT 3.1.1, clean session 0.
    v5: bool,
    filter: String,
    /// A topic its filter matches, and only its filter (or its group's).
    topic: String,
    /// 1 or 2.
    qos: u8,
    /// The share group's number, for `$share/g/shared/<n>`.
    group: Option<usize>,
}

/// `n` members covering every mix: shard `i % 2`, version `(i / 2) % 2`,
/// filter kind `(i / 4) % 4` (literal, `+`, `#`, `$share`), QoS 2 for every
/// third. Each block of 16 has one share group of 4 members, both shards and
/// both versions in it.
fn population(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| {
            let (filter, topic, group) = match (i / 4) % 4 {
                0 => (format!("lit/{i}"), format!("lit/{i}"), None),
                1 => (format!("plus/+/{i}"), format!("plus/x/{i}"), None),
                2 => (format!("hash/{i}/#"), format!("hash/{i}/a/b"), None),
                _ => {
                    let g = i / 16;
                    (
                        format!("$share/g/shared/{g}"),
                        format!("shared/{g}"),
                        Some(g),
                    )
                }
            };
            Member {
                id: id_on_shard(&format!("m{i}"), i % 2),
                v5: (i / 2) % 2 == 1,
                filter,
                topic,
                qos: if i % 3 == 0 { 2 } else { 1 },
                group,
            }
        })
        .collect()
}

/// The topics to publish to so that every subscription gets one message:
/// each member's own, each group's once.
fn topics(members: &[Member]) -> Vec<String> {
    let mut topics: Vec<String> = members.iter().map(|m| m.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    topics
}

/// A PUBLISH as received, whichever the client's version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    topic: String,
    payload: String,
    qos: u8,
    dup: bool,
}

/// A member's connection: rumqttc, MQTT 3.1.1 or 5.
#[allow(clippy::large_enum_variant)] // a test helper: size does not matter
enum Client {
    V3(V3),
    V5(V5),
}

impl Client {
    /// Connects `m` with clean session 0 (MQTT 5: clean start 0, expiry
    /// 3600 s); returns the client and the CONNACK's session present.
    async fn connect(addr: std::net::SocketAddr, m: &Member) -> (Client, bool) {
        if m.v5 {
            let mut o = v5_options(addr, &m.id);
            o.set_clean_start(false);
            let mut p = mqtt5::ConnectProperties::new();
            p.session_expiry_interval = Some(3600);
            o.set_connect_properties(p);
            let c = V5::connect(o).await;
            let present = c.connack.session_present;
            (Client::V5(c), present)
        } else {
            let mut o = v3_options(addr, &m.id);
            o.set_clean_session(false);
            let c = V3::connect(o).await;
            let present = c.connack.as_ref().is_some_and(|a| a.session_present);
            (Client::V3(c), present)
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: u8) {
        match self {
            Client::V3(c) => c.subscribe(filter, qos3(qos)).await,
            Client::V5(c) => c.subscribe(filter, qos5(qos)).await,
        }
    }

    /// Every PUBLISH until none comes for [`QUIET`].
    async fn until_quiet(&mut self) -> Vec<Got> {
        let mut all = Vec::new();
        loop {
            let got: Vec<Got> = match self {
                Client::V3(c) => c
                    .drain()
                    .await
                    .into_iter()
                    .map(|p| Got {
                        topic: p.topic,
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        qos: p.qos as u8,
                        dup: p.dup,
                    })
                    .collect(),
                Client::V5(c) => c
                    .drain()
                    .await
                    .into_iter()
                    .map(|p| Got {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        qos: p.qos as u8,
                        dup: p.dup,
                    })
                    .collect(),
            };
            if got.is_empty() {
                return all;
            }
            all.extend(got);
        }
    }

    async fn disconnect(self) {
        match self {
            Client::V3(c) => c.disconnect().await,
            Client::V5(c) => c.disconnect().await,
        }
    }
}

fn qos3(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(qos: u8) -> QoS5 {
    match qos {
        0 => QoS5::AtMostOnce,
        1 => QoS5::AtLeastOnce,
        _ => QoS5::ExactlyOnce,
    }
}

/// Connects every member for the first time, subscribes it, disconnects it.
async fn subscribe_all(addr: std::net::SocketAddr, members: &[Member]) {
    for m in members {
        let (mut c, present) = Client::connect(addr, m).await;
        assert!(!present, "{}: a session on a fresh Redis", m.id);
        c.subscribe(&m.filter, m.qos).await;
        c.disconnect().await;
    }
}

/// Reconnects every member (clean 0) and asserts each gets session present.
async fn reconnect_all(addr: std::net::SocketAddr, members: &[Member]) -> Vec<Client> {
    let mut clients = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let (c, present) = Client::connect(addr, m).await;
        assert!(
            present,
            "member {i} of {} ({}, MQTT {}, {}) reconnected after the restart with \
             session present = 0",
            members.len(),
            m.id,
            if m.v5 { "5" } else { "3.1.1" },
            m.filter
        );
        clients.push(c);
    }
    clients
}

/// What each client receives until it goes quiet, read concurrently so the
/// quiet periods overlap.
async fn collect_all(clients: Vec<Client>) -> Vec<(Client, Vec<Got>)> {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let got = c.until_quiet().await;
                (c, got)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("a collecting task panicked"));
    }
    out
}

/// Publishes each of `messages` (topic, QoS, payload) from a clean MQTT 5
/// client and waits until every one is acknowledged (PUBACK or PUBCOMP).
async fn publish_acked(addr: std::net::SocketAddr, id: &str, messages: &[(String, u8, String)]) {
    let mut p = V5::connect(v5_options(addr, id)).await;
    for (topic, qos, payload) in messages {
        p.publish(topic, qos5(*qos), false, payload.as_bytes())
            .await;
    }
    let want = messages.iter().filter(|(_, q, _)| *q > 0).count();
    for done in 0..want {
        p.next_incoming(|p| match p {
            mqtt5::Packet::PubAck(_) | mqtt5::Packet::PubComp(_) => Some(()),
            _ => None,
        })
        .await
        .unwrap_or_else(|e| panic!("{id}: {done} of {want} acknowledged, then {e}"));
    }
    p.disconnect().await;
}

/// One QoS 2 publish to every topic, then each subscription (each share
/// group once) must receive exactly it, at the QoS it subscribed with.
async fn new_publish_reaches_every_subscription(
    addr: std::net::SocketAddr,
    members: &[Member],
    clients: Vec<Client>,
    tag: &str,
) -> Vec<Client> {
    settle().await;
    let messages: Vec<(String, u8, String)> = topics(members)
        .into_iter()
        .map(|t| (t.clone(), 2, format!("{tag} {t}")))
        .collect();
    publish_acked(addr, &format!("pub-{tag}"), &messages).await;
    let received = collect_all(clients).await;
    let mut per_group: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (m, (_, got)) in members.iter().zip(&received) {
        let want = Got {
            topic: m.topic.clone(),
            payload: format!("{tag} {}", m.topic),
            qos: m.qos,
            dup: false,
        };
        match m.group {
            None => assert_eq!(got, &[want], "{} ({}) after the restart", m.id, m.filter),
            Some(g) => {
                assert!(got.iter().all(|x| x == &want), "{}: {got:?}", m.id);
                let ids = per_group.entry(g).or_default();
                ids.extend(got.iter().map(|_| m.id.clone()));
            }
        }
    }
    for (g, ids) in per_group {
        assert_eq!(
            ids.len(),
            1,
            "share group {g}: one member must get shared/{g}, got by {ids:?}"
        );
    }
    received.into_iter().map(|(c, _)| c).collect()
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// Restart with state (issue 13, "Done when"): persistent sessions and their
/// subscriptions survive a `kill -9`, and the restarted node answers its
/// first CONNECT within 1 s.
#[tokio::test]
async fn restart_with_state_keeps_sessions_and_subscriptions() {
    let prefix = "t-restart-state:";
    let redis = RedisServer::start();
    let mut broker = BrokerProcess::start(
        "restart-state",
        &store_config(&redis, prefix, "sessions", "n1"),
    );
    let addr = broker.addr;
    let members = population(SESSIONS);
    subscribe_all(addr, &members).await;
    // A raw MQTT 3.1.1 client times the first CONNACK after the restart.
    let probe = id_on_shard("probe", 1);
    let mut raw = Raw::connect(addr, Version::V3_1_1, &probe, false).await;
    raw.sub("probe/t", shardmq::protocol::QoS::AtLeastOnce)
        .await;
    raw.disconnect().await;
    // Each session's subscriptions HASH, the probe's included.
    await_keys(
        &redis,
        &format!("{prefix}s:*:subs"),
        SESSIONS + 1,
        Duration::from_secs(3),
    );

    broker.kill();
    broker.restart();
    let (raw, ack) = Raw::connect_with(addr, connect(Version::V3_1_1, &probe, false, 60)).await;
    let first_connack = broker.since_exec();
    eprintln!("exec to first CONNACK: {first_connack:?} ({SESSIONS} sessions in Redis)");
    assert_eq!(ack.reason_code, ReasonCode::Success, "probe CONNACK");
    assert!(
        first_connack < Duration::from_secs(1),
        "first CONNACK {first_connack:?} after exec"
    );
    assert!(
        ack.session_present,
        "the probe's session did not survive the restart (session present = 0)"
    );
    drop(raw);

    let clients = reconnect_all(addr, &members).await;
    let clients = new_publish_reaches_every_subscription(addr, &members, clients, "after").await;
    for c in clients {
        c.disconnect().await;
    }
}

/// Restart with `durability = "messages"`: QoS 1/2 messages queued for
/// offline sessions survive a `kill -9` and arrive in order per publisher.
#[tokio::test]
async fn restart_delivers_queued_messages_with_durability_messages() {
    /// Messages each publisher sends to each topic.
    const PER_TOPIC: usize = 4;
    let prefix = "t-restart-messages:";
    let redis = RedisServer::start();
    let mut broker = BrokerProcess::start(
        "restart-messages",
        &store_config(&redis, prefix, "messages", "n1"),
    );
    let addr = broker.addr;
    let members = population(SESSIONS);
    subscribe_all(addr, &members).await;

    // Two publishers, one per shard, number their messages; QoS 1 and 2
    // alternate. Acknowledged means stored.
    let publishers = [id_on_shard("pub-a", 0), id_on_shard("pub-b", 1)];
    for (k, publisher) in publishers.iter().enumerate() {
        let messages: Vec<(String, u8, String)> = (0..PER_TOPIC)
            .flat_map(|n| {
                topics(&members)
                    .into_iter()
                    .map(move |t| (t, 1 + (n % 2) as u8, format!("{k}:{n}")))
            })
            .collect();
        publish_acked(addr, publisher, &messages).await;
    }

    broker.kill();
    broker.restart();
    let clients = reconnect_all(addr, &members).await;
    let received = collect_all(clients).await;

    // Per member, per publisher: the numbers in order, each once (a resend
    // with DUP right after its first copy is allowed).
    let mut per_group: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (m, (_, got)) in members.iter().zip(&received) {
        for k in 0..publishers.len() {
            let mut numbers: Vec<usize> = got
                .iter()
                .filter(|g| g.topic == m.topic)
                .filter_map(|g| g.payload.strip_prefix(&format!("{k}:")))
                .map(|n| n.parse().expect("a number"))
                .collect();
            numbers.dedup();
            assert!(
                numbers.windows(2).all(|w| w[0] < w[1]),
                "{} from publisher {k}: out of order {numbers:?}",
                m.id
            );
            match m.group {
                None => assert_eq!(
                    numbers,
                    (0..PER_TOPIC).collect::<Vec<_>>(),
                    "{} ({}) from publisher {k}",
                    m.id,
                    m.filter
                ),
                Some(g) => per_group.entry((g, k)).or_default().extend(numbers),
            }
        }
        for g in got {
            let sent = 1 + g.payload.rsplit(':').next().unwrap().parse::<u8>().unwrap() % 2;
            assert_eq!(g.qos, sent.min(m.qos), "{}: QoS of {g:?}", m.id);
        }
    }
    for ((g, k), mut numbers) in per_group {
        numbers.sort();
        assert_eq!(
            numbers,
            (0..PER_TOPIC).collect::<Vec<_>>(),
            "share group {g} from publisher {k}: each message to one member"
        );
    }
    let clients = received.into_iter().map(|(c, _)| c).collect();
    let clients = new_publish_reaches_every_subscription(addr, &members, clients, "after").await;
    for c in clients {
        c.disconnect().await;
    }
}

/// With `durability = "messages"`, messages sent to a subscriber and not
/// acknowledged when the node dies come back after the restart, in order,
/// with DUP set and under the packet ids they were sent with; acknowledged
/// ones are trimmed and never come back.
#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_after_a_kill() {
    let prefix = "t-inflight:";
    let mut redis = RedisServer::start();
    let mut broker =
        BrokerProcess::start("inflight", &store_config(&redis, prefix, "messages", "n1"));
    let addr = broker.addr;
    let sub_id = id_on_shard("unacked", 1);
    let mut sub = Raw::connect(addr, Version::V3_1_1, &sub_id, false).await;
    sub.sub("d/t", QoS::AtLeastOnce).await;
    let mut publisher = Raw::connect(addr, Version::V3_1_1, &id_on_shard("pub", 0), true).await;
    for n in 1..=5u16 {
        publisher
            .publish(publish(
                "d/t",
                QoS::AtLeastOnce,
                n,
                format!("m{n}").as_bytes(),
            ))
            .await;
    }
    for n in 1..=5u16 {
        match publisher.recv().await {
            Packet::PubAck(a) => assert_eq!(a.packet_id, pid(n), "PUBACKs in order"),
            other => panic!("expected PUBACK {n}, got {other:?}"),
        }
    }
    // The first two are acknowledged; three stay in flight.
    let mut first = Vec::new();
    for n in 1..=5 {
        let p = sub.recv_publish().await;
        assert!(!p.dup, "first delivery {n} has DUP set");
        first.push((p.packet_id.expect("QoS 1"), p.payload.clone()));
    }
    for (id, _) in &first[..2] {
        sub.puback(*id).await;
    }
    // The trims of the two acknowledged ones land before the kill.
    let queue = format!("{prefix}s:{{{sub_id}}}:q");
    let trimmed = eventually(Duration::from_secs(3), || {
        redis.cli(&["HLEN", &queue]).trim() == "6"
    });
    assert!(
        trimmed,
        "{queue} holds {} fields, want 3 deliveries with their packet ids",
        redis.cli(&["HLEN", &queue])
    );

    broker.kill();
    drop(sub);
    broker.restart();
    let (mut sub, ack) =
        Raw::connect_with(addr, connect(Version::V3_1_1, &sub_id, false, 60)).await;
    assert!(ack.session_present, "session present after the restart");
    for (id, payload) in &first[2..] {
        let p = sub.recv_publish().await;
        assert!(p.dup, "{payload:?} resent without DUP");
        assert_eq!(
            (p.packet_id, &p.payload),
            (Some(*id), payload),
            "resent under its first packet id, in order"
        );
        sub.puback(*id).await;
    }
    sub.assert_silent().await;
    let emptied = eventually(Duration::from_secs(3), || {
        redis.cli(&["EXISTS", &queue]).trim() == "0"
    });
    assert!(
        emptied,
        "{queue} still holds {}",
        redis.cli(&["HGETALL", &queue])
    );

    // Redis down: a message for the stored session cannot be stored, so its
    // publisher gets no PUBACK and is disconnected, while one for a clean
    // session is acknowledged as ever.
    let mut clean = Raw::connect(addr, Version::V5, &id_on_shard("clean", 1), true).await;
    clean.sub("c/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    redis.kill();
    let mut publisher = Raw::connect(addr, Version::V5, &id_on_shard("pub5", 0), true).await;
    publisher
        .publish(publish("c/t", QoS::AtLeastOnce, 1, b"to a clean session"))
        .await;
    match publisher.recv().await {
        Packet::PubAck(a) => assert_eq!(a.packet_id, pid(1)),
        other => panic!("expected the PUBACK of a message nobody stores, got {other:?}"),
    }
    publisher
        .publish(publish("d/t", QoS::AtLeastOnce, 2, b"unstorable"))
        .await;
    let rest = publisher.expect_closed().await;
    assert!(
        !rest.iter().any(|p| matches!(p, Packet::PubAck(_))),
        "a PUBACK for a message Redis could not store: {rest:?}"
    );
    assert!(
        rest.iter().any(
            |p| matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::UnspecifiedError)
        ),
        "want DISCONNECT 0x80, got {rest:?}"
    );
    // Metrics are copied from the shards once a second.
    let counted = eventually(Duration::from_secs(3), || {
        broker.metric_sum("shardmq_publishes_unstored_total") >= 1.0
    });
    assert!(counted, "shardmq_publishes_unstored_total did not count it");
}

/// With `durability = "messages"`, QoS 2 across a `kill -9`: a message whose
/// PUBREC the broker had gets its PUBREL again (not the PUBLISH), one the
/// client had not answered comes back with DUP, both under their packet ids.
#[tokio::test]
async fn qos2_flows_resume_where_they_were_after_a_kill() {
    let prefix = "t-qos2:";
    let redis = RedisServer::start();
    let mut broker = BrokerProcess::start("qos2", &store_config(&redis, prefix, "messages", "n1"));
    let addr = broker.addr;
    let sub_id = id_on_shard("q2-sub", 0);
    // An MQTT 5 session that outlives its connection.
    let mut c = connect(Version::V5, &sub_id, false, 60);
    c.properties.session_expiry_interval = Some(600);
    let (mut sub, _) = Raw::connect_with(addr, c.clone()).await;
    sub.sub("q2/t", QoS::ExactlyOnce).await;
    let mut publisher = Raw::connect(addr, Version::V5, &id_on_shard("q2-pub", 1), true).await;
    for n in 1..=2u16 {
        publisher
            .publish(publish(
                "q2/t",
                QoS::ExactlyOnce,
                n,
                format!("m{n}").as_bytes(),
            ))
            .await;
        assert!(
            matches!(publisher.recv().await, Packet::PubRec(_)),
            "PUBREC {n}"
        );
    }
    let first = sub.recv_publish().await;
    let second = sub.recv_publish().await;
    let (first_id, second_id) = (first.packet_id.unwrap(), second.packet_id.unwrap());
    // The first is received (PUBREC, PUBREL back), never completed; the
    // second is not even answered.
    sub.send(Packet::PubRec(shardmq::protocol::Ack::new(first_id)))
        .await;
    assert_eq!(
        sub.recv().await,
        Packet::PubRel(shardmq::protocol::Ack::new(first_id))
    );
    let queue = format!("{prefix}s:{{{sub_id}}}:q");
    let marked = eventually(Duration::from_secs(3), || {
        redis.cli(&["HEXISTS", &queue, "r1"]).trim() == "1"
    });
    assert!(marked, "{queue}: {}", redis.cli(&["HGETALL", &queue]));

    broker.kill();
    drop(sub);
    broker.restart();
    let (mut sub, ack) = Raw::connect_with(addr, c).await;
    assert!(ack.session_present, "session present after the restart");
    assert_eq!(
        sub.recv().await,
        Packet::PubRel(shardmq::protocol::Ack::new(first_id)),
        "the received one: its PUBREL again"
    );
    let again = sub.recv_publish().await;
    assert!(again.dup, "the unanswered one comes back with DUP");
    assert_eq!(
        (again.packet_id, &again.payload[..]),
        (Some(second_id), &b"m2"[..])
    );
    sub.assert_silent().await;
}

/// Expiry: an MQTT 5 session with a 2 s expiry leaves no key at all under
/// the prefix once it has expired (checked with SCAN).
#[tokio::test]
async fn expired_session_leaves_no_key() {
    let prefix = "t-expiry:";
    let redis = RedisServer::start();
    let broker = BrokerProcess::start("expiry", &store_config(&redis, prefix, "sessions", "n1"));
    let id = id_on_shard("expiring", 1);
    let mut c = connect(Version::V5, &id, true, 60);
    c.properties.session_expiry_interval = Some(2);
    let (mut raw, ack) = Raw::connect_with(broker.addr, c).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    raw.sub("e/t", shardmq::protocol::QoS::AtLeastOnce).await;
    raw.disconnect().await;
    let offline = Instant::now();

    // Offline and not yet expired: the session is in Redis. (Checks that the
    // test sees keys at all, so the empty SCAN below means something.)
    let pattern = format!("{prefix}*");
    let keys = await_keys(&redis, &pattern, 1, Duration::from_millis(1000));
    assert!(
        !keys.is_empty(),
        "no key matches {pattern} while the session is offline and not expired"
    );

    let gone = eventually(Duration::from_secs(8), || redis.keys(&pattern).is_empty());
    assert!(
        gone,
        "{:?} after the session expired, keys remain: {:?}",
        offline.elapsed(),
        redis.keys(&pattern)
    );
    eprintln!("no key left {:?} after the disconnect", offline.elapsed());
    assert!(
        offline.elapsed() >= Duration::from_millis(1500),
        "the keys went {:?} after the disconnect, before the 2 s expiry",
        offline.elapsed()
    );
    // The node's own timer may lag Redis's TTL; 3.5 s is past both.
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(offline.elapsed())).await;
    let c = connect(Version::V5, &id, false, 60);
    let (_raw, ack) = Raw::connect_with(broker.addr, c).await;
    assert!(!ack.session_present, "the expired session came back");
}

/// Fencing: a second claim of a session, on another node, takes a new
/// generation; the first owner's later write is refused as stale.
#[tokio::test]
async fn second_claim_fences_the_first_owner() {
    let prefix = "t-fence:";
    let redis = RedisServer::start();
    let a = BrokerProcess::start("fence-a", &store_config(&redis, prefix, "sessions", "a"));
    let b = BrokerProcess::start("fence-b", &store_config(&redis, prefix, "sessions", "b"));
    let id = "fenced";
    let session = format!("{prefix}s:{{{id}}}");
    let subs = format!("{prefix}s:{{{id}}}:subs");
    let qos1 = shardmq::protocol::QoS::AtLeastOnce;

    let mut on_a = Raw::connect(a.addr, Version::V3_1_1, id, false).await;
    on_a.sub("one/x", qos1).await;
    assert!(
        eventually(WAIT, || owner(&redis, prefix, id).starts_with("a#")),
        "node a's claim: {session} owner is {:?}, not a#...",
        owner(&redis, prefix, id)
    );
    assert!(
        eventually(WAIT, || redis.cli(&["HEXISTS", &subs, "one/x"]) == "1"),
        "node a's subscription one/x never reached {subs}"
    );

    let (mut on_b, ack) = Raw::connect_with(b.addr, connect(Version::V3_1_1, id, false, 60)).await;
    assert_eq!(ack.reason_code, ReasonCode::Success, "node b's CONNECT");
    assert!(
        ack.session_present,
        "node b took over the session from Redis"
    );
    assert!(
        eventually(WAIT, || owner(&redis, prefix, id).starts_with("b#")),
        "node b's claim: owner is {:?}",
        owner(&redis, prefix, id)
    );

    // Node a does not know yet: its connection subscribes again. The broker
    // may already have closed it; either way `two/x` must not be stored.
    on_a.send(shardmq::protocol::Packet::Subscribe(subscribe(
        2,
        &[("two/x", sub_options(qos1))],
    )))
    .await;
    match on_a.recv_within(WAIT).await {
        Recv::Packet(p) => eprintln!("node a answered the late SUBSCRIBE with {}", p.name()),
        other => eprintln!("node a's connection: {other:?}"),
    }
    // The current owner's write does land: so two/x missing below is fencing,
    // not a write still on its way.
    on_b.sub("three/x", qos1).await;
    assert!(
        eventually(WAIT, || redis.cli(&["HEXISTS", &subs, "three/x"]) == "1"),
        "node b's subscription three/x never reached {subs}"
    );
    let stale_logged = eventually(Duration::from_secs(2), || {
        a.log().to_lowercase().contains("stale")
    });
    eprintln!("node a logged a stale write: {stale_logged}");

    let fields = redis.cli(&["HKEYS", &subs]);
    let fields: Vec<&str> = fields.lines().collect();
    assert!(
        fields.contains(&"one/x"),
        "{subs} lost one/x on takeover: {fields:?}"
    );
    assert!(
        !fields.contains(&"two/x"),
        "node a's stale write was stored: {subs} has {fields:?}"
    );
    let now = owner(&redis, prefix, id);
    assert!(now.starts_with("b#"), "owner is {now:?} after a's write");
}

/// Redis outage: connected clients keep talking; what needs Redis is
/// refused with "server unavailable"; /health says so; when Redis returns,
/// the node recovers by itself within 5 s.
#[tokio::test]
async fn redis_outage() {
    let prefix = "t-outage:";
    let mut redis = RedisServer::start();
    let broker = BrokerProcess::start("outage", &store_config(&redis, prefix, "sessions", "n1"));
    let addr = broker.addr;
    broker.await_healthy();

    let mut a = V3::connect(v3_options(addr, &id_on_shard("talk-a", 0))).await;
    a.subscribe("o/a", rumqttc::QoS::AtLeastOnce).await;
    let mut b = V5::connect(v5_options(addr, &id_on_shard("talk-b", 1))).await;
    b.subscribe("o/b", QoS5::AtLeastOnce).await;
    exchange(&mut a, &mut b, "before", 10).await;

    redis.kill();
    exchange(&mut a, &mut b, "during", 100).await;

    let persistent_v3 = id_on_shard("during-v3", 0);
    let (_r, ack) =
        Raw::connect_with(addr, connect(Version::V3_1_1, &persistent_v3, false, 60)).await;
    assert_eq!(
        ack.reason_code,
        ReasonCode::ServerUnavailable,
        "MQTT 3.1.1 persistent CONNECT while Redis is down: want return code 3"
    );
    let mut c = connect(Version::V5, &id_on_shard("during-v5", 1), false, 60);
    c.properties.session_expiry_interval = Some(60);
    let (_r, ack) = Raw::connect_with(addr, c).await;
    assert_eq!(
        ack.reason_code,
        ReasonCode::ServerUnavailable,
        "MQTT 5 persistent CONNECT while Redis is down: want 0x88"
    );
    let (_r, ack) = Raw::connect_with(
        addr,
        connect(Version::V3_1_1, &id_on_shard("during-clean", 1), true, 60),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success, "clean CONNECT");
    let mut last = (0, String::new());
    let down = eventually(Duration::from_secs(3), || {
        last = broker.health();
        last.0 == 503
    });
    assert!(down, "/health while Redis is down: {last:?}");
    let body = last.1.to_lowercase();
    assert!(
        body.contains("redis") || body.contains("store"),
        "/health's 503 does not name the cause: {:?}",
        last.1
    );

    redis.restart();
    let back = Instant::now();
    let mut last = (0, String::new());
    let healthy = eventually(Duration::from_secs(5), || {
        last = broker.health();
        last.0 == 200
    });
    assert!(healthy, "/health 5 s after Redis returned: {last:?}");
    let mut code = ReasonCode::ServerUnavailable;
    while back.elapsed() < Duration::from_secs(5) {
        let c = connect(Version::V3_1_1, &persistent_v3, false, 60);
        code = Raw::connect_with(addr, c).await.1.reason_code;
        if code == ReasonCode::Success {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        code,
        ReasonCode::Success,
        "persistent CONNECT 5 s after Redis returned"
    );
    eprintln!("recovered {:?} after Redis returned", back.elapsed());
    exchange(&mut a, &mut b, "after", 10).await;
}

/// `n` QoS 1 messages each way between `a` (on `o/a`) and `b` (on `o/b`),
/// each side receiving all of them in order.
async fn exchange(a: &mut V3, b: &mut V5, tag: &str, n: usize) {
    for i in 0..n {
        a.publish(
            "o/b",
            rumqttc::QoS::AtLeastOnce,
            false,
            format!("{tag} {i}").as_bytes(),
        )
        .await;
        b.publish(
            "o/a",
            QoS5::AtLeastOnce,
            false,
            format!("{tag} {i}").as_bytes(),
        )
        .await;
    }
    for i in 0..n {
        let want = format!("{tag} {i}");
        let got = a.recv().await;
        assert_eq!(
            String::from_utf8_lossy(&got.payload),
            want,
            "a, message {i}"
        );
        let got = b.recv().await;
        assert_eq!(
            String::from_utf8_lossy(&got.payload),
            want,
            "b, message {i}"
        );
    }
}

/// Wills: the wills of clients connected when the node died are published
/// once after the restart, and never again after another.
#[tokio::test]
async fn wills_after_kill_are_published_once() {
    let prefix = "t-wills:";
    let redis = RedisServer::start();
    let mut broker = BrokerProcess::start("wills", &store_config(&redis, prefix, "sessions", "n1"));
    let addr = broker.addr;
    let watcher_id = id_on_shard("watcher", 0);
    let watcher_options = || {
        let mut o = v3_options(addr, &watcher_id);
        o.set_clean_session(false);
        o
    };
    let mut watcher = V3::connect(watcher_options()).await;
    watcher.subscribe("will/#", rumqttc::QoS::AtLeastOnce).await;

    let w3 = id_on_shard("will-v3", 0);
    let mut o = v3_options(addr, &w3);
    o.set_clean_session(false);
    o.set_last_will(rumqttc::LastWill::new(
        format!("will/{w3}"),
        "gone",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let c3 = V3::connect(o).await;
    let w5 = id_on_shard("will-v5", 1);
    let mut o = v5_options(addr, &w5);
    let mut p = mqtt5::ConnectProperties::new();
    p.session_expiry_interval = Some(3600);
    o.set_connect_properties(p);
    o.set_last_will(mqtt5::LastWill::new(
        format!("will/{w5}"),
        "gone",
        QoS5::AtLeastOnce,
        false,
        None,
    ));
    let c5 = V5::connect(o).await;
    // The session HASHes (`s:{id}`, not `s:{id}:subs`), then the wills in
    // them (field `will`, src/store/layout.rs).
    await_keys(
        &redis,
        &format!("{prefix}s:{{*}}"),
        3,
        Duration::from_secs(3),
    );
    let wills_stored = eventually(Duration::from_secs(2), || {
        [&w3, &w5]
            .iter()
            .all(|id| redis.cli(&["HEXISTS", &format!("{prefix}s:{{{id}}}"), "will"]) == "1")
    });
    eprintln!("both wills in Redis before the kill: {wills_stored}");

    broker.kill();
    watcher.kill();
    c3.kill();
    c5.kill();
    broker.restart();
    let mut watcher = V3::connect(watcher_options()).await;
    assert!(
        watcher.connack.as_ref().is_some_and(|a| a.session_present),
        "the watcher's session did not survive the kill -9 (session present = 0)"
    );
    let wills = for_two_seconds(&mut watcher).await;
    let mut topics: Vec<String> = wills.iter().map(|p| p.topic.clone()).collect();
    topics.sort();
    let mut want = vec![format!("will/{w3}"), format!("will/{w5}")];
    want.sort();
    assert_eq!(topics, want, "wills after the first restart, each once");

    watcher.kill();
    broker.restart();
    let mut watcher = V3::connect(watcher_options()).await;
    assert!(watcher.connack.as_ref().is_some_and(|a| a.session_present));
    let again = for_two_seconds(&mut watcher).await;
    assert!(again.is_empty(), "wills published a second time: {again:?}");
}

/// Every PUBLISH within 2 s: long enough for a duplicate to show.
async fn for_two_seconds(c: &mut V3) -> Vec<rumqttc::Publish> {
    let start = Instant::now();
    let mut got = Vec::new();
    while start.elapsed() < Duration::from_secs(2) {
        got.extend(c.drain().await);
    }
    got
}

/// Clean sessions cost no Redis key: MQTT 3.1.1 clean session 1 and MQTT 5
/// session expiry 0, both subscribed, leave nothing under `<prefix>s:`,
/// while a persistent session beside them does.
#[tokio::test]
async fn clean_sessions_cost_no_redis_key() {
    let prefix = "t-clean:";
    let redis = RedisServer::start();
    let broker = BrokerProcess::start("clean", &store_config(&redis, prefix, "sessions", "n1"));
    let qos1 = shardmq::protocol::QoS::AtLeastOnce;
    let mut c3 = Raw::connect(broker.addr, Version::V3_1_1, &id_on_shard("c3", 0), true).await;
    c3.sub("c/1", qos1).await;
    let mut c5 = Raw::connect(broker.addr, Version::V5, &id_on_shard("c5", 1), true).await;
    c5.sub("c/2", qos1).await;
    let keep = id_on_shard("keep", 1);
    let mut kept = Raw::connect(broker.addr, Version::V3_1_1, &keep, false).await;
    kept.sub("c/3", qos1).await;

    // The persistent session is stored: the test sees the store's writes,
    // so no key for the clean ones means none was written.
    let session = format!("{prefix}s:{{{keep}}}");
    assert!(
        eventually(WAIT, || redis.keys(&session) == [session.clone()]),
        "the persistent control session {session} never reached Redis"
    );
    let pattern = format!("{prefix}s:*");
    let strangers = |keys: Vec<String>| -> Vec<String> {
        keys.into_iter()
            .filter(|k| !k.contains(&format!("{{{keep}}}")))
            .collect()
    };
    assert_eq!(
        strangers(redis.keys(&pattern)),
        Vec::<String>::new(),
        "keys of clean sessions"
    );
    c3.disconnect().await;
    c5.disconnect().await;
    std::thread::sleep(QUIET);
    assert_eq!(
        strangers(redis.keys(&pattern)),
        Vec::<String>::new(),
        "after the clean sessions ended"
    );
}

/// Retained messages survive a `kill -9` with their MQTT 5 properties, and
/// their expiry still counts. Real clients: mosquitto_pub and mosquitto_sub.
#[test]
fn retained_survives_restart() {
    let prefix = "t-retained:";
    let redis = RedisServer::start();
    let mut broker =
        BrokerProcess::start("retained", &store_config(&redis, prefix, "sessions", "n1"));
    let port = broker.addr.port().to_string();
    let mosquitto_pub = |topic: &str, payload: &str, props: &[&str]| {
        let out = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                "mqttv5",
                "-q",
                "1",
                "-r",
            ])
            .args(["-t", topic, "-m", payload])
            .args(props)
            .output()
            .expect("run mosquitto_pub (package mosquitto-clients)");
        assert!(
            out.status.success(),
            "mosquitto_pub {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Lines "retain|topic|payload|user properties|expiry" for what comes
    // within `seconds` (or until `count` messages).
    let mosquitto_sub = |filter: &str, count: Option<usize>, seconds: u32| -> Vec<String> {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5", "-q", "1"])
            .args(["-t", filter, "-W", &seconds.to_string()])
            .args(["-F", "%r|%t|%p|%P|%E"]);
        if let Some(n) = count {
            cmd.args(["-C", &n.to_string()]);
        }
        let out = cmd
            .output()
            .expect("run mosquitto_sub (package mosquitto-clients)");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };

    mosquitto_pub(
        "ret/long",
        "keep me",
        &[
            "-D",
            "publish",
            "user-property",
            "origin",
            "store-test",
            "-D",
            "publish",
            "message-expiry-interval",
            "3600",
        ],
    );
    mosquitto_pub(
        "ret/short",
        "fade",
        &["-D", "publish", "message-expiry-interval", "2"],
    );
    let short_sent = Instant::now();
    // One STRING per retained topic (`r:{topic}`, src/store/layout.rs).
    await_keys(&redis, &format!("{prefix}r:*"), 2, Duration::from_secs(2));

    broker.kill();
    broker.restart();
    let lines = mosquitto_sub("ret/long", Some(1), 5);
    let [line] = &lines[..] else {
        panic!(
            "after the restart, a subscriber to ret/long got {lines:?}, want the retained message"
        );
    };
    let fields: Vec<&str> = line.split('|').collect();
    assert_eq!(
        fields[..4],
        ["1", "ret/long", "keep me", "origin:store-test"],
        "{line}"
    );
    let expiry: u32 = fields[4].parse().unwrap_or(0);
    assert!(
        (1..=3600).contains(&expiry),
        "message expiry after the restart: {line}"
    );

    if let Some(left) = Duration::from_millis(3500).checked_sub(short_sent.elapsed()) {
        std::thread::sleep(left);
    }
    let lines = mosquitto_sub("ret/#", None, 2);
    let topics: Vec<&str> = lines.iter().filter_map(|l| l.split('|').nth(1)).collect();
    assert_eq!(
        topics,
        ["ret/long"],
        "retained after ret/short expired: {lines:?}"
    );
}

/// A client that had a persistent session comes back after a kill -9 with
/// a clean session: whether its CONNECT comes before or after loading adopts
/// the stored session, it gets session present = 0 and the stored session is
/// gone from Redis (not left behind without an expiry), on either shard.
#[tokio::test]
async fn a_clean_return_after_a_restart_ends_the_stored_session() {
    let prefix = "t-clean-return:";
    let redis = RedisServer::start();
    let mut broker = BrokerProcess::start(
        "clean-return",
        &store_config(&redis, prefix, "sessions", "n1"),
    );
    let ids: Vec<String> = (0..2).map(|s| id_on_shard("back-clean", s)).collect();
    for id in &ids {
        let mut raw = Raw::connect(broker.addr, Version::V3_1_1, id, false).await;
        raw.sub("c/t", shardmq::protocol::QoS::AtLeastOnce).await;
        raw.disconnect().await;
    }
    for id in &ids {
        let keys = await_keys(
            &redis,
            &format!("{prefix}s:{{{id}}}*"),
            2,
            Duration::from_secs(2),
        );
        assert_eq!(
            keys.len(),
            2,
            "{id}: the session and its subscriptions stored: {keys:?}"
        );
    }
    broker.kill();
    broker.restart();
    for id in &ids {
        let (raw, ack) =
            Raw::connect_with(broker.addr, connect(Version::V3_1_1, id, true, 60)).await;
        assert!(!ack.session_present, "{id}: a clean session is new");
        raw.disconnect().await;
    }
    for id in &ids {
        let pattern = format!("{prefix}s:{{{id}}}*");
        let gone = eventually(Duration::from_secs(5), || redis.keys(&pattern).is_empty());
        assert!(
            gone,
            "{id}: stored session left behind: {:?}",
            redis.keys(&pattern)
        );
    }
}

/// Sessions a past life of node `n1` left, written straight into Redis as
/// the broker writes them: `ld-<i>`, offline, an hour of expiry, one QoS 1
/// subscription to `load/<i>`.
fn stored_sessions(redis: &RedisServer, prefix: &str, n: usize) {
    let arg = |s: String| s.into_bytes();
    let mut commands = Vec::with_capacity(3 * n);
    for i in 0..n {
        let s = format!("{prefix}s:{{ld-{i}}}");
        commands.push(
            [
                "HSET", &s, "gen", "1", "owner", "n1#0", "expiry", "3600", "online", "0",
            ]
            .map(|a| arg(a.to_owned()))
            .to_vec(),
        );
        commands.push(vec![
            arg("HSET".into()),
            arg(format!("{s}:subs")),
            arg(format!("load/{i}")),
            vec![1, 0],
        ]);
        commands.push(vec![
            arg("SADD".into()),
            arg(format!("{prefix}node:n1:sessions")),
            arg(format!("ld-{i}")),
        ]);
    }
    redis.pipe(&commands);
}

/// A publish made right after a restart, while the node is still loading
/// the sessions its past life left, reaches an offline persistent session
/// that loading has not restored yet: it waits for loading instead of being
/// routed to nobody.
#[tokio::test]
async fn a_publish_during_loading_reaches_a_session_not_loaded_yet() {
    const STORED: usize = 50_000;
    let prefix = "t-loading:";
    let redis = RedisServer::start();
    stored_sessions(&redis, prefix, STORED);
    let broker = BrokerProcess::start("loading", &store_config(&redis, prefix, "sessions", "n1"));

    let mut publ = Raw::connect(broker.addr, Version::V5, "loading-pub", true).await;
    assert_eq!(
        broker.metric("shardmq_store_load_seconds"),
        None,
        "loading {STORED} sessions was over before the first publish: store more, \
         or the test proves nothing"
    );
    let probes: Vec<usize> = (0..STORED).step_by(STORED / 100).collect();
    for (n, i) in probes.iter().enumerate() {
        let id = u16::try_from(n + 1).expect("fewer than 65536 probes");
        let payload = format!("to {i}");
        publ.publish(publish(
            &format!("load/{i}"),
            QoS::AtLeastOnce,
            id,
            payload.as_bytes(),
        ))
        .await;
    }
    for _ in &probes {
        let p = publ.recv().await;
        assert!(matches!(p, Packet::PubAck(_)), "{p:?}");
    }
    let loaded = eventually(Duration::from_secs(30), || {
        broker.metric("shardmq_store_load_seconds").is_some()
    });
    assert!(loaded, "loading {STORED} sessions did not end within 30 s");
    eprintln!(
        "loaded in {:?} s",
        broker.metric("shardmq_store_load_seconds")
    );

    for i in &probes {
        let id = format!("ld-{i}");
        let (mut raw, ack) =
            Raw::connect_with(broker.addr, connect(Version::V3_1_1, &id, false, 60)).await;
        assert!(ack.session_present, "{id}: its stored session");
        let p = raw.recv_publish().await;
        assert_eq!(
            (&*p.topic, &p.payload[..]),
            (&*format!("load/{i}"), format!("to {i}").as_bytes()),
            "{id}"
        );
    }
}
