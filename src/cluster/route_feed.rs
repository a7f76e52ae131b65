//! Shard 0 keeps the node-level route index ([`super::routes`]) current: it
//! reads every live node's route sets once, then tails the route feed (a
//! Redis stream every node appends its route changes to), and hands what
//! changed to every shard's broker.
//!
//! The feed is polled (`XREAD` without `BLOCK`) on the shard's own
//! pipelined connection: a blocking read would hold up every write queued
//! behind it. A node that joins (or comes back as a new life) has its route
//! sets read again, whole; one that dies has its routes dropped. Both arrive
//! from the lease task ([`Resync`]). Feed entries that a read of the sets
//! already covered are harmless: each one sets one filter of one shard to
//! present or absent, in the order the node made the changes.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytestring::ByteString;
use redis::Value;
use tracing::{debug, warn};

use super::routes::RouteUpdate;
use crate::connection::Shard;
use crate::store::layout::Keys;
use crate::store::redis::RedisClient;
use crate::topic::TopicFilter;

/// How often the feed is read: how long a subscription on another node may
/// take to become known here.
const POLL: Duration = Duration::from_millis(50);

/// Entries read per poll.
const BATCH: usize = 1000;

/// Nodes whose routes must be read again (joined) or dropped (died), from
/// the lease task to the feed task, both on shard 0.
#[derive(Debug, Default)]
pub struct Resync {
    pending: RefCell<Vec<(ByteString, bool)>>,
    /// The other nodes alive now, read again whole after a failed read.
    alive: RefCell<std::collections::BTreeSet<ByteString>>,
}

impl Resync {
    /// `node` joined (`true`: read its routes) or died (`false`: drop them).
    pub fn node(&self, node: &str, alive: bool) {
        let node = ByteString::from(node);
        match alive {
            true => self.alive.borrow_mut().insert(node.clone()),
            false => self.alive.borrow_mut().remove(&node),
        };
        self.pending.borrow_mut().push((node, alive));
    }

    fn take(&self) -> Vec<(ByteString, bool)> {
        std::mem::take(&mut self.pending.borrow_mut())
    }

    /// After a failed read (Redis restarted, the feed trimmed past us):
    /// every live node's routes are read again.
    fn all_again(&self) {
        let alive: Vec<_> = self.alive.borrow().iter().cloned().collect();
        self.pending
            .borrow_mut()
            .extend(alive.into_iter().map(|n| (n, true)));
    }
}

/// Runs until shutdown.
pub async fn run(
    shard: Rc<Shard>,
    client: RedisClient,
    keys: Keys,
    me: String,
    resync: Rc<Resync>,
    shutdown: shards::Shutdown,
) {
    // Where reading the feed goes on; `None` until it has a starting point.
    let mut last: Option<String> = None;
    loop {
        if shutdown.sleep(POLL).await {
            return;
        }
        let pending = resync.take();
        match step(&client, &keys, &me, &mut last, &pending).await {
            Ok(updates) if updates.is_empty() => {}
            Ok(updates) => {
                debug!(updates = updates.len(), "other nodes' routes changed");
                shard.broker.borrow_mut().route_updates(updates);
                shard.wake();
            }
            Err(e) => {
                warn!(error = %e, "reading the cluster's routes failed; reading them all again");
                // Start from the feed's end again, and read every live
                // node's sets: a Redis that restarted empty numbers its
                // feed from scratch.
                last = None;
                for (node, alive) in pending {
                    resync.node(&node, alive);
                }
                resync.all_again();
            }
        }
    }
}

/// One poll: the feed's position if there is none yet, the routes of the
/// nodes in `pending`, then the feed's new entries.
async fn step(
    client: &RedisClient,
    keys: &Keys,
    me: &str,
    last: &mut Option<String>,
    pending: &[(ByteString, bool)],
) -> Result<Vec<RouteUpdate>, String> {
    let from = match last.take() {
        Some(id) => id,
        // Start at the feed's end: the route sets are read next (the lease
        // task reports each live node), so nothing written before is missed.
        None => last_id(client, keys).await?,
    };
    *last = Some(from.clone());
    let mut updates = Vec::new();
    for (node, alive) in pending {
        if node == me {
            continue;
        }
        updates.push(match alive {
            true => read_node(client, keys, node).await?,
            false => RouteUpdate::Gone { node: node.clone() },
        });
    }
    let (next, changes) = read_feed(client, keys, &from, me).await?;
    *last = Some(next);
    updates.extend(changes);
    Ok(updates)
}

/// The id of the feed's last entry (`0-0` when it is empty).
async fn last_id(client: &RedisClient, keys: &Keys) -> Result<String, String> {
    let reply = client
        .cmd(
            redis::cmd("XREVRANGE")
                .arg(keys.route_feed())
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1),
        )
        .await
        .map_err(|e| e.to_string())?;
    match &reply {
        Value::Array(entries) if entries.is_empty() => Ok("0-0".to_owned()),
        Value::Array(entries) => match entries.first() {
            Some(Value::Array(entry)) => entry.first().and_then(text).ok_or_else(|| bad(&reply)),
            _ => Err(bad(&reply)),
        },
        _ => Err(bad(&reply)),
    }
}

/// Every route set of `node`, whole.
async fn read_node(client: &RedisClient, keys: &Keys, node: &str) -> Result<RouteUpdate, String> {
    let prefix = keys.routes(node, 0);
    let prefix = prefix.trim_end_matches('0');
    let mut routes = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let reply = client
            .cmd(
                redis::cmd("SCAN")
                    .arg(&cursor)
                    .arg("MATCH")
                    .arg(keys.routes_pattern(node))
                    .arg("COUNT")
                    .arg(1000),
            )
            .await
            .map_err(|e| e.to_string())?;
        let (next, found) = scan_reply(&reply).ok_or_else(|| bad(&reply))?;
        for key in found {
            let Some(shard) = key.strip_prefix(prefix).and_then(|s| s.parse().ok()) else {
                continue;
            };
            let reply = client
                .cmd(redis::cmd("SMEMBERS").arg(&key))
                .await
                .map_err(|e| e.to_string())?;
            let Value::Array(members) = &reply else {
                return Err(bad(&reply));
            };
            routes.extend(
                members
                    .iter()
                    .filter_map(text)
                    .filter_map(|f| TopicFilter::new(f).ok())
                    .map(|f| (shard, f)),
            );
        }
        if next == "0" {
            return Ok(RouteUpdate::Replace {
                node: node.into(),
                routes,
            });
        }
        cursor = next;
    }
}

/// Feed entries after `from` of nodes other than `me`: the id to read from
/// next, and the changes.
async fn read_feed(
    client: &RedisClient,
    keys: &Keys,
    from: &str,
    me: &str,
) -> Result<(String, Vec<RouteUpdate>), String> {
    let reply = client
        .cmd(
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("STREAMS")
                .arg(keys.route_feed())
                .arg(from),
        )
        .await
        .map_err(|e| e.to_string())?;
    let entries = match &reply {
        Value::Nil => return Ok((from.to_owned(), Vec::new())),
        Value::Array(streams) => match streams.first() {
            Some(Value::Array(stream)) => match stream.get(1) {
                Some(Value::Array(entries)) => entries,
                _ => return Err(bad(&reply)),
            },
            _ => return Err(bad(&reply)),
        },
        // RESP3 answers with a map.
        Value::Map(streams) => match streams.first() {
            Some((_, Value::Array(entries))) => entries,
            _ => return Err(bad(&reply)),
        },
        _ => return Err(bad(&reply)),
    };
    let mut next = from.to_owned();
    let mut updates = Vec::new();
    for entry in entries {
        let Value::Array(parts) = entry else {
            return Err(bad(entry));
        };
        let (Some(id), Some(Value::Array(fields))) = (parts.first().and_then(text), parts.get(1))
        else {
            return Err(bad(entry));
        };
        next = id;
        match parse_entry(fields) {
            Some(RouteUpdate::Change { ref node, .. }) if node == me => {}
            Some(update) => updates.push(update),
            None => warn!(entry = ?entry, "a route feed entry does not parse: skipped"),
        }
    }
    Ok((next, updates))
}

/// `n node s shard f filter o +|-`.
fn parse_entry(fields: &[Value]) -> Option<RouteUpdate> {
    let (mut node, mut shard, mut filter, mut added) = (None, None, None, None);
    for pair in fields.chunks(2) {
        let (key, value) = (text(&pair[0])?, text(pair.get(1)?)?);
        match key.as_str() {
            "n" => node = Some(value),
            "s" => shard = value.parse().ok(),
            "f" => filter = TopicFilter::new(value).ok(),
            "o" => added = Some(value == "+"),
            _ => {}
        }
    }
    Some(RouteUpdate::Change {
        node: node?.into(),
        shard: shard?,
        filter: filter?,
        added: added?,
    })
}

fn scan_reply(reply: &Value) -> Option<(String, Vec<String>)> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let [cursor, Value::Array(keys)] = &parts[..] else {
        return None;
    };
    Some((text(cursor)?, keys.iter().filter_map(text).collect()))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn bad(reply: &Value) -> String {
    format!("unexpected reply from Redis: {reply:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn feed_entries_parse_or_are_refused() {
        let fields = ["n", "b", "s", "1", "f", "x/+", "o", "-"].map(bulk);
        assert_eq!(
            parse_entry(&fields),
            Some(RouteUpdate::Change {
                node: "b".into(),
                shard: 1,
                filter: TopicFilter::new("x/+".to_owned()).unwrap(),
                added: false,
            })
        );
        let bad_filter = ["n", "b", "s", "1", "f", "x/#/y", "o", "+"].map(bulk);
        assert_eq!(parse_entry(&bad_filter), None);
        let missing = ["n", "b", "f", "x", "o", "+"].map(bulk);
        assert_eq!(parse_entry(&missing), None);
    }
}
