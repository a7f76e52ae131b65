//! The links' sockets: the I/O around [`Link`] and [`frame`].
//!
//! Every shard dials every live peer node at the address its lease names
//! (`[cluster] advertise`), one connection per shard and peer, so a publish
//! leaves the node from the shard it arrived on, with no hop between shards.
//! Every shard also serves the connections peers dial to `[cluster] bind`
//! (one listener per shard, the kernel spreads them). A connection carries
//! batches one way and credits back the other way:
//! - outgoing: this shard's [`Link`] to the peer, which outlives its
//!   connections: on reconnect, what was unacknowledged is sent again first
//!   ([`Link::restart`]), with capped back-off between attempts, and past
//!   the link's bound new messages are dropped and counted;
//! - incoming: a fresh [`Link`] per connection, whose messages go to the
//!   shard's broker ([`crate::broker::Broker::on_node_message`]).
//!
//! A peer belongs to one life (the boot id in its lease and its
//! [`Hello`]): when the lease listing says that life died, its link goes with
//! whatever it held, and the broker stops waiting for its answers.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use bytestring::ByteString;
use futures_lite::future;
use glommio::net::TcpStream;
use tracing::{debug, info, warn};

use super::frame::{self, Frame, Hello, Message};
use super::link::Link;
use super::membership::Change;
use crate::connection::{read_scratch, Notify, Shard, Socket, WakeQueue};
use crate::hash::HashMap;
use crate::metrics::ClusterHealth;
use crate::store::Owner;

/// Messages a link holds for an unreachable peer before it drops new ones.
const LINK_BOUND: usize = 100_000;
/// Messages held for a node not listed as a peer yet.
const EARLY_BOUND: usize = 10_000;
/// Messages waiting on one link past which the shard's readers stop reading
/// their clients until it drains: publishers faster than a link are slowed
/// down by TCP, like publishers faster than another shard (the mesh
/// backlog), instead of filling the link's buffer and failing their PUBACKs.
const LINK_BACKLOG: usize = 4096;
/// How long one connect may take (not raced against anything: glommio 0.9's
/// waker-count bug, DESIGN.md section 3).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Back-off between connection attempts to one peer: doubling from the
/// first, capped at the second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));
/// How long the peer may take to send its [`Hello`].
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a writer sleeps without a wake-up (to notice shutdown).
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// One connection's [`Link`] and the wake-up of its writer.
#[derive(Debug)]
struct Channel {
    link: RefCell<Link>,
    wake: Notify,
    /// The connection ended, or the peer's life did: writer and reader stop.
    closed: Cell<bool>,
}

impl Channel {
    fn new() -> Rc<Channel> {
        Rc::new(Channel {
            link: RefCell::new(Link::new(LINK_BOUND)),
            wake: Notify::default(),
            closed: Cell::new(false),
        })
    }

    fn close(&self) {
        self.closed.set(true);
        self.wake.notify();
    }
}

/// This shard's outgoing link to one life of a peer.
#[derive(Debug)]
struct Peer {
    boot: u64,
    addr: String,
    /// Outlives the connections: what one left unacknowledged, the next
    /// sends again.
    out: Rc<Channel>,
    /// The connection the dialer holds now, if any, to close it when the
    /// peer's life ends.
    conn: RefCell<Option<Rc<Channel>>>,
    /// The link's drop count when the last barrier went out: a barrier
    /// after a drop must not vouch for what was dropped.
    dropped_at_barrier: Cell<u64>,
}

/// This shard's links to the other nodes.
pub struct Links {
    me: Owner,
    /// Readers paused on a link backlog ([`Links::until_drained`]).
    drained: WakeQueue,
    peers: RefCell<HashMap<ByteString, Rc<Peer>>>,
    /// Messages for nodes whose routes the feed brought before the lease
    /// listing named them (a node's first listings come once per renewal):
    /// handed to the link when the node joins, dropped if it dies first (the
    /// broker stops waiting for it then, or after `NODE_ANSWER`).
    early: RefCell<HashMap<ByteString, Vec<Message>>>,
    /// Shard 0: dead lives being reaped, and how many shards are through.
    reaping: RefCell<HashMap<String, usize>>,
}

impl Links {
    pub fn new(me: Owner) -> Links {
        Links {
            me,
            drained: WakeQueue::default(),
            peers: RefCell::new(HashMap::default()),
            early: RefCell::new(HashMap::default()),
            reaping: RefCell::new(HashMap::default()),
        }
    }

    /// Queues `message` for `node`. `false` if it cannot go: its link
    /// buffer is full (counted), or, for a [`Message::Barrier`], something
    /// before it since the last barrier was dropped. A node not listed as a
    /// peer yet gets it when it is.
    pub fn send(&self, node: &ByteString, message: Message, health: &ClusterHealth) -> bool {
        let Some(peer) = self.peers.borrow().get(node).cloned() else {
            let mut early = self.early.borrow_mut();
            let queued = early.entry(node.clone()).or_default();
            if queued.len() >= EARLY_BOUND {
                health.link_drops.fetch_add(1, Relaxed);
                return false;
            }
            queued.push(message);
            return true;
        };
        let mut link = peer.out.link.borrow_mut();
        if matches!(message, Message::Barrier { .. }) {
            let dropped = link.dropped();
            if peer.dropped_at_barrier.replace(dropped) != dropped {
                debug!(%node, dropped, "messages were dropped before this barrier");
                return false;
            }
        }
        let sent = link.send(message);
        drop(link);
        if !sent {
            health.link_drops.fetch_add(1, Relaxed);
        }
        peer.out.wake.notify();
        sent
    }

    /// Waits while a link to a live peer holds [`LINK_BACKLOG`] messages or
    /// more (a reader, before it reads its client).
    pub async fn until_drained(&self) {
        self.drained.wait_until(|| !self.backlogged()).await;
    }

    pub fn backlogged(&self) -> bool {
        self.peers
            .borrow()
            .values()
            .any(|p| p.out.link.borrow().backlog() >= LINK_BACKLOG)
    }

    /// A peer's life joined or died (from the lease, on every shard). A new
    /// life is dialled; a dead one's link goes, and with it what it held.
    /// Returns the node whose answers the broker must stop waiting for.
    pub fn apply(&self, shard: &Rc<Shard>, change: &Change) -> Option<ByteString> {
        match change {
            Change::Joined(m) => {
                let node = ByteString::from(m.node.as_str());
                let Ok(boot) = u64::from_str_radix(&m.boot, 16) else {
                    warn!(node = %m.node, boot = %m.boot, "a peer's boot id is not hex: not dialled");
                    return None;
                };
                let peer = Rc::new(Peer {
                    boot,
                    addr: m.addr.clone(),
                    out: Channel::new(),
                    conn: RefCell::new(None),
                    dropped_at_barrier: Cell::new(0),
                });
                for m in self.early.borrow_mut().remove(&node).unwrap_or_default() {
                    peer.out.link.borrow_mut().send(m);
                }
                let old = self.peers.borrow_mut().insert(node.clone(), peer.clone());
                glommio::spawn_local(dial(shard.clone(), node.clone(), peer)).detach();
                old.map(|old| {
                    close_peer(&old, self);
                    node
                })
            }
            Change::Died { node, boot } => {
                let node = ByteString::from(node.as_str());
                self.early.borrow_mut().remove(&node);
                let mut peers = self.peers.borrow_mut();
                let same = peers
                    .get(&node)
                    .is_some_and(|p| u64::from_str_radix(boot, 16) == Ok(p.boot));
                let peer = same.then(|| peers.remove(&node)).flatten()?;
                drop(peers);
                close_peer(&peer, self);
                Some(node)
            }
        }
    }

    /// Shard 0: one more shard is through reaping `dead`; `true` when that
    /// makes all `nr_shards`.
    pub fn reaped_one(&self, dead: &Owner, nr_shards: usize) -> bool {
        let mut reaping = self.reaping.borrow_mut();
        let done = reaping.entry(dead.to_field()).or_default();
        *done += 1;
        if *done < nr_shards {
            return false;
        }
        reaping.remove(&dead.to_field());
        true
    }

    /// This node's life.
    pub fn me(&self) -> &Owner {
        &self.me
    }

    /// The lives of the other nodes this shard knows as alive.
    pub fn peer_lives(&self) -> Vec<Owner> {
        self.peers
            .borrow()
            .iter()
            .map(|(node, p)| Owner {
                node: node.to_string(),
                boot: p.boot,
            })
            .collect()
    }

    /// Whether `life` is the life of its node this shard knows as alive.
    pub fn is_alive(&self, life: &Owner) -> bool {
        self.peers
            .borrow()
            .get(life.node.as_str())
            .is_some_and(|p| p.boot == life.boot)
    }

    /// Whether a life of `node` other than `boot` is the one this shard
    /// knows as alive: a connection from a dead life is refused.
    fn is_stale(&self, node: &str, boot: u64) -> bool {
        self.peers
            .borrow()
            .get(node)
            .is_some_and(|p| p.boot != boot)
    }

    fn is_current(&self, node: &ByteString, peer: &Rc<Peer>) -> bool {
        self.peers
            .borrow()
            .get(node)
            .is_some_and(|p| Rc::ptr_eq(p, peer))
    }
}

fn close_peer(peer: &Peer, links: &Links) {
    links.drained.wake_all();
    peer.out.close();
    if let Some(conn) = peer.conn.borrow_mut().take() {
        conn.close();
    }
}

/// Dials `peer` until its life ends or the shard shuts down, serving each
/// connection until it is lost.
async fn dial(shard: Rc<Shard>, node: ByteString, peer: Rc<Peer>) {
    let Some(links) = shard.links() else { return };
    let mut backoff = BACKOFF.0;
    let mut failing = false;
    while links.is_current(&node, &peer) && !shard.shutdown.is_shutdown() {
        let addr: Option<SocketAddr> = peer.addr.parse().ok();
        let stream = match addr {
            Some(addr) => TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).await,
            None => Err(glommio::GlommioError::IoError(std::io::Error::other(
                "not an IP address and port",
            ))),
        };
        let socket = stream.map_err(std::io::Error::from).and_then(|stream| {
            let _ = stream.set_nodelay(true);
            Socket::from_glommio(stream, &shard.readiness)
        });
        match socket {
            Ok(socket) => {
                let socket = Rc::new(socket);
                let since = Instant::now();
                match handshake(&socket, &links.me).await {
                    Ok((hello, buf)) if hello.node == *node && hello.boot == peer.boot => {
                        failing = false;
                        info!(shard = shard.id, peer = %node, addr = %peer.addr, "link to a peer up");
                        peer.out.link.borrow_mut().restart();
                        let conn = Channel::new();
                        *peer.conn.borrow_mut() = Some(conn.clone());
                        run(&shard, &node, socket, buf, peer.out.clone(), conn).await;
                        *peer.conn.borrow_mut() = None;
                        if since.elapsed() >= BACKOFF.1 {
                            backoff = BACKOFF.0;
                        }
                    }
                    Ok((hello, _)) => {
                        debug!(peer = %node, answered = %hello.node, boot = hello.boot, "another life answered at the peer's address");
                        socket.shutdown();
                    }
                    Err(e) => {
                        debug!(peer = %node, error = %e, "link handshake failed");
                        socket.shutdown();
                    }
                }
            }
            Err(e) => {
                if !failing {
                    warn!(shard = shard.id, peer = %node, addr = %peer.addr, error = %e, "cannot reach a peer: retrying with back-off");
                    failing = true;
                }
            }
        }
        if !links.is_current(&node, &peer) || shard.shutdown.sleep(backoff).await {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// Serves a connection a peer dialled to this shard's cluster listener.
pub async fn accept(shard: Rc<Shard>, stream: TcpStream) {
    let Some(links) = shard.links() else { return };
    let _ = stream.set_nodelay(true);
    let socket = match Socket::from_glommio(stream, &shard.readiness) {
        Ok(socket) => Rc::new(socket),
        Err(e) => return warn!(shard = shard.id, error = %e, "cluster link not served"),
    };
    let (hello, buf) = match handshake(&socket, &links.me).await {
        Ok(answer) => answer,
        Err(e) => {
            warn!(shard = shard.id, error = %e, "refused a cluster link");
            socket.shutdown();
            return;
        }
    };
    if links.is_stale(&hello.node, hello.boot) {
        debug!(peer = %hello.node, boot = hello.boot, "a link from a dead life of a peer: closed");
        socket.shutdown();
        return;
    }
    let node = ByteString::from(hello.node);
    let inbound = Channel::new();
    run(&shard, &node, socket, buf, inbound.clone(), inbound).await;
}

/// Sends this side's [`Hello`] and reads the peer's; also returns what
/// came after it (the peer's first frames may come in the same read).
async fn handshake(socket: &Socket, me: &Owner) -> std::io::Result<(Hello, BytesMut)> {
    let mut out = BytesMut::new();
    Hello {
        version: frame::VERSION,
        node: me.node.clone(),
        boot: me.boot,
    }
    .encode(&mut out);
    if let Some(Err(e)) = socket.write_all(&out, None).await {
        return Err(e);
    }
    let scratch = read_scratch();
    let mut buf = BytesMut::new();
    loop {
        match Hello::decode(&mut buf) {
            Ok(Some(hello)) => return Ok((hello, buf)),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e)),
        }
        if socket
            .read_within(HELLO_TIMEOUT, &mut buf, &scratch)
            .await?
            == 0
        {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Drives one connection: `sending`'s link writes (batches, or credits for
/// what `receiving` got); what arrives goes to `receiving`'s link, credits
/// to `sending`'s. For an incoming connection both are the same channel.
async fn run(
    shard: &Rc<Shard>,
    node: &ByteString,
    socket: Rc<Socket>,
    buf: BytesMut,
    sending: Rc<Channel>,
    receiving: Rc<Channel>,
) {
    let health = &shard.metrics.cluster;
    health.links_up.fetch_add(1, Relaxed);
    let reader = glommio::spawn_local(read(
        shard.clone(),
        node.clone(),
        socket.clone(),
        buf,
        sending.clone(),
        receiving.clone(),
    ));
    write(shard, &socket, &sending, &receiving).await;
    receiving.closed.set(true);
    socket.shutdown();
    reader.await;
    health.links_up.fetch_sub(1, Relaxed);
}

/// Writes what the links have to send until the connection or its peer's
/// life ends.
async fn write(shard: &Shard, socket: &Socket, sending: &Channel, receiving: &Channel) {
    let health = &shard.metrics.cluster;
    let mut out = BytesMut::new();
    loop {
        if sending.closed.get() || receiving.closed.get() || shard.shutdown.is_shutdown() {
            return;
        }
        let now = Instant::now();
        let mut messages = 0;
        for channel in [sending, receiving] {
            let mut link = channel.link.borrow_mut();
            while let Some(f) = link.poll_transmit(now) {
                if let Frame::Batch { messages: m, .. } = &f {
                    messages += m.len() as u64;
                }
                f.encode(&mut out);
            }
            if std::ptr::eq(sending, receiving) {
                break;
            }
        }
        if !out.is_empty() {
            health.messages_out.fetch_add(messages, Relaxed);
            health.bytes_out.fetch_add(out.len() as u64, Relaxed);
            match socket.write_all(&out, None).await {
                Some(Ok(())) => {}
                _ => return,
            }
            out.clear();
            continue;
        }
        let resend = sending.link.borrow().poll_timeout();
        let wait = resend.map_or(IDLE_CHECK, |at| at.saturating_duration_since(now));
        future::or(
            async {
                sending.wake.notified().await;
            },
            async {
                glommio::timer::sleep(wait.min(IDLE_CHECK)).await;
            },
        )
        .await;
    }
}

/// Reads frames until the connection ends: credits open `sending`'s
/// window, batches go to `receiving` and their messages to the broker.
async fn read(
    shard: Rc<Shard>,
    node: ByteString,
    socket: Rc<Socket>,
    mut buf: BytesMut,
    sending: Rc<Channel>,
    receiving: Rc<Channel>,
) {
    let scratch = read_scratch();
    loop {
        loop {
            let frame = match frame::decode(&mut buf, frame::MAX_FRAME) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    warn!(shard = shard.id, peer = %node, error = %e, "a peer sent a frame that cannot be read: link closed");
                    receiving.close();
                    return;
                }
            };
            let now = Instant::now();
            match frame {
                Frame::Credit { .. } => {
                    sending.link.borrow_mut().handle_frame(now, frame);
                    if let Some(links) = shard.links() {
                        links.drained.wake_all();
                    }
                }
                Frame::Batch { .. } => {
                    let mut link = receiving.link.borrow_mut();
                    link.handle_frame(now, frame);
                    let messages: Vec<Message> =
                        std::iter::from_fn(|| link.poll_message()).collect();
                    drop(link);
                    deliver(&shard, &node, messages, now);
                }
                Frame::Ping { .. } => {}
            }
            sending.wake.notify();
        }
        match socket.read(&mut buf, &scratch).await {
            Ok(n) if n > 0 => {}
            _ => {
                receiving.close();
                sending.wake.notify();
                return;
            }
        }
    }
}

/// Hands messages that arrived from `node`, in order, to the shard's broker.
fn deliver(shard: &Shard, node: &ByteString, messages: Vec<Message>, now: Instant) {
    shard
        .metrics
        .cluster
        .messages_in
        .fetch_add(messages.len() as u64, Relaxed);
    let mut broker = shard.broker.borrow_mut();
    for m in messages {
        broker.on_node_message(node, m, now);
    }
    drop(broker);
    shard.wake();
}

/// A peer's life joined or died, as shard 0's lease saw it: applied to this
/// shard's links, and passed on to every other shard when `from_lease`.
pub fn membership_changed(shard: &Rc<Shard>, change: &Change, from_lease: bool) {
    let Some(links) = shard.links() else { return };
    if let Some(node) = links.apply(shard, change) {
        // Whatever the dead life had not answered for may be lost.
        shard.broker.borrow_mut().node_died(&node, Instant::now());
    }
    if let Change::Died { node, boot } = change {
        if let Ok(boot) = u64::from_str_radix(boot, 16) {
            let dead = Owner {
                node: node.clone(),
                boot,
            };
            super::reap::start(shard, dead);
        }
    }
    if from_lease {
        let mut out = shard.mesh_out.borrow_mut();
        for to in (0..shard.nr_shards).filter(|&s| s != shard.id) {
            out.push((to, crate::connection::ShardMsg::Cluster(change.clone())));
        }
        drop(out);
        shard.flush.notify();
    }
    shard.wake();
}
