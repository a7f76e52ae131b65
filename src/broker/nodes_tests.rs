//! Routing between nodes without sockets: two or three brokers stand for
//! nodes of one shard each, and the test carries their `to_nodes` messages.

use std::time::Instant;

use super::flow_tests::{exchange, taken};
use super::tests::{connect, online, pid, publish, settings, subscribe};
use super::*;
use crate::cluster::frame::Message as NodeMessage;
use crate::cluster::routes::RouteUpdate;
use crate::protocol::{Ack, Version};

/// A node of one shard, with a store (every cluster node has one).
fn node() -> Broker {
    Broker::new(0, 1, settings()).with_store()
}

/// Tells `b` that `node` subscribes to `filter`, as the feed would.
fn learn(b: &mut Broker, node: &str, filter: &str) {
    b.route_updates(vec![RouteUpdate::Change {
        node: node.into(),
        shard: 0,
        filter: crate::topic::TopicFilter::new(filter.to_owned()).unwrap(),
        added: true,
    }]);
}

/// Carries every message `from` (named `name`) has for `to` (named `to_name`).
fn carry(from: &mut Broker, name: &str, to: &mut Broker, to_name: &str, now: Instant) -> usize {
    let name = ByteString::from(name);
    let (mine, rest): (Vec<_>, Vec<_>) = from.to_nodes.drain(..).partition(|(n, _)| n == to_name);
    from.to_nodes = rest;
    let n = mine.len();
    for (_, m) in mine {
        to.on_node_message(&name, m, now);
    }
    n
}

/// Node a, whose publisher on connection 1 sent a QoS 1 message to `t`,
/// which node b subscribes to: a's own store has answered the batch, b has
/// not. Returns a and the batch's ticket.
fn waiting_for_b(now: Instant) -> (Broker, u64) {
    let mut a = node();
    learn(&mut a, "b", "t");
    let mut publ = online(&mut a, 1, connect(Version::V5, "p", true));
    a.handle(&mut publ, publish("t", QoS::AtLeastOnce, 1, b"m"), now)
        .unwrap();
    let ticket = a.seal_acks().expect("held");
    a.stored(ticket, true);
    (a, ticket)
}

fn publishes(b: &mut Broker, conn: ConnId) -> Vec<Vec<u8>> {
    b.take_output(conn)
        .packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.payload.to_vec()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_puback_waits_until_the_node_the_message_went_to_has_it() {
    let now = Instant::now();
    let (mut a, mut b) = (node(), node());
    let mut sub = online(&mut b, 1, connect(Version::V5, "s", true));
    b.handle(&mut sub, subscribe("t/+", QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(1);
    learn(&mut a, "b", "t/+");
    let mut publ = online(&mut a, 1, connect(Version::V3_1_1, "p", true));
    a.handle(&mut publ, publish("t/1", QoS::AtLeastOnce, 9, b"m"), now)
        .unwrap();
    assert!(a.take_output(1).packets.is_empty(), "no PUBACK yet");
    // The batch's barrier goes behind the message; a's own store answers.
    let ticket = a.seal_acks().expect("held");
    a.stored(ticket, true);
    assert!(a.take_output(1).packets.is_empty(), "b has not answered");
    assert_eq!(carry(&mut a, "a", &mut b, "b", now), 2, "route, barrier");
    assert_eq!(publishes(&mut b, 1), [b"m".to_vec()]);
    // b answers once its own batch is through its store.
    let theirs = b.seal_acks().expect("the barrier is held like an ack");
    assert!(b.to_nodes.is_empty());
    b.stored(theirs, true);
    assert!(matches!(
        &b.to_nodes[..],
        [(n, NodeMessage::Stored { shard: 0, stored: true, .. })] if n == "a"
    ));
    carry(&mut b, "b", &mut a, "a", now);
    assert_eq!(a.take_output(1).packets, [Packet::PubAck(Ack::new(pid(9)))]);
}

#[test]
fn a_node_that_dies_before_answering_costs_the_publisher_its_connection_not_a_message() {
    let now = Instant::now();
    let (mut a, ticket) = waiting_for_b(now);
    a.nodes_lost(Some("c"), now);
    assert_eq!(a.take_output(1).close, None, "c had nothing of it");
    a.nodes_lost(Some("b"), now);
    let out = a.take_output(1);
    assert!(out.packets.is_empty(), "{out:?}");
    assert_eq!(out.close, Some(ReasonCode::UnspecifiedError));
    // A late answer from b changes nothing.
    a.on_node_message(
        &"b".into(),
        NodeMessage::Stored {
            shard: 0,
            ticket,
            stored: true,
        },
        now,
    );
    assert!(a.take_output(1).packets.is_empty());
}

#[test]
fn a_node_that_does_not_answer_in_time_fails_the_batch() {
    let now = Instant::now();
    let (mut a, _) = waiting_for_b(now);
    a.tick(now + acks::NODE_ANSWER / 2);
    assert_eq!(a.take_output(1).close, None);
    a.tick(now + acks::NODE_ANSWER);
    assert_eq!(a.take_output(1).close, Some(ReasonCode::UnspecifiedError));
}

#[test]
fn qos0_and_unmatched_publishes_are_acknowledged_at_once() {
    let now = Instant::now();
    let mut a = node();
    learn(&mut a, "b", "elsewhere");
    let mut publ = online(&mut a, 1, connect(Version::V3_1_1, "p", true));
    a.handle(&mut publ, publish("t", QoS::AtLeastOnce, 1, b"m"), now)
        .unwrap();
    assert_eq!(a.take_output(1).packets, [Packet::PubAck(Ack::new(pid(1)))]);
    assert!(a.to_nodes.is_empty());
}

#[test]
fn a_share_group_across_nodes_gets_each_message_once() {
    let now = Instant::now();
    let (mut a, mut b) = (node(), node());
    let mut ma = online(&mut a, 1, connect(Version::V5, "ma", true));
    a.handle(&mut ma, subscribe("$share/g/t/#", QoS::AtMostOnce), now)
        .unwrap();
    let mut mb = online(&mut b, 1, connect(Version::V5, "mb", true));
    b.handle(&mut mb, subscribe("$share/g/t/#", QoS::AtMostOnce), now)
        .unwrap();
    a.take_output(1);
    b.take_output(1);
    learn(&mut a, "b", "$share/g/t/#");
    learn(&mut b, "a", "$share/g/t/#");
    let mut publ = online(&mut a, 2, connect(Version::V5, "p", true));
    for i in 0..10u8 {
        let payload: &'static [u8] = Box::leak(Box::new([i]));
        a.handle(&mut publ, publish("t/x", QoS::AtMostOnce, 0, payload), now)
            .unwrap();
    }
    carry(&mut a, "a", &mut b, "b", now);
    let (on_a, on_b) = (publishes(&mut a, 1), publishes(&mut b, 1));
    assert_eq!(on_a.len() + on_b.len(), 10, "a {on_a:?}, b {on_b:?}");
    assert!(!on_a.is_empty() && !on_b.is_empty(), "both nodes serve it");
    let mut all: Vec<u8> = on_a.into_iter().chain(on_b).flatten().collect();
    all.sort();
    assert_eq!(all, (0..10).collect::<Vec<u8>>());
    // b routes what a sent it to its own members only, never back.
    assert!(b.to_nodes.is_empty());
}

#[test]
fn an_ack_behind_one_held_for_a_node_waits_its_turn() {
    let now = Instant::now();
    let mut a = node();
    learn(&mut a, "b", "far");
    let mut publ = online(&mut a, 1, connect(Version::V3_1_1, "p", true));
    a.handle(&mut publ, publish("far", QoS::AtLeastOnce, 1, b"1"), now)
        .unwrap();
    a.handle(&mut publ, publish("near", QoS::AtLeastOnce, 2, b"2"), now)
        .unwrap();
    assert!(a.take_output(1).packets.is_empty(), "2 waits behind 1");
    let ticket = a.seal_acks().expect("held");
    a.stored(ticket, true);
    a.on_node_message(
        &"b".into(),
        NodeMessage::Stored {
            shard: 0,
            ticket,
            stored: true,
        },
        now,
    );
    assert_eq!(
        a.take_output(1).packets,
        [
            Packet::PubAck(Ack::new(pid(1))),
            Packet::PubAck(Ack::new(pid(2)))
        ]
    );
}

/// A persistent session `s` subscribed to `t` at QoS 1 on connection
/// `conn`, claimed at `generation` after `previous`.
fn claimed_subscriber(b: &mut Broker, conn: ConnId, generation: u64, previous: Option<&str>) {
    let now = Instant::now();
    let claim = crate::store::Claim {
        generation,
        previous: previous.map(str::to_owned),
        session: None,
        orphan_will: None,
    };
    assert!(b.claimed(&ByteString::from("s"), claim, now));
    let mut c = online(b, conn, connect(Version::V5, "s", false));
    b.handle(&mut c, subscribe("t", QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(conn);
}

/// Session `s` moves from node a to node b while node c publishes to it:
/// c's index names both a (which forwards to b what reaches it) and b.
/// `forwarded_first`: whether a's forward reaches b before c's route.
fn moved_while_routed_to_both(forwarded_first: bool) -> (Broker, Vec<Vec<u8>>) {
    let now = Instant::now();
    let (mut a, mut b, mut c) = (node(), node(), node());
    claimed_subscriber(&mut a, 1, 5, None);
    let me = crate::store::Owner {
        node: "b".into(),
        boot: 2,
    };
    let next = b.after_claim(&"s".into(), 6, Some("a#1"), &me, &[life_of_a()], now);
    assert_eq!(next, AfterClaim::Wait);
    assert_eq!(carry(&mut b, "b", &mut a, "a", now), 1, "the takeover");
    assert_eq!(carry(&mut a, "a", &mut b, "b", now), 1, "its answer");
    assert!(!b.awaits_handover(&"s".into()));
    claimed_subscriber(&mut b, 2, 6, Some("a#1"));
    learn(&mut c, "a", "t");
    learn(&mut c, "b", "t");
    let mut publ = online(&mut c, 3, connect(Version::V5, "p", true));
    c.handle(&mut publ, publish("t", QoS::AtLeastOnce, 1, b"m"), now)
        .unwrap();
    let routed_to_b = c
        .to_nodes
        .iter()
        .filter(|(n, m)| n == "b" && matches!(m, NodeMessage::Route { .. }))
        .count();
    assert_eq!(routed_to_b, 1, "c routes to b too");
    if forwarded_first {
        carry(&mut c, "c", &mut a, "a", now);
        assert!(carry(&mut a, "a", &mut b, "b", now) >= 1, "a forwards");
        carry(&mut c, "c", &mut b, "b", now);
    } else {
        carry(&mut c, "c", &mut b, "b", now);
        carry(&mut c, "c", &mut a, "a", now);
        assert!(carry(&mut a, "a", &mut b, "b", now) >= 1, "a forwards");
    }
    let got = publishes(&mut b, 2);
    (b, got)
}

/// Issue 14, takeover: a message routed to both owners of a session that
/// moves reaches its client once, in either order of arrival.
#[test]
fn a_session_moved_here_gets_a_message_routed_to_both_owners_once() {
    for forwarded_first in [true, false] {
        let (b, got) = moved_while_routed_to_both(forwarded_first);
        assert_eq!(
            got,
            vec![b"m".to_vec()],
            "forwarded first: {forwarded_first}"
        );
        assert_eq!(b.stats.moved_duplicates, 1);
    }
}

/// Issue 14, takeover with `durability = "sessions"`, where only the old
/// owner's memory holds a session's messages: they move with it, before the
/// CONNACK on the new owner, and what the client had been sent comes again
/// with DUP.
#[test]
fn a_session_taken_over_brings_the_messages_it_held() {
    let now = Instant::now();
    let (mut a, mut b) = (node(), node());
    claimed_subscriber(&mut a, 1, 5, None);
    let mut publ = online(&mut a, 3, connect(Version::V5, "p", true));
    for (n, m) in [b"m1", b"m2"].into_iter().enumerate() {
        a.handle(
            &mut publ,
            publish("t", QoS::AtLeastOnce, n as u16 + 1, m),
            now,
        )
        .unwrap();
    }
    assert_eq!(publishes(&mut a, 1).len(), 2, "sent on a, not acknowledged");
    let me = crate::store::Owner {
        node: "b".into(),
        boot: 2,
    };
    let next = b.after_claim(&"s".into(), 6, Some("a#1"), &me, &[life_of_a()], now);
    assert_eq!(next, AfterClaim::Wait);
    carry(&mut b, "b", &mut a, "a", now);
    assert_eq!(a.stats.handed_over, 2);
    assert_eq!(
        carry(&mut a, "a", &mut b, "b", now),
        3,
        "two messages, then the answer"
    );
    assert!(!b.awaits_handover(&"s".into()));
    let options = crate::protocol::SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    let stored = crate::store::StoredSession {
        expiry: std::time::Duration::from_secs(600),
        expires_in: None,
        subscriptions: vec![(
            crate::topic::TopicFilter::new("t".to_owned()).unwrap(),
            crate::session::Subscription { options, id: None },
        )],
        queued: Vec::new(),
    };
    let claim = crate::store::Claim {
        generation: 6,
        previous: Some("a#1".into()),
        session: Some(stored),
        orphan_will: None,
    };
    assert!(b.claimed(&"s".into(), claim, now));
    b.connect(2, &connect(Version::V5, "s", false), now)
        .expect("accepted");
    let resent: Vec<_> = b
        .take_output(2)
        .packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.payload.to_vec(), p.dup)),
            _ => None,
        })
        .collect();
    assert_eq!(resent, vec![(b"m1".to_vec(), true), (b"m2".to_vec(), true)]);
}

/// Issue 14, flow control across nodes: a publisher on node a feeding a
/// subscriber on node b that does not read is held after a bounded number
/// of publishes, and goes on once the subscriber has read and acknowledged
/// them, nothing lost. `on`: the shard of b the subscriber is on (0 takes
/// the link, so the relay holds the credit itself; 1 holds it for 0).
fn held_across_nodes(on: usize) {
    let now = Instant::now();
    let mut a = node();
    let mut b = [Broker::new(0, 2, settings()), Broker::new(1, 2, settings())];
    let mut sub = online(&mut b[on], 1, connect(Version::V5, "sub", true));
    b[on]
        .handle(&mut sub, subscribe("t", QoS::AtLeastOnce), now)
        .unwrap();
    b[on].take_output(1);
    exchange(&mut b, now);
    learn(&mut a, "b", "t");
    let mut publ = online(&mut a, 7, connect(Version::V5, "pub", true));
    let mut sent = 0u16;
    let step = |a: &mut Broker, b: &mut [Broker; 2]| {
        carry(a, "a", &mut b[0], "b", now);
        exchange(b, now);
        exchange(b, now);
        carry(&mut b[0], "b", a, "a", now);
    };
    while !a.out_of_credit(7) {
        sent += 1;
        assert!(sent <= 1000, "never held");
        a.handle(&mut publ, publish("t", QoS::AtLeastOnce, sent, b"m"), now)
            .unwrap();
        a.take_output(7);
        step(&mut a, &mut b);
    }
    // The subscriber's own backlog, b's relay window, a's window to nodes.
    assert!(
        u32::from(sent) <= NODE_WINDOW + FORWARD_WINDOW + 10,
        "held after {sent} publishes"
    );
    let mut acked = 0;
    for _ in 0..40 {
        for id in taken(&mut b[on], 1, now) {
            b[on]
                .handle(&mut sub, Packet::PubAck(Ack::new(pid(id))), now)
                .unwrap();
            acked += 1;
        }
        step(&mut a, &mut b);
    }
    assert_eq!(acked, sent, "nothing lost");
    assert!(!a.out_of_credit(7), "every credit came back");
}

#[test]
fn a_congested_subscriber_on_another_node_holds_its_publisher_until_it_drains() {
    held_across_nodes(1);
}

#[test]
fn a_congested_subscriber_on_the_shard_that_takes_the_link_holds_its_publisher_too() {
    held_across_nodes(0);
}

/// Node a's life, as b knows it.
fn life_of_a() -> crate::store::Owner {
    crate::store::Owner {
        node: "a".into(),
        boot: 1,
    }
}

/// With `durability = "messages"`, a message the old owner forwards before
/// the new owner's claim is through is only in the new owner's memory: the
/// batch its barrier joins there fails, so its publisher publishes again
/// instead of holding an acknowledgement for a message a crash would lose.
#[test]
fn a_delivery_forwarded_before_the_claim_is_through_fails_its_batch() {
    let now = Instant::now();
    let (mut a, mut b) = (node().with_stored_messages(), node().with_stored_messages());
    claimed_subscriber(&mut a, 1, 5, None);
    let takeover = NodeMessage::Takeover {
        client_id: "s".into(),
        generation: 6,
        new_owner: crate::store::Owner {
            node: "b".into(),
            boot: 2,
        },
    };
    a.on_node_message(&"b".into(), takeover, now);
    let mut publ = online(&mut a, 3, connect(Version::V5, "p", true));
    a.handle(&mut publ, publish("t", QoS::AtLeastOnce, 1, b"m"), now)
        .unwrap();
    let ticket = a.seal_acks().expect("held");
    a.stored(ticket, true);
    let sent = format!("{:?}", a.to_nodes);
    assert!(carry(&mut a, "a", &mut b, "b", now) >= 3, "{sent}");
    let theirs = b.seal_acks().expect("a's barrier is held");
    b.stored(theirs, true);
    assert!(
        matches!(
            &b.to_nodes[..],
            [(n, NodeMessage::Stored { stored: false, .. })] if n == "a"
        ),
        "{:?}",
        b.to_nodes
    );
    carry(&mut b, "b", &mut a, "a", now);
    assert_eq!(a.take_output(3).close, Some(ReasonCode::UnspecifiedError));
}
