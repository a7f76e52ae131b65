//! One owner per client id across a cluster, on the shard its id maps to.
//!
//! Redis settles ownership: every CONNECT in a cluster claims the id (clean
//! sessions too), each claim raises the session's generation and names the
//! owner before it. A claim after another claim tells every live node
//! ([`NodeMessage::Takeover`]) and waits for their answers
//! ([`NodeMessage::HandOverDone`]), or their deaths, before the CONNACK, so
//! two connections of one id never overlap (a seeded simulation drives this
//! code: `owners_sim`); a second CONNECT of the id on
//! this shard meanwhile gets "server busy". The node taken over:
//! - closes its client's connection with 0x8E, and answers;
//! - remembers the takeover's generation a while, so that a claim of its
//!   own that Redis ordered before it, and that answers late, is refused
//!   (concurrent CONNECTs on several nodes leave exactly one connection);
//! - keeps a persistent session taken over for [`LINGER`] and forwards what
//!   still reaches it to the new owner ([`NodeMessage::Deliver`]): other
//!   nodes route to it until their route index learns of the new owner
//!   through the feed. Dropped at once, the session would take those
//!   messages and lose them (the loss EMQX fixed in PR 6393). The new owner
//!   keeps what arrives before its CONNECT is through, and delivers it
//!   after. Nodes that have learned of the new owner route to both
//!   meanwhile, so the new owner may get a message twice: every message
//!   that goes to other nodes carries an id ([`MessageId`]), and for
//!   [`ARRIVALS`] after a claim from another node the new owner keeps the
//!   ids its session got, and drops a second copy ([`Arrivals`]).
//!   A publisher's PUBACK waits for the new owner too when the
//!   message is forwarded from the shard it was published on or routed to
//!   from another node (not when it came from another shard of this node:
//!   that barrier waits for the store only).
//!
//! What the session held when it was taken over: with `durability =
//! "messages"` it is in Redis, which the claim reads. With `durability =
//! "sessions"` only the old owner's memory has the messages: it sends them,
//! each with how far it got with the client, before its answer, on the
//! link the forwards take after, and the new owner restores them into the
//! session with the claim (sent ones go out again with DUP). The sans-IO
//! machine in [`crate::cluster::takeover`], which the seeded simulation
//! runs, does the same hand-over with its own messages; the server does not
//! use it.

use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::{Broker, Forward};
use crate::cluster::frame::Message as NodeMessage;
use crate::hash::{HashMap, HashSet};
use crate::message::MessageId;
use crate::protocol::ReasonCode;
use crate::session::{Delivery, StoredState};
use crate::store::Owner;

/// How long a persistent session taken over by another node stays here,
/// fenced, before it is dropped.
/// Long enough for every node's route index to learn of the new owner (the
/// feed is polled every 50 ms), short because the nodes that know route to
/// both meanwhile, and the new owner gets those messages twice.
pub const LINGER: Duration = Duration::from_secs(2);
/// How long the new owner of a session taken from another node drops
/// second copies: the old owner's [`LINGER`], and as long again for what it
/// forwarded at its end to cross the link.
pub const ARRIVALS: Duration = Duration::from_secs(4);
/// The most message ids kept for one session moved here; past it, a second
/// copy may reach the client (as a duplicate without DUP, not a loss).
const MAX_ARRIVALS: usize = 100_000;
/// How long a takeover's generation is remembered.
const REMEMBER: Duration = Duration::from_secs(60);
/// The most deliveries kept for one client id whose CONNECT is not through.
const MAX_EARLY: usize = 10_000;

/// Which messages each session claimed from another node got in its first
/// [`ARRIVALS`] here: a message routed to both the old and the new owner
/// reaches it twice, once forwarded by the old one ([`NodeMessage::Deliver`])
/// and once from its publisher's node, in either order.
#[derive(Debug, Default)]
pub(super) struct Arrivals(HashMap<ByteString, (Instant, HashSet<(MessageId, bool)>)>);

impl Arrivals {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `delivery` is the first copy of its message for `client`.
    /// A message may go to one session twice legitimately, through a share
    /// group and a plain subscription: the two are told apart.
    pub(super) fn first_arrival(&mut self, client: &ByteString, delivery: &Delivery) -> bool {
        let (Some(id), Some((_, seen))) = (delivery.message.id, self.0.get_mut(client)) else {
            return true;
        };
        let key = (id, delivery.share_group.is_some());
        if seen.len() >= MAX_ARRIVALS {
            return !seen.contains(&key);
        }
        seen.insert(key)
    }

    fn start(&mut self, client: &ByteString, now: Instant) {
        self.0
            .insert(client.clone(), (now + ARRIVALS, HashSet::default()));
    }

    fn expire(&mut self, now: Instant) {
        self.0.retain(|_, (until, _)| *until > now);
    }
}

/// A delivery another node forwarded ([`NodeMessage::Deliver`]): as stored,
/// its message's id, and how far it got with the client there.
type Forwarded = (bytes::Bytes, Option<MessageId>, StoredState);

/// What a CONNECT does once its claim is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterClaim {
    Accept,
    /// A newer claim took the id already: refuse with this reason.
    Refuse(ReasonCode),
    /// Wait for `node`'s answer to the takeover sent to it.
    Wait,
}

#[derive(Debug, Default)]
pub(super) struct Owners {
    /// Client ids whose CONNECT is claiming or waiting here.
    busy: HashSet<ByteString>,
    /// The newest generation other nodes took each id at, and until when
    /// it is remembered.
    taken: HashMap<ByteString, (u64, Instant)>,
    /// CONNECTs waiting for a takeover's answer: id -> (generation, the
    /// nodes that have not answered).
    waiting: HashMap<ByteString, (u64, Vec<ByteString>)>,
    /// Persistent sessions taken over, dropped at the instant given.
    lingering: Vec<(ByteString, u64, Instant)>,
    /// Where what reaches a lingering session goes: the node that took it,
    /// and its claim's generation.
    pub(super) moved: HashMap<ByteString, (ByteString, u64)>,
    /// Deliveries forwarded here by the node this shard took a session
    /// from, before the CONNECT that claimed it was through: by client id,
    /// the claim's generation and the encoded deliveries.
    early: HashMap<ByteString, (u64, Vec<Forwarded>)>,
    /// Sessions this shard claimed from another node a moment ago.
    pub(super) arrivals: Arrivals,
    /// Client ids whose last claim here waited and was not answered by
    /// every node: its CONNECT timed out or went away, but the session may
    /// be held here all the same ([`Broker::claim_replied`],
    /// [`Broker::claim_refused`]) while a connection elsewhere lives until
    /// the takeovers arrive. The next claim here tells every node again.
    unanswered: HashSet<ByteString>,
    /// A wait ended since [`Broker::take_handovers_ended`].
    ended: bool,
}

impl Broker {
    /// A CONNECT of `client_id` starts claiming; `false` (answer "server
    /// busy") while another one of it claims or waits here.
    pub fn begin_claim(&mut self, client_id: &ByteString) -> bool {
        self.owners.busy.insert(client_id.clone())
    }

    /// The CONNECT that [`Broker::begin_claim`] let through is done waiting.
    pub fn end_claim(&mut self, client_id: &ByteString) {
        self.owners.busy.remove(client_id);
        self.owners.waiting.remove(client_id);
    }

    /// The claim of a CONNECT came back at `generation`, after `previous`
    /// (`node#boot`, as stored). `me`: this node's life; `alive`: whether a
    /// life of another node is alive.
    pub fn after_claim(
        &mut self,
        client_id: &ByteString,
        generation: u64,
        previous: Option<&str>,
        me: &Owner,
        peers: &[Owner],
        now: Instant,
    ) -> AfterClaim {
        let newer = self.taken_at(client_id) > generation;
        // Every live node hears of a claim after another claim, not only
        // the node named before it: that node may have died between its own
        // claim and telling its predecessor, which then still holds a
        // connection; or, if it is this node, its claim may have timed out
        // with its takeovers still on their way (three chains found by
        // `owners_sim`). Only a claim after this node's own, whose session
        // is here and not taken since, and whose takeovers were all
        // answered, needs nobody (seed 2491: one that timed out left a
        // connection on the node its takeover had not reached yet).
        let answered = !self.owners.unanswered.remove(client_id);
        let held_here = answered
            && self
                .sessions
                .get(client_id)
                .is_some_and(|e| e.generation.is_some() && !self.is_taken(client_id, e.generation));
        let told: Vec<ByteString> = match previous.and_then(Owner::from_field) {
            Some(p) if p == *me && held_here => Vec::new(),
            Some(_) => peers.iter().map(|p| p.node.as_str().into()).collect(),
            None => Vec::new(),
        };
        // Told even when a newer claim makes this one lose: the chain of
        // claims must reach every connection (a connection the predecessor
        // accepts later would otherwise hear of no claim).
        self.tell_claim(client_id, generation, me, &told);
        if !told.is_empty() && !newer {
            self.owners
                .waiting
                .insert(client_id.clone(), (generation, told));
            self.owners.unanswered.insert(client_id.clone());
            self.owners.arrivals.start(client_id, now);
            return AfterClaim::Wait;
        }
        match newer {
            true => AfterClaim::Refuse(ReasonCode::ServerBusy),
            false => AfterClaim::Accept,
        }
    }

    /// This shard adopted `client_id` at `generation` from a dead life
    /// (reaping): every live node hears of it, as of a claim after a dead
    /// predecessor, whose connection of the id (if that life claimed it and
    /// died before telling) ends. Nobody waits for the answers.
    pub fn adopted_from_dead(
        &mut self,
        client_id: &ByteString,
        generation: u64,
        me: &Owner,
        peers: &[Owner],
    ) {
        let nodes: Vec<ByteString> = peers.iter().map(|p| p.node.as_str().into()).collect();
        self.tell_claim(client_id, generation, me, &nodes);
    }

    fn tell_claim(
        &mut self,
        client_id: &ByteString,
        generation: u64,
        me: &Owner,
        nodes: &[ByteString],
    ) {
        for node in nodes {
            let takeover = NodeMessage::Takeover {
                client_id: client_id.to_string(),
                generation,
                new_owner: me.clone(),
            };
            self.to_nodes.push((node.clone(), takeover));
        }
    }

    /// Whether the CONNECT of `client_id` still waits for a takeover's
    /// answer.
    pub fn awaits_handover(&self, client_id: &ByteString) -> bool {
        self.owners.waiting.contains_key(client_id)
    }

    /// Whether a wait ended since the last call: the waiting CONNECTs look.
    pub fn take_handovers_ended(&mut self) -> bool {
        std::mem::take(&mut self.owners.ended)
    }

    /// The newest generation another node took `client_id` at, if any.
    fn taken_at(&self, client_id: &ByteString) -> u64 {
        self.owners.taken.get(client_id).map_or(0, |(g, _)| *g)
    }

    /// Whether a newer claim elsewhere took the session that `generation`
    /// held here.
    pub(super) fn is_taken(&self, client_id: &ByteString, generation: Option<u64>) -> bool {
        self.taken_at(client_id) > generation.unwrap_or(0)
    }

    /// A takeover or hand-over message for a client id: handled on the shard
    /// the id maps to.
    pub(super) fn ownership_message(
        &mut self,
        from: &ByteString,
        message: NodeMessage,
        now: Instant,
    ) {
        let client_id = match &message {
            NodeMessage::Takeover { client_id, .. }
            | NodeMessage::HandOverDone { client_id, .. }
            | NodeMessage::Deliver { client_id, .. } => client_id.as_str(),
            _ => return,
        };
        let shard = shards::shard_for(client_id.as_bytes(), self.nr_shards);
        if shard != self.shard {
            self.forwards
                .push((shard, Forward::FromNode(from.clone(), message)));
            return;
        }
        match message {
            NodeMessage::Takeover {
                client_id,
                generation,
                ..
            } => self.taken_by_node(from, client_id.into(), generation, now),
            NodeMessage::HandOverDone {
                client_id,
                generation,
            } => {
                let client_id = ByteString::from(client_id);
                if let Some((g, nodes)) = self.owners.waiting.get_mut(&client_id) {
                    if *g == generation {
                        nodes.retain(|n| n != from);
                        if nodes.is_empty() {
                            self.owners.waiting.remove(&client_id);
                            self.owners.unanswered.remove(&client_id);
                            self.owners.ended = true;
                        }
                    }
                }
            }
            NodeMessage::Deliver {
                client_id,
                generation,
                delivery,
                id,
                state,
            } => self.moved_here(client_id.into(), generation, (delivery, id, state), now),
            _ => {}
        }
    }

    /// `from` claimed `client_id` at `generation`: a connection here with an
    /// older claim is closed (0x8E), and `from` is told once it is.
    fn taken_by_node(
        &mut self,
        from: &ByteString,
        client_id: ByteString,
        generation: u64,
        now: Instant,
    ) {
        let held = self
            .sessions
            .get(&client_id)
            .map(|e| (e.generation, e.conn));
        // Remembered only where it may matter: a session here, or a claim
        // of this node's in progress whose reply may come after this (every
        // live node hears of a takeover; most hold nothing of the id).
        let concerned = held.is_some() || self.owners.busy.contains(&client_id);
        if concerned && self.taken_at(&client_id) < generation {
            self.owners
                .taken
                .insert(client_id.clone(), (generation, now + REMEMBER));
        }
        if let Some((held, conn)) = held {
            if held.unwrap_or(0) < generation {
                if let Some(conn) = conn {
                    self.outputs.close(conn, ReasonCode::SessionTakenOver);
                }
                if let Some(held) = held {
                    self.hand_over_held(from, &client_id, generation, now);
                    self.owners
                        .lingering
                        .push((client_id.clone(), held, now + LINGER));
                    self.owners
                        .moved
                        .insert(client_id.clone(), (from.clone(), generation));
                }
            }
        }
        let done = NodeMessage::HandOverDone {
            client_id: client_id.to_string(),
            generation,
        };
        self.to_nodes.push((from.clone(), done));
    }

    /// With `durability = "sessions"`, where only this node's memory holds
    /// a session's messages: sends `to`, which claimed `client_id` at
    /// `generation`, what the session held, before the answer that lets
    /// its CONNECT through. (With stored messages the claim read them.)
    fn hand_over_held(
        &mut self,
        to: &ByteString,
        client_id: &ByteString,
        generation: u64,
        now: Instant,
    ) {
        if self.store_messages {
            return;
        }
        let Some(entry) = self.sessions.get_mut(client_id) else {
            return;
        };
        for (delivery, state) in entry.session.take_held() {
            let deliver = NodeMessage::Deliver {
                client_id: client_id.to_string(),
                generation,
                delivery: crate::store::record::encode_delivery(&delivery, now),
                id: delivery.message.id,
                state,
            };
            self.to_nodes.push((to.clone(), deliver));
            self.stats.handed_over += 1;
        }
    }

    /// A delivery the node this shard took `client_id` from forwarded: into
    /// the session if the claim at `generation` is through, else kept until
    /// it is ([`Broker::deliver_early`]).
    fn moved_here(
        &mut self,
        client_id: ByteString,
        generation: u64,
        delivery: Forwarded,
        now: Instant,
    ) {
        let held = self.sessions.get(&client_id).and_then(|e| e.generation);
        match held {
            Some(g) if g == generation => self.deliver_forwarded(&client_id, delivery, now),
            Some(g) if g > generation => {
                self.stats.forwards_lost += 1;
                self.acks_unstored();
            }
            _ => {
                self.acks_unstored();
                let early = self
                    .owners
                    .early
                    .entry(client_id)
                    .or_insert_with(|| (generation, Vec::new()));
                if early.0 == generation && early.1.len() < MAX_EARLY {
                    early.1.push(delivery);
                } else {
                    self.stats.forwards_lost += 1;
                }
            }
        }
    }

    /// Delivers what was forwarded for `client_id` before its CONNECT was
    /// through. Call once it is.
    pub fn deliver_early(&mut self, client_id: &ByteString, now: Instant) {
        let Some((generation, deliveries)) = self.owners.early.remove(client_id) else {
            return;
        };
        let held = self.sessions.get(client_id).and_then(|e| e.generation);
        if held != Some(generation) {
            self.stats.forwards_lost += deliveries.len() as u64;
            return;
        }
        for d in deliveries {
            self.deliver_forwarded(client_id, d, now);
        }
    }

    fn deliver_forwarded(&mut self, client_id: &ByteString, forwarded: Forwarded, now: Instant) {
        let Some((delivery, _)) = self.decode_forwarded(client_id, forwarded, now) else {
            return;
        };
        self.with_recipients(now, |_, sessions| {
            crate::router::Recipients::deliver(sessions, client_id, delivery)
        });
    }

    fn decode_forwarded(
        &mut self,
        client_id: &ByteString,
        (bytes, id, state): Forwarded,
        now: Instant,
    ) -> Option<(Delivery, StoredState)> {
        match crate::store::record::decode_delivery(&bytes, 0, now) {
            Ok(mut delivery) => {
                delivery.stored = None;
                delivery.message.id = id;
                Some((delivery, state))
            }
            Err(e) => {
                tracing::warn!(client = %client_id, error = %e, "a delivery forwarded by another node cannot be read: dropped");
                self.stats.forwards_lost += 1;
                None
            }
        }
    }

    /// With `durability = "sessions"`: what the node this shard claimed
    /// `client_id` from at `generation` handed over and forwarded so far, in
    /// order, to restore into the session with how far each got (sent ones
    /// go out again with DUP). With stored messages the claim read them from
    /// the store, and what was forwarded is delivered after the CONNECT
    /// ([`Broker::deliver_early`]).
    pub(super) fn take_handed_over(
        &mut self,
        client_id: &ByteString,
        generation: u64,
        now: Instant,
    ) -> Vec<(Delivery, StoredState)> {
        if self.store_messages {
            return Vec::new();
        }
        let Some((g, forwarded)) = self.owners.early.remove(client_id) else {
            return Vec::new();
        };
        if g != generation {
            self.stats.forwards_lost += forwarded.len() as u64;
            return Vec::new();
        }
        let held: Vec<_> = forwarded
            .into_iter()
            .filter_map(|f| self.decode_forwarded(client_id, f, now))
            .collect();
        for (delivery, _) in &held {
            self.owners.arrivals.first_arrival(client_id, delivery);
        }
        held
    }

    /// `node` died: CONNECTs waiting for its answer go on once no other
    /// node's is missing (its connections died with it).
    pub(super) fn owners_node_died(&mut self, node: &str) {
        let owners = &mut self.owners;
        owners.waiting.retain(|id, (_, nodes)| {
            nodes.retain(|n| n != node);
            if nodes.is_empty() {
                owners.unanswered.remove(id);
                owners.ended = true;
            }
            !nodes.is_empty()
        });
    }

    /// Drops the sessions taken over whose linger is over, and forgets old
    /// takeovers. Call about once a second.
    pub(super) fn expire_taken(&mut self, now: Instant) {
        self.owners.taken.retain(|_, (_, until)| *until > now);
        self.owners.arrivals.expire(now);
        let sessions = &self.sessions;
        self.owners
            .unanswered
            .retain(|id| sessions.contains_key(id));
        // Forwarded for a CONNECT that never got through.
        let waiting = &self.owners.busy;
        self.owners.early.retain(|id, _| waiting.contains(id));
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.owners.lingering)
            .into_iter()
            .partition(|(_, _, at)| *at <= now);
        self.owners.lingering = keep;
        for (client_id, generation, _) in due {
            // Unless the client came back here since, under a newer claim.
            let stale = self
                .sessions
                .get(&client_id)
                .is_some_and(|e| e.generation == Some(generation) && e.conn.is_none());
            self.owners.moved.remove(&client_id);
            if stale {
                if let Some(entry) = self.sessions.get_mut(&client_id) {
                    // The store is the new owner's: nothing is written for it.
                    entry.generation = None;
                }
                self.end_session(&client_id, now);
            }
        }
    }
}
