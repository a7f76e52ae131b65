//! The auth, ACL and event seams, driven through the broker.

use std::time::Instant;

use bytes::BytesMut;
use bytestring::ByteString;

use super::tests::{connect, online, pid, publish, received, settings, subscribe};
use super::*;
use crate::acl::{Authorizer, Decision};
use crate::auth::{Authenticator, Failure, Identity};
use crate::events::{EventKind, Recorder};
use crate::protocol::{
    encode, Ack, Subscribe, SubscribeProperties, SubscriptionOptions, Unsubscribe, Version,
};
use crate::topic::{TopicFilter, TopicName};

/// Refuses user `bad` with its reason; accepts the rest.
struct RefuseBad(Failure);

impl Authenticator for RefuseBad {
    fn authenticate(&self, c: &Connect, id: &ByteString) -> Result<Identity, Failure> {
        match c.username.as_deref() {
            Some("bad") => Err(self.0),
            _ => Ok(Identity::anonymous(c, id)),
        }
    }
}

fn as_bad(mut c: Connect) -> Connect {
    c.username = Some(ByteString::from_static("bad"));
    c
}

/// Denies `secret/...` with the label "secret"; allows the rest with "open".
struct DenySecret;

impl Authorizer for DenySecret {
    fn publish(&self, _: &Identity, topic: &TopicName) -> Decision {
        decide(topic.as_str())
    }

    fn subscribe(&self, _: &Identity, filter: &TopicFilter) -> Decision {
        decide(filter.as_str())
    }
}

fn decide(topic: &str) -> Decision {
    match topic.starts_with("secret/") {
        true => Decision::deny().labelled("secret"),
        false => Decision::allow().labelled("open"),
    }
}

fn bytes(packet: &Packet, version: Version) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).unwrap();
    buf.to_vec()
}

fn connack_bytes(b: &mut Broker, c: &Connect) -> Vec<u8> {
    let reason = b.connect(9, c, Instant::now()).unwrap_err();
    let refusal = handshake::refusal(reason);
    bytes(&Packet::ConnAck(refusal), c.version)
}

#[test]
fn a_refusing_authenticator_gives_connack_codes_and_no_session() {
    let now = Instant::now();
    for (reason, v3, v5) in [
        (Failure::InvalidSignature, 5, 0x87),
        (Failure::MissingCredentials, 4, 0x86),
    ] {
        let mut b = Broker::new(0, 1, settings()).with_auth(Box::new(RefuseBad(reason)));
        let v3_bytes = connack_bytes(&mut b, &as_bad(connect(Version::V3_1_1, "c", true)));
        assert_eq!(v3_bytes, [0x20, 2, 0, v3]);
        let v5_bytes = connack_bytes(&mut b, &as_bad(connect(Version::V5, "c", true)));
        assert_eq!(v5_bytes[..4], [0x20, 3, 0, v5]);
        assert_eq!(b.session_count(), 0);
        assert!(!b.has_output(9));
        assert!(b.take_output(9).packets.is_empty());
    }
    // A refused clean start does not end the persistent session it names.
    let mut b =
        Broker::new(0, 1, settings()).with_auth(Box::new(RefuseBad(Failure::UsernameRidMismatch)));
    let mut fine = online(&mut b, 1, connect(Version::V3_1_1, "c", false));
    b.handle(&mut fine, subscribe("t", QoS::AtLeastOnce), now)
        .unwrap();
    b.disconnected(&fine, None, now);
    connack_bytes(&mut b, &as_bad(connect(Version::V3_1_1, "c", true)));
    assert_eq!((b.session_count(), b.subscription_count()), (1, 1));
}

fn subscribe_two(filters: [&str; 2]) -> Packet {
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        filters: filters
            .map(|f| (TopicFilter::new(f.to_owned()).unwrap(), options))
            .to_vec(),
        properties: SubscribeProperties::default(),
    })
}

#[test]
fn a_denying_authorizer_refuses_filters_per_filter() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings()).with_acl(Box::new(DenySecret));
    for (version, denied) in [(Version::V3_1_1, 0x80), (Version::V5, 0x87)] {
        let mut c = online(&mut b, 1, connect(version, "c", true));
        b.handle(&mut c, subscribe_two(["a/+", "secret/#"]), now)
            .unwrap();
        let out = b.take_output(1).packets;
        let suback = bytes(&out[0], version);
        assert_eq!(suback[suback.len() - 2..], [0x01, denied], "{version:?}");
        assert_eq!(b.subscription_count(), 1);
        b.disconnected(&c, None, now);
    }
}

#[test]
fn a_denying_authorizer_drops_publishes_with_the_right_acks() {
    let now = Instant::now();
    let mut b = Broker::new(0, 1, settings()).with_acl(Box::new(DenySecret));
    let mut sub = online(&mut b, 1, connect(Version::V5, "sub", true));
    b.handle(&mut sub, subscribe("#", QoS::ExactlyOnce), now)
        .unwrap();
    b.take_output(1);
    let denied = |reason| {
        let mut ack = Ack::new(pid(7));
        ack.reason_code = reason;
        ack
    };
    for (version, reason) in [
        (Version::V3_1_1, ReasonCode::Success),
        (Version::V5, ReasonCode::NotAuthorized),
    ] {
        let mut p = online(&mut b, 2, connect(version, "pub", true));
        b.handle(&mut p, publish("secret/x", QoS::AtMostOnce, 0, b"0"), now)
            .unwrap();
        b.handle(&mut p, publish("secret/x", QoS::AtLeastOnce, 7, b"1"), now)
            .unwrap();
        b.handle(&mut p, publish("secret/x", QoS::ExactlyOnce, 7, b"2"), now)
            .unwrap();
        assert_eq!(
            b.take_output(2).packets,
            [
                Packet::PubAck(denied(reason)),
                Packet::PubRec(denied(reason))
            ]
        );
        // MQTT 3 completes the QoS 2 exchange; MQTT 5's error PUBREC ended it.
        b.handle(&mut p, Packet::PubRel(Ack::new(pid(7))), now)
            .unwrap();
        let completed = match version {
            Version::V5 => ReasonCode::PacketIdentifierNotFound,
            _ => ReasonCode::Success,
        };
        assert_eq!(
            b.take_output(2).packets,
            [Packet::PubComp(denied(completed))]
        );
        b.disconnected(&p, None, now);
    }
    assert_eq!(received(&mut b, 1), []);
    assert_eq!(b.stats.publishes_denied, 6);
}

fn unsubscribe(filter: &str) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(2),
        filters: vec![TopicFilter::new(filter.to_owned()).unwrap()],
        user_properties: Default::default(),
    })
}

/// Connects, subscribes, publishes, unsubscribes and disconnects, with one
/// persistent subscriber offline for a QoS 0 drop, and a refused CONNECT.
fn scenario(b: &mut Broker) {
    let now = Instant::now();
    let mut sub = online(b, 1, connect(Version::V3_1_1, "sub", true));
    let mut away = online(b, 2, connect(Version::V3_1_1, "away", false));
    let mut with_props = connect(Version::V5, "pub", true);
    with_props.properties.user_properties =
        vec![(ByteString::from_static("k"), ByteString::from_static("v"))];
    let mut publ = online(b, 3, with_props);
    b.handle(&mut sub, subscribe_two(["a/+", "secret/#"]), now)
        .unwrap();
    b.handle(&mut away, subscribe("z", QoS::AtMostOnce), now)
        .unwrap();
    b.disconnected(&away, None, now);
    b.handle(&mut publ, publish("a/b", QoS::AtLeastOnce, 1, b"m"), now)
        .unwrap();
    b.handle(&mut publ, publish("z", QoS::AtMostOnce, 0, b"m"), now)
        .unwrap();
    b.handle(
        &mut publ,
        publish("secret/x", QoS::AtLeastOnce, 2, b"m"),
        now,
    )
    .unwrap();
    b.handle(&mut sub, unsubscribe("a/+"), now).unwrap();
    b.disconnected(&sub, None, now);
    let mut refused = connect(Version::V5, "x", true);
    refused.version = Version::V3_1; // not in the allowed list below
    b.connect(4, &refused, now).unwrap_err();
}

fn v31_refused() -> Settings {
    let mut s = settings();
    s.connect.allowed_versions = vec![Version::V3_1_1, Version::V5];
    s
}

#[test]
fn the_recording_sink_sees_each_hook_in_order() {
    use EventKind::*;
    let all = [
        Register,
        RegisterFailed,
        Publish,
        Subscribe,
        Unsubscribe,
        Deliver,
        MessageDrop,
        ClientOffline,
        ClientGone,
    ];
    let recorder = Recorder::new(&all);
    let mut b = Broker::new(0, 1, v31_refused())
        .with_acl(Box::new(DenySecret))
        .with_events(Box::new(recorder.clone()));
    scenario(&mut b);
    assert_eq!(
        recorder.take(),
        [
            "register sub",
            "register away",
            "register pub k=v",
            "subscribe sub a/+:1:open secret/#:128:secret",
            "subscribe away z:0:open",
            "offline away",
            "publish pub a/b q1 label=open",
            "deliver sub a/b q1",
            "publish pub z q0 label=open",
            "drop away z Offline",
            "unsubscribe sub a/+",
            "offline sub",
            "gone sub",
            "register_failed x UnsupportedProtocolVersion",
        ]
    );
}

#[test]
fn a_refused_login_reaches_on_register_failed_with_its_reason() {
    let recorder = Recorder::new(&[EventKind::RegisterFailed]);
    let mut b = Broker::new(0, 1, settings())
        .with_auth(Box::new(RefuseBad(Failure::UsernameRidMismatch)))
        .with_events(Box::new(recorder.clone()));
    connack_bytes(&mut b, &as_bad(connect(Version::V3_1_1, "dev-1", true)));
    assert_eq!(
        recorder.take(),
        ["register_failed dev-1 NotAuthorized username_rid_mismatch"]
    );
    let failure = Failure::UsernameRidMismatch as usize;
    assert_eq!(b.stats.auth_failures[failure], 1);
    assert_eq!(Failure::UsernameRidMismatch.registration_reason(), 6);
}

#[test]
fn a_sink_sees_only_the_kinds_it_wants() {
    let recorder = Recorder::new(&[EventKind::Publish, EventKind::ClientGone]);
    let mut b = Broker::new(0, 1, v31_refused())
        .with_acl(Box::new(DenySecret))
        .with_events(Box::new(recorder.clone()));
    // The recorder also panics on any event it did not ask for.
    scenario(&mut b);
    assert_eq!(
        recorder.take(),
        [
            "publish pub a/b q1 label=open",
            "publish pub z q0 label=open",
            "gone sub"
        ]
    );
}
