//! Flow control between two shards' brokers, without sockets: credits for
//! forwarded publishes, held by a congested recipient until it drains or
//! stalls, and a reading subscriber that loses no QoS 1 message.

use std::time::{Duration, Instant};

use super::tests::{connect, online, publish, settings, subscribe};
use super::*;
use crate::protocol::{Ack, QoS, Version};

/// Delivers what each shard queued for the other, credits included.
pub(super) fn exchange(shards: &mut [Broker; 2], now: Instant) {
    for from in 0..2 {
        shards[from].flush_credits();
        let forwards = std::mem::take(&mut shards[from].forwards);
        for (to, f) in forwards {
            shards[to].on_forward(from, f, now);
        }
    }
}

/// A QoS 1 subscriber `sub` on shard 1 (connection 1) and a publisher `pub` on
/// shard 0 (connection 7).
fn pair(now: Instant) -> ([Broker; 2], Client, Client) {
    let mut shards = [Broker::new(0, 2, settings()), Broker::new(1, 2, settings())];
    let mut sub = online(&mut shards[1], 1, connect(Version::V5, "sub", true));
    shards[1]
        .handle(&mut sub, subscribe("t", QoS::AtLeastOnce), now)
        .unwrap();
    shards[1].take_output(1);
    exchange(&mut shards, now);
    let publ = online(&mut shards[0], 7, connect(Version::V5, "pub", true));
    (shards, sub, publ)
}

fn send(shards: &mut [Broker; 2], publ: &mut Client, n: u16, now: Instant) {
    for id in 1..=n {
        shards[0]
            .handle(publ, publish("t", QoS::AtLeastOnce, id, b"m"), now)
            .unwrap();
    }
    shards[0].take_output(publ.conn);
}

/// Packet ids of the PUBLISHes the writer of `conn` takes now.
pub(super) fn taken(b: &mut Broker, conn: ConnId, now: Instant) -> Vec<u16> {
    b.take_output_at(conn, now)
        .packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => p.packet_id.map(|id| id.get()),
            _ => None,
        })
        .collect()
}

/// Publishes one message at a time, exchanging forwards and credits after
/// each, until the publisher is out of credit. Returns how many it sent.
fn send_until_held(shards: &mut [Broker; 2], publ: &mut Client, now: Instant) -> u16 {
    let mut sent = 0;
    while !shards[0].out_of_credit(publ.conn) {
        sent += 1;
        assert!(sent <= 1000, "never held");
        send_one(shards, publ, sent, now);
        exchange(shards, now);
        exchange(shards, now);
    }
    sent
}

fn send_one(shards: &mut [Broker; 2], publ: &mut Client, id: u16, now: Instant) {
    shards[0]
        .handle(publ, publish("t", QoS::AtLeastOnce, id, b"m"), now)
        .unwrap();
    shards[0].take_output(publ.conn);
}

#[test]
fn a_publisher_forwards_one_window_without_credit() {
    let now = Instant::now();
    let (mut shards, _sub, mut publ) = pair(now);
    send(&mut shards, &mut publ, FORWARD_WINDOW as u16 - 1, now);
    assert!(!shards[0].out_of_credit(7));
    send(&mut shards, &mut publ, 1, now);
    assert!(shards[0].out_of_credit(7), "a whole window is unconfirmed");
    // The subscriber's shard routes them and owes credits for those it had
    // room for: the first four, before its backlog reached half its bound
    // (5). Those four came while the publisher had credit to spare: they go
    // back with other traffic or at the tick, not at once.
    exchange(&mut shards, now);
    exchange(&mut shards, now);
    assert!(shards[0].out_of_credit(7), "four owed, not due");
    shards[1].tick(now);
    exchange(&mut shards, now);
    assert!(shards[0].take_credited());
    assert!(!shards[0].out_of_credit(7));
    send(&mut shards, &mut publ, 4, now);
    assert!(shards[0].out_of_credit(7), "the rest is held");
}

#[test]
fn a_congested_subscriber_holds_its_publishers_until_it_drains() {
    let now = Instant::now();
    let (mut shards, mut sub, mut publ) = pair(now);
    let sent = send_until_held(&mut shards, &mut publ, now);
    assert_eq!(
        u32::from(sent),
        FORWARD_WINDOW,
        "a window (the four with room owed until the tick), then held"
    );

    // The subscriber reads and acknowledges everything: credits come back.
    let mut acked = 0;
    for _ in 0..20 {
        for id in taken(&mut shards[1], 1, now) {
            shards[1]
                .handle(&mut sub, Packet::PubAck(Ack::new(pid(id))), now)
                .unwrap();
            acked += 1;
        }
        exchange(&mut shards, now);
    }
    assert_eq!(acked, sent, "nothing lost");
    assert!(!shards[0].out_of_credit(7), "every credit came back");
    assert_eq!(shards[1].stats.dropped_queue_full, 0);
}

fn pid(id: u16) -> crate::protocol::PacketId {
    crate::protocol::PacketId::new(id).unwrap()
}

#[test]
fn a_reading_subscriber_loses_no_qos1_message_past_the_online_bound() {
    let now = Instant::now();
    let (mut shards, _sub, mut publ) = pair(now);
    // A window in flight before any credit could come back: 64 messages for a
    // subscriber whose inflight window (10) and online bound (10) hold 20.
    send(&mut shards, &mut publ, FORWARD_WINDOW as u16, now);
    exchange(&mut shards, now);
    assert_eq!(shards[1].stats.dropped_queue_full, 0);
    assert_eq!(shards[1].queue_depths(), (FORWARD_WINDOW as usize - 10, 10));
}

#[test]
fn a_stalled_subscriber_frees_its_publishers_and_then_drops() {
    let t0 = Instant::now();
    let (mut shards, _sub, mut publ) = pair(t0);
    send_until_held(&mut shards, &mut publ, t0);
    assert!(!shards[1].is_stalled(1, t0));

    // No write, no ack for stall-timeout: stalled. A tick gives the credits back.
    let later = t0 + settings().stall;
    assert!(shards[1].is_stalled(1, later));
    shards[1].tick(later);
    exchange(&mut shards, later);
    assert!(!shards[0].out_of_credit(7), "the publisher goes on");

    // Now the subscriber is held to its online bound: messages overflow.
    let queued = shards[1].queue_depths().0;
    send(&mut shards, &mut publ, 5, later);
    exchange(&mut shards, later);
    assert_eq!(shards[1].queue_depths().0, queued, "nothing more is queued");
    assert_eq!(shards[1].stats.dropped_queue_full, 5);
    exchange(&mut shards, later);
    assert!(!shards[0].out_of_credit(7), "and nothing is held");

    // Progress (its writer takes output) makes it a reader again.
    let again = later + Duration::from_millis(1);
    taken(&mut shards[1], 1, again);
    assert!(!shards[1].is_stalled(1, again));
}

#[test]
fn a_closed_recipient_gives_back_what_it_held() {
    let now = Instant::now();
    let (mut shards, sub, mut publ) = pair(now);
    send_until_held(&mut shards, &mut publ, now);
    shards[1].disconnected(&sub, None, now);
    exchange(&mut shards, now);
    assert!(!shards[0].out_of_credit(7));
}

#[test]
fn a_subscriber_stalled_for_send_timeout_is_closed() {
    let t0 = Instant::now();
    let (mut shards, _sub, mut publ) = pair(t0);
    send_until_held(&mut shards, &mut publ, t0);
    let timeout = settings().send_timeout.unwrap();
    shards[1].tick(t0 + timeout - Duration::from_millis(1));
    assert!(
        shards[1].take_closing().is_empty(),
        "stalled, not yet timed out"
    );
    shards[1].tick(t0 + timeout);
    assert_eq!(shards[1].take_closing(), [1]);
    assert_eq!(shards[1].closing_reason(1), Some(ReasonCode::QuotaExceeded));
}
