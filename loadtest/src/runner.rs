//! Runs a plan: one pinned glommio executor per core, connections
//! spread round-robin over them, a shared start instant once every connection is
//! ready, and the figures merged at the end.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use glommio::sync::Semaphore;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares, TaskQueueHandle};
use shardmq::protocol::{QoS, Version};

use crate::cli::Rate;
use crate::client::{Conn, ConnError, SocketOpts};
use crate::identity::Identity;
use crate::publisher::Publisher;
use crate::scenario::{Plan, Role};
use crate::sequence::SeqTracker;
use crate::stats::{Live, Recorder, Stats};
use crate::subscriber::Receiver;
use crate::{fleet, idle, publisher, reader, storm};

/// A publisher's SO_SNDBUF (the kernel doubles it) at most: about 1,500 64-byte
/// messages, enough to keep the broker fed between two writes, small enough that
/// `--rate max` does not queue seconds of messages in the kernel (see
/// [`SocketOpts::send_buffer`])...
const PUBLISHER_SNDBUF: usize = 64 << 10;
/// ...and over all publishers: 1,000 publishers with 64 KiB each held 3.1M messages
/// in our kernel buffers after the first second of a `--rate max` fan-in.
const ALL_PUBLISHERS_SNDBUF: usize = 4 << 20;
/// The least SO_SNDBUF worth asking for (Linux makes it 4,608 bytes at least).
const MIN_SNDBUF: usize = 4 << 10;
/// Task-queue shares of the readers; the default queue, the writers', has 1,000.
const RECEIVER_SHARES: usize = 10_000;
/// Connections doing their handshake at once, per executor.
const HANDSHAKES: u64 = 256;

/// Everything a run needs, resolved from the command line.
#[derive(Debug, Clone)]
pub struct Spec {
    pub broker: SocketAddr,
    /// Where subscribers connect (`--subscriber-broker`, else `broker`).
    pub subscriber_broker: SocketAddr,
    pub plan: Plan,
    pub qos: QoS,
    pub version: Version,
    pub payload: usize,
    pub rate: Rate,
    pub warmup: Duration,
    pub duration: Duration,
    /// How long subscribers may still receive after the window.
    pub drain: Duration,
    pub cores: Vec<usize>,
    pub identity: Identity,
    /// Source addresses, round-robin by connection index; empty: the kernel picks.
    pub bind_ips: Vec<IpAddr>,
    /// fleet: the reconnect storm, if any.
    pub reconnect: Option<Reconnect>,
    /// fleet: what each client's rate, phase and jitter are drawn from.
    pub seed: u64,
}

/// fleet: when the reconnecting clients leave and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// Since the shared start (warm-up included).
    pub at: Duration,
    pub offline: Duration,
}

impl Spec {
    /// Start of the measured window, ns since the shared start.
    pub fn warmup_ns(&self) -> u64 {
        self.warmup.as_nanos() as u64
    }

    /// End of the measured window, when publishers stop.
    pub fn end_ns(&self) -> u64 {
        (self.warmup + self.duration).as_nanos() as u64
    }

    /// The source address of connection `index`.
    pub fn source_ip(&self, index: usize) -> Option<IpAddr> {
        (!self.bind_ips.is_empty()).then(|| self.bind_ips[index % self.bind_ips.len()])
    }

    /// SO_SNDBUF of each publisher: [`ALL_PUBLISHERS_SNDBUF`] shared out, within
    /// [`MIN_SNDBUF`]..=[`PUBLISHER_SNDBUF`]. Shared by deliveries rather than
    /// publishes: a fan-out publish costs the broker a delivery per subscriber, and
    /// 1,500 queued publishes were 0.7 s of a 1→1000 fan-out.
    pub fn publisher_sndbuf(&self) -> usize {
        let deliveries =
            self.plan.publishers.max(1) as usize * self.plan.deliveries_per_message.max(1) as usize;
        (ALL_PUBLISHERS_SNDBUF / deliveries).clamp(MIN_SNDBUF, PUBLISHER_SNDBUF)
    }

    /// Whether a message intended at `ns` counts in the figures.
    pub fn measured(&self, ns: u64) -> bool {
        (self.warmup_ns()..self.end_ns()).contains(&ns)
    }
}

/// What every executor shares.
#[derive(Debug, Default)]
pub struct Shared {
    /// Connections done connecting (successfully or not).
    ready: AtomicUsize,
    /// Set once every connection is ready; every intended time counts from it.
    start: OnceLock<Instant>,
    pub live: Live,
    /// Share groups: per publisher, what any member of the group received.
    pub group: Mutex<HashMap<u32, SeqTracker>>,
}

impl Shared {
    /// The start instant, once every one of `total` connections is ready; polled by
    /// one task per executor ([`StartGate`]), not by every connection.
    async fn start(&self, total: usize) -> Instant {
        loop {
            if let Some(start) = self.start.get() {
                return *start;
            }
            if self.ready.load(Ordering::Acquire) >= total {
                return *self.start.get_or_init(Instant::now);
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Whether the run has started (for the progress line).
    pub fn started(&self) -> bool {
        self.start.get().is_some()
    }
}

/// Submission queue entries of each executor's io_uring (glommio's default: 128).
///
/// The kernel sizes the hash table it finds pending polls in by the completion queue
/// (twice this): `ilog2(cq_entries) - 5` bits, at most 8. At 128 that is 8 buckets,
/// and every connection waiting to read is a pending poll, so each cancellation
/// glommio makes (its preemption timer is re-armed on every pass of the scheduler)
/// scanned 1/8 of them: with 19,000 fleet clients on one executor, 70 % of its time
/// was in the kernel's `io_poll_find` (perf, 2026-12-06) and the clients sent late
/// by half a second. 4,096 gives the full 256 buckets.
const RING_DEPTH: usize = 4096;
/// io_uring buffer memory per executor (as the `shards` pool gives the broker's).
const IO_MEMORY: usize = 1 << 20;

/// Runs `spec` to the end and returns the merged figures.
///
/// Executors are made here rather than by the `shards` pool, for their ring depth
/// ([`RING_DEPTH`]); the generator needs none of the pool's listeners or mesh.
pub fn run(spec: Spec, shared: Arc<Shared>) -> anyhow::Result<Stats> {
    let spec = Arc::new(spec);
    let cores = spec.cores.clone();
    let online = shards::online_cpus().context("cannot list online CPUs; give --cores")?;
    if let Some(cpu) = cores.iter().find(|c| !online.contains(c)) {
        bail!("--cores {cores:?}: CPU {cpu} is not online here (online: {online:?})");
    }
    let n = cores.len();
    let mut executors = Vec::with_capacity(n);
    for (me, &cpu) in cores.iter().enumerate() {
        let (spec, shared) = (spec.clone(), shared.clone());
        let executor = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("loadtest-{me}"))
            .ring_depth(RING_DEPTH)
            .io_memory(IO_MEMORY)
            .spawn(move || shard(me, n, spec, shared))
            .map_err(|e| anyhow!("cannot start a load generator executor on CPU {cpu}: {e}"))?;
        executors.push((cpu, executor));
    }
    let mut total = Stats::default();
    let mut failed = None;
    for (cpu, executor) in executors {
        match executor.join() {
            Ok(Ok(stats)) => total.merge(&stats),
            Ok(Err(e)) => {
                failed = Some(anyhow!(
                    "the load generator executor on CPU {cpu} failed: {e}"
                ))
            }
            Err(e) => {
                failed = Some(anyhow!(
                    "the load generator executor on CPU {cpu} failed: {e}"
                ))
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    // A share group's loss is decided over all its members, now that all have ended.
    if let Ok(group) = shared.group.lock() {
        total.lost += group.values().map(SeqTracker::lost).sum::<u64>();
    }
    Ok(total)
}

/// One executor's wait for the shared start. Each connection used to poll the start
/// on a 1 ms timer of its own: 10,000 connections waiting were 10 million timer
/// wake-ups a second, and the last handshakes crawled behind them.
struct StartGate {
    at: std::cell::Cell<Option<Instant>>,
    /// No permits until the start is known; then one for every waiter there can be.
    open: Semaphore,
}

impl StartGate {
    fn new() -> StartGate {
        StartGate {
            at: std::cell::Cell::new(None),
            open: Semaphore::new(0),
        }
    }

    /// Marks one connection ready, and waits for the start.
    async fn ready(&self, shared: &Shared) -> Instant {
        shared.ready.fetch_add(1, Ordering::AcqRel);
        if self.at.get().is_none() {
            let _ = self.open.acquire(1).await;
        }
        self.at.get().unwrap_or_else(Instant::now)
    }

    /// The executor's poller: learns the start, then lets every waiter through.
    async fn poll(&self, shared: &Shared, total: usize, local: u64) {
        let start = shared.start(total).await;
        self.at.set(Some(start));
        self.open.signal(local);
    }
}

/// What the connections of one executor share.
#[derive(Clone)]
pub(crate) struct Local {
    /// Where readers run: ahead of the writers, so that a flood of publishers on this
    /// executor delays neither receipt times nor acks (one subscriber among 1,000
    /// publishers got one turn in 1,001 in the default queue). By its shares, not
    /// Latency::Matters: with a latency-sensitive queue glommio sometimes slept with
    /// both sockets readable (p2p QoS 1 at max against mosquitto: data in Recv-Q, the
    /// executor idle, nothing read until the run ended; 3 runs in 5), which readers
    /// that sleep in their read until the window ends never recover from.
    receivers: TaskQueueHandle,
    /// Handshakes in progress at most, so that thousands of clients do not all SYN at
    /// once and overflow the broker's accept queue (a dropped SYN is retried after 1 s,
    /// 3 s, ...).
    pub(crate) handshakes: Rc<Semaphore>,
    start: Rc<StartGate>,
    /// The latency histograms every receiver on this executor records into.
    pub(crate) recorder: Rc<Recorder>,
}

async fn shard(me: usize, n: usize, spec: Arc<Spec>, shared: Arc<Shared>) -> io::Result<Stats> {
    let executor = glommio::executor();
    let receivers = executor.create_task_queue(
        Shares::Static(RECEIVER_SHARES),
        Latency::NotImportant,
        "receivers",
    );
    let local = Local {
        receivers,
        handshakes: Rc::new(Semaphore::new(HANDSHAKES)),
        start: Rc::new(StartGate::new()),
        recorder: Rc::new(Recorder::default()),
    };
    let mine = (0..spec.plan.roles.len()).filter(|i| i % n == me).count() as u64;
    let gate = {
        let (gate, shared, total) = (local.start.clone(), shared.clone(), spec.plan.roles.len());
        glommio::spawn_local(async move { gate.poll(&shared, total, mine).await })
    };
    let mut tasks = Vec::new();
    for (i, role) in spec
        .plan
        .roles
        .iter()
        .enumerate()
        .filter(|(i, _)| i % n == me)
    {
        let queue = match role {
            Role::Subscriber { .. } => local.receivers,
            _ => executor.current_task_queue(),
        };
        let task = connection(spec.clone(), shared.clone(), local.clone(), i, role.clone());
        tasks.push(
            glommio::spawn_local_into(task, queue).map_err(|e| io::Error::other(e.to_string()))?,
        );
    }
    let mut stats = Stats::default();
    for task in tasks {
        stats.merge(&task.await);
    }
    gate.await;
    local.recorder.drain_into(&mut stats);
    Ok(stats)
}

/// One connection, from connect to disconnect.
async fn connection(
    spec: Arc<Spec>,
    shared: Arc<Shared>,
    local: Local,
    index: usize,
    role: Role,
) -> Stats {
    if let Role::Storm { worker } = role {
        let start = local.start.ready(&shared).await;
        return storm::run(&spec, &shared, start, worker).await;
    }
    let connected = async {
        let hello = spec
            .identity
            .hello(index as u64)
            .map_err(|e| ConnError::Protocol(format!("identity: {e:#}")))?;
        // Not fleet: its clients send a message every few seconds, and the kernel's
        // default buffer is what a real device gets.
        let publishes = matches!(role, Role::Publisher { .. } | Role::Mixed { .. });
        let opts = SocketOpts {
            source: spec.source_ip(index),
            send_buffer: publishes.then(|| spec.publisher_sndbuf()),
        };
        let Ok(_permit) = local.handshakes.acquire_permit(1).await else {
            return Err(ConnError::Closed("connect"));
        };
        let broker = match role {
            Role::Subscriber { .. } => spec.subscriber_broker,
            _ => spec.broker,
        };
        let mut conn = Conn::connect(broker, &hello, spec.version, opts).await?;
        if let Role::Subscriber { filter, .. }
        | Role::Mixed { own: filter, .. }
        | Role::Fleet { own: filter, .. } = &role
        {
            conn.subscribe(filter.clone(), spec.qos).await?;
        }
        Ok(conn)
    }
    .await;
    let start = local.start.ready(&shared).await;
    let conn = match connected {
        Ok(conn) => {
            Live::add(&shared.live.connected, 1);
            conn
        }
        Err(e) => {
            let mut stats = Stats::default();
            stats.error(e.reason());
            Live::add(&shared.live.errors, 1);
            return stats;
        }
    };
    let write_lock = Rc::new(Semaphore::new(1));
    match role {
        Role::Publisher { id, topic } => {
            let publisher = Publisher {
                id,
                topic,
                receiver: None,
                receivers: local.receivers,
            };
            publisher::run(spec, shared, start, publisher, conn).await
        }
        Role::Mixed { id, peer, .. } => {
            let receiver =
                Receiver::new(spec.clone(), shared.clone(), local.recorder.clone(), false);
            let publisher = Publisher {
                id,
                topic: peer,
                receiver: Some(receiver),
                receivers: local.receivers,
            };
            publisher::run(spec, shared, start, publisher, conn).await
        }
        Role::Subscriber { shared: group, .. } => {
            let receiver =
                Receiver::new(spec.clone(), shared.clone(), local.recorder.clone(), group);
            reader::run(conn, spec, shared, start, None, Some(receiver), write_lock).await
        }
        Role::Fleet {
            id,
            own,
            peer,
            reconnects,
        } => {
            let client = fleet::Client {
                index,
                id,
                own,
                peer,
                reconnects,
            };
            fleet::run(spec, shared, &local, start, client, conn).await
        }
        Role::Idle => idle::run(&spec, start, conn).await,
        Role::Storm { .. } => unreachable!("storm workers returned above"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::Args;

    fn sndbuf(args: &[&str]) -> usize {
        let mut argv = vec!["loadtest", "--broker", "127.0.0.1:1883", "--cores", "0"];
        argv.extend_from_slice(args);
        crate::spec(&Args::try_parse_from(argv).unwrap())
            .unwrap()
            .publisher_sndbuf()
    }

    /// Regression: with a fixed 64 KiB (128 KiB in the kernel), a `--rate max` 1→1000
    /// fan-out queued 25 s of messages on our side and received nothing sent in the
    /// measured window; 1,000 fan-in publishers queued 3.1M messages.
    #[test]
    fn publishers_share_a_bounded_send_buffer() {
        assert_eq!(sndbuf(&["--scenario", "p2p"]), 64 << 10);
        assert_eq!(sndbuf(&["--scenario", "p2p", "--clients", "128"]), 32 << 10);
        let fan_out = ["--scenario", "fan-out", "--subscribers", "1000"];
        assert_eq!(sndbuf(&fan_out), (4 << 20) / 1000);
        let fan_in = ["--scenario", "fan-in", "--clients", "1000"];
        assert_eq!(sndbuf(&fan_in), (4 << 20) / 1000);
        let fan_in = ["--scenario", "fan-in", "--clients", "5000"];
        assert_eq!(sndbuf(&fan_in), 4 << 10);
    }
}
