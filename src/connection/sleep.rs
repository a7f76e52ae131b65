//! Sleeping readers: a connection silent for a while ends its reader task and
//! leaves its read armed with a waker of its own, which queues the connection
//! to get a reader again when input comes (`serve::resume_readers`).
//!
//! A reader task is about 440 bytes (its future and glommio's header), and
//! most of a fleet's connections are silent most of the time (issue 15,
//! memory per idle connection); the waker is a few bytes.

use std::cell::RefCell;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};

use crate::broker::ConnId;

thread_local! {
    /// This shard's connections whose sleeping reader's socket has input, and
    /// the task that starts their readers again. Glommio wakes a socket's
    /// waker on the shard's own thread.
    static WOKEN: RefCell<Woken> = RefCell::default();
}

#[derive(Default)]
struct Woken {
    conns: Vec<ConnId>,
    resumer: Option<Waker>,
}

/// The waker a sleeping reader leaves with its socket.
struct Resume(ConnId);

impl Wake for Resume {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let resumer = WOKEN.with(|w| {
            let mut w = w.borrow_mut();
            w.conns.push(self.0);
            w.resumer.take()
        });
        if let Some(resumer) = resumer {
            resumer.wake();
        }
    }
}

/// A waker that queues `conn` for a new reader.
pub fn resume_waker(conn: ConnId) -> Waker {
    Waker::from(Arc::new(Resume(conn)))
}

/// The connections woken since the last call, once there is one.
pub async fn woken() -> Vec<ConnId> {
    poll_fn(|cx| {
        WOKEN.with(|w| {
            let mut w = w.borrow_mut();
            if w.conns.is_empty() {
                w.resumer = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(std::mem::take(&mut w.conns))
            }
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::Context;

    #[test]
    fn a_woken_reader_is_queued_once_per_wake_and_wakes_the_resumer() {
        let resumed = Arc::new(Count::default());
        let resumer = Waker::from(resumed.clone());
        let mut woken = pin!(woken());
        let mut cx = Context::from_waker(&resumer);
        assert!(woken.as_mut().poll(&mut cx).is_pending());

        resume_waker(7).wake();
        resume_waker(9).wake_by_ref();
        assert_eq!(resumed.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(woken.as_mut().poll(&mut cx), Poll::Ready(vec![7, 9]));
        // A waker dropped without a wake queues nothing.
        drop(resume_waker(11));
        let mut again = pin!(super::woken());
        assert!(again.as_mut().poll(&mut cx).is_pending());
    }

    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
