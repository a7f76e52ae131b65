//! Shard-local routing: which of this shard's sessions get a message, and with
//! what QoS, flags and subscription identifiers.
//!
//! Cross-shard forwarding happens before this: the receiving shard asks the
//! [`crate::topic::ShardIndex`] which shards hold subscribers and sends them the
//! message once each; every shard then routes it here to its own sessions.

use std::collections::HashMap;

use bytestring::ByteString;

use crate::message::Message;
use crate::session::{Delivery, Subscription};
use crate::topic::{Match, SubscriptionTrie, TopicFilter};

/// Where routed messages go: the shard's sessions.
pub trait Recipients {
    /// Whether `client` has a connection, for share groups to prefer it.
    fn is_online(&self, client: &ByteString) -> bool;
    /// Hands `delivery` to `client`'s session.
    fn deliver(&mut self, client: &ByteString, delivery: Delivery);
}

/// The subscriptions of the sessions on one shard.
#[derive(Default)]
pub struct Router {
    trie: SubscriptionTrie<ByteString, Subscription>,
    /// Next member to try in each share group, by `$share/<group>/<filter>`.
    cursors: HashMap<ByteString, usize>,
    /// Matches of the publish being routed, reused to avoid an allocation each time.
    scratch: Vec<(ByteString, Subscription)>,
}

impl Router {
    /// Adds or replaces `client`'s subscription to `filter`; `true` if it existed.
    pub fn subscribe(
        &mut self,
        client: &ByteString,
        filter: &TopicFilter,
        sub: Subscription,
    ) -> bool {
        self.trie.insert(filter, client.clone(), sub).is_some()
    }

    pub fn unsubscribe(&mut self, client: &ByteString, filter: &TopicFilter) -> bool {
        let removed = self.trie.remove(filter, client).is_some();
        if removed && filter.share_group().is_some() && !self.has_group(filter) {
            self.cursors.remove(filter.as_bytestring());
        }
        removed
    }

    fn has_group(&self, filter: &TopicFilter) -> bool {
        let mut found = false;
        // Cheap enough: only on the last unsubscribe from a share group.
        if let Ok(topic) = crate::topic::TopicName::new(filter.filter().to_owned()) {
            self.trie.for_each_match(&topic, |m| {
                if let Match::Shared { filter: f, .. } = m {
                    found |= f == filter;
                }
            });
        }
        found
    }

    /// Subscriptions held, a share-group member counting once.
    pub fn len(&self) -> usize {
        self.trie.len()
    }

    pub fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }

    /// Calls [`Recipients::deliver`] once per local session that gets `message`.
    ///
    /// - Overlapping subscriptions of one session give one delivery, at the
    ///   highest QoS granted, with every subscription identifier [MQTT-3.3.4-2].
    /// - No-local subscriptions skip the publisher's own messages [MQTT-3.8.3-3].
    /// - Each matching share group gives one delivery, round-robin over its
    ///   members, skipping offline ones while any member is online.
    /// - RETAIN is kept only for retain-as-published subscriptions [MQTT-3.3.1-12].
    pub fn route(&mut self, message: &Message, recipients: &mut impl Recipients) {
        let Router {
            trie,
            cursors,
            scratch,
        } = self;
        scratch.clear();
        trie.for_each_match(&message.topic, |m| match m {
            Match::Direct { key, value } => {
                if !(value.options.no_local && *key == message.publisher) {
                    scratch.push((key.clone(), *value));
                }
            }
            Match::Shared { filter, members } => {
                let cursor = cursors.entry(filter.as_bytestring().clone()).or_insert(0);
                let n = members.len();
                let start = *cursor % n;
                let pick = (0..n)
                    .map(|i| (start + i) % n)
                    .find(|&i| recipients.is_online(&members[i].0))
                    .unwrap_or(start);
                *cursor = pick + 1;
                let (key, value) = &members[pick];
                recipients.deliver(key, delivery(message, &[*value]));
            }
        });
        if scratch.len() > 1 {
            scratch.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let mut rest = &scratch[..];
        while let Some((client, _)) = rest.first() {
            let same = rest.iter().take_while(|(c, _)| c == client).count();
            let subs: Vec<Subscription> = rest[..same].iter().map(|(_, s)| *s).collect();
            recipients.deliver(client, delivery(message, &subs));
            rest = &rest[same..];
        }
    }
}

/// The delivery of `message` for one session's matching subscriptions.
fn delivery(message: &Message, subs: &[Subscription]) -> Delivery {
    let best = subs
        .iter()
        .max_by_key(|s| s.options.qos)
        .copied()
        .unwrap_or(Subscription {
            options: Default::default(),
            id: None,
        });
    Delivery {
        message: message.clone(),
        qos: best.options.qos.min(message.qos),
        retain: message.retain && subs.iter().any(|s| s.options.retain_as_published),
        subscription_ids: subs.iter().filter_map(|s| s.id).collect(),
        non_retry: best.options.non_retry,
        non_persistence: best.options.non_persistence,
    }
}

#[cfg(test)]
mod tests;
