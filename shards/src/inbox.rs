//! The receiving end of the mesh: batches from any peer, fairly.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::Stream;
use glommio::channels::shared_channel::ConnectedReceiver;

use crate::wake::WakeSlot;

/// A batch of messages from one peer shard.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch<M> {
    /// The shard that sent it.
    pub from: usize,
    /// The messages, in the order the sender pushed them.
    pub messages: Vec<M>,
}

/// The receiving end of the mesh on one shard.
pub struct Inbox<M: Send> {
    /// One entry per other shard.
    peers: Vec<Peer<M>>,
    /// Where the next poll starts, so a busy peer cannot starve the others.
    next: usize,
}

struct Peer<M: Send> {
    /// The peer's shard index, reported with each batch.
    from: usize,
    /// The channel from that peer to us.
    rx: ConnectedReceiver<Vec<M>>,
    /// Keeps at most one of our wakers registered with the channel.
    slot: Arc<WakeSlot>,
    /// The peer has exited and its channel is drained.
    closed: bool,
}

impl<M: Send> Inbox<M> {
    /// Wraps the connected receivers from the mesh, one per peer.
    pub(crate) fn new(receivers: Vec<(usize, ConnectedReceiver<Vec<M>>)>) -> Self {
        let peers = receivers
            .into_iter()
            .map(|(from, rx)| Peer {
                from,
                rx,
                slot: WakeSlot::new(),
                closed: false,
            })
            .collect();
        Self { peers, next: 0 }
    }

    /// The next batch from any peer. `None` once every peer has exited and
    /// its channel is drained (at once in a one-shard pool, which has no
    /// peers). So `while let Some(batch) = inbox.recv().await` is a clean
    /// shutdown drain: it ends after the other shards have finished and
    /// flushed, with nothing they sent left unread.
    ///
    /// Cancellation safe: racing it against [`Shutdown::recv`](crate::Shutdown::recv)
    /// loses nothing.
    pub async fn recv(&mut self) -> Option<Batch<M>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll form of [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Batch<M>>> {
        let n = self.peers.len();
        let mut open = false;
        for k in 0..n {
            let i = (self.next + k) % n;
            let peer = &mut self.peers[i];
            if peer.closed {
                continue;
            }
            let rx = &mut peer.rx;
            match peer.slot.poll(cx, |cx| Pin::new(rx).poll_next(cx)) {
                Poll::Ready(Some(messages)) => {
                    self.next = (i + 1) % n;
                    return Poll::Ready(Some(Batch {
                        from: peer.from,
                        messages,
                    }));
                }
                Poll::Ready(None) => peer.closed = true,
                Poll::Pending => open = true,
            }
        }
        if open {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    }
}
