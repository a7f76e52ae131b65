//! An idle connection: connected, silent, watching for the broker dropping it.

use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use shardmq::protocol::{Disconnect, Packet};

use crate::client::{bound_writes, Conn, ConnError};
use crate::runner::Spec;
use crate::stats::Stats;

/// Holds `conn` until the end of the run (warm-up plus duration), then disconnects.
pub async fn run(spec: &Spec, start: Instant, mut conn: Conn) -> Stats {
    let mut stats = Stats::default();
    let end = start + spec.warmup + spec.duration;
    let result: Result<(), ConnError> = async {
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            conn.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|e| ConnError::Io("set timeout", e.into()))?;
            match conn.read_more("idle").await {
                Err(ConnError::Io(_, e)) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e),
                Ok(()) => {
                    if let Some(Packet::Disconnect(d)) = conn.try_decode()? {
                        return Err(ConnError::Disconnected(d.reason_code));
                    }
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        stats.error(e.reason());
    }
    bound_writes(&conn.stream, Instant::now() + Duration::from_millis(100));
    let _ = conn.send(&Packet::Disconnect(Disconnect::default())).await;
    let _ = conn.stream.close().await;
    stats
}
