//! The HTTP listener for `/health` and `/metrics`, on a std thread of its own
//! (`tiny_http`), away from the shards: a scrape never runs on an event loop.
//!
//! - `GET /health`: `200 ok` while the broker accepts clients, `503 starting`
//!   or `503 stopping` otherwise.
//! - `GET /metrics`: Prometheus text (see `metrics::render`).
//!
//! Anything else is `404`, or `405` for another method on those paths.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socket2::SockRef;
use tiny_http::{Header, Method, Request, Response};
use tracing::{debug, warn};

use crate::metrics::{self, Health, Metrics};

/// A running HTTP listener. Dropping it stops it.
pub struct HttpServer {
    addr: SocketAddr,
    /// `None` once stopped.
    server: Option<Arc<tiny_http::Server>>,
    /// A second descriptor of the listening socket. tiny_http closes its own
    /// only when its accept thread next wakes; shutting this one down stops
    /// the listening at once, so a stopped server refuses connections.
    listener: TcpListener,
    /// Tells the request loop that a wake-up is a stop.
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `bind` and serves from a new thread.
    pub fn start(bind: SocketAddr, metrics: Arc<Metrics>) -> io::Result<HttpServer> {
        let listener = bind_when_released(bind)?;
        let addr = listener.local_addr()?;
        let own = listener.try_clone()?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map(Arc::new)
            .map_err(io::Error::other)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = thread::Builder::new().name("shardmq-http".into()).spawn({
            let server = server.clone();
            let stopping = stopping.clone();
            move || serve(&server, &stopping, &metrics)
        })?;
        Ok(HttpServer {
            addr,
            server: Some(server),
            listener: own,
            stopping,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: the request being answered is finished, then the thread
    /// ends and the listening socket refuses connections.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        self.stopping.store(true, Ordering::Release);
        server.unblock();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("the HTTP thread panicked");
            }
        }
        // The last handle: tiny_http tells its accept thread to end.
        drop(server);
        if let Err(e) = SockRef::from(&self.listener).shutdown(Shutdown::Read) {
            debug!(error = %e, "shutdown of the HTTP listening socket");
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shut();
    }
}

/// How long a busy address is tried again: a process killed a moment ago
/// (`kill -9`, then an immediate restart) holds its listener for some
/// milliseconds while the kernel tears it down, as the MQTT listeners know
/// (`shards::listener`).
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

fn bind_when_released(bind: SocketAddr) -> io::Result<TcpListener> {
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    loop {
        match TcpListener::bind(bind) {
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline =>
            {
                thread::sleep(std::time::Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

fn serve(server: &tiny_http::Server, stopping: &AtomicBool, metrics: &Metrics) {
    loop {
        match server.recv() {
            Ok(request) => respond(request, metrics),
            Err(_) if stopping.load(Ordering::Acquire) => return,
            Err(e) => {
                // Accept failures (out of descriptors): back off, keep serving.
                warn!(error = %e, "HTTP listener");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn respond(request: Request, metrics: &Metrics) {
    let path = request.url().split('?').next().unwrap_or_default();
    let get = matches!(request.method(), Method::Get | Method::Head);
    let response = match (path, get) {
        ("/health", true) => match metrics.health() {
            // A node without its store refuses persistent sessions: a load
            // balancer should send them elsewhere.
            Health::Serving => match (metrics.store.down(), metrics.cluster.no_lease()) {
                (None, None) => text(200, "ok\n"),
                (Some((shard, cause)), _) => {
                    text(503, &format!("store down (shard {shard}): {cause}\n"))
                }
                // A node without its lease is dead to the others, which take
                // over its sessions.
                (None, Some(cause)) => text(503, &format!("no cluster lease: {cause}\n")),
            },
            Health::Starting => text(503, "starting\n"),
            Health::Stopping => text(503, "stopping\n"),
        },
        ("/metrics", true) => Response::from_string(metrics::render(metrics))
            .with_header(content_type(metrics::CONTENT_TYPE)),
        ("/health" | "/metrics", false) => text(405, "method not allowed\n")
            .with_header(Header::from_bytes("Allow", "GET, HEAD").expect("valid header")),
        _ => text(404, "not found: try /health or /metrics\n"),
    };
    if let Err(e) = request.respond(response) {
        debug!(error = %e, "HTTP client went away");
    }
}

fn text(status: u16, body: &str) -> Response<io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(content_type("text/plain; charset=utf-8"))
}

fn content_type(value: &str) -> Header {
    Header::from_bytes("Content-Type", value).expect("valid header")
}
