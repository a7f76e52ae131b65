//! A wake-up between two tasks of one shard: "there is output for you".

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

/// Wakes one waiting task; a wake-up sent while nobody waits is kept, so it is
/// never lost. Holds at most one waker, which keeps glommio's waker count
/// bounded however often it is awaited. Cells, not a `RefCell`: every
/// connection holds two (issue 15, memory per idle connection).
#[derive(Default)]
pub struct Notify {
    pending: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notify")
            .field("pending", &self.pending.get())
            .finish_non_exhaustive()
    }
}

impl Notify {
    pub fn notify(&self) {
        self.pending.set(true);
        self.wake_waiter();
    }

    /// Whether a wake-up is kept, not yet taken by [`Notify::notified`].
    pub fn is_pending(&self) -> bool {
        self.pending.get()
    }

    /// Drops the waker of a task that no longer waits: a waker kept here
    /// keeps its task's memory (glommio frees a task with its last waker).
    pub fn clear_waiter(&self) {
        self.waker.take();
    }

    /// Wakes the waiting task without keeping a wake-up: it waits for a
    /// condition of its own ([`Notify::set_waiter`]).
    pub fn wake_waiter(&self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Registers the task to be woken by the next [`Notify::notify`] or
    /// [`Notify::wake_waiter`], leaving any kept wake-up where it is.
    pub fn set_waiter(&self, waker: &Waker) {
        let kept = self.waker.take().filter(|w| w.will_wake(waker));
        self.waker.set(kept.or_else(|| Some(waker.clone())));
    }

    /// Resolves at the next (or a kept) wake-up.
    pub async fn notified(&self) {
        poll_fn(|cx| self.poll_notified(cx)).await
    }

    /// Takes a kept wake-up, or registers the task to be woken by the next one.
    pub fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pending.replace(false) {
            Poll::Ready(())
        } else {
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

/// Tasks waiting for a condition, woken one at a time in the order they started
/// waiting, or all at once.
///
/// One at a time: the publishers paused on one congested subscriber. Waking
/// them all at each drain would poll every one of them (a thousand, in a
/// fan-in) for each batch the subscriber's writer takes; instead the first one
/// resumes and, when it finds the subscriber still not congested, passes the
/// turn to the next. All at once: the readers paused until the mesh backlog
/// has been taken by the send task.
/// Every connection holds one (issue 15, memory per idle connection), and
/// most never have a task waiting: the queue is boxed on first use (8 bytes,
/// not 32), in a cell (8 bytes less than a `RefCell`).
#[derive(Default)]
pub struct WakeQueue {
    // The box is the point: 8 bytes where no task ever waits.
    #[allow(clippy::box_collection)]
    wakers: Cell<Option<Box<VecDeque<Waker>>>>,
}

impl std::fmt::Debug for WakeQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeQueue").finish_non_exhaustive()
    }
}

impl WakeQueue {
    /// Wakes the longest-waiting task, if any.
    pub fn wake_one(&self) {
        let mut wakers = self.wakers.take();
        let next = wakers.as_mut().and_then(|w| w.pop_front());
        self.wakers.set(wakers);
        if let Some(waker) = next {
            waker.wake();
        }
    }

    /// Wakes every waiting task.
    pub fn wake_all(&self) {
        for waker in self.wakers.take().into_iter().flat_map(|w| *w) {
            waker.wake();
        }
    }

    /// Resolves once `ready()` holds, checked when the task's turn comes; then
    /// passes the turn on, since `ready()` may still hold for the next one.
    pub async fn wait_until(&self, ready: impl Fn() -> bool) {
        poll_fn(|cx| {
            if ready() {
                self.wake_one();
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.take().unwrap_or_default();
            // One waker per task, however often it is polled: glommio 0.9
            // counts a task's wakers in an i16 (DESIGN.md, known bugs).
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push_back(cx.waker().clone());
            }
            self.wakers.set(Some(wakers));
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use super::WakeQueue;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn woken(c: &Arc<Count>) -> usize {
        c.0.load(Ordering::Relaxed)
    }

    #[test]
    fn wake_queue_wakes_in_turn_and_passes_the_turn_on() {
        let queue = WakeQueue::default();
        let ready = Cell::new(false);
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let mut fa = pin!(queue.wait_until(|| ready.get()));
        let mut fb = pin!(queue.wait_until(|| ready.get()));
        assert!(fa.as_mut().poll(&mut Context::from_waker(&wa)).is_pending());
        assert!(fb.as_mut().poll(&mut Context::from_waker(&wb)).is_pending());

        queue.wake_one();
        assert_eq!((woken(&a), woken(&b)), (1, 0), "only the first waiter");
        ready.set(true);
        assert_eq!(
            fa.as_mut().poll(&mut Context::from_waker(&wa)),
            Poll::Ready(())
        );
        assert_eq!(woken(&b), 1, "the first passes the turn on");
        assert_eq!(
            fb.as_mut().poll(&mut Context::from_waker(&wb)),
            Poll::Ready(())
        );
    }
}
