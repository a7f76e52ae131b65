//! A seeded simulation of the server's own cluster code: three single-shard
//! `Broker`s stand for three nodes with `durability = "messages"`, driven
//! as `connection::serve` and `cluster::reap` drive them, and [`redis`]
//! stands for Redis (the CLAIM, WRITE and RELEASE scripts over maps, each
//! node's calls run in the order sent, at random times).
//!
//! Each step does one random thing: a CONNECT of one of two persistent
//! subscribers (`x`, `y`, each on topic `t/<id>`) on a random node; Redis
//! runs a node's next call (a claim, a batch of writes with the ticket of
//! the acknowledgements it holds, an adoption); a claim's reply arrives; a
//! link delivers its next message (links keep each pair's order); a
//! takeover's wait ends or times out; a node's publisher publishes a QoS 1
//! message to a random id; a subscriber acknowledges what it got; a node
//! dies (Redis runs a random part of what it had sent, unanswered); a
//! survivor reaps a dead node (adopts what its sessions set holds, and once
//! the set is empty every node drops its routes). The route feed is not
//! simulated: every node routes `t/+` to every other one until reaping
//! drops it.
//!
//! After every step: at most one connection per client id, and no node's
//! session of an id back at an older generation. At the end, once
//! everything in flight has run and every subscriber is back: the
//! connection of each id is on the node Redis names, and **every publish
//! acknowledged after the id's first SUBACK reached a connection of it**.
//!
//! What it found, each fixed and its seed kept in [`REGRESSIONS`]:
//! - seeds 1, 21 and 5060 (of the first version, without messages; 51978
//!   now): a claim whose node died before its reply, or one of a node's own
//!   that timed out, left the connection before it alive. Every live node
//!   now hears of a claim after another claim ([`Broker::after_claim`]).
//! - 28: a SUBACK went out before the subscription was stored, and the
//!   node died: the client was told of a subscription no survivor had. A
//!   SUBACK of a stored session now waits for the store (`subacks`).
//! - 275: a CONNECT whose claim ran but whose wait timed out left the
//!   session owned by its node in Redis and held nowhere: published
//!   messages went to no one ([`Broker::claim_refused`]); and a write of a
//!   subscription refused as stale did not fail its SUBACK.
//! - 733: a message the old owner forwarded to the new one, before the new
//!   one's CONNECT was through, was acknowledged while only in memory
//!   (`Broker::acks_unstored`).
//! - 1155, 1188: between a claim's reply and the CONNECT, or after the old
//!   owner died and its routes went, nobody held the session
//!   ([`Broker::claim_replied`]); and reaping dropped a dead node's routes
//!   before the session's new owner had written its own. The claimer now
//!   takes the id out of the old node's set only then (RELEASE), and the
//!   reaper leaves it to a claimer alive.
//! - 95, 322: a claim that ran in Redis as its node died was in no sessions
//!   set, so no reaper found it, and the connection it took the id from
//!   lived on under a stale generation. The CLAIM script now adds the id to
//!   the claiming node's set.
//! - 2491 (in 20,000 seeds): a claim whose wait timed out left the session
//!   held here under it while its takeover was still on its way to the
//!   node with the connection; the next claim here, after this node's own,
//!   accepted at once, and two connections lived. Such a claim now counts
//!   as unanswered, and the next one tells every node again.
//!
//! The simulation in [`crate::cluster::sim`] checks the sans-IO machines of
//! [`crate::cluster::takeover`]; this one drives `Broker` itself.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::tests::{connect, settings};
use super::*;
use crate::cluster::frame::Message as NodeMessage;
use crate::cluster::routes::RouteUpdate;
use crate::events::OfflineReason;
use crate::protocol::{Ack, Publish, PublishProperties, QoS};
use crate::store::{Claim, Owner, StoreOp};
use crate::topic::{TopicFilter, TopicName};

mod redis;

const NODES: usize = 3;
const IDS: [&str; 2] = ["x", "y"];
const SEEDS: u64 = 2000;
/// Seeds that once failed, run every time (even with fewer [`SEEDS`]).
///
/// 6987 fails only without [`Broker::claim_refused`] (20,000 seeds found
/// no other with it off): kept so the sim still pins it.
const REGRESSIONS: [u64; 10] = [28, 95, 275, 322, 733, 1155, 1188, 2491, 6987, 51978];
const STEPS: usize = 300;
/// How long a CONNECT waits for the node it takes the session from.
const HANDOVER_WAIT: Duration = Duration::from_secs(3);
/// QoS 1 publishes a publisher has unacknowledged at most.
const PUBLISHER_WINDOW: usize = 4;

/// A CONNECT on its way through the claim.
struct Attempt {
    node: usize,
    id: ByteString,
    conn: ConnId,
    stage: Stage,
}

enum Stage {
    /// Sent to Redis, not run yet.
    Claiming,
    /// Run in Redis; the reply is on its way.
    Replied(Claim),
    /// Waiting for the answer to a takeover, until the instant given.
    Waiting(Claim, Instant),
}

/// A call a node sent to Redis, which runs them in the order sent.
enum Call {
    /// A wake-up's writes, and the ticket of the acknowledgements they hold.
    Write(Vec<StoreOp>, Option<u64>),
    /// The claim of the CONNECT on this connection.
    Claim(ConnId),
    /// Reaping: adopt this id if the dead owner given still has it.
    Adopt(ByteString, String),
    /// This id leaves that node's sessions set if the caller still owns it
    /// (its routes are written: `connection::serve::release_previous`).
    Release(String, ByteString),
}

struct Node {
    broker: Broker,
    me: Owner,
    alive: bool,
    /// Subscribers' connections not closed yet: conn -> client.
    online: HashMap<ConnId, Client>,
    /// Packet ids each subscriber connection received and has not
    /// acknowledged yet.
    unacked: BTreeMap<ConnId, Vec<crate::protocol::PacketId>>,
    /// The publisher's connection, while it is up.
    publisher: Option<Client>,
    /// The publisher's unacknowledged publishes: packet id -> (id, number).
    publishing: BTreeMap<u16, (ByteString, u64)>,
    next_packet_id: u16,
    /// Calls sent to Redis and not run yet.
    calls: VecDeque<Call>,
    /// A write was refused since the last ticket: the ticket fails.
    write_failed: bool,
}

struct World {
    rng: fastrand::Rng,
    now: Instant,
    nodes: Vec<Node>,
    /// Messages between nodes, in order per (from, to). Ordered, so that a
    /// seed picks the same link every run (the crate's maps are keyed at
    /// random per process).
    links: BTreeMap<(usize, usize), VecDeque<NodeMessage>>,
    redis: redis::Redis,
    attempts: Vec<Attempt>,
    next_conn: ConnId,
    log: Vec<String>,
    /// The newest generation each node's session of each id has had.
    generations: HashMap<(usize, ByteString), u64>,
    /// Dead lives whose routes every node has dropped (reaping is over).
    forgotten: BTreeSet<String>,
    /// The number the next publish carries.
    next_message: u64,
    /// Per id: the number of the first publish after its first SUBACK. From
    /// there on, every acknowledged publish to it is owed to it.
    owed_from: BTreeMap<ByteString, u64>,
    /// Publishes acknowledged to their publisher: (id, number).
    acknowledged: BTreeSet<(ByteString, u64)>,
    /// Publishes a subscriber connection received: (id, number).
    received: BTreeSet<(ByteString, u64)>,
}

impl World {
    fn new(seed: u64) -> World {
        let now = Instant::now();
        let mut settings = settings();
        settings.limits.max_offline_messages = 10_000;
        let nodes = (0..NODES)
            .map(|i| {
                let mut broker = Broker::new(0, 1, settings.clone())
                    .with_store()
                    .with_stored_messages();
                broker.loaded();
                // Every node routes every id's topic to every other one:
                // the route feed is not simulated.
                let filter = TopicFilter::new("t/+".to_owned()).expect("a filter");
                broker.route_updates(
                    (0..NODES)
                        .filter(|&j| j != i)
                        .map(|j| RouteUpdate::Change {
                            node: name(j).into(),
                            shard: 0,
                            filter: filter.clone(),
                            added: true,
                        })
                        .collect(),
                );
                Node {
                    broker,
                    me: Owner {
                        node: name(i).to_owned(),
                        boot: 1,
                    },
                    alive: true,
                    online: HashMap::default(),
                    unacked: BTreeMap::new(),
                    publisher: None,
                    publishing: BTreeMap::new(),
                    next_packet_id: 0,
                    calls: VecDeque::new(),
                    write_failed: false,
                }
            })
            .collect();
        World {
            rng: fastrand::Rng::with_seed(seed),
            now,
            nodes,
            links: BTreeMap::new(),
            redis: Default::default(),
            attempts: Vec::new(),
            next_conn: 0,
            log: Vec::new(),
            generations: HashMap::default(),
            forgotten: BTreeSet::new(),
            next_message: 0,
            owed_from: BTreeMap::new(),
            acknowledged: BTreeSet::new(),
            received: BTreeSet::new(),
        }
    }

    fn step(&mut self) {
        self.now += Duration::from_millis(self.rng.u64(0..200));
        match self.rng.u8(0..100) {
            0..10 => self.connect(),
            10..25 => self.run_call(),
            25..35 => self.reply(),
            35..60 => self.deliver(),
            60..70 => self.check_waits(),
            70..80 => self.publish(),
            80..88 => self.acknowledge(),
            88..90 => self.kill(),
            90..94 => self.reap(),
            _ => self.tick(),
        }
        self.after_each();
    }

    fn connect(&mut self) {
        let node = self.rng.usize(0..NODES);
        let id = ByteString::from(IDS[self.rng.usize(0..IDS.len())]);
        if !self.nodes[node].alive {
            return;
        }
        if !self.begin_connect(node, id.clone(), "") {
            self.log.push(format!("{}: CONNECT {id} busy", name(node)));
        }
    }

    /// Starts a CONNECT of `id` on `node`: its claim joins the node's calls
    /// to Redis. `false` while one of the id claims or waits there.
    fn begin_connect(&mut self, node: usize, id: ByteString, note: &str) -> bool {
        self.next_conn += 1;
        let conn = self.next_conn;
        if !self.nodes[node].broker.begin_claim(&id) {
            return false;
        }
        self.log
            .push(format!("{}: CONNECT {id} as {conn}{note}", name(node)));
        self.nodes[node].calls.push_back(Call::Claim(conn));
        self.attempts.push(Attempt {
            node,
            id,
            conn,
            stage: Stage::Claiming,
        });
        true
    }

    /// Redis runs the oldest call of a random node.
    fn run_call(&mut self) {
        let waiting: Vec<usize> = (0..NODES)
            .filter(|&i| self.nodes[i].alive && !self.nodes[i].calls.is_empty())
            .collect();
        if waiting.is_empty() {
            return;
        }
        let node = waiting[self.rng.usize(0..waiting.len())];
        if let Some(call) = self.nodes[node].calls.pop_front() {
            self.run(node, call, true);
        }
    }

    /// Redis runs `call` of `node`; `answered`: the node is alive to hear
    /// the answer.
    fn run(&mut self, node: usize, call: Call, answered: bool) {
        let now = self.now;
        match call {
            Call::Write(ops, ticket) => {
                let n = &mut self.nodes[node];
                for op in ops {
                    // The writes whose failure the next ticket reports, as
                    // `RedisStore::write` gives them an origin.
                    let reported = matches!(
                        op,
                        StoreOp::Queue { .. }
                            | StoreOp::Online { .. }
                            | StoreOp::Subscribe { .. }
                            | StoreOp::Unsubscribe { .. }
                    );
                    if !self.redis.write(name(node), op) && reported {
                        n.write_failed = true;
                    }
                }
                if let (Some(ticket), true) = (ticket, answered) {
                    let stored = !std::mem::take(&mut n.write_failed);
                    n.broker.stored(ticket, stored);
                }
            }
            Call::Claim(conn) => {
                let Some(a) = self.attempts.iter_mut().find(|a| a.conn == conn) else {
                    return;
                };
                let owner = self.nodes[a.node].me.to_field();
                let Some(claim) = self.redis.claim(&a.id, &owner, None, now) else {
                    unreachable!("a CONNECT's claim always runs");
                };
                self.log.push(format!(
                    "redis: {} claims {} at {}",
                    name(a.node),
                    a.id,
                    claim.generation
                ));
                a.stage = Stage::Replied(claim);
            }
            Call::Adopt(id, dead) => {
                let dead_node = dead.split('#').next().unwrap_or_default().to_owned();
                let owner = self.redis.owner(&id).map(str::to_owned);
                if owner.as_deref() != Some(&dead) {
                    // Gone, or another life's: it leaves the dead node's set
                    // unless that life is alive (it takes it out itself).
                    let alive = self
                        .nodes
                        .iter()
                        .any(|n| n.alive && owner.as_deref() == Some(&n.me.to_field()));
                    if !alive {
                        self.redis.srem(&dead_node, &id);
                    }
                    return;
                }
                let me = self.nodes[node].me.to_field();
                let Some(claim) = self.redis.claim(&id, &me, Some(&dead), now) else {
                    return;
                };
                self.redis.sadd(name(node), &id);
                self.log.push(format!(
                    "redis: {} adopts {id} from {dead} at {}",
                    name(node),
                    claim.generation
                ));
                if !answered {
                    return;
                }
                let peers = self.peers_of(node);
                let n = &mut self.nodes[node];
                let generation = claim.generation;
                n.broker.adopted(&id, claim, now);
                n.broker.adopted_from_dead(&id, generation, &n.me, &peers);
                // Once its routes are written (after the writes just made).
                n.calls.push_back(Call::Release(dead_node, id));
            }
            Call::Release(from, id) => {
                if self.redis.owner(&id) == Some(&self.nodes[node].me.to_field()) {
                    self.redis.srem(&from, &id);
                }
            }
        }
    }

    /// The other nodes alive, as `node` knows them from the leases.
    fn peers_of(&self, node: usize) -> Vec<Owner> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|&(i, n)| n.alive && i != node)
            .map(|(_, n)| n.me.clone())
            .collect()
    }

    /// One claim's reply reaches its node.
    fn reply(&mut self) {
        let Some(i) = self.pick(|s| matches!(s, Stage::Replied(_))) else {
            return;
        };
        let Stage::Replied(mut claim) =
            std::mem::replace(&mut self.attempts[i].stage, Stage::Claiming)
        else {
            unreachable!("picked a reply");
        };
        let (node, id) = (self.attempts[i].node, self.attempts[i].id.clone());
        let peers = self.peers_of(node);
        let n = &mut self.nodes[node];
        let next = n.broker.after_claim(
            &id,
            claim.generation,
            claim.previous.as_deref(),
            &n.me,
            &peers,
            self.now,
        );
        n.broker.claim_replied(&id, &mut claim, self.now);
        self.log.push(format!(
            "{}: claim of {id} at {}: {next:?}",
            name(node),
            claim.generation
        ));
        match next {
            AfterClaim::Accept => self.finish(i, claim),
            AfterClaim::Refuse(_) => self.refuse(i),
            AfterClaim::Wait => {
                self.attempts[i].stage = Stage::Waiting(claim, self.now + HANDOVER_WAIT);
            }
        }
    }

    /// Waiting CONNECTs whose answer came go on; those past their wait fail.
    fn check_waits(&mut self) {
        let mut i = 0;
        while i < self.attempts.len() {
            let a = &self.attempts[i];
            if let Stage::Waiting(_, until) = a.stage {
                if !self.nodes[a.node].broker.awaits_handover(&a.id) {
                    let Stage::Waiting(claim, _) =
                        std::mem::replace(&mut self.attempts[i].stage, Stage::Claiming)
                    else {
                        unreachable!("waiting");
                    };
                    self.finish(i, claim);
                    continue;
                }
                if self.now >= until {
                    self.log
                        .push(format!("{}: {} timed out", name(a.node), a.id));
                    let Stage::Waiting(claim, _) =
                        std::mem::replace(&mut self.attempts[i].stage, Stage::Claiming)
                    else {
                        unreachable!("waiting");
                    };
                    let (node, id) = (self.attempts[i].node, self.attempts[i].id.clone());
                    let now = self.now;
                    let previous = claim.previous.clone();
                    self.nodes[node].broker.claim_refused(&id, claim, now);
                    self.release_previous(node, &id, previous);
                    self.refuse(i);
                    continue;
                }
            }
            i += 1;
        }
    }

    /// The CONNECT of attempt `i` is through its claim: accepted unless a
    /// newer claim took the id meanwhile. Its CONNACK and what follows are
    /// read in [`World::after_each`].
    fn finish(&mut self, i: usize, claim: Claim) {
        let a = self.attempts.swap_remove(i);
        let now = self.now;
        let n = &mut self.nodes[a.node];
        let generation = claim.generation;
        let previous = claim.previous.clone();
        let won = n.broker.claimed(&a.id, claim, now);
        let mut c = connect(crate::protocol::Version::V5, &a.id, false);
        c.properties.session_expiry_interval = Some(600);
        let accepted = won.then(|| n.broker.connect_from(a.conn, &c, None, now));
        n.broker.end_claim(&a.id);
        match accepted {
            Some(Ok(client)) => {
                n.broker.deliver_early(&a.id, now);
                n.online.insert(a.conn, client);
                self.log.push(format!(
                    "{}: {} online as {} at {generation}",
                    name(a.node),
                    a.id,
                    a.conn
                ));
                self.release_previous(a.node, &a.id, previous);
            }
            _ => self.log.push(format!("{}: {} refused", name(a.node), a.id)),
        }
    }

    /// `node` holds `id`, claimed from `previous`: once its writes so far
    /// (the session's routes) are through, the id leaves the previous
    /// node's sessions set, as `connection::serve::release_previous` does.
    fn release_previous(&mut self, node: usize, id: &ByteString, previous: Option<String>) {
        let Some(previous) = previous.and_then(|p| Owner::from_field(&p)) else {
            return;
        };
        if previous.node != name(node) {
            self.send_writes(node);
            self.nodes[node]
                .calls
                .push_back(Call::Release(previous.node, id.clone()));
        }
    }

    /// What `Shard::wake` sends to Redis: the store writes since the last
    /// wake, and the ticket of the acknowledgements they hold.
    fn send_writes(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let ticket = n.broker.seal_acks();
        let ops = n.broker.take_store_ops();
        if !ops.is_empty() || ticket.is_some() {
            n.calls.push_back(Call::Write(ops, ticket));
        }
    }

    fn refuse(&mut self, i: usize) {
        let a = self.attempts.swap_remove(i);
        self.nodes[a.node].broker.end_claim(&a.id);
        self.log.push(format!("{}: {} refused", name(a.node), a.id));
    }

    /// One message on a random link with something on it.
    fn deliver(&mut self) {
        let busy = self.busy_links();
        if busy.is_empty() {
            return;
        }
        let (from, to) = busy[self.rng.usize(0..busy.len())];
        self.deliver_one(from, to);
    }

    /// The links with messages on them: `(from, to)`.
    fn busy_links(&self) -> Vec<(usize, usize)> {
        self.links
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(&k, _)| k)
            .collect()
    }

    fn deliver_one(&mut self, from: usize, to: usize) {
        let Some(m) = self
            .links
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
        else {
            return;
        };
        if self.nodes[to].alive {
            self.log
                .push(format!("{} -> {}: {m:?}", name(from), name(to)));
            let now = self.now;
            self.nodes[to]
                .broker
                .on_node_message(&ByteString::from(name(from)), m, now);
        }
    }

    /// A node other than the last one alive dies: its connections with it.
    /// Redis has run some of the calls it sent, and never answers them.
    fn kill(&mut self) {
        let alive: Vec<usize> = (0..NODES).filter(|&i| self.nodes[i].alive).collect();
        if alive.len() < 2 {
            return;
        }
        let dead = alive[self.rng.usize(0..alive.len())];
        let ran = self.rng.usize(0..=self.nodes[dead].calls.len());
        self.log.push(format!(
            "{} dies, {ran} of its {} calls run",
            name(dead),
            self.nodes[dead].calls.len()
        ));
        let calls: Vec<Call> = self.nodes[dead].calls.drain(..).take(ran).collect();
        for call in calls {
            self.run(dead, call, false);
        }
        let n = &mut self.nodes[dead];
        n.alive = false;
        n.online.clear();
        n.unacked.clear();
        n.publisher = None;
        n.publishing.clear();
        self.attempts.retain(|a| a.node != dead);
        self.links
            .retain(|&(from, to), _| from != dead && to != dead);
        let now = self.now;
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if i != dead && n.alive {
                n.broker.node_died(name(dead), now);
            }
        }
    }

    fn tick(&mut self) {
        let now = self.now;
        for n in self.nodes.iter_mut().filter(|n| n.alive) {
            n.broker.tick(now);
        }
    }

    /// A node's publisher publishes one QoS 1 message to a random id's
    /// topic, connecting first if it is not connected, and unless the
    /// broker holds it back (out of credit) or its window is full.
    fn publish(&mut self) {
        let node = self.rng.usize(0..NODES);
        let id = ByteString::from(IDS[self.rng.usize(0..IDS.len())]);
        let now = self.now;
        let n = &mut self.nodes[node];
        if !n.alive {
            return;
        }
        if n.publisher.is_none() {
            self.next_conn += 1;
            let c = connect(crate::protocol::Version::V5, &format!("p{node}"), true);
            let client = n
                .broker
                .connect_from(self.next_conn, &c, None, now)
                .expect("a publisher connects");
            n.publisher = Some(client);
        }
        let Some(client) = n.publisher.as_mut() else {
            return;
        };
        if n.broker.out_of_credit(client.conn) || n.publishing.len() >= PUBLISHER_WINDOW {
            return;
        }
        n.next_packet_id = n.next_packet_id % 1000 + 1;
        let number = self.next_message;
        self.next_message += 1;
        n.publishing.insert(n.next_packet_id, (id.clone(), number));
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::new(format!("t/{id}")).expect("a topic"),
            packet_id: crate::protocol::PacketId::new(n.next_packet_id),
            payload: Bytes::from(number.to_string()),
            properties: PublishProperties::default(),
        });
        self.log
            .push(format!("{}: publishes {number} to {id}", name(node)));
        let handled = n.broker.handle(client, publish, now);
        n.broker.take_congested();
        if handled.is_err() {
            let conn = client.conn;
            n.broker.close_connection(conn, ReasonCode::ProtocolError);
        }
    }

    /// A subscriber connection acknowledges what it received.
    fn acknowledge(&mut self) {
        let node = self.rng.usize(0..NODES);
        let now = self.now;
        let n = &mut self.nodes[node];
        let Some((&conn, _)) = n.unacked.iter().find(|(_, ids)| !ids.is_empty()) else {
            return;
        };
        let ids = n.unacked.remove(&conn).unwrap_or_default();
        if let Some(client) = n.online.get_mut(&conn) {
            for id in ids {
                let _ = n.broker.handle(client, Packet::PubAck(Ack::new(id)), now);
            }
        }
    }

    /// A live node starts reaping a dead life: it asks Redis to adopt each
    /// session that life still owns. Once none is left, every node drops
    /// the dead life's routes (the feed's `gone`).
    fn reap(&mut self) {
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !n.alive && !self.forgotten.contains(&n.me.to_field()))
            .map(|n| n.me.to_field())
            .collect();
        let alive: Vec<usize> = (0..NODES).filter(|&i| self.nodes[i].alive).collect();
        if dead.is_empty() || alive.is_empty() {
            return;
        }
        let life = dead[self.rng.usize(0..dead.len())].clone();
        let reaper = alive[self.rng.usize(0..alive.len())];
        let node = life.split('#').next().unwrap_or_default().to_owned();
        let left = self.redis.set(&node);
        if left.is_empty() {
            self.log.push(format!("{life} is forgotten"));
            for n in self.nodes.iter_mut().filter(|n| n.alive) {
                n.broker.route_updates(vec![RouteUpdate::Gone {
                    node: node.as_str().into(),
                }]);
            }
            self.forgotten.insert(life);
            return;
        }
        self.log
            .push(format!("{} reaps {life}: {left:?}", name(reaper)));
        for id in left {
            self.nodes[reaper]
                .calls
                .push_back(Call::Adopt(id, life.clone()));
        }
    }

    /// What the I/O layer does after each wake: hand the clients what the
    /// broker sent them, close what it closed, send the store writes to
    /// Redis and what it has for other nodes.
    fn after_each(&mut self) {
        let now = self.now;
        for i in 0..NODES {
            if !self.nodes[i].alive {
                self.nodes[i].broker.to_nodes.clear();
                continue;
            }
            self.read_outputs(i);
            let n = &mut self.nodes[i];
            for conn in n.broker.take_closing() {
                let reason = OfflineReason::from_reason_code(n.broker.closing_reason(conn));
                if let Some(client) = n.online.remove(&conn) {
                    n.unacked.remove(&conn);
                    n.broker.disconnected_because(&client, None, reason, now);
                    self.log
                        .push(format!("{}: {} closed", name(i), client.client_id()));
                } else if n.publisher.as_ref().is_some_and(|p| p.conn == conn) {
                    if let Some(client) = n.publisher.take() {
                        n.broker.disconnected_because(&client, None, reason, now);
                    }
                    n.publishing.clear();
                    self.log.push(format!("{}: publisher closed", name(i)));
                }
            }
            self.send_writes(i);
            for (to, m) in std::mem::take(&mut self.nodes[i].broker.to_nodes) {
                let Some(to) = (0..NODES).find(|&j| to == name(j)) else {
                    continue;
                };
                if self.nodes[to].alive {
                    self.links.entry((i, to)).or_default().push_back(m);
                } else if let NodeMessage::Barrier { ticket, .. } = m {
                    self.log.push(format!(
                        "{}: barrier {ticket} to dead {}",
                        name(i),
                        name(to)
                    ));
                    // Not sent: the batch fails at once, as in `Shard::wake`.
                    self.nodes[i].broker.node_stored(name(to), ticket, false);
                }
            }
        }
    }

    /// What node `i`'s clients got: a subscriber subscribes when its
    /// CONNACK says no session was present (its SUBACK is read in the second
    /// round), and keeps what it receives for [`World::acknowledge`]; a
    /// publisher's PUBACKs acknowledge.
    fn read_outputs(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.nodes[i];
        let mut conns: Vec<ConnId> = n.online.keys().copied().collect();
        conns.sort_unstable();
        for _ in 0..2 {
            for &conn in &conns {
                let Some(client) = n.online.get_mut(&conn) else {
                    continue;
                };
                let id = client.client_id().clone();
                for packet in n.broker.take_output(conn).packets {
                    match packet {
                        Packet::ConnAck(ack) if !ack.session_present => {
                            let filter = format!("t/{id}");
                            let sub = super::tests::subscribe(&filter, QoS::AtLeastOnce);
                            let _ = n.broker.handle(client, sub, now);
                        }
                        Packet::SubAck(_) => {
                            self.owed_from
                                .entry(id.clone())
                                .or_insert(self.next_message);
                        }
                        Packet::Publish(p) => {
                            let number = std::str::from_utf8(&p.payload)
                                .ok()
                                .and_then(|s| s.parse().ok())
                                .expect("a number");
                            self.log
                                .push(format!("{}: {id} receives {number}", name(i)));
                            self.received.insert((id.clone(), number));
                            if let Some(packet_id) = p.packet_id {
                                n.unacked.entry(conn).or_default().push(packet_id);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        let Some(publisher) = &n.publisher else {
            return;
        };
        for packet in n.broker.take_output(publisher.conn).packets {
            if let Packet::PubAck(ack) = packet {
                if let Some(m) = n.publishing.remove(&ack.packet_id.get()) {
                    self.log
                        .push(format!("{}: {} to {} acknowledged", name(i), m.1, m.0));
                    self.acknowledged.insert(m);
                }
            }
        }
    }

    /// A random attempt at a stage `matches` accepts.
    fn pick(&mut self, matches: impl Fn(&Stage) -> bool) -> Option<usize> {
        let at: Vec<usize> = (0..self.attempts.len())
            .filter(|&i| matches(&self.attempts[i].stage))
            .collect();
        (!at.is_empty()).then(|| at[self.rng.usize(0..at.len())])
    }

    /// At most one connection per client id, on the nodes alive.
    fn check_one_owner(&self) -> Result<(), String> {
        for id in IDS {
            let online: Vec<(usize, ConnId)> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.alive)
                .flat_map(|(i, n)| {
                    n.online
                        .iter()
                        .filter(|(_, c)| *c.client_id() == id)
                        .map(move |(&conn, _)| (i, conn))
                })
                .collect();
            if online.len() > 1 {
                return Err(format!("{id} is online {online:?}"));
            }
        }
        Ok(())
    }

    /// A node's session of an id never goes back to an older generation: a
    /// claim that Redis ordered before a takeover the node heard of, and
    /// that answers late, is refused.
    fn check_generations_grow(&mut self) -> Result<(), String> {
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
            for (id, entry) in n.broker.sessions.iter() {
                let Some(generation) = entry.generation else {
                    continue;
                };
                let newest = self.generations.entry((i, id.clone())).or_insert(0);
                if generation < *newest {
                    return Err(format!(
                        "{id} on {} went from generation {newest} to {generation}",
                        name(i)
                    ));
                }
                *newest = generation;
            }
        }
        Ok(())
    }

    /// Runs everything in flight, lets every wait end, reaps every dead
    /// life and acknowledges everything received, until nothing moves.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let busy = self.busy_links();
            let calls = self.nodes.iter().any(|n| n.alive && !n.calls.is_empty());
            let reaping = self
                .nodes
                .iter()
                .any(|n| !n.alive && !self.forgotten.contains(&n.me.to_field()));
            let unacked = self
                .nodes
                .iter()
                .any(|n| n.unacked.values().any(|ids| !ids.is_empty()));
            if busy.is_empty() && self.attempts.is_empty() && !calls && !reaping && !unacked {
                return;
            }
            for i in 0..NODES {
                while self.nodes[i].alive && !self.nodes[i].calls.is_empty() {
                    if let Some(call) = self.nodes[i].calls.pop_front() {
                        self.run(i, call, true);
                    }
                    self.after_each();
                }
            }
            while self.pick(|s| matches!(s, Stage::Replied(_))).is_some() {
                self.reply();
                self.after_each();
            }
            for (from, to) in busy {
                self.deliver_one(from, to);
                self.after_each();
            }
            if reaping {
                self.reap();
                self.after_each();
            }
            for _ in 0..NODES {
                self.acknowledge();
                self.after_each();
            }
            self.now += Duration::from_millis(100);
            self.check_waits();
            self.tick();
            self.after_each();
        }
    }

    /// Once settled: each id that subscribed connects again where Redis
    /// says its session is (or anywhere, if nowhere), unless it is online.
    fn come_back(&mut self) {
        for id in IDS {
            let online = self
                .nodes
                .iter()
                .any(|n| n.alive && n.online.values().any(|c| *c.client_id() == id));
            if online || !self.owed_from.contains_key(id) {
                continue;
            }
            let owner = self.redis.owner(id).map(str::to_owned);
            let alive: Vec<usize> = (0..NODES).filter(|&i| self.nodes[i].alive).collect();
            let node = alive
                .iter()
                .copied()
                .find(|&i| owner.as_deref() == Some(self.nodes[i].me.to_field().as_str()))
                .unwrap_or(alive[0]);
            self.begin_connect(node, ByteString::from(id), " (last)");
        }
    }

    /// Once settled: the connection left for each id, if any, is on the
    /// node Redis names.
    fn check_store_names_the_owner(&self) -> Result<(), String> {
        for id in IDS {
            let named = self.redis.owner(id);
            for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
                let online = n.online.values().any(|c| *c.client_id() == id);
                if online && named != Some(n.me.to_field().as_str()) {
                    return Err(format!(
                        "{id} online on {} but Redis names {named:?}",
                        name(i)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Once settled and every subscriber back: each publish acknowledged
    /// after its id's first SUBACK reached a connection of that id.
    fn check_nothing_lost(&self) -> Result<(), String> {
        let lost: Vec<&(ByteString, u64)> = self
            .acknowledged
            .iter()
            .filter(|(id, number)| {
                self.owed_from.get(id).is_some_and(|from| number >= from)
                    && !self.received.contains(&(id.clone(), *number))
            })
            .collect();
        match lost.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "acknowledged and never received: {lost:?} ({} acknowledged)",
                self.acknowledged.len()
            )),
        }
    }
}

fn name(i: usize) -> &'static str {
    ["a", "b", "c"][i]
}

fn run(seed: u64) -> Result<(), (String, Vec<String>)> {
    let mut w = World::new(seed);
    for _ in 0..STEPS {
        w.step();
        w.check_one_owner().map_err(|e| (e, w.log.clone()))?;
        w.check_generations_grow().map_err(|e| (e, w.log.clone()))?;
    }
    w.settle();
    w.come_back();
    w.settle();
    w.check_one_owner().map_err(|e| (e, w.log.clone()))?;
    w.check_store_names_the_owner()
        .map_err(|e| (e, w.log.clone()))?;
    w.check_nothing_lost().map_err(|e| (e, w.log.clone()))
}

#[test]
fn one_owner_and_no_acknowledged_message_lost_across_seeded_runs() {
    // `OWNERS_SIM_SEED=n` runs seed n alone and prints its whole log;
    // `OWNERS_SIM_SEEDS=n` runs n seeds instead of SEEDS, to hunt further.
    let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let one = env("OWNERS_SIM_SEED");
    let seeds: Vec<u64> = match one {
        Some(seed) => vec![seed],
        None => (0..env("OWNERS_SIM_SEEDS").unwrap_or(SEEDS))
            .chain(REGRESSIONS)
            .collect(),
    };
    for seed in seeds {
        if let Err((why, log)) = run(seed) {
            let tail = match one {
                Some(_) => 0,
                None => log.len().saturating_sub(60),
            };
            panic!("seed {seed}: {why}\n{}", log[tail..].join("\n"));
        }
    }
}
