//! Messages between this node and the other nodes of a cluster: routing a
//! publish to the nodes whose subscribers it matches, by the node-level
//! index ([`crate::cluster::routes`]), and taking what they route here.
//!
//! A publish goes once to each node with a matching subscription, like it
//! goes once to each shard. A share group may have members on several
//! nodes and must get each message once in the whole cluster, so the shard
//! the message is published on picks one node for each group (round-robin
//! over the nodes with members, this one included) and tells that node, in
//! [`NodeMessage::Route`], which groups it serves; the node picked then
//! picks one of its shards, and the shard one member, as for a local
//! publish. Unlike between shards, the pick does not prefer nodes whose
//! members are online: other nodes' online counts are not in the index (an
//! offline member's session queues the message, as MQTT allows).
//!
//! Acknowledgements wait for the nodes a message went to ([`super::acks`]).

use std::time::Instant;

use bytestring::ByteString;

use super::{Broker, ConnId, Forward};
use crate::cluster::frame::{CreditTo, Message as NodeMessage};
use crate::message::{Message, MessageId};
use crate::store::record;

impl Broker {
    /// Routes `message` to the other nodes it has subscribers on. `groups`:
    /// the share groups this node serves with this message, `(shard, filter)`
    /// as [`crate::router::Router::assign_groups`] gave them; a group another
    /// node is picked for leaves it. Returns the nodes the message went to.
    pub(super) fn route_to_nodes(
        &mut self,
        message: &mut Message,
        groups: &mut Vec<(usize, ByteString)>,
        origin: Option<ConnId>,
        now: Instant,
    ) -> Vec<ByteString> {
        if self.node_routes.is_empty() {
            return Vec::new();
        }
        let targets = self.node_routes.targets(&message.topic);
        let mut sends: Vec<(ByteString, Vec<String>)> =
            targets.nodes.into_iter().map(|n| (n, Vec::new())).collect();
        for (filter, members) in targets.groups {
            let here = groups.iter().position(|(_, g)| *g == filter);
            let cursor = self.node_group_cursors.entry(filter.clone()).or_default();
            let candidates = (members.len() + usize::from(here.is_some())) as u64;
            let pick = (*cursor % candidates) as usize;
            *cursor = cursor.wrapping_add(1);
            let Some(node) = members.get(pick) else {
                continue; // this node serves it
            };
            if let Some(i) = here {
                groups.remove(i);
            }
            match sends.iter_mut().find(|(n, _)| n == node) {
                Some((_, served)) => served.push(filter.to_string()),
                None => sends.push((node.clone(), vec![filter.to_string()])),
            }
        }
        if sends.is_empty() {
            return Vec::new();
        }
        // Kept on the local copy too: a session that moves here from one of
        // those nodes may get it from there as well.
        let id = *message.id.get_or_insert_with(|| {
            self.next_message_id.seq += 1;
            self.next_message_id
        });
        let encoded = record::encode_message(message, now);
        let mut nodes = Vec::with_capacity(sends.len());
        let credit_to = origin.map(|conn| CreditTo {
            shard: self.shard as u16,
            conn,
            low_on_credit: self.flow.low_on_node_credit(conn, sends.len() as u32),
        });
        for (node, served) in sends {
            let route = NodeMessage::Route {
                groups: served,
                publisher: message.publisher.to_string(),
                message: encoded.clone(),
                id,
                credit_to,
            };
            self.to_nodes.push((node.clone(), route));
            nodes.push(node);
        }
        if let Some(origin) = origin {
            self.flow.sent_to_nodes(origin, nodes.len() as u32);
        }
        self.stats.routed_to_nodes += nodes.len() as u64;
        nodes
    }

    /// A message from another node: `from`.
    pub fn on_node_message(&mut self, from: &ByteString, message: NodeMessage, now: Instant) {
        match message {
            NodeMessage::Route {
                groups,
                publisher,
                message,
                id,
                credit_to,
            } => {
                let relay = credit_to.map(|c| {
                    let relay = self.flow.relay((from.clone(), c.shard, c.conn));
                    (relay, c.low_on_credit)
                });
                self.route_from_node(&groups, &publisher, &message, id, relay, now);
            }
            NodeMessage::Credit { shard, credits } => match usize::from(shard) {
                s if s == self.shard => {
                    for (conn, n) in credits {
                        self.flow.credited_by_node(conn, n);
                    }
                    self.credited = true;
                }
                s if s < self.nr_shards => {
                    let credit = NodeMessage::Credit { shard, credits };
                    self.forwards
                        .push((s, Forward::FromNode(from.clone(), credit)));
                }
                _ => {}
            },
            NodeMessage::Barrier { shard, ticket } => {
                self.node_barrier(from.clone(), shard, ticket, now)
            }
            NodeMessage::Stored {
                shard,
                ticket,
                stored,
            } => match usize::from(shard) {
                s if s == self.shard => self.node_stored(from, ticket, stored),
                s if s < self.nr_shards => self
                    .forwards
                    .push((s, Forward::NodeStored(from.clone(), ticket, stored))),
                _ => {}
            },
            m @ (NodeMessage::Takeover { .. }
            | NodeMessage::HandOverDone { .. }
            | NodeMessage::Deliver { .. }) => self.ownership_message(from, m, now),
            // Hand-overs of session state are not sent by this server yet.
            NodeMessage::Publish(_)
            | NodeMessage::Accepted { .. }
            | NodeMessage::HandOver { .. } => {}
        }
    }

    /// Routes a message another node routed here: to this shard's
    /// subscribers and to the other shards with subscribers, and to this
    /// node's members of the share groups in `served`, never back to other
    /// nodes. Retained messages reach this node's replica through the store's
    /// feed, not from here. `relay`: the publisher's stand-in here, if a
    /// client published it ([`super::flow`]).
    fn route_from_node(
        &mut self,
        served: &[String],
        publisher: &str,
        bytes: &[u8],
        id: MessageId,
        relay: Option<(ConnId, bool)>,
        now: Instant,
    ) {
        self.stats.routed_from_nodes += 1;
        let publisher = ByteString::from(publisher);
        let mut message = match record::decode_message(bytes, &publisher, now) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "a message from another node cannot be read: dropped");
                return;
            }
        };
        message.id = Some(id);
        let mut groups = self.router.assign_groups(&message.topic);
        groups.retain(|(_, g)| served.iter().any(|s| s == &**g));
        let shards = self.route_to_shards(&message, groups, relay.map(|(r, _)| r), now);
        // A congested recipient here holds the relay's credit, as one on
        // another shard does; taken either way, or the next local publisher
        // would wait for it.
        let congested = self.outputs.take_congested().map(|(conn, _)| conn);
        if let Some((relay, low_on_credit)) = relay {
            if congested.is_some() {
                self.flow.forwarded(relay, 1);
                let sender = super::flow::Sender {
                    conn: relay,
                    low_on_credit: true,
                };
                self.flow
                    .routed(self.shard, sender, congested, now, self.settings.stall);
            }
            self.flow.relayed(relay, low_on_credit);
        }
        // With stored messages, a barrier behind these waits for the shards'
        // writes too.
        if self.store_messages {
            self.acks_wait_for(shards);
        }
    }

    /// `node` died: the batches waiting for its answers fail, the CONNECTs
    /// waiting for its hand-overs go on.
    pub fn node_died(&mut self, node: &str, now: Instant) {
        self.nodes_lost(Some(node), now);
        self.flow.node_died(node);
        self.credited = true;
        self.owners_node_died(node);
    }

    /// Which other nodes' subscribers this node routes to: the index the
    /// feed keeps.
    pub(super) fn routes_to_nodes(&self) -> bool {
        !self.node_routes.is_empty()
    }
}
