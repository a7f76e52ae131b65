//! Where things are in Redis: every key name, and the scripts that change a
//! session. ARCHITECTURE.md ("The store") documents the same layout for people.
//!
//! - Every key starts with `[store] key-prefix`.
//! - A session's keys share the hash tag `{<client id>}`, so each script
//!   touches one Redis Cluster slot, and declares every key it touches.
//! - Session writes are fenced: each carries the generation its claim
//!   returned, and the script refuses it (`STALE`) when the session's
//!   generation has moved on. No clock is compared anywhere.
//! - The scripts run by EVALSHA: their SHA1 is their version, and a server
//!   that does not have them (restarted, `SCRIPT FLUSH`) gets them again on
//!   NOSCRIPT.

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// HASH: `gen` (fencing generation), `owner` (`node#boot`), `expiry`
    /// (session expiry in ms; present once the session was written, so its
    /// absence means "no session"), `online` (`1` or `0`), `will` (delay and
    /// PUBLISH, [`super::record::encode_will`]).
    pub fn session(&self, client_id: &str) -> String {
        format!("{}s:{{{client_id}}}", self.prefix)
    }

    /// HASH: topic filter (with `$share/<group>/` when shared) → subscription
    /// options ([`super::record::encode_subscription`]).
    pub fn subscriptions(&self, client_id: &str) -> String {
        format!("{}s:{{{client_id}}}:subs", self.prefix)
    }

    /// HASH, with `durability = "messages"`: the QoS 1/2 messages queued or
    /// in flight for the session. Field `<n>` (the delivery's number, which
    /// gives their order) → the delivery ([`super::record::encode_delivery`]);
    /// field `p<n>` → the packet id it was sent under, once it was; field
    /// `r<n>` → `1` once a QoS 2 delivery's PUBREC came.
    pub fn queue(&self, client_id: &str) -> String {
        format!("{}s:{{{client_id}}}:q", self.prefix)
    }

    /// SET of the client ids whose sessions `node` owns or owned: what a
    /// restarted node adopts. A member whose session has expired is removed
    /// when it is found missing.
    pub fn node_sessions(&self, node: &str) -> String {
        format!("{}node:{node}:sessions", self.prefix)
    }

    /// SET of the topic filters with subscribers on one shard of `node`.
    pub fn routes(&self, node: &str, shard: usize) -> String {
        format!("{}node:{node}:routes:{shard}", self.prefix)
    }

    /// The pattern of every route set of `node`, for SCAN.
    pub fn routes_pattern(&self, node: &str) -> String {
        format!("{}node:{node}:routes:*", self.prefix)
    }

    /// STREAM, in a cluster: what every node changed that the others
    /// keep a copy of ([`crate::cluster::feed`]): a route, entry `n` (node
    /// id), `s` (shard), `f` (topic filter), `o` (`+` added, `-` removed);
    /// or a retained message, entry `n`, `r` (its topic; the message is
    /// [`Keys::retained`]). Trimmed to about 1,000,000 entries.
    pub fn feed(&self) -> String {
        format!("{}feed", self.prefix)
    }

    /// SET of the topics that have a retained message.
    pub fn retained_index(&self) -> String {
        format!("{}retained", self.prefix)
    }

    /// ZSET: node id → the end of its lease, in ms of Redis's clock
    /// ([`crate::cluster::membership`]). Shares the hash tag `{cluster}` with
    /// [`Keys::nodes`], so the lease script touches one slot.
    pub fn leases(&self) -> String {
        format!("{}{{cluster}}:leases", self.prefix)
    }

    /// HASH: node id → `<boot id>|<cluster address>` of its current life.
    pub fn nodes(&self) -> String {
        format!("{}{{cluster}}:nodes", self.prefix)
    }

    /// STRING: a topic's retained message ([`super::record::encode_message`]),
    /// with a TTL when the message has an expiry.
    pub fn retained(&self, topic: &str) -> String {
        format!("{}r:{{{topic}}}", self.prefix)
    }
}

/// Claims a session for a new connection, or adopts one a past life of this
/// node left.
///
/// KEYS: session, subscriptions, queue, the claiming node's sessions set.
/// ARGV: the new owner; `1` if the CONNECT starts clean; an owner prefix the
/// current owner must have (`""`: any), for adoption, which returns 0 when
/// the session is gone, the owner when another owner has it, and 1 when this
/// very owner has it already; `1` if queued messages are stored
/// (`durability = "messages"`: otherwise the queue is not touched, which
/// saves Redis about a sixth of a restart's loading); the client id.
///
/// A CONNECT's claim puts the id in the claiming node's sessions set at
/// once: if that node dies before it hears the reply, its reapers find the
/// session and adopt it (the connection it took over elsewhere then ends).
///
/// The generation only grows, even across the session key's deletion (a
/// clean session's end, an expiry): it is at least Redis's clock in
/// microseconds. Nodes remember generations that took a client id from them
/// (`broker/owners.rs`); a counter starting again at 1 would look older than
/// those and be refused.
///
/// A claim for a CONNECT takes the keys' TTL off (the session is online). An
/// adoption leaves the session offline: its TTL runs on, or starts with the
/// full expiry if the session was online when its node died.
///
/// Returns `{generation, previous owner, expiry seconds, ms left before it
/// expires (-1 none, -2 no key), orphan will, {filter, options, ...},
/// {queue field, value, ...}}`. A
/// will is an orphan when another owner (a dead past life) left it. The
/// script leaves it in place: the claimer deletes it (`willgone`, or its
/// `online` write) once it has published it, so a claimer that dies first
/// leaves it to the next claim instead of losing it.
pub const CLAIM: &str = r#"
local s, subs, q, set = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local owner, clean, must, messages = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local h = redis.call('HMGET', s, 'owner', 'expiry', 'will')
local prev, expiry, will = h[1], h[2], h[3]
if must ~= '' then
  if not prev then
    return 0
  end
  if string.sub(prev, 1, #must) ~= must then
    return prev
  end
  if prev == owner then
    return 1
  end
end
local ttl = redis.call('PTTL', s)
local gen = redis.call('HINCRBY', s, 'gen', 1)
local t = redis.call('TIME')
local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
if gen < floor then
  gen = floor
  redis.call('HSET', s, 'gen', string.format('%d', gen))
end
local orphan = false
if prev and prev ~= owner and will then
  orphan = will
end
if must == '' then
  redis.call('SADD', set, ARGV[5])
  redis.call('HSET', s, 'owner', owner)
  redis.call('PERSIST', s)
  redis.call('PERSIST', subs)
  if messages then redis.call('PERSIST', q) end
else
  redis.call('HSET', s, 'owner', owner, 'online', '0')
  if ttl == -1 and expiry and expiry ~= '4294967295' then
    redis.call('PEXPIRE', s, expiry * 1000)
    redis.call('PEXPIRE', subs, expiry * 1000)
    if messages then redis.call('PEXPIRE', q, expiry * 1000) end
  end
end
if clean == '1' then
  redis.call('DEL', subs, q)
  redis.call('HDEL', s, 'expiry', 'will', 'online')
  expiry = false
end
local list, queue = {}, {}
if expiry then
  list = redis.call('HGETALL', subs)
  if messages then queue = redis.call('HGETALL', q) end
end
return {gen, prev, expiry, ttl, orphan, list, queue}
"#;

/// A session claimed from another node leaves that node's sessions set, if
/// the claimer still owns it (a later claim may have taken it since: then
/// the set keeps it for reaping).
///
/// KEYS: session, the other node's sessions set. ARGV: the claimer, the
/// client id. Returns 1 if it left the set.
pub const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
return redis.call('SREM', KEYS[2], ARGV[2])
"#;

/// The end of reaping a dead life: its route sets go, and an entry on the
/// feed (`n` reaper, `g` dead node) tells every node to drop its routes,
/// unless the node has registered a newer life meanwhile (whose route sets
/// share the keys).
///
/// Adopters take a session out of the dead node's sessions set only once
/// its routes are written, so while the set is not empty some adopter's
/// routes may be missing from the feed, and the dead node's must stay.
///
/// KEYS: nodes, feed, the dead node's sessions set, leases, then its route
/// sets. ARGV: dead node, its boot id (hex), the reaping node, the feed's
/// length bound, `1` to go on even if the set is not empty. Returns 1 if
/// the routes went, 2 if sessions are left to adopt, 0 if a newer life holds
/// them or the same life holds a lease again (it lapsed and came back: a
/// Redis restart, a pause).
pub const FORGET: &str = r#"
local life = redis.call('HGET', KEYS[1], ARGV[1])
if life and string.sub(life, 1, #ARGV[2] + 1) ~= ARGV[2] .. '|' then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(redis.call('ZSCORE', KEYS[4], ARGV[1]) or '0')
if lease > now then
  return 0
end
if ARGV[5] ~= '1' and redis.call('SCARD', KEYS[3]) > 0 then
  return 2
end
for i = 5, #KEYS do
  redis.call('DEL', KEYS[i])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'n', ARGV[3], 'g', ARGV[1])
return 1
"#;

/// Every fenced write to a session: one call carries all the operations a
/// shard has for the session in one batch, in order.
///
/// KEYS: session, subscriptions, queue. ARGV[1]: the generation of the claim
/// the writer holds; then, for each operation, its name, the number of its
/// arguments, and its arguments:
/// - `online` expiry-s [will]: the session is up; a will is kept in case
///   the node dies;
/// - `offline` expire-ms|"" [will]: it is down; its keys expire after
///   expire-ms (`""`: never); a will waiting for its delay is kept, any other
///   deleted;
/// - `willgone`: the will went out or was cancelled;
/// - `sub` filter options; `unsub` filter;
/// - `remove`: every key of the session goes (and nothing after it runs);
/// - `queue` n delivery [packet id]: a delivery queued (and sent, with its
///   packet id); the queue expires with the session when it is offline;
/// - `sent` n packet id; `released` n; `trim` n: a delivery sent, past
///   PUBREC (QoS 2), or gone.
///
/// A stale generation is refused with the error `STALE`, except that removing
/// a session whose keys have expired already does nothing.
pub const WRITE: &str = r#"
local s, subs, q = KEYS[1], KEYS[2], KEYS[3]
local gen = ARGV[1]
local current = redis.call('HGET', s, 'gen')
if current ~= gen then
  if ARGV[2] == 'remove' and not current then
    return 0
  end
  return redis.error_reply('STALE generation ' .. gen .. ' of ' .. s)
end
local i = 2
while i <= #ARGV do
  local op, n = ARGV[i], tonumber(ARGV[i + 1])
  if not n then
    return redis.error_reply('no argument count for ' .. op)
  end
  local a, b, c
  if n >= 1 then a = ARGV[i + 2] end
  if n >= 2 then b = ARGV[i + 3] end
  if n >= 3 then c = ARGV[i + 4] end
  if op == 'online' then
    redis.call('HSET', s, 'expiry', a, 'online', '1')
    if b then redis.call('HSET', s, 'will', b) else redis.call('HDEL', s, 'will') end
  elseif op == 'offline' then
    redis.call('HSET', s, 'online', '0')
    if b then redis.call('HSET', s, 'will', b) else redis.call('HDEL', s, 'will') end
    if a ~= '' then
      redis.call('PEXPIRE', s, a)
      redis.call('PEXPIRE', subs, a)
      redis.call('PEXPIRE', q, a)
    end
  elseif op == 'willgone' then
    redis.call('HDEL', s, 'will')
  elseif op == 'sub' then
    redis.call('HSET', subs, a, b)
  elseif op == 'unsub' then
    redis.call('HDEL', subs, a)
  elseif op == 'queue' then
    redis.call('HSET', q, a, b)
    if c then redis.call('HSET', q, 'p' .. a, c) end
    local ttl = redis.call('PTTL', s)
    if ttl > 0 then redis.call('PEXPIRE', q, ttl) end
  elseif op == 'sent' then
    redis.call('HSET', q, 'p' .. a, b)
  elseif op == 'released' then
    redis.call('HSET', q, 'r' .. a, '1')
  elseif op == 'trim' then
    redis.call('HDEL', q, a, 'p' .. a, 'r' .. a)
  elseif op == 'remove' then
    redis.call('DEL', s, subs, q)
    return 1
  else
    return redis.error_reply('unknown operation ' .. op)
  end
  i = i + 2 + n
end
return 1
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_keys_share_its_hash_tag() {
        let k = Keys::new("shardmq:");
        assert_eq!(k.session("phone-1"), "shardmq:s:{phone-1}");
        assert_eq!(k.subscriptions("phone-1"), "shardmq:s:{phone-1}:subs");
        assert_eq!(k.retained("a/b"), "shardmq:r:{a/b}");
        assert_eq!(k.routes("n1:1883", 1), "shardmq:node:n1:1883:routes:1");
    }
}
