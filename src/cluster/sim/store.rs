//! A model of the store: exactly the semantics the state machines rely on,
//! from `store::layout` (CLAIM, the fenced WRITE) and `membership` (LEASE),
//! as plain maps. A model checker's model: the scripts themselves are tested
//! against a real Redis elsewhere.
//!
//! Where the model is simpler than Redis, it says so:
//! - a CLAIM moves the client id between nodes' sessions sets in the same
//!   step (the real script cannot: that set is in another slot; the loader
//!   removes stale members lazily);
//! - an adopting CLAIM's `must` is the dead life exactly (the real script
//!   compares a prefix: see the report on `node#b1` vs `node#b10`).

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::reaper::Adoption;
use crate::store::Owner;

use bytes::Bytes;

/// A lease, in simulated ms.
pub const LEASE_MS: u64 = 300;

#[derive(Debug, Clone, Default)]
pub struct Session {
    pub generation: u64,
    pub owner: Option<Owner>,
    pub persistent: bool,
    /// The will of the owner's connection: the sim's connection id.
    pub will: Option<u64>,
    /// The owner's takeover finished (WRITE `settled` at its generation).
    pub settled: bool,
}

/// What a CLAIM returns, as far as the sim needs it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub generation: u64,
    pub previous: Option<Owner>,
    /// Whether the previous owner's takeover had finished.
    pub settled: bool,
    pub orphan_will: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Store {
    pub sessions: BTreeMap<String, Session>,
    /// node id → client ids its lives own or owned (`node:<id>:sessions`).
    pub node_sessions: BTreeMap<String, BTreeSet<String>>,
    /// node id → client ids of clean sessions routed there.
    pub routes: BTreeMap<String, BTreeSet<String>>,
    /// node id → (current life's boot, lease end in ms).
    pub leases: BTreeMap<String, (u64, u64)>,
}

impl Store {
    /// CLAIM for a CONNECT.
    pub fn claim(&mut self, client_id: &str, owner: &Owner, clean: bool) -> Claimed {
        let s = self.sessions.entry(client_id.to_owned()).or_default();
        s.generation += 1;
        let previous = s.owner.replace(owner.clone());
        let orphan_will = if previous.as_ref() != Some(owner) {
            s.will.take()
        } else {
            None
        };
        if clean {
            s.will = None;
        }
        s.persistent = !clean;
        let settled = std::mem::replace(&mut s.settled, false);
        let generation = s.generation;
        if let Some(p) = &previous {
            if let Some(set) = self.node_sessions.get_mut(&p.node) {
                set.remove(client_id);
            }
        }
        self.node_sessions
            .entry(owner.node.clone())
            .or_default()
            .insert(client_id.to_owned());
        Claimed {
            generation,
            previous,
            settled,
            orphan_will,
        }
    }

    /// CLAIM with `must`: adopts the session only while `dead` owns it.
    pub fn adopt(&mut self, client_id: &str, dead: &Owner, adopter: &Owner) -> Adoption {
        let Some(s) = self.sessions.get_mut(client_id) else {
            return Adoption::NotTheirs;
        };
        if s.owner.as_ref() != Some(dead) {
            return Adoption::NotTheirs;
        }
        s.generation += 1;
        s.owner = Some(adopter.clone());
        s.settled = false;
        let will = s
            .will
            .take()
            .map(|w| Bytes::copy_from_slice(&w.to_be_bytes()));
        let (generation, persistent) = (s.generation, s.persistent);
        if let Some(set) = self.node_sessions.get_mut(&dead.node) {
            set.remove(client_id);
        }
        self.node_sessions
            .entry(adopter.node.clone())
            .or_default()
            .insert(client_id.to_owned());
        Adoption::Adopted {
            generation,
            persistent,
            will,
        }
    }

    /// WRITE `online` with the connection's will; `false`: STALE.
    pub fn online(&mut self, client_id: &str, generation: u64, will: Option<u64>) -> bool {
        match self.sessions.get_mut(client_id) {
            Some(s) if s.generation == generation => {
                s.will = will;
                true
            }
            _ => false,
        }
    }

    /// WRITE `settled`: the owner's takeover at `generation` finished.
    pub fn settle(&mut self, client_id: &str, generation: u64) {
        if let Some(s) = self.sessions.get_mut(client_id) {
            if s.generation == generation {
                s.settled = true;
            }
        }
    }

    /// WRITE `willgone` after reading the will: the will to publish, if this
    /// generation still holds it.
    pub fn take_will(&mut self, client_id: &str, generation: u64) -> Option<u64> {
        match self.sessions.get_mut(client_id) {
            Some(s) if s.generation == generation => s.will.take(),
            _ => None,
        }
    }

    /// A route write by a life: refused once another life of its node has
    /// joined (the route sets are per node id).
    pub fn route(&mut self, life: &Owner, client_id: &str, added: bool) {
        if self.leases.get(&life.node).map(|l| l.0) != Some(life.boot) {
            return;
        }
        let set = self.routes.entry(life.node.clone()).or_default();
        if added {
            set.insert(client_id.to_owned());
        } else {
            set.remove(client_id);
        }
    }

    /// The reaper's route removal: only while `dead` is its node's current
    /// life (a newer life's routes share the keys).
    pub fn remove_routes(&mut self, dead: &Owner) {
        if self.leases.get(&dead.node).map(|l| l.0) == Some(dead.boot) {
            self.routes.remove(&dead.node);
        }
    }

    /// LEASE: `join` replaces any other life of the node (and, as a restart
    /// does, empties the node's route sets).
    pub fn lease(&mut self, life: &Owner, now_ms: u64, join: bool) {
        if join {
            self.routes.remove(&life.node);
        }
        let entry = self
            .leases
            .entry(life.node.clone())
            .or_insert((life.boot, 0));
        if entry.0 == life.boot || join {
            *entry = (life.boot, now_ms + LEASE_MS);
        }
    }

    /// Every node's current life, and whether its lease runs at `now_ms`.
    pub fn members(&self, now_ms: u64) -> Vec<(Owner, bool)> {
        self.leases
            .iter()
            .map(|(node, (boot, end))| {
                (
                    Owner {
                        node: node.clone(),
                        boot: *boot,
                    },
                    *end > now_ms,
                )
            })
            .collect()
    }
}
