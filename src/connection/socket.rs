//! One client socket shared by the connection's reader and writer tasks.
//!
//! Both tasks use the same descriptor, through non-blocking `recv` and `send`,
//! and wait for it through the shard's epoll set ([`Readiness`]), each in its
//! own direction: the reader can wait for input (or sleep until it comes,
//! [`Socket::sleep`]) while the writer waits for the socket to drain. One
//! descriptor per connection keeps a 19k-connection node
//! under a 20k open-files limit.
//!
//! Reads go through a buffer the shard's connections share, and a connection's
//! own read buffer is dropped whenever it is empty and the socket has nothing
//! more: an idle connection holds no buffer at all (issue 4's 3 KiB per idle
//! connection), while a busy one keeps its buffer between reads.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::readiness::{Direction, Readiness, Resume, Token};
use super::Notify;

/// Bytes asked of the socket per read; also the size of a shard's shared read
/// buffer.
pub const READ_CHUNK: usize = 64 * 1024;

/// How long the last write of a closing connection (its DISCONNECT) may take.
const LAST_WRITE: Duration = Duration::from_secs(5);

/// How long a closing connection keeps reading, after its last write, what the
/// client still sends (see [`Socket::discard_input`]).
pub const LINGER: Duration = Duration::from_secs(1);

/// The shard's read buffer, shared by all of its connections: a read copies
/// from it into the connection's own buffer only what arrived.
pub type ReadScratch = RefCell<Box<[u8]>>;

pub fn read_scratch() -> ReadScratch {
    RefCell::new(vec![0; READ_CHUNK].into_boxed_slice())
}

/// A TCP socket in its shard's epoll set ([`Readiness`]).
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    token: Token,
    readiness: Rc<Readiness>,
    /// Another descriptor shares the socket ([`Socket::dup`]): it must be
    /// taken out of the set by hand when this one closes.
    shared: Cell<bool>,
}

impl Socket {
    /// Takes `fd`, a connected TCP socket, into the shard's set.
    pub fn new(fd: OwnedFd, readiness: &Rc<Readiness>) -> io::Result<Socket> {
        let token = readiness.register(fd.as_fd())?;
        Ok(Socket {
            fd,
            token,
            readiness: readiness.clone(),
            shared: Cell::new(false),
        })
    }

    /// The same for a socket glommio made (an accepted or dialled one): its
    /// descriptor, duplicated, goes into the set, and glommio's stream (with
    /// the read it armed but did not submit yet) is dropped.
    pub fn from_glommio(
        stream: glommio::net::TcpStream,
        readiness: &Rc<Readiness>,
    ) -> io::Result<Socket> {
        // SAFETY: the descriptor belongs to `stream`, open for this borrow.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        let owned = fd.try_clone_to_owned()?;
        drop(stream);
        let socket = Socket::new(owned, readiness)?;
        // glommio may keep the socket open a while (an operation it armed):
        // taken out of the set by hand.
        socket.shared.set(true);
        Ok(socket)
    }

    /// Appends what one read returns to `buf`; 0 at end of stream. While the
    /// socket has nothing, an empty `buf` gives its memory back.
    pub async fn read(&self, buf: &mut BytesMut, scratch: &ReadScratch) -> io::Result<usize> {
        poll_fn(|cx| match self.try_read(buf, scratch) {
            Some(read) => Poll::Ready(read),
            None => {
                self.readiness.wait(self.token, Direction::Read, cx.waker());
                Poll::Pending
            }
        })
        .await
    }

    /// [`Socket::read`], failing with `TimedOut` after `timeout` (a CONNECT's
    /// or a hello's deadline). An argument, not a setting the socket keeps:
    /// only those first reads have one, and every connection would carry it.
    pub async fn read_within(
        &self,
        timeout: Duration,
        buf: &mut BytesMut,
        scratch: &ReadScratch,
    ) -> io::Result<usize> {
        within(timeout, self.read(buf, scratch)).await
    }

    /// One read without waiting: `None` if the socket is drained (the next
    /// read should wait for its input edge). An empty `buf` then gives its
    /// memory back.
    pub fn try_read(&self, buf: &mut BytesMut, scratch: &ReadScratch) -> Option<io::Result<usize>> {
        let mut scratch = scratch.borrow_mut();
        while self.readiness.ready(self.token, Direction::Read) {
            match self.recv(&mut scratch[..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readiness.drained(self.token, Direction::Read);
                }
                Ok(n) => {
                    buf.extend_from_slice(&scratch[..n]);
                    return Some(Ok(n));
                }
                Err(e) => return Some(Err(e)),
            }
        }
        if buf.is_empty() {
            // Even with no capacity left: an empty buffer split from the
            // packet before it still holds that packet's memory.
            *buf = BytesMut::new();
        }
        None
    }

    /// Puts the connection's reader to sleep until the next input
    /// ([`Readiness::sleep`]); `sleeper` comes back if input may be waiting.
    pub fn sleep<S: Resume + 'static>(&self, sleeper: Box<S>) -> Result<(), Box<S>> {
        self.readiness.sleep(self.token, sleeper)
    }

    /// One read or write while the socket may be ready; when it turns out
    /// not to be (or is known not to be), waits for its next edge.
    fn try_io(
        &self,
        direction: Direction,
        cx: &mut std::task::Context<'_>,
        mut io: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        while self.readiness.ready(self.token, direction) {
            match io() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                done => return Poll::Ready(done),
            }
        }
        self.readiness.wait(self.token, direction, cx.waker());
        Poll::Pending
    }

    /// `recv` without blocking; a short read marks the socket drained (the
    /// next read waits for an edge instead of asking the kernel again).
    fn recv(&self, into: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `into` is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                into.as_mut_ptr().cast(),
                into.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n > 0 && n < into.len() {
            self.readiness.drained(self.token, Direction::Read);
        }
        Ok(n)
    }

    /// `send` without blocking (and without SIGPIPE); a short write marks the
    /// socket full.
    fn send(&self, data: &[u8]) -> io::Result<usize> {
        // SAFETY: `data` is valid for reads of its length.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < data.len() {
            self.readiness.drained(self.token, Direction::Write);
        }
        Ok(n)
    }

    /// Writes all of `data`. `None` if `interrupt` fired first (the
    /// connection must close; the rest is not written).
    pub async fn write_all(
        &self,
        mut data: &[u8],
        interrupt: Option<&Notify>,
    ) -> Option<io::Result<()>> {
        poll_fn(|cx| {
            if let Some(interrupt) = interrupt {
                if interrupt.poll_notified(cx).is_ready() {
                    return Poll::Ready(None);
                }
            }
            while !data.is_empty() {
                match self.try_io(Direction::Write, cx, || self.send(data)) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Some(Err(io::ErrorKind::WriteZero.into())))
                    }
                    Poll::Ready(Ok(n)) => data = &data[n..],
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Poll::Ready(Some(Ok(())))
        })
        .await
    }

    /// Writes a closing connection's last bytes (a refusal, a DISCONNECT): within
    /// [`LAST_WRITE`], so a client that does not read cannot keep the socket.
    pub async fn write_last(&self, data: &[u8]) -> io::Result<()> {
        let write = async { self.write_all(data, None).await.unwrap_or(Ok(())) };
        within(LAST_WRITE, write).await
    }

    /// Shuts both directions down; the descriptor closes when the socket is
    /// dropped.
    pub fn shutdown(&self) {
        self.shutdown_how(Shutdown::Both);
    }

    /// Ends reading: a read in progress returns the end of the stream.
    /// Writing goes on (a DISCONNECT can still be sent).
    pub fn shutdown_read(&self) {
        self.shutdown_how(Shutdown::Read);
    }

    /// Sends FIN after what was written: the client reads it all, then the end
    /// of the stream. Reading goes on.
    pub fn shutdown_write(&self) {
        self.shutdown_how(Shutdown::Write);
    }

    fn shutdown_how(&self, how: Shutdown) {
        let _ = socket2::SockRef::from(&self.fd).shutdown(how);
    }

    /// Reads and throws away what the client sends until it closes, fails, or
    /// `deadline` passes. Closing a socket with unread input makes the kernel
    /// send a reset, which can destroy the reason code written just before
    /// (CONNACK, DISCONNECT) in the client's receive buffer; reading the input
    /// first lets the client read the reason. The deadline bounds a client
    /// that never stops sending.
    pub async fn discard_input(&self, scratch: &ReadScratch, deadline: Instant) {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let read = poll_fn(|cx| {
                let mut scratch = scratch.borrow_mut();
                self.try_io(Direction::Read, cx, || self.recv(&mut scratch[..]))
            });
            if !matches!(within(left, read).await, Ok(n) if n > 0) {
                return;
            }
        }
    }

    /// A connection's last words: writes `data` (within the last-write bound),
    /// half-closes, and reads what the client still sends for [`LINGER`] at
    /// most, so the client reads `data` rather than a reset.
    pub async fn close_with(&self, data: &[u8], scratch: &ReadScratch) {
        if self.write_last(data).await.is_ok() {
            self.shutdown_write();
            self.discard_input(scratch, Instant::now() + LINGER).await;
        }
        self.shutdown();
    }

    /// A second descriptor for the socket (close-on-exec), to hand the
    /// connection to another shard.
    pub fn dup(&self) -> io::Result<OwnedFd> {
        self.shared.set(true);
        self.fd.try_clone()
    }

    /// The client's address (for events); `None` if the kernel cannot say,
    /// e.g. the peer already went away.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        socket2::SockRef::from(&self.fd)
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// `io`, or `TimedOut` once `timeout` has passed. Boxed: timeouts are for
/// the rare reads and writes (a CONNECT, a closing connection's last ones), and
/// a timer kept inline would grow the future of every reader and writer.
fn within<T>(
    timeout: Duration,
    io: impl Future<Output = io::Result<T>>,
) -> Pin<Box<impl Future<Output = io::Result<T>>>> {
    Box::pin(futures_lite::future::or(io, async move {
        glommio::timer::sleep(timeout).await;
        Err(io::ErrorKind::TimedOut.into())
    }))
}

impl Drop for Socket {
    fn drop(&mut self) {
        if self.shared.get() {
            self.readiness.deregister(self.token, self.fd.as_fd());
        } else {
            // Closing the only descriptor of the socket takes it out of the
            // set: one `epoll_ctl` fewer per connection.
            self.readiness.forget(self.token);
        }
    }
}
