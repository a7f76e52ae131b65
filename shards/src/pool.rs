//! The executor pool: one pinned glommio executor per configured CPU.
//!
//! Start-up is in two phases so that a failure leaves nothing half-running:
//! 1. On the calling thread: check the CPU list, bind every listener, and
//!    install signal handlers. Errors here are plain [`StartError`]s.
//! 2. One thread per shard, started one after another: each makes its
//!    executor and reports back before the next starts. Creating executors
//!    in shard order gives them ascending glommio ids, which is the order
//!    glommio's mesh numbers its peers in, so mesh peer `i` is shard `i`.
//!    If any executor fails, the others are told to exit before running
//!    anything.
//!
//! Only then are the shards released to join the mesh (once: glommio's
//! `join` busy-spins until every peer has joined) and run the factory.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use socket2::Socket;

use crate::listener::{bind_group, ListenerConfig};
use crate::mesh::Mesh;
use crate::shard::{ShardExit, ShardStart};
use crate::signals::SignalThread;
use crate::{cpus, JoinError, ShardContext, ShutdownHandle, StartError};

/// Configures and starts a [`Pool`].
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    /// One shard per entry, pinned to that CPU.
    cpus: Vec<usize>,
    /// Thread name prefix: threads are `<prefix>-<shard>`, for `top -H` and
    /// panic messages.
    name: String,
    /// io_uring registered buffer memory per executor. glommio's 10 MiB
    /// default is registered about 3× per executor (DESIGN) and only fits
    /// the 8 MiB memlock limit because root ignores it.
    io_memory: usize,
    /// Busy-poll before sleeping: 55 µs → 5 µs cross-shard round trips at
    /// the cost of a hot core (DESIGN).
    spin_before_park: Option<Duration>,
    /// Batches each mesh channel holds before senders wait.
    mesh_capacity: usize,
    /// Messages per batch at which `Outbox::send` flushes.
    max_batch: usize,
    listeners: Vec<ListenerConfig>,
    /// Whether SIGINT/SIGTERM trigger shutdown. Off by default so tests and
    /// embedders keep the process's signal handling.
    catch_signals: bool,
    /// A trigger made before the pool (mini-redis `run(.., shutdown)`).
    shutdown: Option<ShutdownHandle>,
}

impl PoolBuilder {
    /// A pool with one shard per CPU in `cpus`, in that order.
    pub fn new(cpus: impl IntoIterator<Item = usize>) -> Self {
        Self {
            cpus: cpus.into_iter().collect(),
            name: "shard".into(),
            io_memory: 1 << 20,
            spin_before_park: None,
            mesh_capacity: 128,
            max_batch: 256,
            listeners: Vec::new(),
            catch_signals: false,
            shutdown: None,
        }
    }

    /// Thread name prefix (default `shard`).
    #[must_use]
    pub fn name(mut self, prefix: impl Into<String>) -> Self {
        self.name = prefix.into();
        self
    }

    /// io_uring buffer memory per executor, in bytes (default 1 MiB).
    #[must_use]
    pub fn io_memory(mut self, bytes: usize) -> Self {
        self.io_memory = bytes;
        self
    }

    /// Spin this long before parking an idle executor.
    #[must_use]
    pub fn spin_before_park(mut self, spin: Duration) -> Self {
        self.spin_before_park = Some(spin);
        self
    }

    /// Capacity of each shard-to-shard channel, in batches (default 128).
    #[must_use]
    pub fn mesh_capacity(mut self, batches: usize) -> Self {
        self.mesh_capacity = batches.max(1);
        self
    }

    /// Batch size at which [`Outbox::send`](crate::Outbox::send) flushes
    /// (default 256).
    #[must_use]
    pub fn max_batch(mut self, messages: usize) -> Self {
        self.max_batch = messages.max(1);
        self
    }

    /// Adds a listener; every shard gets a socket on it. Listeners are
    /// numbered in the order they are added.
    #[must_use]
    pub fn listener(mut self, config: ListenerConfig) -> Self {
        self.listeners.push(config);
        self
    }

    /// Trigger shutdown on SIGINT/SIGTERM (a second signal exits at once).
    #[must_use]
    pub fn catch_signals(mut self, on: bool) -> Self {
        self.catch_signals = on;
        self
    }

    /// Use this trigger instead of a new one.
    #[must_use]
    pub fn shutdown_handle(mut self, handle: ShutdownHandle) -> Self {
        self.shutdown = Some(handle);
        self
    }

    /// Starts every shard and runs `factory(ctx)` on each.
    ///
    /// `M` is the cross-shard message type. The factory is cloned once per
    /// shard and called on the shard's thread, so the future it returns
    /// need not be `Send`. A shard that returns `Err` or panics triggers
    /// shutdown of the others, so [`Pool::join`] never waits on a
    /// half-dead pool.
    pub fn start<M, F, Fut, T, E>(self, factory: F) -> Result<Pool<T, E>, StartError>
    where
        M: Send + 'static,
        F: FnOnce(ShardContext<M>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, E>> + 'static,
        T: Send + 'static,
        E: fmt::Debug + fmt::Display + Send + 'static,
    {
        let online = cpus::online_cpus()?;
        cpus::validate(&self.cpus, &online)?;
        let n = self.cpus.len();

        let mut local_addrs = Vec::with_capacity(self.listeners.len());
        let mut per_shard: Vec<Vec<Socket>> = (0..n).map(|_| Vec::new()).collect();
        for config in &self.listeners {
            let (addr, sockets) = bind_group(config, n)?;
            local_addrs.push(addr);
            for (shard, socket) in sockets.into_iter().enumerate() {
                per_shard[shard].push(socket);
            }
        }

        let handle = self.shutdown.clone().unwrap_or_default();
        let signals = if self.catch_signals {
            Some(SignalThread::spawn(handle.clone()).map_err(StartError::Signals)?)
        } else {
            None
        };

        let mesh: Mesh<M> = MeshBuilder::full(n, self.mesh_capacity);
        let mut started: Vec<(ShardThread<T, E>, mpsc::SyncSender<bool>)> = Vec::with_capacity(n);
        for ((id, &cpu), sockets) in self.cpus.iter().enumerate().zip(per_shard) {
            let (ready_tx, ready_rx) = mpsc::sync_channel(1);
            let (go_tx, go_rx) = mpsc::sync_channel(1);
            let shard = ShardStart {
                id,
                cpu,
                name: format!("{}-{id}", self.name),
                io_memory: self.io_memory,
                spin_before_park: self.spin_before_park,
                max_batch: self.max_batch,
                mesh: mesh.clone(),
                sockets,
                handle: handle.clone(),
            };
            let factory = factory.clone();
            let spawned = std::thread::Builder::new()
                .name(shard.name.clone())
                .spawn(move || shard.run(ready_tx, go_rx, factory));
            let thread = match spawned {
                Ok(thread) => thread,
                Err(source) => {
                    abort(started);
                    return Err(StartError::Thread { shard: id, source });
                }
            };
            let ready = ready_rx.recv();
            let shard_thread = ShardThread {
                id,
                cpu,
                thread: Some(thread),
            };
            match ready {
                Ok(Ok(())) => started.push((shard_thread, go_tx)),
                Ok(Err(reason)) => {
                    abort(started);
                    drop(shard_thread.join());
                    return Err(StartError::Executor {
                        shard: id,
                        cpu,
                        reason,
                    });
                }
                Err(_) => {
                    abort(started);
                    let reason = match shard_thread.join() {
                        Err(JoinError::Panicked { message, .. }) => message,
                        _ => "the shard thread exited during start-up".into(),
                    };
                    return Err(StartError::Executor {
                        shard: id,
                        cpu,
                        reason,
                    });
                }
            }
        }
        let shards = started
            .into_iter()
            .map(|(shard, go)| {
                // A shard whose thread already died just misses the message;
                // join reports it.
                let _ = go.send(true);
                shard
            })
            .collect();
        tracing::info!(cpus = ?self.cpus, listeners = ?local_addrs, "shards started");
        Ok(Pool {
            shards,
            cpus: self.cpus,
            local_addrs,
            handle,
            _signals: signals,
            _mesh: Box::new(mesh),
        })
    }
}

/// Tells started-but-not-released shards to exit, and waits for them.
fn abort<T, E: fmt::Debug + fmt::Display>(
    started: Vec<(ShardThread<T, E>, mpsc::SyncSender<bool>)>,
) {
    for (shard, go) in started {
        let _ = go.send(false);
        drop(shard.join());
    }
}

/// Running shards. Dropping the pool triggers shutdown and waits for them.
pub struct Pool<T, E: fmt::Debug + fmt::Display> {
    /// Emptied by `join`, so `Drop` knows whether to shut down.
    shards: Vec<ShardThread<T, E>>,
    /// The CPU of each shard, for callers' logs.
    cpus: Vec<usize>,
    /// Where each listener is bound; tests need the port-0 result.
    local_addrs: Vec<SocketAddr>,
    /// The trigger, handed out to embedders and used by `Drop`.
    handle: ShutdownHandle,
    /// Kept so SIGINT/SIGTERM keep being handled until the pool is joined.
    _signals: Option<SignalThread>,
    /// glommio's mesh builder holds an `Rc` that each shard decrements when
    /// it joins; keeping one clone here until the shards have exited means
    /// those (unsynchronised) decrements can never free it under them.
    _mesh: Box<dyn Any + Send>,
}

impl<T, E: fmt::Debug + fmt::Display> fmt::Debug for Pool<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("cpus", &self.cpus)
            .field("local_addrs", &self.local_addrs)
            .finish_non_exhaustive()
    }
}

impl<T, E: fmt::Debug + fmt::Display> Pool<T, E> {
    /// How many shards run.
    pub fn nr_shards(&self) -> usize {
        self.cpus.len()
    }

    /// The CPU of each shard, by shard index.
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// The bound address of each listener, in the order they were added
    /// (with the real port when port 0 was asked for).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The trigger that shuts every shard down; callable from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Waits for every shard to finish. Returns each shard's output in shard
    /// order, or the first shard's failure (panic or error).
    pub fn join(self) -> Result<Vec<T>, JoinError<E>> {
        self.join_all().into_iter().collect()
    }

    /// Waits for every shard to finish and returns each outcome.
    pub fn join_all(mut self) -> Vec<Result<T, JoinError<E>>> {
        std::mem::take(&mut self.shards)
            .into_iter()
            .map(ShardThread::join)
            .collect()
    }
}

impl<T, E: fmt::Debug + fmt::Display> Drop for Pool<T, E> {
    fn drop(&mut self) {
        if self.shards.is_empty() {
            return;
        }
        self.handle.trigger();
        for shard in std::mem::take(&mut self.shards) {
            drop(shard.join());
        }
    }
}

/// A started shard, named for error reports.
struct ShardThread<T, E> {
    id: usize,
    cpu: usize,
    /// `None` once joined.
    thread: Option<JoinHandle<ShardExit<T, E>>>,
}

impl<T, E: fmt::Debug + fmt::Display> ShardThread<T, E> {
    fn join(mut self) -> Result<T, JoinError<E>> {
        let (shard, cpu) = (self.id, self.cpu);
        let Some(thread) = self.thread.take() else {
            return Err(JoinError::NotStarted {
                shard,
                cpu,
                reason: "already joined".into(),
            });
        };
        match thread.join() {
            Ok(ShardExit::Done(t)) => Ok(t),
            Ok(ShardExit::Failed(error)) => Err(JoinError::Failed { shard, cpu, error }),
            Ok(ShardExit::NotStarted(reason)) => Err(JoinError::NotStarted { shard, cpu, reason }),
            Err(payload) => Err(JoinError::Panicked {
                shard,
                cpu,
                message: panic_message(&*payload),
            }),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}
