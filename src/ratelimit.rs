//! Per-label publish rate limits (`[acl.rate-limit]`), per node.
//!
//! Every shard admits publishes against the same counters, so a label's limit
//! holds for the node whichever shard its publishers landed on. Each label is
//! one atomic word packing the current second and the count admitted in it: a
//! fixed one-second window, updated with compare-exchange, no lock. Only
//! publishes whose deciding ACL rule carries a limited label touch it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::hash::HashMap;

/// The node's limits, shared by every shard.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Empty when no label is limited: then [`RateLimits::admit`] is one branch.
    labels: Arc<HashMap<Arc<str>, Window>>,
    /// Second 0 of every window.
    epoch: Instant,
}

/// One label's window: `second << 32 | admitted`.
#[derive(Debug)]
struct Window {
    limit: u32,
    state: AtomicU64,
    /// Publishes refused since start, for `/metrics`.
    refused: AtomicU64,
}

/// No label is limited.
impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::new(&BTreeMap::new(), Instant::now())
    }
}

impl RateLimits {
    /// Limits from `label = msgs/s` pairs; `epoch` starts the first window.
    pub fn new(limits: &BTreeMap<String, u32>, epoch: Instant) -> RateLimits {
        let labels = limits
            .iter()
            .map(|(label, &limit)| {
                let window = Window {
                    limit,
                    state: AtomicU64::new(0),
                    refused: AtomicU64::new(0),
                };
                (Arc::from(label.as_str()), window)
            })
            .collect::<HashMap<_, _>>();
        RateLimits {
            labels: Arc::new(labels),
            epoch,
        }
    }

    /// Whether one more publish under `label` fits this second's budget (and
    /// counts it if so). Publishes without a label, or with an unlimited one,
    /// always fit.
    pub fn admit(&self, label: Option<&str>, now: Instant) -> bool {
        let Some(label) = label.filter(|_| !self.labels.is_empty()) else {
            return true;
        };
        let Some(window) = self.labels.get(label) else {
            return true;
        };
        // Windows are numbered from the epoch; 2^32 seconds is 136 years.
        let second = now.saturating_duration_since(self.epoch).as_secs() & u64::from(u32::MAX);
        let mut state = window.state.load(Ordering::Relaxed);
        loop {
            let admitted = if state >> 32 == second {
                state & u64::from(u32::MAX)
            } else {
                0
            };
            if admitted >= u64::from(window.limit) {
                window.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            let next = second << 32 | (admitted + 1);
            match window.state.compare_exchange_weak(
                state,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => state = current,
            }
        }
    }
}

impl RateLimits {
    /// Each limited label and how many publishes it refused, by label.
    pub fn refused(&self) -> Vec<(Arc<str>, u64)> {
        let mut counts: Vec<(Arc<str>, u64)> = self
            .labels
            .iter()
            .map(|(label, w)| (label.clone(), w.refused.load(Ordering::Relaxed)))
            .collect();
        counts.sort();
        counts
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(l, n)| (l.to_string(), *n)).collect()
    }

    #[test]
    fn a_label_admits_its_limit_per_second_then_refuses() {
        let t0 = Instant::now();
        let r = RateLimits::new(&limits(&[("slow", 3)]), t0);
        let at = |ms| t0 + Duration::from_millis(ms);
        let first: Vec<bool> = (0..5).map(|i| r.admit(Some("slow"), at(i * 100))).collect();
        assert_eq!(first, [true, true, true, false, false]);
        assert_eq!(r.refused(), [(Arc::from("slow"), 2)]);
        // The next second starts a fresh budget.
        assert!(r.admit(Some("slow"), at(1000)));
        assert!(r.admit(Some("slow"), at(1999)));
        assert!(r.admit(Some("slow"), at(1999)));
        assert!(!r.admit(Some("slow"), at(1999)));
        // A second with no traffic in between does not carry anything over.
        assert!(r.admit(Some("slow"), at(5000)));
    }

    #[test]
    fn other_labels_and_no_label_are_not_limited() {
        let t0 = Instant::now();
        let r = RateLimits::new(&limits(&[("slow", 1)]), t0);
        assert!(r.admit(Some("slow"), t0));
        assert!(!r.admit(Some("slow"), t0));
        for _ in 0..100 {
            assert!(r.admit(Some("fast"), t0));
            assert!(r.admit(None, t0));
        }
        assert!(RateLimits::default().admit(Some("slow"), t0));
    }

    #[test]
    fn clones_share_the_budget_across_threads() {
        let t0 = Instant::now();
        let r = RateLimits::new(&limits(&[("l", 1000)]), t0);
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let r = r.clone();
                    s.spawn(move || (0..500).filter(|_| r.admit(Some("l"), t0)).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 1000);
    }
}
