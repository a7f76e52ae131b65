//! The shard tasks behind the metrics: each shard's sampler, and the `$SYS`
//! publisher on shard 0.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shards::Shutdown;

use super::{sys_messages, DEPTH_EVERY, SAMPLE_PERIOD};
use crate::connection::Shard;
use crate::topic::TopicName;

/// Every [`SAMPLE_PERIOD`]: records how late the timer fired (the event-loop
/// lag) and copies the broker's counters into the shard's metrics.
pub async fn sample(shard: Rc<Shard>, shutdown: Shutdown) {
    let metrics = shard.metrics.clone();
    let mine = metrics.shard(shard.id);
    for n in 0u64.. {
        let due = Instant::now() + SAMPLE_PERIOD;
        if shutdown.sleep(SAMPLE_PERIOD).await {
            return;
        }
        mine.lag
            .observe(Instant::now().saturating_duration_since(due));
        mine.store(&shard.broker.borrow(), n % DEPTH_EVERY == 0);
    }
}

/// Every `interval`: publishes the `$SYS/broker/...` topics through this
/// shard's broker, which routes them like any publish (to local subscribers and
/// to each other shard with one). Runs on one shard only.
pub async fn publish_sys(shard: Rc<Shard>, interval: Duration, shutdown: Shutdown) {
    loop {
        if shutdown.sleep(interval).await {
            return;
        }
        let metrics = &shard.metrics;
        metrics.shard(shard.id).store(&shard.broker.borrow(), false);
        let now = Instant::now();
        {
            let mut broker = shard.broker.borrow_mut();
            for (topic, payload) in sys_messages(metrics) {
                // Fixed names, checked by a unit test.
                if let Ok(topic) = TopicName::new(topic) {
                    broker.publish_sys(topic, Bytes::from(payload), now);
                }
            }
        }
        shard.wake();
    }
}
