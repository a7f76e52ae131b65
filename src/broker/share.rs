//! Share groups across shards: each shard counts its own members (and online
//! members) of each group and tells every shard when a count changes, so the
//! shard a message is published on can pick one shard to serve each group
//! (see [`crate::router`]).
//!
//! When a member's session ends, the messages the group gave it that its
//! client has not received go to another member (MQTT 5 section 4.8.2):
//! [`Broker::hand_over`].

use std::time::Instant;

use crate::hash::HashMap;

use bytestring::ByteString;

use super::{Broker, Forward};
use crate::message::Message;
use crate::router::GroupMembers;
use crate::session::Delivery;
use crate::topic::TopicFilter;

/// This shard's members of each share group, by `$share/<group>/<filter>`.
pub(super) type LocalGroups = HashMap<TopicFilter, GroupMembers>;

impl Broker {
    /// Changes this shard's count for the share group `filter` by `members`
    /// and `online`, and tells every shard (this one included) the new count.
    pub(super) fn count_group(&mut self, filter: &TopicFilter, members: i32, online: i32) {
        let entry = self.groups.entry(filter.detached()).or_default();
        entry.members = entry.members.saturating_add_signed(members);
        entry.online = entry.online.saturating_add_signed(online);
        let count = *entry;
        if count.members == 0 {
            self.groups.remove(filter);
        }
        self.router.set_group(filter, self.shard, count);
        self.broadcast(Forward::ShareGroup(filter.detached(), count));
    }

    /// The client's shared subscriptions went online (`+1`) or offline (`-1`).
    pub(super) fn count_online(&mut self, client_id: &ByteString, online: i32) {
        let Some(entry) = self.sessions.get(client_id) else {
            return;
        };
        let shared: Vec<TopicFilter> = entry
            .session
            .subscriptions()
            .filter(|(f, _)| f.share_group().is_some())
            .map(|(f, _)| f.clone())
            .collect();
        for filter in shared {
            self.count_group(&filter, 0, online);
        }
    }

    /// Hands `deliveries`, taken from a session that ended
    /// ([`crate::session::Session::take_shared`]), to another member of the
    /// share group each came through: MQTT 5 section 4.8.2, "If the Client's
    /// Session terminates before the Client reconnects, the Server SHOULD
    /// send the Application Message to another Client that is subscribed to
    /// the same Shared Subscription". Call it once the session has left its
    /// groups, so that it is not picked again. Each group's messages go, in
    /// order, to the shard the group's counts pick (as for a publish) and
    /// there to one member. A group with no member left drops them, as the
    /// end of the session always did.
    pub(super) fn hand_over(&mut self, deliveries: Vec<Delivery>, now: Instant) {
        // Rarely more than one group: a list keeps the order they came in.
        let mut batches: Vec<(TopicFilter, Vec<Message>)> = Vec::new();
        for d in deliveries {
            let Some(group) = d.share_group else {
                continue;
            };
            match batches.iter_mut().find(|(g, _)| *g == group) {
                Some((_, messages)) => messages.push(d.message),
                None => batches.push((group, vec![d.message])),
            }
        }
        for (group, messages) in batches {
            let Some(first) = messages.first() else {
                continue;
            };
            match self.router.assign_group(&group, &first.topic) {
                Some(shard) if shard == self.shard => {
                    self.hand_over_here(&group, &messages, now);
                }
                Some(shard) => self
                    .forwards
                    .push((shard, Forward::HandOver(group, messages))),
                None => {}
            }
        }
    }

    /// Delivers `messages`, handed over, to one member of `group` on this
    /// shard ([`crate::router::Router::hand_over`]).
    pub(super) fn hand_over_here(
        &mut self,
        group: &TopicFilter,
        messages: &[Message],
        now: Instant,
    ) {
        self.with_recipients(now, |router, sessions| {
            router.hand_over(group, messages, sessions)
        });
    }
}
