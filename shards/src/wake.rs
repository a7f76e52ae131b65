//! A waker guard that keeps glommio's per-task waker count bounded.
//!
//! glommio 0.9 stores a task's waker references in an `i16` and panics with
//! "Waker invariant broken" when it overflows. Several of its leaf futures
//! (shared-channel `recv`/`send`, `accept`, `connect`) push a *new* waker
//! clone every time they are polled while pending, and only release them when
//! the event fires. Polling such a future repeatedly before it fires (racing
//! it in a `select!` loop, or polling many channels in turn) piles up clones
//! until the count overflows.
//!
//! [`WakeSlot`] breaks that pile-up: the inner future is polled with a waker
//! of our own, and is not polled again until that waker has fired. Extra polls
//! of the outer future only refresh the one stored task waker. A future only
//! has to be polled after it has woken, so skipping the other polls is sound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// One registration with a glommio leaf future, reused across polls.
#[derive(Debug, Default)]
pub(crate) struct WakeSlot {
    /// True while the inner future holds our waker and has not fired yet.
    armed: AtomicBool,
    /// The task to wake when the inner future fires. A `Mutex` because
    /// `Waker` must be `Send + Sync`; it is only contended if a foreign
    /// thread fires the waker while we poll.
    task: Mutex<Option<Waker>>,
}

impl WakeSlot {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Polls `inner` with this slot's waker, unless a previous poll is still
    /// waiting for its wake-up, in which case only the task waker is updated.
    pub(crate) fn poll<T>(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        inner: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.set_task(cx.waker());
        if self.armed.swap(true, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(Arc::clone(self));
        let result = inner(&mut Context::from_waker(&waker));
        if result.is_ready() {
            self.armed.store(false, Ordering::Release);
        }
        result
    }

    fn set_task(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        match task.as_ref() {
            Some(current) if current.will_wake(waker) => {}
            _ => *task = Some(waker.clone()),
        }
    }
}

impl Wake for WakeSlot {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.armed.store(false, Ordering::Release);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WakeSlot;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    #[test]
    fn inner_is_not_repolled_until_woken() {
        let slot = WakeSlot::new();
        let polls = AtomicUsize::new(0);
        let mut stored: Option<Waker> = None;
        let noop = Waker::noop();
        let mut cx = Context::from_waker(noop);
        for _ in 0..10 {
            let r: Poll<()> = slot.poll(&mut cx, |inner| {
                polls.fetch_add(1, Ordering::Relaxed);
                stored = Some(inner.waker().clone());
                Poll::Pending
            });
            assert!(r.is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        stored.take().expect("inner registered a waker").wake();
        let r = slot.poll(&mut cx, |_| Poll::Ready(7));
        assert_eq!(r, Poll::Ready(7));
        assert_eq!(Arc::strong_count(&slot), 1, "no waker clones left behind");
    }
}
