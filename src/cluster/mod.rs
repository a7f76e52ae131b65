//! The cluster (issue 14): nodes on one Redis, no replication between them.
//!
//! What is here so far:
//! - `membership`: who is in the cluster and alive, by leases that Redis's
//!   own clock times, so no two machines' clocks are ever compared;
//! - `lease`: the task that holds this node's lease and reports it;
//! - `routes`: the node-level route index (which other nodes subscribe to
//!   what), kept current by `feed` from Redis, which copies the other
//!   nodes' retained messages too.
//!
//! Links between nodes, the node-level route index and cluster-wide session
//! ownership build on it and are not written yet.

pub mod feed;
pub mod lease;
pub mod membership;
pub mod routes;
