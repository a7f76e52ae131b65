//! [`StreamSink`]: one configured sink on one shard, the part the broker
//! calls inline (`wants`, sampling, the push into the batch), and the state
//! it shares with the sink's flush and connection tasks.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use shards::Shutdown;
use tracing::warn;

use super::outbox::Outbox;
use super::wakers::Wakers;
use crate::config::{SinkConfig, SinkFormat, EVENT_HOOKS};
use crate::connection::Notify;
use crate::events::{Event, EventKind};
use crate::metrics::{EventSinkMetrics, SinkShardMetrics};

/// The largest refused event whose size stops the next ones from being
/// encoded while the buffer has less room: at most this much of the buffer
/// may go unused before it is drained.
const MAX_REFUSED_HINT: usize = 4096;

/// How often a sink that dropped events says so in the log.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A configured sink, resolved at start-up, shared by every shard.
#[derive(Debug)]
pub struct SinkSpec {
    /// For logs and the `sink` label of `/metrics`.
    pub name: String,
    /// `address`, resolved once at start-up: no DNS on a shard.
    pub addr: SocketAddr,
    pub config: SinkConfig,
    /// Its counters, one slot per shard.
    pub metrics: Arc<EventSinkMetrics>,
}

/// The state of one sink on one shard, shared by its [`StreamSink`] (the
/// broker's side), its flush task and its connection tasks.
#[derive(Debug)]
pub struct Shared {
    pub spec: Arc<SinkSpec>,
    pub shard: usize,
    pub outbox: RefCell<Outbox>,
    /// Connection tasks waiting for a frame.
    pub frames: Wakers,
    /// The flush task's wake-up: a batch was opened, its delay starts.
    pub opened: Notify,
    /// Drops not yet logged.
    unlogged_drops: Cell<u64>,
}

impl Shared {
    pub fn new(spec: Arc<SinkSpec>, shard: usize) -> Shared {
        let c = &spec.config;
        let outbox = Outbox::new(
            c.format,
            shard as u16,
            c.max_batch_bytes as usize,
            usize::try_from(c.buffer_bytes).unwrap_or(usize::MAX),
        );
        Shared {
            spec,
            shard,
            outbox: RefCell::new(outbox),
            frames: Wakers::default(),
            opened: Notify::default(),
            unlogged_drops: Cell::new(0),
        }
    }

    pub fn metrics(&self) -> &SinkShardMetrics {
        self.spec.metrics.shard(self.shard)
    }

    /// Finishes the open batch, if any, and wakes the connections for it.
    pub fn flush(&self) {
        let mut outbox = self.outbox.borrow_mut();
        if outbox.finish() {
            self.frames.wake_all();
        }
        self.metrics()
            .buffered
            .store(outbox.held() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Logs the drops since the last log, if any.
    fn log_drops(&self) {
        let n = self.unlogged_drops.replace(0);
        if n > 0 {
            warn!(
                shard = self.shard,
                "events sink {}: dropped {n} events (consumer slow or absent)", self.spec.name
            );
        }
    }
}

/// The broker's side of one sink on one shard.
#[derive(Debug)]
pub struct StreamSink {
    shared: Rc<Shared>,
    kinds: Vec<Wanted>,
    /// Room the last refused event needed; 0 after an event was taken. While
    /// the buffer has less, events are dropped before they are encoded: an
    /// absent consumer costs a counter per event, not an encoding.
    refused: usize,
}

/// One kind of event a sink wants.
#[derive(Debug)]
struct Wanted {
    kind: EventKind,
    /// Its index in [`EVENT_HOOKS`], for the drop counters.
    hook: usize,
    /// Its `sample` table (label, percent); empty when not sampled.
    sample: Vec<(Box<str>, u32)>,
}

impl StreamSink {
    pub fn new(shared: Rc<Shared>) -> StreamSink {
        let config = &shared.spec.config;
        let kinds = config
            .hooks
            .iter()
            .filter_map(|hook| {
                let kind = EventKind::from_hook_name(hook)?;
                let index = EVENT_HOOKS.iter().position(|h| h == hook)?;
                let sample = config
                    .sample
                    .get(hook)
                    .map(|labels| {
                        labels
                            .iter()
                            .map(|(label, &percent)| (label.as_str().into(), percent))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(Wanted {
                    kind,
                    hook: index,
                    sample,
                })
            })
            .collect();
        StreamSink {
            shared,
            kinds,
            refused: 0,
        }
    }

    pub fn format(&self) -> SinkFormat {
        self.shared.spec.config.format
    }

    pub fn wants(&self, kind: EventKind) -> bool {
        self.kinds.iter().any(|w| w.kind == kind)
    }

    /// Whether this event goes to this sink: wanted, and kept by sampling.
    /// `Some(slot)` to pass to [`StreamSink::push`].
    pub fn admits(&self, event: &Event<'_>) -> Option<usize> {
        let kind = event.kind();
        let slot = self.kinds.iter().position(|w| w.kind == kind)?;
        let sample = &self.kinds[slot].sample;
        if !sample.is_empty() {
            if let Some(label) = label_of(event) {
                if let Some((_, percent)) = sample.iter().find(|(l, _)| &**l == label) {
                    if fastrand::u32(0..100) >= *percent {
                        return None;
                    }
                }
            }
        }
        Some(slot)
    }

    /// Whether the buffer is known to be full: the event is to be dropped
    /// with [`StreamSink::drop_event`], without encoding it.
    pub fn full(&self) -> bool {
        self.refused > 0 && self.shared.outbox.borrow().room() < self.refused
    }

    /// Drops an admitted event without encoding it (the buffer is full).
    pub fn drop_event(&mut self, slot: usize) {
        self.shared.outbox.borrow_mut().skip();
        self.count_drop(slot);
    }

    fn count_drop(&self, slot: usize) {
        let hook = self.kinds[slot].hook;
        SinkShardMetrics::add(&self.shared.metrics().dropped[hook], 1);
        let shared = &self.shared;
        shared.unlogged_drops.set(shared.unlogged_drops.get() + 1);
    }

    /// Adds an encoded event (in this sink's format) to the batch, or counts
    /// it dropped when the buffer is full.
    pub fn push(&mut self, slot: usize, encoded: &[u8]) {
        let result = self.shared.outbox.borrow_mut().push(encoded);
        // The length prefix's room, as `Outbox::push` counts it. A big event
        // is not a hint: smaller ones may still fit.
        let needed = encoded.len() + 10;
        self.refused = match result {
            Err(_) if needed <= MAX_REFUSED_HINT => needed,
            _ => 0,
        };
        match result {
            Ok(opened) => {
                if opened {
                    self.shared.opened.notify();
                }
                if self.shared.outbox.borrow().has_ready() {
                    self.shared.frames.wake_all();
                }
            }
            Err(_full) => self.count_drop(slot),
        }
    }
}

/// The ACL label `sample` keys on, for the events that carry one.
fn label_of<'a>(event: &Event<'a>) -> Option<&'a str> {
    match *event {
        Event::Publish { label, .. } => label,
        _ => None,
    }
}

/// Finishes each batch `max-batch-delay` after it opened (a batch that fills
/// up is finished by the push itself), and logs drops once per
/// [`DROP_LOG_INTERVAL`]. At shutdown, finishes the last batch.
pub async fn flush_task(shared: Rc<Shared>, shutdown: Shutdown) {
    let delay = shared.spec.config.max_batch_delay;
    let mut logged = Instant::now();
    loop {
        let woke = future::or(
            async {
                shared.opened.notified().await;
                Wake::Opened
            },
            future::or(
                async {
                    glommio::timer::sleep(DROP_LOG_INTERVAL).await;
                    Wake::Log
                },
                async {
                    shutdown.recv().await;
                    Wake::Stop
                },
            ),
        )
        .await;
        let stop = match woke {
            Wake::Opened => shutdown.sleep(delay).await,
            Wake::Log => false,
            Wake::Stop => true,
        };
        shared.flush();
        if logged.elapsed() >= DROP_LOG_INTERVAL {
            logged = Instant::now();
            shared.log_drops();
        }
        if stop {
            shared.log_drops();
            return;
        }
    }
}

enum Wake {
    Opened,
    Log,
    Stop,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use bytestring::ByteString;

    use super::*;
    use crate::auth::Identity;
    use crate::protocol::QoS;
    use crate::topic::TopicName;

    fn sink(sample: &[(&str, u32)]) -> StreamSink {
        let mut config = SinkConfig::new("127.0.0.1:1");
        config.hooks = vec!["on_publish".to_owned()];
        let labels: BTreeMap<String, u32> =
            sample.iter().map(|(l, p)| (l.to_string(), *p)).collect();
        config.sample.insert("on_publish".to_owned(), labels);
        let spec = Arc::new(SinkSpec {
            name: "test".to_owned(),
            addr: "127.0.0.1:1".parse().unwrap(),
            config,
            metrics: Arc::new(EventSinkMetrics::new("test".to_owned(), vec![2], 1)),
        });
        StreamSink::new(Rc::new(Shared::new(spec, 0)))
    }

    #[test]
    fn sampling_keeps_the_configured_share_per_label() {
        let sink = sink(&[("none", 0), ("all", 100), ("half", 50)]);
        assert!(sink.wants(EventKind::Publish));
        assert!(!sink.wants(EventKind::Deliver));
        let who = Identity {
            username: None,
            client_id: ByteString::from("c"),
            claims: None,
        };
        let topic = TopicName::new("a/b".to_owned()).unwrap();
        let payload = Bytes::new();
        let publish = |label| Event::Publish {
            who: &who,
            topic: &topic,
            qos: QoS::AtMostOnce,
            retain: false,
            payload: &payload,
            label,
            pattern: None,
        };
        let kept = |label| {
            (0..1000)
                .filter(|_| sink.admits(&publish(label)).is_some())
                .count()
        };
        assert_eq!(kept(Some("none")), 0);
        assert_eq!(kept(Some("all")), 1000);
        assert_eq!(kept(Some("other")), 1000, "unlisted labels are kept");
        assert_eq!(kept(None), 1000, "so are events without a label");
        let half = kept(Some("half"));
        assert!((350..650).contains(&half), "50% kept {half} of 1000");
    }

    #[test]
    fn drops_are_counted_per_hook() {
        let mut sink = sink(&[]);
        let big = vec![0; 32 << 20];
        sink.push(0, &big);
        let dropped = |sink: &StreamSink| {
            sink.shared.metrics().dropped[2].load(std::sync::atomic::Ordering::Relaxed)
        };
        assert_eq!(dropped(&sink), 1);
        assert!(!sink.full(), "a huge event does not close the buffer");
        sink.push(0, &[0; 100]);
        assert_eq!(dropped(&sink), 1, "a small one still fits");
        let fill = vec![0; (16 << 20) - 200];
        sink.push(0, &fill);
        sink.push(0, &[0; 100]);
        assert_eq!(dropped(&sink), 2);
        assert!(sink.full(), "known full: the next is dropped unencoded");
        sink.drop_event(0);
        assert_eq!(dropped(&sink), 3);
        assert_eq!(sink.shared.unlogged_drops.get(), 3);
    }
}
