//! Which lives of the other nodes a takeover may wait on, from the lease
//! listings ([`crate::cluster::membership`]).
//!
//! A life is dead once a listing showed it with its lease ended, or showed
//! it and later another life of its node. A life no listing has shown yet is
//! presumed alive: boot ids are not ordered, so a listing with another boot
//! for its node may be older than it (seed 1904: a restarted node's first
//! claim was taken for a dead life's, and two connections of one id
//! overlapped). But a life waited on joined before the claim that named it,
//! so two listings that show its node with another boot, both taken after
//! this node began to wait on it, prove it dead (seed 259: a restarted
//! node's claim named a life that died before the node's first listing).

use std::collections::BTreeMap;

use crate::store::Owner;

#[derive(Debug)]
pub struct Lives {
    me: Owner,
    /// Each node's current life in the last listing, and whether its lease
    /// runs.
    current: BTreeMap<String, (u64, bool)>,
    /// Every life a listing showed, and whether it is alive.
    seen: BTreeMap<(String, u64), bool>,
    /// Lives waited on that no listing showed: how many listings since
    /// showed their node with another boot.
    doubted: BTreeMap<(String, u64), u8>,
}

impl Lives {
    pub fn new(me: Owner) -> Lives {
        Lives {
            me,
            current: BTreeMap::new(),
            seen: BTreeMap::new(),
            doubted: BTreeMap::new(),
        }
    }

    /// Whether any listing came yet: until then, "every live node" is unknown.
    pub fn listed(&self) -> bool {
        !self.seen.is_empty()
    }

    /// A listing; `waited`: the lives claims of this node wait on.
    pub fn apply(&mut self, members: &[(Owner, bool)], waited: impl Iterator<Item = Owner>) {
        self.current = members
            .iter()
            .map(|(o, alive)| (o.node.clone(), (o.boot, *alive)))
            .collect();
        for ((node, boot), alive) in &mut self.seen {
            if self.current.get(node).is_some_and(|(b, _)| b != boot) {
                *alive = false;
            }
        }
        for (o, alive) in members {
            self.seen.insert((o.node.clone(), o.boot), *alive);
        }
        for o in waited {
            let life = (o.node, o.boot);
            if self.seen.contains_key(&life) {
                continue;
            }
            let other = self.current.get(&life.0).is_none_or(|(b, _)| *b != life.1);
            let n = self.doubted.entry(life.clone()).or_default();
            *n += other as u8;
            if *n >= 2 {
                self.doubted.remove(&life);
                self.seen.insert(life, false);
            }
        }
    }

    pub fn is_alive(&self, life: &Owner) -> bool {
        if life.node == self.me.node {
            return life.boot == self.me.boot;
        }
        self.seen
            .get(&(life.node.clone(), life.boot))
            .copied()
            .unwrap_or(true)
    }

    /// The live lives of the other nodes, as the last listing has them.
    pub fn others(&self) -> impl Iterator<Item = Owner> + '_ {
        self.current
            .iter()
            .filter(|(node, (_, alive))| *alive && **node != self.me.node)
            .map(|(node, (boot, _))| Owner {
                node: node.clone(),
                boot: *boot,
            })
    }
}
