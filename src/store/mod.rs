//! What a shard asks of durable state, and where that state lives.
//!
//! The broker itself stays sans-IO and in memory: every shard keeps its
//! sessions, subscriptions and retained messages in its own maps, and routes
//! every PUBLISH from them. A store only mirrors what must survive the node:
//! - the broker pushes [`StoreOp`]s (session written, subscription added,
//!   will gone, retained set) into `Broker::store_ops`, as it pushes
//!   `forwards`; the shard's store task writes them, pipelined, and no packet
//!   waits for them;
//! - a CONNECT of a persistent session [claims](redis_store::RedisStore::claim) it first: the
//!   only round trip on the client's path, which also returns what the
//!   session held when this node does not have it in memory (after a
//!   restart);
//! - at start-up, each shard loads in the background the sessions its node
//!   owned and the retained messages.
//!
//! Two kinds: `memory` (the default: nothing is written, a claim is
//! immediate, a restart forgets) and `redis` ([`redis_store`]).

pub mod layout;
pub mod load;
pub mod record;
pub mod redis;
pub mod redis_store;

#[cfg(test)]
mod layout_tests;

use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;

use crate::message::Message;
use crate::protocol::PacketId;
use crate::session::{Delivery, StoredState, Subscription};
use crate::topic::TopicFilter;

pub use redis::{RedisUrl, UrlError};

/// This node's name in the store: `[cluster] node-id`, or the host name and
/// the first MQTT listener's port, which stay the same across restarts.
pub fn node_id(config: &crate::config::Config) -> String {
    if !config.cluster.node_id.is_empty() {
        return config.cluster.node_id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.listeners.first().map_or(0, |l| l.bind.port());
    format!("{host}:{port}")
}

/// Who owns a session: a node, in one of its lives. The boot id makes a
/// restarted node a different owner from its past incarnation, so it can
/// tell what that incarnation left behind (and publish its clients' wills).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub node: String,
    pub boot: u64,
}

impl Owner {
    /// `node#boot`, as stored.
    pub fn to_field(&self) -> String {
        format!("{}#{:x}", self.node, self.boot)
    }

    /// Reads `node#boot` back; `None` if it is not one.
    pub fn from_field(field: &str) -> Option<Owner> {
        let (node, boot) = field.rsplit_once('#')?;
        Some(Owner {
            node: node.to_owned(),
            boot: u64::from_str_radix(boot, 16).ok()?,
        })
    }

    /// The prefix every incarnation of this node's owner field has.
    pub fn node_prefix(&self) -> String {
        format!("{}#", self.node)
    }
}

/// A persistent session as the store had it when it was claimed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredSession {
    /// How long the session outlives its connection.
    pub expiry: Duration,
    /// If it is offline with an expiry running: what is left of it, by the
    /// store's own clock (never a wall clock of another machine).
    pub expires_in: Option<Duration>,
    pub subscriptions: Vec<(TopicFilter, Subscription)>,
    /// With `durability = "messages"`: the deliveries it held, in order,
    /// and how far each had got.
    pub queued: Vec<(Delivery, StoredState)>,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The session's new fencing generation: every later write carries it,
    /// and the store refuses it once another claim has taken a newer one.
    pub generation: u64,
    /// The owner before this claim, if the session was stored.
    pub previous: Option<String>,
    /// The session, if it was stored (`None`: a new session).
    pub session: Option<StoredSession>,
    /// A will left by a previous owner that is gone (this node's past life):
    /// its client's connection died with it, so the will goes out now, once.
    /// The claim took it out of the store.
    pub orphan_will: Option<(u32, Message)>,
}

/// A change to mirror into the store. Session ops carry the generation their
/// claim returned; the store refuses one that is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// A persistent session is online: its expiry, and its will (encoded by
    /// [`record::encode_will`]) in case this node dies with it.
    Online {
        client_id: ByteString,
        generation: u64,
        expiry: Duration,
        will: Option<Bytes>,
    },
    /// Its connection is gone: the session's keys expire after `expiry`
    /// (`None`: never). `will`: a will still waiting for its delay, kept;
    /// otherwise any stored will is deleted (published or cancelled).
    Offline {
        client_id: ByteString,
        generation: u64,
        expiry: Option<Duration>,
        will: Option<Bytes>,
    },
    /// The session's will went out or was cancelled while it stays online.
    WillGone {
        client_id: ByteString,
        generation: u64,
    },
    Subscribe {
        client_id: ByteString,
        generation: u64,
        filter: ByteString,
        subscription: Bytes,
    },
    Unsubscribe {
        client_id: ByteString,
        generation: u64,
        filter: ByteString,
    },
    /// The session ended: every key of it goes.
    Remove {
        client_id: ByteString,
        generation: u64,
    },
    /// With `durability = "messages"`: a QoS 1/2 delivery entered the
    /// session (queued, or sent under `packet_id`) as number `stored`
    /// ([`crate::session::Delivery::stored`]), encoded by
    /// [`record::encode_delivery`].
    Queue {
        client_id: ByteString,
        generation: u64,
        stored: u64,
        delivery: Bytes,
        packet_id: Option<PacketId>,
        /// The shard the message was published on: if this write fails, its
        /// next barrier says so ([`crate::broker::Broker::seal_acks`]).
        origin: usize,
    },
    /// A queued delivery was sent under `packet_id`.
    Sent {
        client_id: ByteString,
        generation: u64,
        stored: u64,
        packet_id: PacketId,
    },
    /// A QoS 2 delivery's PUBREC came: the client has it.
    Released {
        client_id: ByteString,
        generation: u64,
        stored: u64,
    },
    /// A delivery left the session: acknowledged, dropped or handed over.
    Trim {
        client_id: ByteString,
        generation: u64,
        stored: u64,
    },
    /// A topic's retained message (encoded by [`record::encode_message`]), or
    /// `None` to clear it. `expiry`: its MQTT 5 message expiry.
    Retain {
        topic: ByteString,
        message: Option<Bytes>,
        expiry: Option<Duration>,
    },
    /// A filter gained its first subscriber on this shard, or lost its last.
    Route { filter: ByteString, added: bool },
}
