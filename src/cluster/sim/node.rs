//! One simulated node: the state machines under test, and a stand-in for
//! the broker around them (its sessions' queues and connections), wired the
//! way the server will wire them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::Bytes;

use crate::cluster::frame::{Message, Publish, Queued};
use crate::cluster::link::Link;
use crate::cluster::reaper::{ReapEffect, Reaper};
use crate::cluster::takeover::{Effect, Ownership, Route, State};
use crate::store::Owner;

/// A session as the broker holds it.
#[derive(Debug, Default, Clone)]
pub struct Session {
    pub clean: bool,
    /// The connected client: its connection id.
    pub conn: Option<u64>,
    /// Message ids queued for the client.
    pub queue: Vec<u64>,
    pub generation: u64,
}

/// A CONNECT waiting for its claim and hand-over.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub conn: u64,
    pub clean: bool,
    pub will: bool,
}

/// What the node asks of the world (the store, the network, the checker).
#[derive(Debug)]
pub enum Out {
    Claim {
        client_id: String,
        clean: bool,
    },
    Reap(ReapEffect),
    /// Accepted: the publish `id` is in a session queue here.
    Accepted {
        origin: Owner,
        id: u64,
        /// The generation of the session it went into, and whether that is
        /// persistent (the sim's bookkeeping; not on the wire).
        generation: u64,
        persistent: bool,
    },
    /// A connection got its CONNACK.
    Connected {
        client_id: String,
        conn: u64,
        generation: u64,
        will: bool,
        clean: bool,
    },
    /// A connection was closed by the node (0x8E).
    Closed {
        conn: u64,
    },
    /// A connection was replaced by a new CONNECT here: the broker publishes
    /// its will (its session's generation still holds it in the store).
    Replaced {
        client_id: String,
        conn: u64,
        generation: u64,
    },
    Refused {
        conn: u64,
        reason: u8,
    },
    /// Clean session's route added or removed here.
    Route {
        client_id: String,
        added: bool,
    },
    PublishWill {
        will: Bytes,
    },
    /// Record in the store that a takeover finished.
    Settle {
        client_id: String,
        generation: u64,
    },
    /// For the failure trace.
    Note(String),
    /// An invariant broken inside the node.
    Violation(String),
}

pub struct Node {
    pub life: Owner,
    pub own: Ownership,
    pub reaper: Reaper,
    /// One link per peer life.
    pub links: BTreeMap<(String, u64), Link>,
    pub sessions: BTreeMap<String, Session>,
    pub waiting: BTreeMap<String, Waiting>,
    /// The node's view of who owns each client id: what routing would give
    /// it from the route sets and change feed, and as stale.
    pub routes: BTreeMap<String, Owner>,
    /// Lives this node has seen in a lease listing, by node id.
    pub known: BTreeMap<String, u64>,
    /// The last generation this node held each session at (the sim's
    /// bookkeeping of what a message accepted here went into).
    pub held: BTreeMap<String, u64>,
    /// Lives whose reaping this node started.
    pub reaping: BTreeSet<(String, u64)>,
    pub out: Vec<Out>,
    /// Report a node taking messages into a session it handed over (off to
    /// show that the loss check catches it as well).
    pub checks: bool,
}

impl Node {
    pub fn new(life: Owner, ownership: Ownership) -> Node {
        Node {
            reaper: Reaper::new(life.clone()),
            life,
            own: ownership,
            links: BTreeMap::new(),
            sessions: BTreeMap::new(),
            waiting: BTreeMap::new(),
            routes: BTreeMap::new(),
            known: BTreeMap::new(),
            reaping: BTreeSet::new(),
            held: BTreeMap::new(),
            out: Vec::new(),
            checks: true,
        }
    }

    pub fn link(&mut self, to: &Owner) -> &mut Link {
        self.links
            .entry((to.node.clone(), to.boot))
            .or_insert_with(|| Link::new(100_000))
    }

    pub fn connect(&mut self, now: Instant, client_id: &str, conn: u64, clean: bool, will: bool) {
        match self.own.connect(client_id) {
            Err(reason) => self.out.push(Out::Refused { conn, reason }),
            Ok(()) => {
                // A connection of the id here already is replaced at once
                // (the broker's own local takeover).
                if let Some(s) = self.sessions.get_mut(client_id) {
                    if let Some(old) = s.conn.take() {
                        self.out.push(Out::Replaced {
                            client_id: client_id.to_owned(),
                            conn: old,
                            generation: s.generation,
                        });
                    }
                    // A clean session ends with its connection.
                    if s.clean {
                        self.sessions.remove(client_id);
                        self.out.push(Out::Route {
                            client_id: client_id.to_owned(),
                            added: false,
                        });
                    }
                }
                self.waiting
                    .insert(client_id.to_owned(), Waiting { conn, clean, will });
            }
        }
        self.pump(now);
    }

    /// The client's connection closed; returns the session's generation if
    /// it was connected here.
    pub fn disconnect(&mut self, now: Instant, client_id: &str, conn: u64) -> Option<(u64, bool)> {
        let s = self.sessions.get_mut(client_id)?;
        if s.conn != Some(conn) {
            return None;
        }
        s.conn = None;
        let (generation, clean) = (s.generation, s.clean);
        if clean {
            self.sessions.remove(client_id);
            self.out.push(Out::Route {
                client_id: client_id.to_owned(),
                added: false,
            });
        }
        self.own.disconnected(now, client_id, clean);
        Some((generation, clean))
    }

    /// A publish for `client_id`, from a link or from a local publisher.
    pub fn publish(&mut self, now: Instant, client_id: &str, publish: Publish) {
        let (origin, id) = (publish.origin.clone(), publish.id);
        let handed =
            self.checks && matches!(self.own.state(client_id), Some(State::HandedOver { .. }));
        if self.own.deliver(client_id, publish) == Route::Local {
            if handed {
                self.out.push(Out::Violation(format!(
                    "{}#{} took message {id} for {client_id} into a session it handed over",
                    self.life.node, self.life.boot
                )));
            }
            let s = self.sessions.entry(client_id.to_owned()).or_default();
            if !s.queue.contains(&id) {
                s.queue.push(id);
            }
            let persistent = self.persistent(client_id);
            let generation = self.generation(client_id);
            self.out.push(Out::Accepted {
                origin,
                id,
                generation,
                persistent,
            });
        }
        self.pump(now);
    }

    pub fn handle_message(&mut self, now: Instant, from: &Owner, message: Message) {
        match message {
            Message::Publish(p) => {
                let client_id = p.topic.strip_prefix("c/").unwrap_or("").to_owned();
                self.publish(now, &client_id, p);
            }
            Message::Accepted { id } => self.out.push(Out::Accepted {
                origin: self.life.clone(),
                id,
                generation: 0,
                persistent: false,
            }),
            m => {
                self.own.handle_message(now, from, m);
                self.pump(now);
            }
        }
    }

    /// Whether the session of `client_id` here is (or will be, for a waiting
    /// CONNECT) persistent.
    fn persistent(&self, client_id: &str) -> bool {
        match self.waiting.get(client_id) {
            Some(w) => !w.clean,
            None => self.sessions.get(client_id).is_none_or(|s| !s.clean),
        }
    }

    /// The generation of the session a message accepted now goes into.
    fn generation(&self, client_id: &str) -> u64 {
        match self.own.state(client_id) {
            Some(State::Receiving { wait, .. }) => wait.generation,
            Some(State::Owned { generation }) => *generation,
            _ => self.held.get(client_id).copied().unwrap_or(0),
        }
    }

    /// Delivers what is queued to connected clients; returns (client, id).
    pub fn deliver(&mut self) -> Vec<(String, u64)> {
        let mut delivered = Vec::new();
        for (c, s) in &mut self.sessions {
            if s.conn.is_some() {
                delivered.extend(s.queue.drain(..).map(|id| (c.clone(), id)));
            }
        }
        delivered
    }

    /// Runs the state machines' effects until there are none.
    pub fn pump(&mut self, now: Instant) {
        self.pump_effects(now);
        for c in self.sessions.keys() {
            match self.own.state(c) {
                Some(State::Owned { generation }) => {
                    self.held.insert(c.clone(), *generation);
                }
                Some(State::Receiving { wait, .. }) => {
                    self.held.insert(c.clone(), wait.generation);
                }
                _ => {}
            }
        }
    }

    fn pump_effects(&mut self, now: Instant) {
        while let Some(e) = self.own.poll_effect() {
            self.apply(e);
        }
        while let Some(e) = self.reaper.poll_effect() {
            match e {
                ReapEffect::Adopted {
                    client_id,
                    generation,
                    dead,
                    persistent,
                } => {
                    self.own.adopted(now, &client_id, generation, dead);
                    let took =
                        self.own.state(&client_id).and_then(State::generation) == Some(generation);
                    if !took {
                        // This node holds a newer claim: the adoption is moot.
                    } else if persistent {
                        let s = self.sessions.entry(client_id).or_default();
                        s.generation = generation;
                    } else {
                        self.own.disconnected(now, &client_id, true);
                    }
                }
                ReapEffect::PublishWill { will, .. } => self.out.push(Out::PublishWill { will }),
                ReapEffect::Reaped { .. } => {}
                e => self.out.push(Out::Reap(e)),
            }
            while let Some(e) = self.own.poll_effect() {
                self.apply(e);
            }
        }
    }

    fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Claim { client_id } => {
                let clean = self.waiting.get(&client_id).is_some_and(|w| w.clean);
                self.out.push(Out::Claim { client_id, clean });
            }
            Effect::Settle {
                client_id,
                generation,
            } => self.out.push(Out::Settle {
                client_id,
                generation,
            }),
            Effect::Send { to, message } => {
                self.link(&to).send(message);
            }
            Effect::Disconnect { client_id, .. } => {
                let Some(s) = self.sessions.get_mut(&client_id) else {
                    return;
                };
                if let Some(conn) = s.conn.take() {
                    self.out.push(Out::Closed { conn });
                    if s.clean {
                        self.out.push(Out::Route {
                            client_id: client_id.clone(),
                            added: false,
                        });
                    }
                }
            }
            Effect::Surrender { client_id } => {
                let queue = match self.sessions.get_mut(&client_id) {
                    // Still connected: only a broken node keeps its client.
                    Some(s) if s.conn.is_some() => std::mem::take(&mut s.queue),
                    _ => self
                        .sessions
                        .remove(&client_id)
                        .map(|s| s.queue)
                        .unwrap_or_default(),
                };
                self.out.push(Out::Note(format!(
                    "surrender {client_id} with {queue:?}: {:?}",
                    self.own.state(&client_id)
                )));
                let messages = queue.iter().map(|id| queued(*id, &client_id)).collect();
                self.own.surrendered(&client_id, Bytes::new(), messages);
            }
            Effect::Accept {
                client_id,
                generation,
            } => {
                let Some(w) = self.waiting.remove(&client_id) else {
                    return;
                };
                let s = self.sessions.entry(client_id.clone()).or_default();
                if w.clean {
                    s.queue.clear();
                }
                s.clean = w.clean;
                s.conn = Some(w.conn);
                s.generation = generation;
                if w.clean {
                    self.out.push(Out::Route {
                        client_id: client_id.clone(),
                        added: true,
                    });
                }
                self.out.push(Out::Connected {
                    client_id,
                    conn: w.conn,
                    generation,
                    will: w.will,
                    clean: w.clean,
                });
            }
            Effect::Refuse { client_id, reason } => {
                if let Some(w) = self.waiting.remove(&client_id) {
                    self.out.push(Out::Refused {
                        conn: w.conn,
                        reason,
                    });
                }
            }
            Effect::Restore {
                client_id,
                messages,
                ..
            } => {
                let clean = !self.persistent(&client_id);
                let ids: Vec<u64> = messages.iter().map(|q| q.publish.id).collect();
                self.out.push(Out::Note(format!(
                    "restore {client_id} {ids:?} clean={clean}"
                )));
                if clean {
                    return;
                }
                let generation = self.generation(&client_id);
                let s = self.sessions.entry(client_id).or_default();
                for q in messages {
                    if !s.queue.contains(&q.publish.id) {
                        s.queue.push(q.publish.id);
                    }
                    // Forwarded after the hand-over began: no one accepted it
                    // yet. (What the old owner had queued carries no origin.)
                    if !q.publish.origin.node.is_empty() {
                        self.out.push(Out::Accepted {
                            origin: q.publish.origin,
                            id: q.publish.id,
                            generation,
                            persistent: true,
                        });
                    }
                }
            }
        }
    }
}

/// A queued message as the sim names it: its id, for its client's topic.
pub fn queued(id: u64, client_id: &str) -> Queued {
    Queued {
        inflight: false,
        publish: Publish {
            origin: Owner {
                node: String::new(),
                boot: 0,
            },
            id,
            topic: format!("c/{client_id}"),
            payload: Bytes::new(),
            qos: 1,
            retain: false,
            properties: Bytes::new(),
        },
    }
}
