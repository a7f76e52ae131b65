//! The cluster (issue 14): nodes on one Redis, no replication between them.

pub mod frame;
pub mod link;
pub mod membership;
pub mod reaper;
pub mod takeover;

#[cfg(test)]
mod sim;
