//! The event emission point: what the broker tells event consumers.
//!
//! The broker holds an [`Events`], which holds an optional [`EventSink`]. An
//! event is built only when a sink is set and [`EventSink::wants`] its kind,
//! so an event nobody listens to costs one branch: no allocation, no copy.
//! Fields borrow from the broker; a sink that keeps an event copies what it
//! needs. The stream sinks (native and vmq-compat, issue 6) plug in here.
//!
//! # Layout
//! - [`schema`]: the protobuf types generated from `proto/` (the fork's
//!   `eventssidecar.v1` messages and the native `shardmq.events.v1.Event`).
//! - [`convert`]: an [`Event`] as those messages ([`to_native`]), and
//!   [`encode_native`] / [`encode_vmq`], which write the same bytes straight
//!   from the borrowed event (`wire`), without building the message.
//! - [`frame`]: the native batched frame, the vmq-compat length prefix and
//!   the consumer's ack, sans-IO.
//! - [`sink`]: the sink runtime (outboxes, connections, acks and replay).
//!
//! # What each hook carries, and what it cannot yet
//! Every message has its timestamp, client id and `session_id` (the client
//! id: one session per client id at a time); `mountpoint` is always "".
//! Not filled: `peer_addr`/`peer_port` (the broker never sees the socket
//! address), `on_deliver`'s `matched_acl` and `persisted`. Not emitted yet:
//! `on_delivery_complete` (the session does not hand back the acknowledged
//! message). `on_client_offline`'s reason is unspecified unless the caller
//! uses [`Broker::disconnected_because`](crate::broker::Broker::disconnected_because).

pub mod convert;
pub mod frame;
mod record;
pub mod schema;
pub mod sink;
#[cfg(test)]
mod stream_tests;
mod wire;

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;

pub use convert::{encode_native, encode_vmq, to_native};
pub use record::Recorder;

use crate::auth::{Failure, Identity};
use crate::protocol::{Packet, QoS, ReasonCode, UserProperties};
use crate::session::{Delivery, DropReason};
use crate::topic::{TopicFilter, TopicName};

/// The fork's hook names, indexed by [`EventKind`] (declaration order): the
/// names a sink's `hooks = [...]` accepts, and the `hook` label of drop counts.
pub const HOOK_NAMES: [&str; 13] = [
    "on_register",
    "on_register_failed",
    "on_publish",
    "on_subscribe",
    "on_unsubscribe",
    "on_deliver",
    "on_delivery_complete",
    "on_offline_message",
    "on_message_drop",
    "on_client_wakeup",
    "on_client_offline",
    "on_client_gone",
    "on_session_expired",
];

/// Which hook an event is, for [`EventSink::wants`]. Named after the fork's
/// hooks (DESIGN section 4); [`EventKind::hook_name`] gives the fork's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Register,
    RegisterFailed,
    Publish,
    Subscribe,
    Unsubscribe,
    Deliver,
    DeliveryComplete,
    OfflineMessage,
    MessageDrop,
    ClientWakeUp,
    ClientOffline,
    ClientGone,
    SessionExpired,
}

impl EventKind {
    /// Every kind, in the fork's table order.
    pub const ALL: [EventKind; 13] = [
        EventKind::Register,
        EventKind::RegisterFailed,
        EventKind::Publish,
        EventKind::Subscribe,
        EventKind::Unsubscribe,
        EventKind::Deliver,
        EventKind::DeliveryComplete,
        EventKind::OfflineMessage,
        EventKind::MessageDrop,
        EventKind::ClientWakeUp,
        EventKind::ClientOffline,
        EventKind::ClientGone,
        EventKind::SessionExpired,
    ];

    /// The fork's hook name, as `hooks = [...]` in a sink's config names it.
    pub fn hook_name(self) -> &'static str {
        HOOK_NAMES[self as usize]
    }

    /// The kind a fork hook name stands for; `None` for an unknown name.
    pub fn from_hook_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.hook_name() == name)
    }
}

/// Why a client went offline: `on_client_offline`'s reason. What the
/// connection layer knows when the connection ends, mapped onto the fork's
/// `Reason` enum by [`convert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OfflineReason {
    /// Not told (tests drive the broker without a reason).
    #[default]
    Unspecified,
    /// The client sent DISCONNECT (reason 0 in MQTT 5).
    NormalDisconnect,
    /// An MQTT 5 DISCONNECT with a non-zero reason (e.g. 0x04, with will).
    ClientDisconnect,
    /// Nothing received within 1.5 times the keepalive.
    KeepAlive,
    /// The client broke the protocol.
    ProtocolError,
    /// The connection closed or failed without a DISCONNECT.
    TcpClosed,
    /// The broker is shutting down.
    ShuttingDown,
    /// The broker closed the connection for another reason (rate limit,
    /// slow reader, administrative action).
    Administrative,
}

impl OfflineReason {
    /// The reason for a connection that ended with `code`: a reader error, a
    /// client DISCONNECT's reason, or the broker's close reason. `None` is a
    /// connection that closed without any (TCP closed).
    pub fn from_reason_code(code: Option<ReasonCode>) -> OfflineReason {
        match code {
            None => OfflineReason::TcpClosed,
            Some(ReasonCode::Success) => OfflineReason::NormalDisconnect,
            Some(ReasonCode::DisconnectWithWillMessage) => OfflineReason::ClientDisconnect,
            Some(ReasonCode::KeepAliveTimeout) => OfflineReason::KeepAlive,
            Some(ReasonCode::ServerShuttingDown) => OfflineReason::ShuttingDown,
            Some(
                ReasonCode::ProtocolError
                | ReasonCode::MalformedPacket
                | ReasonCode::PacketTooLarge
                | ReasonCode::TopicAliasInvalid
                | ReasonCode::ReceiveMaximumExceeded
                | ReasonCode::TopicNameInvalid,
            ) => OfflineReason::ProtocolError,
            Some(_) => OfflineReason::Administrative,
        }
    }
}

/// Something that happened in the broker, as a hook call.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// `on_register`: a CONNECT was accepted.
    Register {
        who: &'a Identity,
        /// The client's address (`peer_addr`, `peer_port`); `None` where the
        /// broker is driven without a socket (tests). Not kept in the
        /// identity: every idle connection would carry it (issue 15).
        peer: Option<std::net::SocketAddr>,
        clean_start: bool,
        session_present: bool,
        /// MQTT 5 user properties, or Courier's 3.1.1 extension.
        user_properties: &'a UserProperties,
    },
    /// `on_register_failed`: a CONNECT was refused with `reason`.
    RegisterFailed {
        client_id: &'a ByteString,
        username: Option<&'a ByteString>,
        clean_start: bool,
        reason: ReasonCode,
        /// The authenticator's reason, when it was the one refusing.
        failure: Option<Failure>,
        /// The client's address, when the connection has one.
        peer: Option<std::net::SocketAddr>,
    },
    /// `on_publish`: a PUBLISH the ACL allowed, about to be routed.
    Publish {
        who: &'a Identity,
        topic: &'a TopicName,
        qos: QoS,
        retain: bool,
        payload: &'a Bytes,
        /// The label of the ACL rule that allowed it.
        label: Option<&'a str>,
        /// That rule's filter as written, for `matched_acl.pattern`.
        pattern: Option<&'a str>,
    },
    /// `on_subscribe`: the filters of a SUBSCRIBE and what each got.
    Subscribe {
        who: &'a Identity,
        topics: &'a [TopicInfo],
    },
    /// `on_unsubscribe`: the filters of an UNSUBSCRIBE.
    Unsubscribe {
        who: &'a Identity,
        topics: &'a [TopicFilter],
    },
    /// `on_deliver`: a PUBLISH handed to a connected client's writer
    /// (retransmissions included, with `dup` set).
    Deliver {
        /// The receiver.
        who: &'a Identity,
        topic: &'a TopicName,
        qos: QoS,
        retain: bool,
        dup: bool,
        payload: &'a Bytes,
    },
    /// `on_delivery_complete`: the receiver acknowledged a QoS 1 (PUBACK) or
    /// QoS 2 (PUBREC) delivery. Not emitted yet: the session does not hand
    /// back the acknowledged message.
    DeliveryComplete {
        who: &'a Identity,
        topic: &'a TopicName,
        qos: QoS,
        retain: bool,
        payload: &'a Bytes,
    },
    /// `on_offline_message`: a QoS 1/2 delivery queued for an offline
    /// session (an `on_message_drop` follows if the full queue drops it).
    OfflineMessage {
        client_id: &'a ByteString,
        topic: &'a TopicName,
        qos: QoS,
        retain: bool,
        payload: &'a Bytes,
    },
    /// `on_message_drop`: a delivery dropped instead of sent or queued.
    MessageDrop {
        client_id: &'a ByteString,
        topic: &'a TopicName,
        qos: QoS,
        payload: &'a Bytes,
        reason: DropReason,
    },
    /// `on_client_wakeup`: a client connected to its existing session
    /// (session present).
    ClientWakeUp { who: &'a Identity },
    /// `on_client_offline`: a connection ended and its session is offline
    /// (not emitted for a connection whose session was taken over).
    ClientOffline {
        who: &'a Identity,
        reason: OfflineReason,
    },
    /// `on_client_gone`: a session ended (clean start, expiry, or a clean
    /// session's disconnect).
    ClientGone {
        client_id: &'a ByteString,
        /// The last username the session connected with.
        username: Option<&'a str>,
    },
    /// `on_session_expired`: an offline session's expiry interval ran out
    /// (an `on_client_gone` follows).
    SessionExpired { client_id: &'a ByteString },
}

/// One filter of a SUBSCRIBE, as `on_subscribe` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub filter: TopicFilter,
    /// The granted QoS, or 128 when the filter was refused.
    pub qos: u8,
    /// The label of the ACL rule that decided.
    pub label: Option<Arc<str>>,
    /// That rule's filter as written, for `matched_acl.pattern`.
    pub pattern: Option<Arc<str>>,
}

impl Event<'_> {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Register { .. } => EventKind::Register,
            Event::RegisterFailed { .. } => EventKind::RegisterFailed,
            Event::Publish { .. } => EventKind::Publish,
            Event::Subscribe { .. } => EventKind::Subscribe,
            Event::Unsubscribe { .. } => EventKind::Unsubscribe,
            Event::Deliver { .. } => EventKind::Deliver,
            Event::DeliveryComplete { .. } => EventKind::DeliveryComplete,
            Event::OfflineMessage { .. } => EventKind::OfflineMessage,
            Event::MessageDrop { .. } => EventKind::MessageDrop,
            Event::ClientWakeUp { .. } => EventKind::ClientWakeUp,
            Event::ClientOffline { .. } => EventKind::ClientOffline,
            Event::ClientGone { .. } => EventKind::ClientGone,
            Event::SessionExpired { .. } => EventKind::SessionExpired,
        }
    }
}

/// Where events go. Called on the shard's thread, inline with the broker:
/// `emit` must not block (buffer, and drop when full).
pub trait EventSink {
    /// Whether events of `kind` are wanted. Asked before each event is built.
    fn wants(&self, kind: EventKind) -> bool;
    fn emit(&mut self, event: Event<'_>);
}

/// The broker's optional sink, and the helpers that emit through it.
#[derive(Default)]
pub struct Events {
    sink: Option<Box<dyn EventSink>>,
}

impl Events {
    pub fn new(sink: Box<dyn EventSink>) -> Events {
        Events { sink: Some(sink) }
    }

    /// Whether a sink wants `kind`: check before gathering an event's data.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.sink.as_ref().is_some_and(|s| s.wants(kind))
    }

    /// Builds and emits an event of `kind`, only if it is wanted.
    pub fn emit<'a>(&mut self, kind: EventKind, build: impl FnOnce() -> Event<'a>) {
        if let Some(sink) = &mut self.sink {
            if sink.wants(kind) {
                let event = build();
                debug_assert_eq!(event.kind(), kind);
                sink.emit(event);
            }
        }
    }

    /// `on_deliver` for each PUBLISH in `packets`, sent to `who`.
    pub fn delivered(&mut self, who: &Identity, packets: &[Packet]) {
        if !self.wants(EventKind::Deliver) {
            return;
        }
        for packet in packets {
            if let Packet::Publish(p) = packet {
                self.emit(EventKind::Deliver, || Event::Deliver {
                    who,
                    topic: &p.topic,
                    qos: p.qos,
                    retain: p.retain,
                    dup: p.dup,
                    payload: &p.payload,
                });
            }
        }
    }

    /// `on_offline_message` for `delivery`, about to be offered to the
    /// offline session of `client_id`, if the session queues such messages
    /// (QoS 1/2 without non_persistence; the queue may still drop it).
    pub fn queued_offline(&mut self, client_id: &ByteString, delivery: &Delivery) {
        if delivery.qos == QoS::AtMostOnce || delivery.non_persistence {
            return;
        }
        self.emit(EventKind::OfflineMessage, || Event::OfflineMessage {
            client_id,
            topic: &delivery.message.topic,
            qos: delivery.qos,
            retain: delivery.retain,
            payload: &delivery.message.payload,
        });
    }

    /// `on_message_drop` for each of `drops`, meant for `client_id`.
    pub fn dropped(&mut self, client_id: &ByteString, drops: &[(Delivery, DropReason)]) {
        for (delivery, reason) in drops {
            self.emit(EventKind::MessageDrop, || Event::MessageDrop {
                client_id,
                topic: &delivery.message.topic,
                qos: delivery.qos,
                payload: &delivery.message.payload,
                reason: *reason,
            });
        }
    }
}
