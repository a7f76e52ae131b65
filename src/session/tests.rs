use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use super::*;
use crate::topic::TopicName;

fn message(n: u8, qos: QoS) -> Message {
    Message {
        topic: TopicName::new("t").unwrap(),
        payload: Bytes::from(vec![n]),
        qos,
        retain: false,
        properties: None,
        publisher: ByteString::from("pub"),
        expires_at: None,
        id: None,
    }
}

fn delivery(n: u8, qos: QoS) -> Delivery {
    Delivery {
        message: message(n, qos),
        qos,
        retain: false,
        subscription_ids: Vec::new(),
        non_retry: false,
        non_persistence: false,
        share_group: None,
        stored: None,
    }
}

fn limits(max_inflight: u16, queue: usize) -> Limits {
    Limits {
        max_inflight,
        max_online_messages: queue,
        max_offline_messages: queue,
        overflow: OverflowPolicy::DropNewest,
    }
}

fn online(l: Limits) -> Session {
    let mut s = Session::new(Rc::new(l));
    assert!(!s.is_online());
    let mut out = Vec::new();
    assert!(s.connect(None, Instant::now(), &mut out).is_empty());
    assert!(out.is_empty());
    assert!(s.is_online());
    s
}

/// The payload byte and packet id of each PUBLISH in `out`, and whether DUP was set.
fn publishes(out: &[Packet]) -> Vec<(u8, Option<u16>, bool)> {
    out.iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.payload[0], p.packet_id.map(|id| id.get()), p.dup)),
            _ => None,
        })
        .collect()
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

#[test]
fn qos0_goes_straight_out_and_is_not_tracked() {
    let mut s = online(limits(1, 10));
    let mut out = Vec::new();
    for n in 0..3 {
        assert_eq!(
            s.deliver(delivery(n, QoS::AtMostOnce), Instant::now(), &mut out),
            None
        );
    }
    assert_eq!(
        publishes(&out),
        [(0, None, false), (1, None, false), (2, None, false)]
    );
    assert!(s.inflight().is_empty());
}

#[test]
fn window_limits_inflight_and_acks_release_the_queue_in_order() {
    let now = Instant::now();
    let mut s = online(limits(2, 10));
    let mut out = Vec::new();
    for n in 0..5 {
        assert_eq!(
            s.deliver(delivery(n, QoS::AtLeastOnce), now, &mut out),
            None
        );
    }
    assert_eq!(publishes(&out), [(0, Some(1), false), (1, Some(2), false)]);
    assert_eq!(s.queued(), 3);
    out.clear();
    assert_eq!(s.puback(pid(2), now, &mut out), (true, vec![]));
    assert_eq!(publishes(&out), [(2, Some(3), false)]);
    out.clear();
    // Unknown and repeated acks change nothing.
    assert!(!s.puback(pid(2), now, &mut out).0);
    assert!(!s.puback(pid(77), now, &mut out).0);
    assert!(out.is_empty());
    s.puback(pid(1), now, &mut out);
    s.puback(pid(3), now, &mut out);
    assert_eq!(publishes(&out), [(3, Some(4), false), (4, Some(5), false)]);
    assert_eq!(s.queued(), 0);
}

#[test]
fn receive_maximum_narrows_the_window() {
    let mut s = Session::new(Rc::new(limits(10, 10)));
    let mut out = Vec::new();
    s.connect(Some(1), Instant::now(), &mut out);
    for n in 0..3 {
        s.deliver(delivery(n, QoS::AtLeastOnce), Instant::now(), &mut out);
    }
    assert_eq!(publishes(&out).len(), 1);
}

#[test]
fn qos2_flow_and_repeated_pubrec() {
    let now = Instant::now();
    let mut s = online(limits(1, 10));
    let mut out = Vec::new();
    s.deliver(delivery(0, QoS::ExactlyOnce), now, &mut out);
    s.deliver(delivery(1, QoS::ExactlyOnce), now, &mut out);
    assert_eq!(publishes(&out), [(0, Some(1), false)]);
    assert!(!s.inflight().is_empty());
    out.clear();
    // PUBACK is the wrong answer to a QoS 2 PUBLISH.
    assert!(!s.puback(pid(1), now, &mut out).0);
    assert!(s.pubrec(pid(1), false, now, &mut out).0);
    assert_eq!(out, [Packet::PubRel(Ack::new(pid(1)))]);
    out.clear();
    assert!(s.pubrec(pid(1), false, now, &mut out).0);
    assert_eq!(out, [Packet::PubRel(Ack::new(pid(1)))]);
    out.clear();
    assert!(s.pubcomp(pid(1), now, &mut out).0);
    assert_eq!(publishes(&out), [(1, Some(2), false)]);
}

#[test]
fn failed_pubrec_ends_the_flow() {
    let now = Instant::now();
    let mut s = online(limits(1, 10));
    let mut out = Vec::new();
    s.deliver(delivery(0, QoS::ExactlyOnce), now, &mut out);
    out.clear();
    assert!(s.pubrec(pid(1), true, now, &mut out).0);
    assert!(s.inflight().is_empty());
    assert!(out.is_empty());
}

#[test]
fn reconnect_resends_in_order_with_dup_and_pubrel() {
    let now = Instant::now();
    let mut s = online(limits(3, 10));
    let mut out = Vec::new();
    s.deliver(delivery(0, QoS::AtLeastOnce), now, &mut out);
    s.deliver(delivery(1, QoS::ExactlyOnce), now, &mut out);
    s.deliver(delivery(2, QoS::ExactlyOnce), now, &mut out);
    s.deliver(delivery(3, QoS::AtLeastOnce), now, &mut out); // queued
    s.pubrec(pid(2), false, now, &mut out);
    assert!(s.disconnect().is_empty());
    assert!(!s.is_online());
    // Offline: QoS 1 is queued, QoS 0 is dropped.
    out.clear();
    assert_eq!(
        s.deliver(delivery(4, QoS::AtLeastOnce), now, &mut out),
        None
    );
    let dropped = s.deliver(delivery(5, QoS::AtMostOnce), now, &mut out);
    assert_eq!(dropped.map(|d| d.1), Some(DropReason::Offline));
    assert!(out.is_empty());

    assert!(s.connect(None, now, &mut out).is_empty());
    assert_eq!(
        out[0],
        Packet::Publish(to_publish(
            &delivery(0, QoS::AtLeastOnce),
            Some(pid(1)),
            true,
            now
        ))
    );
    assert_eq!(out[1], Packet::PubRel(Ack::new(pid(2))));
    assert_eq!(publishes(&out[2..3]), [(2, Some(3), true)]);
    assert_eq!(out.len(), 3, "the window of 3 is full: {out:?}");
    out.clear();
    s.puback(pid(1), now, &mut out);
    assert_eq!(publishes(&out), [(3, Some(4), false)]);
}

#[test]
fn courier_bits_drop_instead_of_resending() {
    let now = Instant::now();
    let mut s = online(limits(10, 10));
    let mut out = Vec::new();
    let mut non_retry = delivery(0, QoS::AtLeastOnce);
    non_retry.non_retry = true;
    let mut non_persistent = delivery(1, QoS::AtLeastOnce);
    non_persistent.non_persistence = true;
    s.deliver(non_retry.clone(), now, &mut out);
    s.deliver(non_persistent.clone(), now, &mut out);
    s.deliver(delivery(2, QoS::AtLeastOnce), now, &mut out);
    assert_eq!(s.disconnect(), vec![]);
    // Offline: non_persistence is not queued.
    let dropped = s.deliver(non_persistent.clone(), now, &mut out);
    assert_eq!(dropped.map(|d| d.1), Some(DropReason::Offline));
    out.clear();
    let dropped = s.connect(None, now, &mut out);
    assert_eq!(
        dropped.iter().map(|d| d.1).collect::<Vec<_>>(),
        [DropReason::NotAcked; 2]
    );
    assert_eq!(publishes(&out), [(2, Some(3), true)]);
}

#[test]
fn queue_limits_and_overflow_policies() {
    let now = Instant::now();
    for (policy, kept, dropped) in [
        (OverflowPolicy::DropNewest, [1, 2], 3),
        (OverflowPolicy::DropOldest, [2, 3], 1),
    ] {
        let mut s = Session::new(Rc::new(Limits {
            overflow: policy,
            ..limits(1, 2)
        }));
        let mut out = Vec::new();
        for n in 1..=2 {
            assert_eq!(
                s.deliver(delivery(n, QoS::AtLeastOnce), now, &mut out),
                None
            );
        }
        let d = s
            .deliver(delivery(3, QoS::AtLeastOnce), now, &mut out)
            .expect("a drop");
        assert_eq!(
            (d.0.message.payload[0], d.1),
            (dropped, DropReason::QueueFull)
        );
        assert!(out.is_empty(), "nothing is sent while offline: {out:?}");
        assert!(s.connect(None, now, &mut out).is_empty());
        assert_eq!(s.queued(), 1);
        // The window of 1 takes the oldest kept message on connect, with id 1;
        // its PUBACK releases the other, with id 2.
        let mut sent = publishes(&out);
        out.clear();
        assert_eq!(s.puback(pid(1), now, &mut out), (true, vec![]));
        sent.extend(publishes(&out));
        assert_eq!(
            sent,
            [(kept[0], Some(1), false), (kept[1], Some(2), false)],
            "{policy:?}"
        );
    }
}

#[test]
fn expired_messages_are_dropped_not_sent() {
    let now = Instant::now();
    let mut s = online(limits(1, 10));
    let mut out = Vec::new();
    let mut d = delivery(0, QoS::AtLeastOnce);
    d.message.expires_at = Some(now + Duration::from_secs(10));
    s.deliver(delivery(9, QoS::AtLeastOnce), now, &mut out);
    s.deliver(d, now, &mut out); // queued behind the full window
    out.clear();
    let later = now + Duration::from_secs(11);
    let (_, dropped) = s.puback(pid(1), later, &mut out);
    assert_eq!(
        dropped.iter().map(|d| d.1).collect::<Vec<_>>(),
        [DropReason::Expired]
    );
    assert!(out.is_empty());
}

#[test]
fn expiry_left_is_sent_rounded_up() {
    let now = Instant::now();
    let mut d = delivery(0, QoS::AtMostOnce);
    d.message.expires_at = Some(now + Duration::from_millis(2500));
    let p = to_publish(&d, None, false, now);
    assert_eq!(p.properties.message_expiry_interval, Some(3));
}

#[test]
fn packet_ids_skip_those_in_flight_and_wrap() {
    let now = Instant::now();
    let mut s = online(limits(3, 10));
    s.next_packet_id = u16::MAX;
    let mut out = Vec::new();
    for n in 0..3 {
        s.deliver(delivery(n, QoS::AtLeastOnce), now, &mut out);
    }
    let ids: Vec<_> = publishes(&out).iter().map(|p| p.1).collect();
    assert_eq!(ids, [Some(u16::MAX), Some(1), Some(2)]);
    out.clear();
    s.puback(pid(1), now, &mut out);
    s.next_packet_id = 2; // 2 is still in flight, so 3 comes next
    s.deliver(delivery(3, QoS::AtLeastOnce), now, &mut out);
    assert_eq!(publishes(&out).last().map(|p| p.1), Some(Some(3)));
}

#[test]
fn incoming_qos2_is_routed_once() {
    let mut s = online(limits(1, 1));
    assert!(s.receive_qos2(pid(7)));
    assert!(!s.receive_qos2(pid(7)));
    assert_eq!(s.pending_qos2(), 1);
    assert!(s.receive_qos2(pid(8)));
    assert_eq!(
        s.pending_qos2(),
        2,
        "what the receive maximum is checked against"
    );
    assert!(s.release_qos2(pid(7)));
    assert!(!s.release_qos2(pid(7)));
    assert_eq!(s.pending_qos2(), 1);
    assert!(s.release_qos2(pid(8)));
    assert_eq!(s.pending_qos2(), 0);
    assert!(s.receive_qos2(pid(7)));
}

/// What `subscribe` and `unsubscribe` report decides retain handling 1 and the
/// MQTT 5 UNSUBACK reason (0x11 when no subscription existed).
#[test]
fn subscriptions_are_replaced_and_forgotten_once() {
    let mut s = Session::new(Rc::new(limits(1, 1)));
    let filter = TopicFilter::new("a/+").unwrap();
    let at = |qos| Subscription {
        options: SubscriptionOptions {
            qos,
            ..Default::default()
        },
        id: None,
    };
    assert!(!s.subscribe(filter.clone(), at(QoS::AtMostOnce)), "new");
    assert!(
        s.subscribe(filter.clone(), at(QoS::AtLeastOnce)),
        "replaced"
    );
    let kept: Vec<_> = s.subscriptions().map(|(f, s)| (f.clone(), *s)).collect();
    assert_eq!(kept, [(filter.clone(), at(QoS::AtLeastOnce))]);
    assert!(!s.unsubscribe(&TopicFilter::new("a/b").unwrap()));
    assert!(s.unsubscribe(&filter));
    assert!(!s.unsubscribe(&filter), "already gone");
    assert_eq!(s.subscriptions().count(), 0);
}

/// Regression: a QoS 1 message larger than the client's maximum packet size
/// was tracked as inflight although the writer never sent it, so it held a
/// slot of the window forever (receive maximum 1: nothing else was ever sent).
#[test]
fn too_large_for_the_client_is_dropped_not_left_inflight() {
    let now = Instant::now();
    let mut s = Session::new(Rc::new(limits(10, 10)));
    s.set_max_packet_size(Some(64), Version::V5);
    let mut out = Vec::new();
    assert!(s.connect(Some(1), now, &mut out).is_empty());
    let mut big = delivery(1, QoS::AtLeastOnce);
    big.message.payload = Bytes::from(vec![1; 100]);
    let dropped = s.deliver(big.clone(), now, &mut out);
    assert_eq!(dropped.map(|d| d.1), Some(DropReason::TooLarge));
    let mut big0 = big.clone();
    big0.qos = QoS::AtMostOnce;
    assert_eq!(
        s.deliver(big0, now, &mut out).map(|d| d.1),
        Some(DropReason::TooLarge)
    );
    assert!(s
        .deliver(delivery(2, QoS::AtLeastOnce), now, &mut out)
        .is_none());
    // The packet id taken by the dropped message is not reused at once: fine.
    assert_eq!(publishes(&out), [(2, Some(2), false)]);
    assert_eq!(s.inflight().len(), 1);

    // Queued behind the window, then too large when the window opens.
    assert!(s.deliver(big, now, &mut out).is_none());
    assert!(s
        .deliver(delivery(3, QoS::AtLeastOnce), now, &mut out)
        .is_none());
    out.clear();
    let (known, dropped) = s.puback(pid(2), now, &mut out);
    assert!(known);
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].1, DropReason::TooLarge);
    assert_eq!(publishes(&out), [(3, Some(4), false)]);
}

#[test]
fn retry_resends_due_entries_except_non_retry() {
    let now = Instant::now();
    let mut s = online(limits(10, 10));
    let mut out = Vec::new();
    s.deliver(delivery(0, QoS::AtLeastOnce), now, &mut out);
    let mut once = delivery(1, QoS::AtLeastOnce);
    once.non_retry = true;
    s.deliver(once, now, &mut out);
    s.deliver(delivery(2, QoS::ExactlyOnce), now, &mut out);
    s.pubrec(pid(3), false, now, &mut out);
    out.clear();
    let interval = Duration::from_secs(5);
    assert!(s
        .retry(now + Duration::from_secs(4), interval, &mut out)
        .is_empty());
    assert!(out.is_empty());
    s.retry(now + interval, interval, &mut out);
    assert_eq!(publishes(&out), [(0, Some(1), true)]);
    assert_eq!(out[1], Packet::PubRel(Ack::new(pid(3))));
    assert_eq!(out.len(), 2);
    out.clear();
    // Resent just now: not due again until another interval has passed.
    s.retry(now + interval, interval, &mut out);
    assert!(out.is_empty());
}

/// What an ending session gives its share groups: the shared deliveries its
/// client has not received, in flight first, then queued, in order. A QoS 2
/// one past PUBREC (received) and plain ones stay.
#[test]
fn take_shared_gives_unreceived_shared_deliveries_in_order() {
    let now = Instant::now();
    let mut s = online(limits(3, 10));
    let group = TopicFilter::new("$share/g/t").unwrap();
    let shared = |n, qos| Delivery {
        share_group: Some(group.clone()),
        stored: None,
        ..delivery(n, qos)
    };
    let mut out = Vec::new();
    for d in [
        shared(1, QoS::ExactlyOnce),
        delivery(2, QoS::AtLeastOnce),
        shared(3, QoS::ExactlyOnce),
        shared(4, QoS::AtLeastOnce),
        delivery(5, QoS::AtLeastOnce),
        shared(6, QoS::AtLeastOnce),
    ] {
        assert!(s.deliver(d, now, &mut out).is_none());
    }
    let sent = publishes(&out);
    assert_eq!(sent.len(), 3, "the window: {sent:?}");
    let first = PacketId::new(sent[0].1.unwrap()).unwrap();
    s.pubrec(first, false, now, &mut out);

    let taken: Vec<u8> = s
        .take_shared()
        .iter()
        .map(|d| d.message.payload[0])
        .collect();
    assert_eq!(taken, [3, 4, 6]);
    assert_eq!(s.inflight().len(), 2, "1 (past PUBREC) and 2 (plain) stay");
    assert_eq!(s.queued(), 1, "5 (plain) stays");
}
