//! A publishing connection: a writer that follows the open-loop schedule and, on the
//! same socket, the connection's reader (`reader`), which frees the QoS 1/2 inflight
//! window as acknowledgements come back, and, for a mixed client, receives.

use std::io;
use std::num::NonZeroU16;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::TaskQueueHandle;
use shardmq::protocol::{encode, Disconnect, Packet, Publish, PublishProperties, QoS, Version};
use shardmq::topic::TopicName;

use crate::cli::Rate;
use crate::client::{bound_writes, Conn, ConnError};
use crate::payload::Header;
use crate::reader::{self, AckSide, Inflight, ACK_GRACE};
use crate::runner::{Shared, Spec};
use crate::schedule::{Clock, RealClock, Schedule, Step};
use crate::stats::{Live, Stats};
use crate::subscriber::Receiver;

/// Messages encoded per socket write at most.
const BATCH: usize = 64;
/// QoS 1 messages awaiting PUBACK at most (less if the broker's Receive Maximum is).
const WINDOW: u16 = 1024;

/// What a publisher does; the connection's reader runs in `receivers`.
pub struct Publisher {
    pub id: u32,
    pub topic: TopicName,
    /// A mixed client's subscription, read by the same reader as the acks.
    pub receiver: Option<Receiver>,
    pub receivers: TaskQueueHandle,
}

/// Encoded messages not yet written, with where each ends, so a write cut short
/// (back-pressure at the end of the run) counts exactly the messages that went out.
#[derive(Default)]
struct Outbox {
    buf: BytesMut,
    /// Per message: its end offset in `buf` and whether it is in the measured window.
    ends: Vec<(usize, bool)>,
    /// A message went out in part: the stream is no longer at a packet boundary, so
    /// nothing more (not even DISCONNECT) may be written.
    torn: bool,
}

/// Messages fully written by one flush.
#[derive(Debug, Default, Clone, Copy)]
struct Written {
    all: u64,
    measured: u64,
    /// Encoded but not (wholly) written.
    unwritten: usize,
}

impl Outbox {
    fn push(&mut self, packet: &Packet, version: Version, measured: bool) -> Result<(), String> {
        encode(packet, version, &mut self.buf).map_err(|e| format!("encode: {e}"))?;
        self.ends.push((self.buf.len(), measured));
        Ok(())
    }

    /// Writes everything buffered, at most until `deadline`; returns what was written
    /// in full, and the write's error if it stopped early.
    async fn flush(
        &mut self,
        writer: &mut TcpStream,
        write_lock: &Semaphore,
        deadline: Instant,
    ) -> (Written, io::Result<()>) {
        if self.buf.is_empty() {
            return (Written::default(), Ok(()));
        }
        let Ok(_permit) = write_lock.acquire_permit(1).await else {
            let written = Written {
                unwritten: self.ends.len(),
                ..Written::default()
            };
            self.clear();
            let closed = io::Error::new(io::ErrorKind::NotConnected, "write lock closed");
            return (written, Err(closed));
        };
        bound_writes(writer, deadline);
        let mut off = 0;
        let result = loop {
            if off == self.buf.len() {
                break Ok(());
            }
            match writer.write(&self.buf[off..]).await {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) => break Err(e),
            }
        };
        let mut written = Written::default();
        for &(end, measured) in &self.ends {
            if end > off {
                written.unwritten += 1;
            } else {
                written.all += 1;
                written.measured += u64::from(measured);
            }
        }
        let at_boundary = off == 0 || self.ends.iter().any(|&(end, _)| end == off);
        self.torn |= !at_boundary;
        self.clear();
        (written, result)
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }
}

pub async fn run(
    spec: Arc<Spec>,
    shared: Arc<Shared>,
    start: Instant,
    publisher: Publisher,
    conn: Conn,
) -> Stats {
    let mut stats = Stats::default();
    let mut writer = match conn.writer() {
        Ok(w) => w,
        Err(e) => {
            stats.error(ConnError::Io("dup", e).reason());
            Live::add(&shared.live.errors, 1);
            return stats;
        }
    };
    let version = conn.version;
    let window = Rc::new(Semaphore::new(u64::from(
        conn.receive_maximum.unwrap_or(u16::MAX).min(WINDOW),
    )));
    let inflight = Rc::new(Inflight::default());
    let write_lock = Rc::new(Semaphore::new(1));
    let acks = AckSide {
        window: window.clone(),
        inflight: inflight.clone(),
    };
    let reader = glommio::spawn_local_into(
        reader::run(
            conn,
            spec.clone(),
            shared.clone(),
            start,
            Some(acks),
            publisher.receiver,
            write_lock.clone(),
        ),
        publisher.receivers,
    );
    let reader = match reader {
        Ok(task) => task,
        Err(e) => {
            stats.error(format!("cannot start the reader: {e}"));
            Live::add(&shared.live.errors, 1);
            return stats;
        }
    };

    let clock = RealClock(start);
    let mut schedule = match spec.rate {
        Rate::PerSec(rate) => Schedule::open_loop(rate, spec.plan.publishers, publisher.id),
        Rate::Max => Schedule::max(),
    };
    // Under --rate max nothing is owed at the end, and a broker still holding up our
    // writes then is saturated, which is what max measures: stop. At a set rate, the
    // messages owed are still sent, for a grace period; past it the broker has not
    // taken the offered load, an error.
    let write_deadline = match spec.rate {
        Rate::Max => start + spec.warmup + spec.duration,
        Rate::PerSec(_) => start + spec.warmup + spec.duration + ACK_GRACE,
    };
    let end_ns = spec.end_ns();
    let mut packet_id: u16 = 0;
    let mut outbox = Outbox {
        buf: BytesMut::with_capacity(BATCH * (spec.payload + 64)),
        ..Outbox::default()
    };
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
        while outbox.ends.len() < BATCH {
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
                    let (written, result) =
                        outbox.flush(&mut writer, &write_lock, write_deadline).await;
                    if !flushed(&spec, &shared, &inflight, written, result, &mut stats) {
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
                publisher: publisher.id,
                seq: due.seq,
                intended_ns: due.intended_ns,
            }
            .encode(spec.payload);
            let publish = Publish {
                dup: false,
                qos: spec.qos,
                retain: false,
                topic: publisher.topic.clone(),
                packet_id: id_for_qos,
                payload,
                properties: PublishProperties::default(),
            };
            if let Err(e) = outbox.push(&Packet::Publish(publish), version, in_window) {
                stats.error(e);
                break 'run;
            }
        }
        let (written, result) = outbox.flush(&mut writer, &write_lock, write_deadline).await;
        if !flushed(&spec, &shared, &inflight, written, result, &mut stats) {
            break;
        }
        glommio::yield_if_needed().await;
    }
    // Messages never written are not waited for.
    forget(&inflight, outbox.ends.len());
    inflight.done.set(true);
    Live::add(&shared.live.errors, stats.error_count());
    let acks = reader.await;
    stats.merge(&acks);
    if !outbox.torn {
        let mut bye = BytesMut::new();
        if encode(
            &Packet::Disconnect(Disconnect::default()),
            version,
            &mut bye,
        )
        .is_ok()
        {
            bound_writes(&writer, Instant::now() + Duration::from_millis(100));
            if let Ok(_permit) = write_lock.acquire_permit(1).await {
                let _ = writer.write_all(&bye).await;
            }
        }
    }
    let _ = writer.close().await;
    stats
}

/// Counts what a flush wrote; whether to go on.
fn flushed(
    spec: &Spec,
    shared: &Shared,
    inflight: &Inflight,
    written: Written,
    result: io::Result<()>,
    stats: &mut Stats,
) -> bool {
    stats.sent += written.measured;
    Live::add(&shared.live.sent, written.all);
    forget(inflight, written.unwritten);
    match result {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::TimedOut && spec.rate == Rate::Max => false,
        Err(e) => {
            stats.error(ConnError::Io("publish", e).reason());
            false
        }
    }
}

/// The last `n` messages waiting for acks were never written: stop waiting.
fn forget(inflight: &Inflight, n: usize) {
    let mut measured = inflight.measured.borrow_mut();
    let keep = measured.len().saturating_sub(n);
    measured.truncate(keep);
}
