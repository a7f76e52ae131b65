//! What a shard's root future is given: who it is, its mesh ends, its
//! listeners and its shutdown signal.

use std::rc::Rc;

use glommio::channels::channel_mesh::Senders;

use crate::{Inbox, Listener, Outbox, OutboxMaker, Shutdown, ShutdownHandle};

/// Everything one shard needs from the runtime. Passed by value to the
/// pool's factory on the shard's own thread; `!Send`.
pub struct ShardContext<M: Send + 'static> {
    /// This shard's index, `0..nr_shards`; also its mesh address.
    id: usize,
    /// The CPU the shard is pinned to, for logs.
    cpu: usize,
    /// Pool size, for `shard_for` and broadcast loops.
    nr_shards: usize,
    /// Shared by every outbox on this shard: one connected sender per peer.
    senders: Rc<Senders<Vec<M>>>,
    /// Taken once by the task that drains the mesh.
    inbox: Option<Inbox<M>>,
    /// This shard's socket for each configured listener, in config order.
    listeners: Vec<Option<Listener>>,
    /// This shard's copy of the signal, fired by the relay task.
    shutdown: Shutdown,
    /// The pool-wide trigger, for shards that must stop everything.
    handle: ShutdownHandle,
    /// Default flush threshold for outboxes made here.
    max_batch: usize,
}

impl<M: Send + 'static> std::fmt::Debug for ShardContext<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardContext")
            .field("id", &self.id)
            .field("cpu", &self.cpu)
            .field("nr_shards", &self.nr_shards)
            .finish_non_exhaustive()
    }
}

/// The parts the pool hands to [`ShardContext::new`].
pub(crate) struct ContextParts<M: Send + 'static> {
    pub(crate) id: usize,
    pub(crate) cpu: usize,
    pub(crate) senders: Rc<Senders<Vec<M>>>,
    pub(crate) inbox: Inbox<M>,
    pub(crate) listeners: Vec<Listener>,
    pub(crate) shutdown: Shutdown,
    pub(crate) handle: ShutdownHandle,
    pub(crate) max_batch: usize,
}

impl<M: Send + 'static> ShardContext<M> {
    pub(crate) fn new(parts: ContextParts<M>) -> Self {
        Self {
            id: parts.id,
            cpu: parts.cpu,
            nr_shards: parts.senders.nr_consumers(),
            senders: parts.senders,
            inbox: Some(parts.inbox),
            listeners: parts.listeners.into_iter().map(Some).collect(),
            shutdown: parts.shutdown,
            handle: parts.handle,
            max_batch: parts.max_batch,
        }
    }

    /// This shard's index, `0..nr_shards()`.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The CPU this shard is pinned to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// How many shards the pool has.
    pub fn nr_shards(&self) -> usize {
        self.nr_shards
    }

    /// A new, empty outbox for sending to other shards. Make one per task
    /// (per connection, say) and flush it at the end of each read loop.
    pub fn outbox(&self) -> Outbox<M> {
        Outbox::new(self.id, Rc::clone(&self.senders), self.max_batch)
    }

    /// A clonable maker of outboxes, for callbacks that outlive this borrow.
    pub fn outbox_maker(&self) -> OutboxMaker<M> {
        OutboxMaker::new(self.id, Rc::clone(&self.senders), self.max_batch)
    }

    /// The receiving end of the mesh; `None` after the first call, because
    /// one task per shard drains it.
    pub fn take_inbox(&mut self) -> Option<Inbox<M>> {
        self.inbox.take()
    }

    /// This shard's socket for the `index`-th configured listener (in
    /// [`PoolBuilder::listener`](crate::PoolBuilder::listener) order);
    /// `None` if there is no such listener or it was taken already.
    pub fn take_listener(&mut self, index: usize) -> Option<Listener> {
        self.listeners.get_mut(index).and_then(Option::take)
    }

    /// This shard's shutdown signal; clone it into each task.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// The pool-wide trigger, to shut everything down from a shard (on a
    /// fatal error, say).
    pub fn shutdown_handle(&self) -> &ShutdownHandle {
        &self.handle
    }
}
