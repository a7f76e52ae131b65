//! One shutdown signal for the whole pool.
//!
//! - [`ShutdownHandle`] is the trigger: `Send + Sync`, callable from any
//!   thread (a test, an embedder, the SIGINT/SIGTERM thread, a shard that hit
//!   a fatal error).
//! - [`Shutdown`] is what tasks on a shard listen to, as in mini-redis: check
//!   [`Shutdown::is_shutdown`] between units of work, or await
//!   [`Shutdown::recv`]. It is `!Send` and costs no atomics to check.
//!
//! Each shard runs one relay task that awaits the handle and then fires that
//! shard's local [`Shutdown`]. So a cross-thread trigger costs one foreign
//! wake per shard, and nothing ever races glommio's `accept()` to notice it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// Triggers shutdown on every shard of a pool, from any thread.
///
/// Cheap to clone. Triggering is idempotent and never blocks on the shards.
#[derive(Clone, Debug, Default)]
pub struct ShutdownHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug, Default)]
struct HandleInner {
    /// Set once, never cleared: shutdown is one-way.
    triggered: AtomicBool,
    /// One waker per shard relay task (keyed by registration id), so a
    /// trigger wakes each shard exactly once.
    watchers: Mutex<Vec<(u64, Waker)>>,
    /// Source of registration ids for `watchers`.
    next_id: AtomicU64,
}

impl ShutdownHandle {
    /// A fresh, untriggered handle. Pass it to
    /// [`PoolBuilder::shutdown_handle`](crate::PoolBuilder::shutdown_handle)
    /// to keep a trigger before the pool exists (mini-redis `run(.., shutdown)`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every shard to shut down. Safe to call from any thread, any
    /// number of times.
    pub fn trigger(&self) {
        self.inner.triggered.store(true, Ordering::SeqCst);
        let watchers = std::mem::take(&mut *self.lock());
        for (_, waker) in watchers {
            waker.wake();
        }
    }

    /// Whether [`trigger`](Self::trigger) has been called.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::SeqCst)
    }

    /// Resolves once the handle is triggered. Deregisters on drop.
    pub(crate) fn triggered(&self) -> Triggered<'_> {
        Triggered {
            handle: self,
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Waker)>> {
        self.inner
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Future returned by [`ShutdownHandle::triggered`].
pub(crate) struct Triggered<'a> {
    handle: &'a ShutdownHandle,
    id: u64,
}

impl Future for Triggered<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The flag is re-read under the lock: `trigger` sets it before taking
        // the lock, so either we see it or our waker is drained by it.
        let mut watchers = self.handle.lock();
        if self.handle.is_triggered() {
            return Poll::Ready(());
        }
        match watchers.iter_mut().find(|(id, _)| *id == self.id) {
            Some((_, waker)) if waker.will_wake(cx.waker()) => {}
            Some((_, waker)) => *waker = cx.waker().clone(),
            None => watchers.push((self.id, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Triggered<'_> {
    fn drop(&mut self) {
        self.handle.lock().retain(|(id, _)| *id != self.id);
    }
}

/// A shard's view of the shutdown signal (mini-redis `Shutdown`).
///
/// Clone it into every task that must stop cleanly. A task either checks
/// [`is_shutdown`](Self::is_shutdown) between units of work, or races
/// [`recv`](Self::recv) against its work. `recv` removes its waker when
/// dropped, so racing it in a loop does not pile up wakers (see
/// `wake.rs` for why that matters under glommio).
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    state: Rc<LocalState>,
}

#[derive(Debug, Default)]
struct LocalState {
    fired: Cell<bool>,
    /// Waiting tasks; a slot per pending `Recv`, reused after it drops.
    waiters: RefCell<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Shutdown {
    /// A signal that has not fired. In a pool, use the one in
    /// [`ShardContext`](crate::ShardContext); this is for tests and
    /// single-executor embedders.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether shutdown has been signalled on this shard.
    pub fn is_shutdown(&self) -> bool {
        self.state.fired.get()
    }

    /// Sleeps for `period` unless shutdown comes first: `true` if it did.
    /// The periodic tasks of a shard (samplers, ticks, back-offs) loop on it.
    pub async fn sleep(&self, period: std::time::Duration) -> bool {
        futures_lite::future::or(
            async {
                glommio::timer::sleep(period).await;
                false
            },
            async {
                self.recv().await;
                true
            },
        )
        .await
    }

    /// Resolves once shutdown is signalled (at once if it already was).
    pub fn recv(&self) -> Recv<'_> {
        Recv {
            shutdown: self,
            slot: None,
        }
    }

    /// Fires this shard's signal only. In a pool, call
    /// [`ShutdownHandle::trigger`] instead so every shard hears it.
    pub fn trigger(&self) {
        if self.state.fired.replace(true) {
            return;
        }
        let wakers: Vec<Waker> = {
            let mut waiters = self.state.waiters.borrow_mut();
            waiters.slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

/// Future returned by [`Shutdown::recv`].
#[derive(Debug)]
pub struct Recv<'a> {
    shutdown: &'a Shutdown,
    /// Our slot in `Waiters::slots`, once registered.
    slot: Option<usize>,
}

impl Future for Recv<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shutdown.is_shutdown() {
            self.release();
            return Poll::Ready(());
        }
        let state = Rc::clone(&self.shutdown.state);
        let mut waiters = state.waiters.borrow_mut();
        match self.slot {
            Some(i) => match &mut waiters.slots[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                other => *other = Some(cx.waker().clone()),
            },
            None => {
                let waker = Some(cx.waker().clone());
                let i = match waiters.free.pop() {
                    Some(i) => {
                        waiters.slots[i] = waker;
                        i
                    }
                    None => {
                        waiters.slots.push(waker);
                        waiters.slots.len() - 1
                    }
                };
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Recv<'_> {
    fn release(&mut self) {
        if let Some(i) = self.slot.take() {
            let mut waiters = self.shutdown.state.waiters.borrow_mut();
            waiters.slots[i] = None;
            waiters.free.push(i);
        }
    }
}

impl Drop for Recv<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Runs on every shard: waits for the pool-wide trigger, then fires the
/// shard-local signal.
pub(crate) async fn relay(handle: ShutdownHandle, local: Shutdown) {
    handle.triggered().await;
    local.trigger();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_executor;

    #[test]
    fn a_foreign_trigger_wakes_the_relay_and_every_local_waiter() {
        let handle = ShutdownHandle::new();
        let remote = handle.clone();
        let woken = test_executor(move || async move {
            let local = Shutdown::new();
            glommio::spawn_local(relay(handle, local.clone())).detach();
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let local = local.clone();
                    glommio::spawn_local(async move { local.recv().await })
                })
                .collect();
            // Trigger from a plain thread while the executor may be parked.
            std::thread::spawn(move || remote.trigger());
            for waiter in waiters {
                waiter.await;
            }
            local.is_shutdown()
        });
        assert!(woken);
    }

    #[test]
    fn recv_after_trigger_is_ready_and_trigger_is_idempotent() {
        test_executor(|| async {
            let shutdown = Shutdown::new();
            shutdown.trigger();
            shutdown.trigger();
            shutdown.recv().await;
            assert!(shutdown.is_shutdown());
        });
    }

    #[test]
    fn dropped_waiters_free_their_slots() {
        test_executor(|| async {
            let shutdown = Shutdown::new();
            for _ in 0..100 {
                futures_lite::future::or(shutdown.recv(), futures_lite::future::yield_now()).await;
            }
            let waiters = shutdown.state.waiters.borrow();
            assert!(waiters.slots.iter().all(Option::is_none));
            assert!(waiters.slots.len() <= 1, "slots are reused");
        });
    }
}
