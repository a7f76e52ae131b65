//! Who owns each client id on this node, and the takeover between nodes,
//! sans-IO (quinn-proto's shape: `handle_*` for what happened, mutators for
//! the broker's commands, [`Ownership::poll_effect`] for what to do, getters).
//!
//! Redis settles ownership: each CLAIM increments the session's generation
//! and names the owner before it. Claims are serialized there, so the owners
//! form a chain, each one's predecessor named by its claim, and a takeover
//! only ever goes from a claim to the one before it:
//! - a CONNECT waits for its claim ([`State::Claiming`]); a second CONNECT of
//!   the id meanwhile is refused with "server busy";
//! - a claim whose predecessor is another live life sends it
//!   [`Message::Takeover`] and waits ([`State::Receiving`]), refusing other
//!   CONNECTs of the id, until [`Message::HandOverDone`] or the
//!   predecessor's death; only then does the client get its CONNACK, so two
//!   connections of one id never overlap;
//! - a claim (or an adoption by the reaper) whose predecessor is dead, or
//!   dies while it waits, or had not finished its own takeover (not
//!   `settled` in the store), asks every live node it has not asked yet, and
//!   waits for each: the predecessor may have claimed the session from a
//!   live node and died before taking it over, which would leave that node
//!   holding the client and its messages (seed 0 of the simulation found
//!   it). A node passing a session on does the same for its own claim when
//!   its predecessor dies;
//! - the predecessor disconnects its client (0x8E), hands the session over,
//!   and then forwards what still reaches it ([`State::HandedOver`]): routes
//!   elsewhere still name it for a while (the loss EMQX fixed in PR 6393). If
//!   it was itself still receiving, it passes on what arrives and says done
//!   only once its own predecessor did;
//! - a takeover whose generation is not above the one held is stale, and
//!   refused with [`Message::HandOverDone`] and nothing handed over: the
//!   requester's claim is outdated too, and must not wait on this node;
//! - a node takes no CONNECT before its first lease listing.
//!
//! What "dead" means comes from membership, in [`lives`]. The module's
//! types, and the deliberate breaks, are in [`state`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub mod lives;
pub mod state;

use super::frame::{Message, Publish, Queued};
use crate::store::Owner;
use lives::Lives;
pub use state::{Breaks, Effect, Route, State, Wait};

/// CONNACK "server busy": a CONNECT of an id whose hand-over is unfinished.
pub const SERVER_BUSY: u8 = 0x89;
/// CONNACK "server unavailable": no lease listing yet.
pub const SERVER_UNAVAILABLE: u8 = 0x88;
/// DISCONNECT "session taken over".
pub const SESSION_TAKEN_OVER: u8 = 0x8E;

#[derive(Debug)]
pub struct Ownership {
    me: Owner,
    entries: BTreeMap<String, State>,
    /// Which lives of other nodes are alive, from the lease listings.
    lives: Lives,
    effects: VecDeque<Effect>,
    /// How long a CONNECT waits for a hand-over before it is refused.
    handover_timeout: Duration,
    /// How long a handed-over id keeps forwarding.
    linger: Duration,
    /// Takeovers refused for a stale generation.
    stale: u64,
    /// Clean sessions that ended here lately: their last generation, and
    /// when to forget it.
    ended: BTreeMap<String, (u64, Instant)>,
    breaks: Breaks,
}

impl Ownership {
    pub fn new(me: Owner, handover_timeout: Duration, linger: Duration) -> Ownership {
        Ownership {
            lives: Lives::new(me.clone()),
            me,
            entries: BTreeMap::new(),
            effects: VecDeque::new(),
            handover_timeout,
            linger,
            stale: 0,
            ended: BTreeMap::new(),
            breaks: Breaks::default(),
        }
    }

    pub fn set_breaks(&mut self, breaks: Breaks) {
        self.breaks = breaks;
    }

    /// A CONNECT for `client_id` arrived here. `Err(reason)`: refuse it at
    /// once (a claim or hand-over of the id is unfinished here); otherwise it
    /// waits for [`Effect::Accept`] or [`Effect::Refuse`].
    pub fn connect(&mut self, client_id: &str) -> Result<(), u8> {
        // Without a lease listing this node cannot tell whom a takeover must
        // ask (seed 1346: a node just started asked no one and served a
        // second connection). Its join's listing comes first.
        if !self.lives.listed() {
            return Err(SERVER_UNAVAILABLE);
        }
        let forward_to = match self.entries.get(client_id) {
            None | Some(State::Owned { .. }) => None,
            Some(State::HandedOver {
                to,
                generation,
                wait: None,
                ..
            }) => Some((to.clone(), *generation)),
            // Unfinished here: a claim, a hand-over to this node, or one from
            // this node that still passes on its predecessors'. (Claiming anew
            // before that ends would let two claims of this node wait on each
            // other through a peer.)
            Some(_) => return Err(SERVER_BUSY),
        };
        self.entries.insert(
            client_id.to_owned(),
            State::Claiming {
                forward_to,
                takeover: None,
            },
        );
        self.effects.push_back(Effect::Claim {
            client_id: client_id.to_owned(),
        });
        Ok(())
    }

    /// The CLAIM of this node's waiting CONNECT returned `generation`, after
    /// `previous` (`None`: no one owned the session), whose own takeover had
    /// finished (`settled`, [`Effect::Settle`]) or not.
    ///
    /// An unsettled predecessor may still wait on a node that holds the
    /// session and its client, which it may never reach (it died, or its
    /// reply is late), so the claim asks every live node then (seed 2015: an
    /// adoption whose reply was not in yet; seed 7240: a claim between an
    /// adoption and this one).
    pub fn handle_claim(
        &mut self,
        now: Instant,
        client_id: &str,
        generation: u64,
        previous: Option<Owner>,
        settled: bool,
    ) {
        let Some(State::Claiming { takeover, .. }) = self.entries.get(client_id) else {
            return;
        };
        let takeover = takeover.clone();
        // A takeover that arrived while claiming, and that this claim
        // outdates: its requester waits on this node, which hands it nothing.
        if let Some((requester, older)) = takeover.as_ref().filter(|(_, g)| *g < generation) {
            self.stale += 1;
            self.send(
                requester.clone(),
                Message::HandOverDone {
                    client_id: client_id.to_owned(),
                    generation: *older,
                },
            );
        }
        let everyone = previous.is_some() && !settled;
        let wait = self.ask(client_id, generation, previous, everyone);
        match takeover {
            Some((to, newer)) if newer > generation => {
                self.refuse(client_id, SERVER_BUSY);
                self.hand_over(now, client_id, to, newer, Some(wait));
            }
            _ if wait.pending.is_empty() => {
                self.own(client_id, generation);
                self.effects.push_back(Effect::Accept {
                    client_id: client_id.to_owned(),
                    generation,
                });
            }
            _ => {
                self.entries.insert(
                    client_id.to_owned(),
                    State::Receiving {
                        wait,
                        since: now,
                        connect: true,
                    },
                );
            }
        }
    }

    /// Sends the takeover of this node's claim at `generation` after
    /// `previous`: to the predecessor if it lives, else to every live node.
    fn ask(
        &mut self,
        client_id: &str,
        generation: u64,
        previous: Option<Owner>,
        everyone: bool,
    ) -> Wait {
        let mut wait = Wait {
            generation,
            pending: Vec::new(),
            asked: Vec::new(),
        };
        if self.breaks.skip_takeover {
            return wait;
        }
        match previous.filter(|p| *p != self.me) {
            // The predecessor too, even if this node's listing does not show
            // it yet (seed 2334: it joined after that listing).
            Some(p) if everyone && self.is_alive(&p) => {
                wait.asked.push(p.clone());
                wait.pending.push(p);
                self.ask_everyone(&mut wait);
            }
            _ if everyone => {
                self.ask_everyone(&mut wait);
            }
            None => {}
            Some(p) if self.is_alive(&p) => {
                wait.asked.push(p.clone());
                wait.pending.push(p);
            }
            Some(_) => {
                self.ask_everyone(&mut wait);
            }
        }
        for p in &wait.pending {
            self.send(
                p.clone(),
                Message::Takeover {
                    client_id: client_id.to_owned(),
                    generation,
                    new_owner: self.me.clone(),
                },
            );
        }
        wait
    }

    /// Adds every live node not asked yet to `wait`; returns them.
    fn ask_everyone(&self, wait: &mut Wait) -> Vec<Owner> {
        let new: Vec<Owner> = self
            .lives
            .others()
            .filter(|o| !wait.asked.contains(o))
            .collect();
        wait.asked.extend(new.iter().cloned());
        wait.pending.extend(new.iter().cloned());
        new
    }

    /// The reaper (or the loader of a restarted node) adopted a session of a
    /// dead life at `generation`: it is this node's, offline, once every live
    /// node said it holds nothing of it (the dead life's claim may have been
    /// unfinished).
    pub fn adopted(&mut self, now: Instant, client_id: &str, generation: u64, dead: Owner) {
        match self.entries.get_mut(client_id) {
            // The adoption is unsettled, so the claim's reply, which names
            // this node (or a later claim) as its predecessor, asks everyone.
            Some(State::Claiming { .. }) => return,
            // This node claimed the session after the adoption already.
            Some(s) if s.generation().is_some_and(|g| g >= generation) => return,
            None if self
                .ended
                .get(client_id)
                .is_some_and(|(g, _)| *g >= generation) =>
            {
                return
            }
            // An older claim of this node lost to the dead life's: its
            // CONNECT is refused, the adoption takes over (seed 82).
            Some(State::Receiving { connect: true, .. }) => {
                self.refuse(client_id, SERVER_BUSY);
            }
            _ => {}
        }
        let wait = self.ask(client_id, generation, Some(dead), false);
        // A session this node was still passing on, to a claim the adoption
        // outdates: that taker must not wait on this node any more (seed
        // 119). The adoption's takeover went to it first, on the same link.
        if let Some(State::HandedOver {
            to,
            generation: g,
            wait: Some(_),
            ..
        }) = self.entries.get(client_id)
        {
            let (to, g) = (to.clone(), *g);
            self.send(
                to,
                Message::HandOverDone {
                    client_id: client_id.to_owned(),
                    generation: g,
                },
            );
        }
        if wait.pending.is_empty() {
            self.own(client_id, generation);
        } else {
            let state = State::Receiving {
                wait,
                since: now,
                connect: false,
            };
            self.entries.insert(client_id.to_owned(), state);
        }
    }

    /// The session is this node's at `generation`, with all there was.
    fn own(&mut self, client_id: &str, generation: u64) {
        self.entries
            .insert(client_id.to_owned(), State::Owned { generation });
        self.effects.push_back(Effect::Settle {
            client_id: client_id.to_owned(),
            generation,
        });
    }

    /// The broker took the session out after [`Effect::Surrender`]: send it on.
    pub fn surrendered(&mut self, client_id: &str, subscriptions: Bytes, messages: Vec<Queued>) {
        let Some(State::HandedOver {
            to,
            generation,
            wait,
            ..
        }) = self.entries.get(client_id)
        else {
            return;
        };
        let (to, generation) = (to.clone(), *generation);
        let done = wait.as_ref().is_none_or(|w| w.pending.is_empty());
        self.send(
            to.clone(),
            Message::HandOver {
                client_id: client_id.to_owned(),
                generation,
                subscriptions,
                messages,
            },
        );
        if done {
            self.send(
                to,
                Message::HandOverDone {
                    client_id: client_id.to_owned(),
                    generation,
                },
            );
        }
    }

    /// A publish for `client_id` reached this node: into the local session
    /// ([`Route::Local`], the caller queues it), or on to the new owner.
    pub fn deliver(&mut self, client_id: &str, publish: Publish) -> Route {
        let to = match self.entries.get(client_id) {
            None => return Route::Unknown,
            Some(State::HandedOver { .. }) if self.breaks.no_forwarding => return Route::Local,
            Some(State::HandedOver { to, generation, .. })
            | Some(State::Claiming {
                forward_to: Some((to, generation)),
                ..
            }) => (to.clone(), *generation),
            Some(_) => return Route::Local,
        };
        self.send(
            to.0,
            Message::HandOver {
                client_id: client_id.to_owned(),
                generation: to.1,
                subscriptions: Bytes::new(),
                messages: vec![Queued {
                    inflight: false,
                    publish,
                }],
            },
        );
        Route::Forwarded
    }

    /// The local client disconnected; a clean session ended with it
    /// (`ended`) is forgotten here, a persistent one stays owned.
    pub fn disconnected(&mut self, now: Instant, client_id: &str, ended: bool) {
        if let (true, Some(State::Owned { generation })) = (ended, self.entries.get(client_id)) {
            // Remembered a while, so that a late adoption's reply older than
            // it does not make the id this node's again (seed 3705).
            self.ended
                .insert(client_id.to_owned(), (*generation, now + self.linger));
            self.entries.remove(client_id);
        }
    }

    /// A takeover, hand-over or done from the peer `from`.
    pub fn handle_message(&mut self, now: Instant, from: &Owner, message: Message) {
        match message {
            Message::Takeover {
                client_id,
                generation,
                new_owner,
            } => self.handle_takeover(now, &client_id, generation, new_owner),
            Message::HandOver {
                client_id,
                generation,
                subscriptions,
                messages,
            } => match self.entries.get(&client_id) {
                // For this node's claim: from whichever node had it. Also
                // after the wait ended (a timeout, a death): still this
                // session's.
                // (Or for an earlier claim of this node, whose takeover the
                // sender obeyed after this node claimed again.)
                Some(State::Receiving { wait, .. }) if wait.generation >= generation => {
                    self.effects.push_back(Effect::Restore {
                        client_id,
                        subscriptions,
                        messages,
                    });
                }
                Some(State::Owned { generation: g }) if *g >= generation => {
                    self.effects.push_back(Effect::Restore {
                        client_id,
                        subscriptions,
                        messages,
                    });
                }
                // Claiming again with the session here: it is still this
                // node's until the claim says otherwise (seed 96243).
                Some(State::Claiming {
                    forward_to: None, ..
                }) => {
                    self.effects.push_back(Effect::Restore {
                        client_id,
                        subscriptions,
                        messages,
                    });
                }
                Some(State::HandedOver { to, generation, .. })
                | Some(State::Claiming {
                    forward_to: Some((to, generation)),
                    ..
                }) => {
                    let (to, generation) = (to.clone(), *generation);
                    self.send(
                        to,
                        Message::HandOver {
                            client_id,
                            generation,
                            subscriptions,
                            messages,
                        },
                    );
                }
                _ => {}
            },
            Message::HandOverDone {
                client_id,
                generation,
            } => self.done(&client_id, from, generation),
            Message::Publish(_)
            | Message::Accepted { .. }
            | Message::Route { .. }
            | Message::Barrier { .. }
            | Message::Stored { .. }
            | Message::Deliver { .. }
            | Message::Credit { .. } => {}
        }
    }

    fn handle_takeover(&mut self, now: Instant, client_id: &str, generation: u64, to: Owner) {
        let taker_alive = match self.entries.get(client_id) {
            Some(State::HandedOver { to: taker, .. }) => self.is_alive(taker),
            _ => false,
        };
        let held = match self.entries.get_mut(client_id) {
            None => {
                // Nothing here (forgotten after a hand-over, or never had it):
                // the requester need not wait.
                let done = Message::HandOverDone {
                    client_id: client_id.to_owned(),
                    generation,
                };
                self.send(to, done);
                return;
            }
            // Only the newest takeover can win against this claim; an older
            // one is outdated by it, and told so now (seed 901).
            Some(State::Claiming { takeover, .. }) => {
                let older = match takeover {
                    Some((_, g)) if *g >= generation => Some((to, generation)),
                    _ => takeover.replace((to, generation)),
                };
                if let Some((requester, g)) = older {
                    self.stale += 1;
                    let done = Message::HandOverDone {
                        client_id: client_id.to_owned(),
                        generation: g,
                    };
                    self.send(requester, done);
                }
                return;
            }
            // The session left already, to a claim before the requester's,
            // which that claim's takeover reaches in turn (and what arrives
            // here later follows the same path). Re-aiming it here would leave
            // the first taker waiting for a done that never comes (seed 36).
            // Unless that taker is dead: then the requester gets what comes.
            Some(State::HandedOver {
                generation: g,
                newer,
                ..
            }) if !self.breaks.accept_stale => {
                if generation > *g && newer.as_ref().is_none_or(|(_, n)| *n < generation) {
                    *newer = Some((to.clone(), generation));
                }
                if generation <= *g || taker_alive {
                    let done = Message::HandOverDone {
                        client_id: client_id.to_owned(),
                        generation,
                    };
                    self.send(to, done);
                    return;
                }
                *g
            }
            Some(s) => s.generation().unwrap_or(0),
        };
        if generation <= held && !self.breaks.accept_stale {
            // Refused: this node holds a newer claim. The requester's claim is
            // outdated too, and its own successor's takeover reaches it; it
            // must not wait on this node meanwhile.
            self.stale += 1;
            let done = Message::HandOverDone {
                client_id: client_id.to_owned(),
                generation,
            };
            self.send(to, done);
            return;
        }
        let wait = match self.entries.remove(client_id) {
            Some(State::Receiving { wait, connect, .. }) => {
                if connect {
                    self.refuse(client_id, SERVER_BUSY);
                }
                Some(wait)
            }
            Some(State::HandedOver { wait, .. }) => wait,
            _ => None,
        };
        self.hand_over(now, client_id, to, generation, wait);
    }

    /// Gives the session to `to`'s claim at `generation`; `wait`: this
    /// node's own claim, still receiving.
    fn hand_over(
        &mut self,
        now: Instant,
        client_id: &str,
        to: Owner,
        generation: u64,
        mut wait: Option<Wait>,
    ) {
        if let Some(w) = &mut wait {
            // What the requester would pass on to this node, it has itself.
            w.pending.retain(|u| *u != to);
        }
        self.entries.insert(
            client_id.to_owned(),
            State::HandedOver {
                to,
                generation,
                wait,
                until: now + self.linger,
                newer: None,
            },
        );
        if !self.breaks.keep_client {
            self.effects.push_back(Effect::Disconnect {
                client_id: client_id.to_owned(),
                reason: SESSION_TAKEN_OVER,
            });
        }
        self.effects.push_back(Effect::Surrender {
            client_id: client_id.to_owned(),
        });
    }

    /// `from` said it handed over all it had for this node's claim at
    /// `generation`.
    fn done(&mut self, client_id: &str, from: &Owner, generation: u64) {
        let wait = match self.entries.get_mut(client_id) {
            Some(State::Receiving { wait, .. }) => wait,
            Some(State::HandedOver {
                wait: Some(wait), ..
            }) => wait,
            _ => return,
        };
        if wait.generation != generation || !wait.pending.contains(from) {
            return;
        }
        wait.pending.retain(|o| o != from);
        if wait.pending.is_empty() {
            self.complete(client_id);
        }
    }

    /// This node's claim has all there was: serve it, or say done to the
    /// node it passes the session on to.
    fn complete(&mut self, client_id: &str) {
        match self.entries.get_mut(client_id) {
            Some(State::Receiving { wait, connect, .. }) => {
                let (generation, connect) = (wait.generation, *connect);
                self.own(client_id, generation);
                if connect {
                    self.effects.push_back(Effect::Accept {
                        client_id: client_id.to_owned(),
                        generation,
                    });
                }
            }
            Some(State::HandedOver {
                to,
                generation,
                wait,
                ..
            }) => {
                *wait = None;
                let (to, generation) = (to.clone(), *generation);
                self.send(
                    to,
                    Message::HandOverDone {
                        client_id: client_id.to_owned(),
                        generation,
                    },
                );
            }
            _ => {}
        }
    }

    /// The lease listing: each node's current life and whether its lease
    /// runs. A claim waiting on a life now dead asks everyone it has not
    /// asked yet, and completes when no one is left to wait for.
    pub fn handle_members(&mut self, members: &[(Owner, bool)]) {
        let waited = self.entries.values().flat_map(|s| match s {
            State::Receiving { wait, .. }
            | State::HandedOver {
                wait: Some(wait), ..
            } => wait.pending.clone(),
            _ => Vec::new(),
        });
        self.lives
            .apply(members, waited.collect::<Vec<_>>().into_iter());
        let clients: Vec<String> = self.entries.keys().cloned().collect();
        for client_id in clients {
            let Some(mut wait) = (match self.entries.get(&client_id) {
                Some(State::Receiving { wait, .. })
                | Some(State::HandedOver {
                    wait: Some(wait), ..
                }) => Some(wait.clone()),
                _ => None,
            }) else {
                continue;
            };
            let before = wait.pending.len();
            wait.pending.retain(|o| self.is_alive(o));
            if wait.pending.len() == before {
                continue;
            }
            let asked = self.ask_everyone(&mut wait);
            for p in asked {
                self.send(
                    p,
                    Message::Takeover {
                        client_id: client_id.clone(),
                        generation: wait.generation,
                        new_owner: self.me.clone(),
                    },
                );
            }
            let empty = wait.pending.is_empty();
            match self.entries.get_mut(&client_id) {
                Some(State::Receiving { wait: w, .. })
                | Some(State::HandedOver { wait: Some(w), .. }) => *w = wait,
                _ => {}
            }
            if empty {
                self.complete(&client_id);
            }
        }
        // A handed-over id whose new owner died: what arrives goes to the
        // newest claim that asked since (seed 329), or nowhere, and the id
        // is forgotten once nothing passes through any more.
        let dead: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, s)| matches!(s, State::HandedOver { to, .. } if !self.is_alive(to)))
            .map(|(c, _)| c.clone())
            .collect();
        for c in dead {
            let alive_newer = match self.entries.get(&c) {
                Some(State::HandedOver {
                    newer: Some((n, _)),
                    ..
                }) => self.is_alive(n),
                _ => false,
            };
            match self.entries.get_mut(&c) {
                Some(State::HandedOver {
                    to,
                    generation,
                    newer,
                    ..
                }) if alive_newer => {
                    if let Some((n, g)) = newer.take() {
                        *to = n;
                        *generation = g;
                    }
                }
                Some(State::HandedOver { wait: None, .. }) => {
                    self.entries.remove(&c);
                }
                _ => {}
            }
        }
    }

    /// When [`Ownership::handle_timeout`] has something to do: the first
    /// waiting CONNECT to refuse, or handed-over id to forget.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|s| match s {
                State::Receiving {
                    since,
                    connect: true,
                    ..
                } => Some(*since + self.handover_timeout),
                State::HandedOver {
                    wait: None, until, ..
                } => Some(*until),
                _ => None,
            })
            .min()
    }

    /// Refuses CONNECTs whose hand-over takes too long, and forgets handed-over
    /// ids after their linger.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut refused = Vec::new();
        self.entries.retain(|client_id, s| match s {
            State::Receiving { since, connect, .. }
                if *connect && now >= *since + self.handover_timeout =>
            {
                *connect = false;
                refused.push(client_id.clone());
                true
            }
            State::HandedOver {
                wait: None, until, ..
            } => now < *until,
            _ => true,
        });
        for c in refused {
            self.refuse(&c, SERVER_BUSY);
        }
        self.ended.retain(|_, (_, until)| now < *until);
    }

    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    pub fn state(&self, client_id: &str) -> Option<&State> {
        self.entries.get(client_id)
    }

    /// Takeovers refused for a stale generation.
    pub fn stale_refused(&self) -> u64 {
        self.stale
    }

    pub fn me(&self) -> &Owner {
        &self.me
    }

    fn is_alive(&self, life: &Owner) -> bool {
        self.lives.is_alive(life)
    }

    fn refuse(&mut self, client_id: &str, reason: u8) {
        self.effects.push_back(Effect::Refuse {
            client_id: client_id.to_owned(),
            reason,
        });
    }

    fn send(&mut self, to: Owner, message: Message) {
        self.effects.push_back(Effect::Send { to, message });
    }
}

#[cfg(test)]
mod tests;
