//! Messages between the broker states of different shards.

use std::time::Instant;

use super::{Broker, ConnId};
use bytestring::ByteString;

use crate::cluster::routes::RouteUpdate;
use crate::message::Message;
use crate::router::GroupMembers;
use crate::topic::TopicFilter;

/// What one shard tells another. Everything is `Send`.
#[derive(Debug, Clone)]
pub enum Forward {
    /// Route this message to your local subscribers, and to your members of
    /// the share groups listed (the sending shard picked you for those). The
    /// connection that published it, if a client did, gets a credit back once
    /// its recipients here have room ([`super::flow`]).
    Publish(Message, Vec<ByteString>, Option<super::flow::Sender>),
    /// Credits for your connections: `(connection, publishes)` routed here
    /// whose recipients had room, or drained since.
    Credit(Vec<(ConnId, u32)>),
    /// Store (or clear) this retained message in your replica.
    Retain(Message),
    /// The sending shard now has subscribers for this filter.
    Subscribed(TopicFilter),
    /// The sending shard has no subscribers left for this filter.
    Unsubscribed(TopicFilter),
    /// Answer with [`Forward::Synced`]: a SUBACK waits until every other
    /// shard has the filters sent before this ([`super::subacks`]).
    Sync(u64),
    /// The answer to the sender's [`Forward::Sync`] with this ticket.
    Synced(u64),
    /// The sending shard now has these members in this share group.
    ShareGroup(TopicFilter, GroupMembers),
    /// Messages of this share group that a member on the sending shard had
    /// not received when its session ended: deliver them, in order, to one
    /// of your members of the group (MQTT 5 section 4.8.2, [`Broker::hand_over`]).
    HandOver(TopicFilter, Vec<Message>),
    /// The sending shard has loaded what the store held at start-up, and
    /// every index update that came of it was sent before this.
    Loaded,
    /// `durability = "messages"`: answer with [`Forward::Stored`] once
    /// every store write you queued before this arrived is answered
    /// ([`super::acks`]).
    Barrier(u64),
    /// The answer to the sender's [`Forward::Barrier`] with this ticket:
    /// whether every write before it was stored.
    Stored(u64, bool),
    /// Another node's answer to this shard's barrier, which it sent to the
    /// shard that passes it on: `(node, ticket, stored)`.
    NodeStored(ByteString, u64, bool),
    /// A takeover message of another node for a client id of the receiving
    /// shard: `(node, message)`.
    FromNode(ByteString, crate::cluster::frame::Message),
    /// The node's lease is back after a lapse (`true`: Redis had lost the
    /// node's registration): write this shard's route set again, and find
    /// the sessions other nodes took meanwhile.
    Rejoined(bool),
    /// What other nodes subscribe to changed (from shard 0, which tails the
    /// cluster's route feed).
    Routes(Vec<RouteUpdate>),
}

impl Broker {
    /// Applies a message from shard `from`.
    pub fn on_forward(&mut self, from: usize, forward: Forward, now: Instant) {
        match forward {
            Forward::Publish(message, groups, sender) => {
                self.routing_from = Some(from);
                self.route_local(&message, &groups, now);
                self.routing_from = None;
                // The recipient routing found congested, if any, holds the credit.
                let congested = self.outputs.take_congested().map(|(conn, _)| conn);
                if let Some(sender) = sender {
                    self.flow
                        .routed(from, sender, congested, now, self.settings.stall);
                }
            }
            Forward::Credit(credits) => {
                for (conn, n) in credits {
                    self.flow.credited(conn, n);
                }
                self.credited = true;
            }
            Forward::Retain(message) => self.retained.set(&message),
            Forward::Subscribed(filter) => {
                self.index.add(&filter, from);
            }
            Forward::Unsubscribed(filter) => {
                self.index.remove(&filter, from);
            }
            Forward::Sync(ticket) => self.forwards.push((from, Forward::Synced(ticket))),
            Forward::Synced(ticket) => self.synced(ticket, now),
            Forward::ShareGroup(filter, members) => self.router.set_group(&filter, from, members),
            Forward::HandOver(group, messages) => self.hand_over_here(&group, &messages, now),
            Forward::Loaded => self.peers_loading = self.peers_loading.saturating_sub(1),
            Forward::Barrier(ticket) => self.barrier(from, ticket),
            Forward::Stored(ticket, stored) => self.stored(ticket, stored),
            Forward::NodeStored(node, ticket, stored) => self.node_stored(&node, ticket, stored),
            Forward::FromNode(node, message) => self.on_node_message(&node, message, now),
            Forward::Rejoined(lost) => self.rejoined(lost),
            Forward::Routes(updates) => {
                for update in updates {
                    self.node_routes.apply(update);
                }
            }
        }
    }

    /// What other nodes subscribe to changed: applied here and on every
    /// other shard.
    pub fn route_updates(&mut self, updates: Vec<RouteUpdate>) {
        for update in &updates {
            self.node_routes.apply(update.clone());
        }
        self.broadcast(Forward::Routes(updates));
    }

    /// Filters known of other nodes' subscribers (`shardmq_cluster_routes`).
    pub fn node_route_count(&self) -> usize {
        self.node_routes.len()
    }

    /// Queues `forward` for every other shard.
    pub(super) fn broadcast(&mut self, forward: Forward) {
        for shard in (0..self.nr_shards).filter(|&s| s != self.shard) {
            self.forwards.push((shard, forward.clone()));
        }
    }
}
