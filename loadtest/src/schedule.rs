//! The open-loop schedule: when each message is *meant* to be sent.
//!
//! The target aggregate rate is split evenly over the publishers, each offset by a
//! phase so their sends interleave. A sender asks for every message due by "now" and
//! sends it stamped with its intended time; if the sender stalls, the messages it
//! owes are sent late with their original stamps, so the stall shows up as latency
//! and the rate holds (no coordinated omission).

use std::time::{Duration, Instant};

/// A source of "now", in nanoseconds since the run's start; faked in tests.
pub trait Clock {
    fn now_ns(&self) -> u64;
}

/// The real clock: time since a start instant shared by every executor.
#[derive(Debug, Clone, Copy)]
pub struct RealClock(pub Instant);

impl Clock for RealClock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// One message the schedule says is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub seq: u64,
    pub intended_ns: u64,
}

/// What a sender does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A message is due (or overdue): send.
    Send,
    /// Nothing is due yet: sleep this long.
    Sleep(Duration),
    /// The next message is due at or after the end of the run.
    Finished,
}

/// One publisher's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// `None` for `--rate max`: every message is due at once, stamped with "now".
    interval_ns: Option<f64>,
    /// When message 0 is due, so publishers interleave rather than burst together.
    phase_ns: f64,
    /// The next message's sequence number.
    next_seq: u64,
    /// fleet: each message moves by up to this fraction of the interval, either way,
    /// by a hash of (`seed`, sequence number); 0 elsewhere.
    jitter: f64,
    seed: u64,
}

/// fleet: how far each client's own rate strays from the average, either way (a
/// client's rate is the average times a factor drawn from 0.5..1.5).
pub const FLEET_RATE_SPREAD: f64 = 0.5;
/// fleet: how far each message strays from its client's even spacing, either way, as
/// a fraction of the client's interval. Below 0.5, so intended times stay in order.
pub const FLEET_MESSAGE_JITTER: f64 = 0.25;

impl Schedule {
    /// Publisher `index` of `publishers`, together sending `rate` messages per second.
    pub fn open_loop(rate: f64, publishers: u32, index: u32) -> Schedule {
        let aggregate_interval = 1e9 / rate;
        Schedule {
            interval_ns: Some(aggregate_interval * f64::from(publishers)),
            phase_ns: aggregate_interval * f64::from(index),
            next_seq: 0,
            jitter: 0.0,
            seed: 0,
        }
    }

    /// fleet: client `index` of `clients`, together sending about `rate` messages per
    /// second, each at a slow rate of its own. A fleet of devices does not tick in
    /// step: the client's rate is the average times a factor in 1 ± [`FLEET_RATE_SPREAD`]
    /// (uniform, so the factors average 1 and the aggregate holds), its first message
    /// comes at a random point of its first interval, and each message strays by up to
    /// [`FLEET_MESSAGE_JITTER`] of an interval. All drawn from `seed` and `index`, so a
    /// run can be repeated.
    pub fn fleet(rate: f64, clients: u32, index: u32, seed: u64) -> Schedule {
        let client = splitmix64(seed ^ u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let factor = 1.0 + FLEET_RATE_SPREAD * (2.0 * unit(client) - 1.0);
        let interval = 1e9 * f64::from(clients) / rate / factor;
        // Room for a message jittered early before the first one.
        let phase = interval * (FLEET_MESSAGE_JITTER + unit(splitmix64(client)));
        Schedule {
            interval_ns: Some(interval),
            phase_ns: phase,
            next_seq: 0,
            jitter: FLEET_MESSAGE_JITTER,
            seed: splitmix64(client ^ 1),
        }
    }

    /// As fast as the sender can go.
    pub fn max() -> Schedule {
        Schedule {
            interval_ns: None,
            phase_ns: 0.0,
            next_seq: 0,
            jitter: 0.0,
            seed: 0,
        }
    }

    /// How many messages this schedule has before `end_ns` (what a receiver of all of
    /// them waits for); 0 under `--rate max`, which has no such number.
    pub fn messages_before(&self, end_ns: u64) -> u64 {
        if self.interval_ns.is_none() {
            return 0;
        }
        let mut probe = Schedule {
            next_seq: 0,
            ..self.clone()
        };
        while probe.next_at(0) < end_ns {
            probe.next_seq += 1;
        }
        probe.next_seq
    }

    /// The time between two messages, ns (`None` under `--rate max`).
    pub fn interval_ns(&self) -> Option<f64> {
        self.interval_ns
    }

    /// When the next message is due (`now_ns` itself under `--rate max`).
    pub fn next_at(&self, now_ns: u64) -> u64 {
        match self.interval_ns {
            Some(interval) => {
                let seq = self.next_seq as f64;
                let nudge = if self.jitter > 0.0 {
                    let draw = unit(splitmix64(self.seed ^ self.next_seq));
                    self.jitter * (2.0 * draw - 1.0)
                } else {
                    0.0
                };
                (self.phase_ns + interval * (seq + nudge)) as u64
            }
            None => now_ns,
        }
    }

    /// What to do at `now_ns` in a run that ends at `end_ns`. Messages owed from
    /// before the end are still sent, late, after it.
    pub fn step(&self, now_ns: u64, end_ns: u64) -> Step {
        let next = self.next_at(now_ns);
        if next >= end_ns {
            Step::Finished
        } else if next > now_ns {
            Step::Sleep(Duration::from_nanos(next - now_ns))
        } else {
            Step::Send
        }
    }

    /// The next message if it is due by `now_ns`, and moves past it.
    pub fn next_due(&mut self, now_ns: u64) -> Option<Due> {
        let intended_ns = self.next_at(now_ns);
        if intended_ns > now_ns {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(Due { seq, intended_ns })
    }
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser): the fleet's draws, without a
/// random number crate and the same on every run.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `x` as a fraction in 0..1 (its top 53 bits).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    struct FakeClock(Cell<u64>);

    impl Clock for FakeClock {
        fn now_ns(&self) -> u64 {
            self.0.get()
        }
    }

    /// What a sender does each time it wakes: send everything due.
    fn wake(schedule: &mut Schedule, clock: &impl Clock) -> Vec<Due> {
        std::iter::from_fn(|| schedule.next_due(clock.now_ns())).collect()
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn publishers_split_the_rate_and_interleave() {
        // 1,000 msgs/s over 4 publishers: each every 4 ms, offset by 1 ms.
        let mut schedules: Vec<_> = (0..4).map(|i| Schedule::open_loop(1000.0, 4, i)).collect();
        let clock = FakeClock(Cell::new(0));
        let mut all = Vec::new();
        for t in 0..=100 {
            clock.0.set(t * MS);
            for s in &mut schedules {
                for due in wake(s, &clock) {
                    assert!(due.intended_ns <= clock.now_ns());
                    all.push(due.intended_ns);
                }
            }
        }
        all.sort_unstable();
        // One message per ms, at exactly 0, 1, 2 ... 100 ms.
        assert_eq!(all, (0..=100).map(|t| t * MS).collect::<Vec<_>>());
        assert_eq!(schedules[1].next_at(0), 101 * MS);
        assert_eq!(schedules[1].next_due(100 * MS), None);
    }

    #[test]
    fn a_stalled_sender_shows_up_as_latency_not_as_a_lower_rate() {
        // 1 publisher at 1,000 msgs/s; the sender wakes every ms, except that it
        // stalls for 200 ms in the middle of a 1 s run.
        let mut schedule = Schedule::open_loop(1000.0, 1, 0);
        let clock = FakeClock(Cell::new(0));
        let mut latencies = Vec::new();
        let mut t = 0;
        while t < 1000 * MS {
            clock.0.set(t);
            for due in wake(&mut schedule, &clock) {
                // Received the moment it is sent, stamped with its intended time.
                latencies.push(clock.now_ns() - due.intended_ns);
            }
            t += if t == 400 * MS { 200 * MS } else { MS };
        }
        // Same number of messages as if it never stalled...
        assert_eq!(latencies.len(), 1000);
        // ...and the stall is seen: the message due just after the stall began waited
        // almost all of it, the ones due later waited less and less.
        assert_eq!(latencies.iter().max(), Some(&(199 * MS)));
        assert_eq!(latencies.iter().filter(|&&l| l > 0).count(), 199);
    }

    #[test]
    fn owed_messages_are_sent_after_the_end_then_the_sender_finishes() {
        // Regression: a sender waking past the end with nothing owed computed its
        // sleep as `end - now` and slept for 584 years.
        let mut schedule = Schedule::open_loop(1000.0, 1, 0);
        let end = 10 * MS;
        assert_eq!(schedule.step(0, end), Step::Send);
        assert_eq!(schedule.next_due(0).unwrap().seq, 0);
        assert_eq!(
            schedule.step(MS / 2, end),
            Step::Sleep(Duration::from_nanos(MS / 2))
        );
        // Stalled until after the end: the 9 messages due before it are owed.
        let late = 12 * MS;
        let mut owed = 0;
        while schedule.step(late, end) == Step::Send {
            let due = schedule.next_due(late).unwrap();
            assert!(due.intended_ns < end);
            owed += 1;
        }
        assert_eq!(owed, 9);
        assert_eq!(schedule.step(late, end), Step::Finished);
        assert_eq!(Schedule::max().step(end, end), Step::Finished);
        assert_eq!(Schedule::max().step(end - 1, end), Step::Send);
    }

    #[test]
    fn fleet_clients_keep_their_own_slow_rates_and_the_aggregate() {
        // 1,000 clients at 100 msgs/s together: on average one message per client
        // every 10 s, each client at its own rate within 0.5..1.5 of that.
        let clients = 1000;
        let schedules: Vec<_> = (0..clients)
            .map(|i| Schedule::fleet(100.0, clients, i, 7))
            .collect();
        let intervals: Vec<f64> = schedules.iter().map(|s| s.interval_ns().unwrap()).collect();
        let (lo, hi) = (10e9 / 1.5, 10e9 / 0.5);
        assert!(
            intervals.iter().all(|&i| i >= lo && i <= hi),
            "{intervals:?}"
        );
        let distinct: std::collections::BTreeSet<u64> =
            intervals.iter().map(|&i| i as u64).collect();
        assert!(
            distinct.len() > 990,
            "clients share rates: {}",
            distinct.len()
        );
        let aggregate: f64 = intervals.iter().map(|i| 1e9 / i).sum();
        assert!(
            (aggregate - 100.0).abs() < 5.0,
            "aggregate {aggregate} msgs/s"
        );
        // Start phases are spread over each client's first interval, not bunched at
        // 0: the first message comes at (0.25 + U(0, 1) ± 0.25) intervals, so before
        // 0.75 of one for half the clients.
        let early = schedules
            .iter()
            .filter(|s| (s.next_at(0) as f64) < 0.75 * s.interval_ns().unwrap())
            .count();
        assert!((430..570).contains(&early), "{early} of 1000 start early");
        assert!(schedules
            .iter()
            .all(|s| (s.next_at(0) as f64) < 1.5 * s.interval_ns().unwrap()));
        // The same seed gives the same fleet; another seed another one.
        assert_eq!(
            Schedule::fleet(100.0, clients, 3, 7).next_at(0),
            schedules[3].next_at(0)
        );
        assert_ne!(
            Schedule::fleet(100.0, clients, 3, 8).next_at(0),
            schedules[3].next_at(0)
        );
    }

    #[test]
    fn fleet_messages_are_jittered_but_stay_in_order_and_on_rate() {
        let mut schedule = Schedule::fleet(1000.0, 10, 4, 1);
        let interval = schedule.interval_ns().unwrap();
        let clock = FakeClock(Cell::new(0));
        let mut times = Vec::new();
        for t in 0..=60_000 {
            clock.0.set(t * MS);
            times.extend(wake(&mut schedule, &clock).iter().map(|d| d.intended_ns));
        }
        assert!(times.windows(2).all(|w| w[0] < w[1]), "out of order");
        let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        // Jittered: the gaps differ, within 1 ± 2 × 0.25 of the interval.
        assert!(gaps.iter().any(|&g| (g - interval).abs() > interval * 0.05));
        assert!(gaps
            .iter()
            .all(|&g| g > interval * 0.49 && g < interval * 1.51));
        // On rate over the minute: jitter moves messages, it does not add or drop them.
        let expected = 60e9 / interval;
        // A receiver can tell how many to wait for.
        let fresh = Schedule::fleet(1000.0, 10, 4, 1);
        let before = times.iter().filter(|&&t| t < 30_000 * MS).count() as u64;
        assert_eq!(fresh.messages_before(30_000 * MS), before);
        assert!(
            (times.len() as f64 - expected).abs() <= 2.0,
            "{} vs {expected}",
            times.len()
        );
    }

    #[test]
    fn max_rate_stamps_now() {
        let mut schedule = Schedule::max();
        assert_eq!(
            schedule.next_due(5),
            Some(Due {
                seq: 0,
                intended_ns: 5
            })
        );
        assert_eq!(
            schedule.next_due(9),
            Some(Due {
                seq: 1,
                intended_ns: 9
            })
        );
    }
}
