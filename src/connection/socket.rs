//! One client socket shared by the connection's reader and writer tasks.
//!
//! Both tasks use the same descriptor: the stream is borrowed only inside each
//! poll, never across an await, so the reader can wait for input while the
//! writer waits for the socket to drain. One descriptor per connection keeps a
//! 19k-connection node under a 20k open-files limit, and one glommio stream
//! keeps its reactor state single.
//!
//! Reads go through a buffer the shard's connections share, and a connection's
//! own read buffer is dropped whenever it is empty and the socket has nothing
//! more: an idle connection holds no buffer at all (issue 4's 3 KiB per idle
//! connection), while a busy one keeps its buffer between reads.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

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

#[derive(Debug)]
pub struct Socket {
    stream: RefCell<TcpStream>,
}

impl Socket {
    pub fn new(stream: TcpStream) -> Socket {
        Socket {
            stream: RefCell::new(stream),
        }
    }

    /// Appends what one read returns to `buf`; 0 at end of stream. While the
    /// socket has nothing, an empty `buf` gives its memory back.
    pub async fn read(&self, buf: &mut BytesMut, scratch: &ReadScratch) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut stream = self.stream.borrow_mut();
            let mut scratch = scratch.borrow_mut();
            match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
                Poll::Ready(Ok(n)) => {
                    buf.extend_from_slice(&scratch[..n]);
                    Poll::Ready(Ok(n))
                }
                Poll::Pending => {
                    if buf.is_empty() && buf.capacity() > 0 {
                        *buf = BytesMut::new();
                    }
                    Poll::Pending
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            }
        })
        .await
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
            let mut stream = self.stream.borrow_mut();
            while !data.is_empty() {
                match Pin::new(&mut *stream).poll_write(cx, data) {
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

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Ok(self.stream.borrow().set_read_timeout(timeout)?)
    }

    /// Writes a closing connection's last bytes (a refusal, a DISCONNECT): within
    /// [`LAST_WRITE`], so a client that does not read cannot keep the socket.
    pub async fn write_last(&self, data: &[u8]) -> io::Result<()> {
        self.stream.borrow().set_write_timeout(Some(LAST_WRITE))?;
        // Without an interrupt, `write_all` always finishes with a result.
        self.write_all(data, None).await.unwrap_or(Ok(()))
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
        let stream = self.stream.borrow();
        // SAFETY: the descriptor belongs to `stream`, which outlives this borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        let _ = socket2::SockRef::from(&fd).shutdown(how);
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
            if left.is_zero() || self.set_read_timeout(Some(left)).is_err() {
                return;
            }
            let read = poll_fn(|cx| {
                let mut stream = self.stream.borrow_mut();
                let mut scratch = scratch.borrow_mut();
                Pin::new(&mut *stream).poll_read(cx, &mut scratch[..])
            })
            .await;
            if !matches!(read, Ok(n) if n > 0) {
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
        let stream = self.stream.borrow();
        // SAFETY: the descriptor belongs to `stream`, which outlives this borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        fd.try_clone_to_owned()
    }

    /// The client's address (for events); `None` if the kernel cannot say,
    /// e.g. the peer already went away.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.borrow().peer_addr().ok()
    }

    pub fn raw_fd(&self) -> i32 {
        self.stream.borrow().as_raw_fd()
    }
}
