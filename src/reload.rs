//! Reloading files while the broker runs: on SIGHUP, and every interval.
//!
//! A std thread of its own calls the reload function, so reading and parsing a
//! file never runs on a shard. What it reloads is swapped in atomically by the
//! callee (the ACL's `ArcSwap`); shards notice on their next tick.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use signal_hook::consts::SIGHUP;

/// How often the thread looks at the SIGHUP flag and the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Why a reload ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The process got SIGHUP.
    Signal,
    /// `reload-interval` elapsed.
    Interval,
}

/// The running reload thread; stopped and joined on drop.
pub struct Reloader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    signal: signal_hook::SigId,
}

impl Reloader {
    /// Calls `reload` on each SIGHUP and, unless `interval` is zero, every
    /// `interval`. From now on SIGHUP no longer ends the process.
    pub fn start(
        interval: Duration,
        mut reload: impl FnMut(Trigger) + Send + 'static,
    ) -> io::Result<Reloader> {
        let hup = Arc::new(AtomicBool::new(false));
        let signal = signal_hook::flag::register(SIGHUP, hup.clone())?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::Builder::new()
            .name("reload".to_owned())
            .spawn(move || {
                let mut next = Instant::now() + interval;
                while !stopping.load(Ordering::Relaxed) {
                    thread::sleep(POLL);
                    if hup.swap(false, Ordering::Relaxed) {
                        reload(Trigger::Signal);
                    } else if !interval.is_zero() && Instant::now() >= next {
                        reload(Trigger::Interval);
                        next = Instant::now() + interval;
                    }
                }
            })?;
        Ok(Reloader {
            stop,
            thread: Some(thread),
            signal,
        })
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        signal_hook::low_level::unregister(self.signal);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn sighup_and_the_interval_each_trigger_a_reload() {
        let (tx, rx) = mpsc::channel();
        let reloader = Reloader::start(Duration::from_millis(300), move |t| {
            let _ = tx.send(t);
        })
        .unwrap();
        let wait = Duration::from_secs(5);
        assert_eq!(rx.recv_timeout(wait), Ok(Trigger::Interval));
        signal_hook::low_level::raise(SIGHUP).unwrap();
        // An interval reload may come first; the signal's must come.
        let got: Vec<Trigger> = (0..3).map_while(|_| rx.recv_timeout(wait).ok()).collect();
        assert!(got.contains(&Trigger::Signal), "{got:?}");
        drop(reloader);
    }
}
