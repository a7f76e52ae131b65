use std::collections::HashSet;

use bytes::Bytes;

use super::*;
use crate::protocol::{QoS, SubscriptionOptions};
use crate::topic::TopicName;

fn msg(topic: &str, qos: QoS, retain: bool) -> Message {
    Message {
        topic: TopicName::new(topic.to_owned()).unwrap(),
        payload: Bytes::from_static(b"x"),
        qos,
        retain,
        properties: None,
        publisher: ByteString::from("publisher"),
        expires_at: None,
        id: None,
    }
}

fn sub(qos: QoS) -> Subscription {
    Subscription {
        options: SubscriptionOptions {
            qos,
            ..Default::default()
        },
        id: None,
    }
}

fn filter(f: &str) -> TopicFilter {
    TopicFilter::new(f.to_owned()).unwrap()
}

struct Collect<'a> {
    offline: HashSet<&'a str>,
    got: Vec<(String, Delivery)>,
}

impl Recipients for Collect<'_> {
    fn is_online(&self, client: &ByteString) -> bool {
        !self.offline.contains(&client[..])
    }
    fn deliver(&mut self, client: &ByteString, delivery: Delivery) {
        self.got.push((client.to_string(), delivery));
    }
}

fn route_all(r: &mut Router, m: &Message, offline: &[&str]) -> Vec<(String, Delivery)> {
    let mut c = Collect {
        offline: offline.iter().copied().collect(),
        got: Vec::new(),
    };
    r.route(m, &mut c, None);
    c.got.sort_by(|a, b| a.0.cmp(&b.0));
    c.got
}

#[test]
fn overlapping_subscriptions_give_one_delivery_at_max_qos_with_all_ids() {
    let mut r = Router::default();
    let c = ByteString::from("c");
    r.subscribe(
        &c,
        &filter("a/+"),
        Subscription {
            id: Some(1),
            ..sub(QoS::AtMostOnce)
        },
    );
    r.subscribe(
        &c,
        &filter("a/#"),
        Subscription {
            id: Some(2),
            ..sub(QoS::ExactlyOnce)
        },
    );
    r.subscribe(&c, &filter("a/b"), sub(QoS::AtLeastOnce));
    r.subscribe(&ByteString::from("d"), &filter("#"), sub(QoS::ExactlyOnce));
    let got = route_all(&mut r, &msg("a/b", QoS::AtLeastOnce, false), &[]);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, "c");
    assert_eq!(
        got[0].1.qos,
        QoS::AtLeastOnce,
        "capped by the published QoS"
    );
    let mut ids = got[0].1.subscription_ids.clone();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    assert_eq!(got[1].0, "d");
}

#[test]
fn no_local_skips_the_publisher() {
    let mut r = Router::default();
    let mut options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    options.no_local = true;
    r.subscribe(
        &ByteString::from("publisher"),
        &filter("a"),
        Subscription { options, id: None },
    );
    r.subscribe(
        &ByteString::from("other"),
        &filter("a"),
        Subscription { options, id: None },
    );
    let got = route_all(&mut r, &msg("a", QoS::AtLeastOnce, false), &[]);
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        ["other"]
    );
}

#[test]
fn retain_flag_only_for_retain_as_published() {
    let mut r = Router::default();
    let mut rap = sub(QoS::AtMostOnce);
    rap.options.retain_as_published = true;
    r.subscribe(&ByteString::from("a"), &filter("t"), rap);
    r.subscribe(&ByteString::from("b"), &filter("t"), sub(QoS::AtMostOnce));
    let got = route_all(&mut r, &msg("t", QoS::AtMostOnce, true), &[]);
    assert!(got[0].1.retain);
    assert!(!got[1].1.retain);
}

#[test]
fn share_group_round_robins_and_skips_offline_members() {
    let mut r = Router::default();
    let g = filter("$share/g/jobs/+");
    for m in ["m1", "m2", "m3"] {
        r.subscribe(&ByteString::from(m), &g, sub(QoS::AtLeastOnce));
    }
    r.subscribe(
        &ByteString::from("solo"),
        &filter("jobs/#"),
        sub(QoS::AtLeastOnce),
    );
    let mut counts = std::collections::HashMap::new();
    for _ in 0..30 {
        let got = route_all(&mut r, &msg("jobs/1", QoS::AtLeastOnce, false), &["m2"]);
        assert_eq!(got.len(), 2, "one group member and the plain subscriber");
        for (c, _) in got {
            *counts.entry(c).or_insert(0) += 1;
        }
    }
    assert_eq!(counts.get("solo"), Some(&30));
    assert_eq!(counts.get("m1"), Some(&15));
    assert_eq!(counts.get("m3"), Some(&15));
    assert_eq!(counts.get("m2"), None);
    // All offline: still delivered (queued) to one member.
    let got = route_all(
        &mut r,
        &msg("jobs/1", QoS::AtLeastOnce, false),
        &["m1", "m2", "m3"],
    );
    assert_eq!(got.len(), 2);
}

#[test]
fn unsubscribe_and_cursor_cleanup() {
    let mut r = Router::default();
    let g = filter("$share/g/x");
    let m = ByteString::from("m");
    assert!(!r.subscribe(&m, &g, sub(QoS::AtMostOnce)));
    assert!(r.subscribe(&m, &g, sub(QoS::AtLeastOnce)));
    route_all(&mut r, &msg("x", QoS::AtMostOnce, false), &[]);
    assert_eq!(r.cursors.len(), 1);
    assert!(r.unsubscribe(&m, &g));
    assert!(!r.unsubscribe(&m, &g));
    assert!(r.cursors.is_empty());
    assert!(r.is_empty());
}

#[test]
fn share_groups_are_assigned_to_one_shard_weighted_by_online_members() {
    let mut r = Router::default();
    let g = filter("$share/g/a/+");
    let t = TopicName::new("a/b").unwrap();
    let members = |members, online| GroupMembers { members, online };
    r.set_group(&g, 0, members(1, 1));
    r.set_group(&g, 1, members(3, 3));
    let picks: Vec<usize> = (0..8).map(|_| r.assign_groups(&t)[0].0).collect();
    assert_eq!(picks.iter().filter(|&&s| s == 0).count(), 2, "{picks:?}");
    assert_eq!(picks.iter().filter(|&&s| s == 1).count(), 6, "{picks:?}");
    // Shard 1's members all offline: shard 0 serves every message.
    r.set_group(&g, 1, members(3, 0));
    assert!((0..5).all(|_| r.assign_groups(&t) == [(0, g.as_bytestring().clone())]));
    // Nobody online: by member count.
    r.set_group(&g, 0, members(1, 0));
    let picks: Vec<usize> = (0..8).map(|_| r.assign_groups(&t)[0].0).collect();
    assert_eq!(picks.iter().filter(|&&s| s == 1).count(), 6, "{picks:?}");
    // No members left: no group to serve.
    r.set_group(&g, 0, members(0, 0));
    r.set_group(&g, 1, members(0, 0));
    assert!(r.assign_groups(&t).is_empty());
    assert!(r
        .assign_groups(&TopicName::new("other").unwrap())
        .is_empty());
}

#[test]
fn route_serves_only_the_share_groups_it_is_given() {
    let mut r = Router::default();
    r.subscribe(
        &ByteString::from("m"),
        &filter("$share/g/t"),
        sub(QoS::AtMostOnce),
    );
    r.subscribe(&ByteString::from("d"), &filter("t"), sub(QoS::AtMostOnce));
    let m = msg("t", QoS::AtMostOnce, false);
    let mut c = Collect {
        offline: HashSet::new(),
        got: Vec::new(),
    };
    r.route(&m, &mut c, Some(&[]));
    assert_eq!(c.got.len(), 1, "the direct subscriber only");
    r.route(&m, &mut c, Some(&[ByteString::from("$share/g/t")]));
    assert_eq!(c.got.len(), 3);
}
