//! Starting the broker: one shard per configured core, each with its listener
//! sockets, its broker state and its background tasks, plus the HTTP listener
//! for `/health` and `/metrics` on a thread of its own.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use shards::{Inbox, Outbox, PoolBuilder, Shutdown, ShutdownHandle};
use thiserror::Error;
use tracing::{error, info};

use crate::acl::{AclError, AclFile};
use crate::auth::{AuthSetupError, ConfiguredAuthenticator};
use crate::broker::{Broker, Settings};
use crate::cluster::{self, lease::Registration, membership::Change};
use crate::config::{Config, Cores, Durability, StoreKind};
use crate::connection::handshake::ConnectPolicy;
use crate::connection::{accept_loop, serve, Shard, ShardMsg, Socket};
use crate::events::sink::{self as event_sinks, ResolveError};
use crate::http::HttpServer;
use crate::metrics::{self, Health, Metrics};
use crate::protocol::ReasonCode;
use crate::ratelimit::RateLimits;
use crate::reload::{Reloader, Trigger};
use crate::session::Limits;
use crate::store::{self, layout::Keys, redis_store::RedisStore, Owner};

/// Why the broker could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] shards::StartError),
    #[error("a shard failed: {0}")]
    Shard(String),
    #[error(
        "cannot listen for HTTP (/health, /metrics) on {addr}, set by [http] bind: \
         {source}; choose a free address and port (port 0 picks any)"
    )]
    Http {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("[auth]: {0}")]
    Auth(#[from] AuthSetupError),
    #[error("[acl] file: {0}")]
    Acl(#[from] AclError),
    #[error(transparent)]
    Events(#[from] ResolveError),
    #[error("cannot start the ACL reload thread (SIGHUP handler): {0}")]
    Reload(#[source] io::Error),
}

/// A running broker.
pub struct Server {
    pool: shards::Pool<(), io::Error>,
    /// `/health` and `/metrics`; stopped once the shards have.
    http: HttpServer,
    /// What the shards report, for embedders and tests.
    metrics: Arc<Metrics>,
    /// Reloads the ACL file on SIGHUP and every `reload-interval`; stopped on drop.
    _reloader: Option<Reloader>,
}

impl Server {
    /// The address of each MQTT listener, in config order (real ports when the
    /// config asked for port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.pool.local_addrs()
    }

    /// The address of the HTTP listener (`/health`, `/metrics`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// The metrics the shards report.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The cores the shards are pinned to.
    pub fn cpus(&self) -> &[usize] {
        self.pool.cpus()
    }

    /// Triggers a graceful shutdown, from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.pool.shutdown_handle()
    }

    /// Waits until every shard has stopped, then stops the HTTP listener.
    pub fn join(self) -> Result<(), RunError> {
        let result = self.pool.join();
        self.metrics.set_health(Health::Stopping);
        self.http.stop();
        result
            .map(|_| ())
            .map_err(|e| RunError::Shard(e.to_string()))
    }
}

/// Runs the broker until `shutdown` is triggered (or SIGINT/SIGTERM arrives).
pub fn run(config: Config, shutdown: ShutdownHandle) -> Result<(), RunError> {
    let server = start(&config, shutdown, true)?;
    for addr in server.local_addrs() {
        info!(%addr, "MQTT listener");
    }
    info!(addr = %server.http_addr(), "HTTP listener (/health, /metrics)");
    info!(cores = ?server.cpus(), "shards pinned");
    server.join()
}

/// Starts the broker and returns once every shard is serving. The HTTP
/// listener starts first, so `/health` says 503 while the shards start.
pub fn start(
    config: &Config,
    shutdown: ShutdownHandle,
    catch_signals: bool,
) -> Result<Server, RunError> {
    let cpus = match &config.shards.cores {
        Cores::All => shards::online_cpus()?.into_iter().collect::<Vec<_>>(),
        Cores::List(list) => list.clone(),
    };
    let rate_limits = RateLimits::new(&config.acl.rate_limit, Instant::now());
    // Sink addresses are resolved here, once: a shard never waits on DNS.
    let sinks = event_sinks::resolve(&config.events.sinks, cpus.len())?;
    let started = Instant::now();
    // The owner of every session this node claims: the boot id makes this
    // life of the node a different owner from the last one.
    let store = match config.store.kind {
        StoreKind::Memory => None,
        StoreKind::Redis => Some((
            config.store.clone(),
            Owner {
                node: store::node_id(config),
                boot: fastrand::u64(..),
            },
        )),
    };
    let mut metrics = Metrics::new(cpus.len(), config.mqtt.max_connections)
        .with_rate_limits(rate_limits.clone())
        .with_event_sinks(sinks.iter().map(|s| s.metrics.clone()).collect());
    if let Some((_, owner)) = &store {
        info!(node = %owner.node, boot = %owner.to_field(), "sessions are kept in Redis");
        metrics = metrics.with_store();
    }
    // The config check made sure a cluster node has its Redis store.
    let registration = match &store {
        Some((_, owner)) if config.cluster.enabled() => {
            metrics = metrics.with_cluster();
            Some(Registration::new(&config.cluster, owner.clone()))
        }
        _ => None,
    };
    let metrics = Arc::new(metrics);
    let http =
        HttpServer::start(config.http.bind, metrics.clone()).map_err(|source| RunError::Http {
            addr: config.http.bind,
            source,
        })?;
    let mut builder = PoolBuilder::new(cpus)
        .catch_signals(catch_signals)
        .shutdown_handle(shutdown);
    for listener in &config.listeners {
        builder = builder.listener(shards::ListenerConfig::new(listener.bind.to_string()));
    }
    // The links from other nodes come to every shard, after the MQTT
    // listeners.
    if registration.is_some() {
        builder = builder.listener(shards::ListenerConfig::new(config.cluster.bind.clone()));
    }
    let settings = settings(config);
    // Files and keys are read once here, so a bad one stops the start with its
    // name; each shard then takes its own authenticator (its own caches).
    let auth = Arc::new(Mutex::new(ConfiguredAuthenticator::from_config(
        &config.auth,
    )?));
    let acl = match config.acl.file.as_os_str().is_empty() {
        true => None,
        false => Some(AclFile::load(&config.acl.file)?),
    };
    let reloader = match &acl {
        Some(acl) => Some(
            Reloader::start(config.acl.reload_interval, reload_acl(acl.clone()))
                .map_err(RunError::Reload)?,
        ),
        None => None,
    };
    let max_packet_size = config.mqtt.max_packet_size as usize;
    let connect_timeout = config.mqtt.connect_timeout;
    let listeners = config.listeners.len();
    let sys_interval = config.sys.interval;
    let durability = config.store.durability;
    let store_prefix = config.store.key_prefix.clone();
    let shard_metrics = metrics.clone();
    let pool = builder.start(move |mut ctx: shards::ShardContext<ShardMsg>| async move {
        let metrics = shard_metrics;
        let auth = auth
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .for_shard();
        let mut broker = Broker::new(ctx.id(), ctx.nr_shards(), settings)
            .with_auth(Box::new(auth))
            .with_rate_limits(rate_limits);
        if let Some(acl) = &acl {
            broker = broker.with_acl(Box::new(acl.clone()));
        }
        let store = match &store {
            Some((config, owner)) => {
                Some(RedisStore::start(config, owner.clone(), ctx.id()).map_err(io::Error::other)?)
            }
            None => None,
        };
        if store.is_some() {
            broker = broker.with_store();
            if durability == Durability::Messages {
                broker = broker.with_stored_messages();
            }
        }
        let shutdown = ctx.shutdown().clone();
        // The event sinks stop after the connections have closed, so the
        // events of the closing (on_client_offline, ...) still go out.
        let sinks_stop = shards::Shutdown::new();
        let (fanout, sink_tasks) =
            event_sinks::start(&sinks, ctx.id(), ctx.nr_shards(), &sinks_stop);
        if let Some(fanout) = fanout {
            broker = broker.with_events(Box::new(fanout));
        }
        let shard = Shard::new(
            ctx.id(),
            ctx.nr_shards(),
            broker,
            max_packet_size,
            connect_timeout,
            shutdown.clone(),
            metrics.clone(),
        )?
        .with_store(store.clone())
        .with_links(
            registration
                .as_ref()
                .map(|me| cluster::net::Links::new(me.owner.clone())),
        )
        .into_rc();
        if let Some(store) = &store {
            let weak = Rc::downgrade(&shard);
            store.on_barrier(move |from, ticket, stored| {
                if let Some(shard) = weak.upgrade() {
                    shard.stored(from, ticket, stored);
                }
            });
        }
        let inbox = ctx.take_inbox();
        let outbox = ctx.outbox();
        let mut tasks = Vec::new();
        if let Some(inbox) = inbox {
            tasks.push(glommio::spawn_local(receive(
                shard.clone(),
                inbox,
                shutdown.clone(),
            )));
        }
        tasks.push(glommio::spawn_local(send(
            shard.clone(),
            outbox,
            shutdown.clone(),
        )));
        tasks.push(glommio::spawn_local(tick(
            shard.clone(),
            acl,
            shutdown.clone(),
        )));
        tasks.push(glommio::spawn_local(keepalive(
            shard.clone(),
            shutdown.clone(),
        )));
        // The sockets are served until the last connection has closed.
        let sockets_stop = shards::Shutdown::new();
        let poller = {
            let (stop, readiness) = (sockets_stop.clone(), shard.readiness.clone());
            glommio::spawn_local(async move { readiness.run(&stop).await })
        };
        tasks.push(glommio::spawn_local(retire_writers(
            shard.clone(),
            shutdown.clone(),
        )));
        tasks.push(glommio::spawn_local(metrics::sample(
            shard.clone(),
            shutdown.clone(),
        )));
        if let Some(store) = &store {
            tasks.push(glommio::spawn_local(store::load::run(
                shard.clone(),
                store.clone(),
                started,
            )));
        }
        // Shard 0 holds the node's cluster lease, on its store connection.
        // It also tails the cluster's feed, with the joins and deaths the
        // lease reports; every shard appends its route changes and retained
        // messages to it.
        if let (Some(store), Some(_)) = (&store, &registration) {
            store.feed_cluster();
        }
        if let (Some(store), Some(me), 0) = (&store, &registration, ctx.id()) {
            let resync = Rc::new(cluster::feed::Resync::default());
            let links_shard = shard.clone();
            let rejoin_shard = shard.clone();
            tasks.push(glommio::spawn_local(cluster::feed::run(
                shard.clone(),
                store.clone(),
                Keys::new(&store_prefix),
                me.owner.node.clone(),
                resync.clone(),
                shutdown.clone(),
            )));
            tasks.push(glommio::spawn_local(cluster::lease::run(
                store.client().clone(),
                Keys::new(&store_prefix),
                me.clone(),
                metrics.clone(),
                shutdown.clone(),
                move |change| {
                    match change {
                        Change::Joined(m) => resync.node(&m.node, true),
                        Change::Died { node, .. } => resync.node(node, false),
                    }
                    cluster::net::membership_changed(&links_shard, change, true);
                },
                move |lost| {
                    rejoin_shard.broker.borrow_mut().rejoined_everywhere(lost);
                    rejoin_shard.wake();
                },
            )));
        }
        // Shard 0 publishes the node's `$SYS` topics; routing takes them to
        // subscribers on every shard.
        if ctx.id() == 0 && !sys_interval.is_zero() {
            tasks.push(glommio::spawn_local(metrics::publish_sys(
                shard.clone(),
                sys_interval,
                shutdown.clone(),
            )));
        }
        let mut accepts = Vec::new();
        for index in 0..listeners {
            let Some(listener) = ctx.take_listener(index) else {
                continue;
            };
            let readiness = shard.readiness.clone();
            let shard = shard.clone();
            let on_accept = move |fd| {
                let socket = Socket::new(fd, &shard.readiness);
                glommio::spawn_local(serve(shard.clone(), socket, None)).detach();
            };
            accepts.push(glommio::spawn_local(accept_loop(
                listener,
                readiness,
                shutdown.clone(),
                on_accept,
            )));
        }
        if registration.is_some() {
            if let Some(listener) = ctx.take_listener(listeners) {
                let shard = shard.clone();
                accepts.push(listener.spawn_accept_loop(&shutdown, move |stream| {
                    glommio::spawn_local(cluster::net::accept(shard.clone(), stream)).detach();
                }));
            }
        }
        shutdown.recv().await;
        metrics.set_health(Health::Stopping);
        for accept in accepts {
            accept.await;
        }
        shard
            .broker
            .borrow_mut()
            .close_all(ReasonCode::ServerShuttingDown);
        shard.wake();
        shard.wake_all();
        shard.tracker.wait_idle().await;
        // The sessions' last writes (offline, wills) land before the exit.
        if let Some(store) = &store {
            store.flush().await;
        }
        sockets_stop.trigger();
        poller.await;
        sinks_stop.trigger();
        for task in sink_tasks.into_iter().chain(tasks) {
            task.await;
        }
        Ok::<(), io::Error>(())
    })?;
    metrics.set_health(Health::Serving);
    Ok(Server {
        pool,
        http,
        metrics,
        _reloader: reloader,
    })
}

/// The broker settings `[mqtt]` asks for.
fn settings(config: &Config) -> Settings {
    let mqtt = &config.mqtt;
    Settings {
        connect: ConnectPolicy {
            allowed_versions: mqtt.allowed_protocol_versions.clone(),
            max_client_id_len: usize::from(mqtt.max_client_id_len),
            max_keepalive: mqtt.keepalive_cap(),
            max_packet_size: mqtt.max_packet_size,
            receive_maximum: mqtt.max_inflight,
        },
        limits: Limits {
            max_inflight: mqtt.max_inflight,
            max_online_messages: mqtt.max_online_messages as usize,
            max_offline_messages: mqtt.max_offline_messages as usize,
            overflow: mqtt.queue_overflow,
        },
        max_topic_levels: usize::from(mqtt.max_topic_levels),
        topic_alias_maximum: 64,
        retry_interval: Some(mqtt.retry_interval).filter(|d| !d.is_zero()),
        stall: mqtt.stall_timeout,
        send_timeout: Some(mqtt.send_timeout).filter(|t| !t.is_zero()),
    }
}

/// Applies what other shards send: broker traffic and handed-off connections.
async fn receive(shard: Rc<Shard>, mut inbox: Inbox<ShardMsg>, shutdown: Shutdown) {
    loop {
        let batch = future::or(async { inbox.recv().await }, async {
            shutdown.recv().await;
            None
        })
        .await;
        let Some(batch) = batch else { return };
        let now = Instant::now();
        for msg in batch.messages {
            match msg {
                ShardMsg::Forward(f) => shard.broker.borrow_mut().on_forward(batch.from, f, now),
                ShardMsg::Handoff {
                    fd,
                    buffered,
                    connect,
                } => {
                    let socket = Socket::new(fd, &shard.readiness);
                    let handoff = Some((BytesMut::from(&buffered[..]), connect));
                    glommio::spawn_local(serve(shard.clone(), socket, handoff)).detach();
                }
                ShardMsg::Cluster(change) => {
                    cluster::net::membership_changed(&shard, &change, false)
                }
                ShardMsg::Reaped(dead) => cluster::reap::shard_done(&shard, dead),
            }
        }
        shard.wake();
        // A full inbox is always ready: let the writers and readers run between
        // batches, or a flood from another shard starves them.
        glommio::yield_if_needed().await;
    }
}

/// Sends what the broker queued for other shards, batched per destination.
async fn send(shard: Rc<Shard>, mut outbox: Outbox<ShardMsg>, shutdown: Shutdown) {
    loop {
        let stop = future::or(
            async {
                shard.flush.notified().await;
                false
            },
            async {
                shutdown.recv().await;
                true
            },
        )
        .await;
        let pending = std::mem::take(&mut *shard.mesh_out.borrow_mut());
        shard.mesh_drained.wake_all();
        for (to, msg) in pending {
            if outbox.push(to, msg).is_err() {
                return;
            }
        }
        if outbox.flush().await.is_err() || stop {
            return;
        }
    }
}

/// What the reload thread does with the ACL file: on SIGHUP read it again, on
/// the interval only if it changed on disk; log what happened.
fn reload_acl(acl: AclFile) -> impl FnMut(Trigger) + Send + 'static {
    move |trigger| {
        let result = match trigger {
            Trigger::Signal => acl.reload(),
            Trigger::Interval => acl.reload_if_modified(),
        };
        let file = acl.path().display();
        match result {
            Ok(true) => info!(%file, ?trigger, "ACL reloaded"),
            Ok(false) if trigger == Trigger::Signal => info!(%file, "ACL file unchanged"),
            Ok(false) => {}
            Err(e) => error!("ACL reload failed, the previous rules stay in force: {e}"),
        }
    }
}

/// Once a second: delayed wills, session expiry, and, after an ACL reload,
/// removing the subscriptions the new rules deny.
/// How often each shard looks for clients past their keepalive: a client is
/// closed at most this much after 1.5 times its keepalive.
const KEEPALIVE_SWEEP: Duration = Duration::from_millis(250);

/// Ends the connections whose client stayed silent past its keepalive.
async fn keepalive(shard: Rc<Shard>, shutdown: Shutdown) {
    while !shutdown.sleep(KEEPALIVE_SWEEP).await {
        shard.expire_idle(Instant::now());
    }
}

/// How often parked writers are looked at: one parked between two ticks in a
/// row is ended. Short, so that a storm of new connections (a CONNACK and a
/// SUBACK each, then silence) does not hold a writer for each of them.
const RETIRE_TICK: Duration = Duration::from_millis(50);

/// Ends the writer tasks parked for a whole [`RETIRE_TICK`]; no timer runs
/// while none is parked.
async fn retire_writers(shard: Rc<Shard>, shutdown: Shutdown) {
    loop {
        let parked = async {
            shard.parked_any.notified().await;
            false
        };
        let stop = async {
            shutdown.recv().await;
            true
        };
        if futures_lite::future::or(stop, parked).await {
            return;
        }
        while shard.has_parked() {
            if shutdown.sleep(RETIRE_TICK).await {
                return;
            }
            shard.retire_parked();
        }
    }
}

async fn tick(shard: Rc<Shard>, acl: Option<AclFile>, shutdown: Shutdown) {
    let mut generation = acl.as_ref().map_or(0, AclFile::generation);
    loop {
        if shutdown.sleep(Duration::from_secs(1)).await {
            return;
        }
        let now = Instant::now();
        shard.broker.borrow_mut().tick(now);
        shard.close_stuck(now);
        let owner_check = shard.broker.borrow_mut().take_owner_check();
        if let Some((owners, lost)) = owner_check {
            let check = cluster::reap::check_owners(shard.clone(), owners, lost);
            glommio::spawn_local(check).detach();
        }
        if let Some(acl) = &acl {
            let now = acl.generation();
            if now != generation {
                generation = now;
                let revoked = shard.broker.borrow_mut().revoke_denied();
                if revoked > 0 {
                    info!(
                        shard = shard.id,
                        revoked, "ACL reload: subscriptions it denies removed"
                    );
                }
            }
        }
        shard.wake();
    }
}
