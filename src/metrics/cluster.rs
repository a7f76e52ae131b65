//! The node's place in the cluster as `/health` and `/metrics` see it:
//! whether it holds its lease (and why not), how many peers are alive, and
//! how many joins and deaths it has seen.
//!
//! The lease task on shard 0 writes, the HTTP thread reads; the mutex is
//! taken once per renewal and per request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

#[derive(Debug, Default)]
pub struct ClusterHealth {
    /// Whether the node is one of a cluster (`[cluster] bind`).
    enabled: bool,
    /// Why the node holds no lease, `None` while it holds one.
    no_lease: Mutex<Option<String>>,
    pub peers: AtomicU64,
    pub joins: AtomicU64,
    pub deaths: AtomicU64,
    /// Link connections open, both directions, all shards.
    pub links_up: AtomicU64,
    /// Messages and bytes sent to other nodes (resends included), and
    /// messages received from them in order.
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages_in: AtomicU64,
    /// Messages refused because a peer's link buffer was full.
    pub link_drops: AtomicU64,
    /// Dead lives reaped (their routes gone), and sessions adopted from them.
    pub reaps: AtomicU64,
    pub adopted: AtomicU64,
    has_lease: AtomicBool,
}

impl ClusterHealth {
    /// A cluster node, without its lease until the first renewal.
    pub fn cluster() -> ClusterHealth {
        ClusterHealth {
            enabled: true,
            no_lease: Mutex::new(Some("joining the cluster".into())),
            ..Default::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The lease was renewed (`None`), or is lost, and why.
    pub fn set_lease(&self, lost: Option<String>) {
        self.has_lease.store(lost.is_none(), Relaxed);
        *self.no_lease.lock().unwrap_or_else(PoisonError::into_inner) = lost;
    }

    /// Whether the node holds its lease (always, for a single node).
    pub fn has_lease(&self) -> bool {
        !self.enabled || self.has_lease.load(Relaxed)
    }

    /// Why a cluster node holds no lease, if it does not.
    pub fn no_lease(&self) -> Option<String> {
        if !self.enabled || self.has_lease.load(Relaxed) {
            return None;
        }
        self.no_lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_node_has_no_lease_until_renewed() {
        assert_eq!(ClusterHealth::default().no_lease(), None, "a single node");
        let h = ClusterHealth::cluster();
        assert_eq!(h.no_lease().as_deref(), Some("joining the cluster"));
        h.set_lease(None);
        assert_eq!(h.no_lease(), None);
        h.set_lease(Some("Redis is down".into()));
        assert_eq!(h.no_lease().as_deref(), Some("Redis is down"));
    }
}
