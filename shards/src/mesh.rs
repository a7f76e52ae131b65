//! The full mesh of channels between shards, and batched send/receive on it.
//!
//! Every ordered pair of shards has one bounded glommio shared channel that
//! carries `Vec<M>` batches. Batching is the point: DESIGN measured 18–24M
//! msgs/s through `channel_mesh` in batches of 64 against 2.9M one by one,
//! because each channel operation costs a cross-core cache miss and possibly
//! a wake-up of the peer.
//!
//! - [`Outbox`] buffers messages per destination and [`flush`](Outbox::flush)es
//!   each destination's buffer as one channel send. A task makes its own
//!   outbox with [`ShardContext::outbox`](crate::ShardContext::outbox) and
//!   flushes at the end of each read loop.
//! - [`Inbox`] yields batches from any peer, fairly, in order per peer. Each
//!   shard has exactly one.
//!
//! # Back-pressure
//! Channels hold `mesh_capacity` batches (see
//! [`PoolBuilder::mesh_capacity`](crate::PoolBuilder::mesh_capacity)). When a
//! peer's channel is full, [`Outbox::flush`] and [`Outbox::send`] wait for
//! space: the sending task stops, so its socket stops being read and the
//! kernel pushes back on the client. Nothing grows without bound, provided
//! the caller does not [`push`](Outbox::push) forever without flushing (the
//! read buffer bounds how much one read loop pushes) and a shard's inbox is
//! drained by a task that never waits on its own sends (two shards each
//! waiting for room in the other's full channel would deadlock).
//!
//! # Ordering
//! Batches from one shard to another arrive in the order they were flushed.
//! Within one outbox that is push order per destination.
//!
//! # glommio workarounds
//! The mesh is joined once, at start-up, because `join` busy-spins until
//! every peer has joined. Channel futures are polled through [`WakeSlot`]
//! so that polling many channels, or racing a flush, cannot overflow
//! glommio's `i16` waker count.

use std::rc::Rc;

use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};

use crate::Inbox;

/// The builder every shard joins; cloned on the pool's thread before the
/// shards start (glommio's builder holds an `Rc`, so it must not be cloned
/// concurrently).
pub(crate) type Mesh<M> = MeshBuilder<Vec<M>, Full>;

/// Joins the mesh and splits it into this shard's senders and inbox.
///
/// Peer ids in glommio's mesh follow executor creation order; the pool
/// creates executors in shard order, and this checks it.
pub(crate) async fn join<M: Send + 'static>(
    mesh: Mesh<M>,
    shard: usize,
) -> Result<(Rc<Senders<Vec<M>>>, Inbox<M>), String> {
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|e| format!("joining the shard mesh failed: {e}"))?;
    if senders.peer_id() != shard {
        return Err(format!(
            "mesh peer id {} does not match shard {shard}: executors started out of order",
            senders.peer_id()
        ));
    }
    Ok((Rc::new(senders), Inbox::new(receivers.streams())))
}
