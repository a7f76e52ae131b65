//! One outgoing connection of a sink: connect, write ready frames, read acks,
//! and reconnect with capped exponential back-off when the consumer goes.
//!
//! Why a task of its own per connection: a consumer that stops reading only
//! stalls this task's write; the shard keeps serving MQTT, and new events
//! fill the sink's bounded buffer, then are dropped and counted.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use shards::Shutdown;
use tracing::{debug, info, warn};

use super::outbox::Frame;
use super::stream::Shared;
use crate::events::frame::{decode_ack, FrameError};
use crate::metrics::SinkShardMetrics;

/// The first wait after a failed or lost connection; doubled each time.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one connect may take. The connect is not raced against anything
/// (glommio 0.9's waker-count bug, DESIGN.md section 3): io_uring's linked
/// timeout bounds it, and so bounds how long shutdown waits for it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The kernel's send buffer per connection. Bounded (DESIGN.md section 3):
/// what a consumer does not read should wait in the sink's own buffer, where
/// it is counted against `buffer-bytes`, not in megabytes of kernel memory.
const SEND_BUFFER: usize = 64 * 1024;
/// How long the last writes at shutdown may take.
const LAST_WRITES: Duration = Duration::from_secs(1);

/// Connects, serves the connection until it is lost, and starts again, until
/// shutdown.
pub async fn connection_task(shared: Rc<Shared>, shutdown: Shutdown) {
    let name = shared.spec.name.clone();
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    while !shutdown.is_shutdown() {
        match TcpStream::connect_timeout(shared.spec.addr, CONNECT_TIMEOUT).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                // SAFETY: the descriptor belongs to `stream`, alive for this borrow.
                let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
                let _ = socket2::SockRef::from(&fd).set_send_buffer_size(SEND_BUFFER);
                SinkShardMetrics::add(&shared.metrics().connects, 1);
                info!(shard = shared.shard, "events sink {name}: connected");
                failing = false;
                let since = Instant::now();
                let mut link = Link::new(stream);
                let lost = link.serve(&shared, &shutdown).await;
                // A consumer that accepts and closes at once is not retried
                // in a tight loop: only a connection that lasted resets it.
                if since.elapsed() >= MAX_BACKOFF {
                    backoff = MIN_BACKOFF;
                }
                match lost {
                    None => {
                        link.last_writes(&shared).await;
                        return;
                    }
                    Some(e) => {
                        SinkShardMetrics::add(&shared.metrics().disconnects, 1);
                        warn!(
                            shard = shared.shard,
                            "events sink {name}: connection lost: {e}"
                        );
                        link.give_back(&shared);
                    }
                }
            }
            Err(e) if !failing => {
                failing = true;
                warn!(
                    shard = shared.shard,
                    "events sink {name}: cannot connect ({e}); retrying with back-off up to {}s",
                    MAX_BACKOFF.as_secs()
                );
            }
            Err(e) => debug!(
                shard = shared.shard,
                "events sink {name}: cannot connect: {e}"
            ),
        }
        if shutdown.sleep(backoff).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A live connection and what it has taken from the sink's outbox.
struct Link {
    stream: TcpStream,
    /// The frame being written, and how much of it is.
    writing: Option<(Frame, usize)>,
    /// Frames written and not yet acked (`acks = true` only), oldest first.
    unacked: VecDeque<Frame>,
    /// Bytes read from the consumer: acks, possibly partial.
    acks: BytesMut,
    scratch: Box<[u8]>,
}

impl Link {
    fn new(stream: TcpStream) -> Link {
        Link {
            stream,
            writing: None,
            unacked: VecDeque::new(),
            acks: BytesMut::new(),
            scratch: vec![0; 4096].into_boxed_slice(),
        }
    }

    /// Writes frames and reads acks until the connection fails (`Some`) or
    /// shutdown (`None`).
    async fn serve(&mut self, shared: &Shared, shutdown: &Shutdown) -> Option<io::Error> {
        let mut stop = pin!(shutdown.recv());
        poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            match self.poll(cx, shared) {
                Poll::Ready(e) => Poll::Ready(Some(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Makes what progress it can; `Ready` only with the error that ended it.
    fn poll(&mut self, cx: &mut Context<'_>, shared: &Shared) -> Poll<io::Error> {
        loop {
            match Pin::new(&mut self.stream).poll_read(cx, &mut self.scratch) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the consumer closed the connection",
                    ))
                }
                Poll::Ready(Ok(n)) => {
                    if shared.spec.config.acks {
                        self.acks.extend_from_slice(&self.scratch[..n]);
                        if let Err(e) = self.apply_acks(shared) {
                            return Poll::Ready(io::Error::new(io::ErrorKind::InvalidData, e));
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(e),
                Poll::Pending => break,
            }
        }
        loop {
            if self.writing.is_none() {
                self.writing = shared.outbox.borrow_mut().take().map(|f| (f, 0));
            }
            let Some((frame, written)) = &mut self.writing else {
                shared.frames.register(cx);
                return Poll::Pending;
            };
            match Pin::new(&mut self.stream).poll_write(cx, &frame.bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    *written += n;
                    if *written == frame.bytes.len() {
                        if let Some((frame, _)) = self.writing.take() {
                            self.written(frame, shared);
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(e),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// A whole frame went out: counted; kept until acked, or released.
    fn written(&mut self, frame: Frame, shared: &Shared) {
        SinkShardMetrics::add(&shared.metrics().sent, u64::from(frame.events));
        if shared.spec.config.acks {
            self.unacked.push_back(frame);
        } else {
            self.release(&frame, shared);
        }
    }

    fn release(&self, frame: &Frame, shared: &Shared) {
        let mut outbox = shared.outbox.borrow_mut();
        outbox.release(frame);
        shared
            .metrics()
            .buffered
            .store(outbox.held() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Releases the frames the consumer acked on this connection. An ack is
    /// cumulative for the frames this connection carried: another connection
    /// of the same sink has its own, so one consumer process reading several
    /// connections cannot release a frame it never saw.
    fn apply_acks(&mut self, shared: &Shared) -> Result<(), FrameError> {
        while let Some(ack) = decode_ack(&mut self.acks)? {
            if usize::from(ack.shard) != shared.shard {
                return Err(FrameError::Malformed("ack for another shard"));
            }
            while self.unacked.front().is_some_and(|f| f.last_seq <= ack.seq) {
                if let Some(frame) = self.unacked.pop_front() {
                    self.release(&frame, shared);
                }
            }
        }
        Ok(())
    }

    /// After a lost connection: the frames it had not finished writing, and
    /// those not acked, go back in front of the outbox, to be sent first.
    fn give_back(&mut self, shared: &Shared) {
        let writing = self.writing.take().map(|(frame, _)| frame);
        let frames: Vec<Frame> = self.unacked.drain(..).chain(writing).collect();
        if !frames.is_empty() {
            shared.outbox.borrow_mut().requeue(frames.into_iter());
            shared.frames.wake_all();
        }
    }

    /// At shutdown: what is buffered goes out if the consumer takes it within
    /// [`LAST_WRITES`]; the rest is lost (logged as dropped by nobody: the
    /// broker is stopping).
    async fn last_writes(&mut self, shared: &Shared) {
        shared.flush();
        if self.stream.set_write_timeout(Some(LAST_WRITES)).is_err() {
            return;
        }
        loop {
            let frame = match self.writing.take() {
                Some((frame, written)) => frame.bytes.slice(written..),
                None => match shared.outbox.borrow_mut().take() {
                    Some(frame) => frame.bytes,
                    None => break,
                },
            };
            if self.stream.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = self.stream.flush().await;
    }
}
