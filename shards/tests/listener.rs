//! Reuseport listeners: one per shard on one port, accept loops, shutdown.

mod common;

use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::{join_within, Never, TIMEOUT};
use shards::{AcceptStats, ListenerConfig, PoolBuilder, ShardContext, StartError};

/// Starts a pool whose shards each run an accept loop on listener 0 and
/// count accepted connections in `counts[shard]`, until shutdown.
fn accepting_pool(
    cpus: &[usize],
    config: ListenerConfig,
    counts: Arc<Vec<AtomicUsize>>,
) -> shards::Pool<AcceptStats, Never> {
    PoolBuilder::new(cpus.iter().copied())
        .listener(config)
        .start(move |mut ctx: ShardContext<()>| async move {
            let listener = ctx.take_listener(0).expect("listener 0");
            let shard = ctx.id();
            let accepted = listener.spawn_accept_loop(ctx.shutdown(), move |stream| {
                assert!(stream.nodelay().unwrap(), "TCP_NODELAY not set");
                counts[shard].fetch_add(1, Ordering::SeqCst);
                // Keep the connection open until shutdown, like a session.
                drop(glommio::spawn_local(async move { stream }).detach());
            });
            Ok(accepted.await)
        })
        .expect("pool with a listener")
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[test]
fn port_zero_is_shared_and_connections_spread_over_shards() {
    let counts = Arc::new(vec![AtomicUsize::new(0), AtomicUsize::new(0)]);
    let pool = accepting_pool(&[0, 1], ListenerConfig::new("127.0.0.1:0"), counts.clone());
    let addr = pool.local_addrs()[0];
    assert_ne!(addr.port(), 0, "the real port is exposed");
    let clients: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let total = || {
        counts
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    wait_for("100 accepts", || total() == 100);
    pool.shutdown_handle().trigger();
    let stats: Vec<AcceptStats> = join_within(pool).into_iter().map(Result::unwrap).collect();
    drop(clients);
    eprintln!(
        "accepted per shard: {:?}",
        stats.iter().map(|s| s.accepted).collect::<Vec<_>>()
    );
    assert_eq!(stats.iter().map(|s| s.accepted).sum::<u64>(), 100);
    // Both shards got some: the kernel balanced the reuseport group
    // (DESIGN measured 41–59; all 100 on one shard has odds of 2^-99).
    assert!(stats.iter().all(|s| s.accepted > 0), "{stats:?}");
}

#[test]
fn shutdown_stops_accept_loops_and_closes_the_port() {
    let counts = Arc::new(vec![AtomicUsize::new(0), AtomicUsize::new(0)]);
    let pool = accepting_pool(&[0, 1], ListenerConfig::new("127.0.0.1:0"), counts.clone());
    let addr = pool.local_addrs()[0];
    let client = TcpStream::connect(addr).unwrap();
    wait_for("one accept", || {
        counts.iter().any(|c| c.load(Ordering::SeqCst) == 1)
    });
    pool.shutdown_handle().trigger();
    for r in join_within(pool) {
        r.unwrap();
    }
    drop(client);
    let err = TcpStream::connect(addr).expect_err("no listener should be left");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn accept_loops_stop_even_if_nothing_ever_connected() {
    let counts = Arc::new(vec![AtomicUsize::new(0)]);
    let pool = accepting_pool(&[0], ListenerConfig::new("127.0.0.1:0"), counts);
    pool.shutdown_handle().trigger();
    let stats = join_within(pool).pop().unwrap().unwrap();
    assert_eq!(stats, AcceptStats::default());
}

#[test]
fn accepted_sockets_get_the_configured_send_buffer() {
    const BYTES: usize = 64 << 10;
    let pool = PoolBuilder::new([0])
        .listener(ListenerConfig::new("127.0.0.1:0").send_buffer(BYTES))
        .start(|mut ctx: ShardContext<()>| async move {
            let listener = ctx.take_listener(0).unwrap();
            let stream = std::rc::Rc::new(std::cell::RefCell::new(None));
            let slot = stream.clone();
            let shutdown = ctx.shutdown().clone();
            let handle = ctx.shutdown_handle().clone();
            listener
                .spawn_accept_loop(&shutdown, move |s| {
                    *slot.borrow_mut() = Some(s);
                    handle.trigger();
                })
                .await;
            let s = stream.borrow_mut().take().expect("one connection");
            // SAFETY: `s` is alive for the borrow.
            let fd = unsafe { BorrowedFd::borrow_raw(s.as_raw_fd()) };
            let size = socket2::SockRef::from(&fd).send_buffer_size().unwrap();
            // Linux doubles the value for bookkeeping; the default would be
            // tcp_wmem's 16 KiB, autotuned upwards.
            Ok::<_, Never>(size)
        })
        .unwrap();
    let _client = TcpStream::connect(pool.local_addrs()[0]).unwrap();
    let size = join_within(pool).pop().unwrap().unwrap();
    assert!((BYTES..=2 * BYTES).contains(&size), "SO_SNDBUF is {size}");
}

#[test]
fn bad_listener_addresses_are_start_errors() {
    let start = |addr: &str| {
        PoolBuilder::new([0])
            .listener(ListenerConfig::new(addr))
            .start(|_: ShardContext<()>| async { Ok::<_, Never>(()) })
            .expect_err("must not start")
    };
    let err = start("not an address");
    assert!(matches!(err, StartError::BadAddress { .. }), "{err}");
    assert!(err.to_string().contains("\"not an address\""), "{err}");
    // TEST-NET-1 is never a local address, so binding it fails.
    let err = start("192.0.2.1:0");
    assert!(matches!(err, StartError::Bind { .. }), "{err}");
    assert!(err.to_string().contains("192.0.2.1"), "{err}");
}

#[test]
fn a_port_another_process_listens_on_is_a_start_error() {
    // Any listener, with or without SO_REUSEPORT, must make the pool refuse
    // the port rather than share its connections.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let first = PoolBuilder::new([0])
        .listener(ListenerConfig::new(&addr))
        .start(|_: ShardContext<()>| async { Ok::<_, Never>(()) })
        .expect_err("must not start");
    assert!(matches!(first, StartError::Bind { .. }), "{first}");
    assert!(first.to_string().contains("already listening"), "{first}");
    drop(taken);
    let pool = PoolBuilder::new([0])
        .listener(ListenerConfig::new("127.0.0.1:0"))
        .start(|ctx: ShardContext<()>| async move {
            ctx.shutdown().recv().await;
            Ok::<_, Never>(())
        })
        .unwrap();
    let busy = pool.local_addrs()[0].to_string();
    let second = PoolBuilder::new([0])
        .listener(ListenerConfig::new(&busy))
        .start(|_: ShardContext<()>| async { Ok::<_, Never>(()) })
        .expect_err("a second pool on a busy reuseport address must not start");
    assert!(second.to_string().contains("already listening"), "{second}");
    pool.shutdown_handle().trigger();
    join_within(pool);
}

#[test]
fn a_standalone_listener_binds_on_a_test_executor() {
    let accepted = shards::test_executor(|| async {
        let listener = shards::Listener::bind(&ListenerConfig::new("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr();
        let shutdown = shards::Shutdown::new();
        let stop = shutdown.clone();
        let task = listener.spawn_accept_loop(&shutdown, move |_| stop.trigger());
        let _client = glommio::net::TcpStream::connect(addr).await.unwrap();
        task.await
    });
    assert_eq!(accepted.accepted, 1);
}
