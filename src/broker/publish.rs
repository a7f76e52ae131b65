//! Packets from a connected client, and routing what they publish.

use std::time::Instant;

use crate::hash::HashMap;

use bytestring::ByteString;

use super::flow::Flow;
use super::{Broker, Client, ConnId, Forward, Outputs, SessionTable, Stats};
use crate::events::{Event, EventKind, Events};
use crate::message::Message;
use crate::protocol::{Ack, Packet, PacketId, Publish, QoS, ReasonCode};
use crate::router::{Recipients, Router};
use crate::session::{Delivery, DropReason, OutState, Session};
use crate::store::{record, StoreOp};
use crate::topic::ShardMask;

/// How a DISCONNECT from the client ended the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Normal disconnection (0x00): the will is discarded [MQTT-3.14.4-3].
    Normal,
    /// An MQTT 5 DISCONNECT with any other reason, such as 0x04 "disconnect
    /// with will message" or 0x80: the will is published, since only 0x00
    /// deletes it [MQTT-3.1.2-8].
    WithWill(ReasonCode),
}

impl Broker {
    /// Handles one packet from a connected client. `Ok(Some(_))` when the client
    /// sent DISCONNECT; `Err(reason)` when it broke the protocol and must be
    /// disconnected with that reason.
    pub fn handle(
        &mut self,
        client: &mut Client,
        packet: Packet,
        now: Instant,
    ) -> Result<Option<Closed>, ReasonCode> {
        match packet {
            Packet::Publish(publish) => self.publish(client, publish, now)?,
            Packet::PubAck(ack) => {
                self.delivery_complete(client, ack.packet_id, OutState::AwaitingPubAck);
                self.session_ack(client, now, |s, out| s.puback(ack.packet_id, now, out))
            }
            Packet::PubRec(ack) => {
                let failed = ack.reason_code.is_error();
                self.delivery_complete(client, ack.packet_id, OutState::AwaitingPubRec);
                self.session_ack(client, now, |s, out| {
                    s.pubrec(ack.packet_id, failed, now, out)
                })
            }
            Packet::PubComp(ack) => {
                self.session_ack(client, now, |s, out| s.pubcomp(ack.packet_id, now, out))
            }
            Packet::PubRel(ack) => {
                let known = self
                    .sessions
                    .get_mut(client.client_id())
                    .is_some_and(|e| e.session.release_qos2(ack.packet_id));
                let mut comp = Ack::new(ack.packet_id);
                if !known {
                    comp.reason_code = ReasonCode::PacketIdentifierNotFound;
                }
                self.output(client.conn).packets.push(Packet::PubComp(comp));
            }
            Packet::Subscribe(subscribe) => self.subscribe(client, subscribe, now),
            Packet::Unsubscribe(unsubscribe) => self.unsubscribe(client, unsubscribe, now),
            Packet::PingReq => self.output(client.conn).packets.push(Packet::PingResp),
            Packet::Disconnect(d) => {
                if let (Some(expiry), Some(entry)) = (
                    d.properties.session_expiry_interval,
                    self.sessions.get_mut(client.client_id()),
                ) {
                    // Setting an expiry on DISCONNECT when CONNECT had none is a
                    // protocol error [MQTT-3.14.2-2].
                    if entry.expiry_secs == 0 && expiry != 0 {
                        return Err(ReasonCode::ProtocolError);
                    }
                    entry.expiry_secs = expiry;
                }
                return Ok(Some(match d.reason_code {
                    ReasonCode::Success => Closed::Normal,
                    code => Closed::WithWill(code),
                }));
            }
            // A second CONNECT is a protocol error [MQTT-3.1.0-2].
            Packet::Connect(_) => return Err(ReasonCode::ProtocolError),
            // Extended authentication is not offered, and AUTH from a client that
            // did not start it is a protocol error (4.12). (0x8C, bad
            // authentication method, is a CONNACK reason, not a DISCONNECT one.)
            Packet::Auth(_) => return Err(ReasonCode::ProtocolError),
            // Server-to-client packets.
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                return Err(ReasonCode::ProtocolError)
            }
        }
        Ok(None)
    }

    /// Runs an acknowledgement through the session and sends what it releases.
    /// `on_delivery_complete`: the client acknowledged (PUBACK, or PUBREC for
    /// QoS 2) the in-flight message `packet_id`, if one awaits exactly that.
    /// Looked up only when a sink wants the hook.
    fn delivery_complete(&mut self, client: &Client, packet_id: PacketId, awaiting: OutState) {
        if !self.events.wants(EventKind::DeliveryComplete) {
            return;
        }
        let Some(entry) = self.sessions.get(client.client_id()) else {
            return;
        };
        let acked = entry
            .session
            .inflight()
            .iter()
            .find(|e| e.packet_id == packet_id && e.state == awaiting);
        if let Some(acked) = acked {
            let d = &acked.delivery;
            self.events
                .emit(EventKind::DeliveryComplete, || Event::DeliveryComplete {
                    who: &client.identity,
                    topic: &d.message.topic,
                    qos: d.qos,
                    retain: d.retain,
                    payload: &d.message.payload,
                });
        }
    }

    /// An acknowledgement is progress for flow control: it may end the
    /// client's congestion ([`super::flow`]).
    fn session_ack(
        &mut self,
        client: &Client,
        now: Instant,
        ack: impl FnOnce(&mut Session, &mut Vec<Packet>) -> (bool, Vec<(Delivery, DropReason)>),
    ) {
        let Some(entry) = self.sessions.get_mut(client.client_id()) else {
            return;
        };
        let mut packets = Vec::new();
        let (_known, drops) = ack(&mut entry.session, &mut packets);
        super::store::journal(client.client_id(), entry, None, &mut self.store_ops);
        self.stats.count_drops(&drops);
        self.events.dropped(client.client_id(), &drops);
        self.events.delivered(&client.identity, &packets);
        if !packets.is_empty() {
            self.output(client.conn).packets.extend(packets);
        }
        self.progressed(client.conn, now);
    }

    /// An inbound PUBLISH: resolve its topic alias, ask the ACL, acknowledge
    /// it, route it. A denied PUBLISH is acknowledged (MQTT 5 QoS 1/2 with
    /// reason 0x87) and dropped.
    fn publish(
        &mut self,
        client: &mut Client,
        mut publish: Publish,
        now: Instant,
    ) -> Result<(), ReasonCode> {
        if let Some(alias) = publish.properties.topic_alias {
            if alias > self.settings.topic_alias_maximum {
                return Err(ReasonCode::TopicAliasInvalid);
            }
            if publish.topic.is_alias_only() {
                publish.topic = client
                    .aliases
                    .as_ref()
                    .and_then(|aliases| aliases.get(&alias))
                    .cloned()
                    .ok_or(ReasonCode::ProtocolError)?;
            } else {
                let aliases = client.aliases.get_or_insert_default();
                aliases.insert(alias, publish.topic.detached());
            }
        }
        if publish.topic.levels().count() > self.settings.max_topic_levels {
            return Err(ReasonCode::TopicNameInvalid);
        }
        self.stats.messages_in[publish.qos as usize] += 1;
        let decision = self.acl.publish(&client.identity, &publish.topic);
        // Why the publish is dropped, if it is: the ACL, or its label's rate.
        let refusal = if !decision.allow {
            self.stats.publishes_denied += 1;
            Some(ReasonCode::NotAuthorized)
        } else if !self.rate_limits.admit(decision.label.as_deref(), now) {
            self.stats.publishes_rate_limited += 1;
            // 0x96 is a DISCONNECT reason only (not valid in PUBACK/PUBREC):
            // an MQTT 5 client over its label's rate is told so and closed;
            // MQTT 3 has no way to tell, so its publish is dropped quietly.
            if client.version.is_v5() {
                return Err(ReasonCode::MessageRateTooHigh);
            }
            Some(ReasonCode::MessageRateTooHigh)
        } else {
            None
        };
        let allow = refusal.is_none();
        // MQTT 5 tells the publisher; MQTT 3 has no way to, so gets a plain ack.
        let ack = |id| {
            let mut ack = Ack::new(id);
            if let Some(reason) = refusal.filter(|_| client.version.is_v5()) {
                ack.reason_code = reason;
            }
            ack
        };
        let (route, mut held) = match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => (allow, Some(Packet::PubAck(ack(id)))),
            (QoS::ExactlyOnce, Some(id)) => {
                let Some(entry) = self.sessions.get_mut(client.client_id()) else {
                    return Ok(());
                };
                let ack = ack(id);
                // A PUBREC with an error reason ends the exchange (MQTT 5
                // section 4.3.3); otherwise the packet id waits for PUBREL,
                // even when denied (MQTT 3).
                let new = !ack.reason_code.is_error() && entry.session.receive_qos2(id);
                if entry.session.pending_qos2() > usize::from(self.settings.connect.receive_maximum)
                {
                    return Err(ReasonCode::ReceiveMaximumExceeded);
                }
                (new && allow, Some(Packet::PubRec(ack)))
            }
            _ => (allow, None),
        };
        // Without stored messages, the acknowledgement goes first, as the
        // message is the broker's already, unless it may go to other nodes
        // (then it is the broker's once they have it, [`super::acks`]), or
        // acknowledgements held before it must go first.
        let hold = self.store_messages
            || self.routes_to_nodes()
            || self.acks.holding()
            || !self.owners.moved.is_empty();
        if let Some(ack) = held.take_if(|_| !hold) {
            self.output(client.conn).packets.push(ack);
        }
        let mut routed = (ShardMask::default(), Vec::new());
        if route {
            self.events.emit(EventKind::Publish, || Event::Publish {
                who: &client.identity,
                topic: &publish.topic,
                qos: publish.qos,
                retain: publish.retain,
                payload: &publish.payload,
                label: decision.label.as_deref(),
                pattern: decision.pattern.as_deref(),
            });
            let message = Message::from_publish(&publish, client.client_id(), now);
            routed = self.route_message(message, Some(client.conn), now);
        }
        if let Some(ack) = held {
            let (shards, nodes) = routed;
            // (`waits_for_nodes`: it went to a session another node took.)
            if self.store_messages
                || !nodes.is_empty()
                || self.acks.holding()
                || self.acks.waits_for_nodes()
            {
                let shards = if self.store_messages {
                    shards
                } else {
                    ShardMask::default()
                };
                self.hold_ack(client.conn, client.client_id(), ack, shards, nodes, now);
            } else {
                self.output(client.conn).packets.push(ack);
            }
        }
        Ok(())
    }

    /// Routes a message the broker itself publishes (a will, `$SYS`): no
    /// publisher to slow down.
    pub(super) fn publish_message(&mut self, message: Message, now: Instant) {
        self.route_message(message, None, now);
    }

    /// Routes a message from this shard: retained store, local subscribers,
    /// once to each other shard with subscribers, telling each which share
    /// groups it serves for this message, and once to each other node with
    /// subscribers ([`super::nodes`]). `origin`, the publishing connection,
    /// spends a credit per other shard ([`super::flow`]). Returns the other
    /// shards and nodes it went to.
    fn route_message(
        &mut self,
        mut message: Message,
        origin: Option<ConnId>,
        now: Instant,
    ) -> (ShardMask, Vec<ByteString>) {
        if message.retain {
            self.retained.set(&message);
            self.store_retained(&message, now);
            self.broadcast(Forward::Retain(message.clone()));
        }
        let mut groups = self.router.assign_groups(&message.topic);
        let nodes = self.route_to_nodes(&mut message, &mut groups, origin, now);
        let shards = self.route_to_shards(&message, groups, origin, now);
        (shards, nodes)
    }

    /// Routes `message` to this shard's subscribers and once to each other
    /// shard with subscribers, and to the members of the share groups in
    /// `groups` on the shards named there. Returns the other shards.
    pub(super) fn route_to_shards(
        &mut self,
        message: &Message,
        mut groups: Vec<(usize, ByteString)>,
        origin: Option<ConnId>,
        now: Instant,
    ) -> ShardMask {
        let mut shards = self.index.shards_for(&message.topic);
        for (shard, _) in &groups {
            shards |= ShardMask::single(*shard);
        }
        let mut forwarded = 0;
        let others = shards.without(self.shard);
        let sender = origin.map(|conn| super::flow::Sender {
            conn,
            low_on_credit: self.flow.low_on_credit(conn, others.iter().count() as u32),
        });
        for shard in others.iter() {
            let mine = groups
                .iter()
                .filter(|(s, _)| *s == shard)
                .map(|(_, g)| g.clone())
                .collect();
            self.forwards
                .push((shard, Forward::Publish(message.clone(), mine, sender)));
            forwarded += 1;
        }
        if let Some(origin) = origin {
            self.flow.forwarded(origin, forwarded);
        }
        groups.retain(|(s, _)| *s == self.shard);
        let local: Vec<ByteString> = groups.into_iter().map(|(_, g)| g).collect();
        self.route_local(message, &local, now);
        others
    }

    /// Delivers a message to this shard's subscribers, and to its members of
    /// the share groups in `groups`.
    pub(super) fn route_local(&mut self, message: &Message, groups: &[ByteString], now: Instant) {
        self.with_recipients(now, |router, sessions| {
            router.route(message, sessions, Some(groups))
        });
    }

    /// Runs `f` with the router and the shard's sessions as its recipients.
    pub(super) fn with_recipients<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Router, &mut Sessions<'_>) -> R,
    ) -> R {
        let output_limit = self.settings.limits.max_online_messages;
        let stall = self.settings.stall;
        let store_messages = self.store_messages;
        let origin = self.routing_from.unwrap_or(self.shard);
        let Broker {
            router,
            sessions,
            outputs,
            stats,
            events,
            flow,
            store_ops,
            owners,
            to_nodes,
            acks,
            ..
        } = self;
        f(
            router,
            &mut Sessions {
                sessions,
                outputs,
                stats,
                events,
                flow,
                now,
                output_limit,
                stall,
                store_messages,
                store_ops,
                origin,
                moved: &owners.moved,
                moved_here: &mut owners.arrivals,
                to_nodes,
                acks,
            },
        )
    }
}

/// The shard's sessions as the router's [`Recipients`].
pub(super) struct Sessions<'a> {
    sessions: &'a mut SessionTable,
    outputs: &'a mut Outputs,
    stats: &'a mut Stats,
    events: &'a mut Events,
    /// Which recipients are congested or stalled.
    flow: &'a mut Flow,
    now: Instant,
    /// Packets the unwritten output of a stalled client may hold before QoS 0
    /// messages to it are dropped, and its queue's bound: a client that does
    /// not read must not take memory without bound.
    output_limit: usize,
    /// `stall-timeout`.
    stall: std::time::Duration,
    /// `durability = "messages"`: QoS 1/2 deliveries to stored sessions are
    /// written to the store too.
    store_messages: bool,
    store_ops: &'a mut Vec<StoreOp>,
    /// The shard the message being routed was published on.
    origin: usize,
    /// Sessions another node took over, still here a while: what reaches
    /// them goes to that node ([`super::owners`]).
    moved: &'a HashMap<ByteString, (ByteString, u64)>,
    /// Sessions another node lost to this one a moment ago: which messages
    /// they got since ([`super::owners`]).
    moved_here: &'a mut super::owners::Arrivals,
    to_nodes: &'a mut Vec<(ByteString, crate::cluster::frame::Message)>,
    acks: &'a mut super::acks::HeldAcks,
}

impl Recipients for Sessions<'_> {
    fn is_online(&self, client: &ByteString) -> bool {
        self.sessions.get(client).is_some_and(|e| e.conn.is_some())
    }

    fn deliver(&mut self, client: &ByteString, mut delivery: Delivery) {
        if !self.moved.is_empty() {
            if let Some((node, generation)) = self.moved.get(client) {
                let forward = crate::cluster::frame::Message::Deliver {
                    client_id: client.to_string(),
                    generation: *generation,
                    delivery: record::encode_delivery(&delivery, self.now),
                    id: delivery.message.id,
                    state: crate::session::StoredState::Queued,
                };
                self.to_nodes.push((node.clone(), forward));
                self.acks.wait_for_node(node);
                return;
            }
        }
        if !self.moved_here.is_empty() && !self.moved_here.first_arrival(client, &delivery) {
            self.stats.moved_duplicates += 1;
            return;
        }
        let Some(entry) = self.sessions.get_mut(client) else {
            return;
        };
        let stored = self.store_messages
            && entry.generation.is_some()
            && delivery.qos != QoS::AtMostOnce
            && !delivery.non_persistence;
        delivery.stored = stored.then(|| entry.session.next_stored());
        let record = delivery
            .stored
            .map(|n| (n, record::encode_delivery(&delivery, self.now), self.origin));
        // Offline sessions send nothing, so their output stays unallocated.
        let mut offline = Vec::new();
        let out = match entry.conn {
            Some(conn) => &mut self.outputs.to(conn).packets,
            None => &mut offline,
        };
        let before = out.len();
        // A connected client that has not stalled is reading: its publishers
        // are slowed down for it rather than its messages dropped. That bounds
        // its backlog too: by the publishers feeding it, a window each.
        let reading = entry
            .conn
            .filter(|&c| !self.flow.is_stalled(c, self.now, self.stall));
        let qos0 = delivery.qos == QoS::AtMostOnce;
        if qos0 && reading.is_none() && before >= self.output_limit {
            let drop = [(delivery, DropReason::QueueFull)];
            self.stats.count_drops(&drop);
            self.events.dropped(client, &drop);
            return;
        }
        let dropped = match reading {
            Some(_) => entry.session.deliver_reading(delivery, self.now, out),
            None => {
                if entry.conn.is_none() {
                    self.events.queued_offline(client, &delivery);
                }
                entry.session.deliver(delivery, self.now, out)
            }
        };
        if self.store_messages {
            super::store::journal(client, entry, record, self.store_ops);
        }
        let backlog = out.len();
        if qos0 && before >= PINNING_BACKLOG {
            // A backed-up output would pin one read buffer per packet it holds.
            if let Some(Packet::Publish(p)) = out[before..].last_mut() {
                p.topic = p.topic.detached();
                p.payload = bytes::Bytes::copy_from_slice(&p.payload);
            }
        }
        if entry.conn.is_some() {
            self.events.delivered(&entry.identity, &out[before..]);
        }
        if let Some(conn) = reading {
            if congested(backlog, entry.session.queued(), self.output_limit) {
                self.outputs.set_congested(conn, client);
                self.flow.note_congested(conn, client, self.now);
            }
        }
        if let Some(drop) = dropped {
            self.stats.count_drops(std::slice::from_ref(&drop));
            self.events.dropped(client, std::slice::from_ref(&drop));
        }
    }
}

/// Unwritten packets past which a QoS 0 delivery is copied out of its
/// publisher's read buffer: up to this many views may pin buffers of a slow
/// reader's publishers (a few MiB at worst), the rest are copies.
pub(super) const PINNING_BACKLOG: usize = 64;

/// Whether a recipient with `backlog` unwritten packets and `queued` QoS 1/2
/// messages behind its window slows its publishers down: at half of `limit`
/// (`max-online-messages`), and for the backlog already at [`PINNING_BACKLOG`],
/// so that a busy output holds read-buffer views rather than copies. A limit
/// of 0 drops at once instead.
pub(super) fn congested(backlog: usize, queued: usize, limit: usize) -> bool {
    let half = limit.div_ceil(2);
    limit > 0 && (backlog >= half.min(PINNING_BACKLOG) || queued >= half)
}
