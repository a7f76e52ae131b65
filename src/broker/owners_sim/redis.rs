//! What the simulation has for Redis: the CLAIM and WRITE scripts of
//! [`crate::store::layout`], over maps. Each node's calls run in the order
//! it sent them, at times the simulation picks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use crate::protocol::PacketId;
use crate::session::StoredState;
use crate::store::{record, Claim, StoreOp, StoredSession};
use crate::topic::TopicFilter;

/// One session's keys.
#[derive(Debug, Default)]
struct Keys {
    /// The fencing generation; it only grows, even across a removal.
    generation: u64,
    owner: Option<String>,
    /// Set by the session's `online` write: the session exists.
    expiry: Option<Duration>,
    subscriptions: BTreeMap<ByteString, Bytes>,
    /// Stored deliveries by number: the delivery, its packet id once sent,
    /// and whether its PUBREC came.
    queue: BTreeMap<u64, (Bytes, Option<PacketId>, bool)>,
}

#[derive(Debug, Default)]
pub(super) struct Redis {
    sessions: BTreeMap<ByteString, Keys>,
    /// Each node's sessions set: the ids it held, for reaping.
    sets: BTreeMap<String, BTreeSet<ByteString>>,
}

impl Redis {
    /// The CLAIM script: `must` is the owner an adoption requires (`None`
    /// for a CONNECT). `None` if the adoption found another owner.
    pub(super) fn claim(
        &mut self,
        id: &ByteString,
        owner: &str,
        must: Option<&str>,
        now: Instant,
    ) -> Option<Claim> {
        let keys = self.sessions.entry(id.clone()).or_default();
        let previous = keys.owner.clone();
        if must.is_some() && previous.as_deref() != must {
            return None;
        }
        keys.generation += 1;
        keys.owner = Some(owner.to_owned());
        if must.is_none() {
            let node = owner.split('#').next().unwrap_or_default().to_owned();
            self.sets.entry(node).or_default().insert(id.clone());
        }
        let session = keys.expiry.map(|expiry| StoredSession {
            expiry,
            expires_in: None,
            subscriptions: keys
                .subscriptions
                .iter()
                .filter_map(|(f, s)| {
                    let filter = TopicFilter::new(f.to_string()).ok()?;
                    Some((filter, record::decode_subscription(s).ok()?))
                })
                .collect(),
            queued: keys
                .queue
                .iter()
                .filter_map(|(&n, (bytes, sent, released))| {
                    let delivery = record::decode_delivery(bytes, n, now).ok()?;
                    let state = match (sent, released) {
                        (Some(id), true) => StoredState::Released(*id),
                        (Some(id), false) => StoredState::Sent(*id),
                        (None, _) => StoredState::Queued,
                    };
                    Some((delivery, state))
                })
                .collect(),
        });
        Some(Claim {
            generation: keys.generation,
            previous,
            session,
            orphan_will: None,
        })
    }

    /// The owner Redis names for `id`.
    pub(super) fn owner(&self, id: &str) -> Option<&str> {
        self.sessions.get(id).and_then(|k| k.owner.as_deref())
    }

    /// The sessions set of `node`.
    pub(super) fn set(&self, node: &str) -> Vec<ByteString> {
        self.sets
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn sadd(&mut self, node: &str, id: &ByteString) {
        self.sets
            .entry(node.to_owned())
            .or_default()
            .insert(id.clone());
    }

    pub(super) fn srem(&mut self, node: &str, id: &ByteString) {
        if let Some(set) = self.sets.get_mut(node) {
            set.remove(id);
        }
    }

    /// The WRITE script for one operation of `node`; false if it was
    /// refused as stale. Operations that are not a session's are ignored.
    pub(super) fn write(&mut self, node: &str, op: StoreOp) -> bool {
        let Some((id, generation)) = session_of(&op) else {
            return true;
        };
        let Some(keys) = self.sessions.get_mut(&id) else {
            return matches!(op, StoreOp::Remove { .. });
        };
        if keys.generation != generation {
            return false;
        }
        match op {
            StoreOp::Online { expiry, .. } => {
                keys.expiry = Some(expiry);
                self.sets.entry(node.to_owned()).or_default().insert(id);
            }
            StoreOp::Subscribe {
                filter,
                subscription,
                ..
            } => {
                keys.subscriptions.insert(filter, subscription);
            }
            StoreOp::Unsubscribe { filter, .. } => {
                keys.subscriptions.remove(&filter);
            }
            StoreOp::Remove { .. } => {
                keys.owner = None;
                keys.expiry = None;
                keys.subscriptions.clear();
                keys.queue.clear();
            }
            StoreOp::Queue {
                stored,
                delivery,
                packet_id,
                ..
            } => {
                keys.queue.insert(stored, (delivery, packet_id, false));
            }
            StoreOp::Sent {
                stored, packet_id, ..
            } => {
                if let Some(entry) = keys.queue.get_mut(&stored) {
                    entry.1 = Some(packet_id);
                }
            }
            StoreOp::Released { stored, .. } => {
                if let Some(entry) = keys.queue.get_mut(&stored) {
                    entry.2 = true;
                }
            }
            StoreOp::Trim { stored, .. } => {
                keys.queue.remove(&stored);
            }
            StoreOp::Offline { .. } | StoreOp::WillGone { .. } => {}
            StoreOp::Retain { .. } | StoreOp::Route { .. } => {}
        }
        true
    }
}

/// The session an operation writes to, and the generation it carries.
fn session_of(op: &StoreOp) -> Option<(ByteString, u64)> {
    match op {
        StoreOp::Online {
            client_id,
            generation,
            ..
        }
        | StoreOp::Offline {
            client_id,
            generation,
            ..
        }
        | StoreOp::WillGone {
            client_id,
            generation,
        }
        | StoreOp::Subscribe {
            client_id,
            generation,
            ..
        }
        | StoreOp::Unsubscribe {
            client_id,
            generation,
            ..
        }
        | StoreOp::Remove {
            client_id,
            generation,
        }
        | StoreOp::Queue {
            client_id,
            generation,
            ..
        }
        | StoreOp::Sent {
            client_id,
            generation,
            ..
        }
        | StoreOp::Released {
            client_id,
            generation,
            ..
        }
        | StoreOp::Trim {
            client_id,
            generation,
            ..
        } => Some((client_id.clone(), *generation)),
        StoreOp::Retain { .. } | StoreOp::Route { .. } => None,
    }
}
