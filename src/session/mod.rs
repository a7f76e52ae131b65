//! A client's session: its subscriptions and the state of every QoS 1/2 flow,
//! kept across connections for persistent sessions.
//!
//! Sans-IO like the codec: methods take what happened (a message to deliver, an
//! acknowledgement, a reconnect) and push the packets to send into an output
//! `Vec<Packet>`. The connection task encodes them. Everything here is owned by
//! one shard, so it is plain data with no locks.

mod inflight;
mod queue;

use crate::hash::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use inflight::{Inflight, InflightEntry, OutState};
pub use queue::{OverflowPolicy, Queue};

use crate::message::Message;
use crate::protocol::{
    publish_encoded_len, Ack, Packet, PacketId, Publish, QoS, SubscriptionOptions, Version,
};
use crate::topic::TopicFilter;

/// Bounds on what one session may hold, from `[mqtt]` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Unacknowledged QoS 1/2 messages sent to the client at once.
    pub max_inflight: u16,
    /// Messages queued behind a full inflight window while the client is online.
    pub max_online_messages: usize,
    /// Messages queued while the client is offline.
    pub max_offline_messages: usize,
    pub overflow: OverflowPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_inflight: 100,
            max_online_messages: 1000,
            max_offline_messages: 1000,
            overflow: OverflowPolicy::DropNewest,
        }
    }
}

/// One message on its way to one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message: Message,
    /// The lower of the published QoS and the subscription's.
    pub qos: QoS,
    /// RETAIN as sent: the published flag for retain-as-published subscriptions and
    /// retained messages sent on subscribe, else false [MQTT-3.3.1-12].
    pub retain: bool,
    /// MQTT 5 subscription identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
    /// Courier: send once, never resend; dropped if not acked before a reconnect.
    pub non_retry: bool,
    /// Courier: never queued for an offline session, never resent after a reconnect.
    pub non_persistence: bool,
    /// The share group (`$share/<group>/<filter>`) this delivery came through,
    /// if any: when the session ends before the message is acknowledged, it
    /// goes to another member of that group (MQTT 5 section 4.8.2,
    /// [`Session::take_shared`]).
    pub share_group: Option<TopicFilter>,
    /// With `durability = "messages"`: its number in the session's queue in
    /// the store (`None`: not stored). The session tells the store when it
    /// is sent and when it leaves ([`Stored`]).
    pub stored: Option<u64>,
}

/// What the store must learn of a stored delivery ([`Delivery::stored`]),
/// in the order it happened: drained by the broker with
/// [`Session::take_journal`] after each change to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Sent under this packet id: after a restart it is resent with DUP
    /// under the same id, so a QoS 2 receiver recognises it.
    Sent(u64, PacketId),
    /// QoS 2, PUBREC received: the client has it; after a restart the
    /// PUBREL is resent, not the PUBLISH.
    Released(u64),
    /// Acknowledged, dropped or handed to another share-group member: gone
    /// from the session.
    Trimmed(u64),
}

/// How far a delivery the store kept had got ([`Session::restore_stored`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredState {
    Queued,
    Sent(PacketId),
    /// QoS 2 past PUBREC, under this packet id.
    Released(PacketId),
}

/// Why a delivery was dropped: counted, and reported as `on_message_drop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The session's queue was full.
    QueueFull,
    /// The MQTT 5 message expiry interval ran out.
    Expired,
    /// QoS 0, or a non_persistence subscription, while the client was offline.
    Offline,
    /// A non_retry or non_persistence message unacknowledged at reconnect.
    NotAcked,
    /// The PUBLISH would be larger than the client's MQTT 5 maximum packet
    /// size: not sent, and treated as delivered [MQTT-3.1.2-25].
    TooLarge,
}

/// A subscription as the session remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub options: SubscriptionOptions,
    /// MQTT 5 subscription identifier, if the SUBSCRIBE carried one.
    pub id: Option<u32>,
}

/// A client's session state.
#[derive(Debug)]
pub struct Session {
    /// The broker's, shared: the same for every session of a shard, and 24
    /// bytes each as a copy (issue 15, memory per idle connection).
    limits: Rc<Limits>,
    /// The inflight window in use: `max-inflight`, or less if the client's MQTT 5
    /// receive maximum asks for less.
    window: u16,
    online: bool,
    inflight: Inflight,
    queue: Queue,
    /// The packet id tried next for an outgoing message.
    next_packet_id: u16,
    /// The client's MQTT 5 maximum packet size and its protocol version (to
    /// size a PUBLISH as it will be encoded). `None`: no limit.
    max_packet: Option<(u32, Version)>,
    subscriptions: HashMap<TopicFilter, Subscription>,
    /// The number the next stored delivery gets ([`Delivery::stored`]).
    next_stored: u64,
    /// What only some sessions use, made on first use ([`Rare`]).
    rare: Option<Box<Rare>>,
}

/// The parts of a session only some use: QoS 2 publishers and stored
/// deliveries. Boxed on first use: every idle session would otherwise carry
/// them (56 bytes, issue 15's memory per idle connection).
#[derive(Debug, Default)]
struct Rare {
    /// QoS 2 packet ids received from the client and not yet released by PUBREL:
    /// a resent PUBLISH with one of them must not be routed twice [MQTT-4.3.3-10].
    incoming_qos2: HashSet<u16>,
    /// What the store has to learn, oldest first ([`Stored`]).
    journal: Vec<Stored>,
}

impl Session {
    /// A session with nothing in it yet. Its client id is the key the broker
    /// keeps it under: kept here too, it cost 32 bytes per session.
    pub fn new(limits: Rc<Limits>) -> Session {
        Session {
            window: limits.max_inflight,
            limits,
            online: false,
            inflight: Inflight::default(),
            queue: Queue::default(),
            next_packet_id: 1,
            max_packet: None,
            subscriptions: HashMap::default(),
            next_stored: 1,
            rare: None,
        }
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn journal(&mut self, entry: Stored) {
        self.rare().journal.push(entry);
    }

    /// A number for a delivery about to be stored ([`Delivery::stored`]).
    pub fn next_stored(&mut self) -> u64 {
        let n = self.next_stored;
        self.next_stored += 1;
        n
    }

    /// What the store must learn of stored deliveries since the last call.
    pub fn take_journal(&mut self) -> Vec<Stored> {
        self.rare
            .as_mut()
            .map_or_else(Vec::new, |r| std::mem::take(&mut r.journal))
    }

    /// Records that `dropped` left the session, for those that were stored.
    fn trimmed<'a>(&mut self, dropped: impl IntoIterator<Item = &'a Delivery>) {
        for n in dropped.into_iter().filter_map(|d| d.stored) {
            self.journal(Stored::Trimmed(n));
        }
    }

    /// Puts back the deliveries the store kept for this offline session
    /// (restored after a restart), in their order: those that had been sent
    /// go back in flight under their packet id, to be resent with DUP (or,
    /// past PUBREC, their PUBREL) when the client connects; the others are
    /// queued.
    pub fn restore_stored(&mut self, stored: Vec<(Delivery, StoredState)>, now: Instant) {
        for (delivery, state) in stored {
            if let Some(n) = delivery.stored {
                self.next_stored = self.next_stored.max(n + 1);
            }
            let (packet_id, state) = match state {
                StoredState::Queued => {
                    self.queue.restore(delivery);
                    continue;
                }
                StoredState::Sent(id) if delivery.qos == QoS::ExactlyOnce => {
                    (id, OutState::AwaitingPubRec)
                }
                StoredState::Sent(id) => (id, OutState::AwaitingPubAck),
                StoredState::Released(id) => (id, OutState::AwaitingPubComp),
            };
            if self.inflight.contains(packet_id) {
                self.queue.restore(delivery);
                continue;
            }
            self.inflight.push(InflightEntry {
                packet_id,
                sent_at: now,
                state,
                delivery,
            });
        }
    }

    /// The session moves to another node, and the store does not hold its
    /// messages (`durability = "sessions"`): takes out what it holds, in
    /// order and with how far each got, for [`Session::restore_stored`]
    /// there.
    pub fn take_held(&mut self) -> Vec<(Delivery, StoredState)> {
        let mut held: Vec<(Delivery, StoredState)> = self
            .inflight
            .drain_unless(|_| false)
            .into_iter()
            .map(|e| {
                let state = match e.state {
                    OutState::AwaitingPubComp => StoredState::Released(e.packet_id),
                    OutState::AwaitingPubAck | OutState::AwaitingPubRec => {
                        StoredState::Sent(e.packet_id)
                    }
                };
                (e.delivery, state)
            })
            .collect();
        let queued = self.queue.drain_unless(|_| false);
        held.extend(queued.into_iter().map(|d| (d, StoredState::Queued)));
        held
    }

    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Messages queued behind the window or for an offline client.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn inflight(&self) -> &Inflight {
        &self.inflight
    }

    pub fn subscriptions(&self) -> impl Iterator<Item = (&TopicFilter, &Subscription)> {
        self.subscriptions.iter()
    }

    /// Adds or replaces a subscription; says whether it existed (for retain
    /// handling 1, "send retained only if new").
    pub fn subscribe(&mut self, filter: TopicFilter, subscription: Subscription) -> bool {
        self.subscriptions
            .insert(filter.detached(), subscription)
            .is_some()
    }

    /// The largest packet the connected client accepts (MQTT 5 Maximum Packet
    /// Size), for the connection that follows. Call before [`Session::connect`].
    pub fn set_max_packet_size(&mut self, max: Option<u32>, version: Version) {
        self.max_packet = max.map(|m| (m, version));
    }

    /// Whether `publish` is larger than the client accepts.
    fn too_large(&self, publish: &Publish) -> bool {
        exceeds(self.max_packet, publish)
    }

    pub fn unsubscribe(&mut self, filter: &TopicFilter) -> bool {
        self.subscriptions.remove(filter).is_some()
    }

    /// The client connected (again). `receive_maximum` is its MQTT 5 limit. For a
    /// resumed session, unacknowledged messages are resent, in their original
    /// order, with DUP set [MQTT-4.4.0-1], then the queue fills the window.
    pub fn connect(
        &mut self,
        receive_maximum: Option<u16>,
        now: Instant,
        out: &mut Vec<Packet>,
    ) -> Vec<(Delivery, DropReason)> {
        self.online = true;
        self.window = receive_maximum.map_or(self.limits.max_inflight, |r| {
            r.min(self.limits.max_inflight)
        });
        let mut dropped: Vec<_> = self
            .inflight
            .drain_unless(|e| {
                e.state == OutState::AwaitingPubComp
                    || !(e.delivery.non_retry || e.delivery.non_persistence)
            })
            .into_iter()
            .map(|e| (e.delivery, DropReason::NotAcked))
            .collect();
        self.resend(now, out, &mut dropped, |_| true);
        self.fill_window(now, out, &mut dropped);
        self.trimmed(dropped.iter().map(|(d, _)| d));
        dropped
    }

    /// MQTT 3 `retry-interval`: resends, with DUP set, what the connected client
    /// has left unacknowledged for `interval` (PUBREL for QoS 2 past PUBREC),
    /// except non_retry deliveries, which are sent once only. MQTT 5 forbids
    /// resending on a live connection [MQTT-4.4.0-1]; the caller only asks for
    /// MQTT 3 sessions.
    pub fn retry(
        &mut self,
        now: Instant,
        interval: Duration,
        out: &mut Vec<Packet>,
    ) -> Vec<(Delivery, DropReason)> {
        let mut dropped = Vec::new();
        if self.online {
            self.resend(now, out, &mut dropped, |e| {
                !e.delivery.non_retry && now.saturating_duration_since(e.sent_at) >= interval
            });
        }
        self.trimmed(dropped.iter().map(|(d, _)| d));
        dropped
    }

    /// Resends the inflight entries `due` selects, in their original order: the
    /// PUBLISH again with DUP set [MQTT-4.4.0-1], or the PUBREL. A PUBLISH that
    /// no longer fits the client's maximum packet size is dropped.
    fn resend(
        &mut self,
        now: Instant,
        out: &mut Vec<Packet>,
        dropped: &mut Vec<(Delivery, DropReason)>,
        due: impl Fn(&InflightEntry) -> bool,
    ) {
        let max_packet = self.max_packet;
        let mut too_large = Vec::new();
        for e in self.inflight.iter_mut().filter(|e| due(e)) {
            e.sent_at = now;
            out.push(match e.state {
                OutState::AwaitingPubComp => Packet::PubRel(Ack::new(e.packet_id)),
                _ => {
                    let publish = to_publish(&e.delivery, Some(e.packet_id), true, now);
                    if exceeds(max_packet, &publish) {
                        too_large.push(e.packet_id);
                        continue;
                    }
                    Packet::Publish(publish)
                }
            });
        }
        for id in too_large {
            if let Some(e) = self.inflight.remove(id) {
                dropped.push((e.delivery, DropReason::TooLarge));
            }
        }
    }

    /// The connection is gone; the session stays for the client to resume.
    /// Queued non_persistence messages are dropped: they are never kept for an
    /// offline client.
    pub fn disconnect(&mut self) -> Vec<(Delivery, DropReason)> {
        self.online = false;
        self.queue
            .drain_unless(|d| !d.non_persistence)
            .into_iter()
            .map(|d| (d, DropReason::Offline))
            .collect()
    }

    /// The session is ending: takes out, in the order they were sent or
    /// queued, the messages it got through a share group that the client
    /// has not received yet, for the broker to hand to another member (MQTT 5
    /// section 4.8.2: "If the Client's Session terminates before the Client
    /// reconnects, the Server SHOULD send the Application Message to another
    /// Client that is subscribed to the same Shared Subscription"). In-flight
    /// ones come first: they were sent before anything still queued. A QoS 2
    /// message awaiting PUBCOMP stays: its PUBREC said the client has it, so
    /// another member would get it twice.
    pub fn take_shared(&mut self) -> Vec<Delivery> {
        let mut shared: Vec<Delivery> = self
            .inflight
            .drain_unless(|e| {
                e.state == OutState::AwaitingPubComp || e.delivery.share_group.is_none()
            })
            .into_iter()
            .map(|e| e.delivery)
            .collect();
        shared.extend(self.queue.drain_unless(|d| d.share_group.is_none()));
        self.trimmed(&shared);
        shared
    }

    /// Sends `delivery` now if the client is online and the window has room,
    /// else queues it within the limits. Gives it back if it is dropped.
    pub fn deliver(
        &mut self,
        delivery: Delivery,
        now: Instant,
        out: &mut Vec<Packet>,
    ) -> Option<(Delivery, DropReason)> {
        let dropped = self.deliver_within(delivery, now, out, self.limits.max_online_messages);
        self.trimmed(dropped.as_ref().map(|(d, _)| d));
        dropped
    }

    /// [`Session::deliver`] to a connected client that is still reading: its
    /// QoS 1/2 queue is not held to `max-online-messages`, because the broker
    /// slows its publishers instead, which bounds the queue (see
    /// `broker::flow`). A reading subscriber loses no QoS 1/2 message.
    pub fn deliver_reading(
        &mut self,
        delivery: Delivery,
        now: Instant,
        out: &mut Vec<Packet>,
    ) -> Option<(Delivery, DropReason)> {
        let dropped = self.deliver_within(delivery, now, out, usize::MAX);
        self.trimmed(dropped.as_ref().map(|(d, _)| d));
        dropped
    }

    fn deliver_within(
        &mut self,
        delivery: Delivery,
        now: Instant,
        out: &mut Vec<Packet>,
        online_capacity: usize,
    ) -> Option<(Delivery, DropReason)> {
        if delivery.message.is_expired(now) {
            return Some((delivery, DropReason::Expired));
        }
        if !self.online {
            if delivery.qos == QoS::AtMostOnce || delivery.non_persistence {
                return Some((delivery, DropReason::Offline));
            }
            let capacity = self.limits.max_offline_messages;
            return self.enqueue(delivery, capacity);
        }
        if delivery.qos == QoS::AtMostOnce {
            let publish = to_publish(&delivery, None, false, now);
            if self.too_large(&publish) {
                return Some((delivery, DropReason::TooLarge));
            }
            out.push(Packet::Publish(publish));
            return None;
        }
        if self.queue.is_empty() && self.inflight.len() < usize::from(self.window) {
            return self.send(delivery, now, out);
        }
        self.enqueue(delivery, online_capacity)
    }

    fn enqueue(&mut self, delivery: Delivery, capacity: usize) -> Option<(Delivery, DropReason)> {
        self.queue
            .push(delivery, capacity, self.limits.overflow)
            .map(|d| (d, DropReason::QueueFull))
    }

    /// Sends a QoS 1/2 delivery under a fresh packet id and tracks it; gives it
    /// back if it is too large for the client, which then never sees it.
    fn send(
        &mut self,
        delivery: Delivery,
        now: Instant,
        out: &mut Vec<Packet>,
    ) -> Option<(Delivery, DropReason)> {
        let packet_id = self.next_packet_id();
        let publish = to_publish(&delivery, Some(packet_id), false, now);
        if self.too_large(&publish) {
            return Some((delivery, DropReason::TooLarge));
        }
        out.push(Packet::Publish(publish));
        if let Some(n) = delivery.stored {
            self.journal(Stored::Sent(n, packet_id));
        }
        let state = match delivery.qos {
            QoS::ExactlyOnce => OutState::AwaitingPubRec,
            _ => OutState::AwaitingPubAck,
        };
        self.inflight.push(InflightEntry {
            packet_id,
            sent_at: now,
            state,
            delivery,
        });
        None
    }

    /// Moves queued deliveries into the window while it has room.
    fn fill_window(
        &mut self,
        now: Instant,
        out: &mut Vec<Packet>,
        dropped: &mut Vec<(Delivery, DropReason)>,
    ) {
        if !self.online {
            return;
        }
        while self.inflight.len() < usize::from(self.window) {
            let Some(delivery) = self.queue.pop() else {
                return;
            };
            if delivery.message.is_expired(now) {
                dropped.push((delivery, DropReason::Expired));
            } else {
                dropped.extend(self.send(delivery, now, out));
            }
        }
    }

    /// A packet id not used by any inflight message.
    fn next_packet_id(&mut self) -> PacketId {
        loop {
            let candidate = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if let Some(id) = PacketId::new(candidate) {
                if !self.inflight.contains(id) {
                    return id;
                }
            }
        }
    }

    /// PUBACK from the client. `false` if nothing was waiting for it.
    pub fn puback(
        &mut self,
        packet_id: PacketId,
        now: Instant,
        out: &mut Vec<Packet>,
    ) -> (bool, Vec<(Delivery, DropReason)>) {
        self.complete(packet_id, OutState::AwaitingPubAck, now, out)
    }

    /// PUBREC from the client: answer PUBREL. An MQTT 5 PUBREC with an error reason
    /// ends the flow there [MQTT-4.3.3-4]. A repeated PUBREC gets PUBREL again.
    pub fn pubrec(
        &mut self,
        packet_id: PacketId,
        failed: bool,
        now: Instant,
        out: &mut Vec<Packet>,
    ) -> (bool, Vec<(Delivery, DropReason)>) {
        match self.inflight.state(packet_id) {
            Some(OutState::AwaitingPubRec) if failed => {
                self.complete(packet_id, OutState::AwaitingPubRec, now, out)
            }
            Some(state @ (OutState::AwaitingPubRec | OutState::AwaitingPubComp)) => {
                if state == OutState::AwaitingPubRec {
                    let stored = self.inflight.iter().find(|e| e.packet_id == packet_id);
                    if let Some(n) = stored.and_then(|e| e.delivery.stored) {
                        self.journal(Stored::Released(n));
                    }
                }
                self.inflight
                    .set_state(packet_id, OutState::AwaitingPubComp);
                out.push(Packet::PubRel(Ack::new(packet_id)));
                (true, Vec::new())
            }
            _ => (false, Vec::new()),
        }
    }

    /// PUBCOMP from the client: the QoS 2 flow is done.
    pub fn pubcomp(
        &mut self,
        packet_id: PacketId,
        now: Instant,
        out: &mut Vec<Packet>,
    ) -> (bool, Vec<(Delivery, DropReason)>) {
        self.complete(packet_id, OutState::AwaitingPubComp, now, out)
    }

    fn complete(
        &mut self,
        packet_id: PacketId,
        expected: OutState,
        now: Instant,
        out: &mut Vec<Packet>,
    ) -> (bool, Vec<(Delivery, DropReason)>) {
        if self.inflight.state(packet_id) != Some(expected) {
            return (false, Vec::new());
        }
        if let Some(done) = self.inflight.remove(packet_id) {
            self.trimmed([&done.delivery]);
        }
        let mut dropped = Vec::new();
        self.fill_window(now, out, &mut dropped);
        self.trimmed(dropped.iter().map(|(d, _)| d));
        (true, dropped)
    }

    /// A QoS 2 PUBLISH arrived. `true` if it is new and must be routed; `false`
    /// for a resend of one already routed.
    pub fn receive_qos2(&mut self, packet_id: PacketId) -> bool {
        self.rare().incoming_qos2.insert(packet_id.get())
    }

    /// QoS 2 PUBLISHes received and not yet released, for the MQTT 5 receive
    /// maximum the server announced.
    pub fn pending_qos2(&self) -> usize {
        self.rare.as_ref().map_or(0, |r| r.incoming_qos2.len())
    }

    /// PUBREL from the client. `false` if the id was unknown.
    pub fn release_qos2(&mut self, packet_id: PacketId) -> bool {
        self.rare
            .as_mut()
            .is_some_and(|r| r.incoming_qos2.remove(&packet_id.get()))
    }
}

/// Whether `publish` is over the client's maximum packet size, if it has one.
fn exceeds(max_packet: Option<(u32, Version)>, publish: &Publish) -> bool {
    max_packet.is_some_and(|(max, version)| {
        // Encoding only fails for packets that cannot be sent at all.
        publish_encoded_len(publish, version).map_or(true, |len| len > max as usize)
    })
}

/// The PUBLISH that carries `delivery` to the client.
fn to_publish(
    delivery: &Delivery,
    packet_id: Option<PacketId>,
    dup: bool,
    now: Instant,
) -> Publish {
    let message = &delivery.message;
    let mut properties = message.properties.as_deref().cloned().unwrap_or_default();
    properties
        .subscription_identifiers
        .clone_from(&delivery.subscription_ids);
    if let Some(left) = message.expiry_left(now) {
        properties.message_expiry_interval = Some(left);
    }
    Publish {
        dup,
        qos: delivery.qos,
        retain: delivery.retain,
        topic: message.topic.clone(),
        packet_id,
        payload: message.payload.clone(),
        properties,
    }
}

#[cfg(test)]
mod tests;
