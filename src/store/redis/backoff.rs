//! How long to wait between failed connects: doubling, capped, so a dead
//! Redis costs a shard a few connects per second at most, and a restarted
//! one is found again within the cap.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            next: first.min(cap),
        }
    }

    /// The wait before the next attempt; each call doubles the one after,
    /// up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.cap);
        wait
    }

    /// After a connection that worked: the next failure waits the least.
    pub fn reset(&mut self) {
        self.next = self.first.min(self.cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(50), ms(1000));
        let waits: Vec<_> = (0..7).map(|_| b.next_wait()).collect();
        assert_eq!(
            waits,
            [
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000)
            ]
        );
        b.reset();
        assert_eq!(b.next_wait(), ms(50));
    }
}
