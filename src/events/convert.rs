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

use bytes::BytesMut;

use super::schema::native;
use super::schema::vmq::{self, on_register_failed::RegistrationFailureReason};
use super::{wire, Event, OfflineReason};
use crate::auth::{Failure, Identity};
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
            peer,
            user_properties,
            ..
        } => E::OnRegister(vmq::OnRegister {
            timestamp: ts,
            peer_addr: peer_ip(peer),
            peer_port: peer_port(peer),
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
            peer,
        } => E::OnRegisterFailed(vmq::OnRegisterFailed {
            timestamp: ts,
            client_id: client_id.to_string(),
            peer_addr: peer_ip(peer),
            peer_port: peer_port(peer),
            username: username.map(|u| u.to_string()).unwrap_or_default(),
            clean_session: clean_start,
            reason: registration_code(reason, failure),
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
/// Written straight from the event's borrowed fields (module `wire`): the
/// same bytes a decoder reads as [`to_native`]'s message, without building it.
pub fn encode_native(event: &Event<'_>, now: SystemTime, out: &mut Vec<u8>) {
    wire::native(event, wire::Ts::new(now), &mut wire::Write(out));
}

/// Appends one whole vmq-compat frame for `event`: the 4-byte big-endian
/// length, then a `google.protobuf.Any` whose `type_url` names the fork's
/// message and whose `value` is that message, written as in
/// [`encode_native`].
pub fn encode_vmq(event: &Event<'_>, now: SystemTime, out: &mut BytesMut) {
    wire::vmq_frame(event, wire::Ts::new(now), &mut wire::Write(out));
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

/// `RegistrationFailureReason` of a refusal: the authenticator's reason, or
/// for a refusal by the handshake checks, what its CONNACK code says.
pub(super) fn registration_code(reason: ReasonCode, failure: Option<Failure>) -> i32 {
    if let Some(f) = failure {
        return f.registration_reason();
    }
    (match reason {
        ReasonCode::NotAuthorized => RegistrationFailureReason::ReasonNotAuthorized,
        ReasonCode::BadUserNameOrPassword => RegistrationFailureReason::ReasonInvalidCredentials,
        _ => RegistrationFailureReason::ReasonUnspecified,
    }) as i32
}

pub(super) fn offline_reason(reason: OfflineReason) -> vmq::Reason {
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
pub(super) fn drop_reason(reason: DropReason) -> &'static str {
    match reason {
        DropReason::QueueFull => "queue_full",
        DropReason::Expired => "expired",
        DropReason::Offline => "offline",
        DropReason::NotAcked => "not_acked",
        DropReason::TooLarge => "too_large",
    }
}

/// `peer_addr`: the client's IP address as text, "" when unknown.
pub(super) fn peer_ip(peer: Option<std::net::SocketAddr>) -> String {
    peer.map(|p| p.ip().to_string()).unwrap_or_default()
}

/// `peer_port`: the client's port, 0 when unknown.
pub(super) fn peer_port(peer: Option<std::net::SocketAddr>) -> i32 {
    peer.map_or(0, |p| i32::from(p.port()))
}
