//! The thread-per-core runtime layer of shardmq. It knows nothing about MQTT.
//!
//! ```
//! use shards::{ListenerConfig, PoolBuilder, ShardContext};
//!
//! // The broker's cross-shard message enum would go here.
//! #[derive(Clone, Debug)]
//! enum Msg {
//!     Hello(usize),
//! }
//!
//! // One shard per online CPU (`cores = "all"`); every shard gets a socket
//! // on the same port. The broker would also call `.catch_signals(true)`.
//! let pool = PoolBuilder::new(shards::online_cpus()?)
//!     .listener(ListenerConfig::new("127.0.0.1:0").send_buffer(256 << 10))
//!     .start(|mut ctx: ShardContext<Msg>| async move {
//!         let shutdown = ctx.shutdown().clone();
//!
//!         // Accept loop: a task of its own, stopped by the shutdown signal.
//!         let listener = ctx.take_listener(0).expect("listener 0 was configured");
//!         let accept = listener.spawn_accept_loop(&shutdown, |stream| {
//!             glommio::spawn_local(async move { drop(stream) }).detach();
//!         });
//!
//!         // Cross-shard: push per destination, one channel send per flush.
//!         let mut outbox = ctx.outbox();
//!         outbox.push_all(Msg::Hello(ctx.id())).expect("peers are running");
//!         outbox.flush().await.expect("peers are running");
//!         let mut inbox = ctx.take_inbox().expect("first take");
//!         for _ in 1..ctx.nr_shards() {
//!             let batch = inbox.recv().await.expect("a peer said hello");
//!             assert!(matches!(batch.messages[..], [Msg::Hello(from)] if from == batch.from));
//!         }
//!
//!         // Runs until SIGINT/SIGTERM or `ShutdownHandle::trigger`.
//!         shutdown.recv().await;
//!         let stats = accept.await;
//!         Ok::<_, std::io::Error>(stats.accepted)
//!     })?;
//! println!("listening on {}", pool.local_addrs()[0]);
//! pool.shutdown_handle().trigger(); // from any thread
//! let accepted: Vec<u64> = pool.join()?;
//! # assert_eq!(accepted.len(), shards::online_cpus()?.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - `pool`: [`PoolBuilder`] and [`Pool`]: one pinned glommio executor per
//!   configured CPU, started in two phases, joined with panics reported.
//! - `shard`: the body of one shard thread.
//! - `cpus`: [`online_cpus`] and the start-up check of a CPU list.
//! - `context`: [`ShardContext`], what each shard's root future receives.
//! - `mesh`: the full mesh of channels, joined once at start-up, with the
//!   batching, back-pressure and ordering rules.
//! - `outbox`: [`Outbox`], batched send per destination shard.
//! - `inbox`: [`Inbox`], batches from any peer.
//! - `listener`: SO_REUSEPORT [`Listener`]s, one per shard on one port, and
//!   their accept loops.
//! - `shutdown`: [`ShutdownHandle`] (the one trigger, any thread) and
//!   [`Shutdown`] (what tasks on a shard await).
//! - `signals`: SIGINT/SIGTERM into the trigger.
//! - `tracker`: [`TaskTracker`], waiting for a shard's tasks to end.
//! - `placement`: [`shard_for`], which shard owns a key.
//! - `testing`: [`test_executor`] for unit tests.
//! - `wake`: the guard that keeps glommio's waker count bounded.
//! - `error`: [`StartError`], [`JoinError`], [`MeshError`].
//!
//! # Why is this its own crate?
//! The broker's value is in its protocol and routing code; this crate is
//! the part that touches threads, cores, sockets and glommio, and the part
//! where glommio 0.9's known bugs are worked around (DESIGN.md section 3):
//! - racing `accept()` in a loop overflows glommio's `i16` waker count, so
//!   accept loops run alone and are stopped by `shutdown(SHUT_RD)` on the
//!   socket, and every raced channel future is polled through a waker guard;
//! - mesh `join` busy-spins, so it happens once, at start-up;
//! - a missing CPU is caught before any thread starts and reported with the
//!   list of online CPUs;
//! - io memory is 1 MiB per executor instead of 10 MiB registered ~3 times.
//!
//! Keeping all of that behind a small API means the broker's code is plain
//! `!Send` async Rust on one core, and the workarounds are tested once,
//! here, against real sockets and threads.

mod context;
mod cpus;
mod error;
mod inbox;
mod listener;
mod mesh;
mod outbox;
mod placement;
mod pool;
mod shard;
mod shutdown;
mod signals;
mod testing;
mod tracker;
mod wake;

pub use context::ShardContext;
pub use cpus::{online_cpus, CpuList};
pub use error::{JoinError, MeshError, StartError};
pub use inbox::{Batch, Inbox};
pub use listener::{set_send_buffer, AcceptFailure, AcceptStats, Listener, ListenerConfig};
pub use outbox::{Outbox, OutboxMaker};
pub use placement::shard_for;
pub use pool::{Pool, PoolBuilder};
pub use shard::NO_STALL_DETECTION;
pub use shutdown::{Recv, Shutdown, ShutdownHandle};
pub use testing::test_executor;
pub use tracker::{TaskToken, TaskTracker};
