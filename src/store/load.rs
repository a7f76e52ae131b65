//! Each shard's store task: at start-up, load in the background what a past
//! life of the node left in Redis; then report the connection's health once
//! a second.
//!
//! The node serves at once: CONNECTs claim their own sessions whether or not
//! loading has reached them, and readers hold their input only while loading
//! runs (`Shard::until_loaded`), so no publish misses an offline session not
//! loaded yet. Orphan wills wait until every shard has loaded, so that every
//! subscriber they are for is there.

use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::redis::Status;
use super::redis_store::{RedisStore, StoreError};
use crate::connection::Shard;
use crate::message::Message;

/// How long a retry of loading waits after Redis failed it.
const RETRY: Duration = Duration::from_secs(1);

/// A will a past life's connection left: its client, the will, and the
/// generation to delete it from the store under once published.
type OrphanWill = (bytestring::ByteString, Message, Option<u64>);

/// Runs until shutdown: loads, publishes the orphan wills, then watches.
pub async fn run(shard: Rc<Shard>, store: RedisStore, started: Instant) {
    let metrics = shard.metrics.clone();
    let shutdown = shard.shutdown.clone();
    let mut wills = Vec::new();
    let mut first = true;
    loop {
        report(&shard, &store);
        if shutdown.is_shutdown() {
            break;
        }
        if !store.client().wait_up(RETRY).await {
            continue;
        }
        // Up: said at once, not at the next report a second later.
        report(&shard, &store);
        match load(&shard, &store, first, &mut wills).await {
            Ok(sessions) => {
                info!(shard = shard.id, sessions, took = ?started.elapsed(), "store loaded");
                break;
            }
            Err(e) => {
                warn!(shard = shard.id, error = %e, "loading from the store failed; retrying");
                if shutdown.sleep(RETRY).await {
                    break;
                }
            }
        }
        first = false;
    }
    shard.broker.borrow_mut().loaded();
    shard.wake();
    metrics.store.loaded(started.elapsed());
    while !shard.broker.borrow().all_loaded() {
        if shutdown.sleep(Duration::from_millis(10)).await {
            return;
        }
    }
    if !wills.is_empty() {
        info!(
            shard = shard.id,
            wills = wills.len(),
            "publishing the wills of connections lost with the node's past life"
        );
        let now = Instant::now();
        let mut broker = shard.broker.borrow_mut();
        for (client_id, will, generation) in wills {
            broker.publish_orphan_will(&client_id, will, generation, now);
        }
        drop(broker);
        shard.wake();
    }
    loop {
        report(&shard, &store);
        if shutdown.sleep(Duration::from_secs(1)).await {
            return;
        }
    }
}

/// Copies the connection's status into the node's health.
fn report(shard: &Shard, store: &RedisStore) {
    let cause = match store.status() {
        Status::Up => None,
        Status::Connecting => Some(format!("connecting to Redis at {}", store.address())),
        Status::Down(cause) => Some(cause),
    };
    shard.metrics.store.set_down(shard.id, cause);
}

/// One try: the route set emptied (first try only: routes are added back as
/// sessions load), retained messages on shard 0, and the sessions.
async fn load(
    shard: &Rc<Shard>,
    store: &RedisStore,
    first: bool,
    wills: &mut Vec<OrphanWill>,
) -> Result<usize, StoreError> {
    if first {
        store.reset_routes();
    }
    if shard.id == 0 {
        let retained = store.load_retained(Instant::now()).await?;
        let mut broker = shard.broker.borrow_mut();
        for message in retained {
            broker.load_retained(message);
        }
        drop(broker);
        shard.wake();
    }
    let loaded = store
        .load_sessions(shard.nr_shards, |client_id, claim| {
            let will = shard
                .broker
                .borrow_mut()
                .adopted(&client_id, claim, Instant::now());
            wills.extend(will.map(|(will, generation)| (client_id.clone(), will, generation)));
        })
        .await;
    shard.wake();
    loaded
}
