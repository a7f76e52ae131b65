//! A conn-storm worker: CONNECT, SUBSCRIBE, DISCONNECT on the open-loop schedule.
//!
//! Figures: `sent` is handshakes started in the measured window, `received` those that
//! got their SUBACK, latency runs from the intended start to the SUBACK. The broker is
//! left to close first, so TIME_WAIT lands on its side, not on our source ports.

use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use shardmq::protocol::{Disconnect, Packet};
use shardmq::topic::TopicFilter;

use crate::cli::Rate;
use crate::client::{bound_writes, Conn, ConnError, SocketOpts};
use crate::identity::DEFAULT_CLIENT_ID;
use crate::runner::{Shared, Spec};
use crate::schedule::{Clock, RealClock, Schedule, Step};
use crate::stats::{latency_histogram, record_latency, Live, Stats};

/// How long to wait for the broker to close after our DISCONNECT.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub async fn run(spec: &Spec, shared: &Shared, start: Instant, worker: u32) -> Stats {
    let mut stats = Stats::default();
    let clock = RealClock(start);
    let mut schedule = match spec.rate {
        Rate::PerSec(rate) => Schedule::open_loop(rate, spec.plan.roles.len() as u32, worker),
        Rate::Max => Schedule::max(),
    };
    let end_ns = spec.end_ns();
    let mut interval = latency_histogram();
    let mut fed_at = Instant::now();
    let filter = TopicFilter::new(format!("loadtest/storm/{worker}")).expect("valid filter");
    loop {
        let now = clock.now_ns();
        match schedule.step(now, end_ns) {
            Step::Finished => break,
            Step::Sleep(pause) => {
                glommio::timer::sleep(pause).await;
                continue;
            }
            Step::Send => {}
        }
        let Some(due) = schedule.next_due(now) else {
            continue;
        };
        let measured = spec.measured(due.intended_ns);
        let workers = spec.plan.roles.len() as u64;
        let attempt = u64::from(worker) + due.seq * workers;
        let handshake = async {
            let mut hello = spec
                .identity
                .hello(u64::from(worker))
                .map_err(|e| ConnError::Protocol(format!("identity: {e:#}")))?;
            if spec.identity.client_id == DEFAULT_CLIENT_ID {
                // A new id per connection, so no attempt waits on the last one's
                // session to be gone.
                hello.client_id = format!("{}-{}", hello.client_id, due.seq);
            }
            let opts = SocketOpts {
                source: spec.source_ip(attempt as usize),
                send_buffer: None,
            };
            let mut conn = Conn::connect(spec.broker, &hello, spec.version, opts).await?;
            conn.subscribe(filter.clone(), spec.qos).await?;
            Ok::<_, ConnError>(conn)
        }
        .await;
        let done_ns = clock.now_ns();
        Live::add(&shared.live.sent, 1);
        if measured {
            stats.sent += 1;
        }
        match handshake {
            Ok(conn) => {
                Live::add(&shared.live.connected, 1);
                let latency = done_ns.saturating_sub(due.intended_ns);
                record_latency(&mut interval, latency);
                if measured {
                    stats.received += 1;
                    stats.latency.record_ns(latency);
                }
                Live::add(&shared.live.received, 1);
                disconnect(conn).await;
            }
            Err(e) => {
                Live::add(&shared.live.errors, 1);
                stats.error(e.reason());
            }
        }
        if fed_at.elapsed() >= Duration::from_millis(250) {
            shared.live.add_interval(&mut interval);
            fed_at = Instant::now();
        }
        glommio::yield_if_needed().await;
    }
    shared.live.add_interval(&mut interval);
    stats
}

/// DISCONNECT, then wait (briefly) for the broker to close the socket.
async fn disconnect(mut conn: Conn) {
    bound_writes(&conn.stream, Instant::now() + CLOSE_WAIT);
    if conn
        .send(&Packet::Disconnect(Disconnect::default()))
        .await
        .is_ok()
    {
        let _ = conn.stream.set_read_timeout(Some(CLOSE_WAIT));
        while conn.read_more("close").await.is_ok() {}
    }
    let _ = conn.stream.close().await;
}
