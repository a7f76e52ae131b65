//! The sending end of the mesh: per-destination buffers, one channel send
//! per destination per flush.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use glommio::channels::channel_mesh::Senders;
use glommio::{GlommioError, ResourceType};

use crate::wake::WakeSlot;
use crate::MeshError;

/// A cheap, clonable way to make outboxes on one shard, for code that
/// cannot hold the [`ShardContext`](crate::ShardContext) (an accept
/// callback making one outbox per connection, say).
pub struct OutboxMaker<M: Send + 'static> {
    /// The shard the outboxes send from.
    shard: usize,
    /// The shard's connected senders.
    senders: Rc<Senders<Vec<M>>>,
    /// Flush threshold for `Outbox::send`.
    max_batch: usize,
}

impl<M: Send + 'static> Clone for OutboxMaker<M> {
    fn clone(&self) -> Self {
        Self {
            shard: self.shard,
            senders: Rc::clone(&self.senders),
            max_batch: self.max_batch,
        }
    }
}

impl<M: Send + 'static> OutboxMaker<M> {
    pub(crate) fn new(shard: usize, senders: Rc<Senders<Vec<M>>>, max_batch: usize) -> Self {
        Self {
            shard,
            senders,
            max_batch,
        }
    }

    /// A new, empty outbox.
    pub fn outbox(&self) -> Outbox<M> {
        Outbox::new(self.shard, Rc::clone(&self.senders), self.max_batch)
    }
}

/// glommio's `send_to`, boxed so it can outlive a cancelled flush.
type SendFuture<M> = Pin<Box<dyn Future<Output = Result<(), GlommioError<Vec<M>>>>>>;

/// A send that found the channel full, kept here so a cancelled flush
/// loses nothing and the next flush resumes it.
struct Inflight<M: Send> {
    /// The blocked send, which owns the batch.
    send: SendFuture<M>,
    /// Keeps glommio from holding more than one of our wakers for it.
    slot: Arc<WakeSlot>,
    /// Messages in the batch, for `buffered()` and loss reports.
    len: usize,
}

/// Buffers messages per destination shard and sends each buffer as one
/// batch.
///
/// Typical use: `push` while handling a read, `flush().await` at the end
/// of the read loop. [`send`](Self::send) pushes and flushes a destination
/// whose batch reached `max_batch`, for producers without a natural loop end.
///
/// Dropping an outbox tries (without waiting) to hand over what is still
/// buffered; anything that does not fit is dropped, so flush first.
pub struct Outbox<M: Send + 'static> {
    /// The sending shard, to refuse sends to itself.
    shard: usize,
    /// The shard's connected senders, shared by all its outboxes.
    senders: Rc<Senders<Vec<M>>>,
    /// Messages not yet handed to a channel, per destination.
    pending: Vec<Vec<M>>,
    /// At most one blocked send per destination, ahead of `pending`.
    inflight: Vec<Option<Inflight<M>>>,
    /// Destinations that have exited: pushes to them fail at once instead
    /// of buffering forever.
    gone: Vec<bool>,
    /// Batch size at which `send` flushes a destination.
    max_batch: usize,
    /// The first error of a flush still waiting on other destinations.
    flush_error: Option<MeshError>,
}

impl<M: Send + 'static> Outbox<M> {
    pub(crate) fn new(shard: usize, senders: Rc<Senders<Vec<M>>>, max_batch: usize) -> Self {
        let n = senders.nr_consumers();
        Self {
            shard,
            senders,
            pending: (0..n).map(|_| Vec::new()).collect(),
            inflight: (0..n).map(|_| None).collect(),
            gone: vec![false; n],
            max_batch: max_batch.max(1),
            flush_error: None,
        }
    }

    /// The shard this outbox sends from.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// How many shards the pool has.
    pub fn nr_shards(&self) -> usize {
        self.pending.len()
    }

    /// Messages buffered and not yet handed to a channel (including those
    /// in a blocked send).
    pub fn buffered(&self) -> usize {
        let pending: usize = self.pending.iter().map(Vec::len).sum();
        let inflight: usize = self.inflight.iter().flatten().map(|i| i.len).sum();
        pending + inflight
    }

    /// Buffers `msg` for shard `to`. Never waits. Sending to this shard is
    /// refused ([`MeshError::ToSelf`]): deliver locally instead.
    pub fn push(&mut self, to: usize, msg: M) -> Result<(), MeshError> {
        self.check(to)?;
        self.pending[to].push(msg);
        Ok(())
    }

    /// Buffers a copy of `msg` for every other shard.
    pub fn push_all(&mut self, msg: M) -> Result<(), MeshError>
    where
        M: Clone,
    {
        let mut first_err = None;
        for to in 0..self.nr_shards() {
            if to != self.shard {
                if let Err(e) = self.push(to, msg.clone()) {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Buffers `msg` for `to`, and flushes that destination once its batch
    /// holds `max_batch` messages (waiting for channel space if needed).
    pub async fn send(&mut self, to: usize, msg: M) -> Result<(), MeshError> {
        self.push(to, msg)?;
        if self.pending[to].len() >= self.max_batch {
            std::future::poll_fn(|cx| self.poll_flush_to(to, cx)).await?;
        }
        Ok(())
    }

    /// Sends every buffered batch, one channel send per destination,
    /// waiting for space in full channels. Returns the first error (a
    /// destination that has exited); the other destinations are still
    /// flushed.
    ///
    /// Cancellation safe: a cancelled flush keeps the unsent batches, and
    /// the next flush sends them first.
    pub async fn flush(&mut self) -> Result<(), MeshError> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Sends what fits without waiting. Returns whether everything was
    /// handed over.
    pub fn try_flush(&mut self) -> Result<bool, MeshError> {
        let mut done = true;
        let mut first_err = None;
        for to in 0..self.nr_shards() {
            if self.inflight[to].is_some() {
                // A blocked send is ahead of this batch; sending around it
                // would reorder.
                done = false;
                continue;
            }
            match self.start_send(to) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Poll::Pending => done = false,
            }
        }
        first_err.map_or(Ok(done), Err)
    }

    /// Poll form of [`flush`](Self::flush).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MeshError>> {
        let mut pending = false;
        for to in 0..self.nr_shards() {
            match self.poll_flush_to(to, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    self.flush_error.get_or_insert(e);
                }
                Poll::Pending => pending = true,
            }
        }
        if pending {
            return Poll::Pending;
        }
        Poll::Ready(self.flush_error.take().map_or(Ok(()), Err))
    }

    fn poll_flush_to(&mut self, to: usize, cx: &mut Context<'_>) -> Poll<Result<(), MeshError>> {
        loop {
            if let Some(inflight) = &mut self.inflight[to] {
                let send = &mut inflight.send;
                let result = inflight.slot.poll(cx, |cx| send.as_mut().poll(cx));
                match result {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => self.inflight[to] = None,
                    Poll::Ready(Err(_)) => {
                        let lost = self.inflight[to].take().map_or(0, |i| i.len);
                        return Poll::Ready(Err(self.mark_gone(to, lost)));
                    }
                }
            }
            match self.start_send(to) {
                // Parked as inflight: loop to poll it, which registers us.
                Poll::Pending => continue,
                done => return done,
            }
        }
    }

    /// Tries to hand `pending[to]` to the channel. `Pending` means the
    /// channel was full and the batch is now the inflight send.
    fn start_send(&mut self, to: usize) -> Poll<Result<(), MeshError>> {
        if self.pending[to].is_empty() {
            return Poll::Ready(Ok(()));
        }
        let batch = std::mem::take(&mut self.pending[to]);
        match self.senders.try_send_to(to, batch) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(GlommioError::WouldBlock(ResourceType::Channel(batch))) => {
                let senders = Rc::clone(&self.senders);
                let len = batch.len();
                self.inflight[to] = Some(Inflight {
                    send: Box::pin(async move { senders.send_to(to, batch).await }),
                    slot: WakeSlot::new(),
                    len,
                });
                Poll::Pending
            }
            Err(GlommioError::Closed(ResourceType::Channel(batch))) => {
                Poll::Ready(Err(self.mark_gone(to, batch.len())))
            }
            Err(_) => Poll::Ready(Err(self.mark_gone(to, 0))),
        }
    }

    fn mark_gone(&mut self, to: usize, lost: usize) -> MeshError {
        self.gone[to] = true;
        let dropped = lost + std::mem::take(&mut self.pending[to]).len();
        MeshError::PeerGone { shard: to, dropped }
    }

    fn check(&self, to: usize) -> Result<(), MeshError> {
        if to == self.shard {
            Err(MeshError::ToSelf { shard: to })
        } else if to >= self.nr_shards() {
            Err(MeshError::NoSuchShard {
                shard: to,
                nr_shards: self.nr_shards(),
            })
        } else if self.gone[to] {
            Err(MeshError::PeerGone {
                shard: to,
                dropped: 1,
            })
        } else {
            Ok(())
        }
    }
}

impl<M: Send + 'static> Drop for Outbox<M> {
    fn drop(&mut self) {
        if self.buffered() == 0 {
            return;
        }
        let _ = self.try_flush();
        let lost = self.buffered();
        if lost > 0 {
            tracing::debug!(
                shard = self.shard,
                lost,
                "outbox dropped with unsent messages"
            );
        }
    }
}
