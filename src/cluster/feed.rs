//! Shard 0 keeps what this node copies of the others current: the
//! node-level route index ([`super::routes`]) and the retained messages. It
//! reads every live node's route sets once, then tails the cluster's feed (a
//! Redis stream every node appends its route changes and retained messages
//! to), and hands what changed to every shard's broker.
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
use crate::message::Message;
use crate::store::layout::Keys;
use crate::store::record;
use crate::store::redis::values::{scan, text};
use crate::store::redis::RedisClient;
use crate::store::redis_store::RedisStore;
use crate::topic::{TopicFilter, TopicName};

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
    /// `node` joined (`true`: read its routes) or died (`false`). A dead
    /// node's routes stay until its reaping is through (a `gone` entry on
    /// the feed, [`super::reap`]).
    pub fn node(&self, node: &str, alive: bool) {
        let node = ByteString::from(node);
        match alive {
            true => {
                self.alive.borrow_mut().insert(node.clone());
                self.pending.borrow_mut().push((node, alive));
            }
            false => {
                self.alive.borrow_mut().remove(&node);
            }
        }
    }

    fn is_alive(&self, node: &str) -> bool {
        self.alive.borrow().contains(node)
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
    store: RedisStore,
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
        match step(&store, &keys, &me, &mut last, &pending, &resync).await {
            Ok((updates, retained)) if updates.is_empty() && retained.is_empty() => {}
            Ok((updates, retained)) => {
                debug!(
                    routes = updates.len(),
                    retained = retained.len(),
                    "other nodes changed what this one copies"
                );
                let mut broker = shard.broker.borrow_mut();
                if !updates.is_empty() {
                    broker.route_updates(updates);
                }
                for message in retained {
                    broker.load_retained(message);
                }
                drop(broker);
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
/// nodes in `pending`, then the feed's new entries: route changes, and
/// retained messages as Redis holds them now (an empty payload clears).
async fn step(
    store: &RedisStore,
    keys: &Keys,
    me: &str,
    last: &mut Option<String>,
    pending: &[(ByteString, bool)],
    resync: &Resync,
) -> Result<(Vec<RouteUpdate>, Vec<Message>), String> {
    let client = store.client();
    let mut retained = Vec::new();
    let from = match last.take() {
        Some(id) => id,
        // Start at the feed's end, then read what it would have told: the
        // route sets (the lease task reports each live node, whose sets are
        // read next), and every retained message (start-up loading read them
        // before this position was taken, and one set in between would be
        // missed).
        None => {
            let id = last_id(client, keys).await?;
            retained = store
                .load_retained(std::time::Instant::now())
                .await
                .map_err(|e| e.to_string())?;
            id
        }
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
    let (next, entries) = read_feed(client, keys, &from, me).await?;
    for entry in entries {
        match entry {
            // A newer life of the node holds the routes now (read whole
            // when it joined): the dead one's went with its reset.
            Entry::Route(RouteUpdate::Gone { node }) if resync.is_alive(&node) => {}
            Entry::Route(update) => updates.push(update),
            Entry::Retained(topic) => retained.push(read_retained(client, keys, topic).await?),
        }
    }
    *last = Some(next);
    Ok((updates, retained))
}

/// A topic's retained message as Redis holds it; one with an empty payload
/// (which clears it) when there is none or it does not decode.
async fn read_retained(
    client: &RedisClient,
    keys: &Keys,
    topic: TopicName,
) -> Result<Message, String> {
    let reply = client
        .cmd(redis::cmd("GET").arg(keys.retained(&topic)))
        .await
        .map_err(|e| e.to_string())?;
    let now = std::time::Instant::now();
    let stored = match &reply {
        Value::BulkString(bytes) => match record::decode_message(bytes, &ByteString::new(), now) {
            Ok(message) => Some(message),
            Err(e) => {
                warn!(topic = %&*topic, error = %e, "a retained message does not decode: cleared");
                None
            }
        },
        _ => None,
    };
    Ok(stored.unwrap_or_else(|| Message {
        topic,
        payload: bytes::Bytes::new(),
        qos: crate::protocol::QoS::AtMostOnce,
        retain: true,
        properties: None,
        publisher: ByteString::new(),
        expires_at: None,
        id: None,
    }))
}

/// One entry of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Route(RouteUpdate),
    /// This topic's retained message was set or cleared.
    Retained(TopicName),
}

/// The id of the feed's last entry (`0-0` when it is empty).
async fn last_id(client: &RedisClient, keys: &Keys) -> Result<String, String> {
    let reply = client
        .cmd(
            redis::cmd("XREVRANGE")
                .arg(keys.feed())
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
    let mut cursor = 0u64;
    loop {
        let reply = client
            .cmd(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(keys.routes_pattern(node))
                    .arg("COUNT")
                    .arg(1000),
            )
            .await
            .map_err(|e| e.to_string())?;
        let (next, found) = scan(&reply).ok_or_else(|| bad(&reply))?;
        for key in found {
            let Some(shard) = key.strip_prefix(prefix).and_then(|s| s.parse().ok()) else {
                continue;
            };
            let reply = client
                .cmd(redis::cmd("SMEMBERS").arg(&*key))
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
        if next == 0 {
            return Ok(RouteUpdate::Replace {
                node: node.into(),
                routes,
            });
        }
        cursor = next;
    }
}

/// Feed entries after `from` of nodes other than `me`: the id to read from
/// next, and the entries.
async fn read_feed(
    client: &RedisClient,
    keys: &Keys,
    from: &str,
    me: &str,
) -> Result<(String, Vec<Entry>), String> {
    let reply = client
        .cmd(
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("STREAMS")
                .arg(keys.feed())
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
    let mut parsed = Vec::new();
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
            // This node's own `gone` counts: it drops the routes in feed
            // order too.
            Some((_, e @ Entry::Route(RouteUpdate::Gone { .. }))) => parsed.push(e),
            Some((node, _)) if node == me => {}
            Some((_, entry)) => parsed.push(entry),
            None => warn!(entry = ?entry, "a cluster feed entry does not parse: skipped"),
        }
    }
    Ok((next, parsed))
}

/// `n node s shard f filter o +|-` (a route), `n node r topic` (a retained
/// message), or `n node g dead` (the dead node's routes go): the node that
/// wrote it, and what.
fn parse_entry(fields: &[Value]) -> Option<(String, Entry)> {
    let (mut node, mut shard, mut filter, mut added, mut retained) = (None, None, None, None, None);
    let mut gone = None;
    for pair in fields.chunks(2) {
        let (key, value) = (text(&pair[0])?, text(pair.get(1)?)?);
        match key.as_str() {
            "n" => node = Some(value),
            "s" => shard = value.parse().ok(),
            "f" => filter = TopicFilter::new(value).ok(),
            "o" => added = Some(value == "+"),
            "r" => retained = TopicName::new(value).ok(),
            "g" => gone = Some(value),
            _ => {}
        }
    }
    let node = node?;
    let entry = match (retained, gone) {
        (Some(topic), _) => Entry::Retained(topic),
        (None, Some(dead)) => Entry::Route(RouteUpdate::Gone { node: dead.into() }),
        (None, None) => Entry::Route(RouteUpdate::Change {
            node: node.clone().into(),
            shard: shard?,
            filter: filter?,
            added: added?,
        }),
    };
    Some((node, entry))
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
            Some((
                "b".to_owned(),
                Entry::Route(RouteUpdate::Change {
                    node: "b".into(),
                    shard: 1,
                    filter: TopicFilter::new("x/+".to_owned()).unwrap(),
                    added: false,
                })
            ))
        );
        let retained = ["n", "c", "r", "a/b"].map(bulk);
        assert_eq!(
            parse_entry(&retained),
            Some((
                "c".to_owned(),
                Entry::Retained(TopicName::new("a/b".to_owned()).unwrap())
            ))
        );
        let bad_topic = ["n", "c", "r", "a/+"].map(bulk);
        assert_eq!(parse_entry(&bad_topic), None);
        let bad_filter = ["n", "b", "s", "1", "f", "x/#/y", "o", "+"].map(bulk);
        assert_eq!(parse_entry(&bad_filter), None);
        let missing = ["n", "b", "f", "x", "o", "+"].map(bulk);
        assert_eq!(parse_entry(&missing), None);
        let gone = ["n", "b", "g", "c"].map(bulk);
        assert_eq!(
            parse_entry(&gone),
            Some((
                "b".to_owned(),
                Entry::Route(RouteUpdate::Gone { node: "c".into() })
            ))
        );
    }
}
