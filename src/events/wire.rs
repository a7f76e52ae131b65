//! The hot-path encoder: an [`Event`] written as protobuf straight from the
//! broker's borrowed fields, with no owned message in between.
//!
//! Why: building the generated message (as [`to_native`](super::to_native)
//! does) allocates a `String` per text field; at a million events a second
//! on the shard's thread that is most of the cost. Here each message is
//! walked twice by the same code: once counting bytes (for the length
//! prefixes), once writing. The field numbers are those of
//! `proto/eventssidecar/v1/events.proto`; tests check the output decodes to
//! exactly what `to_native` builds.

use std::time::SystemTime;

use bytes::BufMut;
use prost::encoding::encoded_len_varint;

use super::convert::{drop_reason, offline_reason, peer_ip, peer_port, registration_code};
use super::{Event, EventKind};
use crate::auth::Identity;
use crate::events::TopicInfo;
use crate::protocol::QoS;

/// Where encoded bytes go: counted, or written.
pub(super) trait Out {
    fn bytes(&mut self, b: &[u8]);
    fn varint(&mut self, v: u64);
}

/// Counts what would be written.
pub(super) struct Count(pub usize);

impl Out for Count {
    fn bytes(&mut self, b: &[u8]) {
        self.0 += b.len();
    }

    fn varint(&mut self, v: u64) {
        self.0 += encoded_len_varint(v);
    }
}

/// Writes into a buffer.
pub(super) struct Write<'a, B>(pub &'a mut B);

impl<B: BufMut> Out for Write<'_, B> {
    fn bytes(&mut self, b: &[u8]) {
        self.0.put_slice(b);
    }

    fn varint(&mut self, v: u64) {
        prost::encoding::encode_varint(v, self.0);
    }
}

const VARINT: u64 = 0;
const LEN: u64 = 2;

fn key(w: &mut impl Out, tag: u32, wire_type: u64) {
    w.varint(u64::from(tag) << 3 | wire_type);
}

/// A length-delimited field (string, bytes), always written.
fn raw(w: &mut impl Out, tag: u32, b: &[u8]) {
    key(w, tag, LEN);
    w.varint(b.len() as u64);
    w.bytes(b);
}

/// A proto3 string/bytes field: skipped when empty.
fn text(w: &mut impl Out, tag: u32, b: &[u8]) {
    if !b.is_empty() {
        raw(w, tag, b);
    }
}

/// A proto3 int32/enum/bool field: skipped when zero.
fn int(w: &mut impl Out, tag: u32, v: i64) {
    if v != 0 {
        key(w, tag, VARINT);
        w.varint(v as u64);
    }
}

/// An embedded message field whose body is `len` bytes, written by `body`.
fn nested<W: Out>(w: &mut W, tag: u32, len: usize, body: impl FnOnce(&mut W)) {
    key(w, tag, LEN);
    w.varint(len as u64);
    body(w);
}

/// `google.protobuf.Timestamp`, as seconds and nanos.
#[derive(Clone, Copy)]
pub(super) struct Ts {
    seconds: i64,
    nanos: i32,
}

impl Ts {
    pub(super) fn new(now: SystemTime) -> Ts {
        let t = prost_types::Timestamp::from(now);
        Ts {
            seconds: t.seconds,
            nanos: t.nanos,
        }
    }

    fn body(self, w: &mut impl Out) {
        int(w, 1, self.seconds);
        int(w, 2, i64::from(self.nanos));
    }

    fn field(self, w: &mut impl Out) {
        let mut c = Count(0);
        self.body(&mut c);
        nested(w, 1, c.0, |w| self.body(w));
    }
}

/// `MatchedACL`, when a rule decided with a label or a pattern.
fn matched_acl(w: &mut impl Out, tag: u32, label: Option<&str>, pattern: Option<&str>) {
    if label.is_none() && pattern.is_none() {
        return;
    }
    let name = label.unwrap_or_default().as_bytes();
    let pattern = pattern.unwrap_or_default().as_bytes();
    let mut c = Count(0);
    text(&mut c, 1, name);
    text(&mut c, 2, pattern);
    nested(w, tag, c.0, |w| {
        text(w, 1, name);
        text(w, 2, pattern);
    });
}

fn topic_info(w: &mut impl Out, t: &TopicInfo) {
    int(w, 2, i64::from(t.qos));
    matched_acl(w, 3, t.label.as_deref(), t.pattern.as_deref());
}

fn topic_info_len(t: &TopicInfo) -> usize {
    let mut c = Count(0);
    raw(&mut c, 1, t.filter.as_str().as_bytes());
    topic_info(&mut c, t);
    c.0
}

fn username(who: &Identity) -> &[u8] {
    who.username.as_deref().unwrap_or_default().as_bytes()
}

fn qos(q: QoS) -> i64 {
    q as i64
}

/// The body of `event`'s `eventssidecar.v1` message.
pub(super) fn body(event: &Event<'_>, ts: Ts, w: &mut impl Out) {
    ts.field(w);
    match *event {
        Event::Register {
            who,
            peer,
            user_properties,
            ..
        } => {
            text(w, 2, peer_ip(peer).as_bytes());
            int(w, 3, i64::from(peer_port(peer)));
            text(w, 4, username(who));
            text(w, 6, who.client_id.as_bytes());
            // Map entries in CONNECT order; a repeated key's last value
            // wins in every decoder, as in the map.
            for (k, v) in user_properties {
                let (k, v) = (k.as_bytes(), v.as_bytes());
                let mut c = Count(0);
                text(&mut c, 1, k);
                text(&mut c, 2, v);
                nested(w, 7, c.0, |w| {
                    text(w, 1, k);
                    text(w, 2, v);
                });
            }
            text(w, 8, who.client_id.as_bytes());
        }
        Event::RegisterFailed {
            client_id,
            username,
            clean_start,
            reason,
            failure,
            peer,
        } => {
            text(w, 3, client_id.as_bytes());
            text(w, 4, peer_ip(peer).as_bytes());
            int(w, 5, i64::from(peer_port(peer)));
            text(w, 6, username.map_or(&b""[..], |u| u.as_bytes()));
            int(w, 7, i64::from(clean_start));
            int(w, 8, i64::from(registration_code(reason, failure)));
        }
        Event::Publish {
            who,
            topic,
            qos: q,
            retain,
            payload,
            label,
            pattern,
        } => {
            text(w, 2, username(who));
            text(w, 3, who.client_id.as_bytes());
            int(w, 5, qos(q));
            text(w, 6, topic.as_str().as_bytes());
            text(w, 7, payload);
            int(w, 8, i64::from(retain));
            matched_acl(w, 9, label, pattern);
            text(w, 10, who.client_id.as_bytes());
        }
        Event::Subscribe { who, topics } => {
            text(w, 2, who.client_id.as_bytes());
            text(w, 4, username(who));
            for t in topics {
                nested(w, 5, topic_info_len(t), |w| {
                    raw(w, 1, t.filter.as_str().as_bytes());
                    topic_info(w, t);
                });
            }
            text(w, 6, who.client_id.as_bytes());
        }
        Event::Unsubscribe { who, topics } => {
            text(w, 2, username(who));
            text(w, 3, who.client_id.as_bytes());
            for t in topics {
                raw(w, 5, t.as_str().as_bytes());
            }
            text(w, 6, who.client_id.as_bytes());
        }
        Event::Deliver {
            who,
            topic,
            qos: q,
            retain,
            payload,
            ..
        }
        | Event::DeliveryComplete {
            who,
            topic,
            qos: q,
            retain,
            payload,
        } => {
            text(w, 2, username(who));
            text(w, 3, who.client_id.as_bytes());
            text(w, 5, topic.as_str().as_bytes());
            int(w, 6, qos(q));
            int(w, 7, i64::from(retain));
            text(w, 8, payload);
            text(w, 11, who.client_id.as_bytes());
        }
        Event::OfflineMessage {
            client_id,
            topic,
            qos: q,
            retain,
            payload,
        } => {
            text(w, 2, client_id.as_bytes());
            int(w, 4, qos(q));
            text(w, 5, topic.as_str().as_bytes());
            text(w, 6, payload);
            int(w, 7, i64::from(retain));
            text(w, 8, client_id.as_bytes());
        }
        Event::MessageDrop {
            client_id,
            topic,
            qos: q,
            payload,
            reason,
        } => {
            text(w, 2, client_id.as_bytes());
            int(w, 4, qos(q));
            text(w, 5, topic.as_str().as_bytes());
            text(w, 6, payload);
            text(w, 7, drop_reason(reason).as_bytes());
            text(w, 9, client_id.as_bytes());
        }
        Event::ClientWakeUp { who } => {
            text(w, 2, who.client_id.as_bytes());
            text(w, 4, who.client_id.as_bytes());
        }
        Event::SessionExpired { client_id } => {
            text(w, 2, client_id.as_bytes());
            text(w, 4, client_id.as_bytes());
        }
        Event::ClientOffline { who, reason } => {
            text(w, 2, who.client_id.as_bytes());
            int(w, 4, offline_reason(reason) as i64);
            text(w, 5, username(who));
            text(w, 6, who.client_id.as_bytes());
        }
        Event::ClientGone {
            client_id,
            username,
        } => {
            text(w, 2, client_id.as_bytes());
            text(w, 5, username.map_or(&b""[..], |u| u.as_bytes()));
            text(w, 6, client_id.as_bytes());
        }
    }
}

/// The field of `shardmq.events.v1.Event`'s oneof that holds `kind`.
pub(super) fn oneof_tag(kind: EventKind) -> u32 {
    match kind {
        EventKind::Register => 1,
        EventKind::RegisterFailed => 2,
        EventKind::Publish => 3,
        EventKind::Subscribe => 4,
        EventKind::Unsubscribe => 5,
        EventKind::Deliver => 6,
        EventKind::DeliveryComplete => 7,
        EventKind::OfflineMessage => 8,
        EventKind::MessageDrop => 9,
        EventKind::ClientWakeUp => 10,
        EventKind::SessionExpired => 11,
        EventKind::ClientOffline => 12,
        EventKind::ClientGone => 13,
    }
}

/// The `eventssidecar.v1` message name of `kind`, for the `Any` type URL.
pub(super) fn message_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Register => "OnRegister",
        EventKind::RegisterFailed => "OnRegisterFailed",
        EventKind::Publish => "OnPublish",
        EventKind::Subscribe => "OnSubscribe",
        EventKind::Unsubscribe => "OnUnsubscribe",
        EventKind::Deliver => "OnDeliver",
        EventKind::DeliveryComplete => "OnDeliveryComplete",
        EventKind::OfflineMessage => "OnOfflineMessage",
        EventKind::MessageDrop => "OnMessageDrop",
        EventKind::ClientWakeUp => "OnClientWakeUp",
        EventKind::SessionExpired => "OnSessionExpired",
        EventKind::ClientOffline => "OnClientOffline",
        EventKind::ClientGone => "OnClientGone",
    }
}

/// Writes `event` as a whole `shardmq.events.v1.Event` (its oneof field).
pub(super) fn native(event: &Event<'_>, ts: Ts, w: &mut impl Out) {
    let mut c = Count(0);
    body(event, ts, &mut c);
    nested(w, oneof_tag(event.kind()), c.0, |w| body(event, ts, w));
}

/// Writes the vmq-compat frame of `event`: 4-byte big-endian length, then
/// `google.protobuf.Any { type_url = 1, value = 2 }`.
pub(super) fn vmq_frame(event: &Event<'_>, ts: Ts, w: &mut impl Out) {
    let prefix = super::convert::TYPE_URL_PREFIX;
    let name = message_name(event.kind());
    let url_len = prefix.len() + name.len();
    let mut c = Count(0);
    body(event, ts, &mut c);
    let value_len = c.0;
    let any_len = 1
        + encoded_len_varint(url_len as u64)
        + url_len
        + 1
        + encoded_len_varint(value_len as u64)
        + value_len;
    w.bytes(&(any_len as u32).to_be_bytes());
    key(w, 1, LEN);
    w.varint(url_len as u64);
    w.bytes(prefix.as_bytes());
    w.bytes(name.as_bytes());
    nested(w, 2, value_len, |w| body(event, ts, w));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use bytes::{Bytes, BytesMut};
    use bytestring::ByteString;
    use prost::Message as _;

    use super::super::{encode_native, encode_vmq, to_native, Event, OfflineReason, TopicInfo};
    use crate::auth::{Failure, Identity};
    use crate::protocol::{QoS, ReasonCode};
    use crate::session::DropReason;
    use crate::topic::{TopicFilter, TopicName};

    /// Events covering every hook and the optional fields both ways.
    fn each_event(f: &mut dyn FnMut(Event<'_>)) {
        let named = Identity {
            username: Some("u".into()),
            client_id: ByteString::from("c-1"),
            claims: None,
        };
        let anon = Identity {
            username: None,
            client_id: ByteString::from("c-2"),
            claims: None,
        };
        let topic = TopicName::new("a/b".to_owned()).unwrap();
        let empty = Bytes::new();
        let big = Bytes::from(vec![1u8; 300]);
        let sorted = vec![
            (ByteString::from("a"), ByteString::from("1")),
            (ByteString::from("b"), ByteString::from("")),
        ];
        let info = |f: &str, qos, label: Option<&str>, pattern: Option<&str>| TopicInfo {
            filter: TopicFilter::new(f.to_owned()).unwrap(),
            qos,
            label: label.map(Arc::from),
            pattern: pattern.map(Arc::from),
        };
        let topics = [
            info("a/+", 0, None, None),
            info("b/#", 2, Some("l"), None),
            info("s/#", 128, None, Some("s/#")),
        ];
        let filters = [TopicFilter::new("a/+".to_owned()).unwrap()];
        let addr = Some("10.1.2.3:40000".parse().unwrap());
        for (who, peer) in [(&named, addr), (&anon, None)] {
            f(Event::Register {
                who,
                peer,
                clean_start: true,
                session_present: false,
                user_properties: &sorted,
            });
            f(Event::Register {
                who,
                peer,
                clean_start: true,
                session_present: false,
                user_properties: &vec![],
            });
            for (label, pattern) in [(None, None), (Some("l"), None), (Some("l"), Some("p/#"))] {
                for (qos, payload) in [(QoS::AtMostOnce, &empty), (QoS::ExactlyOnce, &big)] {
                    f(Event::Publish {
                        who,
                        topic: &topic,
                        qos,
                        retain: qos == QoS::ExactlyOnce,
                        payload,
                        label,
                        pattern,
                    });
                }
            }
            f(Event::Subscribe {
                who,
                topics: &topics,
            });
            f(Event::Unsubscribe {
                who,
                topics: &filters,
            });
            f(Event::Deliver {
                who,
                topic: &topic,
                qos: QoS::AtLeastOnce,
                retain: true,
                dup: true,
                payload: &big,
            });
            f(Event::DeliveryComplete {
                who,
                topic: &topic,
                qos: QoS::AtMostOnce,
                retain: false,
                payload: &empty,
            });
            f(Event::ClientWakeUp { who });
            for reason in [OfflineReason::Unspecified, OfflineReason::TcpClosed] {
                f(Event::ClientOffline { who, reason });
            }
            f(Event::ClientGone {
                client_id: &who.client_id,
                username: who.username.as_deref(),
            });
            f(Event::SessionExpired {
                client_id: &who.client_id,
            });
            f(Event::OfflineMessage {
                client_id: &who.client_id,
                topic: &topic,
                qos: QoS::ExactlyOnce,
                retain: true,
                payload: &big,
            });
            f(Event::MessageDrop {
                client_id: &who.client_id,
                topic: &topic,
                qos: QoS::AtMostOnce,
                payload: &empty,
                reason: DropReason::Expired,
            });
            for (reason, failure) in [
                (ReasonCode::NotAuthorized, Some(Failure::InvalidSignature)),
                (ReasonCode::NotAuthorized, None),
                (ReasonCode::UnsupportedProtocolVersion, None),
            ] {
                let username = who.username.as_deref().map(ByteString::from);
                f(Event::RegisterFailed {
                    client_id: &who.client_id,
                    username: username.as_ref(),
                    clean_start: false,
                    reason,
                    failure,
                    peer: Some("[2001:db8::7]:50123".parse().unwrap()),
                });
            }
        }
    }

    /// The hand-written encoding is byte for byte what prost writes for
    /// `to_native`'s message, at times before and after the epoch.
    #[test]
    fn direct_encoding_equals_the_generated_messages() {
        let times = [
            SystemTime::UNIX_EPOCH + Duration::new(1_767_323_045, 123_456_789),
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH - Duration::new(5, 1),
        ];
        let mut n = 0;
        each_event(&mut |event| {
            for now in times {
                let reference = to_native(&event, now);
                let mut direct = Vec::new();
                encode_native(&event, now, &mut direct);
                assert_eq!(direct, reference.encode_to_vec(), "{event:?}");

                let mut frame = BytesMut::new();
                encode_vmq(&event, now, &mut frame);
                let any = crate::events::frame::decode_vmq(&mut frame, 1 << 20)
                    .unwrap()
                    .unwrap();
                assert!(frame.is_empty());
                let any = prost_types::Any::decode(any).unwrap();
                let inner = reference.event.unwrap();
                let (name, value) = match &inner {
                    super::super::schema::native::event::Event::OnPublish(m) => {
                        ("OnPublish", m.encode_to_vec())
                    }
                    _ => {
                        // The value is the oneof field's payload.
                        let wrapped = super::super::schema::native::Event {
                            event: Some(inner.clone()),
                        }
                        .encode_to_vec();
                        let mut b = &wrapped[..];
                        prost::encoding::decode_varint(&mut b).unwrap();
                        prost::encoding::decode_varint(&mut b).unwrap();
                        (super::message_name(event.kind()), b.to_vec())
                    }
                };
                assert_eq!(
                    any.type_url,
                    format!("{}{name}", super::super::convert::TYPE_URL_PREFIX)
                );
                assert_eq!(any.value, value, "{event:?}");
                n += 1;
            }
        });
        assert!(n > 60);
    }
}
