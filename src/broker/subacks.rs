//! A SUBACK says the subscription is in place: a message published after it,
//! by any client on any shard, reaches the subscriber.
//!
//! A filter new to this shard reaches the other shards' indexes as a
//! [`Forward::Subscribed`], which each applies when its mesh task next runs.
//! A SUBACK sent at once could reach a client that then tells a publisher to
//! go, and the publish land on a shard that has not heard of the filter yet:
//! it would reach no one. So the SUBACK of a SUBSCRIBE that told the other
//! shards of a new filter waits until each has answered a [`Forward::Sync`]
//! sent behind it (the channels between two shards are FIFO). That costs one
//! round trip between shards, and only for filters new to the shard.
//!
//! Replies are released in the order they were held, and a later SUBACK or
//! UNSUBACK of a connection with a reply held waits behind it, so a client's
//! acknowledgements keep the order of its requests.
//!
//! Between nodes the route set travels through Redis instead; a SUBACK does
//! not wait for other nodes (nor does EMQX's for its cluster's routes).

use std::collections::VecDeque;
use std::time::Instant;

use bytestring::ByteString;

use super::{Broker, Client, ConnId, Forward};
use crate::protocol::Packet;

/// SUBACKs (and the UNSUBACKs behind them) waiting for other shards.
#[derive(Debug, Default)]
pub(super) struct HeldReplies {
    /// In the order they were held, which is the order their syncs answer in.
    held: VecDeque<Held>,
    next_ticket: u64,
}

#[derive(Debug)]
struct Held {
    ticket: u64,
    conn: ConnId,
    client_id: ByteString,
    /// The reply and what follows it (retained messages after a SUBACK).
    packets: Vec<Packet>,
    /// Other shards' answers still to come.
    left: usize,
}

impl Broker {
    /// Sends `packets`, a reply to `client` and what follows it: at once,
    /// unless `sync` (the request told other shards of a new filter) or a
    /// reply of the same connection is held already.
    pub(super) fn reply(
        &mut self,
        client: &Client,
        packets: Vec<Packet>,
        sync: bool,
        now: Instant,
    ) {
        let sync = sync && self.nr_shards > 1;
        let behind = self.replies.held.iter().any(|h| h.conn == client.conn);
        if !sync && !behind {
            self.send_reply(client.conn, client.client_id(), packets, now);
            return;
        }
        let replies = &mut self.replies;
        replies.next_ticket += 1;
        let ticket = replies.next_ticket;
        replies.held.push_back(Held {
            ticket,
            conn: client.conn,
            client_id: client.client_id().clone(),
            packets,
            left: if sync { self.nr_shards - 1 } else { 0 },
        });
        if sync {
            self.broadcast(Forward::Sync(ticket));
        } else {
            self.release_replies(now);
        }
    }

    /// Another shard has applied everything this shard sent it before the
    /// sync `ticket`.
    pub(super) fn synced(&mut self, ticket: u64, now: Instant) {
        if let Some(held) = self.replies.held.iter_mut().find(|h| h.ticket == ticket) {
            held.left = held.left.saturating_sub(1);
        }
        self.release_replies(now);
    }

    fn release_replies(&mut self, now: Instant) {
        while self.replies.held.front().is_some_and(|h| h.left == 0) {
            let Some(held) = self.replies.held.pop_front() else {
                break;
            };
            // The client may have gone meanwhile; its reply goes with it.
            if self.attached(&held.client_id, held.conn) {
                self.send_reply(held.conn, &held.client_id, held.packets, now);
            }
        }
    }

    /// Sends a reply now, or, for a session the store mirrors, once the
    /// store has its change ([`Broker::hold_reply`]): a SUBACK must not
    /// promise what a node's death could take back.
    fn send_reply(
        &mut self,
        conn: ConnId,
        client_id: &ByteString,
        packets: Vec<Packet>,
        now: Instant,
    ) {
        let stored = self.persist
            && self
                .sessions
                .get(client_id)
                .is_some_and(|e| e.generation.is_some());
        match stored {
            true => self.hold_reply(conn, client_id, packets, now),
            false => self.output(conn).packets.extend(packets),
        }
    }
}
