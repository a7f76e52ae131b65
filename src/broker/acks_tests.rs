//! `durability = "messages"` without sockets or Redis: what is written for
//! stored sessions, and when the publisher's acknowledgement goes out.

use std::time::Instant;

use super::tests::{connect, deliver_forwards, online, pid, publish, settings, subscribe};
use super::*;
use crate::protocol::{Ack, Version};
use crate::session::StoredState;
use crate::store::{Claim, StoreOp};

fn stored_messages(shard: usize) -> Broker {
    Broker::new(shard, 2, settings())
        .with_store()
        .with_stored_messages()
}

/// A persistent session `id` claimed with `generation` and subscribed to
/// `filter`, on connection `conn`.
fn stored_subscriber(b: &mut Broker, conn: ConnId, id: &str, filter: &str) -> Client {
    let now = Instant::now();
    let claim = Claim {
        generation: 5,
        previous: None,
        session: None,
        orphan_will: None,
    };
    assert!(b.claimed(&ByteString::from(id), claim, now));
    let mut c = online(b, conn, connect(Version::V3_1_1, id, false));
    b.handle(&mut c, subscribe(filter, QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(conn);
    b.take_store_ops();
    c
}

fn acks(b: &mut Broker, conn: ConnId) -> Vec<Packet> {
    b.take_output(conn)
        .packets
        .into_iter()
        .filter(|p| matches!(p, Packet::PubAck(_) | Packet::PubRec(_)))
        .collect()
}

#[test]
fn a_delivery_is_stored_with_its_packet_id_and_trimmed_on_puback() {
    let now = Instant::now();
    let mut b = stored_messages(0);
    let mut sub = stored_subscriber(&mut b, 1, "s", "t");
    let mut publ = online(&mut b, 2, connect(Version::V3_1_1, "p", true));
    b.handle(&mut publ, publish("t", QoS::AtLeastOnce, 7, b"m"), now)
        .unwrap();
    let ops = b.take_store_ops();
    let [StoreOp::Queue {
        client_id,
        generation: 5,
        stored: 1,
        packet_id: Some(sent),
        origin: 0,
        ..
    }] = &ops[..]
    else {
        panic!("{ops:?}");
    };
    assert_eq!(client_id, "s");
    b.handle(&mut sub, Packet::PubAck(Ack::new(*sent)), now)
        .unwrap();
    let ops = b.take_store_ops();
    assert!(
        matches!(
            &ops[..],
            [StoreOp::Trim {
                stored: 1,
                generation: 5,
                ..
            }]
        ),
        "{ops:?}"
    );
}

#[test]
fn clean_sessions_and_qos0_are_not_stored() {
    let now = Instant::now();
    let mut b = stored_messages(0);
    let mut clean = online(&mut b, 1, connect(Version::V3_1_1, "c", true));
    b.handle(&mut clean, subscribe("t", QoS::AtLeastOnce), now)
        .unwrap();
    let _stored = stored_subscriber(&mut b, 2, "s", "t");
    let mut publ = online(&mut b, 3, connect(Version::V3_1_1, "p", true));
    b.take_store_ops();
    b.handle(&mut publ, publish("t", QoS::AtMostOnce, 0, b"q0"), now)
        .unwrap();
    assert_eq!(b.take_store_ops(), []);
    b.handle(&mut publ, publish("t", QoS::AtLeastOnce, 1, b"q1"), now)
        .unwrap();
    let ops = b.take_store_ops();
    assert!(
        matches!(&ops[..], [StoreOp::Queue { client_id, .. }] if client_id == "s"),
        "only the stored session's delivery: {ops:?}"
    );
}

#[test]
fn the_ack_waits_for_every_shard_that_got_the_message_and_keeps_order() {
    let now = Instant::now();
    let mut shards = [stored_messages(0), stored_messages(1)];
    let _sub = stored_subscriber(&mut shards[1], 1, "s", "far/#");
    deliver_forwards(&mut shards, now);
    let mut publ = online(&mut shards[0], 1, connect(Version::V3_1_1, "p", true));
    shards[0]
        .handle(&mut publ, publish("far/x", QoS::AtLeastOnce, 1, b"1"), now)
        .unwrap();
    shards[0]
        .handle(&mut publ, publish("near", QoS::ExactlyOnce, 2, b"2"), now)
        .unwrap();
    assert_eq!(acks(&mut shards[0], 1), [], "nothing before the seal");
    let first = shards[0].seal_acks().expect("a batch");
    shards[0]
        .handle(&mut publ, publish("near", QoS::AtLeastOnce, 3, b"3"), now)
        .unwrap();
    let second = shards[0].seal_acks().expect("a second batch");
    assert_eq!(shards[0].seal_acks(), None, "nothing more held");

    // The second batch (no other shard) is stored first: it still waits
    // behind the first, so the PUBACKs keep the order of the publishes.
    shards[0].stored(second, true);
    shards[0].stored(first, true);
    assert_eq!(acks(&mut shards[0], 1), [], "shard 1 has not answered");

    // Shard 1 routes the message, then gets the barrier behind it.
    deliver_forwards(&mut shards, now);
    assert!(
        matches!(
            &shards[1].take_store_ops()[..],
            [StoreOp::Queue { origin: 0, .. }]
        ),
        "shard 1 stores the message for its session"
    );
    assert_eq!(shards[1].take_barriers(), [(0, first)]);
    shards[1].forwards.push((0, Forward::Stored(first, true)));
    deliver_forwards(&mut shards, now);
    assert_eq!(
        acks(&mut shards[0], 1),
        [
            Packet::PubAck(Ack::new(pid(1))),
            Packet::PubRec(Ack::new(pid(2))),
            Packet::PubAck(Ack::new(pid(3)))
        ]
    );
    assert!(!shards[0].holds_acks());
}

#[test]
fn a_publish_whose_message_was_not_stored_is_not_acknowledged() {
    let now = Instant::now();
    let mut b = stored_messages(0);
    let _sub = stored_subscriber(&mut b, 1, "s", "t");
    let mut publ = online(&mut b, 2, connect(Version::V5, "p", true));
    b.handle(&mut publ, publish("t", QoS::AtLeastOnce, 1, b"m"), now)
        .unwrap();
    let ticket = b.seal_acks().expect("held");
    b.stored(ticket, false);
    let out = b.take_output(2);
    assert!(
        !out.packets.iter().any(|p| matches!(p, Packet::PubAck(_))),
        "{out:?}"
    );
    assert_eq!(out.close, Some(ReasonCode::UnspecifiedError));
    assert_eq!(b.stats.publishes_unstored, 1);
}

#[test]
fn a_restored_session_resends_what_was_sent_with_dup_then_the_queue() {
    let now = Instant::now();
    let mut b = stored_messages(0);
    let delivery = |n: u64, payload: &'static [u8], qos| crate::session::Delivery {
        message: crate::message::Message {
            topic: crate::topic::TopicName::new("t".to_owned()).unwrap(),
            payload: bytes::Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: None,
            publisher: ByteString::new(),
            expires_at: None,
            id: None,
        },
        qos,
        retain: false,
        subscription_ids: Vec::new(),
        non_retry: false,
        non_persistence: false,
        share_group: None,
        stored: Some(n),
    };
    let stored = crate::store::StoredSession {
        expiry: std::time::Duration::MAX,
        expires_in: None,
        subscriptions: Vec::new(),
        queued: vec![
            (
                delivery(3, b"received", QoS::ExactlyOnce),
                StoredState::Released(pid(8)),
            ),
            (
                delivery(4, b"sent", QoS::AtLeastOnce),
                StoredState::Sent(pid(9)),
            ),
            (
                delivery(6, b"queued", QoS::AtLeastOnce),
                StoredState::Queued,
            ),
        ],
    };
    let claim = Claim {
        generation: 8,
        previous: Some("n1#1".into()),
        session: Some(stored),
        orphan_will: None,
    };
    assert!(b.claimed(&ByteString::from("s"), claim, now));
    let c = b
        .connect(1, &connect(Version::V3_1_1, "s", false), now)
        .unwrap();
    let out = b.take_output(1).packets;
    // The QoS 2 one past PUBREC: only its PUBREL again.
    assert!(out.contains(&Packet::PubRel(Ack::new(pid(8)))), "{out:?}");
    let publishes: Vec<_> = out
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.payload, p.dup, p.packet_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        publishes[0],
        (bytes::Bytes::from_static(b"sent"), true, Some(pid(9)))
    );
    assert_eq!(&publishes[1].0[..], b"queued");
    assert!(
        !publishes[1].1,
        "a queued message is sent for the first time"
    );
    // The queued one is now sent: the store learns its packet id, and a
    // new delivery gets a number past the restored ones.
    let ops = b.take_store_ops();
    assert!(
        ops.iter().any(|op| matches!(
            op,
            StoreOp::Sent {
                stored: 6,
                generation: 8,
                ..
            }
        )),
        "{ops:?}"
    );
    drop(c);
}

#[test]
fn a_qos2_delivery_is_stored_as_released_at_pubrec_and_trimmed_at_pubcomp() {
    let now = Instant::now();
    let mut b = stored_messages(0);
    let mut sub = stored_subscriber(&mut b, 1, "s", "t");
    b.handle(&mut sub, subscribe("t", QoS::ExactlyOnce), now)
        .unwrap();
    b.take_output(1);
    b.take_store_ops();
    let mut publ = online(&mut b, 2, connect(Version::V3_1_1, "p", true));
    b.handle(&mut publ, publish("t", QoS::ExactlyOnce, 7, b"m"), now)
        .unwrap();
    let ops = b.take_store_ops();
    let [StoreOp::Queue {
        stored: 1,
        packet_id: Some(sent),
        ..
    }] = &ops[..]
    else {
        panic!("{ops:?}");
    };
    let sent = *sent;
    b.handle(&mut sub, Packet::PubRec(Ack::new(sent)), now)
        .unwrap();
    let ops = b.take_store_ops();
    assert!(
        matches!(&ops[..], [StoreOp::Released { stored: 1, .. }]),
        "{ops:?}"
    );
    // A repeated PUBREC writes nothing more.
    b.handle(&mut sub, Packet::PubRec(Ack::new(sent)), now)
        .unwrap();
    assert_eq!(b.take_store_ops(), []);
    b.handle(&mut sub, Packet::PubComp(Ack::new(sent)), now)
        .unwrap();
    let ops = b.take_store_ops();
    assert!(
        matches!(&ops[..], [StoreOp::Trim { stored: 1, .. }]),
        "{ops:?}"
    );
}
