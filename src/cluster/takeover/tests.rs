//! Scripted takeovers, one path each; the simulation (`cluster::sim`) drives
//! them all at once under a hostile schedule.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

fn life(node: &str, boot: u64) -> Owner {
    Owner {
        node: node.into(),
        boot,
    }
}

fn node(me: Owner) -> Ownership {
    let mut o = Ownership::new(me.clone(), Duration::from_secs(1), Duration::from_secs(3));
    // Its join's listing: itself.
    o.handle_members(&[(me, true)]);
    o
}

fn effects(o: &mut Ownership) -> Vec<Effect> {
    std::iter::from_fn(|| o.poll_effect()).collect()
}

fn takeover(generation: u64, new_owner: &Owner) -> Message {
    Message::Takeover {
        client_id: "c".into(),
        generation,
        new_owner: new_owner.clone(),
    }
}

fn send(to: &Owner, message: Message) -> Effect {
    Effect::Send {
        to: to.clone(),
        message,
    }
}

fn done(generation: u64) -> Message {
    Message::HandOverDone {
        client_id: "c".into(),
        generation,
    }
}

fn publish(id: u64) -> Publish {
    Publish {
        origin: life("p", 9),
        id,
        topic: "t".into(),
        payload: Bytes::from_static(b"x"),
        qos: 1,
        retain: false,
        properties: Bytes::new(),
    }
}

#[test]
fn a_claim_after_a_live_owner_waits_for_its_hand_over() {
    let now = Instant::now();
    let (a, b) = (life("a", 1), life("b", 2));
    let mut n = node(b.clone());
    n.handle_members(&[(a.clone(), true), (b.clone(), true)]);
    assert_eq!(n.connect("c"), Ok(()));
    assert_eq!(
        effects(&mut n),
        [Effect::Claim {
            client_id: "c".into()
        }]
    );
    n.handle_claim(now, "c", 2, Some(a.clone()), true);
    assert_eq!(effects(&mut n), [send(&a, takeover(2, &b))]);
    // A second CONNECT during the hand-over: server busy, not a second owner.
    assert_eq!(n.connect("c"), Err(SERVER_BUSY));
    // What arrives meanwhile is this node's already.
    assert_eq!(n.deliver("c", publish(7)), Route::Local);
    let handed = Message::HandOver {
        client_id: "c".into(),
        generation: 2,
        subscriptions: Bytes::from_static(b"subs"),
        messages: vec![],
    };
    n.handle_message(now, &a, handed);
    n.handle_message(now, &a, done(2));
    assert_eq!(
        effects(&mut n),
        [
            Effect::Restore {
                client_id: "c".into(),
                subscriptions: Bytes::from_static(b"subs"),
                messages: vec![],
            },
            Effect::Settle {
                client_id: "c".into(),
                generation: 2
            },
            Effect::Accept {
                client_id: "c".into(),
                generation: 2
            }
        ]
    );
    assert_eq!(n.state("c"), Some(&State::Owned { generation: 2 }));
}

#[test]
fn the_old_owner_disconnects_hands_over_and_forwards() {
    let now = Instant::now();
    let (a, b) = (life("a", 1), life("b", 2));
    let mut n = node(a.clone());
    n.connect("c").unwrap();
    n.handle_claim(now, "c", 1, None, true);
    effects(&mut n);
    n.handle_message(now, &b, takeover(2, &b));
    assert_eq!(
        effects(&mut n),
        [
            Effect::Disconnect {
                client_id: "c".into(),
                reason: SESSION_TAKEN_OVER
            },
            Effect::Surrender {
                client_id: "c".into()
            }
        ]
    );
    let queued = vec![Queued {
        inflight: true,
        publish: publish(1),
    }];
    n.surrendered("c", Bytes::new(), queued.clone());
    let handed = |messages| Message::HandOver {
        client_id: "c".into(),
        generation: 2,
        subscriptions: Bytes::new(),
        messages,
    };
    assert_eq!(
        effects(&mut n),
        [send(&b, handed(queued)), send(&b, done(2))]
    );
    // A publish routed here by a stale route follows the session.
    assert_eq!(n.deliver("c", publish(2)), Route::Forwarded);
    let forwarded = vec![Queued {
        inflight: false,
        publish: publish(2),
    }];
    assert_eq!(effects(&mut n), [send(&b, handed(forwarded))]);
    // Until the id is forgotten.
    assert_eq!(n.poll_timeout(), Some(now + Duration::from_secs(3)));
    n.handle_timeout(now + Duration::from_secs(4));
    assert_eq!(n.deliver("c", publish(3)), Route::Unknown);
}

#[test]
fn a_stale_takeover_is_refused_with_done() {
    let now = Instant::now();
    let (a, b) = (life("a", 1), life("b", 2));
    let mut n = node(a.clone());
    n.connect("c").unwrap();
    n.handle_claim(now, "c", 5, None, true);
    effects(&mut n);
    n.handle_message(now, &b, takeover(3, &b));
    assert_eq!(effects(&mut n), [send(&b, done(3))]);
    assert_eq!(n.stale_refused(), 1);
    assert_eq!(n.state("c"), Some(&State::Owned { generation: 5 }));
}

#[test]
fn a_dead_predecessor_makes_the_claim_ask_every_live_node() {
    let now = Instant::now();
    let (a, b, c, d) = (life("a", 1), life("b", 2), life("c", 3), life("d", 4));
    let mut n = node(b.clone());
    n.handle_members(&[
        (a.clone(), false),
        (b.clone(), true),
        (c.clone(), true),
        (d.clone(), true),
    ]);
    n.connect("c").unwrap();
    effects(&mut n);
    n.handle_claim(now, "c", 4, Some(a), true);
    assert_eq!(
        effects(&mut n),
        [send(&c, takeover(4, &b)), send(&d, takeover(4, &b))]
    );
    n.handle_message(now, &c, done(4));
    assert_eq!(effects(&mut n), []);
    // The other one dies instead of answering.
    n.handle_members(&[(b.clone(), true), (c.clone(), true), (d.clone(), false)]);
    assert_eq!(
        effects(&mut n),
        [
            Effect::Settle {
                client_id: "c".into(),
                generation: 4
            },
            Effect::Accept {
                client_id: "c".into(),
                generation: 4
            }
        ]
    );
}

#[test]
fn an_unsettled_predecessor_makes_the_claim_ask_every_live_node() {
    // The predecessor may still wait on a node that holds the client.
    let now = Instant::now();
    let (a, b, c) = (life("a", 1), life("b", 2), life("c", 3));
    let mut n = node(b.clone());
    n.handle_members(&[(a.clone(), true), (b.clone(), true), (c.clone(), true)]);
    n.connect("c").unwrap();
    effects(&mut n);
    n.handle_claim(now, "c", 6, Some(a.clone()), false);
    assert_eq!(
        effects(&mut n),
        [send(&a, takeover(6, &b)), send(&c, takeover(6, &b))]
    );
    // Settled and this node's own: no one to ask.
    let mut n = node(b.clone());
    n.connect("c").unwrap();
    effects(&mut n);
    n.handle_claim(now, "c", 7, Some(b.clone()), true);
    assert_eq!(
        effects(&mut n),
        [
            Effect::Settle {
                client_id: "c".into(),
                generation: 7
            },
            Effect::Accept {
                client_id: "c".into(),
                generation: 7
            }
        ]
    );
}

#[test]
fn a_hand_over_that_takes_too_long_refuses_the_connect() {
    let now = Instant::now();
    let (a, b) = (life("a", 1), life("b", 2));
    let mut n = node(b.clone());
    n.connect("c").unwrap();
    n.handle_claim(now, "c", 2, Some(a), true);
    effects(&mut n);
    assert_eq!(n.poll_timeout(), Some(now + Duration::from_secs(1)));
    n.handle_timeout(now + Duration::from_millis(999));
    assert_eq!(effects(&mut n), []);
    n.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(
        effects(&mut n),
        [Effect::Refuse {
            client_id: "c".into(),
            reason: SERVER_BUSY
        }]
    );
    // And the next CONNECT here is busy until the hand-over ends.
    assert_eq!(n.connect("c"), Err(SERVER_BUSY));
}
