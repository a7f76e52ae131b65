//! The read loop of every connection that publishes or subscribes: one loop for both,
//! because a mixed client does both on one socket.
//!
//! - Received PUBLISHes go to the [`Receiver`], and are acknowledged (PUBACK, or PUBREC
//!   then PUBCOMP on the broker's PUBREL).
//! - Acknowledgements of our own publishes free the [`AckSide`]'s window (PUBREL is
//!   sent on PUBREC).
//!
//! Whatever the loop writes shares the connection's write lock with the publisher's
//! writer, which writes on a second descriptor of the same socket: one write at a
//! time, or their bytes could interleave.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;
use glommio::sync::Semaphore;
use shardmq::protocol::{encode, Ack, Disconnect, Packet, Publish, QoS};

use crate::client::{bound_writes, Conn, ConnError};
use crate::runner::{Shared, Spec};
use crate::schedule::{Clock, RealClock};
use crate::stats::{Live, Stats};
use crate::subscriber::Receiver;

/// How long acknowledgements may still arrive after the last publish.
pub const ACK_GRACE: Duration = Duration::from_secs(2);
/// After the publishers stop, a subscriber leaves once it has heard nothing for
/// this long, or `--drain` after the end at the latest.
const QUIET: Duration = Duration::from_millis(200);
/// How often a waiting reader wakes, once the window has ended, to see whether it is
/// done. Before that it sleeps in its read until the end: 5,000 mixed clients polling
/// every 100 ms cost 50,000 timed-out reads a second, and sends fell behind by
/// seconds.
const POLL: Duration = Duration::from_millis(100);

/// The state a publisher's writer and its reader share.
#[derive(Default)]
pub struct Inflight {
    /// Per unacknowledged message in send order: whether it is in the measured
    /// window (acks come back in order on one connection).
    pub measured: RefCell<VecDeque<bool>>,
    /// The writer has sent its last message.
    pub done: Cell<bool>,
}

/// The publishing side of a connection, as its reader sees it.
pub struct AckSide {
    /// Free places in the QoS 1/2 inflight window; closed when the reader ends, which
    /// stops a writer waiting on it.
    pub window: Rc<Semaphore>,
    pub inflight: Rc<Inflight>,
}

impl AckSide {
    /// The writer is done and every ack it waited for is in.
    fn settled(&self) -> bool {
        self.inflight.done.get() && self.inflight.measured.borrow().is_empty()
    }
}

/// How long a subscriber waits after the last message it heard, once the
/// window has ended: [`QUIET`], or three of one publisher's intervals at slow
/// rates (at 5 msgs/s a p2p subscriber hears a message every 200 ms, and
/// left before the last one arrived: 8 of 50,000 counted missing).
fn quiet_ns(spec: &Spec) -> u64 {
    let interval_s = match spec.rate {
        crate::cli::Rate::PerSec(r) if r > 0.0 => spec.plan.publishers.max(1) as f64 / r,
        _ => 0.0,
    };
    let quiet = QUIET
        .as_secs_f64()
        .max(3.0 * interval_s)
        .min(spec.drain.as_secs_f64());
    (quiet * 1e9) as u64
}

/// Reads until the connection's work is done; returns its figures. `acks`: the
/// connection publishes; `receiver`: it subscribed.
pub async fn run(
    mut conn: Conn,
    spec: Arc<Spec>,
    shared: Arc<Shared>,
    start: Instant,
    acks: Option<AckSide>,
    mut receiver: Option<Receiver>,
    write_lock: Rc<Semaphore>,
) -> Stats {
    let mut stats = Stats::default();
    let clock = RealClock(start);
    let end_ns = spec.end_ns();
    let ack_deadline_ns = end_ns + ACK_GRACE.as_nanos() as u64;
    let drain_ns = end_ns + spec.drain.as_nanos() as u64;
    let write_deadline = start + Duration::from_nanos(drain_ns);
    let mut heard_ns = 0;
    // Whether acks still matter: false once the deadline has closed the window.
    let mut awaiting_acks = acks.is_some();
    let mut out = BytesMut::new();
    let result: Result<(), ConnError> = async {
        loop {
            while let Some(packet) = conn.try_decode()? {
                let answered = answer(&packet, &mut stats)?;
                if let (Some(publish), Some(receiver)) = (answered.published, &mut receiver) {
                    receiver.on_publish(publish, clock.now_ns());
                }
                if let (true, Some(acks)) = (answered.acked, &acks) {
                    if acks.inflight.measured.borrow_mut().pop_front() == Some(true) {
                        stats.acked += 1;
                    }
                    acks.window.signal(1);
                }
                let answer = answered.reply;
                if let Some(answer) = answer {
                    encode(&answer, conn.version, &mut out)
                        .map_err(|e| ConnError::Protocol(e.to_string()))?;
                }
            }
            if !out.is_empty() {
                let Ok(_permit) = write_lock.acquire_permit(1).await else {
                    return Err(ConnError::Closed("write acks"));
                };
                bound_writes(&conn.stream, write_deadline);
                let written = conn.stream.write_all(&out).await;
                out.clear();
                written.map_err(|e| ConnError::Io("write acks", e))?;
            }
            let now = clock.now_ns();
            if let Some(receiver) = &mut receiver {
                receiver.feed(now);
            }
            let sent_all = acks.as_ref().is_none_or(|a| !awaiting_acks || a.settled());
            let received_all = match receiver {
                None => true,
                Some(_) => now >= drain_ns || (now >= end_ns && now >= heard_ns + quiet_ns(&spec)),
            };
            if sent_all && received_all {
                return Ok(());
            }
            if let Some(acks) = acks.as_ref().filter(|_| awaiting_acks) {
                if now >= ack_deadline_ns {
                    let missing = !acks.inflight.measured.borrow().is_empty();
                    // Stops a writer still waiting for room in the window.
                    acks.window.close();
                    awaiting_acks = false;
                    if missing {
                        stats.error(
                            ConnError::Protocol("acknowledgements still missing at the end".into())
                                .reason(),
                        );
                    }
                    continue;
                }
            }
            // Until the end nothing but the socket can end this loop (a writer that
            // stops early still waits for its reader), so wait on the socket alone.
            let wait = Duration::from_nanos(end_ns.saturating_sub(now)).max(POLL);
            conn.stream
                .set_read_timeout(Some(wait))
                .map_err(|e| ConnError::Io("set timeout", e.into()))?;
            match conn.read_more("receive").await {
                Err(ConnError::Io(_, e)) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Ok(()) => heard_ns = clock.now_ns(),
                Err(e) => return Err(e),
            }
        }
    }
    .await;
    if let Err(e) = result {
        stats.error(e.reason());
    }
    if let Some(acks) = &acks {
        acks.window.close();
    }
    if let Some(receiver) = receiver {
        stats.merge(&receiver.finish());
    }
    Live::add(&shared.live.errors, stats.error_count());
    // The publisher's writer says goodbye when there is one; a subscriber does here.
    if acks.is_none() {
        bound_writes(&conn.stream, Instant::now() + Duration::from_millis(100));
        let _ = conn.send(&Packet::Disconnect(Disconnect::default())).await;
        let _ = conn.stream.close().await;
    }
    stats
}

/// What one packet from the broker means to a client, and the answer it needs.
pub(crate) struct Answered<'a> {
    /// The PUBACK, PUBREC, PUBREL or PUBCOMP to send back, if any.
    pub reply: Option<Packet>,
    /// A PUBLISH that arrived.
    pub published: Option<&'a Publish>,
    /// One of the client's QoS 1/2 publishes completed (PUBACK or PUBCOMP;
    /// acks come back in order on one connection).
    pub acked: bool,
}

/// Answers `packet` from the broker: acknowledges a PUBLISH by its QoS, goes
/// on with QoS 2 flows, counts an acknowledgement with an error reason, and
/// fails on a refused PUBREC or a DISCONNECT.
pub(crate) fn answer<'a>(packet: &'a Packet, stats: &mut Stats) -> Result<Answered<'a>, ConnError> {
    let mut answered = Answered {
        reply: None,
        published: None,
        acked: false,
    };
    match packet {
        Packet::Publish(publish) => {
            answered.published = Some(publish);
            answered.reply = match (publish.qos, publish.packet_id) {
                (QoS::ExactlyOnce, Some(id)) => Some(Packet::PubRec(Ack::new(id))),
                (_, Some(id)) => Some(Packet::PubAck(Ack::new(id))),
                (_, None) => None,
            };
        }
        Packet::PubRel(rel) => answered.reply = Some(Packet::PubComp(Ack::new(rel.packet_id))),
        Packet::PubRec(ack) if ack.reason_code.is_error() => {
            return Err(ConnError::Refused("PUBREC", ack.reason_code));
        }
        Packet::PubRec(ack) => answered.reply = Some(Packet::PubRel(Ack::new(ack.packet_id))),
        Packet::PubAck(ack) | Packet::PubComp(ack) => {
            if ack.reason_code.is_error() {
                stats.error(format!(
                    "PUBACK 0x{:02x} {:?}",
                    ack.reason_code as u8, ack.reason_code
                ));
            }
            answered.acked = true;
        }
        Packet::Disconnect(d) => return Err(ConnError::Disconnected(d.reason_code)),
        _ => {}
    }
    Ok(answered)
}
