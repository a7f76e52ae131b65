//! What the broker tells its store, and how it resumes what the store held,
//! without sockets or Redis.

use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use super::tests::{connect, online, publish, received, settings, subscribe};
use super::*;
use crate::protocol::{ConnAck, Version, WillProperties};
use crate::store::{record, Claim, StoreOp, StoredSession};
use crate::topic::{TopicFilter, TopicName};

fn claim(generation: u64, session: Option<StoredSession>) -> Claim {
    Claim {
        generation,
        previous: None,
        session,
        orphan_will: None,
    }
}

fn will(topic: &str) -> Option<Box<LastWill>> {
    Some(Box::new(LastWill {
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::new(topic.to_owned()).unwrap(),
        payload: Bytes::from_static(b"gone"),
        properties: WillProperties::default(),
    }))
}

fn id(s: &str) -> ByteString {
    ByteString::from(s)
}

#[test]
fn a_persistent_session_is_mirrored_from_claim_to_end() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings()).with_store();
    let mut c = connect(Version::V3_1_1, "p", false);
    c.will = will("wills/p").map(|w| *w);
    b.claimed(&id("p"), claim(7, None), now);
    let mut client = online(&mut b, 1, c);
    let ops = b.take_store_ops();
    let [StoreOp::Online {
        client_id,
        generation: 7,
        expiry,
        will: Some(w),
    }] = &ops[..]
    else {
        panic!("{ops:?}");
    };
    assert_eq!((client_id.as_ref(), *expiry), ("p", Duration::MAX));
    let (delay, message) = record::decode_will(w, &id("p"), now).unwrap();
    assert_eq!((delay, &*message.topic), (0, "wills/p"));

    b.handle(&mut client, subscribe("a/+", QoS::AtLeastOnce), now)
        .unwrap();
    let ops = b.take_store_ops();
    assert!(
        matches!(&ops[..], [StoreOp::Route { filter, added: true }, StoreOp::Subscribe { generation: 7, filter: f, subscription, .. }]
            if filter == "a/+" && f == "a/+" && record::decode_subscription(subscription).unwrap().options.qos == QoS::AtLeastOnce),
        "{ops:?}"
    );

    // A shared subscription is stored with its group, or a restart would
    // make it a plain one (every member gets every message).
    b.handle(&mut client, subscribe("$share/g/s", QoS::AtLeastOnce), now)
        .unwrap();
    let ops = b.take_store_ops();
    assert!(
        matches!(&ops[..], [StoreOp::Route { filter, .. }, StoreOp::Subscribe { filter: f, .. }]
            if filter == "$share/g/s" && f == "$share/g/s"),
        "{ops:?}"
    );

    // A network failure: the will goes out, the session stays, forever (MQTT 3).
    let w = client.will.take();
    b.disconnected_because(&client, w, crate::events::OfflineReason::Unspecified, now);
    let ops = b.take_store_ops();
    assert!(
        matches!(
            &ops[..],
            [StoreOp::Offline {
                generation: 7,
                expiry: None,
                will: None,
                ..
            }]
        ),
        "{ops:?}"
    );

    // A clean CONNECT without a claim ends it: every key goes.
    online(&mut b, 2, connect(Version::V3_1_1, "p", true));
    let ops = b.take_store_ops();
    assert!(
        matches!(
            &ops[..],
            [
                StoreOp::Remove { generation: 7, .. },
                StoreOp::Route { added: false, .. },
                StoreOp::Route { added: false, .. }
            ]
        ),
        "{ops:?}"
    );
}

#[test]
fn clean_sessions_and_a_broker_without_store_write_nothing() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings()).with_store();
    let mut c = online(&mut b, 1, connect(Version::V5, "clean", true));
    b.handle(&mut c, subscribe("x", QoS::AtMostOnce), now)
        .unwrap();
    // Only the shard's route: the session is not stored.
    assert!(matches!(
        &b.take_store_ops()[..],
        [StoreOp::Route { added: true, .. }]
    ));

    let mut plain = Broker::new(0, 1, settings());
    plain.claimed(&id("p"), claim(1, None), now);
    let mut c = online(&mut plain, 1, connect(Version::V3_1_1, "p", false));
    plain
        .handle(&mut c, subscribe("x", QoS::AtMostOnce), now)
        .unwrap();
    assert_eq!(plain.take_store_ops(), []);
}

#[test]
fn a_restarted_node_resumes_a_stored_session() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings()).with_store();
    let stored = StoredSession {
        expiry: Duration::from_secs(60),
        expires_in: Some(Duration::from_secs(50)),
        subscriptions: vec![(
            TopicFilter::new("t/#").unwrap(),
            crate::session::Subscription {
                options: crate::protocol::SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
                id: None,
            },
        )],
        queued: vec![],
    };
    // Offline first, as the background loader finds it: publishes queue.
    assert_eq!(
        b.adopted(&id("s"), claim(3, Some(stored.clone())), now),
        None
    );
    let ops = b.take_store_ops();
    assert!(
        matches!(
            &ops[..],
            [StoreOp::Route { added: true, filter }] if filter == "t/#"
        ),
        "the route is added again, the session is not written back: {ops:?}"
    );
    let mut p = online(&mut b, 9, connect(Version::V5, "pub", true));
    b.handle(&mut p, publish("t/1", QoS::AtLeastOnce, 1, b"queued"), now)
        .unwrap();

    let mut c = connect(Version::V5, "s", false);
    c.properties.session_expiry_interval = Some(60);
    b.claimed(&id("s"), claim(4, Some(stored)), now);
    let client = b.connect(1, &c, now).expect("accepted");
    let out = b.take_output(1).packets;
    assert!(
        matches!(
            &out[0],
            Packet::ConnAck(ConnAck {
                session_present: true,
                ..
            })
        ),
        "{out:?}"
    );
    assert!(
        matches!(&out[1], Packet::Publish(p) if p.payload == "queued"),
        "{out:?}"
    );
    let ops = b.take_store_ops();
    assert!(
        matches!(
            &ops[..],
            [StoreOp::Online {
                generation: 4,
                will: None,
                ..
            }]
        ),
        "{ops:?}"
    );
    let _ = client;
}

#[test]
fn a_clean_claim_does_not_remove_the_session_it_just_took() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings()).with_store();
    b.claimed(&id("p"), claim(1, None), now);
    let c = online(&mut b, 1, connect(Version::V3_1_1, "p", false));
    b.disconnected(&c, None, now);
    b.take_store_ops();

    let mut again = connect(Version::V5, "p", true);
    again.properties.session_expiry_interval = Some(10);
    b.claimed(&id("p"), claim(2, None), now);
    online(&mut b, 2, again);
    let ops = b.take_store_ops();
    assert!(
        matches!(&ops[..], [StoreOp::Online { generation: 2, .. }]),
        "no Remove of generation 1 or 2: {ops:?}"
    );
}

#[test]
fn a_will_left_by_a_dead_owner_goes_out_once() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings()).with_store();
    let mut s = online(&mut b, 1, connect(Version::V3_1_1, "watcher", true));
    b.handle(&mut s, subscribe("wills/#", QoS::AtLeastOnce), now)
        .unwrap();
    b.take_output(1);
    let message = record::decode_message(
        &record::encode_message(
            &Message {
                topic: TopicName::new("wills/dead").unwrap(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: None,
                publisher: id("dead"),
                expires_at: None,
                id: None,
            },
            now,
        ),
        &id("dead"),
        now,
    )
    .unwrap();
    let mut c = claim(5, None);
    c.orphan_will = Some((0, message));
    let (will, generation) = b.adopted(&id("dead"), c, now).expect("the orphan will");
    assert_eq!(received(&mut b, 1).len(), 0, "held until loading ends");
    assert_eq!(generation, Some(5));
    b.take_store_ops();
    b.publish_orphan_will(&id("dead"), will, generation, now);
    assert_eq!(received(&mut b, 1).len(), 1);
    // Published, it leaves the store: the next claim does not find it.
    let ops = b.take_store_ops();
    assert!(
        matches!(&ops[..], [StoreOp::WillGone { generation: 5, .. }]),
        "{ops:?}"
    );
}

#[test]
fn retained_messages_are_stored_where_published_only() {
    let now = Instant::now();
    let mut b = Broker::new(0, 2, settings()).with_store();
    let mut p = online(&mut b, 1, connect(Version::V5, "pub", true));
    let Packet::Publish(mut retained) = publish("r/1", QoS::AtLeastOnce, 1, b"kept") else {
        unreachable!()
    };
    retained.retain = true;
    b.handle(&mut p, Packet::Publish(retained.clone()), now)
        .unwrap();
    let ops = b.take_store_ops();
    let [StoreOp::Retain {
        topic,
        message: Some(m),
        expiry: None,
    }] = &ops[..]
    else {
        panic!("{ops:?}");
    };
    assert_eq!(topic, "r/1");
    assert_eq!(
        &record::decode_message(m, &id("pub"), now).unwrap().payload[..],
        b"kept"
    );

    // Another shard's retained message is its to store.
    let forward = b.forwards.iter().find_map(|(_, f)| match f {
        Forward::Retain(m) => Some(m.clone()),
        _ => None,
    });
    let mut other = Broker::new(1, 2, settings()).with_store();
    other.on_forward(0, Forward::Retain(forward.unwrap()), now);
    assert_eq!(other.take_store_ops(), []);
    assert_eq!(other.retained_count(), 1);

    // An empty payload clears it.
    retained.payload = Bytes::new();
    retained.packet_id = crate::protocol::PacketId::new(2);
    b.handle(&mut p, Packet::Publish(retained), now).unwrap();
    assert!(matches!(
        &b.take_store_ops()[..],
        [StoreOp::Retain { message: None, .. }]
    ));
}

#[test]
fn a_claim_older_than_the_connected_one_loses() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings()).with_store();
    // Two CONNECTs claimed 4 then 5; the task of 5 resumed first.
    assert!(b.claimed(&id("p"), claim(5, None), now));
    online(&mut b, 1, connect(Version::V3_1_1, "p", false));
    b.take_store_ops();
    assert!(!b.claimed(&id("p"), claim(4, None), now), "4 lost to 5");
    assert!(b.is_connected(&id("p")));
    assert_eq!(b.take_store_ops(), [], "nothing written for the loser");
    // A later claim takes over as usual.
    assert!(b.claimed(&id("p"), claim(6, None), now));
}

#[test]
fn a_clean_return_before_loading_ends_the_stored_session() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings()).with_store();
    let stored = StoredSession {
        expiry: Duration::MAX,
        expires_in: None,
        subscriptions: vec![],
        queued: vec![],
    };
    // Back clean and gone again before loading reached its stored session.
    let c = online(&mut b, 1, connect(Version::V3_1_1, "p", true));
    b.disconnected(&c, None, now);
    b.take_store_ops();
    assert_eq!(
        b.adopted(&id("p"), claim(3, Some(stored.clone())), now),
        None
    );
    assert_eq!(
        b.take_store_ops(),
        [StoreOp::Remove {
            client_id: id("p"),
            generation: 3
        }],
        "the stored session is over"
    );
    assert!(!b.sessions.contains_key(&id("p")), "and not restored");

    // Once loading is over, nothing is remembered.
    b.loaded();
    online(&mut b, 2, connect(Version::V3_1_1, "q", true));
    assert!(b.unclaimed.is_none());
}

#[test]
fn loading_is_over_when_every_shard_said_so_after_its_index_updates() {
    let now = Instant::now();
    let mut b = Broker::new(0, 2, settings()).with_store();
    assert!(!b.all_loaded());
    b.loaded();
    assert!(!b.all_loaded(), "shard 1 has not said so yet");
    assert!(
        matches!(&b.forwards[..], [(1, Forward::Loaded)]),
        "shard 1 is told, after what loading forwarded: {:?}",
        b.forwards
    );
    b.on_forward(1, Forward::Loaded, now);
    assert!(b.all_loaded());
    assert!(
        Broker::new(0, 2, settings()).all_loaded(),
        "no store, nothing to load"
    );
}
