//! The authorization decision point: may this client publish to a topic, or
//! subscribe to a filter.
//!
//! The broker asks its [`Authorizer`] for each PUBLISH it receives and each
//! filter of a SUBSCRIBE. The default, [`AllowAll`], allows everything; the
//! ACL file (issue 5) plugs in here. Deliveries are not checked yet: issue 5
//! adds the delivery-time check (a subscription granted before a reload that
//! now denies).

use std::sync::Arc;

use crate::auth::Identity;
use crate::topic::{TopicFilter, TopicName};

/// Decides what a client may publish and subscribe to.
pub trait Authorizer {
    /// Whether `who` may publish to `topic`. A denied PUBLISH is dropped.
    fn publish(&self, who: &Identity, topic: &TopicName) -> Decision;
    /// Whether `who` may subscribe to `filter`. A denied filter gets SUBACK
    /// 0x80 (MQTT 3) or 0x87 not authorized (MQTT 5).
    fn subscribe(&self, who: &Identity, filter: &TopicFilter) -> Decision;
}

/// An ACL decision, and the label of the rule that made it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// The deciding rule's `label <name>`: travels into events and metrics
    /// (DESIGN section 4), and keys per-label rate limits later. Shared, so
    /// passing it along copies no string.
    pub label: Option<Arc<str>>,
}

impl Decision {
    pub fn allow() -> Decision {
        Decision {
            allow: true,
            label: None,
        }
    }

    pub fn deny() -> Decision {
        Decision {
            allow: false,
            label: None,
        }
    }

    pub fn labelled(self, label: impl Into<Arc<str>>) -> Decision {
        Decision {
            label: Some(label.into()),
            ..self
        }
    }
}

/// Allows every publish and subscription (today's behaviour, no ACL file).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn publish(&self, _: &Identity, _: &TopicName) -> Decision {
        Decision::allow()
    }

    fn subscribe(&self, _: &Identity, _: &TopicFilter) -> Decision {
        Decision::allow()
    }
}
