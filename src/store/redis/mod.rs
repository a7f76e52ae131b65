//! A small Redis client for glommio shards.
//!
//! # Why
//! The redis crate's async clients need tokio and `Send` streams; glommio's
//! are `!Send`. So each shard drives its own RESP connection on a glommio
//! `TcpStream`, and borrows from the redis crate only what needs no
//! runtime: `Cmd`/`Pipeline` to encode, `Parser` to decode (it resumes after
//! a partial read), `Value` for replies (DESIGN section 3).
//!
//! # Guarantees
//! - One connection per client (per shard), auto-pipelined: what is queued
//!   goes out in one write; replies are matched in order. A command is
//!   queued when it is issued, not when its future is polled, and a dropped
//!   future does not shift the replies of later commands.
//! - Every command has a deadline ([`RedisConfig::timeout`]). When the
//!   oldest one passes, the connection is dropped and everything on it
//!   fails with [`RedisError::Timeout`]: a pipelined reply cannot be
//!   skipped.
//! - A shard never blocks on Redis: while it is down ([`Status::Down`]),
//!   commands fail at once rather than pile up; the driver reconnects with a
//!   capped back-off, logging in (`AUTH`, `SELECT`) before anything queued.
//!
//! # Limits
//! - The queue is bounded by time (the timeout), not by size.
//! - A script call that meets `NOSCRIPT` (Redis lost its scripts since this
//!   connection first sent the code) is retried with `EVAL` when the
//!   `NOSCRIPT` arrives, so it runs after commands issued after it.
//! - RESP2 only (no `HELLO 3`): no push messages, no client-side caching.
//!
//! # Layout
//! - `client`: [`RedisClient`], [`RedisConfig`], [`Status`], and the state
//!   the client shares with its driver task;
//! - `driver`: the task that connects, logs in, writes and reads;
//! - `queue`: encoded commands waiting to be written, and their callers
//!   waiting for replies;
//! - `reply`: the futures callers await;
//! - `resp`: replies out of the bytes read, however they were cut;
//! - `script`: [`Script`]s called by hash, with their code for `NOSCRIPT`;
//! - `values`: reading reply values (bulk strings, text, `SCAN` replies);
//! - `backoff`, `error`, `url`;
//! - `test_server` (tests only): a real `redis-server` on a free port.

mod backoff;
mod client;
mod driver;
mod error;
mod queue;
mod reply;
mod resp;
mod script;
mod url;
pub mod values;

#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;

pub use client::{RedisClient, RedisConfig, Status};
pub use error::RedisError;
pub use reply::{GroupReply, Reply};
pub use script::{Script, ScriptCall};
pub use url::{RedisUrl, UrlError};
