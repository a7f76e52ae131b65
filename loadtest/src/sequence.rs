//! Per-publisher sequence tracking on the receive side: lost (gaps), duplicated and
//! reordered messages.

use std::collections::BTreeMap;

/// What one received sequence number was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next one expected.
    InOrder,
    /// Ahead of the next expected: this many before it are missing (for now).
    Gap(u64),
    /// One that was missing arrived late: not lost after all.
    Reordered,
    /// Already received.
    Duplicate,
}

/// The sequence numbers received from one publisher.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// Where the measured window starts, ns: gaps before it are not counted.
    window_start_ns: u64,
    /// One past the highest sequence number received.
    next: u64,
    /// The intended send time of `next - 1`, ns (0 before anything arrived).
    top_ns: u64,
    /// Ranges below `next` not received, by start: end (exclusive) and whether the
    /// gap counts (was meant to be sent in the measured window). Lost unless they
    /// arrive later (reordered). Ranges, not one entry per message: a broker dropping
    /// millions under overload leaves a few gaps of many messages each.
    missing: BTreeMap<u64, (u64, bool)>,
}

impl SeqTracker {
    pub fn new(window_start_ns: u64) -> SeqTracker {
        SeqTracker {
            window_start_ns,
            next: 0,
            top_ns: 0,
            missing: BTreeMap::new(),
        }
    }

    /// Records `seq`, meant to be sent at `intended_ns`.
    pub fn observe(&mut self, seq: u64, intended_ns: u64) -> Seen {
        if seq == self.next {
            self.next += 1;
            self.top_ns = intended_ns;
            return Seen::InOrder;
        }
        if seq > self.next {
            let gap = seq - self.next;
            let measured = self.measured_part(gap, intended_ns);
            let split = seq - measured;
            if split > self.next {
                self.missing.insert(self.next, (split, false));
            }
            if measured > 0 {
                self.missing.insert(split, (seq, true));
            }
            self.next = seq + 1;
            self.top_ns = intended_ns;
            return Seen::Gap(gap);
        }
        let Some((&start, &(end, counts))) = self.missing.range(..=seq).next_back() else {
            return Seen::Duplicate;
        };
        if seq >= end {
            return Seen::Duplicate;
        }
        self.missing.remove(&start);
        if start < seq {
            self.missing.insert(start, (seq, counts));
        }
        if seq + 1 < end {
            self.missing.insert(seq + 1, (end, counts));
        }
        Seen::Reordered
    }

    /// Of the `gap` messages missing between the highest received (at `top_ns`) and
    /// one meant for `ns`, how many were meant for the measured window: the later
    /// ones, placed evenly in time between the two (exact at a set rate, where
    /// intended times are evenly spaced; an estimate under `--rate max`). A broker
    /// dropping everything across the window's start would otherwise have the whole
    /// gap counted, warm-up included.
    fn measured_part(&self, gap: u64, ns: u64) -> u64 {
        let start = self.window_start_ns;
        if ns < start {
            return 0;
        }
        if self.top_ns >= start || ns <= self.top_ns {
            return gap;
        }
        // Message k of the gap (1..=gap) is meant for top + k * step, step being
        // (ns - top) / (gap + 1); it counts if that is at or after `start`.
        let span = (ns - self.top_ns) as f64;
        let first = ((start - self.top_ns) as f64 * (gap + 1) as f64 / span).ceil() as u64;
        (gap + 1).saturating_sub(first.max(1)).min(gap)
    }

    /// Whether every sequence number below `n` has arrived.
    pub fn has_all_below(&self, n: u64) -> bool {
        self.next >= n && self.missing.range(..n).next().is_none()
    }

    /// Missing now (gaps found in the measured window): lost, as far as anyone can
    /// tell.
    pub fn lost(&self) -> u64 {
        self.missing
            .iter()
            .filter(|(_, &(_, counts))| counts)
            .map(|(&start, &(end, _))| end - start)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seq n meant for 10n ns; the window starts at `start`.
    fn observe_all(t: &mut SeqTracker, seqs: &[u64]) -> Vec<Seen> {
        seqs.iter().map(|&s| t.observe(s, 10 * s)).collect()
    }

    #[test]
    fn loss_duplicate_and_reorder() {
        let mut t = SeqTracker::new(0);
        let seen = observe_all(&mut t, &[0, 1, 3, 3, 2, 6, 1, 7]);
        assert_eq!(
            seen,
            [
                Seen::InOrder,
                Seen::InOrder,
                Seen::Gap(1),
                Seen::Duplicate,
                Seen::Reordered,
                Seen::Gap(2),
                Seen::Duplicate,
                Seen::InOrder,
            ]
        );
        // 4 and 5 never came.
        assert_eq!(t.lost(), 2);
    }

    #[test]
    fn a_late_first_message_is_reordered_not_lost() {
        let mut t = SeqTracker::new(0);
        assert_eq!(t.observe(1, 10), Seen::Gap(1));
        assert_eq!(t.observe(0, 0), Seen::Reordered);
        assert_eq!(t.lost(), 0);
    }

    #[test]
    fn gaps_in_the_warm_up_are_not_counted() {
        let mut t = SeqTracker::new(45);
        assert_eq!(observe_all(&mut t, &[2]), [Seen::Gap(2)]);
        assert_eq!(observe_all(&mut t, &[8]), [Seen::Gap(5)]);
        // 3 and 4 were meant for the warm-up (30, 40 ns); 5, 6, 7 for the window.
        assert_eq!(t.lost(), 3);
        // Still tracked: a late one is reordered, not a duplicate.
        assert_eq!(t.observe(0, 0), Seen::Reordered);
        assert_eq!(t.observe(6, 60), Seen::Reordered);
        assert_eq!(t.lost(), 2);
    }

    #[test]
    fn a_gap_across_the_start_counts_its_part_in_the_window() {
        // Regression: a broker dropping everything across the start of the window
        // had the whole gap counted, so lost + received exceeded what was sent.
        for start in [0, 1, 9, 10, 11, 55, 99, 100, 101] {
            let mut t = SeqTracker::new(start);
            t.observe(0, 0);
            t.observe(10, 100);
            let expect = (1..10).filter(|s| 10 * s >= start).count() as u64;
            assert_eq!(t.lost(), expect, "window from {start} ns");
        }
        // The first messages dropped: counted from time 0.
        let mut t = SeqTracker::new(25);
        t.observe(4, 40);
        assert_eq!(t.lost(), 1, "3 (at 30 ns) counts, 0..=2 do not");
    }

    /// The range representation against a naive set of everything received.
    #[test]
    fn ranges_match_a_naive_model() {
        let mut t = SeqTracker::new(0);
        let mut seen = std::collections::BTreeSet::new();
        // A fixed pseudo-random walk over 0..200 with repeats and jumps.
        let mut x: u64 = 7;
        for _ in 0..2000 {
            x = (x * 1_103_515_245 + 12_345) % (1 << 31);
            let seq = x % 200;
            let next = seen.last().map_or(0, |&m| m + 1);
            let expect = if seen.contains(&seq) {
                Seen::Duplicate
            } else if seq < next {
                Seen::Reordered
            } else if seq == next {
                Seen::InOrder
            } else {
                Seen::Gap(seq - next)
            };
            assert_eq!(t.observe(seq, 10 * seq), expect, "seq {seq}");
            seen.insert(seq);
            let top = seen.last().map_or(0, |&m| m + 1);
            assert_eq!(t.lost(), top - seen.len() as u64);
        }
    }
}
