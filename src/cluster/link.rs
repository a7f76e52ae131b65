//! One direction of state for a link to one life of a peer: numbering,
//! acknowledgement, resending and the credit window, sans-IO.
//!
//! Messages are numbered from 1. The receiver takes only the next number
//! (go-back-N), so what the network drops, duplicates or reorders arrives
//! once and in order; it answers with [`Frame::Credit`], which acknowledges
//! and opens the window. The sender keeps what is unacknowledged and sends
//! it again after [`RESEND`]; past the window, messages wait in a bounded
//! buffer, and past [`Link::new`]'s bound they are dropped and counted.
//!
//! A link belongs to one life of the peer (the boot id of its
//! [`super::frame::Hello`]): a new life gets a new `Link`, so a dead life's
//! messages are never replayed into its successor.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::frame::{Frame, Message};

/// How long an unacknowledged message waits before it is sent again.
pub const RESEND: Duration = Duration::from_millis(200);
/// How many messages a receiver lets a sender have in flight.
pub const WINDOW: u32 = 64;

#[derive(Debug)]
pub struct Link {
    /// The number of the next message [`Link::send`] takes.
    next_seq: u64,
    /// Sent, not acknowledged: what a resend sends again.
    unacked: VecDeque<(u64, Message)>,
    /// Not sent: the window was closed.
    waiting: VecDeque<Message>,
    /// How many messages may be unacknowledged at once (the peer's credit).
    window: u32,
    /// `unacked` + `waiting` never exceeds this.
    bound: usize,
    /// Messages refused past `bound`.
    dropped: u64,
    /// When to send `unacked` again, if any.
    resend_at: Option<Instant>,
    /// The last message received in order.
    received: u64,
    /// Received in order, not taken by [`Link::poll_message`] yet.
    inbox: VecDeque<Message>,
    /// A batch arrived since the last credit was sent.
    credit_due: bool,
}

impl Link {
    pub fn new(bound: usize) -> Link {
        Link {
            next_seq: 1,
            unacked: VecDeque::new(),
            waiting: VecDeque::new(),
            window: WINDOW,
            bound,
            dropped: 0,
            resend_at: None,
            received: 0,
            inbox: VecDeque::new(),
            credit_due: false,
        }
    }

    /// Queues a message for the peer. Returns `false`, and counts it, when the
    /// buffer is full (the peer has been unreachable for long).
    pub fn send(&mut self, message: Message) -> bool {
        if self.unacked.len() + self.waiting.len() >= self.bound {
            self.dropped += 1;
            return false;
        }
        self.waiting.push_back(message);
        true
    }

    pub fn handle_frame(&mut self, now: Instant, frame: Frame) {
        match frame {
            Frame::Batch {
                first_seq,
                messages,
            } => {
                for (seq, m) in (first_seq..).zip(messages) {
                    if seq == self.received + 1 {
                        self.received = seq;
                        self.inbox.push_back(m);
                    }
                }
                self.credit_due = true;
            }
            Frame::Credit { acked, window } => {
                while self.unacked.front().is_some_and(|(s, _)| *s <= acked) {
                    self.unacked.pop_front();
                }
                self.window = window;
                self.resend_at = (!self.unacked.is_empty()).then_some(now + RESEND);
            }
            Frame::Ping { .. } => {}
        }
    }

    /// The next frame to send: a credit owed, a resend due, or new messages
    /// the window allows.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Frame> {
        if self.credit_due {
            self.credit_due = false;
            return Some(Frame::Credit {
                acked: self.received,
                window: WINDOW,
            });
        }
        if self.resend_at.is_some_and(|at| at <= now) && !self.unacked.is_empty() {
            self.resend_at = Some(now + RESEND);
            return Some(Frame::Batch {
                first_seq: self.unacked[0].0,
                messages: self.unacked.iter().map(|(_, m)| m.clone()).collect(),
            });
        }
        let room = (self.window as usize).saturating_sub(self.unacked.len());
        let n = room.min(self.waiting.len());
        if n == 0 {
            return None;
        }
        let first_seq = self.next_seq;
        let mut messages = Vec::with_capacity(n);
        for m in self.waiting.drain(..n) {
            self.unacked.push_back((self.next_seq, m.clone()));
            self.next_seq += 1;
            messages.push(m);
        }
        self.resend_at.get_or_insert(now + RESEND);
        Some(Frame::Batch {
            first_seq,
            messages,
        })
    }

    /// When [`Link::poll_transmit`] has a resend to make.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.resend_at
    }

    /// Starts numbering again for a new connection to the same life of the
    /// peer, whose receiving side starts again too: what was sent and not
    /// acknowledged goes first, renumbered from 1. A message the peer took
    /// but had not acknowledged yet arrives twice then (at least once, as
    /// over any reconnecting link).
    pub fn restart(&mut self) {
        let unacked = std::mem::take(&mut self.unacked);
        for (_, m) in unacked.into_iter().rev() {
            self.waiting.push_front(m);
        }
        self.next_seq = 1;
        self.received = 0;
        self.window = WINDOW;
        self.resend_at = None;
        self.credit_due = false;
    }

    /// The next message received in order.
    pub fn poll_message(&mut self) -> Option<Message> {
        self.inbox.pop_front()
    }

    /// What this side still holds for the peer: sent and unacknowledged, or
    /// waiting for the window.
    pub fn pending(&self) -> impl Iterator<Item = &Message> {
        self.pending_after(0)
    }

    /// What this side holds that the peer has not received, the peer having
    /// received up to `received` (an acknowledgement may be on its way).
    pub fn pending_after(&self, received: u64) -> impl Iterator<Item = &Message> {
        self.unacked
            .iter()
            .filter(move |(s, _)| *s > received)
            .map(|(_, m)| m)
            .chain(&self.waiting)
    }

    /// The last message received in order from the peer.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Messages held: sent and unacknowledged, or waiting for the window.
    pub fn backlog(&self) -> usize {
        self.unacked.len() + self.waiting.len()
    }

    /// Messages refused because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Nothing left to send or to acknowledge.
    pub fn is_idle(&self) -> bool {
        self.unacked.is_empty() && self.waiting.is_empty() && !self.credit_due
    }
}

#[cfg(test)]
mod tests;
