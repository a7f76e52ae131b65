//! The socket side of a connection: read packets into the shard's broker, write
//! what the broker queues for it.
//!
//! Each connection has a reader on its shard (a task only while it has input
//! or must wait, see below), and a writer task while it has output now and
//! then. The reader decodes packets and hands them to the
//! [`Broker`]; the writer, started when the broker queues output for a
//! connection without one ([`Shard::wake`]), takes the connection's queued
//! packets, encodes them all into one buffer and writes it with one call
//! (writes are coalesced per wake-up), then parks until more comes. A tick
//! ends the writers parked for a whole tick: an idle connection keeps no
//! writer's future (about 400 bytes each, issue 15). They share one
//! [`Socket`], which neither holds across an await, so neither waits on the
//! other.
//!
//! A reader that finds its socket drained goes to sleep: its task ends, and
//! what it keeps ([`Live`]) waits in the socket's slot of the shard's epoll
//! set. The next input is read and handled right there, by the shard's poller
//! ([`Asleep::resume`]), which puts it back to sleep; a reader task starts
//! again only when the connection must wait for something (flow control, the
//! node's loading), has more input than one read, or ends. So an idle
//! connection keeps no task (about 450 bytes), and a quiet one costs no task
//! switch per packet.
//!
//! A session lives on the shard `shards::shard_for(client_id)` names. A
//! connection accepted elsewhere is handed to that shard right after its CONNECT
//! (descriptor, CONNECT and unread bytes), so takeovers never cross shards.

use crate::hash::HashMap;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use tracing::{debug, warn};

use super::aliases::{Applied, OutboundAliases};
use super::handshake::refusal;
use super::readiness::{Readiness, Resume};
use super::socket::{read_scratch, ReadScratch, Socket, LINGER};
use super::{Notify, WakeQueue};
use crate::broker::{AfterClaim, Broker, Client, Closed, ConnId, Forward};
use crate::events::OfflineReason;
use crate::metrics::{Admission, Metrics};
use crate::protocol::{
    decode, encode, encoded_len, Connect, DecodeError, Disconnect, Packet, ReasonCode, Version,
};
use crate::stamp::{Stamp, Timeout};
use crate::store::redis::Status;
use crate::store::redis_store::RedisStore;

/// Messages waiting for the mesh flusher past which readers stop reading
/// their sockets: a client publishing faster than another shard takes its
/// forwards is slowed down by TCP instead of growing the shard's memory.
const MESH_BACKLOG: usize = 1024;

/// The longest a PUBLISH or SUBSCRIBE waits for the node to load what a past
/// life of it left in the store: a publish routed before then could miss an
/// offline session not loaded yet, and a subscription the retained messages.
/// CONNACK, PINGREQ and the rest do not wait.
const LOAD_HOLD: Duration = Duration::from_secs(30);

/// How long a CONNECT waits for the node that held its session to close
/// its connection there.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(3);

/// What one shard sends another.
#[derive(Debug)]
pub enum ShardMsg {
    /// Broker traffic: publishes, retained updates, shard-index updates.
    Forward(Forward),
    /// A connection whose session this shard owns: its socket, its CONNECT and
    /// whatever the client sent after it.
    Handoff {
        fd: OwnedFd,
        buffered: Bytes,
        connect: Box<Connect>,
    },
    /// Another node's life joined or died (from shard 0's lease): dial it,
    /// or drop its link.
    Cluster(crate::cluster::membership::Change),
    /// To shard 0: the sender has adopted what it could of this dead life.
    Reaped(crate::store::Owner),
}

/// Everything of one shard that its connection tasks share.
pub struct Shard {
    pub id: usize,
    pub nr_shards: usize,
    pub broker: RefCell<Broker>,
    /// Wake-ups of the writers, by connection.
    writers: RefCell<HashMap<ConnId, Rc<ConnState>>>,
    next_conn: Cell<ConnId>,
    /// Messages for other shards, taken by the mesh flusher task.
    pub mesh_out: RefCell<Vec<(usize, ShardMsg)>>,
    /// Wakes the mesh flusher task.
    pub flush: Notify,
    /// Wakes readers paused on a full mesh backlog once the send task took it.
    pub mesh_drained: WakeQueue,
    /// Wakes readers out of forwarding credit when credits come back.
    credit: WakeQueue,
    /// Wakes CONNECTs waiting for another node's hand-over when one ends.
    handovers: WakeQueue,
    /// Counts live connection tasks, so shutdown can wait for them.
    pub tracker: shards::TaskTracker,
    pub max_packet_size: usize,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// The shard's shutdown signal: connections still waiting for CONNECT stop
    /// waiting when it fires.
    pub shutdown: shards::Shutdown,
    /// Node-wide metrics and the `max-connections` count.
    pub metrics: Arc<Metrics>,
    /// Where every connection of the shard reads into first.
    read_scratch: ReadScratch,
    /// The shard's epoll set, with every client and cluster socket in it.
    pub readiness: Rc<Readiness>,
    /// `[store] kind = "redis"`: where the broker's store ops go.
    store: Option<RedisStore>,
    /// Whether PUBLISH and SUBSCRIBE packets may have to wait for loading
    /// ([`Shard::until_loaded`]); cleared once loading is over.
    loading: Cell<bool>,
    /// When holding them stops, whether loading is over or not.
    hold_until: Instant,
    /// In a cluster: this shard's links to the other nodes.
    links: Option<crate::cluster::net::Links>,
    /// This shard itself, for the writer tasks [`Shard::wake`] starts.
    me: std::rc::Weak<Shard>,
    /// The connections whose writer parked since the last retire tick
    /// ([`Shard::retire_parked`]); each listed once ([`ConnState::listed`]).
    parked: RefCell<Vec<ConnId>>,
    /// Wakes the retire task when a writer parks and none was listed.
    pub parked_any: Notify,
}

/// Whether a connection's writer task runs.
///
/// A writer that has written everything parks, and the next output wakes it:
/// on a busy shard, output comes again within microseconds, and starting a
/// task per batch cost a tenth of saturated throughput. A tick
/// ([`Shard::retire_parked`]) ends the writers it finds parked two ticks in a
/// row, so an idle connection keeps none (its future is hundreds of bytes),
/// and a storm of new connections does not keep a writer for each of them
/// for long (the memory of the tasks, freed, still counts in the RSS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// No writer task: the next output starts one.
    Idle,
    Running,
    /// Waiting for output since the last tick at most.
    Parked,
    /// Found parked by a tick: the next tick retires it.
    ParkedSwept,
    /// Told to end, unless output came first.
    Retiring,
    /// The connection's last write is done: no writer starts again.
    Closed,
}

/// What a connection's reader and writer share. Every connection holds one,
/// idle or not: its fields are packed (issue 15, memory per idle connection).
struct ConnState {
    socket: Socket,
    /// Output is queued for the connection (or it must close): the writer
    /// takes it before it ends.
    has_output: Cell<bool>,
    writer: Cell<Writer>,
    /// Listed in [`Shard::parked`].
    listed: Cell<bool>,
    /// A writer stopped: the reader, ending, waits for the one running.
    stopped: Notify,
    version: Version,
    /// The client's Maximum Packet Size (MQTT 5), past which nothing is sent
    /// (never zero: the decoder refuses that).
    max_packet_size: Option<NonZeroU32>,
    /// The topic aliases given to the client, kept between writers; `None`
    /// for the clients that take none (most: MQTT 3, and 5 without a Topic
    /// Alias Maximum), which then keep no map.
    /// Taken while a writer encodes (a `Cell`: 8 bytes less than a `RefCell`).
    aliases: Cell<Option<Box<OutboundAliases>>>,
    /// Why the broker closed the connection (takeover, shutdown), once it has.
    closed_by_broker: Cell<Option<ReasonCode>>,
    /// Set when the reader has ended; the writer then flushes and closes.
    reader_done: Cell<bool>,
    /// The reason to send in DISCONNECT when the reader ends on an error.
    reader_error: Cell<Option<ReasonCode>>,
    /// Interrupts the writer when the connection must close (the broker closed
    /// it, or the reader ended) while a write may be stuck on a client that
    /// does not read.
    interrupt: Notify,
    /// Wakes the readers of publishers waiting for this connection's output to
    /// drain, one per output the writer takes (each passes the turn on).
    drained: WakeQueue,
    /// When the write in progress started, if one is: a write stuck for
    /// `send-timeout` closes the connection ([`Shard::close_stuck`]).
    writing_since: Cell<Stamp>,
    /// The keepalive bound on one read (1.5 times the keepalive), if any.
    idle_timeout: Timeout,
    /// Since when the reader has waited for input, if it is waiting (asleep):
    /// a wait past `idle_timeout` ends the connection
    /// ([`Shard::expire_idle`]). Not a timeout on each wait: that would arm
    /// and cancel a timer each time.
    reading_since: Cell<Stamp>,
}

impl std::fmt::Debug for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnState")
            .field("socket", &self.socket)
            .field("writer", &self.writer.get())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Shard {
    pub fn new(
        id: usize,
        nr_shards: usize,
        broker: Broker,
        max_packet_size: usize,
        connect_timeout: Duration,
        shutdown: shards::Shutdown,
        metrics: Arc<Metrics>,
    ) -> io::Result<Shard> {
        Ok(Shard {
            id,
            nr_shards,
            broker: RefCell::new(broker),
            writers: RefCell::new(HashMap::default()),
            next_conn: Cell::new(0),
            mesh_out: RefCell::new(Vec::new()),
            flush: Notify::default(),
            mesh_drained: WakeQueue::default(),
            credit: WakeQueue::default(),
            handovers: WakeQueue::default(),
            tracker: shards::TaskTracker::new(),
            max_packet_size,
            connect_timeout,
            shutdown,
            metrics,
            read_scratch: read_scratch(),
            readiness: Rc::new(Readiness::new()?),
            store: None,
            loading: Cell::new(false),
            hold_until: Instant::now(),
            links: None,
            me: std::rc::Weak::new(),
            parked: RefCell::new(Vec::new()),
            parked_any: Notify::default(),
        })
    }

    /// The shard in its `Rc`, as its tasks share it.
    pub fn into_rc(mut self) -> Rc<Shard> {
        Rc::new_cyclic(|me| {
            self.me = me.clone();
            self
        })
    }

    /// Runs as a node of a cluster, with links to the other nodes.
    pub fn with_links(mut self, links: Option<crate::cluster::net::Links>) -> Shard {
        self.links = links;
        self
    }

    pub fn links(&self) -> Option<&crate::cluster::net::Links> {
        self.links.as_ref()
    }

    pub fn store(&self) -> Option<&RedisStore> {
        self.store.as_ref()
    }

    /// Runs with `store`: the broker's changes go there, and persistent
    /// sessions are claimed in it on CONNECT.
    pub fn with_store(mut self, store: Option<RedisStore>) -> Shard {
        self.loading.set(store.is_some());
        self.hold_until = Instant::now() + LOAD_HOLD;
        self.store = store;
        self
    }

    /// Holds a PUBLISH or SUBSCRIBE while the node loads, until
    /// [`LOAD_HOLD`] after the start at most, and not while Redis is down:
    /// loading waits for it then, and clients should not.
    async fn until_loaded(&self) {
        let until = self.hold_until;
        let redis_down = || {
            self.store
                .as_ref()
                .is_some_and(|s| matches!(s.status(), Status::Down(_)))
        };
        let loading = || !self.broker.borrow().all_loaded();
        while loading() && Instant::now() < until && !redis_down() {
            if self.shutdown.sleep(Duration::from_millis(10)).await {
                return;
            }
        }
        if !loading() || Instant::now() >= until {
            self.loading.set(false);
        }
    }

    /// Wakes the writers the broker queued output for, and the mesh flusher if
    /// the broker has messages for other shards. Call after every broker change.
    pub fn wake(&self) {
        let mut broker = self.broker.borrow_mut();
        let writers = self.writers.borrow();
        for conn in broker.drain_dirty() {
            if let Some(state) = writers.get(&conn) {
                self.start_writer(conn, state);
            }
        }
        for conn in broker.take_closing() {
            if let Some(state) = writers.get(&conn) {
                state.interrupt.notify();
                self.start_writer(conn, state);
            }
        }
        if broker.take_credited() {
            self.credit.wake_all();
        }
        if broker.take_handovers_ended() {
            self.handovers.wake_all();
        }
        broker.flush_credits();
        // The acknowledgements held since the last wake wait for this write
        // and for a barrier behind their messages to other shards.
        let write = self.store.as_ref().map(|_| {
            let ticket = broker.seal_acks();
            let mut barriers = broker.take_barriers();
            barriers.extend(ticket.map(|t| (self.id, t)));
            (broker.take_store_ops(), barriers)
        });
        // A barrier that cannot go to its node fails its batch at once.
        let mut unsent = Vec::new();
        for (node, message) in broker.to_nodes.drain(..) {
            let barrier = match message {
                crate::cluster::frame::Message::Barrier { ticket, .. } => Some(ticket),
                _ => None,
            };
            let sent = self
                .links
                .as_ref()
                .is_some_and(|l| l.send(&node, message, &self.metrics.cluster));
            if let (false, Some(ticket)) = (sent, barrier) {
                debug!(shard = self.id, %node, ticket, "a barrier could not go to its node");
                unsent.push((node, ticket));
            }
        }
        if !broker.forwards.is_empty() {
            let mut out = self.mesh_out.borrow_mut();
            out.extend(
                broker
                    .forwards
                    .drain(..)
                    .map(|(to, f)| (to, ShardMsg::Forward(f))),
            );
            self.flush.notify();
        }
        drop((broker, writers));
        // Not under the broker's borrow: an answer may come back at once.
        if let (Some(store), Some((ops, barriers))) = (&self.store, write) {
            if !ops.is_empty() || !barriers.is_empty() {
                store.write(ops, barriers);
            }
        }
        if !unsent.is_empty() {
            let mut broker = self.broker.borrow_mut();
            for (node, ticket) in unsent {
                broker.node_stored(&node, ticket, false);
            }
            drop(broker);
            self.wake();
        }
    }

    /// Tells `conn`'s writer there is output, and starts one if none runs.
    fn start_writer(&self, conn: ConnId, state: &Rc<ConnState>) {
        state.has_output.set(true);
        match state.writer.get() {
            Writer::Idle => {}
            Writer::Parked | Writer::ParkedSwept | Writer::Retiring => {
                return state.interrupt.wake_waiter()
            }
            Writer::Running | Writer::Closed => return,
        }
        let Some(shard) = self.me.upgrade() else {
            return;
        };
        // Scheduled, not run at once as `spawn_local` would: the caller may
        // hold the broker.
        let queue = glommio::executor().current_task_queue();
        match glommio::spawn_local_into(write_loop(shard, conn, state.clone()), queue) {
            Ok(task) => {
                state.writer.set(Writer::Running);
                task.detach();
            }
            Err(e) => warn!(shard = self.id, conn, error = %e, "no writer task"),
        }
    }

    /// Closes the connections whose write has been stuck for `send-timeout`:
    /// clients that stopped reading while their writer holds a large output
    /// (the broker itself closes those that stay congested without progress).
    /// Call about once a second.
    pub fn close_stuck(&self, now: Instant) {
        let Some(timeout) = self.broker.borrow().settings().send_timeout else {
            return;
        };
        let stuck: Vec<ConnId> = self
            .writers
            .borrow()
            .iter()
            .filter(|(_, state)| {
                state
                    .writing_since
                    .get()
                    .age(now)
                    .is_some_and(|age| age >= timeout)
            })
            .map(|(&conn, _)| conn)
            .collect();
        if stuck.is_empty() {
            return;
        }
        let mut broker = self.broker.borrow_mut();
        for conn in stuck {
            debug!(
                shard = self.id,
                conn, "send timeout: the client reads nothing"
            );
            broker.close_connection(conn, ReasonCode::QuotaExceeded);
        }
        drop(broker);
        self.wake();
    }

    /// The store answered a barrier ([`crate::broker::Broker::seal_acks`]):
    /// this shard's own releases its acknowledgements; another shard's is
    /// told.
    pub fn stored(&self, shard: usize, ticket: u64, stored: bool) {
        if !stored {
            warn!(
                shard = self.id,
                "messages could not be stored: their publishers are disconnected unacknowledged"
            );
        }
        let mut broker = self.broker.borrow_mut();
        if shard == self.id {
            broker.stored(ticket, stored);
        } else {
            broker
                .forwards
                .push((shard, Forward::Stored(ticket, stored)));
        }
        drop(broker);
        self.wake();
    }

    /// Ends the connections whose reader has waited on one read for longer
    /// than their keepalive allows (1.5 times the keepalive, [MQTT-3.1.2-24]):
    /// the reading side of the socket is shut, so the read ends, and the
    /// reader reports the keepalive timeout (MQTT 5: DISCONNECT 0x8D). Call a
    /// few times a second.
    pub fn expire_idle(&self, now: Instant) {
        for state in self.writers.borrow().values() {
            let (Some(timeout), Some(waited)) =
                (state.idle_timeout.get(), state.reading_since.get().age(now))
            else {
                continue;
            };
            if waited >= timeout && state.reader_error.get().is_none() {
                state.reader_error.set(Some(ReasonCode::KeepAliveTimeout));
                state.socket.shutdown_read();
            }
        }
    }

    /// Whether a writer is listed as parked, for the retire task.
    pub fn has_parked(&self) -> bool {
        !self.parked.borrow().is_empty()
    }

    /// Ends the writers parked since the tick before this one: an idle
    /// connection keeps no writer task. Only the writers that parked since
    /// are looked at, not every connection.
    pub fn retire_parked(&self) {
        let listed = self.parked.take();
        let writers = self.writers.borrow();
        let mut kept = self.parked.borrow_mut();
        for conn in listed {
            let Some(state) = writers.get(&conn) else {
                continue;
            };
            match state.writer.get() {
                Writer::Parked => {
                    state.writer.set(Writer::ParkedSwept);
                    kept.push(conn);
                }
                Writer::ParkedSwept => {
                    state.writer.set(Writer::Retiring);
                    state.listed.set(false);
                    state.interrupt.wake_waiter();
                }
                // Running: listed again when it parks.
                _ => state.listed.set(false),
            }
        }
    }

    /// Wakes every writer (shutdown).
    pub fn wake_all(&self) {
        for (&conn, state) in self.writers.borrow().iter() {
            self.start_writer(conn, state);
        }
    }
}

/// Serves one connection until it ends. `handoff` is set for a connection
/// another shard accepted and passed here with its CONNECT already read.
pub fn serve(
    shard: Rc<Shard>,
    socket: io::Result<Socket>,
    handoff: Option<(BytesMut, Box<Connect>)>,
) -> impl Future<Output = ()> {
    let token = shard.tracker.token();
    // The accept phase is boxed and the session's setup is not async: the
    // connection's task then keeps only what a live session needs, not the
    // CONNECT or the hand-off (idle memory per connection).
    let accept = socket.map(|socket| Box::pin(accept(shard.clone(), socket, handoff)));
    async move {
        let accept = match accept {
            Ok(accept) => accept,
            Err(e) => return debug!(shard = shard.id, error = %e, "connection not served"),
        };
        // Each step's result is bound by a `let`, so none is kept in the task
        // while the session runs.
        let accepted = match accept.await {
            Ok(Some(accepted)) => accepted,
            Ok(None) => return,
            Err(e) => return debug!(shard = shard.id, error = %e, "connection ended"),
        };
        let live = start(&shard, accepted, token);
        run(shard, live, None).await;
    }
}

/// A connection whose CONNECT the broker accepted.
struct Accepted {
    socket: Socket,
    rbuf: BytesMut,
    client: Client,
    /// The largest packet the client accepts (MQTT 5); larger ones are not sent.
    max_packet_size: Option<u32>,
    /// How many topic aliases the client accepts from the server (MQTT 5).
    topic_alias_maximum: u16,
    /// The `max-connections` slot, held until the connection ends.
    _admission: Admission,
}

/// Reads the CONNECT (unless handed off), passes the connection to the shard
/// that owns its session, checks `max-connections`, has slow authentication
/// work done off the shard and asks the broker.
/// `None` when the connection ends here.
async fn accept(
    shard: Rc<Shard>,
    socket: Socket,
    handoff: Option<(BytesMut, Box<Connect>)>,
) -> io::Result<Option<Accepted>> {
    let (rbuf, connect) = match handoff {
        Some(h) => h,
        None => match read_connect(&shard, &socket).await? {
            Some(c) => c,
            None => return Ok(None),
        },
    };
    if !connect.client_id.is_empty() {
        let owner = shards::shard_for(connect.client_id.as_bytes(), shard.nr_shards);
        if owner != shard.id {
            let fd = socket.dup()?;
            drop(socket);
            let buffered = rbuf.freeze();
            shard.mesh_out.borrow_mut().push((
                owner,
                ShardMsg::Handoff {
                    fd,
                    buffered,
                    connect,
                },
            ));
            shard.flush.notify();
            return Ok(None);
        }
    }

    // `[mqtt] max-connections`: the slot is held until the connection ends.
    let admission = shard.metrics.admit(shard.id, || {
        shard.broker.borrow().is_connected(&connect.client_id)
    });
    let Some(admission) = admission else {
        refuse(&shard, &socket, ReasonCode::QuotaExceeded, connect.version).await;
        return Ok(None);
    };

    // A password hash or an asymmetric signature runs on the executor's
    // blocking thread while the shard serves its other clients; the broker
    // then finds the outcome ready. No borrow is held across the await.
    // glommio gives a pinned executor one such thread, on the same CPU: the
    // shard's checks queue there one at a time (one argon2 buffer in memory)
    // and use the shard's own core, not another shard's.
    let preparation = shard.broker.borrow().prepare_auth(&connect);
    if let Some(preparation) = preparation {
        let prepared = glommio::executor()
            .spawn_blocking(move || preparation.run())
            .await;
        if shard.shutdown.is_shutdown() {
            // The broker may have closed every session already: one made now
            // would keep shutdown waiting.
            refuse(
                &shard,
                &socket,
                ReasonCode::ServerUnavailable,
                connect.version,
            )
            .await;
            return Ok(None);
        }
        shard.broker.borrow().absorb_auth(prepared);
    }

    // A persistent session is claimed in the store first: a new generation
    // fences whoever had it, and a session this node does not hold (it
    // restarted) comes back with its subscriptions. In a cluster every
    // client id is claimed, for one owner across the nodes.
    let cluster = shard.links().is_some() && !connect.client_id.is_empty();
    let claim = match (&shard.store, persistent(&connect) || cluster) {
        (Some(store), true) => {
            if !shard.broker.borrow_mut().begin_claim(&connect.client_id) {
                refuse(&shard, &socket, ReasonCode::ServerBusy, connect.version).await;
                return Ok(None);
            }
            let claim = claim(&shard, store, &connect).await;
            shard.broker.borrow_mut().end_claim(&connect.client_id);
            match claim {
                Ok(claim) => Some(claim),
                Err(reason) => {
                    refuse(&shard, &socket, reason, connect.version).await;
                    return Ok(None);
                }
            }
        }
        _ => None,
    };
    if claim.is_some() && shard.shutdown.is_shutdown() {
        // As after the authentication above: a session made now would keep
        // shutdown waiting.
        let reason = ReasonCode::ServerUnavailable;
        refuse(&shard, &socket, reason, connect.version).await;
        return Ok(None);
    }

    let conn = shard.next_conn.get();
    shard.next_conn.set(conn + 1);
    let now = Instant::now();
    let previous = claim.as_ref().and_then(|c| c.previous.clone());
    let accepted = {
        let mut broker = shard.broker.borrow_mut();
        let won = claim.is_none_or(|claim| broker.claimed(&connect.client_id, claim, now));
        match won {
            true => broker
                .connect_from(conn, &connect, socket.peer_addr(), now)
                .inspect(|_| broker.deliver_early(&connect.client_id, now)),
            false => Err(ReasonCode::ServerBusy),
        }
    };
    if let (Ok(_), Some(store)) = (&accepted, &shard.store) {
        release_previous(&shard, store, &connect.client_id, previous.as_deref());
    }
    match accepted {
        Ok(client) => Ok(Some(Accepted {
            socket,
            rbuf,
            client,
            max_packet_size: connect.properties.maximum_packet_size,
            topic_alias_maximum: connect.properties.topic_alias_maximum.unwrap_or(0),
            _admission: admission,
        })),
        Err(reason) => {
            refuse(&shard, &socket, reason, connect.version).await;
            Ok(None)
        }
    }
}

/// Claims `connect`'s client id in the store and, in a cluster, waits for
/// the node that held it to let go ([`crate::broker::AfterClaim`]).
async fn claim(
    shard: &Shard,
    store: &RedisStore,
    connect: &Connect,
) -> Result<crate::store::Claim, ReasonCode> {
    let client_id = &connect.client_id;
    // Without its lease the node is dead to the others, which may adopt
    // what it would claim now; it keeps the clients it has.
    if shard.links().is_some() && !shard.metrics.cluster.has_lease() {
        return Err(ReasonCode::ServerUnavailable);
    }
    let claim = match store
        .claim(client_id, connect.clean_start, Instant::now())
        .await
    {
        Ok(claim) => claim,
        Err(e) => {
            warn!(shard = shard.id, client = %client_id, error = %e,
                "CONNECT refused: its session needs the store, which failed");
            return Err(ReasonCode::ServerUnavailable);
        }
    };
    let Some(links) = shard.links() else {
        return Ok(claim);
    };
    let mut claim = claim;
    let next = {
        let mut broker = shard.broker.borrow_mut();
        let now = Instant::now();
        let next = broker.after_claim(
            client_id,
            claim.generation,
            claim.previous.as_deref(),
            links.me(),
            &links.peer_lives(),
            now,
        );
        broker.claim_replied(client_id, &mut claim, now);
        next
    };
    shard.wake();
    match next {
        AfterClaim::Accept => Ok(claim),
        AfterClaim::Refuse(reason) => Err(reason),
        AfterClaim::Wait => {
            let answered = futures_lite::future::or(
                async {
                    shard
                        .handovers
                        .wait_until(|| !shard.broker.borrow().awaits_handover(client_id))
                        .await;
                    true
                },
                async {
                    glommio::timer::sleep(HANDOVER_TIMEOUT).await;
                    false
                },
            )
            .await;
            if answered {
                Ok(claim)
            } else {
                warn!(shard = shard.id, client = %client_id, previous = ?claim.previous,
                    "CONNECT refused: the node that held the session did not let go in time");
                let now = Instant::now();
                let previous = claim.previous.clone();
                shard
                    .broker
                    .borrow_mut()
                    .claim_refused(client_id, claim, now);
                release_previous(shard, store, client_id, previous.as_deref());
                Err(ReasonCode::ServerUnavailable)
            }
        }
    }
}

/// In a cluster, once a session claimed from another node is held here:
/// its id leaves that node's sessions set when this node's routes for it
/// are written. If that node is dead, an empty set lets its routes go
/// ([`crate::store::RedisStore::reap_sessions`]); before then, a publish
/// elsewhere could find neither its routes nor this node's.
fn release_previous(
    shard: &Shard,
    store: &RedisStore,
    client_id: &ByteString,
    previous: Option<&str>,
) {
    let Some(links) = shard.links() else {
        return;
    };
    let Some(previous) = previous.and_then(crate::store::Owner::from_field) else {
        return;
    };
    if previous.node == links.me().node {
        return;
    }
    // The session's route writes go to the store before the removal. Not
    // through `Shard::wake`: the writer of the connection just accepted is
    // not registered yet, and would miss the wake-up for its CONNACK.
    let ops = shard.broker.borrow_mut().take_store_ops();
    if !ops.is_empty() {
        store.write(ops, Vec::new());
    }
    let (store, client_id) = (store.clone(), client_id.clone());
    glommio::spawn_local(async move {
        store.flush().await;
        if let Err(e) = store.release(&previous, &client_id).await {
            debug!(error = %e, "leaving a session in its old node's set");
        }
    })
    .detach();
}

/// Whether the session `connect` asks for outlives its connection, and so
/// lives in the store: MQTT 3 clean session 0, MQTT 5 a session expiry. An
/// empty client id gets a clean session with an assigned id.
fn persistent(connect: &Connect) -> bool {
    let expiry = match connect.version {
        Version::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
        _ => u32::from(!connect.clean_start),
    };
    !connect.client_id.is_empty() && expiry > 0
}

/// A connection being served: what its reader keeps, and what a sleeping
/// reader leaves for the next ([`sleep`]).
struct Live {
    state: Rc<ConnState>,
    rbuf: BytesMut,
    /// Inline: a sleeping reader is boxed already, and a box of its own cost
    /// an allocation's overhead per connection.
    client: Client,
    /// The `max-connections` slot, held until the connection ends.
    _admission: Admission,
    /// Counts the connection, asleep or not, until it ends: shutdown waits
    /// for it.
    _token: shards::TaskToken,
}

/// Sets an accepted connection up: its shared state, and a writer for the
/// CONNACK.
fn start(shard: &Rc<Shard>, accepted: Accepted, token: shards::TaskToken) -> Live {
    let Accepted {
        socket,
        rbuf,
        client,
        max_packet_size,
        topic_alias_maximum,
        _admission,
    } = accepted;
    let state = Rc::new(ConnState {
        socket,
        has_output: Cell::new(false),
        writer: Cell::new(Writer::Idle),
        listed: Cell::new(false),
        stopped: Notify::default(),
        version: client.version,
        max_packet_size: max_packet_size.and_then(NonZeroU32::new),
        aliases: Cell::new(
            (topic_alias_maximum > 0).then(|| Box::new(OutboundAliases::new(topic_alias_maximum))),
        ),
        closed_by_broker: Cell::new(None),
        reader_done: Cell::new(false),
        reader_error: Cell::new(None),
        interrupt: Notify::default(),
        drained: WakeQueue::default(),
        writing_since: Cell::new(Stamp::NONE),
        idle_timeout: client.idle_timeout,
        reading_since: Cell::new(Stamp::NONE),
    });
    shard
        .writers
        .borrow_mut()
        .insert(client.conn, state.clone());
    shard.wake();
    Live {
        state,
        rbuf,
        client,
        _admission,
        _token: token,
    }
}

/// The reader's task: reads and handles input, after `first` if set, until
/// the socket is drained (the reader sleeps) or the connection ends.
async fn run(shard: Rc<Shard>, mut live: Live, first: Option<Wait>) {
    let readers = &shard.metrics.shard(shard.id).readers;
    readers.fetch_add(1, Relaxed);
    let end = read_loop(&shard, &mut live, first).await;
    readers.fetch_sub(1, Relaxed);
    match end {
        End::Asleep => sleep(shard, live),
        // Boxed: inline, it would hold a second copy of `live` in every
        // reader's task.
        end => Box::pin(finish(&shard, live, end)).await,
    }
}

/// Starts a reader task for `live`, after `first` if set.
fn spawn_reader(shard: Rc<Shard>, live: Live, first: Option<Wait>) {
    glommio::spawn_local(run(shard, live, first)).detach();
}

/// The connection has ended: tells the broker and waits for the writer to
/// finish.
async fn finish(shard: &Rc<Shard>, live: Live, end: End) {
    // The rest of `live` (the admission, the token) is kept to the end.
    let Live {
        state, mut client, ..
    } = live;
    let conn = client.conn;
    // Why the connection ended, as on_client_offline reports it; the broker
    // also decides from it whether the will goes out.
    let code = match end {
        End::Closed(Closed::Normal) => Some(ReasonCode::Success),
        // Any other DISCONNECT from the client: its will goes out, and
        // on_client_offline says the client disconnected.
        End::Closed(Closed::WithWill(_)) => Some(ReasonCode::DisconnectWithWillMessage),
        End::ByBroker => state.closed_by_broker.get(),
        // No reason: the peer closed the TCP connection or it failed.
        End::Abnormal | End::Asleep => state.reader_error.get(),
    };
    let will = client.will.take();
    shard.broker.borrow_mut().disconnected_because(
        &client,
        will,
        OfflineReason::from_reason_code(code),
        Instant::now(),
    );
    state.reader_done.set(true);
    state.has_output.set(true);
    state.interrupt.notify();
    shard.wake();
    // The writer's last pass (the DISCONNECT, the linger): the one running
    // finishes it, or this task runs it.
    loop {
        match state.writer.get() {
            Writer::Closed => break,
            Writer::Idle => {
                state.writer.set(Writer::Running);
                // Boxed: kept inline, it would grow every connection's task.
                Box::pin(write_loop(shard.clone(), conn, state.clone())).await;
            }
            // A parked writer wakes at the interrupt and closes.
            _ => state.stopped.notified().await,
        }
    }
    shard.writers.borrow_mut().remove(&conn);
    debug!(shard = shard.id, fd = state.socket.raw_fd(), client = %client.client_id(), ?end, "disconnected");
}

/// A sleeping reader: what it keeps, in its socket's slot of the epoll set
/// until input comes ([`Asleep::resume`]). A [`Live`] without its read
/// buffer, which a sleeping reader seldom needs: 32 bytes less per idle
/// connection, and no buffer kept from the last packet.
struct Asleep {
    shard: Rc<Shard>,
    state: Rc<ConnState>,
    client: Client,
    /// The start of a packet whose rest has not come yet, if any.
    partial: Option<Box<BytesMut>>,
    _admission: Admission,
    _token: shards::TaskToken,
}

impl Asleep {
    fn new(shard: Rc<Shard>, live: Live) -> Box<Asleep> {
        let Live {
            state,
            rbuf,
            client,
            _admission,
            _token,
        } = live;
        Box::new(Asleep {
            shard,
            state,
            client,
            partial: (!rbuf.is_empty()).then(|| Box::new(rbuf)),
            _admission,
            _token,
        })
    }

    fn wake(self) -> (Rc<Shard>, Live) {
        let Asleep {
            shard,
            state,
            client,
            partial,
            _admission,
            _token,
        } = self;
        let rbuf = partial.map_or_else(BytesMut::new, |partial| *partial);
        let live = Live {
            state,
            rbuf,
            client,
            _admission,
            _token,
        };
        (shard, live)
    }
}

/// Puts a reader whose socket is drained to sleep. `reading_since` stays set
/// meanwhile, so the keepalive still ends a sleeping connection.
fn sleep(shard: Rc<Shard>, live: Live) {
    let state = live.state.clone();
    if state.idle_timeout.get().is_some() && state.reading_since.get() == Stamp::NONE {
        state.reading_since.set(Stamp::at(Instant::now()));
    }
    // Input came since the socket was found drained: read on in a task.
    if let Err(asleep) = state.socket.sleep(Asleep::new(shard, live)) {
        let (shard, live) = asleep.wake();
        spawn_reader(shard, live, None);
    }
}

impl Resume for Asleep {
    /// Input came (or the socket closed): one read, handled here, and back
    /// to sleep; a task reads on only if the connection must wait, has more
    /// input, or ends.
    fn resume(self: Box<Self>) {
        let (shard, mut live) = self.wake();
        let state = &live.state;
        // What the reader task waits for before it reads.
        if shard.mesh_out.borrow().len() >= MESH_BACKLOG
            || shard.links().is_some_and(|links| links.backlogged())
        {
            state.reading_since.set(Stamp::NONE);
            return spawn_reader(shard, live, None);
        }
        let read = state.socket.try_read(&mut live.rbuf, &shard.read_scratch);
        if read.is_none() {
            // A spurious edge: still waiting, since the same time.
            return sleep(shard, live);
        }
        state.reading_since.set(Stamp::NONE);
        if !matches!(read, Some(Ok(n)) if n > 0) {
            // The end of the stream, or an error: the task ends the
            // connection.
            return spawn_reader(shard, live, None);
        }
        let Live {
            state,
            rbuf,
            client,
            ..
        } = &mut live;
        match handle_buffered(&shard, rbuf, client, state) {
            Ok(None) => sleep(shard, live),
            Ok(Some(wait)) => spawn_reader(shard, live, Some(wait)),
            Err(end) => {
                glommio::spawn_local(async move { finish(&shard, live, end).await }).detach();
            }
        }
    }
}

/// Sends the CONNACK refusing a connection with `reason`, within the last-write
/// bound, so that the client reads it ([`Socket::close_with`]); the connection
/// closes either way.
async fn refuse(shard: &Shard, socket: &Socket, reason: ReasonCode, version: Version) {
    let mut wbuf = BytesMut::new();
    if encode(&Packet::ConnAck(refusal(reason)), version, &mut wbuf).is_ok() {
        socket.close_with(&wbuf, &shard.read_scratch).await;
    }
}

/// Reads until the first packet, which must be CONNECT [MQTT-3.1.0-1], within
/// the connect timeout. `None` when the connection should just be closed.
async fn read_connect(
    shard: &Shard,
    socket: &Socket,
) -> io::Result<Option<(BytesMut, Box<Connect>)>> {
    // One deadline for the whole CONNECT, not a timeout per read: a client
    // dripping its CONNECT a byte at a time must not keep the socket.
    let deadline = Instant::now() + shard.connect_timeout;
    let mut rbuf = BytesMut::new();
    loop {
        // Any version will do: CONNECT carries its own.
        match decode(&mut rbuf, Version::V5, shard.max_packet_size) {
            Ok(Some(Packet::Connect(connect))) => return Ok(Some((rbuf, connect))),
            Ok(Some(_)) => return Ok(None),
            Ok(None) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                let read = futures_lite::future::or(
                    socket.read_within(left, &mut rbuf, &shard.read_scratch),
                    async {
                        shard.shutdown.recv().await;
                        Ok(0)
                    },
                );
                if read.await? == 0 {
                    return Ok(None);
                }
            }
            Err(DecodeError::UnsupportedProtocolLevel(level)) => {
                // CONNACK "unacceptable protocol version" in the oldest form,
                // which every client can read [MQTT-3.1.2-2].
                debug!(level, "unsupported protocol level");
                socket
                    .close_with(&[0x20, 0x02, 0x00, 0x01], &shard.read_scratch)
                    .await;
                return Ok(None);
            }
            Err(e) => {
                debug!(error = %e, "malformed CONNECT");
                return Ok(None);
            }
        }
    }
}

/// How the reader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client sent DISCONNECT.
    Closed(Closed),
    /// The broker closed it (takeover, send-timeout, shutdown, a failed write).
    ByBroker,
    /// Network failure, keepalive timeout or protocol error.
    Abnormal,
    /// Not an end: the reader is to sleep ([`sleep`]).
    Asleep,
}

/// Whether the next packet in `rbuf` is a PUBLISH (type 3) or a SUBSCRIBE
/// (type 8), which wait while the node loads ([`Shard::until_loaded`]).
fn held_while_loading(rbuf: &[u8]) -> bool {
    matches!(rbuf.first().map(|b| b >> 4), Some(3 | 8))
}

/// Handles the packets in `rbuf` until it holds no whole one, or until one
/// makes the client wait ([`Wait`]); the broker's output goes out. Err: the
/// connection ends.
fn handle_buffered(
    shard: &Shard,
    rbuf: &mut BytesMut,
    client: &mut Client,
    state: &ConnState,
) -> Result<Option<Wait>, End> {
    // What this batch found the client must wait for before more is read.
    let mut wait = None;
    while wait.is_none() {
        // Looked up by the packet type in the first byte, before decoding: a
        // decoded packet kept across the wait would live in every
        // connection's task.
        if shard.loading.get() && held_while_loading(rbuf) {
            wait = Some(Wait::Loading);
            break;
        }
        match decode(rbuf, client.version, shard.max_packet_size) {
            Ok(Some(packet)) => {
                let mut broker = shard.broker.borrow_mut();
                match broker.handle(client, packet, Instant::now()) {
                    Ok(None) => {
                        wait = broker.take_congested().map(Wait::Recipient);
                        if wait.is_none() && broker.out_of_credit(client.conn) {
                            wait = Some(Wait::Credit);
                        }
                    }
                    Ok(Some(closed)) => {
                        drop(broker);
                        shard.wake();
                        return Err(End::Closed(closed));
                    }
                    Err(reason) => {
                        drop(broker);
                        shard.wake();
                        state.reader_error.set(Some(reason));
                        return Err(End::Abnormal);
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                debug!(client = %client.client_id(), error = %e, "protocol error");
                shard.wake();
                state.reader_error.set(Some(e.reason_code()));
                return Err(End::Abnormal);
            }
        }
    }
    shard.wake();
    if state.closed_by_broker.get().is_some() {
        return Err(End::ByBroker);
    }
    Ok(wait)
}

/// Handles input (after `wait`, if set) until the socket is drained
/// ([`End::Asleep`]) or the connection ends.
async fn read_loop(shard: &Shard, live: &mut Live, mut wait: Option<Wait>) -> End {
    let Live {
        state,
        rbuf,
        client,
        ..
    } = live;
    loop {
        // Boxed: rare, and their timers would otherwise live in every
        // reader's task.
        match wait.take() {
            Some(Wait::Recipient((conn, recipient))) => {
                Box::pin(wait_for_drain(shard, conn, &recipient)).await
            }
            Some(Wait::Credit) => Box::pin(wait_for_credit(shard, client.conn)).await,
            Some(Wait::Loading) => Box::pin(shard.until_loaded()).await,
            None => {}
        }
        // What is buffered first: the packets a wait held back, or that came
        // with the CONNECT.
        match handle_buffered(shard, rbuf, client, state) {
            Ok(None) => {}
            Ok(next) => {
                wait = next;
                continue;
            }
            Err(end) => return end,
        }
        // A client that always has more to send must not keep the
        // shard's writers (and other readers) from running: glommio only
        // switches tasks at an await that is pending.
        glommio::yield_if_needed().await;
        // Back-pressure from the mesh: the send task takes the whole
        // backlog each time the previous batch is accepted, so this waits
        // one flush at most.
        shard
            .mesh_drained
            .wait_until(|| shard.mesh_out.borrow().len() < MESH_BACKLOG)
            .await;
        // And from the links to other nodes.
        if let Some(links) = shard.links() {
            links.until_drained().await;
        }
        match state.socket.try_read(rbuf, &shard.read_scratch) {
            None => return End::Asleep,
            Some(Ok(0)) => {
                return if state.closed_by_broker.get().is_some() {
                    End::ByBroker
                } else {
                    End::Abnormal
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) if state.closed_by_broker.get().is_some() => return End::ByBroker,
            Some(Err(_)) => return End::Abnormal,
        }
    }
}

/// What a reader waits for before it reads more: [`crate::broker`]'s flow
/// control, or the node's loading.
enum Wait {
    /// A recipient on this shard, connected as this connection, to drain.
    Recipient((ConnId, ByteString)),
    /// Credits from other shards for publishes this connection forwarded.
    Credit,
    /// The node to load what a past life left in the store, for a PUBLISH
    /// or SUBSCRIBE ([`Shard::until_loaded`]).
    Loading,
}

/// Waits until `recipient` (connected as `conn`) is no longer congested, or
/// has stalled (made no progress for `stall-timeout`): a subscriber that
/// reads, however slowly, sets its publishers' pace; one that stopped
/// reading holds them up for at most `stall-timeout`.
async fn wait_for_drain(shard: &Shard, conn: ConnId, recipient: &ByteString) {
    let state = shard.writers.borrow().get(&conn).cloned();
    let Some(state) = state else {
        return;
    };
    let stall = shard.broker.borrow().settings().stall;
    let ready = || {
        let broker = shard.broker.borrow();
        !broker.is_congested(conn, recipient) || broker.is_stalled(conn, Instant::now())
    };
    while !ready() && !state.reader_done.get() && state.closed_by_broker.get().is_none() {
        let drained = state.drained.wait_until(ready);
        futures_lite::future::or(drained, glommio::timer::sleep(stall)).await;
    }
}

/// Waits until other shards credit `conn` back some of the publishes it
/// forwarded, at most `stall-timeout`: they hold credits only for recipients
/// that make progress, and give back those of a stalled one within a tick.
async fn wait_for_credit(shard: &Shard, conn: ConnId) {
    let stall = shard.broker.borrow().settings().stall;
    let credited = shard
        .credit
        .wait_until(|| !shard.broker.borrow().out_of_credit(conn));
    futures_lite::future::or(credited, glommio::timer::sleep(stall)).await;
}

/// The writer: writes what the broker queued for `conn`, parking while
/// nothing is left, until the retire tick ends it ([`Writer::Idle`]) or the
/// connection's last write is done ([`Writer::Closed`]). Whoever starts it
/// sets [`Writer::Running`].
async fn write_loop(shard: Rc<Shard>, conn: ConnId, state: Rc<ConnState>) {
    let gauge = &shard.metrics.shard(shard.id).writers;
    gauge.fetch_add(1, Relaxed);
    loop {
        write_until_idle(&shard, conn, &state).await;
        if state.writer.get() != Writer::Running || !park(&shard, conn, &state).await {
            break;
        }
    }
    // A write polls the interrupt, which keeps this task's waker: without
    // this, every connection would keep its ended writer's memory.
    state.interrupt.clear_waiter();
    gauge.fetch_sub(1, Relaxed);
    state.stopped.notify();
    // Publishers may wait for this connection's output to drain.
    state.drained.wake_all();
}

/// Waits for output, or the connection's close; `false` once the retire
/// tick ended the writer first ([`Writer::Idle`]).
async fn park(shard: &Shard, conn: ConnId, state: &ConnState) -> bool {
    state.writer.set(Writer::Parked);
    if !state.listed.replace(true) {
        let mut parked = shard.parked.borrow_mut();
        if parked.is_empty() {
            shard.parked_any.notify();
        }
        parked.push(conn);
    }
    // No wake-up of the publishers waiting for this output to drain: each
    // output taken woke one, which passes the turn on. Waking them all here
    // woke a fan-in's thousand publishers each time the subscriber caught
    // up, and cut fan-in 1000→1 at full rate from 1.4M to 0.1M msgs/s.
    std::future::poll_fn(|cx| {
        if state.has_output.get() || state.interrupt.is_pending() {
            state.writer.set(Writer::Running);
            Poll::Ready(true)
        } else if state.writer.get() == Writer::Retiring {
            state.writer.set(Writer::Idle);
            Poll::Ready(false)
        } else {
            state.interrupt.set_waiter(cx.waker());
            Poll::Pending
        }
    })
    .await
}

async fn write_until_idle(shard: &Shard, conn: ConnId, state: &ConnState) {
    let version = state.version;
    let mut wbuf = BytesMut::new();
    loop {
        // A kept interrupt means the connection is closing: take the close
        // (or the reader's end) without waiting for another wake-up.
        if !state.interrupt.is_pending() && !state.has_output.replace(false) {
            return;
        }
        let out = shard
            .broker
            .borrow_mut()
            .take_output_at(conn, Instant::now());
        state.drained.wake_one();
        // Taking output may have ended a congestion: the credits it held go
        // back to other shards (rare; a write is not a reason to wake them).
        if !shard.broker.borrow().forwards.is_empty() {
            shard.wake();
        }
        encode_output(state, out.packets, &mut wbuf);
        if let Some(reason) = out.close {
            state.closed_by_broker.set(Some(reason));
        }
        let done = state.reader_done.get();
        let reason = out
            .close
            .or(if done { state.reader_error.get() } else { None });
        if let (Some(reason), Version::V5) = (reason, version) {
            let disconnect = Disconnect {
                reason_code: reason,
                ..Default::default()
            };
            let _ = encode(&Packet::Disconnect(disconnect), version, &mut wbuf);
        }
        let closing = reason.is_some() || done;
        if !closing && state.interrupt.is_pending() {
            // Told to close after the output was taken: go round once more,
            // keeping what is encoded, to add the DISCONNECT.
            continue;
        }
        if !wbuf.is_empty() {
            // The last write is bounded in time; the others end early if the
            // connection is told to close meanwhile: a client that does not
            // read must not keep its writer (and socket) forever.
            state.writing_since.set(Stamp::at(Instant::now()));
            let written = if closing {
                Some(state.socket.write_last(&wbuf).await)
            } else {
                state.socket.write_all(&wbuf, Some(&state.interrupt)).await
            };
            if !matches!(written, Some(Ok(()))) {
                state.closed_by_broker.set(
                    state
                        .closed_by_broker
                        .get()
                        .or(shard.broker.borrow().closing_reason(conn))
                        .or(Some(ReasonCode::UnspecifiedError)),
                );
                state.socket.shutdown();
                state.writer.set(Writer::Closed);
                return;
            }
            state.writing_since.set(Stamp::NONE);
            wbuf.clear();
        }
        if closing {
            linger(shard, state).await;
            state.socket.shutdown();
            state.writer.set(Writer::Closed);
            return;
        }
    }
}

/// Encodes `packets` for the connection into `wbuf`, with its topic aliases,
/// leaving out what its Maximum Packet Size refuses.
fn encode_output(state: &ConnState, packets: Vec<Packet>, wbuf: &mut BytesMut) {
    let version = state.version;
    let mut aliases = state.aliases.take();
    for mut packet in packets {
        let applied = match (&mut packet, aliases.as_mut()) {
            (Packet::Publish(p), Some(aliases)) => aliases.apply(p),
            _ => Applied::Unchanged,
        };
        // Never send an MQTT 5 client more than it accepts [MQTT-3.1.2-24].
        if let (Some(max), Ok(len)) = (state.max_packet_size, encoded_len(&packet, version)) {
            if len > max.get() as usize {
                if let (Applied::Assigned, Packet::Publish(p), Some(aliases)) =
                    (applied, &packet, aliases.as_mut())
                {
                    aliases.forget(&p.topic);
                }
                continue;
            }
        }
        if let Err(e) = encode(&packet, version, wbuf) {
            debug!(error = %e, packet = packet.name(), "not encodable");
        }
    }
    state.aliases.set(aliases);
}

/// After a closing connection's last write: half-closes it, so the client
/// reads the DISCONNECT and then the end of the stream, and lets the input
/// drain for [`LINGER`] at most. The reader, while it runs, reads the input
/// itself (it ends at the client's close, or after the batch it has); once it
/// has ended, whatever the client still sends is read here and thrown away.
async fn linger(shard: &Shard, state: &ConnState) {
    state.socket.shutdown_write();
    let deadline = Instant::now() + LINGER;
    while !state.reader_done.get() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        futures_lite::future::or(state.interrupt.notified(), glommio::timer::sleep(left)).await;
    }
    state
        .socket
        .discard_input(&shard.read_scratch, deadline)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of_3<A, B, C, R>(_: fn(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn publish_and_subscribe_wait_for_loading_by_their_first_byte() {
        for (bytes, held) in [
            (&[0x30, 0][..], true),  // PUBLISH QoS 0
            (&[0x3d, 0][..], true),  // PUBLISH QoS 2, DUP, retain
            (&[0x82, 0][..], true),  // SUBSCRIBE
            (&[0xc0, 0][..], false), // PINGREQ
            (&[0xa2, 0][..], false), // UNSUBSCRIBE
            (&[0x40, 2][..], false), // PUBACK
            (&[][..], false),
        ] {
            assert_eq!(held_while_loading(bytes), held, "{bytes:02x?}");
        }
    }

    /// Every idle connection keeps what its sleeping reader keeps and its
    /// shared state, and every busy one its reader's future: these bounds
    /// guard the bytes per connection of benchmarks.md (a CONNECT or a second
    /// stream kept in the task costs hundreds of bytes each).
    #[test]
    fn connection_tasks_stay_small() {
        let asleep = std::mem::size_of::<Asleep>();
        // With its Client (40 bytes) inline; 88 is one 96-byte allocation.
        assert!(asleep <= 88, "a sleeping reader keeps {asleep} bytes");
        // With the Rc's counts, 152: one 160-byte allocation.
        let state = std::mem::size_of::<ConnState>();
        assert!(state <= 136, "ConnState is {state} bytes");
        let client = std::mem::size_of::<Client>();
        assert!(client <= 40, "Client is {client} bytes");
        let identity = std::mem::size_of::<crate::auth::Identity>();
        assert!(identity <= 56, "Identity is {identity} bytes");
        let reader = size_of_3(run as fn(_, _, _) -> _);
        // 504 with a boxed Client: a busy connection pays for the idle ones'
        // smaller sleeping reader.
        assert!(reader <= 552, "the reader's future is {reader} bytes");
        // The first reader, with the handshake (boxed) before it.
        let serve = size_of_3(serve as fn(_, _, _) -> _);
        assert!(serve <= 592, "serve's future is {serve} bytes");
        let writer = size_of_3(write_loop as fn(_, _, _) -> _);
        assert!(writer <= 384, "write_loop's future is {writer} bytes");
    }
}
