//! The receiving side of a connection: accounts for every message by its header
//! (latency, loss, duplicates, order) and feeds the progress line. The read loop
//! itself, shared with publishers' acknowledgements, is in `reader`.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use shardmq::protocol::Publish;

use crate::payload::Header;
use crate::runner::{Shared, Spec};
use crate::sequence::{Seen, SeqTracker};
use crate::stats::{record_latency, Live, Recorder, Stats};

/// How often the progress line's counters are fed, ns.
const FEED_NS: u64 = 250_000_000;
/// Share-group observations kept before they are merged into the group's trackers.
const GROUP_BATCH: usize = 4096;

/// One received message, as a share-group member reports it to the group.
#[derive(Debug, Clone, Copy)]
struct Observed {
    publisher: u32,
    seq: u64,
    intended_ns: u64,
    measured: bool,
    /// Counted as reordered by this member (it came after a higher one).
    reordered: bool,
}

/// How sequences are checked.
enum Tracking {
    /// This subscriber sees every message of its publishers: per-publisher trackers.
    Own(HashMap<u32, SeqTracker>),
    /// A share-group member sees a part: loss and duplicates are decided over the
    /// group's trackers (in [`Shared`], merged in batches so the executors do not meet
    /// on a lock per message); order only within this member, which is all MQTT
    /// promises for a shared subscription.
    Group {
        batch: Vec<Observed>,
        /// The highest sequence number this member got from each publisher.
        highest: HashMap<u32, u64>,
    },
}

/// What one subscription received.
pub struct Receiver {
    spec: Arc<Spec>,
    shared: Arc<Shared>,
    tracking: Tracking,
    stats: Stats,
    /// This executor's latency histograms, shared by its receivers.
    recorder: Rc<Recorder>,
    /// Messages received since the last feed.
    unfed: u64,
    fed_at_ns: u64,
}

impl Receiver {
    /// `shared_group`: this subscription is one member of a share group.
    pub fn new(
        spec: Arc<Spec>,
        shared: Arc<Shared>,
        recorder: Rc<Recorder>,
        shared_group: bool,
    ) -> Receiver {
        let tracking = if shared_group {
            Tracking::Group {
                batch: Vec::with_capacity(GROUP_BATCH),
                highest: HashMap::new(),
            }
        } else {
            Tracking::Own(HashMap::new())
        };
        Receiver {
            spec,
            shared,
            tracking,
            stats: Stats::default(),
            recorder,
            unfed: 0,
            fed_at_ns: 0,
        }
    }

    /// Accounts for `publish`, received at `now_ns` (since the run's start).
    pub fn on_publish(&mut self, publish: &Publish, now_ns: u64) {
        let Some(header) = Header::decode(&publish.payload) else {
            self.stats.error("payload without a loadtest header");
            return;
        };
        let measured = self.spec.measured(header.intended_ns);
        match &mut self.tracking {
            Tracking::Own(trackers) => {
                let tracker = trackers
                    .entry(header.publisher)
                    .or_insert_with(|| SeqTracker::new(self.spec.warmup_ns()));
                match tracker.observe(header.seq, header.intended_ns) {
                    Seen::Duplicate if measured => self.stats.duplicated += 1,
                    Seen::Reordered if measured => self.stats.reordered += 1,
                    _ => {}
                }
            }
            Tracking::Group { batch, highest } => {
                let top = highest.entry(header.publisher).or_insert(header.seq);
                // Possibly a duplicate instead: the group's trackers tell, and
                // `merge_group` takes it back out of the reordered count.
                let reordered = header.seq < *top && measured;
                self.stats.reordered += u64::from(reordered);
                *top = (*top).max(header.seq);
                batch.push(Observed {
                    publisher: header.publisher,
                    seq: header.seq,
                    intended_ns: header.intended_ns,
                    measured,
                    reordered,
                });
                if batch.len() >= GROUP_BATCH {
                    self.merge_group();
                }
            }
        }
        self.unfed += 1;
        if (self.spec.warmup_ns()..self.spec.end_ns()).contains(&now_ns) {
            self.stats.arrived += 1;
        }
        if measured {
            self.stats.received += 1;
            let latency = now_ns.saturating_sub(header.intended_ns);
            self.recorder.latency.borrow_mut().record_ns(latency);
            record_latency(&mut self.recorder.interval.borrow_mut(), latency);
        }
    }

    /// Whether messages 0..`n` of `publisher` have all arrived (not for share groups,
    /// whose members each see a part).
    pub fn has_all_below(&self, publisher: u32, n: u64) -> bool {
        match &self.tracking {
            Tracking::Own(trackers) => {
                n == 0 || trackers.get(&publisher).is_some_and(|t| t.has_all_below(n))
            }
            Tracking::Group { .. } => false,
        }
    }

    /// Feeds the progress line, at most every [`FEED_NS`].
    pub fn feed(&mut self, now_ns: u64) {
        if now_ns >= self.fed_at_ns + FEED_NS {
            self.feed_now();
            self.fed_at_ns = now_ns;
        }
    }

    fn feed_now(&mut self) {
        Live::add(&self.shared.live.received, std::mem::take(&mut self.unfed));
        self.recorder.feed(&self.shared.live);
        self.merge_group();
    }

    /// Share groups: this member's recent observations into the group's trackers.
    fn merge_group(&mut self) {
        let Tracking::Group { batch, .. } = &mut self.tracking else {
            return;
        };
        if batch.is_empty() {
            return;
        }
        let Ok(mut group) = self.shared.group.lock() else {
            batch.clear();
            return;
        };
        let window_start_ns = self.spec.warmup_ns();
        for o in batch.drain(..) {
            let seen = group
                .entry(o.publisher)
                .or_insert_with(|| SeqTracker::new(window_start_ns))
                .observe(o.seq, o.intended_ns);
            if seen == Seen::Duplicate && o.measured {
                self.stats.duplicated += 1;
                // A duplicate, not both.
                self.stats.reordered -= u64::from(o.reordered);
            }
        }
    }

    /// The figures, once the subscription ends. A share group's loss is read from the
    /// group's trackers once every member has ended (see `runner::run`).
    pub fn finish(mut self) -> Stats {
        self.feed_now();
        if let Tracking::Own(trackers) = &self.tracking {
            self.stats.lost = trackers.values().map(SeqTracker::lost).sum();
        }
        self.stats
    }
}
