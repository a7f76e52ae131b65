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
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// One past the highest sequence number received.
    next: u64,
    /// Below `next` and not received: lost unless they arrive later (reordered).
    /// The flag says whether the gap counts: whether the message that revealed it
    /// was in the measured window (a missing message's own send time is unknown).
    missing: BTreeMap<u64, bool>,
}

impl SeqTracker {
    /// Records `seq`; `measured` tells whether it is in the measured window.
    pub fn observe(&mut self, seq: u64, measured: bool) -> Seen {
        if seq == self.next {
            self.next += 1;
            Seen::InOrder
        } else if seq > self.next {
            let gap = seq - self.next;
            self.missing.extend((self.next..seq).map(|s| (s, measured)));
            self.next = seq + 1;
            Seen::Gap(gap)
        } else if self.missing.remove(&seq).is_some() {
            Seen::Reordered
        } else {
            Seen::Duplicate
        }
    }

    /// Missing now (gaps found in the measured window): lost, as far as anyone can
    /// tell.
    pub fn lost(&self) -> u64 {
        self.missing.values().filter(|&&counts| counts).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_duplicate_and_reorder() {
        let mut t = SeqTracker::default();
        let seen: Vec<_> = [0, 1, 3, 3, 2, 6, 1, 7]
            .iter()
            .map(|&s| t.observe(s, true))
            .collect();
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
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(1, true), Seen::Gap(1));
        assert_eq!(t.observe(0, true), Seen::Reordered);
        assert_eq!(t.lost(), 0);
    }

    #[test]
    fn gaps_found_in_the_warm_up_are_not_counted() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(2, false), Seen::Gap(2));
        assert_eq!(t.observe(5, true), Seen::Gap(2));
        assert_eq!(t.lost(), 2);
        // Still tracked: a late one is reordered, not a duplicate.
        assert_eq!(t.observe(0, true), Seen::Reordered);
        assert_eq!(t.lost(), 2);
    }
}
