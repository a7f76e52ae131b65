//! Reaping a dead life's leftovers, in the server: when the lease listing
//! says a life of another node died, every shard of every survivor adopts
//! the dead life's sessions of its own partition of client ids. Each
//! adoption is a CLAIM that only succeeds while that very life owns the
//! session, so exactly one survivor (or the dead node's next life, whose
//! loader does the same) adopts each one, and publishes its will, once.
//! An adopted session is offline here: with `durability = "messages"` what
//! is published for it from now on waits in its Redis queue.
//!
//! The dead life's routes go last: an adopter takes a session out of the
//! dead node's sessions set only once the session's routes are written,
//! and once that set is empty (every survivor through) a survivor deletes
//! the route sets and writes `gone` on the feed, and every node drops them
//! when its feed reader gets there ([`super::feed`]), after the adopters'
//! routes. Until then other nodes still
//! route to it, the publish fails (the node is gone from the links) and the
//! publisher publishes again; dropping the routes first would let a publish
//! find neither the dead node's routes nor an adopter's, and be
//! acknowledged for nobody. Survivors reap independently; a survivor that
//! dies mid-way leaves its part to the others, which reap it too.
//!
//! The sans-IO [`super::reaper::Reaper`] that the simulation drives orders
//! the steps differently (routes first) and is not what runs here yet.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::connection::{Shard, ShardMsg};
use crate::store::redis_store::Forgot;
use crate::store::Owner;

/// How long a failed reap waits before it runs again, and the routes'
/// removal between looks at whether every session is adopted.
const RETRY: Duration = Duration::from_millis(100);
/// How long the routes' removal waits for other survivors to adopt.
const WAIT_ADOPTERS: Duration = Duration::from_secs(10);

/// Starts reaping `dead`'s sessions of this shard.
pub fn start(shard: &Rc<Shard>, dead: Owner) {
    if shard.store().is_none() {
        return;
    }
    glommio::spawn_local(run(shard.clone(), dead)).detach();
}

async fn run(shard: Rc<Shard>, dead: Owner) {
    let Some(store) = shard.store().cloned() else {
        return;
    };
    let started = Instant::now();
    let adopted = loop {
        let live: Vec<Owner> = shard.links().map_or_else(Vec::new, |links| {
            let mut live = links.peer_lives();
            live.push(links.me().clone());
            live
        });
        let reaped = store
            .reap_sessions(&dead, shard.nr_shards, &live, |client_id, claim| {
                let now = Instant::now();
                let generation = claim.generation;
                let mut broker = shard.broker.borrow_mut();
                if let Some((will, generation)) = broker.adopted(&client_id, claim, now) {
                    broker.publish_orphan_will(&client_id, will, generation, now);
                }
                if let Some(links) = shard.links() {
                    broker.adopted_from_dead(
                        &client_id,
                        generation,
                        links.me(),
                        &links.peer_lives(),
                    );
                }
            })
            .await;
        shard.wake();
        match reaped {
            Ok(ids) => break ids,
            Err(e) => {
                warn!(shard = shard.id, dead = %dead.to_field(), error = %e, "reaping a dead node failed; retrying");
                if shard.shutdown.sleep(RETRY).await {
                    return;
                }
            }
        }
    };
    // The adopted sessions' routes are on the feed before they leave the
    // dead node's set, whose emptying lets its routes go: a node reading
    // the feed never finds neither.
    store.flush().await;
    while let Err(e) = store.reaped(&dead, &adopted).await {
        warn!(shard = shard.id, dead = %dead.to_field(), error = %e, "reaping a dead node failed; retrying");
        if shard.shutdown.sleep(RETRY).await {
            return;
        }
    }
    let adopted = adopted.len();
    shard
        .metrics
        .cluster
        .adopted
        .fetch_add(adopted as u64, Relaxed);
    info!(shard = shard.id, dead = %dead.to_field(), adopted, took = ?started.elapsed(), "reaped a dead node's sessions");
    if shard.id == 0 {
        shard_done(&shard, dead);
    } else {
        shard
            .mesh_out
            .borrow_mut()
            .push((0, ShardMsg::Reaped(dead)));
        shard.flush.notify();
    }
}

/// After this node's lease lapsed and came back: the survivors may have
/// adopted some of its sessions meanwhile. Each session whose generation in
/// the store has moved past the one held here is ended here, its client
/// disconnected with 0x8E ([`crate::broker::Broker::check_owner`]).
pub async fn check_owners(
    shard: Rc<Shard>,
    owners: Vec<(bytestring::ByteString, u64)>,
    lost: bool,
) {
    let Some(store) = shard.store().cloned() else {
        return;
    };
    let ids: Vec<_> = owners.iter().map(|(id, _)| id.clone()).collect();
    let current = loop {
        match store.generations(&ids).await {
            Ok(current) => break current,
            Err(e) => {
                warn!(shard = shard.id, error = %e, "checking the sessions after the lease came back failed; retrying");
                if shard.shutdown.sleep(RETRY).await {
                    return;
                }
            }
        }
    };
    let mut broker = shard.broker.borrow_mut();
    for ((id, held), now) in owners.iter().zip(current) {
        broker.check_owner(id, *held, now, lost);
    }
    drop(broker);
    shard.wake();
}

/// On shard 0: one shard is through with `dead`; once all are, its routes
/// go.
pub fn shard_done(shard: &Rc<Shard>, dead: Owner) {
    let Some(links) = shard.links() else { return };
    if links.reaped_one(&dead, shard.nr_shards) {
        glommio::spawn_local(forget(shard.clone(), dead)).detach();
    }
}

async fn forget(shard: Rc<Shard>, dead: Owner) {
    let Some(store) = shard.store().cloned() else {
        return;
    };
    let started = Instant::now();
    loop {
        // Other survivors may still be adopting; past `WAIT_ADOPTERS` the
        // routes go anyway (an adopter died mid-way: its sessions' next
        // claim finds them).
        let force = started.elapsed() >= WAIT_ADOPTERS;
        match store.forget_routes(&dead, force).await {
            Ok(Forgot::NotYet) => {}
            Ok(forgot) => {
                if forgot == Forgot::Gone {
                    info!(dead = %dead.to_field(), took = ?started.elapsed(), "a dead node's routes removed");
                }
                // Every node, this one too, drops the routes when its feed
                // reader reaches the entry: after the adopters' routes.
                shard.metrics.cluster.reaps.fetch_add(1, Relaxed);
                return;
            }
            Err(e) => {
                warn!(dead = %dead.to_field(), error = %e, "removing a dead node's routes failed; retrying");
            }
        }
        if shard.shutdown.sleep(RETRY).await {
            return;
        }
    }
}
