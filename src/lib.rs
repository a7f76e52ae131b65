//! shardmq: a thread-per-core MQTT broker for fleets of mobile clients.
//!
//! # Layout
//! - [`protocol`]: the sans-IO codec for MQTT 3.1, 3.1.1 and 5.0, both directions,
//!   including the Courier clients' 3.1.1 extensions. No sockets, no runtime: the
//!   broker and the load tester both drive it over a `BytesMut`.
//! - [`topic`]: validated topic names and filters, the subscription trie and the
//!   index of which shards hold subscribers for a topic.
//! - [`store`]: what must survive a restart (persistent sessions, routes, retained
//!   messages), mirrored into Redis when configured.
//! - [`auth`], [`acl`], [`events`]: the broker's decision and emission points
//!   (traits with defaults that allow everything and emit nothing), where JWT
//!   auth, the ACL file and the event stream plug in.
//!
//! # Why
//! Parsing and matching run for every packet of millions of connections, and they
//! are the first thing a hostile client reaches. Keeping them pure functions over
//! buffers makes them easy to test byte for byte, to fuzz, and to benchmark.

pub mod acl;
pub mod auth;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod events;
mod hash;
pub mod http;
pub mod message;
pub mod metrics;
pub mod protocol;
pub mod ratelimit;
pub mod reload;
pub mod retained;
pub mod router;
pub mod server;
pub mod session;
pub mod stamp;
pub mod store;
pub mod topic;

pub use server::{run, start, RunError, Server};

/// The README's Rust examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
