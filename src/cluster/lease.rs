//! The node's lease, held by a task on shard 0 ([`run`]): it registers the
//! node's life with [`LEASE`](super::membership::LEASE), renews it three times
//! per lease period, and turns each reply into what the node knows of the
//! others ([`View`]) and into `/health` and `/metrics`
//! ([`ClusterHealth`]).
//!
//! A node whose renewals fail for a whole lease period is dead to the others
//! (they act on it within one lease): it says so at once on `/health` (503,
//! "no cluster lease"), and registers again when Redis answers. A life that
//! learns another life of its node id replaced it stops renewing for good:
//! two lives must not hold one node's work.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::membership::{Change, Members, View, LEASE};
use crate::config::ClusterConfig;
use crate::metrics::{ClusterHealth, Metrics};
use crate::store::layout::Keys;
use crate::store::redis::{RedisClient, Script};
use crate::store::Owner;

/// Renewals per lease period.
const RENEWALS: u32 = 3;

/// Who this node is to the others.
#[derive(Debug, Clone)]
pub struct Registration {
    pub owner: Owner,
    /// The address the other nodes dial (`[cluster] advertise`, or `bind`).
    pub addr: String,
    pub lease: Duration,
}

impl Registration {
    pub fn new(config: &ClusterConfig, owner: Owner) -> Registration {
        Registration {
            owner,
            addr: config.advertised().to_owned(),
            lease: config.lease,
        }
    }
}

/// Holds the lease until `shutdown`, telling `on_change` of every other
/// node's life that joins or dies, and `on_rejoin` when the lease is back
/// after it lapsed (`true`: and Redis had lost the registration).
pub async fn run(
    client: RedisClient,
    keys: Keys,
    me: Registration,
    metrics: std::sync::Arc<Metrics>,
    shutdown: shards::Shutdown,
    mut on_change: impl FnMut(&Change),
    mut on_rejoin: impl FnMut(bool),
) {
    let health: &ClusterHealth = &metrics.cluster;
    let script = Script::new("lease", LEASE);
    let boot = format!("{:x}", me.owner.boot);
    let lease_ms = me.lease.as_millis().to_string();
    let every = me.lease / RENEWALS;
    let mut view = View::default();
    let mut join = true;
    // The last renewal Redis confirmed.
    let mut renewed: Option<Instant> = None;
    loop {
        let call = script
            .call()
            .key(keys.leases())
            .key(keys.nodes())
            .arg(&me.owner.node)
            .arg(&boot)
            .arg(&me.addr)
            .arg(&lease_ms)
            .arg(if join { "1" } else { "0" });
        let asked = Instant::now();
        let reply = client.eval(&call).await;
        match reply
            .map_err(|e| e.to_string())
            .and_then(|r| Members::parse(r).map_err(|e| e.to_string()))
        {
            Ok(Members::Superseded { by }) => {
                error!(node = %me.owner.node, by = %by, "another life of this node took its place in the cluster: this one stops renewing its lease");
                health.set_lease(Some(format!(
                    "superseded by another life of node {} ({by})",
                    me.owner.node
                )));
                shutdown.recv().await;
                return;
            }
            Ok(Members::Listed {
                now,
                previous,
                members,
                lost,
            }) => {
                if join {
                    info!(node = %me.owner.node, addr = %me.addr, previous = ?previous, "joined the cluster");
                }
                // Back after a lapse (the renewals failed, or the node was
                // paused, for a lease), or Redis lost the registration (it
                // restarted empty): the others counted this life dead and
                // may have adopted its sessions and dropped its routes.
                let lapsed =
                    renewed.is_some_and(|at| asked.saturating_duration_since(at) >= me.lease);
                if renewed.is_some() && (lost || lapsed) {
                    warn!(node = %me.owner.node, lost, lapsed, "the lease is back after a lapse: writing the routes again and dropping the sessions others took");
                    on_rejoin(lost);
                }
                join = false;
                renewed = Some(asked);
                health.set_lease(None);
                for change in view.apply(now, &members) {
                    let other = match &change {
                        Change::Joined(m) => m.node != me.owner.node,
                        Change::Died { node, .. } => *node != me.owner.node,
                    };
                    if other {
                        on_change(&change);
                    }
                    match change {
                        Change::Joined(m) if m.node != me.owner.node => {
                            info!(node = %m.node, addr = %m.addr, "a node joined");
                            health.joins.fetch_add(1, Relaxed);
                        }
                        Change::Died { node, boot } if node != me.owner.node => {
                            warn!(%node, %boot, "a node died");
                            health.deaths.fetch_add(1, Relaxed);
                        }
                        _ => {}
                    }
                }
                let peers = view.alive().filter(|m| m.node != me.owner.node).count();
                health.peers.store(peers as u64, Relaxed);
            }
            Err(e) => {
                warn!(error = %e, "could not renew the cluster lease");
                let lapsed = renewed.is_none_or(|at| at.elapsed() >= me.lease);
                if lapsed {
                    health.set_lease(Some(format!("not renewed for a lease period: {e}")));
                    // Dead to the others by now: register anew when Redis is back.
                    join = true;
                }
            }
        }
        if shutdown.sleep(every.saturating_sub(asked.elapsed())).await {
            return;
        }
    }
}
