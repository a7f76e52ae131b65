//! `durability = "messages"`: a PUBACK (QoS 1) or PUBREC (QoS 2) tells the
//! publisher the broker has its message, so it waits until the message is
//! stored for every persistent session it was queued for.
//!
//! Those sessions may live on any shard, and each shard writes its own
//! sessions' deliveries to its own Redis connection. So acknowledgements are
//! held in batches, one per wake-up of the publishers' shard ("sealed" when
//! the shard flushes):
//! - the batch waits for this shard's own writes queued with it, and for a
//!   barrier ([`Forward::Barrier`]) sent after its messages to each other
//!   shard they were forwarded to;
//! - a shard answers a barrier ([`Forward::Stored`]) once every write it
//!   queued before the barrier arrived has been answered by Redis;
//! - the batch's acknowledgements go out, in order, when every answer is in.
//!   If a write failed, its publishers are disconnected instead, with no
//!   acknowledgement, so they publish again (MQTT 5: 0x80): a duplicate is
//!   allowed, a loss is not.
//!
//! Batches are released oldest first, so a client's acknowledgements keep
//! the order of its publishes [MQTT-4.6.0-2].
//!
//! In a cluster the same batches wait for other nodes too, whatever the
//! durability: a message routed to another node is the broker's only once
//! that node has it. The batch sends a [`NodeMessage::Barrier`] behind its
//! messages to each node they went to; that node holds the barrier in its
//! own batch (so, with `durability = "messages"`, until its own writes are
//! stored) and answers [`NodeMessage::Stored`]. A node that dies, or does
//! not answer within [`NODE_ANSWER`], counts as a failed write.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::{Broker, ConnId, Forward};
use crate::cluster::frame::Message as NodeMessage;
use crate::protocol::{Packet, ReasonCode};
use crate::topic::ShardMask;

/// How long a batch waits for another node's answer before it counts as
/// failed: its publishers publish again.
pub const NODE_ANSWER: Duration = Duration::from_secs(5);

/// One acknowledgement held back. Nearly all are `Client`s: boxing their
/// packet would cost an allocation each to save room in the rare `Node`.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Held {
    /// A PUBACK or PUBREC for a client of this shard.
    Client {
        conn: ConnId,
        client_id: ByteString,
        ack: Packet,
    },
    /// A SUBACK or UNSUBACK (and what follows it) of a session the store
    /// mirrors: it waits until the subscription is stored, so that a node
    /// that dies after sending it loses no subscription a client was told
    /// of ([`super::subacks`]).
    Reply {
        conn: ConnId,
        client_id: ByteString,
        packets: Vec<Packet>,
    },
    /// The answer to another node's barrier.
    Node {
        node: ByteString,
        shard: u16,
        ticket: u64,
    },
}

#[derive(Debug)]
struct Batch {
    ticket: u64,
    acks: Vec<Held>,
    /// Answers still to come: one per shard and node the messages went to,
    /// and this shard's own writes.
    left: usize,
    /// The nodes whose answer is still to come.
    nodes: Vec<ByteString>,
    /// When the first of its acknowledgements was held.
    since: Instant,
    /// Whether every answer so far said stored.
    stored: bool,
}

impl HeldAcks {
    /// Whether the open batch waits for other nodes.
    pub(super) fn waits_for_nodes(&self) -> bool {
        !self.open_nodes.is_empty()
    }

    /// The open batch waits for `node` too: a message went there since it
    /// opened.
    pub(super) fn wait_for_node(&mut self, node: &ByteString) {
        if !self.open_nodes.contains(node) {
            self.open_nodes.push(node.clone());
        }
    }

    /// Whether any acknowledgement is held: a later one must wait behind it
    /// (acknowledgements keep the order of the publishes).
    pub(super) fn holding(&self) -> bool {
        !self.open.is_empty() || !self.sealed.is_empty()
    }
}

/// Acknowledgements waiting for their messages to be stored, and the
/// barriers other shards asked this one to answer.
#[derive(Debug, Default)]
pub struct HeldAcks {
    /// Held since the last seal, in the order their publishes came.
    open: Vec<Held>,
    /// The other shards the open batch's messages went to.
    open_shards: ShardMask,
    /// The other nodes they went to.
    open_nodes: Vec<ByteString>,
    /// When the first of `open` was held.
    open_since: Option<Instant>,
    /// Something routed here since the last seal is held only in memory
    /// where it should be stored: the next batch fails.
    open_unstored: bool,
    sealed: VecDeque<Batch>,
    next_ticket: u64,
    /// `(shard, ticket)`: barriers to answer once this shard's writes queued
    /// before them are answered.
    barriers: Vec<(usize, u64)>,
}

impl Broker {
    /// Holds `ack`, the PUBACK or PUBREC of a publish from `conn`, until its
    /// message is stored. `shards`: the other shards whose writes it waits
    /// for; `nodes`: the other nodes it was routed to.
    pub(super) fn hold_ack(
        &mut self,
        conn: ConnId,
        client_id: &ByteString,
        ack: Packet,
        shards: ShardMask,
        nodes: Vec<ByteString>,
        now: Instant,
    ) {
        self.hold(
            Held::Client {
                conn,
                client_id: client_id.clone(),
                ack,
            },
            now,
        );
        self.acks.open_shards |= shards;
        for node in &nodes {
            self.acks.wait_for_node(node);
        }
    }

    /// Holds `packets`, a reply to `conn` and what follows it, until the
    /// store writes queued so far are answered.
    pub(super) fn hold_reply(
        &mut self,
        conn: ConnId,
        client_id: &ByteString,
        packets: Vec<Packet>,
        now: Instant,
    ) {
        let client_id = client_id.clone();
        let reply = Held::Reply {
            conn,
            client_id,
            packets,
        };
        self.hold(reply, now);
    }

    /// Another node's barrier, behind the messages it routed here: answered
    /// once they are queued (and stored) like a local publisher's.
    pub(super) fn node_barrier(&mut self, node: ByteString, shard: u16, ticket: u64, now: Instant) {
        self.hold(
            Held::Node {
                node,
                shard,
                ticket,
            },
            now,
        );
    }

    /// The open batch waits for the writes of these shards too: a message
    /// routed there since it opened.
    pub(super) fn acks_wait_for(&mut self, shards: ShardMask) {
        self.acks.open_shards |= shards;
    }

    /// With `durability = "messages"`: a message another node routed here
    /// is kept only in memory for now (its session's claim is not through):
    /// the batch its barrier joins fails, and its publisher publishes again.
    pub(super) fn acks_unstored(&mut self) {
        if self.store_messages {
            self.acks.open_unstored = true;
        }
    }

    fn hold(&mut self, held: Held, now: Instant) {
        self.acks.open_since.get_or_insert(now);
        self.acks.open.push(held);
    }

    /// Closes the batch of acknowledgements held since the last call: queues
    /// a barrier after its messages to each shard they went to, and returns
    /// its ticket for this shard's own store writes to answer, once the
    /// writes queued so far are answered. Call before draining `forwards`
    /// and the store ops.
    pub fn seal_acks(&mut self) -> Option<u64> {
        if self.acks.open.is_empty() {
            return None;
        }
        let acks = &mut self.acks;
        acks.next_ticket += 1;
        let ticket = acks.next_ticket;
        let shards = std::mem::take(&mut acks.open_shards).without(self.shard);
        let nodes = std::mem::take(&mut acks.open_nodes);
        let since = acks.open_since.take().unwrap_or_else(Instant::now);
        let stored = !std::mem::take(&mut acks.open_unstored);
        let mut left = 1 + nodes.len();
        for shard in shards.iter() {
            self.forwards.push((shard, Forward::Barrier(ticket)));
            left += 1;
        }
        for node in &nodes {
            let barrier = NodeMessage::Barrier {
                shard: self.shard as u16,
                ticket,
            };
            self.to_nodes.push((node.clone(), barrier));
        }
        let acks = &mut self.acks;
        acks.sealed.push_back(Batch {
            ticket,
            acks: std::mem::take(&mut acks.open),
            left,
            nodes,
            since,
            stored,
        });
        Some(ticket)
    }

    /// Barriers from other shards, to answer once the store writes queued
    /// before them are answered: `(shard, ticket)`.
    pub fn take_barriers(&mut self) -> Vec<(usize, u64)> {
        std::mem::take(&mut self.acks.barriers)
    }

    /// An answer for the batch `ticket`: from this shard's store, or from a
    /// shard its messages went to. `stored`: whether every write before it
    /// succeeded. Sends the acknowledgements of every batch that has all its
    /// answers, oldest first, stopping at the first that has not.
    pub fn stored(&mut self, ticket: u64, stored: bool) {
        if !stored {
            tracing::debug!(
                shard = self.shard,
                ticket,
                "a write before this batch's barrier failed"
            );
        }
        if let Some(batch) = self.acks.sealed.iter_mut().find(|b| b.ticket == ticket) {
            batch.left = batch.left.saturating_sub(1);
            batch.stored &= stored;
        }
        self.release_acks();
    }

    /// `node`'s answer to this shard's barrier `ticket`. An answer that comes
    /// after the batch gave up on the node is ignored.
    pub fn node_stored(&mut self, node: &str, ticket: u64, stored: bool) {
        let Some(batch) = self.acks.sealed.iter_mut().find(|b| b.ticket == ticket) else {
            return;
        };
        let Some(i) = batch.nodes.iter().position(|n| n == node) else {
            return;
        };
        batch.nodes.swap_remove(i);
        if !stored {
            tracing::debug!(
                ticket,
                node,
                "a node did not store what this shard routed to it"
            );
        }
        batch.left = batch.left.saturating_sub(1);
        batch.stored &= stored;
        self.release_acks();
    }

    /// Gives up waiting for answers from `node` (it died: what it had not
    /// answered for may be lost), and from any node that has not answered
    /// a batch held since `NODE_ANSWER` before `now`.
    pub fn nodes_lost(&mut self, node: Option<&str>, now: Instant) {
        for batch in &mut self.acks.sealed {
            let late = now.saturating_duration_since(batch.since) >= NODE_ANSWER;
            let before = batch.nodes.len();
            batch.nodes.retain(|n| !late && Some(&**n) != node);
            let lost = before - batch.nodes.len();
            if lost > 0 {
                tracing::debug!(ticket = batch.ticket, late, ?node, age = ?now.saturating_duration_since(batch.since), "gave up waiting for nodes");
                batch.left = batch.left.saturating_sub(lost);
                batch.stored = false;
            }
        }
        self.release_acks();
    }

    fn release_acks(&mut self) {
        while self.acks.sealed.front().is_some_and(|b| b.left == 0) {
            let Some(batch) = self.acks.sealed.pop_front() else {
                break;
            };
            for held in batch.acks {
                let (conn, client_id, ack) = match held {
                    Held::Client {
                        conn,
                        client_id,
                        ack,
                    } => (conn, client_id, ack),
                    Held::Reply {
                        conn,
                        client_id,
                        packets,
                    } => {
                        // Not stored: the client is told nothing and comes
                        // back, as a publisher whose message was not stored.
                        if self.attached(&client_id, conn) {
                            match batch.stored {
                                true => self.output(conn).packets.extend(packets),
                                false => self.outputs.close(conn, ReasonCode::UnspecifiedError),
                            }
                        }
                        continue;
                    }
                    Held::Node {
                        node,
                        shard,
                        ticket,
                    } => {
                        let stored = NodeMessage::Stored {
                            shard,
                            ticket,
                            stored: batch.stored,
                        };
                        self.to_nodes.push((node, stored));
                        continue;
                    }
                };
                // The client may have gone, or come back on a new
                // connection, meanwhile: it publishes again then.
                if !self.attached(&client_id, conn) {
                    continue;
                }
                if batch.stored {
                    self.output(conn).packets.push(ack);
                } else {
                    self.stats.publishes_unstored += 1;
                    self.outputs.close(conn, ReasonCode::UnspecifiedError);
                }
            }
        }
    }

    /// Whether `conn` is still the connection of the session `client_id`.
    pub(super) fn attached(&self, client_id: &ByteString, conn: ConnId) -> bool {
        self.sessions
            .get(client_id)
            .is_some_and(|e| e.conn == Some(conn))
    }

    /// Whether acknowledgements are held back (tests).
    #[cfg(test)]
    pub(crate) fn holds_acks(&self) -> bool {
        !self.acks.open.is_empty() || !self.acks.sealed.is_empty()
    }

    /// A barrier from `from`: record it for this shard's next store write.
    pub(super) fn barrier(&mut self, from: usize, ticket: u64) {
        self.acks.barriers.push((from, ticket));
    }
}
