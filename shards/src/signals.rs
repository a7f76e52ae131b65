//! SIGINT/SIGTERM, turned into a [`ShutdownHandle::trigger`].

use crate::ShutdownHandle;

/// The SIGINT/SIGTERM listener: a plain std thread, because glommio has no
/// signal support and a signal handler must not touch executor state.
pub(crate) struct SignalThread {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SignalThread {
    /// Installs the handlers. The first signal triggers `shutdown`; a second
    /// one exits the process at once, for a shutdown that hangs.
    pub(crate) fn spawn(shutdown: ShutdownHandle) -> std::io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("shard-signals".into())
            .spawn(move || {
                let mut seen = false;
                for signal in signals.forever() {
                    if seen {
                        tracing::warn!(signal, "second signal: exiting without waiting");
                        std::process::exit(128 + signal);
                    }
                    seen = true;
                    tracing::info!(signal, "signal received: shutting down");
                    shutdown.trigger();
                }
            })?;
        Ok(Self {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for SignalThread {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
