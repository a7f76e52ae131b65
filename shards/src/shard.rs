//! The body of one shard thread: make the executor, report, wait for the
//! go-ahead, join the mesh, run the factory.

/// Set (to anything) to turn glommio's stall detection off in a debug build.
pub const NO_STALL_DETECTION: &str = "SHARDMQ_NO_STALL_DETECTION";

use std::fmt;
use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use socket2::Socket;

/// Submission queue entries of each executor's io_uring (glommio's default:
/// 128). The kernel finds pending polls in a hash table sized by the
/// completion queue (twice this): `ilog2(cq_entries) - 5` bits, at most 8. At
/// 128 that is 8 buckets, and every connection waiting to read is a pending
/// poll, so each cancellation glommio makes (its preemption timer is re-armed
/// on every pass of the scheduler) scans 1/8 of them: with 19,000 sessions on
/// a shard, 70-75 % of its time went to the kernel's `io_poll_find` (perf,
/// 2026-12-06). 4,096 gives the full 256 buckets.
const RING_DEPTH: usize = 4096;

use crate::context::ContextParts;
use crate::mesh::{self, Mesh};
use crate::{Listener, ShardContext, Shutdown, ShutdownHandle};

/// How a shard thread ended.
pub(crate) enum ShardExit<T, E> {
    Done(T),
    Failed(E),
    /// Released with `go = false` during an aborted start, or failed to
    /// join the mesh.
    NotStarted(String),
}

/// What one shard thread needs to start.
pub(crate) struct ShardStart<M: Send + 'static> {
    pub(crate) id: usize,
    pub(crate) cpu: usize,
    /// Thread and executor name.
    pub(crate) name: String,
    pub(crate) io_memory: usize,
    pub(crate) spin_before_park: Option<Duration>,
    pub(crate) max_batch: usize,
    /// This shard's clone of the mesh builder.
    pub(crate) mesh: Mesh<M>,
    /// This shard's socket for each listener, already bound.
    pub(crate) sockets: Vec<Socket>,
    pub(crate) handle: ShutdownHandle,
}

impl<M: Send + 'static> ShardStart<M> {
    /// The body of a shard thread.
    pub(crate) fn run<F, Fut, T, E>(
        self,
        ready: mpsc::SyncSender<Result<(), String>>,
        go: mpsc::Receiver<bool>,
        factory: F,
    ) -> ShardExit<T, E>
    where
        F: FnOnce(ShardContext<M>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        // If this thread unwinds (a panic in any task), the other shards
        // must hear about it or join() would wait on them forever.
        let _panic_guard = TriggerOnPanic(self.handle.clone());
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(self.cpu))
            .name(&self.name)
            .ring_depth(RING_DEPTH)
            .io_memory(self.io_memory);
        if let Some(spin) = self.spin_before_park {
            builder = builder.spin_before_park(spin);
        }
        if cfg!(debug_assertions) && std::env::var_os(NO_STALL_DETECTION).is_none() {
            // Logs (through the `log` crate) any task that runs 10 ms past
            // its budget, with a backtrace. Uses SIGUSR1. Symbolizing that
            // backtrace reads the binary's debug info: over 100 MB of memory
            // at once, which tests measuring memory turn off.
            builder =
                builder.detect_stalls(Some(Box::new(glommio::DefaultStallDetectionHandler {})));
        }
        let executor = match builder.make() {
            Ok(executor) => executor,
            Err(e) => {
                let reason = e.to_string();
                let _ = ready.send(Err(reason.clone()));
                return ShardExit::NotStarted(reason);
            }
        };
        let _ = ready.send(Ok(()));
        if go.recv() != Ok(true) {
            return ShardExit::NotStarted("start-up was aborted".into());
        }
        let ShardStart {
            id,
            cpu,
            max_batch,
            mesh,
            sockets,
            handle,
            ..
        } = self;
        executor.run(async move {
            let (senders, inbox) = match mesh::join(mesh, id).await {
                Ok(ends) => ends,
                Err(reason) => {
                    handle.trigger();
                    return ShardExit::NotStarted(reason);
                }
            };
            let shutdown = Shutdown::new();
            glommio::spawn_local(crate::shutdown::relay(handle.clone(), shutdown.clone())).detach();
            let ctx = ShardContext::new(ContextParts {
                id,
                cpu,
                senders,
                inbox,
                listeners: sockets.into_iter().map(Listener::from_socket).collect(),
                shutdown,
                handle: handle.clone(),
                max_batch,
            });
            match factory(ctx).await {
                Ok(t) => ShardExit::Done(t),
                Err(e) => {
                    tracing::error!(shard = id, cpu, error = %e, "shard failed; shutting down the others");
                    handle.trigger();
                    ShardExit::Failed(e)
                }
            }
        })
    }
}

/// Triggers shutdown if dropped while the thread is panicking.
struct TriggerOnPanic(ShutdownHandle);

impl Drop for TriggerOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.trigger();
        }
    }
}
