//! `[store] kind = "redis"`: the store's operations as Redis commands and
//! scripts ([`super::layout`]) on the shard's own auto-pipelined connection
//! ([`super::redis::RedisClient`]).
//!
//! Writes are fire-and-forget for the broker: [`RedisStore::write`] queues
//! them at once, in order, and a task logs any that failed. Only a claim is
//! awaited, by the CONNECT that needs it, and, with `durability =
//! "messages"`, the barriers a write carries: each is answered once every
//! write queued before it has been answered ([`WriteOrder`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use futures_lite::future::BoxedLocal;
use redis::Value;
use tracing::{debug, warn};

use super::layout::{self, Keys};
use super::record;
use super::redis::values::{self, bulk};
use super::redis::{RedisClient, RedisConfig, RedisError, RedisUrl, Script, ScriptCall, Status};
use super::{Claim, Owner, StoreOp, StoredSession};
use crate::config::StoreConfig;
use crate::protocol::PacketId;
use crate::session::{Delivery, StoredState};
use crate::topic::TopicFilter;

/// What went wrong with a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("unexpected reply from Redis to {0}: {1:?}")]
    Reply(&'static str, Value),
}

/// One shard's store: its Redis connection, the key layout and who it is.
#[derive(Clone)]
pub struct RedisStore {
    inner: Rc<Inner>,
}

struct Inner {
    client: RedisClient,
    /// `host:port`, for messages.
    address: String,
    keys: Keys,
    owner: Owner,
    /// `owner.to_field()`, made once.
    owner_field: String,
    shard: usize,
    claim: Script,
    write: Script,
    release: Script,
    order: RefCell<WriteOrder>,
    /// In a cluster: route and retained changes also go to the feed.
    feed: std::cell::Cell<bool>,
    /// `durability = "messages"`: claims read (and clear) the session's queue.
    messages: bool,
    /// Told of each barrier once the writes before it are answered: `(shard
    /// that asked, ticket, whether they all succeeded)`.
    on_barrier: RefCell<Option<OnBarrier>>,
}

/// Where barriers' answers go: `(shard, ticket, stored)`.
type OnBarrier = Box<dyn Fn(usize, u64, bool)>;

/// A barrier: the shard that sent it, and its ticket.
type Barrier = (usize, u64);

/// Write batches finish in the order they were queued (Redis answers one
/// connection in order, but the tasks that wait for the answers may run in
/// any order). A barrier from a shard reports whether a message that shard
/// published failed to be stored since its previous barrier.
#[derive(Default)]
struct WriteOrder {
    /// The number the next batch gets.
    next: u64,
    /// The batch that finishes next.
    finishing: u64,
    /// Batches answered out of turn: the shards whose messages failed in
    /// them, and their barriers.
    answered: BTreeMap<u64, (Vec<usize>, Vec<Barrier>)>,
    /// Shards with a message that failed since their last barrier.
    failed: BTreeSet<usize>,
}

impl WriteOrder {
    /// Batch `n` was answered: returns the barriers that can be answered now,
    /// with whether every message of their shard before them was stored.
    fn answered(
        &mut self,
        n: u64,
        failed: Vec<usize>,
        barriers: Vec<Barrier>,
    ) -> Vec<(usize, u64, bool)> {
        self.answered.insert(n, (failed, barriers));
        let mut done = Vec::new();
        while let Some((failed, barriers)) = self.answered.remove(&self.finishing) {
            self.finishing += 1;
            self.failed.extend(failed);
            for (shard, ticket) in barriers {
                done.push((shard, ticket, !self.failed.remove(&shard)));
            }
        }
        done
    }
}

/// About how many entries the cluster's feed keeps.
const FEED_LEN: u64 = 1_000_000;

/// Sessions the start-up loader asks about in one round.
const LOAD_BATCH: usize = 1024;

impl RedisStore {
    /// Starts connecting in the background (call on the shard's executor).
    pub fn start(config: &StoreConfig, owner: Owner, shard: usize) -> Result<RedisStore, String> {
        let url = RedisUrl::parse(&config.redis).map_err(|e| e.to_string())?;
        let address = url.address();
        let mut redis = RedisConfig::new(url);
        redis.timeout = config.timeout;
        Ok(RedisStore {
            inner: Rc::new(Inner {
                client: RedisClient::start(redis),
                address,
                keys: Keys::new(&config.key_prefix),
                owner_field: owner.to_field(),
                owner,
                shard,
                claim: Script::new("claim", layout::CLAIM),
                write: Script::new("write", layout::WRITE),
                release: Script::new("release", layout::RELEASE),
                order: RefCell::default(),
                feed: std::cell::Cell::new(false),
                messages: config.durability == crate::config::Durability::Messages,
                on_barrier: RefCell::default(),
            }),
        })
    }

    /// Up, connecting, or down and why (for `/health` and refusals).
    pub fn status(&self) -> Status {
        self.inner.client.status()
    }

    pub fn client(&self) -> &RedisClient {
        &self.inner.client
    }

    /// Where Redis is, `host:port`.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// Waits until every write queued so far has been answered (or failed),
    /// at most the command timeout: at shutdown, so the sessions' last
    /// writes land before the process exits.
    pub async fn flush(&self) {
        let _ = self.inner.client.cmd(&redis::cmd("PING")).await;
    }

    /// Claims `client_id` for a CONNECT: a new generation, and what the
    /// session held. `clean`: the CONNECT starts clean, so the stored session
    /// is emptied in the same step.
    pub async fn claim(
        &self,
        client_id: &ByteString,
        clean: bool,
        now: Instant,
    ) -> Result<Claim, StoreError> {
        let call = self.claim_call(client_id, clean, "");
        let reply = self.inner.client.eval(&call).await?;
        parse_claim(client_id, reply, now)?.ok_or(StoreError::Reply("claim", Value::Nil))
    }

    fn claim_call<'a>(&'a self, client_id: &str, clean: bool, must: &str) -> ScriptCall<'a> {
        let keys = &self.inner.keys;
        self.inner
            .claim
            .call()
            .key(keys.session(client_id))
            .key(keys.subscriptions(client_id))
            .key(keys.queue(client_id))
            .key(keys.node_sessions(&self.inner.owner.node))
            .arg(&self.inner.owner_field)
            .arg(if clean { "1" } else { "0" })
            .arg(must)
            .arg(if self.inner.messages { "1" } else { "0" })
            .arg(client_id)
    }

    /// Appends every route change and retained message set to the
    /// cluster's feed too ([`Keys::feed`]), for the other nodes.
    pub fn feed_cluster(&self) {
        self.inner.feed.set(true);
    }

    /// `XADD` of `fields` to the cluster's feed, when there is one.
    fn push_feed(&self, fields: &[(&str, &[u8])], pending: &mut Vec<Pending>) {
        if !self.inner.feed.get() {
            return;
        }
        let mut xadd = redis::cmd("XADD");
        xadd.arg(self.inner.keys.feed())
            .arg("MAXLEN")
            .arg("~")
            .arg(FEED_LEN)
            .arg("*")
            .arg("n")
            .arg(&self.inner.owner.node);
        for (k, v) in fields {
            xadd.arg(*k).arg(*v);
        }
        self.push_cmd("cluster feed", &xadd, pending);
    }

    /// Where the answers to barriers go ([`RedisStore::write`]).
    pub fn on_barrier(&self, f: impl Fn(usize, u64, bool) + 'static) {
        *self.inner.on_barrier.borrow_mut() = Some(Box::new(f));
    }

    /// Queues `ops` on the connection now, in order, and has a task log the
    /// ones that fail. A session write refused as stale means another claim
    /// took the session since: that claim's owner has it now.
    ///
    /// `barriers` (`(shard, ticket)`) are answered through
    /// [`RedisStore::on_barrier`] once these writes and every one queued
    /// before them are answered: stored if no message that shard published
    /// failed to be stored since its previous barrier.
    pub fn write(&self, ops: Vec<StoreOp>, barriers: Vec<Barrier>) {
        let mut pending = Vec::with_capacity(ops.len());
        let mut sessions = SessionWrites::default();
        for op in ops {
            self.queue(op, &mut sessions, &mut pending);
        }
        for w in sessions.writes {
            let keys = &self.inner.keys;
            let call = self
                .inner
                .write
                .call()
                .key(keys.session(&w.client_id))
                .key(keys.subscriptions(&w.client_id))
                .key(keys.queue(&w.client_id))
                .arg(w.generation)
                .arg(w.args);
            pending.push((w.what, w.origins, Box::pin(self.inner.client.eval(&call))));
        }
        let n = {
            let mut order = self.inner.order.borrow_mut();
            order.next += 1;
            order.next - 1
        };
        let store = self.clone();
        glommio::spawn_local(async move {
            let mut failed = Vec::new();
            for (what, origins, reply) in pending {
                if let Err(e) = reply.await {
                    failed.extend(origins);
                    warn!(shard = store.inner.shard, op = what, error = %e, "store write failed");
                }
            }
            let done = store.inner.order.borrow_mut().answered(n, failed, barriers);
            if let Some(f) = &*store.inner.on_barrier.borrow() {
                for (shard, ticket, stored) in done {
                    f(shard, ticket, stored);
                }
            }
        })
        .detach();
    }

    /// Plain commands are queued on the connection now; session writes are
    /// gathered in `sessions`, one script call per session.
    fn queue(&self, op: StoreOp, sessions: &mut SessionWrites, pending: &mut Vec<Pending>) {
        let keys = &self.inner.keys;
        match op {
            StoreOp::Online {
                client_id,
                generation,
                expiry,
                will,
            } => {
                self.push_cmd(
                    "add to the node's sessions",
                    redis::cmd("SADD")
                        .arg(keys.node_sessions(&self.inner.owner.node))
                        .arg(&*client_id),
                    pending,
                );
                let mut args = vec![expiry_secs(expiry).to_string().into_bytes()];
                args.extend(will.map(|w| w.to_vec()));
                sessions.push(
                    &client_id,
                    generation,
                    "online",
                    args,
                    Some(self.inner.shard),
                );
            }
            StoreOp::Offline {
                client_id,
                generation,
                expiry,
                will,
            } => {
                let ms = expiry.map_or(String::new(), |e| e.as_millis().max(1).to_string());
                let mut args = vec![ms.into_bytes()];
                args.extend(will.map(|w| w.to_vec()));
                sessions.push(&client_id, generation, "offline", args, None);
            }
            StoreOp::WillGone {
                client_id,
                generation,
            } => sessions.push(&client_id, generation, "willgone", vec![], None),
            StoreOp::Subscribe {
                client_id,
                generation,
                filter,
                subscription,
            } => {
                let args = vec![filter.as_bytes().to_vec(), subscription.to_vec()];
                sessions.push(&client_id, generation, "sub", args, Some(self.inner.shard));
            }
            StoreOp::Unsubscribe {
                client_id,
                generation,
                filter,
            } => {
                let args = vec![filter.as_bytes().to_vec()];
                sessions.push(
                    &client_id,
                    generation,
                    "unsub",
                    args,
                    Some(self.inner.shard),
                );
            }
            StoreOp::Remove {
                client_id,
                generation,
            } => {
                sessions.push(&client_id, generation, "remove", vec![], None);
                self.push_cmd(
                    "remove from the node's sessions",
                    redis::cmd("SREM")
                        .arg(keys.node_sessions(&self.inner.owner.node))
                        .arg(&*client_id),
                    pending,
                );
            }
            StoreOp::Queue {
                client_id,
                generation,
                stored,
                delivery,
                packet_id,
                origin,
            } => {
                let mut args = vec![stored.to_string().into_bytes(), delivery.to_vec()];
                args.extend(packet_id.map(|p| p.get().to_string().into_bytes()));
                sessions.push(&client_id, generation, "queue", args, Some(origin));
            }
            StoreOp::Sent {
                client_id,
                generation,
                stored,
                packet_id,
            } => {
                let args = vec![
                    stored.to_string().into_bytes(),
                    packet_id.get().to_string().into_bytes(),
                ];
                sessions.push(&client_id, generation, "sent", args, None);
            }
            StoreOp::Released {
                client_id,
                generation,
                stored,
            } => {
                let args = vec![stored.to_string().into_bytes()];
                sessions.push(&client_id, generation, "released", args, None);
            }
            StoreOp::Trim {
                client_id,
                generation,
                stored,
            } => {
                let args = vec![stored.to_string().into_bytes()];
                sessions.push(&client_id, generation, "trim", args, None);
            }
            StoreOp::Retain {
                topic,
                message,
                expiry,
            } => match message {
                Some(message) => {
                    let mut set = redis::cmd("SET");
                    set.arg(keys.retained(&topic)).arg(&message[..]);
                    if let Some(e) = expiry {
                        set.arg("PX").arg(e.as_millis().max(1) as u64);
                    }
                    self.push_cmd("retain", &set, pending);
                    self.push_cmd(
                        "retain",
                        redis::cmd("SADD").arg(keys.retained_index()).arg(&*topic),
                        pending,
                    );
                    self.push_feed(&[("r", topic.as_bytes())], pending);
                }
                None => {
                    self.push_cmd(
                        "clear retained",
                        redis::cmd("DEL").arg(keys.retained(&topic)),
                        pending,
                    );
                    self.push_cmd(
                        "clear retained",
                        redis::cmd("SREM").arg(keys.retained_index()).arg(&*topic),
                        pending,
                    );
                    self.push_feed(&[("r", topic.as_bytes())], pending);
                }
            },
            StoreOp::Route { filter, added } => {
                let cmd = if added { "SADD" } else { "SREM" };
                self.push_cmd(
                    "route",
                    redis::cmd(cmd)
                        .arg(keys.routes(&self.inner.owner.node, self.inner.shard))
                        .arg(&*filter),
                    pending,
                );
                let shard = self.inner.shard.to_string();
                let op: &[u8] = if added { b"+" } else { b"-" };
                self.push_feed(
                    &[("s", shard.as_bytes()), ("f", filter.as_bytes()), ("o", op)],
                    pending,
                );
            }
        }
    }

    /// Queues a plain command now.
    fn push_cmd(&self, what: &'static str, cmd: &redis::Cmd, pending: &mut Vec<Pending>) {
        pending.push((what, Vec::new(), Box::pin(self.inner.client.cmd(cmd))));
    }
}

/// A write queued: what it is (for the log), the shards whose published
/// messages it stores (a barrier of each reports its failure), and its
/// reply.
type Pending = (
    &'static str,
    Vec<usize>,
    BoxedLocal<Result<Value, RedisError>>,
);

/// The session writes of one batch, gathered per session (and generation):
/// each session's operations, in their order, go to Redis as one `WRITE`
/// call ([`layout::WRITE`]), fenced once.
#[derive(Default)]
struct SessionWrites {
    writes: Vec<SessionWrite>,
    index: crate::hash::HashMap<(ByteString, u64), usize>,
}

struct SessionWrite {
    client_id: ByteString,
    generation: u64,
    /// The first operation's name, for the log.
    what: &'static str,
    /// `op, argument count, arguments...` for each operation.
    args: Vec<Vec<u8>>,
    origins: Vec<usize>,
}

impl SessionWrites {
    fn push(
        &mut self,
        client_id: &ByteString,
        generation: u64,
        op: &'static str,
        args: Vec<Vec<u8>>,
        origin: Option<usize>,
    ) {
        let i = *self
            .index
            .entry((client_id.clone(), generation))
            .or_insert_with(|| {
                self.writes.push(SessionWrite {
                    client_id: client_id.clone(),
                    generation,
                    what: op,
                    args: Vec::new(),
                    origins: Vec::new(),
                });
                self.writes.len() - 1
            });
        let w = &mut self.writes[i];
        w.args.push(op.as_bytes().to_vec());
        w.args.push(args.len().to_string().into_bytes());
        w.args.extend(args);
        w.origins.extend(origin);
    }
}

/// Seconds as MQTT 5 writes a session expiry interval: `u32::MAX` is never.
fn expiry_secs(expiry: Duration) -> u32 {
    if expiry == Duration::MAX {
        u32::MAX
    } else {
        u32::try_from(expiry.as_secs()).unwrap_or(u32::MAX - 1)
    }
}

fn expiry_from_secs(secs: u32) -> Duration {
    if secs == u32::MAX {
        Duration::MAX
    } else {
        Duration::from_secs(u64::from(secs))
    }
}

/// The claim script's reply; `None` for an adoption that did not happen.
fn parse_claim(
    client_id: &ByteString,
    reply: Value,
    now: Instant,
) -> Result<Option<Claim>, StoreError> {
    let bad = |v: &Value| StoreError::Reply("claim", v.clone());
    let parts = match &reply {
        Value::Array(parts) if parts.len() == 7 => parts,
        // Adoption only: gone (0), here already (1), another owner's.
        Value::Nil | Value::Int(_) | Value::BulkString(_) => return Ok(None),
        other => return Err(bad(other)),
    };
    let Value::Int(generation) = parts[0] else {
        return Err(bad(&reply));
    };
    let previous = bulk(&parts[1]).map(|b| String::from_utf8_lossy(b).into_owned());
    let expiry = bulk(&parts[2])
        .and_then(|b| std::str::from_utf8(b).ok()?.parse::<u32>().ok())
        .map(expiry_from_secs);
    let expires_in = match parts[3] {
        Value::Int(ms) if ms >= 0 => Some(Duration::from_millis(ms as u64)),
        _ => None,
    };
    let orphan_will = match bulk(&parts[4]) {
        Some(bytes) => match record::decode_will(bytes, client_id, now) {
            Ok(will) => Some(will),
            Err(e) => {
                warn!(client = %client_id, error = %e, "a stored will does not decode: dropped");
                None
            }
        },
        None => None,
    };
    let session = match expiry {
        None => None,
        Some(expiry) => {
            let Value::Array(list) = &parts[5] else {
                return Err(bad(&reply));
            };
            let mut subscriptions = Vec::with_capacity(list.len() / 2);
            for pair in list.chunks(2) {
                let (Some(filter), Some(options)) = (bulk(&pair[0]), pair.get(1).and_then(bulk))
                else {
                    return Err(bad(&reply));
                };
                let filter = std::str::from_utf8(filter)
                    .ok()
                    .and_then(|f| TopicFilter::new(f.to_owned()).ok());
                match (filter, record::decode_subscription(options)) {
                    (Some(filter), Ok(sub)) => subscriptions.push((filter, sub)),
                    _ => {
                        warn!(client = %client_id, "a stored subscription does not decode: dropped")
                    }
                }
            }
            let Value::Array(queue) = &parts[6] else {
                return Err(bad(&reply));
            };
            Some(StoredSession {
                expiry,
                expires_in,
                subscriptions,
                queued: parse_queue(client_id, queue, now),
            })
        }
    };
    Ok(Some(Claim {
        generation: generation as u64,
        previous,
        session,
        orphan_will,
    }))
}

/// A session's stored queue (`{field, value, ...}`, [`Keys::queue`]), in
/// order, with how far each delivery got. What does not decode is logged and
/// left out.
fn parse_queue(
    client_id: &ByteString,
    fields: &[Value],
    now: Instant,
) -> Vec<(Delivery, StoredState)> {
    let number = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
    let mut deliveries = std::collections::BTreeMap::new();
    let mut sent = Vec::new();
    let mut released = Vec::new();
    for pair in fields.chunks(2) {
        let (Some(field), Some(value)) = (bulk(&pair[0]), pair.get(1).and_then(bulk)) else {
            continue;
        };
        match field.split_first() {
            Some((b'p', n)) => {
                let id = number(value)
                    .and_then(|v| u16::try_from(v).ok())
                    .and_then(PacketId::new);
                if let (Some(n), Some(id)) = (number(n), id) {
                    sent.push((n, id));
                }
            }
            Some((b'r', n)) => released.extend(number(n)),
            _ => match number(field).map(|n| (n, record::decode_delivery(value, n, now))) {
                Some((n, Ok(d))) => {
                    deliveries.insert(n, (d, StoredState::Queued));
                }
                _ => warn!(client = %client_id, "a stored message does not decode: dropped"),
            },
        }
    }
    for (n, id) in sent {
        if let Some(entry) = deliveries.get_mut(&n) {
            entry.1 = match released.contains(&n) {
                true => StoredState::Released(id),
                false => StoredState::Sent(id),
            };
        }
    }
    deliveries.into_values().collect()
}

/// What [`RedisStore::forget_routes`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgot {
    Gone,
    /// Some of the dead life's sessions are not adopted yet.
    NotYet,
    /// The node has a newer life, which holds the route sets.
    NewerLife,
}

/// Loading at start-up: the sessions a past life of this node owned, and the
/// retained messages.
impl RedisStore {
    /// Calls `adopted` with each session of this shard that a past life of
    /// this node left, and returns how many. Sessions gone or owned by
    /// another node leave this node's set.
    pub async fn load_sessions(
        &self,
        nr_shards: usize,
        adopted: impl FnMut(ByteString, Claim),
    ) -> Result<usize, StoreError> {
        let me = &self.inner.owner;
        self.adopt_sessions(&me.node, &me.node_prefix(), nr_shards, |_| false, adopted)
            .await
    }

    /// Reaping (`cluster::reap`): adopts the sessions of this shard that the
    /// dead life `dead` owned, into this node's set, and returns their ids.
    /// They stay in the dead node's set until [`RedisStore::reaped`].
    ///
    /// A session another live life claimed from the dead one stays in the
    /// dead node's set: that node takes it out once its routes are written
    /// ([`RedisStore::release`] after its CONNECT), so the dead node's routes
    /// do not go before the claimer's are on the feed. `live`: the lives
    /// alive now, this one included.
    pub async fn reap_sessions(
        &self,
        dead: &Owner,
        nr_shards: usize,
        live: &[Owner],
        mut adopted: impl FnMut(ByteString, Claim),
    ) -> Result<Vec<ByteString>, StoreError> {
        let mine = self.inner.keys.node_sessions(&self.inner.owner.node);
        let mut ids = Vec::new();
        let alive = |owner: &str| live.iter().any(|l| l.to_field() == owner);
        self.adopt_sessions(
            &dead.node,
            &dead.to_field(),
            nr_shards,
            alive,
            |id, claim| {
                drop(
                    self.inner
                        .client
                        .cmd(redis::cmd("SADD").arg(&mine).arg(&*id)),
                );
                ids.push(id.clone());
                adopted(id, claim)
            },
        )
        .await?;
        Ok(ids)
    }

    /// The generation the store holds for each of `ids` (`None`: no
    /// session), pipelined.
    pub async fn generations(&self, ids: &[ByteString]) -> Result<Vec<Option<u64>>, StoreError> {
        let replies: Vec<_> = ids
            .iter()
            .map(|id| {
                let key = self.inner.keys.session(id);
                self.inner
                    .client
                    .cmd(redis::cmd("HGET").arg(key).arg("gen"))
            })
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for reply in replies {
            let reply = reply.await?;
            out.push(values::text(&reply).and_then(|g| g.parse().ok()));
        }
        Ok(out)
    }

    /// The sessions in `ids`, adopted from `dead`, have their routes written
    /// (the caller flushed): they leave the dead node's set, whose emptying
    /// lets its routes go ([`RedisStore::forget_routes`]).
    pub async fn reaped(&self, dead: &Owner, ids: &[ByteString]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut srem = redis::cmd("SREM");
        srem.arg(self.inner.keys.node_sessions(&dead.node));
        for id in ids {
            srem.arg(&**id);
        }
        self.inner.client.cmd(&srem).await?;
        Ok(())
    }

    /// `client_id`, which this node claimed from `previous`, leaves
    /// `previous`'s sessions set if this node still owns it ([`layout::RELEASE`]).
    pub async fn release(
        &self,
        previous: &Owner,
        client_id: &ByteString,
    ) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let call = self
            .inner
            .release
            .call()
            .key(keys.session(client_id))
            .key(keys.node_sessions(&previous.node))
            .arg(&self.inner.owner_field)
            .arg(&**client_id);
        self.inner.client.eval(&call).await?;
        Ok(())
    }

    /// Calls `adopted` with each session of this shard in `node`'s set whose
    /// owner field starts with `must`, claimed offline for this node, and
    /// returns how many. Sessions gone, or owned by another life that is not
    /// `owner_alive`, leave the set.
    async fn adopt_sessions(
        &self,
        node: &str,
        must: &str,
        nr_shards: usize,
        owner_alive: impl Fn(&str) -> bool,
        mut adopted: impl FnMut(ByteString, Claim),
    ) -> Result<usize, StoreError> {
        let set = self.inner.keys.node_sessions(node);
        let scan = |cursor: u64| {
            let mut sscan = redis::cmd("SSCAN");
            sscan.arg(&set).arg(cursor).arg("COUNT").arg(LOAD_BATCH);
            self.inner.client.cmd(&sscan)
        };
        let prefix = must;
        let mut next_scan = Some(scan(0));
        let mut count = 0;
        while let Some(scanned) = next_scan.take() {
            let reply = scanned.await?;
            let (next, ids) =
                values::scan(&reply).ok_or_else(|| StoreError::Reply("SSCAN", reply.clone()))?;
            let mine: Vec<ByteString> = ids
                .into_iter()
                .filter(|id| shards::shard_for(id.as_bytes(), nr_shards) == self.inner.shard)
                .collect();
            // Every adoption of the round, and the next round's scan, are
            // queued before the first is awaited: Redis is never idle.
            let replies: Vec<_> = mine
                .iter()
                .map(|id| self.inner.client.eval(&self.claim_call(id, false, prefix)))
                .collect();
            next_scan = (next != 0).then(|| scan(next));
            for (id, reply) in mine.into_iter().zip(replies) {
                let reply = reply.await?;
                match parse_claim(&id, reply.clone(), Instant::now())? {
                    Some(claim) => {
                        count += 1;
                        adopted(id, claim);
                    }
                    None => {
                        let gone = match &reply {
                            Value::Int(0) => true,
                            Value::BulkString(owner) => {
                                !owner_alive(&String::from_utf8_lossy(owner))
                            }
                            _ => false,
                        };
                        if gone {
                            // Queued now; its reply does not matter.
                            drop(
                                self.inner
                                    .client
                                    .cmd(redis::cmd("SREM").arg(&set).arg(&*id)),
                            );
                        }
                    }
                }
            }
        }
        Ok(count)
    }

    /// The last step of reaping `dead`: once every survivor has adopted its
    /// sessions (its sessions set is empty, or `force`), and unless its node
    /// has a newer life, its route sets go and the feed tells every node to
    /// drop its routes.
    pub async fn forget_routes(&self, dead: &Owner, force: bool) -> Result<Forgot, StoreError> {
        let keys = &self.inner.keys;
        let script = Script::new("forget", layout::FORGET);
        let mut call = script
            .call()
            .key(keys.nodes())
            .key(keys.feed())
            .key(keys.node_sessions(&dead.node))
            .key(keys.leases());
        for shard in 0..crate::topic::MAX_SHARDS {
            call = call.key(keys.routes(&dead.node, shard));
        }
        let call = call
            .arg(&dead.node)
            .arg(format!("{:x}", dead.boot))
            .arg(&self.inner.owner.node)
            .arg(FEED_LEN)
            .arg(if force { "1" } else { "0" });
        match self.inner.client.eval(&call).await? {
            Value::Int(1) => Ok(Forgot::Gone),
            Value::Int(2) => Ok(Forgot::NotYet),
            _ => Ok(Forgot::NewerLife),
        }
    }

    /// Every retained message, for shard 0 to load and share.
    pub async fn load_retained(
        &self,
        now: Instant,
    ) -> Result<Vec<crate::message::Message>, StoreError> {
        let keys = &self.inner.keys;
        let index = keys.retained_index();
        let mut cursor = 0u64;
        let mut messages = Vec::new();
        loop {
            let reply = self
                .inner
                .client
                .cmd(
                    redis::cmd("SSCAN")
                        .arg(&index)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(LOAD_BATCH),
                )
                .await?;
            let (next, topics) =
                values::scan(&reply).ok_or_else(|| StoreError::Reply("SSCAN", reply.clone()))?;
            let gets: Vec<_> = topics
                .iter()
                .map(|t| {
                    self.inner
                        .client
                        .cmd(redis::cmd("GET").arg(keys.retained(t)))
                })
                .collect();
            for (topic, get) in topics.into_iter().zip(gets) {
                match get.await? {
                    Value::BulkString(bytes) => {
                        match record::decode_message(&bytes, &ByteString::new(), now) {
                            Ok(m) => messages.push(m),
                            Err(e) => {
                                warn!(%topic, error = %e, "a stored retained message does not decode: skipped")
                            }
                        }
                    }
                    // Expired: its index entry goes too.
                    _ => {
                        debug!(%topic, "retained message expired");
                        drop(
                            self.inner
                                .client
                                .cmd(redis::cmd("SREM").arg(&index).arg(&*topic)),
                        );
                    }
                }
            }
            if next == 0 {
                return Ok(messages);
            }
            cursor = next;
        }
    }

    /// Empties this node's route set of this shard: start-up rebuilds it from
    /// the sessions it loads and the clients that subscribe.
    pub fn reset_routes(&self) {
        let key = self
            .inner
            .keys
            .routes(&self.inner.owner.node, self.inner.shard);
        let store = self.clone();
        let reply = self.inner.client.cmd(redis::cmd("DEL").arg(key));
        glommio::spawn_local(async move {
            if let Err(e) = reply.await {
                warn!(shard = store.inner.shard, error = %e, "could not reset the route set");
            }
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::WriteOrder;

    #[test]
    fn barriers_are_answered_in_write_order_with_their_shards_failures() {
        let mut order = WriteOrder::default();
        // Batch 1 is answered before batch 0: nothing can be answered yet.
        assert_eq!(order.answered(1, vec![1], vec![(0, 7), (1, 3)]), []);
        // Batch 0 failed a message of shard 0; its barrier for shard 1 is
        // fine. Then batch 1's barriers: shard 0 had a failure since its
        // last barrier (batch 0's), shard 1 had one in batch 1.
        assert_eq!(
            order.answered(0, vec![0], vec![(1, 2)]),
            [(1, 2, true), (0, 7, false), (1, 3, false)]
        );
        // A failure is reported once, to the next barrier of its shard.
        assert_eq!(
            order.answered(2, vec![], vec![(0, 8), (1, 4)]),
            [(0, 8, true), (1, 4, true)]
        );
    }
}
