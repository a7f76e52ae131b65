//! The broker state of one shard, sans-IO: sessions, subscriptions, retained
//! messages and the shard index, driven by packets and cross-shard messages.
//!
//! Every session lives on the shard `shards::shard_for(client_id)` picks, so a
//! session takeover is always local to one shard: the connection layer moves a
//! connection to its owner shard right after reading CONNECT. The only traffic
//! between shards is publishes, retained updates and shard-index updates
//! ([`Forward`]).
//!
//! Methods push packets into per-connection [`Output`]s and cross-shard messages
//! into `forwards`; the connection and mesh layers drain them.

mod acks;
mod client;
mod flow;
mod forward;
mod nodes;
mod output;
mod owners;
mod publish;
mod sessions;
mod share;
mod store;
mod subacks;
mod subscribe;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

pub use client::{Client, ConnId};
pub use flow::{FORWARD_WINDOW, NODE_WINDOW};
pub use forward::Forward;
pub use output::Output;
use output::Outputs;
pub use owners::AfterClaim;
pub use publish::Closed;
use sessions::SessionTable;

use crate::acl::{AllowAll, Authorizer};
use crate::auth::{AllowAnonymous, Authenticator, Identity, Preparation, Prepared};
use crate::connection::handshake::{self, ConnectPolicy};
use crate::events::{Event, EventKind, EventSink, Events, OfflineReason};
use crate::hash::{HashMap, HashSet};
use crate::message::Message;
use crate::protocol::{Connect, LastWill, Packet, QoS, ReasonCode};
use crate::ratelimit::RateLimits;
use crate::retained::RetainedStore;
use crate::router::Router;
use crate::session::{Delivery, DropReason, Limits, Session};
use crate::stamp::Stamp;
use crate::topic::{ShardIndex, TopicName};

/// Settings the broker applies, from `[mqtt]` in the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connect: ConnectPolicy,
    pub limits: Limits,
    pub max_topic_levels: usize,
    /// The topic alias maximum announced to MQTT 5 clients.
    pub topic_alias_maximum: u16,
    /// MQTT 3 sessions resend what a connected client leaves unacknowledged this
    /// long (`retry-interval`); `None` resends only on reconnect.
    pub retry_interval: Option<Duration>,
    /// How long a congested recipient may make no progress before it stops
    /// slowing its publishers down (`stall-timeout`, [`flow`]).
    pub stall: Duration,
    /// A client with messages waiting that has made no progress (nothing
    /// written to it, nothing acknowledged) for this long is disconnected
    /// (`send-timeout`); `None`: never.
    pub send_timeout: Option<Duration>,
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub connections: u64,
    pub messages_in: [u64; 3],
    pub dropped_queue_full: u64,
    pub dropped_expired: u64,
    pub dropped_offline: u64,
    pub dropped_not_acked: u64,
    /// Larger than the client's MQTT 5 maximum packet size.
    pub dropped_too_large: u64,
    /// PUBLISH packets the ACL denied: dropped, not routed.
    pub publishes_denied: u64,
    /// PUBLISH packets over their ACL label's `[acl.rate-limit]`: dropped.
    pub publishes_rate_limited: u64,
    /// QoS 1/2 publishes whose message could not be stored
    /// (`durability = "messages"`): not acknowledged, the publisher
    /// disconnected.
    pub publishes_unstored: u64,
    /// Sessions another node claimed while this one had no lease: ended
    /// here when the lease came back.
    pub taken_while_away: u64,
    /// Deliveries another node forwarded for a session it lost to this
    /// one that found no session (it moved on again, or its CONNECT failed).
    pub forwards_lost: u64,
    /// Second copies of a message for a session that just moved here from
    /// another node, which got it both from there and from its publisher's
    /// node: dropped ([`owners`]).
    pub moved_duplicates: u64,
    /// Messages a session held here when another node took it over, handed
    /// to that node (`durability = "sessions"`).
    pub handed_over: u64,
    /// Messages routed to other nodes (one per node), and from them.
    pub routed_to_nodes: u64,
    pub routed_from_nodes: u64,
    /// Subscriptions removed because a reloaded ACL denies them.
    pub subscriptions_revoked: u64,
    /// Refused CONNECTs, indexed by [`Failure`](crate::auth::Failure) as usize.
    pub auth_failures: [u64; crate::auth::Failure::ALL.len()],
    /// PUBLISH packets handed to connection writers, by QoS (retransmissions
    /// included): what `/metrics` and `$SYS` report as sent.
    pub messages_sent: [u64; 3],
}

impl Stats {
    fn count_drops(&mut self, drops: &[(Delivery, DropReason)]) {
        for (_, reason) in drops {
            *match reason {
                DropReason::QueueFull => &mut self.dropped_queue_full,
                DropReason::Expired => &mut self.dropped_expired,
                DropReason::Offline => &mut self.dropped_offline,
                DropReason::NotAcked => &mut self.dropped_not_acked,
                DropReason::TooLarge => &mut self.dropped_too_large,
            } += 1;
        }
    }

    fn count_sent(&mut self, packets: &[Packet]) {
        for packet in packets {
            if let Packet::Publish(p) = packet {
                self.messages_sent[p.qos as usize] += 1;
            }
        }
    }
}

/// A session and what the broker keeps beside it.
struct Entry {
    session: Session,
    /// The connection currently attached, if the client is online.
    conn: Option<ConnId>,
    /// How long the session outlives its connection, in seconds as MQTT 5
    /// gives it (`u32::MAX`: for ever); see [`Entry::expiry`]. 4 bytes, not a
    /// `Duration`'s 16, as `expires_at` is a `Stamp`: every session has them
    /// (issue 15, memory per idle connection).
    expiry_secs: u32,
    /// When an offline session ends, if it does.
    expires_at: Stamp,
    /// A will waiting for its MQTT 5 will delay, published at this instant unless
    /// the client comes back first [MQTT-3.1.3-9].
    /// Boxed: most sessions never have one, and every session carries the field.
    pending_will: Option<Box<(Instant, Message)>>,
    /// Whether the connection is MQTT 3, whose unacknowledged messages are resent
    /// after `retry-interval` (MQTT 5 forbids that).
    retry: bool,
    /// Who last connected to the session, for re-checking its subscriptions
    /// when the ACL changes ([`Broker::revoke_denied`]).
    identity: Rc<Identity>,
    /// The fencing generation of the session's claim in the store, if the
    /// store mirrors it (a persistent session with a store; [`store`]).
    generation: Option<u64>,
}

impl Entry {
    fn expiry(&self) -> Duration {
        match self.expiry_secs {
            u32::MAX => Duration::MAX,
            secs => Duration::from_secs(u64::from(secs)),
        }
    }

    /// Whole seconds, a fraction rounded up; past `u32::MAX - 1` seconds
    /// (136 years) the session never expires.
    fn set_expiry(&mut self, expiry: Duration) {
        let secs = expiry
            .as_secs()
            .saturating_add(u64::from(expiry.subsec_nanos() > 0));
        self.expiry_secs = u32::try_from(secs).unwrap_or(u32::MAX);
    }
}

/// The broker state of one shard.
pub struct Broker {
    shard: usize,
    nr_shards: usize,
    settings: Settings,
    /// `settings.limits`, which every session shares.
    limits: Rc<crate::session::Limits>,
    /// Entries boxed: the table's empty slots then cost a pointer, not a session.
    sessions: SessionTable,
    router: Router,
    retained: RetainedStore,
    index: ShardIndex,
    outputs: Outputs,
    /// This shard's members of each share group, as told to every shard.
    groups: share::LocalGroups,
    /// Messages for other shards: `(shard, message)`, drained by the mesh layer.
    pub forwards: Vec<(usize, Forward)>,
    /// Serial for server-assigned client ids.
    next_assigned: u64,
    pub stats: Stats,
    /// Who may connect ([`Broker::with_auth`]).
    auth: Box<dyn Authenticator>,
    /// What a client may publish and subscribe to ([`Broker::with_acl`]).
    acl: Box<dyn Authorizer>,
    /// Publishes per second per ACL label ([`Broker::with_rate_limits`]).
    rate_limits: RateLimits,
    /// Where events go, if anywhere ([`Broker::with_events`]).
    events: Events,
    /// Who waits for whom: congested recipients, publishers' credits ([`flow`]).
    flow: flow::Flow,
    /// Whether credits came back for local connections since the last
    /// [`Broker::take_credited`]: their readers may go on.
    credited: bool,
    /// Connections taken over whose session ended with the takeover, until
    /// their reader ends: their will goes out even with a will delay
    /// ([`Broker::disconnected_because`]). Nearly always empty.
    ended_by_takeover: Vec<ConnId>,
    /// Connections closed because another node adopted their session while
    /// this one had no lease, until their reader ends: that node published
    /// their will ([`Broker::check_owner`]). Nearly always empty.
    wills_published_elsewhere: Vec<ConnId>,
    /// Whether a store mirrors sessions, routes and retained messages.
    persist: bool,
    /// Changes for the store, drained by the shard's store task ([`store`]).
    store_ops: Vec<crate::store::StoreOp>,
    /// `durability = "messages"` ([`Broker::with_stored_messages`]).
    store_messages: bool,
    /// PUBACKs and PUBRECs waiting for their messages to be stored ([`acks`]).
    acks: acks::HeldAcks,
    /// SUBACKs waiting for other shards to have their filters ([`subacks`]).
    replies: subacks::HeldReplies,
    /// While a message another shard forwarded is routed: that shard.
    routing_from: Option<usize>,
    /// In a cluster: which other nodes subscribe to what.
    node_routes: crate::cluster::routes::NodeRoutes,
    /// Messages for other nodes: `(node, message)`, drained by the links.
    pub to_nodes: Vec<(ByteString, crate::cluster::frame::Message)>,
    /// The id the next message routed to other nodes gets ([`nodes`]).
    next_message_id: crate::message::MessageId,
    /// Next pick in each share group's round-robin over nodes ([`nodes`]).
    node_group_cursors: HashMap<ByteString, u64>,
    /// In a cluster: takeovers between nodes of this shard's client ids.
    owners: owners::Owners,
    /// The lease came back after a lapse: check the sessions against the
    /// store ([`Broker::take_owner_check`]).
    owner_check: Option<bool>,
    /// The claim [`Broker::claimed`] returned for the CONNECT about to be
    /// accepted: `(client id, generation)`.
    claim: Option<(ByteString, u64)>,
    /// While the store loads (`Some`): the client ids that connected without
    /// a claim, with a session that ends with them. A stored session of the
    /// same id that loading finds later is over, not restored.
    unclaimed: Option<HashSet<ByteString>>,
    /// Whether this shard has loaded what the store held at start-up (true
    /// without a store), and how many other shards have yet to say they have
    /// ([`Forward::Loaded`]).
    self_loaded: bool,
    peers_loading: usize,
}

/// The most client ids a broker remembers as `unclaimed` while loading runs.
const MAX_UNCLAIMED: usize = 100_000;

impl Broker {
    pub fn new(shard: usize, nr_shards: usize, settings: Settings) -> Broker {
        Broker {
            shard,
            nr_shards,
            limits: Rc::new(settings.limits),
            settings,
            sessions: SessionTable::default(),
            router: Router::default(),
            retained: RetainedStore::default(),
            index: ShardIndex::new(),
            outputs: Outputs::default(),
            groups: Default::default(),
            forwards: Vec::new(),
            next_assigned: 0,
            stats: Stats::default(),
            auth: Box::new(AllowAnonymous),
            acl: Box::new(AllowAll),
            rate_limits: RateLimits::default(),
            events: Events::default(),
            flow: flow::Flow::default(),
            credited: false,
            ended_by_takeover: Vec::new(),
            wills_published_elsewhere: Vec::new(),
            persist: false,
            store_ops: Vec::new(),
            store_messages: false,
            acks: acks::HeldAcks::default(),
            replies: subacks::HeldReplies::default(),
            routing_from: None,
            node_routes: Default::default(),
            to_nodes: Vec::new(),
            next_message_id: crate::message::MessageId {
                shard: fastrand::u64(..),
                seq: 0,
            },
            node_group_cursors: HashMap::default(),
            owners: Default::default(),
            owner_check: None,
            claim: None,
            unclaimed: None,
            self_loaded: true,
            peers_loading: 0,
        }
    }

    /// Authenticates CONNECTs with `auth` instead of allowing anyone.
    pub fn with_auth(mut self, auth: Box<dyn Authenticator>) -> Broker {
        self.auth = auth;
        self
    }

    /// Authorizes publishes and subscriptions with `acl` instead of allowing all.
    pub fn with_acl(mut self, acl: Box<dyn Authorizer>) -> Broker {
        self.acl = acl;
        self
    }

    /// Drops publishes over their ACL label's rate (shared with other shards).
    pub fn with_rate_limits(mut self, limits: RateLimits) -> Broker {
        self.rate_limits = limits;
        self
    }

    /// Removes every subscription the ACL now denies to its session's client,
    /// online or not: called after the ACL file was reloaded, so a grant the
    /// new rules withdraw stops delivering. Returns how many were removed.
    pub fn revoke_denied(&mut self) -> usize {
        let mut denied = Vec::new();
        for (client_id, entry) in self.sessions.iter() {
            for (filter, _) in entry.session.subscriptions() {
                if !self.acl.subscribe(&entry.identity, filter).allow {
                    denied.push((client_id.clone(), filter.clone(), entry.conn.is_some()));
                }
            }
        }
        for (client_id, filter, online) in &denied {
            if let Some(entry) = self.sessions.get_mut(client_id) {
                entry.session.unsubscribe(filter);
                let generation = entry.generation;
                self.store_subscription(client_id, generation, filter, None);
            }
            self.drop_subscription(client_id, filter, *online);
        }
        self.stats.subscriptions_revoked += denied.len() as u64;
        denied.len()
    }

    /// Emits events to `sink` (none by default).
    pub fn with_events(mut self, sink: Box<dyn EventSink>) -> Broker {
        self.events = Events::new(sink);
        self
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Sessions held, online or not.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Retained topics, replicated on every shard.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// A client id for a client that sent none: unique per shard and node start,
    /// and owned by this shard (`shards::shard_for`), so the session can stay here.
    pub fn assign_client_id(&mut self) -> ByteString {
        loop {
            self.next_assigned += 1;
            let id = format!("shardmq-{}-{}", self.shard, self.next_assigned);
            if shards::shard_for(id.as_bytes(), self.nr_shards) == self.shard {
                return ByteString::from(id);
            }
        }
    }

    /// Subscriptions held on this shard, a share-group member counting once.
    pub fn subscription_count(&self) -> usize {
        self.router.len()
    }

    /// Whether `client_id` has a session on this shard with a connection attached.
    pub fn is_connected(&self, client_id: &str) -> bool {
        self.sessions
            .get(client_id)
            .is_some_and(|e| e.conn.is_some())
    }

    /// Messages waiting in session queues, and messages in flight, summed over
    /// the shard's sessions. Walks every session: for periodic metrics only.
    pub fn queue_depths(&self) -> (usize, usize) {
        self.sessions
            .values()
            .fold((0, 0), |(queued, inflight), e| {
                (
                    queued + e.session.queued(),
                    inflight + e.session.inflight().len(),
                )
            })
    }

    /// Publishes a message the broker itself produces (`$SYS/...`) through the
    /// normal routing path: QoS 0, not retained, no publisher.
    pub fn publish_sys(&mut self, topic: TopicName, payload: Bytes, now: Instant) {
        let message = Message {
            topic,
            payload,
            qos: QoS::AtMostOnce,
            retain: false,
            properties: None,
            publisher: ByteString::new(),
            expires_at: None,
            id: None,
        };
        self.publish_message(message, now);
    }

    /// Packets queued for `conn`, and whether it must close. Empty if nothing.
    pub fn take_output(&mut self, conn: ConnId) -> Output {
        let output = self.outputs.take(conn);
        self.stats.count_sent(&output.packets);
        output
    }

    /// [`Broker::take_output`] by the connection's writer, which takes output
    /// only once its previous write has finished. Output to write is progress,
    /// which ends a congestion the recipient has drained and frees the
    /// publishers waiting; an empty one is not (a QoS 1 subscriber with a full
    /// window that acknowledges nothing makes none, however often its writer
    /// is woken).
    pub fn take_output_at(&mut self, conn: ConnId, now: Instant) -> Output {
        let output = self.take_output(conn);
        if !output.packets.is_empty() {
            self.progressed(conn, now);
        }
        output
    }

    /// `conn` made progress (took output, acknowledged): if it was congested
    /// and no longer is, the credits it held go back.
    fn progressed(&mut self, conn: ConnId, now: Instant) {
        let Some(client) = self.flow.progress(conn, now) else {
            return;
        };
        let queued = self.sessions.get(client).map_or(0, |e| e.session.queued());
        let limit = self.settings.limits.max_online_messages;
        if !publish::congested(self.outputs.backlog(conn), queued, limit) {
            self.flow.drained(conn);
            self.flush_credits();
        }
    }

    /// Whether `conn` has forwarded a whole window of publishes to other shards
    /// that have not credited them back: its reader waits ([`flow`]).
    pub fn out_of_credit(&self, conn: ConnId) -> bool {
        self.flow.out_of_credit(conn)
    }

    /// Whether credits came back for local connections since the last call.
    pub fn take_credited(&mut self) -> bool {
        std::mem::take(&mut self.credited)
    }

    /// Whether recipient `conn` was congested and has made no progress for
    /// `stall-timeout`: its publishers no longer wait for it.
    pub fn is_stalled(&self, conn: ConnId, now: Instant) -> bool {
        self.flow.is_stalled(conn, now, self.settings.stall)
    }

    /// Moves the credits owed to other shards into `forwards`, and those
    /// owed to other nodes into `to_nodes`. Call before draining them.
    pub fn flush_credits(&mut self) {
        self.flush_credits_to(false);
    }

    /// [`Broker::flush_credits`]; `all`: not only those due, or for shards
    /// other traffic goes to anyway ([`flow`]).
    fn flush_credits_to(&mut self, all: bool) {
        let forwards = &self.forwards;
        let credits = self
            .flow
            .take_credits(|shard| all || forwards.iter().any(|(to, _)| *to == shard));
        for (shard, credits) in credits {
            if shard == self.shard {
                // A relay's, for a congested recipient here ([`flow`]).
                for (conn, n) in credits {
                    self.flow.credited(conn, n);
                }
            } else {
                self.forwards.push((shard, Forward::Credit(credits)));
            }
        }
        let to_nodes = &self.to_nodes;
        let credits = self
            .flow
            .take_node_credits(|node| all || to_nodes.iter().any(|(to, _)| to == node));
        for c in credits {
            let credit = crate::cluster::frame::Message::Credit {
                shard: c.shard,
                credits: c.credits,
            };
            self.to_nodes.push((c.node, credit));
        }
    }

    /// Closes `conn` with `reason` (a client whose write is stuck).
    pub fn close_connection(&mut self, conn: ConnId, reason: ReasonCode) {
        self.outputs.close(conn, reason);
    }

    /// A connected recipient that routing found past half its bound (unwritten
    /// QoS 0 packets, or QoS 1/2 messages queued behind its inflight window)
    /// since the last call. The I/O layer stops reading the publisher until
    /// [`Broker::is_congested`] clears, so a fast publisher is slowed to its
    /// subscriber's pace instead of making it drop or overflow.
    pub fn take_congested(&mut self) -> Option<(ConnId, ByteString)> {
        self.outputs.take_congested()
    }

    /// Whether `client`, connected as `conn`, is still past half its bound.
    pub fn is_congested(&self, conn: ConnId, client: &ByteString) -> bool {
        let limit = self.settings.limits.max_online_messages;
        let queued = self
            .sessions
            .get(client)
            .filter(|e| e.conn == Some(conn))
            .map_or(0, |e| e.session.queued());
        publish::congested(self.outputs.backlog(conn), queued, limit)
    }

    /// Connections that got output since the last call: wake their writers.
    pub fn drain_dirty(&mut self) -> impl Iterator<Item = ConnId> + '_ {
        self.outputs.drain_dirty()
    }

    /// Connections told to close since the last call: interrupt their writers,
    /// which may be stuck on a client that does not read.
    pub fn take_closing(&mut self) -> Vec<ConnId> {
        self.outputs.take_closing()
    }

    /// The reason `conn` was told to close, if it was and has not taken it yet.
    pub fn closing_reason(&self, conn: ConnId) -> Option<ReasonCode> {
        self.outputs.close_reason(conn)
    }

    /// Tells every connected client to close with `reason` (shutdown).
    pub fn close_all(&mut self, reason: ReasonCode) {
        let conns: Vec<ConnId> = self.sessions.values().filter_map(|e| e.conn).collect();
        for conn in conns {
            self.outputs.close(conn, reason);
        }
    }

    /// Whether `conn` has anything waiting.
    pub fn has_output(&self, conn: ConnId) -> bool {
        self.outputs.contains(conn)
    }

    fn output(&mut self, conn: ConnId) -> &mut Output {
        self.outputs.to(conn)
    }

    /// The slow part of authenticating `connect`, if any, for the caller to
    /// run off the shard's thread before [`Broker::connect_from`]
    /// ([`Authenticator::prepare`]).
    pub fn prepare_auth(&self, connect: &Connect) -> Option<Preparation> {
        self.auth.prepare(connect)
    }

    /// Hands what a [`Broker::prepare_auth`] job found to the authenticator.
    /// Call it right before [`Broker::connect_from`], with no await between.
    pub fn absorb_auth(&self, prepared: Prepared) {
        self.auth.absorb(prepared);
    }

    /// [`Broker::connect_from`] without a peer address (tests).
    #[cfg(test)]
    pub(crate) fn connect(
        &mut self,
        conn: ConnId,
        connect: &Connect,
        now: Instant,
    ) -> Result<Client, ReasonCode> {
        self.connect_from(conn, connect, None, now)
    }

    /// Accepts or refuses `connect` on connection `conn`. On success the CONNACK
    /// is queued on `conn` followed by anything the resumed session resends; on
    /// refusal the reason is returned (see [`handshake::refusal`]) and no
    /// session has changed.
    ///
    /// The authenticator decides once the handshake has accepted the packet.
    ///
    /// A session of the same client id that is online is taken over: its
    /// connection is told to close with "session taken over" [MQTT-3.1.4-3],
    /// and its will is published as for any other close (MQTT 5 3.1.4 step 1),
    /// when that connection's reader ends ([`Broker::disconnected_because`]).
    /// The old session ends here if the new CONNECT starts clean or if the
    /// old one was to last only as long as its connection (session expiry 0,
    /// MQTT 3 clean session 1) [MQTT-3.1.2-6]. A will waiting for its delay
    /// is then published; otherwise coming back cancels it [MQTT-3.1.3-9].
    ///
    /// `peer`, the client's address, stays with its identity for
    /// `on_register` and `on_register_failed`.
    pub fn connect_from(
        &mut self,
        conn: ConnId,
        connect: &Connect,
        peer: Option<std::net::SocketAddr>,
        now: Instant,
    ) -> Result<Client, ReasonCode> {
        let policy = self.settings.connect.clone();
        let accepted = handshake::accept(connect, &policy, || self.assign_client_id())
            .map_err(|reason| (reason, None))
            .and_then(
                |accepted| match self.auth.authenticate(connect, &accepted.client_id) {
                    Ok(identity) => Ok((accepted, identity)),
                    Err(failure) => Err((failure.reason_code(), Some(failure))),
                },
            );
        let (accepted, identity) = match accepted {
            Ok(a) => a,
            Err((reason, failure)) => {
                if let Some(f) = failure {
                    self.stats.auth_failures[f as usize] += 1;
                }
                self.events
                    .emit(EventKind::RegisterFailed, || Event::RegisterFailed {
                        client_id: &connect.client_id,
                        username: connect.username.as_ref(),
                        clean_start: connect.clean_start,
                        reason,
                        failure,
                        peer,
                    });
                return Err(reason);
            }
        };
        // Copied out of the CONNECT: a slice would keep the whole packet (a
        // token in its password, say) as long as the session lives.
        let identity = Rc::new(Identity {
            // The key the session is kept under, which the client's
            // `client_id()` is.
            client_id: ByteString::from(&*accepted.client_id),
            ..identity
        });
        // Borrowed, not cloned: a copy that is never shared needs no shared
        // header (32 bytes per connection).
        let holder = identity.clone();
        let client_id = &holder.client_id;

        let mut session_present = false;
        // Whether the session's shared subscriptions count as online already.
        let mut was_online = false;
        let generation = self.claim_for(client_id);
        if let (Some(unclaimed), None) = (&mut self.unclaimed, generation) {
            // Bounded: loading can wait long for a Redis that is down. Past
            // the bound, a clean return no longer ends its stored session,
            // which then lives on until its expiry.
            if unclaimed.len() < MAX_UNCLAIMED {
                unclaimed.insert(client_id.clone());
            }
        }
        if let Some(old) = self.sessions.get_mut(client_id) {
            let ends = connect.clean_start || old.expiry_secs == 0;
            if ends && generation.is_some() {
                // The claim has already emptied the stored session.
                old.generation = None;
            }
            if let Some(old_conn) = old.conn.take() {
                self.outputs.close(old_conn, ReasonCode::SessionTakenOver);
                was_online = true;
                if ends {
                    self.ended_by_takeover.push(old_conn);
                }
            }
            // A will still waiting for its delay goes out if the session ends
            // [MQTT-3.1.2-8]; coming back to the session cancels it.
            let pending = old.pending_will.take().filter(|_| ends);
            if ends {
                if was_online {
                    self.count_online(client_id, -1);
                    was_online = false;
                }
                self.end_session(client_id, now);
            } else {
                session_present = true;
            }
            if let Some(pending) = pending {
                self.publish_message(pending.1, now);
            }
        }
        let limits = &self.limits;
        let entry = self.sessions.get_or_insert_with(client_id, || {
            Box::new(Entry {
                session: Session::new(limits.clone()),
                conn: None,
                expiry_secs: 0,
                expires_at: Stamp::NONE,
                pending_will: None,
                retry: false,
                identity: identity.clone(),
                generation: None,
            })
        });
        entry.identity = identity.clone();
        if generation.is_some() {
            entry.generation = generation;
        }
        let generation = entry.generation;
        entry.conn = Some(conn);
        entry.retry = !connect.version.is_v5();
        entry.set_expiry(accepted.session_expiry);
        entry.expires_at = Stamp::NONE;

        let mut connack = handshake::connack(&accepted, session_present, &policy);
        connack.properties.topic_alias_maximum =
            Some(self.settings.topic_alias_maximum).filter(|&m| m > 0);
        let mut packets = vec![Packet::ConnAck(connack)];
        let receive_maximum = connect.properties.receive_maximum;
        entry
            .session
            .set_max_packet_size(connect.properties.maximum_packet_size, connect.version);
        let drops = entry.session.connect(receive_maximum, now, &mut packets);
        store::journal(client_id, entry, None, &mut self.store_ops);
        self.stats.count_drops(&drops);
        self.stats.connections += 1;
        self.events.emit(EventKind::Register, || Event::Register {
            who: &identity,
            peer,
            clean_start: connect.clean_start,
            session_present,
            user_properties: &connect.properties.user_properties,
        });
        if session_present {
            self.events
                .emit(EventKind::ClientWakeUp, || Event::ClientWakeUp {
                    who: &identity,
                });
        }
        self.events.dropped(client_id, &drops);
        self.events.delivered(&identity, &packets);
        self.output(conn).packets.extend(packets);
        if !was_online {
            self.count_online(client_id, 1);
        }
        let client = Client::new(conn, identity, connect, &accepted);
        if let Some(generation) = generation {
            self.store_online(&client, generation, accepted.session_expiry, now);
        }
        Ok(client)
    }

    /// [`Broker::disconnected_because`] with an unspecified reason (tests).
    #[cfg(test)]
    pub(crate) fn disconnected(
        &mut self,
        client: &Client,
        will: Option<Box<LastWill>>,
        now: Instant,
    ) {
        self.disconnected_because(client, will, OfflineReason::Unspecified, now);
    }

    /// The connection of `client` is gone. `will` is the will it connected
    /// with, whatever happened (`client.will`): the broker decides from
    /// `reason` whether it goes out. Only a normal DISCONNECT (reason 0x00 in
    /// MQTT 5) deletes it [MQTT-3.1.2-10]; any other end publishes it
    /// (MQTT 3.1.1 [MQTT-3.1.2-8], MQTT 5 3.1.2.5): a network failure, a
    /// keepalive timeout, a protocol error, a close by the broker (send-timeout,
    /// shutdown, takeover), or DISCONNECT 0x04. An MQTT 5 will delay holds it
    /// back until the delay or the session ends [MQTT-3.1.3-9].
    /// `reason`, why the connection ended, also goes to `on_client_offline`.
    pub fn disconnected_because(
        &mut self,
        client: &Client,
        will: Option<Box<LastWill>>,
        reason: OfflineReason,
        now: Instant,
    ) {
        self.outputs.take(client.conn);
        self.flow.closed(client.conn);
        let will = will.filter(|_| reason != OfflineReason::NormalDisconnect);
        let owner = self.sessions.get(client.client_id()).and_then(|e| e.conn);
        if owner != Some(client.conn) {
            self.taken_over(client, will, now);
            return;
        }
        let Some(entry) = self.sessions.get_mut(client.client_id()) else {
            return;
        };
        entry.conn = None;
        let drops = entry.session.disconnect();
        self.stats.count_drops(&drops);
        self.events.dropped(client.client_id(), &drops);
        self.events
            .emit(EventKind::ClientOffline, || Event::ClientOffline {
                who: &client.identity,
                reason,
            });
        let will = will.map(|w| (w.properties.will_delay_interval.unwrap_or(0), w));
        let expiry = entry.expiry();
        match will {
            Some((0, w)) => {
                let message = client.will_message(&w, now);
                self.publish_message(message, now);
            }
            Some((delay, w)) => {
                // The will goes out at the will delay or when the session ends,
                // whichever comes first [MQTT-3.1.3-9].
                let at = now + Duration::from_secs(u64::from(delay)).min(expiry);
                entry.pending_will = Some(Box::new((at, client.will_message(&w, now))));
            }
            None => {}
        }
        self.count_online(client.client_id(), -1);
        let Some(entry) = self.sessions.get_mut(client.client_id()) else {
            return;
        };
        if expiry == Duration::ZERO && entry.pending_will.is_none() {
            self.end_session(client.client_id(), now);
            return;
        }
        if expiry != Duration::MAX {
            entry.expires_at = Stamp::at(now + expiry);
        }
        if let Some(generation) = entry.generation {
            let will = entry.pending_will.as_deref().cloned();
            self.store_offline(client.client_id(), generation, expiry, will.as_ref(), now);
        }
    }

    /// The connection of `client` ended after another connection took its
    /// session over ([`Broker::connect_from`]). Its will goes out now, unless a
    /// will delay runs and the session lives on with the new connection,
    /// which came back within the delay [MQTT-3.1.3-9]. MQTT 5 3.1.4 step 1:
    /// "If the Will Delay Interval of the existing Network Connection is 0 and
    /// there is a Will Message, it will be sent because the Network Connection
    /// is closed. If the Session Expiry Interval of the existing Network
    /// Connection is 0, or the new Network Connection has Clean Start set to 1
    /// then if the existing Network Connection has a Will Message it will be
    /// sent because the original Session is ended on the takeover."
    fn taken_over(&mut self, client: &Client, will: Option<Box<LastWill>>, now: Instant) {
        if let Some(i) = self
            .wills_published_elsewhere
            .iter()
            .position(|&c| c == client.conn)
        {
            self.wills_published_elsewhere.swap_remove(i);
            return;
        }
        let ended = match self
            .ended_by_takeover
            .iter()
            .position(|&c| c == client.conn)
        {
            Some(i) => {
                self.ended_by_takeover.swap_remove(i);
                true
            }
            None => false,
        };
        let Some(will) = will else {
            return;
        };
        if ended || will.properties.will_delay_interval.unwrap_or(0) == 0 {
            let message = client.will_message(&will, now);
            self.publish_message(message, now);
        }
    }

    /// Publishes delayed wills, ends expired sessions, and frees the publishers
    /// held up by recipients that stalled. Call about once a second.
    pub fn tick(&mut self, now: Instant) {
        self.flow.release_stalled(now, self.settings.stall);
        self.flow.forget_idle_relays();
        // Credits not due yet go back at the latest now.
        self.flush_credits_to(true);
        if self.acks.holding() {
            self.nodes_lost(None, now);
        }
        self.expire_taken(now);
        if let Some(timeout) = self.settings.send_timeout {
            for conn in self.flow.stalled_for(now, timeout) {
                self.outputs.close(conn, ReasonCode::QuotaExceeded);
            }
        }
        let mut wills = Vec::new();
        let mut expired = Vec::new();
        for entry in self.sessions.values_mut() {
            let identity = entry.identity.clone();
            let id = &identity.client_id;
            if let (Some(conn), true, Some(interval)) =
                (entry.conn, entry.retry, self.settings.retry_interval)
            {
                let mut packets = Vec::new();
                let drops = entry.session.retry(now, interval, &mut packets);
                store::journal(id, entry, None, &mut self.store_ops);
                self.stats.count_drops(&drops);
                self.events.dropped(id, &drops);
                self.events.delivered(&entry.identity, &packets);
                if !packets.is_empty() {
                    self.outputs.to(conn).packets.extend(packets);
                }
            }
            if let Some(pending) = &entry.pending_will {
                if pending.0 <= now {
                    wills.extend(entry.pending_will.take().map(|p| (id.clone(), p.1)));
                }
            }
            if entry.conn.is_none() && entry.expires_at.reached(now) {
                // The store expires the session's keys by itself at about the
                // same time; the removal also takes the session out of the
                // node's set.
                expired.push(id.clone());
            }
        }
        for (id, message) in wills {
            let generation = self.sessions.get(&id).and_then(|e| e.generation);
            self.store_will_gone(&id, generation);
            self.publish_message(message, now);
        }
        for id in expired {
            self.events
                .emit(EventKind::SessionExpired, || Event::SessionExpired {
                    client_id: &id,
                });
            self.end_session(&id, now);
        }
    }

    /// Removes a session and its subscriptions. What it got through share
    /// groups and the client has not received goes to another member of each
    /// group ([`Broker::hand_over`]), once the session has left the groups.
    fn end_session(&mut self, client_id: &ByteString, now: Instant) {
        let Some(mut entry) = self.sessions.remove(client_id) else {
            return;
        };
        self.store_removed(client_id, entry.generation);
        self.events
            .emit(EventKind::ClientGone, || Event::ClientGone {
                client_id,
                username: entry.identity.username.as_deref(),
            });
        let filters: Vec<_> = entry
            .session
            .subscriptions()
            .map(|(f, _)| f.clone())
            .collect();
        let online = entry.conn.is_some();
        for filter in filters {
            self.drop_subscription(client_id, &filter, online);
        }
        self.hand_over(entry.session.take_shared(), now);
    }
}

#[cfg(test)]
mod acks_tests;
#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod mutant_tests;
#[cfg(test)]
mod nodes_tests;
#[cfg(test)]
mod owners_sim;
#[cfg(test)]
mod seam_tests;
#[cfg(test)]
mod share_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
pub(crate) mod tests;
