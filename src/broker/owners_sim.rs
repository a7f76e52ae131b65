//! A seeded simulation of the server's own ownership code ([`super::owners`]):
//! three single-shard brokers stand for three nodes, a map stands for Redis's
//! CLAIM script (one generation per claim, the owner before it), and links
//! deliver each pair's messages in order but at random times. CONNECTs of two
//! client ids come at random on random nodes; claims run in Redis and their
//! replies arrive later, in any order; takeovers wait for their answers or
//! time out; nodes die. After every step: at most one connection per client
//! id, and no node's session of an id back at an older generation. At the end, once everything in flight is delivered: the connection
//! left, if any, is on the node Redis names.
//!
//! Seeds 1 and 21 found claims whose node died between its claim and its
//! reply, leaving the connection before it alive, and seed 5060 a claim of
//! a node's own that timed out with its takeovers on their way: every live
//! node now hears of a claim after another claim ([`Broker::after_claim`]).
//! (Those seed numbers are from before the links' order was fixed; the
//! last case is seed 51978 now, kept in [`REGRESSIONS`].)
//!
//! The simulation in [`crate::cluster::sim`] checks the sans-IO machines of
//! [`crate::cluster::takeover`]; this one drives `Broker` itself, as
//! `connection::serve` does.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::tests::{connect, settings};
use super::*;
use crate::cluster::frame::Message as NodeMessage;
use crate::events::OfflineReason;
use crate::store::{Claim, Owner, StoredSession};

const NODES: usize = 3;
const IDS: [&str; 2] = ["x", "y"];
const SEEDS: u64 = 500;
/// Seeds past [`SEEDS`] that once failed, run every time.
const REGRESSIONS: [u64; 1] = [51978];
const STEPS: usize = 300;
/// How long a CONNECT waits for the node it takes the session from.
const HANDOVER_WAIT: Duration = Duration::from_secs(3);

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
    Replied {
        generation: u64,
        previous: Option<String>,
    },
    /// Waiting for the answer to a takeover, until the instant given.
    Waiting {
        generation: u64,
        previous: Option<String>,
        until: Instant,
    },
}

struct Node {
    broker: Broker,
    me: Owner,
    alive: bool,
    /// Accepted connections not closed yet: conn -> client.
    online: HashMap<ConnId, Client>,
}

struct World {
    rng: fastrand::Rng,
    now: Instant,
    nodes: Vec<Node>,
    /// Messages between nodes, in order per (from, to). Ordered, so that a
    /// seed picks the same link every run (the crate's maps are keyed at
    /// random per process).
    links: BTreeMap<(usize, usize), VecDeque<NodeMessage>>,
    /// Redis: client id -> (generation, owner field).
    store: HashMap<ByteString, (u64, String)>,
    attempts: Vec<Attempt>,
    next_conn: ConnId,
    log: Vec<String>,
    /// The newest generation each node's session of each id has had.
    generations: HashMap<(usize, ByteString), u64>,
}

impl World {
    fn new(seed: u64) -> World {
        let now = Instant::now();
        let nodes = (0..NODES)
            .map(|i| {
                let mut broker = Broker::new(0, 1, settings()).with_store();
                broker.loaded();
                Node {
                    broker,
                    me: Owner {
                        node: name(i).to_owned(),
                        boot: 1,
                    },
                    alive: true,
                    online: HashMap::default(),
                }
            })
            .collect();
        World {
            rng: fastrand::Rng::with_seed(seed),
            now,
            nodes,
            links: BTreeMap::new(),
            store: HashMap::default(),
            attempts: Vec::new(),
            next_conn: 0,
            log: Vec::new(),
            generations: HashMap::default(),
        }
    }

    fn step(&mut self) {
        self.now += Duration::from_millis(self.rng.u64(0..200));
        match self.rng.u8(0..100) {
            0..15 => self.connect(),
            15..30 => self.run_claim(),
            30..45 => self.reply(),
            45..80 => self.deliver(),
            80..92 => self.check_waits(),
            92..94 => self.kill(),
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
        self.next_conn += 1;
        let conn = self.next_conn;
        if !self.nodes[node].broker.begin_claim(&id) {
            self.log.push(format!("{}: CONNECT {id} busy", name(node)));
            return;
        }
        self.log
            .push(format!("{}: CONNECT {id} as {conn}", name(node)));
        self.attempts.push(Attempt {
            node,
            id,
            conn,
            stage: Stage::Claiming,
        });
    }

    /// Redis runs one claim sent and not run yet.
    fn run_claim(&mut self) {
        let Some(i) = self.pick(|s| matches!(s, Stage::Claiming)) else {
            return;
        };
        let a = &mut self.attempts[i];
        let owner = self.nodes[a.node].me.to_field();
        let entry = self.store.entry(a.id.clone()).or_insert((0, String::new()));
        let previous = (!entry.1.is_empty()).then(|| entry.1.clone());
        entry.0 += 1;
        entry.1 = owner;
        let generation = entry.0;
        self.log.push(format!(
            "redis: {} claims {} at {generation}",
            name(a.node),
            a.id
        ));
        a.stage = Stage::Replied {
            generation,
            previous,
        };
    }

    /// One claim's reply reaches its node.
    fn reply(&mut self) {
        let Some(i) = self.pick(|s| matches!(s, Stage::Replied { .. })) else {
            return;
        };
        let Stage::Replied {
            generation,
            previous,
        } = std::mem::replace(&mut self.attempts[i].stage, Stage::Claiming)
        else {
            unreachable!("picked a reply");
        };
        let (node, id) = (self.attempts[i].node, self.attempts[i].id.clone());
        let alive: Vec<Owner> = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| n.me.clone())
            .collect();
        let n = &mut self.nodes[node];
        let peers: Vec<Owner> = alive.into_iter().filter(|o| *o != n.me).collect();
        let next = n.broker.after_claim(
            &id,
            generation,
            previous.as_deref(),
            &n.me,
            &peers,
            self.now,
        );
        self.log.push(format!(
            "{}: claim of {id} at {generation}: {next:?}",
            name(node)
        ));
        match next {
            AfterClaim::Accept => self.finish(i, generation, previous),
            AfterClaim::Refuse(_) => self.refuse(i),
            AfterClaim::Wait => {
                self.attempts[i].stage = Stage::Waiting {
                    generation,
                    previous,
                    until: self.now + HANDOVER_WAIT,
                }
            }
        }
    }

    /// Waiting CONNECTs whose answer came go on; those past their wait fail.
    fn check_waits(&mut self) {
        let mut i = 0;
        while i < self.attempts.len() {
            let a = &self.attempts[i];
            if let Stage::Waiting {
                generation,
                ref previous,
                until,
            } = a.stage
            {
                if !self.nodes[a.node].broker.awaits_handover(&a.id) {
                    let previous = previous.clone();
                    self.finish(i, generation, previous);
                    continue;
                }
                if self.now >= until {
                    self.log
                        .push(format!("{}: {} timed out", name(a.node), a.id));
                    self.refuse(i);
                    continue;
                }
            }
            i += 1;
        }
    }

    /// The CONNECT of attempt `i` is through its claim: accepted unless a
    /// newer claim took the id meanwhile.
    fn finish(&mut self, i: usize, generation: u64, previous: Option<String>) {
        let a = self.attempts.swap_remove(i);
        let now = self.now;
        let n = &mut self.nodes[a.node];
        let session = previous.is_some().then(|| StoredSession {
            expiry: Duration::from_secs(600),
            expires_in: None,
            subscriptions: Vec::new(),
            queued: Vec::new(),
        });
        let claim = Claim {
            generation,
            previous,
            session,
            orphan_will: None,
        };
        let won = n.broker.claimed(&a.id, claim, now);
        let mut c = connect(crate::protocol::Version::V5, &a.id, false);
        c.properties.session_expiry_interval = Some(600);
        let accepted = won.then(|| n.broker.connect_from(a.conn, &c, None, now));
        n.broker.end_claim(&a.id);
        match accepted {
            Some(Ok(client)) => {
                n.broker.deliver_early(&a.id, now);
                n.broker.take_output(a.conn);
                n.online.insert(a.conn, client);
                self.log.push(format!(
                    "{}: {} online as {} at {generation}",
                    name(a.node),
                    a.id,
                    a.conn
                ));
            }
            _ => self.log.push(format!("{}: {} refused", name(a.node), a.id)),
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
    fn kill(&mut self) {
        let alive: Vec<usize> = (0..NODES).filter(|&i| self.nodes[i].alive).collect();
        if alive.len() < 2 {
            return;
        }
        let dead = alive[self.rng.usize(0..alive.len())];
        self.log.push(format!("{} dies", name(dead)));
        self.nodes[dead].alive = false;
        self.nodes[dead].online.clear();
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

    /// What the I/O layer does after each wake: close what the broker
    /// closed, and send what it has for other nodes.
    fn after_each(&mut self) {
        let now = self.now;
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if !n.alive {
                n.broker.to_nodes.clear();
                continue;
            }
            for conn in n.broker.take_closing() {
                if let Some(client) = n.online.remove(&conn) {
                    let reason = OfflineReason::from_reason_code(n.broker.closing_reason(conn));
                    n.broker.disconnected_because(&client, None, reason, now);
                    self.log
                        .push(format!("{}: {} closed", name(i), client.client_id));
                }
            }
            for (to, m) in n.broker.to_nodes.drain(..) {
                let Some(to) = (0..NODES).find(|&j| to == name(j)) else {
                    continue;
                };
                self.links.entry((i, to)).or_default().push_back(m);
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
                        .filter(|(_, c)| c.client_id == id)
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
            for (id, entry) in &n.broker.sessions {
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

    /// Delivers everything in flight and lets every wait end.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let busy = self.busy_links();
            while self.pick(|s| matches!(s, Stage::Claiming)).is_some() {
                self.run_claim();
            }
            while self.pick(|s| matches!(s, Stage::Replied { .. })).is_some() {
                self.reply();
                self.after_each();
            }
            if busy.is_empty() && self.attempts.is_empty() {
                return;
            }
            for (from, to) in busy {
                self.deliver_one(from, to);
                self.after_each();
            }
            self.now += Duration::from_millis(100);
            self.check_waits();
            self.after_each();
        }
    }

    /// Once settled: the connection left for each id, if any, is on the node
    /// Redis names, unless Redis names a dead life: a claim whose node died
    /// before its reply. Reaping that life (not simulated here: the crash
    /// test in `tests/cluster.rs` runs it) claims the session again, and
    /// that claim's takeover ends the connection.
    fn check_store_names_the_owner(&self) -> Result<(), String> {
        for id in IDS {
            let named = self.store.get(id).map(|(_, o)| o.as_str());
            let named_alive = self
                .nodes
                .iter()
                .any(|n| n.alive && named == Some(n.me.to_field().as_str()));
            if !named_alive {
                continue;
            }
            for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
                let online = n.online.values().any(|c| c.client_id == id);
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
    w.check_one_owner().map_err(|e| (e, w.log.clone()))?;
    w.check_store_names_the_owner()
        .map_err(|e| (e, w.log.clone()))
}

#[test]
fn one_connection_per_client_id_across_seeded_runs() {
    for seed in (0..SEEDS).chain(REGRESSIONS) {
        if let Err((why, log)) = run(seed) {
            let tail = log.len().saturating_sub(40);
            panic!("seed {seed}: {why}\n{}", log[tail..].join("\n"));
        }
    }
}
