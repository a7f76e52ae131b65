//! An echo server on every core, showing the whole `shards` API: start a
//! pool, accept on a shared reuseport port, send cross-shard batches, and
//! shut down cleanly on Ctrl-C.
//!
//! Each connection echoes what it reads and, at the end of each read, tells
//! shard 0 how many bytes it echoed (batched through its outbox). Shard 0
//! prints the total when the server stops.
//!
//! ```text
//! cargo run -p shards --example echo -- 127.0.0.1:7000
//! # in another terminal: nc 127.0.0.1 7000, type, then Ctrl-C the server
//! ```

use std::cell::Cell;
use std::rc::Rc;

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use shards::{ListenerConfig, Outbox, PoolBuilder, ShardContext, Shutdown, TaskTracker};

/// The cross-shard message: bytes echoed by some connection.
type Echoed = u64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let pool = PoolBuilder::new(shards::online_cpus()?)
        .listener(ListenerConfig::new(addr).send_buffer(256 << 10))
        .catch_signals(true)
        .start(shard)?;
    println!(
        "echoing on {} with {} shards; Ctrl-C to stop",
        pool.local_addrs()[0],
        pool.nr_shards()
    );
    let totals = pool.join()?;
    println!("bytes echoed: {}", totals.iter().sum::<u64>());
    Ok(())
}

/// One shard: accept loop, inbox loop (shard 0 only), then wait for every
/// connection to finish after shutdown.
async fn shard(mut ctx: ShardContext<Echoed>) -> Result<u64, std::io::Error> {
    let shutdown = ctx.shutdown().clone();
    let tracker = TaskTracker::new();
    // Bytes echoed by this shard's own connections, counted on shard 0
    // without a send to itself.
    let local = Rc::new(Cell::new(0));
    let listener = ctx.take_listener(0).expect("one listener configured");
    let accept = {
        let (outboxes, tracker, local) = (ctx.outbox_maker(), tracker.clone(), local.clone());
        let stop = shutdown.clone();
        listener.spawn_accept_loop(&shutdown, move |stream| {
            // Counted, so the shard can wait for it after shutdown.
            let token = tracker.token();
            let conn = connection(stream, outboxes.outbox(), local.clone(), stop.clone());
            glommio::spawn_local(async move {
                conn.await;
                drop(token);
            })
            .detach();
        })
    };

    let mut reported = 0;
    if ctx.id() == 0 {
        // `recv` returns None once every other shard has exited, that is
        // after their connections have finished and flushed: nothing sent
        // is missed, and no race with the shutdown signal is needed.
        let mut inbox = ctx.take_inbox().expect("inbox");
        while let Some(batch) = inbox.recv().await {
            reported += batch.messages.iter().sum::<u64>();
        }
    }
    let stats = accept.await;
    tracker.wait_idle().await;
    println!(
        "shard {} (cpu {}) accepted {}",
        ctx.id(),
        ctx.cpu(),
        stats.accepted
    );
    Ok(reported + local.get())
}

/// Echoes until the peer closes or shutdown; reports bytes to shard 0.
async fn connection(
    mut stream: TcpStream,
    mut outbox: Outbox<Echoed>,
    local: Rc<Cell<u64>>,
    shutdown: Shutdown,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let read = future::or(stream.read(&mut buf), async {
            shutdown.recv().await;
            Ok(0)
        });
        let n = match read.await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if outbox.shard() == 0 {
            local.set(local.get() + n as u64);
        } else {
            let _ = outbox.push(0, n as u64);
        }
        // End of the read loop: one channel send for everything pushed.
        let _ = outbox.flush().await;
    }
}
