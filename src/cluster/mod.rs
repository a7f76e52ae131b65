//! The cluster (issue 14): nodes on one Redis, no replication between them.
//!
//! # Layout
//! - [`membership`]: who is in the cluster and alive, by leases that Redis's
//!   own clock times, so no two machines' clocks are ever compared.
//! - [`lease`]: the task (shard 0) that holds this node's lease and reports
//!   joins and deaths.
//! - [`routes`]: the node-level route index (which other nodes subscribe to
//!   what), kept current by [`feed`], which tails the cluster's change feed
//!   in Redis and copies the other nodes' retained messages too.
//! - [`frame`]: the node-to-node protocol on the wire: a versioned
//!   handshake, then length-prefixed batches of messages (forwarded
//!   publishes, acceptances, takeovers and hand-overs) and credits.
//! - [`link`]: one link's numbering, acknowledgement, resending and credit
//!   window, so what the network drops or reorders arrives once and in order.
//! - [`net`]: the links' sockets: each shard dials each live peer and serves
//!   what peers dial to `[cluster] bind`.
//! - [`takeover`]: who owns each client id on this node, and the takeover
//!   between nodes that keeps one connection per id and moves a session's
//!   messages, and whatever reaches the old owner meanwhile, to the new one.
//! - [`reap`]: reaping in the server: survivors adopt a dead life's
//!   sessions and publish its wills, then drop its routes.
//! - [`reaper`]: a dead life's leftovers: its routes go, its sessions are
//!   adopted by exactly one survivor, its clients' wills go out once.
//! - `sim` (tests only): the deterministic simulation that drives all of
//!   the above from one seed, with a model of the store, a hostile network
//!   and nodes killed between any two steps, and checks the invariants after
//!   every step.
//!
//! # Why sans-IO
//! Each state machine here performs no I/O and reads no clock (quinn-proto's
//! shape: `handle_*` for what happened, mutators for commands, `poll_*` for
//! what to send or do, getters; `Instant` passed in). The server wires them
//! to sockets, Redis and timers; the simulation wires them to models. So the
//! races a cluster meets (concurrent CONNECTs, a node dying mid-takeover, a
//! reply arriving after a newer claim) can be replayed from a seed instead
//! of hoped for on real machines. ARCHITECTURE.md ("The cluster's state
//! machines") says what each guarantees.
//!
//! Wired into the server so far: the lease, the route index and the feed,
//! the links and routing publishes across nodes (`broker/nodes.rs`), with
//! acknowledgements that wait for the nodes a message went to; one owner per
//! client id (`broker/owners.rs`), and reaping ([`reap`]). The sans-IO
//! [`takeover`] and [`reaper`] machines are the simulation's; the server's
//! simpler versions do not hand a session's in-memory messages over yet.

pub mod feed;
pub mod frame;
pub mod lease;
pub mod link;
pub mod membership;
pub mod net;
pub mod reap;
pub mod reaper;
pub mod routes;
pub mod takeover;

#[cfg(test)]
mod sim;
