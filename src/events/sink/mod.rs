//! The event stream's runtime (issue 6): per shard, one [`StreamSink`] per
//! `[[events.sinks]]` entry behind a [`Fanout`], a flush task per sink, and
//! the sink's outgoing connections.
//!
//! # Data path
//! The broker calls [`Fanout`]'s
//! [`EventSink::emit`](crate::events::EventSink::emit) inline. Each sink that
//! wants the event (its `hooks`, then its `sample` percentages) gets it
//! encoded once per format and appended to its batch; nothing else happens
//! per event. A batch
//! is finished at `max-batch-bytes` or `max-batch-delay` after it opened, and
//! connection tasks write finished frames.
//!
//! # Why it never blocks the shard
//! A sink holds at most `buffer-bytes` per shard (open batch, frames waiting
//! for a connection, frames being written, and with `acks` frames not yet
//! acked). When full, the newest events are dropped and counted per sink and
//! hook (`shardmq_events_dropped_total`), and logged once per 10 s; in the
//! native format a dropped event still uses up its sequence number, so the
//! consumer sees the gap (sampled-out events get none). Writes
//! happen in the connection tasks; a consumer that stops reading only stalls
//! those.
//!
//! # Layout
//! - `stream`: [`StreamSink`], the per-shard [`Shared`] state, the flush task;
//! - `outbox`: the batch and frame buffer, sans-IO;
//! - `conn`: connect, write, read acks, reconnect with back-off, replay.
//!   An ack releases the frames its connection carried up to that sequence
//!   number: with several connections per shard, a frame is only released
//!   by the connection that delivered it;
//! - `fanout`: [`Fanout`], encoding once per format;
//! - `wakers`: the connection tasks' wake-up.

mod conn;
mod fanout;
mod outbox;
mod stream;
mod wakers;

use std::io;
use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::sync::Arc;

use shards::Shutdown;

pub use fanout::Fanout;
pub use stream::{Shared, SinkSpec, StreamSink};

use crate::config::{SinkConfig, EVENT_HOOKS};
use crate::metrics::EventSinkMetrics;

/// A sink whose address does not resolve.
#[derive(Debug, thiserror::Error)]
#[error(
    "[[events.sinks]] address {address:?} does not resolve: {source}; \
     fix the host name or use an IP address"
)]
pub struct ResolveError {
    pub address: String,
    #[source]
    pub source: io::Error,
}

/// Resolves each configured sink once, at start-up, and makes its counters.
pub fn resolve(sinks: &[SinkConfig], nr_shards: usize) -> Result<Vec<Arc<SinkSpec>>, ResolveError> {
    let mut specs: Vec<Arc<SinkSpec>> = Vec::with_capacity(sinks.len());
    for (i, config) in sinks.iter().enumerate() {
        let addr = config
            .address
            .to_socket_addrs()
            .and_then(|mut addrs| {
                addrs.next().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "no address for that name")
                })
            })
            .map_err(|source| ResolveError {
                address: config.address.clone(),
                source,
            })?;
        let mut name = config.address.clone();
        if specs.iter().any(|s| s.name == name) {
            name = format!("{name}#{}", i + 1);
        }
        let hooks = config
            .hooks
            .iter()
            .filter_map(|h| EVENT_HOOKS.iter().position(|k| k == h))
            .collect();
        let metrics = Arc::new(EventSinkMetrics::new(name.clone(), hooks, nr_shards));
        specs.push(Arc::new(SinkSpec {
            name,
            addr,
            config: config.clone(),
            metrics,
        }));
    }
    Ok(specs)
}

/// How many of a sink's `connections` shard `shard` opens: an even split,
/// the remainder to the first shards, at least one each.
pub fn connections_for(connections: u32, shard: usize, nr_shards: usize) -> usize {
    let connections = connections as usize;
    let nr_shards = nr_shards.max(1);
    let share = connections / nr_shards + usize::from(shard < connections % nr_shards);
    share.max(1)
}

/// Starts `specs` on this shard (call it on the shard's executor): returns
/// the broker's event sink, or `None` without sinks, and the tasks to await
/// at shutdown (they stop on `shutdown`).
pub fn start(
    specs: &[Arc<SinkSpec>],
    shard: usize,
    nr_shards: usize,
    shutdown: &Shutdown,
) -> (Option<Fanout>, Vec<glommio::Task<()>>) {
    if specs.is_empty() {
        return (None, Vec::new());
    }
    let mut sinks = Vec::with_capacity(specs.len());
    let mut tasks = Vec::new();
    for spec in specs {
        let shared = Rc::new(Shared::new(spec.clone(), shard));
        tasks.push(glommio::spawn_local(stream::flush_task(
            shared.clone(),
            shutdown.clone(),
        )));
        for _ in 0..connections_for(spec.config.connections, shard, nr_shards) {
            tasks.push(glommio::spawn_local(conn::connection_task(
                shared.clone(),
                shutdown.clone(),
            )));
        }
        sinks.push(StreamSink::new(shared));
    }
    (Some(Fanout::new(sinks)), tasks)
}

#[cfg(test)]
mod tests {
    use super::connections_for;
    use crate::config::EVENT_HOOKS;
    use crate::events::EventKind;

    #[test]
    fn config_hooks_are_the_event_kinds_in_order() {
        let kinds: Vec<&str> = EventKind::ALL.iter().map(|k| k.hook_name()).collect();
        assert_eq!(kinds, EVENT_HOOKS, "drop counters index both");
    }

    #[test]
    fn connections_split_across_shards_at_least_one_each() {
        let split = |c, n| (0..n).map(|s| connections_for(c, s, n)).collect::<Vec<_>>();
        assert_eq!(split(4, 2), [2, 2]);
        assert_eq!(split(5, 2), [3, 2]);
        assert_eq!(split(1, 3), [1, 1, 1]);
        assert_eq!(split(4, 1), [4]);
    }
}
