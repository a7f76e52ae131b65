//! A publishing connection: a writer that follows the open-loop schedule and, on the
//! same socket, a reader of acknowledgements that frees the QoS 1 inflight window.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;
use glommio::sync::Semaphore;
use shardmq::protocol::{encode, Ack, Disconnect, Packet, Publish, PublishProperties, QoS};
use shardmq::topic::TopicName;

use crate::cli::Rate;
use crate::client::{bound_writes, Conn, ConnError};
use crate::payload::Header;
use crate::runner::{Shared, Spec};
use crate::schedule::{Clock, RealClock, Schedule, Step};
use crate::stats::{Live, Stats};

/// Messages encoded per socket write at most.
const BATCH: usize = 64;
/// QoS 1 messages awaiting PUBACK at most (less if the broker's Receive Maximum is).
const WINDOW: u16 = 1024;
/// How long acknowledgements may still arrive after the last publish.
const ACK_GRACE: Duration = Duration::from_secs(2);
/// How often a waiting reader wakes to see whether the writer is done.
const POLL: Duration = Duration::from_millis(100);

/// The state the writer and the ack reader share.
#[derive(Default)]
struct Inflight {
    /// Per unacknowledged message in send order: whether it is in the measured
    /// window (PUBACKs come back in order on one connection).
    measured: RefCell<VecDeque<bool>>,
    /// The writer has sent its last message.
    done: Cell<bool>,
}

pub async fn run(
    spec: &Spec,
    shared: &Shared,
    start: Instant,
    id: u32,
    topic: TopicName,
    conn: Conn,
) -> Stats {
    let mut stats = Stats::default();
    let mut writer = match conn.writer() {
        Ok(w) => w,
        Err(e) => {
            stats.error(ConnError::Io("dup", e).reason());
            return stats;
        }
    };
    let version = conn.version;
    let window = Rc::new(Semaphore::new(u64::from(
        conn.receive_maximum.unwrap_or(u16::MAX).min(WINDOW),
    )));
    let inflight = Rc::new(Inflight::default());
    // The writer's publishes and the reader's PUBRELs (QoS 2) go to one socket
    // through two descriptors: one write at a time, or their bytes could interleave.
    let write_lock = Rc::new(Semaphore::new(1));
    let deadline = start + spec.warmup + spec.duration + ACK_GRACE;
    let reader = glommio::spawn_local(read_acks(
        conn,
        window.clone(),
        inflight.clone(),
        write_lock.clone(),
        deadline,
    ));

    let clock = RealClock(start);
    let mut schedule = match spec.rate {
        Rate::PerSec(rate) => Schedule::open_loop(rate, spec.plan.publishers, id),
        Rate::Max => Schedule::max(),
    };
    let end_ns = spec.end_ns();
    let mut packet_id: u16 = 0;
    let mut wbuf = BytesMut::with_capacity(BATCH * (spec.payload + 64));
    'run: loop {
        let now = clock.now_ns();
        match schedule.step(now, end_ns) {
            Step::Finished => break,
            Step::Sleep(pause) => {
                glommio::timer::sleep(pause).await;
                continue;
            }
            Step::Send => {}
        }
        let mut batch = 0;
        let mut measured = 0;
        while batch < BATCH {
            let Some(due) = schedule.next_due(now) else {
                break;
            };
            if due.intended_ns >= end_ns {
                break;
            }
            let in_window = spec.measured(due.intended_ns);
            let id_for_qos = if spec.qos == QoS::AtMostOnce {
                None
            } else {
                if !window.try_acquire(1).unwrap_or(false) {
                    // Full window: send what is encoded, then wait for acks.
                    if let Err(e) = flush(&mut writer, &mut wbuf, &write_lock, deadline).await {
                        stats.error(e.reason());
                        break 'run;
                    }
                    if window.acquire(1).await.is_err() {
                        break 'run; // the reader ended: it recorded why
                    }
                }
                packet_id = packet_id.checked_add(1).unwrap_or(1);
                inflight.measured.borrow_mut().push_back(in_window);
                NonZeroU16::new(packet_id)
            };
            let payload = Header {
                publisher: id,
                seq: due.seq,
                intended_ns: due.intended_ns,
            }
            .encode(spec.payload);
            let publish = Publish {
                dup: false,
                qos: spec.qos,
                retain: false,
                topic: topic.clone(),
                packet_id: id_for_qos,
                payload,
                properties: PublishProperties::default(),
            };
            if let Err(e) = encode(&Packet::Publish(publish), version, &mut wbuf) {
                stats.error(format!("encode: {e}"));
                break 'run;
            }
            batch += 1;
            measured += u64::from(in_window);
        }
        if let Err(e) = flush(&mut writer, &mut wbuf, &write_lock, deadline).await {
            stats.error(e.reason());
            break;
        }
        stats.sent += measured;
        Live::add(&shared.live.sent, batch as u64);
        glommio::yield_if_needed().await;
    }
    inflight.done.set(true);
    let acks = reader.await;
    stats.merge(&acks);
    let mut bye = BytesMut::new();
    if encode(
        &Packet::Disconnect(Disconnect::default()),
        version,
        &mut bye,
    )
    .is_ok()
    {
        bound_writes(&writer, Instant::now() + POLL);
        let _ = writer.write_all(&bye).await;
    }
    let _ = writer.close().await;
    Live::add(&shared.live.errors, stats.error_count());
    stats
}

async fn flush(
    writer: &mut glommio::net::TcpStream,
    wbuf: &mut BytesMut,
    write_lock: &Semaphore,
    deadline: Instant,
) -> Result<(), ConnError> {
    if wbuf.is_empty() {
        return Ok(());
    }
    let Ok(_permit) = write_lock.acquire_permit(1).await else {
        return Err(ConnError::Closed("publish"));
    };
    bound_writes(writer, deadline);
    let result = writer.write_all(wbuf).await;
    wbuf.clear();
    result.map_err(|e| ConnError::Io("publish", e))
}

/// Reads PUBACKs, or PUBRECs (answered with PUBREL) and PUBCOMPs, freeing the window,
/// until the writer is done and every ack is in, or `deadline` (then the window is
/// closed, so a writer waiting on it stops too). Returns the acked
/// count and any error.
async fn read_acks(
    mut conn: Conn,
    window: Rc<Semaphore>,
    inflight: Rc<Inflight>,
    write_lock: Rc<Semaphore>,
    deadline: Instant,
) -> Stats {
    let mut stats = Stats::default();
    if let Err(e) = conn.stream.set_read_timeout(Some(POLL)) {
        stats.error(ConnError::Io("set timeout", e.into()).reason());
    }
    let mut released = BytesMut::new();
    let result: Result<(), ConnError> = async {
        loop {
            while let Some(packet) = conn.try_decode()? {
                let completed = match packet {
                    Packet::PubAck(ack) | Packet::PubComp(ack) => Some(ack),
                    Packet::PubRec(ack) if ack.reason_code.is_error() => {
                        return Err(ConnError::Refused("PUBREC", ack.reason_code));
                    }
                    Packet::PubRec(ack) => {
                        encode(
                            &Packet::PubRel(Ack::new(ack.packet_id)),
                            conn.version,
                            &mut released,
                        )
                        .map_err(|e| ConnError::Protocol(e.to_string()))?;
                        None
                    }
                    Packet::Disconnect(d) => return Err(ConnError::Disconnected(d.reason_code)),
                    _ => None,
                };
                if let Some(ack) = completed {
                    if ack.reason_code.is_error() {
                        stats.error(format!(
                            "PUBACK 0x{:02x} {:?}",
                            ack.reason_code as u8, ack.reason_code
                        ));
                    }
                    if inflight.measured.borrow_mut().pop_front() == Some(true) {
                        stats.acked += 1;
                    }
                    window.signal(1);
                }
            }
            if !released.is_empty() {
                let Ok(_permit) = write_lock.acquire_permit(1).await else {
                    return Err(ConnError::Closed("PUBREL"));
                };
                bound_writes(&conn.stream, deadline);
                let written = conn.stream.write_all(&released).await;
                released.clear();
                written.map_err(|e| ConnError::Io("PUBREL", e))?;
            }
            let all_in = inflight.measured.borrow().is_empty();
            if inflight.done.get() && all_in {
                return Ok(());
            }
            if Instant::now() >= deadline {
                // Closing the window below stops a writer still waiting for acks.
                return Err(ConnError::Protocol(
                    "acknowledgements still missing at the end".into(),
                ));
            }
            match conn.read_more("read acks").await {
                Err(ConnError::Io(_, e)) if e.kind() == std::io::ErrorKind::TimedOut => {}
                other => other?,
            }
        }
    }
    .await;
    if let Err(e) = result {
        stats.error(e.reason());
    }
    window.close();
    stats
}
