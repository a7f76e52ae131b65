//! The client listeners' accept loop, on the shard's epoll set.
//!
//! glommio's accept costs three `fcntl` calls around the `accept` itself, and
//! its stream had to be duplicated into the epoll set and closed again
//! ([`super::Socket`]): five system calls of about fifteen per connection in
//! a connection storm (benchmarks.md, issue 15). Here the listening socket is
//! in the shard's epoll set like its connections: one `accept4` takes each
//! connection, non-blocking and close-on-exec already, straight into the set.

use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use shards::{AcceptFailure, AcceptStats, Listener, Shutdown};

use super::readiness::{Direction, Readiness};

/// Accepts connections on `listener` until `shutdown`, handing each to
/// `on_accept` with TCP_NODELAY set (MQTT packets are small and
/// latency-bound; the broker coalesces writes itself).
pub async fn accept_loop(
    listener: Listener,
    readiness: Rc<Readiness>,
    shutdown: Shutdown,
    mut on_accept: impl FnMut(OwnedFd),
) -> AcceptStats {
    let mut stats = AcceptStats::default();
    let addr = listener.local_addr();
    // Bound blocking; an `accept4` with nothing queued must not block the shard.
    if let Err(e) = socket2::SockRef::from(&listener.as_fd()).set_nonblocking(true) {
        tracing::error!(error = %e, %addr, "listener not made non-blocking; not accepting");
        return stats;
    }
    let token = match readiness.register(listener.as_fd()) {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, %addr, "listener not in the epoll set; not accepting");
            return stats;
        }
    };
    let mut backoff = Duration::ZERO;
    while !shutdown.is_shutdown() {
        if !readiness.ready(token, Direction::Read) {
            let readable = poll_fn(|cx| {
                if readiness.ready(token, Direction::Read) {
                    return Poll::Ready(false);
                }
                readiness.wait(token, Direction::Read, cx.waker());
                Poll::Pending
            });
            let stop = async {
                shutdown.recv().await;
                true
            };
            if futures_lite::future::or(stop, readable).await {
                break;
            }
        }
        match accept(&listener) {
            Ok(fd) => {
                backoff = Duration::ZERO;
                stats.accepted += 1;
                if let Err(e) = socket2::SockRef::from(&fd).set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY on an accepted socket");
                }
                on_accept(fd);
                // A storm must not keep the shard's connections waiting.
                glommio::yield_if_needed().await;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                readiness.drained(token, Direction::Read);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                stats.errors += 1;
                match AcceptFailure::of(&e) {
                    AcceptFailure::Connection => {}
                    AcceptFailure::Resources => {
                        // Out of descriptors or memory: the connection stays
                        // queued and accept would fail again at once.
                        backoff = (backoff * 2)
                            .clamp(Duration::from_millis(5), Duration::from_millis(200));
                        tracing::warn!(error = %e, %addr, ?backoff, "accept failed");
                        if shutdown.sleep(backoff).await {
                            break;
                        }
                    }
                    AcceptFailure::Fatal => {
                        tracing::error!(error = %e, %addr, "listener failed; no longer accepting");
                        break;
                    }
                }
            }
        }
    }
    readiness.deregister(token, listener.as_fd());
    // Leaves the reuseport group at once: what the kernel queued here is
    // refused rather than left waiting for a shard that stopped accepting.
    let _ = socket2::SockRef::from(&listener.as_fd()).shutdown(std::net::Shutdown::Read);
    stats
}

/// One `accept4`: the connection comes non-blocking and close-on-exec.
fn accept(listener: &Listener) -> io::Result<OwnedFd> {
    // SAFETY: the listener's descriptor is open while it lives; null address
    // pointers are allowed (the peer's address is not asked for).
    let fd = unsafe {
        libc::accept4(
            listener.as_fd().as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
