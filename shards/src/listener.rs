//! SO_REUSEPORT listeners, one per shard on the same address, and their
//! accept loops.
//!
//! The kernel spreads incoming connections over every socket in a
//! reuseport group (DESIGN measured 41–59 of 100 over two), so each shard
//! accepts and owns its own connections without any hand-off.
//!
//! The pool binds the sockets itself, on the starting thread, before any
//! shard runs. That is how port 0 works for tests: the first socket binds
//! port 0, the kernel picks a port, and the other shards' sockets bind that
//! port. It also turns a busy port into a start-up error instead of a shard
//! failing later, and avoids glommio's `TcpListener::bind`, which unwraps
//! address resolution.
//!
//! # Stopping an accept loop (glommio workaround)
//! Racing glommio 0.9's `accept()` against another future in a loop
//! overflows its `i16` waker count and panics ("Waker invariant broken").
//! So the accept loop runs alone in a task of its own, never in a
//! `select!`. A second, small task waits for [`Shutdown`] and then calls
//! `shutdown(SHUT_RD)` on the listening socket: the kernel fails the
//! pending accept with `EINVAL` and drops the socket from the reuseport
//! group, and the loop sees the shutdown flag and returns. A self-connect
//! would not do: with reuseport it may land on another shard's socket.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, RawFd};
use std::rc::{Rc, Weak};
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::{Shutdown, StartError};

/// What to listen on, and the socket options that go with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// `host:port`; port 0 picks a free port shared by every shard.
    pub addr: String,
    /// Pending-connection queue length per shard. Connection storms are a
    /// design goal, so the default is the kernel's usual maximum, 4096.
    pub backlog: u32,
    /// SO_SNDBUF for accepted sockets (they inherit it from the listener).
    /// DESIGN: the kernel otherwise lets each slow reader hold ~4 MiB.
    pub send_buffer: Option<usize>,
    /// SO_RCVBUF for accepted sockets, likewise inherited.
    pub recv_buffer: Option<usize>,
}

impl ListenerConfig {
    /// Listen on `addr` with default options.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            backlog: 4096,
            send_buffer: None,
            recv_buffer: None,
        }
    }

    /// Sets the accept backlog.
    #[must_use]
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Sets SO_SNDBUF for accepted sockets, in bytes.
    #[must_use]
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = Some(bytes);
        self
    }

    /// Sets SO_RCVBUF for accepted sockets, in bytes.
    #[must_use]
    pub fn recv_buffer(mut self, bytes: usize) -> Self {
        self.recv_buffer = Some(bytes);
        self
    }

    /// Resolves the address. Blocking (it may do DNS): start-up only.
    pub fn resolve(&self) -> Result<SocketAddr, StartError> {
        let bad = |reason: String| StartError::BadAddress {
            addr: self.addr.clone(),
            reason,
        };
        self.addr
            .to_socket_addrs()
            .map_err(|e| bad(e.to_string()))?
            .next()
            .ok_or_else(|| bad("it resolves to no address".into()))
    }
}

/// Binds `shards` reuseport sockets on one address; with port 0, all on the
/// port the first one got. Returns the bound address and the sockets.
pub(crate) fn bind_group(
    config: &ListenerConfig,
    shards: usize,
) -> Result<(SocketAddr, Vec<Socket>), StartError> {
    let mut addr = config.resolve()?;
    if addr.port() != 0 {
        ensure_free(addr)?;
    }
    let mut sockets = Vec::with_capacity(shards);
    for _ in 0..shards {
        let socket =
            bind_socket(addr, config).map_err(|source| StartError::Bind { addr, source })?;
        if addr.port() == 0 {
            addr = socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .ok_or_else(|| StartError::Bind {
                    addr,
                    source: io::Error::other("the kernel did not report the bound port"),
                })?;
        }
        sockets.push(socket);
    }
    Ok((addr, sockets))
}

/// How long a busy listening address may take to be released by a process
/// that just died.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Fails if another socket listens on `addr`. Our sockets set SO_REUSEPORT,
/// so without this check a second broker (or a stale one) on the same port
/// would bind too and silently take part of the connections. A probe without
/// SO_REUSEPORT cannot bind next to a listener; it is closed at once.
fn ensure_free(addr: SocketAddr) -> Result<(), StartError> {
    let probe = || -> io::Result<()> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())
    };
    // A process killed a moment ago (kill -9, then an immediate restart by a
    // supervisor) still holds its listener for some milliseconds while the
    // kernel tears its io_uring down: a busy address is tried again for a
    // short while before it counts as taken.
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    let mut result = probe();
    while matches!(&result, Err(e) if e.kind() == io::ErrorKind::AddrInUse)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
        result = probe();
    }
    result.map_err(|source| match source.kind() {
        io::ErrorKind::AddrInUse => StartError::Bind {
            addr,
            source: io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process is already listening there (is another broker running?)",
            ),
        },
        _ => StartError::Bind { addr, source },
    })
}

fn bind_socket(addr: SocketAddr, config: &ListenerConfig) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_port(true)?;
    // A restarted broker must rebind at once, with old connections still in
    // TIME_WAIT.
    socket.set_reuse_address(true)?;
    if let Some(bytes) = config.send_buffer {
        socket.set_send_buffer_size(bytes)?;
    }
    if let Some(bytes) = config.recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.bind(&addr.into())?;
    let backlog = i32::try_from(config.backlog).unwrap_or(i32::MAX);
    socket.listen(backlog)?;
    Ok(socket)
}

/// One shard's listening socket on a glommio executor.
pub struct Listener {
    /// Shared with the stopper task (weakly) so the fd it shuts down is
    /// still this socket, never a reused descriptor number.
    inner: Rc<TcpListener>,
    /// The socket's descriptor, for `shutdown(SHUT_RD)`: glommio's listener
    /// does not expose it.
    fd: RawFd,
    /// Cached so logs and callers need no syscall or error handling.
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .field("fd", &self.fd)
            .finish()
    }
}

/// What an accept loop did, returned when it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptStats {
    /// Connections handed to the callback.
    pub accepted: u64,
    /// Failed accepts (descriptor limits, aborted handshakes).
    pub errors: u64,
}

impl Listener {
    /// Binds one reuseport socket on the current glommio executor (for use
    /// outside a pool, as in tests). In a pool, take the pre-bound listener
    /// from [`ShardContext::take_listener`](crate::ShardContext::take_listener).
    pub fn bind(config: &ListenerConfig) -> Result<Self, StartError> {
        let (_, mut sockets) = bind_group(config, 1)?;
        let socket = sockets.pop().ok_or_else(|| StartError::BadAddress {
            addr: config.addr.clone(),
            reason: "nothing was bound".into(),
        })?;
        Ok(Self::from_socket(socket))
    }

    /// Moves a bound, listening socket onto the current executor.
    pub(crate) fn from_socket(socket: Socket) -> Self {
        let local_addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let fd = socket.into_raw_fd();
        // SAFETY: `fd` is a bound, listening TCP socket whose ownership we
        // just took from `socket`; glommio's listener now owns and closes it.
        let inner = unsafe { TcpListener::from_raw_fd(fd) };
        Self {
            inner: Rc::new(inner),
            fd,
            local_addr,
        }
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The listening socket, for an accept loop of the caller's own (one on
    /// an epoll set of its own, say) instead of [`Listener::spawn_accept_loop`].
    /// The listener must outlive that use: dropping it closes the socket.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `inner` owns `fd` and keeps it open while `self` lives.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }

    /// Spawns the accept loop as a task of its own on the current executor.
    ///
    /// Each accepted stream gets TCP_NODELAY (MQTT packets are small and
    /// latency-bound; writes are coalesced by the broker instead) and is
    /// passed to `on_accept`, which typically spawns a connection task. The
    /// loop ends when `shutdown` fires. Await the returned task to know it
    /// has ended; dropping it cancels the loop.
    pub fn spawn_accept_loop<F>(
        self,
        shutdown: &Shutdown,
        on_accept: F,
    ) -> glommio::Task<AcceptStats>
    where
        F: FnMut(TcpStream) + 'static,
    {
        let stopper = Rc::downgrade(&self.inner);
        let fd = self.fd;
        let stop = shutdown.clone();
        glommio::spawn_local(async move {
            stop.recv().await;
            stop_accepting(&stopper, fd);
        })
        .detach();
        glommio::spawn_local(self.accept_loop(shutdown.clone(), on_accept))
    }

    async fn accept_loop<F>(self, shutdown: Shutdown, mut on_accept: F) -> AcceptStats
    where
        F: FnMut(TcpStream),
    {
        let mut stats = AcceptStats::default();
        let mut backoff = Duration::ZERO;
        while !shutdown.is_shutdown() {
            match self.inner.accept().await {
                Ok(stream) => {
                    backoff = Duration::ZERO;
                    stats.accepted += 1;
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "TCP_NODELAY on an accepted socket");
                    }
                    on_accept(stream);
                }
                Err(_) if shutdown.is_shutdown() => break,
                Err(e) => {
                    stats.errors += 1;
                    let e = io::Error::from(e);
                    match AcceptFailure::of(&e) {
                        AcceptFailure::Connection => {}
                        AcceptFailure::Resources => {
                            // Out of descriptors or memory: the connection
                            // stays queued and accept would fail again at
                            // once, so back off instead of spinning.
                            backoff = (backoff * 2)
                                .clamp(Duration::from_millis(5), Duration::from_millis(200));
                            tracing::warn!(error = %e, addr = %self.local_addr, ?backoff, "accept failed");
                            glommio::timer::sleep(backoff).await;
                        }
                        AcceptFailure::Fatal => {
                            tracing::error!(error = %e, addr = %self.local_addr, "listener failed; no longer accepting");
                            break;
                        }
                    }
                }
            }
        }
        stats
    }
}

/// How an accept error is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptFailure {
    /// One connection failed (reset before accept): carry on.
    Connection,
    /// Descriptor or memory limits: wait and retry.
    Resources,
    /// The socket itself is broken or was shut down.
    Fatal,
}

impl AcceptFailure {
    pub fn of(e: &io::Error) -> Self {
        const RESOURCES: [i32; 4] = [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM];
        match e.raw_os_error() {
            Some(code) if RESOURCES.contains(&code) => Self::Resources,
            Some(libc::EINVAL | libc::EBADF | libc::ENOTSOCK) => Self::Fatal,
            _ => Self::Connection,
        }
    }
}

/// Wakes a pending accept with `EINVAL` and leaves the reuseport group.
fn stop_accepting(listener: &Weak<TcpListener>, fd: RawFd) {
    // Holding the upgrade keeps the descriptor open (and so not reused)
    // while we shut it down.
    let Some(_alive) = listener.upgrade() else {
        return;
    };
    // SAFETY: `_alive` keeps the listener, and with it `fd`, open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    if let Err(e) = SockRef::from(&borrowed).shutdown(std::net::Shutdown::Read) {
        tracing::debug!(error = %e, "shutting down a listener");
    }
}

/// Sets SO_SNDBUF on one connection, to bound what the kernel holds for a
/// slow reader (listeners set it for all accepted sockets already).
pub fn set_send_buffer(stream: &TcpStream, bytes: usize) -> io::Result<()> {
    // SAFETY: the stream owns the descriptor and outlives this call.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    SockRef::from(&fd).set_send_buffer_size(bytes)
}
