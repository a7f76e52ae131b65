//! Both event streams, end to end: a broker driven through every hook, a sink
//! that writes each event as a native frame and as a vmq-compat frame, and the
//! frames decoded back with the generated types, field by field, for MQTT
//! 3.1.1 (with Courier's CONNECT user properties) and MQTT 5.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use prost::Message as _;

use super::frame::{decode_native, decode_vmq, NativeBatch};
use super::schema::native::event::Event as E;
use super::schema::vmq;
use super::{encode_native, encode_vmq, Event, EventKind, EventSink, OfflineReason};
use crate::acl::{Authorizer, Decision};
use crate::auth::{Authenticator, Failure, Identity};
use crate::broker::{Broker, Client, ConnId};
use crate::protocol::{
    decode, Ack, Connect, ConnectProperties, Packet, PacketId, Publish, PublishProperties, QoS,
    Subscribe, SubscribeProperties, SubscriptionOptions, Unsubscribe, Version,
};
use crate::topic::{TopicFilter, TopicName};

/// What the test sink wrote: one native batch and a vmq-compat byte stream.
struct Streams {
    batch: NativeBatch,
    next_seq: u64,
    vmq: BytesMut,
}

/// Encodes every event both ways, with the same timestamp.
struct FrameSink(Rc<RefCell<Streams>>);

impl EventSink for FrameSink {
    fn wants(&self, _: EventKind) -> bool {
        true
    }

    fn emit(&mut self, event: Event<'_>) {
        let now = SystemTime::now();
        let mut s = self.0.borrow_mut();
        let mut encoded = Vec::new();
        encode_native(&event, now, &mut encoded);
        let seq = s.next_seq;
        s.next_seq += 1;
        s.batch.push(seq, &encoded);
        encode_vmq(&event, now, &mut s.vmq);
    }
}

/// The vmq-compat `Any` decoded by its `type_url`, as the native oneof.
fn from_any(any: Bytes) -> E {
    let any = prost_types::Any::decode(any).expect("Any");
    let name = any
        .type_url
        .strip_prefix("type.googleapis.com/eventssidecar.v1.")
        .expect("type_url prefix");
    let v = any.value.as_slice();
    match name {
        "OnRegister" => E::OnRegister(vmq::OnRegister::decode(v).unwrap()),
        "OnRegisterFailed" => E::OnRegisterFailed(vmq::OnRegisterFailed::decode(v).unwrap()),
        "OnPublish" => E::OnPublish(vmq::OnPublish::decode(v).unwrap()),
        "OnSubscribe" => E::OnSubscribe(vmq::OnSubscribe::decode(v).unwrap()),
        "OnUnsubscribe" => E::OnUnsubscribe(vmq::OnUnsubscribe::decode(v).unwrap()),
        "OnDeliver" => E::OnDeliver(vmq::OnDeliver::decode(v).unwrap()),
        "OnDeliveryComplete" => E::OnDeliveryComplete(vmq::OnDeliveryComplete::decode(v).unwrap()),
        "OnOfflineMessage" => E::OnOfflineMessage(vmq::OnOfflineMessage::decode(v).unwrap()),
        "OnMessageDrop" => E::OnMessageDrop(vmq::OnMessageDrop::decode(v).unwrap()),
        "OnClientWakeUp" => E::OnClientWakeup(vmq::OnClientWakeUp::decode(v).unwrap()),
        "OnSessionExpired" => E::OnSessionExpired(vmq::OnSessionExpired::decode(v).unwrap()),
        "OnClientOffline" => E::OnClientOffline(vmq::OnClientOffline::decode(v).unwrap()),
        "OnClientGone" => E::OnClientGone(vmq::OnClientGone::decode(v).unwrap()),
        other => panic!("unknown message {other}"),
    }
}

/// Takes the timestamp out of an event (checking it is set and recent), so
/// the rest compares with `==`.
fn strip_timestamp(e: &mut E) {
    let ts = match e {
        E::OnRegister(m) => m.timestamp.take(),
        E::OnRegisterFailed(m) => m.timestamp.take(),
        E::OnPublish(m) => m.timestamp.take(),
        E::OnSubscribe(m) => m.timestamp.take(),
        E::OnUnsubscribe(m) => m.timestamp.take(),
        E::OnDeliver(m) => m.timestamp.take(),
        E::OnDeliveryComplete(m) => m.timestamp.take(),
        E::OnOfflineMessage(m) => m.timestamp.take(),
        E::OnMessageDrop(m) => m.timestamp.take(),
        E::OnClientWakeup(m) => m.timestamp.take(),
        E::OnSessionExpired(m) => m.timestamp.take(),
        E::OnClientOffline(m) => m.timestamp.take(),
        E::OnClientGone(m) => m.timestamp.take(),
    };
    let ts = ts.expect("every message has a timestamp");
    let age = SystemTime::now()
        .duration_since(SystemTime::try_from(ts).unwrap())
        .unwrap();
    assert!(age < Duration::from_secs(60), "timestamp {age:?} old");
}

/// The broker under test and the streams its sink writes.
struct Rig {
    broker: Broker,
    streams: Rc<RefCell<Streams>>,
    /// Sequence number the next native frame must start at.
    expect_seq: u64,
    now: Instant,
}

impl Rig {
    fn new() -> Rig {
        let streams = Rc::new(RefCell::new(Streams {
            batch: NativeBatch::new(7),
            next_seq: 100,
            vmq: BytesMut::new(),
        }));
        let broker = Broker::new(0, 1, crate::broker::tests::settings())
            .with_auth(Box::new(RefuseBad))
            .with_acl(Box::new(LabelledAcl))
            .with_events(Box::new(FrameSink(streams.clone())));
        Rig {
            broker,
            streams,
            expect_seq: 100,
            now: Instant::now(),
        }
    }

    /// Every event since the last call, decoded from both streams, which
    /// must agree; timestamps checked and removed.
    fn take(&mut self) -> Vec<E> {
        let mut s = self.streams.borrow_mut();
        let count = s.batch.count() as usize;
        let mut native = Vec::new();
        if count > 0 {
            let mut buf = BytesMut::from(&s.batch.finish()[..]);
            let frame = decode_native(&mut buf, 1 << 20).unwrap().unwrap();
            assert!(buf.is_empty());
            assert_eq!((frame.shard, frame.first_seq), (7, self.expect_seq));
            assert_eq!(frame.events.len(), count);
            self.expect_seq += count as u64;
            for bytes in frame.events {
                let event = super::schema::native::Event::decode(bytes).unwrap();
                native.push(event.event.expect("oneof set"));
            }
        }
        let mut compat = Vec::new();
        while let Some(any) = decode_vmq(&mut s.vmq, 1 << 20).unwrap() {
            compat.push(from_any(any));
        }
        assert!(s.vmq.is_empty());
        assert_eq!(native, compat, "native and vmq-compat streams differ");
        native.iter_mut().for_each(strip_timestamp);
        native
    }

    fn connect(&mut self, conn: ConnId, c: Connect) -> Client {
        let client = self.broker.connect(conn, &c, self.now).expect("accepted");
        self.broker.take_output(conn);
        client
    }

    fn handle(&mut self, client: &mut Client, packet: Packet) {
        self.broker.handle(client, packet, self.now).unwrap();
    }
}

/// Refuses user `bad` with an invalid signature.
struct RefuseBad;

impl Authenticator for RefuseBad {
    fn authenticate(&self, c: &Connect, id: &ByteString) -> Result<Identity, Failure> {
        match c.username.as_deref() {
            Some("bad") => Err(Failure::InvalidSignature),
            _ => Ok(Identity::anonymous(c, id)),
        }
    }
}

/// Allows `a/...` by rule `a/#` labelled "open"; denies the rest by rule
/// `secret/#` labelled "secret".
struct LabelledAcl;

impl LabelledAcl {
    fn decide(topic: &str) -> Decision {
        match topic.starts_with("a/") {
            true => Decision::allow().labelled("open").with_pattern("a/#"),
            false => Decision::deny().labelled("secret").with_pattern("secret/#"),
        }
    }
}

impl Authorizer for LabelledAcl {
    fn publish(&self, _: &Identity, topic: &TopicName) -> Decision {
        LabelledAcl::decide(topic.as_str())
    }

    fn subscribe(&self, _: &Identity, filter: &TopicFilter) -> Decision {
        LabelledAcl::decide(filter.as_str())
    }
}

fn s(v: &str) -> String {
    v.to_owned()
}

/// A CONNECT from `id`/`user` with user properties os=android, app=1.2: for
/// 3.1.1, decoded from the bytes a Courier client sends (properties after
/// the password, no length prefix); for 5, in the properties.
fn connect(version: Version, id: &str, user: &str, clean: bool) -> Connect {
    let mut c = if version == Version::V3_1_1 {
        let mut bytes = BytesMut::new();
        let mut body = Vec::new();
        body.extend_from_slice(b"\x00\x04MQTT\x04");
        body.push(if clean { 0xc2 } else { 0xc0 });
        body.extend_from_slice(&30u16.to_be_bytes());
        for field in [id.as_bytes(), user.as_bytes(), b"jwt"] {
            body.extend_from_slice(&(field.len() as u16).to_be_bytes());
            body.extend_from_slice(field);
        }
        body.extend_from_slice(b"\x26\x00\x02os\x00\x07android");
        body.extend_from_slice(b"\x26\x00\x03app\x00\x031.2");
        bytes.extend_from_slice(&[0x10, body.len() as u8]);
        bytes.extend_from_slice(&body);
        match decode(&mut bytes, Version::V5, 1 << 20) {
            Ok(Some(Packet::Connect(c))) => *c,
            other => panic!("not a CONNECT: {other:?}"),
        }
    } else {
        Connect {
            version,
            clean_start: clean,
            keep_alive: 30,
            client_id: ByteString::from(id),
            will: None,
            username: Some(user.into()),
            password: Some(Bytes::from_static(b"jwt")),
            properties: ConnectProperties {
                user_properties: vec![
                    (ByteString::from("os"), ByteString::from("android")),
                    (ByteString::from("app"), ByteString::from("1.2")),
                ],
                ..Default::default()
            },
        }
    };
    if version == Version::V5 && !clean {
        // An MQTT 5 session outlives its connection only with an expiry.
        c.properties.session_expiry_interval = Some(60);
    }
    c
}

fn publish(topic: &str, qos: QoS, id: u16, retain: bool, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: TopicName::new(topic.to_owned()).unwrap(),
        packet_id: PacketId::new(id),
        payload: Bytes::from_static(payload),
        properties: PublishProperties::default(),
    })
}

fn subscribe(filters: &[&str]) -> Packet {
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        filters: filters
            .iter()
            .map(|f| (TopicFilter::new((*f).to_owned()).unwrap(), options))
            .collect(),
        properties: SubscribeProperties::default(),
    })
}

fn acl(name: &str, pattern: &str) -> Option<vmq::MatchedAcl> {
    Some(vmq::MatchedAcl {
        name: s(name),
        pattern: s(pattern),
    })
}

fn props() -> std::collections::BTreeMap<String, String> {
    [(s("os"), s("android")), (s("app"), s("1.2"))].into()
}

fn run(version: Version) {
    let mut r = Rig::new();
    let v = format!("{version:?}");

    // on_register, with the CONNECT's user properties.
    let mut sub = r.connect(1, connect(version, "sub", "su", false));
    let mut publ = r.connect(2, connect(version, "pub", "pu", true));
    let register = |id: &str, user: &str| {
        E::OnRegister(vmq::OnRegister {
            username: s(user),
            client_id: s(id),
            user_properties: props(),
            session_id: s(id),
            ..Default::default()
        })
    };
    assert_eq!(
        r.take(),
        [register("sub", "su"), register("pub", "pu")],
        "{v}"
    );

    // on_subscribe: granted QoS, 128 for the refused filter, each rule.
    r.handle(&mut sub, subscribe(&["a/+", "secret/#"]));
    r.broker.take_output(1);
    assert_eq!(
        r.take(),
        [E::OnSubscribe(vmq::OnSubscribe {
            client_id: s("sub"),
            username: s("su"),
            topics: vec![
                vmq::TopicInfo {
                    topic: s("a/+"),
                    qos: 1,
                    matched_acl: acl("open", "a/#"),
                },
                vmq::TopicInfo {
                    topic: s("secret/#"),
                    qos: 128,
                    matched_acl: acl("secret", "secret/#"),
                },
            ],
            session_id: s("sub"),
            ..Default::default()
        })],
        "{v}"
    );

    // on_publish, then on_deliver to the subscriber (RETAIN is cleared on
    // delivery to an existing subscription).
    r.handle(
        &mut publ,
        publish("a/b", QoS::AtLeastOnce, 1, true, b"hello"),
    );
    assert_eq!(
        r.take(),
        [
            E::OnPublish(vmq::OnPublish {
                username: s("pu"),
                client_id: s("pub"),
                qos: 1,
                topic: s("a/b"),
                payload: Bytes::from_static(b"hello"),
                retain: true,
                matched_acl: acl("open", "a/#"),
                session_id: s("pub"),
                ..Default::default()
            }),
            E::OnDeliver(vmq::OnDeliver {
                username: s("su"),
                client_id: s("sub"),
                topic: s("a/b"),
                qos: 1,
                is_retain: false,
                payload: Bytes::from_static(b"hello"),
                session_id: s("sub"),
                ..Default::default()
            }),
        ],
        "{v}"
    );
    // The subscriber acks it: on_delivery_complete, once (a repeated PUBACK
    // acknowledges nothing).
    let id = match &r.broker.take_output(1).packets[..] {
        [Packet::Publish(p)] => p.packet_id.unwrap(),
        other => panic!("{v}: {other:?}"),
    };
    r.handle(&mut sub, Packet::PubAck(Ack::new(id)));
    assert_eq!(
        r.take(),
        [E::OnDeliveryComplete(vmq::OnDeliveryComplete {
            username: s("su"),
            client_id: s("sub"),
            topic: s("a/b"),
            qos: 1,
            is_retain: false,
            payload: Bytes::from_static(b"hello"),
            session_id: s("sub"),
            ..Default::default()
        })],
        "{v}"
    );
    r.handle(&mut sub, Packet::PubAck(Ack::new(id)));
    assert_eq!(r.take(), [], "{v}");
    // A denied publish is no on_publish.
    r.handle(
        &mut publ,
        publish("secret/x", QoS::AtMostOnce, 0, false, b"no"),
    );
    assert_eq!(r.take(), [], "{v}");

    // on_unsubscribe.
    r.handle(
        &mut sub,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: PacketId::new(2).unwrap(),
            filters: vec![TopicFilter::new(s("secret/#")).unwrap()],
            user_properties: Default::default(),
        }),
    );
    assert_eq!(
        r.take(),
        [E::OnUnsubscribe(vmq::OnUnsubscribe {
            username: s("su"),
            client_id: s("sub"),
            topics: vec![s("secret/#")],
            session_id: s("sub"),
            ..Default::default()
        })],
        "{v}"
    );

    // on_client_offline with the reason; the persistent session stays.
    r.broker
        .disconnected_because(&sub, None, OfflineReason::NormalDisconnect, r.now);
    let offline = |id: &str, user: &str, reason: vmq::Reason| {
        E::OnClientOffline(vmq::OnClientOffline {
            client_id: s(id),
            reason: reason as i32,
            username: s(user),
            session_id: s(id),
            ..Default::default()
        })
    };
    assert_eq!(
        r.take(),
        [offline("sub", "su", vmq::Reason::NormalDisconnect)],
        "{v}"
    );

    // on_offline_message for QoS 1; on_message_drop for QoS 0.
    r.handle(
        &mut publ,
        publish("a/c", QoS::AtLeastOnce, 2, false, b"later"),
    );
    r.handle(
        &mut publ,
        publish("a/d", QoS::AtMostOnce, 0, false, b"lost"),
    );
    let events = r.take();
    assert_eq!(events.len(), 4, "{v}: {events:?}");
    assert_eq!(
        events[1],
        E::OnOfflineMessage(vmq::OnOfflineMessage {
            client_id: s("sub"),
            qos: 1,
            topic: s("a/c"),
            payload: Bytes::from_static(b"later"),
            retain: false,
            session_id: s("sub"),
            ..Default::default()
        }),
        "{v}"
    );
    assert_eq!(
        events[3],
        E::OnMessageDrop(vmq::OnMessageDrop {
            client_id: s("sub"),
            qos: 0,
            topic: s("a/d"),
            payload: Bytes::from_static(b"lost"),
            reason: s("offline"),
            session_id: s("sub"),
            ..Default::default()
        }),
        "{v}"
    );

    // Back to the session: on_register, on_client_wakeup, and the queued
    // message's on_deliver.
    let sub = r.connect(3, connect(version, "sub", "su", false));
    let events = r.take();
    assert_eq!(
        events,
        [
            register("sub", "su"),
            E::OnClientWakeup(vmq::OnClientWakeUp {
                client_id: s("sub"),
                session_id: s("sub"),
                ..Default::default()
            }),
            E::OnDeliver(vmq::OnDeliver {
                username: s("su"),
                client_id: s("sub"),
                topic: s("a/c"),
                qos: 1,
                payload: Bytes::from_static(b"later"),
                session_id: s("sub"),
                ..Default::default()
            }),
        ],
        "{v}"
    );

    // on_register_failed with the authenticator's reason.
    let mut bad = connect(version, "x", "bad", true);
    bad.clean_start = true;
    r.broker.connect(4, &bad, r.now).unwrap_err();
    assert_eq!(
        r.take(),
        [E::OnRegisterFailed(vmq::OnRegisterFailed {
            client_id: s("x"),
            username: s("bad"),
            clean_session: true,
            reason: vmq::on_register_failed::RegistrationFailureReason::ReasonInvalidSignature
                as i32,
            ..Default::default()
        })],
        "{v}"
    );

    // A clean session's end: on_client_offline, then on_client_gone.
    r.broker
        .disconnected_because(&publ, None, OfflineReason::TcpClosed, r.now);
    assert_eq!(
        r.take(),
        [
            offline("pub", "pu", vmq::Reason::TcpClosed),
            E::OnClientGone(vmq::OnClientGone {
                client_id: s("pub"),
                username: s("pu"),
                session_id: s("pub"),
                ..Default::default()
            }),
        ],
        "{v}"
    );

    // Keepalive; in MQTT 5 the session then expires: on_session_expired,
    // on_client_gone. (An MQTT 3.1.1 persistent session never expires.)
    r.broker
        .disconnected_because(&sub, None, OfflineReason::KeepAlive, r.now);
    assert_eq!(
        r.take(),
        [offline("sub", "su", vmq::Reason::DisconnectKeepAlive)],
        "{v}"
    );
    r.broker.tick(r.now + Duration::from_secs(61));
    let expected = match version {
        Version::V5 => vec![
            E::OnSessionExpired(vmq::OnSessionExpired {
                client_id: s("sub"),
                session_id: s("sub"),
                ..Default::default()
            }),
            E::OnClientGone(vmq::OnClientGone {
                client_id: s("sub"),
                username: s("su"),
                session_id: s("sub"),
                ..Default::default()
            }),
        ],
        _ => vec![],
    };
    assert_eq!(r.take(), expected, "{v}");
}

#[test]
fn both_streams_carry_every_hook_mqtt_3_1_1_courier() {
    run(Version::V3_1_1);
}

#[test]
fn both_streams_carry_every_hook_mqtt_5() {
    run(Version::V5);
}

/// on_delivery_complete (emitted on PUBACK / PUBREC); its conversion is
/// checked directly.
#[test]
fn delivery_complete_converts_like_deliver() {
    let who = Identity {
        username: Some("u".into()),
        client_id: ByteString::from("c"),
        claims: None,
    };
    let topic = TopicName::new(s("t/1")).unwrap();
    let payload = Bytes::from_static(b"p");
    let event = Event::DeliveryComplete {
        who: &who,
        topic: &topic,
        qos: QoS::ExactlyOnce,
        retain: true,
        payload: &payload,
    };
    let mut out = BytesMut::new();
    encode_vmq(&event, SystemTime::now(), &mut out);
    let mut e = from_any(decode_vmq(&mut out, 1024).unwrap().unwrap());
    strip_timestamp(&mut e);
    assert_eq!(
        e,
        E::OnDeliveryComplete(vmq::OnDeliveryComplete {
            username: s("u"),
            client_id: s("c"),
            topic: s("t/1"),
            qos: 2,
            is_retain: true,
            payload,
            session_id: s("c"),
            ..Default::default()
        })
    );
}

#[test]
fn offline_reasons_map_onto_the_forks_enum() {
    use crate::protocol::ReasonCode as R;
    for (code, want) in [
        (None, OfflineReason::TcpClosed),
        (Some(R::Success), OfflineReason::NormalDisconnect),
        (
            Some(R::DisconnectWithWillMessage),
            OfflineReason::ClientDisconnect,
        ),
        (Some(R::KeepAliveTimeout), OfflineReason::KeepAlive),
        (Some(R::ProtocolError), OfflineReason::ProtocolError),
        (Some(R::MalformedPacket), OfflineReason::ProtocolError),
        (Some(R::ServerShuttingDown), OfflineReason::ShuttingDown),
        (Some(R::MessageRateTooHigh), OfflineReason::Administrative),
    ] {
        assert_eq!(OfflineReason::from_reason_code(code), want, "{code:?}");
    }
}

#[test]
fn hook_names_round_trip() {
    for kind in EventKind::ALL {
        assert_eq!(EventKind::from_hook_name(kind.hook_name()), Some(kind));
    }
    assert_eq!(
        EventKind::from_hook_name("on_client_wakeup"),
        Some(EventKind::ClientWakeUp)
    );
    assert_eq!(EventKind::from_hook_name("on_nothing"), None);
}
