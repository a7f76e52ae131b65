//! Membership and liveness through Redis.
//!
//! Each node holds a lease: it runs [`LEASE`] several times per lease
//! period, and each run pushes its lease's end to Redis's `TIME` plus the
//! period. A node whose lease has ended is dead to the others, whatever its
//! own clock says; the script's reply lists who is alive and who is dead, so
//! every node learns of joins and deaths within one lease period.
//!
//! A node id names a node across restarts; the boot id names one life of it.
//! A new life registers with `join` and replaces the old one at once (no
//! waiting for the old lease to end, which would deadlock a cluster of one).
//! The old life, if it still runs, learns at its next renewal that it was
//! superseded and must stop serving what the cluster gives to the new one.
//!
//! [`Members`] is the reply, parsed; [`View`] turns successive replies into
//! the changes a node acts on. Both are sans-IO.

use std::collections::BTreeMap;

use redis::Value;

use crate::store::redis::values::text;

/// Registers (`join` = `1`) or renews (`0`) a node's lease.
///
/// KEYS: leases, nodes ([`crate::store::layout::Keys::leases`] and
/// [`crate::store::layout::Keys::nodes`]). ARGV: node id, boot id, cluster address, lease in
/// ms, join.
///
/// Returns `{"superseded", "<boot>|<addr>"}` when a renewing life has been
/// replaced by another, and writes nothing then. Otherwise `{"ok", now ms,
/// previous life ("<boot>|<addr>" or false), {node, lease end, life, ...},
/// lost}` for every node, this one included; a node whose lease end is at
/// or before `now` is dead. `lost` is 1 when there was no registration of
/// the node: its first join, or Redis lost it (it restarted empty), and
/// with it whatever else the node wrote.
pub const LEASE: &str = r#"
local leases, nodes = KEYS[1], KEYS[2]
local node, boot, addr, lease, join = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local life = boot .. '|' .. addr
local current = redis.call('HGET', nodes, node)
local previous = false
local lost = 0
if not current then
  lost = 1
end
if current and current ~= life then
  if join ~= '1' then
    return {'superseded', current}
  end
  previous = current
end
redis.call('HSET', nodes, node, life)
redis.call('ZADD', leases, now + lease, node)
local all = redis.call('ZRANGE', leases, 0, -1, 'WITHSCORES')
local list = {}
for i = 1, #all, 2 do
  list[#list + 1] = all[i]
  list[#list + 1] = all[i + 1]
  list[#list + 1] = redis.call('HGET', nodes, all[i]) or ''
end
return {'ok', now, previous, list, lost}
"#;

/// One node as the lease script saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: String,
    pub boot: String,
    pub addr: String,
    /// When its lease ends, in ms of Redis's clock.
    pub lease_end: u64,
}

/// A reply of [`LEASE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Members {
    /// This life was replaced by another: stop.
    Superseded { by: String },
    Listed {
        /// Redis's clock, in ms, when the script ran.
        now: u64,
        /// The life of this node that this registration replaced, if any:
        /// `<boot>|<addr>`.
        previous: Option<String>,
        members: Vec<Member>,
        /// There was no registration of this node: its first join, or Redis
        /// lost it.
        lost: bool,
    },
}

/// A reply that is not what [`LEASE`] returns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unexpected reply from the lease script: {0:?}")]
pub struct BadReply(pub Value);

impl Members {
    pub fn parse(reply: Value) -> Result<Members, BadReply> {
        let bad = || BadReply(reply.clone());
        let Value::Array(parts) = &reply else {
            return Err(bad());
        };
        match &parts[..] {
            [tag, by] if text(tag).as_deref() == Some("superseded") => Ok(Members::Superseded {
                by: text(by).ok_or_else(bad)?,
            }),
            [tag, Value::Int(now), previous, Value::Array(list), rest @ ..]
                if text(tag).as_deref() == Some("ok") && list.len() % 3 == 0 && rest.len() <= 1 =>
            {
                let members = list
                    .chunks(3)
                    .map(|m| {
                        let node = text(&m[0])?;
                        let lease_end = text(&m[1])?.parse::<f64>().ok()? as u64;
                        let (boot, addr) = text(&m[2])?
                            .split_once('|')
                            .map(|(b, a)| (b.to_owned(), a.to_owned()))?;
                        Some(Member {
                            node,
                            boot,
                            addr,
                            lease_end,
                        })
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(bad)?;
                Ok(Members::Listed {
                    now: u64::try_from(*now).map_err(|_| bad())?,
                    previous: text(previous),
                    members,
                    lost: matches!(rest, [Value::Int(1)]),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// What changed in the cluster since the last reply a node applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A node's life is alive that was not (a new node, or a new life).
    Joined(Member),
    /// A life's lease ended, or another life of its node replaced it.
    Died { node: String, boot: String },
}

/// The live members a node knows of, by node id.
#[derive(Debug, Default)]
pub struct View {
    alive: BTreeMap<String, Member>,
}

impl View {
    /// Applies a listing, and returns what changed, deaths first.
    pub fn apply(&mut self, now: u64, members: &[Member]) -> Vec<Change> {
        let alive: BTreeMap<String, Member> = members
            .iter()
            .filter(|m| m.lease_end > now)
            .map(|m| (m.node.clone(), m.clone()))
            .collect();
        let mut changes = Vec::new();
        for (node, was) in &self.alive {
            if alive.get(node).is_none_or(|m| m.boot != was.boot) {
                changes.push(Change::Died {
                    node: node.clone(),
                    boot: was.boot.clone(),
                });
            }
        }
        for (node, m) in &alive {
            if self.alive.get(node).is_none_or(|was| was.boot != m.boot) {
                changes.push(Change::Joined(m.clone()));
            }
        }
        self.alive = alive;
        changes
    }

    pub fn alive(&self) -> impl Iterator<Item = &Member> {
        self.alive.values()
    }
}

#[cfg(test)]
mod tests;
