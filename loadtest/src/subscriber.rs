//! A subscribing connection: receives, acknowledges (QoS 1), and accounts for every
//! message by its header.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;
use shardmq::protocol::{encode, Ack, Disconnect, Packet, QoS};

use crate::client::{bound_writes, Conn, ConnError};
use crate::payload::Header;
use crate::runner::{Shared, Spec};
use crate::schedule::{Clock, RealClock};
use crate::sequence::{Seen, SeqTracker};
use crate::stats::{latency_histogram, record_latency, Live, Stats};

/// After the publishers stop, a subscriber leaves once it has heard nothing for
/// this long...
const QUIET: Duration = Duration::from_millis(200);
/// ...or this long after the end at the latest.
const DRAIN: Duration = Duration::from_secs(3);
/// How often the progress line's counters are fed.
const FEED: Duration = Duration::from_millis(250);

pub async fn run(spec: &Spec, shared: &Shared, start: Instant, mut conn: Conn) -> Stats {
    let mut stats = Stats::default();
    if let Err(e) = conn.stream.set_read_timeout(Some(QUIET)) {
        stats.error(ConnError::Io("set timeout", e.into()).reason());
    }
    let clock = RealClock(start);
    let end_ns = spec.end_ns();
    let drain_ns = end_ns + DRAIN.as_nanos() as u64;
    let mut trackers: HashMap<u32, SeqTracker> = HashMap::new();
    let mut interval = latency_histogram();
    let mut unfed = 0;
    let mut fed_at = 0;
    let mut acks = BytesMut::new();
    let result: Result<(), ConnError> = async {
        loop {
            while let Some(packet) = conn.try_decode()? {
                let publish = match packet {
                    Packet::Publish(p) => p,
                    Packet::PubRel(rel) => {
                        encode(
                            &Packet::PubComp(Ack::new(rel.packet_id)),
                            conn.version,
                            &mut acks,
                        )
                        .map_err(|e| ConnError::Protocol(e.to_string()))?;
                        continue;
                    }
                    Packet::Disconnect(d) => return Err(ConnError::Disconnected(d.reason_code)),
                    _ => continue,
                };
                let now = clock.now_ns();
                if let Some(id) = publish.packet_id {
                    let ack = match publish.qos {
                        QoS::ExactlyOnce => Packet::PubRec(Ack::new(id)),
                        _ => Packet::PubAck(Ack::new(id)),
                    };
                    encode(&ack, conn.version, &mut acks)
                        .map_err(|e| ConnError::Protocol(e.to_string()))?;
                }
                let Some(header) = Header::decode(&publish.payload) else {
                    stats.error("payload without a loadtest header");
                    continue;
                };
                let measured = spec.measured(header.intended_ns);
                let tracker = trackers.entry(header.publisher).or_default();
                match tracker.observe(header.seq, measured) {
                    Seen::Duplicate if measured => stats.duplicated += 1,
                    Seen::Reordered if measured => stats.reordered += 1,
                    _ => {}
                }
                unfed += 1;
                if measured {
                    stats.received += 1;
                    let latency = now.saturating_sub(header.intended_ns);
                    record_latency(&mut stats.latency, latency);
                    record_latency(&mut interval, latency);
                }
            }
            if !acks.is_empty() {
                bound_writes(&conn.stream, start + Duration::from_nanos(drain_ns));
                let written = conn.stream.write_all(&acks).await;
                acks.clear();
                written.map_err(|e| ConnError::Io("write acks", e))?;
            }
            let now = clock.now_ns();
            if now >= fed_at + FEED.as_nanos() as u64 {
                Live::add(&shared.live.received, std::mem::take(&mut unfed));
                shared.live.add_interval(&mut interval);
                fed_at = now;
            }
            if now >= drain_ns {
                return Ok(());
            }
            match conn.read_more("receive").await {
                Err(ConnError::Io(_, e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                    if clock.now_ns() >= end_ns {
                        return Ok(());
                    }
                }
                other => other?,
            }
        }
    }
    .await;
    if let Err(e) = result {
        stats.error(e.reason());
        Live::add(&shared.live.errors, 1);
    }
    Live::add(&shared.live.received, unfed);
    shared.live.add_interval(&mut interval);
    stats.lost = trackers.values().map(SeqTracker::lost).sum();
    bound_writes(&conn.stream, Instant::now() + Duration::from_millis(100));
    let _ = conn.send(&Packet::Disconnect(Disconnect::default())).await;
    let _ = conn.stream.close().await;
    stats
}
