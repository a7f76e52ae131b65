//! Messages between the broker states of different shards.

use std::time::Instant;

use super::Broker;
use bytestring::ByteString;

use crate::message::Message;
use crate::router::GroupMembers;
use crate::topic::TopicFilter;

/// What one shard tells another. Everything is `Send`.
#[derive(Debug, Clone)]
pub enum Forward {
    /// Route this message to your local subscribers, and to your members of
    /// the share groups listed (the sending shard picked you for those).
    Publish(Message, Vec<ByteString>),
    /// Store (or clear) this retained message in your replica.
    Retain(Message),
    /// The sending shard now has subscribers for this filter.
    Subscribed(TopicFilter),
    /// The sending shard has no subscribers left for this filter.
    Unsubscribed(TopicFilter),
    /// The sending shard now has these members in this share group.
    ShareGroup(TopicFilter, GroupMembers),
}

impl Broker {
    /// Applies a message from shard `from`.
    pub fn on_forward(&mut self, from: usize, forward: Forward, now: Instant) {
        match forward {
            Forward::Publish(message, groups) => self.route_local(&message, &groups, now),
            Forward::Retain(message) => self.retained.set(&message),
            Forward::Subscribed(filter) => {
                self.index.add(&filter, from);
            }
            Forward::Unsubscribed(filter) => {
                self.index.remove(&filter, from);
            }
            Forward::ShareGroup(filter, members) => self.router.set_group(&filter, from, members),
        }
    }

    /// Queues `forward` for every other shard.
    pub(super) fn broadcast(&mut self, forward: Forward) {
        for shard in (0..self.nr_shards).filter(|&s| s != self.shard) {
            self.forwards.push((shard, forward.clone()));
        }
    }
}
