//! A sink that records events as one-line summaries, for tests.

use std::cell::RefCell;
use std::fmt::Write;
use std::rc::Rc;

use super::{Event, EventKind, EventSink};

/// Records the events of the kinds it was given, as lines such as
/// `"publish pub a/b q1"`. Clone it before handing it to the broker: clones
/// share the log.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    kinds: Vec<EventKind>,
    log: Rc<RefCell<Vec<String>>>,
}

impl Recorder {
    /// A recorder that wants only `kinds`.
    pub fn new(kinds: &[EventKind]) -> Recorder {
        Recorder {
            kinds: kinds.to_vec(),
            log: Default::default(),
        }
    }

    /// The lines recorded since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.log.borrow_mut())
    }
}

impl EventSink for Recorder {
    fn wants(&self, kind: EventKind) -> bool {
        self.kinds.contains(&kind)
    }

    fn emit(&mut self, event: Event<'_>) {
        assert!(self.wants(event.kind()), "unwanted event {event:?}");
        self.log.borrow_mut().push(summary(&event));
    }
}

fn summary(event: &Event<'_>) -> String {
    match *event {
        Event::Register {
            who,
            peer,
            session_present,
            user_properties,
            ..
        } => {
            let mut s = format!("register {}", who.client_id);
            if let Some(peer) = peer {
                let _ = write!(s, " from {peer}");
            }
            if session_present {
                s.push_str(" present");
            }
            for (k, v) in user_properties {
                let _ = write!(s, " {k}={v}");
            }
            s
        }
        Event::RegisterFailed {
            client_id,
            reason,
            failure,
            ..
        } => match failure {
            Some(f) => format!("register_failed {client_id} {reason:?} {}", f.name()),
            None => format!("register_failed {client_id} {reason:?}"),
        },
        Event::Publish {
            who,
            topic,
            qos,
            label,
            ..
        } => {
            let mut s = format!("publish {} {topic} q{}", who.client_id, qos as u8);
            if let Some(label) = label {
                let _ = write!(s, " label={label}");
            }
            s
        }
        Event::Subscribe { who, topics } => {
            let mut s = format!("subscribe {}", who.client_id);
            for t in topics {
                let _ = write!(s, " {}:{}", t.filter, t.qos);
                if let Some(label) = &t.label {
                    let _ = write!(s, ":{label}");
                }
            }
            s
        }
        Event::Unsubscribe { who, topics } => {
            let mut s = format!("unsubscribe {}", who.client_id);
            for t in topics {
                let _ = write!(s, " {t}");
            }
            s
        }
        Event::Deliver {
            who, topic, qos, ..
        } => {
            format!("deliver {} {topic} q{}", who.client_id, qos as u8)
        }
        Event::DeliveryComplete {
            who, topic, qos, ..
        } => {
            format!("delivery_complete {} {topic} q{}", who.client_id, qos as u8)
        }
        Event::OfflineMessage {
            client_id,
            topic,
            qos,
            ..
        } => format!("offline_message {client_id} {topic} q{}", qos as u8),
        Event::MessageDrop {
            client_id,
            topic,
            reason,
            ..
        } => format!("drop {client_id} {topic} {reason:?}"),
        Event::ClientWakeUp { who } => format!("wakeup {}", who.client_id),
        Event::ClientOffline { who, .. } => format!("offline {}", who.client_id),
        Event::ClientGone { client_id, .. } => format!("gone {client_id}"),
        Event::SessionExpired { client_id } => format!("expired {client_id}"),
    }
}
