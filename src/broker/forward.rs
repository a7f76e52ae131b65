//! Messages between the broker states of different shards.

use std::time::Instant;

use super::Broker;
use crate::message::Message;
use crate::topic::TopicFilter;

/// What one shard tells another. Everything is `Send`.
#[derive(Debug, Clone)]
pub enum Forward {
    /// Route this message to your local subscribers.
    Publish(Message),
    /// Store (or clear) this retained message in your replica.
    Retain(Message),
    /// The sending shard now has subscribers for this filter.
    Subscribed(TopicFilter),
    /// The sending shard has no subscribers left for this filter.
    Unsubscribed(TopicFilter),
}

impl Broker {
    /// Applies a message from shard `from`.
    pub fn on_forward(&mut self, from: usize, forward: Forward, now: Instant) {
        match forward {
            Forward::Publish(message) => self.route_local(&message, now),
            Forward::Retain(message) => self.retained.set(&message),
            Forward::Subscribed(filter) => {
                self.index.add(&filter, from);
            }
            Forward::Unsubscribed(filter) => {
                self.index.remove(&filter, from);
            }
        }
    }

    /// Queues `forward` for every other shard.
    pub(super) fn broadcast(&mut self, forward: Forward) {
        for shard in (0..self.nr_shards).filter(|&s| s != self.shard) {
            self.forwards.push((shard, forward.clone()));
        }
    }
}
