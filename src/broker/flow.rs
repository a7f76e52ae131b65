//! Flow control: a publisher is slowed to the pace of the recipients it feeds,
//! on its own shard or on another, as long as they make progress.
//!
//! - **Same shard.** Routing notes the first congested recipient
//!   ([`Outputs::set_congested`](super::output::Outputs)); the publisher's
//!   reader stops reading until that recipient drains or stalls.
//! - **Across shards.** Every publish a connection's packet sends to another
//!   shard takes one of the connection's [`FORWARD_WINDOW`] credits. The
//!   receiving shard gives the credit back once it has routed the message, unless
//!   a recipient of it is congested: then the credit is held until that
//!   recipient drains or stalls. A connection with no credit left is not read.
//!   So at most `FORWARD_WINDOW` publishes per publisher are on their way to, or
//!   waiting behind, a congested recipient on another shard, whatever the offered
//!   rate; the mesh never holds more than that per publisher.
//! - **Across nodes.** The same credits cross the node-to-node links: every
//!   publish a connection sends to another node takes a credit, and that node
//!   gives it back ([`crate::cluster::frame::Message::Credit`]). The shard
//!   that takes the message from the link stands in for the publisher there:
//!   a *relay*, a connection id of its own with its own window, spends the
//!   credits of the node's other shards (and holds one for a congested
//!   recipient of its own), and the publisher's credit is owed while the
//!   relay has room, else once it has room again (and goes back lazily, as
//!   between shards). So a congested recipient on any shard of another node
//!   slows the publisher the same way.
//! - **Lazy credits.** A credit goes back at once only when its publisher
//!   is low on credit (half its window out when it sent the message, told
//!   with the message: [`Sender`]), when the recipient it was held for
//!   drains or stalls, or with other traffic for the publisher's shard (or
//!   node);
//!   otherwise it waits, at most until the shard's tick. At trickle rates
//!   a credit per message cost the publisher's shard a wake-up per
//!   message; now one per half window.
//! - **Stalls.** A recipient that neither finished a write nor acknowledged
//!   anything for `stall` holds nobody up any more: its publishers go on, and
//!   its messages overflow by `queue-overflow`, counted.
//!
//! Sans-IO: the connection layer tells the broker when a writer takes output
//! (progress) and asks whether a publisher must wait; the credits travel as
//! [`Forward::Credit`](super::Forward::Credit).

use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::ConnId;
use crate::hash::HashMap;

/// Publishes one connection may have forwarded to other shards and not yet
/// credited back. Small enough that publishers times the window stay far
/// below a recipient's queue, large enough that a mesh round trip under load
/// (hundreds of microseconds) does not limit one publisher's rate.
pub const FORWARD_WINDOW: u32 = 64;
/// Publishes one connection may have sent to other nodes and not had
/// credited back. Larger than [`FORWARD_WINDOW`]: a credit's round trip over
/// a link, through the other node's shards, takes tens of milliseconds
/// under load, and 64 per publisher held a saturated run across two nodes to
/// 224k msgs/s where the same run without credits carried 386k.
pub const NODE_WINDOW: u32 = 256;

/// The connection that published a message forwarded to another shard, and
/// whether it was low on credit then (its credit should come back at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    pub conn: ConnId,
    pub low_on_credit: bool,
}

/// Credits owed to the connections of one shard.
#[derive(Debug, Default)]
struct Owed {
    credits: Vec<(ConnId, u32)>,
    /// Whether one of them is for a publisher low on credit, or was held.
    due: bool,
}

/// A recipient found congested, and the credits held for it.
#[derive(Debug)]
struct Congested {
    /// Its session, to tell whether its queue has drained.
    client: ByteString,
    /// When its writer last took output (the previous write had finished) or
    /// it last acknowledged a message; it counts as stalled `stall` after.
    progress_at: Instant,
    /// Credits of publishers on other shards, returned when it drains or
    /// stalls: `(shard, connection there, publishes)`.
    held: Vec<(usize, ConnId, u32)>,
}

/// Relays' connection ids have this bit set; local connections never do.
const RELAY: ConnId = 1 << 63;

/// Where a publisher on another node is: the node, its shard there, and
/// the connection.
pub(super) type Remote = (ByteString, u16, ConnId);

/// A publisher on another node, as the shard that takes its messages off
/// the link sees it ([`Flow::relay`]).
#[derive(Debug)]
struct Relay {
    publisher: Remote,
    /// Its credits kept back while the relay is out of credit.
    held: u32,
}

/// The shard's flow-control state.
#[derive(Debug, Default)]
pub(super) struct Flow {
    /// Recipients found congested that have not drained since.
    congested: HashMap<ConnId, Congested>,
    /// Publishes forwarded for each local connection (or relay) and not yet
    /// credited back.
    unconfirmed: HashMap<ConnId, u32>,
    /// Publishes sent to other nodes for each local connection and not yet
    /// credited back.
    unconfirmed_by_nodes: HashMap<ConnId, u32>,
    /// Credits to give back, per shard.
    credits: Vec<Owed>,
    /// Publishers on other nodes whose messages this shard took off a link
    /// and routed, while any of their credits are out: by relay id, and the
    /// relay id of each.
    relays: HashMap<ConnId, Relay>,
    relay_ids: HashMap<Remote, ConnId>,
    next_relay: ConnId,
    /// Credits to give back to publishers on other nodes.
    node_credits: Vec<NodeCredits>,
}

/// Credits for the connections of one shard of another node.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NodeCredits {
    pub node: ByteString,
    pub shard: u16,
    /// `(connection, publishes)`.
    pub credits: Vec<(ConnId, u32)>,
    /// Whether one is for a publisher low on credit, or was held.
    pub due: bool,
}

impl Flow {
    /// `conn` had `n` publishes forwarded to other shards.
    pub(super) fn forwarded(&mut self, conn: ConnId, n: u32) {
        count_out(&mut self.unconfirmed, conn, n);
    }

    /// `conn` had `n` publishes sent to other nodes.
    pub(super) fn sent_to_nodes(&mut self, conn: ConnId, n: u32) {
        count_out(&mut self.unconfirmed_by_nodes, conn, n);
    }

    /// Another node credits `conn` back `n` publishes.
    pub(super) fn credited_by_node(&mut self, conn: ConnId, n: u32) {
        count_back(&mut self.unconfirmed_by_nodes, conn, n);
    }

    /// Another shard credits `conn` back `n` publishes.
    pub(super) fn credited(&mut self, conn: ConnId, n: u32) {
        count_back(&mut self.unconfirmed, conn, n);
        if conn & RELAY != 0 && !self.out_of_credit(conn) {
            self.relay_has_room(conn);
        }
    }

    /// The relay standing in here for `publisher`, a connection on another
    /// node: route its message with this as the origin, then call
    /// [`Flow::relayed`].
    pub(super) fn relay(&mut self, publisher: Remote) -> ConnId {
        if let Some(&id) = self.relay_ids.get(&publisher) {
            return id;
        }
        self.next_relay += 1;
        let id = RELAY | self.next_relay;
        self.relay_ids.insert(publisher.clone(), id);
        self.relays.insert(id, Relay { publisher, held: 0 });
        id
    }

    /// `relay` routed one message of its publisher: its credit is owed now
    /// if the relay has room, else when it has; due at once if the
    /// publisher was `low_on_credit`.
    pub(super) fn relayed(&mut self, relay: ConnId, low_on_credit: bool) {
        if self.out_of_credit(relay) {
            if let Some(r) = self.relays.get_mut(&relay) {
                r.held += 1;
            }
            return;
        }
        if let Some(r) = self.relays.get(&relay) {
            give_node(&mut self.node_credits, &r.publisher, 1, low_on_credit);
        }
    }

    fn relay_has_room(&mut self, relay: ConnId) {
        if let Some(r) = self.relays.get_mut(&relay) {
            let held = std::mem::take(&mut r.held);
            if held > 0 {
                give_node(&mut self.node_credits, &r.publisher, held, true);
            }
        }
    }

    /// Forgets the relays with nothing out and nothing held (their
    /// publishers may have left). Call about once a second: a relay made and
    /// dropped per message cost a map insert and removal each.
    pub(super) fn forget_idle_relays(&mut self) {
        let unconfirmed = &self.unconfirmed;
        let relay_ids = &mut self.relay_ids;
        self.relays.retain(|id, r| {
            let busy = r.held > 0 || unconfirmed.contains_key(id);
            if !busy {
                relay_ids.remove(&r.publisher);
            }
            busy
        });
    }

    /// `node` died: its publishers' relays go (what they held with them),
    /// and every local connection's window towards nodes opens, since the
    /// credits that node owed are never coming (credits that come late from
    /// other nodes only go down to zero).
    pub(super) fn node_died(&mut self, node: &str) {
        let gone: Vec<ConnId> = self
            .relays
            .iter()
            .filter(|(_, r)| r.publisher.0 == node)
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            if let Some(r) = self.relays.remove(&id) {
                self.relay_ids.remove(&r.publisher);
            }
            self.unconfirmed.remove(&id);
        }
        self.node_credits.retain(|c| c.node != node);
        self.unconfirmed_by_nodes.clear();
    }

    /// Credits for publishers on other nodes, emptied: those due, and those
    /// for the nodes `also` names.
    pub(super) fn take_node_credits(&mut self, also: impl Fn(&str) -> bool) -> Vec<NodeCredits> {
        let (taken, kept) = std::mem::take(&mut self.node_credits)
            .into_iter()
            .partition(|c| c.due || also(&c.node));
        self.node_credits = kept;
        taken
    }

    /// Whether `conn`, about to forward `more` publishes to other shards,
    /// will have half its window or more out: their credits should come
    /// back at once.
    pub(super) fn low_on_credit(&self, conn: ConnId, more: u32) -> bool {
        let out = self.unconfirmed.get(&conn).copied().unwrap_or(0);
        out + more >= FORWARD_WINDOW / 2
    }

    /// [`Flow::low_on_credit`] toward other nodes: `conn` is about to send
    /// `more` publishes to other nodes.
    pub(super) fn low_on_node_credit(&self, conn: ConnId, more: u32) -> bool {
        let out = self.unconfirmed_by_nodes.get(&conn).copied().unwrap_or(0);
        out + more >= NODE_WINDOW / 2
    }

    /// Whether `conn` has used its whole window and must not be read.
    pub(super) fn out_of_credit(&self, conn: ConnId) -> bool {
        // Asked after every packet: most shards have nothing unconfirmed.
        let full = |unconfirmed: &HashMap<ConnId, u32>, window| {
            !unconfirmed.is_empty() && unconfirmed.get(&conn).is_some_and(|&n| n >= window)
        };
        full(&self.unconfirmed, FORWARD_WINDOW) || full(&self.unconfirmed_by_nodes, NODE_WINDOW)
    }

    /// Shard `from` forwarded a publish of its connection `origin`, now routed
    /// here. `congested` is the recipient routing found congested, if any: the
    /// credit waits for it, unless it has stalled.
    pub(super) fn routed(
        &mut self,
        from: usize,
        origin: Sender,
        congested: Option<ConnId>,
        now: Instant,
        stall: Duration,
    ) {
        let conn = origin.conn;
        if let Some(c) = congested.and_then(|c| self.congested.get_mut(&c)) {
            if !is_stalled(c, now, stall) {
                match c.held.last_mut() {
                    Some((s, o, n)) if *s == from && *o == conn => *n += 1,
                    _ => c.held.push((from, conn, 1)),
                }
                return;
            }
        }
        give(&mut self.credits, from, conn, 1, origin.low_on_credit);
    }

    /// Routing found `conn`, the connection of `client`, congested.
    pub(super) fn note_congested(&mut self, conn: ConnId, client: &ByteString, now: Instant) {
        self.congested.entry(conn).or_insert_with(|| Congested {
            client: client.clone(),
            progress_at: now,
            held: Vec::new(),
        });
    }

    /// `conn` made progress (took output, acknowledged). Returns its client
    /// id if it was congested, for the caller to check whether it drained.
    pub(super) fn progress(&mut self, conn: ConnId, now: Instant) -> Option<&ByteString> {
        let c = self.congested.get_mut(&conn)?;
        c.progress_at = now;
        Some(&c.client)
    }

    /// Whether `conn` was found congested and has made no progress for `stall`.
    pub(super) fn is_stalled(&self, conn: ConnId, now: Instant, stall: Duration) -> bool {
        // Asked for every delivery: most of the time nobody is congested.
        !self.congested.is_empty()
            && self
                .congested
                .get(&conn)
                .is_some_and(|c| is_stalled(c, now, stall))
    }

    /// `conn` is no longer congested, or gone: the credits it held go back.
    pub(super) fn drained(&mut self, conn: ConnId) {
        if let Some(c) = self.congested.remove(&conn) {
            release(&mut self.credits, c.held);
        }
    }

    /// A local connection ended: forget its window, free what it held.
    pub(super) fn closed(&mut self, conn: ConnId) {
        self.unconfirmed.remove(&conn);
        self.unconfirmed_by_nodes.remove(&conn);
        self.drained(conn);
    }

    /// Gives back the credits held by recipients that have stalled. They stay
    /// known as congested, so they hold nothing more until they progress.
    pub(super) fn release_stalled(&mut self, now: Instant, stall: Duration) {
        for c in self.congested.values_mut() {
            if !c.held.is_empty() && is_stalled(c, now, stall) {
                release(&mut self.credits, std::mem::take(&mut c.held));
            }
        }
    }

    /// Congested connections that have made no progress for `timeout`.
    pub(super) fn stalled_for(&self, now: Instant, timeout: Duration) -> Vec<ConnId> {
        self.congested
            .iter()
            .filter(|(_, c)| is_stalled(c, now, timeout))
            .map(|(&conn, _)| conn)
            .collect()
    }

    /// Credits to send, per shard, emptied: those due, and those for the
    /// shards `also` names (traffic goes there anyway, or it is time).
    pub(super) fn take_credits(
        &mut self,
        also: impl Fn(usize) -> bool,
    ) -> Vec<(usize, Vec<(ConnId, u32)>)> {
        let mut taken = Vec::new();
        for (shard, owed) in self.credits.iter_mut().enumerate() {
            if !owed.credits.is_empty() && (owed.due || also(shard)) {
                owed.due = false;
                taken.push((shard, std::mem::take(&mut owed.credits)));
            }
        }
        taken
    }
}

/// `conn` has `n` more publishes out in `unconfirmed`.
fn count_out(unconfirmed: &mut HashMap<ConnId, u32>, conn: ConnId, n: u32) {
    if n > 0 {
        *unconfirmed.entry(conn).or_insert(0) += n;
    }
}

/// `n` of `conn`'s publishes out in `unconfirmed` are credited back; a late
/// credit never goes below zero.
fn count_back(unconfirmed: &mut HashMap<ConnId, u32>, conn: ConnId, n: u32) {
    if let Some(left) = unconfirmed.get_mut(&conn) {
        *left = left.saturating_sub(n);
        if *left == 0 {
            unconfirmed.remove(&conn);
        }
    }
}

fn is_stalled(c: &Congested, now: Instant, stall: Duration) -> bool {
    now.saturating_duration_since(c.progress_at) >= stall
}

/// Held credits go back at once: their publishers may be waiting for them.
fn release(credits: &mut Vec<Owed>, held: Vec<(usize, ConnId, u32)>) {
    for (shard, conn, n) in held {
        give(credits, shard, conn, n, true);
    }
}

fn give_node(to: &mut Vec<NodeCredits>, (node, shard, conn): &Remote, n: u32, due: bool) {
    let i = match to.iter().position(|c| c.node == *node && c.shard == *shard) {
        Some(i) => i,
        None => {
            to.push(NodeCredits {
                node: node.clone(),
                shard: *shard,
                credits: Vec::new(),
                due: false,
            });
            to.len() - 1
        }
    };
    to[i].due |= due;
    let credits = &mut to[i].credits;
    match credits.iter_mut().find(|(c, _)| c == conn) {
        Some((_, count)) => *count += n,
        None => credits.push((*conn, n)),
    }
}

fn give(credits: &mut Vec<Owed>, shard: usize, conn: ConnId, n: u32, due: bool) {
    if credits.len() <= shard {
        credits.resize_with(shard + 1, Owed::default);
    }
    let owed = &mut credits[shard];
    owed.due |= due;
    match owed.credits.last_mut() {
        Some((c, count)) if *c == conn => *count += n,
        _ => owed.credits.push((conn, n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(1);

    fn sent(flow: &mut Flow) -> Vec<(usize, Vec<(ConnId, u32)>)> {
        flow.take_credits(|_| false)
    }

    /// A publisher low on credit: its credits go back at once.
    fn low(conn: ConnId) -> Sender {
        Sender {
            conn,
            low_on_credit: true,
        }
    }

    #[test]
    fn a_credit_waits_until_its_publisher_is_low_or_traffic_goes_anyway() {
        let now = Instant::now();
        let mut flow = Flow::default();
        let plenty = |conn| Sender {
            conn,
            low_on_credit: false,
        };
        flow.routed(1, plenty(5), None, now, STALL);
        flow.routed(2, plenty(6), None, now, STALL);
        assert!(sent(&mut flow).is_empty(), "nobody is short of credit");
        assert_eq!(flow.take_credits(|s| s == 2), [(2, vec![(6, 1)])]);
        flow.routed(1, low(7), None, now, STALL);
        assert_eq!(sent(&mut flow), [(1, vec![(5, 1), (7, 1)])], "all due to 1");
        assert!(!flow.low_on_credit(5, FORWARD_WINDOW / 2 - 1));
        assert!(flow.low_on_credit(5, FORWARD_WINDOW / 2));
    }

    #[test]
    fn a_window_of_forwards_then_no_credit() {
        let mut flow = Flow::default();
        flow.forwarded(7, FORWARD_WINDOW - 1);
        assert!(!flow.out_of_credit(7));
        flow.forwarded(7, 1);
        assert!(flow.out_of_credit(7));
        assert!(!flow.out_of_credit(8), "windows are per connection");
        flow.credited(7, 1);
        assert!(!flow.out_of_credit(7));
        flow.credited(7, 1000);
        flow.forwarded(7, FORWARD_WINDOW - 1);
        assert!(
            !flow.out_of_credit(7),
            "a late credit never goes below zero"
        );
    }

    #[test]
    fn credits_coalesce_per_origin_and_shard() {
        let now = Instant::now();
        let mut flow = Flow::default();
        for _ in 0..3 {
            flow.routed(1, low(5), None, now, STALL);
        }
        flow.routed(1, low(6), None, now, STALL);
        flow.routed(2, low(5), None, now, STALL);
        assert_eq!(
            sent(&mut flow),
            [(1, vec![(5, 3), (6, 1)]), (2, vec![(5, 1)])]
        );
        assert!(sent(&mut flow).is_empty(), "taken once");
    }

    #[test]
    fn a_congested_recipient_holds_credits_until_it_drains() {
        let now = Instant::now();
        let mut flow = Flow::default();
        flow.note_congested(3, &"sub".into(), now);
        flow.routed(1, low(5), Some(3), now, STALL);
        flow.routed(1, low(5), Some(3), now, STALL);
        flow.routed(1, low(6), None, now, STALL);
        assert_eq!(
            sent(&mut flow),
            [(1, vec![(6, 1)])],
            "only the uncongested one"
        );
        assert_eq!(flow.progress(3, now).map(|c| &c[..]), Some("sub"));
        flow.drained(3);
        assert_eq!(sent(&mut flow), [(1, vec![(5, 2)])]);
        assert!(flow.progress(3, now).is_none(), "no longer congested");
    }

    #[test]
    fn a_stalled_recipient_holds_nobody() {
        let t0 = Instant::now();
        let mut flow = Flow::default();
        flow.note_congested(3, &"sub".into(), t0);
        flow.routed(1, low(5), Some(3), t0, STALL);
        flow.release_stalled(t0 + STALL / 2, STALL);
        assert!(sent(&mut flow).is_empty(), "not stalled yet");
        assert!(!flow.is_stalled(3, t0 + STALL / 2, STALL));

        let later = t0 + STALL;
        assert!(flow.is_stalled(3, later, STALL));
        flow.release_stalled(later, STALL);
        assert_eq!(sent(&mut flow), [(1, vec![(5, 1)])]);
        flow.routed(1, low(5), Some(3), later, STALL);
        assert_eq!(sent(&mut flow), [(1, vec![(5, 1)])], "credited at once");

        flow.progress(3, later);
        assert!(!flow.is_stalled(3, later, STALL), "progress ends the stall");
        flow.routed(1, low(5), Some(3), later, STALL);
        assert!(sent(&mut flow).is_empty(), "held again");
    }

    #[test]
    fn a_closed_connection_frees_what_it_held_and_its_window() {
        let now = Instant::now();
        let mut flow = Flow::default();
        flow.forwarded(3, FORWARD_WINDOW);
        flow.note_congested(3, &"sub".into(), now);
        flow.routed(0, low(9), Some(3), now, STALL);
        flow.closed(3);
        assert!(!flow.out_of_credit(3));
        assert_eq!(sent(&mut flow), [(0, vec![(9, 1)])]);
    }

    #[test]
    fn a_relay_passes_credits_on_while_it_has_room_and_holds_them_after() {
        let mut flow = Flow::default();
        let publisher: Remote = ("a".into(), 1, 9);
        let credits = |n| NodeCredits {
            node: "a".into(),
            shard: 1,
            credits: vec![(9, n)],
            due: true,
        };
        let due = |flow: &mut Flow| flow.take_node_credits(|_| false);
        let relay = flow.relay(publisher.clone());
        assert_ne!(relay & RELAY, 0);
        flow.relayed(relay, true);
        assert_eq!(due(&mut flow), [credits(1)]);
        flow.relayed(relay, false);
        assert!(due(&mut flow).is_empty(), "owed, not due: credit to spare");
        let with_traffic = flow.take_node_credits(|node| node == "a");
        assert_eq!(with_traffic[0].credits, [(9, 1)], "goes with other traffic");
        flow.forget_idle_relays();
        assert!(flow.relays.is_empty(), "idle, forgotten");

        let relay = flow.relay(publisher.clone());
        assert_eq!(flow.relay(publisher.clone()), relay, "one per publisher");
        flow.forwarded(relay, FORWARD_WINDOW);
        flow.relayed(relay, false);
        flow.relayed(relay, false);
        assert!(flow.take_node_credits(|_| true).is_empty(), "held: no room");
        flow.credited(relay, 1);
        assert_eq!(due(&mut flow), [credits(2)], "held ones are due");
        flow.forget_idle_relays();
        assert_eq!(flow.relays.len(), 1, "busy, kept");
        flow.credited(relay, FORWARD_WINDOW);
        flow.forget_idle_relays();
        assert!(flow.relays.is_empty() && flow.relay_ids.is_empty());
    }

    #[test]
    fn a_dead_node_opens_every_window_and_takes_its_relays() {
        let mut flow = Flow::default();
        flow.sent_to_nodes(7, NODE_WINDOW);
        assert!(flow.out_of_credit(7));
        flow.forwarded(8, FORWARD_WINDOW);
        let relay = flow.relay(("b".into(), 0, 3));
        flow.forwarded(relay, FORWARD_WINDOW);
        flow.relayed(relay, true);
        flow.node_died("b");
        assert!(!flow.out_of_credit(7));
        assert!(flow.out_of_credit(8), "what other shards owe is still owed");
        assert!(flow.relays.is_empty() && !flow.unconfirmed.contains_key(&relay));
        flow.credited(relay, 1);
        assert!(
            flow.take_node_credits(|_| true).is_empty(),
            "nothing for the dead"
        );
    }
}
