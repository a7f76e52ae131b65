//! The shard-local queue of commands: their encoded bytes waiting to be
//! written, and the callers waiting for their replies, in the same order.
//!
//! Redis answers a connection's commands in the order it got them, so the
//! n-th reply read belongs to the n-th command written. Each caller waits
//! on a [`Slot`]; a caller that gives up (drops its future) leaves its slot
//! in the queue, which is filled and thrown away, so the replies after it
//! still go to the right callers.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use ::redis::Value;

use super::RedisError;

/// The output buffer goes back to this size once written, after a burst made
/// it larger (a 1 MB value), so an idle client holds little memory.
const OUT_KEEP: usize = 64 * 1024;

/// Where a command's replies land. A command of a group has several.
#[derive(Default)]
pub struct Slot {
    result: RefCell<Option<Result<Vec<Value>, RedisError>>>,
    waker: Cell<Option<Waker>>,
}

impl Slot {
    /// A slot that needs no reply (an empty group).
    pub fn ready(values: Vec<Value>) -> Slot {
        Slot {
            result: RefCell::new(Some(Ok(values))),
            waker: Cell::new(None),
        }
    }

    fn complete(&self, result: Result<Vec<Value>, RedisError>) {
        *self.result.borrow_mut() = Some(result);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<Vec<Value>, RedisError>> {
        match self.result.borrow_mut().take() {
            Some(result) => Poll::Ready(result),
            None => {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ready = self.result.try_borrow().map(|r| r.is_some()).ok();
        f.debug_struct("Slot").field("ready", &ready).finish()
    }
}

/// A queued command (or group): who waits, for how many replies, until when.
#[derive(Debug)]
struct Pending {
    slot: Rc<Slot>,
    /// Replies this entry takes: 1 for a command, more for a group.
    replies: usize,
    /// The ones read so far.
    got: Vec<Value>,
    /// After this, the connection is taken for broken.
    deadline: Instant,
    /// Its encoded length, to drop it unsent.
    bytes: usize,
}

#[derive(Default)]
pub struct Queue {
    /// Encoded commands; `out[written..]` is not yet written.
    out: Vec<u8>,
    written: usize,
    /// Oldest first. Deadlines only grow along it: every command gets the
    /// same timeout from the moment it is queued.
    pending: VecDeque<Pending>,
}

/// Sizes only: the output may hold megabytes.
impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("unsent_bytes", &self.unsent().len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Queue {
    /// Queues a command that `encode` appends to the output, and that takes
    /// `replies` replies.
    pub fn push(
        &mut self,
        replies: usize,
        deadline: Instant,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Rc<Slot> {
        let before = self.out.len();
        encode(&mut self.out);
        let slot = Rc::new(Slot::default());
        self.pending.push_back(Pending {
            slot: slot.clone(),
            replies,
            got: Vec::with_capacity(replies),
            deadline,
            bytes: self.out.len() - before,
        });
        slot
    }

    /// What is still to be written.
    pub fn unsent(&self) -> &[u8] {
        &self.out[self.written..]
    }

    /// `n` more bytes of [`Queue::unsent`] are written.
    pub fn wrote(&mut self, n: usize) {
        self.written += n;
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
            if self.out.capacity() > OUT_KEEP {
                self.out.shrink_to(OUT_KEEP);
            }
        }
    }

    /// The next reply read: it belongs to the oldest entry.
    pub fn reply(&mut self, value: Value) -> Result<(), RedisError> {
        let Some(front) = self.pending.front_mut() else {
            return Err(RedisError::Protocol("a reply to no command".to_owned()));
        };
        front.got.push(value);
        if front.got.len() == front.replies {
            if let Some(done) = self.pending.pop_front() {
                done.slot.complete(Ok(done.got));
            }
        }
        Ok(())
    }

    /// The deadline of the oldest entry: the first to pass.
    pub fn first_deadline(&self) -> Option<Instant> {
        self.pending.front().map(|p| p.deadline)
    }

    /// Fails the entries past their deadline at `now`, while nothing of the
    /// queue has been written (between connections): their bytes go too.
    pub fn expire_unsent(&mut self, now: Instant, error: &RedisError) {
        debug_assert_eq!(self.written, 0);
        let mut dropped = 0;
        while let Some(p) = self.pending.front() {
            if p.deadline > now {
                break;
            }
            dropped += p.bytes;
            if let Some(p) = self.pending.pop_front() {
                p.slot.complete(Err(error.clone()));
            }
        }
        self.out.drain(..dropped);
    }

    /// Fails every entry, sent or not, and forgets the output: the
    /// connection they were for is gone.
    pub fn fail_all(&mut self, error: &RedisError) {
        for p in self.pending.drain(..) {
            p.slot.complete(Err(error.clone()));
        }
        self.out.clear();
        self.written = 0;
        if self.out.capacity() > OUT_KEEP {
            self.out.shrink_to(OUT_KEEP);
        }
    }
}
