//! End to end, issue 14 so far: nodes sharing one Redis hold leases, learn
//! of each other's joins and deaths within a lease, and report a lost lease
//! on `/health`. Real broker processes on loopback ports, a real
//! `redis-server`, `kill -9`.

mod common;

use std::time::{Duration, Instant};

use common::broker_process::{free_port, BrokerProcess};
use common::redis::RedisServer;

/// Short, so deaths show quickly: renewed every 333 ms.
const LEASE: Duration = Duration::from_secs(1);

fn node_config(redis: &RedisServer, node: &str) -> String {
    format!(
        "[store]\nkind = \"redis\"\nredis = \"{}\"\nkey-prefix = \"t-cluster:\"\ntimeout = \"300ms\"\n\n\
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

#[test]
fn nodes_learn_of_joins_and_deaths_within_a_lease() {
    let redis = RedisServer::start();
    let a = BrokerProcess::start("cluster-a", &node_config(&redis, "a"));
    let mut b = BrokerProcess::start("cluster-b", &node_config(&redis, "b"));
    for (name, node) in [("a", &a), ("b", &b)] {
        let seen = within(3 * LEASE, || {
            gauge(node, "shardmq_cluster_peers") == 1.0
                && gauge(node, "shardmq_cluster_lease") == 1.0
        });
        assert!(
            seen.is_some(),
            "node {name}: peers {}, lease {}",
            gauge(node, "shardmq_cluster_peers"),
            gauge(node, "shardmq_cluster_lease")
        );
        assert_eq!(node.health().0, 200, "node {name} /health");
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
