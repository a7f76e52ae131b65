//! Waiting for a shard's tasks to finish after shutdown.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Counts a shard's live tasks so the shard can wait for them to finish
/// (mini-redis's `shutdown_complete` channel, without the channel).
///
/// Give each spawned task a [`TaskToken`]; the token's drop marks the task
/// done, even if it panicked or was cancelled.
#[derive(Clone, Debug, Default)]
pub struct TaskTracker {
    state: Rc<TrackerState>,
}

#[derive(Debug, Default)]
struct TrackerState {
    live: Cell<usize>,
    idle_waiter: RefCell<Option<Waker>>,
}

/// Proof that a tracked task is still running; drop it when the task ends.
#[derive(Debug)]
pub struct TaskToken {
    state: Rc<TrackerState>,
}

impl TaskTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers one more live task.
    pub fn token(&self) -> TaskToken {
        self.state.live.set(self.state.live.get() + 1);
        TaskToken {
            state: Rc::clone(&self.state),
        }
    }

    /// How many tokens are alive.
    pub fn live(&self) -> usize {
        self.state.live.get()
    }

    /// Resolves when no token is alive. Only one waiter at a time is
    /// supported: the shard's root task.
    pub async fn wait_idle(&self) {
        std::future::poll_fn(|cx| {
            if self.state.live.get() == 0 {
                return Poll::Ready(());
            }
            let mut waiter = self.state.idle_waiter.borrow_mut();
            match waiter.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waiter = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await;
    }
}

impl Drop for TaskToken {
    fn drop(&mut self) {
        let live = self.state.live.get() - 1;
        self.state.live.set(live);
        if live == 0 {
            let waiter = self.state.idle_waiter.borrow_mut().take();
            if let Some(waker) = waiter {
                waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TaskTracker;
    use crate::test_executor;

    #[test]
    fn wait_idle_returns_when_the_last_token_drops() {
        test_executor(|| async {
            let tracker = TaskTracker::new();
            tracker.wait_idle().await; // nothing live: at once
            let tokens: Vec<_> = (0..3).map(|_| tracker.token()).collect();
            assert_eq!(tracker.live(), 3);
            glommio::spawn_local(async move {
                futures_lite::future::yield_now().await;
                drop(tokens);
            })
            .detach();
            tracker.wait_idle().await;
            assert_eq!(tracker.live(), 0);
        });
    }
}
