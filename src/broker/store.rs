//! What the broker tells its store ([`crate::store`]), and what it takes from
//! it: persistent sessions claimed, restored after a restart, and retained
//! messages loaded.
//!
//! Nothing here waits: changes are pushed into `store_ops` for the shard's
//! store task, and only when the broker runs with a store (`persist`). A
//! session mirrored in the store has the generation of its claim; one with
//! none (a clean session, or no store) is never written.

use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use super::{Broker, Client, Entry, Forward, HashSet};
use crate::message::Message;
use crate::session::{Session, Stored, Subscription};
use crate::stamp::Stamp;
use crate::store::{record, Claim, StoreOp, StoredSession};
use crate::topic::TopicFilter;

impl Broker {
    /// Mirrors persistent sessions, routes and retained messages into
    /// `store_ops` from now on.
    pub fn with_store(mut self) -> Broker {
        self.persist = true;
        self.unclaimed = Some(HashSet::default());
        self.self_loaded = false;
        self.peers_loading = self.nr_shards - 1;
        self
    }

    /// This shard's loading is over: no stored session of a past life is
    /// adopted any more. The other shards are told after the shard-index
    /// updates of what was loaded, on the same FIFO channels, so a shard
    /// that has heard from every other one routes with a complete index.
    pub fn loaded(&mut self) {
        self.unclaimed = None;
        self.self_loaded = true;
        self.broadcast(super::Forward::Loaded);
    }

    /// Whether this shard and every other one have loaded: until then a
    /// publish could miss a session, or a subscriber a retained message,
    /// that loading has not brought in yet.
    pub fn all_loaded(&self) -> bool {
        self.self_loaded && self.peers_loading == 0
    }

    /// With `durability = "messages"`: every QoS 1/2 delivery to a stored
    /// session is written too, and a publisher's PUBACK or PUBREC waits
    /// until every shard that got its message has stored it
    /// ([`super::acks`]).
    pub fn with_stored_messages(mut self) -> Broker {
        self.store_messages = true;
        self
    }

    /// Whether a store mirrors this broker's state.
    pub fn persists(&self) -> bool {
        self.persist
    }

    /// The changes for the store since the last call.
    pub fn take_store_ops(&mut self) -> Vec<StoreOp> {
        std::mem::take(&mut self.store_ops)
    }

    /// A claim for the CONNECT of `client_id` came back: call right before
    /// [`Broker::connect_from`], with no await between. A stored session this
    /// shard does not hold (the node restarted) is restored offline first, so
    /// the CONNECT resumes it; a will a dead owner left goes out.
    ///
    /// `false` when a later claim of the same session already connected here
    /// (two CONNECTs raced and this one's task resumed last): this CONNECT
    /// lost, and must be refused rather than take the session back with a
    /// generation the store no longer accepts.
    pub fn claimed(&mut self, client_id: &ByteString, claim: Claim, now: Instant) -> bool {
        let newer = self
            .sessions
            .get(client_id)
            .and_then(|e| e.generation)
            .is_some_and(|g| g > claim.generation);
        if newer || self.is_taken(client_id, Some(claim.generation)) {
            return false;
        }
        // A session another node took over, still lingering here: the claim
        // brings what the store has, which is newer.
        let lingering = self
            .sessions
            .get(client_id)
            .is_some_and(|e| e.conn.is_none() && self.is_taken(client_id, e.generation));
        if lingering {
            if let Some(entry) = self.sessions.get_mut(client_id) {
                entry.generation = None;
            }
            self.owners.moved.remove(client_id);
            self.end_session(client_id, now);
        }
        let mut claim = claim;
        if let Some(session) = claim.session.as_mut() {
            let handed_over = self.take_handed_over(client_id, claim.generation, now);
            session.queued.extend(handed_over);
        }
        self.claim = Some((client_id.clone(), claim.generation));
        self.take_claim(client_id, claim, now);
        true
    }

    /// In a cluster, with `durability = "messages"`: the claim of a CONNECT
    /// came back, and the CONNECT may now wait for the node that held the
    /// session. The session the claim read is restored offline here at
    /// once, so what is published to it meanwhile is queued and stored: the
    /// store names this node the owner already, and a dead previous owner's
    /// routes may be gone. [`Broker::claimed`] then finds it here. Call
    /// right after [`Broker::after_claim`], which must see the node as it
    /// was before.
    pub fn claim_replied(&mut self, client_id: &ByteString, claim: &mut Claim, now: Instant) {
        if !self.store_messages
            || self.sessions.contains_key(client_id)
            || self.is_taken(client_id, Some(claim.generation))
        {
            return;
        }
        if let Some(stored) = claim.session.take() {
            self.restore(client_id, stored, claim.generation, now);
        }
    }

    /// A CONNECT whose claim ran is refused all the same: the node that held
    /// the session did not let go in time. The store names this node the
    /// owner now, and no other node routes to the session any more, so it
    /// is kept here offline, as an adoption would (it goes on receiving,
    /// and what the old owner hands over late joins it). Without this, the
    /// session would belong to no one until its client came back.
    pub fn claim_refused(&mut self, client_id: &ByteString, claim: Claim, now: Instant) {
        let generation = claim.generation;
        if !self.claimed(client_id, claim, now) {
            return;
        }
        self.claim = None;
        if let Some(entry) = self.sessions.get_mut(client_id) {
            if entry.conn.is_none() {
                entry.generation = Some(generation);
            }
        }
        self.deliver_early(client_id, now);
    }

    /// A session a past life of this node owned, found at start-up: restored
    /// offline unless a client already connected to it. Returns the will the
    /// dead connection left, for [`Broker::publish_orphan_will`] once every
    /// shard has loaded its sessions (published now, it would miss the
    /// subscribers not loaded yet), with the generation to delete it from the
    /// store under once published.
    pub fn adopted(
        &mut self,
        client_id: &ByteString,
        mut claim: Claim,
        now: Instant,
    ) -> Option<(Message, Option<u64>)> {
        let generation = claim.generation;
        let will = claim.orphan_will.take().map(|(_, will)| will);
        // The client came back without a claim (a session that ends with
        // its connection) before loading got here: the stored session is
        // over, whether that connection is still up or not.
        if self
            .unclaimed
            .as_ref()
            .is_some_and(|u| u.contains(client_id))
        {
            // The removal takes the will out of the store with the session.
            self.store_removed(client_id, Some(generation));
            return will.map(|w| (w, None));
        }
        self.take_claim(client_id, claim, now);
        if let Some(entry) = self.sessions.get_mut(client_id) {
            // Restored offline (the adoption kept the keys' TTL running).
            if entry.conn.is_none() {
                entry.generation = Some(generation);
            }
        }
        will.map(|w| (w, Some(generation)))
    }

    /// Publishes the will of a connection that died with a past life of this
    /// node, then deletes it from the store under `generation` (refused, and
    /// so kept, if a newer claim took the session meanwhile). Its delay is
    /// not waited for: the delay ran while the node was down.
    pub fn publish_orphan_will(
        &mut self,
        client_id: &ByteString,
        will: Message,
        generation: Option<u64>,
        now: Instant,
    ) {
        self.publish_message(will, now);
        self.store_will_gone(client_id, generation);
    }

    fn take_claim(&mut self, client_id: &ByteString, claim: Claim, now: Instant) {
        if let Some((_, will)) = claim.orphan_will {
            self.publish_message(will, now);
        }
        if let Some(stored) = claim.session {
            if !self.sessions.contains_key(client_id) {
                self.restore(client_id, stored, claim.generation, now);
            }
        }
    }

    /// Creates an offline session from what the store held.
    fn restore(
        &mut self,
        client_id: &ByteString,
        stored: StoredSession,
        generation: u64,
        now: Instant,
    ) {
        // Who connected last is not stored: the client's next CONNECT says it.
        let identity = std::rc::Rc::new(crate::auth::Identity {
            username: None,
            client_id: client_id.clone(),
            claims: None,
        });
        let mut entry = Box::new(Entry {
            session: Session::new(self.limits.clone()),
            conn: None,
            expiry_secs: 0,
            // No TTL was running when the session was online as its
            // node died: its expiry runs from now.
            expires_at: match stored.expires_in {
                Some(left) => Stamp::at(now + left),
                None => now
                    .checked_add(stored.expiry)
                    .map_or(Stamp::NONE, Stamp::at),
            },
            pending_will: None,
            retry: false,
            identity,
            // None while the subscriptions attach: they are in the store
            // already and are not written again, but the routes they add
            // are (start-up emptied the node's route sets).
            generation: None,
        });
        entry.set_expiry(stored.expiry);
        self.sessions.insert(entry);
        for (filter, sub) in stored.subscriptions {
            self.attach_subscription(client_id, &filter, sub, false);
        }
        if let Some(entry) = self.sessions.get_mut(client_id) {
            entry.generation = Some(generation);
            entry.session.restore_stored(stored.queued, now);
        }
    }

    /// The node's lease is back after a lapse (Redis restarted empty, or
    /// the node was cut off or paused for a lease): here and on every other
    /// shard, the route set is written again and the sessions are checked
    /// against the store ([`Broker::take_owner_check`]).
    pub fn rejoined_everywhere(&mut self, lost: bool) {
        self.rejoined(lost);
        self.broadcast(Forward::Rejoined(lost));
    }

    pub(super) fn rejoined(&mut self, lost: bool) {
        self.rewrite_routes();
        self.owner_check = Some(lost);
    }

    /// After a lapse of the lease, once: the sessions to check against the
    /// store, `(client id, generation)`, and whether Redis had lost the
    /// node's registration (then a session missing from the store was lost
    /// with it, not taken).
    pub fn take_owner_check(&mut self) -> Option<(Vec<(ByteString, u64)>, bool)> {
        let lost = self.owner_check.take()?;
        let owners = self
            .sessions
            .iter()
            .filter_map(|(id, e)| Some((id.clone(), e.generation?)))
            .collect();
        Some((owners, lost))
    }

    /// The store's generation of `client_id` is `current` (`None`: the
    /// session is gone from it, which means taken, and ended, by the node
    /// that adopted it, unless Redis `lost` everything): if a claim
    /// elsewhere took the session while this node had no lease, its client
    /// here is disconnected (MQTT 5: 0x8E) and the session ends here,
    /// writing nothing (the store is the new owner's).
    pub fn check_owner(
        &mut self,
        client_id: &ByteString,
        held: u64,
        current: Option<u64>,
        lost: bool,
    ) {
        let Some(entry) = self.sessions.get_mut(client_id) else {
            return;
        };
        let taken = match current {
            Some(current) => current > held,
            None => !lost,
        };
        if entry.generation != Some(held) || !taken {
            return;
        }
        entry.generation = None;
        if let Some(conn) = entry.conn {
            // Its will is not published when the connection ends: the node
            // that adopted the session published it.
            self.outputs
                .close(conn, crate::protocol::ReasonCode::SessionTakenOver);
            self.wills_published_elsewhere.push(conn);
            self.count_online(client_id, -1);
        }
        self.end_session(client_id, Instant::now());
        self.stats.taken_while_away += 1;
    }

    pub(super) fn rewrite_routes(&mut self) {
        let mut filters: Vec<TopicFilter> = self
            .sessions
            .values()
            .flat_map(|e| e.session.subscriptions().map(|(f, _)| f.clone()))
            .collect();
        filters.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        filters.dedup();
        for filter in filters {
            self.store_route(&filter, true);
        }
    }

    /// The generation a [`Broker::claimed`] left for this CONNECT, if any.
    pub(super) fn claim_for(&mut self, client_id: &ByteString) -> Option<u64> {
        self.claim
            .take()
            .filter(|(id, _)| id == client_id)
            .map(|(_, generation)| generation)
    }

    fn store(&mut self, op: StoreOp) {
        if self.persist {
            self.store_ops.push(op);
        }
    }

    /// The session of `client` is online with this connection.
    pub(super) fn store_online(
        &mut self,
        client: &Client,
        generation: u64,
        expiry: Duration,
        now: Instant,
    ) {
        let will = client.will.as_deref().map(|w| {
            let delay = w.properties.will_delay_interval.unwrap_or(0);
            record::encode_will(delay, &client.will_message(w, now), now)
        });
        self.store(StoreOp::Online {
            client_id: client.client_id().clone(),
            generation,
            expiry,
            will,
        });
    }

    /// The session `client_id` lost its connection and lives on for `expiry`,
    /// with `will` waiting for its delay, if any.
    pub(super) fn store_offline(
        &mut self,
        client_id: &ByteString,
        generation: u64,
        expiry: Duration,
        will: Option<&(Instant, Message)>,
        now: Instant,
    ) {
        let will = will.map(|(at, message)| {
            let delay = at.saturating_duration_since(now).as_secs();
            record::encode_will(u32::try_from(delay).unwrap_or(u32::MAX), message, now)
        });
        self.store(StoreOp::Offline {
            client_id: client_id.clone(),
            generation,
            expiry: (expiry != Duration::MAX).then_some(expiry),
            will,
        });
    }

    pub(super) fn store_will_gone(&mut self, client_id: &ByteString, generation: Option<u64>) {
        if let Some(generation) = generation {
            self.store(StoreOp::WillGone {
                client_id: client_id.clone(),
                generation,
            });
        }
    }

    pub(super) fn store_removed(&mut self, client_id: &ByteString, generation: Option<u64>) {
        if let Some(generation) = generation {
            self.store(StoreOp::Remove {
                client_id: client_id.clone(),
                generation,
            });
        }
    }

    /// A subscription of `client_id` set (`Some`) or removed.
    pub(super) fn store_subscription(
        &mut self,
        client_id: &ByteString,
        generation: Option<u64>,
        filter: &TopicFilter,
        sub: Option<&Subscription>,
    ) {
        let Some(generation) = generation else {
            return;
        };
        let client_id = client_id.clone();
        let filter = filter.as_bytestring().clone();
        self.store(match sub {
            Some(sub) => StoreOp::Subscribe {
                client_id,
                generation,
                filter,
                subscription: record::encode_subscription(sub),
            },
            None => StoreOp::Unsubscribe {
                client_id,
                generation,
                filter,
            },
        });
    }

    pub(super) fn store_route(&mut self, filter: &TopicFilter, added: bool) {
        self.store(StoreOp::Route {
            filter: filter.as_bytestring().clone(),
            added,
        });
    }

    /// A retained message set on this shard (not one another shard told it of).
    pub(super) fn store_retained(&mut self, message: &Message, now: Instant) {
        let topic = ByteString::from(&*message.topic);
        let kept = !message.payload.is_empty();
        self.store(StoreOp::Retain {
            topic,
            message: kept.then(|| record::encode_message(message, now)),
            expiry: message
                .expires_at
                .filter(|_| kept)
                .map(|at| at.saturating_duration_since(now)),
        });
    }

    /// A retained message loaded from the store at start-up: kept here and on
    /// every shard, without writing it back.
    pub fn load_retained(&mut self, message: Message) {
        self.retained.set(&message);
        self.broadcast(super::Forward::Retain(message));
    }
}

/// Turns what `entry`'s session journaled ([`Stored`]) into store ops, and
/// `queued`, a delivery just handed to it (its number and record), into the
/// op that stores it: with the packet id it was sent under, if it was, and
/// not at all if the session dropped it at once. A session the store does
/// not mirror (no generation) writes nothing. `queued` carries the shard
/// its message was published on.
pub(super) fn journal(
    client_id: &ByteString,
    entry: &mut Entry,
    queued: Option<(u64, Bytes, usize)>,
    ops: &mut Vec<StoreOp>,
) {
    let mut journal = entry.session.take_journal();
    let Some(generation) = entry.generation else {
        return;
    };
    if let Some((stored, delivery, origin)) = queued {
        let this =
            |j: &Stored| matches!(*j, Stored::Sent(n, _) | Stored::Trimmed(n) if n == stored);
        let dropped = journal.contains(&Stored::Trimmed(stored));
        let packet_id = journal.iter().find_map(|j| match *j {
            Stored::Sent(n, id) if n == stored => Some(id),
            _ => None,
        });
        journal.retain(|j| !this(j));
        if !dropped {
            ops.push(StoreOp::Queue {
                client_id: client_id.clone(),
                generation,
                stored,
                delivery,
                packet_id,
                origin,
            });
        }
    }
    ops.extend(journal.into_iter().map(|j| match j {
        Stored::Sent(stored, packet_id) => StoreOp::Sent {
            client_id: client_id.clone(),
            generation,
            stored,
            packet_id,
        },
        Stored::Released(stored) => StoreOp::Released {
            client_id: client_id.clone(),
            generation,
            stored,
        },
        Stored::Trimmed(stored) => StoreOp::Trim {
            client_id: client_id.clone(),
            generation,
            stored,
        },
    }));
}
