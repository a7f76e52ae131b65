//! Instants and timeouts as a connection keeps them: in 8 and 4 bytes
//! instead of an `Option<Instant>`'s and an `Option<Duration>`'s 16, since
//! every connection, idle or not, holds a few (issue 15, memory per idle
//! connection). Milliseconds are precise enough:
//! the sweeps that read them run a few times a second.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// An instant, or none: milliseconds since the process's first stamp, plus
/// one (so none is zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(Option<NonZeroU64>);

impl Stamp {
    pub const NONE: Stamp = Stamp(None);

    pub fn at(instant: Instant) -> Stamp {
        let since = instant.saturating_duration_since(epoch());
        Stamp(NonZeroU64::new(millis(since).saturating_add(1)))
    }

    /// Whether the stamp is at or before `now` (to the millisecond); a none
    /// stamp never is.
    pub fn reached(self, now: Instant) -> bool {
        self != Stamp::NONE && Stamp::at(now) >= self
    }

    /// How long before `now` the stamp was taken; `None` if it is none.
    pub fn age(self, now: Instant) -> Option<Duration> {
        let since = millis(now.saturating_duration_since(epoch()));
        let at = self.0?.get() - 1;
        Some(Duration::from_millis(since.saturating_sub(at)))
    }
}

/// A timeout of up to 49 days (a keepalive is at most 65,535 s, 1.5 times
/// that is 27 hours), or none; `Duration::ZERO` is none too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeout(Option<NonZeroU32>);

impl Timeout {
    pub fn new(timeout: Option<Duration>) -> Timeout {
        let ms = timeout.map_or(0, |t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX));
        Timeout(NonZeroU32::new(ms))
    }

    pub fn get(self) -> Option<Duration> {
        self.0.map(|ms| Duration::from_millis(ms.get().into()))
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_gives_its_age_within_a_millisecond() {
        let t0 = Instant::now();
        let stamp = Stamp::at(t0);
        assert_ne!(stamp, Stamp::NONE);
        assert!(stamp.age(t0) <= Some(Duration::from_millis(1)));
        // Both ends are cut to whole milliseconds: off by less than one.
        let later = t0 + Duration::from_millis(1500);
        let age = stamp.age(later).unwrap();
        assert!((1499..=1500).contains(&age.as_millis()), "{age:?}");
        // An earlier `now` (another task's clock reading) is no age at all.
        assert_eq!(Stamp::at(later).age(t0), Some(Duration::ZERO));
        assert_eq!(Stamp::NONE.age(later), None);
        assert!(stamp.reached(t0) && stamp.reached(later));
        assert!(!Stamp::at(later).reached(t0));
        assert!(!Stamp::NONE.reached(later));
        assert_eq!(Stamp::default(), Stamp::NONE);
        assert_eq!(std::mem::size_of::<Stamp>(), 8);
    }

    #[test]
    fn a_timeout_keeps_milliseconds_and_none() {
        let keepalive = Duration::from_secs(65_535 * 3 / 2);
        assert_eq!(Timeout::new(Some(keepalive)).get(), Some(keepalive));
        assert_eq!(
            Timeout::new(Some(Duration::from_millis(1500))).get(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(Timeout::new(None).get(), None);
        assert_eq!(Timeout::new(Some(Duration::ZERO)).get(), None);
        assert_eq!(std::mem::size_of::<Timeout>(), 4);
    }
}
