//! A wake-up between two tasks of one shard: "there is output for you".

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

/// Wakes one waiting task; a wake-up sent while nobody waits is kept, so it is
/// never lost. Holds at most one waker, which keeps glommio's waker count
/// bounded however often it is awaited.
#[derive(Debug, Default)]
pub struct Notify {
    pending: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Whether a wake-up is kept, not yet taken by [`Notify::notified`].
    pub fn is_pending(&self) -> bool {
        self.pending.get()
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
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// Wakes every waiting task at once: readers paused until the mesh backlog has
/// been taken by the send task.
#[derive(Debug, Default)]
pub struct WakeAll {
    wakers: RefCell<Vec<Waker>>,
}

impl WakeAll {
    pub fn wake_all(&self) {
        for waker in self.wakers.take() {
            waker.wake();
        }
    }

    /// Resolves once `ready()` holds, re-checking it after each [`WakeAll::wake_all`].
    pub async fn wait_until(&self, ready: impl Fn() -> bool) {
        poll_fn(|cx| {
            if ready() {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            // One waker per task, however often it is polled.
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}
