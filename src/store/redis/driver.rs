//! The task that owns a client's connection: connects (with a back-off
//! after failures), logs in, then writes whatever is queued and hands each
//! reply read to the oldest waiting command, until the connection breaks or
//! the client closes.

use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use ::redis::{Cmd, Value};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;

use super::backoff::Backoff;
use super::client::{RedisConfig, Shared};
use super::resp::Replies;
use super::{RedisError, RedisUrl};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;

/// Reads per turn of the driver before it lets the shard's other tasks run
/// (4 MiB of replies).
const READS_PER_TURN: usize = 64;

/// Runs until the client closes.
pub(super) async fn drive(shared: Rc<Shared>) {
    let config = &shared.config;
    let mut backoff = Backoff::new(config.backoff_first, config.backoff_cap);
    while !shared.is_closed() {
        match connect(config).await {
            Ok((stream, replies)) if !shared.is_closed() => {
                backoff.reset();
                shared.up();
                match run(&shared, stream, replies).await {
                    Some(cause) => shared.lost(cause),
                    None => return,
                }
            }
            Ok(_) => return,
            Err(_) if shared.is_closed() => return,
            Err(cause) => {
                shared.down(cause);
                let wait = glommio::timer::sleep(backoff.next_wait());
                futures_lite::future::or(wait, shared.closing.notified()).await;
            }
        }
    }
}

/// A connection, logged in and on its database; or why not, in words.
async fn connect(config: &RedisConfig) -> Result<(TcpStream, Replies), String> {
    let url = &config.url;
    let address = url.address();
    let deadline = Instant::now() + config.timeout;
    let addrs = resolve(url)
        .await
        .map_err(|e| format!("resolve {}: {e}", url.host))?;
    let mut stream = connect_first(&addrs, deadline)
        .await
        .map_err(|e| format!("connect to {address}: {e}"))?;
    // Pipelining does its own batching; Nagle would only hold the tail back.
    stream
        .set_nodelay(true)
        .map_err(|e| format!("connect to {address}: {e}"))?;
    let mut replies = Replies::new();
    match handshake(&mut stream, &mut replies, url, deadline).await {
        Ok(Ok(())) => Ok((stream, replies)),
        Ok(Err(refusal)) => Err(refusal),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(format!(
            "connect to {address}: no reply to the handshake within {:?}",
            config.timeout
        )),
        Err(e) => Err(format!("connect to {address}: {e}")),
    }
}

/// The host's addresses. A name is looked up on glommio's blocking thread:
/// the system resolver blocks.
async fn resolve(url: &RedisUrl) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    let (host, port) = (url.host.clone(), url.port);
    let addrs: Vec<SocketAddr> = glommio::executor()
        .spawn_blocking(move || (host.as_str(), port).to_socket_addrs())
        .await?
        .collect();
    Ok(addrs)
}

/// A connection to the first of `addrs` that takes it, by `deadline`. A
/// name may have several addresses (`localhost`: ::1 and 127.0.0.1, while
/// Redis may listen on one only).
pub(super) async fn connect_first(
    addrs: &[SocketAddr],
    deadline: Instant,
) -> io::Result<TcpStream> {
    let mut failure = io::Error::new(io::ErrorKind::NotFound, "no address");
    for &addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // glommio's own timeout (a linked io_uring timeout): racing
        // `connect` against a timer trips glommio 0.9's waker count (DESIGN
        // section 3).
        match TcpStream::connect_timeout(addr, left).await {
            Ok(stream) => return Ok(stream),
            Err(e) => failure = io::Error::from(e),
        }
    }
    Err(failure)
}

/// `AUTH` (when the URL has a password), `SELECT` (when its database is not
/// 0) and a `PING`, before anything queued: the `PING` also finds a Redis
/// that wants a password the URL lacks, or is still loading. Inner `Err`:
/// Redis refused a step.
async fn handshake(
    stream: &mut TcpStream,
    replies: &mut Replies,
    url: &RedisUrl,
    deadline: Instant,
) -> io::Result<Result<(), String>> {
    let mut steps: Vec<(String, Cmd)> = Vec::new();
    if let Some(password) = &url.password {
        let mut auth = ::redis::cmd("AUTH");
        if let Some(user) = &url.username {
            auth.arg(user);
        }
        auth.arg(password);
        steps.push(("AUTH".to_owned(), auth));
    }
    if url.db != 0 {
        let mut select = ::redis::cmd("SELECT");
        select.arg(url.db);
        steps.push((format!("SELECT {}", url.db), select));
    }
    steps.push(("PING".to_owned(), ::redis::cmd("PING")));
    let mut out = Vec::new();
    for (_, cmd) in &steps {
        cmd.write_packed_command(&mut out);
    }

    let timed_out = || io::Error::from(io::ErrorKind::TimedOut);
    let left = || Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero());
    stream.set_write_timeout(Some(left().ok_or_else(timed_out)?))?;
    stream.write_all(&out).await?;
    let mut values: Vec<Value> = Vec::with_capacity(steps.len());
    let mut buf = vec![0; 4096];
    while values.len() < steps.len() {
        stream.set_read_timeout(Some(left().ok_or_else(timed_out)?))?;
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "Redis closed the connection during the handshake",
            ));
        }
        replies
            .feed(&buf[..n], |v| {
                values.push(v);
                Ok(())
            })
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    }
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    for ((step, _), value) in steps.iter().zip(values) {
        if let Value::ServerError(e) = value {
            let detail = e.details().unwrap_or_default();
            return Ok(Err(format!("Redis refused {step}: {} {detail}", e.code())));
        }
    }
    Ok(Ok(()))
}

/// Pipelines until the connection breaks (its cause) or the client closes
/// (`None`). One poll function writes, reads and watches the deadline, so
/// nothing is raced and the socket has one owner.
async fn run(shared: &Shared, mut stream: TcpStream, mut replies: Replies) -> Option<RedisError> {
    let timeout = shared.config.timeout;
    let mut scratch = vec![0u8; READ_CHUNK];
    // Armed for the oldest command's deadline as it was when armed; when it
    // fires, the then-oldest deadline is checked and the timer re-armed. So
    // a busy client makes one timer per timeout period, not one per command.
    let mut timer: Option<Timer> = None;
    poll_fn(|cx| loop {
        if shared.is_closed() {
            return Poll::Ready(None);
        }

        let mut state = shared.state.borrow_mut();
        while !state.queue.unsent().is_empty() {
            match Pin::new(&mut stream).poll_write(cx, state.queue.unsent()) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Some(RedisError::Io(
                        "Redis takes no more bytes".to_owned(),
                    )))
                }
                Poll::Ready(Ok(n)) => state.queue.wrote(n),
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Some(RedisError::Io(format!("write: {e}"))))
                }
                Poll::Pending => break,
            }
        }

        let mut drained = false;
        for _ in 0..READS_PER_TURN {
            match Pin::new(&mut stream).poll_read(cx, &mut scratch) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Some(RedisError::Io(
                        "Redis closed the connection".to_owned(),
                    )))
                }
                Poll::Ready(Ok(n)) => {
                    let queue = &mut state.queue;
                    if let Err(e) = replies.feed(&scratch[..n], |v| queue.reply(v)) {
                        return Poll::Ready(Some(e));
                    }
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Some(RedisError::Io(format!("read: {e}"))))
                }
                Poll::Pending => {
                    drained = true;
                    break;
                }
            }
        }
        if !drained {
            // More to read: let the shard's other tasks run first.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }

        match state.queue.first_deadline() {
            None => timer = None,
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return Poll::Ready(Some(RedisError::Timeout(timeout)));
                }
                let armed = timer.get_or_insert_with(|| Timer::new(deadline - now));
                if Pin::new(armed).poll(cx).is_ready() {
                    // Fired: look at the oldest deadline again.
                    timer = None;
                    continue;
                }
            }
        }
        drop(state);

        if shared.output.poll_notified(cx).is_ready() {
            continue;
        }
        return Poll::Pending;
    })
    .await
}
