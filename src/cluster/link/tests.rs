use std::time::Instant;

use super::*;

fn m(id: u64) -> Message {
    Message::Accepted { id }
}

fn batch(f: &Frame) -> Vec<Message> {
    match f {
        Frame::Batch { messages, .. } => messages.clone(),
        other => panic!("not a batch: {other:?}"),
    }
}

#[test]
fn messages_arrive_once_in_order_through_duplicates_and_reordering() {
    let now = Instant::now();
    let (mut a, mut b) = (Link::new(100), Link::new(100));
    a.send(m(1));
    let first = a.poll_transmit(now).unwrap();
    a.send(m(2));
    a.send(m(3));
    let second = a.poll_transmit(now).unwrap();
    // The second batch first: it is not the next, and waits for a resend.
    b.handle_frame(now, second.clone());
    assert_eq!(b.poll_message(), None);
    b.handle_frame(now, first.clone());
    b.handle_frame(now, first);
    assert_eq!(b.poll_message(), Some(m(1)));
    assert_eq!(b.poll_message(), None);
    let credit = b.poll_transmit(now).unwrap();
    assert_eq!(
        credit,
        Frame::Credit {
            acked: 1,
            window: WINDOW
        }
    );
    a.handle_frame(now, credit);
    // Message 2 and 3 are resent after RESEND, and arrive.
    assert_eq!(a.poll_transmit(now), None);
    let resent = a.poll_transmit(now + RESEND).unwrap();
    assert_eq!(batch(&resent), [m(2), m(3)]);
    b.handle_frame(now, resent);
    b.handle_frame(now, second);
    assert_eq!(b.poll_message(), Some(m(2)));
    assert_eq!(b.poll_message(), Some(m(3)));
    assert_eq!(b.poll_message(), None);
    a.handle_frame(now, b.poll_transmit(now).unwrap());
    assert!(a.is_idle());
}

#[test]
fn the_window_holds_back_what_the_peer_has_no_credit_for() {
    let now = Instant::now();
    let (mut a, mut b) = (Link::new(1000), Link::new(1000));
    for i in 0..WINDOW as u64 + 5 {
        a.send(m(i));
    }
    let f = a.poll_transmit(now).unwrap();
    assert_eq!(batch(&f).len(), WINDOW as usize);
    assert_eq!(a.poll_transmit(now), None);
    b.handle_frame(now, f);
    a.handle_frame(now, b.poll_transmit(now).unwrap());
    assert_eq!(batch(&a.poll_transmit(now).unwrap()).len(), 5);
}

#[test]
fn past_its_bound_the_buffer_drops_and_counts() {
    let mut a = Link::new(2);
    assert!(a.send(m(1)));
    assert!(a.send(m(2)));
    assert!(!a.send(m(3)));
    assert_eq!(a.dropped(), 1);
}

#[test]
fn a_new_connection_resends_what_the_last_one_left_unacknowledged_first() {
    let now = Instant::now();
    let mut a = Link::new(100);
    a.send(m(1));
    a.send(m(2));
    a.poll_transmit(now).unwrap();
    a.send(m(3));
    // The connection is lost with 1 and 2 unacknowledged and 3 unsent; the
    // peer's side of the next connection starts from nothing.
    a.restart();
    let mut b = Link::new(100);
    let f = a.poll_transmit(now).unwrap();
    assert!(matches!(f, Frame::Batch { first_seq: 1, .. }));
    b.handle_frame(now, f);
    let got: Vec<Message> = std::iter::from_fn(|| b.poll_message()).collect();
    assert_eq!(got, [m(1), m(2), m(3)]);
    a.handle_frame(now, b.poll_transmit(now).unwrap());
    assert!(a.is_idle());
}
