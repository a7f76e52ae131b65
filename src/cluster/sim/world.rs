//! The simulated cluster: nodes, the model store, a network that drops,
//! delays, duplicates and reorders, and clients and publishers; one seeded
//! schedule drives it all, and the invariants are checked after every step.
//!
//! Durability is modelled as `durability = "sessions"`: a message is
//! acknowledged to its publisher once a node holding the subscriber's
//! session (owning it, or receiving it) has queued it, and lives in memory
//! only. So an acknowledged message may be lost only with the memory of a
//! node that died: queued on it, or in a link towards it. Anything else is a
//! loss the checker reports.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

mod check;

use super::node::{Node, Out};
use super::rng::Rng;
use super::store::{Claimed, Store};
use crate::cluster::frame::{self, Frame, Message, Publish};
use crate::cluster::reaper::{Adoption, ReapEffect};
use crate::cluster::takeover::{Breaks, Ownership};
use crate::store::Owner;

/// Simulated time per step.
const TICK: Duration = Duration::from_millis(10);
/// Steps of the quiet phase, at most, for every acknowledged message to
/// arrive.
const QUIET_STEPS: u64 = 3000;

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub nodes: usize,
    pub clients: usize,
    pub steps: u64,
    pub drop: f64,
    pub kill: f64,
    pub breaks: Breaks,
    pub node_checks: bool,
}

impl Config {
    /// A configuration drawn from the seed itself.
    pub fn from_seed(rng: &mut Rng, breaks: Breaks) -> Config {
        Config {
            nodes: 2 + rng.below(3),
            clients: 1 + rng.below(4),
            steps: 150 + rng.below(250) as u64,
            drop: [0.0, 0.05, 0.2][rng.below(3)],
            kill: [0.0, 0.01, 0.04][rng.below(3)],
            breaks,
            node_checks: true,
        }
    }
}

#[derive(Debug)]
struct Msg {
    client_id: String,
    acked: bool,
    /// Acknowledged while the subscriber's session was persistent: the
    /// checker holds the cluster to it.
    tracked: bool,
    delivered: bool,
    /// Whether the node that accepted it first put it in a persistent session.
    accepted_persistent: Option<bool>,
    /// Why losing it is allowed (a node died with it, a clean start).
    excused: Option<String>,
}

#[derive(Debug)]
enum ReapReply {
    Done,
    Listed(Vec<String>),
    Adopted(Adoption),
}

#[derive(Debug)]
enum Event {
    Frame {
        from: Owner,
        to: Owner,
        bytes: Bytes,
    },
    ClaimCall {
        life: Owner,
        client_id: String,
        clean: bool,
    },
    ClaimReply {
        life: Owner,
        client_id: String,
        claimed: Claimed,
    },
    ReapCall {
        life: Owner,
        effect: ReapEffect,
    },
    ReapReply {
        life: Owner,
        reply: ReapReply,
    },
}

/// What a run did, for the summary line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub steps: u64,
    pub acked: u64,
    pub excused: u64,
    pub kills: u64,
    pub wills: u64,
    /// Wills a CLAIM took out of the store for a node that died before it
    /// could publish them (see the report: CLAIM deletes the will).
    pub wills_lost: u64,
    pub stale_refused: u64,
}

pub struct World {
    rng: Rng,
    cfg: Config,
    step: u64,
    base: Instant,
    nodes: Vec<Option<Node>>,
    /// Every life a node index had, for restarts.
    lives: Vec<Option<Owner>>,
    next_boot: u64,
    store: Store,
    events: BTreeMap<(u64, u64), Event>,
    seq: u64,
    msgs: BTreeMap<u64, Msg>,
    next_id: u64,
    next_conn: u64,
    /// Connection id → client id.
    conns: BTreeMap<u64, String>,
    wills: BTreeMap<u64, u32>,
    /// The store's generation per client id, last seen.
    store_gens: BTreeMap<String, u64>,
    /// Each life's generation per client id, last seen.
    node_gens: BTreeMap<(String, u64, String), u64>,
    /// Connections whose will reached the store.
    stored_wills: BTreeSet<u64>,
    /// Wills a CLAIM handed to a node that died before publishing them.
    lost_wills: BTreeSet<u64>,
    /// The first invariant a node broke, reported by the next check.
    violations: Option<String>,
    /// Every claim's generation per client id, and whether it was clean.
    claims: BTreeMap<String, BTreeMap<u64, bool>>,
    chaos: bool,
    trace: VecDeque<String>,
    stats: Stats,
}

impl World {
    pub fn new(seed: u64, breaks: Breaks) -> World {
        World::build(seed, breaks, true)
    }

    /// Without the nodes' own check that no message goes into a session
    /// handed over: to show the loss check catches that too.
    pub fn without_node_checks(seed: u64, breaks: Breaks) -> World {
        World::build(seed, breaks, false)
    }

    fn build(seed: u64, breaks: Breaks, node_checks: bool) -> World {
        let mut rng = Rng::new(seed);
        let mut cfg = Config::from_seed(&mut rng, breaks);
        cfg.node_checks = node_checks;
        let mut w = World {
            rng,
            cfg,
            step: 0,
            base: Instant::now(),
            nodes: Vec::new(),
            lives: vec![None; cfg.nodes],
            next_boot: 1,
            store: Store::default(),
            events: BTreeMap::new(),
            seq: 0,
            msgs: BTreeMap::new(),
            next_id: 1,
            next_conn: 1,
            conns: BTreeMap::new(),
            wills: BTreeMap::new(),
            store_gens: BTreeMap::new(),
            node_gens: BTreeMap::new(),
            claims: BTreeMap::new(),
            violations: None,
            stored_wills: BTreeSet::new(),
            lost_wills: BTreeSet::new(),
            chaos: true,
            trace: VecDeque::new(),
            stats: Stats::default(),
        };
        w.nodes = (0..cfg.nodes).map(|_| None).collect();
        for i in 0..cfg.nodes {
            w.start(i);
        }
        w
    }

    /// The whole run: the chaotic phase, then a quiet one in which every
    /// acknowledged message must arrive.
    pub fn run(&mut self) -> Result<Stats, String> {
        for _ in 0..self.cfg.steps {
            self.step().map_err(|e| self.failure(e))?;
        }
        self.chaos = false;
        let mut quiet = 0;
        while !self.settled() {
            quiet += 1;
            if quiet > QUIET_STEPS {
                let lost = self.undelivered();
                return Err(self.failure(format!(
                    "acknowledged messages never delivered after {QUIET_STEPS} quiet steps: {lost}"
                )));
            }
            self.step().map_err(|e| self.failure(e))?;
        }
        self.final_checks().map_err(|e| self.failure(e))?;
        self.stats.steps = self.step;
        self.stats.excused = self
            .msgs
            .values()
            .filter(|m| m.acked && m.tracked && m.excused.is_some())
            .count() as u64;
        self.stats.stale_refused = self
            .nodes
            .iter()
            .flatten()
            .map(|n| n.own.stale_refused())
            .sum();
        Ok(self.stats)
    }

    fn failure(&self, e: String) -> String {
        let trace: Vec<&str> = self.trace.iter().map(|s| s.as_str()).collect();
        let mut states = Vec::new();
        for n in self.nodes.iter().flatten() {
            for c in self.store.sessions.keys() {
                states.push(format!(
                    "{}#{} {c}: {:?} {:?}",
                    n.life.node,
                    n.life.boot,
                    n.own.state(c),
                    n.sessions.get(c)
                ));
            }
        }
        format!(
            "step {}: {e}\n{:?}\nstates:\n  {}\nstore: {:?}\nlast events:\n  {}",
            self.step,
            self.cfg,
            states.join("\n  "),
            self.store.sessions,
            trace.join("\n  ")
        )
    }

    fn note(&mut self, s: String) {
        if self.trace.len() == 100 && std::env::var_os("SHARDMQ_SIM_SEED").is_none() {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{}: {s}", self.step));
    }

    fn now(&self) -> Instant {
        self.base + TICK * self.step as u32
    }

    fn now_ms(&self) -> u64 {
        self.step * TICK.as_millis() as u64
    }

    fn start(&mut self, i: usize) {
        let life = Owner {
            node: format!("n{i}"),
            boot: self.next_boot,
        };
        self.next_boot += 1;
        let mut own = Ownership::new(life.clone(), Duration::from_secs(1), Duration::from_secs(3));
        own.set_breaks(self.cfg.breaks);
        self.store.lease(&life, self.now_ms(), true);
        // The join's reply lists the members: the node knows them first.
        own.handle_members(&self.store.members(self.now_ms()));
        let mut node = Node::new(life.clone(), own);
        node.checks = self.cfg.node_checks;
        // The loader adopts what the node's past life left.
        if let Some(past) = self.lives[i].replace(life.clone()) {
            node.reaping.insert((past.node.clone(), past.boot));
            node.reaper.handle_died(past);
        }
        self.note(format!("start {}#{}", life.node, life.boot));
        self.nodes[i] = Some(node);
        self.drain(i);
    }

    fn alive(&self, life: &Owner) -> Option<usize> {
        let i = life.node.strip_prefix('n')?.parse::<usize>().ok()?;
        self.nodes
            .get(i)?
            .as_ref()
            .filter(|n| n.life == *life)
            .map(|_| i)
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    fn schedule(&mut self, delay: u64, event: Event) {
        self.seq += 1;
        self.events.insert((self.step + delay, self.seq), event);
    }

    fn delay(&mut self) -> u64 {
        1 + self.rng.below(if self.chaos { 8 } else { 3 }) as u64
    }

    pub fn step(&mut self) -> Result<(), String> {
        self.step += 1;
        let now_ms = self.now_ms();
        for n in self.nodes.iter().flatten() {
            self.store.lease(&n.life, now_ms, false);
        }
        while let Some(entry) = self.events.first_entry() {
            if entry.key().0 > self.step {
                break;
            }
            let event = entry.remove();
            self.event(event)?;
        }
        self.act()?;
        for i in self.live() {
            self.tick(i)?;
        }
        self.check()
    }

    fn event(&mut self, event: Event) -> Result<(), String> {
        let now = self.now();
        match event {
            Event::Frame { from, to, bytes } => {
                // A dead life's connections are reset: nothing more of it
                // arrives.
                let (Some(i), Some(_)) = (self.alive(&to), self.alive(&from)) else {
                    return Ok(());
                };
                let mut buf = BytesMut::from(&bytes[..]);
                let frame = frame::decode(&mut buf, frame::MAX_FRAME)
                    .map_err(|e| format!("a frame the codec wrote does not decode: {e}"))?
                    .ok_or("a frame the codec wrote is incomplete")?;
                let node = self.nodes[i].as_mut().ok_or("dead")?;
                node.link(&from).handle_frame(now, frame);
                let to = node.life.clone();
                let mut got = Vec::new();
                while let Some(m) = self.nodes[i]
                    .as_mut()
                    .ok_or("dead")?
                    .link(&from)
                    .poll_message()
                {
                    if !matches!(m, Message::Publish(_) | Message::Accepted { .. }) {
                        got.push(format!("{m:?}"));
                    }
                    self.nodes[i]
                        .as_mut()
                        .ok_or("dead")?
                        .handle_message(now, &from, m);
                }
                for m in got {
                    self.note(format!(
                        "{}#{} -> {}#{}: {m}",
                        from.node, from.boot, to.node, to.boot
                    ));
                }
                self.drain(i);
            }
            Event::ClaimCall {
                life,
                client_id,
                clean,
            } => {
                // The request was sent: it runs even if its node died since.
                let claimed = self.store.claim(&client_id, &life, clean);
                self.note(format!(
                    "claim {client_id} by {}#{} clean={clean}: gen {} prev {:?}",
                    life.node, life.boot, claimed.generation, claimed.previous
                ));
                if clean {
                    self.excuse_client(&client_id, "a clean start discarded it");
                }
                self.claims
                    .entry(client_id.clone())
                    .or_default()
                    .insert(claimed.generation, clean);
                let d = self.delay();
                self.schedule(
                    d,
                    Event::ClaimReply {
                        life,
                        client_id,
                        claimed,
                    },
                );
            }
            Event::ClaimReply {
                life,
                client_id,
                claimed,
            } => {
                let Some(i) = self.alive(&life) else {
                    if let Some(w) = claimed.orphan_will {
                        self.lost_wills.insert(w);
                        self.stats.wills_lost += 1;
                        self.note(format!("will of {client_id} died with its claimer"));
                    }
                    return Ok(());
                };
                if let Some(w) = claimed.orphan_will {
                    self.publish_will(w)?;
                }
                let node = self.nodes[i].as_mut().ok_or("dead")?;
                node.own.handle_claim(
                    now,
                    &client_id,
                    claimed.generation,
                    claimed.previous,
                    claimed.settled,
                );
                node.pump(now);
                self.drain(i);
            }
            Event::ReapCall { life, effect } => {
                let reply = match effect {
                    ReapEffect::RemoveRoutes { dead } => {
                        self.store.remove_routes(&dead);
                        ReapReply::Done
                    }
                    ReapEffect::List { dead } => ReapReply::Listed(
                        self.store
                            .node_sessions
                            .get(&dead.node)
                            .map(|s| s.iter().cloned().collect())
                            .unwrap_or_default(),
                    ),
                    ReapEffect::Adopt { client_id, dead } => {
                        let a = self.store.adopt(&client_id, &dead, &life);
                        if let Adoption::Adopted {
                            generation,
                            persistent,
                            ..
                        } = &a
                        {
                            self.claims
                                .entry(client_id.clone())
                                .or_default()
                                .insert(*generation, !persistent);
                            self.note(format!(
                                "adopt {client_id} from {}#{} by {}#{}: gen {generation}",
                                dead.node, dead.boot, life.node, life.boot
                            ));
                        }
                        ReapReply::Adopted(a)
                    }
                    _ => return Ok(()),
                };
                let d = self.delay();
                self.schedule(d, Event::ReapReply { life, reply });
            }
            Event::ReapReply { life, reply } => {
                let Some(i) = self.alive(&life) else {
                    if let ReapReply::Adopted(Adoption::Adopted { will: Some(w), .. }) = &reply {
                        self.lost_wills.insert(will_id(w));
                        self.stats.wills_lost += 1;
                    }
                    return Ok(());
                };
                let node = self.nodes[i].as_mut().ok_or("dead")?;
                match reply {
                    ReapReply::Done => node.reaper.handle_done(),
                    ReapReply::Listed(l) => node.reaper.handle_listed(l),
                    ReapReply::Adopted(a) => node.reaper.handle_adopted(a),
                }
                node.pump(now);
                self.drain(i);
            }
        }
        Ok(())
    }

    /// One random action of clients, publishers or fate.
    fn act(&mut self) -> Result<(), String> {
        let live = self.live();
        let Some(&i) = self.rng.pick(&live) else {
            return Ok(());
        };
        let client_id = format!("c{}", self.rng.below(self.cfg.clients));
        let roll = self.rng.below(100);
        if !self.chaos {
            // Quiet: every persistent session gets a client, publishers stop.
            if roll < 10 {
                self.reconnect_all();
            }
            return Ok(());
        }
        match roll {
            0..=24 => {
                let clean = self.rng.chance(0.2);
                let will = self.rng.chance(0.5);
                self.connect(i, &client_id, clean, will);
            }
            25..=34 => {
                let conns: Vec<u64> = self.connected().into_iter().map(|(c, _)| c).collect();
                if let Some(&conn) = self.rng.pick(&conns) {
                    self.disconnect(conn)?;
                }
            }
            35..=79 => self.publish(i, &client_id),
            80..=89 => self.refresh_routes(i),
            _ => {
                if self.rng.chance(self.cfg.kill * 10.0) {
                    let dead: Vec<usize> = (0..self.nodes.len())
                        .filter(|j| self.nodes[*j].is_none())
                        .collect();
                    if self.rng.chance(0.5) && live.len() > 1 {
                        self.kill(i)?;
                    } else if let Some(&j) = self.rng.pick(&dead) {
                        self.start(j);
                    }
                }
            }
        }
        Ok(())
    }

    fn connect(&mut self, i: usize, client_id: &str, clean: bool, will: bool) {
        let conn = self.next_conn;
        let now = self.now();
        self.next_conn += 1;
        self.conns.insert(conn, client_id.to_owned());
        if let Some(node) = self.nodes[i].as_mut() {
            let life = node.life.clone();
            node.connect(now, client_id, conn, clean, will);
            self.note(format!(
                "connect {client_id} conn {conn} at {}#{} clean={clean} will={will}",
                life.node, life.boot
            ));
        }
        self.drain(i);
    }

    /// (connection, node index) of every connected client.
    fn connected(&self) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for s in n.iter().flat_map(|n| n.sessions.values()) {
                if let Some(c) = s.conn {
                    out.push((c, i));
                }
            }
        }
        out
    }

    fn disconnect(&mut self, conn: u64) -> Result<(), String> {
        let Some((_, i)) = self.connected().into_iter().find(|(c, _)| *c == conn) else {
            return Ok(());
        };
        let client_id = self.conns.get(&conn).cloned().unwrap_or_default();
        let now = self.now();
        let node = self.nodes[i].as_mut().ok_or("dead")?;
        if let Some((generation, _)) = node.disconnect(now, &client_id, conn) {
            self.note(format!(
                "disconnect {client_id} conn {conn} gen {generation}: store {:?}",
                self.store.sessions.get(&client_id)
            ));
            if let Some(w) = self.store.take_will(&client_id, generation) {
                self.publish_will(w)?;
            }
        }
        self.drain(i);
        Ok(())
    }

    fn publish(&mut self, i: usize, client_id: &str) {
        let id = self.next_id;
        let now = self.now();
        self.next_id += 1;
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let Some(owner) = node.routes.get(client_id).cloned() else {
            return;
        };
        self.msgs.insert(
            id,
            Msg {
                client_id: client_id.to_owned(),
                acked: false,
                tracked: false,
                delivered: false,
                accepted_persistent: None,
                excused: None,
            },
        );
        let publish = Publish {
            origin: node.life.clone(),
            id,
            topic: format!("c/{client_id}"),
            payload: Bytes::new(),
            qos: 1,
            retain: false,
            properties: Bytes::new(),
        };
        if owner == node.life {
            node.publish(now, client_id, publish);
        } else {
            node.link(&owner).send(Message::Publish(publish));
        }
        self.drain(i);
    }

    /// The node's route index catches up with the store.
    fn refresh_routes(&mut self, i: usize) {
        let owners: BTreeMap<String, Owner> = self
            .store
            .sessions
            .iter()
            .filter_map(|(c, s)| Some((c.clone(), s.owner.clone()?)))
            .collect();
        if let Some(n) = self.nodes[i].as_mut() {
            n.routes = owners;
        }
    }

    fn kill(&mut self, i: usize) -> Result<(), String> {
        let before = self.holders();
        let Some(node) = self.nodes[i].take() else {
            return Ok(());
        };
        self.stats.kills += 1;
        self.note(format!("kill {}#{}", node.life.node, node.life.boot));
        let after = self.holders();
        for (id, m) in &mut self.msgs {
            if before.contains(id) && !after.contains(id) && m.excused.is_none() {
                m.excused = Some(format!(
                    "only {}#{} held it",
                    node.life.node, node.life.boot
                ));
            }
        }
        Ok(())
    }

    fn reconnect_all(&mut self) {
        let live = self.live();
        let connected: BTreeSet<String> = self
            .connected()
            .iter()
            .filter_map(|(c, _)| self.conns.get(c).cloned())
            .collect();
        let waiting: BTreeSet<String> = self
            .nodes
            .iter()
            .flatten()
            .flat_map(|n| n.waiting.keys().cloned())
            .collect();
        let persistent: Vec<String> = self
            .store
            .sessions
            .iter()
            .filter(|(c, s)| s.persistent && !connected.contains(*c) && !waiting.contains(*c))
            .map(|(c, _)| c.clone())
            .collect();
        for c in persistent {
            if let Some(&i) = self.rng.pick(&live) {
                self.connect(i, &c, false, false);
            }
        }
    }

    /// Per node, each step: membership, timers, links, deliveries.
    fn tick(&mut self, i: usize) -> Result<(), String> {
        let now = self.now();
        let members = self.store.members(self.now_ms());
        let refresh = self.rng.chance(0.5);
        let node = self.nodes[i].as_mut().ok_or("dead")?;
        if refresh {
            node.own.handle_members(&members);
            for (life, alive) in &members {
                if let Some(old) = node.known.insert(life.node.clone(), life.boot) {
                    if old != life.boot {
                        let past = Owner {
                            node: life.node.clone(),
                            boot: old,
                        };
                        if node.reaping.insert((past.node.clone(), old)) {
                            node.reaper.handle_died(past);
                        }
                    }
                }
                if !alive
                    && *life != node.life
                    && node.reaping.insert((life.node.clone(), life.boot))
                {
                    node.reaper.handle_died(life.clone());
                }
            }
            // A link to a dead life is closed, and what it held is gone.
            let current: BTreeMap<&String, (u64, bool)> = members
                .iter()
                .map(|(o, a)| (&o.node, (o.boot, *a)))
                .collect();
            let mut closed = Vec::new();
            node.links.retain(|(peer, boot), link| {
                let keep = current
                    .get(peer)
                    .is_none_or(|(b, alive)| b == boot && *alive);
                if !keep {
                    for m in link.pending() {
                        if let Message::HandOver { messages, .. } = m {
                            closed.extend(messages.iter().map(|q| q.publish.id));
                        }
                    }
                }
                keep
            });
            for id in closed {
                if let Some(m) = self.msgs.get_mut(&id) {
                    m.excused
                        .get_or_insert_with(|| "handed over to a life that died".into());
                }
            }
        }
        node.own.handle_timeout(now);
        node.reaper.handle_timeout(now);
        node.pump(now);
        let mut frames = Vec::new();
        for ((peer, boot), link) in &mut node.links {
            while let Some(f) = link.poll_transmit(now) {
                frames.push((
                    Owner {
                        node: peer.clone(),
                        boot: *boot,
                    },
                    f,
                ));
            }
        }
        let from = node.life.clone();
        let delivered = node.deliver();
        for (_, id) in delivered {
            if let Some(m) = self.msgs.get_mut(&id) {
                m.delivered = true;
            }
        }
        for (to, f) in frames {
            self.transmit(&from, to, f);
        }
        self.drain(i);
        Ok(())
    }

    fn transmit(&mut self, from: &Owner, to: Owner, f: Frame) {
        if self.chaos && self.rng.chance(self.cfg.drop) {
            return;
        }
        let mut buf = BytesMut::new();
        f.encode(&mut buf);
        let bytes = buf.freeze();
        let copies = if self.chaos && self.rng.chance(0.02) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.delay();
            self.schedule(
                d,
                Event::Frame {
                    from: from.clone(),
                    to: to.clone(),
                    bytes: bytes.clone(),
                },
            );
        }
    }

    /// Carries out what node `i` asked for.
    fn drain(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let life = node.life.clone();
        let outs = std::mem::take(&mut node.out);
        for out in outs {
            match out {
                Out::Claim { client_id, clean } => {
                    let d = self.delay();
                    self.schedule(
                        d,
                        Event::ClaimCall {
                            life: life.clone(),
                            client_id,
                            clean,
                        },
                    );
                }
                Out::Reap(effect) => {
                    let d = self.delay();
                    self.schedule(
                        d,
                        Event::ReapCall {
                            life: life.clone(),
                            effect,
                        },
                    );
                }
                Out::Accepted {
                    origin,
                    id,
                    generation,
                    persistent,
                } => {
                    if origin != life || generation != 0 {
                        // At the acceptor: a session the checker holds the
                        // cluster to is persistent, by a persistent claim, and
                        // no clean start came after it.
                        let client_id = self
                            .msgs
                            .get(&id)
                            .map(|m| m.client_id.clone())
                            .unwrap_or_default();
                        let claims = self.claims.get(&client_id);
                        let held = persistent
                            && claims.and_then(|c| c.get(&generation)) == Some(&false)
                            && !claims.is_some_and(|c| {
                                c.range(generation + 1..).any(|(_, clean)| *clean)
                            });
                        if let Some(m) = self.msgs.get_mut(&id) {
                            m.accepted_persistent.get_or_insert(held);
                        }
                    }
                    if origin == life {
                        self.ack(id);
                    } else if origin.node.is_empty() {
                        self.note(format!("BUG: accepted {id} without origin"));
                    } else if let Some(n) = self.nodes[i].as_mut() {
                        n.link(&origin).send(Message::Accepted { id });
                    }
                }
                Out::Connected {
                    client_id,
                    conn,
                    generation,
                    will,
                    clean,
                } => {
                    self.note(format!(
                        "connected {client_id} conn {conn} at {}#{} gen {generation} clean={clean}",
                        life.node, life.boot
                    ));
                    if self
                        .store
                        .online(&client_id, generation, will.then_some(conn))
                        && will
                    {
                        self.stored_wills.insert(conn);
                    }
                }
                Out::Replaced {
                    client_id,
                    conn,
                    generation,
                } => {
                    self.note(format!(
                        "replaced conn {conn} at {}#{}",
                        life.node, life.boot
                    ));
                    if let Some(w) = self.store.take_will(&client_id, generation) {
                        if let Err(e) = self.publish_will(w) {
                            self.violations.get_or_insert(e);
                        }
                    }
                }
                Out::Closed { conn } => {
                    self.note(format!("closed conn {conn} at {}#{}", life.node, life.boot));
                }
                Out::Refused { conn, reason } => {
                    self.note(format!(
                        "refused conn {conn} at {}#{}: {reason:#x}",
                        life.node, life.boot
                    ));
                }
                Out::Route { client_id, added } => self.store.route(&life, &client_id, added),
                Out::Note(s) => self.note(format!("{}#{} {s}", life.node, life.boot)),
                Out::Settle {
                    client_id,
                    generation,
                } => self.store.settle(&client_id, generation),
                Out::Violation(s) => {
                    self.violations.get_or_insert(s);
                }
                Out::PublishWill { will } => {
                    let w = will_id(&will);
                    if let Err(e) = self.publish_will(w) {
                        self.violations.get_or_insert(e);
                    }
                }
            }
        }
    }

    fn ack(&mut self, id: u64) {
        let Some(m) = self.msgs.get(&id) else {
            return;
        };
        if m.acked {
            return;
        }
        let tracked = m.accepted_persistent == Some(true);
        self.note(format!("ack {id} for {} tracked={tracked}", m.client_id));
        if let Some(m) = self.msgs.get_mut(&id) {
            m.acked = true;
            m.tracked = tracked;
        }
        self.stats.acked += tracked as u64;
    }

    fn publish_will(&mut self, will: u64) -> Result<(), String> {
        let n = {
            let n = self.wills.entry(will).or_default();
            *n += 1;
            *n
        };
        self.stats.wills += 1;
        self.note(format!("will of conn {will} published"));
        if n > 1 {
            return Err(format!(
                "the will of connection {will} was published {n} times"
            ));
        }
        Ok(())
    }

    fn excuse_client(&mut self, client_id: &str, why: &str) {
        for m in self.msgs.values_mut() {
            if m.client_id == client_id && !m.delivered && m.excused.is_none() {
                m.excused = Some(why.to_owned());
            }
        }
    }
}

/// The sim's will: the id of its connection, as the store holds it.
fn will_id(will: &[u8]) -> u64 {
    will.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}
