//! The event emission point: what the broker tells event consumers.
//!
//! The broker holds an [`Events`], which holds an optional [`EventSink`]. An
//! event is built only when a sink is set and [`EventSink::wants`] its kind,
//! so an event nobody listens to costs one branch: no allocation, no copy.
//! Fields borrow from the broker; a sink that keeps an event copies what it
//! needs. The stream sinks (native and vmq-compat, issue 6) plug in here.

pub mod frame;
mod record;
pub mod schema;

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;

pub use record::Recorder;

use crate::auth::{Failure, Identity};
use crate::protocol::{Packet, QoS, ReasonCode, UserProperties};
use crate::session::{Delivery, DropReason};
use crate::topic::{TopicFilter, TopicName};

/// Which hook an event is, for [`EventSink::wants`]. Named after the fork's
/// hooks (DESIGN section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Register,
    RegisterFailed,
    Publish,
    Subscribe,
    Unsubscribe,
    Deliver,
    MessageDrop,
    ClientOffline,
    ClientGone,
}

/// Something that happened in the broker, as a hook call.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// `on_register`: a CONNECT was accepted.
    Register {
        who: &'a Identity,
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
        client_id: &'a ByteString,
        topic: &'a TopicName,
        qos: QoS,
        retain: bool,
        dup: bool,
        payload: &'a Bytes,
    },
    /// `on_message_drop`: a delivery dropped instead of sent or queued.
    MessageDrop {
        client_id: &'a ByteString,
        topic: &'a TopicName,
        qos: QoS,
        reason: DropReason,
    },
    /// `on_client_offline`: a connection ended and its session is offline
    /// (not emitted for a connection whose session was taken over).
    ClientOffline { who: &'a Identity },
    /// `on_client_gone`: a session ended (clean start, expiry, or a clean
    /// session's disconnect).
    ClientGone { client_id: &'a ByteString },
}

/// One filter of a SUBSCRIBE, as `on_subscribe` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub filter: TopicFilter,
    /// The granted QoS, or 128 when the filter was refused.
    pub qos: u8,
    /// The label of the ACL rule that decided.
    pub label: Option<Arc<str>>,
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
            Event::MessageDrop { .. } => EventKind::MessageDrop,
            Event::ClientOffline { .. } => EventKind::ClientOffline,
            Event::ClientGone { .. } => EventKind::ClientGone,
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

    /// `on_deliver` for each PUBLISH in `packets`, sent to `client_id`.
    pub fn delivered(&mut self, client_id: &ByteString, packets: &[Packet]) {
        if !self.wants(EventKind::Deliver) {
            return;
        }
        for packet in packets {
            if let Packet::Publish(p) = packet {
                self.emit(EventKind::Deliver, || Event::Deliver {
                    client_id,
                    topic: &p.topic,
                    qos: p.qos,
                    retain: p.retain,
                    dup: p.dup,
                    payload: &p.payload,
                });
            }
        }
    }

    /// `on_message_drop` for each of `drops`, meant for `client_id`.
    pub fn dropped(&mut self, client_id: &ByteString, drops: &[(Delivery, DropReason)]) {
        for (delivery, reason) in drops {
            self.emit(EventKind::MessageDrop, || Event::MessageDrop {
                client_id,
                topic: &delivery.message.topic,
                qos: delivery.qos,
                reason: *reason,
            });
        }
    }
}
