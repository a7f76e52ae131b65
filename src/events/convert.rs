//! Broker events as the stream's protobuf messages (`proto/`).
//!
//! [`to_native`] builds the `shardmq.events.v1.Event` of an [`Event`], whose
//! oneof holds the fork's `eventssidecar.v1` message for that hook;
//! [`encode_native`] and [`encode_vmq`] write it in the native and the
//! vmq-compat form. Fields the broker has no value for are left at their
//! protobuf default:
//! - `mountpoint` is always "" (shardmq has no mountpoints);
//! - `peer_addr`/`peer_port` are unset: the broker's hooks do not see the
//!   socket address;
//! - `session_id` is the client id (one session per client id at a time);
//! - `on_deliver`'s `matched_acl` and `persisted` are unset.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::{BufMut, BytesMut};
use prost::Message as _;

use super::schema::native;
use super::schema::vmq::{self, on_register_failed::RegistrationFailureReason};
use super::{Event, OfflineReason};
use crate::auth::Identity;
use crate::protocol::{QoS, ReasonCode};
use crate::session::DropReason;

/// The `type_url` prefix of the vmq-compat `google.protobuf.Any`.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/eventssidecar.v1.";

/// The native stream's message for `event`, emitted at `now`.
pub fn to_native(event: &Event<'_>, now: SystemTime) -> native::Event {
    use native::event::Event as E;
    let ts = Some(prost_types::Timestamp::from(now));
    let event = match *event {
        Event::Register {
            who,
            user_properties,
            ..
        } => E::OnRegister(vmq::OnRegister {
            timestamp: ts,
            username: username(who),
            client_id: who.client_id.to_string(),
            user_properties: user_properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            session_id: who.client_id.to_string(),
            ..Default::default()
        }),
        Event::RegisterFailed {
            client_id,
            username,
            clean_start,
            reason,
            failure,
        } => E::OnRegisterFailed(vmq::OnRegisterFailed {
            timestamp: ts,
            client_id: client_id.to_string(),
            username: username.map(|u| u.to_string()).unwrap_or_default(),
            clean_session: clean_start,
            reason: match failure {
                Some(f) => f.registration_reason(),
                None => registration_reason(reason) as i32,
            },
            ..Default::default()
        }),
        Event::Publish {
            who,
            topic,
            qos,
            retain,
            payload,
            label,
            pattern,
        } => E::OnPublish(vmq::OnPublish {
            timestamp: ts,
            username: username(who),
            client_id: who.client_id.to_string(),
            qos: qos_i32(qos),
            topic: topic.to_string(),
            payload: payload.clone(),
            retain,
            matched_acl: matched_acl(label, pattern),
            session_id: who.client_id.to_string(),
            ..Default::default()
        }),
        Event::Subscribe { who, topics } => E::OnSubscribe(vmq::OnSubscribe {
            timestamp: ts,
            client_id: who.client_id.to_string(),
            username: username(who),
            topics: topics
                .iter()
                .map(|t| vmq::TopicInfo {
                    topic: t.filter.to_string(),
                    qos: i32::from(t.qos),
                    matched_acl: matched_acl(t.label.as_deref(), t.pattern.as_deref()),
                })
                .collect(),
            session_id: who.client_id.to_string(),
            ..Default::default()
        }),
        Event::Unsubscribe { who, topics } => E::OnUnsubscribe(vmq::OnUnsubscribe {
            timestamp: ts,
            username: username(who),
            client_id: who.client_id.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            session_id: who.client_id.to_string(),
            ..Default::default()
        }),
        Event::Deliver {
            who,
            topic,
            qos,
            retain,
            payload,
            ..
        } => E::OnDeliver(vmq::OnDeliver {
            timestamp: ts,
            username: username(who),
            client_id: who.client_id.to_string(),
            topic: topic.to_string(),
            qos: qos_i32(qos),
            is_retain: retain,
            payload: payload.clone(),
            session_id: who.client_id.to_string(),
            ..Default::default()
        }),
        Event::DeliveryComplete {
            who,
            topic,
            qos,
            retain,
            payload,
        } => E::OnDeliveryComplete(vmq::OnDeliveryComplete {
            timestamp: ts,
            username: username(who),
            client_id: who.client_id.to_string(),
            topic: topic.to_string(),
            qos: qos_i32(qos),
            is_retain: retain,
            payload: payload.clone(),
            session_id: who.client_id.to_string(),
            ..Default::default()
        }),
        Event::OfflineMessage {
            client_id,
            topic,
            qos,
            retain,
            payload,
        } => E::OnOfflineMessage(vmq::OnOfflineMessage {
            timestamp: ts,
            client_id: client_id.to_string(),
            qos: qos_i32(qos),
            topic: topic.to_string(),
            payload: payload.clone(),
            retain,
            session_id: client_id.to_string(),
            ..Default::default()
        }),
        Event::MessageDrop {
            client_id,
            topic,
            qos,
            payload,
            reason,
        } => E::OnMessageDrop(vmq::OnMessageDrop {
            timestamp: ts,
            client_id: client_id.to_string(),
            qos: qos_i32(qos),
            topic: topic.to_string(),
            payload: payload.clone(),
            reason: drop_reason(reason).to_owned(),
            session_id: client_id.to_string(),
            ..Default::default()
        }),
        Event::ClientWakeUp { who } => E::OnClientWakeup(vmq::OnClientWakeUp {
            timestamp: ts,
            client_id: who.client_id.to_string(),
            session_id: who.client_id.to_string(),
            ..Default::default()
        }),
        Event::ClientOffline { who, reason } => E::OnClientOffline(vmq::OnClientOffline {
            timestamp: ts,
            client_id: who.client_id.to_string(),
            reason: offline_reason(reason) as i32,
            username: username(who),
            session_id: who.client_id.to_string(),
            ..Default::default()
        }),
        Event::ClientGone {
            client_id,
            username,
        } => E::OnClientGone(vmq::OnClientGone {
            timestamp: ts,
            client_id: client_id.to_string(),
            username: username.map(|u| u.to_string()).unwrap_or_default(),
            session_id: client_id.to_string(),
            ..Default::default()
        }),
        Event::SessionExpired { client_id } => E::OnSessionExpired(vmq::OnSessionExpired {
            timestamp: ts,
            client_id: client_id.to_string(),
            session_id: client_id.to_string(),
            ..Default::default()
        }),
    };
    native::Event { event: Some(event) }
}

/// Appends `event` as an encoded `shardmq.events.v1.Event` (no length
/// prefix: [`NativeBatch::push`](super::frame::NativeBatch::push) adds it).
pub fn encode_native(event: &Event<'_>, now: SystemTime, out: &mut Vec<u8>) {
    let message = to_native(event, now);
    out.reserve(message.encoded_len());
    message.encode_raw(out);
}

/// Appends one whole vmq-compat frame for `event`: the 4-byte big-endian
/// length, then a `google.protobuf.Any` whose `type_url` names the fork's
/// message. The `Any` is written field by field, so the message is encoded
/// once, straight into `out`.
pub fn encode_vmq(event: &Event<'_>, now: SystemTime, out: &mut BytesMut) {
    use native::event::Event as E;
    let Some(event) = to_native(event, now).event else {
        return;
    };
    match &event {
        E::OnRegister(m) => write_any("OnRegister", m, out),
        E::OnRegisterFailed(m) => write_any("OnRegisterFailed", m, out),
        E::OnPublish(m) => write_any("OnPublish", m, out),
        E::OnSubscribe(m) => write_any("OnSubscribe", m, out),
        E::OnUnsubscribe(m) => write_any("OnUnsubscribe", m, out),
        E::OnDeliver(m) => write_any("OnDeliver", m, out),
        E::OnDeliveryComplete(m) => write_any("OnDeliveryComplete", m, out),
        E::OnOfflineMessage(m) => write_any("OnOfflineMessage", m, out),
        E::OnMessageDrop(m) => write_any("OnMessageDrop", m, out),
        E::OnClientWakeup(m) => write_any("OnClientWakeUp", m, out),
        E::OnSessionExpired(m) => write_any("OnSessionExpired", m, out),
        E::OnClientOffline(m) => write_any("OnClientOffline", m, out),
        E::OnClientGone(m) => write_any("OnClientGone", m, out),
    }
}

/// Writes length prefix + `Any { type_url: 1, value: 2 }` for `message`.
fn write_any(name: &str, message: &impl prost::Message, out: &mut BytesMut) {
    use prost::encoding::{encode_varint, encoded_len_varint};
    let url_len = TYPE_URL_PREFIX.len() + name.len();
    let value_len = message.encoded_len();
    let any_len = 1
        + encoded_len_varint(url_len as u64)
        + url_len
        + 1
        + encoded_len_varint(value_len as u64)
        + value_len;
    out.reserve(4 + any_len);
    super::frame::encode_vmq_prefix(any_len, out);
    out.put_u8(0x0a); // field 1, length-delimited
    encode_varint(url_len as u64, out);
    out.put_slice(TYPE_URL_PREFIX.as_bytes());
    out.put_slice(name.as_bytes());
    out.put_u8(0x12); // field 2, length-delimited
    encode_varint(value_len as u64, out);
    message.encode_raw(out);
}

fn username(who: &Identity) -> String {
    who.username.as_deref().unwrap_or_default().to_owned()
}

fn qos_i32(qos: QoS) -> i32 {
    qos as i32
}

/// Set when a rule decided with a label or a pattern; unset otherwise.
fn matched_acl(label: Option<&str>, pattern: Option<&str>) -> Option<vmq::MatchedAcl> {
    if label.is_none() && pattern.is_none() {
        return None;
    }
    Some(vmq::MatchedAcl {
        name: label.unwrap_or_default().to_owned(),
        pattern: pattern.unwrap_or_default().to_owned(),
    })
}

/// A refusal that did not come from the authenticator (handshake checks).
fn registration_reason(reason: ReasonCode) -> RegistrationFailureReason {
    match reason {
        ReasonCode::NotAuthorized => RegistrationFailureReason::ReasonNotAuthorized,
        ReasonCode::BadUserNameOrPassword => RegistrationFailureReason::ReasonInvalidCredentials,
        _ => RegistrationFailureReason::ReasonUnspecified,
    }
}

fn offline_reason(reason: OfflineReason) -> vmq::Reason {
    match reason {
        OfflineReason::Unspecified => vmq::Reason::Unspecified,
        OfflineReason::NormalDisconnect => vmq::Reason::NormalDisconnect,
        OfflineReason::ClientDisconnect => vmq::Reason::MqttClientDisconnect,
        OfflineReason::KeepAlive => vmq::Reason::DisconnectKeepAlive,
        OfflineReason::ProtocolError => vmq::Reason::ProtocolError,
        OfflineReason::TcpClosed => vmq::Reason::TcpClosed,
        OfflineReason::ShuttingDown => vmq::Reason::ExitSignalReceived,
        OfflineReason::Administrative => vmq::Reason::AdministrativeAction,
    }
}

/// `on_message_drop`'s reason string: the metrics' snake_case names.
fn drop_reason(reason: DropReason) -> &'static str {
    match reason {
        DropReason::QueueFull => "queue_full",
        DropReason::Expired => "expired",
        DropReason::Offline => "offline",
        DropReason::NotAcked => "not_acked",
        DropReason::TooLarge => "too_large",
    }
}
