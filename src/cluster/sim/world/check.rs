//! The invariants the simulation holds the cluster to: after every step,
//! and at the end of the quiet phase.

use std::collections::{BTreeMap, BTreeSet};

use super::World;
use crate::cluster::frame::Message;
use crate::cluster::takeover::State;
use crate::store::Owner;

impl World {
    /// Ids of the messages some live node holds for its session: queued in a
    /// session it owns or receives, or in a link to a live life.
    pub(super) fn holders(&self) -> BTreeSet<u64> {
        let mut held = BTreeSet::new();
        for n in self.nodes.iter().flatten() {
            for (c, s) in &n.sessions {
                let holds = matches!(
                    n.own.state(c),
                    Some(State::Owned { .. })
                        | Some(State::Receiving { .. })
                        | Some(State::Claiming {
                            forward_to: None,
                            ..
                        })
                );
                if holds {
                    held.extend(&s.queue);
                }
            }
            for ((peer, boot), link) in &n.links {
                let to = Owner {
                    node: peer.clone(),
                    boot: *boot,
                };
                let Some(j) = self.alive(&to) else {
                    continue;
                };
                // What the peer received already is held there, or was
                // passed on: the copy kept for a resend does not count.
                let received = self.nodes[j]
                    .as_ref()
                    .and_then(|p| p.links.get(&(n.life.node.clone(), n.life.boot)))
                    .map_or(0, |l| l.received());
                for m in link.pending_after(received) {
                    if let Message::HandOver { messages, .. } = m {
                        held.extend(messages.iter().map(|q| q.publish.id));
                    }
                }
            }
        }
        held
    }

    /// The invariants, after every step.
    pub(super) fn check(&mut self) -> Result<(), String> {
        if let Some(v) = self.violations.take() {
            return Err(v);
        }
        if self.wills.values().any(|n| *n > 1) {
            return Err("a will was published twice".into());
        }
        // One connection per client id across live nodes.
        let mut at: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in self.nodes.iter().flatten() {
            for (c, s) in &n.sessions {
                if let Some(conn) = s.conn {
                    at.entry(c.clone())
                        .or_default()
                        .push(format!("conn {conn} on {}#{}", n.life.node, n.life.boot));
                }
            }
        }
        for (c, places) in &at {
            if places.len() > 1 {
                return Err(format!("{c} is connected twice: {}", places.join(", ")));
            }
        }
        // Generations only grow: in the store, and in each life.
        for (c, s) in &self.store.sessions {
            let last = self.store_gens.insert(c.clone(), s.generation).unwrap_or(0);
            if s.generation < last {
                return Err(format!(
                    "{c}'s generation went from {last} to {}",
                    s.generation
                ));
            }
        }
        for n in self.nodes.iter().flatten() {
            for c in self.store.sessions.keys() {
                let Some(g) = n.own.state(c).and_then(State::generation) else {
                    continue;
                };
                let key = (n.life.node.clone(), n.life.boot, c.clone());
                let last = self.node_gens.insert(key, g).unwrap_or(0);
                if g < last {
                    return Err(format!(
                        "{}#{} went from generation {last} to {g} for {c}",
                        n.life.node, n.life.boot
                    ));
                }
            }
        }
        // Clean sessions connected on a live node have their route.
        for n in self.nodes.iter().flatten() {
            for (c, s) in &n.sessions {
                if s.clean
                    && s.conn.is_some()
                    && !self
                        .store
                        .routes
                        .get(&n.life.node)
                        .is_some_and(|r| r.contains(c))
                {
                    return Err(format!(
                        "clean session {c} connected on {}#{} has no route in the store",
                        n.life.node, n.life.boot
                    ));
                }
            }
        }
        // No acknowledged message lost.
        let held = self.holders();
        let mut to_dead = BTreeSet::new();
        for n in self.nodes.iter().flatten() {
            for ((peer, boot), link) in &n.links {
                let to = Owner {
                    node: peer.clone(),
                    boot: *boot,
                };
                if self.alive(&to).is_some() {
                    continue;
                }
                for m in link.pending() {
                    if let Message::HandOver { messages, .. } = m {
                        to_dead.extend(messages.iter().map(|q| q.publish.id));
                    }
                }
            }
        }
        let mut lost = Vec::new();
        for (id, m) in &mut self.msgs {
            if !m.acked || !m.tracked || m.delivered || m.excused.is_some() || held.contains(id) {
                continue;
            }
            if to_dead.contains(id) {
                m.excused = Some("handed over to a life that died".into());
                continue;
            }
            lost.push(format!("{id} for {}", m.client_id));
        }
        if !lost.is_empty() {
            return Err(format!(
                "acknowledged messages lost (held by no live node): {}",
                lost.join(", ")
            ));
        }
        Ok(())
    }

    pub(super) fn settled(&self) -> bool {
        let undelivered = self
            .msgs
            .values()
            .any(|m| m.acked && m.tracked && !m.delivered && m.excused.is_none());
        let reaping = self.nodes.iter().flatten().any(|n| !n.reaper.is_idle());
        // A killed life's lease has run out, so the others have seen it die.
        let leases_over = self
            .store
            .members(self.now_ms())
            .iter()
            .all(|(l, alive)| !alive || self.alive(l).is_some());
        let all_dead_seen = leases_over
            && self.nodes.iter().flatten().all(|n| {
                self.store
                    .members(self.now_ms())
                    .iter()
                    .all(|(l, alive)| *alive || n.reaping.contains(&(l.node.clone(), l.boot)))
            });
        let busy = self.nodes.iter().flatten().any(|n| {
            !n.waiting.is_empty()
                || n.links.values().any(|l| !l.is_idle())
                || self.store.sessions.keys().any(|c| {
                    matches!(
                        n.own.state(c),
                        Some(State::Claiming { .. } | State::Receiving { .. })
                    )
                })
        });
        !undelivered && !reaping && !busy && all_dead_seen && self.events.is_empty()
    }

    pub(super) fn undelivered(&self) -> String {
        let mut out = Vec::new();
        for (id, m) in &self.msgs {
            if m.acked && m.tracked && !m.delivered && m.excused.is_none() {
                let mut at = Vec::new();
                for n in self.nodes.iter().flatten() {
                    if n.sessions
                        .get(&m.client_id)
                        .is_some_and(|s| s.queue.contains(id))
                    {
                        at.push(format!(
                            "queued on {}#{} ({:?})",
                            n.life.node,
                            n.life.boot,
                            n.own.state(&m.client_id)
                        ));
                    }
                }
                out.push(format!("{id} for {} [{}]", m.client_id, at.join("; ")));
            }
        }
        out.join(", ")
    }

    /// At the end, all quiet: the store and the nodes agree.
    pub(super) fn final_checks(&self) -> Result<(), String> {
        for n in self.nodes.iter().flatten() {
            for (c, s) in &n.sessions {
                if s.conn.is_none() {
                    continue;
                }
                let stored = self.store.sessions.get(c);
                if stored.and_then(|s| s.owner.as_ref()) != Some(&n.life) {
                    return Err(format!(
                        "{c} is connected on {}#{} but the store names {:?}",
                        n.life.node,
                        n.life.boot,
                        stored.and_then(|s| s.owner.clone())
                    ));
                }
            }
        }
        // Each will that reached the store went out once, or waits with its
        // connection still up, or died with the node a CLAIM handed it to.
        let connected: BTreeSet<u64> = self.connected().iter().map(|(c, _)| *c).collect();
        for w in &self.stored_wills {
            let published = self.wills.get(w).copied().unwrap_or(0);
            let waiting =
                connected.contains(w) && self.store.sessions.values().any(|s| s.will == Some(*w));
            if published == 0 && !waiting && !self.lost_wills.contains(w) {
                return Err(format!("the will of connection {w} was never published"));
            }
        }
        // Dead lives leave no route behind.
        for (node, (_, end)) in &self.store.leases {
            if *end <= self.now_ms() && self.store.routes.get(node).is_some_and(|r| !r.is_empty()) {
                return Err(format!("the dead node {node} still has routes"));
            }
        }
        Ok(())
    }
}
