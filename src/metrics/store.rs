//! The store's health as `/health` and `/metrics` see it: whether each
//! shard's Redis connection is up (and why not), and how long the shards
//! took to load the sessions a past life of the node left.
//!
//! Shards write, the HTTP thread reads; the mutex is taken once a second per
//! shard and per request, never on a message's path.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct StoreHealth {
    /// Whether the node runs with a Redis store at all.
    enabled: bool,
    /// By shard: why its store connection is down, `None` while it is up.
    down: Mutex<Vec<Option<String>>>,
    /// Shards that have not finished loading.
    loading: AtomicUsize,
    /// How long loading took on the node, once every shard finished.
    loaded_in: Mutex<Option<Duration>>,
}

impl StoreHealth {
    /// A store on `nr_shards` shards, each loading until it says otherwise.
    pub fn redis(nr_shards: usize) -> StoreHealth {
        StoreHealth {
            enabled: true,
            down: Mutex::new(vec![None; nr_shards]),
            loading: AtomicUsize::new(nr_shards),
            loaded_in: Mutex::new(None),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A shard's store connection is up (`None`) or down, and why.
    pub fn set_down(&self, shard: usize, cause: Option<String>) {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = down.get_mut(shard) {
            *slot = cause;
        }
    }

    /// The first shard's reason for its store being down, if any is.
    pub fn down(&self) -> Option<(usize, String)> {
        let down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        down.iter()
            .enumerate()
            .find_map(|(shard, cause)| Some((shard, cause.clone()?)))
    }

    /// A shard finished loading; `elapsed` since the node started.
    pub fn loaded(&self, elapsed: Duration) {
        if self.loading.fetch_sub(1, Relaxed) == 1 {
            *self
                .loaded_in
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(elapsed);
        }
    }

    /// How long the node took to load, once it has.
    pub fn loaded_in(&self) -> Option<Duration> {
        *self
            .loaded_in
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_names_the_first_shard_down_and_loading_counts_down() {
        let h = StoreHealth::redis(2);
        assert_eq!(h.down(), None);
        h.set_down(1, Some("connection refused".into()));
        assert_eq!(h.down(), Some((1, "connection refused".into())));
        h.set_down(1, None);
        assert_eq!(h.down(), None);

        h.loaded(Duration::from_millis(5));
        assert_eq!(h.loaded_in(), None);
        h.loaded(Duration::from_millis(9));
        assert_eq!(h.loaded_in(), Some(Duration::from_millis(9)));
    }
}
