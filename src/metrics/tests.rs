use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::topic::TopicName;

#[test]
fn health_moves_forward_only() {
    let m = Metrics::new(1, 0);
    assert_eq!(m.health(), Health::Starting);
    m.set_health(Health::Serving);
    assert_eq!(m.health(), Health::Serving);
    m.set_health(Health::Stopping);
    m.set_health(Health::Serving);
    m.set_health(Health::Starting);
    assert_eq!(m.health(), Health::Stopping);
}

#[test]
fn admission_counts_up_to_the_limit_and_releases_on_drop() {
    let m = Arc::new(Metrics::new(2, 2));
    let a = m.admit(0, || false).expect("first");
    let b = m.admit(1, || false).expect("second");
    assert!(m.admit(1, || false).is_none(), "third is over the limit");
    assert_eq!(m.shard(1).refused.load(Relaxed), 1);
    assert_eq!(m.totals().connections, 2);
    drop(a);
    assert_eq!(m.shard(0).connections.load(Relaxed), 0);
    let c = m.admit(0, || false).expect("a slot was freed");
    drop((b, c));
    assert_eq!(m.totals().connections, 0);
    assert_eq!(m.connections.load(Relaxed), 0);
}

#[test]
fn a_takeover_is_admitted_at_the_limit() {
    let m = Arc::new(Metrics::new(1, 1));
    let old = m.admit(0, || unreachable!("only asked at the limit"));
    let new = m.admit(0, || true).expect("takeover of an online session");
    assert_eq!(m.connections.load(Relaxed), 2);
    drop((old, new));
    assert_eq!(m.connections.load(Relaxed), 0);
    assert_eq!(m.shard(0).refused.load(Relaxed), 0);
}

#[test]
fn zero_means_no_limit() {
    let m = Arc::new(Metrics::new(1, 0));
    let held: Vec<_> = (0..1000)
        .map(|_| m.admit(0, || false).expect("no limit"))
        .collect();
    assert_eq!(m.totals().connections, 1000);
    drop(held);
    assert_eq!(m.totals().connections, 0);
}

#[test]
fn lag_buckets_are_cumulative() {
    let h = LagHistogram::default();
    h.observe(Duration::from_micros(50));
    h.observe(Duration::from_micros(100));
    h.observe(Duration::from_millis(3));
    h.observe(Duration::from_secs(5));
    let s = h.snapshot();
    assert_eq!(s.count, 4);
    assert_eq!(s.buckets[0], (0.0001, 2), "<= 100 us");
    assert_eq!(s.buckets[4], (0.0025, 2), "<= 2.5 ms");
    assert_eq!(s.buckets[5], (0.005, 3), "<= 5 ms");
    assert_eq!(s.buckets.last(), Some(&(1.0, 3)), "5 s is only in +Inf");
    assert!((s.sum - 5.00315).abs() < 1e-9, "{}", s.sum);
}

#[test]
fn render_has_help_type_and_shard_labels() {
    let m = Metrics::new(2, 10);
    m.shard(1).received[1].store(7, Relaxed);
    m.shard(0).dropped[DropKind::Expired as usize].store(3, Relaxed);
    m.shard(1).lag.observe(Duration::from_millis(1));
    let text = render(&m);
    for line in [
        "# TYPE shardmq_connections gauge",
        "# TYPE shardmq_messages_received_total counter",
        "# TYPE shardmq_event_loop_lag_seconds histogram",
        "shardmq_max_connections 10",
        "shardmq_messages_received_total{shard=\"1\",qos=\"1\"} 7",
        "shardmq_messages_received_total{shard=\"0\",qos=\"1\"} 0",
        "shardmq_messages_dropped_total{shard=\"0\",reason=\"expired\"} 3",
        "shardmq_event_loop_lag_seconds_bucket{shard=\"1\",le=\"0.001\"} 1",
        "shardmq_event_loop_lag_seconds_bucket{shard=\"1\",le=\"+Inf\"} 1",
        "shardmq_event_loop_lag_seconds_count{shard=\"0\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // Every family has HELP then TYPE, and every sample belongs to the family
    // declared above it.
    let mut family = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().unwrap();
        } else if !line.starts_with("# HELP ") {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with(family), "{name} outside {family}");
            assert!(name.starts_with("shardmq_"), "{name}");
        }
    }
}

#[test]
fn sys_topics_are_valid_names_with_numbers() {
    let m = Metrics::new(2, 0);
    m.shard(0).sent[0].store(4, Relaxed);
    m.shard(1).sent[2].store(5, Relaxed);
    m.shard(0).retained.store(3, Relaxed);
    m.shard(1).retained.store(3, Relaxed);
    let messages = sys_messages(&m);
    for (topic, _) in &messages {
        let name = TopicName::new(*topic).expect("valid topic");
        assert!(name.is_system(), "{topic}");
    }
    let get = |t: &str| &messages.iter().find(|(topic, _)| *topic == t).unwrap().1;
    assert_eq!(get("$SYS/broker/messages/sent"), "9");
    assert_eq!(
        get("$SYS/broker/retained messages/count"),
        "3",
        "not summed"
    );
    assert!(get("$SYS/broker/version").starts_with("shardmq "));
    assert!(get("$SYS/broker/uptime").ends_with(" seconds"));
}

#[test]
fn event_sink_counters_sum_over_shards_in_metrics_text() {
    let on_publish = 2;
    let sink = Arc::new(EventSinkMetrics::new(
        "127.0.0.1:8890".to_owned(),
        vec![0, on_publish],
        2,
    ));
    SinkShardMetrics::add(&sink.shard(0).sent, 5);
    SinkShardMetrics::add(&sink.shard(1).sent, 7);
    SinkShardMetrics::add(&sink.shard(1).dropped[on_publish], 3);
    let m = Metrics::new(2, 0).with_event_sinks(vec![sink]);
    let text = render(&m);
    assert!(
        text.contains("shardmq_events_sent_total{sink=\"127.0.0.1:8890\"} 12\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "shardmq_events_dropped_total{sink=\"127.0.0.1:8890\",hook=\"on_publish\"} 3\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "shardmq_events_dropped_total{sink=\"127.0.0.1:8890\",hook=\"on_register\"} 0\n"
        ),
        "{text}"
    );
    assert_eq!(m.event_sinks()[0].dropped_total(), 3);
}
