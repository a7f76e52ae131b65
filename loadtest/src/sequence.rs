//! Per-publisher sequence tracking on the receive side: lost (gaps), duplicated and
//! reordered messages.

use std::collections::BTreeSet;

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
    missing: BTreeSet<u64>,
}

impl SeqTracker {
    pub fn observe(&mut self, seq: u64) -> Seen {
        if seq == self.next {
            self.next += 1;
            Seen::InOrder
        } else if seq > self.next {
            let gap = seq - self.next;
            self.missing.extend(self.next..seq);
            self.next = seq + 1;
            Seen::Gap(gap)
        } else if self.missing.remove(&seq) {
            Seen::Reordered
        } else {
            Seen::Duplicate
        }
    }

    /// Missing now: lost, as far as anyone can tell.
    pub fn lost(&self) -> u64 {
        self.missing.len() as u64
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
            .map(|&s| t.observe(s))
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
        assert_eq!(t.observe(1), Seen::Gap(1));
        assert_eq!(t.observe(0), Seen::Reordered);
        assert_eq!(t.lost(), 0);
    }
}
