//! Wakers of the tasks waiting for one condition, all woken at once.

use std::cell::RefCell;
use std::task::{Context, Waker};

/// A sink's connection tasks wait here for frames (a handful per shard, so
/// waking them all is cheap). One waker per task however often it polls:
/// glommio 0.9 counts a task's wakers in an `i16` (DESIGN.md section 3).
#[derive(Debug, Default)]
pub struct Wakers(RefCell<Vec<Waker>>);

impl Wakers {
    pub fn register(&self, cx: &Context<'_>) {
        let mut wakers = self.0.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
    }

    pub fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.0.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }
}
