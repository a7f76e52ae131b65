//! A share-group member whose session ends hands what its client has not
//! received to another member (MQTT 5 section 4.8.2), across shards, without
//! sockets.

use std::time::Instant;

use bytes::Bytes;

use super::tests::{connect, deliver_forwards, online, pid, publish, subscribe};
use super::*;
use crate::protocol::{Ack, ConnectProperties, QoS, Version};

const SHARE: &str = "$share/g/t";

/// Two shards, as the server runs them.
fn shards() -> [Broker; 2] {
    [
        Broker::new(0, 2, tests::settings()),
        Broker::new(1, 2, tests::settings()),
    ]
}

/// An MQTT 5 clean-start client (session expiry 0: its session ends with
/// its connection) that accepts `receive_maximum` messages in flight.
fn member(b: &mut Broker, conn: ConnId, id: &str, receive_maximum: u16) -> Client {
    let mut c = connect(Version::V5, id, true);
    c.properties = ConnectProperties {
        receive_maximum: Some(receive_maximum),
        ..Default::default()
    };
    online(b, conn, c)
}

fn join(b: &mut Broker, client: &mut Client, filter: &str, qos: QoS, now: Instant) {
    b.handle(client, subscribe(filter, qos), now).unwrap();
    b.take_output(client.conn);
}

/// `(payload, qos, packet id)` of each PUBLISH queued for `conn`.
fn publishes(b: &mut Broker, conn: ConnId) -> Vec<(Bytes, QoS, Option<u16>)> {
    b.take_output(conn)
        .packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.payload, p.qos, p.packet_id.map(|id| id.get()))),
            _ => None,
        })
        .collect()
}

fn payloads(b: &mut Broker, conn: ConnId) -> Vec<Bytes> {
    publishes(b, conn).into_iter().map(|p| p.0).collect()
}

const PAYLOADS: [&[u8]; 4] = [b"0", b"1", b"2", b"3"];

fn send_all(b: &mut Broker, publ: &mut Client, qos: QoS, now: Instant) {
    for (i, payload) in PAYLOADS.iter().enumerate() {
        b.handle(publ, publish("t", qos, i as u16 + 1, payload), now)
            .unwrap();
    }
    b.take_output(publ.conn);
}

/// Member `a` on shard 0 is the group's only member when four QoS 1
/// messages come: two go in flight (its receive maximum) and two queue.
/// Member `b` joins on shard 1, subscribed at QoS 0. `a`'s connection
/// drops, which ends its session: `b` gets all four, in the order `a` got
/// them (in flight first, then queued), capped at its QoS 0.
#[test]
fn a_leaving_member_hands_its_unreceived_messages_over_in_order() {
    let now = Instant::now();
    let mut s = shards();
    let mut a = member(&mut s[0], 1, "a", 2);
    join(&mut s[0], &mut a, SHARE, QoS::AtLeastOnce, now);
    deliver_forwards(&mut s, now);
    let mut publ = online(&mut s[0], 9, connect(Version::V5, "p", true));
    send_all(&mut s[0], &mut publ, QoS::AtLeastOnce, now);
    assert_eq!(payloads(&mut s[0], 1), [&b"0"[..], b"1"], "a's window");
    assert_eq!(s[0].queue_depths(), (2, 2));

    let mut b = member(&mut s[1], 1, "b", 10);
    join(&mut s[1], &mut b, SHARE, QoS::AtMostOnce, now);
    deliver_forwards(&mut s, now);
    s[0].disconnected(&a, None, now);
    deliver_forwards(&mut s, now);
    assert_eq!(
        publishes(&mut s[1], 1),
        PAYLOADS
            .iter()
            .map(|p| (Bytes::from_static(p), QoS::AtMostOnce, None))
            .collect::<Vec<_>>(),
        "handed over in order, at b's QoS"
    );
    assert_eq!(s[0].session_count(), 1, "a's session is gone, p's is left");
}

/// A QoS 2 message that the leaving member has PUBRECed is its own: PUBREC
/// said it received it, so another member must not get it again. Only the
/// two it had not acknowledged go over, here to a member on the same shard.
#[test]
fn a_message_awaiting_pubcomp_is_not_handed_over() {
    let now = Instant::now();
    let mut s = shards();
    let mut a = member(&mut s[0], 1, "a", 10);
    join(&mut s[0], &mut a, SHARE, QoS::ExactlyOnce, now);
    let mut publ = online(&mut s[0], 9, connect(Version::V5, "p", true));
    for (i, payload) in PAYLOADS[..3].iter().enumerate() {
        s[0].handle(
            &mut publ,
            publish("t", QoS::ExactlyOnce, i as u16 + 1, payload),
            now,
        )
        .unwrap();
        s[0].handle(&mut publ, Packet::PubRel(Ack::new(pid(i as u16 + 1))), now)
            .unwrap();
    }
    let sent = publishes(&mut s[0], 1);
    assert_eq!(sent.len(), 3);
    let first = sent[0].2.expect("a QoS 2 packet id");
    s[0].handle(&mut a, Packet::PubRec(Ack::new(pid(first))), now)
        .unwrap();
    assert!(matches!(
        &s[0].take_output(1).packets[..],
        [Packet::PubRel(_)]
    ));

    let mut b = member(&mut s[0], 2, "b", 10);
    join(&mut s[0], &mut b, SHARE, QoS::ExactlyOnce, now);
    s[0].disconnected(&a, None, now);
    // A member on the same shard gets them at once, not through the mesh.
    assert!(s[0]
        .forwards
        .iter()
        .all(|(_, f)| !matches!(f, Forward::HandOver(..))));
    assert_eq!(
        payloads(&mut s[0], 2),
        [&b"1"[..], b"2"],
        "what a had not PUBRECed, and only that"
    );
}

/// Messages a session got through a plain subscription stay its own: when it
/// ends they are not given to a share group on the same topic, which got its
/// copy of each already.
#[test]
fn a_plain_subscriptions_messages_are_not_handed_over() {
    let now = Instant::now();
    let mut s = shards();
    let mut a = member(&mut s[0], 1, "a", 10);
    join(&mut s[0], &mut a, "t", QoS::AtLeastOnce, now);
    let mut b = member(&mut s[1], 1, "b", 10);
    join(&mut s[1], &mut b, SHARE, QoS::AtLeastOnce, now);
    deliver_forwards(&mut s, now);
    let mut publ = online(&mut s[0], 9, connect(Version::V5, "p", true));
    send_all(&mut s[0], &mut publ, QoS::AtLeastOnce, now);
    deliver_forwards(&mut s, now);
    assert_eq!(payloads(&mut s[0], 1).len(), 4, "a's plain copies");
    assert_eq!(payloads(&mut s[1], 1).len(), 4, "the group's copies");

    s[0].disconnected(&a, None, now);
    assert!(s[0]
        .forwards
        .iter()
        .all(|(_, f)| !matches!(f, Forward::HandOver(..))));
    deliver_forwards(&mut s, now);
    assert_eq!(payloads(&mut s[1], 1), Vec::<Bytes>::new());
}

/// The last member of a group leaves with messages unreceived: nobody can
/// take them, nothing goes to another shard, and a member joining later
/// does not get them.
#[test]
fn with_no_other_member_nothing_is_handed_over() {
    let now = Instant::now();
    let mut s = shards();
    let mut a = member(&mut s[0], 1, "a", 10);
    join(&mut s[0], &mut a, SHARE, QoS::AtLeastOnce, now);
    deliver_forwards(&mut s, now);
    let mut publ = online(&mut s[0], 9, connect(Version::V5, "p", true));
    send_all(&mut s[0], &mut publ, QoS::AtLeastOnce, now);
    assert_eq!(payloads(&mut s[0], 1).len(), 4);

    s[0].disconnected(&a, None, now);
    assert!(
        s[0].forwards
            .iter()
            .all(|(_, f)| !matches!(f, Forward::HandOver(..))),
        "{:?}",
        s[0].forwards
    );
    deliver_forwards(&mut s, now);
    let mut b = member(&mut s[1], 1, "b", 10);
    join(&mut s[1], &mut b, SHARE, QoS::AtLeastOnce, now);
    deliver_forwards(&mut s, now);
    assert_eq!(payloads(&mut s[1], 1), Vec::<Bytes>::new());
    assert_eq!(s[0].queue_depths(), (0, 0));
}

/// A persistent member is taken over by a CONNECT with clean start, which
/// ends its session [MQTT-3.1.2-4]: the new session does not resend what the
/// old one had in flight, so the other member gets it.
#[test]
fn a_takeover_with_clean_start_hands_the_old_sessions_messages_over() {
    let now = Instant::now();
    let mut s = shards();
    let mut c = connect(Version::V5, "a", false);
    c.properties.session_expiry_interval = Some(600);
    let mut a = online(&mut s[0], 1, c);
    join(&mut s[0], &mut a, SHARE, QoS::AtLeastOnce, now);
    deliver_forwards(&mut s, now);
    let mut publ = online(&mut s[0], 9, connect(Version::V5, "p", true));
    send_all(&mut s[0], &mut publ, QoS::AtLeastOnce, now);
    assert_eq!(payloads(&mut s[0], 1).len(), 4);
    let mut b = member(&mut s[1], 1, "b", 10);
    join(&mut s[1], &mut b, SHARE, QoS::AtLeastOnce, now);
    deliver_forwards(&mut s, now);

    online(&mut s[0], 2, connect(Version::V5, "a", true));
    deliver_forwards(&mut s, now);
    assert_eq!(payloads(&mut s[1], 1), PAYLOADS.to_vec());
    assert_eq!(
        payloads(&mut s[0], 2),
        Vec::<Bytes>::new(),
        "not resent to a"
    );
}

/// A group's handed-over messages stay together: all go to one member, so
/// that member gets them in the order the first one did, even when the
/// group has several members online (here `b` and `c` on shard 1).
#[test]
fn a_groups_messages_go_to_one_member() {
    let now = Instant::now();
    let mut s = shards();
    let mut a = member(&mut s[0], 1, "a", 10);
    join(&mut s[0], &mut a, SHARE, QoS::AtLeastOnce, now);
    deliver_forwards(&mut s, now);
    let mut publ = online(&mut s[0], 9, connect(Version::V5, "p", true));
    send_all(&mut s[0], &mut publ, QoS::AtLeastOnce, now);
    assert_eq!(payloads(&mut s[0], 1).len(), 4);
    for (conn, id) in [(1, "b"), (2, "c")] {
        let mut m = member(&mut s[1], conn, id, 10);
        join(&mut s[1], &mut m, SHARE, QoS::AtLeastOnce, now);
    }
    deliver_forwards(&mut s, now);

    s[0].disconnected(&a, None, now);
    deliver_forwards(&mut s, now);
    let got = [payloads(&mut s[1], 1), payloads(&mut s[1], 2)];
    assert!(
        got.contains(&PAYLOADS.map(Bytes::from_static).to_vec()),
        "all four, in order, to b or to c: {got:?}"
    );
}
