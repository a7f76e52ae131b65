//! Reaping a dead life's leftovers, sans-IO: its clean sessions' routes go,
//! its persistent sessions are adopted, its clients' wills go out once.
//!
//! Every survivor reaps every dead life, and so does the dead node's next
//! life when it starts (its loader adopts what its past life left). They do
//! not coordinate: each adoption is a CLAIM that only succeeds while the dead
//! life still owns the session, so exactly one of them adopts each session
//! (the generation settles it), and the will, which that CLAIM takes out of
//! the store, is published by that one alone. Progress is the store's own
//! state (the dead life's sessions set, the sessions' owners), so a reaper
//! that dies mid-way leaves the rest to the others, and reaping again is
//! harmless.
//!
//! One store operation is out at a time: the caller runs each
//! [`ReapEffect`] and answers with the matching `handle_*`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::store::Owner;

/// How long a failed store operation waits before it runs again.
pub const RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReapEffect {
    /// Delete the dead life's route sets, unless its node has a newer life
    /// (whose routes share the keys); answer [`Reaper::handle_done`].
    RemoveRoutes { dead: Owner },
    /// List the client ids in the dead node's sessions set; answer
    /// [`Reaper::handle_listed`].
    List { dead: Owner },
    /// CLAIM the session with `must` = exactly the dead life; answer
    /// [`Reaper::handle_adopted`].
    Adopt { client_id: String, dead: Owner },
    /// The adoption is in: the session is this node's, offline
    /// ([`super::takeover::Ownership::adopted`]).
    Adopted {
        client_id: String,
        generation: u64,
        /// Whose it was.
        dead: Owner,
        /// `false`: a clean session; only its will mattered, the caller ends it.
        persistent: bool,
    },
    /// Publish a will the adoption took out of the store.
    PublishWill { client_id: String, will: Bytes },
    /// Every leftover of `dead` is handled.
    Reaped { dead: Owner },
}

/// What an adopting CLAIM found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    Adopted {
        generation: u64,
        persistent: bool,
        will: Option<Bytes>,
    },
    /// The session is gone, or someone else owns it now.
    NotTheirs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Routes,
    List,
    Adopt(VecDeque<String>),
}

#[derive(Debug)]
pub struct Reaper {
    me: Owner,
    /// Lives to reap, the current one first.
    jobs: VecDeque<(Owner, Step)>,
    /// A store operation is out.
    waiting: bool,
    /// When to run a failed operation again.
    retry_at: Option<Instant>,
    effects: VecDeque<ReapEffect>,
    /// Sessions adopted, for `/metrics`.
    adopted: u64,
}

impl Reaper {
    pub fn new(me: Owner) -> Reaper {
        Reaper {
            me,
            jobs: VecDeque::new(),
            waiting: false,
            retry_at: None,
            effects: VecDeque::new(),
            adopted: 0,
        }
    }

    /// Membership says `dead` died (or this node started, and `dead` is its
    /// past life).
    pub fn handle_died(&mut self, dead: Owner) {
        if dead == self.me || self.jobs.iter().any(|(o, _)| *o == dead) {
            return;
        }
        self.jobs.push_back((dead, Step::Routes));
        self.next();
    }

    /// The routes are removed.
    pub fn handle_done(&mut self) {
        if let Some((_, step)) = self.jobs.front_mut() {
            *step = Step::List;
        }
        self.waiting = false;
        self.next();
    }

    pub fn handle_listed(&mut self, clients: Vec<String>) {
        if let Some((_, step)) = self.jobs.front_mut() {
            *step = Step::Adopt(clients.into());
        }
        self.waiting = false;
        self.next();
    }

    pub fn handle_adopted(&mut self, adoption: Adoption) {
        let Some((dead, Step::Adopt(clients))) = self.jobs.front_mut() else {
            return;
        };
        let dead = dead.clone();
        let Some(client_id) = clients.pop_front() else {
            return;
        };
        if let Adoption::Adopted {
            generation,
            persistent,
            will,
        } = adoption
        {
            self.adopted += 1;
            self.effects.push_back(ReapEffect::Adopted {
                client_id: client_id.clone(),
                generation,
                dead,
                persistent,
            });
            if let Some(will) = will {
                self.effects
                    .push_back(ReapEffect::PublishWill { client_id, will });
            }
        }
        self.waiting = false;
        self.next();
    }

    /// The last operation failed (Redis down, a timeout): it runs again
    /// after [`RETRY`].
    pub fn handle_failed(&mut self, now: Instant) {
        self.waiting = false;
        self.retry_at = Some(now + RETRY);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            self.next();
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retry_at
    }

    pub fn poll_effect(&mut self) -> Option<ReapEffect> {
        self.effects.pop_front()
    }

    /// Nothing left to reap.
    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty() && self.effects.is_empty()
    }

    pub fn adopted(&self) -> u64 {
        self.adopted
    }

    /// Issues the current job's next operation, unless one is out.
    fn next(&mut self) {
        if self.waiting || self.retry_at.is_some() {
            return;
        }
        while let Some((dead, step)) = self.jobs.front() {
            let dead = dead.clone();
            let effect = match step {
                Step::Routes => ReapEffect::RemoveRoutes { dead },
                Step::List => ReapEffect::List { dead },
                Step::Adopt(clients) => match clients.front() {
                    Some(c) => ReapEffect::Adopt {
                        client_id: c.clone(),
                        dead,
                    },
                    None => {
                        self.jobs.pop_front();
                        self.effects.push_back(ReapEffect::Reaped { dead });
                        continue;
                    }
                },
            };
            self.waiting = true;
            self.effects.push_back(effect);
            return;
        }
    }
}

#[cfg(test)]
mod tests;
