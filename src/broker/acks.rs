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

use std::collections::VecDeque;

use bytestring::ByteString;

use super::{Broker, ConnId, Forward};
use crate::protocol::{Packet, ReasonCode};
use crate::topic::ShardMask;

/// One acknowledgement held back.
#[derive(Debug)]
struct Held {
    conn: ConnId,
    client_id: ByteString,
    ack: Packet,
}

#[derive(Debug)]
struct Batch {
    ticket: u64,
    acks: Vec<Held>,
    /// Answers still to come: one per shard the messages went to, and this
    /// shard's own writes.
    left: usize,
    /// Whether every answer so far said stored.
    stored: bool,
}

/// Acknowledgements waiting for their messages to be stored, and the
/// barriers other shards asked this one to answer.
#[derive(Debug, Default)]
pub(super) struct HeldAcks {
    /// Held since the last seal, in the order their publishes came.
    open: Vec<Held>,
    /// The other shards the open batch's messages went to.
    open_shards: ShardMask,
    sealed: VecDeque<Batch>,
    next_ticket: u64,
    /// `(shard, ticket)`: barriers to answer once this shard's writes queued
    /// before them are answered.
    barriers: Vec<(usize, u64)>,
}

impl Broker {
    /// Holds `ack`, the PUBACK or PUBREC of a publish from `conn`, until its
    /// message is stored. `shards`: the other shards the publish was
    /// forwarded to.
    pub(super) fn hold_ack(
        &mut self,
        conn: ConnId,
        client_id: &ByteString,
        ack: Packet,
        shards: ShardMask,
    ) {
        self.acks.open.push(Held {
            conn,
            client_id: client_id.clone(),
            ack,
        });
        self.acks.open_shards |= shards;
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
        let mut left = 1;
        for shard in shards.iter() {
            self.forwards.push((shard, Forward::Barrier(ticket)));
            left += 1;
        }
        let acks = &mut self.acks;
        acks.sealed.push_back(Batch {
            ticket,
            acks: std::mem::take(&mut acks.open),
            left,
            stored: true,
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
        if let Some(batch) = self.acks.sealed.iter_mut().find(|b| b.ticket == ticket) {
            batch.left = batch.left.saturating_sub(1);
            batch.stored &= stored;
        }
        while self.acks.sealed.front().is_some_and(|b| b.left == 0) {
            let Some(batch) = self.acks.sealed.pop_front() else {
                break;
            };
            for held in batch.acks {
                // The client may have gone, or come back on a new
                // connection, meanwhile: it publishes again then.
                let attached = self
                    .sessions
                    .get(&held.client_id)
                    .is_some_and(|e| e.conn == Some(held.conn));
                if !attached {
                    continue;
                }
                if batch.stored {
                    self.output(held.conn).packets.push(held.ack);
                } else {
                    self.stats.publishes_unstored += 1;
                    self.outputs.close(held.conn, ReasonCode::UnspecifiedError);
                }
            }
        }
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
