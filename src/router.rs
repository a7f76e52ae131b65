//! Shard-local routing: which of this shard's sessions get a message, and with
//! what QoS, flags and subscription identifiers.
//!
//! Cross-shard forwarding happens before this: the receiving shard asks the
//! [`crate::topic::ShardIndex`] which shards hold subscribers and sends them the
//! message once each; every shard then routes it here to its own sessions.
//!
//! A share group can have members on several shards, and each message must
//! reach one member of the group, not one per shard. So every shard also keeps
//! the members (and online members) each shard has in each group
//! ([`Router::set_group`]), and the shard a message is published on picks the
//! shard that serves each matching group ([`Router::assign_groups`]): weighted
//! round-robin over the shards' online members (all members when none is
//! online). Only that shard delivers to the group ([`Router::route`] with its
//! list of groups), round-robin over its own members.

use crate::hash::HashMap;

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

/// How many members one shard has in one share group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupMembers {
    pub members: u32,
    /// Members whose client is connected: the ones messages go to first.
    pub online: u32,
}

/// The subscriptions of the sessions on one shard.
#[derive(Default)]
pub struct Router {
    trie: SubscriptionTrie<ByteString, Subscription>,
    /// Next member to try in each share group, by `$share/<group>/<filter>`.
    cursors: HashMap<ByteString, usize>,
    /// Matches of the publish being routed, reused to avoid an allocation each time.
    scratch: Vec<(ByteString, Subscription)>,
    /// Every shard's members of every share group (this shard's included), as
    /// the shards last reported them: share filter -> (shard, members).
    groups: SubscriptionTrie<usize, GroupMembers>,
    /// Next pick in each share group's weighted round-robin over shards.
    group_cursors: HashMap<ByteString, u64>,
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

    /// Records that `shard` has `members` in the share group `filter`
    /// (`$share/<group>/<f>`); zero members forgets the shard.
    pub fn set_group(&mut self, filter: &TopicFilter, shard: usize, members: GroupMembers) {
        if members.members == 0 {
            self.groups.remove(filter, &shard);
            if !self.has_group_anywhere(filter) {
                self.group_cursors.remove(filter.as_bytestring());
            }
        } else {
            self.groups.insert(filter, shard, members);
        }
    }

    fn has_group_anywhere(&self, filter: &TopicFilter) -> bool {
        let mut found = false;
        if let Ok(topic) = crate::topic::TopicName::new(filter.filter().to_owned()) {
            self.groups.for_each_match(&topic, |m| {
                if let Match::Shared { filter: f, .. } = m {
                    found |= f == filter;
                }
            });
        }
        found
    }

    /// Picks, for each share group matching `topic`, the shard that delivers
    /// this message to it: weighted round-robin over the shards' online
    /// members, or over all members when none is online. Gives `(shard, share
    /// filter)` pairs; pass each shard its filters in [`Router::route`].
    pub fn assign_groups(&mut self, topic: &crate::topic::TopicName) -> Vec<(usize, ByteString)> {
        let Router {
            groups,
            group_cursors,
            ..
        } = self;
        let mut assigned = Vec::new();
        groups.for_each_match(topic, |m| {
            let Match::Shared { filter, members } = m else {
                return;
            };
            if let Some(shard) = pick_shard(group_cursors, filter, members) {
                assigned.push((shard, filter.as_bytestring().clone()));
            }
        });
        assigned
    }

    /// [`Router::assign_groups`] for the one share group `filter`, which
    /// `topic` matches: the shard that serves it, or `None` if the group has
    /// no member left anywhere. For messages handed over from a member whose
    /// session ended ([`Router::hand_over`]).
    pub fn assign_group(
        &mut self,
        filter: &TopicFilter,
        topic: &crate::topic::TopicName,
    ) -> Option<usize> {
        let Router {
            groups,
            group_cursors,
            ..
        } = self;
        let mut assigned = None;
        groups.for_each_match(topic, |m| {
            if let Match::Shared { filter: f, members } = m {
                if f == filter {
                    assigned = pick_shard(group_cursors, f, members);
                }
            }
        });
        assigned
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
    /// - Each matching share group named in `groups` gives one delivery,
    ///   round-robin over its members here, skipping offline ones while any
    ///   member is online; other groups are served by another shard. `None`
    ///   serves every group (a single shard).
    /// - RETAIN is kept only for retain-as-published subscriptions [MQTT-3.3.1-12].
    pub fn route(
        &mut self,
        message: &Message,
        recipients: &mut impl Recipients,
        groups: Option<&[ByteString]>,
    ) {
        let Router {
            trie,
            cursors,
            scratch,
            ..
        } = self;
        scratch.clear();
        trie.for_each_match(&message.topic, |m| match m {
            Match::Direct { key, value } => {
                if !(value.options.no_local && *key == message.publisher) {
                    scratch.push((key.clone(), *value));
                }
            }
            Match::Shared { filter, members } => {
                if groups.is_some_and(|g| !g.contains(filter.as_bytestring())) {
                    return;
                }
                let (key, value) = pick_member(cursors, filter, members, recipients);
                let mut d = delivery(message, std::iter::once(value));
                d.share_group = Some(filter.clone());
                recipients.deliver(key, d);
            }
        });
        if scratch.len() > 1 {
            scratch.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let mut rest = &scratch[..];
        while let Some((client, _)) = rest.first() {
            let same = rest.iter().take_while(|(c, _)| c == client).count();
            let subs = rest[..same].iter().map(|(_, s)| s);
            recipients.deliver(client, delivery(message, subs));
            rest = &rest[same..];
        }
    }

    /// Delivers `messages`, in order, to one member of the share group
    /// `filter` on this shard, picked as [`Router::route`] picks (online
    /// members first): the messages a member whose session ended had not
    /// received (MQTT 5 section 4.8.2). Each is capped at the new member's
    /// subscription QoS, as any delivery is. All go to the same member, so
    /// it gets them in the order the first member did. Every message must
    /// match `filter`. Returns how many were delivered: none if the group has
    /// no member here any more.
    pub fn hand_over(
        &mut self,
        filter: &TopicFilter,
        messages: &[Message],
        recipients: &mut impl Recipients,
    ) -> usize {
        let Some(first) = messages.first() else {
            return 0;
        };
        let Router { trie, cursors, .. } = self;
        let mut member = None;
        trie.for_each_match(&first.topic, |m| {
            if let Match::Shared { filter: f, members } = m {
                if f == filter {
                    let (key, value) = pick_member(cursors, f, members, recipients);
                    member = Some((key.clone(), *value));
                }
            }
        });
        let Some((key, value)) = member else {
            return 0;
        };
        for message in messages {
            let mut d = delivery(message, std::iter::once(&value));
            d.share_group = Some(filter.clone());
            recipients.deliver(&key, d);
        }
        messages.len()
    }
}

/// The next member of the share group `filter` on this shard: round-robin,
/// skipping offline members while any member is online.
fn pick_member<'a, V>(
    cursors: &mut HashMap<ByteString, usize>,
    filter: &TopicFilter,
    members: &'a [(ByteString, V)],
    recipients: &impl Recipients,
) -> &'a (ByteString, V) {
    let cursor = cursors.entry(filter.as_bytestring().clone()).or_insert(0);
    let n = members.len();
    let start = *cursor % n;
    let pick = (0..n)
        .map(|i| (start + i) % n)
        .find(|&i| recipients.is_online(&members[i].0))
        .unwrap_or(start);
    *cursor = pick + 1;
    &members[pick]
}

/// The shard that serves the share group `filter` next: weighted round-robin
/// over the shards' online members, or over all members when none is online.
/// `None` when no shard has a member.
fn pick_shard(
    group_cursors: &mut HashMap<ByteString, u64>,
    filter: &TopicFilter,
    members: &[(usize, GroupMembers)],
) -> Option<usize> {
    let online: u64 = members.iter().map(|(_, g)| u64::from(g.online)).sum();
    let weight = |g: &GroupMembers| u64::from(if online > 0 { g.online } else { g.members });
    let total: u64 = members.iter().map(|(_, g)| weight(g)).sum();
    if total == 0 {
        return None;
    }
    let cursor = group_cursors
        .entry(filter.as_bytestring().clone())
        .or_insert(0);
    let mut pick = *cursor % total;
    *cursor = cursor.wrapping_add(1);
    // Members in shard order, so the rotation is the same on every call.
    let mut shards: Vec<(usize, u64)> = members.iter().map(|(s, g)| (*s, weight(g))).collect();
    shards.sort_unstable();
    for (shard, w) in shards {
        if pick < w {
            return Some(shard);
        }
        pick -= w;
    }
    None
}

/// The delivery of `message` for one session's matching subscriptions.
///
/// Takes an iterator rather than a slice so a publish builds no list per client.
fn delivery<'a>(
    message: &Message,
    subs: impl Iterator<Item = &'a Subscription> + Clone,
) -> Delivery {
    let best = subs
        .clone()
        .max_by_key(|s| s.options.qos)
        .copied()
        .unwrap_or(Subscription {
            options: Default::default(),
            id: None,
        });
    Delivery {
        message: message.clone(),
        qos: best.options.qos.min(message.qos),
        retain: message.retain && subs.clone().any(|s| s.options.retain_as_published),
        subscription_ids: subs.filter_map(|s| s.id).collect(),
        non_retry: best.options.non_retry,
        non_persistence: best.options.non_persistence,
        share_group: None,
        stored: None,
    }
}

#[cfg(test)]
mod tests;
