//! End to end, issue 14 so far: nodes sharing one Redis hold leases, learn
//! of each other's joins and deaths within a lease, and report a lost lease
//! on `/health`. Real broker processes on loopback ports, a real
//! `redis-server`, `kill -9`.

mod common;

use std::time::{Duration, Instant};

use common::broker_process::{free_port, BrokerProcess};
use common::redis::RedisServer;
use common::*;
use shardmq::protocol::{Packet, QoS, ReasonCode, Version};

/// Short, so deaths show quickly: renewed every 333 ms.
const LEASE: Duration = Duration::from_secs(1);

fn node_config(redis: &RedisServer, node: &str) -> String {
    node_config_with(redis, node, "")
}

/// [`node_config`] with more `[store]` keys.
fn node_config_with(redis: &RedisServer, node: &str, store: &str) -> String {
    format!(
        "[store]\nkind = \"redis\"\nredis = \"{}\"\nkey-prefix = \"t-cluster:\"\ntimeout = \"300ms\"\n{store}\n\
         [cluster]\nnode-id = \"{node}\"\nbind = \"127.0.0.1:{}\"\nlease = \"{}ms\"\n",
        redis.url(),
        free_port(),
        LEASE.as_millis()
    )
}

/// Polls `check` every 20 ms for `within` at most; returns how long it took
/// to hold, or `None`.
fn within(within: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gauge(node: &BrokerProcess, name: &str) -> f64 {
    node.metric(name).unwrap_or(-1.0)
}

/// `shardmq_cluster_routes` of every shard of `node`.
fn routes_known(node: &BrokerProcess) -> Vec<f64> {
    let (_, body) = http_get(node.http, "/metrics");
    body.lines()
        .filter_map(|l| l.strip_prefix("shardmq_cluster_routes{"))
        .filter_map(|l| l.split_once("} ")?.1.parse().ok())
        .collect()
}

#[test]
fn nodes_learn_of_joins_and_deaths_within_a_lease() {
    let redis = RedisServer::start();
    let a = BrokerProcess::start("cluster-a", &node_config(&redis, "a"));
    let mut b = BrokerProcess::start("cluster-b", &node_config(&redis, "b"));
    for (name, node) in [("a", &a), ("b", &b)] {
        let seen = within(3 * LEASE, || {
            gauge(node, "shardmq_cluster_peers") == 1.0
                && gauge(node, "shardmq_cluster_lease") == 1.0
                && node.health().0 == 200
        });
        assert!(
            seen.is_some(),
            "node {name}: peers {}, lease {}, /health {:?}",
            gauge(node, "shardmq_cluster_peers"),
            gauge(node, "shardmq_cluster_lease"),
            node.health()
        );
    }
    // Each node's life is registered with its address.
    let nodes = redis.cli(&["HGETALL", "t-cluster:{cluster}:nodes"]);
    assert!(nodes.contains("127.0.0.1:"), "{{cluster}}:nodes: {nodes}");

    b.kill();
    let died = within(3 * LEASE, || gauge(&a, "shardmq_cluster_peers") == 0.0);
    let Some(took) = died else {
        panic!(
            "node a still counts {} peers {:?} after b was killed",
            gauge(&a, "shardmq_cluster_peers"),
            3 * LEASE
        )
    };
    eprintln!("a saw b die {took:?} after the kill (lease {LEASE:?})");
    // b's lease ended at most one lease after the kill, and a renews three
    // times per lease: it knows within a lease and a renewal, plus the
    // metrics' own sampling.
    assert!(
        took <= LEASE + LEASE / 3 + Duration::from_millis(700),
        "a learned of b's death {took:?} after the kill"
    );
    assert_eq!(gauge(&a, "shardmq_cluster_deaths_total"), 1.0);

    b.restart();
    let back = within(3 * LEASE, || {
        gauge(&a, "shardmq_cluster_peers") == 1.0 && gauge(&a, "shardmq_cluster_joins_total") == 2.0
    });
    assert!(
        back.is_some(),
        "a after b's restart: peers {}, joins {}",
        gauge(&a, "shardmq_cluster_peers"),
        gauge(&a, "shardmq_cluster_joins_total")
    );
}

#[test]
fn a_node_cut_off_from_redis_loses_its_lease_and_takes_it_back() {
    let mut redis = RedisServer::start();
    let a = BrokerProcess::start("cluster-alone", &node_config(&redis, "alone"));
    assert!(
        within(3 * LEASE, || a.health().0 == 200).is_some(),
        "/health before: {:?}",
        a.health()
    );
    redis.kill();
    let lost = within(3 * LEASE, || gauge(&a, "shardmq_cluster_lease") == 0.0);
    assert!(
        lost.is_some(),
        "the lease is still held {:?} after Redis died",
        3 * LEASE
    );
    let (status, body) = a.health();
    assert_eq!(status, 503, "/health without a lease: {body}");

    redis.restart();
    let back = within(5 * LEASE, || {
        gauge(&a, "shardmq_cluster_lease") == 1.0 && a.health().0 == 200
    });
    assert!(
        back.is_some(),
        "after Redis came back: lease {}, /health {:?}",
        gauge(&a, "shardmq_cluster_lease"),
        a.health()
    );
}

/// Every node learns which filters the others subscribe to, on every shard,
/// from the route sets and the route feed in Redis: subscribe and
/// unsubscribe on one node show on the other, a node that joins later reads
/// what was there before, and a dead node's routes go.
#[tokio::test]
async fn every_node_learns_the_others_routes() {
    let redis = RedisServer::start();
    let mut a = BrokerProcess::start("routes-a", &node_config(&redis, "a"));
    // A cluster node takes CONNECTs once it holds its lease (/health 200).
    a.await_healthy();
    // Two clean subscribers on a's two shards, one filter in common.
    let mut s0 = Raw::connect(a.addr, Version::V3_1_1, &id_on_shard("s0", 0), true).await;
    s0.sub("x/+", QoS::AtLeastOnce).await;
    s0.sub("only/0", QoS::AtMostOnce).await;
    let mut s1 = Raw::connect(a.addr, Version::V5, &id_on_shard("s1", 1), true).await;
    s1.sub("x/+", QoS::AtMostOnce).await;
    s1.sub("$share/g/y/#", QoS::AtMostOnce).await;

    // b starts after the subscriptions: it reads a's route sets.
    let b = BrokerProcess::start("routes-b", &node_config(&redis, "b"));
    let known = |n: f64| move |node: &BrokerProcess| routes_known(node) == [n, n];
    let seen = within(3 * LEASE, || known(3.0)(&b));
    assert!(
        seen.is_some(),
        "b knows {:?} of a's 3 filters",
        routes_known(&b)
    );

    // A new filter on a, then one dropped: through the feed.
    s1.sub("z", QoS::AtMostOnce).await;
    assert!(
        within(2 * LEASE, || known(4.0)(&b)).is_some(),
        "after a new subscription on a, b knows {:?}",
        routes_known(&b)
    );
    s0.disconnect().await;
    // x/+ stays (s1 has it on the other shard); only/0 goes.
    assert!(
        within(2 * LEASE, || known(3.0)(&b)).is_some(),
        "after s0 left, b knows {:?}",
        routes_known(&b)
    );
    // a knows nothing of b, which has no subscriber.
    assert_eq!(routes_known(&a), [0.0, 0.0]);

    a.kill();
    assert!(
        within(3 * LEASE, || known(0.0)(&b)).is_some(),
        "a is dead and b still knows {:?} of its routes",
        routes_known(&b)
    );
    drop(s1);
    a.restart();
    // The new life of a starts with no clean subscriber: nothing to know.
    std::thread::sleep(LEASE);
    assert_eq!(routes_known(&b), [0.0, 0.0]);
}

/// Retained messages are cluster-wide: one set on a node reaches a later
/// subscriber on another, through the store and the feed; one cleared is
/// gone there too.
#[tokio::test]
async fn a_retained_message_set_on_one_node_is_retained_on_the_others() {
    let redis = RedisServer::start();
    let a = BrokerProcess::start("retained-a", &node_config(&redis, "a"));
    let b = BrokerProcess::start("retained-b", &node_config(&redis, "b"));
    // Both have joined, and b reads the feed (it polls every 50 ms), before
    // the message is set: b learns of it by the feed.
    assert!(
        within(3 * LEASE, || gauge(&b, "shardmq_cluster_peers") == 1.0).is_some(),
        "b never saw a"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut p = Raw::connect(a.addr, Version::V5, &id_on_shard("setter", 1), true).await;
    let mut retained = publish("r/1", QoS::AtLeastOnce, 1, b"kept");
    retained.retain = true;
    p.publish(retained).await;
    p.recv().await; // PUBACK

    // A new subscriber on b, every 100 ms, until one gets it.
    let deadline = Instant::now() + 2 * LEASE;
    let mut n = 0;
    let got = loop {
        n += 1;
        if let Some(m) = retained_on(&b, &format!("getter-{n}")).await {
            break Some(m);
        }
        if Instant::now() >= deadline {
            break None;
        }
    };
    assert_eq!(
        got.as_deref(),
        Some(&b"kept"[..]),
        "a subscriber on b never got a's retained message"
    );

    let mut clear = publish("r/1", QoS::AtLeastOnce, 2, b"");
    clear.retain = true;
    p.publish(clear).await;
    p.recv().await;
    let deadline = Instant::now() + 2 * LEASE;
    loop {
        n += 1;
        let left = retained_on(&b, &format!("getter-{n}")).await;
        if left.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a's retained message is still retained on b after a cleared it: {left:?}"
        );
    }
}

/// What a new subscriber to `r/+` on `node` gets as retained within 100 ms.
async fn retained_on(node: &BrokerProcess, id: &str) -> Option<Vec<u8>> {
    let mut s = Raw::connect(node.addr, Version::V3_1_1, id, true).await;
    s.sub("r/+", QoS::AtLeastOnce).await;
    match s.recv_within(Duration::from_millis(100)).await {
        Recv::Packet(Packet::Publish(m)) if m.retain => Some(m.payload.to_vec()),
        _ => None,
    }
}

/// Starts `names` as nodes on one Redis and waits until every node has a
/// lease, sees the others, and has its links up: each of its 2 shards dials
/// each peer, and takes a link from each shard of each peer.
fn start_cluster(redis: &RedisServer, prefix: &str, names: &[&str]) -> Vec<BrokerProcess> {
    start_cluster_with(redis, prefix, names, "")
}

/// [`start_cluster`] with more `[store]` keys.
fn start_cluster_with(
    redis: &RedisServer,
    prefix: &str,
    names: &[&str],
    store: &str,
) -> Vec<BrokerProcess> {
    let nodes: Vec<BrokerProcess> = names
        .iter()
        .map(|n| BrokerProcess::start(&format!("{prefix}-{n}"), &node_config_with(redis, n, store)))
        .collect();
    let peers = (names.len() - 1) as f64;
    for (name, node) in names.iter().zip(&nodes) {
        let up = within(5 * LEASE, || {
            node.health().0 == 200
                && gauge(node, "shardmq_cluster_peers") == peers
                && gauge(node, "shardmq_cluster_links_up") == 4.0 * peers
        });
        assert!(
            up.is_some(),
            "node {name}: /health {:?}, peers {}, links up {}",
            node.health(),
            gauge(node, "shardmq_cluster_peers"),
            gauge(node, "shardmq_cluster_links_up"),
        );
    }
    nodes
}

/// Reads PUBLISH payloads until `quiet` passes with none.
async fn drain(c: &mut Raw, quiet: Duration) -> Vec<(String, Vec<u8>)> {
    let mut got = Vec::new();
    while let Recv::Packet(p) = c.recv_within(quiet).await {
        if let Packet::Publish(p) = p {
            got.push((p.topic.to_string(), p.payload.to_vec()));
        }
    }
    got
}

/// Routing, issue 14: three nodes, a publish on any node reaches the
/// subscribers on every node: literal, `+`, `#`, and a share group with
/// members on all three (and both shards of one) gets each message once in
/// the whole cluster. The QoS 1 publishers get their PUBACKs, which wait for
/// every node the message went to.
#[tokio::test]
async fn a_publish_on_any_node_reaches_subscribers_on_every_node() {
    let redis = RedisServer::start();
    let nodes = start_cluster(&redis, "routing", &["a", "b", "c"]);
    let mut subs = Vec::new();
    let mut members = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let id = id_on_shard(&format!("sub{i}"), i % 2);
        let mut s = Raw::connect(node.addr, Version::V5, &id, true).await;
        s.sub("lit/x", QoS::AtMostOnce).await;
        s.sub("plus/+", QoS::AtMostOnce).await;
        s.sub("hash/#", QoS::AtMostOnce).await;
        subs.push(s);
        let id = id_on_shard(&format!("member{i}"), (i + 1) % 2);
        let mut m = Raw::connect(node.addr, Version::V3_1_1, &id, true).await;
        m.sub("$share/g/sh/#", QoS::AtMostOnce).await;
        members.push(m);
    }
    // A second member on a's other shard.
    let id = id_on_shard("member-a2", 0);
    let mut m = Raw::connect(nodes[0].addr, Version::V5, &id, true).await;
    m.sub("$share/g/sh/#", QoS::AtMostOnce).await;
    members.push(m);
    // Every shard of every node knows the other two nodes' 4 filters each.
    for node in &nodes {
        let known = within(5 * LEASE, || routes_known(node) == [8.0, 8.0]);
        assert!(known.is_some(), "routes known: {:?}", routes_known(node));
    }

    const SHARED: usize = 30;
    for (i, node) in nodes.iter().enumerate() {
        let mut p = Raw::connect(node.addr, Version::V5, &id_on_shard("pub", i % 2), true).await;
        let mut id = 1;
        let mut send = |topic: String| {
            id += 1;
            publish(&topic, QoS::AtLeastOnce, id, format!("from-{i}").as_bytes())
        };
        let mut topics = vec![
            "lit/x".to_owned(),
            format!("plus/{i}"),
            format!("hash/{i}/deep"),
        ];
        topics.extend((0..SHARED).map(|n| format!("sh/{i}/{n}")));
        let count = topics.len();
        for t in topics {
            p.publish(send(t)).await;
        }
        for _ in 0..count {
            match p.recv().await {
                Packet::PubAck(a) => assert!(!a.reason_code.is_error(), "{a:?}"),
                other => panic!("publisher on node {i}: {other:?}"),
            }
        }
    }

    for (i, s) in subs.iter_mut().enumerate() {
        let mut got = drain(s, Duration::from_millis(500)).await;
        got.sort();
        let mut want: Vec<(String, Vec<u8>)> = (0..3)
            .flat_map(|p| {
                let from = format!("from-{p}").into_bytes();
                [
                    ("lit/x".to_owned(), from.clone()),
                    (format!("plus/{p}"), from.clone()),
                    (format!("hash/{p}/deep"), from),
                ]
            })
            .collect();
        want.sort();
        assert_eq!(got, want, "subscriber on node {i}");
    }
    let mut shared = Vec::new();
    let mut per_member = Vec::new();
    for m in &mut members {
        let got = drain(m, Duration::from_millis(300)).await;
        per_member.push(got.len());
        shared.extend(got);
    }
    shared.sort();
    let mut want: Vec<(String, Vec<u8>)> = (0..3)
        .flat_map(|p| {
            (0..SHARED).map(move |n| (format!("sh/{p}/{n}"), format!("from-{p}").into_bytes()))
        })
        .collect();
    want.sort();
    assert_eq!(shared.len(), want.len(), "per member: {per_member:?}");
    assert_eq!(shared, want, "the share group got each message once");
    // Every node served the group.
    for (i, n) in per_member.iter().take(3).enumerate() {
        assert!(
            *n > 0 || (i == 0 && per_member[3] > 0),
            "per member: {per_member:?}"
        );
    }
    for node in &nodes {
        assert!(gauge(node, "shardmq_cluster_messages_in_total") > 0.0);
    }
}

/// One owner, issue 14: 200 CONNECTs of one client id at once, spread over
/// three nodes (both MQTT versions, clean and persistent): exactly one
/// connection remains, on the node Redis names as the owner.
#[tokio::test]
async fn concurrent_connects_of_one_id_on_three_nodes_leave_one_connection() {
    let redis = RedisServer::start();
    let nodes = start_cluster(&redis, "owner", &["a", "b", "c"]);
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200usize {
        let addr = addrs[i % 3];
        tasks.spawn(async move {
            let version = if i % 2 == 0 {
                Version::V5
            } else {
                Version::V3_1_1
            };
            let mut c = connect(version, "the-one", i % 4 < 2, 60);
            if version == Version::V5 && i % 4 == 0 {
                c.properties.session_expiry_interval = Some(600);
            }
            let (mut raw, ack) = Raw::connect_with(addr, c).await;
            if ack.reason_code.is_error() {
                return None;
            }
            // Connected: still so once the others have settled?
            let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match raw.recv_within(left).await {
                    Recv::Timeout => return Some((i, raw)),
                    Recv::Closed => return None,
                    Recv::Packet(_) => {}
                }
            }
        });
    }
    let mut alive = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(c) = r.expect("client task") {
            alive.push(c);
        }
    }
    let which: Vec<usize> = alive.iter().map(|(i, _)| *i).collect();
    assert_eq!(which.len(), 1, "connections left: {which:?}");
    let owner = redis.cli(&["HGET", "t-cluster:s:{the-one}", "owner"]);
    let node = ["a", "b", "c"][which[0] % 3];
    assert!(
        owner.trim().starts_with(&format!("{node}#")),
        "Redis names {owner:?}, the connection left is on {node}"
    );
}

/// A QoS 1 publisher that sends `count` numbered messages, message `n` to
/// `topic(n)`, one at a time, and publishes again (after reconnecting if it
/// must) each one that gets no PUBACK. Returns the numbers acknowledged, in
/// order.
async fn numbered_publisher(
    addr: std::net::SocketAddr,
    id: &str,
    count: u32,
    topic: impl Fn(u32) -> String,
) -> Vec<u32> {
    let mut acked = Vec::new();
    let mut c = Raw::connect(addr, Version::V5, id, true).await;
    let mut pid = 0u16;
    for n in 0..count {
        for attempt in 0.. {
            assert!(attempt < 200, "message {n} never acknowledged");
            pid = pid % 60_000 + 1;
            c.publish(publish(&topic(n), QoS::AtLeastOnce, pid, &n.to_be_bytes()))
                .await;
            match c.recv_within(Duration::from_secs(3)).await {
                Recv::Packet(Packet::PubAck(a)) if !a.reason_code.is_error() => {
                    acked.push(n);
                    break;
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    c = Raw::connect(addr, Version::V5, id, true).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    acked
}

/// Reads numbered messages into `got`, `(number, dup)` in arrival order,
/// acknowledging each, until `quiet` passes with none or `got` holds
/// `until`.
async fn numbered_subscriber(
    c: &mut Raw,
    quiet: Duration,
    got: &mut Vec<(u32, bool)>,
    until: usize,
) {
    while got.len() < until {
        match c.recv_within(quiet).await {
            Recv::Packet(Packet::Publish(p)) => {
                let n = u32::from_be_bytes(p.payload[..4].try_into().expect("4 bytes"));
                got.push((n, p.dup));
                if let Some(id) = p.packet_id {
                    c.puback(id).await;
                }
            }
            Recv::Packet(_) => {}
            Recv::Closed | Recv::Timeout => return,
        }
    }
}

/// Flow control across nodes, issue 14: a QoS 1 subscriber on node b that
/// reads slowly (an acknowledgement every 20 ms, receive maximum 5) slows a
/// publisher on node a that sends 3,000 messages at once: b's queue for it
/// stays within half its bound plus the credit windows (without them it
/// took nearly all 3,000),
/// and once the subscriber reads at full speed it gets every message, in
/// order, none dropped.
#[tokio::test]
async fn a_slow_subscriber_on_another_node_slows_its_publisher() {
    const COUNT: u32 = 3000;
    let redis = RedisServer::start();
    let nodes = start_cluster_with(&redis, "flow", &["a", "b"], "");
    let mut c = connect(Version::V5, "slow", true, 60);
    c.properties.receive_maximum = Some(5);
    let (mut sub, ack) = Raw::connect_with(nodes[1].addr, c).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    sub.sub("flow/t", QoS::AtLeastOnce).await;
    let known = within(5 * LEASE, || routes_known(&nodes[0]) == [1.0, 1.0]);
    assert!(
        known.is_some(),
        "routes known: {:?}",
        routes_known(&nodes[0])
    );

    let mut publ = Raw::connect(nodes[0].addr, Version::V5, "fast", true).await;
    for n in 0..COUNT {
        let id = (n % 60_000 + 1) as u16;
        publ.publish(publish("flow/t", QoS::AtLeastOnce, id, &n.to_be_bytes()))
            .await;
    }
    let mut got = Vec::new();
    let mut queued_most = 0.0f64;
    let slow_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < slow_until {
        if let Recv::Packet(Packet::Publish(p)) = sub.recv_within(Duration::from_secs(1)).await {
            got.push(u32::from_be_bytes(
                p.payload[..4].try_into().expect("4 bytes"),
            ));
            sub.puback(p.packet_id.expect("QoS 1")).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if got.len() % 10 == 0 {
            queued_most = queued_most.max(nodes[1].metric_sum("shardmq_queued_messages"));
        }
    }
    let slow = got.len();
    // The subscriber counts as congested from half its `max-online-messages`
    // (1,000) queued; then a's window toward other nodes and b's relay
    // window are all that may come.
    let bound = f64::from(500 + shardmq::broker::NODE_WINDOW + shardmq::broker::FORWARD_WINDOW);
    assert!(
        queued_most <= bound,
        "b queued up to {queued_most} messages for a subscriber that took {slow}"
    );
    let mut more = Vec::new();
    numbered_subscriber(&mut sub, Duration::from_secs(5), &mut more, COUNT as usize).await;
    got.extend(more.iter().map(|(n, _)| *n));
    eprintln!(
        "b queued at most {queued_most}; {slow} read slowly, {} in all",
        got.len()
    );
    assert_eq!(
        got,
        (0..COUNT).collect::<Vec<_>>(),
        "every message, in order"
    );
    assert_eq!(nodes[1].metric_sum("shardmq_messages_dropped_total"), 0.0);
}

/// Takeover, issue 14, with `durability = "messages"`: a persistent QoS 1
/// subscriber moves from node a to node b while a publisher on node c keeps
/// sending. a closes the old connection with 0x8E; no acknowledged message
/// is lost, the first arrival of each keeps the publisher's order, and a
/// message the client gets twice has DUP set the second time. (For about
/// `owners::LINGER` the old owner forwards what still reaches it while nodes
/// that know the new owner route there too: the new owner drops the second
/// copy by the message's id.)
#[tokio::test]
async fn a_persistent_subscriber_moves_between_nodes_without_losing_a_message() {
    moves_between_nodes("messages").await;
}

/// The same with `durability = "sessions"`, where the messages a session
/// holds are in its owner's memory only: a hands them to b with the
/// session.
#[tokio::test]
async fn a_session_held_in_memory_moves_between_nodes_without_losing_a_message() {
    moves_between_nodes("sessions").await;
}

async fn moves_between_nodes(durability: &str) {
    let redis = RedisServer::start();
    let nodes = start_cluster_with(
        &redis,
        &format!("takeover-{durability}"),
        &["a", "b", "c"],
        &format!("durability = \"{durability}\"\n"),
    );
    let session = |clean| {
        let mut c = connect(Version::V5, "mover", clean, 60);
        c.properties.session_expiry_interval = Some(600);
        // a holds at most 10 in flight and queues the rest.
        c.properties.receive_maximum = Some(10);
        c
    };
    let (mut old, ack) = Raw::connect_with(nodes[0].addr, session(true)).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    old.sub("move/#", QoS::AtLeastOnce).await;
    for node in &nodes[1..] {
        let known = within(5 * LEASE, || routes_known(node) == [1.0, 1.0]);
        assert!(known.is_some(), "routes known: {:?}", routes_known(node));
    }
    let publisher = tokio::spawn(numbered_publisher(nodes[2].addr, "numbers", 1000, |_| {
        "move/x".into()
    }));
    let mut got = Vec::new();
    numbered_subscriber(&mut old, Duration::from_secs(3), &mut got, 100).await;
    let before = got.len();
    assert_eq!(before, 100, "on a before the move");
    // The client stops acknowledging: the session on a holds messages sent
    // and not acknowledged, and queued ones, when b takes it.
    let stop = Instant::now() + Duration::from_millis(300);
    while let Some(left) = stop.checked_duration_since(Instant::now()) {
        match old.recv_within(left).await {
            Recv::Packet(Packet::Publish(p)) => {
                let n = u32::from_be_bytes(p.payload[..4].try_into().expect("4 bytes"));
                got.push((n, p.dup));
            }
            Recv::Packet(_) => {}
            Recv::Closed | Recv::Timeout => break,
        }
    }
    let unacknowledged = got.len() - before;

    let moved = Instant::now();
    let (mut new, ack) = Raw::connect_with(nodes[1].addr, session(false)).await;
    let took = moved.elapsed();
    assert_eq!(ack.reason_code, ReasonCode::Success, "CONNACK on b");
    assert!(ack.session_present, "b found the session");
    eprintln!(
        "takeover from a to b: CONNACK after {took:?}, {before} messages before, {unacknowledged} not acknowledged on a"
    );
    // The old connection was told, after whatever a still had for it.
    let mut last = Vec::new();
    loop {
        match old.recv_within(Duration::from_secs(5)).await {
            Recv::Packet(Packet::Publish(p)) => {
                // Not acknowledged: the new connection gets it again.
                let n = u32::from_be_bytes(p.payload[..4].try_into().expect("4 bytes"));
                got.push((n, p.dup));
            }
            Recv::Packet(p) => last.push(p),
            Recv::Closed | Recv::Timeout => break,
        }
    }
    assert!(
        matches!(last.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::SessionTakenOver),
        "the old connection ended with {last:?}"
    );
    let acked = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            numbered_subscriber(&mut new, Duration::from_millis(200), &mut got, usize::MAX).await;
            if publisher.is_finished() {
                return publisher.await.expect("publisher");
            }
        }
    })
    .await
    .expect("the publisher finishes");
    numbered_subscriber(&mut new, Duration::from_millis(1000), &mut got, usize::MAX).await;

    let received: std::collections::BTreeSet<u32> = got.iter().map(|(n, _)| *n).collect();
    let lost: Vec<u32> = acked
        .iter()
        .filter(|n| !received.contains(n))
        .copied()
        .collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    let mut seen = std::collections::BTreeSet::new();
    let mut firsts = Vec::new();
    let mut dups_without_flag: Vec<u32> = Vec::new();
    for (n, dup) in &got {
        if seen.insert(*n) {
            firsts.push(*n);
        } else if !dup {
            dups_without_flag.push(*n);
        }
    }
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "first arrivals out of order: {firsts:?}"
    );
    eprintln!(
        "{} acknowledged, {} received, {} duplicates, {} of them without DUP",
        acked.len(),
        received.len(),
        got.len() - received.len(),
        dups_without_flag.len()
    );
    assert!(
        dups_without_flag.is_empty(),
        "received again without DUP: {dups_without_flag:?}"
    );
}

/// Crash, issue 14, with `durability = "messages"`: node a, holding 12
/// persistent QoS 1 subscribers with wills, is killed with SIGKILL while a
/// publisher on c sends to them. The survivors reap a within a lease (its
/// sessions adopted, its routes gone), each will is published once, and
/// every subscriber, reconnecting to b or c, gets every message the
/// publisher had acknowledged.
#[tokio::test]
async fn a_node_killed_mid_stream_loses_no_acknowledged_message() {
    const SUBS: usize = 12;
    let redis = RedisServer::start();
    let mut nodes = start_cluster_with(
        &redis,
        "crash",
        &["a", "b", "c"],
        "durability = \"messages\"\n",
    );
    let session = |i: usize, clean: bool| {
        let mut c = connect(Version::V5, &format!("crashing-{i}"), clean, 60);
        c.properties.session_expiry_interval = Some(600);
        c.will = Some(shardmq::protocol::LastWill {
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic(&format!("will/{i}")),
            payload: bytes::Bytes::from(format!("gone-{i}")),
            properties: Default::default(),
        });
        c
    };
    let mut wills = Raw::connect(nodes[1].addr, Version::V5, "will-watcher", true).await;
    wills.sub("will/#", QoS::AtLeastOnce).await;
    let mut subs = Vec::new();
    for i in 0..SUBS {
        let (mut c, ack) = Raw::connect_with(nodes[0].addr, session(i, true)).await;
        assert_eq!(ack.reason_code, ReasonCode::Success);
        c.sub(&format!("crash/{i}"), QoS::AtLeastOnce).await;
        subs.push(c);
    }
    for node in &nodes[1..] {
        // a's filters, and b's `will/#` on c.
        let known = within(5 * LEASE, || {
            let known = routes_known(node);
            known.len() == 2 && known.iter().all(|&n| n >= SUBS as f64)
        });
        assert!(known.is_some(), "routes known: {:?}", routes_known(node));
    }
    // Numbered messages, round-robin over the subscribers' topics.
    const COUNT: u32 = 600;
    let publisher = tokio::spawn(numbered_publisher(
        nodes[2].addr,
        "crash-publisher",
        COUNT,
        |n| format!("crash/{}", n as usize % SUBS),
    ));
    // The subscribers read (and acknowledge) for a while, then a dies.
    let mut got: Vec<Vec<(u32, bool)>> = vec![Vec::new(); SUBS];
    let until = Instant::now() + Duration::from_millis(400);
    while Instant::now() < until {
        for (i, c) in subs.iter_mut().enumerate() {
            numbered_subscriber(c, Duration::from_millis(5), &mut got[i], usize::MAX).await;
        }
    }
    let before: usize = got.iter().map(Vec::len).sum();
    assert!(before > 0, "nothing arrived before the kill");
    nodes[0].kill();
    let killed = Instant::now();
    drop(subs);
    let reaped = within(5 * LEASE, || {
        nodes[1..]
            .iter()
            .all(|n| gauge(n, "shardmq_cluster_reaps_total") >= 1.0)
    });
    let Some(reaped) = reaped else {
        panic!("a was not reaped within {:?}", 5 * LEASE)
    };
    eprintln!(
        "survivors reaped a {reaped:?} after the kill (lease {LEASE:?}), {before} messages before"
    );
    // a's lease ends at most a lease after the kill; the survivors renew
    // three times per lease, then adopt and drop the routes at once; plus
    // the metrics' own sampling.
    assert!(
        reaped <= LEASE + LEASE / 3 + Duration::from_millis(700),
        "reaped {reaped:?} after the kill"
    );
    let adopted: f64 = nodes[1..]
        .iter()
        .map(|n| gauge(n, "shardmq_cluster_adopted_total"))
        .sum();
    assert_eq!(adopted, SUBS as f64, "sessions adopted");

    let acked = tokio::time::timeout(Duration::from_secs(90), publisher)
        .await
        .expect("the publisher finishes")
        .expect("publisher");
    // Each subscriber comes back, on b or c, to its session.
    for i in 0..SUBS {
        let addr = nodes[1 + i % 2].addr;
        let (mut c, ack) = Raw::connect_with(addr, session(i, false)).await;
        assert_eq!(ack.reason_code, ReasonCode::Success, "subscriber {i} back");
        assert!(ack.session_present, "subscriber {i}'s session");
        numbered_subscriber(&mut c, Duration::from_millis(700), &mut got[i], usize::MAX).await;
        // A normal DISCONNECT: no will for this connection.
        c.disconnect().await;
    }
    let mut lost = Vec::new();
    for n in &acked {
        let i = *n as usize % SUBS;
        if !got[i].iter().any(|(m, _)| m == n) {
            lost.push(*n);
        }
    }
    if !lost.is_empty() {
        for n in &lost {
            let i = *n as usize % SUBS;
            eprintln!(
                "lost {n} for crashing-{i}: got {:?}; session {}; queue {}",
                got[i],
                redis.cli(&["HGETALL", &format!("t-cluster:s:{{crashing-{i}}}")]),
                redis.cli(&["HGETALL", &format!("t-cluster:s:{{crashing-{i}}}:q")])
            );
        }
    }
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    // Every will once.
    let mut published = Vec::new();
    while let Recv::Packet(p) = wills.recv_within(Duration::from_millis(500)).await {
        if let Packet::Publish(p) = p {
            published.push(p.topic.to_string());
            if let Some(id) = p.packet_id {
                wills.puback(id).await;
            }
        }
    }
    published.sort();
    let mut want: Vec<String> = (0..SUBS).map(|i| format!("will/{i}")).collect();
    want.sort();
    assert_eq!(published, want, "each will once");
    eprintln!(
        "{} acknowledged, all received; killed {:?} ago",
        acked.len(),
        killed.elapsed()
    );
}

/// Redis restart mid-run, issue 14: Redis is killed, stays down until every
/// node's lease has lapsed, and comes back empty. Every node takes its lease
/// back, writes its routes again, and routing across nodes works for the
/// subscriptions made before and after, with no node restarted.
#[tokio::test]
async fn the_cluster_recovers_from_a_redis_restart_by_itself() {
    let mut redis = RedisServer::start();
    let nodes = start_cluster(&redis, "redis-restart", &["a", "b", "c"]);
    let mut subs = Vec::new();
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let mut s = Raw::connect(node.addr, Version::V5, &id_on_shard("rr", i % 2), true).await;
        s.sub("rr/#", QoS::AtMostOnce).await;
        subs.push(s);
    }
    let a = &nodes[0];
    let known = |n: f64| move |node: &BrokerProcess| routes_known(node) == [n, n];
    assert!(
        within(5 * LEASE, || known(2.0)(a)).is_some(),
        "{:?}",
        routes_known(a)
    );
    let mut p = Raw::connect(a.addr, Version::V5, "rr-publisher", true).await;
    let mut check = async |tag: &str, subs: &mut Vec<Raw>| {
        p.publish(publish("rr/x", QoS::AtMostOnce, 0, tag.as_bytes()))
            .await;
        for (i, s) in subs.iter_mut().enumerate() {
            let got = drain(s, Duration::from_millis(300)).await;
            assert_eq!(
                got,
                [("rr/x".to_owned(), tag.as_bytes().to_vec())],
                "subscriber {i}, {tag}"
            );
        }
    };
    check("before", &mut subs).await;

    // Down long enough for every lease to lapse.
    redis.kill();
    for (i, node) in nodes.iter().enumerate() {
        let lost = within(5 * LEASE, || gauge(node, "shardmq_cluster_lease") == 0.0);
        assert!(lost.is_some(), "node {i} still holds its lease");
    }
    redis.restart();
    let back = Instant::now();
    for (i, node) in nodes.iter().enumerate() {
        let ok = within(10 * LEASE, || {
            node.health().0 == 200 && gauge(node, "shardmq_cluster_peers") == 2.0
        });
        assert!(
            ok.is_some(),
            "node {i} after Redis came back: {:?}",
            node.health()
        );
    }
    // a reads the others' routes again, as they wrote them again.
    assert!(
        within(10 * LEASE, || known(2.0)(a)).is_some(),
        "a knows {:?} after Redis came back",
        routes_known(a)
    );
    eprintln!("recovered {:?} after Redis came back", back.elapsed());
    check("after", &mut subs).await;
    // A subscription made now reaches a too.
    let mut late = Raw::connect(nodes[2].addr, Version::V3_1_1, "rr-late", true).await;
    late.sub("late/+", QoS::AtMostOnce).await;
    assert!(within(5 * LEASE, || routes_known(a) == [3.0, 3.0]).is_some());
    p.publish(publish("late/1", QoS::AtMostOnce, 0, b"late"))
        .await;
    assert_eq!(
        drain(&mut late, Duration::from_millis(300)).await,
        [("late/1".to_owned(), b"late".to_vec())]
    );
}

/// Restart, issue 14: node a, killed with SIGKILL and started again under
/// the same node id, serves within a second, and none of its past life's
/// routes survive in the others: its clean subscriber's route goes, its
/// persistent subscriber's stays (wherever the session went), and that
/// subscriber, back on a, gets what was published for it meanwhile.
#[tokio::test]
async fn a_restarted_node_serves_at_once_and_leaves_no_stale_route() {
    let redis = RedisServer::start();
    let mut nodes = start_cluster(&redis, "restart", &["a", "b", "c"]);
    let kept = || {
        let mut c = connect(Version::V5, "kept-sub", false, 60);
        c.properties.session_expiry_interval = Some(600);
        c
    };
    let mut clean = Raw::connect(nodes[0].addr, Version::V3_1_1, "clean-sub", true).await;
    clean.sub("stale/clean", QoS::AtLeastOnce).await;
    let (mut persistent, _) = Raw::connect_with(nodes[0].addr, kept()).await;
    persistent.sub("stale/kept", QoS::AtLeastOnce).await;
    assert!(within(5 * LEASE, || routes_known(&nodes[1]) == [2.0, 2.0]).is_some());

    nodes[0].restart();
    // Until its lease is back (its first renewal), a CONNECT gets "server
    // unavailable".
    let mut probe = loop {
        let (probe, ack) =
            Raw::connect_with(nodes[0].addr, connect(Version::V5, "probe", true, 60)).await;
        if ack.reason_code == ReasonCode::Success {
            break probe;
        }
        assert_eq!(
            ack.reason_code,
            ReasonCode::ServerUnavailable,
            "probe CONNACK"
        );
        assert!(
            nodes[0].since_exec() < Duration::from_secs(1),
            "no CONNACK in 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let served = nodes[0].since_exec();
    eprintln!("exec to first CONNACK on the restarted node: {served:?}");
    assert!(
        served < Duration::from_secs(1),
        "first CONNACK {served:?} after exec"
    );
    drop((clean, persistent));

    // Only the persistent subscriber's filter is left, on whichever node
    // holds the session now.
    let left = within(6 * LEASE, || {
        [&nodes[1], &nodes[2]].iter().all(|n| {
            let known: f64 = routes_known(n).iter().sum();
            let own = gauge(n, "shardmq_cluster_adopted_total");
            // Adopted here: the filter is this node's own, not known.
            known == if own >= 1.0 { 0.0 } else { 2.0 }
        })
    });
    assert!(
        left.is_some(),
        "routes known: b {:?}, c {:?}",
        routes_known(&nodes[1]),
        routes_known(&nodes[2])
    );
    let mut p = Raw::connect(nodes[1].addr, Version::V5, "restart-pub", true).await;
    for (i, t) in ["stale/clean", "stale/kept"].iter().enumerate() {
        p.publish(publish(t, QoS::AtLeastOnce, i as u16 + 1, t.as_bytes()))
            .await;
        assert!(matches!(p.recv().await, Packet::PubAck(_)));
    }
    let (mut back, ack) = Raw::connect_with(nodes[0].addr, kept()).await;
    assert!(ack.session_present, "the persistent session survived");
    let mut got = Vec::new();
    while let Recv::Packet(Packet::Publish(m)) = back.recv_within(Duration::from_millis(500)).await
    {
        got.push(m.topic.to_string());
        if let Some(id) = m.packet_id {
            back.puback(id).await;
        }
    }
    assert_eq!(got, ["stale/kept"]);
    probe.assert_silent().await;
}

/// Routing with real clients (rumqttc, MQTT 3.1.1 and 5): a QoS 1 stream
/// published on node a reaches a 3.1.1 subscriber on b and a 5 subscriber on
/// c, all of it and in order, and one published on c reaches b.
#[tokio::test]
async fn rumqttc_clients_on_three_nodes_exchange_messages() {
    let redis = RedisServer::start();
    let nodes = start_cluster(&redis, "rumqttc", &["a", "b", "c"]);
    let mut on_b = V3::connect(v3_options(nodes[1].addr, "rq-b")).await;
    on_b.subscribe("rq/+", rumqttc::QoS::AtLeastOnce).await;
    let mut on_c = V5::connect(v5_options(nodes[2].addr, "rq-c")).await;
    on_c.subscribe("rq/#", QoS5::AtLeastOnce).await;
    let a = &nodes[0];
    assert!(within(5 * LEASE, || routes_known(a) == [2.0, 2.0]).is_some());
    let from_a = V3::connect(v3_options(a.addr, "rq-a")).await;
    for i in 0..20 {
        from_a
            .publish(
                "rq/x",
                rumqttc::QoS::AtLeastOnce,
                false,
                format!("a{i}").as_bytes(),
            )
            .await;
    }
    for i in 0..20 {
        let want = format!("a{i}").into_bytes();
        assert_eq!(on_b.recv().await.payload.to_vec(), want, "3.1.1 on b");
        assert_eq!(on_c.recv().await.payload.to_vec(), want, "5 on c");
    }
    let from_c = V5::connect(v5_options(nodes[2].addr, "rq-c-pub")).await;
    from_c
        .publish("rq/y", QoS5::AtLeastOnce, false, b"from c")
        .await;
    assert_eq!(on_b.recv().await.payload.to_vec(), b"from c".to_vec());
}

/// A node cut off, issue 14: node a is paused (SIGSTOP) for three leases, so
/// the survivors count it dead, adopt its persistent session and publish
/// that session's will. When a runs again it takes its lease back, and ends
/// exactly that session: its client, still connected to a, gets DISCONNECT
/// 0x8E, and the will is not published a second time.
#[tokio::test]
async fn a_node_back_after_a_lapse_drops_the_sessions_others_took() {
    let redis = RedisServer::start();
    let nodes = start_cluster(&redis, "lapse", &["a", "b", "c"]);
    let mut wills = Raw::connect(nodes[1].addr, Version::V5, "lapse-wills", true).await;
    wills.sub("will/#", QoS::AtLeastOnce).await;
    let mut c = connect(Version::V5, "away", true, 60);
    c.properties.session_expiry_interval = Some(600);
    c.will = Some(shardmq::protocol::LastWill {
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic("will/away"),
        payload: bytes::Bytes::from_static(b"away"),
        properties: Default::default(),
    });
    let (mut away, ack) = Raw::connect_with(nodes[0].addr, c).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    // A clean client on a: its session is claimed too, adopted, and ended
    // by the adopter (it had no expiry).
    let mut clean = Raw::connect(nodes[0].addr, Version::V5, "lapse-clean", true).await;

    nodes[0].pause(true);
    let adopted = within(6 * LEASE, || {
        nodes[1..]
            .iter()
            .map(|n| gauge(n, "shardmq_cluster_adopted_total"))
            .sum::<f64>()
            >= 2.0
    });
    nodes[0].pause(false);
    assert!(adopted.is_some(), "a's sessions were not adopted");
    match away.recv_within(Duration::from_secs(5)).await {
        Recv::Packet(Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, ReasonCode::SessionTakenOver)
        }
        other => panic!("the client on a got {other:?}"),
    }
    let mut published = Vec::new();
    while let Recv::Packet(p) = wills.recv_within(Duration::from_millis(700)).await {
        if let Packet::Publish(p) = p {
            published.push(p.topic.to_string());
        }
    }
    assert_eq!(published, ["will/away"], "the will once");
    match clean.recv_within(Duration::from_secs(2)).await {
        Recv::Packet(Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, ReasonCode::SessionTakenOver)
        }
        other => panic!("the clean client on a got {other:?}"),
    }
}
