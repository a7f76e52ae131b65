//! Tokens this shard has verified recently, so that a reconnect storm of the
//! same fleet does not pay a signature check (50 µs to 1 ms of a shard's time)
//! per CONNECT.
//!
//! Only what does not depend on the client is cached: the signature, `nbf`,
//! `iat`, `iss` and `aud` checks. Expiry and the binding claim are checked on
//! every CONNECT, hit or not, because a token is replayed by whoever holds it.

use std::sync::Arc;

use super::Claims;
use crate::hash::HashMap;

/// The most time a token stays cached, `exp` or not: it bounds how long the
/// memory of a token that is never used again is held.
const MAX_AGE_SECS: f64 = 600.0;

/// A verified token's SHA-256 → its claims. Bounded: when full, expired
/// entries go, and if that frees less than a quarter, everything goes.
pub struct TokenCache {
    entries: HashMap<[u8; 32], Entry>,
    /// The most entries held; 0 turns the cache off.
    capacity: usize,
    /// The key generation the entries were verified under: a JWKS reload
    /// that replaces the keys empties the cache.
    generation: u64,
}

#[derive(Clone)]
pub struct Entry {
    pub claims: Arc<Claims>,
    /// The token's `exp`, checked again on every hit.
    pub exp: Option<f64>,
    /// When the entry stops being used: `MAX_AGE_SECS` after verifying, or
    /// when the token expires if that is sooner (Unix seconds).
    evict_at: f64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: HashMap::default(),
            capacity,
            generation: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many tokens are remembered.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// The entry for token digest `key`, if it was verified under key
    /// generation `generation` and is not due for eviction at `now`.
    pub fn get(&mut self, key: &[u8; 32], generation: u64, now: f64) -> Option<Entry> {
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
            return None;
        }
        let entry = self.entries.get(key)?;
        if entry.evict_at > now {
            return Some(entry.clone());
        }
        self.entries.remove(key);
        None
    }

    /// Remembers a token verified at `now` under key generation `generation`;
    /// `expires_at` is when its `exp` (plus leeway) makes it expire.
    pub fn insert(
        &mut self,
        key: [u8; 32],
        claims: Arc<Claims>,
        exp: Option<f64>,
        expires_at: Option<f64>,
        generation: u64,
        now: f64,
    ) {
        if self.capacity == 0 || generation < self.generation {
            return; // verified under keys that have since been replaced
        }
        if generation > self.generation {
            self.entries.clear();
            self.generation = generation;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| e.evict_at > now);
            // Clearing beats sweeping the whole table again on the next insert.
            if self.entries.len() >= self.capacity / 4 * 3 {
                self.entries.clear();
            }
        }
        let evict_at = expires_at.unwrap_or(f64::INFINITY).min(now + MAX_AGE_SECS);
        self.entries.insert(
            key,
            Entry {
                claims,
                exp,
                evict_at,
            },
        );
    }
}
