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
//! - the predecessor disconnects its client (0x8E), hands the session over,
//!   and then forwards what still reaches it ([`State::HandedOver`]): routes
//!   elsewhere still name it for a while (the loss EMQX fixed in PR 6393). If
//!   it was itself still receiving, it passes on what arrives and says done
//!   only once its own predecessor did;
//! - a takeover whose generation is not above the one held is stale, and
//!   refused (ignored: the newer claim's own takeover reaches its requester).
//!
//! What "dead" means comes from membership: a life is dead once the lease
//! listing shows its node with another boot or its lease ended. A life the
//! listing has never shown is presumed alive, so a stale view never makes a
//! node skip a takeover.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::frame::{Message, Publish, Queued};
use crate::store::Owner;

/// CONNACK "server busy": a CONNECT of an id whose hand-over is unfinished.
pub const SERVER_BUSY: u8 = 0x89;
/// DISCONNECT "session taken over".
pub const SESSION_TAKEN_OVER: u8 = 0x8E;

/// What the node must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Run CLAIM for the client's waiting CONNECT; answer with
    /// [`Ownership::handle_claim`].
    Claim { client_id: String },
    Send { to: Owner, message: Message },
    /// Disconnect the client's connection here, if any, with 0x8E, take its
    /// session out of the broker and give it to [`Ownership::surrendered`].
    Surrender { client_id: String },
    /// The waiting CONNECT is accepted: the session is this node's, at
    /// `generation`, with everything a hand-over brought.
    Accept { client_id: String, generation: u64 },
    /// The waiting CONNECT is refused with this CONNACK reason.
    Refuse { client_id: String, reason: u8 },
    /// Part of a handed-over session: merge it into the local session.
    Restore {
        client_id: String,
        subscriptions: Bytes,
        messages: Vec<Queued>,
    },
}

/// Where a publish for a client id goes on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Into the local session: this node owns it, or is about to.
    Local,
    /// Not here: [`Ownership::deliver`] forwarded it to the new owner.
    Forwarded,
    /// This node knows nothing of the id.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A CONNECT waits for its claim. `forward_to`: the session was handed
    /// over before, and what arrives still goes there until the claim is in.
    /// `takeover`: a newer claim's takeover that arrived first.
    Claiming {
        forward_to: Option<(Owner, u64)>,
        takeover: Option<(Owner, u64)>,
    },
    /// Claimed at `generation`; the session comes from `from`.
    Receiving {
        generation: u64,
        from: Owner,
        since: Instant,
        /// A CONNECT waits for the end of the hand-over.
        connect: bool,
    },
    Owned { generation: u64 },
    /// Taken over by `to` at `generation`: what arrives goes there.
    HandedOver {
        to: Owner,
        generation: u64,
        /// Still receiving the session from this predecessor: pass on what it
        /// sends, and say done when it does.
        upstream: Option<Owner>,
        /// When to forget the id, once `upstream` is done.
        until: Instant,
    },
}

/// Deliberate breaks, for the simulation to prove it catches them (TESTING.md,
/// "Deliberate breaks (issue 14, simulation)"). All off in the real server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaks {
    /// The old owner keeps its client connected after a takeover.
    pub keep_client: bool,
    /// What reaches the old owner after it handed over is taken locally and
    /// dropped with the session (EMQX's bug before PR 6393).
    pub no_forwarding: bool,
    /// A takeover is obeyed whatever its generation.
    pub accept_stale: bool,
    /// A claim whose predecessor is alive is treated as if it were dead.
    pub skip_takeover: bool,
}

#[derive(Debug)]
pub struct Ownership {
    me: Owner,
    entries: BTreeMap<String, State>,
    /// Each node's current life in the last lease listing, and whether its
    /// lease runs.
    members: BTreeMap<String, (u64, bool)>,
    effects: VecDeque<Effect>,
    /// How long a CONNECT waits for a hand-over before it is refused.
    handover_timeout: Duration,
    /// How long a handed-over id keeps forwarding.
    linger: Duration,
    /// Takeovers refused for a stale generation.
    stale: u64,
    breaks: Breaks,
}

impl Ownership {
    pub fn new(me: Owner, handover_timeout: Duration, linger: Duration) -> Ownership {
        Ownership {
            me,
            entries: BTreeMap::new(),
            members: BTreeMap::new(),
            effects: VecDeque::new(),
            handover_timeout,
            linger,
            stale: 0,
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
        let state = self.entries.remove(client_id);
        let forward_to = match state {
            // Unfinished here: a claim, a hand-over to this node, or one from
            // this node that still passes on its predecessor's. (Claiming anew
            // before the last would let two claims of this node wait on each
            // other through a peer.)
            Some(
                s @ (State::Claiming { .. }
                | State::Receiving { .. }
                | State::HandedOver {
                    upstream: Some(_), ..
                }),
            ) => {
                self.entries.insert(client_id.to_owned(), s);
                return Err(SERVER_BUSY);
            }
            Some(State::HandedOver { to, generation, .. }) => Some((to, generation)),
            Some(State::Owned { .. }) | None => None,
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
    /// `previous` (`None`: no one owned the session).
    pub fn handle_claim(
        &mut self,
        now: Instant,
        client_id: &str,
        generation: u64,
        previous: Option<Owner>,
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
        let previous = previous.filter(|p| *p != self.me);
        let upstream = previous.filter(|p| self.is_alive(p) && !self.breaks.skip_takeover);
        if let Some(p) = &upstream {
            self.send(
                p.clone(),
                Message::Takeover {
                    client_id: client_id.to_owned(),
                    generation,
                    new_owner: self.me.clone(),
                },
            );
        }
        match takeover {
            Some((to, newer)) if newer > generation => {
                self.refuse(client_id, SERVER_BUSY);
                self.effects.push_back(Effect::Surrender {
                    client_id: client_id.to_owned(),
                });
                self.entries.insert(
                    client_id.to_owned(),
                    State::HandedOver {
                        to,
                        generation: newer,
                        upstream,
                        until: now + self.linger,
                    },
                );
            }
            _ => match upstream {
                Some(from) => {
                    self.entries.insert(
                        client_id.to_owned(),
                        State::Receiving {
                            generation,
                            from,
                            since: now,
                            connect: true,
                        },
                    );
                }
                None => {
                    self.entries
                        .insert(client_id.to_owned(), State::Owned { generation });
                    self.effects.push_back(Effect::Accept {
                        client_id: client_id.to_owned(),
                        generation,
                    });
                }
            },
        }
    }

    /// The reaper (or the loader of a restarted node) adopted a session of a
    /// dead life at `generation`: it is this node's, offline.
    pub fn adopted(&mut self, client_id: &str, generation: u64) {
        match self.entries.get(client_id) {
            Some(State::Claiming { .. } | State::Receiving { .. }) => {}
            _ => {
                self.entries
                    .insert(client_id.to_owned(), State::Owned { generation });
            }
        }
    }

    /// The broker took the session out after [`Effect::Surrender`]: send it on.
    pub fn surrendered(&mut self, client_id: &str, subscriptions: Bytes, messages: Vec<Queued>) {
        let Some(State::HandedOver {
            to,
            generation,
            upstream,
            ..
        }) = self.entries.get(client_id)
        else {
            return;
        };
        let (to, generation, done) = (to.clone(), *generation, upstream.is_none());
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

    /// The local client disconnected, or its clean session ended: a clean
    /// session is forgotten here (`ended`), a persistent one stays owned.
    pub fn disconnected(&mut self, client_id: &str, ended: bool) {
        if ended && matches!(self.entries.get(client_id), Some(State::Owned { .. })) {
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
                Some(State::Receiving {
                    generation: g,
                    from: f,
                    ..
                }) if *g == generation && f == from => {
                    self.effects.push_back(Effect::Restore {
                        client_id,
                        subscriptions,
                        messages,
                    });
                }
                // Also what a predecessor forwards after our hand-over ended
                // (a timeout or its death): it is still this session's.
                Some(State::Owned { generation: g }) if *g == generation => {
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
            } => self.upstream_done(now, &client_id, from, Some(generation)),
            Message::Publish(_) | Message::Accepted { .. } => {}
        }
    }

    fn handle_takeover(&mut self, now: Instant, client_id: &str, generation: u64, to: Owner) {
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
            Some(State::Claiming { takeover, .. }) => {
                if takeover.as_ref().is_none_or(|(_, g)| *g < generation) {
                    *takeover = Some((to, generation));
                }
                return;
            }
            Some(State::Owned { generation: g })
            | Some(State::Receiving { generation: g, .. })
            | Some(State::HandedOver { generation: g, .. }) => *g,
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
        let state = self.entries.remove(client_id);
        let upstream = match state {
            Some(State::Receiving { from, connect, .. }) => {
                if connect {
                    self.refuse(client_id, SERVER_BUSY);
                }
                Some(from)
            }
            Some(State::HandedOver { upstream, .. }) => upstream,
            _ => None,
        };
        // What the requester would pass on to this node, it has itself.
        let upstream = upstream.filter(|u| *u != to);
        self.entries.insert(
            client_id.to_owned(),
            State::HandedOver {
                to,
                generation,
                upstream,
                until: now + self.linger,
            },
        );
        if !self.breaks.keep_client {
            self.effects.push_back(Effect::Surrender {
                client_id: client_id.to_owned(),
            });
        } else {
            self.surrendered(client_id, Bytes::new(), Vec::new());
        }
    }

    /// `from` finished handing `client_id` over (or died: `generation` None).
    fn upstream_done(&mut self, _now: Instant, client_id: &str, from: &Owner, generation: Option<u64>) {
        match self.entries.get_mut(client_id) {
            Some(State::Receiving {
                generation: g,
                from: f,
                connect,
                ..
            }) if f == from && generation.is_none_or(|x| x == *g) => {
                let (g, connect) = (*g, *connect);
                self.entries
                    .insert(client_id.to_owned(), State::Owned { generation: g });
                if connect {
                    self.effects.push_back(Effect::Accept {
                        client_id: client_id.to_owned(),
                        generation: g,
                    });
                }
            }
            Some(State::HandedOver {
                to,
                generation: g,
                upstream,
                ..
            }) if upstream.as_ref() == Some(from) => {
                *upstream = None;
                let (to, g) = (to.clone(), *g);
                self.send(
                    to,
                    Message::HandOverDone {
                        client_id: client_id.to_owned(),
                        generation: g,
                    },
                );
            }
            _ => {}
        }
    }

    /// The lease listing: each node's current life and whether its lease
    /// runs. Ends the hand-overs that wait on a life now dead.
    pub fn handle_members(&mut self, now: Instant, members: &[(Owner, bool)]) {
        self.members = members
            .iter()
            .map(|(o, alive)| (o.node.clone(), (o.boot, *alive)))
            .collect();
        let waiting: Vec<(String, Owner)> = self
            .entries
            .iter()
            .filter_map(|(c, s)| match s {
                State::Receiving { from, .. } => Some((c.clone(), from.clone())),
                State::HandedOver {
                    upstream: Some(u), ..
                } => Some((c.clone(), u.clone())),
                _ => None,
            })
            .collect();
        for (client_id, from) in waiting {
            if !self.is_alive(&from) {
                self.upstream_done(now, &client_id, &from, None);
            }
        }
        // A handed-over id whose new owner died forwards into the void:
        // forget it, the reaper's adopter serves the session now.
        let gone: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, s)| matches!(s, State::HandedOver { to, .. } if !self.is_alive(to)))
            .map(|(c, _)| c.clone())
            .collect();
        for c in gone {
            if let Some(State::HandedOver { upstream: None, .. }) = self.entries.get(&c) {
                self.entries.remove(&c);
            }
        }
    }

    /// Refuses CONNECTs whose hand-over takes too long, and forgets handed-over
    /// ids after their linger.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut refused = Vec::new();
        self.entries.retain(|client_id, s| match s {
            State::Receiving {
                since, connect, ..
            } if *connect && now >= *since + self.handover_timeout => {
                *connect = false;
                refused.push(client_id.clone());
                true
            }
            State::HandedOver {
                upstream: None,
                until,
                ..
            } => now < *until,
            _ => true,
        });
        for c in refused {
            self.refuse(&c, SERVER_BUSY);
        }
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
        if life.node == self.me.node {
            return life.boot == self.me.boot;
        }
        match self.members.get(&life.node) {
            Some((boot, alive)) => *boot == life.boot && *alive,
            None => true,
        }
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
